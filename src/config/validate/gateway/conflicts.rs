//! Findings across Gateways that select the same instance: IST0145 (two servers on one port
//! with overlapping hosts) and IST0138 (two HTTPS servers on one port sharing a certificate).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::diag::{code, Diagnostic, Severity};
use crate::config::host::{HostPattern, ServerHost};
use crate::config::load::Resource;
use crate::config::types::{Gateway, Protocol, ServerTls, ServerTlsMode};

/// Can one gateway instance carry both selectors? Istio treats Gateways as overlapping when one
/// selector is a subset of the other (an empty selector selects every gateway).
fn selectors_overlap(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    let subset = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        x.iter().all(|(k, v)| y.get(k) == Some(v))
    };
    subset(a, b) || subset(b, a)
}

struct ServerRef<'a> {
    gw: usize,
    server: usize,
    host: usize,
    pattern: HostPattern,
    name: &'a str,
    protocol: &'a str,
}

/// IST0145 (two servers on one port with overlapping hosts, in Gateways that select the same
/// instance) and IST0138 (two HTTPS servers on one port sharing a certificate), as warnings.
pub(crate) fn check_conflicts(
    gateways: &[std::sync::Arc<Resource<Gateway>>],
    out: &mut Vec<Diagnostic>,
) {
    // (port, bind) → server hosts; exact names bucketed so large configs stay linear.
    type Key<'a> = (u32, &'a str);
    let mut exact: HashMap<(Key, String), Vec<ServerRef>> = HashMap::new();
    let mut wild: HashMap<Key, Vec<ServerRef>> = HashMap::new();
    let mut all: HashMap<Key, Vec<ServerRef>> = HashMap::new();
    for (g, gw) in gateways.iter().enumerate() {
        for (s, server) in gw.spec.servers.iter().enumerate() {
            let Some(port) = &server.port else { continue };
            let key = (port.number, server.bind.as_deref().unwrap_or(""));
            for (h, text) in server.hosts.iter().enumerate() {
                let host = ServerHost::parse(text, &gw.meta.namespace).host;
                let make = || ServerRef {
                    gw: g,
                    server: s,
                    host: h,
                    pattern: host.clone(),
                    name: text,
                    protocol: &port.protocol,
                };
                if host.is_wildcard() {
                    wild.entry(key).or_default().push(make());
                } else if let HostPattern::Exact(name) = &host {
                    exact.entry((key, name.clone())).or_default().push(make());
                }
                all.entry(key).or_default().push(make());
            }
        }
    }
    let mut reported: HashSet<(usize, usize, usize)> = HashSet::new();
    let mut pairs: Vec<(&ServerRef, &ServerRef, u32)> = Vec::new();
    for (((port, _), _), refs) in &exact {
        for (i, a) in refs.iter().enumerate() {
            for b in &refs[i + 1..] {
                pairs.push((a, b, *port));
            }
        }
    }
    for ((port, bind), refs) in &wild {
        for w in refs {
            for other in &all[&(*port, *bind)] {
                let w_first = (w.gw, w.server, w.host) < (other.gw, other.server, other.host);
                if other.pattern.is_wildcard() && !w_first {
                    continue; // each wildcard pair once
                }
                if std::ptr::eq(w, other) || !w.pattern.matches(&other.pattern) {
                    continue;
                }
                pairs.push((w, other, *port));
            }
        }
    }
    pairs.sort_by_key(|(a, b, _)| {
        let (x, y) = if (a.gw, a.server) <= (b.gw, b.server) {
            (a, b)
        } else {
            (b, a)
        };
        (y.gw, y.server, y.host, x.gw, x.server)
    });
    for (a, b, port) in pairs {
        let (first, later) = if (a.gw, a.server) <= (b.gw, b.server) {
            (a, b)
        } else {
            (b, a)
        };
        if first.gw == later.gw {
            continue;
        }
        // Plain HTTP servers on one port share one route table: their hosts merge, no conflict.
        let http = |p: &str| Protocol::parse(p).is_some_and(Protocol::is_http);
        if http(first.protocol) && http(later.protocol) {
            continue;
        }
        let (gf, gl) = (&gateways[first.gw], &gateways[later.gw]);
        if !selectors_overlap(&gf.spec.selector, &gl.spec.selector) {
            continue;
        }
        if !reported.insert((later.gw, later.server, first.gw)) {
            continue;
        }
        gl.reporter(out).finding(
            Severity::Warning,
            code::CONFLICTING_GATEWAYS,
            format!("spec.servers[{}].hosts[{}]", later.server, later.host),
            format!(
                "conflicting gateways: host `{}` on port {port} ({}) is also served by Gateway {} (spec.servers[{}], {}, host `{}`) and both select the same gateway instances; only one of them takes effect (expected each host once per port, or selectors that pick different instances)",
                later.name,
                later.protocol,
                gf.key(),
                first.server,
                first.protocol,
                first.name
            ),
        );
    }
    check_duplicate_certificates(gateways, out);
}

/// The certificate a terminating server presents, as a comparable key.
fn certificate_key(tls: &ServerTls) -> Option<String> {
    if !matches!(
        tls.mode(),
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    ) {
        return None;
    }
    if let Some(c) = tls.credential_name.as_deref().filter(|c| !c.is_empty()) {
        return Some(format!("credentialName `{c}`"));
    }
    match (
        tls.server_certificate.as_deref(),
        tls.private_key.as_deref(),
    ) {
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => {
            Some(format!("serverCertificate `{c}`"))
        }
        _ => None,
    }
}

fn check_duplicate_certificates(
    gateways: &[std::sync::Arc<Resource<Gateway>>],
    out: &mut Vec<Diagnostic>,
) {
    let mut by_cert: HashMap<(u32, String), Vec<(usize, usize)>> = HashMap::new();
    for (g, gw) in gateways.iter().enumerate() {
        for (s, server) in gw.spec.servers.iter().enumerate() {
            let (Some(port), Some(tls)) = (&server.port, &server.tls) else {
                continue;
            };
            if let Some(cert) = certificate_key(tls) {
                by_cert.entry((port.number, cert)).or_default().push((g, s));
            }
        }
    }
    let mut findings = Vec::new();
    for ((port, cert), servers) in &by_cert {
        for (i, &(g2, s2)) in servers.iter().enumerate() {
            let first = servers[..i].iter().find(|&&(g1, _)| {
                g1 != g2
                    && selectors_overlap(&gateways[g1].spec.selector, &gateways[g2].spec.selector)
            });
            if let Some(&(g1, s1)) = first {
                findings.push((g2, s2, g1, s1, *port, cert.clone()));
            }
        }
    }
    findings.sort();
    for (g2, s2, g1, s1, port, cert) in findings {
        gateways[g2].reporter(out).finding(
            Severity::Warning,
            code::GATEWAY_DUPLICATE_CERTIFICATE,
            format!("spec.servers[{s2}].tls"),
            format!(
                "duplicate certificate: this server uses the same certificate ({cert}) on port {port} as Gateway {} spec.servers[{s1}]; HTTP/2 clients reuse one connection for the hosts of both and get 421 Misdirected Request from Portcullis for the other server's hosts (expected one server listing all hosts of a certificate)",
                gateways[g1].key()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::diags;

    const TWO_GATEWAYS: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: beta}
spec:
  selector: {istio: ingressgateway, app: x}
  servers:
  - port: {number: 80, name: tcp, protocol: TCP}
    hosts: [foo.bar]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: alpha}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*.bar\"]
  - port: {number: 81, name: http2, protocol: HTTP}
    hosts: [foo.bar]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gamma}
spec:
  servers:
  - port: {number: 81, name: http, protocol: HTTP}
    hosts: [foo.bar]
";

    #[test]
    fn conflicting_gateways_warn() {
        assert_eq!(
            diags(TWO_GATEWAYS),
            ["t.yaml:17: Warning [IST0145] Gateway default/alpha: spec.servers[0].hosts[0]: conflicting gateways: host `*.bar` on port 80 (HTTP) is also served by Gateway default/beta (spec.servers[0], TCP, host `foo.bar`) and both select the same gateway instances; only one of them takes effect (expected each host once per port, or selectors that pick different instances)"]
        );
        // gamma (every instance) and alpha share port 81, but plain HTTP servers merge.
        // Selectors that cannot pick the same instance do not conflict.
        assert!(
            diags(&TWO_GATEWAYS.replace("{istio: ingressgateway}\n", "{istio: other}\n"))
                .is_empty()
        );
    }

    #[test]
    fn duplicate_certificates_warn() {
        let gw = |name: &str, host: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [{host}]\n    tls: {{mode: SIMPLE, credentialName: wildcard-cert}}\n")
        };
        assert_eq!(
            diags(&format!("{}---\n{}", gw("one", "a.example.com"), gw("two", "b.example.com"))),
            ["t.yaml:17: Warning [IST0138] Gateway default/two: spec.servers[0].tls: duplicate certificate: this server uses the same certificate (credentialName `wildcard-cert`) on port 443 as Gateway default/one spec.servers[0]; HTTP/2 clients reuse one connection for the hosts of both and get 421 Misdirected Request from Portcullis for the other server's hosts (expected one server listing all hosts of a certificate)"]
        );
    }
}
