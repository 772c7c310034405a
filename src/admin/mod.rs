//! The admin listener (`--admin`, default 127.0.0.1:15000: localhost only, as Envoy's admin
//! under Istio, `tools/packaging/common/envoy_bootstrap.json`), answering Envoy's admin paths
//! that operators use (Envoy `source/server/admin/admin.cc`): an exact path match, mutating
//! paths POST-only (`405 Method GET not allowed, POST required.`), an unknown path `404` with
//! the list of commands. Beside Envoy's, Portcullis' own: `/config_dump` content, `/reload`,
//! `/stats/clusters`, `/metrics`, `/healthz/ready`. And the three probe/scrape listeners of an
//! istio-ingressgateway pod ([`ports`]: 15021, 15090, 15020).
//!
//! By endpoint family: [`server`] (readiness, server info, health checks, drain, quit),
//! [`stats`], [`clusters`], [`listeners`], [`config`] (config dump, reload status,
//! certificates), [`logging`].

mod clusters;
mod config;
mod listeners;
mod logging;
pub mod ports;
mod server;
mod stats;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::Value;

use crate::observe::logging::LogControl;
use crate::reload::ReloadStatus;
use crate::runtime::server::Gateway;

/// What the admin endpoints reach: the running gateway, the reload status, the log levels,
/// and the command line (for `/server_info`).
pub struct Admin {
    pub gateway: Arc<Gateway>,
    pub reload: Arc<Mutex<ReloadStatus>>,
    pub logs: Arc<LogControl>,
    pub command_line: Value,
}

/// One admin request: method, path and decoded query parameters (`?a` gives `("a", "")`).
pub struct Request {
    pub method: http::Method,
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl Request {
    /// The request a Pingora session carries.
    pub fn of(session: &ServerSession) -> Request {
        let req = session.req_header();
        Request::from_uri(req.method.clone(), &req.uri)
    }

    pub fn from_uri(method: http::Method, uri: &http::Uri) -> Request {
        let params = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Request {
            method,
            path: uri.path().to_string(),
            params,
        }
    }

    /// The first value of parameter `name`, `Some("")` when given without a value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.param(name).is_some()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=UTF-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(value: &Value) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    pub fn prometheus(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=UTF-8",
            body: body.into_bytes(),
        }
    }

    pub fn into_response(self) -> Response<Vec<u8>> {
        Response::builder()
            .status(self.status)
            .header("content-type", self.content_type)
            .header("content-length", self.body.len())
            .header("cache-control", "no-cache, max-age=0")
            .header("x-content-type-options", "nosniff")
            .body(self.body)
            .unwrap_or_default()
    }
}

type Handler = fn(&Admin, &Request) -> Reply;

/// An admin path: its help line, whether it changes the server (POST only), its handler.
struct Endpoint {
    path: &'static str,
    help: &'static str,
    mutates: bool,
    handler: Handler,
}

const fn get(path: &'static str, help: &'static str, handler: Handler) -> Endpoint {
    Endpoint {
        path,
        help,
        mutates: false,
        handler,
    }
}

const fn post(path: &'static str, help: &'static str, handler: Handler) -> Endpoint {
    Endpoint {
        mutates: true,
        ..get(path, help, handler)
    }
}

const ENDPOINTS: &[Endpoint] = &[
    get("/", "Admin home page", |_, _| help(200, "")),
    get("/help", "print out list of admin commands", |_, _| help(200, "")),
    get("/certs", "print certs on machine", config::certs),
    get("/clusters", "upstream cluster status (?format=json)", clusters::clusters),
    get("/config_dump", "the configuration being served: listeners, clusters, registry, reload status", config::config_dump),
    post("/drain_listeners", "drain listeners (?graceful: keep accepting for the drain duration first; ?skip_exit: do not stop them)", server::drain_listeners),
    post("/healthcheck/fail", "cause the server to fail health checks", server::healthcheck_fail),
    post("/healthcheck/ok", "cause the server to pass health checks", server::healthcheck_ok),
    get("/healthz/ready", "readiness as Istio's probe sees it (200 when LIVE, otherwise 503)", server::ready),
    get("/healthz/live", "200 while the process runs", |_, _| Reply::text(200, "LIVE\n")),
    get("/listeners", "print listener info (?format=json)", listeners::listeners),
    get("/logging", "list logging levels; POST ?level=L, ?<logger>=L or ?paths=a:L,b:L changes them", logging::logging),
    get("/metrics", "Prometheus: the proxy's stats and the configuration metrics (as 15020)", stats::merged_prometheus),
    post("/quitquitquit", "exit the server", server::quit),
    get("/ready", "print server state, return 200 if LIVE, otherwise return 503", server::ready),
    get("/reload", "configuration generation, files hash, last error, what is left out, reload counters", config::reload),
    get("/server_info", "print server version/status information", server::server_info),
    get("/stats", "print server stats (?format=json|prometheus, ?filter=REGEX, ?usedonly, ?type=)", stats::stats),
    get("/stats/clusters", "per-cluster upstream counters as JSON: requests, connections, TLS handshakes, reuse", stats::clusters_json),
    get("/stats/prometheus", "print server stats in prometheus format (?filter=REGEX, ?usedonly)", stats::prometheus),
];

fn help(status: u16, prefix: &str) -> Reply {
    let mut sorted: Vec<&Endpoint> = ENDPOINTS.iter().collect();
    sorted.sort_by_key(|e| e.path);
    let mut out = format!("{prefix}admin commands are:\n");
    for e in sorted {
        let method = if e.mutates { " (POST)" } else { "" };
        out.push_str(&format!("  {}{method}: {}\n", e.path, e.help));
    }
    Reply::text(status, out)
}

impl Admin {
    /// Envoy's dispatch (`AdminImpl::makeRequest`): the path before `?` equals an endpoint's.
    pub fn handle(&self, req: &Request) -> Reply {
        let Some(e) = ENDPOINTS.iter().find(|e| e.path == req.path) else {
            return help(404, "invalid path. ");
        };
        if e.mutates && req.method != http::Method::POST {
            return Reply::text(
                405,
                format!("Method {} not allowed, POST required.", req.method),
            );
        }
        (e.handler)(self, req)
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        self.handle(&Request::of(session)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_flags_have_empty_values() {
        let uri: http::Uri = "/stats?usedonly&filter=cx_active%24&format=json"
            .parse()
            .unwrap();
        let r = Request::from_uri(http::Method::GET, &uri);
        assert_eq!(r.path, "/stats");
        assert_eq!(r.param("usedonly"), Some(""));
        assert_eq!(r.param("filter"), Some("cx_active$"));
        assert_eq!(r.param("format"), Some("json"));
        assert!(!r.has("type"));
    }

    #[test]
    fn help_lists_every_endpoint_sorted_with_post_marked() {
        let text = String::from_utf8(help(200, "").body).unwrap();
        assert!(text.starts_with("admin commands are:\n"));
        assert!(
            text.contains("  /quitquitquit (POST): exit the server\n"),
            "{text}"
        );
        let paths: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.trim().split([':', ' ']).next().unwrap())
            .collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }
}
