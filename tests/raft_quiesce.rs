//! Stories of quiet groups (`raft::Config::quiesce`): an idle group stops its timers and its
//! messages, and wakes for a write, a read, a follower that missed the word, or a leader
//! whose node went silent or restarted. Each drives the simulator's cluster, whose nodes
//! wake their groups as a core does (`cohort::sim::Liveness`); its safety checker runs under
//! every story.

use cohort::raft::{NodeId, Role};
use cohort::sim::Cluster;

const SEED: u64 = 11;

fn quiet_cluster(voters: u64) -> Cluster {
    Cluster::new(
        voters,
        0,
        SEED,
        Box::new(|id| {
            let mut config = Cluster::test_config(id);
            config.quiesce = true;
            config
        }),
    )
}

/// Tick until some node leads, and everything it holds is committed everywhere.
fn elect(cluster: &mut Cluster) -> NodeId {
    for _ in 0..500 {
        if let Some(leader) = cluster.leader() {
            return leader;
        }
        cluster.tick_all(1).unwrap();
    }
    panic!("no leader after 500 ticks");
}

/// Whether every node that is up is quiet.
fn all_quiet(cluster: &Cluster) -> bool {
    (cluster.ids().into_iter())
        .filter(|&id| cluster.node(id).is_up())
        .all(|id| cluster.replica(id).is_quiesced())
}

/// Ticks until every node that is up is quiet; panics after `ticks`.
fn tick_until_quiet(cluster: &mut Cluster, ticks: u32) {
    for _ in 0..ticks {
        if all_quiet(cluster) {
            return;
        }
        cluster.tick_all(1).unwrap();
    }
    let states: Vec<_> = (cluster.ids().into_iter())
        .map(|id| {
            (
                id,
                cluster.replica(id).role(),
                cluster.replica(id).is_quiesced(),
            )
        })
        .collect();
    panic!("not all quiet after {ticks} ticks: {states:?}");
}

/// A cluster of `voters` quiet nodes, its leader elected, everything committed, all quiet.
fn led_and_quiet(voters: u64) -> (Cluster, NodeId) {
    let mut cluster = quiet_cluster(voters);
    let leader = elect(&mut cluster);
    cluster.stabilize().unwrap();
    tick_until_quiet(&mut cluster, 20);
    (cluster, leader)
}

/// Ticks until `id` is no longer quiet, for at most three election timeouts.
fn tick_until_awake(cluster: &mut Cluster, id: NodeId) {
    for _ in 0..3 * election_timeout() {
        if !cluster.replica(id).is_quiesced() {
            return;
        }
        cluster.tick_all(1).unwrap();
    }
}

fn election_timeout() -> u32 {
    Cluster::test_config(NodeId(1)).election_timeout_ticks
}

/// Goal: an idle group goes quiet (no message for many election timeouts, no election), a
/// write wakes it and commits everywhere, and it goes quiet again.
#[test]
fn an_idle_group_goes_quiet_and_a_write_wakes_it() {
    let mut cluster = quiet_cluster(3);
    let leader = elect(&mut cluster);
    cluster.propose(leader, b"x=1").unwrap();
    cluster.stabilize().unwrap();
    tick_until_quiet(&mut cluster, 20);
    let (sent, term) = (cluster.network.sent, cluster.replica(leader).term());
    cluster.tick_all(10 * election_timeout()).unwrap();
    assert_eq!(cluster.network.sent, sent, "a quiet group sends nothing");
    assert_eq!(cluster.replica(leader).term(), term);
    assert!(all_quiet(&cluster));

    cluster.propose(leader, b"x=2").unwrap();
    cluster.stabilize().unwrap();
    let last = cluster.replica(leader).last_index();
    for id in cluster.ids() {
        assert_eq!(
            cluster.replica(id).commit(),
            last,
            "node {id} has the write"
        );
        assert!(!cluster.replica(id).is_quiesced(), "node {id} woke");
    }
    tick_until_quiet(&mut cluster, 20);
    assert_eq!(cluster.replica(leader).term(), term, "no election");
}

/// Goal: a linearizable read on a quiet leader is served (it heartbeats a round again).
#[test]
fn a_read_on_a_quiet_leader_wakes_it_and_is_answered() {
    let (mut cluster, leader) = led_and_quiet(3);
    let ctx = cluster.read(leader).unwrap();
    cluster.stabilize().unwrap();
    cluster.tick_all(2).unwrap();
    assert!(
        cluster.node(leader).reads_answered.contains_key(&ctx),
        "the read is answered"
    );
}

/// Goal: when the quiet leader's node falls silent (cut off from both followers), the
/// followers' nodes notice and they elect one of them, within a few election timeouts;
/// without the wake the group would wait for the cut to heal.
#[test]
fn followers_of_a_quiet_leader_cut_off_elect_another() {
    let (mut cluster, old) = led_and_quiet(3);
    cluster.isolate(old);
    let timeout = election_timeout();
    let mut new = None;
    for _ in 0..5 * timeout {
        cluster.tick_all(1).unwrap();
        new = cluster.leaders().into_iter().find(|&id| id != old);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the followers elect a leader while the old one is cut off");
    assert!(cluster.replica(new).term() > cluster.replica(old).term());
    cluster.propose(new, b"after").unwrap();
    cluster.stabilize().unwrap();
    cluster.heal();
    cluster.tick_all(2 * timeout).unwrap();
    assert_eq!(
        cluster.replica(old).role(),
        Role::Follower,
        "the old leader stepped down"
    );
}

/// Goal: a quiet leader that crashes and restarts at once (its peers never find it silent,
/// they see a new connection) is replaced: the group has a leader again.
#[test]
fn a_quiet_leader_that_restarts_at_once_is_replaced() {
    let (mut cluster, old) = led_and_quiet(3);
    let term = cluster.replica(old).term();
    cluster.crash(old);
    cluster.restart(old).unwrap();
    let timeout = election_timeout();
    for _ in 0..6 * timeout {
        cluster.tick_all(1).unwrap();
        if cluster.leader().is_some() {
            break;
        }
    }
    let leader = cluster.leader().expect("a leader again");
    assert!(cluster.replica(leader).term() > term);
}

/// Goal: a follower that misses the quieting heartbeat keeps its timer, and its pre-vote
/// at the timeout wakes the leader instead of deposing it: no new term, and the group goes
/// quiet again.
#[test]
fn a_follower_that_missed_the_word_wakes_the_leader_without_an_election() {
    let mut cluster = quiet_cluster(3);
    let leader = elect(&mut cluster);
    cluster.stabilize().unwrap();
    let follower = (cluster.ids().into_iter())
        .find(|&id| id != leader)
        .unwrap();
    // Cut the leader's messages to one follower while the group quiets.
    cluster.network.cut_link(leader, follower);
    for _ in 0..20 {
        cluster.tick_all(1).unwrap();
        if cluster.replica(leader).is_quiesced() {
            break;
        }
    }
    assert!(
        cluster.replica(leader).is_quiesced(),
        "the leader went quiet"
    );
    assert!(
        !cluster.replica(follower).is_quiesced(),
        "it never heard the word"
    );
    cluster.heal();
    let term = cluster.replica(leader).term();
    let timeout = election_timeout();
    tick_until_quiet(&mut cluster, 5 * timeout);
    assert_eq!(cluster.replica(leader).term(), term, "no election");
    assert_eq!(cluster.leader(), Some(leader));
}

/// Goal: a connection between the leader's node and its followers' that breaks and comes
/// back (no restart) wakes the group on both sides, and it goes quiet again in the same term.
/// Woken alone, the followers would time out with the leader still quiet, and one would
/// elect itself with the other's vote.
#[test]
fn a_renewed_connection_without_a_restart_causes_no_election() {
    let (mut cluster, leader) = led_and_quiet(3);
    let term = cluster.replica(leader).term();
    let ids = cluster.ids();
    cluster.liveness.restarted(leader, ids.iter().copied());
    for &follower in ids.iter().filter(|&&id| id != leader) {
        cluster
            .liveness
            .restarted(follower, std::iter::once(leader));
    }
    cluster.tick_all(1).unwrap();
    assert!(!all_quiet(&cluster), "the group woke");
    cluster.tick_all(5 * election_timeout()).unwrap();
    tick_until_quiet(&mut cluster, 20);
    for id in ids {
        assert_eq!(cluster.replica(id).term(), term, "node {id}: no election");
    }
}

/// Goal: when a member's node falls silent while the group is quiet, the leader wakes and
/// stays awake: Raft watches the member again (CheckQuorum, and the answers `cohort status`
/// and the membership guards read say it is silent), and the group does not go quiet
/// while it stays so.
#[test]
fn a_member_that_falls_silent_wakes_the_quiet_leader_for_good() {
    let (mut cluster, leader) = led_and_quiet(3);
    let dead = (cluster.ids().into_iter())
        .find(|&id| id != leader)
        .unwrap();
    cluster.crash(dead);
    // Woken when its node finds the dead one's silent, it says so at once (Raft alone would
    // take an election timeout or two), and the live one answers.
    tick_until_awake(&mut cluster, leader);
    let status = cluster.replica(leader).status();
    assert!(!status.quiesced, "woken by the silence");
    let answers = |status: &cohort::raft::Status, id| {
        status.peers.iter().find(|p| p.id == id).unwrap().answers
    };
    let live = (cluster.ids().into_iter())
        .find(|&id| id != leader && id != dead)
        .unwrap();
    assert!(
        !answers(&status, dead),
        "node {dead} is said to be silent at once"
    );
    assert!(answers(&status, live), "node {live} answers");
    cluster.tick_all(4 * election_timeout()).unwrap();
    let status = cluster.replica(leader).status();
    assert_eq!(status.role, Role::Leader, "a majority is left");
    assert!(!status.quiesced, "awake while a member is silent");
    let peer = status.peers.iter().find(|p| p.id == dead).unwrap();
    assert!(!peer.answers, "node {dead} is said to be silent");
}

/// Goal: two members that fall silent together are both said silent when the quiet leader
/// wakes (review 317: only the first was, the leader being awake by the second, and a
/// membership guard that counts answering voters trusted the other).
#[test]
fn two_members_that_fall_silent_together_are_both_said_silent() {
    let (mut cluster, leader) = led_and_quiet(5);
    let others: Vec<NodeId> = (cluster.ids().into_iter())
        .filter(|&id| id != leader)
        .collect();
    let dead = [others[0], others[1]];
    for id in dead {
        cluster.crash(id);
    }
    tick_until_awake(&mut cluster, leader);
    let status = cluster.replica(leader).status();
    assert!(!status.quiesced, "woken by the silence");
    for peer in &status.peers {
        assert_eq!(
            peer.answers,
            !dead.contains(&peer.id),
            "node {}: {status:?}",
            peer.id
        );
    }
}
