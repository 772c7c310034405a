//! Real upstream servers on loopback for the gateway to proxy to.
//!
//! Each [`Backend`] runs on its own thread with its own single-threaded tokio runtime, so it
//! works from any test (any runtime flavour) and keeps serving whatever the test's own runtime
//! is busy with.
//! Dropping the `Backend` closes the listener and every open connection before `drop` returns.
//!
//! HTTP behaviour (paths are matched on the request path as received, query ignored):
//! - any path: `200` with a JSON echo body (see "Echo body" below), `x-backend: <name>`,
//!   `content-type: application/json`;
//! - `/status/<code>`: that status, same echo body (empty for 1xx/204/304);
//! - `/delay/<ms>`: sleeps, then echoes;
//! - `/bytes/<n>`: `n` bytes (`abc…z` repeated), `content-type: application/octet-stream`;
//! - `/stream/<n>`: `n` chunks of 1 KiB, 50 ms apart (a long in-flight response);
//! - `/reset`: the connection is closed without a response (an upstream reset);
//! - `Upgrade: websocket`: `101` with a correct `Sec-WebSocket-Accept`, then every byte
//!   received on the upgraded connection is written back unchanged (see [`super::ws`]);
//! - each request header `x-set-response-header: <name>: <value>` adds that response header;
//! - [`BackendBuilder::fail_first`] makes the first N requests answer a given status;
//! - [`BackendBuilder::delay`] makes every request wait before it is answered.
//!
//! # Echo body
//! `{"backend", "method", "path" (path+query), "version" ("HTTP/1.1"|"HTTP/2.0"),
//!   "authority" (Host header or :authority), "headers": {lower-case name: [values]},
//!   "body" (UTF-8, lossy), "tls", "sni", "alpn", "client_cert_cn", "client_cert_sans",
//!   "conn" (per-backend connection sequence number, from 1)}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use openssl::ssl::{
    AlpnError, NameType, SniError, Ssl, SslAcceptor, SslAlert, SslMethod, SslVerifyMode,
};
use openssl::stack::Stack;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::certs::{cert_sans, subject_cn, Ca, CertKey};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the backend saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as received (`/a/b?x=1`).
    pub path: String,
    /// `"HTTP/1.1"`, `"HTTP/2.0"`, ...
    pub version: String,
    /// Host header, or the `:authority` for HTTP/2.
    pub authority: Option<String>,
    /// Lower-case names, in received order, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub tls: bool,
    /// SNI the client sent (TLS backends only).
    pub sni: Option<String>,
    /// Negotiated ALPN protocol (TLS backends only).
    pub alpn: Option<String>,
    pub client_cert_cn: Option<String>,
    pub client_cert_sans: Vec<String>,
    /// Connection sequence number (1-based) on this backend: equal values = same connection.
    pub conn: u64,
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    connections: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_failures: AtomicU64,
    requests: AtomicU64,
    recorded: Mutex<Vec<RecordedRequest>>,
    fail_remaining: AtomicU64,
    fail_status: u16,
    delay: Duration,
}

/// Per-connection facts shared by all requests on it.
#[derive(Clone, Debug)]
struct ConnInfo {
    conn: u64,
    peer: SocketAddr,
    tls: bool,
    sni: Option<String>,
    alpn: Option<String>,
    client_cn: Option<String>,
    client_sans: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Auto,
    H1,
    H2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Http,
    Echo,
}

/// Configures a [`Backend`]; see [`Backend::builder`].
#[derive(Debug)]
pub struct BackendBuilder {
    name: String,
    tls: Option<CertKey>,
    alpn: Option<Vec<String>>,
    client_ca: Option<Ca>,
    strict_sni: Option<Vec<String>>,
    proto: Proto,
    mode: Mode,
    bind: SocketAddr,
    fail_first: (u64, u16),
    delay: Duration,
}

impl BackendBuilder {
    /// Serve TLS with this certificate (chain in `cert_pem` is sent).
    pub fn tls(mut self, cert: CertKey) -> Self {
        self.tls = Some(cert);
        self
    }

    /// ALPN protocols offered, in server preference order (e.g. `&["h2", "http/1.1"]`).
    /// Default follows the protocol mode: auto → `h2, http/1.1`; `http1_only` → `http/1.1`;
    /// `h2c_only` → `h2`. An empty slice disables ALPN (the server ignores the extension).
    pub fn alpn(mut self, protos: &[&str]) -> Self {
        self.alpn = Some(protos.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Require a client certificate chaining to `ca`'s root (handshake fails without one).
    /// The client cert's CN and SANs are recorded per request.
    pub fn client_ca(mut self, ca: Ca) -> Self {
        self.client_ca = Some(ca);
        self
    }

    /// Reject (fatal `unrecognized_name` alert) any ClientHello whose SNI is not in `names`,
    /// including one without SNI.
    pub fn strict_sni(mut self, names: &[&str]) -> Self {
        self.strict_sni = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// HTTP/2 only (h2c prior knowledge on plaintext; `h2` over TLS).
    pub fn h2c_only(mut self) -> Self {
        self.proto = Proto::H2;
        self
    }

    /// HTTP/1.x only.
    pub fn http1_only(mut self) -> Self {
        self.proto = Proto::H1;
        self
    }

    /// Bind this address instead of `127.0.0.1:0` (e.g. to restart a backend on the same port,
    /// or to use another loopback IP such as `127.0.0.2:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The first `n` HTTP requests are answered with `status` (echo body) before normal
    /// behaviour resumes: for retry tests.
    pub fn fail_first(mut self, n: u64, status: u16) -> Self {
        self.fail_first = (n, status);
        self
    }

    /// Every HTTP request waits `delay` (after it is recorded) before it is answered.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Instead of HTTP, echo raw bytes back (TCP, or TLS if `.tls()` was set).
    pub fn raw_echo(mut self) -> Self {
        self.mode = Mode::Echo;
        self
    }

    /// Binds and starts serving; the listener is accepting when this returns.
    pub async fn start(self) -> Backend {
        self.spawn()
    }

    fn spawn(self) -> Backend {
        let std_listener = std::net::TcpListener::bind(self.bind)
            .unwrap_or_else(|e| panic!("backend {} bind {}: {e}", self.name, self.bind));
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            connections: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            recorded: Mutex::new(Vec::new()),
            fail_remaining: AtomicU64::new(self.fail_first.0),
            fail_status: self.fail_first.1,
            delay: self.delay,
        });
        let acceptor = self.tls.as_ref().map(|ck| {
            Arc::new(build_acceptor(
                ck,
                self.alpn
                    .clone()
                    .unwrap_or_else(|| default_alpn(self.proto)),
                self.client_ca.as_ref(),
                self.strict_sni.clone(),
            ))
        });
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let proto = self.proto;
        let mode = self.mode;
        let thread = std::thread::Builder::new()
            .name(format!("backend-{}", self.name))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            res = listener.accept() => {
                                let Ok((tcp, peer)) = res else { continue };
                                let conn = sh.connections.fetch_add(1, Ordering::SeqCst) + 1;
                                let sh = sh.clone();
                                let acceptor = acceptor.clone();
                                tokio::spawn(handle_conn(tcp, peer, conn, sh, acceptor, proto, mode));
                            }
                        }
                    }
                });
                // Drops every connection task and its socket immediately.
                rt.shutdown_background();
            })
            .unwrap();
        Backend {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

fn default_alpn(proto: Proto) -> Vec<String> {
    match proto {
        Proto::Auto => vec!["h2".into(), "http/1.1".into()],
        Proto::H1 => vec!["http/1.1".into()],
        Proto::H2 => vec!["h2".into()],
    }
}

/// Parses an ALPN wire list (length-prefixed).
fn parse_alpn_list(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let l = wire[i] as usize;
        if i + 1 + l > wire.len() {
            break;
        }
        out.push(&wire[i + 1..i + 1 + l]);
        i += 1 + l;
    }
    out
}

fn build_acceptor(
    ck: &CertKey,
    alpn: Vec<String>,
    client_ca: Option<&Ca>,
    strict_sni: Option<Vec<String>>,
) -> SslAcceptor {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    let chain = ck.chain();
    b.set_certificate(&chain[0]).unwrap();
    for c in &chain[1..] {
        b.add_extra_chain_cert(c.clone()).unwrap();
    }
    b.set_private_key(&ck.pkey()).unwrap();
    b.check_private_key().unwrap();
    if !alpn.is_empty() {
        b.set_alpn_select_callback(move |_, client| {
            let offered = parse_alpn_list(client);
            alpn.iter()
                .find_map(|p| offered.iter().find(|o| **o == p.as_bytes()).copied())
                .ok_or(AlpnError::NOACK)
        });
    }
    if let Some(ca) = client_ca {
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        b.cert_store_mut().add_cert(ca.root.clone()).unwrap();
        let mut names = Stack::new().unwrap();
        names
            .push(ca.root.subject_name().to_owned().unwrap())
            .unwrap();
        b.set_client_ca_list(names);
    }
    if let Some(names) = strict_sni {
        b.set_servername_callback(
            move |ssl, alert| match ssl.servername(NameType::HOST_NAME) {
                Some(n) if names.iter().any(|x| x == n) => Ok(()),
                _ => {
                    *alert = SslAlert::UNRECOGNIZED_NAME;
                    Err(SniError::ALERT_FATAL)
                }
            },
        );
    }
    b.build()
}

async fn handle_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    sh: Arc<Shared>,
    acceptor: Option<Arc<SslAcceptor>>,
    proto: Proto,
    mode: Mode,
) {
    let _ = tcp.set_nodelay(true);
    let mut info = ConnInfo {
        conn,
        peer,
        tls: false,
        sni: None,
        alpn: None,
        client_cn: None,
        client_sans: Vec::new(),
    };
    match acceptor {
        None => match mode {
            Mode::Echo => echo_bytes(tcp).await,
            Mode::Http => serve_http(tcp, info, sh, proto).await,
        },
        Some(acc) => {
            let ssl = Ssl::new(acc.context()).unwrap();
            let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
            if Pin::new(&mut s).accept().await.is_err() {
                sh.tls_failures.fetch_add(1, Ordering::SeqCst);
                // Close gracefully: send FIN and drain what the client already sent, so the
                // kernel does not answer unread data with a RST that could destroy the TLS
                // alert before the client reads it.
                let tcp = s.get_mut();
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 4096];
                let drain = async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} };
                let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
                return;
            }
            sh.tls_handshakes.fetch_add(1, Ordering::SeqCst);
            let ssl = s.ssl();
            info.tls = true;
            info.sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
            info.alpn = ssl
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            if let Some(c) = ssl.peer_certificate() {
                info.client_cn = subject_cn(c.subject_name());
                info.client_sans = cert_sans(&c);
            }
            match mode {
                Mode::Echo => echo_bytes(s).await,
                Mode::Http => serve_http(s, info, sh, proto).await,
            }
        }
    }
}

/// Writes back every byte read until EOF, then closes the write side.
async fn echo_bytes<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let _ = s.flush().await;
            }
        }
    }
    let _ = s.shutdown().await;
}

async fn serve_http<S>(io: S, info: ConnInfo, sh: Arc<Shared>, proto: Proto)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let svc = service_fn(move |req| handle_request(req, sh.clone(), info.clone()));
    let io = TokioIo::new(io);
    // hyper-util's auto builder ignores http1_only/http2_only together with upgrades, so the
    // single-protocol modes use hyper's own builders.
    let _ = match proto {
        Proto::Auto => {
            auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(io, svc)
                .await
        }
        Proto::H1 => hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await
            .map_err(Into::into),
        Proto::H2 => hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
            .map_err(Into::into),
    };
}

/// A streaming body fed by a channel; ends when the sender is dropped.
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455: base64(SHA-1(key + GUID))).
pub fn ws_accept_for(key: &str) -> String {
    let mut h = openssl::sha::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    openssl::base64::encode_block(&h.finish())
}

fn num_after<T: std::str::FromStr>(path: &str, prefix: &str) -> Option<T> {
    path.strip_prefix(prefix).and_then(|r| r.parse().ok())
}

/// A handler error: hyper closes the connection without answering (`/reset`).
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset by the test backend")
    }
}

impl std::error::Error for Reset {}

async fn handle_request(
    mut req: Request<Incoming>,
    sh: Arc<Shared>,
    info: Arc<ConnInfo>,
) -> Result<Response<Body>, Reset> {
    sh.requests.fetch_add(1, Ordering::SeqCst);
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().to_string());
    let bare_path = req.uri().path().to_string();
    let version = format!("{:?}", req.version());
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_ws = headers
        .iter()
        .any(|(k, v)| k == "upgrade" && v.to_ascii_lowercase().contains("websocket"));

    let on_upgrade = is_ws.then(|| hyper::upgrade::on(&mut req));
    let body = if is_ws {
        String::new()
    } else {
        match req.into_body().collect().await {
            Ok(c) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
            Err(_) => String::new(),
        }
    };

    let rec = RecordedRequest {
        method,
        path,
        version,
        authority,
        headers,
        body,
        tls: info.tls,
        sni: info.sni.clone(),
        alpn: info.alpn.clone(),
        client_cert_cn: info.client_cn.clone(),
        client_cert_sans: info.client_sans.clone(),
        conn: info.conn,
        peer: info.peer,
    };
    sh.recorded.lock().unwrap().push(rec.clone());
    if !sh.delay.is_zero() {
        tokio::time::sleep(sh.delay).await;
    }
    if bare_path == "/reset" {
        return Err(Reset);
    }

    let mut resp = if let Some(on_upgrade) = on_upgrade {
        let key = rec.header("sec-websocket-key").unwrap_or("").to_string();
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                echo_bytes(TokioIo::new(up)).await;
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", ws_accept_for(&key))
            .body(full(Bytes::new()))
            .unwrap()
    } else {
        respond(&sh, &rec, &bare_path).await
    };

    let h = resp.headers_mut();
    h.insert("x-backend", sh.name.parse().unwrap());
    for v in rec.header_all("x-set-response-header") {
        if let Some((k, val)) = v.split_once(':') {
            if let (Ok(k), Ok(val)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(val.trim()),
            ) {
                h.append(k, val);
            }
        }
    }
    Ok(resp)
}

fn echo_json(name: &str, rec: &RecordedRequest) -> String {
    let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in &rec.headers {
        headers.entry(k.as_str()).or_default().push(v.as_str());
    }
    serde_json::json!({
        "backend": name,
        "method": rec.method,
        "path": rec.path,
        "version": rec.version,
        "authority": rec.authority,
        "headers": headers,
        "body": rec.body,
        "tls": rec.tls,
        "sni": rec.sni,
        "alpn": rec.alpn,
        "client_cert_cn": rec.client_cert_cn,
        "client_cert_sans": rec.client_cert_sans,
        "conn": rec.conn,
    })
    .to_string()
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(if no_body {
            full(Bytes::new())
        } else {
            full(body)
        })
        .unwrap()
}

async fn respond(sh: &Shared, rec: &RecordedRequest, path: &str) -> Response<Body> {
    let echo = || echo_json(&sh.name, rec);
    let failing = sh
        .fail_remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let status = StatusCode::from_u16(sh.fail_status).unwrap();
        return json_response(status, echo());
    }
    if let Some(code) = num_after::<u16>(path, "/status/") {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        return json_response(status, echo());
    }
    if let Some(ms) = num_after::<u64>(path, "/delay/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return json_response(StatusCode::OK, echo());
    }
    if let Some(n) = num_after::<usize>(path, "/bytes/") {
        let body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        return Response::builder()
            .header("content-type", "application/octet-stream")
            .body(full(body))
            .unwrap();
    }
    if let Some(n) = num_after::<usize>(path, "/stream/") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for i in 0..n {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let chunk = Bytes::from(vec![b'a' + (i % 26) as u8; 1024]);
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let body = ChanBody(rx);
        return Response::builder()
            .header("content-type", "application/octet-stream")
            .body(body.boxed_unsync())
            .unwrap();
    }
    json_response(StatusCode::OK, echo())
}

/// A running upstream server; see the module docs. Dropping it shuts it down.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    /// A builder for an HTTP backend named `name` (the name is echoed in `x-backend` and the
    /// JSON body). Defaults: plaintext, HTTP/1.1 + h2c (prior knowledge), `127.0.0.1:0`.
    pub fn builder(name: &str) -> BackendBuilder {
        BackendBuilder {
            name: name.to_string(),
            tls: None,
            alpn: None,
            client_ca: None,
            strict_sni: None,
            proto: Proto::Auto,
            mode: Mode::Http,
            bind: "127.0.0.1:0".parse().unwrap(),
            fail_first: (0, 503),
            delay: Duration::ZERO,
        }
    }

    /// Plain HTTP backend with defaults: `Backend::builder(name).start().await`.
    pub async fn http(name: &str) -> Backend {
        Self::builder(name).start().await
    }

    /// Plain TCP server writing back whatever it receives (counts connections).
    pub async fn raw_tcp_echo() -> Backend {
        Self::builder("tcp-echo").raw_echo().start().await
    }

    /// TLS server (presenting `cert`) writing back whatever it receives after the handshake.
    /// Used to prove PASSTHROUGH reaches the upstream's own certificate.
    pub async fn tls_echo(cert: CertKey) -> Backend {
        Self::builder("tls-echo").tls(cert).raw_echo().start().await
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>` (for talking to the backend directly).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Accepted TCP connections so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Completed server-side TLS handshakes so far.
    pub fn tls_handshakes(&self) -> u64 {
        self.shared.tls_handshakes.load(Ordering::SeqCst)
    }

    /// Failed server-side TLS handshakes so far (bad client cert, wrong SNI, ...).
    pub fn tls_handshake_failures(&self) -> u64 {
        self.shared.tls_failures.load(Ordering::SeqCst)
    }

    /// HTTP requests received so far (counted on arrival, before any delay).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Every request seen so far, oldest first.
    pub fn requests_seen(&self) -> Vec<RecordedRequest> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// The last `n` requests (fewer if fewer were seen), oldest first.
    pub fn last_requests(&self, n: usize) -> Vec<RecordedRequest> {
        let r = self.shared.recorded.lock().unwrap();
        r[r.len().saturating_sub(n)..].to_vec()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.recorded.lock().unwrap().last().cloned()
    }

    /// Forgets recorded requests (counters are not reset).
    pub fn clear_requests(&self) {
        self.shared.recorded.lock().unwrap().clear();
    }

    /// Polls (10 ms) until at least `n` requests were received; panics after `timeout`.
    /// For asynchronous effects such as mirroring.
    pub async fn wait_for_requests(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.requests() < n {
            if Instant::now() > deadline {
                panic!(
                    "backend {}: expected >= {n} requests within {timeout:?}, got {}: {:?}",
                    self.name(),
                    self.requests(),
                    self.requests_seen()
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Shuts the server down now (same as dropping it); the port is closed on return.
    pub fn stop(self) {}
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
