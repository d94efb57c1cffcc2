//! One replica of one Raft group: its state, its public interface and its role changes.
//!
//! The handlers live beside this file: `election.rs` (votes), `replication.rs` (appends,
//! heartbeats, snapshots, commit), `reads.rs` (ReadIndex and lease reads), `membership.rs`
//! (conf changes) and `ready.rs` (the Ready/advance contract).

use bytes::Bytes;

use super::confchange::{ConfChange, ConfChangeKind};
use super::config::{Config, ConfigError};
use super::errors::{CompactError, ProposeError, ReadError, StepError, TransferError};
use super::log::{Keep, RaftLog};
use super::message::{Message, MessageBody};
use super::progress::{Inflights, Progress, ProgressState};
use super::reads::ReadQueue;
use super::rng::Prng;
use super::types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term,
};

/// What a replica finds on its disk when it starts.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest snapshot; index 0 when the log was never compacted.
    pub snapshot: Snapshot,
    /// The entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// The state every initial member of a new group starts from: one committed entry at
    /// index 1 that makes `voters` the members. All initial members must use the same list.
    pub fn bootstrap(voters: &[NodeId]) -> Persisted {
        Persisted::bootstrap_with_context(voters, bytes::Bytes::new())
    }

    /// [`Persisted::bootstrap`], with `context` in the conf change (opaque to the core: the
    /// node layer puts the members' addresses there).
    pub fn bootstrap_with_context(voters: &[NodeId], context: bytes::Bytes) -> Persisted {
        let changes = voters
            .iter()
            .map(|&node| super::confchange::ConfChangeSingle {
                kind: ConfChangeKind::AddVoter,
                node,
            });
        let cc = ConfChange {
            changes: changes.collect(),
            context,
            ..ConfChange::leave_joint()
        };
        Persisted {
            hard_state: HardState {
                term: Term(1),
                vote: NodeId::NONE,
                commit: LogIndex(1),
            },
            snapshot: Snapshot::default(),
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(1),
                kind: EntryKind::ConfChange,
                data: cc.encode(),
            }],
        }
    }

    /// A node that joins an existing group: it learns everything from the leader.
    pub fn empty() -> Persisted {
        Persisted::default()
    }
}

/// The outcome of a successful proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proposed {
    /// Appended to the leader's log at `first..=last` in `term`; committed once applied.
    Appended {
        first: LogIndex,
        last: LogIndex,
        term: Term,
    },
    /// Sent to the leader `to`; the caller learns the outcome by watching applied entries.
    Forwarded { to: NodeId },
}

/// A read that may be served once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: LogIndex,
}

/// A snapshot of a replica's state for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub vote: NodeId,
    pub leader: NodeId,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub persisted: LogIndex,
    pub last_index: LogIndex,
    pub snapshot_index: LogIndex,
    pub conf_state: ConfState,
    /// Per follower (leader only).
    pub peers: Vec<PeerStatus>,
    /// The group is idle and its timers are stopped (see `quiesce.rs`).
    pub quiesced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: NodeId,
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    pub inflight_appends: usize,
    pub recent_active: bool,
    /// It answered in this election timeout or the one before (a new leader's first round
    /// counts as one it answered): see [`Replica::peer_answers`].
    pub answers: bool,
    /// Its transport queue refused an append, and it has not answered since.
    pub queue_full: bool,
}

/// One replica of one group. See the module docs of `crate::raft` for the contract.
#[derive(Debug)]
pub struct Replica {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) rng: Prng,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    pub(crate) log: RaftLog,
    pub(crate) conf: ConfState,
    /// Highest conf-change entry reflected in `conf`.
    pub(crate) conf_index: LogIndex,
    /// Per member (self included), rebuilt on every role change.
    pub(crate) progress: Vec<Progress>,
    /// Votes received in the current (pre-)election.
    pub(crate) votes: Vec<(NodeId, bool)>,
    pub(crate) ticks: u64,
    /// The tick at which this replica last became leader.
    pub(crate) leader_since_tick: u64,
    /// The tick at which a leader last reached this replica (an append, heartbeat or
    /// snapshot), in any term: kept across term changes, which forget the leader, since the
    /// lease this replica helped that leader hold runs on regardless (see `in_lease`).
    pub(crate) leader_heard_tick: Option<u64>,
    pub(crate) election_elapsed: u32,
    /// The timers are stopped: an idle group (see `quiesce.rs`).
    pub(crate) quiesced: bool,
    /// Whether an election timeout makes this replica campaign: not on a node that stops
    /// (see [`Replica::stop_campaigning`]).
    pub(crate) campaigns: bool,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) election_timeout_randomized: u32,
    pub(crate) lead_transferee: Option<NodeId>,
    /// Ticks the transfer to `lead_transferee` has left: an election timeout from its start,
    /// and again from its first TimeoutNow, so a target told to campaign just before the
    /// first ran out is not met by a leader that took writes again (its vote request would
    /// depose the leader and lose to the logs those writes grew: no leader for a timeout).
    pub(crate) transfer_ticks_left: u32,
    /// Whether this transfer's TimeoutNow went out (its clock then starts once more).
    pub(crate) transfer_timeout_now_sent: bool,
    /// Index of the latest conf change proposed by this leader; no other until it applies.
    pub(crate) pending_conf_index: LogIndex,
    pub(crate) uncommitted_bytes: u64,
    pub(crate) reads: ReadQueue,
    /// The newest snapshot (index 0 when none), kept to send to followers behind the log.
    pub(crate) snapshot: Snapshot,
    /// A snapshot installed from the leader, to hand out in the next Ready.
    pub(crate) snapshot_to_persist: Option<Snapshot>,
    pub(crate) messages_now: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    /// Appends must be offered to every follower at the next `ready()`.
    pub(crate) broadcast_pending: bool,
    /// A new commit index goes to followers at once, whatever `Config::broadcast_commit`
    /// says (see [`Replica::broadcast_commits_for_now`]).
    pub(crate) commits_broadcast_now: bool,
    pub(crate) hard_state_handed_out: HardState,
    /// The term and vote the caller has made durable (the last Ready advanced that carried
    /// them). No message of a newer term or vote leaves before they are durable.
    pub(crate) term_vote_durable: (Term, NodeId),
    pub(crate) soft_state_handed_out: (Role, NodeId),
    /// Readies handed out and not advanced yet (more than one only when pipelined).
    pub(crate) readies_in_flight: u32,
    pub(crate) conf_entries_applying: Vec<LogIndex>,
    /// Followers found to have lost entries they acknowledged, for the next Ready.
    pub(crate) lost_entries: Vec<LostEntries>,
    /// The term in which this node, as a follower, last reported its own lost entries.
    pub(crate) lost_reported_term: Term,
    /// The highest index a leader said was committed that this node's log did not hold (it
    /// lost entries it acknowledged): no candidate whose log ends before it gets this node's
    /// vote. Kept in memory only (but see `commit_restored`).
    pub(crate) committed_not_held: LogIndex,
    /// The commit restored from the disk where it is past the log restored (entries lost),
    /// else zero: written back with every hard state until the log's own commit passes it,
    /// so that every restart finds it and votes as `committed_not_held` says.
    pub(crate) commit_restored: LogIndex,
    /// The (term, index) no candidate's last entry may be behind to get this node's vote,
    /// when a leader said entries were committed that this node's log holds with other
    /// terms (it lost entries it acknowledged, and an older copy came back). Kept in memory
    /// only.
    pub(crate) committed_not_held_at: (Term, LogIndex),
}

/// A follower no longer holds entries it acknowledged: its disk was wiped or replaced, or it ran
/// with `--sync never` and its machine crashed. A leader's heartbeat names what the follower
/// acknowledged (its match index) and the commit index capped at it; a follower whose log ends
/// before what it acknowledged says so in its answer (and reports itself, once a term) and commits
/// nothing from it; one whose log ends before that commit index votes from then on for no candidate
/// whose log ends before it. The leader reports the follower, forgets its match index and sends it
/// the log again from where its log ends (or a snapshot). Until the follower's answer arrives, its
/// acknowledgement still counts toward a quorum, so a loss above the commit is closed at the next
/// heartbeat, not at once.
///
/// Only a leader that was told of the entries sees a loss (a new leader starts with no match index
/// and sends the log without a word). A log restored from an old copy may hold other entries where
/// it acknowledged: the heartbeat names the leader's term there too, and a follower whose entry
/// there has another term counts as having lost what it acknowledged above its commit (its answer
/// names its commit; its vote goes to no candidate whose last entry is behind the leader's entry at
/// the heartbeat's commit, whose term it names too). A leader that compacted its entry at the
/// follower's match index cannot name the term, and then this is not seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostEntries {
    /// The follower (this node itself, when it is the one that lost entries).
    pub follower: NodeId,
    /// An index the follower had acknowledged: its match index, as the leader reports it
    /// and as its heartbeat told the follower, which reports itself.
    pub acknowledged: LogIndex,
    /// How far the follower's log is known to match the leader's: its last index, or its
    /// commit when it holds other entries (of other terms) above that.
    pub holds: LogIndex,
}

impl Replica {
    /// Starts a replica from what its disk holds. `rng_seed` drives its election timeouts.
    pub fn new(
        config: Config,
        rng_seed: u64,
        persisted: Persisted,
    ) -> Result<Replica, ConfigError> {
        config.validate()?;
        let Persisted {
            hard_state,
            snapshot,
            entries,
        } = persisted;
        let log = RaftLog::restore(
            snapshot.meta.index,
            snapshot.meta.term,
            entries,
            hard_state.commit,
        );
        // A commit past the log restored: the store lost entries it had and kept the commit
        // (segment files that held the group's last entries lost, while a later segment's
        // checkpoint restates the commit), entries a quorum counted. Vote for no candidate
        // whose log ends before it, as once a leader names such a commit (see
        // `committed_not_held`), from the start (found in review: until a leader's
        // heartbeat, this node's vote could elect a node without them).
        let committed_not_held = match hard_state.commit > log.last_index() {
            true => hard_state.commit,
            false => LogIndex::ZERO,
        };
        // A torn write can keep entries of a term whose hard state it lost: a log entry's
        // term never exceeds the current term, so take the term up (with no vote: a vote
        // in that term would have been durable before it was sent, so none was).
        let last_term = log.last_term();
        let (term, vote) = if last_term > hard_state.term {
            (last_term, NodeId::NONE)
        } else {
            (hard_state.term, hard_state.vote)
        };
        let mut replica = Replica {
            id: config.id,
            rng: Prng::new(rng_seed),
            term,
            vote,
            role: Role::Follower,
            leader: NodeId::NONE,
            conf: snapshot.meta.conf_state.clone(),
            conf_index: snapshot.meta.index,
            progress: Vec::new(),
            votes: Vec::new(),
            ticks: 0,
            leader_since_tick: 0,
            leader_heard_tick: None,
            election_elapsed: 0,
            quiesced: false,
            campaigns: true,
            heartbeat_elapsed: 0,
            election_timeout_randomized: config.election_timeout_ticks,
            lead_transferee: None,
            transfer_ticks_left: 0,
            transfer_timeout_now_sent: false,
            pending_conf_index: LogIndex::ZERO,
            uncommitted_bytes: 0,
            reads: ReadQueue::default(),
            snapshot,
            snapshot_to_persist: None,
            messages_now: Vec::new(),
            messages_after_persist: Vec::new(),
            broadcast_pending: false,
            commits_broadcast_now: false,
            hard_state_handed_out: hard_state,
            term_vote_durable: (hard_state.term, hard_state.vote),
            soft_state_handed_out: (Role::Follower, NodeId::NONE),
            readies_in_flight: 0,
            conf_entries_applying: Vec::new(),
            lost_entries: Vec::new(),
            lost_reported_term: Term::ZERO,
            committed_not_held,
            commit_restored: committed_not_held,
            committed_not_held_at: (Term::ZERO, LogIndex::ZERO),
            log,
            config,
        };
        // A torn write can also keep a Ready's entries and lose the commit that came with
        // them: the conf changes are then those of a configuration the group has left, and a
        // majority of it could elect this node while the group's own commits elsewhere (found
        // in review). A leader proposes a conf change only once every earlier one in its log
        // is applied, so the one before the last in this log is committed: take it as such.
        if let Some(committed) = replica.conf_change_before_the_last() {
            replica.log.committed = replica.log.committed.max(committed);
        }
        // Committed conf changes are final: take them in now so the replica knows its group
        // before the application replays the entries.
        replica.apply_conf_changes_up_to(replica.log.committed);
        replica.reset_progress();
        replica.randomize_election_timeout();
        Ok(replica)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    /// Readies handed out whose `advance` has not come yet.
    pub fn readies_in_flight(&self) -> u32 {
        self.readies_in_flight
    }
    /// The leader this replica believes in, or `NodeId::NONE`.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// Whether `from`, sending in `term`, may lead this group as far as this replica knows:
    /// a sender of a newer term may; in this term only the known leader (anyone while none
    /// is known: only a leader sends what this is asked about); in an older term none.
    pub fn may_lead(&self, from: NodeId, term: Term) -> bool {
        term > self.term || (term == self.term && (self.leader.is_none() || self.leader == from))
    }
    /// Ticks this replica has had.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The tick (of [`Replica::ticks`]) at which this replica last became leader.
    pub fn leader_since_tick(&self) -> u64 {
        self.leader_since_tick
    }

    /// Ticks without a word from a leader after which a follower campaigns (at least).
    pub fn election_timeout_ticks(&self) -> u32 {
        self.config.election_timeout_ticks
    }

    /// Ticks between this replica's heartbeats, while it leads.
    pub fn heartbeat_interval_ticks(&self) -> u32 {
        self.config.heartbeat_interval_ticks
    }

    /// While this leader hands leadership over: the voter it hands it to. Proposals are
    /// refused meanwhile ([`ProposeError::TransferInProgress`]).
    pub fn lead_transferee(&self) -> Option<NodeId> {
        self.lead_transferee
    }
    pub fn commit(&self) -> LogIndex {
        self.log.committed
    }
    pub fn applied(&self) -> LogIndex {
        self.log.applied
    }
    /// The highest index handed out for applying, by a Ready or by
    /// [`Replica::take_committed_durable`] (applied at once): `applied` catches up with it
    /// only when the Ready in flight advances.
    pub fn applying(&self) -> LogIndex {
        self.log.applied.max(self.log.applying)
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }
    /// On a leader: the index of the last conf change it may not have applied yet (its last
    /// index when elected, or its latest conf proposal). Once applied, its configuration
    /// holds every conf change it knows of.
    pub fn pending_conf_index(&self) -> LogIndex {
        self.pending_conf_index
    }
    /// The entry at `index`, if still in memory (for tests and the simulator's checker).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }
    pub fn snapshot_index(&self) -> LogIndex {
        self.log.snapshot_index()
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        let mut unpaced = u32::MAX;
        self.tick_paced(&mut unpaced);
    }

    /// [`Replica::tick`], starting an election only while `campaigns_left` is above zero
    /// (taking one): a timer that runs out with none left stays run out, and the replica
    /// campaigns at the first later tick that has one. For a caller that paces the
    /// elections of its many groups (`shard::groups`); delaying an election is always safe.
    pub fn tick_paced(&mut self, campaigns_left: &mut u32) {
        self.ticks += 1;
        if self.quiesced && self.tick_quiesced() {
            return;
        }
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election(campaigns_left);
        }
    }

    /// From now on an election timeout does not make this replica campaign (it still votes,
    /// and a TimeoutNow or [`Replica::campaign`] still does): for a node about to stop, which
    /// would otherwise take a group only to hand it over again.
    pub fn stop_campaigning(&mut self) {
        self.campaigns = false;
    }

    /// While `on`, a leader sends a new commit index to its followers at once, as with
    /// `Config::broadcast_commit`: for a caller that needs the followers to apply soon for a
    /// while (a follower whose state machine is full applies the delete that frees it).
    pub fn broadcast_commits_for_now(&mut self, on: bool) {
        self.commits_broadcast_now = on;
    }

    /// Whether [`Replica::broadcast_commits_for_now`] is on.
    pub fn broadcasts_commits_now(&self) -> bool {
        self.commits_broadcast_now
    }

    /// Start an election now (with a pre-vote round if configured), as if the election
    /// timeout had passed.
    pub fn campaign(&mut self) {
        if self.role != Role::Leader && self.is_promotable() {
            self.start_election(self.first_election_round());
        }
    }

    /// Whether [`Replica::step`] would refuse `message` for its shape, whatever this
    /// replica's state: for a caller that stores what the message carries before it steps it.
    pub fn refuses_shape(&self, message: &Message) -> bool {
        validate(message, self.id).is_err()
    }

    /// Take one message from a peer. Messages for an older term, duplicates and reordered
    /// messages are handled; a message that breaks the protocol's shape is refused.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        validate(&message, self.id)?;
        if self.quiesced && !self.keeps_quiet(&message) {
            self.wake();
        }
        if matches!(
            message.body,
            MessageBody::SnapshotChunk(_) | MessageBody::SnapshotAck { .. }
        ) {
            return Err(StepError::Malformed(
                "snapshot chunks are assembled before they reach the core",
            ));
        }
        if message.term > self.term {
            if !self.on_higher_term(&message) {
                return Ok(());
            }
        } else if message.term < self.term {
            self.on_lower_term(&message);
            return Ok(());
        }
        match message.body {
            MessageBody::PreVoteRequest(_) | MessageBody::VoteRequest(_) => {
                self.on_vote_request(&message);
                Ok(())
            }
            _ => match self.role {
                Role::Leader => self.step_leader(message),
                Role::Candidate | Role::PreCandidate => self.step_candidate(message),
                Role::Follower => self.step_follower(message),
            },
        }
    }

    /// Propose one command.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposed, ProposeError> {
        self.propose_batch(vec![data])
    }

    /// A follower that knows its leader sends it `data` to propose as one entry, whatever
    /// `Config::forward_proposals` says (that is whether [`Replica::propose_batch`] forwards
    /// on its own), and says to whom; None where it leads, or knows no leader. The leader
    /// says nothing back: the entry shows as committed, or never does.
    pub fn forward(&mut self, data: Bytes) -> Option<NodeId> {
        if self.role == Role::Leader || self.leader.is_none() || self.leader == self.id {
            return None;
        }
        let to = self.leader;
        self.send_now(to, MessageBody::ForwardProposal { data: vec![data] });
        Some(to)
    }

    /// Propose a batch of commands; on the leader they take consecutive indexes.
    pub fn propose_batch(&mut self, batch: Vec<Bytes>) -> Result<Proposed, ProposeError> {
        assert!(
            !batch.is_empty(),
            "propose_batch needs at least one command"
        );
        if self.role != Role::Leader {
            if self.leader.is_none() || !self.config.forward_proposals {
                return Err(ProposeError::NotLeader {
                    leader_hint: self.leader_hint(),
                });
            }
            let to = self.leader;
            self.send_now(to, MessageBody::ForwardProposal { data: batch });
            return Ok(Proposed::Forwarded { to });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let bytes: u64 = batch
            .iter()
            .map(|d| d.len() as u64 + super::types::ENTRY_OVERHEAD_BYTES)
            .sum();
        let limit = self.config.uncommitted_bytes_max;
        if limit > 0 && self.uncommitted_bytes > 0 && self.uncommitted_bytes + bytes > limit {
            return Err(ProposeError::Backpressure {
                uncommitted_bytes: self.uncommitted_bytes,
                uncommitted_bytes_max: limit,
            });
        }
        let first = self.log.last_index().next();
        for data in batch {
            self.append_own(EntryKind::Normal, data);
        }
        self.uncommitted_bytes += bytes;
        Ok(Proposed::Appended {
            first,
            last: self.log.last_index(),
            term: self.term,
        })
    }

    /// Propose a membership change (leader only; one at a time).
    pub fn propose_conf_change(&mut self, change: &ConfChange) -> Result<LogIndex, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_hint(),
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if self.pending_conf_index > self.log.applied {
            return Err(ProposeError::ConfChangePending {
                index: self.pending_conf_index,
            });
        }
        change
            .apply_to(&self.conf)
            .map_err(ProposeError::InvalidConfChange)?;
        self.append_own(EntryKind::ConfChange, change.encode());
        self.pending_conf_index = self.log.last_index();
        Ok(self.pending_conf_index)
    }

    /// Ask for a linearizable read. The answer comes in a later Ready as a `ReadState`
    /// with this `ctx` (which the caller keeps unique); serve the read once the state
    /// machine has applied the returned index. A read asked of a leader that loses its
    /// leadership first is reported aborted; one a follower forwards may get no answer at
    /// all (the leader refused it as busy, or lost its leadership, and says nothing back):
    /// a caller on a follower bounds its own wait.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadError> {
        if self.role == Role::Leader {
            return self.leader_read(ctx, self.id);
        }
        if self.leader.is_none() {
            return Err(ReadError::NoLeader);
        }
        self.send_now(self.leader, MessageBody::ReadIndexRequest { ctx });
        Ok(())
    }

    /// Hand leadership to `to`. Completion shows as `to` becoming leader; the transfer is
    /// abandoned after an election timeout, or one after its TimeoutNow went out if that is
    /// later (see `transfer_ticks_left`).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader_hint(),
            });
        }
        if to == self.id {
            return Ok(());
        }
        // A voter of the configuration being entered: one only the outgoing half of a joint
        // configuration holds would step down once it is left, leaving the group leaderless.
        if !self.conf.voters.contains(&to) {
            return Err(TransferError::NotAVoter { node: to });
        }
        if let Some(index) = self.unapplied_change_that_demotes(to) {
            return Err(TransferError::Leaving { node: to, index });
        }
        if self.lead_transferee == Some(to) {
            return Ok(());
        }
        // Once one target was told to campaign, another told too would split the votes of
        // the next term (found in review: a retried self-removal picked another successor).
        if let Some(under_way) = self.lead_transferee
            && self.transfer_timeout_now_sent
        {
            return Err(TransferError::UnderWay { to: under_way });
        }
        self.lead_transferee = Some(to);
        self.transfer_ticks_left = self.config.election_timeout_ticks;
        self.transfer_timeout_now_sent = false;
        // Once TimeoutNow is out, voters may elect `to` inside this leader's lease.
        self.reads.lease_anchor_tick = None;
        let caught_up = self
            .progress_of(to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.maybe_send_append(to, true);
        }
        Ok(())
    }

    /// Gives up the transfer under way, if its target was not told to campaign yet: it said
    /// it cannot lead (its log is full, or it stops). Proposals are taken again, and another
    /// target may be asked at once (found in review: a stopping leader lost half its grace
    /// waiting out a transfer to a peer that had stopped). Once told, the target may be
    /// campaigning already (its vote syncing), and another told now would split the votes of
    /// the next term (found in review): that transfer runs its time out.
    pub fn abandon_transfer_not_begun(&mut self) {
        if !self.transfer_timeout_now_sent {
            self.lead_transferee = None;
        }
    }

    /// The entry of a membership change in this log, not applied yet, that removes `node` or
    /// makes it a learner, if any: none lies past `pending_conf_index` (a leader's last
    /// change, or its last entry when elected). Unapplied entries are never compacted.
    fn unapplied_change_that_demotes(&self, node: NodeId) -> Option<LogIndex> {
        let last = self.pending_conf_index.min(self.log.last_index());
        let unapplied = self.log.applied.0 + 1..=last.0;
        unapplied.map(LogIndex).find(|&index| {
            let Some(entry) = self.log.entry(index) else {
                return false;
            };
            entry.kind == EntryKind::ConfChange
                && ConfChange::decode(&entry.data).is_ok_and(|change| {
                    change.changes.iter().any(|single| {
                        single.node == node
                            && matches!(
                                single.kind,
                                ConfChangeKind::Remove | ConfChangeKind::AddLearner
                            )
                    })
                })
        })
    }

    /// The caller snapshotted its state machine at `index` (at most what it applied, so at
    /// most [`Replica::applying`]) into `data`: drop the entries it covers and keep the
    /// snapshot to send to followers that need it. Refused while a conf change it covers was
    /// handed out in a Ready not yet advanced. A leader keeps the entries it covers that its
    /// followers lack, within [`Config::catch_up_entries_max`] and
    /// [`Config::catch_up_bytes_max`], so that one a little behind catches up from the log.
    /// Returns the dropped entries, so the caller can free their buffers where that does
    /// not hold up its loop (thousands of entries can pin megabytes of receive buffers).
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<Vec<Entry>, CompactError> {
        if index > self.applying() {
            return Err(CompactError::BeyondApplied {
                index,
                applied: self.applying(),
            });
        }
        if index <= self.log.snapshot_index() {
            return Err(CompactError::AlreadyCompacted {
                index,
                snapshot_index: self.log.snapshot_index(),
            });
        }
        if let Some(&conf_index) = self.conf_entries_applying.first()
            && conf_index <= index
        {
            return Err(CompactError::ConfChangeApplying { index, conf_index });
        }
        if self.conf_index > index {
            // The membership at `index` is older than the one in force; snapshot later.
            return Err(CompactError::ConfChangeAhead {
                index,
                conf_index: self.conf_index,
            });
        }
        let term = self
            .log
            .term(index)
            .expect("applied entries above the snapshot are in the log");
        let dropped = self.log.compact(index, self.catch_up_keep(index));
        let meta = SnapshotMeta {
            index,
            term,
            conf_state: self.conf.clone(),
        };
        self.snapshot = Snapshot { meta, data };
        Ok(dropped)
    }

    /// What a compaction to `index` keeps behind it: on a leader, from the lowest match
    /// index of its followers (the entry there too: its term goes with the next append),
    /// within the configured bounds.
    fn catch_up_keep(&self, index: LogIndex) -> Keep {
        if self.role != Role::Leader || self.config.catch_up_entries_max == 0 {
            return Keep::NOTHING;
        }
        let lowest_match = self
            .progress
            .iter()
            .filter(|p| p.id != self.id)
            .map(|p| p.match_index)
            .min();
        match lowest_match {
            Some(lowest) if lowest < index => {
                let oldest_in_bound = index.0.saturating_sub(self.config.catch_up_entries_max - 1);
                Keep {
                    from: lowest.max(LogIndex(oldest_in_bound)),
                    bytes_max: self.config.catch_up_bytes_max,
                }
            }
            _ => Keep::NOTHING,
        }
    }

    /// The latest snapshot this replica holds (index 0 when it never compacted).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The transport could not reach `to`: send to it cautiously (one probe at a time). Not
    /// for an append its full queue refused ([`Replica::report_append_refused`]): probing
    /// would send again everything that queue took.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(progress) = self.progress_mut(to)
            && progress.state == ProgressState::Replicate
        {
            progress.become_probe();
        }
    }

    /// The transport did not queue an append of `term` to `to` after `prev_log_index` (its
    /// queue to `to` is full: a slow link, a congested follower). Report only the first such
    /// append of a batch, and offer `to` no later append of that batch: one that fit would
    /// leave a gap in the follower's log. The refused appends are sent again from their first
    /// entry at the next chance, while what the queue took goes on; see
    /// `Progress::append_refused`. Other refused messages need no report: the protocol sends
    /// them again (heartbeats every interval, answers to the next append).
    pub fn report_append_refused(&mut self, to: NodeId, term: Term, prev_log_index: LogIndex) {
        // An append of an earlier term (a Ready that waited for its sync) says nothing about
        // this term's progress.
        if self.role != Role::Leader || term != self.term {
            return;
        }
        if let Some(progress) = self.progress_mut(to) {
            progress.append_refused(prev_log_index);
        }
    }

    /// The snapshot stream to `to` ended: `delivered` names the index of the snapshot it got
    /// whole, None if it failed (the leader then retries from a probe).
    pub fn report_snapshot(&mut self, to: NodeId, delivered: Option<LogIndex>) {
        if let Some(progress) = self.progress_mut(to)
            && let ProgressState::Snapshot { index, .. } = &mut progress.state
        {
            match delivered {
                // Resume right after the known match, not after the lost snapshot.
                None => progress.state = ProgressState::Probe,
                // Right after what it got: a newer snapshot may have been asked for meanwhile
                // (the log compacted again), which it does not hold.
                Some(delivered) => *index = (*index).min(delivered),
            }
            progress.become_probe();
            // Wait for the follower's next heartbeat answer before probing again.
            progress.probe_sent = true;
        }
    }

    /// Whether this leader heard from `peer` within the last one or two CheckQuorum rounds
    /// (one or two election timeouts): false for a peer silent longer, or unknown, or where
    /// this replica does not lead. Unlike `recent_active`, not reset at each round; in the
    /// first round of a term, a peer not heard from yet counts as answering (a new leader
    /// refuses no write for followers it has not had time to hear).
    pub fn peer_answers(&self, peer: NodeId) -> bool {
        self.role == Role::Leader
            && self
                .progress_of(peer)
                .is_some_and(|p| p.recent_active || p.active_round_before)
    }

    /// Whether this replica leads and committed an entry of its own term: until then it knows
    /// no commit index to serve a linearizable read at, and its reads wait.
    pub fn committed_in_its_term(&self) -> bool {
        self.role == Role::Leader && self.log.term(self.log.committed) == Some(self.term)
    }

    /// Whether this replica leads and a quorum (of each half of a joint configuration) has
    /// answered it in the current CheckQuorum round: it leads now, not only as far as it
    /// knows (a leader cut off may not have stepped down yet).
    pub fn leads_with_a_quorum_heard(&self) -> bool {
        let id = self.id;
        let heard = super::quorum::joint_value(&self.conf, |voter| {
            u64::from(voter == id || self.progress_of(voter).is_some_and(|p| p.recent_active))
        });
        self.role == Role::Leader && heard == 1
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            persisted: self.log.persisted,
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_index(),
            conf_state: self.conf.clone(),
            peers: self.peer_statuses().collect(),
            quiesced: self.quiesced,
        }
    }

    /// What [`Replica::status`] says of each peer (none but where this replica leads),
    /// without the rest: for a look at thousands of groups.
    pub fn peer_statuses(&self) -> impl Iterator<Item = PeerStatus> + '_ {
        let leads = self.role == Role::Leader;
        (self.progress.iter())
            .filter(move |p| leads && p.id != self.id)
            .map(|p| PeerStatus {
                id: p.id,
                match_index: p.match_index,
                next_index: p.next_index,
                state: p.state,
                inflight_appends: p.inflights.len(),
                recent_active: p.recent_active,
                answers: p.recent_active || p.active_round_before,
                queue_full: p.queue_full,
            })
    }

    // ---- shared helpers -------------------------------------------------------------

    pub(crate) fn leader_hint(&self) -> Option<NodeId> {
        (!self.leader.is_none()).then_some(self.leader)
    }

    pub(crate) fn is_promotable(&self) -> bool {
        self.conf.is_voter(self.id)
    }

    pub(crate) fn send_now(&mut self, to: NodeId, body: MessageBody) {
        self.messages_now.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    /// Messages that promise something about this node's durable state (a vote, an
    /// acknowledged append) leave only after the Ready they came with is persisted.
    pub(crate) fn send_after_persist(&mut self, to: NodeId, body: MessageBody) {
        self.messages_after_persist.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    pub(crate) fn progress_of(&self, id: NodeId) -> Option<&Progress> {
        self.progress.iter().find(|p| p.id == id)
    }

    pub(crate) fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.iter_mut().find(|p| p.id == id)
    }

    pub(crate) fn new_progress(&self, id: NodeId) -> Progress {
        let inflights = Inflights::new(
            self.config.inflight_appends_max,
            self.config.inflight_bytes_max,
        );
        Progress::new(id, self.log.last_index().next(), inflights)
    }

    /// Fresh progress for every member, as at the start of a term.
    pub(crate) fn reset_progress(&mut self) {
        self.progress = self
            .conf
            .members()
            .into_iter()
            .map(|id| self.new_progress(id))
            .collect();
        let (id, persisted) = (self.id, self.log.persisted);
        if let Some(own) = self.progress_mut(id) {
            own.match_index = persisted;
        }
    }

    pub(crate) fn randomize_election_timeout(&mut self) {
        let base = self.config.election_timeout_ticks;
        self.election_timeout_randomized = base + self.rng.below(u64::from(base)) as u32;
    }

    /// Forget the role of this term: timers, votes, transfers and waiting reads.
    fn reset(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.leader = NodeId::NONE;
        self.election_elapsed = 0;
        self.quiesced = false;
        self.heartbeat_elapsed = 0;
        self.randomize_election_timeout();
        self.votes.clear();
        self.lead_transferee = None;
        self.uncommitted_bytes = 0;
        self.broadcast_pending = false;
        self.reads.abort_all();
        self.reset_progress();
    }

    /// Tell `to` to campaign now (a leadership transfer). Voters may then elect it inside
    /// this leader's lease, so the lease is given up for the rest of the term: a transfer
    /// that times out unseen (the new leader cut off from this one) must not leave this
    /// node serving lease reads beside a leader that commits.
    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        if self.lead_transferee == Some(to) && !self.transfer_timeout_now_sent {
            self.transfer_timeout_now_sent = true;
            self.transfer_ticks_left = self.config.election_timeout_ticks;
        }
        self.reads.lease_forfeited = true;
        self.reads.lease_anchor_tick = None;
        self.send_now(to, MessageBody::TimeoutNow);
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        // A pre-candidate changes neither term nor vote: it only asks.
        self.votes.clear();
        self.role = Role::PreCandidate;
        self.leader = NodeId::NONE;
        self.election_elapsed = 0;
        self.quiesced = false;
        self.randomize_election_timeout();
    }

    pub(crate) fn become_candidate(&mut self) {
        assert_ne!(
            self.role,
            Role::Leader,
            "node {} term {}: leader cannot campaign",
            self.id,
            self.term
        );
        self.reset(self.term.next());
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert_ne!(
            self.role,
            Role::Follower,
            "node {} term {}: follower cannot lead",
            self.id,
            self.term
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id;
        self.leader_since_tick = self.ticks;
        let id = self.id;
        // No peer is heard from yet in this term: one cut off since the election counts as
        // silent at the first CheckQuorum (found in review: every peer counted as heard from,
        // so a leader cut off at its election led on for a second election timeout).
        for progress in &mut self.progress {
            progress.recent_active = progress.id == id;
        }
        if let Some(own) = self.progress_mut(id) {
            own.become_replicate();
        }
        // Conf changes from earlier terms may still be unapplied: allow no new one before.
        self.pending_conf_index = self.log.last_index();
        // An entry of this term lets the leader commit (and learn the commit of) earlier terms.
        self.append_own(EntryKind::Empty, Bytes::new());
    }

    /// The leader appends an entry of its own and offers it to followers at the next Ready.
    pub(crate) fn append_own(&mut self, kind: EntryKind, data: Bytes) {
        let entry = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            kind,
            data,
        };
        self.log.push(entry);
        self.broadcast_pending = true;
        // A single-voter group commits as soon as its own log is durable (in `advance`).
    }
}

/// Refuse messages whose shape is impossible, so no handler has to guess.
fn validate(message: &Message, own_id: NodeId) -> Result<(), StepError> {
    if message.to != own_id {
        return Err(StepError::WrongRecipient { to: message.to });
    }
    if message.from.is_none() || message.from == own_id {
        return Err(StepError::Malformed("sender is none or self"));
    }
    if let MessageBody::Heartbeat(heartbeat) = &message.body
        && heartbeat.acknowledged_term.max(heartbeat.commit_term) > message.term
    {
        return Err(StepError::Malformed("heartbeat names a term after its own"));
    }
    if let MessageBody::InstallSnapshot(snapshot) = &message.body {
        if let Some(why) = snapshot.meta.conf_state.shape_error() {
            return Err(StepError::Malformed(why));
        }
        // A leader's snapshot ends at an entry of its term or before, and only the empty log
        // has term 0: installed, a later term would raise our last term past our own, and we
        // would refuse every honest candidate (found in review).
        let meta = &snapshot.meta;
        if meta.term > message.term {
            return Err(StepError::Malformed("snapshot names a term after its own"));
        }
        if (meta.term == Term::ZERO) != (meta.index.0 == 0) {
            return Err(StepError::Malformed(
                "snapshot of term 0 past index 0, or the reverse",
            ));
        }
    }
    if let MessageBody::AppendRequest(append) = &message.body {
        // A log's terms never go down: each entry's term lies between the one before it
        // (`prev_log_term` for the first) and the message's term.
        let (mut expected, mut term_before) = (append.prev_log_index.next(), append.prev_log_term);
        for entry in &append.entries {
            if entry.index != expected {
                return Err(StepError::Malformed(
                    "append entries are not consecutive after prev",
                ));
            }
            if entry.term < term_before || entry.term > message.term {
                return Err(StepError::Malformed("append entry term out of order"));
            }
            expected = expected.next();
            term_before = entry.term;
        }
    }
    Ok(())
}
