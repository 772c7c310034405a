//! Request-path lookups: Host → virtual host, then the first matching route, at 1, 1,000 and
//! 10,000 virtual hosts. Both must stay flat as the config grows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::HeaderMap;
use portcullis::compile::listener::ListenerKind;
use portcullis::compile::matcher::RequestView;
use portcullis::compile::route::first_match;
use portcullis::compile::{compile, Instance};
use portcullis::upstream::StatsRegistry;

fn routing(c: &mut Criterion) {
    let mut lookup = c.benchmark_group("host_lookup");
    let mut compiled = Vec::new();
    for n in [1usize, 1_000, 10_000] {
        let resources = common::generated(n);
        let (snapshot, _) =
            compile(&resources, &Instance::default(), &StatsRegistry::default()).expect("compiles");
        let listener = snapshot.listeners.values().next().expect("a listener");
        let ListenerKind::Http { routes } = &listener.kind else {
            panic!("http listener")
        };
        let exact = format!("svc-{}.example.com", n.saturating_sub(1) / 4 * 4);
        let wildcard = format!("a.b.team-{}.example.com", (n / 4) * 4 + 3);
        let wildcard = if n >= 4 { wildcard } else { exact.clone() };
        lookup.bench_with_input(BenchmarkId::new("exact", n), &exact, |b, h| {
            b.iter(|| routes.find(h))
        });
        lookup.bench_with_input(BenchmarkId::new("wildcard", n), &wildcard, |b, h| {
            b.iter(|| routes.find(h))
        });
        lookup.bench_with_input(
            BenchmarkId::new("miss", n),
            &"nothing.example.org",
            |b, h| b.iter(|| routes.find(h)),
        );
        compiled.push((n, snapshot, exact));
    }
    lookup.finish();

    let mut group = c.benchmark_group("route_match");
    let headers = HeaderMap::new();
    for (n, snapshot, host) in &compiled {
        let listener = snapshot.listeners.values().next().expect("a listener");
        let ListenerKind::Http { routes } = &listener.kind else {
            unreachable!()
        };
        let vhost = routes.find(host).expect("vhost");
        for (name, path) in [
            ("prefix", "/api/v1/items"),
            ("regex", "/users/42/profile"),
            ("catch_all", "/index.html"),
        ] {
            let view = RequestView {
                method: "GET",
                scheme: "http",
                authority: host,
                path,
                query: None,
                headers: &headers,
                claims: None,
            };
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| first_match(&vhost.routes, &view))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
