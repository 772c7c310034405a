//! The layout stays as `docs/architecture.md` promises: data flows one way, so no module of
//! `src/` imports one that (directly or not) imports it back (`crate::` and `super::` paths,
//! test code left out), neither between top-level modules nor between files; and no source
//! file grows past 800 lines before its tests. Same rules as `../shared/tools/modgraph.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b/mod.rs` → `a::b`, `a/b/c.rs` → `a::b::c`; the crate roots are not modules.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(SRC).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts.join("::"))
}

/// The file without `#[cfg(test)]` items (brace-matched) and without comments.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let (brace, semi) = (after.find('{'), after.find(';'));
        match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            (_, Some(s)) => rest = &after[s + 1..],
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths referenced as `crate::…` or `super::…` (brace groups expanded one level).
fn references(module: &str, text: &str) -> Vec<Vec<String>> {
    let path = regex::Regex::new(
        r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*)(\{[^}]*\}|[a-z_][a-z0-9_]*)",
    )
    .unwrap();
    let parent: Vec<String> = module.split("::").map(str::to_string).collect();
    let parent = &parent[..parent.len() - 1];
    let mut out = Vec::new();
    for c in path.captures_iter(text) {
        let base: Vec<String> = match &c[1] {
            "crate" => Vec::new(),
            _ => parent.to_vec(),
        };
        let prefix: Vec<String> = c[2]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let tails: Vec<String> = match c[3].strip_prefix('{') {
            Some(group) => group
                .trim_end_matches('}')
                .split(',')
                .map(|i| i.trim().split([' ', ':']).next().unwrap_or("").to_string())
                // Types count too: `super::a::{B}` imports `a` (the longest known prefix).
                .filter(|i| !i.is_empty())
                .collect(),
            None => vec![c[3].to_string()],
        };
        for t in tails {
            let mut p = base.clone();
            p.extend(prefix.iter().cloned());
            p.push(t);
            out.push(p);
        }
    }
    out
}

/// Every import cycle (strongly connected component of more than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn finish(
        v: &str,
        e: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(v.to_string()) {
            return;
        }
        for w in e.get(v).into_iter().flatten() {
            finish(w, e, seen, order);
        }
        order.push(v.to_string());
    }
    let nodes: BTreeSet<String> = edges
        .iter()
        .flat_map(|(k, vs)| std::iter::once(k.clone()).chain(vs.iter().cloned()))
        .collect();
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for v in &nodes {
        finish(v, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, vs) in edges {
        for v in vs {
            reversed.entry(v.clone()).or_default().insert(k.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for v in order.iter().rev() {
        let mut component = Vec::new();
        finish(v, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

fn module_graph(top_level: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let known: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(module) = module_of(f) else { continue };
        let text = without_tests(&std::fs::read_to_string(f).expect("source is readable"));
        for path in references(&module, &text) {
            let target = if top_level {
                path.first().cloned()
            } else {
                (1..=path.len())
                    .rev()
                    .map(|n| path[..n].join("::"))
                    .find(|c| known.contains(c))
            };
            let Some(target) = target else { continue };
            let (from, to) = if top_level {
                (module.split("::").next().unwrap_or("").to_string(), target)
            } else {
                (module.clone(), target)
            };
            if from != to
                && known
                    .iter()
                    .any(|k| k == &to || k.starts_with(&format!("{to}::")))
            {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let found = cycles(&module_graph(true));
    assert!(found.is_empty(), "import cycles between top-level modules (data must flow one way, see docs/architecture.md): {found:?}");
}

/// Who must never import whom, beyond "no cycle" (`docs/architecture.md`): data flows
/// config → compile → runtime → observe, so `config` knows no later stage, `compile` neither
/// the runtime nor the sinks it will feed (`observe`: access log, metrics, spans), `runtime`
/// neither the pipeline that feeds it nor the admin over it, and only the composition root
/// (`app`) reads the CLI's types. `telemetry`, `upstream` and `tls` are building blocks that
/// `compile` prepares for the runtime: they follow `compile`'s rule.
/// A stage's later stages; `telemetry`, `upstream` and `tls` share `compile`'s.
const LATER: &[&str] = &["runtime", "reload", "observe", "admin", "app", "cli"];

const NEVER: [(&str, &[&str]); 9] = [
    (
        "config",
        &[
            "compile",
            "telemetry",
            "upstream",
            "tls",
            "runtime",
            "reload",
            "observe",
            "admin",
            "app",
            "cli",
        ],
    ),
    ("compile", LATER),
    ("telemetry", LATER),
    ("upstream", LATER),
    ("tls", LATER),
    ("http_client", LATER),
    ("runtime", &["reload", "admin", "app", "cli"]),
    ("observe", &["runtime", "reload", "admin", "app", "cli"]),
    ("reload", &["runtime", "admin", "app", "cli"]),
];

#[test]
fn data_flows_one_way_config_compile_runtime_observe() {
    let graph = module_graph(true);
    let backwards: Vec<String> = NEVER
        .iter()
        .flat_map(|(from, never)| {
            let imports = graph.get(*from).cloned().unwrap_or_default();
            never
                .iter()
                .filter(move |to| imports.contains(**to))
                .map(move |to| format!("{from} imports {to}"))
        })
        .collect();
    assert!(
        backwards.is_empty(),
        "imports against the flow config → compile → runtime → observe: {backwards:?}"
    );
}

#[test]
fn no_import_cycle_between_module_files() {
    let found = cycles(&module_graph(false));
    assert!(
        found.is_empty(),
        "import cycles between files of src/ (move the shared piece to its own file): {found:?}"
    );
}

#[test]
fn no_source_file_over_800_lines_before_its_tests() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let n = text
                .lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .count();
            (n > 800).then(|| format!("{} ({n})", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concept: {long:?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(
        cycles(&edges),
        vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]
    );
    let refs = references(
        "compile::listener::tls",
        "use super::{http::x, select};\nuse crate::upstream::Cluster;",
    );
    assert!(
        refs.contains(&vec!["compile".into(), "listener".into(), "http".into()]),
        "{refs:?}"
    );
    assert!(refs.contains(&vec!["upstream".into()]), "{refs:?}");
    // A brace group of types still imports its module.
    let refs = references(
        "observe::access_log",
        "use super::access_format::{AccessFormat, LogInput};",
    );
    assert!(
        refs.iter()
            .any(|r| r.starts_with(&["observe".into(), "access_format".into()])),
        "{refs:?}"
    );
    // The real graph is read: the runtime depends on compile, and not the other way round.
    let top = module_graph(true);
    assert!(top["runtime"].contains("compile"), "{top:?}");
    assert!(!top["compile"].contains("runtime"), "{top:?}");
}
