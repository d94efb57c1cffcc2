//! Conversion between the Raft core's messages and the wire tables.
//!
//! This file and `batch.rs` (the batch's columns) are the only ones that know both
//! `cohort::raft` and the generated tables, so when the core's types gain a field, they (and
//! the round-trip test) are all that changes.
//!
//! Copies: encoding copies an entry payload into the outgoing flatbuffer, and before that
//! into a scratch buffer when it is joined with others (the builder takes a vector from one
//! slice): the payloads of a batch's append column, or of a multi-entry append table. An
//! append of one big entry therefore goes as a table (`batch.rs`). Decoding
//! copies none: the caller hands in the whole received frame as [`Bytes`], and every
//! payload becomes a [`Bytes::slice_ref`] of it (a reference count, no memcpy).

use std::fmt;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use crate::raft::{
    AppendRequest, AppendResponse, ConfState, Entry, GroupId, Heartbeat, HeartbeatResponse,
    LogIndex, Message, MessageBody, NodeId, Snapshot, SnapshotChunk, SnapshotMeta, Term,
    VoteRequest, VoteResponse,
};

use super::batch::{self, Columns};
use super::fb;
use super::frame::{FrameError, frame_header_for, open_frame};
use super::handshake::{ClusterId, Handshake, Layout, Timing};
use super::limits::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, HANDSHAKE_MAGIC, RAFT_MESSAGES_PER_FRAME_MAX,
};
use super::sender_says::SenderSays;

/// A Raft message and the group it belongs to: the unit the transport moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub group: GroupId,
    pub message: Message,
}

/// The bytes `envelopes` hold besides the frame their payloads are slices of: the vector,
/// entries past an append's first, forwarded proposals, boxed snapshots and their
/// membership lists. A frame can decode into a few times its size (an entry is 24 bytes on
/// the wire and 56 decoded); a receiver weighs what it holds by the two together.
pub fn decoded_bytes(envelopes: &Vec<Envelope>) -> usize {
    envelopes.capacity() * std::mem::size_of::<Envelope>()
        + envelopes
            .iter()
            .map(|envelope| held_bytes(&envelope.message.body))
            .sum::<usize>()
}

/// The heap bytes a message's body holds outside its envelope and its payloads: entries past
/// an append's first, forwarded proposals' handles, a boxed snapshot and its membership lists.
pub fn held_bytes(body: &MessageBody) -> usize {
    let conf_bytes = |meta: &SnapshotMeta| {
        let conf = &meta.conf_state;
        let ids = conf.voters.capacity()
            + conf.voters_outgoing.capacity()
            + conf.learners.capacity()
            + conf.learners_next.capacity();
        ids * std::mem::size_of::<NodeId>()
    };
    match body {
        MessageBody::AppendRequest(append) if append.entries.spilled() => {
            append.entries.capacity() * std::mem::size_of::<Entry>()
        }
        MessageBody::ForwardProposal { data } => data.capacity() * std::mem::size_of::<Bytes>(),
        MessageBody::InstallSnapshot(snapshot) => {
            std::mem::size_of::<Snapshot>() + conf_bytes(&snapshot.meta)
        }
        MessageBody::SnapshotChunk(chunk) => {
            std::mem::size_of::<SnapshotChunk>() + conf_bytes(&chunk.meta)
        }
        _ => 0,
    }
}

/// Why a verified frame still makes no sense as a cohort frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentError {
    HandshakeMagicWrong {
        magic: u32,
    },
    /// A union tag this build does not know (a newer peer, or garbage that verified).
    UnionUnknown {
        union: &'static str,
        tag: u8,
    },
    /// A message without a body (or an append without its position).
    BodyMissing {
        message_index: usize,
    },
    /// A message without its header (sender, receiver, term, group).
    HeaderMissing {
        message_index: usize,
    },
    EntryKindUnknown {
        tag: u8,
    },
    /// An entry's payload run is not within the append's data (or runs backwards).
    EntryDataOutOfBounds {
        start: usize,
        end: usize,
        data_bytes: usize,
    },
    TooManyMessages {
        messages: usize,
        messages_max: usize,
    },
    /// An answer with more results than a command has operations.
    TooManyResults {
        results: usize,
        results_max: usize,
    },
    /// A batch's `order` names more items of a column than it has.
    ColumnExhausted {
        column: &'static str,
        message_index: usize,
    },
    /// A batch's columns hold another number of items than its `order` names.
    ColumnsMismatch {
        messages: usize,
        items: usize,
    },
    /// A run of a column (an append's entries, a request's operations or bytes, …) is not
    /// within the column (or runs backwards).
    RunOutOfBounds {
        column: &'static str,
        start: usize,
        end: usize,
        len: usize,
    },
    /// A column that runs beside another (one item per item of it) holds another number.
    ColumnLengthWrong {
        column: &'static str,
        len: usize,
        expected: usize,
    },
    /// Items of a column that no message, request or response took.
    LeftOver {
        column: &'static str,
        items: usize,
    },
    /// A form an earlier protocol used and this build no longer reads.
    Obsolete {
        what: &'static str,
    },
    /// A Raft term or log index no cluster reaches (above [`RAFT_NUMBER_MAX`]): from a
    /// broken or hostile peer, and one step from overflowing the core's arithmetic.
    NumberTooLarge {
        what: &'static str,
        value: u64,
        message_index: usize,
    },
    /// A snapshot's configuration that no group could run on (see
    /// [`ConfState::shape_error`]), or none at all.
    ConfStateInvalid {
        why: &'static str,
    },
    /// A cluster's shape that cannot be: no cores, or no groups.
    ShapeEmpty {
        cores: u64,
        groups: u64,
    },
    /// A topology names more of `what` than any cluster has (a broken or hostile node).
    TopologyTooLarge {
        what: &'static str,
        count: u64,
        max: u64,
    },
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentError::HandshakeMagicWrong { magic } => {
                write!(
                    f,
                    "handshake magic {magic:#010x}, expected {HANDSHAKE_MAGIC:#010x}"
                )
            }
            ContentError::UnionUnknown { union, tag } => write!(f, "unknown {union} tag {tag}"),
            ContentError::BodyMissing { message_index } => {
                write!(f, "message {message_index} of the batch has no body")
            }
            ContentError::HeaderMissing { message_index } => {
                write!(f, "message {message_index} of the batch has no header")
            }
            ContentError::EntryKindUnknown { tag } => write!(f, "unknown entry kind {tag}"),
            ContentError::EntryDataOutOfBounds {
                start,
                end,
                data_bytes,
            } => write!(
                f,
                "entry payload {start}..{end} outside the append's {data_bytes} data bytes"
            ),
            ContentError::TooManyMessages {
                messages,
                messages_max,
            } => {
                write!(
                    f,
                    "{messages} messages in one frame, at most {messages_max}"
                )
            }
            ContentError::TooManyResults {
                results,
                results_max,
            } => write!(
                f,
                "an answer of {results} results, at most {results_max} (one per operation)"
            ),
            ContentError::ColumnExhausted {
                column,
                message_index,
            } => write!(
                f,
                "message {message_index} of the batch is the next of column {column}, which has no more"
            ),
            ContentError::ColumnsMismatch { messages, items } => write!(
                f,
                "the batch orders {messages} messages but its columns hold {items}"
            ),
            ContentError::RunOutOfBounds {
                column,
                start,
                end,
                len,
            } => write!(f, "run {start}..{end} outside the {len} items of {column}"),
            ContentError::LeftOver { column, items } => {
                write!(f, "{items} items of {column} belong to nothing")
            }
            ContentError::NumberTooLarge {
                what,
                value,
                message_index,
            } => write!(
                f,
                "message {message_index} of the batch has {what} {value}, above {RAFT_NUMBER_MAX}"
            ),
            ContentError::ConfStateInvalid { why } => write!(f, "snapshot: {why}"),
            ContentError::ColumnLengthWrong {
                column,
                len,
                expected,
            } => write!(f, "column {column} holds {len} items, not {expected}"),
            ContentError::ShapeEmpty { cores, groups } => write!(
                f,
                "a cluster of {cores} cores and {groups} groups per node: both must be at least 1"
            ),
            ContentError::TopologyTooLarge { what, count, max } => {
                write!(f, "a cluster of {count} {what}: at most {max} may be")
            }
            ContentError::Obsolete { what } => {
                write!(
                    f,
                    "{what} are no longer read (a peer or client of an older protocol)"
                )
            }
        }
    }
}

/// Why a received frame was refused: its bytes ([`FrameError`]) or its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Frame(FrameError),
    Content(ContentError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Frame(error) => error.fmt(f),
            DecodeError::Content(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<FrameError> for DecodeError {
    fn from(error: FrameError) -> Self {
        DecodeError::Frame(error)
    }
}

impl From<ContentError> for DecodeError {
    fn from(error: ContentError) -> Self {
        DecodeError::Content(error)
    }
}

/// Why messages could not be encoded. Both are bugs of the caller's batching, reported
/// instead of panicking so the transport can drop the batch and log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    TooLarge {
        body_bytes: usize,
        body_bytes_max: usize,
    },
    TooManyMessages {
        messages: usize,
        messages_max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge {
                body_bytes,
                body_bytes_max,
            } => {
                write!(
                    f,
                    "frame body of {body_bytes} bytes over the maximum {body_bytes_max}"
                )
            }
            EncodeError::TooManyMessages {
                messages,
                messages_max,
            } => {
                write!(
                    f,
                    "{messages} messages for one frame, at most {messages_max}"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodedFrame {
    Handshake(Handshake),
    /// The messages of one peer core's loop turn, for any number of groups, and what that
    /// core says of itself (see [`FrameEncoder::set_sender`]).
    Raft {
        envelopes: Vec<Envelope>,
        sender: SenderSays,
    },
    /// Client traffic (a request batch, a topology request, an answer …), named by its
    /// body: verified, but not converted here (the client server reads the tables in place
    /// with [`open_frame`]).
    Client {
        body: &'static str,
    },
}

/// Checks and decodes one whole frame (header and body, exactly). Entry payloads, snapshot
/// data and forwarded proposals in the result are slices of `frame`.
pub fn decode_frame(frame: &Bytes) -> Result<DecodedFrame, DecodeError> {
    let root = open_frame(frame)?;
    match root.body_type() {
        fb::FrameBody::Handshake => {
            let handshake = root.body_as_handshake().ok_or(FrameError::BodyUnknown)?;
            Ok(DecodedFrame::Handshake(decode_handshake(handshake)?))
        }
        fb::FrameBody::RaftBatch => {
            let batch = root.body_as_raft_batch().ok_or(FrameError::BodyUnknown)?;
            let envelopes = batch::decode_raft_batch(frame, batch)?;
            for (message_index, envelope) in envelopes.iter().enumerate() {
                check_numbers(&envelope.message, message_index)?;
            }
            let sender = SenderSays {
                log_full: batch.sender_log_full(),
                kv_full: batch.sender_kv_full(),
                clients_relay: batch.sender_clients_relay(),
            };
            Ok(DecodedFrame::Raft { envelopes, sender })
        }
        // A body this build knows, on the wrong port (found in review: called unknown).
        other => match other.variant_name() {
            Some(body) if other != fb::FrameBody::NONE => Ok(DecodedFrame::Client { body }),
            _ => Err(ContentError::UnionUnknown {
                union: "FrameBody",
                tag: other.0,
            }
            .into()),
        },
    }
}

/// The largest term or log index a Raft message may carry: 2^62, which no cluster reaches
/// (a million entries a second for 146,000 years), and far enough from `u64::MAX` that the
/// core's `index + 1` and `term + 1` never overflow.
pub const RAFT_NUMBER_MAX: u64 = 1 << 62;

/// Refuses a message whose term or any log index in it is above [`RAFT_NUMBER_MAX`].
fn check_numbers(message: &Message, message_index: usize) -> Result<(), ContentError> {
    let check = |what: &'static str, value: u64| {
        if value > RAFT_NUMBER_MAX {
            return Err(ContentError::NumberTooLarge {
                what,
                value,
                message_index,
            });
        }
        Ok(())
    };
    check("term", message.term.0)?;
    match &message.body {
        MessageBody::AppendRequest(append) => {
            check("prev_log_index", append.prev_log_index.0)?;
            check("prev_log_term", append.prev_log_term.0)?;
            check("commit", append.commit.0)?;
            for entry in append.entries.iter() {
                check("entry index", entry.index.0)?;
                check("entry term", entry.term.0)?;
            }
        }
        MessageBody::AppendResponse(response) => {
            check("index", response.index.0)?;
            check("reject_hint", response.reject_hint.0)?;
            check("hint_term", response.hint_term.0)?;
        }
        MessageBody::PreVoteRequest(vote) | MessageBody::VoteRequest(vote) => {
            check("last_log_index", vote.last_log_index.0)?;
            check("last_log_term", vote.last_log_term.0)?;
        }
        MessageBody::Heartbeat(heartbeat) => {
            check("commit", heartbeat.commit.0)?;
            check("acknowledged", heartbeat.acknowledged.0)?;
            check("acknowledged_term", heartbeat.acknowledged_term.0)?;
            check("commit_term", heartbeat.commit_term.0)?;
        }
        MessageBody::HeartbeatResponse(response) => {
            if let Some(last_index) = response.short_of_commit {
                check("last_index", last_index.0)?;
            }
        }
        MessageBody::InstallSnapshot(snapshot) => {
            check("snapshot index", snapshot.meta.index.0)?;
            check("snapshot term", snapshot.meta.term.0)?;
        }
        MessageBody::SnapshotChunk(chunk) => {
            check("snapshot index", chunk.meta.index.0)?;
            check("snapshot term", chunk.meta.term.0)?;
        }
        MessageBody::SnapshotAck { index, .. } | MessageBody::ReadIndexResponse { index, .. } => {
            check("index", index.0)?;
        }
        MessageBody::PreVoteResponse(_)
        | MessageBody::VoteResponse(_)
        | MessageBody::TimeoutNow
        | MessageBody::ReadIndexRequest { .. }
        | MessageBody::ForwardProposal { .. } => {}
    }
    Ok(())
}

fn decode_handshake(handshake: fb::Handshake<'_>) -> Result<Handshake, ContentError> {
    if handshake.magic() != HANDSHAKE_MAGIC {
        return Err(ContentError::HandshakeMagicWrong {
            magic: handshake.magic(),
        });
    }
    Ok(Handshake {
        protocol_version: handshake.protocol_version(),
        cluster_id: ClusterId(handshake.cluster_id()),
        node_id: NodeId(handshake.node_id()),
        core_index: handshake.core_index(),
        incarnation: handshake.incarnation(),
        incarnation_of_receiver: handshake.incarnation_of_receiver(),
        start: handshake.start(),
        start_of_receiver: handshake.start_of_receiver(),
        layout: Layout {
            cores: handshake.layout_cores(),
            groups: handshake.layout_groups(),
            founders: handshake.founders(),
        },
        timing: Timing {
            tick_us: handshake.timing_tick_us(),
            election_ticks: handshake.timing_election_ticks(),
            lease_reads: handshake.timing_lease_reads(),
        },
        receiver: NodeId(handshake.receiver()),
        probe: handshake.probe(),
        receiver_removed: handshake.receiver_removed(),
    })
}

/// One message of a batch's `messages` (the kinds without a column).
pub(super) fn decode_table_message(
    frame: &Bytes,
    message: fb::RaftMessage<'_>,
    message_index: usize,
) -> Result<Envelope, ContentError> {
    let header = message
        .header()
        .ok_or(ContentError::HeaderMissing { message_index })?;
    Ok(Envelope {
        group: GroupId(header.group()),
        message: Message {
            from: NodeId(header.from()),
            to: NodeId(header.to()),
            term: Term(header.term()),
            body: decode_body(frame, message, message_index)?,
        },
    })
}

fn decode_body(
    frame: &Bytes,
    message: fb::RaftMessage<'_>,
    message_index: usize,
) -> Result<MessageBody, ContentError> {
    let missing = ContentError::BodyMissing { message_index };
    let body = match message.body_type() {
        fb::RaftBody::AppendRequest => {
            let append = message.body_as_append_request().ok_or(missing.clone())?;
            let position = append.position().ok_or(missing)?;
            MessageBody::AppendRequest(decode_append(frame, position, append)?)
        }
        fb::RaftBody::AppendResponse => {
            let response = message.body_as_append_response().ok_or(missing)?;
            MessageBody::AppendResponse(AppendResponse {
                index: LogIndex(response.index()),
                reject: response.reject(),
                reject_hint: LogIndex(response.reject_hint()),
                hint_term: Term(response.hint_term()),
            })
        }
        fb::RaftBody::PreVoteRequest => MessageBody::PreVoteRequest(decode_vote(
            message.body_as_pre_vote_request().ok_or(missing)?,
        )),
        fb::RaftBody::PreVoteResponse => {
            let response = message.body_as_pre_vote_response().ok_or(missing)?;
            MessageBody::PreVoteResponse(VoteResponse {
                reject: response.reject(),
            })
        }
        fb::RaftBody::VoteRequest => {
            MessageBody::VoteRequest(decode_vote(message.body_as_vote_request().ok_or(missing)?))
        }
        fb::RaftBody::VoteResponse => {
            let response = message.body_as_vote_response().ok_or(missing)?;
            MessageBody::VoteResponse(VoteResponse {
                reject: response.reject(),
            })
        }
        fb::RaftBody::Heartbeat => {
            let heartbeat = message.body_as_heartbeat().ok_or(missing)?;
            MessageBody::Heartbeat(Heartbeat {
                commit: LogIndex(heartbeat.commit()),
                read_round: heartbeat.read_round(),
                acknowledged: LogIndex(heartbeat.acknowledged().max(heartbeat.commit())),
                acknowledged_term: Term(heartbeat.acknowledged_term()),
                commit_term: Term(heartbeat.commit_term()),
                quiesce: heartbeat.quiesce(),
            })
        }
        fb::RaftBody::HeartbeatResponse => {
            let response = message.body_as_heartbeat_response().ok_or(missing)?;
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: response.read_round(),
                short_of_commit: response
                    .short_of_commit()
                    .then(|| LogIndex(response.last_index())),
            })
        }
        fb::RaftBody::InstallSnapshot => {
            let snapshot = message.body_as_install_snapshot().ok_or(missing)?;
            MessageBody::InstallSnapshot(Box::new(decode_snapshot(frame, snapshot)?))
        }
        fb::RaftBody::TimeoutNow => {
            message.body_as_timeout_now().ok_or(missing)?;
            MessageBody::TimeoutNow
        }
        fb::RaftBody::ReadIndexRequest => {
            let request = message.body_as_read_index_request().ok_or(missing)?;
            MessageBody::ReadIndexRequest { ctx: request.ctx() }
        }
        fb::RaftBody::ReadIndexResponse => {
            let response = message.body_as_read_index_response().ok_or(missing)?;
            MessageBody::ReadIndexResponse {
                ctx: response.ctx(),
                index: LogIndex(response.index()),
            }
        }
        fb::RaftBody::ForwardProposal => {
            let forward = message.body_as_forward_proposal().ok_or(missing)?;
            let data = forward
                .proposals()
                .map(|proposals| proposals.iter().map(|p| payload(frame, p.data())).collect())
                .unwrap_or_default();
            MessageBody::ForwardProposal { data }
        }
        fb::RaftBody::SnapshotChunk => {
            let chunk = message.body_as_snapshot_chunk().ok_or(missing)?;
            MessageBody::SnapshotChunk(Box::new(decode_chunk(frame, chunk)?))
        }
        fb::RaftBody::SnapshotAck => {
            let ack = message.body_as_snapshot_ack().ok_or(missing)?;
            MessageBody::SnapshotAck {
                index: LogIndex(ack.index()),
                received: ack.received(),
                gap: ack.gap(),
            }
        }
        fb::RaftBody::NONE => return Err(missing),
        other => {
            return Err(ContentError::UnionUnknown {
                union: "RaftBody",
                tag: other.0,
            });
        }
    };
    Ok(body)
}

/// A payload vector as a slice of the received frame (no copy). `vector` was read from a
/// flatbuffer verified inside `frame`, so it lies within `frame` and `slice_ref` cannot panic.
fn payload(frame: &Bytes, vector: Option<flatbuffers::Vector<'_, u8>>) -> Bytes {
    match vector {
        Some(vector) if !vector.is_empty() => frame.slice_ref(vector.bytes()),
        _ => Bytes::new(),
    }
}

/// An append as a table, as protocol 2 sent them (protocol 3 sends appends in columns).
fn decode_append(
    frame: &Bytes,
    position: &fb::AppendPosition,
    append: fb::AppendRequest<'_>,
) -> Result<AppendRequest, ContentError> {
    let headers = append.entries().unwrap_or_default();
    let data = append.data().map_or(&[][..], |data| data.bytes());
    let mut data_at = 0;
    let entries = batch::decode_entries(frame, headers.iter(), data, &mut data_at)?;
    // As in the columns: bytes no entry takes are refused, not carried along unseen.
    super::columns::left_over("append data", data.len() - data_at)?;
    Ok(AppendRequest {
        prev_log_index: LogIndex(position.prev_log_index()),
        prev_log_term: Term(position.prev_log_term()),
        entries,
        commit: LogIndex(position.commit()),
    })
}

fn decode_vote(vote: fb::VoteRequest<'_>) -> VoteRequest {
    VoteRequest {
        last_log_index: LogIndex(vote.last_log_index()),
        last_log_term: Term(vote.last_log_term()),
        transfer: vote.transfer(),
    }
}

fn node_ids(ids: Option<flatbuffers::Vector<'_, u64>>) -> Vec<NodeId> {
    ids.map(|ids| ids.iter().map(NodeId).collect())
        .unwrap_or_default()
}

/// A snapshot's configuration, refused if absent (it would read as one with no voters, which
/// a follower would install) or of a shape no group runs on.
fn decode_conf(conf: Option<fb::ConfState<'_>>) -> Result<ConfState, ContentError> {
    let conf = conf.ok_or(ContentError::ConfStateInvalid {
        why: "no configuration",
    })?;
    let conf = ConfState {
        voters: node_ids(conf.voters()),
        voters_outgoing: node_ids(conf.voters_outgoing()),
        learners: node_ids(conf.learners()),
        learners_next: node_ids(conf.learners_next()),
        auto_leave: conf.auto_leave(),
    };
    match conf.shape_error() {
        Some(why) => Err(ContentError::ConfStateInvalid { why }),
        None => Ok(conf),
    }
}

fn decode_snapshot(
    frame: &Bytes,
    snapshot: fb::InstallSnapshot<'_>,
) -> Result<Snapshot, ContentError> {
    Ok(Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(snapshot.index()),
            term: Term(snapshot.term()),
            conf_state: decode_conf(snapshot.conf_state())?,
        },
        data: payload(frame, snapshot.data()),
    })
}

fn decode_chunk(
    frame: &Bytes,
    chunk: fb::SnapshotChunk<'_>,
) -> Result<SnapshotChunk, ContentError> {
    Ok(SnapshotChunk {
        meta: SnapshotMeta {
            index: LogIndex(chunk.index()),
            term: Term(chunk.term()),
            conf_state: decode_conf(chunk.conf_state())?,
        },
        offset: chunk.offset(),
        total: chunk.total(),
        checksum: chunk.checksum(),
        data: payload(frame, chunk.data()),
    })
}

// ---- encoding -------------------------------------------------------------------------------

pub(super) type Builder = FlatBufferBuilder<'static>;

/// Builds frames. Keep one per connection and reuse it: its buffers keep their capacity, so a
/// warm encoder does not allocate.
pub struct FrameEncoder {
    fbb: Builder,
    header: [u8; FRAME_HEADER_BYTES],
    /// Where [`FrameEncoder::frame_in_place`] wrote a header into the builder's free space;
    /// zeroed again before the next frame, because the builder's padding relies on it.
    header_in_place_at: Option<usize>,
    columns: Columns,
    scratch: AppendScratch,
    proposals: Vec<WIPOffset<fb::Proposal<'static>>>,
    /// Said in every Raft batch: see [`FrameEncoder::set_sender`].
    sender: SenderSays,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder::new()
    }
}

impl FrameEncoder {
    pub fn new() -> FrameEncoder {
        FrameEncoder {
            fbb: Builder::with_capacity(64 << 10),
            header: [0; FRAME_HEADER_BYTES],
            header_in_place_at: None,
            columns: Columns::default(),
            scratch: AppendScratch::default(),
            proposals: Vec::new(),
            sender: SenderSays::default(),
        }
    }

    /// The header of the last encoded frame; write it, then [`FrameEncoder::body`].
    pub fn header(&self) -> &[u8; FRAME_HEADER_BYTES] {
        &self.header
    }

    /// The flatbuffer of the last encoded frame.
    pub fn body(&self) -> &[u8] {
        self.fbb.finished_data()
    }

    /// Header and body of the last encoded frame as one slice, without a copy: the header is
    /// written into the builder's free space just before the body. `None` in the rare case
    /// that the builder has fewer than [`FRAME_HEADER_BYTES`] free bytes there; write
    /// [`FrameEncoder::header`] and [`FrameEncoder::body`] then.
    pub fn frame_in_place(&mut self) -> Option<&[u8]> {
        let header = self.header;
        let (buffer, body_at) = self.fbb.mut_finished_buffer();
        let header_at = body_at.checked_sub(FRAME_HEADER_BYTES)?;
        buffer[header_at..body_at].copy_from_slice(&header);
        self.header_in_place_at = Some(header_at);
        Some(&buffer[header_at..])
    }

    /// Bytes the builder holds room for: at least its largest frame so far (it keeps them
    /// from one frame to the next).
    pub fn room_bytes(&mut self) -> usize {
        self.fbb.mut_finished_buffer().0.len()
    }

    /// Gives back the room a frame larger than `bytes_max` made the builder take, for an
    /// encoder held long (a client connection's writer) after a rare large frame: kept, that
    /// room stayed taken as long as the encoder, counted by no bound.
    pub fn shed_room_over(&mut self, bytes_max: usize) {
        if self.room_bytes() > bytes_max {
            let sender = self.sender;
            *self = FrameEncoder::new();
            self.sender = sender;
        }
    }

    /// Resets the builder for the next frame.
    fn reset(&mut self) {
        if let Some(header_at) = self.header_in_place_at.take() {
            let (buffer, _) = self.fbb.mut_finished_buffer();
            buffer[header_at..header_at + FRAME_HEADER_BYTES].fill(0);
        }
        self.fbb.reset();
    }

    /// Header and body in one buffer (a copy; for tests, tools and the control path, not the
    /// data path).
    pub fn to_frame_vec(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + self.body().len());
        frame.extend_from_slice(&self.header);
        frame.extend_from_slice(self.body());
        frame
    }

    /// Encodes a frame whose body `build` writes into the builder (for the client protocol
    /// and tests; the Raft and handshake frames have their own methods).
    pub fn encode_with(
        &mut self,
        build: impl FnOnce(&mut Builder) -> (fb::FrameBody, WIPOffset<UnionWIPOffset>),
    ) -> Result<(), EncodeError> {
        self.reset();
        let (body_type, body) = build(&mut self.fbb);
        self.finish(body_type, body)
    }

    fn finish(
        &mut self,
        body_type: fb::FrameBody,
        body: WIPOffset<UnionWIPOffset>,
    ) -> Result<(), EncodeError> {
        let frame = fb::Frame::create(
            &mut self.fbb,
            &fb::FrameArgs {
                body_type,
                body: Some(body),
            },
        );
        self.fbb.finish_minimal(frame);
        let body_bytes = self.fbb.finished_data().len();
        if body_bytes > FRAME_BODY_BYTES_MAX {
            return Err(EncodeError::TooLarge {
                body_bytes,
                body_bytes_max: FRAME_BODY_BYTES_MAX,
            });
        }
        self.header = frame_header_for(self.fbb.finished_data());
        Ok(())
    }

    pub fn encode_handshake(&mut self, handshake: &Handshake) -> Result<(), EncodeError> {
        self.encode_with(|fbb| {
            let table = fb::Handshake::create(
                fbb,
                &fb::HandshakeArgs {
                    magic: HANDSHAKE_MAGIC,
                    protocol_version: handshake.protocol_version,
                    cluster_id: handshake.cluster_id.0,
                    node_id: handshake.node_id.0,
                    core_index: handshake.core_index,
                    incarnation: handshake.incarnation,
                    incarnation_of_receiver: handshake.incarnation_of_receiver,
                    start: handshake.start,
                    start_of_receiver: handshake.start_of_receiver,
                    layout_cores: handshake.layout.cores,
                    layout_groups: handshake.layout.groups,
                    timing_tick_us: handshake.timing.tick_us,
                    timing_election_ticks: handshake.timing.election_ticks,
                    timing_lease_reads: handshake.timing.lease_reads,
                    founders: handshake.layout.founders,
                    receiver: handshake.receiver.0,
                    probe: handshake.probe,
                    receiver_removed: handshake.receiver_removed,
                },
            );
            (fb::FrameBody::Handshake, table.as_union_value())
        })
    }

    /// Say `sender` in every Raft batch from now on: what the sending core says of itself.
    pub fn set_sender(&mut self, sender: SenderSays) {
        self.sender = sender;
    }

    /// Encodes the messages of any number of groups into one frame.
    pub fn encode_raft<'a>(
        &mut self,
        envelopes: impl ExactSizeIterator<Item = &'a Envelope>,
    ) -> Result<(), EncodeError> {
        let messages = envelopes.len();
        if messages > RAFT_MESSAGES_PER_FRAME_MAX {
            return Err(EncodeError::TooManyMessages {
                messages,
                messages_max: RAFT_MESSAGES_PER_FRAME_MAX,
            });
        }
        self.reset();
        self.columns.clear();
        let mut payload_bytes = 0usize;
        for envelope in envelopes {
            // Refuse before the builder grows past the frame (it panics at 2 GiB).
            payload_bytes =
                payload_bytes.saturating_add(envelope.message.body.payload_bytes() as usize);
            if payload_bytes > FRAME_BODY_BYTES_MAX {
                return Err(EncodeError::TooLarge {
                    body_bytes: payload_bytes,
                    body_bytes_max: FRAME_BODY_BYTES_MAX,
                });
            }
            if !self.columns.push(envelope) {
                let table = encode_message(
                    &mut self.fbb,
                    &mut self.scratch,
                    &mut self.proposals,
                    envelope,
                );
                self.columns.push_table(table);
            }
        }
        let batch = self.columns.build(&mut self.fbb, self.sender);
        self.finish(fb::FrameBody::RaftBatch, batch.as_union_value())
    }
}

fn bytes_vector(
    fbb: &mut Builder,
    data: &[u8],
) -> Option<WIPOffset<flatbuffers::Vector<'static, u8>>> {
    (!data.is_empty()).then(|| fbb.create_vector(data))
}

/// Any message as a table. Batches carry the frequent kinds in columns instead (`batch.rs`
/// decides which go where).
pub(super) fn encode_message(
    fbb: &mut Builder,
    scratch: &mut AppendScratch,
    proposals: &mut Vec<WIPOffset<fb::Proposal<'static>>>,
    envelope: &Envelope,
) -> WIPOffset<fb::RaftMessage<'static>> {
    let message = &envelope.message;
    let (body_type, body) = match &message.body {
        MessageBody::AppendRequest(append) => (
            fb::RaftBody::AppendRequest,
            encode_append(fbb, scratch, append).as_union_value(),
        ),
        MessageBody::AppendResponse(response) => {
            let args = fb::AppendResponseArgs {
                index: response.index.0,
                reject: response.reject,
                reject_hint: response.reject_hint.0,
                hint_term: response.hint_term.0,
            };
            (
                fb::RaftBody::AppendResponse,
                fb::AppendResponse::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::PreVoteRequest(vote) => (fb::RaftBody::PreVoteRequest, encode_vote(fbb, vote)),
        MessageBody::PreVoteResponse(vote) => {
            let args = fb::VoteResponseArgs {
                reject: vote.reject,
            };
            (
                fb::RaftBody::PreVoteResponse,
                fb::VoteResponse::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::VoteRequest(vote) => (fb::RaftBody::VoteRequest, encode_vote(fbb, vote)),
        MessageBody::VoteResponse(vote) => {
            let args = fb::VoteResponseArgs {
                reject: vote.reject,
            };
            (
                fb::RaftBody::VoteResponse,
                fb::VoteResponse::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::Heartbeat(heartbeat) => {
            let args = fb::HeartbeatArgs {
                commit: heartbeat.commit.0,
                read_round: heartbeat.read_round,
                // Absent when it says nothing the commit does not.
                acknowledged: if heartbeat.acknowledged > heartbeat.commit {
                    heartbeat.acknowledged.0
                } else {
                    0
                },
                acknowledged_term: heartbeat.acknowledged_term.0,
                commit_term: heartbeat.commit_term.0,
                quiesce: heartbeat.quiesce,
            };
            (
                fb::RaftBody::Heartbeat,
                fb::Heartbeat::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::HeartbeatResponse(response) => {
            let args = fb::HeartbeatResponseArgs {
                read_round: response.read_round,
                short_of_commit: response.short_of_commit.is_some(),
                last_index: response.short_of_commit.map_or(0, |last| last.0),
            };
            (
                fb::RaftBody::HeartbeatResponse,
                fb::HeartbeatResponse::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::InstallSnapshot(snapshot) => (
            fb::RaftBody::InstallSnapshot,
            encode_snapshot(fbb, snapshot).as_union_value(),
        ),
        MessageBody::TimeoutNow => {
            let args = fb::TimeoutNowArgs {};
            (
                fb::RaftBody::TimeoutNow,
                fb::TimeoutNow::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::ReadIndexRequest { ctx } => {
            let args = fb::ReadIndexRequestArgs { ctx: *ctx };
            (
                fb::RaftBody::ReadIndexRequest,
                fb::ReadIndexRequest::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::ReadIndexResponse { ctx, index } => {
            let args = fb::ReadIndexResponseArgs {
                ctx: *ctx,
                index: index.0,
            };
            (
                fb::RaftBody::ReadIndexResponse,
                fb::ReadIndexResponse::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::ForwardProposal { data } => {
            proposals.clear();
            for proposal in data {
                let data = bytes_vector(fbb, proposal);
                proposals.push(fb::Proposal::create(fbb, &fb::ProposalArgs { data }));
            }
            let proposals = Some(fbb.create_vector(proposals));
            let args = fb::ForwardProposalArgs { proposals };
            (
                fb::RaftBody::ForwardProposal,
                fb::ForwardProposal::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::SnapshotChunk(chunk) => {
            let conf_state = Some(encode_conf(fbb, &chunk.meta.conf_state));
            let data = bytes_vector(fbb, &chunk.data);
            let args = fb::SnapshotChunkArgs {
                index: chunk.meta.index.0,
                term: chunk.meta.term.0,
                conf_state,
                offset: chunk.offset,
                total: chunk.total,
                checksum: chunk.checksum,
                data,
            };
            (
                fb::RaftBody::SnapshotChunk,
                fb::SnapshotChunk::create(fbb, &args).as_union_value(),
            )
        }
        MessageBody::SnapshotAck {
            index,
            received,
            gap,
        } => {
            let args = fb::SnapshotAckArgs {
                index: index.0,
                received: *received,
                gap: *gap,
            };
            (
                fb::RaftBody::SnapshotAck,
                fb::SnapshotAck::create(fbb, &args).as_union_value(),
            )
        }
    };
    let header = fb::RaftHeader::new(
        message.from.0,
        message.to.0,
        message.term.0,
        envelope.group.0,
    );
    let args = fb::RaftMessageArgs {
        header: Some(&header),
        body_type,
        body: Some(body),
    };
    fb::RaftMessage::create(fbb, &args)
}

/// Buffers an encoder reuses for appends, so a warm encoder does not allocate.
#[derive(Default)]
pub(super) struct AppendScratch {
    /// Payloads of a multi-entry append, joined before they go into the builder.
    data: Vec<u8>,
    headers: Vec<fb::EntryHeader>,
}

/// Entry headers go in as one vector of structs and payloads as one byte vector: nothing per
/// entry to build here or to verify at the receiver. One entry's payload is used as it is;
/// several are joined first.
fn encode_append(
    fbb: &mut Builder,
    scratch: &mut AppendScratch,
    append: &AppendRequest,
) -> WIPOffset<fb::AppendRequest<'static>> {
    let data = match append.entries.as_slice() {
        [] => None,
        [entry] => bytes_vector(fbb, &entry.data),
        entries => {
            scratch.data.clear();
            entries
                .iter()
                .for_each(|entry| scratch.data.extend_from_slice(&entry.data));
            bytes_vector(fbb, &scratch.data)
        }
    };
    let mut data_end = 0u32;
    scratch.headers.clear();
    scratch.headers.extend(append.entries.iter().map(|entry| {
        // A frame body is far below 4 GiB (FRAME_BODY_BYTES_MAX), so u32 cannot overflow.
        data_end += entry.data.len() as u32;
        fb::EntryHeader::new(
            entry.index.0,
            entry.term.0,
            data_end,
            fb::EntryKind(entry.kind as u8),
        )
    }));
    let entries = (!scratch.headers.is_empty()).then(|| fbb.create_vector(&scratch.headers));
    let position = fb::AppendPosition::new(
        append.prev_log_index.0,
        append.prev_log_term.0,
        append.commit.0,
    );
    let args = fb::AppendRequestArgs {
        position: Some(&position),
        entries,
        data,
    };
    fb::AppendRequest::create(fbb, &args)
}

fn encode_vote(fbb: &mut Builder, vote: &VoteRequest) -> WIPOffset<UnionWIPOffset> {
    let args = fb::VoteRequestArgs {
        last_log_index: vote.last_log_index.0,
        last_log_term: vote.last_log_term.0,
        transfer: vote.transfer,
    };
    fb::VoteRequest::create(fbb, &args).as_union_value()
}

fn id_vector(
    fbb: &mut Builder,
    ids: &[NodeId],
) -> Option<WIPOffset<flatbuffers::Vector<'static, u64>>> {
    (!ids.is_empty()).then(|| fbb.create_vector_from_iter(ids.iter().map(|id| id.0)))
}

fn encode_conf(fbb: &mut Builder, conf: &ConfState) -> WIPOffset<fb::ConfState<'static>> {
    let conf_args = fb::ConfStateArgs {
        voters: id_vector(fbb, &conf.voters),
        voters_outgoing: id_vector(fbb, &conf.voters_outgoing),
        learners: id_vector(fbb, &conf.learners),
        learners_next: id_vector(fbb, &conf.learners_next),
        auto_leave: conf.auto_leave,
    };
    fb::ConfState::create(fbb, &conf_args)
}

fn encode_snapshot(
    fbb: &mut Builder,
    snapshot: &Snapshot,
) -> WIPOffset<fb::InstallSnapshot<'static>> {
    let conf_state = Some(encode_conf(fbb, &snapshot.meta.conf_state));
    let data = bytes_vector(fbb, &snapshot.data);
    let args = fb::InstallSnapshotArgs {
        index: snapshot.meta.index.0,
        term: snapshot.meta.term.0,
        conf_state,
        data,
    };
    fb::InstallSnapshot::create(fbb, &args)
}
