//! The Prometheus registries: Istio's standard metrics (`istio_*`, see [`super::istio`]),
//! Envoy's HTTP connection manager stats (`envoy_http_downstream_rq_*`, per listener), the
//! process collector (`process_*`), and Portcullis' own (`portcullis_*`) for egress refusals
//! and reloads. Envoy's cluster, listener and server stats are computed from their counters when
//! scraped (`upstream::stats`, `runtime::server`, `admin::stats`).
//!
//! Two sets, as in an istio-ingressgateway pod: the proxy's ([`Metrics::proxy_families`], what
//! Envoy serves on 15090) and the agent's ([`Metrics::agent_families`], configuration reloads:
//! what istio-agent adds on 15020 about the config it feeds the proxy).

use std::sync::OnceLock;

use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, register_int_gauge_with_registry, IntCounter,
    IntCounterVec, IntGauge, Registry,
};

use super::istio::{IstioMetrics, ENVOY_BUCKETS, HTTP_LABELS, TCP_LABELS};
use super::stats::family;

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
}

/// Envoy's per-HTTP-connection-manager request counters (`http.<prefix>;.downstream_rq_*`,
/// `source/common/http/conn_manager_impl.h` `ALL_HTTP_CONN_MAN_STATS`), tag-extracted as
/// Istio's bootstrap does (`http_conn_manager_prefix`, `response_code_class`).
pub struct ConnManagerMetrics {
    total: IntCounterVec,
    by_class: IntCounterVec,
}

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
            registry,
            agent,
        }
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

/// One HTTP connection manager's counters (a listener's), resolved on first use.
#[derive(Debug)]
pub struct ConnManagerStats {
    /// Istio's stat prefix of a gateway listener: `outbound_<listener name>`.
    pub prefix: String,
    handles: OnceLock<[IntCounter; 6]>,
}

impl ConnManagerStats {
    pub fn new(prefix: String) -> ConnManagerStats {
        ConnManagerStats {
            prefix,
            handles: OnceLock::new(),
        }
    }

    /// Counts a request answered with `status` (0: no response was sent).
    pub fn record(&self, m: &ConnManagerMetrics, status: u16) {
        let h = self.handles.get_or_init(|| {
            let class = |c: &str| m.by_class.with_label_values(&[self.prefix.as_str(), c]);
            [
                m.total.with_label_values(&[self.prefix.as_str()]),
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ]
        });
        h[0].inc();
        if let 100..=599 = status {
            h[usize::from(status / 100)].inc();
        }
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
        let s = ConnManagerStats::new("outbound_0.0.0.0_8080".into());
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
