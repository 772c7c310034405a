//! Rendering an access-log line from a compiled [`AccessFormat`] (`compile::access_log`) per
//! request, without parsing: TEXT prints `-` for a value that is not there; JSON keeps a lone
//! operator's type (a number, a string, or `null`), as Envoy's `substitution_format_string`
//! does (source/common/formatter/).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::access_entry::{civil, format_time, AccessLogEntry};
use crate::compile::access_log::{hostname, AccessFormat, HeaderSel, JsonField, Op, Piece};

impl AccessFormat {
    /// One log line (without the newline).
    pub fn render(&self, input: &LogInput<'_>) -> String {
        match self {
            AccessFormat::Text(pieces) => {
                let mut s = String::with_capacity(320);
                for p in pieces {
                    match p {
                        Piece::Literal(l) => s.push_str(l),
                        Piece::Op { op, max_len } => match input.value(op) {
                            Val::None => s.push('-'),
                            Val::Str(v) => s.push_str(truncate(&v, *max_len)),
                            Val::Num(n) => {
                                let _ = write!(s, "{n}");
                            }
                        },
                    }
                }
                s
            }
            AccessFormat::Json(fields) => {
                serde_json::to_string(&render_object(fields, input)).unwrap_or_default()
            }
        }
    }
}

fn render_object(fields: &[(String, JsonField)], input: &LogInput<'_>) -> Value {
    let mut map = Map::with_capacity(fields.len());
    for (k, f) in fields {
        let v = match f {
            JsonField::Literal(v) => v.clone(),
            JsonField::Object(inner) => render_object(inner, input),
            // A lone operator keeps its type (Envoy's typed JSON): number, string or null.
            JsonField::Format(pieces) => match pieces.as_slice() {
                [Piece::Op { op, max_len }] => match input.value(op) {
                    Val::None => Value::Null,
                    Val::Num(n) => Value::from(n),
                    Val::Str(s) => Value::String(truncate(&s, *max_len).to_string()),
                },
                _ => {
                    let text = AccessFormat::Text(pieces.clone()).render(input);
                    Value::String(text)
                }
            },
        };
        map.insert(k.clone(), v);
    }
    Value::Object(map)
}

fn truncate(s: &str, max: Option<usize>) -> &str {
    match max {
        Some(n) if s.len() > n => {
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        }
        _ => s,
    }
}

/// A value an operator found: absent, text, or a number.
enum Val<'a> {
    None,
    Str(Cow<'a, str>),
    Num(u64),
}

fn opt(v: &Option<String>) -> Val<'_> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Val::Str(Cow::Borrowed(s)),
        _ => Val::None,
    }
}

/// What a line is rendered from: the entry, and the request and response headers if any.
pub struct LogInput<'a> {
    pub entry: &'a AccessLogEntry,
    pub request: Option<&'a HeaderMap>,
    pub response: Option<&'a HeaderMap>,
}

impl<'a> LogInput<'a> {
    fn header(map: Option<&'a HeaderMap>, name: &str) -> Val<'a> {
        map.and_then(|m| m.get(name))
            .and_then(|v| v.to_str().ok())
            .map_or(Val::None, |s| Val::Str(Cow::Borrowed(s)))
    }

    /// A request header as Envoy sees it after its own changes: pseudo-headers from the
    /// request line, `x-forwarded-for` with the client appended, the request id in force.
    fn req(&self, name: &str) -> Val<'a> {
        let e = self.entry;
        match name {
            ":method" => opt(&e.method),
            ":path" => opt(&e.path),
            ":authority" | "host" => opt(&e.authority),
            ":scheme" => opt(&e.scheme),
            "x-forwarded-for" => opt(&e.x_forwarded_for),
            "x-request-id" => opt(&e.request_id),
            // Portcullis never rewrites the downstream request's own path.
            "x-envoy-original-path" => Val::None,
            _ => Self::header(self.request, name),
        }
    }

    fn resp(&self, name: &str) -> Val<'a> {
        match name {
            "x-envoy-upstream-service-time" => self
                .entry
                .upstream_service_time
                .map_or(Val::None, |t| Val::Str(Cow::Owned(t.to_string()))),
            _ => Self::header(self.response, name),
        }
    }

    fn value(&self, op: &Op) -> Val<'a> {
        let e = self.entry;
        let either = |sel: &HeaderSel, f: &dyn Fn(&str) -> Val<'a>| match f(&sel.main) {
            Val::None => sel.alt.as_deref().map_or(Val::None, f),
            v => v,
        };
        match op {
            Op::StartTime(None) => Val::Str(Cow::Owned(format_time(e.start_time))),
            Op::StartTime(Some(f)) => Val::Str(Cow::Owned(strftime(e.start_time, f))),
            Op::Req(sel) => either(sel, &|n| self.req(n)),
            Op::ReqWithoutQuery(sel) => match either(sel, &|n| self.req(n)) {
                Val::Str(s) => match s.split_once('?') {
                    Some((p, _)) => Val::Str(Cow::Owned(p.to_string())),
                    None => Val::Str(s),
                },
                v => v,
            },
            Op::Resp(sel) => either(sel, &|n| self.resp(n)),
            Op::Protocol => opt(&e.protocol),
            Op::ResponseCode => Val::Num(e.response_code.into()),
            // Envoy prints `-` for "no flags", also in JSON.
            Op::ResponseFlags => Val::Str(Cow::Borrowed(
                e.response_flags
                    .as_deref()
                    .filter(|f| !f.is_empty())
                    .unwrap_or("-"),
            )),
            Op::ResponseCodeDetails => opt(&e.response_code_details),
            Op::ConnectionTerminationDetails => opt(&e.connection_termination_details),
            Op::UpstreamTransportFailureReason => opt(&e.upstream_transport_failure_reason),
            Op::BytesReceived => Val::Num(e.bytes_received),
            Op::BytesSent => Val::Num(e.bytes_sent),
            Op::Duration => Val::Num(e.duration),
            Op::UpstreamHost => opt(&e.upstream_host),
            Op::UpstreamCluster => opt(&e.upstream_cluster),
            Op::UpstreamLocalAddress => opt(&e.upstream_local_address),
            Op::UpstreamRequestAttemptCount => e.attempts.map_or(Val::None, |n| Val::Num(n.into())),
            Op::DownstreamLocalAddress => opt(&e.downstream_local_address),
            Op::DownstreamLocalAddressWithoutPort => without_port(&e.downstream_local_address),
            Op::DownstreamLocalPort => port_of(&e.downstream_local_address),
            Op::DownstreamRemoteAddress => opt(&e.downstream_remote_address),
            Op::DownstreamRemoteAddressWithoutPort => without_port(&e.downstream_remote_address),
            Op::DownstreamRemotePort => port_of(&e.downstream_remote_address),
            Op::DownstreamDirectRemoteAddress => {
                opt(if e.downstream_direct_remote_address.is_some() {
                    &e.downstream_direct_remote_address
                } else {
                    &e.downstream_remote_address
                })
            }
            Op::DownstreamDirectRemoteAddressWithoutPort => {
                without_port(if e.downstream_direct_remote_address.is_some() {
                    &e.downstream_direct_remote_address
                } else {
                    &e.downstream_remote_address
                })
            }
            Op::RequestedServerName => opt(&e.requested_server_name),
            Op::RouteName => opt(&e.route_name),
            Op::TraceId => opt(&e.trace_id),
            Op::Hostname => Val::Str(Cow::Borrowed(hostname())),
        }
    }
}

fn without_port(addr: &Option<String>) -> Val<'_> {
    match addr
        .as_deref()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    {
        Some(a) => Val::Str(Cow::Owned(a.ip().to_string())),
        None => opt(addr),
    }
}

fn port_of(addr: &Option<String>) -> Val<'_> {
    match addr
        .as_deref()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    {
        Some(a) => Val::Num(a.port().into()),
        None => Val::None,
    }
}

/// `%START_TIME(FORMAT)%`: strftime's `%Y %m %d %H %M %S %j %z %Z %s` and Envoy's `%f`,
/// `%1f`..`%9f` (fractional seconds) and `%%`, in UTC; anything else is kept as written.
fn strftime(t: SystemTime, format: &str) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, rem) = civil(d.as_secs() as i64);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match spec {
            'Y' => write!(out, "{year:04}"),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'H' => write!(out, "{:02}", rem / 3600),
            'M' => write!(out, "{:02}", rem % 3600 / 60),
            'S' => write!(out, "{:02}", rem % 60),
            's' => write!(out, "{}", d.as_secs()),
            'z' => write!(out, "+0000"),
            'Z' => write!(out, "UTC"),
            'f' => write!(out, "{:09}", d.subsec_nanos()),
            '%' => write!(out, "%"),
            n @ '1'..='9' if chars.peek() == Some(&'f') => {
                chars.next();
                let digits = n as usize - '0' as usize;
                let nanos = format!("{:09}", d.subsec_nanos());
                write!(out, "{}", &nanos[..digits])
            }
            other => write!(out, "%{other}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry() -> AccessLogEntry {
        let mut e = AccessLogEntry::new(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        e.method = Some("GET".into());
        e.path = Some("/a/b?x=1".into());
        e.protocol = Some("HTTP/1.1".into());
        e.response_code = 404;
        e.response_flags = Some("NR".into());
        e.duration = 3;
        e.authority = Some("a.com".into());
        e.downstream_remote_address = Some("203.0.113.7:0".into());
        e.downstream_direct_remote_address = Some("127.0.0.1:5555".into());
        e
    }

    fn render(format: &str, e: &AccessLogEntry, req: Option<&HeaderMap>) -> String {
        AccessFormat::text(format).unwrap().render(&LogInput {
            entry: e,
            request: req,
            response: None,
        })
    }

    #[test]
    fn istios_default_text_format_compiles_and_prints_dashes_for_absent_values() {
        let out = AccessFormat::istio_text().render(&LogInput {
            entry: &entry(),
            request: None,
            response: None,
        });
        assert_eq!(
            out,
            "[1970-01-01T00:00:01.500Z] \"GET /a/b?x=1 HTTP/1.1\" 404 NR - - \"-\" 0 0 3 - \"-\" \"-\" \"-\" \"a.com\" \"-\" - - - 203.0.113.7:0 - -"
        );
    }

    #[test]
    fn header_operators_read_main_then_alternative_and_truncate() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "curl/8.0".parse().unwrap());
        h.insert("x-b", "bee".parse().unwrap());
        let e = entry();
        assert_eq!(
            render(
                "%REQ(USER-AGENT):4% %REQ(X-A?X-B)% %REQ(X-NONE)% %REQ_WITHOUT_QUERY(:PATH)%",
                &e,
                Some(&h)
            ),
            "curl bee - /a/b"
        );
    }

    #[test]
    fn address_operators_split_ip_and_port() {
        let e = entry();
        assert_eq!(
            render("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_PORT% 100%%", &e, None),
            "203.0.113.7 127.0.0.1:5555 0 100%"
        );
    }

    #[test]
    fn start_time_takes_a_strftime_format() {
        assert_eq!(
            render("%START_TIME(%Y/%m/%dT%H:%M:%S.%3f %s)%", &entry(), None),
            "1970/01/01T00:00:01.500 1"
        );
    }

    #[test]
    fn json_keeps_types_nulls_and_nested_objects() {
        let f = AccessFormat::json(
            r#"{"code":"%RESPONSE_CODE%","who":"%DOWNSTREAM_REMOTE_ADDRESS%","sni":"%REQUESTED_SERVER_NAME%","line":"%REQ(:METHOD)% %REQ(:PATH)%","n":{"flags":"%RESPONSE_FLAGS%"},"fixed":7}"#,
        )
        .unwrap();
        let out = f.render(&LogInput {
            entry: &entry(),
            request: None,
            response: None,
        });
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["code"], 404);
        assert_eq!(v["who"], "203.0.113.7:0");
        assert_eq!(v["sni"], Value::Null);
        assert_eq!(v["line"], "GET /a/b?x=1");
        assert_eq!(v["n"]["flags"], "NR");
        assert_eq!(v["fixed"], 7);
        assert!(AccessFormat::json("[1]").is_err());
    }
}
