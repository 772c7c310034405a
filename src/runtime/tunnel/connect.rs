//! The egress CONNECT tunnel (`HTTPS_PROXY` clients): allowed only to a registered host on a
//! TLS/HTTPS port (or any host under ALLOW_ANY), refused with 403 before anything is opened
//! upstream; the tunnelled ClientHello must name the CONNECT host.

use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{open, ConnInfo};
use crate::compile::reply::ResponseFlag;
use crate::config::host::{normalize_request_host, split_authority};
use crate::runtime::State;
use crate::tls::client_hello::{peek_client_hello, Parse, MAX_CLIENT_HELLO};

/// How long a CONNECT client may take to send its request head, and then its ClientHello.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest CONNECT request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What is wrong with a CONNECT request head.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("request head too large")]
    TooLarge,
    #[error("timed out reading the request")]
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
    let (head, leftover) = match read_head(&mut client).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("CONNECT from {}: {e}", info.client);
            return;
        }
    };
    let Some(target) = parse_connect(&head) else {
        let line = head.lines().next().unwrap_or("");
        let _ = respond(
            &mut client,
            400,
            &format!("malformed CONNECT request line `{line}`\n"),
        )
        .await;
        entry.response_code = 400;
        entry.response_flags = Some(ResponseFlag::DPE.as_str().into());
        state.access_log.log(&entry);
        return;
    };
    entry.authority = Some(target.to_string());
    entry.path = Some(target.to_string());
    let (host, port) = match split_authority(target) {
        (h, Some(p)) => (normalize_request_host(h).into_owned(), p),
        _ => (normalize_request_host(target).into_owned(), 443),
    };
    let snapshot = state.snapshot.load_full();
    let cluster = match snapshot.connect_target(&host, port) {
        Ok(c) => c,
        Err(refusal) => {
            let _ = respond(&mut client, 403, &String::from_utf8_lossy(&refusal.body)).await;
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
        Err(reason) => {
            let _ = respond(
                &mut client,
                503,
                &format!("upstream connect error: {reason}\n"),
            )
            .await;
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

/// Reads a request head (up to [`MAX_HEAD`]); returns it and any bytes after it.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(String, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = tokio::time::timeout(HEAD_TIMEOUT, s.read(&mut chunk))
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

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nserver: portcullis\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.flush().await
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
    }
}
