//! The listener of one core: accepts connections, checks their handshake within a time limit,
//! and hands the established ones to [`super::connection::run`].

use std::rc::Rc;

use glommio::net::{TcpListener, TcpStream};

use super::config::HANDSHAKES_PENDING_MAX;
use super::connection;
use super::reason::CloseReason;
use super::shared::Shared;
use super::socket;

pub(super) async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors or memory: wait instead of spinning on the error.
                tracing::warn!(node = %shared.config.node_id, %error, "accept failed");
                glommio::timer::sleep(shared.config.reconnect_delay_min).await;
                continue;
            }
        };
        let address = peer_label(&stream);
        if shared.handshakes_pending.get() >= HANDSHAKES_PENDING_MAX {
            shared.log_close(address, false, &CloseReason::HandshakesPendingFull);
            continue;
        }
        if let Err(error) = socket::tune_accepted(&stream, shared.config.socket_options()) {
            shared.log_close(address, false, &error.into());
            continue;
        }
        let pending = PendingHandshake::new(Rc::clone(&shared));
        let task_shared = Rc::clone(&shared);
        shared.spawn(async move { serve_accepted(task_shared, stream, address, pending).await });
    }
}

async fn serve_accepted(
    shared: Rc<Shared>,
    stream: TcpStream,
    address: String,
    pending: PendingHandshake,
) {
    let timeout = shared.config.handshake_timeout;
    let accepted = connection::with_timeout(timeout, connection::accept(&shared, stream)).await;
    drop(pending);
    match accepted {
        Ok((peer, stream, reader)) => {
            let reason = connection::run(&shared, &peer, stream, reader).await;
            shared.log_close(peer.id, true, &reason);
        }
        Err(reason) => shared.log_close(address, false, &reason),
    }
}

fn peer_label(stream: &TcpStream) -> String {
    stream.peer_addr().map_or_else(
        |_| "unknown address".to_string(),
        |address| address.to_string(),
    )
}

/// Counts a connection in its handshake for as long as it lives (also when the task is
/// dropped at shutdown).
struct PendingHandshake {
    shared: Rc<Shared>,
}

impl PendingHandshake {
    fn new(shared: Rc<Shared>) -> PendingHandshake {
        shared
            .handshakes_pending
            .set(shared.handshakes_pending.get() + 1);
        PendingHandshake { shared }
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        let pending = &self.shared.handshakes_pending;
        pending.set(pending.get() - 1);
    }
}
