//! One YAML document → a typed resource (or the record of an Istio kind Portcullis does not
//! serve), with its diagnostics.
//!
//! A type error in one field does not hide the other problems of the same document: the field
//! is reported (`Error [IST0106]`, as `istioctl analyze` reports schema problems), taken out of
//! the document, and the rest is parsed again, so validation still sees every other field. The
//! resource is then left out by the error, as the webhook would reject it.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use tracing::debug;

use super::{Foreign, Meta, Resource, Resources, DEFAULT_NAMESPACE};
use crate::config::diag::{Diagnostic, ObjectRef, Reporter, Scope};
use crate::config::source::{check_document, DocSpan, DocumentError, Origin, SourceFile};
use crate::config::types::{
    AuthorizationPolicy, DestinationRule, Envelope, Gateway, Kind, RequestAuthentication,
    ServiceEntry, VirtualService, API_GROUP,
};

/// At most this many type errors are taken out of one document before giving up on it.
const MAX_TYPE_ERRORS: usize = 32;

#[derive(Default)]
pub(super) struct Loader {
    pub resources: Resources,
    pub diags: Vec<Diagnostic>,
    /// A document of the file is not valid YAML.
    pub syntax_error: bool,
}

impl Loader {
    pub fn document(&mut self, file: &Arc<SourceFile>, doc: DocSpan) {
        let text = &file.text[doc.bytes.clone()];
        let origin = Origin {
            file: file.clone(),
            doc: doc.clone(),
            item: None,
        };
        // Size and nesting depth are checked before the parser runs (a hostile document costs
        // time linear in its size); a document over them is treated as one that does not parse.
        if let Err(e) = check_document(text) {
            let line = match e {
                DocumentError::TooDeep { line } => doc.first_line + line - 1,
                DocumentError::TooLarge { .. } => doc.first_line,
            };
            self.unreadable(origin, line, format!("document not read: {e}"));
            return;
        }
        let value: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                // Point at the line serde_yaml names, relative to the document.
                let line = e
                    .location()
                    .map_or(doc.first_line, |l| doc.first_line + l.line() - 1);
                let message = format!("invalid YAML: {}", yaml_error_message(&e));
                self.unreadable(origin, line, message);
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

    /// A document that is not read (invalid YAML, too deep, too large): an error at `line`,
    /// and the file keeps its last good contents (see `cache`).
    fn unreadable(&mut self, origin: Origin, line: usize, message: String) {
        self.diags.push(Diagnostic {
            scope: Scope::Resource,
            origin: Some(origin),
            line: Some(line),
            ..Diagnostic::config_error(message)
        });
        self.syntax_error = true;
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
            _ if group.ends_with(".istio.io") => {
                // Istio kinds Portcullis does not serve: `validate::unapplied` decides whether
                // they apply to this gateway.
                self.foreign(kind_name, group, api_version, &value, origin);
                return;
            }
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

    fn foreign(
        &mut self,
        kind: &str,
        group: &str,
        api_version: &str,
        value: &Value,
        origin: Origin,
    ) {
        let meta: crate::config::types::ObjectMeta = value
            .get("metadata")
            .cloned()
            .and_then(|m| serde_yaml::from_value(m).ok())
            .unwrap_or_default();
        self.resources.others.push(Arc::new(Foreign {
            kind: kind.to_string(),
            group: group.to_string(),
            api_version: api_version.to_string(),
            meta: Meta {
                namespace: meta
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
                name: meta.name,
                labels: meta.labels,
                annotations: meta.annotations,
                creation_timestamp: meta.creation_timestamp,
            },
            spec: value.get("spec").cloned().unwrap_or(Value::Null),
            origin,
        }));
    }

    fn typed<T: DeserializeOwned + Default + std::fmt::Debug>(
        &mut self,
        kind: Kind,
        mut value: Value,
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
        let object = ObjectRef::new(kind, &namespace, &name);
        let mut report = Reporter::new(&mut self.diags, Some(origin.clone()), Some(object));
        // Each failed attempt reports its field and takes it out; the last attempt's unknown
        // fields are the document's.
        let mut last_failure: Option<String> = None;
        let mut attempts = 0;
        let (envelope, unknown) = loop {
            attempts += 1;
            let mut unknown = Vec::new();
            let parsed: Result<Envelope<T>, _> = {
                let mut record = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
                let de = serde_ignored::Deserializer::new(value.clone(), &mut record);
                serde_path_to_error::deserialize(de)
            };
            match parsed {
                Ok(e) => break (e, unknown),
                Err(e) => {
                    let path = e.path().to_string();
                    let path = if path == "." { String::new() } else { path };
                    let segments: Vec<Segment> = e.path().iter().map(Segment::of).collect();
                    // The same field failing again: its null stand-in did not help either.
                    let again = last_failure.as_deref() == Some(path.as_str());
                    if !again {
                        report.error(path.clone(), e.inner().to_string());
                    }
                    if attempts >= MAX_TYPE_ERRORS || !prune(&mut value, &segments, again) {
                        return;
                    }
                    last_failure = Some(path);
                }
            }
        };
        for path in unknown {
            let field = path
                .rsplit_once('.')
                .map_or(path.as_str(), |(_, f)| f)
                .to_string();
            report.note(
                path,
                format!(
                    "unknown field `{field}` is ignored (check its spelling against the Istio API)"
                ),
            );
        }
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

/// One step of serde_path_to_error's path.
enum Segment {
    Key(String),
    Index(usize),
    Other,
}

impl Segment {
    fn of(s: &serde_path_to_error::Segment) -> Segment {
        match s {
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            _ => Segment::Other,
        }
    }
}

/// Takes the value at `path` out of `root`: a mapping entry is removed (the field takes its
/// default), a sequence element is first replaced by null and removed if that fails too
/// (`remove_element`). False when there is nothing to take out (the document itself is wrong).
fn prune(root: &mut Value, path: &[Segment], remove_element: bool) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Other, n) => n,
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Segment::Index(i), Value::Sequence(s)) if *i < s.len() => {
            if remove_element || s[*i].is_null() {
                s.remove(*i);
            } else {
                s[*i] = Value::Null;
            }
            true
        }
        _ => false,
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
