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

/// Failed accepts in a row, of a listener that waits after each (out of descriptors or
/// memory) rather than spin on the error: the first is logged, then the 2nd, 4th, 8th and
/// so on, so a node out of descriptors for a minute logs a dozen lines, not thousands.
#[derive(Default)]
pub struct AcceptFailures {
    in_a_row: u64,
}

impl AcceptFailures {
    /// One more failed: `Some(failures in a row)` when this one is worth logging.
    pub fn failed(&mut self) -> Option<u64> {
        self.in_a_row += 1;
        self.in_a_row.is_power_of_two().then_some(self.in_a_row)
    }

    pub fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

pub(super) async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    let mut failures = AcceptFailures::default();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                if let Some(in_a_row) = failures.failed() {
                    tracing::warn!(
                        node = %shared.config.node_id, %error, in_a_row, "accept failed"
                    );
                }
                glommio::timer::sleep(shared.config.reconnect_delay_min).await;
                continue;
            }
        };
        failures.succeeded();
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
    let number = pending.number;
    drop(pending);
    match accepted {
        Ok((peer, stream, reader)) => {
            let (reason, established) =
                connection::run(&shared, &peer, stream, reader, number).await;
            shared.log_close(peer.id, established, &reason);
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
        let number = shared.connection_number();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failed_accepts_is_logged_ever_more_rarely_and_starts_over_after_a_success() {
        let mut failures = AcceptFailures::default();
        let logged: Vec<u64> = (0..100).filter_map(|_| failures.failed()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
        failures.succeeded();
        assert_eq!(failures.failed(), Some(1));
    }
}
