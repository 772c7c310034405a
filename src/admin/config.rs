//! What is being served: `/config_dump` (Portcullis' snapshot: listeners, clusters, registry,
//! and the reload status), `/reload` (generation, files hash, last error, what the served
//! configuration leaves out as `left_out`, counters) and `/certs` (Envoy
//! `source/server/admin/server_info_handler.cc` `handlerCerts`: every served certificate chain
//! with its path, serial, SANs, validity and days until expiration).

use std::collections::BTreeMap;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::x509::X509;
use serde_json::{json, Value};

use super::{Admin, Reply, Request};
use crate::compile::listener::{ChainAction, ListenerKind};
use crate::compile::Snapshot;
use crate::observe::access_entry::format_time;
use crate::tls::certs::CertChain;

fn reload_status(admin: &Admin) -> Value {
    admin
        .reload
        .lock()
        .map(|r| serde_json::to_value(&*r).unwrap_or_default())
        .unwrap_or_default()
}

pub fn config_dump(admin: &Admin, _: &Request) -> Reply {
    let snapshot = admin.gateway.state.snapshot.load_full();
    Reply::json(&json!({
        "reload": reload_status(admin),
        "instance": snapshot.instance,
        "summary": snapshot.summary,
        "listeners": snapshot.listeners,
        "clusters": snapshot.clusters,
        "registry": snapshot.registry.hosts(),
    }))
}

pub fn reload(admin: &Admin, _: &Request) -> Reply {
    Reply::json(&reload_status(admin))
}

/// Seconds since the epoch of an ASN.1 time.
pub(super) fn unix(t: &Asn1TimeRef) -> Option<i64> {
    let d = Asn1Time::from_unix(0).ok()?.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

fn rfc3339(t: &Asn1TimeRef) -> Value {
    unix(t)
        .and_then(|s| u64::try_from(s).ok())
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .map_or(Value::Null, |t| json!(format_time(t)))
}

fn details(path: &str, cert: &X509) -> Value {
    let sans: Vec<Value> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| {
                    n.dnsname()
                        .map(|d| json!({"dns": d}))
                        .or_else(|| n.uri().map(|u| json!({"uri": u})))
                        .or_else(|| n.ipaddress().map(|ip| json!({"ip_address": ip_text(ip)})))
                })
                .collect()
        })
        .unwrap_or_default();
    let days = Asn1Time::days_from_now(0)
        .ok()
        .and_then(|now| now.diff(cert.not_after()).ok())
        .map(|d| d.days.max(0));
    json!({
        "path": path,
        "serial_number": cert.serial_number().to_bn().ok().and_then(|b| b.to_hex_str().ok()).map(|h| h.to_lowercase()),
        "subject_alt_names": sans,
        "days_until_expiration": days.map(|d| d.to_string()),
        "valid_from": rfc3339(cert.not_before()),
        "expiration_time": rfc3339(cert.not_after()),
    })
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from([bytes[0], bytes[1], bytes[2], bytes[3]]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => String::new(),
    }
}

/// Every certificate chain the listeners serve, once per file (by path).
pub(super) fn served_chains(snapshot: &Snapshot) -> BTreeMap<String, CertChain> {
    let mut chains = BTreeMap::new();
    for l in snapshot.listeners.values() {
        let ListenerKind::Tls(tls) = &l.kind else {
            continue;
        };
        for c in &tls.chains {
            let served = match &c.action {
                ChainAction::TerminateHttp { tls, .. } | ChainAction::TerminateTcp { tls, .. } => {
                    tls
                }
                ChainAction::Passthrough { .. } => continue,
            };
            for chain in served.certificates.iter() {
                let path = chain.cert_path.display().to_string();
                chains.entry(path).or_insert_with(|| chain.clone());
            }
        }
    }
    chains
}

/// Every certificate chain the listeners serve, once per file.
pub fn certs(admin: &Admin, _: &Request) -> Reply {
    let snapshot = admin.gateway.state.snapshot.load_full();
    let certificates: Vec<Value> = served_chains(&snapshot)
        .iter()
        .map(|(path, chain)| {
            let certs: Vec<Value> = std::iter::once(&chain.leaf)
                .chain(chain.intermediates.iter())
                .map(|c| details(path, c))
                .collect();
            json!({"ca_cert": [], "cert_chain": certs})
        })
        .collect();
    Reply::json(&json!({ "certificates": certificates }))
}
