//! Which servers this instance serves: Gateways whose `selector` its labels satisfy, each
//! server at its listen address (`bind`, or `--bind`, and the port after `--port-map`).

use std::net::{IpAddr, SocketAddr};

use crate::compile::route::ServerContext;
use crate::compile::{Instance, OutboundPolicy, Role};
use crate::config::diag::Diagnostic;
use crate::config::host::{HostPattern, ServerHost};
use crate::config::load::{Resource, Resources};
use crate::config::types::{Gateway, Protocol, Server, ServerTlsMode};

/// What kind of listener a server's protocol asks for; servers of different kinds cannot share
/// a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Http,
    Tls,
    Tcp,
}

pub(super) fn class_of(p: Protocol) -> Class {
    if p.is_http() {
        Class::Http
    } else if matches!(p, Protocol::Https | Protocol::Tls) {
        Class::Tls
    } else {
        Class::Tcp
    }
}

/// A selected server, with what compile needs about it.
pub(super) struct SelectedServer<'a> {
    pub gateway: &'a Resource<Gateway>,
    pub index: usize,
    pub server: &'a Server,
    pub protocol: Protocol,
    pub gateway_port: u16,
    pub address: SocketAddr,
}

impl SelectedServer<'_> {
    pub fn key(&self) -> String {
        self.gateway.key()
    }
    pub fn path(&self) -> String {
        format!("spec.servers[{}]", self.index)
    }
    pub fn describe(&self) -> String {
        format!(
            "Gateway {} servers[{}] ({})",
            self.gateway.key(),
            self.index,
            self.protocol
        )
    }
    pub fn hosts(&self) -> Vec<ServerHost> {
        self.server
            .hosts
            .iter()
            .map(|h| ServerHost::parse(h, &self.gateway.meta.namespace))
            .collect()
    }
    /// The server's hosts that admit VirtualServices of namespace `ns` (`ns/host` rules).
    pub fn admitted(&self, ns: &str) -> Vec<HostPattern> {
        self.hosts()
            .into_iter()
            .filter(|h| h.admits_namespace(ns))
            .map(|h| h.host)
            .collect()
    }
    pub fn tls_mode(&self) -> ServerTlsMode {
        self.server
            .tls
            .as_ref()
            .map(|t| t.mode())
            .unwrap_or_default()
    }
    pub fn context<'a>(&'a self, key: &'a str, instance: &'a Instance) -> ServerContext<'a> {
        ServerContext {
            gateway: key,
            gateway_port: self.gateway_port,
            instance_labels: &instance.labels,
            registry_only: instance.role == Role::Egress
                && instance.outbound_policy == OutboundPolicy::RegistryOnly,
        }
    }
}

pub(super) fn select_servers<'a>(
    resources: &'a Resources,
    instance: &Instance,
    diags: &mut Vec<Diagnostic>,
) -> Vec<SelectedServer<'a>> {
    let mut out = Vec::new();
    for gw in &resources.gateways {
        let selected = gw
            .spec
            .selector
            .iter()
            .all(|(k, v)| instance.labels.get(k) == Some(v));
        if !selected {
            continue;
        }
        for (index, server) in gw.spec.servers.iter().enumerate() {
            let Some(port) = &server.port else { continue };
            let Some(protocol) = Protocol::parse(&port.protocol) else {
                continue;
            };
            let Ok(gateway_port) = u16::try_from(port.number) else {
                continue;
            };
            if protocol == Protocol::Udp {
                continue;
            }
            let ip = match server.bind.as_deref() {
                None | Some("") => instance.bind,
                Some(b) if b.starts_with("unix://") => {
                    gw.reporter(diags).note(
                        format!("spec.servers[{index}].bind"),
                        "unix socket binds are not supported; server skipped",
                    );
                    continue;
                }
                Some(b) => match b.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => continue,
                },
            };
            let listen_port = instance
                .port_map
                .get(&gateway_port)
                .copied()
                .unwrap_or(gateway_port);
            out.push(SelectedServer {
                gateway: gw,
                index,
                server,
                protocol,
                gateway_port,
                address: SocketAddr::new(ip, listen_port),
            });
        }
    }
    out
}
