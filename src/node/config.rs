//! What a node is told at start, checked before anything is opened or bound.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::proto::topology::{CORES_MAX, GROUPS_MAX, client_address, peer_address};
use crate::raft::NodeId;
use crate::wire::Timing;

/// Bounds of a snapshot chunk: at least 1 KiB, and small enough that a chunk and its
/// message fit one frame with room to spare.
pub const SNAPSHOT_CHUNK_BYTES_MIN: usize = 1 << 10;
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 8 << 20;

/// `--election-ticks` at most: with the default 10 ms tick, almost three hours. Bounded so
/// that the timers' arithmetic (twice it, and a random share of it) cannot overflow.
pub const ELECTION_TICKS_MAX: u32 = 1 << 20;

/// `--tick-ms` at most: a node that stops finishes its turn at its next tick, so SIGTERM
/// waits up to one tick.
pub const TICK_MAX: Duration = Duration::from_secs(10);

/// When the WAL is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync before anything that depends on the write is sent or acknowledged.
    Always,
    /// Never sync: votes and acknowledgements go out before their records are on disk, so the
    /// crash of one machine may lose acknowledged writes and let two leaders win one term.
    /// For separating the cost of the disk from the cost of the engine in benchmarks.
    Never,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub cluster_id: u64,
    /// The members known at start (this node included) with their base addresses `host:P`;
    /// core c listens for peers on `P + 2c` and for clients on `P + 2c + 1`. Once the node
    /// runs, the replicated configuration of its groups says who the members are.
    pub members: BTreeMap<NodeId, String>,
    /// `members` are a new cluster's initial voters: groups never seen start with them. False
    /// for a node that joins a running cluster: its groups start empty and learn everything,
    /// their configuration included, from their leaders.
    pub bootstrap: bool,
    pub data_dir: PathBuf,
    pub cores: u16,
    pub groups: u32,
    /// Pin core c's executor to CPU c (off in tests, where nodes share a machine).
    pub pin_cores: bool,
    pub tick: Duration,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub sync: SyncMode,
    pub lease_reads: bool,
    /// Send a new commit index to followers at once (`raft::Config::broadcast_commit`).
    pub broadcast_commit: bool,
    /// Idle groups stop their timers (`raft::Config::quiesce`).
    pub quiesce: bool,
    /// WAL segment size in bytes.
    pub segment_bytes: u64,
    /// Entries applied since a group's last snapshot before it takes the next (0: never).
    pub snapshot_entries: u64,
    /// Bytes of entries applied since a group's last snapshot before it takes the next
    /// (0: no byte bound).
    pub snapshot_log_bytes: u64,
    /// Entries a leader keeps behind each snapshot for followers a little behind it
    /// (`raft::Config::catch_up_entries_max`; 0: none).
    pub snapshot_catch_up_entries: u64,
    /// Bytes of WAL segments on one core above which the groups whose old entries keep the
    /// oldest segments alive snapshot early (0: no limit).
    pub wal_soft_limit_bytes: u64,
    /// Segments one core's WAL may hold at once, two files each, as the process's open-files
    /// limit leaves them (set at start: see `open_files::wal_segments_max`; 0: no cap). At the
    /// cap the log takes no entries it can avoid until compaction frees a segment.
    pub wal_segments_max: u64,
    /// Bytes per chunk when a snapshot is streamed to a peer.
    pub snapshot_chunk_bytes: usize,
    /// The bytes of keys and values (and 64 a key) the node's groups may hold, shared evenly
    /// by its cores, before their leaders refuse writes that may add data (0: no quota).
    pub kv_quota_bytes: u64,
    /// Hand leaderships over while this node leads at least two more of a core's groups than
    /// another node, plus this many (None: never).
    pub leader_balance_margin: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Parse `1=host:port,2=host:port,…`.
pub fn parse_members(spec: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| error(format!("--peers: `{item}` is not ID=HOST:PORT")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| error(format!("--peers: node id `{id}` is not a number")))?;
        if id == 0 {
            return Err(error("--peers: node id 0 is reserved (it means \"none\")"));
        }
        if members
            .insert(NodeId(id), address.trim().to_string())
            .is_some()
        {
            return Err(error(format!("--peers: node {id} is named twice")));
        }
    }
    Ok(members)
}

impl NodeConfig {
    /// When this node's voters vote and its leases end, as its handshakes and topology say.
    pub fn timing(&self) -> Timing {
        Timing {
            tick_us: u32::try_from(self.tick.as_micros()).unwrap_or(u32::MAX),
            election_ticks: self.election_ticks,
            lease_reads: self.lease_reads,
        }
    }

    /// Check everything that can be checked without touching the machine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NodeId::NONE {
            return Err(error(
                "--id 0 is reserved (it means \"none\"): ids start at 1",
            ));
        }
        if !self.members.contains_key(&self.id) {
            return Err(error(format!(
                "--id {} is not among --peers ({} listed): list every member, this node too",
                self.id,
                self.members.len()
            )));
        }
        if self.members.len() > crate::raft::MEMBERS_MAX {
            return Err(error(format!(
                "{} members, more than a group takes ({}): every member holds every group",
                self.members.len(),
                crate::raft::MEMBERS_MAX
            )));
        }
        if self.cores == 0 || self.groups == 0 {
            return Err(error("--cores and --groups must be at least 1"));
        }
        if self.cores > CORES_MAX {
            return Err(error(format!(
                "--cores {} is more than {CORES_MAX}",
                self.cores
            )));
        }
        if self.groups > GROUPS_MAX {
            return Err(error(format!(
                "--groups {} is more than {GROUPS_MAX}",
                self.groups
            )));
        }
        if self.groups < u32::from(self.cores) {
            return Err(error(format!(
                "--groups {} is below --cores {}: some cores would have nothing to do",
                self.groups, self.cores
            )));
        }
        if self.heartbeat_ticks == 0
            || u64::from(self.election_ticks) <= 2 * u64::from(self.heartbeat_ticks)
            || self.election_ticks > ELECTION_TICKS_MAX
        {
            return Err(error(format!(
                "--election-ticks ({}) must be more than twice --heartbeat-ticks ({}), \
                 which must be at least 1, and at most {ELECTION_TICKS_MAX}",
                self.election_ticks, self.heartbeat_ticks
            )));
        }
        let segment_bytes = crate::wal::SEGMENT_BYTES_MIN..=crate::wal::SEGMENT_BYTES_MAX;
        if !segment_bytes.contains(&self.segment_bytes)
            || !self.segment_bytes.is_multiple_of(1 << 20)
        {
            return Err(error(format!(
                "--segment-mib must be a whole number of MiB in 1..={}",
                crate::wal::SEGMENT_BYTES_MAX >> 20
            )));
        }
        // Every WAL segment opens with a line per group of its core: that must leave most of
        // the segment to entries.
        let groups_per_core = self.groups.div_ceil(u32::from(self.cores)) as usize;
        let checkpoint_bytes = crate::wal::checkpoint_bytes(groups_per_core) as u64;
        if checkpoint_bytes > self.segment_bytes / 2 {
            return Err(error(format!(
                "--groups {} on --cores {} puts {groups_per_core} groups on a core, whose WAL \
                 segments would each open with {checkpoint_bytes} bytes of their state, more \
                 than half a segment (--segment-mib {}): use more cores, fewer groups or \
                 larger segments",
                self.groups,
                self.cores,
                self.segment_bytes >> 20
            )));
        }
        if !(SNAPSHOT_CHUNK_BYTES_MIN..=SNAPSHOT_CHUNK_BYTES_MAX)
            .contains(&self.snapshot_chunk_bytes)
        {
            return Err(error(format!(
                "--snapshot-chunk-kib {} is outside {}..={} (a chunk must fit a frame)",
                self.snapshot_chunk_bytes >> 10,
                SNAPSHOT_CHUNK_BYTES_MIN >> 10,
                SNAPSHOT_CHUNK_BYTES_MAX >> 10
            )));
        }
        if self.tick.is_zero() || self.tick > TICK_MAX {
            return Err(error(format!(
                "--tick-ms must be between 1 and {} (a stopping node waits up to one tick)",
                TICK_MAX.as_millis()
            )));
        }
        for (id, base) in &self.members {
            crate::proto::members::check_address(base)
                .map_err(|e| error(format!("member {id}: {e}")))?;
            let last_core = self.cores - 1;
            for address in [peer_address(base, 0), client_address(base, last_core)] {
                let address = address.ok_or_else(|| {
                    error(format!(
                        "member {id}: `{base}` is not HOST:PORT with room for {} ports above it",
                        2 * u32::from(self.cores)
                    ))
                })?;
                // Only this node's own addresses must resolve now (it binds them). Another
                // member's name may not resolve yet (a peer whose DNS record comes with it)
                // or any more (a dead member's): each core resolves it again until it does
                // (`node::resolve`), and the node starts meanwhile.
                if *id == self.id {
                    resolve(&address)?;
                }
            }
        }
        match self.bootstrap {
            true => self.refuse_shared_ports(),
            // A joining node's members are its seed's, which may still list a member removed
            // a moment ago, whose address this node takes over.
            false => Ok(()),
        }
    }

    /// Two members written with the same host whose port ranges overlap (in `--peers`) would
    /// each bind some of the other's ports: the second to start waits for them forever.
    fn refuse_shared_ports(&self) -> Result<(), ConfigError> {
        let span = 2 * u32::from(self.cores);
        let ranges: Vec<(NodeId, &str, u32)> = (self.members.iter())
            .filter_map(|(id, base)| {
                let (host, port) = base.rsplit_once(':')?;
                Some((*id, host, u32::from(port.parse::<u16>().ok()?)))
            })
            .collect();
        for (i, (id, host, port)) in ranges.iter().enumerate() {
            for (other, other_host, other_port) in &ranges[i + 1..] {
                if host == other_host && port.abs_diff(*other_port) < span {
                    return Err(error(format!(
                        "members {id} and {other} share ports on {host}: each node takes \
                         {span} ports from its own (two per core, --cores {}), so their ports \
                         must be at least {span} apart",
                        self.cores
                    )));
                }
            }
        }
        Ok(())
    }

    fn base(&self, id: NodeId) -> &str {
        &self.members[&id]
    }

    /// Where core `core` of node `id` takes peer connections.
    pub fn peer_addr(&self, id: NodeId, core: u16) -> Result<SocketAddr, ConfigError> {
        let address = peer_address(self.base(id), core)
            .ok_or_else(|| error(format!("member {id}: bad address")))?;
        resolve(&address)
    }

    /// Where core `core` of node `id` takes client connections.
    pub fn client_addr(&self, id: NodeId, core: u16) -> Result<SocketAddr, ConfigError> {
        let address = client_address(self.base(id), core)
            .ok_or_else(|| error(format!("member {id}: bad address")))?;
        resolve(&address)
    }

    /// The groups core `core` runs: every group g with g % cores == core.
    pub fn groups_of_core(&self, core: u16) -> impl Iterator<Item = u32> + use<> {
        let cores = u32::from(self.cores);
        (u32::from(core)..self.groups).step_by(cores as usize)
    }
}

fn resolve(address: &str) -> Result<SocketAddr, ConfigError> {
    address
        .to_socket_addrs()
        .map_err(|e| error(format!("cannot resolve `{address}`: {e}")))?
        .next()
        .ok_or_else(|| error(format!("`{address}` resolves to nothing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            id: NodeId(1),
            cluster_id: 1,
            members: parse_members("1=127.0.0.1:7000,2=127.0.0.1:7100,3=127.0.0.1:7200").unwrap(),
            bootstrap: true,
            data_dir: PathBuf::from("/tmp/x"),
            cores: 2,
            groups: 5,
            pin_cores: false,
            tick: Duration::from_millis(10),
            election_ticks: 10,
            heartbeat_ticks: 2,
            sync: SyncMode::Always,
            lease_reads: false,
            broadcast_commit: false,
            quiesce: true,
            segment_bytes: 64 << 20,
            snapshot_entries: 100_000,
            snapshot_log_bytes: 8 << 20,
            snapshot_catch_up_entries: 5_000,
            wal_soft_limit_bytes: 1 << 30,
            wal_segments_max: 0,
            snapshot_chunk_bytes: 1 << 20,
            kv_quota_bytes: 0,
            leader_balance_margin: Some(0),
        }
    }

    /// Goal: a node starts while another member's name does not resolve, and refuses its
    /// own. Method: a fourth member named under `.invalid` (which never resolves, RFC 6761).
    #[test]
    fn only_this_nodes_own_addresses_must_resolve() {
        let mut config = config();
        let unresolvable = "cohort-4.invalid:7300".to_string();
        config.members.insert(NodeId(4), unresolvable.clone());
        config
            .validate()
            .expect("another member's name may resolve later");
        config.id = NodeId(4);
        let refused = config.validate().expect_err("its own name must resolve");
        assert!(
            refused.to_string().contains("cohort-4.invalid"),
            "{refused}"
        );
    }

    #[test]
    fn a_good_config_passes_and_places_ports_and_groups() {
        let config = config();
        config.validate().unwrap();
        // Ports just far enough apart on one host, or the same ports on another host.
        let mut neighbours = config.clone();
        neighbours
            .members
            .insert(NodeId(4), "127.0.0.1:7204".into());
        neighbours
            .members
            .insert(NodeId(5), "127.0.0.2:7200".into());
        neighbours.validate().unwrap();
        // A joining node takes its seed's members, which may still list one just removed
        // whose address it takes over (found in review).
        let mut joining = config.clone();
        joining.members.insert(NodeId(4), "127.0.0.1:7200".into());
        (joining.id, joining.bootstrap) = (NodeId(4), false);
        joining.validate().unwrap();
        assert_eq!(config.peer_addr(NodeId(2), 1).unwrap().port(), 7102);
        assert_eq!(config.client_addr(NodeId(2), 1).unwrap().port(), 7103);
        assert_eq!(config.groups_of_core(0).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(config.groups_of_core(1).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        type Breakage = fn(&mut NodeConfig);
        let cases: Vec<(Breakage, &str)> = vec![
            (|c| c.id = NodeId(9), "not among --peers"),
            (|c| c.cores = 0, "at least 1"),
            (|c| (c.cores, c.groups) = (1025, 2048), "more than 1024"),
            (|c| c.tick = Duration::from_secs(11), "--tick-ms"),
            (|c| c.groups = 1, "below --cores"),
            (|c| c.groups = GROUPS_MAX + 1, "more than 1048576"),
            (|c| c.election_ticks = 4, "more than twice"),
            (|c| c.heartbeat_ticks = u32::MAX, "more than twice"),
            (|c| c.election_ticks = u32::MAX, "at most"),
            (|c| c.segment_bytes = 0, "--segment-mib"),
            (|c| c.segment_bytes = 8 << 30, "--segment-mib"),
            (
                |c| (c.segment_bytes, c.groups) = (1 << 20, 2 * 10_000),
                "more than half a segment",
            ),
            (
                |c| c.snapshot_chunk_bytes = 64 << 20,
                "--snapshot-chunk-kib",
            ),
            (
                |c| {
                    c.members.insert(NodeId(4), "nowhere".into());
                },
                "not HOST:PORT",
            ),
            (
                |c| {
                    c.members.insert(NodeId(4), "127.0.0.1:7203".into());
                },
                "members 3 and 4 share ports on 127.0.0.1",
            ),
            (
                |c| {
                    for id in 4..=crate::raft::MEMBERS_MAX as u64 + 1 {
                        c.members.insert(NodeId(id), format!("127.0.0.{id}:7000"));
                    }
                },
                "65 members, more than a group takes",
            ),
            // Found in review: a joining node's --id 0 was refused only by the leader, after
            // the data dir recorded it; a long address panicked the node at its start (too
            // long for a conf change); a base port 0 ran the node cut off from everyone.
            (
                |c| {
                    c.members.insert(NodeId::NONE, "127.0.0.1:7300".into());
                    c.id = NodeId::NONE;
                },
                "--id 0 is reserved",
            ),
            (
                |c| {
                    c.members
                        .insert(NodeId(4), format!("{}:7300", "h".repeat(300)));
                },
                "member 4: address of 305 bytes",
            ),
            (
                |c| {
                    c.members.insert(NodeId(4), "127.0.0.1:0".into());
                },
                "member 4: address `127.0.0.1:0` is not HOST:PORT (a port from 1)",
            ),
        ];
        for (breakage, expected) in cases {
            let mut config = config();
            breakage(&mut config);
            let message = config.validate().unwrap_err().0;
            assert!(message.contains(expected), "{message}");
        }
        assert!(
            parse_members("1=a:1,1=b:2")
                .unwrap_err()
                .0
                .contains("twice")
        );
        assert!(
            parse_members("x=a:1")
                .unwrap_err()
                .0
                .contains("not a number")
        );
        assert!(parse_members("0=a:1").unwrap_err().0.contains("reserved"));
        assert!(parse_members("a:1").unwrap_err().0.contains("ID=HOST:PORT"));
    }
}
