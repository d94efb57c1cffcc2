//! The bounded queue of messages waiting to be written to one peer, and why `send` refuses.

use std::fmt;

use crate::raft::{MessageBody, NodeId};
use crate::wire::limits::MESSAGE_PAYLOAD_BYTES_MAX;
use crate::wire::{Envelope, held_bytes};

/// What a message costs in the queue at least beyond its payload: its envelope, as it sits
/// in the queue's vector (more than its encoded header). Charging it keeps a queue of tiny
/// messages bounded in bytes too, not only in count.
pub const MESSAGE_OVERHEAD_BYTES: usize = std::mem::size_of::<Envelope>();

/// What `envelope` costs in the queue: its payload, its envelope and what its body holds on
/// the heap besides (entries past an append's first, a boxed snapshot), so that the queue's
/// bound is a bound on its memory (review 224: 64 bytes a message were charged, against 128
/// held in the vector alone).
fn cost_bytes(envelope: &Envelope) -> usize {
    let body = &envelope.message.body;
    body.payload_bytes() as usize + MESSAGE_OVERHEAD_BYTES + held_bytes(body)
}

/// Why [`super::Transport::send`] did not queue a message. The message is dropped; Raft
/// retransmits what matters, and treats a peer that keeps answering `Full` as unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer is not in this transport's configuration.
    PeerUnknown { peer: NodeId },
    /// The peer's queue is at its bound: the peer is slow, dead or disconnected.
    Full {
        peer: NodeId,
        queued_bytes: usize,
        queued_messages: usize,
    },
    /// The message could never fit a frame.
    MessageTooLarge {
        payload_bytes: u64,
        payload_bytes_max: usize,
    },
    /// The transport was closed.
    Closed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::PeerUnknown { peer } => write!(f, "node {peer} is not a peer"),
            SendError::Full {
                peer,
                queued_bytes,
                queued_messages,
            } => write!(
                f,
                "queue to node {peer} is full ({queued_messages} messages, {queued_bytes} bytes)"
            ),
            SendError::MessageTooLarge {
                payload_bytes,
                payload_bytes_max,
            } => write!(
                f,
                "message payload of {payload_bytes} bytes over the maximum {payload_bytes_max}"
            ),
            SendError::Closed => f.write_str("transport closed"),
        }
    }
}

impl std::error::Error for SendError {}

/// Messages for one peer, in order, bounded in bytes and in count.
pub struct PeerQueue {
    peer: NodeId,
    messages: Vec<Envelope>,
    bytes: usize,
    bytes_max: usize,
    messages_max: usize,
}

impl PeerQueue {
    pub fn new(peer: NodeId, bytes_max: usize, messages_max: usize) -> PeerQueue {
        assert!(
            bytes_max >= MESSAGE_PAYLOAD_BYTES_MAX + MESSAGE_OVERHEAD_BYTES,
            "the largest message must fit an empty queue"
        );
        assert!(messages_max > 0, "a queue must hold a message");
        PeerQueue {
            peer,
            messages: Vec::new(),
            bytes: 0,
            bytes_max,
            messages_max,
        }
    }

    /// Queues `envelope`, or refuses it without queueing when a bound would be crossed.
    pub fn push(&mut self, envelope: Envelope) -> Result<(), SendError> {
        let payload_bytes = envelope.message.body.payload_bytes();
        if payload_bytes > MESSAGE_PAYLOAD_BYTES_MAX as u64 {
            return Err(SendError::MessageTooLarge {
                payload_bytes,
                payload_bytes_max: MESSAGE_PAYLOAD_BYTES_MAX,
            });
        }
        let cost = cost_bytes(&envelope);
        // An empty queue takes any message: one whose body holds more than the bound leaves
        // for its payload (a snapshot's membership lists) would otherwise never be sent.
        let over = !self.messages.is_empty() && self.bytes + cost > self.bytes_max;
        if self.messages.len() >= self.messages_max || over {
            return Err(SendError::Full {
                peer: self.peer,
                queued_bytes: self.bytes,
                queued_messages: self.messages.len(),
            });
        }
        self.messages.push(envelope);
        self.bytes += cost;
        Ok(())
    }

    /// Drops every queued TimeoutNow (see [`super::Transport::send`]).
    pub fn drop_timeout_nows(&mut self) {
        let mut freed = 0;
        self.messages.retain(|envelope| {
            let stale = matches!(envelope.message.body, MessageBody::TimeoutNow);
            if stale {
                freed += cost_bytes(envelope);
            }
            !stale
        });
        self.bytes -= freed;
    }

    /// Moves every queued message to the end of `into` (the writer's batch), emptying the
    /// queue. Swapping keeps both vectors' capacity, so a warm writer does not allocate.
    pub fn take_into(&mut self, into: &mut Vec<Envelope>) {
        if into.is_empty() {
            std::mem::swap(&mut self.messages, into);
        } else {
            into.append(&mut self.messages);
        }
        self.bytes = 0;
        debug_assert!(self.messages.is_empty());
    }

    /// At most half full in bytes and in messages: where a sender that met `Full` resumes,
    /// so it resumes with room for a whole burst rather than one message.
    pub fn is_half_empty(&self) -> bool {
        self.bytes <= self.bytes_max / 2 && self.messages.len() <= self.messages_max / 2
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{GroupId, Message, MessageBody, Term};

    fn envelope() -> Envelope {
        Envelope {
            group: GroupId(1),
            message: Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(1),
                body: MessageBody::TimeoutNow,
            },
        }
    }

    /// Goal: dropping the queued TimeoutNows keeps the rest in order and gives back their
    /// bytes, so the queue's bound does not drift.
    #[test]
    fn dropping_timeout_nows_keeps_the_rest_and_frees_their_bytes() {
        let mut queue = PeerQueue::new(NodeId(2), 32 << 20, 16);
        let mut vote = envelope();
        vote.message.body = MessageBody::VoteResponse(crate::raft::VoteResponse { reject: false });
        queue.push(vote.clone()).unwrap();
        let one = queue.bytes();
        queue.push(envelope()).unwrap();
        queue.push(vote.clone()).unwrap();
        queue.push(envelope()).unwrap();
        queue.drop_timeout_nows();
        assert_eq!((queue.len(), queue.bytes()), (2, 2 * one));
        let mut taken = Vec::new();
        queue.take_into(&mut taken);
        assert_eq!(taken, [vote.clone(), vote]);
    }

    /// Goal (review 224): the queue's byte bound bounds the memory its messages hold: their
    /// envelopes in its vector, the entries of appends on the heap, and their payloads.
    /// Method: appends of 64 empty entries and heartbeats pushed until refused; what they hold
    /// is at most the bound.
    #[test]
    fn what_a_full_queue_holds_is_within_its_byte_bound() {
        use crate::raft::{AppendRequest, Entry, EntryKind, Heartbeat, LogIndex};
        let bytes_max = MESSAGE_PAYLOAD_BYTES_MAX * 2;
        let mut queue = PeerQueue::new(NodeId(2), bytes_max, usize::MAX);
        let entry = |index| Entry {
            term: Term(1),
            index: LogIndex(index),
            kind: EntryKind::Normal,
            data: bytes::Bytes::new(),
        };
        let append = MessageBody::AppendRequest(AppendRequest {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: (1..=64).map(entry).collect(),
            commit: LogIndex(0),
        });
        let heartbeat = MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(0),
            read_round: 0,
            acknowledged: LogIndex(0),
            acknowledged_term: Term(0),
            commit_term: Term(0),
            quiesce: false,
        });
        for body in [append, heartbeat] {
            let mut one = envelope();
            one.message.body = body;
            while queue.push(one.clone()).is_ok() {}
            let mut held = Vec::new();
            queue.take_into(&mut held);
            let entries: usize = held
                .iter()
                .map(|e| match &e.message.body {
                    MessageBody::AppendRequest(append) => append.entries.capacity(),
                    _ => 0,
                })
                .sum();
            let memory = held.len() * std::mem::size_of::<Envelope>()
                + entries * std::mem::size_of::<Entry>();
            assert!(held.len() > 1000, "{} queued", held.len());
            assert!(
                memory <= bytes_max,
                "{memory} bytes held, bound {bytes_max}"
            );
        }
    }

    /// Goal (review 227): a queue of the smallest size allowed takes the largest message
    /// when empty, though its body holds more on the heap than its payload: it would
    /// otherwise answer `Full` to it for ever. Method: an append of two entries (spilled to
    /// the heap) whose payload is the most a message may carry.
    #[test]
    fn an_empty_queue_takes_the_largest_message() {
        use crate::raft::{AppendRequest, ENTRY_OVERHEAD_BYTES, Entry, EntryKind, LogIndex};
        let overhead = 2 * ENTRY_OVERHEAD_BYTES as usize;
        let entry = |index, len| Entry {
            term: Term(1),
            index: LogIndex(index),
            kind: EntryKind::Normal,
            data: bytes::Bytes::from(vec![0; len]),
        };
        let mut largest = envelope();
        largest.message.body = MessageBody::AppendRequest(AppendRequest {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: [entry(1, MESSAGE_PAYLOAD_BYTES_MAX - overhead), entry(2, 0)]
                .into_iter()
                .collect(),
            commit: LogIndex(0),
        });
        let bytes_max = MESSAGE_PAYLOAD_BYTES_MAX + MESSAGE_OVERHEAD_BYTES;
        let mut queue = PeerQueue::new(NodeId(2), bytes_max, 16);
        queue
            .push(largest.clone())
            .expect("an empty queue takes it");
        assert!(queue.push(largest).is_err(), "and no second one");
    }

    #[test]
    fn a_full_queue_refuses_and_keeps_what_it_has() {
        let mut queue = PeerQueue::new(NodeId(2), MESSAGE_PAYLOAD_BYTES_MAX * 2, 3);
        for _ in 0..3 {
            queue.push(envelope()).expect("room for three");
        }
        let refused = queue.push(envelope());
        assert!(matches!(
            refused,
            Err(SendError::Full {
                queued_messages: 3,
                ..
            })
        ));
        assert_eq!(queue.len(), 3);
        let mut batch = Vec::new();
        queue.take_into(&mut batch);
        assert_eq!(batch.len(), 3);
        assert!(queue.is_empty());
        assert_eq!(queue.bytes(), 0);
        queue.push(envelope()).expect("room again once taken");
    }
}
