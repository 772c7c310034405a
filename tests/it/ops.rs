//! Operating the gateway as istio-ingressgateway: Istio's ports (status 15021, Prometheus 15090,
//! merged Prometheus 15020, admin 15000 on localhost), Envoy's admin paths, the drain on SIGTERM
//! as Envoy runs it under istio-agent, and live log levels.
//!
//! Submodules: `ports` (the listeners and their addresses), `admin` (Envoy's admin paths),
//! `drain` (SIGTERM, `/drain_listeners`, `/healthcheck/fail`, `/quitquitquit`), `logging`,
//! `metrics` (Istio's metrics and Envoy's stats through a real Prometheus), `envoy_names` (the
//! Envoy-named stats beside a real Envoy's).

mod admin;
mod drain;
mod envoy_names;
mod logging;
mod metrics;
mod ports;

use crate::support::gateway::http_request;
use crate::support::yaml::*;
use crate::support::*;

/// A gateway with one HTTP server on (YAML) port 80 for every host, routed to backend `be`.
pub async fn start(args: &[&str]) -> Harness {
    Harness::builder()
        .port(80)
        .backend(Backend::http("be").await)
        .resources(
            "routes.yaml",
            &[
                &Gateway::new("gw").server(Server::http(80)),
                &VirtualService::new("all")
                    .hosts(&["*"])
                    .gateways(&["gw"])
                    .http(HttpRoute::new().to(&svc("be"))),
            ],
        )
        .args(args)
        .start()
        .await
}

/// `GET path` on `addr`: `(status, body)`, panicking if unreachable.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
        .await
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// The cluster every test routes to.
pub fn cluster() -> String {
    format!("outbound|80||{}", svc("be"))
}
