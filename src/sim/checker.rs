//! Raft's safety properties, checked after every step of a simulation.
//!
//! - Election safety: at most one leader per term.
//! - Leader completeness: a new leader's log holds every entry committed before it.
//! - Log matching: two logs with an entry of the same index and term agree up to there.
//! - State machine safety: no two replicas apply different entries at the same index.
//! - Committed entries are never lost: they are recorded the moment any replica commits
//!   them, and every later leader and every restarted replica must agree.
//! - Linearizable reads: a read is answered at an index no lower than anything committed
//!   anywhere before the read was asked.

use std::collections::BTreeMap;

use crate::raft::{Entry, LogIndex, NodeId, Replica, Role, Term};

use super::disk::StateMachine;

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry any replica has committed: (term, payload hash).
    committed: BTreeMap<LogIndex, (Term, u64)>,
    /// The state machine hash after applying each index.
    state_at: BTreeMap<LogIndex, u64>,
    pub elections: u64,
    pub reads_checked: u64,
}

pub(crate) fn payload_hash(entry: &Entry) -> u64 {
    let mut machine = StateMachine {
        applied: entry.index.prev(),
        hash: 0,
    };
    machine.apply(entry);
    machine.hash
}

impl Checker {
    pub fn max_committed(&self) -> LogIndex {
        self.committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(LogIndex::ZERO)
    }

    /// `replica` just became leader (or is seen leading for the first time this term).
    pub fn on_leader(&mut self, replica: &Replica) -> Result<(), String> {
        let (id, term) = (replica.id(), replica.term());
        debug_assert_eq!(replica.role(), Role::Leader);
        if let Some(&other) = self.leaders.get(&term)
            && other != id
        {
            return Err(format!(
                "election safety: nodes {other} and {id} both lead term {term}"
            ));
        }
        if self.leaders.insert(term, id).is_none() {
            self.elections += 1;
        }
        if replica.last_index() < self.max_committed() {
            return Err(format!(
                "leader completeness: node {id} leads term {term} with last index {} but {} is committed",
                replica.last_index(),
                self.max_committed()
            ));
        }
        for (&index, &(committed_term, hash)) in
            self.committed.range(replica.snapshot_index().next()..)
        {
            let entry = replica
                .entry(index)
                .expect("index within last_index, above the snapshot");
            if entry.term != committed_term || payload_hash(entry) != hash {
                return Err(format!(
                    "leader completeness: node {id} leads term {term} but its entry {index} (term {}) \
                     differs from the committed one (term {committed_term})",
                    entry.term
                ));
            }
        }
        Ok(())
    }

    /// Record what `replica` has committed beyond `from`.
    pub fn on_commit(&mut self, replica: &Replica, from: LogIndex) -> Result<(), String> {
        let mut index = from.next().max(replica.snapshot_index().next());
        while index <= replica.commit() {
            let entry = replica
                .entry(index)
                .expect("committed entries above the snapshot are in memory");
            let record = (entry.term, payload_hash(entry));
            match self.committed.get(&index) {
                Some(&existing) if existing != record => {
                    return Err(format!(
                        "committed entry changed: node {} committed index {index} in term {} but term {} \
                         was committed there before",
                        replica.id(),
                        entry.term,
                        existing.0
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(index, record);
                }
            }
            index = index.next();
        }
        Ok(())
    }

    pub fn on_apply(&mut self, node: NodeId, state: StateMachine) -> Result<(), String> {
        match self.state_at.get(&state.applied) {
            Some(&hash) if hash != state.hash => Err(format!(
                "state machine safety: node {node} has a different state after applying index {}",
                state.applied
            )),
            Some(_) => Ok(()),
            None => {
                self.state_at.insert(state.applied, state.hash);
                Ok(())
            }
        }
    }

    pub fn on_read(
        &mut self,
        node: NodeId,
        index: LogIndex,
        committed_when_asked: LogIndex,
    ) -> Result<(), String> {
        self.reads_checked += 1;
        if index < committed_when_asked {
            return Err(format!(
                "stale read: node {node} answered at index {index} but {committed_when_asked} was committed \
                 before the read was asked"
            ));
        }
        Ok(())
    }

    /// Log matching across every pair of live replicas.
    pub fn check_log_matching(&self, replicas: &[&Replica]) -> Result<(), String> {
        for (i, a) in replicas.iter().enumerate() {
            for b in &replicas[i + 1..] {
                check_pair(a, b)?;
            }
        }
        Ok(())
    }
}

fn check_pair(a: &Replica, b: &Replica) -> Result<(), String> {
    let low = a.snapshot_index().max(b.snapshot_index()).next();
    let high = a.last_index().min(b.last_index());
    // Find the highest index where both hold the same term; below it all must agree.
    let mut top = high;
    while top >= low {
        let (ea, eb) = (a.entry(top), b.entry(top));
        if let (Some(ea), Some(eb)) = (ea, eb)
            && ea.term == eb.term
        {
            break;
        }
        top = top.prev();
        if top == LogIndex::ZERO {
            return Ok(());
        }
    }
    let mut index = low;
    while index <= top {
        let (ea, eb) = (
            a.entry(index).expect("in range"),
            b.entry(index).expect("in range"),
        );
        if ea != eb {
            return Err(format!(
                "log matching: nodes {} and {} agree at index {top} but differ at {index} (terms {} and {})",
                a.id(),
                b.id(),
                ea.term,
                eb.term
            ));
        }
        index = index.next();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The checker must reject each violation it claims to catch; otherwise a green sweep
    //! proves nothing.

    use bytes::Bytes;

    use super::*;
    use crate::raft::{Config, EntryKind, HardState, Persisted};

    /// A replica of `voters` whose log is the bootstrap entry plus `terms` (one entry per
    /// term, payload `data`), committed up to `commit`.
    fn replica(
        id: u64,
        voters: &[u64],
        terms: &[u64],
        data: &'static [u8],
        commit: u64,
    ) -> Replica {
        let voters: Vec<NodeId> = voters.iter().map(|&v| NodeId(v)).collect();
        let mut persisted = Persisted::bootstrap(&voters);
        for (i, &term) in terms.iter().enumerate() {
            persisted.entries.push(Entry {
                term: Term(term),
                index: LogIndex(2 + i as u64),
                kind: EntryKind::Normal,
                data: Bytes::from_static(data),
            });
        }
        let term = Term(terms.last().copied().unwrap_or(1));
        persisted.hard_state = HardState {
            term,
            vote: NodeId::NONE,
            commit: LogIndex(commit),
        };
        let mut config = Config::new(NodeId(id));
        config.pre_vote = false;
        Replica::new(config, id, persisted).unwrap()
    }

    #[test]
    fn two_leaders_of_one_term_are_caught() {
        let mut checker = Checker::default();
        for id in [1, 2] {
            // Each is the sole voter of its own (disjoint) group, so each wins term 2 alone.
            let mut leader = replica(id, &[id], &[], b"", 1);
            leader.campaign();
            let ready = leader.ready();
            leader.advance(ready.ack());
            assert_eq!(leader.role(), Role::Leader);
            let result = checker.on_leader(&leader);
            assert_eq!(result.is_err(), id == 2, "{result:?}");
        }
    }

    #[test]
    fn a_committed_entry_that_changes_is_caught() {
        let mut checker = Checker::default();
        let a = replica(1, &[1, 2, 3], &[2], b"a", 2);
        let b = replica(2, &[1, 2, 3], &[3], b"a", 2);
        checker.on_commit(&a, LogIndex::ZERO).unwrap();
        let error = checker.on_commit(&b, LogIndex::ZERO).unwrap_err();
        assert!(error.contains("committed entry changed"), "{error}");
        // Same term, other payload: caught as well.
        let c = replica(3, &[1, 2, 3], &[2], b"c", 2);
        assert!(checker.on_commit(&c, LogIndex::ZERO).is_err());
    }

    #[test]
    fn a_leader_missing_a_committed_entry_is_caught() {
        let mut checker = Checker::default();
        let follower = replica(1, &[1, 2, 3], &[2, 2], b"a", 3);
        checker.on_commit(&follower, LogIndex::ZERO).unwrap();
        let mut leader = replica(2, &[2], &[2], b"a", 1);
        leader.campaign();
        let ready = leader.ready();
        leader.advance(ready.ack());
        let error = checker.on_leader(&leader).unwrap_err();
        assert!(error.contains("leader completeness"), "{error}");
    }

    #[test]
    fn diverging_logs_below_a_common_entry_are_caught() {
        let checker = Checker::default();
        let a = replica(1, &[1, 2, 3], &[2, 3], b"a", 1);
        let b = replica(2, &[1, 2, 3], &[2, 3], b"b", 1);
        let error = checker.check_log_matching(&[&a, &b]).unwrap_err();
        assert!(error.contains("log matching"), "{error}");
        let c = replica(3, &[1, 2, 3], &[2, 3], b"a", 1);
        checker.check_log_matching(&[&a, &c]).unwrap();
    }

    #[test]
    fn different_states_at_one_index_and_stale_reads_are_caught() {
        let mut checker = Checker::default();
        let state = |hash| StateMachine {
            applied: LogIndex(5),
            hash,
        };
        checker.on_apply(NodeId(1), state(10)).unwrap();
        checker.on_apply(NodeId(2), state(10)).unwrap();
        assert!(checker.on_apply(NodeId(3), state(11)).is_err());
        checker
            .on_read(NodeId(1), LogIndex(5), LogIndex(5))
            .unwrap();
        assert!(
            checker
                .on_read(NodeId(1), LogIndex(4), LogIndex(5))
                .is_err()
        );
    }
}
