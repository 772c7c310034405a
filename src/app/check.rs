//! `check` and `routes`: the config pipeline without serving.

use std::sync::Arc;

use crate::cli::{CheckArgs, RoutesArgs};
use crate::compile::{compile, Instance};
use crate::config::load::load_dir;
use crate::config::validate::validate;
use crate::config::Diagnostics;
use crate::reload::{load_and_compile, load_mesh_settings, ConfigSource};
use crate::upstream::StatsRegistry;

/// `check`: load, validate, and compile every Gateway (as if this instance served them all),
/// so certificate files are checked too.
pub fn check(args: &CheckArgs) -> i32 {
    let (resources, mut diags) = load_dir(&args.config.config);
    diags.0.extend(validate(&resources));
    if args.mesh.is_some() {
        let mut source = ConfigSource::new(args.config.config.clone(), Instance::default());
        source.mesh_file = args.mesh.clone();
        let (_, _, mesh_diags) = load_mesh_settings(&source);
        diags.0.extend(mesh_diags.0);
    }
    if !diags.has_errors() {
        let instance = Instance {
            certs_dir: args.config.certs.clone(),
            ..Instance::default()
        };
        // Serve every Gateway regardless of selector: check them all.
        let mut all = resources.clone();
        for gw in &mut all.gateways {
            Arc::make_mut(gw).spec.selector.clear();
        }
        match compile(&all, &instance, &StatsRegistry::default()) {
            Ok((_, compile_diags)) => diags.0.extend(compile_diags.0),
            Err(compile_diags) => diags.0.extend(compile_diags.0),
        }
    }
    diags.sort();
    dedup(&mut diags);
    print!("{diags}");
    let errors = diags.error_count();
    let warnings = diags.0.len() - errors;
    println!(
        "{}: {} resources in {} files; {errors} error(s), {warnings} warning(s)",
        args.config.config.display(),
        resources.len(),
        resources.files.len()
    );
    i32::from(errors > 0)
}

fn dedup(diags: &mut Diagnostics) {
    let mut seen = std::collections::HashSet::new();
    diags.0.retain(|d| seen.insert(d.to_string()));
}

/// `routes`: what this instance would serve, for a person to check by eye (or `--json`).
pub fn routes(args: &RoutesArgs) -> i32 {
    let source = ConfigSource::new(
        args.config.config.clone(),
        args.instance.instance(args.config.certs.clone()),
    );
    match load_and_compile(&source, &StatsRegistry::default()) {
        Ok(loaded) => {
            for w in loaded.warnings.warnings() {
                eprintln!("{w}");
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
