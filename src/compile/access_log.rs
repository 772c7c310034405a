//! The access log as the mesh config asks for it, compiled once per reload: where lines go
//! (`accessLogFile`), TEXT or JSON (`accessLogEncoding`), and Envoy's format strings
//! (`%START_TIME%`, `%REQ(X?Y):N%`, `%RESPONSE_CODE%`, ...) parsed into [`AccessFormat`], as
//! Envoy's `substitution_format_string` does (source/common/formatter/). TEXT is a format
//! string; JSON is an object of format strings. Istio's defaults: `EnvoyTextLogFormat` and
//! `EnvoyJSONLogFormatIstio` (pilot/pkg/model/telemetry_logging.go). Rendering a line per
//! request is the sink's job (`observe::access_format`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Envoy's default text line.
    #[default]
    Text,
    /// The same fields as a JSON object per line.
    Json,
}

/// Istio's `EnvoyTextLogFormat` (pilot/pkg/model/telemetry_logging.go), without its newline.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%";

/// Istio's `EnvoyJSONLogFormatIstio`, key by key.
pub const ISTIO_JSON_FORMAT: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
];

/// A format string that cannot be compiled (Envoy rejects the listener config for it).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error("unknown command operator `%{0}%` (expected one of Envoy's, e.g. %REQ(X)%, %RESPONSE_CODE%)")]
    UnknownOperator(String),
    #[error("`%{0}` is not closed by `%`")]
    Unterminated(String),
    #[error("`%{0}%` needs a header name in parentheses, e.g. %{0}(USER-AGENT)%")]
    MissingArgument(String),
    #[error("`{0}` is not a valid length limit")]
    BadLength(String),
    #[error("`{0}` is not a JSON object of format strings: {1}")]
    NotJsonObject(String, String),
}

/// One compiled log format.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessFormat {
    Text(Vec<Piece>),
    Json(Vec<(String, JsonField)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum JsonField {
    Format(Vec<Piece>),
    Literal(Value),
    Object(Vec<(String, JsonField)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Literal(String),
    Op { op: Op, max_len: Option<usize> },
}

/// The request/response header an operator reads: `main`, else `alt` (`%REQ(A?B)%`).
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderSel {
    pub main: String,
    pub alt: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    StartTime(Option<String>),
    Req(HeaderSel),
    ReqWithoutQuery(HeaderSel),
    Resp(HeaderSel),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamRequestAttemptCount,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamRemotePort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    RequestedServerName,
    RouteName,
    TraceId,
    Hostname,
}

impl Op {
    fn parse(name: &str, arg: Option<&str>) -> Result<Op, FormatError> {
        let header = |arg: Option<&str>| -> Result<HeaderSel, FormatError> {
            let a = arg
                .filter(|a| !a.is_empty())
                .ok_or_else(|| FormatError::MissingArgument(name.to_string()))?;
            let (main, alt) = match a.split_once('?') {
                Some((m, alt)) => (m, Some(alt.to_ascii_lowercase())),
                None => (a, None),
            };
            Ok(HeaderSel {
                main: main.to_ascii_lowercase(),
                alt,
            })
        };
        Ok(match name {
            "START_TIME" => Op::StartTime(arg.map(str::to_string)),
            "REQ" => Op::Req(header(arg)?),
            "REQ_WITHOUT_QUERY" => Op::ReqWithoutQuery(header(arg)?),
            "RESP" => Op::Resp(header(arg)?),
            "PROTOCOL" => Op::Protocol,
            "RESPONSE_CODE" => Op::ResponseCode,
            "RESPONSE_FLAGS" => Op::ResponseFlags,
            "RESPONSE_CODE_DETAILS" => Op::ResponseCodeDetails,
            "CONNECTION_TERMINATION_DETAILS" => Op::ConnectionTerminationDetails,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::UpstreamTransportFailureReason,
            "BYTES_RECEIVED" => Op::BytesReceived,
            "BYTES_SENT" => Op::BytesSent,
            "DURATION" => Op::Duration,
            "UPSTREAM_HOST" => Op::UpstreamHost,
            "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Op::UpstreamCluster,
            "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocalAddress,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Op::UpstreamRequestAttemptCount,
            "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocalAddress,
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Op::DownstreamLocalAddressWithoutPort,
            "DOWNSTREAM_LOCAL_PORT" => Op::DownstreamLocalPort,
            "DOWNSTREAM_REMOTE_ADDRESS" => Op::DownstreamRemoteAddress,
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteAddressWithoutPort,
            "DOWNSTREAM_REMOTE_PORT" => Op::DownstreamRemotePort,
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => Op::DownstreamDirectRemoteAddress,
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Op::DownstreamDirectRemoteAddressWithoutPort
            }
            "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
            "ROUTE_NAME" => Op::RouteName,
            // Envoy `%TRACE_ID%` (source/common/formatter/stream_info_formatter.cc): the
            // active span's trace id, `-` without one.
            "TRACE_ID" => Op::TraceId,
            "HOSTNAME" => {
                // Read once, at compile: never a file read on a request worker.
                let _ = hostname();
                Op::Hostname
            }
            _ => {
                let full = match arg {
                    Some(a) => format!("{name}({a})"),
                    None => name.to_string(),
                };
                return Err(FormatError::UnknownOperator(full));
            }
        })
    }
}

/// Compiles an Envoy format string into pieces.
pub fn parse_format(text: &str) -> Result<Vec<Piece>, FormatError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            literal.push('%');
            rest = r;
            continue;
        }
        // An operator: NAME, NAME(ARG), then an optional :LEN, then `%`.
        let name_len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() {
            // A lone `%` not starting an operator stays literal, as Envoy prints it.
            literal.push('%');
            continue;
        }
        let mut after = &rest[name_len..];
        let mut arg = None;
        if let Some(a) = after.strip_prefix('(') {
            let close = a
                .find(")")
                .ok_or_else(|| FormatError::Unterminated(name.to_string()))?;
            arg = Some(&a[..close]);
            after = &a[close + 1..];
        }
        let mut max_len = None;
        if let Some(l) = after.strip_prefix(':') {
            let end = l.find('%').unwrap_or(l.len());
            max_len = Some(
                l[..end]
                    .parse::<usize>()
                    .map_err(|_| FormatError::BadLength(l[..end].to_string()))?,
            );
            after = &l[end..];
        }
        let Some(r) = after.strip_prefix('%') else {
            return Err(FormatError::Unterminated(name.to_string()));
        };
        rest = r;
        if !literal.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        out.push(Piece::Op {
            op: Op::parse(name, arg)?,
            max_len,
        });
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Literal(literal));
    }
    Ok(out)
}

impl AccessFormat {
    /// Istio's default text line.
    pub fn istio_text() -> AccessFormat {
        // The constant is known to compile (unit-tested).
        AccessFormat::Text(parse_format(ISTIO_TEXT_FORMAT).unwrap_or_default())
    }

    /// Istio's default JSON object.
    pub fn istio_json() -> AccessFormat {
        AccessFormat::Json(
            ISTIO_JSON_FORMAT
                .iter()
                .map(|(k, f)| {
                    let pieces = parse_format(f).unwrap_or_default();
                    (k.to_string(), JsonField::Format(pieces))
                })
                .collect(),
        )
    }

    /// A TEXT `accessLogFormat` (Istio appends the newline; so does the writer).
    pub fn text(format: &str) -> Result<AccessFormat, FormatError> {
        Ok(AccessFormat::Text(parse_format(
            format.strip_suffix('\n').unwrap_or(format),
        )?))
    }

    /// A JSON `accessLogFormat`: an object whose string values are format strings.
    pub fn json(format: &str) -> Result<AccessFormat, FormatError> {
        let value: Value = serde_json::from_str(format)
            .map_err(|e| FormatError::NotJsonObject(format.to_string(), e.to_string()))?;
        match value {
            Value::Object(map) => Ok(AccessFormat::Json(json_fields(map)?)),
            other => Err(FormatError::NotJsonObject(
                format.to_string(),
                format!("it is {other}"),
            )),
        }
    }
}

fn json_fields(map: Map<String, Value>) -> Result<Vec<(String, JsonField)>, FormatError> {
    map.into_iter()
        .map(|(k, v)| {
            let f = match v {
                Value::String(s) => JsonField::Format(parse_format(&s)?),
                Value::Object(m) => JsonField::Object(json_fields(m)?),
                other => JsonField::Literal(other),
            };
            Ok((k, f))
        })
        .collect()
}

/// The host name for `%HOSTNAME%`, read once (at compile, never on a request worker).
pub fn hostname() -> &'static str {
    static NAME: once_cell::sync::Lazy<String> = once_cell::sync::Lazy::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "-".to_string())
    });
    &NAME
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operators_and_unclosed_ones_are_errors() {
        assert_eq!(
            AccessFormat::text("%NOPE%"),
            Err(FormatError::UnknownOperator("NOPE".into()))
        );
        assert!(matches!(
            AccessFormat::text("%REQ(X"),
            Err(FormatError::Unterminated(_))
        ));
        assert!(matches!(
            AccessFormat::text("%REQ%"),
            Err(FormatError::MissingArgument(_))
        ));
    }
}
