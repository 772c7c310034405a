//! Istio kinds Portcullis does not apply, when they select this gateway: never silently
//! ignored. [`UNAPPLIED`] is the one table of the kinds covered; a kind leaves it when it is
//! enforced (`AuthorizationPolicy` and `RequestAuthentication` have: `compile::security`).
//!
//! Each selected object gets a warning naming what is not applied. A PeerAuthentication is one of
//! them: Istio applies it to sidecars' inbound traffic and not to a gateway's servers, so
//! Portcullis does what Istio does, and says so.
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

struct Unapplied {
    group: &'static str,
    kind: &'static str,
    selector: Selector,
    /// What is not applied, for the warning.
    ignored: &'static str,
}

/// Every kind this module covers.
const UNAPPLIED: &[Unapplied] = &[
    // Istio applies PeerAuthentication to sidecars' inbound listeners
    // (`pilot/pkg/networking/core/listener_inbound.go`), never to a gateway's servers.
    Unapplied {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        selector: Selector::MatchLabels,
        ignored: "it is not applied: Istio applies PeerAuthentication to sidecars' inbound traffic, not to a gateway's servers (their TLS is the Gateway's tls settings)",
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        selector: Selector::WorkloadSelector,
        ignored: "its Envoy configuration patches are not applied (Portcullis is not Envoy)",
    },
    Unapplied {
        group: "telemetry.istio.io",
        kind: "Telemetry",
        selector: Selector::MatchLabels,
        ignored: "its access logging, metrics and tracing settings are not applied (Portcullis writes its own access log and Istio's standard metrics)",
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "Sidecar",
        selector: Selector::WorkloadSelector,
        ignored: "it is not applied: a Sidecar scopes sidecar proxies, and Istio does not apply it to gateways either",
    },
    Unapplied {
        group: "extensions.istio.io",
        kind: "WasmPlugin",
        selector: Selector::MatchLabels,
        ignored: "its Wasm plugin is not run",
    },
    Unapplied {
        group: "networking.istio.io",
        kind: "ProxyConfig",
        selector: Selector::MatchLabels,
        ignored: "its proxy settings (concurrency, environment, image) are not applied",
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
        obj.reporter(out).note(
            "spec",
            format!(
                "{} ({why}) selects this gateway, but {}",
                obj.kind, entry.ignored
            ),
        );
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

    /// AuthorizationPolicy and RequestAuthentication are enforced (`compile::security`): they
    /// are typed resources, not kinds this module reports.
    #[test]
    fn enforced_security_kinds_are_not_reported() {
        for (kind, spec) in [
            ("AuthorizationPolicy", "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{from: [{source: {ipBlocks: [1.2.3.4]}}]}]\n"),
            ("AuthorizationPolicy", "  rules: [{to: [{operation: {paths: [/admin]}}]}]\n"),
            ("RequestAuthentication", "  jwtRules: [{issuer: a, jwksUri: 'https://a/jwks'}]\n"),
        ] {
            let got = findings(&policy(kind, "istio-system", spec), INGRESS);
            assert!(got.is_empty(), "{kind}: {got:?}");
        }
    }

    #[test]
    fn a_peer_authentication_selecting_the_gateway_warns() {
        let got = findings(
            &policy(
                "PeerAuthentication",
                "istio-system",
                "  mtls: {mode: STRICT}\n",
            ),
            INGRESS,
        );
        assert_eq!(
            got,
            ["t.yaml:4: Warning PeerAuthentication istio-system/p: spec: PeerAuthentication (in the root namespace, without a selector) selects this gateway, but it is not applied: Istio applies PeerAuthentication to sidecars' inbound traffic, not to a gateway's servers (their TLS is the Gateway's tls settings)"]
        );
    }

    #[test]
    fn policies_that_do_not_select_the_gateway_stay_silent() {
        for (ns, spec) in [
            ("default", "  mtls: {mode: STRICT}\n"),
            ("istio-system", "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}\n"),
            ("istio-system", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  mtls: {mode: STRICT}\n"),
        ] {
            assert!(findings(&policy("PeerAuthentication", ns, spec), INGRESS).is_empty(), "{ns} {spec}");
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
            policy(
                "PeerAuthentication",
                "istio-system",
                "  selector: {matchLabels: {istio: egressgateway}}\n  mtls: {mode: STRICT}\n"
            )
        );
        let (res, _) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml,
        }]);
        let mut out = Vec::new();
        check(&res, Target::AnyGateway, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, crate::config::diag::Severity::Warning);
    }
}
