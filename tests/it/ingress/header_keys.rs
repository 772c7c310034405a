//! Header-match keys Istio's webhook accepts since istio/istio#54602
//! (`ValidateHTTPHeaderNameOrJwtClaimRoute`, `validateHTTPRouteMatchRequest` in
//! `pkg/config/validation/`), routed as Envoy routes Istio's translation of them
//! (`pilot/pkg/networking/core/route/route.go`, `TranslateRouteMatch`): pseudo-headers read the
//! request's method, path (with its query), authority and scheme; any RFC 9110 token names a
//! header (Envoy lower-cases names); `withoutHeaders: {name: {regex: "*"}}` is an inverted
//! presence match; a JWT claim is dynamic metadata, absent until a RequestAuthentication
//! verifies a token.

use reqwest::Method;

use super::*;

/// Rules: `match: [m]` → backend `hit`, then a catch-all → `miss`.
async fn hit_or_miss(m: Match) -> Harness {
    IngressBuilder::new()
        .backend(Backend::http("hit").await)
        .backend(Backend::http("miss").await)
        .routes(vec![when_to(m, "hit"), all_to("miss")])
        .start()
        .await
}

async fn who_with(h: &Harness, method: Method, path: &str, headers: &[(&str, &str)]) -> String {
    let req = headers
        .iter()
        .fold(h.request(method, "m.example.com", path), |r, (k, v)| {
            r.header(*k, *v)
        });
    who(send(req).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_header_keys_match_the_request_method() {
    let h = hit_or_miss(Match::new().header(":method", exact("POST"))).await;
    assert_eq!(who_with(&h, Method::POST, "/", &[]).await, "hit");
    assert_eq!(who_with(&h, Method::GET, "/", &[]).await, "miss");
}

/// Envoy's `:path` carries the query string, unlike `uri`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_header_path_key_matches_the_path_with_its_query() {
    let h = hit_or_miss(Match::new().header(":path", regex("/api/.*[?&]debug=1.*"))).await;
    assert_eq!(
        who_with(&h, Method::GET, "/api/x?debug=1", &[]).await,
        "hit"
    );
    assert_eq!(
        who_with(&h, Method::GET, "/api/x?a=b&debug=1", &[]).await,
        "hit"
    );
    assert_eq!(who_with(&h, Method::GET, "/api/x", &[]).await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_header_authority_and_scheme_keys_match() {
    let h = hit_or_miss(
        Match::new()
            .header(":authority", prefix("m.example.com"))
            .header(":scheme", exact("http")),
    )
    .await;
    assert_eq!(h.who("m.example.com", "/").await, "hit");
    assert_eq!(h.who("other.example.com", "/").await, "miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_character_and_upper_case_header_keys_match_their_header() {
    let h = hit_or_miss(
        Match::new()
            .header("x.tenant", exact("acme"))
            .header("X~Flag", present()),
    )
    .await;
    let both = [("x.tenant", "acme"), ("x~flag", "")];
    assert_eq!(who_with(&h, Method::GET, "/", &both).await, "hit");
    assert_eq!(
        who_with(&h, Method::GET, "/", &both[..1]).await,
        "miss",
        "x~flag must be present"
    );
}

/// `regex: "*"` is not RE2: Istio makes it a presence match (`canBeConvertedToPresentMatch`),
/// and under `withoutHeaders` the route matches while the header is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_headers_regex_star_matches_while_the_header_is_absent() {
    let h = hit_or_miss(Match::new().without_header("x-debug", regex("*"))).await;
    assert_eq!(who_with(&h, Method::GET, "/", &[]).await, "hit");
    assert_eq!(
        who_with(&h, Method::GET, "/", &[("x-debug", "")]).await,
        "miss"
    );
    assert_eq!(
        who_with(&h, Method::GET, "/", &[("x-debug", "1")]).await,
        "miss"
    );
}

/// A claim route is accepted on a gateway and warned about (IST0149): no request has verified
/// claims, so `headers` on a claim never matches and `withoutHeaders` on one always does (the
/// inverted metadata matcher Istio generates, `translateMetadataMatch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claim_keys_are_accepted_and_match_no_unverified_request() {
    let h = IngressBuilder::new()
        .backend(Backend::http("admin").await)
        .backend(Backend::http("others").await)
        .backend(Backend::http("miss").await)
        .routes(vec![
            when_to(
                Match::new()
                    .uri(prefix("/admin"))
                    .header("@request.auth.claims.group", exact("admin")),
                "admin",
            ),
            when_to(
                Match::new()
                    .uri(prefix("/any"))
                    .without_header("@request.auth.claims[group]", exact("admin")),
                "others",
            ),
            all_to("miss"),
        ])
        .start()
        .await;
    assert_eq!(h.who("m.example.com", "/admin").await, "miss");
    assert_eq!(h.who("m.example.com", "/any").await, "others");
    h.gw.wait_for_log("Warning [IST0149]", LOG_WAIT).await;
}
