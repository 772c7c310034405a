//! What a matched route does: weighted split, header operations, rewrites, redirects, direct
//! responses.

use std::sync::Arc;

use reqwest::Method;

use super::*;
use crate::support::client::http_client;

/// A rule for requests whose path is exactly `path`.
fn at(path: &str) -> HttpRoute {
    HttpRoute::new().when(Match::new().uri(exact(path)))
}

/// A rule for requests whose path starts with `path`.
fn under(path: &str) -> HttpRoute {
    HttpRoute::new().when(Match::new().uri(prefix(path)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_route_splits_70_30_over_10000_keep_alive_requests() {
    const TOTAL: u64 = 10_000;
    const CLIENTS: u64 = 16;
    let ing = Arc::new(
        IngressBuilder::new()
            .backend(Backend::http("seventy").await)
            .backend(Backend::http("thirty").await)
            .routes(vec![HttpRoute::new()
                .route(Destination::host(&svc("seventy")).weight(70))
                .route(Destination::host(&svc("thirty")).weight(30))])
            .start()
            .await,
    );
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let ing = ing.clone();
        tasks.push(tokio::spawn(async move {
            // One keep-alive client per task: requests reuse its connection.
            let client = http_client();
            for _ in 0..TOTAL / CLIENTS {
                let r = send(client.get(ing.url("/w")).header("host", "w.example.com")).await;
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (a, b) = (
        ing.backend("seventy").requests(),
        ing.backend("thirty").requests(),
    );
    assert_eq!(a + b, TOTAL, "every request reached one of the two");
    let share = a as f64 * 100.0 / TOTAL as f64;
    assert!(
        (68.0..=72.0).contains(&share),
        "70/30 split off by more than 2 points: {a} vs {b} ({share:.2}%)"
    );
    // Upstream connections are pooled too: far fewer than requests.
    let conns = ing.backend("seventy").connections() + ing.backend("thirty").connections();
    assert!(conns < TOTAL / 10, "{conns} upstream connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_level_request_and_response_headers_are_set_added_and_removed() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be").headers(
            Headers::new()
                .request_set("x-set", "route-set")
                .request_add("x-add", "route-add")
                .request_remove("x-remove")
                .response_set("x-resp-set", "route-set")
                .response_add("x-resp-add", "route-add")
                .response_remove("x-resp-remove"),
        )])
        .start()
        .await;
    let r = send(
        ing.request(Method::GET, "h.example.com", "/")
            .header("x-set", "client")
            .header("x-add", "client")
            .header("x-remove", "client")
            .header("x-keep", "client")
            // The backend answers with these; the route rewrites them on the way back.
            .header("x-set-response-header", "x-resp-set: backend")
            .header("x-set-response-header", "x-resp-add: backend")
            .header("x-set-response-header", "x-resp-remove: backend"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let all = |name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("x-resp-set"), ["route-set"]);
    assert_eq!(all("x-resp-add"), ["backend", "route-add"]);
    assert!(all("x-resp-remove").is_empty());
    let e = echo(r).await;
    assert_eq!(echoed_header(&e, "x-set"), ["route-set"]);
    assert_eq!(echoed_header(&e, "x-add"), ["client", "route-add"]);
    assert!(echoed_header(&e, "x-remove").is_empty());
    assert_eq!(echoed_header(&e, "x-keep"), ["client"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_level_headers_apply_with_the_route_level_ones() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![HttpRoute::new()
            .headers(
                Headers::new()
                    .request_set("x-route", "r")
                    .response_set("x-route-resp", "r"),
            )
            .route(
                Destination::host(&svc("be")).headers(
                    Headers::new()
                        .request_set("x-dest", "d")
                        .request_add("x-dest-add", "d")
                        .request_remove("x-dest-remove")
                        .response_set("x-dest-resp", "d")
                        .response_add("x-dest-resp-add", "d")
                        .response_remove("x-dest-resp-remove"),
                ),
            )])
        .start()
        .await;
    let r = send(
        ing.request(Method::GET, "h.example.com", "/")
            .header("x-dest", "client")
            .header("x-dest-add", "client")
            .header("x-dest-remove", "client")
            .header("x-set-response-header", "x-dest-resp-remove: backend")
            .header("x-set-response-header", "x-dest-resp-add: backend"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-route-resp"], "r");
    assert_eq!(r.headers()["x-dest-resp"], "d");
    let resp_add: Vec<_> = r.headers().get_all("x-dest-resp-add").iter().collect();
    assert_eq!(resp_add, ["backend", "d"]);
    assert!(r.headers().get("x-dest-resp-remove").is_none());
    let e = echo(r).await;
    assert_eq!(echoed_header(&e, "x-route"), ["r"]);
    assert_eq!(echoed_header(&e, "x-dest"), ["d"]);
    assert_eq!(echoed_header(&e, "x-dest-add"), ["client", "d"]);
    assert!(echoed_header(&e, "x-dest-remove").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_uri_replaces_the_matched_prefix_or_the_whole_path() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(
            [
                under("/foo").rewrite(Rewrite::uri("/bar")),
                under("/slash").rewrite(Rewrite::uri("/")),
                at("/old").rewrite(Rewrite::uri("/new/path")),
                HttpRoute::new()
                    .when(Match::new().uri(regex("/re/[0-9]+")))
                    .rewrite(Rewrite::uri("/whole")),
            ]
            .map(|r| r.to(&svc("be")))
            .to_vec(),
        )
        .start()
        .await;
    let cases = [
        ("/foo/x", "/bar/x"),
        ("/foo", "/bar"),
        ("/foobar", "/barbar"),
        ("/foo/x?q=1&r=2", "/bar/x?q=1&r=2"),
        // Envoy's prefix_rewrite: `/slash` → `/` leaves the rest, slash included.
        ("/slash/x", "//x"),
        ("/old", "/new/path"),
        ("/old?k=v", "/new/path?k=v"),
        ("/re/42", "/whole"),
    ];
    for (sent, seen) in cases {
        let e = echo(ing.get("r.example.com", sent).await).await;
        assert_eq!(e["path"], seen, "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_regex_rewrite_substitutes_capture_groups() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![under("/service/")
            .rewrite(Rewrite::uri_regex(
                r"^/service/([^/]+)(/.*)$",
                r"\2/instance/\1",
            ))
            .to(&svc("be"))])
        .start()
        .await;
    let e = echo(ing.get("r.example.com", "/service/foo/v1/api?x=1").await).await;
    assert_eq!(e["path"], "/v1/api/instance/foo?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_authority_replaces_the_host_sent_upstream() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            under("/rewritten")
                .rewrite(Rewrite::authority("internal.example.net"))
                .to(&svc("be")),
            under("/").to(&svc("be")),
        ])
        .start()
        .await;
    let e = echo(ing.get("public.example.com", "/rewritten").await).await;
    assert_eq!(e["authority"], "internal.example.net");
    assert_eq!(echoed_header(&e, "host"), ["internal.example.net"]);
    let e = echo(ing.get("public.example.com", "/plain").await).await;
    assert_eq!(e["authority"], "public.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_builds_the_location_with_default_301_and_the_query_kept() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            at("/uri").redirect(Redirect::new().uri("/new")),
            at("/authority").redirect(Redirect::new().authority("other.example.com")),
            at("/port").redirect(Redirect::new().port(8443)),
            at("/scheme").redirect(Redirect::new().scheme("https").uri("/secure")),
            at("/default-port").redirect(
                Redirect::new()
                    .scheme("https")
                    .derive_port("FROM_PROTOCOL_DEFAULT"),
            ),
            at("/request-port").redirect(
                Redirect::new()
                    .authority("other.example.com")
                    .derive_port("FROM_REQUEST_PORT"),
            ),
            at("/code").redirect(Redirect::new().uri("/found").code(302)),
            at("/code307").redirect(Redirect::new().uri("/temp").code(307)),
            under("/old/").redirect(Redirect::new().prefix_rewrite("/new/")),
        ])
        .start()
        .await;
    let cases = [
        // (Host, path, status, Location)
        ("a.example.com", "/uri", 301, "http://a.example.com/new"),
        (
            "a.example.com",
            "/uri?x=1&y=2",
            301,
            "http://a.example.com/new?x=1&y=2",
        ),
        (
            "a.example.com:8080",
            "/uri",
            301,
            "http://a.example.com:8080/new",
        ),
        (
            "a.example.com",
            "/authority",
            301,
            "http://other.example.com/authority",
        ),
        (
            "a.example.com",
            "/port",
            301,
            "http://a.example.com:8443/port",
        ),
        (
            "a.example.com",
            "/scheme",
            301,
            "https://a.example.com/secure",
        ),
        // The request's port is replaced by the new scheme's default (443: omitted).
        (
            "a.example.com:8080",
            "/default-port",
            301,
            "https://a.example.com/default-port",
        ),
        // FROM_REQUEST_PORT is the port the Gateway server declares (80, the default: omitted).
        (
            "a.example.com:8080",
            "/request-port",
            301,
            "http://other.example.com/request-port",
        ),
        (
            "a.example.com",
            "/code?q=1",
            302,
            "http://a.example.com/found?q=1",
        ),
        (
            "a.example.com",
            "/code307",
            307,
            "http://a.example.com/temp",
        ),
        (
            "a.example.com",
            "/old/x/y",
            301,
            "http://a.example.com/new/x/y",
        ),
    ];
    for (host, path, status, location) in cases {
        let r = ing.get(host, path).await;
        assert_eq!(r.status().as_u16(), status, "{host}{path}");
        assert_eq!(
            r.headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            Some(location.to_string()),
            "{host}{path}"
        );
    }
    assert_eq!(
        ing.backend("be").requests(),
        0,
        "redirects never go upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_response_answers_with_its_status_and_body() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            at("/teapot")
                .direct_response(DirectResponse::status(418).body("short and stout\n"))
                .headers(Headers::new().response_set("x-kind", "teapot")),
            // base64 of "raw bytes"
            at("/bytes").direct_response(DirectResponse::status(200).body_bytes("cmF3IGJ5dGVz")),
            at("/empty").direct_response(DirectResponse::status(503)),
        ])
        .start()
        .await;
    let r = ing.get("d.example.com", "/teapot").await;
    assert_eq!(r.status(), 418);
    // The route's response header operations apply to its direct response too.
    assert_eq!(r.headers()["x-kind"], "teapot");
    assert_eq!(r.text().await.unwrap(), "short and stout\n");
    let r = ing.get("d.example.com", "/bytes").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "raw bytes");
    let r = ing.get("d.example.com", "/empty").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(ing.backend("be").requests(), 0);
}
