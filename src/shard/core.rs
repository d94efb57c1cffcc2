//! The event loop of one core: every group of the core, one log, one set of peer
//! connections, the core's clients.
//!
//! One turn of the loop:
//! 1. take everything that arrived (peer batches, client requests, ticks) and step, tick or
//!    hand it to the groups; a turn's writes to one group become one entry, proposed at the
//!    start of step 2;
//! 2. take every group's Ready; send the leaders' appends at once (`messages_now`) and stage
//!    every group's entries and hard state in the log;
//! 3. begin one sync for all groups (group commit); with durability off, there is no wait:
//!    step 4 comes at once, and a sync after it only hands the log's bytes to the kernel;
//! 4. once the sync ends: send what waited for durability (votes, follower acks), apply
//!    committed entries, serve confirmed reads, answer clients, advance. Committed entries
//!    that were durable here before the turn are applied and answered in step 3, and those
//!    committed while the sync is in flight (a leader's batch its followers acknowledged
//!    meanwhile) as soon as they are: neither waits for a sync that does not hold them.
//!
//! Nothing here blocks, and the loop does not wait for the disk: while syncs are in flight
//! it goes on taking turns, each with a sync of its own, up to `SYNCS_IN_FLIGHT_MAX` in
//! flight (they finish in the order they began); past that, writes wait for a slot while
//! what needs no sync (heartbeats, a leader's appends) still leaves. A group whose Ready
//! waits for a sync gets a pipelined Ready meanwhile (`Replica::has_pipelined_ready`: new
//! entries and messages only), so a leader's appends of new proposals leave at once and a
//! follower writes the next batch while it syncs the last; its step 4 comes after that of
//! the Ready before it. So a write that arrives during a sync does not wait for it, and the
//! CPU work of a turn overlaps the disk.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::kv::{KvStore, SnapshotJob};
use crate::proto::client::{
    Consistency, ErrorCode, Outcome, Refused, Request, Response, answer_weight,
};
use crate::proto::members::{MemberChange, MemberOutcome};
use crate::proto::status::{CoreRows, GroupRow};
use crate::proto::topology::{core_of, group_of};
use crate::proto::transfer::TransferOutcome;
use crate::raft::{
    Entry, EntryKind, GroupId, LogIndex, LostEntries, Message, MessageBody, NodeId, Ready, Role,
    Snapshot, Term,
};
use crate::wire::{Envelope, SenderSays};

use super::answers_held::{ANSWER_WEIGHT_CORE_HELD_MAX, AnswersHeld};
use super::balance::Handovers;
use super::client_reach::ClientReach;
use super::group::{Answer, ConnId, Group};
use super::groups::Groups;
use super::inbox::Inbox;
use super::snapshot_stream::{SnapshotStreams, StreamConfig};
use super::tick_clock::TickClock;
use super::woken_only::WokenOnly;

mod forwarded;
mod leaders;
mod reach;
mod room;
mod snapshots;
mod stop;

pub use snapshots::{Received, load_snapshot};
pub use stop::{refused_at_stop, stopping_refusal};

/// How much of a Ready the log has written: its snapshot (if it has one), then how many of
/// its entries. Its hard state comes last, and with it the Ready is staged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Staged {
    pub snapshot: bool,
    pub entries: usize,
}

/// What the core loop persists to. One instance per core, shared by all its groups.
pub trait CoreLog {
    /// Stage what `ready` asks to persist for `group` (written, not yet durable), from where
    /// `staged` says an earlier call stopped. False: the disk had no room for the log's next
    /// segment (full, or the segment's build off the loop is not done); `staged` says what
    /// was written, and the core calls again for this Ready, before any later one of the
    /// group, after [`CoreLog::maintain`]. What was written of it is what a crash could
    /// leave of any Ready (its records reach the disk one by one), and nothing of it is
    /// acknowledged before all of it is durable.
    fn stage(&mut self, group: GroupId, ready: &Ready, staged: &mut Staged) -> io::Result<bool>;
    /// Polled while a Ready waits for room: ready once a job off the loop ended that may
    /// have made some (the next segment's build), so the loop takes a turn without waiting
    /// for an input. By default never: the next input or tick takes it.
    fn poll_room(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    /// What a sync's future hands back to [`CoreLog::finish_sync`].
    type Synced: 'static;
    /// Start making everything staged so far durable, for every group at once (group
    /// commit). The future borrows nothing of the log, so the loop goes on while it runs,
    /// and may begin more (up to `SYNCS_IN_FLIGHT_MAX`); their outputs go to `finish_sync`
    /// in the order the syncs began.
    fn begin_sync(&mut self) -> io::Result<Pin<Box<dyn Future<Output = Self::Synced>>>>;
    /// Complete a sync. An error is fatal: the core stops rather than acknowledge what may
    /// not be on disk.
    fn finish_sync(&mut self, synced: Self::Synced) -> io::Result<()>;
    /// Begin a sync, wait for it and finish it.
    fn sync(&mut self) -> impl Future<Output = io::Result<()>> {
        async {
            let synced = self.begin_sync()?.await;
            self.finish_sync(synced)
        }
    }
    /// Encode `job`, a snapshot of `group`'s state machine, where it does not hold up the
    /// loop; [`CoreLog::take_encoded`] hands the bytes back.
    fn encode_snapshot(&mut self, group: GroupId, job: SnapshotJob);
    /// The snapshots encoded since the last call: (group, the index each is of, its bytes).
    fn take_encoded(&mut self) -> Vec<(GroupId, LogIndex, Bytes)>;
    /// Group `group` compacted its log into `snapshot` (taken from its state machine): store
    /// it and let the log drop what it covers.
    fn snapshot_taken(&mut self, group: GroupId, snapshot: &Snapshot) -> io::Result<()>;
    /// A snapshot of `group` is still being encoded or stored: take no other until it is.
    fn snapshot_in_flight(&self, group: GroupId) -> bool;
    /// `message`, a whole snapshot a peer sent for `group`, is to be installed: load its
    /// state machine ([`load_snapshot`]) and make its file durable where neither holds up
    /// the loop (a big state took seconds of it, and every group of the core stalled);
    /// [`CoreLog::take_received`] hands both back for Raft and the group once done. One that does
    /// not load or cannot be stored (a full disk) is dropped with a warning, as Raft may lose
    /// any message: the leader sends it again. The Ready that installs it then finds its
    /// file in place.
    fn receive_snapshot(&mut self, group: GroupId, message: Message);
    /// The highest index of the snapshots of `group` taken by [`CoreLog::receive_snapshot`]
    /// and not yet handed back by [`CoreLog::take_received`] (being checked or stored).
    /// Only those that came in a message of term `min_term` or later count: one of an older
    /// term than a new leader's must not keep the new leader's out, as Raft refuses it once
    /// stored (found in review: a new leader's snapshot was dropped for it, streamed again).
    fn snapshot_receiving(&self, group: GroupId, min_term: Term) -> Option<LogIndex>;
    /// The received snapshots whose files are durable, in the order they were received.
    fn take_received(&mut self) -> Vec<Received>;
    /// Whether a new snapshot from a peer for `group` waits: the last ones failed to store,
    /// and each try on a disk without room for them fills it. By default, never.
    fn receive_held(&self, _group: GroupId) -> bool {
        false
    }
    /// Entries a compaction dropped: free them (and the buffers they hold) where that does
    /// not hold up the loop. By default, here and now.
    fn release(&mut self, entries: Vec<Entry>) {
        drop(entries);
    }
    /// A state machine a group let go of (replaced by a snapshot, or loaded for one it did
    /// not install): free it where that does not hold up the loop (a million keys took tens
    /// of ms). By default, here and now.
    fn release_state(&mut self, state: KvStore) {
        drop(state);
    }
    /// Whether the log wants what each group's key-value state weighs now
    /// ([`CoreLog::keep_room_for_states`]): it is about to build its next segment, or its last
    /// figure is old. By default, never.
    fn wants_state_bytes(&self) -> bool {
        false
    }
    /// About what a snapshot file of each group's key-value state takes (group, bytes), told
    /// before a [`CoreLog::maintain`] where the log wants it: a log on a disk keeps room free
    /// for their snapshots (with its node's other cores'), so that the snapshots which free
    /// its old segments always fit.
    fn keep_room_for_states(&mut self, _states: &mut dyn Iterator<Item = (u32, u64)>) {}
    /// Housekeeping between turns (e.g. preparing the next WAL segment off the hot path).
    fn maintain(&mut self) -> io::Result<()>;
    /// The core is stopping: wait for the jobs in flight off the loop (snapshot files being
    /// written, the next segment being built), within a bound the log chooses (a stuck disk
    /// must not hold the stop for ever; what is left is logged), and write what those that
    /// finished leave to write (the markers of snapshot files now durable). The core's last
    /// sync follows. A log with no jobs off the loop has nothing to wait for.
    fn finish_jobs(&mut self) -> impl Future<Output = io::Result<()>> {
        async { Ok(()) }
    }
    /// Whether the log wrote records of its own that wait for a sync before they take
    /// effect (a snapshot's marker frees old segments; a record after a vote proves it
    /// synced): the loop then begins one even if no Ready asks for it, or on an idle node
    /// they would wait for the next write.
    fn wants_sync(&self) -> bool;
    /// Why the log cannot grow now (its next segment could not be made: a full disk), if
    /// so. The core then takes no new entries it can refuse (client writes, appends and
    /// snapshots from leaders, which Raft resends), so the room left goes to the hard
    /// states and the entries already taken in, but for what the log keeps for snapshot
    /// markers (they free old segments, which then make the next one).
    fn short_of_space(&self) -> Option<&str> {
        None
    }
    /// Whether the log takes no new entries for a moment, though it can grow: its next
    /// segment is still being made and the active one has little room left, which it keeps
    /// for what Raft cannot do without, so that a Ready seldom has to wait for room (see
    /// [`CoreLog::stage`]). Meanwhile the core's leaders hold client writes back (see
    /// `Group::log_waits`); it still takes leaders' appends (dropped, they were sent again
    /// only at a heartbeat: `cohort bench --segment-mib 1 --value-bytes 1024` lost a fifth
    /// of its throughput), tells its peers nothing and hands no group over: this passes
    /// within a build, whose end [`CoreLog::poll_room`] reports.
    fn entries_wait(&self) -> bool {
        false
    }
    /// The groups whose old entries alone keep the log over its size limit (the log frees
    /// a segment only once every group is done with it), or keep it from making its next
    /// segment while it is short of room: the core snapshots them early, so a quiet group
    /// never makes the log grow without bound. Each with the last of its entries in those
    /// segments: a snapshot there frees its share of them.
    fn groups_holding_old_segments(&self) -> Vec<(GroupId, LogIndex)>;
}

/// Where the core loop sends Raft messages. Sending never waits: a message that cannot be
/// queued is dropped (Raft resends; a dropped append is reported to it, see `send_all`).
pub trait CoreNet {
    /// Queue `envelope`; false if it was dropped.
    fn send(&mut self, envelope: Envelope) -> bool;
    /// The peers whose connection was renewed since the last call: what was in flight to
    /// them may be lost.
    fn take_renewed(&mut self) -> Vec<u64>;
    /// Tell the peers, from now on, what this core says of itself: whether its log can no
    /// longer grow (they then hand it no group and do not count on it to store writes), its
    /// key-value state holds its quota (their leaders then take no writes that may add data),
    /// its clients relay (they then hand it no group).
    fn say(&mut self, says: SenderSays);
    /// Send every peer to which nothing is queued an empty batch, so that it hears from this
    /// core though its groups are quiet: a follower's node wakes a quiet group only when it
    /// stops hearing the leader's node (see [`Core::wake_quiet_groups`]).
    fn keep_alive(&mut self);
}

/// Election timeouts some group of a core may go without a leader before the core says so
/// (an election takes one or two).
const LEADERLESS_SAID_TIMEOUTS: u64 = 25;

/// Handovers a `cohort leader transfer` may take: Raft gives one up after an election
/// timeout, and a target that is busy catching up may need another.
const TRANSFER_ATTEMPTS: u32 = 3;

/// A leadership transfer asked for and not finished.
struct Transfer {
    group: u32,
    to: u64,
    /// The current attempt is given up after this tick.
    give_up: u64,
    attempts_left: u32,
    reply: Inbox<TransferOutcome>,
}

/// Everything that reaches the loop.
pub enum Input {
    /// Raft messages from a peer's same core, and what that core says of itself.
    Peer {
        from: u64,
        says: SenderSays,
        envelopes: Vec<Envelope>,
    },
    /// A client connection opened; its replies go to `outbox`, weighed in `held` until
    /// written.
    Connected {
        conn: ConnId,
        outbox: Inbox<Vec<Response>>,
        held: AnswersHeld,
    },
    Requests {
        conn: ConnId,
        requests: Vec<Result<Request, Refused>>,
    },
    Disconnected(ConnId),
    /// `cohort status`: put this core's rows into the box.
    Status(Inbox<CoreRows>),
    /// `cohort leader transfer`: hand `group` to node `to`; the outcome goes into the box
    /// once the transfer completed or failed.
    TransferLeader {
        group: u32,
        to: u64,
        reply: Inbox<TransferOutcome>,
    },
    /// `cohort members …` for one group; the outcome goes into the box once the group's
    /// configuration reflects the change, or the change cannot go on here.
    ChangeMember {
        change: MemberChange,
        reply: Inbox<MemberOutcome>,
    },
    Tick,
    /// Stop after this turn: finish the syncs in flight, answer what was taken in, sync,
    /// and return.
    Stop,
    /// Finish the core's work first, for up to `grace_ticks`, then stop: hand the groups it
    /// leads over, and commit and answer the writes already taken in (or see them answered
    /// "not the leader" once a group is handed over). Meanwhile new writes to a group it
    /// leads and does not hand over are refused, and transfers and membership changes too.
    StopAfterWork {
        grace_ticks: u64,
    },
}

/// Told every member's base address (node id → `host:port`) when they change, and the nodes
/// the core's groups applied a change removing (this one, perhaps).
pub type OnMembers = Box<dyn FnMut(&BTreeMap<u64, String>, &BTreeSet<u64>)>;
pub type OnRole = Box<dyn FnMut(u32, Role, u64, u64)>;
pub type OnLostEntries = Box<dyn FnMut(u32, &LostEntries)>;

/// What a core tells its node as it runs (the node prints it; tests record it).
pub struct Hooks {
    /// Called with (group, role, leader id, term) whenever a group's role changes.
    pub on_role: OnRole,
    /// Called with every member's base address (the union over this core's groups) when a
    /// conf change or snapshot changed them, and the nodes any of them removed (the union).
    pub on_members: OnMembers,
    /// Called with (group, what) when this node, or a follower of a group it leads, is
    /// found to have lost entries it acknowledged (see [`LostEntries`]).
    pub on_lost_entries: OnLostEntries,
}

impl Hooks {
    /// Hooks that do nothing.
    pub fn quiet() -> Hooks {
        Hooks {
            on_role: Box::new(|_, _, _, _| {}),
            on_members: Box::new(|_, _| {}),
            on_lost_entries: Box::new(|_, _| {}),
        }
    }
}

/// Which groups exist and how many there are in the cluster.
pub struct CoreShape {
    pub node_id: u64,
    pub core: u16,
    pub cores: u16,
    pub groups_total: u32,
    /// Durability on (`--sync always`): a turn syncs before it sends or applies what depends
    /// on its writes. Off, the turn acts first and syncs after (a sync then only hands the
    /// log's bytes to the kernel), keeping that system call off every request's path.
    pub sync: bool,
    /// Snapshot a group once this many entries were applied since its last snapshot, and
    /// they are enough log for the size of its state (see
    /// [`SNAPSHOT_STATE_PER_LOG_BYTES_MAX`]: a big state is not rewritten for a few tiny
    /// entries) (0: never).
    pub snapshot_entries: u64,
    /// Snapshot a group once the entries it applied since its last snapshot hold this many
    /// bytes, or as many as its last snapshot if that is bigger (0: never for this reason): a
    /// byte bound on the log kept in memory and the WAL whatever the size of the writes, that
    /// never rewrites a big state for every few MiB of log (at most one snapshot's bytes per
    /// byte of log).
    pub snapshot_log_bytes: u64,
    /// How snapshots are streamed to peers (see [`super::snapshot_stream`]).
    pub snapshot_stream: StreamConfig,
    /// Leader balancing (see [`super::balance`]): the spread of leaders it allows past
    /// one group between two nodes, or None (no balancing).
    pub leader_balance_margin: Option<u32>,
    /// Ticks between two looks at the leaders' spread.
    pub balance_every_ticks: u32,
    /// The bytes the core's key-value states may hold ([`KvStore::data_bytes`], counted as
    /// they apply) before its leaders refuse writes that may add to them (puts,
    /// compare-and-swaps, put-if-absents) with `NoSpace`, taking gets and deletes: memory is
    /// what a state machine runs out of first, on every replica at once, and a replay of
    /// the log after would run out again (0: no quota).
    pub kv_quota_bytes: u64,
    /// Some: the groups tick once per this length of the monotonic clock, counted at the
    /// start of every turn ([`TickClock`]), and `Input::Tick` only wakes the loop. None: once
    /// per `Input::Tick` (tests drive time by hand).
    pub tick_length: Option<Duration>,
}

/// A sync in flight, and the Readies whose step 4 waits for it, in group order; a group's
/// Readies, if several (pipelined), in the order they were handed out.
struct Persisting<S> {
    /// Polled only once it woke: the loop polls every sync in flight at each of its
    /// wake-ups (see [`super::woken_only`]).
    sync: WokenOnly<Pin<Box<dyn Future<Output = S>>>>,
    /// What the sync handed back once it completed; it is finished when every sync begun
    /// before it is.
    synced: Option<S>,
    /// The Readies that wait for it, in group order, one a group.
    readies: Vec<(u32, Ready)>,
    /// Readies that need no sync of their own, each behind its group's in `readies`, in the
    /// order they came. Kept apart: inserted into `readies`, each moved every Ready after it,
    /// and with thousands of groups electing at once that was a third of a core's time.
    behind: BTreeMap<u32, Vec<Ready>>,
    /// The core's tick count when it began.
    began_tick: u64,
    /// `Core::heard_ticks` when it began (see [`Core::sync_stuck`]).
    began_heard_tick: u64,
}

impl<S> Persisting<S> {
    /// Every Ready that waited for this sync, in group order, a group's own in the order
    /// they came.
    fn in_order(self) -> Vec<(u32, Ready)> {
        let mut behind = self.behind;
        if behind.is_empty() {
            return self.readies;
        }
        let mut all =
            Vec::with_capacity(self.readies.len() + behind.values().map(Vec::len).sum::<usize>());
        for (id, ready) in self.readies {
            all.push((id, ready));
            let more = behind.remove(&id).unwrap_or_default();
            all.extend(more.into_iter().map(|ready| (id, ready)));
        }
        // A Ready left out would never be advanced: its group would stay at its cap of
        // Readies in flight for good.
        assert!(
            behind.is_empty(),
            "a Ready behind is behind one of its group's"
        );
        all
    }
}

/// Syncs a core keeps in flight at most. A turn while syncs are in flight hands out the
/// groups' Readies (pipelined ones for groups with a Ready in flight) and begins a sync of
/// its own, so a write that arrives during a sync does not wait for it: the device runs the
/// syncs side by side (`fio`, 4 KiB O_DIRECT | O_DSYNC writes on this
/// machine: 5.9 k/s at one in flight, 8.7 k/s at two, 15.9 k/s at four). With three nodes
/// on one disk, 2, 4 and 8 measured the same in `cohort bench --read-percent 0` at light and
/// full load (two runs each, 2026-11-30).
const SYNCS_IN_FLIGHT_MAX: usize = 4;

/// Readies a group keeps in flight at most. One that needs no sync waits behind its group's
/// last one that does; while a sync does not end (a device that stopped answering), each
/// heartbeat would otherwise leave one more behind it, for as long as the device hangs
/// (found in review). A group at the bound sends what needs no sync, as at the sync cap.
const READIES_IN_FLIGHT_PER_GROUP_MAX: u32 = 4 * SYNCS_IN_FLIGHT_MAX as u32;

/// What an entry of a group's log costs in memory beyond its payload: its place in the
/// replica's log (term, index, kind and the handle of its shared buffer: 56 bytes) and its
/// buffer's allocation. The entry-count snapshot trigger counts it with the payload.
const ENTRY_IN_MEMORY_BYTES: u64 = 64;

/// The entry-count trigger (`CoreShape::snapshot_entries`) bounds the log's length, so that
/// many tiny entries cannot fill memory and the WAL while their bytes stay below the byte
/// trigger. But on its own it rewrote a big state for a few tiny entries: a 600 MB state
/// under a light load of small writes (one entry a turn) was cloned on the loop, encoded and
/// written whole every 100,000 entries, a few MB of log. So it fires only once the log
/// applied since the last snapshot (payload and [`ENTRY_IN_MEMORY_BYTES`] per entry), times
/// this, reaches the state's bytes (its last snapshot's): at most this many bytes of
/// snapshot per byte of log. A small state still snapshots every `snapshot_entries` entries
/// (at 10 entries: up to about 5 KiB of state, and more with the entries' payload; at the
/// default 100,000: up to about 50 MB), and a big one keeps at most an eighth of its size in
/// log, memory included, before it is snapshotted. The byte trigger allows one byte of
/// snapshot per byte of log; this one allows more, as its job is to bound memory.
const SNAPSHOT_STATE_PER_LOG_BYTES_MAX: u64 = 8;

pub struct Core<L: CoreLog, N> {
    shape: CoreShape,
    groups: Groups,
    log: L,
    net: N,
    inbox: Inbox<Input>,
    outboxes: HashMap<ConnId, (Inbox<Vec<Response>>, AnswersHeld)>,
    /// Connections closed among the turn's inputs, their requests not yet forgotten.
    closed_conns: HashSet<ConnId>,
    hooks: Hooks,
    ticks: u64,
    /// What the groups' key-value states hold ([`KvStore::data_bytes`]), kept by the groups
    /// as they apply ([`Group::count_kv_in`]): against `CoreShape::kv_quota_bytes`.
    kv_bytes: Rc<Cell<u64>>,
    /// What this core last told its peers of itself (see [`CoreNet::say`]).
    said: SenderSays,
    /// Peers whose same core said its key-value state holds its quota: while one answers, a
    /// group it is a member of takes no writes that may add data (each node checks its own
    /// quota only where it leads; a follower applies what its leader commits).
    peers_kv_full: BTreeSet<u64>,
    /// Whether some group's leader sends each commit at once for such a peer (see
    /// [`Core::broadcast_commits_while_peers_kv_full`]).
    broadcasting_commits: bool,
    /// The tick each peer's same core was last heard from (any batch), in `heard_ticks`: a
    /// group is handed only to a peer heard from lately (see [`Core::heard_lately`]).
    peers_heard_tick: HashMap<u64, u64>,
    /// The peers found silent at the last look of [`Core::wake_quiet_groups`], in order.
    peers_silent: Vec<u64>,
    /// The ticks, those of a stall counted as one: the clock of its peers' silence (and part
    /// of a sync's patience, see [`Core::sync_stuck`]). A stall of its own executor is no
    /// silence of theirs: their batches wait in the sockets, read only once its loop yields;
    /// counted in full, it took every peer for gone after a stall of four heartbeat
    /// intervals, and a leader stopping then stopped at once, its groups left without a
    /// leader for an election timeout.
    heard_ticks: u64,
    /// Where ticks come from when they follow the clock (see `CoreShape::tick_length`).
    tick_clock: Option<TickClock>,
    /// The tick at which every sync slot was last found taken, while they still are.
    at_sync_cap_since: Option<u64>,
    /// The tick by which a core told to stop after its work stops, while it finishes it
    /// (see [`Input::StopAfterWork`]).
    stopping_by: Option<u64>,
    /// The tick since which some group of the core has had no leader, and whether that was
    /// said ([`Core::watch_leaders`]).
    leaderless: Option<(u64, bool)>,
    /// Transfers asked for and not finished.
    transfers: Vec<Transfer>,
    /// The handovers the leader balancer started, and the pairs it leaves alone for a while.
    handovers: Handovers,
    /// The peers whose same core said, in its last batch, that its log cannot grow: they
    /// take no new entries and will not lead (see [`CoreNet::say`]).
    peers_log_full: BTreeSet<u64>,
    /// The peers whose same core said, in its last batch, that its clients relay: they are
    /// handed no group (see [`ClientReach`]).
    peers_clients_relay: BTreeSet<u64>,
    /// Whether this core's clients reach it only through other members.
    reach: ClientReach,
    /// A sync has been in flight too long ([`Core::sync_stuck`]), and the core said so.
    said_sync_stuck: bool,
    /// Whether this core said it refused a leader's entry too large for its log (said once:
    /// the leader sends it again and again).
    said_entry_too_large: bool,
    /// Membership changes proposed and not finished: (change, give up after this tick, reply).
    member_changes: Vec<(MemberChange, u64, Inbox<MemberOutcome>)>,
    streams: SnapshotStreams,
    /// Groups due for a snapshot. Taking one clones the group's pairs on the loop, and groups
    /// under the same load come due together, so `upkeep` takes one per turn.
    snapshots_due: BTreeSet<u32>,
    /// The syncs in flight, oldest first.
    persisting: VecDeque<Persisting<L::Synced>>,
    /// Readies the log had no room for yet (see [`CoreLog::stage`]), in the order they were
    /// handed out: staged again at the start of every turn, before their groups hand out
    /// another.
    unstaged: Vec<(u32, Ready, Staged)>,
    /// Whether [`Core::publish_members`] told the node the members once.
    members_published: bool,
    /// Whether the log waited for room, and was short of it, at the last turn (see
    /// [`Core::turn`]).
    log_state_turned: (bool, bool),
}

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    pub fn new(
        shape: CoreShape,
        mut groups: BTreeMap<u32, Group>,
        log: L,
        net: N,
        inbox: Inbox<Input>,
        hooks: Hooks,
    ) -> Self {
        let kv_bytes = Rc::default();
        for group in groups.values_mut() {
            group.count_kv_in(Rc::clone(&kv_bytes));
        }
        Core {
            groups: Groups::new(groups, shape.node_id),
            log,
            net,
            inbox,
            outboxes: HashMap::new(),
            closed_conns: HashSet::new(),
            hooks,
            ticks: 0,
            kv_bytes,
            said: SenderSays::default(),
            peers_kv_full: BTreeSet::new(),
            broadcasting_commits: false,
            peers_heard_tick: HashMap::new(),
            peers_silent: Vec::new(),
            heard_ticks: 0,
            at_sync_cap_since: None,
            stopping_by: None,
            leaderless: None,
            tick_clock: shape.tick_length.map(|length| {
                // Twice the longest timeout counted in ticks (a snapshot stream given
                // up; election timeouts are a tenth of it on a node).
                let stream = &shape.snapshot_stream;
                let longest = stream
                    .abandon_ticks
                    .max(u64::from(shape.balance_every_ticks));
                TickClock::new(length, crate::clock::since_boot(), 2 * longest + 1)
            }),
            transfers: Vec::new(),
            handovers: Handovers::new(u64::from(shape.balance_every_ticks.max(1))),
            peers_log_full: BTreeSet::new(),
            peers_clients_relay: BTreeSet::new(),
            reach: ClientReach::new(u64::from(shape.balance_every_ticks.max(1))),
            said_sync_stuck: false,
            said_entry_too_large: false,
            member_changes: Vec::new(),
            members_published: false,
            log_state_turned: (false, false),
            streams: SnapshotStreams::new(shape.snapshot_stream),
            snapshots_due: BTreeSet::new(),
            persisting: VecDeque::new(),
            unstaged: Vec::new(),
            shape,
        }
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Run until `Input::Stop`, or `Input::StopAfterWork` once the work is done or its grace
    /// over (Ok), or a fatal error of the log or a group (Err). Then [`Core::let_clients_go`]
    /// answers the clients still waiting.
    pub async fn run(mut self) -> Result<Self, String> {
        let mut inputs = Vec::new();
        let mut answers = Vec::new();
        loop {
            self.tell_peers_kv_state();
            self.next_event(&mut inputs).await;
            self.finish_persisted(&mut answers)?;
            // Time first: a lease read among the inputs must see every tick that passed.
            if let Some(clock) = &mut self.tick_clock {
                let owed = clock.owed(crate::clock::since_boot());
                self.heard_ticks += owed.min(1);
                if owed > 0 {
                    self.groups.pace_campaigns();
                }
                for _ in 0..owed {
                    self.tick();
                }
            }
            let mut stop = false;
            for input in inputs.drain(..) {
                stop |= self.handle(input, &mut answers);
            }
            self.forget_closed_conns();
            if let Some(by) = self.stopping_by {
                stop |= self.ticks >= by || self.work_finished();
            }
            if !self.persisting.is_empty() || !self.unstaged.is_empty() {
                self.apply_committed_meanwhile(&mut answers)?;
            }
            if stop {
                self.wait_persisted(&mut answers).await?;
            }
            if self.persisting.len() < SYNCS_IN_FLIGHT_MAX {
                self.at_sync_cap_since = None;
                self.upkeep()?;
                self.turn(&mut answers)?;
            } else if *self.at_sync_cap_since.get_or_insert(self.ticks) < self.ticks {
                self.send_what_needs_no_sync(&mut answers);
            }
            if stop {
                self.inbox.close();
                self.refuse_late_inputs(&mut answers);
                // Drain what is already accepted so no client waits on a dead loop.
                self.wait_persisted(&mut answers).await?;
                self.upkeep()?;
                self.turn(&mut answers)?;
                self.write_unsynced().await?;
                self.wait_persisted(&mut answers).await?;
                self.deliver(&mut answers);
                // Jobs cut by the exit would leave a snapshot file half-written, or durable
                // without its marker; their markers go in the last sync.
                self.log.finish_jobs().await.map_err(|e| {
                    format!("core {}: log jobs at stop failed: {e}", self.shape.core)
                })?;
                if !self.unstaged.is_empty() {
                    // The build those jobs finished may have made room for them.
                    self.turn(&mut answers)?;
                    self.write_unsynced().await?;
                    self.wait_persisted(&mut answers).await?;
                    self.deliver(&mut answers);
                }
                self.sync_log().await?;
                if !self.unstaged.is_empty() {
                    tracing::warn!(
                        core = self.shape.core,
                        readies = self.unstaged.len(),
                        "stopped with Readies the log had no room for: what they held was \
                         never acknowledged"
                    );
                }
                return Ok(self);
            }
            // Written before answered: a write that fails stops the core with none of this
            // turn's answers handed out (found in review).
            self.write_unsynced().await?;
            self.deliver(&mut answers);
        }
    }

    /// Without syncs (`--sync never`), the records a turn staged reach the file (the page
    /// cache) only as a sync begins: before the loop next yields, when the transport would
    /// send the turn's acknowledgements, so that a process that ends loses none of what it
    /// acknowledged (found in review: at a stop, the wait for log jobs let them out first).
    async fn write_unsynced(&mut self) -> Result<(), String> {
        match self.shape.sync {
            true => Ok(()),
            false => self.sync_log().await,
        }
    }

    /// Whether `peer`'s core was heard from in the last four heartbeat intervals of group
    /// `g`. One that was not takes no group (see [`Core::hand_over_leaders`]), though Raft
    /// counts it active until its next CheckQuorum round: handed one, a node that died a
    /// moment ago holds the group's writes until the handover times out, an election timeout
    /// (found in a test: a node stopped a second after another was killed handed a group to
    /// the dead one and waited 5 s out with `--election-ticks 500`).
    fn heard_lately(&self, peer: NodeId, g: &Group) -> bool {
        self.heard_within(peer, 4 * u64::from(g.replica.heartbeat_interval_ticks()))
    }

    /// Whether `peer`'s core was not heard from for an election timeout of group `g` (or the
    /// handover's window, [`Core::heard_lately`], where settings make that the longer: review
    /// 284): gone, as Raft's CheckQuorum counts a silent follower, though Raft itself may
    /// count it active for one more round. A stop does not wait for such a voter to take a
    /// group, nor a leader for such a member's key-value quota.
    fn gone(&self, peer: NodeId, g: &Group) -> bool {
        let timeout = u64::from(g.replica.election_timeout_ticks());
        let silence = timeout.max(4 * u64::from(g.replica.heartbeat_interval_ticks()));
        !self.heard_within(peer, silence)
    }

    /// Whether `peer`'s core was heard from within an election timeout (see [`Core::gone`]):
    /// what it last said of itself is still news. A core says it in every batch it sends, so
    /// a peer that heard it change heard the change; one that hears nothing from it forgets.
    fn heard_lately_by_core(&self, peer: u64) -> bool {
        (self.groups.values().next()).is_some_and(|g| !self.gone(NodeId(peer), g))
    }

    /// Wakes the quiet groups whose leader's node this core no longer hears (gone for an
    /// election timeout: they campaign as if their timers had run), or has a new connection
    /// from (`renewed`: it may have restarted and lead no more; they wait an election timeout
    /// from now, as if they had just heard it); and the quiet leaders with a member whose
    /// node is gone or renewed (they heartbeat again: Raft watches a silent member, and a
    /// restarted one, or one that lost the connection, learns the leader and the commit). A
    /// quiet group hears nothing of its members, so their nodes vouch for them: every core
    /// sends its peers a keepalive every heartbeat interval ([`CoreNet::keep_alive`]).
    fn wake_quiet_groups(&mut self, renewed: &[u64]) {
        let Some(first) = self.groups.values().next() else {
            return;
        };
        let mut silent: Vec<u64> = (self.peers_heard_tick.keys())
            .filter(|&&peer| self.gone(NodeId(peer), first))
            .copied()
            .collect();
        silent.sort_unstable();
        // A look at every group when a peer falls silent, and once an election timeout while
        // one stays so (a leader may have gone quiet just before its CheckQuorum round found
        // the member silent), not at every tick (review 319: a peer down made each tick pass
        // over every group).
        let timeout = u64::from(first.replica.election_timeout_ticks().max(1));
        let newly = silent.iter().any(|peer| !self.peers_silent.contains(peer));
        let round = !silent.is_empty() && self.ticks.is_multiple_of(timeout);
        self.peers_silent.clone_from(&silent);
        if renewed.is_empty() && !newly && !round {
            return;
        }
        // Only the groups to wake are woken (and given the ticks they slept through).
        let touched: Vec<u32> = (self.groups.iter())
            .filter(|(_, g)| g.replica.is_quiesced())
            .filter(|(_, g)| {
                let replica = &g.replica;
                if replica.role() != Role::Leader {
                    let leader = replica.leader().0;
                    return renewed.contains(&leader) || silent.contains(&leader);
                }
                let conf = replica.conf_state();
                (conf.voters.iter().chain(&conf.learners))
                    .any(|m| silent.contains(&m.0) || renewed.contains(&m.0))
            })
            .map(|(&id, _)| id)
            .collect();
        for id in touched {
            let replica = &mut self.groups.get_mut(&id).expect("listed above").replica;
            let leader = replica.leader().0;
            if replica.role() == Role::Leader {
                let conf = replica.conf_state();
                let gone: Vec<NodeId> = (conf.voters.iter().chain(&conf.learners))
                    .filter(|m| silent.contains(&m.0))
                    .copied()
                    .collect();
                if gone.is_empty() {
                    replica.wake();
                } else {
                    replica.wake_members_silent(&gone);
                }
            } else if renewed.contains(&leader) {
                replica.wake();
            } else {
                replica.wake_leader_silent();
            }
        }
    }

    /// Whether `peer`'s core was heard from in the last `ticks` (a stall of this core's
    /// counted as one: see `Core::heard_ticks`).
    fn heard_within(&self, peer: NodeId, ticks: u64) -> bool {
        (self.peers_heard_tick.get(&peer.0)).is_some_and(|&at| self.heard_ticks <= at + ticks)
    }

    /// Forgets what the connections closed in this turn wait for: one pass over each group.
    fn forget_closed_conns(&mut self) {
        if self.closed_conns.is_empty() {
            return;
        }
        // A group asleep waits for no connection (`Group::may_sleep`).
        for (_, group) in self.groups.awake_mut() {
            group.forget_conns(&self.closed_conns);
        }
        self.closed_conns.clear();
    }

    /// Wait for inputs, or for the oldest sync in flight to end, or, while a Ready waits for
    /// room or the log takes no entries (writes held back), for the log to say it may have
    /// some (the inputs that arrived meanwhile are taken too). Every sync in flight is
    /// polled, so each is issued at once and a later one that completes first keeps its
    /// outcome for its turn.
    async fn next_event(&mut self, inputs: &mut Vec<Input>) {
        let waits_for_room = !self.unstaged.is_empty() || self.log.entries_wait();
        let (inbox, persisting, log) = (&self.inbox, &mut self.persisting, &mut self.log);
        poll_fn(|cx| {
            for p in persisting.iter_mut().filter(|p| p.synced.is_none()) {
                if let Poll::Ready(synced) = Pin::new(&mut p.sync).poll(cx) {
                    p.synced = Some(synced);
                }
            }
            let room = waits_for_room && log.poll_room(cx).is_ready();
            if room || persisting.front().is_some_and(|p| p.synced.is_some()) {
                let _ = inbox.poll_take_all(cx, inputs);
                return Poll::Ready(());
            }
            inbox.poll_take_all(cx, inputs)
        })
        .await
    }

    /// Whether a Ready of group `id` in flight still has entries to apply or a snapshot to
    /// install: until its sync ends, the group applies nothing else.
    /// A Ready the log had no room for yet counts as in flight.
    fn waits_to_apply(
        persisting: &VecDeque<Persisting<L::Synced>>,
        unstaged: &[(u32, Ready, Staged)],
        id: u32,
    ) -> bool {
        Self::any_ready_of(persisting, unstaged, id, |ready| {
            !ready.committed().is_empty() || ready.snapshot().is_some()
        })
    }

    /// Whether group `id` may start a snapshot of its own: no Ready of it in flight (or
    /// waiting for room) installs one, until whose sync ends it takes none, and its last is
    /// no longer being encoded or stored.
    fn may_snapshot(&self, id: u32) -> bool {
        let installs = |ready: &Ready| ready.snapshot().is_some();
        !Self::any_ready_of(&self.persisting, &self.unstaged, id, installs)
            && !self.log.snapshot_in_flight(GroupId(id))
    }

    /// Whether some Ready of group `id` in flight, or waiting for room, is `such`.
    fn any_ready_of(
        persisting: &VecDeque<Persisting<L::Synced>>,
        unstaged: &[(u32, Ready, Staged)],
        id: u32,
        such: impl Fn(&Ready) -> bool,
    ) -> bool {
        // The Readies of a sync are in group order, one a group (taken from the groups in
        // order); a group's pipelined Readies are behind it (`Persisting::behind`).
        persisting.iter().any(|p| {
            let first = p.readies.binary_search_by_key(&id, |(g, _)| *g);
            first.is_ok_and(|at| such(&p.readies[at].1))
                || p.behind
                    .get(&id)
                    .is_some_and(|behind| behind.iter().any(&such))
        }) || unstaged.iter().any(|(g, ready, _)| *g == id && such(ready))
    }

    /// While a sync is in flight, or a Ready waits for room: apply (and answer) what the
    /// groups committed meanwhile that was durable here, such as a leader's batch its
    /// followers acknowledged, and serve the reads confirmed meanwhile, rather than hold
    /// them for the end of the sync. A group whose Ready in flight (or waiting) still has
    /// entries to apply or a snapshot to install applies nothing before them.
    fn apply_committed_meanwhile(&mut self, answers: &mut Vec<Answer>) -> Result<(), String> {
        // A group untouched since the last turn has nothing new to apply (`shard::groups`).
        for (&id, group) in self.groups.touched_mut() {
            if !Self::waits_to_apply(&self.persisting, &self.unstaged, id) {
                let entries = group.replica.take_committed_durable();
                group
                    .apply_entries(&entries, answers)
                    .map_err(|e| format!("group {id}: {e}"))?;
            }
            let (reads, aborted) = group.replica.take_read_states();
            group.confirm_reads(reads, &aborted, answers);
            group.serve_confirmed_reads(answers);
        }
        Ok(())
    }

    /// Keep the log's next segment ready, and take and store snapshots (of groups with no
    /// snapshot to install in flight).
    fn upkeep(&mut self) -> Result<(), String> {
        if self.log.wants_state_bytes() {
            let mut states =
                (self.groups.iter()).map(|(&id, g)| (id, g.kv.snapshot_bytes_estimate()));
            self.log.keep_room_for_states(&mut states);
        }
        self.log
            .maintain()
            .map_err(|e| format!("core {}: log upkeep failed: {e}", self.shape.core))?;
        self.tell_peers_log_state();
        let short = self.log.short_of_space().is_some();
        for (group, through) in self.log.groups_holding_old_segments() {
            // Short of room, a snapshot short of the segment's entries frees nothing and
            // spends the room kept for markers, which the one that would free it needs
            // (found in review): it waits until the group's state applied them (what a
            // snapshot covers; the replica hears of what a held Ready applied only later).
            let behind =
                (self.groups.get(&group.0)).is_some_and(|g| g.kv.applied_index() < through.0);
            if !(short && behind) {
                self.snapshot(group.0);
            }
        }
        // A group whose last snapshot is still being encoded or stored stays due: taken off
        // the list now, it would come back only with its next Ready, which a quiet group
        // with no followers to heartbeat may never have. So does one held back since it
        // became due (found in review: due while its last snapshot was encoded, it took the
        // next past one a follower was loading). Short of room, none is taken for being due:
        // the room kept for markers is for the snapshots that free a segment (review 266).
        // Judged again when taken: a snapshot taken meanwhile (the one in flight, or one the
        // log's size limit asked for while it was held) may have made it due no longer
        // (review 314).
        let mut due = self.snapshots_due.iter().copied();
        if !short && let Some(id) = due.find(|&id| self.may_snapshot(id) && !self.snapshot_held(id))
        {
            self.snapshots_due.remove(&id);
            if self.snapshot_due(id) {
                self.snapshot(id);
            }
        }
        for (group, index, data) in self.log.take_encoded() {
            self.compact(group.0, index, data)?;
        }
        for Received {
            group,
            message,
            state,
        } in self.log.take_received()
        {
            let Some(g) = self.groups.get_mut(&group.0) else {
                if let Some(state) = state {
                    self.log.release_state(state);
                }
                continue;
            };
            let before = g.replica.snapshot_index();
            let unused = match g.replica.step(message) {
                Err(error) => {
                    tracing::debug!(group = group.0, %error, "snapshot refused");
                    state
                }
                // Taken: the Ready that installs it takes its state machine, decoded already.
                Ok(()) if g.replica.snapshot_index() > before => {
                    std::mem::replace(&mut g.loaded, state)
                }
                Ok(()) => state,
            };
            if let Some(unused) = unused {
                self.log.release_state(unused);
            }
        }
        Ok(())
    }

    fn handle(&mut self, input: Input, answers: &mut Vec<Answer>) -> bool {
        match input {
            Input::Peer {
                from,
                says,
                envelopes,
            } => {
                self.peers_heard_tick.insert(from, self.heard_ticks);
                match says.clients_relay {
                    true => self.peers_clients_relay.insert(from),
                    false => self.peers_clients_relay.remove(&from),
                };
                let changed = match says.kv_full {
                    true => self.peers_kv_full.insert(from),
                    false => self.peers_kv_full.remove(&from),
                };
                if changed {
                    self.broadcast_commits_while_peers_kv_full();
                }
                if says.log_full {
                    if self.peers_log_full.insert(from) {
                        // It drops TimeoutNow: a transfer to it not yet told to campaign is
                        // given up (one told may be campaigning already: it runs its time).
                        for g in self.groups.values_mut() {
                            if g.replica.lead_transferee() == Some(NodeId(from)) {
                                g.replica.abandon_transfer_not_begun();
                            }
                        }
                    }
                } else {
                    self.peers_log_full.remove(&from);
                }
                for Envelope { group, message } in envelopes {
                    if needs_log_room(&message.body) && self.log.short_of_space().is_some() {
                        // Dropped, like any message Raft may lose: the leader sends it again.
                        continue;
                    }
                    if self.entry_too_large(group.0, &message) {
                        continue;
                    }
                    let message = match message.body {
                        // Never buffered for a group this core does not run: a misrouted
                        // peer could grow that buffer to the snapshot limit per group id.
                        MessageBody::SnapshotChunk(_) if !self.groups.contains_key(&group.0) => {
                            continue;
                        }
                        // Nor from a node that does not lead the group in a term as new as
                        // this replica's: Raft would drop what it sends.
                        MessageBody::SnapshotChunk(_)
                            if !self.groups[&group.0]
                                .replica
                                .may_lead(message.from, message.term) =>
                        {
                            continue;
                        }
                        // While the log holds snapshots back (the last failed to store), no
                        // chunk is answered: its leader waits, gives the stream up and offers
                        // it again later. (Chunks past a first one dropped, answered as gaps,
                        // each made the leader send its whole window again; found in review.)
                        MessageBody::SnapshotChunk(_) if self.log.receive_held(group) => {
                            continue;
                        }
                        MessageBody::SnapshotChunk(ref chunk) => {
                            // Offered again from its start, a snapshot this group still lacks:
                            // the copy streamed before was lost on its way in (it failed to
                            // store, say). Stream it anew rather than answer "all received".
                            // Not while a copy of it is still being stored: its leader, told
                            // it all arrived, probes the group, which cannot answer until it
                            // installed the snapshot, so it offers it again, and each copy
                            // took another state-sized buffer and another write.
                            let replica = &self.groups[&group.0].replica;
                            let storing = self
                                .log
                                .snapshot_receiving(group, message.term)
                                .is_some_and(|index| index >= chunk.meta.index);
                            if chunk.offset == 0 && replica.commit() < chunk.meta.index && !storing
                            {
                                self.streams.forget_completed(message.from.0, group.0);
                            }
                            let (ack, whole) = self.streams.on_chunk(group.0, message);
                            if let Some(ack) = ack {
                                self.net.send(ack);
                            }
                            if let Some(whole) = whole {
                                self.receive_snapshot(group.0, whole);
                            }
                            continue;
                        }
                        MessageBody::SnapshotAck {
                            index,
                            received,
                            gap,
                        } => {
                            let from = message.from.0;
                            // The whole snapshot arrived: the leader probes the follower next
                            // instead of waiting for its answer to the snapshot, which a
                            // dropped connection may have lost (it would wait forever: the
                            // follower has nothing more to say).
                            if self.streams.on_ack(from, group.0, index, received, gap)
                                && let Some(g) = self.groups.get_mut(&group.0)
                            {
                                g.replica.report_snapshot(NodeId(from), Some(index));
                            }
                            continue;
                        }
                        // Whole (not streamed) from a peer: stored as a streamed one is.
                        MessageBody::InstallSnapshot(_) => {
                            self.receive_snapshot(group.0, message);
                            continue;
                        }
                        // A stopping node takes no group (its peers were told its log is
                        // full, but one may have asked before it heard).
                        MessageBody::TimeoutNow if self.stopping_by.is_some() => continue,
                        // Reads and writes a follower forwards for a client that cannot reach
                        // this leader: only from a member (the reads are Raft's own ReadIndex
                        // round, bounded by its `pending_reads_max`).
                        MessageBody::ReadIndexRequest { .. }
                            if !self.is_member(group.0, message.from) =>
                        {
                            continue;
                        }
                        MessageBody::ReadIndexRequest { .. } => {
                            self.note_relayed(group.0, message.from);
                            message
                        }
                        MessageBody::ForwardProposal { data } => {
                            let from = (message.from, message.term);
                            self.take_forwarded(group.0, from, data, answers);
                            continue;
                        }
                        _ => message,
                    };
                    // A message for a group this core does not run is a misrouted peer:
                    // dropped, like any message Raft may lose.
                    if let Some(g) = self.groups.get_mut(&group.0)
                        && let Err(error) = g.replica.step(message)
                    {
                        tracing::debug!(group = group.0, %error, "message refused");
                    }
                }
            }
            Input::Connected { conn, outbox, held } => {
                self.outboxes.insert(conn, (outbox, held));
            }
            Input::Requests { conn, requests } => {
                self.reach.heard_directly(requests.len());
                for request in requests {
                    match request {
                        Ok(request) => self.route(conn, request, answers),
                        Err(refused) => answers.push(Answer {
                            conn,
                            response: refused.response(),
                        }),
                    }
                }
            }
            // What its requests wait for is forgotten once the turn's inputs are in (see
            // `forget_closed_conns`).
            Input::Disconnected(conn) => {
                self.outboxes.remove(&conn);
                self.closed_conns.insert(conn);
            }
            Input::Status(reply) => {
                let groups = self
                    .groups
                    .iter()
                    .map(|(&id, g)| {
                        let mut row = GroupRow::from_status(id, &g.replica.status());
                        for peer in &mut row.peers {
                            if peer.snapshot.is_some() {
                                let sent = self.streams.progress(peer.node_id, id);
                                peer.snapshot = sent.or(peer.snapshot);
                            }
                        }
                        row
                    })
                    .collect();
                reply.push_now(CoreRows {
                    node_id: self.shape.node_id,
                    core: self.shape.core,
                    groups,
                    refuses_writes: self.refuses_writes(),
                    clients_relay_through: self.reach.relaying_through(),
                    peers_clients_relay: (self.peers_clients_relay.iter())
                        .filter(|&&peer| self.heard_lately_by_core(peer))
                        .copied()
                        .collect(),
                });
            }
            Input::Tick if self.tick_clock.is_none() => {
                self.heard_ticks += 1;
                self.groups.pace_campaigns();
                self.tick();
            }
            // The clock's ticks were taken at the start of the turn.
            Input::Tick => {}
            // Stopping, a group it leads is handed over: its change waits for the new leader
            // (a transfer goes on, the handover leaving its group alone; a group it follows
            // is answered with its leader, as ever).
            Input::ChangeMember { change, reply }
                if self.stopping_by.is_some()
                    && (self.groups.get(&change.group))
                        .is_some_and(|g| g.replica.role() == Role::Leader) =>
            {
                reply.push_now(MemberOutcome::Busy(format!(
                    "node {} is stopping and hands group {} over: ask again",
                    self.shape.node_id, change.group
                )));
            }
            Input::TransferLeader { group, to, reply } => self.start_transfer(group, to, reply),
            Input::ChangeMember { change, reply } => self.start_member_change(change, reply),
            Input::Stop => return true,
            Input::StopAfterWork { grace_ticks } => {
                if self.stopping_by.is_none() {
                    self.stopping_by = Some(self.ticks + grace_ticks);
                    // A group it follows is not taken on the way out, only to be handed
                    // over again (found in review).
                    for group in self.groups.values_mut() {
                        group.replica.stop_campaigning();
                    }
                    self.tell_peers_log_state();
                    self.hand_over_leaders();
                }
            }
        }
        false
    }

    fn tick(&mut self) {
        let renewed = self.net.take_renewed();
        self.wake_quiet_groups(&renewed);
        self.groups.tick();
        let keepalive_every = (self.groups.values().next()).map_or(1, |g| {
            u64::from(g.replica.heartbeat_interval_ticks().max(1))
        });
        if self.ticks.is_multiple_of(keepalive_every) {
            self.net.keep_alive();
        }
        debug_assert_eq!(
            self.kv_bytes.get(),
            self.groups.values().map(|g| g.kv.data_bytes()).sum::<u64>(),
            "the groups keep the count of their key-value states"
        );
        self.ticks += 1;
        // Snapshot chunks in flight on a dropped connection are lost: resend them now rather
        // than after a stall.
        for peer in renewed {
            self.streams.resend_to(peer);
        }
        for (to, group) in self.streams.tick() {
            if let Some(g) = self.groups.get_mut(&group) {
                g.replica.report_snapshot(NodeId(to), None);
            }
        }
        self.finish_transfers();
        self.finish_member_changes();
        self.watch_leaders();
        self.broadcast_commits_while_peers_kv_full();
        // Here too, not only between turns: a core whose syncs are stuck soon has every slot
        // taken, and takes no turn.
        self.tell_peers_log_state();
        let every = u64::from(self.shape.balance_every_ticks.max(1));
        if self.ticks.is_multiple_of(every) && self.shape.leader_balance_margin.is_some() {
            self.watch_client_reach();
        }
        // Stopping, at every tick: a handover given up, or a follower not ready at the last
        // look, is tried again within the grace.
        if self.ticks.is_multiple_of(every) || self.stopping_by.is_some() {
            self.hand_over_leaders();
        }
    }

    /// Ticks the groups have had.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether `request` is the retry of a write the group of its keys holds, and now waits
    /// for it (see [`Group::wait_with_held`]).
    fn waits_with_held(
        &mut self,
        conn: ConnId,
        request: &Request,
        answers: &mut Vec<Answer>,
    ) -> bool {
        let command = &request.command;
        let Some(op) = command.ops.first().filter(|_| !command.is_read_only()) else {
            return false;
        };
        let group = group_of(op.key(), self.shape.groups_total);
        let key = (command.client_id, command.sequence);
        (self.groups.get_mut(&group))
            .filter(|g| g.replica.role() == Role::Leader)
            .is_some_and(|g| g.wait_with_held(conn, key, answers))
    }

    /// Hand a request to the group that owns all of its keys.
    fn route(&mut self, conn: ConnId, mut request: Request, answers: &mut Vec<Answer>) {
        // A stopping node forwards nothing: it would wait for what it forwarded, and its stop
        // for that (review 302). It names the leader instead.
        if self.stopping_by.is_some() {
            request.forward_to = 0;
        }
        let total = self.shape.groups_total;
        let mut keys = request
            .command
            .ops
            .iter()
            .map(|op| group_of(op.key(), total));
        let group = keys.next().expect("validated: at least one operation");
        let refuse = |message: String| {
            let response = Response {
                client_id: request.command.client_id,
                sequence: request.command.sequence,
                outcome: Outcome::Error {
                    code: ErrorCode::Malformed,
                    message,
                },
            };
            Answer { conn, response }
        };
        if keys.any(|g| g != group) {
            answers.push(refuse(
                "the keys of one request must belong to one group".to_string(),
            ));
            return;
        }
        // A follower answers as always (the leader's address), full log or not. A stopping
        // leader takes nothing it would have to finish, but in a group it hands over: that
        // waits for the new leader, whose address it then gets.
        let stale_read =
            request.command.is_read_only() && request.consistency == Consistency::Stale;
        let stopping = self.stopping_by.is_some() && !stale_read;
        let refusal = (self.groups.get(&group))
            .filter(|g| g.replica.role() == Role::Leader)
            .and_then(|g| {
                // A retry of a write this leader holds waits for it and adds nothing to the
                // log or the state (see `Group::wait_with_held`): past a stop (the stopping
                // leader finishes that write anyway; it was told nothing of it was taken:
                // review 279) and past the quota (its refusal is final). Not past logs
                // without room: there the write may wait for as long as the disks are full,
                // and the retry is told why, as busy (its client sent it before, so it
                // knows the write may have been taken, and asks again); waiting, it timed
                // out saying nothing of the disks (found in `node_disk_full`).
                let key = (request.command.client_id, request.command.sequence);
                let write = !request.command.is_read_only();
                let held = || write && g.holds_write(key);
                let (code, why) = if stopping && g.replica.lead_transferee().is_none() {
                    if held() {
                        return None;
                    }
                    (ErrorCode::Busy, stopping_refusal(self.shape.node_id))
                } else if !write {
                    // A leader that has committed nothing of its term serves no linearizable
                    // read until it does: where its voters cannot take that entry, say why
                    // (found by a tester: such reads waited out their timeout, saying
                    // nothing, while writes were refused naming the full and silent nodes).
                    if stale_read || g.replica.committed_in_its_term() {
                        return None;
                    }
                    let why = self.voters_cannot_take(group, g)?;
                    (
                        ErrorCode::Busy,
                        format!(
                            "{why}; nor linearizable reads, until it commits an entry of its \
                             term (stale reads are served)"
                        ),
                    )
                } else if let Some(why) = self.at_kv_quota(&request.command, g).filter(|_| !held())
                {
                    (ErrorCode::NoSpace, why)
                } else {
                    (ErrorCode::Busy, self.no_room_for_writes(group, g)?)
                };
                // A retry of a write decided before gets that write's answer from its
                // session: it adds nothing and needs no room (review 275: a put that filled
                // the state got "no space" for its retry; review 283: one answered busy
                // while its write applied, its result then lost, got busy at each retry
                // after, as it went in the log again).
                if write && let Some(reply) = g.kv.decided(&request.command) {
                    return Some(super::group::outcome_of(reply));
                }
                Some(Outcome::Error { code, message: why })
            });
        // A write a follower forwards (see `Group::forward_write`) is refused where its own
        // key-value state, a copy of the leader's, is at the quota: the leader would drop it,
        // and its client would be told "not the leader" and send it again, until its time ran
        // out.
        let forwarded_at_quota = (request.forward_to != 0)
            .then(|| self.groups.get(&group))
            .flatten()
            .filter(|g| g.forwards(request.forward_to))
            .filter(|g| g.kv.decided(&request.command).is_none())
            .and_then(|g| self.at_kv_quota(&request.command, g))
            .map(|why| Outcome::Error {
                code: ErrorCode::NoSpace,
                message: why,
            });
        if let Some(outcome) = refusal.or(forwarded_at_quota) {
            let response = Response {
                client_id: request.command.client_id,
                sequence: request.command.sequence,
                outcome,
            };
            return answers.push(Answer { conn, response });
        }
        let log_waits = self.log.entries_wait();
        match self.groups.get_mut(&group) {
            // A group asleep was not told of the log's waits since it fell asleep.
            Some(g) => {
                g.log_waits = log_waits;
                g.handle(conn, request, answers)
            }
            None => answers.push(refuse(format!(
                "group {group} lives on core {}, not core {}: ask the topology again",
                core_of(group, self.shape.cores),
                self.shape.core
            ))),
        }
    }

    /// With every sync slot taken (a slow disk), the loop hands out no Ready, and writes wait
    /// for a slot (batched the more); but once that lasted into a new tick, what needs no
    /// sync leaves at every pass: a leader's heartbeats and appends, a follower's heartbeat
    /// answers. A leader that sent none while its disk stalled past an election timeout
    /// would be deposed (found in review: at the cap the loop sent nothing). Under load the
    /// cap comes and goes within a tick, and sending at each pass then cost CPU for nothing
    /// (more, smaller frames).
    ///
    /// A new role is said first, and the writes it leaves waiting in vain, proposed or not,
    /// are told to retry at the leader, whose address they get (one whose entry committed
    /// in a Ready still in flight is told so too, where a Ready's role would come after it:
    /// its retry is answered from the session).
    fn send_what_needs_no_sync(&mut self, answers: &mut Vec<Answer>) {
        // A group untouched since the last turn has nothing to send (`shard::groups`).
        for (&id, group) in self.groups.touched_mut() {
            let out = (&mut self.net, &mut self.streams, &self.peers_log_full);
            send_needing_no_sync(&mut self.hooks, out, (id, group), answers);
        }
    }

    /// Steps 2–3 of the loop for every group with work: hand out the Readies, send what
    /// need not wait, stage the writes and begin their sync; step 4 comes at once if nothing
    /// waits for a sync, else when it ends ([`Core::finish_persisted`]).
    fn turn(&mut self, answers: &mut Vec<Answer>) -> Result<(), String> {
        debug_assert!(
            self.groups.asleep().all(Group::may_sleep),
            "a group asleep has work: something changed it without waking it (shard::groups)"
        );
        let short = self.log.short_of_space().map(str::to_owned);
        let log_waits = self.log.entries_wait();
        // Whether the log takes entries, and has room, changes what every group with writes
        // waiting does with them: each hears it at its next turn.
        let log_state = (log_waits, short.is_some());
        if std::mem::replace(&mut self.log_state_turned, log_state) != log_state {
            self.groups.touch_awake();
        }
        #[cfg(debug_assertions)]
        self.assert_untouched_idle();
        // The groups touched since the last turn: what touches one from here on touches it
        // for the next.
        let turning = self.groups.take_touched();
        let turned = self.turn_touched(&turning, short, log_waits, answers);
        // What a turn leaves quiet with nothing to do sleeps until something touches it.
        self.groups.sleep_idle(&turning);
        turned
    }

    /// Every group awake that no turn looked at since something touched it has nothing to do
    /// (`shard::groups`): a path that gave one work without touching it would leave that work
    /// undone until a tick.
    #[cfg(debug_assertions)]
    fn assert_untouched_idle(&self) {
        for (&id, group) in self.groups.untouched() {
            let waits_to_apply = Self::waits_to_apply(&self.persisting, &self.unstaged, id);
            assert!(
                !group.has_turn_work(waits_to_apply, READIES_IN_FLIGHT_PER_GROUP_MAX),
                "group {id} has work that nothing touched it for (shard::groups)"
            );
        }
    }

    /// [`Core::turn`] for the groups at `turning`: those touched since the last.
    fn turn_touched(
        &mut self,
        turning: &[usize],
        short: Option<String>,
        log_waits: bool,
        answers: &mut Vec<Answer>,
    ) -> Result<(), String> {
        for (_, group) in self.groups.slots_mut(turning) {
            if let Some(why) = short.as_deref().filter(|_| group.has_pending()) {
                // Writes held back before the log ran short (none are taken in since).
                group.refuse_pending_as_follower(answers);
                let me = self.shape.node_id;
                let why = format!("node {me} takes no writes while it cannot grow its log: {why}");
                group.refuse_pending_as_busy(&why, answers);
            }
            group.log_waits = log_waits;
            group.propose_pending(answers);
        }
        let mut readies: Vec<(u32, Ready)> = Vec::new();
        // What the log had no room for goes first; those groups hand out no other Ready
        // this turn (a later one must not be staged, nor advanced, before it).
        let waited = std::mem::take(&mut self.unstaged);
        let mut waited_ids: Vec<u32> = waited.iter().map(|(id, ..)| *id).collect();
        waited_ids.sort_unstable();
        for waiting in waited {
            stage_or_hold(&mut self.log, waiting, &mut readies, &mut self.unstaged)
                .map_err(|e| format!("core {}: log write failed: {e}", self.shape.core))?;
        }
        for (&id, group) in self.groups.slots_mut(turning) {
            // An idle group's heartbeats, or its answers to them, go without a Ready.
            if let Some(messages) = group.replica.take_messages_alone() {
                let out = (&mut self.net, &mut self.streams, &self.peers_log_full);
                send_all(out, id, group, messages);
                continue;
            }
            if !group.replica.has_ready() && !group.replica.has_pipelined_ready() {
                continue;
            }
            if waited_ids.binary_search(&id).is_ok() {
                continue;
            }
            if group.replica.readies_in_flight() >= READIES_IN_FLIGHT_PER_GROUP_MAX {
                let out = (&mut self.net, &mut self.streams, &self.peers_log_full);
                send_needing_no_sync(&mut self.hooks, out, (id, group), answers);
                continue;
            }
            let mut ready = group.replica.ready();
            if let Some(soft_state) = ready.soft_state() {
                announce_role(&mut self.hooks, &mut self.streams, id, group, soft_state);
            }
            for lost in ready.lost_entries() {
                (self.hooks.on_lost_entries)(id, lost);
            }
            send_all(
                (&mut self.net, &mut self.streams, &self.peers_log_full),
                id,
                group,
                ready.take_messages_now(),
            );
            let role_changed = ready.soft_state().is_some();
            let fresh = (id, ready, Staged::default());
            let held = stage_or_hold(&mut self.log, fresh, &mut readies, &mut self.unstaged)
                .map_err(|e| format!("core {}: log write failed: {e}", self.shape.core))?;
            if held {
                // What needs no room is done now, as for a Ready whose sync begins.
                let (_, ready, _) = self.unstaged.last_mut().expect("just held");
                serve_before_sync(group, ready, answers).map_err(|e| format!("group {id}: {e}"))?;
            }
            if held && role_changed {
                // What its step 4 would answer, answered now, as at the sync cap: writes
                // that wait in vain are told to retry at the leader.
                group.leadership_changed(answers);
                group.refuse_pending_as_follower(answers);
            }
        }
        if !waited_ids.is_empty() {
            // Group order, as the rest of the turn and `Persisting` expect.
            readies.sort_by_key(|(id, _)| *id);
        }
        // A group whose waiting Ready was staged this turn handed out no other: the next turn
        // looks at it again (review 321: what it had meanwhile waited for a tick).
        for id in &waited_ids {
            self.groups.get_mut(id);
        }
        // A group whose Ready waits hands out no other, but does not fall silent (a leader
        // would be deposed, a transfer never leave): what needs no sync goes, as at the sync
        // cap.
        for &(id, ..) in &self.unstaged {
            let group = self.groups.get_mut(&id).expect("a group of the core");
            let out = (&mut self.net, &mut self.streams, &self.peers_log_full);
            send_needing_no_sync(&mut self.hooks, out, (id, group), answers);
        }
        if !self.shape.sync {
            return self.after_persist(readies, answers);
        }
        // A Ready that needs no sync (a new commit index, messages, entries durable here
        // already) goes on now, or, if its group has a Ready waiting for a sync (this one is
        // pipelined), right after that one; the others wait for one new sync.
        let (mut readies, not_synced): (Vec<_>, Vec<_>) = readies
            .into_iter()
            .partition(|(_, ready)| ready.must_sync());
        let mut now = Vec::new();
        for (id, ready) in not_synced {
            let last = self
                .persisting
                .iter_mut()
                .rev()
                .find(|p| p.readies.binary_search_by_key(&id, |(g, _)| *g).is_ok());
            match last {
                Some(persisting) => persisting.behind.entry(id).or_default().push(ready),
                None => now.push((id, ready)),
            }
        }
        if !readies.is_empty() || self.log.wants_sync() {
            let sync = self
                .log
                .begin_sync()
                .map_err(|e| format!("core {}: log sync failed: {e}", self.shape.core))?;
            // Entries durable here before this turn, and reads, need not wait for its sync:
            // applied, served and answered now, while the disk works.
            for (id, ready) in &mut readies {
                let group = self.groups.get_mut(id).expect("listed above");
                serve_before_sync(group, ready, answers).map_err(|e| format!("group {id}: {e}"))?;
            }
            debug_assert!(
                readies.windows(2).all(|w| w[0].0 < w[1].0),
                "a sync waits for one Ready a group, in group order"
            );
            self.persisting.push_back(Persisting {
                sync: WokenOnly::new(sync),
                synced: None,
                readies,
                behind: BTreeMap::new(),
                began_tick: self.ticks,
                began_heard_tick: self.heard_ticks,
            });
        }
        self.after_persist(now, answers)
    }

    /// Finish the syncs that ended, oldest first, up to the first still in flight; then
    /// step 4 for the Readies that waited for each.
    fn finish_persisted(&mut self, answers: &mut Vec<Answer>) -> Result<(), String> {
        while self.persisting.front().is_some_and(|p| p.synced.is_some()) {
            let mut persisting = self.persisting.pop_front().expect("checked above");
            let synced = persisting.synced.take().expect("checked above");
            self.log
                .finish_sync(synced)
                .map_err(|e| format!("core {}: log sync failed: {e}", self.shape.core))?;
            self.after_persist(persisting.in_order(), answers)?;
        }
        Ok(())
    }

    /// Wait for every sync in flight and finish them.
    async fn wait_persisted(&mut self, answers: &mut Vec<Answer>) -> Result<(), String> {
        for persisting in &mut self.persisting {
            if persisting.synced.is_none() {
                persisting.synced = Some((&mut persisting.sync).await);
            }
        }
        self.finish_persisted(answers)
    }

    /// Step 4 for `readies`, whose writes are durable (or need not be): send what waited
    /// for them, apply, answer, advance.
    fn after_persist(
        &mut self,
        readies: Vec<(u32, Ready)>,
        answers: &mut Vec<Answer>,
    ) -> Result<(), String> {
        for (id, mut ready) in readies {
            let group = self.groups.get_mut(&id).expect("listed above");
            send_all(
                (&mut self.net, &mut self.streams, &self.peers_log_full),
                id,
                group,
                ready.take_messages_after_persist(),
            );
            let installs = (ready.snapshot())
                .filter(|snapshot| !snapshot.data.is_empty())
                .map(|snapshot| (snapshot.meta.index.0, snapshot.data.len()));
            group
                .apply_ready(&mut ready, answers)
                .map_err(|e| format!("group {id}: {e}"))?;
            if let Some((index, bytes)) = installs {
                tracing::info!(group = id, index, bytes, "installed a snapshot");
            }
            for state in group.retired.drain(..) {
                self.log.release_state(state);
            }
            group.replica.advance(ready.ack());
            if group.members_changed {
                group.forget_non_members();
            }
            if self.snapshot_due(id) {
                self.snapshots_due.insert(id);
            }
        }
        if !self.transfers.is_empty() {
            self.finish_transfers();
        }
        if !self.member_changes.is_empty() {
            self.finish_member_changes();
        }
        self.publish_members();
        // A stream under way to a peer whose log filled meanwhile sends it nothing more: it
        // stalls, and is given up as any stream without progress.
        let (net, full) = (&mut self.net, &self.peers_log_full);
        (self.streams)
            .pump(|envelope| !full.contains(&envelope.message.to.0) && net.send(envelope));
        Ok(())
    }

    async fn sync_log(&mut self) -> Result<(), String> {
        self.log
            .sync()
            .await
            .map_err(|e| format!("core {}: log sync failed: {e}", self.shape.core))
    }

    /// Whether `message` is a leader's append with an entry larger than this node's log
    /// takes (nodes started with different `--segment-mib`): refused before Raft takes it
    /// in, so the node goes on, with a clear word, rather than stop when it writes it.
    fn entry_too_large(&mut self, group: u32, message: &Message) -> bool {
        let (MessageBody::AppendRequest(append), Some(g)) =
            (&message.body, self.groups.get(&group))
        else {
            return false;
        };
        let Some(entry) = append
            .entries
            .iter()
            .find(|e| e.data.len() > g.entry_bytes_max)
        else {
            return false;
        };
        if !std::mem::replace(&mut self.said_entry_too_large, true) {
            tracing::error!(
                group,
                leader = message.from.0,
                index = entry.index.0,
                bytes = entry.data.len(),
                bytes_max = g.entry_bytes_max,
                "refused an entry larger than this node's log takes: every node of a \
                 cluster must run with the same --segment-mib (said once)"
            );
        }
        true
    }

    /// Send every answer to its connection, one batch per connection.
    fn deliver(&mut self, answers: &mut Vec<Answer>) {
        let mut by_conn: HashMap<ConnId, Vec<Response>> = HashMap::new();
        for answer in answers.drain(..) {
            by_conn
                .entry(answer.conn)
                .or_default()
                .push(answer.response);
        }
        for (conn, responses) in by_conn {
            // A connection that closed meanwhile has no outbox, or a closed one (its task
            // ended before the core heard): its client retries. Its answers, which nobody
            // will read, must not make room by cutting others off (found in review).
            let Some((outbox, held)) = self.outboxes.get(&conn) else {
                continue;
            };
            if outbox.is_closed() {
                self.cut_off(conn);
                continue;
            }
            // A client that keeps asking but does not read its answers holds ever more of
            // them: cut it off rather than hold them without bound (see `answers_held`).
            let weight = responses.iter().map(answer_weight).sum();
            if !held.takes(weight) {
                self.cut_off(conn);
                continue;
            }
            // Down to three quarters of the bound, so the next answers of the turn find
            // room rather than each sort the core's connections again. This connection
            // counts with these answers: a batch larger than what others hold cuts it off,
            // not every other client (found in review). On a core where no other connection
            // holds any, it is answered: there is no one to make room for (README).
            let excess = held.core_excess(weight);
            if excess > 0 && held.others_hold() > 0 {
                self.cut_off_largest(excess + ANSWER_WEIGHT_CORE_HELD_MAX / 4, (conn, weight));
            }
            let Some((outbox, held)) = self.outboxes.get(&conn) else {
                continue;
            };
            if outbox.try_push_weighing(responses, weight).is_err() {
                self.cut_off(conn);
                continue;
            }
            held.charge(weight);
        }
    }

    /// Closes the outbox of `conn` (its task ends the connection), and takes what it holds
    /// out of the core's count.
    fn cut_off(&mut self, conn: ConnId) {
        if let Some((outbox, held)) = self.outboxes.remove(&conn) {
            outbox.close();
            held.cut_off();
        }
    }

    /// Cuts off the connections holding the most answers until they held `excess` together
    /// (or none holds any): the core's connections would hold more than their bound once
    /// `receiving` (a connection, and the weight about to be handed to it) took its answers.
    fn cut_off_largest(&mut self, excess: usize, receiving: (ConnId, usize)) {
        let holders = (self.outboxes.iter()).map(|(&conn, (_, held))| {
            let about_to_take = if conn == receiving.0 { receiving.1 } else { 0 };
            (conn, held.get() + about_to_take)
        });
        for (conn, weight) in largest_holders(holders, excess) {
            tracing::info!(
                conn,
                weight,
                "this core's clients hold too many unwritten answers: cut off one holding the most"
            );
            self.cut_off(conn);
        }
    }
}

/// The connections holding the most, of `holders` (connection, weight held), that hold
/// `excess` together, or all that hold any.
fn largest_holders(
    holders: impl Iterator<Item = (ConnId, usize)>,
    excess: usize,
) -> Vec<(ConnId, usize)> {
    let mut holders: Vec<(ConnId, usize)> = holders.filter(|&(_, weight)| weight > 0).collect();
    holders.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut freed = 0;
    let mut cut = Vec::new();
    for (conn, weight) in holders {
        if freed >= excess {
            break;
        }
        freed += weight;
        cut.push((conn, weight));
    }
    cut
}

/// A message that would put new entries or a snapshot into the log, or ask this node to
/// lead (a leader that takes no writes serves nobody). A new leader's empty entry (a few
/// dozen bytes per election) is taken even so: without it, a leader elected while its
/// followers' logs are full could never commit in its term, nor serve a linearizable read.
fn needs_log_room(body: &MessageBody) -> bool {
    match body {
        MessageBody::AppendRequest(append) => {
            append.entries.iter().any(|e| e.kind != EntryKind::Empty)
        }
        MessageBody::SnapshotChunk(_)
        | MessageBody::InstallSnapshot(_)
        | MessageBody::TimeoutNow => true,
        _ => false,
    }
}

/// What a Ready that waits (for its sync, or for room in the log) need not wait for:
/// entries durable here already are applied and answered, and reads served. Membership
/// changes keep the usual order (the group's members and the replica's configuration change
/// together). The Ready no longer holds what was done.
fn serve_before_sync(
    group: &mut Group,
    ready: &mut Ready,
    answers: &mut Vec<Answer>,
) -> Result<(), String> {
    let conf_change = |e: &Entry| e.kind == EntryKind::ConfChange;
    if ready.committed_durable() && !ready.committed().iter().any(conf_change) {
        group.apply_committed(ready, answers)?;
    }
    group.confirm_reads(ready.take_reads(), &ready.take_reads_aborted(), answers);
    group.serve_confirmed_reads(answers);
    Ok(())
}

/// [`Core::send_what_needs_no_sync`] for one group.
fn send_needing_no_sync(
    hooks: &mut Hooks,
    (net, streams, full_peers): Outbound<'_, impl CoreNet>,
    (id, group): (u32, &mut Group),
    answers: &mut Vec<Answer>,
) {
    if let Some(soft_state) = group.replica.take_soft_state() {
        announce_role(hooks, streams, id, group, soft_state);
        group.leadership_changed(answers);
        group.refuse_pending_as_follower(answers);
    }
    let messages = group.replica.take_messages_now();
    if !messages.is_empty() {
        send_all((net, streams, full_peers), id, group, messages);
    }
}

/// Stages group `id`'s `ready` from where `staged` says an earlier call stopped: into
/// `readies` once the log holds all of it, else into `unstaged`, to be staged again.
/// Returns whether it was held.
fn stage_or_hold<L: CoreLog>(
    log: &mut L,
    (id, ready, mut staged): (u32, Ready, Staged),
    readies: &mut Vec<(u32, Ready)>,
    unstaged: &mut Vec<(u32, Ready, Staged)>,
) -> io::Result<bool> {
    if log.stage(GroupId(id), &ready, &mut staged)? {
        readies.push((id, ready));
        Ok(false)
    } else {
        unstaged.push((id, ready, staged));
        Ok(true)
    }
}

/// Says group `id`'s new role and leader: before the messages that announce them leave, so
/// a node that heard from the new leader never sees a log that has not said it yet.
fn announce_role(
    hooks: &mut Hooks,
    streams: &mut SnapshotStreams,
    id: u32,
    group: &Group,
    (role, leader): (Role, NodeId),
) {
    (hooks.on_role)(id, role, leader.0, group.replica.term().0);
    if role != Role::Leader {
        // Its snapshots on their way out are a deposed leader's: the followers would take
        // them in, then Raft would drop them.
        streams.stop_group(id);
    }
}

/// Where a group's messages go: the peers' queues, the snapshot streams, and the peers that
/// said their log cannot grow (sent nothing that needs log room).
type Outbound<'a, N> = (&'a mut N, &'a mut SnapshotStreams, &'a BTreeSet<u64>);

/// Send `messages` of group `id`; snapshots go to their streams. An append a peer's queue
/// refuses, or that needs room a peer said its log has not, is reported to Raft, which
/// sends it again later from its first entry, and that peer is offered no later append of
/// the batch: a smaller one that fit would leave a gap in its log. Other refused messages
/// are dropped; Raft sends them again anyway.
fn send_all(
    (net, streams, full_peers): Outbound<'_, impl CoreNet>,
    id: u32,
    group: &mut Group,
    messages: Vec<Message>,
) {
    // Per peer whose queue refused an append: the term, and the lowest prev index of the
    // refused append and the ones not offered after it. Reported once the batch is through,
    // from the lowest: the batch may hold appends from before a reset of the peer's progress
    // (a rejection, then an acknowledgement) that start below the refused one.
    let mut refused: Vec<(NodeId, Term, LogIndex)> = Vec::new();
    for message in messages {
        // A peer whose log is full drops snapshot chunks too: none is streamed to it. Told
        // undelivered, Raft probes again at the peer's next answer and asks for it anew.
        if full_peers.contains(&message.to.0)
            && matches!(message.body, MessageBody::InstallSnapshot(_))
        {
            group.replica.report_snapshot(message.to, None);
            continue;
        }
        let Some(message) = streams.offer(id, message) else {
            continue;
        };
        let (to, term) = (message.to, message.term);
        let append_after = match &message.body {
            MessageBody::AppendRequest(append) => Some(append.prev_log_index),
            _ => None,
        };
        // What a peer whose log cannot grow would drop (see `Core::handle`) is not sent: the
        // bytes and the work of both ends are saved, and an append is reported refused, so
        // Raft sends it again once the peer answers (as after a full queue).
        if full_peers.contains(&to.0) && needs_log_room(&message.body) {
            if let Some(prev) = append_after {
                match refused.iter_mut().find(|(peer, ..)| *peer == to) {
                    Some(known) => known.2 = known.2.min(prev),
                    None => refused.push((to, term, prev)),
                }
            }
            continue;
        }
        if let Some(prev) = append_after
            && let Some(known) = refused.iter_mut().find(|(peer, ..)| *peer == to)
        {
            known.2 = known.2.min(prev);
            continue;
        }
        let envelope = Envelope {
            group: GroupId(id),
            message,
        };
        if !net.send(envelope)
            && let Some(prev) = append_after
        {
            refused.push((to, term, prev));
        }
    }
    for (to, term, prev) in refused {
        group.replica.report_append_refused(to, term, prev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): when the core's connections would hold too many answers, the
    /// connection about to take a batch larger than what any other holds is the one cut off,
    /// not every other client holding some (it was left out of the ranking, as holding
    /// nothing yet). Method: three holders of 10, and 40 about to go to connection 4.
    #[test]
    fn the_connection_about_to_hold_the_most_is_cut_first() {
        let holders = [(1, 10), (2, 10), (3, 10), (4, 40), (5, 0)];
        assert_eq!(largest_holders(holders.into_iter(), 30), [(4, 40)]);
        assert_eq!(largest_holders(holders.into_iter(), 45), [(4, 40), (3, 10)]);
        let cut = largest_holders(holders.into_iter(), 1_000);
        assert_eq!(cut.len(), 4, "all that hold any: {cut:?}");
    }
}
