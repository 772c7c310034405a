//! Routing a request: listener → route table (the TLS server's own, or the port's) → virtual
//! host → first matching route; on an egress gateway, hosts without a route fall back to the
//! registry (or are refused).

use std::sync::Arc;

use super::reply::{flags, LocalReply};
use crate::compile::listener::{Listener, ListenerKind};
use crate::compile::matcher::RequestView;
use crate::compile::vhost::RouteTable;
use crate::compile::{OutboundPolicy, Role, Snapshot};
use crate::tls::server::DownstreamTls;
use crate::upstream::Cluster;

/// Where a request goes.
pub enum Decision {
    /// A configured route (indices into the table, which the request keeps alive).
    Route {
        table: Arc<RouteTable>,
        vhost: usize,
        route: usize,
    },
    /// Egress without a route: straight to the host's cluster.
    Egress {
        cluster: Arc<Cluster>,
        registered: bool,
    },
    Reply(LocalReply),
}

/// How the client addressed an egress request (decides the refusal status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Host header (DNS or /etc/hosts points the name at the gateway).
    Host,
    /// Absolute-form request from an `HTTP_PROXY` client.
    ForwardProxy,
}

impl Addressing {
    pub fn metric_label(self) -> &'static str {
        match self {
            Addressing::Host => "host",
            Addressing::ForwardProxy => "forward_proxy",
        }
    }
}

/// The route table serving this request.
fn route_table<'a>(
    listener: &'a Listener,
    tls: Option<&DownstreamTls>,
) -> Option<&'a Arc<RouteTable>> {
    match (&listener.kind, tls) {
        (ListenerKind::Http { routes }, _) => Some(routes),
        (ListenerKind::Tls(chains), Some(t)) => chains.route_table(&t.route_table),
        _ => None,
    }
}

pub fn decide(
    snapshot: &Snapshot,
    listener: &Listener,
    tls: Option<&DownstreamTls>,
    req: &RequestView<'_>,
    host: &str,
    port: u16,
    addressing: Addressing,
) -> Decision {
    let Some(table) = route_table(listener, tls) else {
        // The TLS server this connection negotiated was removed by a reload.
        return Decision::Reply(LocalReply::misdirected(host));
    };
    let Some(vhost_index) = table.find_index(host) else {
        if let (ListenerKind::Tls(chains), Some(t)) = (&listener.kind, tls) {
            if chains.other_chain_serves(&t.route_table, host) {
                return Decision::Reply(LocalReply::misdirected(host));
            }
        }
        return egress_or_not_found(snapshot, req, host, port, addressing);
    };
    let vhost = &table.virtual_hosts[vhost_index];
    // `tls.httpsRedirect` (Envoy `require_tls`) applies to the whole virtual host, before any
    // route is matched: hosts without a route or a matching route are redirected too.
    if let (Some(r), "http") = (vhost.https_redirect, req.scheme) {
        return Decision::Reply(https_redirect(r.port, req));
    }
    match vhost.routes.iter().position(|r| r.matches(req)) {
        Some(route) => Decision::Route {
            table: table.clone(),
            vhost: vhost_index,
            route,
        },
        None => Decision::Reply(LocalReply::no_route(host, req.path)),
    }
}

/// 301 to the same host and path (query kept) on https, `:443` omitted.
fn https_redirect(port: u16, req: &RequestView<'_>) -> LocalReply {
    let (host, _) = crate::compile::action::split_authority(req.authority);
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("https://{host}{port}{}{query}", req.path);
    LocalReply::new(301, None, "https_redirect", "").header("location", location)
}

fn egress_or_not_found(
    snapshot: &Snapshot,
    req: &RequestView<'_>,
    host: &str,
    port: u16,
    addressing: Addressing,
) -> Decision {
    if snapshot.instance.role != Role::Egress {
        return Decision::Reply(LocalReply::no_route(host, req.path));
    }
    if let Some(cluster) = snapshot.egress_cluster(host, port) {
        return Decision::Egress {
            cluster: cluster.clone(),
            registered: true,
        };
    }
    match snapshot.instance.outbound_policy {
        OutboundPolicy::AllowAny => Decision::Egress {
            cluster: snapshot.passthrough.clone(),
            registered: false,
        },
        OutboundPolicy::RegistryOnly => {
            Decision::Reply(not_in_registry(snapshot, host, port, addressing))
        }
    }
}

/// The refusal for an unregistered host: 403 to proxy clients, 502 (Istio's `block_all`) to
/// host-addressed ones.
pub fn not_in_registry(
    snapshot: &Snapshot,
    host: &str,
    port: u16,
    addressing: Addressing,
) -> LocalReply {
    let status = match addressing {
        Addressing::ForwardProxy => 403,
        Addressing::Host => 502,
    };
    let why = match snapshot.registry.lookup(host, "default") {
        Some(r) => format!(
            "{host}:{port} is not allowed: ServiceEntry {} lists {} but not port {port}",
            r.service_entry, r.host
        ),
        None => format!("{host} is not in the registry: no ServiceEntry lists it (outbound policy REGISTRY_ONLY)"),
    };
    LocalReply::new(
        status,
        Some(flags::NR),
        "host_not_in_registry",
        format!("{why}\n"),
    )
}

/// Envoy's `normalize_path` (on in Istio's gateways): RFC 3986 §5.2.4 dot-segment removal, with
/// `%2e` counted as `.`, applied before routing so `..` cannot step from one route's prefix into
/// another's. Repeated slashes are kept (Istio leaves `merge_slashes` off). `None` when the path
/// has no dot segment.
pub fn normalize_path(path: &str) -> Option<String> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        let s = s.to_ascii_lowercase();
        matches!(s.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
    };
    let rest = path.strip_prefix('/')?;
    if !rest.split('/').any(|s| is_dot(s) || is_dot_dot(s)) {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.into_iter().enumerate() {
        let dot = is_dot(seg);
        let dot_dot = !dot && is_dot_dot(seg);
        if dot_dot {
            out.pop();
        }
        if dot || dot_dot {
            // A trailing dot segment leaves a directory: `/a/b/..` → `/a/`.
            if i == last {
                out.push("");
            }
            continue;
        }
        out.push(seg);
    }
    Some(format!("/{}", out.join("/")))
}
