//! RequestAuthentication as Istio programs Envoy's `jwt_authn` filter (istio
//! `pilot/pkg/security/authn/policy_applier.go` `convertToEnvoyJwtConfig`): one provider per
//! `jwtRule` (sorted by issuer), a request without a token passes, a token that is present must
//! be valid for a provider whose locations it came from. Extraction, checks and their order
//! follow envoy `jwt_authn/{extractor,authenticator,verifier}.cc` and `source/common/jwt/`:
//! parse → issuer → `nbf`/`exp` with 60 s clock skew → audience → signature (key by `kid` and
//! `alg`).

use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use super::claims::Claims;
use super::jwks::{JwksStore, KeySet, RemoteJwks};
use super::status::JwtStatus;
use super::Edit;

/// Envoy's default clock skew (`kClockSkewInSecond`).
const CLOCK_SKEW: u64 = 60;

const DEFAULT_SPACE_DELIMITED: [&str; 2] = ["permission", "scope"];

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum Keys {
    Inline(Arc<KeySet>),
    Remote(Arc<RemoteJwks>, Arc<JwksStore>),
}

/// A token location (envoy extractor.cc).
#[derive(Debug, Clone)]
pub enum Location {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

/// One `jwtRule`: Envoy's `JwtProvider`.
#[derive(Debug)]
pub struct Provider {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Keys,
    pub locations: Vec<Location>,
    pub forward: bool,
    pub payload_header: Option<HeaderName>,
    pub claim_to_headers: Vec<(HeaderName, Vec<String>)>,
    pub space_delimited: Vec<String>,
}

/// A token taken from the request.
struct Found {
    token: String,
    header: Option<HeaderName>,
}

/// What a valid token leaves behind.
struct Verified {
    payload_b64: String,
    claims: Claims,
    header: Option<HeaderName>,
}

impl Provider {
    /// Token locations: the rule's, or Envoy's defaults (`Authorization: Bearer`, `access_token`).
    pub fn locations_for(
        headers: &[(String, String)],
        params: &[String],
        cookies: &[String],
    ) -> Vec<Location> {
        let mut header_keys: Vec<(String, HeaderName, String)> = Vec::new();
        let mut params = params.to_vec();
        let mut cookies = cookies.to_vec();
        if headers.is_empty() && params.is_empty() && cookies.is_empty() {
            header_keys.push((
                "authorizationBearer ".into(),
                http::header::AUTHORIZATION,
                "Bearer ".into(),
            ));
            params.push("access_token".into());
        }
        for (name, prefix) in headers {
            if let Ok(h) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                header_keys.push((format!("{}{prefix}", h.as_str()), h, prefix.clone()));
            }
        }
        // Envoy keeps locations in ordered maps keyed by header+prefix, param, cookie.
        header_keys.sort_by(|a, b| a.0.cmp(&b.0));
        header_keys.dedup_by(|a, b| a.0 == b.0);
        params.sort();
        params.dedup();
        cookies.sort();
        cookies.dedup();
        let mut out: Vec<Location> = header_keys
            .into_iter()
            .map(|(_, name, prefix)| Location::Header { name, prefix })
            .collect();
        out.extend(params.into_iter().map(Location::Param));
        out.extend(cookies.into_iter().map(Location::Cookie));
        out
    }

    pub fn space_delimited_for(extra: &[String]) -> Vec<String> {
        let mut all: Vec<String> = extra.to_vec();
        all.extend(DEFAULT_SPACE_DELIMITED.iter().map(|s| s.to_string()));
        all.sort();
        all.dedup();
        all
    }

    fn extract(&self, headers: &HeaderMap, query: Option<&str>) -> Vec<Found> {
        let mut out = Vec::new();
        for loc in &self.locations {
            match loc {
                Location::Header { name, prefix } => {
                    let mut values = headers.get_all(name).iter();
                    let Some(first) = values.next() else { continue };
                    let mut value = String::from_utf8_lossy(first.as_bytes()).into_owned();
                    for v in values {
                        value.push(',');
                        value.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                    let token = if prefix.is_empty() {
                        value
                    } else {
                        let Some(at) = value.find(prefix.as_str()) else {
                            continue;
                        };
                        token_after(&value, at + prefix.len())
                    };
                    out.push(Found {
                        token,
                        header: Some(name.clone()),
                    });
                }
                Location::Param(p) => {
                    if let Some(v) = query_param(query, p) {
                        out.push(Found {
                            token: v,
                            header: None,
                        });
                    }
                }
                Location::Cookie(c) => {
                    if let Some(v) = cookie(headers, c) {
                        out.push(Found {
                            token: v,
                            header: None,
                        });
                    }
                }
            }
        }
        out
    }

    /// Envoy's provider verifier: every token found must be valid (checked last to first).
    fn verify_all(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: u64,
    ) -> Result<Vec<Verified>, JwtStatus> {
        let mut found = self.extract(headers, query);
        if found.is_empty() {
            return Err(JwtStatus::JwtMissed);
        }
        let mut ok = Vec::new();
        while let Some(f) = found.pop() {
            ok.push(self.verify(f, now)?);
        }
        Ok(ok)
    }

    fn verify(&self, f: Found, now: u64) -> Result<Verified, JwtStatus> {
        let jwt = Parsed::parse(&f.token)?;
        if !self.issuer.is_empty() && jwt.iss != self.issuer {
            return Err(JwtStatus::JwtUnknownIssuer);
        }
        if now + CLOCK_SKEW < jwt.nbf {
            return Err(JwtStatus::JwtNotYetValid);
        }
        if jwt.exp != 0 && now > jwt.exp + CLOCK_SKEW {
            return Err(JwtStatus::JwtExpired);
        }
        if !audiences_allowed(&self.audiences, &jwt.aud) {
            return Err(JwtStatus::JwtAudienceNotAllowed);
        }
        let keys = match &self.keys {
            Keys::Inline(k) => Some(k.clone()),
            Keys::Remote(r, store) => {
                let keys = r.keys();
                if !jwt.kid.is_empty() && keys.as_ref().is_none_or(|k| !k.has_kid(&jwt.kid)) {
                    store.kid_missing(r);
                }
                keys
            }
        };
        // No key yet (never fetched): istiod's fail-closed public-only JWKS, which fails every
        // signature.
        let Some(keys) = keys else {
            return Err(JwtStatus::JwtVerificationFail);
        };
        verify_signature(&jwt, &keys)?;
        Ok(Verified {
            payload_b64: jwt.payload_b64,
            claims: Claims::normalized(jwt.payload, &self.space_delimited),
            header: f.header,
        })
    }
}

/// The JWT characters after a prefix (envoy extractor.cc `extractJWT`).
fn token_after(value: &str, at: usize) -> String {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let rest = &value[at.min(value.len())..];
    let Some(start) = rest.find(legal) else {
        return value.to_string();
    };
    let tail = &rest[start..];
    let end = tail.find(|c: char| !legal(c)).unwrap_or(tail.len());
    tail[..end].to_string()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_string())
        })
}

/// Envoy `CheckAudience`: audiences compare without scheme and trailing slash.
fn audiences_allowed(allowed: &[String], jwt: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let norm = |a: &str| {
        a.trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    };
    jwt.iter()
        .any(|a| allowed.iter().any(|b| norm(a) == norm(b)))
}

/// A JWT parsed as Envoy's `Jwt::parseFromString`.
struct Parsed {
    alg: String,
    kid: String,
    iss: String,
    nbf: u64,
    exp: u64,
    aud: Vec<String>,
    signed: String,
    signature_b64: String,
    payload_b64: String,
    payload: Map<String, Value>,
}

const IMPLEMENTED: [&str; 13] = [
    "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
    "PS384", "PS512", "EdDSA",
];

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

impl Parsed {
    fn parse(token: &str) -> Result<Parsed, JwtStatus> {
        use JwtStatus::*;
        let parts: Vec<&str> = token.split('.').filter(|p| !p.is_empty()).collect();
        if parts.len() != 3 {
            return Err(JwtBadFormat);
        }
        let header = b64(parts[0]).ok_or(JwtHeaderParseErrorBadBase64)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header).map_err(|_| JwtHeaderParseErrorBadJson)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtHeaderBadAlg)?
            .to_string();
        if !IMPLEMENTED.contains(&alg.as_str()) {
            return Err(JwtHeaderNotImplementedAlg);
        }
        let kid = match header.get("kid") {
            None => String::new(),
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(JwtHeaderBadKid),
        };
        let payload_raw = b64(parts[1]).ok_or(JwtPayloadParseErrorBadBase64)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&payload_raw).map_err(|_| JwtPayloadParseErrorBadJson)?;
        let string = |k: &str, e: JwtStatus| match payload.get(k) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(e),
        };
        let iss = string("iss", JwtPayloadParseErrorIssNotString)?;
        string("sub", JwtPayloadParseErrorSubNotString)?;
        let uint = |k: &str, not_int: JwtStatus, range: JwtStatus| match payload.get(k) {
            None => Ok(0),
            Some(Value::Number(n)) => n.as_u64().ok_or(range),
            Some(_) => Err(not_int),
        };
        uint(
            "iat",
            JwtPayloadParseErrorIatNotInteger,
            JwtPayloadParseErrorIatOutOfRange,
        )?;
        let nbf = uint(
            "nbf",
            JwtPayloadParseErrorNbfNotInteger,
            JwtPayloadParseErrorNbfOutOfRange,
        )?;
        let exp = uint(
            "exp",
            JwtPayloadParseErrorExpNotInteger,
            JwtPayloadParseErrorExpOutOfRange,
        )?;
        string("jti", JwtPayloadParseErrorJtiNotString)?;
        let aud = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtPayloadParseErrorAudNotString)?,
            Some(_) => return Err(JwtPayloadParseErrorAudNotString),
        };
        b64(parts[2]).ok_or(JwtSignatureParseErrorBadBase64)?;
        Ok(Parsed {
            alg,
            kid,
            iss,
            nbf,
            exp,
            aud,
            signed: format!("{}.{}", parts[0], parts[1]),
            signature_b64: parts[2].trim_end_matches('=').to_string(),
            payload_b64: parts[1].to_string(),
            payload,
        })
    }
}

/// envoy verify.cc `verifyJwtWithoutTimeChecking`: every key whose `kid` and `alg` fit is
/// tried; none fitting is `JwksKidAlgMismatch`, none verifying `JwtVerificationFail`.
fn verify_signature(jwt: &Parsed, keys: &KeySet) -> Result<(), JwtStatus> {
    use jsonwebtoken::Algorithm as A;
    let alg = match jwt.alg.as_str() {
        "ES256" => Some(A::ES256),
        "ES384" => Some(A::ES384),
        "RS256" => Some(A::RS256),
        "RS384" => Some(A::RS384),
        "RS512" => Some(A::RS512),
        "PS256" => Some(A::PS256),
        "PS384" => Some(A::PS384),
        "PS512" => Some(A::PS512),
        "HS256" => Some(A::HS256),
        "HS384" => Some(A::HS384),
        "HS512" => Some(A::HS512),
        "EdDSA" => Some(A::EdDSA),
        _ => None, // ES512: the crate has no P-521
    };
    let mut matched = false;
    for k in &keys.keys {
        if !jwt.kid.is_empty() && !k.kid.is_empty() && k.kid != jwt.kid {
            continue;
        }
        if !k.alg.is_empty() && k.alg != jwt.alg {
            continue;
        }
        matched = true;
        let fits = matches!(
            (k.kty.as_str(), &jwt.alg[..2]),
            ("EC", "ES") | ("RSA", "RS") | ("RSA", "PS") | ("oct", "HS") | ("OKP", "Ed")
        );
        let Some(alg) = alg.filter(|_| fits) else {
            continue;
        };
        if jsonwebtoken::crypto::verify(&jwt.signature_b64, jwt.signed.as_bytes(), &k.key, alg)
            .unwrap_or(false)
        {
            return Ok(());
        }
    }
    Err(if matched {
        JwtStatus::JwtVerificationFail
    } else {
        JwtStatus::JwksKidAlgMismatch
    })
}

/// The jwt_authn filter Istio builds from every RequestAuthentication that applies.
#[derive(Debug, Default)]
pub struct JwtAuthn {
    pub providers: Vec<Provider>,
}

/// A request that passed: its verified claims (none without a token).
pub type Authenticated = Option<Arc<Claims>>;

impl JwtAuthn {
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Runs the requirement Istio generates: with one provider `{provider OR allow_missing}`;
    /// with several `ANY{P1, …, Pn, ALL{ANY{P1, allow_missing}, …}}` (envoy verifier.cc
    /// `AnyVerifierImpl` aggregation: a real error beats `JwtUnknownIssuer`, which beats
    /// `JwtMissed`). On success the token's headers are applied to `headers`.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: u64,
        edits: &mut Vec<Edit>,
    ) -> Result<Authenticated, JwtStatus> {
        // Headers the gateway writes from a token are never taken from the client.
        for p in &self.providers {
            if let Some(h) = &p.payload_header {
                edits.push(Edit::Remove(h.clone()));
            }
            for (h, _) in &p.claim_to_headers {
                edits.push(Edit::Remove(h.clone()));
            }
        }
        let results: Vec<Result<Vec<Verified>, JwtStatus>> = self
            .providers
            .iter()
            .map(|p| p.verify_all(headers, query, now))
            .collect();
        if let Some(i) = results.iter().position(Result::is_ok) {
            let Some(Ok(verified)) = results.into_iter().nth(i) else {
                return Ok(None);
            };
            return Ok(self.providers[i].apply(verified, edits));
        }
        let status = |r: &Result<Vec<Verified>, JwtStatus>| match r {
            Ok(_) => None,
            Err(s) => Some(*s),
        };
        let statuses: Vec<JwtStatus> = results.iter().filter_map(status).collect();
        if self.providers.len() == 1 {
            return match statuses[0] {
                JwtStatus::JwtMissed => Ok(None),
                s => Err(s),
            };
        }
        // ALL{ANY{Pi, allow_missing}}: the first provider whose token is present and bad.
        let all = statuses
            .iter()
            .copied()
            .find(|s| *s != JwtStatus::JwtMissed);
        let Some(all) = all else {
            return Ok(None);
        };
        let mut last = JwtStatus::JwtMissed;
        for s in statuses.into_iter().chain(std::iter::once(all)) {
            if !matches!(s, JwtStatus::JwtMissed | JwtStatus::JwtUnknownIssuer)
                || last == JwtStatus::JwtMissed
            {
                last = s;
            }
        }
        Err(last)
    }
}

impl Provider {
    /// envoy authenticator.cc `handleGoodJwt`: payload and claim headers, token removal.
    fn apply(&self, verified: Vec<Verified>, edits: &mut Vec<Edit>) -> Authenticated {
        let mut claims = None;
        for v in verified {
            if !self.forward {
                if let Some(h) = &v.header {
                    edits.push(Edit::Remove(h.clone()));
                }
            }
            if let Some(h) = &self.payload_header {
                if let Ok(val) = v.payload_b64.parse() {
                    edits.push(Edit::Append(h.clone(), val));
                }
            }
            for (h, path) in &self.claim_to_headers {
                if let Some(val) = v.claims.header_value(path).and_then(|s| s.parse().ok()) {
                    edits.push(Edit::Append(h.clone(), val));
                }
            }
            claims = Some(Arc::new(v.claims));
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_after_prefix_stops_at_the_first_illegal_character() {
        assert_eq!(token_after("Bearer a.b.c", 7), "a.b.c");
        assert_eq!(token_after("Bearer a.b.c, other", 7), "a.b.c");
    }

    #[test]
    fn malformed_tokens_get_envoys_statuses() {
        assert_eq!(Parsed::parse("a.b").err(), Some(JwtStatus::JwtBadFormat));
        assert_eq!(
            Parsed::parse("!!.b.c").err(),
            Some(JwtStatus::JwtHeaderParseErrorBadBase64)
        );
        // {"alg":"none"}
        let none = "eyJhbGciOiJub25lIn0.e30.c2ln";
        assert_eq!(
            Parsed::parse(none).err(),
            Some(JwtStatus::JwtHeaderNotImplementedAlg)
        );
    }

    #[test]
    fn audiences_ignore_scheme_and_trailing_slash() {
        assert!(audiences_allowed(
            &["https://a.com/".into()],
            &["a.com".into()]
        ));
        assert!(!audiences_allowed(&["a.com".into()], &[]));
        assert!(audiences_allowed(&[], &[]));
    }

    #[test]
    fn default_locations_are_bearer_and_access_token() {
        let l = Provider::locations_for(&[], &[], &[]);
        assert!(matches!(&l[0], Location::Header { prefix, .. } if prefix == "Bearer "));
        assert!(matches!(&l[1], Location::Param(p) if p == "access_token"));
    }
}
