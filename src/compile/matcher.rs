//! Compiled `HTTPMatchRequest`: everything decided at compile time (regexes built and anchored,
//! header names lower-cased, what each header key reads), so matching a request is only
//! comparisons.
//!
//! Header keys are matched as Envoy matches Istio's translation of them (istio/istio
//! `pilot/pkg/networking/core/route/route.go`, `TranslateRouteMatch`): a pseudo-header
//! (`:method`, `:scheme`, `:authority`, `:path`) reads the request's own value, as Envoy's
//! header map holds it (`:path` with its query string); any other name reads the header; a JWT
//! claim (`@request.auth.claims.a.b`) becomes a dynamic-metadata matcher on the verified
//! token's payload (`translateMetadataMatch`): the claims RequestAuthentication verified
//! ([`RequestView::claims`], none without a valid token).

use std::borrow::Cow;

use http::HeaderMap;
use regex::Regex;

use super::action::headers::HeaderError;
use super::error::CompileError;
use super::security::claims::Claims;
use crate::config::types::{HttpMatchRequest, StringMatch};
use crate::config::validate::rules::routing_claim;

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
    /// The request's verified JWT claims (the payload Envoy's `jwt_authn` filter puts in
    /// dynamic metadata, `compile::security`), read by `@request.auth.claims.*` keys. None
    /// without a verified token: a claim match never matches then, and a `withoutHeaders`
    /// claim condition always holds, as Envoy's inverted metadata matcher does.
    pub claims: Option<&'a Claims>,
}

impl<'a> RequestView<'a> {
    /// A pseudo-header's value as Envoy's request header map holds it; None for `:status` and
    /// any other name, which a request does not have.
    fn pseudo(&self, name: Pseudo) -> Option<Cow<'a, str>> {
        Some(match name {
            Pseudo::Method => Cow::Borrowed(self.method),
            Pseudo::Scheme => Cow::Borrowed(self.scheme),
            Pseudo::Authority => Cow::Borrowed(self.authority),
            Pseudo::Path => match self.query {
                Some(q) => Cow::Owned(format!("{}?{q}", self.path)),
                None => Cow::Borrowed(self.path),
            },
            Pseudo::Status => return None,
        })
    }
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

/// A pseudo-header a match may name (Istio `pseudoHeaders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    Method,
    Scheme,
    Authority,
    Path,
    /// Valid in a match, but a request never has it.
    Status,
}

/// What a header key reads.
#[derive(Debug, Clone)]
pub enum HeaderKey {
    Header(http::HeaderName),
    Pseudo(Pseudo),
    /// The claim path inside the verified JWT payload.
    Claim(Vec<String>),
}

impl HeaderKey {
    fn compile(name: &str) -> Result<HeaderKey, HeaderError> {
        if let Some(path) = routing_claim(name) {
            return Ok(HeaderKey::Claim(path));
        }
        Ok(match name {
            ":method" => HeaderKey::Pseudo(Pseudo::Method),
            ":scheme" => HeaderKey::Pseudo(Pseudo::Scheme),
            ":authority" => HeaderKey::Pseudo(Pseudo::Authority),
            ":path" => HeaderKey::Pseudo(Pseudo::Path),
            ":status" => HeaderKey::Pseudo(Pseudo::Status),
            _ => HeaderKey::Header(
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| HeaderError::Name(name.to_string()))?,
            ),
        })
    }
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub key: HeaderKey,
    pub value: StrMatch,
}

impl HeaderMatch {
    /// A `headers` condition: the value is present and matches. A claim matches a string
    /// claim, or a list claim with a matching element (Istio `MetadataMatcherForJWTClaims`).
    fn holds(&self, req: &RequestView<'_>) -> bool {
        match &self.key {
            HeaderKey::Claim(path) => claim_matches(req.claims, path, &self.value),
            key => read(req, key).is_some_and(|v| self.value.matches(&v)),
        }
    }

    /// A `withoutHeaders` condition: the inverted match. Istio sets `invert_match`, and
    /// `treat_missing_header_as_empty` unless the match is a presence match; a claim matcher
    /// is inverted as Envoy's `MetadataMatcher` inverts it (`match ^ invert`).
    fn absent(&self, req: &RequestView<'_>) -> bool {
        let hit = match (&self.key, &self.value) {
            (HeaderKey::Claim(path), v) => claim_matches(req.claims, path, v),
            (key, StrMatch::Present) => read(req, key).is_some(),
            (key, m) => m.matches(read(req, key).as_deref().unwrap_or("")),
        };
        !hit
    }
}

fn read<'a>(req: &RequestView<'a>, key: &HeaderKey) -> Option<Cow<'a, str>> {
    match key {
        HeaderKey::Header(name) => header_value(req.headers, name),
        HeaderKey::Pseudo(p) => req.pseudo(*p),
        HeaderKey::Claim(_) => None,
    }
}

/// Envoy's JWT claim metadata match (istio route.go `translateMetadataMatch`): the value at
/// `path` in the payload is a string that matches, or a list with a string element that
/// matches.
fn claim_matches(claims: Option<&Claims>, path: &[String], m: &StrMatch) -> bool {
    claims.is_some_and(|c| c.any_string_at(path, |v| m.matches(v)))
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
        let headers = |map: &std::collections::BTreeMap<String, StringMatch>| -> Result<Vec<HeaderMatch>, CompileError> {
            map.iter()
                .map(|(k, v)| {
                    Ok(HeaderMatch {
                        key: HeaderKey::compile(k)?,
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
        if !self.headers.iter().all(|h| h.holds(req)) {
            return false;
        }
        if !self.without_headers.iter().all(|h| h.absent(req)) {
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

    /// Istio `TranslateRouteMatch`: a pseudo-header key becomes an Envoy header matcher on the
    /// pseudo-header, which Envoy's header map holds for every request (`:path` with the query).
    #[test]
    fn pseudo_header_keys_read_the_request() {
        let h = HeaderMap::new();
        let v = view("/api/x", Some("debug=1"), &h);
        assert!(block("headers: {':method': {exact: GET}}").matches(&v));
        assert!(!block("headers: {':method': {exact: POST}}").matches(&v));
        assert!(block("headers: {':scheme': {exact: http}}").matches(&v));
        assert!(block("headers: {':authority': {prefix: a.com}}").matches(&v));
        assert!(block("headers: {':path': {exact: /api/x?debug=1}}").matches(&v));
        assert!(block("withoutHeaders: {':path': {regex: '.*debug.*'}}")
            .matches(&view("/api", None, &h)));
        // A request has no :status: the match never holds, its inversion always does.
        assert!(!block("headers: {':status': {}}").matches(&v));
        assert!(block("withoutHeaders: {':status': {exact: '200'}}").matches(&v));
    }

    /// `withoutHeaders: {name: {regex: "*"}}` is a presence match (Istio
    /// `canBeConvertedToPresentMatch`), inverted: the route matches when the header is absent.
    #[test]
    fn without_headers_regex_star_means_present() {
        let mut h = HeaderMap::new();
        let m = block("withoutHeaders: {x-debug: {regex: '*'}}");
        assert!(m.matches(&view("/", None, &h)));
        h.insert("x-debug", "".parse().unwrap());
        assert!(!m.matches(&view("/", None, &h)));
    }

    #[test]
    fn token_header_names_match_lower_cased() {
        let mut h = HeaderMap::new();
        h.insert("x.foo", "1".parse().unwrap());
        h.insert("x~y", "2".parse().unwrap());
        assert!(block("headers: {x.foo: {exact: '1'}, X~Y: {exact: '2'}}")
            .matches(&view("/", None, &h)));
    }

    /// Claims are Envoy dynamic metadata: without a verified token there are none, so a claim
    /// match never holds and its `withoutHeaders` inversion always does (`MetadataMatcher`
    /// `match ^ invert`).
    #[test]
    fn claim_keys_need_verified_claims() {
        let h = HeaderMap::new();
        let v = view("/", None, &h);
        assert!(!block("headers: {'@request.auth.claims.group': {exact: admin}}").matches(&v));
        assert!(
            block("withoutHeaders: {'@request.auth.claims.group': {exact: admin}}").matches(&v)
        );
        // What RequestAuthentication supplies: strings, lists, nested claims.
        let Ok(serde_json::Value::Object(payload)) =
            serde_json::from_str(r#"{"group": ["dev", "admin"], "org": {"team": "edge"}, "n": 1}"#)
        else {
            panic!()
        };
        let claims = Claims::normalized(payload, &[]);
        let exact = |s: &str| StrMatch::Exact(s.into());
        assert!(claim_matches(
            Some(&claims),
            &["group".into()],
            &exact("admin")
        ));
        assert!(claim_matches(
            Some(&claims),
            &["org".into(), "team".into()],
            &exact("edge")
        ));
        assert!(!claim_matches(Some(&claims), &["n".into()], &exact("1")));
        assert!(!claim_matches(
            Some(&claims),
            &["missing".into()],
            &StrMatch::Present
        ));
        assert!(!claim_matches(None, &["group".into()], &StrMatch::Present));
    }

    #[test]
    fn a_match_type_left_out_matches_everything_present() {
        let h = HeaderMap::new();
        // Istio: `uri: {}` keeps Envoy's prefix "/", `method: {}` is a presence match.
        assert!(block("{uri: {}, method: {}}").matches(&view("/any", None, &h)));
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
