//! Loading: every `*.yaml`/`*.yml` under the config directory → typed resources + diagnostics.
//! One bad document never hides the others: each is parsed and reported on its own.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use tracing::debug;

use super::diag::{Diagnostic, Diagnostics, ObjectRef, Reporter};
use super::source::{
    check_document, split_documents, DocSpan, DocumentError, Origin, SourceFile, MAX_FILE_BYTES,
};
use super::types::{
    AuthorizationPolicy, DestinationRule, Envelope, Gateway, Kind, RequestAuthentication,
    ServiceEntry, VirtualService, API_GROUP,
};

/// Kubernetes namespace used when `metadata.namespace` is not written.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identity and labels of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub creation_timestamp: Option<String>,
}

/// One loaded object of kind `T`, with where it came from.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    pub kind: Kind,
    pub api_version: String,
    pub meta: Meta,
    pub spec: T,
    pub origin: Origin,
    /// Hash of the spec's content (computed once, when the file is parsed), to tell what a
    /// reload changed.
    pub spec_hash: u64,
}

impl<T> Resource<T> {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind,
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.meta.namespace, self.meta.name)
    }

    pub fn reporter<'a>(&self, out: &'a mut Vec<Diagnostic>) -> Reporter<'a> {
        Reporter::new(out, Some(self.origin.clone()), Some(self.object_ref()))
    }
}

/// Everything loaded from one config directory, in file order.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    // Shared, not copied: a reload re-uses the parsed objects of every unchanged file.
    pub gateways: Vec<Arc<Resource<Gateway>>>,
    pub virtual_services: Vec<Arc<Resource<VirtualService>>>,
    pub service_entries: Vec<Arc<Resource<ServiceEntry>>>,
    pub destination_rules: Vec<Arc<Resource<DestinationRule>>>,
    pub authorization_policies: Vec<Arc<Resource<AuthorizationPolicy>>>,
    pub request_authentications: Vec<Arc<Resource<RequestAuthentication>>>,
    pub files: Vec<Arc<SourceFile>>,
}

impl Resources {
    pub fn len(&self) -> usize {
        self.gateways.len()
            + self.virtual_services.len()
            + self.service_entries.len()
            + self.destination_rules.len()
            + self.authorization_policies.len()
            + self.request_authentications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every YAML file under `dir` (recursive, sorted): (path, metadata). Hidden entries are
/// skipped, which is what makes Kubernetes ConfigMap volumes load once: their real files live
/// under `..data/` and `..<timestamp>/`, and the visible names are symlinks into them.
pub fn list_dir(
    dir: &Path,
) -> Result<Vec<(std::path::PathBuf, std::fs::Metadata)>, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    if !dir.is_dir() {
        problems.push(plain_error(format!(
            "{}: config directory does not exist or is not a directory",
            dir.display()
        )));
        return Err(problems);
    }
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(plain_error(format!("{}: cannot read: {e}", dir.display())));
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "yaml" && ext != "yml" {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => files.push((path.to_path_buf(), meta)),
            Err(e) => problems.push(plain_error(format!("{}: cannot read: {e}", path.display()))),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

fn read_source(path: &Path) -> Result<SourceFile, String> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{}: not read: {size} bytes, over the {MAX_FILE_BYTES}-byte limit",
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map(|text| SourceFile {
            display: path.display().to_string(),
            path: path.to_path_buf(),
            text,
        })
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// Reads every YAML file under `dir` (see [`list_dir`]).
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let files: Vec<SourceFile> = list_dir(dir)?
        .iter()
        .filter_map(|(path, _)| {
            read_source(path)
                .map_err(|e| problems.push(plain_error(e)))
                .ok()
        })
        .collect();
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

fn plain_error(message: String) -> Diagnostic {
    Diagnostic::plain(message)
}

/// Loads the config directory: read, split, parse, type-check. Validation is separate.
pub fn load_dir(dir: &Path) -> (Resources, Diagnostics) {
    match read_dir(dir) {
        Ok(files) => load_files(files),
        Err(problems) => (Resources::default(), Diagnostics(problems)),
    }
}

/// Parses already-read files (also used by tests and benches to load from memory).
pub fn load_files(files: Vec<SourceFile>) -> (Resources, Diagnostics) {
    let parsed: Vec<Arc<ParsedFile>> = files
        .into_iter()
        .map(|f| Arc::new(parse_file(Arc::new(f))))
        .collect();
    merge(&parsed)
}

/// One file parsed on its own: its resources (in document order) and the diagnostics of its
/// documents. Names duplicated across documents are reported by [`merge`].
#[derive(Debug)]
pub struct ParsedFile {
    pub file: Arc<SourceFile>,
    resources: Resources,
    diags: Vec<Diagnostic>,
}

/// Parses every document of `file`.
pub fn parse_file(file: Arc<SourceFile>) -> ParsedFile {
    let mut loader = Loader::default();
    for doc in split_documents(&file.text) {
        loader.document(&file, doc);
    }
    ParsedFile {
        file,
        resources: loader.resources,
        diags: loader.diags,
    }
}

/// Joins parsed files, in order, into one set of resources; a second object with the same
/// kind, namespace and name is an error (the first one wins).
pub fn merge(parsed: &[Arc<ParsedFile>]) -> (Resources, Diagnostics) {
    let mut out = Resources::default();
    let mut m = Merge::default();
    for p in parsed {
        let r = &p.resources;
        out.files.push(p.file.clone());
        m.diags.extend(p.diags.iter().cloned());
        m.add(&r.gateways, &mut out.gateways);
        m.add(&r.virtual_services, &mut out.virtual_services);
        m.add(&r.service_entries, &mut out.service_entries);
        m.add(&r.destination_rules, &mut out.destination_rules);
        m.add(&r.authorization_policies, &mut out.authorization_policies);
        m.add(&r.request_authentications, &mut out.request_authentications);
    }
    (out, Diagnostics(m.diags))
}

#[derive(Default)]
struct Merge {
    diags: Vec<Diagnostic>,
    /// (kind, namespace, name) → where it was first defined.
    seen: HashMap<(Kind, String, String), Origin>,
}

impl Merge {
    fn add<T>(&mut self, items: &[Arc<Resource<T>>], into: &mut Vec<Arc<Resource<T>>>) {
        for r in items {
            let key = (r.kind, r.meta.namespace.clone(), r.meta.name.clone());
            if let Some(first) = self.seen.get(&key) {
                let message = format!(
                    "duplicate {} {}/{} (first defined at {}:{}); names are unique per kind and namespace",
                    r.kind,
                    r.meta.namespace,
                    r.meta.name,
                    first.file.display,
                    first.line_of("metadata.name")
                );
                r.reporter(&mut self.diags).error("metadata.name", message);
                continue;
            }
            self.seen.insert(key, r.origin.clone());
            into.push(Arc::clone(r));
        }
    }
}

/// Parsed files kept between loads of one directory, so a reload parses only the files whose
/// content changed (parsing dominates the load of a large directory); validation and compile
/// still see the whole configuration.
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<std::path::PathBuf, (Stamp, Arc<ParsedFile>)>,
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
    /// [`load_dir`], re-using the parse of every file that has not changed on disk: an
    /// unchanged file is neither read nor parsed again.
    pub fn load_dir(&mut self, dir: &Path) -> (Resources, Diagnostics) {
        let listed = match list_dir(dir) {
            Ok(files) => files,
            Err(problems) => return (Resources::default(), Diagnostics(problems)),
        };
        let mut problems = Vec::new();
        let mut next = HashMap::with_capacity(listed.len());
        let mut parsed = Vec::with_capacity(listed.len());
        for (path, meta) in listed {
            let stamp = Stamp::of(&meta);
            let cached = self
                .files
                .get(&path)
                .filter(|(s, _)| *s == stamp && s.settled())
                .map(|(_, p)| p.clone());
            let file = match cached {
                Some(p) => p,
                None => match read_source(&path) {
                    // The content may be unchanged after all (a touched or re-written file).
                    Ok(f) => match self.files.get(&path) {
                        Some((_, p)) if p.file.text == f.text => p.clone(),
                        _ => Arc::new(parse_file(Arc::new(f))),
                    },
                    Err(e) => {
                        problems.push(plain_error(e));
                        continue;
                    }
                },
            };
            next.insert(path, (stamp, file.clone()));
            parsed.push(file);
        }
        self.files = next;
        if !problems.is_empty() {
            return (Resources::default(), Diagnostics(problems));
        }
        merge(&parsed)
    }
}

#[derive(Default)]
struct Loader {
    resources: Resources,
    diags: Vec<Diagnostic>,
}

impl Loader {
    fn document(&mut self, file: &Arc<SourceFile>, doc: DocSpan) {
        let text = &file.text[doc.bytes.clone()];
        let origin = Origin {
            file: file.clone(),
            doc: doc.clone(),
            item: None,
        };
        if let Err(e) = check_document(text) {
            let line = match e {
                DocumentError::TooDeep { line } => doc.first_line + line - 1,
                DocumentError::TooLarge { .. } => doc.first_line,
            };
            self.diags.push(plain_error(format!(
                "{}:{line}: document not read: {e}",
                file.display
            )));
            return;
        }
        let value: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                // Point at the line serde_yaml names, relative to the document.
                let line = e
                    .location()
                    .map_or(doc.first_line, |l| doc.first_line + l.line() - 1);
                let message = yaml_error_message(&e);
                self.diags.push(Diagnostic::plain(format!(
                    "{}:{line}: invalid YAML: {message}",
                    file.display
                )));
                return;
            }
        };
        if value.is_null() {
            return; // an empty document (comments only)
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            match value.get("items") {
                Some(Value::Sequence(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let origin = Origin {
                            item: Some(i),
                            ..origin.clone()
                        };
                        self.object(item.clone(), origin);
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => Reporter::new(&mut self.diags, Some(origin), None)
                    .error("items", "a List must have a sequence of items"),
            }
            return;
        }
        self.object(value, origin);
    }

    fn object(&mut self, value: Value, origin: Origin) {
        if !value.is_mapping() {
            Reporter::new(&mut self.diags, Some(origin), None).error(
                "",
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            );
            return;
        }
        let kind_name = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = match Kind::parse(kind_name) {
            Some(kind) if group == kind.api().0 => kind,
            _ => {
                debug!(
                    file = %origin.file.display,
                    line = origin.doc.first_line,
                    "skipping {kind_name} ({api_version}): not a kind Portcullis serves"
                );
                return;
            }
        };
        let (api_group, api_versions) = kind.api();
        if !api_versions.contains(&version) {
            Reporter::new(&mut self.diags, Some(origin), None).error(
                "apiVersion",
                format!(
                    "unsupported version `{api_version}` for {kind} (expected {api_group}/ one of {})",
                    api_versions.join(", ")
                ),
            );
            return;
        }
        match kind {
            Kind::Gateway => {
                self.typed::<Gateway>(kind, value, origin, |r, res| r.gateways.push(res))
            }
            Kind::VirtualService => self.typed::<VirtualService>(kind, value, origin, |r, res| {
                r.virtual_services.push(res)
            }),
            Kind::ServiceEntry => self
                .typed::<ServiceEntry>(kind, value, origin, |r, res| r.service_entries.push(res)),
            Kind::DestinationRule => {
                self.typed::<DestinationRule>(kind, value, origin, |r, res| {
                    r.destination_rules.push(res)
                })
            }
            Kind::AuthorizationPolicy => {
                self.typed::<AuthorizationPolicy>(kind, value, origin, |r, res| {
                    r.authorization_policies.push(res)
                })
            }
            Kind::RequestAuthentication => {
                self.typed::<RequestAuthentication>(kind, value, origin, |r, res| {
                    r.request_authentications.push(res)
                })
            }
        }
    }

    fn typed<T: DeserializeOwned + Default + std::fmt::Debug>(
        &mut self,
        kind: Kind,
        value: Value,
        origin: Origin,
        store: impl FnOnce(&mut Resources, Arc<Resource<T>>),
    ) {
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let object = ObjectRef {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let mut unknown = Vec::new();
        let parsed: Result<Envelope<T>, _> = {
            let mut record = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
            let de = serde_ignored::Deserializer::new(value, &mut record);
            serde_path_to_error::deserialize(de)
        };
        let mut report = Reporter::new(&mut self.diags, Some(origin.clone()), Some(object));
        for path in unknown {
            let field = path
                .rsplit_once('.')
                .map_or(path.as_str(), |(_, f)| f)
                .to_string();
            report.warn(
                path,
                format!(
                    "unknown field `{field}` is ignored (check its spelling against the Istio API)"
                ),
            );
        }
        let envelope = match parsed {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                report.error(path, e.inner().to_string());
                return;
            }
        };
        if name.is_empty() {
            report.error(
                "metadata.name",
                "Required value (every object needs a name)",
            );
            return;
        }
        let spec = match envelope.spec {
            Some(spec) => spec,
            // An AuthorizationPolicy without spec is `spec: {}` (allow nothing), as Kubernetes
            // stores it; the networking kinds need theirs.
            None if kind.api().0 != API_GROUP => T::default(),
            None => {
                report.error("spec", "Required value (expected the resource's spec)");
                return;
            }
        };
        let meta = envelope.metadata.unwrap_or_default();
        let spec_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            format!("{spec:?}").hash(&mut h);
            h.finish()
        };
        let resource = Resource {
            kind,
            api_version: envelope.api_version,
            meta: Meta {
                name,
                namespace,
                labels: meta.labels,
                annotations: meta.annotations,
                creation_timestamp: meta.creation_timestamp,
            },
            spec,
            origin,
            spec_hash,
        };
        store(&mut self.resources, Arc::new(resource));
    }
}

/// serde_yaml's message without its own "at line N column M" (we print FILE:LINE ourselves).
pub(crate) fn yaml_error_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Formats a serde_ignored path as `spec.http[0].match[0].prefx`.
pub(crate) fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Resources, Diagnostics) {
        load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: text.into(),
        }])
    }

    #[test]
    fn loads_several_documents_and_defaults_the_namespace() {
        let (res, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: []}\n---\n\
             apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs, namespace: shop}\nspec: {hosts: [a.com]}\n",
        );
        assert!(!diags.has_errors(), "{diags}");
        assert_eq!(res.gateways[0].meta.namespace, "default");
        assert_eq!(res.virtual_services[0].meta.namespace, "shop");
    }

    #[test]
    fn skips_other_kinds_and_reads_lists() {
        let (res, diags) = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: networking.istio.io/v1alpha3\n  kind: ServiceEntry\n  metadata: {name: se}\n  spec: {hosts: [a.com]}\n\
             - apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {name: pa}\n",
        );
        assert!(diags.0.is_empty(), "{diags}");
        assert_eq!(res.service_entries.len(), 1);
    }

    #[test]
    fn unknown_fields_are_warned_by_name_with_their_line() {
        let (_, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  http:\n  - match:\n    - uri:\n        prefx: /a\n    route: []\n",
        );
        let w: Vec<String> = diags.warnings().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            ["t.yaml:9: warning: VirtualService default/vs: spec.http[0].match[0].uri.prefx: unknown field `prefx` is ignored (check its spelling against the Istio API)"]
        );
    }

    #[test]
    fn type_errors_name_the_field_and_line() {
        let (res, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  http:\n  - timeout: 10\n",
        );
        assert!(res.virtual_services.is_empty());
        let e = diags.errors().next().unwrap().to_string();
        assert!(
            e.starts_with("t.yaml:7: VirtualService default/vs: spec.http[0].timeout: "),
            "{e}"
        );
        assert!(e.contains("no unit"), "{e}");
    }

    #[test]
    fn a_bad_document_does_not_hide_the_next() {
        let (res, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a\nspec: {}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: b}\nspec: {}\n",
        );
        assert_eq!(diags.error_count(), 1, "{diags}");
        assert!(diags.to_string().starts_with("t.yaml:"), "{diags}");
        assert_eq!(res.gateways.len(), 1);
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let doc =
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\nspec: {}\n";
        let (res, diags) = load(&format!("{doc}---\n{doc}"));
        assert_eq!(res.gateways.len(), 1);
        assert!(
            diags
                .to_string()
                .contains("duplicate Gateway default/a (first defined at t.yaml:3)"),
            "{diags}"
        );
    }

    #[test]
    fn missing_spec_is_required() {
        let (_, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: no-spec\n",
        );
        assert!(
            diags.to_string().contains("spec: Required value"),
            "{diags}"
        );
    }
}
