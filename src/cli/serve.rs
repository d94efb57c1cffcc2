//! `cohort serve`: the flags of a node, turned into a checked [`NodeConfig`]; with `--join`,
//! the node also makes itself a member of a running cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::node::{NodeConfig, SyncMode, parse_members};
use crate::raft::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncFlag {
    /// fdatasync the WAL before acknowledging anything that depends on it.
    Always,
    /// Never sync (benchmarks only: the crash of one machine may lose acknowledged writes).
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// This node's id (must appear in --peers; with --join, a new id, or this node's own on
    /// a restart).
    #[arg(long)]
    pub id: u64,
    /// A new cluster's initial members, this node included: ID=HOST:PORT,… The port is the
    /// node's base port: core c takes peers on PORT+2c and clients on PORT+2c+1. Used only when
    /// the data dir is new; after that the replicated configuration says who the members are.
    #[arg(long, required_unless_present = "join", conflicts_with = "join")]
    pub peers: Option<String>,
    /// Join the running cluster that the members at these base addresses (HOST:PORT,…)
    /// belong to (one that answers is enough): become a learner of every group, catch up,
    /// become a voter. Give it again on every restart of this node (a member stays one; a
    /// node that was removed is refused and must come back with a new --id).
    #[arg(long, requires = "listen", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// This node's base address (HOST:PORT) with --join (with --peers, its own entry there).
    #[arg(long, requires = "join")]
    pub listen: Option<String>,
    /// With --join: how long each group may take to add this node and let it catch up.
    #[arg(long, default_value_t = 300, requires = "join",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub join_timeout_s: u64,
    /// Where this node keeps its WAL (one folder per core).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Cores (executors) to run; each owns the groups g with g % cores == core. The same on
    /// every node [default: 1; with --join: the cluster's].
    #[arg(long)]
    pub cores: Option<u16>,
    /// Raft groups the key space is split into (the same on every node; at most 1048576)
    /// [default: 4; with --join: the cluster's].
    #[arg(long)]
    pub groups: Option<u32>,
    /// Pin core c to CPU c.
    #[arg(long)]
    pub pin: bool,
    /// Length of a Raft tick in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (randomized up to twice this).
    #[arg(long, default_value_t = 20)]
    pub election_ticks: u32,
    /// Ticks between a leader's heartbeats.
    #[arg(long, default_value_t = 2)]
    pub heartbeat_ticks: u32,
    /// When to make the WAL durable.
    #[arg(long, value_enum, default_value_t = SyncFlag::Always)]
    pub sync: SyncFlag,
    /// Serve linearizable reads from the leader's lease (no round trip; the lease ends a
    /// tenth of the election timeout, at least 2 ticks, before a voter may elect another
    /// leader: safe while no node's clock runs more than 5.5% faster than the leader's, with
    /// the default --election-ticks; see the README). Every node must run with it,
    /// and the same --tick-ms and --election-ticks, or none: peers that differ are refused.
    #[arg(long)]
    pub lease_reads: bool,
    /// Send a new commit index to followers at once, as an empty append when no entries are
    /// waiting. Without it the index rides on the next append or heartbeat: followers apply
    /// up to one heartbeat later on an idle group, and a lone write costs two messages fewer.
    #[arg(long)]
    pub broadcast_commit: bool,
    /// Keep every group's timers running when it is idle. By default an idle group whose
    /// followers hold the leader's whole log goes quiet: its leader stops heartbeating and its
    /// followers stop their election timers, until a write, a read or a message wakes it, or
    /// until a follower's node stops hearing the leader's node (each core sends its peers a
    /// keepalive every heartbeat interval), when it campaigns as it would have.
    #[arg(long)]
    pub no_quiesce: bool,
    /// A number shared by every member; nodes of another cluster are refused [default: 1;
    /// with --join: the cluster's].
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// WAL segment size in MiB.
    #[arg(long, default_value_t = 64)]
    pub segment_mib: u64,
    /// Snapshot a group's state and compact its log once this many entries were applied since
    /// its last snapshot (0: never; the WAL then grows without bound). A big state waits until
    /// they hold an eighth of its size, counting 64 bytes each for their place in memory.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_entries: u64,
    /// Also snapshot a group once the entries it applied since its last snapshot hold this
    /// many MiB, or as many bytes as its last snapshot if that is bigger (0: no byte bound).
    /// Bounds the log each group keeps in memory and in the WAL whatever the size of the
    /// writes (a turn's writes to a group share one entry), without rewriting a big state
    /// for every few MiB of log.
    #[arg(long, default_value_t = 8)]
    pub snapshot_log_mib: u64,
    /// When a leader compacts a group's log, keep up to this many of the entries it drops
    /// (and at most 4 MiB of them), back to the follower furthest behind, so that a follower
    /// a little behind (restarted, or cut off for a moment) catches up from the log rather
    /// than by a whole snapshot. Kept in memory only, and by leaders only: a new leader
    /// sends a follower that was behind a snapshot (0: keep none).
    #[arg(long, default_value_t = 5_000)]
    pub snapshot_catch_up_entries: u64,
    /// Once a core's WAL segments hold more than this many MiB, the groups whose old entries
    /// keep its oldest segments alive snapshot early, so that a quiet group (which would not
    /// snapshot for a long time) never makes the WAL grow without bound (0: no limit).
    #[arg(long, default_value_t = 1024)]
    pub wal_soft_limit_mib: u64,
    /// The MiB of keys and values (64 bytes more for each key) this node's groups may hold, shared
    /// evenly by its cores; a leader whose core, or a member of the group that answers, holds its
    /// share refuses writes that may add data (puts, compare-and-swaps, put-if-absents) with a "no
    /// space" error, and takes gets and deletes. Memory is what a state machine runs out of first,
    /// on every member at once (0: no quota) [default: a quarter of the memory this process may
    /// use: the machine's, or its cgroup's limit].
    #[arg(long)]
    pub kv_quota_mib: Option<u64>,
    /// Size of the chunks a snapshot is streamed to a peer in, in KiB (1 to 8192).
    #[arg(long, default_value_t = 1024)]
    pub snapshot_chunk_kib: usize,
    /// Leader balancing: while this node leads at least two more of a core's groups than
    /// another node, plus this many, it hands one at a time to the node that leads the fewest.
    /// A core whose clients reach it only through the other members (its client port cut off
    /// from them) hands them every group it leads, and is handed none for a while.
    #[arg(long, default_value_t = 0, conflicts_with = "no_leader_balance")]
    pub leader_balance_margin: u32,
    /// No leader balancing: leaders stay where elections put them (a node whose log cannot grow,
    /// or that stops, still hands its groups over), even where clients reach a leader only
    /// through the other members.
    #[arg(long)]
    pub no_leader_balance: bool,
    /// Stop, as on SIGTERM, once the process that started this node exits (local clusters
    /// run their nodes so: in a process group of their own, no terminal signal reaches them).
    #[arg(long)]
    pub stop_with_parent: bool,
}

/// The process that starts a node with `--stop-with-parent` may say its pid here: a parent
/// that exits before the node first looks (a demo killed just after it started the node) is
/// then noticed too, where the node would have taken the process that adopted it for its
/// parent, and run on for good (found in review).
pub const PARENT_PID_ENV: &str = "COHORT_PARENT_PID";

/// Sets `stop` once this process's parent exits (it is then adopted by another, so its
/// parent's pid changes), looking every 200 ms.
fn stop_with_parent(stop: Arc<AtomicBool>) -> Result<(), String> {
    let parent = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(std::os::unix::process::parent_id);
    std::thread::Builder::new()
        .name("cohort-parent-watch".to_string())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if std::os::unix::process::parent_id() != parent {
                    // The stop first: `println!` panics on a closed pipe or a full disk,
                    // which left the node running with no parent (found in review).
                    stop.store(true, Ordering::SeqCst);
                    crate::node::say("the process that started this node exited: stopping");
                    return;
                }
                #[allow(clippy::disallowed_methods)] // its own thread, on no executor
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot watch the parent process: {e}"))
}

/// Checks `serve` arguments (`args[0]` names the command) for a node that starts a new
/// cluster, as that node would at start, without starting it.
pub fn check_args(args: &[String]) -> Result<(), String> {
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    let serve = <Serve as clap::Parser>::try_parse_from(args).map_err(|e| e.to_string())?;
    serve.args.bootstrap_config().map(drop)
}

/// Run `cohort serve`: a member of a new cluster (`--peers`), or a node that joins a running
/// one (`--join`). Returns once the node stopped.
pub fn run(args: &ServeArgs) -> Result<(), String> {
    // Set by SIGTERM, SIGHUP or Ctrl-C (see `node::run_until`), by the end of the process that
    // started this node where asked, or by a failed join.
    let stop = Arc::new(AtomicBool::new(false));
    if args.stop_with_parent {
        stop_with_parent(Arc::clone(&stop))?;
    }
    match &args.join {
        Some(seeds) => super::join::run(args, seeds, stop),
        None => crate::node::run_until(args.bootstrap_config()?, stop),
    }
}

impl ServeArgs {
    /// The configuration of a node that starts a new cluster (`--peers`), checked.
    fn bootstrap_config(&self) -> Result<NodeConfig, String> {
        let peers = self.peers.as_deref().ok_or("--peers or --join is needed")?;
        // Taken and ignored before (clap's `requires` let it through): the node listened
        // where --peers said (found in use).
        if let Some(listen) = &self.listen {
            return Err(format!(
                "--listen {listen} goes with --join: with --peers, this node listens at its own \
                 entry there ({}=HOST:PORT)",
                self.id
            ));
        }
        let members = parse_members(peers).map_err(|e| e.to_string())?;
        self.to_config(
            members,
            true,
            self.cluster_id.unwrap_or(1),
            self.cores.unwrap_or(1),
            self.groups.unwrap_or(4),
        )
    }

    pub(super) fn to_config(
        &self,
        members: BTreeMap<NodeId, String>,
        bootstrap: bool,
        cluster_id: u64,
        cores: u16,
        groups: u32,
    ) -> Result<NodeConfig, String> {
        let config = NodeConfig {
            id: NodeId(self.id),
            cluster_id,
            members,
            bootstrap,
            data_dir: self.data_dir.clone(),
            cores,
            groups,
            pin_cores: self.pin,
            tick: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            sync: match self.sync {
                SyncFlag::Always => SyncMode::Always,
                SyncFlag::Never => SyncMode::Never,
            },
            lease_reads: self.lease_reads,
            broadcast_commit: self.broadcast_commit,
            quiesce: !self.no_quiesce,
            segment_bytes: self.segment_mib.saturating_mul(1 << 20),
            snapshot_entries: self.snapshot_entries,
            snapshot_log_bytes: self.snapshot_log_mib.saturating_mul(1 << 20),
            snapshot_catch_up_entries: self.snapshot_catch_up_entries,
            wal_soft_limit_bytes: self.wal_soft_limit_mib.saturating_mul(1 << 20),
            wal_segments_max: 0,
            snapshot_chunk_bytes: self.snapshot_chunk_kib.saturating_mul(1 << 10),
            kv_quota_bytes: match self.kv_quota_mib {
                Some(mib) => mib.saturating_mul(1 << 20),
                None => crate::sys::memory_bytes() / 4,
            },
            leader_balance_margin: (!self.no_leader_balance).then_some(self.leader_balance_margin),
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}
