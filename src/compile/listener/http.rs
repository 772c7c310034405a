//! Plain HTTP and terminated HTTPS servers: one route table per port (or per HTTPS server),
//! its virtual hosts the Gateway hosts ∩ VirtualService hosts, with `httpsRedirect`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use super::select::SelectedServer;
use super::vs_hosts;
use crate::compile::cluster::ClusterBuilder;
use crate::compile::route::{
    compile_http_routes, merge_virtual_host_routes, vs_binds_gateway, Route, VsOrder,
};
use crate::compile::vhost::{HttpsRedirect, RouteTable, VirtualHost};
use crate::compile::Instance;
use crate::config::diag::Diagnostic;
use crate::config::host::{intersection, HostPattern, ServerHost};
use crate::config::load::{Resource, Resources};
use crate::config::types::{Protocol, VirtualService};

/// For `httpsRedirect`: the Gateway port of an HTTPS server per host pattern.
pub(super) fn https_ports(
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
pub(super) fn http_route_table(
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
    // Only a VirtualService without hosts is a delegate (Istio `delegateVirtualServices`).
    let delegates = |ns: &str, name: &str| -> Option<Arc<Resource<VirtualService>>> {
        resources
            .virtual_services
            .iter()
            .find(|v| v.meta.namespace == ns && v.meta.name == name && v.spec.hosts.is_empty())
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
            let common = intersection(&s.admitted(&vs.meta.namespace), &vs_hosts(vs));
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
                        vs.reporter(diags).error_part(None, "spec.http", e);
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
