//! `check` and `routes`: the config pipeline without serving.
//!
//! `check` is on par with `istioctl analyze` (istio/istio `istioctl/pkg/analyze/analyze.go`,
//! `istioctl/pkg/util/formatting/formatter.go`): files, directories and `-` (standard input)
//! as input; `-o log|json|yaml`; `--suppress CODE=Kind name` with `*` wildcards and the
//! `galley.istio.io/analyze-suppress` annotation; `--failure-threshold` (default Error) and
//! `--output-threshold` (default Info).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::cli::{CheckArgs, OutputFormat, RoutesArgs};
use crate::compile::{compile, Instance};
use crate::config::diag::{code, Diagnostic, Diagnostics};
use crate::config::load::{load_files, read_dir, read_source, Resources};
use crate::config::source::SourceFile;
use crate::config::validate::{admitted, analyze, webhook, Target};
use crate::reload::{load_and_compile, load_mesh_settings, ConfigSource};
use crate::upstream::StatsRegistry;

/// istioctl's documentation links (`pkg/url`), with its `?ref=` marker.
const DOCS: &str = "https://istio.io/latest/docs/reference/config/analysis";

/// The annotation that suppresses codes on one resource (istio/istio
/// `pkg/config/analysis/local/istiod_analyze.go`, `filterMessages`).
const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";

/// `check`: load, validate, and compile every Gateway (as if this instance served them all),
/// so certificate files are checked too.
pub fn check(args: &CheckArgs) -> i32 {
    let suppressions = match Suppression::parse_all(&args.suppress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    for s in &suppressions {
        if !code::KNOWN.contains(&s.code.as_str()) {
            eprintln!(
                "Warning: Supplied message code '{}' is an unknown message code and will not have any effect.",
                s.code
            );
        }
    }
    let (label, files, mut diags) = read_inputs(args);
    let (resources, loaded) = load_files(files);
    diags.0.extend(loaded.0);
    diags.0.extend(webhook(&resources));
    let kept = admitted(&resources, &diags.0);
    diags.0.extend(analyze(&resources, Target::AnyGateway));
    if args.mesh.is_some() {
        let mut source = ConfigSource::new(args.config.config.clone(), Instance::default());
        source.mesh_file = args.mesh.clone();
        let (_, _, mesh_diags) = load_mesh_settings(&source);
        diags.0.extend(mesh_diags.0);
    }
    let instance = Instance {
        certs_dir: args.config.certs.clone(),
        ..Instance::default()
    };
    // Serve every Gateway regardless of selector: check them all.
    let mut all = kept.clone();
    for gw in &mut all.gateways {
        Arc::make_mut(gw).spec.selector.clear();
    }
    match compile(&all, &instance, &StatsRegistry::default()) {
        Ok((_, compile_diags)) => diags.0.extend(compile_diags.0),
        Err(compile_diags) => diags.0.extend(compile_diags.0),
    }
    diags.sort();
    diags.dedup();
    let annotations = suppress_annotations(&resources);
    diags
        .0
        .retain(|d| !suppressed(d, &suppressions, &annotations));
    let failed = diags
        .0
        .iter()
        .any(|d| d.severity.at_least(args.failure_threshold));
    let shown: Vec<&Diagnostic> = diags
        .0
        .iter()
        .filter(|d| d.severity.at_least(args.output_threshold))
        .collect();
    match args.output {
        OutputFormat::Log => {
            for d in &shown {
                println!("{d}");
            }
            println!(
                "{label}: {} resources in {} files; {} error(s), {} warning(s), {} info(s)",
                resources.len(),
                resources.files.len(),
                diags.count(crate::config::Severity::Error),
                diags.count(crate::config::Severity::Warning),
                diags.count(crate::config::Severity::Info),
            );
        }
        OutputFormat::Json => {
            let messages: Vec<_> = shown.iter().map(|d| unstructured(d)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&messages).unwrap_or_default()
            );
        }
        OutputFormat::Yaml => {
            let messages: Vec<_> = shown.iter().map(|d| unstructured(d)).collect();
            print!("{}", serde_yaml::to_string(&messages).unwrap_or_default());
        }
    }
    i32::from(failed)
}

/// Reads `args.inputs` (files, directories, `-`), or `--config` when there are none; returns
/// the label for the summary line, the files, and the problems reading them.
fn read_inputs(args: &CheckArgs) -> (String, Vec<SourceFile>, Diagnostics) {
    let inputs: Vec<&Path> = if args.inputs.is_empty() {
        vec![args.config.config.as_path()]
    } else {
        args.inputs.iter().map(|p| p.as_path()).collect()
    };
    let label = inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for input in inputs {
        if input == Path::new("-") {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => files.push(SourceFile {
                    display: "-".into(),
                    path: "-".into(),
                    text,
                }),
                Err(e) => problems.push(Diagnostic::config_error(format!(
                    "-: cannot read standard input: {e}"
                ))),
            }
        } else if input.is_dir() {
            match read_dir(input) {
                Ok(f) => files.extend(f),
                Err(p) => problems.extend(p),
            }
        } else {
            match read_source(input) {
                Ok(file) => files.push(file),
                Err(e) => problems.push(Diagnostic::config_error(e)),
            }
        }
    }
    (label, files, Diagnostics(problems))
}

/// istioctl's JSON/YAML message (`diag.Message.Unstructured`): code, documentationUrl, level,
/// message, origin, reference; plus `field`, the path inside the document.
fn unstructured(d: &Diagnostic) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    if let Some(code) = d.code {
        m.insert("code", code.to_string());
        m.insert(
            "documentationUrl",
            format!("{DOCS}/{}/?ref=istioctl-analyze", code.to_ascii_lowercase()),
        );
    }
    m.insert("level", d.severity.to_string());
    m.insert("message", d.message.clone());
    if let Some(o) = &d.object {
        m.insert("origin", o.to_string());
    }
    if let Some(loc) = d.location() {
        m.insert("reference", loc);
    }
    if !d.path.is_empty() {
        m.insert("field", d.path.clone());
    }
    m
}

/// `--suppress CODE=Kind name`.
#[derive(Debug)]
struct Suppression {
    code: String,
    resource: String,
}

impl Suppression {
    fn parse_all(args: &[String]) -> Result<Vec<Suppression>, String> {
        args.iter()
            .map(|s| match s.split('=').collect::<Vec<_>>()[..] {
                [code, resource] => Ok(Suppression {
                    code: code.to_string(),
                    resource: resource.to_string(),
                }),
                _ => Err(format!(
                    "{s} is not a valid suppression value (expected CODE=Kind name, e.g. IST0132=VirtualService shop.default)"
                )),
            })
            .collect()
    }

    /// istioctl matches the pattern against `Kind namespace/name` (the origin's friendly
    /// name) while its help shows `Kind name.namespace`: both forms match.
    fn matches(&self, d: &Diagnostic) -> bool {
        let (Some(code), Some(o)) = (d.code, &d.object) else {
            return false;
        };
        code == self.code
            && (glob(&self.resource, &o.to_string())
                || glob(
                    &self.resource,
                    &format!("{} {}.{}", o.kind, o.name, o.namespace),
                ))
    }
}

/// `Kind ns/name` → the codes its `galley.istio.io/analyze-suppress` annotation suppresses.
fn suppress_annotations(resources: &Resources) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let mut add = |object: String, annotations: &BTreeMap<String, String>| {
        if let Some(v) = annotations.get(SUPPRESS_ANNOTATION) {
            out.insert(object, v.split(',').map(|c| c.trim().to_string()).collect());
        }
    };
    for r in &resources.gateways {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.virtual_services {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.service_entries {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.destination_rules {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.authorization_policies {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.request_authentications {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    for r in &resources.others {
        add(r.object_ref().to_string(), &r.meta.annotations);
    }
    out
}

fn suppressed(
    d: &Diagnostic,
    suppressions: &[Suppression],
    annotations: &HashMap<String, Vec<String>>,
) -> bool {
    let by_annotation = match (d.code, &d.object) {
        (Some(code), Some(o)) => annotations
            .get(&o.to_string())
            .is_some_and(|codes| codes.iter().any(|c| c == "*" || c == code)),
        _ => false,
    };
    by_annotation || suppressions.iter().any(|s| s.matches(d))
}

/// go-glob (`github.com/ryanuber/go-glob`, what istioctl uses): `*` matches any text, nothing
/// else is special.
fn glob(pattern: &str, subject: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == subject;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !subject.starts_with(first) || subject.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &subject[first.len()..subject.len() - last.len()];
    if !subject.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// `routes`: what this instance would serve, for a person to check by eye (or `--json`).
pub fn routes(args: &RoutesArgs) -> i32 {
    let source = ConfigSource::new(
        args.config.config.clone(),
        args.instance.instance(args.config.certs.clone()),
    );
    match load_and_compile(&source, &StatsRegistry::default()) {
        Ok(loaded) => {
            for d in &loaded.diagnostics.0 {
                eprintln!("{d}");
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&loaded.snapshot).unwrap_or_default()
                );
            } else {
                print!("{}", crate::compile::describe::describe(&loaded.snapshot));
            }
            0
        }
        Err(diags) => {
            eprint!("{diags}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_as_go_glob() {
        assert!(glob("*", "anything"));
        assert!(glob(
            "VirtualService *.default",
            "VirtualService shop.default"
        ));
        assert!(glob("VirtualService */shop", "VirtualService default/shop"));
        assert!(glob("*Service*", "VirtualService default/shop"));
        assert!(!glob(
            "VirtualService *.prod",
            "VirtualService shop.default"
        ));
        assert!(glob("Gateway a", "Gateway a"));
        assert!(!glob("Gateway a", "Gateway ab"));
        assert!(!glob("a*b*c", "acb"));
    }

    #[test]
    fn suppressions_parse_code_and_resource() {
        let s = Suppression::parse_all(&["IST0132=VirtualService *.default".into()]).unwrap();
        assert_eq!(
            (s[0].code.as_str(), s[0].resource.as_str()),
            ("IST0132", "VirtualService *.default")
        );
        assert!(Suppression::parse_all(&["IST0132".into()]).is_err());
    }
}
