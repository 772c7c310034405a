//! One attempt at the upstream, in Envoy's router order: the jittered back-off before a retry
//! (within the route timeout), the endpoint choice in the cluster (hash affinity, previously
//! tried hosts left out when the retry policy says so), the destination check for clusters the
//! request itself names, and the peer made from the cluster's compiled template. Outlier
//! detection learns how each attempt ended.

use std::net::SocketAddr;
use std::time::Instant;

use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorSource;
use pingora_proxy::Session;

use super::destination::{self, destination_refused};
use super::request::RequestCtx;
use super::State;
use crate::compile::reply::{LocalReply, ResponseFlag};
use crate::compile::Role;
use crate::upstream::outlier::Outcome;
use crate::upstream::PickInput;

/// The downstream connection's remote and local addresses (cookie affinity's made value).
fn connection_addrs(session: &Session) -> Option<(SocketAddr, SocketAddr)> {
    let remote = session.client_addr()?.as_inet()?;
    let local = session.server_addr()?.as_inet()?;
    Some((*remote, *local))
}

/// The peer for the next attempt (`upstream_peer`, once per try).
pub async fn next_peer(
    state: &State,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<Box<HttpPeer>> {
    let Some(target) = &ctx.target else {
        return Error::e_explain(InternalError, "no upstream target");
    };
    let cluster = target.cluster.clone();
    if ctx.attempts > 0 {
        // Envoy's jittered back-off before each retry, within the route timeout.
        let wait = ctx.retry_policy().backoff(ctx.attempts);
        let wait = ctx.remaining(Instant::now()).map_or(wait, |r| wait.min(r));
        tokio::time::sleep(wait).await;
    }
    ctx.attempts += 1;
    let now = Instant::now();
    let remaining = ctx.remaining(now);
    if remaining.is_some_and(|r| r.is_zero()) {
        ctx.reply = Some(LocalReply::timeout());
        return Error::e_explain(
            HTTPStatus(504),
            "route timeout elapsed before the upstream answered",
        );
    }
    let policy = ctx.retry_policy();
    let budget = policy.attempt_budget(remaining);
    let mut buf = [0u8; 48];
    let conn = connection_addrs(session);
    let (hash_input, set_cookie) = match cluster.lb.hash_key() {
        Some(k) => k.input_or_issue(session.req_header(), ctx.client_ip(), conn, &mut buf),
        None => (None, None),
    };
    let input = PickInput {
        request_host: &ctx.downstream.host,
        request_port: ctx.downstream.port,
        hash_input,
        exclude: if policy.previous_hosts {
            &ctx.tried
        } else {
            &[]
        },
    };
    let picked = cluster.pick(input, &state.dns).await;
    ctx.set_cookie = set_cookie;
    let picked = match picked {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(cluster = %cluster.name, "no healthy upstream: {e}");
            ctx.reply = Some(LocalReply::no_healthy_upstream());
            return Error::e_explain(HTTPStatus(503), e.to_string());
        }
    };
    if destination::request_derived(&cluster) {
        let role = ctx
            .snapshot
            .as_ref()
            .map_or(Role::Ingress, |s| s.instance.role);
        let admin = state.options.admin;
        if let Some(why) = destination::refused(picked.address, role, admin) {
            ctx.reply = Some(destination_refused(why));
            return Error::e_explain(HTTPStatus(403), why);
        }
    }
    if let Some(a) = ctx.admission.as_mut() {
        a.set_endpoint(picked.active.clone());
    }
    ctx.upstream_addr = Some(picked.address);
    ctx.tried.push(picked.address);
    ctx.upstream_start = Some(now);
    ctx.trace_attempt();
    Ok(Box::new(cluster.peer(
        picked.address,
        &ctx.downstream.host,
        budget,
    )))
}

/// A failed connection attempt: its reason for the log, the cluster's counter, and a gateway
/// error for outlier detection.
pub fn connect_failed(ctx: &mut RequestCtx, e: &Error) {
    let mut reason = e.etype().as_str().to_string();
    if let Some(c) = &e.context {
        reason.push_str(&format!(": {c}"));
    }
    ctx.upstream_failure = Some(reason);
    if let Some(t) = &ctx.target {
        t.cluster
            .stats
            .connect_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(addr) = ctx.upstream_addr {
            t.cluster.record_outcome(addr, Outcome::GatewayError);
        }
    }
}

/// Outlier detection learns from how the last attempt ended (earlier failed attempts were
/// recorded in `fail_to_connect`).
pub fn record_last_attempt(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let (Some(t), Some(addr)) = (&ctx.target, ctx.upstream_addr) else {
        return;
    };
    if t.cluster.outlier.is_none()
        || ctx.reply.as_ref().and_then(|r| r.flag) == Some(ResponseFlag::UF)
    {
        return;
    }
    let upstream_status = (ctx.upstream_service_time.is_some())
        .then(|| session.response_written().map(|r| r.status.as_u16()))
        .flatten();
    let outcome = match (upstream_status, e) {
        (Some(status), _) => Outcome::of_status(status),
        (None, Some(err)) if err.esource() == &ErrorSource::Upstream => Outcome::GatewayError,
        (None, _) => return,
    };
    t.cluster.record_outcome(addr, outcome);
}
