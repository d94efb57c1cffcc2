//! The replicated key-value state machine of one group: apply committed commands, serve reads.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::blob::Blob;
use super::command::{Command, CommandError, Op};
use super::session::{Admission, Results, Sessions};

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
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) data: HashMap<Blob, Blob>,
    pub(crate) sessions: Sessions,
    pub(crate) applied_index: u64,
    /// Where each member of the group can be reached (node id → base address), as the
    /// group's conf changes said: part of the replicated state, so it survives compaction.
    pub(crate) members: BTreeMap<u64, String>,
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

    /// Apply the command in the entry at `index`. Entries must come in log order.
    ///
    /// A payload that is not a command is an error the caller must treat as fatal for the
    /// group: every command was checked before it was proposed, so it means corruption.
    pub fn apply(&mut self, index: u64, payload: &Bytes) -> Result<(Command, Reply), CommandError> {
        debug_assert!(
            index > self.applied_index,
            "{index} after {}",
            self.applied_index
        );
        let command = Command::decode(payload)?;
        self.applied_index = index;
        let reply =
            match self
                .sessions
                .admit(command.client_id, command.sequence, command.first_unacked)
            {
                Admission::Duplicate(results) => Reply::Results(results),
                Admission::Expired => Reply::SessionExpired,
                Admission::Apply => {
                    let results: Results = command.ops.iter().map(|op| self.execute(op)).collect();
                    self.sessions.record(
                        command.client_id,
                        command.sequence,
                        command.first_unacked,
                        index,
                        Results::clone(&results),
                    );
                    Reply::Results(results)
                }
            };
        Ok((command, reply))
    }

    /// Mark an entry that carries no command (a leader's no-op, a conf change) as applied.
    pub fn skip(&mut self, index: u64) {
        debug_assert!(index > self.applied_index);
        self.applied_index = index;
    }

    /// Apply the conf change at `index`: `added` nodes with their addresses, `removed` nodes.
    pub fn apply_membership(&mut self, index: u64, added: Vec<(u64, String)>, removed: &[u64]) {
        self.skip(index);
        self.members.extend(added);
        for node in removed {
            self.members.remove(node);
        }
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

    fn execute(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Get { key } => self.get(key),
            Op::Put { key, value } => {
                self.insert(key, value);
                OpResult::Written
            }
            Op::Delete { key } => match self.data.remove(&key[..]) {
                Some(_) => OpResult::Written,
                None => OpResult::NotFound,
            },
            Op::CompareAndSwap {
                key,
                expected,
                value,
            } => {
                let current = self.data.get(&key[..]);
                if current.map(|c| &c[..]) == expected.as_deref() {
                    self.insert(key, value);
                    OpResult::Written
                } else {
                    OpResult::ConditionFailed {
                        current: current.map(Blob::to_bytes),
                    }
                }
            }
            Op::PutIfAbsent { key, value } => match self.data.get(&key[..]) {
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
        let value = Blob::copy_of(value);
        match self.data.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                self.data.insert(Blob::copy_of(key), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn command(client_id: u64, sequence: u64, ops: Vec<Op>) -> Bytes {
        Command {
            client_id,
            sequence,
            first_unacked: sequence,
            ops,
        }
        .encode()
    }

    fn results(reply: Reply) -> Vec<OpResult> {
        match reply {
            Reply::Results(results) => results.to_vec(),
            Reply::SessionExpired => panic!("session expired"),
        }
    }

    #[test]
    fn put_get_delete() {
        let mut kv = KvStore::new();
        let put = Op::Put {
            key: b("a"),
            value: b("1"),
        };
        let (_, reply) = kv.apply(1, &command(1, 1, vec![put])).unwrap();
        assert_eq!(results(reply), [OpResult::Written]);
        assert_eq!(kv.get(b"a"), OpResult::Value(b("1")));
        let ops = vec![Op::Delete { key: b("a") }, Op::Delete { key: b("a") }];
        let (_, reply) = kv.apply(2, &command(1, 2, ops)).unwrap();
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
        let (_, reply) = kv.apply(1, &command(1, 1, vec![first("n1")])).unwrap();
        assert_eq!(results(reply), [OpResult::Written]);
        let (_, reply) = kv.apply(2, &command(2, 1, vec![first("n2")])).unwrap();
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
        let (_, reply) = kv
            .apply(3, &command(2, 2, vec![cas(Some("n2"), "x")]))
            .unwrap();
        assert!(matches!(
            results(reply)[0],
            OpResult::ConditionFailed { .. }
        ));
        let (_, reply) = kv
            .apply(4, &command(2, 3, vec![cas(Some("n1"), "n2")]))
            .unwrap();
        assert_eq!(results(reply), [OpResult::Written]);
        let (_, reply) = kv.apply(5, &command(3, 1, vec![cas(None, "n3")])).unwrap();
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
        let (_, first) = kv.apply(1, &entry).unwrap();
        // The reply was lost; the client retries the same request, which commits again.
        let (_, retry) = kv.apply(2, &entry).unwrap();
        assert_eq!(first, retry);
        assert_eq!(results(retry), [OpResult::Written]);
    }

    #[test]
    fn a_corrupt_entry_is_an_error_not_a_panic() {
        let mut kv = KvStore::new();
        assert!(kv.apply(1, &Bytes::from_static(b"garbage")).is_err());
        assert_eq!(kv.applied_index(), 0);
    }
}
