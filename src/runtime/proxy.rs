//! The `ProxyHttp` implementation: each Pingora phase in a few lines that call into the
//! compiled snapshot. Phases run in this order: `early_request_filter` (take the snapshot),
//! `request_filter` (route, local replies, admission), `upstream_peer` (pick an endpoint),
//! `connected_to_upstream`, `upstream_request_filter` (rewrites, headers, hygiene),
//! `response_filter`, and `logging` (access log, metrics) once at the end.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::authority::{raw_target_authority, RawTargetAuthority};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use super::context::{RequestCtx, Routed, Target};
use super::headers::{apply_request_ops, apply_response_ops};
use super::reply::{flags, LocalReply};
use super::routing::{decide, normalize_path, Addressing, Decision};
use super::State;
use crate::compile::action::{Abort, Action, RedirectInput};
use crate::compile::matcher::RequestView;
use crate::compile::{OutboundPolicy, Role};
use crate::config::host::normalize_request_host;
use crate::observe::access_log::AccessLogEntry;
use crate::tls::server::DownstreamTls;
use crate::tls::upstream::SanCheck;
use crate::upstream::outlier::Outcome;
use crate::upstream::PickInput;

/// The gateway's proxy logic; all state lives in [`State`].
pub struct Edge {
    pub state: Arc<State>,
}

fn header_str<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `x-forwarded-for` with the client address appended (Envoy `use_remote_address`, no trusted
/// hops); `None` when the client address is unknown.
fn forwarded_for(prev: Option<&str>, session: &Session) -> Option<String> {
    let client = session.client_addr().and_then(|a| a.as_inet())?;
    let ip = client.ip().to_string();
    Some(match prev {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    })
}

impl Edge {
    async fn reply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: LocalReply,
    ) -> Result<bool> {
        // A route's response headers apply to its direct responses and redirects too.
        reply
            .send_with(session, ctx.route().map(|r| &r.response_headers))
            .await?;
        ctx.reply = Some(reply);
        Ok(true)
    }

    /// Routes the request; `Ok(true)` when it has been answered locally.
    async fn route(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Error::e_explain(InternalError, "no snapshot");
        };
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(listener) = local.and_then(|a| snapshot.listener(a)).cloned() else {
            // The listener was removed by a reload while this connection was open.
            let r = LocalReply::no_route(&ctx.host, "");
            return self.reply(session, ctx, r).await;
        };
        let req = session.req_header();
        let decision = {
            let view = RequestView {
                method: req.method.as_str(),
                scheme: ctx.scheme,
                authority: &ctx.authority,
                path: req.uri.path(),
                query: req.uri.query(),
                headers: &req.headers,
            };
            decide(
                &snapshot,
                &listener,
                ctx.downstream_tls.as_ref(),
                &view,
                &ctx.host,
                ctx.port,
                ctx.addressing,
            )
        };
        match decision {
            Decision::Reply(r) => {
                if r.details == "host_not_in_registry" {
                    self.state
                        .metrics
                        .egress_denied
                        .with_label_values(&[ctx.addressing.metric_label()])
                        .inc();
                }
                self.reply(session, ctx, r).await
            }
            Decision::Egress { cluster, .. } => {
                ctx.target = Some(Target {
                    cluster,
                    destination: None,
                });
                Ok(false)
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
                self.apply_route(session, ctx).await
            }
        }
    }

    /// Everything a matched route does before the upstream: faults, CORS preflights, redirects, direct responses, the weighted choice of destination.
    async fn apply_route(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(routed) = &ctx.routed else {
            return Ok(false);
        };
        let table = routed.table.clone();
        let vhost = &table.virtual_hosts[routed.vhost];
        let route = &vhost.routes[routed.route];
        let req = session.req_header();
        let input = RedirectInput {
            scheme: ctx.scheme,
            authority: &ctx.authority,
            path: req.uri.path(),
            query: req.uri.query(),
        };
        if let Some(fault) = &route.fault {
            if let Some((ms, pct)) = fault.delay {
                if fastrand::f64() * 100.0 < pct {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    ctx.reply = Some(LocalReply::new(0, Some(flags::DI), "delayed", ""));
                }
            }
            if let Some((abort, pct)) = fault.abort {
                if fastrand::f64() * 100.0 < pct {
                    let reply = match abort {
                        Abort::Http(code) => LocalReply::new(
                            code,
                            Some(flags::FI),
                            "fault_filter_abort",
                            "fault filter abort\n",
                        ),
                        Abort::Grpc(code) => {
                            LocalReply::new(200, Some(flags::FI), "fault_filter_abort", "")
                                .header("content-type", "application/grpc")
                                .header("grpc-status", code.to_string())
                        }
                    };
                    return self.reply(session, ctx, reply).await;
                }
            }
        }
        let req = session.req_header();
        if let Some(cors) = &route.cors {
            if let Some(origin) = header_str(req, "origin") {
                let allowed = cors.origin_allowed(origin);
                let preflight = req.method == http::Method::OPTIONS
                    && req.headers.contains_key("access-control-request-method");
                if preflight && (allowed || !cors.forward_unmatched_preflights) {
                    let mut reply = LocalReply::new(200, None, "cors_preflight", "");
                    if allowed {
                        reply = reply.header("access-control-allow-origin", origin.to_string());
                        if let Some(m) = &cors.allow_methods {
                            reply = reply.header("access-control-allow-methods", m.clone());
                        }
                        if let Some(h) = &cors.allow_headers {
                            reply = reply.header("access-control-allow-headers", h.clone());
                        }
                        if let Some(age) = cors.max_age {
                            reply = reply.header("access-control-max-age", age.to_string());
                        }
                        if cors.allow_credentials {
                            reply = reply.header("access-control-allow-credentials", "true");
                        }
                    }
                    return self.reply(session, ctx, reply).await;
                }
                if allowed {
                    ctx.cors_origin = Some(origin.to_string());
                }
            }
        }
        match &route.action {
            Action::DirectResponse(d) => {
                let reply = LocalReply {
                    status: d.status,
                    flag: None,
                    details: "direct_response",
                    body: String::from_utf8_lossy(&d.body).into_owned(),
                    headers: Vec::new(),
                };
                self.reply(session, ctx, reply).await
            }
            Action::Redirect(r) => {
                let reply = LocalReply::new(r.code, None, "redirect", "")
                    .header("location", r.location(&input));
                self.reply(session, ctx, reply).await
            }
            Action::Forward(f) => {
                let chosen = f.choose();
                let index = f.destinations.iter().position(|d| std::ptr::eq(d, chosen));
                ctx.deadline = f.timeout.map(|t| ctx.start + t);
                ctx.target = Some(Target {
                    cluster: chosen.cluster.clone(),
                    destination: index,
                });
                Ok(false)
            }
        }
    }

    fn classify(e: &Error, ctx: &RequestCtx) -> LocalReply {
        use ErrorType::*;
        let reason = ctx
            .upstream_failure
            .clone()
            .unwrap_or_else(|| e.to_string());
        match (e.esource(), e.etype()) {
            (_, HTTPStatus(code)) => LocalReply::new(*code, None, "local_reply", format!("{code}\n")),
            (ErrorSource::Upstream, ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure)
            | (ErrorSource::Upstream, TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError) => {
                LocalReply::connect_failure(&reason)
            }
            (_, ReadTimedout | WriteTimedout) if e.esource() != &ErrorSource::Downstream => LocalReply::timeout(),
            (ErrorSource::Upstream, _) => LocalReply::new(
                503,
                Some(flags::UC),
                "upstream_reset_before_response_started{connection_termination}",
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n",
            ),
            (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => {
                LocalReply::new(0, Some(flags::DC), "downstream_remote_disconnect", "")
            }
            (ErrorSource::Downstream, _) => LocalReply::new(400, Some(flags::DPE), "downstream_protocol_error", "bad request\n"),
            _ => LocalReply::new(500, None, "internal_error", "internal error\n"),
        }
    }
}

/// A random (version 4) UUID. From a fast PRNG, not the OS: a request id needs uniqueness, not
/// secrecy, and a getrandom system call per request is measurable.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// Outlier detection learns from how the last attempt ended (earlier failed attempts were
/// recorded in `fail_to_connect`).
fn record_last_attempt(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let (Some(t), Some(addr)) = (&ctx.target, ctx.upstream_addr) else {
        return;
    };
    if t.cluster.outlier.is_none() || ctx.reply.as_ref().and_then(|r| r.flag) == Some(flags::UF) {
        return;
    }
    let upstream_status = (ctx.upstream_service_time.is_some())
        .then(|| session.response_written().map(|r| r.status.as_u16()))
        .flatten();
    let outcome = match (upstream_status, e) {
        (Some(502..=504), _) => Outcome::GatewayError,
        (Some(500..=599), _) => Outcome::ServerError,
        (Some(_), _) => Outcome::Success,
        (None, Some(err)) if err.esource() == &ErrorSource::Upstream => Outcome::GatewayError,
        (None, _) => return,
    };
    t.cluster.record_outcome(addr, outcome);
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.snapshot = Some(self.state.snapshot.load_full());
        session.enable_retry_buffering();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let ssl = session.digest().and_then(|d| d.ssl_digest.clone());
        ctx.downstream_tls = ssl
            .as_ref()
            .and_then(|s| s.extension.get::<DownstreamTls>())
            .cloned();
        ctx.scheme = if ssl.is_some() { "https" } else { "http" };
        let req = session.req_header();
        // Absolute-form (`GET http://host/ HTTP/1.1`) comes from forward-proxy clients. Pingora
        // keeps only the path on the Uri; the target as sent is the raw path.
        let target = match raw_target_authority(req.raw_path()) {
            RawTargetAuthority::Absolute {
                scheme, authority, ..
            } if !session.is_http2() => Some((
                scheme.eq_ignore_ascii_case(b"https"),
                String::from_utf8_lossy(authority).into_owned(),
            )),
            _ => None,
        };
        ctx.addressing = if target.is_some() {
            Addressing::ForwardProxy
        } else {
            Addressing::Host
        };
        ctx.authority = match (&target, req.uri.authority(), header_str(req, "host")) {
            (Some((_, a)), _, _) => a.clone(),
            (None, _, Some(h)) => h.to_string(),
            (None, Some(a), None) => a.as_str().to_string(),
            _ => String::new(),
        };
        ctx.host = normalize_request_host(&ctx.authority).into_owned();
        let default_port = if let Some((https, _)) = target {
            if https {
                443
            } else {
                80
            }
        } else if ctx.scheme == "https" {
            443
        } else {
            80
        };
        ctx.port = crate::compile::action::split_authority(&ctx.authority)
            .1
            .unwrap_or(default_port);
        // Envoy's normalize_path: routing and the upstream see the path without dot segments.
        if let Some(path) = normalize_path(req.uri.path()) {
            let path_and_query = match req.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut parts = req.uri.clone().into_parts();
            if let Ok(pq) = path_and_query.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    session.req_header_mut().set_uri(uri);
                }
            }
        }
        let req = session.req_header();
        ctx.request_id = header_str(req, "x-request-id")
            .filter(|v| !v.is_empty())
            .map_or_else(new_request_id, str::to_string);
        if ctx.host.is_empty() {
            let r = LocalReply::new(
                400,
                Some(flags::DPE),
                "missing_host_header",
                "missing Host header\n",
            );
            return self.reply(session, ctx, r).await;
        }
        if self.route(session, ctx).await? {
            return Ok(true);
        }
        let Some(target) = &ctx.target else {
            return Ok(false);
        };
        let cluster = target.cluster.clone();
        let snapshot = ctx.snapshot.clone();
        // On an egress gateway under REGISTRY_ONLY only registered destinations leave (Istio
        // has no cluster for others: 503 NC). An ingress gateway resolves an unregistered
        // destination as a DNS name or IP literal.
        let only_registered = snapshot.as_ref().is_some_and(|s| {
            s.instance.role == Role::Egress
                && s.instance.outbound_policy == OutboundPolicy::RegistryOnly
        });
        if only_registered && !cluster.registered() && ctx.routed.is_some() {
            let r = LocalReply::new(
                503,
                Some(flags::NC),
                "cluster_not_found",
                format!(
                    "destination {} is not in the registry (no ServiceEntry lists it)\n",
                    cluster.host
                ),
            );
            return self.reply(session, ctx, r).await;
        }
        match cluster.admit().await {
            Ok(a) => ctx.admission = Some(a),
            Err(_) => {
                return self
                    .reply(session, ctx, LocalReply::overflow(&cluster.name))
                    .await
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = &ctx.target else {
            return Error::e_explain(InternalError, "no upstream target");
        };
        let cluster = target.cluster.clone();
        ctx.attempts += 1;
        let now = Instant::now();
        let remaining = ctx.deadline.map(|d| d.saturating_duration_since(now));
        if remaining.is_some_and(|r| r.is_zero()) {
            ctx.reply = Some(LocalReply::timeout());
            return Error::e_explain(
                HTTPStatus(504),
                "route timeout elapsed before the upstream answered",
            );
        }
        let budget = match (remaining, ctx.retry_policy().per_try_timeout) {
            (Some(r), Some(p)) => Some(r.min(p)),
            (r, p) => r.or(p),
        };
        let mut buf = [0u8; 48];
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let input = PickInput {
            request_host: &ctx.host,
            request_port: ctx.port,
            hash_input: cluster
                .lb
                .hash_key()
                .and_then(|k| k.input(session.req_header(), client, &mut buf)),
            exclude: &ctx.tried,
        };
        let picked = match cluster.pick(input, &self.state.dns).await {
            Ok(p) => p,
            Err(e) => {
                ctx.reply = Some(LocalReply::no_healthy_upstream(&e));
                return Error::e_explain(HTTPStatus(503), e.to_string());
            }
        };
        if let Some(a) = ctx.admission.as_mut() {
            a.set_endpoint(picked.active.clone());
        }
        ctx.upstream_addr = Some(picked.address);
        ctx.tried.push(picked.address);
        ctx.upstream_start = Some(now);
        Ok(Box::new(cluster.peer(picked.address, &ctx.host, budget)))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(reason) = SanCheck::failure(digest) {
            ctx.reply = Some(LocalReply::connect_failure(&reason));
            ctx.upstream_failure = Some(reason.clone());
            return Error::e_explain(TLSHandshakeFailure, reason);
        }
        if let Some(t) = &ctx.target {
            ctx.close_upstream = t.cluster.on_connection(fd, reused);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let mut authority = ctx.authority.clone();
        let mut path_and_query = upstream
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        if let Some(route) = ctx.route() {
            apply_request_ops(upstream, &route.request_headers);
        }
        if let Some(dest) = ctx.destination() {
            apply_request_ops(upstream, &dest.request_headers);
        }
        if let Some(f) = ctx.forward() {
            if let Some(a) = &f.rewrite.authority {
                authority = a.clone();
            }
            if let Some(p) = &f.rewrite.path {
                let path = upstream.uri.path();
                let new_path = p.apply(path);
                path_and_query = match upstream.uri.query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
            }
        }
        // Origin-form towards the upstream, even for absolute-form (forward proxy) requests.
        let uri: http::Uri = path_and_query.parse().map_err(|e| {
            Error::because(InvalidHTTPHeader, "rewritten path is not a valid URI", e)
        })?;
        upstream.set_uri(uri);
        upstream.insert_header(http::header::HOST, authority.as_str())?;

        if let Some(xff) = forwarded_for(header_str(upstream, "x-forwarded-for"), session) {
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        upstream.insert_header("x-forwarded-proto", ctx.scheme)?;
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        // SANITIZE_SET: never trust a client's own XFCC.
        upstream.remove_header("x-forwarded-client-cert");
        if let Some(xfcc) = ctx.downstream_tls.as_ref().and_then(|t| t.xfcc.as_deref()) {
            upstream.insert_header("x-forwarded-client-cert", xfcc)?;
        }
        if ctx.close_upstream {
            upstream.insert_header(http::header::CONNECTION, "close")?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Pingora #935: an empty final DATA frame from an h2 client would be written to an h1
        // upstream as a second chunk terminator and poison the pooled connection.
        if end_of_stream && body.as_ref().is_some_and(Bytes::is_empty) {
            *body = None;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        // Istio's route timeout covers the whole response, not each read: a response still
        // streaming at the deadline is cut off (the status is already sent; the log says UT).
        if !end_of_stream && ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            ctx.reply = Some(LocalReply::timeout());
            return Error::e_explain(
                ReadTimedout,
                "route timeout elapsed while the response was streaming",
            );
        }
        Ok(None)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(start) = ctx.upstream_start {
            ctx.upstream_service_time = Some(start.elapsed().as_millis() as u64);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A reload removed this connection's listener while the request was in flight: this
        // response completes, then the connection closes (drains) instead of being kept alive
        // for requests the listener no longer serves.
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        if local.is_some_and(|a| self.state.snapshot.load().listener(a).is_none()) {
            session.set_keepalive(None);
        }
        if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
            for h in ["connection", "keep-alive", "proxy-connection"] {
                resp.remove_header(h);
            }
        }
        if let Some(t) = ctx.upstream_service_time {
            resp.insert_header("x-envoy-upstream-service-time", t.to_string())?;
        }
        if let Some(dest) = ctx.destination() {
            apply_response_ops(resp, &dest.response_headers);
        }
        if let Some(route) = ctx.route() {
            apply_response_ops(resp, &route.response_headers);
            if let (Some(origin), Some(cors)) = (&ctx.cors_origin, &route.cors) {
                resp.insert_header("access-control-allow-origin", origin.as_str())?;
                if let Some(e) = &cors.expose_headers {
                    resp.insert_header("access-control-expose-headers", e.as_str())?;
                }
                if cors.allow_credentials {
                    resp.insert_header("access-control-allow-credentials", "true")?;
                }
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_failure = Some(
            e.etype().as_str().to_string()
                + &e.context
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default(),
        );
        if let Some(t) = &ctx.target {
            t.cluster.stats.connect_failures.fetch_add(1, Relaxed);
            if let Some(addr) = ctx.upstream_addr {
                t.cluster.record_outcome(addr, Outcome::GatewayError);
            }
        }
        if ctx.retry_policy().on_connect_failure && ctx.may_retry() {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        if !replayable {
            e.set_retry(false);
        } else if ctx.retry_policy().on_reset
            && ctx.may_retry()
            && session.response_written().is_none()
        {
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reply = ctx
            .reply
            .take()
            .filter(|r| r.status != 0)
            .unwrap_or_else(|| Self::classify(e, ctx));
        if reply.status != 0 && session.response_written().is_none() {
            // The connection is not reused after a failure: say so (`Connection: close`), or
            // a keep-alive client sends its next request on a connection about to close.
            session.set_keepalive(None);
            let _ = reply.send(session).await;
        }
        let code = reply.status;
        ctx.reply = Some(reply);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Failures are in the access log with their flag and reason.
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.admission = None;
        record_last_attempt(session, e, ctx);
        let state = &self.state;
        let req = session.req_header();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or_else(|| ctx.reply.as_ref().map(|r| r.status))
            .unwrap_or(0);
        let mut flags: Vec<&str> = ctx
            .reply
            .as_ref()
            .and_then(|r| r.flag)
            .into_iter()
            .collect();
        if e.is_some() && flags.is_empty() && status != 0 {
            if let Some(err) = e {
                if err.esource() == &ErrorSource::Downstream {
                    flags.push(flags::DC);
                } else {
                    flags.push(flags::UC);
                }
            }
        }
        let flags = flags.join(",");
        let cluster = ctx.target.as_ref().map(|t| t.cluster.clone());
        let protocol = if session.is_http2() {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let mut entry = AccessLogEntry::new(ctx.start_time);
        entry.method = Some(req.method.to_string());
        entry.path = Some(
            req.uri
                .path_and_query()
                .map_or_else(|| req.uri.path().to_string(), |p| p.as_str().to_string()),
        );
        entry.protocol = Some(protocol.to_string());
        entry.response_code = status;
        entry.response_flags = Some(flags.clone());
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
        entry.x_forwarded_for = forwarded_for(header_str(req, "x-forwarded-for"), session)
            .or_else(|| header_str(req, "x-forwarded-for").map(str::to_string));
        entry.user_agent = header_str(req, "user-agent").map(str::to_string);
        entry.request_id = Some(ctx.request_id.clone());
        entry.authority = Some(ctx.authority.clone());
        entry.upstream_host = ctx.upstream_addr.map(|a| a.to_string());
        entry.upstream_cluster = cluster.as_ref().map(|c| c.name.clone()).or_else(|| {
            (ctx.reply.as_ref().map(|r| r.details) == Some("host_not_in_registry"))
                .then(|| "BlackHoleCluster".to_string())
        });
        entry.downstream_local_address = session.server_addr().map(|a| a.to_string());
        entry.downstream_remote_address = session.client_addr().map(|a| a.to_string());
        entry.requested_server_name = ctx.downstream_tls.as_ref().and_then(|t| t.sni.clone());
        entry.route_name = ctx
            .route()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty());
        state.access_log.log(&entry);

        // Never label by the client's Host: it is attacker-controlled (cardinality).
        let destination = cluster.as_ref().map_or("unknown", |c| c.host.as_str());
        let destination_name = cluster.as_ref().map_or("unknown", |c| c.name.as_str());
        let labels = [
            "source",
            if req
                .headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
            {
                "grpc"
            } else {
                "http"
            },
            &status.to_string(),
            if flags.is_empty() {
                "-"
            } else {
                flags.as_str()
            },
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
}
