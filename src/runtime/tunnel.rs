//! Byte-stream proxying: `tcp` and `tls` (passthrough) routes, TLS-terminated TCP, and the
//! egress CONNECT tunnel. Each connection gets one access-log line when it closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::routing::{not_in_registry, Addressing};
use super::State;
use crate::compile::listener::TcpRoute;
use crate::compile::{OutboundPolicy, Role};
use crate::config::host::normalize_request_host;
use crate::observe::access_log::AccessLogEntry;
use crate::tls::client_hello::{peek_client_hello, Parse, MAX_CLIENT_HELLO};
use crate::tls::upstream::SanCheck;
use crate::upstream::{Cluster, PickInput};

/// Who is on the other end of a proxied connection, for the log.
pub struct ConnInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub sni: Option<String>,
    pub start: Instant,
    pub start_time: SystemTime,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, local: SocketAddr) -> Self {
        ConnInfo {
            client,
            local,
            sni: None,
            start: Instant::now(),
            start_time: SystemTime::now(),
        }
    }

    fn entry(&self) -> AccessLogEntry {
        let mut e = AccessLogEntry::new(self.start_time);
        e.downstream_remote_address = Some(self.client.to_string());
        e.downstream_local_address = Some(self.local.to_string());
        e.requested_server_name = self.sni.clone();
        e
    }
}

/// An endpoint of `cluster` for a connection to `host:port`.
async fn pick(
    state: &State,
    cluster: &Cluster,
    host: &str,
    port: u16,
) -> Result<SocketAddr, String> {
    let input = PickInput {
        request_host: host,
        request_port: port,
        ..Default::default()
    };
    cluster
        .pick(input, &state.dns)
        .await
        .map(|p| p.address)
        .map_err(|e| e.to_string())
}

/// Opens a connection to one endpoint of `cluster` (TLS-originated if its policy says so).
async fn connect(
    state: &State,
    cluster: &Cluster,
    host: &str,
    port: u16,
) -> Result<(Stream, SocketAddr), String> {
    let address = pick(state, cluster, host, port).await?;
    let p = cluster.peer(address, host, None);
    let stream = state.connector.new_stream(&p).await.map_err(|e| {
        format!(
            "{} {}",
            e.etype().as_str(),
            e.context
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default()
        )
    })?;
    let digest = pingora::protocols::Digest {
        ssl_digest: stream.get_ssl_digest(),
        ..Default::default()
    };
    if let Some(reason) = SanCheck::failure(Some(&digest)) {
        return Err(reason);
    }
    Ok((stream, address))
}

/// Proxies `client` to a destination of `route` until either side closes.
pub async fn proxy_route<C>(state: &State, route: &TcpRoute, mut client: C, info: ConnInfo)
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(cluster) = route.choose().cloned() else {
        return;
    };
    let host = info.sni.clone().unwrap_or_else(|| cluster.host.clone());
    let mut entry = info.entry();
    entry.upstream_cluster = Some(cluster.name.clone());
    let dest = cluster.host.as_str();
    state.metrics.tcp_opened.with_label_values(&[dest]).inc();
    match connect(state, &cluster, &host, cluster.port).await {
        Ok((mut upstream, addr)) => {
            entry.upstream_host = Some(addr.to_string());
            let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .unwrap_or((0, 0));
            entry.bytes_received = up;
            entry.bytes_sent = down;
            state
                .metrics
                .tcp_received
                .with_label_values(&[dest])
                .inc_by(up);
            state
                .metrics
                .tcp_sent
                .with_label_values(&[dest])
                .inc_by(down);
        }
        Err(reason) => {
            entry.response_flags = Some("UF".into());
            entry.upstream_transport_failure_reason = Some(reason);
        }
    }
    state.metrics.tcp_closed.with_label_values(&[dest]).inc();
    entry.duration = info.start.elapsed().as_millis() as u64;
    state.access_log.log(&entry);
}

/// The egress CONNECT tunnel: allowed only to a registered host on a TLS/HTTPS port (or any
/// host under ALLOW_ANY), refused with 403 before anything is opened upstream.
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
    let target = match parse_connect(&head) {
        Ok(t) => t,
        Err(e) => {
            let _ = respond(&mut client, 400, &format!("{e}\n")).await;
            entry.response_code = 400;
            entry.response_flags = Some("DPE".into());
            state.access_log.log(&entry);
            return;
        }
    };
    entry.authority = Some(target.clone());
    entry.path = Some(target.clone());
    let (host, port) = match crate::compile::action::split_authority(&target) {
        (h, Some(p)) => (normalize_request_host(h).into_owned(), p),
        _ => (normalize_request_host(&target).into_owned(), 443),
    };
    let snapshot = state.snapshot.load_full();
    let registered = snapshot
        .registry
        .lookup(&host, "default")
        .filter(|r| r.allows_tls_port(port));
    let cluster = match (registered, snapshot.instance.outbound_policy) {
        (Some(_), _) => snapshot.egress_cluster(&host, port).cloned(),
        (None, OutboundPolicy::AllowAny) => Some(snapshot.passthrough.clone()),
        (None, OutboundPolicy::RegistryOnly) => None,
    };
    let Some(cluster) = cluster.filter(|_| snapshot.instance.role == Role::Egress) else {
        let mut reply = not_in_registry(&snapshot, &host, port, Addressing::ForwardProxy);
        if snapshot.registry.lookup(&host, "default").is_some() {
            reply.body = format!("{host}:{port} is not a TLS or HTTPS port of a ServiceEntry for {host}; CONNECT is refused\n");
        }
        let _ = respond(&mut client, 403, &reply.body).await;
        state
            .metrics
            .egress_denied
            .with_label_values(&["connect"])
            .inc();
        entry.response_code = 403;
        entry.response_flags = Some("NR".into());
        entry.response_code_details = Some("host_not_in_registry".into());
        entry.upstream_cluster = Some("BlackHoleCluster".into());
        entry.duration = info.start.elapsed().as_millis() as u64;
        state.access_log.log(&entry);
        return;
    };
    entry.upstream_cluster = Some(cluster.name.clone());
    // A tunnel carries the client's own TLS: never originate TLS on it.
    let (mut upstream, addr) = match connect_plain(&state, &cluster, &host, port).await {
        Ok(v) => v,
        Err(reason) => {
            let _ = respond(
                &mut client,
                503,
                &format!("upstream connect error: {reason}\n"),
            )
            .await;
            entry.response_code = 503;
            entry.response_flags = Some("UF".into());
            entry.upstream_transport_failure_reason = Some(reason);
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
            std::time::Duration::from_secs(10),
            peek_client_hello(&mut client, &mut hello, MAX_CLIENT_HELLO),
        )
        .await;
        let sni = match parsed {
            Ok(Ok(Parse::Complete(h))) => h.server_name,
            _ => None,
        };
        if let Some(s) = &sni {
            if *s != host {
                entry.response_flags = Some("UAEX".into());
                entry.response_code_details = Some(format!("sni_mismatch:{s}"));
                entry.requested_server_name = Some(s.clone());
                entry.duration = info.start.elapsed().as_millis() as u64;
                state.access_log.log(&entry);
                return;
            }
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

async fn connect_plain(
    state: &State,
    cluster: &Cluster,
    host: &str,
    port: u16,
) -> Result<(Stream, SocketAddr), String> {
    let address = pick(state, cluster, host, port).await?;
    let timeout = cluster.upstream.connect_timeout;
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| format!("connect to {} timed out", address))?
        .map_err(|e| format!("connect to {}: {e}", address))?;
    let _ = tcp.set_nodelay(true);
    Ok((
        Box::new(pingora::protocols::l4::stream::Stream::from(tcp)),
        address,
    ))
}

/// Reads a request head (up to 16 KiB); returns it and any bytes after it.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > 16 * 1024 {
            return Err("request head too large".into());
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut chunk))
            .await
            .map_err(|_| "timed out reading the request".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `CONNECT host:port HTTP/1.1` → `host:port`.
fn parse_connect(head: &str) -> Result<String, String> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("CONNECT"), Some(target), Some(v))
            if v.starts_with("HTTP/1.") && !target.contains('/') =>
        {
            Ok(target.to_string())
        }
        _ => Err(format!("malformed CONNECT request line `{line}`")),
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
            parse_connect("CONNECT api.example.com:443 HTTP/1.1\r\nHost: x").unwrap(),
            "api.example.com:443"
        );
        assert!(parse_connect("GET / HTTP/1.1").is_err());
        assert!(parse_connect("CONNECT http://x/ HTTP/1.1").is_err());
    }
}
