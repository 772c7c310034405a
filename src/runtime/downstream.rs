//! The downstream request as the gateway reads it before routing: the scheme, how the client
//! addressed it (Host header, or absolute-form from a forward-proxy client), the authority,
//! host and port, the request id, and the path with dot segments removed (Envoy's
//! `normalize_path`, on in Istio's gateways).

use pingora::http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_proxy::Session;

use crate::compile::egress::Addressing;
use crate::config::host::{normalize_request_host, split_authority};

#[derive(Debug, Clone)]
pub struct Downstream {
    pub scheme: &'static str,
    pub addressing: Addressing,
    /// Host/:authority (or the absolute-form authority) as sent.
    pub authority: String,
    /// Lower-cased, without port.
    pub host: String,
    pub port: u16,
}

impl Default for Downstream {
    fn default() -> Self {
        Downstream {
            scheme: "http",
            addressing: Addressing::Host,
            authority: String::new(),
            host: String::new(),
            port: 0,
        }
    }
}

impl Downstream {
    /// Reads the request's addressing and normalises its path in place.
    pub fn read(session: &mut Session, tls: bool) -> Downstream {
        let scheme = if tls { "https" } else { "http" };
        let req = session.req_header();
        // Absolute-form (`GET http://host/ HTTP/1.1`) comes from forward-proxy clients. Pingora
        // keeps only the path on the Uri; the target as sent is the raw path.
        let absolute = match raw_target_authority(req.raw_path()) {
            RawTargetAuthority::Absolute {
                scheme, authority, ..
            } if !session.is_http2() => Some((
                scheme.eq_ignore_ascii_case(b"https"),
                String::from_utf8_lossy(authority).into_owned(),
            )),
            _ => None,
        };
        let host_header = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let (addressing, authority, default_port) = match absolute {
            Some((https, a)) => (Addressing::ForwardProxy, a, if https { 443 } else { 80 }),
            None => {
                let a = match (host_header, req.uri.authority()) {
                    (Some(h), _) => h.to_string(),
                    (None, Some(a)) => a.as_str().to_string(),
                    _ => String::new(),
                };
                (Addressing::Host, a, if tls { 443 } else { 80 })
            }
        };
        let host = normalize_request_host(&authority).into_owned();
        let port = split_authority(&authority).1.unwrap_or(default_port);
        normalize_request_path(session);
        Downstream {
            scheme,
            addressing,
            authority,
            host,
            port,
        }
    }
}

/// Routing and the upstream see the path without dot segments.
fn normalize_request_path(session: &mut Session) {
    let req = session.req_header();
    let Some(path) = normalize_path(req.uri.path()) else {
        return;
    };
    let path_and_query = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            session.req_header_mut().set_uri(uri);
        }
    }
}

/// Envoy's `normalize_path` (on in Istio's gateways): RFC 3986 §5.2.4 dot-segment removal, with
/// `%2e` counted as `.`, applied before routing so `..` cannot step from one route's prefix into
/// another's. Repeated slashes are kept (Istio leaves `merge_slashes` off). `None` when the path
/// has no dot segment.
pub fn normalize_path(path: &str) -> Option<String> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        let s = s.to_ascii_lowercase();
        matches!(s.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
    };
    let rest = path.strip_prefix('/')?;
    if !rest.split('/').any(|s| is_dot(s) || is_dot_dot(s)) {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.into_iter().enumerate() {
        let dot = is_dot(seg);
        let dot_dot = !dot && is_dot_dot(seg);
        if dot_dot {
            out.pop();
        }
        if dot || dot_dot {
            // A trailing dot segment leaves a directory: `/a/b/..` → `/a/`.
            if i == last {
                out.push("");
            }
            continue;
        }
        out.push(seg);
    }
    Some(format!("/{}", out.join("/")))
}
