//! Server state and commands (Envoy `source/server/admin/server_info_handler.cc`,
//! `server_cmd_handler.cc`, `listeners_handler.cc`): `/ready`, `/server_info`,
//! `/healthcheck/fail|ok`, `/drain_listeners`, `/quitquitquit`.

use serde_json::json;

use super::{Admin, Reply, Request};
use crate::runtime::ServerState;

/// `/ready` (and `/healthz/ready`): the state's name; 200 when LIVE, otherwise 503; LIVE but
/// at an overload cap is 503 `overloaded: …`.
pub fn ready(admin: &Admin, _: &Request) -> Reply {
    let state = &admin.gateway.state;
    match (state.readiness.state(), state.overload.overloaded()) {
        (ServerState::Live, Some(why)) => Reply::text(503, format!("overloaded: {why}\n")),
        (ServerState::Live, None) => Reply::text(200, "LIVE\n"),
        (s, _) => Reply::text(503, format!("{}\n", s.name())),
    }
}

/// Envoy's `ServerInfo`: version, state, uptime, the command line.
pub fn server_info(admin: &Admin, _: &Request) -> Reply {
    let gw = &admin.gateway;
    let uptime = format!("{}s", gw.state.started.elapsed().as_secs());
    let drain = gw.state.drain.settings();
    let mut options = admin.command_line.clone();
    if let Some(o) = options.as_object_mut() {
        o.insert("concurrency".into(), json!(gw.threads));
        o.insert(
            "drain_time".into(),
            json!(format!("{}s", drain.drain_duration.as_secs_f64())),
        );
        o.insert("drain_strategy".into(), json!("Immediate"));
        o.insert(
            "termination_drain_duration".into(),
            json!(format!(
                "{}s",
                drain.termination_drain_duration.as_secs_f64()
            )),
        );
    }
    Reply::json(&json!({
        "version": format!("portcullis/{}/pingora-0.9", env!("CARGO_PKG_VERSION")),
        "state": gw.state.readiness.state().name(),
        "hot_restart_version": "disabled",
        "command_line_options": options,
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
    }))
}

pub fn healthcheck_fail(admin: &Admin, _: &Request) -> Reply {
    admin.gateway.state.readiness.fail_health_check(true);
    tracing::info!("admin: /healthcheck/fail: readiness now fails");
    Reply::text(200, "OK\n")
}

pub fn healthcheck_ok(admin: &Admin, _: &Request) -> Reply {
    admin.gateway.state.readiness.fail_health_check(false);
    tracing::info!("admin: /healthcheck/ok: readiness passes again");
    Reply::text(200, "OK\n")
}

/// `?graceful`: keep accepting for the drain duration, then stop the listeners; without it,
/// stop them now; `?skip_exit`: never stop them. Connections are told to close either way.
/// `?inboundonly` is accepted: every gateway listener is inbound.
pub fn drain_listeners(admin: &Admin, req: &Request) -> Reply {
    let (graceful, skip_exit) = (req.has("graceful"), req.has("skip_exit"));
    tracing::info!(graceful, skip_exit, "admin: /drain_listeners");
    admin.gateway.drain_listeners(graceful, skip_exit);
    Reply::text(200, "OK\n")
}

/// Exits without the drain duration: the listeners stop now, in-flight requests get the
/// termination drain duration.
pub fn quit(admin: &Admin, _: &Request) -> Reply {
    tracing::info!("admin: /quitquitquit");
    admin.gateway.request_quit();
    Reply::text(200, "OK\n")
}
