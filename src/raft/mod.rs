//! The pure Raft core: one replica of one group as a deterministic state machine.
//!
//! No I/O, no clock, no threads, no OS randomness: time is [`Replica::tick`], randomness
//! is a seed handed to [`Replica::new`], and every effect the caller must carry out comes
//! out of [`Replica::ready`] (see [`Ready`] for the order of obligations).
//!
//! ```
//! use bytes::Bytes;
//! use cohort::raft::{Config, NodeId, Persisted, Replica, Role};
//!
//! // A group of one: it elects itself and commits on its own durable log.
//! let mut replica = Replica::new(Config::new(NodeId(1)), 7, Persisted::bootstrap(&[NodeId(1)])).unwrap();
//! replica.campaign();
//! assert_eq!(replica.role(), Role::Leader);
//! replica.propose(Bytes::from_static(b"x=1")).unwrap();
//! let mut applied = Vec::new();
//! while replica.has_ready() {
//!     let mut ready = replica.ready();
//!     // (persist ready.entries() and ready.hard_state() here, then send messages)
//!     applied.extend(ready.take_committed());
//!     replica.advance(ready.ack());
//! }
//! assert_eq!(applied.last().unwrap().data, Bytes::from_static(b"x=1"));
//! ```
//!
//! Files: `replica.rs` (state and API), `election.rs`, `replication.rs`, `reads.rs`,
//! `membership.rs` + `confchange.rs`, `quiesce.rs` (idle groups stop their timers), `ready.rs`, `log.rs`, `progress.rs`, `quorum.rs`.

mod confchange;
mod config;
mod election;
mod errors;
mod log;
mod membership;
mod message;
mod progress;
mod quiesce;
mod quorum;
mod reads;
mod ready;
mod replica;
mod replication;
mod rng;
mod types;

pub use confchange::{
    ConfChange, ConfChangeError, ConfChangeKind, ConfChangeSingle, ConfChangeTransition,
    MEMBERS_MAX,
};
pub use config::{Config, ConfigError};
pub use errors::{CompactError, ProposeError, ReadError, StepError, TransferError};
pub use message::{
    AppendEntries, AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, Message,
    MessageBody, SnapshotChunk, VoteRequest, VoteResponse,
};
pub use progress::ProgressState;
pub use ready::{Ready, ReadyAck};
pub use replica::{LostEntries, PeerStatus, Persisted, Proposed, ReadState, Replica, Status};
pub use rng::Prng;
pub use types::{
    ConfState, ENTRY_OVERHEAD_BYTES, Entry, EntryKind, GroupId, HardState, LogIndex, NodeId, Role,
    Snapshot, SnapshotMeta, Term,
};
