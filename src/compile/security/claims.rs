//! A verified JWT payload as Envoy's `jwt_authn` filter leaves it for the filters after it: the
//! claims object, with the space-delimited claims (`scope`, `permission` and any a rule names)
//! turned into lists (`normalize_payload_in_metadata`). RBAC (`request.auth.*`) and route
//! matching (`@request.auth.claims.*`) read it.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// The payload with `space_delimited` string claims split into lists (envoy
    /// authenticator.cc `setPayloadMetadata`).
    pub fn normalized(mut payload: Map<String, Value>, space_delimited: &[String]) -> Claims {
        for name in space_delimited {
            if let Some(Value::String(s)) = payload.get(name) {
                let list = s
                    .split(' ')
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect();
                payload.insert(name.clone(), Value::Array(list));
            }
        }
        Claims(payload)
    }

    /// The value at a nested claim path.
    pub fn get(&self, path: &[String]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.0.get(first)?;
        for k in rest {
            v = v.as_object()?.get(k)?;
        }
        Some(v)
    }

    /// Does the claim at `path` hold a string (or a list with a string) that `f` accepts?
    /// Other types never match, as Envoy's metadata string/list matchers do.
    pub fn any_string_at(&self, path: &[String], f: impl Fn(&str) -> bool) -> bool {
        match self.get(path) {
            Some(Value::String(s)) => f(s),
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str().is_some_and(&f)),
            _ => false,
        }
    }

    /// The claim as a header value (envoy authenticator.cc `addJWTClaimToHeader`): strings as
    /// they are, integers without a fraction, booleans, and objects or lists as base64 JSON.
    pub fn header_value(&self, path: &[String]) -> Option<String> {
        use base64::Engine;
        Some(match self.get(path)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            v @ (Value::Object(_) | Value::Array(_)) => {
                base64::engine::general_purpose::STANDARD.encode(v.to_string())
            }
            Value::Null => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        let Value::Object(m) = serde_json::from_str(json).unwrap() else {
            panic!()
        };
        Claims::normalized(m, &["scope".to_string()])
    }

    #[test]
    fn scope_is_split_and_lists_match_by_element() {
        let c = claims(r#"{"scope": "read write", "groups": ["a", "b"], "n": 3, "o": {"x": "y"}}"#);
        let p = |s: &str| vec![s.to_string()];
        assert!(c.any_string_at(&p("scope"), |v| v == "write"));
        assert!(c.any_string_at(&p("groups"), |v| v == "b"));
        assert!(!c.any_string_at(&p("n"), |_| true));
        assert!(c.any_string_at(&["o".into(), "x".into()], |v| v == "y"));
        assert_eq!(c.header_value(&p("n")).unwrap(), "3");
    }
}
