//! The listener of one core: accepts connections, checks their handshake within a time limit,
//! and hands the established ones to [`super::connection::run`].

use std::rc::Rc;

use glommio::net::{TcpListener, TcpStream};

use super::config::HANDSHAKES_PENDING_MAX;
use super::connection;
use super::reason::CloseReason;
use super::shared::Shared;
use super::signal::Stop;
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
        let oldest = {
            let mut pending = shared.handshakes_pending.borrow_mut();
            (pending.len() >= HANDSHAKES_PENDING_MAX).then(|| pending.pop_front())
        };
        if let Some((_, close)) = oldest.flatten() {
            close.stop();
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
    let accepting = connection::with_timeout(timeout, connection::accept(&shared, stream));
    let closed = async {
        pending.close.stopped().await;
        Err(CloseReason::HandshakesPendingFull)
    };
    let accepted = futures_lite::future::or(accepting, closed).await;
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

/// Lists a connection among those in their handshake for as long as it lives (also when the
/// task is dropped at shutdown), with the signal that closes it to make way for a newer one.
struct PendingHandshake {
    shared: Rc<Shared>,
    number: u64,
    close: Rc<Stop>,
}

impl PendingHandshake {
    fn new(shared: Rc<Shared>) -> PendingHandshake {
        let number = shared.handshakes_accepted.get();
        shared.handshakes_accepted.set(number + 1);
        let close = Rc::new(Stop::default());
        let entry = (number, Rc::clone(&close));
        shared.handshakes_pending.borrow_mut().push_back(entry);
        PendingHandshake {
            shared,
            number,
            close,
        }
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        let mut pending = self.shared.handshakes_pending.borrow_mut();
        if let Some(at) = pending.iter().position(|(n, _)| *n == self.number) {
            pending.remove(at);
        }
    }
}
