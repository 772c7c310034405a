//! Loading: every `*.yaml`/`*.yml` under the config directory → typed resources + diagnostics.
//! One bad document never hides the others: each is parsed and reported on its own
//! (`document`); `cache` keeps the parse of each file between reloads, and the last good
//! contents of a file that stops parsing.

mod cache;
mod document;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_yaml::Value;

use super::diag::{Diagnostic, Diagnostics, ObjectRef, Reporter};
use super::source::{split_documents, Origin, SourceFile, MAX_FILE_BYTES};
use super::types::{
    AuthorizationPolicy, DestinationRule, Gateway, Kind, RequestAuthentication, ServiceEntry,
    VirtualService,
};
pub use cache::{ParseCache, StaleFile};
use document::Loader;
pub(crate) use document::{ignored_path, yaml_error_message};

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
        ObjectRef::new(self.kind, &self.meta.namespace, &self.meta.name)
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
    /// Istio kinds Portcullis does not serve (`PeerAuthentication`, `EnvoyFilter`, …), kept
    /// so `validate::unapplied` can say which of them this gateway does not apply.
    pub others: Vec<Arc<Foreign>>,
    pub files: Vec<Arc<SourceFile>>,
}

/// An object of an Istio kind Portcullis does not serve: what is needed to tell whether it
/// selects this gateway and what it would do.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub kind: String,
    /// `security.istio.io`, `networking.istio.io`, …
    pub group: String,
    pub api_version: String,
    pub meta: Meta,
    pub spec: Value,
    pub origin: Origin,
}

impl Foreign {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.clone().into(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    pub fn reporter<'a>(&self, out: &'a mut Vec<Diagnostic>) -> Reporter<'a> {
        Reporter::new(out, Some(self.origin.clone()), Some(self.object_ref()))
    }
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

/// Reads one file (at most [`MAX_FILE_BYTES`]); the error is the message to report.
pub(crate) fn read_source(path: &Path) -> Result<SourceFile, String> {
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
    Diagnostic::config_error(message)
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
    /// A document is not valid YAML: the file keeps its last good contents (see `cache`).
    syntax_error: bool,
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
        syntax_error: loader.syntax_error,
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
        out.others.extend(r.others.iter().cloned());
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
        // An Istio kind Portcullis does not serve is kept for `validate::unapplied`.
        assert_eq!(res.others.len(), 1);
    }

    #[test]
    fn unknown_fields_are_warned_by_name_with_their_line() {
        let (_, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  http:\n  - match:\n    - uri:\n        prefx: /a\n    route: []\n",
        );
        let w: Vec<String> = diags.warnings().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            ["t.yaml:9: Warning VirtualService default/vs: spec.http[0].match[0].uri.prefx: unknown field `prefx` is ignored (check its spelling against the Istio API)"]
        );
    }

    #[test]
    fn type_errors_name_the_field_and_line() {
        let (_, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  http:\n  - timeout: 10\n",
        );
        let e = diags.errors().next().unwrap().to_string();
        assert!(
            e.starts_with(
                "t.yaml:7: Error [IST0106] VirtualService default/vs: spec.http[0].timeout: "
            ),
            "{e}"
        );
        assert!(e.contains("no unit"), "{e}");
    }

    /// A type error takes only its field out of the document: the other fields are parsed,
    /// so validation still reports their problems (the error rejects the resource).
    #[test]
    fn a_type_error_does_not_hide_the_rest_of_the_document() {
        let (res, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.com]\n  http:\n  - timeout: 10\n    retries: {attempts: many}\n    route: [{destination: {host: b.com}, weight: -1}]\n  tcp: 5\n",
        );
        let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("spec.http[0].timeout"), "{errors:?}");
        assert!(
            errors[1].contains("spec.http[0].retries.attempts"),
            "{errors:?}"
        );
        assert!(errors[2].contains("spec.tcp"), "{errors:?}");
        let vs = &res.virtual_services[0];
        assert_eq!(vs.spec.http[0].route[0].weight, -1, "the rest is parsed");
        assert!(vs.spec.http[0].timeout.is_none());
        // A bad element of a list is taken out, the others stay.
        let (res, diags) = load(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n  hosts: [a.com, [x], b.com]\n",
        );
        assert_eq!(diags.error_count(), 1, "{diags}");
        assert_eq!(res.service_entries[0].spec.hosts, ["a.com", "b.com"]);
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
