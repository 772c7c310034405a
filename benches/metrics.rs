//! The per-request cost of Istio's request metrics (what `runtime::log::finish` pays once per
//! request for `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes` and `istio_response_bytes`):
//! - `before_6_labels`: the code before the full label set (6 labels, the status code formatted
//!   and the label values hashed on every request, a counter and one histogram);
//! - `per_request_25_labels`: the full 25-label set resolved per request with
//!   `with_label_values` (what counting Istio's labels naively would cost);
//! - `pre_resolved_25_labels`: `LabelSet::record_http`, the labels joined once per cluster per
//!   reload and the handles cached per (code, flags, gRPC status): a short lookup and atomic adds.
//!
//! Each takes requests cycling through 200, 404 and 503, as a mixed workload does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed step panics

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::observe::metrics::istio_metrics;
use portcullis::telemetry::istio::{
    Destination, HttpKey, HttpSample, LabelSet, Workload, ENVOY_BUCKETS, HTTP_LABELS, UNKNOWN,
};
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

const CODES: [(u16, &str); 3] = [(200, "-"), (404, "NR"), (503, "UF")];

fn destination() -> Destination {
    let mut d = Destination::unknown();
    d.workload = "reviews-0".into();
    d.workload_namespace = "bookinfo".into();
    d.service = "reviews.bookinfo.svc.cluster.local".into();
    d.service_name = "reviews".into();
    d.service_namespace = "bookinfo".into();
    d.cluster = "Kubernetes".into();
    d.canonical_service = "reviews".into();
    d.canonical_revision = "v1".into();
    d
}

fn metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_metrics");

    // Before: main's `runtime::log::finish` (6 labels, formatted per request).
    let r = Registry::new();
    let labels = [
        "reporter",
        "request_protocol",
        "response_code",
        "response_flags",
        "destination_service",
        "destination_service_name",
    ];
    let requests = IntCounterVec::new(Opts::new("istio_requests_total", "r"), &labels).unwrap();
    let duration = HistogramVec::new(
        HistogramOpts::new("istio_request_duration_milliseconds", "d")
            .buckets(exponential_buckets(0.5, 2.0, 18).unwrap()),
        &labels,
    )
    .unwrap();
    r.register(Box::new(requests.clone())).unwrap();
    r.register(Box::new(duration.clone())).unwrap();
    let mut i = 0usize;
    g.bench_function("before_6_labels", |b| {
        b.iter(|| {
            let (code, flags) = CODES[i % 3];
            i += 1;
            let values = [
                "source",
                "http",
                &code.to_string(),
                flags,
                "reviews.bookinfo.svc.cluster.local",
                "outbound|9080||reviews.bookinfo.svc.cluster.local",
            ];
            requests.with_label_values(&values).inc();
            duration.with_label_values(&values).observe(black_box(3.2));
        })
    });

    // The full label set resolved per request.
    let r = Registry::new();
    let m = istio_metrics(&r);
    let d = destination();
    let w = Workload::default();
    let fixed: Vec<String> = [
        "source",
        &w.name,
        &w.namespace,
        UNKNOWN,
        &w.app,
        &w.version,
        &w.cluster,
        &w.canonical_service,
        &w.canonical_revision,
        &d.workload,
        &d.workload_namespace,
        &d.principal,
        &d.app,
        &d.version,
        &d.service,
        &d.service_name,
        &d.service_namespace,
        &d.cluster,
        &d.canonical_service,
        &d.canonical_revision,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(fixed.len() + 5, HTTP_LABELS.len());
    assert_eq!(ENVOY_BUCKETS.len(), 19);
    let mut i = 0usize;
    g.bench_function("per_request_25_labels", |b| {
        b.iter(|| {
            let (code, flags) = CODES[i % 3];
            i += 1;
            let code = code.to_string();
            let mut v: Vec<&str> = fixed.iter().map(String::as_str).collect();
            v.extend(["http", flags, UNKNOWN, code.as_str(), ""]);
            m.requests.with_label_values(&v).inc();
            m.duration.with_label_values(&v).observe(black_box(3.2));
            m.request_bytes
                .with_label_values(&v)
                .observe(black_box(120.0));
            m.response_bytes
                .with_label_values(&v)
                .observe(black_box(2048.0));
        })
    });

    // Pre-resolved: what the gateway does now.
    let r = Registry::new();
    let m = istio_metrics(&r);
    let set = LabelSet::new(&Workload::default(), UNKNOWN, &destination());
    let mut i = 0usize;
    g.bench_function("pre_resolved_25_labels", |b| {
        b.iter(|| {
            let (code, flags) = CODES[i % 3];
            i += 1;
            set.record_http(
                &m,
                &HttpSample {
                    key: HttpKey {
                        grpc: false,
                        response_code: code,
                        grpc_status: None,
                        response_flags: flags,
                    },
                    duration_ms: black_box(3.2),
                    request_bytes: black_box(120),
                    response_bytes: black_box(2048),
                    messages: (0, 0),
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
