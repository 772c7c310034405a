//! Local replies: answers the gateway gives itself (no route, refused egress, redirects, direct
//! responses, upstream failures), each with Envoy's response flag, `%RESPONSE_CODE_DETAILS%`
//! and a short plain-text body. The runtime sends them; compiled actions and the failure
//! mapping (`runtime::rescue`) make them.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::Serialize;

/// Envoy's response flags, as they appear in the access log (`%RESPONSE_FLAGS%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ResponseFlag {
    /// No route configured.
    NR,
    /// No cluster (destination not in the registry).
    NC,
    /// No healthy upstream.
    UH,
    /// Upstream connection failure.
    UF,
    /// Upstream overflow (circuit breaker).
    UO,
    /// Upstream request timeout.
    UT,
    /// Upstream connection termination.
    UC,
    /// Upstream reset.
    UR,
    /// Downstream connection termination.
    DC,
    /// Injected fault: delay.
    DI,
    /// Injected fault: abort.
    FI,
    /// Downstream protocol error.
    DPE,
    /// Unauthorized (external authorization denied; also a refused CONNECT SNI).
    UAEX,
}

impl ResponseFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::NR => "NR",
            ResponseFlag::NC => "NC",
            ResponseFlag::UH => "UH",
            ResponseFlag::UF => "UF",
            ResponseFlag::UO => "UO",
            ResponseFlag::UT => "UT",
            ResponseFlag::UC => "UC",
            ResponseFlag::UR => "UR",
            ResponseFlag::DC => "DC",
            ResponseFlag::DI => "DI",
            ResponseFlag::FI => "FI",
            ResponseFlag::DPE => "DPE",
            ResponseFlag::UAEX => "UAEX",
        }
    }
}

impl std::fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct LocalReply {
    /// 0: nothing is sent (the client is gone, or the request went on upstream).
    pub status: u16,
    pub flag: Option<ResponseFlag>,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl LocalReply {
    pub fn new(
        status: u16,
        flag: Option<ResponseFlag>,
        details: &'static str,
        body: impl Into<Bytes>,
    ) -> Self {
        LocalReply {
            status,
            flag,
            details,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A header whose value is built from the request; left out if it is not a valid value.
    pub fn header_str(self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(v) => self.header(name, v),
            Err(_) => self,
        }
    }

    pub fn no_route(host: &str, path: &str) -> Self {
        LocalReply::new(
            404,
            Some(ResponseFlag::NR),
            "route_not_found",
            format!("no route for {host}{path}\n"),
        )
    }

    pub fn misdirected(host: &str) -> Self {
        LocalReply::new(
            421,
            Some(ResponseFlag::NR),
            "misdirected_request",
            format!("{host} is not served with the certificate this connection negotiated; retry on a new connection\n"),
        )
    }

    pub fn missing_host() -> Self {
        LocalReply::new(
            400,
            Some(ResponseFlag::DPE),
            "missing_host_header",
            "missing Host header\n",
        )
    }

    pub fn no_healthy_upstream(reason: impl std::fmt::Display) -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::UH),
            "no_healthy_upstream",
            format!("no healthy upstream: {reason}\n"),
        )
    }

    pub fn overflow(cluster: &str) -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::UO),
            "upstream_overflow",
            format!("upstream connect error or disconnect/reset before headers. reset reason: overflow ({cluster})\n"),
        )
    }

    pub fn connect_failure(reason: &str) -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::UF),
            "upstream_reset_before_response_started{connection_failure}",
            format!("upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: {reason}\n"),
        )
    }

    pub fn upstream_reset() -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::UC),
            "upstream_reset_before_response_started{connection_termination}",
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n",
        )
    }

    pub fn timeout() -> Self {
        LocalReply::new(
            504,
            Some(ResponseFlag::UT),
            "upstream_response_timeout",
            "upstream request timeout\n",
        )
    }

    /// The client went away: nothing to send, `DC` in the log.
    pub fn downstream_disconnect() -> Self {
        LocalReply::new(
            0,
            Some(ResponseFlag::DC),
            "downstream_remote_disconnect",
            "",
        )
    }

    /// An egress destination no ServiceEntry lists, reached through a route (Istio has no
    /// cluster for it under REGISTRY_ONLY).
    pub fn cluster_not_found(host: &str) -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::NC),
            "cluster_not_found",
            format!("destination {host} is not in the registry (no ServiceEntry lists it)\n"),
        )
    }
}
