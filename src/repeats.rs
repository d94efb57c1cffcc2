//! Warnings that repeat for a reason that lasts (a peer run with other flags is refused at
//! each of its dials, every half second, for as long as both run): the first of a kind is
//! said, and later ones at most once a minute each, with how many were held back in between.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often a warning of one kind is said at most.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// Kinds remembered at most. Past it, the warnings of kinds not remembered share one kind:
/// the first said, the rest held back for a minute (found in review: a sender that chose its
/// text, a checksum or an id in it, was warned of at each of its connections).
const KINDS_MAX: usize = 256;

/// The warnings said lately, by kind.
#[derive(Debug, Default)]
pub struct Repeats {
    seen: HashMap<String, Seen>,
    /// The warnings of kinds not remembered (the kinds full), as one kind.
    unremembered: Option<Seen>,
}

#[derive(Debug)]
struct Seen {
    said_at: Instant,
    /// Held back since it was said.
    held: u64,
}

impl Repeats {
    /// Whether a warning of `kind` is to be said now: `Some(n)` with the `n` of its kind held
    /// back since the last one said, or `None` to hold it back (log it at debug instead).
    pub fn admit(&mut self, kind: &str) -> Option<u64> {
        self.admit_at(kind, crate::clock::now())
    }

    fn admit_at(&mut self, kind: &str, now: Instant) -> Option<u64> {
        if let Some(seen) = self.seen.get_mut(kind) {
            return seen.admit_at(now);
        }
        if self.seen.len() >= KINDS_MAX {
            // Those not said for a while are of no use to hold back the next.
            self.seen
                .retain(|_, seen| now.duration_since(seen.said_at) < REPEAT_EVERY);
        }
        if self.seen.len() < KINDS_MAX {
            let seen = Seen {
                said_at: now,
                held: 0,
            };
            self.seen.insert(kind.to_string(), seen);
            return Some(0);
        }
        // Counted as one kind: said with the number held back since, as any (it said 0,
        // found in review, however many it held back).
        match &mut self.unremembered {
            Some(seen) => seen.admit_at(now),
            None => {
                let seen = Seen {
                    said_at: now,
                    held: 0,
                };
                self.unremembered = Some(seen);
                Some(0)
            }
        }
    }
}

impl Seen {
    /// See [`Repeats::admit`].
    fn admit_at(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.said_at) < REPEAT_EVERY {
            self.held += 1;
            return None;
        }
        let held = self.held;
        *self = Seen {
            said_at: now,
            held: 0,
        };
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_said_first_then_once_a_minute_with_the_count_held_back() {
        let mut repeats = Repeats::default();
        let start = crate::clock::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(repeats.admit_at("refused by 2", at(0)), Some(0));
        assert_eq!(repeats.admit_at("refused by 2", at(2)), None);
        assert_eq!(repeats.admit_at("refused by 3", at(3)), Some(0));
        assert_eq!(repeats.admit_at("refused by 2", at(59)), None);
        assert_eq!(repeats.admit_at("refused by 2", at(61)), Some(2));
        assert_eq!(repeats.admit_at("refused by 2", at(62)), None);
        assert_eq!(repeats.admit_at("refused by 3", at(70)), Some(0));
    }

    #[test]
    fn distinct_kinds_past_the_bound_share_one() {
        let mut repeats = Repeats::default();
        let now = crate::clock::now();
        for kind in 0..KINDS_MAX {
            assert_eq!(repeats.admit_at(&kind.to_string(), now), Some(0));
        }
        // Past the bound the first is said, and the rest held back for a minute.
        assert_eq!(repeats.admit_at("past 1", now), Some(0));
        for kind in 0..KINDS_MAX {
            assert_eq!(repeats.admit_at(&format!("past {kind}"), now), None);
        }
        assert_eq!(repeats.seen.len(), KINDS_MAX);
        // Those remembered are still held back.
        assert_eq!(repeats.admit_at("0", now), None);
        // A minute on, the old ones make room.
        let later = now + REPEAT_EVERY;
        assert_eq!(repeats.admit_at("new", later), Some(0));
        assert_eq!(repeats.seen.len(), 1);
        // Those not remembered, as one kind, say how many of them were held back.
        for kind in 0..KINDS_MAX - 1 {
            assert_eq!(repeats.admit_at(&format!("fill {kind}"), later), Some(0));
        }
        assert_eq!(
            repeats.admit_at("past again", later),
            Some(KINDS_MAX as u64)
        );
    }
}
