//! Jepsen-style histories: clients read, write, swap and delete a few keys of a three-node
//! cluster while a nemesis kills nodes (SIGKILL) and restarts them, freezes them (SIGSTOP: a
//! stalled machine, whose leases must be over in real time when it wakes), cuts them off
//! (iptables, where available) and hands leadership over under load; afterwards each key's history (every operation with when it
//! was asked and when, if ever, it was answered) must be linearizable, as checked by
//! `cohort::sim::check_register`.
//!
//! Values are unique (client and count), so a read names the write it saw. An operation that
//! got no answer (a timeout, a refusal after an attempt that may have been taken in) may
//! have taken effect any time after it was asked, or never; reads without an answer are
//! left out. The runs are random and the nemesis's schedule is printed with times, so a
//! failure can be read against it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::{Client, ClientError, ClientOptions};
use cohort::kv::{Op, OpResult};
use cohort::proto::client::Consistency;
use cohort::proto::topology::{group_of, peer_address};
use cohort::raft::Prng;
use cohort::sim::{Operation, RegisterOp, check_register};
use common::cluster::{
    GROUPS, finish, members as members_cli, start_with_flags, wait_for_log, wait_ms,
};
use common::netfilter::{self, Partition};
use smallvec::smallvec;

const KEYS: usize = 4;
const CLIENTS: u64 = 4;
/// How long the nemesis runs; `COHORT_HISTORY_SECONDS` sets a longer soak.
const NEMESIS_SECONDS: u64 = 20;
/// Far above what a history of this length needs (a few configurations per operation).
const CONFIGURATIONS_MAX: usize = 20_000_000;

/// Microseconds since `origin`: the time line every client and the nemesis share.
fn micros(origin: Instant) -> u64 {
    cohort::clock::now().duration_since(origin).as_micros() as u64
}

fn decode(bytes: &Bytes) -> u64 {
    let array: [u8; 8] = bytes[..].try_into().unwrap_or_else(|_| {
        panic!("a read returned {bytes:?}, which no client of this test wrote")
    });
    u64::from_le_bytes(array)
}

fn encode(value: u64) -> Bytes {
    Bytes::copy_from_slice(&value.to_le_bytes())
}

/// One client's operations, each with the index of its key.
type History = Vec<(usize, Operation<u64>)>;

/// What one operation asked, before its answer is known.
enum Asked {
    Read,
    Put(u64),
    Delete,
    Swap { expected: Option<u64>, new: u64 },
}

impl Asked {
    /// The operation as the history records it, from its answer; `None` for a read without
    /// an answer, which constrains nothing.
    fn recorded(
        self,
        result: Result<Vec<OpResult>, ClientError>,
    ) -> Option<(RegisterOp<u64>, bool)> {
        let first = match result {
            Ok(mut results) => results.swap_remove(0),
            Err(ClientError::Invalid(why)) => panic!("the test asked something invalid: {why}"),
            Err(_) => {
                let op = match self {
                    Asked::Read => return None,
                    Asked::Put(value) => RegisterOp::Write { value: Some(value) },
                    Asked::Delete => RegisterOp::Write { value: None },
                    Asked::Swap { expected, new } => RegisterOp::CasWritten { expected, new },
                };
                return Some((op, false));
            }
        };
        let op = match (self, first) {
            (Asked::Read, OpResult::Value(value)) => RegisterOp::Read {
                saw: Some(decode(&value)),
            },
            (Asked::Read, OpResult::NotFound) => RegisterOp::Read { saw: None },
            (Asked::Put(value), OpResult::Written) => RegisterOp::Write { value: Some(value) },
            (Asked::Delete, OpResult::Written) => RegisterOp::Delete { found: true },
            (Asked::Delete, OpResult::NotFound) => RegisterOp::Delete { found: false },
            (Asked::Swap { expected, new }, OpResult::Written) => {
                RegisterOp::CasWritten { expected, new }
            }
            (Asked::Swap { expected, .. }, OpResult::ConditionFailed { current }) => {
                RegisterOp::CasFailed {
                    expected,
                    current: current.as_ref().map(decode),
                }
            }
            (_, other) => panic!("an answer that does not fit its operation: {other:?}"),
        };
        Some((op, true))
    }
}

/// A value's client, in its decimal digits above these (client 3's 52nd is 3000000052).
const VALUES_PER_CLIENT: u64 = 1_000_000_000;

/// Client `client` (1, 2, …) runs random operations on `keys` until `stop`, one at a time;
/// `seed` picks them. Odd clients give up on a request after 3 s, even ones after 0.8 s (so
/// that some writes go unanswered while a node is down or frozen).
fn run_client(
    bases: Vec<String>,
    client: u64,
    seed: u64,
    keys: Vec<Bytes>,
    consistencies: &'static [Consistency],
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> History {
    cohort::node::on_one_executor("history-client", move || async move {
        let mut options = ClientOptions::new(bases, seed);
        options.attempt_timeout = Duration::from_millis(300);
        options.request_timeout = Duration::from_millis(if client % 2 == 1 { 3_000 } else { 800 });
        let session = Client::connect_retrying(options, Duration::from_secs(20))
            .await
            .expect("the cluster answers");
        let mut rng = Prng::new(seed);
        let mut last_seen: Vec<Option<u64>> = vec![None; keys.len()];
        let mut history = History::new();
        let mut count = 0;
        while !stop.load(Ordering::Relaxed) {
            let k = rng.below(keys.len() as u64) as usize;
            let key = keys[k].clone();
            count += 1;
            let new = client * VALUES_PER_CLIENT + count;
            let (asked, op, consistency) = match rng.below(10) {
                0..=3 => {
                    let consistency = consistencies[rng.below(consistencies.len() as u64) as usize];
                    (Asked::Read, Op::Get { key }, consistency)
                }
                4..=6 => {
                    let value = encode(new);
                    (
                        Asked::Put(new),
                        Op::Put { key, value },
                        Consistency::Linearizable,
                    )
                }
                7..=8 => {
                    let expected = last_seen[k];
                    let value = encode(new);
                    let op = match expected {
                        None => Op::PutIfAbsent { key, value },
                        Some(old) => Op::CompareAndSwap {
                            key,
                            expected: Some(encode(old)),
                            value,
                        },
                    };
                    (Asked::Swap { expected, new }, op, Consistency::Linearizable)
                }
                _ => (Asked::Delete, Op::Delete { key }, Consistency::Linearizable),
            };
            let invoked_at = micros(origin);
            let result = session.execute(smallvec![op], consistency).await;
            let answered_at = micros(origin);
            let Some((op, answered)) = asked.recorded(result) else {
                continue;
            };
            match &op {
                RegisterOp::Read { saw } => last_seen[k] = *saw,
                RegisterOp::CasFailed { current, .. } => last_seen[k] = *current,
                RegisterOp::Delete { .. } => last_seen[k] = None,
                _ => {}
            }
            history.push((
                k,
                Operation {
                    client,
                    op,
                    invoked_at,
                    answered_at: answered.then_some(answered_at),
                },
            ));
        }
        history
    })
    .expect("client executor")
}

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
            eprintln!("nemesis: no partitions here ({why}); kills and pauses only");
            false
        }
    };
    let mut rng = Prng::new(seed);
    let mut caused = [0; 4];
    let until = micros(origin) + seconds * 1_000_000;
    while micros(origin) < until {
        wait_ms(300 + rng.below(900));
        let id = 1 + rng.below(3);
        let fault = rng.below(if partitions { 4 } else { 3 }) as usize;
        let length_ms = 200 + rng.below(1_500);
        let at = micros(origin);
        caused[fault] += 1;
        match fault {
            0 => {
                eprintln!("{at} µs: kill node {id} for {length_ms} ms");
                cluster.kill(id);
                wait_ms(length_ms);
                cluster.restart(id).expect("a killed node restarts");
            }
            1 => {
                eprintln!("{at} µs: freeze node {id} for {length_ms} ms");
                cluster.pause(id);
                wait_ms(length_ms);
                cluster.resume(id);
            }
            2 => {
                eprintln!("{at} µs: hand the keys' groups to node {id}");
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
                eprintln!("{at} µs: cut node {cut}'s peer port for {length_ms} ms");
                let partition = Partition::isolate_port(port).expect("partition");
                wait_ms(length_ms);
                drop(partition);
            }
        }
        eprintln!("{} µs: healed", micros(origin));
    }
    eprintln!("faults caused (kill, freeze, handover, cut): {caused:?}");
    vec![1, 2, 3]
}

/// Ask the leader of each key's group to hand it to node `to` (under load, with writes
/// pending); a handover refused or timed out is reported and left.
fn hand_over(bases: &[String], keys: &[Bytes], to: u64) {
    let mut groups: Vec<u32> = keys.iter().map(|k| group_of(k, GROUPS)).collect();
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
fn histories_stay_linearizable(
    name: &str,
    flags: NodeFlags,
    consistencies: &'static [Consistency],
    nemesis: Nemesis,
) {
    let mut cluster = start_with_flags(name, flags);
    let bases = cluster.bases.clone();
    let origin = cohort::clock::now();
    let seed = cohort::clock::wall_nanos() as u64;
    eprintln!("{name}: seed {seed}");
    let run = seed % 1_000_000;
    let keys: Vec<Bytes> = (0..KEYS)
        .map(|k| Bytes::from(format!("history-{run}-{k}")))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (bases, keys, stop) = (bases.clone(), keys.clone(), Arc::clone(&stop));
            let client_seed = seed.wrapping_add(c);
            std::thread::spawn(move || {
                run_client(bases, c + 1, client_seed, keys, consistencies, origin, stop)
            })
        })
        .collect();
    let members = nemesis(&mut cluster, &keys, seed, origin);
    stop.store(true, Ordering::Relaxed);
    let mut history: History = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    // The last word: a read of every key after the faults, which every write that went
    // unanswered and was applied must have reached.
    let bases: Vec<String> = members
        .iter()
        .map(|&id| cluster.bases[id as usize - 1].clone())
        .collect();
    let last = run_client_reads(&bases, &keys, origin);
    history.extend(last);
    assert!(cluster.exited().is_empty(), "{:?}", cluster.exited());

    for (k, key) in keys.iter().enumerate() {
        let ops: Vec<Operation<u64>> = history
            .iter()
            .filter(|(of, _)| *of == k)
            .map(|(_, op)| op.clone())
            .collect();
        let answered = |f: fn(&RegisterOp<u64>) -> bool| {
            ops.iter()
                .filter(|o| o.answered_at.is_some() && f(&o.op))
                .count()
        };
        let reads = answered(|op| matches!(op, RegisterOp::Read { .. }));
        let writes =
            answered(|op| matches!(op, RegisterOp::Write { .. } | RegisterOp::Delete { .. }));
        let swapped = answered(|op| matches!(op, RegisterOp::CasWritten { .. }));
        let unanswered = ops.iter().filter(|o| o.answered_at.is_none()).count();
        eprintln!(
            "{name}: key {key:?}: {} operations: {reads} reads, {writes} writes and deletes, \
             {swapped} swaps done, {unanswered} without an answer",
            ops.len()
        );
        // A history too thin proves little: the load must have gone on through the faults.
        assert!(reads >= 20 && writes >= 20 && swapped >= 5, "key {key:?}");
        if let Err(error) = check_register(&ops, CONFIGURATIONS_MAX) {
            panic!("{name}: key {key:?} (seed {seed}): {error}");
        }
    }
    finish(cluster);
}

/// One read of each key, with a long patience: the history's last operations.
fn run_client_reads(bases: &[String], keys: &[Bytes], origin: Instant) -> History {
    let (bases, keys) = (bases.to_vec(), keys.to_vec());
    cohort::node::on_one_executor("history-last-reads", move || async move {
        let mut options = ClientOptions::new(bases, 7);
        options.request_timeout = Duration::from_secs(30);
        let session = Client::connect_retrying(options, Duration::from_secs(30))
            .await
            .expect("the cluster answers");
        let mut history = History::new();
        for (k, key) in keys.into_iter().enumerate() {
            let invoked_at = micros(origin);
            let result = session
                .execute(smallvec![Op::Get { key }], Consistency::Linearizable)
                .await;
            let answered_at = micros(origin);
            let (op, answered) = Asked::Read
                .recorded(result)
                .expect("the healed cluster answers a read");
            assert!(answered);
            history.push((
                k,
                Operation {
                    client: 0,
                    op,
                    invoked_at,
                    answered_at: Some(answered_at),
                },
            ));
        }
        history
    })
    .expect("reader executor")
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
    let say = |what: String| eprintln!("{} µs: {what}", micros(origin));
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
        cluster
            .terminate(gone)
            .expect("a removed node stops cleanly");
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
