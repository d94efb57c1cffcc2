//! WAL benchmark: the disk's raw limits and the WAL's figures, measured in one run and printed
//! side by side with their ratios. Files go to `COHORT_BENCH_DIR` or the system temp dir
//! (which must be on the disk you care about). Run: `cargo bench --bench wal`;
//! `COHORT_BENCH_ONLY=<text>` runs only the group-commit shapes whose name holds the text
//! (`COHORT_BENCH_ONLY="1 KiB"`), for profiling, or only the timing of an open
//! (`COHORT_BENCH_ONLY=recovery`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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

/// The same writes through a descriptor opened O_DIRECT | O_DSYNC: each goes from this
/// buffer to the device and returns once durable, the kind of write the WAL's syncs issue
/// (through io_uring). Returns mean seconds per write.
fn raw_direct_write(dir: &Path, chunk_bytes: usize, rounds: usize) -> f64 {
    let path = dir.join("raw-direct.bin");
    drop(prezeroed(&path, chunk_bytes * rounds));
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .expect("O_DIRECT open");
    // O_DIRECT wants a block-aligned buffer: the aligned part of a bigger one.
    let mut backing = vec![0xA5u8; chunk_bytes + 4096];
    let skip = backing.as_ptr().align_offset(4096);
    let chunk = &mut backing[skip..skip + chunk_bytes];
    let start = now();
    for round in 0..rounds {
        file.write_all_at(chunk, (round * chunk_bytes) as u64)
            .expect("O_DIRECT write");
    }
    start.elapsed().as_secs_f64() / rounds as f64
}

/// The same O_DIRECT | O_DSYNC writes issued through the executor's io_uring (glommio's
/// `DmaFile`), as the WAL issues them, `depth` of them in flight at once: the limit for a
/// loop that must not block. Returns mean seconds per write.
async fn raw_direct_uring_write(
    dir: &Path,
    chunk_bytes: usize,
    rounds: usize,
    depth: usize,
) -> f64 {
    let path = dir.join("raw-direct-uring.bin");
    drop(prezeroed(&path, chunk_bytes * rounds));
    let file = glommio::io::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(&path)
        .await
        .expect("O_DIRECT open through glommio");
    let file = std::rc::Rc::new(file);
    let mut chunk = glommio::allocate_dma_buffer(chunk_bytes);
    chunk.as_bytes_mut().fill(0xA5);
    let chunk = std::rc::Rc::new(chunk);
    let start = now();
    let mut in_flight = std::collections::VecDeque::new();
    let finish = |written: glommio::Result<usize, ()>| {
        assert_eq!(
            written.expect("O_DIRECT write through io_uring"),
            chunk_bytes
        );
    };
    for round in 0..rounds {
        if in_flight.len() == depth {
            finish(in_flight.pop_front().expect("a write in flight").await);
        }
        let (file, chunk) = (std::rc::Rc::clone(&file), std::rc::Rc::clone(&chunk));
        in_flight.push_back(glommio::spawn_local(async move {
            file.write_rc_at(chunk, (round * chunk_bytes) as u64).await
        }));
    }
    while let Some(write) = in_flight.pop_front() {
        finish(write.await);
    }
    let secs = start.elapsed().as_secs_f64() / rounds as f64;
    std::rc::Rc::try_unwrap(file)
        .unwrap_or_else(|_| panic!("a write still holds the file"))
        .close()
        .await
        .expect("close");
    secs
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// memcpy of `chunk_bytes` at a time, `total_bytes` in all, into an already-faulted buffer of
/// `MEMCPY_TARGET_BYTES` it goes round (about one busy turn's staging run, as the WAL's
/// appends between syncs reuse theirs), MB/s.
fn raw_memcpy(chunk_bytes: usize, total_bytes: usize) -> f64 {
    let mut target = vec![1u8; MEMCPY_TARGET_BYTES];
    let chunk = vec![0x5Au8; chunk_bytes];
    let start = now();
    for at in (0..total_bytes).step_by(chunk_bytes) {
        let at = at % (MEMCPY_TARGET_BYTES - MEMCPY_TARGET_BYTES % chunk_bytes);
        target[at..at + chunk_bytes].copy_from_slice(&chunk);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&target);
    total_bytes as f64 / secs / 1e6
}

const MEMCPY_TARGET_BYTES: usize = MIB;

/// crc32 (the WAL's checksum) over 64 KiB chunks, `total_bytes` in all, of a buffer of
/// `MEMCPY_TARGET_BYTES` in cache (the WAL checksums a record it has just written), MB/s.
fn raw_crc(total_bytes: usize) -> f64 {
    let data = vec![0x5Au8; MEMCPY_TARGET_BYTES];
    let start = now();
    let mut sum = 0u32;
    for _ in 0..total_bytes / MEMCPY_TARGET_BYTES {
        for chunk in data.chunks(64 * 1024) {
            sum ^= crc32fast::hash(std::hint::black_box(chunk));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    total_bytes as f64 / secs / 1e6
}

async fn open_wal(dir: &Path, name: &str, mode: SyncMode, segment_bytes: u64) -> Wal<FileStore> {
    let store = FileStore::open(dir.join(name), mode).expect("store");
    assert_eq!(
        store.mode(),
        mode,
        "O_DIRECT refused in {}: the figures would not be the node's",
        dir.display()
    );
    Wal::open(store, WalConfig { segment_bytes })
        .await
        .expect("open")
}

/// Unsynced appends of one entry each to one group: (appends/s, MB/s). With `sync_every`,
/// a sync (not timed) follows every that many appends, as the node syncs every loop turn:
/// the appends then reuse a warm staging buffer. Without, the whole run is one staged run
/// whose buffer grows into fresh memory.
async fn wal_unsynced(
    dir: &Path,
    entry_bytes: usize,
    appends: u64,
    sync_every: Option<u64>,
) -> (f64, f64) {
    let mut wal = open_wal(
        dir,
        &format!("unsynced-{entry_bytes}-{sync_every:?}"),
        SyncMode::Direct,
        64 * MIB as u64,
    )
    .await;
    let entry = vec![0x42u8; entry_bytes];
    let mut appending = Duration::ZERO;
    let mut index = 1;
    while index <= appends {
        let round_end = sync_every.map_or(appends, |every| (index + every - 1).min(appends));
        let start = now();
        for index in index..=round_end {
            wal.append_entries(1, index, &[(1, &entry)])
                .expect("append");
        }
        appending += start.elapsed();
        if sync_every.is_some() {
            wal.sync().await.expect("sync");
        }
        index = round_end + 1;
    }
    assert_eq!(wal.stats().rotations, 0, "the run must fit one segment");
    let per_sec = appends as f64 / appending.as_secs_f64();
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

/// Synced batches: `groups` groups × `per_group` entries of `entry_bytes`, then one sync,
/// waited for.
async fn wal_group_commit(
    dir: &Path,
    (groups, per_group, entry_bytes): (u64, u64, usize),
    mode: SyncMode,
    budget: Duration,
) -> WalRun {
    let name = format!("commit-{groups}x{per_group}x{entry_bytes}");
    let _ = fs::remove_dir_all(dir.join(&name));
    let mut wal = open_wal(dir, &name, mode, 64 * MIB as u64).await;
    // Shared bytes, as the node hands its entries over (the WAL may keep them by reference
    // until the sync's vectored write instead of copying them).
    let entry = Bytes::from(vec![0x17u8; entry_bytes]);
    let batch: Vec<(u64, Bytes)> = (0..per_group).map(|_| (1, entry.clone())).collect();
    let batch_bytes = (groups * per_group) as usize * (entry_bytes + 72);
    let batches_max = (60 * MIB / batch_bytes) as u64;
    let start = now();
    let mut batches = 0u64;
    let mut staging = Duration::ZERO;
    while batches < batches_max && start.elapsed() < budget {
        let batch_start = now();
        for group in 0..groups {
            wal.append_entries(group, batches * per_group + 1, &batch)
                .expect("append");
        }
        let ticket = wal.begin_sync().expect("begin sync");
        staging += batch_start.elapsed();
        let report = wal.finish_sync(ticket.wait().await).expect("sync");
        assert_eq!(report.groups.len(), groups as usize);
        batches += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(wal.stats().rotations, 0, "the run must fit one segment");
    let entries = (batches * groups * per_group) as f64;
    WalRun {
        batch_secs: secs / batches as f64,
        staging_secs: staging.as_secs_f64() / batches as f64,
        entries_per_sec: entries / secs,
        mbps: entries * entry_bytes as f64 / secs / 1e6,
    }
}

/// The same batches with the next one staged while the last one's sync is in flight, as the
/// node's loop does: at most two syncs in flight, finished in order. Returns durable MB/s.
async fn wal_pipelined(
    dir: &Path,
    (groups, per_group, entry_bytes): (u64, u64, usize),
    budget: Duration,
) -> f64 {
    let name = format!("pipelined-{groups}x{per_group}x{entry_bytes}");
    let _ = fs::remove_dir_all(dir.join(&name));
    let mut wal = open_wal(dir, &name, SyncMode::Direct, 64 * MIB as u64).await;
    let entry = Bytes::from(vec![0x17u8; entry_bytes]);
    let batch: Vec<(u64, Bytes)> = (0..per_group).map(|_| (1, entry.clone())).collect();
    // A batch staged while a sync is in flight starts in a fresh block: up to 4 KiB more.
    let batch_bytes = (groups * per_group) as usize * (entry_bytes + 72) + 4096;
    let batches_max = (60 * MIB / batch_bytes) as u64;
    let start = now();
    let mut in_flight = None;
    let mut batches = 0u64;
    while batches < batches_max && start.elapsed() < budget {
        for group in 0..groups {
            wal.append_entries(group, batches * per_group + 1, &batch)
                .expect("append");
        }
        let ticket = wal.begin_sync().expect("begin sync");
        let sync = glommio::spawn_local(ticket.wait());
        if let Some(last) = in_flight.replace(sync) {
            wal.finish_sync(last.await).expect("sync");
        }
        batches += 1;
    }
    if let Some(last) = in_flight {
        wal.finish_sync(last.await).expect("sync");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(wal.stats().rotations, 0, "the run must fit one segment");
    (batches * groups * per_group) as f64 * entry_bytes as f64 / secs / 1e6
}

/// The WAL's figures for one group-commit shape.
struct WalRun {
    /// Mean seconds per batch: appends, sync, until durable.
    batch_secs: f64,
    /// Mean seconds per batch on the loop before the sync is handed to the kernel: the
    /// appends and `begin_sync` (the copies, checksums and index updates).
    staging_secs: f64,
    /// Durable entries per second.
    entries_per_sec: f64,
    /// Durable payload MB/s.
    mbps: f64,
}

fn line(what: &str, figure: String, limit: String, ratio: f64) {
    println!("{what:<52} {figure:>16}   limit {limit:>16}   ratio {ratio:>6.2}");
}

/// Rounds per group-commit shape: each runs the WAL beside fresh raw runs, and the figures
/// printed are medians of the rounds (this disk's speed drifts by 2× within a minute).
const ROUNDS: usize = 5;

/// One round of a group-commit shape: the WAL's figures and the raw limits beside them.
struct Round {
    wal: WalRun,
    /// Seconds per 4 KiB write + fdatasync: "one raw fdatasync".
    fsync_secs: f64,
    /// Seconds per 4 KiB O_DIRECT | O_DSYNC write through io_uring: one raw sync as a loop
    /// that must not block can issue it.
    fsync_uring_secs: f64,
    /// Seconds per write + fdatasync of the batch's payload bytes.
    batch_secs: f64,
    /// Seconds per O_DIRECT | O_DSYNC write of the batch's payload bytes.
    direct_secs: f64,
    /// The same through io_uring.
    direct_uring_secs: f64,
    /// The same with two writes in flight at once.
    direct_uring2_secs: f64,
    /// The WAL's durable MB/s with the next batch staged while a sync is in flight.
    pipelined_mbps: f64,
    /// The WAL on the fallback for file systems without O_DIRECT (pwrite + io_uring
    /// fdatasync).
    fallback: WalRun,
}

fn main() {
    let dir = bench_dir();
    println!(
        "WAL benchmark in {} (tmp files, removed at the end)",
        dir.display()
    );
    let memcpy_small = raw_memcpy(128, 64 * MIB);
    let memcpy_large = raw_memcpy(64 * 1024, 64 * MIB);
    let crc = raw_crc(64 * MIB);
    println!(
        "raw: memcpy into 1 MiB 128 B at a time {memcpy_small:.0} MB/s, 64 KiB at a time \
         {memcpy_large:.0} MB/s; crc32 of 1 MiB {crc:.0} MB/s"
    );
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct. Failing (not root) only costs glommio its
    // registered buffers, which the writes then go without.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    // glommio's default io_memory (10 MiB of registered buffers), as the node's cores have:
    // the WAL's O_DIRECT writes come from there.
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("glommio executor");
    let only = std::env::var("COHORT_BENCH_ONLY").unwrap_or_default();
    executor.run(async {
        if only.is_empty() {
            unsynced(&dir, memcpy_small, memcpy_large).await;
        }
        let wanted = |name: &str| name.contains(&only);
        if wanted("recovery") {
            recovery(&dir, crc).await;
        }
        let shapes = [
            (64, 1, 128, "64 groups × 1 × 128 B"),
            (1, 64, 128, "1 group × 64 × 128 B"),
            (64, 4, 1024, "64 groups × 4 × 1 KiB"),
            (1, 256, 1024, "1 group × 256 × 1 KiB"),
            (1, 4, 64 * 1024, "1 group × 4 × 64 KiB"),
        ];
        if shapes.iter().any(|shape| wanted(shape.3)) {
            println!(
                "group commit: medians of {ROUNDS} rounds; each round runs the WAL beside fresh \
                 raw runs, and a ratio is the median of the rounds' ratios"
            );
        }
        for (groups, per_group, bytes, what) in shapes {
            if !wanted(what) {
                continue;
            }
            let batch_bytes = (groups * per_group) as usize * bytes;
            let raw_rounds = (16 * MIB / batch_bytes).clamp(20, 400);
            let mut rounds = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let fsync_secs = raw_write_sync(&dir, 4096, 100).0;
                let fsync_uring_secs = raw_direct_uring_write(&dir, 4096, 100, 1).await;
                let batch_secs = raw_write_sync(&dir, batch_bytes, raw_rounds).0;
                let direct_secs = raw_direct_write(&dir, batch_bytes, raw_rounds);
                let direct_uring_secs =
                    raw_direct_uring_write(&dir, batch_bytes, raw_rounds, 1).await;
                let direct_uring2_secs =
                    raw_direct_uring_write(&dir, batch_bytes, raw_rounds, 2).await;
                let shape = (groups, per_group, bytes);
                let budget = Duration::from_millis(250);
                let wal = wal_group_commit(&dir, shape, SyncMode::Direct, budget).await;
                let fallback = wal_group_commit(&dir, shape, SyncMode::IoUring, budget).await;
                let pipelined_mbps = wal_pipelined(&dir, shape, budget).await;
                rounds.push(Round {
                    wal,
                    fallback,
                    pipelined_mbps,
                    direct_uring_secs,
                    direct_uring2_secs,
                    fsync_secs,
                    fsync_uring_secs,
                    batch_secs,
                    direct_secs,
                });
            }
            let copy_and_crc_secs =
                batch_bytes as f64 / (memcpy_large * 1e6) + batch_bytes as f64 / (crc * 1e6);
            report_group_commit(
                what,
                groups * per_group,
                batch_bytes,
                copy_and_crc_secs,
                &rounds,
            );
        }
    });
    fs::remove_dir_all(&dir).expect("cleanup");
}

/// Appends without syncing: small entries against memcpy, and big ones.
async fn unsynced(dir: &Path, memcpy_small: f64, memcpy_large: f64) {
    let small_limit = memcpy_small * 1e6 / 64.0;
    let (appends, _) = wal_unsynced(dir, 64, 400_000, Some(SYNC_EVERY)).await;
    line(
        "unsynced appends, 1 × 64 B entry each (appends/s)",
        format!("{appends:.0}"),
        format!("{small_limit:.0}"),
        appends / small_limit,
    );
    println!("  (timed between syncs, one every {SYNC_EVERY} appends, not timed; limit: memcpy)");
    let (one_run, _) = wal_unsynced(dir, 64, 400_000, None).await;
    line(
        "  same, never synced: all 400 000 in one run (appends/s)",
        format!("{one_run:.0}"),
        format!("{appends:.0}"),
        one_run / appends,
    );
    let in_memory = mem_unsynced(64, 400_000).await;
    line(
        "  same on MemStorage, no file (appends/s)",
        format!("{in_memory:.0}"),
        format!("{appends:.0}"),
        in_memory / appends,
    );
    let (_, mbps) = wal_unsynced(dir, 64 * 1024, 700, Some(16)).await;
    line(
        "unsynced appends, 64 KiB entries (MB/s vs memcpy)",
        format!("{mbps:.0}"),
        format!("{memcpy_large:.0}"),
        mbps / memcpy_large,
    );
    println!("  (timed between syncs, one every 16 appends, not timed)");
}

/// Full segments of the log whose opening is timed (the active one follows them), and their
/// size.
const RECOVERY_SEGMENTS: u64 = 4;
const RECOVERY_SEGMENT_BYTES: u64 = 64 << 20;

/// Opening a WAL of `RECOVERY_SEGMENTS` full segments and a nearly empty active one (1 KiB
/// entries of 8 groups): every segment synced, its cached pages dropped, and read once from
/// the device to check it can (`Storage::check_readable`), then scanned with every record's
/// checksum verified. Beside it, the same files read once with `pread` from the device (their
/// cached pages dropped first), the least an open can cost.
async fn recovery(dir: &Path, crc_mbps: f64) {
    let name = "recovery";
    {
        let mut wal = open_wal(dir, name, SyncMode::Direct, RECOVERY_SEGMENT_BYTES).await;
        let payload = vec![0x5Au8; 1024];
        let mut index = 1;
        while wal.stats().rotations < RECOVERY_SEGMENTS {
            for group in 0..8 {
                wal.append_entries(group, index, &[(1, &payload[..])])
                    .expect("append");
            }
            index += 1;
            if index % 64 == 0 {
                wal.sync().await.expect("sync");
            }
        }
        wal.sync().await.expect("sync");
    }
    let files: Vec<PathBuf> = fs::read_dir(dir.join(name))
        .expect("recovery dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    let total_bytes: u64 = files
        .iter()
        .map(|f| fs::metadata(f).expect("size").len())
        .sum();
    // The open syncs each segment and drops its cached pages before reading it (pages the
    // kernel kept after a failed writeback are not what the device holds): it always reads
    // from the device, so the limit is a read of the files from the device too.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        drop_cached(&files);
        let raw_cold = read_all(&files);
        rounds.push((timed_open(dir, name).await, raw_cold));
    }
    println!(
        "recovery: opening a log of {} segments of {} MiB ({} MiB; the last one nearly empty), \
         medians of 3 rounds; \
         limit: one pread of the same files from the device (crc32 alone {crc_mbps:.0} MB/s)",
        files.len(),
        RECOVERY_SEGMENT_BYTES >> 20,
        total_bytes >> 20
    );
    let mbps = |secs: f64| total_bytes as f64 / secs / 1e6;
    let wal = median(rounds.iter().map(|&(wal, _)| mbps(wal)).collect());
    let raw = median(rounds.iter().map(|&(_, raw)| mbps(raw)).collect());
    let ratio = median(rounds.iter().map(|&(wal, raw)| raw / wal).collect());
    line(
        "  open, from the device (MB/s)",
        format!("{wal:.0}"),
        format!("{raw:.0}"),
        ratio,
    );
    fs::remove_dir_all(dir.join(name)).expect("cleanup");
}

/// Seconds to open the WAL `name` (not counting its drop, which unmaps it).
async fn timed_open(dir: &Path, name: &str) -> f64 {
    let start = now();
    let wal = open_wal(dir, name, SyncMode::Direct, RECOVERY_SEGMENT_BYTES).await;
    let secs = start.elapsed().as_secs_f64();
    drop(wal);
    secs
}

/// Seconds to read `files` once, 1 MiB at a time.
fn read_all(files: &[PathBuf]) -> f64 {
    let mut buf = vec![0u8; MIB];
    let start = now();
    for path in files {
        let file = File::open(path).expect("open");
        let mut at = 0;
        loop {
            let n = file.read_at(&mut buf, at).expect("read");
            if n == 0 {
                break;
            }
            at += n as u64;
        }
    }
    std::hint::black_box(&buf);
    start.elapsed().as_secs_f64()
}

/// Drops the cached pages of `files` (they are clean: synced), so the next read comes from
/// the device.
fn drop_cached(files: &[PathBuf]) {
    use std::os::fd::AsRawFd;
    for path in files {
        let file = File::open(path).expect("open");
        // SAFETY: posix_fadvise takes an open descriptor and plain integers.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "fadvise {}", path.display());
    }
}

/// Appends between two syncs in the unsynced figures: about one busy loop turn's worth.
const SYNC_EVERY: u64 = 4096;

/// Prints one group-commit shape: each WAL figure beside the raw limits of its rounds.
fn report_group_commit(
    what: &str,
    entries_per_batch: u64,
    batch_bytes: usize,
    copy_and_crc_secs: f64,
    rounds: &[Round],
) {
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let wal_secs = med(&|r| r.wal.batch_secs);
    let kib = batch_bytes / 1024;
    line(
        &format!("{what}: batch latency (µs)"),
        format!("{:.0}", wal_secs * 1e6),
        format!("{:.0}", med(&|r| r.fsync_secs) * 1e6),
        med(&|r| r.wal.batch_secs / r.fsync_secs),
    );
    println!("  (limit: one 4 KiB write + fdatasync)");
    line(
        "  same, against one 4 KiB O_DSYNC write through io_uring",
        format!("{:.0}", wal_secs * 1e6),
        format!("{:.0}", med(&|r| r.fsync_uring_secs) * 1e6),
        med(&|r| r.wal.batch_secs / r.fsync_uring_secs),
    );
    println!("  (O_DIRECT, as the WAL writes: how a loop that must not block makes bytes durable)");
    line(
        "  of it on the loop before the sync is issued (µs)",
        format!("{:.0}", med(&|r| r.wal.staging_secs) * 1e6),
        format!("{:.0}", copy_and_crc_secs * 1e6),
        med(&|r| r.wal.staging_secs) / copy_and_crc_secs,
    );
    println!("  (limit: one memcpy and one crc32 of the batch's payload)");
    line(
        "  same, against one write + fdatasync of the batch's payload",
        format!("{:.0}", wal_secs * 1e6),
        format!("{:.0}", med(&|r| r.batch_secs) * 1e6),
        med(&|r| r.wal.batch_secs / r.batch_secs),
    );
    line(
        &format!("{what}: durable entries/s"),
        format!("{:.0}", med(&|r| r.wal.entries_per_sec)),
        format!("{:.0}", entries_per_batch as f64 / med(&|r| r.batch_secs)),
        med(&|r| r.wal.entries_per_sec * r.batch_secs / entries_per_batch as f64),
    );
    let mbps = |secs: f64| batch_bytes as f64 / secs / 1e6;
    line(
        &format!("{what}: durable MB/s"),
        format!("{:.0}", med(&|r| r.wal.mbps)),
        format!("{:.0}", mbps(med(&|r| r.batch_secs))),
        med(&|r| r.wal.mbps / mbps(r.batch_secs)),
    );
    println!("  (limit: {kib} KiB write + fdatasync, the batch's payload, repeated)");
    line(
        "  same, against O_DIRECT | O_DSYNC writes",
        format!("{:.0}", med(&|r| r.wal.mbps)),
        format!("{:.0}", mbps(med(&|r| r.direct_secs))),
        med(&|r| r.wal.mbps / mbps(r.direct_secs)),
    );
    line(
        "  same, against O_DIRECT | O_DSYNC writes through io_uring",
        format!("{:.0}", med(&|r| r.wal.mbps)),
        format!("{:.0}", mbps(med(&|r| r.direct_uring_secs))),
        med(&|r| r.wal.mbps / mbps(r.direct_uring_secs)),
    );
    line(
        &format!("{what}, pipelined: durable MB/s"),
        format!("{:.0}", med(&|r| r.pipelined_mbps)),
        format!("{:.0}", mbps(med(&|r| r.batch_secs))),
        med(&|r| r.pipelined_mbps / mbps(r.batch_secs)),
    );
    println!(
        "  (the next batch staged while the last one's sync is in flight, as the node does; \
         limit: {kib} KiB write + fdatasync, repeated)"
    );
    line(
        "  same, against O_DIRECT | O_DSYNC io_uring writes, 2 in flight",
        format!("{:.0}", med(&|r| r.pipelined_mbps)),
        format!("{:.0}", mbps(med(&|r| r.direct_uring2_secs))),
        med(&|r| r.pipelined_mbps / mbps(r.direct_uring2_secs)),
    );
    line(
        "  the WAL on pwrite + io_uring fdatasync (no O_DIRECT)",
        format!("{:.0}", med(&|r| r.fallback.mbps)),
        format!("{:.0}", mbps(med(&|r| r.batch_secs))),
        med(&|r| r.fallback.mbps / mbps(r.batch_secs)),
    );
}
