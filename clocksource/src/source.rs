//! The clock-source contract, and what the core derives from it.

use crate::mult_shift::{ConversionError, CyclesToNs};
use crate::published::InlineRead;
use crate::time::{Cycles, Hertz, Nanos};

bitflags::bitflags! {
    /// What a clock source declares about itself (Linux `CLOCK_SOURCE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ClockSourceFlags: u32 {
        /// The counter runs all the time, also across idle states the tick
        /// layer enters (Linux `CLOCK_SOURCE_IS_CONTINUOUS`).
        const CONTINUOUS = 1 << 0;
        /// Fine and reliable enough to drive high-resolution timers and NO_HZ
        /// (Linux `CLOCK_SOURCE_VALID_FOR_HRES`). Cleared by the watchdog when
        /// the source is found unstable.
        const VALID_FOR_HRES = 1 << 1;
        /// Must be checked against a trusted reference by the watchdog before
        /// and while it is relied upon (Linux `CLOCK_SOURCE_MUST_VERIFY`).
        const MUST_VERIFY = 1 << 2;
        /// Known bad: never selected (Linux `CLOCK_SOURCE_UNSTABLE`). A driver
        /// may declare it; the watchdog sets it.
        const UNSTABLE = 1 << 3;
    }
}

/// A free-running counter.
///
/// # Contract (what an implementation MUST guarantee)
///
/// - [`read`](ClockSource::read) returns the counter's current value, already
///   masked to [`mask`](ClockSource::mask); it never blocks and never fails
///   (a broken device is the watchdog's business, not the reader's).
/// - The counter counts **up** at [`frequency`](ClockSource::frequency) and
///   wraps from `mask` to 0. Between two reads less than one wrap apart,
///   `now.wrapping_delta(before, mask)` is the number of cycles that passed.
/// - On one CPU, successive reads never go backwards except by wrapping.
/// - `frequency`, `mask`, `rating` and `name` are constant for the lifetime
///   of a registration.
///
/// # What the core promises in return
///
/// - It never converts more than [`ClockParams::max_idle`] worth of cycles in
///   one step: the tick layer updates the timekeeper at least that often,
///   even while NO_HZ idle, so a wrap is never missed.
/// - It never calls `read` with a lock held that an interrupt handler of the
///   source would take.
pub trait ClockSource: Sync {
    /// A short, unique name, as used by `clocksource=` on the command line.
    fn name(&self) -> &'static str;
    /// Reads the counter.
    fn read(&self) -> Cycles;
    /// The counter's width as a mask (`2^bits − 1`).
    fn mask(&self) -> Cycles;
    /// The counting rate.
    fn frequency(&self) -> Hertz;
    /// Preference among sources: higher is better (Linux: TSC 300, HPET 250,
    /// ACPI PM 200, PIT 110). Zero means "never select automatically".
    fn rating(&self) -> u16;
    /// What the source declares about itself.
    fn flags(&self) -> ClockSourceFlags;
    /// Whether a reader may read the counter itself instead of calling
    /// [`read`](ClockSource::read) (Linux's `vdso_clock_mode`): only if
    /// what it reads is exactly what `read` returns. Constant, like the
    /// rest. Default: no ([`InlineRead::None`]).
    fn inline_read(&self) -> InlineRead {
        InlineRead::None
    }
}

/// Longest conversion range for counters wider than 32 bits, in seconds
/// (Linux caps `maxsec` at 600 s for them: a wider range costs precision and
/// no tick is ever deferred that long).
pub const WIDE_COUNTER_MAX_SECS: u64 = 600;

/// The slack `mult` may be slewed by, as a fraction: 11 % (Linux
/// `clocksource_max_adjustment`), far beyond any real crystal's error, so
/// frequency adjustment can never overflow the range computed here.
pub const MAX_ADJUST_PERCENT: u64 = 11;

/// What the core derives from a source once, at registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockParams {
    /// Cycles → ns factor.
    pub conv: CyclesToNs,
    /// How far `mult` may be slewed either way (11 % of it).
    pub max_adj: u32,
    /// The most cycles that may be converted in one step: the smaller of the
    /// counter's mask and what `(mult + max_adj)` multiplies without overflow.
    pub max_cycles: Cycles,
    /// Max deferment: the longest the timekeeper may go without an update —
    /// hence the longest the tick may be stopped — with a 50 % safety margin:
    /// `cycles_to_ns(max_cycles, mult − max_adj) / 2`.
    ///
    /// The margin (Linux `clocks_calc_max_nsecs`) covers the interrupt
    /// latency between the programmed wake-up and the timekeeper actually
    /// reading the counter, a slewed `mult`, and a device that fires late; a
    /// 32-bit HPET at 14.318 MHz gets 133.5 s of its 300 s wrap.
    pub max_idle: Nanos,
}

impl ClockParams {
    /// Derives the conversion and the max deferment for `cs`.
    pub fn for_source(cs: &dyn ClockSource) -> Result<Self, ConversionError> {
        Self::new(cs.frequency(), cs.mask())
    }

    /// Derives the conversion and the max deferment for a counter of the
    /// given rate and mask.
    pub fn new(freq: Hertz, mask: Cycles) -> Result<Self, ConversionError> {
        if freq.get() == 0 {
            return Err(ConversionError::ZeroRate);
        }
        let mut secs = mask.get() / freq.get();
        if secs == 0 {
            secs = 1;
        } else if secs > WIDE_COUNTER_MAX_SECS && mask.get() > u32::MAX as u64 {
            secs = WIDE_COUNTER_MAX_SECS;
        }
        let mut conv = CyclesToNs::new(freq, secs)?;
        let mut max_adj = max_adjustment(conv.0.mult());
        // Keep mult ± max_adj inside 32 bits (Linux halves mult and shift
        // until it does).
        while conv.0.mult() as u64 + max_adj as u64 > u32::MAX as u64 && conv.0.shift() > 0 {
            conv = CyclesToNs(crate::MultShift::from_parts(
                conv.0.mult() >> 1,
                conv.0.shift() - 1,
            ));
            max_adj = max_adjustment(conv.0.mult());
        }
        let max_cycles = Cycles::new(conv.0.max_input_with_adjustment(max_adj)).min(mask);
        let slowest = conv.0.with_mult_adjusted(-(max_adj as i64));
        let max_idle = Nanos::from_nanos(slowest.apply(max_cycles.get()) / 2);
        Ok(ClockParams {
            conv,
            max_adj,
            max_cycles,
            max_idle,
        })
    }
}

fn max_adjustment(mult: u32) -> u32 {
    (mult as u64 * MAX_ADJUST_PERCENT / 100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpet_32_bit_max_idle_matches_linux() {
        // Linux prints "clocksource: hpet: mask: 0xffffffff max_cycles:
        // 0xffffffff, max_idle_ns: 133484882848 ns" at boot for a 32-bit
        // HPET at 14.31818 MHz (the line kernel/time/clocksource.c logs as
        // it registers a source): 133.48 s.
        let p = ClockParams::new(Hertz::new(14_318_180), Cycles::mask_of_width(32)).unwrap();
        let s = p.max_idle.as_nanos() as f64 / 1e9;
        assert!((133.0..134.0).contains(&s), "{s}");
        assert_eq!(p.max_cycles, Cycles::mask_of_width(32));
    }

    #[test]
    fn tsc_max_idle_matches_linux() {
        // "max_idle_ns: 440795289890" for a 3 GHz TSC: 440.8 s.
        let p = ClockParams::new(Hertz::new(3_000_000_000), Cycles::mask_of_width(64)).unwrap();
        let s = p.max_idle.as_nanos() as f64 / 1e9;
        assert!((440.0..441.5).contains(&s), "{s}");
    }

    #[test]
    fn acpi_pm_24_bit_max_idle_matches_linux() {
        // "max_idle_ns: 2085701024" for the 24-bit ACPI PM timer.
        let p = ClockParams::new(Hertz::new(3_579_545), Cycles::mask_of_width(24)).unwrap();
        assert_eq!(p.conv.0.mult(), 2_343_484_437);
        assert_eq!(p.conv.0.shift(), 23);
        assert_eq!(p.max_idle.as_nanos(), 2_085_701_024);
    }
}
