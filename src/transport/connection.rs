//! One established peer connection: the handshake that opens it (dialing or accepted), and
//! the reader and writer that serve it until it fails, is replaced, or the transport stops.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::raft::NodeId;
use crate::wire::handshake::HandshakeError;
use crate::wire::{ClusterId, DecodedFrame, FrameEncoder, Handshake, decode_frame, decoded_bytes};

use super::framing::{FrameReader, FrameWriter, ReadFrameError};
use super::halves::{ReadHalf, WriteHalf};
use super::reason::CloseReason;
use super::shared::{Inbound, Peer, Shared};
use super::signal::Stop;
use super::socket;

/// The largest handshake frame accepted: a handshake is about 60 bytes, and a stranger must
/// not make us allocate a full frame before it has said who it is.
const HANDSHAKE_FRAME_BYTES_MAX: usize = 512;

/// The writer's batch vector keeps at most this capacity between turns, so one burst does
/// not pin its memory for the life of the connection.
const BATCH_CAPACITY_RETAINED_MAX: usize = 65_536;

/// Runs `future`, or gives up with [`CloseReason::HandshakeTimeout`] after `limit`.
pub(super) async fn with_timeout<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, CloseReason>>,
) -> Result<T, CloseReason> {
    or(future, async {
        glommio::timer::sleep(limit).await;
        Err(CloseReason::HandshakeTimeout)
    })
    .await
}

/// Sends our handshake to `to`, with the incarnation we recorded for it; a probe's if `probe`
/// (see [`probe`]).
async fn send_handshake<S: AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    to: NodeId,
    probe: bool,
) -> Result<(), CloseReason> {
    let config = &shared.config;
    let (own, receiver) = (shared.incarnations.own(), shared.incarnations.recorded(to));
    let ours = Handshake {
        incarnation: own.incarnation,
        incarnation_of_receiver: receiver.incarnation,
        start: own.start,
        start_of_receiver: receiver.start,
        layout: config.layout,
        timing: config.timing,
        receiver: to,
        probe,
        ..Handshake::current(config.cluster_id, config.node_id, config.core_index)
    };
    write_handshake(stream, &ours).await
}

async fn write_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    handshake: &Handshake,
) -> Result<(), CloseReason> {
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_handshake(handshake)
        .expect("a handshake is a few dozen bytes and always fits a frame");
    stream.write_all(&encoder.to_frame_vec()).await?;
    Ok(())
}

/// If `theirs` is the answer that this node was removed (from `peer`, the node dialed), the
/// transport shuts down ([`Shared::tell_removed`]) and the dial fails saying so.
fn heed_removed(shared: &Shared, peer: &Peer, theirs: &Handshake) -> Result<(), CloseReason> {
    let config = &shared.config;
    if !theirs.says_removed(config.cluster_id, config.node_id, peer.id) {
        return Ok(());
    }
    shared.tell_removed(peer.id);
    Err(HandshakeError::ThisNodeRemoved { node_id: peer.id }.into())
}

/// Asks `peer`, a node of a smaller id (which dials this one, never the other way), whether
/// it removed this node: its answer, a handshake saying so, is the only one it gives
/// ([`heed_removed`]); otherwise it closes the connection ([`CloseReason::Probe`]).
pub(super) async fn probe(shared: &Shared, peer: &Peer) -> CloseReason {
    let config = &shared.config;
    let asked = async {
        let mut stream = socket::dial(peer.addr.get(), config.socket_options())?;
        send_handshake(shared, &mut stream, peer.id, true).await?;
        let mut reader = FrameReader::new(HANDSHAKE_FRAME_BYTES_MAX);
        let theirs = receive_handshake(&mut stream, &mut reader).await?;
        heed_removed(shared, peer, &theirs)?;
        Ok(())
    };
    match with_timeout(config.handshake_timeout, asked).await {
        // What a peer that holds this node does: close.
        Ok(()) | Err(CloseReason::PeerClosed) => CloseReason::Probe,
        Err(reason) => reason,
    }
}

async fn receive_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut FrameReader,
) -> Result<Handshake, CloseReason> {
    let frame = match reader.read_frame(stream).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(CloseReason::PeerClosed),
        Err(ReadFrameError::Io(error)) => return Err(error.into()),
        Err(ReadFrameError::Frame(error)) => return Err(error.into()),
    };
    match decode_frame(&frame)? {
        DecodedFrame::Handshake(handshake) => Ok(handshake),
        other => Err(HandshakeError::NotAHandshake {
            kind: frame_kind(&other),
        }
        .into()),
    }
}

fn frame_kind(frame: &DecodedFrame) -> &'static str {
    match frame {
        DecodedFrame::Handshake(_) => "handshake",
        DecodedFrame::Raft { .. } => "raft batch",
        DecodedFrame::Client { body } => body,
    }
}

/// Connects to `peer` and exchanges handshakes: ours first, then theirs, which must name the
/// peer we dialed. Returns the stream and the reader holding any bytes after the handshake.
pub(super) async fn dial(
    shared: &Shared,
    peer: &Peer,
) -> Result<(TcpStream, FrameReader), CloseReason> {
    let config = &shared.config;
    let mut stream = socket::dial(peer.addr.get(), config.socket_options())?;
    send_handshake(shared, &mut stream, peer.id, false).await?;
    let mut reader = FrameReader::new(HANDSHAKE_FRAME_BYTES_MAX);
    let theirs = receive_handshake(&mut stream, &mut reader).await?;
    heed_removed(shared, peer, &theirs)?;
    let expected = (config.layout, config.timing);
    theirs.check(config.cluster_id, config.core_index, expected, |_| true)?;
    if theirs.node_id != peer.id {
        return Err(HandshakeError::NodeUnexpected {
            node_id: theirs.node_id,
            node_id_expected: peer.id,
        }
        .into());
    }
    let checked = shared.incarnations.check_and_record(&theirs).await;
    shut_down_if_refused(shared);
    checked?;
    reader.allow_full_frames();
    Ok((stream, reader))
}

/// Reads and checks the handshake of an accepted connection, and answers with ours only if
/// it passes (a refused peer learns nothing about this node), or if the peer is a member whose
/// data contradicts a record (see `incarnations.rs`), so that it learns which we recorded, or
/// one run with another layout, initial voters or timing, or one that meant another node, so
/// that it says why too (it dialed, and would see only a closed connection). A handshake
/// meant for another node is refused before it is compared with any record.
pub(super) async fn accept(
    shared: &Shared,
    mut stream: TcpStream,
) -> Result<(Rc<Peer>, TcpStream, FrameReader), CloseReason> {
    let config = &shared.config;
    let mut reader = FrameReader::new(HANDSHAKE_FRAME_BYTES_MAX);
    let theirs = receive_handshake(&mut stream, &mut reader).await?;
    let checked = theirs.check(
        config.cluster_id,
        config.core_index,
        (config.layout, config.timing),
        |node_id| shared.peer(node_id).is_some(),
    );
    if let Err(HandshakeError::NodeUnknown { node_id }) = checked
        && shared.was_removed(node_id)
    {
        // Its only answer: a node removed while it was down learns so, and stops.
        let at = (config.node_id, config.core_index);
        let _ = write_handshake(
            &mut stream,
            &Handshake::removed(config.cluster_id, at, node_id),
        )
        .await;
        return Err(HandshakeError::NodeRemoved { node_id }.into());
    }
    if theirs.probe {
        // Anything else, it learns nothing from: a peer that dials it knows it.
        shared.count(|stats| stats.probes_received += 1);
        return Err(CloseReason::Probe);
    }
    match checked {
        Err(
            HandshakeError::LayoutMismatch { .. }
            | HandshakeError::TimingMismatch { .. }
            | HandshakeError::FoundersMismatch { .. },
        ) => {
            let _ = send_handshake(shared, &mut stream, theirs.node_id, false).await;
        }
        // A node of another protocol version learns why (found in review: it saw a closed
        // connection), from a handshake that says the version alone: nothing of this node.
        Err(HandshakeError::VersionUnsupported { .. }) => {
            let only_version = Handshake::current(ClusterId(0), NodeId(0), 0);
            let mut encoder = FrameEncoder::new();
            if encoder.encode_handshake(&only_version).is_ok() {
                let _ = stream.write_all(&encoder.to_frame_vec()).await;
            }
        }
        _ => {}
    }
    checked?;
    if let Err(error) = theirs.check_receiver(config.node_id) {
        // Our answer makes the dialer say who answered: its list of members is out of date.
        let _ = send_handshake(shared, &mut stream, theirs.node_id, false).await;
        return Err(error.into());
    }
    if theirs.node_id > config.node_id {
        return Err(CloseReason::DialedByLargerId {
            node_id: theirs.node_id,
        });
    }
    if let Err(error) = shared.incarnations.check_and_record(&theirs).await {
        // Shuts the transport down if this refusal proved our data lost, once our answer
        // went out or its sending was given up.
        let _shut_down = ShutDownIfRefused(shared);
        // A member of this cluster whose data contradicts a record: our handshake tells it
        // which we recorded, so that it finds out too, whichever of us changed. Not where
        // our own disk failed to keep the record: answered, the dialer took the connection
        // for established, and said so at each dial while its warning of failed dials never
        // came (found in review).
        if !matches!(error, HandshakeError::RecordFailed { .. }) {
            let _ = send_handshake(shared, &mut stream, theirs.node_id, false).await;
        }
        return Err(error.into());
    }
    send_handshake(shared, &mut stream, theirs.node_id, false).await?;
    if shared.incarnations.is_refused() {
        // Another connection proved our data lost while we answered.
        return Err(CloseReason::Shutdown);
    }
    reader.allow_full_frames();
    // Removed while the handshake was under way: refused like any unknown node.
    let peer = shared
        .peer(theirs.node_id)
        .ok_or(CloseReason::PeerRemoved)?;
    Ok((peer, stream, reader))
}

/// Once a peer proved this core lost its data, the whole transport shuts down at once: no
/// connection carries another message from it.
fn shut_down_if_refused(shared: &Shared) {
    if shared.incarnations.is_refused() {
        shared.shutdown.stop();
    }
}

/// [`shut_down_if_refused`] when dropped, however the task holding it ends.
struct ShutDownIfRefused<'a>(&'a Shared);

impl Drop for ShutDownIfRefused<'_> {
    fn drop(&mut self) {
        shut_down_if_refused(self.0);
    }
}

/// Serves an established connection, begun as `number` (see `Shared::connection_number`),
/// until it fails or a connection of the same peer begun later replaces it; returns why it
/// ended, and whether it was established (counted so). The caller logs the reason. One begun
/// before the peer's current one ends at once, never established.
pub(super) async fn run(
    shared: &Shared,
    peer: &Peer,
    stream: TcpStream,
    reader: FrameReader,
    number: u64,
) -> (CloseReason, bool) {
    let stop = Rc::new(Stop::default());
    let previous = {
        let mut slot = peer.connection.borrow_mut();
        if slot.as_ref().is_some_and(|(current, _)| *current > number) {
            return (CloseReason::Superseded, false);
        }
        slot.replace((number, Rc::clone(&stop)))
    };
    if let Some((_, previous)) = previous {
        previous.stop();
        // Whatever the old writer was woken for is this one's to send.
        peer.work.notify();
    }
    // Queued over a connection that is gone (dead before anyone noticed): the transfer they
    // were for may be over (see `Transport::send`).
    peer.queue.borrow_mut().drop_timeout_nows();
    shared.count(|stats| stats.connections_established += 1);
    shared.renewed.borrow_mut().insert(peer.id);
    tracing::info!(
        node = %shared.config.node_id,
        core = shared.config.core_index,
        peer = %peer.id,
        "peer connection established"
    );
    let (read_half, write_half) = super::halves::split(stream);
    let serve = or(
        read_loop(shared, peer, read_half, reader),
        write_loop(shared, peer, write_half),
    );
    let superseded = async {
        stop.stopped().await;
        CloseReason::Superseded
    };
    let removed = async {
        peer.removed.stopped().await;
        CloseReason::PeerRemoved
    };
    let superseded = or(superseded, removed);
    // The stop first: a superseded connection must not poll its writer again, which would
    // put its waker in the peer's one `work` slot over the new connection's and leave the
    // new writer asleep until the peer happened to send something.
    let reason = or(superseded, serve).await;
    let mut slot = peer.connection.borrow_mut();
    if slot
        .as_ref()
        .is_some_and(|(_, current)| Rc::ptr_eq(current, &stop))
    {
        *slot = None;
    }
    (reason, true)
}

async fn read_loop(
    shared: &Shared,
    peer: &Peer,
    mut stream: ReadHalf<TcpStream>,
    mut reader: FrameReader,
) -> CloseReason {
    loop {
        let mut delivered = false;
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return error.into(),
            };
            if let Err(reason) = deliver(shared, peer.id, &frame).await {
                return reason;
            }
            peer.frames_received.set(peer.frames_received.get() + 1);
            delivered = true;
        }
        if delivered {
            // Let the consumer run before the next read: once it has dropped the frames,
            // the receive buffer is ours alone again and the next read reuses it (already
            // faulted in) instead of allocating fresh pages. One yield per read, not a loop.
            futures_lite::future::yield_now().await;
        }
        match reader.fill(&mut stream).await {
            Ok(0) => return CloseReason::PeerClosed,
            Ok(_) => {}
            Err(error) => return error.into(),
        }
    }
}

/// Decodes one frame and hands its messages to the inbox, waiting while the inbox is full
/// (which stops this reader, and TCP then stops the peer).
async fn deliver(shared: &Shared, peer: NodeId, frame: &Bytes) -> Result<(), CloseReason> {
    let (envelopes, sender) = match decode_frame(frame)? {
        DecodedFrame::Raft { envelopes, sender } => (envelopes, sender),
        other => {
            return Err(CloseReason::FrameUnexpected {
                kind: frame_kind(&other),
            });
        }
    };
    let node = shared.config.node_id;
    let misaddressed = envelopes
        .iter()
        .find(|envelope| envelope.message.from != peer || envelope.message.to != node);
    if let Some(envelope) = misaddressed {
        return Err(CloseReason::MessageMisaddressed {
            from: envelope.message.from,
            to: envelope.message.to,
        });
    }
    let messages = envelopes.len() as u64;
    shared.count(|stats| {
        stats.frames_received += 1;
        stats.messages_received += messages;
    });
    // Wait for the frame's share of the inbox's bytes first (this reader then stops, and TCP
    // stops the peer): frames waiting are bounded in bytes, not only in number. A frame
    // weighs what its messages hold, the frame and what decoding made besides; frames are
    // admitted in the order they came, so another peer's stream of small ones never holds a
    // large one back.
    let held_bytes = frame.len() + decoded_bytes(&envelopes);
    let units = held_bytes.min(shared.config.inbox_bytes_max) as u64;
    let held = shared.inbox_bytes.acquire(units).await;
    let inbound = Inbound {
        from: peer,
        envelopes,
        sender,
        held_bytes,
        _held: held,
    };
    shared
        .inbox
        .send(inbound)
        .await
        .map_err(|_| CloseReason::Shutdown)
}

/// Waits for queued messages, takes all of them, and writes them as one batch: everything
/// queued during a loop turn of the shard leaves in one write.
async fn write_loop(shared: &Shared, peer: &Peer, mut stream: WriteHalf<TcpStream>) -> CloseReason {
    let mut writer = FrameWriter::new();
    let mut batch = Vec::new();
    loop {
        while peer.queue.borrow().is_empty() && !peer.keepalive_due.get() {
            peer.work.notified().await;
        }
        peer.keepalive_due.set(false);
        // Woken before a shutdown in the same turn (this core found to have lost its data,
        // say): the queue goes nowhere (found in review: one more batch left).
        if shared.shutdown.is_stopped() {
            return CloseReason::Shutdown;
        }
        peer.queue.borrow_mut().take_into(&mut batch);
        peer.room.notify();
        writer.set_sender(shared.says.get());
        let outcome = writer.write_batch(&mut stream, &batch).await;
        shared.count(|stats| {
            stats.frames_sent += outcome.frames as u64;
            stats.messages_sent += outcome.messages_written as u64;
            stats.messages_dropped_unencodable += outcome.messages_dropped as u64;
        });
        if let Some(error) = outcome.encode_error {
            tracing::error!(
                node = %shared.config.node_id,
                peer = %peer.id,
                dropped = outcome.messages_dropped,
                %error,
                "messages dropped: they do not fit a frame"
            );
        }
        if let Some(error) = outcome.write_error {
            return error.into();
        }
        batch.clear();
        if batch.capacity() > BATCH_CAPACITY_RETAINED_MAX {
            batch = Vec::new();
        }
    }
}
