//! `cohort sim` runs the simulator's seeds from the command line and says what they did.

use std::process::Command;

fn cohort(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(args)
        .output()
        .expect("cohort runs")
}

/// Goal: a sweep reports every seed it ran and what happened in them, a replay reports its
/// one seed, and a sweep of nothing is refused. Method: run each and read the output.
#[test]
fn sim_runs_seeds_and_replays_one() {
    let sweep = cohort(&["sim", "--seeds", "40", "--from", "100", "--threads", "2"]);
    let out = String::from_utf8_lossy(&sweep.stdout);
    assert!(sweep.status.success(), "{out}");
    assert!(out.contains("40 seeds passed"), "{out}");
    assert!(
        !out.contains(" 0 entries committed"),
        "a sweep that commits nothing: {out}"
    );
    let replay = cohort(&["sim", "--seed", "101"]);
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{out}");
    assert!(out.starts_with("seed 101: SimOptions"), "{out}");
    assert!(out.contains("seed 101 passed"), "{out}");
    let nothing = cohort(&["sim", "--seeds", "0"]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("--seeds must be at least 1"));
}
