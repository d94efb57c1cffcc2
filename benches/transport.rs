//! Loopback throughput of the transport against raw TCP moving the same bytes, in one run.
//!
//! Two workloads, each a stream of Raft appends (one entry each) from node 1 to node 2:
//! 64-byte payloads in turns of 1,024 messages, and 16 KiB payloads in turns of 32. For each:
//!
//! - raw: a plain glommio socket pair, tuned as the transport's sockets are (buffer sizes,
//!   TCP_NODELAY); the sender writes, per turn, the exact bytes the transport writes for that
//!   turn (one pre-encoded frame), the receiver reads and counts;
//! - transport: node 1 `send`s each message and ends its loop turn; node 2 `recv`s batches,
//!   so the figure includes building messages, encoding, checksums, the verifier, decoding.
//!
//! Sender and receiver run on separate executors pinned to CPUs 0 and 1. Each figure is the
//! median of three runs, raw and transport interleaved so both see the same machine. Beside
//! each rate: how busy each side's thread was (its CPU time, the kernel's work on its behalf
//! included, over the time it worked), which says which side bounds the rate. A last line
//! per workload gives the wire codec's own rate on one core (no sockets): the ceiling the
//! transport cannot pass. Run with `cargo bench --bench transport`
//! (`COHORT_BENCH_ONLY=small|large` for one workload, `COHORT_BENCH_VERBOSE=1` for counters).

// Benchmarks measure wall time; the clock module's rule is for the engine, not for this.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::raft::{AppendRequest, Entry, EntryKind, GroupId, LogIndex, Message, MessageBody};
use cohort::raft::{NodeId, Term};
use cohort::transport::{SendError, SocketOptions, Transport, TransportConfig};
use cohort::wire::{ClusterId, Envelope, FrameEncoder};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};

const CLUSTER: ClusterId = ClusterId(7);
const RUNS: usize = 3;

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    payload_bytes: usize,
    messages_per_turn: usize,
    messages: usize,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "64 B messages",
        payload_bytes: 64,
        messages_per_turn: 1_024,
        messages: 2_097_152,
    },
    Workload {
        name: "16 KiB messages",
        payload_bytes: 16 << 10,
        messages_per_turn: 32,
        messages: 98_304,
    },
];

fn envelope(payload: &Bytes, index: u64) -> Envelope {
    Envelope {
        group: GroupId((index % 64) as u32),
        message: Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendRequest(AppendRequest {
                prev_log_index: LogIndex(index - 1),
                prev_log_term: Term(3),
                entries: [Entry {
                    term: Term(3),
                    index: LogIndex(index),
                    kind: EntryKind::Normal,
                    data: payload.clone(),
                }]
                .into(),
                commit: LogIndex(index - 1),
            }),
        },
    }
}

/// The bytes the transport writes for one turn of `workload`: one frame.
fn turn_frame(workload: &Workload, payload: &Bytes) -> Vec<u8> {
    let turn: Vec<Envelope> = (1..=workload.messages_per_turn as u64)
        .map(|index| envelope(payload, index))
        .collect();
    let mut encoder = FrameEncoder::new();
    encoder
        .encode_raft(turn.iter())
        .expect("a turn fits a frame");
    encoder.to_frame_vec()
}

fn executor(cpu: usize) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .io_memory(1 << 20)
        .name("bench")
}

/// The CPU time this thread has had, the kernel's work on its behalf included (on loopback,
/// a sender's system calls run much of the receiving side's TCP too), from the scheduler's
/// statistics; `None` where the kernel does not keep them.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Marks the start of one side's work; [`Busy::end`] gives the share of it spent on CPU.
struct Busy {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Busy {
    fn start() -> Self {
        Busy {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }

    fn end(&self) -> Option<f64> {
        let cpu = thread_cpu()?.checked_sub(self.cpu?)?;
        Some(cpu.as_secs_f64() / self.wall.elapsed().as_secs_f64())
    }
}

/// One run: seconds from the sender's first write to the receiver's last byte (or message),
/// and the sender's and the receiver's busy shares.
struct Run {
    seconds: f64,
    sender_busy: Option<f64>,
    receiver_busy: Option<f64>,
}

/// What each side of a run hands back: when it started (the sender) or ended (the
/// receiver), and how busy it was.
type Side = glommio::ExecutorJoinHandle<(Instant, Option<f64>)>;

impl Run {
    fn joined(sender: Side, receiver: Side) -> Run {
        let (start, sender_busy) = sender.join().expect("sender");
        let (end, receiver_busy) = receiver.join().expect("receiver");
        Run {
            seconds: end.duration_since(start).as_secs_f64(),
            sender_busy,
            receiver_busy,
        }
    }
}

/// The sockets of the raw pair are tuned as the transport's (buffer sizes, TCP_NODELAY): the
/// same kernel path, so the raw figure is the limit the transport runs against.
fn raw_socket_options() -> SocketOptions {
    let peers = BTreeMap::new();
    let listen = "127.0.0.1:0".parse().expect("addr");
    TransportConfig::new(NodeId(1), 0, CLUSTER, listen, peers).socket_options()
}

fn raw_run(workload: Workload, payload: Bytes) -> Run {
    let frame = turn_frame(&workload, &payload);
    let turns = workload.messages / workload.messages_per_turn;
    let total_bytes = frame.len() * turns;
    let (addr_tx, addr_rx) = mpsc::channel();
    let receiver = executor(1)
        .spawn(move || async move {
            let options = raw_socket_options();
            let listen = "127.0.0.1:0".parse().expect("addr");
            let listener = cohort::transport::listen(listen, options).expect("listen");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("publish");
            let mut stream = listener.accept().await.expect("accept");
            cohort::transport::tune_accepted(&stream, options).expect("tune");
            let mut buffer = vec![0u8; 256 << 10];
            let mut received = 0;
            let mut busy = None;
            while received < total_bytes {
                let read = stream.read(&mut buffer).await.expect("read");
                assert!(read > 0, "raw sender closed early");
                busy.get_or_insert_with(Busy::start);
                received += read;
            }
            (Instant::now(), busy.and_then(|busy| busy.end()))
        })
        .expect("receiver executor");
    let addr = addr_rx.recv().expect("receiver address");
    let sender = executor(0)
        .spawn(move || async move {
            let mut stream = cohort::transport::dial(addr, raw_socket_options()).expect("dial");
            let busy = Busy::start();
            for _ in 0..turns {
                stream.write_all(&frame).await.expect("write");
            }
            (busy.wall, busy.end())
        })
        .expect("sender executor");
    Run::joined(sender, receiver)
}

fn transport_run(workload: Workload, payload: Bytes) -> Run {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let receiver = executor(1)
        .spawn(move || async move {
            let peers = BTreeMap::from([(NodeId(1), "127.0.0.1:9".parse().expect("addr"))]);
            let listen = "127.0.0.1:0".parse().expect("addr");
            let node2 =
                Transport::start(TransportConfig::new(NodeId(2), 0, CLUSTER, listen, peers))
                    .expect("node 2");
            addr_tx.send(node2.local_addr()).expect("publish");
            let mut received = 0;
            let mut busy = None;
            while received < workload.messages {
                let batch = node2.recv().await.expect("inbox open");
                busy.get_or_insert_with(Busy::start);
                received += batch.envelopes.len();
            }
            let end = Instant::now();
            let busy = busy.and_then(|busy| busy.end());
            done_tx.send(()).expect("done");
            if std::env::var_os("COHORT_BENCH_VERBOSE").is_some() {
                eprintln!("receiver: {:?}", node2.stats());
            }
            node2.close().await;
            (end, busy)
        })
        .expect("receiver executor");
    let addr = addr_rx.recv().expect("receiver address");
    let sender = executor(0)
        .spawn(move || async move {
            let peers = BTreeMap::from([(NodeId(2), addr)]);
            let listen = "127.0.0.1:0".parse().expect("addr");
            let node1 =
                Transport::start(TransportConfig::new(NodeId(1), 0, CLUSTER, listen, peers))
                    .expect("node 1");
            while !node1.is_connected(NodeId(2)) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let busy = Busy::start();
            let mut index = 0u64;
            let mut full = 0u64;
            while (index as usize) < workload.messages {
                let turn_end = index + workload.messages_per_turn as u64;
                while index < turn_end {
                    match node1.send(NodeId(2), envelope(&payload, index + 1)) {
                        Ok(()) => index += 1,
                        // Backpressure: wait for the writer to drain, then retry.
                        Err(SendError::Full { .. }) => {
                            full += 1;
                            node1.wait_for_room(NodeId(2)).await.expect("open");
                        }
                        Err(other) => panic!("send: {other}"),
                    }
                }
                // End of the loop turn. A shard would now wait for its next input; here
                // the next input is "the writer took this turn", which keeps the same
                // batching as the raw run: one turn per write, one turn in the queue.
                node1.drained(NodeId(2)).await.expect("open");
            }
            let sender_busy = busy.end();
            while done_rx.try_recv().is_err() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            if std::env::var_os("COHORT_BENCH_VERBOSE").is_some() {
                eprintln!("sender: {:?} full={full}", node1.stats());
            }
            node1.close().await;
            (busy.wall, sender_busy)
        })
        .expect("sender executor");
    Run::joined(sender, receiver)
}

/// Messages per second one core can encode, and verify + decode, with the wire codec alone
/// (no sockets, no transport): the ceiling the transport's figures should be read against.
fn codec_ceiling(workload: &Workload, payload: &Bytes) -> (f64, f64) {
    let turn: Vec<Envelope> = (1..=workload.messages_per_turn as u64)
        .map(|index| envelope(payload, index))
        .collect();
    let rounds = (workload.messages / workload.messages_per_turn / 4).max(1);
    let mut encoder = FrameEncoder::new();
    let start = Instant::now();
    for _ in 0..rounds {
        encoder.encode_raft(turn.iter()).expect("encodes");
        std::hint::black_box(encoder.body());
    }
    let encode_s = start.elapsed().as_secs_f64();
    let frame = Bytes::from(encoder.to_frame_vec());
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(cohort::wire::decode_frame(&frame).expect("decodes"));
    }
    let decode_s = start.elapsed().as_secs_f64();
    let messages = (rounds * workload.messages_per_turn) as f64;
    (messages / encode_s, messages / decode_s)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The runs' median seconds, and how busy each side was in their median: "sender 98%
/// busy, receiver 61%", or nothing where the kernel keeps no statistics.
fn summary(runs: &[Run]) -> (f64, String) {
    let seconds = median(runs.iter().map(|run| run.seconds).collect());
    let busy = |side: fn(&Run) -> Option<f64>| {
        let shares: Option<Vec<f64>> = runs.iter().map(side).collect();
        shares.map(|shares| 100.0 * median(shares))
    };
    let shares = busy(|run| run.sender_busy).zip(busy(|run| run.receiver_busy));
    let said = shares.map_or(String::new(), |(sender, receiver)| {
        format!("  (sender {sender:.0}% busy, receiver {receiver:.0}%)")
    });
    (seconds, said)
}

fn main() {
    cohort::sys::raise_memlock_limit().expect("locked memory for io_uring");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("transport vs raw TCP on loopback ({cpus} CPUs; sender on CPU 0, receiver on CPU 1)");
    // `COHORT_BENCH_ONLY=small|large` runs one workload (for profiling).
    let only = std::env::var("COHORT_BENCH_ONLY").unwrap_or_default();
    for workload in WORKLOADS {
        let small = workload.payload_bytes < 1024;
        if (only == "small" && !small) || (only == "large" && small) {
            continue;
        }
        let payload = Bytes::from(vec![0xA5; workload.payload_bytes]);
        let frame = turn_frame(&workload, &payload);
        let wire_bytes = frame.len() as f64 / workload.messages_per_turn as f64;
        let mut raw = Vec::new();
        let mut transport = Vec::new();
        for _ in 0..RUNS {
            raw.push(raw_run(workload, payload.clone()));
            transport.push(transport_run(workload, payload.clone()));
        }
        let messages = workload.messages as f64;
        let ((raw_s, raw_busy), (transport_s, transport_busy)) =
            (summary(&raw), summary(&transport));
        let mb = |seconds: f64| messages * workload.payload_bytes as f64 / seconds / 1e6;
        println!(
            "{:>16}: {} msgs in turns of {}, {:.0} wire bytes/msg",
            workload.name, workload.messages, workload.messages_per_turn, wire_bytes
        );
        println!(
            "{:>16}  raw        {:>10.0} msgs/s  {:>8.0} MB/s payload{raw_busy}",
            "",
            messages / raw_s,
            mb(raw_s)
        );
        println!(
            "{:>16}  transport  {:>10.0} msgs/s  {:>8.0} MB/s payload  = {:.0}% of raw\
             {transport_busy}",
            "",
            messages / transport_s,
            mb(transport_s),
            100.0 * raw_s / transport_s
        );
        let (encode_rate, decode_rate) = codec_ceiling(&workload, &payload);
        println!(
            "{:>16}  codec alone, one core: encode {:.0} msgs/s, verify+decode {:.0} msgs/s",
            "", encode_rate, decode_rate
        );
    }
}
