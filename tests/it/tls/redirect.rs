//! `tls.httpsRedirect` on a plain HTTP server: every request gets 301 to the same host and path
//! (query kept) on https, with the HTTPS server's Gateway port (omitted for 443), before any
//! route applies.

use super::*;
use crate::support::client::{raw_http, raw_https, raw_status, TlsClientOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_answers_301_to_the_https_url_with_path_and_query() {
    let root = Ca::new("Redirect Root");
    let cert = root.server_cert(&["*.example.com"]);
    let be = Backend::http("redirect-backend").await;
    let (se, dest) = service_entry("redirect-backend.internal", &be, "HTTP");
    let hosts = ["r.example.com", "s.example.com"];
    let edge = edge(
        credentials(&[("web", &cert, None)]),
        &[80, 443, 8080, 8443],
        &[
            &gateway(
                "edge",
                vec![
                    Server::http(80).hosts(&hosts).https_redirect(),
                    https(443, &hosts, simple("web")),
                    Server::http(8080)
                        .hosts(&["alt.example.com"])
                        .https_redirect(),
                    https(8443, &["alt.example.com"], simple("web")),
                ],
            ),
            // r.example.com has a route (the redirect comes first); s.example.com has none.
            &http_route("r", &["r.example.com", "alt.example.com"], "edge", &dest),
            &se,
        ],
    )
    .await;
    let http_port = edge.port_of(80);

    for (gw_port, host_header, path, location) in [
        (
            80,
            "r.example.com".to_string(),
            "/path/x?q=1&b=two",
            "https://r.example.com/path/x?q=1&b=two",
        ),
        // The port the client used is not carried over to https.
        (
            80,
            format!("r.example.com:{http_port}"),
            "/p",
            "https://r.example.com/p",
        ),
        (
            80,
            "s.example.com".to_string(),
            "/",
            "https://s.example.com/",
        ),
        (
            8080,
            "alt.example.com".to_string(),
            "/a?z=9",
            "https://alt.example.com:8443/a?z=9",
        ),
    ] {
        let resp = raw_http(edge.addr_of(gw_port), get(&host_header, path)).await;
        assert_eq!(raw_status(&resp), 301, "{host_header}{path}: {resp}");
        assert_eq!(
            Resp::parse(&resp).header("location"),
            Some(location),
            "{host_header}{path}: {resp}"
        );
    }
    assert_eq!(be.requests(), 0, "redirected requests reach no upstream");

    // The HTTPS server itself serves the route.
    let opts = TlsClientOpts::new(Some("r.example.com"), Some(&root), None, &[]);
    let resp = raw_https(
        edge.addr_of(443),
        &opts,
        get("r.example.com", "/path/x?q=1"),
    )
    .await
    .unwrap();
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(be.last_request().unwrap().path, "/path/x?q=1");
}
