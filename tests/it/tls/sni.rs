//! One port, several terminating servers: the certificate is chosen by SNI (exact name, then
//! the longest wildcard, then `*`, which also serves clients without SNI); an SNI no server
//! serves fails the handshake with `unrecognized_name` and is logged once.

use std::time::Duration;

use super::*;

struct SniCerts {
    root: Ca,
    a: CertKey,
    b: CertKey,
    wild: CertKey,
    any: CertKey,
}

/// Servers on 443 for `*.example.com`, `a.example.com`, `b.example.com` (and `*` when
/// `catch_all`), each with its own certificate. The wildcard comes first so an exact match
/// cannot win by order. `split` puts them in two Gateways.
async fn start(split: bool, catch_all: bool) -> (Harness, SniCerts) {
    let root = Ca::new("SNI Root");
    let c = SniCerts {
        a: root.server_cert(&["a.example.com"]),
        b: root.server_cert(&["b.example.com"]),
        wild: root.server_cert(&["*.example.com"]),
        any: root.server_cert(&["default.invalid"]),
        root,
    };
    let certs = credentials(&[
        ("cert-a", &c.a, None),
        ("cert-b", &c.b, None),
        ("cert-wild", &c.wild, None),
        ("cert-any", &c.any, None),
    ]);
    let wild = https(443, &["*.example.com"], simple("cert-wild"));
    let a = https(443, &["a.example.com"], simple("cert-a"));
    let b = https(443, &["b.example.com"], simple("cert-b"));
    let any = catch_all.then(|| https(443, &["*"], simple("cert-any")));
    let gateways = if split {
        let mut second = vec![a, b];
        second.extend(any);
        vec![gateway("first", vec![wild]), gateway("second", second)]
    } else {
        let mut servers = vec![wild, a, b];
        servers.extend(any);
        vec![gateway("edge", servers)]
    };
    (edge(certs, &[443], &docs(&gateways)).await, c)
}

/// Exact names beat the wildcard, and the wildcard covers the other names under it.
async fn assert_exact_and_wildcard(edge: &Harness, c: &SniCerts) {
    let addr = edge.addr_of(443);
    for (sni, want, what) in [
        ("a.example.com", &c.a, "exact a"),
        ("b.example.com", &c.b, "exact b"),
        ("c.example.com", &c.wild, "wildcard"),
        (
            "A.Example.COM",
            &c.a,
            "exact a, SNI compared case-insensitively",
        ),
    ] {
        assert_eq!(
            served_cert(addr, Some(sni)).await,
            want.sha256_hex(),
            "{what}: SNI {sni}"
        );
    }
    // The chosen certificates verify for their names against the root.
    for sni in ["a.example.com", "c.example.com"] {
        handshake(addr, Some(sni), Some(&c.root))
            .await
            .unwrap_or_else(|e| panic!("verified handshake for {sni}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_exact_beats_wildcard_and_star_serves_no_sni_one_gateway() {
    let (edge, c) = start(false, true).await;
    assert_exact_and_wildcard(&edge, &c).await;
    let addr = edge.addr_of(443);
    assert_eq!(
        served_cert(addr, None).await,
        c.any.sha256_hex(),
        "a client without SNI gets the `*` server's certificate"
    );
    assert_eq!(
        served_cert(addr, Some("other.org")).await,
        c.any.sha256_hex(),
        "a name only `*` covers gets the `*` server's certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_two_gateways_select_by_sni_and_unknown_sni_is_refused_and_logged_once() {
    let (edge, c) = start(true, false).await;
    assert_exact_and_wildcard(&edge, &c).await;
    let addr = edge.addr_of(443);

    for _ in 0..3 {
        let err = handshake(addr, Some("unknown.other.org"), None)
            .await
            .expect_err("no server serves unknown.other.org and there is no `*` server");
        assert!(err.contains("unrecognized name"), "{err}");
    }
    let err = handshake(addr, None, None)
        .await
        .expect_err("no SNI and no `*` server");
    assert!(err.contains("unrecognized name"), "{err}");

    // Another unknown name, logged after the three above: once it shows, so would they.
    let _ = handshake(addr, Some("second.other.org"), None).await;
    edge.gw
        .wait_for_log("sni=second.other.org", Duration::from_secs(5))
        .await;
    let lines: Vec<String> = edge
        .gw
        .logs()
        .into_iter()
        .filter(|l| l.contains("sni=unknown.other.org"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once per name: {lines:#?}");
    assert!(lines[0].contains("unrecognized_name"), "{}", lines[0]);
}
