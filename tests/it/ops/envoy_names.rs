//! Portcullis' Envoy-named stats beside a real Envoy's: the same proxying (a listener routing to
//! one cluster) with the naming Istio gives a gateway (cluster `outbound|80||<host>` with
//! `alt_stat_name` `<name>;`, HTTP connection manager `stat_prefix` `outbound_<address>_<port>;`,
//! pilot `util.DelimitedStatsPrefix`) and Istio's bootstrap tag extractors
//! (istio/istio `tools/packaging/common/envoy_bootstrap.json` `stats_config`, with
//! `use_all_default_tags: false`). Every Envoy-named family Portcullis exports must appear in
//! Envoy's `/stats/prometheus` with the same type and the same label names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::*;
use crate::support::envoy::Envoy;
use crate::support::ports::free_port;

/// `# TYPE` and the label-name sets of every sample, per family.
fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<Vec<String>>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<Vec<String>>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split_whitespace();
            let (name, kind) = (p.next().unwrap(), p.next().unwrap_or(""));
            out.entry(name.to_string()).or_default().0 = kind.to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let mut keys: Vec<String> = match line[name_end..].strip_prefix('{') {
                Some(l) => l[..l.find('}').unwrap()]
                    .split("\",")
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_string()))
                    .collect(),
                None => Vec::new(),
            };
            keys.sort();
            out.entry(name.to_string()).or_default().1.insert(keys);
        }
    }
    out
}

/// Envoy proxying `127.0.0.1:<port>` to `backend`, named and tag-extracted as Istio's gateway.
async fn start_envoy(backend: SocketAddr, cluster: &str) -> (Envoy, SocketAddr) {
    let port = free_port();
    let admin = free_port();
    let config = format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
stats_config:
  use_all_default_tags: false
  stats_tags:
  - {{tag_name: cluster_name, regex: '^cluster(\.(.+);)'}}
  - {{tag_name: http_conn_manager_prefix, regex: '^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)'}}
  - {{tag_name: response_code, regex: '_rq(_(\d{{3}}))$'}}
  - {{tag_name: response_code_class, regex: '_rq(_(\dxx))$'}}
  - {{tag_name: listener_address, regex: '^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)'}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: "outbound_127.0.0.1_{port};"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/status"}}
                route: {{cluster: "{cluster}"}}
              - match: {{prefix: "/"}}
                direct_response: {{status: 404}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: "{cluster}"
    alt_stat_name: "{cluster};"
    type: STATIC
    outlier_detection: {{}}
    load_assignment:
      cluster_name: "{cluster}"
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {bport}}}}}}}}}]}}]
"#,
        ip = backend.ip(),
        bport = backend.port(),
    );
    let envoy = Envoy::start_config(tempfile::tempdir().unwrap(), port, admin, &config).await;
    (envoy, SocketAddr::from(([127, 0, 0, 1], admin)))
}

// Envoy: source/common/upstream/upstream_impl.h ALL_CLUSTER_STATS, outlier_detection_impl.h,
// source/common/http/conn_manager_impl.h ALL_HTTP_CONN_MAN_STATS, the listener's
// ALL_LISTENER_STATS, source/server/server.h ALL_SERVER_STATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_named_stats_match_a_real_envoys_names_types_and_labels() {
    let h = start(&[]).await;
    let (envoy, admin) = start_envoy(h.backend("be").addr(), &cluster()).await;
    for path in ["/status/200", "/status/503", "/nothing"] {
        let _ = get(envoy.addr, path).await;
        let _ = h.get("a.example.com", path).await;
    }
    let (_, theirs) = crate::support::gateway::http_get(admin, "/stats/prometheus")
        .await
        .unwrap();
    drop(envoy);
    let theirs = families(&theirs);
    let (_, ours) = get(h.gw.prometheus_addr(), "/stats/prometheus").await;
    let ours = families(&ours);

    let mut checked = 0;
    for (name, (kind, label_sets)) in &ours {
        if !name.starts_with("envoy_") {
            continue;
        }
        // Envoy creates `ssl.*` only for TLS clusters; this one is plaintext.
        if name == "envoy_cluster_ssl_handshake" {
            continue;
        }
        let Some((their_kind, their_sets)) = theirs.get(name) else {
            panic!("{name}: not one of Envoy's Prometheus names")
        };
        assert_eq!(kind, their_kind, "{name}: type");
        for labels in label_sets {
            assert!(
                their_sets.contains(labels),
                "{name}{labels:?}: Envoy has only {their_sets:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} Envoy families compared");
    // And the ones operators alert on are among them.
    for name in [
        "envoy_cluster_upstream_cx_total",
        "envoy_cluster_upstream_cx_active",
        "envoy_cluster_upstream_cx_connect_fail",
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq",
        "envoy_cluster_upstream_rq_retry",
        "envoy_cluster_upstream_rq_pending_overflow",
        "envoy_cluster_upstream_rq_timeout",
        "envoy_cluster_outlier_detection_ejections_active",
        "envoy_http_downstream_rq_total",
        "envoy_http_downstream_rq",
        "envoy_http_downstream_cx_active",
        "envoy_listener_downstream_cx_total",
        "envoy_server_live",
        "envoy_server_uptime",
        "envoy_server_concurrency",
        "envoy_server_memory_allocated",
        "envoy_server_days_until_first_cert_expiring",
    ] {
        assert!(ours.contains_key(name), "{name} missing from ours");
    }
}
