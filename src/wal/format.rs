//! Byte layout of segment headers and record headers: encode, decode, checksum, alignment.
//!
//! Everything here is a pure function over byte slices, so recovery can run it on untrusted
//! bytes: a decoder never panics and never reads out of bounds; it returns `None` instead.

use std::ops::RangeInclusive;

use super::storage::Part;

/// Bytes at the start of every segment file, before the first record.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of every record header; the payload follows.
pub const RECORD_HEADER_BYTES: usize = 40;
/// Records start at multiples of this; the gap after a payload is zero padding.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Offsets and lengths of the file store's O_DIRECT writes are multiples of this: the page
/// size, and a multiple of every logical block size we expect (512 or 4096). Segment sizes
/// are multiples of it. Records may skip from zeros to the next multiple of it (format
/// version 2).
pub const BLOCK_BYTES: usize = 4096;
/// `b"COHORTWL"`: the first bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"COHORTWL";
/// The format this code writes. Version 3 salts record checksums with the WAL's secret key
/// as well as the segment's seq (see [`record_salt`]); version 2 lets a record start at the
/// next block boundary (`BLOCK_BYTES`) after zeros (see `next_in_block_after_zeros`);
/// version 1 writers made no such skip (a reader allows one in any version: it needs zeros
/// up to the boundary and the expected record there). Versions 1 and 2 are read as well,
/// their records salted with the seq alone. Any other version is refused at open, so a
/// build that does not know a feature refuses a log that may use it instead of reading it
/// as a torn tail.
pub const FORMAT_VERSION: u32 = 3;
/// The first format whose segment headers carry the WAL's key.
const FORMAT_VERSION_KEYED: u32 = 3;
/// The oldest format this code reads.
pub const FORMAT_VERSION_MIN: u32 = 1;

// A record header starts at an aligned offset, so its 4-byte length field never straddles a
// 512-byte sector: a length is either written or not, never torn (see the spec in mod.rs).
const _: () = assert!(512 % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(RECORD_ALIGN_BYTES >= 4);
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));
// The segment header fits in one sector, so it is never torn either.
const _: () = assert!(SEGMENT_HEADER_BYTES <= 512);

/// What a record says. The numbers are part of the disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A run of consecutive entries of one group: `first_index u64, count u32, 0 u32`, then per
    /// entry `term u64, len u32, 0 u32, payload[len]`.
    Entries = 1,
    /// A group's hard state: `term u64, vote u64, commit u64`.
    HardState = 2,
    /// A group's snapshot: entries at or below `index u64` (of `term u64`) are dead.
    Snapshot = 3,
    /// A group dropped its suffix from `from_index u64` on.
    Truncate = 4,
    /// The first record of every segment: the hard state and snapshot of every group, so a
    /// segment older than it is never needed for them. `count u32, 0 u32`, then per group
    /// `group u64, flags u64, term u64, vote u64, commit u64, snap_index u64, snap_term u64`.
    Checkpoint = 5,
}

impl RecordKind {
    pub fn from_u8(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Entries),
            2 => Some(RecordKind::HardState),
            3 => Some(RecordKind::Snapshot),
            4 => Some(RecordKind::Truncate),
            5 => Some(RecordKind::Checkpoint),
            _ => None,
        }
    }
}

/// The decoded header of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header plus payload, without the padding.
    pub len_bytes: u32,
    pub kind: RecordKind,
    /// Log sequence number: one more than the record before it, across segments.
    pub lsn: u64,
    /// Every record with an lsn below this was durable when this record was written.
    pub durable_lsn: u64,
    pub group: u64,
}

impl RecordHeader {
    /// Bytes this record occupies in the segment, padding included.
    pub fn footprint_bytes(&self) -> usize {
        align_up(self.len_bytes as usize)
    }
}

pub fn align_up(len_bytes: usize) -> usize {
    len_bytes.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// Writes the header fields of a record at the start of `record` (all but the checksum,
/// which `seal_record` adds once the payload is in place).
pub fn put_record_header(record: &mut [u8], header: &RecordHeader) {
    let out = &mut record[..RECORD_HEADER_BYTES];
    out.fill(0);
    out[0..4].copy_from_slice(&header.len_bytes.to_le_bytes());
    out[8] = header.kind as u8;
    out[16..24].copy_from_slice(&header.lsn.to_le_bytes());
    out[24..32].copy_from_slice(&header.durable_lsn.to_le_bytes());
    out[32..40].copy_from_slice(&header.group.to_le_bytes());
}

/// The salt of the checksums of a segment's records: the segment's seq, mixed with the WAL's
/// secret key (`None` for segments of versions 1 and 2, salted with the seq alone). The seq
/// keeps a recycled file's records of its earlier life from verifying in its new one. The
/// key keeps bytes that a client chose from verifying as records: entry payloads are stored
/// as they came, so a value could hold a record image salted for a seq the file will have
/// later, and left behind in a reused file (whose old bytes are not zeroed), it could pass
/// for a record after the end of the log at a restart, and make recovery refuse the log as
/// damaged. The key is drawn at random when the WAL is made and is never sent anywhere.
pub fn record_salt(segment_seq: u64, key: Option<u64>) -> u64 {
    let Some(key) = key else {
        return segment_seq;
    };
    // SplitMix64's finalizer: a bijection, so salts of one key never repeat across seqs,
    // and not linear, as the checksum is.
    let mut z = key ^ segment_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stores the checksum of `record` (exactly `len_bytes` long: header and payload in place),
/// salted with `salt` (see [`record_salt`]).
pub fn seal_record(record: &mut [u8], salt: u64) {
    let crc = record_crc(salt, record);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// [`record_crc`] of a record given as parts back to back; the first holds the whole header.
pub fn record_crc_of_parts<'a>(salt: u64, mut parts: impl Iterator<Item = &'a Part<'a>>) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    let header = parts.next().expect("a record starts with its header");
    hasher.update(&header[0..4]);
    hasher.update(&header[8..]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// The checksum of a record: over the segment's salt ([`record_salt`]), the length, and
/// everything after the crc field (rest of the header and the payload).
fn record_crc(salt: u64, record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&record[0..4]);
    hasher.update(&record[8..]);
    hasher.finalize()
}

/// Reads the record that starts at `offset` of `segment`, if a whole valid one is there.
/// Returns `None` for zeros, garbage, a length past the end, or a checksum mismatch.
pub fn decode_record(segment: &[u8], offset: usize, salt: u64) -> Option<RecordHeader> {
    decode_record_within(segment, offset, salt, &(0..=u64::MAX))
}

/// As [`decode_record`], for a record of use only if its lsn lies in `lsns`: a header that
/// says otherwise, or whose `durable_lsn` is above its lsn (no record's is), is refused
/// before its checksum, which costs a pass over as many bytes as the header claims. Scans for
/// records among garbage need this: bytes that look like a header claiming megabytes can sit
/// at every aligned offset of a segment (a client's values, say), and checking each would
/// take time quadratic in the segment's size.
pub fn decode_record_within(
    segment: &[u8],
    offset: usize,
    salt: u64,
    lsns: &RangeInclusive<u64>,
) -> Option<RecordHeader> {
    let header = segment.get(offset..offset.checked_add(RECORD_HEADER_BYTES)?)?;
    let len_bytes = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let kind = RecordKind::from_u8(header[8])?;
    if header[9..16].iter().any(|&b| b != 0) || (len_bytes as usize) < RECORD_HEADER_BYTES {
        return None;
    }
    let (lsn, durable_lsn) = (u64_at(header, 16), u64_at(header, 24));
    if !lsns.contains(&lsn) || durable_lsn > lsn {
        return None;
    }
    let record = segment.get(offset..offset + len_bytes as usize)?;
    let stored_crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if record_crc(salt, record) != stored_crc {
        return None;
    }
    Some(RecordHeader {
        len_bytes,
        kind,
        lsn,
        durable_lsn,
        group: u64_at(header, 32),
    })
}

/// Where the scan of a segment goes on after the record that ended at `offset`, when no
/// record starts there: the next block boundary, if the bytes up to it are all zero and a
/// record that verifies and carries `expected_lsn` starts at it. The live WAL leaves such a
/// gap when the block it was in was still being written by a sync in flight. The lsn makes the
/// skip unambiguous: a torn or missing write before the boundary leaves a record there whose
/// lsn is not the one expected, or zeros.
pub fn next_in_block_after_zeros(
    segment: &[u8],
    offset: usize,
    salt: u64,
    expected_lsn: u64,
) -> Option<usize> {
    let boundary = offset.next_multiple_of(BLOCK_BYTES);
    let gap = segment.get(offset..boundary)?;
    if gap.is_empty() || gap.iter().any(|&b| b != 0) {
        return None;
    }
    let header = decode_record(segment, boundary, salt)?;
    (header.lsn == expected_lsn).then_some(boundary)
}

/// What the first bytes of a segment file say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentHeaderState {
    /// Magic, version and checksum verify, and the sequence number matches the file name.
    Valid,
    /// All zero: a file whose preparation did not finish.
    Zero,
    /// A valid header of another sequence number: a recycled file whose new header was not
    /// written yet.
    Stale { seq: u64 },
    /// Our magic and a checksum that verifies, but a format version this code does not read.
    UnsupportedVersion { version: u32 },
    /// Anything else.
    Garbage,
}

/// The header of segment `seq` of a WAL whose key is `key`.
pub fn encode_segment_header(seq: u64, segment_bytes: u64, key: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&seq.to_le_bytes());
    out[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    out[32..40].copy_from_slice(&key.to_le_bytes());
    let crc = segment_header_crc(&out);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

fn segment_header_crc(header: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..12]);
    hasher.update(&header[16..SEGMENT_HEADER_BYTES]);
    hasher.finalize()
}

/// The segment size a header states; call only on a header that decoded as `Valid`.
pub fn segment_header_size(segment: &[u8]) -> u64 {
    u64_at(segment, 24)
}

/// The WAL's key, as the header at the start of `segment` states it: `Some` for a header
/// that verifies (of any seq) in a format that has one.
pub fn segment_header_key(segment: &[u8]) -> Option<u64> {
    let header = segment.get(0..SEGMENT_HEADER_BYTES)?;
    let stored_crc = u32_at(header, 12);
    if header[0..8] != SEGMENT_MAGIC || segment_header_crc(header) != stored_crc {
        return None;
    }
    let version = u32_at(header, 8);
    (FORMAT_VERSION_KEYED..=FORMAT_VERSION)
        .contains(&version)
        .then(|| u64_at(header, 32))
}

pub fn decode_segment_header(segment: &[u8], expected_seq: u64) -> SegmentHeaderState {
    let Some(header) = segment.get(0..SEGMENT_HEADER_BYTES) else {
        return SegmentHeaderState::Garbage;
    };
    if header.iter().all(|&b| b == 0) {
        return SegmentHeaderState::Zero;
    }
    let stored_crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if header[0..8] != SEGMENT_MAGIC || segment_header_crc(header) != stored_crc {
        return SegmentHeaderState::Garbage;
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return SegmentHeaderState::UnsupportedVersion { version };
    }
    let seq = u64_at(header, 16);
    if seq != expected_seq {
        return SegmentHeaderState::Stale { seq };
    }
    SegmentHeaderState::Valid
}

/// A little-endian u64 at `offset`; the caller has checked the bounds.
pub fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

pub fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let header = RecordHeader {
            len_bytes: (RECORD_HEADER_BYTES + payload.len()) as u32,
            kind: RecordKind::Truncate,
            lsn: 7,
            durable_lsn: 3,
            group: 9,
        };
        let mut out = vec![0u8; align_up(header.len_bytes as usize)];
        put_record_header(&mut out, &header);
        out[RECORD_HEADER_BYTES..header.len_bytes as usize].copy_from_slice(payload);
        seal_record(&mut out[..header.len_bytes as usize], seq);
        out
    }

    #[test]
    fn record_round_trips_and_every_flipped_bit_is_caught() {
        // Goal: the checksum covers every byte of header and payload. Method: flip each bit.
        let bytes = record(5, b"hello wal");
        let header = decode_record(&bytes, 0, 5).expect("valid record");
        assert_eq!((header.lsn, header.durable_lsn, header.group), (7, 3, 9));
        let len = header.len_bytes as usize;
        for bit in 0..len * 8 {
            let mut corrupt = bytes.clone();
            corrupt[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                decode_record(&corrupt, 0, 5),
                None,
                "bit {bit} flipped unnoticed"
            );
        }
    }

    #[test]
    fn record_of_another_segment_life_does_not_verify() {
        // Goal: a recycled file's old records are garbage to the new segment (salted crc).
        let bytes = record(5, b"old life");
        assert_eq!(decode_record(&bytes, 0, 6), None);
    }

    /// Goal: a record image salted without the WAL's key (all a client could compute) does
    /// not verify in a segment of a keyed WAL, nor one of another key; salts of one key
    /// differ across seqs. Method: the same record under each salt.
    #[test]
    fn a_record_verifies_only_under_its_own_key_and_seq() {
        let key = 0x005E_C2E7;
        let bytes = record(record_salt(5, Some(key)), b"keyed");
        assert!(decode_record(&bytes, 0, record_salt(5, Some(key))).is_some());
        for salt in [5, record_salt(5, Some(key + 1)), record_salt(6, Some(key))] {
            assert_eq!(decode_record(&bytes, 0, salt), None, "{salt}");
        }
        assert_eq!(record_salt(5, None), 5, "versions 1 and 2: the seq alone");
    }

    #[test]
    fn truncated_record_is_rejected_without_panic() {
        let bytes = record(1, b"0123456789");
        for cut in 0..bytes.len() - 6 {
            assert_eq!(decode_record(&bytes[..cut], 0, 1), None);
        }
    }

    #[test]
    fn a_zero_gap_is_skipped_only_to_a_block_boundary_holding_the_expected_lsn() {
        // Goal: the skip recovery takes after a record whose block was still being written
        // is unambiguous. Method: a record (lsn 7) at the second block, the scan at 200.
        let mut segment = vec![0u8; 3 * BLOCK_BYTES];
        let bytes = record(5, b"after the gap");
        segment[BLOCK_BYTES..BLOCK_BYTES + bytes.len()].copy_from_slice(&bytes);
        assert_eq!(
            next_in_block_after_zeros(&segment, 200, 5, 7),
            Some(BLOCK_BYTES)
        );
        assert_eq!(next_in_block_after_zeros(&segment, 200, 5, 8), None, "lsn");
        assert_eq!(next_in_block_after_zeros(&segment, 200, 6, 7), None, "salt");
        assert_eq!(
            next_in_block_after_zeros(&segment, BLOCK_BYTES, 5, 7),
            None,
            "no gap at a boundary"
        );
        segment[4000] = 1;
        assert_eq!(
            next_in_block_after_zeros(&segment, 200, 5, 7),
            None,
            "garbage"
        );
    }

    #[test]
    fn segment_header_states_are_told_apart() {
        let header = encode_segment_header(4, 1 << 20, 77);
        assert_eq!(segment_header_key(&header), Some(77));
        assert_eq!(decode_segment_header(&header, 4), SegmentHeaderState::Valid);
        assert_eq!(
            decode_segment_header(&header, 5),
            SegmentHeaderState::Stale { seq: 4 }
        );
        assert_eq!(
            decode_segment_header(&[0u8; 64], 4),
            SegmentHeaderState::Zero
        );
        let mut flipped = header;
        flipped[20] ^= 1;
        assert_eq!(
            decode_segment_header(&flipped, 4),
            SegmentHeaderState::Garbage
        );
        let mut future = header;
        future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = segment_header_crc(&future);
        future[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&future, 4),
            SegmentHeaderState::UnsupportedVersion {
                version: FORMAT_VERSION + 1
            }
        );
        let mut old = header;
        old[8..12].copy_from_slice(&FORMAT_VERSION_MIN.to_le_bytes());
        let crc = segment_header_crc(&old);
        old[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&old, 4), SegmentHeaderState::Valid);
        assert_eq!(segment_header_key(&old), None, "a format without a key");
        assert_eq!(segment_header_key(&flipped), None);
    }
}
