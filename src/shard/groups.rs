//! A core's groups, and which of them its turns look at: each group an input or a tick
//! touched, until a turn finds it quiet with nothing to do (asleep).
//!
//! A core may hold thousands of groups, most of them idle and quiet (`raft::Config::quiesce`):
//! a turn that looked at each of them (its pending writes, its Ready) cost more than all the
//! messages the quiet saved. Every mutable access through [`Groups::get_mut`] or
//! [`Groups::values_mut`] wakes the group it hands out, so no path that can give a group work
//! leaves it asleep; only the loops that know what they change (a tick, a turn) walk the
//! groups without waking them.

use std::collections::BTreeMap;
use std::ops::Deref;

use super::group::Group;

pub struct Groups {
    map: BTreeMap<u32, Group>,
}

impl Groups {
    /// Every group starts awake.
    pub fn new(map: BTreeMap<u32, Group>) -> Groups {
        Groups { map }
    }

    /// Group `id`, woken.
    pub fn get_mut(&mut self, id: &u32) -> Option<&mut Group> {
        let group = self.map.get_mut(id)?;
        group.awake = true;
        Some(group)
    }

    /// Every group, each woken.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.map.values_mut().map(woken)
    }

    /// The groups awake, in order: what a turn looks at.
    pub fn awake_mut(&mut self) -> impl Iterator<Item = (&u32, &mut Group)> {
        self.map.iter_mut().filter(|(_, group)| group.awake)
    }

    /// Every group, in order, none woken: for a caller that wakes those it changes.
    pub fn all_unwoken_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.map.values_mut()
    }
}

fn woken(group: &mut Group) -> &mut Group {
    group.awake = true;
    group
}

impl Deref for Groups {
    type Target = BTreeMap<u32, Group>;

    fn deref(&self) -> &BTreeMap<u32, Group> {
        &self.map
    }
}
