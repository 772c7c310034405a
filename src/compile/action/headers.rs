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
        self.apply(req);
    }

    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        self.apply(resp);
    }

    fn apply(&self, h: &mut impl HeaderTarget) {
        self.remove_from(h);
        self.set_and_add(h);
    }

    fn remove_from(&self, h: &mut impl HeaderTarget) {
        for name in &self.remove {
            h.remove(name);
        }
    }

    fn set_and_add(&self, h: &mut impl HeaderTarget) {
        for (k, v) in &self.set {
            h.set(k, v);
        }
        for (k, v) in &self.add {
            h.add(k, v);
        }
    }
}

/// The order Istio and Envoy give a route's and its destination's header operations
/// (`route.go` `processDestination` / `processWeightedDestination`; Envoy
/// `WeightedClusterEntry::finalizeRequestHeaders` / `finalizeResponseHeaders`):
///
/// - one destination: Istio appends the destination's operations to the route's lists, and
///   Envoy's `HeaderParser` removes everything first, then sets and adds in list order, so the
///   destination's `set` wins (request and response);
/// - weighted destinations: the cluster's operations run first and the route's last, so the
///   route wins.
#[derive(Debug, Clone, Copy)]
pub struct HeaderOrder<'a> {
    pub route: &'a HeaderOps,
    pub destination: Option<&'a HeaderOps>,
    pub weighted: bool,
}

impl HeaderOrder<'_> {
    pub fn apply_request(&self, req: &mut RequestHeader) {
        self.apply(req);
    }

    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        self.apply(resp);
    }

    fn apply(&self, h: &mut impl HeaderTarget) {
        let Some(dest) = self.destination else {
            self.route.apply(h);
            return;
        };
        if self.weighted {
            dest.apply(h);
            self.route.apply(h);
        } else {
            self.route.remove_from(h);
            dest.remove_from(h);
            self.route.set_and_add(h);
            dest.set_and_add(h);
        }
    }
}

/// Request and response heads alike.
trait HeaderTarget {
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: &HeaderName, value: &HeaderValue);
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);
}

/// The same three operations on either head (Pingora gives both the same methods).
macro_rules! header_target {
    ($($t:ty),*) => {$(
        impl HeaderTarget for $t {
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
                let _ = self.insert_header(name.clone(), value.clone());
            }
            fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
                let _ = self.append_header(name.clone(), value.clone());
            }
        }
    )*};
}

header_target!(RequestHeader, ResponseHeader);

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

    fn ops(set: &[(&str, &str)], remove: &[&str]) -> HeaderOps {
        let ops = HeaderOperations {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: remove.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        HeaderOps::compile(Some(&ops)).unwrap().0
    }

    #[test]
    fn one_destination_wins_and_the_route_wins_over_weighted_destinations() {
        let route = ops(&[("x-who", "route")], &[]);
        let dest = ops(&[("x-who", "destination")], &["x-route-only"]);
        let order = |weighted| HeaderOrder {
            route: &route,
            destination: Some(&dest),
            weighted,
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        order(false).apply_request(&mut req);
        assert_eq!(req.headers["x-who"], "destination");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        order(false).apply_response(&mut resp);
        assert_eq!(resp.headers["x-who"], "destination");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        order(true).apply_request(&mut req);
        assert_eq!(req.headers["x-who"], "route");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        order(true).apply_response(&mut resp);
        assert_eq!(resp.headers["x-who"], "route");
        // One destination: every removal runs before any set, as one Envoy list.
        let route = ops(&[("x-route-only", "1")], &[]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        HeaderOrder {
            route: &route,
            destination: Some(&dest),
            weighted: false,
        }
        .apply_request(&mut req);
        assert_eq!(req.headers["x-route-only"], "1");
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
