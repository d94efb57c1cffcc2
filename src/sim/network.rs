//! A seeded faulty network: delays, drops, duplicates, reordering and partitions.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use crate::raft::{Message, MessageBody, NodeId, Prng};

/// Fault rates of the network, in parts per thousand.
#[derive(Clone, Copy, Debug)]
pub struct NetworkFaults {
    pub drop_permille: u64,
    pub duplicate_permille: u64,
    /// Messages take `1..=delay_max` time units; different delays reorder them.
    pub delay_max: u64,
}

impl NetworkFaults {
    /// A perfect network: every message arrives once, in order, after one time unit.
    pub const NONE: NetworkFaults = NetworkFaults {
        drop_permille: 0,
        duplicate_permille: 0,
        delay_max: 1,
    };
}

#[derive(Debug)]
struct InFlight {
    message: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

#[derive(Debug)]
pub struct Network {
    pub faults: NetworkFaults,
    /// (due time, send sequence) orders delivery; the sequence breaks ties deterministically.
    queue: BinaryHeap<Reverse<(u64, u64, InFlight)>>,
    sequence: u64,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    pub sent: u64,
    pub delivered: u64,
    /// Heartbeats sent that told a follower to go quiet.
    pub quiet_heartbeats: u64,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            queue: BinaryHeap::new(),
            sequence: 0,
            cut: BTreeSet::new(),
            sent: 0,
            delivered: 0,
            quiet_heartbeats: 0,
        }
    }

    pub fn send(&mut self, now: u64, message: Message, rng: &mut Prng) {
        self.sent += 1;
        if matches!(&message.body, MessageBody::Heartbeat(heartbeat) if heartbeat.quiesce) {
            self.quiet_heartbeats += 1;
        }
        if rng.chance(self.faults.drop_permille, 1000) {
            return;
        }
        let copies = if rng.chance(self.faults.duplicate_permille, 1000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let due = now + 1 + rng.below(self.faults.delay_max.max(1));
            self.sequence += 1;
            self.queue.push(Reverse((
                due,
                self.sequence,
                InFlight {
                    message: message.clone(),
                },
            )));
        }
    }

    /// The next message due at or before `now` that is not cut off, if any.
    pub fn next_due(&mut self, now: u64) -> Option<Message> {
        while let Some(Reverse((due, _, _))) = self.queue.peek() {
            if *due > now {
                return None;
            }
            let Reverse((_, _, InFlight { message })) = self.queue.pop().expect("peeked");
            if self.cut.contains(&(message.from, message.to)) {
                continue;
            }
            self.delivered += 1;
            return Some(message);
        }
        None
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Cut every link between the two sides, both ways.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }
}
