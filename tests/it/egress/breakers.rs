//! Circuit breakers on an egress cluster: `maxConnections` + `http1MaxPendingRequests`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_pending_limits_overflow_with_503_uo() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("slow", &pki).await;
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &destination_rule(
            "api",
            API,
            originate(&pki).pool(
                ConnectionPool::new()
                    .max_connections(1)
                    .http1_max_pending_requests(1),
            ),
        ),
    ])
    .await;
    let addr = eg.addr();

    // Four concurrent slow requests: one in flight, one waiting, the rest overflow.
    const N: usize = 4;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(async move {
                let req = format!(
                    "GET /delay/1000?i={i} HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n"
                );
                Resp::parse(&crate::support::client::raw_http(addr, req).await)
            })
        })
        .collect();
    let mut ok = 0;
    let mut overflow = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                assert!(r.body.contains("overflow"), "{}", r.body);
                overflow += 1;
            }
            other => panic!("unexpected {other}: {} {}", r.head, r.body),
        }
    }
    assert!(overflow >= 1, "{ok} ok, {overflow} overflowed");
    assert_eq!(ok + overflow, N);
    assert!(
        ok >= 2,
        "the in-flight and the pending request succeed: {ok} ok"
    );
    let line = log_line(&eg, &["\"GET /delay/1000?i=", " 503 "]).await;
    assert!(line.contains(" UO "), "{line}");
    assert!(line.contains("outbound|80||api.example.test"), "{line}");
    let s = eg.cluster_stats("outbound|80||api.example.test").await;
    assert_eq!(s.overflows, overflow as u64, "{s:?}");
    assert_eq!(
        upstream.requests(),
        ok as u64,
        "overflowed requests never reach the upstream"
    );
}
