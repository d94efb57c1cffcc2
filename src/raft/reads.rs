//! Linearizable reads: ReadIndex confirmed by heartbeat rounds, and leader-lease reads.
//!
//! Every heartbeat broadcast starts a numbered round; a follower's answer echoes the round.
//! Once a quorum has answered round `r`, every read that arrived before round `r` was sent
//! is known to have been served by the leader of the newest term, and may be answered at
//! the commit index recorded when it arrived. All reads that arrive within one turn of the
//! caller's loop share one round (`ready()` starts it), so one round trip confirms a batch.
//!
//! The same rounds feed the lease: the send tick of the newest confirmed round is the
//! lease's anchor, valid for `election_timeout - drift` ticks (voters refuse to elect anyone
//! else for an election timeout after hearing from the leader; see CheckQuorum).

use std::collections::VecDeque;

use super::errors::ReadError;
use super::message::MessageBody;
use super::quorum::joint_value;
use super::replica::{ReadState, Replica};
use super::types::{LogIndex, NodeId, Role};

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    from: NodeId,
    index: LogIndex,
    /// 0 until a round is started for it.
    round: u64,
}

/// The most rounds kept waiting for a quorum. A leader that never hears from one (cut off,
/// without CheckQuorum to depose it) starts a round every heartbeat; the oldest are dropped.
/// Dropping is safe: a confirmed round whose send tick is gone renews no lease, which only
/// makes the lease shorter.
const ROUNDS_UNCONFIRMED_MAX: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    round: u64,
    confirmed_round: u64,
    /// Send ticks of rounds not yet confirmed, oldest first.
    round_ticks: VecDeque<(u64, u64)>,
    pending: VecDeque<PendingRead>,
    unassigned: usize,
    /// Reads that arrived before this leader committed an entry of its own term: until
    /// then it does not know the commit index of the group.
    awaiting_commit: Vec<(u64, NodeId)>,
    /// Local reads confirmed, for the next Ready.
    pub(crate) ready: Vec<ReadState>,
    /// Local reads dropped because leadership was lost, for the next Ready.
    pub(crate) aborted: Vec<u64>,
    pub(crate) lease_anchor_tick: Option<u64>,
    /// This leader sent TimeoutNow in its term: its target may be elected inside any lease
    /// (transfer votes ignore leases), so no lease read until the next term. ReadIndex rounds
    /// stay safe.
    pub(crate) lease_forfeited: bool,
}

impl ReadQueue {
    /// The newest round started (0: none yet).
    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    pub(crate) fn start_round(&mut self, now_ticks: u64) -> u64 {
        self.round += 1;
        if self.round_ticks.len() == ROUNDS_UNCONFIRMED_MAX {
            self.round_ticks.pop_front();
        }
        self.round_ticks.push_back((self.round, now_ticks));
        if self.unassigned > 0 {
            for read in self.pending.iter_mut().rev().take_while(|r| r.round == 0) {
                read.round = self.round;
            }
            self.unassigned = 0;
        }
        self.round
    }

    pub(crate) fn has_unassigned(&self) -> bool {
        self.unassigned > 0
    }

    /// No read waits for a round or for the commit index.
    pub(crate) fn is_idle(&self) -> bool {
        self.len() == 0 && self.unassigned == 0
    }

    fn len(&self) -> usize {
        self.pending.len() + self.awaiting_commit.len()
    }

    /// Leadership is lost: nothing waiting can be confirmed any more.
    pub(crate) fn abort_all(&mut self) {
        let own_pending = self.pending.drain(..).map(|r| (r.ctx, r.from));
        let all = own_pending.chain(self.awaiting_commit.drain(..));
        // Only local reads are reported; a follower that forwarded a read times out.
        self.aborted
            .extend(all.filter(|&(_, from)| from.is_none()).map(|(ctx, _)| ctx));
        self.unassigned = 0;
        self.round_ticks.clear();
        self.confirmed_round = self.round;
        self.lease_anchor_tick = None;
        self.lease_forfeited = false;
    }
}

impl Replica {
    /// `from` is the follower that asked, or this node.
    pub(crate) fn leader_read(&mut self, ctx: u64, from: NodeId) -> Result<(), ReadError> {
        debug_assert_eq!(self.role, Role::Leader);
        // Reads followers forward take at most half the room, the rest kept for this node's
        // own (review 233: a broken or hostile peer's asks took all of it, and every read of
        // the leader's clients was refused as busy).
        let pending_max = match from == self.id {
            true => self.config.pending_reads_max,
            false => self.config.pending_reads_max.div_ceil(2),
        };
        if self.reads.len() >= pending_max {
            return Err(ReadError::Backpressure {
                pending: self.reads.len(),
                pending_max,
            });
        }
        // Local reads are recorded with `NodeId::NONE` so aborts can tell them apart.
        let from = if from == self.id { NodeId::NONE } else { from };
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads.awaiting_commit.push((ctx, from));
            return Ok(());
        }
        let index = self.log.committed;
        let sole_voter = self.conf.voters == [self.id] && !self.conf.is_joint();
        if sole_voter || self.lease_valid() {
            self.answer_read(ctx, from, index);
        } else {
            self.reads.pending.push_back(PendingRead {
                ctx,
                from,
                index,
                round: 0,
            });
            self.reads.unassigned += 1;
        }
        Ok(())
    }

    fn lease_valid(&self) -> bool {
        // Checked below the election timeout only where leases are on.
        let lease_ticks = u64::from(
            self.config
                .election_timeout_ticks
                .saturating_sub(self.config.lease_clock_drift_ticks),
        );
        self.config.lease_reads
            && self.lead_transferee.is_none()
            && !self.reads.lease_forfeited
            && self
                .reads
                .lease_anchor_tick
                .is_some_and(|anchor| self.ticks < anchor + lease_ticks)
    }

    fn answer_read(&mut self, ctx: u64, from: NodeId, index: LogIndex) {
        if from.is_none() {
            self.reads.ready.push(ReadState { ctx, index });
        } else {
            self.send_now(from, MessageBody::ReadIndexResponse { ctx, index });
        }
    }

    pub(crate) fn release_reads_awaiting_commit(&mut self) {
        let waiting = std::mem::take(&mut self.reads.awaiting_commit);
        for (ctx, from) in waiting {
            let from = if from.is_none() { self.id } else { from };
            // Capacity was checked when the read arrived.
            let _ = self.leader_read(ctx, from);
        }
    }

    /// Release every read whose round a quorum has answered, and renew the lease.
    pub(crate) fn confirm_read_rounds(&mut self) {
        let progress = &self.progress;
        let confirmed = joint_value(&self.conf, |id| {
            progress
                .iter()
                .find(|p| p.id == id)
                .map_or(0, |p| p.acked_round)
        });
        if confirmed <= self.reads.confirmed_round || confirmed == u64::MAX {
            return;
        }
        self.reads.confirmed_round = confirmed;
        while let Some(&(round, tick)) = self.reads.round_ticks.front() {
            if round > confirmed {
                break;
            }
            self.reads.lease_anchor_tick = Some(tick);
            self.reads.round_ticks.pop_front();
        }
        while let Some(read) = self.reads.pending.front() {
            if read.round == 0 || read.round > confirmed {
                break;
            }
            let read = self.reads.pending.pop_front().expect("front exists");
            self.answer_read(read.ctx, read.from, read.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: rounds no quorum answers (a leader cut off, without CheckQuorum) hold bounded
    /// memory; the newest are kept, whose confirmation anchors the lease once a quorum is
    /// back.
    #[test]
    fn unconfirmed_rounds_are_bounded_and_the_newest_still_anchor_the_lease() {
        let mut reads = ReadQueue::default();
        for tick in 0..10 * ROUNDS_UNCONFIRMED_MAX as u64 {
            reads.start_round(tick);
        }
        assert_eq!(reads.round_ticks.len(), ROUNDS_UNCONFIRMED_MAX);
        let newest = reads.round_ticks.back().copied();
        assert_eq!(
            newest,
            Some((reads.round(), 10 * ROUNDS_UNCONFIRMED_MAX as u64 - 1))
        );
    }
}
