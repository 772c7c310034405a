//! `/clusters` (Envoy `source/server/admin/clusters_renderer.cc`, `clusters_handler.cc`): one
//! `cluster::field::value` line per fact, per endpoint `cluster::host:port::field::value`; or
//! `?format=json` (`envoy.admin.v3.Clusters`). Circuit-breaker limits are the DestinationRule's,
//! Envoy's 2^32-1 where unset (as Istio leaves them); per-endpoint stats are the ones Portcullis
//! keeps (`rq_active`); outlier-ejected endpoints show `/failed_outlier_check`.

use std::net::SocketAddr;
use tokio::time::Instant;

use serde_json::{json, Value};

use super::{Admin, Reply, Request};
use crate::upstream::endpoint::Endpoints;
use crate::upstream::Cluster;

/// Envoy's "no limit" (`std::numeric_limits<uint32_t>::max()`).
const UNLIMITED: u64 = u32::MAX as u64;
/// Envoy's defaults for the HIGH priority, which Istio does not set.
const HIGH_DEFAULTS: [(&str, u64); 4] = [
    ("max_connections", 1024),
    ("max_pending_requests", 1024),
    ("max_requests", 1024),
    ("max_retries", 3),
];

/// One endpoint: address (or `name:port` for a DNS name), hostname, weight, active requests,
/// ejected or not.
struct Host {
    address: String,
    socket: Option<SocketAddr>,
    hostname: String,
    weight: u32,
    rq_active: u64,
    ejected: bool,
}

fn hosts(c: &Cluster) -> Vec<Host> {
    let now = Instant::now();
    match &c.endpoints {
        Endpoints::Static(eps) => c.stats.outlier.with_ejected(now, |ejected| {
            eps.iter()
                .map(|e| Host {
                    address: e.address.to_string(),
                    socket: Some(e.address),
                    hostname: String::new(),
                    weight: e.weight,
                    rq_active: e.active.load(std::sync::atomic::Ordering::Relaxed),
                    ejected: ejected(e.address),
                })
                .collect()
        }),
        Endpoints::Dns(names) => names
            .iter()
            .map(|d| Host {
                address: format!("{}:{}", d.name, d.port),
                socket: None,
                hostname: d.name.clone(),
                weight: d.weight,
                rq_active: 0,
                ejected: false,
            })
            .collect(),
        Endpoints::RequestHost { .. } => Vec::new(),
    }
}

fn limits(c: &Cluster) -> [(&'static str, u64); 4] {
    let cb = &c.circuit_breaker;
    let or_max = |v: Option<u64>| v.unwrap_or(UNLIMITED);
    [
        ("max_connections", or_max(cb.max_connections)),
        ("max_pending_requests", or_max(cb.max_pending_requests)),
        ("max_requests", or_max(cb.max_requests)),
        ("max_retries", UNLIMITED),
    ]
}

fn text(c: &Cluster, out: &mut String) {
    let n = &c.name;
    out.push_str(&format!("{n}::observability_name::{n}\n"));
    if c.outlier.is_some() {
        for f in [
            "success_rate_average",
            "success_rate_ejection_threshold",
            "local_origin_success_rate_average",
            "local_origin_success_rate_ejection_threshold",
        ] {
            out.push_str(&format!("{n}::outlier::{f}::-1\n"));
        }
    }
    for (k, v) in limits(c) {
        out.push_str(&format!("{n}::default_priority::{k}::{v}\n"));
    }
    for (k, v) in HIGH_DEFAULTS {
        out.push_str(&format!("{n}::high_priority::{k}::{v}\n"));
    }
    out.push_str(&format!("{n}::added_via_api::true\n"));
    for h in hosts(c) {
        let a = &h.address;
        let flags = if h.ejected {
            "/failed_outlier_check"
        } else {
            "healthy"
        };
        out.push_str(&format!("{n}::{a}::rq_active::{}\n", h.rq_active));
        out.push_str(&format!("{n}::{a}::hostname::{}\n", h.hostname));
        out.push_str(&format!("{n}::{a}::health_flags::{flags}\n"));
        out.push_str(&format!("{n}::{a}::weight::{}\n", h.weight));
        for f in ["region", "zone", "sub_zone"] {
            out.push_str(&format!("{n}::{a}::{f}::\n"));
        }
        out.push_str(&format!("{n}::{a}::canary::false\n"));
        out.push_str(&format!("{n}::{a}::priority::0\n"));
        out.push_str(&format!("{n}::{a}::success_rate::-1\n"));
        out.push_str(&format!("{n}::{a}::local_origin_success_rate::-1\n"));
    }
}

fn json(c: &Cluster) -> Value {
    let thresholds = |priority: Option<&str>, limits: &[(&str, u64)]| {
        let mut t = serde_json::Map::new();
        if let Some(p) = priority {
            t.insert("priority".into(), json!(p));
        }
        for (k, v) in limits {
            t.insert((*k).into(), json!(v));
        }
        Value::Object(t)
    };
    let hosts: Vec<Value> = hosts(c)
        .into_iter()
        .map(|h| {
            let address = match h.socket {
                Some(s) => json!({"socket_address": {"address": s.ip().to_string(), "port_value": s.port()}}),
                None => json!({"socket_address": {"address": h.hostname, "port_value": h.address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())}}),
            };
            json!({
                "address": address,
                "stats": [{"name": "rq_active", "value": h.rq_active.to_string(), "type": "GAUGE"}],
                "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": h.ejected},
                "weight": h.weight,
                "hostname": h.hostname,
                "locality": {},
            })
        })
        .collect();
    json!({
        "name": c.name,
        "observability_name": c.name,
        "added_via_api": true,
        "circuit_breakers": {"thresholds": [thresholds(None, &limits(c)), thresholds(Some("HIGH"), &HIGH_DEFAULTS)]},
        "host_statuses": hosts,
    })
}

pub fn clusters(admin: &Admin, req: &Request) -> Reply {
    let snapshot = admin.gateway.state.snapshot.load_full();
    if req.param("format") == Some("json") {
        let statuses: Vec<Value> = snapshot.clusters.values().map(|c| json(c)).collect();
        return Reply::json(&json!({ "cluster_statuses": statuses }));
    }
    let mut out = String::new();
    for c in snapshot.clusters.values() {
        text(c, &mut out);
    }
    Reply::text(200, out)
}
