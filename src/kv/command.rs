//! The replicated command: one client request as it sits in a Raft entry, and its checks.
//!
//! Byte layout (little-endian), chosen so a replica reads it in place:
//!
//! ```text
//! entry   := command+                             one or more commands, back to back
//! command := client_id u64 | sequence u64 | first_unacked u64 | op_count u16 | op*
//! op      := kind u8 | key_len u16 | key | body
//! body    := ()                                   for Get, Delete
//!          | value_len u32 | value                for Put, PutIfAbsent
//!          | has_expected u8 | [exp_len u32 | expected] | value_len u32 | value   for Cas
//! ```
//!
//! A leader packs the writes a group takes in during one loop turn into one entry, so the
//! costs of an entry (log, WAL record, wire header, compaction) are paid once per batch, not
//! once per request. Every command is self-delimiting, so an entry of one command is the
//! same bytes as before batching.
//!
//! `first_unacked` is the lowest sequence the client still waits for: the state machine may
//! forget its replies to everything below (Raft thesis §6.3).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::limits::{KEY_BYTES_MAX, OPERATIONS_PER_COMMAND_MAX, VALUE_BYTES_MAX};

/// One operation of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Get {
        key: Bytes,
    },
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// Write `value` only if the key currently holds `expected` (`None`: the key is absent).
    CompareAndSwap {
        key: Bytes,
        expected: Option<Bytes>,
        value: Bytes,
    },
    /// Write `value` only if the key is absent: the single-value agreement of a register.
    PutIfAbsent {
        key: Bytes,
        value: Bytes,
    },
}

impl Op {
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Delete { key }
            | Op::CompareAndSwap { key, .. }
            | Op::PutIfAbsent { key, .. } => key,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, Op::Get { .. })
    }

    fn kind(&self) -> u8 {
        match self {
            Op::Get { .. } => 0,
            Op::Put { .. } => 1,
            Op::Delete { .. } => 2,
            Op::CompareAndSwap { .. } => 3,
            Op::PutIfAbsent { .. } => 4,
        }
    }

    /// Check the sizes a client may send.
    pub fn validate(&self) -> Result<(), CommandError> {
        self.as_ref().validate()
    }

    /// The operation as a view of its bytes.
    pub fn as_ref(&self) -> OpRef<'_> {
        match self {
            Op::Get { key } => OpRef::Get { key },
            Op::Put { key, value } => OpRef::Put { key, value },
            Op::Delete { key } => OpRef::Delete { key },
            Op::CompareAndSwap {
                key,
                expected,
                value,
            } => OpRef::CompareAndSwap {
                key,
                expected: expected.as_deref(),
                value,
            },
            Op::PutIfAbsent { key, value } => OpRef::PutIfAbsent { key, value },
        }
    }
}

/// One operation read in place: its key and values borrow the bytes it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpRef<'a> {
    Get {
        key: &'a [u8],
    },
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
    CompareAndSwap {
        key: &'a [u8],
        expected: Option<&'a [u8]>,
        value: &'a [u8],
    },
    PutIfAbsent {
        key: &'a [u8],
        value: &'a [u8],
    },
}

impl<'a> OpRef<'a> {
    pub fn key(&self) -> &'a [u8] {
        match *self {
            OpRef::Get { key }
            | OpRef::Put { key, .. }
            | OpRef::Delete { key }
            | OpRef::CompareAndSwap { key, .. }
            | OpRef::PutIfAbsent { key, .. } => key,
        }
    }

    /// Check the sizes a client may send.
    pub fn validate(&self) -> Result<(), CommandError> {
        let key = self.key();
        if key.is_empty() {
            return Err(CommandError::EmptyKey);
        }
        if key.len() > KEY_BYTES_MAX {
            return Err(CommandError::KeyTooLarge { bytes: key.len() });
        }
        let values = match *self {
            OpRef::Put { value, .. } | OpRef::PutIfAbsent { value, .. } => [Some(value), None],
            OpRef::CompareAndSwap {
                expected, value, ..
            } => [Some(value), expected],
            OpRef::Get { .. } | OpRef::Delete { .. } => [None, None],
        };
        for value in values.into_iter().flatten() {
            if value.len() > VALUE_BYTES_MAX {
                return Err(CommandError::ValueTooLarge { bytes: value.len() });
            }
        }
        Ok(())
    }

    /// The owned operation, its bytes shared with `data` (which must hold them).
    fn to_op(self, data: &Bytes) -> Op {
        match self {
            OpRef::Get { key } => Op::Get {
                key: data.slice_ref(key),
            },
            OpRef::Put { key, value } => Op::Put {
                key: data.slice_ref(key),
                value: data.slice_ref(value),
            },
            OpRef::Delete { key } => Op::Delete {
                key: data.slice_ref(key),
            },
            OpRef::CompareAndSwap {
                key,
                expected,
                value,
            } => Op::CompareAndSwap {
                key: data.slice_ref(key),
                expected: expected.map(|e| data.slice_ref(e)),
                value: data.slice_ref(value),
            },
            OpRef::PutIfAbsent { key, value } => Op::PutIfAbsent {
                key: data.slice_ref(key),
                value: data.slice_ref(value),
            },
        }
    }
}

/// A request's operations. Nearly every request has one: it is held inline, so a request
/// decoded on a node, or built by a client, costs no allocation for its operations.
pub type Ops = SmallVec<[Op; 1]>;

/// One client request: applied at most once, its operations together (one entry, nothing
/// between them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub client_id: u64,
    pub sequence: u64,
    pub first_unacked: u64,
    pub ops: Ops,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    EmptyKey,
    KeyTooLarge {
        bytes: usize,
    },
    ValueTooLarge {
        bytes: usize,
    },
    TooManyOperations {
        count: usize,
    },
    NoOperations,
    /// The sequence numbers make no sense (zero, or acked beyond the request itself).
    BadSequence {
        sequence: u64,
        first_unacked: u64,
    },
    /// The bytes of an entry are not a command (a bug or a corrupt log: never a client error,
    /// since every command is checked before it is proposed).
    Malformed(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::EmptyKey => write!(f, "a key must not be empty"),
            CommandError::KeyTooLarge { bytes } => {
                write!(
                    f,
                    "key of {bytes} bytes is over the limit of {KEY_BYTES_MAX}"
                )
            }
            CommandError::ValueTooLarge { bytes } => {
                write!(
                    f,
                    "value of {bytes} bytes is over the limit of {VALUE_BYTES_MAX}"
                )
            }
            CommandError::TooManyOperations { count } => write!(
                f,
                "{count} operations in one request; the limit is {OPERATIONS_PER_COMMAND_MAX}"
            ),
            CommandError::NoOperations => write!(f, "a request needs at least one operation"),
            CommandError::BadSequence {
                sequence,
                first_unacked,
            } => write!(
                f,
                "sequence {sequence} with first unacknowledged {first_unacked}: sequences start \
                 at 1 and the first unacknowledged one cannot be above the request's own"
            ),
            CommandError::Malformed(what) => write!(f, "malformed command: {what}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl Command {
    /// Check everything a client controls; a command that passes encodes and decodes.
    pub fn validate(&self) -> Result<(), CommandError> {
        check_header(self.ops.len(), self.sequence, self.first_unacked)?;
        self.ops.iter().try_for_each(Op::validate)
    }

    pub fn is_read_only(&self) -> bool {
        self.ops.iter().all(Op::is_read)
    }

    /// Whether it may add to what the store holds: a put, compare-and-swap or put-if-absent
    /// (a store at its quota takes gets and deletes only).
    pub fn may_add_data(&self) -> bool {
        (self.ops.iter()).any(|op| !matches!(op, Op::Get { .. } | Op::Delete { .. }))
    }

    /// Bytes [`Command::encode_into`] writes.
    pub fn encoded_len(&self) -> usize {
        let ops: usize = self
            .ops
            .iter()
            .map(|op| {
                3 + op.key().len()
                    + match op {
                        Op::Put { value, .. } | Op::PutIfAbsent { value, .. } => 4 + value.len(),
                        Op::CompareAndSwap {
                            expected, value, ..
                        } => 5 + expected.as_ref().map_or(0, |e| 4 + e.len()) + value.len(),
                        Op::Get { .. } | Op::Delete { .. } => 0,
                    }
            })
            .sum();
        26 + ops
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Append the command to `out` (an entry being built: see the module doc).
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u64_le(self.client_id);
        out.put_u64_le(self.sequence);
        out.put_u64_le(self.first_unacked);
        out.put_u16_le(self.ops.len() as u16);
        for op in &self.ops {
            out.put_u8(op.kind());
            out.put_u16_le(op.key().len() as u16);
            out.put_slice(op.key());
            match op {
                Op::Put { value, .. } | Op::PutIfAbsent { value, .. } => put_blob(out, value),
                Op::CompareAndSwap {
                    expected, value, ..
                } => {
                    out.put_u8(u8::from(expected.is_some()));
                    if let Some(expected) = expected {
                        put_blob(out, expected);
                    }
                    put_blob(out, value);
                }
                Op::Get { .. } | Op::Delete { .. } => {}
            }
        }
    }

    /// Read every command of `data`, an entry's payload (see [`CommandRef::read_all`]), each
    /// checked. Keys and values are slices of `data`.
    pub fn decode_all(data: &Bytes) -> Result<Vec<Command>, CommandError> {
        let commands = CommandRef::read_all(data, &mut Vec::new())?;
        Ok(commands.into_iter().map(|c| c.to_command(data)).collect())
    }

    /// Read the one command of `data`. Keys and values are slices of `data`.
    pub fn decode(data: &Bytes) -> Result<Command, CommandError> {
        let mut reader = Reader { data, at: 0 };
        let command = CommandRef::read(&mut reader, |_| {})?;
        if reader.at != data.len() {
            return Err(CommandError::Malformed("trailing bytes"));
        }
        Ok(command.to_command(data))
    }
}

/// Checks what a command says about itself, besides its operations.
fn check_header(ops: usize, sequence: u64, first_unacked: u64) -> Result<(), CommandError> {
    if ops == 0 {
        return Err(CommandError::NoOperations);
    }
    if ops > OPERATIONS_PER_COMMAND_MAX {
        return Err(CommandError::TooManyOperations { count: ops });
    }
    if sequence == 0 || first_unacked == 0 || first_unacked > sequence {
        return Err(CommandError::BadSequence {
            sequence,
            first_unacked,
        });
    }
    Ok(())
}

/// A command read in place from an entry's bytes: its header, and its operations, read
/// again on demand from bytes that were checked when the command was read. Applying an
/// entry this way allocates nothing per command and shares no buffer per key.
#[derive(Clone, Copy, Debug)]
pub struct CommandRef<'a> {
    pub client_id: u64,
    pub sequence: u64,
    pub first_unacked: u64,
    count: u16,
    ops: &'a [u8],
}

impl<'a> CommandRef<'a> {
    /// Every command of an entry's payload (see the module doc), in order, with their
    /// operations appended to `ops` as they are checked: read once for everything the state
    /// machine does with them. An empty payload has none; a malformed command anywhere makes
    /// the whole payload an error.
    pub fn read_all(
        data: &'a [u8],
        ops: &mut impl Extend<OpRef<'a>>,
    ) -> Result<Vec<CommandRef<'a>>, CommandError> {
        let mut reader = Reader { data, at: 0 };
        let mut commands = Vec::new();
        while reader.at < reader.data.len() {
            commands.push(CommandRef::read(&mut reader, |op| ops.extend([op]))?);
        }
        Ok(commands)
    }

    /// How many operations the command holds.
    pub fn op_count(&self) -> usize {
        usize::from(self.count)
    }

    /// The operations, in order.
    pub fn ops(&self) -> impl Iterator<Item = OpRef<'a>> + use<'a> {
        let mut reader = Reader {
            data: self.ops,
            at: 0,
        };
        (0..self.count)
            .map(move |_| read_op(&mut reader).expect("checked when the command was read"))
    }

    /// Reads and checks one command, handing each operation to `each_op` once it is checked.
    fn read(
        reader: &mut Reader<'a>,
        mut each_op: impl FnMut(OpRef<'a>),
    ) -> Result<CommandRef<'a>, CommandError> {
        let client_id = reader.u64()?;
        let sequence = reader.u64()?;
        let first_unacked = reader.u64()?;
        let count = reader.u16()?;
        check_header(usize::from(count), sequence, first_unacked)?;
        let start = reader.at;
        for _ in 0..count {
            let op = read_op(reader)?;
            op.validate()?;
            each_op(op);
        }
        Ok(CommandRef {
            client_id,
            sequence,
            first_unacked,
            count,
            ops: &reader.data[start..reader.at],
        })
    }

    /// The owned command, its keys and values shared with `data` (which must hold them).
    fn to_command(self, data: &Bytes) -> Command {
        Command {
            client_id: self.client_id,
            sequence: self.sequence,
            first_unacked: self.first_unacked,
            ops: self.ops().map(|op| op.to_op(data)).collect(),
        }
    }
}

fn read_op<'a>(reader: &mut Reader<'a>) -> Result<OpRef<'a>, CommandError> {
    let kind = reader.u8()?;
    let key_len = usize::from(reader.u16()?);
    let key = reader.take(key_len)?;
    Ok(match kind {
        0 => OpRef::Get { key },
        1 => OpRef::Put {
            key,
            value: reader.blob()?,
        },
        2 => OpRef::Delete { key },
        3 => {
            let expected = match reader.u8()? {
                0 => None,
                1 => Some(reader.blob()?),
                _ => return Err(CommandError::Malformed("compare-and-swap flag")),
            };
            OpRef::CompareAndSwap {
                key,
                expected,
                value: reader.blob()?,
            }
        }
        4 => OpRef::PutIfAbsent {
            key,
            value: reader.blob()?,
        },
        _ => return Err(CommandError::Malformed("unknown operation kind")),
    })
}

fn put_blob(out: &mut BytesMut, blob: &[u8]) {
    out.put_u32_le(blob.len() as u32);
    out.put_slice(blob);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], CommandError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or(CommandError::Malformed("truncated"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CommandError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, CommandError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, CommandError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, CommandError> {
        self.array().map(u64::from_le_bytes)
    }

    fn blob(&mut self) -> Result<&'a [u8], CommandError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        if len > VALUE_BYTES_MAX {
            return Err(CommandError::ValueTooLarge { bytes: len });
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sample() -> Command {
        Command {
            client_id: 9,
            sequence: 5,
            first_unacked: 3,
            ops: smallvec![
                Op::Put {
                    key: b("k"),
                    value: b("v"),
                },
                Op::Get { key: b("k") },
                Op::Delete { key: b("d") },
                Op::CompareAndSwap {
                    key: b("c"),
                    expected: None,
                    value: b("1"),
                },
                Op::CompareAndSwap {
                    key: b("c"),
                    expected: Some(b("1")),
                    value: b("2"),
                },
                Op::PutIfAbsent {
                    key: b("p"),
                    value: b(""),
                },
            ],
        }
    }

    #[test]
    fn every_operation_round_trips() {
        let command = sample();
        assert_eq!(Command::decode(&command.encode()), Ok(command));
    }

    #[test]
    fn an_entry_of_several_commands_reads_back_in_order() {
        let mut second = sample();
        second.client_id = 10;
        second.ops.truncate(2);
        let mut entry = BytesMut::new();
        sample().encode_into(&mut entry);
        second.encode_into(&mut entry);
        assert_eq!(
            sample().encoded_len() + second.encoded_len(),
            entry.len(),
            "encoded_len is exact"
        );
        let entry = entry.freeze();
        let read_all = |data: &Bytes| -> Result<Vec<Command>, CommandError> {
            let commands = CommandRef::read_all(data, &mut Vec::new())?;
            Ok(commands.into_iter().map(|c| c.to_command(data)).collect())
        };
        assert_eq!(read_all(&entry), Ok(vec![sample(), second]));
        assert_eq!(read_all(&Bytes::new()), Ok(vec![]));
        // A cut anywhere inside the second command makes the entry an error.
        let first_len = sample().encoded_len();
        for len in first_len + 1..entry.len() {
            assert!(read_all(&entry.slice(..len)).is_err(), "{len}");
        }
        // Every operation is handed out once, in order, each command's after the last's.
        let mut ops = Vec::new();
        let commands = CommandRef::read_all(&entry, &mut ops).unwrap();
        let counts: Vec<usize> = commands.iter().map(CommandRef::op_count).collect();
        assert_eq!(counts, [sample().ops.len(), 2]);
        let each: Vec<OpRef<'_>> = commands.iter().flat_map(CommandRef::ops).collect();
        assert_eq!(ops, each);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Command::decode(&bytes.slice(..len)).is_err(), "{len}");
        }
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_u8(0);
        assert!(Command::decode(&longer.freeze()).is_err());
    }

    #[test]
    fn limits_are_checked_with_clear_errors() {
        let mut command = sample();
        command.ops = smallvec![Op::Put {
            key: Bytes::from(vec![1; KEY_BYTES_MAX + 1]),
            value: b("v"),
        }];
        assert_eq!(
            command.validate(),
            Err(CommandError::KeyTooLarge {
                bytes: KEY_BYTES_MAX + 1
            })
        );
        command.ops = smallvec![Op::Put {
            key: b("k"),
            value: Bytes::from(vec![1; VALUE_BYTES_MAX + 1]),
        }];
        let error = command.validate().unwrap_err();
        assert!(error.to_string().contains("over the limit"), "{error}");
        command.ops = smallvec![Op::Get { key: b("") }];
        assert_eq!(command.validate(), Err(CommandError::EmptyKey));
        command.ops = smallvec![];
        assert_eq!(command.validate(), Err(CommandError::NoOperations));
        command.ops = smallvec![Op::Get { key: b("k") }; OPERATIONS_PER_COMMAND_MAX + 1];
        assert!(matches!(
            command.validate(),
            Err(CommandError::TooManyOperations { .. })
        ));
        command.ops = smallvec![Op::Get { key: b("k") }];
        command.first_unacked = command.sequence + 1;
        assert!(matches!(
            command.validate(),
            Err(CommandError::BadSequence { .. })
        ));
    }

    #[test]
    fn values_are_slices_of_the_entry_not_copies() {
        let bytes = sample().encode();
        let decoded = Command::decode(&bytes).unwrap();
        let Op::Put { value, .. } = &decoded.ops[0] else {
            panic!()
        };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&value.as_ptr()));
    }
}
