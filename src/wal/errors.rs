//! Errors of the WAL, one enum per operation: opening (recovery) and everything after.

use std::fmt;
use std::io;

/// Why `Wal::open` refused. Every variant that is about damaged data names the file.
#[derive(Debug)]
pub enum WalOpenError {
    /// The configuration cannot describe a valid WAL.
    Config { reason: String },
    /// The storage failed (listing, reading, zeroing the torn tail, syncing).
    Io { file: String, source: io::Error },
    /// A segment of a format version this code does not read.
    UnsupportedVersion { file: String, version: u32 },
    /// A segment's header is damaged while the log needs that segment.
    CorruptSegmentHeader { file: String },
    /// A segment file is shorter or longer than its header says: someone cut or grew it.
    SegmentSizeMismatch {
        file: String,
        size_bytes: u64,
        size_bytes_in_header: u64,
    },
    /// Segment sequence numbers jump: a file is missing between two present ones.
    MissingSegment { file: String },
    /// The device cannot read a segment from `offset` on: the records there cannot be
    /// checked, so opening could forget acknowledged writes.
    Unreadable {
        file: String,
        offset: u64,
        source: io::Error,
    },
    /// A record that was durable is damaged: the log cannot be read past it, and records
    /// after it prove it was synced. Opening would forget acknowledged writes.
    MidLogCorruption {
        file: String,
        offset: u64,
        /// The sequence number of the record expected at `offset`.
        lsn: u64,
        /// What would be lost by truncating here.
        lost: String,
    },
    /// The log of one segment ends (zeros to its end) and the next segment, `file`, does not
    /// go on from it: its header or first record is damaged, and later records prove the
    /// missing ones were synced. Opening would forget acknowledged writes.
    NextSegmentBroken {
        file: String,
        /// The segment before, where the log ends, and the offset where it ends.
        previous: String,
        previous_end: u64,
        /// The sequence number of the record expected at the start of `file`.
        lsn: u64,
        /// What is wrong at the start of `file`.
        why: &'static str,
        /// What would be lost by truncating at the end of `previous`.
        lost: String,
    },
    /// The log forks: valid records follow where the log of `file` ends at `offset`, while
    /// the next segment goes on from that end (damaged or forged bytes; no crash leaves it).
    LogForks {
        file: String,
        offset: u64,
        /// The sequence number of the record expected at `offset` (the next segment's first).
        lsn: u64,
    },
    /// A record verifies but breaks the format's rules (a bug of a writer, or a forgery).
    Inconsistent {
        file: String,
        offset: u64,
        reason: String,
    },
}

impl WalOpenError {
    /// Whether the log's data is damaged (not a configuration, version or I/O problem that
    /// another start could get past).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            WalOpenError::CorruptSegmentHeader { .. }
                | WalOpenError::SegmentSizeMismatch { .. }
                | WalOpenError::MissingSegment { .. }
                | WalOpenError::Unreadable { .. }
                | WalOpenError::MidLogCorruption { .. }
                | WalOpenError::NextSegmentBroken { .. }
                | WalOpenError::LogForks { .. }
                | WalOpenError::Inconsistent { .. }
        )
    }
}

impl fmt::Display for WalOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalOpenError::Config { reason } => write!(f, "invalid WAL configuration: {reason}"),
            WalOpenError::Io { file, source } => write!(f, "WAL I/O error on {file}: {source}"),
            WalOpenError::UnsupportedVersion { file, version } => write!(
                f,
                "{file}: WAL format version {version} is not supported by this build"
            ),
            WalOpenError::CorruptSegmentHeader { file } => {
                write!(f, "{file}: segment header is corrupt; refusing to open")
            }
            WalOpenError::SegmentSizeMismatch {
                file,
                size_bytes,
                size_bytes_in_header,
            } => write!(
                f,
                "{file} has {size_bytes} bytes but its header says {size_bytes_in_header}: \
                 the file was cut or extended; refusing to open"
            ),
            WalOpenError::MissingSegment { file } => write!(
                f,
                "{file} is missing: the WAL has segments before and after it; refusing to open"
            ),
            WalOpenError::Unreadable {
                file,
                offset,
                source,
            } => write!(
                f,
                "{file} cannot be read from offset {offset} ({source}; the kernel log, `dmesg`, \
                 says more): the records there cannot be checked, and skipping them could \
                 forget acknowledged writes; refusing to open"
            ),
            WalOpenError::MidLogCorruption {
                file,
                offset,
                lsn,
                lost,
            } => write!(
                f,
                "{file} at offset {offset}: record {lsn} is corrupt yet was synced; \
                 truncating would lose {lost}; refusing to open"
            ),
            WalOpenError::NextSegmentBroken {
                file,
                previous,
                previous_end,
                lsn,
                why,
                lost,
            } => write!(
                f,
                "{file}: {why}: record {lsn}, which goes on from the end of the log in \
                 {previous} (offset {previous_end}), is missing or corrupt yet was synced; \
                 truncating would lose {lost}; refusing to open"
            ),
            WalOpenError::LogForks { file, offset, lsn } => write!(
                f,
                "{file} at offset {offset}: the log ends here and the next segment goes on from \
                 record {lsn}, yet valid records follow here: the log forks (damaged or forged \
                 bytes); refusing to open"
            ),
            WalOpenError::Inconsistent {
                file,
                offset,
                reason,
            } => write!(f, "{file} at offset {offset}: {reason}"),
        }
    }
}

impl std::error::Error for WalOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalOpenError::Io { source, .. } | WalOpenError::Unreadable { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// Why a call on an open WAL failed.
#[derive(Debug)]
pub enum WalError {
    /// An earlier sync (or another write whose outcome on disk is unknown) failed; the WAL
    /// refuses everything since. Restart and recover: never retry a failed fdatasync.
    Poisoned { cause: String },
    /// This sync failed; the WAL is poisoned from now on.
    SyncFailed { file: String, source: io::Error },
    /// Preparing or reclaiming a segment failed; the WAL is poisoned from now on.
    SegmentIo { file: String, source: io::Error },
    /// The record needed the next segment, which is not prepared, and the WAL was told not
    /// to make one in rotation (`Wal::set_rotation_builds`). Nothing was written and the WAL
    /// is not poisoned: the same call succeeds once a segment is prepared.
    NotReady { file: String },
    /// The record needed the next segment, which the disk had no room to make. Nothing was
    /// written and the WAL is not poisoned: the same call succeeds once a segment can be
    /// made (space freed, or a segment built elsewhere offered to the storage).
    NoRoom { file: String, source: io::Error },
    /// One record (an append batch, or a rotation's checkpoint plus it) exceeds a segment.
    RecordTooLarge {
        size_bytes: u64,
        size_bytes_max: u64,
    },
    /// An append that would leave a hole or rewrite compacted entries.
    NotContiguous {
        group: u64,
        first_index: u64,
        last_index: u64,
        snapshot_index: u64,
    },
    /// A truncation at or below the snapshot.
    BelowSnapshot {
        group: u64,
        index: u64,
        snapshot_index: u64,
    },
    /// A snapshot older than the group's current one.
    SnapshotRegress {
        group: u64,
        index: u64,
        snapshot_index: u64,
    },
    /// A read of entries that are compacted or not written.
    Unavailable {
        group: u64,
        index: u64,
        first_index: u64,
        last_index: u64,
    },
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Poisoned { cause } => {
                write!(
                    f,
                    "WAL is poisoned after an earlier failure ({cause}); restart to recover"
                )
            }
            WalError::SyncFailed { file, source } => {
                write!(
                    f,
                    "sync of {file} (its write or its flush to the device) failed: {source}; the WAL is poisoned"
                )
            }
            WalError::SegmentIo { file, source } => {
                write!(
                    f,
                    "segment operation on {file} failed: {source}; the WAL is poisoned"
                )
            }
            WalError::NotReady { file } => write!(
                f,
                "the next segment {file} is not prepared yet; nothing was written (the WAL \
                 goes on once it is)"
            ),
            WalError::NoRoom { file, source } => {
                write!(
                    f,
                    "no room on the disk for the next segment {file}: {source}; nothing was \
                     written (the WAL goes on once a segment can be made)"
                )
            }
            WalError::RecordTooLarge {
                size_bytes,
                size_bytes_max,
            } => write!(f, "record of {size_bytes} bytes exceeds {size_bytes_max}"),
            WalError::NotContiguous {
                group,
                first_index,
                last_index,
                snapshot_index,
            } => write!(
                f,
                "group {group}: append at {first_index} does not follow the log \
                 (last {last_index}, snapshot {snapshot_index})"
            ),
            WalError::BelowSnapshot {
                group,
                index,
                snapshot_index,
            } => write!(
                f,
                "group {group}: index {index} is at or below snapshot {snapshot_index}"
            ),
            WalError::SnapshotRegress {
                group,
                index,
                snapshot_index,
            } => write!(
                f,
                "group {group}: snapshot {index} is older than {snapshot_index}"
            ),
            WalError::Unavailable {
                group,
                index,
                first_index,
                last_index,
            } => write!(
                f,
                "group {group}: entry {index} is outside the log ({first_index}..={last_index})"
            ),
        }
    }
}

impl WalError {
    /// Whether the call failed having changed nothing, and may be made again later (once a
    /// segment is prepared, or the disk has room).
    pub fn nothing_written(&self) -> bool {
        matches!(self, WalError::NotReady { .. } | WalError::NoRoom { .. })
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::SyncFailed { source, .. }
            | WalError::SegmentIo { source, .. }
            | WalError::NoRoom { source, .. } => Some(source),
            _ => None,
        }
    }
}
