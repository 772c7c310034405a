//! Whether a request is traced, as Envoy decides it at the edge
//! (`source/common/http/conn_manager_utility.cc` `mutateTracingRequestHeader`, with the UUID
//! request-id extension `source/extensions/request_id/uuid/config.cc`):
//!
//! - the sampling value is the request id's first 8 hex digits modulo 10000;
//! - a request with `x-client-trace-id` is traced (`ClientForced`: Istio's client sampling is
//!   100%); `x-envoy-force-trace` never counts at a gateway, whose edge requests lose it first
//!   (`cleanInternalHeaders`);
//! - else the random sampling percentage decides, in steps of 0.01% (Envoy's HCM config
//!   rounds `random_sampling` to a numerator out of 10000, so 0.001% is 0);
//! - the reason is written into the request id at position 14 (the UUID version digit): `9`
//!   sampled, `b` client-forced, `a` service-forced; an upstream or the access log sees it.
//!
//! A propagated sampling decision wins over this one (the tracers' `startSpan` with a parent
//! context keep its `sampled` flag).

/// Envoy's trace reasons (`envoy/tracing/trace_reason.h`) that the edge can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotTraceable,
    Sampling,
    ClientForced,
    ServiceForced,
}

/// Where the UUID extension packs the reason (`TRACE_BYTE_POSITION`).
const TRACE_BYTE_POSITION: usize = 14;

/// The random sampling rate, out of 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sampling {
    pub per_10000: u32,
}

impl Sampling {
    /// A percentage as Envoy keeps it: rounded to a numerator out of 10000
    /// (`PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT(.., random_sampling, 10000, 10000)`).
    pub fn from_percent(percent: f64) -> Sampling {
        let n = (percent.clamp(0.0, 100.0) * 100.0).round() as u32;
        Sampling { per_10000: n }
    }

    /// Decides for a request with this (new) `request_id`, and marks the decision in it.
    pub fn decide(self, request_id: &mut String, client_trace_id: bool) -> Reason {
        let Some(value) = request_id
            .get(..8)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            return Reason::NotTraceable;
        };
        let reason = match reason_of(request_id) {
            Reason::NotTraceable if client_trace_id => Reason::ClientForced,
            Reason::NotTraceable if value % 10000 < u64::from(self.per_10000) => Reason::Sampling,
            other => other,
        };
        set_reason(request_id, reason);
        reason
    }
}

impl Reason {
    /// `TracerUtility::shouldTraceRequest`.
    pub fn traced(self) -> bool {
        self != Reason::NotTraceable
    }
}

/// `UUIDRequestIDExtension::getTraceReason`.
fn reason_of(uuid: &str) -> Reason {
    if uuid.len() != 36 {
        return Reason::NotTraceable;
    }
    match uuid.as_bytes()[TRACE_BYTE_POSITION] {
        b'a' => Reason::ServiceForced,
        b'9' => Reason::Sampling,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

/// `UUIDRequestIDExtension::setTraceReason` (a reason only: an untraced id keeps its digit).
fn set_reason(uuid: &mut String, reason: Reason) {
    let digit = match reason {
        Reason::ServiceForced => "a",
        Reason::ClientForced => "b",
        Reason::Sampling => "9",
        Reason::NotTraceable => return,
    };
    if uuid.len() == 36 && uuid.is_char_boundary(TRACE_BYTE_POSITION + 1) {
        uuid.replace_range(TRACE_BYTE_POSITION..=TRACE_BYTE_POSITION, digit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_to_envoys_ten_thousandths() {
        assert_eq!(Sampling::from_percent(1.0).per_10000, 100);
        assert_eq!(Sampling::from_percent(100.0).per_10000, 10000);
        assert_eq!(Sampling::from_percent(0.001).per_10000, 0);
        assert_eq!(Sampling::from_percent(0.005).per_10000, 1);
    }

    #[test]
    fn the_request_id_decides_and_carries_the_reason() {
        // 0x00002710 = 10000 → 0 mod 10000: sampled at any rate above 0.
        let mut id = "00002710-1234-4abc-8def-0123456789ab".to_string();
        assert_eq!(
            Sampling::from_percent(0.01).decide(&mut id, false),
            Reason::Sampling
        );
        assert_eq!(id, "00002710-1234-9abc-8def-0123456789ab");
        // 0x0000270f = 9999: only 100% samples it.
        let mut id = "0000270f-1234-4abc-8def-0123456789ab".to_string();
        assert_eq!(
            Sampling::from_percent(99.99).decide(&mut id, false),
            Reason::NotTraceable
        );
        assert_eq!(id, "0000270f-1234-4abc-8def-0123456789ab");
        assert_eq!(
            Sampling::from_percent(100.0).decide(&mut id, false),
            Reason::Sampling
        );
        // A client trace id forces it, whatever the rate.
        let mut id = "0000270f-1234-4abc-8def-0123456789ab".to_string();
        assert_eq!(
            Sampling::from_percent(0.0).decide(&mut id, true),
            Reason::ClientForced
        );
        assert_eq!(&id[14..15], "b");
        assert_eq!(
            Sampling::from_percent(0.0).decide(&mut "short".into(), true),
            Reason::NotTraceable
        );
    }
}
