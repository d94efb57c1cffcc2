//! The replica's log in memory: entries after the last snapshot, with commit, apply and
//! persistence cursors, and a few entries before it kept for followers a little behind.
//!
//! The core keeps every entry since the last compaction in memory (the caller bounds that by
//! snapshotting); the WAL is where they are made durable. A compaction may keep the last
//! entries it covers (`behind`): committed, so the same on every replica, they are only
//! ever sent to followers, never handed out to persist or apply again, and lost at a
//! restart. Cursors, all monotonic except where a follower truncates a conflicting suffix:
//!
//! ```text
//!   snapshot_index <= applied <= committed <= last_index
//!   persisted <= last_index           (durable on this node, as the caller acknowledged)
//!   unstable_from: first index not yet handed to the caller to persist
//! ```

use std::collections::VecDeque;

use super::types::{Entry, LogIndex, Term};

/// What a compaction keeps of the entries it covers (see [`RaftLog::compact`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keep {
    /// The lowest index kept.
    pub(crate) from: LogIndex,
    /// The most bytes kept (`Entry::size_bytes`); the oldest go first.
    pub(crate) bytes_max: u64,
}

impl Keep {
    /// Keep nothing behind the snapshot.
    pub(crate) const NOTHING: Keep = Keep {
        from: LogIndex(u64::MAX),
        bytes_max: 0,
    };
}

#[derive(Debug)]
pub(crate) struct RaftLog {
    snapshot_index: LogIndex,
    snapshot_term: Term,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: VecDeque<Entry>,
    /// Entries up to `snapshot_index` a compaction kept for followers a little behind it, so
    /// they catch up from the log rather than by a whole snapshot:
    /// `behind[i].index == snapshot_index + 1 - behind.len() + i`.
    behind: VecDeque<Entry>,
    /// The `size_bytes` of `behind`.
    behind_bytes: u64,
    pub(crate) committed: LogIndex,
    /// Highest index the caller has applied (acknowledged through `advance`, or by a
    /// snapshot of its state machine taken there).
    pub(crate) applied: LogIndex,
    /// Highest index handed out for applying (by a Ready, or by
    /// `Replica::take_committed_durable` while one is in flight); the next to hand out is
    /// after both this and `applied`.
    pub(crate) applying: LogIndex,
    /// Highest index the caller has made durable.
    pub(crate) persisted: LogIndex,
    /// First index not yet handed out for persistence.
    pub(crate) unstable_from: LogIndex,
    /// How many times entries handed out for persistence were dropped from the tail (a
    /// conflicting suffix, or the whole log for a received snapshot). A Ready handed out
    /// before one may describe entries that were dropped and later written again, by a
    /// Ready still in flight.
    pub(crate) truncations: u64,
}

impl RaftLog {
    /// A log restored from durable state: everything in it is persisted.
    pub(crate) fn restore(
        snapshot_index: LogIndex,
        snapshot_term: Term,
        entries: Vec<Entry>,
        committed: LogIndex,
    ) -> RaftLog {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                snapshot_index.plus(offset as u64 + 1),
                "restored entries must follow the snapshot without gaps"
            );
        }
        let mut log = RaftLog {
            snapshot_index,
            snapshot_term,
            entries: entries.into(),
            behind: VecDeque::new(),
            behind_bytes: 0,
            committed: LogIndex::ZERO,
            applied: snapshot_index,
            applying: snapshot_index,
            persisted: LogIndex::ZERO,
            unstable_from: LogIndex::ZERO,
            truncations: 0,
        };
        log.persisted = log.last_index();
        log.unstable_from = log.last_index().next();
        // A persisted commit index beyond the log can only come from a corrupt store.
        log.committed = committed.max(snapshot_index).min(log.last_index());
        log
    }

    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot_index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.snapshot_index.plus(self.entries.len() as u64)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term of the entry at `index`, if the log still knows it (kept behind the
    /// snapshot included).
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry_to_send(index).map(|e| e.term)
    }

    /// The entry at `index`, if it is past the snapshot.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries
            .get((index.0 - self.snapshot_index.0 - 1) as usize)
    }

    /// The entry at `index`, past the snapshot or kept behind it.
    fn entry_to_send(&self, index: LogIndex) -> Option<&Entry> {
        if index > self.snapshot_index {
            return self.entry(index);
        }
        let below_snapshot = (self.snapshot_index.0 - index.0) as usize;
        let kept = self.behind.len();
        (below_snapshot < kept).then(|| &self.behind[kept - 1 - below_snapshot])
    }

    pub(crate) fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft's election restriction: is a log ending at (index, term) at least as up to date
    /// as ours?
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The leader appends its own new entry.
    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index().next());
        self.entries.push_back(entry);
    }

    /// A follower takes entries that follow `(prev_index, prev_term)` from the leader.
    /// Returns the index of the last entry now known to match the leader, or `None` if the
    /// logs do not match at `prev_index`.
    pub(crate) fn try_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<LogIndex> {
        if prev_index < self.snapshot_index {
            // Everything up to our snapshot is committed and so matches; skip that part.
            let skip = (self.snapshot_index.0 - prev_index.0) as usize;
            if skip > entries.len() {
                return Some(prev_index.plus(entries.len() as u64));
            }
            let prev_term = if skip == 0 {
                prev_term
            } else {
                entries[skip - 1].term
            };
            return self
                .try_append(self.snapshot_index, prev_term, &entries[skip..])
                .map(|_| prev_index.plus(entries.len() as u64));
        }
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let conflict = entries.iter().position(|e| !self.matches(e.index, e.term));
        if let Some(position) = conflict {
            let first_new = entries[position].index;
            // Unreachable from a peer: `validate` makes the entries follow `prev_index`, and
            // the follower answers appends whose `prev_index` is below its commit without
            // coming here.
            assert!(
                first_new > self.committed,
                "a leader asked to overwrite committed entry {first_new} (committed {})",
                self.committed
            );
            self.truncate_from(first_new);
            for entry in &entries[position..] {
                self.entries.push_back(entry.clone());
            }
        }
        Some(last_new)
    }

    /// Drops entries at and after `index` (a follower discarding a conflicting suffix; every
    /// append past the end comes here too, dropping nothing).
    fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.snapshot_index);
        let keep = (index.0 - self.snapshot_index.0 - 1) as usize;
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(index.prev());
        if index < self.unstable_from {
            self.truncations += 1;
        }
        self.unstable_from = self.unstable_from.min(index);
    }

    /// Entries from `from` on, at most `entries_max` and (past the first) `bytes_max` bytes.
    /// Payloads are shared, not copied. From below the snapshot, the entries kept behind it
    /// come first.
    pub(crate) fn slice<C: Default + Extend<Entry>>(
        &self,
        from: LogIndex,
        entries_max: usize,
        bytes_max: u64,
    ) -> C {
        let mut out = C::default();
        let (mut count, mut bytes) = (0, 0);
        let mut index = from;
        while let Some(entry) = self.entry_to_send(index) {
            if count == entries_max || (count > 0 && bytes + entry.size_bytes() > bytes_max) {
                break;
            }
            bytes += entry.size_bytes();
            count += 1;
            out.extend(std::iter::once(entry.clone()));
            index = index.next();
        }
        out
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.unstable_from.max(self.first_index());
        let out = self.slice(from, usize::MAX, u64::MAX);
        self.unstable_from = self.last_index().next();
        out
    }

    pub(crate) fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// The caller reports entries up to `(index, term)` durable, handed out after
    /// `truncations` truncations. If the log was truncated since, nothing is credited: even
    /// when it holds `(index, term)` again (a suffix dropped, then written back), entries
    /// below it may be in a Ready still in flight. A later Ready credits them.
    pub(crate) fn persisted_to(&mut self, index: LogIndex, term: Term, truncations: u64) {
        if truncations == self.truncations && index > self.persisted && self.matches(index, term) {
            self.persisted = index;
        }
    }

    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {}",
                self.last_index()
            );
            self.committed = index;
            return true;
        }
        false
    }

    /// For fast backtracking: the last index at or below `index` whose term is at most
    /// `term`, and that term; the search stops at `floor` (below it, an answer is of no use to
    /// the caller). Unknown terms (compacted or beyond the log) stop the search.
    pub(crate) fn find_conflict_by_term(
        &self,
        index: LogIndex,
        term: Term,
        floor: LogIndex,
    ) -> (LogIndex, Term) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Some(t) if t > term && index > floor => index = index.prev(),
                Some(t) => return (index, t),
                None => return (index, Term::ZERO),
            }
        }
    }

    /// Drop entries up to `index` (inclusive): the caller snapshotted the state there. Of
    /// those and the ones kept before, keep those from `keep.from` on, while they hold at
    /// most `keep.bytes_max`. Returns the rest: freeing their buffers is the caller's to place.
    pub(crate) fn compact(&mut self, index: LogIndex, keep: Keep) -> Vec<Entry> {
        let applied = self.applied.max(self.applying);
        assert!(
            index <= applied,
            "compact({index}) beyond applied {applied}"
        );
        if index <= self.snapshot_index {
            return Vec::new();
        }
        let term = self.term(index).expect("applied entry is in the log");
        let covered = (index.0 - self.snapshot_index.0) as usize;
        // Only entries from `keep.from` on pass through `behind` (which so never holds more
        // than is kept); those below go, the ones kept before first.
        let mut dropped = Vec::new();
        let below_kept = |entry: &Entry| entry.index < keep.from;
        while self.behind.front().is_some_and(below_kept) {
            self.drop_oldest_behind(&mut dropped);
        }
        for entry in self.entries.drain(..covered) {
            if below_kept(&entry) {
                dropped.push(entry);
            } else {
                self.behind_bytes += entry.size_bytes();
                self.behind.push_back(entry);
            }
        }
        while self.behind_bytes > keep.bytes_max {
            self.drop_oldest_behind(&mut dropped);
        }
        if self.behind.is_empty() {
            self.behind = VecDeque::new();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        // Applied, by the state machine's word, ahead of the Ready in flight's `advance`.
        self.applied = self.applied.max(index);
        dropped
    }

    fn drop_oldest_behind(&mut self, dropped: &mut Vec<Entry>) {
        if let Some(oldest) = self.behind.pop_front() {
            self.behind_bytes -= oldest.size_bytes();
            dropped.push(oldest);
        }
    }

    /// Replace the whole log by a snapshot received from the leader.
    pub(crate) fn install_snapshot(&mut self, index: LogIndex, term: Term) {
        // Of what this node made durable, only its committed entries are sure to be the
        // snapshot's: the rest may be of another leader. The snapshot's own durability is
        // credited once the caller reports it (`Replica::advance`).
        self.persisted = self.persisted.min(self.committed);
        self.entries.clear();
        self.behind = VecDeque::new();
        self.behind_bytes = 0;
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.committed = index;
        self.applied = index;
        self.applying = index;
        self.unstable_from = index.next();
        self.truncations += 1;
    }

    /// Entries committed but not yet handed out for applying, from `applying_from`.
    pub(crate) fn committed_from(&self, applying_from: LogIndex) -> Vec<Entry> {
        self.committed_between(applying_from, self.committed)
    }

    /// Committed entries from `from` to `to` (both included; `to` at most `committed`).
    pub(crate) fn committed_between(&self, from: LogIndex, to: LogIndex) -> Vec<Entry> {
        let from = from.max(self.first_index());
        let to = to.min(self.committed);
        if from > to {
            return Vec::new();
        }
        let count = (to.0 - from.0 + 1) as usize;
        self.slice(from, count, u64::MAX)
    }

    /// The first index not handed out for applying yet.
    pub(crate) fn next_to_apply(&self) -> LogIndex {
        self.applied.max(self.applying).next()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::raft::types::EntryKind;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            kind: EntryKind::Normal,
            data: Bytes::from(vec![index as u8]),
        }
    }

    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| entry(i as u64 + 1, t))
            .collect();
        RaftLog::restore(LogIndex(0), Term(0), entries, LogIndex(0))
    }

    #[test]
    fn conflicting_suffix_is_replaced() {
        let mut log = log_with_terms(&[1, 1, 2, 2]);
        let new = [entry(3, 3), entry(4, 3), entry(5, 3)];
        assert_eq!(
            log.try_append(LogIndex(2), Term(1), &new),
            Some(LogIndex(5))
        );
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(
            log.persisted,
            LogIndex(2),
            "persistence must not cover the replaced suffix"
        );
        assert_eq!(log.unstable_from, LogIndex(3));
    }

    #[test]
    fn mismatched_prev_is_refused() {
        let mut log = log_with_terms(&[1, 1]);
        assert_eq!(log.try_append(LogIndex(2), Term(2), &[entry(3, 2)]), None);
        assert_eq!(log.try_append(LogIndex(5), Term(1), &[]), None);
        assert_eq!(log.last_index(), LogIndex(2));
    }

    #[test]
    fn stale_duplicate_append_does_not_truncate() {
        let mut log = log_with_terms(&[1, 1, 1, 1]);
        // An old, shorter append arriving late must not cut entries 3 and 4.
        assert_eq!(
            log.try_append(LogIndex(0), Term(0), &[entry(1, 1), entry(2, 1)]),
            Some(LogIndex(2))
        );
        assert_eq!(log.last_index(), LogIndex(4));
    }

    #[test]
    fn append_below_snapshot_skips_the_compacted_part() {
        let mut log = log_with_terms(&[1, 1, 1]);
        log.committed = LogIndex(3);
        log.applied = LogIndex(3);
        let dropped: Vec<LogIndex> = log
            .compact(LogIndex(2), Keep::NOTHING)
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(
            dropped,
            [LogIndex(1), LogIndex(2)],
            "handed back, to be freed elsewhere"
        );
        assert!(
            log.compact(LogIndex(2), Keep::NOTHING).is_empty(),
            "nothing twice"
        );
        let new = [entry(2, 1), entry(3, 1), entry(4, 2)];
        assert_eq!(
            log.try_append(LogIndex(1), Term(1), &new),
            Some(LogIndex(4))
        );
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(log.term(LogIndex(4)), Some(Term(2)));
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index.0).collect()
    }

    #[test]
    fn a_compaction_keeps_entries_behind_the_snapshot_within_its_bounds() {
        let mut log = log_with_terms(&[1, 1, 1, 2, 2, 2, 2, 2]);
        log.committed = LogIndex(8);
        log.applied = LogIndex(8);
        let keep = |from, bytes_max| Keep {
            from: LogIndex(from),
            bytes_max,
        };
        let dropped = log.compact(LogIndex(5), keep(3, u64::MAX));
        assert_eq!(indexes(&dropped), [1, 2]);
        // Kept entries are sent, with their terms, but are not past the snapshot.
        assert_eq!(log.term(LogIndex(3)), Some(Term(1)));
        assert_eq!(log.term(LogIndex(2)), None);
        assert_eq!(log.entry(LogIndex(4)), None);
        assert_eq!(
            indexes(&log.slice::<Vec<_>>(LogIndex(3), 100, u64::MAX)),
            [3, 4, 5, 6, 7, 8]
        );
        assert!(
            log.slice::<Vec<Entry>>(LogIndex(2), 100, u64::MAX)
                .is_empty()
        );
        assert_eq!(log.first_index(), LogIndex(6));
        assert_eq!(indexes(&log.committed_from(LogIndex(1))), [6, 7, 8]);
        // The next compaction keeps within the bytes too: the oldest go first.
        let two = entry(1, 1).size_bytes() * 2;
        let dropped = log.compact(LogIndex(7), keep(4, two));
        assert_eq!(indexes(&dropped), [3, 4, 5]);
        assert_eq!(
            indexes(&log.slice::<Vec<_>>(LogIndex(6), 100, u64::MAX)),
            [6, 7, 8]
        );
        assert_eq!(log.term(LogIndex(5)), None);
        // A snapshot from the leader replaces them all.
        log.install_snapshot(LogIndex(9), Term(2));
        assert_eq!(log.term(LogIndex(7)), None);
        assert!(log.compact(LogIndex(9), keep(1, u64::MAX)).is_empty());
    }

    /// Found in review: every covered entry passed through `behind`, whose room then stayed
    /// that of the largest compaction, on every replica, kept entries or not.
    #[test]
    fn behind_never_holds_room_for_more_than_it_keeps() {
        let mut log = log_with_terms(&[1; 10_000]);
        log.committed = LogIndex(10_000);
        log.applied = LogIndex(10_000);
        let dropped = log.compact(LogIndex(5_000), Keep::NOTHING);
        assert_eq!(dropped.len(), 5_000);
        assert_eq!(log.behind.capacity(), 0);
        let keep = Keep {
            from: LogIndex(9_990),
            bytes_max: u64::MAX,
        };
        assert_eq!(log.compact(LogIndex(10_000), keep).len(), 4_989);
        assert_eq!(log.behind.len(), 11);
        assert!(log.behind.capacity() < 64, "{}", log.behind.capacity());
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        let log = log_with_terms(&[1, 1, 4, 4, 4, 5]);
        assert_eq!(
            log.find_conflict_by_term(LogIndex(6), Term(3), LogIndex(0)),
            (LogIndex(2), Term(1))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(9), Term(4), LogIndex(0)),
            (LogIndex(5), Term(4))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(6), Term(0), LogIndex(0)),
            (LogIndex(0), Term(0))
        );
    }

    #[test]
    fn slice_respects_entry_and_byte_limits() {
        let log = log_with_terms(&[1; 10]);
        assert_eq!(log.slice::<Vec<Entry>>(LogIndex(1), 3, u64::MAX).len(), 3);
        let one = entry(1, 1).size_bytes();
        assert_eq!(log.slice::<Vec<Entry>>(LogIndex(1), 100, one * 2).len(), 2);
        assert_eq!(
            log.slice::<Vec<Entry>>(LogIndex(1), 100, 1).len(),
            1,
            "one entry always travels"
        );
        assert!(
            log.slice::<Vec<Entry>>(LogIndex(11), 100, u64::MAX)
                .is_empty()
        );
    }

    /// Found in review: a snapshot replacing a log of another leader's entries left
    /// `persisted` at the snapshot's index while only the committed prefix on disk was the
    /// snapshot's, before the snapshot itself was durable.
    #[test]
    fn a_snapshot_over_another_leaders_entries_keeps_only_the_committed_prefix_persisted() {
        let mut log = log_with_terms(&[1; 10].into_iter().chain([2; 15]).collect::<Vec<_>>());
        log.committed = LogIndex(10);
        log.install_snapshot(LogIndex(20), Term(3));
        assert_eq!(log.persisted, LogIndex(10));
    }

    #[test]
    fn persisted_to_ignores_a_replaced_entry() {
        let mut log = log_with_terms(&[1, 1]);
        log.persisted = LogIndex(0);
        log.persisted_to(LogIndex(2), Term(9), 0);
        assert_eq!(log.persisted, LogIndex(0));
        log.persisted_to(LogIndex(2), Term(1), 0);
        assert_eq!(log.persisted, LogIndex(2));
    }
}
