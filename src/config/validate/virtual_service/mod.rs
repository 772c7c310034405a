//! VirtualService: hosts, gateways, HTTP/TLS/TCP rules (Istio `ValidateVirtualService` and
//! `validateHTTPRoute`), and the analyzer findings inside one VirtualService: IST0130
//! (unreachable rule) and IST0131 (ineffective match).
//!
//! This file checks the object as a whole (delegate form, gateways, hosts) and hands each rule
//! to its stage: `http` (one HTTP rule) with `matches`, `headers`, `destinations` and `actions`
//! (redirect, direct response, rewrite, retries, fault, CORS); `tcp_tls` (TLS and TCP rules);
//! `reachability` (IST0130, IST0131).

mod actions;
mod destinations;
mod headers;
mod http;
mod matches;
mod reachability;
mod tcp_tls;

use super::rules::{self, check_gateway_name, is_ip};
use crate::config::diag::Diagnostic;
use crate::config::host::HostPattern;
use crate::config::load::Resource;
use crate::config::resolve::MESH;
use crate::config::types::{L4MatchAttributes, TlsMatchAttributes, VirtualService};

/// Istio `isGateway`: gateways are listed and `mesh` is not among them.
fn gateway_only(spec: &VirtualService) -> bool {
    !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH)
}

/// Bound to at least one real gateway (so Portcullis serves it).
pub(super) fn bound_to_gateway(spec: &VirtualService) -> bool {
    spec.gateways.iter().any(|g| g != MESH)
}

pub(super) fn check(vs: &Resource<VirtualService>, out: &mut Vec<Diagnostic>) {
    let mut r = vs.reporter(out);
    let spec = &vs.spec;
    let delegate = spec.hosts.is_empty();
    if delegate {
        let why = "a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate";
        if !spec.gateways.is_empty() {
            r.error(
                "spec.gateways",
                format!("delegate virtual service must have no gateways specified ({why}; expected hosts, or no gateways)"),
            );
        }
        if !spec.tls.is_empty() {
            r.error(
                "spec.tls",
                format!("delegate virtual service must have no tls route specified ({why}; expected hosts, or http routes only)"),
            );
        }
        if !spec.tcp.is_empty() {
            r.error(
                "spec.tcp",
                format!("delegate virtual service must have no tcp route specified ({why}; expected hosts, or http routes only)"),
            );
        }
    }
    for (i, g) in spec.gateways.iter().enumerate() {
        if let Err(m) = check_gateway_name(g) {
            r.error(format!("spec.gateways[{i}]"), m);
        }
        // Istio `validateGatewayNames` returns after the first name without a namespace (`mesh`
        // included), so the webhook neither checks nor rejects the names after it.
        if !g.contains('/') {
            break;
        }
    }
    if !delegate && !bound_to_gateway(spec) {
        r.note(
            "spec.gateways",
            "mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)",
        );
    }
    let to_gateway = gateway_only(spec);
    let to_mesh = !to_gateway;
    let mut hosts_valid = true;
    let sni = spec
        .tls
        .iter()
        .any(|t| t.matches.iter().any(|m| !m.sni_hosts.is_empty()));
    for (i, h) in spec.hosts.iter().enumerate() {
        let checked = if to_gateway && sni && h.starts_with("outbound_") {
            auto_generated_sni_domain(h)
        } else {
            rules::check_wildcard_domain(h)
        };
        if let Err(m) = checked {
            if !is_ip(h) {
                r.error(
                    format!("spec.hosts[{i}]"),
                    format!("invalid host: {m}; a VirtualService host is an FQDN, a leftmost wildcard such as *.example.com, or an IP"),
                );
                hosts_valid = false;
            }
        } else if to_mesh && h == "*" {
            r.error(
                format!("spec.hosts[{i}]"),
                "wildcard host * is not allowed for virtual services bound to the mesh gateway (expected gateways that name a Gateway, without `mesh`, or specific hosts)",
            );
            hosts_valid = false;
        }
    }
    if hosts_valid {
        let patterns: Vec<HostPattern> = spec.hosts.iter().map(|h| HostPattern::parse(h)).collect();
        for j in 1..patterns.len() {
            if let Some(i) = (0..j).find(|&i| patterns[i].matches(&patterns[j])) {
                r.error(
                    format!("spec.hosts[{j}]"),
                    format!(
                        "duplicate hosts in virtual service: `{}` & `{}` overlap (expected each host once; a wildcard such as `*.com` already covers `*.foo.com`)",
                        spec.hosts[i], spec.hosts[j]
                    ),
                );
            }
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        r.error(
            "spec",
            "http, tcp or tls must be provided in virtual service (expected at least one route list)",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        self::http::check_http_route(
            &mut r,
            &format!("spec.http[{i}]"),
            route,
            delegate,
            to_gateway,
        );
    }
    for (i, route) in spec.tls.iter().enumerate() {
        tcp_tls::check_tls_route(&mut r, &format!("spec.tls[{i}]"), route, spec);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        tcp_tls::check_tcp_route(&mut r, &format!("spec.tcp[{i}]"), route);
    }
    rules::check_export_to(&mut r, "spec.exportTo", &vs.meta.namespace, &spec.export_to);
    reachability::analyze_http(&mut r, &spec.http);
    reachability::analyze_l4(
        &mut r,
        "tcp",
        &spec
            .tcp
            .iter()
            .map(|t| t.matches.as_slice())
            .collect::<Vec<_>>(),
        |m: &L4MatchAttributes| *m == L4MatchAttributes::default(),
    );
    reachability::analyze_l4(
        &mut r,
        "tls",
        &spec
            .tls
            .iter()
            .map(|t| t.matches.as_slice())
            .collect::<Vec<_>>(),
        |_: &TlsMatchAttributes| false,
    );
}

/// Istio `ValidateWildcardDomainForVirtualServiceBoundToGateway` for a gateway-bound TLS
/// VirtualService: a host in the auto-generated SNI form `outbound_.<PORT>_._.<HOSTNAME>` (what
/// AUTO_PASSTHROUGH routes by) is valid (`agent/validation.go`, `parseAutoGeneratedSNIDomain`).
fn auto_generated_sni_domain(domain: &str) -> Result<(), String> {
    let format = "outbound_.<PORT>_._.<HOSTNAME>";
    let parts: Vec<&str> = domain.split('_').collect();
    if parts.len() < 4 {
        return Err(format!(
            "domain name {domain} invalid, should follow '{format}' format"
        ));
    }
    let port = parts[1].trim_matches('.');
    let hostname = parts[3].trim_matches('.');
    if parts[0] != "outbound" {
        return Err(format!(
            "domain name {domain:?} invalid (label {:?} invalid)",
            parts[0]
        ));
    }
    if !port.bytes().any(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (label {port:?} invalid). should follow {format} format"
        ));
    }
    if !hostname.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {format} format"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{diags, doc, expect_in_context, CONTEXT};

    const VS: &str = "VirtualService";

    /// Lines 5-6; rules start at line 7.
    const BOUND: &str = "hosts: [a.example.com]\ngateways: [gw]\n";

    fn bound(rest: &str) -> String {
        format!("{BOUND}{rest}")
    }

    /// Each `(rules, expected)` case, as VirtualService default/vs bound to Gateway `gw`, with
    /// the shared context (validate::testutil::CONTEXT).
    pub(super) fn check(cases: &[(&str, &[&str])]) {
        let owned: Vec<(String, &[&str])> = cases.iter().map(|(s, e)| (bound(s), *e)).collect();
        let refs: Vec<(&str, &[&str])> = owned.iter().map(|(s, e)| (s.as_str(), *e)).collect();
        expect_in_context(VS, "vs", &refs);
    }

    pub(super) const ROUTE: &str = "  route:\n  - destination: {host: svc.example.com}\n";

    #[test]
    fn a_complete_virtual_service_is_clean() {
        check(&[(
            "http:
- name: api
  match:
  - uri: {prefix: /api}
    headers: {x-user: {exact: jason}, x-any: {}}
    queryParams: {v: {regex: \"[0-9]+\"}}
  rewrite: {uri: /v1}
  timeout: 10s
  retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,connect-failure,503\"}
  headers:
    request: {set: {x-env: prod, host: b.example.com}, remove: [x-debug]}
    response: {add: {x-served-by: \"%HOSTNAME%\"}}
  route:
  - destination: {host: svc.example.com, subset: v1, port: {number: 80}}
    weight: 90
  - destination: {host: svc.example.com}
    weight: 10
  mirror: {host: svc.example.com}
  mirrorPercentage: {value: 5}
  corsPolicy: {allowOrigins: [{exact: \"https://a.example.com\"}], allowMethods: [GET], maxAge: 24h}
- redirect: {scheme: https, redirectCode: 308}
",
            &[],
        )]);
    }

    #[test]
    fn hosts_gateways_and_route_lists() {
        expect_in_context(
            VS,
            "vs",
            &[
                (
                    BOUND,
                    &["t.yaml:4: Error [IST0106] VirtualService default/vs: spec: http, tcp or tls must be provided in virtual service (expected at least one route list)"],
                ),
                (
                    "hosts: [\"a.*.com\"]\ngateways: [gw]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:5: Error [IST0106] VirtualService default/vs: spec.hosts[0]: invalid host: domain name `a.*.com` is invalid: label `*` (expected labels of letters, digits and '-', at most 63 characters each); a VirtualService host is an FQDN, a leftmost wildcard such as *.example.com, or an IP"],
                ),
                (
                    "hosts: [\"*\"]\ngateways: [mesh]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &[
                        "t.yaml:5: Error [IST0106] VirtualService default/vs: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway (expected gateways that name a Gateway, without `mesh`, or specific hosts)",
                        "t.yaml:6: Warning VirtualService default/vs: spec.gateways: mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)",
                    ],
                ),
                (
                    "hosts: [\"*.foo.com\", \"*.com\"]\ngateways: [gw]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:5: Error [IST0106] VirtualService default/vs: spec.hosts[1]: duplicate hosts in virtual service: `*.foo.com` & `*.com` overlap (expected each host once; a wildcard such as `*.com` already covers `*.foo.com`)"],
                ),
                (
                    "hosts: [a.example.com]\ngateways: [\"ns/bad_gw\"]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:6: Error [IST0106] VirtualService default/vs: spec.gateways[0]: invalid gateway name `bad_gw` in gateway reference `ns/bad_gw` (expected a DNS-1123 label)"],
                ),
                (
                    "gateways: [gw]\ntcp:\n- route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n",
                    &[
                        "t.yaml:5: Error [IST0106] VirtualService default/vs: spec.gateways: delegate virtual service must have no gateways specified (a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate; expected hosts, or no gateways)",
                        "t.yaml:6: Error [IST0106] VirtualService default/vs: spec.tcp: delegate virtual service must have no tcp route specified (a VirtualService without hosts is a delegate, included by another VirtualService's http[].delegate; expected hosts, or http routes only)",
                    ],
                ),
                (
                    "hosts: [a.example.com]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                    &["t.yaml:4: Warning VirtualService default/vs: spec.gateways: mesh-only: spec.gateways names no Gateway (an empty list means `mesh`), so this VirtualService binds only to sidecars and Portcullis never serves it (expected spec.gateways naming a Gateway)"],
                ),
            ],
        );
    }

    /// Istio `validateGatewayNames` stops at the first name without a namespace: the webhook
    /// does not reject what follows it (the reference then binds nothing).
    #[test]
    fn gateway_names_after_a_bare_name_are_not_checked() {
        expect_in_context(
            VS,
            "vs",
            &[(
                "hosts: [a.example.com]\ngateways: [gw, \"ns/bad_gw\"]\nhttp:\n- route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:6: Warning [IST0101] VirtualService default/vs: spec.gateways[1]: gateway ns/bad_gw does not exist, so this reference binds nothing (expected a Gateway loaded from the config directory, or `mesh`)"],
            )],
        );
    }

    #[test]
    fn auto_generated_sni_hosts_are_valid_on_gateway_tls_routes() {
        expect_in_context(
            VS,
            "vs",
            &[(
                "hosts: [outbound_.80_._.e2e.foobar.mesh]\ngateways: [gw]\ntls:\n- match: [{sniHosts: [outbound_.80_._.e2e.foobar.mesh]}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:8: Error [IST0106] VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]: invalid SNI host: domain name `outbound_.80_._.e2e.foobar.mesh` is invalid: label `outbound_` (expected labels of letters, digits and '-', at most 63 characters each, and `*` only as the whole leftmost label)"],
            )],
        );
    }

    #[test]
    fn export_to() {
        check(&[
            (
                &format!("exportTo: [\".\", default]\nhttp:\n-{}", &ROUTE[1..]),
                &["t.yaml:7: Error [IST0106] VirtualService default/vs: spec.exportTo[1]: Duplicate value: exportTo lists . and the own namespace `default` twice (expected each namespace once)"],
            ),
            (
                &format!("exportTo: [\"*\", shop]\nhttp:\n-{}", &ROUTE[1..]),
                &["t.yaml:7: Error [IST0106] VirtualService default/vs: spec.exportTo[0]: `*` cannot be combined with other exportTo values (expected `*` alone)"],
            ),
        ]);
    }

    #[test]
    fn context_is_clean() {
        assert!(diags(&format!(
            "{}{CONTEXT}",
            doc(VS, "vs", &bound(&format!("http:\n-{}", &ROUTE[1..])))
        ))
        .is_empty());
    }
}
