//! Compiled route actions: what happens once a route matched. Everything that can be decided
//! from config is decided here (header names parsed, regexes built, weights summed); the runtime
//! only applies them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use regex::Regex;
use serde::{Serialize, Serializer};

use super::matcher::StrMatch;
use crate::config::types::{CorsPolicy, HeaderOperations, HttpFaultInjection, HttpRetry};
use crate::upstream::Cluster;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

/// `route`: weighted destinations plus the rewrite applied on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Forward {
    pub destinations: Vec<WeightedCluster>,
    #[serde(skip)]
    total_weight: u32,
    #[serde(skip_serializing_if = "Rewrite::is_empty")]
    pub rewrite: Rewrite,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedCluster {
    #[serde(serialize_with = "cluster_name")]
    pub cluster: Arc<Cluster>,
    pub weight: u32,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
}

fn cluster_name<S: Serializer>(c: &Arc<Cluster>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.name)
}

fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
        None => s.serialize_none(),
    }
}

impl Forward {
    /// `destinations` must be non-empty (validation guarantees it); weight-0 entries are dropped
    /// and relative weights kept, as Istio does.
    pub fn new(
        mut destinations: Vec<WeightedCluster>,
        rewrite: Rewrite,
        timeout: Option<Duration>,
        retry: RetryPolicy,
    ) -> Forward {
        if destinations.len() == 1 {
            destinations[0].weight = destinations[0].weight.max(1);
        } else {
            destinations.retain(|d| d.weight > 0);
        }
        let total_weight = destinations.iter().map(|d| d.weight).sum();
        Forward {
            destinations,
            total_weight,
            rewrite,
            timeout,
            retry,
        }
    }

    /// A destination chosen in proportion to its weight.
    pub fn choose(&self) -> &WeightedCluster {
        if self.destinations.len() == 1 || self.total_weight == 0 {
            return &self.destinations[0];
        }
        let mut r = fastrand::u32(0..self.total_weight);
        for d in &self.destinations {
            if r < d.weight {
                return d;
            }
            r -= d.weight;
        }
        &self.destinations[0]
    }
}

/// Path and authority rewrites (`rewrite`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.path.is_none() && self.authority.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRewrite {
    /// After a prefix match: replace the matched prefix (Envoy `prefix_rewrite`).
    Prefix { prefix: String, replacement: String },
    /// After an exact or regex match: replace the whole path.
    Full(String),
    /// `uriRegexRewrite`: replace every match; `\1` groups already turned into `${1}`.
    Regex {
        #[serde(serialize_with = "regex_str")]
        pattern: Regex,
        replacement: String,
    },
}

fn regex_str<S: Serializer>(r: &Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

impl PathRewrite {
    /// The new path (query string untouched by the caller).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathRewrite::Prefix {
                prefix,
                replacement,
            } => {
                let rest = if path.len() >= prefix.len() && path.is_char_boundary(prefix.len()) {
                    &path[prefix.len()..]
                } else {
                    path
                };
                let mut out = String::with_capacity(replacement.len() + rest.len());
                out.push_str(replacement);
                out.push_str(rest);
                out
            }
            PathRewrite::Full(p) => p.clone(),
            PathRewrite::Regex {
                pattern,
                replacement,
            } => pattern.replace_all(path, replacement.as_str()).into_owned(),
        }
    }
}

/// Converts an RE2/Envoy substitution (`\1`) into the regex crate's syntax (`${1}`).
pub fn re2_substitution(rewrite: &str) -> String {
    let mut out = String::with_capacity(rewrite.len());
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                out.push('\\');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// `redirect`.
#[derive(Debug, Clone, Serialize)]
pub struct Redirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<RedirectPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub port: RedirectPort,
    pub code: u16,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPath {
    Full(String),
    PrefixRewrite { prefix: String, replacement: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPort {
    /// Keep the request's port (dropped if the scheme changes and it was that scheme's default).
    Keep,
    Fixed(u16),
    /// 80 for http, 443 for https (and so omitted).
    ProtocolDefault,
}

/// The parts of the request a redirect or an https redirect is computed from.
#[derive(Debug, Clone, Copy)]
pub struct RedirectInput<'a> {
    pub scheme: &'a str,
    /// Host header as sent (may carry a port).
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Redirect {
    /// The `Location` for this request, following Envoy's `newUri` rules.
    pub fn location(&self, req: &RedirectInput<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let (req_host, req_port) = split_authority(req.authority);
        let (host, host_port) = match &self.authority {
            Some(a) => split_authority(a),
            None => (req_host, req_port),
        };
        let port = match self.port {
            RedirectPort::Fixed(p) => Some(p),
            RedirectPort::ProtocolDefault => None,
            RedirectPort::Keep => {
                let p = host_port;
                // Changing the scheme drops the old scheme's default port.
                match (p, self.scheme.as_deref()) {
                    (Some(p), Some(s))
                        if s != req.scheme && Some(p) == default_port(req.scheme) =>
                    {
                        None
                    }
                    (p, _) => p,
                }
            }
        };
        let port = port.filter(|p| Some(*p) != default_port(scheme));
        let mut path = match &self.path {
            Some(RedirectPath::Full(p)) => p.clone(),
            Some(RedirectPath::PrefixRewrite {
                prefix,
                replacement,
            }) => PathRewrite::Prefix {
                prefix: prefix.clone(),
                replacement: replacement.clone(),
            }
            .apply(req.path),
            None => req.path.to_string(),
        };
        if !path.contains('?') {
            if let Some(q) = req.query {
                path.push('?');
                path.push_str(q);
            }
        }
        match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host:port` → (host, port); IPv6 literals keep their brackets.
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if authority.starts_with('[') {
        return match authority.rfind("]:") {
            Some(i) => (&authority[..=i], authority[i + 2..].parse().ok()),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// `directResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(serialize_with = "body_str")]
    pub body: Bytes,
}

fn body_str<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// `headers.{request,response}`: set (overwrite), add (append), remove.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HeaderOps {
    #[serde(serialize_with = "pairs", skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "pairs", skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "names", skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<HeaderName>,
}

fn pairs<S: Serializer>(v: &[(HeaderName, HeaderValue)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(
        v.iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or(""))),
    )
}

fn names<S: Serializer>(v: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(HeaderName::as_str))
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Compiles header operations. `host` / `:authority` in set or add is returned separately:
    /// Istio turns it into an authority rewrite.
    pub fn compile(ops: Option<&HeaderOperations>) -> Result<(HeaderOps, Option<String>), String> {
        let mut out = HeaderOps::default();
        let mut authority = None;
        let Some(ops) = ops else {
            return Ok((out, None));
        };
        let parse = |k: &str, v: &str| -> Result<(HeaderName, HeaderValue), String> {
            let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("invalid header name `{k}`"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value for header `{k}`"))?;
            Ok((name, value))
        };
        for (list, dst) in [(&ops.set, &mut out.set), (&ops.add, &mut out.add)] {
            for (k, v) in list {
                if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case(":authority") {
                    authority = Some(v.clone());
                    continue;
                }
                dst.push(parse(k, v)?);
            }
        }
        for k in &ops.remove {
            out.remove.push(
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("invalid header name `{k}`"))?,
            );
        }
        Ok((out, authority))
    }
}

/// Retry policy. Istio's default when `retries` is unset: 2 attempts on connect-failure,
/// refused-stream, unavailable, cancelled, retriable-status-codes.
#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on_connect_failure: bool,
    /// `reset`, `refused-stream`, `reset-before-request`: the upstream dropped the connection.
    pub on_reset: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub per_try_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on_connect_failure: true,
            on_reset: true,
            per_try_timeout: None,
        }
    }
}

impl RetryPolicy {
    pub fn compile(r: Option<&HttpRetry>) -> RetryPolicy {
        let Some(r) = r else {
            return RetryPolicy::default();
        };
        let mut p = RetryPolicy {
            attempts: r.attempts.max(0) as u32,
            on_connect_failure: false,
            on_reset: false,
            per_try_timeout: r.per_try_timeout.map(|d| d.get()),
        };
        let retry_on = r.retry_on.clone().unwrap_or_else(|| {
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into()
        });
        for token in retry_on.split(',').map(str::trim) {
            match token {
                "connect-failure" => p.on_connect_failure = true,
                "reset" | "refused-stream" | "reset-before-request" => p.on_reset = true,
                // Status-based retries are not supported (validation warns); see `support.rs`.
                _ => {}
            }
        }
        p
    }
}

/// `fault`: delay and/or abort a fraction of requests.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<(u64, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<(Abort, f64)>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Abort {
    Http(u16),
    /// gRPC status code, sent as HTTP 200 with `grpc-status`.
    Grpc(u32),
}

impl Fault {
    pub fn compile(f: &HttpFaultInjection) -> Option<Fault> {
        let pct = |p: Option<f64>| p.unwrap_or(0.0).clamp(0.0, 100.0);
        let delay = f.delay.as_ref().and_then(|d| {
            let fraction = pct(d.percentage.map(|p| p.value).or(d.percent.map(f64::from)));
            Some((d.fixed_delay?.get().as_millis() as u64, fraction))
        });
        let abort = f.abort.as_ref().and_then(|a| {
            let fraction = pct(a.percentage.map(|p| p.value));
            let kind = if let Some(s) = a.http_status {
                Abort::Http(u16::try_from(s).ok()?)
            } else {
                Abort::Grpc(grpc_code(a.grpc_status.as_deref()?)?)
            };
            Some((kind, fraction))
        });
        (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
    }
}

/// A gRPC status name as Istio accepts it (`UNAVAILABLE`), or its number.
pub fn grpc_code(name: &str) -> Option<u32> {
    crate::config::types::GRPC_STATUS_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .or_else(|| name.parse().ok())
}

/// `corsPolicy`.
#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    #[serde(skip)]
    pub allow_origins: Vec<StrMatch>,
    pub allow_any_origin: bool,
    pub allow_methods: Option<String>,
    pub allow_headers: Option<String>,
    pub expose_headers: Option<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
    /// `unmatchedPreflights: FORWARD` (the default) sends unmatched preflights upstream.
    pub forward_unmatched_preflights: bool,
}

impl Cors {
    pub fn compile(c: &CorsPolicy) -> Result<Cors, String> {
        let mut allow_origins = Vec::new();
        let mut allow_any_origin = false;
        for o in &c.allow_origin {
            if o == "*" {
                allow_any_origin = true;
            } else {
                allow_origins.push(StrMatch::Exact(o.clone()));
            }
        }
        for m in &c.allow_origins {
            allow_origins.push(StrMatch::compile(m).map_err(|e| e.to_string())?);
        }
        let join = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        Ok(Cors {
            allow_origins,
            allow_any_origin,
            allow_methods: join(&c.allow_methods),
            allow_headers: join(&c.allow_headers),
            expose_headers: join(&c.expose_headers),
            max_age: c.max_age.map(|d| d.get().as_secs()),
            allow_credentials: c.allow_credentials.unwrap_or(false),
            forward_unmatched_preflights: !matches!(
                c.unmatched_preflights,
                Some(crate::config::types::UnmatchedPreflights::Ignore)
            ),
        })
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allow_any_origin || self.allow_origins.iter().any(|m| m.matches(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(scheme: &'a str, authority: &'a str, path: &'a str) -> RedirectInput<'a> {
        RedirectInput {
            scheme,
            authority,
            path,
            query: None,
        }
    }

    fn redirect() -> Redirect {
        Redirect {
            path: None,
            authority: None,
            scheme: None,
            port: RedirectPort::Keep,
            code: 301,
        }
    }

    #[test]
    fn prefix_rewrite_follows_envoy() {
        let r = |p: &str, rep: &str, path: &str| {
            PathRewrite::Prefix {
                prefix: p.into(),
                replacement: rep.into(),
            }
            .apply(path)
        };
        assert_eq!(r("/foo", "/bar", "/foo/x"), "/bar/x");
        assert_eq!(r("/foo", "/", "/foo/x"), "//x");
        assert_eq!(r("/", "/v2", "/x"), "/v2x");
    }

    #[test]
    fn regex_rewrite_uses_re2_groups() {
        let p = PathRewrite::Regex {
            pattern: Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
            replacement: re2_substitution("\\2/instance/\\1"),
        };
        assert_eq!(p.apply("/service/foo/v1/api"), "/v1/api/instance/foo");
        assert_eq!(re2_substitution("$1"), "$$1");
    }

    #[test]
    fn redirect_locations() {
        let mut r = redirect();
        r.path = Some(RedirectPath::Full("/new".into()));
        assert_eq!(
            r.location(&input("http", "a.com:8080", "/old")),
            "http://a.com:8080/new"
        );
        r.scheme = Some("https".into());
        assert_eq!(
            r.location(&input("http", "a.com:80", "/old")),
            "https://a.com/new"
        );
        r.port = RedirectPort::Fixed(8443);
        r.authority = Some("b.com".into());
        assert_eq!(
            r.location(&input("http", "a.com", "/old")),
            "https://b.com:8443/new"
        );
        r.port = RedirectPort::ProtocolDefault;
        assert_eq!(
            r.location(&input("http", "a.com", "/old")),
            "https://b.com/new"
        );
    }

    #[test]
    fn redirect_keeps_the_query() {
        let r = redirect();
        let mut i = input("http", "a.com", "/p");
        i.query = Some("x=1");
        assert_eq!(r.location(&i), "http://a.com/p?x=1");
    }

    #[test]
    fn default_retry_policy_is_istios() {
        let p = RetryPolicy::compile(None);
        assert_eq!(p.attempts, 2);
        assert!(p.on_connect_failure && p.on_reset);
        // An explicit retryOn replaces the default list.
        let p = RetryPolicy::compile(Some(&HttpRetry {
            attempts: 3,
            retry_on: Some("reset".into()),
            ..Default::default()
        }));
        assert!(p.on_reset && !p.on_connect_failure && p.attempts == 3);
    }
}
