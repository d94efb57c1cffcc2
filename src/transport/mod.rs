//! The per-core TCP transport between nodes: one connection per peer, batched writes, bounded
//! queues, verified frames.
//!
//! Each core of a node runs one [`Transport`] on its glommio executor. It listens on the
//! core's own address and keeps one connection to the same-numbered core of every peer; that
//! connection carries the Raft messages of every group of the core in both directions (each
//! message names its group, see [`Envelope`]).
//!
//! ```text
//!   shard ── send(peer, envelope) ──▶ PeerQueue (bounded) ─▶ writer: one batch per loop turn
//!                                                              ─▶ frames ─▶ one write
//!   shard ◀── recv() ◀── inbox (bounded) ◀── reader: read, split frames, verify, decode
//! ```
//!
//! **Who dials.** Of two nodes, the one with the smaller id dials and the other accepts, so
//! a pair has exactly one connection and no tie to break when both start at once. A node with
//! a larger id that dials is refused ([`CloseReason::DialedByLargerId`]). The dialer owns
//! reconnection: after a failure it waits a capped, jittered, seeded backoff
//! (`backoff.rs`) and dials again; the acceptor simply waits, and a new connection from a
//! peer replaces the old one (a restarted peer dials before the old socket times out).
//! A node probes a peer of a smaller id that it has heard nothing from for a while
//! (`probe_after`): the probe's handshake asks only whether that peer removed it, and the
//! connection closes once answered. A node removed from the cluster while it was down is
//! dialed by no peer; it learns so from the answer to its dial or probe, and the transport
//! shuts down ([`Transport::told_removed`], [`Transport::set_removed`]).
//!
//! **Peers change.** The config names the peers at start; [`Transport::set_peers`] replaces
//! them as the cluster's membership changes: a new peer gets a queue (and a dialer, if this
//! node has the smaller id), a removed one has its dialer and connection ended and its
//! handshakes refused from then on.
//!
//! **Handshake.** The dialer sends its handshake first; the acceptor checks version, cluster,
//! core index and that the node is a known peer with a smaller id, then answers with its own,
//! which the dialer checks names the node it dialed. Both sides also check the other's data
//! incarnation against the one they recorded at their first connection, and the one the
//! other recorded for them against their own: a node back under its id with another log is
//! refused by the peers that knew it, and finds out from their answer
//! ([`Transport::refused_as_unknown`]; see `incarnations.rs`). A refused connection is closed
//! with the reason logged (`tracing`, warn level) and counted in
//! [`TransportStats::connections_refused`] (not one this node refused because its own disk
//! failed to record the peer: logged at warn level, not counted); the listener keeps serving.
//! See `connection.rs`.
//!
//! **Sending.** [`Transport::send`] never blocks: it queues the message for its peer and wakes
//! that peer's writer, or answers [`SendError::Full`] when the queue is at its bound in bytes
//! or messages (a slow, dead or disconnected peer), so memory stays bounded and Raft sees the
//! peer as unreachable. Messages queue while a peer is disconnected and leave when it
//! connects. After `Full`, wait with [`Transport::wait_for_room`], never by yielding in a
//! loop: glommio polls for I/O only when no task is runnable (or once per preempt period,
//! 100 ms by default), so a task that keeps yielding starves every socket of its executor.
//! The writer runs after the shard's turn, takes everything queued, and writes it
//! as one frame with one write (more only past the frame bounds of `wire::limits`); the
//! frame is written from the encoder's buffer without another copy (`framing.rs`). Each peer
//! has its own writer task, so a stalled peer never delays another. Delivery is
//! at-most-once: messages a writer had taken when its connection failed are lost, which Raft
//! tolerates (it retransmits from its progress state).
//!
//! **Receiving.** The reader reads into a buffer, splits whole frames off it as `Bytes`,
//! checks each (length bound before allocation, checksum, flatbuffers verifier, content),
//! checks every message is from this peer to this node, and hands the batch to the inbox;
//! entry payloads are slices of the frame, not copies (a frame of up to 2 KiB is itself a
//! copy, so it never pins the receive buffer). Any bad frame closes that
//! connection with the reason logged; nothing else is touched. When the inbox is full the
//! readers stop reading and TCP pushes back on the peers. For a while: a receive window
//! kept closed for longer than `unacked_timeout` (5 s) ends the connection on the sending
//! side (TCP_USER_TIMEOUT covers zero-window probes since Linux 5.11), so a core that takes
//! in nothing for that long loses its connections, and what they carried, as a failed one
//! would: the peers dial again, and Raft sends again what was lost.
//!
//! **Sockets** (`socket.rs`): TCP_NODELAY, fixed send and receive buffers, keepalive, and
//! TCP_USER_TIMEOUT, set with socket2 before connect or listen. The last closes a connection
//! whose sent bytes go unacknowledged for `unacked_timeout` (5 s): behind a partition that
//! drops every segment, or a peer host that died without a reset, the kernel would otherwise
//! keep it open for about 15 minutes, and after the heal wait for its next retransmission,
//! which backs off to minutes, before a byte flows again. Every bound is in `wire::limits`
//! or [`TransportConfig`].
//!
//! A transport must be started on a glommio executor thread, and its executor needs locked
//! memory: call [`crate::sys::raise_memlock_limit`] once at process start.
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # use cohort::raft::NodeId;
//! # use cohort::wire::ClusterId;
//! # use cohort::transport::{Transport, TransportConfig};
//! cohort::sys::raise_memlock_limit().expect("locked memory for io_uring");
//! glommio::LocalExecutor::default().run(async {
//!     let peers = BTreeMap::from([(NodeId(2), "10.0.0.2:7000".parse().unwrap())]);
//!     let config = TransportConfig::new(
//!         NodeId(1), 0, ClusterId(42), "0.0.0.0:7000".parse().unwrap(), peers);
//!     let transport = Transport::start(config).expect("listen");
//!     // transport.send(NodeId(2), envelope)?; let inbound = transport.recv().await;
//!     transport.close().await;
//! });
//! ```

mod accept;
mod backoff;
pub(crate) mod budget;
mod config;
mod connection;
mod dial;
mod framing;
mod halves;
mod incarnations;
mod queue;
mod reason;
mod record_writer;
mod shared;
mod signal;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver};

use crate::raft::{MessageBody, NodeId};
use crate::wire::{Envelope, SenderSays};

pub use accept::AcceptFailures;
pub use backoff::Backoff;
pub use config::{ConfigError, HANDSHAKES_PENDING_MAX, TransportConfig};
pub use framing::{FrameReader, ReadFrameError, send_frame, write_frame};
pub use halves::{ReadHalf, WriteHalf, split};
pub use incarnations::DataLost;
pub use queue::{MESSAGE_OVERHEAD_BYTES, SendError};
pub use reason::CloseReason;
pub use shared::{Inbound, TransportStats};
pub use socket::{SocketOptions, dial, keep_alive, listen, listening_socket, tune_accepted};

use shared::{Peer, Shared};
use signal::Stop;

/// Why a transport did not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Listen {
        addr: SocketAddr,
        error: io::Error,
    },
    /// The record of the peers' incarnations could not be read.
    Incarnations(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => error.fmt(f),
            StartError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Incarnations(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// One core's connections to the same core of every peer. See the module doc.
pub struct Transport {
    shared: Rc<Shared>,
    inbox: LocalReceiver<Inbound>,
    local_addr: SocketAddr,
}

impl Transport {
    /// Validates `config`, listens, and starts dialing the peers with larger ids (and
    /// probing the others, see the module doc). Must be
    /// called on a glommio executor thread; the transport's tasks run on that executor.
    pub fn start(config: TransportConfig) -> Result<Transport, StartError> {
        config.validate().map_err(StartError::Config)?;
        let own = incarnations::Seen {
            incarnation: config.incarnation,
            start: config.start,
        };
        let incarnations = incarnations::Incarnations::load(
            own,
            config.incarnation_is_new,
            config.incarnations_file.clone(),
        )
        .map_err(StartError::Incarnations)?;
        let listen = |error| StartError::Listen {
            addr: config.listen_addr,
            error,
        };
        let listener =
            socket::listen(config.listen_addr, config.socket_options()).map_err(listen)?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| listen(error.into()))?;
        let (inbox_sender, inbox) = local_channel::new_bounded(config.inbox_batches_max);
        let inbox_bytes_max = config.inbox_bytes_max;
        let peers = config
            .peers
            .iter()
            .map(|(&id, &addr)| (id, Rc::new(Peer::new(id, addr, &config))))
            .collect();
        let shared = Rc::new(Shared {
            config,
            peers: RefCell::new(peers),
            inbox: inbox_sender,
            shutdown: Default::default(),
            tasks_live: Cell::new(0),
            handshakes_pending: RefCell::default(),
            connections_begun: Cell::new(0),
            stats: Cell::default(),
            renewed: RefCell::default(),
            says: Cell::default(),
            incarnations,
            removed: RefCell::default(),
            told_removed: Stop::default(),
            removed_by: Cell::new(NodeId::NONE),
            inbox_bytes: budget::FifoBudget::new(inbox_bytes_max as u64),
            refusals: Default::default(),
        });
        shared.spawn(accept::accept_loop(Rc::clone(&shared), listener));
        let peers: Vec<Rc<Peer>> = shared.peers.borrow().values().cloned().collect();
        for peer in &peers {
            shared.dial_or_probe(peer);
        }
        Ok(Transport {
            shared,
            inbox,
            local_addr,
        })
    }

    /// The address the listener is bound to (the real port when the config asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// Queues `envelope` for `peer`; it leaves with everything else queued this loop turn.
    /// Never blocks. On error the message is dropped (see [`SendError`]).
    ///
    /// A TimeoutNow is sent only over a connection: one to a peer not connected is dropped,
    /// and each new connection drops those still queued (see `connection::run`). Delivered
    /// when the peer is back, after the transfer it was for ended, it would depose a leader
    /// meant to stay (the heartbeats queued before it tell the peer its leader, found in
    /// review); a leader resends it while its transfer lasts. One already written to the
    /// socket of a connection that then stalls (a partition shorter than the connection's
    /// 5 s timeout) still arrives when it heals: an election the balancer did not ask for,
    /// at worst.
    pub fn send(&self, peer: NodeId, envelope: Envelope) -> Result<(), SendError> {
        if self.shared.shutdown.is_stopped() {
            return Err(SendError::Closed);
        }
        let Some(target) = self.shared.peer(peer) else {
            return Err(SendError::PeerUnknown { peer });
        };
        if matches!(envelope.message.body, MessageBody::TimeoutNow)
            && target.connection.borrow().is_none()
        {
            return Ok(());
        }
        let queued = target.queue.borrow_mut().push(envelope);
        match &queued {
            Ok(()) => target.work.notify(),
            Err(SendError::Full { .. }) => {
                self.shared.count(|stats| stats.sends_refused_full += 1);
            }
            Err(_) => {}
        }
        queued
    }

    /// Waits until `peer`'s queue is at most half full (in bytes and in messages): what a
    /// sender does after [`SendError::Full`] instead of retrying in a loop. Never resolves
    /// while the peer stays unreachable, so race it with the caller's own timer. A peer
    /// removed meanwhile ([`Transport::set_peers`]) ends the wait with
    /// [`SendError::PeerUnknown`].
    ///
    /// One task at a time may wait on a given peer (with this or [`Transport::drained`]).
    pub async fn wait_for_room(&self, peer: NodeId) -> Result<(), SendError> {
        self.wait_for_queue(peer, |queue| queue.is_half_empty())
            .await
    }

    /// Waits until the writer has taken everything queued for `peer` (it is being written to
    /// the socket or has been). Same rules as [`Transport::wait_for_room`].
    pub async fn drained(&self, peer: NodeId) -> Result<(), SendError> {
        self.wait_for_queue(peer, |queue| queue.is_empty()).await
    }

    async fn wait_for_queue(
        &self,
        peer: NodeId,
        ready: impl Fn(&queue::PeerQueue) -> bool,
    ) -> Result<(), SendError> {
        let Some(target) = self.shared.peer(peer) else {
            return Err(SendError::PeerUnknown { peer });
        };
        let wait = async {
            while !ready(&target.queue.borrow()) {
                target.room.notified().await;
            }
            Ok(())
        };
        let closed = async {
            self.shared.shutdown.stopped().await;
            Err(SendError::Closed)
        };
        // Nothing tells a removed peer's queue of room again.
        let removed = async {
            target.removed.stopped().await;
            Err(SendError::PeerUnknown { peer })
        };
        futures_lite::future::or(wait, futures_lite::future::or(closed, removed)).await
    }

    /// Waits until a peer proves this core lost data (its data is new and the peer recorded
    /// other data for it, or the peer saw a later start of it), and says how; the transport
    /// has shut down by then, and the node must stop (see `incarnations.rs`).
    pub async fn refused_as_unknown(&self) -> DataLost {
        self.shared.incarnations.refused().await
    }

    /// The nodes this core's groups removed: one that dials or probes this core, and is no
    /// longer a peer ([`Transport::set_peers`]), is told it was removed, and nothing else.
    pub fn set_removed(&self, removed: BTreeSet<NodeId>) {
        *self.shared.removed.borrow_mut() = removed;
    }

    /// Waits until a peer says this node was removed from the cluster (answering a dial, or
    /// a probe of a peer with a smaller id: see `dial::probe_loop`), and says which peer; the
    /// transport has shut down by then, as this core's groups hold this node no more.
    pub async fn told_removed(&self) -> NodeId {
        self.shared.told_removed.stopped().await;
        self.shared.removed_by.get()
    }

    /// The next received batch of messages, waiting for one. `None` once closed.
    pub async fn recv(&self) -> Option<Inbound> {
        self.inbox.recv().await
    }

    /// The next received batch if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Inbound> {
        futures_lite::future::block_on(futures_lite::future::poll_once(self.inbox.recv())).flatten()
    }

    /// The peers with a new connection since the last call: what was in flight to them on
    /// the one before may be lost (a sender that waits for acknowledgements resends now).
    pub fn take_renewed(&self) -> BTreeSet<NodeId> {
        std::mem::take(&mut *self.shared.renewed.borrow_mut())
    }

    /// Tell every peer, in each batch from now on, what this core says of itself: whether its
    /// log can no longer grow, its key-value state holds its quota, its clients relay.
    pub fn say(&self, says: SenderSays) {
        self.shared.says.set(says);
    }

    /// Sends every connected peer to which nothing is queued an empty batch: a keepalive,
    /// which tells it this core is alive though none of its groups has anything to say (they
    /// went quiet: see `raft::Config::quiesce`). Costs one small frame per peer.
    pub fn keep_alive(&self) {
        for peer in self.shared.peers.borrow().values() {
            if peer.connection.borrow().is_some() && peer.queue.borrow().is_empty() {
                peer.keepalive_due.set(true);
                peer.work.notify();
            }
        }
    }

    /// Whether a connection to `peer` has completed its handshake and not failed since, nor
    /// the transport shut down (by [`Transport::close`], or itself, refused for lost data: its
    /// tasks are then dropped without clearing their slots).
    pub fn is_connected(&self, peer: NodeId) -> bool {
        !self.shared.shutdown.is_stopped()
            && (self.shared.peer(peer)).is_some_and(|peer| peer.connection.borrow().is_some())
    }

    /// Messages and bytes (as charged by the bound) queued for `peer`.
    pub fn queued(&self, peer: NodeId) -> Option<(usize, usize)> {
        let peer = self.shared.peer(peer)?;
        let queue = peer.queue.borrow();
        Some((queue.len(), queue.bytes()))
    }

    pub fn stats(&self) -> TransportStats {
        self.shared.stats.get()
    }

    /// Stops listening and closes every connection, and returns once all the transport's
    /// tasks have ended (so its port can be bound again).
    pub async fn close(self) {
        self.shared.shutdown.stop();
        while self.shared.tasks_live.get() > 0 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        for peer in self.shared.peers.borrow().values() {
            peer.connection.borrow_mut().take();
        }
    }

    /// The peers are now `peers` (this node, if named, is left out): a new peer gets a queue
    /// (and a dialer, if this node has the smaller id); a peer no longer named has its dialer
    /// and connection ended and its queue dropped; a peer whose address changed keeps its
    /// queue and connection, and is dialed at the new address from its next dial on (review
    /// 224: it was removed and added, its queue dropped, its connection ended, and "peer
    /// removed" logged, also where this node never dials it). Membership changes call this;
    /// the peers of a cluster change rarely.
    pub fn set_peers(&self, peers: &BTreeMap<NodeId, SocketAddr>) {
        let shared = &self.shared;
        let me = shared.config.node_id;
        let mut current = shared.peers.borrow_mut();
        let gone: Vec<NodeId> = current
            .keys()
            .filter(|id| !peers.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            let peer = current.remove(&id).expect("listed");
            peer.removed.stop();
            tracing::info!(node = %me, core = shared.config.core_index, peer = %id, "peer removed");
        }
        let mut added = Vec::new();
        for (&id, &addr) in peers {
            if id == me || id.is_none() {
                continue;
            }
            if let Some(peer) = current.get(&id) {
                if peer.addr.replace(addr) != addr {
                    let core = shared.config.core_index;
                    tracing::info!(node = %me, core, peer = %id, %addr, "peer address changed");
                }
                continue;
            }
            let peer = Rc::new(Peer::new(id, addr, &shared.config));
            current.insert(id, Rc::clone(&peer));
            added.push(peer);
            tracing::info!(node = %me, core = shared.config.core_index, peer = %id, %addr, "peer added");
        }
        drop(current);
        for peer in &added {
            shared.dial_or_probe(peer);
        }
    }

    /// The peers this transport knows now.
    pub fn peers(&self) -> Vec<NodeId> {
        self.shared.peers.borrow().keys().copied().collect()
    }

    /// Every peer with the address it is dialed at.
    pub fn peer_addresses(&self) -> BTreeMap<NodeId, SocketAddr> {
        let peers = self.shared.peers.borrow();
        peers
            .iter()
            .map(|(&id, peer)| (id, peer.addr.get()))
            .collect()
    }
}

impl Drop for Transport {
    /// Dropping without [`Transport::close`] stops the tasks too, in the background.
    fn drop(&mut self) {
        self.shared.shutdown.stop();
    }
}
