//! The end of a request: one access-log line and the request metrics.

use pingora::prelude::*;
use pingora::ErrorSource;
use pingora_proxy::Session;

use super::outbound::forwarded_for;
use super::request::RequestCtx;
use super::State;
use crate::compile::reply::ResponseFlag;
use crate::observe::access_entry::AccessLogEntry;
use crate::telemetry::istio::{self, HttpKey, HttpSample};

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

    record_metrics(state, session, ctx, status, flag);
}

/// Istio's request metrics and Envoy's connection manager and cluster counters, with the
/// label sets compile resolved for the cluster (or for no cluster): only the response's labels
/// vary per request.
fn record_metrics(
    state: &State,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    flag: Option<ResponseFlag>,
) {
    let Some(snapshot) = ctx.snapshot.as_ref() else {
        return;
    };
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    if let Some(l) = local.and_then(|a| snapshot.listener(a)) {
        l.http_stats.record(&state.metrics.http, status);
    }
    // Never label by the client's Host: it is attacker-controlled (cardinality).
    let labels = match &ctx.target {
        Some(t) => {
            if ctx.attempts > 0 {
                let timed_out = flag == Some(ResponseFlag::UT);
                t.cluster
                    .stats
                    .record_request(status, ctx.attempts - 1, timed_out);
            }
            t.cluster.telemetry.of(ctx.upstream_addr)
        }
        None if ctx.egress_refused => &snapshot.telemetry.blackhole,
        None => &snapshot.telemetry.unknown,
    };
    let response = session.response_written();
    let grpc = ctx.grpc.is_grpc();
    let grpc_status = grpc.then(|| {
        let header = response
            .and_then(|r| r.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok());
        istio::grpc_status(ctx.grpc.trailer_status(), header, status)
    });
    let downstream = session.as_downstream();
    let sample = HttpSample {
        key: HttpKey {
            grpc,
            response_code: status,
            grpc_status,
            response_flags: flag.map_or("-", ResponseFlag::as_str),
        },
        duration_ms: ctx.start.elapsed().as_secs_f64() * 1000.0,
        request_bytes: istio::request_head_len(session.req_header())
            + downstream.body_bytes_read() as u64,
        response_bytes: response.map_or(0, istio::response_head_len)
            + downstream.body_bytes_sent() as u64,
        messages: ctx.grpc.messages(),
    };
    labels.record_http(&state.metrics.istio, &sample);
}
