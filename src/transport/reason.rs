//! Why a connection ended or was refused: the reason every close is logged with.

use std::fmt;
use std::io;

use crate::raft::NodeId;
use crate::wire::DecodeError;
use crate::wire::FrameError;
use crate::wire::handshake::HandshakeError;

#[derive(Debug)]
pub enum CloseReason {
    /// The socket failed (reset, refused, keepalive timeout, …).
    Io(io::Error),
    /// The peer closed its end.
    PeerClosed,
    /// A frame failed its header, checksum, verifier or content checks.
    Frame(DecodeError),
    /// The peer's handshake was refused.
    Handshake(HandshakeError),
    /// No handshake within the configured time.
    HandshakeTimeout,
    /// A node with a larger id dialed us: the smaller id of a pair dials, so this peer's
    /// configuration disagrees with ours.
    DialedByLargerId { node_id: NodeId },
    /// A frame of a kind that has no place on a peer connection at this point.
    FrameUnexpected { kind: &'static str },
    /// A message whose sender or recipient is not the two ends of this connection.
    MessageMisaddressed { from: NodeId, to: NodeId },
    /// Too many connections were in their handshake: this one, the oldest, made way for a
    /// new one.
    HandshakesPendingFull,
    /// A newer connection of the same peer replaced this one.
    Superseded,
    /// The peer is no longer a member (see [`super::Transport::set_peers`]).
    PeerRemoved,
    /// A probe (see `dial::probe_loop`), which asks only whether the prober was removed:
    /// closed unanswered, as it was not.
    Probe,
    /// The transport is shutting down.
    Shutdown,
}

impl From<FrameError> for CloseReason {
    fn from(error: FrameError) -> Self {
        CloseReason::Frame(DecodeError::Frame(error))
    }
}

impl From<DecodeError> for CloseReason {
    fn from(error: DecodeError) -> Self {
        CloseReason::Frame(error)
    }
}

impl From<HandshakeError> for CloseReason {
    fn from(error: HandshakeError) -> Self {
        CloseReason::Handshake(error)
    }
}

impl From<io::Error> for CloseReason {
    fn from(error: io::Error) -> Self {
        CloseReason::Io(error)
    }
}

impl CloseReason {
    /// True for closes caused by bytes the peer sent (counted as rejections).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            CloseReason::Frame(_)
                | CloseReason::DialedByLargerId { .. }
                | CloseReason::FrameUnexpected { .. }
                | CloseReason::MessageMisaddressed { .. }
        ) || matches!(
            // Our own disk failing to keep the peer's record is not the peer's doing.
            self,
            CloseReason::Handshake(error) if !matches!(error, HandshakeError::RecordFailed { .. })
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Io(error) => write!(f, "socket error: {error}"),
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Frame(error) => write!(f, "bad frame: {error}"),
            CloseReason::Handshake(error) => write!(f, "handshake refused: {error}"),
            CloseReason::HandshakeTimeout => f.write_str("no handshake in time"),
            CloseReason::DialedByLargerId { node_id } => write!(
                f,
                "node {node_id} dialed, but the node with the smaller id dials"
            ),
            CloseReason::FrameUnexpected { kind } => {
                write!(f, "unexpected {kind} frame on a peer connection")
            }
            CloseReason::MessageMisaddressed { from, to } => {
                write!(
                    f,
                    "message from node {from} to node {to} on this connection"
                )
            }
            CloseReason::HandshakesPendingFull => {
                f.write_str("too many connections in their handshake: the oldest made way")
            }
            CloseReason::Superseded => f.write_str("replaced by a newer connection"),
            CloseReason::PeerRemoved => f.write_str("the peer is no longer a member"),
            CloseReason::Probe => {
                f.write_str("a probe of whether the prober was removed: it was not")
            }
            CloseReason::Shutdown => f.write_str("transport shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): a handshake closed because this node could not record the
    /// peer (its own disk) is not counted as the peer's fault; other refusals are.
    #[test]
    fn a_record_this_node_failed_to_write_is_not_the_peers_fault() {
        let ours = HandshakeError::RecordFailed {
            node_id: NodeId(2),
            error: "no space left on device".to_string(),
        };
        assert!(!CloseReason::Handshake(ours).is_peer_fault());
        let theirs = HandshakeError::NodeUnknown { node_id: NodeId(9) };
        assert!(CloseReason::Handshake(theirs).is_peer_fault());
    }
}
