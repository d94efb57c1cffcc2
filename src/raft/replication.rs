//! Log replication: appends with flow control, heartbeats, snapshots and the commit rule.

use super::election::Election;
use super::errors::StepError;
use super::message::{
    AppendEntries, AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, Message,
    MessageBody,
};
use super::progress::ProgressState;
use super::quorum::joint_value;
use super::replica::{LostEntries, Replica};
use super::types::{LogIndex, NodeId, Role, Snapshot, Term};

impl Replica {
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, NodeId::NONE);
                return;
            }
        }
        // A transfer that did not finish in its time (see `transfer_ticks_left`) is abandoned.
        if self.lead_transferee.is_some() {
            self.transfer_ticks_left = self.transfer_ticks_left.saturating_sub(1);
            if self.transfer_ticks_left == 0 {
                self.lead_transferee = None;
            }
        }
        self.tick_snapshot_retries();
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            let quiesce = self.may_quiesce();
            self.send_heartbeats(quiesce);
            self.quiesced = quiesce;
        }
    }

    /// CheckQuorum: has a quorum been heard from since the last check? Resets the marks.
    fn quorum_recently_active(&mut self) -> bool {
        let id = self.id;
        let progress = &self.progress;
        let active = joint_value(&self.conf, |voter| {
            u64::from(voter == id || progress.iter().any(|p| p.id == voter && p.recent_active))
        });
        for p in &mut self.progress {
            p.active_round_before = p.recent_active;
            p.recent_active = p.id == id;
        }
        active == 1
    }

    fn tick_snapshot_retries(&mut self) {
        let retry_ticks = self.config.snapshot_retry_ticks;
        let mut retry = Vec::new();
        for p in &mut self.progress {
            if let ProgressState::Snapshot {
                index,
                ticks_waited,
            } = p.state
            {
                if ticks_waited + 1 >= retry_ticks {
                    p.state = ProgressState::Probe;
                    p.become_probe();
                    retry.push(p.id);
                } else {
                    p.state = ProgressState::Snapshot {
                        index,
                        ticks_waited: ticks_waited + 1,
                    };
                }
            }
        }
        for id in retry {
            self.maybe_send_append(id, true);
        }
    }

    pub(crate) fn step_leader(&mut self, message: Message) -> Result<(), StepError> {
        let from = message.from;
        match message.body {
            MessageBody::AppendResponse(response) => self.on_append_response(from, response),
            MessageBody::HeartbeatResponse(response) => self.on_heartbeat_response(from, response),
            MessageBody::ReadIndexRequest { ctx } => {
                // The follower learns of a refusal by never hearing back; it retries.
                let _ = self.leader_read(ctx, from);
            }
            MessageBody::ForwardProposal { data }
                if !data.is_empty() && self.config.forward_proposals =>
            {
                // Refusals (backpressure, transfer) drop the forwarded batch; the client retries.
                let _ = self.propose_batch(data);
            }
            MessageBody::AppendRequest(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => {
                return Err(StepError::Malformed("a second leader in the same term"));
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn step_follower(&mut self, message: Message) -> Result<(), StepError> {
        let from = message.from;
        // As a leader refuses them: a term has one leader, and one that spoke first is it.
        // Taken, a second sender (broken or hostile) became the leader whose TimeoutNow and
        // read answers this replica trusts (found in review).
        let from_a_leader = matches!(
            message.body,
            MessageBody::AppendRequest(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::InstallSnapshot(_)
        );
        if from_a_leader && !self.leader.is_none() && from != self.leader {
            return Err(StepError::Malformed("a second leader in the same term"));
        }
        match message.body {
            MessageBody::AppendRequest(request) => {
                self.heard_from_leader(from);
                self.on_append_request(from, &request);
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.heard_from_leader(from);
                self.on_heartbeat(from, heartbeat);
                self.quiesce_on(&heartbeat);
            }
            MessageBody::InstallSnapshot(snapshot) => {
                self.heard_from_leader(from);
                self.on_install_snapshot(from, *snapshot);
            }
            // Only from the leader this replica follows: a TimeoutNow that waited in a queue
            // while this node was down reaches a replica that knows no leader yet, and the
            // transfer it was for was given up long ago.
            MessageBody::TimeoutNow if self.is_promotable() && from == self.leader => {
                self.start_election(Election::Transfer)
            }
            // Only from the leader this replica asked: another peer's (broken or hostile;
            // the numbers are easy to guess) had the read served at once.
            MessageBody::ReadIndexResponse { ctx, index } if from == self.leader => {
                self.reads
                    .ready
                    .push(super::replica::ReadState { ctx, index });
            }
            _ => {}
        }
        Ok(())
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        self.election_elapsed = 0;
        self.leader_heard_tick = Some(self.ticks);
        self.leader = leader;
    }

    fn on_append_request(&mut self, from: NodeId, request: &AppendRequest) {
        let committed = self.log.committed;
        if request.prev_log_index < committed {
            // Everything up to our commit matches; tell the leader where we are.
            let response = AppendResponse {
                index: committed,
                ..accept()
            };
            self.send_after_persist(from, MessageBody::AppendResponse(response));
            return;
        }
        match self.log.try_append(
            request.prev_log_index,
            request.prev_log_term,
            &request.entries,
        ) {
            Some(last_new) => {
                self.log.commit_to(request.commit.min(last_new));
                let response = AppendResponse {
                    index: last_new,
                    ..accept()
                };
                self.send_after_persist(from, MessageBody::AppendResponse(response));
            }
            None => {
                // No lower than our commit: up to it our log is every later leader's, and a
                // search from a `prev_log_term` of 0 walked the whole log for each of the
                // thousands of appends a frame may hold (found in review).
                let hint = request.prev_log_index.min(self.log.last_index());
                let floor = self.log.committed;
                let (reject_hint, hint_term) =
                    self.log
                        .find_conflict_by_term(hint, request.prev_log_term, floor);
                let response = AppendResponse {
                    index: request.prev_log_index,
                    reject: true,
                    reject_hint,
                    hint_term,
                };
                self.send_now(from, MessageBody::AppendResponse(response));
            }
        }
    }

    /// A heartbeat names what the leader knows this node acknowledged (the commit is capped
    /// at it), and within a term a log never drops below what it acknowledged (a conflict
    /// only cuts entries the leader does not have): beyond our log, it names entries this
    /// node acknowledged and no longer holds.
    fn on_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        let last_index = self.log.last_index();
        // From a leader of an older build, `acknowledged` reads as the commit.
        let acknowledged = heartbeat.acknowledged.max(heartbeat.commit);
        let known_term = heartbeat.acknowledged_term;
        // Up to our commit our log is the leader's; above it, the term at what we
        // acknowledged vouches for every entry up to there (Log Matching).
        let replaced = known_term != Term::ZERO
            && acknowledged > self.log.committed
            && acknowledged <= last_index
            && self.log.term(acknowledged) != Some(known_term);
        let short_of_commit = if acknowledged > last_index {
            Some(last_index)
        } else {
            replaced.then_some(self.log.committed)
        };
        if let Some(holds) = short_of_commit {
            // The cap assumes our log matches the leader's up to what we acknowledged, which
            // a loss breaks (an old copy of the log may hold other entries there): commit
            // nothing until the leader has sent the log again, and vote for no candidate
            // short of this commit.
            if heartbeat.commit > last_index {
                self.committed_not_held = self.committed_not_held.max(heartbeat.commit);
            }
            // Our log may hold the commit's index with another term: only a candidate whose
            // log is at least as up to date as the leader's entry at the commit holds it.
            if heartbeat.commit_term != Term::ZERO && heartbeat.commit > self.log.committed {
                let bound = (heartbeat.commit_term, heartbeat.commit);
                self.committed_not_held_at = self.committed_not_held_at.max(bound);
            }
            if self.lost_reported_term != self.term {
                self.lost_reported_term = self.term;
                self.lost_entries.push(LostEntries {
                    follower: self.id,
                    acknowledged,
                    holds,
                });
            }
        } else {
            self.log.commit_to(heartbeat.commit);
        }
        let response = HeartbeatResponse {
            read_round: heartbeat.read_round,
            short_of_commit,
        };
        self.send_now(from, MessageBody::HeartbeatResponse(response));
    }

    fn on_install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if index <= self.log.committed {
            let response = AppendResponse {
                index: self.log.committed,
                ..accept()
            };
            self.send_after_persist(from, MessageBody::AppendResponse(response));
            return;
        }
        if self.log.matches(index, term) {
            // We already hold the snapshot's entries: only the commit index is news.
            self.log.commit_to(index);
        } else {
            self.log.install_snapshot(index, term);
            self.conf = snapshot.meta.conf_state.clone();
            self.conf_index = index;
            self.reset_progress();
            self.snapshot_to_persist = Some(snapshot.clone());
            self.snapshot = snapshot;
        }
        let response = AppendResponse { index, ..accept() };
        self.send_after_persist(from, MessageBody::AppendResponse(response));
    }

    fn on_append_response(&mut self, from: NodeId, response: AppendResponse) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress_mut(from) else {
            return;
        };
        progress.recent_active = true;
        // It answers: its queue drains.
        progress.queue_full = false;
        if response.reject {
            // A reject that changes nothing is dropped before the log is searched, and the
            // search runs between the rejected index and the match: each may walk back over a
            // whole term, and a peer may send thousands of rejects in one frame (reviews 223,
            // 227).
            if !progress.takes_reject(response.index) {
                return;
            }
            let hint = response.reject_hint.min(response.index);
            let floor = progress.match_index;
            let next_probe =
                if response.hint_term > Term::ZERO && progress.state != ProgressState::Replicate {
                    let found = self
                        .log
                        .find_conflict_by_term(hint, response.hint_term, floor);
                    found.0
                } else {
                    hint
                };
            let progress = self.progress_mut(from).expect("checked above");
            if progress.maybe_decrease_to(response.index, next_probe) {
                if progress.state == ProgressState::Replicate {
                    progress.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        if response.index > last_index {
            // No follower holds what this leader never had: a broken or hostile peer (or a
            // leader that lost its own log's end). Believed, the match would point past the
            // log, and the next append would find no term there and send a snapshot.
            return;
        }
        let was_paused = progress.is_paused();
        // A probe answered at the known match also ends probing: the follower holds the log
        // up to there, nothing more was sent. Only the probe actually sent (from the match
        // on): a new leader's fresh progress has match 0, and a late answer of 0 (to a message
        // of an older term) once sent it the whole log, or a snapshot.
        let probe_confirmed = progress.state == ProgressState::Probe
            && response.index == progress.match_index
            && response.index == progress.next_index.prev();
        if !progress.maybe_update(response.index) && !probe_confirmed {
            return;
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot { index, .. } if progress.match_index >= index => {
                progress.become_probe();
                progress.become_replicate();
            }
            ProgressState::Replicate => progress.inflights.free_up_to(response.index),
            ProgressState::Snapshot { .. } => {}
        }
        let caught_up = progress.match_index == last_index;
        if self.maybe_commit() {
            self.broadcast_pending |= self.config.broadcast_commit || self.commits_broadcast_now;
        } else if was_paused {
            self.maybe_send_append(from, true);
        }
        // The window may have opened: fill it.
        while self.maybe_send_append(from, false) {}
        if caught_up && self.lead_transferee == Some(from) {
            self.send_timeout_now(from);
        }
    }

    fn on_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        let last_index = self.log.last_index();
        let round = self.reads.round();
        let Some(progress) = self.progress_mut(from) else {
            return;
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        progress.queue_full = false;
        // A round never started (a broken or hostile peer) would confirm every later one.
        progress.acked_round = progress.acked_round.max(response.read_round.min(round));
        let mut lost = None;
        if let Some(holds) = response.short_of_commit
            && response.read_round > progress.lost_round
            && progress.match_index > holds
        {
            // The follower no longer holds entries it acknowledged (a round from before the
            // last time this was handled would only repeat it). Probing at its match index
            // would be refused forever: forget it and send the log again from where the
            // follower's ends.
            lost = Some(LostEntries {
                follower: from,
                acknowledged: progress.match_index,
                holds,
            });
            progress.forget_match(holds, round);
        }
        let behind = progress.match_index < last_index;
        let window_full = progress.state == ProgressState::Replicate && progress.is_paused();
        // A probing follower is probed even when it holds the whole log (it was probing
        // because it was unreachable, say): the answer moves it back to replicating, which
        // an idle group would otherwise never do, and only a replicating voter may be handed
        // the leadership.
        let probing = progress.state == ProgressState::Probe;
        if behind && window_full {
            // Every append in the window may have been lost: an empty append finds out
            // (the follower's answer either frees the window or sends us back to probing).
            self.send_empty_append(from);
        } else if behind || probing {
            self.maybe_send_append(from, true);
        }
        self.lost_entries.extend(lost);
        // The transferee holds the whole log: tell it again. It drops a TimeoutNow while it
        // has a membership change to apply, and no append answer may come to resend it on,
        // as proposals wait for the transfer (found in review: the group's writes were held
        // until the transfer timed out).
        if !behind && self.lead_transferee == Some(from) {
            self.send_timeout_now(from);
        }
        self.confirm_read_rounds();
    }

    /// Every member is sent a heartbeat carrying a new read round; a quiesced leader wakes
    /// (its followers do on this heartbeat).
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.wake();
        self.send_heartbeats(false);
    }

    /// Every member is sent a heartbeat carrying a new read round, marked `quiesce` if so.
    fn send_heartbeats(&mut self, quiesce: bool) {
        let round = self.reads.start_round(self.ticks);
        let id = self.id;
        if let Some(own) = self.progress_mut(id) {
            own.acked_round = round;
        }
        let committed = self.log.committed;
        let targets: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|p| p.id != id)
            .map(|p| (p.id, p.match_index))
            .collect();
        for (to, match_index) in targets {
            // Never tell a follower to commit past what it is known to hold.
            let commit = committed.min(match_index);
            let term_at = |index| self.log.term(index).unwrap_or(Term::ZERO);
            let heartbeat = Heartbeat {
                commit,
                read_round: round,
                acknowledged: match_index,
                acknowledged_term: term_at(match_index),
                commit_term: term_at(commit),
                quiesce,
            };
            self.send_now(to, MessageBody::Heartbeat(heartbeat));
        }
        self.confirm_read_rounds();
    }

    /// Offer appends to every follower; called when new entries or a new commit index
    /// should go out.
    pub(crate) fn broadcast_append(&mut self) {
        let id = self.id;
        let committed = self.log.committed;
        let targets: Vec<(NodeId, bool)> = self
            .progress
            .iter()
            .filter(|p| p.id != id)
            .map(|p| (p.id, p.commit_sent < committed))
            .collect();
        for (to, commit_is_news) in targets {
            self.maybe_send_append(to, commit_is_news);
            while self.maybe_send_append(to, false) {}
        }
    }

    /// Send the next append (or snapshot) to `to` if flow control allows. Returns whether
    /// anything was sent. `send_if_empty`: send even with no entries (to carry the commit).
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let (entries_max, bytes_max) =
            (self.config.append_entries_max, self.config.append_bytes_max);
        let Some(progress) = self.progress_of(to) else {
            return false;
        };
        if progress.is_paused() {
            return false;
        }
        let next = progress.next_index;
        let prev_log_index = next.prev();
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            return self.send_snapshot(to);
        };
        let entries = if next <= self.log.last_index() {
            self.log.slice(next, entries_max, bytes_max)
        } else {
            AppendEntries::new()
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let count = entries.len();
        let last = prev_log_index.plus(count as u64);
        let bytes = entries.iter().map(super::types::Entry::size_bytes).sum();
        let commit = self.log.committed;
        let progress = self.progress_mut(to).expect("checked above");
        progress.sent_append(last, count, bytes);
        progress.commit_sent = progress.commit_sent.max(commit.min(last));
        let request = AppendRequest {
            prev_log_index,
            prev_log_term,
            entries,
            commit,
        };
        self.send_now(to, MessageBody::AppendRequest(request));
        true
    }

    fn send_empty_append(&mut self, to: NodeId) {
        let Some(progress) = self.progress_of(to) else {
            return;
        };
        let prev_log_index = progress.next_index.prev();
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            // Compacted past the window: start over from the known match (or a snapshot).
            self.progress_mut(to).expect("member").become_probe();
            self.maybe_send_append(to, true);
            return;
        };
        let commit = self.log.committed;
        let request = AppendRequest {
            prev_log_index,
            prev_log_term,
            entries: AppendEntries::new(),
            commit,
        };
        self.send_now(to, MessageBody::AppendRequest(request));
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let recent_active = self.progress_of(to).is_some_and(|p| p.recent_active);
        if !recent_active {
            // Do not stream a snapshot to a node that may be down; wait until it answers.
            return false;
        }
        let snapshot = self.snapshot.clone();
        assert!(
            snapshot.meta.index >= self.log.snapshot_index(),
            "node {} term {}: compacted to {} without keeping the snapshot",
            self.id,
            self.term,
            self.log.snapshot_index()
        );
        self.progress_mut(to)
            .expect("member")
            .become_snapshot(snapshot.meta.index);
        self.send_now(to, MessageBody::InstallSnapshot(Box::new(snapshot)));
        true
    }

    /// Advance the commit index to what a quorum holds durably, if that entry is of this
    /// term (Raft never commits an older term's entry by counting replicas).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let quorum_match = joint_value(&self.conf, |id| {
            progress
                .iter()
                .find(|p| p.id == id)
                .map_or(0, |p| p.match_index.0)
        });
        let candidate = LogIndex(quorum_match);
        if candidate <= self.log.committed || self.log.term(candidate) != Some(self.term) {
            return false;
        }
        let first_commit_of_term = self.log.term(self.log.committed) != Some(self.term);
        // A membership change is news to every member at its commit, with or without a
        // broadcast of every commit: a node it removes hears of it only from the appends
        // sent before the leader applies it (then its progress is dropped, and nothing
        // more goes to it), and would otherwise stay in the old configuration, campaigning.
        let conf = self.pending_conf_index;
        if self.log.committed < conf && conf <= candidate {
            self.broadcast_pending = true;
        }
        self.log.commit_to(candidate);
        if first_commit_of_term {
            self.release_reads_awaiting_commit();
        }
        true
    }

    /// The leader's own log became durable up to `persisted`.
    pub(crate) fn leader_persisted(&mut self) {
        debug_assert_eq!(self.role, Role::Leader);
        let (id, persisted) = (self.id, self.log.persisted);
        if let Some(own) = self.progress_mut(id) {
            own.maybe_update(persisted);
        }
        if self.maybe_commit() {
            self.broadcast_pending |= self.config.broadcast_commit || self.commits_broadcast_now;
        }
    }
}

fn accept() -> AppendResponse {
    AppendResponse {
        index: LogIndex::ZERO,
        reject: false,
        reject_hint: LogIndex::ZERO,
        hint_term: Term::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::raft::config::Config;
    use crate::raft::message::VoteResponse;
    use crate::raft::ready::Ready;
    use crate::raft::replica::Persisted;
    use crate::raft::types::{Entry, EntryKind};

    /// Node 1 leading nodes 2 and 3, both replicating and holding its whole log (index 2),
    /// with one entry per append.
    fn leader_of_three() -> Replica {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let mut config = Config::new(NodeId(1));
        config.pre_vote = false;
        config.append_entries_max = 1;
        let mut leader = Replica::new(config, 1, Persisted::bootstrap(&voters)).unwrap();
        leader.campaign();
        let vote = MessageBody::VoteResponse(VoteResponse { reject: false });
        leader.step(message_from(2, leader.term, vote)).unwrap();
        assert_eq!(leader.role, Role::Leader);
        appends_sent(&mut leader);
        for id in [2, 3] {
            let ack = AppendResponse {
                index: LogIndex(2),
                ..accept()
            };
            let ack = message_from(id, leader.term, MessageBody::AppendResponse(ack));
            leader.step(ack).unwrap();
        }
        appends_sent(&mut leader);
        assert_eq!(state_of(&leader, 2).0, ProgressState::Replicate);
        leader
    }

    /// Found in review: a node that may not campaign (here one outside the configuration),
    /// hearing no leader, counted its election ticks on until the count overflowed (about
    /// 50 days of 1 ms ticks; a panic where overflow is checked).
    #[test]
    fn a_node_that_may_not_campaign_ticks_on_for_good() {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let config = Config::new(NodeId(4));
        let mut outsider = Replica::new(config, 1, Persisted::bootstrap(&voters)).unwrap();
        outsider.election_elapsed = u32::MAX - 1;
        for _ in 0..3 {
            outsider.tick();
        }
        assert_eq!(outsider.election_elapsed, u32::MAX);
        assert_eq!(outsider.role, Role::Follower);
    }

    fn message_from(id: u64, term: Term, body: MessageBody) -> Message {
        Message {
            from: NodeId(id),
            to: NodeId(1),
            term,
            body,
        }
    }

    /// Take the leader's Readies (durable at once) and return the appends they send to node 2.
    fn appends_sent(leader: &mut Replica) -> Vec<AppendRequest> {
        let mut appends = Vec::new();
        while leader.has_ready() {
            let mut ready = leader.ready();
            let mut messages = ready.take_messages_now();
            messages.extend(ready.take_messages_after_persist());
            leader.advance(ready.ack());
            for message in messages {
                if let (NodeId(2), MessageBody::AppendRequest(append)) = (message.to, message.body)
                {
                    appends.push(append);
                }
            }
        }
        appends
    }

    fn propose(leader: &mut Replica, data: &'static [&'static str]) {
        let batch = data.iter().map(|d| Bytes::from_static(d.as_bytes()));
        leader.propose_batch(batch.collect()).unwrap();
    }

    /// Node 2's progress: its state, next index and appends in flight.
    fn state_of(leader: &Replica, id: u64) -> (ProgressState, LogIndex, usize) {
        let p = leader.progress_of(NodeId(id)).unwrap();
        (p.state, p.next_index, p.inflights.len())
    }

    /// The first and last index of `appends`' entries, asserting they follow one another.
    fn span(appends: &[AppendRequest]) -> (LogIndex, LogIndex) {
        let entries = appends.iter().flat_map(|a| &a.entries);
        let indexes: Vec<LogIndex> = entries.map(|e| e.index).collect();
        assert!(
            indexes.windows(2).all(|w| w[1] == w[0].next()),
            "{indexes:?}"
        );
        (indexes[0], *indexes.last().unwrap())
    }

    /// Goal: a replicating follower whose queue refused an append stays replicating, waits
    /// until it answers (nothing is built for it meanwhile), and is then sent the log again
    /// from that append's first entry: no gap, and nothing its queue took is sent again.
    /// Method: node 2's queue takes the append of entry 3, then refuses the one of entry 4
    /// (the core then offers it no later append of the batch, entry 5's); a proposal of
    /// entry 6; then node 2's answer to the append of entry 3.
    #[test]
    fn a_replicating_follower_is_sent_a_refused_append_again_from_its_first_entry() {
        let mut leader = leader_of_three();
        propose(&mut leader, &["a"]);
        assert_eq!(span(&appends_sent(&mut leader)), (LogIndex(3), LogIndex(3)));
        propose(&mut leader, &["b", "c"]);
        let refused = appends_sent(&mut leader);
        assert_eq!(span(&refused), (LogIndex(4), LogIndex(5)));
        let term = leader.term;
        leader.report_append_refused(NodeId(2), term, refused[0].prev_log_index);
        let rewound = (ProgressState::Replicate, LogIndex(4), 1);
        assert_eq!(state_of(&leader, 2), rewound, "entry 3 alone in flight");

        propose(&mut leader, &["d"]);
        assert!(appends_sent(&mut leader).is_empty(), "its queue is full");
        let ack = AppendResponse {
            index: LogIndex(3),
            ..accept()
        };
        let term = leader.term;
        leader
            .step(message_from(2, term, MessageBody::AppendResponse(ack)))
            .unwrap();
        let again = appends_sent(&mut leader);
        assert_eq!(again[0].prev_log_index, LogIndex(3));
        assert_eq!(span(&again), (LogIndex(4), LogIndex(6)));
    }

    /// Goal: a follower counts as durable only what a sync made durable, even when a
    /// truncated suffix is written back while Readies are in flight (found in review: the
    /// first Ready's sync credited the entries of the next two, and they were applied
    /// before being durable here). Method: node 2, a follower of five voters, takes three
    /// appends of terms 2, 3 and 4 without advancing: entries 2-10 of term 2; then 8-9 of
    /// term 3 (entries 8-10 dropped); then 8-10 of term 2 again, committed. The first
    /// Ready's sync ends: nothing past 7 is durable, nor applied; then the other two end.
    #[test]
    fn a_suffix_written_back_is_durable_only_once_its_own_ready_is() {
        let mut follower = follower_2_of_five();
        let appends = [
            (1, 2, (1, 1), follower_entries(2, 10, 2), 1),
            (3, 3, (7, 2), follower_entries(8, 9, 3), 1),
            (4, 4, (7, 2), follower_entries(8, 10, 2), 10),
        ];
        let readies = step_appends(&mut follower, appends);
        assert_eq!(follower.log.committed, LogIndex(10));
        follower.advance(readies[0].ack());
        assert!(
            follower.log.persisted <= LogIndex(7),
            "{:?}",
            follower.log.persisted
        );
        let applied = follower.take_committed_durable();
        assert!(
            applied.iter().all(|e| e.index <= LogIndex(7)),
            "{applied:?}"
        );
        for ready in &readies[1..] {
            follower.advance(ready.ack());
        }
        assert_eq!(follower.log.persisted, LogIndex(10));
    }

    /// Goal: appends past the end of the log, pipelined, are each credited durable once their
    /// own sync ends (found in review: every append counted as a truncation, and a follower
    /// taking an append during each sync credited nothing, applying nothing, while load
    /// lasted). Method: node 2 takes entries 2-5, then 6-8 with commit 5, a Ready for each,
    /// not advanced; the first Ready's sync ends: 2-5 are durable and applied.
    #[test]
    fn pipelined_appends_past_the_end_are_credited_as_their_syncs_end() {
        let mut follower = follower_2_of_five();
        let appends = [
            (1, 2, (1, 1), follower_entries(2, 5, 2), 1),
            (1, 2, (5, 2), follower_entries(6, 8, 2), 5),
        ];
        let readies = step_appends(&mut follower, appends);
        follower.advance(readies[0].ack());
        assert_eq!(follower.log.persisted, LogIndex(5));
        let applied: Vec<LogIndex> = follower
            .take_committed_durable()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(applied, (2..=5).map(LogIndex).collect::<Vec<_>>());
    }

    /// Node 2, a follower of five voters, fresh from bootstrap.
    fn follower_2_of_five() -> Replica {
        let voters: Vec<NodeId> = (1..=5).map(NodeId).collect();
        let mut config = Config::new(NodeId(2));
        config.pre_vote = false;
        Replica::new(config, 1, Persisted::bootstrap(&voters)).unwrap()
    }

    /// Entries `from..=to` of `term`.
    fn follower_entries(from: u64, to: u64, term: u64) -> AppendEntries {
        (from..=to)
            .map(|index| Entry {
                term: Term(term),
                index: LogIndex(index),
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"x"),
            })
            .collect()
    }

    /// An append to node 2: leader, term, prev (index, term), entries, commit.
    type AppendTo2 = (u64, u64, (u64, u64), AppendEntries, u64);

    /// Steps each append into `follower` and takes a Ready after each, advancing none.
    fn step_appends<const N: usize>(follower: &mut Replica, appends: [AppendTo2; N]) -> Vec<Ready> {
        let mut readies = Vec::new();
        for (leader, term, (prev, prev_term), entries, commit) in appends {
            let append = AppendRequest {
                prev_log_index: LogIndex(prev),
                prev_log_term: Term(prev_term),
                entries,
                commit: LogIndex(commit),
            };
            let message = Message {
                from: NodeId(leader),
                to: NodeId(2),
                term: Term(term),
                body: MessageBody::AppendRequest(append),
            };
            follower.step(message).unwrap();
            readies.push(follower.ready());
        }
        readies
    }

    /// Goal: a probe the transport refused is sent again once the follower answers anything,
    /// not awaited (no answer would come to it). Method: node 2 probing; the probe for entry
    /// 3 is refused; a proposal comes (nothing is sent: the queue is full), then node 2's
    /// answer to a heartbeat.
    #[test]
    fn a_refused_probe_is_sent_again_once_the_follower_answers() {
        let mut leader = leader_of_three();
        leader.report_unreachable(NodeId(2));
        propose(&mut leader, &["a"]);
        let probe = appends_sent(&mut leader);
        assert_eq!(span(&probe), (LogIndex(3), LogIndex(3)));
        let term = leader.term;
        leader.report_append_refused(NodeId(2), term, probe[0].prev_log_index);

        propose(&mut leader, &["b"]);
        assert!(appends_sent(&mut leader).is_empty(), "its queue is full");
        let answer = HeartbeatResponse {
            read_round: 0,
            short_of_commit: None,
        };
        let term = leader.term;
        leader
            .step(message_from(
                2,
                term,
                MessageBody::HeartbeatResponse(answer),
            ))
            .unwrap();
        let again = appends_sent(&mut leader);
        assert_eq!(again.len(), 1, "one probe at a time");
        assert_eq!(again[0].prev_log_index, LogIndex(2));
    }
}
