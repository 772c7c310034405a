//! Client certificates: MUTUAL requires one from the configured CA, `subjectAltNames`,
//! `verifyCertificateSpki` and `verifyCertificateHash` narrow which ones; OPTIONAL_MUTUAL asks
//! but does not require; the upstream gets `x-forwarded-client-cert` for a verified client and
//! never the client's own.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::*;
use crate::support::client::{raw_https, raw_status, tls_connect, TlsClientOpts};

const GOOD_URI: &str = "spiffe://edge.test/ns/default/sa/good";

struct Mtls {
    edge: Harness,
    backend: Backend,
    server_root: Ca,
    /// Issued by the client CA the servers trust, with [`GOOD_URI`]: pinned by every check.
    good: CertKey,
    /// Issued by the same client CA, other SAN and key: passes MUTUAL, fails every pin.
    other: CertKey,
    /// Same names as `good`, from a CA nobody trusts.
    foreign: CertKey,
}

impl Mtls {
    async fn start() -> Mtls {
        let server_root = Ca::new("mTLS Server Root");
        let client_root = Ca::new("mTLS Client Root");
        let good = client_root.client_cert("good-client", &[GOOD_URI]);
        let other =
            client_root.client_cert("other-client", &["spiffe://edge.test/ns/default/sa/other"]);
        let foreign = Ca::new("Foreign Root").client_cert("good-client", &[GOOD_URI]);
        let server_cert = server_root.server_cert(&["*.example.com"]);
        // `mtls` holds its CA as ca.crt; `split` has it in the companion `split-cacert/`.
        let certs = credentials(&[
            ("mtls", &server_cert, Some(&client_root)),
            ("split", &server_cert, None),
        ]);
        std::fs::create_dir_all(certs.path().join("split-cacert")).unwrap();
        std::fs::write(
            certs.path().join("split-cacert/ca.crt"),
            client_root.root_pem(),
        )
        .unwrap();

        let colon_hash = good
            .sha256_hex()
            .to_ascii_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let servers = vec![
            https(443, &["mutual.example.com"], ServerTls::mutual("mtls")),
            https(
                443,
                &["san.example.com"],
                ServerTls::mutual("mtls").subject_alt_names(&[GOOD_URI]),
            ),
            https(
                443,
                &["spki.example.com"],
                ServerTls::mutual("mtls").verify_spki(&[&good.spki_sha256_b64()]),
            ),
            // Istio accepts the colon-separated form too.
            https(
                443,
                &["hash.example.com"],
                ServerTls::mutual("mtls").verify_hash(&[&colon_hash]),
            ),
            https(
                443,
                &["optional.example.com"],
                ServerTls::optional_mutual("split"),
            ),
            https(443, &["simple.example.com"], simple("mtls")),
        ];
        let backend = Backend::http("mtls-backend").await;
        let (se, dest) = service_entry("mtls-backend.internal", &backend, "HTTP");
        let edge = edge(
            certs,
            &[443],
            &[
                &gateway("edge", servers),
                &http_route("mtls", &["*.example.com"], "edge", &dest),
                &se,
            ],
        )
        .await;
        Mtls {
            edge,
            backend,
            server_root,
            good,
            other,
            foreign,
        }
    }

    /// One request to `host` over a new TLS connection, presenting `client` if given, with
    /// extra header lines.
    async fn request(
        &self,
        host: &str,
        client: Option<&CertKey>,
        extra: &str,
    ) -> Result<String, String> {
        let opts = TlsClientOpts::new(Some(host), Some(&self.server_root), client, &[]);
        let req = format!("GET /mtls HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
        raw_https(self.edge.addr_of(443), &opts, req).await
    }

    async fn accepted(&self, host: &str, client: Option<&CertKey>, what: &str) {
        match self.request(host, client, "").await {
            Ok(resp) => assert_eq!(raw_status(&resp), 200, "{host}, {what}: {resp}"),
            Err(e) => panic!("{host}, {what}: rejected: {e}"),
        }
    }

    /// The handshake with `host` presenting `client` ends in the server's `alert`. Under
    /// TLS 1.3 the server judges the client certificate after the client considers the
    /// handshake done, so the verdict is the first thing to read; nothing is written first, so
    /// the alert cannot be lost to a reset for unread request bytes.
    async fn rejected(&self, host: &str, client: Option<&CertKey>, alert: &str, what: &str) {
        let opts = TlsClientOpts::new(Some(host), Some(&self.server_root), client, &[]);
        let err = match tls_connect(self.edge.addr_of(443), &opts).await {
            Err(e) => e,
            Ok((mut s, _)) => {
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await {
                    Err(_) => panic!("{host}, {what}: accepted (no alert within 10 s)"),
                    Ok(Ok(n)) => panic!("{host}, {what}: read {n} bytes instead of an alert"),
                    Ok(Err(e)) => e.to_string(),
                }
            }
        };
        assert!(
            err.contains(&format!("alert {alert}")),
            "{host}, {what}: expected alert `{alert}`, got: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_requires_a_client_certificate_from_the_configured_ca() {
    let t = Mtls::start().await;
    t.rejected(
        "mutual.example.com",
        None,
        "certificate required",
        "no client certificate",
    )
    .await;
    t.rejected(
        "mutual.example.com",
        Some(&t.foreign),
        "unknown ca",
        "foreign CA",
    )
    .await;
    t.accepted("mutual.example.com", Some(&t.good), "good")
        .await;
    t.accepted("mutual.example.com", Some(&t.other), "other cert, same CA")
        .await;
    // SIMPLE on the same port asks for nothing.
    t.accepted("simple.example.com", None, "SIMPLE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_enforces_subject_alt_names_spki_and_hash_pins() {
    let t = Mtls::start().await;
    for host in ["san.example.com", "spki.example.com", "hash.example.com"] {
        t.accepted(host, Some(&t.good), "pinned certificate").await;
        t.rejected(
            host,
            Some(&t.other),
            "handshake failure",
            "certificate not pinned",
        )
        .await;
        t.rejected(host, None, "certificate required", "no client certificate")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mutual_accepts_no_certificate_and_a_good_one_but_not_a_foreign_one() {
    let t = Mtls::start().await;
    t.accepted("optional.example.com", None, "no client certificate")
        .await;
    t.accepted("optional.example.com", Some(&t.good), "good")
        .await;
    t.rejected(
        "optional.example.com",
        Some(&t.foreign),
        "unknown ca",
        "foreign CA",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gets_xfcc_of_the_verified_client_and_never_the_clients_own() {
    let t = Mtls::start().await;
    let forged = "x-forwarded-client-cert: By=spiffe://evil;Hash=deadbeef;Subject=\"CN=admin\"\r\n";
    let xfcc_seen = |what: &str| {
        let req = t
            .backend
            .last_request()
            .expect("a request reached the upstream");
        assert!(
            req.header_all("x-forwarded-client-cert")
                .iter()
                .all(|v| !v.contains("evil")),
            "{what}: the client's own XFCC was forwarded: {:?}",
            req.headers
        );
        req.header_all("x-forwarded-client-cert")
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    for host in ["mutual.example.com", "optional.example.com"] {
        let resp = t.request(host, Some(&t.good), forged).await.unwrap();
        assert_eq!(raw_status(&resp), 200, "{resp}");
        let xfcc = xfcc_seen(host);
        assert_eq!(xfcc.len(), 1, "{host}: one XFCC header: {xfcc:?}");
        let v = &xfcc[0];
        for part in [
            format!("Hash={}", t.good.sha256_hex()),
            "Subject=\"CN=good-client,O=Portcullis Test\"".to_string(),
            format!("URI={GOOD_URI}"),
        ] {
            assert!(
                v.split(';').any(|p| p == part),
                "{host}: XFCC {v:?} lacks {part:?}"
            );
        }
    }

    // Without a verified client certificate there is no XFCC at all.
    for (host, what) in [
        (
            "optional.example.com",
            "OPTIONAL_MUTUAL without a certificate",
        ),
        ("simple.example.com", "SIMPLE"),
    ] {
        let resp = t.request(host, None, forged).await.unwrap();
        assert_eq!(raw_status(&resp), 200, "{resp}");
        assert_eq!(xfcc_seen(what), Vec::<String>::new(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_refuses_client_certificates_the_crl_revokes() {
    let server_root = Ca::new("CRL Server Root");
    let client_root = Ca::new("CRL Client Root");
    let kept = client_root.client_cert("kept-client", &[]);
    let revoked = client_root.client_cert("revoked-client", &[]);
    let server_cert = server_root.server_cert(&["crl.example.com"]);
    // `ca.crl` beside `ca.crt` in the credential, as a Kubernetes Secret carries it.
    let certs = credentials(&[("revoking", &server_cert, Some(&client_root))]);
    std::fs::write(
        certs.path().join("revoking/ca.crl"),
        client_root.crl(&[&revoked]),
    )
    .unwrap();
    let backend = Backend::http("crl-backend").await;
    let (se, dest) = service_entry("crl-backend.internal", &backend, "HTTP");
    let edge = edge(
        certs,
        &[443],
        &[
            &gateway(
                "edge",
                vec![https(
                    443,
                    &["crl.example.com"],
                    ServerTls::mutual("revoking"),
                )],
            ),
            &http_route("crl", &["crl.example.com"], "edge", &dest),
            &se,
        ],
    )
    .await;
    let t = Mtls {
        edge,
        backend,
        server_root,
        good: kept.clone(),
        other: revoked.clone(),
        foreign: revoked.clone(),
    };
    t.accepted(
        "crl.example.com",
        Some(&kept),
        "a certificate the CRL does not list",
    )
    .await;
    t.rejected(
        "crl.example.com",
        Some(&revoked),
        "certificate revoked",
        "a revoked certificate",
    )
    .await;
}
