//! What the leader knows about each follower: how far it matches, what is in flight.

use std::collections::VecDeque;

use super::types::{LogIndex, NodeId};

/// How the leader sends to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the logs match is unknown: send one append at a time and wait for its answer.
    Probe,
    /// The logs match up to `match_index`: stream appends optimistically, bounded by the
    /// inflight window.
    Replicate,
    /// The follower needs a snapshot at `index`; nothing else is sent until it is installed
    /// or `ticks_waited` passes the retry limit.
    Snapshot { index: LogIndex, ticks_waited: u32 },
}

/// The appends in flight to one follower, each recorded by its last index and its bytes.
#[derive(Debug)]
pub(crate) struct Inflights {
    appends: VecDeque<(LogIndex, u64)>,
    bytes: u64,
    appends_max: usize,
    bytes_max: u64,
}

impl Inflights {
    pub(crate) fn new(appends_max: usize, bytes_max: u64) -> Inflights {
        Inflights {
            appends: VecDeque::new(),
            bytes: 0,
            appends_max,
            bytes_max,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.appends.len() >= self.appends_max || self.bytes >= self.bytes_max
    }

    pub(crate) fn add(&mut self, last_index: LogIndex, bytes: u64) {
        assert!(
            self.appends
                .back()
                .is_none_or(|&(last, _)| last < last_index)
        );
        self.appends.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Everything up to `index` has been acknowledged.
    pub(crate) fn free_up_to(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.appends.front() {
            if last > index {
                break;
            }
            self.bytes -= bytes;
            self.appends.pop_front();
        }
    }

    /// Drop the appends that end at or after `index`, newest first: they never left this
    /// node (the transport refused the first of them, and was offered none after it).
    pub(crate) fn forget_from(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.appends.back() {
            if last < index {
                break;
            }
            self.bytes -= bytes;
            self.appends.pop_back();
        }
    }

    pub(crate) fn reset(&mut self) {
        self.appends.clear();
        self.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.appends.len()
    }
}

#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) id: NodeId,
    pub(crate) match_index: LogIndex,
    pub(crate) next_index: LogIndex,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append was sent and its answer is awaited.
    pub(crate) probe_sent: bool,
    /// Heard from since the last CheckQuorum round.
    pub(crate) recent_active: bool,
    /// Heard from in the CheckQuorum round before (an election timeout long): with
    /// `recent_active`, whether the follower answered within the last one or two rounds.
    pub(crate) active_round_before: bool,
    pub(crate) inflights: Inflights,
    /// Highest heartbeat round this follower has answered.
    pub(crate) acked_round: u64,
    /// Highest commit index sent to this follower in an append (saves empty appends).
    pub(crate) commit_sent: LogIndex,
    /// The newest heartbeat round sent when the follower was last found to have lost
    /// entries it acknowledged (0: never); answers to older rounds tell nothing new.
    pub(crate) lost_round: u64,
    /// The transport refused an append to this follower (its queue is full): nothing more is
    /// built for it until it answers something, a sign its queue drains. A dead follower
    /// costs no work then, where building appends only to have them refused would cost a
    /// batch of them per group and turn.
    pub(crate) queue_full: bool,
}

impl Progress {
    pub(crate) fn new(id: NodeId, next_index: LogIndex, inflights: Inflights) -> Progress {
        Progress {
            id,
            match_index: LogIndex::ZERO,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: true,
            active_round_before: true,
            inflights,
            acked_round: 0,
            commit_sent: LogIndex::ZERO,
            lost_round: 0,
            queue_full: false,
        }
    }

    /// The follower holds its log only up to `holds`, less than it acknowledged: its match
    /// index is forgotten, and probing starts again right after `holds` (or a snapshot under
    /// way goes on). `round` is the newest heartbeat round sent. A late acknowledgement from
    /// before the loss can raise the match again; the next heartbeat's answer then finds the
    /// loss again.
    pub(crate) fn forget_match(&mut self, holds: LogIndex, round: u64) {
        self.match_index = LogIndex::ZERO;
        self.lost_round = round;
        self.commit_sent = LogIndex::ZERO;
        if !matches!(self.state, ProgressState::Snapshot { .. }) {
            self.state = ProgressState::Probe;
            self.next_index = holds.next();
            self.probe_sent = false;
            self.inflights.reset();
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, resume right after it; otherwise right after the known match.
        self.next_index = match self.state {
            ProgressState::Snapshot { index, .. } => self.match_index.max(index).next(),
            _ => self.match_index.next(),
        };
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot {
            index,
            ticks_waited: 0,
        };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Should the leader hold back appends to this follower?
    pub(crate) fn is_paused(&self) -> bool {
        if self.queue_full {
            return true;
        }
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// The follower acknowledged entries up to `index`. Returns whether that was news.
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index.next());
        updated
    }

    /// Whether a reject of the append after `rejected` can change anything: one above the
    /// match, and while probing, of the probe in flight. Any other is late, or refused at the
    /// match: late too, or the follower lost entries it had acknowledged; probing there again
    /// at once would be refused again, as fast as the network goes, and the next heartbeat's
    /// answer says which it was.
    pub(crate) fn takes_reject(&self, rejected: LogIndex) -> bool {
        rejected > self.match_index
            && (self.state == ProgressState::Replicate || self.next_index.prev() == rejected)
    }

    /// The follower rejected an append at `rejected`; it may match at or below `hint`.
    /// Returns false for a stale rejection (one the leader has already moved past).
    pub(crate) fn maybe_decrease_to(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        if !self.takes_reject(rejected) {
            return false;
        }
        if self.state == ProgressState::Replicate {
            self.next_index = self.match_index.next();
            return true;
        }
        // Below the probe in flight (`rejected` is above the match).
        self.next_index = rejected.min(hint.next()).max(self.match_index.next());
        self.probe_sent = false;
        true
    }

    /// The transport did not queue an append after `prev_log_index` (its queue to the
    /// follower is full): it and every later append of its batch never left. A replicating
    /// follower stays replicating, and is sent the log again from that append on: what its
    /// queue took is on its way, and probing from the match index would send all of that
    /// again, one append per round trip, behind the same long queue. A refused probe is sent
    /// again rather than awaited (no answer will come to it). Either waits until the
    /// follower answers something (`queue_full`).
    pub(crate) fn append_refused(&mut self, prev_log_index: LogIndex) {
        match self.state {
            ProgressState::Replicate => {
                let first = prev_log_index.next().max(self.match_index.next());
                if first < self.next_index {
                    self.next_index = first;
                    self.inflights.forget_from(first);
                }
            }
            ProgressState::Probe => self.probe_sent = false,
            ProgressState::Snapshot { .. } => return,
        }
        self.queue_full = true;
        // The appends the follower may get carried no commit past `prev_log_index`: one
        // past it is sent again.
        self.commit_sent = self.commit_sent.min(prev_log_index);
    }

    /// Record an append just sent that ends at `last_index` and carries `bytes`.
    pub(crate) fn sent_append(&mut self, last_index: LogIndex, entries: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next_index = last_index.next();
                    self.inflights.add(last_index, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {
                unreachable!("no appends while a snapshot is pending")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress::new(NodeId(2), LogIndex(11), Inflights::new(2, 1000))
    }

    #[test]
    fn inflight_window_pauses_replication_until_acked() {
        let mut p = progress();
        p.match_index = LogIndex(10);
        p.become_replicate();
        p.sent_append(LogIndex(12), 2, 100);
        assert!(!p.is_paused());
        p.sent_append(LogIndex(14), 2, 100);
        assert!(p.is_paused(), "two appends in flight fill a window of two");
        assert!(p.maybe_update(LogIndex(12)));
        p.inflights.free_up_to(LogIndex(12));
        assert!(!p.is_paused());
        assert_eq!(p.next_index, LogIndex(15));
    }

    #[test]
    fn probe_sends_one_append_at_a_time() {
        let mut p = progress();
        assert!(!p.is_paused());
        p.sent_append(LogIndex(11), 1, 10);
        assert!(p.is_paused());
    }

    #[test]
    fn stale_rejection_is_ignored() {
        let mut p = progress();
        assert!(
            !p.maybe_decrease_to(LogIndex(5), LogIndex(5)),
            "next-1 is 10, not 5"
        );
        assert!(p.maybe_decrease_to(LogIndex(10), LogIndex(3)));
        assert_eq!(p.next_index, LogIndex(4));
    }

    #[test]
    fn a_probe_refused_at_the_match_index_is_not_sent_again_at_once() {
        let mut p = progress();
        p.match_index = LogIndex(10);
        // Refused right after the match: late, or the follower lost what it acknowledged.
        assert!(!p.maybe_decrease_to(LogIndex(10), LogIndex(4)));
        assert_eq!(p.next_index, LogIndex(11));
        // The follower's heartbeat answer says its log ends at 4: probe from there.
        p.forget_match(LogIndex(4), 7);
        assert_eq!((p.match_index, p.next_index), (LogIndex::ZERO, LogIndex(5)));
        assert_eq!((p.state, p.lost_round), (ProgressState::Probe, 7));
        assert!(p.maybe_decrease_to(LogIndex(4), LogIndex(2)));
        assert_eq!(p.next_index, LogIndex(3));
    }

    /// Goal: an append the transport refused is sent again from its first entry while the
    /// follower stays replicating (what its queue took is on its way), and never from below
    /// the match. Method: three appends in flight, the second refused (the core then offers
    /// the third to no one); then a late report of one the follower has acknowledged since.
    #[test]
    fn a_refused_append_is_sent_again_from_its_first_entry_and_replication_goes_on() {
        let mut p = Progress::new(NodeId(2), LogIndex(11), Inflights::new(8, 1000));
        p.match_index = LogIndex(10);
        p.become_replicate();
        p.sent_append(LogIndex(12), 2, 100);
        p.sent_append(LogIndex(14), 2, 200);
        p.sent_append(LogIndex(16), 2, 300);
        p.commit_sent = LogIndex(16);
        p.append_refused(LogIndex(12));
        assert_eq!(
            (p.state, p.next_index),
            (ProgressState::Replicate, LogIndex(13))
        );
        assert_eq!((p.inflights.len(), p.inflights.bytes), (1, 100));
        assert!(p.commit_sent <= LogIndex(12), "the commit is sent again");
        assert!(p.is_paused(), "until the follower answers");
        p.queue_full = false;
        assert!(!p.is_paused());

        assert!(p.maybe_update(LogIndex(12)));
        p.inflights.free_up_to(LogIndex(12));
        p.append_refused(LogIndex(10));
        assert_eq!(p.next_index, LogIndex(13), "not below the match");
    }

    #[test]
    fn a_refused_probe_is_sent_again_once_the_follower_answers_and_a_snapshot_waits() {
        let mut p = progress();
        p.sent_append(LogIndex(11), 1, 10);
        assert!(p.is_paused());
        p.append_refused(LogIndex(10));
        assert!(p.is_paused(), "until the follower answers");
        p.queue_full = false;
        assert!(
            !p.is_paused(),
            "no answer will come to a probe that never left"
        );
        assert_eq!(
            (p.state, p.next_index),
            (ProgressState::Probe, LogIndex(11))
        );

        p.become_snapshot(LogIndex(20));
        p.append_refused(LogIndex(10));
        assert!(matches!(p.state, ProgressState::Snapshot { .. }) && p.is_paused());
    }

    #[test]
    fn byte_limit_fills_the_window_too() {
        let mut p = progress();
        p.become_replicate();
        p.sent_append(LogIndex(20), 10, 1000);
        assert!(p.is_paused());
    }
}
