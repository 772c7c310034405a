//! The pipeline from files on disk to a compiled snapshot, with isolation instead of
//! all-or-nothing: what Istio's webhook would reject is left out with an error and everything
//! else is served, as in a cluster where `kubectl apply` of that one resource failed.
//!
//! - A document the webhook rejects is left out. On a reload, the resource's last accepted
//!   version keeps serving (a failed `kubectl apply` leaves the old object in place); at
//!   start-up there is none.
//! - A file that no longer parses keeps its last good contents (`config::load::ParseCache`);
//!   so does the mesh file (`--mesh`): a broken one keeps the last good mesh settings, and at
//!   start-up, with none, it refuses the configuration.
//! - Compile leaves out the parts it cannot build (a Gateway server whose certificate does not
//!   load, a destination whose cluster cannot be built) and serves the rest.
//! - Only a problem with the configuration as a whole refuses it (an unreadable directory, a
//!   security policy Portcullis cannot enforce), and `--strict` refuses it on any error.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use tracing::{error, info, warn};

use super::{files_hash, fingerprints, load_mesh_settings, ConfigSource};
use crate::compile::mesh::MeshSettings;
use crate::compile::{compile, Instance, Snapshot};
use crate::config::diag::{Diagnostic, Diagnostics, Scope, Severity};
use crate::config::load::{ParseCache, Resource, Resources, StaleFile};
use crate::config::mesh::MeshFile;
use crate::config::validate::{admitted, analyze, webhook, Target};
use crate::upstream::StatsRegistry;

/// A compiled configuration, and what was left out of it.
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Every diagnostic: the errors that left something out, warnings, infos.
    pub diagnostics: Diagnostics,
    pub left_out: LeftOut,
    pub files_hash: String,
    pub fingerprints: BTreeMap<String, u64>,
}

impl Loaded {
    /// Logs every diagnostic at its level.
    pub fn log(&self) {
        for d in &self.diagnostics.0 {
            match d.severity {
                Severity::Error => error!("{d}"),
                Severity::Warning => warn!("{d}"),
                Severity::Info => info!("{d}"),
            }
        }
    }

    /// `N error(s): …` with every error, when something was left out.
    pub fn error_summary(&self) -> Option<String> {
        let errors: Vec<String> = self.diagnostics.errors().map(|d| d.to_string()).collect();
        (!errors.is_empty()).then(|| format!("{} error(s):\n{}", errors.len(), errors.join("\n")))
    }
}

/// What one load left out of what is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeftOut {
    /// Resources the webhook rejects (and duplicates, and documents that are not valid YAML).
    pub resources: Vec<Rejected>,
    /// Parts compile left out: Gateway servers whose certificate does not load, routes and
    /// destinations that cannot be built.
    pub parts: Vec<Rejected>,
    /// Files served from their last good contents.
    pub stale_files: Vec<StaleFile>,
}

impl LeftOut {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.parts.is_empty() && self.stale_files.is_empty()
    }

    /// What the metrics publish: rejected resources per kind (`Document` for a document whose
    /// kind is unknown), parts left out, stale files.
    pub fn counts(&self) -> (BTreeMap<String, usize>, usize, usize) {
        let mut kinds = BTreeMap::new();
        for r in &self.resources {
            *kinds.entry(r.kind.clone()).or_default() += 1;
        }
        (kinds, self.parts.len(), self.stale_files.len())
    }
}

/// One thing left out, named by its first error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub field: String,
    pub code: Option<&'static str>,
    pub message: String,
    /// How many errors the resource has.
    pub errors: usize,
    /// `previous`: its last accepted version keeps serving; `none`: it is not served.
    pub serving: &'static str,
}

impl Rejected {
    fn of(d: &Diagnostic, serving: &'static str) -> Rejected {
        let (kind, namespace, name) = match &d.object {
            Some(o) => (o.kind.to_string(), o.namespace.clone(), o.name.clone()),
            None => ("Document".to_string(), String::new(), String::new()),
        };
        Rejected {
            kind,
            namespace,
            name,
            file: d.origin.as_ref().map(|o| o.file.display.clone()),
            line: d.line(),
            field: d.path.clone(),
            code: d.code,
            message: d.message.clone(),
            errors: 1,
            serving,
        }
    }
}

/// Keeps what a reload needs from the previous load: the parse of every file (and the last good
/// contents of each), the last accepted version of every resource and the last good mesh
/// settings.
#[derive(Debug, Default)]
pub struct Pipeline {
    cache: ParseCache,
    accepted: Resources,
    mesh: Option<GoodMesh>,
}

/// Mesh settings that compiled, and the text of the mesh file they came from (if any).
#[derive(Debug, Clone)]
struct GoodMesh {
    settings: MeshSettings,
    text: Option<String>,
    /// The parsed file: the tracer is resolved against each load's registry.
    file: Option<MeshFile>,
}

impl GoodMesh {
    /// `source.instance` with what the mesh settings decide for it: the outbound traffic
    /// policy (unless a flag set it) and the security settings.
    fn instance(&self, source: &ConfigSource) -> Instance {
        let mut instance = source.instance.clone();
        if source.overrides.outbound_policy.is_none() {
            if let Some(policy) = self.settings.outbound_policy {
                instance.outbound_policy = policy;
            }
        }
        instance.security.apply_mesh(&self.settings);
        instance
    }

    /// The mesh file's entry in [`fingerprints`] (what a reload changed).
    fn fingerprint(&self) -> Option<(String, u64)> {
        use std::hash::{Hash, Hasher};
        let text = self.text.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Some(("MeshConfig mesh".into(), h.finish()))
    }
}

/// The mesh settings one load compiles with, and the mesh file's diagnostics.
struct MeshLoad {
    /// None: the mesh file is broken and there are no last good settings (start-up).
    good: Option<GoodMesh>,
    diags: Diagnostics,
    /// The mesh file, when it is served from its last good contents.
    stale: Option<StaleFile>,
}

/// `(kind, namespace, name)` of a resource.
type Key = (String, String, String);

fn key_of<T>(r: &Resource<T>) -> Key {
    (
        r.kind.as_str().to_string(),
        r.meta.namespace.clone(),
        r.meta.name.clone(),
    )
}

impl Pipeline {
    /// Load, validate, isolate and compile for `source.instance`.
    pub fn load(
        &mut self,
        source: &ConfigSource,
        stats: &StatsRegistry,
    ) -> Result<Loaded, Diagnostics> {
        let (resources, mut diags) = self.cache.load_dir(&source.config_dir);
        let mesh = self.mesh(source);
        let refuse = |mut diags: Diagnostics| {
            diags.0.extend(mesh.diags.0.iter().cloned());
            diags.sort();
            diags.dedup();
            Err(diags)
        };
        let Some(good_mesh) = mesh.good.clone() else {
            return refuse(diags);
        };
        if refused(&diags, false) || refused(&mesh.diags, source.strict) {
            return refuse(diags);
        }
        diags.0.extend(webhook(&resources));
        let mut kept = admitted(&resources, &diags.0);
        let restored = restore(&mut kept, &self.accepted, &diags);
        diags.0.extend(analyze(
            &resources,
            Target::Instance(&source.instance.labels),
        ));
        if refused(&diags, source.strict) {
            return refuse(diags);
        }
        let instance = good_mesh.instance(source);
        let (mut snapshot, compiled) = match compile(&kept, &instance, stats) {
            Ok(c) => c,
            Err(e) => {
                diags.0.extend(e.0);
                return refuse(diags);
            }
        };
        diags.0.extend(compiled.0);
        if refused(&diags, source.strict) {
            return refuse(diags);
        }
        let mut settings = good_mesh.settings.clone();
        settings.tracing.tracer = crate::compile::tracing::tracer(
            good_mesh.file.as_ref(),
            &snapshot.registry,
            &instance,
            &mut diags.0,
        );
        snapshot.mesh = Arc::new(settings);
        diags.sort();
        diags.dedup();
        let mut left_out = left_out(&diags, &restored, self.cache.stale.clone());
        left_out.stale_files.extend(mesh.stale);
        // The mesh file's errors leave out nothing but its new contents (`stale_files`).
        diags.0.extend(mesh.diags.0);
        diags.sort();
        let mut fingerprints = fingerprints(&kept);
        fingerprints.extend(good_mesh.fingerprint());
        let loaded = Loaded {
            snapshot,
            diagnostics: diags,
            left_out,
            files_hash: files_hash(&kept, good_mesh.text.as_deref()),
            fingerprints,
        };
        self.accepted = kept;
        self.mesh = Some(good_mesh);
        Ok(loaded)
    }

    /// Reads `--mesh` (see [`load_mesh_settings`]). A broken mesh file keeps the last good
    /// settings, as a config file that stops parsing keeps its last good contents; without
    /// any (start-up) its errors refuse the configuration.
    fn mesh(&self, source: &ConfigSource) -> MeshLoad {
        let (settings, file, mut diags) = load_mesh_settings(source);
        if let Some(settings) = settings {
            let text = file.as_ref().map(|m| m.origin.file.text.clone());
            return MeshLoad {
                good: Some(GoodMesh {
                    settings,
                    text,
                    file,
                }),
                diags,
                stale: None,
            };
        }
        let path = source
            .mesh_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        // The mesh file's errors refuse the configuration (Scope::Config) unless the last good
        // settings keep serving: then they leave out only the file's new contents.
        let Some(last) = self.mesh.clone() else {
            return MeshLoad {
                good: None,
                diags,
                stale: None,
            };
        };
        for d in diags.0.iter_mut().filter(|d| d.is_error()) {
            d.scope = Scope::Resource;
        }
        diags.0.push(Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::config_error(format!(
                "{path}: the last good mesh settings keep serving until the mesh file is valid again"
            ))
        });
        MeshLoad {
            good: Some(last),
            diags,
            stale: Some(StaleFile {
                file: path,
                resources: 1,
            }),
        }
    }
}

/// Whether the configuration as a whole is refused: an error about all of it, or any error in
/// `--strict` mode.
fn refused(diags: &Diagnostics, strict: bool) -> bool {
    diags.errors().any(|d| strict || d.scope == Scope::Config)
}

/// Puts back the last accepted version of every resource rejected now (and not otherwise
/// present); returns their keys.
fn restore(kept: &mut Resources, accepted: &Resources, diags: &Diagnostics) -> HashSet<Key> {
    let rejected: HashSet<Key> = diags
        .errors()
        .filter(|d| d.scope == Scope::Resource)
        .filter_map(|d| d.object.as_ref())
        .map(|o| (o.kind.to_string(), o.namespace.clone(), o.name.clone()))
        .collect();
    let mut restored = HashSet::new();
    if rejected.is_empty() {
        return restored;
    }
    fn put_back<T>(
        into: &mut Vec<Arc<Resource<T>>>,
        from: &[Arc<Resource<T>>],
        rejected: &HashSet<Key>,
        restored: &mut HashSet<Key>,
    ) {
        let present: HashSet<Key> = into.iter().map(|r| key_of(r)).collect();
        for r in from {
            let key = key_of(r);
            if rejected.contains(&key) && !present.contains(&key) {
                into.push(r.clone());
                restored.insert(key);
            }
        }
    }
    put_back(
        &mut kept.gateways,
        &accepted.gateways,
        &rejected,
        &mut restored,
    );
    put_back(
        &mut kept.virtual_services,
        &accepted.virtual_services,
        &rejected,
        &mut restored,
    );
    put_back(
        &mut kept.service_entries,
        &accepted.service_entries,
        &rejected,
        &mut restored,
    );
    put_back(
        &mut kept.destination_rules,
        &accepted.destination_rules,
        &rejected,
        &mut restored,
    );
    put_back(
        &mut kept.authorization_policies,
        &accepted.authorization_policies,
        &rejected,
        &mut restored,
    );
    put_back(
        &mut kept.request_authentications,
        &accepted.request_authentications,
        &rejected,
        &mut restored,
    );
    restored
}

/// What the errors in `diags` left out: one entry per rejected document, one per part.
fn left_out(diags: &Diagnostics, restored: &HashSet<Key>, stale_files: Vec<StaleFile>) -> LeftOut {
    let mut out = LeftOut {
        stale_files,
        ..LeftOut::default()
    };
    let mut by_document: BTreeMap<(String, usize, Option<usize>), usize> = BTreeMap::new();
    for d in diags.errors() {
        match d.scope {
            Scope::Part => out.parts.push(Rejected::of(d, "none")),
            Scope::Config => {}
            // A document of a file served from its last good contents is not left out.
            Scope::Resource
                if d.object.is_none()
                    && d.origin.as_ref().is_some_and(|o| {
                        out.stale_files.iter().any(|f| f.file == o.file.display)
                    }) => {}
            Scope::Resource => {
                let id = d
                    .origin
                    .as_ref()
                    .map(|o| (o.file.display.clone(), o.doc.index, o.item))
                    .unwrap_or_default();
                if let Some(&i) = by_document.get(&id) {
                    out.resources[i].errors += 1;
                    continue;
                }
                let serving = match &d.object {
                    Some(o)
                        if restored.contains(&(
                            o.kind.to_string(),
                            o.namespace.clone(),
                            o.name.clone(),
                        )) =>
                    {
                        "previous"
                    }
                    _ => "none",
                };
                by_document.insert(id, out.resources.len());
                out.resources.push(Rejected::of(d, serving));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{Instance, OutboundPolicy};

    const GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]\n";

    fn vs(name: &str, status: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.example.com]\n  gateways: [gw]\n  http:\n  - directResponse: {{status: {status}}}\n")
    }

    fn source(dir: &std::path::Path, strict: bool) -> ConfigSource {
        ConfigSource {
            strict,
            ..ConfigSource::new(dir.to_path_buf(), Instance::default())
        }
    }

    fn served(loaded: &Loaded) -> usize {
        loaded.snapshot.summary.virtual_services
    }

    #[test]
    fn a_rejected_resource_is_left_out_and_keeps_its_last_accepted_version() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("gw.yaml", GW);
        write("a.yaml", &vs("a", "200"));
        write("b.yaml", &vs("b", "99"));
        let stats = StatsRegistry::default();
        let mut p = Pipeline::default();

        // Start-up: `b` (status 99) is rejected and left out, `a` serves.
        let loaded = p.load(&source(dir.path(), false), &stats).unwrap();
        assert_eq!(served(&loaded), 1);
        let left = &loaded.left_out.resources;
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!((left[0].name.as_str(), left[0].serving), ("b", "none"));
        assert_eq!(left[0].field, "spec.http[0].directResponse.status");

        // `b` fixed, then broken again: its fixed version keeps serving.
        write("b.yaml", &vs("b", "204"));
        let loaded = p.load(&source(dir.path(), false), &stats).unwrap();
        assert!(loaded.left_out.is_empty(), "{:?}", loaded.left_out);
        assert_eq!(served(&loaded), 2);
        write("b.yaml", &vs("b", "99"));
        let loaded = p.load(&source(dir.path(), false), &stats).unwrap();
        assert_eq!(served(&loaded), 2);
        assert_eq!(loaded.left_out.resources[0].serving, "previous");

        // --strict: refused as a whole.
        let Err(refused) = p.load(&source(dir.path(), true), &stats) else {
            panic!("--strict must refuse a configuration with an error");
        };
        assert_eq!(refused.error_count(), 1, "{refused}");
    }

    const DENY_ADMIN: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: istio-system}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n";

    /// An AuthorizationPolicy is enforced (`compile::security`), so a valid one loads with the
    /// rest of the configuration.
    #[test]
    fn an_enforced_policy_is_served_with_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.yaml"), GW).unwrap();
        std::fs::write(dir.path().join("ap.yaml"), DENY_ADMIN).unwrap();
        let loaded = Pipeline::default()
            .load(&source(dir.path(), false), &StatsRegistry::default())
            .unwrap();
        assert!(loaded.left_out.is_empty(), "{:?}", loaded.left_out);
        assert_eq!(
            loaded.snapshot.summary.applied_policies,
            ["istio-system/deny"]
        );
    }

    /// A security policy with an error is not left out (serving without it would expose what
    /// it protects): it refuses the configuration, and a reload keeps the generation served.
    #[test]
    fn a_policy_with_an_error_refuses_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.yaml"), GW).unwrap();
        std::fs::write(dir.path().join("ap.yaml"), DENY_ADMIN).unwrap();
        let stats = StatsRegistry::default();
        let mut p = Pipeline::default();
        p.load(&source(dir.path(), false), &stats).unwrap();
        // Istio's webhook: "DENY action without `rules` is meaningless".
        std::fs::write(
            dir.path().join("ap.yaml"),
            DENY_ADMIN.replace("  rules: [{to: [{operation: {paths: [/admin]}}]}]\n", ""),
        )
        .unwrap();
        let Err(refused) = p.load(&source(dir.path(), false), &stats) else {
            panic!("a policy with an error must refuse the configuration");
        };
        assert!(
            refused.to_string().contains("DENY action without `rules`"),
            "{refused}"
        );
    }

    /// A mesh file that stops being valid keeps the last good mesh settings, as a config file
    /// that stops parsing keeps its last good contents; at start-up there are none to keep.
    #[test]
    fn a_broken_mesh_file_keeps_the_last_good_settings() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        std::fs::write(config.join("gw.yaml"), GW).unwrap();
        let mesh = dir.path().join("mesh.yaml");
        let source = ConfigSource {
            mesh_file: Some(mesh.clone()),
            ..source(&config, false)
        };
        let stats = StatsRegistry::default();
        std::fs::write(&mesh, "outboundTrafficPolicy: {mode: SOMETIMES}\n").unwrap();
        assert!(Pipeline::default().load(&source, &stats).is_err());

        let mut p = Pipeline::default();
        std::fs::write(&mesh, "outboundTrafficPolicy: {mode: ALLOW_ANY}\n").unwrap();
        let loaded = p.load(&source, &stats).unwrap();
        assert_eq!(
            loaded.snapshot.instance.outbound_policy,
            OutboundPolicy::AllowAny
        );
        std::fs::write(&mesh, "outboundTrafficPolicy: {mode: SOMETIMES}\n").unwrap();
        std::fs::write(config.join("b.yaml"), vs("b", "200")).unwrap();
        let loaded = p.load(&source, &stats).unwrap();
        assert_eq!(
            loaded.snapshot.instance.outbound_policy,
            OutboundPolicy::AllowAny
        );
        assert_eq!(
            served(&loaded),
            1,
            "the config directory's change is applied"
        );
        assert_eq!(
            loaded.left_out.stale_files[0].file,
            mesh.display().to_string()
        );
        assert!(loaded.diagnostics.to_string().contains("SOMETIMES"));
        // --strict: all or nothing.
        let strict = ConfigSource {
            strict: true,
            ..source.clone()
        };
        assert!(p.load(&strict, &stats).is_err());
    }
}
