//! The three ways a client reaches an external host through one egress HTTP port: by Host
//! header, as a forward proxy with an absolute-form URI, and by CONNECT tunnel.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_absolute_form_and_connect_share_one_egress_port() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    // Port 80 (HTTP) is originated to TLS; port 443 (TLS) is for CONNECT tunnels. Both reach
    // the same HTTPS server.
    // HTTP/1.0 is refused (426) unless accepted, as Istio's PILOT_HTTP10; this client needs it.
    let eg = egress_with(
        &[
            &egress_gateway(),
            &service_entry(
                "api",
                API,
                &[
                    (80, "http", "HTTP", upstream.port()),
                    (443, "tls", "TLS", upstream.port()),
                ],
            ),
            &destination_rule(
                "api",
                API,
                TrafficPolicy::new().port_level(80, originate(&pki)),
            ),
        ],
        &["--accept-http10", "true"],
    )
    .await;

    // 1. Host-addressed (DNS points the name at the gateway).
    let r = eg.raw_get(API, "/by-host?q=1", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/by-host?q=1");
    assert_eq!(seen.authority.as_deref(), Some(API));
    assert!(seen.tls);

    // 2. Forward proxy, plain HTTP: absolute-form in, origin-form out.
    let r = get_absolute(&eg, API, "/x").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/x", "forwarded in origin-form");
    assert_eq!(seen.authority.as_deref(), Some(API));
    assert_eq!(seen.method, "GET");
    assert!(seen.tls, "originated like the host-addressed request");
    log_line(&eg, &["\"GET /x HTTP/1.1\" 200 ", "\"api.example.test\""]).await;
    // An HTTP/1.0 proxy client may send no Host at all: the target names the host.
    let r = eg
        .raw(format!("GET http://{API}/http10 HTTP/1.0\r\n\r\n"))
        .await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/http10");
    assert_eq!(seen.authority.as_deref(), Some(API));

    // 3. CONNECT to a registered TLS port: an opaque tunnel carrying the client's own TLS.
    let before = upstream.requests();
    let (resp, tunnel) = connect(&eg, &format!("{API}:443")).await;
    assert_eq!(resp.status, 200, "{} {}", resp.head, resp.body);
    let mut tls = tls_over(tunnel.unwrap(), API, &pki.ca)
        .await
        .expect("TLS handshake with the upstream through the tunnel");
    let r = https_get_over(&mut tls, API, "/tunnelled").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(r.json()["path"], "/tunnelled");
    assert_eq!(r.json()["sni"], API);
    assert_eq!(upstream.requests(), before + 1);
    let seen = upstream.last_request().unwrap();
    // The gateway never saw the HTTP inside: it added no forwarding headers.
    assert_eq!(seen.header("x-forwarded-for"), None);
    assert_eq!(seen.header("x-request-id"), None);
    drop(tls);
    let line = log_line(&eg, &["\"CONNECT api.example.test:443", " 200 "]).await;
    assert!(line.contains("outbound|443||api.example.test"), "{line}");

    // Host names are case-insensitive: a client that keeps the user's spelling in both the
    // CONNECT line and the SNI is tunnelled too.
    let (resp, tunnel) = connect(&eg, "Api.Example.TEST:443").await;
    assert_eq!(resp.status, 200, "{} {}", resp.head, resp.body);
    let mut tls = tls_over(tunnel.unwrap(), "Api.Example.TEST", &pki.ca)
        .await
        .expect("TLS through a tunnel opened with a mixed-case host");
    let r = https_get_over(&mut tls, "Api.Example.TEST", "/mixed-case").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_requires_the_client_hello_to_name_the_connect_host() {
    // The upstream would happily serve the other name: only the gateway's check stops it.
    let pki = Pki::new(&["other.example.test"]);
    let upstream = https_upstream("api", &pki).await;
    let docs: [&dyn Resource; 2] = [
        &egress_gateway(),
        &service_entry("api", API, &[(443, "tls", "TLS", upstream.port())]),
    ];
    let eg = egress_with(&docs, &[]).await;

    // CONNECT names the registered host, the ClientHello another one (a fronted destination).
    let (resp, tunnel) = connect(&eg, &format!("{API}:443")).await;
    assert_eq!(resp.status, 200, "{} {}", resp.head, resp.body);
    let err = tls_over(tunnel.unwrap(), "other.example.test", &pki.ca)
        .await
        .expect_err("the tunnel is closed on an SNI that is not the CONNECT host");
    eprintln!("handshake through the tunnel failed as expected: {err}");
    let line = log_line(
        &eg,
        &[
            "\"CONNECT api.example.test:443 ",
            "sni_mismatch:other.example.test",
        ],
    )
    .await;
    assert!(line.contains(" UAEX "), "{line}");
    // The upstream connection is opened before the 200 (so an unreachable upstream is a 503),
    // but the ClientHello naming another host is never forwarded on it.
    assert_eq!(
        upstream.tls_handshakes(),
        0,
        "no handshake with the upstream"
    );
    assert_eq!(upstream.requests(), 0);

    // With the check off, the same tunnel carries the other name.
    let off = egress_with(&docs, &["--connect-sni-check", "false"]).await;
    let (resp, tunnel) = connect(&off, &format!("{API}:443")).await;
    assert_eq!(resp.status, 200, "{} {}", resp.head, resp.body);
    let mut tls = tls_over(tunnel.unwrap(), "other.example.test", &pki.ca)
        .await
        .expect("no SNI check: the handshake goes through");
    let r = https_get_over(&mut tls, "other.example.test", "/fronted").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(
        upstream.last_request().unwrap().sni.as_deref(),
        Some("other.example.test")
    );
}
