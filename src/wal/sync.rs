//! Group commit: one sync makes every record appended before it durable, for all groups;
//! then segments whose records are all dead are reclaimed.

use std::io;

use super::errors::WalError;
use super::log::Wal;
use super::storage::{SegmentSyncer, Storage};
use super::types::{GroupDurable, SyncReport};

/// A sync in flight: the syncers to run, and what to report when they are done. Running it
/// borrows nothing of the WAL, so appends go on meanwhile (they ride the next sync).
#[must_use = "a sync ticket must be waited on and handed to finish_sync"]
pub struct SyncTicket<Y: SegmentSyncer> {
    syncers: Vec<(u64, Y)>,
    pending: PendingSync,
}

/// What a completed ticket hands back to `finish_sync`.
pub struct SyncDone {
    pending: PendingSync,
    /// On failure: the segment whose sync failed, and why.
    result: Result<(), (u64, io::Error)>,
}

struct PendingSync {
    lsn_end: u64,
    groups: Vec<GroupDurable>,
    vote_group: Option<u64>,
}

impl<Y: SegmentSyncer> SyncTicket<Y> {
    /// Runs the segment syncs, oldest segment first; stops at the first failure.
    pub async fn wait(self) -> SyncDone {
        for (seq, syncer) in self.syncers {
            if let Err(err) = syncer.sync().await {
                return SyncDone {
                    pending: self.pending,
                    result: Err((seq, err)),
                };
            }
        }
        SyncDone {
            pending: self.pending,
            result: Ok(()),
        }
    }
}

impl<S: Storage> Wal<S> {
    /// Starts a sync of everything appended so far. Await `ticket.wait()` (it borrows nothing
    /// of the WAL, so appends may go on and ride the next sync), then hand the result to
    /// `finish_sync`. Several syncs may be in flight at once (each writes what was appended
    /// since the one before); finish them in the order they began.
    pub fn begin_sync(&mut self) -> Result<SyncTicket<S::Syncer>, WalError> {
        self.check_poisoned()?;
        self.syncs_in_flight += 1;
        self.sync_begun_lsn = self.next_lsn;
        // Only a sync that writes the active segment zero-fills the rest of the block it
        // ends in, which is what lets a record skip to the next block (an empty one, say
        // right after recovery, leaves that block as the disk has it).
        if self.unsynced_segments.last() == Some(&self.active()) {
            self.last_sync_end = (self.active(), self.cursor, self.next_lsn);
        }
        let syncers = self
            .unsynced_segments
            .drain(..)
            .map(|seq| (seq, self.storage.syncer(seq)))
            .collect();
        let groups = self
            .unsynced_groups
            .drain(..)
            .map(|group| {
                let log = self.groups.get_mut(&group).expect("unsynced groups exist");
                log.unsynced = false;
                GroupDurable {
                    group,
                    last_index: log.last_index(),
                    last_term: log.last_term(),
                }
            })
            .collect();
        Ok(SyncTicket {
            syncers,
            pending: PendingSync {
                lsn_end: self.next_lsn,
                groups,
                vote_group: self.unsynced_vote.take(),
            },
        })
    }

    /// Completes a sync: on success reports what became durable and reclaims dead segments;
    /// on failure poisons the WAL (the data's fate is unknown; fsync is never retried).
    pub fn finish_sync(&mut self, done: SyncDone) -> Result<SyncReport, WalError> {
        self.syncs_in_flight = self
            .syncs_in_flight
            .checked_sub(1)
            .expect("finish_sync without a sync in flight");
        self.check_poisoned()?;
        if let Err((seq, source)) = done.result {
            let file = self.storage.locate(seq);
            self.poisoned = Some(format!("sync of {file} failed: {source}"));
            return Err(WalError::SyncFailed { file, source });
        }
        assert!(
            done.pending.lsn_end >= self.durable_lsn,
            "sync tickets finished out of order: {} after {}",
            done.pending.lsn_end,
            self.durable_lsn
        );
        self.durable_lsn = done.pending.lsn_end;
        self.stats.syncs += 1;
        self.reclaim()?;
        Ok(SyncReport {
            durable_lsn: self.durable_lsn,
            groups: done.pending.groups,
            vote_group: done.pending.vote_group,
        })
    }

    /// Makes everything appended so far durable with one sync of the segments written since
    /// the last one (group commit), and reports per group how far its log is durable.
    pub async fn sync(&mut self) -> Result<SyncReport, WalError> {
        let ticket = self.begin_sync()?;
        let done = ticket.wait().await;
        self.finish_sync(done)
    }

    /// Whether dead segments wait for a sync no one has begun: the records that freed them
    /// (a snapshot marker, a truncation) were written after the last sync began. A caller
    /// that syncs only for its own writes begins one, or the segments stay on disk until
    /// its next write, which on an idle node may never come.
    pub fn reclaim_waits_for_sync(&self) -> bool {
        self.reclaim_pending
            .back()
            .is_some_and(|&(lsn, _)| lsn > self.sync_begun_lsn)
    }

    /// Remembers that segments before the oldest one holding a live entry are dead, once
    /// what was written so far (the snapshot marker, the checkpoint) is durable.
    pub(super) fn note_reclaimable(&mut self) {
        let active = self.active();
        let keep_from = self
            .groups
            .values()
            .filter_map(|log| log.oldest_segment())
            .min()
            .map_or(active, |seq| seq.min(active));
        let front = *self.segments.front().expect("an active segment");
        let known = self.reclaim_pending.back().map_or(front, |&(_, k)| k);
        if keep_from > known {
            self.reclaim_pending.push_back((self.next_lsn, keep_from));
        }
    }

    /// Removes (or recycles as the next segment) the dead segments whose death is durable,
    /// oldest first, so the segments left never have a hole.
    pub(super) fn reclaim(&mut self) -> Result<(), WalError> {
        let mut keep_from = None;
        while let Some(&(lsn, seq)) = self.reclaim_pending.front() {
            if lsn > self.durable_lsn {
                break;
            }
            keep_from = Some(seq);
            self.reclaim_pending.pop_front();
        }
        let Some(keep_from) = keep_from else {
            return Ok(());
        };
        while let Some(&seq) = self.segments.front() {
            if seq >= keep_from || seq == self.active() {
                break;
            }
            self.segments.pop_front();
            self.unsynced_segments.retain(|&s| s != seq);
            let next = self.active() + 1;
            // Only a file of the configured size is renamed into the next segment: its header
            // gives the configured size, which recovery checks against the file's length.
            let same_size = self.storage.size_bytes(seq) == self.config.segment_bytes;
            let reused = if self.prepared.is_none() && same_size {
                let header = self.segment_header(next);
                match self.storage.recycle(seq, next, &header) {
                    Ok(reused) => reused,
                    Err(source) => return Err(self.poison_segment_io(seq, source)),
                }
            } else {
                false
            };
            if reused {
                self.prepared = Some(next);
                self.stats.segments_recycled += 1;
            } else {
                if let Err(source) = self.storage.remove(seq) {
                    return Err(self.poison_segment_io(seq, source));
                }
                self.stats.segments_removed += 1;
            }
        }
        Ok(())
    }
}
