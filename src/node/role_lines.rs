//! The role changes a node prints: a line for each group where a core runs a few, and where
//! it runs many, one line a second that counts them (found by an operator: 16,384 groups
//! printed 16,384 lines at each start, and as many again at each leader's loss).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::raft::Role;

/// Groups on one core up to which each group's role changes get a line of their own.
pub const GROUPS_SAID_EACH_MAX: usize = 64;

/// How often a core of many groups sums up their role changes.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// The groups of one core whose role changed since they were last said, each with its
/// latest role and term (a follower is told twice, as it learns of a term and then of its
/// leader: counted once, as it is now; review 268).
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    changed: BTreeMap<u32, (Role, u64)>,
    /// What each group was when last said: one back to it (a pre-vote that failed) did not
    /// change (review 298).
    said: BTreeMap<u32, (Role, u64)>,
}

impl Tally {
    fn add(&mut self, group: u32, role: Role, term: u64) {
        self.changed.insert(group, (role, term));
    }

    /// The line that says them, if there were any; then none are left.
    fn take_line(&mut self, prefix: &str) -> Option<String> {
        let said = &mut self.said;
        let changed: BTreeMap<u32, (Role, u64)> = std::mem::take(&mut self.changed)
            .into_iter()
            .filter(|&(group, now)| said.insert(group, now) != Some(now))
            .collect();
        let low = changed.values().map(|&(_, term)| term).min()?;
        let high = changed.values().map(|&(_, term)| term).max()?;
        let count = |wanted: Role| changed.values().filter(|(role, _)| *role == wanted).count();
        let (leader, follower) = (count(Role::Leader), count(Role::Follower));
        let terms = match low == high {
            true => format!("term {low}"),
            false => format!("terms {low} to {high}"),
        };
        let electing = match changed.len() - leader - follower {
            0 => String::new(),
            electing => format!(", in an election {electing}"),
        };
        Some(format!(
            "{prefix}: {} groups changed role ({terms}): now leader of {leader}, follower of \
             {follower}{electing} (`cohort status` lists each)",
            changed.len()
        ))
    }
}

/// Says the role changes of the groups of one core: what the core's `on_role` hook calls.
pub struct RoleLines {
    prefix: String,
    /// None: a line per change.
    tally: Option<Rc<RefCell<Tally>>>,
    /// With a line per change: what the last line of each group said (role, term, leader).
    said: RefCell<BTreeMap<u32, (Role, u64, u64)>>,
}

impl RoleLines {
    /// For core `core` of node `node`, which runs `groups` groups. Where it runs more than
    /// [`GROUPS_SAID_EACH_MAX`], a task on the core's executor sums the changes up each
    /// second until this is dropped (which says what is left).
    pub fn new(node: u64, core: u16, groups: usize) -> RoleLines {
        let prefix = format!("node {node} core {core}");
        if groups <= GROUPS_SAID_EACH_MAX {
            return RoleLines {
                prefix: format!("node {node}"),
                tally: None,
                said: RefCell::default(),
            };
        }
        let tally = Rc::new(RefCell::new(Tally::default()));
        glommio::spawn_local(say_each_second(Rc::downgrade(&tally), prefix.clone())).detach();
        RoleLines {
            prefix,
            tally: Some(tally),
            said: RefCell::default(),
        }
    }

    /// Group `group` became `role` in `term`, knowing `leader` (0: none yet).
    pub fn changed(&self, group: u32, role: Role, leader: u64, term: u64) {
        if let Some(tally) = &self.tally {
            // An election started counts too: the group is no longer what it was last said
            // to be (review 269).
            tally.borrow_mut().add(group, role, term);
            return;
        }
        if let Some(line) = self.line(group, role, leader, term) {
            super::say(&line);
        }
    }

    /// The line that says group `group`'s change, where a line per change is said: one for
    /// a leader or a follower, none for an election's candidates, nor for a follower said
    /// just before in the same term with the same leader (found by a tester: each pre-vote
    /// that failed said the follower's line again, 227 of a node's 242 lines repeats).
    fn line(&self, group: u32, role: Role, leader: u64, term: u64) -> Option<String> {
        if role != Role::Leader && role != Role::Follower {
            return None;
        }
        let now = (role, term, leader);
        if self.said.borrow_mut().insert(group, now) == Some(now) {
            return None;
        }
        // A follower may know no leader yet (it heard of a newer term from a candidate).
        let leader = match leader {
            0 => "no leader known yet".to_string(),
            leader => format!("leader {leader}"),
        };
        Some(format!(
            "{} group {group}: {role} in term {term} ({leader})",
            self.prefix
        ))
    }
}

impl Drop for RoleLines {
    fn drop(&mut self) {
        let line =
            (self.tally.as_ref()).and_then(|tally| tally.borrow_mut().take_line(&self.prefix));
        if let Some(line) = line {
            super::say(&line);
        }
    }
}

async fn say_each_second(tally: Weak<RefCell<Tally>>, prefix: String) {
    loop {
        glommio::timer::sleep(SUMMARY_EVERY).await;
        let Some(tally) = tally.upgrade() else {
            return;
        };
        let line = tally.borrow_mut().take_line(&prefix);
        if let Some(line) = line {
            super::say(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_says_its_changes_once() {
        let mut tally = Tally::default();
        assert_eq!(tally.take_line("node 1 core 0"), None);
        tally.add(0, Role::Leader, 3);
        tally.add(1, Role::Follower, 2);
        tally.add(2, Role::Follower, 3);
        // Told twice (a term, then its leader), or deposed: counted once, as it is now.
        tally.add(1, Role::Follower, 2);
        tally.add(0, Role::Follower, 4);
        tally.add(2, Role::Candidate, 5);
        assert_eq!(
            tally.take_line("node 1 core 0").as_deref(),
            Some(
                "node 1 core 0: 3 groups changed role (terms 2 to 5): now leader of 0, \
                 follower of 2, in an election 1 (`cohort status` lists each)"
            )
        );
        assert!(tally.changed.is_empty());
        // Back to what was said (a pre-vote that failed, in terms 2 and 4): nothing to say.
        tally.add(1, Role::PreCandidate, 2);
        tally.add(1, Role::Follower, 2);
        tally.add(0, Role::Follower, 4);
        assert_eq!(tally.take_line("node 1 core 0"), None);
        tally.add(0, Role::Leader, 5);
        assert!(tally.take_line("node 1 core 0").is_some());
    }

    #[test]
    fn a_group_said_as_it_was_said_last_is_not_said_again() {
        let lines = RoleLines::new(1, 0, 2);
        let said = |group, role, leader, term| lines.line(group, role, leader, term);
        assert_eq!(
            said(3, Role::Follower, 2, 4).as_deref(),
            Some("node 1 group 3: follower in term 4 (leader 2)")
        );
        // A pre-vote that failed: back to what was said.
        assert_eq!(said(3, Role::PreCandidate, 0, 4), None);
        assert_eq!(said(3, Role::Follower, 2, 4), None);
        assert!(said(4, Role::Follower, 2, 4).is_some(), "another group");
        assert!(said(3, Role::Follower, 0, 5).is_some(), "a new term");
        assert!(said(3, Role::Follower, 3, 5).is_some(), "its leader");
        assert!(said(3, Role::Leader, 1, 6).is_some());
    }
}
