//! YCSB-style workloads: hashed keys, uniform and scrambled-zipfian key
//! choice, and the operation mixes of the FASTER paper.
//!
//! Keys are `fnv64(i)` for `i` in `0..keys` (YCSB's hashed insert order, so
//! keys are never sorted). The zipfian chooser is YCSB's
//! `ScrambledZipfianGenerator` with θ = 0.99: a zipfian rank, scrambled by
//! FNV-64 so that the hot keys are spread over the key space.

/// FNV-1a 64 of a `u64`'s little-endian bytes (YCSB's key hash).
#[inline]
pub fn fnv64(value: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A small, fast, seeded generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// A float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// YCSB's scrambled zipfian, θ = 0.99.
    Zipf,
}

/// Chooses key indexes in `0..keys`.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    keys: u64,
    zipf: Option<Zipfian>,
}

#[derive(Debug, Clone)]
struct Zipfian {
    alpha: f64,
    zetan: f64,
    eta: f64,
    /// `1 + 0.5^θ`: below it, the rank is 1.
    second_rank_bound: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl KeyChooser {
    /// A chooser over `keys` keys.
    pub fn new(keys: u64, distribution: Distribution) -> Self {
        let zipf = match distribution {
            Distribution::Uniform => None,
            Distribution::Zipf => {
                let theta = 0.99;
                let zetan = zeta(keys, theta);
                let zeta2 = zeta(2, theta);
                let eta = (1.0 - (2.0 / keys as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
                Some(Zipfian {
                    alpha: 1.0 / (1.0 - theta),
                    zetan,
                    eta,
                    second_rank_bound: 1.0 + 0.5f64.powf(theta),
                })
            }
        };
        Self { keys, zipf }
    }

    /// The next key index.
    #[inline]
    pub fn next(&self, rng: &mut Rng) -> u64 {
        match &self.zipf {
            None => rng.below(self.keys),
            Some(z) => {
                let u = rng.unit();
                let uz = u * z.zetan;
                let rank = if uz < 1.0 {
                    0
                } else if uz < z.second_rank_bound {
                    1
                } else {
                    ((self.keys as f64) * (z.eta * u - z.eta + 1.0).powf(z.alpha)) as u64
                };
                fnv64(rank) % self.keys
            }
        }
    }
}

/// A pre-generated sequence of keys (already hashed with [`fnv64`]), so
/// that a measured run spends no time choosing keys, as in FASTER's own
/// benchmark.
pub fn key_trace(chooser: &KeyChooser, rng: &mut Rng, len: usize) -> Vec<u64> {
    (0..len).map(|_| fnv64(chooser.next(rng))).collect()
}

/// An operation of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Read,
    /// A blind write.
    Upsert,
    /// Read-modify-write: add 1.
    Rmw,
    /// Read, then compare-and-swap the value read for it plus 1.
    Cas,
    /// Insert-if-absent (of a key that is present: the check a unique
    /// insert makes).
    Insert,
}

/// The operation mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// YCSB A: 50% read, 50% upsert.
    A,
    /// YCSB B: 95% read, 5% upsert.
    B,
    /// YCSB C: 100% read.
    C,
    /// 100% read-modify-write.
    Rmw,
    /// YCSB F: 50% read, 50% read-modify-write.
    F,
    /// 100% compare-and-swap increments (a read and a CAS each).
    Cas,
    /// 100% insert-if-absent of present keys.
    Insert,
}

impl Workload {
    /// The next operation.
    #[inline]
    pub fn next_op(self, rng: &mut Rng) -> Op {
        match self {
            Workload::C => Op::Read,
            Workload::Rmw => Op::Rmw,
            Workload::Cas => Op::Cas,
            Workload::Insert => Op::Insert,
            Workload::A => {
                if rng.below(2) == 0 {
                    Op::Read
                } else {
                    Op::Upsert
                }
            }
            Workload::B => {
                if rng.below(100) < 95 {
                    Op::Read
                } else {
                    Op::Upsert
                }
            }
            Workload::F => {
                if rng.below(2) == 0 {
                    Op::Read
                } else {
                    Op::Rmw
                }
            }
        }
    }

    /// Whether the workload only adds to values (so their sum is checkable).
    pub fn only_increments(self) -> bool {
        matches!(self, Workload::C | Workload::Rmw | Workload::F | Workload::Cas | Workload::Insert)
    }

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "A",
            Workload::B => "B",
            Workload::C => "C",
            Workload::Rmw => "RMW",
            Workload::F => "F",
            Workload::Cas => "CAS",
            Workload::Insert => "insert-if-absent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let chooser = KeyChooser::new(10_000, Distribution::Zipf);
        let mut rng = Rng::new(1);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..200_000 {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_1_percent: u32 = counts[..100].iter().sum();
        assert!(top_1_percent > 200_000 / 5, "the hottest 1% got only {top_1_percent}");
    }

    #[test]
    fn uniform_covers_the_range() {
        let chooser = KeyChooser::new(100, Distribution::Uniform);
        let mut rng = Rng::new(2);
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            seen[chooser.next(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn fnv_matches_the_reference() {
        // FNV-1a 64 of eight zero bytes.
        assert_eq!(fnv64(0), 0xa8c7_f832_281a_39c5);
    }
}
