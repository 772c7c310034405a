//! Config pipeline cost: parse + validate + compile of generated configs (what a reload does).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis::compile::{compile, Instance};
use portcullis::config::validate::validate;
use portcullis::upstream::StatsRegistry;

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("config");
    group.sample_size(10);
    for n in [100usize, 1_000] {
        let resources = common::generated(n);
        group.bench_with_input(BenchmarkId::new("validate", n), &resources, |b, r| {
            b.iter(|| validate(r))
        });
        group.bench_with_input(BenchmarkId::new("compile", n), &resources, |b, r| {
            b.iter(|| compile(r, &Instance::default(), &StatsRegistry::default()).map(|_| ()))
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
