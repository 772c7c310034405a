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
use crate::config::host::HostPattern;
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

/// The SNI for TLS origination: DR `sni`, else the destination host (the requested host for
/// wildcard registry entries, as Envoy's auto SNI).
pub fn origination_sni(cluster: &Cluster, request_host: &str) -> String {
    match cluster.upstream.tls.as_ref().and_then(|t| t.sni.clone()) {
        Some(sni) => sni,
        None if HostPattern::parse(&cluster.host).is_wildcard()
            || cluster.host.parse::<std::net::IpAddr>().is_ok() =>
        {
            request_host.to_string()
        }
        None => cluster.host.clone(),
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
        origination_sni(cluster, request_host)
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
        if t.verify && !t.subject_alt_names.is_empty() {
            // Istio: with subjectAltNames the certificate must carry one of them (the SNI alone
            // is not enough). Pingora can only add names to the hostname check, so the chain
            // is verified by OpenSSL and the SANs here; `check_upstream_sans` acts on the result.
            o.verify_hostname = false;
            let wanted: Arc<[String]> = t.subject_alt_names.clone().into();
            o.upstream_tls_handshake_complete_hook = Some(Arc::new(move |ssl| {
                let presented = ssl
                    .peer_certificate()
                    .map(|c| crate::tls::server::cert_sans(&c))
                    .unwrap_or_default();
                let ok = presented
                    .iter()
                    .any(|s| wanted.iter().any(|w| san_matches(w, s)));
                Some(Arc::new(SanCheck {
                    ok,
                    presented,
                    wanted: wanted.clone(),
                }) as Arc<dyn std::any::Any + Send + Sync>)
            }));
        } else {
            o.verify_hostname = t.verify;
        }
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

/// The outcome of the `subjectAltNames` check made when an upstream TLS connection is set up.
#[derive(Debug)]
pub struct SanCheck {
    pub ok: bool,
    pub presented: Vec<String>,
    pub wanted: Arc<[String]>,
}

impl SanCheck {
    /// The failure reason for a connection whose certificate carries none of the wanted names.
    pub fn failure(digest: Option<&pingora::protocols::Digest>) -> Option<String> {
        let check = digest?.ssl_digest.as_ref()?.extension.get::<SanCheck>()?;
        (!check.ok).then(|| {
            format!(
                "upstream certificate SANs [{}] include none of subjectAltNames [{}]",
                check.presented.join(", "),
                check.wanted.join(", ")
            )
        })
    }
}

/// A DR subjectAltNames entry against a certificate SAN (a `*.` SAN covers one label).
fn san_matches(wanted: &str, presented: &str) -> bool {
    if wanted.eq_ignore_ascii_case(presented) {
        return true;
    }
    match presented.strip_prefix("*.") {
        Some(suffix) => wanted
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}
