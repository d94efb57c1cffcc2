//! Exactly-once: per client, the replies to requests it has not acknowledged yet.
//!
//! A client numbers its requests 1, 2, 3, … and tells, with each, the lowest one it still
//! waits for (`first_unacked`). The state machine keeps the replies from `first_unacked` on,
//! so a retry is answered from memory instead of applied twice, and forgets the rest.
//!
//! Every decision here depends only on the applied commands, so every replica makes the same
//! ones. The one residual risk: a session evicted (see `limits::SESSIONS_MAX`) while its
//! client is still inside its very first window (`first_unacked == 1`) is indistinguishable
//! from a new client, so a retry of such a request would apply again. Eviction takes the
//! least recently active sessions, which such a client is not.

use std::collections::{BTreeMap, HashMap};

use super::limits::{REPLIES_PER_SESSION_MAX, SESSIONS_MAX};
use super::store::OpResult;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Replies by sequence, for sequences ≥ `first_unacked`.
    pub(crate) replies: BTreeMap<u64, Vec<OpResult>>,
    /// Below this the client has its replies (or they were dropped): never apply again.
    pub(crate) first_unacked: u64,
    /// The log index of the session's latest request, for least-recently-active eviction.
    pub(crate) last_index: u64,
}

/// What to do with a request, decided before it is applied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Apply,
    /// Applied before: here is the reply it got.
    Duplicate(Vec<OpResult>),
    /// Its reply is gone (acknowledged, dropped, or the session was evicted).
    Expired,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    pub(crate) by_client: HashMap<u64, Session>,
}

impl Sessions {
    pub(crate) fn admit(&self, client_id: u64, sequence: u64, first_unacked: u64) -> Admission {
        match self.by_client.get(&client_id) {
            // Unknown: a new client starts with nothing acknowledged; anything else had a
            // session that was evicted.
            None if first_unacked == 1 => Admission::Apply,
            None => Admission::Expired,
            Some(session) if sequence < session.first_unacked => Admission::Expired,
            Some(session) => match session.replies.get(&sequence) {
                Some(reply) => Admission::Duplicate(reply.clone()),
                None => Admission::Apply,
            },
        }
    }

    /// Remember the reply to a request that was just applied at `index`.
    pub(crate) fn record(
        &mut self,
        client_id: u64,
        sequence: u64,
        first_unacked: u64,
        index: u64,
        reply: Vec<OpResult>,
    ) {
        let session = self.by_client.entry(client_id).or_default();
        session.last_index = index;
        session.first_unacked = session.first_unacked.max(first_unacked);
        session.replies.insert(sequence, reply);
        // Forget what the client acknowledged (usually one reply, so no new map is built).
        while let Some(entry) = session.replies.first_entry() {
            if *entry.key() >= session.first_unacked {
                break;
            }
            entry.remove();
        }
        while session.replies.len() > REPLIES_PER_SESSION_MAX {
            let (oldest, _) = session.replies.pop_first().expect("non-empty");
            session.first_unacked = oldest + 1;
        }
        if self.by_client.len() > SESSIONS_MAX {
            self.evict();
        }
    }

    /// Forget the least recently active tenth of the sessions (ties broken by client id, so
    /// every replica forgets the same ones).
    fn evict(&mut self) {
        let mut by_age: Vec<(u64, u64)> = self
            .by_client
            .iter()
            .map(|(&client, s)| (s.last_index, client))
            .collect();
        by_age.sort_unstable();
        for &(_, client) in &by_age[..SESSIONS_MAX / 10] {
            self.by_client.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_gets_the_first_reply_and_an_acked_request_is_expired() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.admit(7, 1, 1), Admission::Apply);
        sessions.record(7, 1, 1, 10, vec![OpResult::Written]);
        assert_eq!(
            sessions.admit(7, 1, 1),
            Admission::Duplicate(vec![OpResult::Written])
        );
        assert_eq!(sessions.admit(7, 2, 2), Admission::Apply);
        sessions.record(7, 2, 2, 11, vec![OpResult::NotFound]);
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
            sessions.record(1, sequence, 1, sequence, vec![OpResult::Written]);
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

    #[test]
    fn eviction_forgets_the_least_recently_active_sessions() {
        let mut sessions = Sessions::default();
        for client in 0..=SESSIONS_MAX as u64 {
            sessions.record(client, 1, 1, client, vec![OpResult::Written]);
        }
        assert!(sessions.by_client.len() <= SESSIONS_MAX);
        assert!(!sessions.by_client.contains_key(&0));
        assert!(sessions.by_client.contains_key(&(SESSIONS_MAX as u64)));
    }
}
