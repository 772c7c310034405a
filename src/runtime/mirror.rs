//! Mirroring (`mirror`, `mirrors`): a fire-and-forget copy of a routed request to each mirror
//! cluster that rolls it, as Envoy's shadow writer sends it (`router.cc` streaming shadows,
//! `shadow_writer_impl.cc`):
//!
//! - the copy starts with the request head, as the primary's upstream gets it (header
//!   operations, rewrites, forwarding headers), the original `Host` kept (Istio's
//!   `DISABLE_SHADOW_HOST_SUFFIX`, true by default: no `-shadow` suffix);
//! - the request body streams to the copy as it streams to the primary; the response is
//!   read and discarded; the route's timeout bounds the copy;
//! - the copy never delays or fails the primary: it runs on its own task, a body chunk the copy
//!   cannot take at once abandons the copy (never back-pressure on the client), and only the
//!   first attempt feeds it (retries do not send it again);
//! - it goes through the mirror cluster like any request: endpoint choice, circuit breaker,
//!   that cluster's stats (requests, connections, failures);
//! - at most [`MAX_IN_FLIGHT`] copies are in flight in the process; beyond that a copy is
//!   dropped (and counted: [`Mirrors::dropped`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use tokio::sync::{mpsc, Semaphore};

use crate::compile::action::Mirror;
use crate::dns::DnsCache;
use crate::upstream::{Cluster, PickInput};

/// Copies in flight in the whole process.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Body chunks a copy may have queued before it is abandoned.
const QUEUED_CHUNKS: usize = 16;

/// What the primary's body filter hands to a copy.
#[derive(Debug)]
enum Feed {
    Data(Bytes),
    End,
}

/// The mirror machinery shared by every request: its own connection pools, the in-flight bound.
pub struct Mirrors {
    connector: Connector,
    permits: Arc<Semaphore>,
    dropped: AtomicU64,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            connector: Connector::new(None),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            dropped: AtomicU64::new(0),
        }
    }
}

/// A started copy's body feed (held by the request while its body streams).
#[derive(Debug)]
pub struct MirrorFeed(mpsc::Sender<Feed>);

impl Mirrors {
    /// Copies dropped because [`MAX_IN_FLIGHT`] copies were already in flight.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Starts a copy of `head` for each mirror that rolls this request. `body`: the request has
    /// a body (fed through the returned feeds). `timeout`: the route's.
    pub fn start(
        self: &Arc<Self>,
        mirrors: &[Mirror],
        head: &RequestHeader,
        body: bool,
        timeout: Option<Duration>,
        dns: &Arc<DnsCache>,
    ) -> Vec<MirrorFeed> {
        let mut feeds = Vec::new();
        for m in mirrors.iter().filter(|m| m.roll()) {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.dropped.fetch_add(1, Relaxed);
                continue;
            };
            let mut head = Box::new(head.clone());
            // The copy is its own HTTP/1.1 (or h2) request, whatever the client spoke.
            head.set_version(http::Version::HTTP_11);
            for h in [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
            ] {
                head.remove_header(h);
            }
            let rx = if body {
                // An h2 client need not say how long its body is; HTTP/1.1 must be told.
                if head.headers.get(http::header::CONTENT_LENGTH).is_none() {
                    let _ = head.insert_header(http::header::TRANSFER_ENCODING, "chunked");
                }
                let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
                feeds.push(MirrorFeed(tx));
                Some(rx)
            } else {
                head.remove_header(&http::header::TRANSFER_ENCODING);
                None
            };
            let this = self.clone();
            let cluster = m.cluster.clone();
            let dns = dns.clone();
            tokio::spawn(async move {
                let copy = this.send(&cluster, head, rx, &dns);
                let outcome = match timeout {
                    Some(t) => tokio::time::timeout(t, copy).await.unwrap_or(Err(())),
                    None => copy.await,
                };
                if outcome.is_err() {
                    tracing::debug!(cluster = %cluster.name, "mirror copy failed or was abandoned");
                }
                drop(permit);
            });
        }
        feeds
    }

    /// One copy, start to end; its response is read and discarded.
    async fn send(
        &self,
        cluster: &Cluster,
        head: Box<RequestHeader>,
        mut body: Option<mpsc::Receiver<Feed>>,
        dns: &DnsCache,
    ) -> Result<(), ()> {
        let _admission = cluster.admit().await.map_err(|_| ())?;
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| crate::config::host::normalize_request_host(h).into_owned())
            .unwrap_or_default();
        let input = PickInput {
            request_host: &host,
            request_port: cluster.port,
            ..Default::default()
        };
        let picked = cluster.pick(input, dns).await.map_err(|_| ())?;
        let peer = cluster.peer(picked.address, &host, None);
        let (mut session, _reused) = match self.connector.get_http_session(&peer).await {
            Ok(s) => s,
            Err(_) => {
                cluster.stats.connect_failures.fetch_add(1, Relaxed);
                return Err(());
            }
        };
        session.write_request_header(head).await.map_err(|_| ())?;
        if let Some(rx) = body.as_mut() {
            loop {
                match rx.recv().await {
                    Some(Feed::Data(b)) => {
                        session.write_request_body(b, false).await.map_err(|_| ())?
                    }
                    Some(Feed::End) => break,
                    // The primary's body ended early or the copy fell behind: abandon it.
                    None => return Err(()),
                }
            }
        }
        session.finish_request_body().await.map_err(|_| ())?;
        session.read_response_header().await.map_err(|_| ())?;
        while !session.response_done() {
            if session
                .read_response_body()
                .await
                .map_err(|_| ())?
                .is_none()
            {
                break;
            }
        }
        self.connector
            .release_http_session(session, &peer, Some(cluster.upstream.idle_timeout))
            .await;
        Ok(())
    }
}

impl MirrorFeed {
    /// Hands a body chunk to the copy; `false` when the copy cannot take it now (it is then
    /// abandoned: the feed is dropped).
    fn feed(&self, chunk: Option<&Bytes>, end: bool) -> bool {
        if let Some(b) = chunk.filter(|b| !b.is_empty()) {
            if self.0.try_send(Feed::Data(b.clone())).is_err() {
                return false;
            }
        }
        !end || self.0.try_send(Feed::End).is_ok()
    }
}

/// Feeds a body chunk of the primary request to its copies; a copy that cannot keep up is
/// abandoned, and all of them are released at the end of the body.
pub fn feed_body(feeds: &mut Vec<MirrorFeed>, chunk: Option<&Bytes>, end: bool) {
    feeds.retain(|f| f.feed(chunk, end) && !end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_copy_that_falls_behind_is_abandoned_never_waited_for() {
        let (tx, mut rx) = mpsc::channel(QUEUED_CHUNKS);
        let mut feeds = vec![MirrorFeed(tx)];
        let chunk = Bytes::from_static(b"x");
        for _ in 0..QUEUED_CHUNKS {
            feed_body(&mut feeds, Some(&chunk), false);
        }
        assert_eq!(feeds.len(), 1);
        feed_body(&mut feeds, Some(&chunk), false);
        assert!(feeds.is_empty(), "the 17th queued chunk abandons the copy");
        let mut n = 0;
        while let Ok(Feed::Data(_)) = rx.try_recv() {
            n += 1;
        }
        assert_eq!(n, QUEUED_CHUNKS);
    }

    #[tokio::test]
    async fn the_end_of_the_body_is_passed_on_and_releases_the_feed() {
        let (tx, mut rx) = mpsc::channel(QUEUED_CHUNKS);
        let mut feeds = vec![MirrorFeed(tx)];
        feed_body(&mut feeds, Some(&Bytes::from_static(b"ab")), true);
        assert!(feeds.is_empty());
        assert!(matches!(rx.recv().await, Some(Feed::Data(b)) if b == "ab"));
        assert!(matches!(rx.recv().await, Some(Feed::End)));
    }
}
