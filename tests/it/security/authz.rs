//! AuthorizationPolicy: Envoy's RBAC filter as Istio generates it (istio
//! `pilot/pkg/security/authz/builder/builder.go`, `model/{model,generator}.go`; envoy
//! `source/extensions/filters/http/rbac/rbac_filter.cc`: a denial is 403 `RBAC: access denied`).

use super::*;

fn policy(name: &str, action: &str, rules: Value) -> AuthorizationPolicy {
    AuthorizationPolicy::new(name)
        .with("action", action)
        .with("rules", rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_on_paths_and_methods_answers_403_rbac_access_denied() {
    // builder.go: DENY rules become an RBAC DENY filter; rbac_filter.cc answers 403.
    let deny = policy(
        "deny-admin",
        "DENY",
        json!([{"to": [{"operation": {"paths": ["/admin*"], "methods": ["POST"]}}]}]),
    );
    let h = gateway_with(&[&deny], &[]).await;
    let resp = send(h.request(reqwest::Method::POST, HOST, "/admin/x")).await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.text().await.unwrap(), "RBAC: access denied");
    assert_eq!(h.who(HOST, "/admin/x").await, "be", "GET is not denied");
    let resp = send(h.request(reqwest::Method::POST, HOST, "/public")).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_match_the_peer_address_and_allow_with_no_match_denies() {
    // model.go: ipBlocks → `direct_remote_ip`; an ALLOW filter denies what no policy matches.
    let allow_loopback = policy(
        "allow-lo",
        "ALLOW",
        json!([{"from": [{"source": {"ipBlocks": ["127.0.0.0/8"]}}], "to": [{"operation": {"paths": ["/lo"]}}]},
               {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}], "to": [{"operation": {"paths": ["/ten"]}}]},
               {"from": [{"source": {"notIpBlocks": ["127.0.0.1"]}}], "to": [{"operation": {"paths": ["/not-me"]}}]},
               {"from": [{"source": {"remoteIpBlocks": ["127.0.0.1/32"]}}], "to": [{"operation": {"paths": ["/remote"]}}]}]),
    );
    let h = gateway_with(&[&allow_loopback], &[]).await;
    assert_eq!(h.who(HOST, "/lo").await, "be");
    assert_eq!(h.who(HOST, "/remote").await, "be");
    assert_eq!(h.who(HOST, "/ten").await, "status 403");
    assert_eq!(h.who(HOST, "/not-me").await, "status 403");
    assert_eq!(h.who(HOST, "/other").await, "status 403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_spec_denies_everything_and_an_empty_rule_allows_everything() {
    // builder.go: a policy without rules is "match never", so an ALLOW `spec: {}` denies all;
    // `rules: [{}]` matches every request.
    let deny_all = AuthorizationPolicy::new("deny-all");
    let h = gateway_with(&[&deny_all], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "status 403");
    drop(h);
    let allow_all = AuthorizationPolicy::new("allow-all").with("rules", json!([{}]));
    let h = gateway_with(&[&deny_all, &allow_all], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "be");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_is_evaluated_before_allow() {
    // builder.go builds AUDIT, DENY, then ALLOW filters: a matching DENY wins.
    let allow_all = AuthorizationPolicy::new("allow-all").with("rules", json!([{}]));
    let deny = policy(
        "deny-x",
        "DENY",
        json!([{"to": [{"operation": {"paths": ["/x"]}}]}]),
    );
    let h = gateway_with(&[&allow_all, &deny], &[]).await;
    assert_eq!(h.who(HOST, "/x").await, "status 403");
    assert_eq!(h.who(HOST, "/y").await, "be");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_match_ignoring_case_and_a_bare_host_does_not_match_host_with_port() {
    // matcher/header.go HostMatcher: exact ignoring case on :authority; `host:*` is a prefix.
    let allow = policy(
        "hosts",
        "ALLOW",
        json!([{"to": [{"operation": {"hosts": ["SHOP.example.com", "api.example.com:*"]}}]}]),
    );
    let h = gateway_with(&[&allow], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "be");
    assert_eq!(h.who("shop.example.com:80", "/").await, "status 403");
    assert_eq!(h.who("api.example.com:8080", "/").await, "be");
    assert_eq!(h.who("api.example.com", "/").await, "status 403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_the_port_the_gateway_listens_on() {
    // model.go: ports → `destination_port`, the listener's port: after --port-map, as Istio
    // binds the Service's target port.
    let local = free_port();
    let allow = policy(
        "ports",
        "ALLOW",
        json!([{"to": [{"operation": {"ports": [local.to_string()]}}]}]),
    );
    let deny_80 = policy(
        "not-80",
        "DENY",
        json!([{"to": [{"operation": {"ports": ["80"]}}]}]),
    );
    let h = Harness::builder()
        .port_as(80, local)
        .backend(Backend::http("be").await)
        .resources(
            "all.yaml",
            &[
                &Gateway::new("ingress").server(Server::http(80)),
                &VirtualService::new("r")
                    .hosts(&["*"])
                    .gateways(&["ingress"])
                    .http(all_to("be")),
                &allow,
                &deny_80,
            ],
        )
        .start()
        .await;
    assert_eq!(h.who(HOST, "/").await, "be");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_conditions_on_headers_with_values_and_not_values() {
    // model.go: request.headers[...] → a header principal; notValues negated.
    let allow = policy(
        "headers",
        "ALLOW",
        json!([{"when": [{"key": "request.headers[x-team]", "values": ["blue*"], "notValues": ["blue-banned"]}]}]),
    );
    let h = gateway_with(&[&allow], &[]).await;
    assert_eq!(get_with(&h, "/", &[("x-team", "blue-1")]).await.0, 200);
    assert_eq!(get_with(&h, "/", &[("x-team", "blue-banned")]).await.0, 403);
    assert_eq!(get_with(&h, "/", &[]).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_templates_match_one_or_many_segments() {
    // matcher/template.go: {*} one segment, {**} any number (envoy uri_template).
    let allow = policy(
        "templates",
        "ALLOW",
        json!([{"to": [{"operation": {"paths": ["/api/{*}/info", "/files/{**}"]}}]}]),
    );
    let h = gateway_with(&[&allow], &[]).await;
    assert_eq!(h.who(HOST, "/api/v1/info").await, "be");
    assert_eq!(h.who(HOST, "/api/v1/x/info").await, "status 403");
    assert_eq!(h.who(HOST, "/files/a/b/c").await, "be");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_never_match_without_a_client_certificate() {
    // generator.go: principals/namespaces match the peer certificate (Envoy `authenticated`):
    // a plain-HTTP client has none.
    let allow = policy(
        "mtls",
        "ALLOW",
        json!([{"from": [{"source": {"principals": ["*"]}}]}, {"from": [{"source": {"namespaces": ["foo"]}}]}]),
    );
    let h = gateway_with(&[&allow], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "status 403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_policies_only_log_and_audit_never_denies() {
    // builder.go: `istio.io/dry-run: "true"` puts a policy in shadow rules; AUDIT is RBAC LOG.
    let deny = AuthorizationPolicy::new("deny-dry")
        .annotation("istio.io/dry-run", "true")
        .with("action", "DENY")
        .with("rules", json!([{}]));
    let audit = policy("audit", "AUDIT", json!([{}]));
    let h = gateway_with(&[&deny, &audit], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "be");
    h.gw.wait_for_log("dry-run: policy matched", Duration::from_secs(10))
        .await;
    h.gw.wait_for_log("audit: policy matched", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_apply_from_the_root_namespace_and_the_gateway_namespace_by_selector() {
    // authorization.go: root namespace and the workload's namespace; policyattachment.go:
    // a selector must match the gateway's labels, a targetRef never applies to a gateway
    // without the Gateway API name label.
    let other_ns = AuthorizationPolicy::new("elsewhere").namespace("shop");
    let not_selected = AuthorizationPolicy::new("other-gw").with(
        "selector",
        json!({"matchLabels": {"istio": "egressgateway"}}),
    );
    let target_ref = AuthorizationPolicy::new("targeted").with(
        "targetRef",
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "x"}),
    );
    let h = gateway_with(&[&other_ns, &not_selected, &target_ref], &[]).await;
    assert_eq!(h.who(HOST, "/").await, "be", "none of them applies");
    drop(h);
    let own_ns = AuthorizationPolicy::new("own").namespace("edge");
    let h = gateway_with(&[&own_ns], &["--namespace", "edge"]).await;
    assert_eq!(
        h.who(HOST, "/").await,
        "status 403",
        "a policy in the gateway's namespace applies"
    );
    drop(h);
    let h = gateway_with(&[&own_ns], &["--root-namespace", "edge"]).await;
    assert_eq!(
        h.who(HOST, "/").await,
        "status 403",
        "a policy in the root namespace applies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_istio_rejects_and_what_cannot_be_enforced() {
    // validation.go ValidateAuthorizationPolicy; an Envoy-filter metadata key has no meaning
    // here and is an error, never a silent allow.
    let config = ConfigDir::new();
    let bad = policy(
        "bad",
        "ALLOW",
        json!([{"when": [{"key": "source.color", "values": ["x"]}, {"key": "experimental.envoy.filters.a[b]", "values": ["y"]}]}]),
    );
    config.write("bad.yaml", &render(&[&bad]));
    let (code, out, err) = crate::support::cli::run_check(config.path(), None).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("AuthorizationPolicy istio-system/bad: spec.rules[0].when[0].values: invalid `value` for `key` source.color: unknown attribute: source.color"), "{out}");
    assert!(
        out.contains("experimental.envoy.filters.a[b]` reads metadata of an Envoy filter"),
        "{out}"
    );
}
