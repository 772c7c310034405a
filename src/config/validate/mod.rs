//! Validation, in Istio's two steps: its admission webhook (`pkg/config/validation`), which
//! sees one resource at a time and rejects it with an error, and `istioctl analyze`
//! (`pkg/config/analysis/analyzers`), which looks across resources and only warns. Only what
//! the webhook rejects is an error that leaves a resource out ([`admitted`]); what the
//! analyzers find is served as Istio serves it (a VirtualService naming a Gateway that does not
//! exist binds nothing). Like `istioctl analyze` on files, the analyzers look at every parsed
//! resource, so a rejected document's other findings are reported too. Portcullis adds its notes on fields it does not act on (`support`) and
//! on Istio kinds this gateway does not apply (`unapplied`).
//!
//! Each kind has its own module; `references` holds the checks that span several objects and
//! uses the [`Index`] built here once per validation.

mod destination_rule;
mod gateway;
mod references;
pub(crate) mod rules;
mod security;
mod service_entry;
mod support;
pub mod unapplied;
mod virtual_service;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::diag::{Diagnostic, Scope};
use super::host::HostPattern;
use super::load::{Resource, Resources};
use super::resolve::{find_service, DestinationRuleIndex};
use super::types::{Gateway, ServiceEntry, VirtualService};

/// Which gateway the configuration is checked for: the one `run` is (its labels), or any of
/// the loaded Gateways (`check`, which serves them all).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Instance(&'a BTreeMap<String, String>),
    AnyGateway,
}

/// Every problem in `resources`, as `check` reports it: each resource against the webhook's
/// rules, then the analyzers and notes. One bad document never hides the findings of another.
pub fn validate(resources: &Resources) -> Vec<Diagnostic> {
    validate_for(resources, Target::AnyGateway)
}

/// [`validate`] for one gateway.
pub fn validate_for(resources: &Resources, target: Target<'_>) -> Vec<Diagnostic> {
    let mut out = webhook(resources);
    out.extend(analyze(resources, target));
    out
}

/// Istio's admission webhook: every resource on its own. An error rejects the resource.
pub fn webhook(resources: &Resources) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for gw in &resources.gateways {
        gateway::check(gw, &mut out);
    }
    for vs in &resources.virtual_services {
        virtual_service::check(vs, &mut out);
    }
    for se in &resources.service_entries {
        service_entry::check(se, &mut out);
    }
    for dr in &resources.destination_rules {
        destination_rule::check(dr, &mut out);
    }
    security::check(resources, &mut out);
    out
}

/// The analyzers across the admitted resources, Portcullis' notes on what it does not act on,
/// and the Istio kinds this gateway does not apply.
pub fn analyze(resources: &Resources, target: Target<'_>) -> Vec<Diagnostic> {
    let mut out = istio_analyzers(resources);
    support::check(resources, &mut out);
    unapplied::check(resources, target, &mut out);
    out
}

/// `istioctl analyze`'s findings across resources.
fn istio_analyzers(resources: &Resources) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    gateway::check_conflicts(&resources.gateways, &mut out);
    security::analyze(resources, &mut out);
    let index = Index::new(resources);
    references::check(resources, &index, &mut out);
    out
}

/// Where a document is: file, document, `List` item. What a resource-scoped error names.
type DocumentId = (String, usize, Option<usize>);

fn document_id(origin: &super::source::Origin) -> DocumentId {
    (origin.file.display.clone(), origin.doc.index, origin.item)
}

/// `resources` without those an error in `diags` rejects (errors of [`Scope::Resource`] about
/// an object name the document it came from).
pub fn admitted(resources: &Resources, diags: &[Diagnostic]) -> Resources {
    // An error without an object is about a document that made no resource (not YAML, not a
    // mapping, an unknown version): nothing to leave out, and a file served from its last good
    // contents must not lose the resource at the same place.
    let rejected: HashSet<DocumentId> = diags
        .iter()
        .filter(|d| d.is_error() && d.scope == Scope::Resource && d.object.is_some())
        .filter_map(|d| d.origin.as_ref().map(document_id))
        .collect();
    if rejected.is_empty() {
        return resources.clone();
    }
    fn keep<T>(v: &[Arc<Resource<T>>], rejected: &HashSet<DocumentId>) -> Vec<Arc<Resource<T>>> {
        v.iter()
            .filter(|r| !rejected.contains(&document_id(&r.origin)))
            .cloned()
            .collect()
    }
    Resources {
        gateways: keep(&resources.gateways, &rejected),
        virtual_services: keep(&resources.virtual_services, &rejected),
        service_entries: keep(&resources.service_entries, &rejected),
        destination_rules: keep(&resources.destination_rules, &rejected),
        authorization_policies: keep(&resources.authorization_policies, &rejected),
        request_authentications: keep(&resources.request_authentications, &rejected),
        others: resources.others.clone(),
        files: resources.files.clone(),
    }
}

/// Is an object with this `exportTo`, in `own_ns`, visible from namespace `to_ns`?
pub(crate) fn exported_to(export_to: &[String], own_ns: &str, to_ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == to_ns || (e == "." && own_ns == to_ns))
}

/// ServiceEntries keyed by host as written (lower-case): exact names in a map, wildcards also
/// in a list.
pub(crate) struct HostIndex<'a, T> {
    exact: HashMap<String, Vec<&'a Resource<T>>>,
    wildcards: Vec<(HostPattern, &'a Resource<T>)>,
}

impl<'a, T> HostIndex<'a, T> {
    fn new() -> Self {
        HostIndex {
            exact: HashMap::new(),
            wildcards: Vec::new(),
        }
    }

    fn insert(&mut self, host: String, r: &'a Resource<T>) {
        let pattern = HostPattern::parse(&host);
        if pattern.is_wildcard() {
            self.wildcards.push((pattern, r));
        }
        let bucket = self.exact.entry(host).or_default();
        if !bucket.iter().any(|x| std::ptr::eq(*x, r)) {
            bucket.push(r);
        }
    }

    /// Every object registered under exactly `host`.
    pub(crate) fn exact(&self, host: &str) -> Vec<&'a Resource<T>> {
        self.exact.get(host).cloned().unwrap_or_default()
    }

    /// Every object whose host covers `host`: the same name, or a wildcard that includes it.
    pub(crate) fn covering(&self, host: &str) -> Vec<&'a Resource<T>> {
        let mut found = self.exact(host);
        let pattern = HostPattern::parse(host);
        for (w, r) in &self.wildcards {
            if pattern.subset_of(w) && !found.iter().any(|x| std::ptr::eq(*x, *r)) {
                found.push(r);
            }
        }
        found
    }

    /// Is any object's host inside the wildcard `pattern` (a wildcard DestinationRule that
    /// applies to the ServiceEntries below it)?
    pub(crate) fn any_under(&self, pattern: &HostPattern) -> bool {
        self.exact
            .keys()
            .any(|h| HostPattern::parse(h).subset_of(pattern))
    }
}

/// Lookup tables over one set of resources, built once for the cross-resource checks.
pub(crate) struct Index<'a> {
    pub gateways: HashMap<(&'a str, &'a str), &'a Resource<Gateway>>,
    pub virtual_services: HashMap<(&'a str, &'a str), &'a Resource<VirtualService>>,
    pub destination_rules: DestinationRuleIndex<'a>,
    pub service_entries: HostIndex<'a, ServiceEntry>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(resources: &'a Resources) -> Self {
        let mut index = Index {
            gateways: HashMap::new(),
            virtual_services: HashMap::new(),
            destination_rules: DestinationRuleIndex::new(resources),
            service_entries: HostIndex::new(),
        };
        for gw in &resources.gateways {
            index
                .gateways
                .insert((&gw.meta.namespace, &gw.meta.name), gw);
        }
        for vs in &resources.virtual_services {
            index
                .virtual_services
                .insert((&vs.meta.namespace, &vs.meta.name), vs);
        }
        for se in &resources.service_entries {
            for h in &se.spec.hosts {
                // As written: Istio does not resolve ServiceEntry hosts (nor does the registry).
                index
                    .service_entries
                    .insert(h.trim().to_ascii_lowercase(), se);
            }
        }
        index
    }

    /// The ServiceEntries that `keep` accepts among those a host written in `namespace` refers
    /// to (the shared rule, [`find_service`]).
    pub(crate) fn services(
        &self,
        host: &str,
        namespace: &str,
        keep: impl Fn(&Resource<ServiceEntry>) -> bool,
    ) -> Vec<&'a Resource<ServiceEntry>> {
        let kept = |found: Vec<&'a Resource<ServiceEntry>>| {
            let found: Vec<_> = found.into_iter().filter(|se| keep(se)).collect();
            (!found.is_empty()).then_some(found)
        };
        find_service(
            host,
            namespace,
            |n| kept(self.service_entries.exact(n)),
            |n| kept(self.service_entries.covering(n)),
        )
        .unwrap_or_default()
    }
}

/// Shared helpers for the rule tests: load YAML from memory, validate, render what a user sees.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::config::diag::Diagnostics;
    use crate::config::load::load_files;
    use crate::config::source::SourceFile;

    /// Every diagnostic (loading and validation) of `yaml` loaded as `t.yaml`, rendered and
    /// sorted by line.
    pub(crate) fn diags(yaml: &str) -> Vec<String> {
        let (res, load) = load_files(vec![SourceFile {
            display: "t.yaml".into(),
            path: "t.yaml".into(),
            text: yaml.into(),
        }]);
        let mut all = load.0;
        all.extend(super::webhook(&res));
        all.extend(super::istio_analyzers(&res));
        let mut d = Diagnostics(all);
        d.sort();
        d.0.iter().map(|d| d.to_string()).collect()
    }

    /// One object of `kind` named `name` (namespace default) whose spec is `spec`, indented by
    /// two spaces. The spec's first line is line 5 of `t.yaml`.
    pub(crate) fn doc(kind: &str, name: &str, spec: &str) -> String {
        let mut s = format!(
            "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n"
        );
        for line in spec.lines() {
            if line.is_empty() {
                s.push('\n');
            } else {
                s.push_str("  ");
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    /// Asserts that each `(spec, expected)` case, validated alone as one `kind` object, renders
    /// exactly the `expected` lines (warnings included).
    #[track_caller]
    pub(crate) fn expect(kind: &str, name: &str, cases: &[(&str, &[&str])]) {
        for (spec, expected) in cases {
            let got = diags(&doc(kind, name, spec));
            assert_eq!(got, *expected, "\nspec:\n{spec}");
        }
    }

    /// Objects that VirtualService tests refer to, appended after the object under test so its
    /// line numbers do not move: Gateway `gw` (HTTP 80, TLS 443 passthrough, TCP 9000, all
    /// hosts), ServiceEntry `svc.example.com` (ports 80, 443, 9000) and a DestinationRule for it
    /// with subset `v1`.
    pub(crate) const CONTEXT: &str = "---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*\"]
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [\"*\"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: [\"*\"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: tls, protocol: TLS}
  - {number: 9000, name: tcp, protocol: TCP}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc.example.com
  subsets:
  - name: v1
";

    /// Like [`expect`], with [`CONTEXT`] loaded after the object.
    #[track_caller]
    pub(crate) fn expect_in_context(kind: &str, name: &str, cases: &[(&str, &[&str])]) {
        for (spec, expected) in cases {
            let got = diags(&format!("{}{CONTEXT}", doc(kind, name, spec)));
            assert_eq!(got, *expected, "\nspec:\n{spec}");
        }
    }

    /// Asserts that `spec` (one `kind` object) validates without any diagnostic.
    #[track_caller]
    pub(crate) fn clean(kind: &str, name: &str, spec: &str) {
        let got = diags(&doc(kind, name, spec));
        assert!(got.is_empty(), "spec:\n{spec}\ngot:\n{}", got.join("\n"));
    }
}
