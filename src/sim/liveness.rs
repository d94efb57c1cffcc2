//! What each simulated node knows of its peers' nodes: when it last heard one, and which
//! restarted. A node wakes its quiet groups from it as a core does (`Core::wake_quiet_groups`):
//! a follower whose leader's node fell silent or restarted, a leader with a member whose node
//! did.
//!
//! A real core hears each peer's core at least every heartbeat interval, as a keepalive if
//! nothing else, for as long as the peer runs and the link between them carries anything; a
//! peer's restart shows as a new connection. Here a node hears a peer at each of its ticks
//! while the peer is up and the link from it is not cut (the keepalive rides TCP, which
//! resends what the simulated network drops), and learns of each restart at its next tick.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::{NodeId, Replica, Role};

#[derive(Debug, Default)]
pub struct Liveness {
    /// (listener, speaker) → the listener's tick count when it last heard the speaker.
    heard_tick: BTreeMap<(NodeId, NodeId), u64>,
    /// (listener, speaker): the speaker restarted since the listener last ticked.
    renewed: BTreeSet<(NodeId, NodeId)>,
}

impl Liveness {
    /// `restarted` came back: every other node sees a new connection from it.
    pub fn restarted(&mut self, restarted: NodeId, others: impl Iterator<Item = NodeId>) {
        for other in others.filter(|&n| n != restarted) {
            self.renewed.insert((other, restarted));
        }
    }

    /// Before `replica` (of node `id`) ticks: it hears the peers in `heard` now, and wakes
    /// if it is quiet while its leader's node restarted or fell silent for an election
    /// timeout (or four heartbeat intervals, if longer: as the core counts a peer gone).
    pub fn before_tick(&mut self, id: NodeId, replica: &mut Replica, heard: &[NodeId]) {
        let now = replica.ticks();
        for &peer in heard {
            self.heard_tick.insert((id, peer), now);
        }
        let renewed: Vec<NodeId> = (self.renewed.range((id, NodeId(0))..=(id, NodeId(u64::MAX))))
            .map(|&(_, peer)| peer)
            .collect();
        for &peer in &renewed {
            self.renewed.remove(&(id, peer));
        }
        if !replica.is_quiesced() {
            return;
        }
        let silence = u64::from(replica.election_timeout_ticks())
            .max(4 * u64::from(replica.heartbeat_interval_ticks()));
        let heard_at = |peer: NodeId| self.heard_tick.get(&(id, peer)).copied();
        let silent = |peer: NodeId| heard_at(peer).is_none_or(|at| now >= at + silence);
        if replica.role() == Role::Leader {
            let conf = replica.conf_state();
            let members = (conf.voters.iter().chain(&conf.learners)).filter(|&&m| m != id);
            let gone: Vec<NodeId> = members.clone().copied().filter(|&m| silent(m)).collect();
            let back = members.clone().any(|m| renewed.contains(m));
            if !gone.is_empty() {
                replica.wake_members_silent(&gone);
            } else if back {
                replica.wake();
            }
            return;
        }
        let leader = replica.leader();
        if renewed.contains(&leader) {
            replica.wake();
        } else if silent(leader) {
            replica.wake_leader_silent();
        }
    }
}
