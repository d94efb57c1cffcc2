//! The settings of one replica, each with its trade-off, validated before use.

use std::fmt;

use super::types::NodeId;

/// Settings of one replica. `Config::new(id)` gives LAN defaults for a 1 ms tick.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's node. Must not be `NodeId::NONE`.
    pub id: NodeId,
    /// Ticks a follower waits without hearing from a leader before it campaigns; the actual
    /// timeout is drawn from `[election_timeout_ticks, 2 * election_timeout_ticks)` so that
    /// split votes resolve. Shorter: faster failover; longer: fewer spurious elections.
    pub election_timeout_ticks: u32,
    /// Ticks between a leader's heartbeats. Must be well below the election timeout; each
    /// heartbeat also confirms a round of ReadIndex reads and renews the lease.
    pub heartbeat_interval_ticks: u32,
    /// Ask "would you vote for me?" before raising the term, so a node that was partitioned
    /// away cannot depose a healthy leader when it returns. Costs one round trip per election.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and a
    /// follower that hears from a leader ignores vote requests for an election timeout.
    /// Needed for lease reads.
    pub check_quorum: bool,
    /// Serve linearizable reads from the leader's lease, with no round trip. Safe only if
    /// clocks advance at nearly the same rate everywhere: see `lease_clock_drift_ticks`.
    pub lease_reads: bool,
    /// How much shorter than an election timeout the lease is, to absorb tick-rate drift
    /// between nodes. Larger: safer under drift, more reads fall back to ReadIndex. With an
    /// election timeout of E ticks and a margin of D, leases are safe while every voter's
    /// clock runs at most (E - 1) / (E - D) times as fast as the leader's (9/8 with the
    /// defaults; `sim::lease_safe_skew_permille`).
    pub lease_clock_drift_ticks: u32,
    /// Most entries in one AppendRequest.
    pub append_entries_max: usize,
    /// Most payload bytes in one AppendRequest (one entry larger than this still travels alone).
    pub append_bytes_max: u64,
    /// Most AppendRequests in flight to one follower before the leader waits for acks.
    pub inflight_appends_max: usize,
    /// Most payload bytes in flight to one follower.
    pub inflight_bytes_max: u64,
    /// Most bytes of proposed but uncommitted entries the leader holds before it refuses new
    /// proposals with `ProposeError::Backpressure` (0: no limit).
    pub uncommitted_bytes_max: u64,
    /// Most ReadIndex requests waiting at once before `ReadError::Backpressure`.
    pub pending_reads_max: usize,
    /// Followers forward proposals to the leader (true) or refuse them with a leader hint.
    /// Off, a leader also drops proposals forwarded to it: no member sends them, so one that
    /// arrives comes from outside the protocol, and its bytes reach the state machine
    /// unchecked by the node's client path.
    pub forward_proposals: bool,
    /// A leader removed from the group by a conf change steps down once it applies it.
    pub step_down_on_removal: bool,
    /// Ticks the leader waits for a snapshot install to be acknowledged before it sends again.
    pub snapshot_retry_ticks: u32,
    /// Tell followers a new commit index as soon as it advances, with an empty append when
    /// no entries are waiting (etcd/raft's way). Off, the index rides on the next append or
    /// heartbeat, at most one heartbeat interval late on an idle group: at low load that
    /// saves an empty append and its answer per follower per write, which otherwise wake
    /// every node again right when the next write arrives. Followers then apply later, so
    /// their stale reads are staler. A conf change still goes out at once: the leader
    /// broadcasts when it applies one.
    pub broadcast_commit: bool,
    /// Most entries a leader's compaction keeps behind its snapshot for followers a little
    /// behind it (only as far back as the lowest follower's match index), so that they catch
    /// up from the log rather than by a whole snapshot (etcd keeps 5,000). In memory only: a
    /// restart drops them. 0: keep none.
    pub catch_up_entries_max: u64,
    /// Most bytes (`Entry::size_bytes`) of entries kept behind a snapshot; the oldest go
    /// first. What a lagging follower's catch-up may cost the leader in memory, per group.
    pub catch_up_bytes_max: u64,
    /// An idle leader whose followers hold its whole log stops heartbeating, and they stop
    /// their election timers, until something changes (see `quiesce.rs`). An idle group then
    /// costs nothing but its tick count, but the caller must wake followers whose leader's
    /// node falls silent ([`crate::raft::Replica::wake_leader_silent`]) or restarts.
    pub quiesce: bool,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            lease_clock_drift_ticks: 2,
            append_entries_max: 1024,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 256,
            inflight_bytes_max: 32 << 20,
            uncommitted_bytes_max: 256 << 20,
            pending_reads_max: 65_536,
            forward_proposals: true,
            step_down_on_removal: true,
            snapshot_retry_ticks: 50,
            broadcast_commit: true,
            catch_up_entries_max: 5_000,
            catch_up_bytes_max: 4 << 20,
            quiesce: false,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let check =
            |ok: bool, reason: &'static str| if ok { Ok(()) } else { Err(ConfigError(reason)) };
        check(!self.id.is_none(), "id must not be 0 (NodeId::NONE)")?;
        check(
            self.heartbeat_interval_ticks > 0,
            "heartbeat_interval_ticks must be > 0",
        )?;
        check(
            self.election_timeout_ticks > self.heartbeat_interval_ticks,
            "election_timeout_ticks must be greater than heartbeat_interval_ticks",
        )?;
        check(
            !self.lease_reads || self.check_quorum,
            "lease_reads needs check_quorum: without it a deposed leader may keep serving reads",
        )?;
        check(
            !self.lease_reads || self.lease_clock_drift_ticks < self.election_timeout_ticks,
            "lease_clock_drift_ticks must be below election_timeout_ticks",
        )?;
        // A voter refuses votes for at least `election - 1` of its ticks after a round, by
        // where in a tick the round reaches it; a lease of `election - drift` ticks fits that
        // at equal clock rates only from a drift of 1, and leaves room for any drift from 2
        // (`sim::lease_safe_skew_permille`).
        check(
            !self.lease_reads || self.lease_clock_drift_ticks >= 2,
            "lease_clock_drift_ticks must be at least 2 with lease_reads: a shorter margin \
             lets a voter elect a new leader inside the old one's lease",
        )?;
        check(
            self.append_entries_max > 0,
            "append_entries_max must be > 0",
        )?;
        check(self.append_bytes_max > 0, "append_bytes_max must be > 0")?;
        check(
            self.inflight_appends_max > 0,
            "inflight_appends_max must be > 0",
        )?;
        check(
            self.inflight_bytes_max > 0,
            "inflight_bytes_max must be > 0",
        )?;
        check(self.pending_reads_max > 0, "pending_reads_max must be > 0")?;
        check(
            self.snapshot_retry_ticks > 0,
            "snapshot_retry_ticks must be > 0",
        )?;
        Ok(())
    }
}

/// A setting is out of range; the text says which and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): a lease margin below 2 ticks, unsafe even with clocks at one
    /// rate, is refused where leases are on, and ignored where they are off.
    #[test]
    fn lease_reads_need_a_margin_of_two_ticks() {
        let mut config = Config::new(NodeId(1));
        config.lease_reads = true;
        for (drift, ok) in [(0, false), (1, false), (2, true)] {
            config.lease_clock_drift_ticks = drift;
            assert_eq!(config.validate().is_ok(), ok, "drift {drift}");
        }
        config.lease_reads = false;
        config.lease_clock_drift_ticks = 0;
        assert!(config.validate().is_ok());
    }
}
