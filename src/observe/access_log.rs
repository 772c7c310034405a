//! Access log: one line per request (or TCP connection) on stdout, in Envoy's default text
//! format as Istio configures it, or the same fields as JSON. Lines go through a bounded
//! channel to a writer thread, so a slow stdout never blocks a request; if the channel is full
//! the line is dropped and counted.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Envoy's default text line.
    #[default]
    Text,
    /// The same fields as a JSON object per line.
    Json,
}

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
        }
    }

    /// Envoy's text format; absent values print as `-`.
    pub fn to_text(&self) -> String {
        fn d(v: &Option<String>) -> &str {
            v.as_deref().filter(|s| !s.is_empty()).unwrap_or("-")
        }
        let mut s = String::with_capacity(320);
        let _ = write!(
            s,
            "[{}] \"{} {} {}\" {} {} {} {} \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} {} {}",
            format_time(self.start_time),
            d(&self.method),
            d(&self.path),
            d(&self.protocol),
            self.response_code,
            d(&self.response_flags),
            d(&self.response_code_details),
            d(&self.connection_termination_details),
            d(&self.upstream_transport_failure_reason),
            self.bytes_received,
            self.bytes_sent,
            self.duration,
            self.upstream_service_time.map_or_else(|| "-".to_string(), |t| t.to_string()),
            d(&self.x_forwarded_for),
            d(&self.user_agent),
            d(&self.request_id),
            d(&self.authority),
            d(&self.upstream_host),
            d(&self.upstream_cluster),
            d(&self.upstream_local_address),
            d(&self.downstream_local_address),
            d(&self.downstream_remote_address),
            d(&self.requested_server_name),
            d(&self.route_name),
        );
        s
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

/// `2026-11-21T13:39:00.123Z`, as Envoy prints `%START_TIME%`.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The access-log sink. Request workers append formatted lines to a shared buffer; a writer
/// thread flushes it to stdout every [`FLUSH_INTERVAL`]. A worker never waits for stdout and
/// never wakes another thread per line (that wake-up cost more than the line itself). If stdout
/// falls so far behind that the buffer passes [`MAX_BUFFER`], lines are dropped and counted.
pub struct AccessLog {
    format: LogFormat,
    buffer: Arc<Mutex<Vec<u8>>>,
    pub dropped: AtomicU64,
}

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
const MAX_BUFFER: usize = 8 << 20;

impl AccessLog {
    /// Starts the writer thread.
    pub fn stdout(format: LogFormat) -> AccessLog {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let shared = buffer.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    {
                        let mut b = shared.lock().unwrap_or_else(|e| e.into_inner());
                        std::mem::swap(&mut *b, &mut spare);
                    }
                    if !spare.is_empty() {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&spare);
                        let _ = out.flush();
                        spare.clear();
                    }
                }
            })
            .ok();
        AccessLog {
            format,
            buffer,
            dropped: AtomicU64::new(0),
        }
    }

    /// Writes out whatever is buffered (at exit, so no line of a drained request is lost).
    pub fn flush(&self) {
        let pending = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&pending);
        let _ = out.flush();
    }

    pub fn log(&self, entry: &AccessLogEntry) {
        let mut line = match self.format {
            LogFormat::Text => entry.to_text(),
            LogFormat::Json => serde_json::to_string(entry).unwrap_or_default(),
        };
        line.push('\n');
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() + line.len() > MAX_BUFFER {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        b.extend_from_slice(line.as_bytes());
    }
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

    #[test]
    fn text_line_has_envoys_field_order_and_dashes() {
        let mut e = AccessLogEntry::new(SystemTime::UNIX_EPOCH);
        e.method = Some("GET".into());
        e.path = Some("/status/418".into());
        e.protocol = Some("HTTP/1.1".into());
        e.response_code = 404;
        e.response_flags = Some("NR".into());
        e.response_code_details = Some("route_not_found".into());
        e.duration = 3;
        e.authority = Some("a.com".into());
        assert_eq!(
            e.to_text(),
            "[1970-01-01T00:00:00.000Z] \"GET /status/418 HTTP/1.1\" 404 NR route_not_found - \"-\" 0 0 3 - \"-\" \"-\" \"-\" \"a.com\" \"-\" - - - - - -"
        );
    }

    #[test]
    fn json_has_snake_case_keys() {
        let e = AccessLogEntry::new(SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert!(v.get("response_code").is_some());
        assert!(v.get("requested_server_name").is_some());
    }
}
