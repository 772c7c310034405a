//! `/stats` (Envoy's text form, `?format=json|prometheus`, `?filter=REGEX`, `?usedonly`,
//! `?type=`), `/stats/prometheus` (the proxy's stats, as Envoy's and as 15090 serves them),
//! `/metrics` (merged with the configuration metrics, as 15020), and Portcullis' per-cluster
//! JSON (`/stats/clusters`). Whatever the metrics hold renders here (`observe::stats`), with
//! the certificates' expiry computed when scraped.

use openssl::asn1::Asn1Time;
use prometheus::proto::{MetricFamily, MetricType};
use serde_json::json;

use super::config::{served_chains, unix};
use super::{Admin, Reply, Request};
use crate::compile::Snapshot;
use crate::observe::stats::{StatKind, StatsQuery};
use crate::runtime::server::Gateway;
use crate::telemetry::envoy::family;

/// The proxy's metric families: Istio's and Envoy's (15090).
pub fn proxy_families(gateway: &Gateway) -> Vec<MetricFamily> {
    let state = &gateway.state;
    let mut families = state.metrics.proxy_families();
    families.extend(state.stats.families());
    families.extend(gateway.stat_families());
    families.extend(certificate_families(&state.snapshot.load()));
    families
}

/// Envoy's `server.days_until_first_cert_expiring` (`source/server/server.cc`
/// `updateServerStats`: the fewest whole days left of any certificate served, 0 when none or
/// expired, `Utility::getDaysUntilExpiration`) and each served certificate's expiry time,
/// `portcullis_certificate_expiry_timestamp_seconds{cert=<file>,serial_number=<hex>}`.
pub fn certificate_families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let now = Asn1Time::days_from_now(0).ok();
    let mut first: Option<i64> = None;
    let mut expiries = Vec::new();
    for (path, chain) in served_chains(snapshot) {
        for cert in std::iter::once(&chain.leaf).chain(chain.intermediates.iter()) {
            let days = now
                .as_ref()
                .and_then(|n| n.diff(cert.not_after()).ok())
                .map_or(0, |d| {
                    if d.days >= 0 && d.secs >= 0 {
                        i64::from(d.days)
                    } else {
                        0
                    }
                });
            first = Some(first.map_or(days, |f| f.min(days)));
            let serial = cert
                .serial_number()
                .to_bn()
                .ok()
                .and_then(|b| b.to_hex_str().ok())
                .map(|h| h.to_lowercase())
                .unwrap_or_default();
            if let Some(t) = unix(cert.not_after()) {
                expiries.push((
                    vec![("cert", path.clone()), ("serial_number", serial)],
                    t as f64,
                ));
            }
        }
    }
    let mut out = vec![family(
        "envoy_server_days_until_first_cert_expiring",
        "Days until the first served certificate expires",
        MetricType::GAUGE,
        [(vec![], first.unwrap_or(0) as f64)],
    )];
    if !expiries.is_empty() {
        out.push(family(
            "portcullis_certificate_expiry_timestamp_seconds",
            "When each served certificate expires (seconds since the epoch)",
            MetricType::GAUGE,
            expiries,
        ));
    }
    out
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
