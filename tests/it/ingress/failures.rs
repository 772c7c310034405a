//! What the gateway answers when it cannot proxy: no virtual host, no route, no cluster, no
//! endpoint, a dead backend, a route timeout. Each answer is quick (the client gives up after
//! 10 s) and logged with Envoy's response flag.

use reqwest::Method;

use super::*;

/// Sends `GET path` for `host` with a fresh request id; returns (status, body, its log line).
async fn fetch(ing: &Ingress, host: &str, path: &str) -> (u16, String, AccessLine) {
    let id = request_id();
    let r = send(
        ing.request(Method::GET, host, path)
            .header("x-request-id", &id),
    )
    .await;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (status, body, ing.log_line(&id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_404_with_flag_nr() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .vs("a", &["a.example.com"], &all_to("be"))
        .start();
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
        .routes(&rule("", &["uri: {prefix: /api}"], &route_to("be")))
        .start();
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
            .routes(&rule(
                "",
                &[],
                &format!(
                    "route:\n- destination: {{host: {host}, port: {{number: {}}}}}",
                    be.port()
                ),
            ))
            .start();
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
async fn unknown_destination_gets_503_with_the_resolution_failure() {
    let ing = IngressBuilder::new()
        .routes(&rule(
            "",
            &[],
            "route:\n- destination: {host: no-such-host.invalid, port: {number: 80}}",
        ))
        .start();
    let (status, body, line) = fetch(&ing, "a.example.com", "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("no-such-host.invalid"), "{body}");
    assert_eq!(line.get("response_flags"), "UH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entry_without_endpoints_gets_503_with_flag_uh() {
    let ing = IngressBuilder::new()
        .file(
            "se-empty.yaml",
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: empty
  namespace: default
spec:
  hosts: ["empty.svc.local"]
  location: MESH_INTERNAL
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
"#,
        )
        .routes(&all_to("empty"))
        .start();
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
        .routes(&rule("to-down", &[], &route_to("down")))
        .start();
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
        .routes(&rule(
            "",
            &[],
            &format!("timeout: 200ms\n{}", route_to("slow")),
        ))
        .start();
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
        .routes(&rule(
            "",
            &[],
            &format!("timeout: 200ms\n{}", route_to("slow")),
        ))
        .start();
    let id = request_id();
    let r = send(
        ing.request(Method::GET, "a.example.com", "/stream/10")
            .header("x-request-id", &id),
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
    let line = ing.log_line(&id);
    assert_eq!(line.get("response_flags"), "UT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_is_told_when_a_failure_reply_closes_the_connection() {
    use crate::support::client::{raw_exchange, raw_status};
    let ing = IngressBuilder::new()
        .backend(Backend::http("slow").await)
        .routes(&rule(
            "",
            &[],
            &format!("timeout: 200ms\n{}", route_to("slow")),
        ))
        .start();
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
    let se = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pool, namespace: default}}
spec:
  hosts: ["pool.svc.local"]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pool, namespace: default}}
spec:
  host: pool.svc.local
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 3, baseEjectionTime: 60s, maxEjectionPercent: 50}}
"#,
        good.port(),
        bad.port()
    );
    let ing = IngressBuilder::new()
        .file("pool.yaml", &se)
        .routes(&rule(
            "",
            &[],
            "route:\n- destination: {host: pool.svc.local}",
        ))
        .start();
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
    let (_, stats) = ing.gw.admin_get("/stats");
    assert!(stats.contains("\"ejections\": 1"), "{stats}");
}
