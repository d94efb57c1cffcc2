//! Which key each request touches: uniform over the key space, or zipfian (a few hot keys,
//! a long cold tail), as YCSB draws them; and the keys themselves, made once per run.

use bytes::Bytes;

use crate::proto::topology::group_of;
use crate::raft::Prng;

/// The key of rank `rank`.
pub fn key_name(rank: u64) -> String {
    format!("key-{rank}")
}

/// Every key of a run with its group, made once: a request's key is then a slice of one
/// shared buffer, where formatting and allocating it per request (and freeing it after)
/// cost the generator about a tenth of its CPU.
///
/// Each key has a 16-byte record (`len u8 | key bytes | group u32` at the end), so the
/// generator's draw and the client's hash of the key read one cache line between them. (Key
/// bytes, their offsets and their groups in three arrays cost a cache miss each per request
/// once the table outgrew the CPU's cache: 100,000 keys, the default, do.)
pub struct Keys {
    /// Key spaces up to `TABLE_KEYS_MAX` keys are tabled; larger ones are formatted per draw.
    table: Option<Bytes>,
    groups: u32,
}

/// Bytes per key of the table: the longest tabled name (`key-1048575`, 11 bytes), its
/// length and its group.
const RECORD_BYTES: usize = 16;
const NAME_BYTES_MAX: usize = RECORD_BYTES - 5;

impl Keys {
    /// 16 MiB of table at this size.
    pub const TABLE_KEYS_MAX: u64 = 1 << 20;

    pub fn new(keys: u64, groups: u32) -> Keys {
        let table = (keys <= Self::TABLE_KEYS_MAX).then(|| {
            let mut table = vec![0u8; keys as usize * RECORD_BYTES];
            for (rank, record) in table.chunks_exact_mut(RECORD_BYTES).enumerate() {
                let key = key_name(rank as u64);
                assert!(key.len() <= NAME_BYTES_MAX, "{key} fits its record");
                record[0] = key.len() as u8;
                record[1..=key.len()].copy_from_slice(key.as_bytes());
                let group = group_of(key.as_bytes(), groups);
                record[NAME_BYTES_MAX + 1..].copy_from_slice(&group.to_le_bytes());
            }
            Bytes::from(table)
        });
        Keys { table, groups }
    }

    /// The key of rank `rank` and its group.
    pub fn get(&self, rank: u64) -> (Bytes, u32) {
        match &self.table {
            Some(table) => {
                let at = rank as usize * RECORD_BYTES;
                let record = &table[at..at + RECORD_BYTES];
                let group = u32::from_le_bytes(record[NAME_BYTES_MAX + 1..].try_into().expect("4"));
                (table.slice(at + 1..at + 1 + record[0] as usize), group)
            }
            None => {
                let key = Bytes::from(key_name(rank));
                let group = group_of(&key, self.groups);
                (key, group)
            }
        }
    }
}

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
/// synthetic databases" (SIGMOD 1994), the one YCSB uses: O(1) per draw, and a set-up that
/// sums at most a million terms (see `zeta`). Needs 0 < θ < 1.
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
        let zeta_n = zeta(keys, theta);
        let zeta_2 = zeta(2.min(keys), theta);
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

/// Terms of [`zeta`] summed one by one; the rest come from the Euler–Maclaurin formula.
const ZETA_TERMS_SUMMED: u64 = 1 << 20;

/// ζ(n, θ) = Σ i^-θ for i in 1..=n: the first [`ZETA_TERMS_SUMMED`] terms summed, the rest
/// by the Euler–Maclaurin formula to its first derivative term, whose error there (about
/// f'''(2^20) / 720) is far below what an f64 of the sum can hold. So the set-up for
/// billions of keys takes as long as for a million, where summing every term took half an
/// hour for 10^11 keys (found in review: `bench --distribution zipfian --keys` hung).
fn zeta(n: u64, theta: f64) -> f64 {
    let f = |x: f64| x.powf(-theta);
    let head: f64 = (1..=n.min(ZETA_TERMS_SUMMED)).map(|i| f(i as f64)).sum();
    if n <= ZETA_TERMS_SUMMED {
        return head;
    }
    let (a, b) = (ZETA_TERMS_SUMMED as f64, n as f64);
    let integral = (b.powf(1.0 - theta) - a.powf(1.0 - theta)) / (1.0 - theta);
    let derivative = |x: f64| -theta * x.powf(-theta - 1.0);
    // Σ f(i) for i in a+1..=b = ∫ f from a to b + (f(b) - f(a)) / 2 + (f'(b) - f'(a)) / 12 - …
    head + integral + (f(b) - f(a)) / 2.0 + (derivative(b) - derivative(a)) / 12.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeta_past_the_summed_terms_matches_the_sum() {
        for theta in [0.5, 0.99] {
            let n = 3 * ZETA_TERMS_SUMMED + 7;
            let summed: f64 = (1..=n).map(|i| (i as f64).powf(-theta)).sum();
            let estimated = zeta(n, theta);
            assert!(
                ((estimated - summed) / summed).abs() < 1e-12,
                "θ {theta}: {estimated} against {summed}"
            );
        }
        // Any number of keys sets up at once (summing every term would not end).
        let zipfian = Zipfian::new(u64::MAX, 0.99);
        assert!(zipfian.zeta_n.is_finite() && zipfian.zeta_n > zeta(ZETA_TERMS_SUMMED, 0.99));
    }

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
    fn tabled_and_formatted_keys_agree() {
        let tabled = Keys::new(1_000, 7);
        let formatted = Keys {
            table: None,
            groups: 7,
        };
        for rank in [0, 1, 9, 10, 999] {
            let (key, group) = tabled.get(rank);
            assert_eq!(&key[..], key_name(rank).as_bytes());
            assert_eq!((key, group), formatted.get(rank));
        }
        assert!(Keys::new(Keys::TABLE_KEYS_MAX + 1, 7).table.is_none());
        assert!(key_name(Keys::TABLE_KEYS_MAX - 1).len() <= NAME_BYTES_MAX);
    }

    #[test]
    fn a_single_key_space_always_draws_rank_zero() {
        let chooser = KeyChooser::new(Distribution::Zipfian, 1, 0.99);
        let mut rng = Prng::new(1);
        assert!((0..1_000).all(|_| chooser.next(&mut rng) == 0));
    }
}
