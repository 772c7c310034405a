//! Per-request state, carried through the Pingora phases. The snapshot taken at the start of
//! the request is kept for its whole life, retries included.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::tls::SslDigest;
use pingora::{Error, ErrorSource, ErrorType};

use super::downstream::Downstream;
use crate::compile::action::retry::{Attempted, Reset};
use crate::compile::action::{Action, Forward, RetryPolicy, WeightedCluster};
use crate::compile::reply::LocalReply;
use crate::compile::route::Route;
use crate::compile::security::claims::Claims;
use crate::compile::vhost::RouteTable;
use crate::compile::Snapshot;
use crate::telemetry::tracing::RequestTrace;
use crate::tls::server::DownstreamTls;
use crate::upstream::breaker::Admission;
use crate::upstream::Cluster;

/// The route a request matched (the table is kept alive by the request).
pub struct Routed {
    pub table: Arc<RouteTable>,
    pub vhost: usize,
    pub route: usize,
}

impl Routed {
    pub fn route(&self) -> &Route {
        &self.table.virtual_hosts[self.vhost].routes[self.route]
    }
}

/// The cluster the request is sent to.
pub struct Target {
    pub cluster: Arc<Cluster>,
    /// Index into the route's weighted destinations (for destination-level headers).
    pub destination: Option<usize>,
}

pub struct RequestCtx {
    pub snapshot: Option<Arc<Snapshot>>,
    pub start: Instant,
    pub start_time: SystemTime,
    /// The connection's TLS facts (its `DownstreamTls` extension), if it is TLS.
    pub tls: Option<Arc<SslDigest>>,
    /// How the client addressed the request: scheme, authority, host, port.
    pub downstream: Downstream,
    pub request_id: String,
    pub routed: Option<Routed>,
    pub target: Option<Target>,
    pub admission: Option<Admission>,
    /// What the gateway answered itself (or why the upstream failed), for the log.
    pub reply: Option<LocalReply>,
    /// The request was refused because its host is not in the registry (egress).
    pub egress_refused: bool,
    pub attempts: u32,
    pub tried: Vec<SocketAddr>,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_start: Option<Instant>,
    pub upstream_service_time: Option<u64>,
    pub upstream_failure: Option<String>,
    pub deadline: Option<Instant>,
    /// Origin to echo in CORS response headers.
    pub cors_origin: Option<HeaderValue>,
    /// Close the upstream connection after this request (`maxRequestsPerConnection`).
    pub close_upstream: bool,
    /// The TCP peer's address.
    pub peer_ip: Option<IpAddr>,
    /// The verified JWT claims (RequestAuthentication), for policies and route matches.
    pub claims: Option<Arc<Claims>>,
    /// Headers an ext_authz server asked to add to the client response.
    pub authz_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The last attempt's response status is being retried (decided before its headers went
    /// downstream).
    pub status_retry: bool,
    /// `Set-Cookie` for a cookie made for this client (cookie affinity with a `ttl`).
    pub set_cookie: Option<String>,
    /// The request's mirror copies still taking its body.
    pub mirror_feeds: Vec<super::mirror::MirrorFeed>,
    /// Request body bytes read from the client (first attempt).
    pub body_bytes: usize,
    /// A gRPC request's messages and trailer status, for Istio's metrics.
    pub grpc: crate::observe::grpc::GrpcTelemetry,
    /// The request's trace, when the mesh settings name a tracer.
    pub trace: Option<RequestTrace>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            snapshot: None,
            start: Instant::now(),
            start_time: SystemTime::now(),
            tls: None,
            downstream: Downstream::default(),
            request_id: String::new(),
            routed: None,
            target: None,
            admission: None,
            reply: None,
            egress_refused: false,
            attempts: 0,
            tried: Vec::new(),
            upstream_addr: None,
            upstream_start: None,
            upstream_service_time: None,
            upstream_failure: None,
            deadline: None,
            cors_origin: None,
            close_upstream: false,
            peer_ip: None,
            claims: None,
            authz_response_headers: Vec::new(),
            status_retry: false,
            set_cookie: None,
            mirror_feeds: Vec::new(),
            body_bytes: 0,
            grpc: Default::default(),
            trace: None,
        }
    }
}

static DEFAULT_RETRY: once_cell::sync::Lazy<RetryPolicy> =
    once_cell::sync::Lazy::new(RetryPolicy::default);

impl RequestCtx {
    pub fn downstream_tls(&self) -> Option<&DownstreamTls> {
        self.tls.as_ref()?.extension.get::<DownstreamTls>()
    }

    /// The client's address: what `x-envoy-external-address`, the access log's
    /// `%DOWNSTREAM_REMOTE_ADDRESS%` and `remoteIpBlocks` use. The connection's peer (the PROXY
    /// protocol source when the listener requires it), or, with `numTrustedProxies: N`, the
    /// Nth address from the right of `x-forwarded-for` (Envoy `xff_num_trusted_hops`).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.downstream.client.map(|a| a.ip())
    }

    pub fn route(&self) -> Option<&Route> {
        self.routed.as_ref().map(Routed::route)
    }

    pub fn forward(&self) -> Option<&Forward> {
        match &self.route()?.action {
            Action::Forward(f) => Some(f),
            _ => None,
        }
    }

    pub fn destination(&self) -> Option<&WeightedCluster> {
        let i = self.target.as_ref()?.destination?;
        self.forward()?.destinations.get(i)
    }

    /// The retry policy in force (Istio's default for implicit egress routes).
    pub fn retry_policy(&self) -> &RetryPolicy {
        self.forward().map_or(&DEFAULT_RETRY, |f| &f.retry)
    }

    /// Where the request stands for a retry decision.
    pub fn attempted(&self) -> Attempted {
        Attempted {
            attempts: self.attempts,
            deadline: self.deadline,
        }
    }

    /// What is left of the route timeout for the next attempt (`Some(0)`: nothing).
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    /// The route's timeout, if one applies.
    pub fn route_timeout(&self) -> Option<Duration> {
        self.forward().and_then(|f| f.timeout)
    }

    /// Whether the upstream's response `resp` is retried instead of sent on (Envoy's router
    /// `onUpstreamHeaders` → `shouldRetryHeaders`). `replayable`: the request body so far is
    /// buffered in full. When retries are exhausted the response goes to the client as it came.
    pub fn retry_on_response(&mut self, resp: &ResponseHeader, replayable: bool) -> bool {
        self.status_retry = replayable
            && self.retry_policy().on_response(
                self.attempted(),
                resp.status.as_u16(),
                &resp.headers,
            );
        self.status_retry
    }

    /// Whether the attempt that failed with `e` gets another one (Envoy's router
    /// `maybeRetryReset`): never once the response started, never when the client went away
    /// (a downstream error), only with the whole body so far buffered (`replayable`).
    pub fn retry_after(&mut self, e: &Error, replayable: bool, response_started: bool) -> bool {
        if std::mem::take(&mut self.status_retry) {
            return true;
        }
        if e.esource() == &ErrorSource::Downstream || response_started || !replayable {
            return false;
        }
        // Pingora's own protocol fallback (h2 refused by the upstream, retried over h1).
        if matches!(e.etype(), ErrorType::H2Downgrade | ErrorType::InvalidH2) {
            return e.retry();
        }
        let deadline_passed = self.deadline.is_some_and(|d| Instant::now() >= d);
        let Some((reset, started)) = super::rescue::reset_of(e, deadline_passed) else {
            return false;
        };
        let retry = self
            .retry_policy()
            .on_reset(self.attempted(), reset, started);
        if !retry && reset == Reset::RefusedStream {
            // The last word is the refusal (Envoy: `remote refused stream reset`, `UR`).
            self.reply = Some(LocalReply::remote_reset(true, self.retried()));
        }
        retry
    }

    /// Retry after a failed connection?
    pub fn retry_after_connect_failure(&self) -> bool {
        self.retry_policy()
            .on_reset(self.attempted(), Reset::ConnectFailure, false)
    }

    /// Starts the request's trace (the tracer of the request's snapshot): Envoy's sampling
    /// decision marked in the request id, the incoming context continued.
    pub fn start_trace(&mut self, req: &RequestHeader) {
        let tracer = self
            .snapshot
            .as_ref()
            .and_then(|s| s.mesh.tracing.tracer.as_ref());
        self.trace =
            tracer.and_then(|t| t.start(&req.headers, &mut self.request_id, self.start_time));
    }

    /// A new upstream attempt's span (the endpoint is chosen; Envoy spawns it before
    /// connecting, so a connection failure has its span too).
    pub fn trace_attempt(&mut self) {
        if let Some(trace) = self.trace.as_mut() {
            trace.begin_attempt(self.upstream_addr);
        }
    }

    /// The current attempt's upstream response head (its status and protocol on its span).
    pub fn trace_response(&mut self, resp: &ResponseHeader) {
        if let Some(trace) = self.trace.as_mut() {
            let protocol = match resp.version {
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            };
            trace.attempt_response(resp.status.as_u16(), protocol);
        }
    }

    /// The current attempt failed with this Pingora error (Envoy's reset reason on its span).
    pub fn trace_failure(&mut self, e: &Error) {
        let reason = match e.etype() {
            ErrorType::ConnectTimedout => "connection timeout",
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => "remote connection failure",
            _ => "connection termination",
        };
        if let Some(trace) = self.trace.as_mut() {
            trace.attempt_failed(reason);
        }
    }

    /// The trace context of this upstream attempt (its span as the parent) and the route's
    /// decorator, on the request to the upstream.
    pub fn propagate_trace(&mut self, upstream: &mut RequestHeader) -> pingora::Result<()> {
        let Some(trace) = self.trace.as_ref() else {
            return Ok(());
        };
        let operation = self.routed.as_ref().map(|r| r.route().operation.as_str());
        let mut headers = Vec::with_capacity(6);
        trace.inject(operation, &mut headers);
        for (name, value) in headers {
            upstream.insert_header(name, value)?;
        }
        Ok(())
    }

    /// Whether this is a retry (Envoy's "retried and the latest reset reason").
    pub fn retried(&self) -> bool {
        self.attempts > 1
    }
}
