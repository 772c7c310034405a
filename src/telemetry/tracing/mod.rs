//! Tracing as Envoy does it at an Istio gateway, exported over OTLP (or Zipkin's API).
//!
//! Istio programs a gateway's Envoy from the mesh config (`pilot/pkg/networking/core/tracing.go`
//! `configureFromProviderConfig`): the tracer of the provider `defaultProviders.tracing[0]`
//! names, random sampling `defaultConfig.tracing.sampling` (1% by default), client sampling
//! 100%, `spawn_upstream_span` (a gateway is a router), Istio's service tags. Envoy then, per
//! request:
//!
//! - decides whether to trace from the request id ([`sampling`]) and reads the incoming trace
//!   context in the tracer's format ([`context`]);
//! - opens the downstream span (kind SERVER because an upstream span is spawned: Envoy
//!   `opentelemetry_tracer_impl.cc` `getSpanKind`), named by the route's decorator (Istio's
//!   `route.GetRouteOperation`), else `egress <host>` (a gateway listener is outbound:
//!   `tracer_impl.cc` `TracerImpl::startSpan`), with `node_id` and `zone`;
//! - per upstream attempt, a child span `router <cluster> egress` of kind CLIENT whose id the
//!   upstream receives as its parent (`router/upstream_request.cc`, `Span::spawnChild`), and
//!   `x-envoy-decorator-operation` (an egress span's decorator is propagated:
//!   `conn_manager_impl.cc` `traceRequest`);
//! - ends them with the tags of `tracing/http_tracer_impl.cc` (`finalizeDownstreamSpan`,
//!   `finalizeUpstreamSpan`, `setCommonTags`) and Istio's custom tags.
//!
//! [`RequestTrace`] is that per-request state; [`export::SpanSink`] batches finished spans off
//! the request path (bounded, never waiting: a full queue drops and counts) to the exporter
//! the current mesh settings name.

pub mod context;
pub mod export;
pub mod sampling;
mod zipkin;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::Serialize;

pub use context::{Incoming, Propagation};
pub use export::{ExporterConfig, SpanSink};
pub use sampling::Sampling;

/// Envoy's default `max_path_tag_length` (`Tracing::DefaultMaxPathTagLength`).
pub const DEFAULT_MAX_PATH_TAG_LENGTH: usize = 256;

/// The tracer of this instance, compiled once per reload from the mesh settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracer {
    /// The `extensionProviders` entry (or `defaultConfig.tracing.zipkin` for the legacy one).
    pub provider: String,
    pub propagation: Propagation,
    pub sampling: Sampling,
    pub max_path_tag_length: usize,
    /// Envoy's `spawn_upstream_span`: a CLIENT span per upstream attempt. Istio sets it for a
    /// gateway's provider tracer (`tracing.go` `startChildSpan := proxy.Type == model.Router`);
    /// the bootstrap Zipkin tracer of `defaultConfig.tracing.zipkin` runs without it.
    pub spawn_upstream: bool,
    pub identity: Identity,
    pub exporter: ExporterConfig,
}

/// Who reports the spans: the proxy's node, its service name and Istio's service tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The resource's `service.name` (Envoy's `service_name`: the node's cluster,
    /// `istio-ingressgateway.istio-system`).
    pub service_name: String,
    /// `node_id`: `router~IP~POD.NS~NS.svc.cluster.local`.
    pub node_id: String,
    pub zone: String,
    /// Istio's custom tags (`buildServiceTags`), sorted by name.
    pub tags: Vec<(String, String)>,
}

/// A span's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// A finished span as the request path hands it over; the exporter adds the identity and
/// encodes it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent: Option<u64>,
    pub kind: Kind,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub tags: Vec<(&'static str, String)>,
    /// OTLP status ERROR (`status_error`).
    pub error: bool,
}

/// One upstream attempt's span.
#[derive(Debug, Clone)]
struct Attempt {
    span_id: u64,
    start: SystemTime,
    end: Option<SystemTime>,
    upstream: Option<SocketAddr>,
    /// The upstream's response status (0: none came).
    status: u16,
    /// The upstream protocol, once connected (`HTTP/1.1`, `HTTP/2`).
    protocol: Option<&'static str>,
    /// Envoy's stream reset reason when the attempt failed (`error.reason`).
    reset: Option<&'static str>,
}

/// A request's trace, from the request phase to the log phase.
#[derive(Debug)]
pub struct RequestTrace {
    tracer: Arc<Tracer>,
    pub trace_id: u128,
    /// The downstream (SERVER) span.
    pub span_id: u64,
    /// The caller's span, if the request continued a trace.
    pub parent: Option<u64>,
    pub sampled: bool,
    tracestate: Option<String>,
    start: SystemTime,
    attempts: Vec<Attempt>,
}

fn new_span_id() -> u64 {
    // Never 0 (an invalid id in both W3C and B3).
    fastrand::u64(1..)
}

impl Tracer {
    /// Starts the request's trace: Envoy's sampling decision (marked in `request_id`), then the
    /// incoming context, whose own decision wins. `None`: a malformed propagation header, for
    /// which Envoy starts no span (the headers pass through untouched).
    pub fn start(
        self: &Arc<Self>,
        headers: &HeaderMap,
        request_id: &mut String,
        start: SystemTime,
    ) -> Option<RequestTrace> {
        let client_trace_id = headers.contains_key("x-client-trace-id");
        let local = self.sampling.decide(request_id, client_trace_id).traced();
        let (trace_id, parent, sampled, tracestate) = match self.propagation.extract(headers) {
            Incoming::Malformed => return None,
            Incoming::None => (fastrand::u128(1..), None, local, None),
            Incoming::SamplingOnly(s) => (fastrand::u128(1..), None, s, None),
            Incoming::Parent(p) => {
                let sampled = match self.propagation {
                    // Envoy's OpenTelemetry driver keeps the parent's flag but unsamples the
                    // span when its own decision is "not traced" (`opentelemetry_tracer_impl.cc`
                    // `Driver::startSpan`, `applyTracingDecision`): the gateway's sampling rate
                    // also thins sampled traces, and never samples an unsampled one.
                    Propagation::W3c => p.sampled.unwrap_or(local) && local,
                    // The Zipkin driver: the caller's flag when it sent one, else the local
                    // decision (`zipkin_tracer_impl.cc` `Driver::startSpan`).
                    Propagation::B3 { .. } => p.sampled.unwrap_or(local),
                };
                (p.trace_id, Some(p.span_id), sampled, p.tracestate)
            }
        };
        Some(RequestTrace {
            tracer: self.clone(),
            trace_id,
            span_id: new_span_id(),
            parent,
            sampled,
            tracestate,
            start,
            attempts: Vec::new(),
        })
    }
}

/// What the log phase knows about the finished request.
#[derive(Debug, Default)]
pub struct Finished<'a> {
    /// The matched route's decorator operation.
    pub operation: Option<&'a str>,
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    /// The path the client sent (before any rewrite).
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    pub client_trace_id: Option<&'a str>,
    /// The connection's peer (`peer.address`).
    pub peer: Option<IpAddr>,
    /// 0 when no response was sent.
    pub status: u16,
    /// Envoy's short response flags (`-` for none).
    pub flags: &'a str,
    pub cluster: Option<&'a str>,
    pub request_size: u64,
    pub response_size: u64,
    pub end: Option<SystemTime>,
    /// For a gRPC request (`content-type: application/grpc...`): its content type,
    /// `grpc-timeout`, and the response's `grpc-status` / `grpc-message` when the response
    /// head carries them.
    pub grpc: Option<Grpc<'a>>,
}

/// What Envoy tags on a gRPC request's span (`addGrpcRequestTags`, `addGrpcResponseTags`).
#[derive(Debug, Default)]
pub struct Grpc<'a> {
    pub content_type: &'a str,
    pub timeout: Option<&'a str>,
    pub status: Option<&'a str>,
    pub message: Option<&'a str>,
}

impl Grpc<'_> {
    /// `Grpc::Common::isGrpcRequestHeaders`: `application/grpc`, `+suffix` or `;params`.
    pub fn is_grpc(content_type: &str) -> bool {
        content_type
            .strip_prefix("application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
    }

    fn tag(&self, f: &Finished<'_>, tags: &mut Vec<(&'static str, String)>) {
        tags.push(("grpc.path", f.path.to_string()));
        tags.push(("grpc.authority", f.authority.to_string()));
        tags.push(("grpc.content_type", self.content_type.to_string()));
        if let Some(t) = self.timeout {
            tags.push(("grpc.timeout", t.to_string()));
        }
        if let Some(code) = self.status {
            tags.push(("grpc.status_code", code.to_string()));
            if let Some(m) = self.message {
                tags.push(("grpc.message", m.to_string()));
            }
            // Upstream errors (not the client's): Unknown, DeadlineExceeded, Unimplemented,
            // ResourceExhausted, Internal, Unavailable, DataLoss.
            let upstream_error = matches!(code, "2" | "4" | "8" | "12" | "13" | "14" | "15");
            if upstream_error && !tags.iter().any(|(k, _)| *k == "error") {
                tags.push(("error", "true".into()));
            }
        }
    }
}

impl RequestTrace {
    /// The trace id as `%TRACE_ID%` prints it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// A new upstream attempt, once its endpoint is chosen (before connecting, as Envoy spawns
    /// the span with the `UpstreamRequest`): its CLIENT span starts now, ending the previous
    /// attempt's. Without `spawn_upstream` nothing changes.
    pub fn begin_attempt(&mut self, upstream: Option<SocketAddr>) {
        if !self.tracer.spawn_upstream {
            return;
        }
        let now = SystemTime::now();
        if let Some(last) = self.attempts.last_mut() {
            last.end.get_or_insert(now);
        }
        self.attempts.push(Attempt {
            span_id: new_span_id(),
            start: now,
            end: None,
            upstream,
            status: 0,
            protocol: None,
            reset: None,
        });
    }

    /// The current attempt's upstream response head arrived.
    pub fn attempt_response(&mut self, status: u16, protocol: &'static str) {
        if let Some(a) = self.attempts.last_mut() {
            a.status = status;
            a.protocol = Some(protocol);
        }
    }

    /// The current attempt failed: Envoy's reset reason (`Http::Utility::resetReasonToString`,
    /// e.g. `remote connection failure`), which it tags as `error.reason`.
    pub fn attempt_failed(&mut self, reason: &'static str) {
        if let Some(a) = self.attempts.last_mut() {
            a.end.get_or_insert_with(SystemTime::now);
            a.reset.get_or_insert(reason);
        }
    }

    /// The headers the upstream receives for the current attempt (its span as their parent),
    /// plus the route's decorator as `x-envoy-decorator-operation`.
    pub fn inject(&self, operation: Option<&str>, out: &mut Vec<(&'static str, String)>) {
        let ids = match self.attempts.last() {
            Some(a) if self.tracer.spawn_upstream => (self.trace_id, a.span_id, Some(self.span_id)),
            // No upstream span: the upstream's parent is the gateway's own (egress) span.
            _ => (self.trace_id, self.span_id, self.parent),
        };
        self.tracer
            .propagation
            .inject(out, ids, self.sampled, self.tracestate.as_deref());
        if let Some(op) = operation {
            out.push(("x-envoy-decorator-operation", op.to_string()));
        }
    }

    /// [`begin_attempt`](Self::begin_attempt) then [`inject`](Self::inject).
    pub fn upstream_attempt(
        &mut self,
        upstream: Option<SocketAddr>,
        operation: Option<&str>,
        out: &mut Vec<(&'static str, String)>,
    ) {
        self.begin_attempt(upstream);
        self.inject(operation, out);
    }

    /// Ends the request's spans and hands them to `sink` if the trace is sampled.
    pub fn finish(self, f: &Finished<'_>, sink: &SpanSink) {
        if !self.sampled {
            return;
        }
        let end = f.end.unwrap_or_else(SystemTime::now);
        let error = f.status == 0 || f.status >= 500;
        let status = f.status.to_string();
        let name = match f.operation {
            Some(op) => op.to_string(),
            None => format!("egress {}", f.authority),
        };
        let mut tags: Vec<(&'static str, String)> = Vec::with_capacity(20);
        tags.push(("node_id", self.tracer.identity.node_id.clone()));
        tags.push(("zone", self.tracer.identity.zone.clone()));
        tags.push(("guid:x-request-id", f.request_id.to_string()));
        tags.push(("http.url", self.url(f)));
        tags.push(("http.method", f.method.to_string()));
        tags.push(("downstream_cluster", "-".into()));
        tags.push(("user_agent", f.user_agent.unwrap_or("-").to_string()));
        tags.push(("http.protocol", f.protocol.to_string()));
        if let Some(ip) = f.peer {
            tags.push(("peer.address", ip.to_string()));
        }
        if let Some(id) = f.client_trace_id {
            tags.push(("guid:x-client-trace-id", id.to_string()));
        }
        tags.push(("request_size", f.request_size.to_string()));
        tags.push(("response_size", f.response_size.to_string()));
        common_tags(&mut tags, f, &status, error);
        if let Some(g) = &f.grpc {
            g.tag(f, &mut tags);
        }
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        for (i, a) in self.attempts.iter().enumerate() {
            // Each upstream span reports its own upstream response (`finalizeUpstreamSpan` on
            // the attempt's stream info): 0 and no protocol when none came.
            let status = a.status.to_string();
            let mut t: Vec<(&'static str, String)> = Vec::with_capacity(12);
            t.push(("http.protocol", a.protocol.unwrap_or("-").to_string()));
            if let Some(u) = a.upstream {
                t.push(("upstream_address", u.to_string()));
                t.push(("peer.address", u.to_string()));
            }
            if i > 0 {
                // `router/upstream_request.cc`: `retry.count` on every retry.
                t.push(("retry.count", i.to_string()));
            }
            if let Some(reason) = a.reset {
                t.push(("error.reason", reason.to_string()));
            }
            common_tags(&mut t, f, &status, a.status == 0 || a.status >= 500);
            spans.push(SpanRecord {
                trace_id: self.trace_id,
                span_id: a.span_id,
                parent: Some(self.span_id),
                kind: Kind::Client,
                name: format!("router {} egress", f.cluster.unwrap_or("-")),
                start: a.start,
                end: a.end.unwrap_or(end),
                tags: t,
                error: status_error(Kind::Client, a.status),
            });
        }
        let server_kind = if self.tracer.spawn_upstream {
            Kind::Server
        } else {
            Kind::Client
        };
        spans.push(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            // Envoy's span kind without an upstream span follows the traffic direction: a
            // gateway listener is outbound (egress), so CLIENT (`getSpanKind` in
            // `opentelemetry/tracer.cc`; the Zipkin tracer's `CLIENT_SEND` for egress).
            kind: server_kind,
            name,
            start: self.start,
            end,
            tags,
            error: status_error(server_kind, f.status),
        });
        sink.submit(spans);
    }

    /// `http.url`: scheme://host/path as the client sent it, cut to the path tag length
    /// (`Http::Utility::buildOriginalUri`).
    fn url(&self, f: &Finished<'_>) -> String {
        let mut path = f.path;
        let max = self.tracer.max_path_tag_length;
        if path.len() > max {
            let mut cut = max;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path = &path[..cut];
        }
        format!("{}://{}{}", f.scheme, f.authority, path)
    }
}

/// The span's status: ERROR from its `http.status_code` as Envoy's OpenTelemetry span sets it
/// (5xx; 4xx too on a CLIENT span), whatever the `error` tag says (a failed connection, status
/// 0, is tagged `error` but keeps an unset status).
fn status_error(kind: Kind, status: u16) -> bool {
    status >= 500 || (kind == Kind::Client && status >= 400)
}

/// `HttpTracerUtility::setCommonTags` (the custom tags are added by the exporter).
fn common_tags(
    tags: &mut Vec<(&'static str, String)>,
    f: &Finished<'_>,
    status: &str,
    error: bool,
) {
    tags.push(("component", "proxy".into()));
    if let Some(c) = f.cluster {
        tags.push(("upstream_cluster", c.to_string()));
        tags.push(("upstream_cluster.name", c.to_string()));
    }
    tags.push(("http.status_code", status.to_string()));
    tags.push(("response_flags", f.flags.to_string()));
    if error {
        tags.push(("error", "true".into()));
    }
}

/// How long an exporter call may take when the provider says nothing (Envoy's OTLP/HTTP and
/// Zipkin `HttpService` need one; Istio's Zipkin default is 5 s).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::context::tests::headers;
    use super::*;

    pub(crate) fn tracer(propagation: Propagation, percent: f64) -> Arc<Tracer> {
        Arc::new(Tracer {
            provider: "otel".into(),
            propagation,
            sampling: Sampling::from_percent(percent),
            max_path_tag_length: 16,
            spawn_upstream: true,
            identity: Identity {
                service_name: "istio-ingressgateway.istio-system".into(),
                node_id: "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local".into(),
                zone: String::new(),
                tags: vec![("istio.namespace".into(), "istio-system".into())],
            },
            exporter: ExporterConfig::Zipkin {
                url: "http://127.0.0.1:9/api/v2/spans".into(),
                host: "zipkin".into(),
                timeout: DEFAULT_EXPORT_TIMEOUT,
                headers: Vec::new(),
            },
        })
    }

    const ID: &str = "0000270f-1234-4abc-8def-0123456789ab";

    #[test]
    fn w3c_sampling_needs_both_the_parent_flag_and_the_local_decision() {
        let sampled = headers(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )]);
        let unsampled = headers(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )]);
        let start = |percent: f64, h: &HeaderMap| {
            tracer(Propagation::W3c, percent)
                .start(h, &mut ID.to_string(), SystemTime::now())
                .unwrap()
        };
        let trace = start(100.0, &sampled);
        assert!(trace.sampled);
        assert_eq!(trace.parent, Some(0xb7ad6b7169203331));
        assert_eq!(trace.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert!(!start(0.0, &sampled).sampled);
        assert!(!start(100.0, &unsampled).sampled);
        let bad = headers(&[("traceparent", "garbage")]);
        assert!(tracer(Propagation::W3c, 100.0)
            .start(&bad, &mut ID.to_string(), SystemTime::now())
            .is_none());
    }

    #[test]
    fn a_b3_sampled_flag_wins_over_the_sampling_rate() {
        let b3 = Propagation::B3 { w3c: false };
        let with = |flag: &str| {
            headers(&[
                ("x-b3-traceid", "64fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", flag),
            ])
        };
        let start = |percent: f64, h: &HeaderMap| {
            tracer(b3, percent)
                .start(h, &mut ID.to_string(), SystemTime::now())
                .unwrap()
                .sampled
        };
        assert!(start(0.0, &with("1")));
        assert!(!start(100.0, &with("0")));
        let no_flag = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ]);
        assert!(start(100.0, &no_flag));
        assert!(!start(0.0, &no_flag));
    }

    #[test]
    fn the_upstream_gets_a_child_of_the_gateway_span() {
        let t = tracer(Propagation::W3c, 100.0);
        let mut trace = t
            .start(&HeaderMap::new(), &mut ID.to_string(), SystemTime::now())
            .unwrap();
        let mut out = Vec::new();
        trace.upstream_attempt(None, Some("be.svc.local:80/*"), &mut out);
        let span = trace.attempts[0].span_id;
        assert_ne!(span, trace.span_id);
        assert_eq!(
            out[0].1,
            format!("00-{:032x}-{span:016x}-01", trace.trace_id)
        );
        assert_eq!(
            out[2],
            ("x-envoy-decorator-operation", "be.svc.local:80/*".into())
        );
    }

    /// The bootstrap Zipkin tracer (no `spawn_upstream_span`): one span, CLIENT (a gateway
    /// listener is egress), whose id the upstream receives, B3 parent = the caller's span.
    #[test]
    fn without_an_upstream_span_the_gateway_span_is_the_upstreams_parent() {
        let mut t = (*tracer(Propagation::B3 { w3c: false }, 100.0)).clone();
        t.spawn_upstream = false;
        let t = Arc::new(t);
        let h = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ]);
        let mut trace = t.start(&h, &mut ID.to_string(), SystemTime::now()).unwrap();
        let mut out = Vec::new();
        trace.upstream_attempt(None, None, &mut out);
        assert_eq!(out[1], ("x-b3-spanid", format!("{:016x}", trace.span_id)));
        assert_eq!(
            out[2],
            ("x-b3-parentspanid", "e457b5a2e4d86bd1".to_string())
        );
        let sink = SpanSink::new(prometheus::IntCounter::new("d", "d").unwrap());
        let mut rx = sink.take_receiver().unwrap();
        let span_id = trace.span_id;
        trace.finish(
            &Finished {
                status: 200,
                flags: "-",
                ..Default::default()
            },
            &sink,
        );
        let spans = rx.try_recv().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!((spans[0].kind, spans[0].span_id), (Kind::Client, span_id));
        assert_eq!(spans[0].parent, Some(0xe457b5a2e4d86bd1));
    }

    /// `addGrpcResponseTags`: an upstream gRPC error (Unavailable) marks the span `error`; a
    /// client error (NotFound) does not.
    #[test]
    fn grpc_requests_get_envoys_grpc_tags() {
        assert!(Grpc::is_grpc("application/grpc"));
        assert!(Grpc::is_grpc("application/grpc+proto"));
        assert!(!Grpc::is_grpc("application/grpc-web"));
        let tags_for = |status: &str| {
            let f = Finished {
                path: "/pkg.Svc/Call",
                authority: "api",
                status: 200,
                ..Default::default()
            };
            let g = Grpc {
                content_type: "application/grpc",
                timeout: Some("5S"),
                status: Some(status),
                message: Some("m"),
            };
            let mut tags = Vec::new();
            g.tag(&f, &mut tags);
            tags
        };
        let unavailable = tags_for("14");
        assert!(unavailable.contains(&("grpc.status_code", "14".into())));
        assert!(unavailable.contains(&("grpc.path", "/pkg.Svc/Call".into())));
        assert!(unavailable.contains(&("error", "true".into())));
        assert!(!tags_for("5").iter().any(|(k, _)| *k == "error"));
    }

    #[test]
    fn finished_spans_carry_envoys_tags_and_the_url_is_cut() {
        let t = tracer(Propagation::W3c, 100.0);
        let mut trace = t
            .start(&HeaderMap::new(), &mut ID.to_string(), SystemTime::now())
            .unwrap();
        trace.upstream_attempt(None, None, &mut Vec::new());
        trace.upstream_attempt(None, None, &mut Vec::new());
        let sink = SpanSink::new(prometheus::IntCounter::new("d", "d").unwrap());
        let mut rx = sink.take_receiver().unwrap();
        trace.finish(
            &Finished {
                operation: Some("op"),
                method: "GET",
                scheme: "http",
                authority: "example.com",
                path: "/a/very/long/path/indeed",
                protocol: "HTTP/1.1",
                request_id: ID,
                status: 503,
                flags: "UF",
                cluster: Some("outbound|80||be.svc.local"),
                ..Default::default()
            },
            &sink,
        );
        let spans = rx.try_recv().unwrap();
        assert_eq!(spans.len(), 3);
        let server = &spans[2];
        assert_eq!((server.kind, server.name.as_str()), (Kind::Server, "op"));
        let tag =
            |s: &SpanRecord, k: &str| s.tags.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(
            tag(server, "http.url").unwrap(),
            "http://example.com/a/very/long/pat"
        );
        assert_eq!(tag(server, "error").unwrap(), "true");
        assert_eq!(spans[0].name, "router outbound|80||be.svc.local egress");
        assert_eq!(tag(&spans[1], "retry.count").unwrap(), "1");
        assert_eq!(spans[0].parent, Some(server.span_id));
    }
}
