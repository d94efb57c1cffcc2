//! How keys map to groups and groups to cores and ports, and the frames that tell a client.

use bytes::Bytes;

use crate::wire::frame::open_frame;
use crate::wire::{ContentError, DecodeError, EncodeError, FrameEncoder, FrameError, Timing, fb};

/// Groups a cluster runs at most (`serve --groups`): a client keeps state for each, and a
/// broken or hostile node's layout must not make it allocate without bound.
pub const GROUPS_MAX: u32 = 1 << 20;

/// `--cores` at most: two ports a core must fit above a node's base port, and a node's
/// threads and WALs stay countable. A client asks every core of every member at once
/// (`cohort status`): a hostile layout must not make it open millions of connections.
pub const CORES_MAX: u16 = 1024;

/// A cluster as clients see it. Identical on every node, except `node_id`.
///
/// Ports: a node has one base address `host:P`; its core c takes peer connections on
/// `P + 2c` and client connections on `P + 2c + 1` ([`peer_address`], [`client_address`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The cluster's id (`serve --cluster-id`): a node that joins takes it.
    pub cluster_id: u64,
    /// The node that answered.
    pub node_id: u64,
    pub cores: u16,
    pub groups: u32,
    /// (node id, base address of the node).
    pub members: Vec<(u64, String)>,
    /// When the cluster's voters vote and its leases end: a node that joins with other
    /// timing, where peers refuse it, is refused before it becomes a member (default: not
    /// said, as by an older node).
    pub timing: Timing,
    /// Whether the nodes sync their log before they acknowledge (None: not said, as by an
    /// older node or a tool).
    pub syncs: Option<bool>,
}

/// The group that owns `key`: FNV-1a (64-bit) modulo the group count. Stable across
/// releases: changing it would move every key.
pub fn group_of(key: &[u8], groups: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(groups.max(1))) as u32
}

/// The core of every node that runs `group`.
pub fn core_of(group: u32, cores: u16) -> u16 {
    (group % u32::from(cores.max(1))) as u16
}

impl Topology {
    /// Where node `node_id` serves the clients of `group`, if it is a member.
    pub fn address_of(&self, node_id: u64, group: u32) -> Option<String> {
        let (_, base) = self.members.iter().find(|(id, _)| *id == node_id)?;
        client_address(base, core_of(group, self.cores))
    }

    /// Whether `fresh`, a layout asked for again, is of the cluster `self` was: the same
    /// id and shape (a cluster's cores and groups never change). A member's address reused by
    /// another cluster (a redeploy) must not move a live client's layout over to it, where it
    /// would go on writing to that cluster's members (found in review). (Requests carry no
    /// cluster id: one sent to such an address still reaches the other cluster.)
    pub fn same_cluster(&self, fresh: &Topology) -> bool {
        (self.cluster_id, self.cores, self.groups) == (fresh.cluster_id, fresh.cores, fresh.groups)
    }

    /// How `fresh` differs from `self`'s cluster, in words.
    pub fn other_cluster(&self, fresh: &Topology) -> String {
        format!(
            "node {} says cluster {} of {} cores and {} groups, not cluster {} of {} and {}",
            fresh.node_id,
            fresh.cluster_id,
            fresh.cores,
            fresh.groups,
            self.cluster_id,
            self.cores,
            self.groups
        )
    }
}

/// Where core `core` of the node at `base` takes client connections.
pub fn client_address(base: &str, core: u16) -> Option<String> {
    port_plus(base, 2 * u32::from(core) + 1)
}

/// Where core `core` of the node at `base` takes connections from its peers' core `core`.
pub fn peer_address(base: &str, core: u16) -> Option<String> {
    port_plus(base, 2 * u32::from(core))
}

/// `host:port` with `offset` added to the port; None if it is not `host:port` or overflows.
fn port_plus(address: &str, offset: u32) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let port = u16::try_from(u32::from(port) + offset).ok()?;
    Some(format!("{host}:{port}"))
}

pub fn encode_topology_request(encoder: &mut FrameEncoder) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let table = fb::TopologyRequest::create(fbb, &fb::TopologyRequestArgs {});
        (fb::FrameBody::TopologyRequest, table.as_union_value())
    })
}

pub fn encode_topology(encoder: &mut FrameEncoder, topology: &Topology) -> Result<(), EncodeError> {
    encoder.encode_with(|fbb| {
        let members: Vec<_> = topology
            .members
            .iter()
            .map(|(node_id, address)| {
                let client_address = Some(fbb.create_string(address));
                let args = fb::MemberArgs {
                    node_id: *node_id,
                    client_address,
                };
                fb::Member::create(fbb, &args)
            })
            .collect();
        let members = Some(fbb.create_vector(&members));
        let args = fb::TopologyArgs {
            cluster_id: topology.cluster_id,
            node_id: topology.node_id,
            cores: topology.cores,
            groups: topology.groups,
            members,
            timing_tick_us: topology.timing.tick_us,
            timing_election_ticks: topology.timing.election_ticks,
            timing_lease_reads: topology.timing.lease_reads,
            sync_mode: match topology.syncs {
                None => 0,
                Some(true) => 1,
                Some(false) => 2,
            },
        };
        let table = fb::Topology::create(fbb, &args);
        (fb::FrameBody::Topology, table.as_union_value())
    })
}

pub fn decode_topology(frame: &Bytes) -> Result<Topology, DecodeError> {
    let root = open_frame(frame)?;
    let table = root.body_as_topology().ok_or(FrameError::BodyUnknown)?;
    if table.cores() == 0 || table.groups() == 0 {
        return Err(DecodeError::Content(ContentError::ShapeEmpty {
            cores: u64::from(table.cores()),
            groups: u64::from(table.groups()),
        }));
    }
    let members = table.members().unwrap_or_default();
    let too_large = |what, count: usize, max: usize| {
        Err(DecodeError::Content(ContentError::TopologyTooLarge {
            what,
            count: count as u64,
            max: max as u64,
        }))
    };
    if table.groups() > GROUPS_MAX {
        return too_large("groups", table.groups() as usize, GROUPS_MAX as usize);
    }
    if table.cores() > CORES_MAX {
        return too_large("cores", usize::from(table.cores()), usize::from(CORES_MAX));
    }
    // A node's layout lists the members of all its groups: while a member is replaced,
    // one group may hold the new member and another the old, so more than one group takes.
    if members.len() > 2 * crate::raft::MEMBERS_MAX {
        return too_large("members", members.len(), 2 * crate::raft::MEMBERS_MAX);
    }
    Ok(Topology {
        cluster_id: table.cluster_id(),
        node_id: table.node_id(),
        cores: table.cores(),
        groups: table.groups(),
        members: members
            .iter()
            .map(|m| {
                (
                    m.node_id(),
                    m.client_address().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        timing: Timing {
            tick_us: table.timing_tick_us(),
            election_ticks: table.timing_election_ticks(),
            lease_reads: table.timing_lease_reads(),
        },
        syncs: match table.sync_mode() {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_groups_and_the_mapping_is_stable() {
        // Pinned values: a change here moves every key of every existing cluster.
        assert_eq!(
            group_of(b"", 1024),
            (0xcbf2_9ce4_8422_2325u64 % 1024) as u32
        );
        assert_eq!(group_of(b"a", 7), (0xaf63_dc4c_8601_ec8cu64 % 7) as u32);
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[group_of(format!("key{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn topology_round_trips_and_names_the_core_port() {
        let topology = Topology {
            cluster_id: 7,
            node_id: 2,
            cores: 4,
            groups: 64,
            members: vec![(1, "127.0.0.1:7100".into()), (2, "127.0.0.1:7200".into())],
            timing: Timing {
                tick_us: 10_000,
                election_ticks: 20,
                lease_reads: true,
            },
            syncs: Some(false),
        };
        let mut encoder = FrameEncoder::new();
        encode_topology(&mut encoder, &topology).unwrap();
        let decoded = decode_topology(&Bytes::from(encoder.to_frame_vec())).unwrap();
        assert_eq!(decoded, topology);
        // Group 6 lives on core 2: client port 7200 + 2·2 + 1.
        assert_eq!(topology.address_of(2, 6).as_deref(), Some("127.0.0.1:7205"));
        assert_eq!(topology.address_of(3, 6), None);
        assert_eq!(peer_address("[::1]:7000", 3).as_deref(), Some("[::1]:7006"));
        assert_eq!(client_address("h:65535", 0), None);
        assert_eq!(client_address("no-port", 0), None);
    }

    #[test]
    fn a_topology_of_no_cores_or_no_groups_is_refused() {
        // A client divides by both, and names the last group as `groups - 1`.
        for (cores, groups) in [(0, 8), (2, 0)] {
            let topology = Topology {
                cluster_id: 1,
                node_id: 1,
                cores,
                groups,
                members: vec![(1, "127.0.0.1:7100".into())],
                timing: Timing::default(),
                syncs: None,
            };
            let mut encoder = FrameEncoder::new();
            encode_topology(&mut encoder, &topology).unwrap();
            let error = decode_topology(&Bytes::from(encoder.to_frame_vec())).unwrap_err();
            assert!(error.to_string().contains("at least 1"), "{error}");
        }
    }

    /// Goal (reviews 232, 234): a layout naming more groups or members than a cluster has
    /// (a broken or hostile node) is refused: a client allocated for each group, dialed
    /// each member, and the load generator read every group once before its run. Or more
    /// cores (found in review: `cohort status` asks every core of every member at once).
    #[test]
    fn a_topology_of_more_groups_or_members_than_a_cluster_has_is_refused() {
        let many = (1..=2 * crate::raft::MEMBERS_MAX as u64 + 1)
            .map(|id| (id, format!("127.0.0.1:{}", 7000 + 100 * id)))
            .collect::<Vec<_>>();
        for (cores, groups, members, said) in [
            (
                2,
                GROUPS_MAX + 1,
                many[..3].to_vec(),
                "1048577 groups: at most 1048576",
            ),
            (2, 8, many.clone(), "129 members: at most 128"),
            (
                CORES_MAX + 1,
                8,
                many[..3].to_vec(),
                "1025 cores: at most 1024",
            ),
            (CORES_MAX, GROUPS_MAX, many[..128].to_vec(), ""),
        ] {
            let topology = Topology {
                cluster_id: 1,
                node_id: 1,
                cores,
                groups,
                members,
                timing: Timing::default(),
                syncs: None,
            };
            let mut encoder = FrameEncoder::new();
            encode_topology(&mut encoder, &topology).unwrap();
            match decode_topology(&Bytes::from(encoder.to_frame_vec())) {
                Err(error) => {
                    assert!(
                        !said.is_empty() && error.to_string().contains(said),
                        "{error}"
                    )
                }
                Ok(decoded) => assert!(said.is_empty(), "{decoded:?} taken"),
            }
        }
    }
}
