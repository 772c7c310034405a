//! `headers.request` / `headers.response`: remove, then set (overwrite), then add (append), with
//! names and values parsed once at compile time.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use serde::{Serialize, Serializer};

use crate::config::types::HeaderOperations;

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

/// A header name or value the config gives that HTTP does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("invalid header name `{0}`")]
    Name(String),
    #[error("invalid value for header `{0}`")]
    Value(String),
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Compiles header operations. `host` / `:authority` in set or add is returned separately:
    /// Istio turns it into an authority rewrite.
    pub fn compile(
        ops: Option<&HeaderOperations>,
    ) -> Result<(HeaderOps, Option<String>), HeaderError> {
        let mut out = HeaderOps::default();
        let mut authority = None;
        let Some(ops) = ops else {
            return Ok((out, None));
        };
        let name = |k: &str| {
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| HeaderError::Name(k.to_string()))
        };
        for (list, dst) in [(&ops.set, &mut out.set), (&ops.add, &mut out.add)] {
            for (k, v) in list {
                if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case(":authority") {
                    authority = Some(v.clone());
                    continue;
                }
                let value = HeaderValue::from_str(v).map_err(|_| HeaderError::Value(k.clone()))?;
                dst.push((name(k)?, value));
            }
        }
        for k in &ops.remove {
            out.remove.push(name(k)?);
        }
        Ok((out, authority))
    }

    pub fn apply_request(&self, req: &mut RequestHeader) {
        for name in &self.remove {
            req.remove_header(name);
        }
        for (k, v) in &self.set {
            let _ = req.insert_header(k.clone(), v.clone());
        }
        for (k, v) in &self.add {
            let _ = req.append_header(k.clone(), v.clone());
        }
    }

    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        for name in &self.remove {
            resp.remove_header(name);
        }
        for (k, v) in &self.set {
            let _ = resp.insert_header(k.clone(), v.clone());
        }
        for (k, v) in &self.add {
            let _ = resp.append_header(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn remove_then_set_then_add_and_host_becomes_an_authority_rewrite() {
        let ops = HeaderOperations {
            set: BTreeMap::from([
                ("X-A".into(), "1".into()),
                ("Host".into(), "h.example".into()),
            ]),
            add: BTreeMap::from([("x-b".into(), "2".into())]),
            remove: vec!["x-gone".into()],
        };
        let (ops, authority) = HeaderOps::compile(Some(&ops)).unwrap();
        assert_eq!(authority.as_deref(), Some("h.example"));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-a", "0").unwrap();
        req.insert_header("x-b", "1").unwrap();
        req.insert_header("x-gone", "1").unwrap();
        ops.apply_request(&mut req);
        assert_eq!(req.headers["x-a"], "1");
        let b: Vec<_> = req.headers.get_all("x-b").iter().collect();
        assert_eq!(b, ["1", "2"]);
        assert!(req.headers.get("x-gone").is_none());
    }

    #[test]
    fn invalid_names_and_values_are_errors() {
        let bad = |k: &str, v: &str| HeaderOperations {
            set: BTreeMap::from([(k.into(), v.into())]),
            ..Default::default()
        };
        assert!(matches!(
            HeaderOps::compile(Some(&bad("a b", "1"))),
            Err(HeaderError::Name(_))
        ));
        assert!(matches!(
            HeaderOps::compile(Some(&bad("a", "x\ny"))),
            Err(HeaderError::Value(_))
        ));
    }
}
