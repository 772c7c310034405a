//! When to reload: file notifications (inotify) on `--config` and `--certs`, a polling
//! fallback, and explicit triggers (SIGHUP), debounced so a burst of writes makes one reload.
//! A watched directory that is replaced (a `..data` or release symlink swap) is followed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

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

/// Watches `dirs` (unless `mode` is off) and calls `reload` once per burst of changes, and for
/// every reason sent on the returned channel (SIGHUP goes through the same debounce). Reloads
/// run one at a time, in the order they were asked for.
pub fn watch<F, Fut>(dirs: Vec<PathBuf>, mode: WatchMode, reload: F) -> mpsc::Sender<&'static str>
where
    F: Fn(&'static str) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (tx, mut rx) = mpsc::channel::<&'static str>(64);
    let mut watching = (mode != WatchMode::Off).then(|| Watching::start(dirs, tx.clone(), mode));
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
            reload(reason).await;
        }
    });
    tx
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
    _watchers: Vec<Box<dyn Watcher + Send>>,
}

impl Watching {
    fn start(dirs: Vec<PathBuf>, tx: mpsc::Sender<&'static str>, mode: WatchMode) -> Watching {
        let resolved = dirs.iter().map(|d| std::fs::canonicalize(d).ok()).collect();
        let watchers = start_watcher(&dirs, tx.clone(), mode == WatchMode::Poll);
        Watching {
            dirs,
            tx,
            resolved,
            mode,
            _watchers: watchers,
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
            self._watchers.clear();
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
) -> Vec<Box<dyn Watcher + Send>> {
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
    let watch_dirs = |w: &mut dyn Watcher| -> notify::Result<()> {
        for d in &recursive {
            w.watch(d, RecursiveMode::Recursive)?;
        }
        Ok(())
    };
    let watch_parents = |w: &mut dyn Watcher| -> notify::Result<()> {
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
            watch_dirs(&mut w)?;
            watch_parents(&mut w)?;
            Ok(w)
        })
    };
    match attempt {
        Ok(w) => {
            info!(dirs = ?recursive, "watching for changes");
            vec![Box::new(w)]
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
            // The watched directories' contents are compared too (modification times are only
            // compared to the second); their parents are only listed, never read: a parent
            // such as /tmp or /etc may hold anything.
            let poll = |compare_contents: bool| {
                let config = notify::Config::default()
                    .with_poll_interval(POLL_INTERVAL)
                    .with_compare_contents(compare_contents);
                notify::PollWatcher::new(handler.clone(), config).ok()
            };
            let (Some(mut dirs_poll), Some(mut parents_poll)) = (poll(true), poll(false)) else {
                error!(
                    "cannot poll {}; changes will only apply on SIGHUP",
                    display_dirs(&recursive)
                );
                return Vec::new();
            };
            if let Err(e) =
                watch_dirs(&mut dirs_poll).and_then(|()| watch_parents(&mut parents_poll))
            {
                error!(
                    "cannot poll {}: {e}; changes will only apply on SIGHUP",
                    display_dirs(&recursive)
                );
            }
            vec![Box::new(dirs_poll), Box::new(parents_poll)]
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
