//! Parsed files kept between loads of one directory: a reload parses only the files whose
//! content changed (parsing dominates the load of a large directory), and a file that no
//! longer parses, or can no longer be read, keeps its last good contents until it does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{list_dir, merge, parse_file, read_source, ParsedFile, Resources};
use crate::config::diag::{Diagnostic, Diagnostics, Scope, Severity};

/// A file served from its last good contents: the current one does not parse or cannot be
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleFile {
    pub file: String,
    /// Resources still served from the last good contents.
    pub resources: usize,
}

#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<PathBuf, Entry>,
    /// The files the last load served from their last good contents.
    pub stale: Vec<StaleFile>,
}

#[derive(Debug)]
struct Entry {
    /// None when the file could not be read (it is read again next time).
    stamp: Option<Stamp>,
    parsed: Option<Arc<ParsedFile>>,
    /// The latest parse without a YAML syntax error.
    last_good: Option<Arc<ParsedFile>>,
}

/// What identifies a file's content without reading it: inode, size, modification and change
/// times. A file changed within the last two seconds is always re-read (a rewrite of the same
/// size inside the file system's timestamp granularity would otherwise go unseen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        now - self.mtime.0.max(self.ctime.0) > 2
    }
}

impl ParseCache {
    /// [`super::load_dir`], re-using the parse of every file that has not changed on disk (an
    /// unchanged file is neither read nor parsed again), and the last good contents of a file
    /// that does not parse or cannot be read (see [`ParseCache::stale`]).
    pub fn load_dir(&mut self, dir: &Path) -> (Resources, Diagnostics) {
        self.stale.clear();
        let listed = match list_dir(dir) {
            Ok(files) => files,
            Err(problems) => return (Resources::default(), Diagnostics(problems)),
        };
        let mut problems = Vec::new();
        let mut next = HashMap::with_capacity(listed.len());
        let mut parsed = Vec::with_capacity(listed.len());
        for (path, meta) in listed {
            let stamp = Stamp::of(&meta);
            let previous = self.files.remove(&path);
            let cached = previous
                .as_ref()
                .filter(|e| e.stamp == Some(stamp) && stamp.settled())
                .and_then(|e| e.parsed.clone());
            let fresh = match cached {
                Some(p) => Ok(p),
                None => read_source(&path).map(|f| {
                    // The content may be unchanged after all (a touched or re-written file).
                    match previous.as_ref().and_then(|e| e.parsed.as_ref()) {
                        Some(p) if p.file.text == f.text => p.clone(),
                        _ => Arc::new(parse_file(Arc::new(f))),
                    }
                }),
            };
            let last_good = previous.and_then(|e| e.last_good);
            let (served, entry) = match fresh {
                Ok(p) if !p.syntax_error => (
                    Some(p.clone()),
                    Entry {
                        stamp: Some(stamp),
                        parsed: Some(p.clone()),
                        last_good: Some(p),
                    },
                ),
                Ok(p) => {
                    let served = match &last_good {
                        Some(good) => self.serve_stale(good, p.diags.clone()),
                        None => p.clone(),
                    };
                    (
                        Some(served),
                        Entry {
                            stamp: Some(stamp),
                            parsed: Some(p),
                            last_good,
                        },
                    )
                }
                Err(e) => {
                    let read_error = Diagnostic {
                        scope: Scope::Resource,
                        ..Diagnostic::config_error(e)
                    };
                    let served = match &last_good {
                        Some(good) => Some(self.serve_stale(good, vec![read_error])),
                        None => {
                            problems.push(read_error);
                            None
                        }
                    };
                    (
                        served,
                        Entry {
                            stamp: None,
                            parsed: None,
                            last_good,
                        },
                    )
                }
            };
            next.insert(path, entry);
            parsed.extend(served);
        }
        self.files = next;
        let (resources, mut diags) = merge(&parsed);
        diags.0.extend(problems);
        (resources, diags)
    }

    /// The last good contents of a file, reported with the current file's problems and a note
    /// that they keep serving.
    fn serve_stale(
        &mut self,
        good: &Arc<ParsedFile>,
        mut diags: Vec<Diagnostic>,
    ) -> Arc<ParsedFile> {
        let resources = good.resources.len();
        self.stale.push(StaleFile {
            file: good.file.display.clone(),
            resources,
        });
        diags.push(Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::config_error(format!(
                "{}: its last good contents ({resources} resource(s)) keep serving until the file parses again",
                good.file.display
            ))
        });
        Arc::new(ParsedFile {
            file: good.file.clone(),
            resources: good.resources.clone(),
            diags,
            syntax_error: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  gateways: [gw]\n  http:\n  - directResponse: {status: 200}\n";

    #[test]
    fn a_file_that_stops_parsing_keeps_its_last_good_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vs.yaml");
        std::fs::write(&file, VS).unwrap();
        let mut cache = ParseCache::default();
        let (res, diags) = cache.load_dir(dir.path());
        assert_eq!((res.virtual_services.len(), diags.error_count()), (1, 0));
        assert!(cache.stale.is_empty());

        std::fs::write(&file, format!("{VS}  - : [\n")).unwrap();
        let (res, diags) = cache.load_dir(dir.path());
        assert_eq!(res.virtual_services.len(), 1, "{diags}");
        assert_eq!(diags.error_count(), 1, "{diags}");
        assert!(diags.to_string().contains("invalid YAML"), "{diags}");
        assert_eq!(cache.stale.len(), 1);
        assert_eq!(cache.stale[0].resources, 1);

        // Still broken on the next load: still the last good contents, not the broken parse.
        let (res, _) = cache.load_dir(dir.path());
        assert_eq!(res.virtual_services.len(), 1);
        assert_eq!(cache.stale.len(), 1);

        std::fs::write(&file, VS.replace("name: vs", "name: fixed")).unwrap();
        let (res, diags) = cache.load_dir(dir.path());
        assert_eq!(res.virtual_services[0].meta.name, "fixed", "{diags}");
        assert!(cache.stale.is_empty());
    }

    #[test]
    fn a_file_broken_from_the_start_serves_the_documents_that_parse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vs.yaml"), format!("{VS}---\nkind: [\n")).unwrap();
        let mut cache = ParseCache::default();
        let (res, diags) = cache.load_dir(dir.path());
        assert_eq!(res.virtual_services.len(), 1);
        assert_eq!(diags.error_count(), 1, "{diags}");
        assert!(cache.stale.is_empty());
    }
}
