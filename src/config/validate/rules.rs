//! Checks shared by every kind: DNS names and hosts, IPs and CIDRs, ports, RE2 regexes,
//! durations, percentages, header names and values, string matches, `exportTo`, selectors.
//!
//! Value checks return `Err(message)` so each caller reports it at its own field path; the
//! helpers that take a [`Reporter`] report several findings themselves.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::config::diag::Reporter;
use crate::config::types::{Duration, Percent, StringMatch};

/// An optional string field that is present and not empty.
pub(crate) fn is_set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

/// Istio `labels.IsDNS1123Label`: 1–63 of `[a-zA-Z0-9-]`, starting and ending alphanumeric.
/// (Istio accepts upper case here, so does Portcullis.)
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Istio `labels.IsWildcardDNS1123Label`: `*`, or a label optionally prefixed by `*` or `*-`.
pub(crate) fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > 63 {
        return false;
    }
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    is_dns1123_label(rest)
}

const DNS_EXPECTED: &str = "labels of letters, digits and '-', at most 63 characters each";

fn dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".into());
    }
    if name.len() > 255 {
        return Err(format!(
            "domain name `{name}` is too long ({} characters; expected at most 255)",
            name.len()
        ));
    }
    Ok(())
}

/// Istio `ValidateDNS1123Labels`: dot-separated labels, a trailing dot allowed, and a top-level
/// label that is not all digits.
fn dns1123_labels(whole: &str, domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts[parts.len() - 1];
    if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name `{whole}` is invalid: top-level label `{tld}` is all digits (expected a name, or an IP address where one is allowed)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name `{whole}` is invalid: label `{label}` (expected {DNS_EXPECTED})"
            ));
        }
    }
    Ok(())
}

/// Istio `ValidateFQDN`: a DNS name without wildcards (a single label is accepted, as in Istio).
pub(crate) fn check_fqdn(name: &str) -> Result<(), String> {
    dns1123_preconditions(name)?;
    dns1123_labels(name, name)
}

/// Istio `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard (`*`, `*.x`,
/// and the partial `*x.y` that Istio lets through here).
pub(crate) fn check_wildcard_domain(name: &str) -> Result<(), String> {
    dns1123_preconditions(name)?;
    let (first, rest) = match name.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name `{name}` is invalid: label `{first}` (expected {DNS_EXPECTED}, and `*` only as the whole leftmost label)"
        ));
    }
    match rest {
        Some(rest) => dns1123_labels(name, rest),
        None => Ok(()),
    }
}

/// A wildcard anywhere but as the whole leftmost label (`*foo.com`, `foo.*.com`).
pub(crate) fn is_partial_wildcard(host: &str) -> bool {
    let whole_leftmost = host == "*" || (host.starts_with("*.") && !host[1..].contains('*'));
    host.contains('*') && !whole_leftmost
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub(crate) fn check_ip_or_cidr(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((ip, bits)) => {
            let ok = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 32),
                Ok(IpAddr::V6(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 128),
                Err(_) => false,
            };
            if ok && !bits.starts_with('+') {
                Ok(())
            } else {
                Err(format!(
                    "`{s}` is not a valid CIDR block (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"
                ))
            }
        }
        None if is_ip(s) => Ok(()),
        None => Err(format!(
            "`{s}` is not a valid IP address (expected e.g. 10.0.0.1 or 2001:db8::1)"
        )),
    }
}

/// `unix://` socket paths: absolute and not a directory, or `@abstract`.
pub(crate) fn check_unix_address(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(
            "unix address must not be empty (expected unix:///path/to/socket or unix://@name)"
                .into(),
        );
    }
    if path.starts_with('@') {
        return Ok(());
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "`{path}` is not an absolute path to a socket file (expected unix:///path/to/socket or unix://@name)"
        ));
    }
    Ok(())
}

pub(crate) fn check_port(n: u32) -> Result<(), String> {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "port number {n} is out of range (expected 1-65535)"
        ))
    }
}

pub(crate) const MAX_REGEX_LEN: usize = 1024;

/// An RE2 regex as Envoy's `safe_regex` uses it: at most 1024 characters, and it must compile as
/// a whole-value match. The `regex` crate has RE2's semantics, so PCRE-only syntax (look-around,
/// backreferences) fails here exactly as it makes Envoy reject the route table.
pub(crate) fn check_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex string match should not be empty (expected an RE2 regex)".into());
    }
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex is too large: {} characters (expected at most {MAX_REGEX_LEN})",
            re.len()
        ));
    }
    match crate::config::regex_cache::anchored(re) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "regex `{re}` does not compile: {} (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)",
            regex_error_reason(&e)
        )),
    }
}

/// The one-line reason out of the regex crate's multi-line error.
fn regex_error_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or(""))
        .trim()
        .to_string()
}

fn show_duration(d: std::time::Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000) || d < std::time::Duration::from_micros(1) {
        format!("{}ns", d.as_nanos())
    } else if !d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Istio `ValidateDuration`: at least 1ms, in whole milliseconds.
pub(crate) fn check_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err(format!(
            "duration {} is below 1ms (expected at least 1ms)",
            show_duration(d)
        ));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "duration {} is not a whole number of milliseconds (expected millisecond precision)",
            show_duration(d)
        ));
    }
    Ok(())
}

/// Istio `validatePercentage`: 0, or 0.0001–100.
pub(crate) fn check_percent(p: Percent) -> Result<(), String> {
    let v = p.value;
    if !(0.0..=100.0).contains(&v) || v.is_nan() {
        return Err(format!(
            "percentage {v} is out of range (expected 0 to 100)"
        ));
    }
    if v > 0.0 && v < 0.0001 {
        return Err(format!(
            "percentage {v} is too small (expected 0, or 0.0001 to 100)"
        ));
    }
    Ok(())
}

/// The pseudo-headers a header match may name (istio/istio `pkg/config/validation/
/// validation.go`, `pseudoHeaders`, RFC 7540 §8.1.2).
pub(crate) const PSEUDO_HEADERS: [&str; 5] =
    [":method", ":scheme", ":authority", ":path", ":status"];

/// Istio `ValidateHTTPHeaderNameOrJwtClaimRoute` (istio/istio `pkg/config/validation/
/// validation.go`, since istio/istio#54602): a header *match* key is a JWT claim route
/// (`@request.auth.claims.NAME`), a pseudo-header, or any RFC 9110 token (`x.foo`, `x~y`,
/// upper case too: Envoy lower-cases header names).
pub(crate) fn check_header_name_or_jwt_claim(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if routing_claim(name).is_some() || PSEUDO_HEADERS.contains(&name) {
        return Ok(());
    }
    if !is_http_token(name) {
        return Err(format!(
            "header name {name} is not a valid header name (expected an HTTP token: letters, digits and !#$%&'*+-.^_`|~, a pseudo-header such as :method, or @request.auth.claims.NAME)"
        ));
    }
    Ok(())
}

/// Istio `ValidateCORSHTTPHeaderName`: `*` or an RFC 9110 token.
pub(crate) fn check_cors_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name == "*" || is_http_token(name) {
        return Ok(());
    }
    Err(format!(
        "header name {name} is not a valid header name (expected `*` or an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"
    ))
}

/// Istio `jwt.ToRoutingClaim` (istio/istio `pkg/jwt/routing.go`): the claim path of a
/// `@request.auth.claims.a.b` or `@request.auth.claims[a][b]` header name (the prefix in any
/// case), or None for any other name.
pub fn routing_claim(name: &str) -> Option<Vec<String>> {
    const PREFIX: &str = "@request.auth.claims";
    if name.len() < PREFIX.len()
        || !name.is_char_boundary(PREFIX.len())
        || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
    {
        return None;
    }
    let rest = &name[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        return Some(dotted.split('.').map(str::to_string).collect());
    }
    if rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']') {
        return Some(
            rest[1..rest.len() - 1]
                .split("][")
                .map(str::to_string)
                .collect(),
        );
    }
    None
}

/// A header name that HTTP allows (RFC 9110 token).
pub(crate) fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Istio `ValidateHTTPHeaderValue`: no control characters except tab, and `%` only as `%%` or
/// around an Envoy formatter such as `%HOSTNAME%` or `%REQ(x-id)%`.
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    if let Some(c) = value
        .chars()
        .find(|c| (c.is_control() && *c != '\t') || *c == '\u{7f}')
    {
        return Err(format!(
            "header value {value:?} contains control character {:?} (expected printable text)",
            c
        ));
    }
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'%') {
            i += 2;
            continue;
        }
        let starts_formatter = b.get(i + 1).is_some_and(|c| c.is_ascii_uppercase());
        let close = b[i + 1..]
            .iter()
            .position(|c| *c == b'%')
            .map(|p| i + 1 + p);
        match close {
            Some(end) if starts_formatter => i = end + 1,
            _ => {
                return Err(format!(
                    "header value {value:?} has an unescaped `%` (expected `%%` for a literal percent sign, or a formatter such as %HOSTNAME%)"
                ))
            }
        }
    }
    Ok(())
}

/// How a `StringMatch` is validated where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchUse {
    /// `uri`: Istio `validateStringMatchRegexp` only (an empty prefix is allowed, as Envoy's
    /// path prefix allows it).
    Uri,
    /// Everything else: Istio `validateStringMatch` (a prefix must not be empty).
    Other,
}

/// A `StringMatch` at `path`, as Istio's webhook checks it. No match type at all (`{}`) is
/// valid: Istio matches every path for `uri` and presence elsewhere (`route.go`
/// `TranslateRouteMatch`, `canBeConvertedToPresentMatch`). Two match types at once break the
/// API's `oneof` and are rejected with the schema.
pub(crate) fn check_string_match(r: &mut Reporter, path: &str, sm: &StringMatch, used: MatchUse) {
    let n = sm.set_count();
    if n > 1 {
        r.error(
            path,
            format!("sets {n} of exact, prefix and regex (expected exactly one: StringMatch is a oneof)"),
        );
        return;
    }
    if let Some(p) = &sm.prefix {
        if p.is_empty() && used == MatchUse::Other {
            r.error(
                format!("{path}.prefix"),
                "prefix string match should not be empty (expected e.g. `/`)",
            );
        }
    }
    if let Some(re) = &sm.regex {
        if let Err(m) = check_regex(re) {
            r.error(format!("{path}.regex"), m);
        }
    }
}

/// `exportTo`: `*`, `.`, `~` or namespace names; no duplicates (`.` counts as the own
/// namespace); `*` and `~` only alone.
pub(crate) fn check_export_to(r: &mut Reporter, path: &str, namespace: &str, export_to: &[String]) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (i, e) in export_to.iter().enumerate() {
        let key = if e == "." { namespace } else { e.as_str() };
        if let Some(first) = seen.insert(key, e) {
            let what = if first != e {
                format!(". and the own namespace `{namespace}`")
            } else {
                format!("`{e}`")
            };
            r.error(
                format!("{path}[{i}]"),
                format!(
                    "Duplicate value: exportTo lists {what} twice (expected each namespace once)"
                ),
            );
            continue;
        }
        if !matches!(e.as_str(), "*" | "." | "~") && !is_dns1123_label(e) {
            r.error(
                format!("{path}[{i}]"),
                format!(
                    "invalid exportTo value `{e}` (expected `*`, `.`, `~` or a namespace name)"
                ),
            );
        }
    }
    if export_to.len() > 1 {
        for special in ["*", "~"] {
            if let Some(i) = export_to.iter().position(|e| e == special) {
                r.error(
                    format!("{path}[{i}]"),
                    format!(
                        "`{special}` cannot be combined with other exportTo values (expected `{special}` alone)"
                    ),
                );
            }
        }
    }
}

/// Selector labels (`workloadSelector.labels`): no empty key, no `*` (Istio selects nothing
/// with wildcards; they are rejected).
pub(crate) fn check_selector_labels(
    r: &mut Reporter,
    path: &str,
    labels: &BTreeMap<String, String>,
) {
    for (k, v) in labels {
        if k.is_empty() {
            r.error(
                path,
                format!("empty key is not supported in selector: `{k}={v}` (expected label keys)"),
            );
        }
        if k.contains('*') || v.contains('*') {
            r.error(
                format!("{path}.{k}"),
                format!("wildcard is not supported in selector: `{k}={v}` (expected exact label values)"),
            );
        }
    }
}

/// Istio's gateway reference syntax in `gateways`: `mesh`, `name`, `ns/name` (both parts
/// DNS-1123 labels), or the legacy `name.ns.svc.cluster.local` (an FQDN).
pub(crate) fn check_gateway_name(name: &str) -> Result<(), String> {
    if name == "mesh" {
        return Ok(());
    }
    match name.split_once('/') {
        Some((ns, gw)) => {
            if ns.is_empty() || gw.is_empty() {
                return Err(format!(
                    "gateway reference `{name}` has an empty namespace or name (expected `namespace/name`)"
                ));
            }
            if !is_dns1123_label(ns) && ns != "." {
                return Err(format!(
                    "invalid namespace `{ns}` in gateway reference `{name}` (expected a DNS-1123 label)"
                ));
            }
            if !is_dns1123_label(gw) {
                return Err(format!(
                    "invalid gateway name `{gw}` in gateway reference `{name}` (expected a DNS-1123 label)"
                ));
            }
            Ok(())
        }
        None => check_fqdn(name).map_err(|m| format!("invalid gateway reference: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_follow_istio() {
        assert!(is_dns1123_label("a-b0"));
        assert!(is_dns1123_label("Upper"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a_b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_wildcard_dns1123_label("*"));
        assert!(is_wildcard_dns1123_label("*foo"));
        assert!(is_wildcard_dns1123_label("*-foo"));
        assert!(!is_wildcard_dns1123_label("foo*"));
    }

    #[test]
    fn domains() {
        assert!(check_wildcard_domain("*.example.com").is_ok());
        assert!(check_wildcard_domain("*x.example.com").is_ok());
        assert!(check_wildcard_domain("reviews").is_ok());
        assert!(check_wildcard_domain("istio.io.").is_ok());
        assert_eq!(
            check_wildcard_domain("a.*.com").unwrap_err(),
            "domain name `a.*.com` is invalid: label `*` (expected labels of letters, digits and '-', at most 63 characters each)"
        );
        assert!(check_wildcard_domain("1.2.3.4")
            .unwrap_err()
            .contains("all digits"));
        assert!(check_fqdn("*.a.com").is_err());
        assert!(is_partial_wildcard("*foo.com"));
        assert!(is_partial_wildcard("foo.*.com"));
        assert!(is_partial_wildcard("*.*.com"));
        assert!(!is_partial_wildcard("*.foo.com"));
        assert!(!is_partial_wildcard("*"));
    }

    #[test]
    fn addresses() {
        assert!(check_ip_or_cidr("1.2.3.4").is_ok());
        assert!(check_ip_or_cidr("001:db8::").is_ok());
        assert!(check_ip_or_cidr("1.2.3.4/16").is_ok());
        assert!(check_ip_or_cidr("1.2.3.4/99").is_err());
        assert!(check_ip_or_cidr("example.com").is_err());
        assert!(check_unix_address("/var/run/s").is_ok());
        assert!(check_unix_address("@abstract").is_ok());
        assert!(check_unix_address("rel/path").is_err());
    }

    #[test]
    fn regexes_are_re2_and_whole_value() {
        assert!(check_regex("b.*").is_ok());
        assert!(check_regex("^(.*?;)?(user=dev-123)(;.*)?").is_ok());
        assert_eq!(
            check_regex("(?!foo).*").unwrap_err(),
            "regex `(?!foo).*` does not compile: look-around, including look-ahead and look-behind, is not supported (expected RE2 syntax, matched against the whole value; PCRE look-around and backreferences are not supported)"
        );
        assert!(check_regex(&"a".repeat(1025))
            .unwrap_err()
            .contains("at most 1024"));
        assert!(check_regex("*").is_err());
    }

    #[test]
    fn durations_and_percentages() {
        assert!(check_duration(Duration::parse("1ms").unwrap()).is_ok());
        assert_eq!(
            check_duration(Duration::parse("500us").unwrap()).unwrap_err(),
            "duration 500us is below 1ms (expected at least 1ms)"
        );
        assert_eq!(
            check_duration(Duration::parse("1500us").unwrap()).unwrap_err(),
            "duration 1500us is not a whole number of milliseconds (expected millisecond precision)"
        );
        assert!(check_percent(Percent { value: 100.0 }).is_ok());
        assert!(check_percent(Percent { value: 0.0 }).is_ok());
        assert!(check_percent(Percent { value: 101.0 }).is_err());
        assert!(check_percent(Percent { value: -1.0 }).is_err());
    }

    #[test]
    fn header_values() {
        for ok in [
            "foo",
            "%HOSTNAME%",
            "100%%",
            "prefix %HOSTNAME% suffix",
            "%REQ(x-id)%",
            "a\tb",
        ] {
            assert!(check_header_value(ok).is_ok(), "{ok}");
        }
        for bad in ["abc%123", "%START_TIME%%", "a\nb", "a\u{7f}"] {
            assert!(check_header_value(bad).is_err(), "{bad}");
        }
        assert!(check_cors_header_name("x.foo").is_ok());
        assert!(check_cors_header_name("*").is_ok());
        assert!(check_cors_header_name("x y").is_err());
    }

    /// Istio's own cases for `ValidateHTTPHeaderNameOrJwtClaimRoute` and `ToRoutingClaim`
    /// (istio/istio `pkg/config/validation/validation_test.go`, `pkg/jwt/routing_test.go`).
    #[test]
    fn header_match_names_follow_istio() {
        for ok in [
            "x-foo",
            "X-Foo",
            "x.foo",
            "x~y",
            "x_y",
            "!#$%&'*+-.^_`|~",
            ":method",
            ":scheme",
            ":authority",
            ":path",
            ":status",
            "@request.auth.claims.group",
            "@request.auth.claims.a.b",
            "@request.auth.claims[a][b]",
            "@Request.Auth.Claims.x",
        ] {
            assert!(check_header_name_or_jwt_claim(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "x y",
            ":foo",
            "x:y",
            "@request.auth.claims",
            "@request.auth.claims.",
            "x\"y",
        ] {
            assert!(check_header_name_or_jwt_claim(bad).is_err(), "{bad}");
        }
        assert_eq!(
            routing_claim("@request.auth.claims.a.b").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            routing_claim("@request.auth.claims[a.b][c]").unwrap(),
            ["a.b", "c"]
        );
        assert_eq!(routing_claim("@request.auth.claims[]"), None);
        assert_eq!(routing_claim("x-user"), None);
    }

    #[test]
    fn gateway_names() {
        assert!(check_gateway_name("mesh").is_ok());
        assert!(check_gateway_name("ns/gw").is_ok());
        assert!(check_gateway_name("gw.ns.svc.cluster.local").is_ok());
        assert!(check_gateway_name("ns/gw~x").is_err());
        assert!(check_gateway_name("/gw").is_err());
    }
}
