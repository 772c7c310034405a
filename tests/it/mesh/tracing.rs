//! Tracing as Envoy does it at an Istio gateway, exported to a real span receiver
//! (`support::otlp`): trace continuity for W3C (`opentelemetry` provider) and B3 (`zipkin`
//! provider) clients, sampling, OTLP over gRPC and HTTP, the provider's service resolved
//! through a ServiceEntry, and a mesh-file edit turning tracing on live.
//!
//! Istio picks the tracer from the provider kind (`pilot/pkg/networking/core/tracing.go`
//! `configureFromProviderConfig`); Envoy's OpenTelemetry tracer propagates W3C only
//! (`source/extensions/tracers/opentelemetry/span_context_extractor.cc`), its Zipkin tracer B3
//! (`source/extensions/tracers/zipkin/span_context_extractor.cc`); the gateway's downstream
//! span is SERVER and each upstream attempt a CLIENT child whose id the upstream receives
//! (`spawn_upstream_span`, `source/common/router/upstream_request.cc`).

use super::*;
use crate::support::otlp::{ReceivedSpan, SpanReceiver};
use crate::support::yaml::{Endpoint, Port, ServiceEntry};
use serde_json::Value;

/// How long a batch may take to reach the receiver (Envoy flushes every 5 s).
const EXPORTED: Duration = Duration::from_secs(15);

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// A mesh file naming provider `tracer` (its `extensionProviders` body) as the tracing
/// default, with `defaultConfig.tracing.sampling` and `%TRACE_ID%` in the access log.
fn mesh_with(provider: &str, sampling: f64) -> String {
    format!(
        "accessLogFile: /dev/stdout\n\
         accessLogFormat: 'traced %REQ(X-TEST-ID)% trace=%TRACE_ID% rid=%REQ(X-REQUEST-ID)%'\n\
         defaultConfig:\n  tracing:\n    sampling: {sampling}\n\
         extensionProviders:\n- name: tracer\n{provider}\
         defaultProviders:\n  tracing: [tracer]\n"
    )
}

fn otlp_grpc(service: &str, port: u16) -> String {
    format!("  opentelemetry:\n    service: {service}\n    port: {port}\n")
}

fn otlp_http(port: u16) -> String {
    format!(
        "  opentelemetry:\n    service: 127.0.0.1\n    port: {port}\n    http:\n      \
         path: /v1/traces\n      timeout: 3s\n      headers:\n      - name: x-tenant\n        \
         value: edge\n"
    )
}

fn zipkin(port: u16) -> String {
    format!("  zipkin:\n    service: 127.0.0.1\n    port: {port}\n")
}

/// GET through the gateway with `x-test-id: id` and `headers`; the backend's echo.
async fn traced_get(h: &Harness, id: &str, headers: &[(&str, &str)]) -> Value {
    let mut req = h.request(reqwest::Method::GET, "app.example.com", "/shop?item=1");
    req = req.header("x-test-id", id);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    echo(resp).await
}

/// GET with a W3C parent (span `00f067aa0ba902b7`) of trace `trace`, sampled or not.
async fn get_in_trace(h: &Harness, trace: &str, sampled: bool) -> Value {
    let flags = if sampled { "01" } else { "00" };
    let tp = format!("00-{trace}-00f067aa0ba902b7-{flags}");
    traced_get(h, &request_id(), &[("traceparent", &tp)]).await
}

fn one(echo: &Value, name: &str) -> String {
    echoed_header(echo, name)
        .into_iter()
        .next()
        .unwrap_or_default()
}

fn by_kind<'a>(spans: &'a [ReceivedSpan], kind: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} span in {spans:#?}"))
}

/// W3C: the backend gets the client's trace id under a new span id (the gateway's CLIENT
/// span), sampled; the SERVER span has the client's span as parent, the CLIENT span the
/// SERVER span; name, attributes and resource as Istio's gateway reports them (Envoy
/// `source/common/tracing/http_tracer_impl.cc` `finalizeDownstreamSpan`/`setCommonTags`,
/// Istio `tracing.go` `buildServiceTags`, route decorator `route.go` `GetRouteOperation`),
/// exported over OTLP/gRPC; the trace id in `%TRACE_ID%` (Envoy `stream_info_formatter.cc`).
#[tokio::test]
async fn a_w3c_trace_continues_across_the_gateway_over_otlp_grpc() {
    let receiver = SpanReceiver::grpc().await;
    let mesh = MeshDir::new(&mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 100.0));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let id = request_id();
    let echo = traced_get(
        &h,
        &id,
        &[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("user-agent", "trace-test/1"),
        ],
    )
    .await;
    let tp = one(&echo, "traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"), "{tp}");
    assert_ne!(parts[2], PARENT, "the upstream gets a new span id");
    assert_eq!(one(&echo, "tracestate"), "congo=t61rcWkgMzE");
    // The route's decorator goes upstream too (Envoy `conn_manager_impl.cc` for egress spans).
    assert_eq!(
        one(&echo, "x-envoy-decorator-operation"),
        "be.svc.local:80/*"
    );

    let spans = receiver.wait_trace(TRACE, 2, EXPORTED).await;
    let server = by_kind(&spans, "SERVER");
    let client = by_kind(&spans, "CLIENT");
    assert_eq!(server.parent_span_id, PARENT);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        client.span_id, parts[2],
        "the upstream's parent is the CLIENT span"
    );
    assert_eq!(server.name, "be.svc.local:80/*");
    assert_eq!(client.name, "router outbound|80||be.svc.local egress");
    assert_eq!(server.service_name, "istio-ingressgateway.istio-system");
    assert_eq!(server.via, "grpc");
    for (key, want) in [
        ("http.method", "GET"),
        ("http.url", "http://app.example.com/shop?item=1"),
        ("http.status_code", "200"),
        ("response_flags", "-"),
        ("upstream_cluster", "outbound|80||be.svc.local"),
        ("component", "proxy"),
        ("user_agent", "trace-test/1"),
        ("peer.address", "127.0.0.1"),
        ("istio.canonical_service", "istio-ingressgateway"),
        ("istio.namespace", "istio-system"),
        ("istio.mesh_id", "cluster.local"),
    ] {
        assert_eq!(server.attr(key), want, "{key}");
    }
    assert!(server.attr("node_id").starts_with("router~"), "{server:?}");
    let rid = one(&echo, "x-request-id");
    assert_eq!(server.attr("guid:x-request-id"), rid);
    assert!(!server.error);

    let line = h.gw.wait_for_log(&format!("traced {id} "), WAIT).await;
    assert!(line.contains(&format!("trace={TRACE} ")), "{line}");
}

/// A request without trace context at 100% sampling starts a sampled trace; the request id
/// carries Envoy's "sampled" mark (UUID digit 14 = `9`, `source/extensions/request_id/uuid/
/// config.cc` `setTraceReason`); the trace exported is rooted at the gateway.
#[tokio::test]
async fn a_request_without_context_starts_a_trace_at_full_sampling() {
    let receiver = SpanReceiver::grpc().await;
    let mesh = MeshDir::new(&mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 100.0));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let echo = traced_get(&h, &request_id(), &[]).await;
    let tp = one(&echo, "traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts.len(), parts[3]), (4, "01"), "{tp}");
    let rid = one(&echo, "x-request-id");
    assert_eq!(&rid[14..15], "9", "{rid}");
    let spans = receiver.wait_trace(parts[1], 2, EXPORTED).await;
    let server = by_kind(&spans, "SERVER");
    assert_eq!(server.parent_span_id, "", "a root span");
    assert_eq!(by_kind(&spans, "CLIENT").span_id, parts[2]);
}

/// At 0% nothing is exported, but the context still goes on, unsampled (flags `00`), even
/// for a client's sampled context: Envoy's OpenTelemetry driver unsamples a span its own
/// decision does not trace (`opentelemetry_tracer_impl.cc` `Driver::startSpan`,
/// `applyTracingDecision`; Envoy 1.40 does so). An incoming unsampled flag stays unsampled even
/// at 100%.
#[tokio::test]
async fn unsampled_requests_propagate_context_but_export_nothing() {
    let receiver = SpanReceiver::grpc().await;
    // 0.001% rounds to 0 of 10000 in Envoy's HCM (`random_sampling`): nothing sampled locally.
    let mesh = MeshDir::new(&mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 0.001));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let echo = traced_get(&h, &request_id(), &[]).await;
    let tp = one(&echo, "traceparent");
    assert!(tp.ends_with("-00"), "{tp}");
    let thinned = "7bf92f3577b34da6a3ce929d0e0e4736";
    let echo = get_in_trace(&h, thinned, true).await;
    let tp_thinned = one(&echo, "traceparent");
    assert!(
        tp_thinned.starts_with(&format!("00-{thinned}-")),
        "{tp_thinned}"
    );
    assert!(tp_thinned.ends_with("-00"), "{tp_thinned}");
    // A forced one afterwards: once it is exported, the unsampled ones would have been too.
    let echo = traced_get(&h, &request_id(), &[("x-client-trace-id", "marker")]).await;
    let forced = one(&echo, "traceparent")
        .split('-')
        .nth(1)
        .unwrap()
        .to_string();
    receiver.wait_trace(&forced, 2, EXPORTED).await;
    let unsampled_trace = tp.split('-').nth(1).unwrap().to_string();
    assert!(receiver
        .spans()
        .iter()
        .all(|s| s.trace_id != unsampled_trace && s.trace_id != thinned));

    let generation = h.generation().await;
    mesh.write(&mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 100.0));
    h.wait_generation_after(generation, APPLY).await;
    let not_sampled = "5bf92f3577b34da6a3ce929d0e0e4736";
    let echo = get_in_trace(&h, not_sampled, false).await;
    assert!(one(&echo, "traceparent").ends_with("-00"));
    let marker = "6bf92f3577b34da6a3ce929d0e0e4736";
    get_in_trace(&h, marker, true).await;
    receiver.wait_trace(marker, 2, EXPORTED).await;
    assert!(receiver.spans().iter().all(|s| s.trace_id != not_sampled));
}

/// B3 (a `zipkin` provider): multi headers and the single `b3` header are continued; the
/// upstream gets the trace id, a new span id, the gateway's span as `x-b3-parentspanid` and
/// the sampled flag (Envoy `zipkin_core_types.cc` `Span::injectContext`); the spans reach the
/// Zipkin v2 API with the client's span as the SERVER span's parent.
#[tokio::test]
async fn a_b3_trace_continues_across_the_gateway_to_zipkin() {
    let receiver = SpanReceiver::http().await;
    let mesh = MeshDir::new(&mesh_with(&zipkin(receiver.port()), 0.001));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let trace = "80f198ee56343ba864fe8b2a57d3eff7";
    let echo = traced_get(
        &h,
        &request_id(),
        &[
            ("x-b3-traceid", trace),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    assert_eq!(one(&echo, "x-b3-traceid"), trace);
    assert_eq!(one(&echo, "x-b3-sampled"), "1");
    let upstream_span = one(&echo, "x-b3-spanid");
    assert_ne!(upstream_span, "e457b5a2e4d86bd1");
    assert!(
        echoed_header(&echo, "traceparent").is_empty(),
        "no W3C from B3"
    );
    let spans = receiver.wait_trace(trace, 2, EXPORTED).await;
    let server = by_kind(&spans, "SERVER");
    let client = by_kind(&spans, "CLIENT");
    assert_eq!(server.parent_span_id, "e457b5a2e4d86bd1");
    assert_eq!(client.span_id, upstream_span);
    assert_eq!(one(&echo, "x-b3-parentspanid"), server.span_id);
    assert_eq!(server.service_name, "istio-ingressgateway.istio-system");
    assert_eq!(
        (server.via, server.path.as_str()),
        ("zipkin", "/api/v2/spans")
    );
    assert_eq!(
        server.attr("istio.canonical_service"),
        "istio-ingressgateway"
    );

    // The single header, with its sampling field.
    let single = "463ac35c9f6413ad48485a3953bb6124";
    let echo = traced_get(
        &h,
        &request_id(),
        &[("b3", &format!("{single}-a2fb4a1d1a96d312-1"))],
    )
    .await;
    assert_eq!(one(&echo, "x-b3-traceid"), single);
    assert_eq!(one(&echo, "x-b3-parentspanid").len(), 16);
    let spans = receiver.wait_trace(single, 2, EXPORTED).await;
    assert_eq!(by_kind(&spans, "SERVER").parent_span_id, "a2fb4a1d1a96d312");
}

/// OTLP/HTTP: protobuf POSTed to the provider's `http.path` with its `headers`.
#[tokio::test]
async fn spans_are_exported_over_otlp_http_with_the_providers_headers() {
    let receiver = SpanReceiver::http().await;
    let mesh = MeshDir::new(&mesh_with(&otlp_http(receiver.port()), 100.0));
    let h = gateway_with_mesh(&mesh, &[]).await;
    traced_get(
        &h,
        &request_id(),
        &[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))],
    )
    .await;
    let spans = receiver.wait_trace(TRACE, 2, EXPORTED).await;
    let server = by_kind(&spans, "SERVER");
    assert_eq!((server.via, server.path.as_str()), ("http", "/v1/traces"));
    assert_eq!(
        server.headers.get("x-tenant").map(String::as_str),
        Some("edge")
    );
    assert_eq!(
        server.headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert_eq!(server.parent_span_id, PARENT);
}

/// The provider's `service` is a registry host (Istio `LookupCluster`): a ServiceEntry's
/// endpoint receives the spans, although the name resolves nowhere in DNS.
#[tokio::test]
async fn the_provider_service_is_resolved_through_a_service_entry() {
    let receiver = SpanReceiver::grpc().await;
    let host = "otel-collector.observability.svc.cluster.local";
    let collector = ServiceEntry::new("otel-collector")
        .hosts(&[host])
        .location("MESH_INTERNAL")
        .port(Port::of(4317, "grpc-otlp", "GRPC"))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("grpc-otlp", receiver.port()));
    let mesh = MeshDir::new(&mesh_with(&otlp_grpc(host, 4317), 100.0));
    let path = mesh.path();
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .resources("collector.yaml", &[&collector])
        .args(&["--mesh", path.as_str()])
        .start()
        .await;
    traced_get(
        &h,
        &request_id(),
        &[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))],
    )
    .await;
    let spans = receiver.wait_trace(TRACE, 2, EXPORTED).await;
    assert_eq!(by_kind(&spans, "SERVER").parent_span_id, PARENT);
}

/// Tracing off (`enableTracing: false`): trace headers pass through untouched and nothing is
/// exported; a mesh-file edit turns it on without a restart, another moves it to a new collector.
#[tokio::test]
async fn a_mesh_file_edit_turns_tracing_on_live() {
    let receiver = SpanReceiver::grpc().await;
    let on = mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 100.0);
    let mesh = MeshDir::new(&format!("enableTracing: false\n{on}"));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let echo = traced_get(&h, &request_id(), &[("traceparent", &incoming)]).await;
    assert_eq!(
        one(&echo, "traceparent"),
        incoming,
        "passed through untouched"
    );

    let generation = h.generation().await;
    mesh.write(&on);
    h.wait_generation_after(generation, APPLY).await;
    let echo = traced_get(&h, &request_id(), &[("traceparent", &incoming)]).await;
    assert_ne!(
        one(&echo, "traceparent"),
        incoming,
        "continued with a new span"
    );
    let spans = receiver.wait_trace(TRACE, 2, EXPORTED).await;
    assert_eq!(
        spans.len(),
        2,
        "only the traced request's spans: {spans:#?}"
    );

    // Another edit re-points the exporter: the next spans go to the new collector, over HTTP.
    let second = SpanReceiver::http().await;
    let generation = h.generation().await;
    mesh.write(&mesh_with(&otlp_http(second.port()), 100.0));
    h.wait_generation_after(generation, APPLY).await;
    let moved = "8bf92f3577b34da6a3ce929d0e0e4736";
    get_in_trace(&h, moved, true).await;
    let spans = second.wait_trace(moved, 2, EXPORTED).await;
    assert_eq!(spans[0].via, "http");
    assert!(receiver.spans().iter().all(|s| s.trace_id != moved));
}

/// `x-client-trace-id` forces a trace whatever the sampling (Envoy `conn_manager_utility.cc`
/// `mutateTracingRequestHeader`: `ClientForced`, with Istio's client sampling at 100 %); the
/// request id says so (`b` at UUID digit 14) and the span carries `guid:x-client-trace-id`.
/// Nothing was dropped, and the dropped-span counter is on `/metrics`.
#[tokio::test]
async fn x_client_trace_id_forces_a_trace() {
    let receiver = SpanReceiver::grpc().await;
    let mesh = MeshDir::new(&mesh_with(&otlp_grpc("127.0.0.1", receiver.port()), 0.001));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let echo = traced_get(&h, &request_id(), &[("x-client-trace-id", "client-1")]).await;
    let rid = one(&echo, "x-request-id");
    assert_eq!(&rid[14..15], "b", "{rid}");
    let tp = one(&echo, "traceparent");
    assert!(tp.ends_with("-01"), "{tp}");
    let trace = tp.split('-').nth(1).unwrap().to_string();
    let spans = receiver.wait_trace(&trace, 2, EXPORTED).await;
    let server = by_kind(&spans, "SERVER");
    assert_eq!(server.attr("guid:x-client-trace-id"), "client-1");
    assert_eq!(server.attr("guid:x-request-id"), rid);
    let (code, metrics) = h.gw.admin_get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == "portcullis_tracing_spans_dropped_total 0"),
        "{metrics}"
    );
}

/// A collector that accepts connections and never answers holds no request: every request is
/// served while the exporter waits, and the spans beyond the bounded queue are dropped and
/// counted in `portcullis_tracing_spans_dropped_total` (Envoy's tracers likewise never make a
/// request wait for the collector; their buffer is bounded by `min_flush_spans`).
#[tokio::test]
async fn a_stalled_collector_holds_no_request_and_dropped_spans_are_counted() {
    // Never accepted: the kernel completes the handshakes, nobody ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let provider = format!(
        "{}    grpc:\n      timeout: 300s\n",
        otlp_grpc("127.0.0.1", port)
    );
    let mesh = MeshDir::new(&mesh_with(&provider, 100.0));
    let h = std::sync::Arc::new(gateway_with_mesh(&mesh, &[]).await);
    // More requests than the queue holds (2,048 requests' spans) plus one batch in flight.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let h = h.clone();
        tasks.spawn(async move {
            for i in 0..90 {
                let resp = h.get("app.example.com", &format!("/w{worker}/{i}")).await;
                assert_eq!(resp.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let dropped = h.metric("portcullis_tracing_spans_dropped_total").await;
    assert!(dropped > 0.0, "no span dropped");
    drop(silent);
}
