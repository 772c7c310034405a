//! The downstream limits and timeouts of one running gateway: what a client may send, how long
//! it may take, how many connections it may hold. One value, filled by `app` from the command
//! line; defaults are Envoy's as istio-ingressgateway runs it, except where Envoy has none
//! (then the choice is documented in `docs/hardening.md`).

use std::time::Duration;

/// Every downstream limit and timeout. `None` means "no limit".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamLimits {
    /// The largest request head, request line and CRLFs included (Envoy
    /// `max_request_headers_kb`, 60 KiB; its HTTP/1 parser counts the raw head). HTTP/2: the
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` advertised and enforced. Larger: 431.
    pub max_request_headers_bytes: usize,
    /// The most header fields a request may carry (Envoy `max_request_headers_count`, 100).
    /// More: 431.
    pub max_request_headers_count: usize,
    /// How long a client has to send a whole request head, from the connection's start (first
    /// request) or from the head's first byte (later requests): nginx `client_header_timeout`;
    /// Envoy's `request_headers_timeout` is off unless set. Late: 408, then close.
    pub request_headers_timeout: Option<Duration>,
    /// How long an idle HTTP/1 keep-alive connection is kept between requests.
    pub http1_idle_timeout: Duration,
    /// How long an HTTP/2 connection without open streams is kept (Envoy
    /// `common_http_protocol_options.idle_timeout`, 1 h).
    pub http2_idle_timeout: Option<Duration>,
    /// How long a request may go without a byte read or written downstream (Envoy
    /// `stream_idle_timeout`, 5 min).
    pub stream_idle_timeout: Option<Duration>,
    /// How long a connection may live; then it drains (HTTP/1 `Connection: close` on the next
    /// response, HTTP/2 GOAWAY) and is closed after the drain timeout (Envoy
    /// `max_connection_duration`, none).
    pub max_connection_duration: Option<Duration>,
    /// The largest request body (none in Envoy's router; nginx `client_max_body_size` 1 MiB).
    /// Larger: 413.
    pub max_request_body_bytes: Option<u64>,
    /// Open downstream connections across all listeners (Envoy overload manager
    /// `global_downstream_max_connections`). More: accepted and closed at once.
    pub max_connections: Option<usize>,
    /// Open downstream connections per listener address.
    pub max_connections_per_listener: Option<usize>,
    /// The memory all partly received request heads may hold together; past it new
    /// connections are refused and a head that needs more is answered 503.
    pub max_pending_headers_bytes: usize,
}

impl Default for DownstreamLimits {
    fn default() -> Self {
        DownstreamLimits {
            max_request_headers_bytes: 60 * 1024,
            max_request_headers_count: 100,
            request_headers_timeout: Some(Duration::from_secs(30)),
            http1_idle_timeout: Duration::from_secs(60),
            http2_idle_timeout: Some(Duration::from_secs(3600)),
            stream_idle_timeout: Some(Duration::from_secs(300)),
            max_connection_duration: None,
            max_request_body_bytes: None,
            max_connections: None,
            max_connections_per_listener: None,
            max_pending_headers_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The open-file limit's share for downstream connections when `--max-connections` is not
/// given: each proxied connection may need an upstream one too, and some descriptors are kept
/// for listeners, certificates and config files. `None`: the limit is unknown or unlimited.
pub fn connections_within_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let files = usize::try_from(limit.rlim_cur).ok()?;
    Some(files.saturating_sub(128).max(128) / 2)
}

/// Raises the soft open-file limit to the hard one (as Go's runtime and nginx's
/// `worker_rlimit_nofile` do), so the connection cap derived from it is not needlessly low.
pub fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above; setrlimit only reads the struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_envoys_where_envoy_has_one() {
        let l = DownstreamLimits::default();
        assert_eq!(l.max_request_headers_bytes, 60 * 1024);
        assert_eq!(l.max_request_headers_count, 100);
        assert_eq!(l.http2_idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(l.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(l.max_connection_duration, None);
    }

    #[test]
    fn the_derived_connection_cap_leaves_room_for_upstream_connections() {
        if let Some(cap) = connections_within_file_limit() {
            assert!(cap >= 64);
        }
    }
}
