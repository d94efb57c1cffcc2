//! The WAL against a plain model: random appends, overwrites, hard states, truncations,
//! snapshots (compaction), syncs, failed syncs, crashes with every fault and reopens. After
//! every reopen the WAL must hold exactly the model's state after some prefix of the
//! operations that includes every synced one: nothing synced lost, nothing invented.
//! A second run does the same on a storage that writes whole blocks (as O_DIRECT does), with
//! up to three syncs in flight that complete in a random order and finish in order.
//! A failure prints `SEED=<n>`; `COHORT_WAL_SEED=<n>` replays that seed alone.

use cohort::wal::{
    CrashFault, GroupState, HardState, MemStorage, SnapshotMarker, StopAction, Wal, WalConfig,
    WalEntry, WalError,
};
use futures_lite::future::block_on;

const GROUPS: u64 = 3;
const SEEDS: u64 = 300;
const STEPS: usize = 400;

/// The test's only randomness, seeded (the project's SplitMix64).
type Rng = cohort::raft::Prng;

#[derive(Clone, Debug)]
enum Op {
    Append {
        group: u64,
        first_index: u64,
        entries: Vec<(u64, Vec<u8>)>,
    },
    HardState(u64, HardState),
    Truncate(u64, u64),
    Snapshot(u64, SnapshotMarker),
}

/// One group as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ModelGroup {
    hard_state: Option<HardState>,
    snapshot: SnapshotMarker,
    /// Live entries, index `snapshot.index + 1` first.
    entries: Vec<(u64, Vec<u8>)>,
}

impl ModelGroup {
    fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append {
                first_index,
                entries,
                ..
            } => {
                self.entries
                    .truncate((first_index - self.snapshot.index - 1) as usize);
                self.entries.extend(entries.iter().cloned());
            }
            Op::HardState(_, state) => self.hard_state = Some(*state),
            Op::Truncate(_, from) => self
                .entries
                .truncate((from - self.snapshot.index - 1) as usize),
            Op::Snapshot(_, marker) => {
                let dead = (marker.index - self.snapshot.index) as usize;
                self.entries.drain(..dead.min(self.entries.len()));
                self.snapshot = *marker;
            }
        }
    }
}

fn group_of(op: &Op) -> u64 {
    match op {
        Op::Append { group, .. } => *group,
        Op::HardState(g, _) | Op::Truncate(g, _) | Op::Snapshot(g, _) => *g,
    }
}

fn model_after(ops: &[Op]) -> Vec<ModelGroup> {
    let mut groups = vec![ModelGroup::default(); GROUPS as usize];
    for op in ops {
        groups[group_of(op) as usize].apply(op);
    }
    groups
}

/// A valid random operation for the model's current state.
fn random_op(rng: &mut Rng, groups: &[ModelGroup]) -> Op {
    let group = rng.below(GROUPS);
    let g = &groups[group as usize];
    let term = g.hard_state.map_or(1, |h| h.term);
    match rng.below(10) {
        0..=5 => {
            // Mostly extend; sometimes overwrite a suffix.
            let back = if rng.below(4) == 0 {
                rng.below(g.entries.len() as u64 + 1)
            } else {
                0
            };
            let first_index = g.last_index() + 1 - back;
            let count = 1 + rng.below(4);
            let entries = (0..count)
                .map(|_| {
                    let len_max = if rng.below(8) == 0 { 900 } else { 60 };
                    let len = rng.below(len_max) as usize;
                    let fill = rng.next_u64() as u8;
                    (term, vec![fill; len])
                })
                .collect();
            Op::Append {
                group,
                first_index,
                entries,
            }
        }
        6 => Op::HardState(
            group,
            HardState {
                term: term + rng.below(2),
                vote: rng.below(5),
                commit: rng.below(g.last_index() + 1),
            },
        ),
        7 if !g.entries.is_empty() => Op::Truncate(
            group,
            g.snapshot.index + 1 + rng.below(g.entries.len() as u64),
        ),
        _ => {
            let index = g.snapshot.index + rng.below(g.entries.len() as u64 + 3);
            Op::Snapshot(group, SnapshotMarker { index, term })
        }
    }
}

fn apply_to_wal(wal: &mut Wal<MemStorage>, op: &Op) -> Result<(), WalError> {
    match op {
        Op::Append {
            group,
            first_index,
            entries,
        } => {
            let refs: Vec<(u64, &[u8])> = entries.iter().map(|(t, p)| (*t, p.as_slice())).collect();
            wal.append_entries(*group, *first_index, &refs)
        }
        Op::HardState(group, state) => wal.set_hard_state(*group, *state),
        Op::Truncate(group, from) => wal.truncate(*group, *from),
        Op::Snapshot(group, marker) => wal.mark_snapshot(*group, marker.index, marker.term),
    }
}

/// The WAL's state in the model's terms.
fn observe(wal: &Wal<MemStorage>) -> Vec<ModelGroup> {
    (0..GROUPS)
        .map(|group| {
            let Some(state) = wal.group(group) else {
                return ModelGroup::default();
            };
            let GroupState {
                hard_state,
                snapshot,
                first_index,
                last_index,
                ..
            } = state;
            assert_eq!(
                first_index,
                snapshot.index + 1,
                "group {group}: hole after snapshot"
            );
            let mut out: Vec<WalEntry> = Vec::new();
            wal.entries(group, first_index..last_index + 1, &mut out)
                .expect("live entries are readable");
            ModelGroup {
                hard_state,
                snapshot,
                entries: out
                    .into_iter()
                    .map(|e| (e.term, e.payload.to_vec()))
                    .collect(),
            }
        })
        .collect()
}

/// The largest prefix length `k` in `synced..=ops.len()` whose model state the WAL shows.
fn matching_prefix(wal: &Wal<MemStorage>, ops: &[Op], synced: usize) -> Option<usize> {
    let seen = observe(wal);
    (synced..=ops.len()).rev().find(|&k| {
        let model = model_after(&ops[..k]);
        // A group the WAL never heard of equals the default model group.
        model == seen
    })
}

/// How much of the WAL a run exercised, so the test fails if the workload stops reaching it.
#[derive(Default, Debug)]
struct Coverage {
    reopens: u64,
    torn_tails: u64,
    rotations: u64,
    recycled: u64,
    removed: u64,
    poisoned: u64,
    /// Syncs begun while another was in flight, and bytes skipped to start a fresh block.
    overlapped: u64,
    skipped_bytes: u64,
}

impl Coverage {
    fn note_reopen(&mut self, wal: &Wal<MemStorage>) {
        self.reopens += 1;
        if wal.recovery_report().end_action == Some(StopAction::TruncateTornTail) {
            self.torn_tails += 1;
        }
    }

    fn add_stats(&mut self, wal: &Wal<MemStorage>) {
        let stats = wal.stats();
        self.rotations += stats.rotations;
        self.recycled += stats.segments_recycled;
        self.removed += stats.segments_removed;
        self.skipped_bytes += stats.skipped_bytes;
    }
}

/// A sync begun and not finished: the number of ops it covers, its ticket until it
/// completes, then what it hands to `finish_sync`.
struct InFlight {
    ops: usize,
    /// The WAL's record count when it began: equal to the one before it, it wrote nothing.
    records: u64,
    ticket: Option<cohort::wal::SyncTicket<cohort::wal::MemSyncer>>,
    done: Option<cohort::wal::SyncDone>,
}

/// Syncs in flight at once, at most.
const IN_FLIGHT_MAX: usize = 3;

/// Finishes the syncs at the front that completed: `synced` becomes the ops they cover and
/// `synced_records` the record count when the last of them began.
fn finish_completed(
    wal: &mut Wal<MemStorage>,
    in_flight: &mut Vec<InFlight>,
    synced: &mut usize,
    synced_records: &mut u64,
) {
    while in_flight.first().is_some_and(|s| s.done.is_some()) {
        let sync = in_flight.remove(0);
        wal.finish_sync(sync.done.expect("completed"))
            .expect("sync");
        (*synced, *synced_records) = (sync.ops, sync.records);
    }
}

/// Completes every sync in flight, oldest first, and finishes them.
fn drain(
    wal: &mut Wal<MemStorage>,
    in_flight: &mut Vec<InFlight>,
    synced: &mut usize,
    synced_records: &mut u64,
) {
    for sync in in_flight.iter_mut() {
        if let Some(ticket) = sync.ticket.take() {
            sync.done = Some(block_on(ticket.wait()));
        }
    }
    finish_completed(wal, in_flight, synced, synced_records);
}

fn run_seed(seed: u64, whole_blocks: bool, coverage: &mut Coverage) {
    let mut rng = Rng::new(seed);
    let config = WalConfig {
        segment_bytes: if whole_blocks { 16384 } else { 8192 },
    };
    let mut ops: Vec<Op> = Vec::new();
    let mut synced = 0usize;
    let storage = if whole_blocks {
        MemStorage::with_whole_blocks()
    } else {
        MemStorage::new()
    };
    let mut wal = block_on(Wal::open(storage, config)).expect("fresh open");
    let mut in_flight: Vec<InFlight> = Vec::new();
    // The WAL's record count when the last finished sync began (0: none since it opened).
    let mut synced_records = 0;
    for step in 0..STEPS {
        match rng.below(40) {
            28..=34 if whole_blocks => {
                // Begin a sync, complete one in flight, or both; finish what can be.
                if in_flight.len() < IN_FLIGHT_MAX && rng.below(2) == 0 {
                    coverage.overlapped += u64::from(!in_flight.is_empty());
                    let ticket = wal.begin_sync().expect("begin sync");
                    in_flight.push(InFlight {
                        ops: ops.len(),
                        records: wal.stats().records,
                        ticket: Some(ticket),
                        done: None,
                    });
                }
                if !in_flight.is_empty() && rng.below(3) != 0 {
                    let pick = rng.below(in_flight.len() as u64) as usize;
                    if let Some(ticket) = in_flight[pick].ticket.take() {
                        in_flight[pick].done = Some(block_on(ticket.wait()));
                    }
                }
                finish_completed(&mut wal, &mut in_flight, &mut synced, &mut synced_records);
            }
            0..=27 => {
                let op = random_op(&mut rng, &model_after(&ops));
                apply_to_wal(&mut wal, &op)
                    .unwrap_or_else(|e| panic!("step {step}: {op:?} refused: {e}"));
                ops.push(op);
            }
            28..=34 => {
                block_on(wal.sync()).expect("sync");
                synced = ops.len();
            }
            35 | 36 => wal.prepare_next().expect("prepare"),
            37 => {
                drain(&mut wal, &mut in_flight, &mut synced, &mut synced_records);
                // Something must be unsynced for the sync to reach the disk at all.
                let op = random_op(&mut rng, &model_after(&ops));
                apply_to_wal(&mut wal, &op).expect("valid op");
                ops.push(op);
                wal.storage().fail_next_sync();
                let err = block_on(wal.sync()).expect_err("injected failure");
                assert!(matches!(err, WalError::SyncFailed { .. }), "{err}");
                let later = wal.set_hard_state(0, HardState::default());
                assert!(
                    matches!(later, Err(WalError::Poisoned { .. })),
                    "not poisoned"
                );
                coverage.poisoned += 1;
                wal =
                    crash_and_reopen(wal, config, &mut rng, &mut ops, &mut synced, step, coverage);
                synced_records = 0;
            }
            _ => {
                // Syncs that completed in a row from the oldest (or wrote nothing) are on
                // disk whole; a crash loses the others (the storage keeps those that
                // completed after a gap, which recovery must then drop).
                let mut on_disk = synced;
                let mut records = synced_records;
                for sync in &in_flight {
                    if sync.done.is_none() && sync.records != records {
                        break;
                    }
                    (on_disk, records) = (sync.ops, sync.records);
                }
                in_flight.clear();
                synced = on_disk;
                wal =
                    crash_and_reopen(wal, config, &mut rng, &mut ops, &mut synced, step, coverage);
                synced_records = 0;
            }
        }
    }
    coverage.add_stats(&wal);
}

/// Crashes the storage under `wal` with a random fault, reopens it, and checks it shows a
/// prefix of `ops` with at least the `synced` first ones; `ops` and `synced` become that
/// prefix.
fn crash_and_reopen(
    wal: Wal<MemStorage>,
    config: WalConfig,
    rng: &mut Rng,
    ops: &mut Vec<Op>,
    synced: &mut usize,
    step: usize,
    coverage: &mut Coverage,
) -> Wal<MemStorage> {
    coverage.add_stats(&wal);
    let mut storage = wal.into_storage();
    let fault = CrashFault::ALL[rng.below(CrashFault::ALL.len() as u64) as usize];
    storage.crash(fault, rng.next_u64());
    let wal = block_on(Wal::open(storage, config))
        .unwrap_or_else(|e| panic!("step {step}: reopen after {fault:?} failed: {e}"));
    let k = matching_prefix(&wal, ops, *synced).unwrap_or_else(|| {
        panic!(
            "step {step}: after {fault:?} the WAL matches no prefix of {} ops with at least \
             the {} synced ones\nWAL:   {:?}\nmodel: {:?}",
            ops.len(),
            synced,
            observe(&wal),
            model_after(&ops[..*synced])
        )
    });
    if fault == CrashFault::LoseUnsynced {
        assert_eq!(
            model_after(&ops[..k]),
            model_after(&ops[..*synced]),
            "kept unsynced data"
        );
    }
    if fault == CrashFault::KeepUnsynced {
        assert_eq!(k, ops.len(), "lost data that reached the disk");
    }
    ops.truncate(k);
    *synced = k;
    coverage.note_reopen(&wal);
    wal
}

#[test]
fn reopen_after_any_crash_shows_a_prefix_with_everything_synced() {
    // Goal: no synced record is lost and no garbage is accepted, across random workloads
    // with compaction and every crash fault. Method: seeded model test, see the file doc.
    let coverage = run_seeds(false);
    assert!(coverage.torn_tails > 100, "{coverage:?}");
}

#[test]
fn with_syncs_overlapping_on_whole_blocks_reopen_shows_everything_finished_or_on_disk() {
    // Goal: the same with up to three syncs in flight on a storage that writes whole blocks:
    // a finished sync, or one that completed after every one before it, is never lost; two
    // syncs in flight never share a block (the storage panics if they do).
    let coverage = run_seeds(true);
    assert!(
        coverage.overlapped > 1000 && coverage.skipped_bytes > 0,
        "{coverage:?}"
    );
}

/// Runs every seed (or `COHORT_WAL_SEED` alone) and checks the workload reached every part.
fn run_seeds(whole_blocks: bool) -> Coverage {
    let seeds: Vec<u64> = match std::env::var("COHORT_WAL_SEED") {
        Ok(seed) => vec![seed.parse().expect("COHORT_WAL_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    let all_seeds = seeds.len() > 1;
    let mut coverage = Coverage::default();
    for seed in seeds {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_seed(seed, whole_blocks, &mut coverage)
        }));
        if let Err(panic) = outcome {
            eprintln!("SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("{coverage:?}");
    if all_seeds {
        assert!(coverage.reopens > 1000, "{coverage:?}");
        assert!(coverage.rotations > 1000, "{coverage:?}");
        assert!(
            coverage.recycled > 100 && coverage.removed > 100,
            "{coverage:?}"
        );
        assert!(coverage.poisoned > 100, "{coverage:?}");
        return coverage;
    }
    Coverage {
        torn_tails: u64::MAX,
        overlapped: u64::MAX,
        skipped_bytes: u64::MAX,
        ..coverage
    }
}

/// Goal: `entries_bytes_max` is exactly what one append may carry. Method: with three groups
/// logged (a fresh segment's checkpoint names them all), an append of exactly the bound fits
/// even after the active segment is partly used, and one byte more is refused, not written.
#[test]
fn entries_bytes_max_is_the_largest_append_that_fits() {
    let config = WalConfig {
        segment_bytes: 8192,
    };
    let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh open");
    for group in 0..GROUPS {
        wal.append_entries(group, 1, &[(1, b"x")])
            .expect("small append");
    }
    let max = wal.entries_bytes_max(GROUPS as usize);
    let one_entry = |bytes: usize| vec![7u8; bytes - cohort::wal::ENTRY_PREFIX_BYTES];
    let too_big = one_entry(max + 1);
    let err = wal
        .append_entries(0, 2, &[(1, &too_big)])
        .expect_err("one byte over the bound");
    assert!(matches!(err, WalError::RecordTooLarge { .. }), "{err}");
    let fits = one_entry(max);
    wal.append_entries(0, 2, &[(1, &fits)])
        .expect("exactly the bound fits (in a fresh segment)");
    assert_eq!(wal.group(0).expect("group 0").last_index, 2);
}
