//! Certificates change without a restart: a rewritten credential (plain files, or kubelet's
//! `..data` symlink swap) is served to new handshakes within 2 s while handshakes keep
//! succeeding; a broken file is logged and the previous certificate stays; a certificate close
//! to expiry is a warning at start-up and in `portcullis check`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::support::certs::{swap_k8s_credential, write_credential_k8s_style};
use crate::support::cli::run_check;

const HOST: &str = "rot.example.com";

/// Verified handshakes with [`HOST`] back to back until stopped, counting successes per
/// certificate and recording every failure.
struct HandshakeLoop {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Result<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HandshakeLoop {
    fn start(addr: SocketAddr, root: &Ca) -> HandshakeLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v, root) = (stop.clone(), seen.clone(), root.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let r = handshake(addr, Some(HOST), Some(&root)).await;
                v.lock().unwrap().push(r.map(|i| i.sha256));
            }
        });
        HandshakeLoop { stop, seen, task }
    }

    fn count(&self, sha256: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|r| r.as_deref() == Ok(sha256)).count()
    }

    /// Stops the loop; returns (handshakes made, failures).
    async fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let seen = self.seen.lock().unwrap();
        let failures = seen.iter().filter_map(|r| r.clone().err()).collect();
        (seen.len(), failures)
    }
}

async fn start_edge(certs: ConfigDir) -> Harness {
    edge(
        certs,
        &[443],
        &[&gateway("edge", vec![https(443, &[HOST], simple("rot"))])],
    )
    .await
}

/// Starts with `old`, rotates to `new` with `rotate` while a handshake loop runs.
async fn rotate_under_load(k8s: bool) {
    let root = Ca::new("Rotation Root");
    let old = root.server_cert(&[HOST]);
    let new = root.server_cert(&[HOST]);
    let certs = ConfigDir::new();
    if k8s {
        write_credential_k8s_style(certs.path(), "rot", &old, None);
    } else {
        write_credential(certs.path(), "rot", &old, None);
    }
    let edge = start_edge(certs).await;
    let addr = edge.addr_of(443);
    assert_eq!(served_cert(addr, Some(HOST)).await, old.sha256_hex());

    let load = HandshakeLoop::start(addr, &root);
    eventually(
        Duration::from_secs(5),
        "loop running on the old certificate",
        async || load.count(&old.sha256_hex()) >= 5,
    )
    .await;
    if k8s {
        swap_k8s_credential(edge.certs.path(), "rot", &new, None);
    } else {
        write_credential(edge.certs.path(), "rot", &new, None);
    }
    eventually(
        Duration::from_secs(2),
        "the new certificate is served",
        async || served_cert(addr, Some(HOST)).await == new.sha256_hex(),
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "loop sees the new certificate",
        async || load.count(&new.sha256_hex()) >= 5,
    )
    .await;
    let (made, failures) = load.stop().await;
    assert!(made >= 10, "{made} handshakes");
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "failed handshakes during rotation"
    );
    edge.gw
        .wait_for_log("reload ok", Duration::from_secs(1))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rewriting_credential_files_needs_no_restart() {
    rotate_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_kubelet_symlink_swap_needs_no_restart() {
    rotate_under_load(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_to_a_broken_file_is_logged_and_the_previous_certificate_kept() {
    let root = Ca::new("Broken Rotation Root");
    let old = root.server_cert(&[HOST]);
    let certs = ConfigDir::new();
    write_credential(certs.path(), "rot", &old, None);
    let edge = start_edge(certs).await;
    let addr = edge.addr_of(443);
    let load = HandshakeLoop::start(addr, &root);

    let mark = edge.gw.log_mark();
    edge.certs.write(
        "rot/tls.crt",
        "-----BEGIN CERTIFICATE-----\nthis is not base64 DER!\n-----END CERTIFICATE-----\n",
    );
    // Envoy keeps a secret whose update it cannot use (SDS NACK): the server keeps its last
    // good certificate rather than being left out.
    let line = edge
        .gw
        .wait_for_log_after(
            mark,
            "tls.crt is not a PEM certificate",
            Duration::from_secs(5),
        )
        .await;
    assert!(line.contains("rot/tls.crt"), "{line}");
    assert!(
        line.contains("Warning [IST0161]") && line.contains("its last good contents keep serving"),
        "{line}"
    );
    assert_eq!(served_cert(addr, Some(HOST)).await, old.sha256_hex());
    eventually(Duration::from_secs(5), "handshakes continue", async || {
        load.count(&old.sha256_hex()) >= 10
    })
    .await;

    // A good file afterwards is picked up.
    let new = root.server_cert(&[HOST]);
    write_credential(edge.certs.path(), "rot", &new, None);
    eventually(
        Duration::from_secs(2),
        "the next good certificate is served",
        async || served_cert(addr, Some(HOST)).await == new.sha256_hex(),
    )
    .await;
    let (_, failures) = load.stop().await;
    assert_eq!(failures, Vec::<String>::new(), "failed handshakes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiring_within_30_days_warns_in_log_and_check() {
    let root = Ca::new("Expiry Root");
    let soon = root.server_cert_with(CertOpts {
        validity_days: 10,
        ..CertOpts::sans(&["soon.example.com"])
    });
    let later = root.server_cert_with(CertOpts {
        validity_days: 45,
        ..CertOpts::sans(&["later.example.com"])
    });
    let certs = credentials(&[("soon", &soon, None), ("later", &later, None)]);
    let edge = edge(
        certs,
        &[443],
        &[&gateway(
            "edge",
            vec![
                https(443, &["soon.example.com"], simple("soon")),
                https(443, &["later.example.com"], simple("later")),
            ],
        )],
    )
    .await;
    let line = edge
        .gw
        .wait_for_log("expires in", Duration::from_secs(5))
        .await;
    assert!(
        line.contains("WARN") && line.contains("soon.example.com") && line.contains("soon/tls.crt"),
        "{line}"
    );
    assert!(
        !edge
            .gw
            .logs()
            .iter()
            .any(|l| l.contains("expire") && l.contains("later.example.com")),
        "a certificate valid for 45 days is not warned about"
    );

    let (code, stdout, stderr) = run_check(edge.config.path(), Some(edge.certs.path())).await;
    assert_eq!(code, 0, "warnings only: {stdout}{stderr}");
    let warning = stdout
        .lines()
        .find(|l| l.contains("expires in"))
        .unwrap_or_else(|| panic!("no expiry warning in check output:\n{stdout}"));
    assert!(
        warning.contains("Warning") && warning.contains("soon.example.com"),
        "{warning}"
    );
    assert!(!stdout.contains("later.example.com"), "{stdout}");
}
