//! Envoy's stats views over the Prometheus metrics: whatever families the metrics hold render as
//! Envoy's admin `/stats` text (`name: value`), its JSON (`?format=json`) and Prometheus
//! (`?format=prometheus`, `/stats/prometheus`), filtered by `?filter=REGEX` (RE2, partial
//! match on the Envoy name), `?usedonly` and `?type=` as Envoy does (Envoy
//! `source/server/admin/stats_params.cc`, `stats_render.cc`, `stats_request.cc`).
//!
//! A family's Envoy name: a family listed in [`ENVOY_NAMES`] renders under Envoy's name with
//! its labels put back where Istio's bootstrap tag extractors took them from
//! (`tools/packaging/common/envoy_bootstrap.json` `stats_tags`, with `use_all_default_tags`
//! off: a cluster's stats are `cluster.<name>;.<stat>`, an HTTP connection manager's
//! `http.<prefix>;.<stat>`, a listener's `listener.<address>.<stat>`, and a response class
//! `…_rq_2xx` becomes `…_rq{response_code_class="2xx"}`); any other family renders
//! as Istio's own metrics do in Envoy's `/stats`: each label as `<label>=.=<value>;.;` before the
//! metric name (`reporter=.=source;.;…;.;istio_requests_total`), no labels: the plain name.
//! A developer adding an Envoy-named metric adds its row to [`ENVOY_NAMES`].

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use serde_json::{json, Value};

pub use crate::telemetry::envoy::family;

/// Prometheus family → Envoy stat name; `{label}` stands for that label's value.
pub const ENVOY_NAMES: &[(&str, &str)] = &[
    ("envoy_server_live", "server.live"),
    ("envoy_server_state", "server.state"),
    ("envoy_server_uptime", "server.uptime"),
    ("envoy_server_concurrency", "server.concurrency"),
    ("envoy_server_memory_allocated", "server.memory_allocated"),
    ("envoy_server_memory_heap_size", "server.memory_heap_size"),
    (
        "envoy_server_memory_physical_size",
        "server.memory_physical_size",
    ),
    (
        "envoy_server_days_until_first_cert_expiring",
        "server.days_until_first_cert_expiring",
    ),
    ("envoy_server_total_connections", "server.total_connections"),
    (
        "envoy_listener_manager_total_listeners_active",
        "listener_manager.total_listeners_active",
    ),
    (
        "envoy_listener_manager_total_listeners_draining",
        "listener_manager.total_listeners_draining",
    ),
    (
        "envoy_listener_downstream_cx_active",
        "listener.{listener_address}.downstream_cx_active",
    ),
    (
        "envoy_listener_downstream_cx_total",
        "listener.{listener_address}.downstream_cx_total",
    ),
    (
        "envoy_http_downstream_rq_total",
        "http.{http_conn_manager_prefix};.downstream_rq_total",
    ),
    (
        "envoy_http_downstream_rq",
        "http.{http_conn_manager_prefix};.downstream_rq_{response_code_class}",
    ),
    (
        "envoy_http_downstream_cx_active",
        "http.{http_conn_manager_prefix};.downstream_cx_active",
    ),
    (
        "envoy_http_downstream_cx_total",
        "http.{http_conn_manager_prefix};.downstream_cx_total",
    ),
    (
        "envoy_cluster_upstream_rq_total",
        "cluster.{cluster_name};.upstream_rq_total",
    ),
    (
        "envoy_cluster_upstream_rq",
        "cluster.{cluster_name};.upstream_rq_{response_code_class}",
    ),
    (
        "envoy_cluster_upstream_rq_completed",
        "cluster.{cluster_name};.upstream_rq_completed",
    ),
    (
        "envoy_cluster_upstream_rq_retry",
        "cluster.{cluster_name};.upstream_rq_retry",
    ),
    (
        "envoy_cluster_upstream_rq_timeout",
        "cluster.{cluster_name};.upstream_rq_timeout",
    ),
    (
        "envoy_cluster_upstream_rq_active",
        "cluster.{cluster_name};.upstream_rq_active",
    ),
    (
        "envoy_cluster_upstream_rq_pending_overflow",
        "cluster.{cluster_name};.upstream_rq_pending_overflow",
    ),
    (
        "envoy_cluster_upstream_cx_total",
        "cluster.{cluster_name};.upstream_cx_total",
    ),
    (
        "envoy_cluster_upstream_cx_active",
        "cluster.{cluster_name};.upstream_cx_active",
    ),
    (
        "envoy_cluster_upstream_cx_connect_fail",
        "cluster.{cluster_name};.upstream_cx_connect_fail",
    ),
    (
        "envoy_cluster_ssl_handshake",
        "cluster.{cluster_name};.ssl.handshake",
    ),
    (
        "envoy_cluster_outlier_detection_ejections_enforced_total",
        "cluster.{cluster_name};.outlier_detection.ejections_enforced_total",
    ),
    (
        "envoy_cluster_outlier_detection_ejections_active",
        "cluster.{cluster_name};.outlier_detection.ejections_active",
    ),
];

/// Envoy's histogram quantiles (`supported_quantiles`), in percent.
const QUANTILES: [f64; 10] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

/// The Envoy name of one metric of `family`.
pub fn envoy_name(family: &str, labels: &[LabelPair]) -> String {
    if let Some((_, template)) = ENVOY_NAMES.iter().find(|(f, _)| *f == family) {
        let mut name = (*template).to_string();
        for l in labels {
            name = name.replace(&format!("{{{}}}", l.name()), l.value());
        }
        return name;
    }
    let mut name = String::new();
    for l in labels {
        name.push_str(&format!("{}=.={};.;", l.name(), l.value()));
    }
    name.push_str(family);
    name
}

/// Which stats a request asks for (`?filter=`, `?usedonly`, `?type=`).
#[derive(Debug, Default)]
pub struct StatsQuery {
    pub filter: Option<regex::Regex>,
    pub used_only: bool,
    pub kind: StatKind,
}

/// `?type=`: Envoy's `All`, `Counters`, `Gauges`, `Histograms`, `TextReadouts`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    #[default]
    All,
    Counters,
    Gauges,
    Histograms,
    TextReadouts,
}

impl StatKind {
    pub fn parse(s: &str) -> Option<StatKind> {
        Some(match s {
            "All" => StatKind::All,
            "Counters" => StatKind::Counters,
            "Gauges" => StatKind::Gauges,
            "Histograms" => StatKind::Histograms,
            "TextReadouts" => StatKind::TextReadouts,
            _ => return None,
        })
    }

    fn admits(self, t: MetricType) -> bool {
        match self {
            StatKind::All => true,
            StatKind::Counters => t == MetricType::COUNTER,
            StatKind::Gauges => t == MetricType::GAUGE,
            StatKind::Histograms => t == MetricType::HISTOGRAM,
            StatKind::TextReadouts => false,
        }
    }
}

/// One metric with its Envoy name.
struct Stat<'a> {
    name: String,
    kind: MetricType,
    metric: &'a Metric,
}

impl Stat<'_> {
    fn value(&self) -> f64 {
        match self.kind {
            MetricType::COUNTER => self.metric.get_counter().value(),
            MetricType::GAUGE => self.metric.get_gauge().value(),
            _ => 0.0,
        }
    }

    /// Envoy's "used": a counter that counted, a histogram with samples; gauges always.
    fn used(&self) -> bool {
        match self.kind {
            MetricType::COUNTER => self.value() != 0.0,
            MetricType::HISTOGRAM => self.metric.get_histogram().get_sample_count() > 0,
            _ => true,
        }
    }
}

impl StatsQuery {
    fn admits(&self, s: &Stat) -> bool {
        self.kind.admits(s.kind)
            && (!self.used_only || s.used())
            && self.filter.as_ref().is_none_or(|f| f.is_match(&s.name))
    }

    /// The admitted stats: counters and gauges sorted by name, then histograms (Envoy's order).
    fn select<'a>(&self, families: &'a [MetricFamily]) -> (Vec<Stat<'a>>, Vec<Stat<'a>>) {
        let mut scalars = Vec::new();
        let mut histograms = Vec::new();
        for f in families {
            for m in f.get_metric() {
                let s = Stat {
                    name: envoy_name(f.name(), m.get_label()),
                    kind: f.get_field_type(),
                    metric: m,
                };
                if !self.admits(&s) {
                    continue;
                }
                match s.kind {
                    MetricType::HISTOGRAM => histograms.push(s),
                    MetricType::SUMMARY => {}
                    _ => scalars.push(s),
                }
            }
        }
        scalars.sort_by(|a, b| a.name.cmp(&b.name));
        histograms.sort_by(|a, b| a.name.cmp(&b.name));
        (scalars, histograms)
    }

    /// Envoy's text form: `name: value` lines, then `name: P0(interval,cumulative) P25(..)..`.
    pub fn text(&self, families: &[MetricFamily]) -> String {
        let (scalars, histograms) = self.select(families);
        let mut out = String::new();
        for s in scalars {
            out.push_str(&format!("{}: {}\n", s.name, number(s.value())));
        }
        for h in histograms {
            match quantiles(h.metric) {
                None => out.push_str(&format!("{}: No recorded values\n", h.name)),
                Some(q) => {
                    let parts: Vec<String> = QUANTILES
                        .iter()
                        .zip(q)
                        .map(|(p, v)| format!("P{}(nan,{})", number(*p), number(v)))
                        .collect();
                    out.push_str(&format!("{}: {}\n", h.name, parts.join(" ")));
                }
            }
        }
        out
    }

    /// Envoy's `?format=json`: `{"stats": [{"name", "value"}.., {"histograms": {..}}]}`.
    pub fn json(&self, families: &[MetricFamily]) -> Value {
        let (scalars, histograms) = self.select(families);
        let mut stats: Vec<Value> = scalars
            .iter()
            .map(|s| json!({"name": s.name, "value": s.value()}))
            .collect();
        if !histograms.is_empty() {
            let computed: Vec<Value> = histograms
                .iter()
                .map(|h| {
                    let values: Vec<Value> = match quantiles(h.metric) {
                        Some(q) => q
                            .iter()
                            .map(|v| json!({"interval": null, "cumulative": v}))
                            .collect(),
                        None => QUANTILES
                            .iter()
                            .map(|_| json!({"interval": null, "cumulative": null}))
                            .collect(),
                    };
                    json!({"name": h.name, "values": values})
                })
                .collect();
            stats.push(json!({"histograms": {
                "supported_quantiles": QUANTILES,
                "computed_quantiles": computed,
            }}));
        }
        json!({ "stats": stats })
    }

    /// The Prometheus text exposition of the admitted metrics.
    pub fn prometheus(&self, families: &[MetricFamily]) -> String {
        let selected: Vec<MetricFamily> = families
            .iter()
            .filter_map(|f| {
                let metrics: Vec<Metric> = f
                    .get_metric()
                    .iter()
                    .filter(|m| {
                        self.admits(&Stat {
                            name: envoy_name(f.name(), m.get_label()),
                            kind: f.get_field_type(),
                            metric: m,
                        })
                    })
                    .cloned()
                    .collect();
                (!metrics.is_empty()).then(|| {
                    let mut f = f.clone();
                    f.set_metric(metrics);
                    f
                })
            })
            .collect();
        encode(&selected)
    }
}

/// The Prometheus text exposition of `families` (empty families left out).
pub fn encode(families: &[MetricFamily]) -> String {
    let non_empty: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&non_empty, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Envoy prints integers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

/// The cumulative value at each of Envoy's quantiles, interpolated within the Prometheus
/// buckets (as `histogram_quantile` does); `None` without samples.
fn quantiles(m: &Metric) -> Option<Vec<f64>> {
    let h = m.get_histogram();
    let count = h.get_sample_count();
    if count == 0 {
        return None;
    }
    let buckets = h.get_bucket();
    let mut out = Vec::with_capacity(QUANTILES.len());
    for q in QUANTILES {
        let rank = q / 100.0 * count as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        let mut value = buckets.last().map_or(0.0, |b| b.upper_bound());
        for b in buckets {
            let upper = b.upper_bound();
            let cum = b.cumulative_count();
            if (cum as f64) >= rank && cum > below {
                let within = (rank - below as f64) / (cum - below) as f64;
                value = lower + (upper - lower) * within.clamp(0.0, 1.0);
                break;
            }
            lower = upper;
            below = cum;
        }
        out.push(value);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetricFamily> {
        let reg = prometheus::Registry::new();
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("istio_requests_total", "r"),
            &["reporter", "response_code"],
        )
        .unwrap();
        reg.register(Box::new(requests.clone())).unwrap();
        requests.with_label_values(&["source", "200"]).inc_by(3);
        let h = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("istio_request_duration_milliseconds", "d")
                .buckets(vec![1.0, 10.0, 100.0]),
            &["reporter"],
        )
        .unwrap();
        reg.register(Box::new(h.clone())).unwrap();
        h.with_label_values(&["source"]).observe(5.0);
        let mut fams = reg.gather();
        fams.push(family(
            "envoy_cluster_upstream_rq_total",
            "requests",
            MetricType::COUNTER,
            [
                (
                    vec![("cluster_name", "outbound|80||a.svc".to_string())],
                    7.0,
                ),
                (
                    vec![("cluster_name", "outbound|80||b.svc".to_string())],
                    0.0,
                ),
            ],
        ));
        fams.push(family(
            "envoy_server_live",
            "live",
            MetricType::GAUGE,
            [(vec![], 1.0)],
        ));
        fams
    }

    // Envoy `stats_render.cc` StatsTextRender: `name: value`; Istio's names as its bootstrap's
    // stats_tags produce them (`cluster.<name>;.` from `alt_stat_name`, `tag=.=value;.;`).
    #[test]
    fn text_form_uses_envoy_and_istio_names() {
        let text = StatsQuery::default().text(&sample());
        assert!(
            text.contains("cluster.outbound|80||a.svc;.upstream_rq_total: 7\n"),
            "{text}"
        );
        assert!(
            text.contains("reporter=.=source;.;response_code=.=200;.;istio_requests_total: 3\n"),
            "{text}"
        );
        assert!(text.contains("server.live: 1\n"), "{text}");
        assert!(
            text.contains("reporter=.=source;.;istio_request_duration_milliseconds: P0(nan,"),
            "{text}"
        );
        let names: Vec<&str> = text
            .lines()
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        let scalars: Vec<&str> = names[..names.len() - 1].to_vec();
        let mut sorted = scalars.clone();
        sorted.sort();
        assert_eq!(scalars, sorted, "sorted by name, histograms last");
    }

    #[test]
    fn filter_usedonly_and_type_select_as_envoy_does() {
        let q = StatsQuery {
            filter: Some(regex::Regex::new("upstream_rq_total$").unwrap()),
            used_only: true,
            kind: StatKind::All,
        };
        assert_eq!(
            q.text(&sample()),
            "cluster.outbound|80||a.svc;.upstream_rq_total: 7\n"
        );
        let gauges = StatsQuery {
            kind: StatKind::Gauges,
            ..Default::default()
        };
        assert_eq!(gauges.text(&sample()), "server.live: 1\n");
    }

    #[test]
    fn json_and_prometheus_forms() {
        let v = StatsQuery::default().json(&sample());
        let stats = v["stats"].as_array().unwrap();
        assert!(stats
            .iter()
            .any(|s| s["name"] == "server.live" && s["value"] == 1.0));
        let hist = &stats.last().unwrap()["histograms"];
        assert_eq!(hist["supported_quantiles"][2], 50.0);
        assert_eq!(
            hist["computed_quantiles"][0]["values"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        let q = StatsQuery {
            filter: Some(regex::Regex::new("^cluster\\.").unwrap()),
            ..Default::default()
        };
        let prom = q.prometheus(&sample());
        assert!(
            prom.contains("envoy_cluster_upstream_rq_total{cluster_name=\"outbound|80||a.svc\"} 7"),
            "{prom}"
        );
        assert!(!prom.contains("istio_requests_total"), "{prom}");
    }
}
