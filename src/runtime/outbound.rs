//! The request as it leaves for the upstream (rewrites, route and destination header
//! operations, Envoy's forwarding headers, always origin-form) and the response on its way back
//! (hop-by-hop headers, header operations, CORS).

use std::net::IpAddr;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

use super::request::RequestCtx;

/// `x-forwarded-for` with the client address appended (Envoy `use_remote_address`, no trusted
/// hops); `None` when the client address is unknown.
pub fn forwarded_for(prev: Option<&str>, client: Option<IpAddr>) -> Option<String> {
    let ip = client?.to_string();
    Some(match prev {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    })
}

fn header_str<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn shape_request(
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
    client: Option<IpAddr>,
) -> Result<()> {
    if let Some(route) = ctx.route() {
        route.request_headers.apply_request(upstream);
    }
    if let Some(dest) = ctx.destination() {
        dest.request_headers.apply_request(upstream);
    }
    let mut authority = ctx.downstream.authority.as_str();
    let mut path_and_query = None;
    if let Some(f) = ctx.forward() {
        if let Some(a) = &f.rewrite.authority {
            authority = a;
        }
        path_and_query = f
            .rewrite
            .path_and_query(upstream.uri.path(), upstream.uri.query());
    }
    // Origin-form towards the upstream, even for absolute-form (forward proxy) requests.
    let path_and_query = path_and_query.unwrap_or_else(|| {
        upstream
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
    });
    let uri: http::Uri = path_and_query
        .parse()
        .map_err(|e| Error::because(InvalidHTTPHeader, "rewritten path is not a valid URI", e))?;
    upstream.set_uri(uri);
    upstream.insert_header(http::header::HOST, authority)?;

    if let Some(xff) = forwarded_for(header_str(upstream, "x-forwarded-for"), client) {
        upstream.insert_header("x-forwarded-for", xff)?;
    }
    upstream.insert_header("x-forwarded-proto", ctx.downstream.scheme)?;
    upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
    // The mesh config's forwardClientCertDetails (Istio's gateway default: SANITIZE_SET).
    let xfcc = ctx.downstream_tls().and_then(|t| t.xfcc.as_deref());
    match ctx.snapshot.as_ref() {
        Some(s) => s.mesh.topology.apply_xfcc(upstream, xfcc)?,
        None => crate::compile::mesh::Topology::default().apply_xfcc(upstream, xfcc)?,
    }
    if ctx.close_upstream {
        upstream.insert_header(http::header::CONNECTION, "close")?;
    }
    Ok(())
}

pub fn shape_response(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        for h in ["connection", "keep-alive", "proxy-connection"] {
            resp.remove_header(h);
        }
    }
    if let Some(t) = ctx.upstream_service_time {
        resp.insert_header("x-envoy-upstream-service-time", t.to_string())?;
    }
    if let Some(dest) = ctx.destination() {
        dest.response_headers.apply_response(resp);
    }
    for (k, v) in &ctx.authz_response_headers {
        resp.append_header(k.clone(), v.clone())?;
    }
    if let Some(route) = ctx.route() {
        route.response_headers.apply_response(resp);
        if let (Some(origin), Some(cors)) = (&ctx.cors_origin, &route.cors) {
            cors.apply_response(origin, resp);
        }
    }
    Ok(())
}
