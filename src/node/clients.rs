//! The client port of one core: accept connections, read request frames into the core's
//! inbox, write the core's answers back, one frame per batch.
//!
//! A client that sends bytes that are not a valid frame is disconnected with the reason
//! logged; a request that is valid as bytes but breaks a limit is answered with an error.
//! Neither touches the node's state.
//!
//! A client may open with topology requests (answered at once, from the core's current view
//! of the members), status requests, leader transfers and membership changes (answered by the
//! core loop); after that, or from the start, a connection carries request batches only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::proto::client::{ClientFrame, Response, decode_client_frame, encode_responses};
use crate::proto::members::{MemberOutcome, encode_member_outcome};
use crate::proto::status::encode_status;
use crate::proto::topology::{Topology, encode_topology};
use crate::proto::transfer::encode_transfer_outcome;
use crate::shard::ConnId;
use crate::shard::core::Input;
use crate::shard::inbox::Inbox;
use crate::transport::{FrameReader, ReadFrameError, write_frame};
use crate::wire::FrameEncoder;
use crate::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};

/// Frames a connection may have waiting for the core loop: past it, the reader stops reading
/// and TCP pushes back on the client.
const RESPONSE_BATCHES_QUEUED_MAX: usize = 1024;

/// The end of every well-behaved connection: not worth a log line.
const CLOSED_BY_CLIENT: &str = "closed by the client";

/// Accept client connections until the listener fails or the inbox closes.
pub async fn serve(listener: TcpListener, inbox: Inbox<Input>, topology: Rc<RefCell<Topology>>) {
    let next_conn = Rc::new(Cell::new(1u64));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "client accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = next_conn.get();
        next_conn.set(conn + 1);
        let inbox = inbox.clone();
        let topology = Rc::clone(&topology);
        glommio::spawn_local(serve_conn(conn, stream, inbox, topology)).detach();
    }
}

async fn serve_conn(
    conn: ConnId,
    mut stream: TcpStream,
    inbox: Inbox<Input>,
    topology: Rc<RefCell<Topology>>,
) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut buffer = FrameReader::new(FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);
    let first = match opening(&mut stream, &mut buffer, &topology, &inbox).await {
        Ok(first) => first,
        Err(reason) => {
            if reason != CLOSED_BY_CLIENT {
                tracing::info!(conn, %peer, %reason, "client connection closed");
            }
            return;
        }
    };
    let outbox: Inbox<Vec<Response>> = Inbox::new(RESPONSE_BATCHES_QUEUED_MAX);
    if !inbox
        .push(Input::Connected {
            conn,
            outbox: outbox.clone(),
        })
        .await
    {
        return;
    }
    let (reader, writer) = futures_lite::io::split(stream);
    let writing = glommio::spawn_local(write_answers(writer, outbox.clone()));
    match read_requests(conn, reader, buffer, first, &inbox, &outbox).await {
        Err(reason) if reason == CLOSED_BY_CLIENT => {
            tracing::debug!(conn, %peer, "client connection closed by the client");
        }
        Err(reason) => tracing::info!(conn, %peer, %reason, "client connection closed"),
        Ok(()) => {}
    }
    outbox.close();
    inbox.push_now(Input::Disconnected(conn));
    // Cancels the writer: nobody is left to read what it would write.
    drop(writing);
}

/// Answer topology and status requests at the start of a connection; return the first other
/// frame.
async fn opening(
    stream: &mut TcpStream,
    buffer: &mut FrameReader,
    topology: &RefCell<Topology>,
    inbox: &Inbox<Input>,
) -> Result<Bytes, String> {
    loop {
        let frame = next_frame(stream, buffer).await?;
        let mut encoder = FrameEncoder::new();
        match decode_client_frame(&frame) {
            Ok(ClientFrame::TopologyRequest) => {
                encode_topology(&mut encoder, &topology.borrow()).map_err(|e| e.to_string())?;
            }
            Ok(ClientFrame::StatusRequest) => {
                let rows = ask_core(inbox, Input::Status).await?;
                encode_status(&mut encoder, &rows).map_err(|e| e.to_string())?;
            }
            Ok(ClientFrame::TransferLeader { group, to }) => {
                let input = |reply| Input::TransferLeader { group, to, reply };
                let outcome = ask_core(inbox, input).await?;
                encode_transfer_outcome(&mut encoder, &outcome).map_err(|e| e.to_string())?;
            }
            Ok(ClientFrame::ChangeMember(change)) => {
                let outcome = match change {
                    Ok(change) => {
                        ask_core(inbox, |reply| Input::ChangeMember { change, reply }).await?
                    }
                    Err(why) => MemberOutcome::Failed(why),
                };
                encode_member_outcome(&mut encoder, &outcome).map_err(|e| e.to_string())?;
            }
            _ => return Ok(frame),
        }
        let written = async {
            write_frame(stream, &mut encoder, &mut Vec::new()).await?;
            stream.flush().await
        };
        written.await.map_err(|e| format!("write failed: {e}"))?;
    }
}

/// Hand the core loop the input `make` builds around a reply box, and wait for its one reply.
async fn ask_core<T>(
    inbox: &Inbox<Input>,
    make: impl FnOnce(Inbox<T>) -> Input,
) -> Result<T, String> {
    let reply = Inbox::new(1);
    if !inbox.push(make(reply.clone())).await {
        return Err("the node is shutting down".to_string());
    }
    let mut replies = Vec::new();
    reply.take_all(&mut replies).await;
    replies
        .pop()
        .ok_or_else(|| "the core loop gave no answer".to_string())
}

async fn read_requests(
    conn: ConnId,
    mut reader: impl AsyncRead + Unpin,
    mut buffer: FrameReader,
    first: Bytes,
    inbox: &Inbox<Input>,
    outbox: &Inbox<Vec<Response>>,
) -> Result<(), String> {
    let mut frame = first;
    loop {
        match decode_client_frame(&frame).map_err(|e| format!("bad frame: {e}"))? {
            ClientFrame::TopologyRequest
            | ClientFrame::StatusRequest
            | ClientFrame::TransferLeader { .. }
            | ClientFrame::ChangeMember(_) => {
                return Err(
                    "topology, status, transfer and membership requests may only open a \
                     connection"
                        .to_string(),
                );
            }
            ClientFrame::Requests(requests) => {
                if !inbox.push(Input::Requests { conn, requests }).await {
                    return Err("the node is shutting down".to_string());
                }
            }
        }
        if outbox.is_closed() {
            return Err(format!(
                "the client left {RESPONSE_BATCHES_QUEUED_MAX} answer batches unread"
            ));
        }
        frame = next_frame(&mut reader, &mut buffer).await?;
    }
}

async fn next_frame(
    reader: &mut (impl AsyncRead + Unpin),
    frames: &mut FrameReader,
) -> Result<Bytes, String> {
    match frames.read_frame(reader).await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(CLOSED_BY_CLIENT.to_string()),
        Err(ReadFrameError::Io(error)) => Err(format!("read failed: {error}")),
        Err(ReadFrameError::Frame(error)) => Err(format!("bad frame: {error}")),
    }
}

async fn write_answers(mut writer: impl AsyncWrite + Unpin, outbox: Inbox<Vec<Response>>) {
    let mut encoder = FrameEncoder::new();
    let mut copy = Vec::new();
    let mut batches = Vec::new();
    loop {
        outbox.take_all(&mut batches).await;
        let responses: Vec<Response> = batches.drain(..).flatten().collect();
        if encode_responses(&mut encoder, &responses).is_err() {
            tracing::warn!(answers = responses.len(), "answers too large for one frame");
            continue;
        }
        let written = async {
            write_frame(&mut writer, &mut encoder, &mut copy).await?;
            writer.flush().await
        };
        if written.await.is_err() {
            return;
        }
    }
}
