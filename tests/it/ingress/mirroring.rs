//! Mirroring (`mirror`, `mirrors`, `mirrorPercentage`) as Istio configures Envoy's shadow
//! policy (`route.go` `MirrorPercent`, `TranslateRequestMirrorPolicy` with
//! `DISABLE_SHADOW_HOST_SUFFIX` true) and Envoy sends shadows (`router.cc`, streaming shadows:
//! the body goes along; `shadow_writer_impl.cc`: fire and forget).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::support::{eventually, RecordedRequest};

const WAIT: Duration = Duration::from_secs(10);

fn mirror_to(name: &str) -> serde_json::Value {
    json!({"host": svc(name)})
}

/// The last copy `backend` recorded, once one arrived with its whole body.
async fn copy_seen(backend: &Backend) -> RecordedRequest {
    eventually(WAIT, "a mirror copy recorded", async || {
        !backend.requests_seen().is_empty()
    })
    .await;
    backend.last_request().unwrap()
}

// MirrorPercent: no percentage is 100%; the copy keeps the Host (no `-shadow` suffix) and
// carries the body; the client's answer is the primary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_every_request_with_its_host_and_body() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .backend(Backend::http("shadow").await)
        .routes(vec![all_to("be").with("mirror", mirror_to("shadow"))])
        .start()
        .await;
    let r = send(
        ing.request(Method::POST, "shop.example.com", "/cart?x=1")
            .body("{\"item\":1}"),
    )
    .await;
    assert_eq!(who(r), "be");
    let copy = copy_seen(ing.backend("shadow")).await;
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.path, "/cart?x=1");
    assert_eq!(copy.authority.as_deref(), Some("shop.example.com"));
    assert_eq!(copy.body, "{\"item\":1}");
    let primary = ing.backend("be").last_request().unwrap();
    assert_eq!(
        copy.header("x-request-id"),
        primary.header("x-request-id"),
        "the same request"
    );
    // An HTTP/2 client's request is copied as an HTTP/1.1 request to an HTTP/1.1 mirror.
    ing.backend("shadow").clear_requests();
    let r = send(
        crate::support::client::h2c_client()
            .post(ing.url("/h2"))
            .body("over h2"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let copy = copy_seen(ing.backend("shadow")).await;
    assert_eq!((copy.path.as_str(), copy.body.as_str()), ("/h2", "over h2"));
    assert_eq!(copy.version, "HTTP/1.1");
    // Its own cluster stats.
    let stats = ing
        .cluster_stats(&format!("outbound|80||{}", svc("shadow")))
        .await;
    assert_eq!(stats.requests, 2, "{stats:?}");
}

// `mirrors`: several copies; `mirrorPercentage: 0` (and `percentage: 0`) turn one off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_send_one_copy_each_and_zero_percent_sends_none() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .backend(Backend::http("m1").await)
        .backend(Backend::http("m2").await)
        .backend(Backend::http("off").await)
        .routes(vec![
            when_to(Match::new().uri(prefix("/many")), "be").with(
                "mirrors",
                json!([
                    {"destination": mirror_to("m1")},
                    {"destination": mirror_to("m2"), "percentage": {"value": 100}},
                    {"destination": mirror_to("off"), "percentage": {"value": 0}},
                ]),
            ),
            when_to(Match::new().uri(prefix("/none")), "be")
                .with("mirror", mirror_to("off"))
                .with("mirrorPercentage", json!({"value": 0})),
        ])
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(ing.who("a.example.com", "/many").await, "be");
    }
    assert_eq!(ing.who("a.example.com", "/none").await, "be");
    ing.backend("m1").wait_for_requests(3, WAIT).await;
    ing.backend("m2").wait_for_requests(3, WAIT).await;
    // The copies of the last request have arrived: the 0% mirror had its chance too.
    assert_eq!(ing.backend("off").requests(), 0);
    assert_eq!(ing.backend("be").requests(), 4);
}

// Fire and forget (`shadow_writer_impl.cc`): a mirror that is down or slow never fails or
// delays the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_slow_mirror_never_fails_or_delays_the_primary() {
    let dead = Backend::http("dead").await;
    let dead_port = dead.port();
    dead.stop();
    let slow = Backend::builder("slow")
        .delay(Duration::from_secs(60))
        .start()
        .await;
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .backend(slow)
        .service_at("dead", dead_port)
        .routes(vec![all_to("be").with(
            "mirrors",
            json!([{"destination": mirror_to("dead")}, {"destination": mirror_to("slow")}]),
        )])
        .start()
        .await;
    let r = send(
        ing.request(Method::PUT, "a.example.com", "/p")
            .body("payload"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo(r).await["body"], "payload");
    // The slow copy arrived and is still waiting for its answer: the primary did not wait.
    assert_eq!(copy_seen(ing.backend("slow")).await.body, "payload");
}
