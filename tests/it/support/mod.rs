//! Shared support for the `it` integration-test binary: real servers, real clients, real
//! certificates, and the real `portcullis` process. No mocks.
//!
//! - [`certs`]: test PKI (CAs, leaves, fingerprints, on-disk credential layouts).
//! - [`k8s`]: kubelet-style atomic volume layout (`..data` symlink swap) for any files.
//! - [`backend`]: upstream HTTP(S)/h2c/WebSocket/TCP/TLS echo servers with counters.
//! - [`ws`]: raw WebSocket handshake and frames.
//! - [`gateway`]: spawn the gateway, wait for readiness, capture logs, signals.
//! - [`cli`]: one-shot `portcullis check` / `routes`.
//! - [`client`]: reqwest clients, TLS handshake probe, raw HTTP.
//! - [`config`]: temp config directories with atomic writes.
//! - [`ports`]: free ports.
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod gateway;
pub mod k8s;
pub mod ports;
pub mod ws;

pub use backend::{Backend, BackendBuilder, RecordedRequest};
pub use certs::{Ca, CertKey, CertOpts, KeyType};
pub use config::ConfigDir;
pub use gateway::{Gateway, GatewayOpts};
pub use ports::{free_port, free_ports};

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

/// Blocking version of [`eventually`].
pub fn eventually_blocking(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("condition not met within {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
