//! Snapshots of a core's groups: when one is due, taking it, compacting the log behind it,
//! and the snapshots received from leaders.

use bytes::Bytes;

use crate::kv::KvStore;
use crate::raft::{GroupId, LogIndex, Message, MessageBody, NodeId, Snapshot};

use super::{Core, CoreLog, CoreNet, ENTRY_IN_MEMORY_BYTES, SNAPSHOT_STATE_PER_LOG_BYTES_MAX};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// A whole snapshot from a peer: stored off the loop first (see
    /// [`CoreLog::receive_snapshot`]) if Raft may install it; stepped at once if it will not
    /// (an older term, or one its log already holds committed, which it answers).
    pub(super) fn receive_snapshot(&mut self, group: u32, message: Message) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let MessageBody::InstallSnapshot(snapshot) = &message.body else {
            return;
        };
        let replica = &g.replica;
        // Nothing is stored that Raft would refuse (a stored file is adopted at the next
        // start): a snapshot of an older term, one from another node than the leader of its
        // term (this one, or the one this replica follows: found in review), one of a shape
        // Raft refuses (a term after the message's), or one the group has past.
        let refused =
            !replica.may_lead(message.from, message.term) || replica.refuses_shape(&message);
        if refused || snapshot.meta.index <= replica.commit() {
            if let Err(error) = g.replica.step(message) {
                tracing::debug!(group, %error, "message refused");
            }
            return;
        }
        let index = snapshot.meta.index;
        if self
            .log
            .snapshot_receiving(GroupId(group), message.term)
            .is_some_and(|storing| storing >= index)
        {
            tracing::debug!(group, %index, "snapshot dropped: one as new is being stored");
            return;
        }
        self.log.receive_snapshot(GroupId(group), message);
    }

    /// Whether group `id` is due for a snapshot: enough entries (see
    /// [`SNAPSHOT_STATE_PER_LOG_BYTES_MAX`]), or enough bytes of entries, were applied since
    /// its last one. Whether or not it is held ([`Core::snapshot_held`]): a group found due
    /// after a Ready stays due, and is taken once no snapshot of it streams to a follower or
    /// is being loaded by one (see `Core::upkeep`). Judged only after a Ready, a held group
    /// was dropped, and one whose heartbeats go without a Ready (an idle one) waited for its
    /// next write to be found again (found in review).
    pub(super) fn snapshot_due(&self, id: u32) -> bool {
        let (every, every_bytes) = (self.shape.snapshot_entries, self.shape.snapshot_log_bytes);
        let group = &self.groups[&id];
        let since = group.replica.applying().0 - group.replica.snapshot_index().0;
        let applied_bytes = group.applied_bytes_since_snapshot;
        let state_bytes = group.replica.snapshot().data.len() as u64;
        let log_bytes = applied_bytes.saturating_add(since.saturating_mul(ENTRY_IN_MEMORY_BYTES));
        let log_worth_it =
            log_bytes.saturating_mul(SNAPSHOT_STATE_PER_LOG_BYTES_MAX) >= state_bytes;
        (every > 0 && since >= every && log_worth_it)
            || (every_bytes > 0 && applied_bytes >= every_bytes.max(state_bytes))
    }

    /// Whether group `id`'s entry and byte triggers wait (see [`Core::snapshot_due`]): a
    /// snapshot of it streams to a follower (compacting past it would leave that follower,
    /// once it holds it, a gap only the next snapshot fills, and under steady writes a stream
    /// that never catches up: the entries a compaction keeps behind the snapshot reach only
    /// so far), or one that received it whole lately is loading it (its log does not reach
    /// it yet). The log's size limit still snapshots such a group
    /// ([`CoreLog::groups_holding_old_segments`]).
    pub(super) fn snapshot_held(&self, id: u32) -> bool {
        self.streams.streaming(id) || self.follower_installing(id)
    }

    /// Whether a follower that acknowledged a snapshot of group `id` whole lately
    /// ([`SnapshotStreams::delivered_lately`]) is not known to hold it yet.
    pub(super) fn follower_installing(&self, id: u32) -> bool {
        let mut delivered = self.streams.delivered_lately(id).peekable();
        if delivered.peek().is_none() {
            return false;
        }
        let peers = self.groups[&id].replica.status().peers;
        delivered.any(|(peer, index)| {
            peers
                .iter()
                .any(|p| p.id == NodeId(peer) && p.match_index < index)
        })
    }

    /// Take a snapshot of group `id`'s state machine at its applied index and have the log
    /// encode it off the loop, unless the group applied nothing since its last snapshot,
    /// its last snapshot is still being encoded or stored, or a Ready of it in flight
    /// installs a snapshot. Other Readies of it in flight or waiting for room (new entries,
    /// committed entries to apply: all above what it applied) do not hold it up: under
    /// steady load the group always has one, and its log would grow until the load stopped;
    /// and on a full disk a Ready waiting for room may wait for the segments only this
    /// snapshot frees.
    pub(super) fn snapshot(&mut self, id: u32) {
        if !self.may_snapshot(id) {
            return;
        }
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        if group.kv.applied_index() <= group.replica.snapshot_index().0 {
            return;
        }
        group.applied_bytes_since_snapshot = 0;
        self.log
            .encode_snapshot(GroupId(id), group.kv.snapshot_job());
    }

    /// The snapshot of group `id` at `index` is encoded: compact the group's log into it and
    /// have the log store it.
    pub(super) fn compact(&mut self, id: u32, index: LogIndex, data: Bytes) -> Result<(), String> {
        let Some(group) = self.groups.get_mut(&id) else {
            return Ok(());
        };
        // Refused if a leader's snapshot overtook this one meanwhile, or a membership change
        // above `index` is pending (a later snapshot covers it).
        match group.replica.compact(index, data) {
            Ok(dropped) => self.log.release(dropped),
            Err(error) => {
                tracing::debug!(group = id, %error, "snapshot not used");
                return Ok(());
            }
        }
        let snapshot = group.replica.snapshot().clone();
        self.streams.renew_unstarted(id, &snapshot);
        self.log
            .snapshot_taken(GroupId(id), &snapshot)
            .map_err(|e| format!("group {id}: storing its snapshot failed: {e}"))
    }
}

/// A whole snapshot a peer sent, loaded and stored (see [`CoreLog::receive_snapshot`]).
pub struct Received {
    pub group: GroupId,
    /// The `InstallSnapshot` message, for Raft.
    pub message: Message,
    /// Its state machine, decoded off the loop (None for the empty snapshot before the
    /// first, which holds none).
    pub state: Option<KvStore>,
}

/// The state machine of a snapshot from a peer, if it holds one this node can load at the
/// snapshot's own index. Checked before Raft takes it: once taken, it is made durable, and
/// one that failed to load then would stop the node at every restart. A refused one is
/// dropped, as a lost message is. Decoded off the loop, the state machine then goes to the
/// group, which installs it as it is.
pub fn load_snapshot(snapshot: &Snapshot) -> Result<Option<KvStore>, String> {
    let index = snapshot.meta.index.0;
    if snapshot.data.is_empty() {
        // Installed, it would move the log to `index` and leave the state machine behind
        // (`Group::apply_ready` loads none from no bytes). This node's snapshots always hold
        // one, but for the empty one before the first (index 0), which is never sent.
        return match index {
            0 => Ok(None),
            _ => Err(format!("it holds no state machine, at index {index}")),
        };
    }
    match KvStore::decode_snapshot(&snapshot.data) {
        Ok(kv) if kv.applied_index() == index => Ok(Some(kv)),
        Ok(kv) => Err(format!(
            "its state machine is at {}, not at its index {index}",
            kv.applied_index()
        )),
        Err(error) => Err(format!("its state machine does not load: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{SnapshotMeta, Term};

    fn snapshot(index: u64, data: Bytes) -> Snapshot {
        let meta = SnapshotMeta {
            index: LogIndex(index),
            term: Term(2),
            conf_state: Default::default(),
        };
        Snapshot { meta, data }
    }

    #[test]
    fn a_received_snapshot_loads_only_if_its_state_machine_loads_at_its_index() {
        let mut kv = KvStore::new();
        kv.skip(3);
        let state = kv.encode_snapshot();
        assert!(load_snapshot(&snapshot(3, state.clone())).is_ok());
        assert!(load_snapshot(&snapshot(4, state)).is_err(), "another index");
        let garbage = Bytes::from_static(b"not a state machine");
        assert!(load_snapshot(&snapshot(3, garbage)).is_err());
        // No state machine at all: its log would move on and its state machine stay behind.
        assert!(load_snapshot(&snapshot(3, Bytes::new())).is_err());
        assert!(load_snapshot(&snapshot(0, Bytes::new())).is_ok());
    }
}
