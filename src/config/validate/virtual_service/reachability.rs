//! The analyzer findings about rule order (`istioctl analyze`): IST0130, a rule no request
//! reaches, and IST0131, a match block that an earlier one already takes.

use std::collections::BTreeMap;

use crate::config::diag::{code, Reporter, Severity};
use crate::config::types::{HttpMatchRequest, HttpRoute, StringMatch};

fn rule_name(i: usize, name: &Option<String>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("#{i} ({n:?})"),
        _ => format!("#{i}"),
    }
}

/// A block that matches every request: no conditions, or only `uri: {prefix: /}` /
/// `uri: {regex: .*}`.
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let mut rest = m.clone();
    rest.name = None;
    rest.stat_prefix = None;
    rest.ignore_uri_case = false;
    let uri = rest.uri.take();
    rest == HttpMatchRequest::default()
        && match uri {
            None => true,
            Some(u) => {
                u == StringMatch {
                    prefix: Some("/".into()),
                    ..Default::default()
                } || u
                    == StringMatch {
                        regex: Some(".*".into()),
                        ..Default::default()
                    }
            }
        }
}

fn without_name(m: &HttpMatchRequest) -> HttpMatchRequest {
    HttpMatchRequest {
        name: None,
        stat_prefix: None,
        ..m.clone()
    }
}

/// Does string match `a` accept everything `b` accepts? (`None` = no condition.)
fn string_match_covers(a: &Option<StringMatch>, b: &Option<StringMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            if a == b || (a.set_count() == 0 && b.set_count() <= 1) {
                return true;
            }
            match (&a.prefix, a.set_count(), b.set_count()) {
                (Some(p), 1, 1) if b.regex.is_none() => b
                    .exact
                    .as_deref()
                    .or(b.prefix.as_deref())
                    .is_some_and(|s| s.starts_with(p.as_str())),
                _ => false,
            }
        }
    }
}

fn map_covers(a: &BTreeMap<String, StringMatch>, b: &BTreeMap<String, StringMatch>) -> bool {
    a.iter().all(|(k, va)| {
        b.get(k)
            .is_some_and(|vb| string_match_covers(&Some(va.clone()), &Some(vb.clone())))
    })
}

/// Does match block `a` accept every request block `b` accepts? Conservative: unknown
/// combinations count as not covered.
fn match_covers(a: &HttpMatchRequest, b: &HttpMatchRequest) -> bool {
    string_match_covers(&a.uri, &b.uri)
        && (a.uri.is_none() || a.ignore_uri_case || !b.ignore_uri_case)
        && string_match_covers(&a.scheme, &b.scheme)
        && string_match_covers(&a.method, &b.method)
        && string_match_covers(&a.authority, &b.authority)
        && map_covers(&a.headers, &b.headers)
        && map_covers(&a.query_params, &b.query_params)
        && a.without_headers
            .iter()
            .all(|(k, v)| b.without_headers.get(k) == Some(v))
        && (a.port.is_none() || a.port == b.port)
        && (a.gateways.is_empty()
            || (!b.gateways.is_empty() && b.gateways.iter().all(|g| a.gateways.contains(g))))
        && (a.source_labels.is_empty() || a.source_labels == b.source_labels)
        && (a.source_namespace.is_none() || a.source_namespace == b.source_namespace)
}

pub(super) fn analyze_http(r: &mut Reporter, http: &[HttpRoute]) {
    let mut prior: Vec<(usize, usize, HttpMatchRequest)> = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, route) in http.iter().enumerate() {
        let name = rule_name(i, &route.name);
        if let Some(c) = catch_all {
            r.finding(
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                format!("spec.http[{i}]"),
                format!(
                    "rule {name} is unreachable: rule {} before it matches every request (expected catch-all rules last)",
                    rule_name(c, &http[c].name)
                ),
            );
            continue;
        }
        if route.matches.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut covered_by_earlier_rules = 0;
        for (j, m) in route.matches.iter().enumerate() {
            let bare = without_name(m);
            let found = prior
                .iter()
                .find(|(_, _, p)| *p == bare)
                .map(|x| (x, true))
                .or_else(|| {
                    prior
                        .iter()
                        .find(|(_, _, p)| match_covers(p, &bare))
                        .map(|x| (x, false))
                });
            if let Some(((pi, pj, _), identical)) = found {
                let what = if identical {
                    "duplicates"
                } else {
                    "is covered by"
                };
                let other = if *pi == i {
                    format!("match[{pj}] of the same rule")
                } else {
                    format!("match[{pj}] of rule {}", rule_name(*pi, &http[*pi].name))
                };
                r.finding(
                    Severity::Info,
                    code::VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                    format!("spec.http[{i}].match[{j}]"),
                    format!(
                        "match[{j}] of rule {name} {what} {other}, which comes first, so it never matches (expected more specific matches first, and no repeated matches)"
                    ),
                );
                if *pi != i {
                    covered_by_earlier_rules += 1;
                }
            }
            prior.push((i, j, bare));
        }
        if covered_by_earlier_rules == route.matches.len() {
            r.finding(
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                format!("spec.http[{i}]"),
                format!(
                    "rule {name} is unreachable: all its matches are used by prior rules (expected the rule before the rules that shadow it, or removed)"
                ),
            );
        }
        if route.matches.iter().any(is_catch_all) {
            catch_all = Some(i);
        }
    }
}

/// The same analysis for TCP and TLS rules: identical matches, and rules after a match-less one.
pub(super) fn analyze_l4<M: PartialEq>(
    r: &mut Reporter,
    kind: &str,
    rules: &[&[M]],
    catch_all_block: impl Fn(&M) -> bool,
) {
    let mut prior: Vec<(usize, usize, &M)> = Vec::new();
    let mut catch_all: Option<usize> = None;
    for (i, matches) in rules.iter().enumerate() {
        if let Some(c) = catch_all {
            r.finding(
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                format!("spec.{kind}[{i}]"),
                format!("rule #{i} is unreachable: rule #{c} before it matches every connection (expected catch-all rules last)"),
            );
            continue;
        }
        if matches.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut dups = 0;
        for (j, m) in matches.iter().enumerate() {
            if let Some((pi, pj, _)) = prior.iter().find(|(_, _, p)| *p == m) {
                let other = if *pi == i {
                    format!("match[{pj}] of the same rule")
                } else {
                    format!("match[{pj}] of rule #{pi}")
                };
                r.finding(
                    Severity::Info,
                    code::VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                    format!("spec.{kind}[{i}].match[{j}]"),
                    format!(
                        "match[{j}] of rule #{i} duplicates {other}, which comes first, so it never matches (expected no repeated matches)"
                    ),
                );
                if *pi != i {
                    dups += 1;
                }
            }
            prior.push((i, j, m));
        }
        if dups == matches.len() {
            r.finding(
                Severity::Warning,
                code::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                format!("spec.{kind}[{i}]"),
                format!("rule #{i} is unreachable: all its matches are used by prior rules (expected it removed or moved first)"),
            );
        }
        if matches.iter().any(&catch_all_block) {
            catch_all = Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;

    #[test]
    fn unreachable_rules_and_duplicate_matches() {
        check(&[
            (
                "http:\n- match: [{uri: {prefix: /}}]\n  route: [{destination: {host: svc.example.com}}]\n- name: late\n  match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: Warning [IST0130] VirtualService default/vs: spec.http[1]: rule #1 (\"late\") is unreachable: rule #0 before it matches every request (expected catch-all rules last)"],
            ),
            (
                "http:\n- match: [{uri: {prefix: /a}, name: first}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &["t.yaml:10: Info [IST0131] VirtualService default/vs: spec.http[1].match[0]: match[0] of rule #1 duplicates match[0] of rule #0, which comes first, so it never matches (expected more specific matches first, and no repeated matches)"],
            ),
            (
                "http:\n- match: [{uri: {prefix: /api}}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /api/v2}, headers: {x-a: {exact: b}}}]\n  route: [{destination: {host: svc.example.com}}]\n",
                &[
                    "t.yaml:10: Warning [IST0130] VirtualService default/vs: spec.http[1]: rule #1 is unreachable: all its matches are used by prior rules (expected the rule before the rules that shadow it, or removed)",
                    "t.yaml:10: Info [IST0131] VirtualService default/vs: spec.http[1].match[0]: match[0] of rule #1 is covered by match[0] of rule #0, which comes first, so it never matches (expected more specific matches first, and no repeated matches)",
                ],
            ),
            (
                "tcp:\n- route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n- match: [{port: 9000}]\n  route: [{destination: {host: svc.example.com, port: {number: 9000}}}]\n",
                &["t.yaml:9: Warning [IST0130] VirtualService default/vs: spec.tcp[1]: rule #1 is unreachable: rule #0 before it matches every connection (expected catch-all rules last)"],
            ),
        ]);
        // A more specific match first is fine, and so is a catch-all last.
        check(&[(
            "http:\n- match: [{uri: {prefix: /api/v2}}]\n  route: [{destination: {host: svc.example.com}}]\n- match: [{uri: {prefix: /api}}]\n  route: [{destination: {host: svc.example.com}}]\n- route: [{destination: {host: svc.example.com}}]\n",
            &[],
        )]);
    }
}
