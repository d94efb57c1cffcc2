//! End to end, `serve --join` when things go wrong: a node that cannot run, or belongs to
//! another cluster, or was removed, is never (re)added; a join that fails after the node
//! votes in some group leaves it running; a join cut short finishes after a restart from the
//! data dir while no seed answers.
//!
//! The partition test needs root and iptables (see `common::netfilter`); elsewhere it says it
//! was skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use cohort::cli::local_cluster::{LocalCluster, NodeFlags, free_port_run};
use common::cluster::{cohort_cli, members, start_with, start_with_flags, wait_ms};
use common::netfilter::{self, Partition};

/// A `cohort serve --join` process of a test, killed if the test ends before it does.
struct Joining {
    child: Child,
    log: PathBuf,
}

impl Joining {
    /// Starts node `id` at `base` joining through `seed`, data in `dir/node-{id}`, output in
    /// `dir/node-{id}.log` (appended to), with `extra` flags.
    fn start(dir: &Path, id: u64, base: &str, seed: &str, extra: &[&str]) -> Joining {
        let log = dir.join(format!("node-{id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["serve", "--id", &id.to_string(), "--listen", base])
            .args(["--join", seed])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{id}")))
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cohort runs");
        Joining { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 60 s) until it exits; its status.
    fn exit_status(&mut self) -> ExitStatus {
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            wait_ms(50);
        }
        panic!("still runs after 60 s:\n{}", self.log());
    }

    /// Waits (at most 60 s) until its output holds `line`; panics if it exits first.
    fn wait_for(&mut self, line: &str) {
        for _ in 0..1200 {
            if self.log().contains(line) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) before `{line}`:\n{}", self.log());
            }
            wait_ms(50);
        }
        panic!("never said `{line}` in 60 s:\n{}", self.log());
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        cohort::sys::send_signal(self.child.id(), cohort::sys::Signal::Terminate);
        let status = self.exit_status();
        assert!(status.success(), "{status}:\n{}", self.log());
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `members list` through `via` has a row for node `id`.
fn listed(via: &str, id: u64) -> bool {
    let list = members(&["list"], via);
    list.lines()
        .any(|line| line.split_whitespace().next() == Some(&id.to_string()))
}

/// Runs the join and expects it to fail saying `why`, with node `id` still unlisted.
fn refused(dir: &Path, id: u64, base: &str, seed: &str, extra: &[&str], why: &str) {
    let mut node = Joining::start(dir, id, base, seed, extra);
    let status = node.exit_status();
    let said = node.log();
    assert!(!status.success(), "joined:\n{said}");
    assert!(said.contains(why), "wanted `{why}` in:\n{said}");
    assert!(!listed(seed, id), "node {id} was added:\n{said}");
}

/// Goal: a node that cannot run, that belongs to another cluster, that every peer would
/// refuse, or that was removed is never made a member. Method: on a running cluster, node 4
/// joins with another `--cluster-id`, then with `--lease-reads` (the cluster runs without),
/// then node 5 with its peer port held by another socket (the node waits 10 s for it, then
/// stops, its data dir not made); node 3 is removed and started again with `--join` on its own data dir. Each must
/// exit with the reason, and `members list` must not show it. Removing node 3 again, or node
/// 33, must fail saying it is in no group.
#[test]
fn a_node_that_cannot_run_or_was_removed_is_never_added() {
    let mut cluster = start_with("join-refused", 100_000);
    let (dir, seed) = (cluster.dir.clone(), cluster.bases[0].clone());
    let port = free_port_run(2).unwrap();
    let base = format!("127.0.0.1:{port}");

    let other_cluster = ["--cluster-id", "9"];
    let why = format!(
        "--cluster-id 9 differs from the cluster's {}",
        cluster.cluster_id
    );
    let why = why.as_str();
    refused(&dir, 4, &base, &seed, &other_cluster, why);
    // Every peer would refuse its handshakes: it would be a learner nothing reaches.
    let why = "--election-ticks 20 --lease-reads: with lease reads every node must run";
    refused(&dir, 4, &base, &seed, &["--lease-reads"], why);

    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    refused(&dir, 5, &base, &seed, &[], "cannot listen");
    // Nothing written: a start at a free port is not refused as the node moved.
    assert!(!dir.join("node-5").join("cohort.id").exists());

    cluster.terminate(3).expect("node 3 stops");
    let out = members(&["remove", "--id", "3"], &seed);
    assert!(out.contains("voters [1, 2]"), "{out}");
    let why = "node 3 was removed from the cluster";
    refused(&dir, 3, &cluster.bases[2], &seed, &[], why);

    // Removing it again, or a node that never was, is an error, not "done".
    for id in ["3", "33"] {
        let output = cohort_cli(&["members", "remove", "--id", id, "--nodes", &seed]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "removed node {id}: {stderr}");
        let why = format!("node {id} is in no group");
        assert!(stderr.contains(&why), "{stderr}");
    }
    common::cluster::finish(cluster);
}

/// Goal (tester 290): a node removed from the cluster while it was down, started again as
/// before (its data dir and `--peers`, no `--join`), stops saying it was removed. Its log
/// never had the change, its peers refused its handshakes as an unknown node's and told it
/// nothing, and the largest id dials no peer: it ran on for good, its groups campaigning in
/// vain. Method: a cluster of 2 cores per node (each core must learn it); node 3, the largest
/// id, is stopped, removed, and started again with its own command: it must exit with status
/// 1, saying node 1 or 2 says it was removed, and stay unlisted.
#[test]
fn a_node_removed_while_down_and_started_again_stops_saying_so() {
    let flags = NodeFlags {
        cores: 2,
        ..NodeFlags::default()
    };
    let mut cluster = start_with_flags("removed-while-down", flags);
    let seed = cluster.bases[0].clone();
    cluster.terminate(3).expect("node 3 stops");
    let out = members(&["remove", "--id", "3"], &seed);
    assert!(out.contains("voters [1, 2]"), "{out}");
    cluster.restart(3).expect("node 3 starts again");
    let status = cluster.wait_exit(3, Duration::from_secs(60));
    let said = cluster.log(3);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{said}");
    assert!(
        said.contains("node 3 was removed from the cluster (node "),
        "{said}"
    );
    assert!(!listed(&seed, 3));
    common::cluster::finish(cluster);
}

/// Goal: a join that fails once the node votes in some group leaves it running, and a join cut
/// short finishes after a restart from the data dir. Method: a cluster of 2 cores per node; node
/// 4's core-1 peer port is cut off (the others dial it), so within a 3 s join timeout it is
/// promoted in group 0 (core 0) and not in group 1 (core 1), where the join stops. It must say the
/// join did not finish and keep running. Then it is killed, the cut healed, its only seed (node 1)
/// stopped, and it is started again with the same command: it starts from its data dir, and once
/// node 1 is back it finishes joining and votes in every group.
#[test]
fn a_join_cut_short_keeps_the_voter_running_and_finishes_after_a_restart() {
    if !netfilter::available_or_skip() {
        return;
    }
    let flags = NodeFlags {
        cores: 2,
        snapshot_entries: 100_000,
        ..NodeFlags::default()
    };
    let mut cluster = start_with_flags("join-partial", flags);
    let (dir, seed) = (cluster.dir.clone(), cluster.bases[0].clone());
    let port = free_port_run(4).unwrap();
    let base = format!("127.0.0.1:{port}");
    // Long enough for group 0 to take node 4 on a loaded machine; group 1 then runs it out.
    let join_flags = ["--join-timeout-s", "10"];
    let cut = Partition::isolate_port(port + 2).unwrap();
    let mut node = Joining::start(&dir, 4, &base, &seed, &join_flags);
    node.wait_for("node 4: learner of every group");
    node.wait_for("node 4: joining did not finish");
    assert!(
        node.log().contains("it votes in 1 of 6 groups"),
        "{}",
        node.log()
    );
    assert!(node.log().contains("cohort members promote --id 4"));
    wait_ms(500);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "node 4 stopped, though it votes in group 0:\n{}",
        node.log()
    );
    drop(node);
    drop(cut);

    cluster.terminate(1).expect("node 1 stops");
    let mut node = Joining::start(&dir, 4, &base, &seed, &["--join-timeout-s", "60"]);
    node.wait_for("starting from the data dir");
    cluster.restart(1).expect("node 1 starts again");
    node.wait_for("node 4: joined: voter of every group");
    let list = members(&["list"], &cluster.bases[1]);
    let row = list
        .lines()
        .find(|line| line.split_whitespace().next() == Some("4"))
        .unwrap_or_else(|| panic!("node 4 not listed:\n{list}"));
    assert!(
        row.contains("6/6"),
        "node 4 does not vote everywhere:\n{list}"
    );
    node.stop();
    common::cluster::finish(cluster);
}

/// A cluster of 2 cores per node whose group 1 (on core 1) has no quorum while the cuts
/// returned live (nodes 2 and 3's core-1 peer ports cut off), and a base address for node 4.
fn group_1_cut_off(name: &str) -> (LocalCluster, Vec<Partition>, String) {
    let flags = NodeFlags {
        cores: 2,
        snapshot_entries: 100_000,
        ..NodeFlags::default()
    };
    let cluster = start_with_flags(name, flags);
    let port = free_port_run(4).unwrap();
    let core_1_peer_port =
        |base: &str| base.rsplit(':').next().unwrap().parse::<u16>().unwrap() + 2;
    let cuts = cluster.bases[1..]
        .iter()
        .map(|base| Partition::isolate_port(core_1_peer_port(base)).unwrap())
        .collect();
    (cluster, cuts, format!("127.0.0.1:{port}"))
}

/// Goal: a node removed while its join was cut short (a learner of some groups only) does
/// not add itself back when it is restarted with its `--join` (before, it did: the groups
/// kept no record of removed ids). Method: a cluster of 2 cores per node; nodes 2 and 3's
/// core-1 peer ports are cut off, so group 1 (core 1) has no quorum; node 4 joins with a
/// 3 s join timeout: group 0 takes it as a learner, group 1 cannot, and the node stops.
/// The cut healed, node 4 is removed, then started again with the same command: it must
/// stop saying it was removed, unlisted.
#[test]
fn a_node_removed_while_its_join_was_cut_short_does_not_add_itself_back() {
    if !netfilter::available_or_skip() {
        return;
    }
    let (cluster, cuts, base) = group_1_cut_off("join-cut-removed");
    let (dir, seed) = (cluster.dir.clone(), cluster.bases[0].clone());
    let mut node = Joining::start(&dir, 4, &base, &seed, &["--join-timeout-s", "3"]);
    let status = node.exit_status();
    assert!(!status.success(), "joined:\n{}", node.log());
    assert!(
        node.log().contains("node 4: joining failed"),
        "{}",
        node.log()
    );
    drop(node);
    drop(cuts);

    let out = members(&["remove", "--id", "4"], &seed);
    assert!(out.contains("voters [1, 2, 3]"), "{out}");
    let why = "node 4 was removed from the cluster";
    refused(&dir, 4, &base, &seed, &[], why);
    common::cluster::finish(cluster);
}

/// Goal (found in review): a node that a remove overtook during its join (the remove took
/// it out of the groups it was in, then the join added it to the others) takes itself out of
/// the groups its join added it to once it learns it was removed, rather than stay a learner
/// there. Method: as above, group 1 is cut off from its quorum; node 4 joins with a 60 s join
/// timeout, and once group 0 lists it, `members remove` takes it out of group 0 and gives
/// up on group 1. The cut healed, the join adds it to groups 1 to 5, its promote is refused
/// by group 0: it must stop, saying it was removed and taken out again, unlisted.
#[test]
fn a_node_a_remove_overtook_during_its_join_takes_itself_out_again() {
    if !netfilter::available_or_skip() {
        return;
    }
    let (cluster, cuts, base) = group_1_cut_off("join-overtaken");
    let (dir, seed) = (cluster.dir.clone(), cluster.bases[0].clone());
    let mut node = Joining::start(&dir, 4, &base, &seed, &["--join-timeout-s", "60"]);
    for _ in 0..600 {
        if listed(&seed, 4) {
            break;
        }
        wait_ms(100);
    }
    assert!(
        listed(&seed, 4),
        "group 0 never took node 4:\n{}",
        node.log()
    );
    let remove = [
        "members",
        "remove",
        "--id",
        "4",
        "--nodes",
        &seed,
        "--timeout-ms",
        "3000",
    ];
    let output = cohort_cli(&remove);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "group 1 cannot answer: {stderr}");
    drop(cuts);

    let status = node.exit_status();
    let said = node.log();
    assert!(!status.success(), "joined:\n{said}");
    assert!(
        said.contains("node 4 was removed from the cluster"),
        "{said}"
    );
    assert!(said.contains("taken out again"), "{said}");
    assert!(!listed(&seed, 4), "node 4 is still listed:\n{said}");
    common::cluster::finish(cluster);
}

/// Goal (found in review): a member restarted from its data dir at another address, while
/// none of its seeds answers, is refused at once: its peers dial the address the groups
/// hold, so the cluster would have lost a voter without a word. Method: node 4 joins, stops;
/// node 1, its only seed, stops; node 4 starts again on other ports.
#[test]
fn a_member_restarted_at_another_address_is_refused() {
    let mut cluster = start_with("join-moved", 100_000);
    let (dir, seed) = (cluster.dir.clone(), cluster.bases[0].clone());
    let port = free_port_run(4).unwrap();
    let base = format!("127.0.0.1:{port}");
    let mut node = Joining::start(&dir, 4, &base, &seed, &[]);
    node.wait_for("node 4: joined: voter of every group");
    node.stop();
    cluster.terminate(1).expect("node 1 stops");
    let moved = format!("127.0.0.1:{}", port + 2);
    let mut node = Joining::start(&dir, 4, &moved, &seed, &[]);
    let status = node.exit_status();
    let why = format!("node 4 is a member at {base}, not {moved}");
    assert!(!status.success(), "{}", node.log());
    assert!(node.log().contains(&why), "{}", node.log());
    cluster.restart(1).expect("node 1 starts again");
    common::cluster::finish(cluster);
}

/// Goal: a member is not taken for a removed node because the seed that answers lags behind
/// the groups' leaders. Method: node 4 joins while node 1 is down (so node 1's log never saw
/// it), and stops; nodes 2 and 3 are frozen so that node 1, restarted, cannot learn of it;
/// node 4 restarts with node 1 as its only seed, which lists nodes 1–3 only. It must keep
/// running (its join cannot finish without a leader, and it says so), and once nodes 2 and 3
/// go on it is still a voter of every group.
#[test]
fn a_member_is_not_taken_for_removed_by_a_seed_that_lags() {
    let mut cluster = start_with("join-lagging-seed", 100_000);
    let dir = cluster.dir.clone();
    cluster.terminate(1).expect("node 1 stops");
    let port = free_port_run(2).unwrap();
    let base = format!("127.0.0.1:{port}");
    let mut node = Joining::start(&dir, 4, &base, &cluster.bases[1], &[]);
    node.wait_for("node 4: joined: voter of every group");
    node.stop();

    cluster.pause(2);
    cluster.pause(3);
    cluster.restart(1).expect("node 1 starts again");
    let seed = cluster.bases[0].clone();
    let mut node = Joining::start(&dir, 4, &base, &seed, &["--join-timeout-s", "2"]);
    node.wait_for("node 4: joining did not finish");
    wait_ms(500);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "node 4 stopped:\n{}",
        node.log()
    );
    assert!(!node.log().contains("removed"), "{}", node.log());
    cluster.resume(2);
    cluster.resume(3);
    let mut row = String::new();
    for _ in 0..100 {
        let list = members(&["list"], &cluster.bases[1]);
        row = list
            .lines()
            .find(|line| line.split_whitespace().next() == Some("4"))
            .unwrap_or_default()
            .to_string();
        if row.contains("6/6") {
            break;
        }
        wait_ms(100);
    }
    assert!(
        row.contains("6/6"),
        "node 4 no longer votes everywhere: {row}"
    );
    node.stop();
    common::cluster::finish(cluster);
}

/// Goal (found in review): a node restarted with --join while no seed answers (it starts
/// from its data dir) refuses a --cores or --groups that differs from what its data dir was
/// made with, as it does without --join and when a seed answers; before, it ran with the
/// recorded ones, the flags silently dropped. Method: a data dir made for 1 core and 8 groups,
/// a seed nothing listens at, and each flag changed in turn.
#[test]
#[allow(clippy::disallowed_methods)] // a test's pauses, on no executor
fn a_node_joining_from_its_data_dir_refuses_a_layout_it_was_not_made_with() {
    let dir = std::env::temp_dir().join(format!("cohort-test-joinlayout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    cohort::node::identity::check_or_record(
        &dir,
        cohort::node::identity::Identity {
            cluster_id: 7,
            node_id: 4,
            cores: 1,
            groups: 8,
            founders: 0,
        },
    )
    .unwrap();
    let port = free_port_run(2).expect("a free port");
    for flag in [["--cores", "2"], ["--groups", "4"]] {
        let mut node = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["serve", "--id", "4", "--join", "127.0.0.1:1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", dir.to_str().unwrap()])
            .args(flag)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cohort serve runs");
        let mut waited = Duration::ZERO;
        while node.try_wait().expect("waits").is_none() && waited < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        }
        let _ = node.kill();
        let output = node.wait_with_output().expect("ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag:?} ran on");
        assert!(
            stderr.contains("the layout of a data dir cannot change"),
            "{flag:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Goal (found in review): nodes of one cluster started with other initial voters
/// (`--peers`) refuse each other, saying why. Before, each committed its own first entry in
/// every group, naming its own voters, and they exchanged Raft messages: {1, 2} is a majority
/// of both {1, 2, 3} and {1, 2, 4}, so a group could mix the two configurations (two leaders
/// of one term). Then (found by a tester) the same ids with another port for one of them:
/// each node's first entry named node 3 at its own address, and node 2 never reached the
/// node 3 the others did. Method: node 1 starts with peers 1, 2, 3 and node 2 with peers 1,
/// 2, 4, at the addresses each other is given; each must log the refusal. Then again with
/// peers 1, 2, 3 for both, node 2 given another port for node 3.
#[test]
fn nodes_started_with_other_initial_voters_refuse_each_other() {
    let base = |_| format!("127.0.0.1:{}", free_port_run(2).expect("ports"));
    let bases: Vec<String> = (1..=4).map(base).collect();
    let peers = |ids: [usize; 3]| {
        let listed: Vec<String> = ids
            .iter()
            .map(|&id| format!("{id}={}", bases[id - 1]))
            .collect();
        listed.join(",")
    };
    refuse_each_other("founders", [peers([1, 2, 3]), peers([1, 2, 4])]);
    let elsewhere = peers([1, 2, 3]).replace(&bases[2], &bases[3]);
    refuse_each_other("founders-ports", [peers([1, 2, 3]), elsewhere]);
}

/// Nodes 1 and 2, started with `peers` each (in `tag`'s folder), must each log that the
/// other was started with other initial voters.
fn refuse_each_other(tag: &str, peers: [String; 2]) {
    let dir = std::env::temp_dir().join(format!("cohort-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut nodes: Vec<Joining> = [1, 2]
        .into_iter()
        .zip(peers)
        .map(|(id, peers)| {
            let log = dir.join(format!("node-{id}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_cohort"))
                .args(["serve", "--id", &id.to_string(), "--peers", &peers])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{id}")))
                .args(["--groups", "2", "--stop-with-parent"])
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("cohort runs");
            Joining { child, log }
        })
        .collect();
    for node in &mut nodes {
        node.wait_for("was started with other initial voters (--peers: other ids, or other ports");
    }
    for node in nodes {
        node.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Goal (found in review): a group that holds nothing yet starts from this start's
/// `--peers` only if they are those the data dir's first start recorded. Before, a first
/// start that stopped before its cores wrote their logs (a mistyped `--peers`, a failed
/// executor) kept its founders while a corrected start bootstrapped the groups from other
/// voters: the node then advertised founders its groups did not hold. Method: a data dir
/// recorded with the founders 1, 2, 9, and no log; started with peers 1 and 2. Then (found
/// in review) a data dir recorded by a join (founders 0): a group its join had not reached
/// started from a first entry of its own, unlike the cluster's, and the node recorded these
/// --peers as the members it was one of.
#[test]
fn a_group_is_not_bootstrapped_from_other_peers_than_the_first_start_recorded() {
    let nine = cohort::wire::founders_digest([1, 2, 9].map(cohort::raft::NodeId));
    for founders in [nine, 0] {
        refused_with_other_founders(founders);
    }
}

fn refused_with_other_founders(founders: u64) {
    let dir = std::env::temp_dir().join(format!("cohort-test-refounded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    cohort::node::identity::check_or_record(
        &dir.join("data"),
        cohort::node::identity::Identity {
            cluster_id: 1,
            node_id: 1,
            cores: 1,
            groups: 2,
            founders,
        },
    )
    .unwrap();
    let ports = [free_port_run(2).unwrap(), free_port_run(2).unwrap()];
    let peers = format!("1=127.0.0.1:{},2=127.0.0.1:{}", ports[0], ports[1]);
    let mut node = Joining {
        child: Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["serve", "--id", "1", "--peers", &peers, "--groups", "2"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(std::fs::File::create(dir.join("out.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
            .spawn()
            .expect("cohort runs"),
        log: dir.join("node.log"),
    };
    let status = node.exit_status();
    let said = node.log();
    drop(node);
    let member_recorded = cohort::node::identity::recorded_members(&dir.join("data"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "started:\n{said}");
    assert!(
        said.contains("this data dir was first started with other --peers"),
        "{said}"
    );
    assert_eq!(member_recorded, Ok(None), "founders {founders}");
}
