//! Live reload: a changed config directory takes effect without a restart and without dropping
//! a request; a broken change is reported (file, line, field) and only what is wrong is left
//! out (a file that no longer parses keeps its last good contents, a rejected resource its last
//! accepted version); listeners follow the Gateways; SIGHUP forces a reload.
//!
//! Every test starts the real binary on a temp config directory (the shared [`Harness`], its
//! Gateway ports real port numbers so a test can rewrite the Gateway) and proves the change by
//! what a client sees, plus the admin `/reload` status and the log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;

use crate::support::certs;
use crate::support::cli::run_check;
use crate::support::client;
use crate::support::client::{get_request, raw_exchange, try_raw_http, Resp};
use crate::support::harness::{backend_entry, ReloadStatus};
use crate::support::k8s::{k8s_volume_swap, k8s_volume_write};
use crate::support::yaml::*;
use crate::support::*;

/// How soon a change must be served ("about a second"; this is a polling deadline).
const APPLY: Duration = Duration::from_secs(2);
/// Deadline for things that are not about reload latency (a backend seeing a request, ...).
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// YAML

/// Gateway `gw` with one plain-HTTP server for every host on each port.
fn gateway_on(ports: &[u16]) -> Gateway {
    ports
        .iter()
        .fold(Gateway::new("gw"), |g, p| g.server(Server::http(*p)))
}

fn gateway_yaml(ports: &[u16]) -> String {
    gateway_on(ports).yaml()
}

/// VirtualService `name` for `host`: a direct response whose body is `version` and which sets
/// `x-version: version`.
fn direct_vs(name: &str, host: &str, version: &str) -> VirtualService {
    let rule = HttpRoute::new()
        .name("direct")
        .direct_response(DirectResponse::status(200).body(version));
    versioned_vs(name, host, version, rule)
}

/// VirtualService `name` for `host` bound to `gw` with the one `rule`, which also sets the
/// response header `x-version: version`.
fn versioned_vs(name: &str, host: &str, version: &str, rule: HttpRoute) -> VirtualService {
    let rule = rule.headers(Headers::new().response_set("x-version", version));
    VirtualService::new(name)
        .hosts(&[host])
        .gateways(&["gw"])
        .http(rule)
}

fn direct_yaml(name: &str, host: &str, version: &str) -> String {
    direct_vs(name, host, version).yaml()
}

/// ServiceEntry making `b` reachable as [`svc`]`(name)`.
fn service_entry(b: &Backend) -> ServiceEntry {
    backend_entry(b.name(), b.port())
}

fn service_entry_yaml(b: &Backend) -> String {
    service_entry(b).yaml()
}

/// VirtualService `name` for `host` routing everything to `b`, setting `x-version: version`.
fn proxy_vs(name: &str, host: &str, b: &Backend, version: &str) -> String {
    let rule = HttpRoute::new().name("to-backend").to(&svc(b.name()));
    versioned_vs(name, host, version, rule).yaml()
}

// ---------------------------------------------------------------------------------------------
// Clients

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One request on a new connection; `Err` if the connection cannot be made or no complete
/// response arrives.
async fn try_get(port: u16, host: &str, path: &str) -> Result<Resp, String> {
    let raw = try_raw_http(loopback(port), get_request(host, path, "", true))
        .await
        .map_err(|e| format!("connect :{port}: {e}"))?;
    Resp::try_parse(&raw).ok_or_else(|| format!("no complete response: {raw:?}"))
}

async fn get(port: u16, host: &str, path: &str) -> Resp {
    try_get(port, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}:{port}{path}: {e}"))
}

/// One request on an open keep-alive connection.
async fn exchange(s: &mut TcpStream, host: &str, path: &str) -> Resp {
    let raw = raw_exchange(s, get_request(host, path, "", false).as_bytes()).await;
    Resp::try_parse(&raw)
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

/// [`direct_vs`]`("site", "*", version)` as hand-written text: the one raw YAML in this file,
/// because the test that breaks it names the broken line (17).
fn direct_vs_text(version: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: site
  namespace: default
spec:
  hosts:
  - "*"
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

// ---------------------------------------------------------------------------------------------
// The gateway under test

/// `gateway.yaml` (one server on a fresh port, the YAML port the real one) and `files`.
async fn start(files: &[(&str, String)]) -> Harness {
    start_with(files, &[]).await
}

async fn start_with(files: &[(&str, String)], extra_args: &[&str]) -> Harness {
    let port = free_port();
    let b = Harness::builder()
        .port_as(port, port)
        .file("gateway.yaml", gateway_yaml(&[port]));
    launch(b, files, extra_args).await
}

/// Adds `files` and `extra_args` to `b` and starts the gateway.
async fn launch(b: HarnessBuilder, files: &[(&str, String)], extra_args: &[&str]) -> Harness {
    files
        .iter()
        .fold(b, |b, (name, text)| b.file(name, text.as_str()))
        .args(extra_args)
        .start()
        .await
}

/// Serves `--config <root>/<sub>` (a volume or symlink the test manages); Gateway ports are
/// real port numbers, `port` the first.
async fn serve_inside(root: ConfigDir, sub: &str, port: u16) -> Harness {
    Harness::builder()
        .config(root)
        .serve(sub)
        .port_as(port, port)
        .start()
        .await
}

/// `portcullis_config_reloads_total{result="..."}` from `/metrics` (0 if absent).
async fn metric_reloads(h: &Harness, result: &str) -> u64 {
    h.metric(&format!(
        "portcullis_config_reloads_total{{result=\"{result}\"}}"
    ))
    .await as u64
}

/// The error lines `portcullis check` prints for `h`'s config (its summary line excluded).
async fn check_errors(h: &Harness) -> Vec<String> {
    let (code, stdout, stderr) = run_check(h.config.path(), Some(h.certs.path())).await;
    assert_eq!(code, 1, "check must reject the config\n{stdout}\n{stderr}");
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains(": Error ") && !l.contains(" error(s), "))
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "check printed no error: {stdout}");
    lines
}

/// The `reload ok` line for the generation `status` reports.
async fn reload_ok_line(h: &Harness, status: &ReloadStatus) -> String {
    let g = status.generation;
    h.gw.wait_for_log(&format!(": generation {g} in "), WAIT)
        .await
}

// ---------------------------------------------------------------------------------------------
// Changing files

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_direct_response_is_served_after_editor_style_save() {
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    assert!(serves(env.port(), "example.com", "v1").await);
    let g = env.generation().await;
    assert_eq!(g, 1);

    env.config.write("vs.yaml", &direct_yaml("site", "*", "v2"));
    eventually(APPLY, "v2 served", async || {
        serves(env.port(), "example.com", "v2").await
    })
    .await;
    let r = get(env.port(), "example.com", "/").await;
    assert_eq!(r.header("x-version"), Some("v2"), "{}", r.raw);

    let status = env.reload_status().await;
    assert_eq!(status.generation, g + 1);
    assert_eq!(status.last_result, "ok");
    assert!(status.last_error.is_none(), "{status:?}");
    assert_eq!(
        status.last_changes.modified,
        ["VirtualService default/site"],
        "{status:?}"
    );
    // One log line per reload saying what changed.
    let line = reload_ok_line(&env, &status).await;
    assert!(
        line.contains("reload ok") && line.contains("modified 1: VirtualService default/site"),
        "{line}"
    );
    assert_eq!(metric_reloads(&env, "ok").await, status.reloads_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_destination_sends_requests_to_the_new_backend() {
    let a = Backend::http("alpha").await;
    let b = Backend::http("bravo").await;
    let env = start(&[
        (
            "backends.yaml",
            render(&[&service_entry(&a), &service_entry(&b)]),
        ),
        ("vs.yaml", proxy_vs("app", "app.example.com", &a, "v1")),
    ])
    .await;
    let r = get(env.port(), "app.example.com", "/hello").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.header("x-backend"), Some("alpha"), "{}", r.raw);

    env.config
        .write("vs.yaml", &proxy_vs("app", "app.example.com", &b, "v2"));
    eventually(APPLY, "requests reach bravo", async || {
        matches!(try_get(env.port(), "app.example.com", "/hello").await,
            Ok(r) if r.status == 200 && r.header("x-backend") == Some("bravo") && r.header("x-version") == Some("v2"))
    })
    .await;
    let before = a.requests();
    for _ in 0..5 {
        let r = get(env.port(), "app.example.com", "/hello").await;
        assert_eq!(r.header("x-backend"), Some("bravo"), "{}", r.raw);
    }
    assert_eq!(
        a.requests(),
        before,
        "no request goes to the old destination"
    );

    // The served snapshot no longer has a cluster for the old destination.
    let clusters = env.config_dump().await["clusters"].to_string();
    assert!(clusters.contains(&svc(b.name())), "{clusters}");
    assert!(!clusters.contains(&svc(a.name())), "{clusters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_is_applied() {
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    assert!(serves(env.port(), "example.com", "v1").await);
    let g = env.generation().await;

    env.config
        .write_in_place("vs.yaml", &direct_yaml("site", "*", "in-place"));
    eventually(APPLY, "in-place edit served", async || {
        serves(env.port(), "example.com", "in-place").await
    })
    .await;
    assert!(env.generation().await > g);

    // And a second in-place edit of the same inode.
    env.config
        .write_in_place("vs.yaml", &direct_yaml("site", "*", "in-place-2"));
    eventually(APPLY, "second in-place edit served", async || {
        serves(env.port(), "example.com", "in-place-2").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_and_deleted_files_add_and_remove_routes() {
    let env = start(&[("a.yaml", direct_yaml("a", "a.example.com", "a"))]).await;
    assert!(serves(env.port(), "a.example.com", "a").await);
    assert_eq!(get(env.port(), "b.example.com", "/").await.status, 404);

    // A new file.
    env.config
        .write("b.yaml", &direct_yaml("b", "b.example.com", "b"));
    eventually(APPLY, "b.example.com served", async || {
        serves(env.port(), "b.example.com", "b").await
    })
    .await;
    let status = env.reload_status().await;
    assert_eq!(
        status.last_changes.added,
        ["VirtualService default/b"],
        "{status:?}"
    );
    assert!(serves(env.port(), "a.example.com", "a").await);

    // The file deleted.
    let g = env.generation().await;
    env.config.remove("b.yaml");
    eventually(
        APPLY,
        "b.example.com gone",
        async || matches!(try_get(env.port(), "b.example.com", "/").await, Ok(r) if r.status == 404),
    )
    .await;
    let status = env.reload_status().await;
    assert_eq!(status.generation, g + 1);
    assert_eq!(
        status.last_changes.removed,
        ["VirtualService default/b"],
        "{status:?}"
    );
    assert!(serves(env.port(), "a.example.com", "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_files_are_followed() {
    let env = start(&[("a.yaml", direct_yaml("a", "a.example.com", "a"))]).await;
    let outside = ConfigDir::new();
    let staged = outside.write("m.yaml", &direct_yaml("m", "m.example.com", "moved"));

    // Moved into the config directory.
    std::fs::rename(&staged, env.config.file("m.yaml")).unwrap();
    eventually(APPLY, "moved-in file served", async || {
        serves(env.port(), "m.example.com", "moved").await
    })
    .await;

    // Moved within it (into an existing subdirectory): same resources, different file.
    std::fs::create_dir(env.config.file("sub")).unwrap();
    let status = env.reload_status().await;
    let (g, hash) = (status.generation, status.files_hash.clone());
    std::fs::rename(env.config.file("m.yaml"), env.config.file("sub/m.yaml")).unwrap();
    let status = env.wait_generation_after(g, APPLY).await;
    assert_ne!(status.files_hash, hash, "{status:?}");
    assert_eq!(status.last_result, "ok", "{status:?}");
    assert!(serves(env.port(), "m.example.com", "moved").await);

    // Moved out of it.
    std::fs::rename(env.config.file("sub/m.yaml"), outside.file("back.yaml")).unwrap();
    eventually(
        APPLY,
        "moved-out file no longer served",
        async || matches!(try_get(env.port(), "m.example.com", "/").await, Ok(r) if r.status == 404),
    )
    .await;
    assert!(serves(env.port(), "a.example.com", "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subdirectory_is_loaded_and_watched() {
    let env = start(&[("a.yaml", direct_yaml("a", "a.example.com", "a"))]).await;

    env.config.write(
        "team-b/routes/b.yaml",
        &direct_yaml("b", "b.example.com", "b1"),
    );
    eventually(APPLY, "file in a new subdirectory served", async || {
        serves(env.port(), "b.example.com", "b1").await
    })
    .await;

    // The new directory is watched too: editing the file there is applied.
    env.config.write(
        "team-b/routes/b.yaml",
        &direct_yaml("b", "b.example.com", "b2"),
    );
    eventually(APPLY, "edit in the new subdirectory served", async || {
        serves(env.port(), "b.example.com", "b2").await
    })
    .await;
    env.config.write_in_place(
        "team-b/routes/b.yaml",
        &direct_yaml("b", "b.example.com", "b3"),
    );
    eventually(
        APPLY,
        "in-place edit in the new subdirectory served",
        async || serves(env.port(), "b.example.com", "b3").await,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Broken changes: isolation (what is wrong is left out, the rest is served)

/// `portcullis_config_files_stale` and `portcullis_config_resources_rejected{kind}` from
/// `/metrics`.
async fn metric_left_out(h: &Harness, name: &str) -> u64 {
    h.metric(name).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_file_keeps_its_last_good_contents_until_fixed() {
    let env = start(&[
        ("vs.yaml", direct_yaml("site", "*", "v1")),
        (
            "other.yaml",
            direct_yaml("other", "other.example.com", "o1"),
        ),
    ])
    .await;
    let before = env.reload_status().await;
    let mark = env.gw.log_mark();

    // Line 17 dedented out of its block: a YAML syntax error. In the same reload another file
    // changes: that change is applied.
    let broken = direct_vs_text("v2").replace("    directResponse:", " directResponse:");
    assert_eq!(broken.lines().nth(16), Some(" directResponse:"));
    let path = env.config.write("vs.yaml", &broken);
    env.config.write(
        "other.yaml",
        &direct_yaml("other", "other.example.com", "o2"),
    );

    let status = env.wait_generation_after(before.generation, APPLY).await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    let stale = &status.left_out.stale_files;
    assert_eq!(stale.len(), 1, "{status:?}");
    assert_eq!(
        (stale[0].file.as_str(), stale[0].resources),
        (path.to_str().unwrap(), 1)
    );
    assert!(
        status.left_out.resources.is_empty(),
        "nothing is left out: the file's last good contents serve: {status:?}"
    );
    let last_error = status.last_error.as_deref().unwrap_or_default().to_string();

    // Logged (and in /reload) exactly as `check` prints it: FILE:LINE: Error invalid YAML: ...
    let errors = check_errors(&env).await;
    for e in &errors {
        assert!(
            e.starts_with(&format!("{}:17: Error invalid YAML: ", path.display())),
            "file and the broken line are named: {e}"
        );
        env.gw.wait_for_log_after(mark, e, WAIT).await;
        assert!(last_error.contains(e.as_str()), "{last_error}");
    }
    env.gw
        .wait_for_log_after(
            mark,
            "its last good contents (1 resource(s)) keep serving",
            WAIT,
        )
        .await;
    assert_eq!(
        metric_left_out(&env, "portcullis_config_files_stale").await,
        1
    );

    // The file's last good contents keep serving; the other file's change is served.
    let r = get(env.port(), "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);
    assert!(serves(env.port(), "other.example.com", "o2").await);

    // Fixing the file applies it and clears the error.
    env.config.write("vs.yaml", &direct_yaml("site", "*", "v2"));
    eventually(APPLY, "the fixed config served", async || {
        serves(env.port(), "example.com", "v2").await
    })
    .await;
    let status = env.reload_status().await;
    assert_eq!(status.last_result, "ok");
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(status.left_out.stale_files.is_empty(), "{status:?}");
    assert_eq!(
        metric_left_out(&env, "portcullis_config_files_stale").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_in_another_file_is_left_out_until_renamed() {
    let env = start(&[("a.yaml", direct_yaml("site", "*", "v1"))]).await;
    let before = env.reload_status().await;
    // The same VirtualService name in a new file (the first file is unchanged).
    let dup = env.config.write("b.yaml", &direct_yaml("site", "*", "v2"));
    let status = env.wait_generation_after(before.generation, APPLY).await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    let err = status.last_error.as_deref().unwrap_or_default();
    let first = env.config.file("a.yaml");
    // Both files put `name: site` on the same line.
    let line = 1 + direct_yaml("site", "*", "v2")
        .lines()
        .position(|l| l.trim() == "name: site")
        .unwrap();
    assert!(
        err.contains(&format!(
            "{}:{line}: Error [IST0106] VirtualService default/site: metadata.name: duplicate VirtualService default/site (first defined at {}:{line})",
            dup.display(),
            first.display()
        )),
        "{status:?}"
    );
    let left = &status.left_out.resources;
    assert_eq!(left.len(), 1, "{status:?}");
    assert_eq!(
        (
            left[0].kind.as_str(),
            left[0].name.as_str(),
            left[0].file.as_deref()
        ),
        ("VirtualService", "site", dup.to_str())
    );
    assert!(serves(env.port(), "example.com", "v1").await);

    // Renamed: both load.
    env.config.write(
        "b.yaml",
        &direct_yaml("other", "other.example.com", "other"),
    );
    let status = env.wait_generation_after(status.generation, APPLY).await;
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(status.left_out.resources.is_empty(), "{status:?}");
    assert!(serves(env.port(), "other.example.com", "other").await);
    assert!(serves(env.port(), "example.com", "v1").await);
}

fn two_vs(site_version: &str, broken_rule: HttpRoute) -> String {
    let broken = VirtualService::new("broken")
        .hosts(&["broken.example.com"])
        .gateways(&["gw"])
        .http(broken_rule);
    render(&[&direct_vs("site", "*", site_version), &broken])
}

/// A change with a valid VirtualService and one Istio's webhook rejects: the valid one is
/// applied, the rejected one keeps its last accepted version (a failed `kubectl apply` keeps the
/// object in place), and `/reload`, the log, the metric and `check` name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_keeps_the_previous_version_and_the_rest_applies() {
    let no_content = || DirectResponse::status(204);
    let env = start(&[(
        "routes.yaml",
        two_vs("v1", HttpRoute::new().direct_response(no_content())),
    )])
    .await;
    assert!(serves(env.port(), "example.com", "v1").await);
    let before = env.reload_status().await;
    let mark = env.gw.log_mark();

    // A regex that does not compile.
    let bad = two_vs(
        "v2",
        HttpRoute::new()
            .when(Match::new().uri(regex("/api/(v1|v2")))
            .direct_response(no_content()),
    );
    let path = env.config.write("routes.yaml", &bad);
    let status = env.wait_generation_after(before.generation, APPLY).await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    // The valid VirtualService of the same write is served.
    assert!(serves(env.port(), "example.com", "v2").await);
    // The rejected one keeps its previous version.
    assert_eq!(get(env.port(), "broken.example.com", "/").await.status, 204);
    let left = &status.left_out.resources;
    assert_eq!(left.len(), 1, "{status:?}");
    assert_eq!(
        (
            left[0].name.as_str(),
            left[0].field.as_str(),
            left[0].code.as_deref(),
            left[0].serving.as_str()
        ),
        (
            "broken",
            "spec.http[0].match[0].uri.regex",
            Some("IST0106"),
            "previous"
        ),
        "{status:?}"
    );
    let line = 1 + bad.lines().position(|l| l.contains("regex:")).unwrap();
    let located = format!(
        "{}:{line}: Error [IST0106] VirtualService default/broken: spec.http[0].match[0].uri.regex: ",
        path.display()
    );
    let errors = check_errors(&env).await;
    assert!(
        errors.iter().any(|e| e.starts_with(&located)),
        "check names file, line and field ({located}): {errors:?}"
    );
    let last_error = status.last_error.clone().unwrap_or_default();
    for e in &errors {
        env.gw.wait_for_log_after(mark, e, WAIT).await;
        assert!(last_error.contains(e.as_str()), "{last_error}");
    }
    assert_eq!(
        metric_left_out(
            &env,
            "portcullis_config_resources_rejected{kind=\"VirtualService\"}"
        )
        .await,
        1
    );

    // Fixed: applied, nothing left out.
    let g = status.generation;
    env.config.write(
        "routes.yaml",
        &two_vs(
            "v3",
            HttpRoute::new().direct_response(DirectResponse::status(202)),
        ),
    );
    let status = env.wait_generation_after(g, APPLY).await;
    assert_eq!(status.last_result, "ok", "{status:?}");
    assert!(status.left_out.resources.is_empty(), "{status:?}");
    assert_eq!(get(env.port(), "broken.example.com", "/").await.status, 202);
    assert_eq!(
        metric_left_out(
            &env,
            "portcullis_config_resources_rejected{kind=\"VirtualService\"}"
        )
        .await,
        0
    );
}

/// A route to a subset no DestinationRule defines passes Istio's webhook (`istioctl analyze`
/// warns, IST0101) and answers 503 `NC` at request time, as Envoy answers a route whose
/// cluster does not exist (`router.cc`, `cluster_not_found`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_undefined_subset_is_served_and_answers_503_nc() {
    let b = Backend::http("subsetted").await;
    let host = svc(b.name());
    let dr =
        DestinationRule::new("subsetted", &host).subset(Subset::named("v1").label("version", "v1"));
    let se = ServiceEntry::new(b.name())
        .hosts(&[&host])
        .location("MESH_INTERNAL")
        .port(Port::http(80))
        .resolution("STATIC")
        .endpoint(
            Endpoint::address("127.0.0.1")
                .port("http", b.port())
                .label("version", "v1"),
        );
    let env = start(&[
        ("backend.yaml", render(&[&se, &dr])),
        (
            "routes.yaml",
            two_vs(
                "v1",
                HttpRoute::new().route(Destination::host(&host).subset("v9")),
            ),
        ),
    ])
    .await;
    let status = env.reload_status().await;
    assert_eq!(status.last_result, "ok", "warnings only: {status:?}");
    let r = get(env.port(), "broken.example.com", "/x").await;
    assert_eq!(r.status, 503, "{}", r.raw);
    assert!(serves(env.port(), "example.com", "v1").await);
    let (code, stdout, _) = run_check(env.config.path(), Some(env.certs.path())).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("Warning [IST0101] VirtualService default/broken: spec.http[0].route[0].destination.subset: subset `v9`"),
        "{stdout}"
    );

    // Defined: the same route now reaches the backend.
    let g = status.generation;
    env.config.write(
        "routes.yaml",
        &two_vs(
            "v1",
            HttpRoute::new().route(Destination::host(&host).subset("v1")),
        ),
    );
    env.wait_generation_after(g, APPLY).await;
    let r = get(env.port(), "broken.example.com", "/x").await;
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
    let dir = root.file("config");
    let gw_yaml = gateway_yaml(&[port]);
    k8s_volume_write(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_yaml("site", "*", "v1")),
        ],
    );
    let h = serve_inside(root, "config", port).await;
    assert!(serves(port, "example.com", "v1").await);
    let dump = h.config_dump().await;
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
    let g = h.generation().await;
    k8s_volume_swap(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_yaml("site", "*", "v2")),
        ],
    );
    eventually(APPLY, "v2 from the swapped volume", async || {
        serves(port, "example.com", "v2").await
    })
    .await;
    let status = h.reload_status().await;
    assert!(status.generation > g);
    assert_eq!(status.reloads_failed, 0, "{status:?}");
    assert!(status.last_error.is_none(), "{status:?}");

    // A key added to the ConfigMap, then removed again.
    k8s_volume_swap(
        &dir,
        &[
            ("gateway.yaml", &gw_yaml),
            ("vs.yaml", &direct_yaml("site", "*", "v2")),
            (
                "extra.yaml",
                &direct_yaml("extra", "extra.example.com", "extra"),
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
            ("vs.yaml", &direct_yaml("site", "*", "v3")),
        ],
    );
    eventually(APPLY, "v3 served and the removed key gone", async || {
        // extra.example.com falls back to the `*` VirtualService again.
        serves(port, "example.com", "v3").await && serves(port, "extra.example.com", "v3").await
    })
    .await;
    let status = h.reload_status().await;
    assert_eq!(status.reloads_failed, 0, "{status:?}");
    assert!(
        !h.gw.logs_contain("duplicate"),
        "no file was loaded twice:\n{}",
        h.gw.logs().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_directory_replaced_by_a_symlink_swap_is_followed() {
    // A release layout: --config is `current`, a symlink to a release directory that a deploy
    // replaces atomically (new directory, new symlink renamed over `current`).
    let port = free_port();
    let release = |root: &ConfigDir, n: &str, version: &str| {
        root.write(&format!("{n}/gateway.yaml"), &gateway_yaml(&[port]));
        root.write(&format!("{n}/vs.yaml"), &direct_yaml("site", "*", version));
    };
    let swap_to = |root: &ConfigDir, n: &str| {
        let tmp = root.file("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(root.file(n), &tmp).unwrap();
        std::fs::rename(&tmp, root.file("current")).unwrap();
    };
    let root = ConfigDir::new();
    release(&root, "r1", "v1");
    swap_to(&root, "r1");
    let h = serve_inside(root, "current", port).await;
    assert!(serves(port, "example.com", "v1").await);

    release(&h.config, "r2", "v2");
    swap_to(&h.config, "r2");
    eventually(APPLY, "the new release served", async || {
        serves(port, "example.com", "v2").await
    })
    .await;

    // Edits inside the new release are watched too.
    h.config
        .write("r2/vs.yaml", &direct_yaml("site", "*", "v2-edited"));
    eventually(APPLY, "an edit in the new release served", async || {
        serves(port, "example.com", "v2-edited").await
    })
    .await;
    assert_eq!(h.reload_status().await.reloads_failed, 0);
}

// ---------------------------------------------------------------------------------------------
// Debounce and signals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_makes_one_or_very_few_reloads() {
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v0"))]).await;
    let before = env.reload_status().await;
    let (ok0, failed0) = (before.reloads_ok, before.reloads_failed);

    for i in 1..=20 {
        env.config
            .write("vs.yaml", &direct_yaml("site", "*", &format!("v{i}")));
    }
    eventually(APPLY, "the last write served", async || {
        serves(env.port(), "example.com", "v20").await
    })
    .await;
    // Let any further (late) reload happen before counting.
    let mut after = env.reload_status().await;
    stays(Duration::from_secs(1), "no further reload", async || {
        let s = env.reload_status().await;
        let same = s.reloads_ok == after.reloads_ok;
        after = s;
        same
    })
    .await;
    let ok = after.reloads_ok - ok0;
    assert_eq!(after.reloads_failed, failed0, "{after:?}");
    assert!(
        (1..=3).contains(&ok),
        "20 writes in a burst made {ok} reloads (debounce expected one or very few)"
    );
    assert_eq!(metric_reloads(&env, "ok").await, after.reloads_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    let g = env.generation().await;
    let mark = env.gw.log_mark();
    env.gw.sighup();
    let status = env.wait_generation_after(g, APPLY).await;
    assert_eq!(status.generation, g + 1);
    let line = env
        .gw
        .wait_for_log_after(mark, &format!("generation {} in", g + 1), WAIT)
        .await;
    assert!(
        line.contains("reload ok (SIGHUP)") && line.contains("no resource changed"),
        "{line}"
    );
    assert!(serves(env.port(), "example.com", "v1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_false_a_change_waits_for_sighup() {
    let env = start_with(
        &[("vs.yaml", direct_yaml("site", "*", "v1"))],
        &["--watch", "false"],
    )
    .await;
    let g = env.generation().await;
    env.config.write("vs.yaml", &direct_yaml("site", "*", "v2"));
    env.config
        .write("new.yaml", &direct_yaml("new", "new.example.com", "new"));
    // Not applied in the time a watcher would have applied it.
    stays(APPLY, "the old config is served", async || {
        serves(env.port(), "example.com", "v1").await
            && serves(env.port(), "new.example.com", "v1").await
            && env.generation().await == g
    })
    .await;

    env.gw.sighup();
    let status = env.wait_generation_after(g, APPLY).await;
    assert_eq!(status.generation, g + 1);
    assert!(serves(env.port(), "example.com", "v2").await);
    assert!(serves(env.port(), "new.example.com", "new").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_follows_changes_without_file_notifications() {
    // The fallback for file systems without notifications (and for exhausted inotify limits).
    let env = start_with(
        &[("vs.yaml", direct_yaml("site", "*", "v1"))],
        &["--watch", "poll"],
    )
    .await;
    env.gw.wait_for_log("polling", WAIT).await;
    let g = env.generation().await;
    env.config.write("vs.yaml", &direct_yaml("site", "*", "v2"));
    // One poll interval (1 s) plus the debounce: well within the 10 s wait.
    let status = env.wait_generation_after(g, APPLY).await;
    assert!(
        reload_ok_line(&env, &status).await.contains("poll"),
        "the reload came from polling"
    );
    assert!(serves(env.port(), "example.com", "v2").await);
}

// ---------------------------------------------------------------------------------------------
// Listeners follow the config

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_port_added_by_a_reload_serves() {
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    let extra = free_port();
    assert!(TcpStream::connect(loopback(extra)).await.is_err());

    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port(), extra]));
    eventually(APPLY, "the new port serves", async || {
        serves(extra, "example.com", "v1").await
    })
    .await;
    assert!(serves(env.port(), "example.com", "v1").await);
    env.gw
        .wait_for_log(&format!("127.0.0.1:{extra}"), WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_port_stops_accepting_and_drains_its_in_flight_request() {
    let backend = Backend::http("slow").await;
    let keep = free_port();
    let env = start(&[
        ("backend.yaml", service_entry_yaml(&backend)),
        ("vs.yaml", proxy_vs("app", "*", &backend, "v1")),
    ])
    .await;
    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port(), keep]));
    eventually(
        APPLY,
        "both ports serve",
        async || matches!(try_get(keep, "x", "/ok").await, Ok(r) if r.status == 200),
    )
    .await;
    let removed = env.port();

    // A slow request in flight on the port about to be removed (keep-alive connection).
    let mut conn = TcpStream::connect(loopback(removed)).await.unwrap();
    let in_flight = tokio::spawn(async move {
        let resp = exchange(&mut conn, "x", "/delay/1500").await;
        (resp, conn)
    });
    backend.wait_for_requests(1, WAIT).await;

    let g = env.generation().await;
    env.config.write("gateway.yaml", &gateway_yaml(&[keep]));
    env.wait_generation_after(g, APPLY).await;

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
    let env = start_with(
        &[("vs.yaml", direct_yaml("site", "*", "v1"))],
        &["--drain-timeout", "120"],
    )
    .await;
    let mut idle = TcpStream::connect(loopback(env.port())).await.unwrap();
    let r = exchange(&mut idle, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);

    let g = env.generation().await;
    env.config.write("gateway.yaml", &gateway_yaml(&[keep]));
    env.wait_generation_after(g, APPLY).await;
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
    let env = start(&[
        (
            "backends.yaml",
            render(&[&service_entry(&old), &service_entry(&new)]),
        ),
        ("vs.yaml", proxy_vs("app", "*", &old, "v1")),
    ])
    .await;
    let port = env.port();
    let in_flight = tokio::spawn(async move { get(port, "x", "/delay/1500").await });
    old.wait_for_requests(1, WAIT).await;

    let g = env.generation().await;
    env.config
        .write("vs.yaml", &proxy_vs("app", "*", &new, "v2"));
    env.wait_generation_after(g, APPLY).await;
    let r = get(env.port(), "x", "/now").await;
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
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    let mut conn = TcpStream::connect(loopback(env.port())).await.unwrap();
    let local = conn.local_addr().unwrap();
    let r = exchange(&mut conn, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v1"), "{}", r.raw);

    // A route change.
    env.config.write("vs.yaml", &direct_yaml("site", "*", "v2"));
    eventually(APPLY, "v2 on new connections", async || {
        serves(env.port(), "example.com", "v2").await
    })
    .await;
    let r = exchange(&mut conn, "example.com", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v2"), "{}", r.raw);

    // A listener added elsewhere, and a forced reload.
    let g = env.generation().await;
    let other = free_port();
    env.config
        .write("gateway.yaml", &gateway_yaml(&[env.port(), other]));
    let status = env.wait_generation_after(g, APPLY).await;
    env.gw.sighup();
    env.wait_generation_after(status.generation, APPLY).await;
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
    let env = start(&[
        ("backend.yaml", service_entry_yaml(&b)),
        ("vs.yaml", proxy_vs("app", "*", &b, "v1")),
    ])
    .await;
    let first = get(env.port(), "x", "/one").await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let conn = serde_json::from_str::<Value>(&first.body).unwrap()["conn"].clone();

    // A route change that keeps the destination.
    env.config.write("vs.yaml", &proxy_vs("app", "*", &b, "v2"));
    eventually(APPLY, "v2 served", async || {
        matches!(try_get(env.port(), "x", "/two").await, Ok(r) if r.header("x-version") == Some("v2"))
    })
    .await;
    let r = get(env.port(), "x", "/three").await;
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
    Gateway::new("gw")
        .server(Server::https(port, ServerTls::simple(credential)))
        .yaml()
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
    let b = Harness::builder()
        .certs(certs)
        .port_as(port, port)
        .file("gateway.yaml", https_gateway_yaml(port, "site"));
    let env = launch(b, &[("vs.yaml", direct_yaml("site", "*", "v1"))], &[]).await;
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
    let env = start(&[("vs.yaml", direct_yaml("site", "*", "v1"))]).await;
    let taken = free_port();
    let squatter = std::net::TcpListener::bind(loopback(taken)).unwrap();
    let before = env.reload_status().await;
    let g = before.generation;

    // One file: a new port someone else holds, and a new VirtualService.
    env.config.write(
        "gateway.yaml",
        &render(&[
            &gateway_on(&[env.port(), taken]),
            &direct_vs("other", "other.example.com", "other"),
        ]),
    );
    let status = env.wait_failed_after(before.reloads_failed, APPLY).await;
    assert_eq!(status.generation, g);
    let err = status.last_error.as_deref().unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{taken}")), "{status:?}");
    assert!(
        serves(env.port(), "other.example.com", "v1").await,
        "nothing applied"
    );

    // Once the port is free, the next reload applies all of it.
    drop(squatter);
    env.gw.sighup();
    env.wait_generation_after(g, APPLY).await;
    assert!(serves(env.port(), "other.example.com", "other").await);
    assert!(serves(taken, "other.example.com", "other").await);
}

/// Gateway `gw` with one HTTP server on `port` bound to `bind`.
fn gateway_bound(port: u16, bind: &str) -> Gateway {
    Gateway::new("gw").server(Server::http(port).bind(bind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_bind_address_changed_on_the_same_port_is_applied() {
    let port = free_port();
    let b = Harness::builder()
        .port_as(port, port)
        .file("gateway.yaml", gateway_bound(port, "0.0.0.0").yaml());
    let env = launch(b, &[("vs.yaml", direct_yaml("site", "*", "v1"))], &[]).await;
    assert!(serves(port, "example.com", "v1").await);

    // Narrow the server to loopback, on the same port (and change a route with it).
    let g = env.generation().await;
    env.config.write(
        "gateway.yaml",
        &render(&[
            &gateway_bound(port, "127.0.0.1"),
            &direct_vs("other", "other.example.com", "other"),
        ]),
    );
    let status = env.wait_generation_after(g, APPLY).await;
    assert!(status.last_error.is_none(), "{status:?}");
    assert!(serves(port, "other.example.com", "other").await);
    let dump = env.config_dump().await;
    assert!(
        dump["listeners"].get(format!("127.0.0.1:{port}")).is_some(),
        "{}",
        dump["listeners"]
    );
}
