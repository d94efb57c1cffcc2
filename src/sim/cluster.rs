//! Replicas of one group on simulated nodes, driven step by step: the harness for
//! scenario tests and for the randomized simulator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::raft::{
    AppendResponse, Config, Entry, EntryKind, LogIndex, LostEntries, Message, MessageBody, NodeId,
    Persisted, Prng, ProposeError, Proposed, ReadError, ReadState, Ready, Replica, Role, Term,
};

use super::checker::Checker;
use super::disk::{Disk, StateMachine};
use super::liveness::Liveness;
use super::network::{Network, NetworkFaults};

/// One simulated machine: a replica while it is up, and always its disk.
pub struct SimNode {
    pub id: NodeId,
    pub replica: Option<Replica>,
    pub disk: Disk,
    pub state: StateMachine,
    /// Payloads of the normal entries this node applied, by index.
    pub applied: BTreeMap<LogIndex, Bytes>,
    /// Reads answered here: ctx → index.
    pub reads_answered: BTreeMap<u64, LogIndex>,
    /// Readies handed out and not yet durable, oldest first, each with the time its write
    /// completes (never before an older one's: writes become durable in order).
    in_flight: VecDeque<(Ready, u64)>,
    recorded_commit: LogIndex,
    led_term: Term,
    restarts: u64,
}

impl SimNode {
    /// What `message` promises is on this node's disk as it goes out
    /// ([`Disk::holds_what_is_promised`]), and an append acknowledged in the node's current
    /// term holds, on disk, the entry its log holds at that index: a longer stale log on disk
    /// would pass the index check while the rewrite it acknowledges is not durable yet.
    fn holds_what_is_promised(&self, message: &Message) -> Result<(), String> {
        self.disk.holds_what_is_promised(message)?;
        let MessageBody::AppendResponse(AppendResponse {
            reject: false,
            index,
            ..
        }) = &message.body
        else {
            return Ok(());
        };
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        // At the snapshot's index, its term (found in review: no entry there, so a snapshot
        // acknowledged before it was durable passed over a longer stale log on disk).
        let in_log = (replica.entry(*index).map(|e| e.term))
            .or_else(|| (replica.snapshot_index() == *index).then(|| replica.snapshot().meta.term));
        let on_disk = self.disk.term_at(*index);
        let current = message.term == replica.term() && message.term == self.disk.hard_state.term;
        match in_log {
            Some(term) if current && on_disk != Some(term) => Err(format!(
                "node {} acknowledged entry {index} of term {term} to {} before it was durable \
                 (its disk holds {on_disk:?} there)",
                self.id, message.to
            )),
            _ => Ok(()),
        }
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// A Ready that asks no sync (a node writes its records without syncing them, and sends
    /// what waits for them at once) holds nothing a crash may not lose: no entries, no
    /// snapshot, no new term or vote. The disk here keeps every Ready's writes alike, so
    /// only this tells a Ready that should have asked.
    fn asks_no_sync_rightly(&self, ready: &Ready) -> Result<(), String> {
        let last = (self.in_flight.iter().rev())
            .find_map(|(earlier, _)| earlier.hard_state())
            .unwrap_or(self.disk.hard_state);
        let votes_anew = (ready.hard_state())
            .is_some_and(|hard| (hard.term, hard.vote) != (last.term, last.vote));
        if ready.must_sync()
            || !(votes_anew || ready.snapshot().is_some() || !ready.entries().is_empty())
        {
            return Ok(());
        }
        Err(format!(
            "node {}: a Ready asks no sync but holds what a crash may not lose ({} entries, \
             a snapshot: {}, a new term or vote: {votes_anew})",
            self.id,
            ready.entries().len(),
            ready.snapshot().is_some()
        ))
    }
}

pub type ConfigFn = Box<dyn Fn(NodeId) -> Config>;

pub struct Cluster {
    pub nodes: Vec<SimNode>,
    pub network: Network,
    pub checker: Checker,
    pub rng: Prng,
    pub now: u64,
    /// Ready persistence completes after `0..=persist_delay_max` time units.
    pub persist_delay_max: u64,
    config: ConfigFn,
    seed: u64,
    next_read_ctx: u64,
    /// ctx → (node, highest index committed anywhere when asked).
    reads_asked: BTreeMap<u64, (NodeId, LogIndex)>,
    /// Chance that a node crashes right after handing out a Ready that must be synced,
    /// before the sync completes.
    pub crash_in_sync_window_permille: u64,
    /// Chance that a Ready's sync tears: its entries reach the disk and the hard state that
    /// came with them does not (a WAL keeps records up to a torn one), and the node crashes.
    pub torn_write_permille: u64,
    /// Crashes so far, whatever brought them on.
    pub crashes: u64,
    /// Readies handed out while another of the same node was in flight (pipelined).
    pub readies_pipelined: u64,
    /// The indexes of the client writes (normal entries with a payload) some node applied.
    pub writes_applied: BTreeSet<LogIndex>,
    /// The indexes of the configuration changes some node applied.
    pub conf_changes_applied: BTreeSet<LogIndex>,
    /// Print every delivered message from this time on (debugging a seed).
    pub trace_from: Option<u64>,
    /// Every follower a leader reported as having lost entries it acknowledged, with that
    /// leader. Only a disk that forgot what it made durable may cause one.
    pub lost_entries: Vec<(NodeId, LostEntries)>,
    /// What each node knows of the others' nodes, to wake quiet groups by.
    pub liveness: Liveness,
}

impl Cluster {
    /// `voters` nodes bootstrap the group (ids 1..=voters); `spares` more nodes (the next
    /// ids) start empty and can be added by conf changes.
    pub fn new(voters: u64, spares: u64, seed: u64, config: ConfigFn) -> Cluster {
        let initial: Vec<NodeId> = (1..=voters).map(NodeId).collect();
        let mut rng = Prng::new(seed);
        let mut nodes = Vec::new();
        for id in (1..=voters + spares).map(NodeId) {
            let persisted = if id.0 <= voters {
                Persisted::bootstrap(&initial)
            } else {
                Persisted::empty()
            };
            let replica = Replica::new(config(id), rng.next_u64(), persisted.clone())
                .expect("valid test config");
            nodes.push(SimNode {
                id,
                replica: Some(replica),
                disk: Disk::from_persisted(persisted),
                state: StateMachine::default(),
                applied: BTreeMap::new(),
                reads_answered: BTreeMap::new(),
                in_flight: VecDeque::new(),
                recorded_commit: LogIndex::ZERO,
                led_term: Term::ZERO,
                restarts: 0,
            });
        }
        Cluster {
            nodes,
            network: Network::new(NetworkFaults::NONE),
            checker: Checker::default(),
            rng,
            now: 0,
            persist_delay_max: 0,
            readies_pipelined: 0,
            writes_applied: BTreeSet::new(),
            conf_changes_applied: BTreeSet::new(),
            config,
            seed,
            next_read_ctx: 1,
            reads_asked: BTreeMap::new(),
            crash_in_sync_window_permille: 0,
            torn_write_permille: 0,
            crashes: 0,
            lost_entries: Vec::new(),
            liveness: Liveness::default(),
            trace_from: std::env::var("COHORT_SIM_TRACE_FROM")
                .ok()
                .and_then(|t| t.parse().ok()),
        }
    }

    /// LAN defaults with every feature on and small limits, for tests.
    pub fn test_config(id: NodeId) -> Config {
        let mut config = Config::new(id);
        config.append_entries_max = 8;
        config.inflight_appends_max = 4;
        config.snapshot_retry_ticks = 20;
        config
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[(id.0 - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id.0 - 1) as usize]
    }

    /// The replica of a node that is up.
    pub fn replica(&self, id: NodeId) -> &Replica {
        self.node(id)
            .replica
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is down"))
    }

    pub fn replica_mut(&mut self, id: NodeId) -> &mut Replica {
        self.node_mut(id)
            .replica
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} is down"))
    }

    /// The leader of the highest term among nodes that are up.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(Replica::id)
    }

    /// Every node that leads, in whichever term.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .map(Replica::id)
            .collect()
    }

    pub fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        self.replica_mut(id).campaign();
        self.after_input(id)
    }

    pub fn tick(&mut self, id: NodeId) -> Result<(), String> {
        let heard: Vec<NodeId> = (self.nodes.iter())
            .filter(|n| n.id != id && n.is_up() && !self.network.is_cut(n.id, id))
            .map(|n| n.id)
            .collect();
        let node = &mut self.nodes[(id.0 - 1) as usize];
        if let Some(replica) = node.replica.as_mut() {
            self.liveness.before_tick(id, replica, &heard);
            replica.tick();
            self.after_input(id)?;
        }
        Ok(())
    }

    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Result<Proposed, ProposeError> {
        let result = self.replica_mut(id).propose(Bytes::copy_from_slice(data));
        self.after_input(id).expect("checks after propose");
        result
    }

    /// Ask node `id` for a linearizable read; returns its ctx (see `SimNode::reads_answered`).
    pub fn read(&mut self, id: NodeId) -> Result<u64, ReadError> {
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let committed = self.highest_commit();
        self.replica_mut(id).read_index(ctx)?;
        self.reads_asked.insert(ctx, (id, committed));
        self.after_input(id).expect("checks after read");
        Ok(ctx)
    }

    fn highest_commit(&self) -> LogIndex {
        let live = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(Replica::commit)
            .max();
        live.unwrap_or(LogIndex::ZERO)
            .max(self.checker.max_committed())
    }

    /// Checks that follow any input to a replica. Its commit is recorded at once, not only
    /// when its next Ready is persisted: a leader may apply (and answer) entries committed
    /// meanwhile and crash before that, and later reads must still be held against them.
    fn after_input(&mut self, id: NodeId) -> Result<(), String> {
        let node = &mut self.nodes[(id.0 - 1) as usize];
        let Some(replica) = node.replica.as_ref() else {
            return Ok(());
        };
        if replica.commit() < node.recorded_commit {
            return Err(format!(
                "node {id}: commit went back from {} to {} within one life",
                node.recorded_commit,
                replica.commit()
            ));
        }
        if replica.commit() > node.recorded_commit {
            let from = std::mem::replace(&mut node.recorded_commit, replica.commit());
            self.checker.on_commit(replica, from)?;
        }
        if replica.role() == Role::Leader && node.led_term != replica.term() {
            node.led_term = replica.term();
            let replica = self.nodes[(id.0 - 1) as usize]
                .replica
                .as_ref()
                .expect("up");
            self.checker.on_leader(replica)?;
        }
        Ok(())
    }

    pub fn deliver(&mut self, message: Message) -> Result<(), String> {
        let to = message.to;
        if self.trace_from.is_some_and(|t| self.now >= t) {
            eprintln!("t={} {:?}", self.now, message);
        }
        if to.0 == 0 || to.0 as usize > self.nodes.len() {
            return Ok(());
        }
        let Some(replica) = self.node_mut(to).replica.as_mut() else {
            return Ok(());
        };
        let name = message.body.name();
        let from = message.from;

        replica
            .step(message)
            .map_err(|e| format!("node {to} refused {name} from {from}: {e}"))?;
        self.apply_committed_meanwhile(to)?;
        self.after_input(to)
    }

    /// As a node's loop does while its syncs are in flight: apply what was committed
    /// meanwhile and is durable, once the Readies in flight have nothing left to apply before
    /// it, and answer the reads confirmed meanwhile.
    fn apply_committed_meanwhile(&mut self, id: NodeId) -> Result<(), String> {
        let node = &mut self.nodes[(id.0 - 1) as usize];
        let Some(replica) = node.replica.as_mut() else {
            return Ok(());
        };
        if node.in_flight.is_empty() {
            return Ok(());
        }
        let waits = node
            .in_flight
            .iter()
            .any(|(ready, _)| !ready.committed().is_empty() || ready.snapshot().is_some());
        let entries = if waits {
            Vec::new()
        } else {
            replica.take_committed_durable()
        };
        let (reads, _aborted) = replica.take_read_states();
        self.apply_entries(id, entries)?;
        self.answer_reads(id, reads)
    }

    /// Node `id` answers confirmed reads: the checker holds each read's index against what
    /// was committed when it was asked.
    fn answer_reads(&mut self, id: NodeId, reads: Vec<ReadState>) -> Result<(), String> {
        let node = &mut self.nodes[(id.0 - 1) as usize];
        for read in reads {
            node.reads_answered.insert(read.ctx, read.index);
            if let Some((asker, committed)) = self.reads_asked.remove(&read.ctx) {
                // A node's read numbers are its own: one answered elsewhere would answer
                // another client's read there.
                if asker != id {
                    return Err(format!(
                        "node {id} answered read {} that node {asker} was asked",
                        read.ctx
                    ));
                }
                self.checker.on_read(id, read.index, committed)?;
            }
        }
        Ok(())
    }

    /// Hand out the node's Ready, if it has one: a full one when none is in flight, else a
    /// pipelined one (see `raft::Ready`).
    pub fn process_ready(&mut self, id: NodeId) -> Result<bool, String> {
        let delay = if self.persist_delay_max == 0 {
            0
        } else {
            self.rng.below(self.persist_delay_max + 1)
        };
        let now = self.now;
        let node = &mut self.nodes[(id.0 - 1) as usize];
        let Some(replica) = node.replica.as_mut() else {
            return Ok(false);
        };
        // As a core does: an idle group's heartbeats, or its answers to them, go alone.
        if let Some(messages) = replica.take_messages_alone() {
            for message in messages {
                node.holds_what_is_promised(&message)?;
                self.network.send(now, message, &mut self.rng);
            }
            return Ok(true);
        }
        if !replica.has_ready() && !replica.has_pipelined_ready() {
            return Ok(false);
        }
        let mut ready = replica.ready();
        let must_sync = ready.must_sync();
        node.asks_no_sync_rightly(&ready)?;
        let lost = ready.lost_entries().iter().map(|&lost| (id, lost));
        self.lost_entries.extend(lost);
        for message in ready.take_messages_now() {
            self.node(id).holds_what_is_promised(&message)?;
            self.network.send(now, message, &mut self.rng);
        }
        if ready.committed_durable() {
            self.apply_committed(id, &mut ready)?;
        }
        self.readies_pipelined += u64::from(!self.node(id).in_flight.is_empty());
        let in_flight = &mut self.node_mut(id).in_flight;
        let due = in_flight
            .back()
            .map_or(now + delay, |(_, due)| (now + delay).max(*due));
        in_flight.push_back((ready, due));
        self.after_input(id)?;
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        if must_sync && down < 2 && self.rng.chance(self.crash_in_sync_window_permille, 1000) {
            // The worst moment to crash: messages are out, the write is not durable.
            self.crash(id);
            return Ok(true);
        }
        if due == now {
            self.complete_persist(id)?;
        }
        Ok(true)
    }

    /// The oldest in-flight Ready of `id` became durable: finish its obligations and advance.
    pub fn complete_persist(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now;
        let node = &mut self.nodes[(id.0 - 1) as usize];
        let Some((mut ready, _)) = node.in_flight.pop_front() else {
            return Ok(());
        };
        let snapshot = ready.take_snapshot();
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        // Torn: the entries reach the disk, the hard state that came with them does not.
        let torn = snapshot.is_none()
            && !ready.entries().is_empty()
            && ready.hard_state().is_some()
            && down < 2
            && self.rng.chance(self.torn_write_permille, 1000);
        let node = &mut self.nodes[(id.0 - 1) as usize];
        if let Some(snapshot) = snapshot {
            // Raft installs only a snapshot past its commit, so past what it applied: one at
            // or below would roll the state back, and the hash chain would not tell (it would
            // apply the same entries again).
            if snapshot.meta.index <= node.state.applied {
                return Err(format!(
                    "node {id}: snapshot at {} installed over state applied to {}",
                    snapshot.meta.index, node.state.applied
                ));
            }
            node.state = StateMachine::decode(&snapshot.data);
            node.disk.install_snapshot(snapshot);
            self.checker.on_apply(id, node.state)?;
        }
        node.disk
            .append(&ready.take_entries())
            .map_err(|e| format!("node {id}: {e}"))?;
        if torn {
            self.crash(id);
            return Ok(());
        }
        if let Some(hard_state) = ready.hard_state() {
            node.disk.hard_state = hard_state;
        }
        self.apply_committed(id, &mut ready)?;
        self.answer_reads(id, ready.take_reads())?;
        for message in ready.take_messages_after_persist() {
            self.nodes[(id.0 - 1) as usize].holds_what_is_promised(&message)?;
            self.network.send(now, message, &mut self.rng);
        }
        let node = &mut self.nodes[(id.0 - 1) as usize];
        let replica = node
            .replica
            .as_mut()
            .expect("a node with a Ready in flight is up");
        replica.advance(ready.ack());
        self.after_input(id)
    }

    /// Apply `ready`'s committed entries to node `id`'s state machine (once: they are taken).
    fn apply_committed(&mut self, id: NodeId, ready: &mut Ready) -> Result<(), String> {
        self.apply_entries(id, ready.take_committed())
    }

    /// Apply committed `entries` to node `id`'s state machine, in order.
    fn apply_entries(&mut self, id: NodeId, entries: Vec<Entry>) -> Result<(), String> {
        let node = &mut self.nodes[(id.0 - 1) as usize];
        for entry in entries {
            node.state.apply(&entry);
            self.checker.on_apply(id, node.state)?;
            match entry.kind {
                EntryKind::Normal => {
                    if !entry.data.is_empty() {
                        self.writes_applied.insert(entry.index);
                    }
                    node.applied.insert(entry.index, entry.data.clone());
                }
                // Not the bootstrap entry (index 1): it is applied in every run.
                EntryKind::ConfChange if entry.index > LogIndex(1) => {
                    self.conf_changes_applied.insert(entry.index);
                }
                EntryKind::ConfChange => {}
                EntryKind::Empty => {}
            }
        }
        Ok(())
    }

    /// Complete every persist that is due by `now`.
    pub fn complete_due_persists(&mut self) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            while self.nodes[index]
                .in_flight
                .front()
                .is_some_and(|(_, due)| *due <= self.now)
            {
                let id = self.nodes[index].id;
                self.complete_persist(id)?;
            }
        }
        Ok(())
    }

    /// Deliver messages and hand out Readies until nothing moves (time does not pass and
    /// nobody ticks). Partitions and crashed nodes drop what is sent to them.
    pub fn stabilize(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut moved = false;
            for id in self.ids() {
                while !self.node(id).in_flight.is_empty() {
                    self.complete_persist(id)?;
                    moved = true;
                }
                moved |= self.process_ready(id)?;
            }
            self.now += 1;
            while let Some(message) = self.network.next_due(self.now) {
                self.deliver(message)?;
                moved = true;
            }
            if !moved && self.network.is_idle() {
                return Ok(());
            }
        }
        Err("stabilize: the cluster did not settle after 100000 rounds".to_string())
    }

    /// Tick every live node `ticks` times, stabilizing after each tick.
    pub fn tick_all(&mut self, ticks: u32) -> Result<(), String> {
        for _ in 0..ticks {
            for id in self.ids() {
                self.tick(id)?;
            }
            self.stabilize()?;
        }
        Ok(())
    }

    /// Crash `id`: its memory and any write not yet durable are lost; its disk stays.
    pub fn crash(&mut self, id: NodeId) {
        self.crashes += 1;
        let node = self.node_mut(id);
        node.replica = None;
        node.in_flight.clear();
        node.state = StateMachine::default();
        node.led_term = Term::ZERO;
    }

    /// Restart `id` from its disk.
    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let config = (self.config)(id);
        let seed = self.seed
            ^ (id.0 << 32)
            ^ self
                .node(id)
                .restarts
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9);
        let node = self.node_mut(id);
        node.restarts += 1;
        let persisted = node.disk.to_persisted();
        node.state = StateMachine::decode(&persisted.snapshot.data);
        node.recorded_commit = LogIndex::ZERO;
        let replica = Replica::new(config, seed, persisted).map_err(|e| e.to_string())?;
        // Whatever the disk says is committed must agree with what was committed before.
        self.checker.on_commit(&replica, LogIndex::ZERO)?;
        let node = self.node_mut(id);
        node.recorded_commit = replica.commit();
        node.replica = Some(replica);
        let ids = self.ids();
        self.liveness.restarted(id, ids.into_iter());
        Ok(())
    }

    /// Cut `id` off from every other node.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.ids().into_iter().filter(|&n| n != id).collect();
        self.network.partition(&[id], &others);
    }

    pub fn heal(&mut self) {
        self.network.heal();
    }

    pub fn check_log_matching(&self) -> Result<(), String> {
        let replicas: Vec<&Replica> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .collect();
        self.checker.check_log_matching(&replicas)
    }

    /// Snapshot node `id`'s state machine and compact its log (and disk) up to it.
    pub fn compact(&mut self, id: NodeId) -> Result<bool, String> {
        let node = self.node_mut(id);
        let Some(replica) = node.replica.as_mut().filter(|_| node.in_flight.is_empty()) else {
            return Ok(false);
        };
        if node.state.applied != replica.applied() {
            return Ok(false);
        }
        if replica
            .compact(node.state.applied, node.state.encode())
            .is_err()
        {
            return Ok(false);
        }
        let snapshot = replica.snapshot().clone();
        node.disk.install_snapshot(snapshot);
        Ok(true)
    }
}
