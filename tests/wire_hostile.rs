//! Hostile input to the frame decoder: flipped bits, truncation, oversized lengths and
//! garbage are refused with an error, never a panic and never a wrong message.

mod common;

use bytes::Bytes;
use cohort::wire::frame::{FrameHeader, frame_header_for};
use cohort::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};
use cohort::wire::{ContentError, DecodeError, FrameEncoder, FrameError, decode_frame, fb};
use proptest::prelude::*;

fn encode(envelopes: &[cohort::wire::Envelope]) -> Vec<u8> {
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_raft(envelopes.iter())
        .expect("a small batch encodes");
    encoder.to_frame_vec()
}

fn flipped(frame: &[u8], bit: usize) -> Bytes {
    let mut frame = frame.to_vec();
    frame[bit / 8] ^= 1 << (bit % 8);
    Bytes::from(frame)
}

/// Goal: no single bit flip anywhere in a frame goes unnoticed. Method: flip every bit of a
/// frame carrying every message kind, one at a time; each must be refused.
#[test]
fn every_single_bit_flip_is_rejected() {
    let frame = encode(&common::messages::one_of_every_kind());
    for bit in 0..frame.len() * 8 {
        let result = decode_frame(&flipped(&frame, bit));
        assert!(
            result.is_err(),
            "flipping bit {bit} of {} went unnoticed: {result:?}",
            frame.len()
        );
    }
}

/// Goal: a frame cut short is never taken for a frame. Method: every strict prefix.
#[test]
fn every_truncation_is_rejected() {
    let frame = encode(&common::messages::one_of_every_kind());
    for length in 0..frame.len() {
        let result = decode_frame(&Bytes::copy_from_slice(&frame[..length]));
        assert!(
            result.is_err(),
            "a {length}-byte prefix was accepted: {result:?}"
        );
    }
}

/// Goal: an oversized length is refused from the header alone, before any body arrives
/// (so a receiver never allocates for it).
#[test]
fn oversized_length_is_rejected_from_the_header() {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&(FRAME_BODY_BYTES_MAX as u32 + 1).to_le_bytes());
    header[8] = 1;
    assert!(matches!(
        FrameHeader::parse(&header),
        Err(FrameError::TooLarge { .. })
    ));
    header[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        FrameHeader::parse(&header),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(
        FrameHeader::parse(&header[..FRAME_HEADER_BYTES - 1]),
        Ok(None)
    );
}

/// Goal: a correctly framed and checksummed body that is not a flatbuffer is refused by the
/// verifier (the checksum proves only that the bytes arrived as sent, not that they are sane).
#[test]
fn verifier_refuses_a_body_with_a_valid_checksum_but_no_flatbuffer() {
    let body = vec![0xFFu8; 64];
    let mut frame = frame_header_for(&body).to_vec();
    frame.extend_from_slice(&body);
    let result = decode_frame(&Bytes::from(frame));
    assert!(
        matches!(
            result,
            Err(DecodeError::Frame(FrameError::Malformed { .. }))
        ),
        "{result:?}"
    );
}

/// A checksummed frame with one append whose entries end their payloads at `data_ends` in a
/// data vector of `data_bytes`: what a buggy or hostile peer could send.
fn append_frame(data_ends: &[u32], data_bytes: usize) -> Bytes {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let headers: Vec<fb::EntryHeader> = data_ends
        .iter()
        .enumerate()
        .map(|(i, &end)| fb::EntryHeader::new(i as u64 + 1, 1, end, fb::EntryKind::Normal))
        .collect();
    let entries = Some(fbb.create_vector(&headers));
    let data = Some(fbb.create_vector(&vec![7u8; data_bytes]));
    let append = fb::AppendRequest::create(
        &mut fbb,
        &fb::AppendRequestArgs {
            entries,
            data,
            position: Some(&fb::AppendPosition::new(0, 0, 0)),
        },
    );
    let message = fb::RaftMessage::create(
        &mut fbb,
        &fb::RaftMessageArgs {
            header: Some(&fb::RaftHeader::new(1, 2, 1, 0)),
            body_type: fb::RaftBody::AppendRequest,
            body: Some(append.as_union_value()),
        },
    );
    let messages = Some(fbb.create_vector(&[message]));
    let batch = fb::RaftBatch::create(&mut fbb, &fb::RaftBatchArgs { messages });
    let frame = fb::Frame::create(
        &mut fbb,
        &fb::FrameArgs {
            body_type: fb::FrameBody::RaftBatch,
            body: Some(batch.as_union_value()),
        },
    );
    fbb.finish_minimal(frame);
    let body = fbb.finished_data();
    let mut bytes = frame_header_for(body).to_vec();
    bytes.extend_from_slice(body);
    Bytes::from(bytes)
}

/// Goal: an append's entries can only name payload runs inside its data vector, in order.
/// Method: hand-built frames (valid flatbuffers, valid checksums) with runs past the end or
/// running backwards are refused with a content error; well-formed ones decode to the runs.
#[test]
fn entry_payload_runs_outside_the_data_are_refused() {
    for (ends, data_bytes) in [
        (&[5u32, 11][..], 10),
        (&[6, 4][..], 10),
        (&[u32::MAX][..], 0),
    ] {
        let result = decode_frame(&append_frame(ends, data_bytes));
        assert!(
            matches!(
                result,
                Err(DecodeError::Content(
                    ContentError::EntryDataOutOfBounds { .. }
                ))
            ),
            "{ends:?} in {data_bytes} bytes: {result:?}"
        );
    }
    let decoded = decode_frame(&append_frame(&[0, 4, 4, 10], 10)).expect("well-formed");
    let cohort::wire::DecodedFrame::Raft(envelopes) = decoded else {
        panic!("a raft batch")
    };
    let cohort::raft::MessageBody::AppendRequest(append) = &envelopes[0].message.body else {
        panic!("an append")
    };
    let lengths: Vec<usize> = append.entries.iter().map(|e| e.data.len()).collect();
    assert_eq!(lengths, [0, 4, 0, 6]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Goal: random bytes never panic the decoder.
    #[test]
    fn random_garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&Bytes::from(garbage));
    }

    /// Goal: garbage that passes the checksum (a peer that frames correctly but lies in the
    /// body) reaches the verifier and still never panics.
    #[test]
    fn checksummed_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = frame_header_for(&body).to_vec();
        frame.extend_from_slice(&body);
        let _ = decode_frame(&Bytes::from(frame));
    }

    /// Goal: a valid body with random corruption, re-checksummed (the checksum cannot help),
    /// is refused or decoded, never a panic: the verifier and the conversion guard alone.
    #[test]
    fn corrupted_bodies_with_valid_checksums_never_panic(
        batch in common::messages::batch(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let frame = encode(&batch);
        let mut body = frame[FRAME_HEADER_BYTES..].to_vec();
        for (index, value) in edits {
            let at = index.index(body.len());
            body[at] = value;
        }
        let mut frame = frame_header_for(&body).to_vec();
        frame.extend_from_slice(&body);
        let _ = decode_frame(&Bytes::from(frame));
    }

    /// Goal: any single bit flip or truncation of any batch is refused.
    #[test]
    fn random_bit_flip_or_truncation_is_rejected(
        batch in common::messages::batch(),
        bit in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = encode(&batch);
        let bit = bit.index(frame.len() * 8);
        prop_assert!(decode_frame(&flipped(&frame, bit)).is_err(), "bit {} flip accepted", bit);
        let cut = cut.index(frame.len());
        prop_assert!(decode_frame(&Bytes::copy_from_slice(&frame[..cut])).is_err(), "prefix {} accepted", cut);
    }
}
