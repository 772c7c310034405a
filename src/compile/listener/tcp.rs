//! TCP on a Gateway: `tcp` routes for TCP servers and TLS-terminated TCP, and `tls` routes
//! (SNI) for PASSTHROUGH servers.

use std::sync::Arc;

use super::select::SelectedServer;
use super::{vs_hosts, TcpDestination, TcpRoute};
use crate::compile::cluster::ClusterBuilder;
use crate::compile::error::CompileError;
use crate::compile::route::{resolve_gateway_ref, vs_binds_gateway};
use crate::compile::Instance;
use crate::config::diag::Diagnostic;
use crate::config::host::{intersection, HostPattern};
use crate::config::load::{Resource, Resources};
use crate::config::types::{RouteDestination, VirtualService};

/// The weighted destinations of a `tls` or `tcp` rule. A destination whose cluster cannot be
/// built gets a stand-in without endpoints ([`ClusterBuilder::missing`]): connections sent to
/// it are closed, as Envoy's `tcp_proxy` closes them for a cluster it does not have. An
/// undefined subset is the analyzer's warning (IST0101); other reasons come back as errors.
fn tcp_destinations(
    route: &[RouteDestination],
    vs: &Resource<VirtualService>,
    s: &SelectedServer<'_>,
    clusters: &mut ClusterBuilder<'_>,
    errors: &mut Vec<String>,
) -> Result<Vec<TcpDestination>, CompileError> {
    let mut out = Vec::new();
    for d in route {
        let Some(dest) = &d.destination else { continue };
        let cluster = match clusters.route_destination(dest, &vs.meta.namespace, s.gateway_port) {
            Ok(c) => c,
            Err(e) => {
                if !matches!(e, CompileError::UndefinedSubset { .. }) {
                    errors.push(format!("{e}; connections to this destination are closed"));
                }
                clusters.missing(dest, s.gateway_port)?
            }
        };
        out.push(TcpDestination {
            cluster,
            weight: d.weight.max(0) as u32,
        });
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
pub(super) fn passthrough_routes(
    s: &SelectedServer<'_>,
    key: &str,
    resources: &Resources,
    _instance: &Instance,
    clusters: &mut ClusterBuilder<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(Vec<HostPattern>, Arc<TcpRoute>)> {
    let mut out = Vec::new();
    for vs in &resources.virtual_services {
        if vs.spec.tls.is_empty() || !vs_binds_gateway(vs, key) {
            continue;
        }
        let admitted = s.admitted(&vs.meta.namespace);
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
                let mut errors = Vec::new();
                let built = tcp_destinations(&rule.route, vs, s, clusters, &mut errors);
                for e in errors {
                    vs.reporter(diags)
                        .error_part(None, format!("spec.tls[{i}].route"), e);
                }
                match built {
                    Ok(destinations) => out.push((
                        names,
                        Arc::new(TcpRoute::new(
                            format!("VirtualService {} tls[{i}]", vs.key()),
                            destinations,
                        )),
                    )),
                    Err(e) => vs.reporter(diags).error_part(
                        None,
                        format!("spec.tls[{i}].route"),
                        e.to_string(),
                    ),
                }
            }
        }
    }
    out
}

/// TCP on a gateway: only the first VirtualService and `tcp` rule that match the server are
/// used (TCP carries no host to choose by).
pub(super) fn tcp_route(
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
        if intersection(&server_hosts, &vs_hosts(vs)).is_empty() {
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
            let mut errors = Vec::new();
            let built = tcp_destinations(&rule.route, vs, s, clusters, &mut errors);
            for e in errors {
                vs.reporter(diags)
                    .error_part(None, format!("spec.tcp[{i}].route"), e);
            }
            return match built {
                Ok(destinations) => Some(Arc::new(TcpRoute::new(
                    format!("VirtualService {} tcp[{i}]", vs.key()),
                    destinations,
                ))),
                Err(e) => {
                    vs.reporter(diags).error_part(
                        None,
                        format!("spec.tcp[{i}].route"),
                        e.to_string(),
                    );
                    None
                }
            };
        }
    }
    None
}
