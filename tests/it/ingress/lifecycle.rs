//! The process around the data path: admin endpoints, and a graceful SIGTERM.

use std::time::Duration;

use crate::support::gateway::http_get;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_ready_after_start_and_config_dump_lists_listeners_and_clusters() {
    let ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .start()
        .await;
    let (status, _) = ing.gw.admin_get("/healthz/ready").await;
    assert_eq!(status, 200);

    let (status, body) = ing.gw.admin_get("/config_dump").await;
    assert_eq!(status, 200);
    let dump: Value = serde_json::from_str(&body).unwrap();
    let listeners = dump["listeners"].as_object().expect("listeners object");
    assert!(
        listeners.contains_key(&ing.addr().to_string()),
        "listener {} missing: {:?}",
        ing.addr(),
        listeners.keys().collect::<Vec<_>>()
    );
    let clusters = dump["clusters"].as_object().expect("clusters object");
    let name = format!("outbound|80||{}", svc("be"));
    assert!(
        clusters.contains_key(&name),
        "cluster {name} missing: {:?}",
        clusters.keys().collect::<Vec<_>>()
    );
    // The dump describes what is served: the backend's endpoint is in it.
    let endpoint = ing.backend("be").addr().to_string();
    assert!(
        clusters[&name].to_string().contains(&endpoint),
        "{}",
        clusters[&name]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    let mut ing = IngressBuilder::new()
        .backend(Backend::http("be").await)
        .routes(vec![all_to("be")])
        .args(&["--drain-timeout", "10"])
        .start()
        .await;
    let id = request_id();
    let in_flight = tokio::spawn(send(
        ing.request(reqwest::Method::GET, "d.example.com", "/delay/1500")
            .header("user-agent", &id),
    ));
    ing.backend("be")
        .wait_for_requests(1, Duration::from_secs(10))
        .await;
    ing.gw.sigterm();

    // While the request is still running: not ready, and no new connections.
    let admin = ing.gw.admin_addr();
    eventually(
        Duration::from_secs(5),
        "readiness 503 during drain",
        async || matches!(http_get(admin, "/healthz/ready").await, Ok((503, _))),
    )
    .await;
    let addr = ing.addr();
    eventually(
        Duration::from_secs(5),
        "new connections refused",
        async || {
            matches!(
                tokio::net::TcpStream::connect(addr).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "drain checks ran after the request ended"
    );

    let r = in_flight.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(echo(r).await["path"], "/delay/1500");
    let st = ing.gw.wait_exit(Duration::from_secs(20)).await;
    assert!(st.success(), "exit status {st}");
    // The drained request was logged before the process ended.
    assert!(
        ing.gw.logs_contain(&id),
        "no access-log line for the drained request"
    );
}
