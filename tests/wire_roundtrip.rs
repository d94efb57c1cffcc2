//! Round trips through the wire format: what a node encodes, its peer decodes unchanged, and
//! the payloads it decodes are borrowed from the receive buffer.

mod common;

use bytes::Bytes;
use cohort::raft::MessageBody;
use cohort::raft::NodeId;
use cohort::wire::{
    ClusterId, DecodedFrame, FrameEncoder, Handshake, SenderSays, decode_frame, fb,
};
use proptest::prelude::*;

fn encode(envelopes: &[cohort::wire::Envelope]) -> Bytes {
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_raft(envelopes.iter())
        .expect("a small batch encodes");
    Bytes::from(encoder.to_frame_vec())
}

/// Goal: every message kind survives encode → decode. Method: one message of each kind in
/// one frame, each of a different group; also checks that the fixture names every kind.
#[test]
fn every_message_kind_round_trips() {
    let envelopes = common::messages::one_of_every_kind();
    let kinds: std::collections::BTreeSet<_> =
        envelopes.iter().map(|e| e.message.body.name()).collect();
    assert_eq!(
        kinds.len(),
        15,
        "the fixture must cover every MessageBody variant"
    );
    let decoded = decode_frame(&encode(&envelopes)).expect("valid frame");
    assert_eq!(
        decoded,
        DecodedFrame::Raft {
            envelopes,
            sender: SenderSays::default(),
        }
    );
}

/// Goal: a frame packed with messages of any one kind passes the verifier's bounds, which
/// grow with the frame's size (`verifier_options`), with room to spare. Method: 3,000 copies
/// of each kind in one frame (the densest in tables and in vtables counted again) verify
/// under the bounds of a body a fifth smaller.
#[test]
fn frames_full_of_any_one_kind_verify_with_room_to_spare() {
    for kind in common::messages::one_of_every_kind() {
        let copies: Vec<cohort::wire::Envelope> = (0..3000)
            .map(|group| cohort::wire::Envelope {
                group: cohort::raft::GroupId(group),
                message: kind.message.clone(),
            })
            .collect();
        let frame = encode(&copies);
        let body = &frame[cohort::wire::limits::FRAME_HEADER_BYTES..];
        let tighter = cohort::wire::frame::verifier_options(body.len() * 4 / 5);
        let verified = flatbuffers::root_with_opts::<fb::Frame>(&tighter, body);
        assert!(
            verified.is_ok(),
            "{}: {verified:?}",
            kind.message.body.name()
        );
        assert!(decode_frame(&frame).is_ok());
    }
}

/// Goal (found in review): a forwarded batch of empty commands, whose proposals are empty
/// tables (8 bytes each with their offsets, the least a table takes), passes the verifier:
/// its bound of one table per 16 bytes refused batches of about 135 or more.
#[test]
fn a_forwarded_batch_of_empty_commands_verifies() {
    let mut envelope = common::messages::one_of_every_kind()
        .into_iter()
        .find(|e| matches!(e.message.body, MessageBody::ForwardProposal { .. }))
        .expect("the fixture has one");
    envelope.message.body = MessageBody::ForwardProposal {
        data: vec![Bytes::new(); 2_000],
    };
    let decoded = decode_frame(&encode(std::slice::from_ref(&envelope)));
    let Ok(DecodedFrame::Raft { envelopes, .. }) = decoded else {
        panic!("{decoded:?}");
    };
    assert_eq!(envelopes, [envelope]);
}

/// Goal: a core whose log cannot grow, whose key-value state holds its quota, or whose
/// clients relay, says so in every batch until it no longer does. Method: one encoder, told
/// each of the eight states in turn, encodes a batch in each; each decodes with what it was
/// told.
#[test]
fn the_sender_says_what_it_says_of_itself_in_every_batch() {
    let envelopes = common::messages::one_of_every_kind();
    let mut encoder = FrameEncoder::new();
    for bits in [1, 3, 7, 6, 4, 5, 2, 0] {
        let says = SenderSays {
            log_full: bits & 1 != 0,
            kv_full: bits & 2 != 0,
            clients_relay: bits & 4 != 0,
        };
        encoder.set_sender(says);
        encoder.encode_raft(envelopes.iter()).expect("encodes");
        let frame = Bytes::from(encoder.to_frame_vec());
        let Ok(DecodedFrame::Raft { sender, .. }) = decode_frame(&frame) else {
            panic!("expected a Raft frame");
        };
        assert_eq!(sender, says);
    }
}

/// Goal: decoding copies no payload. Method: every entry, snapshot and proposal payload of a
/// decoded frame must point into the frame's own buffer.
#[test]
fn decoded_payloads_borrow_the_receive_buffer() {
    let frame = encode(&common::messages::one_of_every_kind());
    let DecodedFrame::Raft { envelopes, .. } = decode_frame(&frame).expect("valid frame") else {
        panic!("expected a Raft frame");
    };
    let range = frame.as_ptr_range();
    let inside = |data: &Bytes| data.is_empty() || range.contains(&data.as_ptr());
    let mut checked = 0;
    for envelope in &envelopes {
        let payloads: Vec<&Bytes> = match &envelope.message.body {
            MessageBody::AppendRequest(append) => append.entries.iter().map(|e| &e.data).collect(),
            MessageBody::InstallSnapshot(snapshot) => vec![&snapshot.data],
            MessageBody::SnapshotChunk(chunk) => vec![&chunk.data],
            MessageBody::ForwardProposal { data } => data.iter().collect(),
            _ => vec![],
        };
        for payload in payloads {
            assert!(
                inside(payload),
                "payload {payload:?} was copied out of the frame"
            );
            checked += usize::from(!payload.is_empty());
        }
    }
    assert!(checked >= 5, "the fixture must carry non-empty payloads");
}

/// Goal (found in review): a client frame other than a request batch (here a topology
/// request, sent to a peer port by mistake) is named as what it is, not as an unknown tag.
#[test]
fn a_topology_request_decodes_as_client_traffic_named_by_its_body() {
    let mut encoder = FrameEncoder::new();
    cohort::proto::topology::encode_topology_request(&mut encoder).expect("encodes");
    assert_eq!(
        decode_frame(&Bytes::from(encoder.to_frame_vec())),
        Ok(DecodedFrame::Client {
            body: "TopologyRequest"
        })
    );
}

/// Goal: the handshake carries who is calling. Method: encode, decode, compare.
#[test]
fn handshake_round_trips() {
    let handshake = Handshake {
        incarnation: 0x1234_5678_9ABC_DEF0,
        incarnation_of_receiver: u64::MAX,
        start: 7,
        start_of_receiver: 1 << 40,
        layout: cohort::wire::Layout {
            cores: 16,
            groups: 4096,
            founders: 0xFEDC_BA98_7654_3210,
        },
        timing: cohort::wire::Timing {
            tick_us: 2_500,
            election_ticks: 40,
            lease_reads: true,
        },
        receiver: NodeId(7),
        ..Handshake::current(ClusterId(0xC0FFEE), NodeId(3), 1)
    };
    let round_trip = |handshake: Handshake| {
        let mut encoder = FrameEncoder::new();
        encoder.encode_handshake(&handshake).expect("encodes");
        let decoded = decode_frame(&Bytes::from(encoder.to_frame_vec())).expect("valid frame");
        assert_eq!(decoded, DecodedFrame::Handshake(handshake));
    };
    round_trip(handshake);
    // A probe, and the answer to a removed node.
    round_trip(Handshake {
        probe: true,
        ..handshake
    });
    round_trip(Handshake::removed(
        ClusterId(0xC0FFEE),
        (NodeId(3), 1),
        NodeId(7),
    ));
}

/// Goal: client frames verify and read back in place. Method: a request with a put and a
/// get, encoded by the client's encoder and opened with `open_frame`: its columns hold the
/// request's fields and the operations' bytes, back to back.
#[test]
fn client_request_batch_verifies_and_reads_in_place() {
    use cohort::kv::{Command, Op};
    use cohort::proto::client::{Consistency, Request, encode_requests};
    use smallvec::smallvec;
    let request = Request {
        forward_to: 0,
        command: Command {
            client_id: 42,
            sequence: 7,
            first_unacked: 5,
            ops: smallvec![
                Op::Put {
                    key: Bytes::from_static(b"key"),
                    value: Bytes::from_static(b"value"),
                },
                Op::Get {
                    key: Bytes::from_static(b"key"),
                },
            ],
        },
        consistency: Consistency::Lease,
    };
    let mut encoder = FrameEncoder::new();
    encode_requests(&mut encoder, [&request]).expect("encodes");
    let frame = encoder.to_frame_vec();
    assert_eq!(
        decode_frame(&Bytes::from(frame.clone())),
        Ok(DecodedFrame::Client {
            body: "ClientRequestBatch"
        })
    );
    let root = cohort::wire::frame::open_frame(&frame).expect("verifies");
    let batch = root.body_as_client_request_batch().expect("requests");
    let record = batch.records().expect("records").get(0);
    assert_eq!((record.client_id(), record.sequence()), (42, 7));
    assert_eq!(record.consistency(), fb::ReadConsistency::Lease);
    let ops = batch.ops().expect("ops");
    assert_eq!(record.ops_end(), 2);
    assert_eq!(ops.get(0).kind(), fb::OpKind::Put);
    assert_eq!(ops.get(1).kind(), fb::OpKind::Get);
    let data = batch.data().expect("data").bytes();
    let put = ops.get(0);
    let value = &data[put.expected_end() as usize..put.value_end() as usize];
    assert_eq!(value, b"value");
    assert_eq!(data, b"keyvaluekey");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Goal: any batch of any messages of any groups round-trips exactly.
    #[test]
    fn random_batches_round_trip(batch in common::messages::batch()) {
        let decoded = decode_frame(&encode(&batch)).expect("valid frame");
        let expected = DecodedFrame::Raft {
            envelopes: batch,
            sender: SenderSays::default(),
        };
        prop_assert_eq!(decoded, expected);
    }
}

/// Goal: the in-place frame the transport writes is exactly the frame, and writing a header
/// into the builder's free space leaves no trace in later frames. Method: encode batches of
/// every kind with one reused encoder, taking each frame in place, and compare with a fresh
/// encoder's copy of the same batch.
#[test]
fn frames_in_place_equal_copied_frames_and_leave_no_trace() {
    let envelopes = common::messages::one_of_every_kind();
    let mut reused = FrameEncoder::new();
    for round in 0..envelopes.len() {
        let batch = &envelopes[..=round];
        reused.encode_raft(batch.iter()).expect("encodes");
        let copied = reused.to_frame_vec();
        let in_place = reused.frame_in_place().expect("room in front").to_vec();
        assert_eq!(in_place, copied);
        assert_eq!(
            in_place,
            encode(batch).to_vec(),
            "same bytes as a fresh encoder"
        );
    }
}
