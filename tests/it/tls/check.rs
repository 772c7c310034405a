//! Server TLS modes a standalone gateway cannot serve (ISTIO_MUTUAL, AUTO_PASSTHROUGH) are
//! valid Istio config: `check` reports them as errors with the reason, `run` leaves that server
//! out and serves the rest of the Gateway, and `run --strict` refuses the configuration.

use std::time::Duration;

use super::*;
use crate::support::cli::run_check;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_and_auto_passthrough_servers_are_left_out_with_a_reason() {
    for (bad, reason) in [
        (
            https(443, &["a.example.com"], ServerTls::mode("ISTIO_MUTUAL")),
            "spec.servers[0].tls.mode: ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have, so this server is left out",
        ),
        (
            server(
                15443,
                "TLS",
                &["*.local"],
                Some(ServerTls::mode("AUTO_PASSTHROUGH")),
            ),
            "spec.servers[0].tls.mode: AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported, so this server is left out",
        ),
    ] {
        let gw = gateway("edge", vec![bad, Server::http(80).hosts(&["*"])]);
        let site = VirtualService::new("site")
            .hosts(&["*"])
            .gateways(&["edge"])
            .http(HttpRoute::new().direct_response(DirectResponse::status(200).body("served")));
        let yaml = render(&[&gw, &site]);
        let cfg = ConfigDir::with_files(&[("edge.yaml", &yaml)]);
        let (code, stdout, stderr) = run_check(cfg.path(), None).await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("expected {reason:?} in:\n{stdout}"));
        assert!(
            line.contains("edge.yaml:") && line.contains("Error Gateway default/edge"),
            "the error names the file, line and Gateway: {line}"
        );

        // The rest of the Gateway serves.
        let run = Harness::builder()
            .config(cfg)
            .ports(&[80, 443, 15443])
            .start()
            .await;
        let r = run.get("a.example.com", "/").await;
        assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "served".into()));
        assert!(run.gw.logs_contain(reason), "{:#?}", run.gw.logs());
        drop(run);

        // --strict: all or nothing.
        let mut strict = Harness::builder()
            .config(ConfigDir::with_files(&[("edge.yaml", &yaml)]))
            .ports(&[80, 443, 15443])
            .args(&["--strict"])
            .expect_exit()
            .start()
            .await;
        let status = strict.gw.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "run --strict must refuse this config");
        assert!(strict.gw.logs_contain(reason), "{:#?}", strict.gw.logs());
    }
}
