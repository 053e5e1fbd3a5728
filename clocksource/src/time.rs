//! Typed time: instants, durations, counter cycles and frequencies.
//!
//! A time crosses an API of this project typed: an instant is an
//! [`Instant`] of its clock ([`Ktime`] for the monotonic clock timers run on,
//! [`RawTime`], [`BootTime`], [`WallTime`]), a length of time is a [`Nanos`], a counter value
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
//! - counts: interrupts, ticks, rounds, reads (jiffies, the tick layer's
//!   count of tick periods, are their own `tick::Jiffies`; a tally of them,
//!   as `tick::CpuInfo::idle_jiffies`, is a count);
//! - parts per million (`calibrate::ppm_off`), ratings, percentages;
//! - a timer's caller data (`tick::Timer::data`), which is the caller's;
//! - the simulator's test profiles (`sim::conformance::Profile`), tables of
//!   documented figures written as literals: `hz` there is the `u32` a
//!   profile states, turned into a [`Hertz`] where it meets the tick layer.

use core::fmt;
use core::marker::PhantomData;

/// Nanoseconds in one second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds in one millisecond.
pub const NSEC_PER_MSEC: u64 = 1_000_000;
/// Nanoseconds in one microsecond.
pub const NSEC_PER_USEC: u64 = 1_000;

/// Which clock an [`Instant`] is on. Each clock is its own type, so an
/// instant of one cannot be compared with, or subtracted from, an instant of
/// another (Linux's Rust bindings do the same: `kernel::time::Instant<C>`).
///
/// The clocks are those of Linux's timekeeping (`CLOCK_MONOTONIC`,
/// `CLOCK_MONOTONIC_RAW`, `CLOCK_BOOTTIME`, `CLOCK_REALTIME`); the set is
/// closed: only this module implements the trait.
pub trait Clock:
    Copy + Eq + Ord + core::hash::Hash + Default + fmt::Debug + private::Sealed + 'static
{
    /// The clock's name, as `Debug` of its instants shows it (empty for the
    /// monotonic clock, whose instants are the project's [`Ktime`]).
    const NAME: &'static str;
}

mod private {
    pub trait Sealed {}
}

macro_rules! clock {
    ($(#[$doc:meta])* $t:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $t;
        impl private::Sealed for $t {}
        impl Clock for $t {
            const NAME: &'static str = $name;
        }
    };
}

clock!(
    /// Time since boot, slewed by frequency adjustment, not counting suspend
    /// (Linux `CLOCK_MONOTONIC`). Timers and the tick run on it.
    Monotonic,
    ""
);
clock!(
    /// Time since boot at the clocksource's nominal rate, unaffected by
    /// frequency adjustment (Linux `CLOCK_MONOTONIC_RAW`).
    Raw,
    "raw"
);
clock!(
    /// Monotonic plus the time spent suspended (Linux `CLOCK_BOOTTIME`).
    Boot,
    "boot"
);
clock!(
    /// Wall-clock time since the Unix epoch, 1970-01-01 00:00:00 UTC
    /// (Linux `CLOCK_REALTIME`). It may be set, so it may step back.
    Realtime,
    "realtime"
);

/// An instant on clock `C`: nanoseconds since that clock's origin (boot for
/// all but [`Realtime`], whose origin is the Unix epoch).
///
/// `Instant::MAX` means "never" (no event pending), as `KTIME_MAX` does in
/// Linux. Instants of different clocks are different types:
///
/// ```compile_fail
/// use clocksource::{Instant, Ktime, Raw};
/// let raw: Instant<Raw> = Instant::from_nanos(5);
/// let mono: Ktime = Ktime::from_nanos(5);
/// let _ = raw < mono; // a raw reading is not a monotonic one
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant<C: Clock> {
    ns: u64,
    clock: PhantomData<C>,
}

/// An instant of the monotonic clock, the time timers, the tick and every
/// event device work in (Linux `ktime_t`).
pub type Ktime = Instant<Monotonic>;
/// An instant of the raw clock ([`Raw`]).
pub type RawTime = Instant<Raw>;
/// An instant of the boot clock ([`Boot`]).
pub type BootTime = Instant<Boot>;
/// An instant of wall-clock time ([`Realtime`]).
pub type WallTime = Instant<Realtime>;

/// A length of time in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

/// A counter value or a difference of counter values, in the counter's own units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cycles(u64);

/// A frequency in hertz (cycles per second).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hertz(u64);

impl<C: Clock> Instant<C> {
    /// The clock's origin: boot, or the epoch for [`Realtime`].
    pub const ZERO: Self = Self::from_nanos(0);
    /// "Never": the instant no event is ever due at.
    pub const MAX: Self = Self::from_nanos(u64::MAX);

    /// The instant `ns` nanoseconds after the origin.
    pub const fn from_nanos(ns: u64) -> Self {
        Instant {
            ns,
            clock: PhantomData,
        }
    }
    /// The instant `ms` milliseconds after the origin (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self::from_nanos(ms.saturating_mul(NSEC_PER_MSEC))
    }
    /// The instant `us` microseconds after the origin (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Self::from_nanos(us.saturating_mul(NSEC_PER_USEC))
    }
    /// The instant `s` seconds after the origin (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Self::from_nanos(s.saturating_mul(NSEC_PER_SEC))
    }
    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.ns
    }
    /// Whether this is [`Self::MAX`] ("never").
    pub const fn is_never(self) -> bool {
        self.ns == u64::MAX
    }
    /// `self + d`, saturating at [`Self::MAX`].
    pub const fn saturating_add(self, d: Nanos) -> Self {
        Self::from_nanos(self.ns.saturating_add(d.0))
    }
    /// `self - d`, saturating at [`Self::ZERO`].
    pub const fn saturating_sub(self, d: Nanos) -> Self {
        Self::from_nanos(self.ns.saturating_sub(d.0))
    }
    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Self) -> Nanos {
        Nanos(self.ns.saturating_sub(earlier.ns))
    }
    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub const fn checked_since(self, earlier: Self) -> Option<Nanos> {
        match self.ns.checked_sub(earlier.ns) {
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

/// `1.500000000s` for the monotonic clock, `1.500000000s raw` for the
/// others (the clock named), `never` for [`Instant::MAX`].
impl<C: Clock> fmt::Debug for Instant<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            return f.write_str("never");
        }
        write!(
            f,
            "{}.{:09}s",
            self.ns / NSEC_PER_SEC,
            self.ns % NSEC_PER_SEC
        )?;
        if !C::NAME.is_empty() {
            write!(f, " {}", C::NAME)?;
        }
        Ok(())
    }
}
impl<C: Clock> fmt::Display for Instant<C> {
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

    #[test]
    fn each_clock_names_itself_in_debug_and_never_is_never() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{:?}", Ktime::from_millis(1_500)), "1.500000000s");
        assert_eq!(
            format!("{:?}", RawTime::from_millis(1_500)),
            "1.500000000s raw"
        );
        assert_eq!(format!("{}", BootTime::from_secs(2)), "2.000000000s boot");
        assert_eq!(format!("{:?}", WallTime::MAX), "never");
    }
}
