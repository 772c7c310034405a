//! A fuzzer for the stable toolchain: each target (see `targets.rs`) is fed inputs made by
//! mutating its seeds and the inputs it has seen (byte flips, inserted and overwritten bytes,
//! dictionary tokens, splices, truncations, repeats), with a panic caught and saved.
//!
//! ```text
//! cargo run --example fuzz -- [TARGET|all] [INPUTS] [SEED]     # fuzz/run.sh runs every target
//! ```
//!
//! A crash is written to `fuzz/crashes/<target>-<n>.bin` and counted; the run goes on. Exit
//! status 1 when any target crashed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code: a failed step panics

mod engine;
mod targets;

use engine::fuzz;
use targets::TARGETS;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".into());
    let inputs: u64 = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("INPUTS"));
    let seed: u64 = args.next().map_or(1, |n| n.parse().expect("SEED"));
    // Panics are caught and saved; their messages would flood the output.
    std::panic::set_hook(Box::new(|info| {
        if std::env::var_os("FUZZ_VERBOSE").is_some() {
            eprintln!("{info}");
        }
    }));
    let mut total = 0;
    for t in TARGETS.iter().filter(|t| which == "all" || which == t.name) {
        total += fuzz(t, inputs, seed, true);
    }
    if total > 0 {
        eprintln!("{total} crash(es): inputs in fuzz/crashes/ (FUZZ_VERBOSE=1 prints the panics)");
        std::process::exit(1);
    }
}
