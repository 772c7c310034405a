//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests a client sends without waiting are answered,
//! in order, on the same connection, as Envoy's HTTP/1 codec does. Pingora alone answered the
//! first and dropped the rest with the connection.

use super::*;

/// Sends `requests` in one write (the last one asks to close) and splits what comes back
/// into responses, in order.
async fn pipeline(addr: SocketAddr, requests: &[&str]) -> Vec<Resp> {
    let (all, _) = send_and_read_all(addr, requests.concat().as_bytes()).await;
    let mut rest = all.as_str();
    let mut out = Vec::new();
    while let Some(head_end) = rest.find("\r\n\r\n") {
        let head = rest[..head_end].to_ascii_lowercase();
        let body_start = head_end + 4;
        let len = if head.contains("transfer-encoding: chunked") {
            rest[body_start..]
                .find("0\r\n\r\n")
                .map_or(rest.len() - body_start, |e| e + 5)
        } else {
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let end = (body_start + len).min(rest.len());
        out.push(Resp::parse(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

fn echoed_path(r: &Resp) -> String {
    r.json()["path"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let be = Backend::http("be").await;
    let h = IngressBuilder::new()
        .backend(be)
        .routes(vec![all_to("be")])
        .start()
        .await;
    let envoy = Envoy::edge()
        .prefix("/", Upstream::Cluster(h.backend("be").addr()))
        .start()
        .await;
    let requests = [
        "GET /a HTTP/1.1\r\nHost: p.example\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: p.example\r\nContent-Length: 5\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: p.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET /d HTTP/1.1\r\nHost: p.example\r\nConnection: close\r\n\r\n",
    ];
    for (who, addr) in [("Envoy", envoy.addr), ("Portcullis", h.addr())] {
        let answers = pipeline(addr, &requests).await;
        let paths: Vec<String> = answers.iter().map(echoed_path).collect();
        assert_eq!(paths, ["/a", "/b", "/c", "/d"], "{who}");
        assert!(
            answers.iter().all(|r| r.status == 200),
            "{who}: {answers:?}"
        );
        let bodies: Vec<String> = answers
            .iter()
            .map(|r| r.json()["body"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(bodies, ["", "hello", "abc", ""], "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_request_after_a_local_reply_is_answered_too() {
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            HttpRoute::new()
                .when(Match::new().uri(prefix("/direct")))
                .direct_response(DirectResponse::status(204)),
            all_to("be"),
        ])
        .start()
        .await;
    let answers = pipeline(
        h.addr(),
        &[
            "GET /direct HTTP/1.1\r\nHost: p.example\r\n\r\n",
            "GET /after HTTP/1.1\r\nHost: p.example\r\nConnection: close\r\n\r\n",
        ],
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [204, 200]);
    assert_eq!(echoed_path(&answers[1]), "/after");
}
