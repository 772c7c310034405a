//! What a client sees of the gateway itself, as istio-ingressgateway shows it: the `server`
//! name on every response (Istio's HCM `server_name: istio-envoy`, `OVERWRITE`), Envoy's local
//! replies (bodies, `content-type`), HTTP/1.0 refused with 426 (`PILOT_HTTP10` off), and the
//! `x-envoy-*` headers Istio leaves on (router `suppress_envoy_headers` false).

use reqwest::Method;

use super::*;
use crate::support::client::{raw_http, raw_status};

async fn gateway(args: &[&str]) -> Harness {
    IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            when_to(Match::new().uri(prefix("/old/")), "be")
                .name("rewritten")
                .rewrite(Rewrite::uri("/new/"))
                .timeout("5s"),
            when_to(Match::new().uri(prefix("/tries/")), "be").retries(
                Retries::attempts(1)
                    .retry_on("5xx")
                    .per_try_timeout("1500ms"),
            ),
            when_to(Match::new().uri(prefix("/be/")), "be"),
        ])
        .args(args)
        .start()
        .await
}

// gateway.go `buildGatewayConnectionManager`: `server_name` istio-envoy with
// `server_header_transformation: OVERWRITE` (util/proxy_headers.go): the upstream's `Server`
// never reaches the client, and local replies say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_header_is_istio_envoy_on_proxied_and_local_replies() {
    let ing = gateway(&[]).await;
    let r = send(
        ing.request(Method::GET, "a.example.com", "/be/x")
            .header("x-set-response-header", "server: backend/1.0"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["server"], "istio-envoy");
    let r = ing.get("a.example.com", "/nowhere").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["server"], "istio-envoy");

    // `--server-header NAME` names it; an empty name passes the upstream's through
    // (ProxyConfig `proxyHeaders.server.disabled`: PASS_THROUGH).
    let ing = gateway(&["--server-header", "edge"]).await;
    assert_eq!(
        ing.get("a.example.com", "/nowhere").await.headers()["server"],
        "edge"
    );
    let ing = gateway(&["--server-header", ""]).await;
    let r = send(
        ing.request(Method::GET, "a.example.com", "/be/x")
            .header("x-set-response-header", "server: backend/1.0"),
    )
    .await;
    assert_eq!(r.headers()["server"], "backend/1.0");
}

// router.cc `decodeHeaders`: no route is `sendLocalReply(NotFound, "")`: an empty body (Envoy
// 1.40 answers `content-length: 0` and no content-type). No virtual host is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_and_no_virtual_host_get_404_with_an_empty_body() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .vs(
            "only-a",
            &["a.example.com"],
            vec![when_to(Match::new().uri(prefix("/a")), "be")],
        )
        .start()
        .await;
    for (host, path) in [("a.example.com", "/other"), ("b.example.com", "/a")] {
        let r = ing.get(host, path).await;
        assert_eq!(r.status(), 404, "{host}{path}");
        assert_eq!(r.headers()["content-length"], "0");
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(r.text().await.unwrap(), "");
    }
}

// http1/codec_impl.cc `onHeadersComplete`: without `accept_http_10` (Istio's PILOT_HTTP10 is
// off and the gateway charts do not set it) HTTP/1.0 gets 426 `Upgrade Required` and the
// connection closes; `--accept-http10 true` serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_gets_426_unless_accepted() {
    let ing = gateway(&[]).await;
    let resp = raw_http(
        ing.addr(),
        "GET /be/x HTTP/1.0\r\nHost: a.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 426, "{resp}");
    assert!(resp.ends_with("Upgrade Required"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert_eq!(ing.backend("be").requests(), 0);

    let ing = gateway(&["--accept-http10", "true"]).await;
    let resp = raw_http(
        ing.addr(),
        "GET /be/x HTTP/1.0\r\nHost: a.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(ing.backend("be").requests(), 1);
}

// Envoy headers Istio leaves on: `x-envoy-original-path` when the path is rewritten
// (`finalizePathHeader`), `x-envoy-expected-rq-timeout-ms` when a timeout applies (the per-try
// timeout when shorter, `FilterUtility::setTimeoutHeaders`), `x-envoy-attempt-count`, and
// `x-envoy-upstream-service-time` on the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_headers_istio_leaves_on_reach_the_backend_and_client() {
    let ing = gateway(&[]).await;
    let r = ing.get("a.example.com", "/old/x?q=1").await;
    assert!(r.headers().contains_key("x-envoy-upstream-service-time"));
    let e = echo(r).await;
    assert_eq!(e["path"], "/new/x?q=1");
    assert_eq!(echoed_header(&e, "x-envoy-original-path"), ["/old/x?q=1"]);
    let timeout: Vec<u64> = echoed_header(&e, "x-envoy-expected-rq-timeout-ms")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        timeout.len() == 1 && timeout[0] <= 5000 && timeout[0] > 0,
        "{timeout:?}"
    );
    assert_eq!(echoed_header(&e, "x-envoy-attempt-count"), ["1"]);

    let e = echo(ing.get("a.example.com", "/tries/x").await).await;
    assert_eq!(
        echoed_header(&e, "x-envoy-expected-rq-timeout-ms"),
        ["1500"]
    );
    assert!(echoed_header(&e, "x-envoy-original-path").is_empty());

    let e = echo(ing.get("a.example.com", "/be/x").await).await;
    assert!(
        echoed_header(&e, "x-envoy-expected-rq-timeout-ms").is_empty(),
        "no timeout applies: {e}"
    );
}

// router.cc `onUpstreamAbort(.., dropped)`: a circuit-breaker overflow is Envoy's overflow
// reset with `x-envoy-overloaded: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_503_carries_x_envoy_overloaded() {
    let dr = DestinationRule::new("be", &svc("be")).policy(
        TrafficPolicy::new().pool(
            ConnectionPool::new()
                .max_connections(1)
                .http1_max_pending_requests(1),
        ),
    );
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .resources("dr.yaml", &[&dr])
        .routes(vec![all_to("be")])
        .start()
        .await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let r = ing.request(Method::GET, "a.example.com", "/delay/1500");
            tokio::spawn(send(r))
        })
        .collect();
    let mut overloaded = 0;
    for c in calls {
        let r = c.await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.headers()["x-envoy-overloaded"], "true");
            assert_eq!(
                r.text().await.unwrap(),
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            );
            overloaded += 1;
        }
    }
    assert!(overloaded >= 1, "no request overflowed");
}
