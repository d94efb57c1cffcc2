//! A server that speaks cohort's client protocol and answers every request at once, without
//! replicating or storing anything: puts are "written", reads find nothing. Load against it
//! measures the load generator (and the client library) alone, the ceiling any cluster
//! figure must be read against. It can also stall once, to test that stalls show up in the
//! generator's latency.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};

use crate::kv::{Op, OpResult};
use crate::proto::client::{ClientFrame, Outcome, Response, decode_client_frame, encode_responses};
use crate::proto::topology::{Topology, encode_topology};
use crate::transport::{FrameReader, send_frame};
use crate::wire::FrameEncoder;
use crate::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};

/// Stop answering once, for `length`, `after` the first request arrived.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

pub struct NullServer {
    /// The base address (`host:P`) to give a client; it listens on P + 1, as core 0 would.
    pub base: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl NullServer {
    /// Start serving on a loopback port, on a thread of its own, as one node with one core
    /// and `groups` groups.
    pub fn start(groups: u32, stall: Option<Stall>) -> Result<NullServer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("cohort-null-server".to_string())
            .spawn(move || {
                crate::node::on_one_executor("cohort-null", move || async move {
                    let listener = match TcpListener::bind("127.0.0.1:0") {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = port_tx.send(Err(error.to_string()));
                            return;
                        }
                    };
                    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    let _ = port_tx.send(Ok(port));
                    serve(listener, groups, port, stall, stopped).await;
                })
            })
            .map_err(|e| format!("cannot start the null server's thread: {e}"))?;
        let port = port_rx
            .recv()
            .map_err(|_| "the null server did not start".to_string())??;
        Ok(NullServer {
            base: format!("127.0.0.1:{}", port - 1),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Shared by the connections of the server.
struct State {
    topology: Topology,
    stall: Option<Stall>,
    first_request: Cell<Option<Instant>>,
    stalled: Cell<bool>,
}

async fn serve(
    listener: TcpListener,
    groups: u32,
    port: u16,
    stall: Option<Stall>,
    stop: Arc<AtomicBool>,
) {
    let state = Rc::new(State {
        topology: Topology {
            node_id: 1,
            cores: 1,
            groups,
            members: vec![(1, format!("127.0.0.1:{}", port - 1))],
        },
        stall,
        first_request: Cell::new(None),
        stalled: Cell::new(false),
    });
    // Look at the stop flag every 50 ms; connections end with the executor.
    while !stop.load(Ordering::Relaxed) {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            None
        })
        .await;
        if let Some(Ok(stream)) = accepted {
            let _ = stream.set_nodelay(true);
            glommio::spawn_local(serve_conn(stream, Rc::clone(&state))).detach();
        }
    }
}

async fn serve_conn(mut stream: TcpStream, state: Rc<State>) {
    let mut reader = FrameReader::new(FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);
    let mut encoder = FrameEncoder::new();
    let mut copy = Vec::new();
    while let Ok(Some(frame)) = reader.read_frame(&mut stream).await {
        let encoded = match decode_client_frame(&frame) {
            Ok(ClientFrame::TopologyRequest) => encode_topology(&mut encoder, &state.topology),
            Ok(ClientFrame::Requests(requests)) => {
                stall_once(&state).await;
                let responses: Vec<Response> = requests.iter().map(answer).collect();
                encode_responses(&mut encoder, &responses)
            }
            // Status, transfers and garbage: a null server has nothing to say.
            Ok(
                ClientFrame::StatusRequest
                | ClientFrame::TransferLeader { .. }
                | ClientFrame::ChangeMember(_),
            )
            | Err(_) => return,
        };
        if encoded.is_err() {
            return;
        }
        if send_frame(&mut stream, &mut encoder, &mut copy)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn stall_once(state: &State) {
    let Some(stall) = state.stall else {
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

fn answer(
    request: &Result<crate::proto::client::Request, crate::proto::client::Refused>,
) -> Response {
    match request {
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
