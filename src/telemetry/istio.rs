//! Istio's standard metrics, with the labels and values Istio's gateway reports (istio/proxy
//! `source/extensions/filters/http/istio_stats/istio_stats.cc`): `istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`,
//! `istio_request_messages_total` / `istio_response_messages_total` (gRPC),
//! `istio_tcp_connections_opened_total` / `_closed_total`, `istio_tcp_sent_bytes_total` /
//! `_received_bytes_total`, and `istio_build`.
//!
//! A gateway's listeners are outbound, so its stats filter reports as a client (`reporter`
//! `source`; `Reporter::ClientSidecar`): the source side is the gateway itself ([`Workload`]),
//! the destination side comes from the cluster's service and the chosen endpoint's metadata
//! ([`Destination`], decided per cluster when a config is compiled), and the request adds
//! `request_protocol`, `response_code`, `grpc_response_status`, `response_flags` and
//! `connection_security_policy` (always `unknown` on the client side).
//!
//! Counting stays off the hot path: the 20 labels a cluster fixes are joined once per reload
//! into a [`LabelSet`], and the metric handles for each combination of the per-request labels
//! are resolved once and cached in it, so a request costs a short lookup and a few atomic adds.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use super::workload::Workload;

pub const UNKNOWN: &str = "unknown";

/// Envoy's default histogram buckets (`source/common/stats/histogram_impl.cc`
/// `HistogramSettingsImpl::defaultBuckets`), which Istio's Prometheus output uses for every
/// histogram unless the pod overrides them.
pub const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The labels of a TCP metric, in the order a [`LabelSet`] keeps their values.
pub const TCP_LABELS: [&str; 23] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "destination_canonical_service",
    "destination_canonical_revision",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
];

/// The labels of an HTTP metric: the TCP ones plus the response's.
pub const HTTP_LABELS: [&str; 25] = {
    let mut out = [""; 25];
    let mut i = 0;
    while i < TCP_LABELS.len() {
        out[i] = TCP_LABELS[i];
        i += 1;
    }
    out[23] = "response_code";
    out[24] = "grpc_response_status";
    out
};

/// How many labels a cluster fixes (everything before `request_protocol`).
const FIXED: usize = 20;

/// The destination side of the labels, as the client-side stats filter fills it from the
/// cluster's `istio.services` metadata (service host and name) and the endpoint's
/// `istio.workload` metadata (`workload;namespace;canonical-service;canonical-revision;cluster`,
/// pilot `pkg/networking/util/util.go` `AppendLbEndpointMetadata`); `unknown` where neither
/// says (`latest` for the canonical revision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub workload: String,
    pub workload_namespace: String,
    pub principal: String,
    pub app: String,
    pub version: String,
    pub service: String,
    pub service_name: String,
    pub service_namespace: String,
    pub cluster: String,
    pub canonical_service: String,
    pub canonical_revision: String,
}

impl Default for Destination {
    fn default() -> Self {
        Destination::unknown()
    }
}

impl Destination {
    /// Nothing known: a request that reached no cluster (no route, a direct response).
    pub fn unknown() -> Destination {
        let u = || UNKNOWN.to_string();
        Destination {
            workload: u(),
            workload_namespace: u(),
            principal: u(),
            app: u(),
            version: u(),
            service: u(),
            service_name: u(),
            service_namespace: u(),
            cluster: u(),
            canonical_service: u(),
            canonical_revision: "latest".to_string(),
        }
    }

    /// What two endpoints of a cluster have in common; where they differ, what Istio reports
    /// when it does not know (for a pick this process cannot tell apart).
    pub fn common(&self, other: &Destination) -> Destination {
        let pick = |a: &String, b: &String, none: &str| {
            if a == b {
                a.clone()
            } else {
                none.to_string()
            }
        };
        Destination {
            workload: pick(&self.workload, &other.workload, UNKNOWN),
            workload_namespace: pick(&self.workload_namespace, &other.workload_namespace, UNKNOWN),
            principal: pick(&self.principal, &other.principal, UNKNOWN),
            app: pick(&self.app, &other.app, UNKNOWN),
            version: pick(&self.version, &other.version, UNKNOWN),
            service: pick(&self.service, &other.service, UNKNOWN),
            service_name: pick(&self.service_name, &other.service_name, UNKNOWN),
            service_namespace: pick(&self.service_namespace, &other.service_namespace, UNKNOWN),
            cluster: pick(&self.cluster, &other.cluster, UNKNOWN),
            canonical_service: pick(&self.canonical_service, &other.canonical_service, UNKNOWN),
            canonical_revision: pick(
                &self.canonical_revision,
                &other.canonical_revision,
                "latest",
            ),
        }
    }
}

/// The per-request part of an HTTP metric's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpKey {
    pub grpc: bool,
    pub response_code: u16,
    /// The gRPC status (gRPC requests only; `-1` for one that is not a known code).
    pub grpc_status: Option<i32>,
    /// Envoy's short response flags, `-` for none.
    pub response_flags: &'static str,
}

/// One finished HTTP request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct HttpSample {
    pub key: HttpKey,
    pub duration_ms: f64,
    /// Bytes received from the client (request head and body).
    pub request_bytes: u64,
    /// Bytes sent to the client (response head and body).
    pub response_bytes: u64,
    /// gRPC messages received from and sent to the client.
    pub messages: (u64, u64),
}

/// The handles of one HTTP label combination.
pub struct HttpHandles {
    requests: IntCounter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
    /// gRPC only: request and response messages.
    messages: Option<(IntCounter, IntCounter)>,
}

/// The handles of one TCP label combination.
pub struct TcpHandles {
    pub opened: IntCounter,
    pub closed: IntCounter,
    pub sent: IntCounter,
    pub received: IntCounter,
}

/// Handles resolved per key, read without a lock (a short list: a cluster sees few distinct
/// status codes and flags); a miss resolves under a mutex and publishes a new list.
struct Cache<K, V> {
    entries: ArcSwap<Vec<(K, Arc<V>)>>,
    insert: Mutex<()>,
}

impl<K: PartialEq + Copy, V> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: ArcSwap::from_pointee(Vec::new()),
            insert: Mutex::new(()),
        }
    }

    fn get(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some((_, v)) = self.entries.load().iter().find(|(k, _)| *k == key) {
            return v.clone();
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.entries.load_full();
        if let Some((_, v)) = current.iter().find(|(k, _)| *k == key) {
            return v.clone();
        }
        let v = Arc::new(make());
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        next.push((key, v.clone()));
        self.entries.store(Arc::new(next));
        v
    }

    /// Calls `f` with the handles for `key`, resolving them on first use.
    fn with<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        if let Some((_, v)) = self.entries.load().iter().find(|(k, _)| *k == key) {
            return f(v);
        }
        f(&self.get(key, make))
    }
}

/// The labels a cluster (or one of its endpoints) fixes, joined once per reload, and the
/// metric handles resolved from them.
pub struct LabelSet {
    values: [String; FIXED],
    http: Cache<HttpKey, HttpHandles>,
    tcp: Cache<&'static str, TcpHandles>,
}

impl std::fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelSet")
            .field("values", &self.values)
            .finish()
    }
}

impl LabelSet {
    /// `source_principal` is the URI SAN of the certificate the gateway presents upstream
    /// (`unknown` without one).
    pub fn new(source: &Workload, source_principal: &str, d: &Destination) -> LabelSet {
        let s = |v: &str| v.to_string();
        LabelSet {
            values: [
                s("source"),
                s(&source.name),
                s(&source.namespace),
                s(source_principal),
                s(&source.app),
                s(&source.version),
                s(&source.cluster),
                s(&source.canonical_service),
                s(&source.canonical_revision),
                s(&d.workload),
                s(&d.workload_namespace),
                s(&d.principal),
                s(&d.app),
                s(&d.version),
                s(&d.service),
                s(&d.service_name),
                s(&d.service_namespace),
                s(&d.cluster),
                s(&d.canonical_service),
                s(&d.canonical_revision),
            ],
            http: Cache::new(),
            tcp: Cache::new(),
        }
    }

    /// The value of label `name` (for tests and the config dump).
    pub fn value(&self, name: &str) -> Option<&str> {
        let i = TCP_LABELS.iter().position(|l| *l == name)?;
        self.values.get(i).map(String::as_str)
    }

    fn http_values<'a>(&'a self, key: &HttpKey, code: &'a str, grpc: &'a str) -> [&'a str; 25] {
        let protocol = if key.grpc { "grpc" } else { "http" };
        let tail = [protocol, key.response_flags, UNKNOWN, code, grpc];
        std::array::from_fn(|i| match self.values.get(i) {
            Some(v) => v.as_str(),
            None => tail[i - FIXED],
        })
    }

    fn tcp_values<'a>(&'a self, flags: &'a str) -> [&'a str; 23] {
        let tail = ["tcp", flags, UNKNOWN];
        std::array::from_fn(|i| match self.values.get(i) {
            Some(v) => v.as_str(),
            None => tail[i - FIXED],
        })
    }

    /// Counts one finished HTTP request.
    pub fn record_http(&self, m: &IstioMetrics, s: &HttpSample) {
        let resolve = || {
            let code = s.key.response_code.to_string();
            let grpc = s.key.grpc_status.map(|g| g.to_string()).unwrap_or_default();
            let v = self.http_values(&s.key, &code, &grpc);
            HttpHandles {
                requests: m.requests.with_label_values(&v),
                duration: m.duration.with_label_values(&v),
                request_bytes: m.request_bytes.with_label_values(&v),
                response_bytes: m.response_bytes.with_label_values(&v),
                messages: s.key.grpc.then(|| {
                    (
                        m.request_messages.with_label_values(&v),
                        m.response_messages.with_label_values(&v),
                    )
                }),
            }
        };
        self.http.with(s.key, resolve, |h| {
            h.requests.inc();
            h.duration.observe(s.duration_ms);
            h.request_bytes.observe(s.request_bytes as f64);
            h.response_bytes.observe(s.response_bytes as f64);
            if let Some((req, resp)) = &h.messages {
                req.inc_by(s.messages.0);
                resp.inc_by(s.messages.1);
            }
        })
    }

    /// The TCP counters for connections that ended with `flags` (`-` for none).
    pub fn tcp(&self, m: &IstioMetrics, flags: &'static str) -> Arc<TcpHandles> {
        self.tcp.get(flags, || {
            let v = self.tcp_values(flags);
            TcpHandles {
                opened: m.tcp_opened.with_label_values(&v),
                closed: m.tcp_closed.with_label_values(&v),
                sent: m.tcp_sent.with_label_values(&v),
                received: m.tcp_received.with_label_values(&v),
            }
        })
    }
}

/// A cluster's label sets: one per endpoint whose metadata differs, and the one for a pick
/// that is not one of them.
#[derive(Debug)]
pub struct PeerLabels {
    pub default: LabelSet,
    pub endpoints: Box<[(SocketAddr, LabelSet)]>,
}

impl PeerLabels {
    pub fn new(default: LabelSet) -> PeerLabels {
        PeerLabels {
            default,
            endpoints: Box::new([]),
        }
    }

    /// The labels of a request answered by `endpoint` (the default set when unknown).
    pub fn of(&self, endpoint: Option<SocketAddr>) -> &LabelSet {
        match endpoint {
            Some(a) if !self.endpoints.is_empty() => self
                .endpoints
                .iter()
                .find(|(e, _)| *e == a)
                .map_or(&self.default, |(_, l)| l),
            _ => &self.default,
        }
    }
}

/// The Istio metric families (registered in the proxy's registry by `Metrics`).
pub struct IstioMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub request_bytes: HistogramVec,
    pub response_bytes: HistogramVec,
    pub request_messages: IntCounterVec,
    pub response_messages: IntCounterVec,
    pub tcp_opened: IntCounterVec,
    pub tcp_closed: IntCounterVec,
    pub tcp_sent: IntCounterVec,
    pub tcp_received: IntCounterVec,
}

/// A client connection whose bytes count as they flow (`istio_tcp_received_bytes_total` on
/// reads, `istio_tcp_sent_bytes_total` on writes), so a long connection shows its traffic
/// before it closes (Istio reports every `tcp_reporting_duration`, 5 s by default).
pub struct Metered<S> {
    inner: S,
    received: IntCounter,
    sent: IntCounter,
}

impl<S> Metered<S> {
    pub fn new(inner: S, handles: &TcpHandles) -> Metered<S> {
        Metered {
            inner,
            received: handles.received.clone(),
            sent: handles.sent.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.received.inc_by((buf.filled().len() - before) as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.sent.inc_by(n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The gRPC status of a response (Envoy `source/common/grpc/common.cc` `getGrpcStatus`): the
/// trailers' `grpc-status`, else the headers', else the one mapped from the HTTP status
/// (`source/common/grpc/status.cc` `httpToGrpcStatus`). A value that is not a known code is
/// `-1` (`InvalidCode`).
pub fn grpc_status(trailers: Option<&str>, headers: Option<&str>, http_status: u16) -> i32 {
    let parse = |v: &str| match v.trim().parse::<u32>() {
        Ok(n) if n <= 16 => n as i32,
        _ => -1,
    };
    if let Some(v) = trailers.or(headers) {
        return parse(v);
    }
    match http_status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

fn headers_len(headers: &http::HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum()
}

/// The request head's size as HTTP/1.1 puts it on the wire (Istio's `istio_request_bytes` is
/// the downstream connection's wire bytes, Envoy's `getDownstreamBytesMeter`).
pub fn request_head_len(req: &pingora::http::RequestHeader) -> u64 {
    let uri = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    (req.method.as_str().len() + uri + 12) as u64 + headers_len(&req.headers) + 2
}

/// The response head's size as HTTP/1.1 puts it on the wire.
pub fn response_head_len(resp: &pingora::http::ResponseHeader) -> u64 {
    let reason = resp.status.canonical_reason().map_or(0, str::len);
    (15 + reason) as u64 + headers_len(&resp.headers) + 2
}

/// Envoy's `Grpc::Common::isGrpcRequestHeaders`: `content-type` is `application/grpc` or
/// `application/grpc+...` (not gRPC-Web).
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|c| {
        c.strip_prefix(b"application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'+')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> (prometheus::Registry, IstioMetrics) {
        let r = prometheus::Registry::new();
        let m = crate::observe::metrics::istio_metrics(&r);
        (r, m)
    }

    fn sample(code: u16, flags: &'static str) -> HttpSample {
        HttpSample {
            key: HttpKey {
                grpc: false,
                response_code: code,
                grpc_status: None,
                response_flags: flags,
            },
            duration_ms: 3.0,
            request_bytes: 100,
            response_bytes: 2000,
            messages: (0, 0),
        }
    }

    fn text(r: &prometheus::Registry) -> String {
        crate::observe::stats::encode(&r.gather())
    }

    // istio_stats.cc, Reporter::ClientSidecar: reporter "source", the node's identity as the
    // source, connection_security_policy "unknown", grpc_response_status "" for HTTP.
    #[test]
    fn a_request_carries_all_25_labels_with_istios_values() {
        let (r, m) = metrics();
        let labels = LabelSet::new(&Workload::default(), UNKNOWN, &Destination::unknown());
        labels.record_http(&m, &sample(404, "NR"));
        let out = text(&r);
        let line = out
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .unwrap();
        for l in HTTP_LABELS {
            assert!(line.contains(&format!("{l}=")), "{l} missing: {line}");
        }
        for pair in [
            "reporter=\"source\"",
            "source_workload=\"istio-ingressgateway\"",
            "source_workload_namespace=\"istio-system\"",
            "source_canonical_revision=\"latest\"",
            "source_cluster=\"Kubernetes\"",
            "destination_service=\"unknown\"",
            "destination_canonical_revision=\"latest\"",
            "request_protocol=\"http\"",
            "response_code=\"404\"",
            "response_flags=\"NR\"",
            "connection_security_policy=\"unknown\"",
            "grpc_response_status=\"\"",
        ] {
            assert!(line.contains(pair), "{pair}: {line}");
        }
        assert!(line.ends_with(" 1"), "{line}");
        assert!(
            out.contains("istio_request_duration_milliseconds_bucket{")
                && out.contains("le=\"250\""),
            "{out}"
        );
        assert!(out.contains("istio_response_bytes_sum{"), "{out}");
        assert!(
            !out.contains("istio_request_messages_total"),
            "HTTP is not gRPC: {out}"
        );
    }

    #[test]
    fn handles_are_resolved_once_per_label_combination() {
        let (r, m) = metrics();
        let labels = LabelSet::new(&Workload::default(), UNKNOWN, &Destination::unknown());
        for _ in 0..3 {
            labels.record_http(&m, &sample(200, "-"));
        }
        labels.record_http(&m, &sample(503, "UF"));
        assert_eq!(labels.http.entries.load().len(), 2);
        let out = text(&r);
        let count = |code: &str| {
            out.lines()
                .find(|l| l.starts_with("istio_requests_total{") && l.contains(code))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(
            count("response_code=\"200\"").as_deref(),
            Some("3"),
            "{out}"
        );
        assert_eq!(
            count("response_code=\"503\"").as_deref(),
            Some("1"),
            "{out}"
        );
    }

    #[test]
    fn grpc_requests_count_messages_and_their_status() {
        let (r, m) = metrics();
        let labels = LabelSet::new(&Workload::default(), UNKNOWN, &Destination::unknown());
        let mut s = sample(200, "-");
        s.key.grpc = true;
        s.key.grpc_status = Some(grpc_status(Some("5"), None, 200));
        s.messages = (2, 3);
        labels.record_http(&m, &s);
        let out = text(&r);
        assert!(out.contains("request_protocol=\"grpc\""), "{out}");
        assert!(out.contains("grpc_response_status=\"5\""), "{out}");
        let req = out
            .lines()
            .find(|l| l.starts_with("istio_request_messages_total{"))
            .unwrap();
        assert!(req.ends_with(" 2"), "{req}");
        let resp = out
            .lines()
            .find(|l| l.starts_with("istio_response_messages_total{"))
            .unwrap();
        assert!(resp.ends_with(" 3"), "{resp}");
    }

    // Envoy source/common/grpc/common.cc getGrpcStatus, status.cc httpToGrpcStatus.
    #[test]
    fn grpc_status_comes_from_trailers_then_headers_then_the_http_status() {
        assert_eq!(grpc_status(Some("0"), Some("3"), 200), 0);
        assert_eq!(grpc_status(None, Some("3"), 200), 3);
        assert_eq!(grpc_status(None, None, 503), 14);
        assert_eq!(grpc_status(None, None, 404), 12);
        assert_eq!(grpc_status(None, None, 200), 2);
        assert_eq!(grpc_status(Some("99"), None, 200), -1);
        assert!(is_grpc(Some(b"application/grpc")));
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(!is_grpc(Some(b"application/grpc-web")));
        assert!(!is_grpc(None));
    }

    #[test]
    fn tcp_metrics_have_23_labels_and_protocol_tcp() {
        let (r, m) = metrics();
        let labels = LabelSet::new(&Workload::default(), UNKNOWN, &Destination::unknown());
        let h = labels.tcp(&m, "-");
        h.opened.inc();
        h.sent.inc_by(10);
        let out = text(&r);
        let line = out
            .lines()
            .find(|l| l.starts_with("istio_tcp_sent_bytes_total{"))
            .unwrap();
        assert!(line.contains("request_protocol=\"tcp\""), "{line}");
        assert!(!line.contains("response_code"), "{line}");
        assert!(line.ends_with(" 10"), "{line}");
    }

    #[test]
    fn endpoints_that_differ_keep_only_what_they_share() {
        let mut a = Destination::unknown();
        a.workload = "se-0".into();
        a.workload_namespace = "ns".into();
        let mut b = a.clone();
        b.workload = "se-1".into();
        let c = a.common(&b);
        assert_eq!(c.workload, UNKNOWN);
        assert_eq!(c.workload_namespace, "ns");
    }
}
