//! The storage trait under the WAL: fixed-size segments addressed by sequence number.
//!
//! The WAL's logic (encoding, index, rotation, compaction, recovery) is written once against
//! this trait; [`super::FileStore`] implements it with files, shared memory maps and io_uring
//! syncs, [`super::MemStorage`] in memory with injected faults. Every method but `sync` is
//! synchronous: writes are memcpys into a buffer, and the file-system calls (create, recycle,
//! remove) are control-path operations the shard schedules off the hot path (`prepare_next`,
//! compaction). `sync` is the one slow operation on the hot path, so it is a future that owns
//! what it needs: the WAL can go on appending while it runs.

use std::future::Future;
use std::io;
use std::ops::{Deref, Range};

use bytes::Bytes;

/// A piece of a record handed to [`Storage::write_parts`].
pub enum Part<'a> {
    /// Bytes to copy.
    Copy(&'a [u8]),
    /// Shared bytes the storage may keep a reference to until the next sync.
    Share(&'a Bytes),
}

impl Deref for Part<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Part::Copy(bytes) => bytes,
            Part::Share(bytes) => bytes,
        }
    }
}

/// Copies `parts` back to back into `slot` (exactly as long as they are together).
pub(super) fn copy_parts(slot: &mut [u8], parts: &[Part<'_>]) {
    let mut at = 0;
    for part in parts {
        slot[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, slot.len());
}

/// Writes zeros over `range` of segment `seq` and makes them durable, a chunk at a time: a
/// segment's worth of zeros (and, on the file store, their staged copy) at once would be a
/// burst of memory of up to the segment's size per core.
pub(super) async fn zero_durably<S: Storage>(
    storage: &mut S,
    seq: u64,
    range: Range<usize>,
) -> io::Result<()> {
    const CHUNK_BYTES: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK_BYTES.min(range.len())];
    let mut at = range.start;
    while at < range.end {
        let chunk = zeros.len().min(range.end - at);
        storage.write(seq, at, &zeros[..chunk]);
        storage.syncer(seq).sync().await?;
        at += chunk;
    }
    Ok(())
}

/// Why [`Storage::check_readable`] failed.
#[derive(Debug)]
pub enum ReadCheckError {
    /// The medium cannot give the segment's bytes from `offset` on (a read error, or the
    /// file ends there although it was longer when listed).
    Unreadable { offset: u64, source: io::Error },
    /// The check itself failed (no memory, ...): it says nothing about the bytes.
    Other(io::Error),
}

/// Makes one segment's written bytes durable. Owned, so it can outlive a borrow of the WAL.
pub trait SegmentSyncer: 'static {
    /// Completes once every byte written to the segment before the call is durable (on the
    /// file store: an O_DIRECT | O_DSYNC write, or an fdatasync, issued through io_uring).
    /// An error means
    /// the durability of those bytes is unknown; the WAL poisons itself and never retries.
    fn sync(self) -> impl Future<Output = io::Result<()>>;
}

/// Segments of one WAL. Contract for every method: `seq` names a segment that exists (listed,
/// created or recycled, and not removed); a violation is a bug of the WAL and may panic.
pub trait Storage {
    type Syncer: SegmentSyncer;

    /// Sequence numbers of the segments present, ascending. Opens them for reading and writing.
    fn list(&mut self) -> io::Result<Vec<u64>>;

    /// Creates segment `seq` of `size_bytes`: allocated, zero-filled, its header written, all
    /// of it durable (contents and name), and mapped so the first write does not fault.
    fn create(&mut self, seq: u64, size_bytes: u64, header: &[u8]) -> io::Result<()>;

    /// Renames segment `old_seq` to `new_seq` (keeping its allocation and mapping) and writes
    /// `header` at its start, durably. Older records stay in the file: the checksum salt makes
    /// them garbage to the new sequence number. Returns `Ok(false)` and does nothing when the
    /// segment cannot be reused now (a reader still holds a view of it).
    fn recycle(&mut self, old_seq: u64, new_seq: u64, header: &[u8]) -> io::Result<bool>;

    /// Removes segment `seq` durably: once this returns, it does not come back after a crash.
    /// Views handed out earlier stay readable.
    fn remove(&mut self, seq: u64) -> io::Result<()>;

    /// The segment's size in bytes.
    fn size_bytes(&self, seq: u64) -> u64;

    /// Reads all of segment `seq` from the medium once, so that a part the device cannot read
    /// is an error here, naming the offset where it starts, and not a fault at a later read
    /// of a view over it (on the file store, a read of an unreadable mapped page raises
    /// SIGBUS). By default every byte is readable.
    fn check_readable(&self, _seq: u64) -> Result<(), ReadCheckError> {
        Ok(())
    }

    /// A key for a new WAL on this storage (see `format::record_salt`): random, never zero.
    fn draw_key(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        hasher.finish().max(1)
    }

    /// A view of `range` of the segment without copying where the medium allows it. The WAL
    /// asks only for ranges it will not write again while the view can live (written records
    /// behind the append cursor); `write` must never touch a range covered by a live view.
    fn view(&self, seq: u64, range: Range<usize>) -> Bytes;

    /// A writable window onto `range` of the segment (a staging buffer on the file store, the
    /// segment itself in memory), for the WAL to build a record in place. The WAL writes every
    /// byte of it: what the window holds before is unspecified. What it writes there is
    /// visible to `view` at once and durable only after a `sync` of the segment completes.
    /// Bytes between records the WAL skips read as zeros. No live view may cover the range
    /// (see `view`).
    fn slot(&mut self, seq: u64, range: Range<usize>) -> &mut [u8];

    /// Whether `write_parts` would keep a shared part of `len_bytes` by reference instead of
    /// copying it. When no part of a record would be, the WAL builds the record in a `slot`
    /// (one copy of each byte, one checksum pass over the record in place). By default never.
    fn shares_part(&self, _len_bytes: usize) -> bool {
        false
    }

    /// Writes `parts` back to back at `offset` of the segment, as one record the WAL sealed
    /// already. Shared parts may be kept by reference until the segment's next sync, instead
    /// of copied (the file store does for big ones). By default everything is copied into
    /// the `slot`.
    fn write_parts(&mut self, seq: u64, offset: usize, parts: &[Part<'_>]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        copy_parts(self.slot(seq, offset..offset + len), parts);
    }

    /// Copies `data` into the segment at `offset`.
    fn write(&mut self, seq: u64, offset: usize, data: &[u8]) {
        self.slot(seq, offset..offset + data.len())
            .copy_from_slice(data);
    }

    /// Whether a sync writes whole `format::BLOCK_BYTES` blocks, rewriting the block the
    /// previous write ended in (the file store's O_DIRECT mode). Two such writes of one block
    /// in flight at once could land in either order, so the WAL starts a record in a fresh
    /// block while the last sync is in flight. By default false.
    fn writes_whole_blocks(&self) -> bool {
        false
    }

    /// Where segment `seq` lives, for error messages (a file path).
    fn locate(&self, seq: u64) -> String;

    /// A handle that syncs segment `seq`.
    fn syncer(&self, seq: u64) -> Self::Syncer;
}
