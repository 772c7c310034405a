//! Each terminating server routes only its own hosts: on a connection that negotiated server
//! A's certificate, a request for a host of server B (same port, other certificate) is
//! answered 421 Misdirected Request, and a host no server serves 404.

use super::*;
use crate::support::client::{raw_exchange, raw_status, tls_connect, TlsClientOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_servers_host_gets_421_and_an_unserved_host_404() {
    let root = Ca::new("421 Root");
    let cert_a = root.server_cert(&["a.example.com"]);
    let cert_b = root.server_cert(&["b.example.com"]);
    let be_a = Backend::http("backend-a").await;
    let be_b = Backend::http("backend-b").await;
    let (se_a, dest_a) = service_entry("backend-a.internal", &be_a, "HTTP");
    let (se_b, dest_b) = service_entry("backend-b.internal", &be_b, "HTTP");
    let edge = edge(
        credentials(&[("cert-a", &cert_a, None), ("cert-b", &cert_b, None)]),
        &[443],
        &[
            &gateway(
                "edge",
                vec![
                    https(443, &["a.example.com"], simple("cert-a")),
                    https(443, &["b.example.com"], simple("cert-b")),
                ],
            ),
            &http_route("a", &["a.example.com"], "edge", &dest_a),
            &http_route("b", &["b.example.com"], "edge", &dest_b),
            &se_a,
            &se_b,
        ],
    )
    .await;
    let addr = edge.addr_of(443);

    for (sni, own, own_backend, other, cert) in [
        (
            "a.example.com",
            &be_a,
            "backend-a",
            "b.example.com",
            &cert_a,
        ),
        (
            "b.example.com",
            &be_b,
            "backend-b",
            "a.example.com",
            &cert_b,
        ),
    ] {
        // One connection: first its own host, then the other server's host.
        let opts = TlsClientOpts::new(Some(sni), Some(&root), None, &["http/1.1"]);
        let (mut conn, info) = tls_connect(addr, &opts).await.unwrap();
        assert_eq!(info.sha256, cert.sha256_hex(), "{sni}: its own certificate");
        let resp = raw_exchange(&mut conn, get(sni, "/own").as_bytes()).await;
        assert_eq!(
            raw_status(&resp),
            200,
            "{sni} on its own connection: {resp}"
        );
        assert_eq!(Resp::parse(&resp).header("x-backend"), Some(own_backend));

        let before = (be_a.requests(), be_b.requests());
        let resp = raw_exchange(&mut conn, get(other, "/other").as_bytes()).await;
        assert_eq!(
            raw_status(&resp),
            421,
            "{other} on a connection to {sni}: {resp}"
        );
        assert_eq!(
            (be_a.requests(), be_b.requests()),
            before,
            "a misdirected request reaches no upstream"
        );
        assert_eq!(own.last_request().unwrap().path, "/own");

        // A host no server on the port serves.
        let (mut conn, _) = tls_connect(addr, &opts).await.unwrap();
        let resp = raw_exchange(&mut conn, get("nowhere.example.org", "/").as_bytes()).await;
        assert_eq!(raw_status(&resp), 404, "unserved host on {sni}: {resp}");
    }
}
