//! The real `portcullis` binary as a child process.
//!
//! [`GatewayProcess::start`] spawns `portcullis run --config <dir> [--certs <dir>] --admin
//! 127.0.0.1:<free port> --status-addr, --prometheus-addr, --merged-prometheus-addr
//! 127.0.0.1:<free port> --drain-duration 0 [--labels ..] [--port-map ..] <extra_args>` (a
//! later flag overrides an earlier one, so `extra_args` may set `--drain-duration` and the
//! addresses), captures stdout+stderr
//! line by line (echoed to the test's stderr as `[gw <pid>] ...`, shown by the test harness on
//! failure) and waits until `GET /healthz/ready` on the admin port answers 200.
//!
//! All waiting is async polling (`tokio::time::sleep`) with short intervals up to a deadline;
//! output is captured by two reader threads so it keeps flowing whatever the test does.
//! Tests normally reach this through [`Harness`](super::harness::Harness).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{get_request, try_raw_http, Resp};
use super::ports::free_port;

/// Poll interval for every wait in this module.
const POLL: Duration = Duration::from_millis(20);
/// How long [`GatewayProcess::start`] waits for readiness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`GatewayProcess::start`]. `GatewayOpts::new(dir)` or struct update syntax with
/// `..Default::default()`.
#[derive(Clone, Debug)]
pub struct GatewayOpts {
    pub config_dir: PathBuf,
    pub certs_dir: Option<PathBuf>,
    /// `--labels K=V,..`
    pub labels: Option<String>,
    /// `--port-map FROM:TO,..` (map the YAML's 80/443/... to ports from `free_port()`).
    pub port_map: Option<String>,
    /// Appended verbatim after the other arguments.
    pub extra_args: Vec<String>,
    /// Extra environment for the child (`RUST_LOG` here overrides the default `info`).
    pub env: Vec<(String, String)>,
    /// Wait for `/healthz/ready` == 200 (default true). With `false`, `start` returns right
    /// after spawning (for tests expecting a startup failure: use `wait_exit`).
    pub wait_ready: bool,
    /// Run with this open-file limit (soft and hard), to make `accept` fail with EMFILE.
    pub open_files: Option<u64>,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            config_dir: PathBuf::new(),
            certs_dir: None,
            labels: None,
            port_map: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            wait_ready: true,
            open_files: None,
        }
    }
}

impl GatewayOpts {
    /// Defaults with `config_dir`.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        GatewayOpts {
            config_dir: config_dir.into(),
            ..Default::default()
        }
    }
}

/// `--port-map` value from `(from, to)` pairs: `port_map(&[(80, p1), (443, p2)])` →
/// `"80:p1,443:p2"`.
pub fn port_map(pairs: &[(u16, u16)]) -> String {
    pairs
        .iter()
        .map(|(f, t)| format!("{f}:{t}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running gateway process. Drop sends SIGKILL if it is still running.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    pid: u32,
    admin: SocketAddr,
    /// `--status-addr`, `--prometheus-addr`, `--merged-prometheus-addr` (as passed first).
    probes: [SocketAddr; 3],
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

/// Removes ANSI colour escapes (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spawn_reader(
    pid: u32,
    stream: impl Read + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line =
                        strip_ansi(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']));
                    eprintln!("[gw {pid}] {line}");
                    logs.lock().unwrap().push(line);
                }
            }
        }
    })
}

/// `GET path` on `addr` (a new connection, `Connection: close`); returns `(status, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let raw = try_raw_http(addr, get_request(&addr.to_string(), path, "", true)).await?;
    let resp = Resp::try_parse(&raw)
        .ok_or_else(|| std::io::Error::other(format!("bad response: {raw:?}")))?;
    Ok((resp.status, resp.body))
}

/// `method path` on `addr` (a new connection, `Connection: close`, no body); returns
/// `(status, body)`.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let raw = try_raw_http(addr, request).await?;
    let resp = Resp::try_parse(&raw)
        .ok_or_else(|| std::io::Error::other(format!("bad response: {raw:?}")))?;
    Ok((resp.status, resp.body))
}

impl GatewayProcess {
    /// Spawns the gateway and (unless `wait_ready == false`) waits up to 30 s for
    /// `/healthz/ready` == 200. Panics with the captured logs if the process exits first or the
    /// deadline passes.
    pub async fn start(opts: GatewayOpts) -> GatewayProcess {
        let mut gw = Self::spawn(&opts);
        if opts.wait_ready {
            gw.wait_ready(READY_TIMEOUT).await;
        }
        gw
    }

    fn spawn(opts: &GatewayOpts) -> GatewayProcess {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("run").arg("--config").arg(&opts.config_dir);
        if let Some(c) = &opts.certs_dir {
            cmd.arg("--certs").arg(c);
        }
        cmd.arg("--admin").arg(admin.to_string());
        let probes = [0; 3].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
        for (flag, addr) in [
            "--status-addr",
            "--prometheus-addr",
            "--merged-prometheus-addr",
        ]
        .iter()
        .zip(probes)
        {
            cmd.arg(flag).arg(addr.to_string());
        }
        // SIGTERM stops accepting at once unless a test asks for a drain duration.
        cmd.arg("--drain-duration").arg("0");
        if let Some(l) = &opts.labels {
            cmd.arg("--labels").arg(l);
        }
        if let Some(p) = &opts.port_map {
            cmd.arg("--port-map").arg(p);
        }
        cmd.args(&opts.extra_args);
        if !opts.env.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd));
        let pid = child.id();
        eprintln!("[gw {pid}] spawned: {cmd:?}");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            spawn_reader(pid, child.stdout.take().unwrap(), logs.clone()),
            spawn_reader(pid, child.stderr.take().unwrap(), logs.clone()),
        ];
        GatewayProcess {
            child,
            pid,
            admin,
            probes,
            logs,
            readers,
            exit: None,
        }
    }

    /// Polls `/healthz/ready` until 200; panics (with logs) on early exit or after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.finish_readers().await;
                panic!(
                    "gateway exited before becoming ready: {status}\n--- logs ---\n{}",
                    self.logs().join("\n")
                );
            }
            match http_get(self.admin, "/healthz/ready").await {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("status {code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.finish_readers().await;
                panic!(
                    "gateway not ready within {timeout:?} (last: {last})\n--- logs ---\n{}",
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (up to 5 s) for the output readers to reach the end of the exited process's pipes.
    async fn finish_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        self.readers.retain(|r| !r.is_finished());
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The `--status-addr` listener (Istio's 15021).
    pub fn status_addr(&self) -> SocketAddr {
        self.probes[0]
    }

    /// The `--prometheus-addr` listener (Envoy's 15090).
    pub fn prometheus_addr(&self) -> SocketAddr {
        self.probes[1]
    }

    /// The `--merged-prometheus-addr` listener (istio-agent's 15020).
    pub fn merged_prometheus_addr(&self) -> SocketAddr {
        self.probes[2]
    }

    /// `http://127.0.0.1:<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// GET on the admin port; returns `(status, body)`; panics if unreachable.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await.unwrap_or_else(|e| {
            panic!(
                "admin GET {path}: {e}\n--- logs ---\n{}",
                self.logs().join("\n")
            )
        })
    }

    /// POST on the admin port (no body); returns `(status, body)`; panics if unreachable.
    pub async fn admin_post(&self, path: &str) -> (u16, String) {
        http_request(self.admin, "POST", path)
            .await
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"))
    }

    /// All captured output lines so far (stdout and stderr interleaved in arrival order,
    /// ANSI colours stripped).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Number of lines captured so far: pass to [`wait_for_log_after`](Self::wait_for_log_after)
    /// to only match lines logged after this point.
    pub fn log_mark(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Whether any captured line contains `substr`.
    pub fn logs_contain(&self, substr: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(substr))
    }

    /// Waits until some line (including earlier ones) contains `substr`; returns it.
    /// Panics with all logs after `timeout`.
    pub async fn wait_for_log(&self, substr: &str, timeout: Duration) -> String {
        self.wait_for_log_after(0, substr, timeout).await
    }

    /// Like [`wait_for_log`](Self::wait_for_log) but only lines with index >= `mark`.
    pub async fn wait_for_log_after(&self, mark: usize, substr: &str, timeout: Duration) -> String {
        self.wait_for_line(mark, timeout, &format!("{substr:?}"), |l| {
            l.contains(substr)
        })
        .await
    }

    /// Waits until some line contains every one of `needles`; returns it.
    pub async fn wait_for_log_all(&self, needles: &[&str], timeout: Duration) -> String {
        self.wait_for_line(0, timeout, &format!("all of {needles:?}"), |l| {
            needles.iter().all(|n| l.contains(n))
        })
        .await
    }

    /// Waits until a line with index >= `mark` satisfies `pred`; panics with all logs (saying
    /// it looked for `what`) after `timeout`.
    pub async fn wait_for_line(
        &self,
        mark: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .skip(mark)
                .find(|l| pred(l))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {what} within {timeout:?}\n--- logs ---\n{}",
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"KILL"`, ...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{name} {} failed: {st}", self.pid);
    }

    /// SIGTERM (graceful shutdown / drain).
    pub fn sigterm(&self) {
        self.signal("TERM")
    }

    /// SIGHUP (reload).
    pub fn sighup(&self) {
        self.signal("HUP")
    }

    /// Whether the process has exited (non-blocking).
    pub fn has_exited(&mut self) -> bool {
        self.try_exit_status().is_some()
    }

    /// Waits for the process to exit; panics with logs after `timeout`. All output is captured
    /// when this returns.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit_status() {
                self.finish_readers().await;
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "gateway did not exit within {timeout:?}\n--- logs ---\n{}",
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if self.try_exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
