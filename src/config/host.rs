//! Istio host names: exact FQDNs, leftmost wildcards (`*.example.com`, `*`), and the matching,
//! subset and intersection rules of istio/istio `pkg/config/host/name.go`.

use std::cmp::Ordering;
use std::fmt;

/// A lower-cased host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// `*S`: the text after the `*` (`.example.com` for `*.example.com`, empty for `*`).
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(host: &str) -> HostPattern {
        let host = host.trim().to_ascii_lowercase();
        match host.strip_prefix('*') {
            Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
            None => HostPattern::Exact(host),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard(_))
    }

    pub fn is_any(&self) -> bool {
        matches!(self, HostPattern::Wildcard(s) if s.is_empty())
    }

    /// Istio `Name.Matches`: symmetric overlap.
    pub fn matches(&self, other: &HostPattern) -> bool {
        use HostPattern::*;
        match (self, other) {
            (Exact(a), Exact(b)) => a == b,
            (Wildcard(s), Exact(h)) | (Exact(h), Wildcard(s)) => h.ends_with(s.as_str()),
            (Wildcard(a), Wildcard(b)) => {
                if a.len() >= b.len() {
                    a.ends_with(b.as_str())
                } else {
                    b.ends_with(a.as_str())
                }
            }
        }
    }

    /// Istio `Name.SubsetOf`: every name `self` matches, `other` matches too.
    pub fn subset_of(&self, other: &HostPattern) -> bool {
        use HostPattern::*;
        match (self, other) {
            (_, Wildcard(s)) if s.is_empty() => true,
            (Wildcard(_), Exact(_)) => false,
            (Exact(a), Exact(b)) => a == b,
            (Exact(a), Wildcard(s)) => a.ends_with(s.as_str()),
            (Wildcard(a), Wildcard(b)) => a.ends_with(b.as_str()),
        }
    }

    /// Does a concrete request host (no port, lower-case) fall under this pattern?
    pub fn covers(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
        }
    }

    /// Most specific first: exact names, then wildcards by longer suffix, then `*`.
    pub fn specificity_cmp(&self, other: &HostPattern) -> Ordering {
        use HostPattern::*;
        match (self, other) {
            (Exact(a), Exact(b)) => a.cmp(b),
            (Exact(_), Wildcard(_)) => Ordering::Less,
            (Wildcard(_), Exact(_)) => Ordering::Greater,
            (Wildcard(a), Wildcard(b)) => b.len().cmp(&a.len()).then_with(|| a.cmp(b)),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// Istio `Intersection`: the hosts both lists cover, keeping the narrower side of each overlap.
pub fn intersection(a: &[HostPattern], b: &[HostPattern]) -> Vec<HostPattern> {
    let mut out: Vec<HostPattern> = Vec::new();
    for x in a {
        for y in b {
            if !x.matches(y) {
                continue;
            }
            let narrower = if x.subset_of(y) { x } else { y };
            if !out.contains(narrower) {
                out.push(narrower.clone());
            }
        }
    }
    out
}

/// A Gateway `server.hosts` entry: `[namespace/]host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHost {
    pub namespace: NamespaceSelector,
    pub host: HostPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceSelector {
    /// `*/` or no prefix: VirtualServices from any namespace.
    Any,
    /// `./`: the Gateway's own namespace (already resolved).
    Named(String),
}

impl ServerHost {
    /// Parses `ns/host`, `./host`, `*/host` or `host`; `gateway_ns` resolves `.`.
    pub fn parse(text: &str, gateway_ns: &str) -> ServerHost {
        let (ns, host) = match text.split_once('/') {
            Some((ns, host)) => (ns, host),
            None => ("*", text),
        };
        let namespace = match ns {
            "*" => NamespaceSelector::Any,
            "." => NamespaceSelector::Named(gateway_ns.to_string()),
            other => NamespaceSelector::Named(other.to_string()),
        };
        ServerHost {
            namespace,
            host: HostPattern::parse(host),
        }
    }

    pub fn admits_namespace(&self, ns: &str) -> bool {
        match &self.namespace {
            NamespaceSelector::Any => true,
            NamespaceSelector::Named(n) => n == ns,
        }
    }
}

/// Strips the port and any trailing dot from a Host / :authority / SNI value and lower-cases it
/// (allocation only when needed: the request path calls this).
pub fn normalize_request_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let mut host = raw.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        if let Some(end) = rest.find(']') {
            host = &rest[..end];
        }
    } else if let Some((h, port)) = host.rsplit_once(':') {
        if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) {
            host = h;
        }
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// What is wrong with the port of a `host:port` authority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Not 1-65535 in decimal digits (`host:65616`, `host:abc`, `host:-1`, `host:0`).
    #[error("port `{0}` is not a port number (1-65535)")]
    BadPort(String),
    /// `[v6` without its `]`, or bytes after `]` that are not `:port`.
    #[error("malformed IPv6 literal")]
    BadLiteral,
}

/// `host:port` → (host, port), leniently: an authority whose port is not a port is returned
/// whole, without one (for building a `Location`; routing uses [`parse_authority`]).
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    parse_authority(authority).unwrap_or((authority, None))
}

/// `host[:port]` → (host, port), IPv6 literals keeping their brackets. A port that is written
/// must be a port (RFC 3986 `port = *DIGIT`, 1-65535): `host:65616` is an error, never the
/// default port. An empty port (`host:`) is no port (RFC 3986 §3.2.3). A bare IPv6 address
/// (`::1`, several colons) has no port.
pub fn parse_authority(authority: &str) -> Result<(&str, Option<u16>), AuthorityError> {
    let (host, port) = if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(AuthorityError::BadLiteral);
        };
        match &authority[close + 1..] {
            "" => return Ok((authority, None)),
            rest => match rest.strip_prefix(':') {
                Some(p) => (&authority[..=close], p),
                None => return Err(AuthorityError::BadLiteral),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p),
            _ => return Ok((authority, None)),
        }
    };
    if port.is_empty() {
        return Ok((host, None));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok((host, Some(p))),
        _ => Err(AuthorityError::BadPort(
            super::diag::shorten(port, 16).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostPattern {
        HostPattern::parse(s)
    }

    #[test]
    fn matches_follows_istio() {
        assert!(h("*.com").matches(&h("foo.com")));
        assert!(h("*.com").matches(&h("a.b.com")));
        assert!(!h("*.foo.com").matches(&h("foo.com")));
        assert!(h("*").matches(&h("anything.org")));
        assert!(h("*.foo.com").matches(&h("*.com")));
        assert!(h("a.com").matches(&h("A.COM")));
        assert!(!h("a.com").matches(&h("b.com")));
    }

    #[test]
    fn subset_is_one_directional() {
        assert!(h("a.foo.com").subset_of(&h("*.foo.com")));
        assert!(!h("*.foo.com").subset_of(&h("a.foo.com")));
        assert!(h("*.a.com").subset_of(&h("*.com")));
        assert!(h("*").subset_of(&h("*")));
        assert!(!h("*").subset_of(&h("*.com")));
    }

    #[test]
    fn intersection_keeps_the_narrower_side() {
        assert_eq!(
            intersection(&[h("*.foo.com")], &[h("a.foo.com")]),
            vec![h("a.foo.com")]
        );
        assert_eq!(
            intersection(&[h("a.foo.com")], &[h("*.foo.com")]),
            vec![h("a.foo.com")]
        );
        assert_eq!(
            intersection(&[h("*")], &[h("x.com"), h("*.y.com")]),
            vec![h("x.com"), h("*.y.com")]
        );
        assert!(intersection(&[h("a.com")], &[h("b.com")]).is_empty());
    }

    #[test]
    fn wildcard_precedence_orders_exact_then_longest_suffix_then_any() {
        let mut v = vec![h("*"), h("*.com"), h("a.b.com"), h("*.b.com")];
        v.sort_by(|a, b| a.specificity_cmp(b));
        assert_eq!(v, vec![h("a.b.com"), h("*.b.com"), h("*.com"), h("*")]);
    }

    #[test]
    fn covers_needs_a_label_before_the_suffix() {
        assert!(h("*.b.com").covers("a.b.com"));
        assert!(!h("*.b.com").covers(".b.com"));
        assert!(h("*").covers("x"));
    }

    #[test]
    fn server_hosts_parse_namespaces() {
        let s = ServerHost::parse("./a.com", "gw-ns");
        assert_eq!(s.namespace, NamespaceSelector::Named("gw-ns".into()));
        assert!(ServerHost::parse("a.com", "x").admits_namespace("other"));
        assert!(!ServerHost::parse("prod/a.com", "x").admits_namespace("dev"));
        assert!(ServerHost::parse("*/*", "x").host.is_any());
    }

    #[test]
    fn request_hosts_drop_port_and_case() {
        assert_eq!(normalize_request_host("A.com:8443"), "a.com");
        assert_eq!(normalize_request_host("a.com."), "a.com");
        assert_eq!(normalize_request_host("[::1]:80"), "::1");
        assert_eq!(normalize_request_host("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(parse_authority("a.com:8443"), Ok(("a.com", Some(8443))));
        assert_eq!(parse_authority("a.com"), Ok(("a.com", None)));
        assert_eq!(parse_authority("a.com:"), Ok(("a.com", None)));
        assert_eq!(parse_authority("a.com:080"), Ok(("a.com", Some(80))));
        assert_eq!(parse_authority("[::1]:443"), Ok(("[::1]", Some(443))));
        assert_eq!(parse_authority("[::1]"), Ok(("[::1]", None)));
        assert_eq!(parse_authority("::1"), Ok(("::1", None)));
    }

    #[test]
    fn a_written_port_that_is_not_a_port_is_an_error_not_the_default() {
        for bad in [
            "a.com:65616",
            "a.com:abc",
            "a.com:-1",
            "a.com:+80",
            "a.com:0",
            "[::1]:99999",
        ] {
            assert!(
                matches!(parse_authority(bad), Err(AuthorityError::BadPort(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_authority("[::1"), Err(AuthorityError::BadLiteral));
        assert_eq!(parse_authority("[::1]x"), Err(AuthorityError::BadLiteral));
        let huge = format!("a.com:{}", "9".repeat(100_000));
        let err = parse_authority(&huge).unwrap_err().to_string();
        assert!(err.len() < 80, "{err}");
    }
}
