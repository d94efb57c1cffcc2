//! What the fake logs of the core tests hold of snapshots received from peers.

use cohort::raft::{GroupId, LogIndex, MessageBody, Term};
use cohort::shard::core::Received;

/// The highest index of the whole snapshots of `group` in `received` that came in messages
/// of `min_term` or later (see `CoreLog::snapshot_receiving`).
pub fn highest_of(received: &[Received], group: GroupId, min_term: Term) -> Option<LogIndex> {
    let of_group = (received.iter()).filter(|r| r.group == group && r.message.term >= min_term);
    of_group
        .filter_map(|r| match &r.message.body {
            MessageBody::InstallSnapshot(snapshot) => Some(snapshot.meta.index),
            _ => None,
        })
        .max()
}
