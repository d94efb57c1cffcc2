//! WAL benchmark: the disk's raw limits and the WAL's figures, measured in one run and printed
//! side by side with their ratios. Files go to `COHORT_BENCH_DIR` or the system temp dir
//! (which must be on the disk you care about). Run: `cargo bench --bench wal`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::wal::{FileStore, MemStorage, SyncMode, Wal, WalConfig};
use glommio::{LocalExecutorBuilder, Placement};

const MIB: usize = 1 << 20;

#[allow(clippy::disallowed_methods)] // a benchmark reads the wall clock; nothing else may
fn now() -> Instant {
    Instant::now()
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("COHORT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("cohort-wal-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn prezeroed(path: &Path, size_bytes: usize) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("raw file");
    let zeros = vec![0u8; MIB];
    for at in (0..size_bytes).step_by(MIB) {
        file.write_all_at(&zeros, at as u64).expect("zero");
    }
    file.sync_all().expect("sync");
    file
}

/// The disk's limits: write `chunk_bytes` at the next offset of a pre-zeroed file, fdatasync,
/// repeat. Returns (mean seconds per write+sync, MB/s).
fn raw_write_sync(dir: &Path, chunk_bytes: usize, rounds: usize) -> (f64, f64) {
    let file = prezeroed(&dir.join("raw.bin"), chunk_bytes * rounds);
    let chunk = vec![0xA5u8; chunk_bytes];
    let start = now();
    for round in 0..rounds {
        file.write_all_at(&chunk, (round * chunk_bytes) as u64)
            .expect("write");
        file.sync_data().expect("fdatasync");
    }
    let secs = start.elapsed().as_secs_f64();
    (
        secs / rounds as f64,
        (chunk_bytes * rounds) as f64 / secs / 1e6,
    )
}

/// The same 4 KiB write + fdatasync, with the fdatasync issued through the executor's
/// io_uring as the WAL issues it (the kernel runs it on an io-wq worker thread, so each one
/// also pays a thread hand-off and wake-up): the limit for a loop that must not block.
/// Returns mean seconds per write+sync.
async fn raw_write_uring_sync(dir: &Path, chunk_bytes: usize, rounds: usize) -> f64 {
    let path = dir.join("raw-uring.bin");
    let file = prezeroed(&path, chunk_bytes * rounds);
    let uring = glommio::io::BufferedFile::open(&path)
        .await
        .expect("glommio open");
    let chunk = vec![0xA5u8; chunk_bytes];
    let start = now();
    for round in 0..rounds {
        file.write_all_at(&chunk, (round * chunk_bytes) as u64)
            .expect("write");
        uring.fdatasync().await.expect("fdatasync");
    }
    let secs = start.elapsed().as_secs_f64();
    uring.close().await.expect("close");
    secs / rounds as f64
}

/// memcpy into an already-faulted buffer, MB/s.
fn raw_memcpy(chunk_bytes: usize, total_bytes: usize) -> f64 {
    let mut target = vec![1u8; total_bytes];
    let chunk = vec![0x5Au8; chunk_bytes];
    let start = now();
    for at in (0..total_bytes).step_by(chunk_bytes) {
        target[at..at + chunk_bytes].copy_from_slice(&chunk);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&target);
    total_bytes as f64 / secs / 1e6
}

async fn open_wal(dir: &Path, name: &str, segment_bytes: u64) -> Wal<FileStore> {
    let store = FileStore::open(dir.join(name), SyncMode::IoUring).expect("store");
    Wal::open(store, WalConfig { segment_bytes })
        .await
        .expect("open")
}

/// Unsynced appends of one entry each to one group: appends/s.
async fn wal_unsynced(dir: &Path, entry_bytes: usize, appends: u64) -> (f64, f64) {
    let mut wal = open_wal(dir, &format!("unsynced-{entry_bytes}"), 64 * MIB as u64).await;
    let entry = vec![0x42u8; entry_bytes];
    let start = now();
    for index in 1..=appends {
        wal.append_entries(1, index, &[(1, &entry)])
            .expect("append");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(wal.stats().rotations, 0, "the run must fit one segment");
    let per_sec = appends as f64 / secs;
    (per_sec, per_sec * entry_bytes as f64 / 1e6)
}

/// The same appends on the in-memory storage: the WAL's own cost without the shared map's
/// write-protect faults (one per 4 KiB page on its first write after writeback).
async fn mem_unsynced(entry_bytes: usize, appends: u64) -> f64 {
    let config = WalConfig {
        segment_bytes: 64 * MIB as u64,
    };
    let mut wal = Wal::open(MemStorage::new(), config).await.expect("open");
    let entry = vec![0x42u8; entry_bytes];
    let start = now();
    for index in 1..=appends {
        wal.append_entries(1, index, &[(1, &entry)])
            .expect("append");
    }
    appends as f64 / start.elapsed().as_secs_f64()
}

/// Synced batches: `groups` groups × `per_group` entries of `entry_bytes`, then one sync.
/// Returns (mean seconds per batch, durable entries/s, durable payload MB/s).
async fn wal_group_commit(
    dir: &Path,
    groups: u64,
    per_group: u64,
    entry_bytes: usize,
    budget: Duration,
) -> (f64, f64, f64) {
    let name = format!("commit-{groups}x{per_group}x{entry_bytes}");
    let mut wal = open_wal(dir, &name, 64 * MIB as u64).await;
    // Shared bytes, as the node hands its entries over (the WAL may keep them by reference
    // until the sync's vectored write instead of copying them).
    let entry = Bytes::from(vec![0x17u8; entry_bytes]);
    let batch: Vec<(u64, Bytes)> = (0..per_group).map(|_| (1, entry.clone())).collect();
    let batch_bytes = (groups * per_group) as usize * (entry_bytes + 72);
    let batches_max = (60 * MIB / batch_bytes) as u64;
    let start = now();
    let mut batches = 0u64;
    while batches < batches_max && start.elapsed() < budget {
        for group in 0..groups {
            wal.append_entries(group, batches * per_group + 1, &batch)
                .expect("append");
        }
        let report = wal.sync().await.expect("sync");
        assert_eq!(report.groups.len(), groups as usize);
        batches += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(wal.stats().rotations, 0, "the run must fit one segment");
    let entries = (batches * groups * per_group) as f64;
    (
        secs / batches as f64,
        entries / secs,
        entries * entry_bytes as f64 / secs / 1e6,
    )
}

fn line(what: &str, figure: String, limit: String, ratio: f64) {
    println!("{what:<52} {figure:>16}   limit {limit:>16}   ratio {ratio:>6.2}");
}

fn main() {
    let dir = bench_dir();
    println!(
        "WAL benchmark in {} (tmp files, removed at the end)",
        dir.display()
    );
    let (fsync_secs, _) = raw_write_sync(&dir, 4096, 400);
    let (batch_secs_raw, seq_mbps) = raw_write_sync(&dir, 256 * 1024, 100);
    let memcpy_small = raw_memcpy(128, 64 * MIB);
    let memcpy_large = raw_memcpy(64 * 1024, 64 * MIB);
    println!(
        "raw: 4 KiB write+fdatasync {:.0} µs ({:.0}/s); 256 KiB write+fdatasync {:.0} µs = {:.0} MB/s; \
         memcpy 128 B {:.0} MB/s, 64 KiB {:.0} MB/s",
        fsync_secs * 1e6,
        1.0 / fsync_secs,
        batch_secs_raw * 1e6,
        seq_mbps,
        memcpy_small,
        memcpy_large
    );
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct; failing (not root) is fine with small io_memory.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .make()
        .expect("glommio executor");
    let budget = Duration::from_millis(700);
    executor.run(async {
        let (appends, mbps) = wal_unsynced(&dir, 64, 400_000).await;
        line(
            "unsynced appends, 1 × 64 B entry each (appends/s)",
            format!("{appends:.0}"),
            format!("{:.0}", memcpy_small * 1e6 / 64.0),
            appends / (memcpy_small * 1e6 / 64.0),
        );
        let _ = mbps;
        let in_memory = mem_unsynced(64, 400_000).await;
        line(
            "  same on MemStorage, no map faults (appends/s)",
            format!("{in_memory:.0}"),
            format!("{appends:.0}"),
            in_memory / appends,
        );
        let (_, mbps) = wal_unsynced(&dir, 64 * 1024, 700).await;
        line(
            "unsynced appends, 64 KiB entries (MB/s vs memcpy)",
            format!("{mbps:.0}"),
            format!("{memcpy_large:.0}"),
            mbps / memcpy_large,
        );
        let uring_secs = raw_write_uring_sync(&dir, 4096, 400).await;
        let uring_batch_secs = raw_write_uring_sync(&dir, 256 * 1024, 100).await;
        let uring_mbps = 256.0 * 1024.0 / uring_batch_secs / 1e6;
        println!(
            "raw: 4 KiB write + fdatasync through io_uring {:.0} µs ({:.2}× the blocking one); \
             256 KiB {:.0} µs = {:.0} MB/s",
            uring_secs * 1e6,
            uring_secs / fsync_secs,
            uring_batch_secs * 1e6,
            uring_mbps
        );
        for (groups, per_group, bytes, what) in [
            (64, 1, 128, "group commit 64 groups × 1 × 128 B"),
            (1, 64, 128, "group commit 1 group × 64 × 128 B"),
            (64, 4, 1024, "group commit 64 groups × 4 × 1 KiB"),
            (1, 256, 1024, "group commit 1 group × 256 × 1 KiB"),
            (1, 4, 64 * 1024, "group commit 1 group × 4 × 64 KiB"),
        ] {
            let (secs, entries, mbps) =
                wal_group_commit(&dir, groups, per_group, bytes, budget).await;
            line(
                &format!("{what}: batch latency (µs)"),
                format!("{:.0}", secs * 1e6),
                format!("{:.0}", fsync_secs * 1e6),
                secs / fsync_secs,
            );
            line(
                "  same, against the io_uring write + fdatasync (µs)",
                format!("{:.0}", secs * 1e6),
                format!("{:.0}", uring_secs * 1e6),
                secs / uring_secs,
            );
            line(
                &format!("{what}: durable entries/s"),
                format!("{entries:.0}"),
                format!("{:.0}", groups as f64 * per_group as f64 / fsync_secs),
                entries * fsync_secs / (groups * per_group) as f64,
            );
            if bytes >= 1024 {
                line(
                    &format!("{what}: durable MB/s"),
                    format!("{mbps:.0}"),
                    format!("{seq_mbps:.0}"),
                    mbps / seq_mbps,
                );
                line(
                    "  same, against 256 KiB writes + io_uring fdatasync",
                    format!("{mbps:.0}"),
                    format!("{uring_mbps:.0}"),
                    mbps / uring_mbps,
                );
            }
        }
    });
    fs::remove_dir_all(&dir).expect("cleanup");
}
