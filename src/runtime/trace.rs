//! The end of a request's trace: what the log phase knows, handed to the trace
//! (`observe::tracing::RequestTrace::finish`), which exports its spans if it is sampled.

use pingora::prelude::*;
use pingora_proxy::Session;

use super::log::outcome;
use super::request::RequestCtx;
use super::State;
use crate::compile::reply::ResponseFlag;
use crate::telemetry::tracing::{Finished, Grpc};

/// Ends the request's spans (no-op without a sampled trace).
pub fn finish(state: &State, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    // An unsampled trace exports nothing: skip gathering what its spans would say.
    let Some(trace) = ctx.trace.take().filter(|t| t.sampled) else {
        return;
    };
    let (status, flag) = outcome(session, e, ctx);
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let down = session.as_downstream();
    trace.finish(
        &Finished {
            operation: ctx.route().map(|r| r.operation.as_str()),
            method: req.method.as_str(),
            scheme: ctx.downstream.scheme,
            authority: &ctx.downstream.authority,
            path,
            protocol: if session.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            user_agent: header("user-agent"),
            request_id: &ctx.request_id,
            client_trace_id: header("x-client-trace-id"),
            peer: ctx.peer_ip,
            status,
            flags: flag.map_or("-", ResponseFlag::as_str),
            cluster: ctx.target.as_ref().map(|t| t.cluster.name.as_str()),
            request_size: down.body_bytes_read() as u64,
            response_size: down.body_bytes_sent() as u64,
            end: None,
            grpc: header("content-type")
                .filter(|c| Grpc::is_grpc(c))
                .map(|content_type| {
                    let resp = session.response_written();
                    let resp_header = |name: &str| {
                        resp.and_then(|r| r.headers.get(name))
                            .and_then(|v| v.to_str().ok())
                    };
                    Grpc {
                        content_type,
                        timeout: header("grpc-timeout"),
                        status: resp_header("grpc-status"),
                        message: resp_header("grpc-message"),
                    }
                }),
        },
        &state.spans,
    );
}
