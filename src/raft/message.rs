//! The messages Raft replicas exchange, as plain Rust values (the wire format lives in
//! `src/wire` and converts to and from these).

use bytes::Bytes;

use super::types::{Entry, LogIndex, NodeId, Snapshot, SnapshotMeta, Term};

/// An append's entries: one is held inline (a turn's writes to a group are one entry), more
/// spill to the heap.
pub type AppendEntries = smallvec::SmallVec<[Entry; 1]>;

/// One message between two replicas of the same group. The group itself is not named here:
/// the shard that drives the core knows which group a message belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term (for `PreVoteRequest`: the term it would campaign in).
    pub term: Term,
    pub body: MessageBody,
}

// Messages move by value through the core's outbox, the shard and the transport's queues:
// keep them small (the big, rare kinds are boxed). An append holds one entry inline, which
// makes a message 120 bytes instead of 80: moving 40 more bytes costs far less than the
// allocation and free it saves per append on both sides (`cargo bench --bench transport`:
// verify + decode of 64 B appends 15.9 → 25.6 M/s on one core).
const _: () = assert!(std::mem::size_of::<Message>() <= 120);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader → follower: entries that follow `(prev_log_index, prev_log_term)`.
    AppendRequest(AppendRequest),
    /// Follower → leader: the outcome of an append (or of a snapshot install).
    AppendResponse(AppendResponse),
    /// Pre-candidate → all: would you vote for me in `term`? Changes no state.
    PreVoteRequest(VoteRequest),
    PreVoteResponse(VoteResponse),
    /// Candidate → all: vote for me in `term`.
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    /// Leader → follower: I am alive; here is the commit index you may apply up to.
    Heartbeat(Heartbeat),
    HeartbeatResponse(HeartbeatResponse),
    /// Leader → follower: replace your log with this snapshot. Boxed, as is `SnapshotChunk`:
    /// the two rare kinds would otherwise make every message 200 bytes instead of 80.
    InstallSnapshot(Box<Snapshot>),
    /// Leader → transferee: start an election now (leadership transfer).
    TimeoutNow,
    /// Follower → leader: confirm leadership and tell me the commit index for a read.
    ReadIndexRequest {
        ctx: u64,
    },
    /// Leader → follower: the read with `ctx` may be served once applied up to `index`.
    ReadIndexResponse {
        ctx: u64,
        index: LogIndex,
    },
    /// Follower → leader: proposals forwarded on behalf of clients of the follower.
    ForwardProposal {
        data: Vec<Bytes>,
    },
    /// Leader → follower: one bounded chunk of a snapshot on its way. The core never sends
    /// nor takes these: the layer that drives it splits an `InstallSnapshot` into chunks and
    /// assembles the chunks back into one (see `shard::snapshot_stream`).
    SnapshotChunk(Box<SnapshotChunk>),
    /// Follower → leader: of the snapshot at `index`, the first `received` bytes arrived; `gap`:
    /// a chunk after them was missing (or the follower lost what it had), so resend from there.
    SnapshotAck {
        index: LogIndex,
        received: u64,
        gap: bool,
    },
}

/// Bytes `offset..offset + data.len()` of a snapshot of `total` bytes whose crc32 is
/// `checksum`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub total: u64,
    pub checksum: u32,
    pub data: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: AppendEntries,
    /// The leader's commit index.
    pub commit: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResponse {
    /// On success: the follower's log matches the leader's up to `index`.
    /// On reject: `index` is the rejected `prev_log_index`.
    pub index: LogIndex,
    pub reject: bool,
    /// On reject: the follower's best guess of where the logs may match (its last index, or
    /// the first index of the conflicting term), and the term of its entry there. The leader
    /// uses both to skip a whole conflicting term per round trip.
    pub reject_hint: LogIndex,
    pub hint_term: Term,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
    /// Set when the election was started by a leadership transfer: voters disregard the
    /// leader lease they would otherwise protect.
    pub transfer: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    pub reject: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what this follower is known to hold.
    pub commit: LogIndex,
    /// The read round this heartbeat confirms (0: none).
    pub read_round: u64,
    /// What this follower is known to hold: its match index (never below `commit`). A log
    /// that ends before it lost entries it acknowledged, committed or not.
    pub acknowledged: LogIndex,
    /// The leader's term of its entry at `acknowledged` (0: not known, the leader compacted
    /// it). A log that holds another term there lost entries it acknowledged too: an older
    /// copy of them came back (a machine crash under `--sync never` that kept older pages of
    /// the log and lost the newer ones that replaced them).
    pub acknowledged_term: Term,
    /// The leader's term of its entry at `commit` (0: not known). A follower that lost
    /// entries it acknowledged votes for no candidate whose last entry is behind it.
    pub commit_term: Term,
    /// The leader stops heartbeating after this one: a follower that holds its whole log,
    /// committed, stops its election timer (see `quiesce.rs`).
    pub quiesce: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// Echo of `Heartbeat::read_round`.
    pub read_round: u64,
    /// Where the follower's log is known to match the leader's, when it lost entries it had
    /// acknowledged (see `LostEntries`): its last index, when the heartbeat's acknowledged
    /// index was beyond it; its commit, when its log holds another term there.
    pub short_of_commit: Option<LogIndex>,
}

impl MessageBody {
    /// Payload bytes carried, for byte-bounded inflight windows.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            MessageBody::AppendRequest(append) => {
                append.entries.iter().map(Entry::size_bytes).sum()
            }
            MessageBody::InstallSnapshot(snapshot) => snapshot.data.len() as u64,
            MessageBody::SnapshotChunk(chunk) => chunk.data.len() as u64,
            MessageBody::ForwardProposal { data } => data.iter().map(|d| d.len() as u64).sum(),
            _ => 0,
        }
    }

    /// A short name for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::AppendRequest(_) => "AppendRequest",
            MessageBody::AppendResponse(_) => "AppendResponse",
            MessageBody::PreVoteRequest(_) => "PreVoteRequest",
            MessageBody::PreVoteResponse(_) => "PreVoteResponse",
            MessageBody::VoteRequest(_) => "VoteRequest",
            MessageBody::VoteResponse(_) => "VoteResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest { .. } => "ReadIndexRequest",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::ForwardProposal { .. } => "ForwardProposal",
            MessageBody::SnapshotChunk(_) => "SnapshotChunk",
            MessageBody::SnapshotAck { .. } => "SnapshotAck",
        }
    }
}
