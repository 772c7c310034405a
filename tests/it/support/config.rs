//! A temporary configuration directory for the gateway's `--config` (or `--certs`).
//!
//! Tests build YAML with [`super::yaml`] and write it here. [`ConfigDir::write`] is atomic
//! (temp file + rename, as editors and `kubectl cp` do); [`ConfigDir::write_in_place`]
//! truncates and rewrites the existing inode (a reader may see a partial file).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A temp dir removed on drop.
#[derive(Debug)]
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDir {
    /// A new empty directory.
    pub fn new() -> Self {
        ConfigDir {
            dir: tempfile::Builder::new()
                .prefix("portcullis-it-")
                .tempdir()
                .unwrap(),
        }
    }

    /// A new directory holding the given `(name, contents)` files.
    pub fn with_files(files: &[(&str, &str)]) -> Self {
        let d = Self::new();
        for (n, c) in files {
            d.write(n, c);
        }
        d
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Atomically writes `name` (may contain `/` for subdirectories): the content goes to a
    /// hidden temp file `.name.tmp~` in the same directory, is fsynced, then renamed over `name`.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let target = self.file(name);
        let parent = target.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&parent).unwrap();
        let base = target.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = parent.join(format!(".{base}.tmp~"));
        {
            let mut f = std::fs::File::create(&tmp).unwrap();
            f.write_all(contents.as_bytes()).unwrap();
            f.sync_all().unwrap();
        }
        std::fs::rename(&tmp, &target).unwrap();
        target
    }

    /// Rewrites `name` in place (open with truncate, write): same inode, not atomic.
    pub fn write_in_place(&self, name: &str, contents: &str) -> PathBuf {
        let target = self.file(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&target)
            .unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f.sync_all().unwrap();
        target
    }

    /// Removes `name` (file or directory); missing is fine.
    pub fn remove(&self, name: &str) {
        let p = self.file(name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
            Ok(_) => std::fs::remove_file(&p).unwrap(),
            Err(_) => {}
        }
    }
}
