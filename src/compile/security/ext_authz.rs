//! CUSTOM authorization through an HTTP ext_authz provider (the mesh settings'
//! `extensionProviders[].envoyExtAuthzHttp`), as Istio configures Envoy's `ext_authz` filter
//! (istio `pilot/pkg/security/authz/builder/extauthz.go`) and Envoy calls the server (envoy
//! `filters/common/ext_authz/ext_authz_http_impl.cc`): the check request carries the method,
//! `path_prefix` + path, Host, Authorization and the allowed headers, with an empty body; 200
//! allows (copying the allowed headers to the upstream request and the client response); a 5xx,
//! a failure or a timeout is an error (`statusOnError`, 403 by default, unless `failOpen`);
//! anything else is a denial passed on with its status, body and headers.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;

use crate::compile::reply::{LocalReply, ResponseFlag};
use crate::http_client::send;

/// `envoyExtAuthzHttp`: the fields a gateway uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzHttp {
    pub name: String,
    pub service: String,
    pub port: u16,
    pub path_prefix: String,
    #[serde(skip)]
    pub timeout: Duration,
    pub fail_open: bool,
    pub status_on_error: u16,
    pub include_request_headers_in_check: Vec<String>,
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    pub headers_to_upstream_on_allow: Vec<String>,
    pub headers_to_downstream_on_deny: Vec<String>,
    pub headers_to_downstream_on_allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ext_authz provider `{0}`: {1} (expected NAME=http://HOST:PORT[/PREFIX][;failOpen=BOOL;timeout=DUR;statusOnError=CODE;includeRequestHeadersInCheck=H|H;headersToUpstreamOnAllow=H|H;headersToDownstreamOnDeny=H|H;headersToDownstreamOnAllow=H|H])")]
pub struct ProviderSyntax(pub String, pub String);

impl ExtAuthzHttp {
    /// A mesh config `envoyExtAuthzHttp` provider, with Istio's defaults (timeout 600 s,
    /// `statusOnError` 403).
    pub fn from_mesh(name: &str, m: &crate::config::mesh::ExtAuthzHttp) -> ExtAuthzHttp {
        ExtAuthzHttp {
            name: name.to_string(),
            service: m.service.clone(),
            port: u16::try_from(m.port).unwrap_or(0),
            path_prefix: m.path_prefix.clone().unwrap_or_default(),
            timeout: m.timeout.map_or(Duration::from_secs(600), |t| t.get()),
            fail_open: m.fail_open.unwrap_or(false),
            status_on_error: m
                .status_on_error
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(403),
            include_request_headers_in_check: m.include_request_headers_in_check.clone(),
            include_additional_headers_in_check: m.include_additional_headers_in_check.clone(),
            headers_to_upstream_on_allow: m.headers_to_upstream_on_allow.clone(),
            headers_to_downstream_on_deny: m.headers_to_downstream_on_deny.clone(),
            headers_to_downstream_on_allow: m.headers_to_downstream_on_allow.clone(),
        }
    }

    /// The interim `--ext-authz-provider` syntax (until the mesh settings carry
    /// `extensionProviders`): `NAME=http://HOST:PORT/PREFIX;key=value;…`.
    pub fn parse(s: &str) -> Result<ExtAuthzHttp, ProviderSyntax> {
        let err = |m: &str| ProviderSyntax(s.to_string(), m.to_string());
        let mut parts = s.split(';');
        let head = parts.next().unwrap_or("");
        let (name, url) = head.split_once('=').ok_or_else(|| err("no NAME="))?;
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| err("not an http:// URL"))?;
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (service, port) = hostport.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let port = port.parse::<u16>().map_err(|_| err("bad port"))?;
        let mut p = ExtAuthzHttp {
            name: name.trim().to_string(),
            service: service.to_string(),
            port,
            path_prefix: prefix.to_string(),
            timeout: Duration::from_secs(600),
            fail_open: false,
            status_on_error: 403,
            include_request_headers_in_check: Vec::new(),
            include_additional_headers_in_check: BTreeMap::new(),
            headers_to_upstream_on_allow: Vec::new(),
            headers_to_downstream_on_deny: Vec::new(),
            headers_to_downstream_on_allow: Vec::new(),
        };
        for kv in parts.filter(|p| !p.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| err("option without ="))?;
            let list = || {
                v.split('|')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            match k {
                "failOpen" => {
                    p.fail_open = v.parse().map_err(|_| err("failOpen: true or false"))?
                }
                "timeout" => {
                    p.timeout = crate::config::types::Duration::parse(v)
                        .map_err(|e| err(&e))?
                        .get()
                }
                "statusOnError" => {
                    p.status_on_error = v.parse().map_err(|_| err("statusOnError: a code"))?
                }
                "includeRequestHeadersInCheck" => p.include_request_headers_in_check = list(),
                "headersToUpstreamOnAllow" => p.headers_to_upstream_on_allow = list(),
                "headersToDownstreamOnDeny" => p.headers_to_downstream_on_deny = list(),
                "headersToDownstreamOnAllow" => p.headers_to_downstream_on_allow = list(),
                "includeAdditionalHeadersInCheck" => {
                    for pair in v.split('|').filter(|x| !x.is_empty()) {
                        let (hk, hv) = pair.split_once(':').ok_or_else(|| err("header as K:V"))?;
                        p.include_additional_headers_in_check
                            .insert(hk.to_string(), hv.to_string());
                    }
                }
                other => return Err(err(&format!("unknown option `{other}`"))),
            }
        }
        if p.name.is_empty() {
            return Err(err("empty NAME"));
        }
        Ok(p)
    }
}

/// Istio `generateHeaders`: `x*` prefix, `*x` suffix, else exact; all ignoring case.
fn header_listed(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        if let Some(s) = p.strip_prefix('*') {
            name.ends_with(s)
        } else if let Some(s) = p.strip_suffix('*') {
            name.starts_with(s)
        } else {
            name == p
        }
    })
}

/// What the authorization server decided.
#[derive(Debug)]
pub enum Outcome {
    /// Allowed: headers for the upstream request (set), headers to remove from it, and headers
    /// for the client response.
    Allow {
        upstream: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<HeaderName>,
        downstream: Vec<(HeaderName, HeaderValue)>,
    },
    Deny(LocalReply),
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
];

impl ExtAuthzHttp {
    /// Calls the server for one request.
    pub async fn check(
        &self,
        method: &str,
        authority: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Outcome {
        let mut out = HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            let listed =
                n == "authorization" || header_listed(&self.include_request_headers_in_check, n);
            if listed && n != "content-length" && n != "host" {
                out.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(authority) {
            out.insert(http::header::HOST, v);
        }
        out.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        for (k, v) in &self.include_additional_headers_in_check {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                HeaderValue::from_str(v),
            ) {
                out.insert(k, v);
            }
        }
        let url = format!(
            "http://{}:{}{}{}",
            self.service, self.port, self.path_prefix, path_and_query
        );
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let error = || -> Outcome {
            if self.fail_open {
                Outcome::Allow {
                    upstream: Vec::new(),
                    remove: Vec::new(),
                    downstream: Vec::new(),
                }
            } else {
                Outcome::Deny(LocalReply::new(
                    self.status_on_error,
                    Some(ResponseFlag::UAEX),
                    "ext_authz_error",
                    "",
                ))
            }
        };
        let resp = match send(method, &url, out, bytes::Bytes::new(), self.timeout).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %self.name, error = %e, "ext_authz check failed");
                return error();
            }
        };
        if resp.status.is_server_error() {
            return error();
        }
        let pick = |patterns: &[String]| -> Vec<(HeaderName, HeaderValue)> {
            resp.headers
                .iter()
                .filter(|(n, _)| header_listed(patterns, n.as_str()))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()
        };
        if resp.status == http::StatusCode::OK {
            let remove = resp
                .headers
                .get_all("x-envoy-auth-headers-to-remove")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|h| {
                    HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()).ok()
                })
                .collect();
            return Outcome::Allow {
                upstream: pick(&self.headers_to_upstream_on_allow),
                remove,
                downstream: pick(&self.headers_to_downstream_on_allow),
            };
        }
        // Denied: the server's status and body; its headers (all but Host by default, else the
        // listed ones plus WWW-Authenticate and Location).
        let mut reply = LocalReply::new(
            resp.status.as_u16(),
            Some(ResponseFlag::UAEX),
            "ext_authz_denied",
            resp.body.clone(),
        );
        for (n, v) in &resp.headers {
            let name = n.as_str();
            if HOP_BY_HOP.contains(&name) || name == "x-envoy-auth-headers-to-remove" {
                continue;
            }
            let keep = self.headers_to_downstream_on_deny.is_empty()
                || header_listed(&self.headers_to_downstream_on_deny, name)
                || matches!(name, "www-authenticate" | "location");
            if keep {
                reply = reply.header(n.clone(), v.clone());
            }
        }
        Outcome::Deny(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interim_provider_syntax() {
        let p = ExtAuthzHttp::parse(
            "authz=http://127.0.0.1:9000/check;failOpen=true;timeout=2s;headersToUpstreamOnAllow=x-user|x-id*",
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.port, p.path_prefix.as_str()),
            ("authz", 9000, "/check")
        );
        assert!(p.fail_open);
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert!(header_listed(&p.headers_to_upstream_on_allow, "x-idp"));
        assert!(ExtAuthzHttp::parse("authz=https://x:1").is_err());
        assert!(ExtAuthzHttp::parse("authz=http://x").is_err());
    }
}
