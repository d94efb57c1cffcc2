//! Ticks from the clock: how many a core owes its groups at the start of a turn.
//!
//! A timer task that pushes one tick per wake-up falls behind real time: each late wake-up
//! delays every later tick, and a stall of the executor, however long, yields one tick. A
//! leader counts its lease in ticks and its voters count the election timeout in theirs, so
//! a leader whose ticks run slow (the busiest node's do) keeps serving reads from a lease
//! that has run out in real time, while the others elect a new leader and commit writes the
//! reads miss. Counting ticks from the clock at the start of every turn, before the turn's
//! inputs are handled, keeps a replica's ticks within one of real time. The clock is the
//! time since boot (`clock::since_boot`), which goes on while the machine is suspended:
//! the monotonic clock stops then, and a leader resumed after a suspension would count
//! its lease from before it.

use std::time::Duration;

pub struct TickClock {
    length: Duration,
    /// When the first tick began, by [`crate::clock::since_boot`].
    start: Duration,
    delivered: u64,
    /// The most ticks handed out at once.
    at_once_max: u64,
}

impl TickClock {
    /// Ticks of `length` from `start`, at most `at_once_max` at once: after a long stop (a
    /// suspended machine, a stopped process) millions are owed, and ticking each group
    /// through all of them would stall the core and pile up an election's messages for
    /// every timeout that passed. Any count past the longest timeout counted in ticks does
    /// what all of them would: every lease, election timeout and stream timer runs out.
    pub fn new(length: Duration, start: Duration, at_once_max: u64) -> TickClock {
        assert!(!length.is_zero(), "a tick has a length");
        TickClock {
            length,
            start,
            delivered: 0,
            at_once_max: at_once_max.max(1),
        }
    }

    /// Whole ticks elapsed by `now` that were not handed out before, at most `at_once_max`;
    /// all counted as handed out.
    pub fn owed(&mut self, now: Duration) -> u64 {
        let elapsed = now.saturating_sub(self.start);
        let due = u64::try_from(elapsed.as_nanos() / self.length.as_nanos()).unwrap_or(u64::MAX);
        let owed = due.saturating_sub(self.delivered);
        self.delivered += owed;
        owed.min(self.at_once_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owes_every_whole_tick_once_however_late_it_is_asked() {
        let start = crate::clock::since_boot();
        let ms = Duration::from_millis;
        let mut clock = TickClock::new(ms(10), start, 1_000);
        assert_eq!(clock.owed(start), 0);
        assert_eq!(clock.owed(start + ms(9)), 0);
        assert_eq!(clock.owed(start + ms(10)), 1);
        assert_eq!(clock.owed(start + ms(15)), 0);
        // A stall: every tick it spanned, at once.
        assert_eq!(clock.owed(start + ms(355)), 34);
        assert_eq!(clock.owed(start + ms(360)), 1);
        // A clock read before the start (never, with a monotonic clock) owes nothing.
        assert_eq!(clock.owed(start), 0);
        assert_eq!(clock.owed(start + ms(371)), 1);
    }

    /// Goal: after a long stop (here, a suspension of three hours), at most the bound is
    /// owed at once, and the ticks after it are counted from the present.
    #[test]
    fn owes_at_most_its_bound_after_a_long_stop() {
        let start = crate::clock::since_boot();
        let ms = Duration::from_millis;
        let mut clock = TickClock::new(ms(10), start, 201);
        let later = start + Duration::from_secs(3 * 3600);
        assert_eq!(clock.owed(later), 201);
        assert_eq!(clock.owed(later + ms(5)), 0);
        assert_eq!(clock.owed(later + ms(10)), 1);
    }
}
