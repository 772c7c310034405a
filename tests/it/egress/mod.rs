//! The egress checkpoint (`--labels istio=egressgateway`): internal clients reach external hosts
//! only if a ServiceEntry lists them, over pooled upstream connections with TLS originated by
//! the gateway where a DestinationRule says so.
//!
//! A local HTTPS [`Backend`] with a certificate for `api.example.test` from a test CA stands in
//! for the external service; ServiceEntries point the external name at it (STATIC 127.0.0.1, or
//! DNS via `localhost`), DestinationRules originate TLS trusting the test CA's file.
//!
//! Shared setup lives here: [`Pki`] (CA, server certificate, files), [`Egress`] (the gateway
//! with an egress Gateway on HTTP port 80 mapped to a free port), YAML builders, raw client
//! helpers for the three client modes (Host header, absolute-form, CONNECT), and readers for
//! the admin `/stats` and `/metrics`.

mod breakers;
mod curl;
mod istio_shape;
mod modes;
mod origination;
mod pools;
mod refusals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::support::client::{raw_exchange, raw_http};
use crate::support::gateway::port_map;
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
pub const EGRESS_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egressgateway, namespace: default}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#;

/// A STATIC ServiceEntry for `host` at 127.0.0.1; `ports`: (number, name, protocol, targetPort).
pub fn service_entry(name: &str, host: &str, ports: &[(u16, &str, &str, u16)]) -> String {
    let ports: String = ports
        .iter()
        .map(|(n, name, proto, target)| {
            format!("  - {{number: {n}, name: {name}, protocol: {proto}, targetPort: {target}}}\n")
        })
        .collect();
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
  ports:
{ports}"#
    )
}

/// A DestinationRule for `host` with `traffic_policy` (YAML indented by 4 spaces).
pub fn destination_rule(name: &str, host: &str, traffic_policy: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {host}
  trafficPolicy:
{traffic_policy}"#
    )
}

/// `tls: {mode: SIMPLE, caCertificates: <test CA>}` as a 4-space-indented trafficPolicy body.
pub fn simple_tls(pki: &Pki) -> String {
    format!(
        "    tls: {{mode: SIMPLE, caCertificates: {}}}\n",
        pki.ca_path()
    )
}

/// YAML documents joined with `---`.
pub fn docs(parts: &[&str]) -> String {
    parts.join("\n---\n")
}

/// A running egress gateway with its config directory.
pub struct Egress {
    /// Kept for the gateway's lifetime (removed on drop).
    _cfg: ConfigDir,
    pub gw: Gateway,
    /// The listening port of Gateway port 80.
    pub port: u16,
}

impl Egress {
    /// [`EGRESS_GATEWAY`] plus `yaml`, default flags (REGISTRY_ONLY).
    pub fn start(yaml: &str) -> Egress {
        Self::start_with(&docs(&[EGRESS_GATEWAY, yaml]), &[])
    }

    /// Exactly `yaml` (bring your own Gateway), with extra `portcullis run` arguments.
    pub fn start_with(yaml: &str, extra_args: &[&str]) -> Egress {
        let port = free_port();
        let cfg = ConfigDir::new();
        cfg.write("egress.yaml", yaml);
        let mut args = vec!["--watch".to_string(), "false".to_string()];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let gw = Gateway::start(GatewayOpts {
            labels: Some("istio=egressgateway".into()),
            port_map: Some(port_map(&[(80, port)])),
            extra_args: args,
            ..GatewayOpts::new(cfg.path())
        });
        Egress {
            _cfg: cfg,
            gw,
            port,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `GET path` with `Host: host` on a new connection (host-addressed client).
    pub async fn get_host(&self, host: &str, path: &str) -> Resp {
        self.get_host_with(host, path, "").await
    }

    /// [`get_host`](Self::get_host) with extra header lines (each ending in `\r\n`).
    pub async fn get_host_with(&self, host: &str, path: &str, headers: &str) -> Resp {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: egress-it\r\n{headers}Connection: close\r\n\r\n"
        );
        Resp::parse(&raw_http(self.addr(), req).await)
    }

    /// Absolute-form `GET http://authority/path` on a new connection (an `HTTP_PROXY` client).
    pub async fn get_absolute(&self, authority: &str, path: &str) -> Resp {
        let req = format!(
            "GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: egress-it\r\nConnection: close\r\n\r\n"
        );
        Resp::parse(&raw_http(self.addr(), req).await)
    }

    /// `CONNECT target` on a new connection: the response head and, on 2xx, the open tunnel.
    pub async fn connect(&self, target: &str) -> (Resp, Option<TcpStream>) {
        let mut s = TcpStream::connect(self.addr()).await.unwrap();
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
        let mut resp = Resp::parse(&String::from_utf8_lossy(&head));
        if (200..300).contains(&resp.status) {
            return (resp, Some(s));
        }
        let mut body = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut body)).await;
        resp.body = String::from_utf8_lossy(&body).into_owned();
        (resp, None)
    }

    /// The `/stats` entry of `cluster`.
    pub fn cluster_stats(&self, cluster: &str) -> Value {
        let (code, body) = self.gw.admin_get("/stats");
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == cluster)
            .cloned()
            .unwrap_or_else(|| panic!("no cluster {cluster} in /stats: {body}"))
    }

    /// The value of a Prometheus sample (`name{labels}` exactly as rendered), 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (code, body) = self.gw.admin_get("/metrics");
        assert_eq!(code, 200);
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Waits for an access-log line containing every one of `needles`; returns it.
    pub fn log_line(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .gw
                .logs()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with all of {needles:?}\n--- logs ---\n{}",
                    self.gw.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A parsed raw HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn parse(text: &str) -> Resp {
        let status = crate::support::client::raw_status(text);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Resp {
            status,
            head: head.to_string(),
            body: if chunked {
                dechunk(body)
            } else {
                body.to_string()
            },
        }
    }

    /// The backend's JSON echo.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON echo ({e}): {} {}", self.head, self.body))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
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
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
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
