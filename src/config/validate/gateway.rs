//! Gateway: servers, ports, hosts and server TLS (Istio `ValidateGateway`), plus the analyzer
//! findings across Gateways (IST0145 conflicting servers, IST0138 shared certificates).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::rules::{self, check_port, is_dns1123_label, is_ip, is_partial_wildcard};
use crate::config::diag::{Diagnostic, Reporter};
use crate::config::host::{HostPattern, ServerHost};
use crate::config::load::Resource;
use crate::config::types::{
    Gateway, Protocol, Server, ServerTls, ServerTlsMode, TlsProtocolVersion,
};

const PROTOCOLS: &str = "HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL";

pub(super) fn check(gw: &Resource<Gateway>, out: &mut Vec<Diagnostic>) {
    let mut r = gw.reporter(out);
    if !is_dns1123_label(&gw.meta.name) {
        r.error(
            "metadata.name",
            format!(
                "invalid gateway name `{}` (expected a DNS-1123 label: letters, digits and '-', at most 63 characters, no dots)",
                gw.meta.name
            ),
        );
    }
    let spec = &gw.spec;
    if spec.servers.is_empty() {
        r.error(
            "spec.servers",
            "Required value: gateway must have at least one server (expected servers with a port and hosts)",
        );
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let base = format!("spec.servers[{i}]");
        check_server(&mut r, &base, server);
        if let Some(port) = &server.port {
            if !port.name.is_empty() {
                if let Some(first) = port_names.get(port.name.as_str()) {
                    r.error(
                        format!("{base}.port.name"),
                        format!(
                            "Duplicate value: port name `{}` is already used by spec.servers[{first}] (expected port names unique within a Gateway)",
                            port.name
                        ),
                    );
                } else {
                    port_names.insert(&port.name, i);
                }
            }
        }
    }
}

fn check_server(r: &mut Reporter, base: &str, server: &Server) {
    if server.hosts.is_empty() {
        r.error(
            format!("{base}.hosts"),
            "Required value: server config must contain at least one host (expected e.g. `example.com`, `*.example.com` or `*`)",
        );
    }
    for (j, host) in server.hosts.iter().enumerate() {
        if let Err(m) = check_server_host(host) {
            r.error(format!("{base}.hosts[{j}]"), m);
        }
    }
    let bind = server.bind.as_deref().unwrap_or("");
    let unix_bind = bind.strip_prefix("unix://");
    let protocol = match &server.port {
        None => {
            r.error(
                format!("{base}.port"),
                "Required value: port is required (expected number, protocol and name)",
            );
            None
        }
        Some(port) => {
            let protocol = if port.protocol.is_empty() {
                r.error(
                    format!("{base}.port.protocol"),
                    format!("Required value: port protocol is required (expected {PROTOCOLS})"),
                );
                None
            } else {
                let p = Protocol::parse(&port.protocol);
                if p.is_none() {
                    r.error(
                        format!("{base}.port.protocol"),
                        format!(
                            "invalid protocol `{}` (expected {PROTOCOLS})",
                            port.protocol
                        ),
                    );
                }
                p
            };
            if port.number > 0 || unix_bind.is_none() {
                if check_port(port.number).is_err() {
                    r.error(
                        format!("{base}.port.number"),
                        format!(
                            "port number {} is out of range (expected 1-65535, or 0 with a unix:// bind)",
                            port.number
                        ),
                    );
                } else if unix_bind.is_some() {
                    r.error(
                        format!("{base}.port.number"),
                        format!(
                            "port number must be 0 for a unix domain socket bind, not {} (expected 0)",
                            port.number
                        ),
                    );
                }
            }
            if port.target_port.is_some_and(|t| t > 0) {
                r.error(
                    format!("{base}.port.targetPort"),
                    "targetPort has no impact on Gateways (remove it; the gateway listens on port.number)",
                );
            }
            if port.name.is_empty() {
                r.error(
                    format!("{base}.port.name"),
                    "Required value: port name must be set (expected e.g. http or https-443)",
                );
            }
            protocol
        }
    };
    if let Some(path) = unix_bind {
        if let Err(m) = rules::check_unix_address(path) {
            r.error(format!("{base}.bind"), m);
        }
    } else if !bind.is_empty() && !is_ip(bind) {
        r.error(
            format!("{base}.bind"),
            format!("bind `{bind}` is not an IP address (expected an IP such as 0.0.0.0, or unix:///path)"),
        );
    }
    check_server_tls(r, base, server, protocol);
}

/// `[namespace/]host` in `server.hosts`.
fn check_server_host(text: &str) -> Result<(), String> {
    let host = match text.split_once('/') {
        Some((ns, host)) => {
            if ns.is_empty() || host.is_empty() {
                return Err(format!(
                    "host `{text}` has an empty namespace or name (expected `namespace/host`)"
                ));
            }
            if ns != "*" && ns != "." && !is_dns1123_label(ns) {
                return Err(format!(
                    "invalid namespace `{ns}` in host `{text}` (expected `*`, `.` or a namespace name)"
                ));
            }
            host
        }
        None => text,
    };
    if host == "*" || is_ip(host) {
        return Ok(());
    }
    if is_partial_wildcard(host) {
        return Err(format!(
            "partial wildcard `{host}` is not allowed (expected `*` or a whole leftmost `*.` label, such as `*.example.com`)"
        ));
    }
    if !host.contains('.') {
        return Err(format!(
            "a gateway host must be a fully qualified domain name: `{host}` is a short name (expected e.g. `{host}.example.com` or `*`)"
        ));
    }
    rules::check_wildcard_domain(host)
}

fn has_cert_fields(tls: &ServerTls) -> bool {
    tls.server_certificate.is_some()
        || tls.private_key.is_some()
        || tls.ca_certificates.is_some()
        || tls.ca_crl.is_some()
        || tls.credential_name.is_some()
        || !tls.credential_names.is_empty()
        || !tls.tls_certificates.is_empty()
}

/// Anything in `tls` beyond `httpsRedirect`.
fn has_tls_settings(tls: &ServerTls) -> bool {
    *tls != ServerTls {
        https_redirect: tls.https_redirect,
        ..ServerTls::default()
    }
}

fn mode_name(mode: ServerTlsMode) -> &'static str {
    match mode {
        ServerTlsMode::Passthrough => "PASSTHROUGH",
        ServerTlsMode::Simple => "SIMPLE",
        ServerTlsMode::Mutual => "MUTUAL",
        ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
        ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
        ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
    }
}

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn check_server_tls(r: &mut Reporter, base: &str, server: &Server, protocol: Option<Protocol>) {
    let tls_path = format!("{base}.tls");
    let is_tls = matches!(protocol, Some(Protocol::Https | Protocol::Tls));
    let Some(tls) = &server.tls else {
        if is_tls {
            r.error(
                tls_path,
                "Required value: server must have TLS settings for HTTPS/TLS protocols (expected tls.mode SIMPLE or MUTUAL with a certificate, or PASSTHROUGH)",
            );
        }
        return;
    };
    if tls.https_redirect && !protocol.is_some_and(Protocol::is_http) {
        r.warn(
            format!("{tls_path}.httpsRedirect"),
            "tls.httpsRedirect should only be used with HTTP servers; it is ignored here (expected it on a plain HTTP server)",
        );
    }
    match protocol {
        None => return,
        Some(p) if p.is_http() => {
            if has_tls_settings(tls) {
                r.error(
                    tls_path,
                    format!(
                        "server cannot have TLS settings for plain text {p} ports (expected only tls.httpsRedirect, or protocol HTTPS)"
                    ),
                );
            }
            return;
        }
        Some(p) if !is_tls => {
            if has_tls_settings(tls) {
                r.error(
                    tls_path,
                    format!(
                        "server cannot have TLS settings for non HTTPS/TLS ports ({p}) (expected protocol HTTPS or TLS)"
                    ),
                );
            }
            return;
        }
        Some(_) => {}
    }
    let mode = tls.mode();
    let mode_path = format!("{tls_path}.mode");
    match mode {
        ServerTlsMode::IstioMutual => {
            r.error(
                mode_path,
                "ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have (use MUTUAL with caCertificates or credentialName)",
            );
            return;
        }
        ServerTlsMode::AutoPassthrough => {
            r.error(
                mode_path,
                "AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported (use PASSTHROUGH with VirtualService tls routes)",
            );
            return;
        }
        ServerTlsMode::Passthrough => {
            if has_cert_fields(tls) {
                r.warn(
                    tls_path.clone(),
                    "PASSTHROUGH mode does not use certificates, they will be ignored (expected mode SIMPLE or MUTUAL to terminate TLS)",
                );
            }
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            check_cert_sources(r, &tls_path, tls, mode);
        }
    }
    let mutual = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version) {
        if min != TlsProtocolVersion::Auto && max != TlsProtocolVersion::Auto && max < min {
            r.error(
                format!("{tls_path}.maxProtocolVersion"),
                format!(
                    "maxProtocolVersion {} is below minProtocolVersion {} (expected max >= min)",
                    version_name(max),
                    version_name(min)
                ),
            );
        }
    }
    if matches!(
        tls.min_protocol_version,
        Some(TlsProtocolVersion::V1_0 | TlsProtocolVersion::V1_1)
    ) && tls.cipher_suites.is_empty()
    {
        r.warn(
            format!("{tls_path}.minProtocolVersion"),
            "TLS versions below TLSV1_2 need cipherSuites that support them; the default suites do not (expected cipherSuites, or TLSV1_2)",
        );
    }
    if !mutual {
        for (field, set) in [
            ("subjectAltNames", !tls.subject_alt_names.is_empty()),
            (
                "verifyCertificateSpki",
                !tls.verify_certificate_spki.is_empty(),
            ),
            (
                "verifyCertificateHash",
                !tls.verify_certificate_hash.is_empty(),
            ),
        ] {
            if set {
                r.warn(
                    format!("{tls_path}.{field}"),
                    format!(
                        "{field} checks client certificates, which only MUTUAL and OPTIONAL_MUTUAL request; it is ignored in {} mode",
                        mode_name(mode)
                    ),
                );
            }
        }
    }
}

fn version_name(v: TlsProtocolVersion) -> &'static str {
    match v {
        TlsProtocolVersion::Auto => "TLS_AUTO",
        TlsProtocolVersion::V1_0 => "TLSV1_0",
        TlsProtocolVersion::V1_1 => "TLSV1_1",
        TlsProtocolVersion::V1_2 => "TLSV1_2",
        TlsProtocolVersion::V1_3 => "TLSV1_3",
    }
}

/// SIMPLE / MUTUAL / OPTIONAL_MUTUAL: exactly one certificate source, a CA for mutual modes,
/// and no CRL where it cannot apply.
fn check_cert_sources(r: &mut Reporter, tls_path: &str, tls: &ServerTls, mode: ServerTlsMode) {
    let name = mode_name(mode);
    let files = set(&tls.server_certificate) || set(&tls.private_key);
    let mut sources = Vec::new();
    if files {
        sources.push("serverCertificate/privateKey");
    }
    if set(&tls.credential_name) {
        sources.push("credentialName");
    }
    if !tls.credential_names.is_empty() {
        sources.push("credentialNames");
    }
    if !tls.tls_certificates.is_empty() {
        sources.push("tlsCertificates");
    }
    match sources.len() {
        0 => r.error(
            tls_path,
            format!(
                "{name} TLS requires a server certificate (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"
            ),
        ),
        1 => {}
        _ => r.error(
            tls_path,
            format!(
                "only one certificate source may be set, found {} (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)",
                sources.join(" and ")
            ),
        ),
    }
    if files {
        if !set(&tls.server_certificate) {
            r.error(
                format!("{tls_path}.serverCertificate"),
                format!("Required value: {name} TLS with privateKey also needs serverCertificate (expected a PEM file path)"),
            );
        }
        if !set(&tls.private_key) {
            r.error(
                format!("{tls_path}.privateKey"),
                format!("Required value: {name} TLS with serverCertificate also needs privateKey (expected a PEM file path)"),
            );
        }
    }
    if tls.credential_names.len() > 2 {
        r.error(
            format!("{tls_path}.credentialNames"),
            format!(
                "{} credentialNames given (expected at most 2: one RSA and one ECDSA certificate)",
                tls.credential_names.len()
            ),
        );
    }
    if tls.tls_certificates.len() > 2 {
        r.error(
            format!("{tls_path}.tlsCertificates"),
            format!(
                "{} tlsCertificates given (expected at most 2: one RSA and one ECDSA certificate)",
                tls.tls_certificates.len()
            ),
        );
    }
    for (k, c) in tls.tls_certificates.iter().enumerate() {
        for (field, v) in [
            ("serverCertificate", &c.server_certificate),
            ("privateKey", &c.private_key),
        ] {
            if !set(v) {
                r.error(
                    format!("{tls_path}.tlsCertificates[{k}].{field}"),
                    format!("Required value: each tlsCertificates entry needs {field} (expected a PEM file path)"),
                );
            }
        }
    }
    let credential = set(&tls.credential_name) || !tls.credential_names.is_empty();
    if matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) {
        let ca = set(&tls.ca_certificates)
            || set(&tls.ca_cert_credential_name)
            || tls.tls_certificates.iter().any(|c| set(&c.ca_certificates));
        if !ca && !credential {
            r.error(
                format!("{tls_path}.caCertificates"),
                format!(
                    "Required value: {name} TLS requires a client CA bundle (expected caCertificates, or a credentialName whose secret holds ca.crt)"
                ),
            );
        }
    }
    if set(&tls.ca_crl) {
        if credential {
            r.error(
                format!("{tls_path}.caCrl"),
                "CRL is not supported with credentialName (expected the CRL inside the credential, as ca.crl)",
            );
        }
        if mode == ServerTlsMode::Simple {
            r.error(
                format!("{tls_path}.caCrl"),
                "CRL is not supported with SIMPLE TLS: no client certificate is requested (expected mode MUTUAL or OPTIONAL_MUTUAL)",
            );
        }
    }
}

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
pub(super) fn check_conflicts(
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
        gl.reporter(out).warn(
            format!("spec.servers[{}].hosts[{}]", later.server, later.host),
            format!(
                "IST0145 conflicting gateways: host `{}` on port {port} ({}) is also served by Gateway {} (spec.servers[{}], {}, host `{}`) and both select the same gateway instances; only one of them takes effect (expected each host once per port, or selectors that pick different instances)",
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
        gateways[g2].reporter(out).warn(
            format!("spec.servers[{s2}].tls"),
            format!(
                "IST0138 duplicate certificate: this server uses the same certificate ({cert}) on port {port} as Gateway {} spec.servers[{s1}]; HTTP/2 clients reuse one connection for the hosts of both and get 421 Misdirected Request from Portcullis for the other server's hosts (expected one server listing all hosts of a certificate)",
                gateways[g1].key()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{clean, diags, expect};

    const GW: &str = "Gateway";

    fn http_server(extra: &str) -> String {
        format!("servers:\n- port: {{number: 80, name: http, protocol: HTTP}}\n  hosts: [a.example.com]\n{extra}")
    }

    #[test]
    fn a_plain_gateway_is_clean() {
        clean(GW, "gw", &http_server(""));
        clean(
            GW,
            "gw",
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"ns/*.example.com\", \"./b.example.com\", \"*/*\", 10.0.0.1]\n  tls: {mode: SIMPLE, credentialName: c}\n",
        );
    }

    #[test]
    fn name_and_servers() {
        expect(
            GW,
            "my.gw",
            &[(
                &http_server(""),
                &["t.yaml:3: Gateway default/my.gw: metadata.name: invalid gateway name `my.gw` (expected a DNS-1123 label: letters, digits and '-', at most 63 characters, no dots)"],
            )],
        );
        expect(
            GW,
            "gw",
            &[(
                "selector: {istio: ingressgateway}\n",
                &["t.yaml:4: Gateway default/gw: spec.servers: Required value: gateway must have at least one server (expected servers with a port and hosts)"],
            )],
        );
    }

    #[test]
    fn server_hosts() {
        let case = |host: &str| {
            format!("servers:\n- port: {{number: 80, name: http, protocol: HTTP}}\n  hosts:\n  - \"{host}\"\n")
        };
        expect(
            GW,
            "gw",
            &[
                (
                    &case("*foo.com"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].hosts[0]: partial wildcard `*foo.com` is not allowed (expected `*` or a whole leftmost `*.` label, such as `*.example.com`)"],
                ),
                (
                    &case("foo.*.com"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].hosts[0]: partial wildcard `foo.*.com` is not allowed (expected `*` or a whole leftmost `*.` label, such as `*.example.com`)"],
                ),
                (
                    &case("reviews"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].hosts[0]: a gateway host must be a fully qualified domain name: `reviews` is a short name (expected e.g. `reviews.example.com` or `*`)"],
                ),
                (
                    &case("bad_ns/a.com"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].hosts[0]: invalid namespace `bad_ns` in host `bad_ns/a.com` (expected `*`, `.` or a namespace name)"],
                ),
                (
                    &case("a..com"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].hosts[0]: domain name `a..com` is invalid: label `` (expected labels of letters, digits and '-', at most 63 characters each)"],
                ),
            ],
        );
        expect(
            GW,
            "gw",
            &[(
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n",
                &["t.yaml:6: Gateway default/gw: spec.servers[0].hosts: Required value: server config must contain at least one host (expected e.g. `example.com`, `*.example.com` or `*`)"],
            )],
        );
    }

    #[test]
    fn ports() {
        expect(
            GW,
            "gw",
            &[
                (
                    "servers:\n- hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].port: Required value: port is required (expected number, protocol and name)"],
                ),
                (
                    "servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].port.number: port number 0 is out of range (expected 1-65535, or 0 with a unix:// bind)"],
                ),
                (
                    "servers:\n- port: {number: 70000, name: http, protocol: HTTP}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].port.number: port number 70000 is out of range (expected 1-65535, or 0 with a unix:// bind)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n    protocol: SMTP\n  hosts: [a.com]\n",
                    &["t.yaml:9: Gateway default/gw: spec.servers[0].port.protocol: invalid protocol `SMTP` (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n  hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].port.protocol: Required value: port protocol is required (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    protocol: HTTP\n  hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].port.name: Required value: port name must be set (expected e.g. http or https-443)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n    protocol: HTTP\n    targetPort: 8080\n  hosts: [a.com]\n",
                    &["t.yaml:10: Gateway default/gw: spec.servers[0].port.targetPort: targetPort has no impact on Gateways (remove it; the gateway listens on port.number)"],
                ),
                (
                    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.com]\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: [b.com]\n",
                    &["t.yaml:8: Gateway default/gw: spec.servers[1].port.name: Duplicate value: port name `http` is already used by spec.servers[0] (expected port names unique within a Gateway)"],
                ),
            ],
        );
    }

    #[test]
    fn binds() {
        clean(GW, "gw", "servers:\n- port: {number: 0, name: uds, protocol: HTTP}\n  bind: unix:///var/run/gw.sock\n  hosts: [a.com]\n");
        expect(
            GW,
            "gw",
            &[
                (
                    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: localhost\n  hosts: [a.com]\n",
                    &["t.yaml:7: Gateway default/gw: spec.servers[0].bind: bind `localhost` is not an IP address (expected an IP such as 0.0.0.0, or unix:///path)"],
                ),
                (
                    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: unix://relative.sock\n  hosts: [a.com]\n",
                    &[
                        "t.yaml:6: Gateway default/gw: spec.servers[0].port.number: port number must be 0 for a unix domain socket bind, not 80 (expected 0)",
                        "t.yaml:7: Gateway default/gw: spec.servers[0].bind: `relative.sock` is not an absolute path to a socket file (expected unix:///path/to/socket or unix://@name)",
                    ],
                ),
            ],
        );
    }

    fn https(tls: &str) -> String {
        format!("servers:\n- port: {{number: 443, name: https, protocol: HTTPS}}\n  hosts: [a.com]\n  tls:\n{tls}")
    }

    #[test]
    fn server_tls_presence() {
        expect(
            GW,
            "gw",
            &[
                (
                    "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Gateway default/gw: spec.servers[0].tls: Required value: server must have TLS settings for HTTPS/TLS protocols (expected tls.mode SIMPLE or MUTUAL with a certificate, or PASSTHROUGH)"],
                ),
                (
                    &http_server("  tls: {httpsRedirect: true, mode: SIMPLE}\n"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls: server cannot have TLS settings for plain text HTTP ports (expected only tls.httpsRedirect, or protocol HTTPS)"],
                ),
                (
                    "servers:\n- port: {number: 9000, name: tcp, protocol: TCP}\n  hosts: [a.com]\n  tls:\n    httpsRedirect: true\n",
                    &["t.yaml:9: warning: Gateway default/gw: spec.servers[0].tls.httpsRedirect: tls.httpsRedirect should only be used with HTTP servers; it is ignored here (expected it on a plain HTTP server)"],
                ),
                (
                    "servers:\n- port: {number: 9000, name: tcp, protocol: TCP}\n  hosts: [a.com]\n  tls: {mode: SIMPLE}\n",
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls: server cannot have TLS settings for non HTTPS/TLS ports (TCP) (expected protocol HTTPS or TLS)"],
                ),
            ],
        );
        clean(GW, "gw", &http_server("  tls: {httpsRedirect: true}\n"));
        clean(GW, "gw", &https("    mode: PASSTHROUGH\n"));
    }

    #[test]
    fn server_tls_modes() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: ISTIO_MUTUAL\n"),
                    &["t.yaml:9: Gateway default/gw: spec.servers[0].tls.mode: ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have (use MUTUAL with caCertificates or credentialName)"],
                ),
                (
                    &https("    mode: AUTO_PASSTHROUGH\n"),
                    &["t.yaml:9: Gateway default/gw: spec.servers[0].tls.mode: AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported (use PASSTHROUGH with VirtualService tls routes)"],
                ),
                (
                    &https("    credentialName: c\n"),
                    &["t.yaml:8: warning: Gateway default/gw: spec.servers[0].tls: PASSTHROUGH mode does not use certificates, they will be ignored (expected mode SIMPLE or MUTUAL to terminate TLS)"],
                ),
            ],
        );
    }

    #[test]
    fn server_tls_certificates() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: SIMPLE\n"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls: SIMPLE TLS requires a server certificate (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls: only one certificate source may be set, found serverCertificate/privateKey and credentialName (expected exactly one of serverCertificate with privateKey, credentialName, credentialNames or tlsCertificates)"],
                ),
                (
                    &https("    mode: SIMPLE\n    serverCertificate: /c.pem\n"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls.privateKey: Required value: SIMPLE TLS with serverCertificate also needs privateKey (expected a PEM file path)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialNames: [a, b, c]\n"),
                    &["t.yaml:10: Gateway default/gw: spec.servers[0].tls.credentialNames: 3 credentialNames given (expected at most 2: one RSA and one ECDSA certificate)"],
                ),
                (
                    &https("    mode: SIMPLE\n    tlsCertificates:\n    - serverCertificate: /rsa.pem\n"),
                    &["t.yaml:11: Gateway default/gw: spec.servers[0].tls.tlsCertificates[0].privateKey: Required value: each tlsCertificates entry needs privateKey (expected a PEM file path)"],
                ),
                (
                    &https("    mode: MUTUAL\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n"),
                    &["t.yaml:8: Gateway default/gw: spec.servers[0].tls.caCertificates: Required value: MUTUAL TLS requires a client CA bundle (expected caCertificates, or a credentialName whose secret holds ca.crt)"],
                ),
                (
                    &https("    mode: SIMPLE\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n    caCrl: /crl.pem\n"),
                    &["t.yaml:12: Gateway default/gw: spec.servers[0].tls.caCrl: CRL is not supported with SIMPLE TLS: no client certificate is requested (expected mode MUTUAL or OPTIONAL_MUTUAL)"],
                ),
                (
                    &https("    mode: MUTUAL\n    credentialName: c\n    caCrl: /crl.pem\n"),
                    &["t.yaml:11: Gateway default/gw: spec.servers[0].tls.caCrl: CRL is not supported with credentialName (expected the CRL inside the credential, as ca.crl)"],
                ),
            ],
        );
        clean(
            GW,
            "gw",
            &https("    mode: OPTIONAL_MUTUAL\n    credentialName: c\n"),
        );
        clean(GW, "gw", &https("    mode: MUTUAL\n    serverCertificate: /c.pem\n    privateKey: /k.pem\n    caCertificates: /ca.pem\n    subjectAltNames: [client]\n"));
    }

    #[test]
    fn server_tls_versions_and_client_checks() {
        expect(
            GW,
            "gw",
            &[
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    minProtocolVersion: TLSV1_3\n    maxProtocolVersion: TLSV1_2\n"),
                    &["t.yaml:12: Gateway default/gw: spec.servers[0].tls.maxProtocolVersion: maxProtocolVersion TLSV1_2 is below minProtocolVersion TLSV1_3 (expected max >= min)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    minProtocolVersion: TLSV1_0\n"),
                    &["t.yaml:11: warning: Gateway default/gw: spec.servers[0].tls.minProtocolVersion: TLS versions below TLSV1_2 need cipherSuites that support them; the default suites do not (expected cipherSuites, or TLSV1_2)"],
                ),
                (
                    &https("    mode: SIMPLE\n    credentialName: c\n    subjectAltNames: [x]\n"),
                    &["t.yaml:11: warning: Gateway default/gw: spec.servers[0].tls.subjectAltNames: subjectAltNames checks client certificates, which only MUTUAL and OPTIONAL_MUTUAL request; it is ignored in SIMPLE mode"],
                ),
            ],
        );
    }

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
            ["t.yaml:17: warning: Gateway default/alpha: spec.servers[0].hosts[0]: IST0145 conflicting gateways: host `*.bar` on port 80 (HTTP) is also served by Gateway default/beta (spec.servers[0], TCP, host `foo.bar`) and both select the same gateway instances; only one of them takes effect (expected each host once per port, or selectors that pick different instances)"]
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
            ["t.yaml:17: warning: Gateway default/two: spec.servers[0].tls: IST0138 duplicate certificate: this server uses the same certificate (credentialName `wildcard-cert`) on port 443 as Gateway default/one spec.servers[0]; HTTP/2 clients reuse one connection for the hosts of both and get 421 Misdirected Request from Portcullis for the other server's hosts (expected one server listing all hosts of a certificate)"]
        );
    }
}
