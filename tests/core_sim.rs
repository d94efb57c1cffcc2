//! A deterministic simulation of the real core loop (`shard::Core`: groups, client batches,
//! exactly-once sessions, ReadIndex and lease reads, handovers, membership changes,
//! snapshots streamed to followers) on five nodes in one thread: three voters, and two
//! spares that membership changes add as learners, promote, and may remove again. A seeded
//! network drops, delays and reorders messages and cuts nodes off; logs in memory take
//! random time to sync; each node's tick clock runs a little slower or faster than the
//! others'; nodes stall (no ticks, no turns, as a frozen process: what is sent to them
//! waits on its link, and fills a bounded one) and catch up
//! with their ticks first, as a node's tick clock does; in one seed of three each link
//! holds a bounded number of messages in flight and refuses more, as a full peer queue does
//! (Raft then sends a refused append again); clients retry with the same sequence number
//! and give up after a while.
//! Every key's history is checked for linearizability (`cohort::sim::check_register`).
//!
//! In half the seeds, a node's disk runs full now and then: for a while its log writes a
//! prefix of a Ready's entries and refuses the rest (the WAL's next segment cannot be made),
//! and the core stages that Ready again later, before the group hands out another.
//!
//! Nodes crash (in two seeds of three): the core is lost, and so is a random suffix of what
//! its log took since its last sync (a torn tail); it restarts from what the log kept (each
//! group's hard state, entries and snapshot, the store decoded from it), as a node recovers
//! from its WAL and snapshot files.
//!
//! Where `src/sim` runs the Raft core alone, this runs everything a node runs above its WAL
//! files and sockets. A failure prints `CORE SEED=<n>`; `COHORT_CORE_SIM_SEED=<n>` replays
//! that seed alone; `COHORT_CORE_SIM_SEEDS=<n>` runs n seeds, from `COHORT_CORE_SIM_FROM`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use cohort::cli::check::{Asked, VALUES_PER_CLIENT, random_op, seen};
use cohort::kv::{Command, KvStore, OpResult, SnapshotJob};
use cohort::proto::client::{Consistency, ErrorCode, Outcome, Request, Response, answer_weight};
use cohort::proto::members::{MemberChange, MemberOp, MemberOutcome};
use cohort::proto::topology::group_of;
use cohort::proto::transfer::TransferOutcome;
use cohort::raft::{
    Config, Entry, GroupId, HardState, LogIndex, LostEntries, Message, MessageBody, NodeId,
    Persisted, Prng, Ready, Replica, Snapshot, Term,
};

mod common;
use cohort::shard::Group;
use cohort::shard::answers_held::AnswersHeld;
use cohort::shard::core::{Core, CoreLog, CoreNet, CoreShape, Hooks, Input, Received, Staged};
use cohort::shard::inbox::Inbox;
use cohort::shard::snapshot_stream::{SNAPSHOT_BYTES_MAX, StreamConfig};
use cohort::sim::{Disk, Operation, RegisterOp, check_register, skewed_clocks};
use cohort::wire::{Envelope, SenderSays};
use smallvec::smallvec;

/// Nodes 1 to 3 start as the voters of every group; 4 and 5 start empty, as spares that
/// membership changes add (as learners, then voters) and that may later be removed.
const NODES: u64 = 5;
const VOTERS: u64 = 3;
const GROUPS: u32 = 2;
const KEYS: usize = 3;
const CLIENTS: u64 = 4;
/// Time units per tick.
const TICK_UNITS: u64 = 10;
/// A client tries another node after this long without an answer...
const ATTEMPT_UNITS: u64 = 150;
/// ...and gives up on a request (its outcome unknown) after this long (odd clients) or this
/// (even ones, so that some writes go unanswered while a leader is cut off or stalled).
const REQUEST_UNITS: u64 = 2_000;
const REQUEST_UNITS_IMPATIENT: u64 = 400;

/// The simulated time, shared by the logs' syncs.
type Now = Rc<Cell<u64>>;

/// Each group's log.
type Disks = BTreeMap<GroupId, Disk>;

/// One write to a node's log, in the order the log took it.
#[derive(Clone)]
enum Write {
    /// From a leader, or taken by compaction: the log before it is dropped.
    Snapshot(GroupId, Snapshot),
    Entries(GroupId, Vec<Entry>),
    HardState(GroupId, HardState),
}

impl Write {
    fn apply(&self, disks: &mut Disks) -> Result<(), String> {
        match self {
            Write::Snapshot(group, snapshot) => {
                let disk = disks.entry(*group).or_default();
                if snapshot.meta.index > disk.snapshot.meta.index {
                    disk.install_snapshot(snapshot.clone());
                }
            }
            Write::Entries(group, entries) => disks.entry(*group).or_default().append(entries)?,
            Write::HardState(group, hard_state) => {
                disks.entry(*group).or_default().hard_state = *hard_state;
            }
        }
        Ok(())
    }
}

/// What a node's log keeps across crashes: what the last sync that ended made durable, and
/// the writes after it, of which a crash keeps a random prefix (the WAL's recovery keeps
/// every whole record before the first torn one, and a write may reach the disk before it
/// is synced).
#[derive(Default)]
struct Durable {
    disks: Disks,
    /// Writes after `disks`, oldest first, each with its number.
    tail: Vec<(u64, Write)>,
}

impl Durable {
    /// A crash: keep `kept` of the writes after the last sync; what remains is the log.
    fn crash(&mut self, kept: usize) -> Disks {
        for (_, write) in self.tail.drain(..).take(kept) {
            write
                .apply(&mut self.disks)
                .expect("a prefix of writes the log took");
        }
        self.disks.clone()
    }
}

/// A log in memory whose syncs end at a random later time.
struct SimLog {
    now: Now,
    rng: Rc<RefCell<Prng>>,
    sync_delay_units_max: u64,
    staged: Disks,
    /// Writes taken so far.
    written: u64,
    durable: Rc<RefCell<Durable>>,
    encoded: Vec<(GroupId, LogIndex, Bytes)>,
    received: Vec<Received>,
    snapshot_unsynced: bool,
    full_disk: FullDisk,
    /// The disk is full until this time.
    full_until: u64,
}

/// Whether a seed's disks run full now and then, until when, and how many stages they
/// refused (shared by the nodes, for the sweep's summary).
#[derive(Clone, Default)]
struct FullDisk {
    enabled: bool,
    until: u64,
    refusals: Rc<Cell<u64>>,
}

impl CoreLog for SimLog {
    fn stage(&mut self, group: GroupId, ready: &Ready, staged: &mut Staged) -> io::Result<bool> {
        let full = self.disk_full();
        if let Some(snapshot) = ready.snapshot()
            && !staged.snapshot
        {
            if full {
                return Ok(self.refuse());
            }
            self.write(Write::Snapshot(group, snapshot.clone()))?;
            staged.snapshot = true;
        }
        let entries = &ready.entries()[staged.entries..];
        if !entries.is_empty() {
            let fits = if full {
                self.rng.borrow_mut().below(entries.len() as u64) as usize
            } else {
                entries.len()
            };
            if fits > 0 {
                self.write(Write::Entries(group, entries[..fits].to_vec()))?;
                staged.entries += fits;
            }
            if full {
                return Ok(self.refuse());
            }
        }
        if let Some(hard_state) = ready.hard_state() {
            if full {
                return Ok(self.refuse());
            }
            self.write(Write::HardState(group, hard_state))?;
        }
        Ok(true)
    }

    /// What was staged when the sync began, and the number of the last write in it.
    type Synced = (Disks, u64);

    fn begin_sync(&mut self) -> io::Result<Pin<Box<dyn Future<Output = (Disks, u64)>>>> {
        self.snapshot_unsynced = false;
        let delay = self.rng.borrow_mut().below(self.sync_delay_units_max + 1);
        let (now, due) = (Rc::clone(&self.now), self.now.get() + delay);
        let mut staged = Some((self.staged.clone(), self.written));
        // No event ends it but the simulated clock: it asks to be polled again at every step
        // (the core polls a sync only once its waker fired).
        Ok(Box::pin(std::future::poll_fn(move |cx| {
            if now.get() >= due {
                Poll::Ready(staged.take().expect("polled to the end once"))
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })))
    }

    fn finish_sync(&mut self, (disks, last): (Disks, u64)) -> io::Result<()> {
        let mut durable = self.durable.borrow_mut();
        durable.disks = disks;
        durable.tail.retain(|(number, _)| *number > last);
        Ok(())
    }

    fn encode_snapshot(&mut self, group: GroupId, job: SnapshotJob) {
        let index = LogIndex(job.applied_index());
        self.encoded.push((group, index, job.encode()));
    }

    fn take_encoded(&mut self) -> Vec<(GroupId, LogIndex, Bytes)> {
        std::mem::take(&mut self.encoded)
    }

    fn snapshot_taken(&mut self, group: GroupId, snapshot: &Snapshot) -> io::Result<()> {
        self.write(Write::Snapshot(group, snapshot.clone()))?;
        self.snapshot_unsynced = true;
        Ok(())
    }

    fn snapshot_in_flight(&self, _group: GroupId) -> bool {
        false
    }

    fn receive_snapshot(&mut self, group: GroupId, message: Message) {
        if let MessageBody::InstallSnapshot(snapshot) = &message.body
            && let Ok(state) = cohort::shard::core::load_snapshot(snapshot)
        {
            self.received.push(Received {
                group,
                message,
                state,
            });
        }
    }

    fn snapshot_receiving(&self, group: GroupId, min_term: Term) -> Option<LogIndex> {
        common::snapshots::highest_of(&self.received, group, min_term)
    }

    fn take_received(&mut self) -> Vec<Received> {
        std::mem::take(&mut self.received)
    }

    fn release(&mut self, entries: Vec<Entry>) {
        drop(entries);
    }

    fn maintain(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn wants_sync(&self) -> bool {
        self.snapshot_unsynced
    }

    fn groups_holding_old_segments(&self) -> Vec<(GroupId, LogIndex)> {
        Vec::new()
    }
}

/// A message on its way: (due time, sender, receiver) → what it carries (None: a keepalive,
/// an empty batch).
type InFlight = BTreeMap<(u64, u64), (u64, u64, Option<Envelope>)>;

/// The network: messages in flight, and which pairs of nodes are cut off.
struct Wires {
    in_flight: InFlight,
    /// Orders messages due at the same time.
    sent: u64,
    cut: BTreeSet<(u64, u64)>,
    drop_permille: u64,
    delay_units_max: u64,
    /// Messages a link (sender, receiver) holds in flight before it refuses more.
    link_messages_max: Option<u64>,
    /// Messages in flight per link.
    on_link: BTreeMap<(u64, u64), u64>,
    /// Sends refused because their link was full.
    refused: u64,
    rng: Prng,
    now: Now,
    /// Per node, the peers that restarted since it last asked (`CoreNet::take_renewed`).
    renewed: BTreeMap<u64, BTreeSet<u64>>,
    /// Heartbeats that told a follower to go quiet.
    quiet_heartbeats: u64,
}

impl Wires {
    /// Put `what` on the link from `from` to `to`, unless the link drops it.
    fn put(&mut self, from: u64, to: u64, what: Option<Envelope>) {
        let drop_permille = self.drop_permille;
        if self.rng.chance(drop_permille, 1000) {
            return;
        }
        let due = self.now.get() + 1 + self.rng.below(self.delay_units_max);
        self.sent += 1;
        let order = self.sent;
        self.in_flight.insert((due, order), (from, to, what));
        *self.on_link.entry((from, to)).or_default() += 1;
    }
}

struct SimNet {
    from: u64,
    wires: Rc<RefCell<Wires>>,
}

impl CoreNet for SimNet {
    fn send(&mut self, envelope: Envelope) -> bool {
        let mut wires = self.wires.borrow_mut();
        let to = envelope.message.to.0;
        let on_link = wires.on_link.get(&(self.from, to)).copied().unwrap_or(0);
        if wires.link_messages_max.is_some_and(|max| on_link >= max) {
            wires.refused += 1;
            return false;
        }
        if matches!(&envelope.message.body, MessageBody::Heartbeat(h) if h.quiesce) {
            wires.quiet_heartbeats += 1;
        }
        wires.put(self.from, to, Some(envelope));
        true
    }

    fn take_renewed(&mut self) -> Vec<u64> {
        let mut wires = self.wires.borrow_mut();
        let renewed = wires.renewed.remove(&self.from).unwrap_or_default();
        renewed.into_iter().collect()
    }

    fn say(&mut self, _says: SenderSays) {}

    /// As the transport does: an empty batch to each peer with nothing on its link.
    fn keep_alive(&mut self) {
        let mut wires = self.wires.borrow_mut();
        for to in (1..=NODES).filter(|&to| to != self.from) {
            if wires.on_link.get(&(self.from, to)).is_none_or(|&n| n == 0) {
                wires.put(self.from, to, None);
            }
        }
    }
}

impl SimLog {
    /// Whether the disk is full now: in seeds that have full disks, a stage sometimes finds
    /// it so, for up to three election timeouts.
    fn disk_full(&mut self) -> bool {
        if !self.full_disk.enabled {
            return false;
        }
        let now = self.now.get();
        if now < self.full_until {
            return true;
        }
        if now < self.full_disk.until && self.rng.borrow_mut().chance(1, 400) {
            self.full_until = now + 1 + self.rng.borrow_mut().below(300);
            return true;
        }
        false
    }

    /// Counts a stage refused for lack of room; false, as `stage` then says.
    fn refuse(&self) -> bool {
        self.full_disk
            .refusals
            .set(self.full_disk.refusals.get() + 1);
        false
    }

    fn write(&mut self, write: Write) -> io::Result<()> {
        write.apply(&mut self.staged).map_err(io::Error::other)?;
        self.written += 1;
        self.durable.borrow_mut().tail.push((self.written, write));
        Ok(())
    }
}

type Running = Pin<Box<dyn Future<Output = Result<Core<SimLog, SimNet>, String>>>>;

struct Node {
    id: u64,
    inbox: Inbox<Input>,
    /// None while the node is down.
    core: Option<Running>,
    /// What its log keeps across a crash.
    durable: Rc<RefCell<Durable>>,
    /// What a restart starts from.
    recovered: Disks,
    /// Stalled (frozen) until this time; inputs and ticks meanwhile wait.
    stalled_until: u64,
    ticks_owed: u64,
    held: Vec<Input>,
    /// What its core reported as lost entries: the simulated logs never forget what they
    /// synced, and the torn tail is only writes no ack waited for, so any report fails.
    lost_entries: Rc<RefCell<Vec<(u32, LostEntries)>>>,
    full_disk: FullDisk,
}

impl Node {
    /// Node `id` of a new cluster: every group bootstrapped with the voters, or (a spare)
    /// empty until it is added.
    fn bootstrap(
        id: u64,
        shape: &SimShape,
        now: &Now,
        wires: &Rc<RefCell<Wires>>,
        full_disk: &FullDisk,
    ) -> Node {
        let voters: Vec<NodeId> = (1..=VOTERS).map(NodeId).collect();
        let disks = (0..GROUPS)
            .map(|group| {
                let persisted = if id <= VOTERS {
                    Persisted::bootstrap(&voters)
                } else {
                    Persisted::empty()
                };
                (GroupId(group), Disk::from_persisted(persisted))
            })
            .collect();
        let mut node = Node {
            id,
            inbox: Inbox::new(1),
            core: None,
            durable: Rc::default(),
            recovered: disks,
            stalled_until: 0,
            ticks_owed: 0,
            held: Vec::new(),
            lost_entries: Rc::default(),
            full_disk: full_disk.clone(),
        };
        node.start(shape, now, wires);
        node
    }

    /// Start (or restart) the node's core from what its log kept, as a node recovers from
    /// its WAL and snapshot files.
    fn start(&mut self, shape: &SimShape, now: &Now, wires: &Rc<RefCell<Wires>>) {
        let (id, seed) = (self.id, shape.seed);
        let mut config = Config::new(NodeId(id));
        config.lease_reads = shape.lease_reads;
        config.quiesce = shape.quiesce;
        // Its peers' connections to it are new: they wake the quiet groups it led.
        let mut wires_now = wires.borrow_mut();
        for peer in (1..=NODES).filter(|&peer| peer != id) {
            wires_now.renewed.entry(peer).or_default().insert(id);
        }
        drop(wires_now);
        let disks = std::mem::take(&mut self.recovered);
        *self.durable.borrow_mut() = Durable {
            disks: disks.clone(),
            tail: Vec::new(),
        };
        let groups = disks
            .iter()
            .map(|(&group, disk)| {
                let mut persisted = disk.to_persisted();
                // As the WAL's recovery does (`WalLog::recover`).
                persisted.hard_state = persisted
                    .hard_state
                    .under_snapshot(&persisted.snapshot.meta);
                let kv = if persisted.snapshot.data.is_empty() {
                    KvStore::new()
                } else {
                    KvStore::decode_snapshot(&persisted.snapshot.data).expect("a snapshot we took")
                };
                let replica_seed = seed ^ (id << 32) ^ u64::from(group.0) ^ now.get() << 40;
                let replica = Replica::new(config.clone(), replica_seed, persisted).unwrap();
                let mut state = Group::new(replica, Box::new(|_| String::new()));
                state.kv = kv;
                (group.0, state)
            })
            .collect();
        let shape = CoreShape {
            node_id: id,
            core: 0,
            cores: 1,
            groups_total: GROUPS,
            sync: true,
            snapshot_entries: 40,
            snapshot_log_bytes: 0,
            snapshot_stream: StreamConfig {
                chunk_bytes: 512,
                window_chunks: 4,
                peer_window_chunks: 8,
                stall_ticks: 10,
                abandon_ticks: 100,
                bytes_max: SNAPSHOT_BYTES_MAX,
            },
            leader_balance_margin: Some(0),
            balance_every_ticks: 20,
            kv_quota_bytes: 0,
            tick_length: None,
        };
        let log = SimLog {
            now: Rc::clone(now),
            rng: Rc::new(RefCell::new(Prng::new(seed ^ id ^ now.get() << 40))),
            sync_delay_units_max: 8,
            staged: disks,
            written: 0,
            durable: Rc::clone(&self.durable),
            encoded: Vec::new(),
            received: Vec::new(),
            snapshot_unsynced: false,
            full_disk: self.full_disk.clone(),
            full_until: 0,
        };
        let net = SimNet {
            from: id,
            wires: Rc::clone(wires),
        };
        let inbox = Inbox::new(1 << 20);
        let lost_entries = Rc::clone(&self.lost_entries);
        let hooks = Hooks {
            on_lost_entries: Box::new(move |group, lost| {
                lost_entries.borrow_mut().push((group, *lost));
            }),
            ..Hooks::quiet()
        };
        let core = Core::new(shape, groups, log, net, inbox.clone(), hooks);
        self.inbox = inbox;
        self.core = Some(Box::pin(core.run()));
        self.stalled_until = 0;
        self.ticks_owed = 0;
        self.held.clear();
    }

    /// SIGKILL: the core and what the log did not keep are gone; the log keeps what its
    /// syncs made durable and `kept` of the writes after them.
    fn crash(&mut self, kept: usize) {
        self.recovered = self.durable.borrow_mut().crash(kept);
        self.core = None;
        self.inbox.close();
        self.held.clear();
    }

    fn is_up(&self) -> bool {
        self.core.is_some()
    }

    fn stalled(&self, now: u64) -> bool {
        now < self.stalled_until
    }

    fn input(&mut self, now: u64, input: Input) {
        if !self.is_up() {
            return;
        }
        // After a stall, what it owes comes first.
        if self.stalled(now) || self.ticks_owed > 0 || !self.held.is_empty() {
            self.held.push(input);
        } else {
            self.inbox.push_now(input);
        }
    }

    /// Run the core until it waits; a core that returns has failed.
    fn poll(&mut self, now: u64) -> Result<(), String> {
        if self.stalled(now) || !self.is_up() {
            return Ok(());
        }
        // As a node's tick clock does: the ticks a stall owes come before its inputs.
        for _ in 0..std::mem::take(&mut self.ticks_owed) {
            self.inbox.push_now(Input::Tick);
        }
        for input in self.held.drain(..) {
            self.inbox.push_now(input);
        }
        let mut cx = Context::from_waker(Waker::noop());
        let core = self.core.as_mut().expect("up");
        let polled = core.as_mut().poll(&mut cx);
        if let Some((group, lost)) = self.lost_entries.borrow().first() {
            return Err(format!(
                "node {} group {group}: lost entries reported, yet no log here forgets what \
                 it synced: {lost:?}",
                self.id
            ));
        }
        match polled {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(_)) => Err(format!("node {} stopped", self.id)),
            Poll::Ready(Err(error)) => Err(format!("node {} failed: {error}", self.id)),
        }
    }
}

/// A request on its way.
struct Pending {
    key: usize,
    asked: Asked,
    request: Request,
    invoked_at: u64,
    attempt_at: u64,
    node: u64,
}

struct SimClient {
    index: u64,
    rng: Prng,
    /// Connection per node: (its id there, the node's answers to it, what they weigh until
    /// taken).
    conns: Vec<(u64, Inbox<Vec<Response>>, AnswersHeld)>,
    /// The id in use per tag (a group, or [`READS`]), as the real client keeps them.
    ids: HashMap<u64, u64>,
    /// Ids drawn so far.
    ids_drawn: u64,
    /// The last sequence used per id.
    sequences: HashMap<u64, u64>,
    /// Ids with a request applied: their group holds a session for them.
    applied: BTreeSet<u64>,
    leaders: HashMap<u32, u64>,
    last_seen: Vec<Option<u64>>,
    count: u64,
    pending: Option<Pending>,
    history: Vec<(usize, Operation<u64>)>,
    /// What happened to this client worth counting.
    done: Done,
}

/// The tag of the id reads use (they never touch a session); groups are tags 0, 1, ….
const READS: u64 = u64::MAX;

impl SimClient {
    /// Client `index`, with a connection to every node.
    fn connect(index: u64, seed: u64, nodes: &mut [Node]) -> SimClient {
        let conns = nodes
            .iter_mut()
            .map(|node| {
                let conn = index;
                let outbox = Inbox::new(1 << 20);
                let held = AnswersHeld::default();
                node.inbox.push_now(Input::Connected {
                    conn,
                    outbox: outbox.clone(),
                    held: held.clone(),
                });
                (conn, outbox, held)
            })
            .collect();
        SimClient {
            index,
            rng: Prng::new(seed.wrapping_add(index)),
            conns,
            ids: HashMap::new(),
            ids_drawn: 0,
            sequences: HashMap::new(),
            applied: BTreeSet::new(),
            done: Done::default(),
            leaders: HashMap::new(),
            last_seen: vec![None; KEYS],
            count: 0,
            pending: None,
            history: Vec::new(),
        }
    }

    /// The client id in use for `tag`: one per group, and one for the reads.
    fn id_for(&mut self, tag: u64) -> u64 {
        if let Some(&id) = self.ids.get(&tag) {
            return id;
        }
        self.ids_drawn += 1;
        let id = self.index * 1_000_000 + self.ids_drawn;
        self.ids.insert(tag, id);
        id
    }

    /// The group forgot the session of `tag`'s id: later requests take a fresh one, as
    /// the real client's `renew` does.
    fn renew(&mut self, tag: u64) {
        self.ids.remove(&tag);
    }

    fn start(&mut self, now: u64, keys: &[Bytes], nodes: &mut [Node]) {
        let key = self.rng.below(keys.len() as u64) as usize;
        let name = keys[key].clone();
        self.count += 1;
        let new = self.index * VALUES_PER_CLIENT + self.count;
        let (asked, op) = random_op(&mut self.rng, name, new, self.last_seen[key]);
        let group = group_of(&keys[key], GROUPS);
        let tag = if matches!(asked, Asked::Read) {
            READS
        } else {
            u64::from(group)
        };
        let client_id = self.id_for(tag);
        let sequence = self.sequences.entry(client_id).or_insert(0);
        *sequence += 1;
        // As the real client: one request at a time, so every earlier one was answered or
        // given up; but until the group applied one request of this id it holds no session
        // for it and must hear "nothing acknowledged".
        let first_unacked = if self.applied.contains(&client_id) {
            *sequence
        } else {
            1
        };
        let request = Request {
            forward_to: 0,
            command: Command {
                client_id,
                sequence: *sequence,
                first_unacked,
                ops: smallvec![op],
            },
            consistency: Consistency::Linearizable,
        };
        let node = match self.leaders.get(&group) {
            Some(&leader) => leader,
            None => 1 + self.rng.below(NODES),
        };
        self.pending = Some(Pending {
            key,
            asked,
            request,
            invoked_at: now,
            attempt_at: now,
            node,
        });
        self.send(now, nodes);
    }

    fn send(&mut self, now: u64, nodes: &mut [Node]) {
        let pending = self.pending.as_mut().expect("a request");
        pending.attempt_at = now;
        let conn = self.conns[(pending.node - 1) as usize].0;
        let input = Input::Requests {
            conn,
            requests: vec![Ok(pending.request.clone())],
        };
        nodes[(pending.node - 1) as usize].input(now, input);
    }

    /// Record the pending request's end: answered with `result`, or not (`None`).
    fn finish(&mut self, now: u64, result: Option<OpResult>) -> Result<(), String> {
        let pending = self.pending.take().expect("a request");
        let answered_at = result.is_some().then_some(now);
        let Some(op) = pending.asked.recorded(result)? else {
            return Ok(());
        };
        if answered_at.is_some() {
            self.last_seen[pending.key] = seen(&op);
        }
        self.history.push((
            pending.key,
            Operation {
                client: self.index,
                op,
                invoked_at: pending.invoked_at,
                answered_at,
            },
        ));
        Ok(())
    }

    /// Take the answers the nodes gave; act on the one to the pending request, if any.
    fn receive(&mut self, now: u64, nodes: &mut [Node]) -> Result<(), String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut answers = Vec::new();
        for (_, outbox, held) in &self.conns {
            let mut batches = Vec::new();
            if outbox.poll_take_all(&mut cx, &mut batches).is_ready() {
                let taken = batches.into_iter().flatten();
                let start = answers.len();
                answers.extend(taken);
                held.release(answers[start..].iter().map(answer_weight).sum());
            }
        }
        for response in answers {
            let Some(pending) = &mut self.pending else {
                continue;
            };
            let command = &pending.request.command;
            if (response.client_id, response.sequence) != (command.client_id, command.sequence) {
                continue; // a late answer to an attempt already given up
            }
            let group = group_of(pending.request.command.ops[0].key(), GROUPS);
            match response.outcome {
                Outcome::Results(results) => {
                    self.leaders.insert(group, pending.node);
                    self.applied.insert(command.client_id);
                    return self.finish(now, Some(results[0].clone()));
                }
                Outcome::NotLeader { leader, .. } => {
                    pending.node = if leader == 0 {
                        1 + self.rng.below(NODES)
                    } else {
                        leader
                    };
                    self.leaders.remove(&group);
                    self.send(now, nodes);
                }
                Outcome::Error {
                    code: ErrorCode::Busy,
                    ..
                } => self.send(now, nodes),
                Outcome::Error {
                    code: ErrorCode::SessionExpired,
                    ..
                } => {
                    self.renew(u64::from(group));
                    self.done.sessions_renewed += 1;
                    return self.finish(now, None);
                }
                Outcome::Error { code, message } => {
                    return Err(format!("client {}: {code:?}: {message}", self.index));
                }
            }
        }
        Ok(())
    }

    /// Try another node after an attempt's time, give up after a request's.
    /// Gives up on the pending request past its patience, which is an error for one made
    /// from `live_from` on (the cluster has settled: every request must be answered).
    fn check_time(&mut self, now: u64, nodes: &mut [Node], live_from: u64) -> Result<(), String> {
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        let patience = if self.index % 2 == 1 {
            REQUEST_UNITS
        } else {
            REQUEST_UNITS_IMPATIENT
        };
        if now >= pending.invoked_at + patience {
            if pending.invoked_at >= live_from {
                return Err(format!(
                    "client {}: a request made at {}, with every fault healed since {live_from}, \
                     got no answer by {now}",
                    self.index, pending.invoked_at
                ));
            }
            return self.finish(now, None);
        }
        if now >= pending.attempt_at + ATTEMPT_UNITS {
            pending.node = pending.node % NODES + 1;
            self.send(now, nodes);
        }
        Ok(())
    }
}

/// What a seed varies.
#[derive(Debug)]
struct SimShape {
    seed: u64,
    steps: u64,
    crashes: bool,
    member_changes: bool,
    lease_reads: bool,
    drop_permille: u64,
    delay_units_max: u64,
    link_messages_max: Option<u64>,
    /// Each node's tick clock runs up to this many thousandths slower or faster than
    /// `TICK_UNITS`: at most what leases absorb.
    clock_skew_permille_max: u64,
    full_disks: bool,
    /// Idle groups go quiet (`raft::Config::quiesce`): the cores keep each other alive.
    quiesce: bool,
}

impl SimShape {
    fn for_seed(seed: u64) -> SimShape {
        let mut rng = Prng::new(seed ^ 0xC0DE);
        SimShape {
            seed,
            steps: 20_000 + rng.below(20_000),
            crashes: rng.chance(2, 3),
            member_changes: rng.chance(1, 2),
            lease_reads: rng.chance(1, 2),
            drop_permille: rng.below(60),
            delay_units_max: 1 + rng.below(8),
            link_messages_max: rng.chance(1, 3).then(|| 2 + rng.below(30)),
            clock_skew_permille_max: rng.below(lease_safe_skew_permille() + 1),
            full_disks: rng.chance(1, 2),
            quiesce: rng.chance(1, 2),
        }
    }
}

/// The widest clock skew leases absorb with the core's default election timeout and lease
/// margin.
fn lease_safe_skew_permille() -> u64 {
    let config = Config::new(NodeId(1));
    cohort::sim::lease_safe_skew_permille(
        config.election_timeout_ticks,
        config.lease_clock_drift_ticks,
    )
    .expect("leases have a margin")
}

/// How many operations a run checked, for the sweep's summary.
#[derive(Debug, Default)]
struct Done {
    operations: usize,
    unanswered: usize,
    stalls: u64,
    cuts: u64,
    /// Sends refused by a full link.
    sends_refused: u64,
    /// Stages refused by a full disk.
    stages_refused: u64,
    handovers: u64,
    /// Of those, the ones that handed the group over.
    handovers_done: u64,
    crashes: u64,
    power_losses: u64,
    member_changes: u64,
    /// Replicas whose state was found the same as another's at the same applied index.
    replicas_compared: u64,
    sessions_renewed: u64,
    /// Heartbeats that told a follower to go quiet (seeds with `SimShape::quiesce`).
    quiet_heartbeats: u64,
    writes_answered: usize,
    reads_answered: usize,
}

impl Done {
    fn add(&mut self, other: &Done) {
        self.operations += other.operations;
        self.unanswered += other.unanswered;
        self.stalls += other.stalls;
        self.cuts += other.cuts;
        self.sends_refused += other.sends_refused;
        self.stages_refused += other.stages_refused;
        self.handovers += other.handovers;
        self.handovers_done += other.handovers_done;
        self.crashes += other.crashes;
        self.power_losses += other.power_losses;
        self.replicas_compared += other.replicas_compared;
        self.member_changes += other.member_changes;
        self.sessions_renewed += other.sessions_renewed;
        self.quiet_heartbeats += other.quiet_heartbeats;
        self.writes_answered += other.writes_answered;
        self.reads_answered += other.reads_answered;
    }
}

fn run(shape: &SimShape) -> Result<Done, String> {
    let now: Now = Rc::new(Cell::new(0));
    let mut rng = Prng::new(shape.seed);
    let wires = Rc::new(RefCell::new(Wires {
        in_flight: InFlight::new(),
        sent: 0,
        cut: BTreeSet::new(),
        drop_permille: shape.drop_permille,
        delay_units_max: shape.delay_units_max,
        link_messages_max: shape.link_messages_max,
        on_link: BTreeMap::new(),
        refused: 0,
        rng: Prng::new(shape.seed ^ 0x3E7),
        now: Rc::clone(&now),
        renewed: BTreeMap::new(),
        quiet_heartbeats: 0,
    }));
    let full_disk = FullDisk {
        enabled: shape.full_disks,
        until: shape.steps,
        refusals: Rc::default(),
    };
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|id| Node::bootstrap(id, shape, &now, &wires, &full_disk))
        .collect();
    let mut clocks = skewed_clocks(NODES, TICK_UNITS, shape.clock_skew_permille_max, shape.seed);
    let keys: Vec<Bytes> = (0..KEYS).map(|k| Bytes::from(format!("key-{k}"))).collect();
    let mut clients: Vec<SimClient> = (1..=CLIENTS)
        .map(|index| SimClient::connect(index, shape.seed, &mut nodes))
        .collect();
    let mut done = Done::default();
    let mut membership = Membership::new();
    let mut transfers = Vec::new();
    let quiet_from = shape.steps;
    // Time enough after the faults end for any election, catch-up and handover to finish:
    // from here on a request that gets no answer is a liveness failure.
    let live_from = quiet_from + 1_500;
    let end = shape.steps + 4_000;
    // The nodes down, if any, and when they restart.
    let mut down: Option<(Vec<usize>, u64)> = None;
    for t in 1..=end {
        now.set(t);
        if t < quiet_from {
            nemesis(&mut rng, t, (&mut nodes, &wires), &mut transfers, &mut done);
            if shape.member_changes && rng.chance(5, 10_000) {
                membership.ask(&mut rng, t, &mut nodes);
            }
            if down.is_none() && shape.crashes && rng.chance(3, 10_000) {
                // Now and then a power loss: every node at once, each keeping what it
                // synced and some of what it wrote after; else one node.
                let crashed: Vec<usize> = if rng.chance(1, 8) {
                    done.power_losses += 1;
                    (0..nodes.len()).filter(|&i| nodes[i].is_up()).collect()
                } else {
                    vec![rng.below(NODES) as usize]
                };
                for &index in &crashed {
                    let unsynced = nodes[index].durable.borrow().tail.len() as u64;
                    nodes[index].crash(rng.below(unsynced + 1) as usize);
                    done.crashes += 1;
                }
                down = Some((crashed, t + 100 + rng.below(500)));
            }
        } else if t == quiet_from {
            wires.borrow_mut().cut.clear();
            wires.borrow_mut().drop_permille = 0;
        }
        if let Some((crashed, at)) = &down
            && (t >= *at || t >= quiet_from)
        {
            for &index in crashed {
                let node = &mut nodes[index];
                node.start(shape, &now, &wires);
                for client in &clients {
                    let (conn, outbox, held) = client.conns[index].clone();
                    node.inbox.push_now(Input::Connected { conn, outbox, held });
                }
            }
            down = None;
        }
        deliver(t, &mut nodes, &wires);
        for (node, clock) in nodes.iter_mut().zip(&mut clocks) {
            let ticks = clock.ticks_due(t);
            if !node.is_up() {
                continue;
            }
            if node.stalled(t) {
                node.ticks_owed += ticks;
            } else {
                for _ in 0..ticks {
                    node.inbox.push_now(Input::Tick);
                }
            }
        }
        for client in &mut clients {
            client.check_time(t, &mut nodes, live_from)?;
            if client.pending.is_none() && t + REQUEST_UNITS < end {
                client.start(t, &keys, &mut nodes);
            }
        }
        for node in &mut nodes {
            node.poll(t)?;
        }
        for client in &mut clients {
            client.receive(t, &mut nodes)?;
        }
        membership.hear(&mut done);
        hear_transfers(&mut transfers, &mut done);
    }
    compare_replicas(&mut nodes, &now, end, &mut done)?;
    done.sends_refused = wires.borrow().refused;
    done.quiet_heartbeats = wires.borrow().quiet_heartbeats;
    done.stages_refused = full_disk.refusals.get();
    check_histories(clients, end, done)
}

/// Stop every node, then hold its groups' states side by side: replicas of a group that
/// applied up to the same index must hold the same state, byte for byte. A state machine
/// that diverged (an apply that is not deterministic, a retry applied twice on one replica)
/// would otherwise show only where a read happened to hit it.
fn compare_replicas(
    nodes: &mut [Node],
    now: &Now,
    end: u64,
    done: &mut Done,
) -> Result<(), String> {
    let mut states: BTreeMap<(u32, u64), (u64, Bytes)> = BTreeMap::new();
    for node in nodes.iter_mut() {
        let Some(mut running) = node.core.take() else {
            continue;
        };
        node.inbox.push_now(Input::Stop);
        let mut cx = Context::from_waker(Waker::noop());
        let mut stopped = None;
        for step in 1..=1_000 {
            // Time goes on, so that the syncs of its last turns end.
            now.set(end + step * 1_000);
            if let Poll::Ready(result) = running.as_mut().poll(&mut cx) {
                stopped = Some(result.map_err(|e| format!("node {} failed: {e}", node.id))?);
                break;
            }
        }
        let core = stopped.ok_or_else(|| format!("node {} did not stop", node.id))?;
        for (&group, g) in core.groups() {
            let state = g.kv.encode_snapshot();
            let at = g.kv.applied_index();
            match states.get(&(group, at)) {
                None => {
                    states.insert((group, at), (node.id, state));
                }
                Some((other, held)) if *held != state => {
                    return Err(format!(
                        "group {group}: nodes {other} and {} both applied up to {at} and hold \
                         different states",
                        node.id
                    ));
                }
                Some(_) => done.replicas_compared += 1,
            }
        }
    }
    Ok(())
}

/// Give up what is still pending at `end`, then check every key's history.
fn check_histories(clients: Vec<SimClient>, end: u64, mut done: Done) -> Result<Done, String> {
    let mut history = Vec::new();
    for mut client in clients {
        if client.pending.is_some() {
            client.finish(end, None)?;
        }
        history.append(&mut client.history);
        done.sessions_renewed += client.done.sessions_renewed;
    }
    for k in 0..KEYS {
        let ops: Vec<Operation<u64>> = history
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, op)| op.clone())
            .collect();
        done.operations += ops.len();
        done.unanswered += ops.iter().filter(|o| o.answered_at.is_none()).count();
        done.writes_answered += ops
            .iter()
            .filter(|o| o.answered_at.is_some() && !matches!(o.op, RegisterOp::Read { .. }))
            .count();
        done.reads_answered += ops
            .iter()
            .filter(|o| o.answered_at.is_some() && matches!(o.op, RegisterOp::Read { .. }))
            .count();
        check_register(&ops, 10_000_000).map_err(|e| format!("key-{k}: {e}"))?;
    }
    Ok(done)
}

/// Hand the messages due now to their nodes, unless the pair is cut off. A stalled node
/// takes nothing off its links, as a frozen process reads none of its sockets: what is due
/// to it stays on its link until the stall ends, and fills a bounded link.
fn deliver(t: u64, nodes: &mut [Node], wires: &Rc<RefCell<Wires>>) {
    let due = {
        let mut wires = wires.borrow_mut();
        let later = wires.in_flight.split_off(&(t + 1, 0));
        std::mem::replace(&mut wires.in_flight, later)
    };
    for ((_, order), (from, to, envelope)) in due {
        let node = &mut nodes[(to - 1) as usize];
        let mut wires = wires.borrow_mut();
        if node.is_up() && node.stalled(t) {
            let message = (from, to, envelope);
            wires.in_flight.insert((node.stalled_until, order), message);
            continue;
        }
        *wires.on_link.get_mut(&(from, to)).expect("counted") -= 1;
        if wires.cut.contains(&(from, to)) {
            continue;
        }
        drop(wires);
        let input = Input::Peer {
            from,
            says: SenderSays::default(),
            envelopes: envelope.into_iter().collect(),
        };
        node.input(t, input);
    }
}

/// Now and then: cut a node off or heal, stall a node, or ask for a handover.
fn nemesis(
    rng: &mut Prng,
    t: u64,
    (nodes, wires): (&mut [Node], &Rc<RefCell<Wires>>),
    transfers: &mut Vec<Inbox<TransferOutcome>>,
    done: &mut Done,
) {
    let roll = rng.below(10_000);
    let id = 1 + rng.below(NODES);
    match roll {
        0..=4 => {
            let mut wires = wires.borrow_mut();
            wires.cut.clear();
            for other in (1..=NODES).filter(|&o| o != id) {
                wires.cut.insert((id, other));
                wires.cut.insert((other, id));
            }
            done.cuts += 1;
        }
        5..=14 => wires.borrow_mut().cut.clear(),
        15..=19 => {
            let node = &mut nodes[(id - 1) as usize];
            if !node.stalled(t) {
                node.stalled_until = t + 50 + rng.below(400);
                done.stalls += 1;
            }
        }
        20..=22 => {
            let group = rng.below(u64::from(GROUPS)) as u32;
            let to = 1 + rng.below(NODES);
            let reply = Inbox::new(4);
            transfers.push(reply.clone());
            let input = Input::TransferLeader { group, to, reply };
            nodes[(id - 1) as usize].input(t, input);
            done.handovers += 1;
        }
        _ => {}
    }
}

/// Counts the handovers that ended with the node asked for leading (`done.handovers` counts
/// those asked), and forgets every answered one.
fn hear_transfers(transfers: &mut Vec<Inbox<TransferOutcome>>, done: &mut Done) {
    let mut cx = Context::from_waker(Waker::noop());
    transfers.retain(|reply| {
        let mut outcomes = Vec::new();
        if reply.poll_take_all(&mut cx, &mut outcomes).is_pending() {
            return true;
        }
        let led = |o: &TransferOutcome| matches!(o, TransferOutcome::Done { .. });
        done.handovers_done += outcomes.iter().filter(|o| led(o)).count() as u64;
        false
    });
}

/// What the simulation knows of each group's members (from the outcomes of the changes it
/// asked for), and the changes whose outcome it waits for.
struct Membership {
    /// Per group: voters and learners.
    configs: BTreeMap<u32, (BTreeSet<u64>, BTreeSet<u64>)>,
    /// (group, node) pairs removed: never added back (a node id is not reused).
    removed: BTreeSet<(u32, u64)>,
    waiting: Vec<(u32, Inbox<MemberOutcome>)>,
}

impl Membership {
    fn new() -> Membership {
        let voters: BTreeSet<u64> = (1..=VOTERS).collect();
        Membership {
            configs: (0..GROUPS)
                .map(|g| (g, (voters.clone(), BTreeSet::new())))
                .collect(),
            removed: BTreeSet::new(),
            waiting: Vec::new(),
        }
    }

    /// Ask every node (only the group's leader acts) to add a node as a learner, promote a
    /// learner, or remove a voter while more than three vote.
    fn ask(&mut self, rng: &mut Prng, t: u64, nodes: &mut [Node]) {
        let group = rng.below(u64::from(GROUPS)) as u32;
        let node = 1 + rng.below(NODES);
        let (voters, learners) = &self.configs[&group];
        let op = if self.removed.contains(&(group, node)) {
            return;
        } else if learners.contains(&node) {
            MemberOp::Promote
        } else if voters.contains(&node) {
            if voters.len() as u64 <= VOTERS {
                return;
            }
            MemberOp::Remove
        } else {
            MemberOp::AddLearner {
                address: format!("sim-{node}:1"),
            }
        };
        for asked in nodes.iter_mut() {
            let reply = Inbox::new(4);
            let change = MemberChange {
                group,
                node,
                op: op.clone(),
            };
            asked.input(
                t,
                Input::ChangeMember {
                    change,
                    reply: reply.clone(),
                },
            );
            self.waiting.push((group, reply));
        }
    }

    /// Learn the outcomes that came.
    fn hear(&mut self, done: &mut Done) {
        let mut cx = Context::from_waker(Waker::noop());
        let configs = &mut self.configs;
        let removed = &mut self.removed;
        self.waiting.retain(|(group, reply)| {
            let mut outcomes = Vec::new();
            if reply.poll_take_all(&mut cx, &mut outcomes).is_pending() {
                return true;
            }
            for outcome in outcomes {
                if let MemberOutcome::Done { voters, learners } = outcome {
                    let config = configs.get_mut(group).expect("a group");
                    for gone in config.0.iter().chain(&config.1) {
                        if !voters.contains(gone) && !learners.contains(gone) {
                            removed.insert((*group, *gone));
                        }
                    }
                    *config = (voters.into_iter().collect(), learners.into_iter().collect());
                    done.member_changes += 1;
                }
            }
            false
        });
    }
}

/// A number from the environment variable `name`, if set.
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The seeds of part `part` of `parts`: `COHORT_CORE_SIM_SEED` alone (in part 0), or a
/// share of `COHORT_CORE_SIM_SEEDS` seeds (default 48) from `COHORT_CORE_SIM_FROM` (0).
fn seeds(part: u64, parts: u64) -> Vec<u64> {
    if let Some(seed) = env_number("COHORT_CORE_SIM_SEED") {
        return if part == 0 { vec![seed] } else { Vec::new() };
    }
    let count = env_number("COHORT_CORE_SIM_SEEDS").unwrap_or(48);
    let from = env_number("COHORT_CORE_SIM_FROM").unwrap_or(0);
    (from + count * part / parts..from + count * (part + 1) / parts).collect()
}

/// Run part `part` of `parts` of the sweep (the test runner spreads the parts over cores).
fn sweep(part: u64, parts: u64) {
    let mut total = Done::default();
    let seeds = seeds(part, parts);
    for &seed in &seeds {
        let shape = SimShape::for_seed(seed);
        // A panic (a broken assertion of the core) fails this seed, named, as an error does.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&shape)))
            .unwrap_or_else(|payload| {
                Err(format!(
                    "panicked: {}",
                    cohort::sim::panic_message(payload.as_ref())
                ))
            });
        match outcome {
            Ok(done) => {
                // A run whose writes, or reads, all failed would check little.
                assert!(done.writes_answered > 100, "seed {seed}: {done:?}");
                assert!(done.reads_answered > 100, "seed {seed}: {done:?}");
                total.add(&done);
            }
            Err(error) => panic!(
                "CORE SEED={seed} failed: {error}\nshape: {shape:?}\nreplay: \
                 COHORT_CORE_SIM_SEED={seed} cargo test --test core_sim -- --nocapture"
            ),
        }
    }
    eprintln!("seeds {:?}: {total:?}", seeds.first().zip(seeds.last()));
    // A sweep in which nothing happens proves nothing.
    if seeds.len() >= 12 {
        assert!(total.stalls > 0 && total.cuts > 0 && total.handovers > 0);
        assert!(total.crashes > 0 && total.member_changes > 0 && total.power_losses > 0);
        assert!(total.replicas_compared > 0 && total.handovers_done > 0);
        assert!(total.stages_refused > 0 && total.quiet_heartbeats > 0);
    }
}

#[test]
fn client_histories_through_the_real_core_loop_stay_linearizable_part_1_of_2() {
    sweep(0, 2);
}

#[test]
fn client_histories_through_the_real_core_loop_stay_linearizable_part_2_of_2() {
    sweep(1, 2);
}
