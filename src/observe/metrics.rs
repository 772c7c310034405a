//! Prometheus metrics named as Istio's standard metrics where one exists
//! (`istio_requests_total`, `istio_request_duration_milliseconds`, `istio_tcp_*`), plus
//! Portcullis' own (`portcullis_*`) for egress refusals, reloads, what the configuration being
//! served leaves out, and upstream connection reuse.

use prometheus::{
    exponential_buckets, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry, register_int_gauge_vec_with_registry,
    register_int_gauge_with_registry, Encoder, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

use crate::upstream::StatsRegistry;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub tcp_opened: IntCounterVec,
    pub tcp_closed: IntCounterVec,
    pub tcp_sent: IntCounterVec,
    pub tcp_received: IntCounterVec,
    pub egress_denied: IntCounterVec,
    pub reloads: IntCounterVec,
    pub config_generation: IntGauge,
    resources_rejected: IntGaugeVec,
    parts_rejected: IntGauge,
    files_stale: IntGauge,
    upstream: IntGaugeVec,
}

/// The kinds `portcullis_config_resources_rejected` always reports, 0 included.
const SERVED_KINDS: [&str; 4] = [
    "Gateway",
    "VirtualService",
    "ServiceEntry",
    "DestinationRule",
];

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
                r
            )
            .expect("metric names are unique"),
            config_generation: register_int_gauge_with_registry!(
                "portcullis_config_generation",
                "Generation of the configuration being served",
                r
            )
            .expect("metric names are unique"),
            resources_rejected: register_int_gauge_vec_with_registry!(
                "portcullis_config_resources_rejected",
                "Resources the configuration being served leaves out because Istio's webhook would reject them (or they repeat a name, or are not valid YAML: kind Document), by kind",
                &["kind"],
                r
            )
            .expect("metric names are unique"),
            parts_rejected: register_int_gauge_with_registry!(
                "portcullis_config_parts_rejected",
                "Parts of resources the configuration being served leaves out: Gateway servers whose certificate does not load, routes and destinations that cannot be built",
                r
            )
            .expect("metric names are unique"),
            files_stale: register_int_gauge_with_registry!(
                "portcullis_config_files_stale",
                "Config files served from their last good contents because the current file does not parse or cannot be read",
                r
            )
            .expect("metric names are unique"),
            upstream: register_int_gauge_vec_with_registry!(
                "portcullis_upstream",
                "Per-cluster upstream counters (requests, connections opened, TLS handshakes, reused requests, overflows)",
                &["cluster", "counter"],
                r
            )
            .expect("metric names are unique"),
            registry,
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

    /// The Prometheus text exposition, with per-cluster counters refreshed first.
    pub fn render(&self, stats: &StatsRegistry) -> String {
        for v in stats.views() {
            for (name, value) in [
                ("requests", v.requests),
                ("active_requests", v.active_requests),
                ("connections_opened", v.connections_opened),
                ("connections_active", v.connections_active),
                ("tls_handshakes", v.tls_handshakes),
                ("reused_requests", v.reused_requests),
                ("overflows", v.overflows),
                ("connect_failures", v.connect_failures),
            ] {
                self.upstream
                    .with_label_values(&[v.cluster.as_str(), name])
                    .set(value as i64);
            }
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
