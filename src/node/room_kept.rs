//! The room a node's WALs keep free on their disk for snapshots of its key-value states:
//! snapshots are what free a full log's old segments, so they must always fit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The room each core keeps for snapshots of its groups (see [`room_for_snapshots`]), as it
/// last counted it. The cores of a node share its disk, so each WAL keeps room for all of them.
#[derive(Debug)]
pub struct RoomKept(Box<[AtomicU64]>);

impl RoomKept {
    pub fn new(cores: u16) -> RoomKept {
        RoomKept((0..cores.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    /// Core `core` keeps `bytes` now.
    pub fn set(&self, core: u16, bytes: u64) {
        if let Some(slot) = self.0.get(usize::from(core)) {
            slot.store(bytes, Ordering::Relaxed);
        }
    }

    /// How many cores there are.
    pub fn cores(&self) -> u16 {
        u16::try_from(self.0.len()).unwrap_or(u16::MAX)
    }

    /// What every core keeps, as last set.
    pub fn total(&self) -> u64 {
        (self.0.iter())
            .map(|slot| slot.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }
}

/// The room snapshots of one core's groups take on its disk beyond their files there, taken
/// one after another, each file replacing its group's last once written: each group's state
/// (`states`: group, about the bytes a file of it takes, `KvStore::snapshot_bytes_estimate`)
/// past its newest file (`files`), and the largest file, which is on the disk beside the new
/// one until that is written. Not the whole state: most of it is in files already (review
/// 295: counted again, a node whose state was half its disk took no writes but between
/// snapshots of all of it).
pub fn room_for_snapshots(
    states: impl Iterator<Item = (u32, u64)>,
    files: &BTreeMap<u32, u64>,
) -> u64 {
    let file = |group| files.get(&group).copied().unwrap_or(0);
    let growth = states.fold(0, |sum: u64, (group, bytes)| {
        sum.saturating_add(bytes.saturating_sub(file(group)))
    });
    growth.saturating_add(files.values().copied().max().unwrap_or(0))
}

/// Why the next segment, of `segment_bytes`, must not be made where the disk has `available`
/// bytes free, the node's `cores` cores keep `kept` for snapshots ([`room_for_snapshots`]),
/// if it must not: made, it would leave less than that and two segments a core (what the
/// states may grow by in the log written before the next segment is looked at: the rest of
/// the active one, and the one made now), and a log that filled the disk then could not be
/// freed (found by a tester: a node whose segments took the disk but a few hundred KiB could
/// not write the 2 MB snapshot that would free the oldest, and took no writes for good). The
/// log then takes no writes it can refuse, and its groups that keep the oldest segment
/// snapshot into the room kept; the segment they free becomes the next.
pub fn room_not_kept(available: u64, segment_bytes: u64, kept: u64, cores: u16) -> Option<String> {
    let growth = segment_bytes.saturating_mul(2 * u64::from(cores.max(1)));
    let kept = kept.saturating_add(growth);
    if available >= segment_bytes.saturating_add(kept) {
        return None;
    }
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    Some(format!(
        "cannot make the next WAL segment ({:.1} MiB): the disk has {:.1} MiB free, and the \
         node keeps {:.1} MiB of it for the snapshots that free its log's old segments (its \
         key-value state past its snapshot files, the largest file, and what two segments a \
         core may add); its groups snapshot now, and with more room the log grows again",
        mib(segment_bytes),
        mib(available),
        mib(kept)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the next segment is made only where it leaves the room kept for snapshots of
    /// every core's groups, and two segments of growth a core.
    #[test]
    fn a_segment_is_made_only_where_it_leaves_room_for_the_states_snapshots() {
        let states = RoomKept::new(2);
        states.set(0, 3 << 20);
        states.set(1, 1 << 20);
        states.set(2, 1 << 40); // no such core: ignored
        assert_eq!(states.total(), 4 << 20);
        let segment = 1 << 20;
        // 4 MiB kept, 4 segments of growth, and the segment itself.
        assert_eq!(room_not_kept(9 << 20, segment, states.total(), 2), None);
        let why = room_not_kept((9 << 20) - 1, segment, states.total(), 2).expect("refused");
        assert!(why.contains("keeps 8.0 MiB"), "{why}");
        // Nothing kept yet: the growth alone.
        assert_eq!(room_not_kept(3 << 20, segment, 0, 1), None);
        assert!(room_not_kept((3 << 20) - 1, segment, 0, 1).is_some());
    }

    /// Goal (review 295): the room kept is the state past its snapshot files and the largest
    /// file, not the whole state again: a state of 52 GiB in files of about as much leaves
    /// the log its disk's other 48 GiB.
    #[test]
    fn the_room_kept_is_the_state_past_its_files_and_the_largest_file() {
        let files = BTreeMap::from([(0, 10), (1, 30), (2, 5)]);
        // Group 0 grew by 5, group 1 shrank (its next file is smaller), group 3 has no file.
        let states = [(0, 15), (1, 20), (2, 5), (3, 7)];
        assert_eq!(room_for_snapshots(states.into_iter(), &files), 5 + 7 + 30);
        assert_eq!(room_for_snapshots(std::iter::empty(), &BTreeMap::new()), 0);
        let gib = 1u64 << 30;
        let big_files: BTreeMap<u32, u64> = (0..64).map(|g| (g, 52 * gib / 64)).collect();
        let big_states = (0..64).map(|g| (g, 52 * gib / 64));
        let kept = room_for_snapshots(big_states, &big_files);
        assert_eq!(kept, 52 * gib / 64);
        assert_eq!(room_not_kept(48 * gib, 64 << 20, kept, 1), None);
    }
}
