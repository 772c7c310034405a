//! `corsPolicy` (Envoy's CORS filter): preflights answered by the gateway, allowed origins
//! echoed on responses. Header values are made once at compile time.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use serde::{Serialize, Serializer};

use crate::compile::error::CompileError;
use crate::compile::matcher::StrMatch;
use crate::compile::reply::LocalReply;
use crate::config::types::{CorsPolicy, UnmatchedPreflights};

#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    #[serde(skip)]
    pub allow_origins: Vec<StrMatch>,
    pub allow_any_origin: bool,
    #[serde(serialize_with = "value_str")]
    pub allow_methods: Option<HeaderValue>,
    #[serde(serialize_with = "value_str")]
    pub allow_headers: Option<HeaderValue>,
    #[serde(serialize_with = "value_str")]
    pub expose_headers: Option<HeaderValue>,
    #[serde(serialize_with = "value_str")]
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// `unmatchedPreflights: FORWARD` (the default) sends unmatched preflights upstream.
    pub forward_unmatched_preflights: bool,
}

fn value_str<S: Serializer>(v: &Option<HeaderValue>, s: S) -> Result<S::Ok, S::Error> {
    match v.as_ref().and_then(|v| v.to_str().ok()) {
        Some(v) => s.serialize_str(v),
        None => s.serialize_none(),
    }
}

/// What the CORS policy makes of a request.
#[derive(Debug)]
pub enum CorsCheck {
    /// Not a cross-origin request, or an origin the policy does not allow: proxied as is.
    Pass,
    /// A preflight the gateway answers itself.
    Preflight(LocalReply),
    /// An allowed origin, echoed on the response.
    Allowed(HeaderValue),
}

const TRUE: HeaderValue = HeaderValue::from_static("true");

impl Cors {
    pub fn compile(c: &CorsPolicy) -> Result<Cors, CompileError> {
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
            allow_origins.push(StrMatch::compile(m).map_err(|source| CompileError::Regex {
                field: "corsPolicy.allowOrigins".into(),
                source,
            })?);
        }
        let join = |v: &[String]| -> Result<Option<HeaderValue>, CompileError> {
            if v.is_empty() {
                return Ok(None);
            }
            let joined = v.join(",");
            HeaderValue::from_str(&joined)
                .map(Some)
                .map_err(|_| CompileError::HeaderValue(joined))
        };
        Ok(Cors {
            allow_origins,
            allow_any_origin,
            allow_methods: join(&c.allow_methods)?,
            allow_headers: join(&c.allow_headers)?,
            expose_headers: join(&c.expose_headers)?,
            max_age: c.max_age.map(|d| HeaderValue::from(d.get().as_secs())),
            allow_credentials: c.allow_credentials.unwrap_or(false),
            forward_unmatched_preflights: !matches!(
                c.unmatched_preflights,
                Some(UnmatchedPreflights::Ignore)
            ),
        })
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allow_any_origin || self.allow_origins.iter().any(|m| m.matches(origin))
    }

    /// A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is
    /// answered here; so is one from another origin unless `unmatchedPreflights` forwards it.
    pub fn check(&self, req: &RequestHeader) -> CorsCheck {
        let Some(origin) = req.headers.get(ORIGIN) else {
            return CorsCheck::Pass;
        };
        let allowed = origin.to_str().is_ok_and(|o| self.origin_allowed(o));
        let preflight = req.method == http::Method::OPTIONS
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight && (allowed || !self.forward_unmatched_preflights) {
            let mut reply = LocalReply::new(200, None, "cors_preflight", "");
            if allowed {
                reply = reply.header(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                for (name, value) in [
                    (ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods),
                    (ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers),
                    (ACCESS_CONTROL_MAX_AGE, &self.max_age),
                ] {
                    if let Some(v) = value {
                        reply = reply.header(name, v.clone());
                    }
                }
                if self.allow_credentials {
                    reply = reply.header(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
                }
            }
            return CorsCheck::Preflight(reply);
        }
        if allowed {
            CorsCheck::Allowed(origin.clone())
        } else {
            CorsCheck::Pass
        }
    }

    /// The CORS headers on the response to an allowed origin.
    pub fn apply_response(&self, origin: &HeaderValue, resp: &mut ResponseHeader) {
        let _ = resp.insert_header(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if let Some(e) = &self.expose_headers {
            let _ = resp.insert_header(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        if self.allow_credentials {
            let _ = resp.insert_header(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        Cors::compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn allowed_preflight_is_answered_with_the_policy() {
        let c = cors("{allowOrigins: [{exact: 'https://a.example'}], allowMethods: [GET, POST], maxAge: 24h, allowCredentials: true}");
        let r = req(
            "OPTIONS",
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "POST"),
            ],
        );
        let CorsCheck::Preflight(reply) = c.check(&r) else {
            panic!("a preflight")
        };
        let h = |n: &str| {
            reply
                .headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(reply.status, 200);
        assert_eq!(
            h("access-control-allow-origin").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            h("access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(h("access-control-max-age").as_deref(), Some("86400"));
        assert_eq!(
            h("access-control-allow-credentials").as_deref(),
            Some("true")
        );
    }

    #[test]
    fn unmatched_preflights_are_forwarded_unless_ignored() {
        let r = req(
            "OPTIONS",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        );
        let forward = cors("{allowOrigins: [{exact: 'https://a.example'}]}");
        assert!(matches!(forward.check(&r), CorsCheck::Pass));
        let ignore =
            cors("{allowOrigins: [{exact: 'https://a.example'}], unmatchedPreflights: IGNORE}");
        let CorsCheck::Preflight(reply) = ignore.check(&r) else {
            panic!("answered")
        };
        assert!(
            reply.headers.is_empty(),
            "no CORS headers for an unmatched origin"
        );
    }

    #[test]
    fn simple_requests_from_allowed_origins_get_the_origin_echoed() {
        let c = cors("{allowOrigins: [{prefix: 'https://'}], exposeHeaders: [x-a]}");
        let CorsCheck::Allowed(origin) = c.check(&req("GET", &[("origin", "https://b.example")]))
        else {
            panic!("allowed")
        };
        let mut resp = ResponseHeader::build(200, None).unwrap();
        c.apply_response(&origin, &mut resp);
        assert_eq!(
            resp.headers["access-control-allow-origin"],
            "https://b.example"
        );
        assert_eq!(resp.headers["access-control-expose-headers"], "x-a");
        assert!(matches!(c.check(&req("GET", &[])), CorsCheck::Pass));
    }
}
