//! Gateway: servers, ports, hosts and server TLS (Istio `ValidateGateway`), plus the analyzer
//! findings across Gateways (IST0145 conflicting servers, IST0138 shared certificates).
//!
//! This file checks each server's hosts, port and bind; `server_tls` its `tls` block;
//! `conflicts` the findings across Gateways.

mod conflicts;
mod server_tls;

use std::collections::HashMap;

use super::rules::{self, check_port, is_dns1123_label, is_ip, is_partial_wildcard};
use crate::config::diag::{Diagnostic, Reporter};
use crate::config::load::Resource;
use crate::config::types::{Gateway, Protocol, Server};

pub(super) use conflicts::check_conflicts;

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
    server_tls::check_server_tls(r, base, server, protocol);
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

#[cfg(test)]
mod tests {
    use crate::config::validate::testutil::{clean, expect};

    pub(super) const GW: &str = "Gateway";

    pub(super) fn http_server(extra: &str) -> String {
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
                &["t.yaml:3: Error [IST0106] Gateway default/my.gw: metadata.name: invalid gateway name `my.gw` (expected a DNS-1123 label: letters, digits and '-', at most 63 characters, no dots)"],
            )],
        );
        expect(
            GW,
            "gw",
            &[(
                "selector: {istio: ingressgateway}\n",
                &["t.yaml:4: Error [IST0106] Gateway default/gw: spec.servers: Required value: gateway must have at least one server (expected servers with a port and hosts)"],
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
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].hosts[0]: partial wildcard `*foo.com` is not allowed (expected `*` or a whole leftmost `*.` label, such as `*.example.com`)"],
                ),
                (
                    &case("foo.*.com"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].hosts[0]: partial wildcard `foo.*.com` is not allowed (expected `*` or a whole leftmost `*.` label, such as `*.example.com`)"],
                ),
                (
                    &case("reviews"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].hosts[0]: a gateway host must be a fully qualified domain name: `reviews` is a short name (expected e.g. `reviews.example.com` or `*`)"],
                ),
                (
                    &case("bad_ns/a.com"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].hosts[0]: invalid namespace `bad_ns` in host `bad_ns/a.com` (expected `*`, `.` or a namespace name)"],
                ),
                (
                    &case("a..com"),
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[0].hosts[0]: domain name `a..com` is invalid: label `` (expected labels of letters, digits and '-', at most 63 characters each)"],
                ),
            ],
        );
        expect(
            GW,
            "gw",
            &[(
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n",
                &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].hosts: Required value: server config must contain at least one host (expected e.g. `example.com`, `*.example.com` or `*`)"],
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
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port: Required value: port is required (expected number, protocol and name)"],
                ),
                (
                    "servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port.number: port number 0 is out of range (expected 1-65535, or 0 with a unix:// bind)"],
                ),
                (
                    "servers:\n- port: {number: 70000, name: http, protocol: HTTP}\n  hosts: [a.com]\n",
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port.number: port number 70000 is out of range (expected 1-65535, or 0 with a unix:// bind)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n    protocol: SMTP\n  hosts: [a.com]\n",
                    &["t.yaml:9: Error [IST0106] Gateway default/gw: spec.servers[0].port.protocol: invalid protocol `SMTP` (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n  hosts: [a.com]\n",
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port.protocol: Required value: port protocol is required (expected HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, REDIS or MYSQL)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    protocol: HTTP\n  hosts: [a.com]\n",
                    &["t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port.name: Required value: port name must be set (expected e.g. http or https-443)"],
                ),
                (
                    "servers:\n- port:\n    number: 80\n    name: http\n    protocol: HTTP\n    targetPort: 8080\n  hosts: [a.com]\n",
                    &["t.yaml:10: Error [IST0106] Gateway default/gw: spec.servers[0].port.targetPort: targetPort has no impact on Gateways (remove it; the gateway listens on port.number)"],
                ),
                (
                    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.com]\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: [b.com]\n",
                    &["t.yaml:8: Error [IST0106] Gateway default/gw: spec.servers[1].port.name: Duplicate value: port name `http` is already used by spec.servers[0] (expected port names unique within a Gateway)"],
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
                    &["t.yaml:7: Error [IST0106] Gateway default/gw: spec.servers[0].bind: bind `localhost` is not an IP address (expected an IP such as 0.0.0.0, or unix:///path)"],
                ),
                (
                    "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: unix://relative.sock\n  hosts: [a.com]\n",
                    &[
                        "t.yaml:6: Error [IST0106] Gateway default/gw: spec.servers[0].port.number: port number must be 0 for a unix domain socket bind, not 80 (expected 0)",
                        "t.yaml:7: Error [IST0106] Gateway default/gw: spec.servers[0].bind: `relative.sock` is not an absolute path to a socket file (expected unix:///path/to/socket or unix://@name)",
                    ],
                ),
            ],
        );
    }
}
