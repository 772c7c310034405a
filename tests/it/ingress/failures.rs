//! What the gateway answers when it cannot proxy: no virtual host, no route, no cluster, no
//! endpoint, a dead backend, a route timeout. Each answer is quick (the client gives up after
//! 10 s) and logged with Envoy's response flag.

use reqwest::Method;

use super::*;

/// Sends `GET path` for `host` with a fresh request id; returns (status, body, its log line).
async fn fetch(ing: &Harness, host: &str, path: &str) -> (u16, String, AccessLine) {
    let id = request_id();
    let r = send(
        ing.request(Method::GET, host, path)
            .header("user-agent", &id),
    )
    .await;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (status, body, access_line(ing, &id).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_404_with_flag_nr() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .vs("a", &["a.example.com"], vec![all_to("be")])
        .start()
        .await;
    assert_eq!(ing.who("a.example.com", "/").await, "be");
    let (status, _, line) = fetch(&ing, "b.example.com", "/x").await;
    assert_eq!(status, 404);
    assert_eq!(line.get("response_code"), "404");
    assert_eq!(line.get("response_flags"), "NR");
    assert_eq!(line.get("authority"), "b.example.com");
    assert_eq!(ing.backend("be").requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_path_gets_404_with_flag_nr() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![when_to(Match::new().uri(prefix("/api")), "be")])
        .start()
        .await;
    assert_eq!(ing.who("a.example.com", "/api").await, "be");
    let (status, _, line) = fetch(&ing, "a.example.com", "/other").await;
    assert_eq!(status, 404);
    assert_eq!(line.get("response_flags"), "NR");
    assert_eq!(line.get("path"), "/other");
    assert_eq!(line.get("route_name"), "-");
    assert_eq!(line.get("upstream_host"), "-");
    assert_eq!(ing.backend("be").requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_destinations_resolve_as_dns_names_or_ip_literals() {
    // No ServiceEntry names these hosts: the gateway resolves them as DNS names or IP literals.
    let be = Backend::http("be").await;
    for host in ["localhost", "127.0.0.1"] {
        let ing = IngressBuilder::new()
            .routes(vec![
                HttpRoute::new().route(Destination::host(host).port(be.port()))
            ])
            .start()
            .await;
        let (status, _, line) = fetch(&ing, "a.example.com", "/").await;
        assert_eq!(status, 200, "{host}");
        assert_eq!(
            line.get("upstream_cluster"),
            format!("outbound|{}||{host}", be.port())
        );
    }
    assert_eq!(be.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destination_gets_503_no_healthy_upstream() {
    let ing = IngressBuilder::new()
        .routes(vec![
            HttpRoute::new().route(Destination::host("no-such-host.invalid").port(80))
        ])
        .start()
        .await;
    let (status, body, line) = fetch(&ing, "a.example.com", "/").await;
    assert_eq!(status, 503);
    // Envoy's body (`sendNoHealthyUpstreamResponse`).
    assert_eq!(body, "no healthy upstream");
    assert_eq!(line.get("response_flags"), "UH");
    assert_eq!(line.get("response_code_details"), "no_healthy_upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entry_without_endpoints_gets_503_with_flag_uh() {
    let ing = IngressBuilder::new()
        .resources(
            "se-empty.yaml",
            &[&ServiceEntry::new("empty")
                .hosts(&[&svc("empty")])
                .location("MESH_INTERNAL")
                .port(Port::http(80))
                .resolution("STATIC")],
        )
        .routes(vec![all_to("empty")])
        .start()
        .await;
    let (status, _, line) = fetch(&ing, "a.example.com", "/").await;
    assert_eq!(status, 503);
    assert_eq!(line.get("response_flags"), "UH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_gets_503_upstream_connect_error_with_flag_uf() {
    let be = Backend::http("down").await;
    let port = be.port();
    be.stop();
    let ing = IngressBuilder::new()
        .service_at("down", port)
        .routes(vec![all_to("down").name("to-down")])
        .start()
        .await;
    let (status, body, line) = fetch(&ing, "a.example.com", "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("upstream connect error"), "{body:?}");
    assert_eq!(line.get("response_flags"), "UF");
    assert_eq!(line.get("upstream_host"), format!("127.0.0.1:{port}"));
    assert_eq!(line.get("route_name"), "to-down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_exceeded_gets_504_with_flag_ut() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("slow").await)
        .routes(vec![all_to("slow").timeout("200ms")])
        .start()
        .await;
    let (status, body, line) = fetch(&ing, "a.example.com", "/delay/2000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream request timeout"), "{body:?}");
    assert_eq!(line.get("response_flags"), "UT");
    assert_eq!(line.get("response_code"), "504");
    // Within the timeout the same route answers.
    assert_eq!(ing.get("a.example.com", "/delay/10").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_covers_the_whole_streamed_response() {
    // `/stream/10` sends ten chunks 50 ms apart: headers arrive at once, the body takes ~450 ms.
    let ing = IngressBuilder::new()
        .backend(Backend::http("slow").await)
        .routes(vec![all_to("slow").timeout("200ms")])
        .start()
        .await;
    let id = request_id();
    let r = send(
        ing.request(Method::GET, "a.example.com", "/stream/10")
            .header("user-agent", &id),
    )
    .await;
    assert_eq!(
        r.status().as_u16(),
        200,
        "the status was sent before the deadline"
    );
    assert!(
        r.bytes().await.is_err(),
        "the body must be cut off at the route timeout"
    );
    let line = access_line(&ing, &id).await;
    assert_eq!(line.get("response_flags"), "UT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_is_told_when_a_failure_reply_closes_the_connection() {
    use crate::support::client::{raw_exchange, raw_status};
    let ing = IngressBuilder::new()
        .backend(Backend::http("slow").await)
        .routes(vec![all_to("slow").timeout("200ms")])
        .start()
        .await;
    // After a 504 on a keep-alive connection, either the connection stays usable or the reply
    // said `Connection: close`; never a silent close a keep-alive client then trips over.
    let mut s = tokio::net::TcpStream::connect(ing.addr()).await.unwrap();
    let first = raw_exchange(&mut s, b"GET /delay/2000 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(raw_status(&first), 504, "{first}");
    let announced_close = first
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n");
    let second = raw_exchange(&mut s, b"GET /delay/1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(
        announced_close || raw_status(&second) == 200,
        "504 kept the connection alive but it was closed: {first:?} then {second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_an_endpoint_after_consecutive_errors() {
    // Two endpoints behind one ServiceEntry; one answers 500 to everything.
    let good = Backend::http("good").await;
    let bad = Backend::builder("bad")
        .fail_first(u64::MAX, 500)
        .start()
        .await;
    let se = ServiceEntry::new("pool")
        .hosts(&["pool.svc.local"])
        .port(Port::http(80))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("http", good.port()))
        .endpoint(Endpoint::address("127.0.0.1").port("http", bad.port()));
    let dr = DestinationRule::new("pool", "pool.svc.local").policy(
        TrafficPolicy::new()
            .load_balancer("ROUND_ROBIN")
            .outlier_detection(3, "60s", 50),
    );
    let ing = IngressBuilder::new()
        .resources("pool.yaml", &[&se, &dr])
        .routes(vec![HttpRoute::new().to("pool.svc.local")])
        .start()
        .await;
    let mut errors = 0;
    for _ in 0..40 {
        if ing.get("a.example.com", "/").await.status() != 200 {
            errors += 1;
        }
    }
    // The failing endpoint gets its three strikes, then no more traffic for a minute.
    assert_eq!(
        bad.requests(),
        3,
        "requests that reached the failing endpoint"
    );
    assert_eq!(errors, 3);
    assert_eq!(good.requests(), 37);
    let stats = ing.cluster_stats("outbound|80||pool.svc.local").await;
    assert_eq!(stats.ejections, 1, "{stats:?}");
}
