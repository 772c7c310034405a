//! Value types shared by several kinds: durations, percentages, string matches, destinations,
//! header operations. Each parses exactly the spelling Istio accepts.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A protobuf/Go duration as Istio accepts it: `1.5s`, `100ms`, `1m30s`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(into = "String")]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses Go's `time.ParseDuration` syntax (which protobuf's `1.5s` form is a subset of).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s.starts_with('-') {
            return Err(format!("negative duration `{text}`"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(Duration::default());
        }
        let mut total_nanos: f64 = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_len == 0 {
                return Err(format!(
                    "`{text}` is not a duration (expected e.g. 1.5s, 100ms, 1m)"
                ));
            }
            let number: f64 = rest[..num_len]
                .parse()
                .map_err(|_| format!("bad number in duration `{text}`"))?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let scale = match unit {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "" => {
                    return Err(format!(
                        "duration `{text}` has no unit (expected ms, s, m or h)"
                    ))
                }
                other => {
                    return Err(format!(
                    "unknown unit `{other}` in duration `{text}` (expected ns, us, ms, s, m or h)"
                ))
                }
            };
            total_nanos += number * scale;
        }
        if !total_nanos.is_finite() || total_nanos > 1e9 * 315_576_000_000.0 {
            return Err(format!("duration `{text}` is out of range"));
        }
        Ok(Duration(std::time::Duration::from_nanos(
            total_nanos.round() as u64,
        )))
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        d.to_string()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if self.0.subsec_nanos().is_multiple_of(1_000_000) && !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 1.5s, 100ms or 1m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            // protobuf's JSON form also allows {seconds, nanos}; YAML users write strings.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit (expected a string such as {v}s or {v}ms)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit (expected e.g. 1s or 100ms)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!("`{v}` has no unit (expected e.g. 1.5s)")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Istio's `Percent` message: `{value: 12.5}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Percent {
    pub value: f64,
}

/// `StringMatch`: exactly one of `exact`, `prefix`, `regex`; `{}` means "present" where allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    pub fn set_count(&self) -> usize {
        [&self.exact, &self.prefix, &self.regex]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }
}

/// `PortSelector`: `{number: 8080}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PortSelector {
    pub number: u32,
}

/// `Destination`: the service (ServiceEntry host) a route sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `Headers.HeaderOperations`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderOperations {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `Headers`: operations on the request and on the response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

/// Label selector used by mesh-only fields (`workloadSelector`, `sourceLabels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

/// `istio.type.v1beta1.WorkloadSelector` (DestinationRule `workloadSelector`): `{matchLabels: …}`,
/// unlike the networking `WorkloadSelector` (`{labels: …}`) that ServiceEntry uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyWorkloadSelector {
    pub match_labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &str) -> u128 {
        Duration::parse(v).unwrap().0.as_millis()
    }

    #[test]
    fn parses_go_and_protobuf_durations() {
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("100ms"), 100);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("0"), 0);
        assert_eq!(Duration::parse("500us").unwrap().0.as_micros(), 500);
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        assert!(Duration::parse("10").unwrap_err().contains("no unit"));
        assert!(Duration::parse("-1s").unwrap_err().contains("negative"));
        assert!(Duration::parse("3 days").is_err());
        assert!(Duration::parse("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn displays_round_trip() {
        for v in ["1.5s", "100ms", "90s"] {
            let d = Duration::parse(v).unwrap();
            assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
        }
    }
}
