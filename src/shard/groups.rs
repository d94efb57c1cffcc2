//! A core's groups, and which of them its ticks and turns look at: its ticks, each group an
//! input or a tick touched, until a turn finds it quiet with nothing to do (asleep); its turns,
//! the groups touched since the last turn.
//!
//! A core may hold thousands of groups, most of them idle and quiet (`raft::Config::quiesce`):
//! a tick or a turn that looked at each of them cost more than all the messages the quiet
//! saved. So the core keeps a list of the groups awake, and only those are ticked.
//! A group asleep is not ticked at all: each tick would only have counted (a replica that
//! stays quiet does nothing more on a tick: `Replica::stays_quiet`), so it is given the ticks
//! it slept through when something wakes it, before anything else reaches it. Its ticks also
//! pace the core's elections (see [`CAMPAIGNS_PER_TICK_MAX`]).
//!
//! Every mutable access through [`Groups::get_mut`] or [`Groups::values_mut`] wakes the group
//! it hands out, so no path that can give a group work leaves it asleep.
//!
//! Nor does a group that nothing touched since a turn looked at it have work for the next:
//! what gives a replica work is a message, a proposal or a read (handed to it through
//! [`Groups::get_mut`]), the end of a Ready's sync (the same), or a tick. So a turn looks only
//! at the groups touched since the last ([`Groups::take_touched`]): under load on thousands of
//! groups, a turn that passed over each group awake spent a tenth of the core's time finding
//! most of them with nothing to do. (What the log says to every group, that it takes no
//! entries for a moment or is short of room, touches them all: `Core::turn`.)
//!
//! What reads a group
//! without waking it ([`Groups::get`], [`Groups::iter`]) must not read its tick count, which
//! stops while it sleeps: nothing on a sleeping group depends on time (a quiet leader's lease
//! runs out on ticks, and so is checked only on a woken replica).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Index;

use super::group::Group;
use crate::raft::Prng;

pub struct Groups {
    /// The groups' ids, ascending; `slots[i]` is group `ids[i]`.
    ids: Vec<u32>,
    slots: Vec<Group>,
    /// The slots of the groups awake: what a tick looks at.
    awake: BTreeSet<usize>,
    /// The slots of the groups touched since the last [`Groups::take_touched`], each once:
    /// what the next turn looks at. Every one is awake.
    touched: Vec<usize>,
    /// Whether each slot is in `touched`.
    is_touched: Vec<bool>,
    /// For each slot asleep, the count of [`Groups::ticks`] when it fell asleep.
    slept_at: Vec<Option<u64>>,
    /// Ticks the core gave its groups.
    ticks: u64,
    /// Sets this node's order of ticking apart from its peers' (see [`Groups::tick`]).
    salt: u64,
    /// Elections the groups may still start before the next [`Groups::pace_campaigns`].
    campaigns_left: u32,
}

/// The most elections a core's groups start in one tick. Thousands of groups started at once
/// (a cluster started or restarted) all run out of their election timeouts within the same
/// election timeout; elections for all of them at once hold each core up past the timeout,
/// so they run into each other and none ends (measured: on three nodes sharing two CPUs,
/// 20,000 groups of one core never all had a leader within 60 s, and 10,000 took 5.6 s).
/// Paced, a core's elections end within the timeout: 20,000 groups were led after 6.9 s and
/// 10,000 after 2.6 s with 30 a tick; 50 a tick took 9.4 s and 2.2 s. So about three
/// thousand elections a second per core at the default 10 ms tick.
pub const CAMPAIGNS_PER_TICK_MAX: u32 = 32;

impl Groups {
    /// Every group starts awake and touched; `salt` tells this node's groups from its peers'.
    pub fn new(map: BTreeMap<u32, Group>, salt: u64) -> Groups {
        let (ids, slots): (Vec<u32>, Vec<Group>) = map.into_iter().unzip();
        Groups {
            awake: (0..ids.len()).collect(),
            touched: (0..ids.len()).collect(),
            is_touched: vec![true; ids.len()],
            slept_at: vec![None; ids.len()],
            ids,
            slots,
            ticks: 0,
            salt,
            campaigns_left: CAMPAIGNS_PER_TICK_MAX,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.slot(*id).is_some()
    }

    /// Group `id`, not woken (its tick count may lag, see the module docs).
    pub fn get(&self, id: &u32) -> Option<&Group> {
        self.slot(*id).map(|slot| &self.slots[slot])
    }

    /// Every group, in order, none woken (their tick counts may lag, see the module docs).
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &Group)> {
        self.into_iter()
    }

    /// Every group, in order, none woken (see [`Groups::iter`]).
    pub fn values(&self) -> impl Iterator<Item = &Group> {
        self.slots.iter()
    }

    /// The groups awake, in order.
    pub fn awake(&self) -> impl Iterator<Item = &Group> {
        self.awake.iter().map(|&slot| &self.slots[slot])
    }

    /// The groups asleep, in order.
    pub fn asleep(&self) -> impl Iterator<Item = &Group> {
        (self.slots.iter().zip(&self.slept_at)).filter_map(|(g, at)| at.is_some().then_some(g))
    }

    /// The groups awake that nothing touched since the last [`Groups::take_touched`], in
    /// order, each with its id.
    pub fn untouched(&self) -> impl Iterator<Item = (&u32, &Group)> {
        (self.awake.iter())
            .filter(|&&slot| !self.is_touched[slot])
            .map(|&slot| (&self.ids[slot], &self.slots[slot]))
    }

    /// Group `id`, woken and touched.
    pub fn get_mut(&mut self, id: &u32) -> Option<&mut Group> {
        let slot = self.slot(*id)?;
        self.wake(slot);
        Some(&mut self.slots[slot])
    }

    /// Every group, in order, each woken and touched: not for a path taken at every tick or
    /// turn.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        for slot in 0..self.slots.len() {
            self.wake(slot);
        }
        self.slots.iter_mut()
    }

    /// The groups awake, in order, none touched: for a pass that gives them no work.
    pub fn awake_mut(&mut self) -> SlotsMut<'_, impl Iterator<Item = &usize>> {
        SlotsMut::new(&self.ids, &mut self.slots, self.awake.iter())
    }

    /// The groups touched since the last [`Groups::take_touched`], in order.
    pub fn touched_mut(&mut self) -> SlotsMut<'_, impl Iterator<Item = &usize>> {
        self.touched.sort_unstable();
        SlotsMut::new(&self.ids, &mut self.slots, self.touched.iter())
    }

    /// Touches every group awake (for what they all must hear: see the module docs).
    pub fn touch_awake(&mut self) {
        for &slot in &self.awake {
            touch(&mut self.touched, &mut self.is_touched, slot);
        }
    }

    /// The slots of the groups touched since the last call, in order, for a turn to look at
    /// ([`Groups::slots_mut`]); what touches a group from now on touches it for the next.
    pub fn take_touched(&mut self) -> Vec<usize> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        for &slot in &touched {
            self.is_touched[slot] = false;
        }
        touched
    }

    /// The groups at `slots` (ascending, as [`Groups::take_touched`] gives them), in order.
    pub fn slots_mut<'s>(
        &'s mut self,
        slots: &'s [usize],
    ) -> SlotsMut<'s, std::slice::Iter<'s, usize>> {
        SlotsMut::new(&self.ids, &mut self.slots, slots.iter())
    }

    /// One tick: the groups awake take it (one that is quiet only counts it), those asleep
    /// are given it when woken.
    ///
    /// They start elections only while the budget of [`Groups::pace_campaigns`] lasts; the
    /// others whose timers ran out campaign at a later tick. The groups are ticked from a
    /// slot drawn at each tick, from the tick and the node (`salt`): nodes that went in the
    /// same order would campaign for the same groups at once and split their votes, and one
    /// order kept would leave the last groups waiting while the first took every campaign.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let start = first_slot(self.salt, self.ticks, self.slots.len());
        let mut left = self.campaigns_left;
        let from_start = self.awake.range(start..).chain(self.awake.range(..start));
        for &slot in from_start {
            self.slots[slot].replica.tick_paced(&mut left);
        }
        self.campaigns_left = left;
        self.touch_awake();
    }

    /// A new budget of [`CAMPAIGNS_PER_TICK_MAX`] elections for the ticks that follow: once
    /// for each tick of the clock, however many ticks a turn gives at once (after a stall,
    /// every follower's timer runs out in the same turn: one budget for each tick owed
    /// started as many elections as the pacing is there to prevent; review 320).
    pub fn pace_campaigns(&mut self) {
        self.campaigns_left = CAMPAIGNS_PER_TICK_MAX;
    }

    /// Puts to sleep the groups at `turned` (the slots a turn looked at) that are quiet with
    /// nothing to do ([`Group::may_sleep`]) and not touched since, until something touches
    /// them. (A group awake that no turn looks at did not change since one last did.)
    pub fn sleep_idle(&mut self, turned: &[usize]) {
        for &slot in turned {
            if !self.is_touched[slot] && self.slots[slot].may_sleep() {
                self.awake.remove(&slot);
                self.slept_at[slot] = Some(self.ticks);
            }
        }
    }

    fn slot(&self, id: u32) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Wakes the group at `slot`, giving it the ticks it slept through, and touches it.
    fn wake(&mut self, slot: usize) {
        if let Some(at) = self.slept_at[slot].take() {
            self.slots[slot].replica.count_quiet_ticks(self.ticks - at);
            self.awake.insert(slot);
        }
        touch(&mut self.touched, &mut self.is_touched, slot);
    }
}

/// The slot a tick's order starts from, of `len`: drawn from the tick and the node (`salt`),
/// so that nodes' orders are unrelated (see [`Groups::tick`]).
fn first_slot(salt: u64, ticks: u64, len: usize) -> usize {
    let len = u64::try_from(len).unwrap_or(u64::MAX).max(1);
    usize::try_from(Prng::new(salt.rotate_left(32) ^ ticks).below(len)).unwrap_or(0)
}

/// Adds `slot` to `touched`, unless it is there (`is_touched`).
fn touch(touched: &mut Vec<usize>, is_touched: &mut [bool], slot: usize) {
    if !std::mem::replace(&mut is_touched[slot], true) {
        touched.push(slot);
    }
}

impl Index<&u32> for Groups {
    type Output = Group;

    fn index(&self, id: &u32) -> &Group {
        self.get(id).expect("a group of the core")
    }
}

impl<'a> IntoIterator for &'a Groups {
    type Item = (&'a u32, &'a Group);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, u32>, std::slice::Iter<'a, Group>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().zip(&self.slots)
    }
}

/// Some of the groups, each with its id, in order (see [`Groups::awake_mut`],
/// [`Groups::touched_mut`], [`Groups::slots_mut`]).
pub struct SlotsMut<'a, I> {
    ids: &'a [u32],
    /// The slots from `rest_from` on, not handed out yet.
    rest: &'a mut [Group],
    rest_from: usize,
    /// The slots to hand out, ascending.
    slots: I,
}

impl<'a, I> SlotsMut<'a, I> {
    fn new(ids: &'a [u32], groups: &'a mut [Group], slots: I) -> Self {
        SlotsMut {
            ids,
            rest: groups,
            rest_from: 0,
            slots,
        }
    }
}

impl<'a, I: Iterator<Item = &'a usize>> Iterator for SlotsMut<'a, I> {
    type Item = (&'a u32, &'a mut Group);

    fn next(&mut self) -> Option<Self::Item> {
        let &slot = self.slots.next()?;
        let rest = std::mem::take(&mut self.rest);
        let (group, rest) = (rest[slot - self.rest_from..].split_first_mut())
            .expect("the slots handed out are the groups' slots, each once, in order");
        self.rest = rest;
        self.rest_from = slot + 1;
        Some((&self.ids[slot], group))
    }
}

#[cfg(test)]
mod tests {
    use super::first_slot;

    /// Goal (review 320): the slots two nodes' ticks start from are unrelated, for any count
    /// of groups: a fixed offset between them (a golden-ratio product kept one for some
    /// counts) has the nodes campaign for the same groups at once, and split their votes.
    /// Method: nodes 1 and 2, 512 and 1,000 groups, 1,000 ticks: the offsets between their
    /// starts spread over the slots (no offset in more than 1% of the ticks), and each
    /// node's starts cover most slots.
    #[test]
    fn nodes_start_their_ticks_from_unrelated_slots() {
        for len in [512, 1000] {
            let (mut offsets, mut starts) = (vec![0u32; len], vec![false; len]);
            for tick in 1..=1000 {
                let (a, b) = (first_slot(1, tick, len), first_slot(2, tick, len));
                assert!(a < len && b < len);
                offsets[(a + len - b) % len] += 1;
                starts[a] = true;
            }
            let most = offsets.iter().max().copied().unwrap_or(0);
            assert!(
                most <= 10,
                "{len} groups: one offset in {most} of 1,000 ticks"
            );
            let covered = starts.iter().filter(|&&s| s).count();
            assert!(
                covered > len / 2,
                "{len} groups: starts cover {covered} slots"
            );
        }
        assert_eq!(first_slot(1, 7, 0), 0, "no groups");
    }
}
