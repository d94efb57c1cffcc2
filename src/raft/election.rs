//! Elections: timeouts, PreVote, votes, and how terms move.

use super::errors::StepError;
use super::message::{Message, MessageBody, VoteRequest, VoteResponse};
use super::quorum::{VoteResult, joint_vote};
use super::replica::Replica;
use super::types::{NodeId, Role};

impl Replica {
    /// Followers and candidates: campaign once the randomized timeout passes.
    pub(crate) fn tick_election(&mut self, campaigns_left: &mut u32) {
        // Saturating: a node that may not campaign, hearing no leader, counts on for good.
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.election_timeout_randomized
            && self.is_promotable()
            && self.campaigns
        {
            // One that cannot campaign yet (see `start_election`) takes none of the budget.
            let cost = u32::from(!self.has_unapplied_conf_changes());
            let Some(left) = campaigns_left.checked_sub(cost) else {
                return;
            };
            *campaigns_left = left;
            self.election_elapsed = 0;
            self.start_election(self.first_election_round());
        }
    }

    pub(crate) fn first_election_round(&self) -> Election {
        if self.config.pre_vote {
            Election::PreVote
        } else {
            Election::Vote
        }
    }

    pub(crate) fn start_election(&mut self, election: Election) {
        // As etcd's raft: a replica that knows of a committed configuration it has not
        // applied yet would count votes with an older one. The drivers today apply a
        // Ready's conf changes before any answer to its vote requests can arrive, but the
        // Ready contract lets a driver step the replica before it advances.
        if self.has_unapplied_conf_changes() {
            return;
        }
        if election == Election::PreVote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let pre_vote = election == Election::PreVote;
        let transfer = election == Election::Transfer;
        // Record our own vote first: a single-voter group wins on the spot.
        if self.record_vote(self.id, true) {
            return;
        }
        let request = VoteRequest {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        let campaign_term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        let mut voters = self.conf.voters.clone();
        voters.extend(
            self.conf
                .voters_outgoing
                .iter()
                .filter(|v| !self.conf.voters.contains(v)),
        );
        for voter in voters.into_iter().filter(|&v| v != self.id) {
            let body = if pre_vote {
                MessageBody::PreVoteRequest(request)
            } else {
                MessageBody::VoteRequest(request)
            };
            let message = Message {
                from: self.id,
                to: voter,
                term: campaign_term,
                body,
            };
            // A real vote request promises our own vote for ourselves, which must be durable.
            if pre_vote {
                self.messages_now.push(message);
            } else {
                self.messages_after_persist.push(message);
            }
        }
    }

    /// Count one vote; returns true when the election ended (won or lost) because of it.
    fn record_vote(&mut self, from: NodeId, granted: bool) -> bool {
        if !self.votes.iter().any(|&(id, _)| id == from) {
            self.votes.push((from, granted));
        }
        let votes = &self.votes;
        let result = joint_vote(&self.conf, |id| {
            votes.iter().find(|v| v.0 == id).map(|v| v.1)
        });
        match result {
            VoteResult::Won if self.role == Role::PreCandidate => {
                self.start_election(Election::Vote);
                true
            }
            VoteResult::Won => {
                self.become_leader();
                true
            }
            VoteResult::Lost => {
                self.become_follower(self.term, NodeId::NONE);
                true
            }
            VoteResult::Pending => false,
        }
    }

    /// Inside a leader's lease a voter refuses to help depose it (CheckQuorum), unless the
    /// leader itself asked for the election. The lease runs for an election timeout after
    /// the voter last heard the leader, whatever happened since: a message of a newer term
    /// that is no vote (a rejected pre-vote, a stale answer) makes it forget the leader, but
    /// the leader, unaware, still counts on it. With lease reads, a replica started less
    /// than an election timeout ago counts as inside one too: before a restart it may have
    /// confirmed a leader whose lease still runs, and which it no longer knows; granting a
    /// vote then could elect a new leader while the old one serves reads from its lease.
    fn in_lease(&self) -> bool {
        let timeout = self.config.election_timeout_ticks;
        let just_started = self.config.lease_reads && self.ticks < u64::from(timeout);
        let heard_lately = self
            .leader_heard_tick
            .is_some_and(|at| self.ticks < at + u64::from(timeout));
        let leading = !self.leader.is_none() && self.election_elapsed < timeout;
        self.config.check_quorum && (leading || heard_lately || just_started)
    }

    /// A message from a newer term. Returns whether to go on processing it.
    pub(crate) fn on_higher_term(&mut self, message: &Message) -> bool {
        match &message.body {
            MessageBody::PreVoteRequest(request) | MessageBody::VoteRequest(request) => {
                if !request.transfer && self.in_lease() {
                    return false;
                }
                if matches!(message.body, MessageBody::PreVoteRequest(_)) {
                    // A pre-vote changes nothing here, least of all our term.
                    return true;
                }
                self.become_follower(message.term, NodeId::NONE);
            }
            // A granted pre-vote carries the term the pre-candidate will campaign in.
            MessageBody::PreVoteResponse(VoteResponse { reject: false }) => {}
            MessageBody::AppendRequest(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => {
                self.become_follower(message.term, message.from);
            }
            _ => self.become_follower(message.term, NodeId::NONE),
        }
        true
    }

    /// A message from an older term is dropped, but its sender may need to learn ours.
    pub(crate) fn on_lower_term(&mut self, message: &Message) {
        match message.body {
            // Without pre-vote and check-quorum, a voter whose term rose past the leader's
            // campaigns, and its vote requests carry its term to the others; a node that may
            // not campaign (a learner, whose term removed voters' vote requests can raise)
            // has only this answer, or it would never hear from the leader again.
            MessageBody::AppendRequest(_) | MessageBody::Heartbeat(_)
                if self.config.check_quorum || self.config.pre_vote || !self.is_promotable() =>
            {
                // A stale leader that cannot reach the new one would otherwise keep
                // pre-empting our elections; this answer makes it step down.
                self.send_now(
                    message.from,
                    MessageBody::AppendResponse(super::message::AppendResponse {
                        index: super::types::LogIndex::ZERO,
                        reject: false,
                        reject_hint: super::types::LogIndex::ZERO,
                        hint_term: super::types::Term::ZERO,
                    }),
                );
            }
            MessageBody::PreVoteRequest(_) => {
                self.send_now(
                    message.from,
                    MessageBody::PreVoteResponse(VoteResponse { reject: true }),
                );
            }
            _ => {}
        }
    }

    pub(crate) fn on_vote_request(&mut self, message: &Message) {
        let (MessageBody::PreVoteRequest(request) | MessageBody::VoteRequest(request)) =
            &message.body
        else {
            unreachable!("on_vote_request takes vote requests only");
        };
        let pre_vote = matches!(message.body, MessageBody::PreVoteRequest(_));
        // In a term this replica was moved to without a leader, inside the lease of the
        // last one: refused as in `on_higher_term`.
        let lease_holds = !request.transfer && self.vote != message.from && self.in_lease();
        let can_vote = !lease_holds
            && (self.vote == message.from
                || (self.vote.is_none() && self.leader.is_none())
                || (pre_vote && message.term > self.term));
        // A log that ends before an index known to be committed lacks a committed entry.
        // Raft's up-to-date rule sees to that from our own log, unless this node lost
        // entries it acknowledged: then the commit a leader told it of does (and, where our
        // log holds that index with other terms, the leader's term there).
        let grant = can_vote
            && self
                .log
                .is_up_to_date(request.last_log_index, request.last_log_term)
            && request.last_log_index >= self.committed_not_held
            && (request.last_log_term, request.last_log_index) >= self.committed_not_held_at;
        let response = VoteResponse { reject: !grant };
        if pre_vote {
            // Answer in the term asked about, so the pre-candidate can count a grant.
            let term = if grant { message.term } else { self.term };
            let body = MessageBody::PreVoteResponse(response);
            self.messages_now.push(Message {
                from: self.id,
                to: message.from,
                term,
                body,
            });
        } else if grant {
            self.election_elapsed = 0;
            self.vote = message.from;
            self.send_after_persist(message.from, MessageBody::VoteResponse(response));
        } else {
            self.send_now(message.from, MessageBody::VoteResponse(response));
        }
    }

    pub(crate) fn step_candidate(&mut self, message: Message) -> Result<(), StepError> {
        match message.body {
            MessageBody::AppendRequest(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => {
                // Someone won this term: follow it.
                self.become_follower(self.term, message.from);
                self.step_follower(message)
            }
            MessageBody::PreVoteResponse(response) if self.role == Role::PreCandidate => {
                self.record_vote(message.from, !response.reject);
                Ok(())
            }
            MessageBody::VoteResponse(response) if self.role == Role::Candidate => {
                self.record_vote(message.from, !response.reject);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The kinds of election round a replica can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Election {
    /// Ask first, without raising the term.
    PreVote,
    /// Raise the term and ask for votes.
    Vote,
    /// Raise the term at the leader's request (TimeoutNow): no pre-vote, and voters
    /// disregard their lease.
    Transfer,
}
