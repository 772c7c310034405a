//! Byte-stream proxying: `tcp` and `tls` (passthrough) routes, TLS-terminated TCP, and the
//! egress CONNECT tunnel (`connect`). Each connection gets one access-log line when it closes.

pub mod connect;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::State;
use crate::compile::listener::TcpRoute;
use crate::compile::reply::ResponseFlag;
use crate::observe::access_entry::AccessLogEntry;
use crate::telemetry::istio::Metered;
use crate::tls::upstream::SanCheck;
use crate::upstream::{Cluster, PickError, PickInput};

/// Why an upstream connection for a tunnel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Pick(#[from] PickError),
    #[error("{0}")]
    Connect(String),
    /// The upstream certificate does not carry a name the DestinationRule accepts.
    #[error("{0}")]
    Certificate(String),
    /// A destination the request chose that this gateway does not connect to.
    #[error("the requested host resolves to {0}, which this gateway does not connect to")]
    Refused(&'static str),
}

/// Who is on the other end of a proxied connection, for the log.
pub struct ConnInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub sni: Option<String>,
    pub start: Instant,
    pub start_time: SystemTime,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, local: SocketAddr) -> Self {
        ConnInfo {
            client,
            local,
            sni: None,
            start: Instant::now(),
            start_time: SystemTime::now(),
        }
    }

    fn entry(&self) -> AccessLogEntry {
        let mut e = AccessLogEntry::new(self.start_time);
        e.downstream_remote_address = Some(self.client.to_string());
        e.downstream_local_address = Some(self.local.to_string());
        e.requested_server_name = self.sni.clone();
        e
    }
}

/// Opens a connection to an endpoint of `cluster` for `host:port`. `originate_tls`: as the
/// cluster's policy says (TCP routes); a CONNECT tunnel carries the client's own TLS and never
/// originates it (nor counts in the cluster's connection figures).
async fn open(
    state: &State,
    cluster: &Cluster,
    host: &str,
    port: u16,
    originate_tls: bool,
) -> Result<(Stream, SocketAddr), TunnelError> {
    let input = PickInput {
        request_host: host,
        request_port: port,
        ..Default::default()
    };
    let address = cluster.pick(input, &state.dns).await?.address;
    if super::destination::request_derived(cluster) {
        let role = state.snapshot.load().instance.role;
        if let Some(why) = super::destination::refused(address, role, state.options.admin) {
            return Err(TunnelError::Refused(why));
        }
    }
    let mut peer = cluster.peer(address, host, None);
    if !originate_tls {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTP;
        peer.options.tracer = None;
    }
    let stream = state.connector.new_stream(&peer).await.map_err(|e| {
        let context = e
            .context
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        TunnelError::Connect(format!("{} {context}", e.etype().as_str()))
    })?;
    let digest = pingora::protocols::Digest {
        ssl_digest: stream.get_ssl_digest(),
        ..Default::default()
    };
    if let Some(reason) = SanCheck::failure(Some(&digest)) {
        return Err(TunnelError::Certificate(reason));
    }
    Ok((stream, address))
}

/// Proxies `client` to a destination of `route` until either side closes.
pub async fn proxy_route<C>(state: &State, route: &TcpRoute, mut client: C, info: ConnInfo)
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(cluster) = route.choose().cloned() else {
        return;
    };
    let host = info.sni.clone().unwrap_or_else(|| cluster.host.clone());
    let mut entry = info.entry();
    entry.upstream_cluster = Some(cluster.name.clone());
    // Istio's TCP metrics: opened and closed once, bytes as they flow (response flags as the
    // connection ended: `UF` when no upstream connection was made).
    let istio = &state.metrics.istio;
    match open(state, &cluster, &host, cluster.port, true).await {
        Ok((mut upstream, addr)) => {
            entry.upstream_host = Some(addr.to_string());
            let tcp = cluster.telemetry.of(Some(addr)).tcp(istio, "-");
            tcp.opened.inc();
            let mut client = Metered::new(&mut client, &tcp);
            let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .unwrap_or((0, 0));
            entry.bytes_received = up;
            entry.bytes_sent = down;
            tcp.closed.inc();
        }
        Err(reason) => {
            let tcp = cluster
                .telemetry
                .of(None)
                .tcp(istio, ResponseFlag::UF.as_str());
            tcp.opened.inc();
            tcp.closed.inc();
            entry.response_flags = Some(ResponseFlag::UF.as_str().into());
            entry.upstream_transport_failure_reason = Some(reason.to_string());
        }
    }
    entry.duration = info.start.elapsed().as_millis() as u64;
    state.access_log.log(&entry);
}
