//! Istio's standard metrics and Envoy's stats as Istio users read them: a real Prometheus
//! scrapes the gateway as it scrapes an istio-ingressgateway pod, and the PromQL of Istio's own
//! Grafana dashboards (istio/istio `manifests/addons/dashboards/`, `$__rate_interval` as `1m`)
//! returns this gateway's traffic with the labels and values Istio's gateway reports.
//!
//! Scrape jobs: `kubernetes-pods` on the merged port (15020, `/stats/prometheus`: the
//! `prometheus.io/*` annotations Istio's injector puts on a gateway pod), and `envoy-stats` on
//! Envoy's own port (15090), kept to the `envoy_*` names so the dashboards' sums count once.

use std::time::Duration;

use openssl::asn1::Asn1Time;

use super::*;
use crate::support::certs::write_credential;
use crate::support::client::h2c_client;
use crate::support::prometheus::{Prometheus, Row, Scrape};

/// The gateway's workload and namespace, from the pod's environment as istio-agent reads it.
const WORKLOAD: &str = "edge-gateway";
const NAMESPACE: &str = "edge";

/// Envoy's default histogram buckets (`source/common/stats/histogram_impl.cc`
/// `HistogramSettingsImpl::defaultBuckets`), as Prometheus reads the `le` labels.
const ENVOY_LE: [&str; 20] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
];

/// HTTP on 80 (`/status/*` and `/delay/*` to backend `be`, anything else unrouted), HTTPS on
/// 443 with a certificate that expires in 30 days, TCP on 31400 to `be`; the gateway runs as pod
/// `edge-gateway-5d8f7c9b4-x2k7q` of Deployment `edge-gateway` in namespace `edge`.
async fn start_gateway(cert: &CertKey) -> Harness {
    let certs = ConfigDir::new();
    write_credential(certs.path(), "edge-cert", cert, None);
    Harness::builder()
        .certs(certs)
        .ports(&[80, 443, 31400])
        .backend(Backend::http("be").await)
        .labels("istio=ingressgateway,app=edge-gateway,version=v7,pod-template-hash=5d8f7c9b4")
        .env("POD_NAME", "edge-gateway-5d8f7c9b4-x2k7q")
        .env("POD_NAMESPACE", NAMESPACE)
        .env("ISTIO_META_CLUSTER_ID", "cluster-1")
        .resources(
            "routes.yaml",
            &[
                &Gateway::new("gw")
                    .server(Server::http(80))
                    .server(Server::https(443, ServerTls::simple("edge-cert")))
                    .server(Server::on(31400, "TCP")),
                &VirtualService::new("web")
                    .hosts(&["*"])
                    .gateways(&["gw"])
                    .http(
                        HttpRoute::new()
                            .when(Match::new().uri(prefix("/status")))
                            .to(&svc("be")),
                    )
                    .http(
                        HttpRoute::new()
                            .when(Match::new().uri(prefix("/delay")))
                            .to(&svc("be")),
                    ),
                &VirtualService::new("tcp")
                    .hosts(&["*"])
                    .gateways(&["gw"])
                    .tcp(TcpRoute::new().route(Destination::host(&svc("be")).port(80))),
            ],
        )
        .start()
        .await
}

/// Traffic: 4 × 200, 2 × 503 from the backend, 1 unrouted (404 NR), 3 slow requests (300 ms),
/// one TCP connection carrying one HTTP exchange.
async fn send_traffic(h: &Harness) {
    for path in [
        "/status/200",
        "/status/200",
        "/status/200",
        "/status/200",
        "/status/503",
        "/status/503",
        "/nothing-here",
        "/delay/300",
        "/delay/300",
        "/delay/300",
    ] {
        let status = h.get("shop.example.com", path).await.status().as_u16();
        let want = match path {
            "/status/503" => 503,
            "/nothing-here" => 404,
            _ => 200,
        };
        assert_eq!(status, want, "{path}");
    }
    let mut tcp = tokio::net::TcpStream::connect(h.addr_of(31400))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /status/200 HTTP/1.1\r\nHost: be\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

fn labels_of(rows: &[Row], name: &str) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.label(name).to_string()).collect();
    v.sort();
    v
}

/// `promql` once its rows' `label` values are `want` (sorted): a series needs two scrapes
/// before a rate sees it.
async fn until_labels(prom: &Prometheus, promql: &str, label: &str, want: &[&str]) -> Vec<Row> {
    prom.query_until(promql, |r| labels_of(r, label) == want)
        .await
}

// Istio's dashboards: istio-mesh (Traffic Volume, HTTP/gRPC Workloads, TCP Workloads),
// istio-workload (its `dstsvc` variable; Outgoing Requests By Destination And Response Code;
// TCP Client Traffic), istio-service (its `service` and `srcwl` variables; Bytes Received from
// Incoming TCP Connection). The label values follow istio/proxy `istio_stats.cc` (a gateway
// reports as a client, `reporter="source"`), istio-agent's node metadata (`POD_NAME` →
// the Deployment, `pkg/kube/util.go` `GetDeployMetaFromPod`; `POD_NAMESPACE`;
// `ISTIO_META_CLUSTER_ID`) and pilot's endpoint metadata for a ServiceEntry endpoint
// (`serviceentry/conversion.go`: endpoint 0 of `be` is workload `be-0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_dashboards_show_the_gateways_traffic_in_a_real_prometheus() {
    let ca = Ca::new("Metrics Root");
    let cert = ca.server_cert(&["shop.example.com"]);
    let h = start_gateway(&cert).await;
    let prom = Prometheus::start(&[
        Scrape::new("kubernetes-pods", h.gw.merged_prometheus_addr()),
        Scrape::new("envoy-stats", h.gw.prometheus_addr()).keep("envoy_.*"),
    ])
    .await;
    // The traffic comes after a first scrape, as on a live gateway, so rates see it.
    prom.query_until("up", |r| r.len() == 2 && r.iter().all(|r| r.value == 1.0))
        .await;
    send_traffic(&h).await;
    let w = format!("source_workload=~\"{WORKLOAD}\", source_workload_namespace=~\"{NAMESPACE}\"");

    // Every standard label, with the values Istio's gateway puts there (instant query: the
    // counter itself).
    let rows = prom
        .query_until(
            "istio_requests_total{job=\"kubernetes-pods\", response_code=\"200\", destination_service=\"be.svc.local\"}",
            |r| r.len() == 1 && r[0].value == 7.0,
        )
        .await;
    let row = &rows[0];
    for (label, value) in [
        ("reporter", "source"),
        ("source_workload", WORKLOAD),
        ("source_workload_namespace", NAMESPACE),
        ("source_principal", "unknown"),
        ("source_app", "edge-gateway"),
        ("source_version", "v7"),
        ("source_cluster", "cluster-1"),
        ("source_canonical_service", "edge-gateway"),
        ("source_canonical_revision", "v7"),
        ("destination_workload", "be-0"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "unknown"),
        ("destination_version", "unknown"),
        ("destination_service", "be.svc.local"),
        ("destination_service_name", "be.svc.local"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "cluster-1"),
        ("destination_canonical_service", "be-0"),
        ("destination_canonical_revision", "latest"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ] {
        assert_eq!(row.label(label), value, "{label}: {row:?}");
    }
    // The unrouted request: no cluster, so the destination is unknown (a gateway never falls
    // back to the Host header, pilot `model/telemetry.go` `disableHostHeaderFallback`).
    let nr = prom
        .query("istio_requests_total{job=\"kubernetes-pods\", response_code=\"404\"}")
        .await;
    assert_eq!(nr.len(), 1, "{nr:?}");
    assert_eq!(nr[0].label("response_flags"), "NR", "{nr:?}");
    assert_eq!(nr[0].label("destination_service"), "unknown", "{nr:?}");
    assert_eq!(nr[0].label("source_workload"), WORKLOAD, "{nr:?}");

    // istio-mesh, "Traffic Volume".
    let volume = prom
        .query_until(
            "round(sum (rate(istio_requests_total{reporter=~\"source|waypoint\"}[1m])), 0.01)",
            |r| r.len() == 1 && r[0].value > 0.0,
        )
        .await;
    assert_eq!(volume.len(), 1);

    // istio-mesh, "HTTP/gRPC Workloads" (requests column).
    let workloads = until_labels(&prom, "label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_requests_total{reporter=~\"source|waypoint\"}[1m])), \"destination_workload_var\", \".\", \"destination_workload\", \"destination_workload_namespace\")", "destination_workload_var", &["be-0.default", "unknown.unknown"]).await;
    assert!(!workloads.is_empty());

    // istio-mesh, "HTTP/gRPC Workloads" (P99 column): histogram_quantile over Envoy's buckets.
    // Three of the nine requests to be-0 took at least 300 ms, so P99 lies in (250, 500] or
    // above: at least 250.
    let p99 = prom
        .query_until("label_join(histogram_quantile(0.99, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~\"source|waypoint\"}[1m]))), \"destination_workload_var\", \".\", \"destination_workload\", \"destination_workload_namespace\")", |r| {
            r.iter()
                .any(|r| r.label("destination_workload") == "be-0" && r.value.is_finite())
        })
        .await;
    let be = p99
        .iter()
        .find(|r| r.label("destination_workload") == "be-0")
        .unwrap_or_else(|| panic!("{p99:?}"));
    assert!(be.value.is_finite() && be.value >= 250.0, "{p99:?}");
    let buckets = prom
        .query(
            "count by (le) (istio_request_duration_milliseconds_bucket{job=\"kubernetes-pods\"})",
        )
        .await;
    let mut le = labels_of(&buckets, "le");
    let order = |s: &String| {
        ENVOY_LE
            .iter()
            .position(|b| b == s)
            .unwrap_or_else(|| panic!("le=\"{s}\" is not one of Envoy's buckets"))
    };
    le.sort_by_key(order);
    assert_eq!(le, ENVOY_LE, "{buckets:?}");

    // istio-mesh, "TCP Workloads" (bytes received).
    let tcp = until_labels(&prom, "label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_tcp_received_bytes_total{reporter=~\"source|waypoint\"}[1m])), \"destination_workload_var\", \".\", \"destination_workload\", \"destination_workload_namespace\")", "destination_service", &["be.svc.local"]).await;
    assert!(!tcp.is_empty());
    let opened = prom
        .query_until(
            "istio_tcp_connections_opened_total{job=\"kubernetes-pods\"}",
            |r| r.len() == 1,
        )
        .await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].value, 1.0, "{opened:?}");
    assert_eq!(opened[0].label("request_protocol"), "tcp", "{opened:?}");
    assert_eq!(opened[0].label("source_workload"), WORKLOAD, "{opened:?}");
    let closed = prom
        .query("sum(istio_tcp_connections_closed_total{job=\"kubernetes-pods\"})")
        .await;
    assert_eq!(closed[0].value, 1.0, "{closed:?}");
    let sent = prom
        .query("sum(istio_tcp_sent_bytes_total{job=\"kubernetes-pods\"})")
        .await;
    assert!(sent[0].value > 0.0, "{sent:?}");

    // istio-workload, variable `dstsvc` for this workload.
    let dstsvc = until_labels(&prom, &format!("sum(istio_requests_total{{reporter=\"source\", {w}}}) by (destination_service) or sum(istio_tcp_sent_bytes_total{{reporter=\"source\", {w}}}) by (destination_service)"), "destination_service", &["be.svc.local", "unknown"]).await;
    assert!(!dstsvc.is_empty());
    // istio-workload, "Outgoing Requests By Destination And Response Code" (not mTLS).
    let outgoing = until_labels(&prom, &format!("round(sum(irate(istio_requests_total{{destination_principal!~\"spiffe.*\", {w}, reporter=\"source\", destination_service=~\"be.svc.local\"}}[1m])) by (destination_service, response_code), 0.001)"), "response_code", &["200", "503"]).await;
    assert!(!outgoing.is_empty());
    // istio-workload, "TCP Client Traffic".
    let client = prom.query_until(&format!("sum(irate(istio_tcp_sent_bytes_total{{reporter=~\"source|destination\", {w}}}[1m])) + sum(irate(istio_tcp_received_bytes_total{{reporter=~\"source|destination\", {w}}}[1m]))"), |r| r.len() == 1).await;
    assert_eq!(client.len(), 1, "{client:?}");

    // istio-service, variables `service` and `srcwl`, and "Bytes Received from Incoming TCP
    // Connection" (not mTLS) for service be.svc.local.
    let services = prom
        .query("sum(istio_requests_total{}) by (destination_service) or sum(istio_tcp_sent_bytes_total{}) by (destination_service)")
        .await;
    assert!(
        labels_of(&services, "destination_service").contains(&"be.svc.local".to_string()),
        "{services:?}"
    );
    let srcwl = until_labels(&prom, &format!("sum(istio_requests_total{{reporter=~\"source|destination\", destination_service=\"be.svc.local\", source_workload_namespace=~\"{NAMESPACE}\"}}) by (source_workload) or sum(istio_tcp_sent_bytes_total{{reporter=~\"source|destination\", destination_service=\"be.svc.local\", source_workload_namespace=~\"{NAMESPACE}\"}}) by (source_workload)"), "source_workload", &[WORKLOAD]).await;
    assert!(!srcwl.is_empty());
    let tcp_in = until_labels(&prom, &format!("round(sum(irate(istio_tcp_received_bytes_total{{reporter=~\"source|destination\", connection_security_policy!=\"mutual_tls\", destination_service=\"be.svc.local\", {w}}}[1m])) by (source_workload, source_workload_namespace), 0.001)"), "source_workload", &[WORKLOAD]).await;
    assert!(!tcp_in.is_empty());

    // istio-mesh, "Istio Component Versions".
    let build = prom.query("sum by (component,tag) (istio_build)").await;
    assert_eq!(labels_of(&build, "component"), ["proxy"], "{build:?}");
}

/// `job="envoy-stats"` series `name{labels}`: its value, waiting for a scrape that has it.
async fn envoy(prom: &Prometheus, selector: &str) -> f64 {
    let q = if selector.contains('{') {
        selector.replacen('{', "{job=\"envoy-stats\",", 1)
    } else {
        format!("{selector}{{job=\"envoy-stats\"}}")
    };
    let rows = prom.query_until(&q, |r| r.len() == 1).await;
    rows[0].value
}

// Envoy's stat names as Istio's bootstrap tag-extracts them (istio/istio
// `tools/packaging/common/envoy_bootstrap.json` `stats_tags`, `use_all_default_tags: false`:
// `cluster_name`, `http_conn_manager_prefix`, `listener_address`, `response_code_class`), for
// the stats of Envoy's `source/common/upstream/upstream_impl.h` ALL_CLUSTER_STATS,
// `source/common/http/conn_manager_impl.h` ALL_HTTP_CONN_MAN_STATS, the listener's and the
// server's (`source/server/server.cc`: `days_until_first_cert_expiring` is the fewest whole
// days left on a served certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_alerting_stats_and_certificate_expiry_under_envoys_names() {
    let ca = Ca::new("Metrics Root");
    let cert = ca.server_cert_with(CertOpts {
        validity_days: 30,
        ..CertOpts::sans(&["shop.example.com"])
    });
    let h = start_gateway(&cert).await;
    send_traffic(&h).await;
    let prom = Prometheus::start(&[Scrape::new("envoy-stats", h.gw.prometheus_addr())]).await;

    let c = format!("cluster_name=\"{}\"", cluster());
    assert_eq!(
        envoy(&prom, &format!("envoy_cluster_upstream_rq_total{{{c}}}")).await,
        9.0
    );
    let by_class =
        |class: &str| format!("envoy_cluster_upstream_rq{{{c},response_code_class=\"{class}\"}}");
    assert_eq!(envoy(&prom, &by_class("2xx")).await, 7.0);
    assert_eq!(envoy(&prom, &by_class("5xx")).await, 2.0);
    assert!(envoy(&prom, &format!("envoy_cluster_upstream_cx_total{{{c}}}")).await >= 1.0);
    for zero in [
        "upstream_cx_connect_fail",
        "upstream_rq_retry",
        "upstream_rq_pending_overflow",
        "upstream_rq_timeout",
        "outlier_detection_ejections_active",
    ] {
        assert_eq!(
            envoy(&prom, &format!("envoy_cluster_{zero}{{{c}}}")).await,
            0.0,
            "{zero}"
        );
    }
    envoy(&prom, &format!("envoy_cluster_upstream_cx_active{{{c}}}")).await;

    // The HTTP connection manager of the listener on 80 (`outbound_<address>_<port>`).
    let port = h.port_of(80);
    let hcm = format!("http_conn_manager_prefix=\"outbound_127.0.0.1_{port}\"");
    assert_eq!(
        envoy(&prom, &format!("envoy_http_downstream_rq_total{{{hcm}}}")).await,
        10.0
    );
    let hcm_class =
        |class: &str| format!("envoy_http_downstream_rq{{{hcm},response_code_class=\"{class}\"}}");
    assert_eq!(envoy(&prom, &hcm_class("2xx")).await, 7.0);
    assert_eq!(envoy(&prom, &hcm_class("4xx")).await, 1.0);
    assert_eq!(envoy(&prom, &hcm_class("5xx")).await, 2.0);
    envoy(&prom, &format!("envoy_http_downstream_cx_active{{{hcm}}}")).await;
    let listener = format!("listener_address=\"127.0.0.1_{port}\"");
    assert!(
        envoy(
            &prom,
            &format!("envoy_listener_downstream_cx_total{{{listener}}}")
        )
        .await
            >= 1.0
    );

    assert_eq!(envoy(&prom, "envoy_server_live").await, 1.0);
    assert!(envoy(&prom, "envoy_server_uptime").await >= 0.0);
    assert!(envoy(&prom, "envoy_server_concurrency").await >= 1.0);
    assert!(envoy(&prom, "envoy_server_memory_allocated").await > 0.0);
    // Issued for 30 days a moment ago: 29 whole days left.
    assert_eq!(
        envoy(&prom, "envoy_server_days_until_first_cert_expiring").await,
        29.0
    );
    let expiry = prom
        .query_until(
            "portcullis_certificate_expiry_timestamp_seconds{job=\"envoy-stats\"}",
            |r| r.len() == 1,
        )
        .await;
    assert!(
        expiry[0].label("cert").ends_with("edge-cert/tls.crt"),
        "{expiry:?}"
    );
    let leaf = &cert.chain()[0];
    let not_after = Asn1Time::from_unix(0)
        .unwrap()
        .diff(leaf.not_after())
        .unwrap();
    let want = i64::from(not_after.days) * 86_400 + i64::from(not_after.secs);
    assert_eq!(expiry[0].value, want as f64, "{expiry:?}");
    // The process collector (`process_*`), as Envoy's pods are scraped beside it.
    let cpu = prom
        .query("process_cpu_seconds_total{job=\"envoy-stats\"}")
        .await;
    assert_eq!(cpu.len(), 1, "{cpu:?}");
}

/// A gRPC reply body: `messages` length-prefixed messages, then the trailers.
struct GrpcReply {
    data: Option<bytes::Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl hyper::body::Body for GrpcReply {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(d) => Some(Ok(hyper::body::Frame::data(d))),
            None => self
                .trailers
                .take()
                .map(|t| Ok(hyper::body::Frame::trailers(t))),
        };
        std::task::Poll::Ready(frame)
    }
}

/// gRPC's framing (`source/common/grpc/codec.cc`): flag byte, big-endian length, payload.
fn grpc_frames(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.push(0);
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A gRPC server over HTTP/2 (prior knowledge) on loopback: every call is answered with
/// three messages and the trailer `grpc-status: 5`.
async fn grpc_server() -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    // Read the whole request stream before answering, as a unary server does.
                    let mut body = req.into_body();
                    while let Some(frame) = std::future::poll_fn(|cx| {
                        hyper::body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
                    })
                    .await
                    {
                        if frame.is_err() {
                            break;
                        }
                    }
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "5".parse().unwrap());
                    let reply = GrpcReply {
                        data: Some(grpc_frames(&[b"one", b"", &[7u8; 300]]).into()),
                        trailers: Some(trailers),
                    };
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(reply)
                            .unwrap(),
                    )
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

// Istio's gRPC metrics: `request_protocol="grpc"`, the messages each way as Envoy's
// `grpc_stats` filter counts them (`source/extensions/filters/http/grpc_stats`, Istio adds it to
// every HTTP connection manager) and `grpc_response_status` from the trailers
// (`source/common/grpc/common.cc` `getGrpcStatus`), istio/proxy `istio_stats.cc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_count_messages_each_way_and_the_trailer_status() {
    let server = grpc_server().await;
    let entry = ServiceEntry::new("rpc")
        .hosts(&["rpc.svc.local"])
        .location("MESH_INTERNAL")
        .port(Port::of(80, "grpc", "GRPC"))
        .resolution("STATIC")
        .endpoint(Endpoint::address("127.0.0.1").port("grpc", server.port()));
    let h = Harness::builder()
        .port(80)
        .resources(
            "rpc.yaml",
            &[
                &entry,
                &Gateway::new("gw").server(Server::http(80)),
                &VirtualService::new("rpc")
                    .hosts(&["*"])
                    .gateways(&["gw"])
                    .http(HttpRoute::new().to("rpc.svc.local")),
            ],
        )
        .start()
        .await;
    let r = h2c_client()
        .post(h.url("/shop.Cart/Add"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(grpc_frames(&[b"first", b"second"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), grpc_frames(&[b"one", b"", &[7u8; 300]]).len());

    let (_, prom) = get(h.gw.prometheus_addr(), "/stats/prometheus").await;
    let sample = |name: &str| {
        prom.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("rpc.svc.local"))
            .unwrap_or_else(|| panic!("{name}: {prom}"))
            .to_string()
    };
    let requests = sample("istio_requests_total");
    for pair in [
        "request_protocol=\"grpc\"",
        "grpc_response_status=\"5\"",
        "response_code=\"200\"",
        "destination_service=\"rpc.svc.local\"",
    ] {
        assert!(requests.contains(pair), "{pair}: {requests}");
    }
    assert!(requests.ends_with(" 1"), "{requests}");
    assert!(
        sample("istio_request_messages_total").ends_with(" 2"),
        "{prom}"
    );
    assert!(
        sample("istio_response_messages_total").ends_with(" 3"),
        "{prom}"
    );
}

// The label sets are rebuilt on every reload; the series they count into are the same ones, so
// a counter keeps counting across a reload (Envoy keeps a cluster's stats across a CDS update
// that keeps its name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_continue_across_a_reload() {
    let h = start(&[]).await;
    for _ in 0..2 {
        assert_eq!(h.who("a.example.com", "/").await, "be");
    }
    let before = h.reload_status().await.generation;
    h.config.write(
        "extra.yaml",
        &render(&[&VirtualService::new("other")
            .hosts(&["other.example.com"])
            .gateways(&["gw"])
            .http(HttpRoute::new().to(&svc("be")))]),
    );
    h.wait_generation_after(before, Duration::from_secs(20))
        .await;
    assert_eq!(h.who("a.example.com", "/").await, "be");
    let (_, prom) = get(h.gw.prometheus_addr(), "/stats/prometheus").await;
    let lines: Vec<&str> = prom
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
        .collect();
    assert_eq!(lines.len(), 1, "{prom}");
    assert!(lines[0].ends_with(" 3"), "{}", lines[0]);
}
