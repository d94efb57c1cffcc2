//! The seed sweep: thousands of seeded random runs of the simulator, each checking Raft's
//! safety properties at every step and convergence after healing.
//!
//! `COHORT_SIM_SEED=<n>` replays one seed (see `replay_one_seed`); `COHORT_SIM_SEEDS=<n>`
//! changes how many seeds the sweep runs (default 2,000, split over four tests so the test
//! runner spreads them over the cores).

use cohort::sim::{SimOptions, run};

fn seeds_total() -> u64 {
    std::env::var("COHORT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

fn sweep(part: u64, parts: u64) {
    let total = seeds_total();
    let (start, end) = (total * part / parts, total * (part + 1) / parts);
    let mut elections = 0;
    let mut writes = 0;
    let mut crashes = 0;
    let mut conf_changes = 0;
    let mut pipelined = 0;
    let mut reads = 0;
    let mut quieted = 0;
    for seed in start..end {
        match run(&SimOptions::for_seed(seed)) {
            Ok(report) => {
                elections += report.elections;
                writes += report.writes_applied;
                crashes += report.crashes;
                conf_changes += report.conf_changes;
                pipelined += report.readies_pipelined;
                reads += report.reads_checked;
                quieted += report.quiet_heartbeats;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    println!(
        "seeds {start}..{end}: {elections} elections, {writes} client writes applied, \
         {crashes} crashes, {conf_changes} conf changes applied, {pipelined} Readies pipelined, {reads} reads checked, \
         {quieted} heartbeats that quieted a group"
    );
    // A sweep in which nothing happens proves nothing: each count is of what took effect
    // (applied, answered), not of what was merely proposed.
    assert!(
        end == start
            || (elections > 0
                && writes > 0
                && crashes > 0
                && conf_changes > 0
                && pipelined > 0
                && reads > 0
                && quieted > 0)
    );
}

#[test]
fn seed_sweep_part_1_of_4() {
    sweep(0, 4);
}
#[test]
fn seed_sweep_part_2_of_4() {
    sweep(1, 4);
}
#[test]
fn seed_sweep_part_3_of_4() {
    sweep(2, 4);
}
#[test]
fn seed_sweep_part_4_of_4() {
    sweep(3, 4);
}

/// Replays the seed in `COHORT_SIM_SEED` (or seed 0) and prints what it did.
#[test]
fn replay_one_seed() {
    let seed = std::env::var("COHORT_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match run(&SimOptions::for_seed(seed)) {
        Ok(report) => println!("SEED={seed} passed: {report:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// Goal: a panic inside a run (a broken assertion) is a failure that names its seed, not the
/// end of the sweep without one. Method: a run whose options the core refuses at start (no
/// entries per append), which the simulator's setup turns into a panic.
#[test]
fn a_panic_inside_a_run_is_reported_with_its_seed() {
    let mut options = SimOptions::for_seed(7);
    options.append_entries_max = 0;
    let failure = run(&options).expect_err("the run panics");
    let report = failure.to_string();
    assert!(report.starts_with("SEED=7 failed: panicked"), "{report}");
    assert!(report.contains("append_entries_max"), "{report}");
}
