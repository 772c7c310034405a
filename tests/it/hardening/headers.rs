//! Request head limits as Envoy's defaults (HTTP connection manager `max_request_headers_kb` 60
//! and `max_request_headers_count` 100; Envoy's HTTP/1 codec counts the raw head, request line
//! and CRLFs included, and answers 431 `Request Header Fields Too Large`). Pingora alone allows
//! 1 MiB and 256 fields and answers 400.

use super::*;

/// The status a server gives `bytes` (0: closed without an answer).
async fn status_of(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let (answer, _) = send_and_read_all(addr, bytes).await;
    raw_status(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_60_kib_or_100_fields_gets_431_as_from_envoy() {
    let h = answering_200(&[]).await;
    let envoy = envoy_answering_200(&[]).await;
    for (what, bytes, want) in [
        ("a 60 KiB head", head_of_size(60 * 1024), 200),
        (
            "a head one byte over 60 KiB",
            head_of_size(60 * 1024 + 1),
            431,
        ),
        ("a 1 MiB head", head_of_size(1024 * 1024), 431),
        ("100 fields", head_with_fields(100), 200),
        ("101 fields", head_with_fields(101), 431),
        ("300 fields", head_with_fields(300), 431),
    ] {
        assert_eq!(status_of(envoy.addr, &bytes).await, want, "Envoy, {what}");
        assert_eq!(status_of(h.addr(), &bytes).await, want, "{what}");
    }
    let (answer, closed) = send_and_read_all(h.addr(), &head_with_fields(101)).await;
    let resp = Resp::parse(&answer);
    assert_eq!(resp.body, "Request Header Fields Too Large\n");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed, "the connection closes after a 431");
    let line =
        h.gw.wait_for_log_all(&[" 431 ", "http1.too_many_headers"], WAIT)
            .await;
    assert!(line.contains("DPE"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limits_follow_their_flags() {
    let h = answering_200(&[
        "--max-request-headers-kb",
        "8",
        "--max-request-headers-count",
        "10",
    ])
    .await;
    assert_eq!(status_of(h.addr(), &head_of_size(8 * 1024)).await, 200);
    assert_eq!(status_of(h.addr(), &head_of_size(8 * 1024 + 1)).await, 431);
    assert_eq!(status_of(h.addr(), &head_with_fields(10)).await, 200);
    assert_eq!(status_of(h.addr(), &head_with_fields(11)).await, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_header_lists_over_the_limits_get_431_too() {
    let h = answering_200(&[]).await;
    let client = crate::support::client::h2c_client();
    let send = async |fields: usize, value_len: usize| {
        let mut req = client.get(h.url("/"));
        for i in 0..fields {
            req = req.header(format!("x-f{i}"), "v".repeat(value_len));
        }
        req.send().await.map(|r| r.status().as_u16())
    };
    // The client adds a field or two of its own (`accept`).
    assert_eq!(send(90, 1).await.unwrap(), 200);
    assert_eq!(send(101, 1).await.unwrap(), 431);
    assert_eq!(send(1, 1024).await.unwrap(), 200);
    // A 61 KiB field is past SETTINGS_MAX_HEADER_LIST_SIZE (60 KiB): the h2 codec answers
    // 431 and resets the stream.
    match send(1, 61 * 1024).await {
        Ok(status) => assert_eq!(status, 431),
        Err(e) => panic!("no 431 for an oversized HTTP/2 header list: {e}"),
    }
}
