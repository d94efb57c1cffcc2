//! A core's stop after its work: when that work is done, and what its clients are told.

use std::task::Context;

use crate::proto::client::{ErrorCode, Outcome, Refused, Request, Response};
use crate::proto::members::MemberOutcome;
use crate::proto::transfer::TransferOutcome;
use crate::raft::{NodeId, Role};
use crate::shard::group::Answer;

use super::{Core, CoreLog, CoreNet, Input};

impl<L: CoreLog, N: CoreNet> Core<L, N> {
    /// After [`Core::run`] returned for a stop: answers every client still waiting (see
    /// [`Group::answer_all_at_stop`]; transfers and membership changes under way too), and
    /// closes every connection's outbox, so that each connection ends once it has written
    /// its last answers. Not part of `run`'s stop, which tests also use to end one turn.
    pub fn let_clients_go(mut self) {
        let why = format!("node {} is stopping", self.shape.node_id);
        let not_taken = stopping_refusal(self.shape.node_id);
        let mut answers = Vec::new();
        for group in self.groups.values_mut() {
            group.answer_all_at_stop(&not_taken, &mut answers);
        }
        // Not final: the client asks another member, which may name the node it wanted.
        for transfer in self.transfers.drain(..) {
            transfer
                .reply
                .push_now(TransferOutcome::NotLeader { leader: 0 });
        }
        for (change, _, reply) in self.member_changes.drain(..) {
            reply.push_now(MemberOutcome::UnderWay(format!(
                "{why} while the change of group {} is under way: ask another member",
                change.group
            )));
        }
        self.deliver(&mut answers);
        for (outbox, _) in self.outboxes.values() {
            outbox.close();
        }
    }

    /// Whether a stopping core has nothing left to finish: no client waits on its groups
    /// (the writes of closed connections wait for nobody: review 279, a cluster stopped
    /// right after its clients were killed waited out its grace for them), and it leads none
    /// that another voter could take (a handover under way, or one that may yet be tried: a
    /// follower Raft did not count active at the first look). A voter whose log is full, or
    /// that stops too, takes none: nodes stopped together do not wait out their grace for
    /// each other; nor does one not heard from for an election timeout (see
    /// [`Core::gone`]): a leader whose other voters were one dead and one stopping
    /// waited until its groups lost their quorum (6.2–7.2 s with `--election-ticks 500`, a
    /// grace of 10 s).
    pub(super) fn work_finished(&self) -> bool {
        let me = NodeId(self.shape.node_id);
        let open = |conn| self.outboxes.contains_key(&conn);
        self.groups.values().all(|g| {
            // Not heard from for an election timeout: gone (a shorter silence, a lost packet
            // or a busy peer, ended a stop that could still hand the group over: review 283).
            let may_take =
                |v: &NodeId| *v != me && !self.peers_log_full.contains(&v.0) && !self.gone(*v, g);
            let others = g.replica.conf_state().voters.iter().any(may_take);
            g.waiting_on(open) == 0 && !(g.replica.role() == Role::Leader && others)
        })
    }

    /// Once the inbox is closed: what it took in while the stop waited for the syncs in
    /// flight. Requests are told the node stops, and that nothing of them was taken (found
    /// in review: they were left unanswered, and clients took their outcome for unknown);
    /// connections come and go as ever, so those answers find their way, and a status is
    /// answered as ever. A transfer or a membership change is answered too (found in
    /// review: dropped, its caller waited until the node's end closed its connection), not
    /// as failed, which its client takes as final: a transfer "no leader known here", a
    /// change busy, so that the client asks another member.
    pub(super) fn refuse_late_inputs(&mut self, answers: &mut Vec<Answer>) {
        let mut late = Vec::new();
        let _ = self.inbox.poll_take_all(
            &mut Context::from_waker(std::task::Waker::noop()),
            &mut late,
        );
        let why = stopping_refusal(self.shape.node_id);
        for input in late {
            match input {
                Input::Requests { conn, requests } => {
                    for request in requests {
                        // A retry of a write a group holds waits for it, answered as it is
                        // when the core lets its clients go (review 281: told nothing of it
                        // was taken).
                        if let Ok(request) = &request
                            && self.waits_with_held(conn, request, answers)
                        {
                            continue;
                        }
                        let response = refused_at_stop(request, &why);
                        answers.push(Answer { conn, response });
                    }
                }
                input @ (Input::Connected { .. } | Input::Disconnected(_) | Input::Status(_)) => {
                    self.handle(input, answers);
                }
                // Not final: the client asks another member.
                Input::TransferLeader { reply, .. } => {
                    reply.push_now(TransferOutcome::NotLeader { leader: 0 });
                }
                Input::ChangeMember { reply, .. } => {
                    reply.push_now(MemberOutcome::Busy(why.clone()));
                }
                Input::Peer { .. } | Input::Tick | Input::Stop | Input::StopAfterWork { .. } => {}
            }
        }
        self.forget_closed_conns();
    }
}

/// What a stopping node tells a client of a request it did not take.
pub fn stopping_refusal(node_id: u64) -> String {
    format!("node {node_id} is stopping: nothing of this request was taken")
}

/// The answer to `request`, which reached a stopping node too late to be taken: busy, for
/// `why`, or what made it invalid.
pub fn refused_at_stop(request: Result<Request, Refused>, why: &str) -> Response {
    match request {
        Ok(request) => Response {
            client_id: request.command.client_id,
            sequence: request.command.sequence,
            outcome: Outcome::Error {
                code: ErrorCode::Busy,
                message: why.to_string(),
            },
        },
        Err(refused) => refused.response(),
    }
}
