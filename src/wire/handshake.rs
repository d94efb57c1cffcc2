//! The handshake: the first frame each side of a connection sends, and what it must say.

use crate::raft::NodeId;

use super::limits::PROTOCOL_VERSION;

/// The cluster a node belongs to, chosen when the cluster is created. Two clusters on one
/// network must never exchange messages: their groups and terms are unrelated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClusterId(pub u64);

/// Who is on the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub protocol_version: u16,
    pub cluster_id: ClusterId,
    pub node_id: NodeId,
    pub core_index: u16,
    /// The sender's data dir, drawn when the dir was made (0: none, an older node).
    pub incarnation: u64,
    /// The receiver's data dir as the sender recorded it at their first connection (0: none).
    pub incarnation_of_receiver: u64,
    /// How many times the sending core has started on its data.
    pub start: u64,
    /// The most starts of the receiver's data the sender saw (0: none).
    pub start_of_receiver: u64,
    /// The sender's cores and groups (0: not said). See [`Layout`].
    pub layout: Layout,
    /// The sender's tick, election timeout and lease reads (0: not said). See [`Timing`].
    pub timing: Timing,
    /// The node the sender meant to reach: the one it dialed, or the dialer it answers
    /// (`NodeId::NONE`: not said, an older node or a tool).
    pub receiver: NodeId,
    /// The sender dials only to learn whether the receiver's groups removed it: a node never
    /// dials a peer of a smaller id, but probes one it has heard nothing from for a while.
    pub probe: bool,
    /// The receiver was removed from the cluster: the only answer a removed node gets.
    pub receiver_removed: bool,
}

/// How a node spreads the groups over its cores: `--cores` and `--groups`, the same on every
/// node of a cluster (group g lives on core g % cores). 0 in either: not said (an older node,
/// a tool), and not checked. And the cluster's initial voters, as a digest (see
/// [`founders_digest`]; 0: not said, not checked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub cores: u16,
    pub groups: u32,
    pub founders: u64,
}

/// The digest of a cluster's initial voters, as data dirs recorded it before their ports
/// counted (never 0, which means "not said"): FNV-1a over their ids, ascending, each as 8
/// little-endian bytes. Stable across builds: it is recorded in data dirs and sent in
/// handshakes.
pub fn founders_digest(voters: impl IntoIterator<Item = NodeId>) -> u64 {
    let mut ids: Vec<u64> = voters.into_iter().map(|id| id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    fnv1a(ids.iter().flat_map(|id| id.to_le_bytes()))
}

/// The digest of a cluster's initial voters and the ports they listen on (`--peers`: id →
/// HOST:PORT), which a new data dir records and its node sends in handshakes (never 0): FNV-1a
/// over the bytes `ports`, then for each id, ascending, its 8 little-endian bytes and its
/// port's 2 (0 where the address has none). The first entry of every group names the members
/// at their addresses, so nodes given other addresses for one member hold two first entries
/// (found by a tester: a port mistyped in one node's --peers, and the two nodes never met:
/// with a third down, the cluster took no writes). Ports, not hosts: a member may be named by
/// its host name on one node and by its IP on another. Stable across builds.
pub fn founders_digest_with_ports<'a>(members: impl IntoIterator<Item = (NodeId, &'a str)>) -> u64 {
    let mut members: Vec<(u64, u16)> = (members.into_iter())
        .map(|(id, address)| {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok());
            (id.0, port.unwrap_or(0))
        })
        .collect();
    members.sort_unstable();
    members.dedup();
    let fields = members
        .into_iter()
        .flat_map(|(id, port)| id.to_le_bytes().into_iter().chain(port.to_le_bytes()));
    fnv1a(b"ports".iter().copied().chain(fields))
}

/// Whether `recorded`, the founders a data dir recorded, are `members`: by their ids and
/// ports, or by their ids alone where the dir recorded them before ports counted.
pub fn founders_match<'a>(
    recorded: u64,
    members: impl IntoIterator<Item = (NodeId, &'a str)> + Clone,
) -> bool {
    recorded == founders_digest_with_ports(members.clone())
        || recorded == founders_digest(members.into_iter().map(|(id, _)| id))
}

/// FNV-1a of `bytes`, never 0.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

impl Layout {
    fn is_said(self) -> bool {
        self.cores != 0 && self.groups != 0
    }
}

/// When a node's voters vote and its leaders' leases end: `--tick-ms` (here in microseconds),
/// `--election-ticks` and `--lease-reads`. A voter refuses votes for its own election timeout
/// after it last heard the leader, and a leader serves reads from a lease of its own timeout
/// (less a margin): a voter that waits less lets a new leader in while the old one still
/// serves reads from its lease. So with lease reads on either node, two nodes must run with
/// the same. 0 in either count: not said (an older node, a tool), and not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub tick_us: u32,
    pub election_ticks: u32,
    pub lease_reads: bool,
}

impl Timing {
    fn is_said(self) -> bool {
        self.tick_us != 0 && self.election_ticks != 0
    }

    /// Whether nodes of `self` and of `other` may serve the same groups.
    pub fn agrees_with(self, other: Timing) -> bool {
        !self.is_said()
            || !other.is_said()
            || (!self.lease_reads && !other.lease_reads)
            || self == other
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tick_ms = f64::from(self.tick_us) / 1e3;
        write!(
            f,
            "--tick-ms {tick_ms} --election-ticks {}",
            self.election_ticks
        )?;
        if self.lease_reads {
            f.write_str(" --lease-reads")?;
        }
        Ok(())
    }
}

impl Handshake {
    /// The handshake this build sends, with no incarnations (set them where known).
    pub fn current(cluster_id: ClusterId, node_id: NodeId, core_index: u16) -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id,
            node_id,
            core_index,
            incarnation: 0,
            incarnation_of_receiver: 0,
            start: 0,
            start_of_receiver: 0,
            layout: Layout::default(),
            timing: Timing::default(),
            receiver: NodeId::NONE,
            probe: false,
            receiver_removed: false,
        }
    }

    /// The answer to node `removed` of `cluster_id`, which `node_id`'s core `core_index` no
    /// longer knows and whose groups removed it: who says so, and nothing else of this node.
    pub fn removed(
        cluster_id: ClusterId,
        (node_id, core_index): (NodeId, u16),
        removed: NodeId,
    ) -> Handshake {
        Handshake {
            receiver: removed,
            receiver_removed: true,
            ..Handshake::current(cluster_id, node_id, core_index)
        }
    }

    /// Whether this is the answer that node `own` of `cluster_id` was removed, from the node
    /// it dialed, `dialed`.
    pub fn says_removed(&self, cluster_id: ClusterId, own: NodeId, dialed: NodeId) -> bool {
        self.receiver_removed
            && self.cluster_id == cluster_id
            && self.receiver == own
            && self.node_id == dialed
    }

    /// Refuses a handshake meant for another node than `own` (where it says which it meant).
    pub fn check_receiver(&self, own: NodeId) -> Result<(), HandshakeError> {
        if self.receiver.is_none() || self.receiver == own {
            return Ok(());
        }
        Err(HandshakeError::MeantForAnother {
            node_id: self.node_id,
            receiver: self.receiver,
        })
    }
}

/// Why a peer's handshake was refused; the connection is closed with this as the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    VersionUnsupported {
        version: u16,
        version_supported: u16,
    },
    ClusterWrong {
        cluster_id: ClusterId,
        cluster_id_expected: ClusterId,
    },
    NodeUnknown {
        node_id: NodeId,
    },
    /// The peer was removed from the cluster: it was told so, and nothing else.
    NodeRemoved {
        node_id: NodeId,
    },
    /// The peer says this node was removed from the cluster.
    ThisNodeRemoved {
        node_id: NodeId,
    },
    NodeUnexpected {
        node_id: NodeId,
        node_id_expected: NodeId,
    },
    CoreMismatch {
        core_index: u16,
        core_index_expected: u16,
    },
    /// The peer runs with other `--cores` or `--groups` than this node.
    LayoutMismatch {
        node_id: NodeId,
        layout: Layout,
        layout_expected: Layout,
    },
    /// The peer's cluster was started with other initial voters than this node's.
    FoundersMismatch {
        node_id: NodeId,
    },
    /// The peer runs with other timing than this node, and one of them with lease reads.
    TimingMismatch {
        node_id: NodeId,
        timing: Timing,
        timing_expected: Timing,
    },
    /// The peer dialed this address for another node.
    MeantForAnother {
        node_id: NodeId,
        receiver: NodeId,
    },
    /// The first frame was something else than a handshake.
    NotAHandshake {
        kind: &'static str,
    },
    /// The peer came back under its id with other data than first seen (another incarnation).
    PeerDataDirChanged {
        node_id: NodeId,
        incarnation: u64,
        incarnation_recorded: u64,
        /// The count of starts recorded with it (what its file must say to be let in).
        starts_recorded: u64,
    },
    /// The peer recorded other data (another incarnation) for this core than it has now.
    ThisDataDirUnknown {
        node_id: NodeId,
        incarnation: u64,
        incarnation_recorded: u64,
        starts_recorded: u64,
    },
    /// The peer runs on an older copy of its data than it ran on before (fewer starts).
    PeerDataOld {
        node_id: NodeId,
        start: u64,
        start_recorded: u64,
    },
    /// The peer saw this core at a later start of its data than this one.
    ThisDataOld {
        node_id: NodeId,
        start: u64,
        start_recorded: u64,
    },
    /// The peer's data incarnation could not be recorded durably (not for a full disk).
    RecordFailed {
        node_id: NodeId,
        error: String,
    },
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::VersionUnsupported {
                version,
                version_supported,
            } => {
                write!(
                    f,
                    "protocol version {version}, this node speaks {version_supported}"
                )
            }
            HandshakeError::ClusterWrong {
                cluster_id,
                cluster_id_expected,
            } => {
                write!(
                    f,
                    "cluster id {}, expected {}",
                    cluster_id.0, cluster_id_expected.0
                )
            }
            HandshakeError::NodeUnknown { node_id } => write!(f, "node {node_id} is not a peer"),
            HandshakeError::NodeRemoved { node_id } => write!(
                f,
                "node {node_id} was removed from the cluster (told so: it stops)"
            ),
            HandshakeError::ThisNodeRemoved { node_id } => write!(
                f,
                "node {node_id} says this node was removed from the cluster"
            ),
            HandshakeError::NodeUnexpected {
                node_id,
                node_id_expected,
            } => {
                write!(
                    f,
                    "node {node_id} answered, expected node {node_id_expected}"
                )
            }
            HandshakeError::CoreMismatch {
                core_index,
                core_index_expected,
            } => {
                write!(f, "core {core_index}, expected core {core_index_expected}")
            }
            HandshakeError::RecordFailed { node_id, error } => write!(
                f,
                "cannot record the data incarnation of node {node_id} durably ({error}): the \
                 record is what refuses it back on other data, so the connection waits for it"
            ),
            HandshakeError::LayoutMismatch {
                node_id,
                layout,
                layout_expected,
            } => write!(
                f,
                "node {node_id} runs with --cores {} --groups {}, this node with --cores {} \
                 --groups {}: every node of a cluster must run with the same (a group lives on \
                 the same core of every node)",
                layout.cores, layout.groups, layout_expected.cores, layout_expected.groups
            ),
            HandshakeError::FoundersMismatch { node_id } => write!(
                f,
                "node {node_id} was started with other initial voters (--peers: other ids, or \
                 other ports for them) than this node: the first entry of every group names \
                 them, and a group whose nodes hold two such entries would mix two \
                 configurations (two leaders of one term, or nodes that never reach each \
                 other). Every node of a new cluster must get the same --peers; a node started \
                 with wrong ones must be started again on an empty data dir"
            ),
            HandshakeError::TimingMismatch {
                node_id,
                timing,
                timing_expected,
            } => write!(
                f,
                "node {node_id} runs with {timing}, this node with {timing_expected}: with \
                 lease reads every node must run with the same tick, election ticks and lease \
                 reads (a voter that waits less than a leader's lease before it votes lets a \
                 new leader in while the old one still serves reads from its lease)"
            ),
            HandshakeError::MeantForAnother { node_id, receiver } => write!(
                f,
                "node {node_id} dialed this address for node {receiver}: its list of members \
                 gives node {receiver} this node's address (an address a new node took over \
                 while node {receiver} is still a member there?); told who answers, nothing \
                 recorded"
            ),
            HandshakeError::NotAHandshake { kind } => {
                write!(f, "first frame is a {kind}, not a handshake")
            }
            HandshakeError::PeerDataDirChanged {
                node_id,
                incarnation,
                incarnation_recorded,
                starts_recorded,
            } => write!(
                f,
                "node {node_id} is back with other data (incarnation {incarnation}; this core \
                 recorded {incarnation_recorded}): a wiped or replaced data dir no longer holds \
                 what it acknowledged nor the votes it gave, so it is refused. Replace it: \
                 `cohort members remove --id {node_id}`, then a node with a new id on an empty \
                 data dir with --join. If its log is in fact intact (only its core-N/incarnation \
                 file was lost), stop node {node_id}, put `incarnation={incarnation_recorded}` \
                 and `starts={starts_recorded}` back in that file (the two lines after its \
                 first; if other nodes name a higher count, the highest), and start it again"
            ),
            HandshakeError::ThisDataDirUnknown {
                node_id,
                incarnation,
                incarnation_recorded,
                starts_recorded,
            } => write!(
                f,
                "node {node_id} recorded other data for this core (incarnation \
                 {incarnation_recorded}; this one is {incarnation}): either this node's data \
                 dir was wiped or replaced (it then no longer holds what it acknowledged nor the \
                 votes it gave, and must not take part under its id), or this node's log is \
                 intact and only its core-N/incarnation file was lost or replaced (then stop \
                 this node, put `incarnation={incarnation_recorded}` and \
                 `starts={starts_recorded}` back in that file, the two lines after its first \
                 (if other nodes name a higher count, the highest), and start it again)"
            ),
            HandshakeError::PeerDataOld {
                node_id,
                start,
                start_recorded,
            } => write!(
                f,
                "node {node_id} runs on an older copy of its data ({}): a restored backup or VM \
                 snapshot may lack what it acknowledged and the votes it gave, so it is refused. \
                 Replace it: `cohort members remove --id {node_id}`, then a node with a new id \
                 on an empty data dir with --join. (Seen once right after node {node_id} \
                 restarted, it is the last handshake of its previous process, and harmless.)",
                starts_text(*start, *start_recorded)
            ),
            HandshakeError::ThisDataOld {
                node_id,
                start,
                start_recorded,
            } => write!(
                f,
                "node {node_id} saw a later start of this core's data ({}): this node runs on an \
                 older copy of its data dir (a restored backup or VM snapshot?), which may lack \
                 what it acknowledged and the votes it gave",
                starts_text(*start, *start_recorded)
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The starts of a core's data that an older copy shows: `start` now, `recorded` seen before.
pub fn starts_text(start: u64, recorded: u64) -> String {
    if start == recorded {
        format!("start {start} again: another start {start} was seen before")
    } else {
        format!("start {start}, where start {recorded} was seen before")
    }
}

impl Handshake {
    /// Checks a peer's handshake against what this node expects: the same version and
    /// cluster, the same core index, the same layout where both say theirs, timing that
    /// agrees ([`Timing`]), the same initial voters where both say theirs, and a node id
    /// `is_peer` accepts.
    pub fn check(
        &self,
        expected_cluster: ClusterId,
        expected_core: u16,
        (expected_layout, expected_timing): (Layout, Timing),
        is_peer: impl Fn(NodeId) -> bool,
    ) -> Result<(), HandshakeError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(HandshakeError::VersionUnsupported {
                version: self.protocol_version,
                version_supported: PROTOCOL_VERSION,
            });
        }
        if self.cluster_id != expected_cluster {
            return Err(HandshakeError::ClusterWrong {
                cluster_id: self.cluster_id,
                cluster_id_expected: expected_cluster,
            });
        }
        if self.core_index != expected_core {
            return Err(HandshakeError::CoreMismatch {
                core_index: self.core_index,
                core_index_expected: expected_core,
            });
        }
        if !is_peer(self.node_id) {
            return Err(HandshakeError::NodeUnknown {
                node_id: self.node_id,
            });
        }
        let spread = |layout: Layout| (layout.cores, layout.groups);
        if self.layout.is_said()
            && expected_layout.is_said()
            && spread(self.layout) != spread(expected_layout)
        {
            return Err(HandshakeError::LayoutMismatch {
                node_id: self.node_id,
                layout: self.layout,
                layout_expected: expected_layout,
            });
        }
        let founders = (self.layout.founders, expected_layout.founders);
        if founders.0 != 0 && founders.1 != 0 && founders.0 != founders.1 {
            return Err(HandshakeError::FoundersMismatch {
                node_id: self.node_id,
            });
        }
        if !self.timing.agrees_with(expected_timing) {
            return Err(HandshakeError::TimingMismatch {
                node_id: self.node_id,
                timing: self.timing,
                timing_expected: expected_timing,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found by a tester): a new data dir's founders are the ids with their ports, so
    /// nodes given another port for one member refuse each other; host names may differ.
    /// A dir recorded before ports counted (ids alone) still matches its --peers.
    #[test]
    fn the_founders_count_the_ports_of_the_initial_voters() {
        let with = |members: &[(u64, &'static str)]| {
            founders_digest_with_ports(members.iter().map(|&(id, at)| (NodeId(id), at)))
        };
        let ours = [
            (1, "10.0.0.1:7000"),
            (2, "10.0.0.2:7000"),
            (3, "10.0.0.3:7000"),
        ];
        let digest = with(&ours);
        assert_ne!(digest, 0);
        assert_eq!(digest, with(&[ours[2], ours[0], ours[1]]), "in any order");
        assert_eq!(
            digest,
            with(&[ours[0], ours[1], (3, "db3:7000")]),
            "a name for an IP"
        );
        assert_ne!(
            digest,
            with(&[ours[0], ours[1], (3, "10.0.0.3:7005")]),
            "another port"
        );
        assert_ne!(
            digest,
            with(&[ours[0], ours[1], (4, "10.0.0.3:7000")]),
            "another id"
        );
        let ids = founders_digest([1, 2, 3].map(NodeId));
        assert_ne!(digest, ids);
        let members = ours.iter().map(|&(id, at)| (NodeId(id), at));
        assert!(founders_match(digest, members.clone()));
        assert!(
            founders_match(ids, members.clone()),
            "a dir recorded by ids alone"
        );
        assert!(!founders_match(
            with(&[(1, "a:1"), (2, "b:2"), (3, "c:3")]),
            members
        ));
    }

    /// Goal (found in review): nodes whose clusters were started with other initial voters
    /// refuse each other where both say theirs. The digest is of the ids alone (in any order),
    /// and never 0, which means "not said".
    #[test]
    fn initial_voters_are_checked_where_both_say_them() {
        let digest = |ids: &[u64]| founders_digest(ids.iter().map(|&id| NodeId(id)));
        let (ours, theirs) = (digest(&[1, 2, 3]), digest(&[1, 2, 4]));
        assert_eq!(ours, digest(&[3, 1, 2]));
        assert_ne!(ours, theirs);
        assert_ne!(digest(&[]), 0);
        let check = |sent: u64, expected: u64| {
            let layout = |founders| Layout {
                cores: 1,
                groups: 4,
                founders,
            };
            let handshake = Handshake {
                layout: layout(sent),
                ..Handshake::current(ClusterId(1), NodeId(2), 0)
            };
            let expected = (layout(expected), Timing::default());
            handshake.check(ClusterId(1), 0, expected, |_| true)
        };
        assert_eq!(check(ours, ours), Ok(()));
        assert_eq!(check(0, ours), Ok(()), "not said");
        assert_eq!(check(ours, 0), Ok(()), "not said here");
        let refused = check(theirs, ours).expect_err("refused");
        assert_eq!(
            refused,
            HandshakeError::FoundersMismatch { node_id: NodeId(2) }
        );
        assert!(
            refused.to_string().contains("other initial voters"),
            "{refused}"
        );
    }

    /// Goal (found in review): with lease reads on either side, nodes of other timing are
    /// refused, saying both; without, or where a side does not say its timing (an older
    /// node), they are not.
    #[test]
    fn timing_is_checked_where_a_lease_depends_on_it() {
        let ours = Timing {
            tick_us: 10_000,
            election_ticks: 10,
            lease_reads: true,
        };
        let check = |timing: Timing, expected: Timing| {
            let theirs = Handshake {
                timing,
                ..Handshake::current(ClusterId(1), NodeId(2), 0)
            };
            theirs.check(ClusterId(1), 0, (Layout::default(), expected), |_| true)
        };
        let off = |timing: Timing| Timing {
            lease_reads: false,
            ..timing
        };
        let shorter = Timing {
            election_ticks: 5,
            ..ours
        };
        let faster = Timing {
            tick_us: 5_000,
            ..ours
        };
        assert_eq!(check(ours, ours), Ok(()));
        assert_eq!(
            check(off(shorter), off(ours)),
            Ok(()),
            "no lease on either side"
        );
        assert_eq!(check(Timing::default(), ours), Ok(()), "not said");
        assert_eq!(check(ours, Timing::default()), Ok(()), "not said here");
        for (theirs, expected) in [(shorter, ours), (faster, ours), (off(ours), ours)] {
            let error = check(theirs, expected).expect_err("refused");
            assert_eq!(
                error,
                HandshakeError::TimingMismatch {
                    node_id: NodeId(2),
                    timing: theirs,
                    timing_expected: expected,
                }
            );
        }
        let said = check(shorter, ours).unwrap_err().to_string();
        assert!(
            said.starts_with(
                "node 2 runs with --tick-ms 10 --election-ticks 5 --lease-reads, this node \
                 with --tick-ms 10 --election-ticks 10 --lease-reads"
            ),
            "{said}"
        );
    }
}
