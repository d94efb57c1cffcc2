//! Linearizability of one register's history (one key of the store): Wing and Gong's search
//! with Lowe's cache of visited configurations, as Knossos and Porcupine do it.
//!
//! A history is what clients saw: each operation with the time it was invoked and the time
//! its answer came, or no answer (a timeout, a broken connection: the operation may have
//! taken effect at any time after its invocation, or never). The history is linearizable if
//! one order of the operations, each placed between its invocation and its answer, explains
//! every answer when run one at a time on a single register that starts absent. The keys of
//! a store are independent registers, so a store's history is checked key by key.
//!
//! The search: walk the events in time order; at each step, try to linearize an operation
//! whose invocation has been passed and that the current value explains; on reaching the
//! answer of an operation not yet linearized, undo the last choice. A configuration (the set
//! of operations done, the value) already tried is never tried again, which bounds the work
//! by the number of configurations rather than the number of orders. A set is remembered by
//! a 128-bit fingerprint (the XOR of a random key per operation, updated in O(1) per step)
//! instead of a copy of its bitset: two sets that share a fingerprint (a chance of about
//! 2^-128 per pair) could only make the search skip a configuration it has not tried, so a
//! collision can report a legal history as illegal but never hide an illegal one.
//!
//! Before the search, an unanswered write whose value nothing observed (no read saw it, no
//! swap expected or found it, no delete that found some value was answered after the write
//! was asked) and that no other operation writes is dropped: leaving it out explains
//! everything that linearizing it would, and each such write would otherwise stay a
//! candidate at every later step.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;

use crate::raft::Prng;

/// What an operation did, as its client saw it. `None` is the absent value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp<V> {
    /// A read that returned `saw`.
    Read { saw: Option<V> },
    /// A put (`Some`), or a delete (`None`) without an answer.
    Write { value: Option<V> },
    /// A delete that found a value (`found`) or found the key absent: either way it is gone.
    Delete { found: bool },
    /// A compare-and-swap that wrote `new` because the value was `expected`. Without an
    /// answer it may have written or found another value: either way it is explained by
    /// linearizing it only where the value was `expected`, or never.
    CasWritten { expected: Option<V>, new: V },
    /// A compare-and-swap that found `current`, not `expected`, and wrote nothing.
    CasFailed {
        expected: Option<V>,
        current: Option<V>,
    },
}

impl<V: Clone + Eq> RegisterOp<V> {
    /// The value after this operation runs on `value`, or `None` if the operation's answer
    /// cannot have come from `value`.
    fn run(&self, value: &Option<V>) -> Option<Option<V>> {
        match self {
            RegisterOp::Read { saw } => (saw == value).then(|| value.clone()),
            RegisterOp::Write { value: written } => Some(written.clone()),
            RegisterOp::Delete { found } => (*found == value.is_some()).then_some(None),
            RegisterOp::CasWritten { expected, new } => {
                (expected == value).then(|| Some(new.clone()))
            }
            RegisterOp::CasFailed { expected, current } => {
                (current == value && expected != value).then(|| value.clone())
            }
        }
    }
}

/// One operation of a history. Times are in any one unit, from any one origin.
#[derive(Clone, Debug)]
pub struct Operation<V> {
    /// Who ran it (for the report).
    pub client: u64,
    pub op: RegisterOp<V>,
    pub invoked_at: u64,
    /// When the answer came; `None` if none did (the operation may or may not have happened).
    pub answered_at: Option<u64>,
}

/// Why a history is not linearizable, or could not be decided.
#[derive(Debug)]
pub enum RegisterError<V> {
    /// No order explains `op`'s answer given the operations before it. `around` are the
    /// operations concurrent with it or close before it, in invocation order.
    NotLinearizable {
        op: Operation<V>,
        around: Vec<Operation<V>>,
    },
    /// The search visited `configurations_max` configurations without an answer.
    TooLong { configurations_max: usize },
}

impl<V: fmt::Debug> fmt::Display for RegisterError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::NotLinearizable { op, around } => {
                writeln!(
                    f,
                    "not linearizable: no order explains {:?} (client {}, invoked at {}, \
                     answered at {:?}); the operations around it:",
                    op.op, op.client, op.invoked_at, op.answered_at
                )?;
                for other in around {
                    writeln!(
                        f,
                        "  client {} [{} .. {:?}] {:?}",
                        other.client, other.invoked_at, other.answered_at, other.op
                    )?;
                }
                Ok(())
            }
            RegisterError::TooLong { configurations_max } => write!(
                f,
                "undecided: the search visited {configurations_max} configurations"
            ),
        }
    }
}

/// How many operations before the failing one a report shows.
const REPORT_BEFORE: usize = 12;

/// A position in the list of events; `NIL` ends it.
const NIL: usize = usize::MAX;

#[derive(Clone, Copy)]
enum Event {
    Invoke(usize),
    Answer(usize),
}

/// The events still to place, as a doubly linked list in time order, so that an operation
/// linearized is lifted out and put back in O(1) (the "dancing links" of the search).
struct Events {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The position of each operation's answer event, if it has one.
    answer_of: Vec<usize>,
    head: usize,
}

impl Events {
    fn new<V>(history: &[Operation<V>]) -> Events {
        // (time, answer after invoke at the same time, operation): ties count as concurrent.
        let mut keyed: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * history.len());
        for (i, op) in history.iter().enumerate() {
            keyed.push((op.invoked_at, 0, i));
            if let Some(at) = op.answered_at {
                keyed.push((at, 1, i));
            }
        }
        keyed.sort_unstable();
        let count = keyed.len();
        let mut answer_of = vec![NIL; history.len()];
        let events = keyed
            .iter()
            .enumerate()
            .map(|(position, &(_, kind, i))| {
                if kind == 0 {
                    Event::Invoke(i)
                } else {
                    answer_of[i] = position;
                    Event::Answer(i)
                }
            })
            .collect();
        Events {
            events,
            next: (1..=count)
                .map(|n| if n == count { NIL } else { n })
                .collect(),
            prev: (0..count).map(|n| n.wrapping_sub(1)).collect(),
            answer_of,
            head: if count == 0 { NIL } else { 0 },
        }
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        if prev == NIL {
            self.head = next;
        } else {
            self.next[prev] = next;
        }
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Put back `at`, unlinked last: its own links still name its old neighbours.
    fn relink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        if prev == NIL {
            self.head = at;
        } else {
            self.next[prev] = at;
        }
        if next != NIL {
            self.prev[next] = at;
        }
    }

    /// Take operation `op` (invoked at position `at`) out: its invocation and its answer.
    fn lift(&mut self, at: usize, op: usize) {
        self.unlink(at);
        if self.answer_of[op] != NIL {
            self.unlink(self.answer_of[op]);
        }
    }

    /// Undo [`Events::lift`], in the reverse order.
    fn unlift(&mut self, at: usize, op: usize) {
        if self.answer_of[op] != NIL {
            self.relink(self.answer_of[op]);
        }
        self.relink(at);
    }
}

/// The value `op` writes, if it writes one.
fn written<V>(op: &RegisterOp<V>) -> Option<&V> {
    match op {
        RegisterOp::Write { value } => value.as_ref(),
        RegisterOp::CasWritten { new, .. } => Some(new),
        RegisterOp::Read { .. } | RegisterOp::Delete { .. } | RegisterOp::CasFailed { .. } => None,
    }
}

/// `history` without the unanswered writes that need no place in it (see the module doc).
fn without_unseen_writes<V: Clone + Eq + Hash>(history: &[Operation<V>]) -> Vec<Operation<V>> {
    let mut observed: HashSet<&V> = HashSet::new();
    let mut writers: HashMap<&V, usize> = HashMap::new();
    for operation in history {
        match &operation.op {
            RegisterOp::Read { saw: Some(v) } => {
                observed.insert(v);
            }
            RegisterOp::CasWritten {
                expected: Some(v), ..
            }
            | RegisterOp::CasFailed {
                current: Some(v), ..
            } => {
                observed.insert(v);
            }
            _ => {}
        }
        if let Some(v) = written(&operation.op) {
            *writers.entry(v).or_default() += 1;
        }
    }
    // A delete that found a value observed some value, unnamed: any write asked before it
    // was answered may be the one it found.
    let found_deleted_last = history
        .iter()
        .filter(|o| matches!(o.op, RegisterOp::Delete { found: true }))
        .filter_map(|o| o.answered_at)
        .max();
    history
        .iter()
        .filter(|o| {
            o.answered_at.is_some()
                || found_deleted_last.is_some_and(|at| at >= o.invoked_at)
                || written(&o.op).is_none_or(|v| observed.contains(v) || writers[v] > 1)
        })
        .cloned()
        .collect()
}

/// Check that `history` (one register, absent at the start) is linearizable, visiting at
/// most `configurations_max` configurations.
pub fn check_register<V: Clone + Eq + Hash>(
    history: &[Operation<V>],
    configurations_max: usize,
) -> Result<(), RegisterError<V>> {
    let history = &without_unseen_writes(history)[..];
    let mut events = Events::new(history);
    let mut keys = Prng::new(history.len() as u64);
    let keys: Vec<u128> = (0..history.len())
        .map(|_| u128::from(keys.next_u64()) << 64 | u128::from(keys.next_u64()))
        .collect();
    let mut done: u128 = 0;
    let mut value: Option<V> = None;
    // Operations linearized, newest last: (position of its invocation, value before it).
    let mut stack: Vec<(usize, Option<V>)> = Vec::new();
    let mut seen: HashSet<(u128, Option<V>)> = HashSet::new();
    let mut answered_left = history.iter().filter(|o| o.answered_at.is_some()).count();
    // The answer that stopped the deepest search, for the report.
    let mut deepest = (0, None);
    let mut at = events.head;
    while answered_left > 0 {
        if at == NIL {
            unreachable!("an answered operation is left, so an answer event is in the list");
        }
        match events.events[at] {
            Event::Invoke(op) => {
                let mut next_at = events.next[at];
                if let Some(after) = history[op].op.run(&value)
                    && seen.insert((done ^ keys[op], after.clone()))
                {
                    if seen.len() > configurations_max {
                        return Err(RegisterError::TooLong { configurations_max });
                    }
                    done ^= keys[op];
                    stack.push((at, std::mem::replace(&mut value, after)));
                    events.lift(at, op);
                    if history[op].answered_at.is_some() {
                        answered_left -= 1;
                    }
                    next_at = events.head;
                }
                at = next_at;
            }
            Event::Answer(op) => {
                if stack.len() >= deepest.0 {
                    deepest = (stack.len(), Some(op));
                }
                let Some((invoked, before)) = stack.pop() else {
                    return Err(report(history, deepest.1.unwrap_or(op)));
                };
                let Event::Invoke(undone) = events.events[invoked] else {
                    unreachable!("the stack holds invocations");
                };
                events.unlift(invoked, undone);
                done ^= keys[undone];
                if history[undone].answered_at.is_some() {
                    answered_left += 1;
                }
                value = before;
                at = events.next[invoked];
            }
        }
    }
    Ok(())
}

/// The failure at operation `failed`, with what a reader needs around it: the operations
/// answered while it ran, the last [`REPORT_BEFORE`] answered before it was asked, and the
/// last [`REPORT_BEFORE`] unanswered ones asked before its end (all of them overlap it).
fn report<V: Clone>(history: &[Operation<V>], failed: usize) -> RegisterError<V> {
    let op = &history[failed];
    let end = op.answered_at.unwrap_or(op.invoked_at);
    let mut order: Vec<&Operation<V>> = history.iter().filter(|o| o.invoked_at <= end).collect();
    order.sort_by_key(|o| o.invoked_at);
    let before: Vec<usize> = (0..order.len())
        .filter(|&i| order[i].answered_at.is_some_and(|a| a < op.invoked_at))
        .collect();
    let unanswered: Vec<usize> = (0..order.len())
        .filter(|&i| order[i].answered_at.is_none())
        .collect();
    let tail = |list: &[usize]| list[list.len().saturating_sub(REPORT_BEFORE)..].to_vec();
    let mut shown: BTreeSet<usize> = (0..order.len())
        .filter(|&i| order[i].answered_at.is_some_and(|a| a >= op.invoked_at))
        .collect();
    shown.extend(tail(&before));
    shown.extend(tail(&unanswered));
    RegisterError::NotLinearizable {
        op: op.clone(),
        around: shown.into_iter().map(|i| order[i].clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    //! The checker must reject each kind of violation and accept every legal reordering of
    //! concurrent operations; a checker that accepts everything would make the end-to-end
    //! history tests prove nothing.

    use super::*;

    const LIMIT: usize = 1_000_000;

    fn op(
        client: u64,
        op: RegisterOp<u32>,
        invoked_at: u64,
        answered_at: Option<u64>,
    ) -> Operation<u32> {
        Operation {
            client,
            op,
            invoked_at,
            answered_at,
        }
    }

    fn read(saw: Option<u32>) -> RegisterOp<u32> {
        RegisterOp::Read { saw }
    }

    fn write(value: u32) -> RegisterOp<u32> {
        RegisterOp::Write { value: Some(value) }
    }

    fn check(history: &[Operation<u32>]) -> Result<(), RegisterError<u32>> {
        check_register(history, LIMIT)
    }

    #[test]
    fn sequential_reads_must_see_the_last_write() {
        let good = [
            op(1, read(None), 0, Some(1)),
            op(1, write(5), 2, Some(3)),
            op(2, read(Some(5)), 4, Some(5)),
        ];
        check(&good).unwrap();
        let stale = [
            op(1, write(5), 0, Some(1)),
            op(1, write(6), 2, Some(3)),
            op(2, read(Some(5)), 4, Some(5)),
        ];
        let error = check(&stale).unwrap_err();
        assert!(
            matches!(&error, RegisterError::NotLinearizable { op, .. } if op.op == read(Some(5))),
            "{error}"
        );
        let invented = [op(1, read(Some(9)), 0, Some(1))];
        assert!(check(&invented).is_err());
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping writes; reads after both agree on either as the last.
        for last in [1, 2] {
            let history = [
                op(1, write(1), 0, Some(10)),
                op(2, write(2), 1, Some(9)),
                op(3, read(Some(last)), 11, Some(12)),
                op(4, read(Some(last)), 13, Some(14)),
            ];
            check(&history).unwrap();
        }
        // But two later reads cannot see them in both orders.
        let flip = [
            op(1, write(1), 0, Some(10)),
            op(2, write(2), 1, Some(9)),
            op(3, read(Some(1)), 11, Some(12)),
            op(4, read(Some(2)), 13, Some(14)),
        ];
        assert!(check(&flip).is_err());
        // A read overlapping a write may see the old value or the new, not the new then old.
        let history = [
            op(1, write(1), 0, Some(1)),
            op(2, write(2), 2, Some(20)),
            op(3, read(Some(2)), 3, Some(4)),
            op(3, read(Some(1)), 5, Some(6)),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn an_unanswered_write_may_happen_late_or_never() {
        let seen_late = [
            op(1, write(1), 0, None),
            op(2, read(None), 5, Some(6)),
            op(2, read(Some(1)), 100, Some(101)),
        ];
        check(&seen_late).unwrap();
        let never_seen = [op(1, write(1), 0, None), op(2, read(None), 100, Some(101))];
        check(&never_seen).unwrap();
        // Once seen and overwritten, it cannot come back.
        let back = [
            op(1, write(1), 0, None),
            op(2, read(Some(1)), 5, Some(6)),
            op(2, write(2), 7, Some(8)),
            op(2, read(Some(1)), 9, Some(10)),
        ];
        assert!(check(&back).is_err());
        // It cannot happen before it was asked.
        let early = [op(2, read(Some(1)), 0, Some(1)), op(1, write(1), 2, None)];
        assert!(check(&early).is_err());
        // A delete that found a value may have found it, though it names no value (the
        // simulator of the core loop found this: the write was dropped as never seen).
        let delete = |found| RegisterOp::Delete { found };
        let found_by_a_delete = [
            op(1, delete(false), 0, Some(1)),
            op(2, write(1), 2, None),
            op(1, delete(true), 10, Some(11)),
        ];
        check(&found_by_a_delete).unwrap();
    }

    #[test]
    fn compare_and_swap_succeeds_once_per_value() {
        let cas = |expected: Option<u32>, new| RegisterOp::CasWritten { expected, new };
        let good = [
            op(1, write(1), 0, Some(1)),
            op(2, cas(Some(1), 2), 2, Some(10)),
            op(
                3,
                RegisterOp::CasFailed {
                    expected: Some(1),
                    current: Some(2),
                },
                3,
                Some(11),
            ),
            op(4, read(Some(2)), 12, Some(13)),
        ];
        check(&good).unwrap();
        // Two swaps from the same value cannot both succeed.
        let twice = [
            op(1, write(1), 0, Some(1)),
            op(2, cas(Some(1), 2), 2, Some(10)),
            op(3, cas(Some(1), 3), 3, Some(11)),
        ];
        assert!(check(&twice).is_err());
        // A swap of an absent key (put-if-absent) after a write fails.
        let absent = [op(1, write(1), 0, Some(1)), op(2, cas(None, 2), 2, Some(3))];
        assert!(check(&absent).is_err());
        // A failed swap must have seen a value that was there, other than the one expected.
        let lied = [
            op(1, write(1), 0, Some(1)),
            op(
                2,
                RegisterOp::CasFailed {
                    expected: Some(1),
                    current: Some(1),
                },
                2,
                Some(3),
            ),
        ];
        assert!(check(&lied).is_err());
        // An unanswered swap happens only where its expected value holds.
        let unanswered = [
            op(1, write(1), 0, Some(1)),
            op(2, cas(Some(7), 2), 2, None),
            op(3, read(Some(2)), 5, Some(6)),
        ];
        assert!(check(&unanswered).is_err());
    }

    #[test]
    fn a_report_shows_the_operations_around_the_failure_not_the_whole_history() {
        // An unanswered delete at the start overlaps everything after it.
        let mut history = vec![op(9, RegisterOp::Write { value: None }, 0, None)];
        for i in 0..100u32 {
            let t = 10 + u64::from(i) * 10;
            history.push(op(1, write(i), t, Some(t + 5)));
        }
        history.push(op(2, read(Some(3)), 2_000, Some(2_001)));
        let Err(RegisterError::NotLinearizable { op, around }) = check(&history) else {
            panic!("a stale read passed");
        };
        assert_eq!(op.op, read(Some(3)));
        assert!(around.len() <= 2 * REPORT_BEFORE, "{} shown", around.len());
        assert!(
            around.iter().any(|o| o.op == write(99)),
            "the last write is shown"
        );
    }

    #[test]
    fn deletes_make_the_key_absent_again_and_say_whether_it_was() {
        let delete = |found| RegisterOp::Delete { found };
        let history = [
            op(1, write(1), 0, Some(1)),
            op(1, delete(true), 2, Some(3)),
            op(2, read(None), 4, Some(5)),
            op(2, delete(false), 6, Some(7)),
        ];
        check(&history).unwrap();
        let found_nothing = [
            op(1, write(1), 0, Some(1)),
            op(1, delete(false), 2, Some(3)),
        ];
        assert!(check(&found_nothing).is_err());
        let found_something = [op(1, delete(true), 0, Some(1))];
        assert!(check(&found_something).is_err());
    }

    #[test]
    fn many_clients_are_checked_quickly_and_a_late_stale_read_is_found() {
        // 8 clients, 4,000 operations, every write overlapping reads and other writes: the
        // cache keeps this to a few configurations per operation.
        let mut history = Vec::new();
        for round in 0..500u32 {
            let t = u64::from(round) * 10;
            for client in 0..4u64 {
                history.push(op(client, write(round * 4 + client as u32), t, Some(t + 8)));
            }
            for client in 4..8u64 {
                // Reads after the round's writes see the highest one (one legal order).
                history.push(op(client, read(Some(round * 4 + 3)), t + 9, Some(t + 9)));
            }
            // And every tenth round a write nobody sees goes unanswered: such writes stay
            // candidates to the end unless dropped.
            if round % 10 == 0 {
                history.push(op(10, write(1_000_000 + round), t, None));
            }
        }
        check_register(&history, 100_000).unwrap();
        history.push(op(9, read(Some(0)), 10_000, Some(10_001)));
        assert!(check_register(&history, 100_000).is_err());
    }
}
