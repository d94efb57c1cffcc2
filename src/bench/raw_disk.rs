//! The raw limits the fsync-on figures of a local cluster stand against: 4 KiB write +
//! fdatasync latency on the disk under the data folder, for one writer alone and for as
//! many writers at once as the cluster has WALs (one per core of each node, on that disk).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Barrier;

use serde::Serialize;

/// Writes per writer in a measurement: 200 take about 15 ms alone, 30 ms shared.
pub const ROUNDS: usize = 200;

/// Median latencies of 4 KiB write + fdatasync in one folder (named as in a JSON report).
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
}

impl RawFdatasync {
    /// Measures both, [`ROUNDS`] writes per writer, in `dir`; the files are removed afterwards.
    /// `writers`: the WALs that will share the disk (one per core of each local node).
    pub fn measure(dir: &Path, writers: usize) -> io::Result<RawFdatasync> {
        let rounds = ROUNDS;
        let alone_us = median(writes_micros(dir, 0, rounds, &Barrier::new(1))?);
        let barrier = Barrier::new(writers);
        let shared = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|writer| {
                    let barrier = &barrier;
                    scope.spawn(move || writes_micros(dir, writer, rounds, barrier))
                })
                .collect();
            let mut all = Vec::with_capacity(writers * rounds);
            for handle in handles {
                all.extend(handle.join().expect("a probe thread panicked")?);
            }
            Ok::<_, io::Error>(all)
        })?;
        Ok(RawFdatasync {
            alone_us,
            shared_us: median(shared),
            writers,
        })
    }

    /// What a report prints after "raw limit".
    pub fn words(&self) -> String {
        format!(
            "4 KiB write + fdatasync in the data folder: {} µs alone, {} µs each with {} \
             writers at once, as the local nodes' WALs, one per core (medians of {ROUNDS} each)",
            self.alone_us, self.shared_us, self.writers
        )
    }
}

/// Microseconds of each of `rounds` × (write 4 KiB at the next offset of a pre-zeroed file,
/// fdatasync) by writer `writer` in `dir`, timed once every writer at `start` is ready.
fn writes_micros(
    dir: &Path,
    writer: usize,
    rounds: usize,
    start: &Barrier,
) -> io::Result<Vec<u64>> {
    const CHUNK_BYTES: usize = 4096;
    let path = dir.join(format!("raw-fdatasync-{writer}.probe"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let prepared = file
        .write_all_at(&vec![0u8; CHUNK_BYTES * rounds], 0)
        .and_then(|()| file.sync_all());
    // Every writer reaches the barrier, failed or not, so none waits forever.
    start.wait();
    prepared?;
    let chunk = [0xA5u8; CHUNK_BYTES];
    let mut micros = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let begun = crate::clock::now();
        file.write_all_at(&chunk, (round * CHUNK_BYTES) as u64)?;
        file.sync_data()?;
        micros.push(begun.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(micros)
}

fn median(mut micros: Vec<u64>) -> u64 {
    micros.sort_unstable();
    micros.get(micros.len() / 2).copied().unwrap_or(0)
}
