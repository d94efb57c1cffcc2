//! `cohort serve`: the flags of a node, turned into a checked [`NodeConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::node::{NodeConfig, SyncMode, parse_members};
use crate::raft::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncFlag {
    /// fdatasync the WAL before acknowledging anything that depends on it.
    Always,
    /// Never sync (benchmarks only: a crash of all nodes at once may lose acknowledged writes).
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// This node's id (must appear in --peers).
    #[arg(long)]
    pub id: u64,
    /// Every member, this node included: ID=HOST:PORT,… The port is the node's base port:
    /// core c takes peers on PORT+2c and clients on PORT+2c+1.
    #[arg(long)]
    pub peers: String,
    /// Where this node keeps its WAL (one folder per core).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Cores (executors) to run; each owns the groups g with g % cores == core.
    #[arg(long, default_value_t = 1)]
    pub cores: u16,
    /// Raft groups the key space is split into (the same on every node).
    #[arg(long, default_value_t = 4)]
    pub groups: u32,
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
    /// Serve linearizable reads from the leader's lease (no round trip; assumes clock drift
    /// below the configured margin).
    #[arg(long)]
    pub lease_reads: bool,
    /// A number shared by every member; nodes of another cluster are refused.
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u64,
    /// WAL segment size in MiB.
    #[arg(long, default_value_t = 64)]
    pub segment_mib: u64,
    /// Snapshot a group's state and compact its log once this many entries were applied since
    /// its last snapshot (0: never; the WAL then grows without bound).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_entries: u64,
    /// Leader balancing: while this node leads more than ⌈groups / nodes⌉ of a core's groups
    /// plus this many, it hands one at a time to the node that leads the fewest.
    #[arg(long, default_value_t = 0)]
    pub leader_balance_margin: u32,
    /// No leader balancing: leaders stay where elections put them.
    #[arg(long)]
    pub no_leader_balance: bool,
}

impl ServeArgs {
    pub fn to_config(&self) -> Result<NodeConfig, String> {
        let config = NodeConfig {
            id: NodeId(self.id),
            cluster_id: self.cluster_id,
            members: parse_members(&self.peers).map_err(|e| e.to_string())?,
            data_dir: self.data_dir.clone(),
            cores: self.cores,
            groups: self.groups,
            pin_cores: self.pin,
            tick: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            sync: match self.sync {
                SyncFlag::Always => SyncMode::Always,
                SyncFlag::Never => SyncMode::Never,
            },
            lease_reads: self.lease_reads,
            segment_bytes: self.segment_mib << 20,
            snapshot_entries: self.snapshot_entries,
            leader_balance_margin: (!self.no_leader_balance).then_some(self.leader_balance_margin),
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}
