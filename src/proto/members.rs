//! `cohort members` on the wire: a change of one group's membership and its outcome, and the
//! member addresses that travel inside the group's conf-change entries.
//!
//! Membership is per group in Raft; cluster membership is the same change made in every
//! group, one group at a time, by the client (`client::members`). Each group's leader makes
//! the change through a joint configuration and answers once it is left.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::frame::open_frame;
use crate::wire::{DecodeError, EncodeError, FrameEncoder, FrameError, fb};

/// The longest base address a member may have, in bytes.
pub const ADDRESS_BYTES_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOp {
    /// Add the node as a learner: it receives the log but does not vote.
    AddLearner { address: String },
    /// Make a caught-up learner a voter.
    Promote,
    /// Take the node out of the group (its leader hands over first if it is the node).
    Remove,
}

impl MemberOp {
    fn code(&self) -> u8 {
        match self {
            MemberOp::AddLearner { .. } => 0,
            MemberOp::Promote => 1,
            MemberOp::Remove => 2,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            MemberOp::AddLearner { .. } => "add",
            MemberOp::Promote => "promote",
            MemberOp::Remove => "remove",
        }
    }
}

/// One group's membership change, as a client asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    pub group: u32,
    pub node: u64,
    pub op: MemberOp,
}

/// How a change ended in one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOutcome {
    /// The group's configuration reflects the change; this is it now.
    Done {
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
    /// The asked node does not lead the group; `leader` is its hint (0: none known).
    NotLeader { leader: u64 },
    /// Refused; asking again will not help until something changes.
    Failed(String),
    /// A promote or remove of a node that is in none of the group's configurations (it was
    /// removed, or never added): said by the group's leader, so a joining node that finds
    /// itself removed knows it from the leader, not from a member that may lag. `removed`: the
    /// group removed it (a remove asked again finds it so), not never held it (a mistyped id).
    NotMember { why: String, removed: bool },
    /// Not now (another change is under way, a leader is handing over): ask again shortly.
    /// Nothing of this request was taken.
    Busy(String),
    /// This request's change was proposed and is not done yet (its leader stops or lost the
    /// group, or the wait ran out): it may still take effect; ask again shortly.
    UnderWay(String),
}

pub fn encode_member_change(
    encoder: &mut FrameEncoder,
    change: &MemberChange,
) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let address = match &change.op {
            MemberOp::AddLearner { address } => Some(fbb.create_string(address)),
            _ => None,
        };
        let args = fb::MemberChangeRequestArgs {
            group: change.group,
            op: change.op.code(),
            node_id: change.node,
            address,
        };
        let table = fb::MemberChangeRequest::create(fbb, &args);
        (fb::FrameBody::MemberChangeRequest, table.as_union_value())
    })
}

/// The change a verified request table asks for, or why it is not one.
pub fn member_change_of(table: fb::MemberChangeRequest<'_>) -> Result<MemberChange, String> {
    if table.node_id() == 0 {
        return Err("node id 0 is reserved (it means \"none\")".to_string());
    }
    let op = match table.op() {
        0 => {
            let address = table.address().unwrap_or_default();
            check_address(address)?;
            MemberOp::AddLearner {
                address: address.to_string(),
            }
        }
        1 => MemberOp::Promote,
        2 => MemberOp::Remove,
        other => return Err(format!("unknown membership operation {other}")),
    };
    Ok(MemberChange {
        group: table.group(),
        node: table.node_id(),
        op,
    })
}

/// A member's base address must be `HOST:PORT`, short enough to travel in a conf change,
/// with a port above 0 (its cores listen at fixed ports from it, which others dial).
pub fn check_address(address: &str) -> Result<(), String> {
    if address.len() > ADDRESS_BYTES_MAX {
        return Err(format!(
            "address of {} bytes: at most {ADDRESS_BYTES_MAX}",
            address.len()
        ));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "address `{address}` is not HOST:PORT (a port from 1)"
        )),
    }
}

pub fn encode_member_outcome(
    encoder: &mut FrameEncoder,
    outcome: &MemberOutcome,
) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let removed = matches!(outcome, MemberOutcome::NotMember { removed: true, .. });
        let taken = match outcome {
            MemberOutcome::UnderWay(_) => Some(true),
            MemberOutcome::Busy(_) => Some(false),
            _ => None,
        };
        let (code, leader, message, voters, learners) = match outcome {
            MemberOutcome::Done { voters, learners } => (
                0,
                0,
                None,
                Some(fbb.create_vector(voters)),
                Some(fbb.create_vector(learners)),
            ),
            MemberOutcome::NotLeader { leader } => (1, *leader, None, None, None),
            MemberOutcome::Failed(why) => (2, 0, Some(fbb.create_string(why)), None, None),
            MemberOutcome::Busy(why) | MemberOutcome::UnderWay(why) => {
                (3, 0, Some(fbb.create_string(why)), None, None)
            }
            MemberOutcome::NotMember { why, .. } => {
                (4, 0, Some(fbb.create_string(why)), None, None)
            }
        };
        let args = fb::MemberChangeResponseArgs {
            code,
            leader,
            message,
            voters,
            learners,
            removed,
            taken,
        };
        let table = fb::MemberChangeResponse::create(fbb, &args);
        (fb::FrameBody::MemberChangeResponse, table.as_union_value())
    })
}

pub fn decode_member_outcome(frame: &Bytes) -> Result<MemberOutcome, DecodeError> {
    let root = open_frame(frame)?;
    let table = root
        .body_as_member_change_response()
        .ok_or(FrameError::BodyUnknown)?;
    let ids =
        |v: Option<flatbuffers::Vector<'_, u64>>| v.map(|v| v.iter().collect()).unwrap_or_default();
    let message = || table.message().unwrap_or("no reason given").to_string();
    Ok(match table.code() {
        0 => MemberOutcome::Done {
            voters: ids(table.voters()),
            learners: ids(table.learners()),
        },
        1 => MemberOutcome::NotLeader {
            leader: table.leader(),
        },
        // A node from before `taken` said busy for both: may have been taken.
        3 if table.taken() != Some(false) => MemberOutcome::UnderWay(message()),
        3 => MemberOutcome::Busy(message()),
        4 => MemberOutcome::NotMember {
            why: message(),
            removed: table.removed(),
        },
        _ => MemberOutcome::Failed(message()),
    })
}

/// The addresses of the nodes a conf change adds, as its context: count u16 LE, then per
/// node id u64 LE, length u16 LE and the address in UTF-8.
pub fn encode_addresses<'a>(members: impl IntoIterator<Item = (u64, &'a str)>) -> Bytes {
    let members: Vec<(u64, &str)> = members.into_iter().collect();
    let mut out = BytesMut::new();
    out.put_u16_le(u16::try_from(members.len()).expect("at most 65535 members"));
    for (node, address) in members {
        let len = u16::try_from(address.len()).expect("addresses are checked to be short");
        out.put_u64_le(node);
        out.put_u16_le(len);
        out.put_slice(address.as_bytes());
    }
    out.freeze()
}

/// The addresses of a conf change's context. An empty context names none.
pub fn decode_addresses(context: &[u8]) -> Result<Vec<(u64, String)>, &'static str> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, &'static str> {
        if rest.len() < n {
            return Err("member addresses run past the end");
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let mut rest = context;
    let count = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
    let mut members = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let node = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
        let address = String::from_utf8(take(&mut rest, usize::from(len))?)
            .map_err(|_| "a member address is not UTF-8")?;
        members.push((node, address));
    }
    if !rest.is_empty() {
        return Err("bytes after the member addresses");
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::client::{ClientFrame, decode_client_frame};

    fn frame(encoder: &FrameEncoder) -> Bytes {
        Bytes::from(encoder.to_frame_vec())
    }

    /// Goal (review 211): a busy answer of a node from before `taken` (absent) may have been
    /// taken, as such a client took it: under way, not a refusal.
    #[test]
    fn a_busy_answer_without_taken_is_under_way() {
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let message = fbb.create_string("a change is under way");
                let args = fb::MemberChangeResponseArgs {
                    code: 3,
                    message: Some(message),
                    taken: None,
                    ..Default::default()
                };
                let table = fb::MemberChangeResponse::create(fbb, &args);
                (fb::FrameBody::MemberChangeResponse, table.as_union_value())
            })
            .unwrap();
        assert_eq!(
            decode_member_outcome(&frame(&encoder)).unwrap(),
            MemberOutcome::UnderWay("a change is under way".to_string())
        );
    }

    #[test]
    fn changes_and_outcomes_round_trip() {
        let mut encoder = FrameEncoder::new();
        for op in [
            MemberOp::AddLearner {
                address: "10.0.0.4:7000".to_string(),
            },
            MemberOp::Promote,
            MemberOp::Remove,
        ] {
            let change = MemberChange {
                group: 5,
                node: 4,
                op,
            };
            encode_member_change(&mut encoder, &change).unwrap();
            assert_eq!(
                decode_client_frame(&frame(&encoder)).unwrap(),
                ClientFrame::ChangeMember(Ok(change))
            );
        }
        for outcome in [
            MemberOutcome::Done {
                voters: vec![1, 2, 4],
                learners: vec![5],
            },
            MemberOutcome::NotLeader { leader: 2 },
            MemberOutcome::Failed("node 4 is 900 entries behind".to_string()),
            MemberOutcome::Busy("a change is under way".to_string()),
            MemberOutcome::UnderWay("the leader stops".to_string()),
        ] {
            encode_member_outcome(&mut encoder, &outcome).unwrap();
            assert_eq!(decode_member_outcome(&frame(&encoder)).unwrap(), outcome);
        }
    }

    #[test]
    fn bad_changes_are_refused_with_a_reason() {
        let mut encoder = FrameEncoder::new();
        let cases = [
            (0, 0, "h:1", "reserved"),
            (4, 0, "no-port", "HOST:PORT"),
            (4, 0, ":7000", "HOST:PORT"),
            (4, 9, "", "unknown membership operation"),
        ];
        for (node, op, address, expected) in cases {
            encoder
                .encode_with(|fbb| {
                    let address = Some(fbb.create_string(address));
                    let args = fb::MemberChangeRequestArgs {
                        group: 0,
                        op,
                        node_id: node,
                        address,
                    };
                    let table = fb::MemberChangeRequest::create(fbb, &args);
                    (fb::FrameBody::MemberChangeRequest, table.as_union_value())
                })
                .unwrap();
            match decode_client_frame(&frame(&encoder)).unwrap() {
                ClientFrame::ChangeMember(Err(why)) => assert!(why.contains(expected), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        let long = format!("{}:1", "h".repeat(ADDRESS_BYTES_MAX));
        assert!(check_address(&long).unwrap_err().contains("at most"));
    }

    #[test]
    fn addresses_round_trip_and_damage_is_caught() {
        let encoded = encode_addresses([(1, "127.0.0.1:7000"), (40, "[::1]:9000")]);
        assert_eq!(
            decode_addresses(&encoded).unwrap(),
            [
                (1, "127.0.0.1:7000".to_string()),
                (40, "[::1]:9000".to_string())
            ]
        );
        assert_eq!(decode_addresses(&[]).unwrap(), []);
        for len in 1..encoded.len() {
            assert!(decode_addresses(&encoded[..len]).is_err(), "length {len}");
        }
        let mut longer = encoded.to_vec();
        longer.push(0);
        assert!(decode_addresses(&longer).is_err());
    }
}
