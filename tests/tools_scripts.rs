//! The measuring scripts in `tools/` run end to end against this build, so that a change of
//! the binary's flags cannot leave them broken (both once failed on a flag `serve` refuses,
//! and one printed a catch-up time regardless). Of the scripts that need root and iptables,
//! `unreachable-leader.sh` runs where they are at hand (else its test says it was skipped);
//! `partition-heal.sh` and `fault-snapshot-resume.sh` are not run here.

mod common;

use std::process::{Command, Output};

use cohort::cli::local_cluster::free_port_run;

/// Runs `tools/wiped-node.sh` on this build's binary with `wipe` (logs or dir).
fn wiped_node(wipe: &str) -> (Output, String) {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    tool("wiped-node.sh", |base| {
        vec![cohort.into(), base, wipe.into()]
    })
}

/// Runs `tools/{script}` with the arguments `args` makes of a free base port (nodes at base,
/// base + 10 and base + 20, each with a peer and a client port); its status, and its stdout
/// and stderr together.
fn tool(script: &str, args: impl FnOnce(String) -> Vec<String>) -> (Output, String) {
    let base = free_port_run(24).expect("24 free ports");
    let mut command = Command::new("bash");
    let args = args(base.to_string());
    command
        .arg(format!("{}/tools/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(&args);
    // Bounded: a script that hangs fails its test rather than the whole run (review 231).
    let output = common::process::bounded(command, &[script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// Goal: a node restarted without its log's files is sent the log again, and the script
/// says so. Method: the script as a user runs it.
#[test]
fn wiped_node_logs_runs_and_node_3_is_sent_its_log_again() {
    let (output, text) = wiped_node("logs");
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("node 3: ") && text.contains("ms of CPU in 3 s"),
        "{text}"
    );
    assert!(text.contains("node 3 holds every write again"), "{text}");
    // Node 1 leads both groups throughout (the script sees to it): it knows what node 3
    // acknowledged, and both ends say it was lost, in each group.
    for group in ["group=0", "group=1"] {
        let said = |what: &str| {
            text.lines()
                .any(|line| line.contains(what) && line.contains(group))
        };
        assert!(said("this node lost entries it had acknowledged"), "{text}");
        assert!(
            said("a follower lost entries it had acknowledged"),
            "{text}"
        );
    }
}

/// Goal: the rolling-stop script runs and prints the stop and the load around it. Method:
/// the script as a user runs it, at a light load for a few seconds.
#[test]
fn rolling_stop_runs_and_node_1_stops_cleanly() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("rolling-stop.sh", |base| {
        vec!["1000".into(), cohort.into(), base, "6".into()]
    });
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ms (status 0), restarted"), "{text}");
    // Every request answered in the end (the bench itself fails only past 1%).
    assert!(text.contains("none failed"), "{text}");
    assert!(
        text.contains("throughput") && text.contains("p99.9"),
        "{text}"
    );
}

/// Goal: the script of stops with peers gone runs and prints both stops. Method: the script
/// as a user runs it, with election timeouts of half a second.
#[test]
fn stop_with_peers_gone_runs_and_both_nodes_stop_cleanly() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("stop-with-peers-gone.sh", |base| {
        vec![cohort.into(), base, "50".into()]
    });
    assert!(output.status.success(), "{text}");
    for node in ["node 3 (", "node 1 ("] {
        let stopped = text.lines().any(|line| {
            line.starts_with(node) && line.contains("stopped in") && line.ends_with("(status 0)")
        });
        assert!(stopped, "{text}");
    }
}

/// Goal: the script that times a restarted node's redial runs, and prints a time for each
/// round. Method: the script as a user runs it, one round, node 2 down half a second.
#[test]
fn redial_after_restart_runs_and_node_2_is_reached() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("redial-after-restart.sh", |base| {
        vec![cohort.into(), base, "0.5".into(), "1".into()]
    });
    assert!(output.status.success(), "{text}");
    let reached = text.lines().any(|line| {
        line.starts_with("round 1: node 2 down 0.5 s, reached by node 1 ")
            && line.ends_with(" ms after its start")
    });
    assert!(reached, "{text}");
}

/// Goal: the script that pauses nodes under writes runs, and counts the warnings of a sync
/// that had not ended. Method: the script as a user runs it, one round of pauses of 1.2 s
/// (past a sync's patience of 1 s). The count itself is not asserted: a pause that meets no
/// sync in flight proves nothing (`shard_core` checks the rule).
#[test]
fn pause_then_continue_runs_and_counts_warnings() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("pause-then-continue.sh", |base| {
        vec![cohort.into(), base, "1.2".into(), "1".into()]
    });
    assert!(output.status.success(), "{text}");
    let counted = text.lines().any(|line| {
        line.starts_with("3 pauses of 1.2 s under writes: ")
            && line.ends_with(" warnings that a sync had not ended")
    });
    assert!(counted, "{text}");
}

/// Goal: the script that freezes a leader under load runs, and says how long the load
/// waited. Method: the script as a user runs it, one freeze of 1 s. The waits themselves are
/// not asserted (`node_cluster` checks that a client leaves a frozen leader).
#[test]
fn frozen_leader_runs_and_says_the_longest_waits() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("frozen-leader.sh", |base| {
        vec![cohort.into(), base, "1".into(), "200".into()]
    });
    assert!(output.status.success(), "{text}");
    let said = text.lines().any(|line| {
        line.starts_with("node 1 (leader of ")
            && line.contains(" of 8 groups) frozen 1 s under 200 writes/s: longest service ")
            && line.contains(", longest request ")
            && line.ends_with(" requests failed")
    });
    assert!(said, "{text}");
}

/// Goal: the script that cuts a leader off from its clients under load runs, and says how
/// long the load waited and whether the leader kept its groups. Method: the script as a user
/// runs it, one cut of 1 s, with a serve flag passed on (`--no-leader-balance`). The waits
/// are not asserted (`node_partition` checks that clients are served through the other
/// members, and that a balanced leader hands them its groups).
#[test]
fn unreachable_leader_runs_and_says_the_longest_waits() {
    if !common::netfilter::available_or_skip() {
        return;
    }
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("unreachable-leader.sh", |base| {
        let no_balance = "--no-leader-balance".into();
        vec![cohort.into(), base, "1".into(), "200".into(), no_balance]
    });
    assert!(output.status.success(), "{text}");
    let said = text.lines().any(|line| {
        line.starts_with("node 1 (leader of ")
            && line.contains(" right after the cut) unreachable from its clients for 1 s under ")
            && line.contains(" writes/s: service p50 ")
            && line.contains(", longest request ")
            && line.contains(" requests failed")
    });
    assert!(said, "{text}");
}

/// Goal: the script that counts puts refused right after a delete at the quota runs, and
/// says how many rounds were refused. Method: the script as a user runs it, three rounds.
#[test]
fn quota_delete_then_put_runs_and_counts_rounds() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("quota-delete-then-put.sh", |base| {
        vec![cohort.into(), base, "3".into()]
    });
    assert!(output.status.success(), "{text}");
    let counted = text.lines().any(|line| {
        line.contains(" rounds refused at least once (") && line.ends_with("after the delete)")
    });
    assert!(counted && text.contains("filled: "), "{text}");
}

/// Goal: the script that measures an idle cluster of many groups runs, and says each node's
/// CPU and role changes. Method: the script as a user runs it, 70 groups (a core of more
/// than 64 sums its role changes up), for a second.
#[test]
fn idle_groups_runs_and_says_each_nodes_cpu() {
    let cohort = env!("CARGO_BIN_EXE_cohort");
    let (output, text) = tool("idle-groups.sh", |base| {
        vec![cohort.into(), base, "70".into(), "1".into()]
    });
    assert!(output.status.success(), "{text}");
    assert!(text.contains("70 groups: every one led "), "{text}");
    for node in 1..=3 {
        let said = text.lines().any(|line| {
            line.starts_with(&format!("node {node}: ")) && line.ends_with(" role changes")
        });
        assert!(said, "{text}");
    }
    assert!(text.contains(" µs a second per group"), "{text}");
}

/// Goal: a node restarted on a wiped data dir stops, and the script shows why. Method: the
/// script as a user runs it.
#[test]
fn wiped_node_dir_runs_and_node_3_is_refused() {
    let (output, text) = wiped_node("dir");
    assert!(output.status.success(), "{text}");
    assert!(text.contains("node 3 exited with status 1"), "{text}");
    assert!(text.contains("knew this node with other data"), "{text}");
}
