//! A snapshot of a group's key-value state (data, client sessions, member addresses, the
//! ids removed) as bytes, and back.
//!
//! Layout (little-endian), ending in a crc32 of everything before it:
//!
//! ```text
//! "CKV5" | applied_index u64 | key_count u64 | (key blob | value blob)* |
//! session_count u64 | (client u64 | first_unacked u64 | last_index u64 | reply_count u32 |
//!                      (sequence u64 | reply)*)* |
//! member_count u32 | (node u64 | address blob)* |
//! forgotten_count u32 | client u64* (oldest first) |
//! removed_count u32 | node u64* (ascending) | crc32 u32
//! blob   := len u32 | bytes
//! reply  := result_count u32 | result*            (applied)
//!         | 0xFFFF_FFFF u32 | value_bytes u64     (refused as too large)
//! result := 0 value-blob | 1 (not found) | 2 (written) | 3 flag u8 [blob] (condition failed)
//! ```
//!
//! "CKV4", written before removed ids were kept, is the same layout without them, and is
//! read as such: a replica that loads one knows only the removals after it, which matters
//! only to its leader's check when a removed node asks to be added back (an id is never
//! used again), not to the state the replicas apply.
//!
//! "CKV3", written before refusals were remembered, is the same layout without refusals,
//! and is read as such. The residual risk (found in review): a replica that loads one has
//! forgotten the requests refused as too large before it, while a replica whose older
//! snapshot makes it replay those entries with this release remembers them; a later copy of
//! such a request in the log would then be applied by the first and refused by the second.
//! It takes a request refused as too large between two replicas' CKV3 snapshots and a copy
//! of it, proposed by a second leader, after both: rare enough that refusing CKV3 (as CKV2
//! is refused), which would leave a cluster upgraded at once with no replica able to
//! restart, is the worse trade. One more path, from a day of the project's history: sessions
//! of a CKV2 snapshot written before their replies were bounded in bytes, loaded by a release
//! that still read CKV2 and wrote CKV3 and not recorded to since, are past those bounds and
//! are refused.
//!
//! "CKV2", written before forgotten clients were kept, is refused with a clear error: replicas
//! that loaded it, each at its own index, would each know of other forgotten clients, and
//! could decide differently whether to apply a request.
//!
//! Keys and sessions are written sorted, so two replicas with the same state write the same
//! bytes, and a snapshot is read only if it holds what the store itself can: keys in order
//! and within their bounds, sessions in order and within the bounds of their count and
//! weight, no more replies or results than requests leave (a corrupt or forged count would
//! otherwise cost far more memory than its bytes). [`KvStore::snapshot_job`] takes what a
//! snapshot needs on the loop (the pairs by reference, the small rest encoded);
//! [`SnapshotJob::encode`] sorts and writes the pairs, the bulk of the work, on any thread.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::blob::{Key, Value};
use super::limits::{
    KEY_BYTES_MAX, OPERATIONS_PER_COMMAND_MAX, REPLIES_PER_SESSION_MAX,
    REPLY_BYTES_PER_SESSION_MAX, SESSION_BYTES_MAX, SESSIONS_MAX, VALUE_BYTES_MAX,
    WRITE_RESULT_BYTES_MAX,
};
use super::session::{Decision, Results, Session, Sessions, reply_bytes};
use super::store::{KvStore, OpResult};

const MAGIC: &[u8; 4] = b"CKV5";
/// The layout before removed ids were kept: read as this one, without any.
const MAGIC_WITHOUT_REMOVED: &[u8; 4] = b"CKV4";
/// The layout before refusals were remembered: read as this one, without any.
const MAGIC_WITHOUT_REFUSALS: &[u8; 4] = b"CKV3";
/// A reply's result count that marks it as a refusal.
const REFUSED: u32 = u32::MAX;
/// The layout before forgotten clients were kept.
const MAGIC_WITHOUT_FORGOTTEN: &[u8; 4] = b"CKV2";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError(pub &'static str);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key-value snapshot is corrupt: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

/// A snapshot taken and not yet encoded; `Send`, so it can be encoded off the loop.
pub struct SnapshotJob {
    applied_index: u64,
    pairs: Vec<(Key, Value)>,
    /// Sessions and members, encoded.
    tail: Bytes,
}

impl SnapshotJob {
    /// The log index the snapshot is of.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The snapshot's bytes. Written into one buffer of the exact size: a growing buffer
    /// copies a big state over and over, and faults in fresh pages each time.
    pub fn encode(self) -> Bytes {
        self.encode_into(BytesMut::with_capacity)
    }

    /// [`SnapshotJob::encode`] into the buffer `buffer` makes for the snapshot's bytes (the
    /// node's is block-aligned, so that the snapshot file hands these bytes to the device as
    /// they are, with O_DIRECT, not a copy of them).
    pub fn encode_into(mut self, buffer: impl FnOnce(usize) -> BytesMut) -> Bytes {
        self.pairs.sort_unstable_by(|a, b| a.0[..].cmp(&b.0[..]));
        let pairs_bytes: usize = self.pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let total_bytes = MAGIC.len() + 16 + pairs_bytes + self.tail.len() + 4;
        let mut out = buffer(total_bytes);
        out.put_slice(MAGIC);
        out.put_u64_le(self.applied_index);
        out.put_u64_le(self.pairs.len() as u64);
        for (key, value) in &self.pairs {
            put_blob(&mut out, key);
            put_blob(&mut out, value);
        }
        out.put_slice(&self.tail);
        debug_assert_eq!(out.len() + 4, total_bytes, "the size computed up front");
        let crc = crc32fast::hash(&out);
        out.put_u32_le(crc);
        out.freeze()
    }
}

impl KvStore {
    pub fn encode_snapshot(&self) -> Bytes {
        self.snapshot_job().encode()
    }

    /// What a snapshot of the state now needs, taken without encoding the pairs: a clone of
    /// each (shared values are referenced, not copied), and the sessions and members (small)
    /// encoded already.
    pub fn snapshot_job(&self) -> SnapshotJob {
        let mut tail = BytesMut::new();
        let mut clients: Vec<&u64> = self.sessions.by_client.keys().collect();
        clients.sort_unstable();
        tail.put_u64_le(clients.len() as u64);
        for client in clients {
            let session = &self.sessions.by_client[client];
            tail.put_u64_le(*client);
            tail.put_u64_le(session.first_unacked);
            tail.put_u64_le(session.last_index);
            tail.put_u32_le(session.replies.len() as u32);
            for (sequence, reply) in &session.replies {
                tail.put_u64_le(*sequence);
                match reply {
                    Decision::Applied(results) => {
                        tail.put_u32_le(results.len() as u32);
                        results.iter().for_each(|r| put_result(&mut tail, r));
                    }
                    Decision::TooLarge { value_bytes } => {
                        tail.put_u32_le(REFUSED);
                        tail.put_u64_le(*value_bytes);
                    }
                }
            }
        }
        tail.put_u32_le(self.members.len() as u32);
        for (node, address) in &self.members {
            tail.put_u64_le(*node);
            put_blob(&mut tail, address.as_bytes());
        }
        let forgotten = self.sessions.forgotten.iter();
        tail.put_u32_le(forgotten.len() as u32);
        forgotten.for_each(|client| tail.put_u64_le(client));
        tail.put_u32_le(self.removed.len() as u32);
        self.removed.iter().for_each(|&node| tail.put_u64_le(node));
        SnapshotJob {
            applied_index: self.applied_index,
            pairs: self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tail: tail.freeze(),
        }
    }

    pub fn decode_snapshot(bytes: &Bytes) -> Result<KvStore, SnapshotError> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or(SnapshotError("shorter than its checksum"))?;
        let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body_len]) != stored {
            return Err(SnapshotError("checksum mismatch"));
        }
        let mut r = bytes.slice(..body_len);
        let magic = take(&mut r, 4)?;
        if magic[..] == MAGIC_WITHOUT_FORGOTTEN[..] {
            return Err(SnapshotError(
                "written by an older release (CKV2, without the ids of forgotten clients), \
                 which this one cannot load without risking replicas that disagree: replace \
                 the node (a new id on an empty data dir)",
            ));
        }
        let (refusals, removed) = match &magic[..] {
            m if m == MAGIC => (true, true),
            m if m == MAGIC_WITHOUT_REMOVED => (true, false),
            m if m == MAGIC_WITHOUT_REFUSALS => (false, false),
            _ => return Err(SnapshotError("not a key-value snapshot (bad magic)")),
        };
        let mut store = KvStore {
            applied_index: u64_le(&mut r)?,
            ..KvStore::default()
        };
        let keys = u64_le(&mut r)?;
        // Each pair takes at least its two lengths: a count beyond that is corrupt, and must
        // not size the table.
        if keys > r.remaining() as u64 / 8 {
            return Err(SnapshotError("more keys than bytes"));
        }
        // Sized ahead for what the bytes can hold at 32 per pair, whatever the count says:
        // a corrupt count must not allocate far more than the snapshot's own size.
        store.data.reserve((keys as usize).min(r.remaining() / 32));
        let mut last_key = Bytes::new();
        for _ in 0..keys {
            let key = blob(&mut r)?;
            let value = blob(&mut r)?;
            if key.is_empty() || key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
                return Err(SnapshotError("a key or value beyond its bounds"));
            }
            if key <= last_key {
                return Err(SnapshotError("keys out of order"));
            }
            store.data.insert(&key, Value::copy_of(&value));
            last_key = key;
        }
        let mut sessions = Sessions::default();
        let mut last_client = None;
        let session_count = u64_le(&mut r)?;
        if session_count > SESSIONS_MAX as u64 {
            return Err(SnapshotError("more sessions than a group keeps"));
        }
        for _ in 0..session_count {
            let client = u64_le(&mut r)?;
            if last_client.is_some_and(|last| last >= client) {
                return Err(SnapshotError("sessions out of order"));
            }
            last_client = Some(client);
            let mut session = Session {
                first_unacked: u64_le(&mut r)?,
                last_index: u64_le(&mut r)?,
                ..Session::default()
            };
            let replies = u32_le(&mut r)?;
            if replies as usize > REPLIES_PER_SESSION_MAX {
                return Err(SnapshotError("more replies than a session keeps"));
            }
            let mut weight = 0;
            for _ in 0..replies {
                let sequence = u64_le(&mut r)?;
                let reply = match u32_le(&mut r)? {
                    REFUSED if refusals => Decision::TooLarge {
                        value_bytes: u64_le(&mut r)?,
                    },
                    count if count as usize > OPERATIONS_PER_COMMAND_MAX => {
                        return Err(SnapshotError("more results than a command has operations"));
                    }
                    // Every command has an operation, so every reply a result: one of none
                    // would weigh nothing against the bounds above.
                    0 => return Err(SnapshotError("a reply without results")),
                    count => {
                        // Since refusals are kept, a write whose results could pass the
                        // bound is refused, never applied (review 225): checked as the
                        // values come, before a forged reply costs more (review 227).
                        let mut values_bytes = 0;
                        let results: Results = (0..count)
                            .map(|_| {
                                let result = get_result(&mut r)?;
                                values_bytes += value_bytes(&result);
                                if refusals && values_bytes > WRITE_RESULT_BYTES_MAX {
                                    return Err(SnapshotError(
                                        "a reply's values weigh more than a write's",
                                    ));
                                }
                                Ok(result)
                            })
                            .collect::<Result<_, _>>()?;
                        Decision::Applied(results)
                    }
                };
                if session
                    .replies
                    .back()
                    .is_some_and(|&(last, _)| last >= sequence)
                {
                    return Err(SnapshotError("session replies out of order"));
                }
                weight += reply_bytes(&reply);
                session.replies.push_back((sequence, reply));
                // The bounds `Sessions::record` keeps: one reply may pass the session's.
                if weight > REPLY_BYTES_PER_SESSION_MAX && session.replies.len() > 1 {
                    return Err(SnapshotError(
                        "a session's replies weigh more than it keeps",
                    ));
                }
            }
            sessions.restore(client, session);
            // And those of `Sessions::evict`: one session alone may pass the whole bound.
            // Both checked as the replies come (weights only grow), so a forged snapshot is
            // refused before it costs more memory than a store can hold.
            if sessions.bytes > SESSION_BYTES_MAX && sessions.by_client.len() > 1 {
                return Err(SnapshotError("the sessions weigh more than a group keeps"));
            }
        }
        for _ in 0..u32_le(&mut r)? {
            let node = u64_le(&mut r)?;
            let address = String::from_utf8(blob(&mut r)?.to_vec())
                .map_err(|_| SnapshotError("a member address is not UTF-8"))?;
            store.members.insert(node, address);
        }
        for _ in 0..u32_le(&mut r)? {
            sessions.forgotten.add(u64_le(&mut r)?);
        }
        if removed {
            for _ in 0..u32_le(&mut r)? {
                let node = u64_le(&mut r)?;
                if store.removed.last().is_some_and(|&last| last >= node) {
                    return Err(SnapshotError("removed ids out of order"));
                }
                store.removed.insert(node);
            }
        }
        if r.has_remaining() {
            return Err(SnapshotError("trailing bytes"));
        }
        store.sessions = sessions;
        Ok(store)
    }
}

fn put_blob(out: &mut BytesMut, blob: &[u8]) {
    out.put_u32_le(blob.len() as u32);
    out.put_slice(blob);
}

fn put_result(out: &mut BytesMut, result: &OpResult) {
    match result {
        OpResult::Value(value) => {
            out.put_u8(0);
            put_blob(out, value);
        }
        OpResult::NotFound => out.put_u8(1),
        OpResult::Written => out.put_u8(2),
        OpResult::ConditionFailed { current } => {
            out.put_u8(3);
            out.put_u8(u8::from(current.is_some()));
            if let Some(current) = current {
                put_blob(out, current);
            }
        }
    }
}

/// The value bytes `result` answers with.
fn value_bytes(result: &OpResult) -> usize {
    match result {
        OpResult::Value(value)
        | OpResult::ConditionFailed {
            current: Some(value),
        } => value.len(),
        _ => 0,
    }
}

/// A stored reply. Its values are copies, not slices of `r`: a slice would keep the whole
/// snapshot buffer alive for as long as the session keeps the reply.
fn get_result(r: &mut Bytes) -> Result<OpResult, SnapshotError> {
    let owned_blob = |r: &mut Bytes| match blob(r)? {
        value if value.len() > VALUE_BYTES_MAX => {
            Err(SnapshotError("a reply's value beyond its bound"))
        }
        value => Ok(Bytes::copy_from_slice(&value)),
    };
    Ok(match take(r, 1)?[0] {
        0 => OpResult::Value(owned_blob(r)?),
        1 => OpResult::NotFound,
        2 => OpResult::Written,
        3 => OpResult::ConditionFailed {
            current: match take(r, 1)?[0] {
                0 => None,
                1 => Some(owned_blob(r)?),
                _ => return Err(SnapshotError("bad condition flag")),
            },
        },
        _ => return Err(SnapshotError("unknown result kind")),
    })
}

fn take(r: &mut Bytes, len: usize) -> Result<Bytes, SnapshotError> {
    if r.remaining() < len {
        return Err(SnapshotError("truncated"));
    }
    Ok(r.split_to(len))
}

fn u64_le(r: &mut Bytes) -> Result<u64, SnapshotError> {
    Ok(take(r, 8)?.get_u64_le())
}

fn u32_le(r: &mut Bytes) -> Result<u32, SnapshotError> {
    Ok(take(r, 4)?.get_u32_le())
}

fn blob(r: &mut Bytes) -> Result<Bytes, SnapshotError> {
    let len = u32_le(r)? as usize;
    take(r, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::command::{Command, Op};

    fn populated() -> KvStore {
        let mut kv = KvStore::new();
        for i in 0..50u64 {
            let key = Bytes::from(format!("key{i}"));
            let ops = vec![
                Op::Put {
                    key: key.clone(),
                    value: Bytes::from(vec![i as u8; i as usize]),
                },
                Op::CompareAndSwap {
                    key,
                    expected: None,
                    value: Bytes::new(),
                },
            ];
            let command = Command {
                client_id: i % 7,
                sequence: i / 7 + 1,
                first_unacked: 1,
                ops: ops.into(),
            };
            kv.apply(i + 1, &command.encode(), |_, _| ()).unwrap();
        }
        let added = vec![(1, "127.0.0.1:7000".to_string()), (4, "h:9".to_string())];
        kv.apply_membership(51, added, &[]);
        kv.apply_membership(52, Vec::new(), &[4]);
        kv.retain_members(|node| node != 4);
        for client in [900, 17, 401] {
            kv.sessions.forgotten.add(client);
        }
        let refused = Decision::TooLarge {
            value_bytes: 5 << 20,
        };
        kv.sessions.record(3, 9, 1, 52, refused);
        kv
    }

    /// `bytes`, a snapshot, with its magic replaced by `magic` and its checksum made to fit.
    fn with_magic(bytes: &[u8], magic: &[u8; 4]) -> Bytes {
        let mut old = magic.to_vec();
        old.extend_from_slice(&bytes[4..bytes.len() - 4]);
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        Bytes::from(old)
    }

    /// `kv`'s snapshot in a layout without removed ids (CKV4 or CKV3, by `magic`): `kv`
    /// must hold none.
    fn without_removed(kv: &KvStore, magic: &[u8; 4]) -> Bytes {
        assert!(kv.removed.is_empty());
        let bytes = kv.encode_snapshot();
        // The removed ids' count (0), then the checksum.
        let mut old = with_magic(&bytes, magic).to_vec();
        old.drain(old.len() - 8..old.len() - 4);
        with_magic(&old, magic)
    }

    /// A snapshot written before refusals were remembered (CKV3) loads as one without
    /// refusals; one that holds the refusal mark under that magic is corrupt.
    #[test]
    fn a_snapshot_of_the_layout_without_refusals_loads() {
        let mut kv = populated();
        kv.removed.clear();
        kv.sessions.by_client.remove(&3);
        kv.sessions.bytes = kv.sessions.by_client.values().map(|s| s.bytes).sum();
        let restored = KvStore::decode_snapshot(&without_removed(&kv, b"CKV3"));
        assert_eq!(restored.unwrap(), kv);
        let mut with_refusal = populated();
        with_refusal.removed.clear();
        assert!(KvStore::decode_snapshot(&without_removed(&with_refusal, b"CKV3")).is_err());
    }

    /// A snapshot written before removed ids were kept (CKV4) loads as one without them;
    /// this layout keeps them, in order, and refuses them out of order.
    #[test]
    fn a_snapshot_keeps_the_removed_ids_and_the_layout_before_loads_without() {
        let mut kv = populated();
        assert!(kv.was_removed(4) && !kv.was_removed(1));
        let restored = KvStore::decode_snapshot(&kv.encode_snapshot()).unwrap();
        assert!(restored.was_removed(4));
        kv.removed.clear();
        let restored = KvStore::decode_snapshot(&without_removed(&kv, b"CKV4")).unwrap();
        assert_eq!(restored, kv);
        kv.removed.extend([5, 7]);
        let mut swapped = kv.encode_snapshot().to_vec();
        let at = swapped.len() - 4 - 16;
        swapped[at..at + 16].rotate_left(8);
        let swapped = with_magic(&swapped, MAGIC);
        let error = KvStore::decode_snapshot(&swapped).unwrap_err();
        assert!(
            error.to_string().contains("removed ids out of order"),
            "{error}"
        );
    }

    #[test]
    fn a_snapshot_restores_data_sessions_and_members() {
        let kv = populated();
        assert_eq!(kv.members().len(), 1);
        let bytes = kv.encode_snapshot();
        // Into the caller's buffer, asked for at the exact size.
        let mut asked = 0;
        let into = kv.snapshot_job().encode_into(|bytes| {
            asked = bytes;
            BytesMut::with_capacity(bytes)
        });
        assert_eq!((into.clone(), asked), (bytes.clone(), bytes.len()));
        let restored = KvStore::decode_snapshot(&bytes).unwrap();
        assert_eq!(restored, kv);
        // Same state, same bytes: the layout is deterministic.
        assert_eq!(restored.encode_snapshot(), bytes);
        let forgotten: Vec<u64> = restored.sessions.forgotten.iter().collect();
        assert_eq!(
            forgotten,
            [900, 17, 401],
            "in the order they were forgotten"
        );
    }

    /// A snapshot written before forgotten clients were kept (a node's disk, or a peer of
    /// the release before) is refused, saying so: loaded, it would leave this replica with
    /// other forgotten clients than the others.
    #[test]
    fn a_snapshot_of_the_layout_before_is_refused_saying_why() {
        let bytes = populated().encode_snapshot();
        // Its forgotten clients (three) and removed ids (one), counts and all.
        let without_forgotten = 4 + 3 * 8 + 4 + 8;
        let mut old = b"CKV2".to_vec();
        old.extend_from_slice(&bytes[4..bytes.len() - 4 - without_forgotten]);
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        let error = KvStore::decode_snapshot(&Bytes::from(old)).unwrap_err();
        assert!(error.to_string().contains("older release (CKV2"), "{error}");
    }

    #[test]
    fn restored_replies_hold_no_part_of_the_snapshot_buffer() {
        let bytes = populated().encode_snapshot();
        let restored = KvStore::decode_snapshot(&bytes).unwrap();
        drop(bytes);
        let mut values = 0;
        for session in restored.sessions.by_client.values() {
            for (_, reply) in &session.replies {
                let Decision::Applied(results) = reply else {
                    continue;
                };
                for result in results.iter() {
                    if let OpResult::ConditionFailed { current: Some(v) } | OpResult::Value(v) =
                        result
                        && !v.is_empty()
                    {
                        values += 1;
                        assert!(v.is_unique(), "a reply value shares the snapshot buffer");
                    }
                }
            }
        }
        assert!(values > 0, "the snapshot holds replies with values");
    }

    /// A snapshot with a checksum that fits, of `pairs`, and a session for each of `clients`
    /// with `replies` replies of `results` results each ("not found", a byte each).
    fn forged(pairs: &[(&[u8], &[u8])], clients: &[u64], replies: u32, results: u32) -> Bytes {
        forged_with(pairs, clients, replies, results, &[1])
    }

    /// As [`forged`], each result encoded as `result`.
    fn forged_with(
        pairs: &[(&[u8], &[u8])],
        clients: &[u64],
        replies: u32,
        results: u32,
        result: &[u8],
    ) -> Bytes {
        let mut b = MAGIC.to_vec();
        b.extend(9u64.to_le_bytes());
        b.extend((pairs.len() as u64).to_le_bytes());
        for (key, value) in pairs {
            for blob in [key, value] {
                b.extend((blob.len() as u32).to_le_bytes());
                b.extend(*blob);
            }
        }
        b.extend((clients.len() as u64).to_le_bytes());
        for &client in clients {
            for field in [client, 1, 9] {
                b.extend(field.to_le_bytes());
            }
            b.extend(replies.to_le_bytes());
            for sequence in 1..=u64::from(replies) {
                b.extend(sequence.to_le_bytes());
                b.extend(results.to_le_bytes());
                for _ in 0..results {
                    b.extend(result);
                }
            }
        }
        b.extend([0; 12]); // no members, no forgotten clients, no removed ids
        let crc = crc32fast::hash(&b);
        b.extend(crc.to_le_bytes());
        Bytes::from(b)
    }

    /// Goal: a snapshot is read only if the store could have written it: a count beyond what
    /// requests leave, a key or value past its bound, keys or sessions out of order (so
    /// repeated) are refused (found in review: a reply of 64 M one-byte results, valid
    /// otherwise, cost several GiB to decode).
    #[test]
    fn a_snapshot_beyond_what_the_store_holds_is_refused() {
        let pairs: &[(&[u8], &[u8])] = &[(b"a", b"1"), (b"b", b"2")];
        let loaded = KvStore::decode_snapshot(&forged(pairs, &[3, 7], 2, 3)).unwrap();
        assert_eq!(loaded.get(b"b"), OpResult::Value(Bytes::from_static(b"2")));
        let (long_key, big_value) = (vec![7; KEY_BYTES_MAX + 1], vec![7; VALUE_BYTES_MAX + 1]);
        let results = OPERATIONS_PER_COMMAND_MAX as u32;
        let replies = REPLIES_PER_SESSION_MAX as u32;
        assert!(KvStore::decode_snapshot(&forged(pairs, &[3], 1, results)).is_ok());
        assert!(KvStore::decode_snapshot(&forged(pairs, &[3], replies, 1)).is_ok());
        let refused = [
            forged(pairs, &[3], 1, results + 1),
            forged(pairs, &[3], replies + 1, 1),
            // Found in review: replies of no results weighed nothing, so 4,096 of them in
            // each of 65,536 sessions loaded (billions of ring slots).
            forged(pairs, &[3], 1, 0),
            forged(&[(b"", b"1")], &[], 0, 0),
            forged(&[(&long_key, b"1")], &[], 0, 0),
            forged(&[(b"a", &big_value)], &[], 0, 0),
            forged(&[(b"b", b"1"), (b"a", b"1")], &[], 0, 0),
            forged(&[(b"a", b"1"), (b"a", b"2")], &[], 0, 0),
            forged(pairs, &[7, 3], 0, 0),
            forged(pairs, &[7, 7], 0, 0),
        ];
        for (case, bytes) in refused.iter().enumerate() {
            assert!(KvStore::decode_snapshot(bytes).is_err(), "case {case}");
        }
    }

    /// Goal: the bounds on what sessions weigh and hold hold for a snapshot too (found in
    /// review: a forged one packed a node's memory with millions of one-byte results, or gave
    /// a retry a value no store holds). Method: at each bound and one past it.
    #[test]
    fn sessions_beyond_the_stores_bounds_are_refused() {
        let pairs: &[(&[u8], &[u8])] = &[(b"a", b"1")];
        let results = OPERATIONS_PER_COMMAND_MAX as u32;
        // One reply of `results` "not found" results weighs this much.
        let reply_weight = reply_bytes(&Decision::Applied(
            vec![OpResult::NotFound; results as usize].into(),
        ));
        let replies_kept = (REPLY_BYTES_PER_SESSION_MAX / reply_weight) as u32;
        let sessions_kept = (SESSION_BYTES_MAX / (replies_kept as usize * reply_weight)) as u64;
        let clients = |n: u64| (1..=n).collect::<Vec<u64>>();
        let value = |len: usize| {
            let mut result = vec![0];
            result.extend((len as u32).to_le_bytes());
            result.extend(vec![7; len]);
            result
        };
        let values_per_write = (WRITE_RESULT_BYTES_MAX / VALUE_BYTES_MAX) as u32;
        let cases = [
            (forged(pairs, &clients(SESSIONS_MAX as u64), 0, 0), true),
            (
                forged(pairs, &clients(SESSIONS_MAX as u64 + 1), 0, 0),
                false,
            ),
            (forged(pairs, &[3], replies_kept, results), true),
            (forged(pairs, &[3], replies_kept + 1, results), false),
            (
                forged(pairs, &clients(sessions_kept), replies_kept, results),
                true,
            ),
            (
                forged(pairs, &clients(sessions_kept + 1), replies_kept, results),
                false,
            ),
            (
                forged_with(pairs, &[3], 1, 1, &value(VALUE_BYTES_MAX)),
                true,
            ),
            (
                forged_with(pairs, &[3], 1, 1, &value(VALUE_BYTES_MAX + 1)),
                false,
            ),
            // Review 225: a reply whose values pass what a write may answer with (a write
            // that could is refused, not applied).
            (
                forged_with(pairs, &[3], 1, values_per_write, &value(VALUE_BYTES_MAX)),
                true,
            ),
            (
                forged_with(
                    pairs,
                    &[3],
                    1,
                    values_per_write + 1,
                    &value(VALUE_BYTES_MAX),
                ),
                false,
            ),
        ];
        for (case, (bytes, loads)) in cases.iter().enumerate() {
            let decoded = KvStore::decode_snapshot(bytes);
            assert_eq!(decoded.is_ok(), *loads, "case {case}: {:?}", decoded.err());
        }
        // Refused as soon as the weight passes the bound, not after every session is read
        // (a forged count of sessions could fill memory first): here the snapshot ends, its
        // checksum fitting, in the middle of the session after the one that passes.
        let whole = forged(pairs, &clients(sessions_kept + 2), replies_kept, results);
        let head_bytes = 4 + 8 + 8 + 10 + 8;
        let session_bytes = 28 + replies_kept as usize * (12 + results as usize);
        let mut cut =
            whole[..head_bytes + (sessions_kept as usize + 1) * session_bytes + 100].to_vec();
        cut.extend(crc32fast::hash(&cut).to_le_bytes());
        let refused = KvStore::decode_snapshot(&Bytes::from(cut)).expect_err("past the bound");
        assert!(refused.0.contains("weigh more"), "{refused}");
    }

    #[test]
    fn any_flipped_bit_or_truncation_is_refused() {
        let bytes = populated().encode_snapshot();
        for at in (0..bytes.len()).step_by(13) {
            let mut corrupt = bytes.to_vec();
            corrupt[at] ^= 0x10;
            assert!(
                KvStore::decode_snapshot(&Bytes::from(corrupt)).is_err(),
                "{at}"
            );
        }
        for len in (0..bytes.len()).step_by(17) {
            assert!(
                KvStore::decode_snapshot(&bytes.slice(..len)).is_err(),
                "{len}"
            );
        }
    }
}
