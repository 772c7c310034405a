//! Envoy's stat vocabulary as Istio's bootstrap names it: listener names, the HTTP connection
//! manager's per-listener counters (resolved once per listener, counted per request), and
//! Prometheus families built from plain counters.

use std::sync::OnceLock;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec};

/// Istio's name for a gateway listener: `0.0.0.0_8080` (`[::]_8080` for IPv6); its HTTP
/// connection manager's stat prefix is `outbound_<name>` (pilot `core/gateway.go`).
pub fn listener_name(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => format!("{}_{}", a.ip(), a.port()),
        std::net::SocketAddr::V6(a) => format!("[{}]_{}", a.ip(), a.port()),
    }
}

/// Envoy's per-HTTP-connection-manager request counters (`http.<prefix>;.downstream_rq_*`,
/// `source/common/http/conn_manager_impl.h` `ALL_HTTP_CONN_MAN_STATS`), tag-extracted as
/// Istio's bootstrap does (`http_conn_manager_prefix`, `response_code_class`).
pub struct ConnManagerMetrics {
    pub total: IntCounterVec,
    pub by_class: IntCounterVec,
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

/// A family of `kind` named `name` with one metric per `(labels, value)`.
pub fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    let metrics = metrics
        .into_iter()
        .map(|(labels, value)| {
            let mut m = Metric::from_label(
                labels
                    .into_iter()
                    .map(|(k, v)| {
                        let mut l = LabelPair::default();
                        l.set_name(k.to_string());
                        l.set_value(v);
                        l
                    })
                    .collect(),
            );
            if kind == MetricType::COUNTER {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            m
        })
        .collect();
    f.set_metric(metrics);
    f
}
