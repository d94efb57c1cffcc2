//! End to end with full disks: three `cohort serve` processes, each on a tmpfs of a few MiB,
//! written to until the disks fill. Needs root (mount); elsewhere it says it was skipped.
//!
//! What must hold: a node whose log cannot grow keeps running, refuses writes with an error
//! that says why, serves reads, and leaves no half-built segment taking space; no
//! acknowledged write is lost; and once there is room again, it takes writes again by itself.

mod common;

use std::path::Path;
use std::time::Duration;

use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::{Client, ClientOptions};
use cohort::proto::client::Consistency;
use common::cluster::finish;
use common::tmpfs::Tmpfs;

const DISK_MIB: u64 = 16;
const VALUE_BYTES: usize = 8 << 10;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

/// Writes `key(i)` = `value(i)` for i = 0, 1, … until a write fails; returns how many were
/// acknowledged and why the next one failed.
fn write_until_refused(bases: &[String]) -> (u64, String) {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("filler", move || async move {
        let client = connect(bases, 1, Duration::from_secs(3)).await;
        let mut acked = 0;
        loop {
            if let Err(error) = client.put(&key(acked), &value(acked)).await {
                return (acked, error.to_string());
            }
            acked += 1;
            assert!(
                acked < 3 * (DISK_MIB << 20) / VALUE_BYTES as u64,
                "the disks never filled"
            );
        }
    })
    .expect("filler executor")
}

/// A client of its own (`seed`: each client a fresh exactly-once session).
async fn connect(bases: Vec<String>, seed: u64, request_timeout: Duration) -> Client {
    let mut options = ClientOptions::new(bases, seed);
    options.request_timeout = request_timeout;
    options.attempt_timeout = Duration::from_millis(500);
    Client::connect_retrying(options, Duration::from_secs(20))
        .await
        .expect("the cluster answers")
}

/// Reads `key(i)` for every i in `keys`, linearizably; then writes `key(extra)` if given.
/// `seed` names the client.
fn read_back(bases: &[String], seed: u64, keys: std::ops::Range<u64>, extra: Option<u64>) {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("reader", move || async move {
        let client = connect(bases, seed, Duration::from_secs(20)).await;
        for i in keys {
            let got = client.get(&key(i), Consistency::Linearizable).await;
            assert_eq!(got.expect("read"), Some(value(i).into()), "key {i}");
        }
        if let Some(i) = extra {
            client
                .put(&key(i), &value(i))
                .await
                .expect("a write once there is room");
        }
    })
    .expect("reader executor");
}

fn building_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let name = entry.to_string_lossy().into_owned();
        if name.ends_with(".building") {
            found.push(name);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            paths.extend(walk(&path));
        } else {
            paths.push(path);
        }
    }
    paths
}

/// Goal: full disks refuse writes, keep serving reads and lose nothing. Method: each node's
/// data folder on a 16 MiB tmpfs, 1 MiB segments, no snapshot until 64 MiB of log, so the
/// log fills the disk; write distinct 8 KiB values until a write fails. The failure must say
/// why, every node must still run, every acknowledged write must read back, and no
/// `.building` file may be left. Then grow the disks: a write must succeed again, without a
/// restart, and everything reads back.
#[test]
fn full_disks_refuse_writes_serve_reads_lose_nothing_and_recover_by_themselves() {
    let dir = std::env::temp_dir().join(format!("cohort-test-diskfull-{}", std::process::id()));
    let mut disks = Vec::new();
    for id in 1..=3 {
        match Tmpfs::mount(&dir.join(format!("node-{id}")), DISK_MIB) {
            Ok(disk) => disks.push(disk),
            Err(why) => {
                eprintln!("skipped: a small disk needs root and mount ({why})");
                return;
            }
        }
    }
    let flags = NodeFlags {
        groups: 2,
        segment_mib: 1,
        snapshot_log_mib: 64,
        ..NodeFlags::default()
    };
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cohort"));
    let mut cluster = LocalCluster::start(&exe, &dir, &flags).expect("cluster starts");
    let bases = cluster.bases.clone();

    let (acked, why) = write_until_refused(&bases);
    assert!(acked > 0);
    assert!(
        why.contains("takes no writes while it cannot grow its log")
            && why.contains("No space left on device")
            && why.contains(".wal"),
        "{why}"
    );
    read_back(&bases, 2, 0..acked, None);
    assert_eq!(cluster.exited(), Vec::<String>::new(), "a node stopped");
    assert_eq!(
        building_files(&dir),
        Vec::<String>::new(),
        "half-built segments left"
    );

    for disk in &disks {
        disk.resize(4 * DISK_MIB).expect("grow the disk");
    }
    read_back(&bases, 3, 0..acked, Some(acked));
    read_back(&bases, 4, 0..acked + 1, None);
    eprintln!(
        "{acked} writes of {VALUE_BYTES} B acknowledged before the disks filled; refused with: {why}"
    );
    finish(cluster);
    drop(disks);
    let _ = std::fs::remove_dir_all(&dir);
}
