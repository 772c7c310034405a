//! Delegation: a root VirtualService rule with `delegate` is replaced by the rules of the
//! delegate VirtualService, each merged with the root rule as Istio merges them
//! (`pilot/pkg/model/virtualservice.go` `mergeHTTPRoute`, `mergeHTTPMatchRequests`,
//! `mergeHTTPMatchRequest`, `hasConflict`, `stringMatchConflict`):
//!
//! - a child rule inherits the root rule's `rewrite`, `directResponse`, `timeout`, `retries`,
//!   `fault`, `mirror` (and its percentages), `mirrors`, `corsPolicy` and `headers` when it sets
//!   none of its own; names join as `root-child`;
//! - each child match block must fit inside a root block: it is merged with every root block it
//!   does not conflict with, and a child rule with a block that fits no root block is dropped
//!   (never served).

use std::collections::BTreeMap;

use crate::config::types::{HttpMatchRequest, HttpRoute, StringMatch};

/// The child rule as Istio serves it under `root`, or `None` when its match conflicts with the
/// root's.
pub fn merge_http_route(root: &HttpRoute, child: &HttpRoute) -> Option<HttpRoute> {
    let matches = merge_match_requests(&root.matches, &child.matches)?;
    let mut out = child.clone();
    out.matches = matches;
    out.name = match (non_empty(&root.name), non_empty(&child.name)) {
        (Some(r), Some(c)) => Some(format!("{r}-{c}")),
        (r, c) => c.or(r).map(str::to_string),
    };
    out.delegate = None;
    inherit(&mut out.rewrite, &root.rewrite);
    inherit(&mut out.direct_response, &root.direct_response);
    inherit(&mut out.timeout, &root.timeout);
    inherit(&mut out.retries, &root.retries);
    inherit(&mut out.fault, &root.fault);
    inherit(&mut out.mirror, &root.mirror);
    inherit(&mut out.mirror_percent, &root.mirror_percent);
    inherit(&mut out.mirror_percentage, &root.mirror_percentage);
    inherit(&mut out.cors_policy, &root.cors_policy);
    inherit(&mut out.headers, &root.headers);
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    Some(out)
}

/// `maps.MergeCopy`: the root's entries, overridden by the child's.
fn merged<V: Clone>(r: &BTreeMap<String, V>, c: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut m = r.clone();
    m.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}

fn inherit<T: Clone>(child: &mut Option<T>, root: &Option<T>) {
    if child.is_none() {
        child.clone_from(root);
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// `mergeHTTPMatchRequests`: `None` on a conflict.
pub fn merge_match_requests(
    root: &[HttpMatchRequest],
    child: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(child.to_vec());
    }
    if child.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for c in child {
        let before = out.len();
        for r in root.iter().filter(|r| !has_conflict(r, c)) {
            out.push(merge_match_request(r, c));
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// `mergeHTTPMatchRequest`: the child's block with the root's conditions it does not set.
fn merge_match_request(root: &HttpMatchRequest, child: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = child.clone();
    out.name = match (non_empty(&root.name), non_empty(&child.name)) {
        (Some(r), Some(c)) => Some(format!("{r}-{c}")),
        (r, c) => c.or(r).map(str::to_string),
    };
    inherit(&mut out.uri, &root.uri);
    inherit(&mut out.scheme, &root.scheme);
    inherit(&mut out.method, &root.method);
    inherit(&mut out.authority, &root.authority);
    out.headers = merged(&root.headers, &child.headers);
    out.without_headers = merged(&root.without_headers, &child.without_headers);
    out.query_params = merged(&root.query_params, &child.query_params);
    out.source_labels = merged(&root.source_labels, &child.source_labels);
    if out.port.is_none_or(|p| p == 0) {
        out.port = root.port;
    }
    inherit(&mut out.source_namespace, &root.source_namespace);
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    inherit(&mut out.stat_prefix, &root.stat_prefix);
    out
}

/// `hasConflict`: whether `leaf` can match requests `root` does not.
pub fn has_conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    for (r, l) in maps {
        if l.iter()
            .any(|(k, lv)| string_match_conflict(r.get(k), Some(lv)))
        {
            return true;
        }
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    let (rp, lp) = (root.port.unwrap_or(0), leaf.port.unwrap_or(0));
    if rp > 0 && lp > 0 && rp != lp {
        return true;
    }
    if let Some(ns) = non_empty(&root.source_namespace) {
        if non_empty(&leaf.source_namespace) != Some(ns) {
            return true;
        }
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    if !root.gateways.is_empty() && !leaf.gateways.is_empty() {
        if root.gateways.len() < leaf.gateways.len() {
            return true;
        }
        if leaf.gateways.iter().any(|g| !root.gateways.contains(g)) {
            return true;
        }
    }
    false
}

/// `stringMatchConflict`.
fn string_match_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let (r_exact, r_prefix, r_regex) = (
        non_empty(&root.exact),
        non_empty(&root.prefix),
        non_empty(&root.regex),
    );
    let (l_exact, l_prefix, l_regex) = (
        non_empty(&leaf.exact),
        non_empty(&leaf.prefix),
        non_empty(&leaf.regex),
    );
    if r_regex.is_some() && (l_regex.is_some() || l_prefix.is_some() || l_exact.is_some()) {
        return true;
    }
    if l_regex.is_some() && (r_regex.is_some() || r_prefix.is_some() || r_exact.is_some()) {
        return true;
    }
    if let Some(exact) = r_exact {
        return l_prefix.is_some() || l_exact != Some(exact);
    }
    if let Some(prefix) = r_prefix {
        if let Some(p) = l_prefix {
            return !p.starts_with(prefix);
        }
        if let Some(e) = l_exact {
            return !e.starts_with(prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> HttpMatchRequest {
        serde_yaml::from_str(if yaml.is_empty() { "{}" } else { yaml }).unwrap()
    }

    fn ms(yaml: &str) -> Vec<HttpMatchRequest> {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// istio/istio `pilot/pkg/model/virtualservice_test.go` `TestHasConflict`, case by case.
    #[test]
    fn has_conflict_matches_istios_cases() {
        let cases: [(&str, &str, &str, bool); 21] = [
            (
                "regex uri",
                "uri: {regex: ^/productpage}",
                "uri: {prefix: /productpage/v2}",
                true,
            ),
            (
                "regex uri in root and delegate does not have uri",
                "uri: {regex: ^/productpage}",
                "",
                false,
            ),
            (
                "regex uri in delegate and root does not have uri",
                "",
                "uri: {regex: ^/productpage}",
                false,
            ),
            (
                "regex uri in root and delegate has conflicting uri match",
                "uri: {regex: ^/productpage}",
                "uri: {prefix: /productpage}",
                true,
            ),
            (
                "regex uri in delegate and root has conflicting uri match",
                "uri: {prefix: /productpage}",
                "uri: {regex: ^/productpage}",
                true,
            ),
            (
                "match uri",
                "uri: {prefix: /productpage}",
                "uri: {prefix: /productpage/v2}",
                false,
            ),
            (
                "mismatch uri",
                "uri: {prefix: /productpage/v2}",
                "uri: {prefix: /productpage}",
                true,
            ),
            (
                "match uri exact",
                "uri: {prefix: /productpage/v2}",
                "uri: {exact: /productpage/v2}",
                false,
            ),
            (
                "headers not equal",
                "headers: {header: {exact: h1}}",
                "headers: {header: {exact: h2}}",
                true,
            ),
            (
                "headers equal",
                "headers: {header: {exact: h1}}",
                "headers: {header: {exact: h1}}",
                false,
            ),
            (
                "headers match",
                "headers: {header: {prefix: h1}}",
                "headers: {header: {exact: h1-v1}}",
                false,
            ),
            (
                "headers mismatch",
                "headers: {header: {prefix: h1}}",
                "headers: {header: {exact: h2}}",
                true,
            ),
            (
                "headers prefix mismatch",
                "headers: {header: {prefix: h1}}",
                "headers: {header: {prefix: h2}}",
                true,
            ),
            (
                "diff headers",
                "headers: {header: {exact: h1}}",
                "headers: {header-2: {exact: h2}}",
                false,
            ),
            (
                "withoutHeaders mismatch",
                "withoutHeaders: {header: {prefix: h1}}",
                "withoutHeaders: {header: {exact: h2}}",
                true,
            ),
            ("port 0 in root", "port: 0", "port: 8080", false),
            ("port 0 in leaf", "port: 8080", "port: 0", false),
            ("port", "port: 8080", "port: 8090", true),
            (
                "sourceLabels mismatch",
                "sourceLabels: {a: b}",
                "sourceLabels: {a: c}",
                true,
            ),
            (
                "sourceNamespace mismatch",
                "sourceNamespace: test1",
                "sourceNamespace: test2",
                true,
            ),
            (
                "root has less gateways than delegate",
                "gateways: [ingress-gateway]",
                "gateways: [ingress-gateway, mesh]",
                true,
            ),
        ];
        for (name, root, leaf, expected) in cases {
            assert_eq!(has_conflict(&m(root), &m(leaf)), expected, "{name}");
        }
    }

    /// `TestMergeHTTPMatchRequests`: merged blocks, or `None` on a conflict.
    #[test]
    fn match_requests_merge_as_istio_merges_them() {
        let cases: [(&str, &str, &str, Option<&str>); 9] = [
            ("url match", "[{uri: {prefix: /productpage}}]", "[{uri: {exact: /productpage/v1}}]", Some("[{uri: {exact: /productpage/v1}}]")),
            ("url regex noconflict", "[{uri: {regex: ^/productpage}}]", "[{}]", Some("[{uri: {regex: ^/productpage}}]")),
            ("url regex conflict", "[{uri: {regex: ^/productpage}}]", "[{uri: {prefix: /productpage}}]", None),
            ("multi url match", "[{uri: {prefix: /productpage}}, {uri: {prefix: /reviews}}]", "[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews/v1}}]", Some("[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews/v1}}]")),
            ("url mismatch", "[{uri: {prefix: /productpage}}]", "[{uri: {exact: /reviews}}]", None),
            ("one block conflicts", "[{uri: {prefix: /productpage}}]", "[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews}}]", None),
            ("headers", "[{headers: {header: {exact: h1}}}]", "[]", Some("[{headers: {header: {exact: h1}}}]")),
            ("headers conflict", "[{headers: {header: {exact: h1}}}]", "[{headers: {header: {exact: h2}}}]", None),
            ("conflicted merge", "[{uri: {prefix: /productpage}, headers: {header: {exact: h1}}, port: 8080, authority: {exact: productpage.com}}]", "[{uri: {exact: /productpage/v1}}, {uri: {exact: /productpage/v2}, port: 9090}]", None),
        ];
        for (name, root, child, expected) in cases {
            let got = merge_match_requests(&ms(root), &ms(child));
            assert_eq!(got, expected.map(ms), "{name}");
        }
        let got = merge_match_requests(
            &ms("[{headers: {header: {exact: h1}}}]"),
            &ms("[{headers: {header-2: {exact: h2}}}]"),
        );
        assert_eq!(
            got,
            Some(ms(
                "[{headers: {header: {exact: h1}, header-2: {exact: h2}}}]"
            ))
        );
    }

    /// `TestMergeHttpRoutes` "root catch all": the child inherits what it does not set.
    #[test]
    fn a_child_rule_inherits_what_it_does_not_set() {
        let root: HttpRoute = serde_yaml::from_str(
            "name: root\ntimeout: 10s\nheaders: {request: {add: {istio: test}, remove: [trace-id]}}\nretries: {attempts: 3}\ncorsPolicy: {allowOrigins: [{exact: a.com}]}\nfault: {abort: {httpStatus: 418, percentage: {value: 100}}}\nmirror: {host: m.org}\nrewrite: {uri: /x}\ndelegate: {name: d}",
        )
        .unwrap();
        let child: HttpRoute = serde_yaml::from_str(
            "name: child\nmatch: [{uri: {prefix: /productpage/v1}}]\nroute: [{destination: {host: productpage.org}}]\ntimeout: 2s",
        )
        .unwrap();
        let merged = merge_http_route(&root, &child).unwrap();
        assert_eq!(merged.name.as_deref(), Some("root-child"));
        assert_eq!(
            merged.timeout, child.timeout,
            "the child's own timeout stays"
        );
        assert_eq!(merged.headers, root.headers);
        assert_eq!(merged.retries, root.retries);
        assert_eq!(merged.cors_policy, root.cors_policy);
        assert_eq!(merged.fault, root.fault);
        assert_eq!(merged.mirror, root.mirror);
        assert_eq!(merged.rewrite, root.rewrite);
        assert_eq!(merged.matches, child.matches);
        assert!(merged.delegate.is_none());
        // A child whose match the root's cannot contain is dropped.
        let root: HttpRoute =
            serde_yaml::from_str("match: [{uri: {prefix: /productpage}}]").unwrap();
        let child: HttpRoute = serde_yaml::from_str("match: [{uri: {prefix: /reviews}}]").unwrap();
        assert!(merge_http_route(&root, &child).is_none());
    }
}
