//! What the fake logs of the core tests hold of snapshots received from peers.

use cohort::raft::{GroupId, LogIndex, MessageBody};
use cohort::shard::core::Received;

/// The highest index of the whole snapshots of `group` in `received` (see
/// `CoreLog::snapshot_receiving`).
pub fn highest_of(received: &[Received], group: GroupId) -> Option<LogIndex> {
    let of_group = received.iter().filter(|r| r.group == group);
    of_group
        .filter_map(|r| match &r.message.body {
            MessageBody::InstallSnapshot(snapshot) => Some(snapshot.meta.index),
            _ => None,
        })
        .max()
}
