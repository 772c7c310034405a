//! REGISTRY_ONLY: hosts (and ports) no ServiceEntry lists are refused before anything is
//! opened upstream, visibly (status, body, access log, metrics); ALLOW_ANY lets them pass.

use super::*;

/// `api.example.test` registered on 80 (HTTP) and 443 (TLS), both reaching `upstream`.
fn registry(upstream: &Backend) -> ServiceEntry {
    service_entry(
        "api",
        API,
        &[
            (80, "http", "HTTP", upstream.port()),
            (443, "tls", "TLS", upstream.port()),
        ],
    )
}

fn assert_names_host_not_in_registry(r: &Resp, host: &str) {
    assert!(r.body.contains(host), "body names {host}: {}", r.body);
    assert!(
        r.body.contains("not in the registry"),
        "body says why: {}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_hosts_are_refused_in_every_client_mode() {
    let pki = Pki::new(&["localhost"]);
    let upstream = https_upstream("api", &pki).await;
    // What the refused destination would reach if anything were opened: `localhost:<port>`.
    let elsewhere = Backend::tls_echo(pki.server.clone()).await;
    let elsewhere_plain = Backend::http("elsewhere").await;
    let eg = egress(&[&registry(&upstream)]).await;

    // Forward proxy (absolute-form): 403.
    let target = format!("localhost:{}", elsewhere_plain.port());
    let r = get_absolute(&eg, &target, "/leak").await;
    assert_eq!(r.status, 403, "{} {}", r.head, r.body);
    assert_names_host_not_in_registry(&r, "localhost");
    let line = log_line(&eg, &["\"GET /leak ", " 403 "]).await;
    assert!(line.contains(" NR "), "{line}");
    assert!(line.contains("BlackHoleCluster"), "{line}");
    assert!(line.contains(&format!("\"{target}\"")), "{line}");

    // Host-addressed: 502 (Istio's block_all).
    let r = eg.raw_get("blocked.example.test", "/leak2", "").await;
    assert_eq!(r.status, 502, "{} {}", r.head, r.body);
    assert_names_host_not_in_registry(&r, "blocked.example.test");
    let line = log_line(&eg, &["\"GET /leak2 ", " 502 "]).await;
    assert!(line.contains(" NR "), "{line}");
    assert!(line.contains("BlackHoleCluster"), "{line}");
    assert!(line.contains("\"blocked.example.test\""), "{line}");

    // CONNECT: 403 before any upstream connection.
    let target = format!("localhost:{}", elsewhere.port());
    let (r, tunnel) = connect(&eg, &target).await;
    assert_eq!(r.status, 403, "{} {}", r.head, r.body);
    assert!(tunnel.is_none());
    assert_names_host_not_in_registry(&r, "localhost");
    let line = log_line(&eg, &[&format!("\"CONNECT {target} "), " 403 "]).await;
    assert!(line.contains(" NR "), "{line}");
    assert!(line.contains("BlackHoleCluster"), "{line}");

    assert_eq!(
        elsewhere.connections(),
        0,
        "nothing opened towards a refused CONNECT"
    );
    assert_eq!(elsewhere_plain.connections(), 0);
    assert_eq!(upstream.connections(), 0);

    // Every refusal is counted, by client mode.
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"forward_proxy\"}")
            .await,
        1.0
    );
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"host\"}")
            .await,
        1.0
    );
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"connect\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_hosts_on_unregistered_ports_are_refused() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let eg = egress(&[&registry(&upstream)]).await;

    // Plain HTTP to a port the ServiceEntry does not list.
    let r = get_absolute(&eg, &format!("{API}:8080"), "/p").await;
    assert_eq!(r.status, 403, "{} {}", r.head, r.body);
    assert!(r.body.contains("api.example.test:8080"), "{}", r.body);
    assert!(r.body.contains("not port 8080"), "{}", r.body);
    let r = eg.raw_get(&format!("{API}:8080"), "/p", "").await;
    assert_eq!(r.status, 502, "{} {}", r.head, r.body);
    assert!(r.body.contains("not port 8080"), "{}", r.body);

    // CONNECT to a port not listed at all, and to a listed port that is not TLS/HTTPS (the
    // HTTP port would reach the upstream, so a tunnel there would bypass origination).
    for target in [format!("{API}:8443"), format!("{API}:80")] {
        let (r, tunnel) = connect(&eg, &target).await;
        assert_eq!(r.status, 403, "CONNECT {target}: {} {}", r.head, r.body);
        assert!(tunnel.is_none());
        assert!(r.body.contains(&target), "{}", r.body);
        let line = log_line(&eg, &[&format!("\"CONNECT {target} "), " 403 "]).await;
        assert!(line.contains("BlackHoleCluster"), "{line}");
    }
    assert_eq!(upstream.connections(), 0, "nothing was opened upstream");
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"connect\"}")
            .await,
        2.0
    );
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"forward_proxy\"}")
            .await,
        1.0
    );
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"host\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_any_lets_unregistered_hosts_through() {
    let pki = Pki::new(&["localhost"]);
    let plain = Backend::http("anywhere").await;
    let tls_echo = Backend::tls_echo(pki.server.clone()).await;
    let eg = egress_with(&[&egress_gateway()], &["--outbound-policy", "ALLOW_ANY"]).await;

    let target = format!("localhost:{}", plain.port());
    let r = get_absolute(&eg, &target, "/any").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(plain.last_request().unwrap().path, "/any");
    assert_eq!(
        plain.last_request().unwrap().authority.as_deref(),
        Some(target.as_str())
    );
    let line = log_line(&eg, &["\"GET /any ", " 200 "]).await;
    assert!(line.contains("PassthroughCluster"), "{line}");

    let r = eg.raw_get(&target, "/any-host", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(plain.last_request().unwrap().path, "/any-host");

    let (r, tunnel) = connect(&eg, &format!("localhost:{}", tls_echo.port())).await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let mut tls = tls_over(tunnel.unwrap(), "localhost", &pki.ca)
        .await
        .expect("TLS through the ALLOW_ANY tunnel");
    tls.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    tokio::time::timeout(WAIT, tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
    assert_eq!(
        eg.metric("portcullis_egress_denied_total{mode=\"connect\"}")
            .await,
        0.0
    );
}
