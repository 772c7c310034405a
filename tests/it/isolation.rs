//! Isolation instead of all-or-nothing at start-up: what Istio's admission webhook would reject
//! (`pkg/config/validation`) is left out with an error and everything else is served, as in a
//! cluster where `kubectl apply` of that one resource failed; `run --strict` keeps the old
//! all-or-nothing; a security policy with an error refuses the configuration (fail closed)
//! while kinds Portcullis does not apply are named in a warning.

use std::time::Duration;

use crate::support::yaml::*;
use crate::support::*;

const EXIT: Duration = Duration::from_secs(30);

fn gateway() -> Gateway {
    Gateway::new("gw").server(Server::http(80).hosts(&["*"]))
}

fn direct(name: &str, host: &str, body: &str) -> VirtualService {
    VirtualService::new(name)
        .hosts(&[host])
        .gateways(&["gw"])
        .http(HttpRoute::new().direct_response(DirectResponse::status(200).body(body)))
}

/// A VirtualService the webhook rejects: its regex does not compile.
fn rejected(name: &str, host: &str) -> VirtualService {
    VirtualService::new(name)
        .hosts(&[host])
        .gateways(&["gw"])
        .http(
            HttpRoute::new()
                .when(Match::new().uri(regex("/(unclosed")))
                .direct_response(DirectResponse::status(204)),
        )
}

/// `good.yaml`: Gateway and a served VirtualService; `bad.yaml`: a rejected VirtualService and
/// a document that is not valid YAML.
fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "good.yaml",
            render(&[&gateway(), &direct("good", "good.example.com", "good")]),
        ),
        (
            "bad.yaml",
            format!(
                "{}---\nkind: VirtualService\nmetadata: [\n",
                rejected("bad", "bad.example.com").yaml()
            ),
        ),
    ]
}

fn builder(files: &[(&'static str, String)]) -> HarnessBuilder {
    files.iter().fold(Harness::builder().port(80), |b, (n, t)| {
        b.file(n, t.as_str())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_serves_what_is_valid_and_reports_what_is_left_out() {
    let h = builder(&files()).start().await;
    let r = h.get("good.example.com", "/").await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "good");
    // The rejected VirtualService is not served: its host has no route.
    assert_eq!(h.get("bad.example.com", "/").await.status().as_u16(), 404);

    let status = h.reload_status().await;
    assert_eq!(
        (status.generation, status.last_result.as_str()),
        (1, "partial")
    );
    let kinds: Vec<(&str, &str, &str)> = status
        .left_out
        .resources
        .iter()
        .map(|r| (r.kind.as_str(), r.name.as_str(), r.serving.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("VirtualService", "bad", "none"), ("Document", "", "none")],
        "{status:?}"
    );
    assert_eq!(
        status.left_out.resources[0].field,
        "spec.http[0].match[0].uri.regex"
    );
    let bad = h.config.file("bad.yaml");
    let line = 1 + files()[1]
        .1
        .lines()
        .position(|l| l.contains("regex:"))
        .unwrap();
    let last_error = status.last_error.unwrap_or_default();
    assert!(
        last_error.contains(&format!(
            "{}:{line}: Error [IST0106] VirtualService default/bad: spec.http[0].match[0].uri.regex: regex `/(unclosed` does not compile",
            bad.display()
        )),
        "{last_error}"
    );
    assert!(last_error.contains("Error invalid YAML"), "{last_error}");
    for (sample, n) in [
        (
            "portcullis_config_resources_rejected{kind=\"VirtualService\"}",
            1.0,
        ),
        (
            "portcullis_config_resources_rejected{kind=\"Document\"}",
            1.0,
        ),
        (
            "portcullis_config_resources_rejected{kind=\"Gateway\"}",
            0.0,
        ),
    ] {
        assert_eq!(h.metric(sample).await, n, "{sample}");
    }
    assert!(
        h.gw.logs_contain("ERROR") && h.gw.logs_contain("VirtualService default/bad"),
        "{:#?}",
        h.gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_start_up_on_any_error() {
    let mut h = builder(&files())
        .args(&["--strict"])
        .expect_exit()
        .start()
        .await;
    let status = h.gw.wait_exit(EXIT).await;
    assert!(!status.success(), "run --strict must not start");
    assert!(
        h.gw.logs_contain("VirtualService default/bad: spec.http[0].match[0].uri.regex"),
        "{:#?}",
        h.gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_a_reload_with_any_error_and_keeps_serving() {
    let good = vec![(
        "good.yaml",
        render(&[&gateway(), &direct("good", "good.example.com", "v1")]),
    )];
    let h = builder(&good).args(&["--strict"]).start().await;
    let before = h.reload_status().await;
    h.config.write(
        "good.yaml",
        &render(&[
            &gateway(),
            &direct("good", "good.example.com", "v2"),
            &rejected("bad", "bad.example.com"),
        ]),
    );
    let status = h
        .wait_failed_after(before.reloads_failed, Duration::from_secs(5))
        .await;
    assert_eq!(status.last_result, "error");
    assert_eq!(status.generation, before.generation);
    let r = h.get("good.example.com", "/").await;
    assert_eq!(
        r.text().await.unwrap(),
        "v1",
        "nothing of the change applies"
    );
}

fn authorization_policy(selector: &str, rules: serde_json::Value) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: edge-policy, namespace: istio-system}}\nspec:\n  selector: {{matchLabels: {{istio: {selector}}}}}\n  action: DENY\n  rules: {rules}\n"
    )
}

/// An AuthorizationPolicy selecting this gateway is enforced (`compile::security`, as Istio's
/// Envoy RBAC filter at the gateway: `pilot/pkg/security/authz/builder`), so it is not refused:
/// the configuration starts with it and the policy denies what it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_policy_selecting_the_gateway_is_enforced() {
    let policy = authorization_policy(
        "ingressgateway",
        serde_json::json!([{"to": [{"operation": {"paths": ["/admin"]}}]}]),
    );
    let mut f = files();
    f.truncate(1);
    f.push(("policy.yaml", policy));
    let h = builder(&f).start().await;
    assert_eq!(h.get("good.example.com", "/").await.status().as_u16(), 200);
    assert_eq!(
        h.get("good.example.com", "/admin").await.status().as_u16(),
        403
    );
    let status = h.reload_status().await;
    assert_eq!(status.last_result, "ok", "{:#?}", h.gw.logs());
}

/// A security policy with an error is not left out (serving without it would expose what it
/// protects): the configuration is refused (fail closed). Istio's webhook
/// (`pkg/config/validation/validation.go` `ValidateAuthorizationPolicy`): "DENY action without
/// `rules` is meaningless".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_policy_with_an_error_refuses_to_start() {
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: edge-policy, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n";
    let mut f = files();
    f.truncate(1);
    f.push(("policy.yaml", policy.to_string()));
    let mut h = builder(&f).expect_exit().start().await;
    let status = h.gw.wait_exit(EXIT).await;
    assert!(
        !status.success(),
        "a policy with an error must stop start-up"
    );
    assert!(
        h.gw.logs_contain("AuthorizationPolicy istio-system/edge-policy: spec.rules: DENY action without `rules` is meaningless"),
        "{:#?}",
        h.gw.logs()
    );
}

/// A policy for other workloads is not this gateway's business (silent); kinds this gateway
/// does not apply get a warning naming what is not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_not_applied_are_named_and_other_workloads_policies_stay_silent() {
    let mut f = files();
    f.truncate(1);
    f.push((
        "other-workloads.yaml",
        authorization_policy("egressgateway", serde_json::json!([{}])),
    ));
    f.push((
        "envoyfilter.yaml",
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua, namespace: istio-system}\nspec:\n  workloadSelector: {labels: {istio: ingressgateway}}\n  configPatches: []\n".into(),
    ));
    let h = builder(&f).start().await;
    assert_eq!(h.get("good.example.com", "/").await.status().as_u16(), 200);
    h.gw.wait_for_log(
        "Warning EnvoyFilter istio-system/lua: spec: EnvoyFilter (in the root namespace, its selector matches the gateway's labels) selects this gateway, but its Envoy configuration patches are not applied",
        Duration::from_secs(5),
    )
    .await;
    assert!(!h.gw.logs_contain("edge-policy"), "{:#?}", h.gw.logs());
}
