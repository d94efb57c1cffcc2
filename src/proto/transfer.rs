//! `cohort leader transfer` on the wire: the request to hand a group's leadership to a node,
//! and its outcome.

use bytes::Bytes;

use crate::wire::frame::open_frame;
use crate::wire::{DecodeError, EncodeError, FrameEncoder, FrameError, fb};

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// `leader` leads the group now.
    Done { leader: u64 },
    /// The asked node does not lead the group; `leader` is its hint (0: none known).
    NotLeader { leader: u64 },
    /// Refused, or not completed in time.
    Failed(String),
}

pub fn encode_transfer_request(
    encoder: &mut FrameEncoder,
    group: u32,
    to: u64,
) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let args = fb::TransferLeaderRequestArgs { group, to };
        let table = fb::TransferLeaderRequest::create(fbb, &args);
        (fb::FrameBody::TransferLeaderRequest, table.as_union_value())
    })
}

pub fn encode_transfer_outcome(
    encoder: &mut FrameEncoder,
    outcome: &TransferOutcome,
) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let (code, leader, message) = match outcome {
            TransferOutcome::Done { leader } => (0, *leader, None),
            TransferOutcome::NotLeader { leader } => (1, *leader, None),
            TransferOutcome::Failed(why) => (2, 0, Some(fbb.create_string(why))),
        };
        let args = fb::TransferLeaderResponseArgs {
            code,
            leader,
            message,
        };
        let table = fb::TransferLeaderResponse::create(fbb, &args);
        (
            fb::FrameBody::TransferLeaderResponse,
            table.as_union_value(),
        )
    })
}

pub fn decode_transfer_outcome(frame: &Bytes) -> Result<TransferOutcome, DecodeError> {
    let root = open_frame(frame)?;
    let table = root
        .body_as_transfer_leader_response()
        .ok_or(FrameError::BodyUnknown)?;
    Ok(match table.code() {
        0 => TransferOutcome::Done {
            leader: table.leader(),
        },
        1 => TransferOutcome::NotLeader {
            leader: table.leader(),
        },
        _ => TransferOutcome::Failed(table.message().unwrap_or("no reason given").to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::client::{ClientFrame, decode_client_frame};

    fn frame(encoder: &FrameEncoder) -> Bytes {
        Bytes::from(encoder.to_frame_vec())
    }

    #[test]
    fn requests_and_outcomes_round_trip() {
        let mut encoder = FrameEncoder::new();
        encode_transfer_request(&mut encoder, 7, 3).unwrap();
        assert_eq!(
            decode_client_frame(&frame(&encoder)).unwrap(),
            ClientFrame::TransferLeader { group: 7, to: 3 }
        );
        for outcome in [
            TransferOutcome::Done { leader: 3 },
            TransferOutcome::NotLeader { leader: 2 },
            TransferOutcome::Failed("node 9 is not a voter".to_string()),
        ] {
            encode_transfer_outcome(&mut encoder, &outcome).unwrap();
            assert_eq!(decode_transfer_outcome(&frame(&encoder)).unwrap(), outcome);
        }
    }
}
