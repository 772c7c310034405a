//! How a route's parts compose, as Istio composes them: header operations of a route and its
//! destinations (`route.go` `processDestination` / `processWeightedDestination`, Envoy
//! `WeightedClusterEntry::finalize*Headers`), and delegation (`model/virtualservice.go`
//! `mergeHTTPRoute`).

use super::*;

fn who_sets(value: &str) -> Headers {
    Headers::new()
        .request_set("x-who", value)
        .response_set("x-who", value)
}

// processDestination: one destination's operations are appended to the route's, so its `set`
// wins on the request and on the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_destination_set_wins_over_the_route() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![HttpRoute::new().headers(who_sets("route")).route(
            Destination::host(&svc("be")).headers(who_sets("destination")),
        )])
        .start()
        .await;
    let r = ing.get("a.example.com", "/").await;
    assert_eq!(r.headers()["x-who"], "destination");
    assert_eq!(echoed_header(&echo(r).await, "x-who"), ["destination"]);
}

// processWeightedDestination + WeightedClusterEntry::finalizeRequestHeaders: the cluster's
// operations run first and the route's last, so with weighted destinations the route wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_weighted_destinations_the_route_set_wins() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .backend(Backend::http("be2").await)
        .routes(vec![HttpRoute::new()
            .headers(who_sets("route"))
            .route(
                Destination::host(&svc("be"))
                    .weight(50)
                    .headers(who_sets("destination")),
            )
            .route(
                Destination::host(&svc("be2"))
                    .weight(50)
                    .headers(who_sets("destination")),
            )])
        .start()
        .await;
    for _ in 0..4 {
        let r = ing.get("a.example.com", "/").await;
        assert_eq!(r.headers()["x-who"], "route");
        assert_eq!(echoed_header(&echo(r).await, "x-who"), ["route"]);
    }
}

// Istio's integration test "set host header in destination" (tests/integration/pilot/common/
// routing.go): `Host` in a destination's `headers.request.set` is an authority rewrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_set_in_a_destination_rewrites_the_authority() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![HttpRoute::new()
            .route(Destination::host(&svc("be")).headers(
                Headers::new().request_set("Host", "dest-authority.example"),
            ))])
        .start()
        .await;
    let e = echo(ing.get("a.example.com", "/").await).await;
    assert_eq!(e["authority"], "dest-authority.example");
}

// mergeHTTPRoute: a delegate's rule inherits the root rule's headers, timeout and rewrite when
// it sets none; a delegate rule whose match the root's cannot contain is dropped (404), never
// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegate_rules_inherit_the_root_rule_and_conflicting_ones_are_dropped() {
    let root = VirtualService::new("root")
        .hosts(&["a.example.com"])
        .gateways(&[GATEWAY])
        .http(
            HttpRoute::new()
                .name("root")
                .when(Match::new().uri(prefix("/shop")))
                .headers(Headers::new().request_set("x-from-root", "yes"))
                .timeout("3s")
                .delegate("child", "default"),
        );
    let child = VirtualService::new("child")
        .http(
            HttpRoute::new()
                .name("cart")
                .when(Match::new().uri(prefix("/shop/cart")))
                .to(&svc("be")),
        )
        .http(
            HttpRoute::new()
                .name("outside")
                .when(Match::new().uri(prefix("/admin")))
                .to(&svc("be")),
        );
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .resources("delegation.yaml", &[&root, &child])
        .start()
        .await;
    let e = echo(ing.get("a.example.com", "/shop/cart/1").await).await;
    assert_eq!(echoed_header(&e, "x-from-root"), ["yes"]);
    let timeout = echoed_header(&e, "x-envoy-expected-rq-timeout-ms");
    assert!(
        timeout.len() == 1 && timeout[0].parse::<u64>().unwrap() <= 3000,
        "the root's timeout applies: {e}"
    );
    // `/admin` is not within the root's `/shop`: the rule is never served.
    assert_eq!(ing.get("a.example.com", "/admin").await.status(), 404);
    assert_eq!(ing.get("a.example.com", "/shop/admin").await.status(), 404);
    assert_eq!(ing.backend("be").requests(), 1);
}
