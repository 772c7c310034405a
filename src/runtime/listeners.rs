//! The listener set: Portcullis owns its accept loops (Pingora fixes its listeners at start-up),
//! so a reload can open new Gateway ports and close removed ones without touching the others.
//! Each accepted connection is dispatched by the listener's kind: plain HTTP (and CONNECT on an
//! egress gateway), TLS by SNI (terminate or pass through), or TCP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
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
    /// `true` tells connections to finish their current request and close (Pingora's
    /// shutdown watch: no more keep-alive, h2 GOAWAY).
    drain: watch::Sender<bool>,
    /// `true` ends whatever is still open after the drain timeout.
    kill: watch::Sender<bool>,
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
        let connections = state.overload.connection_counter();
        Listeners {
            state,
            http,
            running: Mutex::new(BTreeMap::new()),
            connections,
        }
    }

    /// Binds the addresses `snapshot` needs that are not open yet. Nothing changes if any
    /// bind fails, so a reload that cannot listen is refused as a whole.
    pub fn prepare(&self, snapshot: &Snapshot) -> Result<Prepared, BindError> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut bound = Vec::new();
        for addr in snapshot.listeners.keys() {
            if running.contains_key(addr) {
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
                self.stop(r, self.state.options.drain_timeout);
            }
        }
    }

    /// Stops accepting; idle keep-alive connections close at once (see [`http1::serve`]), busy
    /// ones after their current request, and whatever is left after `grace`.
    fn stop(&self, r: Running, grace: Duration) {
        r.accept.abort();
        let _ = r.drain.send(true);
        let kill = r.kill;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = kill.send(true);
        });
    }

    /// Stops accepting everywhere and asks every connection to finish (SIGTERM).
    pub async fn shutdown(&self) {
        let all: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *running).into_values().collect()
        };
        for r in all {
            self.stop(r, self.state.options.drain_timeout);
        }
        // Wakes anything still parked in Pingora's own keep-alive wait.
        self.http.cleanup().await;
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
        let (kill, kill_rx) = watch::channel(false);
        // Open connections on this listener (`--max-connections-per-listener`).
        let counted = Arc::new(AtomicUsize::new(0));
        let state = self.state.clone();
        let http = self.http.clone();
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
                let slot = match state.overload.admit(&counted) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        debug!(%client, %addr, "connection closed at accept: {refusal}");
                        continue;
                    }
                };
                let (state, http, drain, kill) = (
                    state.clone(),
                    http.clone(),
                    drain_rx.clone(),
                    kill_rx.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    serve_for_at_most(state, http, addr, tcp, client, drain, kill).await;
                });
            }
        });
        Running {
            accept,
            drain,
            kill,
        }
    }
}

/// Serves a connection until it ends, or until `kill`; with a max connection duration (Envoy
/// `max_connection_duration`) the connection drains when it is reached (HTTP/1
/// `Connection: close`, HTTP/2 GOAWAY, idle keep-alive closed) and is closed a drain timeout
/// later.
async fn serve_for_at_most(
    state: Arc<State>,
    http: Arc<HttpProxy<Edge>>,
    addr: SocketAddr,
    tcp: TcpStream,
    client: SocketAddr,
    drain: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) {
    let Some(max) = state.options.limits.max_connection_duration else {
        tokio::select! {
            _ = serve(state.clone(), http, addr, tcp, client, drain) => {}
            _ = until_true(kill) => debug!(%client, "connection closed after the drain timeout"),
        }
        return;
    };
    let (mine, mine_rx) = watch::channel(*drain.borrow());
    let grace = state.options.drain_timeout;
    let lifetime = async move {
        tokio::select! {
            _ = until_true(drain) => {}
            _ = tokio::time::sleep(max) => debug!(%client, "max connection duration reached; draining"),
        }
        let _ = mine.send(true);
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = serve(state.clone(), http, addr, tcp, client, mine_rx) => {}
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
    drain: watch::Receiver<bool>,
) {
    let snapshot = state.snapshot.load_full();
    let Some(listener) = snapshot.listeners.get(&addr).cloned() else {
        return;
    };
    let local = tcp.local_addr().unwrap_or(addr);
    // The first request head's deadline runs from here (its first bytes included).
    let accepted = std::time::Instant::now();
    let first_bytes = (state.options.limits.request_headers_timeout).unwrap_or(FIRST_BYTES_TIMEOUT);
    let mut stream = pingora_stream(tcp);
    match &listener.kind {
        ListenerKind::Http { .. } => {
            if snapshot.instance.role == Role::Egress {
                match starts_with_connect(&mut stream, first_bytes).await {
                    Some(true) => {
                        tunnel::connect::connect_tunnel(
                            state,
                            Box::new(stream),
                            ConnInfo::new(client, local),
                        )
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
                Some(true) => serve_http(&http, Box::new(stream), &drain).await,
                Some(false) => http1::serve(&state, &http, Box::new(stream), peer, &drain).await,
                None => {}
            }
        }
        ListenerKind::Tcp { route } => {
            if let Some(route) = route {
                tunnel::proxy_route(&state, route, stream, ConnInfo::new(client, local)).await;
            }
        }
        ListenerKind::Tls(chains) => {
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
                let _ = tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    pingora::protocols::tls::server::handshake(&state.reject_sni, stream),
                )
                .await;
                return;
            };
            match &chain.action {
                ChainAction::Passthrough { route } => {
                    tunnel::proxy_route(&state, route, stream, info).await
                }
                ChainAction::TerminateHttp { tls, routes } => {
                    let callbacks = ChainHandshake {
                        certificates: tls.certificates.clone(),
                        chain: chain_index,
                        route_table: routes.name.clone(),
                    };
                    let hs = tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        handshake_with_callback(&tls.acceptor, stream, &callbacks),
                    )
                    .await;
                    match hs {
                        Ok(Ok(tls_stream)) => {
                            use pingora::protocols::{Ssl, ALPN};
                            let h2 = matches!(tls_stream.selected_alpn_proto(), Some(ALPN::H2));
                            if h2 {
                                serve_http(&http, Box::new(tls_stream), &drain).await
                            } else {
                                let peer = Peer {
                                    client,
                                    local,
                                    accepted,
                                };
                                let stream = Box::new(tls_stream);
                                http1::serve(&state, &http, stream, peer, &drain).await
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
                    let hs = tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        handshake_with_callback(&tls.acceptor, stream, &callbacks),
                    )
                    .await;
                    if let (Ok(Ok(tls_stream)), Some(route)) = (hs, route) {
                        tunnel::proxy_route(&state, route, tls_stream, info).await;
                    }
                }
            }
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
