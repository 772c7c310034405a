//! Path normalisation as Istio's Envoy (`normalize_path: true`, `merge_slashes: false`, escaped
//! slashes kept; Envoy `source/common/http/path_utility.cc` `PathUtil::canonicalPath`, which is
//! Chromium's `url_canon_path.cc`, plus the path-parameter fix envoyproxy/envoy#47001): an
//! open prefix route cannot be left with `\`, `..;`, `.;` or `%2e` tricks, and what the backend
//! receives is what Envoy forwards.

use super::*;

const PROTECTED: u16 = 403;

async fn public_and_protected() -> (Harness, Envoy) {
    let h = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            HttpRoute::new()
                .when(Match::new().uri(prefix("/public")))
                .to(&svc("be")),
            HttpRoute::new().direct_response(DirectResponse::status(PROTECTED)),
        ])
        .start()
        .await;
    let envoy = Envoy::edge()
        .prefix("/public", Upstream::Cluster(h.backend("be").addr()))
        .prefix("/", Upstream::Direct(PROTECTED))
        .start()
        .await;
    (h, envoy)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: n.example.com\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_and_path_parameter_dot_segments_do_not_leave_a_prefix_route() {
    let (h, envoy) = public_and_protected().await;
    for path in [
        "/public\\..\\admin",
        "/public/..;/admin",
        "/public/..;jsessionid=1/admin",
        "/public/.;/..;/admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
        "/public/a/..;x/..;/admin",
        "/public;x/..;/admin",
    ] {
        let ours = raw_status(&raw_http(h.addr(), get(path)).await);
        let envoys = raw_status(&raw_http(envoy.addr, get(path)).await);
        assert_eq!(envoys, PROTECTED, "Envoy on {path}");
        assert_eq!(
            ours, PROTECTED,
            "{path} reached the backend through /public"
        );
    }
    // Where Envoy 1.40 forwards a `..;` segment its own canonicalisation wrote (which a
    // servlet container reads as `..`), Portcullis normalises again: still protected.
    for path in ["/public\\..;/admin", "/public/%2e%2e;/admin"] {
        let ours = raw_status(&raw_http(h.addr(), get(path)).await);
        assert_eq!(
            ours, PROTECTED,
            "{path} reached the backend through /public"
        );
    }
    assert_eq!(h.backend("be").requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_path_envoy_forwards() {
    let (h, envoy) = public_and_protected().await;
    let be = h.backend("be");
    for path in [
        "/public/a/..;x/b",
        "/public/a\\b",
        "/public/.;/x",
        "/public/%41%62%7e",
        "/public/a%2Fb/%5c",
        "/public//a/../b",
        "/public/%%30%30",
        "/public/a/./b/..",
        "/public/x?q=/../y",
    ] {
        let ours = raw_http(h.addr(), get(path)).await;
        assert_eq!(raw_status(&ours), 200, "{path}: {ours}");
        let ours = be.last_request().unwrap().path;
        let envoys = raw_http(envoy.addr, get(path)).await;
        assert_eq!(raw_status(&envoys), 200, "Envoy on {path}: {envoys}");
        let envoys = be.last_request().unwrap().path;
        assert_eq!(ours, envoys, "forwarded for {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_nul_in_the_path_is_400_as_envoy_answers() {
    let (h, envoy) = public_and_protected().await;
    let path = "/public/x%00y";
    assert_eq!(raw_status(&raw_http(envoy.addr, get(path)).await), 400);
    assert_eq!(raw_status(&raw_http(h.addr(), get(path)).await), 400);
    assert_eq!(h.backend("be").requests(), 0);
}
