//! Recovery on open: scan every segment, verify every record, rebuild the group indexes, and
//! decide at the end of the log, by the table in `decision.rs`, whether to truncate or refuse.

use std::ops::RangeInclusive;

use bytes::Bytes;

use super::decision::{StopAction, StopFacts, decide};
use super::errors::WalOpenError;
use super::format::{
    BLOCK_BYTES, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RecordHeader, SEGMENT_HEADER_BYTES,
    SegmentHeaderState, decode_record, decode_record_within, decode_segment_header,
    next_in_block_after_zeros, record_salt, segment_header_key, segment_header_size,
};
use super::index::{EntryLoc, GroupLog, Groups};
use super::log::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, segment_size_valid};
use super::payload::{self, Payload};
use super::storage::{ReadCheckError, SegmentSyncer, Storage, zero_durably};

/// What recovery rebuilt.
pub struct Recovered {
    pub groups: Groups,
    /// Live segments, ascending; the last one is where appends go on. Empty for a new WAL.
    pub segments: Vec<u64>,
    /// Offset in the last segment where the next record goes.
    pub cursor: usize,
    /// The sequence number of the next record.
    pub next_lsn: u64,
    pub report: RecoveryReport,
    /// The WAL's key, from the newest segment header that states one (None: a new WAL, or
    /// one written only by formats without a key).
    pub key: Option<u64>,
    /// The last live segment's seq when its header states no key (it was written by a
    /// format without one, and appends go on there salted with the seq alone), else 0.
    pub unkeyed_through: u64,
}

/// What recovery saw and did, for the log line a node prints at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_scanned: usize,
    pub records_replayed: u64,
    /// The action at the end of the log (`EndOfLog` or `TruncateTornTail`) and its reason.
    pub end_action: Option<StopAction>,
    pub end_reason: &'static str,
    /// Segments after the end of the log that were removed (unused or unsynced).
    pub segments_discarded: Vec<u64>,
    /// The last segment held bytes after the end of the log (a torn write, or a recycled
    /// file's earlier life), so appends go on in a fresh segment: a later write over those
    /// bytes, torn in a crash, could combine with them into a record that verifies and
    /// carries the very lsn expected there (lsns restart at the end of the log).
    pub end_segment_retired: bool,
    /// Those bytes were zeroed in place and synced instead, as there was no room for a fresh
    /// segment (a full disk): no remains are left for a later torn write to combine with.
    pub end_tail_zeroed: bool,
}

/// Valid records found by scanning every aligned offset of a range.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    count: u64,
    durable_lsn_max: u64,
    /// End of the furthest valid record.
    end_offset: usize,
}

impl Found {
    fn merge(self, other: Found) -> Found {
        Found {
            count: self.count + other.count,
            durable_lsn_max: self.durable_lsn_max.max(other.durable_lsn_max),
            end_offset: self.end_offset.max(other.end_offset),
        }
    }
}

/// The lsns a record after a stop where `expected` was due can carry, in a log of
/// `segments`: from `expected` on, and no further than every byte of the log could hold
/// records. Any, where the stop came before the first record: a log whose first segments
/// were reclaimed starts at an lsn nothing here tells (its first record is the damaged one).
fn lsns_after(expected: Option<u64>, segments: &[Bytes]) -> RangeInclusive<u64> {
    let Some(from) = expected else {
        return 0..=u64::MAX;
    };
    let bytes: usize = segments.iter().map(Bytes::len).sum();
    from..=from.saturating_add((bytes / RECORD_HEADER_BYTES) as u64)
}

/// The salts a segment's records may be checksummed with (see `format::record_salt`).
#[derive(Clone, Copy, Debug)]
struct Salts {
    /// As its header states, or, where the header cannot say (zeros, damage), as the WAL's
    /// key makes it.
    main: u64,
    /// Where the header cannot say and the WAL has a key: the salt of a segment written
    /// before keys (the seq alone), which it may be too.
    unkeyed: Option<u64>,
}

impl Salts {
    fn of(bytes: &[u8], seq: u64, wal_key: Option<u64>) -> Salts {
        match decode_segment_header(bytes, seq) {
            SegmentHeaderState::Valid => Salts {
                main: record_salt(seq, segment_header_key(bytes)),
                unkeyed: None,
            },
            // The header of the file's earlier life (a recycle cut short): it holds no record
            // of this one, and a new life is always keyed, so its old bytes are checked as a
            // keyed segment's (a value that guessed this seq does not pass for a record).
            SegmentHeaderState::Stale { .. } => Salts {
                main: record_salt(seq, wal_key),
                unkeyed: None,
            },
            _ => Salts {
                main: record_salt(seq, wal_key),
                unkeyed: wal_key.map(|_| seq),
            },
        }
    }
}

/// The valid records at the aligned offsets of `bytes` from `from` on whose lsns lie in
/// `lsns` (see [`decode_record_within`]), under either of `salts`.
fn scan_for_valid(bytes: &[u8], salts: Salts, from: usize, lsns: &RangeInclusive<u64>) -> Found {
    let mut found = Found::default();
    let mut at = from;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        let valid = decode_record_within(bytes, at, salts.main, lsns).or_else(|| {
            let unkeyed = salts.unkeyed?;
            decode_record_within(bytes, at, unkeyed, lsns)
        });
        if let Some(header) = valid {
            found.count += 1;
            found.durable_lsn_max = found.durable_lsn_max.max(header.durable_lsn);
            found.end_offset = at + header.len_bytes as usize;
        }
        at += RECORD_ALIGN_BYTES;
    }
    found
}

/// Whether a segment's records cannot be checked in a log whose key no header states: its
/// own header, the only one that could, reads as zeros or is damaged (never a crash: a
/// header fits one sector and is synced before any record), and bytes other than zeros
/// follow it. Its records, keyed or not, could then go unnoticed, and with them synced
/// entries and votes.
fn unverifiable(bytes: &[u8], seq: u64) -> bool {
    matches!(
        decode_segment_header(bytes, seq),
        SegmentHeaderState::Garbage | SegmentHeaderState::Zero
    ) && !all_zero(&bytes[SEGMENT_HEADER_BYTES.min(bytes.len())..])
}

fn all_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    words.fold(0u64, |or, w| {
        or | u64::from_ne_bytes(w.try_into().expect("8 bytes"))
    }) == 0
        && tail.iter().all(|&b| b == 0)
}

fn io_error(file: String) -> impl FnOnce(std::io::Error) -> WalOpenError {
    move |source| WalOpenError::Io { file, source }
}

/// Recovers the WAL on `storage`. See the module doc of `wal` for the rules.
pub async fn recover<S: Storage>(storage: &mut S) -> Result<Recovered, WalOpenError> {
    let seqs = storage
        .list()
        .map_err(io_error("segment directory".into()))?;
    // Every byte of every segment is read below (records, and the rest to tell a torn tail
    // from a damaged middle): the device reads them here first, so that one it cannot read
    // is an error naming it, not a fault in the middle of the scan.
    for &seq in &seqs {
        storage.check_readable(seq).map_err(|error| match error {
            ReadCheckError::Unreadable { offset, source } => WalOpenError::Unreadable {
                file: storage.locate(seq),
                offset,
                source,
            },
            ReadCheckError::Other(source) => WalOpenError::Io {
                file: storage.locate(seq),
                source,
            },
        })?;
    }
    let segments: Vec<Bytes> = seqs
        .iter()
        .map(|&seq| storage.view(seq, 0..storage.size_bytes(seq) as usize))
        .collect();
    check_headers(storage, &seqs, &segments)?;
    let key = segments
        .iter()
        .rev()
        .find_map(|bytes| segment_header_key(bytes));
    let salts: Vec<Salts> = seqs
        .iter()
        .zip(&segments)
        .map(|(&seq, bytes)| Salts::of(bytes, seq, key))
        .collect();
    let mut recovered = Recovered {
        groups: Groups::default(),
        segments: Vec::new(),
        cursor: SEGMENT_HEADER_BYTES,
        next_lsn: 1,
        report: RecoveryReport::default(),
        key,
        unkeyed_through: 0,
    };
    if seqs.is_empty() {
        return Ok(recovered);
    }
    if key.is_none()
        && let Some(i) = (0..seqs.len()).find(|&i| unverifiable(&segments[i], seqs[i]))
    {
        return Err(WalOpenError::CorruptSegmentHeader {
            file: storage.locate(seqs[i]),
        });
    }
    if decode_segment_header(&segments[0], seqs[0]) != SegmentHeaderState::Valid {
        // An interrupted creation of the first segment leaves no record anywhere.
        let lsns = lsns_after(None, &segments);
        let any =
            (0..seqs.len()).any(|i| scan_for_valid(&segments[i], salts[i], 0, &lsns).count > 0);
        if any {
            return Err(WalOpenError::CorruptSegmentHeader {
                file: storage.locate(seqs[0]),
            });
        }
        drop(segments);
        discard_after(storage, &seqs, None, &mut recovered.report)?;
        return Ok(recovered);
    }
    let mut expected: Option<u64> = None;
    let mut i = 0;
    loop {
        let (seq, bytes) = (seqs[i], &segments[i]);
        recovered.report.segments_scanned += 1;
        let salt = salts[i].main;
        let stop = replay_segment(storage, (seq, salt), bytes, &mut expected, &mut recovered)?;
        let (facts, found_here) = stop_facts(&seqs, &segments, &salts, i, stop, expected);
        let row = decide(&facts);
        match row.action {
            StopAction::SegmentEnd => {
                i += 1;
                if decode_segment_header(&segments[i], seqs[i]) != SegmentHeaderState::Valid {
                    return Err(WalOpenError::CorruptSegmentHeader {
                        file: storage.locate(seqs[i]),
                    });
                }
            }
            StopAction::EndOfLog | StopAction::TruncateTornTail => {
                recovered.report.end_action = Some(row.action);
                recovered.report.end_reason = row.why;
                recovered.cursor = stop;
                recovered.next_lsn = expected.unwrap_or(1);
                if segment_header_key(&segments[i]).is_none() {
                    recovered.unkeyed_through = seq;
                }
                // Bytes after the end: a log that holds a record goes on in a fresh segment;
                // an empty one (a first checkpoint torn) has them zeroed instead, as a next
                // segment could not say where the log starts.
                let dirty = !all_zero(&segments[i][stop..]);
                recovered.report.end_segment_retired = dirty && expected.is_some();
                let mut erase = found_here;
                if dirty && expected.is_none() {
                    erase.end_offset = segments[i].len();
                }
                check_contiguous(storage, seqs[0], &recovered.groups)?;
                drop(segments);
                finish(storage, &seqs, i, stop, erase, &mut recovered).await?;
                return Ok(recovered);
            }
            StopAction::Refuse if facts.next_segment_continues => {
                return Err(WalOpenError::LogForks {
                    file: storage.locate(seq),
                    offset: stop as u64,
                    lsn: expected.unwrap_or(1),
                });
            }
            StopAction::Refuse => {
                let lsn = expected.unwrap_or(1);
                // One row refuses without a fork (see `decision`): a synced record damaged.
                let lost = format!(
                    "every record from lsn {lsn} on (a later record says the log was durable up \
                     to lsn {})",
                    later_durable(&segments, &salts, i, stop, expected).saturating_sub(1)
                );
                // Zeros to the segment's end, and a next segment that starts with no record
                // at all: the damage is most likely at that segment's start (a file whose
                // blocks the filesystem lost), not at this one's end (found in review).
                if let Some(why) = broken_start(&seqs, &segments, &salts, i, stop) {
                    return Err(WalOpenError::NextSegmentBroken {
                        file: storage.locate(seqs[i + 1]),
                        previous: storage.locate(seq),
                        previous_end: stop as u64,
                        lsn,
                        why,
                        lost,
                    });
                }
                return Err(WalOpenError::MidLogCorruption {
                    file: storage.locate(seq),
                    offset: stop as u64,
                    lsn,
                    lost,
                });
            }
            StopAction::Impossible => {
                panic!(
                    "recovery computed contradictory facts {facts:?} ({})",
                    row.why
                )
            }
        }
    }
}

/// Every group's live entries must start right after its snapshot: a hole means a segment
/// holding live entries was lost.
fn check_contiguous<S: Storage>(
    storage: &S,
    first_seq: u64,
    groups: &Groups,
) -> Result<(), WalOpenError> {
    let broken = groups.iter().filter(|(_, log)| !log.is_contiguous());
    match broken.min_by_key(|(group, _)| **group) {
        None => Ok(()),
        Some((group, log)) => Err(WalOpenError::Inconsistent {
            file: storage.locate(first_seq),
            offset: 0,
            reason: format!(
                "group {group}: entries start at {} but its snapshot ends at {}: entries \
                 between them are missing from the log",
                log.first_index(),
                log.snapshot.index
            ),
        }),
    }
}

/// Refuses versions we do not read and holes in the sequence of segments.
fn check_headers<S: Storage>(
    storage: &S,
    seqs: &[u64],
    segments: &[Bytes],
) -> Result<(), WalOpenError> {
    for (&seq, bytes) in seqs.iter().zip(segments) {
        match decode_segment_header(bytes, seq) {
            SegmentHeaderState::UnsupportedVersion { version } => {
                return Err(WalOpenError::UnsupportedVersion {
                    file: storage.locate(seq),
                    version,
                });
            }
            SegmentHeaderState::Valid if !segment_size_valid(segment_header_size(bytes)) => {
                return Err(WalOpenError::Inconsistent {
                    file: storage.locate(seq),
                    offset: 0,
                    reason: format!(
                        "its header gives a size of {} bytes, not a multiple of {BLOCK_BYTES} \
                         in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                        segment_header_size(bytes)
                    ),
                });
            }
            SegmentHeaderState::Valid if segment_header_size(bytes) != bytes.len() as u64 => {
                return Err(WalOpenError::SegmentSizeMismatch {
                    file: storage.locate(seq),
                    size_bytes: bytes.len() as u64,
                    size_bytes_in_header: segment_header_size(bytes),
                });
            }
            _ => {}
        }
    }
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(WalOpenError::MissingSegment {
                file: storage.locate(pair[0] + 1),
            });
        }
    }
    // One WAL has one key, in every header that states one (a recycled file's stale header
    // included: it is rewritten under our key, and `recover` takes the WAL's key from any
    // of them): a segment of another node's or core's WAL, its records checking out against
    // its own key, was read as ours, and could have our later segments dropped as past the
    // end of the log (found in review). Which of two is the stranger no header says.
    let keyed = |(&seq, bytes): (&u64, &Bytes)| Some((seq, segment_header_key(bytes)?));
    let mut keys = seqs.iter().zip(segments).rev().filter_map(keyed);
    if let Some((newest, key)) = keys.next()
        && let Some((seq, _)) = keys.find(|&(_, other)| other != key)
    {
        return Err(WalOpenError::Inconsistent {
            file: storage.locate(seq),
            offset: 32,
            reason: format!(
                "its header's key differs from that of {}: one of the two is a segment of \
                 another WAL (another node's or core's)",
                storage.locate(newest)
            ),
        });
    }
    Ok(())
}

/// Replays the records of one segment (its seq, and the salt of its records) that verify
/// and carry the expected lsn, skipping zeros to a block boundary where the next one starts
/// there; returns the offset where that stops.
fn replay_segment<S: Storage>(
    storage: &S,
    (seq, salt): (u64, u64),
    bytes: &[u8],
    expected: &mut Option<u64>,
    recovered: &mut Recovered,
) -> Result<usize, WalOpenError> {
    let mut at = SEGMENT_HEADER_BYTES;
    loop {
        let header = match decode_record(bytes, at, salt) {
            Some(header) if expected.is_none_or(|lsn| header.lsn == lsn) => header,
            _ => match expected.and_then(|lsn| next_in_block_after_zeros(bytes, at, salt, lsn)) {
                Some(boundary) => {
                    at = boundary;
                    continue;
                }
                None => break,
            },
        };
        let payload = &bytes[at + RECORD_HEADER_BYTES..at + header.len_bytes as usize];
        apply(&mut recovered.groups, seq, at, &header, payload).map_err(|reason| {
            WalOpenError::Inconsistent {
                file: storage.locate(seq),
                offset: at as u64,
                reason,
            }
        })?;
        recovered.report.records_replayed += 1;
        *expected = Some(header.lsn + 1);
        at += header.footprint_bytes();
    }
    Ok(at)
}

/// The facts of the decision table at `stop` in segment `i`, and the valid records found after
/// the stop in segment `i` itself.
fn stop_facts(
    seqs: &[u64],
    segments: &[Bytes],
    salts: &[Salts],
    i: usize,
    stop: usize,
    expected: Option<u64>,
) -> (StopFacts, Found) {
    let lsns = lsns_after(expected, segments);
    let here = scan_for_valid(&segments[i], salts[i], stop, &lsns);
    let next_first = (i + 1 < seqs.len())
        .then(|| {
            let (bytes, salts) = (&segments[i + 1], salts[i + 1]);
            decode_record(bytes, SEGMENT_HEADER_BYTES, salts.main)
                .or_else(|| decode_record(bytes, SEGMENT_HEADER_BYTES, salts.unkeyed?))
        })
        .flatten();
    let next_segment_continues = next_first.is_some_and(|h| Some(h.lsn) == expected);
    let later = match next_first {
        // The usual end of a full segment: the table's answer no longer depends on what the
        // later segments hold, and they are about to be replayed record by record, so skip
        // scanning them here (that would make opening quadratic in the segment count).
        Some(first) if next_segment_continues && here.count == 0 => Found {
            count: 1,
            durable_lsn_max: first.durable_lsn,
            end_offset: 0,
        },
        _ => (i + 1..seqs.len())
            .map(|j| scan_for_valid(&segments[j], salts[j], SEGMENT_HEADER_BYTES, &lsns))
            .fold(Found::default(), Found::merge),
    };
    let all = here.merge(later);
    let stop_end = (stop + RECORD_HEADER_BYTES).min(segments[i].len());
    let facts = StopFacts {
        next_segment_continues,
        valid_record_later_in_segment: here.count > 0,
        valid_record_later: all.count > 0,
        // A fresh WAL's records start at lsn 1: no record can prove anything below it.
        later_record_proves_durable: all.durable_lsn_max > expected.unwrap_or(1),
        stop_is_zero: segments[i]
            .get(stop..stop_end)
            .is_none_or(|b| b.iter().all(|&x| x == 0)),
    };
    (facts, here)
}

/// Why the segment after `i` does not go on from the log's end at `stop`, where nothing but
/// zeros follows `stop` in segment `i` and the next segment starts with no record that
/// verifies: None where the log ends elsewhere, or the next segment starts with a record.
fn broken_start(
    seqs: &[u64],
    segments: &[Bytes],
    salts: &[Salts],
    i: usize,
    stop: usize,
) -> Option<&'static str> {
    let next = segments.get(i + 1)?;
    if !all_zero(&segments[i][stop..]) {
        return None;
    }
    if decode_segment_header(next, seqs[i + 1]) != SegmentHeaderState::Valid {
        return Some(if all_zero(next) {
            "the whole file is zeros"
        } else {
            "its header is damaged"
        });
    }
    let salts = salts[i + 1];
    let first = decode_record(next, SEGMENT_HEADER_BYTES, salts.main)
        .or_else(|| decode_record(next, SEGMENT_HEADER_BYTES, salts.unkeyed?));
    first.is_none().then_some("its first record is damaged")
}

fn later_durable(
    segments: &[Bytes],
    salts: &[Salts],
    i: usize,
    stop: usize,
    expected: Option<u64>,
) -> u64 {
    let lsns = lsns_after(expected, segments);
    let mut found = scan_for_valid(&segments[i], salts[i], stop, &lsns);
    for j in i + 1..segments.len() {
        found = found.merge(scan_for_valid(
            &segments[j],
            salts[j],
            SEGMENT_HEADER_BYTES,
            &lsns,
        ));
    }
    found.durable_lsn_max
}

/// Ends the log at `stop` of segment `i`: erases valid records left after the stop (so a
/// later, shorter write never exposes them), makes the kept prefix durable (it may sit only
/// in the page cache after a process crash), then removes the later segments.
async fn finish<S: Storage>(
    storage: &mut S,
    seqs: &[u64],
    i: usize,
    stop: usize,
    found_here: Found,
    recovered: &mut Recovered,
) -> Result<(), WalOpenError> {
    // Oldest first, so that what is durable is always a prefix of the log (a record of the
    // last segment may state that earlier ones were durable: under `--sync never`, once
    // written). The erase after the earlier segments' syncs; then the last segment's own:
    // where writes bypass the page cache (O_DIRECT), the erase's syncs wrote its blocks and no
    // more, while the kept records before them may still sit in the page cache (a process
    // crash under `--sync never`), and a sync with nothing staged syncs the whole file.
    for &seq in &seqs[..i] {
        let file = storage.locate(seq);
        storage.syncer(seq).sync().await.map_err(io_error(file))?;
    }
    let file = storage.locate(seqs[i]);
    if found_here.end_offset > stop {
        zero_durably(storage, seqs[i], stop..found_here.end_offset)
            .await
            .map_err(io_error(file.clone()))?;
    }
    storage
        .syncer(seqs[i])
        .sync()
        .await
        .map_err(io_error(file))?;
    discard_after(storage, seqs, Some(i), &mut recovered.report)?;
    recovered.segments = seqs[..=i].to_vec();
    Ok(())
}

/// Removes the segments after index `last_kept`, newest first so a crash midway leaves a
/// sequence without holes.
fn discard_after<S: Storage>(
    storage: &mut S,
    seqs: &[u64],
    last_kept: Option<usize>,
    report: &mut RecoveryReport,
) -> Result<(), WalOpenError> {
    let first_dropped = last_kept.map_or(0, |i| i + 1);
    for &seq in seqs[first_dropped..].iter().rev() {
        let file = storage.locate(seq);
        storage.remove(seq).map_err(io_error(file))?;
        report.segments_discarded.push(seq);
    }
    Ok(())
}

/// The largest log index a record may reach: Raft's (2^62), far enough from `u64::MAX`
/// that `index + 1` never overflows on a forged record.
const INDEX_MAX: u64 = 1 << 62;

/// Applies one verified record to the group indexes, exactly as the live WAL did.
fn apply(
    groups: &mut Groups,
    seq: u64,
    offset: usize,
    header: &RecordHeader,
    payload: &[u8],
) -> Result<(), String> {
    if header.durable_lsn > header.lsn {
        return Err(format!(
            "record {} claims lsn {} was durable before it was written",
            header.lsn, header.durable_lsn
        ));
    }
    let decoded = payload::decode(header.kind, payload)
        .ok_or_else(|| format!("{:?} record verifies but does not parse", header.kind))?;
    let log = || GroupLog::new();
    match decoded {
        Payload::Entries {
            first_index,
            entries,
        } => {
            let past = first_index.checked_add(entries.len() as u64);
            if first_index == 0 || past.is_none_or(|past| past > INDEX_MAX) {
                return Err(format!(
                    "{} entries from index {first_index}: indexes run from 1 to {INDEX_MAX}",
                    entries.len()
                ));
            }
            let base = offset + RECORD_HEADER_BYTES;
            let group = groups.entry(header.group).or_insert_with(log);
            group.append(
                first_index,
                entries.iter().map(|&(term, at, len)| EntryLoc {
                    term,
                    segment_seq: seq,
                    offset: (base + at) as u32,
                    len_bytes: len as u32,
                }),
            );
        }
        Payload::HardState(state) => {
            groups.entry(header.group).or_insert_with(log).hard_state = Some(state);
        }
        Payload::Snapshot(marker) => {
            apply_snapshot(groups.entry(header.group).or_insert_with(log), marker)?;
        }
        Payload::Truncate { from_index } => {
            groups
                .entry(header.group)
                .or_insert_with(log)
                .truncate(from_index);
        }
        Payload::Checkpoint(lines) => {
            for line in lines {
                let group = groups.entry(line.group).or_insert_with(log);
                if line.hard_state.is_some() {
                    group.hard_state = line.hard_state;
                }
                apply_snapshot(group, line.snapshot)?;
            }
        }
    }
    Ok(())
}

fn apply_snapshot(
    group: &mut GroupLog,
    marker: super::types::SnapshotMarker,
) -> Result<(), String> {
    if marker.index >= INDEX_MAX {
        return Err(format!(
            "snapshot {} is past the last index, {INDEX_MAX}",
            marker.index
        ));
    }
    if marker.index < group.snapshot.index {
        return Err(format!(
            "snapshot {} is older than snapshot {} before it",
            marker.index, group.snapshot.index
        ));
    }
    group.set_snapshot(marker);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::format::RecordKind;
    use super::super::types::SnapshotMarker;
    use super::*;

    fn header(kind: RecordKind) -> RecordHeader {
        RecordHeader {
            len_bytes: 0,
            kind,
            lsn: 1,
            durable_lsn: 0,
            group: 0,
        }
    }

    /// Goal (found in review): a record that verifies but gives indexes near `u64::MAX` (a
    /// forgery: the checksum is not a secret from whoever writes the file) is refused as
    /// inconsistent, where `index + 1` overflowed (a panic in tests, a wrap in a release).
    /// Method: entries, and a snapshot marker, at the edge and past it.
    #[test]
    fn indexes_past_raft_last_are_refused() {
        let mut entries = payload::entries_prefix(INDEX_MAX, 2).to_vec();
        for _ in 0..2 {
            entries.extend_from_slice(&payload::entry_prefix(1, 0));
        }
        let mut groups = Groups::default();
        let refused = apply(&mut groups, 1, 0, &header(RecordKind::Entries), &entries);
        assert!(refused.is_err_and(|why| why.contains("indexes run from 1")));
        let mut entries = payload::entries_prefix(INDEX_MAX - 1, 1).to_vec();
        entries.extend_from_slice(&payload::entry_prefix(1, 0));
        apply(&mut groups, 1, 0, &header(RecordKind::Entries), &entries).expect("the last");
        for index in [INDEX_MAX, u64::MAX] {
            let marker = payload::snapshot(SnapshotMarker { index, term: 1 });
            let refused = apply(&mut groups, 1, 0, &header(RecordKind::Snapshot), &marker);
            assert!(refused.is_err_and(|why| why.contains("past the last index")));
        }
    }
}
