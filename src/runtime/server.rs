//! The running gateway: the shared [`State`] (one `ArcSwap<Snapshot>` read by every connection
//! and request), one Pingora HTTP proxy shared by every listener (one upstream pool), the
//! listener set reconciled with each snapshot, and the drain on shutdown (Envoy's drain under
//! istio-agent, see [`super::drain`]): readiness fails, the listeners keep accepting for
//! `drainDuration` while every connection is told to close, then stop; in-flight requests get
//! `terminationDrainDuration`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::server::configuration::ServerConf;
use prometheus::proto::{MetricFamily, MetricType};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::drain::DrainPhase;
use super::listeners::{BindError, Listeners, Prepared};
use super::proxy::Edge;
use super::State;
use crate::compile::Snapshot;
use crate::telemetry::envoy::family;

/// A gateway serving a snapshot; built inside a Tokio runtime.
pub struct Gateway {
    pub state: Arc<State>,
    listeners: Arc<Listeners>,
    /// Worker threads (Envoy's `concurrency`).
    pub threads: usize,
    /// `/quitquitquit` asked the process to exit.
    quit: Notify,
}

impl Gateway {
    /// Binds the current snapshot's listeners and starts serving. `threads` sizes Pingora's
    /// per-process settings (the Tokio runtime itself is the caller's).
    pub fn start(state: Arc<State>, threads: usize) -> Result<Gateway, BindError> {
        state.readiness.initializing();
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
        Ok(Gateway {
            state,
            listeners,
            threads,
            quit: Notify::new(),
        })
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

    /// Starts the graceful drain (once): the listeners keep accepting, every connection is told
    /// to close (HTTP/1 `Connection: close`, HTTP/2 GOAWAY).
    pub fn start_drain(&self) {
        if self.state.drain.advance(DrainPhase::Draining) {
            self.listeners.start_drain();
            info!(
                "draining: listeners keep accepting, answering HTTP/1 with Connection: close and HTTP/2 with GOAWAY"
            );
        }
    }

    /// Stops the listeners for good: idle connections close, in-flight requests get the
    /// termination drain, no reload opens a listener again.
    pub async fn stop_listeners(&self) {
        self.start_drain();
        if self.state.drain.advance(DrainPhase::Stopped) {
            info!(
                "listeners stopped; {} connection(s) open",
                self.listeners.connections.load(Relaxed)
            );
            self.listeners.shutdown().await;
        }
    }

    /// Envoy's `/drain_listeners`: drains now; stops the listeners after `drainDuration` when
    /// `graceful`, at once otherwise; never when `skip_exit` (Envoy
    /// `source/server/admin/listeners_handler.cc`). The process keeps running.
    pub fn drain_listeners(self: &Arc<Self>, graceful: bool, skip_exit: bool) {
        self.start_drain();
        if skip_exit {
            return;
        }
        let wait = if graceful {
            self.state.drain.settings().drain_duration
        } else {
            Duration::ZERO
        };
        let gateway = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => gateway.stop_listeners().await,
                _ = gateway.state.drain.reached(DrainPhase::Stopped) => {}
            }
        });
    }

    /// `/quitquitquit`: asks the process to exit now (see [`quit_requested`](Self::quit_requested)).
    pub fn request_quit(&self) {
        self.quit.notify_one();
    }

    /// Resolves when `/quitquitquit` was called.
    pub async fn quit_requested(&self) {
        self.quit.notified().await;
    }

    /// The process is going away: readiness fails at once; when `graceful` (SIGTERM) the
    /// listeners keep accepting for `drainDuration` (or until `hurry` resolves: a second
    /// signal) while every connection is told to close; then they stop and in-flight requests
    /// get up to `terminationDrainDuration`.
    pub async fn shutdown(&self, graceful: bool, hurry: impl Future<Output = ()>) {
        self.state.readiness.shut_down();
        let settings = self.state.drain.settings();
        if graceful {
            self.start_drain();
            info!(
                "shutting down: not ready; listeners keep accepting for {:?} (drain duration)",
                settings.drain_duration
            );
            tokio::select! {
                _ = tokio::time::sleep(settings.drain_duration) => {}
                _ = self.state.drain.reached(DrainPhase::Stopped) => {}
                _ = hurry => info!("drain cut short"),
            }
        }
        self.stop_listeners().await;
        let listeners = &self.listeners;
        let grace = settings.termination_drain_duration;
        info!(
            "draining {} connection(s) for up to {grace:?} (termination drain duration)",
            listeners.connections.load(Relaxed)
        );
        let deadline = Instant::now() + grace;
        while listeners.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = listeners.connections.load(Relaxed);
        if left > 0 {
            warn!("termination drain over: closing {left} connection(s) still open");
        } else {
            info!("drained; exiting");
        }
        self.state.access_log.flush();
    }

    /// Envoy's server and listener stats (`server.*`, `listener_manager.*`,
    /// `listener.<address>.downstream_cx_*`), as Prometheus families.
    pub fn stat_families(&self) -> Vec<MetricFamily> {
        use MetricType::{COUNTER, GAUGE};
        let state = self.state.readiness.state();
        let listeners = self.listeners.stats();
        let draining = self.state.drain.phase() == DrainPhase::Draining;
        let mut out = vec![
            family(
                "envoy_server_live",
                "1 while LIVE",
                GAUGE,
                [(
                    vec![],
                    f64::from(u8::from(state == super::ServerState::Live)),
                )],
            ),
            family(
                "envoy_server_state",
                "0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING, 3 INITIALIZING",
                GAUGE,
                [(vec![], state as i64 as f64)],
            ),
            family(
                "envoy_server_uptime",
                "Seconds since start",
                GAUGE,
                [(vec![], self.state.started.elapsed().as_secs() as f64)],
            ),
            family(
                "envoy_server_concurrency",
                "Worker threads",
                GAUGE,
                [(vec![], self.threads as f64)],
            ),
            family(
                "envoy_server_total_connections",
                "Open downstream connections",
                GAUGE,
                [(vec![], self.listeners.connections.load(Relaxed) as f64)],
            ),
            family(
                "envoy_listener_manager_total_listeners_active",
                "Listeners accepting",
                GAUGE,
                [(
                    vec![],
                    if draining {
                        0.0
                    } else {
                        listeners.len() as f64
                    },
                )],
            ),
            family(
                "envoy_listener_manager_total_listeners_draining",
                "Listeners draining",
                GAUGE,
                [(
                    vec![],
                    if draining {
                        listeners.len() as f64
                    } else {
                        0.0
                    },
                )],
            ),
        ];
        if !listeners.is_empty() {
            let name = |a: &SocketAddr| vec![("listener_address", listener_name(*a))];
            out.push(family(
                "envoy_listener_downstream_cx_active",
                "Open connections",
                GAUGE,
                listeners
                    .iter()
                    .map(|(a, s)| (name(a), s.active.load(Relaxed) as f64)),
            ));
            out.push(family(
                "envoy_listener_downstream_cx_total",
                "Connections accepted",
                COUNTER,
                listeners
                    .iter()
                    .map(|(a, s)| (name(a), s.total.load(Relaxed) as f64)),
            ));
            out.extend(http_connection_families(&self.state, &listeners));
        }
        out
    }
}

pub use crate::telemetry::envoy::listener_name;

/// The HTTP connection managers' connection gauges (`http.outbound_<listener>;.downstream_cx_*`):
/// a gateway listener serving HTTP has one connection manager, fed every connection.
fn http_connection_families(
    state: &State,
    listeners: &[(SocketAddr, Arc<super::listeners::ListenerStats>)],
) -> Vec<MetricFamily> {
    use crate::compile::listener::ListenerKind;
    use MetricType::{COUNTER, GAUGE};
    let snapshot = state.snapshot.load();
    let http: Vec<_> = listeners
        .iter()
        .filter(|(a, _)| {
            snapshot
                .listeners
                .get(a)
                .is_some_and(|l| !matches!(l.kind, ListenerKind::Tcp { .. }))
        })
        .map(|(a, s)| {
            (
                vec![(
                    "http_conn_manager_prefix",
                    format!("outbound_{}", listener_name(*a)),
                )],
                s,
            )
        })
        .collect();
    vec![
        family(
            "envoy_http_downstream_cx_active",
            "Open connections",
            GAUGE,
            http.iter()
                .map(|(l, s)| (l.clone(), s.active.load(Relaxed) as f64)),
        ),
        family(
            "envoy_http_downstream_cx_total",
            "Connections accepted",
            COUNTER,
            http.iter()
                .map(|(l, s)| (l.clone(), s.total.load(Relaxed) as f64)),
        ),
    ]
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
