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

    /// No virtual host or no route: Envoy's 404 with an empty body (router `decodeHeaders`).
    pub fn no_route() -> Self {
        LocalReply::new(404, Some(ResponseFlag::NR), "route_not_found", "")
    }

    pub fn misdirected(host: &str) -> Self {
        LocalReply::new(
            421,
            Some(ResponseFlag::NR),
            "misdirected_request",
            format!("{host} is not served with the certificate this connection negotiated; retry on a new connection\n"),
        )
    }

    /// HTTP/1.1 without `Host`: Envoy's codec answers 400 with an empty body.
    pub fn missing_host() -> Self {
        LocalReply::new(400, Some(ResponseFlag::DPE), "missing_host_header", "")
    }

    /// HTTP/1.0 while it is not accepted (Istio's `PILOT_HTTP10` off): Envoy's codec answers
    /// 426 `Upgrade Required` (`ServerConnectionImpl::onHeadersComplete`, `LowVersion`).
    pub fn http10_refused() -> Self {
        LocalReply::new(
            426,
            Some(ResponseFlag::DPE),
            "http1.codec_error",
            "Upgrade Required",
        )
    }

    /// No endpoint to send to (`Filter::sendNoHealthyUpstreamResponse`); the reason goes to
    /// the log, not the client.
    pub fn no_healthy_upstream() -> Self {
        LocalReply::new(
            503,
            Some(ResponseFlag::UH),
            "no_healthy_upstream",
            "no healthy upstream",
        )
    }

    /// A reset before the response started (`Filter::onUpstreamReset`): the body names Envoy's
    /// reset reason, "retried and the latest" after a retry, and the transport failure reason
    /// when there is one.
    fn reset(
        flag: ResponseFlag,
        reason: &'static str,
        details: &'static str,
        transport_failure: Option<&str>,
        retried: bool,
    ) -> Self {
        let mut body =
            format!(
            "upstream connect error or disconnect/reset before headers. {}reset reason: {reason}",
            if retried { "retried and the latest " } else { "" }
        );
        if let Some(t) = transport_failure.filter(|t| !t.is_empty()) {
            body.push_str(", transport failure reason: ");
            body.push_str(t);
        }
        LocalReply::new(503, Some(flag), details, body)
    }

    /// The circuit breaker refused the request: Envoy's overflow reset, with
    /// `x-envoy-overloaded: true` (`Filter::onUpstreamAbort`, `dropped`).
    pub fn overflow() -> Self {
        LocalReply::reset(
            ResponseFlag::UO,
            "overflow",
            "upstream_reset_before_response_started{overflow}",
            None,
            false,
        )
        .header(
            HeaderName::from_static("x-envoy-overloaded"),
            HeaderValue::from_static("true"),
        )
    }

    /// The connection failed. A refused or unreachable endpoint has no transport failure
    /// reason in Envoy's body (it says `remote connection failure`); a TLS failure does.
    pub fn connect_failure(transport_failure: Option<&str>, retried: bool) -> Self {
        LocalReply::reset(
            ResponseFlag::UF,
            "remote connection failure",
            "upstream_reset_before_response_started{remote_connection_failure}",
            transport_failure,
            retried,
        )
    }

    /// The connection timed out (`connection timeout`).
    pub fn connect_timeout(retried: bool) -> Self {
        LocalReply::reset(
            ResponseFlag::UF,
            "connection timeout",
            "upstream_reset_before_response_started{connection_timeout}",
            None,
            retried,
        )
    }

    /// An HTTP/2 upstream reset the stream (`remote reset`), or refused it before processing
    /// it (`remote refused stream reset`): Envoy's `UR`.
    pub fn remote_reset(refused: bool, retried: bool) -> Self {
        if refused {
            LocalReply::reset(
                ResponseFlag::UR,
                "remote refused stream reset",
                "upstream_reset_before_response_started{remote_refused_stream_reset}",
                None,
                retried,
            )
        } else {
            LocalReply::reset(
                ResponseFlag::UR,
                "remote reset",
                "upstream_reset_before_response_started{remote_reset}",
                None,
                retried,
            )
        }
    }

    pub fn upstream_reset(retried: bool) -> Self {
        LocalReply::reset(
            ResponseFlag::UC,
            "connection termination",
            "upstream_reset_before_response_started{connection_termination}",
            None,
            retried,
        )
    }

    pub fn timeout() -> Self {
        LocalReply::new(
            504,
            Some(ResponseFlag::UT),
            "upstream_response_timeout",
            "upstream request timeout",
        )
    }

    /// The per-try timeout ended the last attempt (`Filter::onPerTryTimeoutCommon`).
    pub fn per_try_timeout() -> Self {
        LocalReply::new(
            504,
            Some(ResponseFlag::UT),
            "upstream_per_try_timeout",
            "upstream request timeout",
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
    /// cluster for it under REGISTRY_ONLY): Envoy's 503 with an empty body.
    pub fn cluster_not_found() -> Self {
        LocalReply::new(503, Some(ResponseFlag::NC), "cluster_not_found", "")
    }
}
