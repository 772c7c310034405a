//! `retries`: how many more attempts a failed one may get, and on which failures. Istio's
//! default when `retries` is unset: 2 attempts on connect-failure, refused-stream, unavailable,
//! cancelled, retriable-status-codes.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::opt_duration;
use crate::config::types::HttpRetry;

#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on_connect_failure: bool,
    /// `reset`, `refused-stream`, `reset-before-request`: the upstream dropped the connection.
    pub on_reset: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub per_try_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on_connect_failure: true,
            on_reset: true,
            per_try_timeout: None,
        }
    }
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
    pub fn compile(r: Option<&HttpRetry>) -> RetryPolicy {
        let Some(r) = r else {
            return RetryPolicy::default();
        };
        let mut p = RetryPolicy {
            attempts: r.attempts.max(0) as u32,
            on_connect_failure: false,
            on_reset: false,
            per_try_timeout: r.per_try_timeout.map(|d| d.get()),
        };
        let retry_on = r.retry_on.clone().unwrap_or_else(|| {
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into()
        });
        for token in retry_on.split(',').map(str::trim) {
            match token {
                "connect-failure" => p.on_connect_failure = true,
                "reset" | "refused-stream" | "reset-before-request" => p.on_reset = true,
                // Status-based retries are not supported (validation warns).
                _ => {}
            }
        }
        p
    }

    /// Whether another attempt may follow: retries left and time left.
    fn allows(&self, a: Attempted) -> bool {
        a.attempts <= self.attempts && a.time_left()
    }

    /// Retry after the connection to the upstream could not be made?
    pub fn on_connect_failure(&self, a: Attempted) -> bool {
        self.on_connect_failure && self.allows(a)
    }

    /// Retry after the upstream dropped the request? Only while nothing has been sent back.
    pub fn on_reset(&self, a: Attempted, response_started: bool) -> bool {
        self.on_reset && !response_started && self.allows(a)
    }

    /// The time one attempt gets: what is left of the route timeout, bounded by `perTryTimeout`.
    pub fn attempt_budget(&self, remaining: Option<Duration>) -> Option<Duration> {
        match (remaining, self.per_try_timeout) {
            (Some(r), Some(p)) => Some(r.min(p)),
            (r, p) => r.or(p),
        }
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

    #[test]
    fn default_retry_policy_is_istios() {
        let p = RetryPolicy::compile(None);
        assert_eq!(p.attempts, 2);
        assert!(p.on_connect_failure && p.on_reset);
        // An explicit retryOn replaces the default list.
        let p = RetryPolicy::compile(Some(&HttpRetry {
            attempts: 3,
            retry_on: Some("reset".into()),
            ..Default::default()
        }));
        assert!(p.on_reset && !p.on_connect_failure && p.attempts == 3);
    }

    #[test]
    fn attempts_count_the_first_try_plus_retries() {
        let p = RetryPolicy::default();
        assert!(p.on_connect_failure(after(1)));
        assert!(p.on_connect_failure(after(2)));
        assert!(
            !p.on_connect_failure(after(3)),
            "2 retries after the first try"
        );
    }

    #[test]
    fn no_retry_once_the_response_started_or_the_deadline_passed() {
        let p = RetryPolicy::default();
        assert!(p.on_reset(after(1), false));
        assert!(!p.on_reset(after(1), true));
        let late = Attempted {
            attempts: 1,
            deadline: Some(Instant::now() - Duration::from_millis(1)),
        };
        assert!(!p.on_connect_failure(late));
    }

    #[test]
    fn per_try_timeout_bounds_the_attempt_budget() {
        let mut p = RetryPolicy::default();
        assert_eq!(p.attempt_budget(None), None);
        p.per_try_timeout = Some(Duration::from_secs(1));
        assert_eq!(p.attempt_budget(None), Some(Duration::from_secs(1)));
        assert_eq!(
            p.attempt_budget(Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
    }
}
