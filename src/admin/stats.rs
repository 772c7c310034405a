//! `/stats` (Envoy's text form, `?format=json|prometheus`, `?filter=REGEX`, `?usedonly`,
//! `?type=`), `/stats/prometheus` (the proxy's stats, as Envoy's and as 15090 serves them),
//! `/metrics` (merged with the configuration metrics, as 15020), and Portcullis' per-cluster
//! JSON (`/stats/clusters`). Whatever the metrics hold renders here (`observe::stats`).

use prometheus::proto::MetricFamily;
use serde_json::json;

use super::{Admin, Reply, Request};
use crate::observe::stats::{StatKind, StatsQuery};
use crate::runtime::server::Gateway;

/// The proxy's metric families: Istio's and Envoy's (15090).
pub fn proxy_families(gateway: &Gateway) -> Vec<MetricFamily> {
    let state = &gateway.state;
    let mut families = state.metrics.proxy_families(&state.stats);
    families.extend(gateway.stat_families());
    families
}

/// The proxy's families plus the configuration (agent) metrics (15020).
pub fn merged_families(gateway: &Gateway) -> Vec<MetricFamily> {
    let mut families = proxy_families(gateway);
    families.extend(gateway.state.metrics.agent_families());
    families
}

/// The query's `filter`, `usedonly` and `type`; a bad one is answered with 400.
pub fn query(req: &Request) -> Result<StatsQuery, Reply> {
    let filter = match req.param("filter").filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => Some(
            regex::Regex::new(f)
                .map_err(|e| Reply::text(400, format!("Invalid re2 regex: {e}\n")))?,
        ),
    };
    let kind = match req.param("type") {
        None => StatKind::All,
        Some(t) => StatKind::parse(t).ok_or_else(|| {
            Reply::text(
                400,
                format!("invalid type `{t}` (expected All, Counters, Gauges, Histograms or TextReadouts)\n"),
            )
        })?,
    };
    Ok(StatsQuery {
        filter,
        used_only: req.has("usedonly"),
        kind,
    })
}

pub fn stats(admin: &Admin, req: &Request) -> Reply {
    let q = match query(req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let families = proxy_families(&admin.gateway);
    match req.param("format").unwrap_or("text") {
        "json" => Reply::json(&q.json(&families)),
        "prometheus" => Reply::prometheus(q.prometheus(&families)),
        "text" | "html" | "" => Reply::text(200, q.text(&families)),
        other => Reply::text(
            400,
            format!("invalid format `{other}` (expected text, json or prometheus)\n"),
        ),
    }
}

pub fn prometheus(admin: &Admin, req: &Request) -> Reply {
    match query(req) {
        Ok(q) => Reply::prometheus(q.prometheus(&proxy_families(&admin.gateway))),
        Err(r) => r,
    }
}

pub fn merged_prometheus(admin: &Admin, req: &Request) -> Reply {
    match query(req) {
        Ok(q) => Reply::prometheus(q.prometheus(&merged_families(&admin.gateway))),
        Err(r) => r,
    }
}

pub fn clusters_json(admin: &Admin, _: &Request) -> Reply {
    Reply::json(&json!({ "clusters": admin.gateway.state.stats.views() }))
}
