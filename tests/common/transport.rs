//! Helpers for the transport tests: executors, configurations, messages, raw peers.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cohort::raft::{AppendRequest, Entry, EntryKind, GroupId, LogIndex, Message, MessageBody};
use cohort::raft::{NodeId, Term};
use cohort::transport::{Inbound, Transport, TransportConfig};
use cohort::wire::{ClusterId, Envelope, FrameEncoder, Handshake};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};

pub const CLUSTER: ClusterId = ClusterId(0xC0_4057);

/// Where a peer with a smaller id "lives": never dialed (the smaller id dials), only probed
/// after seconds of silence (a refused connect here), so any address will do; where nobody
/// listens for a peer of a larger id, which is dialed.
pub fn unused_addr() -> SocketAddr {
    "127.0.0.1:9".parse().expect("an address")
}

pub fn loopback_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Runs `make()` on a fresh glommio executor on its own thread and returns its output.
/// Executors get a small `io_memory` (the transport does no file I/O) so many tests fit the
/// machine's locked-memory limit.
pub fn run_executor<G, F, T>(make: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    cohort::sys::raise_memlock_limit().expect("locked memory for io_uring");
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .ring_depth(64)
        .spawn(make)
        .expect("executor starts")
        .join()
        .expect("executor thread")
}

/// A configuration with fast reconnects, for tests.
pub fn config(node: u64, listen: SocketAddr, peers: &[(u64, SocketAddr)]) -> TransportConfig {
    let peers: BTreeMap<NodeId, SocketAddr> = peers
        .iter()
        .map(|&(node, addr)| (NodeId(node), addr))
        .collect();
    let mut config = TransportConfig::new(NodeId(node), 0, CLUSTER, listen, peers);
    config.reconnect_delay_min = Duration::from_millis(5);
    config.reconnect_delay_max = Duration::from_millis(100);
    config.handshake_timeout = Duration::from_secs(2);
    config
}

/// An append from `from` to `to` in `group` with one entry whose payload is `payload`.
pub fn append(from: u64, to: u64, group: u32, index: u64, payload: Bytes) -> Envelope {
    Envelope {
        group: GroupId(group),
        message: Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(1),
            body: MessageBody::AppendRequest(AppendRequest {
                prev_log_index: LogIndex(index - 1),
                prev_log_term: Term(1),
                entries: [Entry {
                    term: Term(1),
                    index: LogIndex(index),
                    kind: EntryKind::Normal,
                    data: payload,
                }]
                .into(),
                commit: LogIndex(0),
            }),
        },
    }
}

/// A recognisable payload for (from, group, index).
pub fn payload(from: u64, group: u32, index: u64) -> Bytes {
    Bytes::from(format!("from {from} group {group} index {index}"))
}

/// Receives until `count` messages have arrived; panics after `guard` (a hang guard, not a
/// timing assertion: a healthy run takes milliseconds).
pub async fn receive(transport: &Transport, count: usize, guard: Duration) -> Vec<Inbound> {
    let mut batches = Vec::new();
    let mut received = 0;
    while received < count {
        let next = futures_lite::future::or(async { transport.recv().await }, async {
            glommio::timer::sleep(guard).await;
            None
        })
        .await;
        let batch = next.unwrap_or_else(|| {
            panic!(
                "node {} received {received} of {count} messages before the guard",
                transport.node_id()
            )
        });
        received += batch.envelopes.len();
        batches.push(batch);
    }
    batches
}

/// What `future` gives, if it does within `guard`.
pub async fn within<T>(guard: Duration, future: impl Future<Output = T>) -> Option<T> {
    let done = async { Some(future.await) };
    futures_lite::future::or(done, async {
        glommio::timer::sleep(guard).await;
        None
    })
    .await
}

/// Waits until `condition` holds, checking every millisecond; panics after `guard`.
pub async fn wait_until(what: &str, guard: Duration, mut condition: impl FnMut() -> bool) {
    let rounds = guard.as_millis() as u64;
    for _ in 0..rounds {
        if condition() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("gave up waiting: {what}");
}

/// The bytes of a handshake frame.
pub fn handshake_frame(handshake: &Handshake) -> Vec<u8> {
    let mut encoder = FrameEncoder::new();
    encoder.encode_handshake(handshake).expect("encodes");
    encoder.to_frame_vec()
}

/// The bytes of a frame of Raft messages.
pub fn raft_frame(envelopes: &[Envelope]) -> Vec<u8> {
    let mut encoder = FrameEncoder::new();
    encoder.encode_raft(envelopes.iter()).expect("encodes");
    encoder.to_frame_vec()
}

/// Connects to `addr` and sends `bytes`.
pub async fn raw_connect(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(bytes).await.expect("writes");
    stream
}

/// Reads until the peer closes the connection and returns what it sent before; panics after
/// `guard`.
pub async fn read_until_closed(stream: &mut TcpStream, guard: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let closed = futures_lite::future::or(read_all, async {
        glommio::timer::sleep(guard).await;
        false
    })
    .await;
    assert!(closed, "the transport did not close the connection");
    received
}

/// Reads one whole frame from a raw stream (the transport's handshake answer, say); panics
/// after 20 s (a handshake that is never answered fails the test, found in review: it hung).
pub async fn read_one_frame(stream: &mut TcpStream) -> Bytes {
    use cohort::wire::FrameHeader;
    let mut frame = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_frame = async {
        loop {
            if let Some(header) = FrameHeader::parse(&frame).expect("a valid header")
                && frame.len() >= header.frame_bytes()
            {
                frame.truncate(header.frame_bytes());
                return Some(Bytes::from(std::mem::take(&mut frame)));
            }
            let read = stream.read(&mut buffer).await.expect("reads");
            assert!(read > 0, "closed before a whole frame arrived");
            frame.extend_from_slice(&buffer[..read]);
        }
    };
    let guard = async {
        glommio::timer::sleep(Duration::from_secs(20)).await;
        None
    };
    futures_lite::future::or(read_frame, guard)
        .await
        .expect("a whole frame within 20 s")
}

/// Connects to `addr` as `node` with a valid handshake and checks the answer names
/// `expected`. Returns the stream, ready for frames.
pub async fn raw_peer(addr: SocketAddr, node: u64, expected: u64) -> TcpStream {
    let ours = Handshake::current(CLUSTER, NodeId(node), 0);
    let mut stream = raw_connect(addr, &handshake_frame(&ours)).await;
    let answer = read_one_frame(&mut stream).await;
    match cohort::wire::decode_frame(&answer).expect("a valid answer") {
        cohort::wire::DecodedFrame::Handshake(theirs) => {
            assert_eq!(theirs.node_id, NodeId(expected));
            assert_eq!(theirs.cluster_id, CLUSTER);
        }
        other => panic!("expected a handshake, got {other:?}"),
    }
    stream
}
