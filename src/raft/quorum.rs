//! Majorities over a (possibly joint) voter configuration: committed indexes and elections.

use super::confchange::MEMBERS_MAX;
use super::types::{ConfState, NodeId};

/// The outcome of counting votes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Voter sets are a handful of nodes; sorting a stack buffer avoids allocating on every
/// acknowledgement (the commit rule runs once per append response).
const STACK_VOTERS_MAX: usize = 16;

/// The largest value that a majority of `voters` has reached. An empty set places no
/// constraint (`u64::MAX`), which makes the joint rule below a plain `min`.
pub(crate) fn majority_value(voters: &[NodeId], value_of: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut stack = [0u64; STACK_VOTERS_MAX];
    let mut heap;
    let values: &mut [u64] = if voters.len() <= STACK_VOTERS_MAX {
        &mut stack[..voters.len()]
    } else {
        heap = vec![0u64; voters.len()];
        &mut heap
    };
    for (slot, &voter) in values.iter_mut().zip(voters) {
        *slot = value_of(voter);
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// The largest value reached by a majority of the incoming voters and, while joint, also by
/// a majority of the outgoing voters.
pub(crate) fn joint_value(conf: &ConfState, value_of: impl Fn(NodeId) -> u64) -> u64 {
    let incoming = majority_value(&conf.voters, &value_of);
    let outgoing = majority_value(&conf.voters_outgoing, &value_of);
    incoming.min(outgoing)
}

fn majority_vote(voters: &[NodeId], vote_of: &impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &voter in voters {
        match vote_of(voter) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// An election is won only when both halves of a joint config are won.
pub(crate) fn joint_vote(conf: &ConfState, vote_of: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let incoming = majority_vote(&conf.voters, &vote_of);
    let outgoing = majority_vote(&conf.voters_outgoing, &vote_of);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

impl ConfState {
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Is `id` a voter in either half of the config?
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) || self.learners_next.contains(&id)
    }

    /// Every node the leader replicates to: voters of both halves and learners.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .chain(&self.learners_next)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Why no group could run on this configuration, if none could: it has no voters, names
    /// node 0 (no node), has a list out of order or with an id twice (every change keeps
    /// each list sorted, and the quorum code counts each id once), or more members than
    /// [`MEMBERS_MAX`]. From a peer's snapshot.
    pub fn shape_error(&self) -> Option<&'static str> {
        if self.voters.is_empty() {
            return Some("a configuration with no voters");
        }
        let lists = [
            &self.voters,
            &self.voters_outgoing,
            &self.learners,
            &self.learners_next,
        ];
        let sorted = |ids: &Vec<NodeId>| {
            ids.first() != Some(&NodeId::NONE) && ids.windows(2).all(|w| w[0] < w[1])
        };
        if !lists.into_iter().all(sorted) {
            return Some("a configuration list out of order, with an id twice, or naming node 0");
        }
        let listed: usize = lists.iter().map(|list| list.len()).sum();
        (listed > 2 * MEMBERS_MAX || self.members().len() > MEMBERS_MAX)
            .then_some("a configuration of more members than a group takes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().map(|&n| NodeId(n)).collect()
    }

    #[test]
    fn majority_value_is_the_median_reached_by_a_quorum() {
        let voters = ids(&[1, 2, 3]);
        let matched = [0, 10, 7, 3];
        assert_eq!(majority_value(&voters, |id| matched[id.0 as usize]), 7);
        let four = ids(&[1, 2, 3, 4]);
        let matched4 = [0, 10, 7, 3, 1];
        assert_eq!(majority_value(&four, |id| matched4[id.0 as usize]), 3);
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        let conf = ConfState {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: ids(&[3, 4, 5]),
            ..Default::default()
        };
        let matched = [0, 9, 9, 2, 1, 1];
        assert_eq!(joint_value(&conf, |id| matched[id.0 as usize]), 1);
    }

    #[test]
    fn joint_vote_is_lost_when_either_half_is_lost() {
        let conf = ConfState {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: ids(&[1, 4, 5]),
            ..Default::default()
        };
        let votes = |granted: &'static [u64], refused: &'static [u64]| {
            move |id: NodeId| {
                if granted.contains(&id.0) {
                    Some(true)
                } else if refused.contains(&id.0) {
                    Some(false)
                } else {
                    None
                }
            }
        };
        assert_eq!(joint_vote(&conf, votes(&[1, 2], &[])), VoteResult::Pending);
        assert_eq!(joint_vote(&conf, votes(&[1, 2, 4], &[])), VoteResult::Won);
        assert_eq!(joint_vote(&conf, votes(&[1, 2], &[4, 5])), VoteResult::Lost);
    }

    #[test]
    fn large_voter_sets_use_the_heap_path() {
        let voters: Vec<NodeId> = (1..=21).map(NodeId).collect();
        assert_eq!(majority_value(&voters, |id| id.0), 11);
    }
}
