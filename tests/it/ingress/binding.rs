//! Which Gateway a VirtualService binds to: `check`, `routes` and `run` resolve a gateway
//! reference by one rule (Istio `resolveGatewayName`), so what `check` accepts is served.

use super::*;
use crate::support::cli::{run_check, run_routes};

const HOST: &str = "shop.example.com";

/// Gateway `prod/edge` (HTTP 80, every host) and, in namespace default, a VirtualService that
/// names the Gateway the legacy way, `edge.prod`, routing to backend `shop`.
fn legacy_binding() -> HarnessBuilder {
    let gateway = Gateway::new("edge")
        .namespace("prod")
        .server(Server::http(80).hosts(&["*"]));
    let vs = VirtualService::new("shop")
        .hosts(&[HOST])
        .gateways(&["edge.prod"])
        .http(all_to("shop"));
    Harness::builder()
        .port(80)
        .resources("gateway.yaml", &[&gateway])
        .resources("vs.yaml", &[&vs])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_gateway_name_is_served_through_the_gateway_check_resolves_it_to() {
    let ing = legacy_binding()
        .backend(Backend::http("shop").await)
        .start()
        .await;
    let cfg = ing.config.path();

    let (code, out, err) = run_check(cfg, None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("spec.gateways[0]: using legacy gatewayName format `edge.prod` (expected the <namespace>/<name> format: `prod/edge`)"),
        "{out}{err}"
    );

    let (code, json, err) = run_routes(cfg, &["--json"]).await;
    assert_eq!(code, 0, "{err}");
    let snapshot: Value = serde_json::from_str(&json).expect("routes --json is JSON");
    let listeners = snapshot["listeners"].as_object().expect("listeners");
    assert_eq!(listeners.len(), 1, "{json}");
    let listener = listeners.values().next().expect("one listener");
    assert_eq!(
        listener["servers"],
        serde_json::json!(["Gateway prod/edge servers[0] (HTTP)"])
    );
    let vhosts = listener["kind"]["http"]["routes"]["virtual_hosts"]
        .as_array()
        .expect("an HTTP route table");
    let sources: Vec<(&str, &str)> = vhosts
        .iter()
        .flat_map(|v| {
            let domain = v["domain"].as_str().unwrap_or_default();
            let routes = v["routes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            routes
                .iter()
                .map(move |r| (domain, r["source"].as_str().unwrap_or_default()))
        })
        .collect();
    assert_eq!(sources, [(HOST, "VirtualService default/shop http[0]")]);

    assert_eq!(ing.who(HOST, "/").await, "shop");
}
