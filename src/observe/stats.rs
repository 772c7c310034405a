//! Per-cluster runtime counters and circuit-breaker state. They outlive snapshots: a reload
//! hands the same `Arc<ClusterStats>` to the new cluster of the same name, so in-flight requests,
//! open connections and the reuse figures carry across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

#[derive(Debug, Default)]
pub struct ClusterStats {
    pub name: String,
    /// Requests that were sent (or attempted) to this cluster.
    pub requests: AtomicU64,
    /// Requests currently admitted (between admission and the end of the response).
    pub active_requests: AtomicU64,
    /// Requests waiting for a connection slot (`http1MaxPendingRequests`).
    pub pending_requests: AtomicU64,
    /// Upstream TCP connections opened.
    pub connections_opened: AtomicU64,
    /// Upstream connections currently open (pooled or in use).
    pub connections_active: AtomicU64,
    /// TLS handshakes made towards the upstream (one per new TLS connection).
    pub tls_handshakes: AtomicU64,
    /// Requests served on a reused upstream connection.
    pub reused_requests: AtomicU64,
    /// Requests refused by a circuit breaker (Envoy `UO`).
    pub overflows: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Active requests per endpoint, for LEAST_REQUEST.
    endpoint_active: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
    /// The `maxConnections` slot semaphore, rebuilt when the limit changes.
    connection_slots: Mutex<Option<(u64, Arc<Semaphore>)>>,
    /// Requests served per upstream connection (by fd), for `maxRequestsPerConnection`.
    per_connection: Mutex<HashMap<i32, u64>>,
    /// Outlier detection: consecutive failures and ejections per endpoint.
    health: Mutex<HashMap<SocketAddr, EndpointHealth>>,
    /// Endpoints ejected by outlier detection, in total.
    pub ejections: AtomicU64,
}

#[derive(Debug, Default)]
struct EndpointHealth {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

/// How an upstream attempt ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx other than 502/503/504.
    ServerError,
    /// 502/503/504, a connect failure, or a reset.
    GatewayError,
}

/// The outlier thresholds a cluster runs with (see `compile::cluster::OutlierPolicy`).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
    pub endpoints: usize,
}

/// A point-in-time copy for the admin endpoint.
#[derive(Debug, Serialize, Default, Clone)]
pub struct ClusterStatsView {
    pub cluster: String,
    pub requests: u64,
    pub active_requests: u64,
    pub connections_opened: u64,
    pub connections_active: u64,
    pub tls_handshakes: u64,
    pub reused_requests: u64,
    pub overflows: u64,
    pub connect_failures: u64,
    pub ejections: u64,
    /// requests / connections opened: how many requests each upstream connection carried.
    pub requests_per_connection: f64,
}

impl ClusterStats {
    pub fn view(&self) -> ClusterStatsView {
        let requests = self.requests.load(Relaxed);
        let opened = self.connections_opened.load(Relaxed);
        ClusterStatsView {
            cluster: self.name.clone(),
            requests,
            active_requests: self.active_requests.load(Relaxed),
            connections_opened: opened,
            connections_active: self.connections_active.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            reused_requests: self.reused_requests.load(Relaxed),
            overflows: self.overflows.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            ejections: self.ejections.load(Relaxed),
            requests_per_connection: if opened == 0 {
                0.0
            } else {
                requests as f64 / opened as f64
            },
        }
    }

    pub fn endpoint_counter(&self, addr: SocketAddr) -> Arc<AtomicU64> {
        let mut map = self
            .endpoint_active
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(addr).or_default().clone()
    }

    /// The semaphore bounding concurrent upstream connections, sized to `limit`.
    pub fn connection_slots(&self, limit: u64) -> Arc<Semaphore> {
        let mut slot = self
            .connection_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((l, sem)) if *l == limit => sem.clone(),
            _ => {
                let permits = usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS);
                let sem = Arc::new(Semaphore::new(permits));
                *slot = Some((limit, sem.clone()));
                sem
            }
        }
    }

    /// Endpoints currently ejected by outlier detection.
    pub fn ejected(&self) -> Vec<SocketAddr> {
        let now = Instant::now();
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health
            .iter()
            .filter(|(_, h)| h.ejected_until.is_some_and(|t| t > now))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Records how an attempt on `addr` ended; ejects the endpoint when it crosses a threshold
    /// (for `base_ejection` × the number of times it was ejected, Envoy's back-off).
    pub fn record_outcome(&self, addr: SocketAddr, outcome: Outcome, t: Thresholds) {
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let ejected_now = health
            .values()
            .filter(|h| h.ejected_until.is_some_and(|u| u > now))
            .count();
        let h = health.entry(addr).or_default();
        match outcome {
            Outcome::Success => {
                h.consecutive_5xx = 0;
                h.consecutive_gateway = 0;
                return;
            }
            Outcome::ServerError => {
                h.consecutive_5xx += 1;
                h.consecutive_gateway = 0;
            }
            Outcome::GatewayError => {
                h.consecutive_5xx += 1;
                h.consecutive_gateway += 1;
            }
        }
        let tripped = (t.consecutive_5xx > 0 && h.consecutive_5xx >= t.consecutive_5xx)
            || (t.consecutive_gateway > 0 && h.consecutive_gateway >= t.consecutive_gateway);
        let already = h.ejected_until.is_some_and(|u| u > now);
        let cap = (t.endpoints * t.max_ejection_percent as usize / 100).max(1);
        if tripped && !already && ejected_now < cap {
            h.ejections += 1;
            h.ejected_until = Some(now + t.base_ejection * h.ejections);
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            self.ejections.fetch_add(1, Relaxed);
            tracing::warn!(cluster = %self.name, endpoint = %addr, "outlier detection: endpoint ejected for {:?}", t.base_ejection * h.ejections);
        }
    }

    /// Counts a request on upstream connection `fd`; returns how many it has carried.
    pub fn count_on_connection(&self, fd: i32, reused: bool) -> u64 {
        let mut map = self
            .per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = map.entry(fd).or_insert(0);
        if !reused {
            *n = 0;
        }
        *n += 1;
        *n
    }
}

/// All cluster stats by cluster name; entries whose cluster disappeared and that nothing uses
/// any more are pruned on each compile.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    clusters: Mutex<HashMap<String, Arc<ClusterStats>>>,
}

impl StatsRegistry {
    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        let mut map = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ClusterStats {
                    name: name.to_string(),
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Drops stats nobody references (their cluster left the config and no request is using it).
    pub fn prune(&self) {
        let mut map = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| Arc::strong_count(s) > 1);
    }

    pub fn views(&self) -> Vec<ClusterStatsView> {
        let map = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().map(|s| s.view()).collect();
        v.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        v
    }
}
