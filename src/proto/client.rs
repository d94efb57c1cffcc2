//! The client protocol: client request and response frames ↔ key-value commands and replies.
//!
//! Decoding reads the verified flatbuffer in place: keys and values become slices of the
//! received frame, never copies. A request that breaks a limit is not a reason to drop the
//! connection: it is answered with an error of its own, and the other requests of the frame
//! go on.

use bytes::Bytes;

use crate::wire::frame::open_frame;
use crate::wire::limits::{CLIENT_REQUESTS_PER_FRAME_MAX, CLIENT_RESPONSES_PER_FRAME_MAX};
use crate::wire::{DecodeError, EncodeError, FrameEncoder, FrameError, fb};

use crate::kv::limits::OPERATIONS_PER_COMMAND_MAX;
use crate::kv::{Command, CommandError, Op, OpResult, Results, written};
use crate::wire::limits::CLIENT_OPERATIONS_PER_REQUEST_MAX;

const _: () = assert!(
    CLIENT_OPERATIONS_PER_REQUEST_MAX <= OPERATIONS_PER_COMMAND_MAX,
    "a request the wire lets through must fit one command"
);

/// How fresh the reads of a request must be. Writes are always linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed by a heartbeat round (ReadIndex).
    Linearizable,
    /// Served by the leader within its lease (no round trip; relies on bounded clock drift).
    Lease,
    /// Whatever the node's state machine holds now.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub consistency: Consistency,
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
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One result per operation, in order (shared: most writes share one `[Written]`).
    Results(Results),
    /// Ask `leader` (node id, 0 if unknown) at `address` instead.
    NotLeader {
        leader: u64,
        address: String,
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

fn bytes_of(frame: &Bytes, vector: Option<flatbuffers::Vector<'_, u8>>) -> Bytes {
    match vector {
        // The vector was read from a flatbuffer verified inside `frame`: it lies within it.
        Some(vector) if !vector.is_empty() => frame.slice_ref(vector.bytes()),
        _ => Bytes::new(),
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

/// Decode a frame from a client: a topology request or a batch of requests.
pub fn decode_client_frame(frame: &Bytes) -> Result<ClientFrame, DecodeError> {
    let root = open_frame(frame)?;
    if root.body_as_topology_request().is_some() {
        return Ok(ClientFrame::TopologyRequest);
    }
    if root.body_as_status_request().is_some() {
        return Ok(ClientFrame::StatusRequest);
    }
    if let Some(transfer) = root.body_as_transfer_leader_request() {
        return Ok(ClientFrame::TransferLeader {
            group: transfer.group(),
            to: transfer.to(),
        });
    }
    if let Some(change) = root.body_as_member_change_request() {
        return Ok(ClientFrame::ChangeMember(
            crate::proto::members::member_change_of(change),
        ));
    }
    decode_requests(frame).map(ClientFrame::Requests)
}

/// Decode a frame of client requests. The frame as a whole is refused (close the connection)
/// only if its bytes are bad; each request is accepted or refused on its own.
pub fn decode_requests(frame: &Bytes) -> Result<Vec<Result<Request, Refused>>, DecodeError> {
    let root = open_frame(frame)?;
    let batch = root
        .body_as_client_request_batch()
        .ok_or(FrameError::BodyUnknown)?;
    let requests = batch.requests().unwrap_or_default();
    if requests.len() > CLIENT_REQUESTS_PER_FRAME_MAX {
        return Err(crate::wire::ContentError::TooManyMessages {
            messages: requests.len(),
            messages_max: CLIENT_REQUESTS_PER_FRAME_MAX,
        }
        .into());
    }
    Ok(requests.iter().map(|r| decode_request(frame, r)).collect())
}

fn decode_request(frame: &Bytes, request: fb::ClientRequest<'_>) -> Result<Request, Refused> {
    let refuse = |error| Refused {
        client_id: request.client_id(),
        sequence: request.sequence(),
        error,
    };
    let consistency = match request.consistency() {
        fb::ReadConsistency::Linearizable => Consistency::Linearizable,
        fb::ReadConsistency::Lease => Consistency::Lease,
        fb::ReadConsistency::Stale => Consistency::Stale,
        _ => return Err(refuse(CommandError::Malformed("unknown read consistency"))),
    };
    let items = request.operations().unwrap_or_default();
    if items.len() > OPERATIONS_PER_COMMAND_MAX {
        return Err(refuse(CommandError::TooManyOperations {
            count: items.len(),
        }));
    }
    let mut ops = Vec::with_capacity(items.len());
    for item in items {
        let op = match item.operation_type() {
            fb::Operation::Get => item.operation_as_get().map(|o| Op::Get {
                key: bytes_of(frame, o.key()),
            }),
            fb::Operation::Put => item.operation_as_put().map(|o| Op::Put {
                key: bytes_of(frame, o.key()),
                value: bytes_of(frame, o.value()),
            }),
            fb::Operation::Delete => item.operation_as_delete().map(|o| Op::Delete {
                key: bytes_of(frame, o.key()),
            }),
            fb::Operation::CompareAndSwap => {
                item.operation_as_compare_and_swap()
                    .map(|o| Op::CompareAndSwap {
                        key: bytes_of(frame, o.key()),
                        expected: o.expected().map(|e| bytes_of(frame, Some(e))),
                        value: bytes_of(frame, o.value()),
                    })
            }
            fb::Operation::PutIfAbsent => {
                item.operation_as_put_if_absent().map(|o| Op::PutIfAbsent {
                    key: bytes_of(frame, o.key()),
                    value: bytes_of(frame, o.value()),
                })
            }
            _ => None,
        };
        ops.push(op.ok_or_else(|| refuse(CommandError::Malformed("unknown or empty operation")))?);
    }
    let command = Command {
        client_id: request.client_id(),
        sequence: request.sequence(),
        first_unacked: request.first_unacked(),
        ops,
    };
    command.validate().map_err(refuse)?;
    Ok(Request {
        command,
        consistency,
    })
}

/// Encode requests into one frame (the client's side).
pub fn encode_requests<'a>(
    encoder: &mut FrameEncoder,
    requests: impl IntoIterator<Item = &'a Request>,
) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let mut offsets = Vec::new();
        for request in requests {
            let mut items = Vec::with_capacity(request.command.ops.len());
            for op in &request.command.ops {
                let key = Some(fbb.create_vector(op.key()));
                let (operation_type, operation) = match op {
                    Op::Get { .. } => (
                        fb::Operation::Get,
                        fb::Get::create(fbb, &fb::GetArgs { key }).as_union_value(),
                    ),
                    Op::Delete { .. } => (
                        fb::Operation::Delete,
                        fb::Delete::create(fbb, &fb::DeleteArgs { key }).as_union_value(),
                    ),
                    Op::Put { value, .. } => {
                        let value = Some(fbb.create_vector(value));
                        let args = fb::PutArgs { key, value };
                        (
                            fb::Operation::Put,
                            fb::Put::create(fbb, &args).as_union_value(),
                        )
                    }
                    Op::PutIfAbsent { value, .. } => {
                        let value = Some(fbb.create_vector(value));
                        let args = fb::PutIfAbsentArgs { key, value };
                        let table = fb::PutIfAbsent::create(fbb, &args);
                        (fb::Operation::PutIfAbsent, table.as_union_value())
                    }
                    Op::CompareAndSwap {
                        expected, value, ..
                    } => {
                        let expected = expected.as_ref().map(|e| fbb.create_vector(e));
                        let value = Some(fbb.create_vector(value));
                        let args = fb::CompareAndSwapArgs {
                            key,
                            expected,
                            value,
                        };
                        let table = fb::CompareAndSwap::create(fbb, &args);
                        (fb::Operation::CompareAndSwap, table.as_union_value())
                    }
                };
                let args = fb::OperationItemArgs {
                    operation_type,
                    operation: Some(operation),
                };
                items.push(fb::OperationItem::create(fbb, &args));
            }
            let operations = Some(fbb.create_vector(&items));
            let consistency = match request.consistency {
                Consistency::Linearizable => fb::ReadConsistency::Linearizable,
                Consistency::Lease => fb::ReadConsistency::Lease,
                Consistency::Stale => fb::ReadConsistency::Stale,
            };
            let args = fb::ClientRequestArgs {
                client_id: request.command.client_id,
                sequence: request.command.sequence,
                consistency,
                operations,
                first_unacked: request.command.first_unacked,
            };
            offsets.push(fb::ClientRequest::create(fbb, &args));
        }
        let requests = Some(fbb.create_vector(&offsets));
        let batch = fb::ClientRequestBatch::create(fbb, &fb::ClientRequestBatchArgs { requests });
        (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
    })
}

/// Encode responses into one frame (the node's side): at most
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
    encoder.encode_with(|fbb| {
        let mut offsets = Vec::with_capacity(responses.len());
        // The results of a one-operation write (most answers) are one `[Written]` vector,
        // written once and pointed at by every response that has them: a flatbuffer may
        // share a subobject, and the response count bound keeps what the verifier walks
        // (each reference visits the shared part again) far below its limits.
        let mut one_written = None;
        for response in responses {
            if let Outcome::Results(results) = &response.outcome
                && let [OpResult::Written] = &results[..]
            {
                let results = *one_written.get_or_insert_with(|| {
                    let written = fb::Written::create(fbb, &fb::WrittenArgs {});
                    let args = fb::ResultItemArgs {
                        result_type: fb::OperationResult::Written,
                        result: Some(written.as_union_value()),
                    };
                    let item = fb::ResultItem::create(fbb, &args);
                    fbb.create_vector(&[item])
                });
                let args = fb::ClientResponseArgs {
                    client_id: response.client_id,
                    sequence: response.sequence,
                    results: Some(results),
                };
                offsets.push(fb::ClientResponse::create(fbb, &args));
                continue;
            }
            let mut items = Vec::new();
            let mut push =
                |fbb: &mut flatbuffers::FlatBufferBuilder<'static>,
                 result_type,
                 result: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>| {
                    let args = fb::ResultItemArgs {
                        result_type,
                        result: Some(result),
                    };
                    items.push(fb::ResultItem::create(fbb, &args));
                };
            match &response.outcome {
                Outcome::Results(results) => {
                    for result in results.iter() {
                        let (kind, table) = match result {
                            OpResult::Value(value) => {
                                let value = Some(fbb.create_vector(value));
                                let table = fb::Value::create(fbb, &fb::ValueArgs { value });
                                (fb::OperationResult::Value, table.as_union_value())
                            }
                            OpResult::NotFound => {
                                let table = fb::NotFound::create(fbb, &fb::NotFoundArgs {});
                                (fb::OperationResult::NotFound, table.as_union_value())
                            }
                            OpResult::Written => {
                                let table = fb::Written::create(fbb, &fb::WrittenArgs {});
                                (fb::OperationResult::Written, table.as_union_value())
                            }
                            OpResult::ConditionFailed { current } => {
                                let current = current.as_ref().map(|c| fbb.create_vector(c));
                                let args = fb::ConditionFailedArgs { current };
                                let table = fb::ConditionFailed::create(fbb, &args);
                                (fb::OperationResult::ConditionFailed, table.as_union_value())
                            }
                        };
                        push(fbb, kind, table);
                    }
                }
                Outcome::NotLeader { leader, address } => {
                    let leader_address = Some(fbb.create_string(address));
                    let args = fb::NotLeaderArgs {
                        leader_hint: *leader,
                        leader_address,
                    };
                    let table = fb::NotLeader::create(fbb, &args);
                    push(fbb, fb::OperationResult::NotLeader, table.as_union_value());
                }
                Outcome::Error { code, message } => {
                    let message = Some(fbb.create_string(message));
                    let code = match code {
                        ErrorCode::Unknown => fb::ErrorCode::Unknown,
                        ErrorCode::Busy => fb::ErrorCode::Busy,
                        ErrorCode::TooLarge => fb::ErrorCode::TooLarge,
                        ErrorCode::Malformed => fb::ErrorCode::Malformed,
                        ErrorCode::SessionExpired => fb::ErrorCode::SessionExpired,
                        ErrorCode::Timeout => fb::ErrorCode::Timeout,
                    };
                    let table = fb::Error::create(fbb, &fb::ErrorArgs { code, message });
                    push(fbb, fb::OperationResult::Error, table.as_union_value());
                }
            }
            let results = Some(fbb.create_vector(&items));
            let args = fb::ClientResponseArgs {
                client_id: response.client_id,
                sequence: response.sequence,
                results,
            };
            offsets.push(fb::ClientResponse::create(fbb, &args));
        }
        let responses = Some(fbb.create_vector(&offsets));
        let args = fb::ClientResponseBatchArgs { responses };
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
    let unknown = |tag: u8| crate::wire::ContentError::UnionUnknown {
        union: "OperationResult",
        tag,
    };
    let mut out = Vec::new();
    for response in batch.responses().unwrap_or_default() {
        let items = response.results().unwrap_or_default();
        if items.len() == 1 && items.get(0).result_type() == fb::OperationResult::Written {
            out.push(Response {
                client_id: response.client_id(),
                sequence: response.sequence(),
                outcome: Outcome::Results(written()),
            });
            continue;
        }
        let mut results = Vec::with_capacity(items.len());
        let mut whole = None;
        for item in items {
            let kind = item.result_type();
            let result = match kind {
                fb::OperationResult::Value => item
                    .result_as_value()
                    .map(|v| OpResult::Value(bytes_of(frame, v.value()))),
                fb::OperationResult::NotFound => Some(OpResult::NotFound),
                fb::OperationResult::Written => Some(OpResult::Written),
                fb::OperationResult::ConditionFailed => {
                    item.result_as_condition_failed()
                        .map(|c| OpResult::ConditionFailed {
                            current: c.current().map(|v| bytes_of(frame, Some(v))),
                        })
                }
                fb::OperationResult::NotLeader => {
                    let table = item.result_as_not_leader().ok_or(unknown(kind.0))?;
                    whole = Some(Outcome::NotLeader {
                        leader: table.leader_hint(),
                        address: table.leader_address().unwrap_or_default().to_string(),
                    });
                    None
                }
                fb::OperationResult::Error => {
                    let table = item.result_as_error().ok_or(unknown(kind.0))?;
                    let code = match table.code() {
                        fb::ErrorCode::Busy => ErrorCode::Busy,
                        fb::ErrorCode::TooLarge => ErrorCode::TooLarge,
                        fb::ErrorCode::Malformed => ErrorCode::Malformed,
                        fb::ErrorCode::SessionExpired => ErrorCode::SessionExpired,
                        fb::ErrorCode::Timeout => ErrorCode::Timeout,
                        _ => ErrorCode::Unknown,
                    };
                    whole = Some(Outcome::Error {
                        code,
                        message: table.message().unwrap_or_default().to_string(),
                    });
                    None
                }
                _ => return Err(unknown(kind.0).into()),
            };
            if let Some(result) = result {
                results.push(result);
            }
        }
        out.push(Response {
            client_id: response.client_id(),
            sequence: response.sequence(),
            outcome: whole.unwrap_or_else(|| Outcome::Results(results.into())),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(encoder: &FrameEncoder) -> Bytes {
        Bytes::from(encoder.to_frame_vec())
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn requests_round_trip_and_values_borrow_the_frame() {
        let request = Request {
            command: Command {
                client_id: 3,
                sequence: 9,
                first_unacked: 7,
                ops: vec![
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
            command: Command {
                client_id: 1,
                sequence: 1,
                first_unacked: 1,
                ops: vec![Op::Get { key: b("k") }],
            },
            consistency: Consistency::Linearizable,
        };
        let mut bad = good.clone();
        bad.command.ops = vec![Op::Put {
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
        ];
        let mut encoder = FrameEncoder::new();
        encode_responses(&mut encoder, &responses).unwrap();
        assert_eq!(decode_responses(&frame(&encoder)).unwrap(), responses);
    }

    #[test]
    fn garbage_and_flipped_bits_never_panic() {
        let mut encoder = FrameEncoder::new();
        let request = Request {
            command: Command {
                client_id: 1,
                sequence: 1,
                first_unacked: 1,
                ops: vec![Op::Put {
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

    fn written(sequence: u64) -> Response {
        Response {
            client_id: 9,
            sequence,
            outcome: Outcome::Results(vec![OpResult::Written].into()),
        }
    }

    #[test]
    fn one_write_answers_share_their_results_and_decode_as_their_own() {
        // Goal: the `[Written]` results of one-operation writes are written once per frame
        // and shared; each response still decodes to its own, around answers of other kinds,
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
                assert!(std::rc::Rc::ptr_eq(results, &crate::kv::written()))
            }
            other => panic!("{other:?}"),
        }
        let only_written: Vec<Response> = (1..=101).map(written).collect();
        encode_responses(&mut encoder, &only_written).unwrap();
        let per_response = (frame(&encoder).len() - one) / 100;
        // A response table alone: its offset in the vector, its vtable offset, two u64
        // fields and the results offset (alignment aside); unshared results add 24 more.
        assert!(per_response <= 32, "{per_response} bytes per response");
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
