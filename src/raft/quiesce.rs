//! Quiescence: an idle group whose followers hold all the leader holds stops its timers.
//!
//! A leader with nothing to send (every member holds its whole log, all of it committed, no
//! read, transfer or membership change under way) sends its next heartbeat marked `quiesce`
//! and stops heartbeating. A follower that gets that heartbeat holding the leader's whole log
//! stops its election timer. Ticks still count (leases are measured in them), but nothing
//! else happens on a tick, and no message flows until something changes.
//!
//! Waking:
//! - a leader wakes on any input that makes it act (a proposal, a read, a transfer, a
//!   member's message other than a plain answer to a heartbeat), and at the first tick
//!   after which it is no longer idle: it heartbeats again at once;
//! - a follower wakes on any message but the quiescing heartbeat itself, and when the
//!   caller says the leader's node fell silent ([`Replica::wake_leader_silent`]: the node
//!   keeps a cheap per-connection keepalive and knows when a peer stops talking) or may have
//!   restarted ([`Replica::wake`]).
//!
//! Safety is untouched: a quiesced follower counts as having just heard its leader, so it
//! refuses to help elect another (it only ever refuses longer than Raft asks); a quiesced
//! leader's lease runs out on its ticks as ever, since no heartbeat round renews it. A
//! follower that misses the quiescing heartbeat, or does not hold the leader's log, keeps
//! its timer: at its timeout its pre-vote wakes the leader, which heartbeats again.

use super::message::{Heartbeat, Message, MessageBody};
use super::progress::ProgressState;
use super::replica::Replica;
use super::types::{NodeId, Role};

impl Replica {
    /// Whether this replica's timers are stopped (see the module docs).
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Whether this leader may stop heartbeating: it is idle, and every member answered
    /// lately and is known to hold its whole log (the heartbeat that quiets it carries the
    /// commit). A member that stops answering keeps the group awake, as Raft watches it.
    pub(crate) fn may_quiesce(&self) -> bool {
        let last = self.log.last_index();
        self.config.quiesce
            && self.role == Role::Leader
            && self.lead_transferee.is_none()
            && !self.conf.is_joint()
            && self.pending_conf_index <= self.log.applied
            && self.log.committed == last
            && self.log.applied == last
            && self.reads.is_idle()
            && !self.broadcast_pending
            && self.progress.iter().all(|p| {
                p.id == self.id
                    || (p.match_index == last
                        && p.recent_active
                        && p.state == ProgressState::Replicate
                        && p.inflights.len() == 0)
            })
    }

    /// Whether this replica is quiet and its next ticks would only count: a follower's do, and
    /// a leader's while it may stay quiet ([`Replica::may_quiesce`]). A quiet leader that an
    /// input made busy without waking it (a transfer it began, a configuration change it
    /// proposed, a follower's progress that fell back) wakes at its next tick, which must
    /// come (review 319: asleep on its core, it was never ticked, and a transfer whose
    /// TimeoutNow got no answer never ended).
    pub fn stays_quiet(&self) -> bool {
        self.quiesced && (self.role != Role::Leader || self.may_quiesce())
    }

    /// One tick of a quiesced replica: true if it stays quiesced (the tick did nothing
    /// more), false if it woke and the tick is to run as usual.
    pub(crate) fn tick_quiesced(&mut self) -> bool {
        if self.role != Role::Leader || self.may_quiesce() {
            return true;
        }
        self.wake();
        false
    }

    /// Counts `ticks` that this replica's caller held back while it slept (see
    /// `shard::groups`), which it may only do while the replica [stays
    /// quiet](Replica::stays_quiet) and nothing reaches it: each tick would only have
    /// counted. Called before anything else reaches it.
    pub fn count_quiet_ticks(&mut self, ticks: u64) {
        debug_assert!(
            self.stays_quiet() || ticks == 0,
            "only a replica that stays quiet sleeps"
        );
        self.ticks += ticks;
    }

    /// Start the timers again: a leader heartbeats at its next tick, and starts a CheckQuorum
    /// round as a new leader does (its members not heard from in it yet, each counted as
    /// answering for this first round: [`Replica::peer_answers`]), so that it judges what it
    /// hears from now on, not the answers from before it went quiet; a follower's election
    /// timer runs on
    /// from where it stopped (as if it had just heard its leader). For a caller that learns
    /// something the group cannot: the leader's node, or a member's, may have restarted or
    /// gone silent.
    pub fn wake(&mut self) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        if self.role == Role::Leader {
            self.heartbeat_elapsed = self.config.heartbeat_interval_ticks;
            self.election_elapsed = 0;
            let id = self.id;
            for p in &mut self.progress {
                p.recent_active = p.id == id;
                p.active_round_before = true;
            }
        }
    }

    /// A quiet leader whose members' nodes the caller found silent (for an election timeout)
    /// wakes, and counts those members as not answering at once: Raft, woken, would take one
    /// or two election timeouts to find them so, and the callers that ask which members
    /// answer (`cohort status`, the membership guards) would trust them meanwhile. All at
    /// once: woken, the leader is no longer quiet, and a second call would do nothing.
    pub fn wake_members_silent(&mut self, members: &[NodeId]) {
        if !self.quiesced || self.role != Role::Leader {
            return;
        }
        self.wake();
        for p in (self.progress.iter_mut()).filter(|p| members.contains(&p.id)) {
            p.recent_active = false;
            p.active_round_before = false;
        }
    }

    /// A quiesced follower whose leader's node has been silent for at least an election
    /// timeout wakes as if its timer had never stopped: it last heard the leader when it
    /// quiesced, so it campaigns within an election timeout (it grants votes as Raft says:
    /// an election timeout after it last heard the leader).
    pub fn wake_leader_silent(&mut self) {
        if !self.quiesced || self.role == Role::Leader {
            return;
        }
        self.wake();
        let timeout = self.config.election_timeout_ticks;
        let silent = (self.leader_heard_tick).map_or(u64::from(timeout), |at| self.ticks - at);
        self.election_elapsed = u32::try_from(silent).unwrap_or(u32::MAX).min(timeout);
    }

    /// Whether `message` leaves this quiesced replica quiet: a plain answer to a heartbeat
    /// (the answers to the quiescing heartbeat come after it), or the quiescing heartbeat
    /// (the follower then quiesces again in `quiesce_on`). Every other message wakes it.
    pub(crate) fn keeps_quiet(&self, message: &Message) -> bool {
        match &message.body {
            MessageBody::HeartbeatResponse(response) => {
                self.role == Role::Leader && response.short_of_commit.is_none()
            }
            MessageBody::Heartbeat(heartbeat) => heartbeat.quiesce,
            _ => false,
        }
    }

    /// A follower told by its leader's heartbeat to quiesce does so if its log is the
    /// leader's whole log, committed: there is nothing left for it to learn.
    pub(crate) fn quiesce_on(&mut self, heartbeat: &Heartbeat) {
        self.quiesced = heartbeat.quiesce
            && self.role == Role::Follower
            && heartbeat.acknowledged == heartbeat.commit
            && self.log.committed == heartbeat.commit
            && self.log.last_index() == heartbeat.commit;
    }
}
