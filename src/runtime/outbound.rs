//! The request as it leaves for the upstream and the response on its way back, in the order
//! Envoy builds them: the connection manager's edge headers first (`x-forwarded-for`,
//! `x-forwarded-proto`, `x-envoy-external-address`, a new `x-request-id`), then the router's
//! (`x-envoy-attempt-count`, `x-envoy-expected-rq-timeout-ms`), then the route's
//! `finalizeRequestHeaders`: header operations in Istio's order, the authority rewrite, the path
//! rewrite (keeping the client's path in `x-envoy-original-path`). Always origin-form.
//! Responses: hop-by-hop headers dropped, `x-envoy-upstream-service-time`, a made affinity
//! cookie, header operations, CORS, and the gateway's `server` name last (the connection
//! manager's `OVERWRITE`).

use std::net::IpAddr;
use std::time::Instant;

use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

use super::edge::append_forwarded_for;
use super::request::RequestCtx;

/// `x-forwarded-for` with the client address appended as Envoy does (`None` when the client
/// address is unknown).
pub fn forwarded_for(prev: Option<&str>, client: Option<IpAddr>) -> Option<String> {
    append_forwarded_for(prev, client)
}

pub fn shape_request(upstream: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    // The connection manager's edge headers.
    let xff: Vec<&str> = upstream
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    // Envoy appends the connection's peer (`appendXff(connection.remoteAddress())`), while the
    // external address is the trusted client (`final_remote_address`, numTrustedProxies).
    if let Some(xff) = append_forwarded_for(xff, ctx.peer_ip) {
        upstream.insert_header("x-forwarded-for", xff)?;
    }
    upstream.insert_header("x-forwarded-proto", ctx.downstream.scheme)?;
    if let Some(ip) = ctx.client_ip() {
        upstream.insert_header("x-envoy-external-address", ip.to_string())?;
    }
    upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
    // The mesh config's forwardClientCertDetails (Istio's gateway default: SANITIZE_SET).
    let xfcc = ctx.downstream_tls().and_then(|t| t.xfcc.as_deref());
    match ctx.snapshot.as_ref() {
        Some(s) => s.mesh.topology.apply_xfcc(upstream, xfcc)?,
        None => crate::compile::mesh::Topology::default().apply_xfcc(upstream, xfcc)?,
    }
    // The router's.
    upstream.insert_header("x-envoy-attempt-count", ctx.attempts.max(1).to_string())?;
    let expected = ctx
        .retry_policy()
        .expected_timeout(ctx.route_timeout(), ctx.remaining(Instant::now()));
    if let Some(t) = expected {
        upstream.insert_header("x-envoy-expected-rq-timeout-ms", t.as_millis().to_string())?;
    }
    // The route's.
    let mut authority = ctx.downstream.authority.as_str();
    let mut path_and_query = None;
    if let (Some(route), Some(f)) = (ctx.route(), ctx.forward()) {
        let dest = ctx.target.as_ref().and_then(|t| t.destination);
        f.header_order(&route.request_headers, dest, false)
            .apply_request(upstream);
        if let Some(a) = f.authority(dest) {
            authority = a;
        }
        path_and_query = f
            .rewrite
            .path_and_query(upstream.uri.path(), upstream.uri.query());
    }
    let original = upstream
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string());
    if let (Some(_), Some(original)) = (&path_and_query, &original) {
        upstream.insert_header("x-envoy-original-path", original.as_str())?;
    }
    // Origin-form towards the upstream, even for absolute-form (forward proxy) requests.
    let path_and_query = path_and_query
        .or(original)
        .unwrap_or_else(|| "/".to_string());
    let uri: http::Uri = path_and_query
        .parse()
        .map_err(|e| Error::because(InvalidHTTPHeader, "rewritten path is not a valid URI", e))?;
    upstream.set_uri(uri);
    upstream.insert_header(http::header::HOST, authority)?;
    if ctx.close_upstream {
        upstream.insert_header(http::header::CONNECTION, "close")?;
    }
    Ok(())
}

pub fn shape_response(
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
    server: Option<&HeaderValue>,
) -> Result<()> {
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        for h in ["connection", "keep-alive", "proxy-connection"] {
            resp.remove_header(h);
        }
    }
    if let Some(t) = ctx.upstream_service_time {
        resp.insert_header("x-envoy-upstream-service-time", t.to_string())?;
    }
    if let Some(c) = &ctx.set_cookie {
        resp.append_header(http::header::SET_COOKIE, c.as_str())?;
    }
    for (k, v) in &ctx.authz_response_headers {
        resp.append_header(k.clone(), v.clone())?;
    }
    if let Some(route) = ctx.route() {
        let dest = ctx.target.as_ref().and_then(|t| t.destination);
        match ctx.forward() {
            Some(f) => f
                .header_order(&route.response_headers, dest, true)
                .apply_response(resp),
            None => route.response_headers.apply_response(resp),
        }
        if let (Some(origin), Some(cors)) = (&ctx.cors_origin, &route.cors) {
            cors.apply_response(origin, resp);
        }
    }
    if let Some(name) = server {
        resp.insert_header(http::header::SERVER, name)?;
    }
    Ok(())
}
