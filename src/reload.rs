//! Reload: watch the config and certs directories, rebuild a complete snapshot off the request
//! path, and swap it in atomically. All or nothing: if anything is invalid, the last good
//! snapshot keeps serving and the error is logged exactly as `check` prints it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::compile::{compile, Instance, Snapshot};
use crate::config::diag::Diagnostics;
use crate::config::load::{ParseCache, Resources};
use crate::config::validate::validate;
use crate::runtime::listeners::Listeners;
use crate::runtime::State;
use crate::upstream::StatsRegistry;

/// How `--config` and `--certs` are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchMode {
    /// File notifications (inotify), falling back to polling if they are unavailable.
    #[value(name = "true")]
    On,
    /// No watching: SIGHUP reloads.
    #[value(name = "false")]
    Off,
    /// Poll every second (for file systems without notifications, e.g. some network mounts).
    #[value(name = "poll")]
    Poll,
}

/// Bursts of file events closer than this make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Polling interval when file notifications are unavailable.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the config comes from and who it is compiled for.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub config_dir: PathBuf,
    pub instance: Instance,
}

/// A complete, valid, compiled configuration.
pub struct Loaded {
    pub snapshot: Snapshot,
    pub warnings: Diagnostics,
    pub files_hash: String,
    pub fingerprints: BTreeMap<String, u64>,
}

/// Load, validate and compile: exactly what `check` does, plus the compile for this instance.
pub fn load_and_compile(
    source: &ConfigSource,
    stats: &StatsRegistry,
) -> Result<Loaded, Diagnostics> {
    load_and_compile_cached(source, stats, &mut ParseCache::default())
}

/// [`load_and_compile`] parsing only the files that changed since `cache` last saw them.
pub fn load_and_compile_cached(
    source: &ConfigSource,
    stats: &StatsRegistry,
    cache: &mut ParseCache,
) -> Result<Loaded, Diagnostics> {
    let (resources, mut diags) = cache.load_dir(&source.config_dir);
    diags.0.extend(validate(&resources));
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    let (snapshot, compile_diags) = compile(&resources, &source.instance, stats)?;
    let mut warnings = diags;
    warnings.0.extend(compile_diags.0);
    Ok(Loaded {
        snapshot,
        warnings,
        files_hash: files_hash(&resources),
        fingerprints: fingerprints(&resources),
    })
}

/// A short hash of every loaded file's path and content.
pub fn files_hash(resources: &Resources) -> String {
    let mut h = openssl::sha::Sha256::new();
    for f in &resources.files {
        h.update(f.display.as_bytes());
        h.update(&[0]);
        h.update(f.text.as_bytes());
        h.update(&[0]);
    }
    crate::tls::server::hex(&h.finish()[..8])
}

/// `Kind namespace/name` → hash of its spec, to report what a reload changed.
fn fingerprints(resources: &Resources) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, key: String, hash: u64| {
        out.insert(format!("{kind} {key}"), hash);
    };
    for r in &resources.gateways {
        add("Gateway", r.key(), r.spec_hash);
    }
    for r in &resources.virtual_services {
        add("VirtualService", r.key(), r.spec_hash);
    }
    for r in &resources.service_entries {
        add("ServiceEntry", r.key(), r.spec_hash);
    }
    for r in &resources.destination_rules {
        add("DestinationRule", r.key(), r.spec_hash);
    }
    out
}

#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

impl ChangeSet {
    pub fn between(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> ChangeSet {
        let mut c = ChangeSet::default();
        for (k, v) in new {
            match old.get(k) {
                None => c.added.push(k.clone()),
                Some(o) if o != v => c.modified.push(k.clone()),
                _ => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        c
    }

    fn summary(&self) -> String {
        if self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty() {
            return "no resource changed".into();
        }
        let list = |v: &[String]| {
            if v.len() <= 5 {
                v.join(", ")
            } else {
                format!("{}, … ({} in all)", v[..5].join(", "), v.len())
            }
        };
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}: {}", self.added.len(), list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed {}: {}",
                self.removed.len(),
                list(&self.removed)
            ));
        }
        if !self.modified.is_empty() {
            parts.push(format!(
                "modified {}: {}",
                self.modified.len(),
                list(&self.modified)
            ));
        }
        parts.join("; ")
    }
}

/// What the admin endpoint reports about configuration loading.
#[derive(Debug, Default, Serialize)]
pub struct ReloadStatus {
    pub generation: u64,
    pub files_hash: String,
    pub last_result: String,
    pub last_error: Option<String>,
    pub last_reload_unix_ms: u64,
    pub last_duration_ms: u64,
    pub last_changes: ChangeSet,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    #[serde(skip)]
    pub fingerprints: BTreeMap<String, u64>,
}

impl ReloadStatus {
    pub fn initial(loaded: &Loaded) -> ReloadStatus {
        ReloadStatus {
            generation: 1,
            files_hash: loaded.files_hash.clone(),
            last_result: "ok".into(),
            last_reload_unix_ms: unix_ms(),
            fingerprints: loaded.fingerprints.clone(),
            ..Default::default()
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Reloader {
    pub source: ConfigSource,
    pub state: Arc<State>,
    pub listeners: Arc<Listeners>,
    /// The parse of every file as of the last load, so a reload re-parses changed files only.
    pub cache: Arc<Mutex<ParseCache>>,
}

impl Reloader {
    /// Rebuilds and swaps; never panics, never leaves a half-applied config.
    pub async fn reload(&self, reason: &str) {
        let start = Instant::now();
        let source = self.source.clone();
        let stats = self.state.stats.clone();
        let cache = self.cache.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            load_and_compile_cached(&source, &stats, &mut cache)
        })
        .await;
        let result = match built {
            Ok(Ok(loaded)) => match self.listeners.prepare(&loaded.snapshot) {
                Ok(prepared) => Ok((loaded, prepared)),
                Err(e) => Err(e),
            },
            Ok(Err(diags)) => Err(format!("{} error(s):\n{diags}", diags.error_count())),
            Err(e) => Err(format!("config build task failed: {e}")),
        };
        let elapsed = start.elapsed();
        let mut status = self.state.reload.lock().unwrap_or_else(|e| e.into_inner());
        status.last_reload_unix_ms = unix_ms();
        status.last_duration_ms = elapsed.as_millis() as u64;
        match result {
            Ok((loaded, prepared)) => {
                for w in loaded.warnings.warnings() {
                    warn!("{w}");
                }
                let changes = ChangeSet::between(&status.fingerprints, &loaded.fingerprints);
                let snapshot = Arc::new(loaded.snapshot);
                let old = self.state.snapshot.swap(snapshot.clone());
                self.listeners.commit(prepared, &snapshot);
                // Freeing a large snapshot takes a while: not on a worker that serves requests.
                // Then the stats of clusters that left the config (nothing references them).
                let stats = self.state.stats.clone();
                tokio::task::spawn_blocking(move || {
                    drop(old);
                    stats.prune();
                });
                status.generation += 1;
                status.files_hash = loaded.files_hash;
                status.fingerprints = loaded.fingerprints;
                status.last_result = "ok".into();
                status.last_error = None;
                status.reloads_ok += 1;
                info!(
                    "reload ok ({reason}): generation {} in {} ms, files {}: {}",
                    status.generation,
                    elapsed.as_millis(),
                    status.files_hash,
                    changes.summary()
                );
                status.last_changes = changes;
                self.state.metrics.reloads.with_label_values(&["ok"]).inc();
                self.state
                    .metrics
                    .config_generation
                    .set(status.generation as i64);
            }
            Err(e) => {
                status.last_result = "error".into();
                status.last_error = Some(e.clone());
                status.reloads_failed += 1;
                error!(
                    "reload failed ({reason}) in {} ms; still serving generation {}: {e}",
                    elapsed.as_millis(),
                    status.generation
                );
                self.state
                    .metrics
                    .reloads
                    .with_label_values(&["error"])
                    .inc();
            }
        }
    }

    /// Watches the config and certs directories; falls back to polling if the platform's
    /// notifications are unavailable (e.g. inotify limits). Returns the trigger channel so
    /// SIGHUP can force a reload through the same debounce.
    pub fn watch(self: Arc<Self>, mode: WatchMode) -> mpsc::Sender<&'static str> {
        let (tx, mut rx) = mpsc::channel::<&'static str>(64);
        let dirs = vec![
            self.source.config_dir.clone(),
            self.source.instance.certs_dir.clone(),
        ];
        let mut watching =
            (mode != WatchMode::Off).then(|| Watching::start(dirs, tx.clone(), mode));
        tokio::spawn(async move {
            while let Some(mut reason) = rx.recv().await {
                // Debounce: one rebuild per burst of events.
                let deadline = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(r)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    if r == "SIGHUP" {
                        reason = r;
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                }
                // Re-resolving the directories is file-system work: off the async workers.
                if let Some(mut w) = watching.take() {
                    watching = tokio::task::spawn_blocking(move || {
                        w.follow_replacements();
                        w
                    })
                    .await
                    .ok();
                }
                self.reload(reason).await;
            }
        });
        tx
    }
}

/// The watches on the config and certs directories. Each directory is watched recursively
/// (through a symlink, on its target) and its parent without recursion, so replacing the
/// directory itself, or swapping the symlink that names it (a release layout's `current`), is
/// seen too; the watches then move to the new target.
struct Watching {
    dirs: Vec<PathBuf>,
    tx: mpsc::Sender<&'static str>,
    /// What each directory resolved to when the watches were made.
    resolved: Vec<Option<PathBuf>>,
    mode: WatchMode,
    _watcher: Option<Box<dyn Watcher + Send>>,
}

impl Watching {
    fn start(dirs: Vec<PathBuf>, tx: mpsc::Sender<&'static str>, mode: WatchMode) -> Watching {
        let resolved = dirs.iter().map(|d| std::fs::canonicalize(d).ok()).collect();
        let watcher = start_watcher(&dirs, tx.clone(), mode == WatchMode::Poll);
        Watching {
            dirs,
            tx,
            resolved,
            mode,
            _watcher: watcher,
        }
    }

    /// Re-creates the watches if a directory now resolves elsewhere (or appeared).
    fn follow_replacements(&mut self) {
        let now: Vec<Option<PathBuf>> = self
            .dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).ok())
            .collect();
        if now != self.resolved {
            info!(dirs = ?self.dirs, "a watched directory was replaced; watching the new one");
            self._watcher = None;
            *self = Watching::start(std::mem::take(&mut self.dirs), self.tx.clone(), self.mode);
        }
    }
}

/// `dir` as an absolute path whose last component is not resolved (it may be a symlink that
/// is swapped), and its parent directory.
fn absolute_and_parent(dir: &Path) -> (PathBuf, Option<PathBuf>) {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            match std::fs::canonicalize(parent) {
                Ok(parent) => (parent.join(name), Some(parent)),
                Err(_) => (dir.to_path_buf(), None),
            }
        }
        _ => (
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
            None,
        ),
    }
}

/// Whether an event concerns one of `dirs` (absolute): anything under them, or the
/// directory entry itself in its parent. Errors (e.g. a queue overflow) count.
fn relevant(event: &notify::Result<notify::Event>, dirs: &[PathBuf]) -> bool {
    match event {
        Ok(e) => {
            !matches!(e.kind, EventKind::Access(_))
                && (e.paths.is_empty()
                    || e.paths
                        .iter()
                        .any(|p| dirs.iter().any(|d| p.starts_with(d))))
        }
        Err(_) => true,
    }
}

fn start_watcher(
    dirs: &[PathBuf],
    tx: mpsc::Sender<&'static str>,
    force_poll: bool,
) -> Option<Box<dyn Watcher + Send>> {
    let mut recursive = Vec::new();
    let mut parents = Vec::new();
    for d in dirs {
        let (abs, parent) = absolute_and_parent(d);
        if abs.exists() {
            recursive.push(abs);
        } else if parent.is_none() {
            continue;
        }
        if let Some(p) = parent.filter(|p| !parents.contains(p)) {
            parents.push(p);
        }
    }
    let all: Vec<PathBuf> = dirs.iter().map(|d| absolute_and_parent(d).0).collect();
    let handler = {
        let (tx, all) = (tx.clone(), all.clone());
        move |event: notify::Result<notify::Event>| {
            if relevant(&event, &all) {
                let _ = tx.try_send("file change");
            }
        }
    };
    let watch_all = |w: &mut dyn Watcher| -> notify::Result<()> {
        for d in &recursive {
            w.watch(d, RecursiveMode::Recursive)?;
        }
        for p in &parents {
            w.watch(p, RecursiveMode::NonRecursive)?;
        }
        Ok(())
    };
    let attempt = if force_poll {
        Err(notify::Error::generic(
            "polling was asked for (--watch poll)",
        ))
    } else {
        notify::recommended_watcher(handler).and_then(|mut w| {
            watch_all(&mut w)?;
            Ok(w)
        })
    };
    match attempt {
        Ok(w) => {
            info!(dirs = ?recursive, "watching for changes");
            Some(Box::new(w))
        }
        Err(e) => {
            warn!(
                "file notifications unavailable ({e}); polling {} every {:?} instead",
                display_dirs(&recursive),
                POLL_INTERVAL
            );
            let handler = move |event: notify::Result<notify::Event>| {
                if relevant(&event, &all) {
                    let _ = tx.try_send("file change (poll)");
                }
            };
            // Contents are compared too: modification times are only compared to the second.
            let config = notify::Config::default()
                .with_poll_interval(POLL_INTERVAL)
                .with_compare_contents(true);
            let mut poll = notify::PollWatcher::new(handler, config).ok()?;
            if let Err(e) = watch_all(&mut poll) {
                error!(
                    "cannot poll {}: {e}; changes will only apply on SIGHUP",
                    display_dirs(&recursive)
                );
            }
            Some(Box::new(poll))
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
