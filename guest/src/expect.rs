//! The arithmetic of the in-guest tests' expectations: pure, so it is
//! tested on the host and the guest states exactly what it asserts.
//!
//! - [`forced_range`]: how many wake-ups a device's max delta (or the
//!   clocksource's max deferment) forces between two other wake-ups.
//! - [`Latency`]: min / p50 / p99 / max of a set of lateness samples.
//! - [`ppb`]: the rate disagreement of two clocks over one window.

use core::ops::RangeInclusive;

use clocksource::Nanos;

/// How many wake-ups a cap of `every` forces in a gap of `gap` between two
/// wake-ups that happen anyway (a timer, a watchdog check, the start).
///
/// With the tick stopped, each wake-up re-arms the device for
/// `min(next event, now + every)`, so the wake-ups come every `every` plus
/// the interrupt's lateness ℓ, until the next event is within `every`:
///
/// ```text
///   anchor ──every+ℓ──► forced ──every+ℓ──► forced ── … ──► ≤ every ──► event
///   n forced wake-ups: the least n with every + n·(every + ℓ) ≥ gap
/// ```
///
/// Lateness can only remove wake-ups, so the range is
/// `⌈(gap − every) / (every + max_lateness)⌉ ..= ⌈(gap − every) / every⌉`
/// (zero below `every`). With ℓ = 0 it is a single value.
pub fn forced_range(gap: Nanos, every: Nanos, max_lateness: Nanos) -> RangeInclusive<u64> {
    let e = every.as_nanos().max(1);
    let g = gap.as_nanos();
    if g <= e {
        return 0..=0;
    }
    let rest = g - e;
    let most = rest.div_ceil(e);
    let least = rest.div_ceil(e.saturating_add(max_lateness.as_nanos()));
    least..=most
}

/// Lateness statistics of a sample, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// The smallest.
    pub min: u64,
    /// The median (nearest rank).
    pub p50: u64,
    /// The 99th percentile (nearest rank).
    pub p99: u64,
    /// The largest.
    pub max: u64,
}

impl Latency {
    /// Sorts `samples` in place and summarises them; `None` if empty.
    pub fn of(samples: &mut [u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Latency {
            count: samples.len(),
            min: samples[0],
            p50: nearest_rank(samples, 500),
            p99: nearest_rank(samples, 990),
            max: samples[samples.len() - 1],
        })
    }
}

/// The nearest-rank percentile `per_mille`/1000 of a sorted, non-empty slice.
pub fn nearest_rank<T: Copy>(sorted: &[T], per_mille: u64) -> T {
    let n = sorted.len() as u64;
    let rank = (per_mille * n).div_ceil(1000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

/// How far `measured` is from `reference`, in parts per billion, signed:
/// `(measured − reference) / reference`. Zero reference gives 0.
pub fn ppb(measured: Nanos, reference: Nanos) -> i64 {
    let r = reference.as_nanos() as i128;
    if r == 0 {
        return 0;
    }
    let d = measured.as_nanos() as i128 - r;
    (d * 1_000_000_000 / r) as i64
}

/// An error of `err` over a window of `window`, in ppb, rounded up.
pub fn bound_ppb(err: Nanos, window: Nanos) -> u64 {
    let w = window.as_nanos().max(1) as u128;
    ((err.as_nanos() as u128 * 1_000_000_000).div_ceil(w)).min(u64::MAX as u128) as u64
}

/// A signed ppb value as ppm with three decimals (`-12.345`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ppm(pub i64);

impl core::fmt::Display for Ppm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:03}", a / 1000, a % 1000)
    }
}

/// Nanoseconds as microseconds with one decimal (`12.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub u64);

impl core::fmt::Display for Micros {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.0 / 1000, self.0 % 1000 / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIT_MAX_DELTA: Nanos = Nanos::from_nanos(27_462_500); // 0x7FFF / 1.193182 MHz

    #[test]
    fn pit_max_delta_forces_54_wakeups_in_1_5_s() {
        // The issue's figure: ~55 wake-ups per 1.5 s (54 forced + the timer).
        assert_eq!(
            forced_range(Nanos::from_millis(1500), PIT_MAX_DELTA, Nanos::ZERO),
            54..=54
        );
        assert_eq!(
            forced_range(Nanos::from_millis(500), PIT_MAX_DELTA, Nanos::ZERO),
            18..=18
        );
    }

    #[test]
    fn lateness_can_only_remove_forced_wakeups() {
        // 0.5 s: 18 forced at ℓ = 0; 17 once 17·(E+ℓ)+E ≥ 0.5 s, ℓ ≥ 0.33 ms.
        assert_eq!(
            forced_range(
                Nanos::from_millis(500),
                PIT_MAX_DELTA,
                Nanos::from_micros(100)
            ),
            18..=18
        );
        assert_eq!(
            forced_range(
                Nanos::from_millis(500),
                PIT_MAX_DELTA,
                Nanos::from_micros(400)
            ),
            17..=18
        );
    }

    #[test]
    fn gaps_within_the_cap_force_nothing() {
        let hpet = Nanos::from_nanos(21_474_836_470); // 0x7FFF_FFFF at 100 MHz
        assert_eq!(forced_range(Nanos::from_secs(2), hpet, Nanos::ZERO), 0..=0);
        assert_eq!(forced_range(Nanos::ZERO, hpet, Nanos::ZERO), 0..=0);
        assert_eq!(
            forced_range(Nanos::from_millis(10), Nanos::from_millis(10), Nanos::ZERO),
            0..=0
        );
        assert_eq!(
            forced_range(Nanos::from_millis(11), Nanos::from_millis(10), Nanos::ZERO),
            1..=1
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let l = Latency::of(&mut v).unwrap();
        assert_eq!((l.min, l.p50, l.p99, l.max), (1, 500, 990, 1000));
        let mut one = [7];
        let l = Latency::of(&mut one).unwrap();
        assert_eq!((l.min, l.p50, l.p99, l.max), (7, 7, 7, 7));
        assert_eq!(Latency::of(&mut []), None);
    }

    #[test]
    fn ppb_and_formatting() {
        let r = Nanos::from_millis(100);
        assert_eq!(ppb(Nanos::from_nanos(100_000_100), r), 1_000);
        assert_eq!(ppb(Nanos::from_nanos(99_999_900), r), -1_000);
        assert_eq!(Ppm(-12_345).to_string(), "-12.345");
        assert_eq!(Ppm(5).to_string(), "0.005");
        assert_eq!(Micros(12_345).to_string(), "12.3");
        assert_eq!(bound_ppb(Nanos::from_nanos(1), Nanos::from_millis(100)), 10);
    }

    quickcheck::quickcheck! {
        fn forced_range_is_ordered_and_exact_without_lateness(gap: u32, every: u32, late: u16) -> bool {
            let (g, e) = (Nanos::from_nanos(gap as u64), Nanos::from_nanos(every as u64 + 1));
            let r = forced_range(g, e, Nanos::from_nanos(late as u64));
            let exact = forced_range(g, e, Nanos::ZERO);
            // The zero-lateness count n is the least with e + n·e ≥ gap.
            let n = *exact.start();
            r.start() <= r.end() && exact.start() == exact.end() && *r.end() == n
                && (n + 1) * e.as_nanos() >= g.as_nanos()
                && (n == 0 || n * e.as_nanos() < g.as_nanos())
        }
    }
}
