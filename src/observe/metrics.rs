//! Prometheus metrics named as Istio's standard metrics where one exists
//! (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_tcp_*`), Envoy's
//! cluster stats (`envoy_cluster_*`, from the per-cluster counters), plus Portcullis' own
//! (`portcullis_*`) for egress refusals, reloads and upstream connection reuse.
//!
//! Two sets, as in an istio-ingressgateway pod: the proxy's ([`Metrics::proxy_families`], what
//! Envoy serves on 15090) and the agent's ([`Metrics::agent_families`], configuration reloads:
//! what istio-agent adds on 15020 about the config it feeds the proxy).

use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    exponential_buckets, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry,
};

use super::stats::family;
use crate::upstream::StatsRegistry;

pub struct Metrics {
    /// The proxy's metrics (what Envoy exports).
    registry: Registry,
    /// The agent's metrics: configuration reloads.
    agent: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub tcp_opened: IntCounterVec,
    pub tcp_closed: IntCounterVec,
    pub tcp_sent: IntCounterVec,
    pub tcp_received: IntCounterVec,
    pub egress_denied: IntCounterVec,
    pub reloads: IntCounterVec,
    pub config_generation: IntGauge,
    /// Finished spans dropped because the export queue was full (`observe::tracing`).
    pub tracing_dropped: IntCounter,
}

const REQUEST_LABELS: [&str; 6] = [
    "reporter",
    "request_protocol",
    "response_code",
    "response_flags",
    "destination_service",
    "destination_service_name",
];

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "registration fails only on duplicate or malformed names, fixed here"
    )]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let agent = Registry::new();
        // Registration can only fail on duplicate names, which this constructor never makes.
        let r = &registry;
        Metrics {
            requests: register_int_counter_vec_with_registry!("istio_requests_total", "Requests served", &REQUEST_LABELS, r)
                .expect("metric names are unique"),
            duration: register_histogram_vec_with_registry!(
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds",
                &REQUEST_LABELS,
                exponential_buckets(0.5, 2.0, 18).expect("valid buckets"),
                r
            )
            .expect("metric names are unique"),
            tcp_opened: register_int_counter_vec_with_registry!(
                "istio_tcp_connections_opened_total",
                "TCP connections proxied",
                &["destination_service"],
                r
            )
            .expect("metric names are unique"),
            tcp_closed: register_int_counter_vec_with_registry!(
                "istio_tcp_connections_closed_total",
                "TCP connections closed",
                &["destination_service"],
                r
            )
            .expect("metric names are unique"),
            tcp_sent: register_int_counter_vec_with_registry!(
                "istio_tcp_sent_bytes_total",
                "Bytes sent to clients on proxied TCP connections",
                &["destination_service"],
                r
            )
            .expect("metric names are unique"),
            tcp_received: register_int_counter_vec_with_registry!(
                "istio_tcp_received_bytes_total",
                "Bytes received from clients on proxied TCP connections",
                &["destination_service"],
                r
            )
            .expect("metric names are unique"),
            egress_denied: register_int_counter_vec_with_registry!(
                "portcullis_egress_denied_total",
                "Egress requests refused because the host is not in the registry (mode: forward_proxy, connect, host)",
                &["mode"],
                r
            )
            .expect("metric names are unique"),
            reloads: register_int_counter_vec_with_registry!(
                "portcullis_config_reloads_total",
                "Configuration reloads by result",
                &["result"],
                &agent
            )
            .expect("metric names are unique"),
            config_generation: register_int_gauge_with_registry!(
                "portcullis_config_generation",
                "Generation of the configuration being served",
                &agent
            )
            .expect("metric names are unique"),
            tracing_dropped: register_int_counter_with_registry!(
                "portcullis_tracing_spans_dropped_total",
                "Finished spans dropped because the export queue was full",
                r
            )
            .expect("metric names are unique"),
            registry,
            agent,
        }
    }

    /// The proxy's metric families, Envoy's per-cluster stats computed from `stats` first.
    pub fn proxy_families(&self, stats: &StatsRegistry) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(cluster_families(stats));
        families
    }

    /// The agent's metric families (configuration reloads and generation).
    pub fn agent_families(&self) -> Vec<MetricFamily> {
        self.agent.gather()
    }
}

/// Envoy's cluster stats (`cluster.<name>.upstream_rq_total` ...) from the per-cluster counters,
/// plus the requests that reused an upstream connection (Portcullis' own).
fn cluster_families(stats: &StatsRegistry) -> Vec<MetricFamily> {
    use crate::upstream::stats::ClusterStatsView as V;
    type Field = fn(&V) -> u64;
    const COUNTER: MetricType = MetricType::COUNTER;
    const GAUGE: MetricType = MetricType::GAUGE;
    let views = stats.views();
    let fields: [(&str, &str, MetricType, Field); 9] = [
        (
            "envoy_cluster_upstream_rq_total",
            "Requests sent to the cluster",
            COUNTER,
            |v| v.requests,
        ),
        (
            "envoy_cluster_upstream_rq_active",
            "Requests in flight",
            GAUGE,
            |v| v.active_requests,
        ),
        (
            "envoy_cluster_upstream_rq_pending_overflow",
            "Requests refused by a circuit breaker (UO)",
            COUNTER,
            |v| v.overflows,
        ),
        (
            "envoy_cluster_upstream_cx_total",
            "Upstream connections opened",
            COUNTER,
            |v| v.connections_opened,
        ),
        (
            "envoy_cluster_upstream_cx_active",
            "Upstream connections open",
            GAUGE,
            |v| v.connections_active,
        ),
        (
            "envoy_cluster_upstream_cx_connect_fail",
            "Upstream connection failures",
            COUNTER,
            |v| v.connect_failures,
        ),
        (
            "envoy_cluster_ssl_handshake",
            "TLS handshakes with the upstream",
            COUNTER,
            |v| v.tls_handshakes,
        ),
        (
            "envoy_cluster_outlier_detection_ejections_enforced_total",
            "Outlier ejections",
            COUNTER,
            |v| v.ejections,
        ),
        (
            "portcullis_upstream_rq_reused_total",
            "Requests served on a reused upstream connection",
            COUNTER,
            |v| v.reused_requests,
        ),
    ];
    fields
        .iter()
        .filter(|_| !views.is_empty())
        .map(|(name, help, kind, field)| {
            family(
                name,
                help,
                *kind,
                views
                    .iter()
                    .map(|v| (vec![("cluster_name", v.cluster.clone())], field(v) as f64)),
            )
        })
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
