//! What the gateway asks of the kernel per request (issue 14; `docs/benchmarks.md`), seen with
//! strace attached to the real gateway process: a response head and its body leave in one
//! write, as nginx and Pingora's own listeners send them (`pingora-core`
//! `protocols/l4/stream.rs`, `DEFAULT_L4_WRITE_BUFFER_SIZE`); the peer and local addresses the
//! accept loop already knows are never asked of the kernel (`getpeername`, `getsockname`), as
//! nginx never asks. strace comes from `./scripts/setup`; these tests panic saying so when it
//! is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::support::client::{get_request, raw_exchange, raw_http};
use crate::support::*;

/// strace attached to every thread of a process, writing the given calls to a file.
struct Strace {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Strace {
    fn attach(pid: u32, calls: &str) -> Strace {
        let found = Command::new("strace").arg("-V").output().is_ok();
        assert!(
            found,
            "strace is missing (these tests watch the gateway's syscalls with it): run \
             ./scripts/setup, which installs the Debian package strace"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("trace");
        let child = Command::new("strace")
            .args(["-f", "-qq", "-s", "65536", "-e"])
            .arg(format!("trace={calls}"))
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Strace {
            child,
            out,
            _dir: dir,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the trace shows `marker` (so every thread is attached), sending `probe`
    /// requests meanwhile.
    async fn ready(&self, marker: &str, mut probe: impl AsyncFnMut()) {
        eventually(Duration::from_secs(20), "strace attached", async || {
            probe().await;
            self.text().contains(marker)
        })
        .await;
    }

    /// Detaches and returns the trace.
    fn finish(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.text()
    }
}

/// One HTTP server for every host, routed to backend `be`.
async fn gateway() -> Harness {
    crate::ops::start(&[]).await
}

#[tokio::test]
async fn a_response_head_and_its_body_leave_the_gateway_in_one_write() {
    let h = gateway().await;
    let trace = Strace::attach(h.gw.pid(), "write,writev,sendto,sendmsg");
    let addr = h.addr();
    trace
        .ready("/bytes/3?probe", async || {
            raw_http(addr, get_request("a.example", "/bytes/3?probe", "", true)).await;
        })
        .await;
    // Ten requests on one keep-alive connection, each answered with a 100-byte body.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    for _ in 0..10 {
        let resp = raw_exchange(
            &mut conn,
            get_request("a.example", "/bytes/100", "", false).as_bytes(),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let text = trace.finish();
    // The backend's body: `abc…z` repeated.
    let body = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz";
    let heads: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HTTP/1.1 200") && l.contains("content-length: 100"))
        .collect();
    assert!(
        heads.len() >= 10,
        "the responses' writes were traced:\n{text}"
    );
    for write in heads {
        assert!(
            write.contains(body),
            "a response head was written without its body:\n{write}"
        );
    }
}

#[tokio::test]
async fn the_gateway_never_asks_the_kernel_for_addresses_its_accept_loop_knows() {
    let h = gateway().await;
    let addr = h.addr();
    // The upstream connection is open and pooled before the trace starts.
    raw_http(addr, get_request("a.example", "/", "", true)).await;
    let trace = Strace::attach(h.gw.pid(), "getpeername,getsockname,sendto,writev,write");
    trace
        .ready("GET /probe", async || {
            raw_http(addr, get_request("a.example", "/probe", "", true)).await;
        })
        .await;
    let before = trace.text().len();
    // New connections (the access log names each client and local address) and keep-alive
    // requests on them.
    for _ in 0..5 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            let resp = raw_exchange(
                &mut conn,
                get_request("a.example", "/", "", false).as_bytes(),
            )
            .await;
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        }
    }
    let text = trace.finish();
    let asked: Vec<&str> = text[before..]
        .lines()
        .filter(|l| l.contains("getpeername(") || l.contains("getsockname("))
        .collect();
    assert!(
        asked.is_empty(),
        "the gateway asked the kernel for addresses it knew:\n{}",
        asked.join("\n")
    );
}
