//! The probe and scrape listeners of an istio-ingressgateway pod, each on its own address:
//! status (15021: `/healthz/ready`, Envoy's listener in front of the agent's readiness,
//! `tools/packaging/common/envoy_bootstrap.json`), Prometheus (15090: `/stats/prometheus`,
//! Envoy's stats) and merged Prometheus (15020: `/stats/prometheus` and `/metrics`, the agent's
//! merge of Envoy's stats and its own, `pilot/cmd/pilot-agent/status/server.go`). Istio binds
//! them on every interface; Portcullis does too by default.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::stats::{merged_families, proxy_families, query};
use super::{Reply, Request};
use crate::runtime::server::Gateway;

/// Which of the three a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 15021: `/healthz/ready`, 200 when LIVE, else 503 (empty body, as the agent answers).
    Status,
    /// 15090: `/stats/prometheus`, the proxy's stats.
    Prometheus,
    /// 15020: `/stats/prometheus` and `/metrics`, the proxy's stats plus the configuration
    /// metrics; `/healthz/ready` too (the agent serves it there).
    Merged,
}

pub struct PortApp {
    pub port: Port,
    pub gateway: Arc<Gateway>,
}

impl PortApp {
    pub fn handle(&self, req: &Request) -> Reply {
        let path = req.path.as_str();
        match (self.port, path) {
            (Port::Status | Port::Merged, "/healthz/ready") => {
                let status = if self.gateway.state.is_ready() {
                    200
                } else {
                    503
                };
                Reply::text(status, "")
            }
            (Port::Prometheus, "/stats/prometheus")
            | (Port::Merged, "/stats/prometheus" | "/metrics") => match query(req) {
                Ok(q) => {
                    let families = if self.port == Port::Merged {
                        merged_families(&self.gateway)
                    } else {
                        proxy_families(&self.gateway)
                    };
                    Reply::prometheus(q.prometheus(&families))
                }
                Err(r) => r,
            },
            _ => Reply::text(404, "not found\n"),
        }
    }
}

#[async_trait]
impl ServeHttp for PortApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        self.handle(&Request::of(session)).into_response()
    }
}
