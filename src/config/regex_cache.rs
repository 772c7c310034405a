//! Compiled regexes shared by validation and compile, and kept across reloads: a config with
//! thousands of routes compiles each distinct pattern once per process, not twice per reload.

use std::collections::HashMap;
use std::sync::Mutex;

use once_cell::sync::Lazy;
use regex::Regex;

/// Past this many distinct patterns the cache starts over (a bound, not an expected size).
const CAPACITY: usize = 100_000;

static ANCHORED: Lazy<Mutex<HashMap<String, Regex>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// `^(?:re)$`: Istio (Envoy `safe_regex`) matches the whole value.
pub fn anchored(re: &str) -> Result<Regex, regex::Error> {
    if let Some(r) = ANCHORED.lock().unwrap_or_else(|e| e.into_inner()).get(re) {
        return Ok(r.clone());
    }
    let compiled = Regex::new(&format!("^(?:{re})$"))?;
    let mut cache = ANCHORED.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(re.to_string(), compiled.clone());
    Ok(compiled)
}
