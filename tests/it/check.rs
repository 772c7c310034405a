//! `portcullis check` on par with `istioctl analyze` (istio/istio
//! `istioctl/pkg/analyze/analyze.go`, `istioctl/pkg/util/formatting/formatter.go`,
//! `pkg/config/analysis/diag/message.go`): an IST code and istioctl's severity word on each
//! message (webhook rejections are `Error [IST0106]`, analyzer findings warn with their own
//! code), `-o json|yaml` in istioctl's shape, files and `-` (standard input) as well as
//! directories, `--suppress CODE=Kind name` with `*`, `--failure-threshold` (default Error) and
//! `--output-threshold`; a type error does not hide the other problems of its document.

use serde_json::Value;

use crate::support::cli::{run_cli, run_cli_with_stdin};
use crate::support::yaml::*;
use crate::support::*;

/// A Gateway, a VirtualService the webhook rejects (a regex that does not compile) and one
/// naming a Gateway that does not exist (IST0101, a warning).
fn config() -> String {
    let gw = Gateway::new("gw").server(Server::http(80).hosts(&["*"]));
    let bad = VirtualService::new("bad")
        .hosts(&["bad.example.com"])
        .gateways(&["gw"])
        .http(
            HttpRoute::new()
                .when(Match::new().uri(regex("/(unclosed")))
                .direct_response(DirectResponse::status(204)),
        );
    let dangling = VirtualService::new("dangling")
        .hosts(&["d.example.com"])
        .gateways(&["nowhere"])
        .http(HttpRoute::new().direct_response(DirectResponse::status(200)));
    render(&[&gw, &bad, &dangling])
}

fn line_of(text: &str, needle: &str) -> usize {
    1 + text.lines().position(|l| l.contains(needle)).unwrap()
}

async fn check(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    run_cli(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_istioctl_levels_and_codes_and_exits_1_on_an_error() {
    let text = config();
    let cfg = ConfigDir::with_files(&[("site.yaml", &text)]);
    let (code, stdout, stderr) = check(&["--config", cfg.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let file = cfg.file("site.yaml");
    let regex_line = line_of(&text, "regex:");
    let gw_line = line_of(&text, "- nowhere");
    assert!(
        stdout.contains(&format!(
            "{}:{regex_line}: Error [IST0106] VirtualService default/bad: spec.http[0].match[0].uri.regex: regex `/(unclosed` does not compile",
            file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}:{gw_line}: Warning [IST0101] VirtualService default/dangling: spec.gateways[0]: gateway default/nowhere does not exist",
            file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 resources in 1 files; 1 error(s), 1 warning(s), 0 info(s)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_output_json_and_yaml_have_istioctls_shape() {
    let cfg = ConfigDir::with_files(&[("site.yaml", &config())]);
    let dir = cfg.path().to_str().unwrap();
    let (code, stdout, _) = check(&["-o", "json", dir]).await;
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let messages = json.as_array().unwrap();
    assert_eq!(messages.len(), 2, "{stdout}");
    let error = &messages[0];
    assert_eq!(error["code"], "IST0106");
    assert_eq!(error["level"], "Error");
    assert_eq!(error["origin"], "VirtualService default/bad");
    assert_eq!(error["field"], "spec.http[0].match[0].uri.regex");
    assert!(error["reference"]
        .as_str()
        .unwrap()
        .ends_with(&format!("site.yaml:{}", line_of(&config(), "regex:"))));
    assert_eq!(
        error["documentationUrl"],
        "https://istio.io/latest/docs/reference/config/analysis/ist0106/?ref=istioctl-analyze"
    );
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("regex `/(unclosed`"));
    assert_eq!(messages[1]["level"], "Warning");
    assert_eq!(messages[1]["code"], "IST0101");

    let (code, stdout, _) = check(&["--output", "yaml", dir]).await;
    assert_eq!(code, 1);
    let yaml: Value = serde_yaml::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(yaml, json, "the same messages as YAML");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_files_and_standard_input() {
    let text = config();
    let cfg = ConfigDir::with_files(&[("site.yaml", &text)]);
    let file = cfg.file("site.yaml");
    let (code, stdout, _) = check(&[file.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(stdout.contains(&format!("{}:", file.display())), "{stdout}");

    let (code, stdout, stderr) = run_cli_with_stdin(&["check", "-"], &text).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "-:{}: Error [IST0106] VirtualService default/bad",
            line_of(&text, "regex:")
        )),
        "{stdout}"
    );
    assert!(stdout.contains("-: 3 resources in 1 files"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_suppress_hides_a_code_for_matching_resources() {
    let cfg = ConfigDir::with_files(&[("site.yaml", &config())]);
    let dir = cfg.path().to_str().unwrap();
    for pattern in [
        "IST0101=VirtualService dangling.default",
        "IST0101=VirtualService default/dangling",
        "IST0101=VirtualService *.default",
        "IST0101=*",
    ] {
        let (_, stdout, stderr) = check(&["-S", pattern, dir]).await;
        assert!(!stdout.contains("IST0101"), "{pattern}: {stdout}");
        assert!(
            stdout.contains("IST0106"),
            "{pattern}: only that code: {stdout}"
        );
        assert!(stderr.is_empty(), "{stderr}");
    }
    let (_, stdout, _) = check(&["--suppress", "IST0101=VirtualService *.prod", dir]).await;
    assert!(stdout.contains("IST0101"), "another namespace: {stdout}");

    // istioctl's warning for a code it does not know, and a usage error for a bad value.
    let (_, _, stderr) = check(&["-S", "IST9999=VirtualService *", dir]).await;
    assert!(
        stderr.contains("Supplied message code 'IST9999' is an unknown message code"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["-S", "IST0101", dir]).await;
    assert_eq!(code, 2, "{stderr}");

    // The resource's own `galley.istio.io/analyze-suppress` annotation.
    let annotated = config().replace(
        "name: dangling",
        "name: dangling\n  annotations: {galley.istio.io/analyze-suppress: IST0101}",
    );
    let cfg = ConfigDir::with_files(&[("site.yaml", &annotated)]);
    let (_, stdout, _) = check(&[cfg.path().to_str().unwrap()]).await;
    assert!(!stdout.contains("IST0101"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_failure_and_output_thresholds_follow_istioctl() {
    let text = config();
    // Warnings only (the rejected VirtualService removed).
    let warnings = text
        .split("---\n")
        .filter(|d| !d.contains("name: bad"))
        .collect::<Vec<_>>()
        .join("---\n");
    let cfg = ConfigDir::with_files(&[("site.yaml", &warnings)]);
    let dir = cfg.path().to_str().unwrap();
    let (code, stdout, _) = check(&[dir]).await;
    assert_eq!(code, 0, "istioctl's default threshold is Error: {stdout}");
    let (code, _, _) = check(&["--failure-threshold", "Warning", dir]).await;
    assert_eq!(code, 1);
    let (code, _, _) = check(&["--failure-threshold", "info", dir]).await;
    assert_eq!(code, 1);
    let (code, stdout, _) = check(&["--output-threshold", "Error", dir]).await;
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("IST0101"),
        "below the output threshold: {stdout}"
    );
    let (code, _, stderr) = check(&["--failure-threshold", "Fatal", dir]).await;
    assert_eq!(code, 2, "{stderr}");
}

/// serde stops at the first field of the wrong type; `check` takes that field out and parses
/// the rest, so the document's other problems are reported too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_error_does_not_hide_the_other_problems_of_its_document() {
    let vs = VirtualService::new("typed")
        .hosts(&["t.example.com"])
        .gateways(&["gw"])
        .http(
            HttpRoute::new()
                .with("timeout", 10)
                .route(Destination::host("svc.example.com").weight(0))
                .route(Destination::host("svc.example.com").weight(0)),
        );
    let cfg = ConfigDir::with_files(&[("vs.yaml", &vs.yaml())]);
    let (code, stdout, _) = check(&[cfg.path().to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains(
            "Error [IST0106] VirtualService default/typed: spec.http[0].timeout: `10` has no unit"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Error [IST0106] VirtualService default/typed: spec.http[0].route: total destination weight = 0"),
        "the rest of the document is validated: {stdout}"
    );
}

/// Istio kinds this gateway does not apply (`config/validate/unapplied.rs`): a warning naming
/// what is not applied, for a PeerAuthentication too (Istio applies it to sidecars' inbound
/// listeners, `pilot/pkg/networking/core/listener_inbound.go`, never to a gateway's servers); an
/// enforced kind (RequestAuthentication, AuthorizationPolicy: `compile::security`) passes; a
/// policy for other workloads gets nothing (istio/istio `pilot/pkg/model/policyattachment.go`:
/// root namespace or the gateway's, selector labels the gateway carries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_istio_kinds_this_gateway_does_not_apply() {
    let gw = Gateway::new("gw")
        .with("selector", serde_json::json!({"istio": "ingressgateway"}))
        .server(Server::http(80).hosts(&["*"]));
    let kinds = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules: [{issuer: https://issuer.example.com, jwksUri: https://issuer.example.com/jwks.json}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  mtls: {mode: STRICT}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: shop}
spec:
  action: DENY
  rules: [{}]
";
    let cfg = ConfigDir::with_files(&[("gw.yaml", &gw.yaml()), ("policies.yaml", kinds)]);
    let (code, stdout, _) = check(&[cfg.path().to_str().unwrap()]).await;
    assert_eq!(code, 0, "warnings only: {stdout}");
    assert!(
        stdout.contains("Warning PeerAuthentication istio-system/strict: spec: PeerAuthentication (in the root namespace, its selector matches the gateway's labels) selects this gateway, but it is not applied"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("istio-system/jwt") && !stdout.contains("istio-system/deny-admin"),
        "an enforced kind is not reported: {stdout}"
    );
    assert!(
        stdout.contains("Warning Telemetry istio-system/mesh-default: spec: Telemetry (in the root namespace, without a selector) selects this gateway, but its access logging"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("shop/reviews"),
        "another namespace's policy: {stdout}"
    );
}
