//! The mutation engine: inputs made by mutating seeds and earlier inputs (byte flips,
//! inserted and overwritten bytes, dictionary tokens, splices, truncations, repeated runs), each
//! run with a panic caught. No coverage feedback: it runs on the stable toolchain with nothing
//! but the crate's own dependencies.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::targets::{Target, DICTIONARY};

/// The largest input made.
const MAX_LEN: usize = 4096;

/// Makes the next input from `pool` (seeds and earlier inputs).
fn mutate(rng: &mut fastrand::Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut input = pool[rng.usize(..pool.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let len = input.len();
        match rng.u8(..9) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                input[i] ^= 1 << rng.u8(..8);
            }
            1 => {
                let i = rng.usize(..=len);
                input.insert(i, rng.u8(..));
            }
            2 if len > 0 => {
                let i = rng.usize(..len);
                input[i] = rng.u8(..);
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let j = rng.usize(i..=len.min(i + 16));
                input.drain(i..j);
            }
            4 | 5 => {
                let token = DICTIONARY[rng.usize(..DICTIONARY.len())];
                let i = rng.usize(..=len);
                input.splice(i..i, token.iter().copied());
            }
            6 => {
                let other = &pool[rng.usize(..pool.len())];
                if !other.is_empty() {
                    let from = rng.usize(..other.len());
                    let to = rng.usize(from..=other.len());
                    let i = rng.usize(..=len);
                    input.splice(i..i, other[from..to].iter().copied());
                }
            }
            7 if len > 0 => input.truncate(rng.usize(..len)),
            8 if len > 0 => {
                // Repeat a run (deep nesting, long values).
                let i = rng.usize(..len);
                let j = rng.usize(i..=len.min(i + 4));
                let run = input[i..j].to_vec();
                for _ in 0..rng.usize(1..64) {
                    input.splice(i..i, run.iter().copied());
                }
            }
            _ => {}
        }
    }
    input.truncate(MAX_LEN);
    input
}

/// Runs `target` on `inputs` mutated inputs; returns the number of crashes.
pub fn fuzz(target: &Target, inputs: u64, seed: u64, save: bool) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool = (target.seeds)();
    pool.push(Vec::new());
    let mut crashes = 0;
    let start = Instant::now();
    for n in 0..inputs {
        let input = mutate(&mut rng, &pool);
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        if outcome.is_err() {
            crashes += 1;
            if save {
                let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/crashes");
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::write(format!("{dir}/{}-{crashes}.bin", target.name), &input);
            }
        }
        // Keep a bounded, changing pool: later inputs mutate earlier ones.
        if pool.len() < 256 {
            pool.push(input);
        } else if rng.u8(..8) == 0 {
            let i = rng.usize(..pool.len());
            pool[i] = input;
        }
        if save && (n + 1) % 200_000 == 0 {
            eprintln!(
                "  {}: {} inputs, {crashes} crashes, {:.0}/s",
                target.name,
                n + 1,
                (n + 1) as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    if save {
        println!(
            "{}: {inputs} inputs, {crashes} crashes, {:.1} s",
            target.name,
            start.elapsed().as_secs_f64()
        );
    }
    crashes
}
