//! Routing a request: listener → route table (the TLS server's own, or the port's) → virtual
//! host → first matching route; a host without a route is the snapshot's to answer (egress
//! fallback or refusal, or 404 on an ingress gateway).

use std::sync::Arc;

use crate::compile::action::redirect::{https_redirect, RedirectInput};
use crate::compile::egress::{Addressing, Unrouted};
use crate::compile::listener::{Listener, ListenerKind};
use crate::compile::matcher::RequestView;
use crate::compile::reply::LocalReply;
use crate::compile::vhost::RouteTable;
use crate::compile::Snapshot;
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
    Egress(Arc<Cluster>),
    /// Egress to a host the registry does not list.
    Refused(LocalReply),
    Reply(LocalReply),
}

/// The route table serving this request.
fn route_table<'a>(
    listener: &'a Listener,
    tls: Option<&DownstreamTls>,
) -> Option<&'a Arc<RouteTable>> {
    match (&listener.kind, tls) {
        (ListenerKind::Http { routes }, _) => Some(routes),
        (ListenerKind::Tls(chains), Some(t)) => chains.route_table(t.chain, &t.route_table),
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
        if let ListenerKind::Tls(chains) = &listener.kind {
            if chains.other_chain_serves(table, host) {
                return Decision::Reply(LocalReply::misdirected(host));
            }
        }
        return match snapshot.unrouted(host, port, addressing) {
            Unrouted::Cluster(c) => Decision::Egress(c),
            Unrouted::Refused(r) => Decision::Refused(r),
            Unrouted::NotFound => Decision::Reply(LocalReply::no_route()),
        };
    };
    let vhost = &table.virtual_hosts[vhost_index];
    // `tls.httpsRedirect` (Envoy `require_tls`) applies to the whole virtual host, before any
    // route is matched: hosts without a route or a matching route are redirected too.
    if let (Some(r), "http") = (vhost.https_redirect, req.scheme) {
        let input = RedirectInput {
            scheme: req.scheme,
            authority: req.authority,
            path: req.path,
            query: req.query,
        };
        return Decision::Reply(https_redirect(r.port, &input));
    }
    match vhost.routes.iter().position(|r| r.matches(req)) {
        Some(route) => Decision::Route {
            table: table.clone(),
            vhost: vhost_index,
            route,
        },
        None => Decision::Reply(LocalReply::no_route()),
    }
}
