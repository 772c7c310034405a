//! Endpoint choice (DestinationRule `loadBalancer`): LEAST_REQUEST (Istio's default, the less
//! busy of two weighted random choices), ROUND_ROBIN and RANDOM (weighted, Pingora's
//! selection), and consistent hashing (Pingora's Ketama ring). Endpoints this request already
//! tried or that outlier detection ejected are avoided while others remain. Nothing here
//! allocates per request.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora_load_balancing::selection::{
    BackendIter, BackendSelection, Consistent, Random, RoundRobin,
};
use pingora_load_balancing::Backend;
use serde::Serialize;

use super::cookie::CookiePolicy;
use super::endpoint::Endpoint;
use crate::config::types::{ConsistentHash, LoadBalancerSettings, SimpleLb};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    RoundRobin,
    Random,
    LeastRequest,
    ConsistentHash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    Header(String),
    Cookie(CookiePolicy),
    SourceIp,
    QueryParameter(String),
}

impl LbPolicy {
    pub fn compile(lb: Option<&LoadBalancerSettings>) -> LbPolicy {
        let Some(lb) = lb else {
            return LbPolicy::LeastRequest;
        };
        if let Some(key) = lb.consistent_hash.as_ref().and_then(HashKey::compile) {
            return LbPolicy::ConsistentHash(key);
        }
        match lb.simple.unwrap_or_default() {
            SimpleLb::RoundRobin => LbPolicy::RoundRobin,
            SimpleLb::Random => LbPolicy::Random,
            // PASSTHROUGH (original destination) has no meaning without sidecar capture.
            SimpleLb::Unspecified
            | SimpleLb::LeastRequest
            | SimpleLb::LeastConn
            | SimpleLb::Passthrough => LbPolicy::LeastRequest,
        }
    }

    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            LbPolicy::ConsistentHash(k) => Some(k),
            _ => None,
        }
    }
}

/// Room for a textual IP address (the source-IP hash input).
pub type HashBuf = [u8; 48];

impl HashKey {
    fn compile(ch: &ConsistentHash) -> Option<HashKey> {
        if let Some(h) = &ch.http_header_name {
            return Some(HashKey::Header(h.to_ascii_lowercase()));
        }
        if let Some(c) = &ch.http_cookie {
            return Some(HashKey::Cookie(CookiePolicy::compile(c)));
        }
        if ch.use_source_ip == Some(true) {
            return Some(HashKey::SourceIp);
        }
        ch.http_query_parameter_name
            .clone()
            .map(HashKey::QueryParameter)
    }

    /// [`HashKey::input`], and for a cookie policy with a `ttl` and a client without the
    /// cookie, the cookie made for it (its value hashed now, written into `buf`) and the
    /// `Set-Cookie` to send back. `conn`: the connection's remote and local addresses.
    pub fn input_or_issue<'a>(
        &self,
        req: &'a RequestHeader,
        client: Option<IpAddr>,
        conn: Option<(SocketAddr, SocketAddr)>,
        buf: &'a mut HashBuf,
    ) -> (Option<&'a [u8]>, Option<String>) {
        if let (HashKey::Cookie(policy), Some((remote, local))) = (self, conn) {
            if self.input(req, client, &mut [0u8; 48]).is_none() {
                if let Some(issued) = policy.issue(remote, local) {
                    let n = issued.value.len().min(buf.len());
                    buf[..n].copy_from_slice(&issued.value.as_bytes()[..n]);
                    return (Some(&buf[..n]), Some(issued.set_cookie));
                }
            }
        }
        (self.input(req, client, buf), None)
    }

    /// The request's hash input, borrowed from the request (or written into `buf`). The
    /// source IP is hashed as text, as Envoy does.
    pub fn input<'a>(
        &self,
        req: &'a RequestHeader,
        client: Option<IpAddr>,
        buf: &'a mut HashBuf,
    ) -> Option<&'a [u8]> {
        match self {
            HashKey::Header(h) => req.headers.get(h.as_str()).map(|v| v.as_bytes()),
            HashKey::Cookie(c) => req.headers.get_all("cookie").iter().find_map(|v| {
                v.to_str().ok()?.split(';').find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    // Cookie values may be wrapped in double quotes (`parseCookieValue`).
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    (k == c.name).then_some(v.as_bytes())
                })
            }),
            HashKey::SourceIp => {
                use std::io::Write;
                let ip = client?;
                let mut cursor = std::io::Cursor::new(&mut buf[..]);
                write!(cursor, "{ip}").ok()?;
                let n = cursor.position() as usize;
                Some(&buf[..n])
            }
            HashKey::QueryParameter(q) => req.uri.query().and_then(|qs| {
                qs.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == q).then_some(v.as_bytes())
                })
            }),
        }
    }
}

/// Relative weights, prepared once: an index chosen in proportion to its weight.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// Running totals; weights of 0 count as 1.
    cumulative: Box<[u64]>,
}

impl Weights {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Weights {
        let mut total = 0u64;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += u64::from(w.max(1));
                total
            })
            .collect();
        Weights { cumulative }
    }

    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    fn weight(&self, i: usize) -> u64 {
        self.cumulative[i] - if i == 0 { 0 } else { self.cumulative[i - 1] }
    }

    /// A random index, in proportion to the weights (0 when there is at most one).
    pub fn choose(&self) -> usize {
        if self.cumulative.len() <= 1 {
            return 0;
        }
        let r = fastrand::u64(0..self.total());
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// A random index among those `allowed`, in proportion to their weights; any index when
    /// none is allowed.
    pub fn choose_allowed(&self, allowed: impl Fn(usize) -> bool) -> usize {
        // Rejection sampling keeps the proportions exact; a scan settles the rare rest.
        for _ in 0..4 {
            let i = self.choose();
            if allowed(i) {
                return i;
            }
        }
        let total: u64 = (0..self.len())
            .filter(|&i| allowed(i))
            .map(|i| self.weight(i))
            .sum();
        if total == 0 {
            return self.choose();
        }
        let mut r = fastrand::u64(0..total);
        for i in (0..self.len()).filter(|&i| allowed(i)) {
            let w = self.weight(i);
            if r < w {
                return i;
            }
            r -= w;
        }
        0
    }
}

enum Selection {
    LeastRequest,
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Consistent(Arc<Consistent>),
}

/// The compiled balancer of a cluster with fixed endpoints (and the rotation for DNS answers).
pub struct Balancer {
    selection: Selection,
    weights: Weights,
    /// Rotation over resolved addresses (DNS endpoints, request-host clusters).
    next: AtomicUsize,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.selection {
            Selection::LeastRequest => "LeastRequest",
            Selection::RoundRobin(_) => "RoundRobin",
            Selection::Random(_) => "Random",
            Selection::Consistent(_) => "Consistent",
        })
    }
}

/// An endpoint's index, carried in Pingora's `Backend` so a selection maps back to it.
#[derive(Clone, Copy)]
struct Index(usize);

fn backends(eps: &[Endpoint]) -> BTreeSet<Backend> {
    eps.iter()
        .enumerate()
        .map(|(i, e)| {
            let mut b = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(e.address),
                weight: e.weight.max(1) as usize,
                ext: Default::default(),
            };
            b.ext.insert(Index(i));
            b
        })
        .collect()
}

impl Balancer {
    pub fn new(policy: &LbPolicy, eps: &[Endpoint]) -> Balancer {
        let selection = match policy {
            LbPolicy::LeastRequest => Selection::LeastRequest,
            LbPolicy::RoundRobin => {
                Selection::RoundRobin(Arc::new(RoundRobin::build(&backends(eps))))
            }
            LbPolicy::Random => Selection::Random(Arc::new(Random::build(&backends(eps)))),
            LbPolicy::ConsistentHash(_) => {
                Selection::Consistent(Arc::new(Consistent::build(&backends(eps))))
            }
        };
        Balancer {
            selection,
            weights: Weights::new(eps.iter().map(|e| e.weight)),
            next: AtomicUsize::new(fastrand::usize(..)),
        }
    }

    /// The index of the endpoint to use; `avoid` says which to pass over while others remain.
    /// `eps` must be the endpoints the balancer was built with, and not empty.
    pub fn choose(
        &self,
        eps: &[Endpoint],
        hash_input: Option<&[u8]>,
        avoid: &dyn Fn(SocketAddr) -> bool,
    ) -> usize {
        if eps.len() <= 1 {
            return 0;
        }
        match &self.selection {
            Selection::LeastRequest => self.least_request(eps, avoid),
            Selection::RoundRobin(b) => first_allowed(b.iter(&[]), eps.len(), eps, avoid),
            Selection::Random(b) => first_allowed(b.iter(&[]), eps.len(), eps, avoid),
            Selection::Consistent(b) => {
                first_allowed(b.iter(hash_input.unwrap_or(&[])), eps.len(), eps, avoid)
            }
        }
    }

    /// Envoy's LEAST_REQUEST: the less busy of two random (weighted) choices.
    fn least_request(&self, eps: &[Endpoint], avoid: &dyn Fn(SocketAddr) -> bool) -> usize {
        let allowed = |i: usize| !avoid(eps[i].address);
        let a = self.weights.choose_allowed(allowed);
        let b = self.weights.choose_allowed(allowed);
        if eps[b].active.load(Relaxed) < eps[a].active.load(Relaxed) {
            b
        } else {
            a
        }
    }

    /// One of `addrs` (a DNS answer) in rotation, passing over those to avoid.
    pub fn choose_resolved(
        &self,
        addrs: &[IpAddr],
        port: u16,
        avoid: &dyn Fn(SocketAddr) -> bool,
    ) -> SocketAddr {
        let start = self.next.fetch_add(1, Relaxed);
        let n = addrs.len().max(1);
        let at = |i: usize| SocketAddr::new(addrs[(start + i) % n], port);
        (0..addrs.len())
            .map(at)
            .find(|a| !avoid(*a))
            .unwrap_or_else(|| at(0))
    }
}

/// The first endpoint from Pingora's selection that is not to be avoided (a bounded number of
/// its fallbacks, then the first allowed in order), else the first one it gave.
fn first_allowed<I: BackendIter>(
    mut iter: I,
    n: usize,
    eps: &[Endpoint],
    avoid: &dyn Fn(SocketAddr) -> bool,
) -> usize {
    let mut next = || {
        iter.next()
            .and_then(|b| b.ext.get::<Index>())
            .map(|i| i.0)
            .filter(|&i| i < eps.len())
    };
    let Some(first) = next() else { return 0 };
    if !avoid(eps[first].address) {
        return first;
    }
    (0..n * 2)
        .filter_map(|_| next())
        .chain(0..eps.len())
        .find(|&i| !avoid(eps[i].address))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint::new(SocketAddr::from(([10, 0, 0, i as u8 + 1], 80)), *w))
            .collect()
    }

    fn counts(b: &Balancer, eps: &[Endpoint], n: usize) -> HashMap<usize, usize> {
        let mut c = HashMap::new();
        for _ in 0..n {
            *c.entry(b.choose(eps, None, &|_| false)).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn weighted_round_robin_honours_endpoint_weights() {
        let eps = eps(&[1, 3]);
        let c = counts(&Balancer::new(&LbPolicy::RoundRobin, &eps), &eps, 400);
        assert_eq!(c[&0], 100);
        assert_eq!(c[&1], 300);
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let eps = eps(&[1, 1]);
        eps[0].active.store(10, Relaxed);
        let b = Balancer::new(&LbPolicy::LeastRequest, &eps);
        let c = counts(&b, &eps, 200);
        // Only when both random choices land on the busy one is it taken (~1/4).
        assert!(c[&1] > 120, "{c:?}");
    }

    #[test]
    fn avoided_endpoints_are_passed_over_while_others_remain() {
        let eps = eps(&[1, 1, 1]);
        let avoid_first_two = |a: SocketAddr| a.ip() != IpAddr::from([10, 0, 0, 3]);
        for policy in [
            LbPolicy::LeastRequest,
            LbPolicy::RoundRobin,
            LbPolicy::Random,
        ] {
            let b = Balancer::new(&policy, &eps);
            for _ in 0..50 {
                assert_eq!(b.choose(&eps, None, &avoid_first_two), 2, "{policy:?}");
            }
            // Everything avoided: some endpoint is still chosen.
            assert!(b.choose(&eps, None, &|_| true) < 3);
        }
    }

    #[test]
    fn consistent_hash_is_sticky_per_key() {
        let eps = eps(&[1, 1, 1, 1]);
        let b = Balancer::new(&LbPolicy::ConsistentHash(HashKey::SourceIp), &eps);
        let first = b.choose(&eps, Some(b"user-1"), &|_| false);
        for _ in 0..20 {
            assert_eq!(b.choose(&eps, Some(b"user-1"), &|_| false), first);
        }
    }

    #[test]
    fn weights_choose_in_proportion_and_skip_disallowed() {
        let w = Weights::new([1, 0, 2]);
        let mut c = [0usize; 3];
        for _ in 0..3000 {
            c[w.choose()] += 1;
        }
        // 1 : 1 (zero counts as one) : 2
        assert!(c[2] > c[0] && c[2] > c[1], "{c:?}");
        for _ in 0..100 {
            assert_eq!(w.choose_allowed(|i| i == 1), 1);
        }
    }

    #[test]
    fn hash_input_reads_headers_cookies_query_and_source_ip() {
        let mut req = RequestHeader::build("GET", b"/p?a=1&user=bob", None).unwrap();
        req.insert_header("x-user", "alice").unwrap();
        req.insert_header("cookie", "x=1; session=s3").unwrap();
        let mut buf = [0u8; 48];
        let ip = Some(IpAddr::from([192, 0, 2, 7]));
        let get = |k: HashKey, buf: &mut HashBuf| k.input(&req, ip, buf).map(<[u8]>::to_vec);
        assert_eq!(
            get(HashKey::Header("x-user".into()), &mut buf),
            Some(b"alice".to_vec())
        );
        assert_eq!(
            get(
                HashKey::Cookie(CookiePolicy {
                    name: "session".into(),
                    path: None,
                    ttl: None,
                    attributes: Vec::new(),
                }),
                &mut buf
            ),
            Some(b"s3".to_vec())
        );
        assert_eq!(
            get(HashKey::QueryParameter("user".into()), &mut buf),
            Some(b"bob".to_vec())
        );
        assert_eq!(
            get(HashKey::SourceIp, &mut buf),
            Some(b"192.0.2.7".to_vec())
        );
    }
}
