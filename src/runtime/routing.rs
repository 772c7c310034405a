//! Routing a request: listener → route table (the TLS server's own, or the port's) → virtual
//! host → first matching route; a host without a route is the snapshot's to answer (egress
//! fallback or refusal, or 404 on an ingress gateway).

use std::sync::Arc;

use pingora_proxy::Session;

use super::request::{RequestCtx, Routed, Target};
use super::State;
use crate::compile::action::cors::CorsCheck;
use crate::compile::action::redirect::{https_redirect, RedirectInput};
use crate::compile::action::Action;
use crate::compile::egress::{Addressing, Unrouted};
use crate::compile::listener::{Listener, ListenerKind};
use crate::compile::matcher::RequestView;
use crate::compile::reply::LocalReply;
use crate::compile::reply::ResponseFlag;
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

/// Routes the request to a target cluster and admits it through the cluster's circuit
/// breaker.
pub async fn route(
    state: &State,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(), LocalReply> {
    let down = &ctx.downstream;
    if down.host.is_empty() {
        return Err(LocalReply::missing_host());
    }
    let snapshot = ctx
        .snapshot
        .clone()
        .unwrap_or_else(|| state.snapshot.load_full());
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    let Some(listener) = local.and_then(|a| snapshot.listener(a)) else {
        // The listener was removed by a reload while this connection was open.
        return Err(LocalReply::no_route());
    };
    let req = session.req_header();
    let view = RequestView {
        method: req.method.as_str(),
        scheme: down.scheme,
        authority: &down.authority,
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
        claims: ctx.claims.as_deref(),
    };
    let tls = ctx.downstream_tls();
    match decide(
        &snapshot,
        listener,
        tls,
        &view,
        &down.host,
        down.port,
        down.addressing,
    ) {
        Decision::Reply(r) => return Err(r),
        Decision::Refused(r) => {
            let label = down.addressing.metric_label();
            state
                .metrics
                .egress_denied
                .with_label_values(&[label])
                .inc();
            ctx.egress_refused = true;
            return Err(r);
        }
        Decision::Egress(cluster) => {
            ctx.target = Some(Target {
                cluster,
                destination: None,
            })
        }
        Decision::Route {
            table,
            vhost,
            route,
        } => {
            ctx.routed = Some(Routed {
                table,
                vhost,
                route,
            });
            apply_route(session, ctx).await?;
        }
    }
    let Some(target) = &ctx.target else {
        return Ok(());
    };
    let cluster = &target.cluster;
    let admission = cluster.admit().await.map_err(|_| LocalReply::overflow())?;
    ctx.admission = Some(admission);
    Ok(())
}

/// What a matched route does before the upstream: fault injection, CORS, redirect, direct
/// response, or the weighted choice of destination.
async fn apply_route(session: &Session, ctx: &mut RequestCtx) -> Result<(), LocalReply> {
    let Some(routed) = &ctx.routed else {
        return Ok(());
    };
    let table = routed.table.clone();
    let route = &table.virtual_hosts[routed.vhost].routes[routed.route];
    if let Some(fault) = &route.fault {
        let injected = fault.roll();
        if let Some(delay) = injected.delay {
            tokio::time::sleep(delay).await;
            ctx.reply = Some(LocalReply::new(0, Some(ResponseFlag::DI), "delayed", ""));
        }
        if let Some(abort) = injected.abort {
            return Err(abort);
        }
    }
    let req = session.req_header();
    if let Some(cors) = &route.cors {
        match cors.check(req) {
            CorsCheck::Preflight(reply) => return Err(reply),
            CorsCheck::Allowed(origin) => ctx.cors_origin = Some(origin),
            CorsCheck::Pass => {}
        }
    }
    match &route.action {
        Action::DirectResponse(d) => Err(d.reply()),
        Action::Redirect(r) => Err(r.reply(&RedirectInput {
            scheme: ctx.downstream.scheme,
            authority: &ctx.downstream.authority,
            path: req.uri.path(),
            query: req.uri.query(),
        })),
        Action::Forward(f) => {
            let i = f.choose();
            let dest = &f.destinations[i];
            if dest.refused {
                return Err(LocalReply::cluster_not_found());
            }
            ctx.deadline = f.timeout.map(|t| ctx.start + t);
            ctx.target = Some(Target {
                cluster: dest.cluster.clone(),
                destination: Some(i),
            });
            Ok(())
        }
    }
}
