//! Overload protection as Envoy's overload manager with `global_downstream_max_connections`
//! (Istio's bootstrap `tools/packaging/common/envoy_bootstrap.json`, `overload_manager`): past
//! a connection cap (all listeners, or one listener) a new connection is accepted and closed at
//! once, past the request-head memory budget a head gets 503, and readiness fails while a cap
//! is reached. Accept errors (EMFILE) never flood the log.

use super::*;

async fn ready(h: &Harness) -> (u16, String) {
    h.gw.admin_get("/healthz/ready").await
}

/// Whether the server closes a new connection before answering a request on it.
async fn closed_at_accept(addr: SocketAddr) -> bool {
    let (answer, closed) = send_and_read_all(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    closed && answer.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_global_cap_are_closed_and_readiness_says_overloaded() {
    let h = answering_200(&["--max-connections", "2"]).await;
    assert_eq!(ready(&h).await.0, 200);
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(h.addr()).await.unwrap(),
        TcpStream::connect(h.addr()).await.unwrap(),
    ];
    eventually(WAIT, "readiness reports the cap", async || {
        let (code, body) = ready(&h).await;
        code == 503 && body.contains("overloaded")
    })
    .await;
    assert!(
        closed_at_accept(h.addr()).await,
        "a third connection is closed"
    );
    drop(held);
    eventually(WAIT, "readiness back once connections close", async || {
        ready(&h).await.0 == 200
    })
    .await;
    let answer = raw_http(
        h.addr(),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_has_its_own_connection_cap() {
    let h = IngressBuilder::new()
        .server(80, &["*"])
        .server(8080, &["*"])
        .routes(vec![
            HttpRoute::new().direct_response(DirectResponse::status(200))
        ])
        .args(&["--max-connections-per-listener", "1"])
        .start()
        .await;
    let _held = TcpStream::connect(h.addr_of(80)).await.unwrap();
    eventually(
        WAIT,
        "a second connection on the same listener is closed",
        async || closed_at_accept(h.addr_of(80)).await,
    )
    .await;
    let other = raw_http(
        h.addr_of(8080),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&other), 200, "another listener still serves");
    assert_eq!(ready(&h).await.0, 200, "a listener cap is not overload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_heads_past_the_memory_budget_get_503_and_fail_readiness() {
    let h = answering_200(&["--max-pending-headers-kb", "1"]).await;
    let mut waiting = TcpStream::connect(h.addr()).await.unwrap();
    // 950 bytes of a head that never ends, held open: over 90% of the 1 KiB budget.
    let mut first = TcpStream::connect(h.addr()).await.unwrap();
    let partial = format!("GET / HTTP/1.1\r\nHost: a\r\nx-pad: {}", "a".repeat(925));
    first.write_all(partial.as_bytes()).await.unwrap();
    eventually(
        WAIT,
        "readiness reports the head-memory budget",
        async || {
            let (code, body) = ready(&h).await;
            code == 503 && body.contains("request heads hold")
        },
    )
    .await;
    assert!(
        closed_at_accept(h.addr()).await,
        "no new connection while heads hold it"
    );
    // A connection already open whose head would pass the budget is answered 503.
    let _ = waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .await;
    let (answer, closed) = read_until_closed(&mut waiting).await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    assert!(closed);
    drop(first);
    eventually(WAIT, "readiness back once the head is gone", async || {
        ready(&h).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_are_logged_at_most_once_per_interval() {
    // 48 open files: a few dozen client connections exhaust them and `accept` fails with
    // EMFILE for as long as they stay open (once every 50 ms before: a line each time).
    let h = Harness::builder()
        .port(80)
        .resources(
            "gw.yaml",
            &[
                &Gateway::new("ingress").server(Server::http(80)),
                &VirtualService::new("r")
                    .hosts(&["*"])
                    .gateways(&["ingress"])
                    .http(HttpRoute::new().direct_response(DirectResponse::status(200))),
            ],
        )
        .args(&["--max-connections", "10000", "--watch", "false"])
        .open_files(48)
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(h.addr()).await {
            held.push(s);
        }
    }
    h.gw.wait_for_log("accept failed", WAIT).await;
    // Keep the listener failing for two seconds: 40 backoffs' worth.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines =
        h.gw.logs()
            .iter()
            .filter(|l| l.contains("accept failed"))
            .count();
    assert!(lines <= 2, "{lines} accept-error lines in two seconds");
    drop(held);
    eventually(
        WAIT,
        "serving again once descriptors are free",
        async || {
            crate::support::client::try_raw_http(
                h.addr(),
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await
            .is_ok_and(|a| raw_status(&a) == 200)
        },
    )
    .await;
}
