//! Istio kinds Portcullis does not apply, when they select this gateway: never silently
//! ignored. [`UNAPPLIED`] is the one table of the kinds covered; a kind leaves it when it is
//! enforced.
//!
//! - A security policy that would restrict traffic through the gateway (an AuthorizationPolicy
//!   that denies, allows only some requests or asks an external authorizer; a
//!   RequestAuthentication that rejects invalid tokens) is an error that refuses the whole
//!   configuration, even without `--strict`: Portcullis fails closed rather than serve what the
//!   policy was written to protect. Start-up stops; a reload keeps the generation being served
//!   (which has no such policy).
//! - A policy that restricts nothing (AUDIT, `istio.io/dry-run`, ALLOW with an allow-all rule,
//!   a PeerAuthentication, which Istio applies to sidecars' inbound traffic and not to a
//!   gateway's servers) and the other kinds in the table get a warning naming what is not
//!   applied.
//!
//! Which policies select a gateway follows Istio (`pilot/pkg/model/policyattachment.go`,
//! `authorization.go`): a policy in the root namespace or in the gateway's own namespace, with
//! no selector or a selector whose labels the gateway carries; a policy with `targetRef(s)`
//! attaches to Kubernetes Gateway API gateways and waypoints, never to an Istio gateway
//! deployment. Kinds outside the table stay silent.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::Target;
use crate::config::diag::Diagnostic;
use crate::config::load::{Foreign, Resources};

/// Istio's default `rootNamespace` (meshConfig): policies there apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The namespace an Istio gateway deployment runs in by default; its own policies live there.
pub const GATEWAY_NAMESPACE: &str = "istio-system";

/// Where a kind's workload selector is written.
#[derive(Debug, Clone, Copy)]
enum Selector {
    /// `spec.selector.matchLabels` (security, telemetry, extensions, ProxyConfig).
    MatchLabels,
    /// `spec.workloadSelector.labels` (EnvoyFilter, Sidecar).
    WorkloadSelector,
}

/// What a selected object of the kind means for this gateway.
#[derive(Debug, Clone, Copy)]
enum Effect {
    /// A security policy: an error when it would restrict traffic (the function says how),
    /// else a warning.
    Policy(fn(&Foreign) -> Restriction),
    /// Not applied: a warning naming what is not.
    Ignored(&'static str),
}

/// Whether a security policy would restrict traffic, and how (for the message).
enum Restriction {
    Restricts(String),
    Inert(String),
}

struct Unapplied {
    group: &'static str,
    kind: &'static str,
    selector: Selector,
    effect: Effect,
}

/// Every kind this module covers.
const UNAPPLIED: &[Unapplied] = &[
    Unapplied {
        group: "security.istio.io",
        kind: "AuthorizationPolicy",
        selector: Selector::MatchLabels,
        effect: Effect::Policy(authorization_policy),
    },
    Unapplied {
        group: "security.istio.io",
        kind: "RequestAuthentication",
        selector: Selector::MatchLabels,
        effect: Effect::Policy(request_authentication),
    },
    Unapplied {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        selector: Selector::MatchLabels,
        effect: Effect::Policy(peer_authentication),
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        selector: Selector::WorkloadSelector,
        effect: Effect::Ignored(
            "its Envoy configuration patches are not applied (Portcullis is not Envoy)",
        ),
    },
    Unapplied {
        group: "telemetry.istio.io",
        kind: "Telemetry",
        selector: Selector::MatchLabels,
        effect: Effect::Ignored(
            "its access logging, metrics and tracing settings are not applied (Portcullis writes its own access log and Istio's standard metrics)",
        ),
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "Sidecar",
        selector: Selector::WorkloadSelector,
        effect: Effect::Ignored(
            "it is not applied: a Sidecar scopes sidecar proxies, and Istio does not apply it to gateways either",
        ),
    },
    Unapplied {
        group: "extensions.istio.io",
        kind: "WasmPlugin",
        selector: Selector::MatchLabels,
        effect: Effect::Ignored("its Wasm plugin is not run"),
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "ProxyConfig",
        selector: Selector::MatchLabels,
        effect: Effect::Ignored(
            "its proxy settings (concurrency, environment, image) are not applied",
        ),
    },
];

/// Reports every object of a kind in [`UNAPPLIED`] that selects the gateway of `target`.
pub fn check(resources: &Resources, target: Target<'_>, out: &mut Vec<Diagnostic>) {
    // `check` serves every Gateway: a selector selects "a gateway" when some Gateway's
    // selector (the labels its gateway pods carry) has all its labels.
    let gateway_labels: Vec<&BTreeMap<String, String>> = match target {
        Target::Instance(labels) => vec![labels],
        Target::AnyGateway => resources
            .gateways
            .iter()
            .map(|g| &g.spec.selector)
            .collect(),
    };
    for obj in &resources.others {
        let Some(entry) = UNAPPLIED
            .iter()
            .find(|u| u.group == obj.group && u.kind == obj.kind)
        else {
            continue;
        };
        let Some(why) = selects(obj, entry.selector, &gateway_labels) else {
            continue;
        };
        let mut r = obj.reporter(out);
        match entry.effect {
            Effect::Policy(restriction) => match restriction(obj) {
                Restriction::Restricts(how) => r.error_config(
                    "spec",
                    format!(
                        "{} ({why}) would restrict traffic through this gateway ({how}), and Portcullis does not enforce {} policies yet: the configuration is refused rather than served without the policy (fail closed; expected no {} selecting this gateway until it is enforced, or a selector that does not match it)",
                        obj.kind, obj.kind, obj.kind
                    ),
                ),
                Restriction::Inert(what) => r.note(
                    "spec",
                    format!("{} ({why}) is not applied: {what}", obj.kind),
                ),
            },
            Effect::Ignored(what) => r.note(
                "spec",
                format!("{} ({why}) selects this gateway, but {what}", obj.kind),
            ),
        }
    }
}

/// Why `obj` selects the gateway (for the message), or None when it does not.
fn selects(
    obj: &Foreign,
    selector: Selector,
    gateways: &[&BTreeMap<String, String>],
) -> Option<String> {
    let spec = &obj.spec;
    let target_refs = spec.get("targetRef").is_some_and(|v| !v.is_null())
        || spec
            .get("targetRefs")
            .and_then(Value::as_sequence)
            .is_some_and(|s| !s.is_empty());
    if target_refs {
        return None; // attaches to Gateway API gateways and waypoints only
    }
    let ns = obj.meta.namespace.as_str();
    let place = if ns == ROOT_NAMESPACE {
        "in the root namespace"
    } else if ns == GATEWAY_NAMESPACE {
        "in the gateway's namespace"
    } else {
        return None;
    };
    let labels = selector_labels(spec, selector);
    if labels.is_empty() {
        return Some(format!("{place}, without a selector"));
    }
    gateways
        .iter()
        .any(|g| labels.iter().all(|(k, v)| g.get(k) == Some(v)))
        .then(|| format!("{place}, its selector matches the gateway's labels"))
}

fn selector_labels(spec: &Value, selector: Selector) -> BTreeMap<String, String> {
    let (outer, inner) = match selector {
        Selector::MatchLabels => ("selector", "matchLabels"),
        Selector::WorkloadSelector => ("workloadSelector", "labels"),
    };
    spec.get(outer)
        .and_then(|s| s.get(inner))
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `istio.io/dry-run: "true"`: Istio only logs what the policy would do.
fn dry_run(obj: &Foreign) -> bool {
    obj.meta
        .annotations
        .get("istio.io/dry-run")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// An AuthorizationPolicy restricts unless it is AUDIT, dry-run, a DENY or CUSTOM policy
/// without rules (it matches nothing), or an ALLOW policy with an allow-all rule (`{}`).
/// ALLOW without rules denies every request (Istio `authz/builder`).
fn authorization_policy(obj: &Foreign) -> Restriction {
    let action = obj
        .spec
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("ALLOW")
        .to_ascii_uppercase();
    let rules: &[Value] = obj
        .spec
        .get("rules")
        .and_then(Value::as_sequence)
        .map_or(&[], |s| s.as_slice());
    let allow_all = rules
        .iter()
        .any(|r| r.is_null() || r.as_mapping().is_some_and(|m| m.is_empty()));
    if dry_run(obj) {
        return Restriction::Inert(
            "it is marked istio.io/dry-run, so Istio only logs its decisions".into(),
        );
    }
    match action.as_str() {
        "AUDIT" => Restriction::Inert("AUDIT policies only mark requests for audit logging".into()),
        "ALLOW" if allow_all => Restriction::Inert("it allows every request (a rule `{}`)".into()),
        "ALLOW" if rules.is_empty() => {
            Restriction::Restricts("action ALLOW without rules denies every request".into())
        }
        "ALLOW" => Restriction::Restricts(
            "action ALLOW: requests no rule matches are denied with 403".into(),
        ),
        "DENY" | "CUSTOM" if rules.is_empty() => {
            Restriction::Inert(format!("action {action} without rules matches no request"))
        }
        "DENY" => Restriction::Restricts("action DENY: requests its rules match get 403".into()),
        _ => Restriction::Restricts(format!(
            "action {action}: an external authorizer decides which requests pass"
        )),
    }
}

/// A RequestAuthentication with `jwtRules` rejects requests whose token is invalid (401).
fn request_authentication(obj: &Foreign) -> Restriction {
    let rules = obj
        .spec
        .get("jwtRules")
        .and_then(Value::as_sequence)
        .is_some_and(|s| !s.is_empty());
    if rules {
        Restriction::Restricts(
            "requests carrying an invalid JWT are rejected with 401, and its claims are what `@request.auth.claims` routes match".into(),
        )
    } else {
        Restriction::Inert("it has no jwtRules".into())
    }
}

/// Istio applies PeerAuthentication to sidecars' inbound listeners
/// (`pilot/pkg/networking/core/listener_inbound.go`), never to a gateway's servers, whose TLS
/// is the Gateway's `tls`.
fn peer_authentication(_: &Foreign) -> Restriction {
    Restriction::Inert(
        "Istio applies PeerAuthentication to sidecars' inbound traffic, not to a gateway's servers (their TLS is the Gateway's tls settings)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    fn findings(yaml: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let (res, _) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        check(&res, Target::Instance(&labels), &mut out);
        out.iter().map(|d| d.to_string()).collect()
    }

    fn policy(kind: &str, ns: &str, spec: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n{spec}")
    }

    const INGRESS: &[(&str, &str)] = &[("istio", "ingressgateway")];

    #[test]
    fn restricting_policies_that_select_the_gateway_refuse_the_configuration() {
        for (kind, spec) in [
            ("AuthorizationPolicy", "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{from: [{source: {ipBlocks: [1.2.3.4]}}]}]\n"),
            ("AuthorizationPolicy", "  rules: [{to: [{operation: {paths: [/admin]}}]}]\n"),
            ("AuthorizationPolicy", "  {}\n"),
            ("RequestAuthentication", "  jwtRules: [{issuer: a}]\n"),
        ] {
            let got = findings(&policy(kind, "istio-system", spec), INGRESS);
            assert_eq!(got.len(), 1, "{kind}: {got:?}");
            assert!(got[0].starts_with(&format!("t.yaml:4: Error {kind} istio-system/p: spec: {kind} (")), "{got:?}");
            assert!(got[0].contains("fail closed"), "{got:?}");
        }
    }

    #[test]
    fn policies_that_restrict_nothing_warn() {
        for (kind, spec, what) in [
            (
                "AuthorizationPolicy",
                "  action: AUDIT\n  rules: [{}]\n",
                "audit logging",
            ),
            (
                "AuthorizationPolicy",
                "  rules: [{}]\n",
                "allows every request",
            ),
            (
                "AuthorizationPolicy",
                "  action: DENY\n",
                "matches no request",
            ),
            (
                "PeerAuthentication",
                "  mtls: {mode: STRICT}\n",
                "sidecars' inbound traffic",
            ),
        ] {
            let got = findings(&policy(kind, "istio-system", spec), INGRESS);
            assert_eq!(got.len(), 1, "{kind}: {got:?}");
            assert!(
                got[0].contains("Warning") && got[0].contains(what),
                "{got:?}"
            );
        }
        let dry = policy(
            "AuthorizationPolicy",
            "istio-system",
            "  action: DENY\n  rules: [{}]\n",
        )
        .replace(
            "namespace: istio-system}",
            "namespace: istio-system, annotations: {istio.io/dry-run: \"true\"}}",
        );
        let got = findings(&dry, INGRESS);
        assert!(got[0].contains("dry-run"), "{got:?}");
    }

    #[test]
    fn policies_that_do_not_select_the_gateway_stay_silent() {
        for (ns, spec) in [
            ("default", "  action: DENY\n  rules: [{}]\n"),
            ("istio-system", "  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules: [{}]\n"),
            ("istio-system", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  action: DENY\n  rules: [{}]\n"),
        ] {
            assert!(findings(&policy("AuthorizationPolicy", ns, spec), INGRESS).is_empty(), "{ns} {spec}");
        }
        // Other Kubernetes and Istio kinds are silent too.
        let other = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w, namespace: istio-system}\nspec: {address: 1.2.3.4}\n";
        assert!(findings(other, INGRESS).is_empty());
    }

    #[test]
    fn other_kinds_warn_naming_what_is_not_applied() {
        let ef = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f, namespace: istio-system}\nspec:\n  workloadSelector: {labels: {istio: ingressgateway}}\n  configPatches: []\n";
        let got = findings(ef, INGRESS);
        assert_eq!(
            got,
            ["t.yaml:4: Warning EnvoyFilter istio-system/f: spec: EnvoyFilter (in the root namespace, its selector matches the gateway's labels) selects this gateway, but its Envoy configuration patches are not applied (Portcullis is not Envoy)"]
        );
        let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  accessLogging: [{providers: [{name: envoy}]}]\n";
        assert!(findings(telemetry, INGRESS)[0].contains("access logging"));
    }

    #[test]
    fn check_selects_by_any_gateways_selector() {
        let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: egressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\n";
        let yaml = format!(
            "{gw}{}",
            policy("AuthorizationPolicy", "istio-system", "  selector: {matchLabels: {istio: egressgateway}}\n  action: DENY\n  rules: [{}]\n")
        );
        let (res, _) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml,
        }]);
        let mut out = Vec::new();
        check(&res, Target::AnyGateway, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_error());
    }
}
