//! The core loop's log on a real WAL: Ready → WAL records, WAL recovery → the groups'
//! `Persisted` state, and a first start that writes each group's bootstrap entry.
//!
//! Entry payloads in the WAL are `kind u8 | data`: the WAL stores opaque bytes and the Raft
//! entry kind must survive a restart. The kind goes in as the payload's head and the data as
//! its shared body, so a big entry's bytes reach the page cache with the kernel's copy only.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::kv::{KvStore, SnapshotJob};
use crate::raft::{
    Entry, EntryKind, GroupId, HardState, LogIndex, Message, MessageBody, NodeId, Persisted, Ready,
    Snapshot, Term,
};
use crate::shard::core::{CoreLog, Received, Staged};

use super::executor::Lane;
use super::room_kept::{RoomKept, room_for_snapshots, room_not_kept};
use super::snapshot_file;
use crate::wal::{
    BuiltSegment, ENTRY_PREFIX_BYTES, EntryPayload, FileStore, SyncDone, SyncMode as WalSync, Wal,
    WalConfig, WalEntry, WalError, WalOpenError,
};

use super::config::{NodeConfig, SyncMode};

pub struct WalLog {
    /// The core's folder: WAL segments and one snapshot file per group.
    dir: PathBuf,
    wal: Wal<FileStore>,
    /// Groups of this core: a fresh segment's checkpoint has a line for each.
    groups: usize,
    /// Segments the WAL may hold before groups that keep old ones alive must snapshot.
    segments_kept: usize,
    /// Segments the WAL may hold at once (`NodeConfig::wal_segments_max`; `usize::MAX`: no
    /// cap): the next is not built while as many are live.
    segments_max: usize,
    /// `build_failed` says the WAL is at `segments_max`: flow control, looked at again each
    /// turn, warned of at most once a minute (`said_at_cap`), its end not logged.
    at_cap: bool,
    said_at_cap: crate::repeats::Repeats,
    /// The next segment, being built on a blocking thread; `Some(result)` once done.
    building: Option<Slot<io::Result<BuiltSegment>>>,
    /// Set, and the waker woken, when a build ends (see [`CoreLog::poll_room`]).
    build_ended: Rc<(Cell<bool>, RefCell<Option<Waker>>)>,
    /// The room the active segment keeps, while the next one is not ready, for what Raft
    /// cannot do without: a quarter of a segment (see [`CoreLog::entries_wait`]).
    reserve_bytes: usize,
    /// The room every core keeps free on the disk for snapshots of its groups, and this
    /// core's index among them (see [`super::room_kept`]).
    room_kept: (Arc<RoomKept>, u16),
    /// When this core last counted the room it keeps: a count is made before each build of
    /// the next segment, and every [`ROOM_RECOUNT`] (at a start, the first comes before the
    /// log is replayed; an idle core builds nothing for long).
    room_counted_at: Option<Instant>,
    /// The last build of the next segment failed (the disk is full, most likely): why, and
    /// when to try again. Until a build succeeds the log takes no new entries it can avoid
    /// (see [`CoreLog::short_of_space`]), so the room left in the active segment goes to
    /// the records Raft cannot do without.
    build_failed: Option<(String, Instant)>,
    /// Snapshots taken here, being written on a blocking thread (or waiting to be written
    /// again after a failed write). Their WAL markers follow once the files are durable.
    snapshots_writing: BTreeMap<u32, SnapshotWrite>,
    /// The snapshot jobs off the loop (encoding, writing and storing files) take turns here,
    /// leaving the other blocking thread to the next segment's build.
    snapshot_lane: Lane,
    /// Snapshots being encoded on a blocking thread: group → (index, `Some(bytes)` once
    /// done).
    snapshots_encoding: BTreeMap<u32, (u64, Slot<Bytes>)>,
    /// Snapshots received from peers, being checked and stored on a blocking thread before
    /// Raft sees them, in the order they came.
    snapshots_receiving: VecDeque<ReceivedSnapshot>,
    /// (group, index) of the received snapshots whose files are durable and which Raft may
    /// install: the Ready that installs one only writes the WAL's part. One Raft answered
    /// without installing it (its term or commit moved on while it was stored) stays until
    /// the group installs a later one. It is not dropped when a newer one is stored: an
    /// older one whose install is under way would then have its file written again, on the
    /// loop (found in review).
    snapshots_stored: BTreeSet<(u32, u64)>,
    /// Groups whose last snapshots from peers failed to store: (the failures in a row, when
    /// the next may be taken). A disk with less room than the state is filled by every try,
    /// and other writers fail while it is: the tries grow rare, as own snapshot writes do.
    receives_failed: BTreeMap<u32, (u32, Instant)>,
    /// A record written after a sync that made a vote durable, to prove that vote synced
    /// (see [`WalLog::prove_vote`]), waits for a sync to begin.
    vote_proof_unsynced: bool,
    /// The group whose vote, synced, could not be proved for want of room (the next segment
    /// not ready): `maintain` writes the proof once there is room.
    vote_unproved: Option<u64>,
    /// A sync made records durable that no later record proves synced yet (see
    /// [`WalLog::prove_synced`]): the log's next lsn when it ended, and a group whose hard
    /// state a proof may write again.
    synced_unproved: Option<(u64, u64, Instant)>,
    /// The log's next lsn after the last record a proof must follow: entries, a truncation,
    /// a snapshot marker (a commit alone needs none: dropped, it only moves back; votes are
    /// proved apart).
    unproved_through: u64,
    /// The log's next lsn after the last proof written: a sync that made nothing durable
    /// past it needs no proof of its own (else an idle core would prove its proofs).
    proved_through: u64,
}

/// How long the log stays quiet after a sync of records no later record proves synced
/// before it writes a proof (see [`WalLog::prove_synced`]): a client's next write usually
/// comes sooner, and proves them for free.
const PROOF_QUIET: Duration = Duration::from_millis(5);

/// A snapshot received from a peer: the message, and `Some(outcome)` once its check and the
/// write of its file are done.
struct ReceivedSnapshot {
    group: u32,
    message: Message,
    /// Its state machine, once loaded and the file stored.
    stored: Slot<Result<Option<KvStore>, String>>,
}

/// Where a job on glommio's blocking thread leaves its result for the loop to pick up.
type Slot<T> = Rc<RefCell<Option<T>>>;

/// The write of one group's snapshot file.
struct SnapshotWrite {
    snapshot: Snapshot,
    /// `Some(result)` once the write is done.
    written: Slot<io::Result<()>>,
    /// After a failed write: when to write it again.
    retry_at: Option<Instant>,
    /// The writes of this snapshot that failed in a row.
    failures: u32,
}

/// After a failed build of the next segment, the next try waits this long.
const BUILD_RETRY: Duration = Duration::from_secs(1);

/// How often a core counts again the room it keeps for snapshots, besides before each build
/// of its next segment (a pass over its folder: review 296).
const ROOM_RECOUNT: Duration = Duration::from_secs(1);

/// After a failed write of a snapshot file the next try waits this long, doubled for each
/// failure in a row, up to [`SNAPSHOT_RETRY_MAX`]. On a disk with less room than the state,
/// every try writes until the disk is full and other writers fail while it is: the tries
/// must grow rare. The WAL keeps what the snapshot covers meanwhile, so nothing is lost.
const SNAPSHOT_RETRY_FIRST: Duration = Duration::from_secs(1);
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);
const _: () = assert!(SNAPSHOT_RETRY_FIRST.as_millis() <= SNAPSHOT_RETRY_MAX.as_millis());

/// How long a stop waits for the jobs in flight on the blocking thread. One cut by the exit
/// is safe (the next start removes a half-written snapshot file and settles a durable one
/// without its marker), so the stop need not hang on a stuck disk; a snapshot of a few GB
/// on a slow disk may take this long.
const STOP_JOBS_WAIT_MAX: Duration = Duration::from_secs(10);

/// While a stop waits for jobs in flight, it looks at them this often.
const STOP_JOBS_POLL: Duration = Duration::from_millis(5);

/// The wait before the next write of a snapshot file whose writes failed `failures` times
/// in a row.
fn snapshot_retry_delay(failures: u32) -> Duration {
    assert!(failures > 0, "no failure to wait after");
    let doublings = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    SNAPSHOT_RETRY_FIRST
        .saturating_mul(doublings)
        .min(SNAPSHOT_RETRY_MAX)
}

/// `--wal-soft-limit-mib` in whole segments: at least two (the active one and the one
/// before), all of them with no limit.
fn segments_kept(config: &NodeConfig) -> usize {
    match config.wal_soft_limit_bytes {
        0 => usize::MAX,
        limit => usize::try_from(limit / config.segment_bytes.max(1))
            .unwrap_or(usize::MAX)
            .max(2),
    }
}

/// Writes `snapshot`'s file of `group` off the loop, in `lane`; the result goes to
/// `written`.
fn spawn_snapshot_write(
    lane: &Lane,
    dir: &Path,
    group: u32,
    snapshot: &Snapshot,
    written: &Slot<io::Result<()>>,
) {
    let (dir, snapshot, written) = (dir.to_path_buf(), snapshot.clone(), Rc::clone(written));
    let lane = lane.clone();
    glommio::spawn_local(async move {
        let job = move || {
            #[cfg(test)]
            tests::slow_snapshot_write(&dir);
            snapshot_file::write(&dir, group, &snapshot)
        };
        let result = lane.off_loop(job).await;
        *written.borrow_mut() = Some(result);
    })
    .detach();
}

/// Said of a snapshot file that could not be written for want of room.
const NO_ROOM: &str = " for want of room";

/// Whether `error` says the disk is full (or the user's quota of it: review 269).
fn is_no_room(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || error.kind() == io::ErrorKind::StorageFull
}

/// `error`, and where it says the disk in `dir` is full while the disk can make no new file
/// (its inodes used up, though `df -h` shows room), that too: a node on a tmpfs of 24
/// inodes said only "No space left on device" with 48 MiB free, and could free nothing
/// without a new file (its snapshot's).
fn no_room_said(dir: &Path, error: &io::Error) -> String {
    let inodes_gone = is_no_room(error) && crate::sys::available_inodes(dir).is_ok_and(|n| n == 0);
    match inodes_gone {
        true => format!(
            "{error} (its file system has no inode left for a new file, though it may have \
             bytes free: see `df -i`; the node goes on once files can be made)"
        ),
        false => error.to_string(),
    }
}

/// A WAL error as an I/O error: `WouldBlock` where the next segment is not prepared and
/// `StorageFull` where the disk had no room to make it (nothing was written: see
/// [`must_wait`]), `Other` for the rest.
fn io_error(error: WalError) -> io::Error {
    let kind = match error {
        WalError::NotReady { .. } => io::ErrorKind::WouldBlock,
        WalError::NoRoom { .. } => io::ErrorKind::StorageFull,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error.to_string())
}

/// Whether `error` is a WAL error that wrote nothing because the next segment is not ready
/// or the disk had no room for it (see [`io_error`]): the call can be made again later.
fn must_wait(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::StorageFull
    )
}

impl WalLog {
    /// Open (or create) the WAL of one core and rebuild each of `groups`; a group the WAL has
    /// never seen starts from `bootstrap` (the initial members of a new cluster, written and
    /// synced here, or nothing for a node that joins and learns everything from a leader). A
    /// `bootstrap` refused (why) fails the open if a group would start from it.
    pub async fn open(
        dir: &Path,
        config: &NodeConfig,
        groups: &BTreeSet<u32>,
        bootstrap: Result<&Persisted, &str>,
    ) -> Result<(WalLog, BTreeMap<u32, Persisted>), String> {
        let nothing = Persisted::empty();
        let (bootstrap, refused) = match bootstrap {
            Ok(bootstrap) => (bootstrap, None),
            Err(why) => (&nothing, Some(why)),
        };
        let mode = match config.sync {
            SyncMode::Always => WalSync::Direct,
            // Syncs still run (they hand the bytes to the kernel and let dead segments be
            // reclaimed), without fdatasync.
            SyncMode::Never => WalSync::PageCache,
        };
        let store = FileStore::open(dir, mode)
            .map_err(|e| format!("cannot open the WAL in {}: {e}", dir.display()))?;
        if let Some(why) = store.direct_io_refused() {
            tracing::warn!(
                dir = %dir.display(),
                "{why}: WAL syncs are a write and an fdatasync"
            );
        }
        // A snapshot write cut by a crash left only its temporary file: never part of the state.
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.to_string_lossy().ends_with(".snap.tmp") {
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        // A process that died between a snapshot file's rename and the folder's sync left a
        // name that only the page cache holds: recovery would write the file's WAL marker
        // durably, and a power loss after it would take the name back and leave a marker
        // without its file, which refuses to open. Every name seen here is made durable first.
        std::fs::File::open(dir)
            .and_then(|folder| folder.sync_all())
            .map_err(|e| format!("cannot sync the folder {}: {e}", dir.display()))?;
        let wal_config = WalConfig {
            segment_bytes: config.segment_bytes,
        };
        let wal = Wal::open(store, wal_config).await.map_err(|e| {
            let what_to_do = if e.is_damage() {
                format!(
                    ". This node's log is damaged; what it acknowledged is on the other members. \
                     Replace it as a dead node: `cohort members remove --id {}` at another \
                     member, then start a node with a new id and an empty data dir with --join \
                     (keep this data dir to look into)",
                    config.id.0
                )
            } else if let WalOpenError::Io { source, .. } = &e
                && source.raw_os_error() == Some(libc::ENOSPC)
            {
                // Found by an operator: a first start on a small disk said only this.
                format!(
                    ". Each core's WAL needs room for segments of --segment-mib ({} MiB here) \
                     as it starts: free room, or give a smaller --segment-mib (it may change \
                     between restarts; every node of a cluster should have the same)",
                    config.segment_bytes >> 20
                )
            } else {
                String::new()
            };
            format!("WAL in {}: {e}{what_to_do}", dir.display())
        })?;
        let report = wal.recovery_report();
        if report.segments_scanned > 0 {
            tracing::info!(
                dir = %dir.display(),
                segments = report.segments_scanned,
                records = report.records_replayed,
                end = ?report.end_action,
                why = report.end_reason,
                discarded = ?report.segments_discarded,
                retired = report.end_segment_retired,
                tail_zeroed = report.end_tail_zeroed,
                "WAL recovered"
            );
        }
        let segments_max = match config.wal_segments_max {
            0 => usize::MAX,
            max => usize::try_from(max).unwrap_or(usize::MAX),
        };
        // Groups snapshot early before the cap is reached, not after: at the cap a quiet
        // group holding the oldest segment would otherwise hold every write back.
        let segments_kept = segments_kept(config)
            .min(segments_max.saturating_sub(2))
            .max(1);
        let mut log = WalLog {
            dir: dir.to_path_buf(),
            wal,
            groups: groups.len(),
            segments_kept,
            segments_max,
            at_cap: false,
            said_at_cap: crate::repeats::Repeats::default(),
            building: None,
            build_ended: Rc::default(),
            reserve_bytes: (config.segment_bytes / 4) as usize,
            room_kept: (Arc::new(RoomKept::new(1)), 0),
            room_counted_at: None,
            build_failed: None,
            snapshots_writing: BTreeMap::new(),
            snapshot_lane: Lane::new(),
            snapshots_encoding: BTreeMap::new(),
            snapshots_receiving: VecDeque::new(),
            snapshots_stored: BTreeSet::new(),
            receives_failed: BTreeMap::new(),
            vote_proof_unsynced: false,
            vote_unproved: None,
            synced_unproved: None,
            unproved_through: 0,
            proved_through: 0,
        };
        let mut recovered = BTreeMap::new();
        let mut written = false;
        for &group in groups {
            // A first start cut before its sync can leave the bootstrap's entries without the
            // hard state written after them (a torn tail): the group would come back with no
            // members and never elect. Every later record of the group follows that hard
            // state (and every checkpoint restates it), so a group that holds the bootstrap's
            // entries, exactly, and no hard state, marker or snapshot file has seen nothing
            // else, and its bootstrap is written again. Anything else (a node that joined,
            // restarted with --peers) is recovered as it is.
            let torn_bootstrap = !bootstrap.entries.is_empty()
                && log
                    .wal
                    .group(u64::from(group))
                    .is_some_and(|state| state.hard_state.is_none() && state.snapshot.index == 0)
                && log.holds_exactly(group, &bootstrap.entries)?
                && snapshot_file::read(dir, group)?.is_none();
            let (found, settled) = if torn_bootstrap {
                (None, false)
            } else {
                log.recover(group)?
            };
            written |= settled;
            let persisted = match found {
                Some(persisted) => persisted,
                None if refused.is_some() => {
                    return Err(format!("group {group}: {}", refused.unwrap_or_default()));
                }
                None if bootstrap.entries.is_empty() => bootstrap.clone(),
                None => {
                    let persisted = bootstrap.clone();
                    log.write(group, &persisted.entries, Some(persisted.hard_state))
                        .map_err(|e| format!("group {group}: cannot write its bootstrap: {e}"))?;
                    written = true;
                    persisted
                }
            };
            recovered.insert(group, persisted);
        }
        // The first next segment is built here, before the node serves anyone. On a full disk
        // the node starts anyway, taking no writes, and `maintain` tries again: a node that
        // could not restart on a full disk would stay down until someone freed space. Nor
        // at the segment cap (a lower open-files limit than at the last run): `maintain`
        // makes one once compaction freed a segment.
        if log.wal.segment_count() < log.segments_max
            && let Some((seq, size_bytes, header)) = log.wal.next_segment_plan()
        {
            let job = log.wal.storage_mut().build_job(seq, size_bytes, header);
            let built = crate::node::off_loop(job).await;
            log.segment_built(built).map_err(|e| e.to_string())?;
        }
        // From here on the loop never makes a segment itself (zero-filling and syncing a
        // whole one stalled every group of the core, and on a nearly full disk it competed
        // for space with the build off the loop, failed, and stopped the node): a record
        // that needs the next segment before its build is done waits, with its Ready, for
        // the core to stage it again (see `CoreLog::stage`).
        log.wal.set_rotation_builds(false);
        // While the next segment cannot be made, a snapshot marker is what frees one: the
        // room it needs is kept from entries and hard states (two per group), and room for
        // hard states (eight per group) from entries, so committed entries can be applied
        // and snapshotted.
        log.wal.keep_room(2 * log.groups, 8 * log.groups);
        // A crash between a vote's sync and the sync of the record proving it (see
        // `prove_vote`) left the vote unproved, last in the log: a hard state is written
        // again, and synced with the rest, which proves every record before it synced.
        // Written once the room for markers is kept: a full disk's restarts must not use
        // it up (without room, `maintain` writes it once the next segment is made).
        let with_hard_state = (log.wal.groups())
            .find(|(_, state)| state.hard_state.is_some())
            .map(|(group, _)| group);
        if let Some(group) = with_hard_state {
            log.prove_vote(group)
                .map_err(|e| format!("group {group}: cannot write its hard state: {e}"))?;
            written |= std::mem::take(&mut log.vote_proof_unsynced);
        }
        if written {
            log.sync().await.map_err(|e| format!("WAL sync: {e}"))?;
        }
        Ok((log, recovered))
    }

    /// Whether the next segment may be built now: no failed build waits for its retry.
    fn build_retry_due(&self) -> bool {
        (self.build_failed.as_ref()).is_none_or(|(_, at)| crate::clock::now() >= *at)
    }

    /// Whether [`CoreLog::maintain`] builds the next segment at its next call, the room kept
    /// for snapshots allowing (not at the open-files cap, nor on a poisoned WAL).
    fn builds_next(&self) -> bool {
        self.wal.needs_prepare()
            && self.building.is_none()
            && self.build_retry_due()
            && self.wal.segment_count() < self.segments_max
            && self.wal.next_segment_plan().is_some()
    }

    /// Keeps room on the disk for snapshots of every core of the node (`kept`), of which this
    /// is core `core` (alone, a log keeps room for its own core's).
    pub fn keep_room_with(&mut self, kept: Arc<RoomKept>, core: u16) {
        self.room_kept = (kept, core);
    }

    /// Why the next segment, of `segment_bytes`, must not be made: it would leave less room
    /// on the disk than the node keeps for snapshots of its states. Not where a spare segment
    /// becomes it (no new room taken), nor where the disk's room cannot be read.
    fn room_not_kept(&mut self, segment_bytes: u64) -> Option<String> {
        if self.wal.storage_mut().spare_bytes() > 0 {
            return None;
        }
        let available = crate::sys::available_bytes(&self.dir).ok()?;
        let kept = &self.room_kept.0;
        room_not_kept(available, segment_bytes, kept.total(), kept.cores())
    }

    /// Takes the outcome of building the next segment: puts it in place, or notes why it
    /// could not be made (taking no writes until a retry succeeds).
    fn segment_built(&mut self, done: io::Result<BuiltSegment>) -> io::Result<()> {
        let built = match done {
            Ok(built) => built,
            Err(error) => {
                self.build_failed_with(&error);
                return Ok(());
            }
        };
        let wanted = self
            .wal
            .next_segment_plan()
            .map(|(seq, bytes, _)| (seq, bytes));
        if wanted != Some((built.seq(), built.size_bytes())) {
            // Compaction recycled a dead segment into its place meanwhile. Kept, its file
            // would hold a segment's worth of a nearly full disk, and the next build would
            // fail for want of that space; `maintain` builds the next one when it is due.
            self.wal.storage_mut().discard_built(built);
            self.build_succeeded();
            return Ok(());
        }
        self.wal.storage_mut().offer_built(built);
        // Adopts the segment just built: a rename, nothing made on the loop.
        match self.wal.prepare_next() {
            Ok(()) => {
                self.build_succeeded();
                Ok(())
            }
            Err(error) if error.nothing_written() => {
                self.build_failed_with(&io_error(error));
                Ok(())
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// A build succeeded, or a freed segment took the next place: there is room on the
    /// disk again, if there was not.
    fn build_succeeded(&mut self) {
        if let Some((why, _)) = self.build_failed.take()
            && !std::mem::take(&mut self.at_cap)
        {
            tracing::info!(
                dir = %self.dir.display(),
                %why,
                "there is a next WAL segment again: taking writes"
            );
        }
    }

    /// Notes that the next segment could not be made, and when to try again.
    fn build_failed_with(&mut self, error: &io::Error) {
        let error = no_room_said(&self.dir, error);
        if self.build_failed.is_none() || std::mem::take(&mut self.at_cap) {
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "cannot make the next WAL segment: taking no writes until it can be made \
                 (trying again every {BUILD_RETRY:?})"
            );
        }
        let retry_at = crate::clock::now() + BUILD_RETRY;
        self.build_failed = Some((error, retry_at));
    }

    /// What group `group` left on disk: its latest snapshot file (if any) and the WAL's
    /// entries after it (None for a group never seen); and whether the WAL was written to
    /// settle a snapshot file newer than its marker (the caller then syncs it).
    fn recover(&mut self, group: u32) -> Result<(Option<Persisted>, bool), String> {
        let snapshot = snapshot_file::read(&self.dir, group)?;
        let marker = self
            .wal
            .group(u64::from(group))
            .map_or(0, |s| s.snapshot.index);
        let snapshot = match snapshot {
            // The marker is written only after its file is durable: a file older than the
            // marker means the file was replaced or damaged.
            Some(s) if s.meta.index.0 < marker => {
                return Err(format!(
                    "group {group}: the WAL says a snapshot at {marker} was taken, but the \
                     snapshot file holds {}: {}",
                    s.meta.index,
                    super::snapshot_file::REPLACE_THE_NODE
                ));
            }
            Some(s) => s,
            None if marker > 0 => {
                return Err(format!(
                    "group {group}: the WAL says a snapshot at {marker} was taken, but its file \
                     is missing from {}: put it back if it was moved; else {}",
                    self.dir.display(),
                    super::snapshot_file::REPLACE_THE_NODE
                ));
            }
            None => Snapshot::default(),
        };
        // A file newer than the marker: the crash came after the file was durable and before
        // the WAL held its marker (and, for a snapshot from the leader, the truncation of the
        // log it replaced). Finish that now, as `settle` would have: otherwise the WAL would
        // refuse the entries after the snapshot (it holds none up to it) and keep every
        // entry the snapshot made dead.
        let settled = snapshot.meta.index.0 > marker;
        if settled {
            self.settle(group, &snapshot)
                .map_err(|e| format!("group {group}: settling its snapshot file: {e}"))?;
        }
        let Some(state) = self.wal.group(u64::from(group)) else {
            return Ok((None, false));
        };
        let mut raw = Vec::new();
        let first = state.first_index.max(snapshot.meta.index.0 + 1);
        if first <= state.last_index {
            self.wal
                .entries(u64::from(group), first..state.last_index + 1, &mut raw)
                .map_err(|e| format!("group {group}: {e}"))?;
        }
        let entries = raw
            .into_iter()
            .map(|e| decode_entry(group, e))
            .collect::<Result<Vec<_>, _>>()?;
        let stored = state.hard_state.unwrap_or_default();
        // A commit past every entry and the snapshot: the store lost the group's last
        // entries (segment files lost or deleted: the WAL sees a hole only between files it
        // finds, and a checkpoint in a later one restates the commit). The Raft core votes
        // for no candidate short of that commit, and a leader sends the entries again.
        let held = entries
            .last()
            .map_or(0, |e| e.index.0)
            .max(snapshot.meta.index.0);
        if stored.commit > held {
            tracing::warn!(
                group,
                commit = stored.commit,
                held,
                dir = %self.dir.display(),
                "the WAL holds this group's entries only up to `held`, below the commit it \
                 recorded: segments that held them are missing; this node votes for no \
                 candidate short of the commit, and takes the entries again from the leader"
            );
        }
        let stored = HardState {
            term: Term(stored.term),
            vote: NodeId(stored.vote),
            commit: LogIndex(stored.commit),
        };
        let persisted = Persisted {
            hard_state: stored.under_snapshot(&snapshot.meta),
            snapshot,
            entries,
        };
        Ok((Some(persisted), settled))
    }

    /// A sync just made `group`'s new term or vote durable, in what may be the log's last
    /// record. Damage to a last record reads as a torn write, which recovery drops: a vote
    /// lives only here, and forgotten it could be given again in the same term (two leaders;
    /// for entries see [`WalLog::prove_synced`], which writes its proof here too). So a
    /// record follows it (its hard state
    /// again), written now that the vote is durable, so that its `durable_lsn` proves the
    /// vote synced, and synced soon (an idle core has nothing else to sync). With no room
    /// for it (the next segment not ready), `maintain` writes it once there is room.
    fn prove_vote(&mut self, group: u64) -> io::Result<()> {
        self.vote_unproved = None;
        let Some(state) = self.wal.group(group).and_then(|g| g.hard_state) else {
            return Ok(());
        };
        // A record proves synced only what was durable when it was written: with a sync
        // still in flight, not the records that sync carries (review 274: they were taken
        // for proved, and never were).
        let proves_all = self.wal.durable_lsn() == self.wal.next_lsn();
        match self.wal.set_hard_state(group, state) {
            Ok(()) => {
                self.vote_proof_unsynced = true;
                if proves_all {
                    self.proved_through = self.wal.next_lsn();
                }
                Ok(())
            }
            Err(WalError::NotReady { .. } | WalError::NoRoom { .. }) => {
                self.vote_unproved = Some(group);
                Ok(())
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// A sync made records durable (entries this node then acknowledged, as a follower, or
    /// counted toward a commit, as a leader) and nothing was written since: damage to the
    /// last of them would read as a torn write, which recovery drops, and with the other
    /// copies of those entries on nodes down at the time, a majority without them could
    /// elect a leader (found by a tester: one flipped bit in the last record, a crash of two
    /// nodes, and an acknowledged write was gone without a word). So a record follows them
    /// (a hard state written again), synced next, whose `durable_lsn` proves them synced:
    /// recovery then refuses the damage. Written as the next sync begins, and only where
    /// nothing was written since the sync ended: under load the next batch proves the last
    /// (its records carry the newer `durable_lsn`), so an idle core alone pays a record and
    /// a sync for it, after [`PROOF_QUIET`] (at once, it cost a client that writes one
    /// request at a time a sync beside each of its writes: 15% of its latency here).
    /// Acknowledgements leave before that proof is synced: a crash within that time still
    /// reads as a torn write.
    fn prove_synced(&mut self) -> io::Result<()> {
        let Some((next_lsn, group, _)) = self.synced_unproved else {
            return Ok(());
        };
        if self.wal.next_lsn() != next_lsn {
            // Written since: those records, in the sync now begun, prove the sync (its end
            // calls for a proof of them in turn).
            self.synced_unproved = None;
            return Ok(());
        }
        if !self.proof_due() {
            // Kept until the log was quiet, or there is room for the proof.
            return Ok(());
        }
        self.synced_unproved = None;
        self.prove_vote(group)
    }

    /// Whether a sync is due to prove the records a sync made durable last
    /// ([`WalLog::prove_synced`]), once the log was quiet for [`PROOF_QUIET`] (no record
    /// written since the sync ended, or since the last written after it). Either records
    /// written since wait for a sync (a commit, which asks for none: review 275 found an idle
    /// leader's entries unproved behind its commit, staged and never written); or nothing was
    /// written since, and then a proof is written where no sync is in flight (its end calls
    /// for a proof again), no vote waits for room to be proved (that proof proves them too),
    /// and the next segment is ready (the room left is kept for votes and snapshot markers).
    fn proof_due(&self) -> bool {
        let Some((next_lsn, _, quiet_since)) = self.synced_unproved else {
            return false;
        };
        let (written_since, every_record_durable) = (
            self.wal.next_lsn() != next_lsn,
            self.wal.durable_lsn() == next_lsn,
        );
        (written_since
            || (every_record_durable && self.vote_unproved.is_none() && !self.wal.needs_prepare()))
            && crate::clock::now().duration_since(quiet_since) >= PROOF_QUIET
    }

    /// Notes a record written: one a proof must follow where `must_prove`, and, while a
    /// proof waits, that the log is not quiet yet.
    fn wrote(&mut self, must_prove: bool) {
        if must_prove {
            self.unproved_through = self.wal.next_lsn();
        }
        if let Some((_, _, quiet_since)) = &mut self.synced_unproved {
            *quiet_since = crate::clock::now();
        }
    }

    /// Whether `group`'s entries in the WAL are `entries`, no more and no less (indexes,
    /// terms, kinds and bytes).
    fn holds_exactly(&self, group: u32, entries: &[Entry]) -> Result<bool, String> {
        let (Some(state), Some(first), Some(last)) = (
            self.wal.group(u64::from(group)),
            entries.first(),
            entries.last(),
        ) else {
            return Ok(false);
        };
        if (state.first_index, state.last_index) != (first.index.0, last.index.0) {
            return Ok(false);
        }
        let mut raw = Vec::new();
        self.wal
            .entries(u64::from(group), first.index.0..last.index.0 + 1, &mut raw)
            .map_err(|e| format!("group {group}: {e}"))?;
        let held = raw
            .into_iter()
            .map(|e| decode_entry(group, e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(held == entries)
    }

    /// The index of `group`'s snapshot marker (0: none).
    fn marker(&self, group: u32) -> u64 {
        self.wal
            .group(u64::from(group))
            .map_or(0, |state| state.snapshot.index)
    }

    /// Write the WAL marker of every snapshot whose file became durable, unless a newer
    /// snapshot (one received from the leader) was installed meanwhile. A write that failed
    /// (a full disk, most likely) is tried again later, less often after each failure (see
    /// [`SNAPSHOT_RETRY_FIRST`]), once due and if `retry`: the WAL keeps the entries the
    /// snapshot covers until then, so nothing is lost, and the node goes on. One that a
    /// newer snapshot made obsolete is dropped: it would only take space, and until it is
    /// gone the group takes no new snapshot.
    fn finish_snapshot_writes(&mut self, retry: bool) -> io::Result<()> {
        let now = crate::clock::now();
        let mut done = Vec::new();
        let mut no_room_for = None;
        for (&group, write) in &mut self.snapshots_writing {
            match write.written.borrow_mut().take() {
                None => {}
                Some(Ok(())) => done.push(group),
                Some(Err(error)) => {
                    if is_no_room(&error) {
                        let bytes = write.snapshot.data.len() as u64;
                        no_room_for = Some(no_room_for.unwrap_or(0).max(bytes));
                    }
                    write.failures += 1;
                    let delay = snapshot_retry_delay(write.failures);
                    let error = no_room_said(&self.dir, &error);
                    tracing::warn!(
                        group,
                        index = write.snapshot.meta.index.0,
                        failures = write.failures,
                        %error,
                        "snapshot file not written; the log keeps what it covers, and the \
                         write is tried again in {delay:?}"
                    );
                    write.retry_at = Some(now + delay);
                }
            }
        }
        if let Some(needed) = no_room_for
            && self.room_for_snapshots(needed)
        {
            for write in self.snapshots_writing.values_mut() {
                write.retry_at = write.retry_at.map(|_| now);
            }
        }
        for group in done {
            let write = self.snapshots_writing.remove(&group).expect("listed");
            let (index, term) = (write.snapshot.meta.index.0, write.snapshot.meta.term.0);
            if index > self.marker(group) {
                match self.wal.mark_snapshot(u64::from(group), index, term) {
                    Ok(()) => self.wrote(true),
                    // The file stays durable; its marker goes in once the log has room.
                    Err(error) if error.nothing_written() => {
                        *write.written.borrow_mut() = Some(Ok(()));
                        self.snapshots_writing.insert(group, write);
                    }
                    Err(error) => return Err(io_error(error)),
                }
            }
        }
        let superseded: Vec<u32> = self
            .snapshots_writing
            .iter()
            .filter(|(_, write)| write.retry_at.is_some())
            .filter(|&(&group, write)| write.snapshot.meta.index.0 <= self.marker(group))
            .map(|(&group, _)| group)
            .collect();
        for group in superseded {
            let write = self.snapshots_writing.remove(&group).expect("listed");
            tracing::info!(
                group,
                index = write.snapshot.meta.index.0,
                marker = self.marker(group),
                "dropped a snapshot write that failed: a newer snapshot is in place"
            );
        }
        for (&group, write) in &mut self.snapshots_writing {
            if retry && write.retry_at.is_some_and(|at| now >= at) {
                write.retry_at = None;
                spawn_snapshot_write(
                    &self.snapshot_lane,
                    &self.dir,
                    group,
                    &write.snapshot,
                    &write.written,
                );
            }
        }
        Ok(())
    }

    /// A snapshot's file of `needed` bytes found no room: the spare segments go, to make
    /// it (the next segment is built from scratch once there is room again), where that and
    /// the room left would hold it; kept otherwise, for the next segment (review 269: deleted
    /// in vain, they left the core short of a segment sooner). Whether any went.
    fn room_for_snapshots(&mut self, needed: u64) -> bool {
        let spares = self.wal.storage_mut().spare_bytes();
        let available = crate::sys::available_bytes(&self.dir).unwrap_or(0);
        if spares == 0 || available.saturating_add(spares) < needed {
            return false;
        }
        let dropped = self.wal.storage_mut().drop_spares();
        if dropped > 0 {
            tracing::warn!(
                dir = %self.dir.display(),
                dropped,
                "a snapshot's file found no room: deleted the spare WAL segments kept for reuse"
            );
        }
        dropped > 0
    }

    /// Takes the next segment if its build is done (see [`WalLog::segment_built`]).
    fn take_built(&mut self) -> io::Result<()> {
        let done = self
            .building
            .as_ref()
            .and_then(|slot| slot.borrow_mut().take());
        if let Some(done) = done {
            self.building = None;
            self.segment_built(done)?;
        }
        Ok(())
    }

    /// The jobs on the blocking thread whose results have not come back and matter to a
    /// stop, in words. Not encodings: a stopping core takes no snapshot, so waiting for one
    /// would only hold the stop (and the clients still connected) for a result thrown away.
    fn jobs_in_flight(&self) -> Vec<String> {
        let mut jobs = Vec::new();
        for (group, write) in &self.snapshots_writing {
            if write.retry_at.is_none() && write.written.borrow().is_none() {
                let index = write.snapshot.meta.index;
                jobs.push(format!("group {group}: snapshot file at {index}"));
            }
        }
        for received in &self.snapshots_receiving {
            if received.stored.borrow().is_none() {
                let group = received.group;
                jobs.push(format!("group {group}: received snapshot's file"));
            }
        }
        if self.building.is_some() {
            jobs.push("the next WAL segment".to_string());
        }
        jobs
    }

    /// [`CoreLog::finish_jobs`], waiting at most `wait_max`. A write that failed is not tried
    /// again, and no new segment is begun: the stop only lets what runs end.
    async fn finish_jobs_within(&mut self, wait_max: Duration) -> io::Result<()> {
        let deadline = crate::clock::now() + wait_max;
        loop {
            self.finish_snapshot_writes(false)?;
            self.take_built()?;
            let jobs = self.jobs_in_flight();
            if jobs.is_empty() {
                return Ok(());
            }
            if crate::clock::now() >= deadline {
                tracing::warn!(
                    dir = %self.dir.display(),
                    ?jobs,
                    "stopping with jobs still running after {wait_max:?} (a slow or stuck \
                     disk?): the next start removes the files they left half-written, and \
                     settles the snapshot files they made durable"
                );
                return Ok(());
            }
            glommio::timer::sleep(STOP_JOBS_POLL).await;
        }
    }

    /// The WAL's part of installing `snapshot`, whose file is durable: drop the entries of
    /// the log it replaced, then write its marker.
    fn settle(&mut self, group: u32, snapshot: &Snapshot) -> io::Result<()> {
        let (index, term) = (snapshot.meta.index.0, snapshot.meta.term.0);
        // Entries after the snapshot belong to the log it replaced, unless they agree with it.
        let last = self.wal.group(u64::from(group)).map_or(0, |s| s.last_index);
        let keeps_tail = last > index && self.wal.term(u64::from(group), index) == Some(term);
        if last > index && !keeps_tail {
            let truncated = self.wal.truncate(u64::from(group), index + 1);
            self.wrote(truncated.is_ok());
            truncated.map_err(io_error)?;
        }
        let marked = self.wal.mark_snapshot(u64::from(group), index, term);
        self.wrote(marked.is_ok());
        marked.map_err(io_error)
    }

    /// [`CoreLog::stage`], failing with a [`must_wait`] error where the log cannot take a
    /// record yet.
    fn stage_from(&mut self, group: u32, ready: &Ready, staged: &mut Staged) -> io::Result<()> {
        if let Some(snapshot) = ready.snapshot()
            && !staged.snapshot
        {
            // A snapshot from the leader replaces the log before this Ready's entries. Its
            // file was stored before Raft saw it, unless it came another way.
            let index = snapshot.meta.index.0;
            let stored = self.snapshots_stored.remove(&(group, index));
            // Any older one of the group is out of date now.
            self.snapshots_stored
                .retain(|&(g, i)| g != group || i > index);
            if !stored {
                // Not a wait: an error of this write stops the core, as any failed write.
                snapshot_file::write(&self.dir, group, snapshot).map_err(|error| {
                    io::Error::other(format!("group {group}: its snapshot file: {error}"))
                })?;
            }
            if let Err(error) = self.settle(group, snapshot) {
                if must_wait(&error) {
                    // The file is durable: the next call only settles it.
                    self.snapshots_stored.insert((group, index));
                }
                return Err(error);
            }
            staged.snapshot = true;
        }
        self.write_from(
            group,
            ready.entries(),
            ready.hard_state(),
            &mut staged.entries,
        )
    }

    /// The largest entry payload this log takes: what a proposal may be at most.
    pub fn entry_bytes_max(&self) -> usize {
        // One entry alone in a record, with its kind byte.
        self.wal
            .entries_bytes_max(self.groups)
            .saturating_sub(ENTRY_PREFIX_BYTES + 1)
    }

    fn write(
        &mut self,
        group: u32,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> io::Result<()> {
        self.write_from(group, entries, hard_state, &mut 0)
    }

    /// Writes `entries[*written..]` and then `hard_state`, counting in `written` the entries
    /// written, so a call that failed for lack of room (nothing of the record that failed is
    /// written) can be made again from where it stopped.
    fn write_from(
        &mut self,
        group: u32,
        entries: &[Entry],
        hard_state: Option<HardState>,
        written: &mut usize,
    ) -> io::Result<()> {
        let group = u64::from(group);
        let entries = &entries[*written..];
        if let Some(first) = entries.first() {
            let records: Vec<(u64, KindAndData)> = entries
                .iter()
                .map(|entry| {
                    let payload = KindAndData {
                        kind: [entry.kind as u8],
                        data: &entry.data,
                    };
                    (entry.term.0, payload)
                })
                .collect();
            // A record never spans segments: a batch larger than one goes in several appends.
            let bytes_max = self.wal.entries_bytes_max(self.groups);
            let mut first_index = first.index.0;
            let mut rest = &records[..];
            while !rest.is_empty() {
                let mut bytes = 0;
                let count = rest
                    .iter()
                    .take_while(|(_, payload)| {
                        bytes += ENTRY_PREFIX_BYTES + payload.len();
                        bytes <= bytes_max
                    })
                    .count()
                    .max(1);
                let appended = self.wal.append_entries(group, first_index, &rest[..count]);
                self.wrote(appended.is_ok());
                appended.map_err(io_error)?;
                *written += count;
                first_index += count as u64;
                rest = &rest[count..];
            }
        }
        if let Some(state) = hard_state {
            let state = crate::wal::HardState {
                term: state.term.0,
                vote: state.vote.0,
                commit: state.commit.0,
            };
            self.wal.set_hard_state(group, state).map_err(io_error)?;
            self.wrote(false);
        }
        Ok(())
    }
}

/// A Raft entry as a WAL payload: the kind byte, then the data, kept by reference.
struct KindAndData<'a> {
    kind: [u8; 1],
    data: &'a Bytes,
}

impl EntryPayload for KindAndData<'_> {
    fn head(&self) -> &[u8] {
        &self.kind
    }

    fn body(&self) -> &[u8] {
        self.data
    }

    fn shared_body(&self) -> Option<&Bytes> {
        Some(self.data)
    }
}

fn decode_entry(group: u32, entry: WalEntry) -> Result<Entry, String> {
    let kind = entry
        .payload
        .first()
        .and_then(|&k| EntryKind::from_u8(k))
        .ok_or_else(|| {
            format!(
                "group {group}: entry {} has no valid kind byte",
                entry.index
            )
        })?;
    let data: Bytes = entry.payload.slice(1..);
    Ok(Entry {
        term: Term(entry.term),
        index: LogIndex(entry.index),
        kind,
        data,
    })
}

impl CoreLog for WalLog {
    fn stage(&mut self, group: GroupId, ready: &Ready, staged: &mut Staged) -> io::Result<bool> {
        match self.stage_from(group.0, ready, staged) {
            Ok(()) => Ok(true),
            Err(error) if must_wait(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn receive_snapshot(&mut self, group: GroupId, message: Message) {
        let stored = Rc::new(RefCell::new(None));
        let MessageBody::InstallSnapshot(snapshot) = &message.body else {
            return;
        };
        let (dir, snapshot, slot) = (self.dir.clone(), snapshot.clone(), Rc::clone(&stored));
        let lane = self.snapshot_lane.clone();
        glommio::spawn_local(async move {
            let job = move || {
                let state = crate::shard::core::load_snapshot(&snapshot)?;
                snapshot_file::write(&dir, group.0, &snapshot).map_err(|error| {
                    let room = if is_no_room(&error) { NO_ROOM } else { "" };
                    let error = no_room_said(&dir, &error);
                    format!("its file cannot be written{room}: {error}")
                })?;
                Ok(state)
            };
            let outcome = lane.off_loop(job).await;
            *slot.borrow_mut() = Some(outcome);
        })
        .detach();
        self.snapshots_receiving.push_back(ReceivedSnapshot {
            group: group.0,
            message,
            stored,
        });
    }

    fn snapshot_receiving(&self, group: GroupId, min_term: Term) -> Option<LogIndex> {
        let indexes = (self.snapshots_receiving.iter())
            .filter(|r| r.group == group.0 && r.message.term >= min_term);
        indexes
            .filter_map(|r| match &r.message.body {
                MessageBody::InstallSnapshot(snapshot) => Some(snapshot.meta.index),
                _ => None,
            })
            .max()
    }

    fn receive_held(&self, group: GroupId) -> bool {
        self.receives_failed
            .get(&group.0)
            .is_some_and(|&(_, retry_at)| crate::clock::now() < retry_at)
    }

    fn take_received(&mut self) -> Vec<Received> {
        let mut stored = Vec::new();
        while let Some(front) = self.snapshots_receiving.front() {
            let Some(outcome) = front.stored.borrow_mut().take() else {
                break;
            };
            let received = self.snapshots_receiving.pop_front().expect("a front");
            let (group, message) = (received.group, received.message);
            let index = match &message.body {
                MessageBody::InstallSnapshot(snapshot) => snapshot.meta.index.0,
                _ => unreachable!("only snapshots are received"),
            };
            match outcome {
                Ok(state) => {
                    self.receives_failed.remove(&group);
                    self.snapshots_stored.insert((group, index));
                    stored.push(Received {
                        group: GroupId(group),
                        message,
                        state,
                    });
                }
                Err(why) => {
                    let failures = self.receives_failed.get(&group).map_or(0, |f| f.0) + 1;
                    let mut wait = snapshot_retry_delay(failures);
                    let needed = match &message.body {
                        MessageBody::InstallSnapshot(snapshot) => snapshot.data.len() as u64,
                        _ => 0,
                    };
                    if why.contains(NO_ROOM) && self.room_for_snapshots(needed) {
                        wait = Duration::ZERO;
                    }
                    let retry_at = crate::clock::now() + wait;
                    self.receives_failed.insert(group, (failures, retry_at));
                    tracing::warn!(
                        group,
                        from = message.from.0,
                        index,
                        why,
                        "dropped a snapshot from a peer; the leader's next is taken in {wait:?}"
                    );
                }
            }
        }
        stored
    }

    /// The file is written on glommio's blocking thread (encoding happened on the loop; the
    /// write and its fsyncs need not); `maintain` writes the WAL marker once it is durable.
    /// Until then the WAL keeps the entries the snapshot covers, so a crash loses nothing.
    fn snapshot_taken(&mut self, group: GroupId, snapshot: &Snapshot) -> io::Result<()> {
        let written = Rc::new(RefCell::new(None));
        spawn_snapshot_write(&self.snapshot_lane, &self.dir, group.0, snapshot, &written);
        let write = SnapshotWrite {
            snapshot: snapshot.clone(),
            written,
            retry_at: None,
            failures: 0,
        };
        self.snapshots_writing.insert(group.0, write);
        Ok(())
    }

    fn snapshot_in_flight(&self, group: GroupId) -> bool {
        self.snapshots_writing.contains_key(&group.0)
            || self.snapshots_encoding.contains_key(&group.0)
    }

    /// On glommio's blocking thread: freeing the receive buffers behind a compaction's
    /// thousands of entries (munmap for the large ones) took 5-16 ms of the loop under
    /// `cohort bench`, a latency spike for every group of the core.
    fn release(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        glommio::spawn_local(async move {
            crate::node::off_loop(move || drop(entries)).await;
        })
        .detach();
    }

    fn release_state(&mut self, state: KvStore) {
        glommio::spawn_local(async move {
            crate::node::off_loop(move || drop(state)).await;
        })
        .detach();
    }

    /// On glommio's blocking thread: sorting and copying a big state would stall every
    /// group of the core for as long (tens of ms for tens of MB). Into a block-aligned
    /// buffer, which the snapshot file writes from as it is (O_DIRECT).
    fn encode_snapshot(&mut self, group: GroupId, job: SnapshotJob) {
        let slot = Rc::new(RefCell::new(None));
        self.snapshots_encoding
            .insert(group.0, (job.applied_index(), Rc::clone(&slot)));
        let lane = self.snapshot_lane.clone();
        glommio::spawn_local(async move {
            let encoded = lane
                .off_loop(move || job.encode_into(crate::durable::aligned_bytes_mut))
                .await;
            *slot.borrow_mut() = Some(encoded);
        })
        .detach();
    }

    fn take_encoded(&mut self) -> Vec<(GroupId, LogIndex, Bytes)> {
        let mut encoded = Vec::new();
        self.snapshots_encoding.retain(|&group, (index, slot)| {
            let Some(bytes) = slot.borrow_mut().take() else {
                return true;
            };
            encoded.push((GroupId(group), LogIndex(*index), bytes));
            false
        });
        encoded
    }

    fn groups_holding_old_segments(&self) -> Vec<(GroupId, LogIndex)> {
        // Short of room for the next segment, the groups that hold the oldest snapshot,
        // whatever the soft limit: freed, it becomes the next. Found by a tester: a log that
        // filled a small disk by itself (a soft limit larger than the disk, entries too few
        // for a group's own snapshot) took no writes for good, room or not. Only those, each
        // with its last entry there: one that holds a later old segment too must not wait
        // to apply that before it frees the oldest (review 266).
        let kept = match self.short_of_space() {
            Some(_) => self.wal.segment_count().saturating_sub(1),
            None => self.segments_kept,
        };
        self.wal
            .groups_holding_old_segments(kept)
            .into_iter()
            .map(|(group, through)| (GroupId(group as u32), LogIndex(through)))
            .collect()
    }

    fn finish_jobs(&mut self) -> impl Future<Output = io::Result<()>> {
        self.finish_jobs_within(STOP_JOBS_WAIT_MAX)
    }

    fn wants_sync(&self) -> bool {
        self.wal.reclaim_waits_for_sync() || self.vote_proof_unsynced || self.proof_due()
    }

    type Synced = SyncDone;

    fn begin_sync(&mut self) -> io::Result<Pin<Box<dyn Future<Output = SyncDone>>>> {
        self.prove_synced()?;
        let ticket = self.wal.begin_sync().map_err(io_error)?;
        self.vote_proof_unsynced = false;
        Ok(Box::pin(ticket.wait()))
    }

    fn finish_sync(&mut self, synced: SyncDone) -> io::Result<()> {
        let durable_before = self.wal.durable_lsn();
        let report = self.wal.finish_sync(synced).map_err(io_error)?;
        // Only a sync that made durable records a proof must follow, none proved yet: an
        // empty one, or one of a proof, would otherwise call for the next, without end, and
        // one of a commit alone would cost an idle core a third sync (review 275).
        let proved = durable_before.max(self.proved_through);
        // A proof writes a group's hard state again: one that has one (review 275).
        let with_hard_state = (report.groups.iter()).find(|synced| {
            self.wal
                .group(synced.group)
                .is_some_and(|g| g.hard_state.is_some())
        });
        if report.durable_lsn > proved
            && self.unproved_through > proved
            && let Some(synced) = with_hard_state
        {
            self.synced_unproved = Some((self.wal.next_lsn(), synced.group, crate::clock::now()));
        }
        match report.vote_group {
            Some(group) => self.prove_vote(group),
            None => Ok(()),
        }
    }

    /// Ready once per build that ended (the turn after takes it: see `maintain`), so a loop
    /// that cannot take it yet (every sync slot taken) does not spin. A failed build is
    /// tried again at a tick.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.build_ended.0.replace(false) {
            return Poll::Ready(());
        }
        *self.build_ended.1.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn entries_wait(&self) -> bool {
        self.wal.needs_prepare() && self.wal.active_room_bytes() < self.reserve_bytes
    }

    fn wants_state_bytes(&self) -> bool {
        let old = (self.room_counted_at).is_none_or(|at| crate::clock::now() >= at + ROOM_RECOUNT);
        old || self.builds_next()
    }

    fn keep_room_for_states(&mut self, states: &mut dyn Iterator<Item = (u32, u64)>) {
        let files = snapshot_file::newest_file_bytes(&self.dir).unwrap_or_default();
        let (kept, core) = &self.room_kept;
        kept.set(*core, room_for_snapshots(states, &files));
        self.room_counted_at = Some(crate::clock::now());
    }

    fn short_of_space(&self) -> Option<&str> {
        match &self.build_failed {
            Some((why, _)) if self.wal.needs_prepare() => Some(why),
            _ => None,
        }
    }

    /// Keeps a next segment ready without stalling the loop: the slow part (zero-filling,
    /// syncing and mapping 64 MiB) runs on glommio's blocking thread; the loop only renames
    /// the finished file into place. A record that needs it before then waits (see
    /// [`WalLog::open`]).
    fn maintain(&mut self) -> io::Result<()> {
        self.finish_snapshot_writes(true)?;
        self.take_built()?;
        // A freed segment recycled into the next place (a snapshot's marker made it dead)
        // ends a failed build's shortage: kept, the failure came back as "the log cannot grow"
        // at the next rotation, however much room the disk had by then (found in review).
        if self.build_failed.is_some() && !self.wal.needs_prepare() {
            self.build_succeeded();
        }
        if let Some(group) = self.vote_unproved
            && !self.wal.needs_prepare()
        {
            self.prove_vote(group)?;
        }
        let retry_due = self.build_retry_due();
        // Found by an operator: under a small open-files limit the WAL grew past what the
        // limit left it, and a sync that could not open its segment's O_DIRECT handle
        // poisoned the WAL and stopped the node. At the cap, no segment is made (the log
        // takes no entries it can avoid, as on a full disk) until compaction frees one.
        let live = self.wal.segment_count();
        let at_cap = self.building.is_none()
            && retry_due
            && self.wal.needs_prepare()
            && live >= self.segments_max;
        if at_cap {
            // A real failure (a full disk) stays the reason said, and is tried again below
            // the cap.
            if self.build_failed.is_none() || self.at_cap {
                let why = format!(
                    "the WAL holds {live} segments (two files each), as many as this \
                     process's open-files limit leaves it beside its peers and clients: its \
                     groups snapshot early to free the oldest (raise the limit, `ulimit -n` or \
                     LimitNOFILE=, or use larger segments, --segment-mib)"
                );
                if !self.at_cap
                    && let Some(held) = self.said_at_cap.admit("at cap")
                {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        times_at_cap_since_last_said = held,
                        "{why}; taking no writes it can hold back until then"
                    );
                }
                // Looked at again at the next turn: compaction may free one at any time.
                self.at_cap = true;
                self.build_failed = Some((why, crate::clock::now()));
            }
        } else if self.builds_next()
            && let Some((seq, size_bytes, header)) = self.wal.next_segment_plan()
        {
            if let Some(why) = self.room_not_kept(size_bytes) {
                self.build_failed_with(&io::Error::new(io::ErrorKind::StorageFull, why));
                return Ok(());
            }
            let job = self.wal.storage_mut().build_job(seq, size_bytes, header);
            let slot = Rc::new(RefCell::new(None));
            self.building = Some(Rc::clone(&slot));
            let ended = Rc::clone(&self.build_ended);
            glommio::spawn_local(async move {
                let built = crate::node::off_loop(job).await;
                *slot.borrow_mut() = Some(built);
                ended.0.set(true);
                if let Some(waker) = ended.1.take() {
                    waker.wake();
                }
            })
            .detach();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
