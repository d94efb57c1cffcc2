//! The client protocol: client request and response frames ↔ key-value commands and replies.
//!
//! Decoding reads the verified flatbuffer in place: keys and values become slices of the
//! received frame, never copies. A request that breaks a limit is not a reason to drop the
//! connection: it is answered with an error of its own, and the other requests of the frame
//! go on.

use bytes::Bytes;

use crate::wire::columns::{Column, Runs};
use crate::wire::frame::open_frame;
use crate::wire::limits::{
    CLIENT_REQUESTS_PER_FRAME_MAX, CLIENT_RESPONSES_PER_FRAME_MAX, FRAME_BODY_BYTES_MAX,
};
use crate::wire::{ContentError, DecodeError, EncodeError, FrameEncoder, FrameError, fb};

use crate::kv::limits::OPERATIONS_PER_COMMAND_MAX;
use crate::kv::{Command, CommandError, Op, OpResult, Ops, Results, written};
use crate::wire::limits::CLIENT_OPERATIONS_PER_REQUEST_MAX;

const _: () = assert!(
    CLIENT_OPERATIONS_PER_REQUEST_MAX <= OPERATIONS_PER_COMMAND_MAX,
    "a request the wire lets through must fit one command"
);

/// How fresh the reads of a request must be. Writes are always linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed by a heartbeat round (ReadIndex); on a node run with `--lease-reads`, the
    /// leader serves it from its lease instead while the lease holds, as it does `Lease`.
    Linearizable,
    /// Served by the leader within its lease (no round trip; relies on bounded clock drift)
    /// where the node runs with `--lease-reads`; elsewhere confirmed as `Linearizable`.
    Lease,
    /// Whatever the node's state machine holds now.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub consistency: Consistency,
    /// A node that does not lead the request's group, and knows that this node does (0:
    /// none), forwards the request to it over its peer connection and answers it itself,
    /// rather than answer "not the leader". A client asks it of another member where it
    /// cannot reach a leader that the members still hear (see `client::silence`); where the
    /// member knows another leader, the client learns of that one as before.
    pub forward_to: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unknown,
    /// Backpressure: retry later.
    Busy,
    /// A key, value or request over its limit.
    TooLarge,
    Malformed,
    /// The exactly-once session is gone; start over with a new client id.
    SessionExpired,
    Timeout,
    /// The node's key-value state is at its quota (`serve --kv-quota-mib`): it takes gets
    /// and deletes only. Refused before it was proposed.
    NoSpace,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One result per operation, in order (shared: most writes share one `[Written]`).
    Results(Results),
    /// Ask `leader` (node id, 0 if unknown) at `address` instead. `maybe_proposed`: the node
    /// may have proposed the request before it lost its place as leader, so it may commit all
    /// the same; false where the node proposed nothing of it (it did not lead when the
    /// request came, or its proposal was refused).
    NotLeader {
        leader: u64,
        address: String,
        maybe_proposed: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub client_id: u64,
    pub sequence: u64,
    pub outcome: Outcome,
}

/// A request the node could not accept, with who to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub client_id: u64,
    pub sequence: u64,
    pub error: CommandError,
}

impl Refused {
    pub fn response(&self) -> Response {
        let code = match self.error {
            CommandError::KeyTooLarge { .. }
            | CommandError::ValueTooLarge { .. }
            | CommandError::TooManyOperations { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Malformed,
        };
        Response {
            client_id: self.client_id,
            sequence: self.sequence,
            outcome: Outcome::Error {
                code,
                message: self.error.to_string(),
            },
        }
    }
}

/// What a client may send a node.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Requests(Vec<Result<Request, Refused>>),
    TopologyRequest,
    StatusRequest,
    /// Hand `group`'s leadership to node `to`.
    TransferLeader {
        group: u32,
        to: u64,
    },
    /// A membership change of one group, or why the request is not a valid one.
    ChangeMember(Result<crate::proto::members::MemberChange, String>),
}

/// What decoded `requests` take in memory besides the frame their bytes point into: an
/// operation takes about six times its 16 bytes on the wire, so a frame of many small
/// operations weighs far more decoded than it did as bytes.
pub fn decoded_bytes(requests: &Vec<Result<Request, Refused>>) -> usize {
    let spilled: usize = requests
        .iter()
        .filter_map(|request| request.as_ref().ok())
        .filter(|request| request.command.ops.spilled())
        .map(|request| request.command.ops.capacity() * size_of::<Op>())
        .sum();
    requests.capacity() * size_of::<Result<Request, Refused>>() + spilled
}

/// Decode a frame from a client: a topology request or a batch of requests.
pub fn decode_client_frame(frame: &Bytes) -> Result<ClientFrame, DecodeError> {
    let root = open_frame(frame)?;
    match control_of(root) {
        Some(control) => Ok(control),
        None => requests_of(frame, root).map(ClientFrame::Requests),
    }
}

/// As [`decode_client_frame`], for all but a batch of requests (`None`): its requests,
/// which decoded take several times their bytes ([`decoded_bytes`]), are left in the frame.
pub fn decode_control_frame(frame: &Bytes) -> Result<Option<ClientFrame>, DecodeError> {
    Ok(control_of(open_frame(frame)?))
}

/// A topology, status, transfer or membership request; `None` for anything else.
fn control_of(root: fb::Frame<'_>) -> Option<ClientFrame> {
    if root.body_as_topology_request().is_some() {
        return Some(ClientFrame::TopologyRequest);
    }
    if root.body_as_status_request().is_some() {
        return Some(ClientFrame::StatusRequest);
    }
    if let Some(transfer) = root.body_as_transfer_leader_request() {
        return Some(ClientFrame::TransferLeader {
            group: transfer.group(),
            to: transfer.to(),
        });
    }
    let change = root.body_as_member_change_request()?;
    Some(ClientFrame::ChangeMember(
        crate::proto::members::member_change_of(change),
    ))
}

/// The requests of a frame opened already (its checksum and tables checked once). The frame
/// as a whole is refused (close the connection) only if its bytes are bad; each request is
/// accepted or refused on its own.
fn requests_of(
    frame: &Bytes,
    root: fb::Frame<'_>,
) -> Result<Vec<Result<Request, Refused>>, DecodeError> {
    let batch = root
        .body_as_client_request_batch()
        .ok_or(FrameError::BodyUnknown)?;
    if batch
        .requests()
        .is_some_and(|requests| !requests.is_empty())
    {
        let what = "client requests as tables";
        return Err(ContentError::Obsolete { what }.into());
    }
    let records = batch.records().unwrap_or_default();
    if records.len() > CLIENT_REQUESTS_PER_FRAME_MAX {
        return Err(ContentError::TooManyMessages {
            messages: records.len(),
            messages_max: CLIENT_REQUESTS_PER_FRAME_MAX,
        }
        .into());
    }
    let forward_to = batch.forward_to();
    if let Some(len) = forward_to.map(|forward_to| forward_to.len())
        && len != records.len()
    {
        let (column, expected) = ("forward_to", records.len());
        return Err(ContentError::ColumnLengthWrong {
            column,
            len,
            expected,
        }
        .into());
    }
    let mut ops = Column::new(batch.ops(), "ops");
    let mut data = Runs::new(frame, batch.data(), "data");
    let mut decoded = Vec::with_capacity(records.len());
    for (n, record) in records.iter().enumerate() {
        let refuse = |error| Refused {
            client_id: record.client_id(),
            sequence: record.sequence(),
            error,
        };
        let run = ops.take(record.ops_end() as usize)?;
        let count = run.len();
        if count > OPERATIONS_PER_COMMAND_MAX {
            // Refused before its operations are decoded, each of which takes several times its
            // record in memory; their runs are checked as a decoded request's are.
            for op in run {
                for end in [op.key_end(), op.expected_end(), op.value_end()] {
                    data.skip_to(end)?;
                }
            }
            decoded.push(Err(refuse(CommandError::TooManyOperations { count })));
            continue;
        }
        let mut request_ops = Ops::new();
        let mut unknown = false;
        for op in run {
            let key = data.take(op.key_end())?;
            let expected = data.take(op.expected_end())?;
            let value = data.take(op.value_end())?;
            request_ops.push(match op.kind() {
                fb::OpKind::Get => Op::Get { key },
                fb::OpKind::Put => Op::Put { key, value },
                fb::OpKind::Delete => Op::Delete { key },
                fb::OpKind::CompareAndSwap => Op::CompareAndSwap {
                    key,
                    expected: op.has_expected().then_some(expected),
                    value,
                },
                fb::OpKind::PutIfAbsent => Op::PutIfAbsent { key, value },
                _ => {
                    unknown = true;
                    continue;
                }
            });
        }
        let consistency = match record.consistency() {
            fb::ReadConsistency::Linearizable => Some(Consistency::Linearizable),
            fb::ReadConsistency::Lease => Some(Consistency::Lease),
            fb::ReadConsistency::Stale => Some(Consistency::Stale),
            _ => None,
        };
        let command = Command {
            client_id: record.client_id(),
            sequence: record.sequence(),
            first_unacked: record.first_unacked(),
            ops: request_ops,
        };
        decoded.push(match consistency {
            _ if unknown => Err(refuse(CommandError::Malformed("unknown operation"))),
            None => Err(refuse(CommandError::Malformed("unknown read consistency"))),
            Some(consistency) => match command.validate() {
                Ok(()) => Ok(Request {
                    forward_to: forward_to.map_or(0, |forward_to| forward_to.get(n)),
                    command,
                    consistency,
                }),
                Err(error) => Err(refuse(error)),
            },
        });
    }
    ops.finish()?;
    data.finish()?;
    Ok(decoded)
}

/// Byte offsets into a batch's data column, as the schema's `u32` ends.
struct DataColumn(Vec<u8>);

impl DataColumn {
    /// Appends `bytes` and returns where they end. Refuses, before copying them, bytes that
    /// would take the column past what a frame may carry.
    fn push(&mut self, bytes: &[u8]) -> Result<u32, EncodeError> {
        let len = self.0.len() + bytes.len();
        if len > FRAME_BODY_BYTES_MAX {
            return Err(EncodeError::TooLarge {
                body_bytes: len,
                body_bytes_max: FRAME_BODY_BYTES_MAX,
            });
        }
        self.0.extend_from_slice(bytes);
        // At most FRAME_BODY_BYTES_MAX, far below 4 GiB.
        Ok(len as u32)
    }

    /// Where the bytes pushed so far end.
    fn end(&self) -> u32 {
        // `push` keeps the column within FRAME_BODY_BYTES_MAX.
        self.0.len() as u32
    }
}

/// An operation's kind on the wire, and its expected value and value if it has them.
fn op_parts(op: &Op) -> (fb::OpKind, Option<&Bytes>, Option<&Bytes>) {
    match op {
        Op::Get { .. } => (fb::OpKind::Get, None, None),
        Op::Delete { .. } => (fb::OpKind::Delete, None, None),
        Op::Put { value, .. } => (fb::OpKind::Put, None, Some(value)),
        Op::PutIfAbsent { value, .. } => (fb::OpKind::PutIfAbsent, None, Some(value)),
        Op::CompareAndSwap {
            expected, value, ..
        } => (fb::OpKind::CompareAndSwap, expected.as_ref(), Some(value)),
    }
}

/// Encode requests into one frame (the client's side): in the batch's columns, with no table
/// per request or operation.
pub fn encode_requests<'a, I>(encoder: &mut FrameEncoder, requests: I) -> Result<(), EncodeError>
where
    I: IntoIterator<Item = &'a Request>,
    I::IntoIter: Clone,
{
    let requests = requests.into_iter();
    // The columns sized first: grown by doubling, their reallocations took 3% of the load
    // generator's CPU in `cohort bench --depth 16 --batch 64`.
    let (mut request_count, mut op_count, mut data_bytes) = (0, 0, 0);
    // Whether any asks to be forwarded: else the batch carries no column for it.
    let mut asks_forward = false;
    for request in requests.clone() {
        request_count += 1;
        asks_forward |= request.forward_to != 0;
        op_count += request.command.ops.len();
        for op in &request.command.ops {
            let (_, expected, value) = op_parts(op);
            data_bytes +=
                op.key().len() + expected.map_or(0, |e| e.len()) + value.map_or(0, |v| v.len());
        }
    }
    let mut records = Vec::with_capacity(request_count);
    let mut forward_to = Vec::with_capacity(if asks_forward { request_count } else { 0 });
    let mut ops = Vec::with_capacity(op_count);
    let mut data = DataColumn(Vec::with_capacity(data_bytes.min(FRAME_BODY_BYTES_MAX)));
    for request in requests {
        for op in &request.command.ops {
            let key_end = data.push(op.key())?;
            let (kind, expected, value) = op_parts(op);
            let expected_end = data.push(expected.map_or(&[][..], |e| e))?;
            let value_end = data.push(value.map_or(&[][..], |v| v))?;
            let has_expected = expected.is_some();
            ops.push(fb::OpRecord::new(
                key_end,
                expected_end,
                value_end,
                kind,
                has_expected,
            ));
        }
        let consistency = match request.consistency {
            Consistency::Linearizable => fb::ReadConsistency::Linearizable,
            Consistency::Lease => fb::ReadConsistency::Lease,
            Consistency::Stale => fb::ReadConsistency::Stale,
        };
        if asks_forward {
            forward_to.push(request.forward_to);
        }
        let command = &request.command;
        records.push(fb::RequestRecord::new(
            command.client_id,
            command.sequence,
            command.first_unacked,
            // At most as many operations as a frame has bytes.
            ops.len() as u32,
            consistency,
        ));
    }
    encoder.encode_with(|fbb| {
        let args = fb::ClientRequestBatchArgs {
            requests: None,
            records: Some(fbb.create_vector(&records)),
            ops: Some(fbb.create_vector(&ops)),
            data: Some(fbb.create_vector(&data.0)),
            // Absent where no request asks it: the common batch carries nothing more.
            forward_to: asks_forward.then(|| fbb.create_vector(&forward_to)),
        };
        let batch = fb::ClientRequestBatch::create(fbb, &args);
        (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
    })
}

/// Bytes a frame of answers gives each answer beside its data, at most: its record (a
/// `ResponseRecord`) with room for alignment.
const ANSWER_RECORD_BYTES: usize = 48;
/// The same for each operation's result (a `ResultRecord`).
const RESULT_RECORD_BYTES: usize = 16;
/// Room in a frame for its tables, vector lengths and padding.
const FRAME_SLACK_BYTES: usize = 4 << 10;
const _: () = assert!(
    size_of::<fb::ResponseRecord>() <= ANSWER_RECORD_BYTES
        && size_of::<fb::ResultRecord>() <= RESULT_RECORD_BYTES
);

/// The most value bytes one answer may carry: a frame, less room for the records of an
/// answer with a request's most results. A read that would answer with more is refused
/// (`TooLarge`) before its answer is built.
pub const ANSWER_VALUE_BYTES_MAX: usize = FRAME_BODY_BYTES_MAX
    - FRAME_SLACK_BYTES
    - ANSWER_RECORD_BYTES
    - OPERATIONS_PER_COMMAND_MAX * RESULT_RECORD_BYTES;

/// The value bytes of `results` (as [`ANSWER_VALUE_BYTES_MAX`] counts them).
pub fn results_value_bytes(results: &[OpResult]) -> usize {
    results
        .iter()
        .map(|result| match result {
            OpResult::Value(value)
            | OpResult::ConditionFailed {
                current: Some(value),
            } => value.len(),
            _ => 0,
        })
        .sum()
}

/// The bytes `response` puts in a frame's data column.
fn answer_data_bytes(response: &Response) -> usize {
    match &response.outcome {
        Outcome::Results(results) => results_value_bytes(results),
        Outcome::NotLeader { address, .. } => size_of::<u64>() + address.len(),
        Outcome::Error { message, .. } => message.len(),
    }
}

/// What `response` takes of a frame of answers, at most.
fn answer_bytes(response: &Response) -> usize {
    let results = match &response.outcome {
        Outcome::Results(results) => results.len(),
        _ => 0,
    };
    ANSWER_RECORD_BYTES + results * RESULT_RECORD_BYTES + answer_data_bytes(response)
}

/// Bytes of answers per unit of [`answer_weight`].
pub const ANSWER_WEIGHT_BYTES: usize = 1 << 10;

/// The heap block each value of an answer takes beside its bytes: a copy of a short value,
/// or the owner of a shared one, each a 32-byte `malloc` chunk.
const VALUE_BLOCK_BYTES: usize = 32;

/// What `response` holds in memory while it waits: itself, and each result as an
/// `OpResult` (wider than its record in a frame) with its value's block, beside its data.
fn answer_memory_bytes(response: &Response) -> usize {
    let (results, values) = match &response.outcome {
        Outcome::Results(results) => {
            let values = results
                .iter()
                .filter(|result| {
                    matches!(
                        result,
                        OpResult::Value(_) | OpResult::ConditionFailed { current: Some(_) }
                    )
                })
                .count();
            (results.len(), values)
        }
        _ => (0, 0),
    };
    size_of::<Response>()
        + results * size_of::<OpResult>()
        + values * VALUE_BLOCK_BYTES
        + answer_data_bytes(response)
}

/// What `response` weighs while it waits for its connection's writer: one, and one more
/// per [`ANSWER_WEIGHT_BYTES`] it takes of a frame or of memory, whichever is more. Unread
/// answers are bounded by their weight (see `shard::answers_held`), so by their count and
/// their bytes both (found in review: weighed by their frame bytes alone, answers of many
/// results held 2.4 times the bytes counted).
pub fn answer_weight(response: &Response) -> usize {
    1 + answer_bytes(response).max(answer_memory_bytes(response)) / ANSWER_WEIGHT_BYTES
}

/// Splits `responses`, in order, into runs that each fit one frame: at most
/// [`CLIENT_RESPONSES_PER_FRAME_MAX`] answers, and no more bytes than a frame holds. An
/// answer too large for a frame alone is a run of its own, whose encoding fails.
pub fn answer_frames(responses: &[Response]) -> Vec<&[Response]> {
    frame_runs(responses, CLIENT_RESPONSES_PER_FRAME_MAX, answer_bytes)
}

/// Splits `items`, in order, into runs of at most `count_max` whose `bytes` fit one frame
/// together. An item too large for a frame alone is a run of its own.
fn frame_runs<T>(items: &[T], count_max: usize, bytes: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let budget = FRAME_BODY_BYTES_MAX - FRAME_SLACK_BYTES;
    let mut runs = Vec::new();
    let (mut start, mut taken) = (0, 0);
    for (at, item) in items.iter().enumerate() {
        let size = bytes(item);
        let full = at - start == count_max || taken + size > budget;
        if at > start && full {
            runs.push(&items[start..at]);
            (start, taken) = (at, 0);
        }
        taken += size;
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// Bytes a frame of requests gives each request beside its data, at most: its record (a
/// `RequestRecord`).
const REQUEST_RECORD_BYTES: usize = 32;
/// The same for each operation (an `OpRecord`).
const OP_RECORD_BYTES: usize = 16;
const _: () = assert!(
    size_of::<fb::RequestRecord>() <= REQUEST_RECORD_BYTES
        && size_of::<fb::OpRecord>() <= OP_RECORD_BYTES
);

/// The most one request may take of a frame (see [`request_bytes`]): a frame, less room for
/// its tables. A larger request cannot be sent at all.
pub const REQUEST_BYTES_MAX: usize = FRAME_BODY_BYTES_MAX - FRAME_SLACK_BYTES;

/// What `request` takes of a frame of requests, at most.
pub fn request_bytes(request: &Request) -> usize {
    let ops: usize = request
        .command
        .ops
        .iter()
        .map(|op| {
            let (_, expected, value) = op_parts(op);
            OP_RECORD_BYTES
                + op.key().len()
                + expected.map_or(0, |e| e.len())
                + value.map_or(0, |v| v.len())
        })
        .sum();
    REQUEST_RECORD_BYTES + ops
}

/// Splits `items` (each holding the request `request` gives), in order, into runs that
/// each fit one frame: at most [`CLIENT_REQUESTS_PER_FRAME_MAX`] requests, and no more bytes
/// than a frame holds. A request too large for a frame alone is a run of its own, whose
/// encoding fails.
pub fn request_frames<T>(items: &[T], request: impl Fn(&T) -> &Request) -> Vec<&[T]> {
    frame_runs(items, CLIENT_REQUESTS_PER_FRAME_MAX, |item| {
        request_bytes(request(item))
    })
}

/// Encode responses into one frame (the node's side), in the batch's columns: at most
/// [`CLIENT_RESPONSES_PER_FRAME_MAX`] of them, and no more bytes than a frame holds.
pub fn encode_responses(
    encoder: &mut FrameEncoder,
    responses: &[Response],
) -> Result<(), EncodeError> {
    if responses.len() > CLIENT_RESPONSES_PER_FRAME_MAX {
        return Err(EncodeError::TooManyMessages {
            messages: responses.len(),
            messages_max: CLIENT_RESPONSES_PER_FRAME_MAX,
        });
    }
    // Counted before anything is copied: answers may share far more bytes of the store than
    // a frame holds.
    let data_bytes: usize = responses.iter().map(answer_data_bytes).sum();
    if data_bytes > FRAME_BODY_BYTES_MAX {
        return Err(EncodeError::TooLarge {
            body_bytes: data_bytes,
            body_bytes_max: FRAME_BODY_BYTES_MAX,
        });
    }
    let mut records = Vec::with_capacity(responses.len());
    let (mut results, mut data) = (Vec::new(), DataColumn(Vec::with_capacity(data_bytes)));
    for response in responses {
        let mut code = fb::ErrorCode::Unknown;
        let kind = match &response.outcome {
            Outcome::Results(outcomes) if matches!(outcomes[..], [OpResult::Written]) => {
                fb::AnswerKind::Written
            }
            Outcome::Results(outcomes) => {
                for outcome in outcomes.iter() {
                    let (kind, bytes) = match outcome {
                        OpResult::Value(value) => (fb::ResultKind::Value, &value[..]),
                        OpResult::NotFound => (fb::ResultKind::NotFound, &[][..]),
                        OpResult::Written => (fb::ResultKind::Written, &[][..]),
                        OpResult::ConditionFailed { current: None } => {
                            (fb::ResultKind::ConditionFailedAbsent, &[][..])
                        }
                        OpResult::ConditionFailed {
                            current: Some(current),
                        } => (fb::ResultKind::ConditionFailed, &current[..]),
                    };
                    results.push(fb::ResultRecord::new(data.push(bytes)?, kind));
                }
                fb::AnswerKind::Results
            }
            Outcome::NotLeader {
                leader,
                address,
                maybe_proposed,
            } => {
                data.push(&leader.to_le_bytes())?;
                data.push(address.as_bytes())?;
                if !maybe_proposed {
                    code = fb::ErrorCode::NotProposed;
                }
                fb::AnswerKind::NotLeader
            }
            Outcome::Error {
                code: error,
                message,
            } => {
                code = match error {
                    ErrorCode::Unknown => fb::ErrorCode::Unknown,
                    ErrorCode::Busy => fb::ErrorCode::Busy,
                    ErrorCode::TooLarge => fb::ErrorCode::TooLarge,
                    ErrorCode::Malformed => fb::ErrorCode::Malformed,
                    ErrorCode::SessionExpired => fb::ErrorCode::SessionExpired,
                    ErrorCode::Timeout => fb::ErrorCode::Timeout,
                    ErrorCode::NoSpace => fb::ErrorCode::NoSpace,
                };
                data.push(message.as_bytes())?;
                fb::AnswerKind::Error
            }
        };
        records.push(fb::ResponseRecord::new(
            response.client_id,
            response.sequence,
            // At most as many results as a frame has bytes (checked below).
            results.len() as u32,
            data.end(),
            kind,
            code,
        ));
    }
    encoder.encode_with(|fbb| {
        let args = fb::ClientResponseBatchArgs {
            responses: None,
            records: Some(fbb.create_vector(&records)),
            results: Some(fbb.create_vector(&results)),
            data: Some(fbb.create_vector(&data.0)),
        };
        let batch = fb::ClientResponseBatch::create(fbb, &args);
        (fb::FrameBody::ClientResponseBatch, batch.as_union_value())
    })
}

/// Decode a frame of responses (the client's side). Values are slices of `frame`.
pub fn decode_responses(frame: &Bytes) -> Result<Vec<Response>, DecodeError> {
    let root = open_frame(frame)?;
    let batch = root
        .body_as_client_response_batch()
        .ok_or(FrameError::BodyUnknown)?;
    if batch
        .responses()
        .is_some_and(|responses| !responses.is_empty())
    {
        let what = "client responses as tables";
        return Err(ContentError::Obsolete { what }.into());
    }
    let mut results = Column::new(batch.results(), "results");
    let mut data = Runs::new(frame, batch.data(), "data");
    let records = batch.records().unwrap_or_default();
    if records.len() > CLIENT_RESPONSES_PER_FRAME_MAX {
        return Err(ContentError::TooManyMessages {
            messages: records.len(),
            messages_max: CLIENT_RESPONSES_PER_FRAME_MAX,
        }
        .into());
    }
    let mut out = Vec::with_capacity(records.len());
    for record in records.iter() {
        let unknown = |union, tag| ContentError::UnionUnknown { union, tag };
        let outcome = match record.kind() {
            fb::AnswerKind::Results => {
                // One result per operation of the answered command.
                let taken = results.take(record.results_end() as usize)?;
                if taken.len() > OPERATIONS_PER_COMMAND_MAX {
                    return Err(ContentError::TooManyResults {
                        results: taken.len(),
                        results_max: OPERATIONS_PER_COMMAND_MAX,
                    }
                    .into());
                }
                let mut outcomes = Vec::with_capacity(taken.len());
                for result in taken {
                    let bytes = data.take(result.data_end())?;
                    outcomes.push(match result.kind() {
                        fb::ResultKind::Value => OpResult::Value(bytes),
                        fb::ResultKind::NotFound => OpResult::NotFound,
                        fb::ResultKind::Written => OpResult::Written,
                        fb::ResultKind::ConditionFailed => OpResult::ConditionFailed {
                            current: Some(bytes),
                        },
                        fb::ResultKind::ConditionFailedAbsent => {
                            OpResult::ConditionFailed { current: None }
                        }
                        other => return Err(unknown("ResultKind", other.0).into()),
                    });
                }
                Outcome::Results(outcomes.into())
            }
            // The common answer: the thread's shared `[Written]`, no allocation.
            fb::AnswerKind::Written => Outcome::Results(written()),
            fb::AnswerKind::NotLeader => {
                let run = data.take(record.data_end())?;
                let (leader, address) =
                    run.split_at_checked(8)
                        .ok_or(ContentError::RunOutOfBounds {
                            column: "data (a leader's id)",
                            start: 0,
                            end: 8,
                            len: run.len(),
                        })?;
                Outcome::NotLeader {
                    leader: u64::from_le_bytes(leader.try_into().expect("8 bytes")),
                    address: String::from_utf8_lossy(address).into_owned(),
                    // Builds before this flag always sent Unknown: "maybe".
                    maybe_proposed: record.code() != fb::ErrorCode::NotProposed,
                }
            }
            fb::AnswerKind::Error => Outcome::Error {
                code: match record.code() {
                    fb::ErrorCode::Busy => ErrorCode::Busy,
                    fb::ErrorCode::TooLarge => ErrorCode::TooLarge,
                    fb::ErrorCode::Malformed => ErrorCode::Malformed,
                    fb::ErrorCode::SessionExpired => ErrorCode::SessionExpired,
                    fb::ErrorCode::Timeout => ErrorCode::Timeout,
                    fb::ErrorCode::NoSpace => ErrorCode::NoSpace,
                    _ => ErrorCode::Unknown,
                },
                message: String::from_utf8_lossy(&data.take(record.data_end())?).into_owned(),
            },
            other => return Err(unknown("AnswerKind", other.0).into()),
        };
        // Every response ends its bytes where its record says.
        data.take(record.data_end())?;
        out.push(Response {
            client_id: record.client_id(),
            sequence: record.sequence(),
            outcome,
        });
    }
    results.finish()?;
    data.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use smallvec::smallvec;

    /// The requests of a frame of client requests, opened here.
    fn decode_requests(frame: &Bytes) -> Result<Vec<Result<Request, Refused>>, DecodeError> {
        requests_of(frame, open_frame(frame)?)
    }

    fn frame(encoder: &FrameEncoder) -> Bytes {
        Bytes::from(encoder.to_frame_vec())
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Goal (reviews 217, 218): an answer of many results weighs what it holds in memory,
    /// not only its bytes in a frame (16 per result there; an `OpResult` in memory is wider,
    /// and each value has a heap block of its own).
    #[test]
    fn an_answer_of_many_results_weighs_its_memory() {
        let value = OpResult::Value(Bytes::copy_from_slice(b"v"));
        for (result, block) in [(OpResult::NotFound, 0), (value, VALUE_BLOCK_BYTES + 1)] {
            let response = Response {
                client_id: 1,
                sequence: 1,
                outcome: Outcome::Results(vec![result; 1024].into()),
            };
            let in_memory = 1024 * (size_of::<OpResult>() + block);
            assert!(
                answer_weight(&response) * ANSWER_WEIGHT_BYTES >= in_memory,
                "weight {} for {in_memory} bytes",
                answer_weight(&response)
            );
        }
    }

    #[test]
    fn requests_round_trip_and_values_borrow_the_frame() {
        let request = Request {
            forward_to: 0,
            command: Command {
                client_id: 3,
                sequence: 9,
                first_unacked: 7,
                ops: smallvec![
                    Op::Put {
                        key: b("k"),
                        value: b("value"),
                    },
                    Op::Get { key: b("k") },
                    Op::Delete { key: b("k") },
                    Op::CompareAndSwap {
                        key: b("k"),
                        expected: None,
                        value: b("1"),
                    },
                    Op::CompareAndSwap {
                        key: b("k"),
                        expected: Some(b("1")),
                        value: b("2"),
                    },
                    Op::PutIfAbsent {
                        key: b("k"),
                        value: b("3"),
                    },
                ],
            },
            consistency: Consistency::Lease,
        };
        let mut encoder = FrameEncoder::new();
        encode_requests(&mut encoder, std::slice::from_ref(&request)).unwrap();
        let bytes = frame(&encoder);
        let decoded = decode_requests(&bytes).unwrap();
        assert_eq!(decoded, vec![Ok(request)]);
        let Ok(Request { command, .. }) = &decoded[0] else {
            panic!()
        };
        let Op::Put { value, .. } = &command.ops[0] else {
            panic!()
        };
        assert!(bytes.as_ptr_range().contains(&value.as_ptr()));
    }

    #[test]
    fn a_request_over_a_limit_is_refused_alone() {
        let good = Request {
            forward_to: 0,
            command: Command {
                client_id: 1,
                sequence: 1,
                first_unacked: 1,
                ops: smallvec![Op::Get { key: b("k") }],
            },
            consistency: Consistency::Linearizable,
        };
        let mut bad = good.clone();
        bad.command.ops = smallvec![Op::Put {
            key: b("k"),
            value: Bytes::from(vec![0; crate::kv::limits::VALUE_BYTES_MAX + 1]),
        }];
        let mut encoder = FrameEncoder::new();
        encode_requests(&mut encoder, &[bad, good.clone()]).unwrap();
        let decoded = decode_requests(&frame(&encoder)).unwrap();
        let refused = decoded[0].clone().unwrap_err();
        assert!(matches!(
            refused.response().outcome,
            Outcome::Error {
                code: ErrorCode::TooLarge,
                ..
            }
        ));
        assert_eq!(decoded[1], Ok(good));
    }

    #[test]
    fn responses_round_trip() {
        let responses = vec![
            Response {
                client_id: 1,
                sequence: 2,
                outcome: Outcome::Results(
                    vec![
                        OpResult::Value(b("v")),
                        OpResult::NotFound,
                        OpResult::Written,
                        OpResult::ConditionFailed { current: None },
                        OpResult::ConditionFailed {
                            current: Some(b("x")),
                        },
                    ]
                    .into(),
                ),
            },
            Response {
                client_id: 1,
                sequence: 3,
                outcome: Outcome::NotLeader {
                    leader: 2,
                    address: "127.0.0.1:7100".into(),
                    maybe_proposed: true,
                },
            },
            Response {
                client_id: 1,
                sequence: 4,
                outcome: Outcome::Error {
                    code: ErrorCode::SessionExpired,
                    message: "gone".into(),
                },
            },
            Response {
                client_id: 1,
                sequence: 5,
                outcome: Outcome::Error {
                    code: ErrorCode::NoSpace,
                    message: "full".into(),
                },
            },
        ];
        let mut encoder = FrameEncoder::new();
        encode_responses(&mut encoder, &responses).unwrap();
        assert_eq!(decode_responses(&frame(&encoder)).unwrap(), responses);
    }

    #[test]
    fn flipped_bits_and_a_frame_of_the_other_side_are_refused() {
        let mut encoder = FrameEncoder::new();
        let request = Request {
            forward_to: 0,
            command: Command {
                client_id: 1,
                sequence: 1,
                first_unacked: 1,
                ops: smallvec![Op::Put {
                    key: b("key"),
                    value: b("value"),
                }],
            },
            consistency: Consistency::Stale,
        };
        encode_requests(&mut encoder, &[request]).unwrap();
        let good = encoder.to_frame_vec();
        for at in 0..good.len() {
            for bit in [0x01, 0x80] {
                let mut bad = good.clone();
                bad[at] ^= bit;
                // Refused or (a flip the checksum cannot see does not exist) never a panic.
                assert!(decode_requests(&Bytes::from(bad)).is_err(), "byte {at}");
            }
        }
        assert!(decode_responses(&Bytes::from(good)).is_err());
    }

    /// A request of every operation kind and consistency, and a response of every outcome.
    fn every_kind() -> (Vec<Request>, Vec<Response>) {
        let request = |sequence, ops: Ops, consistency| Request {
            forward_to: 0,
            command: Command {
                client_id: 3,
                sequence,
                first_unacked: 1,
                ops,
            },
            consistency,
        };
        let requests = vec![
            request(
                1,
                smallvec![Op::Get { key: b("g") }],
                Consistency::Linearizable,
            ),
            request(2, smallvec![Op::Get { key: b("s") }], Consistency::Stale),
            request(
                3,
                smallvec![
                    Op::Put {
                        key: b("p"),
                        value: b("value")
                    },
                    Op::Delete { key: b("d") },
                ],
                Consistency::Lease,
            ),
            request(
                4,
                smallvec![
                    Op::CompareAndSwap {
                        key: b("c"),
                        expected: Some(b("old")),
                        value: b("new"),
                    },
                    Op::CompareAndSwap {
                        key: b("c"),
                        expected: None,
                        value: b("first"),
                    },
                    Op::PutIfAbsent {
                        key: b("r"),
                        value: b("once"),
                    },
                ],
                Consistency::Linearizable,
            ),
        ];
        let response = |sequence, outcome| Response {
            client_id: 3,
            sequence,
            outcome,
        };
        let responses = vec![
            written(1),
            response(
                2,
                Outcome::Results(
                    vec![
                        OpResult::Value(b("v")),
                        OpResult::NotFound,
                        OpResult::ConditionFailed {
                            current: Some(b("x")),
                        },
                        OpResult::ConditionFailed { current: None },
                    ]
                    .into(),
                ),
            ),
            response(
                3,
                Outcome::NotLeader {
                    leader: 2,
                    address: "127.0.0.1:7100".into(),
                    maybe_proposed: false,
                },
            ),
            response(
                4,
                Outcome::Error {
                    code: ErrorCode::Busy,
                    message: "later".into(),
                },
            ),
        ];
        (requests, responses)
    }

    /// `frame`'s body with `edits` applied, in a frame whose checksum matches it again.
    fn edited(frame: &[u8], edits: &[(proptest::sample::Index, u8)]) -> Bytes {
        let mut body = frame[crate::wire::limits::FRAME_HEADER_BYTES..].to_vec();
        for (index, value) in edits {
            let at = index.index(body.len());
            body[at] = *value;
        }
        let mut out = crate::wire::frame::frame_header_for(&body).to_vec();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Goal: a client frame corrupted behind a checksum that matches (the checksum cannot
        /// help) is refused or decoded, never a panic, and what decodes encodes again: the
        /// verifier and the column checks alone stand between a hostile client and a node.
        #[test]
        fn corrupted_client_frames_with_valid_checksums_never_panic(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..8,
            ),
        ) {
            let (requests, responses) = every_kind();
            let mut encoder = FrameEncoder::new();
            encode_requests(&mut encoder, &requests).unwrap();
            if let Ok(decoded) = decode_requests(&edited(&encoder.to_frame_vec(), &edits)) {
                let accepted: Vec<Request> = decoded.into_iter().filter_map(Result::ok).collect();
                encode_requests(&mut encoder, &accepted).unwrap();
                let again = decode_requests(&frame(&encoder)).unwrap();
                let again: Vec<Request> = again.into_iter().map(Result::unwrap).collect();
                proptest::prop_assert_eq!(again, accepted);
            }
            encode_responses(&mut encoder, &responses).unwrap();
            if let Ok(decoded) = decode_responses(&edited(&encoder.to_frame_vec(), &edits)) {
                encode_responses(&mut encoder, &decoded).unwrap();
                proptest::prop_assert_eq!(decode_responses(&frame(&encoder)).unwrap(), decoded);
            }
        }

        /// Goal: random bytes, bare or behind a valid header and checksum (so that they reach
        /// the verifier), never panic either decoder.
        #[test]
        fn random_client_bytes_never_panic(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let mut framed = crate::wire::frame::frame_header_for(&garbage).to_vec();
            framed.extend_from_slice(&garbage);
            for bytes in [Bytes::from(garbage), Bytes::from(framed)] {
                let _ = decode_requests(&bytes);
                let _ = decode_responses(&bytes);
            }
        }
    }

    fn written(sequence: u64) -> Response {
        Response {
            client_id: 9,
            sequence,
            outcome: Outcome::Results(vec![OpResult::Written].into()),
        }
    }

    #[test]
    fn one_write_answers_take_one_record_and_decode_to_the_shared_results() {
        // Goal: a one-operation write's answer is a record of its own kind (no result
        // record); each response still decodes to its own, around answers of other kinds,
        // and decodes to the shared `[Written]` of the receiving thread.
        let mut encoder = FrameEncoder::new();
        encode_responses(&mut encoder, &[written(1)]).unwrap();
        let one = frame(&encoder).len();
        let mut responses: Vec<Response> = (1..=100).map(written).collect();
        responses.insert(
            50,
            Response {
                client_id: 9,
                sequence: 1000,
                outcome: Outcome::Results(vec![OpResult::Written, OpResult::NotFound].into()),
            },
        );
        encode_responses(&mut encoder, &responses).unwrap();
        let decoded = decode_responses(&frame(&encoder)).unwrap();
        assert_eq!(decoded, responses);
        // Decoded, they share one `[Written]` again: no allocation per answer.
        match &decoded[0].outcome {
            Outcome::Results(results) => {
                assert!(std::sync::Arc::ptr_eq(results, &crate::kv::written()))
            }
            other => panic!("{other:?}"),
        }
        let only_written: Vec<Response> = (1..=101).map(written).collect();
        encode_responses(&mut encoder, &only_written).unwrap();
        let per_response = (frame(&encoder).len() - one) / 100;
        // One ResponseRecord: two u64, two u32 ends, the kind and the error code, padded.
        assert!(per_response <= 32, "{per_response} bytes per response");
    }

    /// Goal: the ask to forward travels per request, and a batch where none asks carries no
    /// column for it; a column of another length than the records is refused whole.
    /// Method: a batch of three, the middle one asking; one of one, asking; one of none; a
    /// hand-made column of two for one request.
    #[test]
    fn the_ask_to_forward_travels_per_request() {
        let put = |sequence, forward_to| Request {
            forward_to,
            command: Command {
                client_id: 1,
                sequence,
                first_unacked: 1,
                ops: smallvec![Op::Put {
                    key: b("k"),
                    value: b("v"),
                }],
            },
            consistency: Consistency::Linearizable,
        };
        let mut encoder = FrameEncoder::new();
        for asked in [&[put(1, 0), put(2, 7), put(3, 0)][..], &[put(1, 7)]] {
            encode_requests(&mut encoder, asked).unwrap();
            let decoded = decode_requests(&frame(&encoder)).unwrap();
            assert_eq!(decoded, asked.iter().cloned().map(Ok).collect::<Vec<_>>());
        }
        let none = [put(1, 0), put(2, 0)];
        encode_requests(&mut encoder, &none).unwrap();
        let bytes = frame(&encoder);
        let root = open_frame(&bytes).unwrap();
        let batch = root.body_as_client_request_batch().unwrap();
        assert!(batch.forward_to().is_none(), "no column where none asks");
        encoder
            .encode_with(|fbb| {
                let records = [fb::RequestRecord::new(
                    1,
                    1,
                    1,
                    0,
                    fb::ReadConsistency::Stale,
                )];
                let args = fb::ClientRequestBatchArgs {
                    records: Some(fbb.create_vector(&records)),
                    forward_to: Some(fbb.create_vector(&[7u64, 0])),
                    ..Default::default()
                };
                let batch = fb::ClientRequestBatch::create(fbb, &args);
                (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
            })
            .unwrap();
        let error = content_error(decode_requests(&frame(&encoder)));
        let expected = ContentError::ColumnLengthWrong {
            column: "forward_to",
            len: 2,
            expected: 1,
        };
        assert_eq!(error, expected);
    }

    /// A request batch of hand-made columns: what a buggy or hostile client could send.
    fn request_columns(ops: &[(u32, u32, u32)], ops_end: u32, data_bytes: usize) -> Bytes {
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let records = [fb::RequestRecord::new(
                    1,
                    1,
                    1,
                    ops_end,
                    fb::ReadConsistency::Linearizable,
                )];
                let ops: Vec<fb::OpRecord> = ops
                    .iter()
                    .map(|&(k, e, v)| fb::OpRecord::new(k, e, v, fb::OpKind::Put, false))
                    .collect();
                let args = fb::ClientRequestBatchArgs {
                    records: Some(fbb.create_vector(&records)),
                    ops: Some(fbb.create_vector(&ops)),
                    data: Some(fbb.create_vector(&vec![b'x'; data_bytes])),
                    ..Default::default()
                };
                let batch = fb::ClientRequestBatch::create(fbb, &args);
                (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
            })
            .unwrap();
        frame(&encoder)
    }

    fn content_error(result: Result<impl std::fmt::Debug, DecodeError>) -> ContentError {
        match result {
            Err(DecodeError::Content(error)) => error,
            other => panic!("a content error, not {other:?}"),
        }
    }

    #[test]
    fn request_columns_that_disagree_are_refused_whole() {
        // Goal: a request's operations and bytes can only be runs inside their columns, in
        // order, with nothing left over; anything else refuses the frame (its structure is
        // broken, so no request in it can be trusted). Method: hand-made columns.
        assert!(decode_requests(&request_columns(&[(1, 1, 3)], 1, 3)).is_ok());
        let out_of_bounds = [
            (request_columns(&[(1, 1, 3)], 2, 3), "ops"),
            (request_columns(&[(1, 1, 4)], 1, 3), "data"),
            (request_columns(&[(2, 1, 3)], 1, 3), "data"),
        ];
        for (frame, column) in out_of_bounds {
            let error = content_error(decode_requests(&frame));
            assert!(
                matches!(error, ContentError::RunOutOfBounds { column: c, .. } if c == column),
                "{error:?}"
            );
        }
        let left_over = [
            (request_columns(&[(1, 1, 3), (4, 4, 4)], 1, 4), "ops", 1),
            (request_columns(&[(1, 1, 3)], 1, 5), "data", 2),
        ];
        for (frame, column, items) in left_over {
            let error = content_error(decode_requests(&frame));
            assert_eq!(error, ContentError::LeftOver { column, items });
        }
    }

    #[test]
    fn the_table_form_of_earlier_clients_is_refused_with_its_name() {
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let args = fb::ClientRequestArgs {
                    client_id: 1,
                    sequence: 1,
                    first_unacked: 1,
                    ..Default::default()
                };
                let request = fb::ClientRequest::create(fbb, &args);
                let args = fb::ClientRequestBatchArgs {
                    requests: Some(fbb.create_vector(&[request])),
                    ..Default::default()
                };
                let batch = fb::ClientRequestBatch::create(fbb, &args);
                (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
            })
            .unwrap();
        let error = content_error(decode_requests(&frame(&encoder)));
        assert!(matches!(error, ContentError::Obsolete { .. }), "{error:?}");
        assert!(error.to_string().contains("client requests as tables"));
    }

    #[test]
    fn a_not_leader_answer_too_short_for_its_leader_id_is_refused() {
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let record = fb::ResponseRecord::new(
                    1,
                    1,
                    0,
                    4,
                    fb::AnswerKind::NotLeader,
                    fb::ErrorCode::Unknown,
                );
                let args = fb::ClientResponseBatchArgs {
                    records: Some(fbb.create_vector(&[record])),
                    data: Some(fbb.create_vector(&[1u8, 0, 0, 0])),
                    ..Default::default()
                };
                let batch = fb::ClientResponseBatch::create(fbb, &args);
                (fb::FrameBody::ClientResponseBatch, batch.as_union_value())
            })
            .unwrap();
        let error = content_error(decode_responses(&frame(&encoder)));
        assert!(
            matches!(error, ContentError::RunOutOfBounds { .. }),
            "{error:?}"
        );
    }

    /// A hand-built response frame of `records` answers, the first with `results` results
    /// (each `NotFound`), the others `Written`.
    fn responses_frame(records: usize, results: usize) -> Bytes {
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let records: Vec<_> = (0..records)
                    .map(|at| {
                        let (kind, end) = match at {
                            0 => (fb::AnswerKind::Results, results as u32),
                            _ => (fb::AnswerKind::Written, results as u32),
                        };
                        fb::ResponseRecord::new(
                            1,
                            at as u64 + 1,
                            end,
                            0,
                            kind,
                            fb::ErrorCode::Unknown,
                        )
                    })
                    .collect();
                let results: Vec<_> = (0..results)
                    .map(|_| fb::ResultRecord::new(0, fb::ResultKind::NotFound))
                    .collect();
                let args = fb::ClientResponseBatchArgs {
                    records: Some(fbb.create_vector(&records)),
                    results: Some(fbb.create_vector(&results)),
                    ..Default::default()
                };
                let batch = fb::ClientResponseBatch::create(fbb, &args);
                (fb::FrameBody::ClientResponseBatch, batch.as_union_value())
            })
            .unwrap();
        frame(&encoder)
    }

    /// Goal: a client decodes no more answers in a frame, nor results in one answer, than a
    /// node's encoder lets through (found in review: only the encoder checked; the frame's
    /// size still bounds the results of a frame as a whole).
    #[test]
    fn a_response_frame_over_the_limits_is_refused() {
        let (answers_max, results_max) =
            (CLIENT_RESPONSES_PER_FRAME_MAX, OPERATIONS_PER_COMMAND_MAX);
        assert_eq!(
            decode_responses(&responses_frame(answers_max, results_max))
                .unwrap()
                .len(),
            answers_max
        );
        assert_eq!(
            content_error(decode_responses(&responses_frame(answers_max + 1, 1))),
            ContentError::TooManyMessages {
                messages: answers_max + 1,
                messages_max: answers_max
            }
        );
        assert_eq!(
            content_error(decode_responses(&responses_frame(1, results_max + 1))),
            ContentError::TooManyResults {
                results: results_max + 1,
                results_max
            }
        );
    }

    /// Goal (found in review): an encoder held long gives back the room a large frame made
    /// it take, and only then. Method: an answer of a 4 MiB value, then a small one.
    #[test]
    fn an_encoder_sheds_the_room_of_a_large_frame() {
        let value = |bytes: usize| Response {
            client_id: 9,
            sequence: 1,
            outcome: Outcome::Results(vec![OpResult::Value(Bytes::from(vec![7; bytes]))].into()),
        };
        let mut encoder = FrameEncoder::new();
        encode_responses(&mut encoder, &[value(4 << 20)]).unwrap();
        assert!(encoder.room_bytes() > 4 << 20, "{}", encoder.room_bytes());
        encoder.shed_room_over(1 << 20);
        assert!(encoder.room_bytes() <= 64 << 10, "{}", encoder.room_bytes());
        encode_responses(&mut encoder, &[value(100)]).unwrap();
        let room = encoder.room_bytes();
        encoder.shed_room_over(1 << 20);
        assert_eq!(encoder.room_bytes(), room, "a small frame's room is kept");
        assert_eq!(decode_responses(&frame(&encoder)).unwrap(), [value(100)]);
    }

    #[test]
    fn more_responses_than_a_frame_may_carry_are_refused() {
        let responses: Vec<Response> = (1..=CLIENT_RESPONSES_PER_FRAME_MAX as u64 + 1)
            .map(written)
            .collect();
        let mut encoder = FrameEncoder::new();
        assert!(matches!(
            encode_responses(&mut encoder, &responses),
            Err(EncodeError::TooManyMessages { messages_max, .. })
                if messages_max == CLIENT_RESPONSES_PER_FRAME_MAX
        ));
        encode_responses(&mut encoder, &responses[1..]).unwrap();
    }
}
