//! The composition root: the only module that knows every other. It parses the command line
//! and wires the stages in the direction data flows: config (load, validate) → compile (a
//! snapshot) → runtime (serving it) → observe (logs, metrics) and the admin endpoints, with
//! `reload` feeding new snapshots to the runtime.

mod check;
mod ports;
mod run;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Check(args) => check::check(&args),
        Command::Routes(args) => check::routes(&args),
    }
}
