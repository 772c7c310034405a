//! The egress checkpoint (`--labels istio=egressgateway`): internal clients reach external hosts
//! only if a ServiceEntry lists them, over pooled upstream connections with TLS originated by
//! the gateway where a DestinationRule says so.
//!
//! A local HTTPS [`Backend`] with a certificate for `api.example.test` from a test CA stands in
//! for the external service; ServiceEntries point the external name at it (STATIC 127.0.0.1, or
//! DNS via `localhost`), DestinationRules originate TLS trusting the test CA's file.
//!
//! What is specific to egress lives here: [`Pki`] (CA, server certificate, files), [`egress`]
//! (the shared [`Harness`] with `--labels istio=egressgateway` and an egress Gateway on HTTP port
//! 80 mapped to a free port), the ServiceEntry / DestinationRule shapes the tests repeat, and
//! raw client helpers for the forward-proxy modes (absolute-form, CONNECT).

mod breakers;
mod curl;
mod istio_shape;
mod modes;
mod origination;
mod pools;
mod refusals;

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

pub use crate::support::client::Resp;
use crate::support::client::{get_request, raw_exchange};
pub use crate::support::yaml::*;
use crate::support::*;

/// The external host the tests reach.
pub const API: &str = "api.example.test";
pub const WAIT: Duration = Duration::from_secs(10);

/// The test PKI: a CA, a server certificate for [`API`] (and any extra names), the CA root
/// written to `dir/ca.pem` for DestinationRule `caCertificates`.
pub struct Pki {
    pub ca: Ca,
    pub dir: ConfigDir,
    pub ca_file: PathBuf,
    pub server: CertKey,
}

impl Pki {
    /// CA + server certificate for `api.example.test` and `extra_sans`.
    pub fn new(extra_sans: &[&str]) -> Pki {
        let ca = Ca::new("Egress Test CA");
        let dir = ConfigDir::new();
        let ca_file = ca.write_root_pem(dir.path(), "ca.pem");
        let mut sans = vec![API];
        sans.extend_from_slice(extra_sans);
        let server = ca.server_cert(&sans);
        Pki {
            ca,
            dir,
            ca_file,
            server,
        }
    }

    pub fn ca_path(&self) -> String {
        self.ca_file.display().to_string()
    }

    /// Writes a client certificate (chain + key) signed by `ca`; returns the file paths.
    pub fn client_cert_files(&self, ca: &Ca, cn: &str) -> (String, String) {
        let ck = ca.client_cert(cn, &[]);
        let (c, k) = ck.write_files(self.dir.path(), cn);
        (c.display().to_string(), k.display().to_string())
    }
}

/// The HTTPS stand-in for the external service.
pub async fn https_upstream(name: &str, pki: &Pki) -> Backend {
    Backend::builder(name).tls(pki.server.clone()).start().await
}

/// The egress Gateway every test uses unless it brings its own: HTTP on 80, any host.
pub fn egress_gateway() -> Gateway {
    Gateway::egress("egressgateway").server(Server::http(80).port_name("http"))
}

/// A STATIC ServiceEntry for `host` at 127.0.0.1; `ports`: (number, name, protocol, targetPort).
pub fn service_entry(name: &str, host: &str, ports: &[(u16, &str, &str, u16)]) -> ServiceEntry {
    ports.iter().fold(
        ServiceEntry::new(name)
            .hosts(&[host])
            .location("MESH_EXTERNAL")
            .resolution("STATIC")
            .endpoint(Endpoint::address("127.0.0.1")),
        |se, (number, name, protocol, target)| {
            se.port(Port::of(*number, name, protocol).target(*target))
        },
    )
}

/// A DestinationRule for `host` with `policy`.
pub fn destination_rule(name: &str, host: &str, policy: TrafficPolicy) -> DestinationRule {
    DestinationRule::new(name, host).policy(policy)
}

/// `tls: {mode: SIMPLE, caCertificates: <test CA>}`.
pub fn simple_tls(pki: &Pki) -> ClientTls {
    ClientTls::simple(&pki.ca_path())
}

/// A traffic policy originating TLS with [`simple_tls`].
pub fn originate(pki: &Pki) -> TrafficPolicy {
    TrafficPolicy::new().tls(simple_tls(pki))
}

/// The gateway as an egress checkpoint: [`egress_gateway`] plus `docs`, default flags
/// (REGISTRY_ONLY).
pub async fn egress(docs: &[&dyn Resource]) -> Harness {
    let gateway = egress_gateway();
    let mut all: Vec<&dyn Resource> = vec![&gateway];
    all.extend_from_slice(docs);
    egress_with(&all, &[]).await
}

/// Exactly `docs` (bring your own Gateway), with extra `portcullis run` arguments.
pub async fn egress_with(docs: &[&dyn Resource], extra_args: &[&str]) -> Harness {
    egress_yaml(&render(docs), extra_args).await
}

/// The YAML text `yaml` as the whole config, with extra `portcullis run` arguments; Gateway
/// port 80 is mapped to a free port, and the config is read once (`--watch false`).
pub async fn egress_yaml(yaml: &str, extra_args: &[&str]) -> Harness {
    Harness::builder()
        .labels("istio=egressgateway")
        .port(80)
        .file("egress.yaml", yaml)
        .args(&["--watch", "false"])
        .args(extra_args)
        .start()
        .await
}

/// Absolute-form `GET http://authority/path` on a new connection (an `HTTP_PROXY` client).
pub async fn get_absolute(eg: &Harness, authority: &str, path: &str) -> Resp {
    eg.raw(get_request(
        authority,
        &format!("http://{authority}{path}"),
        "",
        true,
    ))
    .await
}

/// `CONNECT target` on a new connection: the response head and, on 2xx, the open tunnel.
pub async fn connect(eg: &Harness, target: &str) -> (Resp, Option<TcpStream>) {
    let mut s = TcpStream::connect(eg.addr()).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read byte by byte up to the end of the head so nothing of the tunnel is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if (200..300).contains(&Resp::parse(&head).status) {
        return (Resp::parse(&head), Some(s));
    }
    let mut body = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut body)).await;
    (
        Resp::parse(&format!("{head}{}", String::from_utf8_lossy(&body))),
        None,
    )
}

/// Waits for an access-log line containing every one of `needles`; returns it.
pub async fn log_line(eg: &Harness, needles: &[&str]) -> String {
    eg.gw.wait_for_log_all(needles, WAIT).await
}

/// A TLS client handshake over an existing stream (a CONNECT tunnel), verifying the server
/// certificate against `ca` and the name `sni`.
pub async fn tls_over(tcp: TcpStream, sni: &str, ca: &Ca) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(ca.root.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    b.set_alpn_protos(b"\x08http/1.1").unwrap();
    let ssl = b.build().configure().unwrap().into_ssl(sni).unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    match tokio::time::timeout(WAIT, Pin::new(&mut s).connect()).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("TLS handshake through the tunnel timed out".into()),
    }
}

/// One HTTP/1.1 request over an established (tunnelled) TLS stream.
pub async fn https_get_over(s: &mut SslStream<TcpStream>, host: &str, path: &str) -> Resp {
    let req = get_request(host, path, "", true);
    Resp::parse(&raw_exchange(s, req.as_bytes()).await)
}

/// Distinct values in order of first appearance.
pub fn distinct<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}
