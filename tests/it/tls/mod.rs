//! TLS at the edge: certificates chosen by SNI, chains, client certificates, ALPN and HTTP/2,
//! per-server routing on a shared port, httpsRedirect, passthrough and TLS-then-TCP, protocol
//! versions and ciphers, certificate rotation, and what `check` refuses.
//!
//! Shared setup lives here: YAML is built from the few functions below (Gateway servers,
//! VirtualServices, ServiceEntries for local backends) and written by [`Edge::start`], which
//! maps every Gateway port to a free local port and starts the real gateway.

mod alpn_h2;
mod chains;
mod check;
mod misdirected;
mod mutual;
mod passthrough;
mod redirect;
mod rotation;
mod sni;
mod versions;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::certs::write_credential;
use crate::support::client::{tls_handshake, HandshakeInfo};
use crate::support::gateway::port_map;
use crate::support::*;

/// A Gateway (selecting the default `istio=ingressgateway` instance) with these servers. Port
/// names are generated (`https-0`, `https-1`, ...) so they are unique within the Gateway.
pub fn gateway(name: &str, servers: Vec<Value>) -> Value {
    let servers: Vec<Value> = servers
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let protocol = s["port"]["protocol"].as_str().unwrap().to_ascii_lowercase();
            s["port"]["name"] = json!(format!("{protocol}-{i}"));
            s
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers},
    })
}

/// One Gateway server; `tls` is the `tls:` block, if any.
pub fn server(port: u16, protocol: &str, hosts: &[&str], tls: Option<Value>) -> Value {
    let mut s = json!({
        "port": {"number": port, "protocol": protocol},
        "hosts": hosts,
    });
    if let Some(t) = tls {
        s["tls"] = t;
    }
    s
}

/// An HTTPS server on `port` for `hosts` with this `tls:` block.
pub fn https(port: u16, hosts: &[&str], tls: Value) -> Value {
    server(port, "HTTPS", hosts, Some(tls))
}

/// `tls: {mode: SIMPLE, credentialName: NAME}`.
pub fn simple(credential: &str) -> Value {
    json!({"mode": "SIMPLE", "credentialName": credential})
}

/// `tls: {mode: MODE, credentialName: NAME}` plus `extra` fields merged in.
pub fn tls_with(mode: &str, credential: &str, extra: Value) -> Value {
    let mut t = json!({"mode": mode, "credentialName": credential});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            t[k] = v;
        }
    }
    t
}

fn virtual_service(name: &str, hosts: &[&str], gateway: &str, body: Value) -> Value {
    let mut spec = json!({"hosts": hosts, "gateways": [gateway]});
    if let Value::Object(m) = body {
        for (k, v) in m {
            spec[k] = v;
        }
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

fn destination(host: &str, port: u16) -> Value {
    json!({"destination": {"host": host, "port": {"number": port}}})
}

/// A VirtualService sending every HTTP request for `hosts` on `gateway` to `dest` (a host made
/// by [`service_entry`]).
pub fn http_route(name: &str, hosts: &[&str], gateway: &str, dest: &Dest) -> Value {
    virtual_service(
        name,
        hosts,
        gateway,
        json!({"http": [{"route": [destination(&dest.host, dest.port)]}]}),
    )
}

/// A VirtualService with one `tls` (SNI passthrough) rule: `sniHosts` → weighted destinations.
pub fn tls_route(name: &str, sni_hosts: &[&str], gateway: &str, dests: &[(&Dest, u32)]) -> Value {
    let route: Vec<Value> = dests
        .iter()
        .map(|(d, w)| {
            let mut r = destination(&d.host, d.port);
            r["weight"] = json!(w);
            r
        })
        .collect();
    virtual_service(
        name,
        sni_hosts,
        gateway,
        json!({"tls": [{"match": [{"sniHosts": sni_hosts}], "route": route}]}),
    )
}

/// A VirtualService with one `tcp` rule (no match) to `dest`.
pub fn tcp_route(name: &str, hosts: &[&str], gateway: &str, dest: &Dest) -> Value {
    virtual_service(
        name,
        hosts,
        gateway,
        json!({"tcp": [{"route": [destination(&dest.host, dest.port)]}]}),
    )
}

/// A ServiceEntry host for a local backend.
#[derive(Clone, Debug)]
pub struct Dest {
    pub host: String,
    pub port: u16,
}

/// `host` on `backend`'s port with `protocol` (HTTP, HTTP2, GRPC, TCP, TLS), STATIC at
/// 127.0.0.1. Returns the document and the destination to route to.
pub fn service_entry(host: &str, backend: &Backend, protocol: &str) -> (Value, Dest) {
    let name = host.replace('.', "-");
    let doc = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": backend.port(), "name": protocol.to_ascii_lowercase(), "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1"}],
        },
    });
    (
        doc,
        Dest {
            host: host.to_string(),
            port: backend.port(),
        },
    )
}

/// Documents as one multi-document YAML file.
pub fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The gateway under test, its config and certs directories, and where each Gateway port
/// listens.
pub struct Edge {
    pub cfg: ConfigDir,
    pub certs: ConfigDir,
    pub gw: Gateway,
    ports: BTreeMap<u16, u16>,
}

impl Edge {
    /// Writes `docs` to `edge.yaml` and starts the gateway with `--certs certs` and every
    /// port in `gateway_ports` mapped to a free local port.
    pub fn start(certs: ConfigDir, gateway_ports: &[u16], docs: &[Value]) -> Edge {
        let cfg = ConfigDir::new();
        cfg.write("edge.yaml", &yaml(docs));
        let free = free_ports(gateway_ports.len());
        let ports: BTreeMap<u16, u16> = gateway_ports.iter().copied().zip(free).collect();
        let pairs: Vec<(u16, u16)> = ports.iter().map(|(a, b)| (*a, *b)).collect();
        let gw = Gateway::start(GatewayOpts {
            certs_dir: Some(certs.path().to_path_buf()),
            port_map: Some(port_map(&pairs)),
            extra_args: vec!["--bind".into(), "127.0.0.1".into()],
            ..GatewayOpts::new(cfg.path())
        });
        Edge {
            cfg,
            certs,
            gw,
            ports,
        }
    }

    /// The local address serving Gateway port `gateway_port`.
    pub fn addr(&self, gateway_port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[&gateway_port]))
    }

    /// The local port serving Gateway port `gateway_port`.
    pub fn port(&self, gateway_port: u16) -> u16 {
        self.ports[&gateway_port]
    }
}

/// A certs directory holding `NAME/{tls.crt,tls.key[,ca.crt]}` for each entry.
pub fn credentials(entries: &[(&str, &CertKey, Option<&Ca>)]) -> ConfigDir {
    let certs = ConfigDir::new();
    for (name, ck, ca) in entries {
        write_credential(certs.path(), name, ck, *ca);
    }
    certs
}

/// Handshake with `sni` (or none), verifying against `root` when given; returns what the
/// gateway presented.
pub async fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    root: Option<&Ca>,
) -> Result<HandshakeInfo, String> {
    tls_handshake(addr, sni, root, None, &[]).await
}

/// The SHA-256 of the certificate presented for `sni`; panics on a failed handshake.
pub async fn served_cert(addr: SocketAddr, sni: Option<&str>) -> String {
    handshake(addr, sni, None)
        .await
        .unwrap_or_else(|e| panic!("handshake with SNI {sni:?} failed: {e}"))
        .sha256
}

/// `GET path` with `Host: host` as HTTP/1.1 text.
pub fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-it\r\n\r\n")
}

/// The value of header `name` in a raw HTTP response.
pub fn raw_header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
