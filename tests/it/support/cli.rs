//! One-shot `portcullis` subcommands (`check`, `routes`, anything else) with captured output.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Limit for a one-shot command; the child is killed and the test panics past it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `portcullis <args>`; returns `(exit_code, stdout, stderr)` (`exit_code` is -1 if
/// killed by a signal). `RUST_LOG` is not set (inherited), `NO_COLOR=1`.
pub async fn run_cli(args: &[&str]) -> (i32, String, String) {
    run(args, None).await
}

/// [`run_cli`] with `input` on the command's standard input.
pub async fn run_cli_with_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    run(args, Some(input)).await
}

async fn run(args: &[&str], input: Option<&str>) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Past the deadline the future is dropped: the child must not outlive it.
        .kill_on_drop(true)
        .spawn()
        .expect("spawn portcullis");
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await.expect("write stdin");
    }
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("portcullis {args:?} did not finish within {CLI_TIMEOUT:?}"))
        .expect("wait for portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `portcullis check --config <config_dir> [--certs <certs_dir>]` → `(code, stdout, stderr)`;
/// code 0 valid, 1 invalid config, 2 usage error.
pub async fn run_check(config_dir: &Path, certs_dir: Option<&Path>) -> (i32, String, String) {
    let cfg = config_dir.to_string_lossy().into_owned();
    let mut args = vec!["check", "--config", cfg.as_str()];
    let certs = certs_dir.map(|c| c.to_string_lossy().into_owned());
    if let Some(c) = &certs {
        args.extend(["--certs", c.as_str()]);
    }
    run_cli(&args).await
}

/// `portcullis routes --config <config_dir> <args..>` → `(code, stdout, stderr)`.
pub async fn run_routes(config_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let cfg = config_dir.to_string_lossy().into_owned();
    let mut all = vec!["routes", "--config", cfg.as_str()];
    all.extend_from_slice(args);
    run_cli(&all).await
}
