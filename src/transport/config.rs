//! What one core's transport is told at start: who it is, where it listens, who its peers are,
//! and the per-process bounds (defaults from `wire::limits`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft::NodeId;
use crate::wire::{ClusterId, Layout, Timing};

use super::queue::MESSAGE_OVERHEAD_BYTES;
use super::socket::SocketOptions;
use crate::wire::limits::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, HANDSHAKE_TIMEOUT_MS, INBOX_BATCHES_MAX,
    INBOX_BYTES_MAX, MESSAGE_PAYLOAD_BYTES_MAX, PEER_QUEUE_BYTES_MAX, PEER_QUEUE_MESSAGES_MAX,
    PROBE_AFTER_MS, RECONNECT_DELAY_MS_MAX, RECONNECT_DELAY_MS_MIN, RECONNECT_JITTER_PERCENT,
    SOCKET_BUFFER_BYTES, UNACKED_TIMEOUT_MS,
};

/// Connections that may be in their handshake at once; past this, a new connection closes the
/// oldest. A peer completes its handshake in one round trip, so only strangers stay long
/// here, and holding connections open no longer keeps out a peer that dials: it takes the
/// place of one of them. (Strangers opening more than this many connections per round trip
/// still can: that takes a flood, not a few idle sockets.)
pub const HANDSHAKES_PENDING_MAX: usize = 64;

/// The configuration of one core's transport. Build it with [`TransportConfig::new`] and
/// override the bounds where needed; [`TransportConfig::validate`] runs at start.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node. Peers with a larger id are dialed by this node; peers with a smaller id dial
    /// it (see the module doc).
    pub node_id: NodeId,
    /// The core index this transport serves; the peer's handshake must name the same one.
    pub core_index: u16,
    pub cluster_id: ClusterId,
    /// Where this core listens for its peers (port 0: any free port, see
    /// [`super::Transport::local_addr`]).
    pub listen_addr: SocketAddr,
    /// Every peer of this core, with the address of its same-numbered core. Must not name
    /// `node_id` itself.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Queued bytes per peer before `send` answers `Full`: what a dead peer may cost.
    pub peer_queue_bytes_max: usize,
    /// Queued messages per peer before `send` answers `Full`.
    pub peer_queue_messages_max: usize,
    /// Received frames waiting for [`super::Transport::recv`]; past it the readers stop
    /// reading and TCP pushes back on the peers.
    pub inbox_batches_max: usize,
    /// Bytes of received frames waiting for [`super::Transport::recv`] (a frame larger than
    /// this takes all of it); past it the readers stop reading.
    pub inbox_bytes_max: usize,
    /// SO_SNDBUF and SO_RCVBUF of every connection.
    pub socket_buffer_bytes: usize,
    /// How long a connection may take to exchange handshakes (and, for a dialer, to connect).
    pub handshake_timeout: Duration,
    /// How long sent bytes may go unacknowledged before the connection is closed and
    /// dialed again (TCP_USER_TIMEOUT; see `wire::limits::UNACKED_TIMEOUT_MS`).
    pub unacked_timeout: Duration,
    pub reconnect_delay_min: Duration,
    pub reconnect_delay_max: Duration,
    /// Each reconnect delay is moved by up to ± this percentage, drawn from a PRNG seeded with
    /// `jitter_seed` (and the two node ids), so restarts replay and peers do not dial in step.
    pub reconnect_jitter_percent: u64,
    pub jitter_seed: u64,
    /// A peer of a smaller id that nothing was heard from for this long is probed, to learn
    /// whether it removed this node (see `wire::limits::PROBE_AFTER_MS`).
    pub probe_after: Duration,
    /// The incarnation of this core's data, sent in every handshake (0: none, nothing to
    /// refuse this core by). See `incarnations.rs`.
    pub incarnation: u64,
    /// How many times this core has started on that data, this start included.
    pub start: u64,
    /// This core's data is new (its incarnation drawn at this start, with no log): a peer that
    /// recorded it otherwise proves it lost its data, and the transport shuts down.
    pub incarnation_is_new: bool,
    /// Where the incarnations of the peers are recorded; `None` keeps them in memory.
    pub incarnations_file: Option<PathBuf>,
    /// This node's cores and groups, sent in every handshake; a peer of another is refused
    /// (default: not said, nothing checked).
    pub layout: Layout,
    /// This node's tick, election timeout and lease reads, sent in every handshake; with
    /// lease reads on either side, a peer of other timing is refused (default: not said).
    pub timing: Timing,
}

impl TransportConfig {
    /// A configuration with the default bounds of `wire::limits`.
    pub fn new(
        node_id: NodeId,
        core_index: u16,
        cluster_id: ClusterId,
        listen_addr: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> TransportConfig {
        TransportConfig {
            node_id,
            core_index,
            cluster_id,
            listen_addr,
            peers,
            peer_queue_bytes_max: PEER_QUEUE_BYTES_MAX,
            peer_queue_messages_max: PEER_QUEUE_MESSAGES_MAX,
            inbox_batches_max: INBOX_BATCHES_MAX,
            inbox_bytes_max: INBOX_BYTES_MAX,
            socket_buffer_bytes: SOCKET_BUFFER_BYTES,
            handshake_timeout: Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            unacked_timeout: Duration::from_millis(UNACKED_TIMEOUT_MS),
            reconnect_delay_min: Duration::from_millis(RECONNECT_DELAY_MS_MIN),
            reconnect_delay_max: Duration::from_millis(RECONNECT_DELAY_MS_MAX),
            reconnect_jitter_percent: RECONNECT_JITTER_PERCENT,
            jitter_seed: 0,
            probe_after: Duration::from_millis(PROBE_AFTER_MS),
            incarnation: 0,
            start: 0,
            incarnation_is_new: false,
            incarnations_file: None,
            layout: Layout::default(),
            timing: Timing::default(),
        }
    }

    /// What the transport's sockets are tuned with.
    pub fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            buffer_bytes: self.socket_buffer_bytes,
            unacked_timeout: self.unacked_timeout,
        }
    }

    /// Checks the relations the transport relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError { reason });
        if self.node_id.is_none() {
            return fail("node id 0 means \"no node\"".into());
        }
        if self.peers.contains_key(&self.node_id) {
            return fail(format!("node {} lists itself as a peer", self.node_id));
        }
        if let Some(peer) = self.peers.keys().find(|peer| peer.is_none()) {
            return fail(format!("peer id {peer} means \"no node\""));
        }
        let message_bytes_max = MESSAGE_PAYLOAD_BYTES_MAX + MESSAGE_OVERHEAD_BYTES;
        if self.peer_queue_bytes_max < message_bytes_max {
            return fail(format!(
                "peer_queue_bytes_max {} is below the largest message, {message_bytes_max} bytes",
                self.peer_queue_bytes_max
            ));
        }
        if self.peer_queue_messages_max == 0 || self.inbox_batches_max == 0 {
            return fail("queue bounds must be positive".into());
        }
        if self.handshake_timeout.is_zero()
            || self.reconnect_delay_min.is_zero()
            || self.probe_after.is_zero()
        {
            return fail(
                "handshake timeout, reconnect delay and probe_after must be positive".into(),
            );
        }
        // The kernel takes milliseconds in a u32, and zero would mean "the system default".
        if self.unacked_timeout.is_zero() || self.unacked_timeout.as_millis() > u128::from(u32::MAX)
        {
            return fail(format!(
                "unacked_timeout of {:?} is not between 1 ms and {} ms",
                self.unacked_timeout,
                u32::MAX
            ));
        }
        // A frame waits for room for itself alone: one past the whole budget could be
        // overtaken by smaller ones for as long as they keep coming.
        let frame_bytes_max = FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX;
        if self.inbox_bytes_max < frame_bytes_max {
            return fail(format!(
                "inbox_bytes_max {} is below the largest frame, {frame_bytes_max} bytes",
                self.inbox_bytes_max
            ));
        }
        // The backoff counts whole milliseconds, and a delay of more than an hour is a typo.
        let (min, max) = (self.reconnect_delay_min, self.reconnect_delay_max);
        if min < Duration::from_millis(1) || max > Duration::from_secs(3_600) || min > max {
            return fail(format!(
                "reconnect delays of {min:?} to {max:?}: they must go up from at least 1 ms to \
                 at most 1 h"
            ));
        }
        if self.reconnect_jitter_percent >= 100 {
            return fail("reconnect_jitter_percent must be below 100".into());
        }
        Ok(())
    }
}

/// A configuration the transport refuses to start with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transport configuration: {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_config() -> TransportConfig {
        let peers = BTreeMap::from([(NodeId(2), "127.0.0.1:9".parse().unwrap())]);
        TransportConfig::new(
            NodeId(1),
            0,
            ClusterId(1),
            "127.0.0.1:0".parse().unwrap(),
            peers,
        )
    }

    #[test]
    fn the_defaults_are_valid_and_bad_bounds_are_refused_with_a_reason() {
        assert_eq!(valid_config().validate(), Ok(()));
        let refused = |change: fn(&mut TransportConfig)| {
            let mut config = valid_config();
            change(&mut config);
            config.validate().expect_err("refused").reason
        };
        assert!(refused(|c| c.unacked_timeout = Duration::ZERO).contains("unacked_timeout"));
        let too_long = Duration::from_millis(u64::from(u32::MAX) + 1);
        let mut config = valid_config();
        config.unacked_timeout = too_long;
        assert!(config.validate().is_err());
        assert!(
            refused(|c| {
                c.peers.insert(NodeId(1), c.listen_addr);
            })
            .contains("itself")
        );
        let delays = |min_us: u64, max_s: u64| {
            let mut config = valid_config();
            config.reconnect_delay_min = Duration::from_micros(min_us);
            config.reconnect_delay_max = Duration::from_secs(max_s);
            config.validate().err().map(|e| e.reason)
        };
        assert!(delays(2_000_000, 1).unwrap().contains("reconnect delays"));
        // Below a millisecond the backoff, which counts whole ones, would panic.
        assert!(delays(500, 1).is_some());
        assert!(delays(1_000, 7_200).is_some());
        assert_eq!(delays(1_000, 3_600), None);
    }
}
