//! TLS at the edge: certificates chosen by SNI, chains, client certificates, ALPN and HTTP/2,
//! per-server routing on a shared port, httpsRedirect, passthrough and TLS-then-TCP, protocol
//! versions and ciphers, certificate rotation, and what `check` refuses.
//!
//! What is specific to TLS lives here: short forms of the Gateway servers and VirtualServices
//! the tests repeat (built with the shared typed YAML builder), certificate directories, and
//! handshake probes. [`edge`] starts the shared [`Harness`] with every Gateway port mapped to a
//! free local port.

mod alpn_h2;
mod chains;
mod check;
mod left_out;
mod misdirected;
mod mutual;
mod passthrough;
mod redirect;
mod rotation;
mod sni;
mod versions;

use std::net::SocketAddr;

use crate::support::certs::write_credential;
pub use crate::support::client::Resp;
use crate::support::client::{get_request, tls_handshake, HandshakeInfo};
pub use crate::support::yaml::*;
use crate::support::*;

/// A Gateway (selecting the default `istio=ingressgateway` instance) with these servers. Port
/// names are generated (`https-0`, `https-1`, ...) so they are unique within the Gateway.
pub fn gateway(name: &str, servers: Vec<Server>) -> Gateway {
    servers
        .into_iter()
        .fold(Gateway::new(name), Gateway::server)
}

/// One Gateway server on `port` speaking `protocol` for `hosts`, with a `tls` block if given.
pub fn server(port: u16, protocol: &str, hosts: &[&str], tls: Option<ServerTls>) -> Server {
    let s = Server::on(port, protocol).hosts(hosts);
    match tls {
        Some(t) => s.tls(t),
        None => s,
    }
}

/// An HTTPS server on `port` for `hosts` with this `tls:` block.
pub fn https(port: u16, hosts: &[&str], tls: ServerTls) -> Server {
    Server::https(port, tls).hosts(hosts)
}

/// `tls: {mode: SIMPLE, credentialName: NAME}`.
pub fn simple(credential: &str) -> ServerTls {
    ServerTls::simple(credential)
}

fn virtual_service(name: &str, hosts: &[&str], gateway: &str) -> VirtualService {
    VirtualService::new(name).hosts(hosts).gateways(&[gateway])
}

/// A VirtualService sending every HTTP request for `hosts` on `gateway` to `dest` (a
/// destination made by [`service_entry`]).
pub fn http_route(name: &str, hosts: &[&str], gateway: &str, dest: &Destination) -> VirtualService {
    virtual_service(name, hosts, gateway).http(HttpRoute::new().route(dest.clone()))
}

/// A VirtualService with one `tls` (SNI passthrough) rule: `sniHosts` → weighted destinations.
pub fn tls_route(
    name: &str,
    sni_hosts: &[&str],
    gateway: &str,
    dests: &[(&Destination, u32)],
) -> VirtualService {
    let rule = dests
        .iter()
        .fold(TlsRoute::new().sni_hosts(sni_hosts), |r, (d, w)| {
            r.route((*d).clone().weight(*w))
        });
    virtual_service(name, sni_hosts, gateway).tls(rule)
}

/// A VirtualService with one `tcp` rule (no match) to `dest`.
pub fn tcp_route(name: &str, hosts: &[&str], gateway: &str, dest: &Destination) -> VirtualService {
    virtual_service(name, hosts, gateway).tcp(TcpRoute::new().route(dest.clone()))
}

/// `host` on `backend`'s port with `protocol` (HTTP, HTTP2, GRPC, TCP, TLS), STATIC at
/// 127.0.0.1. Returns the document and the destination to route to.
pub fn service_entry(host: &str, backend: &Backend, protocol: &str) -> (ServiceEntry, Destination) {
    let port = Port::of(backend.port(), &protocol.to_ascii_lowercase(), protocol);
    (
        ServiceEntry::loopback(host).port(port),
        Destination::host(host).port(backend.port()),
    )
}

/// Writes `docs` to `edge.yaml` and starts the gateway with `--certs certs` and every port in
/// `gateway_ports` mapped to a free local port.
pub async fn edge(certs: ConfigDir, gateway_ports: &[u16], docs: &[&dyn Resource]) -> Harness {
    Harness::builder()
        .certs(certs)
        .ports(gateway_ports)
        .resources("edge.yaml", docs)
        .start()
        .await
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

/// `GET path` with `Host: host` as HTTP/1.1 text (the connection kept alive).
pub fn get(host: &str, path: &str) -> String {
    get_request(host, path, "", false)
}
