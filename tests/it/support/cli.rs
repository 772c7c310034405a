//! One-shot `portcullis` subcommands (`check`, `routes`, anything else) with captured output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Limit for a one-shot command; the child is killed and the test panics past it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `portcullis <args>`; returns `(exit_code, stdout, stderr)` (`exit_code` is -1 if
/// killed by a signal). `RUST_LOG` is not set (inherited), `NO_COLOR=1`.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "portcullis {args:?} did not finish within {CLI_TIMEOUT:?}; stderr:\n{}",
                t_err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// `portcullis check --config <config_dir> [--certs <certs_dir>]` → `(code, stdout, stderr)`;
/// code 0 valid, 1 invalid config, 2 usage error.
pub fn run_check(config_dir: &Path, certs_dir: Option<&Path>) -> (i32, String, String) {
    let cfg = config_dir.to_string_lossy().into_owned();
    let mut args = vec!["check", "--config", cfg.as_str()];
    let certs = certs_dir.map(|c| c.to_string_lossy().into_owned());
    if let Some(c) = &certs {
        args.extend(["--certs", c.as_str()]);
    }
    run_cli(&args)
}

/// `portcullis routes --config <config_dir> <args..>` → `(code, stdout, stderr)`.
pub fn run_routes(config_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let cfg = config_dir.to_string_lossy().into_owned();
    let mut all = vec!["routes", "--config", cfg.as_str()];
    all.extend_from_slice(args);
    run_cli(&all)
}
