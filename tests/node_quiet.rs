//! End to end with quiet groups (`cohort serve` without `--no-quiesce`): three processes on
//! loopback whose idle groups stop their timers, and whose cores keep each other alive.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cohort::cli::local_cluster::NodeFlags;
use cohort::client::ClientOptions;
use cohort::proto::status::CoreRows;
use cohort::proto::topology::group_of;
use common::cluster::{
    GROUPS, eventually, finish, start_with_flags, wait_for_leaders, wait_ms, with_client,
};

/// What the nodes of `bases` that answer say of their groups.
fn status(bases: &[String]) -> Vec<CoreRows> {
    let bases = bases.to_vec();
    cohort::node::on_one_executor("status", move || async move {
        let mut options = ClientOptions::new(bases, 31);
        options.attempt_timeout = Duration::from_millis(300);
        cohort::client::cluster_status(options).await
    })
    .ok()
    .and_then(Result::ok)
    .map(|(rows, _missing)| rows)
    .unwrap_or_default()
}

/// The node that leads `group`, as the nodes of `bases` say, if one does.
fn leader_of(rows: &[CoreRows], group: u32) -> Option<u64> {
    (rows.iter())
        .find(|core| (core.groups.iter()).any(|g| g.group == group && g.role == "leader"))
        .map(|core| core.node_id)
}

/// The groups' terms, by (node, group).
fn terms(rows: &[CoreRows]) -> Vec<(u64, u32, u64)> {
    let rows = rows
        .iter()
        .flat_map(|core| (core.groups.iter()).map(move |g| (core.node_id, g.group, g.term)));
    rows.collect()
}

/// Goal: an idle cluster goes quiet (every group on every node says so) and stays so, in
/// the same terms, for many election timeouts (the cores' keepalives vouch for the quiet
/// leaders); a write wakes its group and is applied, and the group goes quiet again; when
/// the node that leads a quiet group freezes (SIGSTOP: a stalled machine, its connections
/// open and silent), the other two notice its silence and elect one of themselves, which
/// takes writes, and the leaders of the other groups wake to say it is silent. Without the
/// wake on silence the followers would wait on the frozen leader for good; without the
/// keepalives they would find every quiet leader silent.
#[test]
fn quiet_groups_wake_for_a_write_and_elect_another_when_their_leader_freezes() {
    // Elections after a second of silence (100 ticks of 10 ms): a node of a loaded test
    // machine that stalls for a fifth of a second (the default timeout) is not taken for
    // gone, so that an election in the quiet window below means the quiet failed.
    let flags = NodeFlags {
        election_ticks: 100,
        ..NodeFlags::default()
    };
    let mut cluster = start_with_flags("quiet", flags);
    let bases = cluster.bases.clone();
    let all_quiet = |rows: &Vec<CoreRows>| {
        rows.len() == 3
            && (rows.iter()).all(|core| {
                core.groups.len() == GROUPS as usize && core.groups.iter().all(|g| g.quiet)
            })
    };
    // The leader balancer's handovers done (each is an election), the groups go quiet.
    wait_for_leaders(&bases, &[(1, 2), (2, 2), (3, 2)], 30);
    let rows = eventually(|| status(&bases), all_quiet);
    assert!(all_quiet(&rows), "every group quiet: {rows:?}");
    // Three election timeouts, looked at every 100 ms: without the keepalives, each node
    // would find the others silent after one, and its quiet groups would wake (and their
    // leaders heartbeat, or their followers elect) once an election timeout.
    let mut looks = 0;
    for _ in 0..30 {
        wait_ms(100);
        let rows = status(&bases);
        // A node that answers late on a loaded machine is left out of this look.
        if rows.len() == 3 {
            looks += 1;
            assert!(all_quiet(&rows), "still quiet: {rows:?}");
        }
    }
    assert!(looks > 0, "no look at all three nodes");
    let later = eventually(|| status(&bases), |rows| rows.len() == 3);
    assert_eq!(terms(&later), terms(&rows), "no election while quiet");

    let key = (0..)
        .map(|i| format!("quiet-{i}").into_bytes())
        .find(|key| group_of(key, GROUPS) == 0)
        .expect("a key of group 0");
    let put = |bases: &[String], value: &'static [u8]| {
        let key = Bytes::from(key.clone());
        with_client(bases, 5, async move |client| client.put(&key, value).await)
    };
    put(&bases, b"1").expect("a write to a quiet group");
    let rows = eventually(|| status(&bases), all_quiet);
    assert!(all_quiet(&rows), "quiet again after the write: {rows:?}");

    let frozen = leader_of(&rows, 0).expect("group 0 has a leader");
    cluster.pause(frozen);
    let others: Vec<String> = (1..=3u64)
        .filter(|&id| id != frozen)
        .map(|id| bases[(id - 1) as usize].clone())
        .collect();
    let mut elected = None;
    for _ in 0..150 {
        elected = leader_of(&status(&others), 0).filter(|&id| id != frozen);
        if elected.is_some() {
            break;
        }
        wait_ms(100);
    }
    let elected = elected.unwrap_or_else(|| {
        panic!("no node but the frozen {frozen} leads group 0 after 15 s");
    });
    put(&others, b"2").unwrap_or_else(|e| panic!("a write with node {elected} leading: {e}"));
    // The groups the other two lead woke too (their leaders' cores stopped hearing the
    // frozen node, a member of each): each leader says the frozen node is silent, and stays
    // awake to watch it.
    let frozen_said_silent = |rows: &Vec<CoreRows>| {
        let leaders = rows.iter().flat_map(|core| core.groups.iter());
        let leaders: Vec<_> = leaders.filter(|g| g.role == "leader").collect();
        leaders.len() == GROUPS as usize
            && leaders
                .iter()
                .all(|g| !g.quiet && (g.peers.iter()).any(|p| p.node_id == frozen && p.silent))
    };
    let rows = eventually(|| status(&others), frozen_said_silent);
    assert!(
        frozen_said_silent(&rows),
        "node {frozen} said silent: {rows:?}"
    );
    cluster.resume(frozen);
    finish(cluster);
}
