//! The pure Raft core: one replica of one group as a deterministic state machine.
//!
//! No I/O, no clock, no threads, no OS randomness: time is `tick()`, randomness is a seeded
//! PRNG handed in, and every effect the caller must carry out comes out of `ready()`.

mod message;
mod types;

pub use message::{
    AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody, VoteRequest,
    VoteResponse,
};
pub use types::{
    ConfState, ENTRY_OVERHEAD_BYTES, Entry, EntryKind, GroupId, HardState, LogIndex, NodeId, Role,
    Snapshot, SnapshotMeta, Term,
};
