//! The `HttpPeer` for one attempt, cloned from a per-cluster template compiled once: TLS
//! origination, HTTP/2, timeouts, TCP keep-alive and pool isolation are set at compile time;
//! an attempt only fills in the endpoint, the SNI when it follows the request, and what is
//! left of the route timeout.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::TcpKeepalive;
use pingora::upstreams::peer::{HttpPeer, Tracer, Tracing};
use serde::Serialize;

use super::stats::ClusterStats;
use crate::tls::upstream::OriginationTls;

/// Envoy/Istio default connect timeout (meshConfig.connectTimeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `connectionPool.http.idleTimeout` when the DestinationRule says nothing: Istio's 1h.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The cap on any idle timeout (`--upstream-idle-cap`): most servers drop idle keep-alive
/// connections after 60–75 s (nginx 75 s), and reusing a connection the server is closing is
/// what produces Envoy's intermittent 503 UC; closing ours first avoids the race.
pub const DEFAULT_IDLE_CAP: Duration = Duration::from_secs(55);
/// h2 streams multiplexed per upstream connection unless `maxConcurrentStreams` says otherwise.
pub const DEFAULT_H2_STREAMS: usize = 100;

/// How connections to the upstream are made.
#[derive(Debug, Serialize)]
pub struct Upstream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Arc<OriginationTls>>,
    /// Speak HTTP/2 to the upstream (GRPC/HTTP2 port, or `h2UpgradePolicy: UPGRADE`).
    pub http2: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_h2_streams: usize,
    /// Pool isolation: connections are only reused within one cluster and TLS policy.
    pub group_key: u64,
    /// (idle, interval, probes)
    pub tcp_keepalive: Option<(Duration, Duration, usize)>,
}

/// Counts upstream connections per cluster (Pingora calls it on connect and on close).
#[derive(Debug, Clone)]
struct ConnectionCounter {
    stats: Arc<ClusterStats>,
    tls: bool,
}

impl Tracing for ConnectionCounter {
    fn on_connected(&self) {
        self.stats.connections_opened.fetch_add(1, Relaxed);
        self.stats.connections_active.fetch_add(1, Relaxed);
        if self.tls {
            self.stats.tls_handshakes.fetch_add(1, Relaxed);
        }
    }

    fn on_disconnected(&self) {
        self.stats.connections_active.fetch_sub(1, Relaxed);
    }

    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(self.clone())
    }
}

/// A cluster's peer with everything but the endpoint filled in.
pub struct PeerTemplate {
    peer: HttpPeer,
    /// No fixed SNI (wildcard or IP destination): send the request's host (Envoy's auto SNI).
    sni_from_request: bool,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PeerTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTemplate")
            .field("peer", &self.peer.to_string())
            .finish()
    }
}

impl PeerTemplate {
    pub fn new(up: &Upstream, stats: &Arc<ClusterStats>) -> PeerTemplate {
        let tls = up.tls.as_deref();
        let sni = tls.and_then(|t| t.sni.clone()).unwrap_or_default();
        let mut peer = HttpPeer::new(SocketAddr::from(([0, 0, 0, 0], 0)), tls.is_some(), sni);
        peer.group_key = up.group_key;
        let o = &mut peer.options;
        o.connection_timeout = Some(up.connect_timeout);
        o.total_connection_timeout = Some(up.connect_timeout * 2);
        o.idle_timeout = Some(up.idle_timeout);
        if let Some(t) = tls {
            o.verify_cert = t.verify;
            o.ca = t.ca.clone();
            peer.client_cert_key = t.client_cert.clone();
            // With subjectAltNames, the SANs are checked by the compiled hook instead of the SNI.
            o.upstream_tls_handshake_complete_hook = t.san_check.clone();
            o.verify_hostname = t.verify && t.san_check.is_none();
        }
        if up.http2 {
            o.set_http_version(2, 2);
            o.max_h2_streams = up.max_h2_streams;
        }
        if let Some((idle, interval, count)) = up.tcp_keepalive {
            o.tcp_keepalive = Some(TcpKeepalive {
                idle,
                interval,
                count,
                #[cfg(target_os = "linux")]
                user_timeout: Duration::ZERO,
            });
        }
        o.tracer = Some(Tracer(Box::new(ConnectionCounter {
            stats: stats.clone(),
            tls: tls.is_some(),
        })));
        PeerTemplate {
            sni_from_request: tls.is_some_and(|t| t.sni.is_none()),
            peer,
            connect_timeout: up.connect_timeout,
        }
    }

    /// The peer for one attempt. `budget` is what is left of the route (or per-try) timeout.
    pub fn peer(
        &self,
        address: SocketAddr,
        request_host: &str,
        budget: Option<Duration>,
    ) -> HttpPeer {
        let mut peer = self.peer.clone();
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(address);
        if self.sni_from_request {
            peer.sni = request_host.to_string();
        }
        if let Some(b) = budget {
            let o = &mut peer.options;
            o.total_connection_timeout = Some(b.min(self.connect_timeout * 2));
            o.read_timeout = Some(b);
            o.write_timeout = Some(b);
        }
        peer
    }
}
