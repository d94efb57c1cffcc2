//! The in-memory index of one group: where each live entry lies, its hard state and snapshot.
//!
//! Appending and recovery both change it through the same four operations, so the state a
//! reopened WAL rebuilds is, by construction, the state the records were written from.

use std::collections::VecDeque;

use super::types::{GroupState, HardState, SnapshotMarker};

/// Where one entry's payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLoc {
    pub term: u64,
    pub segment_seq: u64,
    /// Offset of the payload in the segment.
    pub offset: u32,
    pub len_bytes: u32,
}

/// Every group's index, by group id. A hash map: a batch's appends and its sync look a
/// group up several times each, and a tree's search was a tenth of that work with 64
/// groups. Where the order shows (checkpoints, listings), it is sorted there.
pub type Groups = foldhash::HashMap<u64, GroupLog>;

#[derive(Clone, Debug)]
pub struct GroupLog {
    pub hard_state: Option<HardState>,
    pub snapshot: SnapshotMarker,
    /// Written since the last sync began: the next sync report names this group.
    pub unsynced: bool,
    /// Index of `entries[0]`.
    first_index: u64,
    entries: VecDeque<EntryLoc>,
}

impl Default for GroupLog {
    fn default() -> GroupLog {
        GroupLog::new()
    }
}

impl GroupLog {
    pub fn new() -> GroupLog {
        GroupLog {
            hard_state: None,
            snapshot: SnapshotMarker::default(),
            unsynced: false,
            first_index: 1,
            entries: VecDeque::new(),
        }
    }

    /// Marks the group written since the last sync began; true if it was not already.
    pub fn mark_unsynced(&mut self) -> bool {
        !std::mem::replace(&mut self.unsynced, true)
    }

    /// Last entry, or the snapshot index when there is none.
    pub fn last_index(&self) -> u64 {
        if self.entries.is_empty() {
            self.snapshot.index
        } else {
            self.first_index + self.entries.len() as u64 - 1
        }
    }

    pub fn first_index(&self) -> u64 {
        if self.entries.is_empty() {
            self.snapshot.index + 1
        } else {
            self.first_index
        }
    }

    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snapshot.term, |e| e.term)
    }

    pub fn get(&self, index: u64) -> Option<&EntryLoc> {
        let offset = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// The last live entry in a segment older than `seq`, if any: a snapshot there frees this
    /// group's share of those segments.
    pub fn last_index_before_segment(&self, seq: u64) -> Option<u64> {
        let count = self.entries.partition_point(|e| e.segment_seq < seq);
        (count > 0).then(|| self.first_index + count as u64 - 1)
    }

    /// The segment of the first live entry: no older segment holds a live entry of this group.
    pub fn oldest_segment(&self) -> Option<u64> {
        self.entries.front().map(|e| e.segment_seq)
    }

    /// True when the live entries run from just after the snapshot without a hole.
    pub fn is_contiguous(&self) -> bool {
        self.entries.is_empty() || self.first_index == self.snapshot.index + 1
    }

    /// Entries from `first_index` on replace any entries at or after it. A `first_index` past
    /// the end restarts the log there (a hole a later snapshot covers, checked at the end of
    /// recovery); the live API refuses it before it gets here.
    pub fn append(&mut self, first_index: u64, entries: impl IntoIterator<Item = EntryLoc>) {
        self.begin_append(first_index);
        self.entries.extend(entries);
    }

    /// The first half of `append`: makes `first_index` the next index; `push` the entries.
    pub fn begin_append(&mut self, first_index: u64) {
        if first_index > self.last_index() + 1 {
            self.entries.clear();
        } else {
            self.truncate(first_index);
        }
        if self.entries.is_empty() {
            self.first_index = first_index;
        }
    }

    pub fn push(&mut self, entry: EntryLoc) {
        self.entries.push_back(entry);
    }

    /// Drops entries at or after `from_index`.
    pub fn truncate(&mut self, from_index: u64) {
        let keep = from_index.saturating_sub(self.first_index);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Entries at or below the snapshot index are dead; a newer hard state has no such effect.
    pub fn set_snapshot(&mut self, marker: SnapshotMarker) {
        let dead = (marker.index + 1).saturating_sub(self.first_index);
        let dead = usize::try_from(dead).unwrap_or(usize::MAX);
        if dead >= self.entries.len() {
            self.entries.clear();
            self.first_index = marker.index + 1;
        } else {
            self.entries.drain(..dead);
            self.first_index += dead as u64;
        }
        self.snapshot = marker;
    }

    pub fn state(&self) -> GroupState {
        GroupState {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            first_index: self.first_index(),
            last_index: self.last_index(),
            last_term: self.last_term(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64) -> EntryLoc {
        EntryLoc {
            term,
            segment_seq: 1,
            offset: 0,
            len_bytes: 0,
        }
    }

    #[test]
    fn append_truncate_snapshot_keep_indexes_consistent() {
        // Goal: the four operations keep first/last/term in step. Method: a short story.
        let mut log = GroupLog::new();
        log.append(1, (1..=5).map(loc));
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (1, 5, 5)
        );
        log.append(4, [loc(9)]);
        assert_eq!((log.last_index(), log.last_term()), (4, 9));
        log.set_snapshot(SnapshotMarker { index: 2, term: 2 });
        assert_eq!((log.first_index(), log.last_index()), (3, 4));
        assert_eq!(log.get(3).map(|e| e.term), Some(3));
        log.truncate(4);
        assert_eq!(log.last_index(), 3);
        log.set_snapshot(SnapshotMarker { index: 10, term: 7 });
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (11, 10, 7)
        );
        assert!(log.is_contiguous());
    }

    #[test]
    fn a_hole_is_visible_until_a_snapshot_covers_it() {
        let mut log = GroupLog::new();
        log.append(8, [loc(1), loc(1)]);
        assert!(!log.is_contiguous());
        log.set_snapshot(SnapshotMarker { index: 8, term: 1 });
        assert!(log.is_contiguous());
        assert_eq!((log.first_index(), log.last_index()), (9, 9));
    }
}
