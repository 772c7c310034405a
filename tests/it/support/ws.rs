//! Minimal WebSocket client pieces for a real exchange over a raw `TcpStream` (through the
//! gateway or directly against a [`Backend`](super::backend::Backend), which echoes raw bytes
//! after the `101`).
//!
//! ```ignore
//! let (mut s, head) = ws::ws_connect(gw_addr, "ws.example.com", "/chat").await;
//! assert!(head.starts_with("HTTP/1.1 101"));
//! s.write_all(&ws::ws_text_frame(true, "hello")).await?;
//! // the backend echoes our masked frame verbatim; read_ws_frame unmasks it
//! assert_eq!(ws::read_ws_frame(&mut s).await, (ws::OP_TEXT, b"hello".to_vec()));
//! ```

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::backend::ws_accept_for;

/// The `Sec-WebSocket-Key` used by [`ws_handshake_request`] (RFC 6455 sample nonce).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` a correct server answers to [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An HTTP/1.1 WebSocket upgrade request for `path` with `Host: host` and key [`WS_KEY`].
pub fn ws_handshake_request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A single FIN text frame; `masked` as a client must send (fixed masking key).
pub fn ws_text_frame(masked: bool, text: &str) -> Vec<u8> {
    ws_frame(OP_TEXT, masked, text.as_bytes())
}

/// A single FIN frame with any opcode and payload.
pub fn ws_frame(opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | (opcode & 0x0f)];
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        f.push(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        f.extend_from_slice(&MASK);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Reads one frame and returns `(opcode, payload)`, unmasking a masked payload.
/// Panics on I/O error or EOF (use [`try_read_ws_frame`] to observe those).
pub async fn read_ws_frame<S: AsyncRead + Unpin>(stream: &mut S) -> (u8, Vec<u8>) {
    try_read_ws_frame(stream)
        .await
        .unwrap_or_else(|e| panic!("reading WebSocket frame: {e}"))
}

/// Like [`read_ws_frame`] but returns I/O errors (EOF is `UnexpectedEof`).
pub async fn try_read_ws_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).await?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// Reads an HTTP response head byte by byte up to and including `\r\n\r\n` (never consumes
/// bytes after it, so frames that follow a `101` stay in the stream). Returns it as a string;
/// returns what was read so far if the peer closes first.
pub async fn read_http_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Connects to `addr`, sends [`ws_handshake_request`]`(host, path)` and returns the stream
/// and the response head (not checked: tests assert on it).
pub async fn ws_connect(addr: SocketAddr, host: &str, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.write_all(ws_handshake_request(host, path).as_bytes())
        .await
        .unwrap();
    let head = read_http_head(&mut s).await;
    (s, head)
}
