//! The room a node's WALs keep free on their disk for snapshots of its key-value states:
//! snapshots are what free a full log's old segments, so they must always fit.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes of each core's key-value states (as the write quota weighs them: keys, values
/// and 64 for each key, more than a snapshot file of them takes). The cores of a node share
/// its disk, so each WAL keeps room for all of them: snapshots of every group of every core,
/// written one after another, each replacing its group's last, never take more.
#[derive(Debug)]
pub struct StateBytes(Box<[AtomicU64]>);

impl StateBytes {
    pub fn new(cores: u16) -> StateBytes {
        StateBytes((0..cores.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    /// Core `core`'s states weigh `bytes` now.
    pub fn set(&self, core: u16, bytes: u64) {
        if let Some(slot) = self.0.get(usize::from(core)) {
            slot.store(bytes, Ordering::Relaxed);
        }
    }

    /// How many cores there are.
    pub fn cores(&self) -> u16 {
        u16::try_from(self.0.len()).unwrap_or(u16::MAX)
    }

    /// What every core's states weigh, as last set.
    pub fn total(&self) -> u64 {
        (self.0.iter())
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }
}

/// Why the next segment, of `segment_bytes`, must not be made where the disk has `available`
/// bytes free and the node's `cores` cores hold `states` bytes of key-value state, if it must
/// not: made, it would leave less than it keeps for snapshots of those states, and a log that
/// filled the disk then could not be freed (found by a tester: a node whose segments took the
/// disk but a few hundred KiB could not write the 2 MB snapshot that would free the oldest,
/// and took no writes for good). It keeps the states' bytes and two segments a core more: the
/// states may grow by as much as the log written before the next segment is looked at (the
/// rest of the active one, and the one made now). The log then takes no writes it can refuse,
/// and its groups that keep the oldest segment snapshot into the room kept; the segment they
/// free becomes the next.
pub fn room_not_kept(
    available: u64,
    segment_bytes: u64,
    states: u64,
    cores: u16,
) -> Option<String> {
    let growth = segment_bytes.saturating_mul(2 * u64::from(cores.max(1)));
    let kept = states.saturating_add(growth);
    if available >= segment_bytes.saturating_add(kept) {
        return None;
    }
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    Some(format!(
        "cannot make the next WAL segment ({:.1} MiB): the disk has {:.1} MiB free, and the \
         node keeps {:.1} MiB of it for snapshots of its key-value state ({:.1} MiB, and what \
         two segments a core may add to it), which free its log's old segments (its groups \
         snapshot now; with more room, the log grows again)",
        mib(segment_bytes),
        mib(available),
        mib(kept),
        mib(states)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the next segment is made only where it leaves room for snapshots of every
    /// core's state, and for two segments of growth a core.
    #[test]
    fn a_segment_is_made_only_where_it_leaves_room_for_the_states_snapshots() {
        let states = StateBytes::new(2);
        states.set(0, 3 << 20);
        states.set(1, 1 << 20);
        states.set(2, 1 << 40); // no such core: ignored
        assert_eq!(states.total(), 4 << 20);
        let segment = 1 << 20;
        // 4 MiB of state, 4 segments of growth, and the segment itself.
        assert_eq!(room_not_kept(9 << 20, segment, states.total(), 2), None);
        let why = room_not_kept((9 << 20) - 1, segment, states.total(), 2).expect("refused");
        assert!(why.contains("keeps 8.0 MiB"), "{why}");
        assert!(why.contains("state (4.0 MiB"), "{why}");
        // No state yet: the growth alone.
        assert_eq!(room_not_kept(3 << 20, segment, 0, 1), None);
        assert!(room_not_kept((3 << 20) - 1, segment, 0, 1).is_some());
    }
}
