//! The one test harness: a config directory, a certs directory, Gateway ports mapped to free
//! local ports, the real `portcullis run` process, backends kept alive for its lifetime, and
//! typed readers for the admin endpoints (`/reload`, `/stats/clusters`, `/metrics`, `/config_dump`).
//!
//! ```ignore
//! let h = Harness::builder()
//!     .port(80)
//!     .backend(Backend::http("be").await)
//!     .resources("routes.yaml", &[&gateway, &virtual_service])
//!     .start()
//!     .await;
//! let resp = h.get("a.example.com", "/").await;
//! ```
//!
//! The gateway always runs with `--bind 127.0.0.1 --certs <certs dir>` and every declared
//! Gateway port in `--port-map`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;

use super::backend::Backend;
use super::client::{get_request, http_client, raw_http, send, Resp};
use super::config::ConfigDir;
use super::eventually;
use super::gateway::{port_map, GatewayOpts, GatewayProcess};
use super::ports::free_port;
use super::yaml::{render, Endpoint, Port, Resource, ServiceEntry};

/// The ServiceEntry host a backend registered with [`HarnessBuilder::backend`] is reached by.
pub fn svc(name: &str) -> String {
    format!("{name}.svc.local")
}

/// The ServiceEntry registering host [`svc`]`(name)` on port 80 (HTTP), STATIC, with one
/// endpoint at `127.0.0.1:port`.
pub fn backend_entry(name: &str, port: u16) -> ServiceEntry {
    ServiceEntry::new(name)
        .hosts(&[&svc(name)])
        .location("MESH_INTERNAL")
        .port(Port::http(80))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("http", port))
}

/// The backend that answered (its `x-backend` header), or `status NNN` for a gateway reply.
pub fn who(resp: Response) -> String {
    match resp.headers().get("x-backend") {
        Some(b) => b.to_str().unwrap_or("(not text)").to_string(),
        None => format!("status {}", resp.status().as_u16()),
    }
}

/// What to write and how to start the gateway. From [`Harness::builder`].
#[derive(Default)]
pub struct HarnessBuilder {
    config: Option<ConfigDir>,
    serve: Option<String>,
    certs: Option<ConfigDir>,
    files: Vec<(String, String)>,
    /// (Gateway port, local port)
    ports: Vec<(u16, u16)>,
    backends: Vec<Backend>,
    labels: Option<String>,
    args: Vec<String>,
    expect_exit: bool,
    open_files: Option<u64>,
    env: Vec<(String, String)>,
}

impl HarnessBuilder {
    /// Writes `text` as `name` in the config directory.
    pub fn file(mut self, name: &str, text: impl Into<String>) -> Self {
        self.files.push((name.to_string(), text.into()));
        self
    }

    /// Writes `docs` as one multi-document YAML file `name`.
    pub fn resources(self, name: &str, docs: &[&dyn Resource]) -> Self {
        let text = render(docs);
        self.file(name, text)
    }

    /// Uses `dir` as the config directory (default: a new empty one).
    pub fn config(mut self, dir: ConfigDir) -> Self {
        self.config = Some(dir);
        self
    }

    /// Serves `--config <config dir>/<sub>` (a mounted volume or a symlink inside it).
    pub fn serve(mut self, sub: &str) -> Self {
        self.serve = Some(sub.to_string());
        self
    }

    /// Uses `dir` as `--certs` (default: a new empty directory).
    pub fn certs(mut self, dir: ConfigDir) -> Self {
        self.certs = Some(dir);
        self
    }

    /// Maps Gateway port `port` to a free local port.
    pub fn port(self, port: u16) -> Self {
        let local = free_port();
        self.port_as(port, local)
    }

    /// Maps every one of `ports` to a free local port.
    pub fn ports(self, ports: &[u16]) -> Self {
        ports.iter().fold(self, |b, p| b.port(*p))
    }

    /// Maps Gateway port `port` to local port `local` (the same number: the YAML port is real).
    pub fn port_as(mut self, port: u16, local: u16) -> Self {
        self.ports.push((port, local));
        self
    }

    /// Keeps `backend` running for the gateway's lifetime and registers it as host
    /// [`svc`]`(name)` port 80 ([`backend_entry`], file `se-<name>.yaml`).
    pub fn backend(self, backend: Backend) -> Self {
        let name = backend.name().to_string();
        let entry = backend_entry(&name, backend.port());
        self.keep(backend)
            .resources(&format!("se-{name}.yaml"), &[&entry])
    }

    /// Keeps `backend` running for the gateway's lifetime (found by [`Harness::backend`]),
    /// without registering it.
    pub fn keep(mut self, backend: Backend) -> Self {
        self.backends.push(backend);
        self
    }

    /// `--labels` (default: the binary's, `istio=ingressgateway`).
    pub fn labels(mut self, labels: &str) -> Self {
        self.labels = Some(labels.to_string());
        self
    }

    /// Sets `key=value` in the gateway's environment (e.g. the pod's `POD_NAME`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Extra `portcullis run` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs the gateway with this open-file limit (see [`GatewayOpts::open_files`]).
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Start without waiting for readiness: the test expects the process to exit
    /// ([`GatewayProcess::wait_exit`]).
    pub fn expect_exit(mut self) -> Self {
        self.expect_exit = true;
        self
    }

    /// Writes the files and starts the gateway (waiting for readiness unless
    /// [`expect_exit`](Self::expect_exit)).
    pub async fn start(self) -> Harness {
        let config = self.config.unwrap_or_default();
        let certs = self.certs.unwrap_or_default();
        for (name, text) in &self.files {
            config.write(name, text);
        }
        let config_path = match &self.serve {
            Some(sub) => config.file(sub),
            None => config.path().to_path_buf(),
        };
        let mut extra_args = vec!["--bind".to_string(), "127.0.0.1".to_string()];
        extra_args.extend(self.args);
        let gw = GatewayProcess::start(GatewayOpts {
            certs_dir: Some(certs.path().to_path_buf()),
            labels: self.labels,
            port_map: (!self.ports.is_empty()).then(|| port_map(&self.ports)),
            extra_args,
            wait_ready: !self.expect_exit,
            open_files: self.open_files,
            env: self.env,
            ..GatewayOpts::new(config_path)
        })
        .await;
        Harness {
            gw,
            config,
            certs,
            ports: self.ports,
            backends: self.backends,
            client: http_client(),
        }
    }
}

/// A running gateway with its directories, ports and backends (all removed or stopped on drop).
pub struct Harness {
    /// Declared first so the process is gone before its directories.
    pub gw: GatewayProcess,
    pub config: ConfigDir,
    pub certs: ConfigDir,
    ports: Vec<(u16, u16)>,
    backends: Vec<Backend>,
    /// A keep-alive client (10 s timeout, no redirects followed, no proxy from the environment).
    pub client: reqwest::Client,
}

/// `/reload`: the configuration generation and the last reload's outcome.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReloadStatus {
    pub generation: u64,
    pub files_hash: String,
    /// `ok`, `partial` (applied with something left out) or `error` (refused).
    pub last_result: String,
    pub last_error: Option<String>,
    /// What the generation being served leaves out.
    pub left_out: LeftOut,
    pub last_changes: Changes,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// `/reload`'s `left_out`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LeftOut {
    pub resources: Vec<Rejected>,
    pub parts: Vec<Rejected>,
    pub stale_files: Vec<StaleFile>,
}

/// A resource (or part) left out, named by its first error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rejected {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub field: String,
    pub code: Option<String>,
    pub message: String,
    pub errors: usize,
    /// `previous` (its last accepted version serves) or `none`.
    pub serving: String,
}

/// A file served from its last good contents.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StaleFile {
    pub file: String,
    pub resources: usize,
}

/// `Kind namespace/name` of the resources the last reload added, removed or modified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

/// One cluster's entry in `/stats/clusters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClusterStats {
    pub cluster: String,
    pub requests: u64,
    pub connections_opened: u64,
    pub connections_active: u64,
    pub tls_handshakes: u64,
    pub reused_requests: u64,
    pub overflows: u64,
    pub ejections: u64,
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The local port of the first mapped Gateway port.
    pub fn port(&self) -> u16 {
        self.ports.first().expect("no Gateway port mapped").1
    }

    /// The local port serving Gateway port `port`.
    pub fn port_of(&self, port: u16) -> u16 {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("Gateway port {port} is not mapped"))
            .1
    }

    /// `127.0.0.1:<port()>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// The local address serving Gateway port `port`.
    pub fn addr_of(&self, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_of(port)))
    }

    /// `http://127.0.0.1:<port()><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    /// A request to [`addr`](Self::addr) with `Host: host`.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(reqwest::header::HOST, host)
    }

    /// `GET path` with `Host: host` (panics on transport errors).
    pub async fn get(&self, host: &str, path: &str) -> Response {
        send(self.request(Method::GET, host, path)).await
    }

    /// Who answered `GET path` for `host`: the backend's name, or `status NNN` when the
    /// gateway answered itself.
    pub async fn who(&self, host: &str, path: &str) -> String {
        who(self.get(host, path).await)
    }

    /// `request` verbatim on a new connection to [`addr`](Self::addr).
    pub async fn raw(&self, request: impl AsRef<[u8]>) -> Resp {
        Resp::parse(&raw_http(self.addr(), request).await)
    }

    /// `GET path` with `Host: host` and extra header lines on a new connection, closed after.
    pub async fn raw_get(&self, host: &str, path: &str, headers: &str) -> Resp {
        self.raw(get_request(host, path, headers, true)).await
    }

    // -----------------------------------------------------------------------------------------
    // Admin endpoints

    /// `GET path` on the admin port as JSON; panics unless 200.
    pub async fn admin_json(&self, path: &str) -> Value {
        let (code, body) = self.gw.admin_get(path).await;
        assert_eq!(code, 200, "admin {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("admin {path} is not JSON ({e}): {body}"))
    }

    /// `/config_dump`: the snapshot being served.
    pub async fn config_dump(&self) -> Value {
        self.admin_json("/config_dump").await
    }

    /// `/reload`.
    pub async fn reload_status(&self) -> ReloadStatus {
        let v = self.admin_json("/reload").await;
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("/reload ({e}): {v}"))
    }

    /// The configuration generation `/reload` reports.
    pub async fn generation(&self) -> u64 {
        self.reload_status().await.generation
    }

    /// Waits (up to `within`) until `/reload` reports a generation above `previous`.
    pub async fn wait_generation_after(&self, previous: u64, within: Duration) -> ReloadStatus {
        self.wait_reload(within, &format!("a generation after {previous}"), |s| {
            s.generation > previous
        })
        .await
    }

    /// Waits (up to `within`) until `/reload` counts more than `previous` failed reloads.
    pub async fn wait_failed_after(&self, previous: u64, within: Duration) -> ReloadStatus {
        self.wait_reload(within, "a failed reload", |s| s.reloads_failed > previous)
            .await
    }

    async fn wait_reload(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&ReloadStatus) -> bool,
    ) -> ReloadStatus {
        let mut last = None;
        eventually(within, what, async || {
            let s = self.reload_status().await;
            let ok = done(&s);
            last = Some(s);
            ok
        })
        .await;
        last.expect("polled at least once")
    }

    /// Every cluster's `/stats/clusters` entry.
    pub async fn stats(&self) -> Vec<ClusterStats> {
        let v = self.admin_json("/stats/clusters").await;
        serde_json::from_value(v["clusters"].clone())
            .unwrap_or_else(|e| panic!("/stats/clusters ({e}): {v}"))
    }

    /// The `/stats` entry of `cluster`.
    pub async fn cluster_stats(&self, cluster: &str) -> ClusterStats {
        let all = self.stats().await;
        all.iter()
            .find(|c| c.cluster == cluster)
            .cloned()
            .unwrap_or_else(|| panic!("no cluster {cluster} in /stats: {all:#?}"))
    }

    /// The value of a Prometheus sample (`name{labels}` exactly as rendered), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (code, body) = self.gw.admin_get("/metrics").await;
        assert_eq!(code, 200, "/metrics: {body}");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }
}
