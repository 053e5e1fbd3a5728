//! A free-running counter driven by virtual time, with injectable faults.
//!
//! # How the count is computed
//!
//! The count is piecewise linear in true time. A *segment* starts whenever a
//! fault that changes the rate is set (drift, stuck, deep idle); within a
//! segment starting at `t_s` with `C_s` cycles (whole part) and `F_s`
//! atto-cycles (fraction, `< 10^18`) counted so far:
//!
//! ```text
//!   rate  = freq · (10^9 + ppb) / 10^9             cycles per second
//!   total = C_s·10^18 + F_s + (t − t_s)·freq·(10^9 + ppb)   atto-cycles
//!   count = (initial + ⌊total / 10^18⌋) & mask
//! ```
//!
//! all in exact `u128` integer arithmetic (no float; the product is split so
//! that it does not overflow for any elapsed time below 2^64 ns and any rate
//! below 2^64 Hz). Starting a new segment carries the fraction along, so a
//! counter whose drift is set and then cleared again reads exactly what it
//! would have read without the detour. While stuck, or stopped in deep idle,
//! a segment has rate zero: the count stays where it was and resumes from
//! there.
//!
//! # Faults
//!
//! | fault | setter | effect |
//! |-------|--------|--------|
//! | drift | [`SimCounter::set_drift_ppb`] | runs at `freq·(1 + ppb/10^9)` of true time from now on |
//! | stuck | [`SimCounter::set_stuck`] | the count freezes; unsticking resumes from the frozen value |
//! | stops in deep idle | [`SimCounter::set_deep_idle`] | only if configured with [`CounterConfig::stops_in_deep_idle`] |
//! | slow read | [`SimCounter::set_read_delay`], [`SimCounter::delay_next_reads`] | a read takes true time |
//!
//! A slow read *advances the shared [`VirtualClock`]* by the delay and
//! returns the count at the end of it: the read took that long (an SMI, a
//! slow bus). That is what makes it visible to a watchdog's wd–cs–wd
//! bracket — the second watchdog read comes `delay` later — and it also
//! delays every other device's events, as a stalled CPU would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos, NSEC_PER_SEC};

use crate::clock::VirtualClock;
use crate::trace::{Trace, TraceKind};

/// 10^9, as `u128`.
const GIGA: u128 = NSEC_PER_SEC as u128;

/// What a [`SimCounter`] is: its identity and its hardware shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterConfig {
    name: &'static str,
    frequency: Hertz,
    width: u32,
    rating: u16,
    flags: ClockSourceFlags,
    initial: Cycles,
    stops_in_deep_idle: bool,
}

impl CounterConfig {
    /// A 64-bit counter at `frequency` named `name`, rating 100, flags
    /// `CONTINUOUS | VALID_FOR_HRES`, starting at 0, running in deep idle.
    pub fn new(name: &'static str, frequency: Hertz) -> Self {
        CounterConfig {
            name,
            frequency,
            width: 64,
            rating: 100,
            flags: ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES,
            initial: Cycles::ZERO,
            stops_in_deep_idle: false,
        }
    }
    /// The counter's width in bits.
    ///
    /// # Panics
    ///
    /// If `bits` is not in `1..=64`.
    pub fn width(mut self, bits: u32) -> Self {
        assert!(
            (1..=64).contains(&bits),
            "counter width {bits} not in 1..=64"
        );
        self.width = bits;
        self
    }
    /// The rating the counter declares.
    pub fn rating(mut self, rating: u16) -> Self {
        self.rating = rating;
        self
    }
    /// The flags the counter declares (replacing the defaults).
    pub fn flags(mut self, flags: ClockSourceFlags) -> Self {
        self.flags = flags;
        self
    }
    /// The count at time zero of the counter (masked to its width): set it
    /// just below the mask to test a wrap early.
    pub fn initial(mut self, count: Cycles) -> Self {
        self.initial = count;
        self
    }
    /// Whether the counter stops while [`SimCounter::set_deep_idle`] is on
    /// (a TSC without "invariant TSC"). Such a counter should not declare
    /// `CONTINUOUS`; that is left to the test.
    pub fn stops_in_deep_idle(mut self, yes: bool) -> Self {
        self.stops_in_deep_idle = yes;
        self
    }
}

/// The mutable part: the current segment and the faults.
#[derive(Debug)]
struct CounterState {
    /// True time the segment started.
    seg_start: Ktime,
    /// Whole cycles counted before the segment (not masked, not offset).
    whole: u128,
    /// Fraction counted before the segment, in atto-cycles (`< 10^18`).
    frac: u128,
    drift_ppb: i64,
    stuck: bool,
    deep_idle: bool,
    read_delay: Nanos,
    slow_reads_left: u64,
    slow_read_delay: Nanos,
}

/// A [`ClockSource`] whose count follows a [`VirtualClock`] exactly, with
/// faults settable while it runs. See the [module docs](self).
#[derive(Debug)]
pub struct SimCounter {
    clock: Arc<VirtualClock>,
    config: CounterConfig,
    mask: Cycles,
    state: Mutex<CounterState>,
    reads: AtomicU64,
    trace: Option<Trace>,
}

impl SimCounter {
    /// A counter that starts counting from `config.initial` at the clock's
    /// current time.
    pub fn new(clock: Arc<VirtualClock>, config: CounterConfig) -> Self {
        let mask = Cycles::mask_of_width(config.width);
        let config = CounterConfig {
            initial: Cycles::new(config.initial.get() & mask.get()),
            ..config
        };
        let seg_start = clock.now();
        SimCounter {
            clock,
            config,
            mask,
            state: Mutex::new(CounterState {
                seg_start,
                whole: 0,
                frac: 0,
                drift_ppb: 0,
                stuck: false,
                deep_idle: false,
                read_delay: Nanos::ZERO,
                slow_reads_left: 0,
                slow_read_delay: Nanos::ZERO,
            }),
            reads: AtomicU64::new(0),
            trace: None,
        }
    }

    /// Records injected faults into `trace`.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Moves the counter to the heap for good, for `&'static dyn ClockSource`.
    pub fn leak(self) -> &'static SimCounter {
        Box::leak(Box::new(self))
    }

    /// The configuration it was built with (`initial` masked).
    pub fn config(&self) -> CounterConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, CounterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self, s: &CounterState) -> bool {
        let stopped = self.config.stops_in_deep_idle && s.deep_idle;
        !(s.stuck || stopped)
    }

    /// (whole, frac) counted up to `t` under the current segment.
    fn total_at(&self, s: &CounterState, t: Ktime) -> (u128, u128) {
        if !self.running(s) {
            return (s.whole, s.frac);
        }
        let elapsed = t.saturating_since(s.seg_start).as_nanos() as u128;
        let (cycles, frac) = advance(
            elapsed * self.config.frequency.get() as u128,
            rate_factor(s.drift_ppb),
            s.frac,
        );
        (s.whole.saturating_add(cycles), frac)
    }

    /// Ends the current segment at the clock's now; the caller then changes
    /// the rate.
    fn settle(&self, s: &mut CounterState) {
        let now = self.clock.now();
        let (whole, frac) = self.total_at(s, now);
        s.whole = whole;
        s.frac = frac;
        s.seg_start = now;
    }

    fn fault(&self, fault: &'static str) {
        if let Some(t) = &self.trace {
            t.record(
                self.clock.now(),
                None,
                TraceKind::Fault {
                    device: self.config.name,
                    fault,
                },
            );
        }
    }

    /// The count at the clock's current time, without the side effects of
    /// [`read`](ClockSource::read) (no read delay, not counted).
    pub fn peek(&self) -> Cycles {
        let s = self.lock();
        let (whole, _) = self.total_at(&s, self.clock.now());
        let raw = (self.config.initial.get() as u128).wrapping_add(whole);
        Cycles::new(raw as u64 & self.mask.get())
    }

    /// How many times [`read`](ClockSource::read) was called.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// From now on, counts at `freq · (1 + ppb/10^9)` of true time. The count
    /// stays continuous across the change. `ppb ≤ −10^9` stops the counter.
    pub fn set_drift_ppb(&self, ppb: i64) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.drift_ppb = ppb;
        drop(s);
        self.fault("drift");
    }

    /// The drift in force, in parts per billion.
    pub fn drift_ppb(&self) -> i64 {
        self.lock().drift_ppb
    }

    /// Freezes the count at its current value (`true`), or lets it run on
    /// from the frozen value (`false`).
    pub fn set_stuck(&self, stuck: bool) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.stuck = stuck;
        drop(s);
        self.fault(if stuck { "stuck" } else { "unstuck" });
    }

    /// Marks whether the machine is in deep idle. A counter configured with
    /// [`CounterConfig::stops_in_deep_idle`] does not advance meanwhile;
    /// others ignore it.
    pub fn set_deep_idle(&self, deep: bool) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.deep_idle = deep;
    }

    /// Every read from now on takes `delay` of true time: it advances the
    /// shared clock by `delay` and returns the count at the end of it.
    pub fn set_read_delay(&self, delay: Nanos) {
        self.lock().read_delay = delay;
        self.fault("read_delay");
    }

    /// The next `n` reads take `delay` each (instead of the permanent read
    /// delay), like an SMI hitting a few reads.
    pub fn delay_next_reads(&self, n: u64, delay: Nanos) {
        let mut s = self.lock();
        s.slow_reads_left = n;
        s.slow_read_delay = delay;
        drop(s);
        self.fault("slow_reads");
    }
}

impl ClockSource for SimCounter {
    fn name(&self) -> &'static str {
        self.config.name
    }

    /// The count now; a slow read first advances the shared clock (see the
    /// [module docs](self)).
    fn read(&self) -> Cycles {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let delay = {
            let mut s = self.lock();
            if s.slow_reads_left > 0 {
                s.slow_reads_left -= 1;
                s.slow_read_delay
            } else {
                s.read_delay
            }
        };
        if delay > Nanos::ZERO {
            self.clock.advance_by(delay);
        }
        self.peek()
    }

    fn mask(&self) -> Cycles {
        self.mask
    }

    fn frequency(&self) -> Hertz {
        self.config.frequency
    }

    fn rating(&self) -> u16 {
        self.config.rating
    }

    fn flags(&self) -> ClockSourceFlags {
        self.config.flags
    }
}

/// `10^9 + ppb`, the rate factor in billionths; zero if the drift would make
/// the counter run backwards.
fn rate_factor(ppb: i64) -> u128 {
    (GIGA as i128 + ppb as i128).max(0) as u128
}

/// Adds `ef · k` atto-cycles (`ef` = elapsed ns · freq, `k` = rate factor) to
/// a fraction `frac < 10^18`; returns the whole cycles and the new fraction.
///
/// `ef·k` itself may not fit in `u128`, so it is split: with `ef = a·10^9 + b`
/// and `b·k + frac = c·10^9 + d`, the total is `(a·k + c)·10^9 + d`, and with
/// `a·k + c = q·10^9 + r` the result is `q` cycles and `r·10^9 + d`
/// atto-cycles (which is `< 10^18` because `r, d < 10^9`).
fn advance(ef: u128, k: u128, frac: u128) -> (u128, u128) {
    let (a, b) = (ef / GIGA, ef % GIGA);
    let m = b * k + frac;
    let (c, d) = (m / GIGA, m % GIGA);
    let n = a.saturating_mul(k).saturating_add(c);
    (n / GIGA, (n % GIGA) * GIGA + d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    /// Atto-cycles per cycle.
    const ATTO: u128 = GIGA * GIGA;

    fn counter(clock: &Arc<VirtualClock>, cfg: CounterConfig) -> SimCounter {
        SimCounter::new(clock.clone(), cfg)
    }

    #[test]
    fn counter_counts_exactly_at_its_frequency() {
        let clock = VirtualClock::new();
        let c = counter(&clock, CounterConfig::new("hpet", Hertz::new(14_318_180)));
        clock.advance_to(Ktime::from_secs(1));
        assert_eq!(c.read(), Cycles::new(14_318_180));
        clock.advance_to(Ktime::from_nanos(1_500_000_000));
        assert_eq!(c.read(), Cycles::new(21_477_270));
        assert_eq!(c.reads(), 2);
    }

    #[test]
    fn counter_wraps_at_its_width() {
        let clock = VirtualClock::new();
        let c = counter(
            &clock,
            CounterConfig::new("pm", Hertz::from_mhz(1))
                .width(24)
                .initial(Cycles::new(0xFF_FFF0)),
        );
        assert_eq!(c.mask(), Cycles::new(0xFF_FFFF));
        assert_eq!(c.read(), Cycles::new(0xFF_FFF0));
        clock.advance_to(Ktime::from_nanos(15_000));
        assert_eq!(c.read(), Cycles::new(0xFF_FFFF));
        clock.advance_to(Ktime::from_nanos(16_000));
        assert_eq!(c.read(), Cycles::ZERO);
        clock.advance_to(Ktime::from_nanos(20_000));
        let now = c.read();
        assert_eq!(now, Cycles::new(4));
        assert_eq!(
            now.wrapping_delta(Cycles::new(0xFF_FFF0), c.mask()),
            Cycles::new(20)
        );
    }

    #[test]
    fn counter_initial_value_is_masked() {
        let clock = VirtualClock::new();
        let c = counter(
            &clock,
            CounterConfig::new("c", Hertz::from_mhz(1))
                .width(8)
                .initial(Cycles::new(0x1FF)),
        );
        assert_eq!(c.read(), Cycles::new(0xFF));
    }

    #[test]
    fn counter_64_bit_wraps() {
        let clock = VirtualClock::new();
        let c = counter(
            &clock,
            CounterConfig::new("tsc", Hertz::new(3_000_000_000)).initial(Cycles::new(u64::MAX - 2)),
        );
        clock.advance_to(Ktime::from_nanos(1));
        assert_eq!(c.read(), Cycles::new(0));
    }

    #[test]
    fn counter_drift_is_exact_in_ppb() {
        let clock = VirtualClock::new();
        let c = counter(&clock, CounterConfig::new("hpet", Hertz::from_mhz(10)));
        clock.advance_to(Ktime::from_secs(1));
        assert_eq!(c.read(), Cycles::new(10_000_000));
        c.set_drift_ppb(100);
        assert_eq!(
            c.read(),
            Cycles::new(10_000_000),
            "continuous at the change"
        );
        clock.advance_to(Ktime::from_secs(11));
        // 10 s · 10 MHz · (1 + 100e-9) = 100_000_010 cycles.
        assert_eq!(c.read(), Cycles::new(110_000_010));
        c.set_drift_ppb(-500_000);
        clock.advance_to(Ktime::from_secs(13));
        // 2 s · 10 MHz · (1 − 500e-6) = 19_990_000 cycles.
        assert_eq!(c.read(), Cycles::new(129_990_010));
        assert_eq!(c.drift_ppb(), -500_000);
    }

    #[test]
    fn drift_change_carries_the_fraction() {
        // 1 MHz: at 1.5 µs the count is 1.5 cycles. Setting drift 0 there
        // (a no-op rate change) must not lose the half cycle.
        let clock = VirtualClock::new();
        let c = counter(&clock, CounterConfig::new("c", Hertz::from_mhz(1)));
        clock.advance_to(Ktime::from_nanos(1_500));
        c.set_drift_ppb(0);
        clock.advance_to(Ktime::from_nanos(2_000));
        assert_eq!(c.read(), Cycles::new(2));
    }

    #[test]
    fn stuck_counter_stops_advancing() {
        let clock = VirtualClock::new();
        let c = counter(&clock, CounterConfig::new("c", Hertz::from_mhz(1)));
        clock.advance_to(Ktime::from_millis(1));
        c.set_stuck(true);
        clock.advance_to(Ktime::from_millis(50));
        assert_eq!(c.read(), Cycles::new(1_000));
        c.set_stuck(false);
        clock.advance_to(Ktime::from_millis(52));
        assert_eq!(
            c.read(),
            Cycles::new(3_000),
            "resumes from the frozen value"
        );
    }

    #[test]
    fn counter_stops_in_deep_idle_only_if_configured() {
        let clock = VirtualClock::new();
        let stops = counter(
            &clock,
            CounterConfig::new("tsc", Hertz::from_mhz(1)).stops_in_deep_idle(true),
        );
        let runs = counter(&clock, CounterConfig::new("hpet", Hertz::from_mhz(1)));
        clock.advance_to(Ktime::from_millis(1));
        stops.set_deep_idle(true);
        runs.set_deep_idle(true);
        clock.advance_to(Ktime::from_millis(3));
        stops.set_deep_idle(false);
        runs.set_deep_idle(false);
        clock.advance_to(Ktime::from_millis(4));
        assert_eq!(stops.read(), Cycles::new(2_000));
        assert_eq!(runs.read(), Cycles::new(4_000));
    }

    #[test]
    fn slow_read_advances_the_shared_clock() {
        let clock = VirtualClock::new();
        let cs = counter(&clock, CounterConfig::new("cs", Hertz::from_mhz(1)));
        let wd = counter(&clock, CounterConfig::new("wd", Hertz::from_mhz(1)));
        let trace = Trace::new();
        let cs = cs.with_trace(trace.clone());
        cs.delay_next_reads(1, Nanos::from_micros(100));
        let wd1 = wd.read();
        let c = cs.read();
        let wd2 = wd.read();
        assert_eq!(wd2.get() - wd1.get(), 100, "the bracket sees the slow read");
        assert_eq!(c, Cycles::new(100), "value latched at the end of the read");
        assert_eq!(cs.read(), Cycles::new(100), "only one read was slow");
        cs.set_read_delay(Nanos::from_micros(1));
        assert_eq!(cs.read(), Cycles::new(101));
        assert_eq!(clock.now(), Ktime::from_micros(101));
        assert_eq!(
            trace.count(|e| matches!(e.kind, TraceKind::Fault { .. })),
            2
        );
    }

    /// Reference: count of a counter whose drift was set once at `t1`, from
    /// the exact rational formula, with no fraction carrying.
    fn reference(freq: u64, t1: u64, ppb: i64, t2: u64) -> u128 {
        let f = freq as u128;
        // Both segments share one denominator (10^18) so the sum is exact.
        let num = t1 as u128 * f * GIGA + (t2 - t1) as u128 * f * rate_factor(ppb);
        num / ATTO
    }

    #[test]
    fn drift_matches_exact_reference() {
        fn prop(freq: u32, t1: u32, dt: u32, ppb: i32) -> TestResult {
            let freq = freq as u64 + 1;
            let (t1, t2) = (t1 as u64, t1 as u64 + dt as u64);
            let clock = VirtualClock::new();
            let c = SimCounter::new(clock.clone(), CounterConfig::new("c", Hertz::new(freq)));
            clock.advance_to(Ktime::from_nanos(t1));
            let before = c.peek();
            c.set_drift_ppb(ppb as i64);
            if c.peek() != before {
                return TestResult::failed();
            }
            clock.advance_to(Ktime::from_nanos(t2));
            TestResult::from_bool(c.peek().get() as u128 == reference(freq, t1, ppb as i64, t2))
        }
        QuickCheck::new()
            .tests(2_000)
            .quickcheck(prop as fn(u32, u32, u32, i32) -> TestResult);
    }

    #[test]
    fn split_multiplication_is_exact() {
        fn prop(ef: u64, k: u32, frac: u64) -> bool {
            let frac = frac as u128 % ATTO;
            let total = ef as u128 * k as u128 + frac; // fits: < 2^96 + 2^60
            advance(ef as u128, k as u128, frac) == (total / ATTO, total % ATTO)
        }
        QuickCheck::new()
            .tests(5_000)
            .quickcheck(prop as fn(u64, u32, u64) -> bool);
    }

    #[test]
    fn long_run_does_not_overflow() {
        let clock = VirtualClock::new();
        let c = counter(&clock, CounterConfig::new("tsc", Hertz::new(5_000_000_000)));
        c.set_drift_ppb(1_000);
        clock.advance_to(Ktime::from_nanos(u64::MAX - 1));
        // (2^64 − 1) ns · 5 GHz · (1 + 1e-6), masked to 64 bits.
        let exact = (u64::MAX - 1) as u128 * 5 * (GIGA + 1_000) / GIGA;
        assert_eq!(c.read().get(), exact as u64);
    }
}
