//! The WAL itself: appends, group-commit syncs, reads, rotation and compaction over a
//! [`Storage`]. The rules it follows are the spec in `mod.rs`.

use std::collections::VecDeque;
use std::ops::Range;

use super::errors::{WalError, WalOpenError};
use super::format::{
    BLOCK_BYTES, RECORD_HEADER_BYTES, RecordHeader, RecordKind, SEGMENT_HEADER_BYTES, align_up,
    encode_segment_header, put_record_header, record_crc_of_parts, record_salt, seal_record,
};
use super::index::{EntryLoc, GroupLog, Groups};
use super::payload::{self, ENTRIES_PREFIX_BYTES, ENTRY_PREFIX_BYTES};
use super::recovery::{RecoveryReport, recover};
use super::storage::{Part, Storage, zero_durably};
use super::types::{EntryPayload, GroupState, HardState, SnapshotMarker, WalEntry};

/// Settings that shape the files; validated by `Wal::open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Size of every segment file. Larger: fewer rotations and checkpoints, more disk held by
    /// a segment that is mostly dead. Bounds the largest append batch. At most 4 GiB (entry
    /// offsets are u32), at least 4 KiB.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_bytes: 64 << 20,
        }
    }
}

pub const SEGMENT_BYTES_MIN: u64 = 4096;
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Whether a segment may be `size_bytes` long: a whole number of blocks that a record's
/// `u32` offset reaches.
pub(super) fn segment_size_valid(size_bytes: u64) -> bool {
    (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&size_bytes)
        && size_bytes.is_multiple_of(BLOCK_BYTES as u64)
}

impl WalConfig {
    fn validate(&self) -> Result<(), WalOpenError> {
        if !segment_size_valid(self.segment_bytes) {
            return Err(WalOpenError::Config {
                reason: format!(
                    "segment_bytes {} must be a multiple of 4096 in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                    self.segment_bytes
                ),
            });
        }
        Ok(())
    }
}

/// Counters for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records: u64,
    pub syncs: u64,
    pub rotations: u64,
    /// Rotations that had to prepare the next segment on the spot (`prepare_next` was late).
    pub rotation_stalls: u64,
    pub segments_recycled: u64,
    pub segments_removed: u64,
    /// Bytes skipped to start a record in a fresh block, because a sync still in flight
    /// writes the one the cursor was in.
    pub skipped_bytes: u64,
}

/// The room [`Wal::keep_room`] keeps at the end of the active segment.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct KeptBytes {
    /// For snapshot markers (and truncations): the last of the segment.
    pub(super) markers: usize,
    /// For hard states (and those), before it.
    pub(super) hard_states: usize,
}

/// One write-ahead log shared by all groups of a core.
pub struct Wal<S: Storage> {
    pub(super) storage: S,
    pub(super) config: WalConfig,
    pub(super) groups: Groups,
    /// Live segments, ascending; the back one is active.
    pub(super) segments: VecDeque<u64>,
    /// The segment after the active one, when prepared.
    pub(super) prepared: Option<u64>,
    /// Where the next record goes in the active segment.
    pub(super) cursor: usize,
    pub(super) next_lsn: u64,
    /// Every record below this lsn is durable.
    pub(super) durable_lsn: u64,
    /// Every record below this lsn is durable or in a sync begun.
    pub(super) sync_begun_lsn: u64,
    /// Syncs begun and not finished yet. They finish in the order they began.
    pub(super) syncs_in_flight: usize,
    /// Where the last sync begun that wrote the active segment ended: (segment, cursor), and
    /// the lsn it makes durable up to. While that sync is in flight, a record placed in the
    /// block it ended in starts a fresh block first, where the storage asks for that (see
    /// `Wal::block_skip_target`).
    pub(super) last_sync_end: (u64, usize, u64),
    /// Segments written since the last `begin_sync`, ascending.
    pub(super) unsynced_segments: Vec<u64>,
    pub(super) unsynced_groups: Vec<u64>,
    /// The last group whose term or vote a hard state written since the last `begin_sync`
    /// changed (see [`SyncReport::vote_group`]).
    pub(super) unsynced_vote: Option<u64>,
    /// Segments below `.1` may go once records below lsn `.0` are durable.
    pub(super) reclaim_pending: VecDeque<(u64, u64)>,
    pub(super) poisoned: Option<String>,
    /// Whether a rotation that finds no prepared segment makes one itself (slow, on the
    /// caller's thread) or refuses the record with [`WalError::NotReady`].
    pub(super) rotation_builds: bool,
    /// While no segment is prepared and rotation does not build one, the room at the end of
    /// the active segment kept for markers and hard states (see [`Wal::keep_room`]).
    pub(super) kept_bytes: KeptBytes,
    pub(super) stats: WalStats,
    /// The bytes of the entries record being built (reused, so no allocation per append).
    scratch: Vec<u8>,
    pub(super) recovery: RecoveryReport,
    /// This WAL's secret, in every segment header it writes and in the salt of its records'
    /// checksums (`format::record_salt`): drawn when the WAL is made, kept from its headers.
    key: u64,
    /// Segments up to this seq were written by a format without a key (0: none): their
    /// records, the active segment's included, are salted with the seq alone.
    unkeyed_through: u64,
}

impl<S: Storage> Wal<S> {
    /// Opens the WAL on `storage`, recovering what it holds (see the spec for the rules), or
    /// creates an empty one.
    pub async fn open(mut storage: S, config: WalConfig) -> Result<Wal<S>, WalOpenError> {
        config.validate()?;
        let recovered = recover(&mut storage).await?;
        let key = recovered.key.unwrap_or_else(|| storage.draw_key());
        let mut wal = Wal {
            storage,
            config,
            groups: recovered.groups,
            segments: recovered.segments.into(),
            prepared: None,
            cursor: recovered.cursor,
            next_lsn: recovered.next_lsn,
            durable_lsn: recovered.next_lsn,
            sync_begun_lsn: recovered.next_lsn,
            syncs_in_flight: 0,
            last_sync_end: (0, 0, 0),
            unsynced_segments: Vec::new(),
            unsynced_groups: Vec::new(),
            unsynced_vote: None,
            reclaim_pending: VecDeque::new(),
            poisoned: None,
            rotation_builds: true,
            kept_bytes: KeptBytes::default(),
            scratch: Vec::new(),
            stats: WalStats::default(),
            recovery: recovered.report,
            key,
            unkeyed_through: recovered.unkeyed_through,
        };
        if wal.segments.is_empty() {
            let header = wal.segment_header(1);
            let file = wal.storage.locate(1);
            wal.storage
                .create(1, config.segment_bytes, &header)
                .map_err(|source| WalOpenError::Io { file, source })?;
            wal.segments.push_back(1);
            wal.cursor = SEGMENT_HEADER_BYTES;
        }
        let retire = wal.recovery.end_segment_retired;
        if wal.cursor == SEGMENT_HEADER_BYTES && !retire {
            // Every segment starts with a checkpoint, so no older segment is ever needed for
            // a hard state or a snapshot marker.
            wal.write_checkpoint().map_err(|err| WalOpenError::Config {
                reason: format!("the checkpoint of all groups does not fit a segment: {err}"),
            })?;
        }
        if retire {
            wal.retire_end_segment().await?;
        }
        // Segments a durable snapshot marker or truncation killed before the process ended
        // (its sync landed, the reclaim after it never ran) go now: nothing else would free
        // them, and a node on a full disk needs them to take writes again.
        wal.note_reclaimable();
        wal.reclaim().map_err(|error| match error {
            WalError::SegmentIo { file, source } => WalOpenError::Io { file, source },
            other => unreachable!("a reclaim fails only on a segment's file: {other}"),
        })?;
        Ok(wal)
    }

    /// Never write over the bytes that follow the end of the log (see `RecoveryReport`): go
    /// on in a fresh segment, or, where the disk has no room for one, zero those bytes in
    /// place and sync them before anything is appended, so a node can start on a full disk.
    async fn retire_end_segment(&mut self) -> Result<(), WalOpenError> {
        let next = self.active() + 1;
        let header = self.segment_header(next);
        let file = self.storage.locate(next);
        match self
            .storage
            .create(next, self.config.segment_bytes, &header)
        {
            Ok(()) => {
                self.prepared = Some(next);
                self.rotate().map_err(|err| WalOpenError::Io {
                    file,
                    source: std::io::Error::other(err.to_string()),
                })
            }
            Err(source)
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                let active = self.active();
                let end = self.storage.size_bytes(active) as usize;
                let file = self.storage.locate(active);
                zero_durably(&mut self.storage, active, self.cursor..end)
                    .await
                    .map_err(|source| WalOpenError::Io { file, source })?;
                self.recovery.end_segment_retired = false;
                self.recovery.end_tail_zeroed = true;
                Ok(())
            }
            Err(source) => Err(WalOpenError::Io { file, source }),
        }
    }

    /// What recovery saw and did when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The storage, for handing it work done elsewhere (a segment built off the loop).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Every record below this lsn is durable.
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn
    }

    /// The lsn of the next record written.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The groups this WAL holds something for, ascending.
    pub fn groups(&self) -> impl Iterator<Item = (u64, GroupState)> + '_ {
        let mut groups: Vec<u64> = self.groups.keys().copied().collect();
        groups.sort_unstable();
        groups.into_iter().map(|g| (g, self.groups[&g].state()))
    }

    /// The segments the WAL holds (the active one and those before it still live), not
    /// counting the next one prepared.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The groups whose oldest live entry lies outside the newest `segments_kept` segments:
    /// while one of them keeps it alive, no older segment can be freed. Empty while the WAL
    /// holds no more than `segments_kept` segments.
    /// Each with the last of its entries in those older segments: a snapshot there frees its
    /// share of them.
    pub fn groups_holding_old_segments(&self, segments_kept: usize) -> Vec<(u64, u64)> {
        let kept = segments_kept.max(1);
        if self.segments.len() <= kept {
            return Vec::new();
        }
        let oldest_kept = self.segments[self.segments.len() - kept];
        let mut groups: Vec<(u64, u64)> = self
            .groups
            .iter()
            .filter_map(|(&group, log)| Some((group, log.last_index_before_segment(oldest_kept)?)))
            .collect();
        groups.sort_unstable();
        groups
    }

    pub fn group(&self, group: u64) -> Option<GroupState> {
        self.groups.get(&group).map(GroupLog::state)
    }

    /// The term of entry `index`, if it is live (or the snapshot's term at its index).
    pub fn term(&self, group: u64, index: u64) -> Option<u64> {
        let log = self.groups.get(&group)?;
        if index == log.snapshot.index {
            return Some(log.snapshot.term);
        }
        log.get(index).map(|e| e.term)
    }

    pub(super) fn check_poisoned(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The header of segment `seq`, as this WAL writes it.
    pub(super) fn segment_header(&self, seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
        encode_segment_header(seq, self.config.segment_bytes, self.key)
    }

    /// The salt of the checksums of the records of segment `seq`.
    pub(super) fn salt(&self, seq: u64) -> u64 {
        record_salt(seq, (seq > self.unkeyed_through).then_some(self.key))
    }

    pub(super) fn active(&self) -> u64 {
        *self
            .segments
            .back()
            .expect("an open WAL has an active segment")
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The most bytes of entries (`Σ ENTRY_PREFIX_BYTES + payload`) one [`Wal::append_entries`]
    /// call may carry when the log holds `groups` groups: a record never spans segments, and a
    /// fresh segment starts with a checkpoint line per group. Callers split larger batches.
    pub fn entries_bytes_max(&self, groups: usize) -> usize {
        let checkpoint = checkpoint_bytes(groups.max(self.groups.len()));
        (self.config.segment_bytes as usize).saturating_sub(
            SEGMENT_HEADER_BYTES + checkpoint + RECORD_HEADER_BYTES + ENTRIES_PREFIX_BYTES,
        )
    }

    /// Appends entries `first_index..` of `group`, each `(term, payload)`, as one record: after
    /// a crash they come back all or none. `first_index` may go back into the log (a follower
    /// overwriting a conflicting suffix) but not past its end nor into the snapshot.
    pub fn append_entries<P: EntryPayload>(
        &mut self,
        group: u64,
        first_index: u64,
        entries: &[(u64, P)],
    ) -> Result<(), WalError> {
        self.check_poisoned()?;
        if entries.is_empty() {
            return Ok(());
        }
        let (last_index, snapshot_index) = self
            .groups
            .get(&group)
            .map_or((0, 0), |log| (log.last_index(), log.snapshot.index));
        if first_index <= snapshot_index || first_index > last_index + 1 {
            return Err(WalError::NotContiguous {
                group,
                first_index,
                last_index,
                snapshot_index,
            });
        }
        let len_bytes = RECORD_HEADER_BYTES
            + ENTRIES_PREFIX_BYTES
            + entries
                .iter()
                .map(|(_, p)| ENTRY_PREFIX_BYTES + p.len())
                .sum::<usize>();
        self.reserve(len_bytes, group, RecordKind::Entries)?;
        let (seq, start) = (self.active(), self.cursor);
        let header = self.record_header(RecordKind::Entries, group, len_bytes);
        let log = self.groups.entry(group).or_default();
        log.begin_append(first_index);
        let mut at = start + RECORD_HEADER_BYTES + ENTRIES_PREFIX_BYTES;
        for (term, payload) in entries {
            at += ENTRY_PREFIX_BYTES;
            log.push(EntryLoc {
                term: *term,
                segment_seq: seq,
                offset: at as u32,
                len_bytes: payload.len() as u32,
            });
            at += payload.len();
        }
        debug_assert_eq!(at, start + len_bytes);
        if log.mark_unsynced() {
            self.unsynced_groups.push(group);
        }
        let shares = entries.iter().any(|(_, payload)| {
            payload
                .shared_body()
                .is_some_and(|body| self.storage.shares_part(body.len()))
        });
        if shares {
            self.write_entries_as_parts(seq, start, &header, first_index, entries);
        } else {
            let salt = self.salt(seq);
            let record = self.storage.slot(seq, start..start + len_bytes);
            put_record_header(record, &header);
            let mut at = RECORD_HEADER_BYTES;
            let mut put = |bytes: &[u8]| {
                record[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            put(&payload::entries_prefix(first_index, entries.len() as u32));
            for (term, payload) in entries {
                put(&payload::entry_prefix(*term, payload.len() as u32));
                put(payload.head());
                put(payload.body());
            }
            seal_record(record, salt);
        }
        self.advance(len_bytes);
        Ok(())
    }

    /// Hands an entries record to the storage as parts: what the WAL writes itself (the
    /// header, the prefixes, the entries' heads) in one buffer, interleaved with the entries'
    /// bodies, which the storage keeps by reference where it can until the sync.
    fn write_entries_as_parts<P: EntryPayload>(
        &mut self,
        seq: u64,
        start: usize,
        header: &RecordHeader,
        first_index: u64,
        entries: &[(u64, P)],
    ) {
        let mut own = std::mem::take(&mut self.scratch);
        own.clear();
        own.resize(RECORD_HEADER_BYTES, 0);
        put_record_header(&mut own, header);
        own.extend_from_slice(&payload::entries_prefix(first_index, entries.len() as u32));
        let mut runs = Vec::with_capacity(entries.len());
        for (term, payload) in entries {
            own.extend_from_slice(&payload::entry_prefix(*term, payload.len() as u32));
            own.extend_from_slice(payload.head());
            runs.push(own.len());
        }
        let salt = self.salt(seq);
        let crc = record_crc_of_parts(salt, record_parts(&own, &runs, entries).iter());
        own[4..8].copy_from_slice(&crc.to_le_bytes());
        self.storage
            .write_parts(seq, start, &record_parts(&own, &runs, entries));
        self.scratch = own;
    }

    /// Records `group`'s hard state.
    pub fn set_hard_state(&mut self, group: u64, state: HardState) -> Result<(), WalError> {
        self.check_poisoned()?;
        self.write_small(RecordKind::HardState, group, &payload::hard_state(state))?;
        let log = self.groups.entry(group).or_default();
        let voted = log
            .hard_state
            .is_none_or(|old| (old.term, old.vote) != (state.term, state.vote));
        if voted {
            self.unsynced_vote = Some(group);
        }
        log.hard_state = Some(state);
        Ok(())
    }

    /// Drops `group`'s entries from `from_index` on (a follower's conflicting suffix).
    pub fn truncate(&mut self, group: u64, from_index: u64) -> Result<(), WalError> {
        self.check_poisoned()?;
        let Some(log) = self.groups.get(&group) else {
            return Ok(());
        };
        if from_index <= log.snapshot.index {
            return Err(WalError::BelowSnapshot {
                group,
                index: from_index,
                snapshot_index: log.snapshot.index,
            });
        }
        if from_index > log.last_index() {
            return Ok(());
        }
        self.write_small(RecordKind::Truncate, group, &payload::truncate(from_index))?;
        self.groups
            .get_mut(&group)
            .expect("checked")
            .truncate(from_index);
        self.note_reclaimable();
        Ok(())
    }

    /// Records that `group` snapshotted at `index` (of `term`): entries up to `index` are dead,
    /// later ones stay. A segment whose entries are all dead is reclaimed once this is durable.
    pub fn mark_snapshot(&mut self, group: u64, index: u64, term: u64) -> Result<(), WalError> {
        self.check_poisoned()?;
        let snapshot_index = self.groups.get(&group).map_or(0, |log| log.snapshot.index);
        if index < snapshot_index {
            return Err(WalError::SnapshotRegress {
                group,
                index,
                snapshot_index,
            });
        }
        let marker = SnapshotMarker { index, term };
        self.write_small(RecordKind::Snapshot, group, &payload::snapshot(marker))?;
        self.groups.entry(group).or_default().set_snapshot(marker);
        self.note_reclaimable();
        Ok(())
    }

    /// Appends the live entries of `group` in `range` to `out`. Payloads are views of the
    /// segment map (no copy); unsynced entries are readable too.
    pub fn entries(
        &self,
        group: u64,
        range: Range<u64>,
        out: &mut Vec<WalEntry>,
    ) -> Result<(), WalError> {
        self.check_poisoned()?;
        let log = self.groups.get(&group);
        let (first_index, last_index) = log.map_or((1, 0), |l| (l.first_index(), l.last_index()));
        for index in range {
            let loc = log
                .and_then(|l| l.get(index))
                .ok_or(WalError::Unavailable {
                    group,
                    index,
                    first_index,
                    last_index,
                })?;
            let start = loc.offset as usize;
            out.push(WalEntry {
                index,
                term: loc.term,
                payload: self
                    .storage
                    .view(loc.segment_seq, start..start + loc.len_bytes as usize),
            });
        }
        Ok(())
    }
}

/// An entries record as parts: runs of `own` (the header, the prefixes, the heads; run i
/// ends at `runs[i]`) interleaved with the entries' bodies.
fn record_parts<'a, P: EntryPayload>(
    own: &'a [u8],
    runs: &[usize],
    entries: &'a [(u64, P)],
) -> Vec<Part<'a>> {
    let mut parts = Vec::with_capacity(2 * entries.len());
    let mut from = 0;
    for ((_, payload), &to) in entries.iter().zip(runs) {
        parts.push(Part::Copy(&own[from..to]));
        parts.push(match payload.shared_body() {
            Some(shared) => Part::Share(shared),
            None => Part::Copy(payload.body()),
        });
        from = to;
    }
    parts
}

/// The bytes the checkpoint that opens every segment takes (padding included) in a log of
/// `groups` groups.
pub fn checkpoint_bytes(groups: usize) -> usize {
    align_up(
        RECORD_HEADER_BYTES
            + payload::CHECKPOINT_PREFIX_BYTES
            + groups * payload::CHECKPOINT_GROUP_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::StopAction;
    use crate::wal::format::{decode_record, segment_header_key};
    use crate::wal::mem::MemStorage;
    use futures_lite::future::block_on;

    /// Rewrites segment `seq` of `storage` as a build before keys wrote it: a version 2
    /// header without a key, every record salted with the seq alone.
    fn unkey(storage: &mut MemStorage, seq: u64) {
        let size = storage.size_bytes(seq) as usize;
        let mut bytes = storage.view(seq, 0..size).to_vec();
        reseal_records(&mut bytes, seq, seq);
        unkey_header(&mut bytes);
        storage.write(seq, 0, &bytes);
    }

    /// Seals every record of segment `seq`'s `bytes` again with `salt`.
    fn reseal_records(bytes: &mut [u8], seq: u64, salt: u64) {
        let old = record_salt(seq, segment_header_key(bytes));
        let mut at = SEGMENT_HEADER_BYTES;
        while let Some(header) = decode_record(bytes, at, old) {
            seal_record(&mut bytes[at..at + header.len_bytes as usize], salt);
            at += header.footprint_bytes();
        }
        assert!(bytes[at..].iter().all(|&b| b == 0), "every record resealed");
    }

    /// Goal (review 221): a segment whose header states another key than the others' (one
    /// of another node's or core's WAL put in this folder) is refused, naming it: its
    /// records, checking out against its own key, were read as ours. Method: a WAL of three
    /// segments; the oldest's header and records rewritten under another key.
    #[test]
    fn a_segment_of_another_wal_is_refused() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        let mut index = 1;
        while wal.segments.len() < 3 {
            wal.append_entries(1, index, &[(1, b"ours".as_slice())])
                .expect("append");
            block_on(wal.sync()).expect("sync");
            index += 1;
        }
        let oldest = *wal.segments.front().unwrap();
        let mut storage = wal.into_storage();
        let size = storage.size_bytes(oldest) as usize;
        let mut bytes = storage.view(oldest, 0..size).to_vec();
        let theirs = 0xB0B;
        reseal_records(&mut bytes, oldest, record_salt(oldest, Some(theirs)));
        bytes[32..40].copy_from_slice(&theirs.to_le_bytes());
        reseal_header(&mut bytes);
        storage.write(oldest, 0, &bytes);
        match block_on(Wal::open(storage, config)) {
            Err(WalOpenError::Inconsistent {
                file,
                offset,
                reason,
            }) => {
                assert_eq!(
                    (file, offset),
                    (format!("mem:{oldest:020}.wal"), 32),
                    "{reason}"
                );
                assert!(reason.contains("another WAL"), "{reason}");
            }
            other => panic!("{:?}", other.map(|_| "opened")),
        }
    }

    /// The header checksum of the segment header at the start of `bytes`, written again.
    fn reseal_header(bytes: &mut [u8]) {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[0..12]);
        hasher.update(&bytes[16..SEGMENT_HEADER_BYTES]);
        bytes[12..16].copy_from_slice(&hasher.finalize().to_le_bytes());
    }

    /// Rewrites the segment header at the start of `bytes` as format 2 wrote it: no key.
    fn unkey_header(bytes: &mut [u8]) {
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes[32..40].fill(0);
        reseal_header(bytes);
    }

    fn entry_count(wal: &Wal<MemStorage>) -> usize {
        let state = wal.group(1).expect("group 1");
        let mut out = Vec::new();
        wal.entries(1, state.first_index..state.last_index + 1, &mut out)
            .expect("read");
        out.len()
    }

    /// Goal: a log written before keys (format 2) is read, and appended to where it ends:
    /// records in its last segment salted as it salts them, a new segment keyed. Method: a
    /// WAL's one segment rewritten as format 2; reopened, appended to past a rotation,
    /// reopened again.
    #[test]
    fn a_log_written_before_keys_is_read_and_goes_on() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        for index in 1..=10 {
            wal.append_entries(1, index, &[(1, b"before".as_slice())])
                .expect("append");
        }
        block_on(wal.sync()).expect("sync");
        let mut storage = wal.into_storage();
        unkey(&mut storage, 1);
        let mut wal = block_on(Wal::open(storage, config)).expect("a format 2 log opens");
        assert_eq!(entry_count(&wal), 10);
        assert_eq!((wal.unkeyed_through, wal.segments.len()), (1, 1));
        for index in 11..=200 {
            wal.append_entries(1, index, &[(1, b"after".as_slice())])
                .expect("append");
            block_on(wal.sync()).expect("sync");
        }
        assert!(wal.segments.len() > 1, "rotated into keyed segments");
        let wal = block_on(Wal::open(wal.into_storage(), config)).expect("reopens");
        assert_eq!(entry_count(&wal), 200);
        assert_eq!(wal.recovery_report().end_action, Some(StopAction::EndOfLog));
        let newest = *wal.segments.back().unwrap();
        let header = wal.storage.view(newest, 0..SEGMENT_HEADER_BYTES);
        assert_eq!(segment_header_key(&header), Some(wal.key));
    }

    /// Goal: a damaged header is refused, never taken for the end of the log, in a log
    /// written before keys and now holding a keyed segment (found in review: the check that
    /// the next segment continues the log tried the key's salt only, so the unkeyed records
    /// of a segment whose header was damaged looked like a torn tail, and the segment was
    /// dropped, entries and vote with it). Method: entries across a rotation, one sync; both
    /// segments rewritten unkeyed; a keyed third segment prepared; a byte of segment 2's
    /// header flipped.
    #[test]
    fn a_damaged_header_of_an_unkeyed_segment_is_refused() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        let mut index = 1;
        while wal.segments.len() < 2 || wal.cursor < 1024 {
            wal.append_entries(1, index, &[(1, b"entry".as_slice())])
                .expect("append");
            index += 1;
        }
        block_on(wal.sync()).expect("sync");
        wal.prepare_next().expect("prepare");
        let mut storage = wal.into_storage();
        unkey(&mut storage, 1);
        unkey(&mut storage, 2);
        storage.corrupt(2, 20, 1);
        assert!(refused_for_a_header(storage, config).contains("2.wal"));
    }

    /// Goal: a first segment whose header reads back as zeros, with records after it and no
    /// other header to tell the key, is refused rather than emptied (found in review: its
    /// records could not be checked, so none was found, and the log was taken for a segment
    /// whose creation never finished: term, vote and entries gone without an error).
    #[test]
    fn a_zeroed_first_header_before_records_is_refused() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        vote_durably(&mut wal);
        let mut storage = wal.into_storage();
        storage.write(1, 0, &[0; SEGMENT_HEADER_BYTES]);
        assert!(refused_for_a_header(storage, config).contains("1.wal"));
    }

    /// Goal (found in review): a log that forks (valid records after the end of a segment's
    /// log, while the next segment goes on from that end) is refused as such; it was refused
    /// as a synced record that later ones prove durable, naming as corrupt the next
    /// segment's intact first record. Method: entries across a rotation, synced; in the room
    /// segment 1 left after its last record, the image of a record one past segment 2's
    /// first, durable up to lsn 1.
    #[test]
    fn a_log_that_forks_is_refused_as_forked() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        for index in 1..=3 {
            wal.append_entries(1, index, &[(1, b"entry".as_slice())])
                .expect("append");
        }
        wal.prepare_next().expect("prepare");
        wal.rotate().expect("rotate");
        wal.append_entries(1, 4, &[(1, b"entry".as_slice())])
            .expect("append");
        block_on(wal.sync()).expect("sync");
        let key = Some(wal.key);
        let mut storage = wal.into_storage();
        let one = storage.view(1, 0..8192).to_vec();
        let mut end = SEGMENT_HEADER_BYTES;
        while let Some(header) = decode_record(&one, end, record_salt(1, key)) {
            end += header.footprint_bytes();
        }
        let two = storage.view(2, 0..8192).to_vec();
        let first = decode_record(&two, SEGMENT_HEADER_BYTES, record_salt(2, key))
            .expect("segment 2 starts with its checkpoint")
            .lsn;
        let mut record = vec![0; RECORD_HEADER_BYTES + 24];
        assert!(
            end + record.len() <= 8192,
            "room after segment 1's log: {end}"
        );
        let image = RecordHeader {
            len_bytes: record.len() as u32,
            kind: RecordKind::HardState,
            lsn: first + 1,
            durable_lsn: 1,
            group: 1,
        };
        put_record_header(&mut record, &image);
        seal_record(&mut record, record_salt(1, key));
        storage.write(1, end, &record);
        match block_on(Wal::open(storage, config)) {
            Err(error @ WalOpenError::LogForks { .. }) => {
                let WalOpenError::LogForks { file, offset, lsn } = &error else {
                    unreachable!()
                };
                assert!(file.ends_with("1.wal"), "{error}");
                assert_eq!((*offset, *lsn), (end as u64, first), "{error}");
                assert!(!error.to_string().contains("prove"), "{error}");
            }
            Err(other) => panic!("wanted LogForks, got {other}"),
            Ok(wal) => panic!("opened: {:?}", wal.recovery_report()),
        }
    }

    /// Group 1's hard state (term 4, vote 2), synced.
    fn vote_durably(wal: &mut Wal<MemStorage>) {
        let state = crate::wal::HardState {
            term: 4,
            vote: 2,
            commit: 0,
        };
        wal.set_hard_state(1, state).expect("hard state");
        block_on(wal.sync()).expect("sync");
    }

    /// The file named by the `CorruptSegmentHeader` that opening `storage` fails with.
    fn refused_for_a_header(storage: MemStorage, config: WalConfig) -> String {
        match block_on(Wal::open(storage, config)) {
            Err(WalOpenError::CorruptSegmentHeader { file }) => file,
            Err(other) => panic!("wanted CorruptSegmentHeader, got {other}"),
            Ok(wal) => panic!("opened: {:?}", wal.recovery_report()),
        }
    }

    /// Goal: on the in-memory storage the same operations write the same bytes, so a seed
    /// of the model test replays exactly (its crash faults pick among the bytes that differ
    /// from the synced ones; found in review: a random key per WAL changed them).
    #[test]
    fn the_same_operations_write_the_same_bytes_in_memory() {
        let bytes = || {
            let config = WalConfig {
                segment_bytes: 8192,
            };
            let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
            wal.append_entries(1, 1, &[(1, b"same".as_slice())])
                .expect("append");
            wal.storage.view(1, 0..8192)
        };
        assert_eq!(bytes(), bytes());
    }

    /// Goal: a damaged header on the only segment that states the key is refused, not taken
    /// for the end of the log (found in review: in a log written before keys, its first
    /// keyed segment's records could not be checked once its header was damaged, and the
    /// segment was dropped with the entries and the vote it held). Method: a format 2 log
    /// reopened and filled into a second, keyed segment holding a hard state; a byte of
    /// that segment's header flipped.
    #[test]
    fn a_damaged_header_of_the_only_keyed_segment_is_refused() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        wal.append_entries(1, 1, &[(1, b"entry".as_slice())])
            .expect("append");
        block_on(wal.sync()).expect("sync");
        let mut storage = wal.into_storage();
        unkey(&mut storage, 1);
        let mut wal = block_on(Wal::open(storage, config)).expect("a format 2 log opens");
        let mut index = 2;
        while wal.segments.len() < 2 {
            wal.append_entries(1, index, &[(1, b"entry".as_slice())])
                .expect("append");
            index += 1;
        }
        vote_durably(&mut wal);
        let mut storage = wal.into_storage();
        assert_eq!(storage.segment_seqs(), [1, 2], "no third segment prepared");
        storage.corrupt(2, 20, 1);
        assert!(refused_for_a_header(storage, config).contains("2.wal"));
    }

    /// Goal: the refusals of unreadable headers cover damage only: what a crash leaves (an
    /// older build's create cut short: a header of zeros with zeros after it; a recycle cut
    /// short: the file's old header) opens, the segment dropped. Method: a format 2 log with
    /// each of those after its end.
    #[test]
    fn what_a_crash_leaves_after_the_end_of_an_unkeyed_log_opens() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        for crash in ["create", "recycle"] {
            let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
            vote_durably(&mut wal);
            let mut storage = wal.into_storage();
            unkey(&mut storage, 1);
            if crash == "create" {
                storage.create(2, 8192, &[0; SEGMENT_HEADER_BYTES]).unwrap();
            } else {
                let old = storage.view(1, 0..8192).to_vec();
                storage.create(2, 8192, &old).unwrap();
            }
            let wal = block_on(Wal::open(storage, config)).expect(crash);
            let report = wal.recovery_report();
            assert_eq!(report.segments_discarded, [2], "{crash}: {report:?}");
            let state = wal.group(1).and_then(|g| g.hard_state);
            assert_eq!(state.map(|h| h.vote), Some(2), "{crash}");
        }
    }

    /// Goal: the old bytes of a file whose recycle was cut short (its header still the one
    /// of its earlier life, here of a format without a key) are checked with the WAL's key,
    /// so a value there that guessed the file's new seq does not pass for a record (found in
    /// review: they were checked with the salt of that old header, the new seq alone, and
    /// such a value made recovery refuse the log). Method: a keyed log of one segment (a
    /// vote); after it, a file under a format 2 header of seq 1 whose bytes hold the image
    /// of a record salted with seq 2 alone, its lsn just past the end and durable up to it.
    #[test]
    fn old_bytes_under_a_stale_header_never_pass_for_a_record() {
        let config = WalConfig {
            segment_bytes: 8192,
        };
        let mut wal = block_on(Wal::open(MemStorage::new(), config)).expect("fresh");
        vote_durably(&mut wal);
        let lsn = wal.next_lsn + 1;
        let mut storage = wal.into_storage();
        let mut old = storage.view(1, 0..8192).to_vec();
        unkey_header(&mut old);
        old[SEGMENT_HEADER_BYTES..].fill(0);
        let image = RecordHeader {
            len_bytes: (RECORD_HEADER_BYTES + 24) as u32,
            kind: RecordKind::HardState,
            lsn,
            durable_lsn: lsn,
            group: 1,
        };
        let record = &mut old[4096..4096 + RECORD_HEADER_BYTES + 24];
        put_record_header(record, &image);
        record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + 8].copy_from_slice(&9u64.to_le_bytes());
        seal_record(record, 2);
        storage.create(2, 8192, &old).unwrap();
        let wal = block_on(Wal::open(storage, config)).expect("opens");
        assert_eq!(wal.recovery_report().segments_discarded, [2]);
        let state = wal.group(1).and_then(|g| g.hard_state);
        assert_eq!(state.map(|h| (h.term, h.vote)), Some((4, 2)));
    }
}
