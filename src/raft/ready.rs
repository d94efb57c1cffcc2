//! The Ready/advance contract: everything the caller must do, in order, after a turn.

use super::message::Message;
use super::replica::{LostEntries, ReadState, Replica};
use super::types::{Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, Term};

/// Work the caller must do, in this order:
/// 1. Persist: if `snapshot` is set, store it (it replaces the whole log); then write
///    `entries` (if the first one's index is at or below the last index written before, the
///    log from that index on is replaced) and `hard_state`. Sync if `must_sync`.
/// 2. Send `messages_now` at once, even before step 1 is durable (this is how a leader
///    writes its own log in parallel with replication); send `messages_after_persist` only
///    once step 1 is durable (they promise votes and acknowledged appends). While a new
///    term or vote is not durable yet, every message waits for it: `messages_now` is then
///    empty. (A group's only voter wins its election in the step it starts it; its appends
///    to learners must not carry a term that a crash could make it win again with a
///    different log.)
/// 3. Apply `snapshot` (if any) to the state machine, then the `committed` entries.
///    Serve each read in `reads` once applied up to its index (that waits for no write of
///    this Ready); fail those in `reads_aborted`.
/// 4. Call `advance(ready.ack())`.
///
/// Between `ready()` and `advance()` the replica may still be stepped, ticked and proposed
/// to; what that produces comes in the next Ready. That next Ready is handed out after the
/// advance (`has_ready`), or before it as a *pipelined* Ready (`has_pipelined_ready`): one
/// that carries only writes and messages (entries, hard state, `messages_now`,
/// `messages_after_persist`), never a snapshot, committed entries or reads. So a leader
/// sends the appends of new proposals while its last write is still syncing, and a follower
/// writes the next batch while it syncs the last. The caller persists Readies in the order
/// they were handed out, and does step 2's `messages_after_persist` and step 4 for each in
/// that order too (a Ready's acks promise the writes of every Ready before it).
///
/// Two exceptions to the order, both for committed entries already durable on this node
/// (applying them waits for nothing): when `committed_durable()` says so, this Ready's
/// committed entries may be applied at once, before step 1 is durable; and while a Ready is
/// in flight, `Replica::take_committed_durable` hands out what was committed meanwhile. So a
/// leader whose followers acknowledge a batch while it syncs the next answers that batch
/// without waiting for the sync.
#[must_use = "a Ready carries durability obligations"]
#[derive(Debug, Default)]
pub struct Ready {
    soft_state: Option<(Role, NodeId)>,
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    must_sync: bool,
    committed_durable: bool,
    messages_now: Vec<Message>,
    messages_after_persist: Vec<Message>,
    committed: Vec<Entry>,
    reads: Vec<ReadState>,
    reads_aborted: Vec<u64>,
    lost_entries: Vec<LostEntries>,
    ack: ReadyAck,
}

/// What the caller hands back to `advance` once a Ready's obligations are done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyAck {
    /// The last entry this Ready writes, and the log's truncations when it was handed out.
    persisted: Option<(LogIndex, Term, u64)>,
    snapshot_index: Option<LogIndex>,
    applied: Option<LogIndex>,
    /// The term and vote this Ready writes, when they changed.
    term_vote: Option<(Term, NodeId)>,
}

impl Ready {
    /// The role and leader, when they changed since the last Ready.
    pub fn soft_state(&self) -> Option<(Role, NodeId)> {
        self.soft_state
    }
    pub fn hard_state(&self) -> Option<HardState> {
        self.hard_state
    }
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }
    /// Whether every committed entry was durable on this node before this Ready, so they
    /// may be applied before this Ready's writes are (see the type's doc).
    pub fn committed_durable(&self) -> bool {
        self.committed_durable
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    pub fn committed(&self) -> &[Entry] {
        &self.committed
    }
    pub fn reads(&self) -> &[ReadState] {
        &self.reads
    }
    pub fn reads_aborted(&self) -> &[u64] {
        &self.reads_aborted
    }
    /// Followers this leader found without entries they had acknowledged (see
    /// [`LostEntries`]): for the caller to report.
    pub fn lost_entries(&self) -> &[LostEntries] {
        &self.lost_entries
    }
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take()
    }
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }
    pub fn take_messages_now(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages_now)
    }
    pub fn take_messages_after_persist(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages_after_persist)
    }
    pub fn take_committed(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.committed)
    }
    pub fn take_reads(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.reads)
    }
    pub fn take_reads_aborted(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.reads_aborted)
    }
    pub fn ack(&self) -> ReadyAck {
        self.ack
    }
}

impl Replica {
    /// Is there anything for the caller to do? False while a Ready is in flight (see
    /// `has_pipelined_ready`).
    pub fn has_ready(&self) -> bool {
        self.readies_in_flight == 0
            && (!self.messages_now.is_empty() || self.has_more_than_messages())
    }

    /// Whether a Ready would carry more than the messages to send now.
    fn has_more_than_messages(&self) -> bool {
        let leader_work =
            self.role == Role::Leader && (self.broadcast_pending || self.reads.has_unassigned());
        leader_work
            || !self.messages_after_persist.is_empty()
            || self.log.has_unstable()
            || self.snapshot_to_persist.is_some()
            || self.log.committed >= self.log.next_to_apply()
            || !self.reads.ready.is_empty()
            || !self.reads.aborted.is_empty()
            || self.hard_state() != self.hard_state_handed_out
            || (self.role, self.leader) != self.soft_state_handed_out
            || !self.lost_entries.is_empty()
    }

    /// The messages to send now, where they are all a Ready would carry (a leader's
    /// heartbeats, a follower's answers to them: an idle group's whole traffic), taken
    /// without one; None where a Ready is due for more, or is in flight, or the term or vote
    /// is not durable. A Ready made, staged, handed back and advanced for each heartbeat took
    /// about a fifth of the CPU of three nodes with 1,000 idle groups (418 ms a second against
    /// 332 without). Nor where the Ready's advance would do something: say what
    /// `take_committed_durable` applied, or leave a joint configuration (a leader whose
    /// transfer was given up leaves it there; found in review: an idle group stayed joint,
    /// and `members` changes waited, until a write came).
    pub fn take_messages_alone(&mut self) -> Option<Vec<Message>> {
        let alone = self.readies_in_flight == 0
            && !self.messages_now.is_empty()
            && (self.term, self.vote) == self.term_vote_durable
            && !self.advance_would_act()
            && !self.has_more_than_messages();
        alone.then(|| std::mem::take(&mut self.messages_now))
    }

    /// With Readies in flight: is a pipelined Ready due (see [`Ready`])? Only for new entries
    /// or messages (a leader's appends, a follower's acks, votes), and never while a snapshot
    /// waits to be handed out or a committed membership change waits to be applied: those
    /// come in a full Ready once every Ready in flight is advanced, so pipelining must pause
    /// for them. (Other committed entries go out through `take_committed_durable`.)
    pub fn has_pipelined_ready(&self) -> bool {
        if self.readies_in_flight == 0 || self.snapshot_to_persist.is_some() {
            return false;
        }
        let leader_work =
            self.role == Role::Leader && (self.broadcast_pending || self.reads.has_unassigned());
        (leader_work
            || !self.messages_now.is_empty()
            || !self.messages_after_persist.is_empty()
            || self.log.has_unstable())
            && !self.conf_change_to_apply()
    }

    /// Whether a committed membership change is not handed out for applying yet.
    fn conf_change_to_apply(&self) -> bool {
        self.conf_change_committed_from(self.log.next_to_apply())
    }

    /// The commit written is never below the one restored past the log (`commit_restored`):
    /// restarted from it, the node keeps voting for no candidate short of it (found in
    /// review: the log's own commit, its last index, went to the disk with the next vote,
    /// and the restart after that had no guard left). Not a commit a leader named
    /// (`committed_not_held`): a restart counts every entry it holds up to the commit
    /// written as committed, and entries an older copy of the log brought back are not the
    /// leader's (found in review of that fix).
    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed.max(self.commit_restored),
        }
    }

    /// Collect the work of this turn. The end of a turn is also when the leader sends what
    /// the turn produced: one append per follower for all proposals, one heartbeat round
    /// for all new reads.
    ///
    /// With Readies in flight this is a pipelined Ready (see [`Ready`]): no snapshot,
    /// committed entries or reads.
    pub fn ready(&mut self) -> Ready {
        let pipelined = self.readies_in_flight > 0;
        if self.role == Role::Leader {
            if self.reads.has_unassigned() {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat();
            }
            if self.broadcast_pending {
                self.broadcast_pending = false;
                self.broadcast_append();
            }
        }
        let snapshot = if pipelined {
            None
        } else {
            self.snapshot_to_persist.take()
        };
        let entries = self.log.take_unstable();
        let hard_state = self.hard_state();
        let previous = self.hard_state_handed_out;
        let must_sync = snapshot.is_some()
            || !entries.is_empty()
            || (hard_state.term, hard_state.vote) != (previous.term, previous.vote);
        let committed = if pipelined {
            Vec::new()
        } else {
            self.log.committed_from(self.log.next_to_apply())
        };
        if let Some(last) = committed.last() {
            self.log.applying = last.index;
        }
        let committed_durable = snapshot.is_none()
            && committed
                .last()
                .is_some_and(|last| last.index <= self.log.persisted);
        self.note_committed(&committed);
        let soft_state = (self.role, self.leader);
        let term_vote = (hard_state.term, hard_state.vote);
        let term_vote_new = term_vote != (previous.term, previous.vote);
        let mut messages_now = std::mem::take(&mut self.messages_now);
        let mut messages_after_persist = std::mem::take(&mut self.messages_after_persist);
        if term_vote != self.term_vote_durable && !messages_now.is_empty() {
            messages_now.append(&mut messages_after_persist);
            messages_after_persist = messages_now;
            messages_now = Vec::new();
        }
        let ack = ReadyAck {
            term_vote: term_vote_new.then_some(term_vote),
            persisted: entries
                .last()
                .map(|e| (e.index, e.term, self.log.truncations)),
            snapshot_index: snapshot.as_ref().map(|s| s.meta.index),
            // Entries handed out by `take_committed_durable` since the last Ready count too:
            // they were applied when taken.
            applied: (self.log.applying > self.log.applied).then_some(self.log.applying),
        };
        let mut ready = Ready {
            soft_state: (soft_state != self.soft_state_handed_out).then_some(soft_state),
            hard_state: (hard_state != previous).then_some(hard_state),
            snapshot,
            entries,
            must_sync,
            committed_durable,
            messages_now,
            messages_after_persist,
            committed,
            lost_entries: std::mem::take(&mut self.lost_entries),
            ack,
            ..Ready::default()
        };
        if !pipelined {
            ready.reads = std::mem::take(&mut self.reads.ready);
            ready.reads_aborted = std::mem::take(&mut self.reads.aborted);
        }
        self.hard_state_handed_out = hard_state;
        self.soft_state_handed_out = soft_state;
        self.readies_in_flight += 1;
        ready
    }

    /// The messages a Ready would have the caller send at once (see [`Ready`], step 2), taken
    /// without a Ready: for a caller that cannot take one now (its syncs are at their cap)
    /// but must not hold back a leader's heartbeats and appends, or a follower's heartbeat
    /// answers. None while the term or vote is not durable: every message waits for it.
    pub fn take_messages_now(&mut self) -> Vec<Message> {
        if (self.term, self.vote) != self.term_vote_durable {
            return Vec::new();
        }
        std::mem::take(&mut self.messages_now)
    }

    /// The role and leader, when they changed since the last Ready or call, taken without a
    /// Ready (as [`Replica::take_messages_now`]): the next Ready does not carry them again.
    /// A caller says them before it sends the messages that announce them.
    pub fn take_soft_state(&mut self) -> Option<(Role, NodeId)> {
        let now = (self.role, self.leader);
        (now != self.soft_state_handed_out).then(|| {
            self.soft_state_handed_out = now;
            now
        })
    }

    /// Committed entries not handed out yet and durable on this node, for the caller to
    /// apply at once (they count as applied from here on). May be called while Readies are
    /// in flight, once the caller applied their committed entries and installed their
    /// snapshots (so the order of application holds). Stops before a membership change,
    /// which comes in a Ready, and gives nothing while a snapshot waits to be handed out.
    ///
    /// This is how a leader whose followers acknowledge a batch while it syncs the next
    /// answers that batch without waiting for the sync.
    pub fn take_committed_durable(&mut self) -> Vec<Entry> {
        if self.snapshot_to_persist.is_some() {
            return Vec::new();
        }
        let to = self.log.committed.min(self.log.persisted);
        let mut entries = self.log.committed_between(self.log.next_to_apply(), to);
        if let Some(conf) = entries.iter().position(|e| e.kind == EntryKind::ConfChange) {
            entries.truncate(conf);
        }
        if let Some(last) = entries.last() {
            self.log.applying = last.index;
        }
        self.note_committed(&entries);
        entries
    }

    /// Whether [`Replica::take_committed_durable`] would hand out entries now.
    pub fn has_committed_durable(&self) -> bool {
        let next = self.log.next_to_apply();
        self.snapshot_to_persist.is_none()
            && next <= self.log.committed.min(self.log.persisted)
            && (self.log.entry(next)).is_some_and(|e| e.kind != EntryKind::ConfChange)
    }

    /// Whether reads were confirmed or aborted since the last Ready or
    /// [`Replica::take_read_states`].
    pub fn has_read_states(&self) -> bool {
        !self.reads.ready.is_empty() || !self.reads.aborted.is_empty()
    }

    /// The reads confirmed (each to serve once applied up to its index) and aborted since
    /// the last Ready, as that Ready would carry them. May be called while a Ready is in
    /// flight: a read waits for no write to be durable.
    pub fn take_read_states(&mut self) -> (Vec<ReadState>, Vec<u64>) {
        (
            std::mem::take(&mut self.reads.ready),
            std::mem::take(&mut self.reads.aborted),
        )
    }

    fn note_committed(&mut self, committed: &[Entry]) {
        let mut bytes = 0;
        for entry in committed {
            if entry.kind == EntryKind::ConfChange {
                self.conf_entries_applying.push(entry.index);
            }
            bytes += entry.size_bytes();
        }
        if self.role == Role::Leader {
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
        }
    }

    /// Whether advancing a Ready that carried only messages would change anything: it would
    /// say what `take_committed_durable` applied, or have a leader leave its joint
    /// configuration. Kept in step with [`Replica::advance`]: while this holds, messages are
    /// not taken alone ([`Replica::take_messages_alone`]), and the Ready that carries them is
    /// advanced.
    fn advance_would_act(&self) -> bool {
        self.log.applying > self.log.applied || self.leaves_joint_next()
    }

    /// The caller finished the obligations of the last Ready.
    pub fn advance(&mut self, ack: ReadyAck) {
        assert!(
            self.readies_in_flight > 0,
            "node {}: advance() without a Ready in flight",
            self.id
        );
        self.readies_in_flight -= 1;
        if let Some(term_vote) = ack.term_vote {
            self.term_vote_durable = term_vote;
        }
        if let Some(index) = ack.snapshot_index
            && index == self.log.snapshot_index()
        {
            self.log.persisted = self.log.persisted.max(index);
        }
        if let Some((index, term, truncations)) = ack.persisted {
            self.log.persisted_to(index, term, truncations);
        }
        for index in std::mem::take(&mut self.conf_entries_applying) {
            if let Some(data) = self.log.entry(index).map(|e| e.data.clone()) {
                self.apply_conf_entry(index, &data);
            }
        }
        if let Some(applied) = ack.applied {
            self.log.applied = self.log.applied.max(applied.min(self.log.committed));
        }
        if self.role == Role::Leader {
            self.leader_persisted();
            self.maybe_leave_joint();
        }
    }
}
