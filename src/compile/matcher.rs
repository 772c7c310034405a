//! Compiled `HTTPMatchRequest`: everything decided at compile time (regexes built and anchored,
//! header names lower-cased), so matching a request is only comparisons.

use http::HeaderMap;
use regex::Regex;

use super::action::headers::HeaderError;
use super::error::CompileError;
use super::security::claims::Claims;
use crate::config::types::{HttpMatchRequest, StringMatch};

/// What a route matcher looks at; borrowed from the request, built once per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// `http` or `https` (the downstream scheme).
    pub scheme: &'a str,
    /// The raw Host / :authority, possibly with a port (Istio matches it raw).
    pub authority: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The request's verified JWT claims (`@request.auth.claims.*` matches), if any.
    pub claims: Option<&'a Claims>,
}

/// A compiled `StringMatch`.
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    /// Anchored: the whole value must match.
    Regex(Regex),
    /// `{}` or `regex: "*"`: the value only has to be present.
    Present,
}

impl StrMatch {
    /// Compiles a validated `StringMatch`. Errors only for regexes validation would also reject.
    pub fn compile(m: &StringMatch) -> Result<StrMatch, regex::Error> {
        Ok(if let Some(v) = &m.exact {
            StrMatch::Exact(v.clone())
        } else if let Some(v) = &m.prefix {
            StrMatch::Prefix(v.clone())
        } else if let Some(v) = &m.regex {
            if v == "*" {
                StrMatch::Present
            } else {
                StrMatch::Regex(anchored_regex(v)?)
            }
        } else {
            StrMatch::Present
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(v) => value == v,
            StrMatch::Prefix(p) => value.starts_with(p.as_str()),
            StrMatch::Regex(re) => re.is_match(value),
            StrMatch::Present => true,
        }
    }

    /// A `prefix: /` or `regex: .*` URI matcher: matches every path.
    pub fn is_match_all_uri(&self) -> bool {
        match self {
            StrMatch::Prefix(p) => p == "/",
            StrMatch::Regex(re) => re.as_str() == "^(?:.*)$",
            _ => false,
        }
    }
}

/// Istio regexes match the whole value (Envoy `safe_regex`).
pub fn anchored_regex(re: &str) -> Result<Regex, regex::Error> {
    crate::config::regex_cache::anchored(re)
}

/// The URI condition, with `ignoreUriCase` folded in at compile time.
#[derive(Debug, Clone)]
pub struct UriMatch {
    pub kind: StrMatch,
    pub ignore_case: bool,
}

impl UriMatch {
    pub fn matches(&self, path: &str) -> bool {
        match (&self.kind, self.ignore_case) {
            (StrMatch::Exact(v), true) => path.eq_ignore_ascii_case(v),
            (StrMatch::Prefix(p), true) => {
                path.len() >= p.len()
                    && path.is_char_boundary(p.len())
                    && path[..p.len()].eq_ignore_ascii_case(p)
            }
            (kind, _) => kind.matches(path),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: http::HeaderName,
    pub value: StrMatch,
}

/// `@request.auth.claims.NAME` (or `.a.b`, or `[a][b]`) in `headers`: Envoy's dynamic metadata
/// matcher on the jwt_authn payload (istio route.go `translateMetadataMatch`): a string claim
/// matches the value, a list claim when one of its strings does.
#[derive(Debug, Clone)]
pub struct ClaimMatch {
    pub path: Vec<String>,
    pub value: StrMatch,
}

impl ClaimMatch {
    /// The claim path of a header name, if it names one (istio pkg/jwt `ToRoutingClaim`).
    pub fn path_of(name: &str) -> Option<Vec<String>> {
        const PREFIX: &str = "@request.auth.claims";
        if !name.to_ascii_lowercase().starts_with(PREFIX) {
            return None;
        }
        let rest = &name[PREFIX.len()..];
        if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
            Some(dotted.split('.').map(str::to_string).collect())
        } else if rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']') {
            Some(
                rest[1..rest.len() - 1]
                    .split("][")
                    .map(str::to_string)
                    .collect(),
            )
        } else {
            None
        }
    }

    fn matches(&self, claims: Option<&Claims>) -> bool {
        claims.is_some_and(|c| c.any_string_at(&self.path, |v| self.value.matches(v)))
    }
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    pub value: StrMatch,
}

/// One match block: every condition must hold (AND). A route has one block; an Istio rule with
/// several blocks becomes several routes sharing one action (OR), as Envoy does.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    pub uri: Option<UriMatch>,
    pub scheme: Option<StrMatch>,
    pub method: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<HeaderMatch>,
    pub without_headers: Vec<HeaderMatch>,
    pub claims: Vec<ClaimMatch>,
    pub without_claims: Vec<ClaimMatch>,
    pub query_params: Vec<QueryMatch>,
}

impl RequestMatch {
    pub fn compile(m: &HttpMatchRequest) -> Result<RequestMatch, CompileError> {
        let regex = |field: String| move |source| CompileError::Regex { field, source };
        let sm = |m: &Option<StringMatch>, what: &str| -> Result<Option<StrMatch>, CompileError> {
            m.as_ref()
                .map(|m| StrMatch::compile(m).map_err(regex(what.to_string())))
                .transpose()
        };
        let claims = |map: &std::collections::BTreeMap<String, StringMatch>| -> Result<Vec<ClaimMatch>, CompileError> {
            map.iter()
                .filter_map(|(k, v)| Some((ClaimMatch::path_of(k)?, k, v)))
                .map(|(path, k, v)| {
                    Ok(ClaimMatch {
                        path,
                        value: StrMatch::compile(v).map_err(regex(format!("claim {k}")))?,
                    })
                })
                .collect()
        };
        let headers = |map: &std::collections::BTreeMap<String, StringMatch>| -> Result<Vec<HeaderMatch>, CompileError> {
            map.iter()
                // Istio ignores these pseudo-header names in `headers`; claims are not headers.
                .filter(|(k, _)| !matches!(k.as_str(), "uri" | "scheme" | "method" | "authority"))
                .filter(|(k, _)| !k.starts_with('@'))
                .map(|(k, v)| {
                    Ok(HeaderMatch {
                        name: http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|_| HeaderError::Name(k.clone()))?,
                        value: StrMatch::compile(v).map_err(regex(format!("header {k}")))?,
                    })
                })
                .collect()
        };
        Ok(RequestMatch {
            uri: sm(&m.uri, "uri")?.map(|kind| UriMatch {
                kind,
                ignore_case: m.ignore_uri_case,
            }),
            scheme: sm(&m.scheme, "scheme")?,
            method: sm(&m.method, "method")?,
            authority: sm(&m.authority, "authority")?,
            headers: headers(&m.headers)?,
            without_headers: headers(&m.without_headers)?,
            claims: claims(&m.headers)?,
            without_claims: claims(&m.without_headers)?,
            query_params: m
                .query_params
                .iter()
                .map(|(k, v)| {
                    Ok(QueryMatch {
                        name: k.clone(),
                        value: StrMatch::compile(v).map_err(regex(format!("query {k}")))?,
                    })
                })
                .collect::<Result<_, CompileError>>()?,
        })
    }

    /// Istio's catch-all: no condition, or only a URI that matches everything.
    pub fn is_catch_all(&self) -> bool {
        self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.without_headers.is_empty()
            && self.claims.is_empty()
            && self.without_claims.is_empty()
            && self.query_params.is_empty()
            && self.uri.as_ref().is_none_or(|u| u.kind.is_match_all_uri())
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(u) = &self.uri {
            if !u.matches(req.path) {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if !m.matches(req.method) {
                return false;
            }
        }
        if let Some(m) = &self.scheme {
            if !m.matches(req.scheme) {
                return false;
            }
        }
        if let Some(m) = &self.authority {
            if !m.matches(req.authority) {
                return false;
            }
        }
        for h in &self.headers {
            match header_value(req.headers, &h.name) {
                Some(v) => {
                    if !h.value.matches(&v) {
                        return false;
                    }
                }
                None => return false,
            }
        }
        for h in &self.without_headers {
            let value = header_value(req.headers, &h.name);
            let hit = match (&h.value, value) {
                (StrMatch::Present, v) => v.is_some(),
                // A missing header counts as empty.
                (m, v) => m.matches(v.as_deref().unwrap_or("")),
            };
            if hit {
                return false;
            }
        }
        if !self.claims.iter().all(|c| c.matches(req.claims)) {
            return false;
        }
        if self.without_claims.iter().any(|c| c.matches(req.claims)) {
            return false;
        }
        if !self.query_params.is_empty() {
            for q in &self.query_params {
                match query_value(req.query, &q.name) {
                    Some(v) => {
                        if !q.value.matches(v) {
                            return false;
                        }
                    }
                    None => return false,
                }
            }
        }
        true
    }
}

/// Envoy matches a header that appears several times against its values joined by `,`.
fn header_value<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Option<std::borrow::Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let first = first.to_str().unwrap_or("");
    match values.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first},{}", second.to_str().unwrap_or(""));
            for v in values {
                joined.push(',');
                joined.push_str(v.to_str().unwrap_or(""));
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

/// The first value of a query parameter (`a=1&b` gives `b` the empty value).
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: "GET",
            scheme: "http",
            authority: "a.com:8080",
            path,
            query,
            headers,
            claims: None,
        }
    }

    fn block(yaml: &str) -> RequestMatch {
        RequestMatch::compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn prefix_is_a_raw_string_prefix() {
        let h = HeaderMap::new();
        let m = block("uri: {prefix: /foo}");
        assert!(m.matches(&view("/foobar", None, &h)));
        assert!(!m.matches(&view("/fo", None, &h)));
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        let h = HeaderMap::new();
        let m = block("uri: {regex: '/a/[0-9]+'}");
        assert!(m.matches(&view("/a/12", None, &h)));
        assert!(!m.matches(&view("/a/12/x", None, &h)));
    }

    #[test]
    fn ignore_uri_case_applies_to_exact_and_prefix() {
        let h = HeaderMap::new();
        assert!(
            block("{uri: {exact: /Login}, ignoreUriCase: true}").matches(&view("/LOGIN", None, &h))
        );
        assert!(
            block("{uri: {prefix: /API}, ignoreUriCase: true}").matches(&view("/api/x", None, &h))
        );
        assert!(!block("{uri: {prefix: /API}}").matches(&view("/api/x", None, &h)));
    }

    #[test]
    fn headers_and_without_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "jason".parse().unwrap());
        assert!(block("headers: {x-user: {exact: jason}}").matches(&view("/", None, &h)));
        assert!(!block("headers: {x-user: {exact: bob}}").matches(&view("/", None, &h)));
        assert!(block("headers: {x-user: {}}").matches(&view("/", None, &h)));
        assert!(!block("headers: {x-other: {}}").matches(&view("/", None, &h)));
        assert!(!block("withoutHeaders: {x-user: {exact: jason}}").matches(&view("/", None, &h)));
        assert!(block("withoutHeaders: {x-other: {exact: y}}").matches(&view("/", None, &h)));
        assert!(!block("withoutHeaders: {x-user: {}}").matches(&view("/", None, &h)));
    }

    #[test]
    fn query_params_match_first_value() {
        let h = HeaderMap::new();
        let m = block("queryParams: {v: {exact: '2'}}");
        assert!(m.matches(&view("/", Some("a=1&v=2"), &h)));
        assert!(!m.matches(&view("/", Some("v=3"), &h)));
        assert!(!m.matches(&view("/", None, &h)));
    }

    #[test]
    fn jwt_claims_route_on_strings_lists_and_nested_claims() {
        // istio route.go translateMetadataMatch; pkg/jwt/routing.go ToRoutingClaim
        let h = HeaderMap::new();
        let Ok(serde_json::Value::Object(payload)) =
            serde_json::from_str(r#"{"group": "admin", "roles": ["a", "b"], "org": {"id": "7"}}"#)
        else {
            panic!()
        };
        let claims = Claims::normalized(payload, &[]);
        let with = |c| RequestView {
            claims: c,
            ..view("/", None, &h)
        };
        let m = block("headers: {'@request.auth.claims.group': {exact: admin}}");
        assert!(m.matches(&with(Some(&claims))));
        assert!(!m.matches(&with(None)), "no token, no claim");
        assert!(block("headers: {'@request.auth.claims.roles': {exact: b}}")
            .matches(&with(Some(&claims))));
        assert!(
            block("headers: {'@request.auth.claims.org.id': {exact: '7'}}")
                .matches(&with(Some(&claims)))
        );
        assert!(
            block("headers: {'@request.auth.claims[org][id]': {exact: '7'}}")
                .matches(&with(Some(&claims)))
        );
        assert!(
            !block("withoutHeaders: {'@request.auth.claims.group': {exact: admin}}")
                .matches(&with(Some(&claims)))
        );
        assert!(!block("headers: {'@request.auth.claims.group': {}}").is_catch_all());
    }

    #[test]
    fn catch_all_detection() {
        assert!(block("{}").is_catch_all());
        assert!(block("uri: {prefix: /}").is_catch_all());
        assert!(block("uri: {regex: '.*'}").is_catch_all());
        assert!(!block("{uri: {prefix: /}, headers: {a: {}}}").is_catch_all());
    }
}
