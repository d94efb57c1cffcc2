//! What the fake logs of the core tests hold of snapshots received from peers.

use cohort::raft::{GroupId, LogIndex, Message, MessageBody};

/// The highest index of the whole snapshots of `group` in `received` (see
/// `CoreLog::snapshot_receiving`).
pub fn highest_of(received: &[(GroupId, Message)], group: GroupId) -> Option<LogIndex> {
    let of_group = received.iter().filter(|(g, _)| *g == group);
    of_group
        .filter_map(|(_, message)| match &message.body {
            MessageBody::InstallSnapshot(snapshot) => Some(snapshot.meta.index),
            _ => None,
        })
        .max()
}
