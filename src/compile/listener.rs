//! Listeners: the selected Gateways' servers grouped by (bind, port) after `--port-map`, each
//! becoming a plain-HTTP route table, a set of TLS filter chains chosen by SNI, or a TCP proxy.
//! Istio's per-port merge rules (model/gateway.go `mergeGateways`) apply.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;

use super::cluster::ClusterBuilder;
use super::host_index::HostIndex;
use super::route::{
    compile_http_routes, merge_virtual_host_routes, resolve_gateway_ref, vs_binds_gateway, Route,
    ServerContext, VsOrder,
};
use super::vhost::{HttpsRedirect, RouteTable, VirtualHost};
use super::{Instance, OutboundPolicy, Role};
use crate::config::diag::Diagnostic;
use crate::config::host::{intersection, HostPattern, ServerHost};
use crate::config::load::{Resource, Resources};
use crate::config::types::{
    Gateway, Protocol, RouteDestination, Server, ServerTlsMode, VirtualService,
};
use crate::tls::certs::{load_certificates, resolve_credential, CertChain, Credential};
use crate::tls::server::{self as server_tls, ServerTls, ServerTlsSpec};
use crate::upstream::Cluster;

/// A listening socket and what it serves.
#[derive(Debug, Serialize)]
pub struct Listener {
    pub address: SocketAddr,
    /// The port the Gateway declares (before `--port-map`).
    pub gateway_port: u16,
    /// `Gateway ns/name servers[i] (PROTOCOL)` for each server merged here.
    pub servers: Vec<String>,
    pub kind: ListenerKind,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// Plain HTTP/1.1 and h2c: every HTTP server on the port shares one route table.
    Http { routes: Arc<RouteTable> },
    /// HTTPS / TLS: filter chains selected by SNI.
    Tls(TlsChains),
    /// TCP: the first matching `tcp` route (TCP carries no host).
    Tcp { route: Option<Arc<TcpRoute>> },
}

#[derive(Debug, Serialize)]
pub struct TlsChains {
    pub chains: Vec<FilterChain>,
    #[serde(skip)]
    index: HostIndex<usize>,
}

impl TlsChains {
    /// Exact SNI, then the longest wildcard, then the `*` chain (also used without SNI); the
    /// chain's index is what the connection remembers.
    pub fn select(&self, sni: Option<&str>) -> Option<(usize, &FilterChain)> {
        let i = *match sni {
            Some(s) => self.index.lookup(s),
            None => self.index.any(),
        }?;
        Some((i, self.chains.get(i)?))
    }

    /// Another terminating chain on this listener whose routes serve `host`: the request was
    /// sent on a connection coalesced across certificates (answered 421).
    pub fn other_chain_serves(&self, own: &RouteTable, host: &str) -> bool {
        self.chains.iter().any(|c| match &c.action {
            ChainAction::TerminateHttp { routes, .. } => {
                routes.name != own.name && routes.serves(host)
            }
            _ => false,
        })
    }

    /// The route table of the chain a connection negotiated: by its index while the snapshot is
    /// the one the handshake saw (the name is then the very same `Arc`), by name after a reload.
    pub fn route_table(&self, chain: usize, name: &Arc<str>) -> Option<&Arc<RouteTable>> {
        fn table(c: &FilterChain) -> Option<&Arc<RouteTable>> {
            match &c.action {
                ChainAction::TerminateHttp { routes, .. } => Some(routes),
                _ => None,
            }
        }
        if let Some(t) = self.chains.get(chain).and_then(table) {
            if Arc::ptr_eq(&t.name, name) {
                return Some(t);
            }
        }
        self.chains
            .iter()
            .filter_map(table)
            .find(|t| *t.name == **name)
    }
}

#[derive(Debug, Serialize)]
pub struct FilterChain {
    pub name: String,
    pub server_names: Vec<String>,
    pub action: ChainAction,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainAction {
    /// HTTPS: terminate, then route by this server's own table.
    TerminateHttp {
        tls: Arc<ServerTls>,
        routes: Arc<RouteTable>,
    },
    /// TLS with SIMPLE/MUTUAL: terminate, then proxy the plaintext stream.
    TerminateTcp {
        tls: Arc<ServerTls>,
        route: Option<Arc<TcpRoute>>,
    },
    /// PASSTHROUGH: proxy the encrypted stream as is, chosen by SNI.
    Passthrough { route: Arc<TcpRoute> },
}

/// Weighted TCP destinations (`tls` and `tcp` VirtualService routes).
#[derive(Debug, Serialize)]
pub struct TcpRoute {
    pub source: String,
    pub destinations: Vec<TcpDestination>,
}

#[derive(Debug, Serialize)]
pub struct TcpDestination {
    #[serde(serialize_with = "cluster_name")]
    pub cluster: Arc<Cluster>,
    pub weight: u32,
}

fn cluster_name<S: serde::Serializer>(c: &Arc<Cluster>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.name)
}

impl TcpRoute {
    pub fn choose(&self) -> Option<&Arc<Cluster>> {
        let total: u32 = self.destinations.iter().map(|d| d.weight).sum();
        if total == 0 {
            return self.destinations.first().map(|d| &d.cluster);
        }
        let mut r = fastrand::u32(0..total);
        for d in &self.destinations {
            if r < d.weight {
                return Some(&d.cluster);
            }
            r -= d.weight;
        }
        None
    }
}

/// What kind of listener a server's protocol asks for; servers of different kinds cannot share
/// a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Http,
    Tls,
    Tcp,
}

fn class_of(p: Protocol) -> Class {
    if p.is_http() {
        Class::Http
    } else if matches!(p, Protocol::Https | Protocol::Tls) {
        Class::Tls
    } else {
        Class::Tcp
    }
}

/// A selected server, with what compile needs about it.
struct SelectedServer<'a> {
    gateway: &'a Resource<Gateway>,
    index: usize,
    server: &'a Server,
    protocol: Protocol,
    gateway_port: u16,
    address: SocketAddr,
}

impl SelectedServer<'_> {
    fn key(&self) -> String {
        self.gateway.key()
    }
    fn path(&self) -> String {
        format!("spec.servers[{}]", self.index)
    }
    fn describe(&self) -> String {
        format!(
            "Gateway {} servers[{}] ({})",
            self.gateway.key(),
            self.index,
            self.protocol
        )
    }
    fn hosts(&self) -> Vec<ServerHost> {
        self.server
            .hosts
            .iter()
            .map(|h| ServerHost::parse(h, &self.gateway.meta.namespace))
            .collect()
    }
    fn tls_mode(&self) -> ServerTlsMode {
        self.server
            .tls
            .as_ref()
            .map(|t| t.mode())
            .unwrap_or_default()
    }
    fn context<'a>(&'a self, key: &'a str, instance: &'a Instance) -> ServerContext<'a> {
        ServerContext {
            gateway: key,
            gateway_port: self.gateway_port,
            instance_labels: &instance.labels,
            registry_only: instance.role == Role::Egress
                && instance.outbound_policy == OutboundPolicy::RegistryOnly,
        }
    }
}

/// Builds every listener for the instance. Problems are pushed as diagnostics on the Gateway
/// or VirtualService they come from.
pub fn build_listeners(
    resources: &Resources,
    instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<SocketAddr, Arc<Listener>> {
    let selected = select_servers(resources, instance, diags);
    let mut by_address: BTreeMap<SocketAddr, Vec<SelectedServer<'_>>> = BTreeMap::new();
    for s in selected {
        let group = by_address.entry(s.address).or_default();
        if let Some(first) = group.first() {
            if class_of(first.protocol) != class_of(s.protocol) {
                s.gateway.reporter(diags).warn(
                    format!("{}.port.protocol", s.path()),
                    format!(
                        "{} conflicts with {} on {}; this server is skipped (servers on one port must all be HTTP, all HTTPS/TLS, or all TCP)",
                        s.protocol,
                        first.describe(),
                        s.address
                    ),
                );
                continue;
            }
        }
        group.push(s);
    }
    let https_ports = https_ports(&by_address);
    let mut out = BTreeMap::new();
    for (address, servers) in by_address {
        let gateway_port = servers[0].gateway_port;
        let kind = match class_of(servers[0].protocol) {
            Class::Http => ListenerKind::Http {
                routes: Arc::new(http_route_table(
                    format!("http.{gateway_port}"),
                    &servers,
                    resources,
                    instance,
                    clusters,
                    &https_ports,
                    diags,
                )),
            },
            Class::Tls => {
                ListenerKind::Tls(tls_chains(&servers, resources, instance, clusters, diags))
            }
            Class::Tcp => ListenerKind::Tcp {
                route: servers
                    .iter()
                    .find_map(|s| tcp_route(s, resources, instance, clusters, diags)),
            },
        };
        out.insert(
            address,
            Arc::new(Listener {
                address,
                gateway_port,
                servers: servers.iter().map(SelectedServer::describe).collect(),
                kind,
            }),
        );
    }
    out
}

fn select_servers<'a>(
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
                    gw.reporter(diags).warn(
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

/// For `httpsRedirect`: the Gateway port of an HTTPS server per host pattern.
fn https_ports(
    by_address: &BTreeMap<SocketAddr, Vec<SelectedServer<'_>>>,
) -> Vec<(ServerHost, u16)> {
    by_address
        .values()
        .flatten()
        .filter(|s| s.protocol == Protocol::Https)
        .flat_map(|s| s.hosts().into_iter().map(move |h| (h, s.gateway_port)))
        .collect()
}

/// Per domain: each VirtualService's routes (in merge order) and the https redirect, if any.
type HostRoutes = (Vec<(VsOrder, Vec<Route>)>, Option<HttpsRedirect>);

/// Virtual hosts for a set of servers that share one route table.
fn http_route_table(
    name: String,
    servers: &[SelectedServer<'_>],
    resources: &Resources,
    instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    https_ports: &[(ServerHost, u16)],
    diags: &mut Vec<Diagnostic>,
) -> RouteTable {
    // domain → (routes per VirtualService, https redirect)
    let mut hosts: BTreeMap<HostPattern, HostRoutes> = BTreeMap::new();
    let mut seen: HashMap<(String, String, u16), Vec<Route>> = HashMap::new();
    let delegates = |ns: &str, name: &str| -> Option<Arc<Resource<VirtualService>>> {
        resources
            .virtual_services
            .iter()
            .find(|v| v.meta.namespace == ns && v.meta.name == name)
            .cloned()
    };
    for s in servers {
        let key = s.key();
        let server_hosts = s.hosts();
        let redirect = s.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        for vs in &resources.virtual_services {
            if vs.spec.http.is_empty() || !vs_binds_gateway(vs, &key) {
                continue;
            }
            let admitted: Vec<HostPattern> = server_hosts
                .iter()
                .filter(|h| h.admits_namespace(&vs.meta.namespace))
                .map(|h| h.host.clone())
                .collect();
            let vs_hosts: Vec<HostPattern> = vs
                .spec
                .hosts
                .iter()
                .map(|h| HostPattern::parse(h))
                .collect();
            let common = intersection(&admitted, &vs_hosts);
            if common.is_empty() {
                continue;
            }
            let routes = seen
                .entry((vs.key(), key.clone(), s.gateway_port))
                .or_insert_with(|| {
                    let mut errors = Vec::new();
                    let routes = compile_http_routes(
                        vs,
                        &s.context(&key, instance),
                        clusters,
                        &delegates,
                        &mut errors,
                    );
                    for e in errors {
                        vs.reporter(diags).error("spec.http", e);
                    }
                    routes
                });
            for host in common {
                let entry = hosts.entry(host.clone()).or_default();
                if entry.0.iter().any(|(o, _)| *o == VsOrder::of(vs)) {
                    continue; // the same VirtualService bound through two servers on this port
                }
                entry.0.push((VsOrder::of(vs), routes.clone()));
                if redirect {
                    entry.1 = Some(redirect_for(&host, https_ports));
                }
            }
        }
        if redirect {
            // Hosts of an httpsRedirect server that no VirtualService covers still redirect.
            for h in &server_hosts {
                let entry = hosts.entry(h.host.clone()).or_default();
                entry.1 = Some(redirect_for(&h.host, https_ports));
            }
        }
    }
    let virtual_hosts = hosts
        .into_iter()
        .map(|(domain, (parts, https_redirect))| VirtualHost {
            domain: domain.to_string(),
            routes: merge_virtual_host_routes(parts),
            https_redirect,
        })
        .collect();
    RouteTable::new(name, virtual_hosts)
}

fn redirect_for(host: &HostPattern, https_ports: &[(ServerHost, u16)]) -> HttpsRedirect {
    let port = https_ports
        .iter()
        .find(|(h, _)| h.host.matches(host))
        .map_or(443, |(_, p)| *p);
    HttpsRedirect { port }
}

fn tls_chains(
    servers: &[SelectedServer<'_>],
    resources: &Resources,
    instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> TlsChains {
    let mut chains: Vec<FilterChain> = Vec::new();
    let mut index: HostIndex<usize> = HostIndex::new();
    let mut add = |chains: &mut Vec<FilterChain>,
                   names: Vec<HostPattern>,
                   chain: FilterChain,
                   s: &SelectedServer<'_>,
                   diags: &mut Vec<Diagnostic>| {
        let i = chains.len();
        let mut used = Vec::new();
        for n in names {
            if index.insert(&n, i) {
                used.push(n.to_string());
            } else {
                s.gateway.reporter(diags).warn(
                    format!("{}.hosts", s.path()),
                    format!(
                        "host {n} is already served on {} by an earlier server; duplicate skipped",
                        s.address
                    ),
                );
            }
        }
        if !used.is_empty() {
            chains.push(FilterChain {
                server_names: used,
                ..chain
            });
        }
    };
    for s in servers {
        let key = s.key();
        let mode = s.tls_mode();
        let table_name = format!(
            "https.{}.{}.{}.{}",
            s.gateway_port,
            s.server
                .port
                .as_ref()
                .map(|p| p.name.as_str())
                .unwrap_or(""),
            s.gateway.meta.name,
            s.gateway.meta.namespace
        );
        match mode {
            ServerTlsMode::Passthrough => {
                for (names, route) in
                    passthrough_routes(s, &key, resources, instance, clusters, diags)
                {
                    let chain = FilterChain {
                        name: format!("{table_name}.passthrough"),
                        server_names: Vec::new(),
                        action: ChainAction::Passthrough { route },
                    };
                    add(&mut chains, names, chain, s, diags);
                }
            }
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
                let http = s.protocol == Protocol::Https;
                let Some(tls) = server_tls_for(s, instance, http, diags) else {
                    continue;
                };
                let names: Vec<HostPattern> = s.hosts().into_iter().map(|h| h.host).collect();
                let action = if http {
                    let routes = http_route_table(
                        table_name.clone(),
                        std::slice::from_ref(s),
                        resources,
                        instance,
                        clusters,
                        &[],
                        diags,
                    );
                    ChainAction::TerminateHttp {
                        tls,
                        routes: Arc::new(routes),
                    }
                } else {
                    ChainAction::TerminateTcp {
                        tls,
                        route: tcp_route(s, resources, instance, clusters, diags),
                    }
                };
                let chain = FilterChain {
                    name: table_name,
                    server_names: Vec::new(),
                    action,
                };
                add(&mut chains, names, chain, s, diags);
            }
            // Rejected by validation; nothing to serve.
            ServerTlsMode::AutoPassthrough | ServerTlsMode::IstioMutual => {}
        }
    }
    TlsChains { chains, index }
}

/// Loads a terminating server's certificates and builds its acceptor.
fn server_tls_for(
    s: &SelectedServer<'_>,
    instance: &Instance,
    http: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<ServerTls>> {
    let tls = s.server.tls.as_ref()?;
    let path = format!("{}.tls", s.path());
    let mut report = s.gateway.reporter(diags);
    let mut sources: Vec<(Credential, String)> = Vec::new();
    let fail = |report: &mut crate::config::diag::Reporter<'_>, field: &str, e: String| {
        report.error(format!("{path}.{field}"), e);
    };
    if let (Some(cert), Some(key)) = (&tls.server_certificate, &tls.private_key) {
        sources.push((
            Credential {
                cert: cert.into(),
                key: key.into(),
                ca: tls.ca_certificates.as_ref().map(Into::into),
                crl: tls.ca_crl.as_ref().map(Into::into),
            },
            "serverCertificate".into(),
        ));
    }
    let names: Vec<&String> = tls
        .credential_name
        .iter()
        .chain(tls.credential_names.iter())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let field = if tls.credential_name.is_some() && i == 0 {
            "credentialName".to_string()
        } else {
            format!(
                "credentialNames[{}]",
                i - usize::from(tls.credential_name.is_some())
            )
        };
        match resolve_credential(&instance.certs_dir, name) {
            Ok(c) => sources.push((c, field)),
            Err(e) => fail(&mut report, &field, e),
        }
    }
    for (i, tc) in tls.tls_certificates.iter().enumerate() {
        if let (Some(cert), Some(key)) = (&tc.server_certificate, &tc.private_key) {
            sources.push((
                Credential {
                    cert: cert.into(),
                    key: key.into(),
                    ca: tc.ca_certificates.as_ref().map(Into::into),
                    crl: None,
                },
                format!("tlsCertificates[{i}]"),
            ));
        }
    }
    let mut certificates = Vec::new();
    let mut client_ca = Vec::new();
    let mut failed = false;
    for (cred, field) in &sources {
        match CertChain::load(&cred.cert, &cred.key) {
            Ok(chain) => {
                if let Some(w) = chain.expiry_warning() {
                    report.warn(format!("{path}.{field}"), w);
                }
                certificates.push(chain);
            }
            Err(e) => {
                failed = true;
                fail(&mut report, field, e);
            }
        }
        if let Some(ca) = &cred.ca {
            match load_certificates(ca) {
                Ok(c) => client_ca.extend(c),
                Err(e) => {
                    failed = true;
                    fail(&mut report, field, e);
                }
            }
        }
    }
    if let Some(name) = &tls.ca_cert_credential_name {
        match crate::tls::certs::resolve_ca_credential(&instance.certs_dir, name)
            .map(|p| load_certificates(&p))
        {
            Some(Ok(c)) => client_ca = c,
            Some(Err(e)) => {
                failed = true;
                fail(&mut report, "caCertCredentialName", e);
            }
            None => {
                failed = true;
                fail(
                    &mut report,
                    "caCertCredentialName",
                    format!("no ca.crt found for credential `{name}`"),
                );
            }
        }
    }
    let mut crls = Vec::new();
    if matches!(
        tls.mode(),
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    ) {
        for (cred, field) in &sources {
            let Some(path) = &cred.crl else { continue };
            let field = if tls.ca_crl.is_some() && field == "serverCertificate" {
                "caCrl"
            } else {
                field
            };
            match crate::tls::certs::load_crl(path, &client_ca) {
                Ok(crl) => crls.push(crl),
                Err(e) => {
                    failed = true;
                    fail(&mut report, field, e);
                }
            }
        }
    }
    if failed {
        return None;
    }
    if certificates.is_empty() {
        fail(
            &mut report,
            "mode",
            format!(
                "{:?} needs a certificate (serverCertificate and privateKey, or credentialName)",
                tls.mode()
            ),
        );
        return None;
    }
    let spec = ServerTlsSpec {
        crls,
        mode: tls.mode(),
        certificates,
        client_ca,
        min_version: tls.min_protocol_version,
        max_version: tls.max_protocol_version,
        cipher_suites: tls.cipher_suites.clone(),
        ecdh_curves: tls.ecdh_curves.clone(),
        subject_alt_names: tls.subject_alt_names.clone(),
        verify_spki: tls.verify_certificate_spki.clone(),
        verify_hash: tls.verify_certificate_hash.clone(),
        http_alpn: http,
    };
    match server_tls::build(spec) {
        Ok((server, warnings)) => {
            for w in warnings {
                report.warn(format!("{path}.cipherSuites"), w);
            }
            Some(Arc::new(server))
        }
        Err(e) => {
            fail(&mut report, "mode", e);
            None
        }
    }
}

fn tcp_destinations(
    route: &[RouteDestination],
    vs: &Resource<VirtualService>,
    s: &SelectedServer<'_>,
    clusters: &mut ClusterBuilder<'_>,
) -> Result<Vec<TcpDestination>, String> {
    let mut out = Vec::new();
    for d in route {
        let Some(dest) = &d.destination else { continue };
        let port = dest
            .port
            .map(|p| p.number)
            .filter(|p| *p != 0)
            .map(u16::try_from)
            .transpose()
            .map_err(|_| "destination port out of range".to_string())?;
        let cluster = clusters.destination(
            &dest.host,
            port,
            dest.subset.as_deref(),
            &vs.meta.namespace,
            s.gateway_port,
        )?;
        out.push(TcpDestination {
            cluster,
            weight: d.weight.max(0) as u32,
        });
    }
    if out.len() == 1 {
        out[0].weight = out[0].weight.max(1);
    }
    Ok(out)
}

fn gateways_match(list: &[String], vs: &Resource<VirtualService>, key: &str) -> bool {
    list.is_empty()
        || list
            .iter()
            .any(|g| resolve_gateway_ref(g, &vs.meta.namespace) == key)
}

/// PASSTHROUGH: one chain per `tls` match block, its SNI hosts narrowed to the server's hosts.
fn passthrough_routes(
    s: &SelectedServer<'_>,
    key: &str,
    resources: &Resources,
    _instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(Vec<HostPattern>, Arc<TcpRoute>)> {
    let server_hosts = s.hosts();
    let mut out = Vec::new();
    for vs in &resources.virtual_services {
        if vs.spec.tls.is_empty() || !vs_binds_gateway(vs, key) {
            continue;
        }
        let admitted: Vec<HostPattern> = server_hosts
            .iter()
            .filter(|h| h.admits_namespace(&vs.meta.namespace))
            .map(|h| h.host.clone())
            .collect();
        for (i, rule) in vs.spec.tls.iter().enumerate() {
            for m in &rule.matches {
                if !gateways_match(&m.gateways, vs, key)
                    || m.port.is_some_and(|p| p != u32::from(s.gateway_port))
                {
                    continue;
                }
                let sni: Vec<HostPattern> =
                    m.sni_hosts.iter().map(|h| HostPattern::parse(h)).collect();
                let names = intersection(&admitted, &sni);
                if names.is_empty() {
                    continue;
                }
                match tcp_destinations(&rule.route, vs, s, clusters) {
                    Ok(destinations) => out.push((
                        names,
                        Arc::new(TcpRoute {
                            source: format!("VirtualService {} tls[{i}]", vs.key()),
                            destinations,
                        }),
                    )),
                    Err(e) => vs.reporter(diags).error(format!("spec.tls[{i}].route"), e),
                }
            }
        }
    }
    out
}

/// TCP on a gateway: only the first VirtualService and `tcp` rule that match the server are
/// used (TCP carries no host to choose by).
fn tcp_route(
    s: &SelectedServer<'_>,
    resources: &Resources,
    _instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<TcpRoute>> {
    let key = s.key();
    let server_hosts: Vec<HostPattern> = s.hosts().into_iter().map(|h| h.host).collect();
    for vs in &resources.virtual_services {
        if vs.spec.tcp.is_empty() || !vs_binds_gateway(vs, &key) {
            continue;
        }
        let vs_hosts: Vec<HostPattern> = vs
            .spec
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect();
        if intersection(&server_hosts, &vs_hosts).is_empty() {
            continue;
        }
        for (i, rule) in vs.spec.tcp.iter().enumerate() {
            let applies = rule.matches.is_empty()
                || rule.matches.iter().any(|m| {
                    gateways_match(&m.gateways, vs, &key)
                        && m.port.is_none_or(|p| p == u32::from(s.gateway_port))
                });
            if !applies {
                continue;
            }
            return match tcp_destinations(&rule.route, vs, s, clusters) {
                Ok(destinations) => Some(Arc::new(TcpRoute {
                    source: format!("VirtualService {} tcp[{i}]", vs.key()),
                    destinations,
                })),
                Err(e) => {
                    vs.reporter(diags).error(format!("spec.tcp[{i}].route"), e);
                    None
                }
            };
        }
    }
    None
}
