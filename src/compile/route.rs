//! HTTP routes: a VirtualService `http` rule, for one gateway server, compiled into ordered
//! routes (one per match block, as Envoy does) with their actions.

use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;

use super::action::redirect::{RedirectPath, RedirectPort};
use super::action::rewrite::{re2_substitution, PathRewrite};
use super::action::Mirror;
use super::action::{
    Action, Cors, DirectResponse, Fault, Forward, HeaderOps, Redirect, RetryPolicy, Rewrite,
    WeightedCluster,
};
use super::cluster::ClusterBuilder;
use super::delegate::merge_http_route;
use super::error::CompileError;
use super::matcher::{RequestMatch, RequestView};
use super::tracing::operation;
use crate::config::load::Resource;
use crate::config::resolve::{resolve_gateway_name, MESH};
use crate::config::types::{HttpMatchRequest, HttpRoute, RedirectPortSelection, VirtualService};

/// One Envoy route: a match block and what to do with requests that match it.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// `%ROUTE_NAME%`: the rule name, `rule.match` when the block is named too.
    pub name: String,
    /// Where it came from: `VirtualService ns/name http[2]`.
    pub source: String,
    /// The match block as written (for `routes` and `/config_dump`).
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_spec: Option<HttpMatchRequest>,
    #[serde(skip)]
    pub matcher: RequestMatch,
    pub action: Action,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// The span name (Istio's route decorator, `compile::tracing::operation`).
    #[serde(skip)]
    pub operation: String,
}

impl Route {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.matcher.matches(req)
    }

    pub fn is_catch_all(&self) -> bool {
        self.matcher.is_catch_all()
    }
}

/// The first route that matches, in order.
pub fn first_match<'r>(routes: &'r [Route], req: &RequestView<'_>) -> Option<&'r Route> {
    routes.iter().find(|r| r.matches(req))
}

/// Everything route compilation needs to know about the server it compiles for.
pub struct ServerContext<'a> {
    /// `namespace/name` of the Gateway.
    pub gateway: &'a str,
    /// The port the Gateway declares (before `--port-map`): Istio compares `match.port` with it
    /// and uses it as the default destination port.
    pub gateway_port: u16,
    /// This instance's labels, for `sourceLabels` on a gateway.
    pub instance_labels: &'a BTreeMap<String, String>,
    /// An egress gateway under REGISTRY_ONLY: destinations no ServiceEntry lists are refused.
    pub registry_only: bool,
}

/// Resolves a VirtualService's gateway reference (`name`, `ns/name`, `./name`, legacy
/// `name.ns[.svc.cluster.local]`) to `namespace/name`, by the rule `check` uses.
pub fn resolve_gateway_ref(reference: &str, vs_namespace: &str) -> String {
    if reference == MESH {
        return MESH.into();
    }
    resolve_gateway_name(reference, vs_namespace).key()
}

/// Whether the VirtualService is bound to `gateway` (`namespace/name`). An empty `gateways`
/// list means `mesh` only: never served by a gateway.
pub fn vs_binds_gateway(vs: &Resource<VirtualService>, gateway: &str) -> bool {
    vs.spec
        .gateways
        .iter()
        .any(|g| resolve_gateway_ref(g, &vs.meta.namespace) == gateway)
}

/// Looks up a VirtualService by namespace and name (delegation).
pub type FindVirtualService<'a> =
    &'a dyn Fn(&str, &str) -> Option<std::sync::Arc<Resource<VirtualService>>>;

/// Compiles the `http` rules of `vs` for one server. Generation stops after the first
/// catch-all block (what follows can never match), as Istio does.
pub fn compile_http_routes(
    vs: &Resource<VirtualService>,
    server: &ServerContext<'_>,
    clusters: &mut ClusterBuilder<'_>,
    delegates: FindVirtualService<'_>,
    errors: &mut Vec<String>,
) -> Vec<Route> {
    let mut out = Vec::new();
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let source = format!("VirtualService {} http[{i}]", vs.key());
        if let Some(d) = &rule.delegate {
            let ns = d
                .namespace
                .clone()
                .unwrap_or_else(|| vs.meta.namespace.clone());
            // Istio (`virtualservice_controller.go`) also skips a delegate that is not exported
            // to the root's namespace.
            let visible = |child: &Resource<VirtualService>| {
                crate::config::validate::exported_to(
                    &child.spec.export_to,
                    &child.meta.namespace,
                    &vs.meta.namespace,
                )
            };
            // A missing delegate: Istio ignores the rule (`virtualservice_controller.go`:
            // "delegate not found, ignore only the current HTTP route"); validation warns.
            if let Some(child) = delegates(&ns, &d.name).filter(|c| visible(c)) {
                if compile_delegate(vs, rule, &child, server, clusters, errors, &mut out) {
                    return out;
                }
            }
            continue;
        }
        let blocks: Vec<Option<&HttpMatchRequest>> = if rule.matches.is_empty() {
            vec![None]
        } else {
            rule.matches.iter().map(Some).collect()
        };
        for block in blocks {
            if !block_applies(block, vs, server) {
                continue;
            }
            let built = compile_route(
                rule,
                block,
                &source,
                &vs.meta.namespace,
                server,
                clusters,
                errors,
            );
            if push_route(built, &vs.meta.name, server, &source, errors, &mut out) {
                return out;
            }
        }
    }
    out
}

/// Istio delegation: each rule of the delegate VirtualService merged with the root rule
/// (`compile::delegate`: inherited actions, merged match blocks, conflicting rules dropped).
/// Returns true when a catch-all ended generation.
fn compile_delegate(
    root: &Resource<VirtualService>,
    root_rule: &HttpRoute,
    child: &Resource<VirtualService>,
    server: &ServerContext<'_>,
    clusters: &mut ClusterBuilder<'_>,
    errors: &mut Vec<String>,
    out: &mut Vec<Route>,
) -> bool {
    for (i, rule) in child.spec.http.iter().enumerate() {
        let source = format!(
            "VirtualService {} http[{i}] (delegate of {})",
            child.key(),
            root.key()
        );
        // A child rule whose match the root's cannot contain is never served.
        let Some(merged) = merge_http_route(root_rule, rule) else {
            continue;
        };
        let blocks: Vec<Option<&HttpMatchRequest>> = if merged.matches.is_empty() {
            vec![None]
        } else {
            merged.matches.iter().map(Some).collect()
        };
        for block in blocks {
            if !block_applies(block, root, server) {
                continue;
            }
            let built = compile_route(
                &merged,
                block,
                &source,
                &child.meta.namespace,
                server,
                clusters,
                errors,
            );
            if push_route(built, &root.meta.name, server, &source, errors, out) {
                return true;
            }
        }
    }
    false
}

/// Keeps a built route with its operation name (Istio's `GetRouteOperation`, named after the
/// root VirtualService) or reports why it could not be built. True when it is a catch-all: no
/// later rule can match.
fn push_route(
    built: Result<Route, CompileError>,
    vs_name: &str,
    server: &ServerContext<'_>,
    source: &str,
    errors: &mut Vec<String>,
    out: &mut Vec<Route>,
) -> bool {
    match built {
        Ok(mut route) => {
            route.operation = operation(
                route.match_spec.as_ref(),
                &route.action,
                vs_name,
                server.gateway_port,
            );
            let catch_all = route.is_catch_all();
            out.push(route);
            catch_all
        }
        Err(e) => {
            errors.push(format!("{source}: {e}"));
            false
        }
    }
}

/// `match.gateways`, `match.port` and `sourceLabels` decide at build time whether a block is
/// generated for this server at all.
fn block_applies(
    block: Option<&HttpMatchRequest>,
    vs: &Resource<VirtualService>,
    server: &ServerContext<'_>,
) -> bool {
    let Some(b) = block else {
        return true;
    };
    if !b.gateways.is_empty() {
        let ours = b
            .gateways
            .iter()
            .any(|g| resolve_gateway_ref(g, &vs.meta.namespace) == server.gateway);
        if !ours {
            return false;
        }
    } else if !b.source_labels.is_empty()
        && !b
            .source_labels
            .iter()
            .all(|(k, v)| server.instance_labels.get(k) == Some(v))
    {
        return false;
    }
    b.port.is_none_or(|p| p == u32::from(server.gateway_port))
}

fn route_name(rule: &HttpRoute, block: Option<&HttpMatchRequest>) -> String {
    let match_name = block
        .and_then(|b| b.name.as_deref())
        .filter(|n| !n.is_empty());
    match (rule.name.as_deref().filter(|n| !n.is_empty()), match_name) {
        (Some(r), Some(m)) => format!("{r}.{m}"),
        (Some(r), None) => r.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => String::new(),
    }
}

fn compile_route(
    rule: &HttpRoute,
    block: Option<&HttpMatchRequest>,
    source: &str,
    namespace: &str,
    server: &ServerContext<'_>,
    clusters: &mut ClusterBuilder<'_>,
    errors: &mut Vec<String>,
) -> Result<Route, CompileError> {
    let matcher = match block {
        Some(b) => RequestMatch::compile(b)?,
        None => RequestMatch::default(),
    };
    let headers = rule.headers.as_ref();
    let (request_headers, authority_from_headers) =
        HeaderOps::compile(headers.and_then(|h| h.request.as_ref()))?;
    let (response_headers, _) = HeaderOps::compile(headers.and_then(|h| h.response.as_ref()))?;
    let uri_match = block.and_then(|b| b.uri.as_ref());

    let action = if let Some(r) = &rule.redirect {
        let path = match (&r.uri, &r.prefix_rewrite) {
            (Some(u), _) => Some(RedirectPath::Full(u.clone())),
            (None, Some(p)) => Some(RedirectPath::PrefixRewrite {
                prefix: uri_match
                    .and_then(|u| u.prefix.clone())
                    .unwrap_or_else(|| "/".into()),
                replacement: p.clone(),
            }),
            (None, None) => None,
        };
        let port = match (r.port, r.derive_port) {
            (Some(p), _) => {
                RedirectPort::Fixed(u16::try_from(p).map_err(|_| CompileError::PortOutOfRange {
                    what: "redirect",
                    port: i64::from(p),
                })?)
            }
            (None, Some(RedirectPortSelection::FromProtocolDefault)) => {
                RedirectPort::ProtocolDefault
            }
            // Istio bakes the listener port in.
            (None, Some(RedirectPortSelection::FromRequestPort)) => {
                RedirectPort::Fixed(server.gateway_port)
            }
            (None, None) => RedirectPort::Keep,
        };
        Action::Redirect(Redirect {
            path,
            authority: r.authority.clone(),
            scheme: r.scheme.clone(),
            port,
            code: r.redirect_code.map_or(301, |c| c as u16),
        })
    } else if let Some(d) = &rule.direct_response {
        let body = match &d.body {
            Some(b) => match (&b.string, &b.bytes) {
                (Some(s), _) => Bytes::from(s.clone()),
                (None, Some(b64)) => {
                    use base64::Engine;
                    Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64)?)
                }
                (None, None) => Bytes::new(),
            },
            None => Bytes::new(),
        };
        Action::DirectResponse(DirectResponse {
            status: d.status as u16,
            body,
        })
    } else {
        let mut destinations = Vec::new();
        for d in &rule.route {
            let Some(dest) = &d.destination else { continue };
            let (cluster, missing) =
                match clusters.route_destination(dest, namespace, server.gateway_port) {
                    Ok(c) => (c, false),
                    Err(e) => {
                        // An undefined subset is the analyzer's warning (IST0101); other
                        // reasons are this route's error.
                        if !matches!(e, CompileError::UndefinedSubset { .. }) {
                            errors.push(format!(
                                "{source}: {e}; requests routed to this destination get 503 NC"
                            ));
                        }
                        (clusters.missing(dest, server.gateway_port)?, true)
                    }
                };
            let dh = d.headers.as_ref();
            let (req_ops, authority) = HeaderOps::compile(dh.and_then(|h| h.request.as_ref()))?;
            let (resp_ops, _) = HeaderOps::compile(dh.and_then(|h| h.response.as_ref()))?;
            destinations.push(WeightedCluster {
                refused: missing || (server.registry_only && !cluster.registered()),
                cluster,
                weight: d.weight.max(0) as u32,
                request_headers: req_ops,
                response_headers: resp_ops,
                authority,
            });
        }
        if destinations.is_empty() {
            return Err(CompileError::NoDestination);
        }
        let rw = rule.rewrite.as_ref();
        let path = match rw {
            Some(rw) if rw.uri.is_some() => {
                let replacement = rw.uri.clone().unwrap_or_default();
                Some(match uri_match {
                    Some(u) if u.prefix.is_some() => PathRewrite::Prefix {
                        prefix: u.prefix.clone().unwrap_or_default(),
                        replacement,
                    },
                    Some(_) => PathRewrite::Full(replacement),
                    // No uri condition: Istio matches prefix "/" and rewrites that prefix.
                    None => PathRewrite::Prefix {
                        prefix: "/".into(),
                        replacement,
                    },
                })
            }
            Some(rw) => match &rw.uri_regex_rewrite {
                Some(rr) => Some(PathRewrite::Regex {
                    pattern: regex::Regex::new(&rr.pattern).map_err(|source| {
                        CompileError::Regex {
                            field: "uriRegexRewrite.match".into(),
                            source,
                        }
                    })?,
                    replacement: re2_substitution(&rr.rewrite),
                }),
                None => None,
            },
            None => None,
        };
        let authority = rw
            .and_then(|r| r.authority.clone())
            .or(authority_from_headers);
        let timeout = rule.timeout.map(|t| t.get()).filter(|t| !t.is_zero());
        // Istio drops the previous-hosts retry predicate when the one destination hashes.
        let consistent_hash =
            rule.route.len() == 1 && destinations[0].cluster.lb.hash_key().is_some();
        let retry = RetryPolicy::compile(rule.retries.as_ref(), consistent_hash);
        let mut forward = Forward::new(destinations, Rewrite { path, authority }, timeout, retry);
        forward.mirrors = compile_mirrors(rule, namespace, server, clusters)?;
        Action::Forward(forward)
    };

    Ok(Route {
        name: route_name(rule, block),
        source: source.to_string(),
        match_spec: block.cloned(),
        matcher,
        action,
        request_headers,
        response_headers,
        fault: rule.fault.as_ref().and_then(Fault::compile),
        cors: rule.cors_policy.as_ref().map(Cors::compile).transpose()?,
        operation: String::new(),
    })
}

/// `mirror` and `mirrors` (`route.go` `applyHTTPRouteDestination`): each with its share of
/// requests; a 0% mirror is left out.
fn compile_mirrors(
    rule: &HttpRoute,
    namespace: &str,
    server: &ServerContext<'_>,
    clusters: &mut ClusterBuilder<'_>,
) -> Result<Vec<Mirror>, CompileError> {
    let mut wanted = Vec::new();
    if let (Some(d), Some(share)) = (&rule.mirror, Mirror::route_share(rule)) {
        wanted.push((d, share));
    }
    for m in &rule.mirrors {
        if let (Some(d), Some(share)) = (&m.destination, Mirror::policy_share(m)) {
            wanted.push((d, share));
        }
    }
    wanted
        .into_iter()
        .map(|(d, per_million)| {
            Ok(Mirror {
                cluster: clusters.route_destination(d, namespace, server.gateway_port)?,
                per_million,
            })
        })
        .collect()
}

/// Orders the routes of several VirtualServices on one host: by creation time, then name,
/// then namespace (Istio's order), each keeping its own order; catch-alls go last.
pub fn merge_virtual_host_routes(mut parts: Vec<(VsOrder, Vec<Route>)>) -> Vec<Route> {
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let all: Vec<Route> = parts.into_iter().flat_map(|(_, r)| r).collect();
    let (mut specific, catch_all): (Vec<Route>, Vec<Route>) =
        all.into_iter().partition(|r| !r.is_catch_all());
    specific.extend(catch_all);
    specific
}

/// Sort key of a VirtualService among those merged onto one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VsOrder {
    pub creation_timestamp: String,
    pub name: String,
    pub namespace: String,
}

impl VsOrder {
    pub fn of(vs: &Resource<VirtualService>) -> VsOrder {
        VsOrder {
            creation_timestamp: vs.meta.creation_timestamp.clone().unwrap_or_default(),
            name: vs.meta.name.clone(),
            namespace: vs.meta.namespace.clone(),
        }
    }
}
