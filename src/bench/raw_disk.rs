//! The raw limits the fsync-on figures of a local cluster stand against: the latency of a
//! durable 4 KiB write on the disk under the data folder, made as the WALs make theirs (one
//! O_DIRECT | O_DSYNC write, or where the file system refuses O_DIRECT a write and an
//! fdatasync), for one writer alone and for as many writers at once as the cluster has WALs
//! (one per core of each node, on that disk).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Condvar, Mutex};

use serde::Serialize;

/// Writes per writer in a measurement: 200 take about 15 ms alone, 30 ms shared.
pub const ROUNDS: usize = 200;

/// How a probe makes its writes durable: as the WALs do with fsync on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SyncMethod {
    /// Each write opened O_DIRECT | O_DSYNC: durable when it returns.
    #[serde(rename = "O_DIRECT | O_DSYNC write")]
    Direct,
    /// The file system refuses O_DIRECT: a write to the page cache, then fdatasync.
    #[serde(rename = "write + fdatasync")]
    Fdatasync,
}

/// Median latencies of a durable 4 KiB write in one folder (named as in a JSON report; the
/// names say fdatasync, as they did before the probe wrote as the WALs do).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RawFdatasync {
    /// One writer alone.
    #[serde(rename = "raw_fdatasync_us")]
    pub alone_us: u64,
    /// Each of `writers` writers at once, each on its own file.
    #[serde(rename = "raw_fdatasync_shared_us")]
    pub shared_us: u64,
    #[serde(rename = "raw_fdatasync_shared_writers")]
    pub writers: usize,
    #[serde(rename = "raw_sync_method")]
    pub method: SyncMethod,
    /// Whether the nodes sync at all: with `--sync never` the limit is not in play.
    #[serde(rename = "raw_sync_in_play")]
    pub in_play: bool,
}

impl RawFdatasync {
    /// Measures both, [`ROUNDS`] writes per writer, in `dir`; the files are removed afterwards.
    /// `writers`: the WALs that will share the disk (one per core of each local node);
    /// `in_play`: whether they sync.
    pub fn measure(dir: &Path, writers: usize, in_play: bool) -> io::Result<RawFdatasync> {
        let rounds = ROUNDS;
        let method = method_in(dir);
        let alone_us = median(writes_micros(dir, 0, rounds, method, &StartGate::open())?);
        let gate = StartGate::default();
        let shared = std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(writers);
            for writer in 0..writers {
                let gate = &gate;
                let spawned = std::thread::Builder::new()
                    .name(format!("raw-fdatasync-{writer}"))
                    .spawn_scoped(scope, move || {
                        writes_micros(dir, writer, rounds, method, gate)
                    });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        // Those started see the gate called off and go.
                        gate.call_off();
                        return Err(io::Error::new(
                            error.kind(),
                            format!("starting writer {} of {writers}: {error}", writer + 1),
                        ));
                    }
                }
            }
            gate.open_when_ready(writers);
            let mut all = Vec::with_capacity(writers * rounds);
            let mut first_error = None;
            for handle in handles {
                match handle.join().expect("a probe thread panicked") {
                    Ok(micros) => all.extend(micros),
                    Err(error) => first_error = first_error.or(Some(error)),
                }
            }
            first_error.map_or(Ok(all), Err)
        })?;
        Ok(RawFdatasync {
            alone_us,
            shared_us: median(shared),
            writers,
            method,
            in_play,
        })
    }

    /// What a report prints after "raw limit".
    pub fn words(&self) -> String {
        let method = match self.method {
            SyncMethod::Direct => "O_DIRECT | O_DSYNC write",
            SyncMethod::Fdatasync => "write + fdatasync (the file system refuses O_DIRECT)",
        };
        let not_in_play = if self.in_play {
            ""
        } else {
            "; not in play: the nodes do not sync"
        };
        format!(
            "4 KiB {method} in the data folder (as the WALs sync): {} µs alone, {} µs each \
             with {} writers at once (the local nodes' WALs, one per core; medians of {ROUNDS} \
             each){not_in_play}",
            self.alone_us, self.shared_us, self.writers
        )
    }
}

/// Where the writers of a shared measurement wait until all of them are ready, so that
/// their syncs overlap. Unlike a `Barrier` of a fixed count, it can be called off (a writer
/// that could not be started) and then lets every waiting writer go.
#[derive(Default)]
struct StartGate {
    /// Writers ready, and whether they may start (`Some(false)`: called off).
    state: Mutex<(usize, Option<bool>)>,
    changed: Condvar,
}

impl StartGate {
    /// A gate already open: for a writer alone.
    fn open() -> StartGate {
        StartGate {
            state: Mutex::new((0, Some(true))),
            changed: Condvar::new(),
        }
    }

    /// A writer is ready (or failed: it counts, so no one waits for it); waits for the
    /// gate and returns whether to start.
    fn arrive(&self) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        state.0 += 1;
        self.changed.notify_all();
        loop {
            if let Some(go) = state.1 {
                return go;
            }
            state = self.changed.wait(state).expect("not poisoned");
        }
    }

    /// Opens the gate once `writers` have arrived.
    fn open_when_ready(&self, writers: usize) {
        let mut state = self.state.lock().expect("not poisoned");
        while state.0 < writers && state.1.is_none() {
            state = self.changed.wait(state).expect("not poisoned");
        }
        state.1.get_or_insert(true);
        self.changed.notify_all();
    }

    fn call_off(&self) {
        self.state.lock().expect("not poisoned").1 = Some(false);
        self.changed.notify_all();
    }
}

/// How the WALs in `dir` would sync: O_DIRECT where the store's probe at open finds the file
/// system takes it, write + fdatasync where it refuses it or the probe cannot tell.
fn method_in(dir: &Path) -> SyncMethod {
    match crate::wal::takes_direct_io(dir) {
        Ok(()) => SyncMethod::Direct,
        Err(_) => SyncMethod::Fdatasync,
    }
}

/// Microseconds of each of `rounds` durable writes of 4 KiB at the next offset of a
/// pre-zeroed file, made by `method`, by writer `writer` in `dir`, timed once `start` opens.
/// The file is removed, whatever failed.
fn writes_micros(
    dir: &Path,
    writer: usize,
    rounds: usize,
    method: SyncMethod,
    start: &StartGate,
) -> io::Result<Vec<u64>> {
    const CHUNK_BYTES: usize = 4096;
    let path = dir.join(format!("raw-fdatasync-{writer}.probe"));
    let prepared = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|file| {
            file.write_all_at(&vec![0u8; CHUNK_BYTES * rounds], 0)?;
            file.sync_all()?;
            match method {
                SyncMethod::Fdatasync => Ok(file),
                SyncMethod::Direct => OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                    .open(&path),
            }
        });
    // Every writer arrives, failed or not, so none waits forever.
    let go = start.arrive();
    let timed = prepared.and_then(|file| {
        if !go {
            return Err(io::Error::other("the measurement was called off"));
        }
        // O_DIRECT takes a buffer aligned to the block.
        let buffer = vec![0xA5u8; 2 * CHUNK_BYTES];
        let aligned = buffer.as_ptr().align_offset(CHUNK_BYTES);
        let chunk = &buffer[aligned..aligned + CHUNK_BYTES];
        let mut micros = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let begun = crate::clock::now();
            file.write_all_at(chunk, (round * CHUNK_BYTES) as u64)?;
            if method == SyncMethod::Fdatasync {
                file.sync_data()?;
            }
            micros.push(begun.elapsed().as_micros() as u64);
        }
        Ok(micros)
    });
    match std::fs::remove_file(&path) {
        Err(error) if timed.is_ok() && error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => timed,
    }
}

fn median(mut micros: Vec<u64>) -> u64 {
    micros.sort_unstable();
    micros.get(micros.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cohort-raw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Goal: a writer that cannot open its file fails the measurement instead of leaving the
    /// others waiting for it for ever, and no probe file is left behind. Method: a folder
    /// where writer 1's file would go.
    #[test]
    fn a_writer_that_cannot_open_its_file_fails_the_measurement_at_once() {
        let dir = fresh_dir("unopened");
        std::fs::create_dir(dir.join("raw-fdatasync-1.probe")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.clone();
        std::thread::spawn(move || tx.send(RawFdatasync::measure(&path, 3, true).map(|_| ())));
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the measurement hung");
        assert!(result.is_err(), "{result:?}");
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["raw-fdatasync-1.probe"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_writer_measures_and_removes_its_file() {
        let dir = fresh_dir("measured");
        let raw = RawFdatasync::measure(&dir, 2, true).unwrap();
        assert_eq!(raw.writers, 2);
        assert!(raw.alone_us > 0 && raw.shared_us > 0, "{raw:?}");
        assert!(!raw.words().contains("not in play"), "{}", raw.words());
        let unsynced = RawFdatasync::measure(&dir, 1, false).unwrap();
        assert!(
            unsynced.words().contains("not in play"),
            "{}",
            unsynced.words()
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
