//! AuthorizationPolicy and RequestAuthentication on the real gateway, answered as Istio's
//! Envoy answers them: `authz` (RBAC: actions, sources, operations, conditions, which policies
//! apply, dry-run), `jwt` (RequestAuthentication: tokens made at test time with RSA and EC keys,
//! inline JWKS and a `jwksUri` served on loopback, Envoy's 401/403 replies, claims in policies
//! and routes), `custom` (CUSTOM with an HTTP ext_authz server).

mod authz;
mod custom;
mod jwt;

pub use crate::ingress::{all_to, IngressBuilder};
pub use crate::support::client::send;
pub use crate::support::security::*;
pub use crate::support::yaml::*;
pub use crate::support::*;
pub use serde_json::{json, Value};
pub use std::time::Duration;

/// The host every request names.
pub const HOST: &str = "shop.example.com";

/// The gateway (HTTP 80 for every host, all routes to backend `be`) with `docs` and `args`.
pub async fn gateway_with(docs: &[&dyn Resource], args: &[&str]) -> Harness {
    IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .resources("security.yaml", docs)
        .args(args)
        .start()
        .await
}

/// Status and body of `GET path` with extra request headers.
pub async fn get_with(h: &Harness, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = h.request(reqwest::Method::GET, HOST, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send(req).await;
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Status of `GET path` with `Authorization: Bearer token`.
pub async fn with_token(h: &Harness, path: &str, token: &str) -> (u16, String) {
    get_with(h, path, &[("authorization", &format!("Bearer {token}"))]).await
}
