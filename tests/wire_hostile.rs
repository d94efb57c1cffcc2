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

/// Goal: a term or log index no cluster reaches (one step from overflowing the core's
/// `+ 1`) is refused at decoding, from a frame otherwise sound. Method: each of a few fields
/// set just above the bound, in a frame of every message kind.
#[test]
fn a_term_or_index_beyond_any_cluster_is_rejected() {
    use cohort::raft::{LogIndex, MessageBody, Term};
    use cohort::wire::RAFT_NUMBER_MAX;
    let over = RAFT_NUMBER_MAX + 1;
    type Breakage = fn(&mut MessageBody, &mut Term, u64) -> bool;
    let breakages: [(&str, Breakage); 4] = [
        ("term", |_, term, over| {
            *term = Term(over);
            true
        }),
        ("prev_log_index", |body, _, over| match body {
            MessageBody::AppendRequest(append) => {
                append.prev_log_index = LogIndex(over);
                true
            }
            _ => false,
        }),
        ("index", |body, _, over| match body {
            MessageBody::AppendResponse(response) => {
                response.index = LogIndex(over);
                true
            }
            _ => false,
        }),
        ("last_log_term", |body, _, over| match body {
            MessageBody::VoteRequest(vote) => {
                vote.last_log_term = Term(over);
                true
            }
            _ => false,
        }),
    ];
    let sound = common::messages::one_of_every_kind();
    assert!(decode_frame(&Bytes::from(encode(&sound))).is_ok());
    for (what, breakage) in breakages {
        let mut envelopes = sound.clone();
        let broken = envelopes.iter_mut().any(|envelope| {
            let message = &mut envelope.message;
            breakage(&mut message.body, &mut message.term, over)
        });
        assert!(broken, "no message has {what}");
        match decode_frame(&Bytes::from(encode(&envelopes))) {
            Err(DecodeError::Content(ContentError::NumberTooLarge {
                what: said, value, ..
            })) => {
                assert_eq!((said, value), (what, over));
            }
            other => panic!("{what} above the bound: {other:?}"),
        }
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

/// `header` (its checksum rewritten over it and `body`) followed by `body`: a frame whose
/// checksum cannot help, as a broken or hostile peer that frames its own bytes sends.
fn rechecksummed(mut header: [u8; FRAME_HEADER_BYTES], body: &[u8]) -> Bytes {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..]);
    hasher.update(body);
    header[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    Bytes::from([&header[..], body].concat())
}

/// Goal: each check of the header holds on its own, behind a valid checksum: a version this
/// build does not speak, reserved bytes not zero, a body too short for a flatbuffer, and a
/// body cut short with the length rewritten to match (every bit flip test passes on the
/// checksum alone, whatever these checks do). Method: a sound frame, then each change.
#[test]
fn header_checks_refuse_what_a_valid_checksum_covers() {
    let frame = encode(&common::messages::one_of_every_kind());
    let header: [u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES].try_into().unwrap();
    let body = &frame[FRAME_HEADER_BYTES..];
    let frame_error = |frame: Bytes| match decode_frame(&frame) {
        Err(DecodeError::Frame(error)) => error,
        other => panic!("refused as a frame: {other:?}"),
    };
    assert!(decode_frame(&rechecksummed(header, body)).is_ok());
    let mut version = header;
    version[8] = 2;
    assert_eq!(
        frame_error(rechecksummed(version, body)),
        FrameError::VersionUnknown { version: 2 }
    );
    for at in 9..FRAME_HEADER_BYTES {
        let mut reserved = header;
        reserved[at] = 1;
        assert_eq!(
            frame_error(rechecksummed(reserved, body)),
            FrameError::ReservedNotZero
        );
    }
    for length in [0usize, 4, 7] {
        let mut small = header;
        small[0..4].copy_from_slice(&(length as u32).to_le_bytes());
        assert_eq!(
            frame_error(rechecksummed(small, &body[..length])),
            FrameError::TooSmall {
                length_bytes: length as u64
            }
        );
    }
    for length in (8..body.len()).step_by(3) {
        let mut cut = header;
        cut[0..4].copy_from_slice(&(length as u32).to_le_bytes());
        let result = decode_frame(&rechecksummed(cut, &body[..length]));
        assert!(result.is_err(), "a body cut to {length} bytes: {result:?}");
    }
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

type Builder = flatbuffers::FlatBufferBuilder<'static>;

/// A checksummed frame around the batch `build` writes: what a buggy or hostile peer could
/// send (a valid flatbuffer with a valid checksum).
fn batch_frame(build: impl FnOnce(&mut Builder) -> fb::RaftBatchArgs<'static>) -> Bytes {
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_with(|fbb| {
            let args = build(fbb);
            let batch = fb::RaftBatch::create(fbb, &args);
            (fb::FrameBody::RaftBatch, batch.as_union_value())
        })
        .expect("a small frame");
    Bytes::from(encoder.to_frame_vec())
}

fn entry_headers(data_ends: &[u32]) -> Vec<fb::EntryHeader> {
    data_ends
        .iter()
        .enumerate()
        .map(|(i, &end)| fb::EntryHeader::new(i as u64 + 1, 1, end, fb::EntryKind::Normal))
        .collect()
}

fn append_record(entries_end: u32) -> fb::AppendRecord {
    fb::AppendRecord::new(1, 2, 1, 0, 0, 0, 0, entries_end)
}

/// A batch of appends in columns: `appends` gives each append's `entries_end`, `data_ends`
/// the entries' payload ends in a data column of `data_bytes`.
fn columns_frame(appends: &[u32], data_ends: &[u32], data_bytes: usize) -> Bytes {
    batch_frame(|fbb| fb::RaftBatchArgs {
        order: Some(fbb.create_vector(&vec![fb::MessageColumn::Append; appends.len()])),
        appends: Some(
            fbb.create_vector(
                &appends
                    .iter()
                    .map(|&end| append_record(end))
                    .collect::<Vec<_>>(),
            ),
        ),
        append_entries: Some(fbb.create_vector(&entry_headers(data_ends))),
        append_data: Some(fbb.create_vector(&vec![7u8; data_bytes])),
        ..Default::default()
    })
}

/// Goal (found in review): a frame cannot decode into far more than its size by pointing
/// many offsets at one table. Method: 16,384 offsets to one append of 60 entries, a frame of
/// about 66 KiB, which decoded into a million entries (about 55 MiB) when the verifier's
/// bounds were those of the largest frame; it is refused as malformed. Two copies decode.
#[test]
fn a_frame_of_many_offsets_to_one_append_is_refused() {
    let frame = table_appends_frame(&[0; 60], 0, 16_384);
    assert!(frame.len() < 70 << 10, "{} bytes", frame.len());
    assert!(
        matches!(
            decode_frame(&frame),
            Err(DecodeError::Frame(FrameError::Malformed { .. }))
        ),
        "{:?}",
        decode_frame(&frame).map(|_| "decoded")
    );
    assert_eq!(appends(&table_appends_frame(&[0; 60], 0, 2)).len(), 2);
}

/// A batch whose `messages` are `copies` offsets to one append as a table (protocol 2's
/// form, still read) of entries ending at `data_ends` in `data_bytes`. Many copies make a
/// valid flatbuffer of a few bytes a copy that decodes, copy by copy, into all their entries.
fn table_appends_frame(data_ends: &[u32], data_bytes: usize, copies: usize) -> Bytes {
    batch_frame(|fbb| {
        let entries = Some(fbb.create_vector(&entry_headers(data_ends)));
        let data = Some(fbb.create_vector(&vec![7u8; data_bytes]));
        let append = fb::AppendRequest::create(
            fbb,
            &fb::AppendRequestArgs {
                entries,
                data,
                position: Some(&fb::AppendPosition::new(0, 0, 0)),
            },
        );
        let message = fb::RaftMessage::create(
            fbb,
            &fb::RaftMessageArgs {
                header: Some(&fb::RaftHeader::new(1, 2, 1, 0)),
                body_type: fb::RaftBody::AppendRequest,
                body: Some(append.as_union_value()),
            },
        );
        fb::RaftBatchArgs {
            messages: Some(fbb.create_vector(&vec![message; copies])),
            ..Default::default()
        }
    })
}

fn appends(frame: &Bytes) -> Vec<cohort::raft::AppendRequest> {
    let decoded = decode_frame(frame).expect("well-formed");
    let cohort::wire::DecodedFrame::Raft { envelopes, .. } = decoded else {
        panic!("a raft batch")
    };
    envelopes
        .into_iter()
        .map(|envelope| match envelope.message.body {
            cohort::raft::MessageBody::AppendRequest(append) => append,
            other => panic!("an append, not {other:?}"),
        })
        .collect()
}

fn payload_lengths(append: &cohort::raft::AppendRequest) -> Vec<usize> {
    append.entries.iter().map(|e| e.data.len()).collect()
}

/// Goal: an append's entries can only name payload runs inside their data vector, in order,
/// both in a batch's columns and in the table form. Method: hand-built frames (valid
/// flatbuffers, valid checksums) with runs past the end or running backwards are refused
/// with a content error; well-formed ones decode to the runs.
#[test]
fn entry_payload_runs_outside_the_data_are_refused() {
    for (ends, data_bytes) in [
        (&[5u32, 11][..], 10),
        (&[6, 4][..], 10),
        (&[u32::MAX][..], 0),
    ] {
        let entries = ends.len() as u32;
        for frame in [
            columns_frame(&[entries], ends, data_bytes),
            table_appends_frame(ends, data_bytes, 1),
        ] {
            let result = decode_frame(&frame);
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
    }
    // Bytes no entry takes are refused in the table form too.
    let result = decode_frame(&table_appends_frame(&[0, 4], 10, 1));
    assert_eq!(
        result,
        Err(DecodeError::Content(ContentError::LeftOver {
            column: "append data",
            items: 6
        }))
    );
    let decoded = appends(&table_appends_frame(&[0, 4, 4, 10], 10, 1));
    assert_eq!(payload_lengths(&decoded[0]), [0, 4, 0, 6]);
    // In columns, the payload runs continue from one append to the next.
    let decoded = appends(&columns_frame(&[1, 1, 4], &[0, 4, 4, 10], 10));
    let lengths: Vec<Vec<usize>> = decoded.iter().map(payload_lengths).collect();
    assert_eq!(lengths, [vec![0], vec![], vec![4, 0, 6]]);
    let indexes: Vec<u64> = decoded[2].entries.iter().map(|e| e.index.0).collect();
    assert_eq!(indexes, [2, 3, 4]);
}

/// A batch with one snapshot chunk (offset 0) whose configuration `conf` builds, if any.
fn chunk_frame(conf: impl FnOnce(&mut Builder) -> Option<fb::ConfStateArgs<'static>>) -> Bytes {
    batch_frame(|fbb| {
        let conf_state = conf(fbb).map(|args| fb::ConfState::create(fbb, &args));
        let data = Some(fbb.create_vector(&[7u8; 16]));
        let chunk = fb::SnapshotChunk::create(
            fbb,
            &fb::SnapshotChunkArgs {
                index: 10,
                term: 1,
                conf_state,
                offset: 0,
                total: 16,
                checksum: 0,
                data,
            },
        );
        let message = fb::RaftMessage::create(
            fbb,
            &fb::RaftMessageArgs {
                header: Some(&fb::RaftHeader::new(1, 2, 1, 0)),
                body_type: fb::RaftBody::SnapshotChunk,
                body: Some(chunk.as_union_value()),
            },
        );
        fb::RaftBatchArgs {
            messages: Some(fbb.create_vector(&[message])),
            ..Default::default()
        }
    })
}

/// Goal: a snapshot's configuration from a peer is one a group could run on. Before, one
/// left out read as a configuration with no voters, which a follower stored and installed:
/// its group could never elect it again, and it saw no members. Method: chunks with no
/// configuration, no voters, voters out of order or twice, or node 0, are refused; a
/// well-formed one decodes.
#[test]
fn a_snapshot_without_a_configuration_a_group_could_run_on_is_refused() {
    let ids = |fbb: &mut Builder, ids: &[u64]| Some(fbb.create_vector(ids));
    let refused = |frame: Bytes, what: &str| {
        let result = decode_frame(&frame);
        assert!(
            matches!(
                result,
                Err(DecodeError::Content(ContentError::ConfStateInvalid { .. }))
            ),
            "{what}: {result:?}"
        );
    };
    refused(chunk_frame(|_| None), "no configuration");
    for (voters, learners) in [
        (&[][..], &[4u64][..]),
        (&[2, 1], &[]),
        (&[1, 1, 2], &[]),
        (&[0, 1, 2], &[]),
        (&[1, 2, 3], &[5, 4]),
    ] {
        let frame = chunk_frame(|fbb| {
            Some(fb::ConfStateArgs {
                voters: ids(fbb, voters),
                learners: ids(fbb, learners),
                ..Default::default()
            })
        });
        refused(frame, &format!("voters {voters:?}, learners {learners:?}"));
    }
    let good = chunk_frame(|fbb| {
        Some(fb::ConfStateArgs {
            voters: ids(fbb, &[1, 2, 3]),
            learners: ids(fbb, &[4]),
            ..Default::default()
        })
    });
    assert!(decode_frame(&good).is_ok());
}

/// Goal: an append in columns can only take entries inside the batch's entry column, in
/// order, and none are left over. Method: `entries_end`s past the column or running
/// backwards are refused, and so are entries or payload bytes no append takes.
#[test]
fn append_entry_ranges_outside_the_column_are_refused() {
    for (appends, data_ends, data_bytes, left) in [
        (&[1u32][..], &[1u32, 2][..], 2, ("append_entries", 1)),
        (&[2][..], &[1, 2][..], 3, ("append_data", 1)),
    ] {
        let result = decode_frame(&columns_frame(appends, data_ends, data_bytes));
        assert_eq!(
            result,
            Err(DecodeError::Content(ContentError::LeftOver {
                column: left.0,
                items: left.1
            })),
        );
    }
    for appends in [&[3u32][..], &[2, 1], &[u32::MAX]] {
        let result = decode_frame(&columns_frame(appends, &[1, 2], 2));
        assert!(
            matches!(
                result,
                Err(DecodeError::Content(ContentError::RunOutOfBounds {
                    column: "append_entries",
                    ..
                }))
            ),
            "appends ending at {appends:?} of 2 entries: {result:?}"
        );
    }
}

/// Goal: `order` and the columns agree exactly: every item is one message, no item is read
/// twice or left out, and an unknown column is refused. Method: hand-built batches that
/// break each rule.
#[test]
fn orders_that_disagree_with_the_columns_are_refused() {
    let response = fb::AppendResponseRecord::new(2, 1, 1, 5, 0, 0, 0, false);
    // Two appends named, one append and one response present: the second take runs dry.
    let exhausted = batch_frame(|fbb| fb::RaftBatchArgs {
        order: Some(fbb.create_vector(&[fb::MessageColumn::Append; 2])),
        appends: Some(fbb.create_vector(&[append_record(0)])),
        append_responses: Some(fbb.create_vector(&[response])),
        ..Default::default()
    });
    assert!(matches!(
        decode_frame(&exhausted),
        Err(DecodeError::Content(ContentError::ColumnExhausted {
            column: "appends",
            message_index: 1
        }))
    ));
    // One message named, two items present: one would be dropped unread.
    let extra = batch_frame(|fbb| fb::RaftBatchArgs {
        order: Some(fbb.create_vector(&[fb::MessageColumn::AppendResponse])),
        appends: Some(fbb.create_vector(&[append_record(0)])),
        append_responses: Some(fbb.create_vector(&[response])),
        ..Default::default()
    });
    assert!(matches!(
        decode_frame(&extra),
        Err(DecodeError::Content(ContentError::ColumnsMismatch {
            messages: 1,
            items: 2
        }))
    ));
    // Columns without an order: the order defaults to the tables alone, so they mismatch.
    let unordered = batch_frame(|fbb| fb::RaftBatchArgs {
        append_responses: Some(fbb.create_vector(&[response])),
        ..Default::default()
    });
    assert!(matches!(
        decode_frame(&unordered),
        Err(DecodeError::Content(ContentError::ColumnsMismatch {
            messages: 0,
            items: 1
        }))
    ));
    let unknown = batch_frame(|fbb| fb::RaftBatchArgs {
        order: Some(fbb.create_vector(&[fb::MessageColumn(9)])),
        append_responses: Some(fbb.create_vector(&[response])),
        ..Default::default()
    });
    assert!(matches!(
        decode_frame(&unknown),
        Err(DecodeError::Content(ContentError::UnionUnknown {
            union: "MessageColumn",
            tag: 9
        }))
    ));
    // The well-formed batch decodes.
    let good = batch_frame(|fbb| fb::RaftBatchArgs {
        order: Some(fbb.create_vector(&[fb::MessageColumn::AppendResponse])),
        append_responses: Some(fbb.create_vector(&[response])),
        ..Default::default()
    });
    assert!(decode_frame(&good).is_ok());
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

/// Goal: the column of heartbeats' acknowledged terms runs beside the heartbeats, one for
/// one, or is left out (a node before it); any other length is refused, not read as a term
/// of another heartbeat or as none. Method: batches of two heartbeats and 0 to 3 terms.
#[test]
fn heartbeat_terms_that_do_not_run_beside_the_heartbeats_are_refused() {
    let frame = |terms: Option<&[u64]>| {
        batch_frame(|fbb| fb::RaftBatchArgs {
            order: Some(fbb.create_vector(&[fb::MessageColumn::Heartbeat; 2])),
            heartbeats: Some(fbb.create_vector(&[
                fb::HeartbeatRecord::new(1, 2, 3, 4, 0, 0),
                fb::HeartbeatRecord::new(1, 2, 3, 4, 0, 1),
            ])),
            heartbeat_acknowledged_terms: terms.map(|terms| fbb.create_vector(terms)),
            ..Default::default()
        })
    };
    let terms_of = |frame: &Bytes| {
        let Ok(cohort::wire::DecodedFrame::Raft { envelopes, .. }) = decode_frame(frame) else {
            panic!("a raft batch")
        };
        let terms = envelopes.into_iter().map(|e| match e.message.body {
            cohort::raft::MessageBody::Heartbeat(h) => h.acknowledged_term.0,
            other => panic!("a heartbeat, not {other:?}"),
        });
        terms.collect::<Vec<_>>()
    };
    assert_eq!(terms_of(&frame(None)), [0, 0]);
    assert_eq!(terms_of(&frame(Some(&[3, 2]))), [3, 2]);
    for terms in [&[][..], &[3], &[3, 2, 1]] {
        let result = decode_frame(&frame(Some(terms)));
        assert!(
            matches!(
                result,
                Err(DecodeError::Content(ContentError::ColumnLengthWrong { .. }))
            ),
            "{terms:?}: {result:?}"
        );
    }
}
