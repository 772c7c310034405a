//! `retries`: which failed attempts get another one, exactly as Istio configures Envoy
//! (`pilot/pkg/networking/core/route/retry/retry.go` `ConvertPolicy`, `parseRetryOn`) and Envoy
//! decides (`source/common/router/retry_state_impl.cc` `wouldRetryFromHeaders`,
//! `wouldRetryFromReset`, `JitteredExponentialBackOffStrategy`).
//!
//! - No `retries`: Istio's default, 2 retries on
//!   `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` with no status
//!   codes (a 503 is not retried; a reset or a per-try timeout is not retried).
//! - `attempts: 0` (or less): no retries at all.
//! - Bare status codes in `retryOn` become retriable status codes, and `retriable-status-codes`
//!   is added (`parseRetryOn`).
//! - A reset (the upstream closed or reset the stream, or a per-try timeout) is retried under
//!   `reset`, `5xx`, `gateway-error`, and under `reset-before-request` when nothing was sent;
//!   a connection failure also under `connect-failure`; an HTTP/2 REFUSED_STREAM (or GOAWAY)
//!   under `refused-stream`.
//! - Every retry waits a fully jittered exponential back-off: 25 ms base (or `backoff`), capped
//!   at 10 × base (250 ms).
//! - The previous-hosts predicate (another endpoint on retry) unless `retryIgnorePreviousHosts:
//!   false` or the destination hashes consistently (`ConvertPolicy(.., hashPolicy)`).

use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::{Serialize, Serializer};

use super::opt_duration;
use crate::config::types::HttpRetry;

/// Envoy's `retry_on` conditions (`RetryPolicy::RETRY_ON_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 2);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 3);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 5);
    pub const RESET: RetryOn = RetryOn(1 << 6);
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 7);
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 9);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 10);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 11);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 12);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 13);

    /// The tokens Envoy parses (`parseRetryOn`, `parseRetryGrpcOn`); others are ignored, as
    /// Envoy ignores them (`retriable-headers` has no headers to match under Istio).
    const TOKENS: [(&'static str, RetryOn); 14] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("reset", Self::RESET),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("envoy-ratelimited", Self::ENVOY_RATELIMITED),
        ("cancelled", Self::GRPC_CANCELLED),
        ("deadline-exceeded", Self::GRPC_DEADLINE_EXCEEDED),
        ("resource-exhausted", Self::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", Self::GRPC_UNAVAILABLE),
        ("internal", Self::GRPC_INTERNAL),
    ];

    pub fn has(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }

    fn names(self) -> Vec<&'static str> {
        Self::TOKENS
            .iter()
            .filter(|(_, f)| self.has(*f))
            .map(|(n, _)| *n)
            .collect()
    }
}

fn retry_on_list<S: Serializer>(r: &RetryOn, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.names().join(","))
}

/// Istio's default `retryOn` (`retry.go` `defaultRetryOn`).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Envoy's base back-off interval (`upstream.base_retry_backoff_ms`).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first try (`attempts`); 0: none.
    pub retries: u32,
    #[serde(serialize_with = "retry_on_list")]
    pub retry_on: RetryOn,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub per_try_timeout: Option<Duration>,
    #[serde(skip)]
    pub backoff_base: Duration,
    /// Retry on an endpoint not tried yet (Envoy's previous-hosts predicate).
    pub previous_hosts: bool,
}

impl Default for RetryPolicy {
    /// Istio's default policy (no `retries` on the route).
    fn default() -> Self {
        RetryPolicy::parse(2, DEFAULT_RETRY_ON, None, None, true)
    }
}

/// How an attempt failed without a response, in Envoy's terms (`Http::StreamResetReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The connection could not be made (refused, timed out, TLS handshake failed).
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM, or a GOAWAY that never processed the stream.
    RefusedStream,
    /// The upstream closed or reset the stream, or the per-try timeout reset it.
    Other,
}

/// Where a request stands when an attempt fails.
#[derive(Debug, Clone, Copy)]
pub struct Attempted {
    /// Attempts made so far (the failed one included).
    pub attempts: u32,
    /// The route timeout's deadline, if any.
    pub deadline: Option<Instant>,
}

impl Attempted {
    fn time_left(&self) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }
}

impl RetryPolicy {
    /// `retries` as Istio translates it; `consistent_hash`: the single destination hashes
    /// consistently (Istio then drops the previous-hosts predicate).
    pub fn compile(r: Option<&HttpRetry>, consistent_hash: bool) -> RetryPolicy {
        let Some(r) = r else {
            return RetryPolicy {
                previous_hosts: !consistent_hash,
                ..RetryPolicy::default()
            };
        };
        if r.attempts <= 0 {
            return RetryPolicy::disabled();
        }
        let retry_on = r
            .retry_on
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_RETRY_ON);
        let previous_hosts = r.retry_ignore_previous_hosts.unwrap_or(!consistent_hash);
        RetryPolicy::parse(
            r.attempts as u32,
            retry_on,
            r.per_try_timeout.map(|d| d.get()),
            r.backoff.map(|d| d.get()),
            previous_hosts,
        )
    }

    /// No retries (`attempts: 0`).
    pub fn disabled() -> RetryPolicy {
        RetryPolicy::parse(0, "", None, None, true)
    }

    fn parse(
        retries: u32,
        retry_on: &str,
        per_try_timeout: Option<Duration>,
        backoff: Option<Duration>,
        previous_hosts: bool,
    ) -> RetryPolicy {
        let mut on = RetryOn::default();
        let mut codes = Vec::new();
        for token in retry_on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // `parseRetryOn`: an integer that is a known HTTP status is a retriable code.
            if let Some(code) = token.parse::<u16>().ok().filter(|c| {
                http::StatusCode::from_u16(*c).is_ok_and(|s| s.canonical_reason().is_some())
            }) {
                codes.push(code);
                continue;
            }
            if let Some((_, flag)) = RetryOn::TOKENS.iter().find(|(n, _)| *n == token) {
                on.insert(*flag);
            }
        }
        if !codes.is_empty() {
            on.insert(RetryOn::RETRIABLE_STATUS_CODES);
        }
        RetryPolicy {
            retries,
            retry_on: on,
            retriable_status_codes: codes,
            per_try_timeout: per_try_timeout.filter(|d| !d.is_zero()),
            backoff_base: backoff
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_BACKOFF_BASE)
                .max(Duration::from_millis(1)),
            previous_hosts,
        }
    }

    /// Whether another attempt may follow: retries left and time left.
    fn allows(&self, a: Attempted) -> bool {
        a.attempts <= self.retries && a.time_left()
    }

    /// Retry after an attempt that got no response (`wouldRetryFromReset`)? `started`: bytes of
    /// the request were sent upstream.
    pub fn on_reset(&self, a: Attempted, reset: Reset, started: bool) -> bool {
        let on = self.retry_on;
        let would = (reset == Reset::ConnectFailure && on.has(RetryOn::CONNECT_FAILURE))
            || (on.has(RetryOn::RESET_BEFORE_REQUEST) && !started)
            || on.has(RetryOn::RESET)
            || on.has(RetryOn::FIVE_XX)
            || on.has(RetryOn::GATEWAY_ERROR)
            || (reset == Reset::RefusedStream && on.has(RetryOn::REFUSED_STREAM));
        would && self.allows(a)
    }

    /// Retry after the upstream answered with `status` and `headers`
    /// (`wouldRetryFromHeaders`)?
    pub fn on_response(&self, a: Attempted, status: u16, headers: &HeaderMap) -> bool {
        self.would_retry_response(status, headers) && self.allows(a)
    }

    fn would_retry_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.retry_on;
        // A response from an upstream Envoy's rate limiter is retried only under
        // `envoy-ratelimited`.
        if headers.contains_key("x-envoy-ratelimited") {
            return on.has(RetryOn::ENVOY_RATELIMITED);
        }
        if on.has(RetryOn::FIVE_XX) && (500..600).contains(&status) {
            return true;
        }
        if on.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_STATUS_CODES) && self.retriable_status_codes.contains(&status)
        {
            return true;
        }
        // gRPC: the status of a trailers-only response (`grpc-status` in the headers).
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        matches!(
            grpc,
            Some(1) if on.has(RetryOn::GRPC_CANCELLED)
        ) || matches!(grpc, Some(4) if on.has(RetryOn::GRPC_DEADLINE_EXCEEDED))
            || matches!(grpc, Some(8) if on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED))
            || matches!(grpc, Some(13) if on.has(RetryOn::GRPC_INTERNAL))
            || matches!(grpc, Some(14) if on.has(RetryOn::GRPC_UNAVAILABLE))
    }

    /// The wait before retry number `retry` (1 for the first retry): Envoy's fully jittered
    /// exponential back-off, a random time below `base × 2^(retry-1)`, capped at 10 × base.
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self.backoff_base.as_millis().max(1) as u64;
        let max = base * 10;
        let interval = base
            .saturating_mul(1u64 << retry.saturating_sub(1).min(32))
            .min(max);
        Duration::from_millis(fastrand::u64(0..interval).min(max))
    }

    /// The time one attempt gets: what is left of the route timeout, bounded by `perTryTimeout`.
    pub fn attempt_budget(&self, remaining: Option<Duration>) -> Option<Duration> {
        match (remaining, self.per_try_timeout) {
            (Some(r), Some(p)) => Some(r.min(p)),
            (r, p) => r.or(p),
        }
    }

    /// `x-envoy-expected-rq-timeout-ms` (`FilterUtility::setTimeoutHeaders`): the per-try
    /// timeout when it is shorter than the route timeout, else the route timeout; never more
    /// than what is left. `None` when no timeout applies.
    pub fn expected_timeout(
        &self,
        route: Option<Duration>,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let per_try = self
            .per_try_timeout
            .filter(|p| route.is_none_or(|r| *p < r));
        let expected = per_try.or(route)?;
        Some(match remaining {
            Some(r) => expected.min(r).max(Duration::from_millis(1)),
            None => expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(attempts: u32) -> Attempted {
        Attempted {
            attempts,
            deadline: None,
        }
    }

    fn retry(attempts: i32, retry_on: &str) -> RetryPolicy {
        RetryPolicy::compile(
            Some(&HttpRetry {
                attempts,
                retry_on: Some(retry_on.into()),
                ..Default::default()
            }),
            false,
        )
    }

    fn grpc(status: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", status.parse().unwrap());
        h
    }

    #[test]
    fn default_policy_is_istios_without_status_codes() {
        // retry.go: attempts 2, defaultRetryOn, no retriable status codes.
        let p = RetryPolicy::compile(None, false);
        assert_eq!(p.retries, 2);
        assert_eq!(
            p.retry_on.names().join(","),
            "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
        );
        assert!(p.retriable_status_codes.is_empty());
        assert!(p.previous_hosts);
        let none = HeaderMap::new();
        assert!(!p.on_response(after(1), 503, &none), "a 503 is not retried");
        assert!(p.on_reset(after(1), Reset::ConnectFailure, false));
        assert!(p.on_reset(after(1), Reset::RefusedStream, true));
        assert!(
            !p.on_reset(after(1), Reset::Other, true),
            "a reset is not retried"
        );
        assert!(
            p.on_response(after(1), 200, &grpc("14")),
            "gRPC UNAVAILABLE"
        );
        assert!(p.on_response(after(1), 200, &grpc("1")), "gRPC CANCELLED");
        assert!(!p.on_response(after(1), 200, &grpc("13")));
        // With consistent hashing the retry stays on the same endpoint.
        assert!(!RetryPolicy::compile(None, true).previous_hosts);
    }

    #[test]
    fn attempts_zero_disables_and_empty_retry_on_keeps_the_default_list() {
        let p = retry(0, "5xx");
        assert_eq!(p.retries, 0);
        assert!(!p.on_reset(after(1), Reset::ConnectFailure, false));
        let p = retry(3, "");
        assert_eq!(p.retries, 3);
        assert!(p.retry_on.has(RetryOn::CONNECT_FAILURE));
    }

    #[test]
    fn bare_status_codes_become_retriable_status_codes() {
        // parseRetryOn: integers that are HTTP statuses; `retriable-status-codes` is added.
        let p = retry(2, "503, gateway-error,999");
        assert_eq!(p.retriable_status_codes, [503]);
        assert!(p.retry_on.has(RetryOn::RETRIABLE_STATUS_CODES));
        let none = HeaderMap::new();
        assert!(p.on_response(after(1), 503, &none));
        assert!(p.on_response(after(1), 504, &none), "gateway-error");
        assert!(!p.on_response(after(1), 500, &none));
    }

    #[test]
    fn status_conditions_follow_envoy() {
        let none = HeaderMap::new();
        let p = retry(1, "5xx");
        assert!(p.on_response(after(1), 500, &none) && p.on_response(after(1), 599, &none));
        assert!(!p.on_response(after(1), 409, &none));
        let p = retry(1, "retriable-4xx");
        assert!(p.on_response(after(1), 409, &none));
        assert!(!p.on_response(after(1), 404, &none));
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(!retry(1, "5xx").on_response(after(1), 503, &limited));
        assert!(retry(1, "envoy-ratelimited").on_response(after(1), 429, &limited));
        assert!(
            retry(1, "internal,deadline-exceeded,resource-exhausted").on_response(
                after(1),
                200,
                &grpc("8")
            )
        );
    }

    #[test]
    fn resets_follow_envoy() {
        // wouldRetryFromReset: 5xx, gateway-error and reset retry any reset (a per-try
        // timeout included); reset-before-request only when nothing was sent.
        for on in ["5xx", "gateway-error", "reset"] {
            assert!(retry(1, on).on_reset(after(1), Reset::Other, true), "{on}");
            assert!(
                retry(1, on).on_reset(after(1), Reset::ConnectFailure, false),
                "{on}"
            );
        }
        let p = retry(1, "reset-before-request");
        assert!(p.on_reset(after(1), Reset::Other, false));
        assert!(!p.on_reset(after(1), Reset::Other, true));
        let p = retry(1, "refused-stream");
        assert!(!p.on_reset(after(1), Reset::Other, true));
        assert!(!p.on_reset(after(1), Reset::ConnectFailure, false));
    }

    #[test]
    fn attempts_count_the_first_try_plus_retries_and_the_deadline_ends_them() {
        let p = RetryPolicy::default();
        assert!(p.on_reset(after(2), Reset::ConnectFailure, false));
        assert!(
            !p.on_reset(after(3), Reset::ConnectFailure, false),
            "2 retries after the first try"
        );
        let late = Attempted {
            attempts: 1,
            deadline: Some(Instant::now() - Duration::from_millis(1)),
        };
        assert!(!p.on_reset(late, Reset::ConnectFailure, false));
    }

    #[test]
    fn backoff_is_jittered_below_the_doubling_interval_and_capped_at_ten_times_the_base() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            assert!(p.backoff(1) < Duration::from_millis(25));
            assert!(p.backoff(2) < Duration::from_millis(50));
            assert!(p.backoff(10) < Duration::from_millis(250));
        }
        let mut p = retry(1, "5xx");
        p.backoff_base = Duration::from_millis(100);
        assert!((0..200).all(|_| p.backoff(20) < Duration::from_millis(1000)));
    }

    #[test]
    fn per_try_timeout_bounds_the_attempt_and_the_expected_timeout_header() {
        let mut p = RetryPolicy::default();
        assert_eq!(p.attempt_budget(None), None);
        assert_eq!(p.expected_timeout(None, None), None);
        p.per_try_timeout = Some(Duration::from_secs(1));
        assert_eq!(p.attempt_budget(None), Some(Duration::from_secs(1)));
        assert_eq!(
            p.attempt_budget(Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        let s = Duration::from_secs;
        assert_eq!(p.expected_timeout(None, None), Some(s(1)));
        assert_eq!(p.expected_timeout(Some(s(5)), Some(s(5))), Some(s(1)));
        // A per-try timeout not shorter than the route's is ignored (finalTimeout).
        assert_eq!(p.expected_timeout(Some(s(1)), Some(s(1))), Some(s(1)));
        assert_eq!(
            p.expected_timeout(Some(s(5)), Some(Duration::from_millis(200))),
            Some(Duration::from_millis(200))
        );
    }
}
