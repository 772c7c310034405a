//! Readiness as Envoy reports it (`server.state`, admin `/ready`, Envoy
//! `source/server/admin/server_info_handler.cc` `handlerReady` and `source/server/utils.cc`
//! `serverState`): PRE_INITIALIZING until start-up begins, INITIALIZING until every listener is
//! bound, then LIVE, or DRAINING while health checks are failed (`/healthcheck/fail`). Only
//! LIVE is ready. Under Istio a SIGTERM also fails readiness at once (the agent's status server
//! on 15020, behind the 15021 probe, shuts down with it: `pilot/cmd/pilot-agent/status`
//! `Server.Run`); here that is [`Readiness::shut_down`], which `/healthcheck/ok` cannot undo.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Envoy's `envoy.admin.v3.ServerInfo.State`, with its numeric value (the `server.state` gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Live = 0,
    Draining = 1,
    PreInitializing = 2,
    Initializing = 3,
}

impl ServerState {
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }
}

#[derive(Debug, Default)]
pub struct Readiness {
    initializing: AtomicBool,
    initialized: AtomicBool,
    health_check_failed: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn state(&self) -> ServerState {
        if !self.initialized.load(Relaxed) {
            if self.initializing.load(Relaxed) {
                ServerState::Initializing
            } else {
                ServerState::PreInitializing
            }
        } else if self.health_check_failed.load(Relaxed) || self.shutting_down.load(Relaxed) {
            ServerState::Draining
        } else {
            ServerState::Live
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state() == ServerState::Live
    }

    /// Listeners are being bound.
    pub fn initializing(&self) {
        self.initializing.store(true, Relaxed);
    }

    /// Every listener is bound.
    pub fn initialized(&self) {
        self.initialized.store(true, Relaxed);
    }

    /// `/healthcheck/fail` (`true`) and `/healthcheck/ok` (`false`).
    pub fn fail_health_check(&self, failed: bool) {
        self.health_check_failed.store(failed, Relaxed);
    }

    pub fn health_check_failed(&self) -> bool {
        self.health_check_failed.load(Relaxed)
    }

    /// The process is going away (SIGTERM, `/quitquitquit`): not ready from now on.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_only_after_start_and_while_health_checks_pass() {
        let r = Readiness::default();
        assert_eq!(r.state(), ServerState::PreInitializing);
        r.initializing();
        assert_eq!(r.state(), ServerState::Initializing);
        r.initialized();
        assert!(r.is_ready());
        r.fail_health_check(true);
        assert_eq!(r.state(), ServerState::Draining);
        r.fail_health_check(false);
        assert!(r.is_ready());
        r.shut_down();
        r.fail_health_check(false);
        assert_eq!(
            r.state(),
            ServerState::Draining,
            "healthcheck/ok cannot undo a shutdown"
        );
        assert_eq!(ServerState::Draining as i64, 1);
    }
}
