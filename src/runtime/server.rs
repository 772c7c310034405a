//! The running gateway: the shared [`State`] (one `ArcSwap<Snapshot>` read by every connection
//! and request), one Pingora HTTP proxy shared by every listener (one upstream pool), the
//! listener set reconciled with each snapshot, and the drain on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::server::configuration::ServerConf;
use tracing::{info, warn};

use super::listeners::{BindError, Listeners, Prepared};
use super::proxy::Edge;
use super::State;
use crate::compile::Snapshot;

/// A gateway serving a snapshot; built inside a Tokio runtime.
pub struct Gateway {
    pub state: Arc<State>,
    listeners: Arc<Listeners>,
}

impl Gateway {
    /// Binds the current snapshot's listeners and starts serving. `threads` sizes Pingora's
    /// per-process settings (the Tokio runtime itself is the caller's).
    pub fn start(state: Arc<State>, threads: usize) -> Result<Gateway, BindError> {
        let conf = ServerConf {
            threads,
            // Idle upstream connections kept for reuse (shared by every upstream).
            upstream_keepalive_pool_size: 1024,
            ..Default::default()
        };
        let mut proxy = pingora_proxy::http_proxy(
            &Arc::new(conf),
            Edge {
                state: state.clone(),
            },
        );
        let limits = &state.options.limits;
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        opts.h2_idle_timeout = limits.http2_idle_timeout;
        proxy.server_options = Some(opts);
        proxy.h2_options = Some(h2_options(limits));
        let listeners = Arc::new(Listeners::new(state.clone(), Arc::new(proxy)));
        let snapshot = state.snapshot.load_full();
        let prepared = listeners.prepare(&snapshot)?;
        listeners.commit(prepared, &snapshot);
        tokio::spawn(state.dns.clone().refresh_loop());
        tokio::spawn(warn_expiring_certificates(state.clone()));
        Ok(Gateway { state, listeners })
    }

    /// Serves `snapshot` from now on: its new listeners are bound first (a port that cannot be
    /// bound refuses the whole snapshot and nothing changes), then it is swapped in and removed
    /// listeners drain.
    pub fn apply(&self, snapshot: Snapshot) -> Result<(), BindError> {
        let prepared: Prepared = self.listeners.prepare(&snapshot)?;
        let snapshot = Arc::new(snapshot);
        let old = self.state.snapshot.swap(snapshot.clone());
        self.listeners.commit(prepared, &snapshot);
        // Freeing a large snapshot takes a while: not on a worker that serves requests. Then
        // the stats of clusters that left the config (nothing references them).
        let stats = self.state.stats.clone();
        tokio::task::spawn_blocking(move || {
            drop(old);
            stats.prune();
        });
        Ok(())
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.addresses()
    }

    /// Fails readiness, stops accepting, lets open connections finish for up to the drain
    /// timeout.
    pub async fn shutdown(&self) {
        self.state.ready.store(false, Relaxed);
        let listeners = &self.listeners;
        let drain = self.state.options.drain_timeout;
        info!(
            "shutting down: draining {} connection(s) for up to {drain:?}",
            listeners.connections.load(Relaxed)
        );
        listeners.shutdown().await;
        let deadline = Instant::now() + drain;
        while listeners.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = listeners.connections.load(Relaxed);
        if left > 0 {
            warn!("drain timeout: closing {left} connection(s) still open");
        } else {
            info!("drained; exiting");
        }
        self.state.access_log.flush();
    }
}

/// HTTP/2 settings: Pingora's bounded defaults, with the request head limit advertised as
/// `SETTINGS_MAX_HEADER_LIST_SIZE` (a larger header list gets 431 from the h2 codec, as Envoy's
/// `max_request_headers_kb` bounds HTTP/2 too).
fn h2_options(limits: &super::limits::DownstreamLimits) -> H2Options {
    let mut h2 = default_h2_options();
    h2.max_header_list_size(u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX));
    h2
}

/// A long-running gateway keeps warning while a served certificate nears its expiry (reloads
/// and start-up warn too).
async fn warn_expiring_certificates(state: Arc<State>) {
    use crate::compile::listener::{ChainAction, ListenerKind};
    let mut tick = tokio::time::interval(Duration::from_secs(6 * 3600));
    tick.tick().await;
    loop {
        tick.tick().await;
        let snapshot = state.snapshot.load_full();
        for l in snapshot.listeners.values() {
            let ListenerKind::Tls(chains) = &l.kind else {
                continue;
            };
            for c in &chains.chains {
                let tls = match &c.action {
                    ChainAction::TerminateHttp { tls, .. }
                    | ChainAction::TerminateTcp { tls, .. } => tls,
                    ChainAction::Passthrough { .. } => continue,
                };
                for cert in tls.certificates.iter() {
                    if let Some(w) = cert.expiry_warning() {
                        warn!(listener = %l.address, "{w}");
                    }
                }
            }
        }
    }
}
