//! Cookie affinity (`consistentHash.httpCookie` with a `ttl`), as Envoy's cookie hash policy
//! gives it (`hash_policy.cc` `CookieHashMethod`, router `addDownstreamSetCookie`,
//! `Http::Utility::makeSetCookieValue`): a client without the cookie gets one in the first
//! response, made from its connection and hashed at once, so that response already came from
//! the endpoint the cookie pins.

use reqwest::Method;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_hash_with_ttl_issues_set_cookie_and_pins_the_first_endpoint() {
    let a = Backend::http("a").await;
    let b = Backend::http("b").await;
    let se = ServiceEntry::new("pool")
        .hosts(&["pool.svc.local"])
        .port(Port::http(80))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("http", a.port()))
        .endpoint(Endpoint::address("127.0.0.1").port("http", b.port()));
    let dr = DestinationRule::new("pool", "pool.svc.local").policy(TrafficPolicy::new().with(
        "loadBalancer",
        json!({"consistentHash": {"httpCookie": {"name": "sticky", "path": "/", "ttl": "60s"}}}),
    ));
    let ing = IngressBuilder::new()
        .backend(a)
        .backend(b)
        .resources("pool.yaml", &[&se, &dr])
        .routes(vec![HttpRoute::new().to("pool.svc.local")])
        .start()
        .await;
    let set_cookie =
        regex::Regex::new(r#"^sticky="([0-9a-f]{16})"; Max-Age=60; Path=/; HttpOnly$"#).unwrap();
    for _ in 0..4 {
        let first = ing.get("a.example.com", "/").await;
        let header = first.headers()["set-cookie"].to_str().unwrap().to_string();
        let value = set_cookie
            .captures(&header)
            .unwrap_or_else(|| panic!("not Envoy's cookie: {header}"))[1]
            .to_string();
        let pinned = who(first);
        for _ in 0..5 {
            let r = send(
                ing.request(Method::GET, "a.example.com", "/")
                    .header("cookie", format!("sticky=\"{value}\"")),
            )
            .await;
            assert!(
                r.headers().get("set-cookie").is_none(),
                "a client with the cookie gets none"
            );
            assert_eq!(who(r), pinned, "cookie {value}");
        }
    }
}
