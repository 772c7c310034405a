//! The listener set: Portcullis owns its accept loops (Pingora fixes its listeners at start-up),
//! so a reload can open new Gateway ports and close removed ones without touching the others.
//! Each accepted connection is dispatched by the listener's kind: plain HTTP (and CONNECT on an
//! egress gateway), TLS by SNI (terminate or pass through), or TCP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_proxy::HttpProxy;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

use super::http1::{self, Peer};
use super::overload::Overload;
use super::proxy::Edge;
use super::tunnel::{self, ConnInfo};
use super::State;
use crate::compile::listener::{ChainAction, ListenerKind};
use crate::compile::{Role, Snapshot};
use crate::tls::client_hello::{peek_client_hello, Parse, MAX_CLIENT_HELLO};
use crate::tls::server::ChainHandshake;

/// How long a client may take to send its first bytes (ClientHello, request line) when
/// `--request-headers-timeout` is off.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Running {
    accept: tokio::task::JoinHandle<()>,
    /// `true` tells connections to close after their current request (Pingora's shutdown
    /// watch: HTTP/1 `Connection: close`, HTTP/2 GOAWAY); the listener keeps accepting.
    drain: watch::Sender<bool>,
    /// `true` closes idle keep-alive connections (the listener stopped accepting).
    close_idle: watch::Sender<bool>,
    /// `true` ends whatever is still open after the termination drain.
    kill: watch::Sender<bool>,
    stats: Arc<ListenerStats>,
}

/// Envoy's per-listener connection stats (`listener.<address>.downstream_cx_*`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Open connections (also what `--max-connections-per-listener` caps).
    pub active: Arc<AtomicUsize>,
    pub total: AtomicU64,
}

/// The signals a connection of a listener watches (see [`Running`]).
#[derive(Clone)]
struct Signals {
    drain: watch::Receiver<bool>,
    close_idle: watch::Receiver<bool>,
}

/// A listener address that cannot be bound (in use, not local, no permission).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Sockets bound for a new snapshot but not yet accepting.
pub struct Prepared {
    bound: Vec<(SocketAddr, TcpListener)>,
}

pub struct Listeners {
    state: Arc<State>,
    /// One proxy for every listener, so every listener shares the upstream connection pool.
    http: Arc<HttpProxy<Edge>>,
    running: Mutex<BTreeMap<SocketAddr, Running>>,
    /// Open downstream connections, across all listeners.
    pub connections: Arc<AtomicUsize>,
    /// A drain started: listeners started from now on drain from their first connection.
    draining: AtomicBool,
    /// The listeners were stopped for good: a reload starts no new ones.
    stopped: AtomicBool,
}

/// Binds a listening socket. `reuse_port` (the Gateway listeners) lets a reload bind a server's
/// new address while the old overlapping one (e.g. `0.0.0.0:P` → `127.0.0.1:P`) still listens;
/// the old one is closed when the snapshot is swapped. A port held by another program (without
/// SO_REUSEPORT) still fails to bind.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The local address of a connection accepted on `listener`: the listener's own when it is
/// bound to one address; the kernel is asked only behind a wildcard bind.
fn local_address(tcp: &TcpStream, listener: SocketAddr) -> SocketAddr {
    if listener.ip().is_unspecified() {
        tcp.local_addr().unwrap_or(listener)
    } else {
        listener
    }
}

/// Gives Pingora the addresses the accept loop already knows (after the PROXY protocol chose the
/// peer), so it never asks the kernel (`getpeername`, `getsockname`) for them. Pingora's own
/// listener fills the peer the same way (`pingora-core` `protocols/l4/listener.rs`), and
/// leaves the local address as a TODO there.
fn known_addresses(stream: &L4Stream, peer: SocketAddr, local: SocketAddr) {
    use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
    if let Some(digest) = stream.get_socket_digest() {
        // Already set when the PROXY protocol header named the source: that one stays.
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
        let _ = digest.local_addr.set(Some(PingoraAddr::Inet(local)));
    }
}

/// Wraps an accepted socket the way Pingora's own listeners do.
fn pingora_stream(tcp: TcpStream) -> L4Stream {
    use std::os::unix::io::AsRawFd;
    let fd = tcp.as_raw_fd();
    let mut stream = L4Stream::from(tcp);
    let _ = stream.set_nodelay();
    stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
    stream
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Listeners {
    pub fn new(state: Arc<State>, http: Arc<HttpProxy<Edge>>) -> Self {
        Listeners {
            connections: state.overload.connection_counter(),
            state,
            http,
            running: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Binds the addresses `snapshot` needs that are not open yet. Nothing changes if any
    /// bind fails, so a reload that cannot listen is refused as a whole.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<Prepared, BindError> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut bound = Vec::new();
        for addr in snapshot.listeners.keys() {
            if running.contains_key(addr) || self.stopped.load(Relaxed) {
                continue;
            }
            match bind(*addr, true) {
                Ok(l) => bound.push((*addr, l)),
                Err(source) => {
                    return Err(BindError {
                        addr: *addr,
                        source,
                    })
                }
            }
        }
        Ok(Prepared { bound })
    }

    /// After the snapshot is swapped in: start the new accept loops, stop the removed ones
    /// (their connections finish in-flight requests, then close).
    pub fn commit(&self, prepared: Prepared, snapshot: &Snapshot) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (addr, listener) in prepared.bound {
            info!(%addr, "listening");
            running.insert(addr, self.start(addr, listener));
        }
        let removed: Vec<SocketAddr> = running
            .keys()
            .filter(|a| !snapshot.listeners.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(r) = running.remove(&addr) {
                info!(%addr, "listener removed; draining its connections");
                self.stop(r, self.termination_grace());
            }
        }
    }

    fn termination_grace(&self) -> Duration {
        self.state.drain.settings().termination_drain_duration
    }

    /// Stops accepting; idle keep-alive connections close at once (see [`http1::serve`]), busy
    /// ones after their current request, and whatever is left after `grace`.
    fn stop(&self, r: Running, grace: Duration) {
        r.accept.abort();
        let _ = r.drain.send(true);
        let _ = r.close_idle.send(true);
        let kill = r.kill;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = kill.send(true);
        });
    }

    /// Starts a graceful drain: every listener keeps accepting, but each connection closes
    /// after its current request (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), and so do the
    /// connections accepted from now on. Idle keep-alive connections stay open until their
    /// next request (answered with `Connection: close`) or [`shutdown`](Self::shutdown).
    pub fn start_drain(&self) {
        self.draining.store(true, Relaxed);
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for r in running.values() {
            let _ = r.drain.send(true);
        }
    }

    /// Stops accepting everywhere, for good, and asks every connection to finish (SIGTERM,
    /// the end of a drain); whatever is open after the termination drain is closed.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Relaxed);
        let all: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *running).into_values().collect()
        };
        for r in all {
            self.stop(r, self.termination_grace());
        }
        // Wakes anything still parked in Pingora's own keep-alive wait.
        self.http.cleanup().await;
    }

    /// Each listener's address and connection stats.
    pub fn stats(&self) -> Vec<(SocketAddr, Arc<ListenerStats>)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.iter().map(|(a, r)| (*a, r.stats.clone())).collect()
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn start(&self, addr: SocketAddr, listener: TcpListener) -> Running {
        let (drain, drain_rx) = watch::channel(false);
        let (close_idle, close_idle_rx) = watch::channel(false);
        let (kill, kill_rx) = watch::channel(false);
        let signals = Signals {
            drain: drain_rx,
            close_idle: close_idle_rx,
        };
        if self.draining.load(Relaxed) {
            // Sent rather than the initial value: Pingora's HTTP/2 loop waits for a change.
            let _ = drain.send(true);
        }
        let stats = Arc::new(ListenerStats::default());
        let state = self.state.clone();
        let http = self.http.clone();
        let counted = stats.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (tcp, client) = match listener.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, log sparingly.
                        state.overload.accept_failed(addr, &e);
                        tokio::time::sleep(Overload::accept_backoff()).await;
                        continue;
                    }
                };
                let slot = match state.overload.admit(&counted.active) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        debug!(%client, %addr, "connection closed at accept: {refusal}");
                        continue;
                    }
                };
                counted.total.fetch_add(1, Relaxed);
                let (state, http, signals, kill) = (
                    state.clone(),
                    http.clone(),
                    signals.clone(),
                    kill_rx.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    serve_for_at_most(state, http, addr, tcp, client, signals, kill).await;
                });
            }
        });
        Running {
            accept,
            drain,
            close_idle,
            kill,
            stats,
        }
    }
}

/// Serves a connection until it ends, or until `kill`; with a max connection duration (Envoy
/// `max_connection_duration`) the connection drains when it is reached (HTTP/1
/// `Connection: close`, HTTP/2 GOAWAY, idle keep-alive closed) and is closed a termination
/// drain later.
async fn serve_for_at_most(
    state: Arc<State>,
    http: Arc<HttpProxy<Edge>>,
    addr: SocketAddr,
    tcp: TcpStream,
    client: SocketAddr,
    signals: Signals,
    kill: watch::Receiver<bool>,
) {
    let Some(max) = state.options.limits.max_connection_duration else {
        tokio::select! {
            _ = serve(state.clone(), http, addr, tcp, client, signals) => {}
            _ = until_true(kill) => debug!(%client, "connection closed after the drain timeout"),
        }
        return;
    };
    // This connection's own signals: the listener's, passed on, or its lifetime running out.
    let (drain_tx, drain_rx) = watch::channel(*signals.drain.borrow());
    let (idle_tx, idle_rx) = watch::channel(*signals.close_idle.borrow());
    let grace = state.drain.settings().termination_drain_duration;
    let Signals {
        mut drain,
        mut close_idle,
    } = signals;
    // Boxed: allocated only for connections with a lifetime, not in every connection's task.
    let lifetime = Box::pin(async move {
        let expired = tokio::time::sleep(max);
        tokio::pin!(expired);
        tokio::select! {
            _ = &mut expired => debug!(%client, "max connection duration reached; draining"),
            _ = until_true_ref(&mut drain) => {
                // The listener drains: so does this connection, until the listener stops.
                let _ = drain_tx.send(true);
                tokio::select! {
                    _ = &mut expired => debug!(%client, "max connection duration reached; draining"),
                    _ = until_true_ref(&mut close_idle) => {}
                }
            }
        }
        let _ = drain_tx.send(true);
        let _ = idle_tx.send(true);
        tokio::time::sleep(grace).await;
    });
    let mine = Signals {
        drain: drain_rx,
        close_idle: idle_rx,
    };
    tokio::select! {
        _ = serve(state.clone(), http, addr, tcp, client, mine) => {}
        _ = lifetime => debug!(%client, "connection closed after its drain"),
        _ = until_true(kill) => debug!(%client, "connection closed after the drain timeout"),
    }
}

async fn serve(
    state: Arc<State>,
    http: Arc<HttpProxy<Edge>>,
    addr: SocketAddr,
    tcp: TcpStream,
    client: SocketAddr,
    signals: Signals,
) {
    let Signals { drain, close_idle } = signals;
    let snapshot = state.snapshot.load_full();
    let Some(listener) = snapshot.listeners.get(&addr).cloned() else {
        return;
    };
    let local = local_address(&tcp, addr);
    // The first request head's deadline runs from here (its first bytes included).
    let accepted = std::time::Instant::now();
    let first_bytes = (state.options.limits.request_headers_timeout).unwrap_or(FIRST_BYTES_TIMEOUT);
    let mut stream = pingora_stream(tcp);
    let Some(client) = proxy_protocol_peer(&snapshot, &mut stream, client).await else {
        return;
    };
    known_addresses(&stream, client, local);
    match &listener.kind {
        ListenerKind::Http { .. } => {
            if snapshot.instance.role == Role::Egress {
                match starts_with_connect(&mut stream, first_bytes).await {
                    Some(true) => {
                        Box::pin(tunnel::connect::connect_tunnel(
                            state,
                            Box::new(stream),
                            ConnInfo::new(client, local),
                        ))
                        .await;
                        return;
                    }
                    Some(false) => {}
                    None => return,
                }
            }
            let peer = Peer {
                client,
                local,
                accepted,
            };
            match h2c_preface(&mut stream, first_bytes).await {
                Some(true) => {
                    Box::pin(serve_http(&http, Box::new(stream), &goaway_watch(&drain))).await
                }
                Some(false) => {
                    let stream = Box::new(stream);
                    http1::serve(&state, &http, stream, peer, &drain, &close_idle).await
                }
                None => {}
            }
        }
        ListenerKind::Tcp { route } => {
            if let Some(route) = route {
                let info = ConnInfo::new(client, local);
                Box::pin(tunnel::proxy_route(&state, route, stream, info)).await;
            }
        }
        // Boxed, like the other protocols' paths below: the task of a plain HTTP/1 connection
        // should not be sized by the TLS path's locals (see `a_connection_task_stays_small`).
        ListenerKind::Tls(chains) => {
            Box::pin(async move {
                let mut hello = Vec::new();
                let parsed = tokio::time::timeout(
                    first_bytes,
                    peek_client_hello(&mut stream, &mut hello, MAX_CLIENT_HELLO),
                )
                .await;
                stream.rewind(&hello);
                let sni = match parsed {
                    Ok(Ok(Parse::Complete(h))) => h.server_name,
                    Ok(Ok(Parse::NotTls(why))) => {
                        debug!(%client, %local, "not a TLS ClientHello ({why}); closing");
                        return;
                    }
                    _ => return,
                };
                let mut info = ConnInfo::new(client, local);
                info.sni = sni.clone();
                let Some((chain_index, chain)) = chains.select(sni.as_deref()) else {
                    state.unknown_sni(sni.as_deref(), local);
                    // Fails the handshake with an `unrecognized_name` alert.
                    let _ = Box::pin(tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        pingora::protocols::tls::server::handshake(&state.reject_sni, stream),
                    ))
                    .await;
                    return;
                };
                match &chain.action {
                    ChainAction::Passthrough { route } => {
                        Box::pin(tunnel::proxy_route(&state, route, stream, info)).await
                    }
                    ChainAction::TerminateHttp { tls, routes } => {
                        let callbacks = ChainHandshake {
                            certificates: tls.certificates.clone(),
                            chain: chain_index,
                            route_table: routes.name.clone(),
                        };
                        let hs = Box::pin(tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            handshake_with_callback(&tls.acceptor, stream, &callbacks),
                        ))
                        .await;
                        match hs {
                            Ok(Ok(tls_stream)) => {
                                use pingora::protocols::{Ssl, ALPN};
                                let h2 = matches!(tls_stream.selected_alpn_proto(), Some(ALPN::H2));
                                if h2 {
                                    let stream = Box::new(tls_stream);
                                    Box::pin(serve_http(&http, stream, &goaway_watch(&drain))).await
                                } else {
                                    let peer = Peer {
                                        client,
                                        local,
                                        accepted,
                                    };
                                    let stream = Box::new(tls_stream);
                                    http1::serve(&state, &http, stream, peer, &drain, &close_idle)
                                        .await
                                }
                            }
                            Ok(Err(e)) => debug!(%client, sni = ?sni, "TLS handshake failed: {e}"),
                            Err(_) => debug!(%client, "TLS handshake timed out"),
                        }
                    }
                    ChainAction::TerminateTcp { tls, route } => {
                        let callbacks = ChainHandshake {
                            certificates: tls.certificates.clone(),
                            chain: chain_index,
                            route_table: chain.name.as_str().into(),
                        };
                        let hs = Box::pin(tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            handshake_with_callback(&tls.acceptor, stream, &callbacks),
                        ))
                        .await;
                        if let (Ok(Ok(tls_stream)), Some(route)) = (hs, route) {
                            Box::pin(tunnel::proxy_route(&state, route, tls_stream, info)).await;
                        }
                    }
                }
            })
            .await
        }
    }
}

/// With `gatewayTopology.proxyProtocol`, the PROXY header's source is the client (see
/// `proxy_protocol`); a connection without a valid header is closed (`None`), as Envoy does.
async fn proxy_protocol_peer(
    snapshot: &Snapshot,
    stream: &mut L4Stream,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    if !snapshot.mesh.topology.proxy_protocol {
        return Some(peer);
    }
    // Boxed: its read buffer should not size the task of every connection (most have no header).
    match Box::pin(super::proxy_protocol::accept(stream)).await {
        Ok(source) => Some(source.unwrap_or(peer)),
        Err(e) => {
            debug!(%peer, "connection refused: {e}");
            None
        }
    }
}

/// A connection whose protocol Pingora decides: TLS by ALPN, or h2c after the preface.
async fn serve_http(http: &Arc<HttpProxy<Edge>>, stream: Stream, drain: &watch::Receiver<bool>) {
    let mut next = http.process_new(stream, drain).await;
    while let Some(s) = next {
        next = http.process_new(s, drain).await;
    }
}

/// Envoy sends a draining HTTP/2 connection its GOAWAY with a response, never before a
/// request (`ConnectionManagerImpl` on `drainClose()`); Pingora sends it the moment the
/// connection starts, which refuses the first request of a client that reads the server's
/// frames before it writes. So an HTTP/2 connection accepted during a drain gets its GOAWAY
/// this long after it starts.
const NEW_CONNECTION_GOAWAY_DELAY: Duration = Duration::from_secs(1);

/// The drain watch for Pingora's HTTP/2 loop: `drain` itself, or for a connection accepted
/// while draining, one that turns true after [`NEW_CONNECTION_GOAWAY_DELAY`].
fn goaway_watch(drain: &watch::Receiver<bool>) -> watch::Receiver<bool> {
    if !*drain.borrow() {
        return drain.clone();
    }
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(NEW_CONNECTION_GOAWAY_DELAY).await;
        let _ = tx.send(true);
    });
    rx
}

async fn until_true_ref(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Whether a plain connection opens with the HTTP/2 preface, reading (then un-reading) only
/// as far as the first byte that differs from it. `None`: nothing usable in time.
async fn h2c_preface(stream: &mut L4Stream, wait: Duration) -> Option<bool> {
    use tokio::io::AsyncReadExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut seen = Vec::with_capacity(PREFACE.len());
    let mut buf = [0u8; PREFACE.len()];
    while seen.len() < PREFACE.len() && PREFACE.starts_with(&seen) {
        let want = PREFACE.len() - seen.len();
        let read = tokio::time::timeout(wait, stream.read(&mut buf[..want])).await;
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    stream.rewind(&seen);
    Some(seen == PREFACE)
}

/// Peeks (without consuming) whether the client opened with a CONNECT request. `None`: the
/// client sent nothing usable in time (a partial read cannot be replayed: drop it).
async fn starts_with_connect(stream: &mut L4Stream, wait: Duration) -> Option<bool> {
    use pingora::protocols::Peek;
    let mut buf = [0u8; 8];
    match tokio::time::timeout(wait, stream.try_peek(&mut buf)).await {
        Ok(Ok(true)) => Some(&buf == b"CONNECT "),
        _ => None,
    }
}

/// Serves a fixed app (the admin listener) until the process exits.
pub async fn serve_app<A: ServerApp + Send + Sync + 'static>(listener: TcpListener, app: Arc<A>) {
    let (_never, shutdown) = watch::channel(false);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut next = app
                .process_new(Box::new(pingora_stream(tcp)), &shutdown)
                .await;
            while let Some(s) = next {
                next = app.process_new(s, &shutdown).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn output_size<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    type Args = (
        Arc<State>,
        Arc<HttpProxy<Edge>>,
        SocketAddr,
        TcpStream,
        SocketAddr,
        Signals,
        watch::Receiver<bool>,
    );

    /// Each accepted connection's task is allocated whole at accept and lives as long as the
    /// connection, idle or not: its size is most of what an idle keep-alive connection costs
    /// (issue 14: at most 4 KiB per idle connection; nginx 0.5, Envoy 16). A rare path's locals
    /// count as much as the common path's: a lingering close's 8 KiB array made every connection
    /// 12.7 KiB (3,056 bytes of task without it, 2,184 with the TLS path and the connection
    /// lifetime boxed; test profile).
    #[test]
    fn a_connection_task_stays_small() {
        let size =
            output_size(|(s, h, a, t, c, sig, k): Args| serve_for_at_most(s, h, a, t, c, sig, k));
        assert!(size <= 2560, "the connection task takes {size} bytes");
    }
}
