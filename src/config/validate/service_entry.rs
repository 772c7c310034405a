//! ServiceEntry: hosts, addresses, ports, resolution and endpoints (Istio
//! `ValidateServiceEntry`).

use std::collections::HashMap;

use super::rules::{self, check_port, is_dns1123_label, is_ip, is_partial_wildcard};
use crate::config::diag::Diagnostic;
use crate::config::load::Resource;
use crate::config::types::{Protocol, Resolution, ServiceEntry};

const MAX_HOSTS: usize = 256;

pub(super) fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}

/// The port's protocol; `None` when unset or empty (Istio: protocol sniffing).
pub(super) fn port_protocol(p: &Option<String>) -> Option<&str> {
    p.as_deref().filter(|s| !s.is_empty())
}

pub(super) fn check(se: &Resource<ServiceEntry>, out: &mut Vec<Diagnostic>) {
    let mut r = se.reporter(out);
    let spec = &se.spec;
    let resolution = spec.resolution();
    let res_name = resolution_name(resolution);
    if spec.hosts.is_empty() {
        r.error(
            "spec.hosts",
            "Required value: service entry must have at least one host (expected e.g. api.example.com)",
        );
    }
    if spec.hosts.len() > MAX_HOSTS {
        r.error(
            "spec.hosts",
            format!(
                "{} hosts listed (expected at most {MAX_HOSTS})",
                spec.hosts.len()
            ),
        );
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if h == "*" {
            r.error(
                p,
                "hostname cannot be wildcard: `*` would capture every host (expected an FQDN or a wildcard such as *.example.com)",
            );
            continue;
        }
        if let Err(m) = rules::check_wildcard_domain(h) {
            r.error(p, format!("invalid host: {m}"));
            continue;
        }
        if is_partial_wildcard(h) {
            let msg = format!("partial wildcard `{h}` (expected `*.` as the whole leftmost label)");
            if resolution == Resolution::DynamicDns {
                r.error(p, msg);
            } else {
                r.warn(
                    p,
                    format!("{msg}; Istio accepts it but it rarely matches what was meant"),
                );
            }
        }
    }

    let mut cidr_at = None;
    for (i, a) in spec.addresses.iter().enumerate() {
        if let Err(m) = rules::check_ip_or_cidr(a) {
            r.error(
                format!("spec.addresses[{i}]"),
                format!("Invalid value: {m}"),
            );
        } else if a.contains('/') && cidr_at.is_none() {
            cidr_at = Some(i);
        }
    }
    if let Some(i) = cidr_at {
        if !matches!(resolution, Resolution::None | Resolution::Static) {
            r.error(
                format!("spec.addresses[{i}]"),
                format!("CIDR addresses are allowed only for NONE/STATIC resolution types (resolution is {res_name})"),
            );
        }
    }

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut numbers: HashMap<u32, usize> = HashMap::new();
    for (k, port) in spec.ports.iter().enumerate() {
        let p = format!("spec.ports[{k}]");
        if port.name.is_empty() {
            r.error(
                format!("{p}.name"),
                "Required value: port name is required (expected e.g. http or tcp-5432)",
            );
        } else if let Some(first) = names.get(port.name.as_str()) {
            r.error(
                format!("{p}.name"),
                format!(
                    "Duplicate value: port name `{}` is already used by spec.ports[{first}] (expected unique port names)",
                    port.name
                ),
            );
        } else {
            names.insert(&port.name, k);
            if !is_dns1123_label(&port.name) {
                r.error(
                    format!("{p}.name"),
                    format!(
                        "invalid port name `{}` (expected a DNS-1123 label)",
                        port.name
                    ),
                );
            }
        }
        if check_port(port.number).is_err() {
            r.error(
                format!("{p}.number"),
                format!("port must be between 1-65535, got {}", port.number),
            );
        } else if let Some(first) = numbers.get(&port.number) {
            r.error(
                format!("{p}.number"),
                format!(
                    "port number cannot be duplicated: {} is already used by spec.ports[{first}] (expected each port number once)",
                    port.number
                ),
            );
        } else {
            numbers.insert(port.number, k);
        }
        if let Some(t) = port.target_port.filter(|t| *t != 0) {
            if check_port(t).is_err() {
                r.error(
                    format!("{p}.targetPort"),
                    format!("port must be between 1-65535, got targetPort {t}"),
                );
            } else if resolution == Resolution::None {
                r.warn(
                    format!("{p}.targetPort"),
                    "targetPort has no effect when resolution mode is NONE: traffic goes to the port the client dialled (expected resolution STATIC or DNS)",
                );
            }
        }
        if let Some(proto) = port_protocol(&port.protocol) {
            if Protocol::parse(proto).is_none() {
                r.error(
                    format!("{p}.protocol"),
                    format!(
                        "unsupported protocol `{proto}` (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)"
                    ),
                );
            }
        }
    }

    if let Some(sel) = &spec.workload_selector {
        rules::check_selector_labels(&mut r, "spec.workloadSelector.labels", &sel.labels);
        if !spec.endpoints.is_empty() {
            r.error(
                "spec.workloadSelector",
                "only one of WorkloadSelector or Endpoints can be set (expected endpoints for a standalone gateway)",
            );
        } else {
            r.note(
                "spec.workloadSelector",
                "workloadSelector is mesh only: it selects pods or WorkloadEntries, so a standalone gateway has no endpoints for this ServiceEntry (expected endpoints, or resolution DNS)",
            );
        }
    }

    match resolution {
        Resolution::None => {
            if !spec.endpoints.is_empty() {
                r.error(
                    "spec.endpoints",
                    "NONE mode cannot set endpoints: resolution NONE forwards to the address the client dialled (expected resolution STATIC or DNS with endpoints)",
                );
            }
        }
        Resolution::Static => {
            for (k, ep) in spec.endpoints.iter().enumerate() {
                let p = format!("spec.endpoints[{k}].address");
                if let Some(path) = ep.address.strip_prefix("unix://") {
                    if let Err(m) = rules::check_unix_address(path) {
                        r.error(p, m);
                    } else if !ep.ports.is_empty() {
                        r.error(
                            format!("spec.endpoints[{k}].ports"),
                            format!(
                                "unix endpoint {} must not include ports (expected no ports)",
                                ep.address
                            ),
                        );
                    }
                } else if !is_ip(&ep.address) {
                    r.error(
                        p,
                        format!(
                            "endpoint address `{}` is not a valid IP address (expected an IP or unix:///path with resolution STATIC; use resolution DNS for host names)",
                            ep.address
                        ),
                    );
                }
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if spec.endpoints.is_empty() {
                for (i, h) in spec.hosts.iter().enumerate() {
                    if h != "*"
                        && rules::check_fqdn(h).is_err()
                        && rules::check_wildcard_domain(h).is_ok()
                    {
                        r.error(
                            format!("spec.hosts[{i}]"),
                            format!(
                                "hosts must be FQDN if no endpoints are provided for resolution mode {res_name}: `{h}` cannot be resolved (expected a host name without wildcard, or endpoints)"
                            ),
                        );
                    }
                }
            }
            if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
                r.error(
                    "spec.endpoints",
                    format!(
                        "DNS_ROUND_ROBIN mode cannot have multiple endpoints: {} given (expected 0 or 1, or resolution DNS)",
                        spec.endpoints.len()
                    ),
                );
            }
            for (k, ep) in spec.endpoints.iter().enumerate() {
                if !is_ip(&ep.address) && rules::check_fqdn(&ep.address).is_err() {
                    r.error(
                        format!("spec.endpoints[{k}].address"),
                        format!(
                            "endpoint address `{}` is not a valid FQDN or an IP address (expected e.g. api.example.com or 10.0.0.1)",
                            ep.address
                        ),
                    );
                }
            }
        }
        Resolution::DynamicDns => {
            if !spec.endpoints.is_empty() {
                r.error(
                    "spec.endpoints",
                    "DYNAMIC_DNS resolves each request's host itself and cannot set endpoints (expected no endpoints)",
                );
            }
            if !spec.addresses.is_empty() {
                r.error(
                    "spec.addresses",
                    "DYNAMIC_DNS cannot set addresses (expected no addresses)",
                );
            }
            for (i, h) in spec.hosts.iter().enumerate() {
                if !h.starts_with("*.") {
                    r.error(
                        format!("spec.hosts[{i}]"),
                        format!("DYNAMIC_DNS needs wildcard hosts, `{h}` is not one (expected e.g. *.example.com)"),
                    );
                }
            }
            for (k, port) in spec.ports.iter().enumerate() {
                let ok = port_protocol(&port.protocol)
                    .and_then(Protocol::parse)
                    .is_some_and(|p| {
                        matches!(
                            p,
                            Protocol::Http
                                | Protocol::Https
                                | Protocol::Tls
                                | Protocol::Grpc
                                | Protocol::Http2
                        )
                    });
                if !ok {
                    r.error(
                        format!("spec.ports[{k}].protocol"),
                        "DYNAMIC_DNS needs the host from the request (expected protocol HTTP, HTTP2, GRPC, HTTPS or TLS)",
                    );
                }
            }
        }
    }

    for (k, ep) in spec.endpoints.iter().enumerate() {
        if resolution == Resolution::None {
            break;
        }
        for (name, number) in &ep.ports {
            let p = format!("spec.endpoints[{k}].ports.{name}");
            if !names.contains_key(name.as_str()) {
                r.error(
                    p.clone(),
                    format!(
                        "endpoint port {name} ({number}) is not defined by the service entry (expected one of the names in spec.ports)"
                    ),
                );
            }
            if let Err(m) = check_port(*number) {
                r.error(p, m);
            }
        }
    }

    if resolution != Resolution::None && spec.hosts.len() > 1 {
        if let Some((k, port)) = spec.ports.iter().enumerate().find(|(_, port)| {
            !port_protocol(&port.protocol)
                .and_then(Protocol::parse)
                .is_some_and(|p| p.is_http() || matches!(p, Protocol::Https | Protocol::Tls))
        }) {
            r.error(
                format!("spec.ports[{k}]"),
                format!(
                    "multiple hosts provided with non-HTTP, non-TLS ports: port {} ({}) carries no host name to tell the {} hosts apart (expected one host, protocol HTTP/HTTPS/TLS, or resolution NONE)",
                    port.number,
                    port_protocol(&port.protocol).unwrap_or("protocol unset"),
                    spec.hosts.len()
                ),
            );
        }
    }
    rules::check_export_to(&mut r, "spec.exportTo", &se.meta.namespace, &spec.export_to);
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{clean, expect};

    const SE: &str = "ServiceEntry";

    fn e(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Error [IST0106] ServiceEntry default/se: {path}: {msg}")
    }

    fn w(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Warning [IST0133] ServiceEntry default/se: {path}: {msg}")
    }

    /// Portcullis' own note.
    fn n(line: u32, path: &str, msg: &str) -> String {
        format!("t.yaml:{line}: Warning ServiceEntry default/se: {path}: {msg}")
    }

    #[track_caller]
    fn check(cases: &[(&str, Vec<String>)]) {
        for (spec, lines) in cases {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            expect(SE, "se", &[(spec, &lines)]);
        }
    }

    #[test]
    fn clean_entries() {
        clean(SE, "se", "hosts: [api.example.com]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DNS\n");
        clean(
            SE,
            "se",
            "hosts: [a.example.com, b.example.com]\naddresses: [10.0.0.0/8]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nendpoints:\n- address: 10.0.0.1\n  ports: {http: 8080}\n  labels: {version: v1}\n- address: unix:///var/run/app.sock\n",
        );
    }

    #[test]
    fn hosts() {
        let many: Vec<String> = (0..257).map(|i| format!("h{i}.example.com")).collect();
        let too_many = format!("hosts: [{}]\nresolution: NONE\n", many.join(", "));
        check(&[
            (
                "ports: [{number: 80, name: http, protocol: HTTP}]\n",
                vec![e(4, "spec.hosts", "Required value: service entry must have at least one host (expected e.g. api.example.com)")],
            ),
            (
                "hosts: [\"*\"]\n",
                vec![e(5, "spec.hosts[0]", "hostname cannot be wildcard: `*` would capture every host (expected an FQDN or a wildcard such as *.example.com)")],
            ),
            (
                "hosts: [\"a..com\"]\n",
                vec![e(5, "spec.hosts[0]", "invalid host: domain name `a..com` is invalid: label `` (expected labels of letters, digits and '-', at most 63 characters each)")],
            ),
            (
                "hosts: [\"*x.example.com\"]\n",
                vec![w(5, "spec.hosts[0]", "partial wildcard `*x.example.com` (expected `*.` as the whole leftmost label); Istio accepts it but it rarely matches what was meant")],
            ),
            (&too_many, vec![e(5, "spec.hosts", "257 hosts listed (expected at most 256)")]),
        ]);
    }

    #[test]
    fn addresses() {
        check(&[
            (
                "hosts: [a.example.com]\naddresses: [1.2.3.4/99]\n",
                vec![e(6, "spec.addresses[0]", "Invalid value: `1.2.3.4/99` is not a valid CIDR block (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")],
            ),
            (
                "hosts: [a.example.com]\naddresses: [1.2.3.4/16]\nresolution: DNS\n",
                vec![e(6, "spec.addresses[0]", "CIDR addresses are allowed only for NONE/STATIC resolution types (resolution is DNS)")],
            ),
        ]);
    }

    #[test]
    fn ports() {
        let p = |ports: &str| format!("hosts: [a.example.com]\nports:\n{ports}");
        check(&[
            (&p("- number: 80\n  protocol: HTTP\n"), vec![e(7, "spec.ports[0].name", "Required value: port name is required (expected e.g. http or tcp-5432)")]),
            (
                &p("- {number: 1, name: a}\n- {number: 12, name: a}\n"),
                vec![e(8, "spec.ports[1].name", "Duplicate value: port name `a` is already used by spec.ports[0] (expected unique port names)")],
            ),
            (
                &p("- {number: 1, name: a}\n- {number: 1, name: b}\n"),
                vec![e(8, "spec.ports[1].number", "port number cannot be duplicated: 1 is already used by spec.ports[0] (expected each port number once)")],
            ),
            (&p("- {number: 99999, name: a}\n"), vec![e(7, "spec.ports[0].number", "port must be between 1-65535, got 99999")]),
            (
                &p("- {number: 1, name: a, targetPort: 99999}\n"),
                vec![e(7, "spec.ports[0].targetPort", "port must be between 1-65535, got targetPort 99999")],
            ),
            (
                &p("- {number: 1, name: a, targetPort: 8080}\n"),
                vec![w(7, "spec.ports[0].targetPort", "targetPort has no effect when resolution mode is NONE: traffic goes to the port the client dialled (expected resolution STATIC or DNS)")],
            ),
            (
                &p("- {number: 1, name: a, protocol: SMTP}\n"),
                vec![e(7, "spec.ports[0].protocol", "unsupported protocol `SMTP` (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)")],
            ),
            (&p("- {number: 1, name: a_b}\n"), vec![e(7, "spec.ports[0].name", "invalid port name `a_b` (expected a DNS-1123 label)")]),
        ]);
    }

    #[test]
    fn resolution_and_endpoints() {
        check(&[
            (
                "hosts: [a.example.com]\nresolution: NONE\nendpoints: [{address: 1.2.3.4}]\n",
                vec![e(7, "spec.endpoints", "NONE mode cannot set endpoints: resolution NONE forwards to the address the client dialled (expected resolution STATIC or DNS with endpoints)")],
            ),
            (
                "hosts: [a.example.com]\nresolution: STATIC\nendpoints: [{address: b.example.com}]\n",
                vec![e(7, "spec.endpoints[0].address", "endpoint address `b.example.com` is not a valid IP address (expected an IP or unix:///path with resolution STATIC; use resolution DNS for host names)")],
            ),
            (
                "hosts: [a.example.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints:\n- address: unix:///s.sock\n  ports: {http: 80}\n",
                vec![e(10, "spec.endpoints[0].ports", "unix endpoint unix:///s.sock must not include ports (expected no ports)")],
            ),
            (
                "hosts: [\"*.example.com\"]\nresolution: DNS\n",
                vec![e(5, "spec.hosts[0]", "hosts must be FQDN if no endpoints are provided for resolution mode DNS: `*.example.com` cannot be resolved (expected a host name without wildcard, or endpoints)")],
            ),
            (
                "hosts: [a.example.com]\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: b.example.com}, {address: c.example.com}]\n",
                vec![e(7, "spec.endpoints", "DNS_ROUND_ROBIN mode cannot have multiple endpoints: 2 given (expected 0 or 1, or resolution DNS)")],
            ),
            (
                "hosts: [a.example.com]\nresolution: DNS\nendpoints: [{address: bad_host}]\n",
                vec![e(7, "spec.endpoints[0].address", "endpoint address `bad_host` is not a valid FQDN or an IP address (expected e.g. api.example.com or 10.0.0.1)")],
            ),
            (
                "hosts: [a.example.com]\nports: [{number: 80, name: http}]\nresolution: DNS\nendpoints:\n- address: b.example.com\n  ports: {https: 8443}\n",
                vec![e(10, "spec.endpoints[0].ports.https", "endpoint port https (8443) is not defined by the service entry (expected one of the names in spec.ports)")],
            ),
            (
                "hosts: [a.example.com, b.example.com]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: DNS\n",
                vec![e(6, "spec.ports[0]", "multiple hosts provided with non-HTTP, non-TLS ports: port 5432 (TCP) carries no host name to tell the 2 hosts apart (expected one host, protocol HTTP/HTTPS/TLS, or resolution NONE)")],
            ),
            (
                "hosts: [a.example.com]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DYNAMIC_DNS\n",
                vec![e(5, "spec.hosts[0]", "DYNAMIC_DNS needs wildcard hosts, `a.example.com` is not one (expected e.g. *.example.com)")],
            ),
        ]);
    }

    #[test]
    fn workload_selectors() {
        check(&[
            (
                "hosts: [example.com]\nworkloadSelector: {}\nendpoints: [{address: 1.2.3.4}]\nresolution: STATIC\n",
                vec![e(6, "spec.workloadSelector", "only one of WorkloadSelector or Endpoints can be set (expected endpoints for a standalone gateway)")],
            ),
            (
                "hosts: [example.com]\nworkloadSelector:\n  labels:\n    val: \"*\"\n",
                vec![
                    n(6, "spec.workloadSelector", "workloadSelector is mesh only: it selects pods or WorkloadEntries, so a standalone gateway has no endpoints for this ServiceEntry (expected endpoints, or resolution DNS)"),
                    e(8, "spec.workloadSelector.labels.val", "wildcard is not supported in selector: `val=*` (expected exact label values)"),
                ],
            ),
        ]);
    }

    #[test]
    fn export_to() {
        check(&[(
            "hosts: [example.com]\nexportTo: [\"~\", shop]\n",
            vec![e(
                6,
                "spec.exportTo[0]",
                "`~` cannot be combined with other exportTo values (expected `~` alone)",
            )],
        )]);
    }
}
