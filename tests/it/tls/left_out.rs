//! A server whose credential is missing is left out with an error while its port serves the
//! other servers, as Envoy serves a listener while SDS has no secret for one filter chain
//! (istio/istio `pilot/pkg/networking/core/gateway.go` builds one filter chain per server;
//! Envoy fails the handshake of a chain without its secret): the left-out server's names still
//! fail the handshake rather than reaching another server's certificate, `/reload` and the
//! metric name it, and the credential appearing later brings it in.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_credential_is_missing_is_left_out_while_its_port_serves_the_others() {
    let root = Ca::new("Left Out Root");
    let every = root.server_cert(&["a.example.com"]);
    let certs = credentials(&[("every", &every, None)]);
    let gw = gateway(
        "edge",
        vec![
            https(443, &["*"], simple("every")),
            https(443, &["b.example.com"], simple("missing")),
        ],
    );
    let site = VirtualService::new("site")
        .hosts(&["*"])
        .gateways(&["edge"])
        .http(HttpRoute::new().direct_response(DirectResponse::status(200).body("served")));
    let h = edge(certs, &[443], &[&gw, &site]).await;
    let addr = h.addr_of(443);

    // The other server on the port serves.
    assert_eq!(
        served_cert(addr, Some("a.example.com")).await,
        every.sha256_hex()
    );
    // The left-out server's name fails the handshake (not the `*` server's certificate).
    let b = handshake(addr, Some("b.example.com"), None).await;
    assert!(b.is_err(), "b.example.com must not be served: {b:?}");

    let status = h.reload_status().await;
    assert_eq!(status.last_result, "partial", "{status:?}");
    let parts = &status.left_out.parts;
    assert_eq!(parts.len(), 1, "{status:?}");
    assert_eq!(
        (
            parts[0].kind.as_str(),
            parts[0].name.as_str(),
            parts[0].field.as_str(),
            parts[0].code.as_deref()
        ),
        (
            "Gateway",
            "edge",
            "spec.servers[1].tls.credentialName",
            Some("IST0161")
        ),
        "{status:?}"
    );
    assert_eq!(h.metric("portcullis_config_parts_rejected").await, 1.0);
    assert!(
        h.gw.logs_contain(
            "Error [IST0161] Gateway default/edge: spec.servers[1].tls.credentialName"
        ),
        "{:#?}",
        h.gw.logs()
    );

    // The credential appears: the server comes in.
    let b_cert = root.server_cert(&["b.example.com"]);
    crate::support::certs::write_credential(h.certs.path(), "missing", &b_cert, None);
    eventually(Duration::from_secs(5), "b.example.com served", async || {
        handshake(addr, Some("b.example.com"), None)
            .await
            .is_ok_and(|i| i.sha256 == b_cert.sha256_hex())
    })
    .await;
    let status = h.reload_status().await;
    assert!(status.left_out.parts.is_empty(), "{status:?}");
    assert_eq!(h.metric("portcullis_config_parts_rejected").await, 0.0);
}
