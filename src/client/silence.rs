//! A connection that says nothing while requests wait on it (its node frozen, its machine
//! gone, the network to it cut): the other members are asked who leads its groups, and where
//! one names another leader the client stops waiting on it.

use std::time::Duration;

use crate::proto::status::{CoreRows, GroupRow, decode_status, encode_status_request};
use crate::proto::topology::{Topology, client_address};
use crate::wire::{FrameEncoder, Timing};

use super::conn::exchange;
use super::session::join_all;

/// How long a connection may say nothing while requests wait on it before the other members
/// are asked about it: the cluster's election timeout, the earliest its followers may elect
/// another leader (200 ms where the layout does not say it; from 20 ms to a minute, whatever
/// a broken node's layout says).
pub(super) fn silence_allowed(timing: Timing) -> Duration {
    let said = Duration::from_micros(u64::from(timing.tick_us) * u64::from(timing.election_ticks));
    match said.is_zero() {
        true => Duration::from_millis(200),
        false => said.clamp(Duration::from_millis(20), Duration::from_secs(60)),
    }
}

/// How often an attempt that waits past an election timeout (`allowed`) looks at the
/// silence of its connections.
pub(super) fn look_every(allowed: Duration) -> Duration {
    allowed / 4
}

/// The wait between the first asking about a connection's silence and the next, and how
/// long the members have to answer each (half an election timeout).
pub(super) fn first_ask_wait(allowed: Duration) -> Duration {
    allowed / 2
}

/// The longest wait between askings about one connection: askings that found its node still
/// leading double the wait up to this (two election timeouts: a leader whose disk stopped
/// hands its groups over after a second, and its clients should learn of it soon after).
pub(super) fn ask_wait_most(allowed: Duration) -> Duration {
    allowed * 2
}

/// How long a dial of `node` may take: an election timeout (`allowed`) where this client gave
/// a connection to it up lately (`given_up_lately`: its machine may be gone, and followers
/// that have not noticed yet send clients back to it), else at least 1.5 s (a SYN lost and
/// sent again after 1 s, a client farther than an election timeout, a slow name lookup).
pub(super) fn dial_patience(allowed: Duration, given_up_lately: bool) -> Duration {
    match given_up_lately {
        true => allowed,
        false => allowed.max(Duration::from_millis(1_500)),
    }
}

/// How long after the client gave a node's connection up it counts as given up lately: four
/// election timeouts, enough for the elections of the groups it led.
pub(super) fn given_up_for(allowed: Duration) -> Duration {
    allowed * 4
}

/// The wait before the next probe of a place found cut off, after a probe found it still
/// cut off (see `cut_off::CutOffs::probed`): twice the last (`last`; four election timeouts
/// at first), up to fifty election timeouts (`allowed`).
pub(super) fn next_window(last: Duration, allowed: Duration) -> Duration {
    (last * 2).clamp(given_up_for(allowed), allowed * 50)
}

/// Whether the node at `address` answers a `status` request within `patience`: a probe of a
/// node found cut off, sent beside the requests that go round it (trying it with them cost
/// them an election timeout or so at each window's end).
pub(super) async fn reachable(address: &str, patience: Duration) -> bool {
    let mut encoder = FrameEncoder::new();
    encode_status_request(&mut encoder).expect("an empty frame fits");
    exchange(address, &encoder, patience, patience, decode_status)
        .await
        .is_ok()
}

/// A group that the members say the silent node still leads.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StillLeads {
    pub group: u32,
    pub term: u64,
    pub told_by: u64,
}

/// One of `groups` that the answer of the highest term says `silent` still leads (the other
/// members hear from it: a cut between this client and it, not between it and its peers);
/// None where none says so.
pub(super) fn still_leads(answers: &[CoreRows], groups: &[u32], silent: u64) -> Option<StillLeads> {
    groups.iter().find_map(|&group| {
        let (row, told_by) = newest_row(answers, group)?;
        (row.leader == silent).then_some(StillLeads {
            group,
            term: row.term,
            told_by,
        })
    })
}

/// Why the client stops waiting on `silent`, silent for `silence`, which other members say
/// still leads (`lead`).
pub(super) fn cut_off_reason(silent: u64, silence: Duration, lead: &StillLeads) -> String {
    let StillLeads {
        group,
        term,
        told_by,
    } = lead;
    format!(
        "node {silent} said nothing for {} ms while requests waited, while other members hear \
         it lead (group {group}, term {term}, as node {told_by} says): this client cannot \
         reach it; its requests go through another member, which forwards them",
        silence.as_millis()
    )
}

/// A group that another member says is led by a node other than the silent one.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Moved {
    pub group: u32,
    pub leader: u64,
    pub term: u64,
    pub told_by: u64,
}

/// Why the client stops waiting on `silent`, silent for `silence`: the groups `moved` (not
/// empty), at most three named.
pub(super) fn reason(silent: u64, silence: Duration, moved: &[Moved]) -> String {
    let mut named: Vec<String> = (moved.iter().take(3))
        .map(|m| {
            let Moved {
                group,
                leader,
                term,
                told_by,
            } = m;
            format!("group {group}: node {leader}, term {term}, as node {told_by} says")
        })
        .collect();
    if moved.len() > 3 {
        named.push(format!("and {} more", moved.len() - 3));
    }
    format!(
        "node {silent} said nothing for {} ms while requests waited, and other nodes lead some \
         of their groups now ({})",
        silence.as_millis(),
        named.join("; ")
    )
}

/// For each of `groups`, the leader that the answer of the highest term names, where that is
/// a node other than `silent`: none where an election is on, where it still leads, or where
/// a member cut off from the others names an older leader than another member does.
pub(super) fn moved(answers: &[CoreRows], groups: &[u32], silent: u64) -> Vec<Moved> {
    let mut moved = Vec::new();
    for &group in groups {
        if let Some((row, told_by)) = newest_row(answers, group)
            && row.leader != 0
            && row.leader != silent
        {
            moved.push(Moved {
                group,
                leader: row.leader,
                term: row.term,
                told_by,
            });
        }
    }
    moved
}

/// Of the answers' rows for `group`, the one of the newest term, and who said it; of those,
/// one that names a leader, the leader's own first.
fn newest_row(answers: &[CoreRows], group: u32) -> Option<(&GroupRow, u64)> {
    let rows = answers.iter().flat_map(|core| {
        (core.groups.iter())
            .filter(move |row| row.group == group)
            .map(move |row| (row, core.node_id))
    });
    rows.max_by_key(|&(row, told_by)| (row.term, row.leader != 0, row.leader == told_by))
}

/// The state of core `core`'s groups, from every member but `silent`, all asked at once,
/// each on its own connection, within `timeout`: the answers that came.
pub(super) async fn ask_others(
    topology: &Topology,
    silent: u64,
    core: u16,
    timeout: Duration,
) -> Vec<CoreRows> {
    let mut encoder = FrameEncoder::new();
    encode_status_request(&mut encoder).expect("an empty frame fits");
    let addresses = (topology.members.iter())
        .filter(|(node, _)| *node != silent)
        .filter_map(|(_, base)| client_address(base, core));
    let asked = addresses
        .map(|address| {
            let encoder = &encoder;
            async move { exchange(&address, encoder, timeout, timeout, decode_status).await }
        })
        .collect();
    join_all(asked).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::status::GroupRow;

    fn core(node_id: u64, rows: &[(u32, u64, u64)]) -> CoreRows {
        let groups = rows
            .iter()
            .map(|&(group, leader, term)| GroupRow {
                group,
                role: if leader == node_id {
                    "leader"
                } else {
                    "follower"
                },
                leader,
                term,
                commit: 0,
                applied: 0,
                last_index: 0,
                peers: Vec::new(),
                voters: vec![1, 2, 3],
                learners: Vec::new(),
                joint: false,
                quiet: false,
            })
            .collect();
        CoreRows {
            node_id,
            core: 0,
            groups,
            refuses_writes: None,
            clients_relay_through: Vec::new(),
            peers_clients_relay: Vec::new(),
        }
    }

    #[test]
    fn a_group_moved_where_the_newest_term_names_another_leader() {
        // Node 1 is silent. Group 0: node 2 leads it in term 6 (node 3 heard of it). Group 2:
        // node 3 still names node 1, and node 2 knows no leader, both in term 5.
        let answers = [
            core(2, &[(0, 2, 6), (2, 0, 5)]),
            core(3, &[(0, 2, 6), (2, 1, 5)]),
        ];
        let found = moved(&answers, &[0, 2], 1);
        let want = Moved {
            group: 0,
            leader: 2,
            term: 6,
            told_by: 2,
        };
        assert_eq!(found, [want]);
    }

    /// Goal: the client takes a silent node for cut off from it (not from its peers) only
    /// where the newest term's answer names it as the leader. Method: group 2 of the first
    /// test (node 3 names node 1 in term 5, node 2 knows no leader); node 2 naming node 1 in
    /// an older term than node 3's election; a group moved.
    #[test]
    fn a_silent_node_still_leads_where_the_newest_term_names_it() {
        let answers = [
            core(2, &[(0, 2, 6), (2, 0, 5)]),
            core(3, &[(0, 2, 6), (2, 1, 5)]),
        ];
        let want = StillLeads {
            group: 2,
            term: 5,
            told_by: 3,
        };
        assert_eq!(still_leads(&answers, &[0, 2], 1), Some(want));
        assert_eq!(still_leads(&answers, &[0], 1), None);
        let electing = [core(2, &[(0, 1, 5)]), core(3, &[(0, 0, 6)])];
        assert_eq!(still_leads(&electing, &[0], 1), None);
        assert_eq!(still_leads(&[], &[0], 1), None);
    }

    /// Goal: a node found cut off again soon after a window ended is tried again less and
    /// less often, from four election timeouts to fifty.
    #[test]
    fn cut_off_windows_double_from_four_to_fifty_election_timeouts() {
        let allowed = Duration::from_millis(200);
        let first = given_up_for(allowed);
        assert_eq!(first, Duration::from_millis(800));
        let windows: Vec<u128> = std::iter::successors(Some(first), |&w| {
            Some(next_window(w, allowed)).filter(|&next| next != w)
        })
        .map(|w| w.as_millis())
        .collect();
        assert_eq!(windows, [800, 1_600, 3_200, 6_400, 10_000]);
    }

    #[test]
    fn an_older_term_that_names_another_leader_is_not_taken() {
        // Node 3, cut off since term 4, names node 2; node 2 says node 1 leads, in term 5.
        let answers = [core(3, &[(0, 2, 4)]), core(2, &[(0, 1, 5)])];
        assert_eq!(moved(&answers, &[0], 1), []);
        // In an election (no leader known in the newest term) nothing moved either.
        let answers = [core(3, &[(0, 2, 4)]), core(2, &[(0, 0, 5)])];
        assert_eq!(moved(&answers, &[0], 1), []);
        // No answer, or none about the group: nothing to go on.
        assert_eq!(moved(&[], &[0], 1), []);
        assert_eq!(moved(&[core(2, &[(1, 2, 9)])], &[0], 1), []);
    }

    #[test]
    fn the_reason_names_at_most_three_groups() {
        let moved = |group| Moved {
            group,
            leader: 2,
            term: 7,
            told_by: 3,
        };
        let one = reason(1, Duration::from_millis(412), &[moved(0)]);
        assert_eq!(
            one,
            "node 1 said nothing for 412 ms while requests waited, and other nodes lead some of \
             their groups now (group 0: node 2, term 7, as node 3 says)"
        );
        let five = reason(1, Duration::from_millis(412), &[0, 1, 2, 3, 4].map(moved));
        assert!(
            five.ends_with("group 2: node 2, term 7, as node 3 says; and 2 more)"),
            "{five}"
        );
    }

    #[test]
    fn the_waits_keep_their_order() {
        let allowed = Duration::from_millis(200);
        assert!(look_every(allowed) < first_ask_wait(allowed));
        assert!(first_ask_wait(allowed) < ask_wait_most(allowed));
        assert!(ask_wait_most(allowed) < given_up_for(allowed));
        assert_eq!(dial_patience(allowed, true), allowed);
        assert_eq!(dial_patience(allowed, false), Duration::from_millis(1_500));
        assert_eq!(dial_patience(allowed * 10, false), allowed * 10);
    }

    #[test]
    fn the_silence_allowed_is_the_election_timeout() {
        let timing = |tick_us, election_ticks| Timing {
            tick_us,
            election_ticks,
            lease_reads: false,
        };
        assert_eq!(
            silence_allowed(timing(10_000, 20)),
            Duration::from_millis(200)
        );
        assert_eq!(silence_allowed(timing(0, 0)), Duration::from_millis(200));
        assert_eq!(silence_allowed(timing(1_000, 3)), Duration::from_millis(20));
        assert_eq!(
            silence_allowed(timing(u32::MAX, u32::MAX)),
            Duration::from_secs(60)
        );
    }
}
