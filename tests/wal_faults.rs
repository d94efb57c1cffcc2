//! The WAL on the in-memory faulty storage: crash at every sync point, corruption in the
//! middle of the log, a failed sync, a lost segment, compaction and group-commit reports.

mod common;

use common::wal::read_all;

use cohort::wal::{
    CrashFault, HardState, MemStorage, StopAction, Storage, Wal, WalConfig, WalError, WalOpenError,
};
use futures_lite::future::block_on;

const SEGMENT_BYTES: u64 = 8192;
const GROUPS: u64 = 8;
const BATCHES: u64 = 30;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_BYTES,
    }
}

fn open(storage: MemStorage) -> Result<Wal<MemStorage>, WalOpenError> {
    block_on(Wal::open(storage, config()))
}

/// The payload of entry `index` of `group`, written in batch `index`: recognizable bytes.
fn payload(group: u64, index: u64) -> Vec<u8> {
    let len = 16 + ((group * 7 + index * 13) % 90) as usize;
    (0..len)
        .map(|i| (group as usize * 31 + index as usize * 17 + i) as u8)
        .collect()
}

/// Batch `b` (1-based) appends entry `b` to every group and sets its hard state.
fn write_batch(wal: &mut Wal<MemStorage>, batch: u64) {
    for group in 0..GROUPS {
        let bytes = payload(group, batch);
        wal.append_entries(group, batch, &[(batch, &bytes)])
            .expect("append");
        let state = HardState {
            term: batch,
            vote: group,
            commit: batch - 1,
        };
        wal.set_hard_state(group, state).expect("hard state");
    }
}

/// How many entries group `group` holds in `wal`, each checked to be the one written (its
/// term is its index, its payload `payload(group, index)`).
fn intact_entries(wal: &Wal<MemStorage>, group: u64, context: &str) -> u64 {
    let entries = read_all(wal, group);
    for entry in &entries {
        assert_eq!(entry.term, entry.index, "{context}, group {group}");
        assert_eq!(
            entry.payload,
            payload(group, entry.index),
            "{context}, group {group}"
        );
    }
    entries.len() as u64
}

#[test]
fn crash_at_every_sync_point_keeps_every_synced_record_and_invents_nothing() {
    // Goal: for each sync point c and each crash fault, after a crash that hits the batch
    // written after sync c, every group holds entries 1..=c intact, plus at most entry c+1
    // intact, and nothing else. Method: replay a fixed workload up to each cut.
    for cut in 0..BATCHES {
        for fault in CrashFault::ALL {
            let mut wal = open(MemStorage::new()).expect("fresh");
            for batch in 1..=cut {
                write_batch(&mut wal, batch);
                block_on(wal.sync()).expect("sync");
                if batch % 3 == 0 {
                    wal.prepare_next().expect("prepare");
                }
            }
            write_batch(&mut wal, cut + 1);
            let mut storage = wal.into_storage();
            storage.crash(fault, cut * 10 + fault as u64);
            let wal = open(storage)
                .unwrap_or_else(|e| panic!("cut {cut}, {fault:?}: reopen failed: {e}"));
            for group in 0..GROUPS {
                let last = intact_entries(&wal, group, &format!("cut {cut}, {fault:?}"));
                assert!(
                    last == cut || last == cut + 1,
                    "cut {cut}, {fault:?}, group {group}: {last} entries"
                );
                if fault == CrashFault::LoseUnsynced {
                    assert_eq!(last, cut, "{fault:?} kept an unsynced entry");
                }
                if fault == CrashFault::KeepUnsynced {
                    assert_eq!(
                        last,
                        cut + 1,
                        "{fault:?} lost an entry that reached the disk"
                    );
                }
                if last == cut && cut > 0 {
                    let state = wal.group(group).and_then(|s| s.hard_state);
                    assert_eq!(
                        state.map(|h| h.term),
                        Some(cut),
                        "hard state of batch {cut}"
                    );
                }
            }
        }
    }
}

#[test]
fn mid_log_corruption_is_refused_naming_file_and_offset() {
    // Goal: a flipped bit in a synced record followed by later synced records fails open with
    // the file and the record's offset. Method: two synced batches, corrupt the first record.
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(1, 1, &[(1, b"first entry".as_slice())])
        .expect("append");
    block_on(wal.sync()).expect("sync");
    wal.append_entries(1, 2, &[(1, b"second entry".as_slice())])
        .expect("append");
    block_on(wal.sync()).expect("sync");
    let mut storage = wal.into_storage();
    // Segment header (64) + an empty checkpoint record (48): the first entries record is at 112.
    let offset = 112;
    storage.corrupt(1, offset + 50, 0x10);
    match open(storage) {
        Err(WalOpenError::MidLogCorruption {
            file,
            offset: at,
            lsn,
            ..
        }) => {
            assert_eq!(file, "mem:00000000000000000001.wal");
            assert_eq!(at, offset as u64);
            assert_eq!(lsn, 2);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a log with a damaged synced record"),
    }
}

#[test]
fn corrupt_last_batch_is_taken_for_a_torn_tail() {
    // Goal: document the blind spot: damage to the last synced batch, with nothing written
    // after it, cannot be told from a torn write; the batch is dropped and open succeeds.
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(1, 1, &[(1, b"only".as_slice())])
        .expect("append");
    block_on(wal.sync()).expect("sync");
    let mut storage = wal.into_storage();
    storage.corrupt(1, 112 + 60, 0x01);
    let wal = open(storage).expect("opens");
    assert_eq!(
        wal.recovery_report().end_action,
        Some(StopAction::TruncateTornTail)
    );
    assert_eq!(wal.group(1), None);
}

/// Goal (review 221): recovery erases the valid records left after a torn one a chunk at a
/// time, as a segment's worth of zeros at once (and, on the file store, their staged copy)
/// is a burst of memory of up to the segment's size (4 GiB) per core at start. Method:
/// 4 MiB of small records in one segment never synced, kept by the crash, the first one
/// damaged: the erase covers the rest, and no write staged more than 1 MiB.
#[test]
fn a_torn_tail_is_erased_a_chunk_at_a_time() {
    let segment_bytes = 8 << 20;
    let mut wal =
        block_on(Wal::open(MemStorage::new(), WalConfig { segment_bytes })).expect("fresh");
    block_on(wal.sync()).expect("sync");
    let value = vec![7u8; 4000];
    for index in 1..=1000 {
        wal.append_entries(1, index, &[(index, value.as_slice())])
            .expect("append");
    }
    let mut storage = wal.into_storage();
    assert!(storage.largest_write_bytes() < 8192);
    storage.crash(CrashFault::KeepUnsynced, 1);
    storage.corrupt(1, 112 + 100, 0x01);
    let wal = block_on(Wal::open(storage, WalConfig { segment_bytes })).expect("opens");
    assert_eq!(
        wal.recovery_report().end_action,
        Some(StopAction::TruncateTornTail)
    );
    assert_eq!(wal.group(1), None);
    let largest = wal.storage().largest_write_bytes();
    assert!(largest <= 1 << 20, "one write of {largest} bytes");
}

/// Goal: a sync says when it made a new term or vote durable, so that the node can write a
/// record after it that proves it synced (a vote, unlike entries, lives only on this node;
/// see `corrupt_last_batch_is_taken_for_a_torn_tail`). Method: a vote, a commit alone, a
/// vote again, the same state again, each synced: only the changes of term or vote are
/// reported, the last group's when two groups voted in one sync.
#[test]
fn a_sync_reports_the_votes_it_made_durable() {
    let mut wal = open(MemStorage::new()).expect("fresh");
    let state = |term, vote, commit| HardState { term, vote, commit };
    let mut synced = |writes: &[(u64, HardState)]| {
        for &(group, hard_state) in writes {
            wal.set_hard_state(group, hard_state).expect("hard state");
        }
        block_on(wal.sync()).expect("sync").vote_group
    };
    assert_eq!(synced(&[(1, state(2, 3, 0))]), Some(1));
    assert_eq!(synced(&[(1, state(2, 3, 5))]), None);
    assert_eq!(synced(&[(1, state(3, 0, 5))]), Some(1));
    assert_eq!(synced(&[(1, state(3, 0, 5))]), None);
    assert_eq!(synced(&[(1, state(3, 1, 5)), (2, state(1, 1, 0))]), Some(2));
    assert_eq!(synced(&[]), None);
}

#[test]
fn appends_never_go_over_the_remains_of_a_torn_record() {
    // Goal: a later write over a torn record's remains, torn in turn by a crash, could put
    // together a record that verifies and carries the lsn expected there (lsns restart at
    // the end of the log). So appends go on in a fresh segment. Method: a synced entry, a
    // hard state that reached the disk with one byte wrong (a torn sector).
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(1, 1, &[(1, b"kept".as_slice())])
        .expect("append");
    block_on(wal.sync()).expect("sync");
    let torn_at = 112 + 56; // header 64, checkpoint 48, the entries record 56
    wal.set_hard_state(
        1,
        HardState {
            term: 1,
            vote: 1,
            commit: 1,
        },
    )
    .expect("hard state");
    let mut storage = wal.into_storage();
    storage.crash(CrashFault::KeepUnsynced, 1);
    storage.corrupt(1, torn_at + 50, 0x04);
    let mut wal = open(storage).expect("opens");
    let report = wal.recovery_report().clone();
    assert_eq!(report.end_action, Some(StopAction::TruncateTornTail));
    assert!(report.end_segment_retired, "{report:?}");
    wal.set_hard_state(
        1,
        HardState {
            term: 2,
            vote: 1,
            commit: 1,
        },
    )
    .expect("hard state");
    block_on(wal.sync()).expect("sync");
    assert_eq!(wal.storage().segment_seqs(), [1, 2]);
    let wal = open(wal.into_storage()).expect("reopens");
    assert_eq!(read_all(&wal, 1).len(), 1);
    assert_eq!(
        wal.group(1).and_then(|g| g.hard_state).map(|h| h.term),
        Some(2)
    );
    assert!(
        !wal.recovery_report().end_segment_retired,
        "segment 2 ends in zeros"
    );
}

#[test]
fn failed_sync_poisons_every_later_call() {
    // Goal: after a failed fdatasync the WAL refuses everything, naming the cause, and
    // never reports the unsynced data as durable.
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(3, 1, &[(1, b"x".as_slice())])
        .expect("append");
    wal.storage().fail_next_sync();
    let err = block_on(wal.sync()).expect_err("sync fails");
    assert!(matches!(err, WalError::SyncFailed { .. }), "{err}");
    let calls: Vec<Result<(), WalError>> = vec![
        wal.append_entries(3, 2, &[(1, b"y".as_slice())]),
        wal.set_hard_state(3, HardState::default()),
        wal.truncate(3, 1),
        wal.mark_snapshot(3, 1, 1),
        wal.entries(3, 1..2, &mut Vec::new()),
        wal.prepare_next(),
        block_on(wal.sync()).map(|_| ()),
    ];
    for result in calls {
        match result {
            Err(WalError::Poisoned { cause }) => assert!(cause.contains("injected"), "{cause}"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
}

#[test]
fn a_full_disk_refuses_the_record_that_needs_a_segment_and_changes_nothing() {
    // Goal: where the next segment cannot be made for lack of space, the record that needed
    // it is refused with NoRoom, nothing of it is written, the WAL is not poisoned, and the
    // same call succeeds once space is back; after a crash everything synced is there.
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.storage().set_disk_full(true);
    let mut index = 1;
    let refused = loop {
        assert!(index < 10_000, "the active segment never filled");
        match wal.append_entries(3, index, &[(1, payload(3, index).as_slice())]) {
            Ok(()) => index += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(refused, WalError::NoRoom { .. }), "{refused}");
    assert!(
        refused.to_string().contains("nothing was written"),
        "{refused}"
    );
    assert_eq!(wal.group(3).expect("group 3").last_index, index - 1);
    // Not poisoned: a sync goes through, and what fits still goes in.
    block_on(wal.sync()).expect("sync after NoRoom");
    assert!(matches!(
        wal.append_entries(3, index, &[(1, payload(3, index).as_slice())]),
        Err(WalError::NoRoom { .. })
    ));
    wal.storage().set_disk_full(false);
    for at in index..index + 50 {
        wal.append_entries(3, at, &[(1, payload(3, at).as_slice())])
            .expect("append once a segment can be made");
    }
    block_on(wal.sync()).expect("sync");
    let mut storage = wal.into_storage();
    storage.crash(CrashFault::LoseUnsynced, 7);
    let wal = open(storage).expect("reopen");
    let entries = read_all(&wal, 3);
    assert_eq!(entries.len() as u64, index + 49);
    for (at, entry) in (1..).zip(&entries) {
        assert_eq!(entry.index, at);
        assert_eq!(entry.payload, payload(3, at), "entry {at}");
    }
}

/// The storage of a fresh WAL after [`BATCHES`] batches, each synced.
fn synced_batches() -> MemStorage {
    let mut wal = open(MemStorage::new()).expect("fresh");
    for batch in 1..=BATCHES {
        write_batch(&mut wal, batch);
        block_on(wal.sync()).expect("sync");
    }
    wal.into_storage()
}

#[test]
fn lost_segment_in_the_middle_is_refused() {
    // Goal: a missing segment file between present ones fails open and names the file.
    let mut storage = synced_batches();
    assert!(storage.segment_seqs().len() >= 3, "workload spans segments");
    storage.lose_segment(2);
    match open(storage) {
        Err(WalOpenError::MissingSegment { file }) => {
            assert_eq!(file, "mem:00000000000000000002.wal")
        }
        other => panic!("expected MissingSegment, got {:?}", other.err()),
    }
}

/// Goal (found in review): a middle segment zeroed whole (a file the filesystem lost the
/// blocks of, kept at its size), or in its first block, or with its first record damaged, is
/// refused naming that file and what is wrong with it; the refusal blamed a "corrupt record"
/// at the end of the previous file, where the replay stops but nothing is damaged.
#[test]
fn a_middle_segment_damaged_at_its_start_is_named_in_the_refusal() {
    for (zeroed, why) in [
        (0..usize::MAX, "the whole file is zeros"),
        (0..4096, "its header is damaged"),
        (64..96, "its first record is damaged"),
    ] {
        let mut storage = synced_batches();
        assert!(storage.segment_seqs().len() >= 3, "workload spans segments");
        let bytes = storage.segment_bytes(2).to_vec();
        let zeroed = zeroed.start..zeroed.end.min(bytes.len());
        for offset in zeroed {
            storage.corrupt(2, offset, bytes[offset]);
        }
        match open(storage) {
            Err(error @ WalOpenError::NextSegmentBroken { .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!("mem:00000000000000000002.wal: {why}: record")),
                    "{message}"
                );
                assert!(
                    message.contains("end of the log in mem:00000000000000000001.wal"),
                    "{message}"
                );
            }
            other => panic!("{why}: expected NextSegmentBroken, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_segment_the_device_cannot_read_is_refused_naming_file_and_offset() {
    // Goal: a part of the log the device cannot read (a bad sector) fails open with the file
    // and offset, as damage; it is never skipped as a torn tail, even in the last segment.
    let written = synced_batches;
    let seqs = written().segment_seqs();
    assert!(seqs.len() >= 3, "workload spans segments");
    for seq in [seqs[1], seqs[seqs.len() - 1]] {
        let mut storage = written();
        storage.make_unreadable(seq, 4096);
        match open(storage) {
            Err(error @ WalOpenError::Unreadable { .. }) => {
                assert!(error.is_damage());
                let message = error.to_string();
                let file = format!("mem:{seq:020}.wal");
                assert!(
                    message.starts_with(&format!("{file} cannot be read from offset 4096")),
                    "{message}"
                );
                assert!(message.ends_with("refusing to open"), "{message}");
            }
            other => panic!("segment {seq}: expected Unreadable, got {:?}", other.err()),
        }
    }
    let wal = open(written()).expect("the same log, readable, opens");
    assert_eq!(intact_entries(&wal, 0, "readable"), BATCHES);
}

#[test]
fn snapshots_reclaim_dead_segments_and_reopen_keeps_live_entries() {
    // Goal: once every group snapshots past a segment's entries and that is durable, the
    // segment is recycled or removed; the live tail survives a reopen.
    let mut wal = open(MemStorage::new()).expect("fresh");
    for batch in 1..=BATCHES {
        write_batch(&mut wal, batch);
        block_on(wal.sync()).expect("sync");
    }
    assert!(!wal.reclaim_waits_for_sync(), "no segment is dead yet");
    let before = wal.storage().segment_seqs().len();
    for group in 0..GROUPS {
        wal.mark_snapshot(group, BATCHES - 2, BATCHES - 2)
            .expect("snapshot");
    }
    // The markers wait for a sync that nothing else would begin; one begun covers them.
    assert!(wal.reclaim_waits_for_sync());
    let ticket = wal.begin_sync().expect("sync");
    assert!(!wal.reclaim_waits_for_sync());
    wal.finish_sync(block_on(ticket.wait())).expect("sync");
    let stats = wal.stats();
    assert!(
        stats.segments_recycled + stats.segments_removed > 0,
        "{stats:?}"
    );
    let after = wal.storage().segment_seqs().len();
    assert!(after < before, "segments {before} -> {after}");
    let wal = open(wal.into_storage()).expect("reopen");
    for group in 0..GROUPS {
        let state = wal.group(group).expect("group");
        assert_eq!(
            (state.first_index, state.last_index),
            (BATCHES - 1, BATCHES)
        );
        assert_eq!(state.hard_state.map(|h| h.term), Some(BATCHES));
        let entries = read_all(&wal, group);
        assert_eq!(entries[1].payload, payload(group, BATCHES));
    }
}

#[test]
fn a_quiet_group_is_named_once_its_old_entry_is_all_that_keeps_old_segments() {
    // Goal: group 1 writes once, then only group 0 writes and snapshots; group 1's entry
    // alone keeps the first segment (and every one after it) alive, and the WAL names it.
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(1, 1, &[(1, &payload(1, 1))])
        .expect("append");
    let mut index = 0;
    while wal.storage().segment_seqs().len() < 4 {
        index += 1;
        wal.append_entries(0, index, &[(1, &payload(0, index))])
            .expect("append");
        wal.mark_snapshot(0, index, 1).expect("snapshot");
        block_on(wal.sync()).expect("sync");
    }
    let segments = wal.storage().segment_seqs().len();
    assert_eq!(wal.groups_holding_old_segments(segments), []);
    // Group 1's one entry (index 1) is in the oldest segment.
    assert_eq!(wal.groups_holding_old_segments(2), [(1, 1)]);
    // Once group 1 snapshots too, the next sync frees every segment but the newest.
    wal.mark_snapshot(1, 1, 1).expect("snapshot");
    block_on(wal.sync()).expect("sync");
    assert_eq!(wal.groups_holding_old_segments(1), []);
    assert!(
        wal.storage().segment_seqs().len() < segments,
        "{:?}",
        wal.stats()
    );
}

#[test]
fn one_sync_reports_every_group_written_since_the_last() {
    // Goal: group commit: a single sync covers all groups and says how far each is durable.
    let mut wal = open(MemStorage::new()).expect("fresh");
    for group in 0..GROUPS {
        let bytes = payload(group, 1);
        wal.append_entries(group, 1, &[(1, &bytes), (1, &bytes)])
            .expect("append");
    }
    let syncs_before = wal.storage().syncs_completed();
    let report = block_on(wal.sync()).expect("sync");
    assert_eq!(wal.storage().syncs_completed() - syncs_before, 1);
    assert_eq!(report.groups.len(), GROUPS as usize);
    assert!(
        report
            .groups
            .iter()
            .all(|g| g.last_index == 2 && g.last_term == 1)
    );
    let empty = block_on(wal.sync()).expect("sync");
    assert!(empty.groups.is_empty());
}

#[test]
fn append_that_cannot_fit_a_segment_is_refused() {
    let mut wal = open(MemStorage::new()).expect("fresh");
    let big = vec![7u8; SEGMENT_BYTES as usize];
    let err = wal
        .append_entries(1, 1, &[(1, &big)])
        .expect_err("too large");
    assert!(matches!(err, WalError::RecordTooLarge { .. }), "{err}");
    let gap = wal
        .append_entries(1, 5, &[(1, b"x".as_slice())])
        .expect_err("gap");
    assert!(matches!(gap, WalError::NotContiguous { .. }), "{gap}");
}

#[test]
fn overlapping_syncs_of_whole_blocks_keep_every_acknowledged_record_through_a_crash() {
    // Goal: with up to three syncs in flight, completing in any order, on a storage that
    // writes whole blocks (as O_DIRECT does), a crash at any point keeps every record a
    // finished sync reported durable, and invents nothing. The storage panics if two syncs
    // in flight ever wrote one block. Method: a fixed workload, cut at every batch, with
    // the completions in a scrambled order; each crash fault.
    let config = WalConfig {
        segment_bytes: 64 << 10,
    };
    let mut skipped_bytes = 0;
    for cut in 0..BATCHES {
        for fault in CrashFault::ALL {
            let mut wal =
                block_on(Wal::open(MemStorage::with_whole_blocks(), config)).expect("fresh");
            // (batch, the sync's ticket until it completes, then what it hands to finish)
            let mut in_flight = std::collections::VecDeque::new();
            let mut acknowledged = 0;
            for batch in 1..=cut {
                write_batch(&mut wal, batch);
                in_flight.push_back((batch, Some(wal.begin_sync().expect("begin")), None));
                if in_flight.len() == 3 || batch % 2 == 0 {
                    let pick = (batch as usize * 5 + cut as usize) % in_flight.len();
                    let (_, ticket, done) = &mut in_flight[pick];
                    if let Some(ticket) = ticket.take() {
                        *done = Some(block_on(ticket.wait()));
                    }
                }
                while in_flight.front().is_some_and(|(_, _, done)| done.is_some()) {
                    let (batch, _, done) = in_flight.pop_front().expect("a front");
                    wal.finish_sync(done.expect("done")).expect("finish");
                    acknowledged = batch;
                }
            }
            skipped_bytes += wal.stats().skipped_bytes;
            write_batch(&mut wal, cut + 1);
            drop(in_flight);
            let mut storage = wal.into_storage();
            storage.crash(fault, cut * 10 + fault as u64);
            let wal = block_on(Wal::open(storage, config))
                .unwrap_or_else(|e| panic!("cut {cut}, {fault:?}: reopen failed: {e}"));
            for group in 0..GROUPS {
                let last = intact_entries(&wal, group, &format!("cut {cut}, {fault:?}"));
                assert!(
                    (acknowledged..=cut + 1).contains(&last),
                    "cut {cut}, {fault:?}, group {group}: {last} entries, {acknowledged} acknowledged"
                );
                if fault == CrashFault::KeepUnsynced {
                    assert_eq!(
                        last,
                        cut + 1,
                        "{fault:?} lost an entry that reached the disk"
                    );
                }
            }
        }
    }
    assert!(skipped_bytes > 0, "no record ever skipped to a fresh block");
}

/// The image of a hard-state record for segment 1 of a WAL without a key, as a client could
/// compute it: `lsn`, durable up to `lsn`.
fn record_image_salted_with_the_seq_alone(lsn: u64) -> Vec<u8> {
    let mut image = vec![0u8; 64];
    image[0..4].copy_from_slice(&64u32.to_le_bytes());
    image[8] = 2; // a hard state
    image[16..24].copy_from_slice(&lsn.to_le_bytes());
    image[24..32].copy_from_slice(&lsn.to_le_bytes());
    image[40..48].copy_from_slice(&9u64.to_le_bytes()); // term
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&1u64.to_le_bytes());
    hasher.update(&image[0..4]);
    hasher.update(&image[8..]);
    image[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    image
}

/// Goal: bytes a client chose never pass for a record (found in review: a value holding the
/// image of a record salted with the segment's seq alone, found after the end of the log,
/// proved the record at the end synced, and recovery refused the log as damaged; a reused
/// file's old values could do the same at a clean restart). Record checksums are now salted
/// with the WAL's secret key too. Method: a synced entry; then an entry whose value holds
/// such an image (lsn 8, durable up to 8, while lsn 3 is due at the end), reaching the disk
/// with a byte of its header wrong (a torn write). The log opens, taking that for a torn
/// tail, with the synced entry.
#[test]
fn a_record_image_in_a_value_never_passes_for_a_record() {
    let mut wal = open(MemStorage::new()).expect("fresh");
    wal.append_entries(1, 1, &[(1, b"kept".as_slice())])
        .expect("append");
    block_on(wal.sync()).expect("sync");
    // Header 64, checkpoint 48, the first entries record 80 (padding included); the value
    // follows its record's header and two prefixes of 16 bytes.
    let torn_at = 112 + 80;
    let value = record_image_salted_with_the_seq_alone(3 + 5);
    wal.append_entries(1, 2, &[(1, value.as_slice())])
        .expect("append");
    let mut storage = wal.into_storage();
    storage.crash(CrashFault::KeepUnsynced, 1);
    let image = storage.view(1, torn_at + 72..torn_at + 72 + 64);
    assert_eq!(&image[..], &value[..], "the value's place in the segment");
    storage.corrupt(1, torn_at + 16, 0x04);
    let wal = open(storage).expect("opens");
    let report = wal.recovery_report().clone();
    assert_eq!(
        report.end_action,
        Some(StopAction::TruncateTornTail),
        "{report:?}"
    );
    assert_eq!(read_all(&wal, 1).len(), 1);
}

/// Goal: more groups than a segment's checkpoint can hold get a clear refusal, and every
/// group the WAL took can still write (found in review: the room left beside the checkpoint
/// was computed by a subtraction that overflowed: a panic in tests, and in release a wrapped
/// bound that let a segment open without its checkpoint). Method: 4 KiB segments; a hard
/// state for each of groups 0, 1, … until one is refused (the checkpoint with its line would
/// leave no room for its record), and three more; then group 0 writes again (rotations),
/// and the groups taken are all there after a reopen.
#[test]
fn more_groups_than_a_checkpoint_holds_are_refused_and_the_rest_kept() {
    let config = WalConfig {
        segment_bytes: 4096,
    };
    let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
    let state = HardState {
        term: 3,
        vote: 1,
        commit: 0,
    };
    let mut kept = 0;
    while wal.set_hard_state(kept, state).is_ok() {
        kept += 1;
    }
    assert!((60..=80).contains(&kept), "{kept} groups");
    for group in kept..kept + 3 {
        let refused = wal.set_hard_state(group, state).unwrap_err();
        assert!(
            matches!(refused, WalError::RecordTooLarge { .. }),
            "{refused}"
        );
    }
    for _ in 0..100 {
        wal.set_hard_state(0, state).expect("a group it holds");
    }
    assert!(wal.stats().rotations > 1, "{:?}", wal.stats());
    block_on(wal.sync()).expect("sync");
    let wal = block_on(Wal::open(wal.into_storage(), config)).expect("reopens");
    for group in 0..kept {
        assert_eq!(wal.group(group).and_then(|g| g.hard_state), Some(state));
    }
}

/// Goal: while no next segment can be had, the end of the active segment is kept: entries
/// stop short of the room kept for hard states and markers, hard states short of the
/// markers', and every hard state and marker kept for still goes in, though a sync is in
/// flight each time the next record comes: a block skipped then would eat kept room (found
/// in review; both rooms span blocks here, so a skip could take from them). A refused
/// record changes nothing.
#[test]
fn the_end_of_the_active_segment_is_kept_for_hard_states_then_markers() {
    const MARKERS: usize = 128;
    const HARD_STATES: usize = 128;
    // Both as the WAL lays them out: a 40-byte header and a 16- or 24-byte payload.
    let (marker_bytes, hard_state_bytes) = (56, 64);
    let config = WalConfig {
        segment_bytes: 64 << 10,
    };
    let mut wal = block_on(Wal::open(MemStorage::with_whole_blocks(), config)).expect("fresh");
    wal.set_rotation_builds(false);
    wal.keep_room(MARKERS, HARD_STATES);
    let kept_for_markers = MARKERS * marker_bytes;
    let kept = kept_for_markers + HARD_STATES * hard_state_bytes;
    let refused = |result: &Result<(), WalError>| matches!(result, Err(WalError::NotReady { .. }));
    let mut index = 1;
    while !refused(&wal.append_entries(3, index, &[(1, payload(3, 1).as_slice())])) {
        index += 1;
        assert!(index < 10_000, "never refused");
    }
    let room = wal.active_room_bytes();
    assert!(room >= kept && room < kept + 256, "{room} bytes left");
    assert_eq!(wal.group(3).expect("group 3").last_index, index - 1);
    // Writes `record` while a sync is in flight, or, where it is refused then (it would
    // skip a block), once the sync ended; whether it went in. Refusals during a sync are
    // counted, to show the skip was met.
    let refused_in_sync = std::cell::Cell::new(0);
    let during_a_sync =
        |wal: &mut Wal<MemStorage>,
         record: &dyn Fn(&mut Wal<MemStorage>) -> Result<(), WalError>| {
            let ticket = wal.begin_sync().expect("sync");
            let room = wal.active_room_bytes();
            let first = record(wal);
            if refused(&first) {
                assert_eq!(
                    wal.active_room_bytes(),
                    room,
                    "a refused record moved the cursor"
                );
                refused_in_sync.set(refused_in_sync.get() + 1);
            }
            wal.finish_sync(block_on(ticket.wait())).expect("synced");
            match first {
                Ok(()) => true,
                Err(WalError::NotReady { .. }) => match record(wal) {
                    Ok(()) => true,
                    Err(WalError::NotReady { .. }) => false,
                    Err(error) => panic!("{error}"),
                },
                Err(error) => panic!("{error}"),
            }
        };
    let state = |commit| HardState {
        term: 1,
        vote: 0,
        commit,
    };
    let mut hard_states = 0;
    let skipped_bytes = wal.stats().skipped_bytes;
    while during_a_sync(&mut wal, &|wal| {
        wal.set_hard_state(3, state(hard_states as u64))
    }) {
        let stored = wal.group(3).expect("group 3").hard_state;
        assert_eq!(stored, Some(state(hard_states as u64)));
        hard_states += 1;
        assert!(hard_states < 10_000, "never refused");
    }
    assert!(
        hard_states >= HARD_STATES,
        "{hard_states} hard states went in"
    );
    let room = wal.active_room_bytes();
    assert!(room >= kept_for_markers && room < kept_for_markers + hard_state_bytes);
    for marker in 0..MARKERS as u64 {
        let group = 100 + marker;
        assert!(
            during_a_sync(&mut wal, &|wal| wal.mark_snapshot(group, 1, 1)),
            "marker {marker}"
        );
        assert_eq!(wal.group(group).expect("marked").snapshot.index, 1);
        // Meanwhile nothing else goes in.
        assert!(refused(&wal.set_hard_state(3, state(0))));
    }
    assert!(refused_in_sync.get() > 0, "no record met a sync in flight");
    assert_eq!(
        wal.stats().skipped_bytes,
        skipped_bytes,
        "a block was skipped into kept room"
    );
}

/// Goal (found in review): a record skips to a fresh block only while the write of the block
/// the last sync ended in is in flight, not while a later sync that wrote nothing is (it
/// skipped then, wasting the block's rest, and in room kept for others refused the record).
/// Method: on whole-block storage, a record synced; an empty sync begun; a next record goes
/// in at once, in the same block; then, with a sync of it in flight, the next one skips.
#[test]
fn an_empty_sync_in_flight_makes_no_record_skip_a_block() {
    let mut wal = block_on(Wal::open(MemStorage::with_whole_blocks(), config())).expect("fresh");
    let entry = |wal: &mut Wal<MemStorage>, index: u64| {
        wal.append_entries(1, index, &[(1, b"entry".as_slice())])
            .expect("append");
    };
    entry(&mut wal, 1);
    block_on(wal.sync()).expect("sync");
    let empty = wal.begin_sync().expect("an empty sync");
    entry(&mut wal, 2);
    assert_eq!(wal.stats().skipped_bytes, 0, "skipped behind an empty sync");
    wal.finish_sync(block_on(empty.wait())).expect("synced");
    let writing = wal.begin_sync().expect("a sync of entry 2");
    entry(&mut wal, 3);
    assert!(
        wal.stats().skipped_bytes > 0,
        "no skip behind a write in flight"
    );
    wal.finish_sync(block_on(writing.wait())).expect("synced");
}

/// Goal (found in review): a record that would skip a block for a sync in flight, and then needs
/// the next segment, which a full disk cannot give, is refused with the cursor where it was:
/// nothing skipped, the room at the end of the segment still there. Method: on whole-block storage,
/// small records until the cursor sits in the second-to-last block, mid-block; a sync of the last
/// one in flight; the disk full; a record of more than a block refused; then, the disk back, the
/// same record goes in and survives a crash.
#[test]
fn a_record_refused_for_a_full_disk_skips_no_block() {
    let config = WalConfig {
        segment_bytes: 64 << 10,
    };
    let mut wal = block_on(Wal::open(MemStorage::with_whole_blocks(), config)).expect("fresh");
    let block_bytes = 4096;
    let mut index = 1;
    loop {
        wal.append_entries(1, index, &[(1, b"small".as_slice())])
            .expect("append");
        index += 1;
        let room_bytes = wal.active_room_bytes();
        if room_bytes < 2 * block_bytes && room_bytes % block_bytes != 0 {
            break;
        }
        block_on(wal.sync()).expect("sync");
    }
    let in_flight = wal.begin_sync().expect("a sync of the last record");
    wal.storage().set_disk_full(true);
    let (room_bytes, skipped_bytes) = (wal.active_room_bytes(), wal.stats().skipped_bytes);
    let large = vec![7u8; block_bytes + 100];
    let refused = wal.append_entries(1, index, &[(1, large.as_slice())]);
    assert!(
        matches!(refused, Err(WalError::NoRoom { .. })),
        "{refused:?}"
    );
    assert_eq!(wal.active_room_bytes(), room_bytes, "the cursor moved");
    assert_eq!(
        wal.stats().skipped_bytes,
        skipped_bytes,
        "a block was skipped"
    );
    wal.finish_sync(block_on(in_flight.wait())).expect("synced");
    wal.storage().set_disk_full(false);
    wal.append_entries(1, index, &[(1, large.as_slice())])
        .expect("append once a segment can be made");
    block_on(wal.sync()).expect("sync");
    let mut storage = wal.into_storage();
    storage.crash(CrashFault::LoseUnsynced, 3);
    let wal = block_on(Wal::open(storage, config)).expect("reopen");
    assert_eq!(wal.group(1).expect("group 1").last_index, index);
}
