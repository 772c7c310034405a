//! HTTP match blocks: string matches, headers (lower-case, JWT claims), query parameters, port,
//! and the attributes that select proxies rather than requests.

use super::super::rules::{
    check_gateway_name, check_match_header_name, check_port, check_string_match,
};
use crate::config::diag::Reporter;
use crate::config::types::HttpMatchRequest;

const JWT_CLAIM_PREFIX: &str = "@request.auth.claims.";

pub(super) fn check_match(
    r: &mut Reporter,
    base: &str,
    m: &HttpMatchRequest,
    delegating: bool,
    to_gateway: bool,
) {
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            let p = format!("{base}.{field}");
            check_string_match(r, &p, sm, true);
            if delegating && sm.regex.is_some() {
                r.error(
                    format!("{p}.regex"),
                    format!("{field} match does not support regex match for delegating (expected exact or prefix in delegate routes)"),
                );
            }
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let p = format!("{base}.{field}.{name}");
            if name.starts_with(JWT_CLAIM_PREFIX) {
                // On a gateway the claims of the token RequestAuthentication verified are
                // matched (compile/matcher.rs `ClaimMatch`).
                if !to_gateway {
                    r.error(
                        p.clone(),
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway (expected spec.gateways naming a Gateway, without `mesh`)"
                        ),
                    );
                }
            } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
                r.error(
                    p.clone(),
                    format!(
                        "header name `{name}` must be lower-case (expected `{}`)",
                        name.to_ascii_lowercase()
                    ),
                );
            } else if let Err(msg) = check_match_header_name(name) {
                r.error(p.clone(), msg);
            }
            if matches!(name.as_str(), "uri" | "scheme" | "method" | "authority") {
                r.warn(
                    p.clone(),
                    format!("header `{name}` is ignored by Istio's header matching (expected match.{name})"),
                );
            }
            check_string_match(r, &p, sm, false);
            if delegating && sm.regex.is_some() {
                r.error(
                    format!("{p}.regex"),
                    format!("{field} match {name} does not support regex match for delegating (expected exact or prefix)"),
                );
            }
        }
    }
    for (name, sm) in &m.query_params {
        let p = format!("{base}.queryParams.{name}");
        check_string_match(r, &p, sm, false);
        if delegating && sm.regex.is_some() {
            r.error(
                format!("{p}.regex"),
                format!("query param match {name} does not support regex match for delegating (expected exact or prefix)"),
            );
        }
    }
    if let Some(port) = m.port.filter(|p| *p != 0) {
        if let Err(msg) = check_port(port) {
            r.error(format!("{base}.port"), msg);
        }
    }
    if !m.source_labels.is_empty() {
        r.warn(
            format!("{base}.sourceLabels"),
            "selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)",
        );
    }
    if m.source_namespace.is_some() {
        r.warn(
            format!("{base}.sourceNamespace"),
            "mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)",
        );
    }
    for (k, g) in m.gateways.iter().enumerate() {
        if let Err(msg) = check_gateway_name(g) {
            r.error(format!("{base}.gateways[{k}]"), msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, ROUTE};

    #[test]
    fn string_matches() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (
                &m("uri:\n      regex: \"(?!admin).*\""),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].uri.regex: regex `(?!admin).*` does not compile: look-around, including look-ahead and look-behind, is not supported (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("uri: {exact: /a, prefix: /a}"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].uri: sets 2 of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("method: {}"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].method: sets none of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("uri:\n      prefix: \"\""),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].uri.prefix: prefix string match should not be empty (expected e.g. `/`)"],
            ),
            (
                &m("queryParams:\n      id:\n        regex: \"[\""),
                &["t.yaml:11: VirtualService default/vs: spec.http[0].match[0].queryParams.id.regex: regex `[` does not compile: unclosed character class (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("headers:\n      X-User: {exact: a}"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].headers.X-User: header name `X-User` must be lower-case (expected `x-user`)"],
            ),
            (
                &m("withoutHeaders:\n      x-a: {exact: a, regex: b}"),
                &["t.yaml:10: VirtualService default/vs: spec.http[0].match[0].withoutHeaders.x-a: sets 2 of exact, prefix and regex (expected exactly one)"],
            ),
            (
                &m("headers:\n      uri: {exact: /a}"),
                &["t.yaml:10: warning: VirtualService default/vs: spec.http[0].match[0].headers.uri: header `uri` is ignored by Istio's header matching (expected match.uri)"],
            ),
        ]);
    }

    #[test]
    fn match_attributes() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (
                &m("port: 70000"),
                &["t.yaml:9: VirtualService default/vs: spec.http[0].match[0].port: port number 70000 is out of range (expected 1-65535)"],
            ),
            (
                &m("sourceLabels: {app: web}"),
                &["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].sourceLabels: selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)"],
            ),
            (
                &m("sourceNamespace: web"),
                &["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].sourceNamespace: mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)"],
            ),
            (
                &m("headers: {\"@request.auth.claims.group\": {exact: admin}}"),
                &["t.yaml:7: warning: VirtualService default/vs: spec.http: IST0149 The virtual service uses the JWT claim based routing (key: @request.auth.claims.group) but found no request authentication for the gateway (default/gw) pods. The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing (expected a RequestAuthentication selecting the gateway)"],
            ),
        ]);
    }
}
