//! `redirect` (Envoy's `newUri` rules) and the Gateway's `tls.httpsRedirect`.

use http::header::LOCATION;
use serde::Serialize;

use super::rewrite::PathRewrite;
use crate::compile::reply::LocalReply;
use crate::config::host::split_authority;

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
    pub fn reply(&self, req: &RedirectInput<'_>) -> LocalReply {
        LocalReply::new(self.code, None, "redirect", "").header_str(LOCATION, &self.location(req))
    }

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

/// `tls.httpsRedirect` (Envoy `require_tls`): 301 to the same host and path (query kept) on
/// https at `port`, `:443` omitted.
pub fn https_redirect(port: u16, req: &RedirectInput<'_>) -> LocalReply {
    let (host, _) = split_authority(req.authority);
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("https://{host}{port}{}{query}", req.path);
    LocalReply::new(301, None, "https_redirect", "").header_str(LOCATION, &location)
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
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
    fn https_redirect_drops_the_port_and_omits_443() {
        let mut i = input("http", "a.com:8080", "/p");
        i.query = Some("q=1");
        let loc = |r: LocalReply| r.headers[0].1.to_str().unwrap().to_string();
        assert_eq!(loc(https_redirect(443, &i)), "https://a.com/p?q=1");
        assert_eq!(loc(https_redirect(8443, &i)), "https://a.com:8443/p?q=1");
    }
}
