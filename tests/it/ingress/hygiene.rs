//! What the backend sees: forwarding headers, request ids, hop-by-hop headers stripped, Host
//! kept; and the protocols a plain port carries (WebSocket upgrade, h2c).

use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::support::client::{h2c_client, raw_http, raw_status};
use crate::support::ws::{
    read_ws_frame, ws_connect, ws_frame, ws_text_frame, OP_BINARY, OP_TEXT, WS_ACCEPT,
};

use super::*;

/// A gateway routing every host and path to backend `be`.
async fn to_backend() -> Harness {
    IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be").name("all")])
        .start()
        .await
}

// Envoy `Utility::appendXff` appends after a bare `,` (Envoy 1.40 behind an Istio-shaped
// listener turns `203.0.113.7, 198.51.100.1` into `203.0.113.7, 198.51.100.1,<client>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_appends_the_client_ip_after_a_bare_comma() {
    let ing = to_backend().await;
    let e = echo(ing.get("h.example.com", "/").await).await;
    assert_eq!(echoed_header(&e, "x-forwarded-for"), ["127.0.0.1"]);
    let r = ing
        .request(Method::GET, "h.example.com", "/")
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.1");
    let e = echo(send(r).await).await;
    assert_eq!(
        echoed_header(&e, "x-forwarded-for"),
        ["203.0.113.7, 198.51.100.1,127.0.0.1"]
    );
}

// Envoy `ConnectionManagerUtility::mutateRequestHeaders` on an edge request (Istio sets no
// `internal_address_config`): `cleanInternalHeaders` drops the client's control headers,
// `x-envoy-external-address` is the client, other `x-envoy-*` headers pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_envoy_control_headers_are_stripped_and_the_external_address_set() {
    let ing = to_backend().await;
    let mut r = ing.request(Method::GET, "h.example.com", "/hygiene");
    for h in [
        "x-envoy-retry-on",
        "x-envoy-max-retries",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-force-trace",
        "x-envoy-internal",
        "x-envoy-decorator-operation",
        "x-envoy-original-url",
        "x-envoy-retriable-status-codes",
    ] {
        r = r.header(h, "1");
    }
    r = r
        .header("x-envoy-external-address", "203.0.113.1")
        .header("x-envoy-custom", "kept");
    let e = echo(send(r).await).await;
    let headers = e["headers"].as_object().unwrap();
    let envoy: Vec<&String> = headers
        .keys()
        .filter(|k| k.starts_with("x-envoy-"))
        .collect();
    assert_eq!(
        envoy,
        [
            "x-envoy-attempt-count",
            "x-envoy-custom",
            "x-envoy-external-address"
        ],
        "{e}"
    );
    assert_eq!(echoed_header(&e, "x-envoy-external-address"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_proto_is_the_downstream_scheme() {
    let ing = to_backend().await;
    let e = echo(ing.get("h.example.com", "/").await).await;
    assert_eq!(echoed_header(&e, "x-forwarded-proto"), ["http"]);
    // A client cannot claim https over plain HTTP.
    let r = ing
        .request(Method::GET, "h.example.com", "/")
        .header("x-forwarded-proto", "https");
    let e = echo(send(r).await).await;
    assert_eq!(echoed_header(&e, "x-forwarded-proto"), ["http"]);
}

// Envoy generates `x-request-id` for every edge request (`generate_request_id` on,
// `preserve_external_request_id` off: Istio's gateway sets neither), replacing the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_is_always_a_new_uuid_sent_to_the_backend_and_logged() {
    let ing = to_backend().await;
    let mut generated = Vec::new();
    for path in ["/gen-one", "/gen-two"] {
        let r = ing
            .request(Method::GET, "h.example.com", path)
            .header("x-request-id", "client-chosen");
        let e = echo(send(r).await).await;
        let ids = echoed_header(&e, "x-request-id");
        assert_eq!(ids.len(), 1, "{e}");
        let id = ids[0].clone();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "not a UUID: {id}");
        let line = access_line(&ing, &format!("\"GET {path} HTTP/1.1\"")).await;
        assert_eq!(line.get("request_id"), id);
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "each request gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let ing = to_backend().await;
    let resp = raw_http(
        ing.addr(),
        "GET /hop HTTP/1.1\r\nHost: h.example.com\r\nConnection: keep-alive, x-foo\r\n\
         x-foo: secret\r\nx-bar: kept\r\nTE: gzip\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let seen = ing.backend("be").last_request().unwrap();
    assert_eq!(seen.path, "/hop");
    assert_eq!(seen.header("x-bar"), Some("kept"));
    for h in ["x-foo", "te", "keep-alive", "proxy-connection"] {
        assert_eq!(
            seen.header(h),
            None,
            "{h} reached the backend: {:?}",
            seen.headers
        );
    }
    for c in seen.header_all("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-foo"),
            "the client's Connection header reached the backend: {c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_passes_through_unchanged() {
    let ing = to_backend().await;
    for host in ["h.example.com", "Mixed.Example.com:8080"] {
        let e = echo(ing.get(host, "/").await).await;
        assert_eq!(e["authority"], host);
        assert_eq!(echoed_header(&e, "host"), [host]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_proxied_both_ways() {
    let ing = to_backend().await;
    let (mut s, head) = ws_connect(ing.addr(), "ws.example.com", "/chat?room=1").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    s.write_all(&ws_text_frame(true, "hello")).await.unwrap();
    assert_eq!(read_ws_frame(&mut s).await, (OP_TEXT, b"hello".to_vec()));
    let big = vec![7u8; 70_000];
    s.write_all(&ws_frame(OP_BINARY, true, &big)).await.unwrap();
    assert_eq!(read_ws_frame(&mut s).await, (OP_BINARY, big));
    let seen = ing.backend("be").last_request().unwrap();
    assert_eq!(seen.path, "/chat?room=1");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.authority.as_deref(), Some("ws.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served_on_a_plain_port() {
    let ing = to_backend().await;
    let id = request_id();
    let r = send(h2c_client().get(ing.url("/h2c")).header("user-agent", &id)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(who(r), "be");
    let line = access_line(&ing, &id).await;
    assert_eq!(line.get("protocol"), "HTTP/2");
    assert_eq!(line.get("path"), "/h2c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_strip_x_forwarded_for() {
    let ing = to_backend().await;
    // `Connection: x-forwarded-for` asks a proxy to drop the header as hop-by-hop; the client
    // address must still reach the backend (or the request is refused as malformed).
    let resp = raw_http(
        ing.addr(),
        "GET /xff HTTP/1.1\r\nHost: h.example.com\r\nConnection: close, x-forwarded-for\r\n\
         x-forwarded-for: 203.0.113.7\r\n\r\n",
    )
    .await;
    match ing.backend("be").last_request() {
        None => assert_eq!(raw_status(&resp), 400, "{resp}"),
        Some(seen) => {
            assert_eq!(raw_status(&resp), 200, "{resp}");
            let xff = seen.header("x-forwarded-for").unwrap_or_default();
            assert_eq!(xff_list(xff).last().map(String::as_str), Some("127.0.0.1"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_requests_without_host_are_answered_not_left_hanging() {
    let ing = to_backend().await;
    // Shorter than the 24-byte HTTP/2 preface: the gateway must not wait for more bytes.
    let resp = raw_http(ing.addr(), "GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 400, "HTTP/1.1 without Host: {resp:?}");
    let resp = raw_http(ing.addr(), "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 426, "HTTP/1.0 health check: {resp:?}");
    assert_eq!(ing.backend("be").requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_pass_through_intact() {
    let ing = to_backend().await;
    let body: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let r = send(
        ing.request(Method::POST, "h.example.com", "/upload")
            .body(body.clone()),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo(r).await["body"].as_str(), Some(body.as_str()));
    let r = ing.get("h.example.com", "/bytes/1000000").await;
    assert_eq!(r.bytes().await.unwrap().len(), 1_000_000);
    let r = ing.get("h.example.com", "/stream/5").await;
    assert_eq!(r.bytes().await.unwrap().len(), 5 * 1024);
}
