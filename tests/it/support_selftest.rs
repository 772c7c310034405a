//! Proves each support helper works, against the helpers themselves, and the harness and the
//! YAML builders against the real `portcullis` binary (`harness_and_yaml`).

mod harness_and_yaml;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509PurposeId, X509StoreContext, X509};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::certs::{
    hex, swap_k8s_credential, write_credential, write_credential_k8s_style,
};
use crate::support::cli::{run_check, run_routes};
use crate::support::client::{
    get_request, h2c_client, http_client, raw_exchange, raw_http, raw_https, raw_status,
    tls_client_builder, tls_client_with_identity_builder, tls_connect, tls_handshake, Resp,
    TlsClientOpts,
};
use crate::support::ws::{
    read_ws_frame, ws_connect, ws_frame, ws_text_frame, OP_BINARY, OP_TEXT, WS_ACCEPT,
};
use crate::support::*;

/// Verifies `leaf` (+ `intermediates`) against `root` for a given purpose.
fn verify(root: &X509, leaf: &X509, intermediates: &[X509], purpose: X509PurposeId) -> bool {
    let mut sb = X509StoreBuilder::new().unwrap();
    sb.add_cert(root.clone()).unwrap();
    sb.set_purpose(purpose).unwrap();
    let store = sb.build();
    let mut chain = Stack::new().unwrap();
    for c in intermediates {
        chain.push(c.clone()).unwrap();
    }
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, leaf, &chain, |c| c.verify_cert()).unwrap()
}

#[test]
fn certs_chain_sans_eku_and_fingerprints() {
    let root = Ca::new("Selftest Root");
    let inter = root.intermediate("Selftest Intermediate");
    let ck = inter.server_cert(&["a.example.com", "*.wild.example.com", "127.0.0.1"]);

    let chain = ck.chain();
    assert_eq!(chain.len(), 2, "leaf + intermediate");
    assert!(verify(
        &root.root,
        &ck.leaf,
        &chain[1..],
        X509PurposeId::SSL_SERVER
    ));
    assert!(
        !verify(&root.root, &ck.leaf, &[], X509PurposeId::SSL_SERVER),
        "needs the intermediate"
    );
    assert!(!verify(
        &Ca::new("Other").root,
        &ck.leaf,
        &chain[1..],
        X509PurposeId::SSL_SERVER
    ));
    assert!(
        !verify(&root.root, &ck.leaf, &chain[1..], X509PurposeId::SSL_CLIENT),
        "serverAuth-only EKU"
    );
    assert_eq!(
        ck.sans(),
        ["a.example.com", "*.wild.example.com", "127.0.0.1"]
    );
    assert_eq!(ck.cn().as_deref(), Some("a.example.com"));
    assert_eq!(inter.root_pem(), root.cert_pem());

    // Fingerprints in Istio's formats.
    let digest = ck.leaf.digest(MessageDigest::sha256()).unwrap();
    assert_eq!(ck.sha256_hex(), hex(&digest));
    assert_eq!(ck.sha256_hex(), ck.sha256_hex().to_lowercase());
    assert_eq!(ck.sha256_hex().len(), 64);
    let spki = ck.leaf.public_key().unwrap().public_key_to_der().unwrap();
    let b64 = ck.spki_sha256_b64();
    assert_eq!(
        openssl::base64::decode_block(&b64).unwrap(),
        openssl::sha::sha256(&spki)
    );
    assert_eq!(b64.len(), 44);

    // Client cert: clientAuth EKU and URI SAN.
    let cc = root.client_cert(
        "client-1",
        &["spiffe://cluster.local/ns/a/sa/b", "c.example.com"],
    );
    assert!(verify(&root.root, &cc.leaf, &[], X509PurposeId::SSL_CLIENT));
    assert!(!verify(
        &root.root,
        &cc.leaf,
        &[],
        X509PurposeId::SSL_SERVER
    ));
    assert_eq!(cc.cn().as_deref(), Some("client-1"));
    assert_eq!(
        cc.sans(),
        ["spiffe://cluster.local/ns/a/sa/b", "c.example.com"]
    );
    assert!(
        cc.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );

    // Options: RSA key, short validity, custom CN, expired.
    let short = root.server_cert_with(CertOpts {
        key: KeyType::Rsa,
        validity_days: 10,
        cn: Some("short".into()),
        ..CertOpts::sans(&["s.example.com"])
    });
    assert!(short.leaf.public_key().unwrap().rsa().is_ok());
    assert_eq!(short.cn().as_deref(), Some("short"));
    assert!(short.leaf.not_after() > Asn1Time::days_from_now(9).unwrap());
    assert!(short.leaf.not_after() < Asn1Time::days_from_now(11).unwrap());
    let expired = root.server_cert_with(CertOpts {
        validity_days: -1,
        ..CertOpts::sans(&["e.example.com"])
    });
    assert!(expired.leaf.not_after() < Asn1Time::days_from_now(0).unwrap());
    assert!(!verify(
        &root.root,
        &expired.leaf,
        &[],
        X509PurposeId::SSL_SERVER
    ));
}

#[test]
fn certs_writers_and_k8s_layout() {
    let root = Ca::new("Writer Root");
    let ck = root.server_cert(&["w.example.com"]);
    let dir = tempfile::tempdir().unwrap();

    let (c, k) = ck.write_files(dir.path(), "srv");
    assert_eq!(std::fs::read_to_string(c).unwrap(), ck.cert_pem);
    assert_eq!(std::fs::read_to_string(k).unwrap(), ck.key_pem);

    let plain = write_credential(dir.path(), "plain", &ck, Some(&root));
    assert_eq!(
        std::fs::read_to_string(plain.join("tls.crt")).unwrap(),
        ck.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(plain.join("ca.crt")).unwrap(),
        root.root_pem()
    );

    let kdir = write_credential_k8s_style(dir.path(), "k8s", &ck, Some(&root));
    let data = std::fs::read_link(kdir.join("..data")).unwrap();
    assert!(data.to_string_lossy().starts_with("..2"), "{data:?}");
    assert_eq!(
        std::fs::read_link(kdir.join("tls.crt")).unwrap(),
        std::path::Path::new("..data/tls.crt")
    );
    assert_eq!(
        std::fs::read_to_string(kdir.join("tls.crt")).unwrap(),
        ck.cert_pem
    );

    let ck2 = root.server_cert(&["w2.example.com"]);
    swap_k8s_credential(dir.path(), "k8s", &ck2, None);
    assert_eq!(
        std::fs::read_to_string(kdir.join("tls.crt")).unwrap(),
        ck2.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(kdir.join("tls.key")).unwrap(),
        ck2.key_pem
    );
    let data2 = std::fs::read_link(kdir.join("..data")).unwrap();
    assert_ne!(data, data2);
    assert!(!kdir.join(&data).exists(), "old timestamped dir removed");
    assert!(
        std::fs::symlink_metadata(kdir.join("ca.crt")).is_err(),
        "vanished file's symlink removed"
    );
    assert!(std::fs::symlink_metadata(kdir.join("..data_tmp")).is_err());

    // Generic (ConfigMap-like) volume.
    let cm = dir.path().join("cm");
    k8s::k8s_volume_write(&cm, &[("gw.yaml", "a: 1\n")]);
    k8s::k8s_volume_swap(&cm, &[("gw.yaml", "a: 2\n"), ("vs.yaml", "b: 1\n")]);
    assert_eq!(
        std::fs::read_to_string(cm.join("gw.yaml")).unwrap(),
        "a: 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(cm.join("vs.yaml")).unwrap(),
        "b: 1\n"
    );
    let ts_dirs = std::fs::read_dir(&cm)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("..2")
        })
        .count();
    assert_eq!(ts_dirs, 1);
}

#[test]
fn ports_are_distinct_and_bindable() {
    let ports = free_ports(8);
    let mut sorted = ports.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8);
    for p in ports {
        std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    }
}

#[test]
fn config_dir_writes() {
    let d = ConfigDir::new();
    let p = d.write("gw.yaml", "one");
    let ino1 = std::fs::metadata(&p).unwrap().ino();
    d.write("gw.yaml", "two");
    let ino2 = std::fs::metadata(&p).unwrap().ino();
    assert_ne!(ino1, ino2, "atomic write replaces the inode");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
    d.write_in_place("gw.yaml", "three");
    assert_eq!(
        std::fs::metadata(&p).unwrap().ino(),
        ino2,
        "in-place keeps the inode"
    );
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "three");
    d.write("sub/vs.yaml", "x");
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("tmp")), "{names:?}");
    d.remove("gw.yaml");
    d.remove("sub");
    d.remove("missing.yaml");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

async fn json(resp: reqwest::Response) -> Value {
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_http1_echo_counters_and_special_paths() {
    let be = Backend::http("b1").await;
    let c = http_client();
    let r = c
        .post(be.url("/hello/world?x=1&y=2"))
        .header("x-test", "a")
        .header("x-set-response-header", "x-extra: yes")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "b1");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-extra"], "yes");
    let j = json(r).await;
    assert_eq!(j["backend"], "b1");
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/hello/world?x=1&y=2");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["headers"]["x-test"][0], "a");
    assert_eq!(j["authority"], be.addr().to_string());
    assert_eq!(j["body"], "payload");
    assert_eq!(j["tls"], false);
    assert_eq!(j["client_cert_cn"], Value::Null);

    let r = c.get(be.url("/status/418")).send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(json(r).await["path"], "/status/418");
    let r = c.get(be.url("/delay/20")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b = c
        .get(be.url("/bytes/5000"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(b.len(), 5000);
    let b = c
        .get(be.url("/stream/3"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(b.len(), 3 * 1024);
    let r = c.get(be.url("/status/204")).send().await.unwrap();
    assert_eq!(r.status(), 204);

    assert_eq!(be.requests(), 6);
    // (reqwest returns connections to its pool asynchronously, so it may open extra ones.)
    let conns = be.connections();
    assert!(conns >= 1);
    let seen = be.requests_seen();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|r| r.conn >= 1 && r.conn <= conns));
    let last2 = be.last_requests(2);
    assert_eq!(last2[0].path, "/stream/3");
    assert_eq!(last2[1].path, "/status/204");
    assert_eq!(seen[0].header("X-Test"), Some("a"));
    assert_eq!(be.last_request().unwrap().method, "GET");
    be.wait_for_requests(6, Duration::from_secs(5)).await;

    // Keep-alive: two requests on one raw connection share a connection id.
    let mut s = TcpStream::connect(be.addr()).await.unwrap();
    let req = b"GET /k1 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(raw_status(&raw_exchange(&mut s, req).await), 200);
    let req = b"GET /k2 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(raw_status(&raw_exchange(&mut s, req).await), 200);
    assert_eq!(be.connections(), conns + 1);
    let last2 = be.last_requests(2);
    assert_eq!(last2[0].conn, conns + 1);
    assert_eq!(last2[1].conn, conns + 1);

    // Drop closes the port.
    let addr = be.addr();
    drop(be);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocol_modes_and_fail_first() {
    let auto = Backend::http("auto").await;
    let j = json(h2c_client().get(auto.url("/")).send().await.unwrap()).await;
    assert_eq!(j["version"], "HTTP/2.0");
    assert_eq!(
        auto.last_request().unwrap().authority.unwrap(),
        auto.addr().to_string()
    );

    let h1 = Backend::builder("h1").http1_only().start().await;
    assert!(h2c_client().get(h1.url("/")).send().await.is_err());
    assert_eq!(
        http_client()
            .get(h1.url("/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let h2 = Backend::builder("h2").h2c_only().start().await;
    assert!(http_client().get(h2.url("/")).send().await.is_err());
    let j = json(h2c_client().get(h2.url("/")).send().await.unwrap()).await;
    assert_eq!(j["version"], "HTTP/2.0");

    let flaky = Backend::builder("flaky").fail_first(2, 503).start().await;
    let c = http_client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            c.get(flaky.url("/"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 200]);

    // Rebind on a fixed address after stop.
    let addr = flaky.addr();
    flaky.stop();
    let again = Backend::builder("again").bind(addr).start().await;
    assert_eq!(again.addr(), addr);
    assert_eq!(
        // A fresh client: `c` may still pool a connection to the stopped server.
        json(http_client().get(again.url("/")).send().await.unwrap()).await["backend"],
        "again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_alpn_sni_and_handshake_probe() {
    let root = Ca::new("TLS Root");
    let inter = root.intermediate("TLS Inter");
    let ck = inter.server_cert(&["a.example.com"]);
    let be = Backend::builder("tls").tls(ck.clone()).start().await;

    // reqwest with ALPN: h2 is negotiated by default, http/1.1 when asked.
    let c = tls_client_builder(&root)
        .resolve("a.example.com", be.addr())
        .build()
        .unwrap();
    let url = format!("https://a.example.com:{}/x", be.port());
    let j = json(c.get(&url).send().await.unwrap()).await;
    assert_eq!(j["tls"], true);
    assert_eq!(j["sni"], "a.example.com");
    assert_eq!(j["alpn"], "h2");
    assert_eq!(j["version"], "HTTP/2.0");
    let c1 = tls_client_builder(&root)
        .resolve("a.example.com", be.addr())
        .http1_only()
        .build()
        .unwrap();
    let j = json(c1.get(&url).send().await.unwrap()).await;
    assert_eq!(j["alpn"], "http/1.1");
    assert_eq!(j["version"], "HTTP/1.1");
    // The server finishes its side of a TLS 1.3 handshake after the client: poll counters.
    eventually(Duration::from_secs(5), "2 handshakes", async || {
        be.tls_handshakes() == 2
    })
    .await;

    // Handshake probe.
    let info = tls_handshake(
        be.addr(),
        Some("a.example.com"),
        Some(&root),
        None,
        &["http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("a.example.com"));
    assert_eq!(info.issuer_cn.as_deref(), Some("TLS Inter"));
    assert_eq!(info.sans, ["a.example.com"]);
    assert_eq!(info.sha256, ck.sha256_hex());
    assert_eq!(info.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(info.version, "TLSv1.3");
    assert_eq!(info.peer_chain_len, 2);
    let info = tls_handshake(be.addr(), None, None, None, &[])
        .await
        .unwrap();
    assert_eq!(info.alpn, None);
    eventually(Duration::from_secs(5), "4 handshakes", async || {
        be.tls_handshakes() == 4
    })
    .await;

    // TLS 1.2 cap.
    let mut opts = TlsClientOpts::new(Some("a.example.com"), Some(&root), None, &[]);
    opts.max_version = Some(openssl::ssl::SslVersion::TLS1_2);
    let info = crate::support::client::tls_handshake_with(be.addr(), &opts)
        .await
        .unwrap();
    assert_eq!(info.version, "TLSv1.2");

    // Verification failures carry OpenSSL's text.
    let other = Ca::new("Other Root");
    let err = tls_handshake(be.addr(), Some("a.example.com"), Some(&other), None, &[])
        .await
        .unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    let err = tls_handshake(be.addr(), Some("wrong.example.com"), Some(&root), None, &[])
        .await
        .unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");

    // Strict SNI → unrecognized_name alert.
    let strict = Backend::builder("strict")
        .tls(ck.clone())
        .strict_sni(&["a.example.com"])
        .start()
        .await;
    let err = tls_handshake(strict.addr(), Some("b.example.com"), None, None, &[])
        .await
        .unwrap_err();
    assert!(err.contains("unrecognized name"), "{err}");
    assert!(
        tls_handshake(strict.addr(), Some("a.example.com"), None, None, &[])
            .await
            .is_ok()
    );
    eventually(Duration::from_secs(5), "failure counted", async || {
        strict.tls_handshake_failures() == 1
    })
    .await;

    // Raw HTTP over TLS.
    let resp = raw_https(
        be.addr(),
        &TlsClientOpts::new(Some("a.example.com"), Some(&root), None, &[]),
        "GET /raw HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(raw_status(&resp), 200);
    assert!(resp.contains("\"path\":\"/raw\""), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_mtls_records_client_identity() {
    let server_root = Ca::new("Server Root");
    let client_root = Ca::new("Client Root");
    let client_inter = client_root.intermediate("Client Inter");
    let be = Backend::builder("mtls")
        .tls(server_root.server_cert(&["m.example.com"]))
        .client_ca(client_root.clone())
        .start()
        .await;
    let url = format!("https://m.example.com:{}/", be.port());

    let id = client_inter.client_cert("client-1", &["spiffe://cluster.local/ns/a/sa/b"]);
    let c = tls_client_with_identity_builder(&server_root, &id)
        .resolve("m.example.com", be.addr())
        .build()
        .unwrap();
    let j = json(c.get(&url).send().await.unwrap()).await;
    assert_eq!(j["client_cert_cn"], "client-1");
    assert_eq!(j["client_cert_sans"][0], "spiffe://cluster.local/ns/a/sa/b");
    assert_eq!(
        be.last_request().unwrap().client_cert_cn.as_deref(),
        Some("client-1")
    );

    // No client cert → rejected.
    let anon = tls_client_builder(&server_root)
        .resolve("m.example.com", be.addr())
        .build()
        .unwrap();
    assert!(anon.get(&url).send().await.is_err());
    let opts = TlsClientOpts::new(Some("m.example.com"), Some(&server_root), None, &[]);
    let err = raw_https(be.addr(), &opts, "GET / HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .unwrap_err();
    assert!(err.contains("certificate required"), "{err}");
    // Cert from an untrusted CA → rejected.
    let rogue = Ca::new("Rogue").client_cert("rogue", &[]);
    let opts = TlsClientOpts::new(Some("m.example.com"), Some(&server_root), Some(&rogue), &[]);
    let err = raw_https(be.addr(), &opts, "GET / HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .unwrap_err();
    assert!(err.contains("unknown ca"), "{err}");
    eventually(Duration::from_secs(5), "failures counted", async || {
        be.tls_handshake_failures() >= 3
    })
    .await;
    assert_eq!(be.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_websocket_echo() {
    let be = Backend::http("ws").await;
    let (mut s, head) = ws_connect(be.addr(), "ws.example.com", "/chat?room=1").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            WS_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    s.write_all(&ws_text_frame(true, "hello")).await.unwrap();
    assert_eq!(read_ws_frame(&mut s).await, (OP_TEXT, b"hello".to_vec()));
    let big = vec![7u8; 300];
    s.write_all(&ws_frame(OP_BINARY, true, &big)).await.unwrap();
    assert_eq!(read_ws_frame(&mut s).await, (OP_BINARY, big));
    s.write_all(&ws_text_frame(false, "plain")).await.unwrap();
    assert_eq!(read_ws_frame(&mut s).await, (OP_TEXT, b"plain".to_vec()));
    let r = be.last_request().unwrap();
    assert_eq!(r.path, "/chat?room=1");
    assert_eq!(r.header("upgrade"), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_echo_and_raw_http() {
    let tcp = Backend::raw_tcp_echo().await;
    let mut s = TcpStream::connect(tcp.addr()).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(tcp.connections(), 1);

    let root = Ca::new("Echo Root");
    let ck = root.server_cert(&["echo.example.com"]);
    let tls = Backend::tls_echo(ck.clone()).await;
    let opts = TlsClientOpts::new(Some("echo.example.com"), Some(&root), None, &[]);
    let (mut s, info) = tls_connect(tls.addr(), &opts).await.unwrap();
    assert_eq!(info.sha256, ck.sha256_hex());
    s.write_all(b"over tls").await.unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"over tls");
    eventually(Duration::from_secs(5), "1 handshake", async || {
        tls.tls_handshakes() == 1
    })
    .await;

    let be = Backend::http("raw").await;
    let resp = raw_http(
        be.addr(),
        "GET /r?q=1 HTTP/1.1\r\nHost: raw.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200);
    assert!(resp.contains("\"authority\":\"raw.example.com\""), "{resp}");
    let resp = raw_http(be.addr(), "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 200);
    let resp = raw_http(be.addr(), "GET /stream/2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.ends_with("0\r\n\r\n"), "chunked body read to the end");
    let resp = raw_http(be.addr(), "NOT HTTP\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 400);
    let _: SocketAddr = be.addr();
}

// The spawner/CLI tests assert only what any `portcullis` binary does: readiness, some log
// output, SIGTERM exit 0, non-zero `check` on a missing directory.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_spawner_ready_logs_signals() {
    let cfg = ConfigDir::new();
    let mut gw = GatewayProcess::start(GatewayOpts::new(cfg.path())).await;
    assert_eq!(gw.admin_get("/healthz/ready").await.0, 200);
    assert!(gw.admin_url("/x").starts_with("http://127.0.0.1:"));
    let first = gw.wait_for_log("", Duration::from_secs(10)).await;
    assert_eq!(gw.logs()[0], first);
    let mark = gw.log_mark();
    gw.sighup();
    // Something is logged in response to SIGHUP (a reload), and the process keeps running.
    gw.wait_for_log_after(mark, "", Duration::from_secs(10))
        .await;
    assert!(!gw.has_exited());
    assert_eq!(gw.admin_get("/healthz/ready").await.0, 200);
    gw.sigterm();
    let st = gw.wait_exit(Duration::from_secs(30)).await;
    assert!(st.success(), "{st}");
    assert!(gw.pid() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "exited before becoming ready")]
async fn gateway_spawner_reports_early_exit() {
    let missing = std::env::temp_dir().join("portcullis-it-does-not-exist-xyz");
    GatewayProcess::start(GatewayOpts::new(missing)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drop_kills_child() {
    let cfg = ConfigDir::new();
    let gw = GatewayProcess::start(GatewayOpts {
        port_map: Some(gateway::port_map(&[(80, 18080), (443, 18443)])),
        extra_args: vec!["--watch".into(), "false".into()],
        env: vec![("RUST_LOG".into(), "debug".into())],
        ..GatewayOpts::new(cfg.path())
    })
    .await;
    assert_eq!(
        gateway::port_map(&[(80, 18080), (443, 18443)]),
        "80:18080,443:18443"
    );
    let admin = gw.admin_addr();
    drop(gw);
    assert!(TcpStream::connect(admin).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_check_and_routes() {
    let cfg = ConfigDir::new();
    let (code, _, err) = run_check(&cfg.path().join("nope"), Some(cfg.path())).await;
    assert!(code > 0, "check on a missing dir must fail: {code} {err}");
    let (code, out, err) = run_routes(cfg.path(), &[]).await;
    assert!(code >= 0, "not killed by a signal: {out} {err}");
}

#[test]
#[should_panic(
    expected = "the shared Istio YAML corpus is missing: expected the directory /nonexistent/shared/corpus/istio"
)]
fn a_missing_corpus_is_reported_by_path_and_what_it_is() {
    corpus_at("/nonexistent/shared/corpus/istio".into());
}

#[test]
fn raw_responses_parse_with_headers_and_dechunked_bodies() {
    let r = Resp::parse(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n\
         5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-a"), Some("1"), "first value, any case");
    assert_eq!(r.header("missing"), None);
    assert_eq!(r.body, "hello world");
    assert!(r.raw.ends_with("0\r\n\r\n"));
    let plain = Resp::parse("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n1\r\n");
    assert_eq!((plain.status, plain.body.as_str()), (404, "1\r\n"));
    assert!(Resp::try_parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n").is_none());
    assert_eq!(raw_status("garbage"), 0);
    assert_eq!(
        get_request("h.example.com", "/p?q=1", "x-b: 2\r\n", true),
        "GET /p?q=1 HTTP/1.1\r\nHost: h.example.com\r\nUser-Agent: portcullis-it\r\n\
         x-b: 2\r\nConnection: close\r\n\r\n"
    );
}
