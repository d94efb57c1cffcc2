//! Tests of the WAL adapter: recovery, proofs of syncs, room in the log, snapshot files.

use super::*;
use crate::raft::{ConfState, SnapshotMeta};

const GROUP: u32 = 0;

/// Folders whose snapshot writes wait this long on the blocking thread before they begin
/// (a slow disk): each test has its own folder, so tests running beside it are not slowed.
static SLOW_SNAPSHOT_WRITES: std::sync::Mutex<BTreeMap<PathBuf, Duration>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The hook of [`spawn_snapshot_write`]: waits as long as `dir`'s writes are slowed.
#[allow(clippy::disallowed_methods)] // on the blocking thread, as a slow disk would
pub(super) fn slow_snapshot_write(dir: &Path) {
    let delay = SLOW_SNAPSHOT_WRITES.lock().expect("lock").get(dir).copied();
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
}

/// Snapshot writes into `dir` from now on wait `delay` before they begin.
fn slow_snapshot_writes(dir: &Path, delay: Duration) {
    SLOW_SNAPSHOT_WRITES
        .lock()
        .expect("lock")
        .insert(dir.to_path_buf(), delay);
}

fn config(dir: &Path) -> NodeConfig {
    let members = [
        (1, "127.0.0.1:7000"),
        (2, "127.0.0.1:7100"),
        (3, "127.0.0.1:7200"),
    ];
    NodeConfig {
        id: NodeId(1),
        cluster_id: 1,
        members: members
            .iter()
            .map(|&(id, base)| (NodeId(id), base.to_string()))
            .collect(),
        bootstrap: true,
        data_dir: dir.to_path_buf(),
        cores: 1,
        groups: 1,
        pin_cores: false,
        tick: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        sync: SyncMode::Never,
        lease_reads: false,
        broadcast_commit: false,
        quiesce: true,
        segment_bytes: 1 << 20,
        snapshot_entries: 0,
        snapshot_log_bytes: 0,
        snapshot_catch_up_entries: 0,
        wal_soft_limit_bytes: 0,
        wal_segments_max: 0,
        snapshot_chunk_bytes: 1 << 20,
        kv_quota_bytes: 0,
        leader_balance_margin: None,
    }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes
        .map(|index| Entry {
            term: Term(term),
            index: LogIndex(index),
            kind: EntryKind::Normal,
            data: Bytes::from(format!("entry {index}")),
        })
        .collect()
}

/// Opens the log of `dir` for group 0 (bootstrapped with three voters), runs `work` on it,
/// and closes it; returns what the open recovered for the group.
fn with_log(dir: &Path, work: fn(&mut WalLog)) -> Persisted {
    let dir = dir.to_path_buf();
    crate::node::on_one_executor("wal-log-test", move || async move {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let bootstrap = Persisted::bootstrap(&voters);
        let groups = BTreeSet::from([GROUP]);
        let (mut log, mut recovered) = WalLog::open(&dir, &config(&dir), &groups, Ok(&bootstrap))
            .await
            .expect("open");
        work(&mut log);
        log.sync().await.expect("sync");
        recovered.remove(&GROUP).expect("the group")
    })
    .expect("executor")
}

const VOTERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Opens the log of `dir` for group 0, bootstrapped with three voters.
async fn open_log(dir: &Path) -> WalLog {
    let bootstrap = Persisted::bootstrap(&VOTERS);
    let groups = BTreeSet::from([GROUP]);
    let (log, _) = WalLog::open(dir, &config(dir), &groups, Ok(&bootstrap))
        .await
        .expect("open");
    log
}

/// Takes what `log` hands back of the snapshots it received until it holds none in
/// flight (a blocking write each).
async fn take_all_received(log: &mut WalLog) -> Vec<Received> {
    let mut taken = Vec::new();
    for _ in 0..1000 {
        taken.extend(log.take_received());
        if log.snapshots_receiving.is_empty() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    assert!(log.snapshots_receiving.is_empty(), "never done");
    taken
}

/// The file of a snapshot at `index` of `term`, written as staging a leader's snapshot
/// writes it, with the crash before the WAL took its marker.
fn snapshot_file_alone(dir: &Path, index: u64, term: u64) {
    let snapshot = snapshot_at(index, term, Bytes::from_static(b"state"));
    snapshot_file::write(dir, GROUP, &snapshot).expect("snapshot file");
}

/// A snapshot of the three voters at `index` of `term`, holding `data`.
fn snapshot_at(index: u64, term: u64, data: Bytes) -> Snapshot {
    let conf_state = ConfState {
        voters: VOTERS.to_vec(),
        ..ConfState::default()
    };
    Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            conf_state,
        },
        data,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cohort-wal-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Goal: a first start cut by a crash after its bootstrap entry reached the disk and
/// before the hard state after it did (found in review) starts with its members, as if
/// the first start had finished. Method: the last record of the first segment (that hard
/// state) zeroed, as a torn tail leaves it.
#[test]
fn a_bootstrap_torn_before_its_hard_state_is_written_again() {
    let dir = temp_dir("torn-bootstrap");
    let first = with_log(&dir, |_| {});
    let bootstrap = Persisted::bootstrap(&VOTERS);
    assert_eq!(first.hard_state, bootstrap.hard_state);
    tear_last_record(&dir);
    for _ in 0..2 {
        let recovered = with_log(&dir, |_| {});
        assert_eq!(recovered.hard_state, bootstrap.hard_state);
        assert_eq!(recovered.entries, bootstrap.entries);
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Goal: a log torn the same way whose entries are not the bootstrap's (a node that
/// joined, restarted with a bootstrap) keeps them: writing the bootstrap over them would
/// put other bytes at an index and term a leader sent (found in review).
#[test]
fn a_torn_log_of_other_entries_is_recovered_as_it_is() {
    let dir = temp_dir("torn-joined");
    let written = entries(1..=1, 2);
    let (inner, taken) = (dir.clone(), written.clone());
    crate::node::on_one_executor("wal-log-test", move || async move {
        let groups = BTreeSet::from([GROUP]);
        let (mut log, _) =
            WalLog::open(&inner, &config(&inner), &groups, Ok(&Persisted::default()))
                .await
                .expect("open");
        let state = HardState {
            term: Term(2),
            vote: NodeId(1),
            commit: LogIndex(1),
        };
        log.write(GROUP, &taken, Some(state)).expect("write");
        log.sync().await.expect("sync");
    })
    .expect("executor");
    tear_last_record(&dir);
    let recovered = with_log(&dir, |_| {});
    assert_eq!(recovered.entries, written);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Goal: a log whose oldest segment file is gone, taking the group's committed entries
/// with it while a later segment restates the commit, opens with that commit: what the
/// Raft core relies on to vote for no candidate short of it (`Replica::new`; recovery
/// kept the commit before, this pins it). Method: entries 2..=5
/// committed, then hard states until the first segment and the one built at open are
/// full; the first segment's file deleted.
#[test]
fn a_log_whose_committed_entries_went_with_a_lost_segment_keeps_its_commit() {
    in_log_dir("lost-segment", |dir| async move {
        let mut log = open_log(&dir).await;
        let state = HardState {
            term: Term(1),
            vote: NodeId::NONE,
            commit: LogIndex(5),
        };
        log.write(GROUP, &entries(2..=5, 1), Some(state))
            .expect("entries");
        let mut written = 0;
        while log.write(GROUP, &[], Some(state)).is_ok() {
            written += 1;
            assert!(written < 1_000_000, "never full");
        }
        log.sync().await.expect("sync");
        drop(log);
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the folder")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "wal"))
            .collect();
        segments.sort();
        assert_eq!(segments.len(), 2, "{segments:?}");
        std::fs::remove_file(&segments[0]).expect("lose the first segment");
        let recovered = reopen(&dir).await.1;
        assert_eq!(recovered.entries, []);
        assert_eq!(recovered.hard_state, state);
    });
}

/// Zeroes the last record of the first segment in `dir`, as a torn tail leaves it.
fn tear_last_record(dir: &Path) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the folder")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let mut bytes = std::fs::read(&segments[0]).expect("the first segment");
    // Records from offset 64 on, each `len` (its first 4 bytes) rounded up to 8.
    let (mut at, mut last) = (crate::wal::SEGMENT_HEADER_BYTES, None);
    loop {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        last = Some(at..at + len.next_multiple_of(8));
        at += len.next_multiple_of(8);
    }
    bytes[last.expect("records")].fill(0);
    std::fs::write(&segments[0], &bytes).expect("tear the tail");
}

/// A follower behind the leader's snapshot (its log ends at 4, the snapshot is at 8)
/// crashed between the snapshot's file and its WAL marker. The reopen takes the marker
/// in, so the entries after the snapshot are taken (the WAL refused them before).
#[test]
fn a_snapshot_file_ahead_of_the_log_is_settled_on_open() {
    let dir = temp_dir("ahead");
    with_log(&dir, |log| {
        log.write(GROUP, &entries(2..=4, 1), None).expect("write");
    });
    snapshot_file_alone(&dir, 8, 2);
    let recovered = with_log(&dir, |log| {
        assert_eq!(log.wal.group(u64::from(GROUP)).unwrap().snapshot.index, 8);
        log.write(GROUP, &entries(9..=9, 2), None)
            .expect("the entry after the snapshot is taken");
    });
    assert_eq!(recovered.snapshot.meta.index, LogIndex(8));
    assert!(recovered.entries.is_empty());
    let recovered = with_log(&dir, |_| {});
    let indexes: Vec<_> = recovered.entries.iter().map(|e| e.index.0).collect();
    assert_eq!(indexes, [9]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Goal (found in review): a vote this node gave, synced with nothing written after it
/// (an idle core after an election), is not lost to damage of its record: damage to the
/// last record reads as a torn write, which recovery drops, and the node could then vote
/// again in that term. Method: a vote written and synced, then every sync the log asks
/// for (as an idle core's loop begins them); one byte of the vote's record flipped: the
/// log is refused as damaged (before: it opened, the vote gone).
#[test]
fn a_vote_synced_last_is_proved_synced_by_a_record_after_it() {
    let dir = temp_dir("vote-proof");
    let (inner, kept) = (dir.clone(), dir.clone());
    crate::node::on_one_executor("wal-log-test", move || async move {
        let mut log = open_log(&inner).await;
        log.sync().await.expect("sync");
        let voted = HardState {
            term: Term(5),
            vote: NodeId(2),
            commit: LogIndex(0),
        };
        log.write(GROUP, &[], Some(voted)).expect("write");
        log.sync().await.expect("sync");
        for _ in 0..10 {
            if !log.wants_sync() {
                break;
            }
            log.sync().await.expect("sync");
        }
        assert!(!log.wants_sync(), "the log asks for syncs without end");
    })
    .expect("executor");
    assert_damaged_vote_refused(&dir, (5, 2));
    std::fs::remove_dir_all(kept).expect("cleanup");
}

/// Goal (found by a tester): entries synced with nothing written after them (an idle
/// core after a write it acknowledged) are not lost to damage of their record, which
/// read as a torn write: with the entries' other copies on nodes down at the time, a
/// majority without them elected a leader, and an acknowledged write was gone. Method:
/// entries written and synced, then every sync the log asks for once it was quiet a
/// while (as an idle core's loop begins them at its ticks); one bit of the last entry
/// flipped: the log is refused as damaged
/// (before: it opened without them).
#[test]
fn entries_synced_last_are_proved_synced_by_a_record_after_them() {
    let dir = temp_dir("entries-proof");
    let (inner, kept) = (dir.clone(), dir.clone());
    crate::node::on_one_executor("wal-log-test", move || async move {
        let mut log = entries_synced_last(&inner).await;
        settle(&mut log).await;
    })
    .expect("executor");
    assert_damage_refused(&dir, b"entry 4");
    std::fs::remove_dir_all(kept).expect("cleanup");
}

/// Goal (review 275): entries synced last are proved even where a record that asks for
/// no sync follows them: a leader's commit, learned from its followers' acks a moment
/// after its own sync (the core writes it and begins no sync; it stayed staged, and the
/// proof waited on an idle core for good). Method: entries synced, their commit written
/// 10 ms later with no sync (no sync is due at once), the log given the syncs it asks for
/// (one: the commit's); then the entries' last record damaged: the log is refused, not cut
/// short.
#[test]
fn entries_followed_by_a_commit_that_needs_no_sync_are_proved() {
    let dir = temp_dir("entries-proof-commit");
    let (inner, kept) = (dir.clone(), dir.clone());
    crate::node::on_one_executor("wal-log-test", move || async move {
        let mut log = entries_synced_last(&inner).await;
        // The acks come late (slow disks on the followers): a sync at once would go
        // beside the client's next write; the log is quiet only from the commit on.
        glommio::timer::sleep(2 * PROOF_QUIET).await;
        let committed = HardState {
            commit: LogIndex(4),
            ..TERM_1
        };
        log.write(GROUP, &[], Some(committed)).expect("write");
        assert!(!log.wants_sync(), "quiet from the last record written");
        // The commit's sync proves the entries; a commit alone needs no proof.
        assert_eq!(settle(&mut log).await, 1);
    })
    .expect("executor");
    assert_damage_refused(&dir, b"entry 4");
    std::fs::remove_dir_all(kept).expect("cleanup");
}

/// Goal (review 274): entries whose sync was in flight while the sync before it ended
/// and a proof was written are proved too (the proof proved only what was durable when
/// it was written, and they were taken for proved). Method: two batches, each with a
/// sync begun; the first finished; quiet past `PROOF_QUIET`; a third sync begun (as an
/// idle core's next tick would); the rest finished, then every sync the log asks for once
/// quiet; one bit of the second batch's last entry flipped: the log is refused.
#[test]
fn entries_synced_while_another_sync_ended_are_proved_too() {
    let dir = temp_dir("entries-proof-overlap");
    let (inner, kept) = (dir.clone(), dir.clone());
    crate::node::on_one_executor("wal-log-test", move || async move {
        let mut log = open_log(&inner).await;
        log.write(GROUP, &[], Some(TERM_1)).expect("write");
        log.sync().await.expect("sync");
        log.write(GROUP, &entries(2..=3, 1), None).expect("write");
        let first = log.begin_sync().expect("sync begun");
        log.write(GROUP, &entries(4..=5, 1), None).expect("write");
        let second = log.begin_sync().expect("sync begun");
        log.finish_sync(first.await).expect("sync");
        glommio::timer::sleep(2 * PROOF_QUIET).await;
        let third = log.begin_sync().expect("sync begun");
        log.finish_sync(second.await).expect("sync");
        log.finish_sync(third.await).expect("sync");
        settle(&mut log).await;
    })
    .expect("executor");
    assert_damage_refused(&dir, b"entry 5");
    std::fs::remove_dir_all(kept).expect("cleanup");
}

/// A hard state of term 1, voted for node 1, nothing committed.
const TERM_1: HardState = HardState {
    term: Term(1),
    vote: NodeId(1),
    commit: LogIndex(0),
};

/// A log at `dir` whose last records, entries 2 to 4 of term 1, were just synced, after
/// a hard state synced and settled (see [`settle`]).
async fn entries_synced_last(dir: &Path) -> WalLog {
    let mut log = open_log(dir).await;
    log.write(GROUP, &[], Some(TERM_1)).expect("write");
    log.sync().await.expect("sync");
    settle(&mut log).await;
    log.write(GROUP, &entries(2..=4, 1), None).expect("write");
    log.sync().await.expect("sync");
    log
}

/// Gives `log` the syncs it asks for once quiet, until it asks for none, and says how
/// many.
async fn settle(log: &mut WalLog) -> usize {
    for syncs in 0..10 {
        glommio::timer::sleep(2 * PROOF_QUIET).await;
        if !log.wants_sync() {
            return syncs;
        }
        log.sync().await.expect("sync");
    }
    panic!("the log asks for syncs without end");
}

/// Flips one bit of the first record of `dir`'s log that holds the hard state (term,
/// vote), and opens the log again: it must be refused as damaged.
fn assert_damaged_vote_refused(dir: &Path, (term, vote): (u64, u64)) {
    // The hard state's payload begins with the term and the vote (little-endian u64s).
    let payload: Vec<u8> = [term, vote].iter().flat_map(|n| n.to_le_bytes()).collect();
    assert_damage_refused(dir, &payload);
}

/// Flips one bit of the first record of `dir`'s log that holds `payload`, and opens the
/// log again: it must be refused as damaged.
fn assert_damage_refused(dir: &Path, payload: &[u8]) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the log's folder")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    let found = segments.iter().find_map(|segment| {
        let bytes = std::fs::read(segment).expect("a segment");
        let at = bytes.windows(payload.len()).position(|w| w == payload)?;
        Some((segment, bytes, at))
    });
    let (segment, mut bytes, at) = found.expect("the damaged record");
    bytes[at] ^= 0x01;
    std::fs::write(segment, &bytes).expect("damage the record");
    let dir = dir.to_path_buf();
    let opened = crate::node::on_one_executor("wal-log-test", move || async move {
        let groups = BTreeSet::from([GROUP]);
        let bootstrap = Persisted::bootstrap(&VOTERS);
        match WalLog::open(&dir, &config(&dir), &groups, Ok(&bootstrap)).await {
            Ok((_, mut recovered)) => Ok(recovered.remove(&GROUP).expect("the group")),
            Err(why) => Err(why),
        }
    })
    .expect("executor");
    match opened {
        Ok(recovered) => panic!(
            "opened, the damaged record dropped: {:?}, {:?}",
            recovered.hard_state,
            recovered.entries.last().map(|e| e.index)
        ),
        Err(why) => assert!(why.contains("damaged") || why.contains("corrupt"), "{why}"),
    }
}

/// Goal: a vote whose proof a crash lost (it came between the vote's sync and the
/// proof's) is proved at the next start. Method: a vote written and synced, which writes
/// the proof after it; the proof's bytes zeroed, as a crash before its sync may leave
/// them; the log opened and closed; then one bit of the vote flipped: the log is refused
/// as damaged (before: the start wrote nothing after the vote, whose damage then read as
/// a torn tail, and the log opened with the vote gone).
#[test]
fn a_vote_whose_proof_a_crash_lost_is_proved_at_the_next_start() {
    let dir = temp_dir("vote-proof-lost");
    let inner = dir.clone();
    let segment = dir.join(format!("{:020}.wal", 1));
    let segment_bytes = config(&dir).segment_bytes as usize;
    let proof = crate::node::on_one_executor("wal-log-test", move || async move {
        let mut log = open_log(&inner).await;
        log.sync().await.expect("sync");
        let voted = HardState {
            term: Term(5),
            vote: NodeId(2),
            commit: LogIndex(0),
        };
        log.write(GROUP, &[], Some(voted)).expect("write");
        let vote_end = segment_bytes - log.wal.active_room_bytes();
        log.sync().await.expect("sync");
        let proof_end = segment_bytes - log.wal.active_room_bytes();
        assert!(proof_end > vote_end, "no proof written");
        vote_end..proof_end
    })
    .expect("executor");
    let mut bytes = std::fs::read(&segment).expect("the first segment");
    bytes[proof].fill(0);
    std::fs::write(&segment, &bytes).expect("lose the proof");
    with_log(&dir, |_| {});
    assert_damaged_vote_refused(&dir, (5, 2));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Goal: a vote synced when there was no room for the record proving it (the next
/// segment not made yet) is proved once there is room (before: not until the core wrote
/// something else, and an idle core wrote nothing). Method: the segment filled with
/// entries, then with votes of new terms until one is refused; a sync; the next segment
/// built: the log asks for a sync, which proves the last vote: one bit of it flipped,
/// the log is refused as damaged.
#[test]
fn a_vote_synced_without_room_for_its_proof_is_proved_once_there_is_room() {
    let dir = temp_dir("vote-proof-room");
    let inner = dir.clone();
    let last_term = crate::node::on_one_executor("wal-log-test", move || async move {
        let (mut log, term) = log_full_of_votes(&inner).await;
        assert!(term > 1, "no vote found room");
        assert!(!log.wants_sync(), "the proof found room");
        for _ in 0..1000 {
            log.maintain().expect("maintain");
            if !log.wal.needs_prepare() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(!log.wal.needs_prepare(), "the next segment was never built");
        assert!(log.wants_sync(), "no proof once there was room");
        log.sync().await.expect("sync");
        term
    })
    .expect("executor");
    assert_damaged_vote_refused(&dir, (last_term, 2));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Goal (found in review): a restart while the next segment cannot be made (a full
/// disk) writes its vote proof in the room kept for hard states, not in the room kept
/// for snapshot markers, which are then what frees a segment (before: each such restart
/// took 64 bytes of it; with one group, after one restart no marker fit). Method: the
/// segment filled with entries, then with votes until one is refused; reopened with the
/// next segment's build failing (a folder posing as a spare segment, as a full disk
/// fails it): the active segment's room is what it was, and the proof waits for room.
#[test]
fn a_restart_without_room_leaves_the_room_kept_for_snapshot_markers() {
    let dir = temp_dir("vote-proof-restart");
    let inner = dir.clone();
    let room_before = crate::node::on_one_executor("wal-log-test", move || async move {
        let (log, _) = log_full_of_votes(&inner).await;
        log.wal.active_room_bytes()
    })
    .expect("executor");
    std::fs::create_dir(dir.join(format!("{:020}.wal.spare", 0))).expect("a folder");
    let inner = dir.clone();
    let (room_after, unproved) = crate::node::on_one_executor("wal-log-test", move || async move {
        let log = open_log(&inner).await;
        assert!(log.wal.needs_prepare(), "the next segment was made");
        (log.wal.active_room_bytes(), log.vote_unproved)
    })
    .expect("executor");
    assert_eq!(
        room_after, room_before,
        "the restart wrote into the kept room"
    );
    assert_eq!(unproved, Some(u64::from(GROUP)));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A snapshot file of a later term than the stored hard state (the crash came before the
/// term was stored) raises the term, and the vote of the older term does not come along.
#[test]
fn a_term_raised_to_a_snapshot_file_holds_no_vote() {
    let dir = temp_dir("vote");
    with_log(&dir, |log| {
        let voted = HardState {
            term: Term(1),
            vote: NodeId(2),
            commit: LogIndex(0),
        };
        log.write(GROUP, &entries(2..=4, 1), Some(voted))
            .expect("write");
    });
    snapshot_file_alone(&dir, 8, 3);
    let recovered = with_log(&dir, |_| {});
    assert_eq!(recovered.hard_state.term, Term(3));
    assert_eq!(recovered.hard_state.vote, NodeId::NONE);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A snapshot file that cannot be written (here its temporary path is a folder; on a
/// node, a full disk) is not fatal: the log keeps the entries it covers, says the
/// snapshot is still in flight, and writes it again later, then takes its marker.
#[test]
fn a_snapshot_file_that_cannot_be_written_is_written_again_later() {
    in_log_dir("retry", |dir| async move {
        let mut log = open_log(&dir).await;
        log.write(GROUP, &entries(2..=5, 1), None).expect("write");
        log.sync().await.expect("sync");
        let snapshot = snapshot_at(3, 1, Bytes::from_static(b"state"));
        let blocker = snapshot_file::path(&dir, GROUP, 3).with_extension("snap.tmp");
        std::fs::create_dir(&blocker).expect("blocker");
        log.snapshot_taken(GroupId(GROUP), &snapshot)
            .expect("taken");
        let marker = |log: &WalLog| log.wal.group(u64::from(GROUP)).unwrap().snapshot.index;
        let failed = |log: &WalLog| log.snapshots_writing[&GROUP].retry_at.is_some();
        // Every wait below ends within SNAPSHOT_RETRY_FIRST (1 s) and a blocking write.
        for _ in 0..1000 {
            log.maintain()
                .expect("a failed snapshot write is not fatal");
            if failed(&log) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed(&log), "the write never failed");
        assert!(log.snapshot_in_flight(GroupId(GROUP)));
        assert_eq!(marker(&log), 0, "no marker before the file");
        std::fs::remove_dir(&blocker).expect("unblock");
        for _ in 0..1000 {
            log.maintain().expect("maintain");
            if !log.snapshot_in_flight(GroupId(GROUP)) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(marker(&log), 3, "written again, then marked");
        assert!(snapshot_file::path(&dir, GROUP, 3).exists());
    });
}

/// A write of the snapshot at 3 keeps failing (its temporary path is a folder; on a node,
/// a disk with less room than the state) when the leader's snapshot at 5 is installed.
/// The write is dropped, not tried again: the group takes its next snapshot at once, and
/// the file at 3 is never written (the folder is gone before the first retry is due, so
/// a retry would write it).
#[test]
fn a_failing_snapshot_write_is_dropped_once_a_newer_snapshot_is_installed() {
    in_log_dir("superseded", |dir| async move {
        let mut log = open_log(&dir).await;
        log.write(GROUP, &entries(2..=5, 1), None).expect("write");
        log.sync().await.expect("sync");
        let blocker = snapshot_file::path(&dir, GROUP, 3).with_extension("snap.tmp");
        std::fs::create_dir(&blocker).expect("blocker");
        let old = snapshot_at(3, 1, Bytes::from_static(b"state"));
        log.snapshot_taken(GroupId(GROUP), &old).expect("taken");
        for _ in 0..1000 {
            log.maintain().expect("a failed write is not fatal");
            if log.snapshots_writing[&GROUP].retry_at.is_some() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            log.snapshots_writing[&GROUP].retry_at.is_some(),
            "never failed"
        );
        let newer = snapshot_at(5, 1, Bytes::from_static(b"newer state"));
        snapshot_file::write(&dir, GROUP, &newer).expect("the leader's snapshot");
        log.settle(GROUP, &newer).expect("its marker");
        std::fs::remove_dir(&blocker).expect("unblock");
        // Longer than the first retry's wait (1 s).
        for _ in 0..200 {
            log.maintain().expect("maintain");
            if !log.snapshot_in_flight(GroupId(GROUP)) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(!log.snapshot_in_flight(GroupId(GROUP)), "still in flight");
        assert!(
            !snapshot_file::path(&dir, GROUP, 3).exists(),
            "the superseded snapshot was written"
        );
        assert_eq!(log.marker(GROUP), 5);
    });
}

/// Goal: the loop never makes a segment itself. A record that needs the next segment
/// before its build is done is refused with nothing written (the core stages its Ready
/// again later), and goes in, from where it stopped, once the build is done; a restart
/// finds every entry once, in order.
#[test]
fn a_write_that_needs_the_next_segment_before_its_build_waits_and_goes_on_after() {
    in_log_dir("waits-for-segment", |dir| async move {
        let mut log = open_log(&dir).await;
        assert!(!log.entries_wait(), "the next segment is ready");
        let index = fill_until_not_ready(&mut log);
        assert!(log.entries_wait(), "no room kept for hard states");
        for _ in 0..1000 {
            log.maintain().expect("maintain");
            if !log.wal.needs_prepare() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(!log.wal.needs_prepare(), "the next segment was never built");
        assert!(!log.entries_wait());
        // The refused batch from where it stopped, then one more.
        let batch = [big(index), big(index + 1)];
        log.write_from(GROUP, &batch, None, &mut 0)
            .expect("room once the build is done");
        // It rotated: the next build is due, and the fresh segment has all its room.
        assert!(log.wal.needs_prepare());
        assert!(!log.entries_wait());
        log.sync().await.expect("sync");
        drop(log);
        let entries = reopen(&dir).await.1.entries;
        let indexes: Vec<u64> = entries.iter().map(|e| e.index.0).collect();
        assert_eq!(indexes, (1..=index + 1).collect::<Vec<_>>());
        assert!(entries[1..].iter().all(|e| e.data == big(e.index.0).data));
    });
}

/// An entry of 100 KiB (a tenth of a segment of these tests) at `index`.
fn big(index: u64) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        kind: EntryKind::Normal,
        data: Bytes::from(vec![index as u8; 100 << 10]),
    }
}

/// Writes `big` entries, from index 2 on, until the log refuses one (having written
/// nothing of it) because the next segment is not ready: the segment built at open is
/// taken by the first rotation, and no `maintain` builds the one after it. Returns the
/// index refused.
fn fill_until_not_ready(log: &mut WalLog) -> u64 {
    let mut index = 2;
    let refused = loop {
        assert!(index < 100, "never refused");
        let mut written = 0;
        match log.write_from(GROUP, &[big(index)], None, &mut written) {
            Ok(()) => index += 1,
            Err(error) => {
                assert_eq!(written, 0);
                break error;
            }
        }
    };
    assert!(must_wait(&refused), "{refused}");
    assert!(
        refused.to_string().contains("not prepared yet"),
        "{refused}"
    );
    let last = log.wal.group(u64::from(GROUP)).expect("group").last_index;
    assert_eq!(last, index - 1);
    index
}

/// The log of `dir`, its segment filled with entries until the next is not ready, then
/// with votes for node 2 of terms 2, 3, … until one is refused, and synced; the last
/// term voted (1: none).
async fn log_full_of_votes(dir: &Path) -> (WalLog, u64) {
    let mut log = open_log(dir).await;
    fill_until_not_ready(&mut log);
    let mut term = 1;
    loop {
        let voted = HardState {
            term: Term(term + 1),
            vote: NodeId(2),
            commit: LogIndex(0),
        };
        if log.write(GROUP, &[], Some(voted)).is_err() {
            break;
        }
        term += 1;
    }
    log.sync().await.expect("sync");
    (log, term)
}

/// Takes a snapshot of group 0 at index 3 and waits until its file is written.
async fn take_snapshot_at_3(log: &mut WalLog) {
    let snapshot = snapshot_at(3, 1, Bytes::from_static(b"state"));
    log.snapshot_taken(GroupId(GROUP), &snapshot)
        .expect("taken");
    let written = |log: &WalLog| log.snapshots_writing[&GROUP].written.borrow().is_some();
    for _ in 0..1000 {
        if written(log) {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    assert!(written(log), "the snapshot file was never written");
}

/// Goal: while the next segment cannot be made, entries and hard states leave the room
/// that snapshot markers need (found in review: on a full disk, a segment filled to its
/// end with hard states left a marker waiting for the room only it could free, and a
/// restart on that disk failed to open, settling it). Method: the segment filled with
/// entries and then hard states until the log refuses them; a marker still goes in.
#[test]
fn entries_and_hard_states_leave_room_for_snapshot_markers() {
    in_log_dir("marker-room", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        let mut written = 0u64;
        let refused = loop {
            assert!(written < 1_000_000, "never refused");
            let state = HardState {
                term: Term(1),
                vote: NodeId::NONE,
                commit: LogIndex(1 + written % 2),
            };
            match log.write(GROUP, &[], Some(state)) {
                Ok(()) => written += 1,
                Err(error) => break error,
            }
        };
        assert!(must_wait(&refused), "{refused}");
        // Room for two markers of each group.
        let marker_bytes = crate::wal::RECORD_HEADER_BYTES + 16;
        let room = log.wal.active_room_bytes();
        assert!(room >= 2 * marker_bytes, "{room} bytes left");
        take_snapshot_at_3(&mut log).await;
        log.finish_snapshot_writes(false).expect("the marker");
        assert_eq!(log.marker(GROUP), 3, "the marker found no room");
        stop(&mut log).await;
        drop(log);
        let (_, recovered) = reopen(&dir).await;
        assert_eq!(recovered.snapshot.meta.index, LogIndex(3));
    });
}

/// Goal: a snapshot's marker that the log has no room for yet is not fatal: the file
/// stays, and the marker goes in once the next segment is built.
#[test]
fn a_snapshot_marker_refused_for_want_of_room_goes_in_once_there_is_room() {
    in_log_dir("marker-waits", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        // The rest of the segment with records of a marker's size (of another group).
        let mut index = 1;
        while log.wal.mark_snapshot(99, index, 1).is_ok() {
            assert!(index < 100_000, "never full");
            index += 1;
        }
        take_snapshot_at_3(&mut log).await;
        log.finish_snapshot_writes(false)
            .expect("a marker without room is not fatal");
        assert_eq!(log.marker(GROUP), 0);
        assert!(
            log.snapshot_in_flight(GroupId(GROUP)),
            "the marker was dropped"
        );
        for _ in 0..1000 {
            log.maintain().expect("maintain");
            if log.marker(GROUP) == 3 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(log.marker(GROUP), 3);
        assert!(!log.snapshot_in_flight(GroupId(GROUP)));
        stop(&mut log).await;
        drop(log);
        let (_, recovered) = reopen(&dir).await;
        assert_eq!(recovered.snapshot.meta.index, LogIndex(3));
    });
}

/// Goal (found by an operator): a WAL at the segments its open-files limit leaves it
/// makes no next segment (takes no entries it can hold back, saying why), rather than
/// grow until a sync cannot open a file and poisons it; once below, it makes one again,
/// without saying it failed. Method: a cap of the segments it holds, the last filled.
#[test]
fn a_wal_at_its_segment_cap_makes_no_next_one_until_below_it() {
    in_log_dir("segment-cap", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        log.segments_max = log.wal.segment_count();
        for _ in 0..5 {
            log.maintain().expect("maintain");
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert!(
                log.building.is_none(),
                "a segment past the cap is being made"
            );
            let short = log.short_of_space().expect("says it cannot grow");
            assert!(short.contains("open-files limit"), "{short}");
        }
        assert!(log.wal.needs_prepare());
        log.segments_max += 1;
        for _ in 0..500 {
            log.maintain().expect("maintain");
            if !log.wal.needs_prepare() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(!log.wal.needs_prepare(), "no next segment below the cap");
        assert!(log.short_of_space().is_none() && !log.at_cap);
    });
}

/// Goal (found by a tester): a log that cannot make its next segment (a full disk) names
/// the groups that hold its oldest segment, for them to snapshot and free it, whatever
/// the soft limit (here none); with room, it names none. Method: a log filled up to its
/// next segment, whose build then fails.
#[test]
fn a_log_short_of_room_names_the_groups_that_hold_its_oldest_segment() {
    in_log_dir("short-names-oldest", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        assert!(log.wal.segment_count() >= 2);
        assert_eq!(log.groups_holding_old_segments(), []);
        let full = io::Error::new(io::ErrorKind::StorageFull, "injected: no room");
        log.build_failed_with(&full);
        assert!(log.short_of_space().is_some());
        let named = log.groups_holding_old_segments();
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].0, GroupId(GROUP));
    });
}

/// Goal (found by a tester): a snapshot's file that finds no room makes the spare
/// segments go (two held 16 MiB of a full disk while every snapshot write failed), once,
/// and only where they and the room left would hold it (review 269).
/// Method: a spare left in the folder, found at a reopen that builds no segment (at its
/// cap), so none takes it.
#[test]
fn spares_go_when_a_snapshot_finds_no_room() {
    in_log_dir("spares-go", |dir| async move {
        let mut log = open_log(&dir).await;
        stop(&mut log).await;
        drop(log);
        let spare = dir.join(format!("{:020}.wal.spare", 0));
        std::fs::write(&spare, vec![0u8; 4096]).expect("a spare");
        let mut config = config(&dir);
        config.wal_segments_max = 1;
        let bootstrap = Persisted::bootstrap(&VOTERS);
        let groups = BTreeSet::from([GROUP]);
        let (mut log, _) = WalLog::open(&dir, &config, &groups, Ok(&bootstrap))
            .await
            .expect("reopen");
        let no_room = io::Error::from_raw_os_error(libc::ENOSPC);
        let quota = io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(is_no_room(&no_room) && is_no_room(&quota));
        assert!(!is_no_room(&io::Error::other("other")));
        assert!(spare.exists(), "taken at open");
        // Kept where even with it the snapshot would not fit.
        assert!(!log.room_for_snapshots(u64::MAX) && spare.exists());
        assert!(log.room_for_snapshots(1));
        assert!(!spare.exists() && !log.room_for_snapshots(1));
    });
}

/// Goal (review 260): a WAL reopened holding as many segments as its cap allows (the
/// open-files limit lowered since its last run) makes no next one at open, past the cap.
#[test]
fn a_wal_reopened_at_its_segment_cap_makes_no_next_one() {
    in_log_dir("reopen-at-cap", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        let live = log.wal.segment_count();
        stop(&mut log).await;
        drop(log);
        let mut config = config(&dir);
        config.wal_segments_max = live as u64;
        let bootstrap = Persisted::bootstrap(&VOTERS);
        let groups = BTreeSet::from([GROUP]);
        let (log, _) = WalLog::open(&dir, &config, &groups, Ok(&bootstrap))
            .await
            .expect("reopen");
        assert_eq!(log.wal.segment_count(), live);
        assert!(
            log.wal.needs_prepare(),
            "a segment past the cap was made at open"
        );
    });
}

/// Goal: a segment built for a place no longer open (compaction recycled a dead segment
/// into it meanwhile) is removed at once: kept, its file would hold a segment's worth of
/// a nearly full disk, and the next build fail for want of it.
#[test]
fn a_built_segment_no_longer_wanted_is_removed() {
    in_log_dir("stale-build", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        let (seq, size_bytes, header) = log.wal.next_segment_plan().expect("a plan");
        let job = log.wal.storage_mut().build_job(seq, size_bytes, header);
        // The place is filled another way meanwhile (as compaction recycles a dead
        // segment into it), then the build ends.
        log.wal.prepare_next().expect("made inline");
        // An earlier build had failed: this one's success says there is room again.
        log.build_failed_with(&io::Error::other("injected: no room"));
        log.segment_built(job()).expect("not fatal");
        assert!(log.build_failed.is_none(), "still short of space");
        let building = || {
            std::fs::read_dir(&dir)
                .expect("the log's folder")
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".building"))
                .count()
        };
        assert_eq!(building(), 0, "the stale segment's file is still there");
    });
}

/// Goal (found in review): a failed build of the next segment no longer counts once a
/// freed segment took its place (a snapshot's marker made one dead): kept, the failure
/// made the log say it cannot grow at the next rotation, whatever room there was then.
/// Method: a build fails; the place is filled another way before the retry is due.
#[test]
fn a_failed_build_is_forgotten_once_a_segment_takes_its_place() {
    in_log_dir("recycled", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        log.build_failed_with(&io::Error::other("injected: no room"));
        assert!(log.short_of_space().is_some());
        log.wal.prepare_next().expect("made inline");
        log.maintain().expect("maintain");
        assert!(log.build_failed.is_none(), "the failure outlived its place");
    });
}

/// Goal: a batch larger than the room left goes in part (whole records), says how far,
/// and goes on from there once the next segment is built; each entry is in the log
/// once, in order. The build's end wakes a waiting loop once (`poll_room`).
#[test]
fn a_batch_written_in_part_goes_on_from_where_it_stopped() {
    in_log_dir("partial-batch", |dir| async move {
        let mut log = open_log(&dir).await;
        // 25 entries of 100 KiB: the rest of the first segment, the one built at open,
        // and no room for the rest.
        let batch: Vec<Entry> = (2..=26).map(big).collect();
        let mut written = 0;
        let refused = log
            .write_from(GROUP, &batch, None, &mut written)
            .expect_err("more than two segments");
        assert!(must_wait(&refused), "{refused}");
        assert!(written > 0 && written < batch.len(), "{written} written");
        let last = log.wal.group(u64::from(GROUP)).expect("group").last_index;
        assert_eq!(last, 1 + written as u64);
        let noop = || Context::from_waker(Waker::noop());
        assert!(
            log.poll_room(&mut noop()).is_pending(),
            "no build has ended"
        );
        log.maintain().expect("maintain starts the build");
        // The timeout first: without the wake, the build's end is seen only when the
        // timer fires, and `or` then takes the first of the two ready.
        let woken = futures_lite::future::or(
            async {
                glommio::timer::sleep(Duration::from_secs(30)).await;
                false
            },
            async {
                std::future::poll_fn(|cx| log.poll_room(cx)).await;
                true
            },
        )
        .await;
        assert!(woken, "the build's end never woke the loop");
        assert!(
            log.poll_room(&mut noop()).is_pending(),
            "woken twice for one build"
        );
        log.maintain().expect("maintain takes the build");
        assert!(!log.wal.needs_prepare());
        log.write_from(GROUP, &batch, None, &mut written)
            .expect("the rest, once the build is done");
        assert_eq!(written, batch.len());
        log.sync().await.expect("sync");
        drop(log);
        let entries = reopen(&dir).await.1.entries;
        let indexes: Vec<u64> = entries.iter().map(|e| e.index.0).collect();
        assert_eq!(indexes, (1..=26).collect::<Vec<_>>());
        assert!(entries[1..].iter().all(|e| e.data == big(e.index.0).data));
    });
}

/// Opens the log of `dir` again; returns it and what it recovered of group 0.
async fn reopen(dir: &Path) -> (WalLog, Persisted) {
    let groups = BTreeSet::from([GROUP]);
    let bootstrap = Persisted::bootstrap(&VOTERS);
    let (log, mut recovered) = WalLog::open(dir, &config(dir), &groups, Ok(&bootstrap))
        .await
        .expect("reopen");
    (log, recovered.remove(&GROUP).expect("the group"))
}

/// Runs `work` on an executor with a new folder for a log, and removes the folder after.
fn in_log_dir<W, F>(name: &str, work: W)
where
    W: FnOnce(PathBuf) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    let dir = temp_dir(name);
    let inner = dir.clone();
    crate::node::on_one_executor("wal-log-test", move || work(inner)).expect("executor");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// What the core does with its log on a stop: let the jobs in flight finish, then sync.
async fn stop(log: &mut WalLog) {
    log.finish_jobs().await.expect("the jobs in flight");
    log.sync().await.expect("the last sync");
}

/// The names in `dir` of temporary snapshot files: what a cut write leaves.
fn temporary_snapshot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("the folder")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".snap.tmp"))
        .collect()
}

/// A stop cuts no snapshot write: one slowed on the blocking thread (a slow disk) is in
/// flight when the stop comes; the stop waits for its file and writes its marker before
/// the last sync, so the reopened log holds the marker and no temporary file is left.
#[test]
fn a_stop_waits_for_a_snapshot_write_in_flight_and_writes_its_marker() {
    in_log_dir("stop", |dir| async move {
        let mut log = open_log(&dir).await;
        log.write(GROUP, &entries(2..=5, 1), None).expect("write");
        log.sync().await.expect("sync");
        slow_snapshot_writes(&dir, Duration::from_millis(300));
        let snapshot = snapshot_at(3, 1, Bytes::from_static(b"state"));
        log.snapshot_taken(GroupId(GROUP), &snapshot)
            .expect("taken");
        stop(&mut log).await;
        assert!(!log.snapshot_in_flight(GroupId(GROUP)), "abandoned");
        drop(log);
        assert_eq!(temporary_snapshot_files(&dir), Vec::<String>::new());
        let log = open_log(&dir).await;
        assert_eq!(log.marker(GROUP), 3, "the snapshot's marker");
    });
}

/// Goal: the WAL's next segment is not built behind a snapshot job (found in review:
/// the executor's one blocking thread took jobs in turn, and a big state's file write of
/// seconds held the build, and then every group's entries, once the segment in use ran
/// short). Method: a snapshot write slowed to 2 s is in flight when the log needs its next
/// segment: the segment is built while the write still runs.
#[test]
fn the_next_segment_is_built_beside_a_slow_snapshot_write() {
    in_log_dir("build-beside-snapshot", |dir| async move {
        let mut log = open_log(&dir).await;
        fill_until_not_ready(&mut log);
        log.sync().await.expect("sync");
        slow_snapshot_writes(&dir, Duration::from_secs(2));
        let snapshot = snapshot_at(3, 1, Bytes::from_static(b"state"));
        log.snapshot_taken(GroupId(GROUP), &snapshot)
            .expect("taken");
        for _ in 0..150 {
            log.maintain().expect("maintain");
            if !log.wal.needs_prepare() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let written = log.snapshots_writing[&GROUP].written.borrow().is_some();
        assert!(!log.wal.needs_prepare(), "the build waited");
        assert!(!written, "the snapshot write was not slowed");
        log.finish_jobs().await.expect("the write");
        assert_eq!(log.marker(GROUP), 3);
    });
}

/// A stop does not hang on a stuck disk: a write slowed past the stop's bound is left
/// running, in flight and without its marker (the next start settles its file).
#[test]
fn a_stop_leaves_a_job_stuck_past_its_bound() {
    in_log_dir("stuck", |dir| async move {
        let mut log = open_log(&dir).await;
        log.write(GROUP, &entries(2..=5, 1), None).expect("write");
        slow_snapshot_writes(&dir, Duration::from_secs(1));
        let snapshot = snapshot_at(3, 1, Bytes::from_static(b"state"));
        log.snapshot_taken(GroupId(GROUP), &snapshot)
            .expect("taken");
        let began = crate::clock::now();
        let bound = Duration::from_millis(50);
        log.finish_jobs_within(bound).await.expect("stop");
        let waited = crate::clock::now() - began;
        assert!(
            waited >= bound && waited < Duration::from_millis(900),
            "{waited:?}"
        );
        assert!(log.snapshot_in_flight(GroupId(GROUP)), "not left running");
        assert_eq!(log.marker(GROUP), 0);
        // Let it end before the folder goes.
        log.finish_jobs().await.expect("the write");
        assert_eq!(log.marker(GROUP), 3);
    });
}

/// The wait after a failed snapshot write doubles from 1 s with each failure in a row,
/// and stops growing at 30 s however many follow.
#[test]
fn snapshot_write_retries_back_off_exponentially_up_to_a_cap() {
    let waits: Vec<u64> = (1..=8)
        .map(|failures| snapshot_retry_delay(failures).as_secs())
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    for failures in [31, 32, 33, 1000, u32::MAX] {
        assert_eq!(snapshot_retry_delay(failures), SNAPSHOT_RETRY_MAX);
    }
}

/// A snapshot from a peer is checked and its file written off the loop before Raft sees
/// it: one whose file cannot be written (its temporary path is a folder here; on a node,
/// a full disk) is dropped, not fatal, and one whose state machine does not load is
/// dropped without a file; a good one comes back with its file durable, once.
#[test]
fn a_received_snapshot_is_stored_before_raft_sees_it_and_dropped_if_it_cannot_be() {
    in_log_dir("received", |dir| async move {
        let mut log = open_log(&dir).await;
        let install = |index: u64, data: Bytes| Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            body: MessageBody::InstallSnapshot(Box::new(snapshot_at(index, 2, data))),
        };
        let mut kv = crate::kv::KvStore::new();
        kv.skip(7);
        let state = kv.encode_snapshot();
        let blocker = snapshot_file::path(&dir, GROUP, 7).with_extension("snap.tmp");
        std::fs::create_dir(&blocker).expect("blocker");
        log.receive_snapshot(GroupId(GROUP), install(7, state.clone()));
        log.receive_snapshot(GroupId(GROUP), install(9, state.clone()));
        let receiving = |log: &WalLog, group, term| log.snapshot_receiving(GroupId(group), term);
        assert_eq!(receiving(&log, GROUP, Term(2)), Some(LogIndex(9)));
        assert_eq!(receiving(&log, GROUP, Term(3)), None, "of an older term");
        assert_eq!(receiving(&log, GROUP + 1, Term(2)), None);
        let taken = take_all_received(&mut log).await;
        assert!(taken.is_empty(), "neither is for Raft: {}", taken.len());
        assert_eq!(receiving(&log, GROUP, Term(2)), None);
        // The next from a peer waits (two failures in a row: 2 s).
        assert!(log.receive_held(GroupId(GROUP)));
        assert!(!log.receive_held(GroupId(GROUP + 1)));
        assert!(!snapshot_file::path(&dir, GROUP, 9).exists(), "no file");
        std::fs::remove_dir(&blocker).expect("unblock");
        log.receive_snapshot(GroupId(GROUP), install(7, state));
        let taken = take_all_received(&mut log).await;
        assert_eq!(taken.len(), 1);
        // Its state machine comes with it, decoded off the loop.
        let loaded = taken[0]
            .state
            .as_ref()
            .map(crate::kv::KvStore::applied_index);
        assert_eq!(loaded, Some(7));
        assert!(snapshot_file::path(&dir, GROUP, 7).exists());
        assert!(log.snapshots_stored.contains(&(GROUP, 7)));
        assert!(!log.receive_held(GroupId(GROUP)));
    });
}

/// The leader's snapshot at 5 (term 2) replaced a log whose entries 2..10 are of term 1;
/// the crash came before the WAL dropped them. The reopen drops them: they belong to the
/// log the snapshot replaced.
#[test]
fn a_snapshot_file_drops_the_log_it_replaced_on_open() {
    let dir = temp_dir("replaced");
    with_log(&dir, |log| {
        log.write(GROUP, &entries(2..=10, 1), None).expect("write");
    });
    snapshot_file_alone(&dir, 5, 2);
    let recovered = with_log(&dir, |_| {});
    assert_eq!(recovered.snapshot.meta.index, LogIndex(5));
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    let recovered = with_log(&dir, |_| {});
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
