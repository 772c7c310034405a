//! The PROXY protocol (v1 text, v2 binary) at accept, as Envoy's `envoy.filters.listener.
//! proxy_protocol` does when `gatewayTopology.proxyProtocol` is set: every connection must
//! start with the header, or it is closed; the header's source address becomes the
//! connection's peer (so it is the client in the access log, `x-forwarded-for` and
//! `x-envoy-external-address`). LOCAL (v2) and UNKNOWN (v1) headers keep the real peer.
//! Parsing is the `ppp` crate's; reading is bounded in time (Envoy's default
//! `listener_filters_timeout`, 15 s) and size (Envoy's v2 maximum, 16 + 65535 bytes).

use std::net::SocketAddr;
use std::time::Duration;

use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::GetSocketDigest;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;

/// Envoy's `listener_filters_timeout` default.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest header: v2's 16-byte preamble and a 65535-byte payload (v1's is 107).
pub const MAX_HEADER: usize = 16 + 65535;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before a complete PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
}

/// Reads the PROXY header off `stream` (the bytes after it stay in the stream) and makes its
/// source the stream's peer address. Returns the source (`None` for LOCAL/UNKNOWN).
pub async fn accept(stream: &mut L4Stream) -> Result<Option<SocketAddr>, ProxyProtocolError> {
    let source = tokio::time::timeout(HEADER_TIMEOUT, read_header(stream))
        .await
        .map_err(|_| ProxyProtocolError::Timeout(HEADER_TIMEOUT))??;
    if let Some(src) = source {
        if let Some(digest) = stream.get_socket_digest() {
            // Nothing has asked for the peer yet: the header's source is what it will see.
            let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(src)));
        }
    }
    Ok(source)
}

/// Reads until the header is complete; the bytes read past it are put back.
async fn read_header(stream: &mut L4Stream) -> Result<Option<SocketAddr>, ProxyProtocolError> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if !buf.is_empty() {
            if let Some((len, source)) = parse(&buf)? {
                stream.rewind(&buf[len..]);
                return Ok(source);
            }
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyProtocolError::TooLong);
        }
        let want = chunk.len().min(MAX_HEADER - buf.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(ProxyProtocolError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `Ok(None)`: more bytes are needed. `Ok(Some((header length, source)))` when complete.
fn parse(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyProtocolError> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some((h.header.len(), source)))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok(Some((h.len(), source)))
        }
        HeaderResult::V1(Err(e)) => Err(ProxyProtocolError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyProtocolError::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_reports_its_length() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (len, src) = parse(h).unwrap().unwrap();
        assert_eq!(&h[len..len + 3], b"GET");
        assert_eq!(src, Some("203.0.113.7:51234".parse().unwrap()));
    }

    #[test]
    fn a_partial_header_asks_for_more_and_plain_http_is_refused() {
        assert!(parse(b"PROXY TCP4 203.0").unwrap().is_none());
        assert!(parse(b"\r\n\r\n\0\r\nQUIT").unwrap().is_none());
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(ProxyProtocolError::Invalid(_))
        ));
    }

    #[test]
    fn parses_v2_and_keeps_the_peer_for_local() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        h.extend_from_slice(&[198, 51, 100, 4, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        h.extend_from_slice(b"rest");
        let (len, src) = parse(&h).unwrap().unwrap();
        assert_eq!(len, 28);
        assert_eq!(src, Some("198.51.100.4:8080".parse().unwrap()));
        h[12] = 0x20; // LOCAL
        assert_eq!(parse(&h).unwrap().unwrap().1, None);
    }
}
