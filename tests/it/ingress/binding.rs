//! Which Gateway a VirtualService binds to: `check`, `routes` and `run` resolve a gateway
//! reference by one rule (Istio `resolveGatewayName`), so what `check` accepts is served.

use super::*;
use crate::support::cli::{run_check, run_routes};

const HOST: &str = "shop.example.com";

/// Gateway `prod/edge` (HTTP 80, every host) and, in namespace default, a ServiceEntry for
/// `backend` and a VirtualService that names the Gateway the legacy way, `edge.prod`.
fn legacy_binding(backend: &Backend) -> ConfigDir {
    let cfg = ConfigDir::new();
    cfg.write(
        "gateway.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: prod}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
    );
    cfg.write(
        "se.yaml",
        &service_entry_yaml(backend.name(), &svc(backend.name()), backend.port()),
    );
    cfg.write(
        "vs.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop, namespace: default}}\nspec:\n  hosts: [{HOST}]\n  gateways: [edge.prod]\n  http:\n{}\n",
            indent(&all_to(backend.name()), 2)
        ),
    );
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_gateway_name_is_served_through_the_gateway_check_resolves_it_to() {
    let shop = Backend::http("shop").await;
    let cfg = legacy_binding(&shop);

    let (code, out, err) = run_check(cfg.path(), None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("spec.gateways[0]: using legacy gatewayName format `edge.prod` (expected the <namespace>/<name> format: `prod/edge`)"),
        "{out}{err}"
    );

    let (code, json, err) = run_routes(cfg.path(), &["--json"]);
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

    let ing = Ingress::spawn(cfg, vec![(80, free_port())], vec![shop], Vec::new());
    assert_eq!(ing.who(HOST, "/").await, "shop");
}
