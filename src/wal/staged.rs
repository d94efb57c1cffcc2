//! The file store's staging buffer for the page cache: a segment's records written since its
//! last sync, held in memory and handed to the file with one vectored write when the sync
//! begins. (`SyncMode::Direct` stages into the O_DIRECT write's buffer: `staged_direct.rs`.)
//!
//! The run is contiguous in the file from `start`. Most of it is owned bytes (headers,
//! prefixes, small records); big shared entry bodies are kept by reference between them, so
//! their only copy on the way to the page cache is the kernel's.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::storage::Part;

/// Shared bodies shorter than this are copied. Measured with `cargo bench --bench wal`: a
/// 256 KiB batch of 1 KiB bodies took as long or longer as iovecs (the kernel's cost per
/// iovec matches a 1 KiB copy); 64 KiB bodies gained 3–12% MB/s by reference.
pub(super) const SHARE_BYTES_MIN: usize = 16 << 10;

/// Most iovecs one `writev` takes (Linux's IOV_MAX).
const IOVECS_MAX: usize = 1024;

#[derive(Default)]
pub(super) struct Staged {
    /// File offset of the run's first byte.
    pub(super) start: usize,
    /// The owned bytes of the run, in file order, without the shared pieces.
    bytes: Vec<u8>,
    /// Shared pieces, in file order: (owned bytes of the run before it, the piece).
    shared: Vec<(usize, Bytes)>,
    shared_bytes: usize,
}

impl Staged {
    /// File offset just past the run.
    pub(super) fn end(&self) -> usize {
        self.start + self.bytes.len() + self.shared_bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.shared.is_empty()
    }

    /// A writable window onto file range `start..end`, zero where nothing was written. A run
    /// of owned bytes only may be written anywhere at or after its start (recovery zeroes a
    /// torn tail the cursor then writes over); once it holds a shared piece, only after it.
    pub(super) fn slot(&mut self, start: usize, end: usize) -> &mut [u8] {
        if self.is_empty() {
            self.start = start;
        }
        assert!(
            start >= self.start,
            "slot at {start} behind the staged run at {}",
            self.start
        );
        if self.shared.is_empty() {
            let (from, to) = (start - self.start, end - self.start);
            if self.bytes.len() < to {
                self.bytes.resize(to, 0);
            }
            return &mut self.bytes[from..to];
        }
        assert!(
            start >= self.end(),
            "slot at {start} inside a staged run that ends at {}",
            self.end()
        );
        let from = self.bytes.len() + start - self.end();
        self.bytes.resize(from + end - start, 0);
        &mut self.bytes[from..]
    }

    /// Appends a record's `parts` at file offset `at`, keeping big shared parts by reference.
    /// Returns false (and writes nothing) if `at` is inside the run: the caller copies then.
    pub(super) fn append(&mut self, at: usize, parts: &[Part<'_>]) -> bool {
        if self.is_empty() {
            self.start = at;
        }
        if at < self.end() {
            return false;
        }
        let gap = at - self.end();
        self.bytes.resize(self.bytes.len() + gap, 0);
        for part in parts {
            match part {
                Part::Share(shared) if shared.len() >= SHARE_BYTES_MIN => {
                    self.shared.push((self.bytes.len(), Bytes::clone(shared)));
                    self.shared_bytes += shared.len();
                }
                part => self.bytes.extend_from_slice(part),
            }
        }
        true
    }

    /// The run's pieces in file order.
    fn pieces(&self) -> Vec<&[u8]> {
        let mut pieces = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut from = 0;
        for (before, shared) in &self.shared {
            pieces.push(&self.bytes[from..*before]);
            pieces.push(&shared[..]);
            from = *before;
        }
        pieces.push(&self.bytes[from..]);
        pieces.retain(|piece| !piece.is_empty());
        pieces
    }

    /// Copies the run's bytes of file range `start..end` (within the run) into `out`, which
    /// is exactly as long.
    pub(super) fn copy_out(&self, start: usize, end: usize, out: &mut [u8]) {
        assert_eq!(out.len(), end - start, "copy_out into a wrong-sized buffer");
        let mut at = self.start;
        for piece in self.pieces() {
            let piece_end = at + piece.len();
            let (from, to) = (start.max(at), end.min(piece_end));
            if from < to {
                out[from - start..to - start].copy_from_slice(&piece[from - at..to - at]);
            }
            at = piece_end;
        }
    }

    /// Empties the run; the next one starts where it ended.
    fn clear(&mut self) {
        self.start = self.end();
        self.bytes.clear();
        self.shared.clear();
        self.shared_bytes = 0;
    }

    /// Writes the run to `file` (into the page cache: no wait for the disk) and empties it.
    pub(super) fn flush(&mut self, file: &File) -> io::Result<()> {
        if self.shared.is_empty() {
            file.write_all_at(&self.bytes, self.start as u64)?;
        } else {
            let mut slices: Vec<IoSlice<'_>> =
                self.pieces().into_iter().map(IoSlice::new).collect();
            let mut file = file;
            file.seek(SeekFrom::Start(self.start as u64))?;
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let written = file.write_vectored(&rest[..rest.len().min(IOVECS_MAX)])?;
                if written == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut rest, written);
            }
        }
        self.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn a_run_with_shared_pieces_reads_back_and_flushes_in_file_order() {
        let big = shared(SHARE_BYTES_MIN, 7);
        let small = shared(10, 9);
        let mut staged = Staged::default();
        staged.slot(100, 108).copy_from_slice(&[1; 8]);
        let parts = [
            Part::Copy(&[2; 3]),
            Part::Share(&big),
            Part::Copy(&[3; 2]),
            Part::Share(&small),
        ];
        assert!(staged.append(112, &parts));
        staged.slot(staged.end() + 1, staged.end() + 3)[1] = 4;
        let mut expected = vec![1u8; 8];
        expected.extend([0; 4]);
        expected.extend([2; 3]);
        expected.extend(&big[..]);
        expected.extend([3; 2]);
        expected.extend(&small[..]);
        expected.extend([0, 0, 4]);
        assert_eq!(staged.end(), 100 + expected.len());
        assert_eq!(staged.shared.len(), 1, "the small body is copied");
        for (from, to) in [(100, 100 + expected.len()), (113, 600), (115, 116)] {
            let to = to.min(staged.end());
            let mut out = vec![0; to - from];
            staged.copy_out(from, to, &mut out);
            assert_eq!(out, expected[from - 100..to - 100], "{from}..{to}");
        }
        // Writing inside the run is refused once it holds a shared piece.
        assert!(!staged.append(120, &parts[..1]));

        let path = std::env::temp_dir().join(format!("cohort-staged-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        staged.flush(&file).unwrap();
        assert!(staged.is_empty());
        assert_eq!(staged.start, 100 + expected.len());
        let mut read = vec![0u8; expected.len()];
        file.read_exact_at(&mut read, 100).unwrap();
        assert_eq!(read, expected);
        let _ = std::fs::remove_file(path);
    }
}
