//! Helpers shared by the integration tests: proptest strategies for Raft messages, transport
//! peers, reading a WAL back, local clusters of real processes,
//! network partitions, small file systems that fill up, snapshots the fake logs received, the
//! `cohort` command bounded in time.
#![allow(dead_code)]

pub mod cluster;
pub mod messages;
pub mod netfilter;
pub mod process;
pub mod snapshots;
pub mod tmpfs;
pub mod transport;
pub mod wal;

/// Says that the running test was skipped, and why: on stderr (which cargo shows only for a
/// failing test, or with `--nocapture`), and appended to the file `COHORT_SKIPPED_LOG` names,
/// if it does, so that a CI run says which tests checked nothing (review 231: they passed
/// silently).
pub fn skipped(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    eprintln!("skipped: {why}");
    if let Some(path) = std::env::var_os("COHORT_SKIPPED_LOG")
        && let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One line a skip: a reason may quote a tool's lines (iptables says two).
        let _ = writeln!(log, "{test}: {}", why.replace('\n', " / "));
    }
}
