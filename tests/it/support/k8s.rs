//! The kubelet's atomic volume layout for Secret / ConfigMap mounts, for any set of files.
//!
//! ```text
//! dir/..2026_11_21_10_00_00.123456789/tls.crt   real files
//! dir/..data -> ..2026_11_21_10_00_00.123456789  swapped atomically by rename(2)
//! dir/tls.crt -> ..data/tls.crt                  stable user-visible symlinks
//! ```
//!
//! [`k8s_volume_swap`] updates it exactly like kubelet's AtomicWriter: new timestamped dir,
//! `..data_tmp` symlink to it, `rename("..data_tmp", "..data")`, user-visible symlinks for new
//! names created and for vanished names removed, old timestamped dir deleted.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// UTC civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A fresh `..YYYY_MM_DD_HH_MM_SS.<unique>` directory name, as kubelet makes them.
fn timestamp_dir_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "..{y:04}_{mo:02}_{d:02}_{:02}_{:02}_{:02}.{}{:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        now.subsec_nanos(),
        SEQ.fetch_add(1, Ordering::Relaxed) % 1000
    )
}

fn write_ts_dir(dir: &Path, files: &[(&str, &str)]) -> String {
    let ts = timestamp_dir_name();
    let ts_path = dir.join(&ts);
    std::fs::create_dir_all(&ts_path).unwrap();
    for (name, contents) in files {
        let p = ts_path.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, contents).unwrap();
    }
    ts
}

/// Top-level names (first path component) of the files.
fn top_names(files: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .map(|(n, _)| n.split('/').next().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Creates `dir` (if needed) as a kubelet-style volume holding `files` (name, contents).
/// Returns `dir`.
pub fn k8s_volume_write(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let ts = write_ts_dir(dir, files);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in top_names(files) {
        let link = dir.join(&name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(&name), &link).unwrap();
        }
    }
    dir.to_path_buf()
}

/// Atomically replaces the content of a volume made by [`k8s_volume_write`] with `files`,
/// exactly as kubelet does on a Secret/ConfigMap update.
pub fn k8s_volume_swap(dir: &Path, files: &[(&str, &str)]) {
    let data = dir.join("..data");
    let old_ts = std::fs::read_link(&data).ok();
    let old_names: Vec<String> = match &old_ts {
        Some(old) => std::fs::read_dir(dir.join(old))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let ts = write_ts_dir(dir, files);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, &data).unwrap();
    let new_names = top_names(files);
    for name in &new_names {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    for name in old_names.iter().filter(|n| !new_names.contains(n)) {
        let _ = std::fs::remove_file(dir.join(name));
    }
    if let Some(old) = old_ts {
        let old = dir.join(old);
        if old.file_name() != Some(std::ffi::OsStr::new(&ts)) {
            let _ = std::fs::remove_dir_all(old);
        }
    }
}
