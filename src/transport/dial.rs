//! The dialer of one peer (a peer whose node id is larger than ours): connects, serves the
//! connection until it fails, and reconnects after a capped, jittered backoff.

use std::rc::Rc;

use super::backoff::Backoff;
use super::connection;
use super::shared::{Peer, Shared};

pub(super) async fn dial_loop(shared: Rc<Shared>, peer: Rc<Peer>) {
    let config = &shared.config;
    // Seeded per (node, peer) pair: replayable, and different for every pair, so the peers of
    // a restarted node do not all dial it at the same instants.
    let seed = config.jitter_seed ^ config.node_id.0.rotate_left(32) ^ peer.id.0;
    let mut backoff = Backoff::new(
        config.reconnect_delay_min,
        config.reconnect_delay_max,
        config.reconnect_jitter_percent,
        seed,
    );
    loop {
        let dialed =
            connection::with_timeout(config.handshake_timeout, connection::dial(&shared, &peer))
                .await;
        match dialed {
            Ok((stream, reader)) => {
                let frames = peer.frames_received.get();
                let reason = connection::run(&shared, &peer, stream, reader).await;
                shared.log_close(peer.id, true, &reason);
                // Only a connection that carried frames, and did not end for what the peer
                // sent, starts the backoff over: one the peer takes and closes at once, or
                // that ends at a frame this node refuses, for a reason that lasts, would
                // otherwise be dialed again every `reconnect_delay_min`, a warning each time.
                if peer.frames_received.get() > frames && !reason.is_peer_fault() {
                    backoff.reset();
                }
            }
            Err(reason) => shared.log_close(peer.id, false, &reason),
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}
