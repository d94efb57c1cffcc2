//! Applying committed conf changes to the replica: members, progress, and stepping down.

use super::confchange::ConfChange;
use super::replica::Replica;
use super::types::{ConfState, EntryKind, LogIndex, NodeId, Role};

impl Replica {
    /// Take in every conf change in the log up to `upto` not yet reflected.
    pub(crate) fn apply_conf_changes_up_to(&mut self, upto: LogIndex) {
        let mut index = self.conf_index.next().max(self.log.first_index());
        while index <= upto {
            let data = match self.log.entry(index) {
                Some(entry) if entry.kind == EntryKind::ConfChange => Some(entry.data.clone()),
                Some(_) => None,
                None => break,
            };
            if let Some(data) = data {
                self.apply_conf_entry(index, &data);
            }
            index = index.next();
        }
    }

    /// The index of the conf change before the last one in the log (past its snapshot), if
    /// it holds two. The leader that appended the last had applied every earlier one in its
    /// log (see [`Replica::propose_conf_change`] and [`Replica::maybe_leave_joint`]), and this
    /// log up to there is that leader's: the one before it is committed.
    pub(crate) fn conf_change_before_the_last(&self) -> Option<LogIndex> {
        let mut index = self.log.last_index();
        let mut found = 0;
        while index > self.log.snapshot_index() {
            if self.log.entry(index)?.kind == EntryKind::ConfChange {
                found += 1;
                if found == 2 {
                    return Some(index);
                }
            }
            index = index.prev();
        }
        None
    }

    /// Whether a conf change is committed (or handed out to apply) and not applied yet.
    pub(crate) fn has_unapplied_conf_changes(&self) -> bool {
        !self.conf_entries_applying.is_empty()
            || self.conf_change_committed_from(self.log.applied.max(self.conf_index).next())
    }

    /// Whether the log holds a conf change committed at `from` or after.
    pub(crate) fn conf_change_committed_from(&self, from: LogIndex) -> bool {
        let mut index = from;
        while index <= self.log.committed {
            match self.log.entry(index) {
                Some(entry) if entry.kind == EntryKind::ConfChange => return true,
                Some(_) => index = index.next(),
                None => return false,
            }
        }
        false
    }

    /// A committed conf change at `index` is applied. One that does not decode or does not
    /// fit the current configuration is a no-op on every replica alike (they all see the
    /// same configuration before it), so the group stays consistent.
    pub(crate) fn apply_conf_entry(&mut self, index: LogIndex, data: &bytes::Bytes) {
        if index <= self.conf_index {
            return;
        }
        self.conf_index = index;
        let Ok(change) = ConfChange::decode(data) else {
            return;
        };
        let Ok(next) = change.apply_to(&self.conf) else {
            return;
        };
        self.switch_to_conf(next);
    }

    fn switch_to_conf(&mut self, next: ConfState) {
        self.conf = next;
        let members = self.conf.members();
        self.progress.retain(|p| members.contains(&p.id));
        for member in members {
            if self.progress_of(member).is_none() {
                let progress = self.new_progress(member);
                self.progress.push(progress);
            }
        }
        if self.role != Role::Leader {
            return;
        }
        if !self.conf.is_voter(self.id) && self.config.step_down_on_removal {
            // Tell the others this change committed first: where every commit is not
            // broadcast, they would learn it only from the next leader, elected after a
            // timeout with none (the appends outlive the step down).
            self.broadcast_append();
            self.become_follower(self.term, NodeId::NONE);
            return;
        }
        if self
            .lead_transferee
            .is_some_and(|to| !self.conf.voters.contains(&to))
        {
            self.lead_transferee = None;
        }
        // The quorum changed: the commit index may move, and new members need appends.
        self.maybe_commit();
        self.broadcast_pending = true;
    }

    /// A leader in an auto-leave joint config proposes leaving it once entering is applied.
    /// Not while it hands the group over: the entry would reach the voters after the
    /// target was told to campaign, and they would refuse a target whose log is then behind
    /// theirs. The new leader leaves instead, or this one once the transfer is abandoned
    /// (asked again after every Ready).
    pub(crate) fn maybe_leave_joint(&mut self) {
        if self.leaves_joint_next() {
            self.append_own(EntryKind::ConfChange, ConfChange::leave_joint().encode());
            self.pending_conf_index = self.log.last_index();
        }
    }

    /// Whether this leader leaves its joint configuration at its next Ready's advance.
    pub(crate) fn leaves_joint_next(&self) -> bool {
        self.role == Role::Leader
            && self.lead_transferee.is_none()
            && self.conf.is_joint()
            && self.conf.auto_leave
            && self.log.applied >= self.pending_conf_index
    }
}
