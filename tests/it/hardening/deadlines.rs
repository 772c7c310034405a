//! Deadlines: a whole request head within `--request-headers-timeout` (nginx
//! `client_header_timeout`; Envoy `request_headers_timeout`, `conn_manager_impl.cc`
//! `onRequestHeaderTimeout`: 408), not only each read; idle HTTP/1 and HTTP/2 connections
//! closed (Envoy `idle_timeout`); a request whose client goes quiet ended (Envoy
//! `stream_idle_timeout`: 408); a connection's lifetime bounded (Envoy
//! `max_connection_duration`); a body size bounded (413). The timeouts are set to a second so
//! the tests see the outcome; they assert what the client gets, not when.

use super::*;

/// Writes `prefix`, then one more byte of a never-ending header every 200 ms until the server
/// answers or closes; returns the answer. A per-read timeout never fires on this client.
async fn drip_head(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nx-slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if s.write_all(b"a").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One keep-alive request answered 200, then whether the server closes the connection (within
/// [`WAIT`]).
async fn one_request_then_closed(addr: SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    s.write_all(req).await.unwrap();
    let first = read_response(&mut s, req, Vec::new()).await;
    assert_eq!(raw_status(&String::from_utf8_lossy(&first)), 200);
    read_until_closed(&mut s).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dripped_byte_by_byte_gets_408_at_the_whole_head_deadline() {
    let h = answering_200(&["--request-headers-timeout", "1"]).await;
    let envoy = envoy_answering_200(&["request_headers_timeout: 1s"]).await;
    let envoys = drip_head(envoy.addr).await;
    assert_eq!(raw_status(&envoys), 408, "Envoy: {envoys}");
    let ours = drip_head(h.addr()).await;
    assert_eq!(raw_status(&ours), 408, "{ours}");
    h.gw.wait_for_log_all(&[" 408 ", "request_header_timeout"], WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_without_an_answer() {
    let h = answering_200(&["--request-headers-timeout", "1"]).await;
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut s).await;
    assert!(closed, "a connection that sends nothing is closed");
    assert_eq!(answer, "", "nothing is sent to a client that sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_closes_after_its_idle_timeout() {
    let h = answering_200(&["--http1-idle-timeout", "1"]).await;
    assert!(
        one_request_then_closed(h.addr()).await,
        "the idle keep-alive connection is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_closes_after_its_idle_timeout() {
    let h = answering_200(&["--http2-idle-timeout", "1"]).await;
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    // The h2c preface and an empty SETTINGS frame, then nothing.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (frames, closed) = read_until_closed(&mut s).await;
    assert!(closed, "the idle HTTP/2 connection is closed");
    assert!(!frames.is_empty(), "the server spoke HTTP/2 before closing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_stops_gets_408_after_the_stream_idle_timeout() {
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .args(&["--stream-idle-timeout", "1"])
        .start()
        .await;
    let (answer, closed) = send_and_read_all(
        h.addr(),
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\nhalf!",
    )
    .await;
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_is_closed_after_the_max_connection_duration() {
    let h = answering_200(&["--max-connection-duration", "1", "--drain-timeout", "1"]).await;
    // The HTTP/1 idle timeout (60 s) is not what closes it.
    assert!(
        one_request_then_closed(h.addr()).await,
        "the connection is closed at its max duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413() {
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .args(&["--max-request-body-bytes", "10"])
        .start()
        .await;
    let post = |body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    assert_eq!(
        raw_status(&raw_http(h.addr(), post("0123456789")).await),
        200
    );
    assert_eq!(
        raw_status(&raw_http(h.addr(), post("0123456789a")).await),
        413
    );
    let chunked = "POST / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\
                   Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n6789ab\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw_http(h.addr(), chunked).await), 413);
    let seen = h.backend("be").requests_seen();
    assert!(
        !seen.iter().any(|r| r.body.contains("6789ab")),
        "a body over the limit reached the backend"
    );
}
