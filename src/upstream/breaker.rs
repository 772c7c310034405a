//! Circuit breakers (DestinationRule `connectionPool`, Envoy's cluster circuit breakers):
//! `http2MaxRequests` bounds concurrent requests; for HTTP/1 upstreams `maxConnections` bounds
//! requests in flight (one per connection) and up to `http1MaxPendingRequests` more may wait for
//! a slot; anything beyond overflows (503 `UO`). `maxRequestsPerConnection` closes a connection
//! after that many requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one cluster; `None` = unlimited (0 in Istio means unset).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CircuitBreaker {
    /// `http.http2MaxRequests`: concurrent requests to the cluster.
    pub max_requests: Option<u64>,
    /// `tcp.maxConnections`.
    pub max_connections: Option<u64>,
    /// `http.http1MaxPendingRequests`: how many requests may wait for a connection slot.
    pub max_pending_requests: Option<u64>,
    pub max_requests_per_connection: Option<u64>,
}

/// The circuit breaker's state, kept across reloads with the cluster stats.
#[derive(Debug, Default)]
pub struct BreakerState {
    /// Requests currently admitted (between admission and the end of the response).
    pub active_requests: AtomicU64,
    /// Requests refused (Envoy `UO`).
    pub overflows: AtomicU64,
    /// Requests waiting for a connection slot.
    pending: AtomicU64,
    /// The `maxConnections` slot semaphore, rebuilt when the limit changes.
    connection_slots: Mutex<Option<(u64, Arc<Semaphore>)>>,
    /// Requests served per upstream connection (by fd), for `maxRequestsPerConnection`.
    per_connection: Mutex<HashMap<i32, u64>>,
}

impl BreakerState {
    /// The semaphore bounding concurrent upstream connections, sized to `limit`.
    fn connection_slots(&self, limit: u64) -> Arc<Semaphore> {
        let mut slot = self
            .connection_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((l, sem)) if *l == limit => sem.clone(),
            _ => {
                let permits = usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS);
                let sem = Arc::new(Semaphore::new(permits));
                *slot = Some((limit, sem.clone()));
                sem
            }
        }
    }

    /// Counts a request on upstream connection `fd`; returns how many it has carried.
    fn count_on_connection(&self, fd: i32, reused: bool) -> u64 {
        let mut map = self
            .per_connection
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = map.entry(fd).or_insert(0);
        if !reused {
            *n = 0;
        }
        *n += 1;
        *n
    }
}

/// A request refused by a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open: the cluster's connection pool is full")]
pub struct Overflow;

/// A request's hold on its cluster's capacity; released when dropped.
pub struct Admission {
    breaker: Arc<BreakerState>,
    _slot: Option<OwnedSemaphorePermit>,
    endpoint: Option<Arc<AtomicU64>>,
}

impl Admission {
    /// Counts the request against the endpoint LEAST_REQUEST balances on.
    pub fn set_endpoint(&mut self, counter: Option<Arc<AtomicU64>>) {
        if let Some(old) = self.endpoint.take() {
            old.fetch_sub(1, Relaxed);
        }
        if let Some(c) = &counter {
            c.fetch_add(1, Relaxed);
        }
        self.endpoint = counter;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.breaker.active_requests.fetch_sub(1, Relaxed);
        if let Some(c) = &self.endpoint {
            c.fetch_sub(1, Relaxed);
        }
    }
}

impl CircuitBreaker {
    /// Admits a request, waiting up to `wait` for a connection slot when the HTTP/1 pool is
    /// full and the pending queue has room.
    pub async fn admit(
        &self,
        state: &Arc<BreakerState>,
        http2: bool,
        wait: Duration,
    ) -> Result<Admission, Overflow> {
        let overflow = || {
            state.overflows.fetch_add(1, Relaxed);
            Overflow
        };
        if let Some(max) = self.max_requests {
            if state.active_requests.load(Relaxed) >= max {
                return Err(overflow());
            }
        }
        let mut slot = None;
        if let (Some(max_conns), false) = (self.max_connections, http2) {
            let slots = state.connection_slots(max_conns);
            match slots.clone().try_acquire_owned() {
                Ok(p) => slot = Some(p),
                Err(_) => {
                    let max_pending = self.max_pending_requests.unwrap_or(u64::from(u32::MAX));
                    if state.pending.fetch_add(1, Relaxed) >= max_pending {
                        state.pending.fetch_sub(1, Relaxed);
                        return Err(overflow());
                    }
                    let waited = tokio::time::timeout(wait, slots.acquire_owned()).await;
                    state.pending.fetch_sub(1, Relaxed);
                    match waited {
                        Ok(Ok(p)) => slot = Some(p),
                        _ => return Err(overflow()),
                    }
                }
            }
        }
        state.active_requests.fetch_add(1, Relaxed);
        Ok(Admission {
            breaker: state.clone(),
            _slot: slot,
            endpoint: None,
        })
    }

    /// Whether the connection `fd` must close after this request (`maxRequestsPerConnection`).
    pub fn close_after(&self, state: &BreakerState, fd: i32, reused: bool) -> bool {
        self.max_requests_per_connection
            .is_some_and(|max| state.count_on_connection(fd, reused) >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn http1_pool_full_queues_up_to_pending_then_overflows() {
        let stats = Arc::new(BreakerState::default());
        let cb = CircuitBreaker {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            ..Default::default()
        };
        let wait = Duration::from_secs(1);
        let first = cb.admit(&stats, false, wait).await.expect("a free slot");
        // The second waits for the slot; a third finds the queue full.
        let second = tokio::spawn({
            let (cb, stats) = (cb.clone(), stats.clone());
            async move { cb.admit(&stats, false, wait).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(cb.admit(&stats, false, wait).await.err(), Some(Overflow));
        drop(first);
        assert!(
            second.await.unwrap_or(false),
            "the queued request got the slot"
        );
        assert_eq!(stats.overflows.load(Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn max_requests_bounds_concurrent_requests() {
        let stats = Arc::new(BreakerState::default());
        let cb = CircuitBreaker {
            max_requests: Some(2),
            ..Default::default()
        };
        let wait = Duration::from_secs(1);
        let a = cb.admit(&stats, true, wait).await.ok();
        let _b = cb.admit(&stats, true, wait).await.ok();
        assert!(cb.admit(&stats, true, wait).await.is_err());
        drop(a);
        assert!(cb.admit(&stats, true, wait).await.is_ok());
    }

    #[test]
    fn max_requests_per_connection_counts_per_fd_and_resets_on_a_new_connection() {
        let stats = BreakerState::default();
        let cb = CircuitBreaker {
            max_requests_per_connection: Some(2),
            ..Default::default()
        };
        assert!(!cb.close_after(&stats, 7, false));
        assert!(cb.close_after(&stats, 7, true));
        // fd 7 reused by a new connection: counting starts again.
        assert!(!cb.close_after(&stats, 7, false));
    }
}
