//! Requests in flight, by (client id, sequence): per client id, a window over sequence
//! numbers. A client's channel keeps its unanswered requests here, and a group's leader the
//! writes it proposed and has not applied yet.
//!
//! A client id is one client's session with one group, so its requests go out in sequence
//! order and come back in about that order (the group applies them in log order). A window
//! per id makes adding and taking one an index into a ring buffer that both walk forward,
//! where one hash map over every (id, sequence) cost a cache miss for each (the load
//! generator's largest share of CPU: 18%). The outer map holds one entry per id, a few per
//! client, always in cache.

use std::collections::VecDeque;

use foldhash::HashMap;

/// A request's identity on the wire: (client id, sequence).
pub type Key = (u64, u64);

pub struct InFlight<T> {
    by_id: HashMap<u64, Window<T>>,
    /// Keys that would make their id's window sparse (see `span_allowed`): a client that
    /// skipped far ahead, or a hostile one. Sequences 1 and 2^62 of one id in one turn once
    /// made the leader's window allocate without bound, and panic; sequences 1 and 2^16 of
    /// each of thousands of ids in one frame, gigabytes.
    far: HashMap<Key, T>,
}

/// Sequences one window spans at most: far more than a client keeps in flight on one
/// session (the store remembers `REPLIES_PER_SESSION_MAX` replies of each).
const WINDOW_SEQUENCES_MAX: u64 = 1 << 16;

/// Slots a window may have beyond a few per value it holds: room for the gaps of requests
/// sent elsewhere or refused, so an ordinary client never goes to the side map.
const WINDOW_SLACK_SEQUENCES: u64 = 64;

/// Sequences `base..base + slots.len()` of one id; `None` where a sequence went elsewhere
/// (another channel) or was answered already. The front slot is always taken.
struct Window<T> {
    base: u64,
    slots: VecDeque<Option<T>>,
    /// Slots that are `Some`.
    held: usize,
}

impl<T> Window<T> {
    /// Where `sequence` sits in `slots`, if at or past `base`.
    fn slot_of(&self, sequence: u64) -> Option<usize> {
        usize::try_from(sequence.checked_sub(self.base)?).ok()
    }
}

/// The most sequences a window holding `held` values may span once it takes one more: its
/// memory stays within a few slots per value held (at its peak), whatever sequences come.
fn span_allowed(held: usize) -> u64 {
    let dense = WINDOW_SLACK_SEQUENCES.saturating_add(4 * (held as u64 + 1));
    dense.min(WINDOW_SEQUENCES_MAX)
}

impl<T> Default for InFlight<T> {
    fn default() -> InFlight<T> {
        InFlight {
            by_id: HashMap::default(),
            far: HashMap::default(),
        }
    }
}

impl<T> InFlight<T> {
    /// Adds `key`, replacing what it held; returns that.
    pub fn insert(&mut self, key: Key, value: T) -> Option<T> {
        let (id, sequence) = key;
        // The window it would make (a window is never empty), and the last sequences too,
        // so a window's end never overflows.
        let (span, allowed) = self.by_id.get(&id).map_or((1, 1), |window| {
            let end = u128::from(window.base) + window.slots.len() as u128;
            let span = end.max(u128::from(sequence) + 1) - u128::from(window.base.min(sequence));
            // A sequence inside the window stays there, however few it holds now.
            let allowed = span_allowed(window.held).max(window.slots.len() as u64);
            (span, allowed)
        });
        if span > u128::from(allowed) || sequence > u64::MAX - WINDOW_SEQUENCES_MAX {
            return self.far.insert(key, value);
        }
        let from_far = if self.far.is_empty() {
            None
        } else {
            self.far.remove(&key)
        };
        let window = self.by_id.entry(id).or_insert_with(|| Window {
            base: sequence,
            slots: VecDeque::new(),
            held: 0,
        });
        if sequence < window.base {
            // A retry of an older sequence, sent here after later ones.
            for _ in sequence..window.base {
                window.slots.push_front(None);
            }
            window.base = sequence;
        }
        let at = (sequence - window.base) as usize;
        if at >= window.slots.len() {
            window.slots.resize_with(at + 1, || None);
        }
        let replaced = window.slots[at].replace(value);
        if replaced.is_none() {
            window.held += 1;
        }
        replaced.or(from_far)
    }

    pub fn remove(&mut self, key: Key) -> Option<T> {
        match self.remove_from_window(key) {
            Some(value) => Some(value),
            None if self.far.is_empty() => None,
            None => self.far.remove(&key),
        }
    }

    fn remove_from_window(&mut self, (id, sequence): Key) -> Option<T> {
        let window = self.by_id.get_mut(&id)?;
        let at = window.slot_of(sequence)?;
        let value = window.slots.get_mut(at)?.take()?;
        window.held -= 1;
        while window.slots.front().is_some_and(Option::is_none) {
            window.slots.pop_front();
            window.base += 1;
        }
        if window.slots.is_empty() {
            self.by_id.remove(&id);
        }
        Some(value)
    }

    pub fn get(&self, (id, sequence): Key) -> Option<&T> {
        let in_window = self.by_id.get(&id).and_then(|window| {
            let at = window.slot_of(sequence)?;
            window.slots.get(at)?.as_ref()
        });
        match in_window {
            Some(value) => Some(value),
            None if self.far.is_empty() => None,
            None => self.far.get(&(id, sequence)),
        }
    }

    pub fn get_mut(&mut self, (id, sequence): Key) -> Option<&mut T> {
        let in_window = self.by_id.get_mut(&id).and_then(|window| {
            let at = window.slot_of(sequence)?;
            window.slots.get_mut(at)?.as_mut()
        });
        match in_window {
            Some(value) => Some(value),
            None => self.far.get_mut(&(id, sequence)),
        }
    }

    /// Empties it, handing over every value.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        let far = self.far.drain().map(|(_, value)| value);
        self.by_id
            .drain()
            .flat_map(|(_, window)| window.slots.into_iter().flatten())
            .chain(far)
    }

    /// Every request held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        let far = self.far.iter().map(|(&key, value)| (key, value));
        self.by_id
            .iter()
            .flat_map(|(&id, window)| {
                let sequences = window.base..;
                sequences
                    .zip(&window.slots)
                    .filter_map(move |(sequence, slot)| Some(((id, sequence), slot.as_ref()?)))
            })
            .chain(far)
    }

    pub fn len(&self) -> usize {
        let windows: usize = self.by_id.values().map(|w| w.held).sum();
        windows + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.far.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Goal: adds, takes and looks in any order (retries of older sequences,
        /// sequences sent elsewhere, repeats) hold and find exactly what a plain map does,
        /// and emptied windows go.
        #[test]
        fn matches_a_hash_map(steps in proptest::collection::vec(
            (0..8u8, 0..3u64, prop_oneof![
                8 => 0..40u64,
                // Far from the others: kept aside, never stretching a window.
                1 => (1u64 << 40)..(1u64 << 40) + 4,
                // Past the slack of a sparse window.
                1 => 100..140u64,
                1 => (u64::MAX - 3)..=u64::MAX,
            ]),
            1..300,
        )) {
            let (mut in_flight, mut model) = (InFlight::default(), HashMap::new());
            for (value, (action, id, sequence)) in steps.into_iter().enumerate() {
                match action {
                    // What it replaced too, as a map says.
                    0..=3 => prop_assert_eq!(
                        in_flight.insert((id, sequence), value),
                        model.insert((id, sequence), value)
                    ),
                    4..=6 => prop_assert_eq!(
                        in_flight.remove((id, sequence)),
                        model.remove(&(id, sequence))
                    ),
                    _ => {
                        prop_assert_eq!(in_flight.get((id, sequence)), model.get(&(id, sequence)));
                        prop_assert_eq!(
                            in_flight.get_mut((id, sequence)),
                            model.get_mut(&(id, sequence))
                        );
                    }
                }
                for window in in_flight.by_id.values() {
                    prop_assert!(window.slots.front().is_some_and(Option::is_some));
                    prop_assert!(window.slots.len() as u64 <= WINDOW_SEQUENCES_MAX);
                    prop_assert_eq!(window.held, window.slots.iter().flatten().count());
                }
                let listed: HashMap<Key, usize> =
                    in_flight.iter().map(|(key, &v)| (key, v)).collect();
                prop_assert_eq!(&listed, &model);
                prop_assert_eq!(in_flight.len(), model.len());
                prop_assert_eq!(in_flight.is_empty(), model.is_empty());
            }
            let mut left: Vec<usize> = in_flight.drain().collect();
            let mut expected: Vec<usize> = model.into_values().collect();
            left.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(left, expected);
            prop_assert!(in_flight.by_id.is_empty());
        }
    }

    /// Goal: memory follows the requests held, not the sequences they name: ids with two
    /// writes each, sequences 1 and 2^16 (a frame can carry thousands), keep a slot or so per
    /// write.
    #[test]
    fn sparse_sequences_keep_a_few_slots_per_request() {
        let mut in_flight = InFlight::default();
        let ids = 64;
        for id in 0..ids {
            in_flight.insert((id, 1), ());
            in_flight.insert((id, 1 << 16), ());
        }
        assert_eq!(in_flight.len(), 2 * ids as usize);
        let slots: usize = in_flight.by_id.values().map(|w| w.slots.len()).sum();
        assert!(slots <= 2 * ids as usize, "{slots} slots for {ids} ids");
        // A client with many writes in flight keeps one dense window.
        let mut dense = InFlight::default();
        for sequence in 1..=10_000 {
            dense.insert((7, sequence), ());
        }
        assert!(dense.far.is_empty());
        assert_eq!(dense.by_id[&7].slots.len(), 10_000);
    }
}
