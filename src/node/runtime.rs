//! A running node: one glommio executor per core, each with its groups, WAL, peer transport,
//! client port and ticker; SIGTERM, SIGHUP or Ctrl-C stops them all gracefully.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glommio::Placement;

use crate::kv::KvStore;
use crate::proto::members::encode_addresses;
use crate::proto::topology::Topology;
use crate::raft::{Config, ENTRY_OVERHEAD_BYTES, LostEntries, NodeId, Persisted, Replica, Role};
use crate::shard::Group;
use crate::shard::core::{Core, CoreNet, CoreShape, Hooks, Input};
use crate::shard::inbox::Inbox;
use crate::shard::snapshot_stream::{SNAPSHOT_BYTES_MAX, StreamConfig};
use crate::transport::{SendError, SocketOptions, Transport, TransportConfig};
use crate::wire::limits::{
    MESSAGE_PAYLOAD_BYTES_MAX, PEER_QUEUE_BYTES_MAX, SOCKET_BUFFER_BYTES, UNACKED_TIMEOUT_MS,
};
use crate::wire::{ClusterId, Envelope, Layout, SenderSays};

use super::client_conns::Conns;
use super::config::{NodeConfig, SyncMode};
use super::log::WalLog;
use super::members_view::{MembersView, RemovedCores};
use super::refusals::{
    REFUSED_FILE, known_elsewhere, refused_before, removed_why, stop_if_refused_as_unknown,
    stop_if_told_removed,
};
use super::room_kept::RoomKept;

/// Snapshot chunks in flight to one peer, per group, at most: 4 MiB with the default chunk.
const SNAPSHOT_WINDOW_CHUNKS: usize = 4;

/// Snapshot bytes in flight to one peer over all its groups: a quarter of a peer queue's
/// bound, so appends and heartbeats of other groups are never stuck behind a snapshot.
const SNAPSHOT_PEER_WINDOW_BYTES: usize = PEER_QUEUE_BYTES_MAX / 4;

/// The snapshot windows for chunks of `chunk_bytes`: (per stream, per peer), in chunks. Two
/// streams' windows of 4 chunks with the default chunk (1 MiB); fewer chunks with larger ones
/// (found in review: at the largest, 8 MiB, one peer's window was 64 MiB, twice its queue's
/// bound, which snapshot chunks then kept full while other groups' appends were refused).
fn snapshot_windows(chunk_bytes: usize) -> (usize, usize) {
    let peer =
        (SNAPSHOT_PEER_WINDOW_BYTES / chunk_bytes.max(1)).clamp(1, 2 * SNAPSHOT_WINDOW_CHUNKS);
    (SNAPSHOT_WINDOW_CHUNKS.min(peer.div_ceil(2)), peer)
}

/// Inputs waiting for the core loop before producers must wait (client readers, peers).
pub(crate) const INBOX_CAPACITY: usize = 4096;

/// A frame (a client's requests, a peer's messages) weighs one inbox item per this many
/// bytes, and one more: the core's inbox (4096 items) so holds at most about 64 MiB of
/// client frames and their decoded requests besides its last one, and peers' frames as much
/// again (their headroom).
pub(crate) const FRAME_BYTES_PER_INBOX_ITEM: usize = 16 << 10;

/// The largest entry a leader can send: alone in an append, within the transport's message
/// limit. A larger one would be written locally and never reach a follower, so never commit
/// and stop its group.
const ENTRY_BYTES_MAX_ON_WIRE: usize = MESSAGE_PAYLOAD_BYTES_MAX - ENTRY_OVERHEAD_BYTES as usize;

/// Run the node until a signal stops it. Returns once every core has synced and stopped.
pub fn run(config: NodeConfig) -> Result<(), String> {
    run_until(config, Arc::new(AtomicBool::new(false)))
}

/// [`run`], also stopping once `stop` is set.
pub fn run_until(config: NodeConfig, stop: Arc<AtomicBool>) -> Result<(), String> {
    run_telling(config, stop, None)
}

/// [`run_until`], also sending each core's index on `listening` once it takes peers and
/// clients: what a node that joins a cluster waits for before it asks to be added, so that a
/// node that cannot start (its data dir locked or another node's, a port taken) never
/// becomes a member. The channel closes without every core once the node stopped early.
pub fn run_telling(
    config: NodeConfig,
    stop: Arc<AtomicBool>,
    listening: Option<std::sync::mpsc::Sender<u16>>,
) -> Result<(), String> {
    config.validate().map_err(|e| e.to_string())?;
    crate::sys::raise_memlock_limit().map_err(|e| e.to_string())?;
    let mut config = config;
    let clients_max = super::open_files::fit_to_open_files(&mut config)?;
    if let Err(error) = crate::sys::report_mapped_read_faults() {
        tracing::warn!(%error, "a SIGBUS from a mapped WAL segment will not be reported");
    }
    if config.sync == SyncMode::Never {
        tracing::warn!(
            "--sync never (benchmarks only): votes and acknowledgements go out before their \
             records are on disk, so the crash of one machine may lose acknowledged writes or \
             elect two leaders in one term"
        );
    }
    if config.pin_cores {
        refuse_missing_cpus(config.cores)?;
    }
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A signal that finds the node stopping already (a second Ctrl-C, a stop stuck on a
        // disk that no longer answers) ends the process at once, with status 1: what was
        // acknowledged was synced before it was. Registered first, so the first signal sees
        // the flag still down.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    // A node whose terminal closes stops as on SIGTERM, rather than being cut mid-turn by
    // SIGHUP's default action (what `--sync never` took is lost then). Never as a second
    // signal: a closing terminal often sends two (the shell's, then the kernel's). And not
    // where SIGHUP was ignored (`nohup`): that node was asked to outlive its terminal.
    let hangup = signal_hook::consts::SIGHUP;
    if !crate::sys::signal_ignored(hangup) {
        signal_hook::flag::register(hangup, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {hangup}: {e}"))?;
    }
    let stopped = || say(&format!("node {}: stopped before it served", config.id));
    let first_start = super::identity::read(&config.data_dir)?.is_none();
    // A first start waits for its ports (false: stopped meanwhile); any start stops here
    // on a signal that came before.
    if (first_start && !super::ports::free_before_first_start(&config, &stop)?)
        || stop.load(Ordering::SeqCst)
    {
        stopped();
        return Ok(());
    }
    crate::durable::create_dir_all(&config.data_dir)
        .map_err(|e| super::identity::cannot("create", &config.data_dir, &e))?;
    // Held until every core has stopped (this function returns).
    let Some(_lock) = super::dir_lock::lock(&config.data_dir, &stop)? else {
        stopped();
        return Ok(());
    };
    let identity = super::identity::Identity {
        cluster_id: config.cluster_id,
        node_id: config.id.0,
        cores: config.cores,
        groups: config.groups,
        // A node that starts a cluster records its initial voters; one that joins knows none.
        founders: match config.bootstrap {
            true => crate::wire::founders_digest_with_ports(members_given(&config)),
            false => 0,
        },
    };
    let founders = super::identity::check_or_record(&config.data_dir, identity)?.founders;
    // Only a node whose first start founded the cluster with these --peers: a joined node
    // (founders 0) restarted with --peers is refused by its cores below where a group holds
    // nothing yet, and warned that they are not used otherwise.
    if config.bootstrap
        && crate::wire::founders_match(founders, members_given(&config))
        && super::identity::recorded_members(&config.data_dir)?.is_none()
    {
        super::identity::record_membership(&config.data_dir, &config.members)?;
    }
    refused_before(&config)?;
    let config = Arc::new(config);
    let mut executors = Vec::new();
    let removed_cores = Arc::new(RemovedCores::new(config.cores));
    let room_kept = Arc::new(RoomKept::new(config.cores));
    for core in 0..config.cores {
        let placement = if config.pin_cores {
            Placement::Fixed(usize::from(core))
        } else {
            Placement::Unbound
        };
        let (core_config, core_stop) = (Arc::clone(&config), Arc::clone(&stop));
        let core_listening = listening.clone();
        let core_shared = (Arc::clone(&removed_cores), Arc::clone(&room_kept));
        let executor = spawn_core(placement, core, Arc::clone(&stop), move || async move {
            let result = run_core(
                &core_config,
                core,
                core_stop,
                core_listening,
                clients_max,
                founders,
                core_shared,
            )
            .await;
            // A core that stopped the node for a reason of its own (removed from the cluster,
            // known elsewhere) did not fail: why is said once, as the node's exit (found by
            // an operator: a node removed on purpose logged "ERROR core failed").
            match result {
                Ok(None) => Ok(()),
                Ok(Some(why)) => Err(why),
                Err(error) => {
                    tracing::error!(core, %error, "core failed: the node stops");
                    Err(error)
                }
            }
        })
        .map_err(|e| format!("core {core}: cannot start its executor: {e}"));
        match executor {
            Ok(executor) => executors.push(executor),
            Err(error) => {
                // The cores already running stop as on SIGTERM (their last turn synced),
                // rather than being cut by the exit.
                stop.store(true, Ordering::SeqCst);
                for running in executors {
                    let _ = running.join();
                }
                let pinned = if config.pin_cores {
                    " (--pin puts core k on CPU k: are there that many CPUs this process may use?)"
                } else {
                    ""
                };
                return Err(format!("{error}{pinned}"));
            }
        }
    }
    // Only the cores hold it now: it closes once every one of them is gone.
    drop(listening);
    let mut failures = Vec::new();
    for (core, executor) in executors.into_iter().enumerate() {
        match executor.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(error) => failures.push(format!("core {core}: executor failed: {error}")),
        }
    }
    // Several cores often fail for one reason (a wiped node, a wrong address): said once.
    let mut said = BTreeSet::new();
    failures.retain(|failure| said.insert(failure.clone()));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Starts core `core`'s executor on the future `make` builds. However the core ends (an
/// error, the stop, a panic in any of its tasks, or an executor that fails to build in its
/// thread, pinned to a CPU outside this process's set, say, so that `make` never runs), the
/// node's `stop` is set and the other cores stop too: a node never goes on as half a node,
/// serving some of its groups. The guard lives in the core thread's own storage, not in the
/// core's future: a panic in a task other than the core's own (a job off the loop, a client
/// connection) ends the executor's thread without dropping a parked future whose waker it
/// holds itself (the core's inbox keeps its consumer's).
fn spawn_core<G, F, T>(
    placement: Placement,
    core: u16,
    stop: Arc<AtomicBool>,
    make: G,
) -> Result<glommio::ExecutorJoinHandle<T>, glommio::GlommioError<()>>
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let stop_all = StopOnDrop(stop);
    super::executor::executor_builder(placement, &format!("cohort-core-{core}")).spawn(move || {
        CORE_STOP.with(|slot| *slot.borrow_mut() = Some(stop_all));
        make()
    })
}

thread_local! {
    /// The stop guard of the core this thread runs, dropped as the thread ends, however.
    static CORE_STOP: RefCell<Option<StopOnDrop>> = const { RefCell::new(None) };
}

/// Sets the node's stop flag when dropped, as a core's thread ends (or its executor never
/// built, and the guard was dropped unused).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct TransportNet(Rc<Transport>);

impl CoreNet for TransportNet {
    fn send(&mut self, envelope: Envelope) -> bool {
        let (group, to, kind) = (
            envelope.group.0,
            envelope.message.to,
            envelope.message.body.name(),
        );
        match self.0.send(to, envelope) {
            Ok(()) => true,
            // A full queue is a slow peer: Raft resends. A message that can never fit a frame
            // (a snapshot of a state over the frame limit) would be resent forever: say so.
            Err(error @ SendError::MessageTooLarge { .. }) => {
                tracing::warn!(group, to = to.0, kind, %error, "message dropped");
                false
            }
            Err(_) => false,
        }
    }

    fn take_renewed(&mut self) -> Vec<u64> {
        self.0
            .take_renewed()
            .into_iter()
            .map(|peer| peer.0)
            .collect()
    }

    fn say(&mut self, says: SenderSays) {
        self.0.say(says);
    }

    fn keep_alive(&mut self) {
        self.0.keep_alive();
    }
}

/// How much shorter than an election timeout of `election_ticks` a leader's lease is: a
/// tenth of it, and at least 2 ticks. A fixed 2 ticks would leave a long timeout (thousands
/// of ticks) less slack than real clocks drift apart; a tenth leaves every timeout room for
/// clocks a few percent apart (`sim::lease_safe_skew_permille`).
fn lease_margin_ticks(election_ticks: u32) -> u32 {
    election_ticks.div_ceil(10).max(2)
}

fn raft_config(config: &NodeConfig, id: NodeId) -> Config {
    let mut raft = Config::new(id);
    raft.election_timeout_ticks = config.election_ticks;
    raft.heartbeat_interval_ticks = config.heartbeat_ticks;
    raft.lease_reads = config.lease_reads;
    raft.lease_clock_drift_ticks = lease_margin_ticks(config.election_ticks);
    raft.broadcast_commit = config.broadcast_commit;
    raft.quiesce = config.quiesce;
    raft.catch_up_entries_max = config.snapshot_catch_up_entries;
    // Clients follow NotLeader hints; forwarding would hide the leader from them.
    raft.forward_proposals = false;
    raft
}

/// The members `--peers` gives, each with its address.
fn members_given(config: &NodeConfig) -> impl Iterator<Item = (NodeId, &str)> + Clone {
    (config.members.iter()).map(|(id, address)| (*id, address.as_str()))
}

/// `--pin` puts core k on CPU k: refused before the data dir records `--cores`, where this
/// process may not run on one of them (a later start with fewer cores would be refused).
fn refuse_missing_cpus(cores: u16) -> Result<(), String> {
    let allowed = crate::sys::allowed_cpus()
        .map_err(|e| format!("--pin: cannot read the CPUs this process may use: {e}"))?;
    match (0..usize::from(cores)).find(|cpu| !allowed.contains(cpu)) {
        None => Ok(()),
        Some(cpu) => Err(format!(
            "--pin puts core k on CPU k, and this process may not run on CPU {cpu} (CPUs it may \
             use: {}): use fewer --cores, or leave out --pin",
            allowed.len()
        )),
    }
}

/// Runs core `core` until the node stops: `Ok(None)` once it stopped cleanly, `Ok(Some(why))`
/// where it stopped the node for a reason that is not a failure (removed from the cluster,
/// known elsewhere, refused as a member that lost its data), an error where it failed.
async fn run_core(
    config: &NodeConfig,
    core: u16,
    stop: Arc<AtomicBool>,
    listening: Option<std::sync::mpsc::Sender<u16>>,
    clients_max: usize,
    founders: u64,
    (removed_cores, room_kept): (Arc<RemovedCores>, Arc<RoomKept>),
) -> Result<Option<String>, String> {
    let group_ids: BTreeSet<u32> = config.groups_of_core(core).collect();
    let dir = config.data_dir.join(format!("core-{core}"));
    crate::durable::create_dir_all(&dir)
        .map_err(|e| super::identity::cannot("create", &dir, &e))?;
    let refused_file = dir.join(REFUSED_FILE);
    let incarnation = super::incarnation::begin(&dir)?;
    // From here a start is counted: a refusal kept in any core's `refused_file` stops later
    // starts before any core gets here (`refused_before`), so an older copy cannot count its
    // way past what its peers saw.
    let bootstrap = if config.bootstrap {
        let voters: Vec<NodeId> = config.members.keys().copied().collect();
        let addresses = config
            .members
            .iter()
            .map(|(id, base)| (id.0, base.as_str()));
        Persisted::bootstrap_with_context(&voters, encode_addresses(addresses))
    } else {
        Persisted::empty()
    };
    // A group that holds nothing yet starts from the --peers of this start: they must be
    // those the data dir's first start recorded, or the node would advertise founders its
    // groups do not hold. A node that joined (founders 0) has none: a group its join did not
    // reach yet would start from a first entry of its own, unlike the cluster's at that
    // index, and a leader adding the node later would append onto it. (A dir from before
    // founders were recorded holds every group: nothing of it is refused.)
    let same = crate::wire::founders_match(founders, members_given(config));
    let refused = (config.bootstrap && !same).then_some(
        "this data dir was first started with other --peers (other initial voters) or joined \
         its cluster with --join, and a group that holds nothing yet would start from these \
         --peers: start with the flags of its first start (--join for a node that joined), \
         or start a new node: a new --id on an empty data dir, with --join",
    );
    let bootstrap = refused.map_or(Ok(&bootstrap), Err);
    let (mut log, recovered) = WalLog::open(&dir, config, &group_ids, bootstrap).await?;
    log.keep_room_with(room_kept, core);
    // Every group holds a configuration, so none starts from these --peers: they are not
    // used, and say nothing of who the members are (found by an operator: a node restarted
    // with an extra id in --peers said only "peer removed" of it).
    let joined = || {
        matches!(
            super::identity::recorded_members(&config.data_dir),
            Ok(Some(_))
        )
    };
    if refused.is_some() && core == 0 && (founders != 0 || joined()) {
        let first = match founders {
            0 => "this node joined its cluster: restart it with --join as it joined",
            _ => {
                "add a node with `cohort serve --join` or `cohort members add`, remove one \
                  with `cohort members remove`"
            }
        };
        tracing::warn!(
            node = %config.id,
            "--peers names other nodes than this data dir's first start: they are not used (the \
             groups' configurations say who the members are); {first}"
        );
    }
    let topology = Rc::new(RefCell::new(Topology {
        cluster_id: config.cluster_id,
        node_id: config.id.0,
        cores: config.cores,
        groups: config.groups,
        members: Vec::new(),
        timing: config.timing(),
        syncs: Some(config.sync == SyncMode::Always),
    }));
    let mut groups = BTreeMap::new();
    for (group, persisted) in recovered {
        let kv = if persisted.snapshot.data.is_empty() {
            KvStore::new()
        } else {
            let kv = KvStore::decode_snapshot(&persisted.snapshot.data)
                .map_err(|e| format!("group {group}: {e}"))?;
            // As for a leader's snapshot: the state must be the one of the index Raft resumes
            // from, or the entries after it would be applied to another state.
            let index = persisted.snapshot.meta.index.0;
            if kv.applied_index() != index {
                return Err(format!(
                    "group {group}: its snapshot file says index {index} and holds the state \
                     at {}: the file is damaged (replace the node)",
                    kv.applied_index()
                ));
            }
            kv
        };
        let seed = config.id.0 << 32 ^ u64::from(group) ^ u64::from(std::process::id()) << 48;
        let replica = Replica::new(raft_config(config, config.id), seed, persisted)
            .map_err(|e| format!("group {group}: {e}"))?;
        let topology = Rc::clone(&topology);
        let address = Box::new(move |leader: NodeId| {
            topology
                .borrow()
                .address_of(leader.0, group)
                .unwrap_or_default()
        });
        let mut state = Group::new(replica, address);
        state.kv = kv;
        state.entry_bytes_max = log.entry_bytes_max().min(ENTRY_BYTES_MAX_ON_WIRE);
        groups.insert(group, state);
    }

    // The members as the groups' snapshots know them, and as the node was told at start
    // while none of them knows it. The first turn replays the log after the snapshots and
    // corrects both (`on_members`).
    let mut restored: BTreeMap<u64, String> = BTreeMap::new();
    for group in groups.values() {
        restored.extend(group.kv.members().clone());
    }
    // Where this node listens: where its groups must know it.
    let listens = config.members.get(&config.id).cloned().unwrap_or_default();
    let mut said_elsewhere = None;
    if let Some(why) = known_elsewhere((config.id, core), &listens, &restored, &mut said_elsewhere)
    {
        return Ok(Some(why));
    }
    let view = MembersView::at_start(config.id, restored, &config.members);
    let members = view.members().clone();
    let peers = super::resolve::addresses_now(&members, config.id, core);
    set_topology_members(&topology, &members);
    let listen = config
        .peer_addr(config.id, core)
        .map_err(|e| e.to_string())?;
    let client_addr = config
        .client_addr(config.id, core)
        .map_err(|e| e.to_string())?;
    if !super::ports::wait_for_ports(core, &[listen, client_addr], &stop).await? {
        // Stopped before it served: nothing was written past what recovery found.
        say(&format!(
            "node {} core {core}: stopped before it served",
            config.id
        ));
        return Ok(None);
    }
    let mut transport_config =
        TransportConfig::new(config.id, core, ClusterId(config.cluster_id), listen, peers);
    transport_config.jitter_seed = config.id.0 ^ u64::from(core) << 16;
    transport_config.incarnation = incarnation.value;
    transport_config.start = incarnation.start;
    transport_config.incarnation_is_new = incarnation.new;
    transport_config.incarnations_file = Some(dir.join("peers.incarnations"));
    transport_config.layout = Layout {
        cores: config.cores,
        groups: config.groups,
        founders,
    };
    transport_config.timing = config.timing();
    let transport =
        Rc::new(Transport::start(transport_config).map_err(|e| format!("core {core}: {e}"))?);
    // Our own listen, not glommio's bind: SO_REUSEADDR (a restart or a port that connections
    // just closed on is not "in use") and no SO_REUSEPORT (two nodes must not share a port).
    let client_sockets = SocketOptions {
        buffer_bytes: SOCKET_BUFFER_BYTES,
        unacked_timeout: Duration::from_millis(UNACKED_TIMEOUT_MS),
    };
    let listener = crate::transport::listen(client_addr, client_sockets)
        .map_err(|e| format!("core {core}: cannot listen for clients on {client_addr}: {e}"))?;
    say(&format!(
        "node {} core {core}: peers on {listen}, clients on {client_addr}, {}",
        config.id,
        groups_said(&group_ids, config.cores)
    ));
    if let Some(listening) = listening {
        // Nobody waits any more once the node is stopping: nothing to tell.
        let _ = listening.send(core);
    }

    let inbox = Inbox::new(INBOX_CAPACITY);
    // The members' names are resolved (the core started with those given as IPs), and later
    // member sets, off the loop.
    let resolving = Inbox::new(16);
    resolving.push_now(members.clone());
    let refused: Rc<RefCell<Option<String>>> = Rc::default();
    let clients = Conns::default();
    let stop_node = Arc::clone(&stop);
    let tasks = [
        glommio::spawn_local(stop_if_refused_as_unknown(
            Rc::clone(&transport),
            Rc::clone(&refused),
            (Arc::clone(&stop), inbox.clone()),
            refused_file.clone(),
            (config.id, core),
        )),
        glommio::spawn_local(stop_if_told_removed(
            Rc::clone(&transport),
            Rc::clone(&refused),
            (Arc::clone(&stop), inbox.clone()),
            Arc::clone(&removed_cores),
            (config.id, core),
        )),
        glommio::spawn_local(super::resolve::keep_peers_resolved(
            resolving.clone(),
            Rc::clone(&transport),
            config.id,
            core,
            super::resolve::system_resolve,
            super::resolve::Schedule::default(),
        )),
        glommio::spawn_local(receive_peers(Rc::clone(&transport), inbox.clone())),
        glommio::spawn_local(super::clients::serve(
            listener,
            client_sockets,
            inbox.clone(),
            Rc::clone(&topology),
            clients.clone(),
            clients_max,
            super::clients::CLIENT_IDLE_CLOSABLE_AFTER,
        )),
        glommio::spawn_local(tick(
            config.tick,
            config.election_ticks,
            inbox.clone(),
            stop,
        )),
    ];
    let shape = CoreShape {
        node_id: config.id.0,
        core,
        cores: config.cores,
        groups_total: config.groups,
        sync: config.sync == SyncMode::Always,
        snapshot_entries: config.snapshot_entries,
        snapshot_log_bytes: config.snapshot_log_bytes,
        snapshot_stream: StreamConfig {
            chunk_bytes: config.snapshot_chunk_bytes,
            window_chunks: snapshot_windows(config.snapshot_chunk_bytes).0,
            peer_window_chunks: snapshot_windows(config.snapshot_chunk_bytes).1,
            // Resend a quiet window after an election timeout; give a stream up after ten.
            stall_ticks: u64::from(config.election_ticks),
            abandon_ticks: 10 * u64::from(config.election_ticks),
            bytes_max: SNAPSHOT_BYTES_MAX,
        },
        leader_balance_margin: config.leader_balance_margin,
        // A handover ends (done or abandoned) within an election timeout. One tick more than
        // two timeouts: a leader forgets which followers are active at every election
        // timeout of its group (check-quorum), and a look that always fell on that tick
        // (2 × timeout did, for a group whose leadership began on it) saw no follower ready
        // and never balanced that group. Coprime periods move the look across all phases.
        balance_every_ticks: 2 * config.election_ticks + 1,
        kv_quota_bytes: match config.kv_quota_bytes {
            0 => 0,
            node => (node / u64::from(config.cores)).max(1),
        },
        tick_length: Some(config.tick),
    };
    let node = config.id;
    let role_lines = super::role_lines::RoleLines::new(node.0, core, group_ids.len());
    let on_role = Box::new(move |group: u32, role: Role, leader: u64, term: u64| {
        role_lines.changed(group, role, leader, term);
    });
    let on_members = {
        let (topology, transport) = (Rc::clone(&topology), Rc::clone(&transport));
        let (refused, inbox) = (Rc::clone(&refused), inbox.clone());
        let removed_cores = Arc::clone(&removed_cores);
        let mut view = view;
        Box::new(
            move |applied: &BTreeMap<u64, String>, removed: &BTreeSet<u64>| {
                let changed = view.on_applied(applied, removed.contains(&node.0));
                transport.set_removed(view.unlisted(removed));
                let Some(changed) = changed else {
                    return;
                };
                // Its log replayed at start (or a change applied) knows this node elsewhere: it
                // stops, as when a peer refuses it, with why.
                let members = &changed.members;
                if let Some(why) =
                    known_elsewhere((node, core), &listens, members, &mut said_elsewhere)
                {
                    if refused.borrow().is_none() {
                        *refused.borrow_mut() = Some(why);
                        inbox.push_now(Input::Stop);
                        stop_node.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                let ids: Vec<&u64> = changed.members.keys().collect();
                say(&format!("node {node} core {core}: members {ids:?}"));
                if changed.removed && removed_cores.mark(core) {
                    // Found by an operator: restarted on its data dir with its --peers, a removed
                    // node said it could be stopped, and ran on; a supervisor saw it healthy.
                    if refused.borrow().is_none() {
                        *refused.borrow_mut() = Some(removed_why(node, None));
                        inbox.push_now(Input::Stop);
                        stop_node.store(true, Ordering::SeqCst);
                    }
                } else if changed.removed {
                    say(&format!(
                        "node {node} core {core}: removed from every group of this core; the \
                         node stops once every core's groups removed it"
                    ));
                }
                set_topology_members(&topology, &changed.members);
                resolving.push_now(changed.members);
            },
        )
    };
    let net = TransportNet(Rc::clone(&transport));
    // The core (dropped here) holds the transport too: in `net` and in `on_members`.
    let hooks = Hooks {
        on_role,
        on_members,
        on_lost_entries: Box::new(move |group, lost| report_lost_entries(node.0, group, lost)),
    };
    let result = Core::new(shape, groups, log, net, inbox, hooks)
        .run()
        .await
        .map(Core::let_clients_go);
    // Connections yet to send a frame end now: the client task that would tell them once
    // it saw the core's inbox closed may not have run since (an idle core stops in one go).
    clients.stop_all();
    drop(tasks);
    // A dropped task lets go of its future (and the transport in it) when the executor
    // next runs it: give them their turns.
    for _ in 0..16 {
        if Rc::strong_count(&transport) == 1 {
            break;
        }
        futures_lite::future::yield_now().await;
    }
    match Rc::try_unwrap(transport) {
        Ok(transport) => transport.close().await,
        Err(_) => tracing::warn!(
            core,
            "the transport is still shared at shutdown: its connections end with the process"
        ),
    }
    // The peers know the node is gone (its connections to them closed); the clients' last
    // answers reach them: each connection writes what the core handed it, and ends once
    // its client closed its end (see `clients::STOP_LINGER`).
    if result.is_ok() && !clients.all_closed_within(CLIENTS_STOP_PATIENCE).await {
        tracing::warn!(
            core,
            open = clients.len(),
            "client connections still open {CLIENTS_STOP_PATIENCE:?} into the stop (clients \
             that read slowly, or not at all) are cut: their last answers may not reach them"
        );
    }
    if let Some(why) = refused.take() {
        if let Err(error) = result {
            tracing::error!(core, %error, "the core also failed while it stopped");
        }
        return Ok(Some(why));
    }
    result.map(|()| {
        say(&format!("node {node} core {core}: stopped"));
        None
    })
}

/// How long a stopping core waits for its client connections to write their last answers
/// and end: a client's linger ([`super::clients::STOP_LINGER`]) and as long again to write.
const CLIENTS_STOP_PATIENCE: Duration = Duration::from_secs(2);

fn set_topology_members(topology: &RefCell<Topology>, members: &BTreeMap<u64, String>) {
    topology.borrow_mut().members = members
        .iter()
        .map(|(id, base)| (*id, base.clone()))
        .collect();
}

async fn receive_peers(transport: Rc<Transport>, inbox: Inbox<Input>) {
    while let Some(inbound) = transport.recv().await {
        let weight = 1 + inbound.held_bytes / FRAME_BYTES_PER_INBOX_ITEM;
        let input = Input::Peer {
            from: inbound.from.0,
            says: inbound.sender,
            envelopes: inbound.envelopes,
        };
        // Past the clients: a flood of client frames must not hold back the heartbeats and
        // acknowledgements that keep the groups' leaders (the transport bounds what it has
        // received and not handed on, in frames and bytes; its share of those bytes goes back
        // once the frame is in the core's inbox, which bounds it by weight).
        if !inbox
            .push_with_headroom(input, weight, INBOX_CAPACITY)
            .await
        {
            return;
        }
    }
}

/// Wakes the core once per tick, and tells it once to stop after a signal, finishing its
/// work first within two election timeouts (a handover ends, done or given up, within one;
/// the other is for the writes it leaves to commit), while it goes on ticking. How many
/// ticks passed the core counts itself from the clock (`CoreShape::tick_length`): wake-ups
/// run late, and one is needed only where nothing else waits in the inbox to wake it (a
/// core that takes nothing, stuck on a sync as it stops, had a tick queued for every tick
/// it was stuck: review 226).
async fn tick(every: Duration, election_ticks: u32, inbox: Inbox<Input>, stop: Arc<AtomicBool>) {
    let grace_ticks = 2 * u64::from(election_ticks);
    let mut told = false;
    while !inbox.is_closed() {
        glommio::timer::sleep(every).await;
        if !told && stop.load(Ordering::SeqCst) {
            told = true;
            inbox.push_now(Input::StopAfterWork { grace_ticks });
        } else if inbox.is_empty() {
            inbox.push_now(Input::Tick);
        }
    }
}

/// The groups of a core, as its start line says them: each where they are a few, the rule
/// that picks them where they are many (16,384 numbers made one line of 100 KB).
fn groups_said(groups: &BTreeSet<u32>, cores: u16) -> String {
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        return "no groups".to_string();
    };
    if groups.len() <= super::role_lines::GROUPS_SAID_EACH_MAX {
        return format!("groups {:?}", groups.iter().collect::<Vec<_>>());
    }
    let step = match cores {
        1 => String::new(),
        cores => format!(", one in {cores}"),
    };
    format!("{} groups: {first} to {last}{step}", groups.len())
}

/// One line on stdout, stamped with the time as the log's lines are (found by an operator:
/// role changes could not be ordered against the log, nor across nodes), and flushed at
/// once: operators and tests read it from a pipe or a file, where stdout would otherwise sit
/// in a block buffer. Nothing where it cannot be written (a
/// closed pipe, a full disk): a node's output must never stop it, nor what it was about to
/// do.
pub fn say(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let stamp = crate::clock::utc_stamp(crate::clock::wall_nanos());
    let _ = writeln!(stdout, "{stamp} {line}");
    let _ = stdout.flush();
}

/// Says that a node lost entries it had acknowledged: an error, since until it holds them
/// again they are on fewer nodes than their commit counted on.
fn report_lost_entries(node_id: u64, group: u32, lost: &LostEntries) {
    let (acknowledged, holds) = (lost.acknowledged.0, lost.holds.0);
    if lost.follower.0 == node_id {
        tracing::error!(
            group,
            acknowledged,
            holds,
            "this node lost entries it had acknowledged: its log ends before what its leader \
             knows it held, or holds other entries there, matching only up to `holds` (a \
             machine crash under --sync never, log files deleted, or a data dir restored from \
             a copy?); it takes them from the leader again. A node whose disk is lost should \
             rejoin under a new id"
        );
    } else {
        tracing::error!(
            group,
            follower = lost.follower.0,
            acknowledged,
            holds,
            "a follower lost entries it had acknowledged (a machine crash under --sync never, \
             log files deleted, or a data dir restored from a copy?): they are on fewer nodes \
             than their commit counted; sending it the log again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::node::config::ELECTION_TICKS_MAX;
    use crate::sim::lease_safe_skew_permille;

    /// Goal (review 226): ticks do not pile up in the inbox of a core that takes nothing (one
    /// stuck on a sync as it stops), as the core counts ticks from the clock and one queued
    /// input wakes it. Method: 40 ticks of 1 ms with nobody taking: one tick is queued, and
    /// the stop after a signal still goes in.
    #[test]
    fn ticks_do_not_pile_up_in_an_inbox_nobody_takes() {
        glommio::LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("executor")
            .run(async {
                let inbox = Inbox::new(16);
                let stop = Arc::new(AtomicBool::new(false));
                let ticking = glommio::spawn_local(tick(
                    Duration::from_millis(1),
                    10,
                    inbox.clone(),
                    Arc::clone(&stop),
                ));
                glommio::timer::sleep(Duration::from_millis(40)).await;
                stop.store(true, Ordering::SeqCst);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                inbox.close();
                ticking.await;
                let mut queued = Vec::new();
                assert!(inbox.take_all_until_closed(&mut queued).await);
                let ticks = queued.iter().filter(|i| matches!(i, Input::Tick)).count();
                assert_eq!(ticks, 1);
                assert!(matches!(queued.last(), Some(Input::StopAfterWork { .. })));
            });
    }

    /// Goal: a panic in a task of a core other than its main one (a job off the loop, a
    /// client connection) stops the node as a panic of its main task does. Method: a core
    /// whose main task waits, its waker kept where the task itself holds it (as the core's
    /// inbox keeps it: the task is then never dropped, and the guard it held never set the
    /// stop, found in review), while its other task panics on its second poll (a first poll
    /// runs inside the main task's): once its executor ends, the stop is set.
    #[test]
    fn a_panic_in_any_task_of_a_core_stops_the_node() {
        let stop = Arc::new(AtomicBool::new(false));
        let core = spawn_core(Placement::Unbound, 0, Arc::clone(&stop), || async {
            glommio::spawn_local(async {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                panic!("a bug in a task")
            })
            .detach();
            let waker_kept = RefCell::new(None);
            futures_lite::future::poll_fn(|cx| {
                *waker_kept.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::<()>::Pending
            })
            .await;
        })
        .expect("an executor");
        assert!(core.join().is_err(), "the panic ends the executor");
        assert!(
            stop.load(Ordering::SeqCst),
            "the node goes on without this core"
        );
    }

    /// Goal: whatever `--snapshot-chunk-kib` a node runs with, the snapshot chunks in flight
    /// to one peer (a chunk past its window may go while the window is not full) stay within
    /// half its queue's bound; the default chunk keeps two streams' windows of 4 chunks.
    #[test]
    fn snapshot_windows_leave_most_of_a_peer_queue_to_other_groups() {
        use crate::node::config::{SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MIN};
        assert_eq!(snapshot_windows(1 << 20), (4, 8));
        let mut chunk = SNAPSHOT_CHUNK_BYTES_MIN;
        while chunk <= SNAPSHOT_CHUNK_BYTES_MAX {
            let (stream, peer) = snapshot_windows(chunk);
            assert!((1..=peer).contains(&stream), "{chunk}: {stream} of {peer}");
            assert!(peer * chunk <= PEER_QUEUE_BYTES_MAX / 4, "{chunk}: {peer}");
            chunk += chunk / 2 + 1;
        }
    }

    /// Goal: whatever `--election-ticks` a node runs with, its lease absorbs clocks that run
    /// a few percent apart, far more than real ones do. Method: the safe skew of every
    /// timeout up to 100,000 ticks, and of the largest.
    #[test]
    fn every_election_timeout_leaves_its_lease_room_for_drift() {
        let timeouts = (3..=100_000).chain([ELECTION_TICKS_MAX]);
        let tightest = timeouts
            .map(|election_ticks| {
                let mut raft = Config::new(NodeId(1));
                raft.election_timeout_ticks = election_ticks;
                raft.lease_reads = true;
                raft.lease_clock_drift_ticks = lease_margin_ticks(election_ticks);
                raft.validate().expect("a valid Raft config");
                let skew = lease_safe_skew_permille(election_ticks, raft.lease_clock_drift_ticks);
                (skew.expect("some skew is safe"), election_ticks)
            })
            .min()
            .unwrap();
        // 27 thousandths either way, at 20 ticks; a margin of 2 ticks left 1,000,000 ticks
        // none.
        assert!(tightest.0 >= 25, "{tightest:?}");
        assert_eq!(lease_safe_skew_permille(1_000_000, 2), Some(0));
        assert_eq!(lease_margin_ticks(10), 2, "the default as it was");
    }
}
