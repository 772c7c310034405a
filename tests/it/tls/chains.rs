//! What a terminating server presents: the whole chain (leaf and intermediate) so a client that
//! trusts only the root can verify it, from a credential or from file paths; and, with two
//! `credentialNames`, the RSA or the ECDSA certificate depending on what the client can use.

use openssl::ssl::SslVersion;

use super::*;
use crate::support::client::{tls_client_builder, tls_handshake_with, TlsClientOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_chain_is_served_from_credential_and_from_file_paths() {
    let root = Ca::new("Chain Root");
    let inter = root.intermediate("Chain Intermediate");
    let cred = inter.server_cert(&["chain.example.com"]);
    let files = inter.server_cert(&["files.example.com"]);
    let certs = credentials(&[("chain", &cred, None)]);
    let (crt, key) = files.write_files(&certs.path().join("plain-files"), "files");
    let be = Backend::http("chain-backend").await;
    let (se, dest) = service_entry("chain-backend.internal", &be, "HTTP");
    let file_tls = ServerTls::mode("SIMPLE").files(crt.to_str().unwrap(), key.to_str().unwrap());
    let edge = edge(
        certs,
        &[443],
        &[
            &gateway(
                "edge",
                vec![
                    https(443, &["chain.example.com"], simple("chain")),
                    https(443, &["files.example.com"], file_tls),
                ],
            ),
            &http_route(
                "chain",
                &["chain.example.com", "files.example.com"],
                "edge",
                &dest,
            ),
            &se,
        ],
    )
    .await;
    let addr = edge.addr_of(443);

    for (host, ck) in [("chain.example.com", &cred), ("files.example.com", &files)] {
        // The client trusts only the root: it verifies only if the intermediate is sent.
        let info = handshake(addr, Some(host), Some(&root))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(info.sha256, ck.sha256_hex(), "{host}");
        assert_eq!(info.peer_chain_len, 2, "{host}: leaf and intermediate");
        assert_eq!(info.issuer_cn.as_deref(), Some("Chain Intermediate"));

        let client = tls_client_builder(&root)
            .resolve(host, addr)
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://{host}:{}/chain", addr.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(resp.headers()["x-backend"], "chain-backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_credential_names_are_chosen_by_client_ciphers() {
    let root = Ca::new("Dual Root");
    let sans = ["dual.example.com", "dual-reversed.example.com"];
    let rsa = root.server_cert_with(CertOpts {
        key: KeyType::Rsa,
        ..CertOpts::sans(&sans)
    });
    let ecdsa = root.server_cert(&sans);
    let certs = credentials(&[("dual-rsa", &rsa, None), ("dual-ecdsa", &ecdsa, None)]);
    let dual =
        |first: &str, second: &str| ServerTls::mode("SIMPLE").credential_names(&[first, second]);
    let edge = edge(
        certs,
        &[443],
        &[&gateway(
            "edge",
            vec![
                https(443, &["dual.example.com"], dual("dual-rsa", "dual-ecdsa")),
                https(
                    443,
                    &["dual-reversed.example.com"],
                    dual("dual-ecdsa", "dual-rsa"),
                ),
            ],
        )],
    )
    .await;
    let addr = edge.addr_of(443);

    for host in sans {
        for (ciphers, want, what) in [
            ("ECDHE-ECDSA-AES128-GCM-SHA256", &ecdsa, "ECDSA-only client"),
            ("ECDHE-RSA-AES128-GCM-SHA256", &rsa, "RSA-only client"),
        ] {
            let opts = TlsClientOpts {
                max_version: Some(SslVersion::TLS1_2),
                cipher_list: Some(ciphers.into()),
                ..TlsClientOpts::new(Some(host), Some(&root), None, &[])
            };
            let info = tls_handshake_with(addr, &opts)
                .await
                .unwrap_or_else(|e| panic!("{host}, {what}: {e}"));
            assert_eq!(info.sha256, want.sha256_hex(), "{host}: {what}");
        }
    }
}
