//! Helpers for the end-to-end tests: local clusters of `cohort serve` processes, a client on
//! its own executor, the `cohort` command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::{Client, ClientOptions};
use cohort::kv::{Command, Op};
use cohort::proto::client::{
    Consistency, Outcome, Request, Response, decode_responses, encode_requests,
};
use cohort::wire::{FrameEncoder, FrameHeader};
use smallvec::smallvec;

pub const GROUPS: u32 = 6;

/// A cluster with 1 MiB WAL segments, so the tests rotate, build segments off the loop and
/// recover across several segments; `snapshot_entries` per group between snapshots.
pub fn start_with(name: &str, snapshot_entries: u64) -> LocalCluster {
    start_with_flags(
        name,
        NodeFlags {
            snapshot_entries,
            ..NodeFlags::default()
        },
    )
}

/// A cluster with 1 MiB WAL segments, `GROUPS` groups, and `flags` otherwise.
pub fn start_with_flags(name: &str, flags: NodeFlags) -> LocalCluster {
    let flags = NodeFlags {
        groups: GROUPS,
        segment_mib: 1,
        ..flags
    };
    start_as_given(name, &flags)
}

/// A cluster with exactly `flags`.
pub fn start_as_given(name: &str, flags: &NodeFlags) -> LocalCluster {
    let dir = std::env::temp_dir().join(format!("cohort-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cohort"));
    LocalCluster::start(&exe, &dir, flags).expect("cluster starts")
}

pub fn finish(cluster: LocalCluster) {
    let dir = cluster.dir.clone();
    cluster.stop().expect("every node exits cleanly on SIGTERM");
    let _ = std::fs::remove_dir_all(dir);
}

/// Run `work` with a client of `bases` on a glommio executor.
pub fn with_client<T: Send + 'static>(
    bases: &[String],
    seed: u64,
    work: impl AsyncFnOnce(&mut Client) -> T + Send + 'static,
) -> T {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("test-client", move || async move {
        let mut options = ClientOptions::new(bases, seed);
        options.request_timeout = Duration::from_secs(20);
        options.attempt_timeout = Duration::from_millis(500);
        let mut client = Client::connect_retrying(options, Duration::from_secs(20))
            .await
            .expect("the cluster answers");
        work(&mut client).await
    })
    .expect("client executor")
}

#[allow(clippy::disallowed_methods)]
pub fn wait_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Runs the `cohort` command with `args`, bounded in time (see [`super::process`]).
pub fn cohort_cli(args: &[&str]) -> std::process::Output {
    super::process::cohort_bounded(args)
}

/// Send one request on a plain socket to `address` (a core's client port), skipping every
/// client-side check and following no hint; return the answer.
pub fn raw_request(address: &str, op: Op, consistency: Consistency) -> Outcome {
    let request = Request {
        forward_to: 0,
        command: Command {
            client_id: 99,
            sequence: 1,
            first_unacked: 1,
            ops: smallvec![op],
        },
        consistency,
    };
    let mut responses = raw_requests(address, &[request]);
    responses.pop().unwrap().outcome
}

/// Send `requests` in one frame on a plain socket to `address`, as [`raw_request`]; return
/// every answer, in the order they came.
pub fn raw_requests(address: &str, requests: &[Request]) -> Vec<Response> {
    use std::io::{Read, Write};
    let mut encoder = FrameEncoder::new();
    encode_requests(&mut encoder, requests).unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(&encoder.to_frame_vec()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut responses = Vec::new();
    while responses.len() < requests.len() {
        let mut header = [0; cohort::wire::limits::FRAME_HEADER_BYTES];
        stream.read_exact(&mut header).unwrap();
        let parsed = FrameHeader::parse(&header).unwrap().unwrap();
        let mut frame = header.to_vec();
        frame.resize(parsed.frame_bytes(), 0);
        stream.read_exact(&mut frame[header.len()..]).unwrap();
        responses.extend(decode_responses(&Bytes::from(frame)).unwrap());
    }
    responses
}

/// How many groups each node says it leads (node id → count), when every group has exactly
/// one leader; None while an election or a handover is under way or a node is silent.
pub fn leaders_per_node(bases: &[String]) -> Option<BTreeMap<u64, usize>> {
    let bases = bases.to_vec();
    let (rows, _missing) = cohort::node::on_one_executor("status", move || async move {
        let mut options = ClientOptions::new(bases, 31);
        options.attempt_timeout = Duration::from_millis(300);
        cohort::client::cluster_status(options).await
    })
    .ok()?
    .ok()?;
    let mut per_node = BTreeMap::new();
    let mut per_group = BTreeMap::new();
    for core in &rows {
        for group in core.groups.iter().filter(|g| g.role == "leader") {
            *per_node.entry(core.node_id).or_insert(0) += 1;
            *per_group.entry(group.group).or_insert(0) += 1;
        }
    }
    let one_each = per_group.len() == GROUPS as usize && per_group.values().all(|&n| n == 1);
    one_each.then_some(per_node)
}

pub fn wait_for_leaders(bases: &[String], want: &[(u64, usize)], patience_s: u64) {
    let want: BTreeMap<u64, usize> = want.iter().copied().collect();
    let mut seen = None;
    for _ in 0..patience_s * 5 {
        seen = leaders_per_node(bases);
        if seen.as_ref() == Some(&want) {
            return;
        }
        wait_ms(200);
    }
    let status = cohort_cli(&["status", "--nodes", &bases.join(",")]);
    panic!(
        "leaders per node: wanted {want:?}, last seen {seen:?}; cohort status:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// `probe()` once `good` holds, or its last value after ten seconds.
pub fn eventually<T>(mut probe: impl FnMut() -> T, good: impl Fn(&T) -> bool) -> T {
    for _ in 0..200 {
        let value = probe();
        if good(&value) {
            return value;
        }
        wait_ms(50);
    }
    probe()
}

/// Files directly in `dir` whose names end with `suffix`.
pub fn files_ending(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// Writes every (key, value) of `pairs` through a client of `bases`, `per_round` at once,
/// each round after the last is answered.
pub fn put_all(bases: &[String], seed: u64, pairs: Vec<(Vec<u8>, Vec<u8>)>, per_round: usize) {
    with_client(bases, seed, async move |client| {
        for round in pairs.chunks(per_round) {
            let batch = round
                .iter()
                .map(|(key, value)| {
                    let op = Op::Put {
                        key: Bytes::from(key.clone()),
                        value: Bytes::from(value.clone()),
                    };
                    (smallvec![op], Consistency::Linearizable)
                })
                .collect();
            for result in client.execute_batch(batch).await {
                result.unwrap();
            }
        }
    });
}

/// Waits until node `id` has logged `line` `times` times in all.
pub fn wait_for_log(cluster: &LocalCluster, id: u64, line: &str, times: usize) {
    for _ in 0..1200 {
        if cluster.log(id).matches(line).count() >= times {
            return;
        }
        wait_ms(50);
    }
    panic!("node {id} never logged `{line}`:\n{}", cluster.log(id));
}

/// `cohort members …` through `via`; its stdout, or a panic with its stderr.
pub fn members(args: &[&str], via: &str) -> String {
    let mut all = vec!["members"];
    all.extend(args);
    all.extend(["--nodes", via, "--timeout-ms", "30000"]);
    let output = cohort_cli(&all);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{all:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
