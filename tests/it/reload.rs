//! Live reload: a changed config directory takes effect without a restart and without dropping
//! a request; a broken change is reported (file, line, field) and the last good config keeps
//! serving; listeners follow the Gateways; SIGHUP forces a reload.
//!
//! Every test starts the real binary on a temp config directory ([`Env`]) and proves the
//! change by what a client sees, plus the admin `/reload` status and the log.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;

use crate::support::certs;
use crate::support::cli::run_check;
use crate::support::client;
use crate::support::client::raw_exchange;
use crate::support::k8s::{k8s_volume_swap, k8s_volume_write};
use crate::support::*;

/// How soon a change must be served ("about a second"; this is a polling deadline).
const APPLY: Duration = Duration::from_secs(2);
/// Deadline for things that are not about reload latency (a backend seeing a request, ...).
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// YAML

/// Gateway `gw` with one plain-HTTP server for every host on each port.
fn gateway_yaml(ports: &[u16]) -> String {
    let mut s = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  namespace: default\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n",
    );
    for p in ports {
        s.push_str(&format!(
            "  - port:\n      number: {p}\n      name: http-{p}\n      protocol: HTTP\n    hosts:\n    - \"*\"\n"
        ));
    }
    s
}

/// VirtualService `name` for `host`: a direct response whose body is `version` and which sets
/// `x-version: version`.
fn direct_vs(name: &str, host: &str, version: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - "{host}"
  gateways:
  - gw
  http:
  - name: direct
    headers:
      response:
        set:
          x-version: "{version}"
    directResponse:
      status: 200
      body:
        string: "{version}"
"#
    )
}

/// The registry host a backend is reached by.
fn backend_host(b: &Backend) -> String {
    format!("{}.backend.local", b.name())
}

/// ServiceEntry making `b` reachable as `NAME.backend.local:PORT`.
fn service_entry(b: &Backend) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - {host}
  ports:
  - number: {port}
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: 127.0.0.1
"#,
        name = b.name(),
        host = backend_host(b),
        port = b.port()
    )
}

/// VirtualService `name` for `host` routing everything to `b`, setting `x-version: version`.
fn proxy_vs(name: &str, host: &str, b: &Backend, version: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - "{host}"
  gateways:
  - gw
  http:
  - name: to-backend
    headers:
      response:
        set:
          x-version: "{version}"
    route:
    - destination:
        host: {dest}
        port:
          number: {port}
"#,
        dest = backend_host(b),
        port = b.port()
    )
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The whole response as received (for messages).
    raw: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_response(raw: &str) -> Option<Resp> {
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Resp {
        status,
        headers,
        body,
        raw: raw.to_string(),
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn request(host: &str, path: &str, close: bool) -> String {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-it\r\n{conn}\r\n")
}

/// One request on a new connection; `Err` if the connection cannot be made or no complete
/// response arrives.
async fn try_get(port: u16, host: &str, path: &str) -> Result<Resp, String> {
    let mut s = TcpStream::connect(loopback(port))
        .await
        .map_err(|e| format!("connect :{port}: {e}"))?;
    let raw = raw_exchange(&mut s, request(host, path, true).as_bytes()).await;
    parse_response(&raw).ok_or_else(|| format!("no complete response: {raw:?}"))
}

async fn get(port: u16, host: &str, path: &str) -> Resp {
    try_get(port, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}:{port}{path}: {e}"))
}

/// One request on an open keep-alive connection.
async fn exchange(s: &mut TcpStream, host: &str, path: &str) -> Resp {
    let raw = raw_exchange(s, request(host, path, false).as_bytes()).await;
    parse_response(&raw)
        .unwrap_or_else(|| panic!("GET http://{host}{path} on the kept-alive connection: {raw:?}"))
}

/// Whether a response on `port` for `host` has status 200 and body `body`.
async fn serves(port: u16, host: &str, body: &str) -> bool {
    matches!(try_get(port, host, "/").await, Ok(r) if r.status == 200 && r.body == body)
}

/// Polls `cond` for `d` and panics if it is ever false (proves a negative for that long).
async fn stays(d: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        assert!(cond().await, "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway under test

/// A running gateway on its own config and certs directories.
struct Env {
    config: ConfigDir,
    certs: ConfigDir,
    gw: Gateway,
    /// The first HTTP port of the Gateway.
    port: u16,
}

impl Env {
    /// Writes `gateway.yaml` (one server on a fresh port) and `files`, then starts the gateway.
    fn start(files: &[(&str, String)]) -> Env {
        Self::start_with(files, &[])
    }

    fn start_with(files: &[(&str, String)], extra_args: &[&str]) -> Env {
        let port = free_port();
        Self::launch(
            ConfigDir::new(),
            port,
            &gateway_yaml(&[port]),
            files,
            extra_args,
        )
    }

    /// Writes `gateway` as `gateway.yaml` and `files` into `config`, then starts the gateway
    /// (certificates from `certs`).
    fn launch(
        certs: ConfigDir,
        port: u16,
        gateway: &str,
        files: &[(&str, String)],
        extra_args: &[&str],
    ) -> Env {
        let config = ConfigDir::new();
        config.write("gateway.yaml", gateway);
        for (name, yaml) in files {
            config.write(name, yaml);
        }
        let gw = start_gateway(config.path(), certs.path(), extra_args);
        Env {
            config,
            certs,
            gw,
            port,
        }
    }

    fn status(&self) -> Value {
        reload_status(&self.gw)
    }

    fn generation(&self) -> u64 {
        self.status()["generation"].as_u64().unwrap()
    }

    async fn wait_generation_after(&self, previous: u64) -> Value {
        wait_generation_after(&self.gw, previous).await
    }
}

fn start_gateway(config: &Path, certs: &Path, extra_args: &[&str]) -> Gateway {
    let mut args = vec!["--bind".to_string(), "127.0.0.1".to_string()];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    Gateway::start(GatewayOpts {
        certs_dir: Some(certs.to_path_buf()),
        extra_args: args,
        ..GatewayOpts::new(config)
    })
}

fn reload_status(gw: &Gateway) -> Value {
    let (code, body) = gw.admin_get("/reload");
    assert_eq!(code, 200, "/reload: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/reload is not JSON ({e}): {body}"))
}

fn counter(status: &Value, name: &str) -> u64 {
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/reload has no {name}: {status}"))
}

/// Waits until `/reload` reports a generation above `previous`; returns that status.
async fn wait_generation_after(gw: &Gateway, previous: u64) -> Value {
    let mut last = Value::Null;
    eventually(
        APPLY,
        &format!("a generation after {previous}"),
        async || {
            last = reload_status(gw);
            counter(&last, "generation") > previous
        },
    )
    .await;
    last
}

/// Waits until `/reload` counts more than `previous` failed reloads; returns that status.
async fn wait_failed_after(gw: &Gateway, previous: u64) -> Value {
    let mut last = Value::Null;
    eventually(APPLY, "a failed reload", async || {
        last = reload_status(gw);
        counter(&last, "reloads_failed") > previous
    })
    .await;
    last
}

/// `portcullis_config_reloads_total{result="..."}` from `/metrics` (0 if absent).
fn metric_reloads(gw: &Gateway, result: &str) -> u64 {
    let (code, body) = gw.admin_get("/metrics");
    assert_eq!(code, 200);
    let needle = format!("portcullis_config_reloads_total{{result=\"{result}\"}}");
    body.lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

/// The error lines `portcullis check` prints for `config` (its summary line excluded).
fn check_errors(config: &Path, certs: &Path) -> Vec<String> {
    let (code, stdout, stderr) = run_check(config, Some(certs));
    assert_eq!(code, 1, "check must reject the config\n{stdout}\n{stderr}");
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.contains(" warning: ") && !l.contains(" error(s), "))
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "check printed no error: {stdout}");
    lines
}

/// The `reload ok` line for the generation `status` reports.
fn reload_ok_line(gw: &Gateway, status: &Value) -> String {
    let g = counter(status, "generation");
    gw.wait_for_log(&format!(": generation {g} in "), WAIT)
}

// ---------------------------------------------------------------------------------------------
// Changing files

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_direct_response_is_served_after_editor_style_save() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    assert!(serves(env.port, "example.com", "v1").await);
    let g = env.generation();
    assert_eq!(g, 1);

    env.config.write("vs.yaml", &direct_vs("site", "*", "v2"));
    eventually(APPLY, "v2 served", async || {
        serves(env.port, "example.com", "v2").await
    })
    .await;
    let r = get(env.port, "example.com", "/").await;
    assert_eq!(r.header("x-version"), Some("v2"), "{}", r.raw);

    let status = env.status();
    assert_eq!(counter(&status, "generation"), g + 1);
    assert_eq!(status["last_result"], "ok");
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(
        status["last_changes"]["modified"],
        serde_json::json!(["VirtualService default/site"]),
        "{status}"
    );
    // One log line per reload saying what changed.
    let line = reload_ok_line(&env.gw, &status);
    assert!(
        line.contains("reload ok") && line.contains("modified 1: VirtualService default/site"),
        "{line}"
    );
    assert_eq!(
        metric_reloads(&env.gw, "ok"),
        counter(&status, "reloads_ok")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_destination_sends_requests_to_the_new_backend() {
    let a = Backend::http("alpha").await;
    let b = Backend::http("bravo").await;
    let env = Env::start(&[
        (
            "backends.yaml",
            format!("{}---\n{}", service_entry(&a), service_entry(&b)),
        ),
        ("vs.yaml", proxy_vs("app", "app.example.com", &a, "v1")),
    ]);
    let r = get(env.port, "app.example.com", "/hello").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.header("x-backend"), Some("alpha"), "{}", r.raw);

    env.config
        .write("vs.yaml", &proxy_vs("app", "app.example.com", &b, "v2"));
    eventually(APPLY, "requests reach bravo", async || {
        matches!(try_get(env.port, "app.example.com", "/hello").await,
            Ok(r) if r.status == 200 && r.header("x-backend") == Some("bravo") && r.header("x-version") == Some("v2"))
    })
    .await;
    let before = a.requests();
    for _ in 0..5 {
        let r = get(env.port, "app.example.com", "/hello").await;
        assert_eq!(r.header("x-backend"), Some("bravo"), "{}", r.raw);
    }
    assert_eq!(
        a.requests(),
        before,
        "no request goes to the old destination"
    );

    // The served snapshot no longer has a cluster for the old destination.
    let (code, dump) = env.gw.admin_get("/config_dump");
    assert_eq!(code, 200);
    let clusters = serde_json::from_str::<Value>(&dump).unwrap()["clusters"].to_string();
    assert!(clusters.contains(&backend_host(&b)), "{clusters}");
    assert!(!clusters.contains(&backend_host(&a)), "{clusters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_is_applied() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    assert!(serves(env.port, "example.com", "v1").await);
    let g = env.generation();

    env.config
        .write_in_place("vs.yaml", &direct_vs("site", "*", "in-place"));
    eventually(APPLY, "in-place edit served", async || {
        serves(env.port, "example.com", "in-place").await
    })
    .await;
    assert!(env.generation() > g);

    // And a second in-place edit of the same inode.
    env.config
        .write_in_place("vs.yaml", &direct_vs("site", "*", "in-place-2"));
    eventually(APPLY, "second in-place edit served", async || {
        serves(env.port, "example.com", "in-place-2").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_and_deleted_files_add_and_remove_routes() {
    let env = Env::start(&[("a.yaml", direct_vs("a", "a.example.com", "a"))]);
    assert!(serves(env.port, "a.example.com", "a").await);
    assert_eq!(get(env.port, "b.example.com", "/").await.status, 404);

    // A new file.
    env.config
        .write("b.yaml", &direct_vs("b", "b.example.com", "b"));
    eventually(APPLY, "b.example.com served", async || {
        serves(env.port, "b.example.com", "b").await
    })
    .await;
    let status = env.status();
    assert_eq!(
        status["last_changes"]["added"],
        serde_json::json!(["VirtualService default/b"]),
        "{status}"
    );
    assert!(serves(env.port, "a.example.com", "a").await);

    // The file deleted.
    let g = env.generation();
    env.config.remove("b.yaml");
    eventually(
        APPLY,
        "b.example.com gone",
        async || matches!(try_get(env.port, "b.example.com", "/").await, Ok(r) if r.status == 404),
    )
    .await;
    let status = env.status();
    assert_eq!(counter(&status, "generation"), g + 1);
    assert_eq!(
        status["last_changes"]["removed"],
        serde_json::json!(["VirtualService default/b"]),
        "{status}"
    );
    assert!(serves(env.port, "a.example.com", "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_files_are_followed() {
    let env = Env::start(&[("a.yaml", direct_vs("a", "a.example.com", "a"))]);
    let outside = ConfigDir::new();
    let staged = outside.write("m.yaml", &direct_vs("m", "m.example.com", "moved"));

    // Moved into the config directory.
    std::fs::rename(&staged, env.config.file("m.yaml")).unwrap();
    eventually(APPLY, "moved-in file served", async || {
        serves(env.port, "m.example.com", "moved").await
    })
    .await;

    // Moved within it (into an existing subdirectory): same resources, different file.
    std::fs::create_dir(env.config.file("sub")).unwrap();
    let status = env.status();
    let (g, hash) = (
        counter(&status, "generation"),
        status["files_hash"].as_str().unwrap().to_string(),
    );
    std::fs::rename(env.config.file("m.yaml"), env.config.file("sub/m.yaml")).unwrap();
    let status = env.wait_generation_after(g).await;
    assert_ne!(status["files_hash"], hash.as_str(), "{status}");
    assert_eq!(status["last_result"], "ok", "{status}");
    assert!(serves(env.port, "m.example.com", "moved").await);

    // Moved out of it.
    std::fs::rename(env.config.file("sub/m.yaml"), outside.file("back.yaml")).unwrap();
    eventually(
        APPLY,
        "moved-out file no longer served",
        async || matches!(try_get(env.port, "m.example.com", "/").await, Ok(r) if r.status == 404),
    )
    .await;
    assert!(serves(env.port, "a.example.com", "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subdirectory_is_loaded_and_watched() {
    let env = Env::start(&[("a.yaml", direct_vs("a", "a.example.com", "a"))]);

    env.config.write(
        "team-b/routes/b.yaml",
        &direct_vs("b", "b.example.com", "b1"),
    );
    eventually(APPLY, "file in a new subdirectory served", async || {
        serves(env.port, "b.example.com", "b1").await
    })
    .await;

    // The new directory is watched too: editing the file there is applied.
    env.config.write(
        "team-b/routes/b.yaml",
        &direct_vs("b", "b.example.com", "b2"),
    );
    eventually(APPLY, "edit in the new subdirectory served", async || {
        serves(env.port, "b.example.com", "b2").await
    })
    .await;
    env.config.write_in_place(
        "team-b/routes/b.yaml",
        &direct_vs("b", "b.example.com", "b3"),
    );
    eventually(
        APPLY,
        "in-place edit in the new subdirectory served",
        async || serves(env.port, "b.example.com", "b3").await,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Broken changes: all or nothing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_keeps_the_last_good_config_until_fixed() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    let before = env.status();
    let g = counter(&before, "generation");
    let failed = counter(&before, "reloads_failed");
    let mark = env.gw.log_mark();

    // Line 17 dedented out of its block: a YAML syntax error.
    let broken = direct_vs("site", "*", "v2").replace("    directResponse:", " directResponse:");
    assert_eq!(broken.lines().nth(16), Some(" directResponse:"));
    let path = env.config.write("vs.yaml", &broken);

    let status = wait_failed_after(&env.gw, failed).await;
    assert_eq!(status["last_result"], "error", "{status}");
    assert_eq!(counter(&status, "generation"), g, "generation unchanged");
    assert_eq!(status["files_hash"], before["files_hash"], "{status}");
    let last_error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Logged (and in /reload) exactly as `check` prints it: FILE:LINE: invalid YAML: ...
    let errors = check_errors(env.config.path(), env.certs.path());
    for e in &errors {
        assert!(
            e.starts_with(&format!("{}:17: invalid YAML: ", path.display())),
            "file and the broken line are named: {e}"
        );
        env.gw.wait_for_log_after(mark, e, WAIT);
        assert!(last_error.contains(e.as_str()), "{last_error}");
    }
    env.gw.wait_for_log_after(mark, "reload failed", WAIT);
    assert_eq!(
        metric_reloads(&env.gw, "error"),
        counter(&status, "reloads_failed")
    );

    // The old config keeps serving.
    let r = get(env.port, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);

    // Fixing the file applies the new config and clears the error.
    env.config.write("vs.yaml", &direct_vs("site", "*", "v2"));
    eventually(APPLY, "the fixed config served", async || {
        serves(env.port, "example.com", "v2").await
    })
    .await;
    let status = env.status();
    assert_eq!(counter(&status, "generation"), g + 1, "{status}");
    assert_eq!(status["last_result"], "ok");
    assert!(status["last_error"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_in_another_file_is_rejected_until_removed() {
    let env = Env::start(&[("a.yaml", direct_vs("site", "*", "v1"))]);
    let before = env.status();
    // The same VirtualService name in a new file (the first file is unchanged).
    let dup = env.config.write("b.yaml", &direct_vs("site", "*", "v2"));
    let status = wait_failed_after(&env.gw, counter(&before, "reloads_failed")).await;
    assert_eq!(
        counter(&status, "generation"),
        counter(&before, "generation")
    );
    let err = status["last_error"].as_str().unwrap_or_default();
    let first = env.config.file("a.yaml");
    assert!(
        err.contains(&format!(
            "{}:4: VirtualService default/site: metadata.name: duplicate VirtualService default/site (first defined at {}:4)",
            dup.display(),
            first.display()
        )),
        "{status}"
    );
    assert!(serves(env.port, "example.com", "v1").await);

    // Renamed: both load.
    env.config
        .write("b.yaml", &direct_vs("other", "other.example.com", "other"));
    let status = env
        .wait_generation_after(counter(&before, "generation"))
        .await;
    assert!(status["last_error"].is_null(), "{status}");
    assert!(serves(env.port, "other.example.com", "other").await);
    assert!(serves(env.port, "example.com", "v1").await);
}

/// Writes `bad` (a file with a valid change to VirtualService `site` and an invalid `broken`
/// VirtualService) and proves nothing of it is applied, the error is reported as `check`
/// reports it, and fixing `broken` applies everything.
async fn semantic_error_is_all_or_nothing(env: &Env, bad: &str, marker: &str, field: &str) {
    let before = env.status();
    let g = counter(&before, "generation");
    let failed = counter(&before, "reloads_failed");
    let mark = env.gw.log_mark();

    let path = env.config.write("routes.yaml", bad);
    let status = wait_failed_after(&env.gw, failed).await;
    assert_eq!(counter(&status, "generation"), g, "generation unchanged");
    let last_error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let errors = check_errors(env.config.path(), env.certs.path());
    let line = 1 + bad.lines().position(|l| l.contains(marker)).unwrap();
    let located = format!(
        "{}:{line}: VirtualService default/broken: {field}: ",
        path.display()
    );
    assert!(
        errors.iter().any(|e| e.starts_with(&located)),
        "check names file, line and field ({located}): {errors:?}"
    );
    for e in &errors {
        env.gw.wait_for_log_after(mark, e, WAIT);
        assert!(last_error.contains(e.as_str()), "{last_error}");
    }
    // Nothing of the change is applied: not even the valid VirtualService in the same write.
    let r = get(env.port, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);
    assert_eq!(
        get(env.port, "broken.example.com", "/").await.status,
        204,
        "the last good version of `broken` still serves"
    );
}

fn two_vs(site_version: &str, broken_rule: &str) -> String {
    let site = direct_vs("site", "*", site_version);
    format!(
        r#"{site}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
  namespace: default
spec:
  hosts:
  - broken.example.com
  gateways:
  - gw
  http:
{broken_rule}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantically_invalid_change_is_rejected_as_a_whole() {
    let b = Backend::http("subsetted").await;
    let dr = format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: subsetted
  namespace: default
spec:
  host: {host}
  subsets:
  - name: v1
    labels:
      version: v1
"#,
        host = backend_host(&b)
    );
    let se = service_entry(&b).replace(
        "  - address: 127.0.0.1\n",
        "  - address: 127.0.0.1\n    labels:\n      version: v1\n",
    );
    let env = Env::start(&[
        ("backend.yaml", format!("{se}---\n{dr}")),
        (
            "routes.yaml",
            two_vs("v1", "  - directResponse:\n      status: 204\n"),
        ),
    ]);
    assert!(serves(env.port, "example.com", "v1").await);

    // A route to a subset no DestinationRule defines.
    let undefined_subset = format!(
        "  - route:\n    - destination:\n        host: {}\n        subset: v9\n",
        backend_host(&b)
    );
    semantic_error_is_all_or_nothing(
        &env,
        &two_vs("v2", &undefined_subset),
        "subset: v9",
        "spec.http[0].route[0].destination.subset",
    )
    .await;

    // A regex that does not compile.
    let bad_regex = "  - match:\n    - uri:\n        regex: \"/api/(v1|v2\"\n    directResponse:\n      status: 204\n";
    semantic_error_is_all_or_nothing(
        &env,
        &two_vs("v2", bad_regex),
        "regex:",
        "spec.http[0].match[0].uri.regex",
    )
    .await;

    // Fixed: everything in the file applies at once.
    let g = env.generation();
    let good = format!(
        "  - route:\n    - destination:\n        host: {}\n        subset: v1\n",
        backend_host(&b)
    );
    env.config.write("routes.yaml", &two_vs("v2", &good));
    let status = env.wait_generation_after(g).await;
    assert!(status["last_error"].is_null(), "{status}");
    assert!(serves(env.port, "example.com", "v2").await);
    let r = get(env.port, "broken.example.com", "/x").await;
    assert_eq!(
        (r.status, r.header("x-backend")),
        (200, Some("subsetted")),
        "{}",
        r.raw
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes ConfigMap volume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_volume_swap_is_applied_and_files_load_once() {
    let port = free_port();
    let root = ConfigDir::new();
    let certs = ConfigDir::new();
    let dir = root.path().join("config");
    let gw_yaml = gateway_yaml(&[port]);
    k8s_volume_write(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_vs("site", "*", "v1")),
        ],
    );
    let gw = start_gateway(&dir, certs.path(), &[]);
    assert!(serves(port, "example.com", "v1").await);
    let (code, dump) = gw.admin_get("/config_dump");
    assert_eq!(code, 200);
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(
        dump["summary"]["files"], 2,
        "each file loads once: {}",
        dump["summary"]
    );
    assert_eq!(
        dump["summary"]["virtual_services"], 1,
        "{}",
        dump["summary"]
    );

    // kubelet's update: new timestamped dir, `..data` symlink swapped.
    let g = counter(&reload_status(&gw), "generation");
    k8s_volume_swap(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_vs("site", "*", "v2")),
        ],
    );
    eventually(APPLY, "v2 from the swapped volume", async || {
        serves(port, "example.com", "v2").await
    })
    .await;
    let status = reload_status(&gw);
    assert!(counter(&status, "generation") > g);
    assert_eq!(counter(&status, "reloads_failed"), 0, "{status}");
    assert!(status["last_error"].is_null(), "{status}");

    // A key added to the ConfigMap, then removed again.
    k8s_volume_swap(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_vs("site", "*", "v2")),
            (
                "extra.yaml",
                &direct_vs("extra", "extra.example.com", "extra"),
            ),
        ],
    );
    eventually(APPLY, "the added key served", async || {
        serves(port, "extra.example.com", "extra").await
    })
    .await;
    k8s_volume_swap(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_vs("site", "*", "v3")),
        ],
    );
    eventually(APPLY, "v3 served and the removed key gone", async || {
        // extra.example.com falls back to the `*` VirtualService again.
        serves(port, "example.com", "v3").await && serves(port, "extra.example.com", "v3").await
    })
    .await;
    let status = reload_status(&gw);
    assert_eq!(counter(&status, "reloads_failed"), 0, "{status}");
    assert!(
        !gw.logs_contain("duplicate"),
        "no file was loaded twice:\n{}",
        gw.logs().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_directory_replaced_by_a_symlink_swap_is_followed() {
    // A release layout: --config is `current`, a symlink to a release directory that a deploy
    // replaces atomically (new directory, new symlink renamed over `current`).
    let port = free_port();
    let root = ConfigDir::new();
    let certs = ConfigDir::new();
    let release = |n: &str, version: &str| {
        root.write(&format!("{n}/gateway.yaml"), &gateway_yaml(&[port]));
        root.write(&format!("{n}/vs.yaml"), &direct_vs("site", "*", version));
    };
    let swap_to = |n: &str| {
        let tmp = root.file("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(root.file(n), &tmp).unwrap();
        std::fs::rename(&tmp, root.file("current")).unwrap();
    };
    release("r1", "v1");
    swap_to("r1");
    let gw = start_gateway(&root.file("current"), certs.path(), &[]);
    assert!(serves(port, "example.com", "v1").await);

    release("r2", "v2");
    swap_to("r2");
    eventually(APPLY, "the new release served", async || {
        serves(port, "example.com", "v2").await
    })
    .await;

    // Edits inside the new release are watched too.
    root.write("r2/vs.yaml", &direct_vs("site", "*", "v2-edited"));
    eventually(APPLY, "an edit in the new release served", async || {
        serves(port, "example.com", "v2-edited").await
    })
    .await;
    assert_eq!(counter(&reload_status(&gw), "reloads_failed"), 0);
}

// ---------------------------------------------------------------------------------------------
// Debounce and signals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_makes_one_or_very_few_reloads() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v0"))]);
    let before = env.status();
    let (ok0, failed0) = (
        counter(&before, "reloads_ok"),
        counter(&before, "reloads_failed"),
    );

    for i in 1..=20 {
        env.config
            .write("vs.yaml", &direct_vs("site", "*", &format!("v{i}")));
    }
    eventually(APPLY, "the last write served", async || {
        serves(env.port, "example.com", "v20").await
    })
    .await;
    // Let any further (late) reload happen before counting.
    let mut after = env.status();
    stays(Duration::from_secs(1), "no further reload", async || {
        let s = env.status();
        let same = s["reloads_ok"] == after["reloads_ok"];
        after = s;
        same
    })
    .await;
    let ok = counter(&after, "reloads_ok") - ok0;
    assert_eq!(counter(&after, "reloads_failed"), failed0, "{after}");
    assert!(
        (1..=3).contains(&ok),
        "20 writes in a burst made {ok} reloads (debounce expected one or very few)"
    );
    assert_eq!(metric_reloads(&env.gw, "ok"), counter(&after, "reloads_ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    let g = env.generation();
    let mark = env.gw.log_mark();
    env.gw.sighup();
    let status = env.wait_generation_after(g).await;
    assert_eq!(counter(&status, "generation"), g + 1);
    let line = env
        .gw
        .wait_for_log_after(mark, &format!("generation {} in", g + 1), WAIT);
    assert!(
        line.contains("reload ok (SIGHUP)") && line.contains("no resource changed"),
        "{line}"
    );
    assert!(serves(env.port, "example.com", "v1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_false_a_change_waits_for_sighup() {
    let env = Env::start_with(
        &[("vs.yaml", direct_vs("site", "*", "v1"))],
        &["--watch", "false"],
    );
    let g = env.generation();
    env.config.write("vs.yaml", &direct_vs("site", "*", "v2"));
    env.config
        .write("new.yaml", &direct_vs("new", "new.example.com", "new"));
    // Not applied in the time a watcher would have applied it.
    stays(APPLY, "the old config is served", async || {
        serves(env.port, "example.com", "v1").await
            && serves(env.port, "new.example.com", "v1").await
            && env.generation() == g
    })
    .await;

    env.gw.sighup();
    let status = env.wait_generation_after(g).await;
    assert_eq!(counter(&status, "generation"), g + 1);
    assert!(serves(env.port, "example.com", "v2").await);
    assert!(serves(env.port, "new.example.com", "new").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_follows_changes_without_file_notifications() {
    // The fallback for file systems without notifications (and for exhausted inotify limits).
    let env = Env::start_with(
        &[("vs.yaml", direct_vs("site", "*", "v1"))],
        &["--watch", "poll"],
    );
    env.gw.wait_for_log("polling", WAIT);
    let g = env.generation();
    env.config.write("vs.yaml", &direct_vs("site", "*", "v2"));
    // One poll interval (1 s) plus the debounce: well within the 10 s wait.
    let status = env.wait_generation_after(g).await;
    assert!(
        reload_ok_line(&env.gw, &status).contains("poll"),
        "the reload came from polling"
    );
    assert!(serves(env.port, "example.com", "v2").await);
}

// ---------------------------------------------------------------------------------------------
// Listeners follow the config

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_port_added_by_a_reload_serves() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    let extra = free_port();
    assert!(TcpStream::connect(loopback(extra)).await.is_err());

    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port, extra]));
    eventually(APPLY, "the new port serves", async || {
        serves(extra, "example.com", "v1").await
    })
    .await;
    assert!(serves(env.port, "example.com", "v1").await);
    env.gw.wait_for_log(&format!("127.0.0.1:{extra}"), WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_port_stops_accepting_and_drains_its_in_flight_request() {
    let backend = Backend::http("slow").await;
    let keep = free_port();
    let env = Env::start(&[
        ("backend.yaml", service_entry(&backend)),
        ("vs.yaml", proxy_vs("app", "*", &backend, "v1")),
    ]);
    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port, keep]));
    eventually(
        APPLY,
        "both ports serve",
        async || matches!(try_get(keep, "x", "/ok").await, Ok(r) if r.status == 200),
    )
    .await;
    let removed = env.port;

    // A slow request in flight on the port about to be removed (keep-alive connection).
    let mut conn = TcpStream::connect(loopback(removed)).await.unwrap();
    let in_flight = tokio::spawn(async move {
        let resp = exchange(&mut conn, "x", "/delay/1500").await;
        (resp, conn)
    });
    backend.wait_for_requests(1, WAIT).await;

    let g = env.generation();
    env.config.write("gateway.yaml", &gateway_yaml(&[keep]));
    env.wait_generation_after(g).await;

    eventually(APPLY, "the removed port refuses connections", async || {
        TcpStream::connect(loopback(removed)).await.is_err()
    })
    .await;
    let r = get(keep, "x", "/ok").await;
    assert_eq!(
        (r.status, r.header("x-backend")),
        (200, Some("slow")),
        "{}",
        r.raw
    );

    let (resp, mut conn) = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert_eq!(resp.header("x-backend"), Some("slow"), "{}", resp.raw);
    let echo: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(echo["path"], "/delay/1500");
    // Draining: the connection is not kept for more requests once its listener is gone.
    let closed = resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    assert!(
        closed,
        "the response on a removed listener says Connection: close: {}",
        resp.raw
    );
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut conn, &mut buf))
        .await
        .expect("the drained connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the drained connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_on_a_removed_port_is_closed_not_misrouted() {
    let keep = free_port();
    // A drain timeout far longer than the wait below: the close must come from the drain.
    let env = Env::start_with(
        &[("vs.yaml", direct_vs("site", "*", "v1"))],
        &["--drain-timeout", "120"],
    );
    let mut idle = TcpStream::connect(loopback(env.port)).await.unwrap();
    let r = exchange(&mut idle, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);

    let g = env.generation();
    env.config.write("gateway.yaml", &gateway_yaml(&[keep]));
    env.wait_generation_after(g).await;
    assert!(serves(keep, "example.com", "v1").await);

    // The idle connection is closed by the server (a client then retries on a new
    // connection), rather than left open to answer its next request with a 404.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut idle, &mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection of the removed listener is closed: {read:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Requests and connections across a reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_across_a_route_change_completes_on_its_snapshot() {
    let old = Backend::http("old").await;
    let new = Backend::http("new").await;
    let env = Env::start(&[
        (
            "backends.yaml",
            format!("{}---\n{}", service_entry(&old), service_entry(&new)),
        ),
        ("vs.yaml", proxy_vs("app", "*", &old, "v1")),
    ]);
    let port = env.port;
    let in_flight = tokio::spawn(async move { get(port, "x", "/delay/1500").await });
    old.wait_for_requests(1, WAIT).await;

    let g = env.generation();
    env.config
        .write("vs.yaml", &proxy_vs("app", "*", &new, "v2"));
    env.wait_generation_after(g).await;
    let r = get(env.port, "x", "/now").await;
    assert_eq!(
        (r.status, r.header("x-backend"), r.header("x-version")),
        (200, Some("new"), Some("v2")),
        "{}",
        r.raw
    );

    // The slow request finishes on the old backend, with the old route's response header.
    let r = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.header("x-backend"), r.header("x-version")),
        (200, Some("old"), Some("v1")),
        "{}",
        r.raw
    );
    assert_eq!(
        new.requests_seen()
            .iter()
            .filter(|q| q.path.starts_with("/delay"))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_survives_reloads_that_keep_its_listener() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    let mut conn = TcpStream::connect(loopback(env.port)).await.unwrap();
    let local = conn.local_addr().unwrap();
    let r = exchange(&mut conn, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);

    // A route change.
    env.config.write("vs.yaml", &direct_vs("site", "*", "v2"));
    eventually(APPLY, "v2 on new connections", async || {
        serves(env.port, "example.com", "v2").await
    })
    .await;
    let r = exchange(&mut conn, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v2"), "{}", r.raw);

    // A listener added elsewhere, and a forced reload.
    let g = env.generation();
    let other = free_port();
    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port, other]));
    let status = env.wait_generation_after(g).await;
    env.gw.sighup();
    env.wait_generation_after(counter(&status, "generation"))
        .await;
    let r = exchange(&mut conn, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v2"), "{}", r.raw);
    assert_eq!(conn.local_addr().unwrap(), local, "the same connection");
    assert!(
        !r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "still kept alive: {}",
        r.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_across_a_reload_that_keeps_the_cluster() {
    let b = Backend::http("pooled").await;
    let env = Env::start(&[
        ("backend.yaml", service_entry(&b)),
        ("vs.yaml", proxy_vs("app", "*", &b, "v1")),
    ]);
    let first = get(env.port, "x", "/one").await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let conn = serde_json::from_str::<Value>(&first.body).unwrap()["conn"].clone();

    // A route change that keeps the destination.
    env.config.write("vs.yaml", &proxy_vs("app", "*", &b, "v2"));
    eventually(APPLY, "v2 served", async || {
        matches!(try_get(env.port, "x", "/two").await, Ok(r) if r.header("x-version") == Some("v2"))
    })
    .await;
    let r = get(env.port, "x", "/three").await;
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        echo["conn"], conn,
        "the pooled upstream connection is reused: {}",
        r.raw
    );
    assert_eq!(b.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// Certificates (`--certs` is watched too)

fn https_gateway_yaml(port: u16, credential: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: {port}
      name: https
      protocol: HTTPS
    hosts:
    - "*"
    tls:
      mode: SIMPLE
      credentialName: {credential}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_is_served_after_reload() {
    let ca = Ca::new("Reload CA");
    let first = ca.server_cert(&["site.example.com"]);
    let second = ca.server_cert(&["site.example.com"]);
    let certs = ConfigDir::new();
    certs::write_credential_k8s_style(certs.path(), "site", &first, None);
    certs::write_credential(certs.path(), "plain", &first, None);
    let port = free_port();
    let env = Env::launch(
        certs,
        port,
        &https_gateway_yaml(port, "site"),
        &[("vs.yaml", direct_vs("site", "*", "v1"))],
        &[],
    );
    let presented = async || {
        client::tls_handshake(
            loopback(port),
            Some("site.example.com"),
            Some(&ca),
            None,
            &[],
        )
        .await
        .map(|h| h.sha256)
    };
    assert_eq!(presented().await.unwrap(), first.sha256_hex());

    // kubelet rotates the Secret volume.
    certs::swap_k8s_credential(env.certs.path(), "site", &second, None);
    eventually(APPLY, "the rotated certificate is presented", async || {
        presented().await.as_deref() == Ok(second.sha256_hex().as_str())
    })
    .await;

    // A plain credential directory rewritten in place, then used by the Gateway.
    let third = ca.server_cert(&["site.example.com"]);
    certs::write_credential(env.certs.path(), "plain", &third, None);
    env.config
        .write("gateway.yaml", &https_gateway_yaml(port, "plain"));
    eventually(APPLY, "the other credential is presented", async || {
        presented().await.as_deref() == Ok(third.sha256_hex().as_str())
    })
    .await;
    let fourth = ca.server_cert(&["site.example.com"]);
    certs::write_credential(env.certs.path(), "plain", &fourth, None);
    eventually(APPLY, "the rewritten credential is presented", async || {
        presented().await.as_deref() == Ok(fourth.sha256_hex().as_str())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Listener changes that cannot simply be bound

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_cannot_bind_a_port_is_refused_as_a_whole() {
    let env = Env::start(&[("vs.yaml", direct_vs("site", "*", "v1"))]);
    let taken = free_port();
    let squatter = std::net::TcpListener::bind(loopback(taken)).unwrap();
    let before = env.status();
    let g = counter(&before, "generation");

    // One file: a new port someone else holds, and a new VirtualService.
    env.config.write(
        "gateway.yaml",
        &format!(
            "{}---\n{}",
            gateway_yaml(&[env.port, taken]),
            direct_vs("other", "other.example.com", "other")
        ),
    );
    let status = wait_failed_after(&env.gw, counter(&before, "reloads_failed")).await;
    assert_eq!(counter(&status, "generation"), g);
    let err = status["last_error"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{taken}")), "{status}");
    assert!(
        serves(env.port, "other.example.com", "v1").await,
        "nothing applied"
    );

    // Once the port is free, the next reload applies all of it.
    drop(squatter);
    env.gw.sighup();
    env.wait_generation_after(g).await;
    assert!(serves(env.port, "other.example.com", "other").await);
    assert!(serves(taken, "other.example.com", "other").await);
}

/// Gateway `gw` with one HTTP server on `port` bound to `bind`.
fn gateway_bound(port: u16, bind: &str) -> String {
    gateway_yaml(&[port]).replace("  - port:\n", &format!("  - bind: {bind}\n    port:\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_bind_address_changed_on_the_same_port_is_applied() {
    let port = free_port();
    let env = Env::launch(
        ConfigDir::new(),
        port,
        &gateway_bound(port, "0.0.0.0"),
        &[("vs.yaml", direct_vs("site", "*", "v1"))],
        &[],
    );
    assert!(serves(port, "example.com", "v1").await);

    // Narrow the server to loopback, on the same port (and change a route with it).
    let g = env.generation();
    env.config.write(
        "gateway.yaml",
        &format!(
            "{}---\n{}",
            gateway_bound(port, "127.0.0.1"),
            direct_vs("other", "other.example.com", "other")
        ),
    );
    let status = env.wait_generation_after(g).await;
    assert!(status["last_error"].is_null(), "{status}");
    assert!(serves(port, "other.example.com", "other").await);
    let (code, dump) = env.gw.admin_get("/config_dump");
    assert_eq!(code, 200);
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert!(
        dump["listeners"].get(format!("127.0.0.1:{port}")).is_some(),
        "{}",
        dump["listeners"]
    );
}
