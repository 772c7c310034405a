//! Per-cluster counters that outlive snapshots: a reload hands the same [`ClusterState`] to the
//! new cluster of the same name, so in-flight requests, open connections, circuit-breaker slots,
//! outlier ejections and the reuse figures carry across reloads. Counters only; what they mean
//! for admission and ejection lives in `breaker.rs` and `outlier.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::breaker::BreakerState;
use super::outlier::Ejections;

#[derive(Debug, Default)]
pub struct ClusterStats {
    pub name: String,
    /// Requests that were sent (or attempted) to this cluster.
    pub requests: AtomicU64,
    /// Upstream TCP connections opened.
    pub connections_opened: AtomicU64,
    /// Upstream connections currently open (pooled or in use).
    pub connections_active: AtomicU64,
    /// TLS handshakes made towards the upstream (one per new TLS connection).
    pub tls_handshakes: AtomicU64,
    /// Requests served on a reused upstream connection.
    pub reused_requests: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Active requests per endpoint, for LEAST_REQUEST.
    endpoint_active: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
    /// Circuit-breaker state: connection slots, pending requests, requests per connection.
    pub breaker: Arc<BreakerState>,
    /// Outlier detection: consecutive failures and ejections per endpoint.
    pub outlier: Ejections,
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
            active_requests: self.breaker.active_requests.load(Relaxed),
            connections_opened: opened,
            connections_active: self.connections_active.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            reused_requests: self.reused_requests.load(Relaxed),
            overflows: self.breaker.overflows.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            ejections: self.outlier.total(),
            requests_per_connection: if opened == 0 {
                0.0
            } else {
                requests as f64 / opened as f64
            },
        }
    }

    /// The active-request counter of one endpoint (LEAST_REQUEST balances on it).
    pub fn endpoint_counter(&self, addr: SocketAddr) -> Arc<AtomicU64> {
        let mut map = self
            .endpoint_active
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(addr).or_default().clone()
    }
}

/// All cluster stats by cluster name; entries whose cluster disappeared and that nothing uses
/// any more are pruned after each reload.
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
