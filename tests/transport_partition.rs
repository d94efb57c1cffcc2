//! A partition that drops every segment (no reset, no error: a cut cable, a dead switch) is
//! noticed, and the connection is dialed again once it heals.
//!
//! Without a bound on unacknowledged bytes, such a connection stays open for the kernel's
//! full retransmission schedule (about 15 minutes) and, after the partition heals, waits for
//! the next retransmission, which backs off to minutes: a follower rejoined seconds late.
//! Needs root and iptables (see `common::netfilter`); elsewhere it says it was skipped.

mod common;

use std::time::Duration;

use cohort::raft::{MessageBody, NodeId};
use cohort::transport::Transport;
use cohort::wire::Envelope;
use common::netfilter::{self, Partition};
use common::transport::{
    append, config, loopback_any_port, payload, run_executor, unused_addr, wait_until,
};

const GUARD: Duration = Duration::from_secs(20);
const UNACKED_TIMEOUT: Duration = Duration::from_secs(1);

fn messages(first_index: u64, count: u64) -> Vec<Envelope> {
    (first_index..first_index + count)
        .map(|index| append(1, 2, 0, index, payload(1, 0, index)))
        .collect()
}

fn index_of(envelope: &Envelope) -> u64 {
    match &envelope.message.body {
        MessageBody::AppendRequest(append) => append.entries[0].index.0,
        other => panic!("not an append: {other:?}"),
    }
}

/// Receives at `node` until the append of index `last` arrives; returns every index seen.
async fn receive_through(node: &Transport, last: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let batch = futures_lite::future::or(async { node.recv().await }, async {
            glommio::timer::sleep(GUARD).await;
            None
        })
        .await
        .unwrap_or_else(|| panic!("append {last} did not arrive; got {seen:?}"));
        seen.extend(batch.envelopes.iter().map(index_of));
    }
    seen
}

/// Goal: bytes that go unacknowledged close the connection, and the dialer connects again
/// once the partition heals. Method: node 1 dials node 2 and delivers; every segment to or
/// from node 2's port is then dropped and node 1 sends; node 1 must find its connection
/// closed while the partition lasts; after it heals, what node 1 sends must arrive.
#[test]
fn a_silent_connection_is_closed_and_dialed_again_after_the_partition() {
    if !netfilter::available_or_skip() {
        return;
    }
    run_executor(|| async {
        let mut config2 = config(2, loopback_any_port(), &[(1, unused_addr())]);
        config2.unacked_timeout = UNACKED_TIMEOUT;
        let node2 = Transport::start(config2).expect("node 2 starts");
        let addr2 = node2.local_addr();
        let mut config1 = config(1, loopback_any_port(), &[(2, addr2)]);
        config1.unacked_timeout = UNACKED_TIMEOUT;
        let node1 = Transport::start(config1).expect("node 1 starts");
        for envelope in messages(1, 10) {
            node1.send(NodeId(2), envelope).expect("queued");
        }
        assert_eq!(
            receive_through(&node2, 10).await,
            (1..=10).collect::<Vec<_>>()
        );

        let cut = Partition::isolate_port(addr2.port()).expect("partition");
        for envelope in messages(100, 10) {
            node1.send(NodeId(2), envelope).expect("queued");
        }
        wait_until("node 1 closes its silent connection", GUARD, || {
            !node1.is_connected(NodeId(2))
        })
        .await;
        drop(cut);

        for envelope in messages(200, 10) {
            node1.send(NodeId(2), envelope).expect("queued");
        }
        // What was written into the dead connection is lost, as Raft allows; what was sent
        // after it closed arrives, in order.
        let seen = receive_through(&node2, 209).await;
        assert_eq!(seen[seen.len() - 10..], (200..210).collect::<Vec<_>>());
        assert!(node2.stats().connections_established >= 2);
        node1.close().await;
        node2.close().await;
    });
}
