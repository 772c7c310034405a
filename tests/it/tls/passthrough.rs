//! TLS without HTTP: PASSTHROUGH forwards the encrypted stream by SNI (the client sees the
//! upstream's own certificate) to weighted `tls` route destinations; a TLS server in SIMPLE mode
//! terminates and then proxies the plaintext to a `tcp` route; a TCP server proxies bytes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::support::client::{tls_connect, TlsClientOpts};

/// Writes `msg` and expects it echoed back.
async fn assert_echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &str) {
    s.write_all(msg.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .expect("echo read failed");
    assert_eq!(String::from_utf8_lossy(&buf), msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_reaches_the_upstreams_own_certificate_with_weighted_destinations() {
    let edge_root = Ca::new("Edge Root");
    let upstream_root = Ca::new("Upstream Root");
    let up_one = upstream_root.server_cert(&["pt.example.com"]);
    let up_two = upstream_root.server_cert(&["pt.example.com"]);
    let one = Backend::tls_echo(up_one.clone()).await;
    let two = Backend::tls_echo(up_two.clone()).await;
    let (se_one, d_one) = service_entry("pt-one.internal", &one, "TLS");
    let (se_two, d_two) = service_entry("pt-two.internal", &two, "TLS");
    let edge_cert = edge_root.server_cert(&["term.example.com"]);
    let edge = edge(
        credentials(&[("term", &edge_cert, None)]),
        &[443],
        &[
            &gateway(
                "edge",
                vec![
                    server(
                        443,
                        "TLS",
                        &["pt.example.com", "unrouted.example.com"],
                        Some(ServerTls::passthrough()),
                    ),
                    // A terminating server on the same port, chosen by SNI too.
                    https(443, &["term.example.com"], simple("term")),
                ],
            ),
            &tls_route(
                "pt",
                &["pt.example.com"],
                "edge",
                &[(&d_one, 50), (&d_two, 50)],
            ),
            &se_one,
            &se_two,
        ],
    )
    .await;
    let addr = edge.addr_of(443);

    let opts = TlsClientOpts::new(Some("pt.example.com"), Some(&upstream_root), None, &[]);
    let (mut hits_one, mut hits_two) = (0, 0);
    for i in 0..40 {
        let (mut s, info) = tls_connect(addr, &opts)
            .await
            .unwrap_or_else(|e| panic!("passthrough handshake {i}: {e}"));
        if info.sha256 == up_one.sha256_hex() {
            hits_one += 1;
        } else if info.sha256 == up_two.sha256_hex() {
            hits_two += 1;
        } else {
            panic!("connection {i} saw a certificate of neither upstream: {info:?}");
        }
        if i < 3 {
            assert_echo(&mut s, &format!("through the tunnel {i}\n")).await;
        }
    }
    assert!(
        hits_one > 0 && hits_two > 0,
        "both weighted destinations are used: {hits_one} / {hits_two}"
    );
    eventually(
        Duration::from_secs(5),
        "the upstreams terminated all 40 client handshakes",
        async || one.tls_handshakes() + two.tls_handshakes() == 40,
    )
    .await;

    // The terminating server next to it presents the gateway's certificate.
    let info = handshake(addr, Some("term.example.com"), Some(&edge_root))
        .await
        .unwrap();
    assert_eq!(info.sha256, edge_cert.sha256_hex());
    // A PASSTHROUGH host with no `tls` route has no filter chain.
    let err = handshake(addr, Some("unrouted.example.com"), None)
        .await
        .expect_err("no tls route for unrouted.example.com");
    assert!(err.contains("unrecognized name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_simple_server_terminates_then_proxies_tcp() {
    let root = Ca::new("TLS-TCP Root");
    let cert = root.server_cert(&["tcp-tls.example.com"]);
    let echo = Backend::raw_tcp_echo().await;
    let (se, dest) = service_entry("tcp-echo.internal", &echo, "TCP");
    let edge = edge(
        credentials(&[("tcp-tls", &cert, None)]),
        &[9443],
        &[
            &gateway(
                "edge",
                vec![server(
                    9443,
                    "TLS",
                    &["tcp-tls.example.com"],
                    Some(simple("tcp-tls")),
                )],
            ),
            &tcp_route("tcp-tls", &["tcp-tls.example.com"], "edge", &dest),
            &se,
        ],
    )
    .await;
    let opts = TlsClientOpts::new(Some("tcp-tls.example.com"), Some(&root), None, &["h2"]);
    let (mut s, info) = tls_connect(edge.addr_of(9443), &opts).await.unwrap();
    assert_eq!(info.sha256, cert.sha256_hex(), "the gateway terminates");
    assert_eq!(
        info.alpn, None,
        "a TLS (not HTTPS) server offers no HTTP ALPN"
    );
    assert_echo(&mut s, "plaintext behind TLS\n").await;
    assert_echo(&mut s, "second line\n").await;
    assert_eq!(echo.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_server_proxies_bytes_to_its_tcp_route() {
    let echo = Backend::raw_tcp_echo().await;
    let (se, dest) = service_entry("tcp-plain.internal", &echo, "TCP");
    let edge = edge(
        ConfigDir::new(),
        &[9000],
        &[
            &gateway(
                "edge",
                vec![server(9000, "TCP", &["tcp.example.com"], None)],
            ),
            &tcp_route("tcp", &["tcp.example.com"], "edge", &dest),
            &se,
        ],
    )
    .await;
    let mut s = TcpStream::connect(edge.addr_of(9000)).await.unwrap();
    assert_echo(&mut s, "raw bytes\n").await;
    assert_eq!(echo.connections(), 1);
}
