//! Egress authorities: a port that is not a port (`host:65616`, `host:abc`) is 400, never the
//! default port; a CONNECT target must be `host:port` (RFC 9110 §9.3.6; Envoy's CONNECT
//! handling and http_parser's URL parser refuse both); the access log shows the destination
//! the gateway used.

use super::*;
use crate::egress::{connect, egress_gateway, get_absolute, service_entry, Pki, API};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_whose_port_is_not_a_port_is_400_not_the_default_port() {
    let be = Backend::http("plain").await;
    let se = service_entry("api", API, &[(80, "http", "HTTP", be.port())]);
    let eg = crate::egress::egress_with(&[&egress_gateway(), &se], &[]).await;
    // The registered host on its real port works: these refusals are about the port alone.
    let ok = eg.raw_get(API, "/ok", "").await;
    assert_eq!(ok.status, 200, "{} {}", ok.head, ok.body);
    for authority in [
        format!("{API}:65616"),
        format!("{API}:abc"),
        format!("{API}:-80"),
        format!("{API}:0"),
    ] {
        let r = eg.raw_get(&authority, "/", "").await;
        assert_eq!(r.status, 400, "Host: {authority}: {} {}", r.head, r.body);
        let r = get_absolute(&eg, &authority, "/").await;
        assert_eq!(
            r.status, 400,
            "GET http://{authority}/: {} {}",
            r.head, r.body
        );
    }
    assert_eq!(
        be.requests(),
        1,
        "only the valid request reached the backend"
    );
    let line = eg
        .gw
        .wait_for_log_all(&[" 400 ", "http.invalid_authority"], WAIT)
        .await;
    assert!(line.contains("DPE"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_without_a_valid_port_is_400_and_the_log_shows_the_port_used() {
    let pki = Pki::new(&[]);
    let tls = Backend::tls_echo(pki.server.clone()).await;
    let se = service_entry("api", API, &[(443, "tls", "TLS", tls.port())]);
    let eg = crate::egress::egress_with(&[&egress_gateway(), &se], &[]).await;
    for target in [
        API.to_string(),
        format!("{API}:65616"),
        format!("{API}:"),
        ":443".into(),
    ] {
        let (r, tunnel) = connect(&eg, &target).await;
        assert_eq!(r.status, 400, "CONNECT {target}: {} {}", r.head, r.body);
        assert!(tunnel.is_none());
    }
    let (r, _tunnel) = connect(&eg, &format!("{}:443", API.to_ascii_uppercase())).await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    drop(_tunnel);
    let line = eg.gw.wait_for_log_all(&["\"CONNECT ", " 200 "], WAIT).await;
    assert!(line.contains(&format!("\"{API}:443\"")), "{line}");
}
