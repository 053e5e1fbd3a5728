//! Typed time: instants, durations, counter cycles and frequencies.
//!
//! A time crosses an API of this project typed: an instant is a [`Ktime`]
//! (nanoseconds since boot), a length of time is a [`Nanos`], a counter value
//! or difference is a [`Cycles`], a rate is a [`Hertz`]. Arithmetic on them
//! saturates instead of wrapping, except where a counter is explicitly masked
//! ([`Cycles::wrapping_delta`]), which is how a free-running counter wraps.
//!
//! Bare integers remain where the value is not a time, or is the raw input
//! of a typed one:
//!
//! - the constructors of these types (`Nanos::from_micros(u64)`, …) and the
//!   unit constants ([`NSEC_PER_SEC`]);
//! - the scaled-math primitives ([`crate::mult_shift::MultShift`]: raw
//!   frequencies and a conversion range in whole seconds, as Linux's
//!   `clocks_calc_mult_shift()` takes them);
//! - counts: interrupts, ticks, rounds, reads, and the tick layer's jiffies
//!   (`tick::TickSystem::jiffies`, still a `u64`, not yet a type of its own);
//! - parts per million (`calibrate::ppm_off`), ratings, percentages;
//! - a timer's caller data (`tick::Timer::data`), which is the caller's.
//!
//! Not yet typed, though they should be: the clock a [`Ktime`] is on (raw,
//! boot and monotonic readings share the type) and the tick rate
//! (`tick::TickConfig::hz` is a `u32`, not a [`Hertz`]).

use core::fmt;

/// Nanoseconds in one second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds in one millisecond.
pub const NSEC_PER_MSEC: u64 = 1_000_000;
/// Nanoseconds in one microsecond.
pub const NSEC_PER_USEC: u64 = 1_000;

/// An instant: nanoseconds since boot on the monotonic clock.
///
/// `Ktime::MAX` means "never" (no event pending), as `KTIME_MAX` does in Linux.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ktime(u64);

/// A length of time in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

/// A counter value or a difference of counter values, in the counter's own units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cycles(u64);

/// A frequency in hertz (cycles per second).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hertz(u64);

impl Ktime {
    /// Boot.
    pub const ZERO: Ktime = Ktime(0);
    /// "Never": the instant no event is ever due at.
    pub const MAX: Ktime = Ktime(u64::MAX);

    /// The instant `ns` nanoseconds after boot.
    pub const fn from_nanos(ns: u64) -> Self {
        Ktime(ns)
    }
    /// The instant `ms` milliseconds after boot (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Ktime(ms.saturating_mul(NSEC_PER_MSEC))
    }
    /// The instant `us` microseconds after boot (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Ktime(us.saturating_mul(NSEC_PER_USEC))
    }
    /// The instant `s` seconds after boot (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Ktime(s.saturating_mul(NSEC_PER_SEC))
    }
    /// Nanoseconds since boot.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Whether this is [`Ktime::MAX`] ("never").
    pub const fn is_never(self) -> bool {
        self.0 == u64::MAX
    }
    /// `self + d`, saturating at [`Ktime::MAX`].
    pub const fn saturating_add(self, d: Nanos) -> Ktime {
        Ktime(self.0.saturating_add(d.0))
    }
    /// `self - d`, saturating at [`Ktime::ZERO`].
    pub const fn saturating_sub(self, d: Nanos) -> Ktime {
        Ktime(self.0.saturating_sub(d.0))
    }
    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Ktime) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub const fn checked_since(self, earlier: Ktime) -> Option<Nanos> {
        match self.0.checked_sub(earlier.0) {
            Some(d) => Some(Nanos(d)),
            None => None,
        }
    }
}

impl Nanos {
    /// Zero length.
    pub const ZERO: Nanos = Nanos(0);
    /// The longest representable length.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// `ns` nanoseconds.
    pub const fn from_nanos(ns: u64) -> Self {
        Nanos(ns)
    }
    /// `us` microseconds (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Nanos(us.saturating_mul(NSEC_PER_USEC))
    }
    /// `ms` milliseconds (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Nanos(ms.saturating_mul(NSEC_PER_MSEC))
    }
    /// `s` seconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Nanos(s.saturating_mul(NSEC_PER_SEC))
    }
    /// The length in nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// `self + o`, saturating.
    pub const fn saturating_add(self, o: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(o.0))
    }
    /// `self - o`, saturating at zero.
    pub const fn saturating_sub(self, o: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(o.0))
    }
    /// `self * k`, saturating.
    pub const fn saturating_mul(self, k: u64) -> Nanos {
        Nanos(self.0.saturating_mul(k))
    }
    /// The smaller of two lengths.
    pub const fn min(self, o: Nanos) -> Nanos {
        if self.0 < o.0 {
            self
        } else {
            o
        }
    }
}

impl Cycles {
    /// No cycles.
    pub const ZERO: Cycles = Cycles(0);

    /// `n` cycles.
    pub const fn new(n: u64) -> Self {
        Cycles(n)
    }
    /// The raw count.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The mask of an `bits`-wide counter (`bits` in 1..=64; 0 is treated as 64).
    pub const fn mask_of_width(bits: u32) -> Cycles {
        if bits == 0 || bits >= 64 {
            Cycles(u64::MAX)
        } else {
            Cycles((1u64 << bits) - 1)
        }
    }
    /// `(self - earlier) & mask`: how far a free-running counter that wraps at
    /// `mask` moved from `earlier` to `self`.
    ///
    /// Correct as long as fewer than `mask + 1` cycles passed; that is what the
    /// clocksource's max deferment guarantees.
    pub const fn wrapping_delta(self, earlier: Cycles, mask: Cycles) -> Cycles {
        Cycles(self.0.wrapping_sub(earlier.0) & mask.0)
    }
    /// `(self + d) & mask`.
    pub const fn wrapping_add(self, d: Cycles, mask: Cycles) -> Cycles {
        Cycles(self.0.wrapping_add(d.0) & mask.0)
    }
    /// `self + o`, saturating.
    pub const fn saturating_add(self, o: Cycles) -> Cycles {
        Cycles(self.0.saturating_add(o.0))
    }
    /// `self - o`, saturating at zero.
    pub const fn saturating_sub(self, o: Cycles) -> Cycles {
        Cycles(self.0.saturating_sub(o.0))
    }
    /// The smaller of two counts.
    pub const fn min(self, o: Cycles) -> Cycles {
        if self.0 < o.0 {
            self
        } else {
            o
        }
    }
    /// The larger of two counts.
    pub const fn max(self, o: Cycles) -> Cycles {
        if self.0 > o.0 {
            self
        } else {
            o
        }
    }
}

impl Hertz {
    /// `hz` hertz.
    pub const fn new(hz: u64) -> Self {
        Hertz(hz)
    }
    /// `khz` kilohertz (saturating).
    pub const fn from_khz(khz: u64) -> Self {
        Hertz(khz.saturating_mul(1_000))
    }
    /// `mhz` megahertz (saturating).
    pub const fn from_mhz(mhz: u64) -> Self {
        Hertz(mhz.saturating_mul(1_000_000))
    }
    /// The rate in hertz.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The rate of a counter with period `fs` femtoseconds (as the HPET
    /// capabilities register states it), rounded to nearest. `None` for 0.
    pub const fn from_period_fs(fs: u64) -> Option<Hertz> {
        if fs == 0 {
            return None;
        }
        const FS_PER_SEC: u64 = 1_000_000_000_000_000;
        Some(Hertz((FS_PER_SEC + fs / 2) / fs))
    }
    /// Exact `cycles * 10^9 / self`, rounded down, in 128-bit arithmetic.
    ///
    /// The reference the fast mult/shift conversion is tested against; too slow
    /// (a 128-bit division) for the read path. Zero frequency gives `Nanos::MAX`.
    pub fn exact_cycles_to_ns(self, cycles: Cycles) -> Nanos {
        if self.0 == 0 {
            return Nanos::MAX;
        }
        let ns = (cycles.0 as u128 * NSEC_PER_SEC as u128) / self.0 as u128;
        Nanos(if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        })
    }
    /// Exact `ns * self / 10^9`, rounded down, in 128-bit arithmetic.
    pub fn exact_ns_to_cycles(self, ns: Nanos) -> Cycles {
        let c = (ns.0 as u128 * self.0 as u128) / NSEC_PER_SEC as u128;
        Cycles(if c > u64::MAX as u128 {
            u64::MAX
        } else {
            c as u64
        })
    }
}

macro_rules! debug_with_unit {
    ($t:ty, $unit:literal) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!("{}", $unit), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!("{}", $unit), self.0)
            }
        }
    };
}
debug_with_unit!(Nanos, "ns");
debug_with_unit!(Cycles, "cyc");
debug_with_unit!(Hertz, "Hz");

impl fmt::Debug for Ktime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            return f.write_str("never");
        }
        write!(f, "{}.{:09}s", self.0 / NSEC_PER_SEC, self.0 % NSEC_PER_SEC)
    }
}
impl fmt::Display for Ktime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_delta_crosses_a_32_bit_wrap() {
        let mask = Cycles::mask_of_width(32);
        let before = Cycles::new(0xFFFF_FFF0);
        let after = Cycles::new(0x10);
        assert_eq!(after.wrapping_delta(before, mask), Cycles::new(0x20));
    }

    #[test]
    fn hpet_period_gives_its_frequency() {
        // QEMU's HPET: 10 ns period → 100 MHz; a 14.318 MHz part: 69841279 fs.
        assert_eq!(
            Hertz::from_period_fs(10_000_000),
            Some(Hertz::new(100_000_000))
        );
        assert_eq!(
            Hertz::from_period_fs(69_841_279),
            Some(Hertz::new(14_318_180))
        );
        assert_eq!(Hertz::from_period_fs(0), None);
    }

    #[test]
    fn ktime_arithmetic_saturates() {
        assert_eq!(Ktime::MAX.saturating_add(Nanos::from_secs(1)), Ktime::MAX);
        assert_eq!(Ktime::ZERO.saturating_sub(Nanos::from_secs(1)), Ktime::ZERO);
        assert_eq!(Ktime::from_secs(1).checked_since(Ktime::from_secs(2)), None);
    }
}
