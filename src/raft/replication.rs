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
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = None;
        }
        self.tick_snapshot_retries();
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
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
        match message.body {
            MessageBody::AppendRequest(request) => {
                self.heard_from_leader(from);
                self.on_append_request(from, &request);
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.heard_from_leader(from);
                self.on_heartbeat(from, heartbeat);
            }
            MessageBody::InstallSnapshot(snapshot) => {
                self.heard_from_leader(from);
                self.on_install_snapshot(from, *snapshot);
            }
            MessageBody::TimeoutNow if self.is_promotable() => {
                self.start_election(Election::Transfer)
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
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
                let hint = request.prev_log_index.min(self.log.last_index());
                let (reject_hint, hint_term) =
                    self.log.find_conflict_by_term(hint, request.prev_log_term);
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
        let short_of_commit = (acknowledged > last_index).then_some(last_index);
        if short_of_commit.is_none() {
            self.log.commit_to(heartbeat.commit);
        } else {
            // The cap assumes our log matches the leader's up to what we acknowledged, which
            // a loss breaks (an old copy of the log may hold other entries there): commit
            // nothing until the leader has sent the log again, and vote for no candidate
            // short of this commit.
            if heartbeat.commit > last_index {
                self.committed_not_held = self.committed_not_held.max(heartbeat.commit);
            }
            if self.lost_reported_term != self.term {
                self.lost_reported_term = self.term;
                self.lost_entries.push(LostEntries {
                    follower: self.id,
                    acknowledged,
                    holds: last_index,
                });
            }
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
        if response.reject {
            let next_probe = if response.hint_term > Term::ZERO {
                self.log
                    .find_conflict_by_term(response.reject_hint, response.hint_term)
                    .0
            } else {
                response.reject_hint
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
            self.broadcast_pending |= self.config.broadcast_commit;
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
        progress.acked_round = progress.acked_round.max(response.read_round);
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
        self.confirm_read_rounds();
    }

    /// Every member is sent a heartbeat carrying a new read round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
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
            let heartbeat = Heartbeat {
                commit: committed.min(match_index),
                read_round: round,
                acknowledged: match_index,
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
            self.broadcast_pending |= self.config.broadcast_commit;
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
