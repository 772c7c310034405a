//! Mesh settings on an HTTPS server: PROXY protocol before the ClientHello, and
//! `forwardClientCertDetails` (Envoy's XFCC modes, conn_manager_utility.cc
//! `mutateXfccRequestHeader`) with a real client certificate sent by curl.

use std::path::PathBuf;

use super::client_address::proxy_protocol_mesh;
use super::*;
use crate::support::certs::write_credential;
use crate::support::yaml::*;

/// An HTTPS gateway for `secure.example.com` (client certificates from `client_ca` required
/// when given) routing to backend `be`, reading `mesh`; and the server CA's PEM file.
async fn https_gateway(mesh: &MeshDir, client_ca: Option<&Ca>) -> (Harness, PathBuf) {
    let ca = Ca::new("mesh-it-ca");
    let certs = ConfigDir::new();
    let server = ca.server_cert(&["secure.example.com"]);
    write_credential(certs.path(), "edge", &server, client_ca);
    let ca_file = ca.write_root_pem(certs.path(), "ca.pem");
    let tls = match client_ca {
        Some(_) => ServerTls::mutual("edge"),
        None => ServerTls::simple("edge"),
    };
    let gateway =
        Gateway::new("edge").server(Server::https(443, tls).hosts(&["secure.example.com"]));
    let vs = VirtualService::new("secure")
        .hosts(&["secure.example.com"])
        .gateways(&["edge"])
        .http(HttpRoute::new().name("logged").to(&svc("be")));
    let path = mesh.path();
    let h = Harness::builder()
        .certs(certs)
        .port(443)
        .backend(Backend::http("be").await)
        .resources("edge.yaml", &[&gateway, &vs])
        .args(&["--mesh", &path])
        .start()
        .await;
    (h, ca_file)
}

/// `curl https://secure.example.com:PORT/p` with `args`; returns (status, body).
async fn curl_https(h: &Harness, ca_file: &PathBuf, args: &[&str]) -> (String, String) {
    let port = h.port_of(443);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(ca_file)
        .args(["--resolve", &format!("secure.example.com:{port}:127.0.0.1")])
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://secure.example.com:{port}/p"))
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), body.to_string())
}

/// PROXY protocol in front of TLS (an NLB passing TLS through to the gateway): the header
/// comes before the ClientHello; the certificate is still chosen by SNI and the client is the
/// header's source.
#[tokio::test]
async fn proxy_protocol_precedes_tls_on_an_https_server() {
    let mesh = proxy_protocol_mesh();
    let (h, ca_file) = https_gateway(&mesh, None).await;
    let id = request_id();
    let rid = format!("user-agent: {id}");
    let args = ["--haproxy-protocol", "--interface", "127.0.0.4", "-H", &rid];
    let (status, _) = curl_https(&h, &ca_file, &args).await;
    assert_eq!(status, "200");
    let line = access_line(&h, &id).await;
    assert!(
        line.get("downstream_remote_address")
            .starts_with("127.0.0.4:"),
        "{line:?}"
    );
    assert_eq!(line.get("requested_server_name"), "secure.example.com");
}

/// APPEND_FORWARD keeps the XFCC a trusted proxy sent and appends this connection's client
/// certificate; SANITIZE drops both.
#[tokio::test]
async fn forward_client_cert_details_follows_envoys_modes() {
    let client_ca = Ca::new("mesh-it-client-ca");
    let client = client_ca.client_cert("mesh-client", &["spiffe://mesh.test/sa/client"]);
    let dir = ConfigDir::new();
    let (cert, key) = client.write_files(dir.path(), "client");
    let topology = |mode: &str| {
        format!("accessLogFile: /dev/stdout\ndefaultConfig:\n  gatewayTopology:\n    forwardClientCertDetails: {mode}\n")
    };
    let mesh = MeshDir::new(&topology("APPEND_FORWARD"));
    let (h, ca_file) = https_gateway(&mesh, Some(&client_ca)).await;
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let args = [
        "--cert",
        &*cert,
        "--key",
        &*key,
        "-H",
        "x-forwarded-client-cert: By=spiffe://lb.test",
    ];
    let (status, body) = curl_https(&h, &ca_file, &args).await;
    assert_eq!(status, "200", "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    let xfcc = echoed_header(&seen, "x-forwarded-client-cert").join(",");
    let hash = format!("Hash={}", client.sha256_hex());
    assert!(xfcc.starts_with("By=spiffe://lb.test,"), "{xfcc}");
    assert!(xfcc.contains(&hash), "{xfcc}");

    let generation = h.generation().await;
    mesh.write(&topology("SANITIZE"));
    h.wait_generation_after(generation, APPLY).await;
    let (status, body) = curl_https(&h, &ca_file, &args).await;
    assert_eq!(status, "200", "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed_header(&seen, "x-forwarded-client-cert"),
        Vec::<String>::new()
    );
}
