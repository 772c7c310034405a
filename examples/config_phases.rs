//! Where a (re)load spends its time: `cargo run --release --example config_phases -- DIR [CERTS]`
//! prints the time of each phase of `reload::load_and_compile` (read, parse, validate, compile,
//! hashes) for the ingress instance, and the whole of it without and with the parse cache a
//! reload uses (warm from the second round on), repeated `ROUNDS` times (default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

use std::path::PathBuf;
use std::time::Instant;

use portcullis::compile::{compile, Instance};
use portcullis::config::load::{load_files, read_dir};
use portcullis::config::validate::validate;
use portcullis::reload::{
    files_hash, load_and_compile, load_and_compile_cached, ConfigSource, Pipeline,
};
use portcullis::upstream::StatsRegistry;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: config_phases DIR [CERTS_DIR]"));
    let certs = args
        .next()
        .map_or_else(|| PathBuf::from("certs"), PathBuf::from);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let instance = Instance {
        certs_dir: certs,
        ..Instance::default()
    };
    let stats = StatsRegistry::default();
    let source = ConfigSource::new(dir.clone(), instance.clone());
    let mut cache = Pipeline::default();
    for round in 1..=rounds {
        let t = Instant::now();
        let files = read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e:?}", dir.display()));
        let read = t.elapsed();
        let t = Instant::now();
        let (resources, diags) = load_files(files);
        let parse = t.elapsed();
        let t = Instant::now();
        let findings = validate(&resources);
        let validated = t.elapsed();
        let t = Instant::now();
        let compiled = compile(&resources, &instance, &stats);
        let compiled_in = t.elapsed();
        let t = Instant::now();
        let hash = files_hash(&resources, None);
        let hashed = t.elapsed();
        let t = Instant::now();
        let whole = load_and_compile(&source, &stats).map(|_| ());
        let whole_in = t.elapsed();
        let t = Instant::now();
        let cached = load_and_compile_cached(&source, &stats, &mut cache).map(|_| ());
        let cached_in = t.elapsed();
        let errors = diags.error_count() + findings.iter().filter(|d| d.is_error()).count();
        println!(
            "round {round}: {} resources in {} files ({errors} errors{}): read {read:?}, parse {parse:?}, validate {validated:?}, compile {compiled_in:?}, hash {hashed:?} ({hash}); load_and_compile {whole_in:?}{}, with the parse cache {cached_in:?}{}",
            resources.len(),
            resources.files.len(),
            if compiled.is_ok() { "" } else { ", compile failed" },
            if whole.is_ok() { "" } else { " (failed)" },
            if cached.is_ok() { "" } else { " (failed)" },
        );
    }
}
