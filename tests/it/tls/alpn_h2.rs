//! HTTP/2 at the edge: a terminating HTTPS server offers `h2` by ALPN and serves HTTP/2
//! clients; upstreams are reached over HTTP/2 when their ServiceEntry port says HTTP2 or GRPC,
//! or a DestinationRule sets `h2UpgradePolicy: UPGRADE`.

use super::*;
use crate::support::client::{tls_client_builder, tls_handshake};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_on_a_simple_server_and_the_request_is_served() {
    let root = Ca::new("ALPN Root");
    let cert = root.server_cert(&["h2.example.com"]);
    let be = Backend::http("alpn-backend").await;
    let (se, dest) = service_entry("alpn-backend.internal", &be, "HTTP");
    let edge = edge(
        credentials(&[("h2", &cert, None)]),
        &[443],
        &[
            &gateway("edge", vec![https(443, &["h2.example.com"], simple("h2"))]),
            &http_route("h2", &["h2.example.com"], "edge", &dest),
            &se,
        ],
    )
    .await;
    let addr = edge.addr_of(443);
    for (offer, want) in [
        (&["h2", "http/1.1"][..], "h2"),
        (&["http/1.1", "h2"][..], "h2"),
        (&["http/1.1"][..], "http/1.1"),
    ] {
        let info = tls_handshake(addr, Some("h2.example.com"), Some(&root), None, offer)
            .await
            .unwrap();
        assert_eq!(info.alpn.as_deref(), Some(want), "client offers {offer:?}");
    }

    let client = tls_client_builder(&root)
        .resolve("h2.example.com", addr)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://h2.example.com:{}/over-h2", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backend"], "alpn-backend");
    let seen = be.last_request().unwrap();
    assert_eq!(seen.path, "/over-h2");
    assert_eq!(
        seen.version, "HTTP/1.1",
        "an HTTP port upstream stays HTTP/1.1 whatever the client spoke"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_is_reached_over_h2_for_http2_and_grpc_ports_and_h2_upgrade_policy() {
    let root = Ca::new("H2 Upstream Root");
    let cert = root.server_cert(&["*.example.com"]);
    // (request host, ServiceEntry protocol, DestinationRule h2UpgradePolicy)
    let cases = [
        ("http2.example.com", "HTTP2", None),
        ("grpc.example.com", "GRPC", None),
        ("upgrade.example.com", "HTTP", Some("UPGRADE")),
    ];
    let mut backends = Vec::new();
    let mut all =
        vec![gateway("edge", vec![https(443, &["*.example.com"], simple("h2"))]).to_value()];
    for (host, protocol, upgrade) in cases {
        let name = host.split('.').next().unwrap();
        let be = Backend::builder(name).h2c_only().start().await;
        let upstream = format!("{name}-backend.internal");
        let (se, dest) = service_entry(&upstream, &be, protocol);
        all.push(se.to_value());
        all.push(http_route(name, &[host], "edge", &dest).to_value());
        if let Some(policy) = upgrade {
            let pool = ConnectionPool::new().h2_upgrade_policy(policy);
            let dr = DestinationRule::new(name, &upstream).policy(TrafficPolicy::new().pool(pool));
            all.push(dr.to_value());
        }
        backends.push(be);
    }
    let edge = edge(credentials(&[("h2", &cert, None)]), &[443], &docs(&all)).await;
    let addr = edge.addr_of(443);

    for ((host, protocol, _), be) in cases.iter().zip(&backends) {
        for http1_client in [false, true] {
            let mut b = tls_client_builder(&root).resolve(host, addr);
            if http1_client {
                b = b.http1_only();
            }
            let resp = b
                .build()
                .unwrap()
                .post(format!("https://{host}:{}/svc.Echo/Call", addr.port()))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body("hello")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{host}: {e:?}"));
            assert_eq!(
                resp.status(),
                200,
                "{host} ({protocol}), HTTP/1.1 client: {http1_client}"
            );
            let seen = be.last_request().expect("the h2 upstream got the request");
            assert_eq!(seen.version, "HTTP/2.0", "{host} ({protocol})");
            assert_eq!(seen.path, "/svc.Echo/Call");
            assert_eq!(seen.body, "hello");
        }
    }
}
