//! Exact-enough rate conversion by multiply and shift.
//!
//! # How it works
//!
//! Converting `c` cycles of a counter running at `f` Hz to nanoseconds is
//! `c · 10⁹ / f`. A division on every clock read is too slow, so, as Linux's
//! `clocks_calc_mult_shift()` (kernel/time/clocksource.c) does, the ratio
//! `10⁹ / f` is stored once as a binary fraction `mult / 2^shift`:
//!
//! ```text
//!   mult = round(to · 2^shift / from)          computed once, at registration
//!   out  = (c · mult) >> shift                  one 64-bit multiply per read
//! ```
//!
//! `shift` is chosen as large as possible (most precision) while `c · mult`
//! still fits in 64 bits for every `c` up to the longest interval that must
//! convert (`max_secs · from` input units), and `mult` fits in 32 bits.
//!
//! # Error bound
//!
//! Because `mult` is rounded to nearest, `|mult − to·2^shift/from| ≤ 1/2`, so
//! for an input `c` the product before the shift is off by at most `c/2`, and
//! after the shift by at most `c / 2^(shift+1)`; the final truncation adds
//! less than one output unit. Hence, for every `c ≤ max_input()`:
//!
//! ```text
//!   | (c·mult >> shift) − ⌊c·to/from⌋ |  ≤  ⌈c / 2^(shift+1)⌉ + 1
//! ```
//!
//! which is a relative error of at most `1 / (2·mult)` plus one unit. For a
//! 14.318 MHz HPET (`mult` ≈ 2.3·10⁹) that is 0.0002 ppb; for a 10 GHz TSC
//! converted over 600 s (`mult` ≈ 1.7·10⁶, shift 24) about 0.3 ppm.
//! [`MultShift::error_bound`] returns this bound and the tests check it
//! against exact 128-bit arithmetic for rates from 32 kHz to 10 GHz.

use crate::time::{Cycles, Hertz, Nanos, NSEC_PER_SEC};

/// A rate ratio `to/from` stored as `mult / 2^shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultShift {
    mult: u32,
    shift: u32,
}

/// Why a conversion factor could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversionError {
    /// A rate of zero was given.
    ZeroRate,
    /// The ratio `to/from` is not representable with a 32-bit `mult` and a
    /// shift of at most 32: it is 2³² or more, or below 2⁻³³.
    RatioOutOfRange,
}

impl MultShift {
    /// Computes `mult`/`shift` for converting `from`-unit values to `to` units,
    /// exact over inputs of up to `max_secs · from` (Linux's
    /// `clocks_calc_mult_shift(from, to, maxsec)` contract).
    ///
    /// `max_secs` of 0 is treated as 1.
    pub fn new(from: u64, to: u64, max_secs: u64) -> Result<Self, ConversionError> {
        Self::with_rounding(from, to, max_secs, false)
    }

    /// Like [`MultShift::new`], but `mult` is rounded **up**, so that
    /// `((x·mult) + 2^shift − 1) >> shift` ([`MultShift::apply_ceil`]) is never
    /// below the exact `x·to/from`, and exceeds it by less than
    /// `x / 2^shift + 1`. Used where an under-estimate would be wrong:
    /// converting a delay to device cycles must never make an event early.
    pub fn new_rounded_up(from: u64, to: u64, max_secs: u64) -> Result<Self, ConversionError> {
        Self::with_rounding(from, to, max_secs, true)
    }

    fn with_rounding(
        from: u64,
        to: u64,
        max_secs: u64,
        round_up: bool,
    ) -> Result<Self, ConversionError> {
        if from == 0 || to == 0 {
            return Err(ConversionError::ZeroRate);
        }
        let max_secs = max_secs.max(1);
        // How many bits of `mult` we can afford so that the largest input
        // times mult stays below 2^64: largest input is max_secs·from.
        let max_input = (max_secs as u128 * from as u128).min(u64::MAX as u128) as u64;
        let input_bits = 64 - max_input.leading_zeros();
        let mult_bits = 64u32.saturating_sub(input_bits).min(32);
        // Largest shift whose rounded mult still fits in `mult_bits` bits.
        let mut shift = 32u32;
        loop {
            let bias = if round_up {
                from as u128 - 1
            } else {
                from as u128 / 2
            };
            let m = ((to as u128) << shift) + bias;
            let m = m / from as u128;
            let fits = if mult_bits >= 32 {
                m <= u32::MAX as u128
            } else {
                m >> mult_bits == 0
            };
            if fits && m > 0 {
                return Ok(MultShift {
                    mult: m as u32,
                    shift,
                });
            }
            if shift == 0 || m == 0 {
                // Either to/from ≥ 2^32 (no shift makes mult fit) or
                // to/from < 2^-33 (mult rounds to 0 even at shift 32).
                return Err(ConversionError::RatioOutOfRange);
            }
            shift -= 1;
        }
    }

    /// Builds a factor from raw parts (for devices that publish them, like a
    /// paravirtual clock's `tsc_to_system_mul`/`tsc_shift`).
    pub const fn from_parts(mult: u32, shift: u32) -> Self {
        MultShift {
            mult,
            shift: if shift > 63 { 63 } else { shift },
        }
    }

    /// The multiplier.
    pub const fn mult(self) -> u32 {
        self.mult
    }
    /// The shift.
    pub const fn shift(self) -> u32 {
        self.shift
    }

    /// `(x · mult) >> shift` with a 64-bit product.
    ///
    /// Exact to the documented bound for `x ≤ max_input()`; above that the
    /// product is computed in 128 bits and saturates, so the answer is still
    /// right, only slower.
    #[inline(always)]
    pub fn apply(self, x: u64) -> u64 {
        match x.checked_mul(self.mult as u64) {
            Some(p) => p >> self.shift,
            None => self.apply_wide(x),
        }
    }

    /// `⌈x · mult / 2^shift⌉`, saturating. With a factor from
    /// [`MultShift::new_rounded_up`] this never under-estimates `x·to/from`.
    #[inline(always)]
    pub fn apply_ceil(self, x: u64) -> u64 {
        let round = (1u64 << self.shift) - 1;
        match x.checked_mul(self.mult as u64) {
            Some(p) => match p.checked_add(round) {
                Some(p) => p >> self.shift,
                None => self.apply_wide(x).saturating_add(1),
            },
            None => self.apply_wide(x).saturating_add(1),
        }
    }

    /// `(x · mult) >> shift` with a 64-bit product and no overflow check: the
    /// caller guarantees `x ≤ max_input()` (the timekeeper's read path, which
    /// never converts more than max deferment's worth of cycles).
    #[inline(always)]
    pub fn apply_unchecked_range(self, x: u64) -> u64 {
        x.wrapping_mul(self.mult as u64) >> self.shift
    }

    #[cold]
    fn apply_wide(self, x: u64) -> u64 {
        let p = (x as u128 * self.mult as u128) >> self.shift;
        if p > u64::MAX as u128 {
            u64::MAX
        } else {
            p as u64
        }
    }

    /// The largest input whose product with `mult + adj` fits in 64 bits.
    pub const fn max_input_with_adjustment(self, adj: u32) -> u64 {
        match u64::MAX.checked_div(self.mult as u64 + adj as u64) {
            Some(q) => q,
            None => u64::MAX,
        }
    }

    /// The largest input that converts with a 64-bit product.
    pub const fn max_input(self) -> u64 {
        self.max_input_with_adjustment(0)
    }

    /// The documented worst-case absolute error, in output units, of
    /// converting `x` (see the module docs): `⌈x / 2^(shift+1)⌉ + 1`.
    pub const fn error_bound(self, x: u64) -> u64 {
        let s = self.shift + 1;
        let q = if s >= 64 { 0 } else { x >> s };
        let rem = if s >= 64 {
            x != 0
        } else {
            x & ((1u64 << s) - 1) != 0
        };
        q + rem as u64 + 1
    }

    /// The same ratio with `mult` changed by `delta` (for frequency slewing).
    /// Saturates at the ends of the 32-bit range.
    pub const fn with_mult_adjusted(self, delta: i64) -> Self {
        let m = self.mult as i64 + delta;
        let m = if m < 1 {
            1
        } else if m > u32::MAX as i64 {
            u32::MAX
        } else {
            m as u32
        };
        MultShift {
            mult: m,
            shift: self.shift,
        }
    }
}

/// Cycles of a counter → nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesToNs(pub MultShift);

/// Nanoseconds → cycles of a device (for programming event devices).
///
/// Rounds **up**: the cycles returned are never fewer than the exact
/// `ns·freq/10⁹`, so an event programmed with them is never early; they
/// exceed it by at most one cycle plus `ns / 2^shift` (less than one more
/// cycle within the factor's range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsToCycles(pub MultShift);

impl CyclesToNs {
    /// The factor for a counter at `freq`, exact over `max_secs` seconds.
    pub fn new(freq: Hertz, max_secs: u64) -> Result<Self, ConversionError> {
        MultShift::new(freq.get(), NSEC_PER_SEC, max_secs).map(CyclesToNs)
    }
    /// Converts a cycle count.
    #[inline(always)]
    pub fn cycles_to_ns(self, c: Cycles) -> Nanos {
        Nanos::from_nanos(self.0.apply(c.get()))
    }
    /// The most cycles that convert with a 64-bit product.
    pub const fn max_cycles(self) -> Cycles {
        Cycles::new(self.0.max_input())
    }
}

impl NsToCycles {
    /// The factor for a device at `freq`, exact over `max_secs` seconds.
    pub fn new(freq: Hertz, max_secs: u64) -> Result<Self, ConversionError> {
        MultShift::new_rounded_up(NSEC_PER_SEC, freq.get(), max_secs).map(NsToCycles)
    }
    /// Converts a length of time to device cycles, rounded up (never fewer
    /// than exact).
    #[inline(always)]
    pub fn ns_to_cycles(self, ns: Nanos) -> Cycles {
        Cycles::new(self.0.apply_ceil(ns.as_nanos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};
    use std::format;

    #[test]
    fn matches_linux_derived_values() {
        // Linux's `clocks_calc_mult_shift()` (kernel/time/clocksource.c) for
        // an HPET at 14.31818 MHz with a 32-bit mask, converting over the
        // counter's 299 s range: mult 2343484437, shift 25.
        let m = MultShift::new(14_318_180, NSEC_PER_SEC, 0xFFFF_FFFF / 14_318_180).unwrap();
        assert_eq!((m.mult(), m.shift()), (2_343_484_437, 25));
        // A 3 GHz TSC over the 600 s cap → 5592405 / 24.
        let m = MultShift::new(3_000_000_000, NSEC_PER_SEC, 600).unwrap();
        assert_eq!((m.mult(), m.shift()), (5_592_405, 24));
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert_eq!(MultShift::new(0, 1, 1), Err(ConversionError::ZeroRate));
        assert_eq!(
            CyclesToNs::new(Hertz::new(0), 1),
            Err(ConversionError::ZeroRate)
        );
    }

    #[test]
    fn input_beyond_range_still_converts_exactly_in_wide_math() {
        let m = CyclesToNs::new(Hertz::new(1_000_000_000), 1).unwrap();
        let big = Cycles::new(u64::MAX / 2);
        let exact = Hertz::new(1_000_000_000).exact_cycles_to_ns(big).as_nanos();
        let got = m.cycles_to_ns(big).as_nanos();
        assert!(got.abs_diff(exact) <= m.0.error_bound(big.get()));
    }

    /// Property: for any rate from 32 kHz to 10 GHz and any interval up to the
    /// range the factor was computed for, the fast conversion is within the
    /// documented bound of exact 128-bit math — both directions.
    #[test]
    fn conversion_error_within_documented_bound() {
        fn prop(freq_seed: u64, max_secs_seed: u16, frac_seed: u64) -> TestResult {
            let freq = 32_768 + freq_seed % (10_000_000_000 - 32_768 + 1);
            let max_secs = 1 + (max_secs_seed as u64 % 600);
            let hz = Hertz::new(freq);
            let c2n = CyclesToNs::new(hz, max_secs).unwrap();
            let range = (max_secs as u128 * freq as u128).min(c2n.0.max_input() as u128) as u64;
            let c = if range == 0 {
                0
            } else {
                frac_seed % (range + 1)
            };
            let exact = hz.exact_cycles_to_ns(Cycles::new(c)).as_nanos();
            let got = c2n.cycles_to_ns(Cycles::new(c)).as_nanos();
            if got.abs_diff(exact) > c2n.0.error_bound(c) {
                return TestResult::error(format!(
                    "c2n f={freq} c={c} got={got} exact={exact} bound={}",
                    c2n.0.error_bound(c)
                ));
            }
            let n2c = NsToCycles::new(hz, max_secs).unwrap();
            let ns_range = max_secs * NSEC_PER_SEC;
            let ns = frac_seed % (ns_range.min(n2c.0.max_input()) + 1);
            // Exact ⌈ns·f/10⁹⌉; the rounded-up conversion is never below it
            // and above it by at most ⌈ns/2^shift⌉ + 1.
            let exact = ((ns as u128 * freq as u128).div_ceil(NSEC_PER_SEC as u128)) as u64;
            let got = n2c.ns_to_cycles(Nanos::from_nanos(ns)).get();
            let slack = (ns >> n2c.0.shift()) + 2;
            if got < exact || got - exact > slack {
                return TestResult::error(format!(
                    "n2c f={freq} ns={ns} got={got} exact={exact} slack={slack}"
                ));
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(20_000)
            .quickcheck(prop as fn(u64, u16, u64) -> TestResult);
    }

    /// Property: the 64-bit product never overflows within the stated range.
    #[test]
    fn stated_range_never_overflows() {
        fn prop(freq_seed: u64, max_secs_seed: u16) -> bool {
            let freq = 32_768 + freq_seed % (10_000_000_000 - 32_768 + 1);
            let max_secs = 1 + (max_secs_seed as u64 % 600);
            let m = MultShift::new(freq, NSEC_PER_SEC, max_secs).unwrap();
            let top = max_secs as u128 * freq as u128;
            top * m.mult() as u128 <= u64::MAX as u128
        }
        QuickCheck::new()
            .tests(20_000)
            .quickcheck(prop as fn(u64, u16) -> bool);
    }
}
