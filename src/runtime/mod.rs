//! Runtime: the Pingora side. One `ArcSwap<Snapshot>` is read by every connection and
//! request; [`server::Gateway`] builds the proxy and the listener set, applies new snapshots
//! and drains on shutdown. It knows nothing of the CLI, the watcher or the admin endpoints.

pub mod attempt;
pub mod buffers;
pub mod destination;
pub mod downstream;
pub mod drain;
pub mod edge;
pub mod http1;
pub mod limits;
pub mod listeners;
pub mod log;
pub mod mirror;
pub mod outbound;
pub mod overload;
pub mod proxy;
pub mod proxy_protocol;
pub mod readiness;
pub mod request;
pub mod rescue;
pub mod routing;
pub mod server;
pub mod trace;
pub mod tunnel;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use openssl::ssl::SslAcceptor;
use pingora::connectors::TransportConnector;

use crate::compile::Snapshot;
use crate::dns::DnsCache;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Metrics;
use crate::telemetry::tracing::SpanSink;
use crate::upstream::StatsRegistry;
pub use drain::{Drain, DrainPhase, DrainSettings};
use limits::DownstreamLimits;
use overload::Overload;
pub use readiness::{Readiness, ServerState};

/// Settings of the running process that are not part of the config snapshot.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The drain timeline (SIGTERM, `/drain_listeners`, listener removal).
    pub drain: DrainSettings,
    /// Require the ClientHello SNI of a CONNECT tunnel to equal the CONNECT host.
    pub connect_sni_check: bool,
    /// What a client may send, how long it may take, how many connections it may hold.
    pub limits: DownstreamLimits,
    /// The admin listener's address: never a destination a request chooses.
    pub admin: Option<SocketAddr>,
    /// The `server` header of every response (Istio's `istio-envoy`); `None` passes the
    /// upstream's through.
    pub server_name: Option<http::HeaderValue>,
    /// Serve HTTP/1.0 requests (Istio's `PILOT_HTTP10`); else they get 426.
    pub accept_http10: bool,
    /// Request bodies up to this size are kept for a retry (at most Pingora's 64 KiB).
    pub retry_buffer_limit: usize,
}

/// Everything shared by the data path.
pub struct State {
    pub snapshot: ArcSwap<Snapshot>,
    pub dns: Arc<DnsCache>,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// Finished spans on their way to the tracing exporter.
    pub spans: SpanSink,
    pub stats: Arc<StatsRegistry>,
    pub options: RuntimeOptions,
    pub connector: TransportConnector,
    /// Mirror copies: their connection pools and in-flight bound.
    pub mirrors: Arc<mirror::Mirrors>,
    /// Fails handshakes whose SNI no server serves.
    pub reject_sni: SslAcceptor,
    /// Envoy's server state: LIVE, DRAINING, (PRE_)INITIALIZING.
    pub readiness: Readiness,
    /// The drain settings and the listeners' drain phase.
    pub drain: Drain,
    pub started: Instant,
    /// Connection and request-head memory caps (readiness fails while one is reached).
    pub overload: Overload,
    logged_snis: Mutex<HashSet<String>>,
}

impl State {
    pub fn new(
        snapshot: Snapshot,
        access_log: AccessLog,
        stats: Arc<StatsRegistry>,
        options: RuntimeOptions,
    ) -> Result<State, crate::tls::TlsError> {
        let settings = options.drain;
        let overload = Overload::new(&options.limits, Default::default());
        let metrics = Metrics::new();
        Ok(State {
            snapshot: ArcSwap::from_pointee(snapshot),
            dns: Arc::new(DnsCache::from_system()),
            spans: SpanSink::new(metrics.tracing_dropped.clone()),
            metrics,
            access_log,
            stats,
            options,
            connector: TransportConnector::new(None),
            mirrors: Arc::new(mirror::Mirrors::default()),
            reject_sni: crate::tls::server::reject_unknown_sni()?,
            readiness: Readiness::default(),
            drain: Drain::new(settings),
            started: Instant::now(),
            overload,
            logged_snis: Mutex::new(HashSet::new()),
        })
    }

    /// Ready: LIVE, and no connection or request-head cap reached (a load balancer should
    /// send elsewhere meanwhile).
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready() && self.overload.overloaded().is_none()
    }

    /// Logs an SNI no server serves, once per name (a scanner must not flood the log).
    pub fn unknown_sni(&self, sni: Option<&str>, local: SocketAddr) {
        let name = sni.unwrap_or("<none>").to_string();
        let mut seen = self.logged_snis.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 4096 && seen.insert(name.clone()) {
            tracing::warn!(sni = %name, listener = %local, "TLS handshake refused: no server for this SNI (unrecognized_name)");
        }
    }
}
