//! AuthorizationPolicy and RequestAuthentication: Istio's webhook rules (istio
//! `pkg/config/validation/validation.go` `ValidateAuthorizationPolicy`,
//! `ValidateRequestAuthentication`, and `pkg/config/security/security.go`), and, as errors, the
//! fields a gateway without a mesh cannot enforce (never a silent allow).
//!
//! Unlike the other kinds, a security policy with an error is not left out while the rest is
//! served: leaving out a DENY policy, or the RequestAuthentication an ALLOW policy's
//! `requestPrincipals` depend on, would expose what the policy was written to protect. Its
//! errors refuse the whole configuration (start-up stops; a reload keeps the generation being
//! served), failing closed.

use super::rules::{check_ip_or_cidr, check_selector_labels, routing_claim};
use crate::config::diag::{code, Diagnostic, Reporter, Scope, Severity};
use crate::config::load::{Resource, Resources};
use crate::config::types::{
    AuthorizationAction, AuthorizationPolicy, JwtRule, PolicyTargetReference,
    RequestAuthentication, Targeting,
};

/// The webhook's rules for each policy; an error refuses the configuration (fail closed).
pub fn check(resources: &Resources, out: &mut Vec<Diagnostic>) {
    let first = out.len();
    for ap in &resources.authorization_policies {
        authorization_policy(ap, &mut ap.reporter(out));
    }
    for ra in &resources.request_authentications {
        let mut r = ra.reporter(out);
        request_authentication(&ra.spec, &mut r);
    }
    for d in out[first..].iter_mut().filter(|d| d.is_error()) {
        d.scope = Scope::Config;
    }
}

/// The analyzers over security policies.
pub fn analyze(resources: &Resources, out: &mut Vec<Diagnostic>) {
    claim_routes_without_request_authentication(resources, out);
}

/// istio analyzer `JWTClaimRouteAnalyzer` (IST0149): a VirtualService routing on JWT claims
/// through a Gateway whose pods no RequestAuthentication (in `istio-system` or the Gateway's
/// namespace, selecting the Gateway's `selector` labels) applies to never sees a claim.
fn claim_routes_without_request_authentication(resources: &Resources, out: &mut Vec<Diagnostic>) {
    for vs in &resources.virtual_services {
        let key = vs.spec.http.iter().flat_map(|h| &h.matches).find_map(|m| {
            m.headers
                .keys()
                .chain(m.without_headers.keys())
                .find(|k| routing_claim(k).is_some())
        });
        let Some(key) = key else { continue };
        for name in vs.spec.gateways.iter().filter(|g| *g != "mesh") {
            let (ns, gw_name) = name.split_once('/').unwrap_or((&vs.meta.namespace, name));
            let Some(gw) = resources
                .gateways
                .iter()
                .find(|g| g.meta.namespace == ns && g.meta.name == gw_name)
            else {
                continue;
            };
            let covered = resources.request_authentications.iter().any(|ra| {
                (ra.meta.namespace == "istio-system" || ra.meta.namespace == gw.meta.namespace)
                    && ra.spec.selector.as_ref().is_none_or(|s| {
                        s.match_labels
                            .iter()
                            .all(|(k, v)| gw.spec.selector.get(k) == Some(v))
                    })
            });
            if !covered {
                vs.reporter(out).finding(
                    Severity::Warning,
                    code::JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN,
                    "spec.http",
                    format!("The virtual service uses the JWT claim based routing (key: {key}) but found no request authentication for the gateway ({}/{}) pods. The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing (expected a RequestAuthentication selecting the gateway)", gw.meta.namespace, gw.meta.name),
                );
            }
        }
    }
}

fn selection(r: &mut Reporter, t: Targeting<'_>) {
    let Targeting {
        selector,
        target_ref,
        target_refs,
    } = t;
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        r.error(
            "spec",
            "only one of targetRefs or workloadSelector can be set (expected selector, targetRef or targetRefs)",
        );
    }
    if let Some(s) = selector {
        check_selector_labels(r, "spec.selector.matchLabels", &s.match_labels);
    }
    let refs: Vec<(String, &PolicyTargetReference)> = target_ref
        .map(|t| ("spec.targetRef".to_string(), t))
        .into_iter()
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t)),
        )
        .collect();
    for (path, t) in refs {
        if t.name.is_empty() {
            r.error(
                format!("{path}.name"),
                "name is required (expected the target's name)",
            );
        }
        if t.kind.is_empty() {
            r.error(
                format!("{path}.kind"),
                "kind is required (expected e.g. Gateway)",
            );
        }
    }
}

/// The `when` keys Istio knows (`security.ValidateAttribute`); `Err` for unknown or removed.
fn check_attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let map_key = |k: &str| {
        let open = k.find('[');
        if k.ends_with(']') && open.is_some_and(|o| o > 0 && o < k.len() - 2) {
            Ok(())
        } else {
            Err(format!("bad key ({k}): should have format a[b]"))
        }
    };
    match key {
        k if k.starts_with("request.headers") => map_key(k),
        "source.ip" | "remote.ip" | "destination.ip" => ips(values),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "source.serviceAccount" => check_service_accounts(key, values),
        "source.trustDomain" => check_wildcards(key, values),
        k if k.starts_with("request.auth.claims") => map_key(k),
        "destination.port" => ports(values),
        k if k.starts_with("experimental.envoy.filters.") => map_key(k),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        k if k.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        other => Err(format!("unknown attribute: {other}")),
    }
}

fn ports(values: &[String]) -> Result<(), String> {
    for v in values {
        if v.parse::<u32>().ok().filter(|p| *p <= 65535).is_none() {
            return Err(format!("bad port ({v})"));
        }
    }
    Ok(())
}

fn check_wildcards(key: &str, values: &[String]) -> Result<(), String> {
    for v in values {
        let n = v.matches('*').count();
        if n > 1 {
            return Err(format!(
                "at most one wildcard is allowed, found in {key}: {v:?}"
            ));
        }
        if n == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
            return Err(format!(
                "wildcard is only allowed at the start or end, found in {key}: {v:?}"
            ));
        }
    }
    Ok(())
}

fn check_service_accounts(key: &str, values: &[String]) -> Result<(), String> {
    if values.len() > 16 {
        return Err("may not have more than 16 values".into());
    }
    for v in values {
        if v.contains('*') {
            return Err(format!("wildcard not allowed, found in {key}"));
        }
        let parts: Vec<&str> = v.split('/').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("expected format 'serviceAccount' or 'namespace/serviceAccount', found {v:?} in {key}"));
        }
    }
    Ok(())
}

/// `security.CheckValidPathTemplate`.
fn check_path_template(path: &str) -> Result<(), String> {
    let templated = path.contains("{*}") || path.contains("{**}");
    let mut any = false;
    for glob in path.trim_matches('/').split('/') {
        match glob {
            "{*}" if !any => continue,
            "{**}" if !any => {
                any = true;
                continue;
            }
            "{*}" | "{**}" => {
                return Err(format!(
                    "invalid or unsupported path {path}. {{**}} is not the last operator"
                ))
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Err(format!("invalid or unsupported path {path}. Contains '{{' or '}}' beyond a supported path template"));
        }
        let literal = |c: char| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c);
        if templated && (glob.is_empty() || !glob.chars().all(literal)) {
            return Err(format!("invalid or unsupported path {path}. Contains segment {glob} with invalid string literal"));
        }
    }
    Ok(())
}

fn authorization_policy(ap: &Resource<AuthorizationPolicy>, r: &mut Reporter) {
    let spec = &ap.spec;
    selection(r, spec.targeting());
    let custom = spec.action == AuthorizationAction::Custom;
    if custom {
        if spec.rules.is_none() {
            r.error("spec.rules", "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
        } else if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
            r.error("spec.provider.name", "`provider.name` must not be empty");
        }
    } else if spec.provider.is_some() {
        let action = format!("{:?}", spec.action).to_uppercase();
        r.error(
            "spec.provider",
            format!("`provider` must not be with non CUSTOM action, found {action}"),
        );
    }
    if spec.action == AuthorizationAction::Deny && spec.rules.is_none() {
        r.error("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let base = format!("spec.rules[{i}]");
        if rule.from.as_ref().is_some_and(Vec::is_empty) {
            r.error(
                format!("{base}.from"),
                format!("`from` must not be empty, found at rule {i}"),
            );
        }
        for (j, from) in rule.from.iter().flatten().enumerate() {
            let p = format!("{base}.from[{j}].source");
            let Some(s) = &from.source else {
                r.error(
                    p,
                    format!("`from.source` must not be nil, found at rule {i}"),
                );
                continue;
            };
            let lists: [(&str, &Vec<String>); 14] = [
                ("principals", &s.principals),
                ("notPrincipals", &s.not_principals),
                ("requestPrincipals", &s.request_principals),
                ("notRequestPrincipals", &s.not_request_principals),
                ("namespaces", &s.namespaces),
                ("notNamespaces", &s.not_namespaces),
                ("serviceAccounts", &s.service_accounts),
                ("notServiceAccounts", &s.not_service_accounts),
                ("trustDomains", &s.trust_domains),
                ("notTrustDomains", &s.not_trust_domains),
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ];
            check_lists(r, &p, i, "from.source", &lists, |name, list| match name {
                "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => ips(list),
                "serviceAccounts" | "notServiceAccounts" => check_service_accounts(name, list),
                "trustDomains" | "notTrustDomains" => check_trust_domains(name, list),
                _ => Ok(()),
            });
            let identity = [
                &s.principals,
                &s.not_principals,
                &s.namespaces,
                &s.not_namespaces,
            ];
            let accounts = [&s.service_accounts, &s.not_service_accounts];
            if identity.iter().any(|l| !l.is_empty()) && accounts.iter().any(|l| !l.is_empty()) {
                r.error(p.clone(), format!("cannot set serviceAccounts with namespaces or principals, found at rule {i}"));
            }
            for (name, list) in lists {
                if custom && !list.is_empty() && !name.to_lowercase().contains("ipblocks") {
                    r.error(
                        format!("{p}.{name}"),
                        format!(
                            "From.{} is currently not supported with CUSTOM action",
                            capitalized(name)
                        ),
                    );
                }
            }
        }
        if rule.to.as_ref().is_some_and(Vec::is_empty) {
            r.error(
                format!("{base}.to"),
                format!("`to` must not be empty, found at rule {i}"),
            );
        }
        for (j, to) in rule.to.iter().flatten().enumerate() {
            let p = format!("{base}.to[{j}].operation");
            let Some(o) = &to.operation else {
                r.error(
                    p,
                    format!("`to.operation` must not be nil, found at rule {i}"),
                );
                continue;
            };
            let lists: [(&str, &Vec<String>); 8] = [
                ("hosts", &o.hosts),
                ("notHosts", &o.not_hosts),
                ("ports", &o.ports),
                ("notPorts", &o.not_ports),
                ("methods", &o.methods),
                ("notMethods", &o.not_methods),
                ("paths", &o.paths),
                ("notPaths", &o.not_paths),
            ];
            check_lists(r, &p, i, "to.operation", &lists, |name, list| match name {
                "ports" | "notPorts" => ports(list),
                "paths" | "notPaths" => list.iter().try_for_each(|v| check_path_template(v)),
                _ => Ok(()),
            });
        }
        for (j, w) in rule.when.iter().enumerate() {
            let p = format!("{base}.when[{j}]");
            if w.key.is_empty() {
                r.error(format!("{p}.key"), "`key` must not be empty");
                continue;
            }
            if w.values.is_empty() && w.not_values.is_empty() {
                r.error(
                    p.clone(),
                    format!(
                        "at least one of `values` or `notValues` must be set for key {}",
                        w.key
                    ),
                );
                continue;
            }
            for (field, list) in [("values", &w.values), ("notValues", &w.not_values)] {
                if let Err(m) = check_attribute(&w.key, list) {
                    let what = if field == "values" {
                        "value"
                    } else {
                        "notValue"
                    };
                    r.error(
                        format!("{p}.{field}"),
                        format!("invalid `{what}` for `key` {}: {m}", w.key),
                    );
                }
            }
            if w.key.starts_with("experimental.envoy.filters.") {
                r.error(format!("{p}.key"), format!("`{}` reads metadata of an Envoy filter, which Portcullis does not have: this condition cannot be enforced (expected a request, source or destination attribute)", w.key));
            }
            if custom
                && (matches!(
                    w.key.as_str(),
                    "source.namespace"
                        | "source.serviceAccount"
                        | "source.trustDomain"
                        | "source.principal"
                ) || w.key.starts_with("request.auth."))
            {
                r.error(
                    format!("{p}.key"),
                    format!("{} is currently not supported with CUSTOM action", w.key),
                );
            }
        }
    }
    if ap
        .meta
        .annotations
        .get("istio.io/dry-run")
        .is_some_and(|v| {
            v.parse::<bool>().is_err()
                && !matches!(
                    v.as_str(),
                    "1" | "0" | "t" | "f" | "T" | "F" | "TRUE" | "FALSE" | "True" | "False"
                )
        })
    {
        r.warn(
            "metadata.annotations.istio.io/dry-run",
            "not a boolean: the policy is enforced (expected true or false)",
        );
    }
}

/// A `from.source` or `to.operation`: one list must be set, no value may be empty, and `check`
/// sees each set list (istio `CheckEmptyValues` and the per-field checks).
fn check_lists(
    r: &mut Reporter,
    p: &str,
    i: usize,
    what: &str,
    lists: &[(&str, &Vec<String>)],
    check: impl Fn(&str, &[String]) -> Result<(), String>,
) {
    if lists.iter().all(|(_, l)| l.is_empty()) {
        r.error(p, format!("`{what}` must not be empty, found at rule {i}"));
    }
    for (name, list) in lists {
        let fp = format!("{p}.{name}");
        if list.iter().any(String::is_empty) {
            r.error(
                fp,
                format!("empty value not allowed, found in {}", capitalized(name)),
            );
        } else if let Err(m) = check(name, list) {
            r.error(fp, m);
        }
    }
}

fn ips(values: &[String]) -> Result<(), String> {
    values.iter().try_for_each(|v| {
        check_ip_or_cidr(v).map_err(|e| format!("bad IP address or CIDR range ({v}): {e}"))
    })
}

fn check_trust_domains(key: &str, values: &[String]) -> Result<(), String> {
    check_wildcards(key, values)?;
    match values.iter().find(|v| v.contains('/')) {
        Some(v) => Err(format!(
            "trust domain must not contain '/', found in {key}: {v:?}"
        )),
        None => Ok(()),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

fn request_authentication(spec: &RequestAuthentication, r: &mut Reporter) {
    selection(r, spec.targeting());
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        jwt_rule(r, &format!("spec.jwtRules[{i}]"), rule);
    }
}

fn jwt_rule(r: &mut Reporter, p: &str, rule: &JwtRule) {
    if rule.audiences.iter().any(String::is_empty) {
        r.error(
            format!("{p}.audiences"),
            "audience must be non-empty string",
        );
    }
    if rule.issuer.is_empty() && rule.jwks_uri.is_empty() {
        r.error(p, "issuer or jwksUri must be non-empty string");
    }
    if !rule.jwks_uri.is_empty() {
        let ok = rule
            .jwks_uri
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !ok {
            r.error(
                format!("{p}.jwksUri"),
                format!(
                    "URI `{}` is not supported (expected an http:// or https:// URL)",
                    rule.jwks_uri
                ),
            );
        }
    }
    if rule.jwks.is_empty() && rule.jwks_uri.is_empty() {
        r.error(p, "neither jwks nor jwksUri is set: istiod would discover the keys through OpenID discovery of the issuer, which Portcullis does not do (expected jwks or jwksUri)");
    }
    if !rule.jwks.is_empty() && serde_json::from_str::<serde_json::Value>(&rule.jwks).is_err() {
        r.error(
            format!("{p}.jwks"),
            "jwks parse error: not JSON (expected a JSON Web Key Set)",
        );
    }
    for (j, h) in rule.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            r.error(
                format!("{p}.fromHeaders[{j}].name"),
                "location header name must be non-empty string",
            );
        }
    }
    for (j, v) in rule.from_params.iter().enumerate() {
        if v.is_empty() {
            r.error(
                format!("{p}.fromParams[{j}]"),
                "location query must be non-empty string",
            );
        }
    }
    for (j, v) in rule.from_cookies.iter().enumerate() {
        if v.is_empty() {
            r.error(
                format!("{p}.fromCookies[{j}]"),
                "cookie name must be non-empty string",
            );
        }
    }
    for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
        if c.claim.is_empty() || c.header.is_empty() {
            r.error(
                format!("{p}.outputClaimToHeaders[{j}]"),
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
        } else if !super::rules::is_http_token(&c.header) {
            r.error(
                format!("{p}.outputClaimToHeaders[{j}].header"),
                format!(
                    "`{}` is not a valid header name (expected an HTTP token)",
                    c.header
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::diags;

    fn doc(kind: &str, spec: &str) -> String {
        let mut s = format!("apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: p, namespace: istio-system}}\nspec:\n");
        for l in spec.lines() {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    #[test]
    fn authorization_policy_rules_follow_istios_webhook() {
        let cases: &[(&str, &str)] = &[
            ("action: DENY", "t.yaml:4: Error [IST0106] AuthorizationPolicy istio-system/p: spec.rules: DENY action without `rules` is meaningless"),
            ("rules:\n- from: []", "t.yaml:6: Error [IST0106] AuthorizationPolicy istio-system/p: spec.rules[0].from: `from` must not be empty, found at rule 0"),
            ("rules:\n- from:\n  - source: {ipBlocks: [300.0.0.1]}", "spec.rules[0].from[0].source.ipBlocks: bad IP address or CIDR range (300.0.0.1)"),
            ("rules:\n- to:\n  - operation: {ports: ['70000']}", "spec.rules[0].to[0].operation.ports: bad port (70000)"),
            ("rules:\n- when:\n  - {key: request.foo, values: [a]}", "spec.rules[0].when[0].values: invalid `value` for `key` request.foo: unknown attribute: request.foo"),
            ("rules:\n- when:\n  - {key: request.headers, values: [a]}", "bad key (request.headers): should have format a[b]"),
            ("rules:\n- to:\n  - operation: {paths: ['/a/{**}/b/{*}']}", "{**} is not the last operator"),
            ("action: CUSTOM\nrules: [{}]", "spec.provider.name: `provider.name` must not be empty"),
            ("provider: {name: x}\nrules: [{}]", "`provider` must not be with non CUSTOM action, found ALLOW"),
            ("action: CUSTOM\nprovider: {name: x}\nrules:\n- from:\n  - source: {requestPrincipals: ['*']}", "From.RequestPrincipals is currently not supported with CUSTOM action"),
            ("rules:\n- when:\n  - {key: 'experimental.envoy.filters.a.b[c]', values: [x]}", "cannot be enforced"),
            ("selector: {matchLabels: {a: b}}\ntargetRef: {kind: Gateway, name: g}\nrules: [{}]", "only one of targetRefs or workloadSelector can be set"),
        ];
        for (spec, want) in cases {
            let got = diags(&doc("AuthorizationPolicy", spec)).join("\n");
            assert!(
                got.contains(want),
                "spec:\n{spec}\ngot:\n{got}\nwant: {want}"
            );
        }
        for ok in ["{}", "rules: [{}]", "action: DENY\nrules:\n- to:\n  - operation: {paths: ['/admin*'], methods: [POST]}\n  when:\n  - {key: 'request.auth.claims[groups][x]', values: [a]}"] {
            let got = diags(&doc("AuthorizationPolicy", ok));
            assert!(got.is_empty(), "{ok}: {got:?}");
        }
    }

    #[test]
    fn request_authentication_rules_follow_istios_webhook() {
        let cases: &[(&str, &str)] = &[
            (
                "jwtRules:\n- audiences: ['']\n  issuer: a\n  jwks: '{\"keys\": []}'",
                "audience must be non-empty string",
            ),
            (
                "jwtRules:\n- jwks: '{}'",
                "issuer or jwksUri must be non-empty string",
            ),
            (
                "jwtRules:\n- issuer: a\n  jwksUri: ftp://x/jwks",
                "is not supported (expected an http:// or https:// URL)",
            ),
            ("jwtRules:\n- issuer: a", "OpenID discovery"),
            ("jwtRules:\n- issuer: a\n  jwks: '{'", "jwks parse error"),
            (
                "jwtRules:\n- issuer: a\n  jwksUri: http://x/j\n  fromHeaders: [{name: ''}]",
                "location header name must be non-empty string",
            ),
        ];
        for (spec, want) in cases {
            let got = diags(&doc("RequestAuthentication", spec)).join("\n");
            assert!(
                got.contains(want),
                "spec:\n{spec}\ngot:\n{got}\nwant: {want}"
            );
        }
    }
}
