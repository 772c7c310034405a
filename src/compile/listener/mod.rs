//! Listeners: the selected Gateways' servers grouped by (bind, port) after `--port-map`, each
//! becoming a plain-HTTP route table, a set of TLS filter chains chosen by SNI, or a TCP proxy.
//! Istio's per-port merge rules (model/gateway.go `mergeGateways`) apply.

mod http;
mod select;
mod tcp;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::cluster::ClusterBuilder;
use super::host_index::HostIndex;
use super::vhost::RouteTable;
use super::Instance;
use crate::config::diag::Diagnostic;
use crate::config::host::HostPattern;
use crate::config::load::{Resource, Resources};
use crate::config::types::VirtualService;
use crate::telemetry::envoy::listener_name;
use crate::telemetry::envoy::ConnManagerStats;
use crate::tls::server::ServerTls;
use crate::upstream::balancer::Weights;
use crate::upstream::Cluster;
use http::{http_route_table, https_ports};
use select::{class_of, select_servers, Class, SelectedServer};
use tcp::tcp_route;
use tls::tls_chains;
pub use tls::CredentialMemory;

/// A listening socket and what it serves.
#[derive(Debug, Serialize)]
pub struct Listener {
    pub address: SocketAddr,
    /// The port the Gateway declares (before `--port-map`).
    pub gateway_port: u16,
    /// `Gateway ns/name servers[i] (PROTOCOL)` for each server merged here.
    pub servers: Vec<String>,
    pub kind: ListenerKind,
    /// Its HTTP connection manager's request counters (`http.outbound_<address>;.*`).
    #[serde(skip)]
    pub http_stats: Arc<ConnManagerStats>,
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
    /// The index of the names of a server left out (its certificate could not be loaded): no
    /// chain, so the handshake fails as Envoy's does while SDS has no secret for the chain.
    pub const UNAVAILABLE: usize = usize::MAX;

    /// Exact SNI, then the longest wildcard, then the `*` chain (also used without SNI); the
    /// chain's index is what the connection remembers. None for an unknown name and for the
    /// names of a left-out server.
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
    #[serde(skip)]
    weights: Weights,
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
    /// Weight-0 destinations of a weighted set get no traffic; a lone one gets all of it.
    fn new(source: String, mut destinations: Vec<TcpDestination>) -> TcpRoute {
        if destinations.len() == 1 {
            destinations[0].weight = destinations[0].weight.max(1);
        } else {
            destinations.retain(|d| d.weight > 0);
        }
        let weights = Weights::new(destinations.iter().map(|d| d.weight));
        TcpRoute {
            source,
            destinations,
            weights,
        }
    }

    pub fn choose(&self) -> Option<&Arc<Cluster>> {
        self.destinations
            .get(self.weights.choose())
            .map(|d| &d.cluster)
    }
}

/// A VirtualService's hosts as patterns.
fn vs_hosts(vs: &Resource<VirtualService>) -> Vec<HostPattern> {
    vs.spec
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect()
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
                s.gateway.reporter(diags).note(
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
                http_stats: Arc::new(ConnManagerStats::new(format!(
                    "outbound_{}",
                    listener_name(address)
                ))),
            }),
        );
    }
    out
}
