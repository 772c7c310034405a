//! Per-cluster runtime counters and circuit-breaker state. They outlive snapshots: a reload
//! hands the same `Arc<ClusterStats>` to the new cluster of the same name, so in-flight requests,
//! open connections and the reuse figures carry across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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
