//! The write-ahead log of one core: memory-mapped segments shared by all its Raft groups, one
//! sync per batch for all of them, and a recovery that never forgets a synced record.
//!
//! This comment is the WAL's specification. The code follows it; the tests check it.
//!
//! # What it stores
//!
//! Per group (a `u64` id): entries (index, term, payload bytes), the last hard state (term,
//! vote, commit), the last snapshot marker (index, term), and truncations of a suffix. The
//! WAL knows nothing of Raft; the shard translates. The operations are [`Wal::append_entries`]
//! (a run of consecutive entries, which may overwrite a suffix), [`Wal::set_hard_state`],
//! [`Wal::truncate`], [`Wal::mark_snapshot`], [`Wal::sync`] (or `begin_sync`/`finish_sync`),
//! and [`Wal::entries`] to read back. After [`Wal::open`], [`Wal::groups`] says what recovery
//! rebuilt for each group.
//!
//! # Files
//!
//! A directory of segments `<seq>.wal`, `seq` counting up from 1 with no holes (the oldest ones are
//! removed as they die). Every segment has the same size (`WalConfig::segment_bytes`, 64 MiB by
//! default), is created at full size and filled with zeros (real writes, so an fdatasync after an
//! overwrite flushes data only, with no extent conversion in the journal; written to the device a
//! MiB at a time, so the active segment's syncs never queue behind a whole segment of zeros, and
//! with O_DIRECT writes, by O_DIRECT too, bypassing the page cache; with fsync off, fallocated
//! blocks that read as zeros), and is mapped `MAP_SHARED` for its whole life (for reading). The
//! file is never shortened while mapped.
//!
//! ## Segment header (64 bytes at offset 0, little endian)
//!
//! ```text
//! 0   8  magic "COHORTWL"
//! 8   4  format version (3; versions 1, without block skips, and 2, without a key, are
//!        read too)
//! 12  4  crc32 of bytes 0..12 and 16..64
//! 16  8  seq (must equal the file name's)
//! 24  8  segment size in bytes
//! 32  8  key: the WAL's secret, drawn at random when the WAL is made, the same in every
//!        segment header it writes (zero before version 3)
//! 40 24  zero
//! ```
//!
//! The header is written and synced when the segment is prepared, before any record goes in.
//!
//! ## Record (at offsets that are multiples of 8, from offset 64 on)
//!
//! ```text
//! 0   4  len: header + payload bytes (the record then pads with zeros to a multiple of 8)
//! 4   4  crc32 of: the segment's salt (8 bytes, not stored), bytes 0..4, bytes 8..len
//! 8   1  kind: 1 entries, 2 hard state, 3 snapshot, 4 truncate, 5 checkpoint
//! 9   7  zero
//! 16  8  lsn: log sequence number, +1 per record across segments
//! 24  8  durable_lsn: every record below this lsn was durable when this one was written
//! 32  8  group
//! 40     payload (layouts in `format::RecordKind`)
//! ```
//!
//! Entries: `first_index, count`, then per entry `term, len, payload`. A batch of entries is
//! one record: after a crash it comes back whole or not at all. The first record of every
//! segment is a checkpoint that restates the hard state and snapshot of every group, so an
//! older segment is never needed for them.
//!
//! A record may also start at the next 4 KiB boundary (`format::BLOCK_BYTES`) when the bytes
//! between the end of the record before it and that boundary are all zero (format version 2):
//! the WAL leaves such a gap when the block it was writing in is still being written by a
//! sync in flight (see the write protocol). The skipped-to record must carry the next lsn, so
//! a gap never hides a torn write.
//!
//! Why 8-byte alignment: a record header starts at a multiple of 8, so its length field never
//! straddles a 512-byte sector and is never torn by itself. Why a salted checksum: the salt
//! is a mix of the segment's seq and the key (`format::record_salt`; the seq alone in
//! segments of versions 1 and 2). A recycled file still holds records of its earlier life;
//! salted with another seq, they never verify. And entry payloads are stored as clients sent
//! them: a value could hold the image of a record, and left after the end of the log (a
//! torn tail, or the old bytes of a reused file) pass for one and make recovery refuse the
//! log as damaged. Without the key, which never leaves the node, no one can compute a
//! checksum that verifies.
//!
//! # Write protocol
//!
//! 1. An append reserves room at the cursor of the active segment (rotating if the record
//!    does not fit), builds the record in a window the storage lends (`Storage::slot`) and
//!    seals it with its crc in place, then moves the cursor. Nothing is durable yet; reads
//!    see it at once. On the file store the window is a per-segment staging buffer: with
//!    fdatasync on, the block-aligned buffer of the next sync's O_DIRECT write
//!    (`staged_direct.rs`), so each byte is copied once on the loop; otherwise a run for the
//!    page cache (`staged.rs`), where a record with big shared bodies is handed over as parts
//!    instead and the bodies kept by reference until the sync's `writev`. Storing through the
//!    shared map instead costs a write-protect fault per page and a clean pass per writeback
//!    (measured: unsynced 64 B appends 3.2 → 6.3 M/s, a small group commit 855 → 159 µs).
//! 2. A sync writes each segment's staged bytes and makes them durable, segments in order, oldest
//!    first. With fdatasync on, on the file store, that is one O_DIRECT | O_DSYNC write per segment
//!    through glommio's io_uring: whole 4 KiB blocks from the one the last write ended in (its
//!    bytes rewritten unchanged, copied from that write's buffer when the run began) to the end of
//!    the staged bytes, zero-padded (`file.rs`; a file system that refuses O_DIRECT gets a `pwrite`
//!    and an io_uring fdatasync instead). One sync covers every group of the core (group commit)
//!    and reports each group's durable last index and term. Several syncs may be in flight at once
//!    (each writes what was appended since the one before); they finish in the order they began,
//!    and a sync reports durable only what it and every sync before it wrote. Two writes of one
//!    block are never in flight together: while the last sync is in flight, the next record placed
//!    in the block that sync ended in starts at the next block boundary instead (its last block is
//!    zero-filled by that write, and recovery skips such a gap). In the file store's `PageCache`
//!    mode (`--sync never`) a sync only hands the staged bytes to the kernel: "durable" then means
//!    "survives the process", and dead segments are still reclaimed.
//! 3. If a sync fails, the WAL is poisoned: that call and every later one fail with an error
//!    that names the cause. The kernel may have dropped the dirty pages and cleared the error,
//!    so retrying could report success for lost data (the "fsyncgate" lesson). Restart and
//!    let recovery read what is really on disk: the kernel may also have kept the pages it
//!    failed to write as clean and up to date, so recovery first syncs each segment (refusing
//!    to open if that fails) and drops its cached pages, and reads it from the device.
//! 4. Rotation moves to the prepared next segment (see [`Wal::prepare_next`], called by the
//!    shard when idle, so rotation itself costs a checkpoint record and no system call) and
//!    writes the checkpoint first. Where none is prepared, rotation prepares one itself, or
//!    (`Wal::set_rotation_builds(false)`) refuses the record with `WalError::NotReady`. A
//!    segment the disk has no room for fails with `WalError::NoRoom`. Neither writes
//!    anything nor poisons the WAL: the same call succeeds later. While it refuses, records
//!    leave the end of the active segment that `Wal::keep_room` keeps for others: the last
//!    bytes for snapshot markers (and truncations), which on a full disk are what frees a
//!    segment to become the next (step 5), and before them room for hard states, which
//!    entries may not take.
//! 5. Compaction: `mark_snapshot(g, i)` kills `g`'s entries up to `i`. Once that is durable,
//!    every segment older than the oldest one holding a live entry of any group is reclaimed,
//!    oldest first: renamed to become the next prepared segment (skipping the zero-fill) when
//!    none is prepared, no reader holds a view of it and it has the configured segment size,
//!    else removed. Removals and renames
//!    are followed by an fsync of the directory, so a removed segment never comes back. The
//!    file store keeps up to two removed files no reader maps as spares (`<seq>.wal.spare`,
//!    a name recovery never reads) and builds the next segments from them: a header rewrite
//!    instead of zero-filling 64 MiB. A spare only ever becomes a segment numbered above the
//!    one it was, where its old records (salted with the old number) never verify; recovery
//!    removes the segments after the end of the log the same way, and the next segment
//!    takes the first of their numbers, so their spares are deleted instead.
//!
//! # What we assume of the medium
//!
//! - After `fdatasync` on a file returns success, the bytes written to it before the call
//!   through `write(2)` survive power loss; so do the bytes of a write through an O_DSYNC
//!   descriptor once it returns success. Nothing is stored through the map (it is mapped
//!   read-only): it only shows the file's page cache.
//! - A page-cache page of a range written with O_DIRECT is dropped by the kernel once the
//!   write is done, so the map shows the written bytes from then on (until then the file
//!   store serves them from the write's buffer). Nothing else writes a segment file through
//!   the page cache once records go in: its zero-fill and header are written and synced
//!   before (and a recycled file's new header, before it takes records again).
//! - Rewriting a block with the bytes it holds does not change them, even if the write is
//!   torn: each sector ends up old or new, and both agree on those bytes. (A device that
//!   zeroes a sector torn mid-write would break this, as it breaks any log whose last block is
//!   written twice, buffered writeback included.)
//! - Bytes written since the last completed sync may, after a crash, be present, absent,
//!   zero, or any mix of those per 512-byte sector. Synced bytes do not change in a crash.
//! - Media corruption (a flipped bit in synced data) is rare but possible, and must be
//!   detected, never silently accepted: every record and header is checksummed.
//! - A read can fail (a bad sector). Read through the map, that raises SIGBUS, which a
//!   process cannot recover from; so `open` has every segment read once with `pread` before
//!   it looks at one (`Storage::check_readable`), and a part that cannot be read is refused
//!   as damage. (Recovery reads every byte anyway; the check reads them first, so a log
//!   larger than the free memory is read from the device twice.) A read that fails after
//!   that check (a page evicted and unreadable when read again) stops the process; the node
//!   reports the file and offset before it dies. No segment file is pre-faulted at open:
//!   populating a map can retry a failed read in the kernel for ever.
//! - The directory belongs to this process alone; nobody else shortens or writes our files.
//!
//! # Recovery
//!
//! `open` lists the segments (a hole in the sequence: refuse, naming the missing file; a part the
//! device cannot read: refuse, naming the file and offset; a version it does not know: refuse) and
//! takes the key from the newest header that states one: a segment whose own header is zeros or
//! damaged is read with it (and, in a log that has one, as an unkeyed segment too). Where no header
//! states a key, a segment whose header is zeros or damaged is refused when anything but zeros
//! follows it, as its records could not be checked. It then replays records from the first segment
//! on while each verifies and carries the next lsn (skipping a zero gap to a block boundary where
//! the record at the boundary carries it). Where the replay of a segment stops, the decision table
//! in `decision.rs` chooses, from five facts, between: the segment simply ended (the next one
//! continues the lsn sequence); the log ended cleanly (zeros); a torn tail (drop it); and refusing
//! to open. A torn tail and mid-log corruption look alike at the stop; what tells them apart is the
//! durable lsn stamped in every record: if any record that verifies after the stop says the record
//! expected at the stop was already durable when it was written, the stop is damage to synced data,
//! and `open` fails with the file, the offset and what truncating would lose. (That scan checks a
//! checksum only where the header's lsn could follow the stop, from the expected lsn to as many
//! more as the log's bytes could hold (any lsn, for a stop before the log's first record), and its
//! durable lsn is not above its own: old bytes can look like a header claiming megabytes at every
//! aligned offset, and checking them all would take time quadratic in a segment's size. This
//! narrows that cost to headers that also guess the lsns near the end of the log; it does not bound
//! it.) Otherwise everything from the stop on was written after the last sync that any surviving
//! record knows of (unsynced batches, several when syncs overlapped) and is dropped: the valid
//! records left after the stop are zeroed (so a later, shorter write never exposes them), the kept
//! segments are synced (a process crash leaves unsynced data in the page cache), and later segments
//! are removed.
//!
//! Appends never go over bytes that follow the end of the log: lsns restart there, so a
//! later write over a torn record's remains, itself torn by a crash, could combine old and
//! new sectors into a record that verifies and carries the very lsn expected at that offset
//! (the model test found such a case). So when anything but zeros follows the end in the
//! last segment (a torn write, or a recycled file's earlier life), the log goes on in a fresh
//! segment (`RecoveryReport::end_segment_retired`); an empty log, which a next segment could
//! not continue, has those bytes zeroed instead. So does a log on a full disk, where no fresh
//! segment can be made (`RecoveryReport::end_tail_zeroed`): every byte from the end of the
//! log to the end of the segment is zeroed and synced before anything is appended, so no
//! remains are left for a later torn write to combine with, and a node can start on a full
//! disk.
//!
//! The residual blind spot, stated honestly: corruption of the *last* synced batch, after
//! which nothing else was written, leaves no later record to prove it was synced. Such damage
//! is taken for a torn tail and that batch is dropped. With syncs overlapping, the same holds
//! for the last few batches: those whose syncs were in flight together, as none of their
//! records knew the others durable. Raft's quorum holds those entries on other nodes, but this
//! node forgets that it acknowledged them, and with those nodes down a majority without them
//! could elect a leader. A vote lives only on this node: forgotten, it could be given again
//! in the same term. So a sync that made a new term or vote durable says so
//! ([`SyncReport::vote_group`]), and the node's log then writes one more record and syncs it,
//! whose `durable_lsn` proves the vote synced: damage to the vote is then refused as mid-log
//! corruption. The node's log does the same after a sync of entries (or of a snapshot
//! marker, a truncation) once the log was quiet 5 ms (an idle core: a commit written since,
//! which asks for no sync, is synced then and proves them; under load the next batch's
//! records prove the last). (It writes
//! one at every open too, for a crash between the two syncs, and once there is room where
//! there was none.) What stays open is a crash after an acknowledgement and before its proof
//! is synced (5 ms of quiet and up to a tick on an idle core; until the next batch's sync
//! under load; while no next segment is ready, until one is); closing it needs a second
//! durable write per sync on the acknowledgement's path (a superblock with the synced
//! length), which would double the sync cost; we choose not to pay it.
//!
//! Finally every group's live entries must follow its snapshot without a hole; a hole means a
//! segment holding live entries is lost, and `open` refuses.
//!
//! # Known costs
//!
//! - A payload byte is read twice on the loop thread: copied into the staging buffer, then
//!   read by the checksum over the record in place (while in cache). With fdatasync on, the
//!   kernel copies nothing more. A staging run that outgrows its buffer is copied into one
//!   twice as big (the next run starts a quarter bigger than the last one needed).
//! - A sync through io_uring costs more than the same blocking write: the kernel finishes an
//!   O_DSYNC write on a worker (a cache flush after the data) and then wakes the loop, two
//!   thread hand-offs that a blocking `write` does not pay. `cargo bench --bench wal` prints
//!   the WAL's figures beside both the blocking write + fdatasync and the blocking O_DIRECT
//!   | O_DSYNC write of the same bytes; the node hides this cost by working on while a sync
//!   is in flight.
//! - `FileStore`'s create, recycle and remove are blocking file-system calls; the WAL makes
//!   them only in `prepare_next`, in rotation when `prepare_next` was late (counted in
//!   `WalStats::rotation_stalls`), and in compaction after a sync. The node builds the next
//!   segment on glommio's blocking thread (`FileStore::build_job`), so `prepare_next` there
//!   only renames a finished file, and turns the rotation's fallback off
//!   (`Wal::set_rotation_builds(false)`): a record that needs the next segment before its
//!   build is done fails with `WalError::NotReady`, having written nothing, and the node
//!   writes it again later. A recycle or removal in compaction (a rename or unlink, a header
//!   write and fsyncs, once per segment) still runs on the loop.
//!
//! # Layers
//!
//! ```text
//!   log.rs, append.rs, sync.rs   the Wal: API, placement and rotation, group commit, reclaim
//!   index.rs                     per-group index, shared by appends and recovery replay
//!   recovery.rs, decision.rs     the scan and its decision table
//!   format.rs, payload.rs        byte layouts, checksums
//!   storage.rs                   the trait under it all
//!   file.rs, mmap.rs             files + shared maps + O_DIRECT writes through io_uring
//!                                (mmap.rs: all unsafe)
//!   staged.rs, staged_direct.rs  the file store's staging: for the page cache, for O_DIRECT
//!   mem.rs                       in-memory storage with crash faults, for tests and the sim
//! ```

mod append;
mod decision;
mod errors;
mod file;
mod format;
mod index;
mod log;
mod mem;
mod mmap;
mod payload;
mod recovery;
mod staged;
mod staged_direct;
mod storage;
mod sync;
mod types;

pub use decision::{STOP_TABLE, StopAction, StopFacts};
pub use errors::{WalError, WalOpenError};
pub(crate) use file::takes_direct_io;
pub use file::{BuiltSegment, FileStore, FileSyncer, SyncMode};
pub use format::{RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
pub use log::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, Wal, WalConfig, WalStats, checkpoint_bytes};
pub use mem::{CrashFault, MemStorage, MemSyncer, SECTOR_BYTES};
pub use payload::ENTRY_PREFIX_BYTES;
pub use recovery::RecoveryReport;
pub use storage::Part;
pub use storage::{ReadCheckError, SegmentSyncer, Storage};
pub use sync::{SyncDone, SyncTicket};
pub use types::{
    EntryPayload, GroupDurable, GroupState, HardState, SnapshotMarker, SyncReport, WalEntry,
};
