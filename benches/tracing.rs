//! The per-request cost of tracing on the request path, as the three proxy phases pay it:
//! `Tracer::start` (Envoy's request-id sampling and the incoming context), one upstream
//! attempt's propagation headers, and `RequestTrace::finish` (the spans built and queued for
//! the exporter, or nothing when unsampled). Cases: a new trace sampled / unsampled, and a W3C
//! or B3 parent continued.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use portcullis::telemetry::tracing::{
    ExporterConfig, Finished, Identity, Propagation, Sampling, SpanSink, Tracer,
};

fn tracer(propagation: Propagation, percent: f64) -> Arc<Tracer> {
    Arc::new(Tracer {
        provider: "otel".into(),
        propagation,
        sampling: Sampling::from_percent(percent),
        max_path_tag_length: 256,
        spawn_upstream: true,
        identity: Identity {
            service_name: "istio-ingressgateway.istio-system".into(),
            node_id: "router~10.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local".into(),
            zone: String::new(),
            tags: vec![("istio.namespace".into(), "istio-system".into())],
        },
        exporter: ExporterConfig::OtlpGrpc {
            endpoint: "http://127.0.0.1:4317".into(),
            timeout: Duration::from_secs(10),
            metadata: Vec::new(),
        },
    })
}

const REQUEST_ID: &str = "0000270f-1234-4abc-8def-0123456789ab";

fn one_request(t: &Arc<Tracer>, headers: &HeaderMap, sink: &SpanSink) {
    let mut request_id = REQUEST_ID.to_string();
    let Some(mut trace) = t.start(headers, &mut request_id, SystemTime::now()) else {
        return;
    };
    let mut out = Vec::with_capacity(6);
    trace.upstream_attempt(
        Some("127.0.0.1:8080".parse().unwrap()),
        Some("be.svc.local:80/*"),
        &mut out,
    );
    std::hint::black_box(&out);
    trace.finish(
        &Finished {
            operation: Some("be.svc.local:80/*"),
            method: "GET",
            scheme: "http",
            authority: "app.example.com",
            path: "/shop/items?id=42",
            protocol: "HTTP/1.1",
            user_agent: Some("curl/8.5.0"),
            request_id: &request_id,
            client_trace_id: None,
            peer: Some("10.1.2.3".parse().unwrap()),
            status: 200,
            flags: "-",
            cluster: Some("outbound|80||be.svc.local"),
            request_size: 0,
            response_size: 512,
            end: None,
            grpc: None,
        },
        sink,
    );
}

fn tracing(c: &mut Criterion) {
    let sink = SpanSink::new(prometheus::IntCounter::new("dropped", "dropped").unwrap());
    let mut rx = sink.take_receiver().unwrap();
    let mut g = c.benchmark_group("tracing_per_request");
    let none = HeaderMap::new();
    let mut w3c = HeaderMap::new();
    w3c.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let mut b3 = HeaderMap::new();
    b3.insert(
        "x-b3-traceid",
        "80f198ee56343ba864fe8b2a57d3eff7".parse().unwrap(),
    );
    b3.insert("x-b3-spanid", "e457b5a2e4d86bd1".parse().unwrap());
    b3.insert("x-b3-sampled", "1".parse().unwrap());
    let cases = [
        ("unsampled_new_trace", tracer(Propagation::W3c, 0.0), &none),
        ("sampled_new_trace", tracer(Propagation::W3c, 100.0), &none),
        ("sampled_w3c_parent", tracer(Propagation::W3c, 100.0), &w3c),
        (
            "sampled_b3_parent",
            tracer(Propagation::B3 { w3c: false }, 0.0),
            &b3,
        ),
    ];
    for (name, t, headers) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                one_request(t, headers, &sink);
                // The export task's share on the request path: none; drop the batch here so
                // the queue never fills (a full queue would make `submit` cheaper).
                while let Ok(spans) = rx.try_recv() {
                    std::hint::black_box(spans);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tracing);
criterion_main!(benches);
