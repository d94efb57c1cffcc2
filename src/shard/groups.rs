//! A core's groups, and which of them its ticks and turns look at: each group an input or a
//! tick touched, until a turn finds it quiet with nothing to do (asleep).
//!
//! A core may hold thousands of groups, most of them idle and quiet (`raft::Config::quiesce`):
//! a tick or a turn that looked at each of them cost more than all the messages the quiet
//! saved. So the core keeps a list of the groups awake, and only those are ticked and turned.
//! A group asleep is not ticked at all: each tick would only have counted (a quiet replica's
//! tick does nothing more: `Replica::count_quiet_ticks`), so it is given the ticks it slept
//! through when something wakes it, before anything else reaches it.
//!
//! Every mutable access through [`Groups::get_mut`] or [`Groups::values_mut`] wakes the group
//! it hands out, so no path that can give a group work leaves it asleep. What reads a group
//! without waking it ([`Groups::get`], [`Groups::iter`]) must not read its tick count, which
//! stops while it sleeps: nothing on a sleeping group depends on time (a quiet leader's lease
//! runs out on ticks, and so is checked only on a woken replica).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Index;

use super::group::Group;

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
}

impl Groups {
    /// Every group starts awake.
    pub fn new(map: BTreeMap<u32, Group>) -> Groups {
        let (ids, slots): (Vec<u32>, Vec<Group>) = map.into_iter().unzip();
        Groups {
            awake: (0..ids.len()).collect(),
            slept_at: vec![None; ids.len()],
            ids,
            slots,
            ticks: 0,
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

    /// Every group, in order, each woken.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        for slot in 0..self.slots.len() {
            self.wake(slot);
        }
        self.slots.iter_mut()
    }

    /// The groups awake, in order: what a turn looks at.
    pub fn awake_mut(&mut self) -> AwakeMut<'_> {
        AwakeMut {
            ids: &self.ids,
            rest: &mut self.slots,
            rest_from: 0,
            awake: self.awake.iter(),
        }
    }

    /// One tick: the groups awake take it (one that is quiet only counts it), those asleep
    /// are given it when woken.
    pub fn tick(&mut self) {
        self.ticks += 1;
        for (_, group) in self.awake_mut() {
            group.replica.tick();
        }
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
    awake: std::collections::btree_set::Iter<'a, usize>,
}

impl<'a> Iterator for AwakeMut<'a> {
    type Item = (&'a u32, &'a mut Group);

    fn next(&mut self) -> Option<Self::Item> {
        let &slot = self.awake.next()?;
        let rest = std::mem::take(&mut self.rest);
        let (group, rest) = rest[slot - self.rest_from..].split_first_mut()?;
        self.rest = rest;
        self.rest_from = slot + 1;
        Some((&self.ids[slot], group))
    }
}
