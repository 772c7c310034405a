//! One access-log record: what happened to a request (or a TCP connection), in the fields of
//! Istio's default access log, filled in by the runtime and rendered by `access_format`.

use std::time::SystemTime;

use serde::Serialize;

/// The fields of Istio's default access log (`EnvoyTextLogFormat`), in order.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLogEntry {
    #[serde(serialize_with = "rfc3339")]
    pub start_time: SystemTime,
    pub method: Option<String>,
    pub path: Option<String>,
    pub protocol: Option<String>,
    pub response_code: u16,
    pub response_flags: Option<String>,
    pub response_code_details: Option<String>,
    pub connection_termination_details: Option<String>,
    pub upstream_transport_failure_reason: Option<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: u64,
    pub upstream_service_time: Option<u64>,
    pub x_forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub authority: Option<String>,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_local_address: Option<String>,
    pub downstream_local_address: Option<String>,
    pub downstream_remote_address: Option<String>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
    /// `%REQ(:SCHEME)%`.
    #[serde(skip)]
    pub scheme: Option<String>,
    /// The TCP peer, when the client address came from the PROXY header or `x-forwarded-for`.
    #[serde(skip)]
    pub downstream_direct_remote_address: Option<String>,
    /// `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`.
    #[serde(skip)]
    pub attempts: Option<u32>,
    /// `%TRACE_ID%`: the request's trace, when tracing is on.
    #[serde(skip)]
    pub trace_id: Option<String>,
}

impl AccessLogEntry {
    pub fn new(start_time: SystemTime) -> Self {
        AccessLogEntry {
            start_time,
            method: None,
            path: None,
            protocol: None,
            response_code: 0,
            response_flags: None,
            response_code_details: None,
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: 0,
            bytes_sent: 0,
            duration: 0,
            upstream_service_time: None,
            x_forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
            scheme: None,
            downstream_direct_remote_address: None,
            attempts: None,
            trace_id: None,
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

/// `2026-11-21T13:39:00.123Z`, as Envoy prints `%START_TIME%`.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, rem) = civil(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Unix seconds → (year, month, day, seconds into the day), UTC.
pub fn civil(secs: i64) -> (i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    (year, month, day, rem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_start_time_like_envoy() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_268_340_123);
        assert_eq!(format_time(t), "2026-11-21T13:39:00.123Z");
    }
}
