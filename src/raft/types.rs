//! Protocol numbers as newtypes, log entries and the durable state of one replica.

use std::fmt;

use bytes::Bytes;

macro_rules! protocol_number {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

protocol_number!(
    /// A Raft term: a logical clock that increases with every election.
    Term(u64)
);
protocol_number!(
    /// The position of an entry in a group's log; the first entry has index 1.
    LogIndex(u64)
);
protocol_number!(
    /// A node of the cluster; stable for the node's life. `NodeId(0)` means "none".
    NodeId(u64)
);
protocol_number!(
    /// A Raft group: one shard of the key space.
    GroupId(u32)
);

impl Term {
    pub const ZERO: Term = Term(0);
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    pub const ZERO: LogIndex = LogIndex(0);
    #[must_use]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The index before this one; the index before 0 is 0.
    #[must_use]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
    #[must_use]
    pub fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl NodeId {
    pub const NONE: NodeId = NodeId(0);
    pub fn is_none(self) -> bool {
        self == NodeId::NONE
    }
}

/// What an entry carries. The kind decides who interprets the payload: the application
/// (`Normal`), the Raft core itself (`ConfChange`), or nobody (`Empty`, the no-op a new
/// leader appends to commit entries of earlier terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    Normal = 0,
    ConfChange = 1,
    Empty = 2,
}

impl EntryKind {
    pub fn from_u8(value: u8) -> Option<EntryKind> {
        match value {
            0 => Some(EntryKind::Normal),
            1 => Some(EntryKind::ConfChange),
            2 => Some(EntryKind::Empty),
            _ => None,
        }
    }
}

/// One log record. The payload is reference counted: the leader's log, its appends to each
/// follower and the apply path share one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub kind: EntryKind,
    pub data: Bytes,
}

/// Bytes an entry is counted as for the byte limits (payload plus a fixed header estimate,
/// so empty entries are not free).
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// The state a replica must persist before it answers any message that depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    /// The node this replica voted for in `term`, or `NodeId::NONE`.
    pub vote: NodeId,
    /// Highest index known committed. A torn write can keep entries and lose the commit
    /// that came with them: a replica restarted takes as committed, besides, the conf
    /// change before the last one in its log, since its configuration depends on it.
    pub commit: LogIndex,
}

impl HardState {
    /// The hard state a log recovers with when its snapshot may be newer than its last
    /// hard-state record (the crash came after the snapshot was stored, before the record
    /// that followed it): the term is at least the snapshot's, a vote belongs to its term
    /// (none in a term raised to the snapshot's), and the snapshot is committed.
    pub fn under_snapshot(self, snapshot: &SnapshotMeta) -> HardState {
        HardState {
            term: self.term.max(snapshot.term),
            vote: if snapshot.term > self.term {
                NodeId::NONE
            } else {
                self.vote
            },
            commit: self.commit.max(snapshot.index),
        }
    }
}

/// The membership of a group, as stored in snapshots and applied from conf-change entries.
/// While `voters_outgoing` is non-empty the group is in joint consensus: every decision
/// needs a majority of `voters` and a majority of `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub voters_outgoing: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Voters of the outgoing config that become learners when the joint config is left.
    pub learners_next: Vec<NodeId>,
    /// Leave the joint config automatically (the leader proposes it) once it is applied.
    pub auto_leave: bool,
}

/// Where a snapshot sits in the log, and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub conf_state: ConfState,
}

/// A snapshot of the state machine as the core sees it: metadata and opaque bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// The role a replica plays right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}
