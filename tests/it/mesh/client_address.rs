//! The real client address: `gatewayTopology.numTrustedProxies` (Envoy `xff_num_trusted_hops`
//! with `use_remote_address`, source/common/http/conn_manager_utility.cc) and
//! `gatewayTopology.proxyProtocol` (Envoy's proxy_protocol listener filter), with real senders:
//! HAProxy (`send-proxy`, `send-proxy-v2`) and `curl --haproxy-protocol`.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;
use crate::support::client::{get_request, try_raw_http, Resp};

const DEFAULT_LOG: &str = "accessLogFile: /dev/stdout\n";

/// With numTrustedProxies: 2 the client is the 2nd address from the right of the XFF the
/// gateway received: it is `%DOWNSTREAM_REMOTE_ADDRESS%` (port 0, as Envoy parses it from the
/// header); the backend (and the log) see the XFF with the peer appended.
#[tokio::test]
async fn num_trusted_proxies_takes_the_client_from_x_forwarded_for() {
    let mesh = MeshDir::new(&format!(
        "{DEFAULT_LOG}defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n"
    ));
    let h = gateway_with_mesh(&mesh, &[]).await;
    let id = request_id();
    let r = send(
        h.request(reqwest::Method::GET, "mesh.example.com", "/p")
            .header("user-agent", &id)
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.7,10.0.0.5"),
    )
    .await;
    let seen = echo(r).await;
    // conn_manager_utility.cc: the external address is the trusted client
    // (`final_remote_address`); the peer is what is appended to x-forwarded-for.
    assert_eq!(
        echoed_header(&seen, "x-envoy-external-address"),
        ["203.0.113.7"]
    );
    let forwarded = echoed_header(&seen, "x-forwarded-for");
    assert_eq!(
        xff_list(&forwarded.join(",")),
        ["198.51.100.1", "203.0.113.7", "10.0.0.5", "127.0.0.1"]
    );
    let line = access_line(&h, &id).await;
    assert_eq!(line.get("downstream_remote_address"), "203.0.113.7:0");
    assert_eq!(
        xff_list(line.get("x_forwarded_for")),
        ["198.51.100.1", "203.0.113.7", "10.0.0.5", "127.0.0.1"]
    );

    // Fewer addresses than trusted hops: the peer is the client, as in Envoy.
    assert_peer_is_client_despite_xff(&h).await;
}

/// Without numTrustedProxies a client's own x-forwarded-for is never believed.
#[tokio::test]
async fn without_trusted_proxies_the_peer_is_the_client() {
    let mesh = MeshDir::new(DEFAULT_LOG);
    let h = gateway_with_mesh(&mesh, &[]).await;
    assert_peer_is_client_despite_xff(&h).await;
}

/// A request whose x-forwarded-for is not trusted is logged with the TCP peer as the client.
async fn assert_peer_is_client_despite_xff(h: &Harness) {
    let id = request_id();
    get_with_id(h, &id, &[("x-forwarded-for", "203.0.113.7")]).await;
    let line = access_line(h, &id).await;
    assert!(
        line.get("downstream_remote_address")
            .starts_with("127.0.0.1:"),
        "{line:?}"
    );
}

pub fn proxy_protocol_mesh() -> MeshDir {
    MeshDir::new(&format!(
        "{DEFAULT_LOG}defaultConfig:\n  gatewayTopology:\n    proxyProtocol: {{}}\n"
    ))
}

/// HAProxy in TCP mode in front of the gateway, sending the PROXY header (`send-proxy` or
/// `send-proxy-v2`) to `gateway`. Stopped on drop.
struct Haproxy {
    child: tokio::process::Child,
    _dir: ConfigDir,
    front: SocketAddr,
}

impl Haproxy {
    async fn start(gateway: SocketAddr, send_proxy: &str) -> Haproxy {
        if std::process::Command::new("haproxy")
            .arg("-v")
            .output()
            .is_err()
        {
            panic!("haproxy is not installed: run ./scripts/setup (it installs the Debian package haproxy)");
        }
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = ConfigDir::new();
        let cfg = dir.write(
            "haproxy.cfg",
            &format!(
                "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind {front}\n  default_backend gw\nbackend gw\n  server gw {gateway} {send_proxy}\n"
            ),
        );
        let child = tokio::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");
        eventually(WAIT, "haproxy listening", async || {
            TcpStream::connect(front).await.is_ok()
        })
        .await;
        Haproxy {
            child,
            _dir: dir,
            front,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Sends a GET from `source` (a loopback address other than HAProxy's own) to `to`; returns
/// the response and the client's own address.
async fn get_from(source: [u8; 4], to: SocketAddr, id: &str) -> (Resp, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    let me = s.local_addr().unwrap();
    // The id rides in the path: the access log shows it (a client's x-request-id is replaced).
    let req = get_request("mesh.example.com", &format!("/p?id={id}"), "", true);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    (Resp::parse(&String::from_utf8_lossy(&buf)), me)
}

/// The PROXY header's source is the client: HAProxy connects from 127.0.0.1, the client
/// from 127.0.0.2; the log, and the XFF the backend sees, name the client.
async fn haproxy_sends_the_client_address(send_proxy: &str) {
    let mesh = proxy_protocol_mesh();
    let h = gateway_with_mesh(&mesh, &[]).await;
    let haproxy = Haproxy::start(h.addr(), send_proxy).await;
    let id = request_id();
    let (resp, me) = get_from([127, 0, 0, 2], haproxy.front, &id).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let line = access_line(&h, &id).await;
    assert_eq!(line.get("downstream_remote_address"), me.to_string());
    let seen: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(echoed_header(&seen, "x-forwarded-for"), ["127.0.0.2"]);
}

#[tokio::test]
async fn proxy_protocol_v1_from_haproxy_gives_the_client_address() {
    haproxy_sends_the_client_address("send-proxy").await;
}

#[tokio::test]
async fn proxy_protocol_v2_from_haproxy_gives_the_client_address() {
    haproxy_sends_the_client_address("send-proxy-v2").await;
}

/// curl's `--haproxy-protocol` (v1) is accepted; the same request without it is refused.
#[tokio::test]
async fn curl_with_haproxy_protocol_is_served_and_a_connection_without_the_header_is_refused() {
    let mesh = proxy_protocol_mesh();
    let h = gateway_with_mesh(&mesh, &[]).await;
    let id = request_id();
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--haproxy-protocol",
            "--interface",
            "127.0.0.3",
            "-H",
            "Host: mesh.example.com",
        ])
        .args([
            "-H",
            &format!("user-agent: {id}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(h.url("/p"))
        .output()
        .await
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let line = access_line(&h, &id).await;
    assert!(
        line.get("downstream_remote_address")
            .starts_with("127.0.0.3:"),
        "{line:?}"
    );

    // Envoy's listener filter closes a connection that does not start with the header.
    let id = request_id();
    let raw = try_raw_http(
        h.addr(),
        get_request("mesh.example.com", &format!("/p?id={id}"), "", true),
    )
    .await
    .unwrap_or_default();
    assert_eq!(raw, "", "answered without a PROXY header");
}
