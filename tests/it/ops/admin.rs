//! Envoy's admin paths on `--admin` (Envoy `source/server/admin/admin.cc` and the handlers
//! beside it): exact paths, mutating ones POST-only, Envoy's text and JSON forms.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::support::certs::write_credential;

// Envoy stats_render.cc: `name: value`; names as Istio's bootstrap tags them
// (`cluster.<alt_stat_name>.` with Istio's `;` delimiter, `listener.<ip>_<port>.`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_in_envoys_text_json_and_prometheus_forms_with_filter_and_usedonly() {
    let h = start(&[]).await;
    for _ in 0..3 {
        assert_eq!(h.who("a.example.com", "/").await, "be");
    }
    let c = cluster();
    let (code, text) = h.gw.admin_get("/stats").await;
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!("cluster.{c};.upstream_rq_total: 3\n")),
        "{text}"
    );
    assert!(text.contains("server.state: 0\n"), "{text}");
    assert!(text.contains("server.live: 1\n"), "{text}");
    let listener = format!("listener.127.0.0.1_{}.downstream_cx_total: ", h.port());
    assert!(text.contains(&listener), "{text}");
    assert!(
        text.contains("reporter=.=source;.;request_protocol=.=http;.;"),
        "Istio's metrics in Envoy's tag form: {text}"
    );

    // istio-agent's own query (pkg/envoy/agent.go activeProxyConnections).
    let (_, active) =
        h.gw.admin_get("/stats?usedonly&filter=downstream_cx_active$")
            .await;
    assert!(!active.is_empty());
    for line in active.lines() {
        assert!(line.contains("downstream_cx_active: "), "{active}");
    }
    let (_, used) =
        h.gw.admin_get("/stats?usedonly&filter=%5Ecluster%5C.")
            .await;
    assert!(used.contains("upstream_rq_total: 3"), "{used}");
    assert!(
        !used.contains("upstream_cx_connect_fail"),
        "zero counters are unused: {used}"
    );

    let json = h
        .admin_json("/stats?format=json&filter=upstream_rq_total")
        .await;
    let stats = json["stats"].as_array().expect("stats array");
    assert!(
        stats
            .iter()
            .any(|s| s["name"] == format!("cluster.{c};.upstream_rq_total") && s["value"] == 3.0),
        "{json}"
    );
    let (_, prom) = h.gw.admin_get("/stats?format=prometheus").await;
    assert!(
        prom.contains(&format!(
            "envoy_cluster_upstream_rq_total{{cluster_name=\"{c}\"}} 3"
        )),
        "{prom}"
    );
    let (_, prom) = h.gw.admin_get("/stats/prometheus").await;
    assert!(
        prom.contains("# TYPE envoy_cluster_upstream_rq_total counter"),
        "{prom}"
    );
    assert_eq!(h.gw.admin_get("/stats?filter=(").await.0, 400);
}

// Envoy clusters_renderer.cc: `cluster::field::value`, per host `cluster::ip:port::field::value`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_listeners_and_server_info_as_envoy_prints_them() {
    let h = start(&[]).await;
    let c = cluster();
    let host = h.backend("be").addr();
    let (code, text) = h.gw.admin_get("/clusters").await;
    assert_eq!(code, 200);
    for line in [
        format!("{c}::observability_name::{c}"),
        format!("{c}::default_priority::max_connections::4294967295"),
        format!("{c}::high_priority::max_retries::3"),
        format!("{c}::added_via_api::true"),
        format!("{c}::{host}::health_flags::healthy"),
        format!("{c}::{host}::weight::1"),
        format!("{c}::{host}::rq_active::0"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let json = h.admin_json("/clusters?format=json").await;
    let status = json["cluster_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == c.as_str())
        .unwrap_or_else(|| panic!("{c} missing: {json}"));
    assert_eq!(
        status["host_statuses"][0]["address"]["socket_address"]["port_value"],
        host.port()
    );

    let (_, listeners) = h.gw.admin_get("/listeners").await;
    assert_eq!(
        listeners,
        format!("127.0.0.1_{p}::127.0.0.1:{p}\n", p = h.port())
    );
    let json = h.admin_json("/listeners?format=json").await;
    assert_eq!(
        json["listener_statuses"][0]["local_address"]["socket_address"]["port_value"],
        h.port()
    );

    let info = h.admin_json("/server_info").await;
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["drain_strategy"], "Immediate");
    assert_eq!(info["command_line_options"]["drain_time"], "0s");
    assert!(info["version"].as_str().unwrap().starts_with("portcullis/"));
    let (code, body) = h.gw.admin_get("/ready").await;
    assert_eq!((code, body.as_str()), (200, "LIVE\n"));
}

// Envoy admin.cc makeRequest: a handler that mutates state answers only POST; an unknown
// path is 404 with the list of commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_paths_answer_only_post_and_unknown_paths_list_the_commands() {
    let h = start(&[]).await;
    for path in [
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/drain_listeners?graceful",
        "/quitquitquit",
        "/logging?level=debug",
    ] {
        let (code, body) = h.gw.admin_get(path).await;
        assert_eq!(
            (code, body.as_str()),
            (405, "Method GET not allowed, POST required."),
            "{path}"
        );
    }
    assert_eq!(h.gw.admin_get("/ready").await.0, 200, "nothing was changed");
    let (code, body) = h.gw.admin_get("/nope").await;
    assert_eq!(code, 404);
    assert!(
        body.starts_with("invalid path. admin commands are:\n"),
        "{body}"
    );
    let commands: BTreeSet<&str> = body
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split([':', ' ']).next())
        .collect();
    for p in [
        "/certs",
        "/clusters",
        "/config_dump",
        "/drain_listeners",
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/listeners",
        "/logging",
        "/quitquitquit",
        "/ready",
        "/server_info",
        "/stats",
        "/stats/prometheus",
        "/reload",
    ] {
        assert!(commands.contains(p), "{p} missing: {body}");
    }
    // Portcullis' own content stays.
    let dump = h.config_dump().await;
    assert!(dump["clusters"].get(cluster()).is_some(), "{dump}");
    assert_eq!(h.reload_status().await.generation, 1);
}

// Envoy server_info_handler.cc handlerCerts: each served chain with path, serial, SANs and
// validity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_lists_every_served_certificate() {
    let ca = Ca::new("Admin Root");
    let ck = ca.server_cert(&["a.example.com"]);
    let certs = ConfigDir::new();
    write_credential(certs.path(), "edge-cert", &ck, None);
    let h = Harness::builder()
        .certs(certs)
        .port(443)
        .backend(Backend::http("be").await)
        .resources(
            "tls.yaml",
            &[
                &Gateway::new("gw").server(
                    Server::https(443, ServerTls::simple("edge-cert")).hosts(&["a.example.com"]),
                ),
                &VirtualService::new("all")
                    .hosts(&["a.example.com"])
                    .gateways(&["gw"])
                    .http(HttpRoute::new().to(&svc("be"))),
            ],
        )
        .start()
        .await;
    let v: Value = h.admin_json("/certs").await;
    let chain = &v["certificates"][0]["cert_chain"][0];
    assert!(
        chain["path"]
            .as_str()
            .unwrap()
            .ends_with("edge-cert/tls.crt"),
        "{v}"
    );
    assert_eq!(chain["subject_alt_names"][0]["dns"], "a.example.com", "{v}");
    assert!(
        chain["expiration_time"].as_str().unwrap().ends_with('Z'),
        "{v}"
    );
    let days: i64 = chain["days_until_expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(days > 0, "{v}");
}
