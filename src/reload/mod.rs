//! Reload: the pipeline from files on disk to a complete compiled snapshot (load, validate,
//! compile: exactly what `check` does, plus the compile for this instance), what changed, and
//! the status the admin endpoint reports. `watch` says when to run it. Nothing here touches the
//! running gateway: the composition root (`app`) hands a built snapshot to the runtime.

pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::compile::mesh::{MeshOverrides, MeshSettings};
use crate::compile::{compile, Instance, Snapshot};
use crate::config::diag::Diagnostics;
use crate::config::load::{ParseCache, Resources};
use crate::config::mesh::validate::validate_mesh;
use crate::config::mesh::{load_mesh, MeshFile};
use crate::config::validate::validate;
use crate::upstream::StatsRegistry;

/// Where the config comes from and who it is compiled for.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub config_dir: PathBuf,
    pub instance: Instance,
    /// `--mesh`: Istio's mesh config, read (and watched) with the config directory.
    pub mesh_file: Option<PathBuf>,
    /// Flags that win over the mesh file.
    pub overrides: MeshOverrides,
}

impl ConfigSource {
    /// A source without a mesh file.
    pub fn new(config_dir: PathBuf, instance: Instance) -> ConfigSource {
        ConfigSource {
            config_dir,
            instance,
            mesh_file: None,
            overrides: MeshOverrides::default(),
        }
    }
}

/// Reads, validates and compiles `--mesh` (if given). Errors mean no settings: the caller keeps
/// the last good ones.
pub fn load_mesh_settings(
    source: &ConfigSource,
) -> (Option<MeshSettings>, Option<MeshFile>, Diagnostics) {
    let Some(path) = &source.mesh_file else {
        let (s, _) = MeshSettings::compile(None, &source.overrides);
        return (Some(s), None, Diagnostics::default());
    };
    let (mesh, mut diags) = load_mesh(path);
    let Some(mesh) = mesh else {
        return (None, None, diags);
    };
    diags.0.extend(validate_mesh(&mesh));
    let (settings, compile_diags) = MeshSettings::compile(Some(&mesh), &source.overrides);
    diags.0.extend(compile_diags);
    let ok = !diags.has_errors();
    (ok.then_some(settings), Some(mesh), diags)
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
    let (settings, mesh, mesh_diags) = load_mesh_settings(source);
    let (resources, mut diags) = cache.load_dir(&source.config_dir);
    diags.0.extend(mesh_diags.0);
    diags.0.extend(validate(&resources));
    diags.sort();
    let Some(settings) = settings.filter(|_| !diags.has_errors()) else {
        return Err(diags);
    };
    let mut instance = source.instance.clone();
    if source.overrides.outbound_policy.is_none() {
        if let Some(policy) = settings.outbound_policy {
            instance.outbound_policy = policy;
        }
    }
    instance.security.apply_mesh(&settings);
    let (mut snapshot, compile_diags) = compile(&resources, &instance, stats)?;
    let mut warnings = diags;
    warnings.0.extend(compile_diags.0);
    let mut settings = settings;
    settings.tracing.tracer = crate::compile::tracing::tracer(
        mesh.as_ref(),
        &snapshot.registry,
        &instance,
        &mut warnings.0,
    );
    snapshot.mesh = std::sync::Arc::new(settings);
    let mesh_text = mesh.as_ref().map(|m| m.origin.file.text.as_str());
    let mut fingerprints = fingerprints(&resources);
    if let Some(text) = mesh_text {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        fingerprints.insert("MeshConfig mesh".into(), h.finish());
    }
    Ok(Loaded {
        snapshot,
        warnings,
        files_hash: files_hash(&resources, mesh_text),
        fingerprints,
    })
}

/// A short hash of every loaded file's path and content (and the mesh file's).
pub fn files_hash(resources: &Resources, mesh: Option<&str>) -> String {
    let mut h = openssl::sha::Sha256::new();
    if let Some(text) = mesh {
        h.update(b"mesh\0");
        h.update(text.as_bytes());
        h.update(&[0]);
    }
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

    pub fn summary(&self) -> String {
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

    /// A new generation is served; returns what changed.
    pub fn succeeded(
        &mut self,
        files_hash: String,
        fingerprints: BTreeMap<String, u64>,
        took: Duration,
    ) -> &ChangeSet {
        self.stamp(took);
        self.last_changes = ChangeSet::between(&self.fingerprints, &fingerprints);
        self.generation += 1;
        self.files_hash = files_hash;
        self.fingerprints = fingerprints;
        self.last_result = "ok".into();
        self.last_error = None;
        self.reloads_ok += 1;
        &self.last_changes
    }

    /// The reload was refused; the current generation keeps serving.
    pub fn failed(&mut self, error: String, took: Duration) {
        self.stamp(took);
        self.last_result = "error".into();
        self.last_error = Some(error);
        self.reloads_failed += 1;
    }

    fn stamp(&mut self, took: Duration) {
        self.last_reload_unix_ms = unix_ms();
        self.last_duration_ms = took.as_millis() as u64;
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
