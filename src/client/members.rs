//! `cohort members`: change a node's membership in every group (one group at a time, each
//! at its leader), wait for a learner to catch up, and read the membership back.

use std::time::Duration;

use crate::proto::members::{
    MemberChange, MemberOp, MemberOutcome, decode_member_outcome, encode_member_change,
};
use crate::proto::status::{CoreRows, decode_status, encode_status_request};
use crate::proto::topology::{Topology, client_address};
use crate::wire::FrameEncoder;

use super::conn::{exchange, exchange_noting_send};
use super::session::{ClientOptions, fetch_topology, fetch_topology_like};

/// How long to wait between two asks while a group is busy (a change under way, a learner
/// catching up, a leader handing over).
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Why a membership change did not finish in every group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipError {
    pub message: String,
    /// A group's leader said the node is in none of its configurations: a promote of a node
    /// that was removed, or a remove of a node that no group has.
    pub not_member: bool,
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<MembershipError> for String {
    fn from(error: MembershipError) -> String {
        error.message
    }
}

impl From<String> for MembershipError {
    fn from(message: String) -> MembershipError {
        MembershipError {
            message,
            not_member: false,
        }
    }
}

/// Make `op` on `node` in every group of the cluster; `progress` hears each group's outcome.
/// Returns the last group's configuration (voters, learners). Stops at the first group that
/// refuses, or that does not finish within the options' request timeout. A remove is done in
/// a group whose leader says the node is not a member there, and fails only if every group
/// says so (nothing was removed: a mistyped id, or one removed before).
pub async fn change_membership(
    options: &ClientOptions,
    node: u64,
    op: MemberOp,
    progress: impl FnMut(u32, &MemberOutcome),
) -> Result<(Vec<u64>, Vec<u64>), MembershipError> {
    change_membership_while(options, node, op, progress, || true).await
}

/// As [`change_membership`], asking `go_on` before each group: once it says no, no other
/// group is asked, and the change fails saying so.
pub async fn change_membership_while(
    options: &ClientOptions,
    node: u64,
    op: MemberOp,
    mut progress: impl FnMut(u32, &MemberOutcome),
    go_on: impl Fn() -> bool,
) -> Result<(Vec<u64>, Vec<u64>), MembershipError> {
    let mut topology = fetch_topology(&options.seeds, options.attempt_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut last = (Vec::new(), Vec::new());
    let mut strangers = 0;
    for group in 0..topology.groups {
        if !go_on() {
            let groups = topology.groups;
            return Err(format!("given up before group {group} of {groups} was asked").into());
        }
        let change = MemberChange {
            group,
            node,
            op: op.clone(),
        };
        let (outcome, maybe_done) = change_group(options, &mut topology, &change).await?;
        if let MemberOutcome::NotMember { why, .. } = &outcome
            && op != MemberOp::Remove
        {
            return Err(MembershipError {
                message: format!("group {group}: {why}"),
                not_member: true,
            });
        }
        progress(group, &outcome);
        match outcome {
            MemberOutcome::Done { voters, learners } => last = (voters, learners),
            // Removed, after an ask that may have removed it: this remove did. A node the
            // group never held is a stranger however the asks went (a mistyped id).
            MemberOutcome::NotMember { removed: true, .. } if maybe_done => {}
            MemberOutcome::NotMember { .. } => strangers += 1,
            MemberOutcome::NotLeader { .. }
            | MemberOutcome::Failed(_)
            | MemberOutcome::Busy(_)
            | MemberOutcome::UnderWay(_) => {
                unreachable!("change_group answers done or not a member")
            }
        }
    }
    if strangers == topology.groups {
        return Err(MembershipError {
            message: format!(
                "node {node} is in no group (removed already, or never added): nothing to remove"
            ),
            not_member: true,
        });
    }
    Ok(last)
}

/// Take `node` out of `groups` only (as [`change_membership`] does in every group): a node
/// whose join failed undoes what its join did, and nothing else.
pub async fn remove_from(options: &ClientOptions, node: u64, groups: &[u32]) -> Result<(), String> {
    let mut topology = fetch_topology(&options.seeds, options.attempt_timeout)
        .await
        .map_err(|e| e.to_string())?;
    for &group in groups {
        let change = MemberChange {
            group,
            node,
            op: MemberOp::Remove,
        };
        change_group(options, &mut topology, &change).await?;
    }
    Ok(())
}

/// One group's change: ask its leader (following hints), ask again while it is busy. With
/// the outcome, whether an ask before it may have made the change (it went unanswered, or
/// was refused as busy: a leader that stops answers so a change it already committed), so
/// that a remove then answered "not a member" is not taken for one that found nothing.
async fn change_group(
    options: &ClientOptions,
    topology: &mut Topology,
    change: &MemberChange,
) -> Result<(MemberOutcome, bool), String> {
    let group = change.group;
    let deadline = crate::clock::deadline_in(options.request_timeout);
    let mut encoder = FrameEncoder::new();
    encode_member_change(&mut encoder, change).map_err(|e| e.to_string())?;
    // First the member that told the layout: it answers (the lowest id may be a member down,
    // whose connection would take the attempt, found in review).
    let mut ask = topology.node_id;
    let mut last_error = String::from("no member was asked in time");
    let mut hinted = false;
    let mut maybe_done = false;
    while crate::clock::now() < deadline {
        let next = |topology: &Topology, node: u64| {
            let members = &topology.members;
            let at = members.iter().position(|(id, _)| *id == node).unwrap_or(0);
            members[(at + 1) % members.len()].0
        };
        let Some(address) = topology.address_of(ask, group) else {
            // A hint named a node this client has not heard of (a new member), or the node
            // that told the layout is not in it (a removed one, found in review: asked again
            // and again without a pause, and called "the leader").
            last_error = if ask == topology.node_id {
                format!("node {ask} told the layout but is not in it (removed?)")
            } else {
                format!("node {ask}, named the leader, is not in the layout")
            };
            refresh(options, topology).await;
            if topology.address_of(ask, group).is_none() {
                ask = match topology.address_of(topology.node_id, group) {
                    Some(_) => topology.node_id,
                    None => topology.members.first().map_or(ask, |(id, _)| *id),
                };
            }
            glommio::timer::sleep(BUSY_PAUSE).await;
            continue;
        };
        // The leader answers once the change is done: two commits, or a handover.
        let left = deadline.saturating_duration_since(crate::clock::now());
        let timeout = options.attempt_timeout;
        let sent = std::cell::Cell::new(false);
        let asked = exchange_noting_send(
            &address,
            &encoder,
            (timeout.min(left), timeout.saturating_mul(5).min(left)),
            decode_member_outcome,
            &sent,
        );
        match asked.await {
            Ok(done @ (MemberOutcome::Done { .. } | MemberOutcome::NotMember { .. })) => {
                return Ok((done, maybe_done));
            }
            Ok(MemberOutcome::NotLeader { leader }) if leader != 0 && leader != ask => {
                ask = leader;
                last_error = format!("hints that node {leader} leads group {group}");
                // The first hint is followed at once, later ones after the pause: hints out
                // of date while an election is on may send the request round between nodes.
                if !std::mem::replace(&mut hinted, true) {
                    continue;
                }
            }
            Ok(MemberOutcome::NotLeader { .. }) => {
                last_error = format!("node {ask} knows no leader of group {group}");
                ask = next(topology, ask);
            }
            // Refused, nothing taken (found in review: a busy answer counted as a remove
            // that may have been made, and a remove of a node removed long before passed as
            // done when its leader was catching up).
            Ok(MemberOutcome::Busy(why)) => last_error = format!("node {ask}: {why}"),
            Ok(MemberOutcome::UnderWay(why)) => {
                maybe_done = true;
                last_error = format!("node {ask}: {why}");
            }
            Ok(MemberOutcome::Failed(why)) => return Err(format!("group {group}: {why}")),
            Err(error) => {
                // An ask that never reached the node (refused, or no connection in time)
                // carried nothing; one sent may have (found in review: a leader down before
                // the ask counted as a remove made).
                maybe_done |= sent.get();
                last_error = format!("node {ask} ({address}): {error}");
                ask = next(topology, ask);
                refresh(options, topology).await;
            }
        }
        glommio::timer::sleep(BUSY_PAUSE).await;
    }
    Err(format!(
        "group {group}: not done within {:?} (last: {last_error})",
        options.request_timeout
    ))
}

/// Ask the members again who the members are.
async fn refresh(options: &ClientOptions, topology: &mut Topology) {
    let mut seeds: Vec<String> = topology.members.iter().map(|m| m.1.clone()).collect();
    seeds.extend(options.seeds.iter().cloned());
    if let Ok(fresh) = fetch_topology_like(&seeds, options.attempt_timeout, topology).await {
        *topology = fresh;
    }
}

/// The membership as the first seed that answers sees it: its topology and the state of its
/// groups (every core's, asked at once: in turn, a node whose cores accept and say nothing
/// took a timeout per core, found in review), all within the request timeout.
pub async fn membership_view(options: &ClientOptions) -> Result<(Topology, Vec<CoreRows>), String> {
    let deadline = crate::clock::deadline_in(options.request_timeout);
    let left = || deadline.saturating_duration_since(crate::clock::now());
    let topology = fetch_topology(&options.seeds, options.attempt_timeout.min(left()))
        .await
        .map_err(|e| e.to_string())?;
    let base = topology
        .members
        .iter()
        .find(|(id, _)| *id == topology.node_id)
        .map(|(_, base)| base.clone())
        .ok_or_else(|| {
            let node = topology.node_id;
            format!("node {node} is not a member (removed, or still joining): ask another member")
        })?;
    let mut encoder = FrameEncoder::new();
    encode_status_request(&mut encoder).expect("an empty frame fits");
    let encoder = std::rc::Rc::new(encoder);
    let timeout = options.attempt_timeout.min(left());
    let node = topology.node_id;
    let mut asked = Vec::new();
    for core in 0..topology.cores {
        let address = client_address(&base, core).ok_or_else(|| format!("bad address {base}"))?;
        let encoder = std::rc::Rc::clone(&encoder);
        asked.push(glommio::spawn_local(async move {
            exchange(&address, &encoder, timeout, timeout, decode_status)
                .await
                .map_err(|e| format!("node {node} core {core} ({address}): {e}"))
        }));
    }
    let mut rows = Vec::new();
    for answer in asked {
        rows.push(answer.await?);
    }
    Ok((topology, rows))
}

/// The table `cohort members list` prints: each node, its address, and in how many groups it
/// votes or learns.
pub fn render_membership(topology: &Topology, cores: &[CoreRows]) -> String {
    let groups: Vec<_> = cores.iter().flat_map(|c| &c.groups).collect();
    let mut nodes: Vec<u64> = groups
        .iter()
        .flat_map(|g| g.voters.iter().chain(&g.learners).copied())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let total = groups.len();
    let mut out = format!(
        "as node {} sees it ({total} groups)\nnode  address                 voter in  learner in\n",
        topology.node_id
    );
    for node in nodes {
        let address = topology
            .members
            .iter()
            .find(|(id, _)| *id == node)
            .map_or("?", |(_, base)| base.as_str());
        let voter = groups.iter().filter(|g| g.voters.contains(&node)).count();
        let learner = groups.iter().filter(|g| g.learners.contains(&node)).count();
        out += &format!("{node:<5} {address:<23} {voter:>3}/{total:<5} {learner:>3}/{total}\n");
    }
    let joint: Vec<String> = groups
        .iter()
        .filter(|g| g.joint)
        .map(|g| g.group.to_string())
        .collect();
    if !joint.is_empty() {
        out += &format!(
            "changing (joint configuration): groups {}\n",
            joint.join(", ")
        );
    }
    out
}
