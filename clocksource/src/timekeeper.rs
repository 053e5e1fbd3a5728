//! The clocks built on the selected clock source: monotonic, raw, boot and
//! realtime (Linux `kernel/time/timekeeping.c`, `tk_core.timekeeper`).
//!
//! # How it works
//!
//! The timekeeper remembers the counter value at its last update
//! (`cycle_last`) and, per clock, the time at that instant: whole nanoseconds
//! (`base`) plus the sub-nanosecond remainder kept in shifted units (`frac`,
//! Linux's `xtime_nsec`). A read converts only the cycles since then:
//!
//! ```text
//!   counter ──┬──────────────────────────┬──────────────► cycles
//!         cycle_last                    now
//!             │◄── delta = (now − cycle_last) & mask ──►│
//!
//!   clock(now) = base + ((delta · mult + frac) >> shift)
//!                 ▲         ▲                     ▲
//!                 │         └ ≤ max_cycles: one   └ 2^shift = one ns
//!                 │           64×32-bit product
//!                 └ advanced by update(): base += (delta·mult + frac) >> shift,
//!                   frac = (delta·mult + frac) mod 2^shift, cycle_last = now
//! ```
//!
//! Because `frac` carries what the shift would drop, N updates add up to
//! exactly `(Σ delta · mult) >> shift`: the same as converting the total in
//! one step, so frequent ticks never lose time (tested).
//!
//! - **raw** uses the source's nominal `mult`, never adjusted (Linux
//!   `CLOCK_MONOTONIC_RAW`).
//! - **monotonic** uses `mult` slewed by [`Timekeeper::adjust_frequency`]
//!   (NTP's frequency correction, at most ±[`MAX_FREQ_ADJ_PPB`]). A change of
//!   `mult` is applied only after accumulating with the old one, so it bends
//!   the clock's rate and never makes it jump.
//! - **boot** is monotonic plus all the time injected as slept
//!   ([`Timekeeper::inject_sleep`]); monotonic does not count suspend.
//! - **realtime** is ns since the Unix epoch: monotonic plus an offset that
//!   [`Timekeeper::set_realtime`] sets and a suspend advances.
//!
//! # Why monotonic and raw never go backwards
//!
//! - Between updates a read is `base + f(delta)` with `f` non-decreasing
//!   and `delta` growing with the counter; an update moves exactly that
//!   amount into `base`.
//! - A read never converts more than `max_cycles` (the product would
//!   overflow). If more passed — the tick was later than
//!   [`Timekeeper::max_deferment`], breaking the tick layer's contract —
//!   reads clamp to `max_cycles` (logged once): time then *lags* until the
//!   next [`update`](Timekeeper::update), which accumulates the full delta
//!   and catches up. It never jumps back. (A counter whose mask limits
//!   `max_cycles` and that wrapped in the meantime has lost those wraps; no
//!   one can see them.)
//! - A counter read *behind* `cycle_last` (e.g. a TSC a few cycles behind on
//!   another CPU) makes `delta` huge after masking. As Linux does
//!   (`clocksource_delta`, `max_raw_delta`), a delta of 7/8 of the mask or
//!   more is taken as backward motion and read as zero.
//! - Switching sources ([`Timekeeper::change_clocksource`]) first accumulates
//!   with the old source up to now, then continues from the new source's
//!   current count: the clocks are continuous across the switch.
//! - Taking out an error a reference measured ([`Timekeeper::correct`], after
//!   the watchdog found the source unstable) steps the clocks forward if they
//!   were behind; if they were ahead it lowers `base` by the error and sets
//!   a *floor*, the value shown at that moment: a read is
//!   `max(floor, base + f(delta))`, so the clocks hold until true time has
//!   caught up and then run on from it, never stepping back.
//!
//! The timekeeper is a plain value: it does no locking. The tick layer
//! serializes updates and makes reads consistent. For reads that take no
//! lock, the timekeeper publishes its monotonic read base after every
//! change to a [`PublishedClock`] ([`Timekeeper::publish_to`]), a latch
//! any CPU or context reads (Linux's `tk_fast`, and the vDSO's inline TSC
//! read: [`crate::published`]).

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::mult_shift::{ConversionError, MultShift};
use crate::published::{InlineRead, PublishedClock, ReadSnapshot};
use crate::source::{ClockParams, ClockSource};
use crate::time::{BootTime, Cycles, Ktime, Nanos, RawTime, WallTime, NSEC_PER_SEC};

/// The largest frequency adjustment [`Timekeeper::adjust_frequency`] accepts,
/// either way: 500 ppm, in parts per billion.
///
/// This is Linux's `MAXFREQ` (500 ppm, `include/linux/timex.h`): NTP never
/// needs more for a working crystal, and the kselftest `valid-adjtimex`
/// checks that ±550 ppm is refused.
pub const MAX_FREQ_ADJ_PPB: i64 = 500_000;

/// Why a frequency adjustment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustError {
    /// `ppb` is beyond ±[`MAX_FREQ_ADJ_PPB`]; the clock was left unchanged.
    OutOfRange {
        /// The refused adjustment, in parts per billion.
        ppb: i64,
    },
}

/// How far the clocks are from true time, as a trusted reference measured
/// it (the clocksource watchdog's [`Skew::clock_error`]); what
/// [`Timekeeper::correct`] takes out.
///
/// [`Skew::clock_error`]: crate::watchdog::Skew::clock_error
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The clocks show this much less than true time (their source ran
    /// slow).
    Behind(Nanos),
    /// The clocks show this much more than true time (their source ran
    /// fast).
    Ahead(Nanos),
}

/// One clock's read base: the time at `cycle_last` and the factor to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReadBase {
    /// Whole nanoseconds at `cycle_last`.
    base_ns: u64,
    /// The sub-nanosecond remainder at `cycle_last`, in units of 2^-shift ns;
    /// always below `1 << shift`.
    frac: u64,
    mult: u32,
    shift: u32,
    /// The clock reads at least this: what it showed when a correction
    /// found it ahead ([`Timekeeper::correct`]); 0 otherwise.
    floor_ns: u64,
}

impl ReadBase {
    fn new(m: MultShift) -> Self {
        ReadBase {
            base_ns: 0,
            frac: 0,
            mult: m.mult(),
            shift: m.shift(),
            floor_ns: 0,
        }
    }

    /// `delta · mult + frac`, in 128 bits: cannot overflow for any `delta`.
    #[inline(always)]
    fn shifted(&self, delta: Cycles) -> u128 {
        delta.get() as u128 * self.mult as u128 + self.frac as u128
    }

    /// The clock `delta` cycles after `cycle_last` (never below the floor).
    #[inline(always)]
    fn at(&self, delta: Cycles) -> u64 {
        self.base_ns
            .saturating_add(saturate_u64(self.shifted(delta) >> self.shift))
            .max(self.floor_ns)
    }

    /// Takes out `d` ns the clock shows too much, without a step back: it
    /// holds at what it shows now (at `cycle_last`, just updated) until `d`
    /// more has passed.
    fn hold(&mut self, d: u64) {
        self.floor_ns = self.at(Cycles::ZERO);
        self.base_ns = self.base_ns.saturating_sub(d);
    }

    /// Moves `delta` cycles into the base, keeping the remainder.
    fn accumulate(&mut self, delta: Cycles) {
        let s = self.shifted(delta);
        self.base_ns = self.base_ns.saturating_add(saturate_u64(s >> self.shift));
        self.frac = (s & ((1u128 << self.shift) - 1)) as u64;
    }

    /// Continues with another factor; the remainder is rescaled to the new
    /// shift (rounded down, so the clock cannot step forward either).
    fn set_factor(&mut self, m: MultShift) {
        self.frac = (((self.frac as u128) << m.shift()) >> self.shift) as u64;
        self.mult = m.mult();
        self.shift = m.shift();
    }
}

#[inline(always)]
fn saturate_u64(x: u128) -> u64 {
    if x > u64::MAX as u128 {
        u64::MAX
    } else {
        x as u64
    }
}

/// `conv` with `mult` slewed by `ppb` parts per billion, rounded to nearest.
fn adjusted(conv: MultShift, ppb: i64) -> MultShift {
    let num = conv.mult() as i128 * ppb as i128;
    let half = NSEC_PER_SEC as i128 / 2;
    let delta = if num >= 0 {
        (num + half) / NSEC_PER_SEC as i128
    } else {
        (num - half) / NSEC_PER_SEC as i128
    };
    // |delta| ≤ mult · 5·10⁻⁴, far inside the 11 % `max_adj` that
    // `ClockParams` sized `max_cycles` for.
    conv.with_mult_adjusted(delta as i64)
}

/// Linux `max_raw_delta`: a masked delta this large is a counter read behind
/// `cycle_last`, not time passing.
const fn max_raw_delta(mask: Cycles) -> Cycles {
    let m = mask.get();
    Cycles::new((m >> 1) + (m >> 2) + (m >> 3))
}

/// Monotonic, raw, boot and realtime clocks over one [`ClockSource`],
/// advanced by the tick (see the [module docs](self)).
///
/// # Contract
///
/// The caller MUST call [`update`](Self::update) at least once every
/// [`max_deferment`](Self::max_deferment) — also while NO_HZ idle — and
/// serialize updates against reads. In return monotonic, raw and boot never
/// go backwards, also across [`change_clocksource`](Self::change_clocksource),
/// [`adjust_frequency`](Self::adjust_frequency) and
/// [`correct`](Self::correct).
pub struct Timekeeper<'a> {
    cs: &'a dyn ClockSource,
    params: ClockParams,
    mask: Cycles,
    max_raw_delta: Cycles,
    cycle_last: Cycles,
    mono: ReadBase,
    raw: ReadBase,
    freq_ppb: i64,
    slept: Nanos,
    /// Realtime was `real_at` when monotonic was `real_mono_at`.
    real_at: WallTime,
    real_mono_at: Ktime,
    warned_late: AtomicBool,
    /// Where the monotonic read base goes after every change, if anywhere.
    published: Option<&'a PublishedClock>,
}

impl<'a> Timekeeper<'a> {
    /// Starts the clocks at [`Ktime::ZERO`] (realtime at the epoch) on `cs`,
    /// from its current count.
    pub fn new(cs: &'a dyn ClockSource) -> Result<Self, ConversionError> {
        let params = ClockParams::for_source(cs)?;
        Ok(Self::with_params(cs, params))
    }

    /// [`new`](Self::new) with parameters already derived for `cs` (as the
    /// registry holds them).
    pub(crate) fn with_params(cs: &'a dyn ClockSource, params: ClockParams) -> Self {
        let mask = cs.mask();
        Timekeeper {
            cs,
            params,
            mask,
            max_raw_delta: max_raw_delta(mask),
            cycle_last: cs.read(),
            mono: ReadBase::new(params.conv.0),
            raw: ReadBase::new(params.conv.0),
            freq_ppb: 0,
            slept: Nanos::ZERO,
            real_at: WallTime::ZERO,
            real_mono_at: Ktime::ZERO,
            warned_late: AtomicBool::new(false),
            published: None,
        }
    }

    /// From now on, publishes the monotonic read base to `to` after every
    /// change (and once now), for reads that take no lock
    /// ([`PublishedClock::monotonic_inline`]; see [`crate::published`]). One
    /// timekeeper per `PublishedClock`: two publishing to one would
    /// interleave their bases.
    pub fn publish_to(&mut self, to: &'a PublishedClock) {
        self.published = Some(to);
        self.publish();
    }

    /// The monotonic read base as published.
    fn snapshot(&self) -> ReadSnapshot {
        ReadSnapshot {
            cycle_last: self.cycle_last,
            mask: self.mask,
            max_cycles: self.params.max_cycles,
            max_raw_delta: self.max_raw_delta,
            base_ns: self.mono.base_ns,
            frac: self.mono.frac,
            mult: self.mono.mult,
            shift: self.mono.shift,
            floor_ns: self.mono.floor_ns,
            // InlineRead::Tsc is a 64-bit counter; a source claiming it
            // with a narrower mask is read by call (its mask applies).
            inline: match self.cs.inline_read() {
                InlineRead::Tsc if self.mask == Cycles::mask_of_width(64) => InlineRead::Tsc,
                _ => InlineRead::None,
            },
            source: crate::published::source_key(self.cs),
        }
    }

    /// Publishes the monotonic read base, if [`publish_to`](Self::publish_to)
    /// named a place.
    fn publish(&self) {
        if let Some(p) = self.published {
            p.publish(&self.snapshot());
        }
    }

    /// The source the clocks run on.
    pub fn clocksource(&self) -> &'a dyn ClockSource {
        self.cs
    }

    /// The parameters derived from the current source.
    pub fn params(&self) -> &ClockParams {
        &self.params
    }

    /// The longest the caller may go between [`update`](Self::update)s (the
    /// source's `max_idle`, which keeps a 50 % margin).
    pub fn max_deferment(&self) -> Nanos {
        self.params.max_idle
    }

    /// The frequency adjustment in force, in parts per billion.
    pub fn frequency_adjustment(&self) -> i64 {
        self.freq_ppb
    }

    /// Converts cycles of the current source at its nominal rate (the raw
    /// clock's factor).
    pub fn cycles_to_ns(&self, c: Cycles) -> Nanos {
        self.params.conv.cycles_to_ns(c)
    }

    /// Cycles since `cycle_last` for a read: zero on backward motion, at
    /// most `max_cycles` (see the module docs).
    #[inline(always)]
    fn read_delta(&self) -> Cycles {
        self.delta_of(self.cs.read())
    }

    /// The checked delta of a counter value read now.
    #[inline(always)]
    fn delta_of(&self, now: Cycles) -> Cycles {
        let d = now.wrapping_delta(self.cycle_last, self.mask);
        if d > self.params.max_cycles || d >= self.max_raw_delta {
            return self.clamp_slow(d);
        }
        d
    }

    #[cold]
    fn clamp_slow(&self, d: Cycles) -> Cycles {
        if d >= self.max_raw_delta {
            return Cycles::ZERO;
        }
        self.warn_late(d);
        self.params.max_cycles
    }

    fn warn_late(&self, d: Cycles) {
        if !self.warned_late.swap(true, Ordering::Relaxed) {
            log::warn!(
                "timekeeping: {} cycles on {} since the last update exceed max_cycles {} \
                 (update later than max deferment {}); reads lag until the next update",
                d,
                self.cs.name(),
                self.params.max_cycles,
                self.params.max_idle
            );
        }
    }

    /// Accumulates the cycles since the last update into every clock's base.
    ///
    /// Called from the tick, at least every [`max_deferment`](Self::max_deferment).
    /// A late call still accumulates everything the counter shows (so a
    /// 64-bit counter catches up), logging once; a counter read behind the
    /// last update accumulates nothing until it has caught up.
    pub fn update(&mut self) {
        let now = self.cs.read();
        let d = now.wrapping_delta(self.cycle_last, self.mask);
        if d >= self.max_raw_delta {
            return;
        }
        if d > self.params.max_cycles {
            self.warn_late(d);
        }
        self.mono.accumulate(d);
        self.raw.accumulate(d);
        self.cycle_last = now;
        self.publish();
    }

    /// The monotonic clock: time since creation, slewed by the frequency
    /// adjustment, not counting suspend.
    #[inline]
    pub fn monotonic(&self) -> Ktime {
        Ktime::from_nanos(self.mono.at(self.read_delta()))
    }

    /// The monotonic clock at `counter`, a value of the current clocksource
    /// the caller has just read itself — the vDSO's way (Linux reads the TSC
    /// inline in `__arch_get_hw_counter` and applies the published
    /// mult/shift): a caller that knows the source's type avoids the
    /// indirect call of [`monotonic`](Self::monotonic), which costs as much
    /// as the rest of the read under a binary translator. The same checks
    /// apply (a value behind `cycle_last` gives the last update's time).
    #[inline]
    pub fn monotonic_at(&self, counter: Cycles) -> Ktime {
        Ktime::from_nanos(self.mono.at(self.delta_of(counter)))
    }

    /// The raw clock: like [`monotonic`](Self::monotonic) but at the source's
    /// nominal rate, unaffected by frequency adjustment.
    #[inline]
    pub fn raw(&self) -> RawTime {
        RawTime::from_nanos(self.raw.at(self.read_delta()))
    }

    /// The boot clock: monotonic plus all the time injected as slept.
    pub fn boot(&self) -> BootTime {
        BootTime::from_nanos(self.monotonic().saturating_add(self.slept).as_nanos())
    }

    /// Wall-clock time: nanoseconds since the Unix epoch (monotonic plus the
    /// offset [`set_realtime`](Self::set_realtime) established; the epoch
    /// itself until then).
    pub fn realtime(&self) -> WallTime {
        let mono = self.monotonic();
        self.real_at
            .saturating_add(mono.saturating_since(self.real_mono_at))
    }

    /// Sets wall-clock time to `now` (ns since the Unix epoch). Only the
    /// offset changes: monotonic, raw and boot are untouched.
    pub fn set_realtime(&mut self, now: WallTime) {
        self.real_mono_at = self.monotonic();
        self.real_at = now;
    }

    /// Records that the system was suspended for `slept`: boot and realtime
    /// advance by it, monotonic and raw do not (Linux
    /// `__timekeeping_inject_sleeptime`).
    pub fn inject_sleep(&mut self, slept: Nanos) {
        self.slept = self.slept.saturating_add(slept);
        self.real_at = self.real_at.saturating_add(slept);
    }

    /// Slews the monotonic clock by `ppb` parts per billion of the nominal
    /// rate (positive: faster), replacing any earlier adjustment. Raw is not
    /// affected.
    ///
    /// The cycles up to now are accumulated with the old rate first, so the
    /// change applies only to the future: no jump. The resolution is one
    /// unit of `mult` (`10⁹ / mult` ppb, e.g. 0.06 ppm for a 3 GHz TSC).
    ///
    /// # Errors
    ///
    /// [`AdjustError::OutOfRange`] if `|ppb| > MAX_FREQ_ADJ_PPB` (500 ppm);
    /// the clock is then unchanged.
    pub fn adjust_frequency(&mut self, ppb: i64) -> Result<(), AdjustError> {
        if ppb.unsigned_abs() > MAX_FREQ_ADJ_PPB as u64 {
            return Err(AdjustError::OutOfRange { ppb });
        }
        self.update();
        self.freq_ppb = ppb;
        self.mono.set_factor(adjusted(self.params.conv.0, ppb));
        self.publish();
        Ok(())
    }

    /// Takes out of the clocks an error their source ran up, as a trusted
    /// reference measured it (the watchdog's verdict on a source found
    /// unstable: [`Registry::reselect_after_check`] calls this once the
    /// clocks run on another source). Never backwards:
    ///
    /// - [`ClockError::Behind`]: monotonic, raw, boot and realtime step
    ///   forward by the error at once (monotonic by the error at its
    ///   adjusted rate, `d · (1 + ppb/10⁹)`, since it would have run that
    ///   much faster over the interval).
    /// - [`ClockError::Ahead`]: they hold at what they show now until true
    ///   time has caught up — the error's length — then run on from true
    ///   time. Holding is the shortest way back that never goes backwards;
    ///   a slew at the 500 ppm of [`MAX_FREQ_ADJ_PPB`] would keep the clocks
    ///   wrong 2000 times longer (4 s for 2 ms). Timers due meanwhile wait
    ///   for the clock to reach them.
    ///
    /// The read path gains one `max` for it (see the module docs).
    ///
    /// [`Registry::reselect_after_check`]: crate::Registry::reselect_after_check
    pub fn correct(&mut self, error: ClockError) {
        self.update();
        let (ClockError::Behind(d) | ClockError::Ahead(d)) = error;
        let raw = d.as_nanos();
        let scaled = raw as i128 + raw as i128 * self.freq_ppb as i128 / NSEC_PER_SEC as i128;
        let mono = scaled.clamp(0, u64::MAX as i128) as u64;
        match error {
            ClockError::Behind(_) => {
                self.mono.base_ns = self.mono.base_ns.saturating_add(mono);
                self.raw.base_ns = self.raw.base_ns.saturating_add(raw);
            }
            ClockError::Ahead(_) => {
                self.mono.hold(mono);
                self.raw.hold(raw);
            }
        }
        self.publish();
        log::warn!("timekeeping: clocks corrected by {error:?} as measured against a reference");
    }

    /// Moves the clocks onto `new`: accumulates with the old source up to
    /// now, then continues from `new`'s current count. Monotonic, raw and
    /// boot continue without a step back; the frequency adjustment is kept.
    ///
    /// # Errors
    ///
    /// The [`ConversionError`] if `new`'s parameters cannot be derived; the
    /// timekeeper then stays on the old source, unchanged.
    pub fn change_clocksource(&mut self, new: &'a dyn ClockSource) -> Result<(), ConversionError> {
        let params = ClockParams::for_source(new)?;
        self.change_clocksource_with_params(new, params);
        Ok(())
    }

    /// [`change_clocksource`](Self::change_clocksource) with `new`'s
    /// parameters already derived.
    pub(crate) fn change_clocksource_with_params(
        &mut self,
        new: &'a dyn ClockSource,
        params: ClockParams,
    ) {
        self.update();
        self.cs = new;
        self.params = params;
        self.mask = new.mask();
        self.max_raw_delta = max_raw_delta(self.mask);
        self.raw.set_factor(params.conv.0);
        self.mono.set_factor(adjusted(params.conv.0, self.freq_ppb));
        self.warned_late.store(false, Ordering::Relaxed);
        self.cycle_last = new.read();
        self.publish();
    }
}

impl fmt::Debug for Timekeeper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timekeeper")
            .field("clocksource", &self.cs.name())
            .field("cycle_last", &self.cycle_last)
            .field("mono", &self.mono)
            .field("raw", &self.raw)
            .field("freq_ppb", &self.freq_ppb)
            .field("slept", &self.slept)
            .finish_non_exhaustive()
    }
}

/// Test-only fake clock sources over a shared virtual time.
#[cfg(test)]
pub(crate) mod fake {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::published::InlineRead;
    use crate::source::{ClockSource, ClockSourceFlags};
    use crate::time::{Cycles, Hertz, NSEC_PER_SEC};

    /// Virtual time, in nanoseconds, that every fake counter derives from.
    pub(crate) struct World {
        now_ns: AtomicU64,
    }

    impl World {
        pub(crate) const fn new() -> Self {
            World {
                now_ns: AtomicU64::new(0),
            }
        }
        pub(crate) fn now(&self) -> u64 {
            self.now_ns.load(Ordering::Relaxed)
        }
        pub(crate) fn set(&self, ns: u64) {
            self.now_ns.store(ns, Ordering::Relaxed);
        }
        pub(crate) fn advance(&self, ns: u64) {
            self.now_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// A counter at `freq · (1 + drift)` in virtual time, starting at
    /// `offset`, wrapping at `mask`. It can be frozen (stuck counter) and
    /// made slow to read (each of the next `slow_reads` reads advances
    /// virtual time by `slow_cost_ns` after sampling).
    pub(crate) struct FakeClock<'w> {
        world: &'w World,
        name: &'static str,
        freq: Hertz,
        mask: Cycles,
        rating: u16,
        flags: ClockSourceFlags,
        offset: u64,
        drift_ppb: i64,
        frozen: AtomicBool,
        frozen_at: AtomicU64,
        slow_reads: AtomicU64,
        slow_cost_ns: AtomicU64,
        inline: InlineRead,
    }

    impl<'w> FakeClock<'w> {
        pub(crate) fn new(world: &'w World, name: &'static str, freq: u64) -> Self {
            FakeClock {
                world,
                name,
                freq: Hertz::new(freq),
                mask: Cycles::mask_of_width(64),
                rating: 100,
                flags: ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES,
                offset: 0,
                drift_ppb: 0,
                frozen: AtomicBool::new(false),
                frozen_at: AtomicU64::new(0),
                slow_reads: AtomicU64::new(0),
                slow_cost_ns: AtomicU64::new(0),
                inline: InlineRead::None,
            }
        }
        /// Declares the counter readable inline (a test's reader calls
        /// `read` itself).
        pub(crate) fn inline(mut self, how: InlineRead) -> Self {
            self.inline = how;
            self
        }
        pub(crate) fn bits(mut self, bits: u32) -> Self {
            self.mask = Cycles::mask_of_width(bits);
            self
        }
        pub(crate) fn rating(mut self, rating: u16) -> Self {
            self.rating = rating;
            self
        }
        pub(crate) fn flags(mut self, flags: ClockSourceFlags) -> Self {
            self.flags = flags;
            self
        }
        pub(crate) fn offset(mut self, offset: u64) -> Self {
            self.offset = offset;
            self
        }
        pub(crate) fn drift_ppb(mut self, ppb: i64) -> Self {
            self.drift_ppb = ppb;
            self
        }
        /// The unmasked count at virtual time `t`.
        pub(crate) fn count_at(&self, t: u64) -> u128 {
            let rate = (NSEC_PER_SEC as i128 + self.drift_ppb as i128) as u128;
            let c = t as u128 * self.freq.get() as u128 * rate
                / (NSEC_PER_SEC as u128 * NSEC_PER_SEC as u128);
            c + self.offset as u128
        }
        /// Stops the counter at its current value.
        pub(crate) fn freeze(&self) {
            let v = self.read().get();
            self.frozen_at.store(v, Ordering::Relaxed);
            self.frozen.store(true, Ordering::Relaxed);
        }
        /// Makes each of the next `reads` reads take `cost_ns`.
        pub(crate) fn slow_down(&self, reads: u64, cost_ns: u64) {
            self.slow_cost_ns.store(cost_ns, Ordering::Relaxed);
            self.slow_reads.store(reads, Ordering::Relaxed);
        }
    }

    impl ClockSource for FakeClock<'_> {
        fn name(&self) -> &'static str {
            self.name
        }
        fn read(&self) -> Cycles {
            let t = self.world.now();
            if self.slow_reads.load(Ordering::Relaxed) > 0 {
                self.slow_reads.fetch_sub(1, Ordering::Relaxed);
                self.world
                    .advance(self.slow_cost_ns.load(Ordering::Relaxed));
            }
            if self.frozen.load(Ordering::Relaxed) {
                return Cycles::new(self.frozen_at.load(Ordering::Relaxed));
            }
            Cycles::new(self.count_at(t) as u64 & self.mask.get())
        }
        fn mask(&self) -> Cycles {
            self.mask
        }
        fn frequency(&self) -> Hertz {
            self.freq
        }
        fn rating(&self) -> u16 {
            self.rating
        }
        fn flags(&self) -> ClockSourceFlags {
            self.flags
        }
        fn inline_read(&self) -> InlineRead {
            self.inline
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeClock, World};
    use super::*;
    use quickcheck::{QuickCheck, TestResult};
    use std::format;
    use std::vec::Vec;

    const MS: u64 = 1_000_000;
    const S: u64 = NSEC_PER_SEC;

    #[test]
    fn clocks_start_at_zero_and_follow_the_counter() {
        let w = World::new();
        let cs = FakeClock::new(&w, "ghz", 1_000_000_000).offset(12_345);
        let tk = Timekeeper::new(&cs).unwrap();
        assert_eq!(tk.monotonic(), Ktime::ZERO);
        assert_eq!(tk.realtime(), WallTime::ZERO);
        w.set(1_500 * MS);
        assert_eq!(tk.monotonic(), Ktime::from_millis(1_500));
        assert_eq!(tk.raw(), RawTime::from_millis(1_500));
        assert_eq!(tk.boot(), BootTime::from_millis(1_500));
        assert_eq!(tk.realtime(), WallTime::from_millis(1_500));
    }

    #[test]
    fn monotonic_at_a_value_read_by_the_caller_equals_monotonic() {
        let w = World::new();
        let cs = FakeClock::new(&w, "hpet", 14_318_180)
            .bits(32)
            .offset(0xFFFF_0000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        for step in [3 * MS, 700 * MS, 2 * S, 1, 999_999] {
            w.set(w.now() + step);
            assert_eq!(tk.monotonic_at(cs.read()), tk.monotonic());
            tk.update();
            assert_eq!(tk.monotonic_at(cs.read()), tk.monotonic());
        }
        // A value behind the last update reads as the update's time.
        let behind = Cycles::new(cs.read().get().wrapping_sub(5) & 0xFFFF_FFFF);
        tk.update();
        assert_eq!(tk.monotonic_at(behind), tk.monotonic());
    }

    /// N updates at irregular steps across 32-bit wraps equal one conversion
    /// of the total cycles: exactly `(total · mult) >> shift`, and hence
    /// within the mult/shift bound of exact arithmetic.
    #[test]
    fn many_updates_equal_one_conversion_of_the_total() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180)
            .bits(32)
            .offset(0xFFFF_0000);
        let mut tk = Timekeeper::new(&hpet).unwrap();
        let m = tk.params().conv.0;
        let mut r = sim::rng::XorShift64::new(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            w.advance(1 + r.next_u64() % (8 * MS)); // 1 ns .. 8 ms, ~400 s in all
            tk.update();
        }
        let total = (hpet.count_at(w.now()) - hpet.count_at(0)) as u64;
        assert!(total > 1u64 << 32, "crossed wraps");
        let single = ((total as u128 * m.mult() as u128) >> m.shift()) as u64;
        assert_eq!(tk.raw().as_nanos(), single);
        assert_eq!(tk.monotonic().as_nanos(), single);
        let exact = hpet.frequency().exact_cycles_to_ns(Cycles::new(total));
        assert!(single.abs_diff(exact.as_nanos()) <= m.error_bound(total));
    }

    #[test]
    fn late_update_clamps_reads_then_catches_up_never_back() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 1_000_000_000);
        let mut tk = Timekeeper::new(&tsc).unwrap();
        let p = *tk.params();
        let clamped = p.conv.cycles_to_ns(p.max_cycles).as_nanos();
        w.set(clamped + 1_000 * S); // far beyond max deferment
        assert!(w.now() > 2 * tk.max_deferment().as_nanos());
        let late = tk.monotonic();
        assert_eq!(late.as_nanos(), clamped, "clamped to max_cycles");
        tk.update();
        let caught_up = tk.monotonic();
        assert!(caught_up >= late);
        assert_eq!(caught_up.as_nanos(), w.now());
    }

    #[test]
    fn counter_read_behind_the_last_update_reads_as_no_motion() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 1_000_000_000);
        let mut tk = Timekeeper::new(&tsc).unwrap();
        w.set(S);
        tk.update();
        w.set(S - 10); // another CPU's TSC, 10 cycles behind
        assert_eq!(tk.monotonic(), Ktime::from_secs(1));
        tk.update();
        assert_eq!(tk.monotonic(), Ktime::from_secs(1));
        w.set(S + 5);
        assert_eq!(tk.monotonic().as_nanos(), S + 5);
    }

    /// +100 ppm over 10 s: monotonic gains 1 ms on raw, within the bound of
    /// quantizing the adjusted `mult` (and a ns of truncation per clock).
    #[test]
    fn plus_100_ppm_over_10_s_gains_1_ms_on_raw() {
        for (freq, bits) in [(3_000_000_000, 64), (14_318_180, 32), (1_000_000_000, 64)] {
            let w = World::new();
            let cs = FakeClock::new(&w, "cs", freq).bits(bits);
            let mut tk = Timekeeper::new(&cs).unwrap();
            tk.adjust_frequency(100_000).unwrap();
            for _ in 0..10_000 {
                w.advance(MS);
                tk.update();
            }
            let gain = tk.monotonic().as_nanos() - tk.raw().as_nanos();
            let total = cs.count_at(w.now()) as u64;
            let bound = tk.params().conv.0.error_bound(total) + 2;
            assert!(
                gain.abs_diff(MS) <= bound,
                "f={freq} gain={gain} bound={bound}"
            );
            let exact = cs.frequency().exact_cycles_to_ns(Cycles::new(total));
            assert!(tk.raw().as_nanos().abs_diff(exact.as_nanos()) <= bound);
        }
    }

    #[test]
    fn minus_500_ppm_slows_monotonic_and_leaves_raw() {
        let w = World::new();
        let cs = FakeClock::new(&w, "tsc", 3_000_000_000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        tk.adjust_frequency(-MAX_FREQ_ADJ_PPB).unwrap();
        w.set(10 * S);
        let bound = tk.params().conv.0.error_bound(30 * S) + 2;
        assert!(tk.raw().as_nanos().abs_diff(10 * S) <= bound);
        let lag = tk.raw().as_nanos() - tk.monotonic().as_nanos();
        assert!(lag.abs_diff(5 * MS) <= bound, "{lag}");
    }

    #[test]
    fn frequency_adjustment_out_of_range_is_refused_and_changes_nothing() {
        let w = World::new();
        let cs = FakeClock::new(&w, "tsc", 3_000_000_000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        tk.adjust_frequency(250_000).unwrap();
        for ppb in [500_001, -500_001, 550_000, i64::MAX, i64::MIN] {
            assert_eq!(
                tk.adjust_frequency(ppb),
                Err(AdjustError::OutOfRange { ppb })
            );
        }
        assert_eq!(tk.frequency_adjustment(), 250_000);
        assert!(tk.adjust_frequency(MAX_FREQ_ADJ_PPB).is_ok());
        assert!(tk.adjust_frequency(-MAX_FREQ_ADJ_PPB).is_ok());
    }

    #[test]
    fn frequency_change_applies_only_to_future_cycles() {
        let w = World::new();
        let cs = FakeClock::new(&w, "tsc", 3_000_000_000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        w.set(100 * S); // no update for 100 s
        let before = tk.monotonic();
        tk.adjust_frequency(MAX_FREQ_ADJ_PPB).unwrap();
        assert_eq!(tk.monotonic(), before, "no jump at the change");
        tk.adjust_frequency(-MAX_FREQ_ADJ_PPB).unwrap();
        assert_eq!(tk.monotonic(), before);
    }

    #[test]
    fn sleep_advances_boot_and_realtime_not_monotonic() {
        let w = World::new();
        let cs = FakeClock::new(&w, "hpet", 14_318_180).bits(32);
        let mut tk = Timekeeper::new(&cs).unwrap();
        let epoch_2026 = WallTime::from_secs(1_767_225_600);
        w.set(2 * S);
        tk.update();
        tk.set_realtime(epoch_2026);
        let mono = tk.monotonic();
        tk.inject_sleep(Nanos::from_secs(60));
        assert_eq!(tk.monotonic(), mono);
        assert_eq!(tk.raw().as_nanos(), mono.as_nanos());
        assert_eq!(
            tk.boot().as_nanos(),
            mono.saturating_add(Nanos::from_secs(60)).as_nanos()
        );
        assert_eq!(
            tk.realtime(),
            epoch_2026.saturating_add(Nanos::from_secs(60))
        );
        w.advance(S);
        let run = tk.monotonic().saturating_since(mono);
        assert_eq!(
            tk.realtime(),
            epoch_2026
                .saturating_add(Nanos::from_secs(60))
                .saturating_add(run)
        );
    }

    #[test]
    fn set_realtime_moves_only_realtime() {
        let w = World::new();
        let cs = FakeClock::new(&w, "tsc", 1_000_000_000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        w.set(5 * S);
        tk.set_realtime(WallTime::from_secs(1)); // before "boot + 5 s": a negative offset
        assert_eq!(tk.realtime(), WallTime::from_secs(1));
        assert_eq!(tk.monotonic(), Ktime::from_secs(5));
        w.set(7 * S);
        assert_eq!(tk.realtime(), WallTime::from_secs(3));
    }

    #[test]
    fn switch_neither_loses_nor_gains_time_and_keeps_the_adjustment() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180)
            .bits(32)
            .offset(0xFFFF_FF00);
        let tsc = FakeClock::new(&w, "tsc", 2_999_999_999).offset(1 << 40);
        let mut tk = Timekeeper::new(&hpet).unwrap();
        tk.adjust_frequency(100_000).unwrap();
        w.set(3 * S);
        let before = tk.monotonic();
        tk.change_clocksource(&tsc).unwrap();
        assert_eq!(tk.clocksource().name(), "tsc");
        assert_eq!(tk.frequency_adjustment(), 100_000);
        assert_eq!(tk.monotonic(), before, "continuous at the switch");
        w.set(13 * S);
        // Raw: 13 s within a cycle of each source plus both conversion bounds.
        let hpet_bound = ClockParams::for_source(&hpet)
            .unwrap()
            .conv
            .0
            .error_bound(43_000_000);
        let tsc_bound = tk.params().conv.0.error_bound(30_000_000_000);
        let bound = hpet_bound + tsc_bound + 70 + 1;
        assert!(
            tk.raw().as_nanos().abs_diff(13 * S) <= bound,
            "{:?} {bound}",
            tk.raw()
        );
        let gain = tk.monotonic().as_nanos() - tk.raw().as_nanos();
        assert!(gain.abs_diff(13 * S / 10_000) <= 1_000, "{gain}");
    }

    /// A source that ran 2 ms slow, as a reference measured: every clock
    /// steps forward by the error at once (monotonic by the error at the
    /// adjusted rate), and runs on from there.
    #[test]
    fn correcting_a_clock_that_ran_behind_steps_every_clock_forward() {
        let w = World::new();
        let cs = FakeClock::new(&w, "hpet", 100_000_000).bits(64);
        let mut tk = Timekeeper::new(&cs).unwrap();
        tk.set_realtime(WallTime::from_secs(1_767_225_600));
        tk.inject_sleep(Nanos::from_secs(60));
        w.set(3 * S);
        let (mono, raw, boot, real) = (tk.monotonic(), tk.raw(), tk.boot(), tk.realtime());
        tk.correct(ClockError::Behind(Nanos::from_millis(2)));
        let two_ms = Nanos::from_millis(2);
        assert_eq!(tk.monotonic(), mono.saturating_add(two_ms));
        assert_eq!(tk.raw(), raw.saturating_add(two_ms));
        assert_eq!(tk.boot(), boot.saturating_add(two_ms));
        assert_eq!(tk.realtime(), real.saturating_add(two_ms));
        w.advance(S);
        tk.update();
        assert_eq!(
            tk.monotonic(),
            mono.saturating_add(two_ms)
                .saturating_add(Nanos::from_secs(1))
        );
        // With monotonic slewed +500 ppm the step is the error at that rate:
        // 2 ms + 1 µs; raw steps by the error itself.
        tk.adjust_frequency(MAX_FREQ_ADJ_PPB).unwrap();
        let (mono, raw) = (tk.monotonic(), tk.raw());
        tk.correct(ClockError::Behind(two_ms));
        assert_eq!(
            tk.monotonic(),
            mono.saturating_add(Nanos::from_nanos(2_001_000))
        );
        assert_eq!(tk.raw(), raw.saturating_add(two_ms));
    }

    /// A source that ran 2 ms fast: the clocks hold at what they show
    /// (never backwards) until true time has caught up, then run on from
    /// true time; updates during the hold change nothing.
    #[test]
    fn correcting_a_clock_that_ran_ahead_holds_until_true_time_reaches_it() {
        let w = World::new();
        let cs = FakeClock::new(&w, "hpet", 100_000_000)
            .bits(32)
            .offset(0xFFFF_0000);
        let mut tk = Timekeeper::new(&cs).unwrap();
        tk.set_realtime(WallTime::from_secs(1_767_225_600));
        w.set(3 * S);
        tk.update();
        let (mono, raw, real) = (tk.monotonic(), tk.raw(), tk.realtime());
        tk.correct(ClockError::Ahead(Nanos::from_millis(2)));
        for k in 0..20 {
            w.set(3 * S + k * 100_000); // 0 .. 1.9 ms after, 100 µs steps
            if k % 3 == 0 {
                tk.update();
            }
            assert_eq!(tk.monotonic(), mono, "held at {k}");
            assert_eq!(tk.raw(), raw);
            assert_eq!(tk.realtime(), real);
        }
        w.set(3 * S + 2 * MS);
        assert_eq!(tk.monotonic(), mono, "caught up: the hold ends here");
        w.set(3 * S + 5 * MS);
        let after = Nanos::from_millis(3);
        assert_eq!(tk.monotonic(), mono.saturating_add(after));
        assert_eq!(tk.raw(), raw.saturating_add(after));
        assert_eq!(tk.realtime(), real.saturating_add(after));
        tk.update();
        assert_eq!(tk.monotonic(), mono.saturating_add(after));
        // A later step forward lands on true time, never under the hold.
        tk.correct(ClockError::Ahead(Nanos::from_millis(4)));
        tk.correct(ClockError::Behind(Nanos::from_millis(1)));
        assert_eq!(tk.monotonic(), mono.saturating_add(after), "still held");
        w.set(3 * S + 8 * MS);
        assert_eq!(tk.monotonic(), mono.saturating_add(after), "3 ms of 3 ms");
        w.set(3 * S + 9 * MS);
        assert_eq!(tk.monotonic(), mono.saturating_add(Nanos::from_millis(4)));
    }

    #[test]
    fn switch_to_a_source_without_a_rate_is_refused() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32);
        let dead = FakeClock::new(&w, "dead", 0);
        let mut tk = Timekeeper::new(&hpet).unwrap();
        assert!(Timekeeper::new(&dead).is_err());
        assert_eq!(tk.change_clocksource(&dead), Err(ConversionError::ZeroRate));
        assert_eq!(tk.clocksource().name(), "hpet");
    }

    /// Property: random switches between two sources with different rates,
    /// widths and offsets, mixed with updates, frequency changes,
    /// corrections either way and reads, never make monotonic, raw or boot
    /// go backwards.
    #[test]
    fn clocks_never_go_backwards_across_switches() {
        fn prop(
            fa: u32,
            fb: u32,
            ba: u8,
            bb: u8,
            oa: u64,
            ob: u64,
            ops: Vec<(u16, u8, i32)>,
        ) -> TestResult {
            let fa = 1_000_000 + (fa as u64 * 7) % 4_000_000_000;
            let fb = 1_000_000 + (fb as u64 * 13) % 4_000_000_000;
            let ba = 24 + ba as u32 % 41;
            let bb = 24 + bb as u32 % 41;
            let w = World::new();
            let a = FakeClock::new(&w, "a", fa).bits(ba).offset(oa);
            let b = FakeClock::new(&w, "b", fb).bits(bb).offset(ob);
            let pa = ClockParams::for_source(&a).unwrap();
            let pb = ClockParams::for_source(&b).unwrap();
            let max_step = pa.max_idle.min(pb.max_idle).as_nanos() / 2;
            let mut tk = Timekeeper::new(&a).unwrap();
            let mut on_a = true;
            let mut last = (tk.monotonic(), tk.raw(), tk.boot());
            let mut since_update = 0;
            for (step, op, ppb) in ops {
                let step = step as u64 * 1_000 % max_step.max(1);
                if since_update + step > max_step {
                    tk.update(); // the tick's side of the contract
                    since_update = 0;
                }
                w.advance(step);
                since_update += step;
                match op % 6 {
                    0 => {}
                    1 => tk.update(),
                    2 => {
                        let to: &dyn ClockSource = if on_a { &b } else { &a };
                        tk.change_clocksource(to).unwrap();
                        on_a = !on_a;
                    }
                    3 => tk
                        .adjust_frequency(ppb as i64 % (MAX_FREQ_ADJ_PPB + 1))
                        .unwrap(),
                    4 => tk.correct(ClockError::Ahead(Nanos::from_nanos(
                        ppb.unsigned_abs() as u64
                    ))),
                    _ => tk.correct(ClockError::Behind(Nanos::from_nanos(
                        ppb.unsigned_abs() as u64
                    ))),
                }
                let now = (tk.monotonic(), tk.raw(), tk.boot());
                if now.0 < last.0 || now.1 < last.1 || now.2 < last.2 {
                    return TestResult::error(format!(
                        "fa={fa}/{ba} fb={fb}/{bb}: {last:?} -> {now:?}"
                    ));
                }
                if op % 6 != 0 {
                    since_update = 0;
                }
                last = now;
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(u32, u32, u8, u8, u64, u64, Vec<(u16, u8, i32)>) -> TestResult);
    }
}
