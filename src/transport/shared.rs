//! The state the tasks of one core's transport share: the configuration, the peers with their
//! queues, the inbox, the shutdown switch and the counters.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::channels::local_channel::LocalSender;

use crate::raft::NodeId;
use crate::repeats::Repeats;
use crate::wire::{Envelope, SenderSays};

use super::config::TransportConfig;
use super::incarnations::Incarnations;
use super::queue::PeerQueue;
use super::reason::CloseReason;
use super::signal::{Notify, Stop};
use crate::wire::handshake::HandshakeError;

/// One received frame's messages, all from the same peer, for any number of groups. Entry
/// payloads are slices of the frame.
#[derive(Debug)]
pub struct Inbound {
    pub from: NodeId,
    pub envelopes: Vec<Envelope>,
    /// What the sending core says of itself (see [`super::Transport::say`]).
    pub sender: SenderSays,
    /// What the messages hold: the frame their payloads are slices of, and what decoding
    /// made besides ([`crate::wire::decoded_bytes`]).
    pub held_bytes: usize,
    /// The frame's share of the transport's inbox bytes
    /// ([`super::TransportConfig::inbox_bytes_max`]), given back when this is dropped.
    pub(super) _held: super::budget::Held,
}

/// Counters of one transport since it started (see [`super::Transport::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections that completed their handshake.
    pub connections_established: u64,
    /// Established connections that ended, for any reason.
    pub connections_closed: u64,
    /// Connections closed because of what the peer sent: a refused handshake, a bad frame, a
    /// misaddressed message (each also logged with its reason).
    pub connections_refused: u64,
    pub frames_sent: u64,
    pub messages_sent: u64,
    pub frames_received: u64,
    pub messages_received: u64,
    /// `send` calls answered `Full`.
    pub sends_refused_full: u64,
    /// Messages the writer could not encode (a sender bug; logged).
    pub messages_dropped_unencodable: u64,
    /// Probes received (handshakes that ask only whether the sender was removed: see
    /// [`super::TransportConfig::probe_after`]), answered or not.
    pub probes_received: u64,
}

pub(super) struct Peer {
    pub id: NodeId,
    /// Where it is dialed (if this node dials it): the next dial reads it.
    pub addr: Cell<SocketAddr>,
    pub queue: RefCell<PeerQueue>,
    /// Wakes the writer of the current connection when the queue gains messages.
    pub work: Notify,
    /// Wakes a task waiting for room in the queue when the writer has taken messages.
    pub room: Notify,
    /// The stop switch of the current connection, if one is established, under the number
    /// it was begun with ([`Shared::connection_number`]).
    pub connection: RefCell<Option<(u64, Rc<Stop>)>>,
    /// Thrown when the peer leaves the membership: its dialer and connection end.
    pub removed: Stop,
    /// Frames received from the peer, on any connection: the dialer starts its backoff over
    /// only after a connection that carried some.
    pub frames_received: Cell<u64>,
    /// The writer owes the peer a frame though nothing is queued: an empty batch, which says
    /// this core is alive (see [`super::Transport::keep_alive`]).
    pub keepalive_due: Cell<bool>,
}

impl Peer {
    pub fn new(id: NodeId, addr: SocketAddr, config: &TransportConfig) -> Peer {
        Peer {
            id,
            addr: Cell::new(addr),
            queue: RefCell::new(PeerQueue::new(
                id,
                config.peer_queue_bytes_max,
                config.peer_queue_messages_max,
            )),
            work: Notify::default(),
            room: Notify::default(),
            connection: RefCell::new(None),
            removed: Stop::default(),
            frames_received: Cell::new(0),
            keepalive_due: Cell::new(false),
        }
    }
}

pub(super) struct Shared {
    pub config: TransportConfig,
    /// The current peers: those of the config at start, then as [`super::Transport::set_peers`]
    /// says.
    pub peers: RefCell<BTreeMap<NodeId, Rc<Peer>>>,
    pub inbox: LocalSender<Inbound>,
    pub shutdown: Stop,
    pub tasks_live: Cell<usize>,
    /// The accepted connections in their handshake, oldest first, each with the signal that
    /// closes it (see `accept::accept_loop`), under the number it was given.
    pub handshakes_pending: RefCell<VecDeque<(u64, Rc<Stop>)>>,
    /// The number the next connection begun (accepted or dialed) gets: see
    /// [`Shared::connection_number`].
    pub connections_begun: Cell<u64>,
    pub stats: Cell<TransportStats>,
    /// Peers with a connection established since [`super::Transport::take_renewed`] last
    /// asked (a set: bounded by the peers, whether anyone asks or not).
    pub renewed: RefCell<BTreeSet<NodeId>>,
    /// Said to every peer in each batch: see [`super::Transport::say`].
    pub says: Cell<SenderSays>,
    pub incarnations: Incarnations,
    /// Bytes of received frames not yet taken from the inbox (see [`Inbound`]).
    pub inbox_bytes: Rc<super::budget::FifoBudget>,
    /// The nodes this core's groups removed (see [`super::Transport::set_removed`]): one that
    /// dials or probes and is no longer a peer is told so.
    pub removed: RefCell<BTreeSet<NodeId>>,
    /// Thrown when a peer said this node was removed, with the peer that said so first; the
    /// transport shuts down (see [`super::Transport::told_removed`]).
    pub told_removed: Stop,
    pub removed_by: Cell<NodeId>,
    /// Refusals warned of lately: one that lasts (a peer of other flags, dialed again every
    /// few seconds) is warned of once a minute, not at each dial.
    pub refusals: RefCell<Repeats>,
}

impl Shared {
    /// A number for a connection as it begins (accepted, or dialed), higher than every one
    /// before: of two connections of a peer, the one begun later replaces the other, however
    /// their handshakes end (a stale connection whose handshake ended last replaced the live
    /// one, found in review).
    pub fn connection_number(&self) -> u64 {
        let number = self.connections_begun.get();
        self.connections_begun.set(number + 1);
        number
    }

    /// Whether this core's groups removed `id`, and no group lists it: a node no longer a peer
    /// is told so (see `connection::accept`).
    pub fn was_removed(&self, id: NodeId) -> bool {
        self.removed.borrow().contains(&id)
    }

    /// Peer `by` said this node was removed: the transport shuts down, and
    /// [`super::Transport::told_removed`] says who said so first.
    pub fn tell_removed(&self, by: NodeId) {
        if !self.told_removed.is_stopped() {
            self.removed_by.set(by);
            self.told_removed.stop();
        }
        self.shutdown.stop();
    }

    pub fn peer(&self, id: NodeId) -> Option<Rc<Peer>> {
        self.peers.borrow().get(&id).cloned()
    }

    /// Starts dialing `peer` if this node is the one that dials it (the smaller id), else
    /// probing it (see `dial::probe_loop`), until it is removed.
    pub fn dial_or_probe(self: &Rc<Self>, peer: &Rc<Peer>) {
        let (shared, peer) = (Rc::clone(self), Rc::clone(peer));
        let dials = peer.id > self.config.node_id;
        self.spawn(async move {
            let removed = Rc::clone(&peer);
            let task = async move {
                match dials {
                    true => super::dial::dial_loop(shared, peer).await,
                    false => super::dial::probe_loop(shared, peer).await,
                }
            };
            futures_lite::future::or(task, removed.removed.stopped()).await;
        });
    }

    pub fn count(&self, update: impl FnOnce(&mut TransportStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Spawns a task of this transport: it ends when `task` does or at shutdown, whichever
    /// comes first (dropping `task`, and with it any socket it holds).
    pub fn spawn(self: &Rc<Self>, task: impl Future<Output = ()> + 'static) {
        let shared = Rc::clone(self);
        shared.tasks_live.set(shared.tasks_live.get() + 1);
        glommio::spawn_local(async move {
            futures_lite::future::or(task, shared.shutdown.stopped()).await;
            shared.tasks_live.set(shared.tasks_live.get() - 1);
        })
        .detach();
    }

    /// Logs the end of an established connection, or the refusal of one, and counts it.
    /// `peer` names the peer: its node id, or its address before a handshake said who it is.
    pub fn log_close(&self, peer: impl fmt::Display, established: bool, reason: &CloseReason) {
        let core = self.config.core_index;
        let node = self.config.node_id;
        if established {
            self.count(|stats| stats.connections_closed += 1);
        }
        // Our own disk failing to record the peer's incarnation is not the peer's fault, nor
        // counted as a refusal, but repeats at each dial as a refusal does: warned of as one,
        // once a minute (review 288: twice a second per core and peer, at the dialers' cap).
        let record_failed = matches!(
            reason,
            CloseReason::Handshake(HandshakeError::RecordFailed { .. })
        );
        if reason.is_peer_fault() {
            self.count(|stats| stats.connections_refused += 1);
        }
        if reason.is_peer_fault() || record_failed {
            // By peer and reason: a reason need not name the peer (another cluster's id), and
            // an accepted peer is known by its address, whose port changes at each dial.
            let peer = peer.to_string();
            let host = match peer.parse::<SocketAddr>() {
                Ok(address) => address.ip().to_string(),
                Err(_) => peer.clone(),
            };
            let kind = format!("{host} {reason}");
            match self.refusals.borrow_mut().admit(&kind) {
                Some(0) => tracing::warn!(%node, core, %peer, %reason, "peer connection closed"),
                Some(more) => tracing::warn!(
                    %node,
                    core,
                    %peer,
                    %reason,
                    "peer connection closed, and {more} times more from this peer (or host) for \
                     this reason since its last warning (warned of once a minute)"
                ),
                None => tracing::debug!(%node, core, %peer, %reason, "peer connection closed"),
            }
        } else if matches!(
            reason,
            CloseReason::Shutdown
                | CloseReason::Superseded
                | CloseReason::PeerRemoved
                | CloseReason::Probe
        ) {
            tracing::debug!(%node, core, %peer, %reason, "peer connection closed");
        } else if established {
            tracing::info!(%node, core, %peer, %reason, "peer connection closed");
        } else {
            tracing::debug!(%node, core, %peer, %reason, "peer connection failed");
        }
    }
}
