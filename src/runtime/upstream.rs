//! The upstream leg: circuit-breaker admission, and the `HttpPeer` for a chosen endpoint, built
//! from the cluster's compiled policy (TLS origination, HTTP/2, timeouts, pool isolation).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::TcpKeepalive;
use pingora::upstreams::peer::{HttpPeer, Tracer, Tracing};
use tokio::sync::OwnedSemaphorePermit;

use super::reply::LocalReply;
use crate::compile::cluster::Cluster;
use crate::observe::stats::ClusterStats;

/// A request's hold on its cluster's capacity; released when the request ends.
pub struct Admission {
    stats: Arc<ClusterStats>,
    _slot: Option<OwnedSemaphorePermit>,
    endpoint: Option<Arc<AtomicU64>>,
}

impl Admission {
    /// Counts the request against the endpoint LEAST_REQUEST balances on.
    pub fn set_endpoint(&mut self, counter: Option<Arc<AtomicU64>>) {
        if let Some(old) = self.endpoint.take() {
            old.fetch_sub(1, Relaxed);
        }
        if let Some(c) = &counter {
            c.fetch_add(1, Relaxed);
        }
        self.endpoint = counter;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.stats.active_requests.fetch_sub(1, Relaxed);
        if let Some(c) = &self.endpoint {
            c.fetch_sub(1, Relaxed);
        }
    }
}

/// Envoy's circuit breakers: `http2MaxRequests` bounds concurrent requests; for HTTP/1
/// upstreams `maxConnections` bounds requests in flight (one per connection) and up to
/// `http1MaxPendingRequests` more may wait for a slot. Anything beyond overflows with 503 UO.
pub async fn admit(cluster: &Cluster) -> Result<Admission, LocalReply> {
    let up = &cluster.upstream;
    let stats = &cluster.stats;
    stats.requests.fetch_add(1, Relaxed);
    let overflow = || {
        stats.overflows.fetch_add(1, Relaxed);
        LocalReply::overflow(&cluster.name)
    };
    if let Some(max) = up.max_requests {
        if stats.active_requests.load(Relaxed) >= max {
            return Err(overflow());
        }
    }
    let mut slot = None;
    if let (Some(max_conns), false) = (up.max_connections, up.http2) {
        let slots = stats.connection_slots(max_conns);
        match slots.clone().try_acquire_owned() {
            Ok(p) => slot = Some(p),
            Err(_) => {
                let max_pending = up.max_pending_requests.unwrap_or(u64::from(u32::MAX));
                if stats.pending_requests.fetch_add(1, Relaxed) >= max_pending {
                    stats.pending_requests.fetch_sub(1, Relaxed);
                    return Err(overflow());
                }
                let waited = tokio::time::timeout(up.connect_timeout, slots.acquire_owned()).await;
                stats.pending_requests.fetch_sub(1, Relaxed);
                match waited {
                    Ok(Ok(p)) => slot = Some(p),
                    _ => return Err(overflow()),
                }
            }
        }
    }
    stats.active_requests.fetch_add(1, Relaxed);
    Ok(Admission {
        stats: stats.clone(),
        _slot: slot,
        endpoint: None,
    })
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

/// The peer for one attempt. `budget` is what is left of the route (or per-try) timeout.
pub fn peer(
    cluster: &Cluster,
    address: SocketAddr,
    request_host: &str,
    budget: Option<Duration>,
) -> HttpPeer {
    let up = &cluster.upstream;
    let tls = up.tls.as_deref();
    let sni = if tls.is_some() {
        tls.and_then(|t| t.sni.clone())
            .unwrap_or_else(|| request_host.to_string())
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(address, tls.is_some(), sni);
    peer.group_key = up.group_key;
    let o = &mut peer.options;
    o.connection_timeout = Some(up.connect_timeout);
    o.total_connection_timeout =
        Some(budget.map_or(up.connect_timeout * 2, |b| b.min(up.connect_timeout * 2)));
    o.idle_timeout = Some(up.idle_timeout);
    o.read_timeout = budget;
    o.write_timeout = budget;
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
        stats: cluster.stats.clone(),
        tls: tls.is_some(),
    })));
    peer
}
