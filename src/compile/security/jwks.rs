//! JSON Web Key Sets: parsed as Envoy parses them (`source/common/jwt/jwks.cc`: keys that do not
//! parse are skipped), and, for `jwksUri`, fetched and cached off the request path as istiod's
//! resolver does (`pilot/pkg/model/jwks_resolver.go`): refreshed every
//! `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` (20 min), after a failure again in 1 min doubling up to
//! 60 min, and the last good set kept while the server is down (dropped after 7 days without a
//! successful refresh). A token whose `kid` no cached key has asks for one early refetch, at
//! most once per 30 s per URI (Envoy's opt-in `refetch_jwks_on_kid_mismatch`, done in the
//! background here: the request itself is answered from the cache). The store outlives
//! reloads; a reload only registers URIs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::DecodingKey;
use serde_json::Value;
use tokio::sync::Notify;

/// One usable public key.
pub struct Key {
    pub kid: String,
    pub alg: String,
    pub kty: String,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {} {})", self.kty, self.kid, self.alg)
    }
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("Jwks is an invalid JSON")]
    Json,
    #[error("Jwks does not have [keys] field")]
    NoKeys,
    #[error("[keys] in Jwks is not an array")]
    BadKeys,
    #[error("Jwks doesn't have any valid public key")]
    NoValidKeys,
}

impl KeySet {
    /// Parses a JWKS document; keys of unknown types or with bad fields are skipped.
    pub fn parse(text: &str) -> Result<KeySet, JwksError> {
        let v: Value = serde_json::from_str(text).map_err(|_| JwksError::Json)?;
        let keys = v
            .get("keys")
            .ok_or(JwksError::NoKeys)?
            .as_array()
            .ok_or(JwksError::BadKeys)?;
        let keys: Vec<Key> = keys.iter().filter_map(Key::parse).collect();
        if keys.is_empty() {
            return Err(JwksError::NoValidKeys);
        }
        Ok(KeySet { keys })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.is_empty() || k.kid == kid)
    }
}

impl Key {
    fn parse(v: &Value) -> Option<Key> {
        let obj = v.as_object()?;
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let kty = obj.get("kty")?.as_str()?.to_string();
        if !matches!(kty.as_str(), "RSA" | "EC" | "OKP" | "oct") {
            return None;
        }
        // The crate's `alg` enum is narrower than what JWKS documents carry; Envoy compares
        // `alg` as a string, so it is kept aside and left out of the key parse.
        let mut bare = obj.clone();
        bare.remove("alg");
        bare.remove("key_ops");
        bare.remove("use");
        let jwk: Jwk = serde_json::from_value(Value::Object(bare)).ok()?;
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(Key {
            kid: s("kid"),
            alg: s("alg"),
            kty,
            key,
        })
    }
}

const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(60 * 60);
const EVICT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const KID_REFETCH_SPACING: Duration = Duration::from_secs(30);

/// Istio's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` (a Go duration), default 20 minutes.
fn refresh_interval() -> Duration {
    std::env::var("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL")
        .ok()
        .and_then(|v| crate::config::types::Duration::parse(&v).ok())
        .map(|d| d.get())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_REFRESH)
}

/// The cached keys of one `jwksUri`.
#[derive(Debug)]
pub struct RemoteJwks {
    pub uri: String,
    keys: ArcSwapOption<KeySet>,
    state: Mutex<FetchState>,
}

#[derive(Debug)]
struct FetchState {
    timeout: Duration,
    last_success: Option<Instant>,
    next_due: Option<Instant>,
    backoff: Duration,
    last_kid_refetch: Option<Instant>,
}

impl RemoteJwks {
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }
}

/// Every `jwksUri` any snapshot named, with its keys; fetched by [`JwksStore::run`].
#[derive(Debug, Default)]
pub struct JwksStore {
    entries: Mutex<HashMap<String, Arc<RemoteJwks>>>,
    wake: Notify,
    running: AtomicBool,
}

impl JwksStore {
    /// The entry for `uri`, created (and fetched soon) if new. Called while compiling.
    pub fn register(&self, uri: &str, timeout: Duration) -> Arc<RemoteJwks> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .entry(uri.to_string())
            .or_insert_with(|| {
                Arc::new(RemoteJwks {
                    uri: uri.to_string(),
                    keys: ArcSwapOption::empty(),
                    state: Mutex::new(FetchState {
                        timeout,
                        last_success: None,
                        next_due: None,
                        backoff: RETRY_FIRST,
                        last_kid_refetch: None,
                    }),
                })
            })
            .clone();
        if let Ok(mut st) = entry.state.lock() {
            st.timeout = timeout;
        }
        drop(entries);
        self.wake.notify_one();
        entry
    }

    /// A token named a `kid` the cache lacks: refetch early, at most once per 30 s.
    pub fn kid_missing(&self, entry: &RemoteJwks) {
        let now = Instant::now();
        let mut st = entry.state.lock().unwrap_or_else(|e| e.into_inner());
        if st
            .last_kid_refetch
            .is_some_and(|t| now.duration_since(t) < KID_REFETCH_SPACING)
        {
            return;
        }
        st.last_kid_refetch = Some(now);
        st.next_due = Some(now);
        drop(st);
        self.wake.notify_one();
    }

    /// Starts the refresher on the current tokio runtime (once).
    pub fn spawn(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move { store.run().await });
    }

    /// Fetches what is due, then sleeps until the next due time or a wake-up.
    async fn run(self: Arc<Self>) {
        let interval = refresh_interval();
        loop {
            let now = Instant::now();
            let entries: Vec<Arc<RemoteJwks>> = self
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let mut next: Option<Instant> = None;
            let mut due = Vec::new();
            for e in entries {
                let st = e.state.lock().unwrap_or_else(|p| p.into_inner());
                match st.next_due {
                    Some(t) if t > now => next = Some(next.map_or(t, |n| n.min(t))),
                    _ => due.push((e.clone(), st.timeout)),
                }
            }
            let fetches = due.into_iter().map(|(e, timeout)| async move {
                let result = fetch(&e.uri, timeout).await;
                e.record(result, interval);
            });
            let any = fetches.len() > 0;
            futures_join_all(fetches).await;
            if any {
                continue; // recompute due times
            }
            match next {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

/// Runs futures concurrently (a JWKS refresh touches a handful of URIs).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

impl RemoteJwks {
    fn record(&self, result: Result<KeySet, FetchError>, interval: Duration) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(keys) => {
                tracing::info!(uri = %self.uri, keys = keys.keys.len(), "JWKS fetched");
                self.keys.store(Some(Arc::new(keys)));
                st.last_success = Some(now);
                st.backoff = RETRY_FIRST;
                st.next_due = Some(now + interval);
            }
            Err(e) => {
                let kept = self.keys.load().is_some();
                tracing::warn!(uri = %self.uri, error = %e, kept_previous_keys = kept, "JWKS fetch failed");
                if st
                    .last_success
                    .is_some_and(|t| now.duration_since(t) >= EVICT_AFTER)
                {
                    self.keys.store(None);
                }
                st.next_due = Some(now + st.backoff.min(interval));
                st.backoff = (st.backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Why one fetch of a remote JWKS gave no key set.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Http(#[from] crate::http_client::HttpError),
    #[error("status {0}")]
    Status(http::StatusCode),
    #[error(transparent)]
    Keys(#[from] JwksError),
}

async fn fetch(uri: &str, timeout: Duration) -> Result<KeySet, FetchError> {
    let resp = crate::http_client::send(
        http::Method::GET,
        uri,
        http::HeaderMap::new(),
        bytes::Bytes::new(),
        timeout,
    )
    .await?;
    if !resp.status.is_success() {
        return Err(FetchError::Status(resp.status));
    }
    Ok(KeySet::parse(&String::from_utf8_lossy(&resp.body))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_skipped_and_an_empty_set_is_an_error() {
        let set = KeySet::parse(
            r#"{"keys": [{"kty": "RSA", "kid": "a", "n": "!!", "e": "AQAB"}, {"kty": "XYZ"},
               {"kty": "EC", "kid": "b", "crv": "P-256", "alg": "ES256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
        )
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].alg, "ES256");
        assert_eq!(KeySet::parse("{}").unwrap_err(), JwksError::NoKeys);
        assert_eq!(KeySet::parse("[").unwrap_err(), JwksError::Json);
        assert_eq!(
            KeySet::parse(r#"{"keys": []}"#).unwrap_err(),
            JwksError::NoValidKeys
        );
    }
}
