//! Draining like Envoy under istio-agent. Istio's agent answers SIGTERM by POSTing Envoy's
//! `/drain_listeners?graceful` (`pkg/envoy/agent.go` `terminate`, `pkg/envoy/admin.go`
//! `DrainListeners`); Envoy runs with `--drain-time-s <drainDuration> --drain-strategy immediate`
//! (`pkg/envoy/proxy.go`), so from that moment every HTTP/1 response carries `Connection: close`
//! and every HTTP/2 connection gets a GOAWAY, while the listeners keep accepting for the drain
//! time ("for admin initiated drain, there is no other version of the listeners to take care of
//! the new connections", Envoy `source/server/admin/listeners_handler.cc`) and are stopped after
//! it. Portcullis then lets in-flight requests finish for `terminationDrainDuration` and exits.
//!
//! [`DrainSettings`] is the one value both the command line and the mesh file feed; the phases a
//! drain goes through are [`DrainPhase`], published by [`Drain`] to whoever watches it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// How long a drain takes (Istio's `ProxyConfig.drainDuration` and `terminationDrainDuration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long the listeners keep accepting once a drain starts, answering HTTP/1 with
    /// `Connection: close` and HTTP/2 with GOAWAY (Envoy's `--drain-time-s`).
    pub drain_duration: Duration,
    /// How long in-flight requests (and TCP tunnels) may still run once the listeners stopped;
    /// also the grace of the connections of a listener a reload removes.
    pub termination_drain_duration: Duration,
}

impl Default for DrainSettings {
    /// Istio's defaults (`pkg/config/mesh/mesh.go` `DefaultProxyConfig`: drainDuration 45 s,
    /// terminationDrainDuration 5 s).
    fn default() -> Self {
        DrainSettings {
            drain_duration: Duration::from_secs(45),
            termination_drain_duration: Duration::from_secs(5),
        }
    }
}

impl DrainSettings {
    /// These settings with every value `overrides` gives replacing this one: defaults, then
    /// the mesh file, then the command line.
    pub fn overridden_by(self, drain: Option<Duration>, termination: Option<Duration>) -> Self {
        DrainSettings {
            drain_duration: drain.unwrap_or(self.drain_duration),
            termination_drain_duration: termination.unwrap_or(self.termination_drain_duration),
        }
    }
}

/// Where the gateway's listeners are. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DrainPhase {
    /// Accepting; connections are kept alive.
    Serving,
    /// Still accepting, but every connection is told to close: HTTP/1 responses say
    /// `Connection: close`, HTTP/2 connections get GOAWAY.
    Draining,
    /// Not accepting; idle connections are closed, in-flight requests finish within
    /// `terminationDrainDuration`.
    Stopped,
}

/// The drain state of the process: its settings (changeable by a mesh-file reload) and phase.
#[derive(Debug)]
pub struct Drain {
    settings: Mutex<DrainSettings>,
    phase: watch::Sender<DrainPhase>,
}

impl Drain {
    pub fn new(settings: DrainSettings) -> Drain {
        Drain {
            settings: Mutex::new(settings),
            phase: watch::Sender::new(DrainPhase::Serving),
        }
    }

    pub fn settings(&self) -> DrainSettings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New settings take effect at the next drain (a drain under way keeps its timeline).
    pub fn set_settings(&self, settings: DrainSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    pub fn phase(&self) -> DrainPhase {
        *self.phase.borrow()
    }

    /// Moves to `phase` if it is later than the current one; returns whether it moved.
    pub fn advance(&self, phase: DrainPhase) -> bool {
        self.phase.send_if_modified(|current| {
            let later = phase > *current;
            if later {
                *current = phase;
            }
            later
        })
    }

    /// Resolves once the phase is `phase` or later.
    pub async fn reached(&self, phase: DrainPhase) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_istios_and_each_override_replaces_one_value() {
        let d = DrainSettings::default();
        assert_eq!(d.drain_duration, Duration::from_secs(45));
        assert_eq!(d.termination_drain_duration, Duration::from_secs(5));
        let mesh = d.overridden_by(Some(Duration::from_secs(20)), None);
        assert_eq!(mesh.drain_duration, Duration::from_secs(20));
        assert_eq!(mesh.termination_drain_duration, Duration::from_secs(5));
        let flags = mesh.overridden_by(None, Some(Duration::from_secs(9)));
        assert_eq!(flags.drain_duration, Duration::from_secs(20));
        assert_eq!(flags.termination_drain_duration, Duration::from_secs(9));
    }

    #[tokio::test]
    async fn phases_only_move_forward_and_wake_waiters() {
        let drain = std::sync::Arc::new(Drain::new(DrainSettings::default()));
        assert_eq!(drain.phase(), DrainPhase::Serving);
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.reached(DrainPhase::Draining).await }
        });
        assert!(drain.advance(DrainPhase::Stopped));
        waiter.await.unwrap();
        assert!(!drain.advance(DrainPhase::Draining), "no way back");
        assert_eq!(drain.phase(), DrainPhase::Stopped);
    }
}
