//! One Raft group on a core: its replica, its key-value state, and the clients waiting on it.
//!
//! No I/O here: the core loop feeds requests and Readies in and takes replies out, so this
//! file holds the whole client-facing logic of a group and is tested without sockets.

use foldhash::{HashMap, HashMapExt, HashSet};

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::kv::limits::WRITE_RESULT_BYTES_MAX;
use crate::kv::{Command, KvStore, Op, Reply, Results};
use crate::proto::client::{
    ANSWER_VALUE_BYTES_MAX, Consistency, ErrorCode, Outcome, Request, Response, results_value_bytes,
};
use crate::proto::in_flight::{InFlight, Key};
use crate::proto::members::decode_addresses;
use crate::raft::{
    ConfChange, ConfChangeKind, Entry, EntryKind, NodeId, ProposeError, ReadError, ReadState,
    Ready, Replica, Role, Term,
};

/// Linearizable and lease reads one group holds, confirmed or not, before it refuses more as
/// busy: Raft's own bound (`Config::pending_reads_max`) counts only those it has not
/// confirmed, and confirmed ones wait for the state machine to reach their index.
pub const READS_WAITING_MAX: usize = 65_536;

/// The memory the reads one group holds may take (see [`read_weight`]), beside their count:
/// a read of 1,024 keys takes about 100 KiB decoded (found in review: 65,536 of them, GiBs,
/// while a stuck sync held the state machine back).
pub const READS_WAITING_BYTES_MAX: usize = 64 << 20;

/// A client connection of this core, as the loop numbers them.
pub type ConnId = u64;

/// Who waits for the writes a follower forwarded to this leader: no connection of its own
/// (the loop numbers those from 1). Their answers go nowhere; the follower answers its
/// client when it applies them.
pub const FORWARDED_CONN: ConnId = ConnId::MAX;

/// A reply for the client on connection `conn`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub conn: ConnId,
    pub response: Response,
}

#[derive(Debug)]
struct PendingRead {
    conn: ConnId,
    /// What it counts for in `Group::reads_waiting_bytes`.
    weight: usize,
    request: Request,
    /// When (the replica's ticks) a follower asked its leader to confirm it, and which node
    /// that was.
    forwarded: Option<(u64, NodeId)>,
}

/// A write a leader holds, taken in or proposed: a row of [`Group::writes`].
#[derive(Debug, Clone, Copy)]
struct HeldWrite {
    /// Who waits for its answer.
    conn: ConnId,
    /// The term it was proposed in; none while taken in.
    proposed: Option<Term>,
    /// Whether a copy proposed in an older term may yet commit (this row replaced that
    /// one's): refused before it is proposed, it is answered "maybe proposed", not "not
    /// taken" (found in review: a leader re-elected in one turn took a retry in, refused it
    /// as it stopped, and said nothing of it was taken while the older copy committed).
    older_copy: bool,
    /// When (the replica's ticks) a follower took it in to forward to its leader.
    forwarded_at: Option<u64>,
}

pub struct Group {
    pub replica: Replica,
    /// Its state machine: set before the group goes to its core (`Core::new`), replaced
    /// after only where a snapshot is installed ([`Group::apply_ready`]), which counts it.
    pub kv: KvStore,
    /// Writes taken in (no term yet: their commands wait in `pending`) or proposed here (the
    /// term they were proposed in), by (client, sequence), with the connection waiting for
    /// each: answered when applied. One row a write: its retries, from any connection, wait
    /// in it (see [`Group::wait_with_held`]).
    writes: InFlight<HeldWrite>,
    /// Writes taken in since the last [`Group::propose_pending`]: the commands of one entry
    /// (see [`crate::kv::CommandRef::read_all`]), and their (client, sequence), rows of
    /// `writes`.
    pending: BytesMut,
    pending_writes: Vec<(u64, u64)>,
    /// Since when (the replica's ticks) writes are held while no leader is known.
    held_leaderless_since: Option<u64>,
    /// Writes this follower took in to forward to its leader at the next
    /// [`Group::propose_pending`] (the commands of one entry), and their (client, sequence).
    to_forward: BytesMut,
    to_forward_writes: Vec<Key>,
    /// Writes and reads this follower forwarded (by (client, sequence), and by ctx), oldest
    /// first, with when: those still unanswered after [`Group::forward_patience_ticks`] are
    /// answered "not the leader" (a leader says nothing of those it drops).
    forwarded_writes: VecDeque<(Key, u64)>,
    forwarded_reads: VecDeque<(u64, u64)>,
    /// Reads waiting for their ReadIndex round, by ctx.
    reads_unconfirmed: HashMap<u64, PendingRead>,
    /// Reads confirmed at an index the state machine has not reached yet.
    reads_confirmed: Vec<(u64, PendingRead)>,
    /// The weights of the reads in `reads_unconfirmed` and `reads_confirmed`.
    reads_waiting_bytes: usize,
    next_ctx: u64,
    /// Where each node serves the clients of this group, for NotLeader hints.
    client_address: Box<dyn Fn(NodeId) -> String>,
    /// The member addresses changed (a conf change or a snapshot was applied) since the core
    /// last looked.
    pub members_changed: bool,
    /// The largest command the log takes as one entry (the WAL's segments bound it); larger
    /// writes are refused as too large.
    pub entry_bytes_max: usize,
    /// The core's log takes no new entries for a moment (`CoreLog::entries_wait`): while
    /// this replica leads, writes wait in `pending`, as during a handover (see
    /// [`Group::propose_pending`]).
    pub log_waits: bool,
    /// Bytes of the entries applied since the last snapshot (taken or installed): the core
    /// snapshots once there are enough.
    pub applied_bytes_since_snapshot: u64,
    /// The state machine of a snapshot received from a peer and taken by the replica,
    /// decoded off the loop (see [`crate::shard::core::load_snapshot`]): the Ready that
    /// installs the snapshot takes it instead of decoding the bytes again on the loop.
    pub loaded: Option<KvStore>,
    /// State machines this group let go of (the one a snapshot replaced, one loaded for a
    /// snapshot it did not install): for the core to free off the loop
    /// ([`crate::shard::core::CoreLog::release_state`]).
    pub retired: Vec<KvStore>,
    /// What the key-value states of its core's groups hold together, kept as each applies
    /// (see [`Group::count_kv_in`]).
    core_kv_bytes: Rc<Cell<u64>>,
}

impl Group {
    pub fn new(replica: Replica, client_address: Box<dyn Fn(NodeId) -> String>) -> Group {
        Group {
            replica,
            kv: KvStore::new(),
            writes: InFlight::default(),
            pending: BytesMut::new(),
            pending_writes: Vec::new(),
            to_forward: BytesMut::new(),
            to_forward_writes: Vec::new(),
            forwarded_writes: VecDeque::new(),
            forwarded_reads: VecDeque::new(),
            held_leaderless_since: None,
            reads_unconfirmed: HashMap::new(),
            reads_confirmed: Vec::new(),
            reads_waiting_bytes: 0,
            next_ctx: first_read_ctx(),
            client_address,
            members_changed: false,
            entry_bytes_max: usize::MAX,
            log_waits: false,
            applied_bytes_since_snapshot: 0,
            loaded: None,
            retired: Vec::new(),
            core_kv_bytes: Rc::default(),
        }
    }

    /// Whether a turn may stop looking at this group until something touches it: its replica
    /// stays quiet at its next ticks (`Replica::stays_quiet`) with nothing to hand out and no Ready in flight, and nothing waits in the
    /// group (no write, forward or read, no state to load or let go of).
    pub fn may_sleep(&self) -> bool {
        let replica = &self.replica;
        replica.stays_quiet()
            && replica.readies_in_flight() == 0
            && replica.applying() == replica.applied()
            && !replica.has_ready()
            && !replica.has_pipelined_ready()
            && self.writes.is_empty()
            && self.pending.is_empty()
            && self.to_forward.is_empty()
            && self.forwarded_writes.is_empty()
            && self.forwarded_reads.is_empty()
            && self.reads_unconfirmed.is_empty()
            && self.reads_confirmed.is_empty()
            && self.held_leaderless_since.is_none()
            && self.loaded.is_none()
            && self.retired.is_empty()
            && !self.members_changed
    }

    /// Whether a turn would find work here: a Ready (or, with Readies in flight and fewer
    /// than `readies_max`, a pipelined one), committed entries durable here to apply (unless
    /// `waits_to_apply`: a Ready in flight must apply its own first), reads confirmed or
    /// aborted, writes to propose that nothing holds, or writes to forward. For a check that
    /// what has work was touched (`Core::turn`).
    #[cfg(debug_assertions)]
    pub(super) fn has_turn_work(&self, waits_to_apply: bool, readies_max: u32) -> bool {
        let replica = &self.replica;
        let ready = match replica.readies_in_flight() {
            0 => replica.has_ready(),
            n => n < readies_max && replica.has_pipelined_ready(),
        };
        ready
            || (!waits_to_apply && replica.has_committed_durable())
            || replica.has_read_states()
            || (!self.pending.is_empty() && !self.holds_writes())
            || !self.to_forward.is_empty()
    }

    /// From now on, counts what this group's key-value state holds into `total`, shared by
    /// the groups of a core, which reads it (against its quota): kept as each applies, so the
    /// core need not sum its groups at every turn. Called once, by `Core::new`.
    pub(crate) fn count_kv_in(&mut self, total: Rc<Cell<u64>>) {
        total.set(total.get() + self.kv.data_bytes());
        self.core_kv_bytes = total;
    }

    /// What the state holds now, against `before`, into the core's count.
    fn recount_kv(&self, before: u64) {
        let total = &self.core_kv_bytes;
        debug_assert!(total.get() >= before, "the count holds this group's state");
        total.set((total.get() + self.kv.data_bytes()).saturating_sub(before));
    }

    /// Requests waiting on this group (for tests).
    pub fn waiting(&self) -> usize {
        self.waiting_on(|_| true)
    }

    /// Requests waiting on this group from the connections `open` says are open: the
    /// writes of closed ones stay until applied (see [`Group::forget_conns`]), but nobody
    /// waits for their answers.
    pub fn waiting_on(&self, open: impl Fn(ConnId) -> bool) -> usize {
        let writes = self.writes.iter().filter(|(_, held)| open(held.conn));
        writes.count() + self.reads_unconfirmed.len() + self.reads_confirmed.len()
    }

    fn not_leader(&self, request: &Request) -> Response {
        response(request, self.not_leader_outcome(false))
    }

    /// "Ask the leader", with where it serves clients if this node knows it; `maybe_proposed`:
    /// for requests this node proposed (see [`Outcome::NotLeader`]).
    fn not_leader_outcome(&self, maybe_proposed: bool) -> Outcome {
        let leader = self.replica.leader();
        let address = if leader.is_none() {
            String::new()
        } else {
            (self.client_address)(leader)
        };
        Outcome::NotLeader {
            leader: leader.0,
            address,
            maybe_proposed,
        }
    }

    /// A request for this group arrived on `conn`. Its answer goes to `out` now, or later:
    /// after commit, or after the read is confirmed. A write waits in the group's pending
    /// entry until [`Group::propose_pending`], which the core calls once per loop turn.
    pub fn handle(&mut self, conn: ConnId, request: Request, out: &mut Vec<Answer>) {
        let mut answer = |response| out.push(Answer { conn, response });
        if request.command.is_read_only() {
            if request.consistency == Consistency::Stale {
                return answer(self.serve_read(&request));
            }
            let forwarded = self.replica.role() != Role::Leader;
            if forwarded && !self.forwards(request.forward_to) {
                return answer(self.not_leader(&request));
            }
            // Raft bounds the reads it has not confirmed; confirmed ones wait here for the
            // state machine, which a stuck sync can hold back for a while.
            let waiting = self.reads_unconfirmed.len() + self.reads_confirmed.len();
            let weight = read_weight(&request);
            if waiting >= READS_WAITING_MAX
                || self.reads_waiting_bytes + weight > READS_WAITING_BYTES_MAX
            {
                // Say which wait holds most of them (found in review: the state machine was
                // blamed for reads a quorum had not yet confirmed, as at a leader cut off).
                let cause = if self.reads_unconfirmed.len() > self.reads_confirmed.len() {
                    "most wait for a majority of voters to confirm the leadership"
                } else {
                    "most wait for the state machine, behind its commit (its log's sync slow)"
                };
                let why = format!(
                    "{waiting} reads wait in this group ({} KiB), at most {READS_WAITING_MAX} \
                     and {} KiB may; {cause}",
                    self.reads_waiting_bytes >> 10,
                    READS_WAITING_BYTES_MAX >> 10
                );
                return answer(error_response(&request, ErrorCode::Busy, &why));
            }
            let ctx = self.next_ctx;
            self.next_ctx += 1;
            return match self.replica.read_index(ctx) {
                Ok(()) => {
                    let mut request = request;
                    keys_of_their_own(&mut request);
                    self.reads_waiting_bytes += weight;
                    let forwarded =
                        forwarded.then(|| (self.replica.ticks(), self.replica.leader()));
                    if let Some((at, _)) = forwarded {
                        self.forwarded_reads.push_back((ctx, at));
                    }
                    let read = PendingRead {
                        conn,
                        weight,
                        request,
                        forwarded,
                    };
                    self.reads_unconfirmed.insert(ctx, read);
                }
                Err(ReadError::NoLeader) => answer(self.not_leader(&request)),
                Err(error @ ReadError::Backpressure { .. }) => answer(error_response(
                    &request,
                    ErrorCode::Busy,
                    &error.to_string(),
                )),
            };
        }
        if self.replica.role() != Role::Leader {
            if self.forwards(request.forward_to) {
                return self.forward_write(conn, request, out);
            }
            return answer(self.not_leader(&request));
        }
        let key = (request.command.client_id, request.command.sequence);
        if self.wait_with_held(conn, key, out) {
            return;
        }
        if let Err(outcome) = self.take_in(conn, &request.command, out) {
            let response = response(&request, outcome);
            out.push(Answer { conn, response });
        }
    }

    /// A leader takes the write `command` in, for `conn`, into the entry it proposes at the
    /// next [`Group::propose_pending`]; or says why not.
    fn take_in(
        &mut self,
        conn: ConnId,
        command: &Command,
        out: &mut Vec<Answer>,
    ) -> Result<(), Outcome> {
        let key = (command.client_id, command.sequence);
        let bytes = command.encoded_len();
        if bytes > self.entry_bytes_max {
            return Err(self.too_large(bytes));
        }
        if self.pending.len() + bytes > self.entry_bytes_max {
            self.propose_pending(out);
            if !self.pending.is_empty() {
                // Held (see `propose_pending`) and full: this one must wait.
                let why = if self.log_waits {
                    "this node's log takes no new entries for a moment (its next segment is \
                     being made) and this group holds all it can"
                } else {
                    "leadership is being handed over and this group holds all it can"
                };
                return Err(busy(why));
            }
        }
        command.encode_into(&mut self.pending);
        self.pending_writes.push(key);
        // A row of an older term goes (its write may be lost, and is proposed again here):
        // who waited there is told to ask again, and gets its answer from the session.
        let held = HeldWrite {
            conn,
            proposed: None,
            older_copy: false,
            forwarded_at: None,
        };
        if let Some(earlier) = self.writes.insert(key, held) {
            self.writes.get_mut(key).expect("inserted").older_copy = true;
            self.tell_earlier(earlier.conn, conn, key, out);
        }
        Ok(())
    }

    /// "Too large" for a write of `bytes`.
    fn too_large(&self, bytes: usize) -> Outcome {
        Outcome::Error {
            code: ErrorCode::TooLarge,
            message: format!(
                "a write of {bytes} bytes; one log entry holds at most {} here (the largest \
                 message to a peer, or less with small WAL segments, --segment-mib)",
                self.entry_bytes_max
            ),
        }
    }

    /// The write `key` waited on `earlier` and now waits on `conn`: `earlier`, if another
    /// connection (or a follower's forwarding), is told to ask again; it gets its answer from
    /// the session.
    fn tell_earlier(&self, earlier: ConnId, conn: ConnId, key: Key, out: &mut Vec<Answer>) {
        if earlier != conn {
            answer_all(
                [(earlier, key)].into_iter(),
                &self.not_leader_outcome(true),
                out,
            );
        }
    }

    /// Whether this follower forwards a request that asks it to forward to `to`
    /// (`Request::forward_to`): `to` is the leader it knows, another node. Where it knows
    /// another leader, its answer names that one (a client that could not reach `to` may
    /// have found it gone).
    pub(super) fn forwards(&self, to: u64) -> bool {
        let leader = self.replica.leader();
        to != 0
            && leader.0 == to
            && self.replica.role() != Role::Leader
            && leader != self.replica.id()
    }

    /// A follower takes the write of `request` in to forward to its leader at the next
    /// [`Group::propose_pending`], and answers it when it applies it: a client that cannot
    /// reach the leader, while this node can, asked it to (found by a tester: a leader its
    /// clients could not reach kept its groups, and the clients waited, for as long as the cut
    /// lasted). Answered at once where it was decided already (a retry); a retry of one it
    /// forwarded in this term waits for that.
    fn forward_write(&mut self, conn: ConnId, request: Request, out: &mut Vec<Answer>) {
        let command = &request.command;
        let key = (command.client_id, command.sequence);
        if let Some(reply) = self.kv.decided(command) {
            let outcome = outcome_of(reply);
            return out.push(Answer {
                conn,
                response: response(&request, outcome),
            });
        }
        if self.wait_with_held(conn, key, out) {
            return;
        }
        let bytes = command.encoded_len();
        if bytes > self.entry_bytes_max {
            let response = response(&request, self.too_large(bytes));
            return out.push(Answer { conn, response });
        }
        if self.to_forward.len() + bytes > self.entry_bytes_max {
            self.forward_taken_in(out);
        }
        command.encode_into(&mut self.to_forward);
        self.to_forward_writes.push(key);
        let at = self.replica.ticks();
        self.forwarded_writes.push_back((key, at));
        let held = HeldWrite {
            conn,
            proposed: Some(self.replica.term()),
            older_copy: false,
            forwarded_at: Some(at),
        };
        if let Some(earlier) = self.writes.insert(key, held) {
            self.tell_earlier(earlier.conn, conn, key, out);
        }
    }

    /// Sends the writes taken in to forward to the leader, as one entry. Where there is none
    /// to send them to now (an election began, or this node leads), they are answered "not
    /// the leader" (maybe proposed: a copy forwarded before may yet commit).
    fn forward_taken_in(&mut self, out: &mut Vec<Answer>) {
        if self.to_forward.is_empty() {
            return;
        }
        let data = self.to_forward.split().freeze();
        let keys = std::mem::take(&mut self.to_forward_writes);
        if self.replica.forward(data).is_some() {
            return;
        }
        let outcome = self.not_leader_outcome(true);
        let unsent = keys.into_iter().filter_map(|key| {
            let held = self.writes.get(key)?;
            held.forwarded_at?;
            Some((self.writes.remove(key).expect("held").conn, key))
        });
        let unsent: Vec<(ConnId, Key)> = unsent.collect();
        answer_all(unsent.into_iter(), &outcome, out);
    }

    /// How long a follower waits for a write or read it forwarded (two election timeouts):
    /// then it answers "not the leader", and its client asks again.
    fn forward_patience_ticks(&self) -> u64 {
        2 * u64::from(self.replica.election_timeout_ticks())
    }

    /// Answers "not the leader" the writes and reads this follower forwarded that are still
    /// unanswered after [`Group::forward_patience_ticks`]: the leader dropped them (busy, at
    /// its quota, stopping), or lost its place.
    fn give_up_forwarded(&mut self, out: &mut Vec<Answer>) {
        let (now, patience) = (self.replica.ticks(), self.forward_patience_ticks());
        let due = |front: Option<u64>| front.is_some_and(|at| at + patience <= now);
        // Called every turn for every group: nothing more where nothing is due (review 302).
        if !due(self.forwarded_writes.front().map(|f| f.1))
            && !due(self.forwarded_reads.front().map(|f| f.1))
        {
            return;
        }
        let maybe_proposed = self.not_leader_outcome(true);
        while let Some(&(key, at)) = self.forwarded_writes.front()
            && at + patience <= now
        {
            self.forwarded_writes.pop_front();
            if self
                .writes
                .get(key)
                .is_some_and(|held| held.forwarded_at == Some(at))
            {
                let conn = self.writes.remove(key).expect("held").conn;
                answer_all([(conn, key)].into_iter(), &maybe_proposed, out);
            }
        }
        while let Some(&(ctx, at)) = self.forwarded_reads.front()
            && at + patience <= now
        {
            self.forwarded_reads.pop_front();
            self.answer_forwarded_read(ctx, out);
        }
    }

    /// Answers the forwarded read `ctx` "not the leader", if it still waits for its leader.
    fn answer_forwarded_read(&mut self, ctx: u64, out: &mut Vec<Answer>) {
        let Some(read) = self.reads_unconfirmed.remove(&ctx) else {
            return;
        };
        self.reads_waiting_bytes -= read.weight;
        out.push(Answer {
            conn: read.conn,
            response: self.not_leader(&read.request),
        });
    }

    /// A leader takes in `commands`, which a follower of `term` forwarded (see
    /// [`Group::forward_write`]), as it takes its clients' writes: one it holds, or decided,
    /// is not taken again; one it cannot take is dropped, and the follower's wait ends it.
    /// Dropped too where this node does not lead in `term`.
    pub fn take_forwarded(&mut self, term: Term, commands: Vec<Command>, out: &mut Vec<Answer>) {
        if self.replica.role() != Role::Leader || self.replica.term() != term {
            return;
        }
        for command in commands {
            let key = (command.client_id, command.sequence);
            if self.holds_write(key) || self.kv.decided(&command).is_some() {
                continue;
            }
            if let Err(outcome) = self.take_in(FORWARDED_CONN, &command, out) {
                tracing::debug!(?outcome, "a forwarded write dropped");
            }
        }
    }

    /// If this leader holds the write `key` (see [`Group::holds_write`]), its retry on
    /// `conn` waits for it: its answer comes to `conn`, and a connection that waited before
    /// is told to ask again (it gets its answer from the session). Proposed again, a retry
    /// took the log's room twice, and under a key-value quota it was refused, its client
    /// left not knowing whether the first applied. Whether it waits.
    pub(super) fn wait_with_held(&mut self, conn: ConnId, key: Key, out: &mut Vec<Answer>) -> bool {
        if !self.holds_write(key) {
            return false;
        }
        let row = self.writes.get_mut(key).expect("held");
        let earlier = std::mem::replace(&mut row.conn, conn);
        self.tell_earlier(earlier, conn, key, out);
        true
    }

    /// Propose the writes taken in since the last call as one entry. If the group cannot take
    /// it (no longer the leader, too much uncommitted), every one of them is answered now.
    ///
    /// While the leader hands leadership over (the leader balance does so right after a
    /// cluster starts), and then while no leader is known, the writes are held instead: the
    /// handover ends within two election timeouts, and then they are proposed here (it failed),
    /// or answered "not the leader" with the new leader's address, which the client follows
    /// at once. Refusing them as busy made every client pause and retry, and the first second
    /// of a run waited ~100 ms. Writes wait the same way while the core's log takes no new
    /// entries for a moment (its next segment is being made).
    ///
    /// No leader heard of for two election timeouts (this node cut off from the one it handed
    /// the group to, or from the followers of its own term): the writes held, and those it
    /// proposed while it led (which [`Group::leadership_changed`] leaves waiting while no
    /// leader is known), are answered "not the leader", so their clients ask another node
    /// rather than wait here until the cut heals.
    ///
    /// A follower sends its leader the writes it took in to forward (see
    /// [`Group::forward_write`]), and answers those it forwarded that waited too long.
    pub fn propose_pending(&mut self, out: &mut Vec<Answer>) {
        self.give_up_forwarded(out);
        self.forward_taken_in(out);
        let leaderless = self.replica.role() != Role::Leader && self.replica.leader().is_none();
        if leaderless && (!self.pending.is_empty() || !self.writes.is_empty()) {
            let now = self.replica.ticks();
            let patience = 2 * u64::from(self.replica.election_timeout_ticks());
            if now >= *self.held_leaderless_since.get_or_insert(now) + patience {
                self.held_leaderless_since = None;
                self.refuse_pending(&self.not_leader_outcome(false), None, out);
                self.answer_proposed(|_| true, &self.not_leader_outcome(true), out);
            }
        } else {
            self.held_leaderless_since = None;
        }
        // Commands of a connection that closed meanwhile are proposed too: taken in is taken
        // in, and their clients' retries wait for them, or are answered from the session.
        if self.pending.is_empty() || self.holds_writes() {
            return;
        }
        let data = self.pending.split().freeze();
        let refused = match self.replica.propose(data) {
            Ok(_) => {
                let term = Some(self.replica.term());
                for key in self.pending_writes.drain(..) {
                    // Gone only where an older copy applied and answered it.
                    if let Some(row) = self.writes.get_mut(key) {
                        row.proposed = term;
                    }
                }
                return;
            }
            Err(ProposeError::NotLeader { .. }) => self.not_leader_outcome(false),
            Err(error) => Outcome::Error {
                code: ErrorCode::Busy,
                message: format!("{error:?}"),
            },
        };
        self.refuse_taken_in(&refused, None, out);
    }

    /// Whether this leader holds the write `key`, taken in, or proposed in its term, and not
    /// applied yet: a retry of it waits for it (see [`Group::wait_with_held`]), and adds
    /// nothing. (A write proposed in an older term may be lost: its retry is proposed.)
    pub(super) fn holds_write(&self, key: Key) -> bool {
        let term = self.replica.term();
        (self.writes.get(key)).is_some_and(|held| held.proposed.is_none_or(|t| t == term))
    }

    /// Answers the writes taken in since the last proposal with `outcome`, and lets go of
    /// their rows; those of which an older copy may yet commit with `maybe_proposed`, or
    /// "not the leader, maybe proposed" with the leader's address (this node's, where it
    /// leads: the client asks again here).
    fn refuse_taken_in(
        &mut self,
        outcome: &Outcome,
        maybe_proposed: Option<&Outcome>,
        out: &mut Vec<Answer>,
    ) {
        let named;
        let maybe_proposed = match maybe_proposed {
            Some(given) => given,
            None => {
                named = self.not_leader_outcome(true);
                &named
            }
        };
        for key in self.pending_writes.drain(..) {
            let Some(held) = self.writes.remove(key) else {
                continue;
            };
            let outcome = if held.older_copy {
                maybe_proposed
            } else {
                outcome
            };
            answer_all([(held.conn, key)].into_iter(), outcome, out);
        }
    }

    /// A node that no longer leads, and knows who does, answers the writes waiting to be
    /// proposed "not the leader" with its address, as [`Group::propose_pending`] would at
    /// the next turn: for a core whose syncs are all at their cap, which takes no turn.
    pub(super) fn refuse_pending_as_follower(&mut self, out: &mut Vec<Answer>) {
        if self.replica.role() == Role::Leader || self.replica.leader().is_none() {
            return;
        }
        self.refuse_pending(&self.not_leader_outcome(false), None, out);
    }

    /// Answers every write waiting to be proposed with `outcome` (those of which an older
    /// copy may yet commit: see [`Group::refuse_taken_in`]): none of them is in the log.
    fn refuse_pending(
        &mut self,
        outcome: &Outcome,
        maybe_proposed: Option<&Outcome>,
        out: &mut Vec<Answer>,
    ) {
        self.pending.clear();
        self.refuse_taken_in(outcome, maybe_proposed, out);
    }

    /// Whether commands wait to be proposed (those of closed connections too).
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Answers the writes waiting to be proposed as busy, for `why`: none of them is in the
    /// log, so the client may send them again.
    pub(super) fn refuse_pending_as_busy(&mut self, why: &str, out: &mut Vec<Answer>) {
        self.refuse_pending(&busy(why), None, out);
    }

    /// The node stops: answers every request still waiting here. Writes not yet proposed,
    /// and reads, were not taken: busy, for `why` (the client may send them again, to any
    /// node). Writes proposed may yet commit under another leader: "not the leader, maybe
    /// proposed", naming none, so their clients ask another node with the same sequence (a
    /// write is applied once, whichever answers).
    pub(super) fn answer_all_at_stop(&mut self, why: &str, out: &mut Vec<Answer>) {
        let orphaned = Outcome::NotLeader {
            leader: 0,
            address: String::new(),
            maybe_proposed: true,
        };
        // A retry that replaced an older copy's row too: named, it was asked again here at
        // once, in vain (found in review).
        self.refuse_pending(&busy(why), Some(&orphaned), out);
        // Those taken in to forward wait in `writes` as proposed: answered just below.
        self.to_forward.clear();
        self.to_forward_writes.clear();
        self.answer_proposed(|_| true, &orphaned, out);
        let confirmed = self.reads_confirmed.drain(..).map(|(_, read)| read);
        self.reads_waiting_bytes = 0;
        for read in self
            .reads_unconfirmed
            .drain()
            .map(|(_, read)| read)
            .chain(confirmed)
        {
            let response = error_response(&read.request, ErrorCode::Busy, why);
            out.push(Answer {
                conn: read.conn,
                response,
            });
        }
    }

    /// Writes taken in as the leader wait in `pending` rather than be refused: see
    /// [`Group::propose_pending`].
    fn holds_writes(&self) -> bool {
        (self.log_waits && self.replica.role() == Role::Leader)
            || self.replica.lead_transferee().is_some()
            || (self.replica.role() != Role::Leader && self.replica.leader().is_none())
    }

    /// Answers a read-only request from the state machine now. One whose values would not
    /// fit one answer's frame is refused (the values are shared with the store, so building
    /// the results costs little; copying them into a frame would not).
    fn serve_read(&self, request: &Request) -> Response {
        let results: Results = request
            .command
            .ops
            .iter()
            .map(|op| match op {
                Op::Get { key } => self.kv.get(key),
                _ => unreachable!("read-only request"),
            })
            .collect();
        let value_bytes = results_value_bytes(&results);
        if value_bytes > ANSWER_VALUE_BYTES_MAX {
            let message = format!(
                "its values are {value_bytes} bytes, more than one answer carries \
                 ({ANSWER_VALUE_BYTES_MAX}): read fewer keys at a time"
            );
            return error_response(request, ErrorCode::TooLarge, &message);
        }
        response(request, Outcome::Results(results))
    }

    /// The durable part of `ready` is done: apply its committed entries and serve what they
    /// make servable. Call before `advance`. Errors are fatal for the group (corrupt log).
    pub fn apply_ready(&mut self, ready: &mut Ready, out: &mut Vec<Answer>) -> Result<(), String> {
        if let Some(snapshot) = ready.take_snapshot()
            && !snapshot.data.is_empty()
        {
            let index = snapshot.meta.index.0;
            let installed = match self.loaded.take() {
                Some(kv) if kv.applied_index() == index => kv,
                loaded => {
                    match loaded {
                        // A later one's, received since: kept for its own Ready.
                        Some(kv) if kv.applied_index() > index => self.loaded = Some(kv),
                        Some(kv) => self.retired.push(kv),
                        None => {}
                    }
                    KvStore::decode_snapshot(&snapshot.data).map_err(|e| e.to_string())?
                }
            };
            let before = self.kv.data_bytes();
            self.retired
                .push(std::mem::replace(&mut self.kv, installed));
            self.recount_kv(before);
            self.members_changed = true;
            self.applied_bytes_since_snapshot = 0;
        }
        self.apply_committed(ready, out)?;
        self.confirm_reads(ready.take_reads(), &ready.take_reads_aborted(), out);
        self.serve_confirmed_reads(out);
        if ready.soft_state().is_some() {
            self.leadership_changed(out);
        }
        Ok(())
    }

    /// Reads the replica confirmed (to serve once applied up to their index) or aborted
    /// (answered "not the leader" now).
    pub fn confirm_reads(&mut self, reads: Vec<ReadState>, aborted: &[u64], out: &mut Vec<Answer>) {
        for read in reads {
            if let Some(pending) = self.reads_unconfirmed.remove(&read.ctx) {
                self.reads_confirmed.push((read.index.0, pending));
            }
        }
        for ctx in aborted {
            if let Some(pending) = self.reads_unconfirmed.remove(ctx) {
                self.reads_waiting_bytes -= pending.weight;
                let response = self.not_leader(&pending.request);
                out.push(Answer {
                    conn: pending.conn,
                    response,
                });
            }
        }
    }

    /// Serve the confirmed reads whose index the state machine has applied.
    pub fn serve_confirmed_reads(&mut self, out: &mut Vec<Answer>) {
        let applied = self.kv.applied_index();
        let mut i = 0;
        while i < self.reads_confirmed.len() {
            if self.reads_confirmed[i].0 <= applied {
                let (_, pending) = self.reads_confirmed.swap_remove(i);
                self.reads_waiting_bytes -= pending.weight;
                let response = self.serve_read(&pending.request);
                out.push(Answer {
                    conn: pending.conn,
                    response,
                });
            } else {
                i += 1;
            }
        }
    }

    /// Apply `ready`'s committed entries (once: they are taken out of it) and answer the
    /// writes among them.
    pub fn apply_committed(
        &mut self,
        ready: &mut Ready,
        out: &mut Vec<Answer>,
    ) -> Result<(), String> {
        self.apply_entries(&ready.take_committed(), out)
    }

    /// Apply committed `entries`, in order, and answer the writes among them.
    pub fn apply_entries(
        &mut self,
        entries: &[Entry],
        out: &mut Vec<Answer>,
    ) -> Result<(), String> {
        for entry in entries {
            self.apply_entry(entry, out)?;
        }
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry, out: &mut Vec<Answer>) -> Result<(), String> {
        let index = entry.index.0;
        if index <= self.kv.applied_index() {
            return Ok(());
        }
        self.applied_bytes_since_snapshot += entry.data.len() as u64;
        if entry.kind == EntryKind::ConfChange {
            self.apply_conf_change(index, &entry.data);
            return Ok(());
        }
        if entry.kind != EntryKind::Normal || entry.data.is_empty() {
            self.kv.skip(index);
            return Ok(());
        }
        let (writes, before) = (&mut self.writes, self.kv.data_bytes());
        let applied = self
            .kv
            .apply(index, &entry.data, |command, reply| {
                let Some(HeldWrite { conn, .. }) =
                    writes.remove((command.client_id, command.sequence))
                else {
                    return;
                };
                let outcome = outcome_of(reply);
                out.push(Answer {
                    conn,
                    response: Response {
                        client_id: command.client_id,
                        sequence: command.sequence,
                        outcome,
                    },
                });
            })
            .map_err(|e| format!("entry {index}: {e}"));
        self.recount_kv(before);
        applied
    }

    /// Take the member addresses of the conf change at `index` into the state machine. The
    /// Raft core applies the change itself; one it refuses (it does not decode, or does not fit
    /// the configuration) changes no address here either, as far as the core can tell: nodes
    /// it never added have their addresses dropped by [`Group::forget_non_members`].
    fn apply_conf_change(&mut self, index: u64, data: &bytes::Bytes) {
        let Ok(change) = ConfChange::decode(data) else {
            self.kv.skip(index);
            return;
        };
        let addresses = decode_addresses(&change.context).unwrap_or_else(|why| {
            tracing::warn!(index, why, "conf change with unreadable member addresses");
            Vec::new()
        });
        let added_by = |node: u64| {
            change.changes.iter().any(|c| {
                c.node.0 == node
                    && matches!(
                        c.kind,
                        ConfChangeKind::AddVoter | ConfChangeKind::AddLearner
                    )
            })
        };
        let added = addresses
            .into_iter()
            .filter(|(node, _)| added_by(*node))
            .collect();
        let removed: Vec<u64> = (change.changes.iter())
            .filter(|c| c.kind == ConfChangeKind::Remove)
            .map(|c| c.node.0)
            .collect();
        // A node removed keeps its address until the Raft core no longer counts it
        // ([`Group::forget_non_members`]): a voter leaving through a joint configuration
        // still votes until that is left.
        self.kv.apply_membership(index, added, &removed);
        self.members_changed = true;
    }

    /// Drop the addresses of nodes that are not members (after the Raft core applied the
    /// turn's conf changes).
    pub fn forget_non_members(&mut self) {
        let members = self.replica.conf_state().members();
        self.kv
            .retain_members(|node| members.contains(&NodeId(node)));
    }

    /// The role or leader changed. Writes proposed in an earlier term may still commit, or be
    /// replaced: tell their clients to retry at the leader. Exactly-once sessions make the
    /// retry safe: a write that did commit is answered from the session, not applied twice.
    /// While no leader is known (an election is on) they wait: "ask the leader" without a
    /// leader sends the client to another node after a pause, and the election usually ends
    /// sooner (this runs again then; if none ends within two election timeouts,
    /// [`Group::propose_pending`] answers them).
    pub(super) fn leadership_changed(&mut self, out: &mut Vec<Answer>) {
        let term = self.replica.term();
        let leading = self.replica.role() == Role::Leader;
        if !leading && self.replica.leader().is_none() {
            return;
        }
        let stale = |proposed: Term| !leading || proposed < term;
        self.answer_proposed(stale, &self.not_leader_outcome(true), out);
        // Reads it forwarded to a leader it no longer follows: that one's answer would not be
        // taken (see `Replica::read_index`).
        let leader = self.replica.leader();
        let forwarded: Vec<u64> = (self.reads_unconfirmed.iter())
            .filter(|(_, read)| read.forwarded.is_some_and(|(_, to)| to != leader))
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in forwarded {
            self.answer_forwarded_read(ctx, out);
        }
    }

    /// Answers the writes proposed here in the terms `stale` picks with `outcome` (not those
    /// taken in and not yet proposed: see [`Group::propose_pending`]).
    fn answer_proposed(
        &mut self,
        stale: impl Fn(Term) -> bool,
        outcome: &Outcome,
        out: &mut Vec<Answer>,
    ) {
        let keys: Vec<Key> = self
            .writes
            .iter()
            .filter(|(_, held)| held.proposed.is_some_and(&stale))
            .map(|(key, _)| key)
            .collect();
        let writes = keys
            .into_iter()
            .map(|key| (self.writes.remove(key).expect("listed").conn, key));
        answer_all(writes, outcome, out);
    }

    /// Client connections closed: forget what they wait for (one pass for all that closed
    /// in a turn: a pass each over every request waiting stalled the loop when thousands
    /// closed at once, found in review).
    pub fn forget_conns(&mut self, closed: &HashSet<ConnId>) {
        if closed.is_empty() {
            return;
        }
        // Their writes stay, taken in or proposed, answered into the void (see
        // `Core::deliver`): a retry from the client's next connection waits for them rather
        // than going in the log again (see `handle`).
        // The weights of the reads let go come off as they go (one pass, not a second over
        // those kept).
        let mut freed = 0;
        let mut kept = |p: &PendingRead| {
            let keep = !closed.contains(&p.conn);
            freed += if keep { 0 } else { p.weight };
            keep
        };
        self.reads_unconfirmed.retain(|_, p| kept(p));
        self.reads_confirmed.retain(|(_, p)| kept(p));
        self.reads_waiting_bytes -= freed;
    }
}

/// The first ctx a group gives its reads: drawn, not 1. A follower's reads are confirmed by
/// its leader, which answers with the ctx it was asked; a node restarted in the same term
/// could take that leader's late answer to its previous run's read for its own read of the
/// same ctx, then served at an index that may miss a write (review 302). Below 2^63: ctxs
/// never wrap.
fn first_read_ctx() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() >> 1
}

/// What a waiting read takes in memory: itself, its operations, and its keys (copied out
/// of the frame they came in, see [`keys_of_their_own`]).
fn read_weight(request: &Request) -> usize {
    let keys: usize = request.command.ops.iter().map(|op| op.key().len()).sum();
    size_of::<PendingRead>() + request.command.ops.len() * size_of::<crate::kv::Op>() + keys
}

/// Copies a waiting read's keys out of the frame they came in: views of it, they would keep
/// the whole frame (up to 16 MiB) for as long as the read waits.
fn keys_of_their_own(request: &mut Request) {
    for op in request.command.ops.iter_mut() {
        if let crate::kv::Op::Get { key } = op {
            *key = Bytes::copy_from_slice(key);
        }
    }
}

fn response(request: &Request, outcome: Outcome) -> Response {
    Response {
        client_id: request.command.client_id,
        sequence: request.command.sequence,
        outcome,
    }
}

fn error_response(request: &Request, code: ErrorCode, message: &str) -> Response {
    response(
        request,
        Outcome::Error {
            code,
            message: message.to_string(),
        },
    )
}

/// Refused as busy, for `why`.
fn busy(why: &str) -> Outcome {
    Outcome::Error {
        code: ErrorCode::Busy,
        message: why.to_string(),
    }
}

/// What a client is told of a write's `reply` from the state machine.
pub(super) fn outcome_of(reply: Reply) -> Outcome {
    match reply {
        Reply::Results(results) => Outcome::Results(results),
        Reply::SessionExpired => Outcome::Error {
            code: ErrorCode::SessionExpired,
            message: "not applied now: this request's answer is no longer kept (its client \
                      session was forgotten, or moved past it); a new request starts over \
                      with a new client id"
                .to_string(),
        },
        Reply::TooLarge { value_bytes } => Outcome::Error {
            code: ErrorCode::TooLarge,
            message: format!(
                "not applied: its answer could carry {value_bytes} bytes of values (its \
                 gets', and what its conditions may find), more than a write's \
                 ({WRITE_RESULT_BYTES_MAX}): read, or compare large values, in requests of \
                 their own"
            ),
        },
    }
}

/// Answers each (connection, (client, sequence)) of `writes` with `outcome`.
fn answer_all(
    writes: impl Iterator<Item = (ConnId, Key)>,
    outcome: &Outcome,
    out: &mut Vec<Answer>,
) {
    for (conn, (client_id, sequence)) in writes {
        out.push(Answer {
            conn,
            response: Response {
                client_id,
                sequence,
                outcome: outcome.clone(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, Ops};
    use crate::raft::{Config, LogIndex, Persisted};
    use bytes::Bytes;

    fn request(sequence: u64, op: Op, consistency: Consistency) -> Request {
        Request {
            forward_to: 0,
            command: Command {
                client_id: 1,
                sequence,
                first_unacked: sequence,
                ops: Ops::from_iter([op]),
            },
            consistency,
        }
    }

    /// Hands out, persists and applies every Ready of the group.
    fn settle(group: &mut Group, out: &mut Vec<Answer>) {
        while group.replica.has_ready() {
            let mut ready = group.replica.ready();
            group.apply_ready(&mut ready, out).expect("applied");
            group.replica.advance(ready.ack());
        }
    }

    /// Goal (found in review): reads Raft confirmed wait for the state machine without
    /// bound; a stuck sync held the apply back while every heartbeat round confirmed more.
    /// Method: the sole voter's write committed and not applied (its Ready persisted, its
    /// committed entries dropped); then reads, each round's confirmed and not served, until
    /// one is refused as busy.
    #[test]
    fn reads_waiting_for_the_state_machine_are_bounded() {
        let get = || Op::Get {
            key: Bytes::from_static(b"k"),
        };
        let (group, busy) = reads_until_refused(get);
        let refused = matches!(&busy.response.outcome,
            Outcome::Error { code: ErrorCode::Busy, message }
                if message.contains("reads wait in this group")
                    && message.contains("most wait for the state machine"));
        assert!(refused, "{busy:?}");
        assert_eq!(
            group.waiting(),
            READS_WAITING_MAX + 1,
            "the reads and the write"
        );
    }

    /// Goal (review 233): reads refused because a majority has not confirmed the leader's
    /// rounds (a leader cut off from its followers) say so; the refusal blamed the state
    /// machine. Method: node 1 leads voters 1, 2 and 3, elected by node 2's vote; no round
    /// is ever answered; reads until one is refused.
    #[test]
    fn reads_waiting_for_a_majority_are_refused_saying_so() {
        use crate::raft::{Message, MessageBody, VoteResponse};
        let mut config = Config::new(NodeId(1));
        config.pre_vote = false;
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let mut replica = Replica::new(config, 7, Persisted::bootstrap(&voters)).unwrap();
        replica.campaign();
        let mut group = Group::new(replica, Box::new(|_| String::new()));
        let mut out = Vec::new();
        settle(&mut group, &mut out);
        let vote = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: group.replica.term(),
            body: MessageBody::VoteResponse(VoteResponse { reject: false }),
        };
        group.replica.step(vote).unwrap();
        settle(&mut group, &mut out);
        assert_eq!(group.replica.role(), Role::Leader);
        out.clear();
        let get = || Op::Get {
            key: Bytes::from_static(b"k"),
        };
        let busy = (1..=READS_WAITING_MAX as u64 + 1)
            .find_map(|sequence| {
                let read = request(sequence, get(), Consistency::Linearizable);
                group.handle(1, read, &mut out);
                out.pop()
            })
            .expect("a read refused");
        let refused = matches!(&busy.response.outcome,
            Outcome::Error { code: ErrorCode::Busy, message }
                if message.contains("most wait for a majority of voters"));
        assert!(refused, "{busy:?}");
    }

    /// Goal (review 217): reads waiting are bounded in bytes too, and hold copies of their
    /// keys, not the frame they came in: 65,536 reads of 1,024 keys took GiBs, each keeping
    /// its frame. Method: as above, reads of a 64 KiB key cut from a 1 MiB buffer; refused
    /// well before the count's bound; the keys held are not the buffer's; the bytes counted
    /// go back to nothing when the connection goes.
    #[test]
    fn reads_waiting_are_bounded_in_bytes_and_keep_no_frame() {
        let frame = Bytes::from(vec![7u8; 1 << 20]);
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let get = move || Op::Get {
            key: frame.slice(..64 << 10),
        };
        let (mut group, busy) = reads_until_refused(get);
        let refused = matches!(&busy.response.outcome,
            Outcome::Error { code: ErrorCode::Busy, message } if message.contains("KiB may"));
        assert!(refused, "{busy:?}");
        let waiting = group.waiting();
        assert!(
            (900..READS_WAITING_MAX / 2).contains(&waiting),
            "{waiting} waiting"
        );
        assert!(group.reads_waiting_bytes <= READS_WAITING_BYTES_MAX);
        let pending = group.reads_unconfirmed.values();
        let held = pending.chain(group.reads_confirmed.iter().map(|(_, p)| p));
        for read in held {
            let key = read.request.command.ops[0].key();
            assert!(
                !frame_range.contains(&(key.as_ptr() as usize)),
                "a view of the frame"
            );
        }
        group.forget_conns(&HashSet::from_iter([1]));
        assert_eq!(group.reads_waiting_bytes, 0);
    }

    /// Goal (review 237): the same request (client id and sequence) from two connections at
    /// once leaves neither without an answer: the earlier connection's waited for ever; and
    /// (review 279) it goes in the log once. Method: a sole voter's leader takes a put on
    /// connection 1 and the same on connection 2 before either is applied, proposed between
    /// them or together; connection 1 is told at once to ask again (maybe proposed), and
    /// connection 2 gets the write's result once applied; one entry was proposed.
    #[test]
    fn the_same_request_from_two_connections_answers_both() {
        for propose_between in [true, false] {
            let (mut group, mut out) = sole_leader();
            let last = group.replica.last_index();
            group.handle(1, request(1, put(), Consistency::Linearizable), &mut out);
            let taken_in = group.pending.len();
            if propose_between {
                group.propose_pending(&mut out);
            }
            group.handle(2, request(1, put(), Consistency::Linearizable), &mut out);
            if !propose_between {
                assert_eq!(group.pending.len(), taken_in, "taken in once");
            }
            group.propose_pending(&mut out);
            assert_eq!(
                group.replica.last_index(),
                LogIndex(last.0 + 1),
                "one entry"
            );
            settle(&mut group, &mut out);
            assert!(
                matches!(&answers_to(&out, 1)[..], [Answer { response, .. }]
                    if matches!(response.outcome, Outcome::NotLeader { maybe_proposed: true, .. })),
                "{out:?}"
            );
            assert!(answered_with_results(&out, 2), "{out:?}");
        }
    }

    /// Goal (review 279): a retry waits only for a write proposed in this leader's term: one
    /// of an older term may be lost (the replica may lead again before the core hears that it
    /// stopped), so its retry is proposed anew, not left waiting for a write that never
    /// applies. Method: a sole voter's leader holds a write of an older term (put in by hand,
    /// as a leader re-elected before its Ready is handled leaves it); the same request on
    /// connection 2 is proposed (one entry more) and answered once applied.
    /// Goal (review 302): each group, and each run of a node, numbers its reads from a
    /// drawn start, not from 1 (see `first_read_ctx`), below 2^63.
    #[test]
    fn reads_are_numbered_from_a_drawn_start() {
        let (a, b) = (first_read_ctx(), first_read_ctx());
        assert_ne!(a, b);
        assert!(a < 1 << 63 && b < 1 << 63);
    }

    #[test]
    fn a_retry_of_a_write_of_an_older_term_is_proposed_again() {
        let (mut group, mut out) = sole_leader();
        let older = Term(group.replica.term().0 - 1);
        let held = HeldWrite {
            conn: 1,
            proposed: Some(older),
            older_copy: false,
            forwarded_at: None,
        };
        group.writes.insert((1, 1), held);
        let last = group.replica.last_index();
        group.handle(2, request(1, put(), Consistency::Linearizable), &mut out);
        group.propose_pending(&mut out);
        assert_eq!(group.replica.last_index(), LogIndex(last.0 + 1), "proposed");
        settle(&mut group, &mut out);
        assert!(answered_with_results(&out, 2), "{out:?}");
    }

    /// Goal (review 282): a retry that replaced the row of a copy proposed in an older term
    /// (which may yet commit), refused before it is proposed, is answered "maybe proposed",
    /// not "nothing taken". Method: a sole voter's leader holds write 1 of an older term (by
    /// hand, as above); its retry on the same connection and a new write 2 on connection 2
    /// are taken in, then the node stops: write 1's answer says it may have been proposed,
    /// write 2's that it was refused as busy.
    #[test]
    fn a_refused_retry_of_a_write_of_an_older_term_may_have_been_proposed() {
        let (mut group, mut out) = sole_leader();
        let held = HeldWrite {
            conn: 1,
            proposed: Some(Term(group.replica.term().0 - 1)),
            older_copy: false,
            forwarded_at: None,
        };
        group.writes.insert((1, 1), held);
        group.handle(1, request(1, put(), Consistency::Linearizable), &mut out);
        group.handle(2, request(2, put(), Consistency::Linearizable), &mut out);
        assert!(out.is_empty(), "{out:?}");
        group.answer_all_at_stop("stopping", &mut out);
        // Naming no leader: this one stops.
        let maybe_proposed = |outcome: &Outcome| {
            matches!(
                outcome,
                Outcome::NotLeader {
                    leader: 0,
                    maybe_proposed: true,
                    ..
                }
            )
        };
        assert!(
            matches!(&answers_to(&out, 1)[..], [Answer { response, .. }]
                if maybe_proposed(&response.outcome)),
            "{out:?}"
        );
        assert!(
            matches!(&answers_to(&out, 2)[..], [Answer { response, .. }]
                if matches!(response.outcome, Outcome::Error { code: ErrorCode::Busy, .. })),
            "{out:?}"
        );
        assert_eq!(group.waiting(), 0);
    }

    /// Goal (review 281): retries of a write held back (the log takes no entries for a
    /// moment) hold one row, whatever their number and connections: each added a row, without
    /// bound, as new writes are refused once the entry is full. Method: a sole voter's leader
    /// whose log waits takes write 1, then 10,000 retries of it on connections 2 and 3 in
    /// turn; one row, each displaced connection told at once to ask again; the write is
    /// taken in once, and once the log takes entries the last connection gets its result.
    #[test]
    fn retries_of_a_held_write_hold_one_row() {
        let (mut group, mut out) = sole_leader();
        group.log_waits = true;
        group.handle(1, request(1, put(), Consistency::Linearizable), &mut out);
        let taken_in = group.pending.len();
        for i in 0..10_000 {
            let conn = 2 + i % 2;
            group.handle(conn, request(1, put(), Consistency::Linearizable), &mut out);
            group.propose_pending(&mut out);
        }
        assert_eq!(group.waiting(), 1);
        assert_eq!(group.pending.len(), taken_in, "taken in once");
        assert_eq!(out.len(), 10_000, "each displaced connection told");
        out.clear();
        group.log_waits = false;
        group.propose_pending(&mut out);
        settle(&mut group, &mut out);
        assert!(answered_with_results(&out, 3), "{out:?}");
    }

    /// A sole voter elected and settled, its clients answered at 127.0.0.1:7101; and where
    /// answers go.
    fn sole_leader() -> (Group, Vec<Answer>) {
        let mut replica = Replica::new(
            Config::new(NodeId(1)),
            7,
            Persisted::bootstrap(&[NodeId(1)]),
        )
        .unwrap();
        replica.campaign();
        let mut group = Group::new(replica, Box::new(|_| "127.0.0.1:7101".to_string()));
        let mut out = Vec::new();
        settle(&mut group, &mut out);
        out.clear();
        (group, out)
    }

    fn put() -> Op {
        Op::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        }
    }

    fn answers_to(out: &[Answer], conn: ConnId) -> Vec<&Answer> {
        out.iter().filter(|a| a.conn == conn).collect()
    }

    /// Whether `conn` got one answer in `out`, a write's results.
    fn answered_with_results(out: &[Answer], conn: ConnId) -> bool {
        matches!(&answers_to(out, conn)[..], [Answer { response, .. }]
            if matches!(response.outcome, Outcome::Results(_)))
    }

    /// The sole voter's write committed and not applied (its Ready persisted, its committed
    /// entries dropped); then reads made by `get`, each round's confirmed and not served,
    /// until one is refused: the group, and that answer.
    fn reads_until_refused(get: impl Fn() -> Op) -> (Group, Answer) {
        let mut replica = Replica::new(
            Config::new(NodeId(1)),
            7,
            Persisted::bootstrap(&[NodeId(1)]),
        )
        .unwrap();
        replica.campaign();
        let mut group = Group::new(replica, Box::new(|_| String::new()));
        let mut out = Vec::new();
        settle(&mut group, &mut out);
        assert_eq!(group.replica.role(), Role::Leader);
        let put = Op::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        group.handle(1, request(1, put, Consistency::Linearizable), &mut out);
        group.propose_pending(&mut out);
        while group.replica.has_ready() {
            let ready = group.replica.ready();
            group.replica.advance(ready.ack());
        }
        let mut sequence = 2;
        let busy = 'rounds: loop {
            for _ in 0..1024 {
                group.handle(
                    1,
                    request(sequence, get(), Consistency::Linearizable),
                    &mut out,
                );
                sequence += 1;
                if let Some(answer) = out.pop() {
                    break 'rounds answer;
                }
            }
            assert!(sequence < 4 * READS_WAITING_MAX as u64, "never refused");
            let mut ready = group.replica.ready();
            group.confirm_reads(ready.take_reads(), &ready.take_reads_aborted(), &mut out);
            group.replica.advance(ready.ack());
        };
        (group, busy)
    }
}
