//! `curl -x` as a user would run it against the egress gateway: plain HTTP (the gateway
//! originates TLS) and HTTPS (curl sends CONNECT and does its own TLS).

use std::process::{Command, Output};

use super::*;

/// Runs `/usr/bin/curl` with no proxy settings from the environment.
fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("/usr/bin/curl");
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "CURL_HOME",
    ] {
        cmd.env_remove(v);
    }
    cmd.args(["-sS", "--max-time", "10", "-q"]).args(args);
    cmd.output().expect("run /usr/bin/curl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_x_proxy_reaches_registered_hosts_over_http_and_https() {
    let pki = Pki::new(&[]);
    let upstream = https_upstream("api", &pki).await;
    let tls_port = upstream.port();
    let eg = egress(&[
        &service_entry(
            "api",
            API,
            &[
                (80, "http", "HTTP", upstream.port()),
                (tls_port, "https", "HTTPS", upstream.port()),
            ],
        ),
        &destination_rule(
            "api",
            API,
            TrafficPolicy::new().port_level(80, originate(&pki)),
        ),
    ])
    .await;
    let proxy = format!("http://127.0.0.1:{}", eg.port());

    // http:// through the proxy: absolute-form, TLS originated by the gateway.
    let o = curl(&[
        "-x",
        &proxy,
        "--proxy-user",
        "egress:proxy-secret",
        &format!("http://{API}/curl-plain"),
        "-w",
        "\n%{http_code}",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "curl: {out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.ends_with("\n200"), "{out}");
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/curl-plain");
    assert_eq!(seen.authority.as_deref(), Some(API));
    assert!(seen.tls);
    assert!(seen.header("user-agent").unwrap().starts_with("curl/"));
    // Hop-by-hop proxy fields stay at the gateway: proxy credentials never leave it.
    assert_eq!(
        seen.header("proxy-authorization"),
        None,
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("proxy-connection"), None, "{:?}", seen.headers);

    // https:// through the proxy: curl sends CONNECT api.example.test:<port> and verifies the
    // upstream's certificate itself (no --resolve: the gateway resolves the name).
    let url = format!("https://{API}:{tls_port}/curl-tls");
    let o = curl(&[
        "-x",
        &proxy,
        &url,
        "--cacert",
        &pki.ca_path(),
        "-w",
        "\n%{http_code}",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "curl: {out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.ends_with("\n200"), "{out}");
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.path, "/curl-tls");
    assert_eq!(seen.sni.as_deref(), Some(API), "curl's own TLS, end to end");
    assert!(seen.header("user-agent").unwrap().starts_with("curl/"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        None,
        "the gateway did not terminate it"
    );
    log_line(&eg, &[&format!("\"CONNECT {API}:{tls_port} "), " 200 "]).await;

    // An unregistered https:// host: the CONNECT is refused and curl says so.
    let o = curl(&[
        "-x",
        &proxy,
        "https://blocked.example.test/",
        "--cacert",
        &pki.ca_path(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(err.contains("403"), "curl reports the proxy's 403: {err}");
}
