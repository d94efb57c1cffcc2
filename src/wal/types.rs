//! The WAL's own value types: it knows groups, indexes, terms and bytes, not Raft.

use bytes::Bytes;

/// A group's vote and commit state, as Raft persists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// A group snapshotted at `index` (an entry of `term`): entries at or below `index` are dead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
}

/// An entry's payload as [`super::Wal::append_entries`] takes it: a short head the WAL copies,
/// then a body it may keep by reference until the next sync instead of copying (when the
/// body is shared bytes and the storage can write from them: the file store's `writev`).
/// Read back, the payload is head and body together.
pub trait EntryPayload {
    fn head(&self) -> &[u8] {
        &[]
    }
    fn body(&self) -> &[u8];
    /// The body as shared bytes, if it is: the storage may keep a reference, not a copy.
    fn shared_body(&self) -> Option<&Bytes> {
        None
    }
    fn len(&self) -> usize {
        self.head().len() + self.body().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Borrowed bytes: copied.
impl<T: AsRef<[u8]> + ?Sized> EntryPayload for &T {
    fn body(&self) -> &[u8] {
        (*self).as_ref()
    }
}

/// Shared bytes: kept by reference where the storage can.
impl EntryPayload for Bytes {
    fn body(&self) -> &[u8] {
        self
    }
    fn shared_body(&self) -> Option<&Bytes> {
        Some(self)
    }
}

/// One entry read back from the log. `payload` is a slice of the segment map (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

/// What the WAL holds for one group: after `open`, what recovery rebuilt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupState {
    /// The last hard state written, if any.
    pub hard_state: Option<HardState>,
    /// The last snapshot marker (`index` 0 when the group never snapshotted).
    pub snapshot: SnapshotMarker,
    /// First live entry; `last_index + 1` when the log holds no entry.
    pub first_index: u64,
    /// Last entry, or the snapshot index when the log holds no entry.
    pub last_index: u64,
    /// Term of the last entry, or of the snapshot when the log holds no entry.
    pub last_term: u64,
}

/// After a sync: for each group written since the previous sync, how far its log is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupDurable {
    pub group: u64,
    /// The log was durable up to here, with `last_term` as the term of that entry, when the
    /// sync was issued. If the group truncated since, compare the term before trusting it.
    pub last_index: u64,
    pub last_term: u64,
}

/// What one completed sync made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Every record below this log sequence number is durable.
    pub durable_lsn: u64,
    pub groups: Vec<GroupDurable>,
    /// A group whose term or vote this sync made durable (the last such, if several). Until
    /// a later record proves it synced (its `durable_lsn` above it), damage to that record
    /// reads as a torn tail and recovery drops it: the node would forget a vote it gave.
    /// Writing any record after this report, and syncing it, closes that gap.
    pub vote_group: Option<u64>,
}
