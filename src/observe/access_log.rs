//! Access log: one line per request (or TCP connection), in the format the mesh config asks
//! for (`access_format`: Envoy's operators; Istio's default text line or JSON object), to
//! stdout or a file (`accessLogFile`). A file is reopened when it is renamed or removed
//! (logrotate), checked before every write-out. Lines are buffered and written by one thread,
//! so a slow disk or stdout never blocks a request; past a bound, lines are dropped and counted.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderMap;
use serde::Serialize;

use super::access_format::{AccessFormat, LogInput};

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

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

impl LogTarget {
    /// `accessLogFile`: `""` is off, `/dev/stdout` is stdout, anything else a file.
    pub fn from_mesh(path: &str) -> Option<LogTarget> {
        match path {
            "" => None,
            "/dev/stdout" => Some(LogTarget::Stdout),
            p => Some(LogTarget::File(PathBuf::from(p))),
        }
    }
}

/// What the access log does now: where (`None`: off) and in which format. Compiled per
/// reload with the snapshot; handed to the sink with [`AccessLog::configure`].
#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    pub target: Option<Arc<LogTarget>>,
    pub format: Arc<AccessFormat>,
}

impl AccessLogSettings {
    /// Without a mesh file: stdout, Istio's text line or JSON object.
    pub fn stdout(format: LogFormat) -> AccessLogSettings {
        AccessLogSettings {
            target: Some(Arc::new(LogTarget::Stdout)),
            format: Arc::new(match format {
                LogFormat::Text => AccessFormat::istio_text(),
                LogFormat::Json => AccessFormat::istio_json(),
            }),
        }
    }
}

/// Lines waiting for the writer, in order, each run with its target.
#[derive(Default)]
struct Pending {
    target: Option<Arc<LogTarget>>,
    buf: Vec<u8>,
    earlier: Vec<(Arc<LogTarget>, Vec<u8>)>,
    bytes: usize,
}

impl Pending {
    fn take(&mut self) -> Vec<(Arc<LogTarget>, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.earlier);
        if let Some(t) = &self.target {
            if !self.buf.is_empty() {
                out.push((t.clone(), std::mem::take(&mut self.buf)));
            }
        }
        self.bytes = 0;
        out
    }
}

/// The access-log sink. Request workers append formatted lines to a shared buffer; a writer
/// thread writes it out every [`FLUSH_INTERVAL`]. A worker never waits for the disk and never
/// wakes another thread per line (that wake-up cost more than the line itself). If the writer
/// falls so far behind that the buffer passes [`MAX_BUFFER`], lines are dropped and counted.
pub struct AccessLog {
    settings: ArcSwap<AccessLogSettings>,
    pending: Arc<Mutex<Pending>>,
    files: Arc<Mutex<Files>>,
    pub dropped: AtomicU64,
}

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
const MAX_BUFFER: usize = 8 << 20;

impl AccessLog {
    /// Starts the writer thread.
    pub fn start(settings: AccessLogSettings) -> AccessLog {
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let files: Arc<Mutex<Files>> = Arc::default();
        let (shared, out) = (pending.clone(), files.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_INTERVAL);
                let chunks = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                if !chunks.is_empty() {
                    out.lock().unwrap_or_else(|e| e.into_inner()).write(chunks);
                }
            })
            .ok();
        AccessLog {
            settings: ArcSwap::from_pointee(settings),
            pending,
            files,
            dropped: AtomicU64::new(0),
        }
    }

    /// Without a mesh file: stdout in `format`.
    pub fn stdout(format: LogFormat) -> AccessLog {
        AccessLog::start(AccessLogSettings::stdout(format))
    }

    /// Takes new settings (a reload); lines already buffered keep their target.
    pub fn configure(&self, settings: AccessLogSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Writes out whatever is buffered (at exit, so no line of a drained request is lost).
    pub fn flush(&self) {
        let chunks = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(chunks);
    }

    /// Logs an entry without headers (TCP connections, tunnels).
    pub fn log(&self, entry: &AccessLogEntry) {
        self.log_http(entry, None, None);
    }

    /// Logs an HTTP request; `%REQ(..)%` and `%RESP(..)%` read these headers.
    pub fn log_http(
        &self,
        entry: &AccessLogEntry,
        request: Option<&HeaderMap>,
        response: Option<&HeaderMap>,
    ) {
        let settings = self.settings.load();
        let Some(target) = &settings.target else {
            return;
        };
        let mut line = settings.format.render(&LogInput {
            entry,
            request,
            response,
        });
        line.push('\n');
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.bytes + line.len() > MAX_BUFFER {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        if !p.target.as_ref().is_some_and(|t| Arc::ptr_eq(t, target)) {
            if let Some(old) = p.target.replace(target.clone()) {
                let buf = std::mem::take(&mut p.buf);
                if !buf.is_empty() {
                    p.earlier.push((old, buf));
                }
            }
        }
        p.bytes += line.len();
        p.buf.extend_from_slice(line.as_bytes());
    }
}

/// Open log files, by path, with the identity of what was opened: a file renamed or removed
/// under us (logrotate) is seen as a different (or missing) inode at that path, and reopened.
#[derive(Default)]
struct Files {
    open: HashMap<PathBuf, (std::fs::File, (u64, u64))>,
    /// Paths that failed to open, so the error is printed once, not per write-out.
    failed: HashMap<PathBuf, String>,
}

impl Files {
    fn write(&mut self, chunks: Vec<(Arc<LogTarget>, Vec<u8>)>) {
        for (target, bytes) in chunks {
            match &*target {
                LogTarget::Stdout => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                LogTarget::File(path) => {
                    if let Some(f) = self.file(path) {
                        let _ = f.write_all(&bytes);
                    }
                }
            }
        }
    }

    /// The open file for `path`, reopened if the path now names another file (or none).
    fn file(&mut self, path: &PathBuf) -> Option<&mut std::fs::File> {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let current = self.open.get(path).map(|(_, id)| *id);
        if now.is_none() || now != current {
            self.open.remove(path);
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|f| {
                    let m = f.metadata()?;
                    Ok((f, (m.dev(), m.ino())))
                });
            match opened {
                Ok(f) => {
                    self.failed.remove(path);
                    self.open.insert(path.clone(), f);
                }
                Err(e) => {
                    let e = e.to_string();
                    if self.failed.get(path) != Some(&e) {
                        tracing::error!("cannot open the access log {}: {e}", path.display());
                        self.failed.insert(path.clone(), e);
                    }
                    return None;
                }
            }
        }
        self.open.get_mut(path).map(|(f, _)| f)
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
    fn a_renamed_log_file_is_reopened_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(AccessLogSettings {
            target: Some(Arc::new(LogTarget::File(path.clone()))),
            format: Arc::new(AccessFormat::text("%RESPONSE_CODE%").unwrap()),
        });
        let mut e = AccessLogEntry::new(SystemTime::UNIX_EPOCH);
        e.response_code = 200;
        log.log(&e);
        log.flush();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        e.response_code = 201;
        log.log(&e);
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "201\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("access.log.1")).unwrap(),
            "200\n"
        );
    }

    #[test]
    fn an_empty_access_log_file_turns_the_log_off() {
        assert_eq!(LogTarget::from_mesh(""), None);
        assert_eq!(LogTarget::from_mesh("/dev/stdout"), Some(LogTarget::Stdout));
    }

    #[test]
    fn json_has_snake_case_keys() {
        let e = AccessLogEntry::new(SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert!(v.get("response_code").is_some());
        assert!(v.get("requested_server_name").is_some());
    }
}
