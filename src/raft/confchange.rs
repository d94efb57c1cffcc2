//! Membership changes: their encoding inside log entries and the rules that apply them.
//!
//! A change of one voter (or of learners only) applies directly. Anything larger goes
//! through joint consensus: the group first runs on `old ∪ new` (every decision needs a
//! majority of both), then leaves the joint config with an empty change. The leader
//! proposes that leave itself when `transition` is `Auto`.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::types::{ConfState, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConfChangeKind {
    AddVoter = 0,
    AddLearner = 1,
    Remove = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfChangeSingle {
    pub kind: ConfChangeKind,
    pub node: NodeId,
}

/// How a joint config is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConfChangeTransition {
    /// The leader proposes leaving the joint config as soon as entering it is applied.
    Auto = 0,
    /// The caller leaves it by proposing an empty `ConfChange` (e.g. after checks of its own).
    Explicit = 1,
    /// Always through a joint config, even for a single change; the leader leaves it as with
    /// `Auto`. What cluster membership operations use: no decision is ever taken by a
    /// majority of the new config alone before that config is known to a majority of the old.
    Joint = 2,
}

/// A membership change. An empty `changes` list means "leave the joint config".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    pub changes: Vec<ConfChangeSingle>,
    pub transition: ConfChangeTransition,
    /// Opaque to the core: the node layer puts member addresses here.
    pub context: Bytes,
}

/// Why a conf change cannot apply to the current configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    LeaveWithoutJoint,
    AlreadyJoint,
    /// A direct (non-joint) change may add or remove at most one voter.
    TooManyVoterChanges {
        changed: usize,
    },
    NoVoters,
    /// The change would make the group more members than [`MEMBERS_MAX`].
    TooManyMembers {
        members: usize,
    },
    Malformed(&'static str),
}

/// The most members (voters and learners, of both halves of a joint configuration) a group
/// may have. Every member of a group replicates all of it and is heard from at every tick:
/// no cluster needs more, and without a bound a client (the client port is not
/// authenticated) could add learners until the leaders' memory ran out, and a peer's
/// snapshot could name millions (reviews 223, 228).
pub const MEMBERS_MAX: usize = 64;

impl fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChangeError::LeaveWithoutJoint => {
                write!(f, "not in a joint config: nothing to leave")
            }
            ConfChangeError::AlreadyJoint => write!(f, "already in a joint config: leave it first"),
            ConfChangeError::TooManyVoterChanges { changed } => {
                write!(
                    f,
                    "a direct change may alter one voter, this alters {changed}"
                )
            }
            ConfChangeError::NoVoters => write!(f, "the change would leave no voters"),
            ConfChangeError::TooManyMembers { members } => write!(
                f,
                "the change would make {members} members, more than a group takes \
                 ({MEMBERS_MAX})"
            ),
            ConfChangeError::Malformed(why) => write!(f, "malformed conf change entry: {why}"),
        }
    }
}

impl std::error::Error for ConfChangeError {}

const ENCODING_VERSION: u8 = 1;
const HEADER_BYTES: usize = 4;
const CHANGE_BYTES: usize = 9;

impl ConfChange {
    pub fn single(kind: ConfChangeKind, node: NodeId) -> ConfChange {
        ConfChange {
            changes: vec![ConfChangeSingle { kind, node }],
            transition: ConfChangeTransition::Auto,
            context: Bytes::new(),
        }
    }

    pub fn leave_joint() -> ConfChange {
        ConfChange {
            changes: Vec::new(),
            transition: ConfChangeTransition::Auto,
            context: Bytes::new(),
        }
    }

    /// Layout: version u8, transition u8, count u16 LE, then per change kind u8 and node
    /// u64 LE, then the context to the end.
    pub fn encode(&self) -> Bytes {
        let count = u16::try_from(self.changes.len()).expect("at most 65535 changes at once");
        let mut out = BytesMut::with_capacity(
            HEADER_BYTES + CHANGE_BYTES * self.changes.len() + self.context.len(),
        );
        out.put_u8(ENCODING_VERSION);
        out.put_u8(self.transition as u8);
        out.put_u16_le(count);
        for change in &self.changes {
            out.put_u8(change.kind as u8);
            out.put_u64_le(change.node.0);
        }
        out.put_slice(&self.context);
        out.freeze()
    }

    pub fn decode(data: &Bytes) -> Result<ConfChange, ConfChangeError> {
        let malformed = ConfChangeError::Malformed;
        if data.len() < HEADER_BYTES {
            return Err(malformed("shorter than its header"));
        }
        if data[0] != ENCODING_VERSION {
            return Err(malformed("unknown encoding version"));
        }
        let transition = match data[1] {
            0 => ConfChangeTransition::Auto,
            1 => ConfChangeTransition::Explicit,
            2 => ConfChangeTransition::Joint,
            _ => return Err(malformed("unknown transition")),
        };
        let count = u16::from_le_bytes([data[2], data[3]]) as usize;
        let changes_end = HEADER_BYTES + count * CHANGE_BYTES;
        if data.len() < changes_end {
            return Err(malformed("change list runs past the end"));
        }
        let mut changes = Vec::with_capacity(count);
        for raw in data[HEADER_BYTES..changes_end].chunks_exact(CHANGE_BYTES) {
            let kind = match raw[0] {
                0 => ConfChangeKind::AddVoter,
                1 => ConfChangeKind::AddLearner,
                2 => ConfChangeKind::Remove,
                _ => return Err(malformed("unknown change kind")),
            };
            let node = NodeId(u64::from_le_bytes(
                raw[1..9].try_into().expect("9-byte chunk"),
            ));
            if node.is_none() {
                return Err(malformed("node id 0"));
            }
            changes.push(ConfChangeSingle { kind, node });
        }
        Ok(ConfChange {
            changes,
            transition,
            context: data.slice(changes_end..),
        })
    }

    /// The configuration after this change, or why it cannot apply to `conf`.
    pub fn apply_to(&self, conf: &ConfState) -> Result<ConfState, ConfChangeError> {
        let mut next = conf.clone();
        if self.changes.is_empty() {
            if !conf.is_joint() {
                return Err(ConfChangeError::LeaveWithoutJoint);
            }
            next.voters_outgoing.clear();
            let demoted = std::mem::take(&mut next.learners_next);
            for node in demoted {
                insert(&mut next.learners, node);
            }
            next.auto_leave = false;
            return Ok(next);
        }
        if conf.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        let bootstrap = conf.voters.is_empty();
        let joint =
            !bootstrap && (self.changes.len() > 1 || self.transition != ConfChangeTransition::Auto);
        if joint {
            next.voters_outgoing = conf.voters.clone();
            next.auto_leave = self.transition != ConfChangeTransition::Explicit;
        }
        for change in &self.changes {
            apply_single(&mut next, *change);
        }
        if next.voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        let members = next.members().len();
        if members > MEMBERS_MAX {
            return Err(ConfChangeError::TooManyMembers { members });
        }
        if !joint && !bootstrap {
            let changed = symmetric_difference(&conf.voters, &next.voters);
            if changed > 1 {
                return Err(ConfChangeError::TooManyVoterChanges { changed });
            }
        }
        Ok(next)
    }
}

fn apply_single(conf: &mut ConfState, change: ConfChangeSingle) {
    let node = change.node;
    match change.kind {
        ConfChangeKind::AddVoter => {
            remove(&mut conf.learners, node);
            remove(&mut conf.learners_next, node);
            insert(&mut conf.voters, node);
        }
        ConfChangeKind::AddLearner => {
            remove(&mut conf.voters, node);
            // A voter of the outgoing half stays a voter until the joint config is left.
            if conf.voters_outgoing.contains(&node) {
                insert(&mut conf.learners_next, node);
            } else {
                insert(&mut conf.learners, node);
            }
        }
        ConfChangeKind::Remove => {
            remove(&mut conf.voters, node);
            remove(&mut conf.learners, node);
            remove(&mut conf.learners_next, node);
        }
    }
}

fn insert(set: &mut Vec<NodeId>, node: NodeId) {
    if let Err(position) = set.binary_search(&node) {
        set.insert(position, node);
    }
}

fn remove(set: &mut Vec<NodeId>, node: NodeId) {
    set.retain(|&n| n != node);
}

fn symmetric_difference(a: &[NodeId], b: &[NodeId]) -> usize {
    a.iter().filter(|n| !b.contains(n)).count() + b.iter().filter(|n| !a.contains(n)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().map(|&n| NodeId(n)).collect()
    }

    fn voters(raw: &[u64]) -> ConfState {
        ConfState {
            voters: ids(raw),
            ..Default::default()
        }
    }

    fn change(kind: ConfChangeKind, node: u64) -> ConfChangeSingle {
        ConfChangeSingle {
            kind,
            node: NodeId(node),
        }
    }

    #[test]
    fn encoding_round_trips() {
        let cc = ConfChange {
            changes: vec![
                change(ConfChangeKind::AddVoter, 4),
                change(ConfChangeKind::Remove, 1),
            ],
            transition: ConfChangeTransition::Explicit,
            context: Bytes::from_static(b"addr"),
        };
        assert_eq!(ConfChange::decode(&cc.encode()), Ok(cc));
    }

    #[test]
    fn truncated_or_garbage_encodings_are_rejected() {
        let encoded = ConfChange::single(ConfChangeKind::AddVoter, NodeId(3)).encode();
        for len in 0..HEADER_BYTES + CHANGE_BYTES {
            assert!(
                ConfChange::decode(&encoded.slice(..len)).is_err(),
                "length {len}"
            );
        }
        let mut bad = encoded.to_vec();
        bad[4] = 9;
        assert!(ConfChange::decode(&Bytes::from(bad)).is_err());
    }

    #[test]
    fn adding_one_voter_applies_directly() {
        let next = ConfChange::single(ConfChangeKind::AddVoter, NodeId(4))
            .apply_to(&voters(&[1, 2, 3]))
            .unwrap();
        assert_eq!(next.voters, ids(&[1, 2, 3, 4]));
        assert!(!next.is_joint());
    }

    #[test]
    fn replacing_a_voter_goes_through_joint_consensus() {
        let cc = ConfChange {
            changes: vec![
                change(ConfChangeKind::AddVoter, 4),
                change(ConfChangeKind::Remove, 1),
            ],
            transition: ConfChangeTransition::Auto,
            context: Bytes::new(),
        };
        let joint = cc.apply_to(&voters(&[1, 2, 3])).unwrap();
        assert_eq!(joint.voters, ids(&[2, 3, 4]));
        assert_eq!(joint.voters_outgoing, ids(&[1, 2, 3]));
        assert!(joint.auto_leave);
        let left = ConfChange::leave_joint().apply_to(&joint).unwrap();
        assert_eq!(left, voters(&[2, 3, 4]));
    }

    #[test]
    fn a_joint_transition_makes_even_one_change_joint_and_leaves_it_automatically() {
        let cc = ConfChange {
            changes: vec![change(ConfChangeKind::AddVoter, 4)],
            transition: ConfChangeTransition::Joint,
            context: Bytes::new(),
        };
        assert_eq!(ConfChange::decode(&cc.encode()), Ok(cc.clone()));
        let joint = cc.apply_to(&voters(&[1, 2, 3])).unwrap();
        assert_eq!(joint.voters, ids(&[1, 2, 3, 4]));
        assert_eq!(joint.voters_outgoing, ids(&[1, 2, 3]));
        assert!(joint.auto_leave);
    }

    #[test]
    fn demoted_outgoing_voter_becomes_learner_on_leave() {
        let cc = ConfChange {
            changes: vec![change(ConfChangeKind::AddLearner, 3)],
            transition: ConfChangeTransition::Explicit,
            context: Bytes::new(),
        };
        let joint = cc.apply_to(&voters(&[1, 2, 3])).unwrap();
        assert_eq!(joint.learners_next, ids(&[3]));
        assert!(joint.is_voter(NodeId(3)));
        let left = ConfChange::leave_joint().apply_to(&joint).unwrap();
        assert_eq!(left.learners, ids(&[3]));
        assert!(!left.is_voter(NodeId(3)));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let three = voters(&[1, 2, 3]);
        assert_eq!(
            ConfChange::leave_joint().apply_to(&three),
            Err(ConfChangeError::LeaveWithoutJoint)
        );
        assert_eq!(
            ConfChange::single(ConfChangeKind::Remove, NodeId(1)).apply_to(&voters(&[1])),
            Err(ConfChangeError::NoVoters)
        );
        let joint = ConfChange {
            changes: vec![change(ConfChangeKind::AddVoter, 4); 2],
            ..ConfChange::leave_joint()
        }
        .apply_to(&three)
        .unwrap();
        assert_eq!(
            ConfChange::single(ConfChangeKind::AddVoter, NodeId(5)).apply_to(&joint),
            Err(ConfChangeError::AlreadyJoint)
        );
    }

    /// Goal (reviews 223, 228): a group takes at most `MEMBERS_MAX` members, so that a
    /// client adding learners (or a peer's snapshot naming millions) cannot fill a leader's
    /// memory, and its shape check says so. Method: 3 voters and learners up to the bound:
    /// one more learner is refused, and a configuration of one more member is misshapen.
    #[test]
    fn a_group_takes_at_most_members_max_members() {
        let mut full = voters(&[1, 2, 3]);
        full.learners = (4..=MEMBERS_MAX as u64).map(NodeId).collect();
        assert_eq!(full.shape_error(), None);
        let add = |id| ConfChange::single(ConfChangeKind::AddLearner, NodeId(id));
        assert_eq!(
            add(MEMBERS_MAX as u64 + 1).apply_to(&full),
            Err(ConfChangeError::TooManyMembers {
                members: MEMBERS_MAX + 1
            })
        );
        assert!(add(3).apply_to(&full).is_ok(), "a voter made a learner");
        assert!(
            ConfChange::single(ConfChangeKind::Remove, NodeId(4))
                .apply_to(&full)
                .is_ok()
        );
        full.learners.push(NodeId(MEMBERS_MAX as u64 + 1));
        assert!(
            full.shape_error()
                .is_some_and(|why| why.contains("more members"))
        );
    }
}
