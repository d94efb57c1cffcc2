//! Round trips through the wire format: what a node encodes, its peer decodes unchanged, and
//! the payloads it decodes are borrowed from the receive buffer.

mod common;

use bytes::Bytes;
use cohort::raft::MessageBody;
use cohort::raft::NodeId;
use cohort::wire::{ClusterId, DecodedFrame, FrameEncoder, Handshake, decode_frame, fb};
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
    assert_eq!(decoded, DecodedFrame::Raft(envelopes));
}

/// Goal: decoding copies no payload. Method: every entry, snapshot and proposal payload of a
/// decoded frame must point into the frame's own buffer.
#[test]
fn decoded_payloads_borrow_the_receive_buffer() {
    let frame = encode(&common::messages::one_of_every_kind());
    let DecodedFrame::Raft(envelopes) = decode_frame(&frame).expect("valid frame") else {
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

/// Goal: the handshake carries who is calling. Method: encode, decode, compare.
#[test]
fn handshake_round_trips() {
    let handshake = Handshake::current(ClusterId(0xC0FFEE), NodeId(3), 1);
    let mut encoder = FrameEncoder::new();
    encoder.encode_handshake(&handshake).expect("encodes");
    let decoded = decode_frame(&Bytes::from(encoder.to_frame_vec())).expect("valid frame");
    assert_eq!(decoded, DecodedFrame::Handshake(handshake));
}

/// Goal: client frames verify and read back in place. Method: a batch with a put and a
/// linearizable get, opened with `open_frame`.
#[test]
fn client_request_batch_verifies_and_reads_in_place() {
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_with(|fbb| {
            let key = fbb.create_vector(b"key");
            let value = fbb.create_vector(b"value");
            let put = fb::Put::create(
                fbb,
                &fb::PutArgs {
                    key: Some(key),
                    value: Some(value),
                },
            );
            let put = fb::OperationItem::create(
                fbb,
                &fb::OperationItemArgs {
                    operation_type: fb::Operation::Put,
                    operation: Some(put.as_union_value()),
                },
            );
            let key = fbb.create_vector(b"key");
            let get = fb::Get::create(fbb, &fb::GetArgs { key: Some(key) });
            let get = fb::OperationItem::create(
                fbb,
                &fb::OperationItemArgs {
                    operation_type: fb::Operation::Get,
                    operation: Some(get.as_union_value()),
                },
            );
            let operations = fbb.create_vector(&[put, get]);
            let request = fb::ClientRequest::create(
                fbb,
                &fb::ClientRequestArgs {
                    client_id: 42,
                    sequence: 7,
                    consistency: fb::ReadConsistency::Lease,
                    first_unacked: 5,
                    operations: Some(operations),
                },
            );
            let requests = fbb.create_vector(&[request]);
            let batch = fb::ClientRequestBatch::create(
                fbb,
                &fb::ClientRequestBatchArgs {
                    requests: Some(requests),
                },
            );
            (fb::FrameBody::ClientRequestBatch, batch.as_union_value())
        })
        .expect("encodes");
    let frame = encoder.to_frame_vec();
    assert_eq!(
        decode_frame(&Bytes::from(frame.clone())),
        Ok(DecodedFrame::ClientRequests)
    );
    let root = cohort::wire::frame::open_frame(&frame).expect("verifies");
    let request = root
        .body_as_client_request_batch()
        .and_then(|b| b.requests())
        .expect("requests")
        .get(0);
    assert_eq!((request.client_id(), request.sequence()), (42, 7));
    assert_eq!(request.consistency(), fb::ReadConsistency::Lease);
    let operations = request.operations().expect("operations");
    let put = operations.get(0).operation_as_put().expect("a put");
    assert_eq!(put.value().map(|v| v.bytes()), Some(&b"value"[..]));
    assert_eq!(operations.get(1).operation_type(), fb::Operation::Get);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Goal: any batch of any messages of any groups round-trips exactly.
    #[test]
    fn random_batches_round_trip(batch in common::messages::batch()) {
        let decoded = decode_frame(&encode(&batch)).expect("valid frame");
        prop_assert_eq!(decoded, DecodedFrame::Raft(batch));
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
