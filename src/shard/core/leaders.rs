//! Who leads a core's groups: the transfers and membership changes clients ask for, the
//! handovers that balance leaders or empty a stopping node, the watch for groups without one.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::members::{MemberChange, MemberOp, MemberOutcome};
use crate::proto::topology::client_address;
use crate::proto::transfer::TransferOutcome;
use crate::raft::{NodeId, PeerStatus, ProgressState, Role, TransferError};
use crate::shard::Group;
use crate::shard::balance::{
    GroupView, HANDOVER_LAG_ENTRIES_MAX, HandoverState, Led, pick_evacuations, pick_handover,
};
use crate::shard::inbox::Inbox;
use crate::shard::membership;

use super::{Core, CoreLog, CoreNet, LEADERLESS_SAID_TIMEOUTS, TRANSFER_ATTEMPTS, Transfer};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// Says when groups of the core have had no leader for [`LEADERLESS_SAID_TIMEOUTS`]
    /// election timeouts, once, and when every one has one again. A node cut off from a
    /// majority, or removed from the cluster while it was down and cut off from the peers
    /// that would say so (see `transport::dial::probe_loop`), said nothing: its groups
    /// campaigned in vain.
    pub(super) fn watch_leaders(&mut self) {
        // Only groups whose configuration holds this node: a node joining is added to one
        // group after another, and the others know no leader meanwhile (found in review).
        let me = NodeId(self.shape.node_id);
        // A group asleep is quiet, which it is only with a leader.
        let without = (self.groups.awake())
            .filter(|g| g.replica.leader().is_none())
            .filter(|g| {
                let conf = g.replica.conf_state();
                [&conf.voters, &conf.voters_outgoing, &conf.learners]
                    .iter()
                    .any(|ids| ids.contains(&me))
            })
            .count();
        if self.stopping_by.is_some() {
            // Said nothing of while it stops (its groups hand over and lose their leaders).
            self.leaderless = None;
            return;
        }
        if without == 0 {
            if let Some((_, true)) = self.leaderless.take() {
                tracing::info!(
                    core = self.shape.core,
                    "every group of the core has a leader again"
                );
            }
            return;
        }
        let timeout_ticks = (self.groups.values().next())
            .map_or(1, |g| u64::from(g.replica.election_timeout_ticks()));
        let ticks = self.ticks;
        let (since, said) = self.leaderless.get_or_insert((ticks, false));
        if !*said && ticks - *since >= LEADERLESS_SAID_TIMEOUTS * timeout_ticks {
            *said = true;
            tracing::warn!(
                core = self.shape.core,
                groups_without_leader = without,
                groups = self.groups.len(),
                election_timeouts = LEADERLESS_SAID_TIMEOUTS,
                "groups of this core have had no leader for a while: is this node cut off from \
                 a majority of its peers (their logs say whether they reach it, and this \
                 node's warnings of peer connections closed say why: a refused handshake names \
                 the flag that differs), or was it removed from the cluster while it was down \
                 (`cohort members list` at another member)?"
            );
        }
    }

    /// Whether the core said its groups have had no leader for a while (see
    /// [`Core::watch_leaders`]), and has not said since that every one has one.
    pub fn said_leaderless(&self) -> bool {
        matches!(self.leaderless, Some((_, true)))
    }

    pub(super) fn start_transfer(&mut self, group: u32, to: u64, reply: Inbox<TransferOutcome>) {
        let cannot_take = match to == self.shape.node_id {
            // Its log cannot grow, a sync is stuck, or it stops: it hands its groups over.
            true => self.said.log_full.then(|| cannot_lead_here(to, group)),
            false => cannot_lead(to, &self.peers_log_full, &self.peers_clients_relay),
        };
        let Some(g) = self.groups.get_mut(&group) else {
            let why = format!("group {group} does not live on core {}", self.shape.core);
            reply.push_now(TransferOutcome::Failed(why));
            return;
        };
        if let Some(why) = cannot_take.filter(|_| g.replica.role() == Role::Leader) {
            reply.push_now(TransferOutcome::Failed(why));
            return;
        }
        match g.replica.transfer_leader(NodeId(to)) {
            Ok(()) => {
                self.transfers.push(Transfer {
                    group,
                    to,
                    give_up: self.ticks + self.transfer_ticks(),
                    attempts_left: TRANSFER_ATTEMPTS - 1,
                    reply,
                });
                self.finish_transfers();
            }
            // Another transfer's target was told to campaign (the balancer's, say): this one
            // starts once that one ends, within an election timeout (found in review: it was
            // refused, and the client takes a refusal as final).
            Err(TransferError::UnderWay { .. }) => self.transfers.push(Transfer {
                group,
                to,
                give_up: self.ticks,
                attempts_left: TRANSFER_ATTEMPTS,
                reply,
            }),
            Err(TransferError::NotLeader { leader_hint }) => {
                reply.push_now(TransferOutcome::NotLeader {
                    leader: leader_hint.map_or(0, |n| n.0),
                });
            }
            Err(error) => reply.push_now(TransferOutcome::Failed(error.to_string())),
        }
    }

    /// How long one try of a handover may take: `balance_every_ticks`, longer than the
    /// election timeout after which Raft abandons it.
    pub(super) fn transfer_ticks(&self) -> u64 {
        u64::from(self.shape.balance_every_ticks.max(1))
    }

    /// Answer the transfers that completed; start again those that ran out of time (a busy
    /// target may need longer to catch up), up to [`TRANSFER_ATTEMPTS`] in all. One whose
    /// group another node took meanwhile (an election), or that none leads when a try ends,
    /// is answered NotLeader: the client asks the new leader (found in review: such a
    /// transfer waited out its try and failed, though the new leader could hand it over).
    pub(super) fn finish_transfers(&mut self) {
        let (me, ticks, every) = (self.shape.node_id, self.ticks, self.transfer_ticks());
        let (groups, peers_log_full) = (&mut self.groups, &self.peers_log_full);
        let peers_relay = &self.peers_clients_relay;
        let me_cannot_lead = self.said.log_full;
        self.transfers.retain_mut(|transfer| {
            let replica = &mut groups
                .get_mut(&transfer.group)
                .expect("checked at start")
                .replica;
            let (group, to, leader) = (transfer.group, transfer.to, replica.leader().0);
            // Handed to this node, which leads: done once a quorum confirms it and it hands
            // the group to no other (found in review: a leader cut off, not stepped down yet,
            // or one handing its groups over as it stops, said it was done).
            let confirmed = to != me
                || (replica.leads_with_a_quorum_heard()
                    && replica.lead_transferee().is_none()
                    && !me_cannot_lead);
            let outcome = if leader == to && confirmed {
                TransferOutcome::Done { leader }
            } else if leader != me && leader != 0 {
                TransferOutcome::NotLeader { leader }
            } else if ticks <= transfer.give_up {
                return true;
            } else if leader != me {
                TransferOutcome::NotLeader { leader }
            } else if let Some(why) = cannot_lead(to, peers_log_full, peers_relay) {
                TransferOutcome::Failed(why)
            } else if to == me && me_cannot_lead {
                TransferOutcome::Failed(cannot_lead_here(me, group))
            } else if transfer.attempts_left > 0 {
                // Refused, it says why: `to` left the group's voters meanwhile, say.
                match replica.transfer_leader(NodeId(to)) {
                    Ok(()) => {
                        transfer.attempts_left -= 1;
                        transfer.give_up = ticks + every;
                        return true;
                    }
                    // Another transfer ends first: asked again at the next tick.
                    Err(TransferError::UnderWay { .. }) => {
                        transfer.give_up = ticks;
                        return true;
                    }
                    Err(error) => TransferOutcome::Failed(error.to_string()),
                }
            } else {
                // Why, where this leader knows it (found by an operator: a target that was
                // down got the same words as one that lost its elections).
                let silent = match to == me || replica.peer_answers(NodeId(to)) {
                    true => "",
                    false => ": it has not answered this leader lately (down, or cut off?)",
                };
                TransferOutcome::Failed(format!(
                    "node {to} did not take over group {group} in {TRANSFER_ATTEMPTS} tries of \
                     an election timeout each (leader: {leader}){silent}"
                ))
            };
            transfer.reply.push_now(outcome);
            false
        });
    }

    pub(super) fn start_member_change(
        &mut self,
        change: MemberChange,
        reply: Inbox<MemberOutcome>,
    ) {
        let Some(g) = self.groups.get_mut(&change.group) else {
            let why = format!(
                "group {} does not live on core {}",
                change.group, self.shape.core
            );
            reply.push_now(MemberOutcome::Failed(why));
            return;
        };
        // Every node runs the same `--cores`: a base port without room for its ports above
        // it (as `serve` checks its own) would be in every node's list of members, and
        // refused by each `serve --join` at its start (review 228).
        let cores = self.shape.cores.max(1);
        if let MemberOp::AddLearner { address } = &change.op
            && client_address(address, cores - 1).is_none()
        {
            let why = format!(
                "address `{address}` leaves no room for the {} ports from it that a node of \
                 {cores} cores listens on (one for peers and one for clients per core): give a \
                 lower port",
                2 * u32::from(cores),
            );
            reply.push_now(MemberOutcome::Failed(why));
            return;
        }
        match membership::start(g, self.shape.node_id, &change, &self.peers_log_full) {
            Ok(()) => {
                // Entering and leaving the joint config take two commits: well within an
                // election timeout, unless the group is in trouble (then the client asks again).
                let give_up = self.ticks + u64::from(self.shape.balance_every_ticks.max(1));
                self.member_changes.push((change, give_up, reply));
            }
            Err(outcome) => reply.push_now(outcome),
        }
    }

    /// Answer the membership changes that are done, lost their leader, or ran out of time.
    pub(super) fn finish_member_changes(&mut self) {
        let ticks = self.ticks;
        let groups = &self.groups;
        self.member_changes.retain(|(change, give_up, reply)| {
            let outcome = match membership::finished(&groups[&change.group], change) {
                // Proposed here: the next leader may commit it.
                Some(MemberOutcome::NotLeader { .. }) => MemberOutcome::UnderWay(format!(
                    "this node no longer leads group {}: the change may still take effect",
                    change.group
                )),
                Some(outcome) => outcome,
                None if ticks > *give_up => MemberOutcome::UnderWay(format!(
                    "the change of group {} is still under way",
                    change.group
                )),
                None => return true,
            };
            reply.push_now(outcome);
            false
        });
    }

    /// Tell the node where every member is, if a group's view changed this turn, and at the
    /// first turn: groups restored from snapshots that hold the change removing this node
    /// apply no conf change, and a removed node restarted so said nothing (found in review).
    pub(super) fn publish_members(&mut self) {
        let mut changed = !std::mem::replace(&mut self.members_published, true);
        // A group untouched since the last turn applied nothing since (`shard::groups`).
        for (_, group) in self.groups.touched_mut() {
            changed |= std::mem::take(&mut group.members_changed);
        }
        if changed {
            let (mut members, mut removed) = (BTreeMap::new(), BTreeSet::new());
            for group in self.groups.values() {
                members.extend(group.kv.members().clone());
                removed.extend(group.kv.removed());
            }
            (self.hooks.on_members)(&members, &removed);
        }
    }

    /// Hand groups to other nodes ([`crate::shard::balance`]): every group this node leads while
    /// its log cannot grow or a sync is stuck, once it is stopping, or while its clients
    /// relay (spread by load, a member they relay through first among equals), else one group
    /// if this node leads too many of this core's. A peer whose clients relay is handed none, unless this node
    /// must hand its groups over and no other can take one.
    pub(super) fn hand_over_leaders(&mut self) {
        let (me, ticks) = (self.shape.node_id, self.ticks);
        let (groups, peers_relay) = (&self.groups, &self.peers_clients_relay);
        self.handovers.judge(ticks, |group, to| {
            let replica = &groups[&group].replica;
            if replica.leader().0 == to {
                HandoverState::Done
            } else if replica.leader().is_none() || replica.lead_transferee() == Some(NodeId(to)) {
                HandoverState::Going
            } else if peers_relay.contains(&to) {
                HandoverState::HandedOn
            } else {
                HandoverState::Failed
            }
        });
        let stuck = self.said_sync_stuck;
        let (peers_log_full, handovers) = (&self.peers_log_full, &self.handovers);
        let (peers_relay, reach) = (&self.peers_clients_relay, &self.reach);
        let relay = self.said.clients_relay;
        let stopping = self.stopping_by.is_some();
        let short = self.log.short_of_space().is_some() || stuck || stopping;
        // For balance, only nodes every group of the core counts among its voters: one that
        // some group does not is joining the cluster or leaving it (a node removed leaves
        // the groups one at a time), and handed a group now it would soon hand it back.
        let mut groups = self.groups.values();
        let first = groups.next().map(|g| g.replica.conf_state().voters.clone());
        let voters_everywhere: Vec<NodeId> = groups.fold(first.unwrap_or_default(), |mut v, g| {
            v.retain(|n| g.replica.conf_state().voters.contains(n));
            v
        });
        let led_of = |id: u32, g: &Group| {
            let leader = g.replica.leader().0;
            let led_since_tick = match leader == me {
                true => g.replica.leader_since_tick(),
                false => 0,
            };
            Led {
                group: id,
                leader,
                led_since_tick,
            }
        };
        // Which peers could take over a group this node leads now.
        let successors = |id: u32, g: &Group| -> Vec<u64> {
            let (replica, last_index) = (&g.replica, g.replica.last_index());
            let heard = |p: &PeerStatus| self.heard_lately(p.id, g);
            let ready = (replica.peer_statuses())
                // Stopping, one heard from in the last round counts too: the first look may
                // fall just after a check-quorum cleared every mark.
                .filter(|p| p.recent_active || (stopping && replica.peer_answers(p.id)))
                .filter(heard)
                // A follower whose queue is full would hold the group's writes while the
                // queue drains.
                .filter(|p| p.state == ProgressState::Replicate && !p.queue_full)
                // Replicating from its first answer, however far behind: Raft would hold the
                // group's writes while it caught up, and give up.
                .filter(|p| {
                    last_index.0.saturating_sub(p.match_index.0) <= HANDOVER_LAG_ENTRIES_MAX
                })
                // A learner cannot take over: it does not vote.
                .filter(|p| replica.conf_state().voters.contains(&p.id))
                .filter(|p| !peers_log_full.contains(&p.id.0))
                .filter(|p| short || !peers_relay.contains(&p.id.0))
                .filter(|p| short || voters_everywhere.contains(&p.id))
                .map(|p| p.id.0);
            // Stopping, or taking no writes, no waiting out the back-off from handovers that
            // failed before: the stop has a grace's worth of tries, and a group whose leader
            // takes no writes is down until one succeeds (found in review: up to a minute).
            // But one not backed off goes first: the same target picked at every tick (a peer
            // paused, its sockets open) used the whole grace while another could take over
            // (found in review).
            let (fresh, backed_off): (Vec<u64>, Vec<u64>) =
                ready.partition(|&to| handovers.may_try(id, to, ticks));
            if short && fresh.is_empty() {
                backed_off
            } else {
                fresh
            }
        };
        let picks = if short || relay {
            let views: Vec<GroupView> = (self.groups.iter())
                .map(|(&id, g)| {
                    // Only a group this node leads can be handed over: the others count only
                    // their leader.
                    let led = led_of(id, g);
                    let ready_successors = match led.leader == me {
                        true => successors(id, g),
                        false => Vec::new(),
                    };
                    GroupView {
                        led,
                        ready_successors,
                    }
                })
                .collect();
            let groups = &self.groups;
            let busy = |group| groups[&group].replica.lead_transferee().is_some();
            // A peer whose own clients relay is the last resort (of a core that must hand its
            // groups over); while this core's clients relay, of the voters leading as few,
            // one they relay through, which they reach.
            let last_resort = |to| peers_relay.contains(&to);
            let preferred = |to| relay && reach.relays_through(to);
            pick_evacuations(me, &views, busy, (last_resort, preferred))
        } else if let Some(margin) = self.shape.leader_balance_margin
            && !self.handover_under_way()
        {
            let led: Vec<Led> = self.groups.iter().map(|(&id, g)| led_of(id, g)).collect();
            // A voter that no group could hand over to now is left out at once: else, as the
            // one leading fewest (a node down leads none), every look asked every group
            // (review 321). The same settings hold for every group of a node.
            let takes = |v: &NodeId| {
                let heard = (self.groups.values().next()).is_some_and(|g| self.heard_lately(*v, g));
                heard && !peers_log_full.contains(&v.0) && !peers_relay.contains(&v.0)
            };
            let voters: Vec<u64> = (voters_everywhere.iter().filter(|v| takes(v)))
                .map(|n| n.0)
                .collect();
            let groups = &self.groups;
            let successors = |id| successors(id, &groups[&id]);
            pick_handover(me, &led, &voters, margin, successors)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let why = if stopping {
            "this node is stopping"
        } else if stuck {
            "this node's log cannot sync"
        } else if short {
            "this node cannot grow its log"
        } else if relay {
            "its clients reach this node's core only through other members"
        } else {
            "leader balance"
        };
        for (group, to) in picks {
            let replica = &mut self
                .groups
                .get_mut(&group)
                .expect("a group of this core")
                .replica;
            match replica.transfer_leader(NodeId(to)) {
                Ok(()) => {
                    tracing::info!(group, to, "{why}: handing the group over");
                    self.handovers.started(group, to, self.ticks);
                }
                Err(error) => tracing::debug!(group, to, %error, "{why}: no handover"),
            }
        }
    }

    /// Whether a handover of a group of this core is under way: one an operator asked for
    /// (`cohort leader transfer`), or any the replica has not finished or given up. Balance
    /// waits for it: it would replace the operator's target with its own (found in review:
    /// the balancer handed away the group a transfer named, which then failed), or count
    /// leaders that are about to change.
    pub(super) fn handover_under_way(&self) -> bool {
        !self.transfers.is_empty()
            || (self.groups.values()).any(|g| g.replica.lead_transferee().is_some())
    }
}

/// Why a transfer to `to`, a peer, is refused, if it is: it said it cannot lead (its log is
/// among `log_full`), or that its clients reach it only through other members (among
/// `relay`: it would hand the group on at its next look, the transfer said done undone).
pub(super) fn cannot_lead(
    to: u64,
    log_full: &BTreeSet<u64>,
    relay: &BTreeSet<u64>,
) -> Option<String> {
    if log_full.contains(&to) {
        return Some(format!(
            "node {to} says its log cannot grow (a full disk?) or that it stops: it takes no \
             group until it can"
        ));
    }
    relay.contains(&to).then(|| {
        format!(
            "node {to} says its clients reach it only through other members (its client port \
             cut off from them?): it hands the groups it leads over, and takes none for a while"
        )
    })
}

/// Why a group is not handed to this node, which leads it: it is handing it over (found in
/// review: told it "takes no group", while it kept leading it for want of a taker).
pub(super) fn cannot_lead_here(me: u64, group: u32) -> String {
    format!(
        "node {me} leads group {group}, but its log cannot grow (a full disk?), a sync is stuck \
         or it stops: it hands the group to another voter once one can take it"
    )
}
