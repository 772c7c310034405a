//! The egress CONNECT tunnel (`HTTPS_PROXY` clients): allowed only to a registered host on a
//! TLS/HTTPS port (or any host under ALLOW_ANY), refused with 403 before anything is opened
//! upstream; the tunnelled ClientHello must name the CONNECT host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{open, ConnInfo, TunnelError};
use crate::compile::reply::ResponseFlag;
use crate::config::diag::shorten;
use crate::config::host::{normalize_request_host, parse_authority};
use crate::runtime::http1::{linger, write_reply};
use crate::runtime::limits::DownstreamLimits;
use crate::runtime::State;
use crate::tls::client_hello::{peek_client_hello, Parse, MAX_CLIENT_HELLO};

/// How long the client may take to send its ClientHello once the tunnel is open.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What is wrong with a CONNECT request head.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("request head not complete in time")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn connect_tunnel(state: Arc<State>, mut client: Stream, info: ConnInfo) {
    let mut entry = info.entry();
    entry.method = Some("CONNECT".into());
    entry.protocol = Some("HTTP/1.1".into());
    let limits = &state.options.limits;
    let (head, leftover) = match read_head(&mut client, limits).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("CONNECT from {}: {e}", info.client);
            let status = match e {
                HeadError::TooLarge(_) => 431,
                HeadError::Timeout => 408,
                HeadError::Closed | HeadError::Io(_) => return,
            };
            let _ = write_reply(&mut client, status, &format!("{e}\n")).await;
            linger(&mut client).await;
            entry.response_code = status;
            entry.response_flags = Some(ResponseFlag::DPE.as_str().into());
            state.access_log.log(&entry);
            return;
        }
    };
    // RFC 9110 §9.3.6: the target is `host:port`; without a valid port there is no
    // destination (never a default one).
    let target = parse_connect(&head);
    let (host, port) = match target.map(parse_authority) {
        Some(Ok((h, Some(p)))) if !h.is_empty() => (normalize_request_host(h).into_owned(), p),
        _ => {
            let line = head.lines().next().unwrap_or("");
            let why = match target.map(parse_authority) {
                Some(Err(e)) => format!("{e}"),
                Some(Ok(_)) => "the target is not host:port".to_string(),
                None => "malformed request line".to_string(),
            };
            let body = format!("bad CONNECT `{}`: {why}\n", shorten(line, 200));
            let _ = write_reply(&mut client, 400, &body).await;
            entry.authority = target.map(|t| shorten(t, 200).into_owned());
            entry.response_code = 400;
            entry.response_flags = Some(ResponseFlag::DPE.as_str().into());
            entry.response_code_details = Some("http.invalid_authority".into());
            state.access_log.log(&entry);
            return;
        }
    };
    // The destination used, as the log shows it.
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    entry.authority = Some(target.clone());
    entry.path = Some(target);
    let snapshot = state.snapshot.load_full();
    let cluster = match snapshot.connect_target(&host, port) {
        Ok(c) => c,
        Err(refusal) => {
            let body = String::from_utf8_lossy(&refusal.body);
            let _ = write_reply(&mut client, 403, &body).await;
            state
                .metrics
                .egress_denied
                .with_label_values(&["connect"])
                .inc();
            entry.response_code = 403;
            entry.response_flags = refusal.flag.map(|f| f.as_str().into());
            entry.response_code_details = Some(refusal.details.into());
            entry.upstream_cluster = Some("BlackHoleCluster".into());
            entry.duration = info.start.elapsed().as_millis() as u64;
            state.access_log.log(&entry);
            return;
        }
    };
    entry.upstream_cluster = Some(cluster.name.clone());
    let (mut upstream, addr) = match open(&state, &cluster, &host, port, false).await {
        Ok(v) => v,
        Err(reason @ TunnelError::Refused(_)) => {
            let _ = write_reply(&mut client, 403, &format!("{reason}\n")).await;
            entry.response_code = 403;
            entry.response_code_details = Some("destination_not_allowed".into());
            state.access_log.log(&entry);
            return;
        }
        Err(reason) => {
            let body = format!("upstream connect error: {reason}\n");
            let _ = write_reply(&mut client, 503, &body).await;
            entry.response_code = 503;
            entry.response_flags = Some(ResponseFlag::UF.as_str().into());
            entry.upstream_transport_failure_reason = Some(reason.to_string());
            state.access_log.log(&entry);
            return;
        }
    };
    entry.upstream_host = Some(addr.to_string());
    entry.response_code = 200;
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = client.flush().await;
    let mut first = leftover;
    if state.options.connect_sni_check {
        // The ClientHello must name the host the tunnel was opened for (blocks a fake outer
        // CONNECT host hiding another destination in SNI).
        let mut hello = first.clone();
        let parsed = tokio::time::timeout(
            HELLO_TIMEOUT,
            peek_client_hello(&mut client, &mut hello, MAX_CLIENT_HELLO),
        )
        .await;
        let sni = match parsed {
            Ok(Ok(Parse::Complete(h))) => h.server_name,
            _ => None,
        };
        if let Some(s) = sni.as_ref().filter(|s| **s != host) {
            entry.response_flags = Some(ResponseFlag::UAEX.as_str().into());
            entry.response_code_details = Some(format!("sni_mismatch:{s}"));
            entry.requested_server_name = Some(s.clone());
            entry.duration = info.start.elapsed().as_millis() as u64;
            state.access_log.log(&entry);
            return;
        }
        entry.requested_server_name = sni;
        first = hello;
    }
    if !first.is_empty() && upstream.write_all(&first).await.is_err() {
        return;
    }
    let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .unwrap_or((0, 0));
    entry.bytes_received = up + first.len() as u64;
    entry.bytes_sent = down;
    entry.duration = info.start.elapsed().as_millis() as u64;
    state.access_log.log(&entry);
}

/// Reads a request head within the request-head limits (size, and one deadline for the whole
/// head); returns it and any bytes after it.
async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    limits: &DownstreamLimits,
) -> Result<(String, Vec<u8>), HeadError> {
    let max = limits.max_request_headers_bytes;
    let deadline = limits.request_headers_timeout.map(|t| Instant::now() + t);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if end + 4 > max {
                return Err(HeadError::TooLarge(max));
            }
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge(max));
        }
        let wait = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let n = tokio::time::timeout(wait, s.read(&mut chunk))
            .await
            .map_err(|_| HeadError::Timeout)??;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `CONNECT host:port HTTP/1.1` → `host:port`.
fn parse_connect(head: &str) -> Option<&str> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("CONNECT"), Some(target), Some(v))
            if v.starts_with("HTTP/1.") && !target.contains('/') =>
        {
            Some(target)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_targets() {
        assert_eq!(
            parse_connect("CONNECT api.example.com:443 HTTP/1.1\r\nHost: x"),
            Some("api.example.com:443")
        );
        assert!(parse_connect("GET / HTTP/1.1").is_none());
        assert!(parse_connect("CONNECT http://x/ HTTP/1.1").is_none());
        // The port is checked by `parse_authority`: `x` and `x:65616` are refused with 400.
        assert_eq!(parse_connect("CONNECT x HTTP/1.1"), Some("x"));
    }
}
