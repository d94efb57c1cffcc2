//! End to end, membership on a live cluster of real processes under a steady write load:
//! grow 3 → 5 with `serve --join` (the new nodes catch up by snapshot), remove the leader,
//! shrink back to 3, replace a dead node; no acknowledged write is lost, and the cluster
//! keeps acknowledging writes through every step.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use cohort::cli::local_cluster::NodeFlags;
use cohort::client::ClientError;
use cohort::proto::client::{Consistency, ErrorCode};
use cohort::raft::NodeId;
use cohort::wire::{ClusterId, FrameEncoder, Handshake};
use common::cluster::{
    cohort_cli, finish, members, start_as_given, start_with, start_with_flags, wait_for_log,
    wait_ms, with_client,
};

/// Writes distinct keys until told to stop; counts the acknowledged ones as they come.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: JoinHandle<(Vec<Vec<u8>>, Vec<String>)>,
}

impl Writer {
    fn start(bases: &[String]) -> Writer {
        let (stop, acked) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (bases, stopping, counting) = (bases.to_vec(), Arc::clone(&stop), Arc::clone(&acked));
        let thread = std::thread::spawn(move || {
            with_client(&bases, 77, async move |client| {
                let (mut written, mut failed) = (Vec::new(), Vec::new());
                let mut i = 0u64;
                while !stopping.load(Ordering::SeqCst) {
                    let key = format!("member-test-{i}").into_bytes();
                    i += 1;
                    match client.put(&key, &key).await {
                        Ok(()) => {
                            written.push(key);
                            counting.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => failed.push(error.to_string()),
                    }
                }
                (written, failed)
            })
        });
        Writer {
            stop,
            acked,
            thread,
        }
    }

    /// Waits until `more` writes beyond the current count are acknowledged: the cluster is
    /// available.
    fn expect_progress(&self, more: u64, step: &str) {
        let from = self.acked.load(Ordering::SeqCst);
        for _ in 0..300 {
            if self.acked.load(Ordering::SeqCst) >= from + more {
                return;
            }
            wait_ms(50);
        }
        panic!(
            "after {step}: only {} of {more} more writes acknowledged in 15 s",
            self.acked.load(Ordering::SeqCst) - from
        );
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        let (written, failed) = self.thread.join().expect("the writer ran");
        // A write may time out (its outcome unknown) while a group changes hands, but most
        // must go through, and every acknowledged one must be there (checked by the caller).
        assert!(
            failed.len() * 100 <= written.len().max(1),
            "{} of {} writes failed: {:?}",
            failed.len(),
            written.len() + failed.len(),
            failed.first()
        );
        written
    }
}

/// Every acknowledged key, read linearizably through `bases`, holds its value.
fn expect_all_there(bases: &[String], written: Vec<Vec<u8>>) {
    let count = written.len();
    eprintln!("checking {count} acknowledged writes through {bases:?}");
    let missing = with_client(bases, 78, async move |client| {
        let mut missing = Vec::new();
        for key in written {
            let value = client.get(&key, Consistency::Linearizable).await.unwrap();
            if value.as_deref() != Some(&key[..]) {
                missing.push(String::from_utf8_lossy(&key).to_string());
            }
        }
        missing
    });
    assert!(
        missing.is_empty(),
        "{} of {count} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The `members list` rows of nodes that vote in every one of the groups.
fn full_voters(list: &str) -> Vec<u64> {
    list.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let node = fields.first()?.parse().ok()?;
            let (voter, total) = fields.get(2)?.split_once('/')?;
            (voter == total).then_some(node)
        })
        .collect()
}

/// The node that leads group 0, as `cohort status` through `via` reports it. Asked again for
/// up to 10 s: an election or a balancing handover may be under way.
fn leader_of_group_0(via: &str) -> u64 {
    let mut table = String::new();
    for _ in 0..100 {
        let output = cohort_cli(&["status", "--nodes", via]);
        table = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 4 && fields[2] == "0" && fields[3] == "leader" {
                return fields[0].parse().unwrap();
            }
        }
        wait_ms(100);
    }
    panic!("no leader of group 0 in:\n{table}");
}

/// How long a removed node may take to stop by itself.
const EXIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn the_cluster_grows_to_five_and_shrinks_to_three_under_load_losing_nothing() {
    // A small snapshot threshold: the joining nodes find their leaders' logs compacted and
    // catch up by snapshot, streamed in 1 KiB chunks (a group's state is several KiB).
    let flags = NodeFlags {
        snapshot_entries: 40,
        snapshot_chunk_kib: 1,
        ..NodeFlags::default()
    };
    let mut cluster = start_with_flags("members-grow", flags);
    let writer = Writer::start(&cluster.bases);
    writer.expect_progress(300, "start");

    for _ in 0..2 {
        let id = cluster.join(1).expect("node starts");
        let joined = format!("node {id}: joined: voter of every group");
        wait_for_log(&cluster, id, &joined, 1);
        writer.expect_progress(100, &format!("node {id} joined"));
    }
    let list = members(&["list"], &cluster.bases[0]);
    assert_eq!(full_voters(&list), [1, 2, 3, 4, 5], "{list}");
    // The new nodes caught up from snapshots, not from logs replayed from index 1.
    for id in [4, 5] {
        assert!(
            cluster.log(id).contains("installed a snapshot"),
            "node {id} did not catch up by snapshot:\n{}",
            cluster.log(id)
        );
    }

    // Remove the leader of group 0 (it hands the group over first), then another old node.
    let leader = leader_of_group_0(&cluster.bases[3]);
    let other = (1..=3).find(|&n| n != leader).unwrap();
    let remaining: Vec<u64> = (1..=5).filter(|n| ![leader, other].contains(n)).collect();
    // Ask a node that stays (the leader may be one of the joined nodes).
    let via = cluster.bases[(remaining[0] - 1) as usize].clone();
    let out = members(&["remove", "--id", &leader.to_string()], &via);
    assert!(out.contains("done in every group"), "{out}");
    writer.expect_progress(100, &format!("removing the leader {leader}"));
    members(&["remove", "--id", &other.to_string()], &via);
    writer.expect_progress(100, &format!("removing node {other}"));
    // Each removed node hears that its removal committed, says so and stops (found in
    // review: without a broadcast of every commit, a removed follower never learned it, and
    // stayed in the old configuration, campaigning).
    for removed in [leader, other] {
        wait_for_log(&cluster, removed, "was removed from the cluster", 1);
        let status = cluster.wait_exit(removed, EXIT_PATIENCE).expect("it stops");
        assert_eq!(status.code(), Some(1), "{}", cluster.log(removed));
        // Removed on purpose, it did not fail (found by an operator: "ERROR core failed").
        let log = cluster.log(removed);
        assert!(!log.contains("core failed"), "{log}");
    }
    // Restarted on its data dir with its first command (its --peers), a removed node stops
    // again, saying why (found by an operator: it said it could be stopped, and ran on).
    let said = cluster
        .log(other)
        .matches("was removed from the cluster")
        .count();
    match cluster.restart(other) {
        Ok(()) => {
            let status = cluster.wait_exit(other, EXIT_PATIENCE).expect("it stops");
            assert_eq!(status.code(), Some(1), "{}", cluster.log(other));
        }
        Err(error) => assert!(error.contains("was removed from the cluster"), "{error}"),
    }
    wait_for_log(&cluster, other, "was removed from the cluster", said + 1);
    writer.expect_progress(100, "stopping the removed nodes");

    let list = members(&["list"], &via);
    assert_eq!(full_voters(&list), remaining, "{list}");
    let bases: Vec<String> = remaining
        .iter()
        .map(|&n| cluster.bases[(n - 1) as usize].clone())
        .collect();
    expect_all_there(&bases, writer.finish());
    finish(cluster);
}

#[test]
fn a_dead_node_is_replaced_by_a_fresh_one_while_writes_go_on() {
    let mut cluster = start_with("members-replace", 100_000);
    let writer = Writer::start(&cluster.bases);
    writer.expect_progress(300, "start");

    cluster.kill(3);
    writer.expect_progress(100, "node 3 died");
    let out = members(&["remove", "--id", "3"], &cluster.bases[0]);
    assert!(out.contains("voters [1, 2]"), "{out}");
    writer.expect_progress(100, "removing node 3");

    // An id is never used again: a fresh node under the removed id asks to be added, is
    // refused by the groups that removed it, and stops, saying why.
    let said = join_under_a_used_id(&cluster.dir, 3, &cluster.bases[2], &cluster.bases[0]);
    assert!(
        said.contains("node 3 was removed from the cluster"),
        "{said}"
    );
    assert!(said.contains("with a new --id"), "{said}");
    let last = said.lines().rev().find(|l| l.starts_with("cohort: "));
    assert!(last.is_some_and(|l| l.contains("was removed")), "{said}");
    let list = members(&["list"], &cluster.bases[0]);
    let listed = |id: &str| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(id))
    };
    assert!(
        listed("1") && !listed("3"),
        "node 3 is still listed: {list}"
    );
    writer.expect_progress(100, "node 3 refused");

    let id = cluster.join(2).expect("node starts");
    let joined = format!("node {id}: joined: voter of every group");
    wait_for_log(&cluster, id, &joined, 1);
    writer.expect_progress(100, "node 4 joined");
    // A joined node restarts with the same command: it recovers from its disk and is still
    // a voter (joining again changes nothing).
    cluster.terminate(id).expect("node 4 stops cleanly");
    writer.expect_progress(100, "node 4 stopped");
    cluster.restart(id).expect("node 4 starts again");
    wait_for_log(&cluster, id, &joined, 2);
    writer.expect_progress(100, "node 4 restarted");
    let list = members(&["list"], &cluster.bases[0]);
    assert_eq!(full_voters(&list), [1, 2, 4], "{list}");

    // Bad requests get clear errors and change nothing.
    for (args, expected) in [
        (
            vec!["promote", "--id", "9"],
            "node 9 is in no configuration of group 0",
        ),
        (
            vec!["add", "--id", "5", "--address", "nowhere"],
            "HOST:PORT",
        ),
        (
            vec!["add", "--id", "4", "--address", "127.0.0.1:9"],
            "is a member at",
        ),
    ] {
        let mut all = vec!["members"];
        all.extend(args.iter().copied());
        all.extend(["--nodes", &cluster.bases[0]]);
        let output = cohort_cli(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{all:?} succeeded");
        assert!(stderr.contains(expected), "{all:?}: {stderr}");
    }
    let bases = vec![cluster.bases[0].clone(), cluster.bases[3].clone()];
    expect_all_there(&bases, writer.finish());

    // Restarted with another node in --peers, node 1 says they are not used (found by an
    // operator: it said only "peer removed" of the extra one).
    cluster.terminate(1).expect("node 1 stops cleanly");
    let args = cluster.args_mut(1);
    let peers = args.iter().position(|a| a == "--peers").expect("--peers") + 1;
    args[peers].push_str(",9=127.0.0.1:9");
    cluster.restart(1).expect("node 1 starts");
    wait_for_log(&cluster, 1, "--peers names other nodes than", 1);

    // A data dir keeps the layout it was made with: node 1 restarted with other --groups is
    // refused before it touches anything.
    cluster.terminate(1).expect("node 1 stops cleanly");
    let data = cluster.dir.join("node-1");
    let peers = format!(
        "1={},2={},3={}",
        cluster.bases[0], cluster.bases[1], cluster.bases[2]
    );
    let output = cohort_cli(&[
        "serve",
        "--id",
        "1",
        "--peers",
        &peers,
        "--data-dir",
        &data.to_string_lossy(),
        "--groups",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with other --groups");
    assert!(stderr.contains("cannot change"), "{stderr}");
    finish(cluster);
}

/// Goal (tester 291): removing a live node while another is down, which would leave each
/// group voters of which no majority answers, is refused and changes nothing: before, the
/// groups entered a joint configuration they could not leave, with no leader, and nothing
/// could be removed or added until the dead node came back. Method: 3 nodes; node 1 is
/// killed, and the leaders given 2 s (10 election timeouts) to count it silent; `members
/// remove --id 3` must fail naming node 1, writes must still be taken, and removing node 1
/// must then be done.
#[test]
fn removing_a_live_node_while_another_is_down_is_refused() {
    let mut cluster = start_with("members-strict", 100_000);
    let via = format!("{},{}", cluster.bases[1], cluster.bases[2]);
    cluster.kill(1);
    wait_ms(2_000);
    let args = [
        "members",
        "remove",
        "--id",
        "3",
        "--nodes",
        &via,
        "--timeout-ms",
        "10000",
    ];
    let output = cohort_cli(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("removing node 3 would leave group 0 with voters [1, 2], of which [1]"),
        "{stderr}"
    );
    let put = cohort_cli(&["put", "strict-key", "v", "--nodes", &via]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let out = members(&["remove", "--id", "1"], &via);
    assert!(out.contains("voters [2, 3]"), "{out}");
    finish(cluster);
}

/// Goal (found in review): a node joining a group whose log is longer than one append
/// (1,024 entries) applies the first entries, where it is no member yet, in a turn of its
/// own. It then neither says it was removed nor drops its peers: before, it printed
/// "removed from every group of this core; this node can be stopped" on such a join, and
/// set its peers to the members of those first entries, cutting itself off from any node
/// that joined after them.
#[test]
fn a_node_joining_a_log_longer_than_an_append_is_not_taken_for_removed() {
    let flags = NodeFlags {
        groups: 1,
        segment_mib: 1,
        ..NodeFlags::default()
    };
    let mut cluster = start_as_given("members-long-log", &flags);
    with_client(&cluster.bases, 5, async |client| {
        for i in 0..1_500u32 {
            let key = format!("long-log-{i}").into_bytes();
            client.put(&key, b"v").await.expect("written");
        }
    });
    let id = cluster.join(1).expect("node starts");
    wait_for_log(&cluster, id, "joined: voter of every group", 1);
    let log = cluster.log(id);
    assert!(!log.contains("removed from every group"), "{log}");
    assert!(!log.contains("members [1, 2, 3]\n"), "{log}");
    finish(cluster);
}

/// Runs `serve --join` for node `id` at `base` on a new data dir under `dir`, through
/// `seed`; waits (at most 60 s) until it exits with an error, and returns what it printed.
fn join_under_a_used_id(dir: &std::path::Path, id: u64, base: &str, seed: &str) -> String {
    let data = dir.join(format!("node-{id}-anew"));
    let log = dir.join(format!("node-{id}-anew.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "serve",
            "--id",
            &id.to_string(),
            "--listen",
            base,
            "--join",
            seed,
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("cohort runs");
    let mut status = None;
    for _ in 0..1200 {
        status = node.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        wait_ms(50);
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    let Some(status) = status else {
        let _ = node.kill();
        let _ = node.wait();
        panic!("node {id} under a used id still runs after 60 s:\n{said}");
    };
    assert!(
        !status.success(),
        "node {id} under a used id exited cleanly:\n{said}"
    );
    said
}

/// Goal: a group whose state is larger than a frame (16 MiB) reaches a joining node: the
/// snapshot streams in chunks. Method: 40 values of 512 KiB, all in group 0, with a snapshot
/// every 10 entries; node 4 joins and must catch up by snapshot; with node 2 stopped, every
/// value is read back linearizably (node 4's replica is needed for a quorum). Also: a value
/// too large for one entry of the nodes' 1 MiB WAL segments is refused, and nothing breaks.
#[test]
fn a_state_larger_than_a_frame_streams_to_a_joining_node() {
    let mut cluster = start_with("members-big", 10);
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("big-{i}").into_bytes())
        .filter(|key| cohort::proto::topology::group_of(key, common::cluster::GROUPS) == 0)
        .take(48)
        .collect();
    let value = |key: &[u8]| -> Vec<u8> {
        let seed = key.iter().map(|&b| u32::from(b)).sum::<u32>();
        (0..1u32 << 19)
            .map(|i| (i.wrapping_mul(seed) >> 3) as u8)
            .collect()
    };
    let written = keys.clone();
    with_client(&cluster.bases, 90, async move |client| {
        let huge = vec![1u8; 1 << 20];
        match client.put(&written[0], &huge).await {
            Err(ClientError::Refused {
                code: ErrorCode::TooLarge,
                message,
            }) => assert!(message.contains("--segment-mib"), "{message}"),
            other => panic!("a 1 MiB value with 1 MiB segments: {other:?}"),
        }
        for key in &written {
            client.put(key, &value(key)).await.unwrap();
        }
    });
    // A joining node is sent its leader's last snapshot, which is taken (off the loop) some
    // entries behind the writes: wait until every node's holds more than a frame.
    let frame_bytes = cohort::wire::limits::FRAME_BODY_BYTES_MAX as u64;
    let big_snapshot_on = |node: u64| {
        let dir = cluster.dir.join(format!("node-{node}/core-0"));
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let size = entry.metadata().map_or(0, |m| m.len());
                name.starts_with("group-0-") && name.ends_with(".snap") && size > frame_bytes
            })
    };
    for _ in 0..400 {
        if (1..=3).all(big_snapshot_on) {
            break;
        }
        wait_ms(25);
    }
    assert!(
        (1..=3).all(big_snapshot_on),
        "no snapshot of group 0 over a frame"
    );
    let id = cluster.join(1).expect("node starts");
    wait_for_log(
        &cluster,
        id,
        &format!("node {id}: joined: voter of every group"),
        1,
    );
    assert!(
        cluster.log(id).contains("installed a snapshot"),
        "node {id} did not catch up by snapshot:\n{}",
        cluster.log(id)
    );
    // The log line is `… installed a snapshot group=G index=I bytes=B`: one larger than a frame.
    let largest = cluster
        .log(id)
        .lines()
        .filter(|line| line.contains("installed a snapshot"))
        .filter_map(|line| line.rsplit("bytes=").next()?.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        largest > cohort::wire::limits::FRAME_BODY_BYTES_MAX,
        "the largest snapshot node {id} installed was {largest} bytes"
    );
    // Only node 4 and one other remain: reads need node 4's replica in the quorum.
    cluster.terminate(2).expect("node 2 stops");
    let bases = vec![cluster.bases[0].clone(), cluster.bases[3].clone()];
    let wrong = with_client(&bases, 91, async move |client| {
        let mut wrong = Vec::new();
        for key in keys {
            let got = client.get(&key, Consistency::Linearizable).await.unwrap();
            if got.as_deref() != Some(&value(&key)[..]) {
                wrong.push(String::from_utf8_lossy(&key).to_string());
            }
        }
        wrong
    });
    assert!(wrong.is_empty(), "values lost or damaged: {wrong:?}");
    finish(cluster);
}

/// Connect to `peer_port` as node `as_node` (core 0, of `cluster`): the node takes the new
/// connection in place of its current one with that peer, so the real peer's connection
/// drops. The impostor reads the answer and goes away; the real peer dials again.
fn cut_connection(peer_address: &str, cluster: u64, as_node: u64) {
    use std::io::{Read, Write};
    let handshake = Handshake::current(ClusterId(cluster), NodeId(as_node), 0);
    let mut encoder = FrameEncoder::new();
    encoder.encode_handshake(&handshake).expect("encodes");
    let Ok(mut stream) = std::net::TcpStream::connect(peer_address) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(200)));
    let _ = stream.write_all(&encoder.to_frame_vec());
    let _ = stream.read(&mut [0u8; 256]);
}

/// Goal: a snapshot stream cut by dropped connections resumes from the bytes the receiver
/// holds. Method: 20 MiB in group 0; node 4 joins and receives it in 1 KiB chunks while,
/// every 40 ms, each of its peer connections is taken over by an impostor (so the real one
/// drops) until it has installed that snapshot; then it must finish joining. The leader must
/// log a resend from an acknowledged byte > 0, the snapshot must arrive whole, and every value
/// must read back with node 4 in the quorum.
#[test]
fn a_snapshot_stream_cut_by_dropped_connections_resumes() {
    let flags = NodeFlags {
        snapshot_entries: 10,
        snapshot_chunk_kib: 1,
        ..NodeFlags::default()
    };
    let mut cluster = start_with_flags("members-resume", flags);
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("resume-{i}").into_bytes())
        .filter(|key| cohort::proto::topology::group_of(key, common::cluster::GROUPS) == 0)
        .take(40)
        .collect();
    let value = |key: &[u8]| -> Vec<u8> { key.iter().copied().cycle().take(512 << 10).collect() };
    let written = keys.clone();
    with_client(&cluster.bases, 92, async move |client| {
        for key in &written {
            client.put(key, &value(key)).await.unwrap();
        }
    });
    let id = cluster.join(1).expect("node starts");
    let joined = format!("node {id}: joined: voter of every group");
    let peer_port = cluster.bases[(id - 1) as usize].clone();
    let mut cuts = 0;
    // Every 40 ms while group 0's state streams in: the stream (about 20 k chunks, four in
    // flight) must not fit between two cuts, however fast the machine. Then no more cuts, and
    // node 4 finishes joining (promotion needs a caught-up learner the leaders can reach).
    let big_snapshot_installed = |log: &str| {
        log.lines()
            .filter(|line| line.contains("installed a snapshot"))
            .filter_map(|line| line.split("bytes=").nth(1))
            .filter_map(|bytes| bytes.split_whitespace().next()?.parse::<u64>().ok())
            .any(|bytes| bytes >= 10 << 20)
    };
    while !big_snapshot_installed(&cluster.log(id)) {
        assert!(
            cuts < 1500,
            "node {id} got no snapshot:\n{}",
            cluster.log(id)
        );
        wait_ms(40);
        for node in 1..=3 {
            cut_connection(&peer_port, cluster.cluster_id, node);
        }
        cuts += 1;
    }
    for _ in 0..600 {
        if cluster.log(id).contains(&joined) {
            break;
        }
        wait_ms(50);
    }
    if !cluster.log(id).contains(&joined) {
        let status = cohort_cli(&["status", "--nodes", &cluster.bases[0]]);
        panic!(
            "node {id} did not join:\n{}\ncohort status:\n{}",
            cluster.log(id),
            String::from_utf8_lossy(&status.stdout)
        );
    }
    let resumed_mid_stream = (1..=3).any(|n| {
        cluster.log(n).lines().any(|line| {
            line.contains("sending again from the last acknowledged byte")
                && !line.contains("acked=0")
                || line.contains("resumes from the bytes") && !line.contains("received=0")
        })
    });
    assert!(
        resumed_mid_stream,
        "no stream resumed from a byte > 0 in {cuts} rounds of cuts"
    );
    assert!(cluster.log(id).contains("installed a snapshot"));
    cluster.terminate(2).expect("node 2 stops");
    let bases = vec![cluster.bases[0].clone(), cluster.bases[3].clone()];
    let wrong = with_client(&bases, 93, async move |client| {
        let mut wrong = 0;
        for key in keys {
            let got = client.get(&key, Consistency::Linearizable).await.unwrap();
            wrong += usize::from(got.as_deref() != Some(&value(&key)[..]));
        }
        wrong
    });
    assert_eq!(wrong, 0, "values lost or damaged");
    finish(cluster);
}
