//! HTTP match blocks (Istio `validateHTTPRouteMatchRequest`, istio/istio
//! `pkg/config/validation/virtualservice.go`): string matches, header keys (pseudo-headers, any
//! RFC 9110 token, JWT claims), `withoutHeaders` presence (`regex: "*"`), query parameters,
//! port, and the attributes that select proxies rather than requests.

use super::super::rules::{
    check_gateway_name, check_header_name_or_jwt_claim, check_port, check_string_match,
    is_dns1123_label, routing_claim, MatchUse,
};
use crate::config::diag::Reporter;
use crate::config::types::HttpMatchRequest;

pub(super) fn check_match(r: &mut Reporter, base: &str, m: &HttpMatchRequest, to_gateway: bool) {
    for (field, sm, used) in [
        ("uri", &m.uri, MatchUse::Uri),
        ("scheme", &m.scheme, MatchUse::Other),
        ("method", &m.method, MatchUse::Other),
        ("authority", &m.authority, MatchUse::Other),
    ] {
        if let Some(sm) = sm {
            check_string_match(r, &format!("{base}.{field}"), sm, used);
        }
    }
    for (field, map, without) in [
        ("headers", &m.headers, false),
        ("withoutHeaders", &m.without_headers, true),
    ] {
        for (name, sm) in map {
            let p = format!("{base}.{field}.{name}");
            if let Err(msg) = check_header_name_or_jwt_claim(name) {
                r.error(p.clone(), msg);
            }
            if routing_claim(name).is_some() {
                // On a gateway the claims of the token RequestAuthentication verified are
                // matched (compile/matcher.rs `HeaderKey::Claim`); without one, IST0149
                // (`validate::security`).
                if !to_gateway {
                    // Istio `ValidateVirtualService`: claims exist only on gateways.
                    r.error(
                        p.clone(),
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway (expected spec.gateways naming a Gateway, without `mesh`)"
                        ),
                    );
                }
            }
            // `regex: "*"` under withoutHeaders is not an RE2 regex: Istio makes it a presence
            // match (`canBeConvertedToPresentMatch`) and does not validate it.
            if without && sm.regex.as_deref() == Some("*") {
                continue;
            }
            check_string_match(r, &p, sm, MatchUse::Other);
        }
    }
    for (name, sm) in &m.query_params {
        check_string_match(
            r,
            &format!("{base}.queryParams.{name}"),
            sm,
            MatchUse::Other,
        );
    }
    if let Some(port) = m.port.filter(|p| *p != 0) {
        if let Err(msg) = check_port(port) {
            r.error(format!("{base}.port"), msg);
        }
    }
    if !m.source_labels.is_empty() {
        r.note(
            format!("{base}.sourceLabels"),
            "selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)",
        );
    }
    if let Some(ns) = &m.source_namespace {
        if !is_dns1123_label(ns) {
            r.error(
                format!("{base}.sourceNamespace"),
                format!("sourceNamespace match {ns} is invalid (expected a namespace name)"),
            );
        } else {
            r.note(
                format!("{base}.sourceNamespace"),
                "mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)",
            );
        }
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
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].uri.regex: regex `(?!admin).*` does not compile: look-around, including look-ahead and look-behind, is not supported (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("uri: {exact: /a, prefix: /a}"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].uri: sets 2 of exact, prefix and regex (expected exactly one: StringMatch is a oneof)"],
            ),
            (
                &m("method:\n      prefix: \"\""),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].method.prefix: prefix string match should not be empty (expected e.g. `/`)"],
            ),
            (
                &m("queryParams:\n      id:\n        regex: \"[\""),
                &["t.yaml:11: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].queryParams.id.regex: regex `[` does not compile: unclosed character class (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("withoutHeaders:\n      x-a: {exact: a, regex: b}"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].withoutHeaders.x-a: sets 2 of exact, prefix and regex (expected exactly one: StringMatch is a oneof)"],
            ),
            // `regex: "*"` is a presence match only under withoutHeaders; under headers it is a
            // regex that does not compile.
            (
                &m("headers:\n      x-a: {regex: \"*\"}"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].headers.x-a.regex: regex `*` does not compile: repetition operator missing expression (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"],
            ),
            (
                &m("headers:\n      \"x y\": {exact: a}"),
                &["t.yaml:10: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].headers.x y: header name x y is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~, a pseudo-header such as :method, or @request.auth.claims.NAME)"],
            ),
        ]);
    }

    /// What Istio's webhook accepts since istio/istio#54602 (`ValidateHTTPHeaderNameOrJwtClaimRoute`,
    /// `validateHTTPRouteMatchRequest`): pseudo-headers, any RFC 9110 token character, upper
    /// case, `withoutHeaders` presence as `regex: "*"`, and match types left out (`uri: {}` is
    /// every path, `method: {}` presence; an empty uri prefix).
    #[test]
    fn valid_istio_match_keys_are_accepted() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (&m("headers: {\":method\": {exact: GET}, \":scheme\": {exact: https}, \":authority\": {prefix: a}, \":path\": {prefix: /x}}"), &[]),
            (&m("headers: {x.foo: {exact: a}, x~y: {prefix: b}, X-User: {exact: c}, uri: {exact: /a}}"), &[]),
            (&m("withoutHeaders: {x-debug: {regex: \"*\"}, \":path\": {regex: \".*admin.*\"}}"), &[]),
            (&m("{uri: {}, method: {}, scheme: {}, authority: {}}"), &[]),
            (&m("uri: {prefix: \"\"}"), &[]),
        ]);
    }

    #[test]
    fn match_attributes() {
        let m = |cond: &str| format!("http:\n- match:\n  - {cond}\n{ROUTE}");
        check(&[
            (
                &m("port: 70000"),
                &["t.yaml:9: Error [IST0106] VirtualService default/vs: spec.http[0].match[0].port: port number 70000 is out of range (expected 1-65535)"],
            ),
            (
                &m("sourceLabels: {app: web}"),
                &["t.yaml:9: Warning VirtualService default/vs: spec.http[0].match[0].sourceLabels: selects proxies, not requests: on a gateway the block applies only when these labels match the instance's labels (expected gateways, port or request attributes)"],
            ),
            (
                &m("sourceNamespace: web"),
                &["t.yaml:9: Warning VirtualService default/vs: spec.http[0].match[0].sourceNamespace: mesh-only: selects sidecars, ignored by a gateway (expected gateways, port or request attributes)"],
            ),
            (
                &m("headers: {\"@request.auth.claims.group\": {exact: admin}}"),
                &["t.yaml:7: Warning [IST0149] VirtualService default/vs: spec.http: The virtual service uses the JWT claim based routing (key: @request.auth.claims.group) but found no request authentication for the gateway (default/gw) pods. The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing (expected a RequestAuthentication selecting the gateway)"],
            ),
        ]);
    }
}
