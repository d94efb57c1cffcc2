//! Writes a follower forwards to its leader for a client that cannot reach the leader: the
//! leader's side (the follower's is `Group::forward_write`).

use bytes::Bytes;

use crate::kv::Command;
use crate::proto::topology::group_of;
use crate::raft::{NodeId, Role, Term};
use crate::shard::group::Answer;

use super::{Core, CoreLog, CoreNet};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// The entries `data` that `from`, a follower of `group` in `term`, forwarded: their
    /// commands are taken in as a client's writes are, where this node leads the group in
    /// that term and takes writes (stopping, or short of room, it drops them; so it does each
    /// write that would take its key-value state past its quota). A payload that is not a run
    /// of valid commands is dropped whole: each command is checked before it is proposed.
    /// Nothing is said back: the follower answers its client when it applies the write, or
    /// when it stops waiting.
    pub(super) fn take_forwarded(
        &mut self,
        group: u32,
        (from, term): (NodeId, Term),
        data: Vec<Bytes>,
        answers: &mut Vec<Answer>,
    ) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        if g.replica.role() != Role::Leader || self.stopping_by.is_some() {
            return;
        }
        if !self.is_member(group, from) {
            return;
        }
        if let Some(why) = self.no_room_for_writes(group, g) {
            tracing::debug!(group, from = from.0, why, "forwarded writes dropped");
            return;
        }
        let mut commands = Vec::new();
        let total = self.shape.groups_total;
        for payload in &data {
            let decoded = Command::decode_all(payload).map_err(|e| e.to_string());
            let misplaced = |commands: &Vec<Command>| {
                let mut keys = commands
                    .iter()
                    .flat_map(|c| c.ops.iter().map(|op| op.key()));
                keys.any(|key| group_of(key, total) != group)
            };
            match decoded {
                Ok(decoded) if misplaced(&decoded) => {
                    let why = "a key of another group";
                    tracing::warn!(group, from = from.0, why, "forwarded writes dropped");
                    return;
                }
                Ok(decoded) => commands.extend(decoded),
                Err(why) => {
                    tracing::warn!(
                        group,
                        from = from.0,
                        why,
                        "a forwarded entry that is not a run of valid commands: dropped"
                    );
                    return;
                }
            }
        }
        commands.retain(|c| self.at_kv_quota(c, g).is_none() || g.kv.decided(c).is_some());
        self.reach.relayed_by(from.0);
        if let Some(g) = self.groups.get_mut(&group) {
            g.take_forwarded(term, commands, answers);
        }
    }

    /// Whether `node` is a member of `group` here (a voter or a learner, of either half of a
    /// joint configuration): only members forward to its leader.
    pub(super) fn is_member(&self, group: u32, node: NodeId) -> bool {
        (self.groups.get(&group)).is_some_and(|g| g.replica.conf_state().members().contains(&node))
    }
}
