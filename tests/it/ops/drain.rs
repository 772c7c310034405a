//! Draining like Envoy under istio-agent: on SIGTERM the agent POSTs Envoy's
//! `/drain_listeners?graceful` (`pkg/envoy/agent.go` `terminate`) and Envoy, started with
//! `--drain-strategy immediate` (`pkg/envoy/proxy.go`), answers HTTP/1 with `Connection: close`
//! and HTTP/2 with GOAWAY while its listeners keep accepting for the drain time, then stops
//! them (`source/server/admin/listeners_handler.cc`); readiness fails at once (the agent's
//! status server goes down with it). `/healthcheck/fail` fails readiness without stopping
//! (`server_cmd_handler.cc`).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;

use super::*;
use crate::support::client::{get_request, raw_http, Resp};

/// What one client loop saw.
#[derive(Debug, Default)]
struct Seen {
    ok: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
    connection_close: AtomicU64,
}

/// A loop of real clients (curl), each invocation making `per_run` requests (keep-alive
/// within it when more than one), until `stop`.
fn curl_loop(
    url: String,
    http2: bool,
    per_run: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Seen>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Seen::default());
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            while !stop.load(Relaxed) {
                let mut cmd = Command::new("curl");
                cmd.args([
                    "-sS",
                    "-D",
                    "-",
                    "-w",
                    "STATUS %{http_code}\\n",
                    "--max-time",
                    "20",
                ]);
                cmd.arg(if http2 {
                    "--http2-prior-knowledge"
                } else {
                    "--http1.1"
                });
                for _ in 0..per_run {
                    cmd.args(["-o", "/dev/null", &url]);
                }
                let out = cmd.stdin(Stdio::null()).output().await.expect("run curl");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let codes: Vec<&str> = stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("STATUS "))
                    .collect();
                let good = codes.iter().filter(|c| **c == "200").count();
                seen.ok.fetch_add(good as u64, Relaxed);
                let closes = stdout
                    .lines()
                    .filter(|l| l.to_ascii_lowercase().trim() == "connection: close")
                    .count();
                seen.connection_close.fetch_add(closes as u64, Relaxed);
                if !out.status.success() || good != per_run {
                    seen.failed.lock().unwrap().push(format!(
                        "curl {}: {codes:?} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
    });
    (seen, task)
}

/// A loop of one HTTP/2 keep-alive client (reqwest over hyper), until `stop`. hyper keeps
/// opening streams after the first GOAWAY (RFC 9113 section 6.8 says not to), so the one it
/// opens after the final GOAWAY is refused unprocessed; RFC 9113 section 8.7 lets a client
/// retry such a request, as browsers and Go's client do, and this loop does so once, counting
/// it. (curl 7.88 reuses a connection after GOAWAY and fails outright; h2load stops at
/// GOAWAY; python-h2 rejects the PING that follows a GOAWAY.)
fn h2_keepalive_loop(
    url: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Seen>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Seen::default());
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            let client = crate::support::client::h2c_client();
            while !stop.load(Relaxed) {
                let mut attempt = client.get(&url).send().await;
                if matches!(&attempt, Err(e) if e.is_request() && !e.is_timeout()) {
                    seen.connection_close.fetch_add(1, Relaxed);
                    attempt = client.get(&url).send().await;
                }
                match attempt {
                    Ok(r) if r.status() == 200 && r.version() == reqwest::Version::HTTP_2 => {
                        let _ = r.bytes().await;
                        seen.ok.fetch_add(1, Relaxed);
                    }
                    Ok(r) => seen.failed.lock().unwrap().push(format!(
                        "{:?} {}",
                        r.version(),
                        r.status()
                    )),
                    Err(e) => seen.failed.lock().unwrap().push(format!("{e:?}")),
                }
            }
        }
    });
    (seen, task)
}

/// A new connection asking for keep-alive is served, with `Connection: close`.
async fn assert_answered_with_connection_close(h: &Harness) {
    let resp = Resp::parse(&raw_http(h.addr(), get_request("a.example.com", "/", "", false)).await);
    assert_eq!(
        (resp.status, resp.header("connection")),
        (200, Some("close")),
        "{}",
        resp.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_under_load_with_no_failed_request_then_exits_zero() {
    let mut h = start(&[
        "--drain-duration",
        "15",
        "--termination-drain-duration",
        "5",
    ])
    .await;
    let url = format!("http://127.0.0.1:{}/delay/5", h.port());
    let stop = Arc::new(AtomicBool::new(false));
    let loops = [
        (
            "HTTP/1.1 keep-alive (curl)",
            curl_loop(url.clone(), false, 20, stop.clone()),
        ),
        (
            "HTTP/1.1 new connections (curl)",
            curl_loop(url.clone(), false, 1, stop.clone()),
        ),
        (
            "HTTP/2 keep-alive (reqwest)",
            h2_keepalive_loop(url.clone(), stop.clone()),
        ),
        (
            "HTTP/2 new connections (curl)",
            curl_loop(url.clone(), true, 1, stop.clone()),
        ),
    ];
    let total = |i: usize| loops[i].1 .0.ok.load(Relaxed);
    eventually(
        Duration::from_secs(30),
        "every client loop running",
        async || (0..4).all(|i| total(i) >= 5),
    )
    .await;
    let before: Vec<u64> = (0..4).map(total).collect();
    let closes_before = loops[0].1 .0.connection_close.load(Relaxed);

    h.gw.sigterm();
    // Readiness fails at once, on the probe port and on the admin.
    let status = h.gw.status_addr();
    eventually(Duration::from_secs(5), "readiness 503", async || {
        matches!(
            http_request(status, "GET", "/healthz/ready").await,
            Ok((503, _))
        )
    })
    .await;
    assert_eq!(
        h.gw.admin_get("/ready").await,
        (503, "DRAINING\n".to_string())
    );

    // The listener still accepts; HTTP/1 is answered with Connection: close...
    assert_answered_with_connection_close(&h).await;
    // ... and HTTP/2 gets a GOAWAY (nghttp, a real HTTP/2 client, prints the frames); a
    // connection opened during the drain gets it a second in, after its first request.
    let out = Command::new("nghttp")
        .args(["-v", &format!("http://127.0.0.1:{}/delay/1500", h.port())])
        .output()
        .await
        .expect("nghttp (package nghttp2-client, installed by scripts/setup)");
    let frames = String::from_utf8_lossy(&out.stdout);
    assert!(frames.contains("recv GOAWAY frame"), "{frames}");
    assert!(frames.contains(":status: 200"), "{frames}");

    // The load goes on through the drain: every loop keeps being served.
    let progress = || {
        let counts: Vec<u64> = (0..4).map(|i| total(i) - before[i]).collect();
        let closes = loops[0].1 .0.connection_close.load(Relaxed) - closes_before;
        (counts, closes)
    };
    let what = "requests served by every loop while draining";
    eventually(Duration::from_secs(12), what, async || {
        let (counts, closes) = progress();
        let done = counts.iter().all(|n| *n >= 5) && closes > 0;
        if !done {
            eprintln!("{what}: so far {counts:?}, Connection: close {closes}");
        }
        done
    })
    .await;
    eprintln!(
        "served while draining (per loop), Connection: close seen: {:?}",
        progress()
    );
    stop.store(true, Relaxed);
    let mut failed = Vec::new();
    for (name, (seen, task)) in loops {
        task.await.unwrap();
        let f = seen.failed.lock().unwrap();
        eprintln!(
            "{name}: {} ok, {} failed, {} Connection: close (HTTP/1) or retried refused stream (HTTP/2)",
            seen.ok.load(Relaxed),
            f.len(),
            seen.connection_close.load(Relaxed)
        );
        failed.extend(f.iter().map(|e| format!("{name}: {e}")));
    }
    assert!(failed.is_empty(), "failed requests:\n{}", failed.join("\n"));

    let st = h.gw.wait_exit(Duration::from_secs(40)).await;
    assert!(st.success(), "exit status {st}");
    assert!(h.gw.logs_contain("listeners stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fail_turns_readiness_off_without_stopping() {
    let h = start(&[]).await;
    let status = h.gw.status_addr();
    assert_eq!(
        h.gw.admin_post("/healthcheck/fail").await,
        (200, "OK\n".to_string())
    );
    assert_eq!(get(status, "/healthz/ready").await.0, 503);
    assert_eq!(
        h.gw.admin_get("/ready").await,
        (503, "DRAINING\n".to_string())
    );
    let info = h.admin_json("/server_info").await;
    assert_eq!(info["state"], "DRAINING");
    // Still serving, with keep-alive: nothing drains.
    let resp = h.raw_get("a.example.com", "/", "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(h.who("a.example.com", "/").await, "be");
    assert_eq!(h.gw.admin_post("/healthcheck/ok").await.0, 200);
    assert_eq!(get(status, "/healthz/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_graceful_drains_then_stops_listening_without_exiting() {
    let mut h = start(&["--drain-duration", "2"]).await;
    assert_eq!(
        h.gw.admin_post("/drain_listeners?graceful").await,
        (200, "OK\n".to_string())
    );
    // Still accepting, each response closing its connection.
    assert_answered_with_connection_close(&h).await;
    let addr = h.addr();
    eventually(
        Duration::from_secs(20),
        "listener stopped after the drain duration",
        async || {
            matches!(
                tokio::net::TcpStream::connect(addr).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        },
    )
    .await;
    // The process runs on; readiness is Envoy's (a drain alone does not fail it).
    assert!(!h.gw.has_exited());
    assert_eq!(h.gw.admin_get("/ready").await.0, 200);
    let (_, listeners) = h.gw.admin_get("/listeners").await;
    assert_eq!(listeners, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_exits_zero_without_the_drain_duration() {
    let mut h = start(&["--drain-duration", "600"]).await;
    assert_eq!(
        h.gw.admin_post("/quitquitquit").await,
        (200, "OK\n".to_string())
    );
    let st = h.gw.wait_exit(Duration::from_secs(30)).await;
    assert!(st.success(), "exit status {st}");
}
