//! The trace context a request carries in, and the one the gateway sends on, in the format the
//! provider kind propagates (Istio `pilot/pkg/networking/core/tracing.go` picks Envoy's tracer
//! from it):
//!
//! - `opentelemetry`: W3C `traceparent` / `tracestate` only (Envoy
//!   `source/extensions/tracers/opentelemetry/span_context_extractor.cc`: version `00`, a
//!   32-hex trace id and a 16-hex span id, neither all zeros, 2-hex flags, sampled = bit 0; a
//!   malformed header means no span at all); injected as `00-{trace}-{span}-{flags}` plus the
//!   `tracestate` received (`tracer.cc` `Span::injectContext`).
//! - `zipkin`: B3 (Envoy `source/extensions/tracers/zipkin/span_context_extractor.cc`): the
//!   single `b3` header first (`{trace}-{span}[-{sampling}[-{parent}]]`, or a lone sampling
//!   flag), else `x-b3-traceid` + `x-b3-spanid` (+ `x-b3-parentspanid`); sampled from the
//!   sampling field or `x-b3-sampled` (`1` or `true`; `d` / `x-b3-flags: 1` is debug, which
//!   B3 defines as sampled); injected as the multi headers (`zipkin_core_types.cc`
//!   `Span::injectContext`). With `traceContextOption: USE_B3_WITH_W3C_PROPAGATION` a request
//!   without B3 falls back to W3C and both formats are injected.

use http::HeaderMap;

/// How trace context crosses the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Propagation {
    /// W3C trace context (the OpenTelemetry tracer).
    W3c,
    /// B3 (the Zipkin tracer); `w3c`: also W3C (`USE_B3_WITH_W3C_PROPAGATION`).
    B3 { w3c: bool },
}

/// What the request says about its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// No propagation header: the gateway's own decision starts a trace.
    None,
    /// A parent span to continue. `sampled`: the caller's decision, if it made one.
    Parent(Parent),
    /// Only a sampling decision (B3 `b3: 0|1|d`): a new trace, sampled as the caller says.
    SamplingOnly(bool),
    /// A propagation header that does not parse: Envoy starts no span (the headers pass on).
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: Option<bool>,
    /// W3C `tracestate`, passed on as received.
    pub tracestate: Option<String>,
}

impl Propagation {
    /// Reads the request's trace context.
    pub fn extract(self, headers: &HeaderMap) -> Incoming {
        match self {
            Propagation::W3c => w3c(headers),
            Propagation::B3 { w3c: fallback } => match b3(headers) {
                Incoming::None if fallback => w3c(headers),
                other => other,
            },
        }
    }

    /// The headers the upstream gets for span `span_id` of trace `trace_id`, whose parent is
    /// `parent` (B3's `x-b3-parentspanid`).
    pub fn inject(
        self,
        out: &mut Vec<(&'static str, String)>,
        ids: (u128, u64, Option<u64>),
        sampled: bool,
        tracestate: Option<&str>,
    ) {
        let (trace_id, span_id, parent) = ids;
        let traceparent = |out: &mut Vec<(&'static str, String)>| {
            let flags = if sampled { "01" } else { "00" };
            out.push((
                "traceparent",
                format!("00-{trace_id:032x}-{span_id:016x}-{flags}"),
            ));
            // Envoy sets `tracestate` even when empty.
            out.push(("tracestate", tracestate.unwrap_or("").to_string()));
        };
        match self {
            Propagation::W3c => traceparent(out),
            Propagation::B3 { w3c } => {
                out.push(("x-b3-traceid", format!("{trace_id:032x}")));
                out.push(("x-b3-spanid", format!("{span_id:016x}")));
                if let Some(p) = parent {
                    out.push(("x-b3-parentspanid", format!("{p:016x}")));
                }
                out.push(("x-b3-sampled", if sampled { "1" } else { "0" }.into()));
                if w3c {
                    traceparent(out);
                }
            }
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    // An untrusted header: only the first value counts (Envoy `getByKey`).
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn hex_u128(s: &str, len: usize) -> Option<u128> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

fn w3c(headers: &HeaderMap) -> Incoming {
    let Some(tp) = header(headers, "traceparent") else {
        return Incoming::None;
    };
    let parts: Vec<&str> = tp.split('-').collect();
    let parsed = (tp.len() == 55 && parts.len() == 4)
        .then(|| {
            let version = hex_u128(parts[0], 2)?;
            let trace_id = hex_u128(parts[1], 32).filter(|t| *t != 0)?;
            let span_id = hex_u128(parts[2], 16).filter(|s| *s != 0)? as u64;
            let flags = hex_u128(parts[3], 2)?;
            (version != 0xff).then_some((trace_id, span_id, flags & 1 == 1))
        })
        .flatten();
    match parsed {
        Some((trace_id, span_id, sampled)) => Incoming::Parent(Parent {
            trace_id,
            span_id,
            sampled: Some(sampled),
            tracestate: header(headers, "tracestate")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }),
        None => Incoming::Malformed,
    }
}

/// A B3 sampling field: `1` and `d` (debug) sample, `0` does not.
fn b3_flag(c: &str) -> Option<bool> {
    match c {
        "1" | "d" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// A B3 trace id: 16 or 32 hex digits (a 64-bit id is the low half).
fn b3_trace_id(s: &str) -> Option<u128> {
    hex_u128(s, 32).or_else(|| hex_u128(s, 16))
}

fn b3_span_id(s: &str) -> Option<u64> {
    hex_u128(s, 16).map(|v| v as u64)
}

fn b3(headers: &HeaderMap) -> Incoming {
    if let Some(single) = header(headers, "b3") {
        return b3_single(single);
    }
    let (Some(trace), Some(span)) = (
        header(headers, "x-b3-traceid"),
        header(headers, "x-b3-spanid"),
    ) else {
        return Incoming::None;
    };
    let (Some(trace_id), Some(span_id)) = (b3_trace_id(trace), b3_span_id(span)) else {
        return Incoming::Malformed;
    };
    let debug = header(headers, "x-b3-flags") == Some("1");
    let sampled = match header(headers, "x-b3-sampled") {
        _ if debug => Some(true),
        Some(s) => Some(s == "1" || s == "true"),
        None => None,
    };
    Incoming::Parent(Parent {
        trace_id,
        span_id,
        sampled,
        tracestate: None,
    })
}

/// `b3: {trace}-{span}[-{sampling}[-{parent}]]`, or a lone sampling flag.
fn b3_single(v: &str) -> Incoming {
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() == 1 {
        return b3_flag(v).map_or(Incoming::Malformed, Incoming::SamplingOnly);
    }
    let parsed = (2..=4)
        .contains(&parts.len())
        .then(|| {
            let trace_id = b3_trace_id(parts[0])?;
            let span_id = b3_span_id(parts[1])?;
            let sampled = match parts.get(2) {
                Some(f) => Some(b3_flag(f)?),
                None => None,
            };
            if let Some(p) = parts.get(3) {
                b3_span_id(p)?;
            }
            Some((trace_id, span_id, sampled))
        })
        .flatten();
    match parsed {
        Some((trace_id, span_id, sampled)) => Incoming::Parent(Parent {
            trace_id,
            span_id,
            sampled,
            tracestate: None,
        }),
        None => Incoming::Malformed,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_w3c_traceparent_is_continued_with_its_tracestate() {
        let h = headers(&[("traceparent", TP), ("tracestate", "congo=t61rcWkgMzE")]);
        assert_eq!(
            Propagation::W3c.extract(&h),
            Incoming::Parent(Parent {
                trace_id: 0x0af7651916cd43dd8448eb211c80319c,
                span_id: 0xb7ad6b7169203331,
                sampled: Some(true),
                tracestate: Some("congo=t61rcWkgMzE".into()),
            })
        );
        let unsampled = headers(&[("traceparent", &TP.replace("-01", "-00"))]);
        assert!(matches!(
            Propagation::W3c.extract(&unsampled),
            Incoming::Parent(Parent {
                sampled: Some(false),
                ..
            })
        ));
    }

    #[test]
    fn a_malformed_traceparent_starts_no_span() {
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(
                Propagation::W3c.extract(&headers(&[("traceparent", bad)])),
                Incoming::Malformed,
                "{bad}"
            );
        }
        assert_eq!(Propagation::W3c.extract(&HeaderMap::new()), Incoming::None);
    }

    #[test]
    fn the_otel_tracer_ignores_b3_and_the_zipkin_tracer_ignores_w3c() {
        let b3 = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]);
        assert_eq!(Propagation::W3c.extract(&b3), Incoming::None);
        let w3c = headers(&[("traceparent", TP)]);
        assert_eq!(Propagation::B3 { w3c: false }.extract(&w3c), Incoming::None);
        assert!(matches!(
            Propagation::B3 { w3c: true }.extract(&w3c),
            Incoming::Parent(_)
        ));
    }

    #[test]
    fn b3_single_and_multi_headers_are_read() {
        let single = headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]);
        assert_eq!(
            Propagation::B3 { w3c: false }.extract(&single),
            Incoming::Parent(Parent {
                trace_id: 0x80f198ee56343ba864fe8b2a57d3eff7,
                span_id: 0xe457b5a2e4d86bd1,
                sampled: Some(true),
                tracestate: None,
            })
        );
        let b3 = Propagation::B3 { w3c: false };
        assert_eq!(
            b3.extract(&headers(&[("b3", "0")])),
            Incoming::SamplingOnly(false)
        );
        assert_eq!(
            b3.extract(&headers(&[("b3", "d")])),
            Incoming::SamplingOnly(true)
        );
        assert_eq!(
            b3.extract(&headers(&[("b3", "nope-x")])),
            Incoming::Malformed
        );
        let multi = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]);
        assert_eq!(
            b3.extract(&multi),
            Incoming::Parent(Parent {
                trace_id: 0x64fe8b2a57d3eff7,
                span_id: 0xe457b5a2e4d86bd1,
                sampled: Some(false),
                tracestate: None,
            })
        );
        let debug = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-flags", "1"),
        ]);
        assert!(matches!(
            b3.extract(&debug),
            Incoming::Parent(Parent {
                sampled: Some(true),
                ..
            })
        ));
    }

    #[test]
    fn injection_writes_each_format() {
        let mut out = Vec::new();
        Propagation::W3c.inject(&mut out, (1, 2, Some(3)), true, Some("a=b"));
        assert_eq!(
            out,
            vec![
                (
                    "traceparent",
                    "00-00000000000000000000000000000001-0000000000000002-01".to_string()
                ),
                ("tracestate", "a=b".to_string()),
            ]
        );
        let mut out = Vec::new();
        Propagation::B3 { w3c: false }.inject(&mut out, (1, 2, Some(3)), false, None);
        let names: Vec<&str> = out.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "x-b3-traceid",
                "x-b3-spanid",
                "x-b3-parentspanid",
                "x-b3-sampled"
            ]
        );
        assert_eq!(out[3].1, "0");
    }
}
