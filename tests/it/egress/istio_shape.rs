//! Istio's "egress gateway with TLS origination" task, as written there (host renamed): the
//! app sends plain HTTP for port 80, the VirtualService bound to the egress Gateway sends it on
//! to the same host's port 443, where a DestinationRule `portLevelSettings` entry originates TLS.
//!
//! The YAML is raw text on purpose: the task's documents as Istio writes them are under test.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_gateway_tls_origination_task_shape() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let plain = Backend::http("wrong-port").await;
    let ca = pki.ca_path();
    let (tls_port, plain_port) = (upstream.port(), plain.port());
    // resolution DNS as the task insists; the endpoint name resolves locally, and the endpoint
    // ports stand in for the external service's 80 and 443.
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [{API}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  - {{number: 443, name: https-port, protocol: HTTPS}}
  resolution: DNS
  endpoints:
  - address: localhost
    ports: {{http-port: {plain_port}, https-port: {tls_port}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: default}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{API}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-api, namespace: default}}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: api
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-api-through-egress-gateway, namespace: default}}
spec:
  hosts: [{API}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match:
    - gateways: [mesh]
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port: {{number: 80}}
      weight: 100
  - match:
    - gateways: [istio-egressgateway]
      port: 80
    route:
    - destination:
        host: {API}
        port: {{number: 443}}
      weight: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate-tls-for-api, namespace: default}}
spec:
  host: {API}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    portLevelSettings:
    - port: {{number: 443}}
      tls:
        mode: SIMPLE
        caCertificates: {ca}
"#
    );
    let eg = egress_yaml(&yaml, &[]).await;

    // The app's `curl http://api.example.test/` (DNS sends it to the gateway): 200, no 301.
    let r = eg.raw_get(API, "/politics", "").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/politics");
    assert!(seen.tls, "TLS originated on port 443");
    assert_eq!(
        seen.sni.as_deref(),
        Some(API),
        "SNI is the host, not the endpoint name"
    );
    assert_eq!(seen.authority.as_deref(), Some(API));
    assert_eq!(
        plain.requests(),
        0,
        "nothing went to port 80 of the external host"
    );
    let line = log_line(&eg, &["\"GET /politics ", " 200 "]).await;
    assert!(line.contains("outbound|443||api.example.test"), "{line}");

    // Absolute-form from an HTTP_PROXY client takes the same route.
    let r = get_absolute(&eg, API, "/world").await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    assert_eq!(upstream.last_request().unwrap().path, "/world");
    assert!(upstream.last_request().unwrap().tls);
}
