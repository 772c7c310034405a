//! Istio's ports, each on its own listener: status (15021), Envoy's Prometheus (15090), the
//! agent's merged Prometheus (15020), admin (15000, localhost). Istio binds the first three on
//! every interface (`pilot/cmd/pilot-agent/status/server.go` listens on `:<port>`; the
//! bootstrap's 15021/15090 listeners use the wildcard address) and the admin on localhost
//! (`tools/packaging/common/envoy_bootstrap.json` `admin.address`).

use std::time::Duration;

use super::*;
use crate::support::cli::run_cli;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_ports_serve_readiness_envoy_stats_and_merged_stats() {
    let h = start(&[]).await;
    for _ in 0..3 {
        assert_eq!(h.who("a.example.com", "/").await, "be");
    }
    // 15021: readiness, nothing else.
    let status = h.gw.status_addr();
    assert_eq!(get(status, "/healthz/ready").await.0, 200);
    assert_eq!(get(status, "/config_dump").await.0, 404);
    assert_eq!(get(status, "/stats/prometheus").await.0, 404);

    // 15090: the proxy's stats, with Envoy's names for Envoy's counters.
    let sample = format!(
        "envoy_cluster_upstream_rq_total{{cluster_name=\"{}\"}} 3",
        cluster()
    );
    let (code, envoy) = get(h.gw.prometheus_addr(), "/stats/prometheus").await;
    assert_eq!(code, 200);
    assert!(envoy.contains(&sample), "{envoy}");
    assert!(envoy.contains("istio_requests_total{"), "{envoy}");
    assert!(envoy.contains("envoy_server_state 0"), "{envoy}");
    assert!(
        !envoy.contains("portcullis_config_generation"),
        "the agent's metrics are not Envoy's: {envoy}"
    );
    assert_eq!(get(h.gw.prometheus_addr(), "/healthz/ready").await.0, 404);

    // 15020: the merge of the proxy's stats and the agent's (configuration) metrics.
    for path in ["/stats/prometheus", "/metrics"] {
        let (code, merged) = get(h.gw.merged_prometheus_addr(), path).await;
        assert_eq!(code, 200, "{path}");
        assert!(merged.contains(&sample), "{path}: {merged}");
        assert!(
            merged.contains("portcullis_config_generation 1"),
            "{path}: {merged}"
        );
    }
    assert_eq!(
        get(h.gw.merged_prometheus_addr(), "/healthz/ready").await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_addresses_are_istio_ingressgateways() {
    let (code, out, err) = run_cli(&["run", "--help"]).await;
    assert_eq!(code, 0, "{err}");
    for default in [
        "[default: 127.0.0.1:15000]",
        "[default: 0.0.0.0:15021]",
        "[default: 0.0.0.0:15090]",
        "[default: 0.0.0.0:15020]",
    ] {
        assert!(out.contains(default), "{default} missing:\n{out}");
    }
    for flag in [
        "--status-addr",
        "--prometheus-addr",
        "--merged-prometheus-addr",
        "--admin",
    ] {
        assert!(out.contains(flag), "{flag} missing:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_cannot_be_bound_stops_start_up_naming_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut h = Harness::builder()
        .args(&["--prometheus-addr", &addr])
        .expect_exit()
        .start()
        .await;
    let st = h.gw.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(st.code(), Some(1), "{st}");
    let want = format!(
        "cannot listen on the Prometheus address {addr} (set another with --prometheus-addr)"
    );
    assert!(
        h.gw.logs_contain(&want),
        "{want}\n{}",
        h.gw.logs().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_turns_a_probe_port_off() {
    let h = Harness::builder()
        .args(&["--merged-prometheus-addr", "off"])
        .start()
        .await;
    assert!(h.gw.logs_contain("Prometheus port listening"));
    assert!(!h.gw.logs_contain("Merged port listening"));
    assert!(
        tokio::net::TcpStream::connect(h.gw.merged_prometheus_addr())
            .await
            .is_err()
    );
}
