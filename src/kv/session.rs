//! Exactly-once: per client, the replies to requests it has not acknowledged yet.
//!
//! A client numbers its requests 1, 2, 3, … and tells, with each, the lowest one it still
//! waits for (`first_unacked`). The state machine keeps the replies from `first_unacked` on,
//! so a retry is answered from memory instead of applied twice, and forgets the rest.
//!
//! Every decision here depends only on the applied commands, so every replica makes the same
//! ones.
//!
//! A session evicted (see `limits::SESSIONS_MAX` and `limits::SESSION_BYTES_MAX`; the heaviest
//! go first past the bytes, the least recently active past the count) while its
//! client still sends `first_unacked == 1` (the answer to its first request has not reached
//! it yet, whatever later ones did: its requests, however many it pipelined, and their
//! retries) would look like a new client, and
//! a retry of such a request would apply again. So the ids of forgotten sessions are kept
//! ([`Forgotten`], up to `limits::FORGOTTEN_CLIENTS_MAX`): their requests are expired
//! whatever they say. A new client draws a fresh id, so this never refuses one (and a client
//! refused as expired before anything of its request was applied simply draws another).
//! The residual risk: a client that waits (say, out of an election) to retry its first
//! request while its session is evicted and then 262,144 more are, all in its group.
//! Registering a session through the log before the first request (the Raft thesis, §6.3)
//! would close it, at a round trip per new client.

use std::cmp::Reverse;
use std::collections::VecDeque;

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use super::limits::{
    FORGOTTEN_CLIENTS_MAX, REPLIES_PER_SESSION_MAX, REPLY_BYTES_PER_SESSION_MAX, SESSION_BYTES_MAX,
    SESSIONS_MAX,
};
use super::store::OpResult;

/// Slots of its ring of replies a session keeps however few it holds (256 bytes): see
/// `record`.
const RING_SLOTS_KEPT: usize = 8;

/// The results of one applied request: shared by the reply and the session's memory of it,
/// so remembering a reply costs no copy. `Arc`, not `Rc`: a received snapshot's state
/// machine is decoded on another thread (`shard::core::load_snapshot`).
pub type Results = Arc<[OpResult]>;

/// What a session remembers of a request it decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Applied, with these results.
    Applied(Results),
    /// Refused whole, nothing of it applied: its results could have carried this many value
    /// bytes, more than a write may answer with. The bound depends on the state it met, so a
    /// later copy of the request (a retry proposed before the first was applied) must get
    /// this answer again rather than be judged, and maybe applied, against a later state.
    TooLarge { value_bytes: u64 },
}

impl From<Results> for Decision {
    fn from(results: Results) -> Decision {
        Decision::Applied(results)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Replies in ascending sequence order, for sequences ≥ `first_unacked`: usually a few,
    /// added at the back and acknowledged from the front, so a ring buffer (one allocation,
    /// reused) rather than a tree.
    pub(crate) replies: VecDeque<(u64, Decision)>,
    /// Below this the client has its replies (or they were dropped): never apply again.
    pub(crate) first_unacked: u64,
    /// The log index of the session's latest request, for least-recently-active eviction.
    pub(crate) last_index: u64,
    /// What its replies weigh (see [`reply_bytes`]).
    pub(crate) bytes: usize,
}

/// The estimated cost of one operation's result beside its value: an enum of a few words,
/// fixed here rather than taken from the platform, so replicas on any machine weigh (and so
/// drop) the same replies.
const RESULT_BYTES: usize = 48;

/// What remembering `reply` costs: a fixed part per result and the bytes of its values
/// (counted even where they are shared with the store, which they keep alive once the store
/// moves on); a refusal as one result.
pub(crate) fn reply_bytes(reply: &Decision) -> usize {
    let Decision::Applied(results) = reply else {
        return RESULT_BYTES;
    };
    results
        .iter()
        .map(|result| {
            RESULT_BYTES
                + match result {
                    OpResult::Value(value) => value.len(),
                    OpResult::ConditionFailed {
                        current: Some(value),
                    } => value.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// What to do with a request, decided before it is applied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Apply,
    /// Decided before: here is what it got.
    Duplicate(Decision),
    /// Its reply is gone (acknowledged, dropped, or the session was evicted).
    Expired,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    pub(crate) by_client: HashMap<u64, Session>,
    /// What all sessions' replies weigh together.
    pub(crate) bytes: usize,
    pub(crate) forgotten: Forgotten,
}

/// The clients whose sessions were evicted, at most `FORGOTTEN_CLIENTS_MAX`, the oldest
/// dropped first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Forgotten {
    /// In the order they were forgotten: what a snapshot writes, and what goes first.
    order: VecDeque<u64>,
    ids: HashSet<u64>,
}

impl Forgotten {
    pub(crate) fn contains(&self, client: u64) -> bool {
        self.ids.contains(&client)
    }

    pub(crate) fn add(&mut self, client: u64) {
        if !self.ids.insert(client) {
            return;
        }
        // Room made before the push, so the queue never grows past the bound's capacity.
        if self.order.len() == FORGOTTEN_CLIENTS_MAX {
            let oldest = self.order.pop_front().expect("non-empty");
            self.ids.remove(&oldest);
        }
        self.order.push_back(client);
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.order.iter().copied()
    }
}

impl Sessions {
    pub(crate) fn admit(&self, client_id: u64, sequence: u64, first_unacked: u64) -> Admission {
        match self.by_client.get(&client_id) {
            // Unknown: a new client starts with nothing acknowledged; anything else had a
            // session that was evicted (a forgotten client's first requests too).
            None if first_unacked == 1 && !self.forgotten.contains(client_id) => Admission::Apply,
            None => Admission::Expired,
            Some(session) if sequence < session.first_unacked => Admission::Expired,
            Some(session) => match session.find(sequence) {
                Ok(at) => Admission::Duplicate(session.replies[at].1.clone()),
                Err(_) => Admission::Apply,
            },
        }
    }

    /// Remember the reply to a request that was just decided (applied or refused) at
    /// `index`.
    pub(crate) fn record(
        &mut self,
        client_id: u64,
        sequence: u64,
        first_unacked: u64,
        index: u64,
        reply: impl Into<Decision>,
    ) {
        let reply = reply.into();
        let session = self.by_client.entry(client_id).or_default();
        let before = session.bytes;
        session.last_index = index;
        session.first_unacked = session.first_unacked.max(first_unacked);
        session.bytes += reply_bytes(&reply);
        match session.find(sequence) {
            Ok(at) => {
                let old = std::mem::replace(&mut session.replies[at].1, reply);
                session.bytes -= reply_bytes(&old);
            }
            // Usually the back: a client's requests to one group mostly apply in order.
            Err(at) if at == session.replies.len() => session.replies.push_back((sequence, reply)),
            Err(at) => session.replies.insert(at, (sequence, reply)),
        }
        // Forget what the client acknowledged.
        while session
            .replies
            .front()
            .is_some_and(|&(sequence, _)| sequence < session.first_unacked)
        {
            let (_, gone) = session.replies.pop_front().expect("non-empty");
            session.bytes -= reply_bytes(&gone);
        }
        // Past either bound, the oldest replies go: a retry of theirs is expired.
        while session.replies.len() > REPLIES_PER_SESSION_MAX
            || (session.bytes > REPLY_BYTES_PER_SESSION_MAX && session.replies.len() > 1)
        {
            let (oldest, gone) = session.replies.pop_front().expect("non-empty");
            session.bytes -= reply_bytes(&gone);
            session.first_unacked = oldest + 1;
        }
        // A client that once had thousands of requests outstanding leaves its ring that large
        // (up to 8,192 slots, 256 KiB) for as long as its session lives, on every replica that
        // replayed the log: given back once it is at most a quarter full, to twice what it
        // holds. Memory only: `bytes`, which eviction weighs, leaves capacity out, as a
        // session restored from a snapshot has none; so a ring keeps at most four times its
        // replies' slots, or `4 * RING_SLOTS_KEPT` (found in review: 256 slots each in 65,536
        // sessions of a reply each, 512 MiB beside the 64 MiB their replies weigh). Between
        // a shrink (to twice) and a growth (doubling when full) the depth must halve or
        // double, so a pipeline whose depth wanders keeps its ring.
        let kept = session.replies.len().max(RING_SLOTS_KEPT);
        if session.replies.capacity() > 4 * kept {
            session.replies.shrink_to(2 * kept);
        }
        self.bytes = self.bytes - before + session.bytes;
        if self.by_client.len() > SESSIONS_MAX || self.bytes > SESSION_BYTES_MAX {
            self.evict(client_id);
        }
    }

    /// Forget sessions, except `keep` (the session just written: its client may retry what
    /// it was just answered), until a tenth below both bounds: past the byte bound the
    /// heaviest first, then past the count bound the least recently active (ties broken by
    /// log index, then client id, so every replica forgets the same ones). By age alone, a
    /// few clients whose replies hold large values (a failed compare-and-swap on a 1 MiB
    /// document keeps it) pushed out every light session of the group, each ~48 bytes,
    /// before theirs (found in review): their clients' requests in flight came back expired.
    fn evict(&mut self, keep: u64) {
        let (count_goal, bytes_goal) = (SESSIONS_MAX / 10 * 9, SESSION_BYTES_MAX / 10 * 9);
        if self.bytes > bytes_goal {
            let mut by_weight: Vec<(Reverse<usize>, u64, u64)> = (self.by_client.iter())
                .filter(|&(&client, _)| client != keep)
                .map(|(&client, s)| (Reverse(s.bytes), s.last_index, client))
                .collect();
            by_weight.sort_unstable();
            for (_, _, client) in by_weight {
                if self.bytes <= bytes_goal {
                    break;
                }
                self.forget(client);
            }
        }
        if self.by_client.len() > count_goal {
            let mut by_age: Vec<(u64, u64)> = (self.by_client.iter())
                .filter(|&(&client, _)| client != keep)
                .map(|(&client, s)| (s.last_index, client))
                .collect();
            by_age.sort_unstable();
            let excess = self.by_client.len() - count_goal;
            for (_, client) in by_age.into_iter().take(excess) {
                self.forget(client);
            }
        }
    }

    fn forget(&mut self, client: u64) {
        let gone = self.by_client.remove(&client).expect("listed");
        self.bytes -= gone.bytes;
        self.forgotten.add(client);
    }

    /// Adds `session`, restored from a snapshot, weighing its replies.
    pub(crate) fn restore(&mut self, client: u64, mut session: Session) {
        session.bytes = session.replies.iter().map(|(_, r)| reply_bytes(r)).sum();
        self.bytes += session.bytes;
        if let Some(old) = self.by_client.insert(client, session) {
            self.bytes -= old.bytes;
        }
    }
}

impl Session {
    /// Where the reply to `sequence` is (`Ok`), or would go (`Err`). A new request's
    /// sequence is past the last one: that case answers without a search.
    fn find(&self, sequence: u64) -> Result<usize, usize> {
        match self.replies.back() {
            Some(&(last, _)) if last >= sequence => {
                self.replies.binary_search_by_key(&sequence, |&(s, _)| s)
            }
            _ => Err(self.replies.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> Results {
        Arc::from([OpResult::Written])
    }

    /// Goal: replies recorded out of sequence order (a retry applied late) are all found.
    #[test]
    fn replies_recorded_out_of_order_are_found() {
        let mut sessions = Sessions::default();
        for sequence in [3, 1, 2, 5] {
            sessions.record(9, sequence, 1, sequence, written());
        }
        for sequence in [1, 2, 3, 5] {
            assert_eq!(
                sessions.admit(9, sequence, 1),
                Admission::Duplicate(written().into())
            );
        }
        assert_eq!(sessions.admit(9, 4, 1), Admission::Apply);
        let order: Vec<u64> = sessions.by_client[&9].replies.iter().map(|r| r.0).collect();
        assert_eq!(order, [1, 2, 3, 5]);
    }

    /// Goal (found in review): a session's ring of replies shrinks once its client caught up.
    #[test]
    fn a_session_gives_back_its_ring_once_its_client_caught_up() {
        let mut sessions = Sessions::default();
        let outstanding = REPLIES_PER_SESSION_MAX as u64 + 100;
        for sequence in 1..=outstanding {
            sessions.record(9, sequence, 1, sequence, written());
        }
        let ring = &sessions.by_client[&9].replies;
        assert!(
            ring.capacity() >= REPLIES_PER_SESSION_MAX,
            "{}",
            ring.capacity()
        );
        // The client acknowledges everything before `sequence`, its request: one reply is
        // left, in a ring given back.
        let caught_up = |sessions: &mut Sessions, sequence: u64| {
            sessions.record(9, sequence, sequence, sequence, written());
            let ring = &sessions.by_client[&9].replies;
            assert_eq!(ring.len(), 1);
            assert!(
                ring.capacity() <= 2 * RING_SLOTS_KEPT,
                "{}",
                ring.capacity()
            );
        };
        let next = outstanding + 1;
        caught_up(&mut sessions, next);
        // Found in review: a ring of 256 slots holding one reply was kept.
        for sequence in next + 1..=next + 200 {
            sessions.record(9, sequence, next + 1, sequence, written());
        }
        caught_up(&mut sessions, next + 201);
    }

    /// Goal (found in review): a ring whose depth wanders keeps its allocation. Shrunk to
    /// exactly what it held once it was half empty, it grew again at the next deeper record
    /// and shrank at the next shallower one: an allocation and a copy every few records.
    #[test]
    fn a_ring_whose_depth_wanders_keeps_its_allocation() {
        let mut sessions = Sessions::default();
        // 100 deep first (the ring grows to 128 slots), then about 40.
        let wander: [u64; 16] = [
            40, 41, 40, 39, 40, 39, 38, 39, 38, 37, 38, 39, 40, 41, 42, 41,
        ];
        let depths = (1..=100).chain(wander.iter().copied().cycle().take(200));
        let mut changes = 0;
        let mut capacity = None;
        for (sequence, depth) in (1u64..).zip(depths) {
            sessions.record(9, sequence, sequence + 1 - depth, sequence, written());
            let now = sessions.by_client[&9].replies.capacity();
            if sequence > 100 {
                changes += usize::from(capacity.is_some_and(|before| before != now));
            }
            capacity = Some(now);
        }
        assert!(changes <= 2, "{changes} changes of capacity");
    }

    #[test]
    fn a_retry_gets_the_first_reply_and_an_acked_request_is_expired() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.admit(7, 1, 1), Admission::Apply);
        sessions.record(7, 1, 1, 10, written());
        assert_eq!(
            sessions.admit(7, 1, 1),
            Admission::Duplicate(written().into())
        );
        assert_eq!(sessions.admit(7, 2, 2), Admission::Apply);
        sessions.record(7, 2, 2, 11, Arc::from([OpResult::NotFound]));
        // The client acknowledged 1 with request 2: the reply to 1 is gone for good.
        assert_eq!(sessions.admit(7, 1, 1), Admission::Expired);
        assert_eq!(sessions.by_client[&7].replies.len(), 1);
    }

    #[test]
    fn a_client_unknown_after_its_first_window_is_expired() {
        let sessions = Sessions::default();
        assert_eq!(sessions.admit(8, 5, 3), Admission::Expired);
        assert_eq!(sessions.admit(8, 5, 1), Admission::Apply);
    }

    #[test]
    fn too_many_outstanding_replies_drop_the_oldest_and_never_reapply_it() {
        let mut sessions = Sessions::default();
        let total = REPLIES_PER_SESSION_MAX as u64 + 5;
        for sequence in 1..=total {
            sessions.record(1, sequence, 1, sequence, written());
        }
        assert_eq!(
            sessions.by_client[&1].replies.len(),
            REPLIES_PER_SESSION_MAX
        );
        assert_eq!(sessions.admit(1, 1, 1), Admission::Expired);
        assert_eq!(sessions.admit(1, 5, 1), Admission::Expired);
        assert!(matches!(
            sessions.admit(1, total, 1),
            Admission::Duplicate(_)
        ));
    }

    /// A client that never acknowledges, with writes of a thousand operations (replies of
    /// about 48 KiB), keeps about a megabyte of replies, not 4,096 of them; the newest is
    /// kept whatever it weighs.
    #[test]
    fn a_session_keeps_a_bounded_weight_of_replies_and_always_its_newest() {
        let mut sessions = Sessions::default();
        let heavy: Results = (0..1_024).map(|_| OpResult::Written).collect();
        for sequence in 1..=100 {
            sessions.record(1, sequence, 1, sequence, Arc::clone(&heavy));
        }
        let session = &sessions.by_client[&1];
        assert!(
            session.bytes <= REPLY_BYTES_PER_SESSION_MAX,
            "{}",
            session.bytes
        );
        assert_eq!(sessions.bytes, session.bytes);
        assert_eq!(sessions.admit(1, 1, 1), Admission::Expired);
        assert!(matches!(sessions.admit(1, 100, 1), Admission::Duplicate(_)));
        let huge: Results = Arc::from([OpResult::Value(bytes::Bytes::from(vec![0; 2 << 20]))]);
        sessions.record(1, 101, 1, 101, huge);
        assert!(matches!(sessions.admit(1, 101, 1), Admission::Duplicate(_)));
        assert_eq!(sessions.by_client[&1].replies.len(), 1);
    }

    /// Past the group's byte bound the least recently active sessions go, never the one
    /// just written.
    #[test]
    fn the_sessions_of_a_group_keep_a_bounded_weight() {
        let mut sessions = Sessions::default();
        let value = |bytes: usize| -> Results {
            Arc::from([OpResult::Value(bytes::Bytes::from(vec![0; bytes]))])
        };
        let clients = (SESSION_BYTES_MAX / (1 << 19)) as u64 + 10;
        for client in 0..clients {
            sessions.record(client, 1, 1, client, value(1 << 19));
        }
        assert!(sessions.bytes <= SESSION_BYTES_MAX, "{}", sessions.bytes);
        let counted: usize = sessions.by_client.values().map(|s| s.bytes).sum();
        assert_eq!(sessions.bytes, counted);
        assert!(!sessions.by_client.contains_key(&0), "the oldest went");
        assert!(sessions.by_client.contains_key(&(clients - 1)));
        // One session heavier than the bound stays: it is the one just written.
        sessions.record(7_777, 1, 1, clients, value(SESSION_BYTES_MAX + 1));
        assert!(sessions.by_client.contains_key(&7_777));
    }

    /// Goal (found in review): past the byte bound, the heavy sessions that passed it go,
    /// not every light one older than them (a client's requests in flight then came back
    /// expired although its session weighed 48 bytes).
    #[test]
    fn past_the_byte_bound_the_heaviest_sessions_go_first() {
        let mut sessions = Sessions::default();
        let light = 1_000u64;
        for client in 0..light {
            sessions.record(client, 1, 1, client, written());
        }
        let big: Results = Arc::from([OpResult::Value(bytes::Bytes::from(vec![0; 4 << 20]))]);
        let heavy = (SESSION_BYTES_MAX / (4 << 20)) as u64 + 2;
        for client in light..light + heavy {
            sessions.record(client, 1, 1, client, Arc::clone(&big));
        }
        assert!(sessions.bytes <= SESSION_BYTES_MAX, "{}", sessions.bytes);
        for client in 0..light {
            assert!(
                sessions.by_client.contains_key(&client),
                "light client {client} went"
            );
        }
        let heavy_left = (light..light + heavy)
            .filter(|c| sessions.by_client.contains_key(c))
            .count();
        assert!(heavy_left < heavy as usize, "no heavy session went");
        assert!(
            sessions.by_client.contains_key(&(light + heavy - 1)),
            "the one just written"
        );
        // The count bound still forgets by age.
        for client in 10_000..10_000 + SESSIONS_MAX as u64 {
            sessions.record(client, 1, 1, client, written());
        }
        assert!(sessions.by_client.len() <= SESSIONS_MAX);
        assert!(
            !sessions.by_client.contains_key(&0),
            "the least recently active went"
        );
    }

    #[test]
    fn eviction_forgets_the_least_recently_active_sessions() {
        let mut sessions = Sessions::default();
        for client in 0..=SESSIONS_MAX as u64 {
            sessions.record(client, 1, 1, client, written());
        }
        assert!(sessions.by_client.len() <= SESSIONS_MAX);
        assert!(!sessions.by_client.contains_key(&0));
        assert!(sessions.by_client.contains_key(&(SESSIONS_MAX as u64)));
        // Client 0 never heard back: a retry of its first request, or another request of
        // its first window, must not be taken for a new client's and applied again.
        assert_eq!(sessions.admit(0, 1, 1), Admission::Expired);
        assert_eq!(sessions.admit(0, 2, 1), Admission::Expired);
        let new_client = SESSIONS_MAX as u64 + 1;
        assert_eq!(sessions.admit(new_client, 1, 1), Admission::Apply);
    }

    #[test]
    fn forgotten_clients_are_bounded_and_the_oldest_go_first() {
        let mut forgotten = Forgotten::default();
        for client in 0..=FORGOTTEN_CLIENTS_MAX as u64 {
            forgotten.add(client);
        }
        forgotten.add(5);
        assert_eq!(forgotten.iter().len(), FORGOTTEN_CLIENTS_MAX);
        assert!(!forgotten.contains(0));
        assert!(forgotten.contains(1) && forgotten.contains(FORGOTTEN_CLIENTS_MAX as u64));
        assert_eq!(forgotten.iter().next(), Some(1));
    }
}
