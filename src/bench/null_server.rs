//! A server that speaks cohort's client protocol and answers every request at once, without
//! replicating or storing anything: puts are "written", reads find nothing. Load against it
//! measures the load generator (and the client library) alone, the ceiling any cluster
//! figure must be read against. It can take a cluster's shape ([`Shape`]: nodes, cores per
//! node, groups), so the generator opens as many connections as against that cluster and
//! spreads its requests over them alike (group g, on core g % cores, is led by node
//! (g / cores) % nodes + 1, and the others answer "not the leader" with its id, as a
//! cluster's followers do): one connection
//! for everything would fill frames fuller than the real run does, and overstate the
//! ceiling. For tests it can also misbehave (see [`Quirks`]): stall once,
//! to show that stalls appear in the generator's latency; refuse writes; answer reads late.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use glommio::ExecutorJoinHandle;
use glommio::net::{TcpListener, TcpStream};

use crate::kv::{Op, OpResult};
use crate::proto::client::{
    ClientFrame, Consistency, ErrorCode, Outcome, Response, decode_client_frame, encode_responses,
};
use crate::proto::topology::{Topology, encode_topology};
use crate::transport::{FrameReader, send_frame};
use crate::wire::FrameEncoder;
use crate::wire::limits::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, SOCKET_BUFFER_BYTES, UNACKED_TIMEOUT_MS,
};

/// Stop answering once, for `length`, `after` the first request arrived.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

/// How the null server departs from answering everything at once (for tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    pub stall: Option<Stall>,
    /// Refuse one write in this many (1: every one), with an error no client retries. Reads
    /// are always answered, so a client can still learn that every group has a leader.
    pub refuse_one_write_in: Option<u64>,
    /// Answer requests that only read this late, in a frame of their own after the frame
    /// with the others' answers.
    pub reads_late_by: Option<Duration>,
    /// The tick, election ticks and lease reads its topology says (default: not said).
    pub timing: crate::wire::Timing,
    /// Whether its topology says the nodes sync (default: not said).
    pub syncs: Option<bool>,
}

/// The cluster a null server poses as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub nodes: u16,
    pub cores: u16,
    pub groups: u32,
}

pub struct NullServer {
    /// The base address (`host:P`) of its first node to give a client; each node at `P` of
    /// the shape listens on P + 2c + 1 for core c, as a real node does.
    pub base: String,
    stop: Arc<AtomicBool>,
    threads: Vec<ExecutorJoinHandle<()>>,
    /// Connections each thread accepted.
    accepted: Vec<Arc<AtomicU64>>,
    /// The listening sockets (each thread has descriptors of its own), shut down at the
    /// end: an accept still in flight in a thread's ring holds its socket open after the
    /// descriptors are closed, taking connections nobody answers.
    listening: Vec<socket2::Socket>,
}

impl NullServer {
    /// Start serving on a loopback port, on a thread of its own, as one node with one core
    /// and `groups` groups.
    pub fn start(groups: u32, stall: Option<Stall>) -> Result<NullServer, String> {
        let quirks = Quirks {
            stall,
            ..Quirks::default()
        };
        NullServer::start_with(groups, quirks)
    }

    /// [`NullServer::start`], misbehaving as `quirks` say.
    pub fn start_with(groups: u32, quirks: Quirks) -> Result<NullServer, String> {
        let shape = Shape {
            nodes: 1,
            cores: 1,
            groups,
        };
        NullServer::start_shaped(shape, quirks, 1)
    }

    /// Start serving on loopback ports as a cluster of `shape`, on `threads` threads of its
    /// own, each accepting on every port (the kernel gives each connection to one of them;
    /// a connection stays on its thread, and each thread keeps the `quirks`' counts of its
    /// own): a generator of several threads needs a server of as many to measure its
    /// ceiling.
    pub fn start_shaped(shape: Shape, quirks: Quirks, threads: u32) -> Result<NullServer, String> {
        if shape.nodes == 0 || shape.cores == 0 || shape.groups == 0 {
            return Err(format!("a null server of {shape:?} serves nothing"));
        }
        let (base, listeners) = bind_shape(shape)?;
        let mut shares = Vec::new();
        for _ in 0..threads.max(1) {
            let share = (listeners.iter())
                .map(|(node, socket)| Ok((*node, socket.try_clone()?)))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| format!("the null server's listening sockets: {e}"))?;
            shares.push(share);
        }
        let mut server = NullServer {
            base: format!("127.0.0.1:{base}"),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            accepted: Vec::new(),
            listening: listeners.into_iter().map(|(_, socket)| socket).collect(),
        };
        for (i, share) in shares.into_iter().enumerate() {
            let stop = Arc::clone(&server.stop);
            let accepted = Arc::new(AtomicU64::new(0));
            server.accepted.push(Arc::clone(&accepted));
            // Its executor is made on the new thread: one that fails drops this unsent.
            let (serving, started) = std::sync::mpsc::channel();
            let thread = crate::node::start_executor(&format!("cohort-null-{i}"), move || {
                let _ = serving.send(());
                let listeners = share
                    .into_iter()
                    .map(|(node, socket)| (node, crate::sys::glommio_listener(socket)))
                    .collect();
                serve(listeners, shape, base, quirks, stop, accepted)
            })?;
            if started.recv().is_err() {
                let error = thread
                    .join()
                    .err()
                    .map_or_else(String::new, |e| e.to_string());
                // Dropped here, `server` stops and joins the threads started and shuts its
                // ports down: no client waits on a port nobody serves.
                return Err(format!("a null server thread did not start: {error}"));
            }
            // Dropped on an error, `server` stops and joins the threads started.
            server.threads.push(thread);
        }
        Ok(server)
    }

    /// The connections each of its threads accepted so far.
    pub fn accepted_per_thread(&self) -> Vec<u64> {
        (self.accepted.iter())
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }
}

/// Binds the client port of every core of every node of `shape` on loopback, the nodes'
/// bases `2 * cores` ports apart from a first base `P`, as a local cluster lays them out.
/// Returns `P` and the listening sockets by (node index, core). A single node with a single
/// core takes any free port; otherwise bases are tried until every port of one is free.
fn bind_shape(shape: Shape) -> Result<(u16, Vec<(u16, socket2::Socket)>), String> {
    // As a node listens: no SO_REUSEPORT (glommio's bind sets it), so a port another
    // listener holds is found taken, not shared.
    let sockets = crate::transport::SocketOptions {
        buffer_bytes: SOCKET_BUFFER_BYTES,
        unacked_timeout: Duration::from_millis(UNACKED_TIMEOUT_MS),
    };
    let bind = |port: u16| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        crate::transport::listening_socket(addr, sockets).map_err(|e| e.to_string())
    };
    if shape.nodes == 1 && shape.cores == 1 {
        let listener = bind(0)?;
        let port = (listener.local_addr().ok())
            .and_then(|addr| addr.as_socket())
            .ok_or("the null server's port has no address")?
            .port();
        return Ok((port - 1, vec![(0, listener)]));
    }
    let span = u32::from(shape.nodes) * 2 * u32::from(shape.cores);
    if span > 10_000 {
        return Err(format!(
            "a null server of {shape:?} would need {span} ports"
        ));
    }
    let mut last_error = String::new();
    // Spread over the ports below the kernel's usual ephemeral range.
    let mut next = 20_000 + (u64::from(std::process::id()) * 7_919 % 10_000) as u32;
    for _ in 0..64 {
        let base = next as u16;
        next = 20_000 + (next - 20_000 + span + 997) % 12_000;
        let mut listeners = Vec::new();
        'nodes: for node in 0..shape.nodes {
            for core in 0..shape.cores {
                let port = u32::from(base) + u32::from(node) * 2 * u32::from(shape.cores);
                let port = port + 2 * u32::from(core) + 1;
                match bind(port as u16) {
                    Ok(listener) => listeners.push((node, listener)),
                    Err(error) => {
                        last_error = format!("port {port}: {error}");
                        break 'nodes;
                    }
                }
            }
        }
        if listeners.len() == usize::from(shape.nodes) * usize::from(shape.cores) {
            return Ok((base, listeners));
        }
    }
    Err(format!(
        "the null server found no free run of {span} ports (last: {last_error})"
    ))
}

impl Drop for NullServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in &self.listening {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Shared by the connections of the server.
struct State {
    topology: Topology,
    quirks: Quirks,
    first_request: Cell<Option<Instant>>,
    stalled: Cell<bool>,
    /// Writes seen, for `Quirks::refuse_one_write_in`.
    writes: Cell<u64>,
    /// Connections this thread accepted.
    accepted: Arc<AtomicU64>,
}

/// Serves every listener of [`bind_shape`] (node ids 1, 2, … by node index) until `stop`.
async fn serve(
    listeners: Vec<(u16, TcpListener)>,
    shape: Shape,
    base: u16,
    quirks: Quirks,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) {
    let node_span = 2 * shape.cores;
    let members = (0..shape.nodes)
        .map(|node| {
            let id = u64::from(node) + 1;
            (id, format!("127.0.0.1:{}", base + node * node_span))
        })
        .collect();
    let state = Rc::new(State {
        topology: Topology {
            cluster_id: 1,
            node_id: 1,
            cores: shape.cores,
            groups: shape.groups,
            members,
            timing: quirks.timing,
            syncs: quirks.syncs,
        },
        quirks,
        first_request: Cell::new(None),
        stalled: Cell::new(false),
        writes: Cell::new(0),
        accepted,
    });
    let accepting: Vec<_> = (listeners.into_iter())
        .map(|(node, listener)| {
            let node_id = u64::from(node) + 1;
            glommio::spawn_local(accept(listener, node_id, Rc::clone(&state)))
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    // Cancelled, the accepts close their listeners. Left to the executor's end, a task
    // waiting on I/O is never dropped (found in review): each thread's reactor and rings
    // would stay.
    for task in accepting {
        task.cancel().await;
    }
}

/// Takes `listener`'s connections. An accept is never given up half-way (found with several
/// threads accepting on one port: one cancelled by a timer could take a connection with it,
/// whose client then waited for answers that never came).
async fn accept(listener: TcpListener, node_id: u64, state: Rc<State>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                state.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(serve_conn(stream, node_id, Rc::clone(&state))).detach();
            }
            // Out of descriptors, say: wait a little rather than spin.
            Err(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_conn(mut stream: TcpStream, node_id: u64, state: Rc<State>) {
    let mut reader = FrameReader::new(FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);
    let mut encoder = FrameEncoder::new();
    let mut copy = Vec::new();
    while let Ok(Some(frame)) = reader.read_frame(&mut stream).await {
        let requests = match decode_client_frame(&frame) {
            Ok(ClientFrame::TopologyRequest) => {
                let topology = Topology {
                    node_id,
                    ..state.topology.clone()
                };
                if encode_topology(&mut encoder, &topology).is_err()
                    || send_frame(&mut stream, &mut encoder, &mut copy)
                        .await
                        .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(ClientFrame::Requests(requests)) => requests,
            // Status, transfers and garbage: a null server has nothing to say.
            Ok(
                ClientFrame::StatusRequest
                | ClientFrame::TransferLeader { .. }
                | ClientFrame::ChangeMember(_),
            )
            | Err(_) => return,
        };
        stall_once(&state).await;
        // Reads held back by `Quirks::reads_late_by` go in a frame of their own, after it.
        let late_by = state.quirks.reads_late_by;
        let (late, now): (Vec<_>, Vec<_>) = requests
            .iter()
            .partition(|request| late_by.is_some() && only_reads(request));
        for (requests, wait) in [(now, None), (late, late_by)] {
            if requests.is_empty() {
                continue;
            }
            if let Some(wait) = wait {
                glommio::timer::sleep(wait).await;
            }
            let responses: Vec<Response> = requests
                .into_iter()
                .map(|r| answer(&state, node_id, r))
                .collect();
            if encode_responses(&mut encoder, &responses).is_err()
                || send_frame(&mut stream, &mut encoder, &mut copy)
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
}

async fn stall_once(state: &State) {
    let Some(stall) = state.quirks.stall else {
        return;
    };
    let now = crate::clock::now();
    let first = *state.first_request.get().get_or_insert(now);
    state.first_request.set(Some(first));
    if !state.stalled.get() && now >= first + stall.after {
        state.stalled.set(true);
        glommio::timer::sleep(stall.length).await;
    }
}

type Decoded = Result<crate::proto::client::Request, crate::proto::client::Refused>;

/// Whether a well-formed request only reads.
fn only_reads(request: &Decoded) -> bool {
    request
        .as_ref()
        .is_ok_and(|request| (request.command.ops.iter()).all(|op| matches!(op, Op::Get { .. })))
}

/// The node that leads `group` in a shape of `nodes` nodes and `cores` cores: over the nodes
/// within each core, as a cluster's balance spreads them (by group % nodes, a shape whose
/// nodes and cores share a factor put each core's groups at one node, fewer connections
/// than a cluster's: found in review).
fn leader_of(group: u32, nodes: u64, cores: u16) -> u64 {
    u64::from(group / u32::from(cores.max(1))) % nodes.max(1) + 1
}

fn answer(state: &State, node_id: u64, request: &Decoded) -> Response {
    // Found when a client came to ask the node that answered its layout first: every group
    // then stayed at node 1, on as many connections as clients, not clients × nodes.
    let leader = request.as_ref().ok().and_then(|request| {
        let key = request.command.ops.first()?.key();
        let group = crate::proto::topology::group_of(key, state.topology.groups);
        let nodes = state.topology.members.len() as u64;
        let leader = leader_of(group, nodes, state.topology.cores);
        let elsewhere = leader != node_id && request.consistency != Consistency::Stale;
        elsewhere.then(|| (leader, state.topology.address_of(leader, group)))
    });
    if let (Ok(request), Some((leader, address))) = (request, leader) {
        return Response {
            client_id: request.command.client_id,
            sequence: request.command.sequence,
            outcome: Outcome::NotLeader {
                leader,
                address: address.unwrap_or_default(),
                maybe_proposed: false,
            },
        };
    }
    let refuse = !only_reads(request)
        && state.quirks.refuse_one_write_in.is_some_and(|one_in| {
            state.writes.set(state.writes.get() + 1);
            state.writes.get().is_multiple_of(one_in)
        });
    match request {
        Ok(request) if refuse => Response {
            client_id: request.command.client_id,
            sequence: request.command.sequence,
            outcome: Outcome::Error {
                code: ErrorCode::Unknown,
                message: "refused by the null server, as told".to_string(),
            },
        },
        Ok(request) => Response {
            client_id: request.command.client_id,
            sequence: request.command.sequence,
            // As a node answers: a one-operation write shares one `[Written]`.
            outcome: Outcome::Results(match &request.command.ops[..] {
                [Op::Put { .. }] => crate::kv::written(),
                ops => ops
                    .iter()
                    .map(|op| match op {
                        Op::Get { .. } => OpResult::NotFound,
                        _ => OpResult::Written,
                    })
                    .collect(),
            }),
        },
        Err(refused) => refused.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): a null server shaped as a cluster spreads each core's groups
    /// over its nodes, so clients use every node core, as against a cluster, whether or not
    /// the counts share a factor. Method: every (leader, core) pair of a few shapes.
    #[test]
    fn every_node_core_leads_a_group() {
        for (nodes, cores, groups) in [(3u16, 3u16, 9u32), (3, 2, 12), (3, 6, 18), (1, 4, 8)] {
            let places: std::collections::BTreeSet<(u64, u32)> = (0..groups)
                .map(|g| (leader_of(g, u64::from(nodes), cores), g % u32::from(cores)))
                .collect();
            assert_eq!(
                places.len(),
                usize::from(nodes) * usize::from(cores),
                "{nodes} × {cores}"
            );
        }
    }
}
