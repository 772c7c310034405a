//! Envoy's JWT verification statuses with their exact messages (envoy
//! `source/common/jwt/status.cc`), the reply each gets (envoy `jwt_authn/filter.cc`: 403 for a
//! disallowed audience, else 401, the message as body, `www-authenticate`), and the
//! `%RESPONSE_CODE_DETAILS%` Envoy logs (`jwt_authn_access_denied{Jwt_is_expired}`).

use std::collections::HashMap;

macro_rules! statuses {
    ($($name:ident => $msg:literal,)*) => {
        /// A JWT verification outcome other than success.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum JwtStatus { $($name,)* }

        impl JwtStatus {
            pub const ALL: &'static [JwtStatus] = &[$(JwtStatus::$name,)*];

            /// Envoy's message for this status (the body of the reply).
            pub fn message(self) -> &'static str {
                match self { $(JwtStatus::$name => $msg,)* }
            }
        }
    };
}

statuses! {
    JwtMissed => "Jwt is missing",
    JwtNotYetValid => "Jwt not yet valid",
    JwtExpired => "Jwt is expired",
    JwtBadFormat => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
    JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
    JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
    JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
    JwtHeaderBadKid => "Jwt header [kid] field is not a string",
    JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
    JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
    JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
    JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
    JwtPayloadParseErrorIatNotInteger => "Jwt payload [iat] field is not an integer",
    JwtPayloadParseErrorIatOutOfRange => "Jwt payload [iat] field is not a positive 64 bit integer",
    JwtPayloadParseErrorNbfNotInteger => "Jwt payload [nbf] field is not an integer",
    JwtPayloadParseErrorNbfOutOfRange => "Jwt payload [nbf] field is not a positive 64 bit integer",
    JwtPayloadParseErrorExpNotInteger => "Jwt payload [exp] field is not an integer",
    JwtPayloadParseErrorExpOutOfRange => "Jwt payload [exp] field is not a positive 64 bit integer",
    JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
    JwtPayloadParseErrorAudNotString => "Jwt payload [aud] field is not a string or string list",
    JwtSignatureParseErrorBadBase64 => "Jwt signature is an invalid Base64url encoded",
    JwtUnknownIssuer => "Jwt issuer is not configured",
    JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
    JwtVerificationFail => "Jwt verification fails",
    JwksNoValidKeys => "Jwks doesn't have any valid public key",
    JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
}

static DETAILS: once_cell::sync::Lazy<HashMap<JwtStatus, &'static str>> =
    once_cell::sync::Lazy::new(|| {
        JwtStatus::ALL
            .iter()
            .map(|s| {
                // Made once for the ~30 statuses: `jwt_authn_access_denied{Jwt_is_expired}`.
                let d = format!(
                    "jwt_authn_access_denied{{{}}}",
                    s.message().replace(' ', "_")
                );
                (*s, &*Box::leak(d.into_boxed_str()))
            })
            .collect()
    });

impl JwtStatus {
    /// 403 for a disallowed audience, 401 for everything else.
    pub fn http_status(self) -> u16 {
        if self == JwtStatus::JwtAudienceNotAllowed {
            403
        } else {
            401
        }
    }

    pub fn details(self) -> &'static str {
        DETAILS
            .get(&self)
            .copied()
            .unwrap_or("jwt_authn_access_denied")
    }

    /// `www-authenticate`: `Bearer realm="<original uri>"`, plus `error="invalid_token"` unless
    /// the token was missing.
    pub fn www_authenticate(self, original_uri: &str) -> String {
        let mut v = format!("Bearer realm=\"{original_uri}\"");
        if self != JwtStatus::JwtMissed {
            v.push_str(", error=\"invalid_token\"");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_messages_codes_and_details() {
        assert_eq!(JwtStatus::JwtExpired.message(), "Jwt is expired");
        assert_eq!(JwtStatus::JwtExpired.http_status(), 401);
        assert_eq!(JwtStatus::JwtAudienceNotAllowed.http_status(), 403);
        assert_eq!(
            JwtStatus::JwtExpired.details(),
            "jwt_authn_access_denied{Jwt_is_expired}"
        );
        assert_eq!(
            JwtStatus::JwtVerificationFail.www_authenticate("http://a/b"),
            "Bearer realm=\"http://a/b\", error=\"invalid_token\""
        );
    }
}
