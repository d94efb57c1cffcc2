//! The sequences of one derived client id that were sent and are not answered yet, as a
//! window from the lowest of them: adding one, marking one answered and finding the lowest
//! are O(1) amortised, where a `BTreeSet` searched its tree for each (4% of the load
//! generator's CPU with thousands of requests in flight per id).

use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct Unanswered {
    /// The sequence of `answered[0]`.
    base: u64,
    /// For each sequence from `base` on, whether it is answered. Its front is never true:
    /// answered sequences at the front leave the window at once.
    answered: VecDeque<bool>,
}

impl Unanswered {
    /// Adds `sequence`, which is above every sequence added before. Sequences skipped
    /// between two adds were never sent and count as answered.
    pub(super) fn add(&mut self, sequence: u64) {
        let end = self.base + self.answered.len() as u64;
        assert!(
            self.answered.is_empty() || sequence >= end,
            "sequence {sequence} added below the window's end {end}"
        );
        if self.answered.is_empty() {
            self.base = sequence;
        }
        for _ in end.max(self.base)..sequence {
            self.answered.push_back(true);
        }
        self.answered.push_back(false);
    }

    /// Marks `sequence` answered; one outside the window (answered before, or never added)
    /// changes nothing.
    pub(super) fn remove(&mut self, sequence: u64) {
        let Some(at) = sequence.checked_sub(self.base) else {
            return;
        };
        if let Some(answered) = self.answered.get_mut(at as usize) {
            *answered = true;
        }
        while self.answered.front() == Some(&true) {
            self.answered.pop_front();
            self.base += 1;
        }
    }

    /// The lowest sequence not answered yet.
    pub(super) fn lowest(&self) -> Option<u64> {
        (!self.answered.is_empty()).then_some(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Against the set it replaces: any adds (increasing, with gaps) and removes (of
        /// sequences in or out of the window) leave the same lowest sequence.
        #[test]
        fn its_lowest_is_the_lowest_of_a_set_given_the_same_calls(
            calls in proptest::collection::vec((any::<bool>(), 0u64..4, 0usize..64), 1..400)
        ) {
            let (mut window, mut set) = (Unanswered::default(), BTreeSet::new());
            let mut next = 1u64;
            for (add, gap, pick) in calls {
                if add {
                    next += gap;
                    window.add(next);
                    set.insert(next);
                    next += 1;
                } else {
                    // A sequence in the set, or (every fourth pick) any sequence at all.
                    let sequence = if pick % 4 == 3 || set.is_empty() {
                        pick as u64
                    } else {
                        *set.iter().nth(pick % set.len()).unwrap()
                    };
                    window.remove(sequence);
                    set.remove(&sequence);
                }
                prop_assert_eq!(window.lowest(), set.first().copied());
            }
        }
    }
}
