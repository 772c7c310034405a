//! The end of a request: one access-log line and the request metrics.

use pingora::prelude::*;
use pingora::ErrorSource;
use pingora_proxy::Session;

use super::outbound::forwarded_for;
use super::request::RequestCtx;
use super::State;
use crate::compile::reply::ResponseFlag;
use crate::observe::access_log::AccessLogEntry;

fn header_string(session: &Session, name: &str) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The status sent (0: none) and Envoy's response flag.
pub fn outcome(
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
) -> (u16, Option<ResponseFlag>) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or_else(|| ctx.reply.as_ref().map(|r| r.status))
        .unwrap_or(0);
    let flag = ctx.reply.as_ref().and_then(|r| r.flag).or_else(|| {
        let err = e.filter(|_| status != 0)?;
        Some(if err.esource() == &ErrorSource::Downstream {
            ResponseFlag::DC
        } else {
            ResponseFlag::UC
        })
    });
    (status, flag)
}

/// Logs the finished request and counts it.
pub fn finish(state: &State, session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let req = session.req_header();
    let (status, flag) = outcome(session, e, ctx);
    let cluster = ctx.target.as_ref().map(|t| &t.cluster);
    let client = session.client_addr();
    let client_ip = client.and_then(|a| a.as_inet()).map(|a| a.ip());

    let mut entry = AccessLogEntry::new(ctx.start_time);
    entry.method = Some(req.method.to_string());
    entry.path = Some(
        req.uri
            .path_and_query()
            .map_or_else(|| req.uri.path().to_string(), |p| p.as_str().to_string()),
    );
    entry.protocol = Some(
        if session.is_http2() {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        }
        .to_string(),
    );
    entry.response_code = status;
    entry.response_flags = Some(flag.map(|f| f.as_str().to_string()).unwrap_or_default());
    entry.response_code_details = Some(
        ctx.reply
            .as_ref()
            .map(|r| r.details)
            .unwrap_or(if ctx.target.is_some() {
                "via_upstream"
            } else {
                ""
            })
            .to_string(),
    );
    entry.upstream_transport_failure_reason = ctx.upstream_failure.clone();
    entry.bytes_received = session.as_downstream().body_bytes_read() as u64;
    entry.bytes_sent = session.as_downstream().body_bytes_sent() as u64;
    entry.duration = ctx.start.elapsed().as_millis() as u64;
    entry.upstream_service_time = ctx.upstream_service_time;
    // Envoy logs the request's x-forwarded-for after appending the client address.
    let xff = header_string(session, "x-forwarded-for");
    entry.x_forwarded_for = forwarded_for(xff.as_deref(), client_ip).or(xff);
    entry.user_agent = header_string(session, "user-agent");
    entry.request_id = Some(ctx.request_id.clone());
    entry.authority = Some(ctx.downstream.authority.clone());
    entry.upstream_host = ctx.upstream_addr.map(|a| a.to_string());
    entry.upstream_cluster = cluster
        .map(|c| c.name.clone())
        .or_else(|| ctx.egress_refused.then(|| "BlackHoleCluster".to_string()));
    entry.downstream_local_address = session.server_addr().map(|a| a.to_string());
    // The client as decided for the request (trusted XFF hop or PROXY source); the peer for a
    // request that failed before it was read.
    let remote = ctx.downstream.client.map(|a| a.to_string());
    entry.downstream_remote_address = remote.or_else(|| client.map(|a| a.to_string()));
    entry.downstream_direct_remote_address = client.map(|a| a.to_string());
    entry.scheme = Some(ctx.downstream.scheme.to_string());
    entry.attempts = (ctx.attempts > 0).then_some(ctx.attempts);
    entry.requested_server_name = ctx.downstream_tls().and_then(|t| t.sni.clone());
    entry.trace_id = ctx.trace.as_ref().map(|t| t.trace_id_hex());
    entry.route_name = ctx
        .route()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty());
    let response = session.response_written().map(|r| &r.headers);
    state
        .access_log
        .log_http(&entry, Some(&req.headers), response);

    // Never label by the client's Host: it is attacker-controlled (cardinality).
    let destination = cluster.map_or("unknown", |c| c.host.as_str());
    let destination_name = cluster.map_or("unknown", |c| c.name.as_str());
    let grpc = req
        .headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let labels = [
        "source",
        if grpc { "grpc" } else { "http" },
        &status.to_string(),
        flag.map_or("-", ResponseFlag::as_str),
        destination,
        destination_name,
    ];
    state.metrics.requests.with_label_values(&labels).inc();
    state
        .metrics
        .duration
        .with_label_values(&labels)
        .observe(ctx.start.elapsed().as_secs_f64() * 1000.0);
}
