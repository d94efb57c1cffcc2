//! A core's groups, and which of them its ticks and turns look at: each group an input or a
//! tick touched, until a turn finds it quiet with nothing to do (asleep).
//!
//! A core may hold thousands of groups, most of them idle and quiet (`raft::Config::quiesce`):
//! a tick or a turn that looked at each of them cost more than all the messages the quiet
//! saved. So the core keeps a list of the groups awake, and only those are ticked and turned.
//! A group asleep is not ticked at all: each tick would only have counted (a replica that
//! stays quiet does nothing more on a tick: `Replica::stays_quiet`), so it is given the ticks
//! it slept through when something wakes it, before anything else reaches it. Its ticks also
//! pace the core's elections (see [`CAMPAIGNS_PER_TICK_MAX`]).
//!
//! Every mutable access through [`Groups::get_mut`] or [`Groups::values_mut`] wakes the group
//! it hands out, so no path that can give a group work leaves it asleep. What reads a group
//! without waking it ([`Groups::get`], [`Groups::iter`]) must not read its tick count, which
//! stops while it sleeps: nothing on a sleeping group depends on time (a quiet leader's lease
//! runs out on ticks, and so is checked only on a woken replica).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Index, RangeBounds};

use super::group::Group;
use crate::raft::Prng;

pub struct Groups {
    /// The groups' ids, ascending; `slots[i]` is group `ids[i]`.
    ids: Vec<u32>,
    slots: Vec<Group>,
    /// The slots of the groups awake: what a tick and a turn look at.
    awake: BTreeSet<usize>,
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
    /// Every group starts awake; `salt` tells this node's groups from its peers'.
    pub fn new(map: BTreeMap<u32, Group>, salt: u64) -> Groups {
        let (ids, slots): (Vec<u32>, Vec<Group>) = map.into_iter().unzip();
        Groups {
            awake: (0..ids.len()).collect(),
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

    /// Group `id`, woken.
    pub fn get_mut(&mut self, id: &u32) -> Option<&mut Group> {
        let slot = self.slot(*id)?;
        self.wake(slot);
        Some(&mut self.slots[slot])
    }

    /// Every group, in order, each woken: not for a path taken at every tick or turn.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        for slot in 0..self.slots.len() {
            self.wake(slot);
        }
        self.slots.iter_mut()
    }

    /// The groups awake, in order: what a turn looks at.
    pub fn awake_mut(&mut self) -> AwakeMut<'_> {
        self.awake_mut_in(..)
    }

    /// The groups awake whose slots are in `slots`, in order.
    fn awake_mut_in(&mut self, slots: impl RangeBounds<usize>) -> AwakeMut<'_> {
        AwakeMut {
            ids: &self.ids,
            rest: &mut self.slots,
            rest_from: 0,
            awake: self.awake.range(slots),
        }
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
        let len = u64::try_from(self.slots.len()).unwrap_or(u64::MAX).max(1);
        let drawn = Prng::new(self.salt.rotate_left(32) ^ self.ticks).below(len);
        let start = usize::try_from(drawn).unwrap_or(0);
        let mut left = self.campaigns_left;
        for (_, group) in self.awake_mut_in(start..) {
            group.replica.tick_paced(&mut left);
        }
        for (_, group) in self.awake_mut_in(..start) {
            group.replica.tick_paced(&mut left);
        }
        self.campaigns_left = left;
    }

    /// A new budget of [`CAMPAIGNS_PER_TICK_MAX`] elections for the ticks that follow: once
    /// for each tick of the clock, however many ticks a turn gives at once (after a stall,
    /// every follower's timer runs out in the same turn: one budget for each tick owed
    /// started as many elections as the pacing is there to prevent; review 320).
    pub fn pace_campaigns(&mut self) {
        self.campaigns_left = CAMPAIGNS_PER_TICK_MAX;
    }

    /// Puts to sleep the groups awake that are quiet with nothing to do
    /// ([`Group::may_sleep`]), until something touches them.
    pub fn sleep_idle(&mut self) {
        let (slots, slept_at, ticks) = (&self.slots, &mut self.slept_at, self.ticks);
        self.awake.retain(|&slot| {
            let sleeps = slots[slot].may_sleep();
            if sleeps {
                slept_at[slot] = Some(ticks);
            }
            !sleeps
        });
    }

    fn slot(&self, id: u32) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Wakes the group at `slot`, giving it the ticks it slept through.
    fn wake(&mut self, slot: usize) {
        if let Some(at) = self.slept_at[slot].take() {
            self.slots[slot].replica.count_quiet_ticks(self.ticks - at);
            self.awake.insert(slot);
        }
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

/// The groups awake, each with its id, in order (see [`Groups::awake_mut`]).
pub struct AwakeMut<'a> {
    ids: &'a [u32],
    /// The slots from `rest_from` on, not handed out yet.
    rest: &'a mut [Group],
    rest_from: usize,
    awake: std::collections::btree_set::Range<'a, usize>,
}

impl<'a> Iterator for AwakeMut<'a> {
    type Item = (&'a u32, &'a mut Group);

    fn next(&mut self) -> Option<Self::Item> {
        let &slot = self.awake.next()?;
        let rest = std::mem::take(&mut self.rest);
        let (group, rest) = (rest[slot - self.rest_from..].split_first_mut())
            .expect("the slots awake are the groups' slots, each once, in order");
        self.rest = rest;
        self.rest_from = slot + 1;
        Some((&self.ids[slot], group))
    }
}
