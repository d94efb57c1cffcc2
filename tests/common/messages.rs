//! Proptest strategies that produce every kind of Raft message, with random fields.

use bytes::Bytes;
use cohort::raft::{
    AppendRequest, AppendResponse, ConfState, Entry, EntryKind, GroupId, Heartbeat,
    HeartbeatResponse, LogIndex, Message, MessageBody, NodeId, Snapshot, SnapshotChunk,
    SnapshotMeta, Term, VoteRequest, VoteResponse,
};
use cohort::wire::Envelope;
use proptest::collection::vec;
use proptest::prelude::*;

/// A term or log index: any a decoder takes (up to `RAFT_NUMBER_MAX`).
fn number() -> impl Strategy<Value = u64> {
    0..=cohort::wire::RAFT_NUMBER_MAX
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn entry() -> impl Strategy<Value = Entry> {
    (number(), number(), 0u8..3, payload()).prop_map(|(term, index, kind, data)| Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::from_u8(kind).expect("0..3 are kinds"),
        data,
    })
}

/// The ids of one list of a configuration: sorted, each once, none 0 (what a decoder takes);
/// at least `min` of them.
fn node_ids(min: usize) -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::btree_set(1..=u64::MAX, min..6)
        .prop_map(|ids| ids.into_iter().map(NodeId).collect())
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        number(),
        number(),
        node_ids(1),
        node_ids(0),
        node_ids(0),
        node_ids(0),
        any::<bool>(),
        payload(),
    )
        .prop_map(
            |(index, term, voters, voters_outgoing, learners, learners_next, auto_leave, data)| {
                Snapshot {
                    meta: SnapshotMeta {
                        index: LogIndex(index),
                        term: Term(term),
                        conf_state: ConfState {
                            voters,
                            voters_outgoing,
                            learners,
                            learners_next,
                            auto_leave,
                        },
                    },
                    data,
                }
            },
        )
}

fn vote_request() -> impl Strategy<Value = VoteRequest> {
    (number(), number(), any::<bool>()).prop_map(|(index, term, transfer)| VoteRequest {
        last_log_index: LogIndex(index),
        last_log_term: Term(term),
        transfer,
    })
}

/// Every variant of `MessageBody`; a new variant must be added here (the round-trip test
/// names them all, so a missing one shows up as an uncovered kind).
pub fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (number(), number(), vec(entry(), 0..5), number()).prop_map(|(i, t, entries, c)| {
            MessageBody::AppendRequest(AppendRequest {
                prev_log_index: LogIndex(i),
                prev_log_term: Term(t),
                entries: entries.into(),
                commit: LogIndex(c),
            })
        }),
        (number(), any::<bool>(), number(), number()).prop_map(|(i, reject, h, t)| {
            MessageBody::AppendResponse(AppendResponse {
                index: LogIndex(i),
                reject,
                reject_hint: LogIndex(h),
                hint_term: Term(t),
            })
        }),
        vote_request().prop_map(MessageBody::PreVoteRequest),
        any::<bool>().prop_map(|reject| MessageBody::PreVoteResponse(VoteResponse { reject })),
        vote_request().prop_map(MessageBody::VoteRequest),
        any::<bool>().prop_map(|reject| MessageBody::VoteResponse(VoteResponse { reject })),
        // What the follower acknowledged is never below the commit (capped at it).
        (
            number(),
            number(),
            any::<u64>(),
            number(),
            number(),
            any::<bool>()
        )
            .prop_map(|(c, a, r, t, ct, quiesce)| {
                MessageBody::Heartbeat(Heartbeat {
                    commit: LogIndex(c.min(a)),
                    read_round: r,
                    acknowledged: LogIndex(c.max(a)),
                    acknowledged_term: Term(t),
                    commit_term: Term(ct),
                    quiesce,
                })
            },),
        // The heartbeat of a follower that has the commit, in the commit's term: the form
        // that travels as a column (the one above, with independent numbers, almost never is).
        (number(), any::<u64>(), number()).prop_map(|(c, r, t)| {
            MessageBody::Heartbeat(Heartbeat {
                commit: LogIndex(c),
                read_round: r,
                acknowledged: LogIndex(c),
                acknowledged_term: Term(t),
                commit_term: Term(t),
                quiesce: false,
            })
        }),
        (any::<u64>(), proptest::option::of(number())).prop_map(|(r, short)| {
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: r,
                short_of_commit: short.map(LogIndex),
            })
        }),
        snapshot().prop_map(|snapshot| MessageBody::InstallSnapshot(Box::new(snapshot))),
        Just(MessageBody::TimeoutNow),
        any::<u64>().prop_map(|ctx| MessageBody::ReadIndexRequest { ctx }),
        (any::<u64>(), number()).prop_map(|(ctx, i)| MessageBody::ReadIndexResponse {
            ctx,
            index: LogIndex(i)
        }),
        vec(payload(), 0..4).prop_map(|data| MessageBody::ForwardProposal { data }),
        (snapshot(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(snapshot, offset, total, checksum)| MessageBody::SnapshotChunk(Box::new(
                SnapshotChunk {
                    meta: snapshot.meta,
                    offset,
                    total,
                    checksum,
                    data: snapshot.data,
                }
            ))
        ),
        (number(), any::<u64>(), any::<bool>()).prop_map(|(i, received, gap)| {
            MessageBody::SnapshotAck {
                index: LogIndex(i),
                received,
                gap,
            }
        }),
    ]
}

pub fn envelope() -> impl Strategy<Value = Envelope> {
    (any::<u32>(), any::<u64>(), any::<u64>(), number(), body()).prop_map(
        |(g, from, to, term, body)| Envelope {
            group: GroupId(g),
            message: Message {
                from: NodeId(from),
                to: NodeId(to),
                term: Term(term),
                body,
            },
        },
    )
}

pub fn batch() -> impl Strategy<Value = Vec<Envelope>> {
    vec(envelope(), 1..8)
}

/// One message of every kind, each of another group, with non-default fields.
pub fn one_of_every_kind() -> Vec<Envelope> {
    let entry = |index: u64, data: &'static [u8]| Entry {
        term: Term(3),
        index: LogIndex(index),
        kind: EntryKind::Normal,
        data: Bytes::from_static(data),
    };
    let bodies = vec![
        MessageBody::AppendRequest(AppendRequest {
            prev_log_index: LogIndex(9),
            prev_log_term: Term(2),
            entries: vec![entry(10, b"alpha"), entry(11, b""), entry(12, b"gamma")].into(),
            commit: LogIndex(8),
        }),
        MessageBody::AppendResponse(AppendResponse {
            index: LogIndex(12),
            reject: true,
            reject_hint: LogIndex(5),
            hint_term: Term(2),
        }),
        MessageBody::PreVoteRequest(VoteRequest {
            last_log_index: LogIndex(7),
            last_log_term: Term(2),
            transfer: false,
        }),
        MessageBody::PreVoteResponse(VoteResponse { reject: true }),
        MessageBody::VoteRequest(VoteRequest {
            last_log_index: LogIndex(7),
            last_log_term: Term(2),
            transfer: true,
        }),
        MessageBody::VoteResponse(VoteResponse { reject: false }),
        MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(4),
            read_round: 6,
            acknowledged: LogIndex(4),
            acknowledged_term: Term(3),
            commit_term: Term(3),
            quiesce: false,
        }),
        MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(4),
            read_round: 7,
            acknowledged: LogIndex(9),
            acknowledged_term: Term(5),
            commit_term: Term(2),
            quiesce: false,
        }),
        MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: 6,
            short_of_commit: None,
        }),
        MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: 7,
            short_of_commit: Some(LogIndex(3)),
        }),
        MessageBody::InstallSnapshot(Box::new(Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(100),
                term: Term(4),
                conf_state: ConfState {
                    voters: vec![NodeId(1), NodeId(2)],
                    voters_outgoing: vec![NodeId(3)],
                    learners: vec![NodeId(4)],
                    learners_next: vec![NodeId(3)],
                    auto_leave: true,
                },
            },
            data: Bytes::from_static(b"snapshot bytes"),
        })),
        MessageBody::TimeoutNow,
        MessageBody::ReadIndexRequest { ctx: 77 },
        MessageBody::ReadIndexResponse {
            ctx: 77,
            index: LogIndex(12),
        },
        MessageBody::ForwardProposal {
            data: vec![Bytes::from_static(b"p1"), Bytes::from_static(b"p2")],
        },
        MessageBody::SnapshotChunk(Box::new(SnapshotChunk {
            meta: SnapshotMeta {
                index: LogIndex(40),
                term: Term(3),
                conf_state: ConfState {
                    voters: vec![NodeId(1), NodeId(2), NodeId(3)],
                    ..ConfState::default()
                },
            },
            offset: 1 << 20,
            total: 3 << 20,
            checksum: 0xdead_beef,
            data: Bytes::from_static(b"chunk bytes"),
        })),
        MessageBody::SnapshotAck {
            index: LogIndex(40),
            received: 2 << 20,
            gap: true,
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Envelope {
            group: GroupId(i as u32 * 7 + 1),
            message: Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(5),
                body,
            },
        })
        .collect()
}

/// The leader of term 2 appends its empty entry 2 after the bootstrap entry 1, committing
/// up to `commit`.
pub fn empty_entry_2(commit: LogIndex) -> AppendRequest {
    AppendRequest {
        prev_log_index: LogIndex(1),
        prev_log_term: Term(1),
        entries: [Entry {
            term: Term(2),
            index: LogIndex(2),
            kind: EntryKind::Empty,
            data: Default::default(),
        }]
        .into(),
        commit,
    }
}
