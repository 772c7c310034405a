//! Ingress `Host` trust: a destination the request chooses (a wildcard ServiceEntry with
//! `resolution: NONE` connects to the host the request names, as Envoy's original-destination
//! and dynamic-forward-proxy clusters do) is never a way into loopback services or the admin
//! listener on an ingress gateway; a route that names such an address still reaches it. On any
//! gateway the admin listener is never a request-chosen destination (egress ALLOW_ANY too).

use super::*;
use crate::egress::{connect, egress_gateway, get_absolute};

/// A wildcard ServiceEntry whose destination is the request's host, on `port`.
fn request_host_entry(port: u16) -> ServiceEntry {
    ServiceEntry::new("internal")
        .hosts(&["*.internal.test"])
        .location("MESH_EXTERNAL")
        .resolution("NONE")
        .port(Port::http(port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_cannot_steer_a_request_chosen_destination_to_loopback() {
    // A service that listens on the gateway's loopback only.
    let local = Backend::http("loopback-only").await;
    let port = local.port();
    let h = IngressBuilder::new()
        .resources("se.yaml", &[&request_host_entry(port)])
        .vs(
            "to-internal",
            &["*"],
            vec![HttpRoute::new().to("*.internal.test")],
        )
        .start()
        .await;
    for host in ["127.0.0.1", "localhost", "[::1]", "127.0.0.2", "0.0.0.0"] {
        let r = h.raw_get(host, "/secret", "").await;
        assert_eq!(
            r.status, 403,
            "Host: {host} reached {}: {}",
            r.status, r.body
        );
    }
    assert_eq!(local.requests(), 0, "the loopback service was reached");
    h.gw.wait_for_log_all(&[" 403 ", "destination_not_allowed"], WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_names_a_loopback_address_still_reaches_it() {
    let local = Backend::http("loopback-only").await;
    let h = IngressBuilder::new()
        .vs(
            "named",
            &["named.example"],
            vec![HttpRoute::new().route(Destination::host("127.0.0.1").port(local.port()))],
        )
        .start()
        .await;
    let r = h.raw_get("named.example", "/ok", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(local.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_is_never_a_request_chosen_destination() {
    let eg =
        crate::egress::egress_with(&[&egress_gateway()], &["--outbound-policy", "ALLOW_ANY"]).await;
    let admin = eg.gw.admin_addr();
    for authority in [admin.to_string(), format!("localhost:{}", admin.port())] {
        let r = get_absolute(&eg, &authority, "/config_dump").await;
        assert_eq!(
            r.status, 403,
            "GET http://{authority}/: {} {}",
            r.head, r.body
        );
        let (r, tunnel) = connect(&eg, &authority).await;
        assert_eq!(r.status, 403, "CONNECT {authority}: {} {}", r.head, r.body);
        assert!(tunnel.is_none());
    }
}
