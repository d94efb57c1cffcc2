//! `cohort sim` runs the simulator's seeds from the command line and says what they did.

use std::process::Command;

#[path = "common/process.rs"]
mod process;

fn cohort(args: &[&str]) -> std::process::Output {
    process::cohort_bounded(args)
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
        !out.contains(" 0 client writes applied"),
        "a sweep that applies no client write: {out}"
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

/// Goal (found in review): seeds near `u64::MAX` end: the threads' shared counter wrapped
/// past it to seed 0 and ran on from there for ever. Method: 5 seeds ending 5 below it, on 16
/// threads (each took one more past the end), bounded by a minute.
#[test]
fn seeds_near_the_last_end() {
    let from = (u64::MAX - 10).to_string();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["sim", "--from", &from, "--seeds", "5", "--threads", "16"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cohort runs");
    for _ in 0..600 {
        if let Some(status) = sim.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            return;
        }
        #[allow(clippy::disallowed_methods)] // polling a child process
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = sim.kill();
    panic!("5 seeds ran for a minute");
}

/// Goal (found in review): output that cannot be written (a full disk, a reader gone) loses
/// the lines, not the run: `println!` panicked (status 101) after every seed ran, and a
/// failing seed's report went with it. Method: stdout on /dev/full.
#[test]
fn a_sim_whose_output_cannot_be_written_still_runs_and_says_how_it_went() {
    let sim = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["sim", "--seeds", "3", "--threads", "1"])
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("cohort runs");
    assert!(sim.status.success(), "{:?}", sim);
}

/// Goal (found in review): a mistyped flag exits 1, not clap's 2, which `cas` gives to a
/// failed condition (a script took the usage error for a lock someone else holds); --help
/// exits 0. Also: thread counts far past what a machine runs are refused, not a panic.
#[test]
fn usage_errors_exit_1_and_help_0() {
    let mistyped = cohort(&["cas", "lock", "--absent", "me", "--timeout-ms", "0"]);
    assert_eq!(mistyped.status.code(), Some(1), "{mistyped:?}");
    assert!(!mistyped.stderr.is_empty());
    let help = cohort(&["cas", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--absent"));
    let threads = cohort(&["sim", "--threads", "100000"]);
    assert_eq!(threads.status.code(), Some(1), "{threads:?}");
    let clients = cohort(&["check", "--clients", "100000", "--nodes", "127.0.0.1:1"]);
    assert_eq!(clients.status.code(), Some(1), "{clients:?}");
    let stderr = String::from_utf8_lossy(&clients.stderr);
    assert!(stderr.contains("at most 1024"), "{stderr}");
}

/// Goal (review 207): `cohort check` whose clients cannot reach the cluster (a mistyped
/// `--nodes`) fails once they give up, saying why, not after the whole `--seconds`.
/// Method: a port nothing listens on, `--seconds 90`; the clients give up after 20 s.
#[test]
#[allow(clippy::disallowed_methods)] // the test times the command from outside
fn a_check_whose_clients_cannot_connect_fails_before_its_seconds() {
    let started = std::time::Instant::now();
    let check = cohort(&["check", "--seconds", "90", "--nodes", "127.0.0.1:1"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("client "), "{stderr}");
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
}
