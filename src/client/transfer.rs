//! `cohort leader transfer`: find a group's leader and ask it to hand the group to a node;
//! return once the handover completed or failed.

use std::time::Duration;

use crate::proto::transfer::{TransferOutcome, decode_transfer_outcome, encode_transfer_request};
use crate::wire::FrameEncoder;

use super::conn::exchange_noting_send;
use super::session::{Client, ClientOptions, fetch_topology_like};
use crate::proto::topology::Topology;

/// Hand `group` to node `to`; Ok(how long it took) once `to` leads it.
pub async fn transfer_leader(
    options: ClientOptions,
    group: u32,
    to: u64,
) -> Result<Duration, String> {
    let deadline = crate::clock::deadline_in(options.request_timeout);
    let attempt_timeout = options.attempt_timeout;
    let seeds = options.seeds.clone();
    let client = Client::connect(options).await.map_err(|e| e.to_string())?;
    let mut topology = client.topology().clone();
    if group >= topology.groups {
        return Err(format!(
            "group {group} does not exist (the cluster has groups 0 to {})",
            topology.groups - 1
        ));
    }
    if !topology.members.iter().any(|(id, _)| *id == to) {
        let ids: Vec<String> = topology
            .members
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        return Err(format!(
            "node {to} is not a member (members: {})",
            ids.join(", ")
        ));
    }
    let mut encoder = FrameEncoder::new();
    encode_transfer_request(&mut encoder, group, to).map_err(|e| e.to_string())?;
    let started = crate::clock::now();
    // Ask each member in turn until the leader answers; follow its hints. First the member
    // that told the layout: it answers (the lowest id may be a member down, whose connection
    // would take the attempt, found in review).
    let mut ask = topology.node_id;
    // What stands if learning the layout took the whole time: no member was asked.
    let mut last_error = String::from("no member was asked in time");
    let mut hinted = false;
    let mut layout_fetched_again = false;
    // Whether an ask may have reached a leader that goes on with it (no answer in time, a
    // connection lost after the ask): then giving up does not mean it failed.
    let mut maybe_going_on = false;
    while crate::clock::now() < deadline {
        let Some(address) = topology.address_of(ask, group) else {
            let known = topology.members.iter().any(|(id, _)| *id == ask);
            if known {
                // Only a layout from a broken node lists a member whose address does not
                // make a client's.
                last_error = format!("node {ask} has no client address in the layout");
            } else if !std::mem::replace(&mut layout_fetched_again, true) {
                // A node a hint named that the layout lacks: one that joined since it was
                // fetched. Fetched again, once.
                let left = deadline.saturating_duration_since(crate::clock::now());
                let mut asked: Vec<String> = topology.members.iter().map(|m| m.1.clone()).collect();
                asked.extend(seeds.iter().cloned());
                match fetch_topology_like(&asked, attempt_timeout.min(left), &topology).await {
                    Ok(fresh) => {
                        topology = fresh;
                        last_error = format!("node {ask}, named the leader, joined since");
                        continue;
                    }
                    Err(error) => {
                        last_error = format!(
                            "node {ask}, named the leader, is not in the layout fetched at \
                             start, and fetching it again failed: {error}"
                        );
                    }
                }
            } else {
                last_error = format!(
                    "node {ask}, named the leader, is not in the cluster's layout as last fetched"
                );
            }
            ask = member_after(&topology, ask);
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // The leader answers when the transfer ends: done, or given up after three tries (a
        // lagging `to` catches up meanwhile).
        let left = deadline.saturating_duration_since(crate::clock::now());
        let sent = std::cell::Cell::new(false);
        let asked = exchange_noting_send(
            &address,
            &encoder,
            (
                attempt_timeout.min(left),
                attempt_timeout.saturating_mul(5).min(left),
            ),
            decode_transfer_outcome,
            &sent,
        );
        match asked.await {
            Ok(TransferOutcome::Done { .. }) => return Ok(started.elapsed()),
            Ok(TransferOutcome::NotLeader { leader }) if leader != 0 && leader != ask => {
                ask = leader;
                last_error = format!("hints that node {leader} leads group {group}");
                // The first hint is followed at once, later ones after the pause: hints out
                // of date while an election is on may send the request round between nodes.
                if !std::mem::replace(&mut hinted, true) {
                    continue;
                }
            }
            Ok(TransferOutcome::NotLeader { .. }) => {
                last_error = format!("node {ask} knows no leader of group {group}");
                ask = member_after(&topology, ask);
            }
            Ok(TransferOutcome::Failed(why)) => return Err(format!("node {ask}: {why}")),
            Err(error) => {
                maybe_going_on |= sent.get();
                last_error = format!("node {ask} ({address}): {error}");
                ask = member_after(&topology, ask);
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    // Found in review: a leader's tries may outlast the client's wait (a slower
    // --tick-ms or --election-ticks), and it hands the group over after the client said it
    // failed.
    let going_on = match maybe_going_on {
        true => format!(
            "; a handover asked may still be under way: `cohort status` shows who leads group \
             {group}"
        ),
        false => String::new(),
    };
    Err(format!("gave up: {last_error}{going_on}"))
}

/// The member listed after `node` in `topology` (the second if `node` is not listed).
fn member_after(topology: &Topology, node: u64) -> u64 {
    let members = &topology.members;
    let at = members.iter().position(|(id, _)| *id == node).unwrap_or(0);
    members[(at + 1) % members.len()].0
}
