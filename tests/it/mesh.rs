//! `--mesh`: Istio's MeshConfig (the `istio` ConfigMap's `mesh` key, as mounted) on a running
//! gateway: the access log settings (off, stdout, a file reopened after rotation, TEXT and
//! JSON, Envoy's format operators), a mesh-file edit taking effect, a broken mesh file keeping
//! the last good settings, `check --mesh`; the real client address (`numTrustedProxies`) and
//! PROXY protocol from real senders (HAProxy, curl) in `client_address`; `outbound`:
//! outboundTrafficPolicy; `tls`: PROXY protocol before TLS and the XFCC modes; `tracing`: spans
//! exported over OTLP or to Zipkin from the tracing provider the mesh file names.

mod access_log;
mod client_address;
mod outbound;
mod tls;
mod tracing;
mod tracing_envoy;

use std::time::Duration;

pub use crate::ingress::{
    access_line, all_to, echo, echoed_header, request_id, xff_list, IngressBuilder,
};
pub use crate::support::client::send;
pub use crate::support::*;

/// How soon a mesh-file change must be served ("about a second"; a polling deadline).
pub const APPLY: Duration = Duration::from_secs(3);
/// Deadline for a log line or a file to show up.
pub const WAIT: Duration = Duration::from_secs(10);

/// The mesh file of one test, in its own directory (as a ConfigMap volume would be).
pub struct MeshDir {
    pub dir: ConfigDir,
}

impl MeshDir {
    pub fn new(text: &str) -> MeshDir {
        let dir = ConfigDir::new();
        dir.write("mesh", text);
        MeshDir { dir }
    }

    pub fn path(&self) -> String {
        self.dir.file("mesh").to_string_lossy().into_owned()
    }

    /// Replaces the file atomically, as kubelet's volume update does.
    pub fn write(&self, text: &str) {
        self.dir.write("mesh", text);
    }
}

/// A gateway (one HTTP server for every host, backend `be` as the catch-all route named
/// `logged`) reading `mesh`.
pub async fn gateway_with_mesh(mesh: &MeshDir, extra: &[&str]) -> Harness {
    let path = mesh.path();
    let mut args = vec!["--mesh", path.as_str()];
    args.extend_from_slice(extra);
    IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be").name("logged")])
        .args(&args)
        .start()
        .await
}

/// `GET /p` with `user-agent: id` and `x-test-id: id` (and extra headers): the log line is
/// found by them (a client's `x-request-id` is replaced at the edge, as Envoy does); panics
/// unless 200.
pub async fn get_with_id(h: &Harness, id: &str, headers: &[(&str, &str)]) {
    let mut req = h
        .request(reqwest::Method::GET, "mesh.example.com", "/p")
        .header("user-agent", id)
        .header("x-test-id", id);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = send(req).await;
    assert_eq!(r.status(), 200);
}
