//! Reconnect delays: doubling from a minimum to a cap, each moved by a seeded jitter.

use std::time::Duration;

use crate::raft::Prng;

/// The delays between a dialer's attempts. Pure: the caller sleeps.
#[derive(Clone, Debug)]
pub struct Backoff {
    delay_ms_min: u64,
    delay_ms_max: u64,
    jitter_percent: u64,
    /// The delay before jitter of the next attempt.
    delay_ms_next: u64,
    rng: Prng,
}

impl Backoff {
    /// # Panics
    /// If `min` is zero or above `max`, or `jitter_percent` is 100 or more (the config's
    /// validation refuses those first).
    pub fn new(min: Duration, max: Duration, jitter_percent: u64, seed: u64) -> Backoff {
        let delay_ms_min = min.as_millis() as u64;
        let delay_ms_max = max.as_millis() as u64;
        assert!(delay_ms_min > 0, "backoff minimum must be positive");
        assert!(
            delay_ms_min <= delay_ms_max,
            "backoff minimum above its cap"
        );
        assert!(
            jitter_percent < 100,
            "jitter of {jitter_percent}% would reach zero"
        );
        Backoff {
            delay_ms_min,
            delay_ms_max,
            jitter_percent,
            delay_ms_next: delay_ms_min,
            rng: Prng::new(seed),
        }
    }

    /// The delay before the next attempt; each call doubles the base up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.delay_ms_next;
        self.delay_ms_next = base.saturating_mul(2).min(self.delay_ms_max);
        let spread = base * self.jitter_percent / 100;
        let jittered = base - spread + self.rng.below(2 * spread + 1);
        debug_assert!(jittered > 0, "jitter below 100% keeps the delay positive");
        Duration::from_millis(jittered)
    }

    /// After a connection that carried frames and did not end for what the peer sent:
    /// start again from the minimum.
    pub fn reset(&mut self) {
        self.delay_ms_next = self.delay_ms_min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter() {
        let mut backoff = Backoff::new(ms(10), ms(2_000), 25, 7);
        let mut base = 10u64;
        for _ in 0..20 {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!(
                delay >= base - base / 4 && delay <= base + base / 4,
                "{delay} vs {base}"
            );
            base = (base * 2).min(2_000);
        }
    }

    #[test]
    fn reset_returns_to_the_minimum() {
        let mut backoff = Backoff::new(ms(10), ms(2_000), 0, 1);
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), ms(2_000));
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(10));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let delays = |seed| {
            let mut backoff = Backoff::new(ms(10), ms(2_000), 25, seed);
            (0..10).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(3), delays(3));
        assert_ne!(delays(3), delays(4));
    }
}
