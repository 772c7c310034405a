//! Server TLS modes a standalone gateway cannot serve are refused by `check` (and by `run`)
//! with the reason, not silently skipped.

use std::time::Duration;

use super::*;
use crate::support::cli::run_check;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_reject_istio_mutual_and_auto_passthrough_with_a_reason() {
    for (server, reason) in [
        (
            https(443, &["a.example.com"], ServerTls::mode("ISTIO_MUTUAL")),
            "spec.servers[0].tls.mode: ISTIO_MUTUAL needs Istio's mesh certificates, which a standalone gateway does not have",
        ),
        (
            server(
                15443,
                "TLS",
                &["*.local"],
                Some(ServerTls::mode("AUTO_PASSTHROUGH")),
            ),
            "spec.servers[0].tls.mode: AUTO_PASSTHROUGH routes by Istio's internal SNI scheme for multi-network meshes and is not supported",
        ),
    ] {
        let cfg = ConfigDir::new();
        cfg.write("edge.yaml", &gateway("edge", vec![server]).yaml());
        let (code, stdout, stderr) = run_check(cfg.path(), None).await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("expected {reason:?} in:\n{stdout}"));
        assert!(
            line.contains("edge.yaml:") && line.contains("Gateway default/edge"),
            "the error names the file, line and Gateway: {line}"
        );
        assert!(!line.contains("warning"), "{line}");

        let mut run = Harness::builder()
            .config(cfg)
            .ports(&[443, 15443])
            .expect_exit()
            .start()
            .await;
        let status = run.gw.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "run must refuse this config");
        assert!(run.gw.logs_contain(reason), "{:#?}", run.gw.logs());
    }
}
