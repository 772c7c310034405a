//! Edge hardening (issue 11): each attack as a raw client sends it, and the answer a user sees.
//! Where Envoy defines what is right (it is the data plane inside istio-ingressgateway), the
//! same bytes go to a real Envoy configured as Istio configures it ([`Envoy`]) and the answers
//! are compared.
//!
//! Submodules, by attack: `path` (dot segments, backslashes, path parameters), `headers`
//! (request head size and field count), `deadlines` (slow heads, idle connections, slow bodies,
//! body size, connection lifetime), `overload` (connection and head-memory caps, accept
//! errors), `pipelining`, `egress` (authorities whose port is not a port), `host_trust`
//! (request-chosen destinations), `config` (hostile YAML and echoed values).

mod config;
mod deadlines;
mod egress;
mod headers;
mod host_trust;
mod overload;
mod path;
mod pipelining;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::ingress::{all_to, IngressBuilder};
pub use crate::support::client::{raw_http, raw_status, read_response, Resp};
pub use crate::support::envoy::{Envoy, Upstream};
pub use crate::support::yaml::*;
pub use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

/// An ingress gateway answering every request itself with 200 (no backend: the limits under
/// test are the gateway's own), with extra `portcullis run` arguments.
pub async fn answering_200(args: &[&str]) -> Harness {
    IngressBuilder::new()
        .routes(vec![
            HttpRoute::new().direct_response(DirectResponse::status(200))
        ])
        .args(args)
        .start()
        .await
}

/// Envoy answering every request itself with 200, with extra HTTP connection manager fields.
pub async fn envoy_answering_200(hcm: &[&str]) -> Envoy {
    hcm.iter()
        .fold(Envoy::edge(), |e, f| e.hcm(f))
        .prefix("/", Upstream::Direct(200))
        .start()
        .await
}

/// Sends `bytes` on a new connection and returns what comes back until the server closes (or
/// [`WAIT`] passes): the answer and whether the server closed.
pub async fn send_and_read_all(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_until_closed(&mut s).await
}

/// Reads until the peer closes (`true`) or [`WAIT`] passes (`false`).
pub async fn read_until_closed(s: &mut TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// A request head of exactly `size` bytes (request line and CRLFs included), padded with one
/// header field.
pub fn head_of_size(size: usize) -> Vec<u8> {
    let start = "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\nx-pad: ";
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

/// A request with `fields` header fields in all (`Host` and `Connection` included).
pub fn head_with_fields(fields: usize) -> Vec<u8> {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n");
    for i in 0..fields - 2 {
        head.push_str(&format!("x-f{i}: v\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}
