//! Asynchronous DNS with a TTL cache: the request path never blocks on a lookup. Answers are
//! kept for their TTL; names in use are re-resolved in the background shortly before they
//! expire, so requests almost never wait for DNS. A failed refresh keeps serving the last
//! answer for a short grace period (Envoy's behaviour on resolution failure).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use tracing::{debug, warn};

/// Lower bound on how long an answer is cached (also the refresh cadence floor).
const MIN_TTL: Duration = Duration::from_secs(1);
/// Upper bound: re-resolve at least this often even if the TTL is longer.
const MAX_TTL: Duration = Duration::from_secs(300);
/// How long a stale answer may still be used when a refresh fails.
const STALE_GRACE: Duration = Duration::from_secs(60);
/// Names not used for this long stop being refreshed and are forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(600);
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
#[error("DNS resolution of {host} failed: {reason}")]
pub struct DnsError {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Entry {
    addrs: Arc<[IpAddr]>,
    valid_until: Instant,
    last_used: Instant,
}

pub struct DnsCache {
    resolver: TokioResolver,
    entries: RwLock<HashMap<String, Entry>>,
}

impl DnsCache {
    /// Uses the system configuration (`/etc/resolv.conf`, `/etc/hosts`).
    pub fn from_system() -> DnsCache {
        let mut builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            warn!("cannot read the system DNS configuration ({e}); using the resolver defaults");
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioConnectionProvider::default(),
            )
        });
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.positive_min_ttl = Some(MIN_TTL);
        opts.positive_max_ttl = Some(MAX_TTL);
        opts.timeout = Duration::from_secs(2);
        let resolver = builder.build();
        DnsCache {
            resolver,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The addresses of `host` (an IP literal is returned as is).
    pub async fn resolve(&self, host: &str) -> Result<Arc<[IpAddr]>, DnsError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Arc::from([ip]));
        }
        let now = Instant::now();
        let cached = {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            entries.get_mut(host).map(|e| {
                e.last_used = now;
                e.clone()
            })
        };
        match cached {
            Some(e) if e.valid_until > now => Ok(e.addrs),
            Some(e) => match self.lookup(host).await {
                Ok(addrs) => Ok(addrs),
                Err(err) if e.valid_until + STALE_GRACE > now => {
                    warn!("{err}; serving the previous answer for up to {STALE_GRACE:?}");
                    Ok(e.addrs)
                }
                Err(err) => Err(err),
            },
            None => self.lookup(host).await,
        }
    }

    async fn lookup(&self, host: &str) -> Result<Arc<[IpAddr]>, DnsError> {
        let err = |reason: String| DnsError {
            host: host.to_string(),
            reason,
        };
        // A fully qualified name so that search domains do not turn `a.com` into `a.com.corp`.
        let fqdn = if host.contains('.') && !host.ends_with('.') {
            format!("{host}.")
        } else {
            host.to_string()
        };
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup_ip(fqdn.as_str()))
            .await
            .map_err(|_| err(format!("no answer within {LOOKUP_TIMEOUT:?}")))?
            .map_err(|e| err(e.to_string()))?;
        let addrs: Arc<[IpAddr]> = lookup.iter().collect::<Vec<_>>().into();
        if addrs.is_empty() {
            return Err(err("no addresses".into()));
        }
        let valid_until = lookup.valid_until().max(Instant::now() + MIN_TTL);
        debug!(host, ?addrs, "resolved");
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let last_used = entries.get(host).map_or(now, |e| e.last_used);
        entries.insert(
            host.to_string(),
            Entry {
                addrs: addrs.clone(),
                valid_until,
                last_used,
            },
        );
        Ok(addrs)
    }

    /// Keeps answers for names in use fresh; runs until the process ends.
    pub async fn refresh_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let due: Vec<String> = {
                let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
                entries.retain(|_, e| now.duration_since(e.last_used) < IDLE_FORGET);
                entries
                    .iter()
                    .filter(|(_, e)| e.valid_until <= now + Duration::from_secs(2))
                    .map(|(h, _)| h.clone())
                    .collect()
            };
            for host in due {
                if let Err(e) = self.lookup(&host).await {
                    debug!("background refresh: {e}");
                }
            }
        }
    }
}
