//! TLS origination: plain HTTP in, HTTPS out over pooled connections; SIMPLE and MUTUAL,
//! the DestinationRule's SNI, and refusal of upstream certificates that do not verify.

use super::*;

const CLUSTER: &str = "outbound|80||api.example.test";

/// The upstream as the external service: port 80 (HTTP) of `api.example.test` is the TLS
/// backend's port, and the DestinationRule originates TLS trusting the test CA.
async fn originating_egress(pki: &Pki, upstream: &Backend) -> Harness {
    egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &destination_rule("api", API, originate(pki)),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_reuses_pooled_connections_across_new_client_connections() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let eg = originating_egress(&pki, &upstream).await;

    const N: usize = 200;
    for i in 0..N {
        // A fresh client connection per request, closed after it (`Connection: close`).
        let r = eg.raw_get(API, &format!("/r/{i}"), "").await;
        assert_eq!(r.status, 200, "request {i}: {} {}", r.head, r.body);
        let echo = r.json();
        assert_eq!(echo["path"], format!("/r/{i}"));
        assert_eq!(echo["tls"], true, "the gateway originated TLS");
        assert_eq!(echo["sni"], API);
    }
    upstream.wait_for_requests(N as u64, WAIT).await;
    assert_eq!(upstream.requests(), N as u64);
    // The backend's own view: the TLS connections were reused, not made per request.
    let handshakes = upstream.tls_handshakes();
    eprintln!(
        "egress pooling: {N} requests on new client connections -> {handshakes} upstream TLS handshakes, {} upstream connections",
        upstream.connections()
    );
    assert!(
        (1..=5).contains(&handshakes),
        "{handshakes} upstream TLS handshakes for {N} requests: connections are not reused"
    );
    assert!(upstream.requests_seen().iter().all(|r| r.tls));

    // The gateway's own counters agree.
    let s = eg.cluster_stats(CLUSTER).await;
    assert!(s.requests >= N as u64, "{s:?}");
    assert!((1..=5).contains(&s.tls_handshakes), "{s:?}");
    assert!(s.reused_requests >= (N as u64) - 5, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_origination_presents_the_client_certificate_and_the_dr_sni() {
    let pki = Pki::new(&["sni.example.test"]);
    let client_ca = Ca::new("Egress Client CA");
    let (cert, key) = pki.client_cert_files(&client_ca, "egress-client");
    let upstream = Backend::builder("mtls")
        .tls(pki.server.clone())
        .client_ca(client_ca.clone())
        .start()
        .await;
    let tls = ClientTls::mutual(&cert, &key, &pki.ca_path()).sni("sni.example.test");
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &destination_rule("api", API, TrafficPolicy::new().tls(tls)),
    ])
    .await;

    let r = eg.raw_get(API, "/mtls", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let seen = upstream.last_request().unwrap();
    assert!(seen.tls);
    assert_eq!(seen.client_cert_cn.as_deref(), Some("egress-client"));
    assert_eq!(
        seen.sni.as_deref(),
        Some("sni.example.test"),
        "the DR's sni is what the upstream sees"
    );
    assert_eq!(seen.authority.as_deref(), Some(API), "Host is not the SNI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_misnamed_upstream_certificates_fail_with_503_never_plaintext() {
    let pki = Pki::new(&[]);
    // Signed by a CA the DestinationRule does not trust.
    let rogue_ca = Ca::new("Rogue CA");
    let rogue = Backend::builder("rogue")
        .tls(rogue_ca.server_cert(&["rogue.example.test"]))
        .start()
        .await;
    // Trusted CA, but the certificate names another host.
    let misnamed = Backend::builder("misnamed")
        .tls(pki.ca.server_cert(&["other.example.test"]))
        .start()
        .await;
    let eg = egress(&[
        &service_entry(
            "rogue",
            "rogue.example.test",
            &[(80, "http", "HTTP", rogue.port())],
        ),
        &destination_rule("rogue", "rogue.example.test", originate(&pki)),
        &service_entry(
            "misnamed",
            "misnamed.example.test",
            &[(80, "http", "HTTP", misnamed.port())],
        ),
        &destination_rule("misnamed", "misnamed.example.test", originate(&pki)),
    ])
    .await;

    for (host, backend) in [
        ("rogue.example.test", &rogue),
        ("misnamed.example.test", &misnamed),
    ] {
        let r = eg.raw_get(host, "/secret", "").await;
        assert_eq!(r.status, 503, "{host}: {} {}", r.head, r.body);
        assert!(r.body.contains("connection failure"), "{host}: {}", r.body);
        let line = log_line(&eg, &["\"GET /secret", host, " 503 "]).await;
        assert!(line.contains(" UF "), "{line}");
        assert!(line.contains(&format!("outbound|80||{host}")), "{line}");
        assert!(
            line.to_ascii_lowercase().contains("certificate")
                || line.to_ascii_lowercase().contains("verify"),
            "the reason names the certificate problem: {line}"
        );
        // No request ever reached the upstream: no plaintext fallback.
        assert_eq!(backend.requests(), 0, "{host}");
        assert!(backend.tls_handshakes() == 0, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_not_a_503() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let addr = upstream.addr();
    let eg = originating_egress(&pki, &upstream).await;

    let r = eg.raw_get(API, "/before", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    // The external service restarts (or drops idle keep-alives): every open connection closes.
    drop(upstream);
    let upstream = Backend::builder("api")
        .tls(pki.server.clone())
        .bind(addr)
        .start()
        .await;
    for i in 0..3 {
        let r = eg.raw_get(API, &format!("/after/{i}"), "").await;
        assert_eq!(
            r.status, 200,
            "request {i} after the restart: {} {}",
            r.head, r.body
        );
    }
    assert_eq!(upstream.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_idle_timeout_closes_idle_pooled_connections() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &destination_rule(
            "api",
            API,
            originate(&pki).pool(ConnectionPool::new().idle_timeout("1s")),
        ),
    ])
    .await;

    let r = eg.raw_get(API, "/first", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let stats = async || eg.cluster_stats(CLUSTER).await;
    assert_eq!(stats().await.connections_opened, 1);
    // The pooled connection is closed once it has been idle for the DR's idleTimeout...
    eventually(
        Duration::from_secs(10),
        "idle pooled connection closed",
        async || stats().await.connections_active == 0,
    )
    .await;
    // ...so the next request makes a new one.
    let r = eg.raw_get(API, "/second", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(stats().await.connections_opened, 2);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rule_subject_alt_names_must_be_in_the_upstream_certificate() {
    // The certificate names api.example.test (the SNI) but not the pinned name: Istio refuses it.
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let pinned = |san: &str| TrafficPolicy::new().tls(simple_tls(&pki).subject_alt_names(&[san]));
    let eg = egress(&[
        &service_entry("api", API, &[(80, "http", "HTTP", upstream.port())]),
        &destination_rule("api", API, pinned("pinned.example.test")),
    ])
    .await;
    let r = eg.raw_get(API, "/pinned", "").await;
    assert_eq!(r.status, 503, "{} {}", r.head, r.body);
    let line = log_line(&eg, &["\"GET /pinned", " 503 "]).await;
    assert!(line.contains(" UF "), "{line}");
    assert!(
        line.contains("include none of subjectAltNames [pinned.example.test]"),
        "{line}"
    );
    assert_eq!(
        upstream.requests(),
        0,
        "nothing is sent to an unverified upstream"
    );

    // A SAN the certificate does carry is accepted, even when it is not the SNI.
    let upstream = Backend::builder("api2")
        .tls(
            pki.ca
                .server_cert(&["api2.example.test", "pinned.example.test"]),
        )
        .start()
        .await;
    let eg = egress(&[
        &service_entry(
            "api2",
            "api2.example.test",
            &[(80, "http", "HTTP", upstream.port())],
        ),
        &destination_rule("api2", "api2.example.test", pinned("pinned.example.test")),
    ])
    .await;
    let r = eg.raw_get("api2.example.test", "/pinned", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
}
