//! The Raft core alone: three replicas in one thread, messages handed over in memory, no
//! disk and no network, so the figures are the core's own cost per commit.
//!
//! `cargo bench --bench raft_core`. Targets (issue 2): 1,000 single-entry rounds in < 2 ms,
//! and ≥ 2,000,000 committed entries/s in batches of 64 × 16 B.

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cohort::raft::{Config, LogIndex, Message, NodeId, Persisted, Replica, Role};

/// Three replicas wired to each other through a queue; every write is durable at once.
struct Group {
    replicas: Vec<Replica>,
    queue: VecDeque<Message>,
    applied: u64,
}

impl Group {
    fn new() -> Group {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let replicas = voters
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.pre_vote = false;
                Replica::new(config, id.0, Persisted::bootstrap(&voters)).unwrap()
            })
            .collect();
        let mut group = Group {
            replicas,
            queue: VecDeque::new(),
            applied: 0,
        };
        group.replicas[0].campaign();
        group.pump();
        assert_eq!(group.replicas[0].role(), Role::Leader);
        group
    }

    /// Hand out Readies and deliver messages until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for replica in &mut self.replicas {
                if !replica.has_ready() {
                    continue;
                }
                moved = true;
                let mut ready = replica.ready();
                self.queue.extend(ready.take_messages_now());
                black_box(ready.take_entries());
                self.applied += ready.take_committed().len() as u64;
                self.queue.extend(ready.take_messages_after_persist());
                replica.advance(ready.ack());
            }
            while let Some(message) = self.queue.pop_front() {
                moved = true;
                let to = (message.to.0 - 1) as usize;
                self.replicas[to].step(message).unwrap();
            }
            if !moved {
                return;
            }
        }
    }

    /// Propose `batch` at the leader and run until every replica has applied it.
    fn round(&mut self, batch: Vec<Bytes>) {
        self.replicas[0].propose_batch(batch).unwrap();
        self.pump();
    }

    /// Keep memory flat over millions of rounds: compact every replica to what it applied.
    fn compact(&mut self) {
        for replica in &mut self.replicas {
            let applied = replica.applied();
            if applied > replica.snapshot_index().plus(4096) {
                replica.compact(applied, Bytes::new()).unwrap();
            }
        }
    }

    fn leader_commit(&self) -> LogIndex {
        self.replicas[0].commit()
    }
}

fn single_entry_rounds(c: &mut Criterion) {
    let payload = Bytes::from_static(&[7; 16]);
    let mut group = c.benchmark_group("raft_core");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 single-entry rounds, 3 replicas", |b| {
        b.iter_batched_ref(
            Group::new,
            |g| {
                let (start, applied) = (g.leader_commit(), g.applied);
                for _ in 0..1000 {
                    g.round(vec![payload.clone()]);
                }
                // Each round ends with the entry applied on all three replicas.
                assert_eq!(g.leader_commit(), start.plus(1000));
                assert_eq!(g.applied, applied + 3 * 1000);
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn batched_commits(c: &mut Criterion) {
    let batch: Vec<Bytes> = (0..64).map(|_| Bytes::from_static(&[7; 16])).collect();
    let mut group = c.benchmark_group("raft_core");
    group.throughput(Throughput::Elements(64));
    let mut g = Group::new();
    let applied_at_start = g.applied;
    let mut rounds = 0u64;
    group.bench_function("committed entries, batches of 64 x 16 B", |b| {
        b.iter(|| {
            g.round(batch.clone());
            rounds += 1;
            if rounds.is_multiple_of(256) {
                g.compact();
            }
        });
    });
    group.finish();
    // Every replica applied every batch: the figure counts commits, not proposals.
    assert_eq!(g.applied, applied_at_start + 3 * 64 * rounds);
}

criterion_group!(benches, single_entry_rounds, batched_commits);
criterion_main!(benches);
