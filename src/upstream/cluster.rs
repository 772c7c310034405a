//! A cluster as the data path uses it: a destination (host, port, subset) with its endpoints,
//! balancer, circuit breaker, outlier detection and peer template. Built by `compile::cluster`
//! from ServiceEntries and DestinationRules; named as Istio names them
//! (`outbound|<port>|<subset>|<host>`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;
use serde::Serialize;
use tokio::time::Instant;

use super::balancer::{Balancer, LbPolicy, Weights};
use super::breaker::{Admission, CircuitBreaker, Overflow};
use super::endpoint::Endpoints;
use super::outlier::{Outcome, OutlierPolicy};
use super::peer::{PeerTemplate, Upstream};
use super::stats::ClusterStats;
use crate::dns::{DnsCache, DnsError};
use crate::telemetry::istio::PeerLabels;

/// What a cluster is made of; [`Cluster::new`] adds the runtime parts.
#[derive(Debug)]
pub struct ClusterSpec {
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
    pub outlier: Option<OutlierPolicy>,
    pub circuit_breaker: CircuitBreaker,
    pub upstream: Upstream,
    /// Istio's metric labels for requests to this cluster (decided when compiled).
    pub telemetry: Arc<PeerLabels>,
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
    pub service_entry: Option<String>,
    pub destination_rule: Option<String>,
    pub endpoints: Endpoints,
    pub lb: LbPolicy,
    /// DestinationRule `outlierDetection`: passive ejection of failing endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierPolicy>,
    pub circuit_breaker: CircuitBreaker,
    pub upstream: Upstream,
    #[serde(skip)]
    balancer: Balancer,
    /// Weighted choice among DNS endpoint names.
    #[serde(skip)]
    dns_weights: Weights,
    #[serde(skip)]
    peer: PeerTemplate,
    #[serde(skip)]
    pub stats: Arc<ClusterStats>,
    #[serde(skip)]
    pub telemetry: Arc<PeerLabels>,
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
    pub active: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Cluster {
    /// Adds the runtime parts; `stats` is the cluster's long-lived state (see `StatsRegistry`).
    pub fn new(spec: ClusterSpec, stats: Arc<ClusterStats>) -> Cluster {
        let mut endpoints = spec.endpoints;
        if let Endpoints::Static(eps) = &mut endpoints {
            // LEAST_REQUEST counters survive reloads with the stats.
            for ep in eps.iter_mut() {
                ep.active = stats.endpoint_counter(ep.address);
            }
        }
        let balancer = match &endpoints {
            Endpoints::Static(eps) => Balancer::new(&spec.lb, eps),
            _ => Balancer::new(&LbPolicy::LeastRequest, &[]),
        };
        let dns_weights = match &endpoints {
            Endpoints::Dns(names) => Weights::new(names.iter().map(|n| n.weight)),
            _ => Weights::default(),
        };
        let peer = PeerTemplate::new(&spec.upstream, &stats);
        Cluster {
            name: spec.name,
            host: spec.host,
            port: spec.port,
            subset: spec.subset,
            service_entry: spec.service_entry,
            destination_rule: spec.destination_rule,
            endpoints,
            lb: spec.lb,
            outlier: spec.outlier,
            circuit_breaker: spec.circuit_breaker,
            upstream: spec.upstream,
            balancer,
            dns_weights,
            peer,
            stats,
            telemetry: spec.telemetry,
        }
    }

    /// Chooses an endpoint, passing over ejected ones and those this request already tried.
    /// Only DNS clusters await (a cached, asynchronous lookup).
    pub async fn pick(&self, input: PickInput<'_>, dns: &DnsCache) -> Result<Picked, PickError> {
        let ejections = &self.stats.outlier;
        let avoid_with = |ejected: &dyn Fn(SocketAddr) -> bool, a: SocketAddr| {
            input.exclude.contains(&a) || ejected(a)
        };
        let (name, port) = match &self.endpoints {
            Endpoints::Static(eps) => {
                if eps.is_empty() {
                    return Err(PickError::NoEndpoints(self.name.clone()));
                }
                let i = ejections.with_ejected(Instant::now(), |ejected| {
                    self.balancer
                        .choose(eps, input.hash_input, &|a| avoid_with(ejected, a))
                });
                return Ok(Picked {
                    address: eps[i].address,
                    active: Some(eps[i].active.clone()),
                });
            }
            Endpoints::Dns(names) => {
                if names.is_empty() {
                    return Err(PickError::NoEndpoints(self.name.clone()));
                }
                let ep = &names[self.dns_weights.choose()];
                (ep.name.as_str(), ep.port)
            }
            Endpoints::RequestHost { port } => {
                let port = if *port == 0 {
                    input.request_port
                } else {
                    *port
                };
                (input.request_host, port)
            }
        };
        let addrs = dns.resolve(name).await?;
        let address = ejections.with_ejected(Instant::now(), |ejected| {
            self.balancer
                .choose_resolved(&addrs, port, &|a| avoid_with(ejected, a))
        });
        Ok(Picked {
            address,
            active: None,
        })
    }

    /// Admission through the circuit breaker (waits at most the connect timeout for a slot).
    pub async fn admit(&self) -> Result<Admission, Overflow> {
        self.stats.requests.fetch_add(1, Relaxed);
        self.circuit_breaker
            .admit(
                &self.stats.breaker,
                self.upstream.http2,
                self.upstream.connect_timeout,
            )
            .await
    }

    /// The peer for one attempt on `address`.
    pub fn peer(
        &self,
        address: SocketAddr,
        request_host: &str,
        budget: Option<Duration>,
    ) -> HttpPeer {
        self.peer.peer(address, request_host, budget)
    }

    /// Records how an attempt on `addr` ended, for outlier detection (no-op without it).
    pub fn record_outcome(&self, addr: SocketAddr, outcome: Outcome) {
        let Some(policy) = &self.outlier else { return };
        let ejected = self.stats.outlier.record(
            policy,
            self.endpoints.count(),
            addr,
            outcome,
            Instant::now(),
        );
        if let Some(d) = ejected {
            tracing::warn!(cluster = %self.name, endpoint = %addr, "outlier detection: endpoint ejected for {d:?}");
        }
    }

    /// An attempt on a connection: counts reuse, and says whether the connection must close
    /// after this request (`maxRequestsPerConnection`).
    pub fn on_connection(&self, fd: i32, reused: bool) -> bool {
        if reused {
            self.stats.reused_requests.fetch_add(1, Relaxed);
        }
        self.circuit_breaker
            .close_after(&self.stats.breaker, fd, reused)
    }

    /// Whether a ServiceEntry registers this destination (egress REGISTRY_ONLY checks it).
    pub fn registered(&self) -> bool {
        self.service_entry.is_some()
    }
}
