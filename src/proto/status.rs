//! `cohort status` on the wire: a core's groups (leader, term, commit, applied) and, where it
//! leads, each follower's progress.

use bytes::Bytes;

use crate::raft::{ProgressState, Role, Status};
use crate::wire::frame::open_frame;
use crate::wire::{DecodeError, EncodeError, FrameEncoder, FrameError, fb};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRow {
    pub node_id: u64,
    pub match_index: u64,
    pub next_index: u64,
    pub inflight: u32,
    pub state: &'static str,
    /// Not heard from in the last election timeout and the one before: down, cut off, or
    /// frozen (found by an operator: a follower dead for an hour showed its last match and
    /// `replicate`, like a live one).
    pub silent: bool,
    /// In state `snapshot`: the snapshot's index, and how many of its bytes the follower
    /// holds of how many (0 of 0: its stream has not started).
    pub snapshot: Option<SnapshotSent>,
}

/// How far a snapshot being sent to a follower is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSent {
    pub index: u64,
    pub acked_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub group: u32,
    pub role: &'static str,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub peers: Vec<PeerRow>,
    /// The group's configuration as this node applied it.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// A membership change is under way (the group runs on its old and new voters).
    pub joint: bool,
    /// Idle, its timers stopped until a write, a read or a message wakes it.
    pub quiet: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRows {
    pub node_id: u64,
    pub core: u16,
    pub groups: Vec<GroupRow>,
    /// Why the core takes no writes, if it takes none (its log cannot grow on a full disk, or
    /// a sync of its log does not end): it then leads no group.
    pub refuses_writes: Option<String>,
    /// While this core says its clients reach it only through other members: those members,
    /// which forward their requests (it hands the groups it leads to the other members,
    /// spread by how many each leads: `shard::client_reach`). Empty otherwise.
    pub clients_relay_through: Vec<u64>,
    /// The peers heard from lately that say so of their own clients: this core hands them no
    /// group.
    pub peers_clients_relay: Vec<u64>,
}

const ROLES: [&str; 4] = ["follower", "pre-candidate", "candidate", "leader"];
const STATES: [&str; 3] = ["probe", "replicate", "snapshot"];

fn role_code(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

fn state_code(state: &ProgressState) -> u8 {
    match state {
        ProgressState::Probe => 0,
        ProgressState::Replicate => 1,
        ProgressState::Snapshot { .. } => 2,
    }
}

fn ids(nodes: &[crate::raft::NodeId]) -> Vec<u64> {
    nodes.iter().map(|n| n.0).collect()
}

impl GroupRow {
    pub fn from_status(group: u32, status: &Status) -> GroupRow {
        GroupRow {
            group,
            role: ROLES[usize::from(role_code(status.role))],
            leader: status.leader.0,
            term: status.term.0,
            commit: status.commit.0,
            applied: status.applied.0,
            last_index: status.last_index.0,
            peers: status
                .peers
                .iter()
                .map(|p| PeerRow {
                    node_id: p.id.0,
                    match_index: p.match_index.0,
                    next_index: p.next_index.0,
                    inflight: p.inflight_appends as u32,
                    state: STATES[usize::from(state_code(&p.state))],
                    silent: !p.answers,
                    snapshot: match p.state {
                        ProgressState::Snapshot { index, .. } => Some(SnapshotSent {
                            index: index.0,
                            acked_bytes: 0,
                            total_bytes: 0,
                        }),
                        _ => None,
                    },
                })
                .collect(),
            voters: ids(&status.conf_state.voters),
            learners: ids(&status.conf_state.learners),
            joint: status.conf_state.is_joint(),
            quiet: status.quiesced,
        }
    }
}

pub fn encode_status_request(encoder: &mut FrameEncoder) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let table = fb::StatusRequest::create(fbb, &fb::StatusRequestArgs {});
        (fb::FrameBody::StatusRequest, table.as_union_value())
    })
}

pub fn encode_status(encoder: &mut FrameEncoder, rows: &CoreRows) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let mut groups = Vec::with_capacity(rows.groups.len());
        for row in &rows.groups {
            let peers: Vec<_> = row
                .peers
                .iter()
                .map(|p| {
                    let args = fb::PeerProgressArgs {
                        node_id: p.node_id,
                        match_index: p.match_index,
                        next_index: p.next_index,
                        inflight: p.inflight,
                        state: STATES.iter().position(|s| *s == p.state).unwrap_or(0) as u8,
                        silent: p.silent,
                        snapshot_index: p.snapshot.map_or(0, |s| s.index),
                        snapshot_acked: p.snapshot.map_or(0, |s| s.acked_bytes),
                        snapshot_bytes: p.snapshot.map_or(0, |s| s.total_bytes),
                    };
                    fb::PeerProgress::create(fbb, &args)
                })
                .collect();
            let peers = Some(fbb.create_vector(&peers));
            let voters = Some(fbb.create_vector(&row.voters));
            let learners = Some(fbb.create_vector(&row.learners));
            let args = fb::GroupStatusArgs {
                group: row.group,
                role: ROLES.iter().position(|r| *r == row.role).unwrap_or(0) as u8,
                leader: row.leader,
                term: row.term,
                commit: row.commit,
                applied: row.applied,
                last_index: row.last_index,
                peers,
                voters,
                learners,
                joint: row.joint,
                quiet: row.quiet,
            };
            groups.push(fb::GroupStatus::create(fbb, &args));
        }
        let groups = Some(fbb.create_vector(&groups));
        // On the wire under its first name: a full disk was the only reason then.
        let log_full = rows
            .refuses_writes
            .as_deref()
            .map(|why| fbb.create_string(why));
        let mut id_vector = |ids: &[u64]| (!ids.is_empty()).then(|| fbb.create_vector(ids));
        let clients_relay_through = id_vector(&rows.clients_relay_through);
        let peers_clients_relay = id_vector(&rows.peers_clients_relay);
        let args = fb::CoreStatusArgs {
            node_id: rows.node_id,
            core: rows.core,
            groups,
            log_full,
            clients_relay_through,
            peers_clients_relay,
        };
        let table = fb::CoreStatus::create(fbb, &args);
        (fb::FrameBody::CoreStatus, table.as_union_value())
    })
}

pub fn decode_status(frame: &Bytes) -> Result<CoreRows, DecodeError> {
    let root = open_frame(frame)?;
    let table = root.body_as_core_status().ok_or(FrameError::BodyUnknown)?;
    let name =
        |names: &[&'static str], code: u8| names.get(usize::from(code)).copied().unwrap_or("?");
    let groups = table
        .groups()
        .unwrap_or_default()
        .iter()
        .map(|g| GroupRow {
            group: g.group(),
            role: name(&ROLES, g.role()),
            leader: g.leader(),
            term: g.term(),
            commit: g.commit(),
            applied: g.applied(),
            last_index: g.last_index(),
            peers: g
                .peers()
                .unwrap_or_default()
                .iter()
                .map(|p| PeerRow {
                    node_id: p.node_id(),
                    match_index: p.match_index(),
                    next_index: p.next_index(),
                    inflight: p.inflight(),
                    state: name(&STATES, p.state()),
                    silent: p.silent(),
                    snapshot: (p.snapshot_index() != 0).then(|| SnapshotSent {
                        index: p.snapshot_index(),
                        acked_bytes: p.snapshot_acked(),
                        total_bytes: p.snapshot_bytes(),
                    }),
                })
                .collect(),
            voters: g.voters().map(|v| v.iter().collect()).unwrap_or_default(),
            learners: g.learners().map(|v| v.iter().collect()).unwrap_or_default(),
            joint: g.joint(),
            quiet: g.quiet(),
        })
        .collect();
    Ok(CoreRows {
        node_id: table.node_id(),
        core: table.core(),
        groups,
        refuses_writes: table.log_full().map(str::to_string),
        clients_relay_through: table
            .clients_relay_through()
            .map(|ids| ids.iter().collect())
            .unwrap_or_default(),
        peers_clients_relay: table
            .peers_clients_relay()
            .map(|ids| ids.iter().collect())
            .unwrap_or_default(),
    })
}

/// The table `cohort status` prints.
pub fn render(cores: &[CoreRows]) -> String {
    let mut out =
        String::from("node core group role          leader term   commit     applied    last\n");
    for core in cores {
        // What the core says of itself, a line each, above its groups.
        let said = [
            (core.refuses_writes.as_ref()).map(|why| format!("takes no writes: {why}")),
            (!core.clients_relay_through.is_empty()).then(|| {
                let by = nodes(&core.clients_relay_through);
                format!(
                    "clients' requests come to it only forwarded, by {by}: it hands the groups \
                     it leads to the other members"
                )
            }),
            (!core.peers_clients_relay.is_empty()).then(|| {
                let peers = nodes(&core.peers_clients_relay);
                format!("hands no group to {peers}: clients reach it only through other members")
            }),
        ];
        for line in said.into_iter().flatten() {
            out += &format!("{:<4} {:<4} {line}\n", core.node_id, core.core);
        }
        for g in &core.groups {
            // None known: "-", not a node id 0 (found by an operator).
            let leader = match g.leader {
                0 => "-".to_string(),
                id => id.to_string(),
            };
            out += &format!(
                "{:<4} {:<4} {:<5} {:<13} {:<6} {:<6} {:<10} {:<10} {}{}\n",
                core.node_id,
                core.core,
                g.group,
                g.role,
                leader,
                g.term,
                g.commit,
                g.applied,
                g.last_index,
                if g.quiet { " quiet" } else { "" }
            );
            for p in &g.peers {
                out += &format!(
                    "{:>20} peer {:<4} match {:<10} next {:<10} inflight {:<4} {}\n",
                    "",
                    p.node_id,
                    p.match_index,
                    p.next_index,
                    p.inflight,
                    peer_state(p)
                );
            }
        }
    }
    out
}

/// A follower's state as `cohort status` says it: how far a snapshot being sent is, and
/// whether it answers.
fn peer_state(peer: &PeerRow) -> String {
    let mut said = peer.state.to_string();
    if let Some(sent) = peer.snapshot {
        said += &format!(" at {}", sent.index);
        if sent.total_bytes > 0 {
            let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
            said += &format!(
                ", {:.1} of {:.1} MiB held",
                mib(sent.acked_bytes),
                mib(sent.total_bytes)
            );
        }
    }
    if peer.silent {
        said += ", not answering (down, cut off or stalled)";
    }
    said
}

/// "node 2" or "nodes 2, 3", of a list that is not empty.
fn nodes(ids: &[u64]) -> String {
    debug_assert!(!ids.is_empty());
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    match list.len() {
        1 => format!("node {}", list[0]),
        _ => format!("nodes {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let rows = CoreRows {
            node_id: 2,
            core: 1,
            groups: vec![GroupRow {
                group: 3,
                role: "leader",
                leader: 2,
                term: 7,
                commit: 100,
                applied: 99,
                last_index: 101,
                peers: vec![
                    PeerRow {
                        node_id: 1,
                        match_index: 100,
                        next_index: 102,
                        inflight: 1,
                        state: "replicate",
                        silent: false,
                        snapshot: None,
                    },
                    PeerRow {
                        node_id: 3,
                        match_index: 10,
                        next_index: 91,
                        inflight: 0,
                        state: "snapshot",
                        silent: true,
                        snapshot: Some(SnapshotSent {
                            index: 90,
                            acked_bytes: 3 << 20,
                            total_bytes: 12 << 20,
                        }),
                    },
                ],
                voters: vec![1, 2, 3],
                learners: vec![4],
                joint: true,
                quiet: false,
            }],
            refuses_writes: None,
            clients_relay_through: Vec::new(),
            peers_clients_relay: Vec::new(),
        };
        let mut encoder = FrameEncoder::new();
        encode_status(&mut encoder, &rows).unwrap();
        let decoded = decode_status(&Bytes::from(encoder.to_frame_vec())).unwrap();
        assert_eq!(decoded, rows);
        let table = render(&[decoded]);
        assert!(table.contains("inflight 1    replicate\n"), "{table}");
        assert!(
            table.contains("snapshot at 90, 3.0 of 12.0 MiB held, not answering"),
            "{table}"
        );
        let leaderless = CoreRows {
            groups: vec![GroupRow {
                role: "pre-candidate",
                leader: 0,
                peers: Vec::new(),
                ..rows.groups[0].clone()
            }],
            ..rows.clone()
        };
        let table = render(&[leaderless]);
        assert!(table.contains("pre-candidate -      7 "), "{table}");
        let quiet = CoreRows {
            groups: vec![GroupRow {
                quiet: true,
                peers: Vec::new(),
                ..rows.groups[0].clone()
            }],
            ..rows.clone()
        };
        encode_status(&mut encoder, &quiet).unwrap();
        let decoded = decode_status(&Bytes::from(encoder.to_frame_vec())).unwrap();
        assert_eq!(decoded, quiet);
        assert!(render(&[decoded]).contains(" 101 quiet\n"), "said quiet");
        let full = CoreRows {
            refuses_writes: Some(
                "its log cannot grow: cannot make the next WAL segment: No space left".to_string(),
            ),
            ..rows.clone()
        };
        encode_status(&mut encoder, &full).unwrap();
        let decoded = decode_status(&Bytes::from(encoder.to_frame_vec())).unwrap();
        assert_eq!(decoded, full);
        let table = render(&[decoded]);
        assert!(
            table.contains("2    1    takes no writes: its log cannot grow: cannot make"),
            "{table}"
        );
        // A core whose clients relay, and one that hands such peers no group.
        let relaying = CoreRows {
            clients_relay_through: vec![1, 3],
            ..rows.clone()
        };
        let beside = CoreRows {
            node_id: 3,
            peers_clients_relay: vec![2],
            ..rows
        };
        for core in [&relaying, &beside] {
            encode_status(&mut encoder, core).unwrap();
            let decoded = decode_status(&Bytes::from(encoder.to_frame_vec())).unwrap();
            assert_eq!(&decoded, core);
        }
        let table = render(&[relaying, beside]);
        assert!(
            table.contains(
                "2    1    clients' requests come to it only forwarded, by nodes 1, 3: it hands \
                 the groups it leads to the other members\n"
            ),
            "{table}"
        );
        assert!(
            table.contains("3    1    hands no group to node 2: clients reach it only through"),
            "{table}"
        );
    }
}
