//! A refused handshake closes that connection with a logged reason and leaves the listener
//! serving: wrong cluster, wrong version, unknown node, wrong core, another layout (cores
//! and groups), other timing with lease reads, a larger id dialing,
//! a first frame that is not a handshake, garbage, and silence; a dialer that meant another
//! node; and a node back under its id with other data.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cohort::raft::NodeId;
use cohort::transport::{DataLost, Transport};
use cohort::wire::{ClusterId, DecodedFrame, Handshake, Layout, Timing, decode_frame};
use common::transport::{
    CLUSTER, append, config, handshake_frame, loopback_any_port, payload, raft_frame, raw_connect,
    read_until_closed, receive, run_executor, unused_addr,
};

const GUARD: Duration = Duration::from_secs(20);

/// Goal: each kind of bad opening is refused without an answer (but for a member of other
/// layout or timing, told node 2's so that it says why too) and without disturbing the node.
/// Method: node 2 (peers 1 and 3) gets one raw connection per bad opening; each must be
/// closed, with nothing sent back but where said, and counted as refused. Then real nodes 1
/// and 3 connect to node 2 and exchange messages with it.
#[test]
fn bad_handshakes_are_refused_and_the_listener_keeps_serving() {
    run_executor(|| async {
        // Node 3 says its layout, initial voters and timing (the same as node 2's); node 1
        // does not (an older node).
        let layout = Layout {
            cores: 1,
            groups: 4,
            founders: 0x77,
        };
        let timing = Timing {
            tick_us: 10_000,
            election_ticks: 10,
            lease_reads: true,
        };
        let mut node3_config = config(3, loopback_any_port(), &[(2, unused_addr())]);
        node3_config.layout = layout;
        node3_config.timing = timing;
        let node3 = Transport::start(node3_config).expect("node 3 starts");
        let mut node2_config = config(
            2,
            loopback_any_port(),
            &[(1, unused_addr()), (3, node3.local_addr())],
        );
        node2_config.handshake_timeout = Duration::from_millis(200);
        node2_config.layout = layout;
        node2_config.timing = timing;
        let node2 = Transport::start(node2_config).expect("node 2 starts");
        let addr = node2.local_addr();

        let good = Handshake::current(CLUSTER, NodeId(1), 0);
        let bad_openings: Vec<(&str, Vec<u8>)> = vec![
            (
                "wrong cluster",
                handshake_frame(&Handshake {
                    cluster_id: ClusterId(CLUSTER.0 + 1),
                    ..good
                }),
            ),
            (
                "wrong version",
                handshake_frame(&Handshake {
                    protocol_version: good.protocol_version + 1,
                    ..good
                }),
            ),
            (
                "unknown node",
                handshake_frame(&Handshake {
                    node_id: NodeId(77),
                    ..good
                }),
            ),
            (
                "wrong core",
                handshake_frame(&Handshake {
                    core_index: 5,
                    ..good
                }),
            ),
            (
                "another layout",
                handshake_frame(&Handshake {
                    layout: Layout {
                        cores: 1,
                        groups: 8,
                        founders: 0,
                    },
                    ..good
                }),
            ),
            (
                "other initial voters",
                handshake_frame(&Handshake {
                    layout: Layout {
                        founders: 0x78,
                        ..layout
                    },
                    ..good
                }),
            ),
            (
                "a shorter election timeout, with lease reads",
                handshake_frame(&Handshake {
                    timing: Timing {
                        election_ticks: 5,
                        ..timing
                    },
                    ..good
                }),
            ),
            (
                "lease reads off, against a node with them on",
                handshake_frame(&Handshake {
                    timing: Timing {
                        lease_reads: false,
                        ..timing
                    },
                    ..good
                }),
            ),
            (
                "larger id dialing",
                handshake_frame(&Handshake {
                    node_id: NodeId(3),
                    ..good
                }),
            ),
            (
                "raft frame first",
                raft_frame(&[append(1, 2, 0, 1, payload(1, 0, 1))]),
            ),
            (
                "garbage",
                b"GET / HTTP/1.1\r\nHost: cohort\r\n\r\n".to_vec(),
            ),
        ];
        let refusals = bad_openings.len() as u64;
        for (what, bytes) in bad_openings {
            let mut stream = raw_connect(addr, &bytes).await;
            let answer = read_until_closed(&mut stream, GUARD).await;
            let told = [
                "wrong version",
                "another layout",
                "other initial voters",
                "a shorter election",
                "lease reads off",
            ]
            .iter()
            .any(|told| what.starts_with(told));
            assert_eq!(!answer.is_empty(), told, "{what}: answered or not");
            if what == "wrong version" {
                // Its version alone: nothing of the node or its cluster.
                let Ok(DecodedFrame::Handshake(said)) = decode_frame(&Bytes::from(answer)) else {
                    panic!("{what}: not a handshake");
                };
                assert_eq!(
                    said,
                    Handshake::current(ClusterId(0), NodeId(0), 0),
                    "{what}"
                );
            }
        }
        // Silence: closed once the handshake time is up (not counted as the peer's fault).
        let mut silent = raw_connect(addr, &[]).await;
        assert!(read_until_closed(&mut silent, GUARD).await.is_empty());
        assert_eq!(node2.stats().connections_refused, refusals);
        assert_eq!(node2.stats().connections_established, 1, "only node 3");

        let node1 =
            Transport::start(config(1, loopback_any_port(), &[(2, addr)])).expect("node 1 starts");
        node1
            .send(NodeId(2), append(1, 2, 4, 1, payload(1, 4, 1)))
            .expect("queued");
        node3
            .send(NodeId(2), append(3, 2, 5, 1, payload(3, 5, 1)))
            .expect("queued");
        let batches = receive(&node2, 2, GUARD).await;
        let mut senders: Vec<NodeId> = batches.iter().map(|batch| batch.from).collect();
        senders.sort();
        assert_eq!(senders, vec![NodeId(1), NodeId(3)]);
        node2
            .send(NodeId(1), append(2, 1, 4, 1, payload(2, 4, 1)))
            .expect("queued");
        assert_eq!(receive(&node1, 1, GUARD).await[0].from, NodeId(2));
        for node in [node1, node2, node3] {
            node.close().await;
        }
    });
}

/// Goal (found in review): a node that dials a peer run with other timing (lease reads on)
/// finds out why, as the peer does: it was refused with no answer, and saw only a closed
/// connection. Method: node 1 (election ticks 5) dials node 2 (10), both with lease reads;
/// both count the connection refused.
#[test]
fn a_dialer_of_other_timing_is_told_and_refuses_too() {
    run_executor(|| async {
        let timing = |election_ticks| Timing {
            tick_us: 10_000,
            election_ticks,
            lease_reads: true,
        };
        let mut node2_config = config(2, loopback_any_port(), &[(1, unused_addr())]);
        node2_config.timing = timing(10);
        let node2 = Transport::start(node2_config).expect("node 2 starts");
        let mut node1_config = config(1, loopback_any_port(), &[(2, node2.local_addr())]);
        node1_config.timing = timing(5);
        let node1 = Transport::start(node1_config).expect("node 1 starts");
        common::transport::wait_until("both refuse", GUARD, || {
            node1.stats().connections_refused >= 1 && node2.stats().connections_refused >= 1
        })
        .await;
        assert!(!node1.is_connected(NodeId(2)));
        node1.close().await;
        node2.close().await;
    });
}

/// Goal: a dialer refuses an acceptor that is not the node it dialed. Method: node 1 dials
/// "node 2" at an address where node 3 of the same cluster listens (a stale address book);
/// node 1 must never count a connection to node 2 as established.
#[test]
fn a_dialer_refuses_the_wrong_node_at_its_peers_address() {
    run_executor(|| async {
        let node3 = Transport::start(config(3, loopback_any_port(), &[(1, unused_addr())]))
            .expect("node 3 starts");
        let node1 = Transport::start(config(
            1,
            loopback_any_port(),
            &[(2, node3.local_addr()), (3, node3.local_addr())],
        ))
        .expect("node 1 starts");
        // Node 1's own connection to node 3 comes up; the one meant for node 2 is refused by
        // node 1 (wrong node answered) every time it is tried.
        common::transport::wait_until("node 1 reaches node 3", GUARD, || {
            node1.is_connected(NodeId(3))
        })
        .await;
        common::transport::wait_until("a refusal of the wrong node", GUARD, || {
            node1.stats().connections_refused >= 2
        })
        .await;
        assert!(!node1.is_connected(NodeId(2)));
        node1.close().await;
        node3.close().await;
    });
}

/// Goal (review 224): a dialer that meant another node at this address (its member list
/// gives a node that is gone, or not yet removed there, the address a new node took over) is
/// refused before its handshake is compared with any record: its `incarnation_of_receiver`
/// is its record of the other node, and a new node took the mismatch for proof that it had
/// lost its data and stopped, for good. Method: node 4, new, is dialed by node 1 naming
/// node 3 as the receiver with node 3's record; node 4 must answer (so that node 1 says who
/// answered), close, prove nothing, and still take node 1's own connection.
#[test]
fn a_dialer_that_meant_another_node_is_refused_and_proves_nothing() {
    run_executor(|| async {
        let mut node4_config = config(4, loopback_any_port(), &[(1, unused_addr())]);
        node4_config.incarnation = 40;
        node4_config.incarnation_is_new = true;
        let node4 = Transport::start(node4_config).expect("node 4 starts");
        let meant_for_3 = Handshake {
            incarnation: 10,
            incarnation_of_receiver: 30,
            start: 1,
            start_of_receiver: 1,
            receiver: NodeId(3),
            ..Handshake::current(CLUSTER, NodeId(1), 0)
        };
        let mut stream = raw_connect(node4.local_addr(), &handshake_frame(&meant_for_3)).await;
        let answer = read_until_closed(&mut stream, GUARD).await;
        let Ok(DecodedFrame::Handshake(said)) = decode_frame(&Bytes::from(answer)) else {
            panic!("not answered with a handshake");
        };
        assert_eq!(said.node_id, NodeId(4));
        assert_eq!(refused_in(&node4, Duration::from_millis(300)).await, None);
        assert_eq!(node4.stats().connections_refused, 1);
        let node1 = Transport::start(config(1, loopback_any_port(), &[(4, node4.local_addr())]))
            .expect("node 1 starts");
        node1
            .send(NodeId(4), append(1, 4, 0, 1, payload(1, 0, 1)))
            .expect("queued");
        assert_eq!(receive(&node4, 1, GUARD).await[0].from, NodeId(1));
        node1.close().await;
        node4.close().await;
    });
}

/// Goal: a port a node listens on is never shared with a second listener (glommio's own bind
/// sets SO_REUSEPORT, which would let two nodes split one port's connections silently).
/// Method: listen on a port, then listen on it again: the second listen must fail.
#[test]
fn a_listening_port_is_not_shared() {
    run_executor(|| async {
        let first =
            cohort::transport::listen(loopback_any_port(), socket_options()).expect("first listen");
        let addr = first.local_addr().expect("bound address");
        let second = cohort::transport::listen(addr, socket_options());
        assert_eq!(
            second.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse)
        );
    });
}

fn socket_options() -> cohort::transport::SocketOptions {
    cohort::transport::SocketOptions {
        buffer_bytes: 1 << 16,
        unacked_timeout: Duration::from_secs(5),
    }
}

/// Goal: a core back under its node id with other data is refused by the peer that recorded
/// it, and finds out itself, whether it accepts or dials; with the same data it is let in; a
/// core whose data is not new is refused but not told it lost its data (the peer's record may
/// be the wrong one). Method: nodes 1 and 2 connect (node 1 dials) and exchange a message; node
/// 2 comes back on the same incarnation (let in), then on another, new one (both refuse, node 2
/// finds out). Then the dialer (node 1) comes back on another new one, then on another that is
/// not new.
#[test]
fn a_node_back_with_other_data_is_refused_and_finds_out() {
    run_executor(|| async {
        let start = |node: u64, listen, peer: (u64, SocketAddr), incarnation, new| {
            let mut config = config(node, listen, &[peer]);
            config.incarnation = incarnation;
            config.incarnation_is_new = new;
            Transport::start(config).expect("starts")
        };
        let exchange = |from: &Transport, to: &Transport| {
            let (a, b) = (from.node_id().0, to.node_id().0);
            from.send(NodeId(b), append(a, b, 0, 1, payload(a, 0, 1)))
                .expect("queued");
        };

        // The acceptor comes back.
        let node2 = start(2, loopback_any_port(), (1, unused_addr()), 20, true);
        let addr2 = node2.local_addr();
        let node1 = start(1, loopback_any_port(), (2, addr2), 10, true);
        exchange(&node1, &node2);
        receive(&node2, 1, GUARD).await;
        node2.close().await;
        let node2 = start(2, addr2, (1, unused_addr()), 20, false);
        exchange(&node1, &node2);
        receive(&node2, 1, GUARD).await;
        node2.close().await;
        let refused_before = node1.stats().connections_refused;
        let node2 = start(2, addr2, (1, unused_addr()), 21, true);
        let why = refused_in(&node2, GUARD).await.expect("node 2 finds out");
        let proof = DataLost::OtherData {
            peer: NodeId(1),
            incarnation_recorded: 20,
        };
        assert_eq!(why, proof);
        common::transport::wait_until("node 1 refuses node 2", GUARD, || {
            node1.stats().connections_refused > refused_before
        })
        .await;
        assert!(!node1.is_connected(NodeId(2)));
        assert_eq!(node2.stats().connections_established, 0);
        node1.close().await;
        node2.close().await;

        // The dialer comes back.
        let node2 = start(2, loopback_any_port(), (1, unused_addr()), 30, true);
        let node1 = start(1, loopback_any_port(), (2, node2.local_addr()), 10, true);
        exchange(&node1, &node2);
        receive(&node2, 1, GUARD).await;
        node1.close().await;
        let refused_before = node2.stats().connections_refused;
        let node1 = start(1, loopback_any_port(), (2, node2.local_addr()), 11, true);
        let why = refused_in(&node1, GUARD).await.expect("node 1 finds out");
        let proof = DataLost::OtherData {
            peer: NodeId(2),
            incarnation_recorded: 10,
        };
        assert_eq!(why, proof);
        assert!(node2.stats().connections_refused > refused_before);
        assert_eq!(node1.stats().connections_established, 0);
        node1.close().await;

        // Not new: refused on both sides, again and again, and not told it lost its data.
        let node1 = start(1, loopback_any_port(), (2, node2.local_addr()), 12, false);
        common::transport::wait_until("refusals on both sides", GUARD, || {
            node1.stats().connections_refused >= 2
        })
        .await;
        assert!(
            refused_in(&node1, Duration::from_millis(200))
                .await
                .is_none()
        );
        assert_eq!(node1.stats().connections_established, 0);
        node1.close().await;
        node2.close().await;
    });
}

/// Goal (found in review): an acceptor whose own disk cannot keep a peer's record does not
/// answer its handshake, so the dialer sees failed dials (and warns of them in time), not
/// connections established and closed at once, said at info at each dial. Method: node 2's
/// record's temporary file is a directory; node 1 dials it for a second and establishes
/// nothing; with the way cleared, it connects.
#[test]
fn a_dialer_refused_for_the_acceptors_own_disk_establishes_nothing() {
    run_executor(|| async {
        let name = format!("cohort-record-fails-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.incarnations");
        let blocker = cohort::durable::temporary_twin(&path);
        std::fs::create_dir(&blocker).unwrap();
        let mut config2 = config(2, loopback_any_port(), &[(1, unused_addr())]);
        config2.incarnations_file = Some(path);
        config2.incarnation = 20;
        let node2 = Transport::start(config2).expect("starts");
        let mut config1 = config(1, loopback_any_port(), &[(2, node2.local_addr())]);
        config1.incarnation = 10;
        let node1 = Transport::start(config1).expect("starts");
        glommio::timer::sleep(Duration::from_secs(1)).await;
        assert_eq!(node1.stats().connections_established, 0);
        std::fs::remove_dir(&blocker).unwrap();
        common::transport::wait_until("node 1 connects", GUARD, || {
            node1.stats().connections_established > 0
        })
        .await;
        node1.close().await;
        node2.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Who proved `node` lost its data, if one did within `guard`.
async fn refused_in(node: &Transport, guard: Duration) -> Option<DataLost> {
    common::transport::within(guard, node.refused_as_unknown()).await
}
