//! What a simulated node keeps across crashes, and its state machine (a hash chain).

use bytes::Bytes;

use crate::raft::{Entry, HardState, LogIndex, Persisted, Snapshot};

/// The durable state of one node: only what a completed Ready wrote.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Disk {
    pub fn from_persisted(persisted: Persisted) -> Disk {
        Disk {
            hard_state: persisted.hard_state,
            snapshot: persisted.snapshot,
            entries: persisted.entries,
        }
    }

    pub fn to_persisted(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.snapshot.meta.index, |e| e.index)
    }

    /// Make `snapshot` the base of the log. Entries after it stay only if the log agrees with
    /// it (holds its index with its term, as after a compaction); otherwise they belong to
    /// the log it replaced and go, as the WAL's `settle` drops them.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        let agrees = (self.snapshot.meta.index, self.snapshot.meta.term) == (index, term)
            || self
                .entries
                .iter()
                .any(|e| e.index == index && e.term == term);
        if agrees {
            self.entries.retain(|e| e.index > index);
        } else {
            self.entries.clear();
        }
        self.snapshot = snapshot;
    }

    /// Write entries; an entry at or below the last index replaces the suffix from there.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index > self.last_index().next() {
            return Err(format!(
                "Ready leaves a gap: disk ends at {}, Ready starts at {}",
                self.last_index(),
                first.index
            ));
        }
        if first.index <= self.snapshot.meta.index {
            return Err(format!(
                "Ready rewrites entry {} below snapshot {}",
                first.index, self.snapshot.meta.index
            ));
        }
        self.entries.retain(|e| e.index < first.index);
        self.entries.extend_from_slice(entries);
        Ok(())
    }
}

/// The simulated state machine: a hash over every applied entry, in order. Two replicas
/// that applied different entries at any index end with different hashes from there on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    pub applied: LogIndex,
    pub hash: u64,
}

impl StateMachine {
    pub fn apply(&mut self, entry: &Entry) {
        assert_eq!(
            entry.index,
            self.applied.next(),
            "entries are applied in order without gaps"
        );
        self.applied = entry.index;
        self.hash = fold(self.hash, entry.index.0);
        self.hash = fold(self.hash, entry.term.0);
        for chunk in entry.data.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.hash = fold(self.hash, u64::from_le_bytes(word));
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.applied.0.to_le_bytes());
        out.extend_from_slice(&self.hash.to_le_bytes());
        Bytes::from(out)
    }

    pub fn decode(data: &[u8]) -> StateMachine {
        if data.len() != 16 {
            return StateMachine::default();
        }
        let applied = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let hash = u64::from_le_bytes(data[8..].try_into().expect("8 bytes"));
        StateMachine {
            applied: LogIndex(applied),
            hash,
        }
    }
}

fn fold(hash: u64, value: u64) -> u64 {
    (hash ^ value)
        .wrapping_mul(0x0100_0000_01B3)
        .rotate_left(29)
        ^ 0x9E37_79B9_7F4A_7C15
}
