//! Whether a core takes writes: the room in its log, its syncs, its peers' logs, the
//! key-value quota; and what it tells its peers of them.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::raft::NodeId;
use crate::shard::group::Group;
use crate::wire::SenderSays;

use super::{Core, CoreLog, CoreNet};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// Tells the peers whether the key-value state is at its quota after each turn's
    /// applies, before the loop yields: the answers and the batches of the turn leave only
    /// then, so a peer hears a follower's freed room with the answer to the heartbeat that
    /// made it apply the delete. (Counted once a tick, a put right after the delete that made
    /// room for it was refused `NoSpace`, and writes were taken past the quota until the
    /// tick: found by a tester.)
    pub(super) fn tell_peers_kv_state(&mut self) {
        let quota = self.shape.kv_quota_bytes;
        let kv_full = quota > 0 && self.kv_bytes.get() >= quota;
        self.say(|says| says.kv_full = kv_full);
    }

    /// Tells the peers, if it changed, whether this core's log takes no writes it could
    /// commit: it cannot grow, or a sync is stuck ([`Core::sync_stuck`]). They then hand it
    /// no group and count it out of a majority that can store a write.
    pub(super) fn tell_peers_log_state(&mut self) {
        let stuck = self.sync_stuck();
        if stuck != self.said_sync_stuck {
            self.said_sync_stuck = stuck;
            if stuck {
                tracing::warn!(
                    core = self.shape.core,
                    ticks = self.sync_patience_ticks(),
                    "a sync of the log has not ended in this many ticks: the device may have \
                     stopped answering; this core hands the groups it leads over"
                );
            } else {
                tracing::info!(core = self.shape.core, "the log's syncs end again");
            }
        }
        // A stopping node is to be handed no group, as one whose log is full.
        let log_full = self.log.short_of_space().is_some() || stuck || self.stopping_by.is_some();
        self.say(|says| says.log_full = log_full);
    }

    /// Tells the peers what this core says of itself, if `change` changes it.
    pub(super) fn say(&mut self, change: impl FnOnce(&mut SenderSays)) {
        let mut says = self.said;
        change(&mut says);
        if says != self.said {
            self.said = says;
            self.net.say(says);
        }
    }

    /// Why this core takes no writes, for `cohort status`: what [`Core::tell_peers_log_state`]
    /// tells its peers, in words.
    pub(super) fn refuses_writes(&self) -> Option<String> {
        if let Some(why) = self.log.short_of_space() {
            return Some(format!("its log cannot grow: {why}"));
        }
        let began = self
            .persisting
            .iter()
            .find(|p| p.synced.is_none())?
            .began_tick;
        self.said_sync_stuck.then(|| {
            format!(
                "a sync of its log has not ended in {} ticks: the device may have stopped \
                 answering",
                self.ticks - began
            )
        })
    }

    /// Whether a sync of the log has been in flight for [`Core::sync_patience_ticks`]: a
    /// leader here then hands its groups over, as when its log cannot grow. Its followers hear
    /// from it (heartbeats need no sync) and would never elect another, while it commits
    /// nothing: a device that stopped answering would hold its groups for ever. It cannot
    /// lead again meanwhile: a campaign's vote must be durable before it asks for any.
    ///
    /// A tenth of that wait must be ticks the core was awake for (`Core::heard_ticks`, a
    /// stall of its own counted as one): a tester's leader, stopped with SIGSTOP for 1.5 s
    /// and continued, counted the pause's ticks before it read the end of a sync that ended
    /// meanwhile (io_uring hands it over when the thread next asks, some turns on), warned
    /// that its device had stopped answering, and handed its groups over. A device whose
    /// hangs stall the executor itself (a buffered write throttled, in the fallback mode) is
    /// then found after that many stalls.
    pub(super) fn sync_stuck(&self) -> bool {
        let patience = self.sync_patience_ticks();
        self.persisting.iter().any(|p| {
            p.synced.is_none()
                && self.ticks >= p.began_tick + patience
                && self.heard_ticks >= p.began_heard_tick + patience.div_ceil(10)
        })
    }

    /// See [`sync_patience_ticks`].
    pub(super) fn sync_patience_ticks(&self) -> u64 {
        let Some(group) = self.groups.values().next() else {
            return u64::MAX;
        };
        sync_patience_ticks(
            group.replica.election_timeout_ticks(),
            self.shape.tick_length,
        )
    }

    /// While a peer says its key-value state holds its quota, leaders send each new commit
    /// index at once (without `--broadcast-commit`, at the next heartbeat or append): a
    /// follower applies the delete that makes room as its leader does, and says so with its
    /// answer, so that a put right after the delete's answer is not refused for the
    /// follower's quota (found by a tester: up to three times, within 27 ms of the delete).
    /// Only where such a peer counts ([`Core::members_at_kv_quota`]): one that died saying so
    /// stays in the set until it comes back, and the core's leaders sent each commit at once
    /// meanwhile, for nothing. Called when a peer says it, and at every tick while one has
    /// or while a group broadcasts, as peers fall silent or come back.
    pub(super) fn broadcast_commits_while_peers_kv_full(&mut self) {
        if self.peers_kv_full.is_empty() && !self.broadcasting_commits {
            return;
        }
        let marks: Vec<(u32, bool, bool)> = (self.groups.iter())
            .map(|(&id, group)| {
                let on = !self.members_at_kv_quota(group).is_empty();
                (id, group.replica.broadcasts_commits_now(), on)
            })
            .collect();
        self.broadcasting_commits = marks.iter().any(|&(_, _, on)| on);
        // Only the groups whose mark changes are woken: at every tick while a peer is full,
        // waking each group kept every one awake (review 319).
        for (id, was, on) in marks {
            if was != on
                && let Some(group) = self.groups.get_mut(&id)
            {
                group.replica.broadcast_commits_for_now(on);
            }
        }
    }

    /// Why `command` is refused for a key-value quota, if it is: it may add to states that
    /// hold one already, this core's, or that of a member of `group` that answers (a
    /// follower applies what its leader commits, so its quota is kept where the group is led,
    /// as etcd's space alarm stops writes to the whole cluster; found in review: a follower
    /// on a smaller machine grew without bound). A member that does not answer applies
    /// nothing meanwhile (it applies what was taken once it is back, past its quota if it
    /// must): one not heard from for an election timeout is not waited for (review 286: a
    /// member killed at its quota kept its flag until Raft counted it inactive, up to two
    /// election timeouts, and puts were refused that long after deletes made room; review
    /// 288: four heartbeat intervals, 80 ms by default, took a busy member for gone). (A
    /// retry of a write decided before, or still in flight, adds nothing: [`Core::route`]
    /// answers it from the session, or lets it wait for its write.)
    pub(super) fn at_kv_quota(
        &self,
        command: &crate::kv::Command,
        group: &Group,
    ) -> Option<String> {
        if !command.may_add_data() {
            return None;
        }
        self.kv_full(group)
    }

    /// Why writes that may add data are refused in `group` (see [`Core::at_kv_quota`]).
    pub(super) fn kv_full(&self, group: &Group) -> Option<String> {
        let (node, core, quota) = (
            self.shape.node_id,
            self.shape.core,
            self.shape.kv_quota_bytes,
        );
        let kv_bytes = self.kv_bytes.get();
        if quota > 0 && kv_bytes >= quota {
            return Some(format!(
                "node {node} takes no writes that may add data: the key-value state of its \
                 core {core} holds {} of keys and values, at its quota of {} (its share of \
                 `serve --kv-quota-mib`); deletes and gets are taken",
                mib(kv_bytes),
                mib(quota)
            ));
        }
        let full = self.members_at_kv_quota(group);
        let full: Vec<String> = full.iter().map(u64::to_string).collect();
        (!full.is_empty()).then(|| {
            format!(
                "node {node} takes no writes that may add data: the key-value state of node(s) \
                 {} holds its quota (`serve --kv-quota-mib`) on core {core}; deletes and gets \
                 are taken",
                full.join(", ")
            )
        })
    }

    /// The members of `group` whose same core says its key-value state holds its quota and
    /// that count for it: Raft counts them active, and they were heard from within an
    /// election timeout (see [`Core::at_kv_quota`]).
    fn members_at_kv_quota(&self, group: &Group) -> BTreeSet<u64> {
        if self.peers_kv_full.is_empty() {
            return BTreeSet::new();
        }
        let conf = group.replica.conf_state();
        let members = (conf.voters.iter())
            .chain(&conf.voters_outgoing)
            .chain(&conf.learners)
            .chain(&conf.learners_next);
        members
            .filter(|m| {
                self.peers_kv_full.contains(&m.0)
                    && group.replica.peer_answers(**m)
                    && !self.gone(**m, group)
            })
            .map(|m| m.0)
            .collect()
    }

    /// Why `group`, led here, cannot store a write now, if so: this node's log cannot grow,
    /// or a majority of its voters cannot take the write, so it could not commit: their logs
    /// cannot grow (as their batches say), or, with one of them full, they have not answered
    /// for an election timeout or two (a leader that still hears from the full node keeps
    /// its term, and took writes that could only wait out their clients' timeouts, each
    /// group's uncommitted entries growing to their bound).
    pub(super) fn no_room_for_writes(&self, id: u32, group: &Group) -> Option<String> {
        let me = self.shape.node_id;
        if let Some(why) = self.log.short_of_space() {
            return Some(format!(
                "node {me} takes no writes while it cannot grow its log: {why}"
            ));
        }
        self.voters_cannot_take(id, group)
    }

    /// Why a majority of `group`'s voters cannot take an entry now, if so (see
    /// [`Core::no_room_for_writes`]): a new leader then cannot commit one of its term, and
    /// serves no linearizable read. Its own log aside: short of room, it still writes that
    /// entry (the room kept in its active segment is for such records).
    pub(super) fn voters_cannot_take(&self, id: u32, group: &Group) -> Option<String> {
        let me = self.shape.node_id;
        if self.peers_log_full.is_empty() {
            return None;
        }
        let conf = group.replica.conf_state();
        let full = |voter: &NodeId| self.peers_log_full.contains(&voter.0);
        let silent = |voter: &NodeId| voter.0 != me && !group.replica.peer_answers(*voter);
        // Each half of a joint configuration must take the write on its own.
        let stuck: Vec<&Vec<NodeId>> = [&conf.voters, &conf.voters_outgoing]
            .into_iter()
            .filter(|voters| {
                let unable = voters.iter().filter(|v| full(v) || silent(v)).count();
                voters.iter().any(full) && unable * 2 >= voters.len().max(1)
            })
            .collect();
        (!stuck.is_empty()).then(|| {
            let nodes = |pick: &dyn Fn(&NodeId) -> bool| -> Vec<String> {
                let voters = stuck.iter().flat_map(|voters| voters.iter());
                let picked: BTreeSet<u64> = voters.filter(|v| pick(v)).map(|v| v.0).collect();
                picked.iter().map(u64::to_string).collect()
            };
            let (full_nodes, silent_nodes) = (nodes(&full), nodes(&|v| !full(v) && silent(v)));
            let full_part = match full_nodes.as_slice() {
                [one] => {
                    format!("node {one} says its log cannot grow, a full disk?, or that it stops")
                }
                many => format!(
                    "nodes {} say their logs cannot grow, a full disk?, or that they stop",
                    many.join(", ")
                ),
            };
            let silent_part = match silent_nodes.as_slice() {
                [] => String::new(),
                [one] => format!("; node {one} has not answered lately"),
                many => format!("; nodes {} have not answered lately", many.join(", ")),
            };
            format!(
                "node {me} takes no writes for group {id}: too few of its voters can take them \
                 ({full_part}{silent_part})"
            )
        })
    }
}

/// How long a sync may stay in flight before the core takes its device for stuck
/// ([`Core::sync_stuck`]), in ticks of `tick` (None: ticks of no set length, counted by hand):
/// twice the election timeout, and at least a second (etcd's threshold for a slow fdatasync),
/// 1 s by default, where a sync takes well under a tenth of that even on a busy shared disk,
/// so that a slow moment of a working device does not move leaders.
pub(super) fn sync_patience_ticks(election_timeout_ticks: u32, tick: Option<Duration>) -> u64 {
    let elections = 2 * u64::from(election_timeout_ticks);
    let second = tick.map_or(0, |tick| {
        let tick_us = tick.as_micros().max(1);
        u64::try_from(1_000_000u128.div_ceil(tick_us)).unwrap_or(u64::MAX)
    });
    elections.max(second)
}

/// `bytes` in MiB, to a tenth.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_is_stuck_after_two_election_timeouts_and_at_least_a_second() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            sync_patience_ticks(20, ms(10)),
            100,
            "the defaults: a second"
        );
        assert_eq!(
            sync_patience_ticks(20, ms(100)),
            40,
            "two election timeouts: 4 s"
        );
        assert_eq!(sync_patience_ticks(20, ms(3)), 334, "a second, rounded up");
        assert_eq!(sync_patience_ticks(20, None), 40, "ticks of no set length");
    }
}
