//! # Conformance: the scenarios every tick device passes
//!
//! Every time source runs the same acceptance scenarios over its driver and
//! register model; they live here once, and a source's `tests/sim.rs` calls
//! them with a *bring-up closure* that builds its machine, and a [`Profile`]
//! of the figures that differ between devices (all from the device's
//! datasheet or a documented figure, never from the constants the driver
//! itself uses):
//!
//! | function | scenario | exact figures |
//! |---|---|---|
//! | [`periodic_10s`] | periodic at HZ for 10 s | HZ × 10 interrupts and ticks; [`Profile::periodic_jiffies`] |
//! | [`stays_periodic_without_tickless`] | NO_HZ asked for, tickless feature not built | periodic with the expected [`PeriodicReason`]; HZ × 10 ticks through idle; a timer run by the first tick at or after it |
//! | [`nohz_idle_one_timer`] | NO_HZ idle, one timer at 3.7 s | ⌈3.7 s / E⌉ interrupts (E = [`Profile::max_delta`]): one where E ≥ 3.7 s, else ⌈(3.7 s − E)/E⌉ max-delta re-arms and the timer's |
//! | [`max_delta_rearms`] | NO_HZ idle, nothing queued | ⌊span / E⌋ interrupts, each E after the last |
//! | [`random_timers`] | 10 000 random timers over 2 s, high-res | every one once, in order per CPU, never early, late by at most [`Profile::max_late`] |
//! | [`max_deferment_wakeups`] | NO_HZ idle on a narrow clocksource | ⌊span / D⌋ forced wake-ups, D the clocksource's documented max deferment |
//! | [`calibrates_a_3ghz_tsc`] | the source as a calibration reference, over a slow bus | a 3 GHz TSC stand-in within the stated error; the stated error within its bracket bound |
//! | [`refused_device_falls_back`] | the source refuses its device; a PIT stand-in is registered | no tick device from the source; ⌊1 s / P⌋ interrupts and ticks of the stand-in, P = 10⁹/HZ ns rounded up to whole 1.193182 MHz clocks (249 at HZ = 250) |
//!
//! ```text
//!   source's tests/sim.rs                      sim::conformance
//!   ─────────────────────                      ────────────────
//!   bring_up(clock, trace, config) ──────────► VirtualClock::new(), Trace::new()
//!     probe the model, build the driver,       machine = bring_up(..)
//!     Machine::new(clock, trace, config, cs)   run the scenario in virtual time
//!     add_driver(dev, model)                   assert exact counts, panic naming
//!     return the machine                         the source and the figure
//!                                 ◄─────────── Rig { machine, offset }: the
//!   source-specific checks on the rig            source adds its own checks
//! ```
//!
//! What a bring-up must give:
//!
//! - a [`Machine`] made with the `clock`, the `trace` and the `config` it is
//!   handed (a [`SimEventDevice`](crate::SimEventDevice) used as the device
//!   under test records its interrupts with `with_trace(trace.clone())`; a
//!   driver added with [`Machine::add_driver`] is recorded by the machine);
//! - the device under test as CPU *c*'s tick device for each CPU *c*;
//! - a clocksource whose conversion is exact (monotonic time is true time
//!   less a constant, [`Rig::offset`], the time bring-up took): a 1 GHz
//!   counter, or a device counter whose period divides a nanosecond grid
//!   (QEMU's 100 MHz HPET). The scenarios compare true and monotonic time to
//!   the nanosecond.
//!
//! A new driver gets the suite by calling it:
//!
//! ```
//! use std::sync::Arc;
//! use clockevents::{CpuId, CpuMask, Features};
//! use clocksource::{ClockSourceFlags, Cycles, Hertz, Nanos};
//! use sim::conformance::{self, Profile};
//! use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
//! use tick::TickConfig;
//!
//! /// Brings up the "driver" (here a generic simulated device at 1 GHz)
//! /// on a 1 GHz clocksource, as a source's boot code would.
//! fn bring_up(clock: &Arc<VirtualClock>, trace: &Trace, config: TickConfig) -> Machine<1> {
//!     let cs = SimCounter::new(
//!         clock.clone(),
//!         CounterConfig::new("tsc", Hertz::new(1_000_000_000))
//!             .rating(300)
//!             .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
//!     )
//!     .leak();
//!     let dev = SimEventDevice::new(
//!         clock.clone(),
//!         EventConfig::new("mytimer", Hertz::new(1_000_000_000))
//!             .features(Features::PERIODIC | Features::ONESHOT)
//!             .min_delta(Cycles::new(1_000))
//!             .max_delta(Cycles::new(0xFFFF_FFFF))
//!             .cpus(CpuMask::single(CpuId::BOOT)),
//!     )
//!     .with_trace(trace.clone())
//!     .leak();
//!     let mut m = Machine::new(clock.clone(), trace.clone(), config, cs);
//!     m.add_device(dev);
//!     m
//! }
//!
//! let profile = Profile {
//!     source: "mytimer",
//!     hz: 250,
//!     periodic_jiffies: 2_500,
//!     // 0xFFFF_FFFF cycles at 1 GHz.
//!     max_delta: Nanos::from_nanos(4_294_967_295),
//!     // One 1 ns cycle of rounding up.
//!     timer_late: Nanos::from_nanos(1),
//!     // The 1 µs min delta and that cycle.
//!     max_late: Nanos::from_nanos(1_001),
//! };
//! conformance::periodic_10s(&profile, bring_up);
//! conformance::nohz_idle_one_timer(&profile, bring_up);
//! ```
//!
//! Each function returns the [`Rig`] it ran, so that the source can go on
//! to check what only it knows (its register values, exact interrupt
//! instants on its own clock grid).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use clockevents::{CpuId, CpuMask, Features};
use clocksource::calibrate::ppm_off;
use clocksource::{calibrate, Calibration, ClockSource, Cycles, Hertz, Ktime, Nanos};
use tick::{IdleDepth, PeriodicReason, TickConfig, TickMode};

use crate::rng::XorShift64;
use crate::{
    CounterConfig, EventConfig, Fired, Machine, SimCounter, SimEventDevice, Trace, VirtualClock,
};

/// The periodic scenarios' length: 10 s.
pub const PERIODIC_SPAN: Nanos = Nanos::from_secs(10);
/// When the one timer of the NO_HZ scenarios is due, after idle begins.
pub const ONE_TIMER_AT: Nanos = Nanos::from_millis(3_700);
/// How many timers [`random_timers`] queues.
pub const RANDOM_TIMERS: u64 = 10_000;
/// [`random_timers`]' timers are due within this of the start (and it runs
/// 1 s longer).
pub const RANDOM_SPAN: Nanos = Nanos::from_secs(2);
/// The seed of [`random_timers`]' expiries and CPUs.
pub const RANDOM_SEED: u64 = XorShift64::DEFAULT_SEED;

/// What the scenarios need to know of the device under test. Every figure
/// comes from the device's datasheet or a documented figure, never from the
/// driver's own constants, so a driver that gets one wrong fails.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// The source's name, for failure messages ("hpet", "lapic (x2APIC)").
    pub source: &'static str,
    /// Ticks per second the scenarios run at.
    pub hz: u32,
    /// Jiffies after [`PERIODIC_SPAN`] of periodic ticking: HZ × 10 where
    /// the device's period is exactly 1/HZ; fewer where its period is
    /// longer (the PIT's 11932 clocks at HZ = 100 end the 10 s at 999).
    pub periodic_jiffies: u64,
    /// The longest one programming of the device waits, as the device
    /// counts it (its maximum count over its rate, plus any load clock):
    /// how far apart the forced re-arms of an idle CPU are.
    pub max_delta: Nanos,
    /// How late a timer that has the device to itself may fire: the
    /// rounding of its delay up to whole device cycles (and any load clock).
    pub timer_late: Nanos,
    /// How late any timer may fire when timers crowd: a timer due within the
    /// device's min delta of the previous interrupt is forced out to it, so
    /// the min delta plus [`timer_late`](Self::timer_late).
    pub max_late: Nanos,
}

/// A bring-up: given the virtual clock, the trace and the tick
/// configuration of the scenario, probe the device, build the driver and
/// return the machine with it as every CPU's tick device (what the machine
/// must be is in the [module docs](self)). Any such closure or function is
/// one.
pub trait BringUp<const N: usize>:
    FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<N>
{
}

impl<const N: usize, F> BringUp<N> for F where
    F: FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<N>
{
}

/// A machine a scenario ran, handed back for source-specific checks.
pub struct Rig<const N: usize> {
    /// The machine, at the end of the scenario.
    pub machine: Machine<N>,
    /// True time less monotonic time: how long bring-up ran before the
    /// timekeeper started (the probe's reads, a calibration). Constant, as
    /// the clocksource converts exactly.
    pub offset: Nanos,
    /// Monotonic time when the scenario began (right after bring-up).
    pub start: Ktime,
}

impl<const N: usize> Rig<N> {
    fn bring_up(bring_up: impl BringUp<N>, config: TickConfig) -> Self {
        let clock = VirtualClock::new();
        let trace = Trace::new();
        let machine = bring_up(&clock, &trace, config);
        let offset = clock.now().saturating_since(machine.now());
        let start = machine.now();
        Rig {
            machine,
            offset,
            start,
        }
    }

    /// The true time of monotonic instant `t`.
    pub fn true_time(&self, t: Ktime) -> Ktime {
        t.saturating_add(self.offset)
    }

    /// CPU `cpu`'s tick device, by name.
    fn device(&self, p: &Profile, cpu: usize) -> &'static str {
        self.machine
            .tick
            .cpu_info(cpu_id(cpu))
            .and_then(|i| i.device)
            .unwrap_or_else(|| panic!("{}: CPU {cpu} has no tick device", p.source))
    }

    /// The true times CPU `cpu`'s tick device interrupted, oldest first.
    pub fn interrupts(&self, cpu: usize) -> Vec<Ktime> {
        let Some(dev) = self
            .machine
            .tick
            .cpu_info(cpu_id(cpu))
            .and_then(|i| i.device)
        else {
            return Vec::new();
        };
        self.machine.trace.interrupts_of(dev)
    }

    fn stats(&self, p: &Profile, cpu: usize) -> tick::CpuStats {
        self.machine
            .tick
            .cpu_info(cpu_id(cpu))
            .unwrap_or_else(|| panic!("{}: CPU {cpu} missing", p.source))
            .stats
    }

    fn assert_mode(&self, p: &Profile, want: (TickMode, Option<PeriodicReason>), why: &str) {
        let info = self.machine.tick.cpu_info(CpuId::BOOT).expect("CPU 0");
        assert_eq!(
            (info.mode, info.periodic_reason),
            want,
            "{}: tick mode and why periodic: {why}",
            p.source
        );
    }

    fn assert_periodic_jiffies(&self, p: &Profile) {
        assert_eq!(
            self.machine.tick.jiffies(),
            p.periodic_jiffies,
            "{}: jiffies after 10 s",
            p.source
        );
    }

    /// The scenario needs the bring-up's clocksource to let the tick stop
    /// longer than `d`.
    fn assert_defers_longer_than(&self, p: &Profile, d: Nanos) {
        let max_deferment = self.machine.tick.timekeeper().max_deferment();
        assert!(
            max_deferment > d,
            "{}: the bring-up's clocksource defers only {max_deferment}: the scenario needs more than {d}",
            p.source
        );
    }

    fn assert_no_device_errors(&self, p: &Profile) {
        assert_eq!(
            self.machine.trace.device_errors(),
            [],
            "{}: the core made calls the device contract forbids",
            p.source
        );
    }

    /// Asserts `f` ran at or after its expiry, in monotonic and in true
    /// time, and at the monotonic time that is its true time less the
    /// offset; returns how late it was in true time.
    fn never_early(&self, p: &Profile, f: &Fired) -> Nanos {
        let due = self.true_time(f.expires);
        assert!(
            f.at >= f.expires && f.true_time >= due,
            "{}: timer {} ran early: {f:?} (offset {})",
            p.source,
            f.data,
            self.offset
        );
        assert_eq!(
            f.at,
            f.true_time.saturating_sub(self.offset),
            "{}: timer {} ran at a monotonic time other than true time less the bring-up's {} (an inexact clocksource?)",
            p.source,
            f.data,
            self.offset
        );
        f.true_time.saturating_since(due)
    }
}

fn config(p: &Profile, tickless: bool) -> TickConfig {
    TickConfig::new(Hertz::new(u64::from(p.hz)))
        .with_nohz(tickless)
        .with_highres(tickless)
}

fn ticks_in(p: &Profile, span: Nanos) -> u64 {
    span.as_nanos() * u64::from(p.hz) / 1_000_000_000
}

/// Periodic at [`Profile::hz`] for 10 s: exactly HZ × 10 interrupts of the
/// device and HZ × 10 ticks, [`Profile::periodic_jiffies`] jiffies, mode
/// periodic because nothing else was asked for, and no call the device
/// contract forbids.
pub fn periodic_10s(p: &Profile, bring_up: impl BringUp<1>) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, false));
    let dev = rig.device(p, 0);
    rig.assert_mode(
        p,
        (TickMode::Periodic, Some(PeriodicReason::NotRequested)),
        "NO_HZ not asked for",
    );
    let end = rig.machine.clock.now().saturating_add(PERIODIC_SPAN);
    rig.machine.run_until(end);
    let want = ticks_in(p, PERIODIC_SPAN);
    let got = rig.machine.trace.interrupts_of(dev).len() as u64;
    assert_eq!(got, want, "{}: interrupts of {dev} in 10 s", p.source);
    let stats = rig.stats(p, 0);
    assert_eq!(
        (stats.interrupts, stats.ticks),
        (want, want),
        "{}: interrupts and ticks the tick layer counted in 10 s at HZ = {}",
        p.source,
        p.hz
    );
    rig.assert_periodic_jiffies(p);
    rig.assert_no_device_errors(p);
    rig
}

/// NO_HZ and high-res asked for on a build without the source's tickless
/// feature: the tick stays periodic and says `reason`; idle does not stop
/// it (HZ × 10 interrupts and ticks in 10 s, no tick stop,
/// [`Profile::periodic_jiffies`]); a timer at 3.7 s runs in the first tick
/// interrupt at or after it.
pub fn stays_periodic_without_tickless(
    p: &Profile,
    reason: PeriodicReason,
    bring_up: impl BringUp<1>,
) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, true));
    let dev = rig.device(p, 0);
    rig.assert_mode(
        p,
        (TickMode::Periodic, Some(reason)),
        "NO_HZ asked for without the tickless feature",
    );
    let expiry = rig.start.saturating_add(ONE_TIMER_AT);
    rig.machine.add_timer(0, expiry, 1);
    rig.machine.idle(0, IdleDepth::Shallow);
    let end = rig.machine.clock.now().saturating_add(PERIODIC_SPAN);
    rig.machine.run_until(end);

    let irqs = rig.machine.trace.interrupts_of(dev);
    let want = ticks_in(p, PERIODIC_SPAN);
    assert_eq!(
        irqs.len() as u64,
        want,
        "{}: idle does not stop a periodic tick: interrupts of {dev} in 10 s",
        p.source
    );
    let stats = rig.stats(p, 0);
    assert_eq!(
        (stats.ticks, stats.tick_stops),
        (want, 0),
        "{}: ticks and tick stops in 10 s of idle",
        p.source
    );
    rig.assert_periodic_jiffies(p);
    let fired = rig.machine.fired();
    assert_eq!(fired.len(), 1, "{}: the 3.7 s timer: {fired:?}", p.source);
    rig.never_early(p, &fired[0]);
    let due = rig.true_time(expiry);
    let tick = irqs.iter().find(|t| **t >= due).copied();
    assert_eq!(
        Some(fired[0].true_time),
        tick,
        "{}: the 3.7 s timer runs in the first tick at or after it",
        p.source
    );
    rig.assert_no_device_errors(p);
    rig
}

/// NO_HZ idle with one timer 3.7 s ahead, run until the timer has fired:
/// the device interrupts exactly ⌈3.7 s / E⌉ times, E being
/// [`Profile::max_delta`] (exactly once where E ≥ 3.7 s; else
/// ⌈(3.7 s − E)/E⌉ forced re-arms, then the timer's), each forced one E
/// after the last; the timer runs once, never early, late by at most
/// [`Profile::timer_late`]; one tick stop, no max-deferment wake-up (the
/// bring-up's clocksource must defer longer than 3.7 s), no failed
/// programming.
pub fn nohz_idle_one_timer(p: &Profile, bring_up: impl BringUp<1>) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, true));
    let dev = rig.device(p, 0);
    rig.assert_mode(
        p,
        (TickMode::HighRes { nohz: true }, None),
        "NO_HZ and high-res with the tickless feature",
    );
    rig.assert_defers_longer_than(p, ONE_TIMER_AT);
    let idle_at = rig.machine.clock.now();
    let expiry = rig.start.saturating_add(ONE_TIMER_AT);
    rig.machine.add_timer(0, expiry, 1);
    rig.machine.idle(0, IdleDepth::Shallow);
    let due = rig.true_time(expiry);
    rig.machine.run_until(due.saturating_add(p.timer_late));

    let fired = rig.machine.fired();
    assert_eq!(fired.len(), 1, "{}: the 3.7 s timer: {fired:?}", p.source);
    let late = rig.never_early(p, &fired[0]);
    assert!(
        late <= p.timer_late,
        "{}: the 3.7 s timer ran {late} late (at most {})",
        p.source,
        p.timer_late
    );
    let irqs = rig.machine.trace.interrupts_of(dev);
    let want = ONE_TIMER_AT.as_nanos().div_ceil(p.max_delta.as_nanos());
    assert_eq!(
        irqs.len() as u64,
        want,
        "{}: interrupts of {dev} up to the 3.7 s timer: ⌈3.7 s / {}⌉ (max delta)",
        p.source,
        p.max_delta
    );
    assert_spaced_by_max_delta(p, idle_at, &irqs[..irqs.len() - 1]);
    let stats = rig.stats(p, 0);
    assert_eq!(
        (
            stats.interrupts,
            stats.tick_stops,
            stats.max_deferment_wakeups,
            stats.program_failures
        ),
        (want, 1, 0, 0),
        "{}: (interrupts, tick stops, max-deferment wake-ups, failed programmings)",
        p.source
    );
    rig.assert_no_device_errors(p);
    rig
}

/// NO_HZ idle with nothing queued for `span`: the device's max delta
/// forces a re-arm every [`Profile::max_delta`] (E), so exactly ⌊span / E⌋
/// interrupts, the first E after idle begins and each E after the last (to
/// within [`Profile::timer_late`]), none of them a max-deferment wake-up
/// (the bring-up's clocksource must defer longer than E).
pub fn max_delta_rearms(p: &Profile, span: Nanos, bring_up: impl BringUp<1>) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, true));
    let dev = rig.device(p, 0);
    rig.assert_defers_longer_than(p, p.max_delta);
    let idle_at = rig.machine.clock.now();
    rig.machine.idle(0, IdleDepth::Shallow);
    rig.machine.run_until(idle_at.saturating_add(span));
    let irqs = rig.machine.trace.interrupts_of(dev);
    let want = span.as_nanos() / p.max_delta.as_nanos();
    assert_eq!(
        irqs.len() as u64,
        want,
        "{}: max-delta re-arms in {span} of idle: ⌊{span} / {}⌋",
        p.source,
        p.max_delta
    );
    assert_spaced_by_max_delta(p, idle_at, &irqs);
    let stats = rig.stats(p, 0);
    assert_eq!(
        (
            stats.interrupts,
            stats.max_deferment_wakeups,
            stats.timers_fired
        ),
        (want, 0, 0),
        "{}: (interrupts, max-deferment wake-ups, timers run) in {span} of idle",
        p.source
    );
    rig.assert_no_device_errors(p);
    rig
}

/// Asserts the forced interrupts `irqs` come each [`Profile::max_delta`]
/// (to within [`Profile::timer_late`]) after the one before, the first
/// after `from`.
fn assert_spaced_by_max_delta(p: &Profile, from: Ktime, irqs: &[Ktime]) {
    let mut last = from;
    for (k, t) in irqs.iter().enumerate() {
        let gap = t.saturating_since(last);
        assert!(
            gap >= p.max_delta && gap <= p.max_delta.saturating_add(p.timer_late),
            "{}: forced re-arm {k} came {gap} after the last (max delta {}, late by at most {})",
            p.source,
            p.max_delta,
            p.timer_late
        );
        last = *t;
    }
}

/// [`RANDOM_TIMERS`] timers at random instants within [`RANDOM_SPAN`] on
/// random CPUs ([`RANDOM_SEED`]), every CPU idle, NO_HZ and high-res: each
/// runs exactly once, on its CPU, in expiry order per CPU, never early,
/// late by at most [`Profile::max_late`]; every CPU's device interrupted;
/// no failed programming.
pub fn random_timers<const N: usize>(p: &Profile, bring_up: impl BringUp<N>) -> Rig<N> {
    let mut rig = Rig::bring_up(bring_up, config(p, true));
    let mut r = XorShift64::new(RANDOM_SEED);
    let mut expiries = HashMap::new();
    for id in 0..RANDOM_TIMERS {
        let cpu = (r.next_u64() % N as u64) as usize;
        let at = rig
            .start
            .saturating_add(Nanos::from_nanos(1 + r.next_u64() % RANDOM_SPAN.as_nanos()));
        rig.machine.add_timer(cpu, at, id);
        expiries.insert(id, (cpu, at));
    }
    for cpu in 0..N {
        rig.machine.idle(cpu, IdleDepth::Shallow);
    }
    let end = rig
        .machine
        .clock
        .now()
        .saturating_add(RANDOM_SPAN)
        .saturating_add(Nanos::from_secs(1));
    rig.machine.run_until(end);

    let fired = rig.machine.fired();
    assert_eq!(
        fired.len() as u64,
        RANDOM_TIMERS,
        "{}: random timers run",
        p.source
    );
    let mut seen = HashSet::new();
    let mut last = [Ktime::ZERO; N];
    let mut worst = Nanos::ZERO;
    for f in &fired {
        assert!(
            seen.insert(f.data),
            "{}: timer {} ran twice",
            p.source,
            f.data
        );
        assert_eq!(
            expiries[&f.data],
            (f.cpu, f.expires),
            "{}: timer {} ran on another CPU or with another expiry",
            p.source,
            f.data
        );
        let late = rig.never_early(p, f);
        assert!(
            late <= p.max_late,
            "{}: timer ran {late} late (at most {}): {f:?}",
            p.source,
            p.max_late
        );
        assert!(
            f.expires >= last[f.cpu],
            "{}: out of order on CPU {}: {f:?}",
            p.source,
            f.cpu
        );
        last[f.cpu] = f.expires;
        worst = worst.max(late);
    }
    println!(
        "{}: {RANDOM_TIMERS} random timers, worst lateness {worst}",
        p.source
    );
    for cpu in 0..N {
        let stats = rig.stats(p, cpu);
        assert!(
            stats.interrupts > 0,
            "{}: CPU {cpu}'s device never interrupted",
            p.source
        );
        assert_eq!(
            stats.program_failures, 0,
            "{}: failed programmings on CPU {cpu}",
            p.source
        );
    }
    rig.assert_no_device_errors(p);
    rig
}

/// NO_HZ idle for `span` with nothing queued, on a clocksource that wraps
/// sooner than the device's max delta: the timekeeping CPU wakes every max
/// deferment, `documented` (Linux's `clocks_calc_max_nsecs()` figure for
/// the counter, to 10 ms), so exactly ⌊span / documented⌋ forced wake-ups,
/// each an interrupt of the device.
pub fn max_deferment_wakeups(
    p: &Profile,
    documented: Nanos,
    span: Nanos,
    bring_up: impl BringUp<1>,
) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, true));
    let dev = rig.device(p, 0);
    let max_deferment = rig.machine.tick.timekeeper().max_deferment();
    let cs = rig.machine.tick.timekeeper().clocksource().name();
    assert_eq!(
        max_deferment.as_nanos() / 10_000_000,
        documented.as_nanos() / 10_000_000,
        "{}: max deferment of {cs} ({max_deferment}), to 10 ms",
        p.source
    );
    assert!(
        p.max_delta > max_deferment,
        "{}: the device's max delta {} would set the pace, not {cs}'s max deferment",
        p.source,
        p.max_delta
    );
    let idle_at = rig.machine.clock.now();
    rig.machine.idle(0, IdleDepth::Shallow);
    rig.machine.run_until(idle_at.saturating_add(span));
    let want = span.as_nanos() / documented.as_nanos();
    let irqs = rig.machine.trace.interrupts_of(dev).len() as u64;
    let stats = rig.stats(p, 0);
    assert_eq!(
        (stats.max_deferment_wakeups, irqs),
        (want, want),
        "{}: (max-deferment wake-ups, interrupts of {dev}) in {span} of idle: ⌊{span} / {documented}⌋",
        p.source
    );
    rig.assert_no_device_errors(p);
    rig
}

/// The span [`refused_device_falls_back`] ticks for.
pub const FALLBACK_SPAN: Nanos = Nanos::from_secs(1);

/// The i8254's input clock, 1.193182 MHz (Intel 82C54 datasheet; Linux's
/// `PIT_TICK_RATE`).
const PIT_HZ: u64 = 1_193_182;

/// A device refused, another ticks: the fallback a kernel takes when a
/// source will not offer its device (an HPET that is absent, a LAPIC timer
/// whose calibration reference has stopped). The bring-up runs the source's
/// probe under the conditions that make it refuse, checks the refusal it
/// expects, and returns a machine *without* the device (with whatever
/// clocksource is left). The scenario checks that no CPU got a tick device
/// from it, registers a PIT stand-in as Linux's `drivers/clocksource/i8253.c`
/// declares the PIT (1.193182 MHz, periodic and one-shot, deltas
/// 0xF..=0x7FFF clocks) and runs [`FALLBACK_SPAN`] periodic at
/// [`Profile::hz`]: a period of 10⁹/HZ ns is rounded up to whole PIT clocks
/// (never early), so exactly ⌊span / period⌋ interrupts and as many ticks —
/// at HZ = 250, 4 ms is 4772.7 clocks, 4773 clocks is 4.000 229 ms, and 1 s
/// holds 249 of them.
pub fn refused_device_falls_back(p: &Profile, bring_up: impl BringUp<1>) -> Rig<1> {
    let mut rig = Rig::bring_up(bring_up, config(p, false));
    let info = rig.machine.tick.cpu_info(CpuId::BOOT).expect("CPU 0");
    assert_eq!(
        (info.device, info.mode),
        (None, TickMode::NoDevice),
        "{}: the refused device must not become the tick device",
        p.source
    );
    let clock = rig.machine.clock.clone();
    let pit = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("pit", Hertz::new(PIT_HZ))
            .features(Features::PERIODIC | Features::ONESHOT)
            .min_delta(Cycles::new(0xF))
            .max_delta(Cycles::new(0x7FFF))
            .cpus(CpuMask::ALL),
    )
    .with_trace(rig.machine.trace.clone())
    .leak();
    rig.machine.add_device(pit);
    rig.assert_mode(
        p,
        (TickMode::Periodic, Some(PeriodicReason::NotRequested)),
        "the PIT stand-in, NO_HZ not asked for",
    );
    let start = clock.now();
    rig.machine.run_until(start.saturating_add(FALLBACK_SPAN));
    let period_ns = (1_000_000_000 + u64::from(p.hz) / 2) / u64::from(p.hz);
    let period_clocks = (period_ns as u128 * PIT_HZ as u128).div_ceil(1_000_000_000);
    let want = (FALLBACK_SPAN.as_nanos() as u128 * PIT_HZ as u128 / (period_clocks * 1_000_000_000))
        as u64;
    assert_eq!(
        pit.interrupts(),
        want,
        "{}: interrupts of the PIT stand-in in {FALLBACK_SPAN} at HZ = {} ({period_clocks} clocks a period)",
        p.source,
        p.hz
    );
    assert_eq!(
        rig.stats(p, 0).ticks,
        want,
        "{}: ticks on the PIT stand-in",
        p.source
    );
    rig.assert_no_device_errors(p);
    rig
}

/// The rate of the TSC stand-in [`calibrates_a_3ghz_tsc`] measures.
pub const CALIBRATED_TSC: Hertz = Hertz::new(3_000_000_000);

/// The window [`calibrates_a_3ghz_tsc`] asks `calibrate` for.
pub const CALIBRATION_WINDOW: Nanos = Nanos::from_millis(10);

/// A source as a calibration reference: `calibrate` measures a 3 GHz TSC
/// stand-in against `reference` over a [`CALIBRATION_WINDOW`] and must come
/// within the error it states, and state no more than its own bound allows:
/// half of each bracket plus one reference clock of quantisation at each
/// end, over the window, plus one TSC cycle of the 30 million counted. A
/// bracket is one reference read; on a bus whose access takes time
/// ([`SlowBus`](crate::SlowBus)) it spans at most `max_bracket_clocks`
/// clocks of `reference_rate` (the datasheet rate, not the driver's), so
/// the bound is ⌈(max_bracket_clocks + 2) · 10⁶ / window clocks⌉ + 1 ppm.
/// Returns the calibration for the source's own checks.
pub fn calibrates_a_3ghz_tsc(
    source: &str,
    clock: &Arc<VirtualClock>,
    reference: &dyn ClockSource,
    reference_rate: Hertz,
    max_bracket_clocks: u64,
) -> Calibration {
    let tsc = SimCounter::new(clock.clone(), CounterConfig::new("tsc", CALIBRATED_TSC));
    let c = calibrate(
        reference,
        || tsc.read(),
        tsc.mask(),
        CALIBRATION_WINDOW,
        100_000,
    )
    .unwrap_or_else(|e| panic!("{source}: calibration against it failed: {e:?}"));
    let off = ppm_off(c.frequency, CALIBRATED_TSC);
    assert!(
        off <= u64::from(c.error_ppm),
        "{source}: {c:?} is off by {off} ppm, more than the error it states"
    );
    let window_clocks = c.window.as_nanos() as u128 * reference_rate.get() as u128 / 1_000_000_000;
    let bound = (u128::from(max_bracket_clocks + 2) * 1_000_000).div_ceil(window_clocks.max(1)) + 1;
    assert!(
        u128::from(c.error_ppm) <= bound,
        "{source}: {c:?} states more error than its brackets allow ({bound} ppm)"
    );
    c
}

fn cpu_id(index: usize) -> CpuId {
    CpuId::from_index(index).unwrap_or(CpuId::new(u32::MAX))
}
