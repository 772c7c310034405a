//! The shared harness and the typed YAML builders, against the real `portcullis` binary: the
//! builders render what `portcullis check` accepts without a warning, and the harness maps
//! ports, keeps backends and reads the admin endpoints.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::certs::write_credential;
use crate::support::cli::run_check;
use crate::support::client::{get_request, raw_http, Resp};
use crate::support::yaml::*;
use crate::support::*;

/// Every builder and most of their fields, in one configuration (`ca_file`: a CA for
/// origination).
fn every_builder(ca_file: &str) -> Vec<Value> {
    let gateway = Gateway::new("edge")
        .server(Server::http(80).hosts(&["*.example.com"]))
        .server(
            Server::http(8080)
                .hosts(&["redirect.example.com"])
                .https_redirect(),
        )
        .server(
            Server::https(443, ServerTls::simple("web").min_version("TLSV1_2"))
                .hosts(&["*.example.com"])
                .bind("127.0.0.1"),
        )
        .server(
            Server::on(9443, "TLS")
                .hosts(&["pt.example.com"])
                .tls(ServerTls::passthrough()),
        )
        .server(
            Server::on(9000, "TCP")
                .hosts(&["tcp.example.com"])
                .port_name("raw-tcp"),
        );
    let delegated = VirtualService::new("delegated").http(
        HttpRoute::new()
            .when(Match::new().uri(prefix("/team")))
            .to("api.svc.local"),
    );
    let vs = VirtualService::new("site")
        .created("2020-01-01T00:00:00Z")
        .hosts(&["a.example.com"])
        .gateways(&["edge"])
        .http(
            HttpRoute::new()
                .name("api")
                .when(
                    Match::new()
                        .uri(regex("/api/[0-9]+"))
                        .ignore_uri_case()
                        .method(exact("GET"))
                        .scheme(exact("http"))
                        .authority(prefix("a."))
                        .header("x-env", exact("prod"))
                        .without_header("x-debug", present())
                        .query_param("v", exact("2"))
                        .port(80),
                )
                .route(
                    Destination::host("api.svc.local")
                        .port(80)
                        .subset("v1")
                        .weight(90)
                        .headers(Headers::new().request_set("x-dest", "d")),
                )
                .route(Destination::host("api.svc.local").subset("v1").weight(10))
                .rewrite(Rewrite::uri("/v1"))
                .headers(
                    Headers::new()
                        .request_add("x-a", "1")
                        .request_remove("x-b")
                        .response_set("x-c", "3")
                        .response_add("x-d", "4")
                        .response_remove("x-e"),
                )
                .retries(
                    Retries::attempts(3)
                        .per_try_timeout("1s")
                        .retry_on("connect-failure"),
                )
                .fault(Fault::abort(503, 1.0))
                .cors(
                    Cors::new()
                        .allow_origin(exact("https://a.example.com"))
                        .allow_methods(&["GET"])
                        .allow_headers(&["x-a"])
                        .max_age("1h"),
                )
                .timeout("5s"),
        )
        .http(
            HttpRoute::new()
                .when(Match::new().uri(exact("/slow")))
                .fault(Fault::delay("1s", 50.0))
                .to("api.svc.local"),
        )
        .http(
            HttpRoute::new()
                .when(Match::new().uri(prefix("/re")))
                .rewrite(Rewrite::uri_regex("^/re/(.*)$", "/\\1"))
                .route(Destination::host("api.svc.local")),
        )
        .http(
            HttpRoute::new()
                .when(Match::new().uri(exact("/old")))
                .redirect(
                    Redirect::new()
                        .uri("/new")
                        .authority("b.example.com")
                        .code(302),
                ),
        )
        .http(
            HttpRoute::new()
                .when(Match::new().uri(exact("/teapot")))
                .direct_response(DirectResponse::status(418).body("tea")),
        )
        .http(
            HttpRoute::new()
                .when(Match::new().uri(prefix("/team")))
                .delegate("delegated", "default"),
        );
    let tcp = VirtualService::new("tcp")
        .hosts(&["tcp.example.com"])
        .gateways(&["edge"])
        .tcp(TcpRoute::new().route(Destination::host("tcp.svc.local").port(9000)));
    let tls = VirtualService::new("pt")
        .hosts(&["pt.example.com"])
        .gateways(&["edge"])
        .tls(
            TlsRoute::new()
                .sni_hosts(&["pt.example.com"])
                .route(Destination::host("pt.svc.local").port(443)),
        );
    let api = ServiceEntry::new("api")
        .hosts(&["api.svc.local"])
        .location("MESH_INTERNAL")
        .resolution("STATIC")
        .port(Port::http(80).target(8080))
        .endpoint(Endpoint::address("127.0.0.1").label("version", "v1"));
    let tcp_entry = ServiceEntry::loopback("tcp.svc.local").port(Port::of(9000, "tcp", "TCP"));
    let pt_entry = ServiceEntry::loopback("pt.svc.local").port(Port::of(443, "tls", "TLS"));
    let dr = DestinationRule::new("api", "api.svc.local")
        .policy(
            TrafficPolicy::new()
                .load_balancer("ROUND_ROBIN")
                .outlier_detection(5, "30s", 50)
                .pool(
                    ConnectionPool::new()
                        .max_connections(10)
                        .http1_max_pending_requests(10)
                        .max_requests_per_connection(100)
                        .idle_timeout("30s")
                        .h2_upgrade_policy("DO_NOT_UPGRADE"),
                )
                .port_level(
                    80,
                    TrafficPolicy::new().tls(ClientTls::simple(ca_file).sni("api")),
                ),
        )
        .subset(
            Subset::named("v1")
                .label("version", "v1")
                .policy(TrafficPolicy::new().load_balancer("LEAST_REQUEST")),
        );
    [
        gateway.to_value(),
        delegated.to_value(),
        vs.to_value(),
        tcp.to_value(),
        tls.to_value(),
        api.to_value(),
        tcp_entry.to_value(),
        pt_entry.to_value(),
        dr.to_value(),
    ]
    .to_vec()
}

#[test]
fn yaml_builders_render_the_istio_field_names() {
    let all = every_builder("/etc/ca.pem");
    let vs = &all[2];
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1");
    assert_eq!(vs["kind"], "VirtualService");
    assert_eq!(
        vs["metadata"],
        json!({"name": "site", "namespace": "default", "creationTimestamp": "2020-01-01T00:00:00Z"})
    );
    let api = &vs["spec"]["http"][0];
    assert_eq!(api["match"][0]["uri"], json!({"regex": "/api/[0-9]+"}));
    assert_eq!(api["match"][0]["withoutHeaders"], json!({"x-debug": {}}));
    assert_eq!(
        api["route"][0]["destination"],
        json!({"host": "api.svc.local", "port": {"number": 80}, "subset": "v1"})
    );
    assert_eq!(api["headers"]["request"]["remove"], json!(["x-b"]));
    assert_eq!(
        api["corsPolicy"]["allowOrigins"],
        json!([{"exact": "https://a.example.com"}])
    );
    let gateway = &all[0];
    let names: Vec<&str> = gateway["spec"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["port"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http-0", "http-1", "https-2", "tls-3", "raw-tcp"]);
    assert_eq!(
        gateway["spec"]["servers"][1]["tls"],
        json!({"httpsRedirect": true})
    );
    let dr = &all[8];
    assert_eq!(
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["port"],
        json!({"number": 80})
    );
    // Rendered as one multi-document file that parses back to the same values.
    let text = render(&docs(&all));
    let back: Vec<Value> = text
        .split("---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    assert_eq!(back, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_builders_render_what_portcullis_check_accepts_without_warnings() {
    let certs = ConfigDir::new();
    let root = Ca::new("Builder Root");
    write_credential(
        certs.path(),
        "web",
        &root.server_cert(&["*.example.com"]),
        None,
    );
    let ca_file = root.write_root_pem(certs.path(), "ca.pem");
    let cfg = ConfigDir::new();
    cfg.write(
        "all.yaml",
        &render(&docs(&every_builder(&ca_file.display().to_string()))),
    );
    let (code, stdout, stderr) = run_check(cfg.path(), Some(certs.path())).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(" 0 error(s), 0 warning(s)"),
        "every field is known and valid: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_maps_ports_serves_backends_and_reads_the_admin_endpoints() {
    let h = Harness::builder()
        .ports(&[80, 81])
        .backend(Backend::http("be").await)
        .resources(
            "routes.yaml",
            &[
                &Gateway::new("gw")
                    .server(Server::http(80))
                    .server(Server::http(81)),
                &VirtualService::new("all")
                    .hosts(&["*"])
                    .gateways(&["gw"])
                    .http(HttpRoute::new().to(&svc("be"))),
            ],
        )
        .start()
        .await;
    assert_ne!(h.port_of(80), h.port_of(81));
    assert_eq!(h.port(), h.port_of(80));
    for port in [80, 81] {
        let r = Resp::parse(
            &raw_http(
                h.addr_of(port),
                get_request("a.example.com", "/x", "", true),
            )
            .await,
        );
        assert_eq!(
            (r.status, r.header("x-backend")),
            (200, Some("be")),
            "{}",
            r.raw
        );
        let url = format!("http://{}/y", h.addr_of(port));
        let resp = h
            .client
            .get(url)
            .header("host", "b.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(who(resp), "be");
    }
    assert_eq!(h.who("c.example.com", "/z").await, "be");
    assert_eq!(h.backend("be").requests(), 5);

    let status = h.reload_status().await;
    assert_eq!((status.generation, status.last_result.as_str()), (1, "ok"));
    assert_eq!(status.last_error, None);
    let stats = h.cluster_stats("outbound|80||be.svc.local").await;
    assert_eq!(stats.requests, 5, "{stats:?}");
    let dump = h.config_dump().await;
    assert!(
        dump["listeners"].get(h.addr_of(81).to_string()).is_some(),
        "{dump}"
    );
    assert_eq!(h.metric("portcullis_no_such_metric_total").await, 0.0);
    let line =
        h.gw.wait_for_log_all(&["\"GET /z ", "c.example.com"], Duration::from_secs(10))
            .await;
    assert!(line.contains(" 200 "), "{line}");

    h.gw.sighup();
    let status = h.wait_generation_after(1, Duration::from_secs(10)).await;
    assert_eq!(status.generation, 2);
}
