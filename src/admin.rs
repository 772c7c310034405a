//! The admin listener (`--admin`, default 127.0.0.1:15000): readiness, the loaded config,
//! per-cluster upstream stats (the connection-reuse figures), Prometheus metrics, reload status.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::reload::ReloadStatus;
use crate::runtime::State;

pub struct Admin {
    pub state: Arc<State>,
    pub reload: Arc<Mutex<ReloadStatus>>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn json_response(value: &serde_json::Value) -> Response<Vec<u8>> {
    respond(
        200,
        "application/json",
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let state = &self.state;
        match path.as_str() {
            "/healthz/ready" | "/ready" => {
                if state.is_ready() {
                    respond(200, "text/plain", b"LIVE\n".to_vec())
                } else {
                    respond(503, "text/plain", b"not ready\n".to_vec())
                }
            }
            "/healthz/live" => respond(200, "text/plain", b"LIVE\n".to_vec()),
            "/config_dump" => {
                let snapshot = state.snapshot.load_full();
                let reload = self.reload.lock().map(|r| serde_json::to_value(&*r).unwrap_or_default()).unwrap_or_default();
                json_response(&json!({
                    "reload": reload,
                    "instance": snapshot.instance,
                    "summary": snapshot.summary,
                    "listeners": snapshot.listeners,
                    "clusters": snapshot.clusters,
                    "registry": snapshot.registry.hosts(),
                }))
            }
            "/stats" | "/stats/clusters" => json_response(&json!({ "clusters": state.stats.views() })),
            "/stats/prometheus" | "/metrics" => respond(200, "text/plain; version=0.0.4", state.metrics.render(&state.stats).into_bytes()),
            "/reload" => {
                let reload = self.reload.lock().map(|r| serde_json::to_value(&*r).unwrap_or_default()).unwrap_or_default();
                json_response(&reload)
            }
            "/" => respond(
                200,
                "text/plain",
                b"Portcullis admin\n  /healthz/ready   readiness (200 once every listener is bound)\n  /config_dump     the snapshot being served (JSON)\n  /stats           per-cluster upstream counters: requests, connections opened, TLS handshakes\n  /metrics         Prometheus metrics\n  /reload          configuration generation, files hash, last error, what is left out, reload counters\n".to_vec(),
            ),
            _ => respond(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
