//! Clusters: a destination (host, port, subset) with its endpoints, load balancer and the
//! DestinationRule policy that applies (connection pool, circuit breakers, TLS origination).
//! Named as Istio names them: `outbound|<port>|<subset>|<host>`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use pingora_load_balancing::selection::{
    BackendIter, BackendSelection, Consistent, Random, RoundRobin,
};
use pingora_load_balancing::Backend;
use serde::Serialize;

use super::registry::{RegisteredHost, Registry};
use crate::config::host::HostPattern;
use crate::config::load::Resources;
use crate::config::resolve::DestinationRuleIndex;
use crate::config::types::{
    ClientTls, ConnectionPoolSettings, ConsistentHash, H2UpgradePolicy, LoadBalancerSettings,
    OutlierDetection, Protocol, Resolution, SimpleLb, TrafficPolicy,
};
use crate::dns::{DnsCache, DnsError};
use crate::observe::stats::{ClusterStats, StatsRegistry};
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

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClusterKey {
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
}

impl ClusterKey {
    pub fn name(&self) -> String {
        if self.host == "*" {
            // Istio's name for "whatever host was asked for" (ALLOW_ANY).
            return "PassthroughCluster".into();
        }
        format!(
            "outbound|{}|{}|{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.host
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
    /// `namespace/name` of the ServiceEntry that registers the host, if any.
    pub service_entry: Option<String>,
    /// `namespace/name` of the DestinationRule that applies, if any.
    pub destination_rule: Option<String>,
    pub endpoints: Endpoints,
    pub lb: LbPolicy,
    /// DestinationRule `outlierDetection`: passive ejection of failing endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierPolicy>,
    #[serde(skip)]
    balancer: Balancer,
    pub upstream: Upstream,
    #[serde(skip)]
    pub stats: Arc<ClusterStats>,
    #[serde(skip)]
    rr: AtomicUsize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoints {
    /// Fixed addresses (STATIC ServiceEntry endpoints, or an IP literal).
    Static(Vec<Endpoint>),
    /// Names resolved asynchronously, every address a host (Istio DNS / STRICT_DNS).
    Dns(Vec<DnsEndpoint>),
    /// Resolve the host the request asked for (NONE / DYNAMIC_DNS on wildcard entries, and
    /// ALLOW_ANY egress). Port 0 means the port the request asked for.
    RequestHost { port: u16 },
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
    #[serde(skip)]
    pub active: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsEndpoint {
    pub name: String,
    pub port: u16,
    pub weight: u32,
}

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
    Cookie(String),
    SourceIp,
    QueryParameter(String),
}

enum Balancer {
    None,
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Consistent(Arc<Consistent>),
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Balancer::None => "None",
            Balancer::RoundRobin(_) => "RoundRobin",
            Balancer::Random(_) => "Random",
            Balancer::Consistent(_) => "Consistent",
        })
    }
}

/// How connections to the upstream are made and limited.
#[derive(Debug, Serialize)]
pub struct Upstream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Arc<OriginationTls>>,
    /// Speak HTTP/2 to the upstream (GRPC/HTTP2 port, or `h2UpgradePolicy: UPGRADE`).
    pub http2: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_requests_per_connection: Option<u64>,
    /// `tcp.maxConnections`; `None` = unlimited.
    pub max_connections: Option<u64>,
    /// `http.http1MaxPendingRequests`: how many requests may wait for a connection slot.
    pub max_pending_requests: Option<u64>,
    /// `http.http2MaxRequests`: concurrent requests to the cluster.
    pub max_requests: Option<u64>,
    pub max_h2_streams: usize,
    /// Pool isolation: connections are only reused within one cluster and TLS policy.
    pub group_key: u64,
    pub tcp_keepalive: Option<(Duration, Duration, usize)>,
}

/// What a pick needs from the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickInput<'a> {
    /// The request's host (without port), for request-host clusters.
    pub request_host: &'a str,
    /// The port the request asked for, for request-host clusters on port 0.
    pub request_port: u16,
    /// Consistent-hash input, already extracted from the request per `HashKey`.
    pub hash_input: Option<&'a [u8]>,
    /// Endpoints already tried by this request (Istio's previous-hosts retry predicate).
    pub exclude: &'a [SocketAddr],
}

#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("no healthy upstream: cluster {0} has no endpoints")]
    NoEndpoints(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// The chosen endpoint, with the counter LEAST_REQUEST balances on.
#[derive(Debug, Clone)]
pub struct Picked {
    pub address: SocketAddr,
    pub active: Option<Arc<AtomicU64>>,
}

impl Cluster {
    /// Chooses an endpoint. Only DNS clusters await (a cached, asynchronous lookup).
    pub async fn pick(&self, input: PickInput<'_>, dns: &DnsCache) -> Result<Picked, PickError> {
        // Ejected endpoints are avoided like ones this request already tried.
        let mut avoid;
        let input = if self.outlier.is_some() {
            avoid = self.stats.ejected();
            if avoid.is_empty() {
                input
            } else {
                avoid.extend_from_slice(input.exclude);
                PickInput {
                    exclude: &avoid,
                    ..input
                }
            }
        } else {
            input
        };
        match &self.endpoints {
            Endpoints::Static(eps) => self.pick_static(eps, input),
            Endpoints::Dns(names) => {
                let ep = match names.len() {
                    0 => return Err(PickError::NoEndpoints(self.name.clone())),
                    1 => &names[0],
                    _ => weighted_choice(names.iter().map(|n| n.weight), names),
                };
                let addrs = dns.resolve(&ep.name).await?;
                Ok(self.pick_resolved(&addrs, ep.port, input))
            }
            Endpoints::RequestHost { port } => {
                let port = if *port == 0 {
                    input.request_port
                } else {
                    *port
                };
                let addrs = dns.resolve(input.request_host).await?;
                Ok(self.pick_resolved(&addrs, port, input))
            }
        }
    }

    fn pick_resolved(&self, addrs: &[IpAddr], port: u16, input: PickInput<'_>) -> Picked {
        let start = self.rr.fetch_add(1, Relaxed);
        let n = addrs.len();
        let choice = (0..n)
            .map(|i| SocketAddr::new(addrs[(start + i) % n], port))
            .find(|a| !input.exclude.contains(a))
            .unwrap_or_else(|| SocketAddr::new(addrs[start % n], port));
        Picked {
            address: choice,
            active: None,
        }
    }

    fn pick_static(&self, eps: &[Endpoint], input: PickInput<'_>) -> Result<Picked, PickError> {
        if eps.is_empty() {
            return Err(PickError::NoEndpoints(self.name.clone()));
        }
        let by_addr = |addr: SocketAddr| eps.iter().find(|e| e.address == addr);
        let from_iter =
            |mut iter: Box<dyn FnMut() -> Option<SocketAddr> + '_>| -> Option<SocketAddr> {
                let first = iter()?;
                if !input.exclude.contains(&first) {
                    return Some(first);
                }
                (0..eps.len() * 2)
                    .filter_map(|_| iter())
                    .find(|a| !input.exclude.contains(a))
                    .or(Some(first))
            };
        let chosen = match (&self.balancer, &self.lb) {
            (_, LbPolicy::LeastRequest) => Some(self.least_request(eps, input)),
            (Balancer::RoundRobin(b), _) => {
                let mut it = b.iter(&[]);
                from_iter(Box::new(move || backend_addr(it.next())))
            }
            (Balancer::Random(b), _) => {
                let mut it = b.iter(&[]);
                from_iter(Box::new(move || backend_addr(it.next())))
            }
            (Balancer::Consistent(b), _) => {
                let key = input.hash_input.unwrap_or(&[]);
                let mut it = b.iter(key);
                from_iter(Box::new(move || backend_addr(it.next())))
            }
            (Balancer::None, _) => None,
        };
        let address = chosen.unwrap_or(eps[0].address);
        Ok(Picked {
            address,
            active: by_addr(address).map(|e| e.active.clone()),
        })
    }

    /// Envoy's LEAST_REQUEST: the less busy of two random (weighted) choices.
    fn least_request(&self, eps: &[Endpoint], input: PickInput<'_>) -> SocketAddr {
        let candidates: Vec<&Endpoint> = eps
            .iter()
            .filter(|e| !input.exclude.contains(&e.address))
            .collect();
        let pool: Vec<&Endpoint> = if candidates.is_empty() {
            eps.iter().collect()
        } else {
            candidates
        };
        if pool.len() == 1 {
            return pool[0].address;
        }
        let a = weighted_choice(pool.iter().map(|e| e.weight), &pool);
        let b = weighted_choice(pool.iter().map(|e| e.weight), &pool);
        if b.active.load(Relaxed) < a.active.load(Relaxed) {
            b.address
        } else {
            a.address
        }
    }

    /// Records how an attempt on `addr` ended, for outlier detection (no-op without it).
    pub fn record_outcome(&self, addr: SocketAddr, outcome: crate::observe::stats::Outcome) {
        let Some(o) = &self.outlier else { return };
        let endpoints = match &self.endpoints {
            Endpoints::Static(eps) => eps.len(),
            _ => 1,
        };
        self.stats.record_outcome(
            addr,
            outcome,
            crate::observe::stats::Thresholds {
                consecutive_5xx: o.consecutive_5xx,
                consecutive_gateway: o.consecutive_gateway,
                base_ejection: o.base_ejection,
                max_ejection_percent: o.max_ejection_percent,
                endpoints,
            },
        );
    }

    /// Whether a ServiceEntry registers this destination (egress REGISTRY_ONLY checks it).
    pub fn registered(&self) -> bool {
        self.service_entry.is_some()
    }
}

fn backend_addr(b: Option<&Backend>) -> Option<SocketAddr> {
    b.and_then(|b| b.addr.as_inet().copied())
}

/// Picks an item with probability proportional to its weight (weights of 0 count as 1).
fn weighted_choice<T>(weights: impl Iterator<Item = u32> + Clone, items: &[T]) -> &T {
    let total: u64 = weights.clone().map(|w| u64::from(w.max(1))).sum();
    let mut r = fastrand::u64(0..total.max(1));
    for (w, item) in weights.zip(items) {
        let w = u64::from(w.max(1));
        if r < w {
            return item;
        }
        r -= w;
    }
    &items[0]
}

/// `outlierDetection`, with Envoy's defaults for what is unset.
#[derive(Debug, Clone, Serialize)]
pub struct OutlierPolicy {
    /// Consecutive 5xx (and connect failures) that eject an endpoint; 0 = off. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and connect failures) that eject; 0 = off (the default).
    pub consecutive_gateway: u32,
    pub base_ejection: Duration,
    /// At most this share of endpoints is ejected at once (Envoy always allows one).
    pub max_ejection_percent: u32,
}

impl OutlierPolicy {
    fn compile(o: &OutlierDetection) -> OutlierPolicy {
        let count = |v: Option<i64>, default: u32| {
            v.map_or(default, |n| n.clamp(0, i64::from(u32::MAX)) as u32)
        };
        OutlierPolicy {
            consecutive_5xx: count(o.consecutive_5xx_errors, 5),
            consecutive_gateway: count(o.consecutive_gateway_errors.or(o.consecutive_errors), 0),
            base_ejection: o
                .base_ejection_time
                .map_or(Duration::from_secs(30), |d| d.get()),
            max_ejection_percent: count(o.max_ejection_percent, 10).min(100),
        }
    }
}

/// The DestinationRule policy for one (host, subset, port), merged Istio's way
/// (`MergeTrafficPolicy`): subset fields override the top level per group, and a matching
/// `portLevelSettings` entry replaces all four groups (unset ones fall back to defaults).
#[derive(Debug, Default, Clone)]
pub struct EffectivePolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTls>,
}

impl EffectivePolicy {
    pub fn merge(
        top: Option<&TrafficPolicy>,
        subset: Option<&TrafficPolicy>,
        port: u16,
    ) -> EffectivePolicy {
        let mut p = EffectivePolicy::default();
        let mut port_levels = &[][..];
        if let Some(t) = top {
            p.load_balancer = t.load_balancer.clone();
            p.connection_pool = t.connection_pool.clone();
            p.outlier_detection = t.outlier_detection.clone();
            p.tls = t.tls.clone();
            port_levels = &t.port_level_settings;
        }
        if let Some(s) = subset {
            if s.load_balancer.is_some() {
                p.load_balancer = s.load_balancer.clone();
            }
            if s.connection_pool.is_some() {
                p.connection_pool = s.connection_pool.clone();
            }
            if s.outlier_detection.is_some() {
                p.outlier_detection = s.outlier_detection.clone();
            }
            if s.tls.is_some() {
                p.tls = s.tls.clone();
            }
            if !s.port_level_settings.is_empty() {
                port_levels = &s.port_level_settings;
            }
        }
        if let Some(pl) = port_levels
            .iter()
            .find(|pl| pl.port.is_some_and(|ps| ps.number == u32::from(port)))
        {
            p.load_balancer = pl.load_balancer.clone();
            p.connection_pool = pl.connection_pool.clone();
            p.outlier_detection = pl.outlier_detection.clone();
            p.tls = pl.tls.clone();
        }
        p
    }
}

/// Builds clusters on demand during a compile, once per (host, port, subset).
pub struct ClusterBuilder<'a> {
    pub registry: &'a Registry,
    rules: DestinationRuleIndex<'a>,
    certs_dir: &'a Path,
    idle_cap: Duration,
    stats: &'a StatsRegistry,
    built: HashMap<ClusterKey, Arc<Cluster>>,
}

impl<'a> ClusterBuilder<'a> {
    pub fn new(
        resources: &'a Resources,
        registry: &'a Registry,
        certs_dir: &'a Path,
        stats: &'a StatsRegistry,
    ) -> Self {
        ClusterBuilder {
            registry,
            rules: DestinationRuleIndex::new(resources),
            certs_dir,
            idle_cap: DEFAULT_IDLE_CAP,
            stats,
            built: HashMap::new(),
        }
    }

    /// The cluster for a route destination. `port` is `destination.port`; when absent Istio
    /// uses the service's only port, else the gateway listener port.
    pub fn destination(
        &mut self,
        host: &str,
        port: Option<u16>,
        subset: Option<&str>,
        namespace: &str,
        listener_port: u16,
    ) -> Result<Arc<Cluster>, String> {
        let pattern = HostPattern::parse(host);
        let registered = self.registry.lookup_pattern(&pattern, namespace).cloned();
        let port = port.unwrap_or_else(|| match &registered {
            Some(r) if r.ports.len() == 1 => r.ports[0].number,
            _ => listener_port,
        });
        // A short name registered under its FQDN takes the registered name.
        let host = match &registered {
            Some(r) if !HostPattern::parse(&r.host).is_wildcard() => r.host.clone(),
            _ => pattern.to_string(),
        };
        let key = ClusterKey {
            host,
            port,
            subset: subset.map(str::to_string),
        };
        if let Some(c) = self.built.get(&key) {
            return Ok(c.clone());
        }
        let cluster = Arc::new(self.build(&key, registered.as_deref(), namespace)?);
        self.built.insert(key, cluster.clone());
        Ok(cluster)
    }

    /// The longest any upstream connection may stay idle (see [`DEFAULT_IDLE_CAP`]).
    pub fn with_idle_cap(mut self, cap: Duration) -> Self {
        self.idle_cap = cap;
        self
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.built.values()
    }

    pub fn into_clusters(self) -> HashMap<ClusterKey, Arc<Cluster>> {
        self.built
    }

    fn build(
        &self,
        key: &ClusterKey,
        registered: Option<&RegisteredHost>,
        namespace: &str,
    ) -> Result<Cluster, String> {
        let name = key.name();
        let drs = self.rules.for_host(&key.host, namespace);
        let top = drs.iter().find_map(|d| d.spec.traffic_policy.as_ref());
        let subset_def = match &key.subset {
            Some(s) => Some(
                drs.iter()
                    .flat_map(|d| d.spec.subsets.iter())
                    .find(|sub| &sub.name == s)
                    .ok_or_else(|| {
                        format!(
                            "subset `{s}` of {} is not defined by any DestinationRule",
                            key.host
                        )
                    })?,
            ),
            None => None,
        };
        let policy = EffectivePolicy::merge(
            top,
            subset_def.and_then(|s| s.traffic_policy.as_ref()),
            key.port,
        );
        let subset_labels = subset_def.map(|s| &s.labels);
        let reg_port = registered.and_then(|r| r.port(key.port));

        let endpoints = match registered {
            Some(reg) => self.registered_endpoints(reg, key, subset_labels, &name)?,
            None => literal_or_dns(&key.host, key.port),
        };
        let lb = lb_policy(policy.load_balancer.as_ref());
        let balancer = match (&endpoints, &lb) {
            (Endpoints::Static(eps), LbPolicy::RoundRobin) => {
                Balancer::RoundRobin(Arc::new(RoundRobin::build(&backends(eps))))
            }
            (Endpoints::Static(eps), LbPolicy::Random) => {
                Balancer::Random(Arc::new(Random::build(&backends(eps))))
            }
            (Endpoints::Static(eps), LbPolicy::ConsistentHash(_)) => {
                Balancer::Consistent(Arc::new(Consistent::build(&backends(eps))))
            }
            _ => Balancer::None,
        };
        let upstream = self.upstream(
            &name,
            &policy,
            reg_port.and_then(|p| p.protocol),
            registered,
            key,
        )?;
        let stats = self.stats.cluster(&name);
        if let Endpoints::Static(eps) = &endpoints {
            // LEAST_REQUEST counters survive reloads with the stats.
            for ep in eps {
                let counter = stats.endpoint_counter(ep.address);
                ep.active.store(0, Relaxed);
                let _ = counter;
            }
        }
        let endpoints = match endpoints {
            Endpoints::Static(eps) => Endpoints::Static(
                eps.into_iter()
                    .map(|e| Endpoint {
                        active: stats.endpoint_counter(e.address),
                        ..e
                    })
                    .collect(),
            ),
            other => other,
        };
        Ok(Cluster {
            name,
            host: key.host.clone(),
            port: key.port,
            subset: key.subset.clone(),
            service_entry: registered.map(|r| r.service_entry.clone()),
            destination_rule: drs.first().map(|d| d.key()),
            endpoints,
            lb,
            outlier: policy
                .outlier_detection
                .as_ref()
                .map(OutlierPolicy::compile),
            balancer,
            upstream,
            stats,
            rr: AtomicUsize::new(fastrand::usize(..)),
        })
    }

    fn registered_endpoints(
        &self,
        reg: &RegisteredHost,
        key: &ClusterKey,
        subset_labels: Option<&std::collections::BTreeMap<String, String>>,
        name: &str,
    ) -> Result<Endpoints, String> {
        let se = &reg.entry.spec;
        let svc_port = reg.port(key.port);
        let target_port = svc_port.and_then(|p| p.target_port).unwrap_or(key.port);
        let endpoint_port = |ports: &std::collections::BTreeMap<String, u32>| -> u16 {
            svc_port
                .and_then(|p| ports.get(&p.name))
                .and_then(|n| u16::try_from(*n).ok())
                .unwrap_or(target_port)
        };
        let selected = se.endpoints.iter().filter(|ep| {
            subset_labels
                .is_none_or(|labels| labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
        });
        let wildcard = HostPattern::parse(&key.host).is_wildcard();
        Ok(match se.resolution() {
            Resolution::Static => Endpoints::Static(
                selected
                    .filter_map(|ep| {
                        let ip: IpAddr = ep.address.parse().ok()?;
                        Some(Endpoint {
                            address: SocketAddr::new(ip, endpoint_port(&ep.ports)),
                            weight: ep.weight.unwrap_or(1).max(1),
                            active: Default::default(),
                        })
                    })
                    .collect(),
            ),
            Resolution::Dns | Resolution::DnsRoundRobin => {
                let mut names: Vec<DnsEndpoint> = selected
                    .map(|ep| DnsEndpoint {
                        name: ep.address.clone(),
                        port: endpoint_port(&ep.ports),
                        weight: ep.weight.unwrap_or(1).max(1),
                    })
                    .collect();
                if se.endpoints.is_empty() {
                    if wildcard {
                        return Err(format!(
                            "{name}: DNS resolution needs endpoints for a wildcard host"
                        ));
                    }
                    names.push(DnsEndpoint {
                        name: key.host.clone(),
                        port: target_port,
                        weight: 1,
                    });
                }
                Endpoints::Dns(names)
            }
            // A standalone gateway has no "original destination": NONE resolves the host.
            Resolution::None | Resolution::DynamicDns => {
                if wildcard {
                    Endpoints::RequestHost { port: target_port }
                } else {
                    Endpoints::Dns(vec![DnsEndpoint {
                        name: key.host.clone(),
                        port: target_port,
                        weight: 1,
                    }])
                }
            }
        })
    }

    fn upstream(
        &self,
        name: &str,
        policy: &EffectivePolicy,
        protocol: Option<Protocol>,
        registered: Option<&RegisteredHost>,
        key: &ClusterKey,
    ) -> Result<Upstream, String> {
        let pool = policy.connection_pool.as_ref();
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        // 0 means "not set" for these Istio fields.
        let positive = |v: Option<i64>| v.filter(|n| *n > 0).map(|n| n as u64);
        let se_sans = registered
            .map(|r| r.entry.spec.subject_alt_names.clone())
            .unwrap_or_default();
        let mut tls = match &policy.tls {
            Some(t) => OriginationTls::compile(t, self.certs_dir, &se_sans)
                .map_err(|e| format!("{name}: {e}"))?,
            None => None,
        };
        // Without a DR `sni`, the SNI is the destination host; only a wildcard or IP destination
        // leaves it to the request's host (Envoy's auto SNI), decided per request.
        if let Some(t) = tls.as_mut().filter(|t| t.sni.is_none()) {
            let named =
                !HostPattern::parse(&key.host).is_wildcard() && key.host.parse::<IpAddr>().is_err();
            if named {
                t.sni = Some(key.host.clone());
            }
        }
        let upgrade = http.and_then(|h| h.h2_upgrade_policy);
        let http2 = match upgrade {
            Some(H2UpgradePolicy::Upgrade) => true,
            Some(H2UpgradePolicy::DoNotUpgrade) => false,
            _ => protocol.is_some_and(Protocol::is_h2),
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&key, &mut hasher);
        if let Some(t) = &tls {
            std::hash::Hash::hash(&t.policy_key, &mut hasher);
        }
        let group_key = std::hash::Hasher::finish(&hasher);
        Ok(Upstream {
            tls: tls.map(Arc::new),
            http2,
            connect_timeout: tcp
                .and_then(|t| t.connect_timeout)
                .map(|d| d.get())
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: http
                .and_then(|h| h.idle_timeout)
                .or_else(|| tcp.and_then(|t| t.idle_timeout))
                .map(|d| d.get())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_IDLE_TIMEOUT)
                .min(self.idle_cap),
            max_requests_per_connection: positive(http.and_then(|h| h.max_requests_per_connection)),
            max_connections: positive(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: positive(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: positive(http.and_then(|h| h.http2_max_requests)),
            max_h2_streams: positive(http.and_then(|h| h.max_concurrent_streams))
                .map_or(DEFAULT_H2_STREAMS, |n| n as usize),
            group_key,
            tcp_keepalive: tcp.and_then(|t| t.tcp_keepalive.as_ref()).map(|k| {
                (
                    k.time.map_or(Duration::from_secs(7200), |d| d.get()),
                    k.interval.map_or(Duration::from_secs(75), |d| d.get()),
                    k.probes.unwrap_or(9) as usize,
                )
            }),
        })
    }
}

fn literal_or_dns(host: &str, port: u16) -> Endpoints {
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => Endpoints::Static(vec![Endpoint {
            address: SocketAddr::new(ip, port),
            weight: 1,
            active: Default::default(),
        }]),
        Err(_) if HostPattern::parse(host).is_wildcard() => Endpoints::RequestHost { port },
        Err(_) => Endpoints::Dns(vec![DnsEndpoint {
            name: host.to_string(),
            port,
            weight: 1,
        }]),
    }
}

fn backends(eps: &[Endpoint]) -> BTreeSet<Backend> {
    eps.iter()
        .map(|e| Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(e.address),
            weight: e.weight.max(1) as usize,
            ext: Default::default(),
        })
        .collect()
}

fn lb_policy(lb: Option<&LoadBalancerSettings>) -> LbPolicy {
    let Some(lb) = lb else {
        return LbPolicy::LeastRequest;
    };
    if let Some(ch) = &lb.consistent_hash {
        if let Some(key) = hash_key(ch) {
            return LbPolicy::ConsistentHash(key);
        }
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

fn hash_key(ch: &ConsistentHash) -> Option<HashKey> {
    if let Some(h) = &ch.http_header_name {
        return Some(HashKey::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = &ch.http_cookie {
        return Some(HashKey::Cookie(c.name.clone()));
    }
    if ch.use_source_ip == Some(true) {
        return Some(HashKey::SourceIp);
    }
    ch.http_query_parameter_name
        .clone()
        .map(HashKey::QueryParameter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    fn resources(yaml: &str) -> Resources {
        let (r, d) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        assert!(!d.has_errors(), "{d}");
        r
    }

    const SE_AND_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {http: {http2MaxRequests: 5}}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
"#;

    #[test]
    fn short_names_subsets_and_port_level_settings() {
        let res = resources(SE_AND_DR);
        let registry = Registry::build(&res);
        let stats = StatsRegistry::default();
        let mut b = ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats);
        let c = b
            .destination("reviews", None, Some("v2"), "shop", 80)
            .unwrap();
        assert_eq!(c.name, "outbound|9080|v2|reviews.shop.svc.cluster.local");
        match &c.endpoints {
            Endpoints::Static(eps) => {
                assert_eq!(eps.len(), 1);
                assert_eq!(eps[0].address, "10.0.0.2:9080".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        // The port-level entry replaced the whole connection pool (maxConnections not inherited)
        // and the load balancer (so the subset's RANDOM is replaced by the default).
        assert_eq!(c.upstream.max_connections, None);
        assert_eq!(c.upstream.max_requests, Some(5));
        assert_eq!(c.lb, LbPolicy::LeastRequest);
        assert!(b
            .destination("reviews", None, Some("v9"), "shop", 80)
            .unwrap_err()
            .contains("subset `v9`"));
    }

    #[test]
    fn idle_timeouts_default_to_istios_hour_under_the_cap() {
        let res = resources(&format!(
            "{SE_AND_DR}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: short}}\nspec:\n  host: short.example.com\n  trafficPolicy: {{connectionPool: {{http: {{idleTimeout: 5s}}}}}}\n"
        ));
        let registry = Registry::build(&res);
        let stats = StatsRegistry::default();
        let mut b = ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats);
        // No DestinationRule idleTimeout: Istio's 1 h, held under the cap.
        let c = b
            .destination("example.org", Some(80), None, "default", 80)
            .unwrap();
        assert_eq!(c.upstream.idle_timeout, DEFAULT_IDLE_CAP);
        let c = b
            .destination("short.example.com", Some(80), None, "default", 80)
            .unwrap();
        assert_eq!(c.upstream.idle_timeout, Duration::from_secs(5));
        let mut b = ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats)
            .with_idle_cap(Duration::from_secs(7200));
        let c = b
            .destination("example.org", Some(80), None, "default", 80)
            .unwrap();
        assert_eq!(c.upstream.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn unregistered_hosts_use_the_listener_port_and_dns() {
        let res = resources(SE_AND_DR);
        let registry = Registry::build(&res);
        let stats = StatsRegistry::default();
        let mut b = ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats);
        let c = b
            .destination("example.org", None, None, "default", 80)
            .unwrap();
        assert_eq!(c.name, "outbound|80||example.org");
        assert!(matches!(&c.endpoints, Endpoints::Dns(n) if n[0].name == "example.org"));
        assert!(!c.registered());
        let ip = b
            .destination("127.0.0.1", Some(8080), None, "default", 80)
            .unwrap();
        assert!(matches!(&ip.endpoints, Endpoints::Static(e) if e[0].address.port() == 8080));
    }

    #[test]
    fn weighted_round_robin_honours_endpoint_weights() {
        let res = resources(&SE_AND_DR.replace("portLevelSettings:", "portLevelSettingsX:").replace("    - port: {number: 9080}\n      connectionPool: {http: {http2MaxRequests: 5}}\n", ""));
        let registry = Registry::build(&res);
        let stats = StatsRegistry::default();
        let mut b = ClusterBuilder::new(&res, &registry, Path::new("certs"), &stats);
        let c = b.destination("reviews", None, None, "shop", 80).unwrap();
        assert_eq!(c.lb, LbPolicy::RoundRobin);
        let mut counts = HashMap::new();
        for _ in 0..400 {
            let p = c
                .pick_static(
                    match &c.endpoints {
                        Endpoints::Static(e) => e,
                        _ => unreachable!(),
                    },
                    PickInput::default(),
                )
                .unwrap();
            *counts.entry(p.address.ip().to_string()).or_insert(0) += 1;
        }
        assert_eq!(counts["10.0.0.2"], 300);
        assert_eq!(counts["10.0.0.1"], 100);
    }
}
