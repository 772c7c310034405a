//! A small HTTP/1.1 client for the gateway's own calls (JWKS fetches, ext_authz checks, Zipkin
//! span batches): hyper's connection API over a tokio TCP stream, TLS by OpenSSL (the library
//! Pingora already links) with the system's roots and host-name verification. One connection
//! per call: these calls are rare (JWKS every 20 minutes, spans every few seconds) or go to a
//! local server.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL `{0}`")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS to {0}: {1}")]
    Tls(String, String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends one request and reads the whole response, within `timeout`.
pub async fn send(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(method, url, headers, body))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn exchange(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let uri: Uri = url.parse().map_err(|_| HttpError::Url(url.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HttpError::Url(url.to_string())),
    };
    let host = uri
        .host()
        .ok_or_else(|| HttpError::Url(url.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| HttpError::Resolve(host.clone()))?
        .next()
        .ok_or_else(|| HttpError::Resolve(host.clone()))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| HttpError::Connect(addr.to_string(), e))?;
    let _ = tcp.set_nodelay(true);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.as_str().to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(h) = req.headers_mut() {
        *h = headers;
        if !h.contains_key(http::header::HOST) {
            if let Ok(v) = authority.parse() {
                h.insert(http::header::HOST, v);
            }
        }
    }
    let req = req.body(Full::new(body))?;
    if https {
        let tls = tls_stream(tcp, &host).await?;
        round_trip(TokioIo::new(tls), req).await
    } else {
        round_trip(TokioIo::new(tcp), req).await
    }
}

async fn tls_stream(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_openssl::SslStream<TcpStream>, HttpError> {
    use openssl::ssl::{SslConnector, SslMethod};
    let err = |e: &dyn std::fmt::Display| HttpError::Tls(host.to_string(), e.to_string());
    let connector = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| err(&e))?
        .build();
    let ssl = connector
        .configure()
        .and_then(|c| c.into_ssl(host))
        .map_err(|e| err(&e))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| err(&e))?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| err(&e))?;
    Ok(stream)
}

async fn round_trip<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<Response, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    driver.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
