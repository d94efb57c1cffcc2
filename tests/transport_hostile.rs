//! Hostile bytes after a valid handshake (garbage, an oversized length, a corrupt checksum,
//! a misaddressed message, a second handshake) close that connection, with the reason
//! logged; the node keeps serving its other peers and delivers nothing from the bad frames.

mod common;

use std::time::Duration;

use cohort::raft::NodeId;
use cohort::transport::Transport;
use cohort::wire::Handshake;
use cohort::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_VERSION};
use common::transport::{
    CLUSTER, append, config, handshake_frame, loopback_any_port, payload, raft_frame, raw_peer,
    read_until_closed, receive, run_executor, unused_addr,
};
use futures_lite::io::AsyncWriteExt;

const GUARD: Duration = Duration::from_secs(20);

fn oversized_header() -> Vec<u8> {
    let mut header = vec![0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&((FRAME_BODY_BYTES_MAX + 1) as u32).to_le_bytes());
    header[8] = FRAME_VERSION;
    header
}

fn corrupt_checksum_frame() -> Vec<u8> {
    let mut frame = raft_frame(&[append(1, 2, 0, 1, payload(1, 0, 1))]);
    let last = frame.len() - 1;
    frame[last] ^= 0x40;
    frame
}

/// Goal: every kind of bad frame from an authenticated peer closes only that connection.
/// Method: a raw socket handshakes with node 2 as node 1, sends one valid message, then a bad
/// frame; node 2 must deliver the valid message, close the connection, count the refusal,
/// and afterwards still exchange messages with node 3, a real transport.
#[test]
fn bad_frames_close_the_connection_and_the_node_keeps_serving() {
    run_executor(|| async {
        let node3 = Transport::start(config(3, loopback_any_port(), &[(2, unused_addr())]))
            .expect("node 3 starts");
        let node2 = Transport::start(config(
            2,
            loopback_any_port(),
            &[(1, unused_addr()), (3, node3.local_addr())],
        ))
        .expect("node 2 starts");
        let addr = node2.local_addr();
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", garbage),
            ("oversized length", oversized_header()),
            ("corrupt checksum", corrupt_checksum_frame()),
            (
                "misaddressed message",
                raft_frame(&[append(3, 2, 0, 1, payload(3, 0, 1))]),
            ),
            (
                "second handshake",
                handshake_frame(&Handshake::current(CLUSTER, NodeId(1), 0)),
            ),
        ];
        let refusals = cases.len() as u64;
        for (round, (what, bad)) in cases.into_iter().enumerate() {
            let mut stream = raw_peer(addr, 1, 2).await;
            let index = round as u64 + 1;
            let valid = raft_frame(&[append(1, 2, 7, index, payload(1, 7, index))]);
            stream.write_all(&valid).await.expect("writes");
            stream.write_all(&bad).await.expect("writes");
            let delivered = receive(&node2, 1, GUARD).await;
            assert_eq!(delivered.len(), 1, "{what}: the valid frame arrives");
            assert_eq!(
                delivered[0].envelopes,
                vec![append(1, 2, 7, index, payload(1, 7, index))],
                "{what}"
            );
            read_until_closed(&mut stream, GUARD).await;
            assert!(
                node2.try_recv().is_none(),
                "{what}: nothing from the bad frame"
            );
            assert_eq!(node2.stats().connections_refused, index, "{what}");
        }
        assert_eq!(node2.stats().connections_refused, refusals);

        node3
            .send(NodeId(2), append(3, 2, 1, 1, payload(3, 1, 1)))
            .expect("queued");
        node2
            .send(NodeId(3), append(2, 3, 1, 1, payload(2, 1, 1)))
            .expect("queued");
        assert_eq!(receive(&node2, 1, GUARD).await[0].from, NodeId(3));
        assert_eq!(receive(&node3, 1, GUARD).await[0].from, NodeId(2));
        node2.close().await;
        node3.close().await;
    });
}

/// Goal: strangers that open connections and never handshake cannot keep a peer out: a new
/// connection past the pending bound closes the oldest one in its handshake, rather than
/// itself (found in review: 64 silent connections, reopened as they timed out, cut a node off
/// from every peer that had to dial it). Method: node 3, whose handshakes may take 30 s,
/// holds 64 silent connections; then node 2 (the smaller id dials) dials it and sends a
/// message, which must arrive within seconds, not after the silent ones time out.
#[test]
fn silent_connections_cannot_keep_a_peer_from_connecting() {
    run_executor(|| async {
        let mut config3 = config(3, loopback_any_port(), &[(2, unused_addr())]);
        config3.handshake_timeout = Duration::from_secs(30);
        let node3 = Transport::start(config3).expect("node 3 starts");
        let addr = node3.local_addr();
        let mut silent = Vec::new();
        for _ in 0..cohort::transport::HANDSHAKES_PENDING_MAX {
            let stream = glommio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            silent.push(stream);
        }
        // Let node 3 take them all in.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        let node2 =
            Transport::start(config(2, loopback_any_port(), &[(3, addr)])).expect("node 2 starts");
        node2
            .send(NodeId(3), append(2, 3, 1, 1, payload(2, 1, 1)))
            .expect("queued");
        let delivered = receive(&node3, 1, Duration::from_secs(5)).await;
        assert_eq!(
            delivered[0].envelopes,
            vec![append(2, 3, 1, 1, payload(2, 1, 1))]
        );
        drop(silent);
    });
}
