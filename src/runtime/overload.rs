//! Overload protection, as Envoy's overload manager with `global_downstream_max_connections`:
//! caps on open downstream connections (all listeners, and each listener) and on the memory
//! that partly received request heads hold. At a cap a new connection is accepted and closed at
//! once (Envoy's `downstream_cx_overflow`), a head that needs memory past the budget gets 503,
//! and readiness says the gateway is overloaded, so a load balancer sends elsewhere. Accept
//! errors (EMFILE and friends) are logged at most once per interval, with a count.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limits::DownstreamLimits;

/// Connection and head-memory accounting shared by every listener.
pub struct Overload {
    max_connections: Option<usize>,
    max_per_listener: Option<usize>,
    max_pending_bytes: usize,
    /// Open downstream connections, across all listeners.
    connections: Arc<AtomicUsize>,
    /// Bytes held by request heads being read.
    pending_bytes: Arc<AtomicUsize>,
    /// Connections closed at accept because a cap was reached.
    pub refused: AtomicU64,
    accept_errors: Mutex<AcceptErrors>,
}

/// Why a connection is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} open connections, the --max-connections cap")]
    Connections(usize),
    #[error("{0} open connections on this listener, the --max-connections-per-listener cap")]
    Listener(usize),
    #[error("request heads hold {0} bytes, at or near the --max-pending-headers-kb budget")]
    HeadMemory(usize),
}

/// Holds one open connection in the counts until dropped.
pub struct ConnectionSlot {
    global: Arc<AtomicUsize>,
    listener: Arc<AtomicUsize>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.global.fetch_sub(1, Relaxed);
        self.listener.fetch_sub(1, Relaxed);
    }
}

/// Bytes of one connection's partial request head, counted against the budget until dropped.
pub struct HeadMemory {
    pending: Arc<AtomicUsize>,
    max: usize,
    held: usize,
}

impl HeadMemory {
    /// Counts `total` bytes for this head (it only grows); `Err` past the budget.
    pub fn hold(&mut self, total: usize) -> Result<(), Refusal> {
        if total <= self.held {
            return Ok(());
        }
        let more = total - self.held;
        let before = self.pending.fetch_add(more, Relaxed);
        self.held = total;
        if before + more > self.max {
            return Err(Refusal::HeadMemory(before + more));
        }
        Ok(())
    }
}

impl Drop for HeadMemory {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.held, Relaxed);
    }
}

/// Accept failures since the last line logged about them.
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// At most one accept-error line per this interval.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Overload {
    pub fn new(limits: &DownstreamLimits, connections: Arc<AtomicUsize>) -> Self {
        Overload {
            max_connections: limits.max_connections,
            max_per_listener: limits.max_connections_per_listener,
            max_pending_bytes: limits.max_pending_headers_bytes,
            connections,
            pending_bytes: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
            accept_errors: Mutex::new(AcceptErrors {
                last_logged: None,
                suppressed: 0,
            }),
        }
    }

    /// Counts an accepted connection on a listener whose own count is `listener`, or refuses
    /// it at a cap (the caller closes it).
    pub fn admit(&self, listener: &Arc<AtomicUsize>) -> Result<ConnectionSlot, Refusal> {
        let global = self.connections.fetch_add(1, Relaxed) + 1;
        let local = listener.fetch_add(1, Relaxed) + 1;
        let slot = ConnectionSlot {
            global: self.connections.clone(),
            listener: listener.clone(),
        };
        let pending = self.pending_bytes.load(Relaxed);
        let refusal = if self.max_connections.is_some_and(|m| global > m) {
            Some(Refusal::Connections(global - 1))
        } else if self.max_per_listener.is_some_and(|m| local > m) {
            Some(Refusal::Listener(local - 1))
        } else if self.heads_saturated(pending) {
            Some(Refusal::HeadMemory(pending))
        } else {
            None
        };
        match refusal {
            Some(r) => {
                self.refused.fetch_add(1, Relaxed);
                Err(r)
            }
            None => Ok(slot),
        }
    }

    /// A fresh head-memory account for one connection.
    pub fn head_memory(&self) -> HeadMemory {
        HeadMemory {
            pending: self.pending_bytes.clone(),
            max: self.max_pending_bytes,
            held: 0,
        }
    }

    /// `Some(why)` while a cap is reached: readiness fails with it.
    pub fn overloaded(&self) -> Option<Refusal> {
        let open = self.connections.load(Relaxed);
        if self.max_connections.is_some_and(|m| open >= m) {
            return Some(Refusal::Connections(open));
        }
        let pending = self.pending_bytes.load(Relaxed);
        self.heads_saturated(pending)
            .then_some(Refusal::HeadMemory(pending))
    }

    /// Heads hold 90% of the budget: stop taking new connections (as Envoy's overload manager
    /// stops accepting before its hard limit), so those being read can finish.
    fn heads_saturated(&self, pending: usize) -> bool {
        pending >= self.max_pending_bytes / 10 * 9
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// The open-connection counter itself (the listener set drains until it is 0).
    pub fn connection_counter(&self) -> Arc<AtomicUsize> {
        self.connections.clone()
    }

    /// Logs an accept failure unless one was logged in the last interval; the next line says
    /// how many were left out.
    pub fn accept_failed(&self, addr: SocketAddr, error: &std::io::Error) {
        let now = Instant::now();
        let mut errors = self.accept_errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors
            .last_logged
            .is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_INTERVAL)
        {
            errors.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut errors.suppressed);
        errors.last_logged = Some(now);
        drop(errors);
        if suppressed > 0 {
            tracing::warn!(%addr, "accept failed: {error} ({suppressed} more since the last report)");
        } else {
            tracing::warn!(%addr, "accept failed: {error}");
        }
    }

    /// How long the accept loop backs off after a failure (no spinning on EMFILE).
    pub fn accept_backoff() -> Duration {
        Duration::from_millis(50)
    }

    /// The accept-error lines left out so far (for tests).
    #[cfg(test)]
    fn suppressed(&self) -> u64 {
        self.accept_errors
            .lock()
            .map(|e| e.suppressed)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overload(limits: DownstreamLimits) -> Overload {
        Overload::new(&limits, Arc::new(AtomicUsize::new(0)))
    }

    #[test]
    fn connections_past_the_global_cap_are_refused_and_counted_back_on_close() {
        let o = overload(DownstreamLimits {
            max_connections: Some(2),
            ..Default::default()
        });
        let l = Arc::new(AtomicUsize::new(0));
        let a = o.admit(&l).unwrap();
        assert!(o.overloaded().is_none());
        let _b = o.admit(&l).unwrap();
        assert_eq!(o.overloaded(), Some(Refusal::Connections(2)));
        assert_eq!(o.admit(&l).err(), Some(Refusal::Connections(2)));
        assert_eq!(o.connections(), 2, "a refused connection is not counted");
        drop(a);
        assert!(o.admit(&l).is_ok());
        assert_eq!(o.refused.load(Relaxed), 1);
    }

    #[test]
    fn each_listener_has_its_own_cap() {
        let o = overload(DownstreamLimits {
            max_connections_per_listener: Some(1),
            ..Default::default()
        });
        let (l1, l2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let _a = o.admit(&l1).unwrap();
        assert_eq!(o.admit(&l1).err(), Some(Refusal::Listener(1)));
        assert!(o.admit(&l2).is_ok());
        assert!(o.overloaded().is_none(), "a listener cap is not overload");
    }

    #[test]
    fn head_memory_past_the_budget_is_refused_and_released_on_drop() {
        let o = overload(DownstreamLimits {
            max_pending_headers_bytes: 100,
            ..Default::default()
        });
        let mut a = o.head_memory();
        a.hold(60).unwrap();
        assert!(o.overloaded().is_none());
        a.hold(95).unwrap();
        assert!(o.overloaded().is_some(), "90% of the budget is overload");
        let mut b = o.head_memory();
        assert_eq!(b.hold(10), Err(Refusal::HeadMemory(105)));
        let l = Arc::new(AtomicUsize::new(0));
        assert!(
            o.admit(&l).is_err(),
            "no new connection while over the budget"
        );
        drop(a);
        drop(b);
        assert!(o.overloaded().is_none());
    }

    #[test]
    fn accept_errors_are_logged_once_per_interval() {
        let o = overload(DownstreamLimits::default());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = std::io::Error::from_raw_os_error(24);
        for _ in 0..1000 {
            o.accept_failed(addr, &e);
        }
        assert_eq!(o.suppressed(), 999);
    }
}
