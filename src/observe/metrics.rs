//! The Prometheus registries: Istio's standard metrics (`istio_*`, see [`crate::telemetry::istio`]),
//! Envoy's HTTP connection manager stats (`envoy_http_downstream_rq_*`, per listener), the
//! process collector (`process_*`), and Portcullis' own (`portcullis_*`) for egress refusals,
//! reloads and what the configuration being served leaves out. Envoy's cluster, listener and server stats are computed from their counters when
//! scraped (`upstream::stats`, `runtime::server`, `admin::stats`).
//!
//! Two sets, as in an istio-ingressgateway pod: the proxy's ([`Metrics::proxy_families`], what
//! Envoy serves on 15090) and the agent's ([`Metrics::agent_families`], configuration reloads
//! and what they left out: what istio-agent adds on 15020 about the config it feeds the proxy).

use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_vec_with_registry,
    register_int_gauge_with_registry, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::telemetry::envoy::{family, ConnManagerMetrics};
use crate::telemetry::istio::{IstioMetrics, ENVOY_BUCKETS, HTTP_LABELS, TCP_LABELS};

pub struct Metrics {
    /// The proxy's metrics (what Envoy exports).
    registry: Registry,
    /// The agent's metrics: configuration reloads.
    agent: Registry,
    pub istio: IstioMetrics,
    pub http: ConnManagerMetrics,
    pub egress_denied: IntCounterVec,
    pub reloads: IntCounterVec,
    pub config_generation: IntGauge,
    resources_rejected: IntGaugeVec,
    parts_rejected: IntGauge,
    files_stale: IntGauge,
    /// Finished spans dropped because the export queue was full (`telemetry::tracing`).
    pub tracing_dropped: IntCounter,
}

/// The kinds `portcullis_config_resources_rejected` always reports, 0 included.
const SERVED_KINDS: [&str; 6] = [
    "Gateway",
    "VirtualService",
    "ServiceEntry",
    "DestinationRule",
    "AuthorizationPolicy",
    "RequestAuthentication",
];

#[allow(
    clippy::expect_used,
    reason = "registration fails only on duplicate or malformed names, fixed here"
)]
pub fn istio_metrics(r: &Registry) -> IstioMetrics {
    let counter = |name: &str, help: &str, labels: &[&str]| {
        register_int_counter_vec_with_registry!(name, help, labels, r)
            .expect("metric names are unique")
    };
    let histogram = |name: &str, help: &str| {
        register_histogram_vec_with_registry!(name, help, &HTTP_LABELS, ENVOY_BUCKETS.to_vec(), r)
            .expect("metric names are unique")
    };
    IstioMetrics {
        requests: counter("istio_requests_total", "Requests", &HTTP_LABELS),
        duration: histogram(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
        ),
        request_bytes: histogram("istio_request_bytes", "Request sizes in bytes"),
        response_bytes: histogram("istio_response_bytes", "Response sizes in bytes"),
        request_messages: counter(
            "istio_request_messages_total",
            "gRPC messages received from the client",
            &HTTP_LABELS,
        ),
        response_messages: counter(
            "istio_response_messages_total",
            "gRPC messages sent to the client",
            &HTTP_LABELS,
        ),
        tcp_opened: counter(
            "istio_tcp_connections_opened_total",
            "TCP connections opened",
            &TCP_LABELS,
        ),
        tcp_closed: counter(
            "istio_tcp_connections_closed_total",
            "TCP connections closed",
            &TCP_LABELS,
        ),
        tcp_sent: counter(
            "istio_tcp_sent_bytes_total",
            "Bytes sent to the client on TCP connections",
            &TCP_LABELS,
        ),
        tcp_received: counter(
            "istio_tcp_received_bytes_total",
            "Bytes received from the client on TCP connections",
            &TCP_LABELS,
        ),
    }
}

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "registration fails only on duplicate or malformed names, fixed here"
    )]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let agent = Registry::new();
        let r = &registry;
        let istio = istio_metrics(r);
        // Istio's stats filter publishes the proxy's version (`recordVersion`).
        let build = register_int_gauge_vec_with_registry!(
            "istio_build",
            "The proxy's version",
            &["component", "tag"],
            r
        )
        .expect("metric names are unique");
        build
            .with_label_values(&["proxy", concat!("portcullis-", env!("CARGO_PKG_VERSION"))])
            .set(1);
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            istio,
            http: ConnManagerMetrics {
                total: register_int_counter_vec_with_registry!(
                    "envoy_http_downstream_rq_total",
                    "Requests received",
                    &["http_conn_manager_prefix"],
                    r
                )
                .expect("metric names are unique"),
                by_class: register_int_counter_vec_with_registry!(
                    "envoy_http_downstream_rq",
                    "Responses by class (response_code_class 1xx to 5xx)",
                    &["http_conn_manager_prefix", "response_code_class"],
                    r
                )
                .expect("metric names are unique"),
            },
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
            resources_rejected: register_int_gauge_vec_with_registry!(
                "portcullis_config_resources_rejected",
                "Resources the configuration being served leaves out because Istio's webhook would reject them (or they repeat a name, or are not valid YAML: kind Document), by kind",
                &["kind"],
                &agent
            )
            .expect("metric names are unique"),
            parts_rejected: register_int_gauge_with_registry!(
                "portcullis_config_parts_rejected",
                "Parts of resources the configuration being served leaves out: Gateway servers whose certificate does not load, routes and destinations that cannot be built",
                &agent
            )
            .expect("metric names are unique"),
            files_stale: register_int_gauge_with_registry!(
                "portcullis_config_files_stale",
                "Config files (and the mesh file) served from their last good contents because the current file does not parse or cannot be read",
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

    /// Publishes what the configuration being served leaves out: rejected resources by kind,
    /// parts, stale files.
    pub fn left_out(
        &self,
        resources_by_kind: &std::collections::BTreeMap<String, usize>,
        parts: usize,
        stale_files: usize,
    ) {
        self.resources_rejected.reset();
        for kind in SERVED_KINDS {
            self.resources_rejected.with_label_values(&[kind]).set(0);
        }
        for (kind, n) in resources_by_kind {
            self.resources_rejected
                .with_label_values(&[kind.as_str()])
                .set(*n as i64);
        }
        self.parts_rejected.set(parts as i64);
        self.files_stale.set(stale_files as i64);
    }

    /// The proxy's registered metric families (Istio's, Envoy's HTTP ones, the process').
    pub fn proxy_families(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(memory_families());
        families
    }

    /// The agent's metric families (configuration reloads and generation).
    pub fn agent_families(&self) -> Vec<MetricFamily> {
        self.agent.gather()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Envoy's `server.memory_allocated`, `memory_heap_size` and `memory_physical_size` from the
/// allocator: what mimalloc has committed and its resident estimate (0 when another allocator
/// serves the process).
fn memory_families() -> Vec<MetricFamily> {
    let (mut rss, mut commit) = (0usize, 0usize);
    let null = std::ptr::null_mut();
    // SAFETY: mi_process_info writes only through the non-null out-pointers it is given.
    unsafe {
        libmimalloc_sys::mi_process_info(null, null, null, &mut rss, null, &mut commit, null, null)
    };
    let gauge = |name: &str, help: &str, v: usize| {
        family(name, help, MetricType::GAUGE, [(vec![], v as f64)])
    };
    vec![
        gauge(
            "envoy_server_memory_allocated",
            "Bytes the allocator has committed for the heap",
            commit,
        ),
        gauge(
            "envoy_server_memory_heap_size",
            "Bytes the allocator has reserved for the heap",
            commit,
        ),
        gauge(
            "envoy_server_memory_physical_size",
            "Resident bytes of the heap",
            rss,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Envoy conn_manager_impl.h ALL_HTTP_CONN_MAN_STATS: downstream_rq_total and
    // downstream_rq_<N>xx; Istio's bootstrap tags the class as response_code_class="2xx".
    #[test]
    fn connection_manager_counts_requests_by_class() {
        let m = Metrics::new();
        let s = crate::telemetry::envoy::ConnManagerStats::new("outbound_0.0.0.0_8080".into());
        s.record(&m.http, 200);
        s.record(&m.http, 503);
        s.record(&m.http, 0);
        let out = super::super::stats::encode(&m.proxy_families());
        assert!(
            out.contains("envoy_http_downstream_rq_total{http_conn_manager_prefix=\"outbound_0.0.0.0_8080\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("envoy_http_downstream_rq{http_conn_manager_prefix=\"outbound_0.0.0.0_8080\",response_code_class=\"5xx\"} 1"),
            "{out}"
        );
        assert!(out.contains("istio_build{component=\"proxy\""), "{out}");
        assert!(out.contains("process_cpu_seconds_total"), "{out}");
        assert!(out.contains("envoy_server_memory_allocated "), "{out}");
    }
}
