//! TLS rules (SNI hosts within the VirtualService's hosts) and TCP rules: their match
//! attributes and destinations.

use std::collections::BTreeMap;

use super::super::rules::{self, check_gateway_name, check_port, is_ip};
use super::destinations::check_l4_destinations;
use crate::config::diag::Reporter;
use crate::config::host::HostPattern;
use crate::config::types::{TcpRoute, TlsRoute, VirtualService};

pub(super) fn check_tls_route(r: &mut Reporter, base: &str, route: &TlsRoute, vs: &VirtualService) {
    if route.matches.is_empty() {
        r.error(
            format!("{base}.match"),
            "Required value: TLS route must have at least one match condition (expected match with sniHosts)",
        );
    }
    let vs_hosts: Vec<HostPattern> = vs.hosts.iter().map(|h| HostPattern::parse(h)).collect();
    for (j, m) in route.matches.iter().enumerate() {
        let p = format!("{base}.match[{j}]");
        if m.sni_hosts.is_empty() {
            r.error(
                format!("{p}.sniHosts"),
                "Required value: TLS match must have at least one SNI host (expected sniHosts)",
            );
        }
        for (k, sni) in m.sni_hosts.iter().enumerate() {
            let sp = format!("{p}.sniHosts[{k}]");
            if let Err(msg) = rules::check_wildcard_domain(sni) {
                if is_ip(sni) {
                    r.warn(
                        sp,
                        format!("using an IP address ({sni:?}) goes against the SNI spec and most clients do not send it (expected a host name)"),
                    );
                } else {
                    r.error(sp, format!("invalid SNI host: {msg}"));
                }
                continue;
            }
            let pattern = HostPattern::parse(sni);
            if !vs_hosts.iter().any(|h| pattern.subset_of(h)) {
                r.error(
                    sp,
                    format!(
                        "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}] (expected an SNI host that one of spec.hosts covers)",
                        vs.hosts.join(", ")
                    ),
                );
            }
        }
        L4Match {
            destination_subnets: &m.destination_subnets,
            source_subnet: None,
            port: m.port,
            source_labels: &m.source_labels,
            source_namespace: m.source_namespace.as_deref(),
            gateways: &m.gateways,
        }
        .check(r, &p);
    }
    check_l4_destinations(r, base, "TLS", &route.route);
}

pub(super) fn check_tcp_route(r: &mut Reporter, base: &str, route: &TcpRoute) {
    for (j, m) in route.matches.iter().enumerate() {
        L4Match {
            destination_subnets: &m.destination_subnets,
            source_subnet: m.source_subnet.as_deref(),
            port: m.port,
            source_labels: &m.source_labels,
            source_namespace: m.source_namespace.as_deref(),
            gateways: &m.gateways,
        }
        .check(r, &format!("{base}.match[{j}]"));
    }
    check_l4_destinations(r, base, "TCP", &route.route);
}

/// The match attributes TLS and TCP rules share (TLS has no source subnet).
struct L4Match<'a> {
    destination_subnets: &'a [String],
    source_subnet: Option<&'a str>,
    port: Option<u32>,
    source_labels: &'a BTreeMap<String, String>,
    source_namespace: Option<&'a str>,
    gateways: &'a [String],
}

impl L4Match<'_> {
    fn check(&self, r: &mut Reporter, p: &str) {
        for (k, s) in self.destination_subnets.iter().enumerate() {
            if let Err(msg) = rules::check_ip_or_cidr(s) {
                r.error(format!("{p}.destinationSubnets[{k}]"), msg);
            }
        }
        if let Some(s) = self.source_subnet {
            if let Err(msg) = rules::check_ip_or_cidr(s) {
                r.error(format!("{p}.sourceSubnet"), msg);
            }
        }
        if let Some(port) = self.port.filter(|p| *p != 0) {
            if let Err(m) = check_port(port) {
                r.error(format!("{p}.port"), m);
            }
        }
        let mesh_only =
            "mesh-only: selects sidecars, ignored by a gateway (expected gateways or port)";
        if !self.source_labels.is_empty() {
            r.note(format!("{p}.sourceLabels"), mesh_only);
        }
        if self.source_namespace.is_some() {
            r.note(format!("{p}.sourceNamespace"), mesh_only);
        }
        for (k, g) in self.gateways.iter().enumerate() {
            if let Err(m) = check_gateway_name(g) {
                r.error(format!("{p}.gateways[{k}]"), m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;

    #[test]
    fn tls_and_tcp_routes() {
        check(&[
            (
                "tls:\n- route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tls[0].match: Required value: TLS route must have at least one match condition (expected match with sniHosts)"],
            ),
            (
                "tls:\n- match: [{port: 443}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tls[0].match[0].sniHosts: Required value: TLS match must have at least one SNI host (expected sniHosts)"],
            ),
            (
                "tls:\n- match: [{sniHosts: [b.example.com]}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]: SNI host \"b.example.com\" is not a compatible subset of any of the virtual service hosts: [a.example.com] (expected an SNI host that one of spec.hosts covers)"],
            ),
            (
                "tls:\n- match: [{sniHosts: [a.example.com]}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tls[0].route: Required value: TLS route is required (expected at least one destination)"],
            ),
            (
                "tcp:\n- match: [{port: 9000}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tcp[0].route: Required value: TCP route is required (expected at least one destination)"],
            ),
        ]);
    }
}
