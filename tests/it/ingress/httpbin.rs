//! Istio's own httpbin ingress example, as written, against a local backend standing in for the
//! Kubernetes Service `httpbin` (port 8000).

use super::*;

/// The Kubernetes Service `httpbin` in `default` (port 8000) as a ServiceEntry whose endpoint
/// is the local backend.
fn httpbin_service(backend_port: u16) -> ServiceEntry {
    ServiceEntry::new("httpbin")
        .hosts(&["httpbin.default.svc.cluster.local"])
        .location("MESH_INTERNAL")
        .port(Port::of(8000, "http", "HTTP"))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("http", backend_port))
}

/// `gateway_yaml` (Istio's text, unchanged) + the Service stand-in, served with
/// `--port-map 80:<free>`.
async fn start_httpbin(gateway_yaml: &str) -> Harness {
    let be = Backend::http("httpbin").await;
    let service = httpbin_service(be.port());
    Harness::builder()
        .port(80)
        .file("httpbin-gateway.yaml", gateway_yaml)
        .resources("httpbin-service.yaml", &[&service])
        .keep(be)
        .start()
        .await
}

/// `samples/httpbin/httpbin-gateway.yaml`: Gateway `*` on port 80 and a VirtualService for `*`
/// with one match-less rule. Everything on port 80 therefore reaches httpbin, whatever the
/// path or Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_httpbin_sample_routes_every_path_and_host_to_httpbin() {
    let yaml = std::fs::read_to_string(istio_corpus().join("samples/httpbin/httpbin-gateway.yaml"))
        .unwrap();
    let ing = start_httpbin(&yaml).await;
    let r = ing.get("httpbin.example.com", "/status/418").await;
    assert_eq!(r.status(), 418);
    let e = echo(r).await;
    assert_eq!(e["backend"], "httpbin");
    assert_eq!(e["path"], "/status/418");
    for (host, path) in [
        ("httpbin.example.com", "/headers"),
        ("other.example.com", "/status/418"),
    ] {
        let r = ing.get(host, path).await;
        assert_eq!(who(r), "httpbin", "{host}{path}");
    }
    assert_eq!(ing.backend("httpbin").requests(), 3);
}

/// The configuration of istio.io's ingress task (docs/tasks/traffic-management/ingress/
/// ingress-control), reproduced here (it is not in the corpus): host `httpbin.example.com`, only
/// `/status` and `/delay` routed. Raw text on purpose: Istio's document as written is under test.
const INGRESS_TASK_YAML: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be "istio=ingress"
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "httpbin.example.com"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "httpbin.example.com"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_ingress_task_routes_status_and_delay_only_for_its_host() {
    let ing = start_httpbin(INGRESS_TASK_YAML).await;
    let r = ing.get("httpbin.example.com", "/status/418").await;
    assert_eq!(r.status(), 418);
    assert_eq!(echo(r).await["backend"], "httpbin");
    assert_eq!(ing.who("httpbin.example.com", "/delay/1").await, "httpbin");
    assert_eq!(
        ing.who("httpbin.example.com", "/headers").await,
        "status 404"
    );
    assert_eq!(
        ing.who("other.example.com", "/status/418").await,
        "status 404"
    );
    assert_eq!(ing.backend("httpbin").requests(), 2);
}
