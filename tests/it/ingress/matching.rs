//! Which route a request takes: every match kind, OR/AND of blocks and conditions, rule order,
//! several VirtualServices on one host, virtual-host selection.

use reqwest::Method;

use super::*;

/// A gateway whose rules are: `match: <blocks>` → backend `hit`, then a catch-all → `miss`.
async fn hit_or_miss(blocks: Vec<Match>) -> Harness {
    let hit = blocks
        .into_iter()
        .fold(HttpRoute::new().name("hit"), HttpRoute::when)
        .to(&svc("hit"));
    IngressBuilder::new()
        .backend(Backend::http("hit").await)
        .backend(Backend::http("miss").await)
        .routes(vec![hit, all_to("miss")])
        .start()
        .await
}

/// A rule sending paths starting with `path_prefix` to backend `to`.
fn prefix_to(path_prefix: &str, to: &str) -> HttpRoute {
    when_to(Match::new().uri(prefix(path_prefix)), to)
}

/// Asserts where each `(path, expected backend)` goes for `Host: m.example.com`.
async fn assert_paths(ing: &Harness, cases: &[(&str, &str)]) {
    let mut got = Vec::new();
    for (path, _) in cases {
        got.push((*path, ing.who("m.example.com", path).await));
    }
    let want: Vec<(&str, String)> = cases.iter().map(|(p, w)| (*p, w.to_string())).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_exact_matches_the_whole_path_without_query() {
    let ing = hit_or_miss(vec![Match::new().uri(exact("/a"))]).await;
    assert_paths(
        &ing,
        &[
            ("/a", "hit"),
            ("/a?x=1", "hit"),
            ("/a/", "miss"),
            ("/ab", "miss"),
            ("/A", "miss"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_prefix_is_a_raw_string_prefix() {
    let ing = hit_or_miss(vec![Match::new().uri(prefix("/foo"))]).await;
    assert_paths(
        &ing,
        &[
            ("/foo", "hit"),
            ("/foo/x", "hit"),
            ("/foobar", "hit"),
            ("/fo", "miss"),
            ("/bar/foo", "miss"),
            ("/Foo", "miss"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_regex_must_match_the_whole_path() {
    let ing = hit_or_miss(vec![Match::new().uri(regex("/item/[0-9]+"))]).await;
    assert_paths(
        &ing,
        &[
            ("/item/12", "hit"),
            ("/item/12?q=abc", "hit"),
            ("/item/12/x", "miss"),
            ("/x/item/12", "miss"),
            ("/item/", "miss"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_uri_case_folds_exact_and_prefix_but_not_regex() {
    let ing = hit_or_miss(vec![
        Match::new().uri(exact("/Login")).ignore_uri_case(),
        Match::new().uri(prefix("/API/")).ignore_uri_case(),
        Match::new().uri(regex("/Rx")).ignore_uri_case(),
        Match::new().uri(exact("/Case")),
    ])
    .await;
    assert_paths(
        &ing,
        &[
            ("/login", "hit"),
            ("/LOGIN", "hit"),
            ("/api/v1", "hit"),
            ("/Api/v1", "hit"),
            ("/Rx", "hit"),
            ("/rx", "miss"),
            ("/Case", "hit"),
            ("/case", "miss"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_matches_the_request_method() {
    let ing = hit_or_miss(vec![Match::new().method(exact("POST"))]).await;
    let who_with = async |m: Method| who(send(ing.request(m, "m.example.com", "/x")).await);
    assert_eq!(who_with(Method::POST).await, "hit");
    assert_eq!(who_with(Method::GET).await, "miss");
    assert_eq!(who_with(Method::PUT).await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheme_matches_the_downstream_scheme() {
    let ing = hit_or_miss(vec![Match::new().scheme(exact("https"))]).await;
    // Plain HTTP: never https, whatever the client claims in x-forwarded-proto.
    let r = ing
        .request(Method::GET, "m.example.com", "/")
        .header("x-forwarded-proto", "https");
    assert_eq!(who(send(r).await), "miss");
    let ing = hit_or_miss(vec![Match::new().scheme(exact("http"))]).await;
    assert_eq!(ing.who("m.example.com", "/").await, "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_matches_the_raw_host_header() {
    let ing = hit_or_miss(vec![
        Match::new().authority(prefix("api.")),
        Match::new().authority(exact("exact.example.com")),
        Match::new().authority(regex(r"re[0-9]\.example\.com")),
    ])
    .await;
    assert_eq!(ing.who("api.example.com", "/").await, "hit");
    assert_eq!(ing.who("exact.example.com", "/").await, "hit");
    assert_eq!(ing.who("re7.example.com", "/").await, "hit");
    assert_eq!(ing.who("www.example.com", "/").await, "miss");
    // Istio matches :authority as sent, port included.
    assert_eq!(ing.who("exact.example.com:8080", "/").await, "miss");
    assert_eq!(ing.who("re7.example.com:8080", "/").await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_match_exact_prefix_regex_and_presence() {
    let ing = hit_or_miss(vec![
        Match::new().header("x-exact", exact("v1")),
        Match::new().header("x-prefix", prefix("abc")),
        Match::new().header("x-regex", regex("[0-9]+")),
        Match::new().header("x-present", present()),
    ])
    .await;
    let with = async |name: &str, value: &str| {
        who(send(
            ing.request(Method::GET, "m.example.com", "/")
                .header(name, value),
        )
        .await)
    };
    assert_eq!(with("x-exact", "v1").await, "hit");
    assert_eq!(with("X-Exact", "v1").await, "hit");
    assert_eq!(with("x-exact", "v12").await, "miss");
    assert_eq!(with("x-exact", "V1").await, "miss");
    assert_eq!(with("x-prefix", "abcdef").await, "hit");
    assert_eq!(with("x-prefix", "xabc").await, "miss");
    assert_eq!(with("x-regex", "123").await, "hit");
    assert_eq!(with("x-regex", "123a").await, "miss");
    assert_eq!(with("x-present", "anything").await, "hit");
    assert_eq!(with("x-present", "").await, "hit");
    assert_eq!(with("x-absent", "1").await, "miss");
    assert_eq!(ing.who("m.example.com", "/").await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_headers_inverts_and_treats_a_missing_header_as_empty() {
    // Not `x-env: prod`.
    let ing = hit_or_miss(vec![Match::new().without_header("x-env", exact("prod"))]).await;
    let with = async |ing: &Harness, h: Option<(&str, &str)>| {
        let mut r = ing.request(Method::GET, "m.example.com", "/");
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        who(send(r).await)
    };
    assert_eq!(with(&ing, None).await, "hit");
    assert_eq!(with(&ing, Some(("x-env", "dev"))).await, "hit");
    assert_eq!(with(&ing, Some(("x-env", "prod"))).await, "miss");

    // Presence, inverted: only requests without the header.
    let ing = hit_or_miss(vec![Match::new().without_header("x-debug", present())]).await;
    assert_eq!(with(&ing, None).await, "hit");
    assert_eq!(with(&ing, Some(("x-debug", "1"))).await, "miss");

    // `a*` matches the empty string, so a request without the header is excluded too.
    let ing = hit_or_miss(vec![Match::new().without_header("x-a", regex("a*"))]).await;
    assert_eq!(with(&ing, None).await, "miss");
    assert_eq!(with(&ing, Some(("x-a", "aaa"))).await, "miss");
    assert_eq!(with(&ing, Some(("x-a", "b"))).await, "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_params_match_exact_prefix_regex_and_presence() {
    let ing = hit_or_miss(vec![
        Match::new().query_param("v", exact("2")),
        Match::new().query_param("p", prefix("ab")),
        Match::new().query_param("r", regex("[a-z]+")),
        Match::new().query_param("flag", present()),
    ])
    .await;
    assert_paths(
        &ing,
        &[
            ("/?v=2", "hit"),
            ("/x?a=1&v=2", "hit"),
            ("/?v=22", "miss"),
            ("/?p=abc", "hit"),
            ("/?p=xab", "miss"),
            ("/?r=abc", "hit"),
            ("/?r=abc1", "miss"),
            ("/?flag", "hit"),
            ("/?flag=anything", "hit"),
            ("/?other=1", "miss"),
            ("/", "miss"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_port_compares_the_gateway_server_port() {
    let ing = IngressBuilder::new()
        .server(80, &["*"])
        .server(81, &["*"])
        .backend(Backend::http("hit").await)
        .backend(Backend::http("miss").await)
        .routes(vec![when_to(Match::new().port(81), "hit"), all_to("miss")])
        .start()
        .await;
    // Both listen on mapped ports; `port` is the one the Gateway declares.
    let on = async |yaml_port: u16| {
        let url = format!("http://{}/", ing.addr_of(yaml_port));
        who(send(ing.client.get(url).header("host", "m.example.com")).await)
    };
    assert_eq!(on(81).await, "hit");
    assert_eq!(on(80).await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_blocks_are_ored_and_conditions_within_a_block_anded() {
    let ing = hit_or_miss(vec![
        Match::new().uri(prefix("/a")).method(exact("GET")),
        Match::new()
            .header("x-b", exact("1"))
            .query_param("q", exact("1")),
    ])
    .await;
    let req = async |m: Method, path: &str, xb: bool| {
        let mut r = ing.request(m, "m.example.com", path);
        if xb {
            r = r.header("x-b", "1");
        }
        who(send(r).await)
    };
    // First block: both conditions.
    assert_eq!(req(Method::GET, "/a", false).await, "hit");
    assert_eq!(req(Method::POST, "/a", false).await, "miss");
    assert_eq!(req(Method::GET, "/z", false).await, "miss");
    // Second block: both conditions.
    assert_eq!(req(Method::POST, "/z?q=1", true).await, "hit");
    assert_eq!(req(Method::POST, "/z?q=1", false).await, "miss");
    assert_eq!(req(Method::POST, "/z", true).await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_rule_wins_in_order_not_by_specificity() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("general").await)
        .backend(Backend::http("specific").await)
        .vs(
            "general-first",
            &["g.example.com"],
            vec![
                prefix_to("/api", "general"),
                prefix_to("/api/v2", "specific"),
            ],
        )
        .vs(
            "specific-first",
            &["s.example.com"],
            vec![
                prefix_to("/api/v2", "specific"),
                prefix_to("/api", "general"),
            ],
        )
        .start()
        .await;
    assert_eq!(ing.who("g.example.com", "/api/v2/x").await, "general");
    assert_eq!(ing.who("g.example.com", "/api/x").await, "general");
    assert_eq!(ing.who("s.example.com", "/api/v2/x").await, "specific");
    assert_eq!(ing.who("s.example.com", "/api/x").await, "general");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_two_virtual_services_for_one_host_are_concatenated_with_catch_alls_last() {
    let host = ["cat.example.com"];
    let ing = IngressBuilder::new()
        .backend(Backend::http("older").await)
        .backend(Backend::http("older-catch-all").await)
        .backend(Backend::http("newer").await)
        // Istio orders by creation time first: the older VS comes first although its name
        // sorts last. Its catch-all moves behind every route of the newer VS.
        .virtual_service(
            "z-older",
            VirtualService::new("z-older")
                .created("2020-01-01T00:00:00Z")
                .hosts(&host)
                .http(prefix_to("/shared", "older"))
                .http(prefix_to("/", "older-catch-all")),
        )
        .virtual_service(
            "a-newer",
            VirtualService::new("a-newer")
                .created("2021-01-01T00:00:00Z")
                .hosts(&host)
                .http(prefix_to("/shared", "newer"))
                .http(prefix_to("/new", "newer")),
        )
        .start()
        .await;
    assert_eq!(ing.who("cat.example.com", "/shared").await, "older");
    assert_eq!(ing.who("cat.example.com", "/new").await, "newer");
    assert_eq!(
        ing.who("cat.example.com", "/other").await,
        "older-catch-all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_is_exact_then_longest_wildcard_then_any_ignoring_port_and_case() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("exact").await)
        .backend(Backend::http("wild").await)
        .backend(Backend::http("wild-b").await)
        .backend(Backend::http("any").await)
        .vs("exact", &["a.b.example.com"], vec![all_to("exact")])
        .vs("wild", &["*.example.com"], vec![all_to("wild")])
        .vs("wild-b", &["*.b.example.com"], vec![all_to("wild-b")])
        .vs("any", &["*"], vec![all_to("any")])
        .start()
        .await;
    let cases = [
        ("a.b.example.com", "exact"),
        ("A.B.Example.COM", "exact"),
        ("a.b.example.com:8080", "exact"),
        ("x.b.example.com", "wild-b"),
        ("x.y.b.example.com", "wild-b"),
        ("b.example.com", "wild"),
        ("x.example.com:9999", "wild"),
        ("example.com", "any"),
        ("other.org", "any"),
    ];
    let mut got = Vec::new();
    for (host, _) in cases {
        got.push((host, ing.who(host, "/").await));
    }
    let want: Vec<(&str, String)> = cases.iter().map(|(h, w)| (*h, w.to_string())).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_resolved_before_matching_and_forwarding() {
    use crate::support::client::{raw_http, raw_status};
    // Istio's gateways normalise the path first (Envoy `normalize_path`, RFC 3986 dot
    // segments), so `..` cannot walk from an open prefix into a protected one.
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            HttpRoute::new()
                .when(Match::new().uri(prefix("/admin")))
                .direct_response(DirectResponse::status(403)),
            all_to("be"),
        ])
        .start()
        .await;
    let get = async |path: &str| {
        raw_http(
            ing.addr(),
            format!("GET {path} HTTP/1.1\r\nHost: n.example.com\r\nConnection: close\r\n\r\n"),
        )
        .await
    };
    assert_eq!(raw_status(&get("/admin").await), 403);
    assert_eq!(raw_status(&get("/public/../admin").await), 403);
    assert_eq!(raw_status(&get("/./admin/x").await), 403);
    assert_eq!(raw_status(&get("/public/%2E%2e/admin").await), 403);
    assert_eq!(raw_status(&get("/../../admin").await), 403);
    for (sent, forwarded) in [
        ("/public/./a/../b?q=1", "/public/b?q=1"),
        ("/public/b/..", "/public/"),
        ("/a//../b", "/a/b"),
        // No dot segment: untouched, repeated slashes included.
        ("//x/a..b/.c", "//x/a..b/.c"),
    ] {
        let resp = get(sent).await;
        assert_eq!(raw_status(&resp), 200, "{sent}: {resp}");
        assert_eq!(ing.backend("be").last_request().unwrap().path, forwarded);
    }
    assert_eq!(ing.backend("be").requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_server_hosts_limit_what_a_virtual_service_serves() {
    // The virtual hosts are the intersection of the server's hosts and the VS hosts.
    let ing = IngressBuilder::new()
        .server(80, &["*.example.com"])
        .backend(Backend::http("any").await)
        .backend(Backend::http("listed").await)
        .vs("any", &["*"], vec![all_to("any")])
        .vs(
            "listed",
            &["a.example.com", "other.org"],
            vec![all_to("listed")],
        )
        .start()
        .await;
    assert_eq!(ing.who("a.example.com", "/").await, "listed");
    assert_eq!(ing.who("b.example.com", "/").await, "any");
    assert_eq!(ing.who("other.org", "/").await, "status 404");
    assert_eq!(ing.who("example.com", "/").await, "status 404");
}
