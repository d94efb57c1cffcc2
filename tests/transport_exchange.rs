//! Transports on loopback exchange the Raft messages of many groups over one connection per
//! pair of nodes, on one executor and across executors.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cohort::raft::{MessageBody, NodeId};
use cohort::transport::Transport;
use cohort::wire::{Envelope, SenderSays};
use common::transport::{
    append, config, loopback_any_port, payload, receive, run_executor, unused_addr,
};

const GUARD: Duration = Duration::from_secs(20);
const GROUPS: u32 = 8;
const MESSAGES_PER_GROUP: u64 = 50;

/// What `from` sends `to`: `MESSAGES_PER_GROUP` appends in each of `GROUPS` groups.
fn traffic(from: u64, to: u64) -> Vec<Envelope> {
    let mut messages = Vec::new();
    for index in 1..=MESSAGES_PER_GROUP {
        for group in 0..GROUPS {
            messages.push(append(from, to, group, index, payload(from, group, index)));
        }
    }
    messages
}

fn payload_of(envelope: &Envelope) -> &[u8] {
    match &envelope.message.body {
        MessageBody::AppendRequest(append) => &append.entries[0].data,
        other => panic!("expected an append, got {}", other.name()),
    }
}

/// Goal: every message sent between three nodes arrives once, in order per sender, with its
/// group and payload intact. Method: three transports on one executor (started from the
/// largest id down, so each dialer knows its acceptors' ports); each sends 400 messages of 8
/// groups to each other, in several loop turns; each receiver checks what it got per sender.
#[test]
fn three_nodes_exchange_messages_of_many_groups() {
    run_executor(|| async {
        let node3 = Transport::start(config(
            3,
            loopback_any_port(),
            &[(1, unused_addr()), (2, unused_addr())],
        ))
        .expect("node 3 starts");
        let node2 = Transport::start(config(
            2,
            loopback_any_port(),
            &[(1, unused_addr()), (3, node3.local_addr())],
        ))
        .expect("node 2 starts");
        let node1 = Transport::start(config(
            1,
            loopback_any_port(),
            &[(2, node2.local_addr()), (3, node3.local_addr())],
        ))
        .expect("node 1 starts");
        let nodes = [&node1, &node2, &node3];
        // Sent before any connection is up: queued, then written once connected.
        for turn in traffic(1, 2).chunks(100).take(1) {
            for envelope in turn {
                node1.send(NodeId(2), envelope.clone()).expect("queued");
            }
        }
        for (from_index, from) in nodes.iter().enumerate() {
            for to in nodes {
                let (from_id, to_id) = (from.node_id().0, to.node_id().0);
                if from_id == to_id {
                    continue;
                }
                let skip = if (from_id, to_id) == (1, 2) { 100 } else { 0 };
                for turn in traffic(from_id, to_id)[skip..].chunks(100) {
                    for envelope in turn {
                        from.send(to.node_id(), envelope.clone()).expect("queued");
                    }
                    // End the loop turn, as a shard would.
                    glommio::yield_if_needed().await;
                    futures_lite::future::yield_now().await;
                }
            }
            assert!(from_index < 3);
        }
        let expected_per_node = 2 * (GROUPS as usize) * MESSAGES_PER_GROUP as usize;
        for node in nodes {
            let batches = receive(node, expected_per_node, GUARD).await;
            let mut by_sender: BTreeMap<NodeId, Vec<Envelope>> = BTreeMap::new();
            for batch in batches {
                for envelope in &batch.envelopes {
                    assert_eq!(envelope.message.from, batch.from, "sender is the peer");
                }
                by_sender
                    .entry(batch.from)
                    .or_default()
                    .extend(batch.envelopes);
            }
            assert_eq!(
                by_sender.len(),
                2,
                "node {} hears both peers",
                node.node_id()
            );
            for (from, received) in by_sender {
                let sent = traffic(from.0, node.node_id().0);
                assert_eq!(received, sent, "{from} → {}", node.node_id());
                assert!(payload_of(&received[0]).starts_with(b"from "));
            }
            assert!(node.try_recv().is_none(), "nothing beyond what was sent");
        }
        for node in nodes {
            let stats = node.stats();
            assert_eq!(stats.connections_refused, 0);
            assert_eq!(stats.messages_received as usize, expected_per_node);
            assert!(
                stats.frames_received < stats.messages_received,
                "messages travel batched: {stats:?}"
            );
        }
        node1.close().await;
        node2.close().await;
        node3.close().await;
    });
}

/// Goal: the transport works between executors on different threads, as a node's cores on
/// different nodes do. Method: node 2 (acceptor) on one executor publishes its port; node 1
/// on another dials it; they exchange traffic both ways and each checks what it received.
#[test]
fn nodes_on_separate_executors_exchange_both_ways() {
    let (addr_sender, addr_receiver) = std::sync::mpsc::channel();
    let (done_sender, done_receiver) = std::sync::mpsc::channel::<()>();
    let acceptor = std::thread::spawn(move || {
        run_executor(move || async move {
            let node2 = Transport::start(config(2, loopback_any_port(), &[(1, unused_addr())]))
                .expect("node 2 starts");
            addr_sender.send(node2.local_addr()).expect("publish");
            for envelope in traffic(2, 1) {
                node2.send(NodeId(1), envelope).expect("queued");
            }
            let batches = receive(&node2, traffic(1, 2).len(), GUARD).await;
            let received: Vec<Envelope> = batches.into_iter().flat_map(|b| b.envelopes).collect();
            // Keep serving until node 1 has everything too.
            while done_receiver.try_recv().is_err() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            node2.close().await;
            received
        })
    });
    let node2_addr = addr_receiver.recv().expect("node 2 address");
    let received_by_1 = run_executor(move || async move {
        let node1 = Transport::start(config(1, loopback_any_port(), &[(2, node2_addr)]))
            .expect("node 1 starts");
        for envelope in traffic(1, 2) {
            node1.send(NodeId(2), envelope).expect("queued");
        }
        let batches = receive(&node1, traffic(2, 1).len(), GUARD).await;
        done_sender.send(()).expect("signal");
        node1.close().await;
        batches
            .into_iter()
            .flat_map(|b| b.envelopes)
            .collect::<Vec<_>>()
    });
    let received_by_2 = acceptor.join().expect("acceptor thread");
    assert_eq!(received_by_1, traffic(2, 1));
    assert_eq!(received_by_2, traffic(1, 2));
}

/// Goal: a core whose log cannot grow, or whose key-value state holds its quota, says so to
/// its peers, and says so no more once it does not. Method: node 1 sends node 2 a message,
/// is told its log is full, sends one more, is told it has room and its state is full, sends
/// a third; node 2 sees the flags of each batch as they were when sent.
#[test]
fn a_full_log_is_said_in_the_batches_sent_while_it_is_full() {
    run_executor(|| async {
        let node2 = Transport::start(config(2, loopback_any_port(), &[(1, unused_addr())]))
            .expect("node 2 starts");
        let node1 = Transport::start(config(1, loopback_any_port(), &[(2, node2.local_addr())]))
            .expect("node 1 starts");
        let mut seen = Vec::new();
        for (index, full, kv_full) in [(1, false, false), (2, true, false), (3, false, true)] {
            node1.say(SenderSays {
                log_full: full,
                kv_full,
                clients_relay: index == 3,
            });
            let message = append(1, 2, 0, index, payload(1, 0, index));
            node1.send(NodeId(2), message).expect("queued");
            let batches = receive(&node2, 1, GUARD).await;
            seen.extend(
                batches
                    .iter()
                    .map(|b| (b.sender.log_full, b.sender.kv_full, b.sender.clients_relay)),
            );
        }
        let said = [
            (false, false, false),
            (true, false, false),
            (false, true, true),
        ];
        assert_eq!(seen, said);
        node1.close().await;
        node2.close().await;
    });
}
