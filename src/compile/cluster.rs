//! Clusters: a destination (host, port, subset) with its endpoints, load balancer and the
//! DestinationRule policy that applies (connection pool, circuit breakers, TLS origination).
//! Named as Istio names them: `outbound|<port>|<subset>|<host>`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::error::CompileError;
use super::registry::{RegisteredHost, Registry};
use super::telemetry;
use crate::config::host::HostPattern;
use crate::config::load::Resources;
use crate::config::resolve::DestinationRuleIndex;
use crate::config::types::{
    ClientTls, ConnectionPoolSettings, Destination, H2UpgradePolicy, LoadBalancerSettings,
    OutlierDetection, Protocol, Resolution, TrafficPolicy,
};
use crate::telemetry::istio::Workload;
use crate::tls::upstream::OriginationTls;
use crate::upstream::balancer::LbPolicy;
use crate::upstream::breaker::CircuitBreaker;
use crate::upstream::endpoint::{DnsEndpoint, Endpoint, Endpoints};
use crate::upstream::outlier::OutlierPolicy;
use crate::upstream::peer::{
    Upstream, DEFAULT_CONNECT_TIMEOUT, DEFAULT_H2_STREAMS, DEFAULT_IDLE_CAP, DEFAULT_IDLE_TIMEOUT,
};
use crate::upstream::{Cluster, ClusterSpec, StatsRegistry};

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
    /// The gateway's identity, the source side of every cluster's metric labels.
    source: Workload,
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
            source: Workload::default(),
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
    ) -> Result<Arc<Cluster>, CompileError> {
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

    /// The cluster for a route's `destination` (HTTP, TCP or TLS route alike): `port` 0 or
    /// absent means the service's only port, else the listener's.
    pub fn route_destination(
        &mut self,
        dest: &Destination,
        namespace: &str,
        listener_port: u16,
    ) -> Result<Arc<Cluster>, CompileError> {
        let port = match dest.port.map(|p| p.number).filter(|p| *p != 0) {
            Some(p) => Some(u16::try_from(p).map_err(|_| CompileError::PortOutOfRange {
                what: "destination",
                port: i64::from(p),
            })?),
            None => None,
        };
        self.destination(
            &dest.host,
            port,
            dest.subset.as_deref(),
            namespace,
            listener_port,
        )
    }

    /// The stand-in for a route destination whose cluster does not exist (a subset no
    /// DestinationRule defines, origination TLS that cannot be loaded): no endpoints, never
    /// kept among the snapshot's clusters. An HTTP route marks it refused and answers 503 `NC`,
    /// as Envoy answers a route whose cluster is not found (`router.cc`, `cluster_not_found`;
    /// RDS routes are not checked against CDS, `validate_clusters` defaults to false there);
    /// a TCP route to it closes the connection, as Envoy's `tcp_proxy` does.
    pub fn missing(
        &self,
        dest: &Destination,
        listener_port: u16,
    ) -> Result<Arc<Cluster>, CompileError> {
        let port = dest
            .port
            .map(|p| p.number)
            .filter(|p| *p != 0)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(listener_port);
        let key = ClusterKey {
            host: dest.host.clone(),
            port,
            subset: dest.subset.clone(),
        };
        let name = key.name();
        let upstream = self.upstream(&name, &EffectivePolicy::default(), None, None, &key)?;
        let endpoints = Endpoints::Static(Vec::new());
        let telemetry = Arc::new(telemetry::cluster_labels(
            &self.source,
            &telemetry::ClusterFacts {
                host: &key.host,
                registered: None,
                subset_labels: None,
                endpoints: &endpoints,
                upstream: &upstream,
            },
        ));
        let spec = ClusterSpec {
            name: name.clone(),
            host: key.host.clone(),
            port,
            subset: key.subset.clone(),
            service_entry: None,
            destination_rule: None,
            endpoints,
            lb: LbPolicy::compile(None),
            outlier: None,
            circuit_breaker: CircuitBreaker::default(),
            upstream,
            telemetry,
        };
        Ok(Arc::new(Cluster::new(spec, self.stats.cluster(&name))))
    }

    /// The longest any upstream connection may stay idle (see [`DEFAULT_IDLE_CAP`]).
    pub fn with_idle_cap(mut self, cap: Duration) -> Self {
        self.idle_cap = cap;
        self
    }

    /// The gateway's identity in the clusters' metric labels.
    pub fn with_source(mut self, source: &Workload) -> Self {
        self.source = source.clone();
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
    ) -> Result<Cluster, CompileError> {
        let name = key.name();
        let drs = self.rules.for_host(&key.host, namespace);
        let top = drs.iter().find_map(|d| d.spec.traffic_policy.as_ref());
        let subset_def = match &key.subset {
            Some(s) => Some(
                drs.iter()
                    .flat_map(|d| d.spec.subsets.iter())
                    .find(|sub| &sub.name == s)
                    .ok_or_else(|| CompileError::UndefinedSubset {
                        subset: s.clone(),
                        host: key.host.clone(),
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
        let upstream = self.upstream(
            &name,
            &policy,
            reg_port.and_then(|p| p.protocol),
            registered,
            key,
        )?;
        let circuit_breaker = circuit_breaker(&policy);
        let telemetry = Arc::new(telemetry::cluster_labels(
            &self.source,
            &telemetry::ClusterFacts {
                host: &key.host,
                registered,
                subset_labels,
                endpoints: &endpoints,
                upstream: &upstream,
            },
        ));
        let stats = self.stats.cluster(&name);
        let spec = ClusterSpec {
            name,
            host: key.host.clone(),
            port: key.port,
            subset: key.subset.clone(),
            service_entry: registered.map(|r| r.service_entry.clone()),
            destination_rule: drs.first().map(|d| d.key()),
            endpoints,
            lb: LbPolicy::compile(policy.load_balancer.as_ref()),
            outlier: policy
                .outlier_detection
                .as_ref()
                .map(OutlierPolicy::compile),
            circuit_breaker,
            upstream,
            telemetry,
        };
        Ok(Cluster::new(spec, stats))
    }

    fn registered_endpoints(
        &self,
        reg: &RegisteredHost,
        key: &ClusterKey,
        subset_labels: Option<&std::collections::BTreeMap<String, String>>,
        name: &str,
    ) -> Result<Endpoints, CompileError> {
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
                        let address = SocketAddr::new(ip, endpoint_port(&ep.ports));
                        Some(Endpoint::new(address, ep.weight.unwrap_or(1)))
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
                        return Err(CompileError::WildcardDns {
                            cluster: name.to_string(),
                        });
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
    ) -> Result<Upstream, CompileError> {
        let pool = policy.connection_pool.as_ref();
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        let se_sans = registered
            .map(|r| r.entry.spec.subject_alt_names.clone())
            .unwrap_or_default();
        let mut tls = match &policy.tls {
            Some(t) => OriginationTls::compile(t, self.certs_dir, &se_sans).map_err(|source| {
                CompileError::Tls {
                    cluster: name.to_string(),
                    source,
                }
            })?,
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

/// 0 means "not set" for Istio's connection-pool numbers.
fn positive(v: Option<i64>) -> Option<u64> {
    v.filter(|n| *n > 0).map(|n| n as u64)
}

/// `connectionPool` limits as Envoy's circuit breakers.
fn circuit_breaker(policy: &EffectivePolicy) -> CircuitBreaker {
    let pool = policy.connection_pool.as_ref();
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    CircuitBreaker {
        max_requests: positive(http.and_then(|h| h.http2_max_requests)),
        max_connections: positive(tcp.and_then(|t| t.max_connections)),
        max_pending_requests: positive(http.and_then(|h| h.http1_max_pending_requests)),
        max_requests_per_connection: positive(http.and_then(|h| h.max_requests_per_connection)),
    }
}

fn literal_or_dns(host: &str, port: u16) -> Endpoints {
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => Endpoints::Static(vec![Endpoint::new(SocketAddr::new(ip, port), 1)]),
        Err(_) if HostPattern::parse(host).is_wildcard() => Endpoints::RequestHost { port },
        Err(_) => Endpoints::Dns(vec![DnsEndpoint {
            name: host.to_string(),
            port,
            weight: 1,
        }]),
    }
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
        assert_eq!(c.circuit_breaker.max_connections, None);
        assert_eq!(c.circuit_breaker.max_requests, Some(5));
        assert_eq!(c.lb, LbPolicy::LeastRequest);
        assert!(b
            .destination("reviews", None, Some("v9"), "shop", 80)
            .unwrap_err()
            .to_string()
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
}
