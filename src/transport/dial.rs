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
    // Dials that failed in a row (no connection, or no handshake): each is logged at debug;
    // some of a long run at warn, so a peer never reached (a wrong address, a firewall) is
    // seen without flooding the log.
    let mut failures = 0u32;
    let mut addr = peer.addr.get();
    loop {
        if peer.addr.get() != addr {
            // A new address (see `Transport::set_peers`): failures to reach the old one say
            // nothing of it (review 230: counted on, and warned of with the new address).
            addr = peer.addr.get();
            failures = 0;
            backoff.reset();
        }
        let number = shared.connection_number();
        let dialed =
            connection::with_timeout(config.handshake_timeout, connection::dial(&shared, &peer))
                .await;
        match dialed {
            Ok((stream, reader)) => {
                if failures >= DIAL_FAILURES_WARNED_FROM {
                    tracing::info!(
                        node = %config.node_id,
                        core = config.core_index,
                        peer = %peer.id,
                        %addr,
                        failures,
                        "peer reached after dials that failed"
                    );
                }
                failures = 0;
                let frames = peer.frames_received.get();
                let (reason, established) =
                    connection::run(&shared, &peer, stream, reader, number).await;
                shared.log_close(peer.id, established, &reason);
                // Only a connection that carried frames, and did not end for what the peer
                // sent, starts the backoff over: one the peer takes and closes at once, or
                // that ends at a frame this node refuses, for a reason that lasts, would
                // otherwise be dialed again every `reconnect_delay_min`, a warning each time.
                if peer.frames_received.get() > frames && !reason.is_peer_fault() {
                    backoff.reset();
                }
            }
            Err(reason) => {
                shared.log_close(peer.id, false, &reason);
                failures = failures.saturating_add(1);
                if worth_a_warning(failures) {
                    tracing::warn!(
                        node = %config.node_id,
                        core = config.core_index,
                        peer = %peer.id,
                        %addr,
                        failures,
                        %reason,
                        "cannot reach peer: dials keep failing"
                    );
                }
            }
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}

/// Probes `peer`, a node of a smaller id (which dials this one), each time nothing was heard
/// from it for [`super::TransportConfig::probe_after`] ([`connection::probe`]): a node
/// removed from the cluster while it was down is dialed by no peer, and learns that it was
/// only from a probe's answer.
pub(super) async fn probe_loop(shared: Rc<Shared>, peer: Rc<Peer>) {
    let mut frames = peer.frames_received.get();
    loop {
        glommio::timer::sleep(shared.config.probe_after).await;
        let heard = peer.frames_received.get() != frames || peer.connection.borrow().is_some();
        frames = peer.frames_received.get();
        if !heard {
            let reason = connection::probe(&shared, &peer).await;
            shared.log_close(peer.id, false, &reason);
        }
    }
}

/// Failed dials in a row from which some are logged at warn.
const DIAL_FAILURES_WARNED_FROM: u32 = 8;

/// Whether the `failures`-th failed dial in a row is logged at warn: the 8th, 16th, 32nd
/// and so on, ever more rarely (with the backoff at its 0.5 s cap, about 30 s, a minute, two
/// minutes apart from the 64th on).
fn worth_a_warning(failures: u32) -> bool {
    failures >= DIAL_FAILURES_WARNED_FROM && failures.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_of_failed_dials_is_warned_of_ever_more_rarely() {
        let warned: Vec<u32> = (1..=300).filter(|&n| worth_a_warning(n)).collect();
        assert_eq!(warned, [8, 16, 32, 64, 128, 256]);
    }
}
