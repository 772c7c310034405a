//! Protocol versions and ciphers per server: `minProtocolVersion` / `maxProtocolVersion` (the
//! minimum defaults to TLS 1.2) and `cipherSuites` (TLS 1.2 ciphers, in the server's order of
//! preference).

use openssl::ssl::SslVersion;

use super::*;
use crate::support::client::{tls_connect, TlsClientOpts};

struct Negotiated {
    version: String,
    cipher: String,
}

/// Handshake with `host` as a client limited to `min..=max` and `ciphers` (TLS <= 1.2 list).
async fn connect(
    edge: &Harness,
    root: &Ca,
    host: &str,
    min: Option<SslVersion>,
    max: Option<SslVersion>,
    ciphers: Option<&str>,
) -> Result<Negotiated, String> {
    let opts = TlsClientOpts {
        min_version: min,
        max_version: max,
        cipher_list: ciphers.map(str::to_string),
        ..TlsClientOpts::new(Some(host), Some(root), None, &[])
    };
    let (s, info) = tls_connect(edge.addr_of(443), &opts).await?;
    Ok(Negotiated {
        version: info.version,
        cipher: s.ssl().current_cipher().unwrap().name().to_string(),
    })
}

/// A TLS 1.1-only client: OpenSSL 3 clients only offer TLS 1.1 at security level 0.
const TLS11: (Option<SslVersion>, Option<SslVersion>, Option<&str>) = (
    Some(SslVersion::TLS1_1),
    Some(SslVersion::TLS1_1),
    Some("DEFAULT:@SECLEVEL=0"),
);

fn assert_refused_by_server(r: Result<Negotiated, String>, what: &str) {
    match r {
        Ok(n) => panic!("{what}: negotiated {} {}", n.version, n.cipher),
        // The client did offer the version; the server answered with an alert.
        Err(e) => assert!(
            e.contains("alert protocol version") || e.contains("alert handshake failure"),
            "{what}: expected the server's alert, got: {e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_protocol_versions_and_cipher_suites_are_honoured() {
    let root = Ca::new("Versions Root");
    let cert = root.server_cert(&["*.example.com"]);
    let rsa = root.server_cert_with(CertOpts {
        key: KeyType::Rsa,
        ..CertOpts::sans(&["*.example.com"])
    });
    let legacy = |credential: &str| {
        simple(credential)
            .min_version("TLSV1_1")
            .cipher_suites(&["ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"])
    };
    let edge = edge(
        credentials(&[("web", &cert, None), ("web-rsa", &rsa, None)]),
        &[443],
        &[&gateway(
            "edge",
            vec![
                https(443, &["default.example.com"], simple("web")),
                https(
                    443,
                    &["tls13.example.com"],
                    simple("web").min_version("TLSV1_3"),
                ),
                https(
                    443,
                    &["tls12.example.com"],
                    simple("web").max_version("TLSV1_2"),
                ),
                https(
                    443,
                    &["ciphers.example.com"],
                    simple("web").cipher_suites(&["ECDHE-ECDSA-AES256-GCM-SHA384"]),
                ),
                https(
                    443,
                    &["order.example.com"],
                    simple("web").cipher_suites(&[
                        "ECDHE-ECDSA-AES256-GCM-SHA384",
                        "ECDHE-ECDSA-AES128-GCM-SHA256",
                    ]),
                ),
                https(443, &["legacy.example.com"], legacy("web")),
                https(443, &["legacy-rsa.example.com"], legacy("web-rsa")),
            ],
        )],
    )
    .await;
    let (e, r) = (&edge, &root);
    let tls12 = Some(SslVersion::TLS1_2);

    // Default: TLS 1.3 preferred, TLS 1.2 allowed, TLS 1.1 refused.
    let n = connect(e, r, "default.example.com", None, None, None)
        .await
        .unwrap();
    assert_eq!(n.version, "TLSv1.3");
    let n = connect(e, r, "default.example.com", None, tls12, None)
        .await
        .unwrap();
    assert_eq!(n.version, "TLSv1.2");
    let (min, max, ciphers) = TLS11;
    assert_refused_by_server(
        connect(e, r, "default.example.com", min, max, ciphers).await,
        "TLS 1.1 client, default minimum",
    );

    // minProtocolVersion TLSV1_3.
    let n = connect(e, r, "tls13.example.com", None, None, None)
        .await
        .unwrap();
    assert_eq!(n.version, "TLSv1.3");
    assert_refused_by_server(
        connect(e, r, "tls13.example.com", None, tls12, None).await,
        "TLS 1.2 client, minProtocolVersion TLSV1_3",
    );

    // maxProtocolVersion TLSV1_2.
    let n = connect(e, r, "tls12.example.com", None, None, None)
        .await
        .unwrap();
    assert_eq!(n.version, "TLSv1.2", "maxProtocolVersion TLSV1_2");

    // cipherSuites: only the listed TLS 1.2 cipher; the default server takes the other one.
    let n = connect(e, r, "ciphers.example.com", None, tls12, None)
        .await
        .unwrap();
    assert_eq!(n.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
    let aes128 = Some("ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_refused_by_server(
        connect(e, r, "ciphers.example.com", None, tls12, aes128).await,
        "client cipher not in cipherSuites",
    );
    let n = connect(e, r, "default.example.com", None, tls12, aes128)
        .await
        .unwrap();
    assert_eq!(n.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");

    // The server's order decides (as Envoy's), so cipherSuites is a preference list; a
    // client that puts ChaCha20 first (no AES hardware) still gets it.
    for (host, client, want) in [
        (
            "order.example.com",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            "default.example.com",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            "default.example.com",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        let n = connect(e, r, host, None, tls12, Some(client))
            .await
            .unwrap();
        assert_eq!(n.cipher, want, "{host}, client prefers {client}");
    }

    // minProtocolVersion TLSV1_1 with cipherSuites that support it lets TLS 1.1 in (and shows
    // the TLS 1.1 client above really offered TLS 1.1), with an ECDSA or an RSA certificate.
    for (host, cipher) in [
        ("legacy.example.com", "ECDHE-ECDSA-AES128-SHA"),
        ("legacy-rsa.example.com", "ECDHE-RSA-AES128-SHA"),
    ] {
        let n = connect(e, r, host, min, max, ciphers)
            .await
            .unwrap_or_else(|e| panic!("TLS 1.1 client, {host}: {e}"));
        assert_eq!(n.version, "TLSv1.1", "{host}");
        assert_eq!(n.cipher, cipher, "{host}");
    }
}
