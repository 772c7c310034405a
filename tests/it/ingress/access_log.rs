//! The access log: one line per request on stdout, Envoy's default text format, or the same
//! fields as JSON with `--log-format json`.

use reqwest::Method;

use super::*;

async fn logged_gateway(args: &[&str]) -> Harness {
    IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![
            HttpRoute::new()
                .name("teapot")
                .when(Match::new().uri(exact("/teapot")))
                .direct_response(DirectResponse::status(418).body("tea")),
            when_to(Match::new().uri(prefix("/old/")), "be")
                .name("rewritten")
                .rewrite(Rewrite::uri("/new/")),
            all_to("be").name("logged"),
        ])
        .args(args)
        .start()
        .await
}

/// Sends a proxied POST and a direct response; checks both log lines field by field.
async fn assert_logged_fields(ing: &Harness) {
    let id = request_id();
    let r = send(
        ing.request(Method::POST, "log.example.com", "/log/p?q=1")
            .header("x-request-id", "client-chosen")
            .header("user-agent", format!("it-agent/{id}"))
            .header("x-forwarded-for", "203.0.113.9")
            .body("hello"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body_len = r.bytes().await.unwrap().len();
    let line = access_line(ing, &id).await;
    let be = ing.backend("be");

    let time = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    assert!(time.is_match(line.get("start_time")), "{line:?}");
    assert_eq!(line.get("method"), "POST");
    assert_eq!(line.get("path"), "/log/p?q=1");
    assert_eq!(line.get("protocol"), "HTTP/1.1");
    assert_eq!(line.get("response_code"), "200");
    assert_eq!(line.get("response_flags"), "-");
    assert_eq!(line.get("response_code_details"), "via_upstream");
    assert_eq!(line.get("bytes_received"), "5");
    assert_eq!(line.get("bytes_sent"), body_len.to_string());
    assert!(line.get("duration").parse::<u64>().is_ok(), "{line:?}");
    assert!(
        line.get("upstream_service_time").parse::<u64>().is_ok(),
        "{line:?}"
    );
    // As forwarded: the client's value with the client address appended.
    assert_eq!(
        xff_list(line.get("x_forwarded_for")),
        ["203.0.113.9", "127.0.0.1"]
    );
    assert_eq!(line.get("user_agent"), format!("it-agent/{id}"));
    // An edge request gets a new id (Envoy: `preserve_external_request_id` off), the one
    // the backend saw.
    let seen = be.last_request().unwrap();
    assert_eq!(line.get("request_id"), seen.header("x-request-id").unwrap());
    assert_ne!(line.get("request_id"), "client-chosen");
    assert_eq!(line.get("authority"), "log.example.com");
    assert_eq!(line.get("upstream_host"), be.addr().to_string());
    assert_eq!(
        line.get("upstream_cluster"),
        format!("outbound|80||{}", svc("be"))
    );
    assert_eq!(line.get("downstream_local_address"), ing.addr().to_string());
    assert!(
        line.get("downstream_remote_address")
            .starts_with("127.0.0.1:"),
        "{line:?}"
    );
    assert_eq!(line.get("requested_server_name"), "-");
    assert_eq!(line.get("route_name"), "logged");

    // A local answer: no upstream, the route's name, the body the gateway wrote.
    let id = request_id();
    let r = send(
        ing.request(Method::GET, "log.example.com", "/teapot")
            .header("user-agent", &id),
    )
    .await;
    assert_eq!(r.status(), 418);
    let line = access_line(ing, &id).await;
    assert_eq!(line.get("response_code"), "418");
    assert_eq!(line.get("bytes_received"), "0");
    assert_eq!(line.get("bytes_sent"), "3");
    assert_eq!(line.get("upstream_host"), "-");
    assert_eq!(line.get("route_name"), "teapot");
    assert_eq!(line.get("x_forwarded_for"), "127.0.0.1");

    // The path as the client sent it, not as rewritten (X-ENVOY-ORIGINAL-PATH).
    let id = request_id();
    let r = send(
        ing.request(Method::GET, "log.example.com", "/old/x")
            .header("user-agent", &id),
    )
    .await;
    assert_eq!(echo(r).await["path"], "/new/x");
    let line = access_line(ing, &id).await;
    assert_eq!(line.get("path"), "/old/x");
    assert_eq!(line.get("route_name"), "rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_text_line_has_envoys_default_fields() {
    let ing = logged_gateway(&[]).await;
    assert_logged_fields(&ing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_json_has_the_same_fields_as_snake_case_keys() {
    let ing = logged_gateway(&["--log-format", "json"]).await;
    assert_logged_fields(&ing).await;
    // Every line is a JSON object with every default field.
    let id = request_id();
    send(
        ing.request(Method::GET, "log.example.com", "/")
            .header("user-agent", &id),
    )
    .await;
    let raw = ing.gw.wait_for_log(&id, LOG_WAIT).await;
    let v: Value = serde_json::from_str(&raw).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = ACCESS_LOG_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
}
