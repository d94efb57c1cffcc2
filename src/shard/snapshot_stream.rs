//! Snapshots on the wire: the Raft core sends and takes a snapshot whole
//! (`InstallSnapshot`); between nodes it travels as bounded chunks, acknowledged by the
//! receiver, resumable, and checked with a crc32 of the whole.
//!
//! Sender, per (peer, group): the core's `InstallSnapshot` starts a stream that holds the
//! snapshot's bytes (a reference, not a copy) until the peer acknowledged all of them, however
//! far the log moves on meanwhile. At most `window_chunks` chunks are unacknowledged at a
//! time, so a snapshot never fills the peer's queue ahead of other groups' appends. The core
//! sends the same snapshot again after a while without an answer: that continues the running
//! stream, never restarts it; a different snapshot replaces a stream only once that stream
//! has made no progress for `abandon_ticks`, or at once if it sent nothing yet (it waits its
//! turn behind the peer's other streams). Without progress for `stall_ticks`, the
//! unacknowledged window is sent again. A snapshot the peer acknowledged whole before, offered
//! again, goes first as one empty chunk, answered "all received" while the peer still holds it.
//!
//! Receiver, per (peer, group): chunks are appended in order; each is answered with the bytes
//! held so far. A chunk past a hole (chunks lost with a dropped connection) or of a stream the
//! receiver does not hold (it restarted) is answered with `gap` and the sender resumes from
//! what the receiver holds, not from the start. A whole snapshot whose crc32 does not match is
//! dropped and asked for again from byte 0; a matching one goes to the core as one
//! `InstallSnapshot`.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::proto::status::SnapshotSent;
use crate::raft::{
    GroupId, LogIndex, Message, MessageBody, NodeId, Snapshot, SnapshotChunk, SnapshotMeta, Term,
};
use crate::wire::Envelope;

/// The largest snapshot streamed, either way: far above what a group's state (held in
/// memory) can weigh, a bound only on what a peer's chunks may announce.
pub const SNAPSHOT_BYTES_MAX: u64 = 1 << 40;

#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    /// Bytes per chunk (each chunk is one message, so it must fit a frame).
    pub chunk_bytes: usize,
    /// Chunks sent and not yet acknowledged, at most, per stream.
    pub window_chunks: usize,
    /// Chunks sent and not yet acknowledged to one peer, at most, over all its streams (one
    /// per group): a node back from a long absence needs a snapshot of every group, and
    /// their windows together filled its peer queue, so heartbeats and appends of the other
    /// groups waited behind them (or were refused).
    pub peer_window_chunks: usize,
    /// Ticks without an acknowledgement before the window is sent again.
    pub stall_ticks: u64,
    /// Ticks without progress before a stream is given up (either side).
    pub abandon_ticks: u64,
    /// The largest snapshot sent or assembled ([`SNAPSHOT_BYTES_MAX`] on a node).
    pub bytes_max: u64,
}

struct Outgoing {
    from: NodeId,
    term: Term,
    snapshot: Snapshot,
    checksum: u32,
    /// Bytes the receiver said it holds.
    acked: u64,
    /// The next byte to send.
    next: u64,
    /// Whether a chunk was ever sent (an empty snapshot is one empty chunk).
    started: bool,
    /// Not started, and waiting its turn behind the peer's other streams: it holds no
    /// compaction of its group back, and a newer snapshot offered replaces it.
    queued: bool,
    /// The peer was sent this snapshot whole already ([`SnapshotStreams::delivered`]): one
    /// empty chunk asks first whether it still holds it, and the rest waits for the answer.
    probing: bool,
    progress_tick: u64,
}

struct Incoming {
    meta: SnapshotMeta,
    total: u64,
    checksum: u32,
    data: Vec<u8>,
    /// The checksum of `data`, kept as it grows: the whole state's at its end stalled the
    /// core's loop once, for a large state.
    hasher: crc32fast::Hasher,
    progress_tick: u64,
}

/// A snapshot a peer acknowledged whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Delivered {
    index: LogIndex,
    checksum: u32,
    /// Where its bytes lay, and how many: offered again (the Raft core probes the follower
    /// every heartbeat while it installs the snapshot), the same bytes need no checksum
    /// again. Found in review: the whole state's, on the core's loop, every 20 ms per
    /// installing follower.
    bytes_at: (usize, usize),
}

/// What tells a stream apart: its snapshot's (index, term, checksum, total bytes), and the
/// term of the leader that sent it.
type StreamId = (LogIndex, Term, u32, u64, Term);

/// Every snapshot stream of one core, both directions.
pub struct SnapshotStreams {
    config: StreamConfig,
    /// By (peer, group).
    outgoing: BTreeMap<(u64, u32), Outgoing>,
    incoming: BTreeMap<(u64, u32), Incoming>,
    /// The last stream each (peer, group) completed here: (index, term, checksum, total) of
    /// its snapshot, and the term of the leader that sent it. Chunks of it that arrive late
    /// (resent while the final ack was on its way, or lost) are answered "all received", not
    /// "start over". The same snapshot sent in a later term is streamed anew: the core may
    /// have dropped the one it got (its term had moved past the sender's meanwhile).
    completed: BTreeMap<(u64, u32), StreamId>,
    /// The last snapshot each (peer, group) acknowledged whole from here, by index and
    /// checksum. Told it all arrived, the Raft core probes the follower, which cannot answer
    /// until it stored and installed the snapshot (seconds, for a big state), so the core
    /// offers it again; a window of chunks went out at every probe meanwhile. Offered again,
    /// it is asked for with one empty chunk, answered "all received" while the peer holds it.
    delivered: BTreeMap<(u64, u32), Delivered>,
    /// By (group, peer), the snapshots acknowledged whole within the last `abandon_ticks`,
    /// and the tick they were ([`SnapshotStreams::delivered_lately`]).
    delivered_lately: BTreeMap<(u32, u64), (LogIndex, u64)>,
    /// Groups whose snapshot was too large to send, said once each until one of theirs fits
    /// again.
    said_too_large: std::collections::BTreeSet<u32>,
    /// Chunks out of bounds warned of lately, by sender: a broken or hostile peer's stream of
    /// them is warned of once a minute, not at each chunk.
    said_out_of_bounds: crate::repeats::Repeats,
    ticks: u64,
}

impl SnapshotStreams {
    pub fn new(config: StreamConfig) -> SnapshotStreams {
        SnapshotStreams {
            config,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            completed: BTreeMap::new(),
            delivered: BTreeMap::new(),
            delivered_lately: BTreeMap::new(),
            said_too_large: Default::default(),
            said_out_of_bounds: Default::default(),
            ticks: 0,
        }
    }

    /// Streams being sent, for tests and status.
    pub fn sending(&self) -> usize {
        self.outgoing.len()
    }

    /// How far the stream of `group` to `peer` is, for status: its snapshot's index, the
    /// bytes the peer said it holds, and the snapshot's size (0 until it started: it waits
    /// its turn behind the peer's other streams).
    pub fn progress(&self, peer: u64, group: u32) -> Option<SnapshotSent> {
        self.outgoing
            .get(&(peer, group))
            .map(|stream| SnapshotSent {
                index: stream.snapshot.meta.index.0,
                acked_bytes: stream.acked,
                total_bytes: match stream.started {
                    true => stream.snapshot.data.len() as u64,
                    false => 0,
                },
            })
    }

    /// Whether a stream of `group` to some peer is making progress (it moved within the last
    /// `stall_ticks`). A stream to a peer that stopped answering does not count, nor one
    /// queued behind the peer's other streams: a node back from a long absence needs a
    /// snapshot of every group, and those waiting their turn would keep their groups' logs
    /// from compacting for as long as the others take. When its turn comes, it carries the
    /// group's newest snapshot ([`SnapshotStreams::renew_unstarted`]).
    pub fn streaming(&self, group: u32) -> bool {
        let recent = self.config.stall_ticks.max(1);
        self.outgoing.iter().any(|(&(_, g), stream)| {
            g == group && !stream.queued && self.ticks - stream.progress_tick < recent
        })
    }

    /// The core of `group` wants `message` (an `InstallSnapshot`) sent: stream it, or keep
    /// streaming what is already on its way to that peer. Other messages are returned.
    pub fn offer(&mut self, group: u32, message: Message) -> Option<Message> {
        let MessageBody::InstallSnapshot(snapshot) = message.body else {
            return Some(message);
        };
        let bytes = snapshot.data.len() as u64;
        if bytes > self.config.bytes_max {
            // A receiver would refuse its chunks: said here, once, rather than streamed in
            // vain again and again.
            if self.said_too_large.insert(group) {
                tracing::error!(
                    group,
                    to = message.to.0,
                    bytes,
                    bytes_max = self.config.bytes_max,
                    "snapshot too large to stream: a follower behind the log cannot catch up"
                );
            }
            return None;
        }
        self.said_too_large.remove(&group);
        let key = (message.to.0, group);
        if let Some(running) = self.outgoing.get_mut(&key) {
            let idle = self.ticks - running.progress_tick;
            // One that sent nothing yet is simply replaced by a newer snapshot.
            if running.snapshot.meta.index == snapshot.meta.index
                || running.started && idle < self.config.abandon_ticks
            {
                running.term = running.term.max(message.term);
                return None;
            }
        }
        let bytes_at = (snapshot.data.as_ptr() as usize, snapshot.data.len());
        let delivered = self.delivered.get(&key).copied();
        let checksum = match delivered {
            Some(d) if (d.index, d.bytes_at) == (snapshot.meta.index, bytes_at) => d.checksum,
            _ => checksum_of(&snapshot.data),
        };
        let probing =
            delivered.is_some_and(|d| (d.index, d.checksum) == (snapshot.meta.index, checksum));
        let stream = Outgoing {
            from: message.from,
            term: message.term,
            snapshot: *snapshot,
            checksum,
            acked: 0,
            next: 0,
            started: false,
            queued: false,
            probing,
            progress_tick: self.ticks,
        };
        self.outgoing.insert(key, stream);
        None
    }

    /// `group` compacted to `snapshot`: its streams that sent nothing yet take it. Their
    /// followers would otherwise get the older one when their turn comes, and then need this
    /// one too (the log behind it is gone).
    pub fn renew_unstarted(&mut self, group: u32, snapshot: &Snapshot) {
        let mut checksum = None;
        for (&(_, g), stream) in &mut self.outgoing {
            if g == group && !stream.started && stream.snapshot.meta.index < snapshot.meta.index {
                stream.checksum = *checksum.get_or_insert_with(|| checksum_of(&snapshot.data));
                stream.snapshot = snapshot.clone();
                (stream.acked, stream.next) = (0, 0);
                stream.probing = false;
            }
        }
    }

    /// Stop sending every snapshot of `group` (this node no longer leads it).
    pub fn stop_group(&mut self, group: u32) {
        self.outgoing.retain(|&(_, g), _| g != group);
    }

    /// Send the chunks each stream's window allows; `send` answers false when the peer's queue
    /// is full (the rest waits for the next call).
    pub fn pump(&mut self, mut send: impl FnMut(Envelope) -> bool) {
        let chunk_bytes = self.config.chunk_bytes.max(1) as u64;
        let window = chunk_bytes * self.config.window_chunks.max(1) as u64;
        let peer_window = chunk_bytes * self.config.peer_window_chunks.max(1) as u64;
        // Bytes in flight to each peer, over its streams.
        let mut in_flight: BTreeMap<u64, u64> = BTreeMap::new();
        for (&(to, _), stream) in &self.outgoing {
            *in_flight.entry(to).or_default() += stream.next - stream.acked;
        }
        let now = self.ticks;
        // Started streams first: the receiver gives up a partial copy that gets no bytes for
        // `abandon_ticks`, so one pushed aside by streams of lower groups started over from
        // byte 0, and held its group's compaction back all the while.
        let (started, unstarted): (Vec<_>, Vec<_>) = self
            .outgoing
            .iter_mut()
            .partition(|(_, stream)| stream.started);
        for (&(to, group), stream) in started.into_iter().chain(unstarted) {
            let total = stream.snapshot.data.len() as u64;
            let peer = in_flight.entry(to).or_default();
            if *peer >= peer_window && stream.next == stream.acked {
                // Waiting its turn behind the peer's other streams, with nothing of its own
                // unanswered: not stalled, so neither resent nor given up meanwhile.
                stream.progress_tick = now;
                stream.queued = !stream.started;
            }
            while (stream.next < total || !stream.started)
                && stream.next - stream.acked < window
                && *peer < peer_window
                && !(stream.probing && stream.started)
            {
                let end = if stream.probing {
                    0
                } else {
                    (stream.next + chunk_bytes).min(total)
                };
                let chunk = SnapshotChunk {
                    meta: stream.snapshot.meta.clone(),
                    offset: stream.next,
                    total,
                    checksum: stream.checksum,
                    data: stream
                        .snapshot
                        .data
                        .slice(stream.next as usize..end as usize),
                };
                let envelope = Envelope {
                    group: GroupId(group),
                    message: Message {
                        from: stream.from,
                        to: NodeId(to),
                        term: stream.term,
                        body: MessageBody::SnapshotChunk(Box::new(chunk)),
                    },
                };
                if !send(envelope) {
                    break;
                }
                stream.started = true;
                stream.queued = false;
                *peer += end - stream.next;
                stream.next = end;
            }
        }
    }

    /// The peers that acknowledged a snapshot of `group` whole within the last
    /// `abandon_ticks`, and its index. Such a peer loads and stores it before it answers
    /// (seconds, for a big state): compacting past it meanwhile would leave it a gap that only
    /// the next snapshot fills, and under steady writes it could be sent one after another
    /// (found in review). The core holds compaction back until the peer's log reaches it.
    pub fn delivered_lately(&self, group: u32) -> impl Iterator<Item = (u64, LogIndex)> + '_ {
        self.delivered_lately
            .range((group, 0)..=(group, u64::MAX))
            .map(|(&(_, peer), &(index, _))| (peer, index))
    }

    /// `from` acknowledged bytes of its stream of `group`.
    /// Returns true when this acknowledgement completes the stream: the receiver holds the
    /// whole snapshot (the core is told, as its answer to the snapshot may be lost).
    pub fn on_ack(
        &mut self,
        from: u64,
        group: u32,
        index: LogIndex,
        received: u64,
        gap: bool,
    ) -> bool {
        let Some(stream) = self.outgoing.get_mut(&(from, group)) else {
            return false;
        };
        // A late answer to an earlier stream of the same snapshot says nothing of one that
        // sent nothing yet.
        if stream.snapshot.meta.index != index || !stream.started {
            return false;
        }
        let total = stream.snapshot.data.len() as u64;
        let received = received.min(total);
        if stream.probing {
            // The answer to the empty chunk: what the peer holds, from which it goes on.
            stream.probing = false;
            stream.progress_tick = self.ticks;
        }
        if gap {
            // Resume from what the receiver holds (less than before if it lost its part).
            if stream.next != received {
                tracing::info!(
                    group,
                    to = from,
                    index = index.0,
                    received,
                    total,
                    "snapshot stream resumes from the bytes the receiver holds"
                );
            }
            stream.acked = received;
            stream.next = received;
            stream.progress_tick = self.ticks;
        } else if received > stream.acked {
            stream.acked = received;
            stream.next = stream.next.max(received);
            stream.progress_tick = self.ticks;
        }
        if stream.started && stream.acked == total && !gap {
            let delivered = Delivered {
                index,
                checksum: stream.checksum,
                bytes_at: (
                    stream.snapshot.data.as_ptr() as usize,
                    stream.snapshot.data.len(),
                ),
            };
            self.outgoing.remove(&(from, group));
            self.delivered.insert((from, group), delivered);
            self.delivered_lately
                .insert((group, from), (index, self.ticks));
            return true;
        }
        false
    }

    /// Forget that the last stream of `group` from `from` completed here: the snapshot it
    /// brought never reached the group, so an offer of it again is streamed anew.
    pub fn forget_completed(&mut self, from: u64, group: u32) {
        self.completed.remove(&(from, group));
    }

    /// A chunk from `from` of `group`. Returns the acknowledgement to send back and, once the
    /// snapshot is whole and its checksum matches, the `InstallSnapshot` for the core.
    pub fn on_chunk(
        &mut self,
        group: u32,
        message: Message,
    ) -> (Option<Envelope>, Option<Message>) {
        let Message {
            from,
            to,
            term,
            body: MessageBody::SnapshotChunk(chunk),
        } = message
        else {
            return (None, None);
        };
        let key = (from.0, group);
        let end = chunk.offset.checked_add(chunk.data.len() as u64);
        if chunk.total > self.config.bytes_max || end.is_none_or(|end| end > chunk.total) {
            let said = self.said_out_of_bounds.admit(&format!("{from} {group}"));
            if let Some(more) = said {
                tracing::warn!(
                    group,
                    from = from.0,
                    offset = chunk.offset,
                    total = chunk.total,
                    "snapshot chunk out of bounds: dropped, as were {more} more from this node \
                     for this group since its last warning (warned of once a minute)"
                );
            }
            self.incoming.remove(&key);
            return (None, None);
        }
        let index = chunk.meta.index;
        let ack = |received: u64, gap: bool| {
            Some(Envelope {
                group: GroupId(group),
                message: Message {
                    from: to,
                    to: from,
                    term,
                    body: MessageBody::SnapshotAck {
                        index,
                        received,
                        gap,
                    },
                },
            })
        };
        let same = self.incoming.get(&key).is_some_and(|held| {
            held.meta.index == chunk.meta.index
                && held.meta.term == chunk.meta.term
                && held.total == chunk.total
                && held.checksum == chunk.checksum
        });
        let stream_id = (
            chunk.meta.index,
            chunk.meta.term,
            chunk.checksum,
            chunk.total,
            term,
        );
        if !same && self.completed.get(&key) == Some(&stream_id) {
            return (ack(chunk.total, false), None);
        }
        if !same {
            if chunk.offset != 0 {
                // A stream this node does not hold (it restarted, or gave it up): from the start.
                return (ack(0, true), None);
            }
            let fresh = Incoming {
                meta: chunk.meta.clone(),
                total: chunk.total,
                checksum: chunk.checksum,
                data: Vec::new(),
                hasher: crc32fast::Hasher::new(),
                progress_tick: self.ticks,
            };
            // One snapshot of a group at a time: the newest sender's (a new leader's), not a
            // deposed one's beside it.
            self.incoming.retain(|&(_, g), _| g != group);
            self.incoming.insert(key, fresh);
        }
        let held = self.incoming.get_mut(&key).expect("inserted above");
        let have = held.data.len() as u64;
        if chunk.offset > have {
            return (ack(have, true), None);
        }
        let new_from = (have - chunk.offset) as usize;
        if new_from < chunk.data.len() {
            held.data.extend_from_slice(&chunk.data[new_from..]);
            held.hasher.update(&chunk.data[new_from..]);
            held.progress_tick = self.ticks;
        }
        let have = held.data.len() as u64;
        if have < held.total {
            return (ack(have, false), None);
        }
        let held = self.incoming.remove(&key).expect("held");
        if held.hasher.finalize() != held.checksum {
            self.completed.remove(&key);
            tracing::warn!(
                group,
                from = from.0,
                index = index.0,
                "streamed snapshot fails its checksum: asking for it again"
            );
            return (ack(0, true), None);
        }
        self.completed.insert(key, stream_id);
        let snapshot = Snapshot {
            meta: held.meta,
            data: Bytes::from(held.data),
        };
        let install = Message {
            from,
            to,
            term,
            body: MessageBody::InstallSnapshot(Box::new(snapshot)),
        };
        (ack(have, false), Some(install))
    }

    /// The connection to `to` was renewed: the unacknowledged chunks of every stream to it
    /// may have gone with the old one, so they are sent again from the last acknowledged
    /// byte (without waiting for the stall timeout).
    pub fn resend_to(&mut self, to: u64) {
        for ((_, group), stream) in self.outgoing.range_mut((to, 0)..=(to, u32::MAX)) {
            // A probe unanswered may have gone with it too: it is sent again.
            if stream.probing {
                stream.started = false;
            }
            if stream.next > stream.acked {
                tracing::info!(
                    group,
                    to,
                    acked = stream.acked,
                    "connection renewed: snapshot stream sending again from the last acknowledged byte"
                );
                stream.next = stream.acked;
            }
        }
    }

    /// One tick: resend stalled windows, give up streams without progress for too long.
    /// Returns the (peer, group) streams given up, for the core to hear of.
    pub fn tick(&mut self) -> Vec<(u64, u32)> {
        self.ticks += 1;
        let (ticks, config) = (self.ticks, self.config);
        let mut given_up = Vec::new();
        self.outgoing.retain(|&(to, group), stream| {
            let idle = ticks - stream.progress_tick;
            if idle >= config.abandon_ticks {
                tracing::info!(group, to, "snapshot stream without progress: given up");
                given_up.push((to, group));
                return false;
            }
            let stalled = idle > 0 && idle % config.stall_ticks.max(1) == 0;
            if stalled && stream.probing && stream.started {
                // The probe went unanswered (lost, or dropped by a receiver short of room).
                stream.started = false;
            }
            if stalled && stream.next > stream.acked {
                tracing::info!(
                    group,
                    to,
                    acked = stream.acked,
                    "snapshot stream stalled: \
                    sending again from the last acknowledged byte"
                );
                stream.next = stream.acked;
            }
            true
        });
        self.incoming
            .retain(|_, held| ticks - held.progress_tick < config.abandon_ticks);
        self.delivered_lately
            .retain(|_, &mut (_, at)| ticks - at < config.abandon_ticks);
        given_up
    }
}

/// A snapshot's checksum (its whole state's: counted in tests).
fn checksum_of(data: &[u8]) -> u32 {
    #[cfg(test)]
    tests::CHECKSUMS.with(|counted| counted.set(counted.get() + 1));
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The checksums of whole snapshots [`checksum_of`] made on this thread.
        pub(super) static CHECKSUMS: Cell<usize> = const { Cell::new(0) };
    }

    const CHUNK: usize = 10;

    fn streams() -> SnapshotStreams {
        SnapshotStreams::new(StreamConfig {
            chunk_bytes: CHUNK,
            window_chunks: 3,
            peer_window_chunks: 5,
            stall_ticks: 5,
            abandon_ticks: 50,
            bytes_max: SNAPSHOT_BYTES_MAX,
        })
    }

    fn snapshot(index: u64, len: usize) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(index),
                term: Term(2),
                ..Default::default()
            },
            data: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
        }
    }

    fn install(snapshot: Snapshot) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::InstallSnapshot(Box::new(snapshot)),
        }
    }

    fn pump(sender: &mut SnapshotStreams) -> Vec<Envelope> {
        let mut sent = Vec::new();
        sender.pump(|envelope| {
            sent.push(envelope);
            true
        });
        sent
    }

    /// Deliver `chunks` to `receiver` and their acks back to `sender`; returns what the
    /// receiver hands its core.
    fn deliver(
        sender: &mut SnapshotStreams,
        receiver: &mut SnapshotStreams,
        chunks: Vec<Envelope>,
    ) -> Option<Message> {
        deliver_counting(sender, receiver, chunks, &mut 0)
    }

    /// [`deliver`], counting in `completed` the acks the sender reports as completing it.
    fn deliver_counting(
        sender: &mut SnapshotStreams,
        receiver: &mut SnapshotStreams,
        chunks: Vec<Envelope>,
        completed: &mut usize,
    ) -> Option<Message> {
        let mut installed = None;
        for envelope in chunks {
            let (ack, whole) = receiver.on_chunk(envelope.group.0, envelope.message);
            installed = installed.or(whole);
            let ack = ack.expect("every chunk is answered");
            let MessageBody::SnapshotAck {
                index,
                received,
                gap,
            } = ack.message.body
            else {
                panic!("an ack");
            };
            if sender.on_ack(ack.message.from.0, ack.group.0, index, received, gap) {
                *completed += 1;
            }
        }
        installed
    }

    /// Goal (found in review): a snapshot the peer acknowledged whole, offered again (the
    /// Raft core probes the follower, which cannot answer until it installed the snapshot),
    /// goes as one empty chunk while the peer holds it, not as a window of chunks at every
    /// probe; and whole again from the start once the peer no longer holds it.
    #[test]
    fn a_snapshot_offered_again_after_it_arrived_whole_is_asked_for_with_one_empty_chunk() {
        let (mut sender, mut receiver) = (streams(), streams());
        let whole = snapshot(9, 95);
        assert!(sender.offer(0, install(whole.clone())).is_none());
        let mut installed = None;
        while sender.sending() > 0 {
            let chunks = pump(&mut sender);
            installed = installed.or(deliver(&mut sender, &mut receiver, chunks));
        }
        assert!(installed.is_some());
        let chunk_bytes = |chunks: &[Envelope]| -> Vec<usize> {
            let lengths = chunks.iter().map(|e| match &e.message.body {
                MessageBody::SnapshotChunk(chunk) => chunk.data.len(),
                _ => panic!("a chunk"),
            });
            lengths.collect()
        };
        // Held by the peer: one empty chunk, answered "all received".
        sender.offer(0, install(whole.clone()));
        let probe = pump(&mut sender);
        assert_eq!(chunk_bytes(&probe), [0]);
        assert!(
            pump(&mut sender).is_empty(),
            "the rest waits for the answer"
        );
        let mut completed = 0;
        let again = deliver_counting(&mut sender, &mut receiver, probe, &mut completed);
        assert!(again.is_none());
        assert_eq!((completed, sender.sending()), (1, 0));
        // A probe lost is sent again: on a renewed connection, and after a stall.
        sender.offer(0, install(whole.clone()));
        assert_eq!(chunk_bytes(&pump(&mut sender)), [0]);
        sender.resend_to(2);
        assert_eq!(
            chunk_bytes(&pump(&mut sender)),
            [0],
            "on a renewed connection"
        );
        for _ in 0..sender.config.stall_ticks {
            assert!(pump(&mut sender).is_empty());
            sender.tick();
        }
        let probe = pump(&mut sender);
        assert_eq!(chunk_bytes(&probe), [0], "after a stall");
        deliver_counting(&mut sender, &mut receiver, probe, &mut completed);
        assert_eq!((completed, sender.sending()), (2, 0));
        // No longer held (it failed to store, say): streamed whole from the start.
        receiver.forget_completed(1, 0);
        sender.offer(0, install(whole));
        let probe = pump(&mut sender);
        assert!(deliver(&mut sender, &mut receiver, probe).is_none());
        let mut installed = None;
        let mut sent = 0;
        while sender.sending() > 0 {
            let chunks = pump(&mut sender);
            sent += chunk_bytes(&chunks).iter().sum::<usize>();
            installed = installed.or(deliver(&mut sender, &mut receiver, chunks));
        }
        assert_eq!(sent, 95);
        assert!(installed.is_some());
    }

    /// Goal (found in review): a snapshot acknowledged whole, offered again at every probe
    /// while its follower installs it, is not checksummed again: the whole state's checksum,
    /// on the core's loop, at every heartbeat. Method: offered five times after it arrived,
    /// the checksums made counted; then a copy of it elsewhere in memory.
    #[test]
    fn a_snapshot_offered_again_after_it_arrived_whole_is_not_checksummed_again() {
        let (mut sender, mut receiver) = (streams(), streams());
        let whole = snapshot(9, 95);
        sender.offer(0, install(whole.clone()));
        while sender.sending() > 0 {
            let chunks = pump(&mut sender);
            deliver(&mut sender, &mut receiver, chunks);
        }
        let before = CHECKSUMS.with(Cell::get);
        let empty = |chunks: &[Envelope]| {
            let empty = |e: &Envelope| match &e.message.body {
                MessageBody::SnapshotChunk(chunk) => chunk.data.is_empty(),
                _ => false,
            };
            chunks.len() == 1 && empty(&chunks[0])
        };
        for _ in 0..5 {
            sender.offer(0, install(whole.clone()));
            let probe = pump(&mut sender);
            assert!(empty(&probe), "asked for with one empty chunk");
            deliver(&mut sender, &mut receiver, probe);
            assert_eq!(sender.sending(), 0);
        }
        assert_eq!(CHECKSUMS.with(Cell::get), before, "not checksummed again");
        let copy = Snapshot {
            meta: whole.meta.clone(),
            data: Bytes::copy_from_slice(&whole.data),
        };
        sender.offer(0, install(copy));
        assert_eq!(CHECKSUMS.with(Cell::get), before + 1, "other bytes are");
        assert!(empty(&pump(&mut sender)), "and found the same");
    }

    /// Goal (found in review): a stream under way keeps the peer's window when streams of
    /// lower groups are offered after it; it waited behind them, and the receiver, given no
    /// bytes for a while, dropped its partial copy, so it started over from byte 0.
    #[test]
    fn a_stream_under_way_goes_before_streams_of_lower_groups_offered_after_it() {
        let mut config = streams().config;
        config.peer_window_chunks = config.window_chunks;
        let (mut sender, mut receiver) = (SnapshotStreams::new(config), streams());
        sender.offer(5, install(snapshot(9, 95)));
        let first = pump(&mut sender);
        assert!(deliver(&mut sender, &mut receiver, first).is_none());
        sender.offer(1, install(snapshot(9, 95)));
        let groups: Vec<u32> = pump(&mut sender).iter().map(|e| e.group.0).collect();
        assert_eq!(groups, [5, 5, 5]);
    }

    fn offsets(chunks: &[Envelope]) -> Vec<u64> {
        chunks
            .iter()
            .map(|e| match &e.message.body {
                MessageBody::SnapshotChunk(chunk) => chunk.offset,
                _ => panic!("a chunk"),
            })
            .collect()
    }

    #[test]
    fn a_snapshot_travels_in_windowed_chunks_and_arrives_whole() {
        let (mut sender, mut receiver) = (streams(), streams());
        let whole = snapshot(9, 95);
        assert!(sender.offer(4, install(whole.clone())).is_none());
        let first = pump(&mut sender);
        assert_eq!(offsets(&first), [0, 10, 20], "a window of three chunks");
        assert!(pump(&mut sender).is_empty(), "nothing more until acked");
        let mut completed = 0;
        let mut installed = deliver_counting(&mut sender, &mut receiver, first, &mut completed);
        while installed.is_none() {
            let next = pump(&mut sender);
            assert!(!next.is_empty(), "the stream stalled");
            installed = deliver_counting(&mut sender, &mut receiver, next, &mut completed);
        }
        let installed = installed.unwrap();
        assert_eq!(
            installed.body,
            MessageBody::InstallSnapshot(Box::new(whole))
        );
        assert_eq!((installed.from, installed.term), (NodeId(1), Term(3)));
        assert_eq!(sender.sending(), 0, "a finished stream is forgotten");
        assert_eq!(
            completed, 1,
            "the last ack, and only it, reports the stream complete"
        );
    }

    /// A group holds one incoming snapshot: a new sender's stream (a new leader's) replaces
    /// the one it was taking in.
    #[test]
    fn a_new_senders_stream_replaces_the_one_held_for_the_group() {
        let (mut old_leader, mut new_leader, mut receiver) = (streams(), streams(), streams());
        old_leader.offer(4, install(snapshot(9, 95)));
        let first = pump(&mut old_leader);
        assert!(deliver(&mut old_leader, &mut receiver, first).is_none());
        assert_eq!(receiver.incoming.len(), 1);
        let mut from_3 = install(snapshot(12, 95));
        from_3.from = NodeId(3);
        new_leader.offer(4, from_3);
        let first = pump(&mut new_leader);
        assert!(deliver(&mut new_leader, &mut receiver, first).is_none());
        let held: Vec<_> = receiver.incoming.keys().copied().collect();
        assert_eq!(held, [(3, 4)]);
    }

    /// Streams of several groups to one peer share one window: five chunks in flight over
    /// all of them (three per stream), so a peer that needs many snapshots is not flooded.
    #[test]
    fn the_streams_to_one_peer_share_a_window() {
        let mut sender = streams();
        for group in 0..4 {
            sender.offer(group, install(snapshot(9, 95)));
        }
        let sent = pump(&mut sender);
        assert_eq!(sent.len(), 5, "five chunks over four streams");
        assert!(
            pump(&mut sender).is_empty(),
            "nothing more until acknowledged"
        );
    }

    /// A stream that waits its turn behind another to the same peer is neither resent nor
    /// given up meanwhile, however long the other takes (here 70 ticks against 50 without
    /// progress to give up); it goes once the other is through.
    #[test]
    fn a_stream_waiting_for_the_peers_window_is_not_given_up() {
        let config = StreamConfig {
            chunk_bytes: CHUNK,
            window_chunks: 3,
            peer_window_chunks: 3,
            stall_ticks: 5,
            abandon_ticks: 50,
            bytes_max: SNAPSHOT_BYTES_MAX,
        };
        let (mut sender, mut receiver) = (SnapshotStreams::new(config), streams());
        sender.offer(0, install(snapshot(9, 200)));
        sender.offer(1, install(snapshot(9, 95)));
        let mut delivered = Vec::new();
        for _ in 0..30 {
            for _ in 0..10 {
                assert!(sender.tick().is_empty(), "nothing given up");
            }
            let chunks = pump(&mut sender);
            delivered.extend(chunks.iter().map(|e| e.group.0));
            deliver(&mut sender, &mut receiver, chunks);
            if sender.sending() == 0 {
                break;
            }
        }
        assert_eq!(sender.sending(), 0, "both streams went through");
        assert_eq!(delivered.iter().filter(|&&g| g == 0).count(), 20);
        assert_eq!(delivered.iter().filter(|&&g| g == 1).count(), 10);
    }

    /// A node that stops leading a group stops its streams of that group's snapshots (the
    /// followers would take a deposed leader's snapshot in, and Raft drop it), and only
    /// that group's.
    #[test]
    fn stopping_a_group_stops_its_streams_only() {
        let mut sender = streams();
        sender.offer(4, install(snapshot(9, 95)));
        sender.offer(5, install(snapshot(9, 95)));
        sender.stop_group(4);
        let sent = pump(&mut sender);
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|e| e.group.0 == 5), "only group 5 goes on");
        assert!(!sender.streaming(4) && sender.streaming(5));
    }

    #[test]
    fn a_group_is_streaming_while_its_stream_moves_and_not_once_it_stalls_or_ends() {
        let (mut sender, mut receiver) = (streams(), streams());
        assert!(!sender.streaming(4));
        sender.offer(4, install(snapshot(9, 95)));
        assert!(sender.streaming(4) && !sender.streaming(5));
        // Acknowledged chunks keep it streaming however long it takes.
        for _ in 0..3 {
            for _ in 0..4 {
                sender.tick();
            }
            let window = pump(&mut sender);
            assert!(deliver(&mut sender, &mut receiver, window).is_none());
            assert!(sender.streaming(4), "acks arrive");
        }
        // A peer that stops answering: not streaming after `stall_ticks` (5) without an ack.
        for _ in 0..4 {
            sender.tick();
        }
        assert!(sender.streaming(4));
        sender.tick();
        assert!(!sender.streaming(4), "stalled");
        // It answers again: streaming until the stream ends.
        let mut installed = None;
        while installed.is_none() {
            sender.tick();
            let chunks = pump(&mut sender);
            installed = deliver(&mut sender, &mut receiver, chunks);
            assert!(installed.is_some() || sender.streaming(4));
        }
        assert!(!sender.streaming(4), "ended");
        // Delivered whole: named as such for `abandon_ticks` (50), then no more.
        let lately: Vec<_> = sender.delivered_lately(4).collect();
        assert_eq!(lately, [(2, LogIndex(9))]);
        assert_eq!(sender.delivered_lately(5).count(), 0);
        for _ in 0..49 {
            sender.tick();
        }
        assert_eq!(sender.delivered_lately(4).count(), 1);
        sender.tick();
        assert_eq!(sender.delivered_lately(4).count(), 0, "given up");
    }

    #[test]
    fn chunks_lost_with_a_connection_resume_from_what_the_receiver_holds() {
        let (mut sender, mut receiver) = (streams(), streams());
        sender.offer(4, install(snapshot(9, 95)));
        let window = pump(&mut sender);
        // The first chunk arrives, then the connection drops with the other two.
        deliver(&mut sender, &mut receiver, window[..1].to_vec());
        let next = pump(&mut sender);
        assert_eq!(offsets(&next), [30], "the window slid by the acked chunk");
        // 30 arrives past a hole at 10: the receiver says where it is, the sender resumes there.
        deliver(&mut sender, &mut receiver, next);
        let resumed = pump(&mut sender);
        assert_eq!(offsets(&resumed), [10, 20, 30], "resumed at byte 10, not 0");
        let mut installed = deliver(&mut sender, &mut receiver, resumed);
        while installed.is_none() {
            let next = pump(&mut sender);
            installed = deliver(&mut sender, &mut receiver, next);
        }
        assert!(
            matches!(installed.unwrap().body, MessageBody::InstallSnapshot(s) if s.data.len() == 95)
        );
    }

    #[test]
    fn a_stalled_window_is_sent_again_and_a_dead_stream_given_up() {
        let mut sender = streams();
        sender.offer(4, install(snapshot(9, 95)));
        assert_eq!(pump(&mut sender).len(), 3);
        for _ in 0..5 {
            sender.tick();
        }
        assert_eq!(
            offsets(&pump(&mut sender)),
            [0, 10, 20],
            "resent after 5 quiet ticks"
        );
        let given_up: Vec<(u64, u32)> = (0..50).flat_map(|_| sender.tick()).collect();
        assert_eq!(sender.sending(), 0);
        assert_eq!(
            given_up.len(),
            1,
            "the core hears once that the stream was given up"
        );
        assert_eq!(given_up[0].1, 4, "group 4");
    }

    #[test]
    fn a_renewed_connection_resends_the_window_at_once() {
        let mut sender = streams();
        sender.offer(4, install(snapshot(9, 95)));
        assert_eq!(pump(&mut sender).len(), 3);
        sender.resend_to(3);
        assert!(pump(&mut sender).is_empty(), "another peer's connection");
        sender.resend_to(2);
        assert_eq!(offsets(&pump(&mut sender)), [0, 10, 20], "no tick needed");
    }

    /// A stream queued behind another to the same peer holds no compaction of its group
    /// back, and takes the newer snapshot the core offers, or the group compacts to, while
    /// it waits: nothing of the older one was sent.
    #[test]
    fn a_queued_stream_holds_no_compaction_back_and_takes_a_newer_snapshot() {
        let config = StreamConfig {
            peer_window_chunks: 3,
            ..streams().config
        };
        let (mut sender, mut receiver) = (SnapshotStreams::new(config), streams());
        sender.offer(0, install(snapshot(9, 200)));
        sender.offer(1, install(snapshot(9, 95)));
        let mut chunks = pump(&mut sender);
        assert!(chunks.iter().all(|e| e.group.0 == 0), "group 1 waits");
        assert!(sender.streaming(0) && !sender.streaming(1));
        sender.offer(1, install(snapshot(12, 120)));
        // Compacted further while it waits: it takes that one too, unasked.
        sender.renew_unstarted(1, &snapshot(15, 120));
        sender.renew_unstarted(1, &snapshot(11, 120));
        let mut group_1 = Vec::new();
        for _ in 0..100 {
            group_1.extend(chunks.iter().filter(|e| e.group.0 == 1).map(|e| {
                let MessageBody::SnapshotChunk(chunk) = &e.message.body else {
                    panic!("a chunk");
                };
                chunk.meta.index
            }));
            deliver(&mut sender, &mut receiver, chunks);
            if sender.sending() == 0 {
                break;
            }
            chunks = pump(&mut sender);
        }
        assert_eq!(group_1.len(), 12, "120 bytes in chunks of 10");
        assert!(group_1.iter().all(|&index| index == LogIndex(15)));
    }

    /// A late answer to an earlier stream of the same snapshot does not move one that sent
    /// nothing yet, and a stream handed a newer, smaller snapshot starts it from byte 0.
    #[test]
    fn a_stream_that_sent_nothing_starts_from_byte_zero_whatever_came_before() {
        let mut sender = streams();
        sender.offer(4, install(snapshot(9, 100)));
        assert!(
            !sender.on_ack(2, 4, LogIndex(9), 80, false),
            "nothing sent yet"
        );
        sender.renew_unstarted(4, &snapshot(12, 30));
        let chunks = pump(&mut sender);
        assert_eq!(offsets(&chunks), [0, 10, 20]);
    }

    #[test]
    fn the_core_sending_again_continues_the_stream_and_a_newer_snapshot_waits() {
        let (mut sender, mut receiver) = (streams(), streams());
        sender.offer(4, install(snapshot(9, 95)));
        let window = pump(&mut sender);
        deliver(&mut sender, &mut receiver, window);
        // The core retries the same snapshot, then has compacted further: neither restarts
        // the stream, which keeps its bytes alive and goes on from byte 30.
        sender.offer(4, install(snapshot(9, 95)));
        sender.offer(4, install(snapshot(12, 120)));
        let next = pump(&mut sender);
        assert_eq!(offsets(&next), [30, 40, 50]);
        let MessageBody::SnapshotChunk(chunk) = &next[0].message.body else {
            panic!("a chunk");
        };
        assert_eq!(chunk.meta.index, LogIndex(9));
    }

    #[test]
    fn a_receiver_that_lost_its_part_or_got_damage_restarts_from_zero() {
        let (mut sender, mut receiver) = (streams(), streams());
        sender.offer(4, install(snapshot(9, 25)));
        let window = pump(&mut sender);
        deliver(&mut sender, &mut receiver, window[..2].to_vec());
        // The receiver restarts and loses its part: the next chunk asks for byte 0.
        let mut receiver = streams();
        assert!(deliver(&mut sender, &mut receiver, window[2..].to_vec()).is_none());
        let again = pump(&mut sender);
        assert_eq!(offsets(&again), [0, 10, 20]);
        // Damage in transit (past the frame checksum): the whole fails its crc and is asked
        // for again.
        let mut damaged = again.clone();
        if let MessageBody::SnapshotChunk(chunk) = &mut damaged[1].message.body {
            chunk.data = Bytes::from(vec![0xff; chunk.data.len()]);
        }
        assert!(deliver(&mut sender, &mut receiver, damaged).is_none());
        assert_eq!(offsets(&pump(&mut sender)), [0, 10, 20]);
    }

    #[test]
    fn late_chunks_of_a_finished_stream_finish_it_instead_of_restarting_it() {
        let (mut sender, mut receiver) = (streams(), streams());
        sender.offer(4, install(snapshot(9, 25)));
        let window = pump(&mut sender);
        // The receiver completes, but its acks are lost (the connection dropped).
        for envelope in window.clone() {
            receiver.on_chunk(envelope.group.0, envelope.message);
        }
        for _ in 0..5 {
            sender.tick();
        }
        let resent = pump(&mut sender);
        assert_eq!(offsets(&resent), [0, 10, 20], "the stalled window again");
        assert!(
            deliver(&mut sender, &mut receiver, resent).is_none(),
            "not installed twice"
        );
        assert_eq!(sender.sending(), 0, "the stream finished, not restarted");
    }

    #[test]
    fn a_finished_stream_sent_again_in_a_later_term_is_delivered_again() {
        let (mut sender, mut receiver) = (streams(), streams());
        sender.offer(4, install(snapshot(9, 25)));
        let first = pump(&mut sender);
        assert!(deliver(&mut sender, &mut receiver, first).is_some());
        // The receiver's core dropped it (its term had moved on); the same leader, elected
        // again, sends the same snapshot in its new term.
        let mut again = install(snapshot(9, 25));
        again.term = Term(5);
        let mut sender = streams();
        sender.offer(4, again);
        let chunks = pump(&mut sender);
        let delivered = deliver(&mut sender, &mut receiver, chunks);
        assert!(
            delivered.is_some_and(|m| m.term == Term(5)),
            "streamed anew"
        );
    }

    #[test]
    fn hostile_chunks_are_dropped() {
        let mut receiver = streams();
        let chunk = |offset, total, len| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::SnapshotChunk(Box::new(SnapshotChunk {
                meta: SnapshotMeta::default(),
                offset,
                total,
                checksum: 0,
                data: Bytes::from(vec![0; len]),
            })),
        };
        for (offset, total, len) in [(0, SNAPSHOT_BYTES_MAX + 1, 1), (5, 8, 4), (u64::MAX, 8, 2)] {
            let (ack, whole) = receiver.on_chunk(0, chunk(offset, total, len));
            assert!(ack.is_none() && whole.is_none());
        }
    }

    /// Goal: a snapshot larger than a receiver assembles is not streamed at all (found in
    /// review: its chunks went out, were dropped, and went out again, for ever).
    #[test]
    fn a_snapshot_too_large_to_assemble_is_not_streamed() {
        let mut sender = SnapshotStreams::new(StreamConfig {
            chunk_bytes: 10,
            window_chunks: 3,
            peer_window_chunks: 5,
            stall_ticks: 5,
            abandon_ticks: 50,
            bytes_max: 100,
        });
        let message = |len: usize| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::InstallSnapshot(Box::new(Snapshot {
                meta: SnapshotMeta::default(),
                data: Bytes::from(vec![7; len]),
            })),
        };
        assert!(sender.offer(0, message(200)).is_none());
        assert_eq!(sender.sending(), 0);
        assert!(sender.said_too_large.contains(&0), "said");
        assert!(sender.offer(0, message(100)).is_none());
        assert_eq!(sender.sending(), 1, "one at the bound goes");
        // Grown too large again later: said again.
        assert!(!sender.said_too_large.contains(&0));
        assert!(sender.offer(0, message(200)).is_none());
        assert!(sender.said_too_large.contains(&0), "said again");
    }
}
