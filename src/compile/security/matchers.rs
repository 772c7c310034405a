//! The string, address and path matchers Istio's authorization model generates, compiled once
//! per reload: Envoy `StringMatcher` (exact, prefix, suffix, `safe_regex`, optionally ignoring
//! case), `CidrRange`, and the `uri_template` path matcher for `{*}` / `{**}`.
//! Sources: istio `pilot/pkg/security/authz/matcher/{string,header,template}.go`, envoy
//! `source/common/common/matchers.cc`, `source/extensions/path/match/uri_template/`.

use std::net::IpAddr;

use regex::Regex;

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StrMatcher {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    /// Anchored (`safe_regex` matches the whole value).
    Regex(Regex),
    /// A pattern that did not compile: matches nothing.
    Never,
}

impl StrMatcher {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatcher::Exact(s, false) => v == s,
            StrMatcher::Exact(s, true) => v.eq_ignore_ascii_case(s),
            StrMatcher::Prefix(s, false) => v.starts_with(s.as_str()),
            StrMatcher::Prefix(s, true) => {
                v.len() >= s.len()
                    && v.is_char_boundary(s.len())
                    && v[..s.len()].eq_ignore_ascii_case(s)
            }
            StrMatcher::Suffix(s, false) => v.ends_with(s.as_str()),
            StrMatcher::Suffix(s, true) => {
                v.len() >= s.len()
                    && v.is_char_boundary(v.len() - s.len())
                    && v[v.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            StrMatcher::Regex(re) => re.is_match(v),
            StrMatcher::Never => false,
        }
    }

    pub fn regex(re: &str) -> StrMatcher {
        // Patterns built here from quoted literals always compile; a failure matches nothing.
        match Regex::new(&format!("^(?:{re})$")) {
            Ok(r) => StrMatcher::Regex(r),
            Err(_) => StrMatcher::Never,
        }
    }

    /// Istio `StringMatcherWithPrefix`: `*` is `.+` (any non-empty value), `*x` a suffix,
    /// `x*` a prefix, else exact; `prefix` is prepended (and ignored for `*`).
    pub fn istio(v: &str, prefix: &str) -> StrMatcher {
        if v == "*" {
            StrMatcher::regex(".+")
        } else if let Some(rest) = v.strip_prefix('*') {
            if prefix.is_empty() {
                StrMatcher::Suffix(rest.to_string(), false)
            } else {
                StrMatcher::regex(&format!(
                    "{}.*{}",
                    regex::escape(prefix),
                    regex::escape(rest)
                ))
            }
        } else if let Some(rest) = v.strip_suffix('*') {
            StrMatcher::Prefix(format!("{prefix}{rest}"), false)
        } else {
            StrMatcher::Exact(format!("{prefix}{v}"), false)
        }
    }
}

/// Istio `HeaderMatcher` / `HostMatcher` over a header value: `*` is presence, `*x` suffix,
/// `x*` prefix, else exact (hosts ignore case).
#[derive(Debug, Clone)]
pub enum HeaderValueMatch {
    Present,
    Str(StrMatcher),
}

impl HeaderValueMatch {
    pub fn istio(v: &str, ignore_case: bool) -> HeaderValueMatch {
        if v == "*" {
            HeaderValueMatch::Present
        } else if let Some(rest) = v.strip_prefix('*') {
            HeaderValueMatch::Str(StrMatcher::Suffix(rest.to_string(), ignore_case))
        } else if let Some(rest) = v.strip_suffix('*') {
            HeaderValueMatch::Str(StrMatcher::Prefix(rest.to_string(), ignore_case))
        } else {
            HeaderValueMatch::Str(StrMatcher::Exact(v.to_string(), ignore_case))
        }
    }

    /// Envoy: a missing header matches nothing (not even presence).
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (_, None) => false,
            (HeaderValueMatch::Present, Some(_)) => true,
            (HeaderValueMatch::Str(m), Some(v)) => m.matches(v),
        }
    }
}

/// Envoy `CidrRange`; a bare address is a /32 (or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `10.1.2.3` or `::1`; `None` when it is neither.
    pub fn parse(v: &str) -> Option<Cidr> {
        let (addr, len) = match v.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (v.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Cidr { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Istio's path matcher: `{*}`/`{**}` templates become Envoy `uri_template` matchers, anything
/// else a `StringMatcher` (`*` any non-empty path, `*x` suffix, `x*` prefix, exact). Matched
/// against the path without its query (Envoy RBAC `url_path`).
#[derive(Debug, Clone)]
pub struct PathMatch(StrMatcher);

/// `uri_template` literal characters (RFC 3986 pchar minus `/`, as Envoy allows them).
const PATH_LITERAL: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]";

impl PathMatch {
    pub fn istio(v: &str) -> PathMatch {
        if !(v.contains("{*}") || v.contains("{**}")) {
            return PathMatch(StrMatcher::istio(v, ""));
        }
        // envoy uri_template: `*` is one non-empty segment, `**` any number of them (last).
        let mut re = String::new();
        for (i, seg) in v.split('/').enumerate() {
            if i > 0 {
                re.push('/');
            }
            match seg {
                "{*}" | "*" => re.push_str(&format!("{PATH_LITERAL}+")),
                "{**}" | "**" => re.push_str(&format!("(?:{PATH_LITERAL}|/)*")),
                lit => re.push_str(&regex::escape(lit)),
            }
        }
        PathMatch(StrMatcher::regex(&re))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_matchers() {
        // istio matcher/string.go StringMatcherWithPrefix
        assert!(StrMatcher::istio("*", "").matches("x"));
        assert!(!StrMatcher::istio("*", "").matches(""));
        assert!(StrMatcher::istio("*.example.com", "").matches("a.example.com"));
        assert!(StrMatcher::istio("/admin*", "").matches("/admin/x"));
        assert!(StrMatcher::istio("ns/a", "spiffe://").matches("spiffe://ns/a"));
        assert!(StrMatcher::istio("*/sa/b", "spiffe://").matches("spiffe://td/ns/x/sa/b"));
        assert!(!StrMatcher::istio("*/sa/b", "spiffe://").matches("td/ns/x/sa/b"));
    }

    #[test]
    fn hosts_ignore_case_and_keep_the_port() {
        // istio matcher/header.go HostMatcher: exact, ignore case; `host:80` is another value.
        let m = HeaderValueMatch::istio("Example.COM", true);
        assert!(m.matches(Some("example.com")));
        assert!(!m.matches(Some("example.com:80")));
        assert!(HeaderValueMatch::istio("example.com:*", true).matches(Some("example.com:8080")));
        assert!(!HeaderValueMatch::istio("*", true).matches(None));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.2.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }

    #[test]
    fn path_templates() {
        // istio matcher/template.go + envoy uri_template: {*} one segment, {**} the rest.
        let one = PathMatch::istio("/api/{*}/info");
        assert!(one.matches("/api/v1/info"));
        assert!(!one.matches("/api/v1/x/info"));
        let any = PathMatch::istio("/api/{**}");
        assert!(any.matches("/api/v1/x/info"));
        assert!(!any.matches("/other/v1"));
        assert!(PathMatch::istio("*.html").matches("/a/b.html"));
    }
}
