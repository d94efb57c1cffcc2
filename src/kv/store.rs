//! The replicated key-value state machine of one group: apply committed commands, serve reads.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use foldhash::{HashMap, HashMapExt};

use super::blob::Value;
use super::command::{Command, CommandError, CommandRef, OpRef};
use super::limits::{VALUE_BYTES_MAX, WRITE_RESULT_BYTES_MAX};
use super::session::{Admission, Decision, Results, Sessions};
use super::table::Table;

thread_local! {
    /// `[Written]`, the reply of most writes.
    static WRITTEN: Results = Arc::new([OpResult::Written]);
}

/// `[Written]`, shared: the results of a one-operation write, with no allocation.
pub fn written() -> Results {
    WRITTEN.with(Arc::clone)
}

/// The outcome of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Value(Bytes),
    NotFound,
    Written,
    /// A compare-and-swap or put-if-absent found another value (`None`: no value).
    ConditionFailed {
        current: Option<Bytes>,
    },
}

/// The reply to one applied entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// One result per operation, in order (applied now, or earlier and remembered).
    Results(Results),
    /// The request's reply is no longer known and it was not applied again: the client's
    /// session was evicted or it acknowledged this request already.
    SessionExpired,
    /// Not applied: its results could carry more value bytes (this many, at most) than one
    /// write may answer with ([`WRITE_RESULT_BYTES_MAX`]).
    TooLarge { value_bytes: u64 },
}

impl From<Decision> for Reply {
    fn from(decision: Decision) -> Reply {
        match decision {
            Decision::Applied(results) => Reply::Results(results),
            Decision::TooLarge { value_bytes } => Reply::TooLarge { value_bytes },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) data: Table,
    pub(crate) sessions: Sessions,
    pub(crate) applied_index: u64,
    /// Where each member of the group can be reached (node id → base address), as the
    /// group's conf changes said: part of the replicated state, so it survives compaction.
    pub(crate) members: BTreeMap<u64, String>,
    /// The nodes a conf change of the group removed: an id is never used again, so the
    /// group's leader refuses to add one of them back (a node whose join a remove cut short,
    /// restarted with its `--join`). Replicated, so every leader knows them.
    pub(crate) removed: BTreeSet<u64>,
}

impl KvStore {
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// The log index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What the keys and values weigh: their bytes, and 64 for each key's slot (the memory a
    /// write quota counts; the table's spare slots and the sessions' answers are left out).
    pub fn data_bytes(&self) -> u64 {
        self.data.bytes() as u64
    }

    /// About what a snapshot file of this state takes: each pair's key and value with their
    /// 8 bytes of lengths (where [`KvStore::data_bytes`] counts a 64-byte slot), and a block
    /// for the file's header (the sessions' answers are left out).
    pub fn snapshot_bytes_estimate(&self) -> u64 {
        let slots_over_lengths = 56 * self.data.len() as u64;
        (self.data_bytes().saturating_sub(slots_over_lengths)).saturating_add(4096)
    }

    /// The answer `command` got, if it was decided before (applied or refused) and its
    /// answer is kept: applied again, it changes nothing and gets that answer. (One whose
    /// session is unknown now may find it made by writes applied meanwhile.)
    pub fn decided(&self, command: &Command) -> Option<Reply> {
        let Command {
            client_id,
            sequence,
            first_unacked,
            ..
        } = *command;
        match self.sessions.admit(client_id, sequence, first_unacked) {
            Admission::Duplicate(decision) => Some(decision.into()),
            Admission::Apply | Admission::Expired => None,
        }
    }

    /// Apply the commands of the entry at `index` (one or more: see [`CommandRef::read_all`]) in
    /// order, handing each with its reply to `on_reply`. Entries must come in log order.
    ///
    /// A payload that is not a run of commands is an error the caller must treat as fatal for
    /// the group: every command was checked before it was proposed, so it means corruption.
    pub fn apply(
        &mut self,
        index: u64,
        payload: &[u8],
        mut on_reply: impl FnMut(&CommandRef<'_>, Reply),
    ) -> Result<(), CommandError> {
        assert!(
            index > self.applied_index,
            "{index} after {}",
            self.applied_index
        );
        // Read in place: every command is checked before anything is applied, with no
        // allocation per command and no buffer shared per key, and each operation is read
        // once, for the prefetch and the apply.
        let mut ops: SmallVec<[OpRef<'_>; 8]> = SmallVec::new();
        let commands = CommandRef::read_all(payload, &mut ops)?;
        if commands.len() > 1 {
            // Ask for every key's slot before applying: their cache misses overlap, where the
            // apply loop below would wait for one at a time.
            self.data.prefetch(ops.iter().map(OpRef::key));
        }
        let mut rest = &ops[..];
        for command in &commands {
            let (mine, after) = rest.split_at(command.op_count());
            rest = after;
            let reply = self.apply_command(index, command, mine);
            on_reply(command, reply);
        }
        self.applied_index = index;
        Ok(())
    }

    fn apply_command(&mut self, index: u64, command: &CommandRef<'_>, ops: &[OpRef<'_>]) -> Reply {
        match self
            .sessions
            .admit(command.client_id, command.sequence, command.first_unacked)
        {
            Admission::Duplicate(decision) => decision.into(),
            Admission::Expired => Reply::SessionExpired,
            Admission::Apply => {
                if let Some(value_bytes) = self.results_beyond_bound(ops) {
                    // Refused whole: nothing of it is applied, and only the refusal is
                    // remembered (not a reply of values).
                    let value_bytes = value_bytes as u64;
                    self.sessions.record(
                        command.client_id,
                        command.sequence,
                        command.first_unacked,
                        index,
                        Decision::TooLarge { value_bytes },
                    );
                    return Reply::TooLarge { value_bytes };
                }
                let results: Results = match *ops {
                    [op] => match self.execute(op) {
                        // The common reply, shared: no allocation now, no cold free when the
                        // session forgets it.
                        OpResult::Written => written(),
                        result => Arc::new([result]),
                    },
                    _ => ops.iter().map(|&op| self.execute(op)).collect(),
                };
                self.sessions.record(
                    command.client_id,
                    command.sequence,
                    command.first_unacked,
                    index,
                    Results::clone(&results),
                );
                Reply::Results(results)
            }
        }
    }

    /// The value bytes `ops` could answer with, when more than [`WRITE_RESULT_BYTES_MAX`]:
    /// a bound from the state now, a key the request writes counted at the larger of its
    /// sizes before and after. It depends on the applied state alone, so every replica
    /// refuses the same requests.
    fn results_beyond_bound(&self, ops: &[OpRef<'_>]) -> Option<usize> {
        let returning = ops
            .iter()
            .filter(|op| !matches!(op, OpRef::Put { .. } | OpRef::Delete { .. }))
            .count();
        if returning * VALUE_BYTES_MAX <= WRITE_RESULT_BYTES_MAX {
            return None;
        }
        let mut sizes: HashMap<&[u8], usize> = HashMap::new();
        let mut bytes = 0;
        for op in ops {
            let size_now = |sizes: &HashMap<&[u8], usize>, key: &[u8]| match sizes.get(key) {
                Some(&size) => size,
                None => self.data.get(key).map_or(0, |value| value.len()),
            };
            match *op {
                OpRef::Get { key } => bytes += size_now(&sizes, key),
                OpRef::Put { key, value } => {
                    sizes.insert(key, value.len());
                }
                OpRef::Delete { key } => {
                    sizes.insert(key, 0);
                }
                OpRef::CompareAndSwap { key, value, .. } | OpRef::PutIfAbsent { key, value } => {
                    let now = size_now(&sizes, key);
                    bytes += now;
                    sizes.insert(key, now.max(value.len()));
                }
            }
        }
        (bytes > WRITE_RESULT_BYTES_MAX).then_some(bytes)
    }

    /// Mark an entry that carries no command (a leader's no-op, a conf change) as applied.
    pub fn skip(&mut self, index: u64) {
        assert!(index > self.applied_index);
        self.applied_index = index;
    }

    /// Apply the conf change at `index`: the addresses of the nodes it adds, and the nodes
    /// it removes. A node it removes keeps its address until [`KvStore::retain_members`]
    /// drops it, once the group no longer counts it (a voter leaving through a joint
    /// configuration votes until the joint configuration is left).
    pub fn apply_membership(&mut self, index: u64, added: Vec<(u64, String)>, removed: &[u64]) {
        self.skip(index);
        self.members.extend(added);
        self.removed.extend(removed);
    }

    /// Whether a conf change of the group removed `node` (see [`KvStore::removed`]).
    pub fn was_removed(&self, node: u64) -> bool {
        self.removed.contains(&node)
    }

    /// The nodes a conf change of the group removed.
    pub fn removed(&self) -> &BTreeSet<u64> {
        &self.removed
    }

    /// Keep the addresses of the nodes `keep` says yes to.
    pub fn retain_members(&mut self, keep: impl Fn(u64) -> bool) {
        self.members.retain(|&node, _| keep(node));
    }

    /// Every member's base address, by node id.
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// Read without going through the log: the caller decides whether that is linearizable
    /// (after ReadIndex), lease-based or stale.
    pub fn get(&self, key: &[u8]) -> OpResult {
        match self.data.get(key) {
            Some(value) => OpResult::Value(value.to_bytes()),
            None => OpResult::NotFound,
        }
    }

    fn execute(&mut self, op: OpRef<'_>) -> OpResult {
        match op {
            OpRef::Get { key } => self.get(key),
            OpRef::Put { key, value } => {
                self.insert(key, value);
                OpResult::Written
            }
            OpRef::Delete { key } => match self.data.remove(key) {
                Some(_) => OpResult::Written,
                None => OpResult::NotFound,
            },
            OpRef::CompareAndSwap {
                key,
                expected,
                value,
            } => {
                let current = self.data.get(key);
                if current.map(|c| &c[..]) == expected {
                    self.insert(key, value);
                    OpResult::Written
                } else {
                    OpResult::ConditionFailed {
                        current: current.map(Value::to_bytes),
                    }
                }
            }
            OpRef::PutIfAbsent { key, value } => match self.data.get(key) {
                Some(current) => OpResult::ConditionFailed {
                    current: Some(current.to_bytes()),
                },
                None => {
                    self.insert(key, value);
                    OpResult::Written
                }
            },
        }
    }

    /// Keys and values arrive as slices of a whole received entry; copying them here lets
    /// that buffer go instead of pinning it for as long as the key lives.
    fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.data.insert(key, Value::copy_of(value));
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::kv::{Command, Op};
    use smallvec::smallvec;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn command(client_id: u64, sequence: u64, ops: Vec<Op>) -> Bytes {
        Command {
            client_id,
            sequence,
            first_unacked: sequence,
            ops: ops.into(),
        }
        .encode()
    }

    /// Apply an entry of one command and return its reply.
    fn apply_one(kv: &mut KvStore, index: u64, entry: &Bytes) -> Reply {
        let mut replies = Vec::new();
        kv.apply(index, entry, |_, reply| replies.push(reply))
            .unwrap();
        assert_eq!(replies.len(), 1);
        replies.pop().unwrap()
    }

    fn results(reply: Reply) -> Vec<OpResult> {
        match reply {
            Reply::Results(results) => results.to_vec(),
            other => panic!("expected results, got {other:?}"),
        }
    }

    /// Goal: a write whose answer could carry more values than one write may is refused
    /// whole on every replica alike, unapplied, and only the refusal is remembered (its
    /// reply was kept for retries, and one heavy reply forgot every other client's
    /// session); the same write with a get fewer is applied. A key written earlier in the
    /// request counts at its larger size.
    #[test]
    fn a_write_whose_answer_could_carry_too_many_values_is_refused_unapplied() {
        let mut kv = KvStore::new();
        let mib = Bytes::from(vec![7u8; VALUE_BYTES_MAX]);
        let put = |key: &str, value: &Bytes| Op::Put {
            key: b(key),
            value: value.clone(),
        };
        let gets = |n| (0..n).map(|_| Op::Get { key: b("big") });
        let reply = apply_one(&mut kv, 1, &command(1, 1, vec![put("big", &mib)]));
        assert_eq!(results(reply), [OpResult::Written]);
        let limit = WRITE_RESULT_BYTES_MAX / VALUE_BYTES_MAX;
        // Refused: the put of "small" is not applied either.
        let ops = std::iter::once(put("small", &b("x"))).chain(gets(limit + 1));
        let reply = apply_one(&mut kv, 2, &command(1, 2, ops.collect()));
        let refused = Reply::TooLarge {
            value_bytes: ((limit + 1) * VALUE_BYTES_MAX) as u64,
        };
        assert_eq!(reply, refused);
        assert_eq!(kv.get(b"small"), OpResult::NotFound);
        // The key made small first, then read more times than the limit: within it.
        let ops = std::iter::once(put("big", &b("x"))).chain(gets(limit + 1));
        let reply = apply_one(&mut kv, 3, &command(1, 3, ops.collect()));
        assert_eq!(results(reply).len(), limit + 2);
        // Made big first, then read: counted at its new size.
        let ops = std::iter::once(put("big", &mib)).chain(gets(limit + 1));
        let reply = apply_one(&mut kv, 4, &command(1, 4, ops.collect()));
        assert!(matches!(reply, Reply::TooLarge { .. }), "{reply:?}");
        assert_eq!(kv.get(b"big"), OpResult::Value(b("x")));
        // Conditions that may fail return the value: as many as gets.
        let cas = |_| Op::CompareAndSwap {
            key: b("big"),
            expected: Some(b("other")),
            value: mib.clone(),
        };
        let reply = apply_one(&mut kv, 5, &command(1, 5, (0..=limit).map(cas).collect()));
        assert!(matches!(reply, Reply::TooLarge { .. }), "{reply:?}");
        let reply = apply_one(&mut kv, 6, &command(1, 6, (0..limit).map(cas).collect()));
        assert_eq!(results(reply).len(), limit);
    }

    /// Goal: a request refused as too large is refused again, not applied, when a copy of
    /// it applies later (found in review: a retry proposed on a new leader before the first
    /// copy applied was judged against a later state; after a delete it fit, and it was
    /// applied while its client had been told it was not). Method: a request of gets and a
    /// put is refused; a delete makes it fit; the same request (client and sequence)
    /// applies again: refused, its put not applied; the store's snapshot keeps the refusal.
    #[test]
    fn a_refused_request_applied_again_is_refused_again() {
        let mut kv = KvStore::new();
        let mib = Bytes::from(vec![7u8; VALUE_BYTES_MAX]);
        let big = Op::Put {
            key: b("big"),
            value: mib,
        };
        assert_eq!(
            results(apply_one(&mut kv, 1, &command(1, 1, vec![big]))),
            [OpResult::Written]
        );
        let limit = WRITE_RESULT_BYTES_MAX / VALUE_BYTES_MAX;
        let put_small = Op::Put {
            key: b("small"),
            value: b("x"),
        };
        let gets = (0..=limit).map(|_| Op::Get { key: b("big") });
        let request = command(2, 1, std::iter::once(put_small).chain(gets).collect());
        let first = apply_one(&mut kv, 2, &request);
        assert!(matches!(first, Reply::TooLarge { .. }), "{first:?}");
        let delete = Op::Delete { key: b("big") };
        assert_eq!(
            results(apply_one(&mut kv, 3, &command(3, 1, vec![delete]))),
            [OpResult::Written]
        );
        let restored = KvStore::decode_snapshot(&kv.encode_snapshot()).unwrap();
        for mut replica in [kv, restored] {
            assert_eq!(apply_one(&mut replica, 4, &request), first);
            assert_eq!(replica.get(b"small"), OpResult::NotFound);
        }
    }

    /// Goal (review 296): the estimate of a snapshot file's bytes counts a pair as its file
    /// does (8 bytes of lengths, not a 64-byte slot), within a block of the file's size, so
    /// the room kept for snapshots is not the slots' overhead again.
    #[test]
    fn a_snapshot_file_takes_about_what_its_estimate_says() {
        let mut kv = KvStore::new();
        let ops = (0..1_000)
            .map(|i| Op::Put {
                key: b(&format!("key-{i}")),
                value: Bytes::from(vec![7u8; 100]),
            })
            .collect();
        apply_one(&mut kv, 1, &command(1, 1, ops));
        let estimate = kv.snapshot_bytes_estimate();
        let file = kv.snapshot_job().encode().len() as u64;
        assert!(
            estimate >= file && estimate - file <= 4096,
            "{estimate} for {file}"
        );
        assert!(
            kv.data_bytes() > estimate + 50_000,
            "the slots are not counted"
        );
    }

    #[test]
    fn put_get_delete() {
        let mut kv = KvStore::new();
        let put = Op::Put {
            key: b("a"),
            value: b("1"),
        };
        let reply = apply_one(&mut kv, 1, &command(1, 1, vec![put]));
        assert_eq!(results(reply), [OpResult::Written]);
        assert_eq!(kv.get(b"a"), OpResult::Value(b("1")));
        let ops = vec![Op::Delete { key: b("a") }, Op::Delete { key: b("a") }];
        let reply = apply_one(&mut kv, 2, &command(1, 2, ops));
        assert_eq!(results(reply), [OpResult::Written, OpResult::NotFound]);
        assert_eq!(kv.get(b"a"), OpResult::NotFound);
    }

    #[test]
    fn compare_and_swap_and_put_if_absent_agree_on_one_value() {
        let mut kv = KvStore::new();
        let first = |value| Op::PutIfAbsent {
            key: b("leader"),
            value: b(value),
        };
        let reply = apply_one(&mut kv, 1, &command(1, 1, vec![first("n1")]));
        assert_eq!(results(reply), [OpResult::Written]);
        let reply = apply_one(&mut kv, 2, &command(2, 1, vec![first("n2")]));
        assert_eq!(
            results(reply),
            [OpResult::ConditionFailed {
                current: Some(b("n1"))
            }]
        );
        let cas = |expected: Option<&str>, value| Op::CompareAndSwap {
            key: b("leader"),
            expected: expected.map(b),
            value: b(value),
        };
        let reply = apply_one(&mut kv, 3, &command(2, 2, vec![cas(Some("n2"), "x")]));
        assert!(matches!(
            results(reply)[0],
            OpResult::ConditionFailed { .. }
        ));
        let reply = apply_one(&mut kv, 4, &command(2, 3, vec![cas(Some("n1"), "n2")]));
        assert_eq!(results(reply), [OpResult::Written]);
        let reply = apply_one(&mut kv, 5, &command(3, 1, vec![cas(None, "n3")]));
        assert!(matches!(
            results(reply)[0],
            OpResult::ConditionFailed { .. }
        ));
        assert_eq!(kv.get(b"leader"), OpResult::Value(b("n2")));
    }

    #[test]
    fn a_retried_request_is_answered_from_memory_not_applied_twice() {
        let mut kv = KvStore::new();
        let cas = Op::CompareAndSwap {
            key: b("k"),
            expected: None,
            value: b("v"),
        };
        let entry = command(5, 1, vec![cas]);
        let first = apply_one(&mut kv, 1, &entry);
        // The reply was lost; the client retries the same request, which commits again.
        let retry = apply_one(&mut kv, 2, &entry);
        assert_eq!(first, retry);
        assert_eq!(results(retry), [OpResult::Written]);
    }

    #[test]
    fn a_corrupt_entry_is_an_error_not_a_panic() {
        let mut kv = KvStore::new();
        let garbage = Bytes::from_static(b"garbage");
        assert!(kv.apply(1, &garbage, |_, _| panic!("no reply")).is_err());
        assert_eq!(kv.applied_index(), 0);
    }

    #[test]
    fn an_entry_of_several_commands_applies_each_once_in_order() {
        let mut kv = KvStore::new();
        let put = |client, sequence, value| Command {
            client_id: client,
            sequence,
            first_unacked: 1,
            ops: smallvec![Op::Put {
                key: b("k"),
                value: b(value),
            }],
        };
        let mut entry = BytesMut::new();
        put(1, 1, "a").encode_into(&mut entry);
        put(2, 1, "b").encode_into(&mut entry);
        // Client 1's retry of the same request, batched into the same entry: answered from
        // its session, not applied again (so "b" stays).
        put(1, 1, "a").encode_into(&mut entry);
        let mut replies = Vec::new();
        kv.apply(7, &entry.freeze(), |command, reply| {
            replies.push((command.client_id, results(reply)))
        })
        .unwrap();
        let written = vec![OpResult::Written];
        assert_eq!(
            replies,
            [(1, written.clone()), (2, written.clone()), (1, written)]
        );
        assert_eq!(kv.get(b"k"), OpResult::Value(b("b")));
        assert_eq!(kv.applied_index(), 7);
    }
}
