//! Shared support for the `it` integration-test binary: real servers, real clients, real
//! certificates, and the real `portcullis` process. No mocks.
//!
//! - [`harness`]: the one harness every gateway test starts: config + certs directories, port
//!   mapping, the process, backends, typed admin readers.
//! - [`yaml`]: typed builders for Gateway, VirtualService, ServiceEntry, DestinationRule.
//! - [`gateway`]: the `portcullis run` process: readiness, captured logs, signals.
//! - [`certs`]: test PKI (CAs, leaves, fingerprints, on-disk credential layouts).
//! - [`k8s`]: kubelet-style atomic volume layout (`..data` symlink swap) for any files.
//! - [`backend`]: upstream HTTP(S)/h2c/WebSocket/TCP/TLS echo servers with counters.
//! - [`ws`]: raw WebSocket handshake and frames.
//! - [`cli`]: one-shot `portcullis check` / `routes`.
//! - [`envoy`]: a real Envoy set up as Istio's gateways run it, the reference for edge attacks.
//! - [`client`]: reqwest clients, TLS handshake probe, raw HTTP exchanges and their parsing.
//! - [`config`]: temp config directories with atomic writes.
//! - [`ports`]: free ports.
//! - [`prometheus`]: a real Prometheus scraping the gateway, and a PromQL client.
//! - [`otlp`]: a real OTLP (gRPC, HTTP/protobuf) and Zipkin span receiver.
//! - [`security`]: JWT signers and JWKS, a JWKS server, an ext_authz server.
//!
//! Everything that waits is async (`tokio::time::sleep` polling); sync tests only compute.
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod envoy;
pub mod gateway;
pub mod harness;
pub mod k8s;
pub mod otlp;
pub mod ports;
pub mod prometheus;
pub mod security;
pub mod ws;
pub mod yaml;

pub use backend::{Backend, BackendBuilder, RecordedRequest};
pub use certs::{Ca, CertKey, CertOpts, KeyType};
pub use config::ConfigDir;
pub use gateway::{GatewayOpts, GatewayProcess};
pub use harness::{svc, who, Harness, HarnessBuilder};
pub use ports::{free_port, free_ports};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it returns true; panics with `what` after `timeout`.
/// `eventually(Duration::from_secs(10), "route live", async || get(..).await == 200).await`
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("condition not met within {timeout:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shared Istio YAML corpus, `../shared/corpus/istio` relative to the crate root (real
/// networking YAML from istio/istio; see its SOURCES.txt). Panics, saying so, when it is
/// missing.
pub fn istio_corpus() -> PathBuf {
    corpus_at(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/istio"
    )))
}

/// `dir`, after checking it is a directory (see [`istio_corpus`]).
pub fn corpus_at(dir: PathBuf) -> PathBuf {
    assert!(
        dir.is_dir(),
        "the shared Istio YAML corpus is missing: expected the directory {} \
         (`../shared/corpus/istio` relative to the crate root, real Istio networking YAML \
         from istio/istio; every developer and CI run has `../shared` beside the project)",
        dir.display()
    );
    dir
}
