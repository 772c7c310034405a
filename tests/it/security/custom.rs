//! CUSTOM AuthorizationPolicy with an HTTP ext_authz provider (istio
//! `pilot/pkg/security/authz/builder/extauthz.go`; envoy
//! `filters/common/ext_authz/ext_authz_http_impl.cc`, `filters/http/ext_authz/ext_authz.cc`).

use super::*;

fn custom(provider: &str, paths: &[&str]) -> AuthorizationPolicy {
    AuthorizationPolicy::new("ext")
        .with("action", "CUSTOM")
        .with("provider", json!({"name": provider}))
        .with("rules", json!([{"to": [{"operation": {"paths": paths}}]}]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authz_server_allows_with_headers_and_denies_with_its_own_answer() {
    let authz = AuthzServer::start().await;
    let provider = format!(
        "authz=http://{}/check;headersToUpstreamOnAllow=x-user;headersToDownstreamOnAllow=x-authz-said;includeRequestHeadersInCheck=x-ask",
        authz.addr
    );
    let h = gateway_with(
        &[&custom("authz", &["/guarded*", "/deny*"])],
        &["--ext-authz-provider", &provider],
    )
    .await;

    // Allowed: x-user goes upstream, x-authz-said to the client.
    let resp = send(
        h.request(reqwest::Method::GET, HOST, "/guarded?q=1")
            .header("x-ask", "1")
            .header("x-other", "2"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-authz-said"], "yes");
    assert_eq!(
        h.backend("be").last_request().unwrap().header("x-user"),
        Some("alice")
    );
    let check = authz.checks().pop().unwrap();
    assert_eq!(
        (check.method.as_str(), check.path.as_str()),
        ("GET", "/check/guarded?q=1")
    );
    let names: Vec<&str> = check.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.contains(&"x-ask") && !names.contains(&"x-other"),
        "{names:?}"
    );

    // Denied: the server's status, body and headers.
    let resp = h.get(HOST, "/deny/x").await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.headers()["x-authz-reason"], "policy");
    assert_eq!(resp.text().await.unwrap(), "denied by authz");

    // Not matched by the CUSTOM rules: no check.
    let before = authz.checks().len();
    assert_eq!(h.who(HOST, "/open").await, "be");
    assert_eq!(authz.checks().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authz_error_denies_with_status_on_error_unless_fail_open() {
    // ext_authz_http_impl.cc: a 5xx or a failed call is an error; ext_authz.cc answers
    // status_on_error (403) or lets the request through with failure_mode_allow (failOpen).
    let authz = AuthzServer::start().await;
    let closed = format!("authz=http://{}", authz.addr);
    let h = gateway_with(
        &[&custom("authz", &["/fail*"])],
        &["--ext-authz-provider", &closed],
    )
    .await;
    assert_eq!(h.who(HOST, "/fail").await, "status 403");
    drop(h);
    let down = format!("authz=http://127.0.0.1:{};failOpen=true", free_port());
    let h = gateway_with(
        &[&custom("authz", &["/x*"])],
        &["--ext-authz-provider", &down],
    )
    .await;
    assert_eq!(h.who(HOST, "/x").await, "be", "failOpen");
    drop(h);
    let down = format!("authz=http://127.0.0.1:{};statusOnError=503", free_port());
    let h = gateway_with(
        &[&custom("authz", &["/x*"])],
        &["--ext-authz-provider", &down],
    )
    .await;
    assert_eq!(h.who(HOST, "/x").await, "status 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_provider_denies_what_its_rules_match() {
    // builder.go getBadCustomDenyRules: a provider that is not configured denies its matches.
    let h = gateway_with(&[&custom("missing", &["/guarded"])], &[]).await;
    assert_eq!(h.who(HOST, "/guarded").await, "status 403");
    assert_eq!(h.who(HOST, "/open").await, "be");
}

/// The provider comes from the mesh config's `extensionProviders` (`envoyExtAuthzHttp`, as
/// Istio's `extensionProviders` feed `pilot/pkg/security/authz/builder/extauthz.go`), and a
/// policy in the mesh file's `rootNamespace` applies to this gateway (`policyattachment.go`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_configs_ext_authz_provider_and_root_namespace_are_used() {
    let authz = AuthzServer::start().await;
    let (host, port) = authz
        .addr
        .to_string()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let mesh_dir = ConfigDir::new();
    mesh_dir.write(
        "mesh",
        &format!(
            "rootNamespace: security-root\nextensionProviders:\n- name: mesh-authz\n  envoyExtAuthzHttp:\n    service: \"{host}\"\n    port: {port}\n    pathPrefix: /check\n"
        ),
    );
    let mesh = mesh_dir.path().join("mesh");
    let policy = custom("mesh-authz", &["/deny*"]).namespace("security-root");
    let h = gateway_with(&[&policy], &["--mesh", mesh.to_str().unwrap()]).await;

    let resp = h.get(HOST, "/deny/x").await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.text().await.unwrap(), "denied by authz");
    assert_eq!(authz.checks().pop().unwrap().path, "/check/deny/x");
    assert_eq!(h.who(HOST, "/open").await, "be");
}
