//! The raw limit the demo's fsync-on figures stand against: 4 KiB write + fdatasync latency
//! on the disk under the data folder.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Median microseconds of `rounds` × (write 4 KiB at the next offset of a pre-zeroed file,
/// fdatasync), in `dir`. The file is removed afterwards.
pub fn fdatasync_median_micros(dir: &Path, rounds: usize) -> io::Result<u64> {
    const CHUNK_BYTES: usize = 4096;
    let path = dir.join("raw-fdatasync.probe");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all_at(&vec![0u8; CHUNK_BYTES * rounds], 0)?;
    file.sync_all()?;
    let chunk = [0xA5u8; CHUNK_BYTES];
    let mut micros = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let start = crate::clock::now();
        file.write_all_at(&chunk, (round * CHUNK_BYTES) as u64)?;
        file.sync_data()?;
        micros.push(start.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    micros.sort_unstable();
    Ok(micros.get(rounds / 2).copied().unwrap_or(0))
}
