//! `/listeners` (Envoy `source/server/admin/listeners_handler.cc`): `name::address` lines, or
//! `?format=json` `{"listener_statuses": [{"name", "local_address"}]}`; names as Istio names a
//! gateway's listeners (`0.0.0.0_8080`).

use serde_json::json;

use super::{Admin, Reply, Request};
use crate::runtime::server::listener_name;

pub fn listeners(admin: &Admin, req: &Request) -> Reply {
    let addrs = admin.gateway.addresses();
    if req.param("format") == Some("json") {
        let statuses: Vec<_> = addrs
            .iter()
            .map(|a| {
                json!({
                    "name": listener_name(*a),
                    "local_address": {"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}},
                })
            })
            .collect();
        return Reply::json(&json!({ "listener_statuses": statuses }));
    }
    let text: String = addrs
        .iter()
        .map(|a| format!("{}::{a}\n", listener_name(*a)))
        .collect();
    Reply::text(200, text)
}
