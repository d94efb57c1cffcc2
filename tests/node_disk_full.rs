//! End to end with full disks: three `cohort serve` processes, each on a tmpfs of a few MiB,
//! written to until the disks fill. Needs root (mount); elsewhere it says it was skipped.
//!
//! What must hold: a node whose log cannot grow stops with an error that names the file and
//! the cause, and leaves no half-built segment taking space; no acknowledged write is lost;
//! and once there is room again, the nodes restart and serve every acknowledged write.

mod common;

use std::path::Path;
use std::time::Duration;

use cohort::cli::local_cluster::{LocalCluster, NodeFlags};
use cohort::client::{Client, ClientOptions};
use cohort::proto::client::Consistency;
use common::cluster::{finish, wait_ms};
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
/// acknowledged.
fn write_until_refused(bases: &[String]) -> u64 {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("filler", move || async move {
        let mut options = ClientOptions::new(bases, 3);
        options.request_timeout = Duration::from_secs(3);
        options.attempt_timeout = Duration::from_millis(500);
        let client = Client::connect_retrying(options, Duration::from_secs(20))
            .await
            .expect("the cluster answers");
        let mut acked = 0;
        while client.put(&key(acked), &value(acked)).await.is_ok() {
            acked += 1;
            assert!(
                acked < 3 * (DISK_MIB << 20) / VALUE_BYTES as u64,
                "the disks never filled"
            );
        }
        acked
    })
    .expect("filler executor")
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

/// Goal: full disks stop the nodes cleanly and lose nothing. Method: each node's data folder
/// on a 16 MiB tmpfs, 1 MiB segments, no snapshot until 64 MiB of log, so the log fills the
/// disk; write distinct 8 KiB values until a write fails. Every node that stopped must say
/// why (no space, and which segment) and leave no `.building` file. Then grow the disks,
/// restart every node, and read every acknowledged write back.
#[test]
fn full_disks_stop_the_nodes_with_a_clear_error_and_lose_no_acknowledged_write() {
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

    let acked = write_until_refused(&bases);
    assert!(acked > 0);
    // Without a quorum of nodes that can write, no write is acknowledged: at least two stopped.
    let mut stopped = Vec::new();
    for _ in 0..100 {
        stopped = cluster.exited();
        if stopped.len() >= 2 {
            break;
        }
        wait_ms(100);
    }
    assert!(stopped.len() >= 2, "nodes still running: {stopped:?}");
    for id in 1..=3u64 {
        let log = cluster.log(id);
        if stopped
            .iter()
            .any(|s| s.starts_with(&format!("node {id} ")))
        {
            assert!(
                log.contains("No space left on device") && log.contains(".wal"),
                "node {id} stopped without naming the cause and the file:\n{log}"
            );
        }
        cluster.kill(id);
    }
    assert_eq!(
        building_files(&dir),
        Vec::<String>::new(),
        "half-built segments left"
    );

    for disk in &disks {
        disk.resize(4 * DISK_MIB).expect("grow the disk");
    }
    for id in 1..=3 {
        cluster.restart(id).expect("restarts once there is room");
    }
    let bases_again = bases.clone();
    cohort::node::on_one_executor("reader", move || async move {
        let mut options = ClientOptions::new(bases_again, 4);
        options.request_timeout = Duration::from_secs(20);
        let client = Client::connect_retrying(options, Duration::from_secs(20))
            .await
            .expect("the cluster answers");
        for i in 0..acked {
            let got = client.get(&key(i), Consistency::Linearizable).await;
            assert_eq!(got.expect("read"), Some(value(i).into()), "key {i}");
        }
    })
    .expect("reader executor");
    eprintln!(
        "{acked} writes of {VALUE_BYTES} B acknowledged before the disks filled; all read back"
    );
    finish(cluster);
    drop(disks);
    let _ = std::fs::remove_dir_all(&dir);
}
