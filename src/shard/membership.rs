//! A membership change of one group, as its leader runs it: the checks, the conf change it
//! proposes, and when the change counts as done.
//!
//! Every operation is idempotent: asking again for a change that is done answers `Done`, so a
//! client that lost an answer (or a leader) simply asks again. One exception: a remove of a node
//! already out of the group answers `NotMember` (and a promote of such a node too), so a client can
//! tell a remove that changed nothing anywhere (a mistyped id) from one done; `client::members`
//! counts a remove asked again in groups where it was done as done. An add of a node the group
//! removed answers `NotMember` too: an id is never used again. Voter changes go through a
//! joint configuration ([`ConfChangeTransition::Joint`]) that the leader leaves by itself; a change
//! is done once the group runs on a configuration that is not joint and has it.

use std::collections::BTreeSet;

use crate::proto::members::{MemberChange, MemberOp, MemberOutcome, encode_addresses};
use crate::raft::{
    ConfChange, ConfChangeError, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState,
    EntryKind, NodeId, ProgressState, ProposeError, Replica, Role,
};

use super::group::Group;

/// A learner is promoted only once its log is at most this many entries behind the leader's:
/// a voter far behind would make the group wait for it, or lose its quorum if another fails.
pub const PROMOTE_LAG_ENTRIES_MAX: u64 = 1024;

/// Start `change` on this node's replica of its group. `Ok(())`: proposed, watch it with
/// [`finished`]; `Err(outcome)`: the answer now (done already, not the leader, refused, busy).
pub fn start(
    group: &mut Group,
    me: u64,
    change: &MemberChange,
    cannot_lead: &BTreeSet<u64>,
) -> Result<(), MemberOutcome> {
    if let MemberOp::AddLearner { address } = &change.op
        && let Some(known) = group.kv.members().get(&change.node)
        && known != address
    {
        return Err(MemberOutcome::Failed(format!(
            "node {} is a member at {known}, not {address}: add the new machine under a new \
             id (and remove node {} if it is gone: an id is never used again)",
            change.node, change.node
        )));
    }
    let conf = group.replica.conf_state();
    // In no part of the configuration, joint or not (a node on its way out is still in it).
    let stranger = !conf.members().contains(&NodeId(change.node));
    if stranger
        && group.replica.role() == Role::Leader
        && matches!(change.op, MemberOp::AddLearner { .. })
    {
        // A remove this leader has not applied yet would let the node back in.
        if !knows_the_latest_configuration(&group.replica) {
            return Err(catching_up(&group.replica, change.group));
        }
        if group.kv.was_removed(change.node) {
            return Err(MemberOutcome::NotMember {
                why: format!(
                    "node {} was removed from group {}, and an id is never used again: add \
                     the machine under a new id, on an empty data dir",
                    change.node, change.group
                ),
                removed: true,
            });
        }
    }
    if stranger
        && group.replica.role() == Role::Leader
        && matches!(change.op, MemberOp::Promote | MemberOp::Remove)
    {
        if !knows_the_latest_configuration(&group.replica) {
            return Err(catching_up(&group.replica, change.group));
        }
        // A remove given again after it was done everywhere says so too: nothing changed.
        let removed = group.kv.was_removed(change.node);
        let hint = match change.op {
            _ if removed => " (it removed it)",
            MemberOp::Promote => " (add it as a learner first)",
            _ => "",
        };
        return Err(MemberOutcome::NotMember {
            why: format!(
                "node {} is in no configuration of group {}{hint}",
                change.node, change.group
            ),
            removed,
        });
    }
    if let Some(outcome) = finished(group, change) {
        return Err(outcome);
    }
    let replica = &mut group.replica;
    let name = change.group;
    let node = NodeId(change.node);
    let conf = replica.conf_state().clone();
    let single = |kind, transition, context| ConfChange {
        changes: vec![ConfChangeSingle { kind, node }],
        transition,
        context,
    };
    // Checked before a leader removing itself hands the group over: the next leader, just
    // elected, may not have heard from the silent voters yet (review 293).
    if change.op == MemberOp::Remove && conf.is_voter(node) {
        let what = format!("removing node {node}");
        keeps_an_answering_majority(replica, &voters_without(&conf, node), name, &what)?;
    }
    let proposal = match &change.op {
        // A learner does not vote: adding one changes no quorum, so it applies directly.
        MemberOp::AddLearner { address } => single(
            ConfChangeKind::AddLearner,
            ConfChangeTransition::Auto,
            encode_addresses([(change.node, address.as_str())]),
        ),
        MemberOp::Promote => {
            // Asked again (its client followed a new leader, or gave up waiting) before the
            // joint configuration that makes it a voter was left: that change goes on.
            if conf.is_joint() && conf.voters.contains(&node) {
                return Err(MemberOutcome::Busy(format!(
                    "group {name} is leaving the joint configuration that makes node {node} \
                     a voter"
                )));
            }
            if !conf.is_learner(node) {
                return Err(MemberOutcome::Failed(format!(
                    "node {node} is not a learner of group {name}: add it first"
                )));
            }
            let status = replica.status();
            let behind = status
                .peers
                .iter()
                .find(|p| p.id == node)
                .map_or(u64::MAX, |p| match p.state {
                    ProgressState::Replicate if p.recent_active => {
                        status.last_index.0.saturating_sub(p.match_index.0)
                    }
                    _ => u64::MAX,
                });
            if behind > PROMOTE_LAG_ENTRIES_MAX {
                let lag = if behind == u64::MAX {
                    "not replicating yet".to_string()
                } else {
                    format!("{behind} entries behind")
                };
                return Err(MemberOutcome::Busy(format!(
                    "node {node} is {lag} in group {name}: waiting for it to catch up"
                )));
            }
            let mut after = conf.voters.clone();
            after.push(node);
            keeps_an_answering_majority(replica, &after, name, &format!("promoting node {node}"))?;
            single(
                ConfChangeKind::AddVoter,
                ConfChangeTransition::Joint,
                Default::default(),
            )
        }
        MemberOp::Remove if node.0 == me => return Err(hand_over(group, me, name, cannot_lead)),
        MemberOp::Remove => {
            let transition = match conf.is_voter(node) {
                true => ConfChangeTransition::Joint,
                false => ConfChangeTransition::Auto,
            };
            single(ConfChangeKind::Remove, transition, Default::default())
        }
    };
    match group.replica.propose_conf_change(&proposal) {
        Ok(_) => Ok(()),
        Err(ProposeError::NotLeader { leader_hint }) => Err(MemberOutcome::NotLeader {
            leader: leader_hint.map_or(0, |n| n.0),
        }),
        Err(ProposeError::ConfChangePending { index }) => Err(MemberOutcome::Busy(format!(
            "another membership change of group {name} (entry {index}) is under way"
        ))),
        // The leader leaves a joint configuration by itself (one whose transfer was given up
        // waits for its next apply): the client asks again.
        Err(ProposeError::InvalidConfChange(ConfChangeError::AlreadyJoint)) => Err(
            MemberOutcome::Busy(format!("group {name} is leaving a joint configuration")),
        ),
        Err(ProposeError::InvalidConfChange(error)) => {
            Err(MemberOutcome::Failed(format!("group {name}: {error}")))
        }
        Err(error) => Err(MemberOutcome::Busy(format!("group {name}: {error:?}"))),
    }
}

fn voters_without(conf: &ConfState, node: NodeId) -> Vec<NodeId> {
    conf.voters.iter().copied().filter(|&v| v != node).collect()
}

/// Refuses a voter change (`what`) after which the voters that answer this leader (in this
/// CheckQuorum round or the one before) would not be a majority of the group's voters,
/// `voters_after`: the group would enter a joint configuration it could not leave, nor elect a
/// leader in, until enough of the silent ones came back, and removing a dead one, the way
/// out, would need that configuration's quorum too (tester 291: removing a live node of three
/// while another was down stopped the group for good). etcd's strict reconfiguration check
/// refuses such changes as well. A leader in its first round counts only the voters it heard
/// from in its term (Raft counts every one as answering until then, so that a new leader
/// refuses no write), and answers busy where they are too few: within an election timeout
/// it knows (review 293: a leader just elected let the change through). A voter that died
/// within the last round or two still counts as answering.
fn keeps_an_answering_majority(
    replica: &Replica,
    voters_after: &[NodeId],
    group: u32,
    what: &str,
) -> Result<(), MemberOutcome> {
    if voters_after.is_empty() {
        return Ok(());
    }
    let timeout = u64::from(replica.election_timeout_ticks());
    let fresh = replica.ticks() < replica.leader_since_tick() + timeout;
    let status = replica.status();
    let answers = |v: NodeId| {
        v == replica.id()
            || (status.peers.iter())
                .any(|p| p.id == v && if fresh { p.recent_active } else { p.answers })
    };
    let silent: Vec<u64> = (voters_after.iter().copied())
        .filter(|&v| !answers(v))
        .map(|v| v.0)
        .collect();
    if 2 * silent.len() < voters_after.len() {
        return Ok(());
    }
    if fresh {
        return Err(MemberOutcome::Busy(format!(
            "{what}: the leader of group {group}, just elected, has not heard yet from voters \
             {silent:?}, a majority of those the group would keep"
        )));
    }
    let mut voters: Vec<u64> = voters_after.iter().map(|v| v.0).collect();
    voters.sort_unstable();
    Err(MemberOutcome::Failed(format!(
        "{what} would leave group {group} with voters {voters:?}, of which {silent:?} have not \
         answered its leader lately: no majority, and the group could neither commit nor elect \
         a leader until they answered again. Bring them back, or remove the dead ones first"
    )))
}

/// Whether this leader's configuration is the group's latest: it committed an entry of its
/// own term (so it holds every committed conf change), applied every conf change it knows of
/// (one takes effect there; its other entries may still be applying, as they nearly always
/// are under load), and heard from a majority of voters in the current CheckQuorum round (a
/// leader cut off from them may have been replaced by one that changed the configuration;
/// with check-quorum off, as nodes never run, that part tells nothing). Only then may it say
/// a node is in none of its configurations: a node told so stops for good.
fn knows_the_latest_configuration(replica: &Replica) -> bool {
    let commit = replica.commit();
    let snapshot = &replica.snapshot().meta;
    let term_at_commit = match replica.entry(commit) {
        Some(entry) => Some(entry.term),
        None => (snapshot.index == commit).then_some(snapshot.term),
    };
    let status = replica.status();
    let voters = &replica.conf_state().voters;
    let heard = status
        .peers
        .iter()
        .filter(|p| p.recent_active && p.id != replica.id() && voters.contains(&p.id))
        .count()
        + usize::from(voters.contains(&replica.id()));
    term_at_commit == Some(replica.term())
        && replica.applied() >= replica.pending_conf_index()
        && 2 * heard > voters.len()
}

/// Why a leader that does not know its group's latest configuration yet answers busy: a
/// change it proposed still applying (said as a proposal refused for it would be), or its
/// catching up (a new leader, with the entries of earlier terms to apply).
fn catching_up(replica: &Replica, group: u32) -> MemberOutcome {
    let pending = replica.pending_conf_index();
    let changing = replica.applied() < pending
        && replica
            .entry(pending)
            .is_some_and(|e| e.kind == EntryKind::ConfChange && e.term == replica.term());
    MemberOutcome::Busy(if changing {
        format!("a membership change of group {group} (entry {pending}) is under way")
    } else {
        format!("the leader of group {group} is catching up with its configuration")
    })
}

/// The leader is asked to remove itself: it hands the group to the most caught-up voter
/// first, and the client asks the new leader again. Never to one of `cannot_lead` (peers
/// whose logs take no writes: a full disk, a stuck sync, a stop), which would drop the
/// TimeoutNow, each time the client asks again (found in review).
fn hand_over(group: &mut Group, me: u64, name: u32, cannot_lead: &BTreeSet<u64>) -> MemberOutcome {
    let status = group.replica.status();
    let successor = status
        .peers
        .iter()
        .filter(|p| {
            p.id.0 != me
                && !cannot_lead.contains(&p.id.0)
                && p.recent_active
                && !p.queue_full
                && p.state == ProgressState::Replicate
                && group.replica.conf_state().voters.contains(&p.id)
        })
        .max_by_key(|p| p.match_index);
    let Some(successor) = successor else {
        let voters = &group.replica.conf_state().voters;
        if voters.iter().all(|v| v.0 == me) {
            return MemberOutcome::Failed(format!(
                "node {me} is the only voter of group {name}: add another before removing it"
            ));
        }
        // A loaded follower may be probing or catching up for a while: the client asks
        // again until its timeout.
        return MemberOutcome::Busy(format!(
            "node {me} leads group {name}: waiting for another voter to catch up to take over"
        ));
    };
    let to = successor.id;
    match group.replica.transfer_leader(to) {
        Ok(()) => MemberOutcome::Busy(format!(
            "node {me} leads group {name}: handing it to node {to} before leaving"
        )),
        Err(error) => MemberOutcome::Busy(format!("group {name}: {error}")),
    }
}

/// The answer for `change` if there is one now: done, or this node no longer leads.
pub fn finished(group: &Group, change: &MemberChange) -> Option<MemberOutcome> {
    let replica = &group.replica;
    if replica.role() != Role::Leader {
        return Some(MemberOutcome::NotLeader {
            leader: replica.leader().0,
        });
    }
    let conf = replica.conf_state();
    let node = NodeId(change.node);
    let member = conf.members().contains(&node);
    // A member of the configuration that holds once any joint one is left: a node only in
    // its outgoing half is on its way out, not added.
    let stays = [&conf.voters, &conf.learners, &conf.learners_next]
        .into_iter()
        .any(|nodes| nodes.contains(&node));
    let done = match change.op {
        MemberOp::AddLearner { .. } => stays,
        MemberOp::Promote => conf.voters.contains(&node) && !conf.is_joint(),
        MemberOp::Remove => !member && !conf.is_joint(),
    };
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| n.0).collect();
    done.then(|| MemberOutcome::Done {
        voters: ids(&conf.voters),
        learners: ids(&conf.learners),
    })
}
