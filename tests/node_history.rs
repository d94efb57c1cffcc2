//! Jepsen-style histories: `cohort check`'s clients read, write, swap and delete a few keys
//! of a three-node cluster while a nemesis kills nodes (SIGKILL) and restarts them, freezes
//! them (SIGSTOP: a stalled machine, whose leases must be over in real time when it wakes),
//! cuts them off (iptables, where available), hands leadership over under load, or adds and
//! removes members; afterwards each key's history (every operation with when it was asked
//! and when, if ever, it was answered) must be linearizable (`cohort::cli::check`).
//!
//! The runs are random; the seed and the nemesis's schedule are printed with times, so a
//! failure can be read against it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::cli::check::{CheckClient, History, check_keys, key_names, nanos, read_all};
use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::ClientOptions;
use cohort::proto::client::Consistency;
use cohort::proto::topology::{group_of, peer_address};
use cohort::raft::Prng;
use common::cluster::{
    GROUPS, cohort_cli, finish, members as members_cli, start_with_flags, wait_for_log, wait_ms,
};
use common::netfilter::{self, Partition};

const KEYS: usize = 4;
const CLIENTS: u64 = 4;
/// How long the nemesis runs; `COHORT_HISTORY_SECONDS` sets a longer soak.
const NEMESIS_SECONDS: u64 = 20;

/// Kills, freezes and cuts off nodes, one fault at a time, each undone before the next,
/// and hands the keys' groups to other nodes, for `NEMESIS_SECONDS` (or
/// `COHORT_HISTORY_SECONDS`); the members stay 1, 2 and 3.
fn faults(cluster: &mut LocalCluster, keys: &[Bytes], seed: u64, origin: Instant) -> Vec<u64> {
    let seconds = std::env::var("COHORT_HISTORY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(NEMESIS_SECONDS);
    let partitions = match netfilter::available() {
        Ok(()) => true,
        Err(why) => {
            // Listed with the tests skipped (review 239): a part of this one checked nothing.
            common::skipped(&format!(
                "its partitions (kills and pauses only): partitions need root and iptables \
                 ({why})"
            ));
            false
        }
    };
    let mut rng = Prng::new(seed);
    let mut caused = [0; 4];
    let until = nanos(origin) + seconds * 1_000_000_000;
    while nanos(origin) < until {
        wait_ms(300 + rng.below(900));
        let id = 1 + rng.below(3);
        let fault = rng.below(if partitions { 4 } else { 3 }) as usize;
        let length_ms = 200 + rng.below(1_500);
        let at = nanos(origin);
        caused[fault] += 1;
        match fault {
            0 => {
                eprintln!("{at} ns: kill node {id} for {length_ms} ms");
                cluster.kill(id);
                wait_ms(length_ms);
                cluster.restart(id).expect("a killed node restarts");
            }
            1 => {
                eprintln!("{at} ns: freeze node {id} for {length_ms} ms");
                cluster.pause(id);
                wait_ms(length_ms);
                cluster.resume(id);
            }
            2 => {
                eprintln!("{at} ns: hand the keys' groups to node {id}");
                hand_over(&cluster.bases, keys, id);
            }
            _ => {
                // Lower ids dial higher ones, so node 3's peer port carries both of its
                // connections (it is cut off), and node 2's only the one from node 1 (then
                // node 3 alone reaches both others: a bridge).
                let cut = 2 + rng.below(2);
                let port = peer_address(&cluster.bases[cut as usize - 1], 0)
                    .and_then(|a| a.rsplit_once(':')?.1.parse().ok())
                    .expect("a port");
                eprintln!("{at} ns: cut node {cut}'s peer port for {length_ms} ms");
                let partition = Partition::isolate_port(port).expect("partition");
                wait_ms(length_ms);
                drop(partition);
            }
        }
        eprintln!("{} ns: healed", nanos(origin));
    }
    eprintln!("faults caused (kill, freeze, handover, cut): {caused:?}");
    vec![1, 2, 3]
}

/// Ask the leader of each key's group to hand it to node `to` (under load, with writes
/// pending); a handover refused or timed out is reported and left.
fn hand_over(bases: &[String], keys: &[Bytes], to: u64) {
    let mut groups: Vec<u32> = keys.iter().map(|k| group_of(k, GROUPS)).collect();
    groups.sort_unstable();
    groups.dedup();
    let bases = bases.to_vec();
    cohort::node::on_one_executor("history-handover", move || async move {
        for group in groups {
            let mut options = ClientOptions::new(bases.clone(), 5);
            options.attempt_timeout = Duration::from_millis(300);
            options.request_timeout = Duration::from_secs(2);
            if let Err(why) = cohort::client::transfer_leader(options, group, to).await {
                eprintln!("  group {group} stays: {why}");
            }
        }
    })
    .expect("handover executor");
}

/// Run clients against a cluster with `flags` under the nemesis; check every key's history.
/// A nemesis: runs faults on the cluster while the clients work on the keys (the seed and
/// the time line given), and returns the nodes that are members at the end.
type Nemesis = fn(&mut LocalCluster, &[Bytes], u64, Instant) -> Vec<u64>;

/// Run clients against a cluster with `flags` under `nemesis`; check every key's history.
/// Odd clients give up on a request after 3 s, even ones after 0.8 s, so that some writes go
/// unanswered while a node is down or frozen.
fn histories_stay_linearizable(
    name: &str,
    flags: NodeFlags,
    consistencies: &[Consistency],
    nemesis: Nemesis,
) {
    let mut cluster = start_with_flags(name, flags);
    let bases = cluster.bases.clone();
    let origin = cohort::clock::now();
    let seed = cohort::clock::wall_nanos() as u64;
    eprintln!("{name}: seed {seed}");
    let keys = key_names(seed % 1_000_000, KEYS);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|client| {
            let check = CheckClient {
                seeds: bases.clone(),
                client,
                seed: seed.wrapping_add(client),
                keys: keys.clone(),
                consistencies: consistencies.to_vec(),
                request_timeout: Duration::from_millis(if client % 2 == 1 { 3_000 } else { 800 }),
            };
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || check.run(origin, stop))
        })
        .collect();
    let members = nemesis(&mut cluster, &keys, seed, origin);
    stop.store(true, Ordering::Relaxed);
    let mut history: History = History::new();
    for client in clients {
        history.extend(
            client
                .join()
                .expect("client")
                .expect("the client ran")
                .history,
        );
    }
    // The last word: a read of every key after the faults, which every write that went
    // unanswered and was applied must have reached.
    let bases: Vec<String> = members
        .iter()
        .map(|&id| cluster.bases[id as usize - 1].clone())
        .collect();
    history.extend(read_all(&bases, &keys, origin).expect("the healed cluster answers"));
    assert!(cluster.exited().is_empty(), "{:?}", cluster.exited());
    let counts = match check_keys(&keys, &history) {
        Ok(counts) => counts,
        Err(error) => panic!("{name} (seed {seed}): {error}"),
    };
    for (key, count) in keys.iter().zip(&counts) {
        eprintln!("{name}: {key:?}: {count:?}");
        // A history too thin proves little: the load must have gone on through the faults.
        assert!(
            count.reads >= 20 && count.writes >= 20 && count.swaps_written >= 5,
            "{key:?}: {count:?}"
        );
    }
    finish(cluster);
}

#[test]
fn histories_stay_linearizable_through_kills_freezes_and_partitions() {
    histories_stay_linearizable(
        "history",
        NodeFlags::default(),
        &[Consistency::Linearizable],
        faults,
    );
}

#[test]
fn histories_with_lease_reads_stay_linearizable_through_kills_freezes_and_partitions() {
    let flags = NodeFlags {
        lease_reads: true,
        ..NodeFlags::default()
    };
    histories_stay_linearizable(
        "history-lease",
        flags,
        &[Consistency::Linearizable, Consistency::Lease],
        faults,
    );
}

/// Four rounds of: a new node joins (catching up from a snapshot, as the leaders compact
/// every 40 entries), one of the older members leaves (handing over the groups it leads)
/// and stops; a member freezes for a while in each round. The members end as three.
fn membership_changes(
    cluster: &mut LocalCluster,
    _keys: &[Bytes],
    seed: u64,
    origin: Instant,
) -> Vec<u64> {
    let mut rng = Prng::new(seed);
    let mut members = vec![1, 2, 3];
    let say = |what: String| eprintln!("{} ns: {what}", nanos(origin));
    for _ in 0..4 {
        wait_ms(1_000);
        let id = cluster.join(members[0]).expect("the new node starts");
        say(format!("node {id} started, joining"));
        wait_for_log(
            cluster,
            id,
            &format!("node {id}: joined: voter of every group"),
            1,
        );
        say(format!("node {id} joined"));
        members.push(id);
        let frozen = members[rng.below(members.len() as u64) as usize];
        say(format!("freeze node {frozen} for 500 ms"));
        cluster.pause(frozen);
        wait_ms(500);
        cluster.resume(frozen);
        wait_ms(500);
        // One of the older members (never the one that just joined) leaves.
        let gone = members.remove(rng.below(members.len() as u64 - 1) as usize);
        let via = cluster.bases[members[0] as usize - 1].clone();
        say(format!("remove node {gone}"));
        let out = members_cli(&["remove", "--id", &gone.to_string()], &via);
        say(format!(
            "node {gone} removed: {}",
            out.lines().last().unwrap_or("")
        ));
        // It stops by itself once it applied its removal.
        cluster
            .wait_removed(gone, std::time::Duration::from_secs(10))
            .expect("a removed node stops");
    }
    wait_ms(1_000);
    members
}

#[test]
fn histories_stay_linearizable_while_nodes_join_and_leave() {
    let flags = NodeFlags {
        snapshot_entries: 40,
        snapshot_chunk_kib: 1,
        ..NodeFlags::default()
    };
    histories_stay_linearizable(
        "history-members",
        flags,
        &[Consistency::Linearizable],
        membership_changes,
    );
}

/// Goal: `cohort check` works from the command line against a running cluster, and refuses
/// what it cannot check. Method: a healthy cluster, two seconds of four clients.
#[test]
fn cohort_check_finds_a_healthy_cluster_linearizable_and_refuses_stale_reads() {
    let cluster = start_with_flags("history-cli", NodeFlags::default());
    let base = cluster.bases[0].clone();
    let output = cohort_cli(&["check", "--seconds", "2", "--nodes", &base]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");
    assert_eq!(stdout.matches("): linearizable").count(), 4, "{stdout}");
    assert!(
        stdout.contains("every key's history is linearizable"),
        "{stdout}"
    );
    let output = cohort_cli(&["check", "--read", "stale", "--nodes", &base]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid value 'stale'") && stderr.contains("linearizable, lease"),
        "{stderr}"
    );
    finish(cluster);
}

/// Goal (tester 291): a check whose seed is gone by its end still gives its verdict: its last
/// reads go to the members its clients learned, not to the seeds alone (they retried the
/// dead seed for 30 s, then failed the whole run). Method: `cohort check --seconds 4` with
/// node 1 alone as seed; node 1 is killed 2 s in; the check must pass.
#[test]
fn a_check_whose_seed_is_gone_by_its_end_still_gives_its_verdict() {
    let mut cluster = start_with_flags("history-seed-gone", NodeFlags::default());
    let seed = cluster.bases[0].clone();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["check", "--seconds", "4", "--nodes", &seed])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cohort check runs");
    let check = common::process::Spawned::new(child);
    wait_ms(2_000);
    cluster.kill(1);
    let output = check.wait_bounded();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("every key's history is linearizable"),
        "{said}"
    );
    finish(cluster);
}
