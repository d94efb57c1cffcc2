//! Which key each request touches: uniform over the key space, or zipfian (a few hot keys,
//! a long cold tail), as YCSB draws them.

use crate::raft::Prng;

/// How keys are drawn.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank k drawn with probability ∝ 1/(k+1)^θ (θ = --zipf-theta).
    Zipfian,
}

/// Draws key ranks in `0..keys`.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    Uniform { keys: u64 },
    Zipfian(Zipfian),
}

impl KeyChooser {
    pub fn new(distribution: Distribution, keys: u64, theta: f64) -> KeyChooser {
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { keys },
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(keys, theta)),
        }
    }

    pub fn next(&self, rng: &mut Prng) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.below(*keys),
            KeyChooser::Zipfian(zipfian) => zipfian.next(rng),
        }
    }
}

/// The rejection-free zipfian generator of Gray et al., "Quickly generating billion-record
/// synthetic databases" (SIGMOD 1994), the one YCSB uses: O(n) set-up, O(1) per draw.
/// Needs 0 < θ < 1.
#[derive(Clone, Debug)]
pub struct Zipfian {
    keys: u64,
    theta: f64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(keys: u64, theta: f64) -> Zipfian {
        assert!(
            keys >= 1 && theta > 0.0 && theta < 1.0,
            "zipfian needs keys ≥ 1, 0 < θ < 1"
        );
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(keys);
        let zeta_2 = zeta(2.min(keys));
        let eta = if keys < 2 {
            0.0
        } else {
            (1.0 - (2.0 / keys as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n)
        };
        Zipfian {
            keys,
            theta,
            zeta_n,
            alpha: 1.0 / (1.0 - theta),
            eta,
        }
    }

    pub fn next(&self, rng: &mut Prng) -> u64 {
        let u = unit(rng);
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.keys - 1);
        }
        let rank = self.keys as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (rank as u64).min(self.keys - 1)
    }

    /// The probability of rank 0, the hottest key: 1/ζ(n, θ).
    pub fn hottest_probability(&self) -> f64 {
        1.0 / self.zeta_n
    }
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut Prng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(chooser: &KeyChooser, keys: u64, draws: u64) -> Vec<u64> {
        let mut rng = Prng::new(42);
        let mut counts = vec![0u64; keys as usize];
        for _ in 0..draws {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_draws_follow_the_power_law() {
        let (keys, draws) = (1_000, 400_000);
        let zipfian = Zipfian::new(keys, 0.99);
        let expected_hottest = zipfian.hottest_probability();
        let counts = counts(&KeyChooser::Zipfian(zipfian), keys, draws);
        let hottest = counts[0] as f64 / draws as f64;
        assert!(
            (hottest / expected_hottest - 1.0).abs() < 0.05,
            "rank 0 drawn {hottest:.4} of the time, expected {expected_hottest:.4}"
        );
        // p(k) ∝ 1/(k+1)^θ: rank 9 about a tenth as often as rank 0, rank 99 a hundredth.
        let ratio = |k: usize| counts[0] as f64 / counts[k] as f64;
        assert!(
            (7.0..14.0).contains(&ratio(9)),
            "rank 0 / rank 9 = {}",
            ratio(9)
        );
        assert!(
            (60.0..160.0).contains(&ratio(99)),
            "rank 0 / rank 99 = {}",
            ratio(99)
        );
    }

    #[test]
    fn uniform_draws_cover_the_key_space_evenly() {
        let counts = counts(&KeyChooser::Uniform { keys: 100 }, 100, 200_000);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *min > 1_700 && *max < 2_300,
            "counts between {min} and {max}"
        );
    }

    #[test]
    fn a_single_key_space_always_draws_rank_zero() {
        let chooser = KeyChooser::new(Distribution::Zipfian, 1, 0.99);
        let mut rng = Prng::new(1);
        assert!((0..1_000).all(|_| chooser.next(&mut rng) == 0));
    }
}
