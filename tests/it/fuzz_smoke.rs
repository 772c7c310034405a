//! A short run of every fuzz target (`fuzz/run.sh` runs a million inputs each): bad input from
//! the network or a config file gets an error, never a panic.

#[path = "../../fuzz/engine.rs"]
mod engine;
#[path = "../../fuzz/targets.rs"]
mod targets;

#[test]
fn every_fuzz_target_survives_a_short_run() {
    for target in targets::TARGETS {
        for seed in (target.seeds)() {
            (target.run)(&seed);
        }
        let crashes = engine::fuzz(target, 2_000, 42, false);
        assert_eq!(
            crashes, 0,
            "{} panicked: run fuzz/run.sh {0} to save the inputs",
            target.name
        );
    }
}
