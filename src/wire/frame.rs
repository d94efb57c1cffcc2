//! The frame: a fixed header (length, checksum, version) around one verified flatbuffer.
//!
//! ```text
//!   0        4        8    9         12                 12 + length
//!   | length | crc32  | v  | reserved | flatbuffer `Frame` |
//! ```
//!
//! `length` counts the flatbuffer only, little endian. `crc32` (IEEE, crc32fast) covers the
//! length, version and reserved bytes and the flatbuffer, so a flipped bit anywhere but in
//! the checksum itself is caught, and a flipped checksum no longer matches. `reserved` is
//! zero. A receiver reads the header with [`FrameHeader::parse`] (which refuses an oversized
//! length before the caller allocates for the body), then the whole frame with
//! [`open_frame`], which checks the checksum and runs the flatbuffers verifier with the
//! tightened options of [`verifier_options`]. Fields are only ever read from a verified
//! buffer.

use std::fmt;

use flatbuffers::{InvalidFlatbuffer, VerifierOptions};

use super::fb;
use super::limits::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_VERSION, VERIFIER_APPARENT_BYTES_MAX,
    VERIFIER_APPARENT_BYTES_PER_BODY_BYTE, VERIFIER_APPARENT_SLACK_BYTES,
    VERIFIER_BODY_BYTES_PER_TABLE, VERIFIER_DEPTH_MAX, VERIFIER_TABLES_MAX, VERIFIER_TABLES_SLACK,
};

/// Why a frame was refused. Every variant means the connection it came from is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length field announces a body larger than [`FRAME_BODY_BYTES_MAX`].
    TooLarge {
        length_bytes: u64,
        length_bytes_max: u64,
    },
    /// The body is too short to be a flatbuffer at all.
    TooSmall { length_bytes: u64 },
    /// A version byte this build does not speak.
    VersionUnknown { version: u8 },
    /// The reserved header bytes are not zero.
    ReservedNotZero,
    /// The checksum does not match the bytes: corruption in flight or a stranger's bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The flatbuffers verifier refused the body.
    Malformed { reason: String },
    /// The body verified but names no frame body (or one this build does not know).
    BodyUnknown,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge {
                length_bytes,
                length_bytes_max,
            } => {
                write!(
                    f,
                    "frame length {length_bytes} bytes over the maximum {length_bytes_max}"
                )
            }
            FrameError::TooSmall { length_bytes } => {
                write!(
                    f,
                    "frame length {length_bytes} bytes is too small for a flatbuffer"
                )
            }
            FrameError::VersionUnknown { version } => write!(f, "unknown frame version {version}"),
            FrameError::ReservedNotZero => f.write_str("reserved header bytes are not zero"),
            FrameError::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            FrameError::Malformed { reason } => write!(f, "malformed flatbuffer: {reason}"),
            FrameError::BodyUnknown => f.write_str("frame body missing or of an unknown kind"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The smallest flatbuffer with a root table: root offset, vtable and table.
const BODY_BYTES_MIN: usize = 8;

/// A parsed, not yet trusted, frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_bytes: usize,
    pub checksum: u32,
}

impl FrameHeader {
    /// Reads the header at the start of `buf`. `Ok(None)`: fewer than
    /// [`FRAME_HEADER_BYTES`] bytes so far. The length is checked here, so the caller may
    /// size its buffer from `body_bytes` without trusting the peer any further.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let Some(header) = buf.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_bytes = length as usize;
        if body_bytes > FRAME_BODY_BYTES_MAX {
            return Err(FrameError::TooLarge {
                length_bytes: u64::from(length),
                length_bytes_max: FRAME_BODY_BYTES_MAX as u64,
            });
        }
        if body_bytes < BODY_BYTES_MIN {
            return Err(FrameError::TooSmall {
                length_bytes: u64::from(length),
            });
        }
        if header[8] != FRAME_VERSION {
            return Err(FrameError::VersionUnknown { version: header[8] });
        }
        if header[9..12] != [0, 0, 0] {
            return Err(FrameError::ReservedNotZero);
        }
        Ok(Some(FrameHeader {
            body_bytes,
            checksum,
        }))
    }

    /// Header plus body.
    pub fn frame_bytes(&self) -> usize {
        FRAME_HEADER_BYTES + self.body_bytes
    }
}

/// The options a received flatbuffer of `body_bytes` is verified with: tables and apparent
/// bytes in proportion to its size (see `limits.rs` for each value).
pub fn verifier_options(body_bytes: usize) -> VerifierOptions {
    let tables = body_bytes / VERIFIER_BODY_BYTES_PER_TABLE + VERIFIER_TABLES_SLACK;
    let apparent = body_bytes.saturating_mul(VERIFIER_APPARENT_BYTES_PER_BODY_BYTE)
        + VERIFIER_APPARENT_SLACK_BYTES;
    VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: tables.min(VERIFIER_TABLES_MAX),
        max_apparent_size: apparent.min(VERIFIER_APPARENT_BYTES_MAX),
        ignore_missing_null_terminator: false,
    }
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..FRAME_HEADER_BYTES]);
    hasher.update(body);
    hasher.finalize()
}

/// The header for `body`, ready to be written in front of it.
///
/// # Panics
/// If `body` is larger than [`FRAME_BODY_BYTES_MAX`]: the encoder bounds what it packs, so
/// a larger body is a bug of ours, not a peer's.
pub fn frame_header_for(body: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
    assert!(
        body.len() <= FRAME_BODY_BYTES_MAX,
        "frame body of {} bytes over the maximum {FRAME_BODY_BYTES_MAX}",
        body.len()
    );
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[8] = FRAME_VERSION;
    let crc = checksum(&header, body);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks the checksum of one whole frame (`frame` is exactly header plus body) and verifies
/// its flatbuffer. The returned table borrows `frame`; nothing is copied.
pub fn open_frame(frame: &[u8]) -> Result<fb::Frame<'_>, FrameError> {
    let header = FrameHeader::parse(frame)?.ok_or(FrameError::TooSmall {
        length_bytes: frame.len() as u64,
    })?;
    // A caller that hands us a slice of another length has a framing bug; report it as a
    // malformed frame rather than panic, the connection is closed either way.
    if frame.len() != header.frame_bytes() {
        return Err(FrameError::Malformed {
            reason: format!(
                "frame is {} bytes, header says {}",
                frame.len(),
                header.frame_bytes()
            ),
        });
    }
    let body = &frame[FRAME_HEADER_BYTES..];
    let computed = checksum(frame, body);
    if computed != header.checksum {
        return Err(FrameError::ChecksumMismatch {
            stored: header.checksum,
            computed,
        });
    }
    let root = flatbuffers::root_with_opts::<fb::Frame>(&verifier_options(body.len()), body)
        .map_err(|error: InvalidFlatbuffer| FrameError::Malformed {
            reason: error.to_string(),
        })?;
    if root.body_type() == fb::FrameBody::NONE {
        return Err(FrameError::BodyUnknown);
    }
    Ok(root)
}
