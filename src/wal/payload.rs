//! Payload layouts of the record kinds (see `RecordKind`): encoding and checked decoding.

use super::format::{RecordKind, u32_at, u64_at};
use super::types::{HardState, SnapshotMarker};

/// Bytes before the first entry of an entries record.
pub const ENTRIES_PREFIX_BYTES: usize = 16;
/// Bytes before each entry's payload inside an entries record.
pub const ENTRY_PREFIX_BYTES: usize = 16;
/// Bytes before the first group of a checkpoint record.
pub const CHECKPOINT_PREFIX_BYTES: usize = 8;
/// Bytes per group in a checkpoint record.
pub const CHECKPOINT_GROUP_BYTES: usize = 56;

pub fn entries_prefix(first_index: u64, count: u32) -> [u8; ENTRIES_PREFIX_BYTES] {
    let mut out = [0u8; ENTRIES_PREFIX_BYTES];
    out[0..8].copy_from_slice(&first_index.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out
}

pub fn entry_prefix(term: u64, len_bytes: u32) -> [u8; ENTRY_PREFIX_BYTES] {
    let mut out = [0u8; ENTRY_PREFIX_BYTES];
    out[0..8].copy_from_slice(&term.to_le_bytes());
    out[8..12].copy_from_slice(&len_bytes.to_le_bytes());
    out
}

/// The bytes of a hard state's payload.
pub const HARD_STATE_BYTES: usize = 24;

pub fn hard_state(state: HardState) -> [u8; HARD_STATE_BYTES] {
    let mut out = [0u8; HARD_STATE_BYTES];
    out[0..8].copy_from_slice(&state.term.to_le_bytes());
    out[8..16].copy_from_slice(&state.vote.to_le_bytes());
    out[16..24].copy_from_slice(&state.commit.to_le_bytes());
    out
}

/// The bytes of a snapshot marker's payload.
pub const SNAPSHOT_BYTES: usize = 16;

pub fn snapshot(marker: SnapshotMarker) -> [u8; SNAPSHOT_BYTES] {
    let mut out = [0u8; SNAPSHOT_BYTES];
    out[0..8].copy_from_slice(&marker.index.to_le_bytes());
    out[8..16].copy_from_slice(&marker.term.to_le_bytes());
    out
}

pub fn truncate(from_index: u64) -> [u8; 8] {
    from_index.to_le_bytes()
}

/// One group's line in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointGroup {
    pub group: u64,
    pub hard_state: Option<HardState>,
    pub snapshot: SnapshotMarker,
}

pub fn checkpoint(groups: &[CheckpointGroup]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_PREFIX_BYTES + groups.len() * 56);
    out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for line in groups {
        let state = line.hard_state.unwrap_or_default();
        let flags = u64::from(line.hard_state.is_some());
        for word in [
            line.group,
            flags,
            state.term,
            state.vote,
            state.commit,
            line.snapshot.index,
            line.snapshot.term,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out
}

/// A decoded payload. Entries are returned as positions inside the payload so the caller can
/// point at them in the map without copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Entries {
        first_index: u64,
        /// (term, payload offset within the record payload, payload length)
        entries: Vec<(u64, usize, usize)>,
    },
    HardState(HardState),
    Snapshot(SnapshotMarker),
    Truncate {
        from_index: u64,
    },
    Checkpoint(Vec<CheckpointGroup>),
}

/// Decodes a payload whose checksum already verified. `None` means a record that verifies
/// but does not parse: a bug of the writer or a format this code does not know.
pub fn decode(kind: RecordKind, payload: &[u8]) -> Option<Payload> {
    match kind {
        RecordKind::Entries => decode_entries(payload),
        RecordKind::HardState => (payload.len() == 24).then(|| {
            Payload::HardState(HardState {
                term: u64_at(payload, 0),
                vote: u64_at(payload, 8),
                commit: u64_at(payload, 16),
            })
        }),
        RecordKind::Snapshot => (payload.len() == 16).then(|| {
            Payload::Snapshot(SnapshotMarker {
                index: u64_at(payload, 0),
                term: u64_at(payload, 8),
            })
        }),
        RecordKind::Truncate => (payload.len() == 8).then(|| Payload::Truncate {
            from_index: u64_at(payload, 0),
        }),
        RecordKind::Checkpoint => decode_checkpoint(payload),
    }
}

fn decode_entries(payload: &[u8]) -> Option<Payload> {
    if payload.len() < ENTRIES_PREFIX_BYTES {
        return None;
    }
    let first_index = u64_at(payload, 0);
    let count = u32_at(payload, 8) as usize;
    // Each entry needs at least its prefix: a count beyond that is garbage, not an allocation.
    if count > payload.len() / ENTRY_PREFIX_BYTES {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = ENTRIES_PREFIX_BYTES;
    for _ in 0..count {
        let prefix = payload.get(at..at + ENTRY_PREFIX_BYTES)?;
        let term = u64_at(prefix, 0);
        let len_bytes = u32_at(prefix, 8) as usize;
        let start = at + ENTRY_PREFIX_BYTES;
        payload.get(start..start + len_bytes)?;
        entries.push((term, start, len_bytes));
        at = start + len_bytes;
    }
    (at == payload.len()).then_some(Payload::Entries {
        first_index,
        entries,
    })
}

fn decode_checkpoint(payload: &[u8]) -> Option<Payload> {
    if payload.len() < CHECKPOINT_PREFIX_BYTES {
        return None;
    }
    let count = u32_at(payload, 0) as usize;
    if payload.len() != CHECKPOINT_PREFIX_BYTES + count * CHECKPOINT_GROUP_BYTES {
        return None;
    }
    let groups = (0..count)
        .map(|i| {
            let line = &payload[CHECKPOINT_PREFIX_BYTES + i * CHECKPOINT_GROUP_BYTES..];
            CheckpointGroup {
                group: u64_at(line, 0),
                hard_state: (u64_at(line, 8) & 1 == 1).then(|| HardState {
                    term: u64_at(line, 16),
                    vote: u64_at(line, 24),
                    commit: u64_at(line, 32),
                }),
                snapshot: SnapshotMarker {
                    index: u64_at(line, 40),
                    term: u64_at(line, 48),
                },
            }
        })
        .collect();
    Some(Payload::Checkpoint(groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_payload_round_trips() {
        let mut payload = entries_prefix(10, 2).to_vec();
        payload.extend_from_slice(&entry_prefix(3, 2));
        payload.extend_from_slice(b"ab");
        payload.extend_from_slice(&entry_prefix(4, 0));
        let decoded = decode(RecordKind::Entries, &payload).expect("parses");
        assert_eq!(
            decoded,
            Payload::Entries {
                first_index: 10,
                entries: vec![(3, 32, 2), (4, 50, 0)],
            }
        );
        assert_eq!(
            decode(RecordKind::Entries, &payload[..payload.len() - 1]),
            None
        );
    }

    #[test]
    fn checkpoint_round_trips() {
        let groups = vec![
            CheckpointGroup {
                group: 1,
                hard_state: Some(HardState {
                    term: 2,
                    vote: 3,
                    commit: 4,
                }),
                snapshot: SnapshotMarker { index: 5, term: 6 },
            },
            CheckpointGroup {
                group: 7,
                hard_state: None,
                snapshot: SnapshotMarker::default(),
            },
        ];
        let bytes = checkpoint(&groups);
        assert_eq!(
            decode(RecordKind::Checkpoint, &bytes),
            Some(Payload::Checkpoint(groups))
        );
    }
}
