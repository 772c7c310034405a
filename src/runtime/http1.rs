//! HTTP/1 downstream connections, between the socket and Pingora's HTTP/1 session.
//!
//! Pingora reads a request head with a fixed 1 MiB / 256-header cap, a per-read timeout and a
//! 400 past them, and drops a pipelined request with the connection. So each request head is
//! read here first, as Envoy's HTTP/1 codec bounds it:
//!
//! - the whole head (request line, fields, CRLFs) must fit `max_request_headers_bytes` and
//!   carry at most `max_request_headers_count` fields, else 431 (Envoy
//!   `max_request_headers_kb` / `max_request_headers_count`, `http1.headers_too_large` /
//!   `http1.too_many_headers`);
//! - it must be complete within `request_headers_timeout`, else 408 (nginx
//!   `client_header_timeout`; Envoy `request_headers_timeout`);
//! - the bytes it holds count against the gateway's head-memory budget ([`Overload`]), else 503.
//!
//! Then the head is handed to Pingora through [`Gated`], a stream that gives Pingora exactly
//! the current request (head, then the body by its framing) and keeps the bytes of a pipelined
//! next request for the next turn of the loop, so pipelined requests are answered in order
//! (RFC 9112 §9.3.2) instead of being dropped. Heads it cannot frame (upgrades, CONNECT,
//! anything Pingora will refuse) pass through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pingora::apps::HttpServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
};
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::buffers::{self, WriteBuffer};
use super::limits::DownstreamLimits;
use super::overload::{HeadMemory, Refusal};
use super::proxy::Edge;
use super::State;
use crate::observe::access_entry::AccessLogEntry;

/// Why a request head was not handed on.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The client closed, or sent nothing within the keep-alive idle time: close quietly.
    #[error("closed")]
    Closed,
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("request head not complete in time")]
    Timeout,
    #[error(transparent)]
    Overloaded(#[from] Refusal),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl HeadError {
    /// The status, Envoy's response code details and flag, and the body the client gets.
    fn reply(&self) -> Option<(u16, &'static str, Option<&'static str>, &'static str)> {
        match self {
            HeadError::Closed | HeadError::Io(_) => None,
            HeadError::TooLarge(_) => Some((
                431,
                "http1.headers_too_large",
                Some("DPE"),
                "Request Header Fields Too Large",
            )),
            HeadError::TooManyHeaders(_) => Some((
                431,
                "http1.too_many_headers",
                Some("DPE"),
                "Request Header Fields Too Large",
            )),
            HeadError::Timeout => Some((408, "request_header_timeout", None, "request timeout")),
            HeadError::Overloaded(_) => Some((503, "overload_manager", Some("OM"), "overloaded")),
        }
    }
}

/// How the current request's body ends (RFC 9112 §6.3, as Pingora frames it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `Content-Length` (or none: 0).
    Length(u64),
    Chunked(ChunkScan),
}

/// What Pingora may read from the stream now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    /// `left` more bytes of the head, then `then`.
    Head {
        left: usize,
        then: Body,
    },
    Body(Body),
    /// The request is complete: what follows waits for the next turn; EOF is passed on (so
    /// Pingora still sees a client that leaves).
    Done,
    /// Everything (upgrades, CONNECT, heads Pingora will judge itself).
    Open,
}

/// The client stream as Pingora's HTTP/1 session sees it: one request at a time; its writes
/// coalesced (see [`buffers`]).
pub struct Gated {
    inner: Stream,
    /// Read from the client, not yet given to Pingora.
    pending: BytesMut,
    allow: Allow,
    out: WriteBuffer,
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("pending", &self.pending.len())
            .field("allow", &self.allow)
            .finish()
    }
}

/// Where the first head ends, scanning from `from` (`\r\n\r\n` or the bare-LF `\n\n` httparse
/// also accepts). Returns the length of the head.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let at = i + p;
        if at >= 1 && buf[at - 1] == b'\n' {
            return Some(at + 1);
        }
        if at >= 2 && buf[at - 1] == b'\r' && buf[at - 2] == b'\n' {
            return Some(at + 1);
        }
        i = at + 1;
    }
    None
}

/// The body framing of a parsed head, as Pingora decides it (`init_body_reader`); `None` when
/// the connection must pass through (upgrades, CONNECT) or Pingora will refuse the head.
fn framing(req: &httparse::Request<'_, '_>) -> Option<Body> {
    if req
        .method
        .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"))
    {
        return None;
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The final coding decides (Pingora refuses a non-chunked one).
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for v in h.value.split(|b| *b == b',') {
                let n: u64 = std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()?;
                if length.is_some_and(|l| l != n) {
                    return None;
                }
                length = Some(n);
            }
        }
    }
    match chunked {
        Some(true) if req.version == Some(1) => Some(Body::Chunked(ChunkScan::default())),
        Some(_) => None,
        None => Some(Body::Length(length.unwrap_or(0))),
    }
}

/// Parses a complete head (`buf[..len]`) within the field-count limit.
fn parse_head(buf: &[u8], max_fields: usize) -> Result<Option<Body>, HeadError> {
    let mut fields = vec![httparse::EMPTY_HEADER; max_fields];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Ok(framing(&req)),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders(max_fields)),
        // Anything else (illegal bytes Pingora may escape, bad framing it refuses): Pingora's.
        _ => Ok(None),
    }
}

impl Gated {
    pub fn new(inner: Stream) -> Self {
        Gated {
            inner,
            pending: BytesMut::new(),
            allow: Allow::Open,
            out: WriteBuffer::default(),
        }
    }

    /// Between requests: frees the buffers an idle connection does not need.
    fn release(&mut self) {
        self.out.release();
        if self.pending.is_empty() {
            self.pending = BytesMut::new();
        }
    }

    /// Reads the next request head into the buffer, within `limits`. `deadline`: when the
    /// whole head must be in (the first request's runs from the connection's start; later ones
    /// start at their first byte). While no byte has come, the connection closes quietly after
    /// the keep-alive idle time or when `drain` turns true. Then Pingora may read exactly that
    /// request.
    async fn read_head(
        &mut self,
        limits: &DownstreamLimits,
        mut deadline: Option<Instant>,
        memory: &mut HeadMemory,
        drain: &mut watch::Receiver<bool>,
    ) -> Result<(), HeadError> {
        let max = limits.max_request_headers_bytes;
        let mut scanned = 0;
        loop {
            if let Some(len) = head_end(&self.pending, scanned) {
                if len > max {
                    return Err(HeadError::TooLarge(max));
                }
                let body = parse_head(&self.pending[..len], limits.max_request_headers_count)?;
                self.allow = match body {
                    Some(then) => Allow::Head { left: len, then },
                    None => Allow::Open,
                };
                return Ok(());
            }
            if self.pending.len() > max {
                return Err(HeadError::TooLarge(max));
            }
            scanned = self.pending.len();
            let first = self.pending.is_empty();
            if !first && deadline.is_none() {
                deadline = limits.request_headers_timeout.map(|t| Instant::now() + t);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // Never read much past the limit: one byte over is enough to refuse.
            let want = (max + 1 - self.pending.len()).min(buffers::READ_CHUNK);
            let read = buffers::fill(&mut self.inner, &mut self.pending, want);
            let n = if first {
                let idle = left.map_or(limits.http1_idle_timeout, |l| {
                    l.min(limits.http1_idle_timeout)
                });
                tokio::select! {
                    r = tokio::time::timeout(idle, read) => r.map_err(|_| HeadError::Closed)??,
                    _ = until_true(drain) => return Err(HeadError::Closed),
                }
            } else {
                let wait = left.or(limits.stream_idle_timeout).unwrap_or(Duration::MAX);
                tokio::time::timeout(wait, read)
                    .await
                    .map_err(|_| HeadError::Timeout)??
            };
            if n == 0 {
                return Err(HeadError::Closed);
            }
            memory.hold(self.pending.len())?;
        }
    }

    /// Gives Pingora what `allow` permits from `src`; returns how many bytes of `src` belong
    /// to the current request, advancing the state.
    fn admit(&mut self, src: &[u8], room: usize) -> usize {
        loop {
            match &mut self.allow {
                Allow::Open => return src.len().min(room),
                Allow::Done => return 0,
                Allow::Head { left, then } => {
                    if *left == 0 {
                        self.allow = Allow::Body(then.clone());
                        continue;
                    }
                    let n = src.len().min(room).min(*left);
                    *left -= n;
                    return n;
                }
                Allow::Body(Body::Length(left)) => {
                    if *left == 0 {
                        self.allow = Allow::Done;
                        continue;
                    }
                    let n = src
                        .len()
                        .min(room)
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    if *left == 0 {
                        self.allow = Allow::Done;
                    }
                    return n;
                }
                Allow::Body(Body::Chunked(scan)) => {
                    let take = &src[..src.len().min(room)];
                    return match scan.feed(take) {
                        Scanned::More => take.len(),
                        Scanned::End(n) => {
                            self.allow = Allow::Done;
                            n
                        }
                        Scanned::Invalid => {
                            self.allow = Allow::Open;
                            take.len()
                        }
                    };
                }
            }
        }
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.pending.is_empty() {
            let pending = std::mem::take(&mut this.pending);
            let n = this.admit(&pending, buf.remaining());
            this.pending = pending;
            if n > 0 {
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            // The next request is already here; it waits (the idle probe of a finished
            // request sees nothing until the response is done).
            return Poll::Pending;
        }
        if this.allow == Allow::Open {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if let Allow::Body(Body::Length(left)) = &mut this.allow {
            if *left >= buf.remaining() as u64 {
                // All of it is body (Pingora caps its reads at what is left): no copy.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                *left -= (buf.filled().len() - before) as u64;
                if *left == 0 {
                    this.allow = Allow::Done;
                }
                return Poll::Ready(Ok(()));
            }
        }
        // Read what the socket has (at most what fits), then keep what belongs to the next
        // request.
        let mut tmp = [0u8; 16 * 1024];
        let room = buf.remaining().min(tmp.len());
        let mut read = ReadBuf::new(&mut tmp[..room]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        if got.is_empty() {
            return Poll::Ready(Ok(())); // EOF: Pingora sees the client leave
        }
        let n = this.admit(got, room);
        buf.put_slice(&got[..n]);
        this.pending.extend_from_slice(&got[n..]);
        if n == 0 {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.out.poll_write(&mut this.inner, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.out.poll_write_vectored(&mut this.inner, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_shutdown(&mut this.inner, cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for Gated {
    async fn shutdown(&mut self) {
        // What is held goes out first (Pingora's own buffered stream flushes on shutdown too).
        let this = &mut *self;
        let _ = std::future::poll_fn(|cx| this.out.poll_write_held(&mut this.inner, cx)).await;
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Gated {
    fn id(&self) -> pingora::protocols::UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Gated {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Gated {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Gated {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Gated {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait::async_trait]
impl Peek for Gated {}

/// Who a connection is, for the access-log line of a request refused before Pingora saw it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// When the connection was accepted: the first request head's deadline runs from here.
    pub accepted: Instant,
}

/// Serves one HTTP/1 connection (plain or TLS): each request head is read and bounded here,
/// then Pingora proxies the request; pipelined requests are answered in order. Between
/// requests an idle connection closes after the keep-alive idle time, or at once when
/// `close_idle` turns true (listener stopped, shutdown, max connection duration). While `drain`
/// is set, each response says `Connection: close` (Pingora's shutdown watch).
pub async fn serve(
    state: &State,
    http: &Arc<HttpProxy<Edge>>,
    stream: Stream,
    peer: Peer,
    drain: &watch::Receiver<bool>,
    close_idle: &watch::Receiver<bool>,
) {
    let limits = &state.options.limits;
    let mut gated = Gated::new(stream);
    // The first head's deadline runs from the connection's start.
    let mut deadline = limits.request_headers_timeout.map(|t| peer.accepted + t);
    let mut drained = close_idle.clone();
    loop {
        let mut memory = state.overload.head_memory();
        let head = gated
            .read_head(limits, deadline.take(), &mut memory, &mut drained)
            .await;
        if let Err(e) = head {
            // Boxed: a rare path whose future should not size every connection's task.
            Box::pin(refuse(state, &mut gated.inner, peer, &e)).await;
            return;
        }
        drop(memory);
        let session = ServerSession::new_http1(Box::new(gated));
        // Boxed: Pingora's request future is large, and an idle connection (waiting in
        // `read_head`) should not carry its space.
        let Some(reused) = Box::pin(http.process_new_http(session, drain)).await else {
            return;
        };
        let (stream, _settings) = reused.consume();
        gated = match stream.into_any().downcast::<Gated>() {
            Ok(g) => *g,
            Err(_) => return,
        };
        if gated.allow == Allow::Open {
            // A passed-through request leaves no known boundary behind it.
            return;
        }
        gated.release();
    }
}

async fn until_true(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Answers a head that was not handed on (when there is an answer) and logs it.
async fn refuse(state: &State, stream: &mut Stream, peer: Peer, e: &HeadError) {
    let Some((status, details, flag, body)) = e.reply() else {
        return;
    };
    tracing::debug!(client = %peer.client, "request head refused: {e}");
    let _ = write_reply(stream, status, &format!("{body}\n")).await;
    linger(stream).await;
    let mut entry = AccessLogEntry::new(std::time::SystemTime::now());
    entry.response_code = status;
    entry.response_flags = flag.map(str::to_string);
    entry.response_code_details = Some(details.to_string());
    entry.downstream_remote_address = Some(peer.client.to_string());
    entry.downstream_local_address = Some(peer.local.to_string());
    state.access_log.log(&entry);
}

/// Reads and discards what the client still sends (briefly, boundedly) before closing, so the
/// answer is not lost to a reset for unread bytes (what nginx calls a lingering close).
pub async fn linger<S: AsyncRead + Unpin>(s: &mut S) {
    // On the heap, and only while lingering: an array here would sit in every connection's task
    // (an async fn's locals are part of its future, allocated when the connection is accepted).
    let mut sink = vec![0u8; 8192];
    let mut left: usize = 1024 * 1024;
    let until = Instant::now() + Duration::from_secs(2);
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, s.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Writes a complete plain-text answer and asks the client to close (the gateway closes next).
pub async fn write_reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    body: &str,
) -> io::Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nserver: portcullis\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.flush().await
}

/// Finds the end of a chunked body (RFC 9112 §7.1: chunks, the last chunk, trailer fields, the
/// final empty line; bare LF accepted as Pingora's parser does), fed in pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkScan {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Chunk extensions (or whitespace) up to the end of the size line.
    Extension,
    /// `size` bytes of chunk data.
    Data,
    /// The line end after chunk data.
    DataEnd,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// A CR at the start of a trailer line: the final empty line's LF follows.
    FinalLf,
}

/// What a piece of a chunked body held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// All of it is body; more follows.
    More,
    /// The body ends after this many bytes of it.
    End(usize),
    /// Not a chunked body Pingora reads: let Pingora judge it.
    Invalid,
}

impl ChunkScan {
    pub fn feed(&mut self, buf: &[u8]) -> Scanned {
        use ChunkState::*;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 16 {
                            return Scanned::Invalid;
                        }
                        self.digits += 1;
                        self.size =
                            self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                    }
                    _ if self.digits == 0 => return Scanned::Invalid,
                    b'\n' => self.end_of_size_line(),
                    _ => self.state = Extension,
                },
                Extension => {
                    if b == b'\n' {
                        self.end_of_size_line();
                    }
                }
                Data => {
                    let n = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataEnd;
                    }
                    continue;
                }
                DataEnd => match b {
                    b'\r' => {}
                    b'\n' => {
                        self.state = Size;
                        self.digits = 0;
                    }
                    _ => return Scanned::Invalid,
                },
                TrailerStart => match b {
                    b'\r' => self.state = FinalLf,
                    b'\n' => return Scanned::End(i + 1),
                    _ => self.state = Trailer,
                },
                Trailer => {
                    if b == b'\n' {
                        self.state = TrailerStart;
                    }
                }
                FinalLf => {
                    if b == b'\n' {
                        return Scanned::End(i + 1);
                    }
                    return Scanned::Invalid;
                }
            }
            i += 1;
        }
        Scanned::More
    }

    fn end_of_size_line(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_crlf_and_bare_lf_ends_across_reads() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        // The end straddles the previous scan.
        let b = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head_end(b, 25), Some(27));
    }

    fn body_of(head: &str) -> Option<Body> {
        parse_head(head.as_bytes(), 100).unwrap()
    }

    #[test]
    fn framing_follows_pingoras_body_reader() {
        assert_eq!(
            body_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Body::Length(0))
        );
        assert_eq!(
            body_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Some(Body::Length(5))
        );
        assert_eq!(
            body_of("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Some(Body::Length(5))
        );
        assert_eq!(
            body_of(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Some(Body::Chunked(ChunkScan::default()))
        );
        // Pingora refuses these, or the connection becomes a tunnel: passed through.
        assert_eq!(
            body_of("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
        assert_eq!(
            body_of("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            None
        );
        assert_eq!(body_of("CONNECT a:443 HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn more_fields_than_the_limit_is_too_many_headers() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..101 {
            head.push_str(&format!("x-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(matches!(
            parse_head(head.as_bytes(), 100),
            Err(HeadError::TooManyHeaders(100))
        ));
        assert!(parse_head(head.as_bytes(), 101).is_ok());
    }

    #[test]
    fn chunked_scan_finds_the_end_after_trailers_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for split in 0..body.len() {
            let mut s = ChunkScan::default();
            let got = match s.feed(&body[..split]) {
                Scanned::More => match s.feed(&body[split..]) {
                    Scanned::End(n) => split + n,
                    other => panic!("split {split}: {other:?}"),
                },
                Scanned::End(n) => n,
                Scanned::Invalid => panic!("split {split}: invalid"),
            };
            assert_eq!(got, end, "split {split}");
        }
        let mut s = ChunkScan::default();
        assert_eq!(s.feed(b"0\n\nX"), Scanned::End(3));
        assert_eq!(ChunkScan::default().feed(b"zz\r\n"), Scanned::Invalid);
        assert_eq!(
            ChunkScan::default().feed(b"11111111111111111\r\n"),
            Scanned::Invalid
        );
    }
}
