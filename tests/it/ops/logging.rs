//! `/logging` changes the log level of the running gateway (Envoy
//! `source/server/admin/logs_handler.cc`): GET lists the loggers, POST `?level=` sets them all,
//! `?<logger>=` one.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_changes_the_level_of_the_running_gateway() {
    let h = start(&[]).await;
    let (code, list) = h.gw.admin_get("/logging").await;
    assert_eq!(code, 200);
    assert!(list.starts_with("active loggers:\n"), "{list}");
    assert!(list.contains("  runtime: info\n"), "{list}");

    for _ in 0..3 {
        assert_eq!(h.who("a.example.com", "/").await, "be");
    }
    assert!(
        !h.gw.logs().iter().any(|l| l.contains(" DEBUG ")),
        "no debug line at level info"
    );

    let mark = h.gw.log_mark();
    let (code, list) = h.gw.admin_post("/logging?level=debug").await;
    assert_eq!(code, 200, "{list}");
    assert!(list.contains("  runtime: debug\n"), "{list}");
    assert_eq!(h.who("a.example.com", "/").await, "be");
    h.gw.wait_for_log_after(mark, " DEBUG ", Duration::from_secs(10))
        .await;

    // One logger back to info; an unknown logger or level is refused.
    let (code, list) = h.gw.admin_post("/logging?pingora=info").await;
    assert_eq!(code, 200);
    assert!(
        list.contains("  pingora: info\n") && list.contains("  tls: debug\n"),
        "{list}"
    );
    let (code, body) = h.gw.admin_post("/logging?nosuch=debug").await;
    assert_eq!(code, 400);
    assert!(
        body.starts_with("error: unknown logger name `nosuch`"),
        "{body}"
    );
    assert_eq!(h.gw.admin_post("/logging?level=loud").await.0, 400);
}
