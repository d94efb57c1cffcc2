//! What a simulated node keeps across crashes, and its state machine (a hash chain).

use bytes::Bytes;

use crate::raft::{
    AppendResponse, Entry, HardState, LogIndex, Message, MessageBody, Persisted, Snapshot, Term,
    VoteResponse,
};

/// The durable state of one node: only what a completed Ready wrote.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Whether what `message` promises is on this disk when it is sent, as a node must make
    /// it before it answers: a vote granted (the term and the vote), a successful append
    /// (the term, and the log up to its index), a heartbeat answered (the term). Raft hands
    /// such answers out only after the Ready that holds them is persisted; an answer that
    /// went out before could be forgotten by a crash (a second vote in one term, acked
    /// entries lost), which the sweep would catch only by chance.
    pub fn holds_what_is_promised(&self, message: &Message) -> Result<(), String> {
        let (term, voted) = (self.hard_state.term, self.hard_state.vote);
        let short = |what: String| {
            Err(format!(
                "node {} sent {} to {} in term {} before {what} was durable (its disk: term {term}, \
                 vote {voted}, last index {})",
                message.from,
                message.body.name(),
                message.to,
                message.term,
                self.last_index()
            ))
        };
        match &message.body {
            MessageBody::VoteResponse(VoteResponse { reject: false })
                if term < message.term || (term == message.term && voted != message.to) =>
            {
                short(format!("its vote for {}", message.to))
            }
            // The log only in the answer's own term: an answer of an older term may go out
            // after a newer leader cut the log it acknowledged, safely (the node is no longer
            // counted on in that term's quorums).
            MessageBody::AppendResponse(AppendResponse {
                reject: false,
                index,
                ..
            }) if term < message.term || (term == message.term && self.last_index() < *index) => {
                short(format!("its log up to {index}"))
            }
            MessageBody::HeartbeatResponse(_) if term < message.term => {
                short("its term".to_string())
            }
            _ => Ok(()),
        }
    }

    /// The term of the entry at `index` on this disk (the snapshot's, at its index).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.meta.index {
            return Some(self.snapshot.meta.term);
        }
        let first = self.entries.first()?.index;
        let at = usize::try_from(index.0.checked_sub(first.0)?).ok()?;
        self.entries.get(at).map(|entry| entry.term)
    }

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

    pub fn last_index(&self) -> LogIndex {
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
        // Zero-padded chunks would not tell "a" from "a\0", nor the kinds apart.
        self.hash = fold(self.hash, entry.data.len() as u64);
        self.hash = fold(self.hash, entry.kind as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{HeartbeatResponse, NodeId};

    fn answer(term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(term),
            body,
        }
    }

    fn disk(term: u64, vote: u64, last: u64) -> Disk {
        let entry = |index| Entry {
            term: Term(term),
            index: LogIndex(index),
            kind: crate::raft::EntryKind::Normal,
            data: Bytes::new(),
        };
        Disk {
            hard_state: HardState {
                term: Term(term),
                vote: NodeId(vote),
                commit: LogIndex::ZERO,
            },
            entries: (1..=last).map(entry).collect(),
            ..Disk::default()
        }
    }

    /// Found in review: the chain folded payloads in zero-padded words, and not the kind.
    #[test]
    fn the_state_tells_payloads_and_kinds_apart() {
        let after = |kind, data: &'static [u8]| {
            let mut state = StateMachine::default();
            state.apply(&Entry {
                term: Term(1),
                index: LogIndex(1),
                kind,
                data: Bytes::from_static(data),
            });
            state
        };
        let normal = crate::raft::EntryKind::Normal;
        assert_ne!(after(normal, b"a"), after(normal, b"a\0"));
        assert_ne!(
            after(normal, b"x"),
            after(crate::raft::EntryKind::ConfChange, b"x")
        );
    }

    #[test]
    fn term_at_reads_the_snapshot_and_the_entries() {
        let mut on_disk = disk(3, 1, 5);
        assert_eq!(on_disk.term_at(LogIndex(4)), Some(Term(3)));
        assert_eq!(on_disk.term_at(LogIndex(6)), None);
        on_disk.snapshot.meta.index = LogIndex(2);
        on_disk.snapshot.meta.term = Term(2);
        on_disk.entries.retain(|e| e.index > LogIndex(2));
        assert_eq!(on_disk.term_at(LogIndex(2)), Some(Term(2)));
        assert_eq!(on_disk.term_at(LogIndex(1)), None);
        assert_eq!(on_disk.term_at(LogIndex(3)), Some(Term(3)));
    }

    /// An answer is checked against what its sender's disk holds when it goes out.
    #[test]
    fn an_answer_ahead_of_the_disk_is_caught() {
        let vote = MessageBody::VoteResponse(VoteResponse { reject: false });
        let refusal = MessageBody::VoteResponse(VoteResponse { reject: true });
        let appended = |index| {
            MessageBody::AppendResponse(AppendResponse {
                index: LogIndex(index),
                reject: false,
                reject_hint: LogIndex::ZERO,
                hint_term: Term::ZERO,
            })
        };
        let heartbeat = MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: 1,
            short_of_commit: None,
        });
        let durable = disk(3, 1, 5);
        for ok in [
            answer(3, vote.clone()),
            answer(3, appended(5)),
            answer(2, appended(4)),
            // Of an older term, past a log a newer leader cut since (found in review).
            answer(2, appended(9)),
            answer(3, heartbeat.clone()),
            answer(4, refusal),
        ] {
            assert_eq!(durable.holds_what_is_promised(&ok), Ok(()), "{ok:?}");
        }
        let voted_other = disk(3, 7, 5);
        for (disk, early) in [
            (&durable, answer(4, vote.clone())),
            (&voted_other, answer(3, vote)),
            (&durable, answer(3, appended(6))),
            (&durable, answer(4, appended(5))),
            (&durable, answer(4, heartbeat)),
        ] {
            let caught = disk.holds_what_is_promised(&early).expect_err("caught");
            assert!(caught.contains("before"), "{caught}");
        }
    }
}
