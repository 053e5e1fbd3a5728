//! Reproducible pseudo-random figures for scenarios and benchmarks: the
//! same seed gives the same sequence on every machine, so a run's inputs
//! can be named by their seed.

/// Marsaglia's xorshift64 (shifts 13, 7, 17): fast, full period over the
/// non-zero 64-bit values; good enough for test inputs, not for anything
/// that needs statistical quality.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// The seed the benches use.
    pub const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A generator from `seed` (0, a fixed point, is replaced by
    /// [`DEFAULT_SEED`](Self::DEFAULT_SEED)).
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 { Self::DEFAULT_SEED } else { seed })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `n` delays in ns, `min_ns` up to `min_ns + span_ns` (exclusive), from
/// [`XorShift64::DEFAULT_SEED`]: the deltas the `program_event` benches
/// program.
pub fn deltas(n: usize, min_ns: u64, span_ns: u64) -> Vec<u64> {
    let mut r = XorShift64::new(XorShift64::DEFAULT_SEED);
    (0..n)
        .map(|_| min_ns + r.next_u64() % span_ns.max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_marsaglias_and_deltas_stay_in_range() {
        let mut r = XorShift64::new(1);
        // x = 1: x ^= x<<13 → 0x2001; x ^= x>>7 → 0x2041; x ^= x<<17.
        assert_eq!(r.next_u64(), 0x4082_2041);
        assert_eq!(
            XorShift64::new(0).next_u64(),
            XorShift64::new(XorShift64::DEFAULT_SEED).next_u64()
        );
        let d = deltas(1024, 20_000, 100_000_000);
        assert_eq!(d.len(), 1024);
        assert!(d.iter().all(|&x| (20_000..100_020_000).contains(&x)));
        assert_eq!(d, deltas(1024, 20_000, 100_000_000));
    }
}
