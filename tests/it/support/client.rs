//! Real clients: reqwest (HTTP/1.1, h2c, TLS with ALPN, mTLS), a raw TLS handshake probe on
//! tokio-openssl, and raw HTTP for hand-written requests.
//!
//! SNI/Host routing through the gateway: use a `*_builder` and
//! `.resolve("a.example.com", gw_addr)` so the URL host (and thus SNI and Host) is the
//! virtual host while the connection goes to the gateway's port.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::{X509VerifyResult, X509};
use reqwest::redirect::Policy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::certs::{cert_sans, cert_sha256_hex, subject_cn, Ca, CertKey};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Base builder: no proxy from env, redirects not followed, 10 s timeout, keep-alive pool.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
}

/// Plain HTTP client (HTTP/1.1; HTTP/2 only over TLS when the server selects `h2`).
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

/// h2c client: HTTP/2 with prior knowledge over plaintext.
pub fn h2c_client() -> reqwest::Client {
    http_client_builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// TLS builder trusting only `ca`'s root (system roots disabled). Offers ALPN
/// `h2, http/1.1`; add `.http1_only()` to offer only `http/1.1`.
pub fn tls_client_builder(ca: &Ca) -> reqwest::ClientBuilder {
    http_client_builder()
        .use_native_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.root_pem().as_bytes()).unwrap())
}

/// TLS client trusting only `ca`'s root.
pub fn tls_client(ca: &Ca) -> reqwest::Client {
    tls_client_builder(ca).build().unwrap()
}

/// TLS builder that also presents `client` (chain + PKCS#8 key) as its client certificate.
pub fn tls_client_with_identity_builder(ca: &Ca, client: &CertKey) -> reqwest::ClientBuilder {
    let id =
        reqwest::Identity::from_pkcs8_pem(client.cert_pem.as_bytes(), client.key_pem.as_bytes())
            .unwrap();
    tls_client_builder(ca).identity(id)
}

/// TLS client presenting a client certificate.
pub fn tls_client_with_identity(ca: &Ca, client: &CertKey) -> reqwest::Client {
    tls_client_with_identity_builder(ca, client)
        .build()
        .unwrap()
}

/// What a TLS handshake negotiated and what the server presented.
#[derive(Clone, Debug)]
pub struct HandshakeInfo {
    /// Subject CN of the peer leaf.
    pub subject_cn: Option<String>,
    /// SANs of the peer leaf (DNS / URI / IP as strings).
    pub sans: Vec<String>,
    /// Issuer CN of the peer leaf.
    pub issuer_cn: Option<String>,
    /// Lower-case hex SHA-256 of the peer leaf DER (compare with `CertKey::sha256_hex`).
    pub sha256: String,
    /// Negotiated ALPN protocol, if any.
    pub alpn: Option<String>,
    /// `"TLSv1.3"`, `"TLSv1.2"`, ...
    pub version: String,
    /// Number of certificates the server sent (leaf + intermediates).
    pub peer_chain_len: usize,
    pub peer_cert: X509,
}

/// Full set of client TLS options for [`tls_connect`] / [`tls_handshake_with`].
#[derive(Clone, Debug, Default)]
pub struct TlsClientOpts {
    /// SNI to send (none if `None`).
    pub sni: Option<String>,
    /// Verify the chain against this CA's root (and the hostname against `sni` if set).
    /// `None` = accept any certificate.
    pub ca: Option<Ca>,
    /// Client certificate to present.
    pub client: Option<CertKey>,
    /// ALPN protocols to offer (none if empty).
    pub alpn: Vec<String>,
    pub min_version: Option<SslVersion>,
    pub max_version: Option<SslVersion>,
    /// OpenSSL cipher list for TLS <= 1.2 (e.g. `"ECDHE-RSA-AES128-GCM-SHA256"`).
    pub cipher_list: Option<String>,
}

impl TlsClientOpts {
    pub fn new(
        sni: Option<&str>,
        ca: Option<&Ca>,
        client: Option<&CertKey>,
        alpn: &[&str],
    ) -> Self {
        TlsClientOpts {
            sni: sni.map(str::to_string),
            ca: ca.cloned(),
            client: client.cloned(),
            alpn: alpn.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// TLS handshake against `addr`; returns what was negotiated or the OpenSSL error text (which
/// includes the alert, e.g. `tlsv1 unrecognized name`, `certificate verify failed`).
///
/// Note: with TLS 1.3 a server rejecting the *client* certificate does so after the client's
/// handshake completed; to observe that, use [`raw_https`] (the error shows on read).
pub async fn tls_handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    ca: Option<&Ca>,
    client: Option<&CertKey>,
    alpn: &[&str],
) -> Result<HandshakeInfo, String> {
    tls_handshake_with(addr, &TlsClientOpts::new(sni, ca, client, alpn)).await
}

/// [`tls_handshake`] with full options (protocol versions, ciphers).
pub async fn tls_handshake_with(
    addr: SocketAddr,
    opts: &TlsClientOpts,
) -> Result<HandshakeInfo, String> {
    tls_connect(addr, opts).await.map(|(_, info)| info)
}

/// Connects and handshakes, returning the live TLS stream for further I/O.
pub async fn tls_connect(
    addr: SocketAddr,
    opts: &TlsClientOpts,
) -> Result<(SslStream<TcpStream>, HandshakeInfo), String> {
    let e = |e: openssl::error::ErrorStack| e.to_string();
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(e)?;
    if let Some(ca) = &opts.ca {
        b.cert_store_mut().add_cert(ca.root.clone()).map_err(e)?;
        b.set_verify(SslVerifyMode::PEER);
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    if let Some(c) = &opts.client {
        let chain = c.chain();
        b.set_certificate(&chain[0]).map_err(e)?;
        for extra in &chain[1..] {
            b.add_extra_chain_cert(extra.clone()).map_err(e)?;
        }
        b.set_private_key(&c.pkey()).map_err(e)?;
    }
    if !opts.alpn.is_empty() {
        let mut wire = Vec::new();
        for p in &opts.alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire).map_err(e)?;
    }
    b.set_min_proto_version(opts.min_version).map_err(e)?;
    b.set_max_proto_version(opts.max_version).map_err(e)?;
    if let Some(c) = &opts.cipher_list {
        b.set_cipher_list(c).map_err(e)?;
    }
    let connector = b.build();
    let mut cfg = connector.configure().map_err(e)?;
    cfg.set_use_server_name_indication(opts.sni.is_some());
    cfg.set_verify_hostname(opts.ca.is_some() && opts.sni.is_some());
    let ssl = cfg
        .into_ssl(opts.sni.as_deref().unwrap_or("localhost"))
        .map_err(e)?;

    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|err| format!("connect {addr}: {err}"))?;
    let _ = tcp.set_nodelay(true);
    let mut s = SslStream::new(ssl, tcp).map_err(e)?;
    match tokio::time::timeout(TIMEOUT, Pin::new(&mut s).connect()).await {
        Err(_) => return Err("TLS handshake timed out".into()),
        Ok(Err(err)) => {
            let mut msg = err.to_string();
            if let Some(io) = err.io_error() {
                msg.push_str(&format!(" | io: {io}"));
            }
            let vr = s.ssl().verify_result();
            if vr != X509VerifyResult::OK {
                msg.push_str(&format!(" | verify: {}", vr.error_string()));
            }
            return Err(msg);
        }
        Ok(Ok(())) => {}
    }
    let ssl = s.ssl();
    let peer = ssl
        .peer_certificate()
        .ok_or_else(|| "server sent no certificate".to_string())?;
    let info = HandshakeInfo {
        subject_cn: subject_cn(peer.subject_name()),
        sans: cert_sans(&peer),
        issuer_cn: subject_cn(peer.issuer_name()),
        sha256: cert_sha256_hex(&peer),
        alpn: ssl
            .selected_alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: ssl.version_str().to_string(),
        peer_chain_len: ssl.peer_cert_chain().map(|c| c.len()).unwrap_or(1),
        peer_cert: peer,
    };
    Ok((s, info))
}

/// Sends `request` verbatim over a new TCP connection and returns the response as text.
/// Reads until the response is complete (Content-Length, chunked terminator, no body for
/// HEAD/CONNECT-2xx/1xx/204/304) or the server closes; 10 s overall limit (then returns what
/// arrived). For absolute-form, CONNECT, malformed requests... Panics if it cannot connect.
pub async fn raw_http(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    try_raw_http(addr, request)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// [`raw_http`], with a connection failure as `Err`.
pub async fn try_raw_http(addr: SocketAddr, request: impl AsRef<[u8]>) -> std::io::Result<String> {
    let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other(format!("connect {addr}: timed out")))??;
    Ok(raw_exchange(&mut s, request.as_ref()).await)
}

/// `GET path HTTP/1.1` with `Host: host`, `extra` header lines (each ending in `\r\n`) and
/// `Connection: close` when `close`.
pub fn get_request(host: &str, path: &str, extra: &str, close: bool) -> String {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-it\r\n{extra}{conn}\r\n")
}

/// [`raw_http`] over TLS (see [`tls_connect`] for `opts`). Err on handshake failure or if the
/// connection fails before any response byte (e.g. TLS 1.3 client-cert rejection alert).
pub async fn raw_https(
    addr: SocketAddr,
    opts: &TlsClientOpts,
    request: impl AsRef<[u8]>,
) -> Result<String, String> {
    let (mut s, _) = tls_connect(addr, opts).await?;
    s.write_all(request.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut first))
        .await
        .map_err(|_| "timed out waiting for response".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed before any response".into());
    }
    let rest = read_response(&mut s, request.as_ref(), first.to_vec()).await;
    Ok(String::from_utf8_lossy(&rest).into_owned())
}

/// Writes `request` on an existing stream and reads one response (see [`raw_http`]).
pub async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &[u8]) -> String {
    if s.write_all(request).await.is_err() {
        return String::new();
    }
    let buf = read_response(s, request, Vec::new()).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `buf` holds one complete response to a request starting with `request`.
fn response_complete(buf: &[u8], request: &[u8]) -> bool {
    let Some(hend) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..hend]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = &buf[hend + 4..];
    if request.starts_with(b"HEAD ")
        || (request.starts_with(b"CONNECT ") && (200..300).contains(&status))
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return true;
    }
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            if let Ok(n) = v.trim().parse::<usize>() {
                return body.len() >= n;
            }
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

/// Public form of the response reader: reads one response from `s` given the `request` it
/// answers (used to decide body framing).
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    request: &[u8],
    mut buf: Vec<u8>,
) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 8192];
    while !response_complete(&buf, request) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    buf
}

/// Status code of a raw response text (`0` if unparsable).
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A raw HTTP/1.1 response, parsed: status, headers, and the body (de-chunked).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The status line and header lines.
    pub head: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The whole response as received (for messages).
    pub raw: String,
}

impl Resp {
    /// Parses `raw`; a response without a complete head has status 0 and no headers.
    pub fn parse(raw: &str) -> Resp {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        Resp {
            status: raw_status(raw),
            head: head.to_string(),
            headers,
            body: if chunked {
                dechunk(body)
            } else {
                body.to_string()
            },
            raw: raw.to_string(),
        }
    }

    /// [`parse`](Self::parse), or `None` unless the head is complete.
    pub fn try_parse(raw: &str) -> Option<Resp> {
        raw.contains("\r\n\r\n").then(|| Self::parse(raw))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (a backend's echo).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON echo ({e}): {}", self.raw))
    }
}

/// The payload of a chunked body (chunk extensions and trailers dropped).
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Sends and panics on transport errors (with the error chain).
pub async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            panic!("request failed: {msg}")
        }
    }
}
