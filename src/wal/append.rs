//! Placing records: room in the active segment, rotation onto the prepared next segment, the
//! checkpoint that opens every segment, and preparing the next segment ahead of need.

use super::errors::WalError;
use super::format::{
    BLOCK_BYTES, RECORD_HEADER_BYTES, RecordHeader, RecordKind, SEGMENT_HEADER_BYTES, align_up,
    put_record_header, seal_record,
};
use super::log::{KeptBytes, Wal, checkpoint_bytes};
use super::payload::{self, CheckpointGroup};
use super::storage::Storage;

/// The group field of records that belong to no group (checkpoints).
const NO_GROUP: u64 = 0;

impl<S: Storage> Wal<S> {
    pub(super) fn record_header(
        &self,
        kind: RecordKind,
        group: u64,
        len_bytes: usize,
    ) -> RecordHeader {
        RecordHeader {
            len_bytes: len_bytes as u32,
            kind,
            lsn: self.next_lsn,
            durable_lsn: self.durable_lsn,
            group,
        }
    }

    /// Makes room for a record of `len_bytes` of `group` at the cursor, rotating if the active
    /// segment is full, or refusing it, having changed nothing, where it would take the room
    /// kept for records of other kinds (see [`Wal::keep_room`]). A record never spans
    /// segments, and must fit one beside the checkpoint that opens it (a line per group,
    /// `group` included).
    pub(super) fn reserve(
        &mut self,
        len_bytes: usize,
        group: u64,
        kind: RecordKind,
    ) -> Result<(), WalError> {
        // Checked whether or not this record rotates, so every group the log takes can write
        // again after the next rotation. The next segment has the configured size, which a
        // recovered active segment need not have (the node ran with another `--segment-mib`).
        let room_bytes = |groups: usize| {
            (self.config.segment_bytes as usize)
                .saturating_sub(SEGMENT_HEADER_BYTES + checkpoint_bytes(groups))
        };
        let held = self.groups.len();
        // Fitting beside one more group's line, the record fits whether its group is new or
        // not: no lookup of the group on the common path.
        if align_up(len_bytes) > room_bytes(held + 1) {
            let groups = held + usize::from(!self.groups.contains_key(&group));
            let size_bytes_max = room_bytes(groups);
            if align_up(len_bytes) > size_bytes_max {
                return Err(WalError::RecordTooLarge {
                    size_bytes: len_bytes as u64,
                    size_bytes_max: size_bytes_max as u64,
                });
            }
        }
        // Where the record would start: past the block a sync in flight writes, if any. The
        // cursor moves only once the record is known to go there, so a refused record, or one
        // whose rotation fails (a full disk), leaves it where it was. A segment recovered
        // from disk keeps the size it was created with.
        let start = self.block_skip_target().unwrap_or(self.cursor);
        let segment_bytes = self.storage.size_bytes(self.active()) as usize;
        if self.prepared.is_none() && !self.rotation_builds {
            // Room is kept. A record may go into the room kept for its kind, but never skip a
            // block into kept room: it waits for the sync in flight to end instead (then the
            // block is rewritten, not skipped).
            let KeptBytes {
                markers,
                hard_states,
            } = self.kept_bytes;
            let kept_bytes = match kind {
                RecordKind::Snapshot | RecordKind::Truncate => 0,
                RecordKind::HardState => markers,
                _ => markers.saturating_add(hard_states),
            };
            let kept_from = segment_bytes.saturating_sub(markers.saturating_add(hard_states));
            let skip_fits = start == self.cursor || start <= kept_from;
            let room_bytes = segment_bytes.saturating_sub(kept_bytes);
            if !skip_fits || start + align_up(len_bytes) > room_bytes {
                let file = self.storage.locate(self.active() + 1);
                return Err(WalError::NotReady { file });
            }
        }
        if start + align_up(len_bytes) > segment_bytes {
            return self.rotate();
        }
        self.stats.skipped_bytes += (start - self.cursor) as u64;
        self.cursor = start;
        Ok(())
    }

    /// While no segment is prepared and rotation does not build one
    /// ([`Wal::set_rotation_builds`]), the end of the active segment is kept: room for
    /// `markers` snapshot markers, which only markers and truncations may take, and before
    /// it room for `hard_states` hard states, which entries may not take. A record that
    /// would take room kept from it, or skip a block (for a sync in flight) into kept room,
    /// is refused with [`WalError::NotReady`], having changed nothing. Where the next segment
    /// cannot be made (a full disk), only a marker frees one: once it is durable, a segment
    /// it made dead becomes the next; a marker that found the segment full would wait for
    /// the room only it can free. Hard states come next: a group whose commit cannot be
    /// written holds its committed entries unapplied, and so takes no snapshot.
    pub fn keep_room(&mut self, markers: usize, hard_states: usize) {
        let marker_bytes = align_up(RECORD_HEADER_BYTES + payload::SNAPSHOT_BYTES);
        let hard_state_bytes = align_up(RECORD_HEADER_BYTES + payload::HARD_STATE_BYTES);
        self.kept_bytes = KeptBytes {
            markers: markers.saturating_mul(marker_bytes),
            hard_states: hard_states.saturating_mul(hard_state_bytes),
        };
    }

    /// Where the storage writes whole blocks (`Storage::writes_whole_blocks`) and the last
    /// sync begun is still in flight, a record placed in the block that sync ended in would
    /// make the next sync write that block again while the first write may still land after
    /// it. So the record starts at the next block boundary instead, returned here (perhaps the
    /// segment's end, where the record rotates); the gap stays zero (the write in flight
    /// zero-fills its last block) and recovery skips it (see
    /// `format::next_in_block_after_zeros`). With no sync in flight, the next write rewrites
    /// the block from the last one's bytes (see `file.rs`), and this is `None`.
    fn block_skip_target(&self) -> Option<usize> {
        // Only while the write of that block is in flight: not, say, while an empty sync
        // begun after it is (found in review: it skipped a block, and in kept room refused).
        let (seq, end, lsn_end) = self.last_sync_end;
        if self.durable_lsn >= lsn_end || !self.storage.writes_whole_blocks() {
            return None;
        }
        let boundary = end.next_multiple_of(BLOCK_BYTES);
        (seq == self.active() && self.cursor < boundary).then_some(boundary)
    }

    /// Moves the cursor past a record just sealed at it.
    pub(super) fn advance(&mut self, len_bytes: usize) {
        self.cursor += align_up(len_bytes);
        self.next_lsn += 1;
        self.stats.records += 1;
        let active = self.active();
        if self.unsynced_segments.last() != Some(&active) {
            self.unsynced_segments.push(active);
        }
    }

    pub(super) fn mark_group_unsynced(&mut self, group: u64) {
        if self.groups.entry(group).or_default().mark_unsynced() {
            self.unsynced_groups.push(group);
        }
    }

    /// Writes a record whose payload is one small slice.
    pub(super) fn write_small(
        &mut self,
        kind: RecordKind,
        group: u64,
        payload: &[u8],
    ) -> Result<(), WalError> {
        let len_bytes = RECORD_HEADER_BYTES + payload.len();
        self.reserve(len_bytes, group, kind)?;
        self.put_record(kind, group, payload);
        self.mark_group_unsynced(group);
        Ok(())
    }

    /// Writes a record at the cursor; the caller made room.
    fn put_record(&mut self, kind: RecordKind, group: u64, payload: &[u8]) {
        let len_bytes = RECORD_HEADER_BYTES + payload.len();
        let (seq, start) = (self.active(), self.cursor);
        let header = self.record_header(kind, group, len_bytes);
        let salt = self.salt(seq);
        let record = self.storage.slot(seq, start..start + len_bytes);
        put_record_header(record, &header);
        record[RECORD_HEADER_BYTES..].copy_from_slice(payload);
        seal_record(record, salt);
        self.advance(len_bytes);
    }

    /// Restates every group's hard state and snapshot at the cursor (the start of a segment).
    pub(super) fn write_checkpoint(&mut self) -> Result<(), WalError> {
        let mut lines: Vec<CheckpointGroup> = self
            .groups
            .iter()
            .map(|(&group, log)| CheckpointGroup {
                group,
                hard_state: log.hard_state,
                snapshot: log.snapshot,
            })
            .collect();
        // By group: the same state writes the same bytes (the simulator replays its seeds).
        lines.sort_unstable_by_key(|line| line.group);
        let bytes = payload::checkpoint(&lines);
        let room = self.storage.size_bytes(self.active()) as usize - self.cursor;
        if align_up(RECORD_HEADER_BYTES + bytes.len()) > room {
            return Err(WalError::RecordTooLarge {
                size_bytes: (RECORD_HEADER_BYTES + bytes.len()) as u64,
                size_bytes_max: room as u64,
            });
        }
        self.put_record(RecordKind::Checkpoint, NO_GROUP, &bytes);
        Ok(())
    }

    /// Switches appends to the next segment, which starts with a checkpoint.
    pub(super) fn rotate(&mut self) -> Result<(), WalError> {
        if self.prepared.is_none() {
            if !self.rotation_builds {
                let file = self.storage.locate(self.active() + 1);
                return Err(WalError::NotReady { file });
            }
            // `prepare_next` was not called in time: pay for the preparation on the hot path
            // (or, on a full disk, fail with nothing changed).
            self.prepare_next()?;
            self.stats.rotation_stalls += 1;
        }
        let next = self.prepared.take().expect("prepared above");
        assert_eq!(next, self.active() + 1, "prepared segment out of sequence");
        self.segments.push_back(next);
        self.cursor = SEGMENT_HEADER_BYTES;
        self.stats.rotations += 1;
        if let Err(error) = self.write_checkpoint() {
            // A segment without its checkpoint must take no record: once the older segments
            // went, their hard states and snapshot markers would be lost.
            self.poisoned = Some(format!(
                "segment {next} cannot start with the checkpoint of all groups: {error}"
            ));
            return Err(error);
        }
        self.note_reclaimable();
        Ok(())
    }

    /// The segment `prepare_next` would create now, as (sequence, size, header), so a caller
    /// can build it elsewhere first (see `FileStore::build_job`).
    pub fn next_segment_plan(&self) -> Option<(u64, u64, Vec<u8>)> {
        if self.prepared.is_some() || self.poisoned.is_some() {
            return None;
        }
        let next = self.active() + 1;
        let header = self.segment_header(next);
        Some((next, self.config.segment_bytes, header.to_vec()))
    }

    /// Whether a rotation that finds no prepared segment makes one on the spot (true, the
    /// default: the record is never refused, but the call stalls for the zero-fill and the
    /// syncs of a whole segment) or refuses the record with [`WalError::NotReady`] and
    /// changes nothing (false: for a caller that builds segments elsewhere and can hold a
    /// record back until one is ready).
    pub fn set_rotation_builds(&mut self, builds: bool) {
        self.rotation_builds = builds;
    }

    /// The bytes left in the active segment.
    pub fn active_room_bytes(&self) -> usize {
        (self.storage.size_bytes(self.active()) as usize).saturating_sub(self.cursor)
    }

    /// True when the next segment is not prepared yet: the shard should call `prepare_next`
    /// at an idle moment, so the rotation that needs it does not stall.
    pub fn needs_prepare(&self) -> bool {
        self.prepared.is_none()
    }

    /// Prepares the segment after the active one: allocated, zero-filled, header written,
    /// durable, mapped and pre-faulted (or a reclaimed segment renamed, which skips all that).
    /// Slow (milliseconds for 64 MiB): call it off the hot path. Where the disk has no room
    /// for the segment, fails with [`WalError::NoRoom`] and changes nothing (a storage
    /// removes what a failed `create` made); any other failure poisons the WAL.
    pub fn prepare_next(&mut self) -> Result<(), WalError> {
        self.check_poisoned()?;
        if self.prepared.is_some() {
            return Ok(());
        }
        let next = self.active() + 1;
        let header = self.segment_header(next);
        if let Err(source) = self
            .storage
            .create(next, self.config.segment_bytes, &header)
        {
            if matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                let file = self.storage.locate(next);
                return Err(WalError::NoRoom { file, source });
            }
            return Err(self.poison_segment_io(next, source));
        }
        self.prepared = Some(next);
        Ok(())
    }

    /// A segment operation failed with an unknown effect on disk: poison.
    pub(super) fn poison_segment_io(&mut self, seq: u64, source: std::io::Error) -> WalError {
        let file = self.storage.locate(seq);
        self.poisoned = Some(format!("segment operation on {file} failed: {source}"));
        WalError::SegmentIo { file, source }
    }
}
