//! Tick clocks that run at slightly different rates, as real machines' clocks do: what a
//! lease's safety rests on (`raft::Config::lease_clock_drift_ticks`).

use crate::raft::Prng;

/// Thousandths of a time unit: a clock's rate is set to a thousandth.
const MILLI: u64 = 1000;

/// One node's tick clock in simulated time.
#[derive(Clone, Debug)]
pub struct SkewedClock {
    /// Thousandths of a time unit between two ticks.
    period_milli: u64,
    /// When the next tick is due, in thousandths of a time unit.
    next_milli: u64,
}

impl SkewedClock {
    /// A clock that ticks every `interval` time units, `skew_permille` thousandths slower
    /// (above 0) or faster (below 0), first at `phase` (below `interval`).
    pub fn new(interval: u64, skew_permille: i64, phase: u64) -> SkewedClock {
        let period_milli = interval
            .checked_mul(MILLI)
            .and_then(|base| base.checked_add_signed(skew_permille * interval as i64))
            .filter(|&period| period > 0)
            .expect("a tick period above zero");
        SkewedClock {
            period_milli,
            next_milli: phase * MILLI,
        }
    }

    /// The ticks due by time `now`; each is counted once.
    pub fn ticks_due(&mut self, now: u64) -> u64 {
        let now_milli = now * MILLI;
        let mut due = 0;
        while self.next_milli <= now_milli {
            self.next_milli += self.period_milli;
            due += 1;
        }
        due
    }
}

/// The widest skew, in thousandths either way, at which leases stay safe. A leader's lease
/// runs `election - drift` of its own ticks from a round it sent; a voter that heard that
/// round refuses votes until its own tick count reaches `election` past the count it heard
/// it at, which is at least `election - 1` of its tick periods later. Safe while
/// `(election - drift) * leader_period <= (election - 1) * voter_period` for every pair; with
/// rates within `1 ± s` of one another's base, that holds for `s <= (drift - 1) /
/// (2 * election - drift - 1)`. None where no skew is safe (a drift below 2 ticks).
pub fn lease_safe_skew_permille(election_ticks: u32, drift_ticks: u32) -> Option<u64> {
    let (election, drift) = (u64::from(election_ticks), u64::from(drift_ticks));
    let denominator = (2 * election).checked_sub(drift + 1)?;
    let numerator = drift.checked_sub(1)?;
    (denominator > 0).then(|| numerator * MILLI / denominator)
}

/// A clock for each of `nodes` nodes, each with its own rate within `±skew_permille_max`,
/// out of phase with one another like real machines' clocks.
pub fn skewed_clocks(
    nodes: u64,
    interval: u64,
    skew_permille_max: u64,
    seed: u64,
) -> Vec<SkewedClock> {
    let mut rng = Prng::new(seed ^ 0xC10C);
    (1..=nodes)
        .map(|id| {
            let skew = rng.below(2 * skew_permille_max + 1) as i64 - skew_permille_max as i64;
            // The phases the simulator always used: node `id` first ticks at a time
            // `t` with `(t + 3 * id) % interval == 0`.
            let phase = (interval - (3 * id) % interval) % interval;
            SkewedClock::new(interval, skew, phase)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_ticks_at_its_own_rate() {
        let mut slow = SkewedClock::new(10, 100, 0);
        let mut fast = SkewedClock::new(10, -100, 0);
        let (mut slow_ticks, mut fast_ticks) = (0, 0);
        for now in 0..=11_000 {
            slow_ticks += slow.ticks_due(now);
            fast_ticks += fast.ticks_due(now);
        }
        // 11,000 units: 1,000 periods of 11 units and 1,222 periods of 9, plus the tick at 0.
        assert_eq!(slow_ticks, 1_001);
        assert_eq!(fast_ticks, 1_223);
    }

    #[test]
    fn the_safe_skew_follows_the_lease_margin() {
        // The defaults: an election of 10 ticks, a lease 2 ticks shorter.
        assert_eq!(lease_safe_skew_permille(10, 2), Some(58));
        let s = 58.0 / 1000.0;
        assert!((10.0 - 2.0) * (1.0 + s) <= (10.0 - 1.0) * (1.0 - s));
        let s = 59.0 / 1000.0;
        assert!((10.0 - 2.0) * (1.0 + s) > (10.0 - 1.0) * (1.0 - s));
        assert_eq!(lease_safe_skew_permille(10, 1), Some(0));
        assert_eq!(lease_safe_skew_permille(10, 0), None);
    }

    /// Three voters on their own clocks; at time 1000 the leader is cut off, and from then
    /// on its clock runs `slow_permille` slow and the others' `slow_permille` fast, and it is
    /// asked for a read at every step for as long as it leads. The checker's verdict.
    fn read_at_a_cut_off_leader(slow_permille: i64) -> Result<(), String> {
        use crate::sim::Cluster;
        let config = Box::new(|id| {
            let mut config = Cluster::test_config(id);
            config.lease_reads = true;
            config.check_quorum = true;
            config
        });
        let mut cluster = Cluster::new(3, 0, 1, config);
        let mut clocks = skewed_clocks(3, 10, 0, 1);
        let mut cut_off = None;
        for now in 1..2_000 {
            cluster.now = now;
            while let Some(message) = cluster.network.next_due(now) {
                cluster.deliver(message)?;
            }
            cluster.complete_due_persists()?;
            for (clock, id) in clocks.iter_mut().zip(cluster.ids()) {
                for _ in 0..clock.ticks_due(now) {
                    cluster.tick(id)?;
                }
                cluster.process_ready(id)?;
            }
            if now == 1_000 {
                let leader = cluster.leader().expect("a leader by now");
                cluster.isolate(leader);
                for (clock, id) in clocks.iter_mut().zip(cluster.ids()) {
                    let skew = if id == leader {
                        slow_permille
                    } else {
                        -slow_permille
                    };
                    *clock = SkewedClock::new(10, skew, now + id.0);
                }
                cut_off = Some(leader);
            }
            if let Some(leader) = cut_off.filter(|&id| cluster.leaders().contains(&id)) {
                let _ = cluster.read(leader);
            }
        }
        assert!(cluster.leader() != cut_off, "the others elected a leader");
        Ok(())
    }

    /// Goal: the skew the simulator draws within is one leases survive, and the checker
    /// sees a lease that outlives its leadership. Method: a leader cut off from the others
    /// answers reads from its lease while the others elect a new leader; its clock runs slow
    /// and theirs fast, at the bound and at ten times it.
    #[test]
    fn a_lease_holds_at_the_skew_bound_and_breaks_far_past_it() {
        let bound = lease_safe_skew_permille(10, 2).unwrap() as i64;
        read_at_a_cut_off_leader(bound).expect("no stale read at the bound");
        let error = read_at_a_cut_off_leader(10 * bound).expect_err("a stale read past it");
        assert!(error.contains("stale read"), "{error}");
    }
}
