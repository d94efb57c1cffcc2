//! Errors of the core's operations, one enum per operation.

use std::fmt;

use super::confchange::ConfChangeError;
use super::types::{LogIndex, NodeId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica is not the leader (and does not forward); retry at the hinted node.
    NotLeader {
        leader_hint: Option<NodeId>,
    },
    /// Leadership is being handed over; retry at the new leader shortly.
    TransferInProgress,
    /// Too many bytes proposed and not yet committed; retry after commits catch up.
    Backpressure {
        uncommitted_bytes: u64,
        uncommitted_bytes_max: u64,
    },
    /// Another conf change is not yet applied.
    ConfChangePending {
        index: LogIndex,
    },
    InvalidConfChange(ConfChangeError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// No leader is known to confirm the read.
    NoLeader,
    /// Too many reads are waiting for confirmation.
    Backpressure { pending: usize, pending_max: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    NotLeader {
        leader_hint: Option<NodeId>,
    },
    NotAVoter {
        node: NodeId,
    },
    /// A membership change not applied yet (the entry at `index`) takes the target out of
    /// the voters: elected, it would step down once that change is applied.
    Leaving {
        node: NodeId,
        index: LogIndex,
    },
    /// A transfer to `to` is under way, and `to` was told to campaign: it ends within an
    /// election timeout.
    UnderWay {
        to: NodeId,
    },
}

/// Why `compact` did not compact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactError {
    BeyondApplied {
        index: LogIndex,
        applied: LogIndex,
    },
    AlreadyCompacted {
        index: LogIndex,
        snapshot_index: LogIndex,
    },
    /// A conf change above `index` is already in force, so the membership at `index` is
    /// not known any more; compact at or after `conf_index`.
    ConfChangeAhead {
        index: LogIndex,
        conf_index: LogIndex,
    },
    /// A conf change at or below `index` was handed out to apply and is not in force yet
    /// (the Ready that holds it is not advanced): the snapshot would carry the membership
    /// before it, and the change, gone from the log, would never come into force.
    ConfChangeApplying {
        index: LogIndex,
        conf_index: LogIndex,
    },
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::BeyondApplied { index, applied } => {
                write!(f, "cannot compact to {index}: only applied up to {applied}")
            }
            CompactError::AlreadyCompacted {
                index,
                snapshot_index,
            } => {
                write!(
                    f,
                    "cannot compact to {index}: already compacted to {snapshot_index}"
                )
            }
            CompactError::ConfChangeAhead { index, conf_index } => {
                write!(
                    f,
                    "cannot compact to {index}: conf change at {conf_index} is already in force"
                )
            }
            CompactError::ConfChangeApplying { index, conf_index } => {
                write!(
                    f,
                    "cannot compact to {index}: conf change at {conf_index} is not in force \
                     yet; compact after the Ready that applies it is advanced"
                )
            }
        }
    }
}

impl std::error::Error for CompactError {}

/// A message refused by `step`: it cannot have come from a correct peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    WrongRecipient { to: NodeId },
    Malformed(&'static str),
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader {
                leader_hint: Some(leader),
            } => write!(f, "not the leader; try node {leader}"),
            ProposeError::NotLeader { leader_hint: None } => {
                write!(f, "not the leader, and no leader is known")
            }
            ProposeError::TransferInProgress => write!(f, "leadership transfer in progress"),
            ProposeError::Backpressure {
                uncommitted_bytes,
                uncommitted_bytes_max,
            } => write!(
                f,
                "{uncommitted_bytes} bytes uncommitted, limit {uncommitted_bytes_max}: retry later"
            ),
            ProposeError::ConfChangePending { index } => {
                write!(f, "conf change at index {index} is not applied yet")
            }
            ProposeError::InvalidConfChange(error) => write!(f, "invalid conf change: {error}"),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NoLeader => write!(f, "no leader known to confirm the read"),
            ReadError::Backpressure {
                pending,
                pending_max,
            } => {
                write!(
                    f,
                    "{pending} reads waiting, limit {pending_max}: retry later"
                )
            }
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader { leader_hint } => {
                write!(f, "not the leader (hint: {leader_hint:?})")
            }
            TransferError::NotAVoter { node } => {
                write!(f, "node {node} is not a voter of this group")
            }
            TransferError::Leaving { node, index } => write!(
                f,
                "node {node} leaves the voters at the membership change of entry {index}, not \
                 applied yet"
            ),
            TransferError::UnderWay { to } => write!(
                f,
                "a transfer to node {to} is under way (ask again once it ends, within an \
                 election timeout)"
            ),
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::WrongRecipient { to } => write!(f, "message addressed to node {to}"),
            StepError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for ProposeError {}
impl std::error::Error for ReadError {}
impl std::error::Error for TransferError {}
impl std::error::Error for StepError {}
