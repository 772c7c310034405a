//! Per-cluster counters that outlive snapshots: a reload hands the same [`ClusterState`] to the
//! new cluster of the same name, so in-flight requests, open connections, circuit-breaker slots,
//! outlier ejections and the reuse figures carry across reloads. Counters only; what they mean
//! for admission and ejection lives in `breaker.rs` and `outlier.rs`. [`StatsRegistry::families`]
//! renders them as Envoy's cluster stats (`source/common/upstream/upstream_impl.h`
//! `ALL_CLUSTER_STATS`, tag-extracted as Istio's bootstrap does: `cluster_name`,
//! `response_code_class`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::proto::{MetricFamily, MetricType};
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
    /// Requests answered, by class (1xx to 5xx): Envoy's `upstream_rq_<N>xx`.
    pub responses: [AtomicU64; 5],
    /// Retries made (Envoy's `upstream_rq_retry`).
    pub retries: AtomicU64,
    /// Requests that timed out waiting for the upstream (`upstream_rq_timeout`).
    pub timeouts: AtomicU64,
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
    pub ejections_active: u64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [u64; 5],
    pub retries: u64,
    pub timeouts: u64,
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
            ejections_active: self.outlier.active(tokio::time::Instant::now()) as u64,
            responses: std::array::from_fn(|i| self.responses[i].load(Relaxed)),
            retries: self.retries.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            requests_per_connection: if opened == 0 {
                0.0
            } else {
                requests as f64 / opened as f64
            },
        }
    }

    /// Counts a finished request that reached this cluster: its response class, the retries it
    /// took, and whether it timed out.
    pub fn record_request(&self, status: u16, retries: u32, timed_out: bool) {
        if let 100..=599 = status {
            self.responses[usize::from(status / 100 - 1)].fetch_add(1, Relaxed);
        }
        if retries > 0 {
            self.retries.fetch_add(u64::from(retries), Relaxed);
        }
        if timed_out {
            self.timeouts.fetch_add(1, Relaxed);
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

    /// Envoy's cluster stats (`cluster.<name>;.upstream_rq_total` ...) from the counters, plus
    /// the requests that reused an upstream connection (Portcullis' own).
    pub fn families(&self) -> Vec<MetricFamily> {
        use crate::telemetry::envoy::family;
        type Field = fn(&ClusterStatsView) -> u64;
        const COUNTER: MetricType = MetricType::COUNTER;
        const GAUGE: MetricType = MetricType::GAUGE;
        let views = self.views();
        if views.is_empty() {
            return Vec::new();
        }
        let fields: [(&str, &str, MetricType, Field); 13] = [
            (
                "envoy_cluster_upstream_rq_total",
                "Requests sent to the cluster",
                COUNTER,
                |v| v.requests,
            ),
            (
                "envoy_cluster_upstream_rq_active",
                "Requests in flight",
                GAUGE,
                |v| v.active_requests,
            ),
            (
                "envoy_cluster_upstream_rq_pending_overflow",
                "Requests refused by a circuit breaker (UO)",
                COUNTER,
                |v| v.overflows,
            ),
            ("envoy_cluster_upstream_rq_retry", "Retries", COUNTER, |v| {
                v.retries
            }),
            (
                "envoy_cluster_upstream_rq_timeout",
                "Requests that timed out waiting for the upstream (UT)",
                COUNTER,
                |v| v.timeouts,
            ),
            (
                "envoy_cluster_upstream_cx_total",
                "Upstream connections opened",
                COUNTER,
                |v| v.connections_opened,
            ),
            (
                "envoy_cluster_upstream_cx_active",
                "Upstream connections open",
                GAUGE,
                |v| v.connections_active,
            ),
            (
                "envoy_cluster_upstream_cx_connect_fail",
                "Upstream connection failures",
                COUNTER,
                |v| v.connect_failures,
            ),
            (
                "envoy_cluster_ssl_handshake",
                "TLS handshakes with the upstream",
                COUNTER,
                |v| v.tls_handshakes,
            ),
            (
                "envoy_cluster_outlier_detection_ejections_enforced_total",
                "Outlier ejections",
                COUNTER,
                |v| v.ejections,
            ),
            (
                "envoy_cluster_outlier_detection_ejections_active",
                "Endpoints ejected now",
                GAUGE,
                |v| v.ejections_active,
            ),
            (
                "portcullis_upstream_rq_reused_total",
                "Requests served on a reused upstream connection",
                COUNTER,
                |v| v.reused_requests,
            ),
            (
                "envoy_cluster_upstream_rq_completed",
                "Requests answered",
                COUNTER,
                |v| v.responses.iter().sum(),
            ),
        ];
        let name = |v: &ClusterStatsView| vec![("cluster_name", v.cluster.clone())];
        let mut out: Vec<MetricFamily> = fields
            .iter()
            .map(|(f, help, kind, field)| {
                family(
                    f,
                    help,
                    *kind,
                    views.iter().map(|v| (name(v), field(v) as f64)),
                )
            })
            .collect();
        // `cluster.<name>;.upstream_rq_2xx` → `envoy_cluster_upstream_rq{response_code_class="2xx"}`.
        let classes = views.iter().flat_map(|v| {
            (0..5).map(move |i| {
                let mut labels = name(v);
                labels.push(("response_code_class", format!("{}xx", i + 1)));
                (labels, v.responses[i] as f64)
            })
        });
        out.push(family(
            "envoy_cluster_upstream_rq",
            "Requests answered, by response class",
            COUNTER,
            classes,
        ));
        out
    }
}
