//! Outlier detection (DestinationRule `outlierDetection`, Envoy's consecutive-5xx and
//! consecutive-gateway-error detectors): an endpoint that fails too often in a row is ejected
//! for `baseEjectionTime` × the number of times it was ejected, never more than
//! `maxEjectionPercent` of the cluster at once, and is chosen again once its time is up.
//! Time is `tokio::time::Instant`, so the tests below run on paused time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::types::OutlierDetection;

/// `outlierDetection`, with Envoy's defaults for what is unset.
#[derive(Debug, Clone, Serialize)]
pub struct OutlierPolicy {
    /// Consecutive 5xx (and connect failures) that eject an endpoint; 0 = off. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and connect failures) that eject; 0 = off (the default).
    pub consecutive_gateway: u32,
    pub base_ejection: Duration,
    /// At most this share of endpoints is ejected at once (Envoy always allows one).
    pub max_ejection_percent: u32,
}

impl OutlierPolicy {
    pub fn compile(o: &OutlierDetection) -> OutlierPolicy {
        let count = |v: Option<i64>, default: u32| {
            v.map_or(default, |n| n.clamp(0, i64::from(u32::MAX)) as u32)
        };
        OutlierPolicy {
            consecutive_5xx: count(o.consecutive_5xx_errors, 5),
            consecutive_gateway: count(o.consecutive_gateway_errors.or(o.consecutive_errors), 0),
            base_ejection: o
                .base_ejection_time
                .map_or(Duration::from_secs(30), |d| d.get()),
            max_ejection_percent: count(o.max_ejection_percent, 10).min(100),
        }
    }
}

/// How an upstream attempt ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx other than 502/503/504.
    ServerError,
    /// 502/503/504, a connect failure, or a reset.
    GatewayError,
}

impl Outcome {
    /// The outcome of an attempt that got a response with `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            502..=504 => Outcome::GatewayError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

#[derive(Debug, Default)]
struct EndpointHealth {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

impl EndpointHealth {
    fn ejected_at(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }
}

/// The ejection state of one cluster's endpoints (kept across reloads with the cluster stats).
#[derive(Debug, Default)]
pub struct Ejections {
    /// False when no endpoint can be ejected right now: endpoint choice then takes no lock.
    maybe_ejected: AtomicBool,
    health: Mutex<HashMap<SocketAddr, EndpointHealth>>,
    total: AtomicU64,
}

impl Ejections {
    /// Ejections made so far, in total.
    pub fn total(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Endpoints ejected at `now`.
    pub fn active(&self, now: Instant) -> usize {
        if !self.maybe_ejected.load(Relaxed) {
            return 0;
        }
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.values().filter(|h| h.ejected_at(now)).count()
    }

    /// Calls `choose` with a predicate that tells whether an endpoint is ejected at `now`.
    /// Without ejections (the common case) this takes no lock.
    pub fn with_ejected<R>(
        &self,
        now: Instant,
        choose: impl FnOnce(&dyn Fn(SocketAddr) -> bool) -> R,
    ) -> R {
        if !self.maybe_ejected.load(Relaxed) {
            return choose(&|_| false);
        }
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if !health.values().any(|h| h.ejected_at(now)) {
            self.maybe_ejected.store(false, Relaxed);
            return choose(&|_| false);
        }
        choose(&|a| health.get(&a).is_some_and(|h| h.ejected_at(now)))
    }

    /// Records how an attempt on `addr` ended; ejects the endpoint (and returns for how long) when it crosses a threshold
    /// (for `base_ejection` × the number of times it was ejected, Envoy's back-off). `endpoints`
    /// is the cluster's size, for the `max_ejection_percent` cap.
    pub fn record(
        &self,
        policy: &OutlierPolicy,
        endpoints: usize,
        addr: SocketAddr,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Duration> {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let ejected_now = health.values().filter(|h| h.ejected_at(now)).count();
        let h = health.entry(addr).or_default();
        match outcome {
            Outcome::Success => {
                h.consecutive_5xx = 0;
                h.consecutive_gateway = 0;
                return None;
            }
            Outcome::ServerError => {
                h.consecutive_5xx += 1;
                h.consecutive_gateway = 0;
            }
            Outcome::GatewayError => {
                h.consecutive_5xx += 1;
                h.consecutive_gateway += 1;
            }
        }
        let tripped = (policy.consecutive_5xx > 0 && h.consecutive_5xx >= policy.consecutive_5xx)
            || (policy.consecutive_gateway > 0
                && h.consecutive_gateway >= policy.consecutive_gateway);
        let cap = (endpoints * policy.max_ejection_percent as usize / 100).max(1);
        if !tripped || h.ejected_at(now) || ejected_now >= cap {
            return None;
        }
        h.ejections += 1;
        let duration = policy.base_ejection * h.ejections;
        h.ejected_until = Some(now + duration);
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        self.total.fetch_add(1, Relaxed);
        self.maybe_ejected.store(true, Relaxed);
        Some(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(consecutive_5xx: u32, consecutive_gateway: u32, max_pct: u32) -> OutlierPolicy {
        OutlierPolicy {
            consecutive_5xx,
            consecutive_gateway,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: max_pct,
        }
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    fn ejected(e: &Ejections, a: SocketAddr) -> bool {
        e.with_ejected(Instant::now(), |is| is(a))
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_5xx_eject_and_a_success_resets_the_count() {
        let (p, e) = (policy(3, 0, 100), Ejections::default());
        for _ in 0..2 {
            e.record(&p, 4, addr(1), Outcome::ServerError, Instant::now());
        }
        e.record(&p, 4, addr(1), Outcome::Success, Instant::now());
        e.record(&p, 4, addr(1), Outcome::ServerError, Instant::now());
        assert!(!ejected(&e, addr(1)), "the success reset the count");
        e.record(&p, 4, addr(1), Outcome::ServerError, Instant::now());
        assert!(e
            .record(&p, 4, addr(1), Outcome::GatewayError, Instant::now())
            .is_some());
        assert!(ejected(&e, addr(1)));
        assert!(!ejected(&e, addr(2)));
        assert_eq!(e.total(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_errors_count_separately_and_other_5xx_reset_them() {
        let (p, e) = (policy(0, 2, 100), Ejections::default());
        e.record(&p, 4, addr(1), Outcome::GatewayError, Instant::now());
        e.record(&p, 4, addr(1), Outcome::ServerError, Instant::now());
        e.record(&p, 4, addr(1), Outcome::GatewayError, Instant::now());
        assert!(!ejected(&e, addr(1)));
        e.record(&p, 4, addr(1), Outcome::GatewayError, Instant::now());
        assert!(ejected(&e, addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn readmitted_after_base_ejection_time_then_ejected_for_longer() {
        let (p, e) = (policy(1, 0, 100), Ejections::default());
        e.record(&p, 2, addr(1), Outcome::ServerError, Instant::now());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            ejected(&e, addr(1)),
            "still ejected before baseEjectionTime"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!ejected(&e, addr(1)), "re-admitted after baseEjectionTime");
        assert_eq!(e.active(Instant::now()), 0);
        // The second ejection lasts twice as long (Envoy: base × number of ejections).
        e.record(&p, 2, addr(1), Outcome::ServerError, Instant::now());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(ejected(&e, addr(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!ejected(&e, addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_caps_ejections_but_always_allows_one() {
        // 10% of 4 endpoints rounds down to 0: one may still be ejected, not two.
        let (p, e) = (policy(1, 0, 10), Ejections::default());
        assert!(e
            .record(&p, 4, addr(1), Outcome::ServerError, Instant::now())
            .is_some());
        assert!(e
            .record(&p, 4, addr(2), Outcome::ServerError, Instant::now())
            .is_none());
        assert_eq!(e.active(Instant::now()), 1);
        // 50% of 4: two at once.
        let (p, e) = (policy(1, 0, 50), Ejections::default());
        for i in 1..=3 {
            e.record(&p, 4, addr(i), Outcome::ServerError, Instant::now());
        }
        assert_eq!(e.active(Instant::now()), 2);
        assert!(!ejected(&e, addr(3)));
    }

    #[test]
    fn envoy_defaults_fill_what_is_unset() {
        let p = OutlierPolicy::compile(&OutlierDetection::default());
        assert_eq!(p.consecutive_5xx, 5);
        assert_eq!(p.consecutive_gateway, 0);
        assert_eq!(p.base_ejection, Duration::from_secs(30));
        assert_eq!(p.max_ejection_percent, 10);
    }
}
