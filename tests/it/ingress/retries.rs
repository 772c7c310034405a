//! Retries as Istio configures Envoy (`pilot/pkg/networking/core/route/retry/retry.go`) and
//! Envoy applies them (`source/common/router/retry_state_impl.cc`, `router.cc`), counted by
//! what the backend receives. No abandoned request is ever retried (issue 11: the backend used
//! to get three copies of a request whose client had gone).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::support::client::h2c_client;

/// One gateway routing everything to backend `be` with `retries` (none: Istio's default).
async fn retrying(be: Backend, retries: Option<Retries>) -> Harness {
    let mut rule = all_to("be").name("r");
    if let Some(r) = retries {
        rule = rule.retries(r);
    }
    IngressBuilder::new()
        .backend(be)
        .routes(vec![rule])
        .start()
        .await
}

// retry.go: the default policy has no retriable status codes (EXCLUDE_UNSAFE_503_FROM_DEFAULT
// _RETRY, removed as a flag in istio#56023): a 503 goes to the client, sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_does_not_retry_a_503() {
    let be = Backend::builder("be").fail_first(1, 503).start().await;
    let ing = retrying(be, None).await;
    assert_eq!(ing.get("a.example.com", "/").await.status(), 503);
    assert_eq!(ing.backend("be").requests(), 1);
}

// retry.go: the default policy is connect-failure,refused-stream,unavailable,cancelled,...:
// a reset (the upstream closed the connection) is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_does_not_retry_a_reset() {
    let ing = retrying(Backend::http("be").await, None).await;
    let r = ing.get("a.example.com", "/reset").await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    );
    assert_eq!(ing.backend("be").requests(), 1);
}

// retry_state_impl.cc `wouldRetryFromHeaders`: gRPC `unavailable` (grpc-status 14 in the
// response headers) is in Istio's default list: two retries, then the last answer as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_retries_grpc_unavailable_twice() {
    let ing = retrying(Backend::http("be").await, None).await;
    let r = ing
        .request(Method::GET, "a.example.com", "/grpc")
        .header("x-set-response-header", "grpc-status: 14");
    let r = send(r).await;
    assert_eq!(r.headers()["grpc-status"], "14");
    assert_eq!(ing.backend("be").requests(), 3);
}

// `retryOn: 5xx`: each 5xx is retried, `x-envoy-attempt-count` says which try it is
// (`include_request_attempt_count`, on in Istio's gateway virtual hosts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_5xx_is_retried_with_the_attempt_count_on_every_try() {
    let be = Backend::builder("be").fail_first(2, 503).start().await;
    let ing = retrying(be, Some(Retries::attempts(2).retry_on("5xx"))).await;
    let r = ing.get("a.example.com", "/x").await;
    assert_eq!(r.status(), 200);
    let seen = ing.backend("be").requests_seen();
    let counts: Vec<&str> = seen
        .iter()
        .map(|r| r.header("x-envoy-attempt-count").unwrap())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
}

// router.cc `onUpstreamHeaders`: when retries are exhausted the client gets the last upstream
// response as it came (status, headers, body), not a gateway answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_status_retries_return_the_last_upstream_response() {
    let be = Backend::builder("be").fail_first(10, 502).start().await;
    let ing = retrying(be, Some(Retries::attempts(2).retry_on("gateway-error"))).await;
    let r = ing.get("a.example.com", "/last").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-backend"], "be");
    let e = echo(r).await;
    assert_eq!(e["headers"]["x-envoy-attempt-count"], json!(["3"]));
    assert_eq!(ing.backend("be").requests(), 3);
}

// parseRetryOn: bare codes become retriable status codes (`retriable-status-codes` added);
// other statuses are not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_status_codes_and_retriable_4xx_are_retried() {
    let be = Backend::builder("be").fail_first(1, 429).start().await;
    let ing = retrying(be, Some(Retries::attempts(3).retry_on("429,retriable-4xx"))).await;
    assert_eq!(ing.get("a.example.com", "/a").await.status(), 200);
    assert_eq!(ing.backend("be").requests(), 2);
    assert_eq!(ing.get("a.example.com", "/status/409").await.status(), 409);
    assert_eq!(ing.backend("be").requests(), 2 + 4, "409 is retriable-4xx");
    assert_eq!(ing.get("a.example.com", "/status/500").await.status(), 500);
    assert_eq!(ing.backend("be").requests(), 2 + 4 + 1, "500 is not listed");
}

// retry_state_impl.cc `wouldRetryFromReset`: `reset` retries a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_policy_retries_a_reset() {
    let ing = retrying(
        Backend::http("be").await,
        Some(Retries::attempts(2).retry_on("reset")),
    )
    .await;
    let r = ing.get("a.example.com", "/reset").await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination"
    );
    assert_eq!(ing.backend("be").requests(), 3);
}

// router.cc `onPerTryTimeout` resets the attempt (`LocalReset`), which 5xx, gateway-error and
// reset retry; the default policy does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_is_retried_under_5xx_but_not_by_default() {
    let ing = retrying(
        Backend::http("be").await,
        Some(
            Retries::attempts(2)
                .retry_on("5xx")
                .per_try_timeout("100ms"),
        ),
    )
    .await;
    let r = ing.get("a.example.com", "/delay/1000").await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.text().await.unwrap(), "upstream request timeout");
    assert_eq!(ing.backend("be").requests(), 3);

    let ing = retrying(
        Backend::http("be").await,
        Some(
            Retries::attempts(2)
                .retry_on("connect-failure,refused-stream")
                .per_try_timeout("100ms"),
        ),
    )
    .await;
    assert_eq!(ing.get("a.example.com", "/delay/1000").await.status(), 504);
    assert_eq!(ing.backend("be").requests(), 1);
}

// router.cc `decodeData`: a body larger than the buffer Envoy keeps for a retry abandons the
// retry (`retry_or_shadow_abandoned`); a body kept in full is sent again, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_retried_only_when_buffered_in_full() {
    let be = Backend::builder("be").fail_first(1, 503).start().await;
    let ing = retrying(be, Some(Retries::attempts(2).retry_on("5xx"))).await;
    let small = "s".repeat(1000);
    let r = send(
        ing.request(Method::POST, "a.example.com", "/small")
            .body(small.clone()),
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = ing.backend("be").requests_seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|r| r.body == small),
        "the retry carries the whole body"
    );

    let be = Backend::builder("be").fail_first(1, 503).start().await;
    let ing = retrying(be, Some(Retries::attempts(2).retry_on("5xx"))).await;
    let large = "l".repeat(200_000);
    let r = send(
        ing.request(Method::POST, "a.example.com", "/large")
            .body(large),
    )
    .await;
    assert_eq!(
        r.status(),
        503,
        "beyond the retry buffer: the 503 as it came"
    );
    assert_eq!(ing.backend("be").requests(), 1);
}

// `--retry-buffer-limit` is the buffer Envoy keeps per connection (Istio's
// `listenerPerConnectionBufferLimitBytes`; 32 KiB in the EDGE profile): a body beyond it is
// not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_buffer_limit_is_a_setting() {
    let ing = IngressBuilder::new()
        .backend(Backend::builder("be").fail_first(1, 503).start().await)
        .routes(vec![
            all_to("be").retries(Retries::attempts(2).retry_on("5xx"))
        ])
        .args(&["--retry-buffer-limit", "512"])
        .start()
        .await;
    let r = send(
        ing.request(Method::POST, "a.example.com", "/p")
            .body("b".repeat(1000)),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(ing.backend("be").requests(), 1);
}

/// Waits until the abandoned request's access-log line is written (the gateway is done with
/// it, retries included; logged as Envoy logs it: no status, `DC`), then counts the copies the
/// backend received.
async fn copies_after_the_client_left(ing: &Harness, path: &str) -> u64 {
    let line = access_line(ing, path).await;
    assert_eq!(
        (line.get("response_code"), line.get("response_flags")),
        ("0", "DC"),
        "{line:?}"
    );
    ing.backend("be").requests()
}

// Issue 11 "No amplification": a request whose client went away is never retried, whatever
// the policy (Envoy's router resets its upstream requests when the downstream stream is
// destroyed, `Filter::onDestroy`). HTTP/1.1: the client closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_http1_request_is_never_retried() {
    for retries in [
        None,
        Some(Retries::attempts(2).retry_on("reset,5xx,connect-failure")),
    ] {
        let ing = retrying(Backend::http("be").await, retries).await;
        let mut s = tokio::net::TcpStream::connect(ing.addr()).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(b"GET /delay/3000?h1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            .await
            .unwrap();
        ing.backend("be")
            .wait_for_requests(1, Duration::from_secs(10))
            .await;
        drop(s);
        assert_eq!(
            copies_after_the_client_left(&ing, "/delay/3000?h1").await,
            1
        );
    }
}

// The same over HTTP/2: the client resets its stream (the request future is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_http2_request_is_never_retried() {
    let ing = retrying(
        Backend::http("be").await,
        Some(Retries::attempts(2).retry_on("reset,5xx")),
    )
    .await;
    let client = h2c_client();
    let url = ing.url("/delay/3000?h2");
    let call = tokio::spawn(async move { client.get(url).send().await });
    ing.backend("be")
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    call.abort();
    assert_eq!(
        copies_after_the_client_left(&ing, "/delay/3000?h2").await,
        1
    );
}
