//! The `ProxyHttp` implementation: the seam between Pingora and the compiled snapshot. Each
//! phase is a short dispatch into compiled types; the phases run in this order:
//!
//! - `early_request_filter`: take the snapshot the request keeps for its whole life.
//! - `request_filter`: read the downstream request (edge hygiene: control headers removed, a
//!   new request id; the trace started; HTTP/1.0 refused unless accepted), route it, run the
//!   route's local actions (fault, CORS preflight, redirect, direct response), choose the
//!   destination and pass its circuit breaker (`routing.rs`), start the mirror copies;
//!   `Ok(true)` when the gateway answered itself.
//! - `upstream_peer`: the next attempt (`attempt.rs`, once per try): the retry back-off, the
//!   endpoint, the peer.
//! - `request_body_filter`: the body goes to the mirror copies too (first attempt only).
//! - `upstream_response_filter`: a retriable status is retried before anything went downstream.
//! - `connected_to_upstream`: upstream certificate names, connection reuse accounting.
//! - `upstream_request_filter` / `response_filter`: shape the request (and carry the trace)
//!   and the response.
//! - `fail_to_connect` / `error_while_proxy`: retry decisions; `fail_to_proxy`: the answer.
//! - `logging`: once at the end: outlier detection, access log, metrics, the trace's spans.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::upstreams::peer::HttpPeer;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use super::attempt::{connect_failed, next_peer, record_last_attempt};
use super::downstream::{body_limit_reached, Downstream};
use super::edge;
use super::mirror::feed_body;
use super::outbound::{shape_request, shape_response};
use super::request::RequestCtx;
use super::rescue::{rescue, send};
use super::routing::route;
use super::State;
use crate::compile::reply::LocalReply;
use crate::compile::security::{Connection, Edit};
use crate::compile::Role;
use crate::observe::grpc::GrpcTelemetry;
use crate::tls::upstream::SanCheck;
use crate::upstream::outlier::Outcome;

/// The gateway's proxy logic; all state lives in [`State`].
pub struct Edge {
    pub state: Arc<State>,
}

/// What the request phase decided: `Err` is an answer the gateway gives itself.
type Routing = Result<(), LocalReply>;

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl Edge {
    /// Sends a local reply (with the matched route's response headers) and remembers it for
    /// the log.
    async fn reply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: LocalReply,
    ) -> Result<bool> {
        if reply.status == 426 {
            session.set_keepalive(None);
        }
        let ops = ctx.route().map(|r| &r.response_headers);
        send(&reply, session, ops, self.server_name()).await?;
        ctx.reply = Some(reply);
        Ok(true)
    }

    /// AuthorizationPolicy and RequestAuthentication, before routing (Istio's gateway filter
    /// chain puts ext_authz, jwt_authn and RBAC before the router).
    async fn authorize(&self, session: &mut Session, ctx: &mut RequestCtx) -> Routing {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Ok(());
        };
        if snapshot.security.is_empty() {
            return Ok(());
        }
        let tls = ctx.downstream_tls();
        let conn = Connection {
            peer: ctx.peer_ip,
            client: ctx.client_ip(),
            local: session.server_addr().and_then(|a| a.as_inet()).copied(),
            sni: tls.and_then(|t| t.sni.as_deref()),
            xfcc: tls.and_then(|t| t.xfcc.as_deref()),
            scheme: ctx.downstream.scheme,
            authority: &ctx.downstream.authority,
        };
        let req = session.req_header();
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let admitted = snapshot
            .security
            .enforce(req.method.as_str(), path, &req.headers, &conn)
            .await?;
        apply_edits(session.req_header_mut(), &admitted.request_edits);
        ctx.claims = admitted.claims;
        ctx.authz_response_headers = admitted.response_headers;
        Ok(())
    }

    /// Whether the request body read so far can be sent again: Pingora kept it whole (its
    /// retry buffer holds 64 KiB) and it is within `--retry-buffer-limit` (Envoy's
    /// per-connection buffer limit, beyond which it abandons retries and shadows).
    fn replayable(&self, session: &Session, ctx: &RequestCtx) -> bool {
        !session.as_ref().retry_buffer_truncated()
            && ctx.body_bytes <= self.state.options.retry_buffer_limit
    }

    /// The `server` header of every response (`None`: the upstream's passes through).
    fn server_name(&self) -> Option<&http::HeaderValue> {
        self.state.options.server_name.as_ref()
    }

    /// Starts the route's mirror copies with the request head the primary's upstream gets.
    fn start_mirrors(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let req = session.req_header();
        let upgrade = req.headers.contains_key(http::header::UPGRADE);
        let Some(f) = ctx.forward().filter(|f| !f.mirrors.is_empty()) else {
            return Ok(());
        };
        if upgrade || req.method == http::Method::CONNECT {
            return Ok(());
        }
        let mut head = req.clone();
        shape_request(&mut head, ctx)?;
        let (mirrors, timeout) = (f.mirrors.clone(), f.timeout);
        let body = !session.is_body_empty();
        ctx.mirror_feeds =
            self.state
                .mirrors
                .start(&mirrors, &head, body, timeout, &self.state.dns);
        Ok(())
    }
}

/// Request header changes the security checks asked for.
fn apply_edits(req: &mut RequestHeader, edits: &[Edit]) {
    for e in edits {
        let _ = match e {
            Edit::Remove(n) => req.remove_header(n).map(|_| ()).ok_or(()),
            Edit::Insert(n, v) => req.insert_header(n.clone(), v.clone()).map_err(|_| ()),
            Edit::Append(n, v) => req
                .append_header(n.clone(), v.clone())
                .map(|_| ())
                .map_err(|_| ()),
        };
    }
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
        ctx.grpc = GrpcTelemetry::of(session.req_header());
        session.enable_retry_buffering();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.tls = session.digest().and_then(|d| d.ssl_digest.clone());
        ctx.peer_ip = client_ip(session);
        ctx.request_id = edge::new_request_id();
        let role = ctx
            .snapshot
            .as_ref()
            .map_or(Role::Ingress, |s| s.instance.role);
        let topology = ctx.snapshot.as_ref().map(|s| &s.mesh.topology);
        let limits = &self.state.options.limits;
        ctx.downstream = match Downstream::read(session, ctx.tls.is_some(), role, topology, limits)
        {
            Ok(d) => d,
            Err(reply) => return self.reply(session, ctx, reply).await,
        };
        edge::clean_internal_headers(session.req_header_mut());
        ctx.start_trace(session.req_header());
        if session.req_header().version == http::Version::HTTP_10
            && !self.state.options.accept_http10
        {
            return self.reply(session, ctx, LocalReply::http10_refused()).await;
        }
        if let Err(reply) = self.authorize(session, ctx).await {
            return self.reply(session, ctx, reply).await;
        }
        match route(&self.state, session, ctx).await {
            Ok(()) => {
                self.start_mirrors(session, ctx)?;
                Ok(false)
            }
            Err(reply) => self.reply(session, ctx, reply).await,
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        next_peer(&self.state, session, ctx).await
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
            ctx.reply = Some(LocalReply::connect_failure(Some(&reason), ctx.retried()));
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
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        shape_request(upstream, ctx)?;
        ctx.propagate_trace(upstream)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(reply) = body_limit_reached(session, &self.state.options.limits) {
            ctx.reply = Some(reply);
            return Error::e_explain(HTTPStatus(413), "request body larger than the limit");
        }
        // Only the first attempt feeds the mirror copies; a retry abandons unfinished ones.
        if ctx.attempts <= 1 {
            ctx.body_bytes += body.as_ref().map_or(0, Bytes::len);
            ctx.grpc.request_body(body.as_ref());
            feed_body(&mut ctx.mirror_feeds, body.as_ref(), end_of_stream);
        } else {
            ctx.mirror_feeds.clear();
        }
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
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        ctx.grpc.response_body(body.as_ref());
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
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.trace_response(upstream);
        if let Some(start) = ctx.upstream_start {
            ctx.upstream_service_time = Some(start.elapsed().as_millis() as u64);
        }
        // Nothing went downstream yet: a retriable status is retried here, its response
        // dropped with its upstream connection (Envoy resets the upstream stream too).
        let replayable = self.replayable(session, ctx);
        if ctx.retry_on_response(upstream, replayable) {
            let status = upstream.status.as_u16();
            if let (Some(t), Some(addr)) = (&ctx.target, ctx.upstream_addr) {
                t.cluster.record_outcome(addr, Outcome::of_status(status));
            }
            return Error::e_explain(HTTPStatus(status), "retrying on the upstream's status");
        }
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.grpc.trailers(trailers);
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
        shape_response(resp, ctx, self.server_name())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.trace_failure(&e);
        connect_failed(ctx, &e);
        e.set_retry(ctx.retry_after_connect_failure());
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
        let _ = client_reused;
        ctx.trace_failure(&e);
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = self.replayable(session, ctx);
        let started = session.response_written().is_some();
        let retry = ctx.retry_after(&e, replayable, started);
        e.set_retry(retry);
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
            .unwrap_or_else(|| rescue(e, ctx.upstream_failure.as_deref(), ctx.retried()));
        if reply.status != 0 && session.response_written().is_none() {
            // The connection is not reused after a failure: say so (`Connection: close`), or
            // a keep-alive client sends its next request on a connection about to close.
            session.set_keepalive(None);
            let _ = send(&reply, session, None, self.server_name()).await;
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
        super::log::finish(&self.state, session, e, ctx);
        super::trace::finish(&self.state, session, e, ctx);
    }
}
