//! `fault`: delay and/or abort a fraction of requests (Envoy's fault filter), decided per
//! request by [`Fault::roll`].

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::compile::reply::{LocalReply, ResponseFlag};
use crate::config::types::HttpFaultInjection;

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// (delay in ms, percentage of requests)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<(u64, f64)>,
    /// (abort, percentage of requests)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<(Abort, f64)>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Abort {
    Http(u16),
    /// gRPC status code, sent as HTTP 200 with `grpc-status`.
    Grpc(u32),
}

/// What the dice said for one request.
#[derive(Debug, Default)]
pub struct Injected {
    pub delay: Option<Duration>,
    pub abort: Option<LocalReply>,
}

impl Fault {
    pub fn compile(f: &HttpFaultInjection) -> Option<Fault> {
        let pct = |p: Option<f64>| p.unwrap_or(0.0).clamp(0.0, 100.0);
        let delay = f.delay.as_ref().and_then(|d| {
            let fraction = pct(d.percentage.map(|p| p.value).or(d.percent.map(f64::from)));
            Some((d.fixed_delay?.get().as_millis() as u64, fraction))
        });
        let abort = f.abort.as_ref().and_then(|a| {
            let fraction = pct(a.percentage.map(|p| p.value));
            let kind = if let Some(s) = a.http_status {
                Abort::Http(u16::try_from(s).ok()?)
            } else {
                Abort::Grpc(grpc_code(a.grpc_status.as_deref()?)?)
            };
            Some((kind, fraction))
        });
        (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
    }

    /// Decides, for one request, whether it is delayed and whether it is aborted (each with
    /// its own percentage).
    pub fn roll(&self) -> Injected {
        let hit = |pct: f64| fastrand::f64() * 100.0 < pct;
        Injected {
            delay: self
                .delay
                .filter(|(_, pct)| hit(*pct))
                .map(|(ms, _)| Duration::from_millis(ms)),
            abort: self
                .abort
                .filter(|(_, pct)| hit(*pct))
                .map(|(abort, _)| abort.reply()),
        }
    }
}

impl Abort {
    fn reply(self) -> LocalReply {
        match self {
            Abort::Http(code) => LocalReply::new(
                code,
                Some(ResponseFlag::FI),
                "fault_filter_abort",
                "fault filter abort",
            ),
            Abort::Grpc(code) => {
                LocalReply::new(200, Some(ResponseFlag::FI), "fault_filter_abort", "")
                    .header(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/grpc"),
                    )
                    .header(
                        HeaderName::from_static("grpc-status"),
                        HeaderValue::from(code),
                    )
            }
        }
    }
}

/// A gRPC status name as Istio accepts it (`UNAVAILABLE`), or its number.
pub fn grpc_code(name: &str) -> Option<u32> {
    crate::config::types::GRPC_STATUS_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .or_else(|| name.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_hundred_percent_are_never_and_always() {
        let f = Fault {
            delay: Some((5, 0.0)),
            abort: Some((Abort::Http(418), 100.0)),
        };
        for _ in 0..100 {
            let i = f.roll();
            assert!(i.delay.is_none());
            assert_eq!(i.abort.map(|r| r.status), Some(418));
        }
    }

    #[test]
    fn grpc_aborts_answer_200_with_grpc_status() {
        let r = Abort::Grpc(grpc_code("UNAVAILABLE").unwrap()).reply();
        assert_eq!(r.status, 200);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "grpc-status" && v == "14"));
        assert_eq!(r.flag, Some(ResponseFlag::FI));
    }
}
