//! What a matched route does: weighted split, header operations, rewrites, redirects, direct
//! responses.

use std::sync::Arc;

use reqwest::Method;

use super::*;

/// A rule with one match block `m` doing `body`.
fn when(m: &str, body: &str) -> String {
    rule("", &[m], body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_route_splits_70_30_over_10000_keep_alive_requests() {
    const TOTAL: u64 = 10_000;
    const CLIENTS: u64 = 16;
    let ing = Arc::new(
        IngressBuilder::new()
            .backend(Backend::http("seventy").await)
            .backend(Backend::http("thirty").await)
            .routes(&rule(
                "",
                &[],
                &format!(
                    "route:\n- {{destination: {{host: {}}}, weight: 70}}\n\
                     - {{destination: {{host: {}}}, weight: 30}}",
                    svc("seventy"),
                    svc("thirty")
                ),
            ))
            .start(),
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

/// Route-level header operations in both directions.
const ROUTE_HEADER_OPS: &str = r#"headers:
  request:
    set: {x-set: route-set}
    add: {x-add: route-add}
    remove: [x-remove]
  response:
    set: {x-resp-set: route-set}
    add: {x-resp-add: route-add}
    remove: [x-resp-remove]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_level_request_and_response_headers_are_set_added_and_removed() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(&rule(
            "",
            &[],
            &format!("{ROUTE_HEADER_OPS}\n{}", route_to("be")),
        ))
        .start();
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
        .routes(&rule(
            "",
            &[],
            &format!(
                r#"headers:
  request:
    set: {{x-route: r}}
  response:
    set: {{x-route-resp: r}}
route:
- destination: {{host: {}}}
  headers:
    request:
      set: {{x-dest: d}}
      add: {{x-dest-add: d}}
      remove: [x-dest-remove]
    response:
      set: {{x-dest-resp: d}}
      add: {{x-dest-resp-add: d}}
      remove: [x-dest-resp-remove]"#,
                svc("be")
            ),
        ))
        .start();
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
            &[
                when(
                    "uri: {prefix: /foo}",
                    &format!("rewrite: {{uri: /bar}}\n{}", route_to("be")),
                ),
                when(
                    "uri: {prefix: /slash}",
                    &format!("rewrite: {{uri: /}}\n{}", route_to("be")),
                ),
                when(
                    "uri: {exact: /old}",
                    &format!("rewrite: {{uri: /new/path}}\n{}", route_to("be")),
                ),
                when(
                    "uri: {regex: '/re/[0-9]+'}",
                    &format!("rewrite: {{uri: /whole}}\n{}", route_to("be")),
                ),
            ]
            .concat(),
        )
        .start();
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
        .routes(&when(
            "uri: {prefix: /service/}",
            &format!(
                "rewrite:\n  uriRegexRewrite:\n    match: '^/service/([^/]+)(/.*)$'\n    rewrite: '\\2/instance/\\1'\n{}",
                route_to("be")
            ),
        ))
        .start();
    let e = echo(ing.get("r.example.com", "/service/foo/v1/api?x=1").await).await;
    assert_eq!(e["path"], "/v1/api/instance/foo?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_authority_replaces_the_host_sent_upstream() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(
            &[
                when(
                    "uri: {prefix: /rewritten}",
                    &format!(
                        "rewrite: {{authority: internal.example.net}}\n{}",
                        route_to("be")
                    ),
                ),
                when("uri: {prefix: /}", &route_to("be")),
            ]
            .concat(),
        )
        .start();
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
        .routes(
            &[
                when("uri: {exact: /uri}", "redirect: {uri: /new}"),
                when(
                    "uri: {exact: /authority}",
                    "redirect: {authority: other.example.com}",
                ),
                when("uri: {exact: /port}", "redirect: {port: 8443}"),
                when(
                    "uri: {exact: /scheme}",
                    "redirect: {scheme: https, uri: /secure}",
                ),
                when(
                    "uri: {exact: /default-port}",
                    "redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}",
                ),
                when(
                    "uri: {exact: /request-port}",
                    "redirect: {authority: other.example.com, derivePort: FROM_REQUEST_PORT}",
                ),
                when(
                    "uri: {exact: /code}",
                    "redirect: {uri: /found, redirectCode: 302}",
                ),
                when(
                    "uri: {exact: /code307}",
                    "redirect: {uri: /temp, redirectCode: 307}",
                ),
                when("uri: {prefix: /old/}", "redirect: {prefixRewrite: /new/}"),
            ]
            .concat(),
        )
        .start();
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
        .routes(
            &[
                when(
                    "uri: {exact: /teapot}",
                    "directResponse:\n  status: 418\n  body: {string: \"short and stout\\n\"}\n\
                     headers:\n  response:\n    set: {x-kind: teapot}",
                ),
                when(
                    "uri: {exact: /bytes}",
                    // base64 of "raw bytes"
                    "directResponse:\n  status: 200\n  body: {bytes: cmF3IGJ5dGVz}",
                ),
                when("uri: {exact: /empty}", "directResponse: {status: 503}"),
            ]
            .concat(),
        )
        .start();
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
