//! The PIT driver over its model, in the simulator, with the real tick
//! layer. Virtual time, so every count is exact.
//!
//! Two clocks appear here: the simulator's true time (the model counts PIT
//! edges from it: edge `j` is at `⌈j·10⁹/1193182⌉` ns) and the tick
//! layer's monotonic time (from the clocksource: a 1 GHz counter, exact to
//! the nanosecond, or PIT counter 2 itself).
//!
//! `cargo test -p pit` runs the periodic-only build; `cargo test -p pit
//! --features oneshot` the tickless one. Tests gated on the feature say so.
//!
//! The scenarios every tick device passes come from `sim::conformance`,
//! through [`pit_rig`]; the checks after each call are the PIT's own.

use std::sync::Arc;

use clockevents::{ClockEventDevice, CpuId, CpuMask, Features};
use clocksource::{calibrate, ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};
use pit::model::PitModel;
use pit::regs::{pit_latch, Channel};
use pit::{Ch2Options, Pit, PitClockEvent, PitClockSource, PitError};
use sim::conformance::{self, Profile};
use sim::rng::XorShift64;
use sim::{
    Absent, CounterConfig, Edges, EventConfig, Machine, SimCounter, SimEventDevice, SlowBus, Trace,
    VirtualClock,
};
use tick::{IdleDepth, PeriodicReason, TickConfig, TickMode};

/// The PIT's input clock, 1.193182 MHz (Intel 82C54 datasheet; the PC's
/// 14.31818 MHz crystal divided by 12).
const F: u64 = 1_193_182;
/// PIT edges on the simulator's true time.
const EDGES: Edges = Edges::new(Hertz::new(F));

/// PIT edges passed at true time `t`.
fn edges_at(t: Ktime) -> u64 {
    EDGES.at(t)
}

/// The instant of PIT edge `j`.
fn edge(j: u64) -> Ktime {
    EDGES.edge(j)
}

fn config(hz: u64, nohz: bool, highres: bool) -> TickConfig {
    TickConfig::new(Hertz::new(hz))
        .with_nohz(nohz)
        .with_highres(highres)
}

/// A 1 GHz 64-bit clocksource: monotonic time = true time, to the ns.
fn exact_clock(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000))
            .rating(300)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
    )
    .leak()
}

fn pit_event(model: &'static PitModel) -> &'static PitClockEvent<'static> {
    Box::leak(Box::new(PitClockEvent::new(
        Pit::new(model),
        CpuMask::single(CpuId::BOOT),
    )))
}

/// The PIT's counter 0 as the only tick device, on a 1 GHz clocksource.
fn pit_tick_machine(cfg: TickConfig) -> (Machine<1>, &'static PitModel) {
    let mut model = None;
    let m = pit_rig(&mut model)(&VirtualClock::new(), &Trace::new(), cfg);
    (m, model.unwrap())
}

/// The bring-up the conformance suite calls: counter 0 as the only tick
/// device, on a 1 GHz clocksource; the model is left in `out` for the
/// checks that follow.
fn pit_rig<'a>(
    out: &'a mut Option<&'static PitModel>,
) -> impl FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<1> + 'a {
    move |clock, trace, cfg| {
        let model = PitModel::new(clock.clone()).leak();
        let mut m = Machine::new(clock.clone(), trace.clone(), cfg, exact_clock(clock));
        m.add_driver(pit_event(model), model);
        *out = Some(model);
        m
    }
}

/// Counter 0 at the i8254's 1.193182 MHz (the 8254 datasheet's CLK, Linux
/// `PIT_TICK_RATE`), as the conformance suite sees it.
const PIT: Profile = Profile {
    source: "pit",
    hz: 100,
    // PIT_LATCH(100) = 11932 clocks = 10.000151 ms: the last of the 10 s'
    // interrupts is at 9.990152 s, so floor(9.990152 s / 10 ms) = 999.
    periodic_jiffies: 999,
    // Linux drivers/clocksource/i8253.c registers counter 0 with a max
    // delta of 0x7FFF clocks; in mode 0 the count loads on the clock after
    // the write (8254 datasheet), so one programming waits 0x8000 clocks:
    // 27.462 700 67 ms.
    max_delta: Nanos::from_nanos(27_462_700),
    // Under three clocks of 839 ns: the load clock and the round-up of the
    // delay to whole clocks.
    timer_late: Nanos::from_nanos(3 * 839 - 1),
    // Under 18 clocks: a timer due within the min delta of the previous
    // interrupt is forced to it, 0xF clocks (Linux i8253.c) → 12.572 µs →
    // 16 clocks, firing after 17.
    max_late: Nanos::from_nanos(18 * 839 - 1),
};

/// The model behind a bus on which every access takes 1 µs of true time
/// (ISA I/O is ~1 µs; a VM exit more).
fn slow_bus(
    clock: &Arc<VirtualClock>,
    pit: &'static PitModel,
) -> &'static SlowBus<'static, PitModel> {
    SlowBus::new(clock, pit, Nanos::from_micros(1)).leak()
}

// ----- counter 0 as the tick device ----------------------------------------

/// IRQ0 instants of the periodic tick started at true time 0: the control
/// word's edge at once (mode 2 lifts OUT0 from the low level the shutdown
/// left), then one per reload at edges `1 + j·PIT_LATCH` (the count loads
/// on the edge after the write, edge 1).
fn periodic_irqs_until(t: Ktime, latch: u64) -> Vec<Ktime> {
    let mut v = vec![Ktime::ZERO];
    let mut j = 1;
    while edge(1 + j * latch) <= t {
        v.push(edge(1 + j * latch));
        j += 1;
    }
    v
}

#[test]
fn periodic_hz100_ticks_every_11932_clocks_not_every_10ms() {
    let mut model = None;
    conformance::periodic_10s(&PIT, pit_rig(&mut model));
    let model = model.unwrap();

    // 11932 / 1193182 s = 10.000151 ms: the 1000th period would end at
    // 10.000151 s, after the run. So 999 reloads, plus the edge at attach.
    let latch = pit_latch(100) as u64;
    assert_eq!(latch, 11_932);
    let expected = periodic_irqs_until(Ktime::from_secs(10), latch);
    assert_eq!(expected.len(), 1_000);
    assert_eq!(model.interrupt_times(), expected);
    // Jiffies come from the clocksource at each interrupt: the last one is
    // at 9.990152 s, so floor(9.990152 s / 10 ms) = 999 — not the 1000
    // interrupts, and not floor(10 s / 10 ms) = 1000 either.
    assert_eq!(*expected.last().unwrap(), Ktime::from_nanos(9_990_151_545));
    assert_eq!(model.coalesced(), 0);
}

#[test]
fn periodic_hz100_jiffies_run_ahead_of_pit_periods_over_2000_s() {
    // The PIT's 10.000151 ms period loses 1 jiffy every 663 s against the
    // clocksource: after 2000 s, 199996 reloads have happened, but the
    // clocksource says 199999 jiffies. Time comes from the clock, never
    // from counting interrupts.
    let (mut m, model) = pit_tick_machine(config(100, false, false));
    let end = Ktime::from_secs(2_000);
    m.run_until(end);
    let reloads = (edges_at(end) - 1) / 11_932;
    assert_eq!(reloads, 199_996);
    assert_eq!(model.interrupts(), reloads + 1);
    let last = edge(1 + reloads * 11_932);
    assert_eq!(m.tick.jiffies(), last.as_nanos() / 10_000_000);
    assert_eq!(m.tick.jiffies(), 199_999);
}

#[cfg(not(feature = "oneshot"))]
#[test]
fn without_oneshot_nohz_stays_periodic_because_the_device_lacks_oneshot() {
    let mut model = None;
    let rig = conformance::stays_periodic_without_tickless(
        &PIT,
        PeriodicReason::DeviceLacksOneshot,
        pit_rig(&mut model),
    );
    assert_eq!(
        model.unwrap().interrupt_times(),
        periodic_irqs_until(Ktime::from_secs(10), 11_932),
        "idle does not stop a periodic tick"
    );
    // The timer runs at the first tick at or after 3.7 s: reload 370 at
    // edge 1 + 370·11932, 3.700056 s.
    assert_eq!(rig.machine.fired()[0].true_time, edge(1 + 370 * 11_932));
}

#[cfg(feature = "oneshot")]
#[test]
fn nohz_idle_timer_at_3_7s_rearms_every_max_delta_and_fires_on_time() {
    let mut model = None;
    let rig = conformance::nohz_idle_one_timer(&PIT, pit_rig(&mut model));
    let model = model.unwrap();

    // The core clamps every delay to max_delta = 0x7FFF clocks
    // (27.461862 ms, rounded down) and programs 0x7FFF; the count loads on
    // the next clock, so each hop is 0x8000 clocks (27.462700 ms), and the
    // writes happen exactly on edges (in the handler): hop k ends at edge
    // 0x8000·k. The last hop is programmed with what remains.
    let expiry = Ktime::from_millis(3_700);
    let max_delta_ns = (0x7FFFu128 * 1_000_000_000 / F as u128) as u64;
    assert_eq!(max_delta_ns, 27_461_862);
    let mut hops = 1u64;
    while expiry.as_nanos() - edge(0x8000 * hops).as_nanos() > max_delta_ns {
        hops += 1;
    }
    // The same as ⌈3.7 s / hop⌉: 134 full hops and the last one.
    assert_eq!(hops + 1, (37 * F).div_ceil(10 * 0x8000));
    assert_eq!(hops + 1, 135);
    let irqs = model.interrupt_times();
    assert_eq!(irqs.len() as u64, hops + 1, "{irqs:?}");
    for (k, t) in irqs.iter().take(hops as usize).enumerate() {
        assert_eq!(*t, edge(0x8000 * (k as u64 + 1)));
    }
    let late = rig.machine.fired()[0].true_time.saturating_since(expiry);
    println!(
        "3.7 s timer on the PIT: {} interrupts, late by {late}",
        irqs.len()
    );
}

#[cfg(feature = "oneshot")]
#[test]
fn nohz_idle_1s_with_nothing_queued_rearms_every_0x8000_clocks() {
    // ⌊1 s / 27.4627 ms⌋ = 36 forced re-arms, hop k ending at edge
    // 0x8000·k.
    let mut model = None;
    conformance::max_delta_rearms(&PIT, Nanos::from_secs(1), pit_rig(&mut model));
    let irqs = model.unwrap().interrupt_times();
    assert_eq!(irqs.len(), 36);
    for (k, t) in irqs.iter().enumerate() {
        assert_eq!(*t, edge(0x8000 * (k as u64 + 1)));
    }
}

#[cfg(feature = "oneshot")]
#[test]
fn highres_timers_on_the_pit_never_fire_early() {
    let mut model = None;
    conformance::random_timers(&PIT, pit_rig(&mut model));
    assert_eq!(model.unwrap().coalesced(), 0);
}

// ----- counter 2 as the clocksource ---------------------------------------

#[test]
fn driver_latch_reads_match_the_model_while_counting() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    clock.advance_to(Ktime::from_nanos(12_345));
    let cs = PitClockSource::new(Pit::new(model), Ch2Options::REFERENCE);
    let load = edges_at(clock.now()) + 1;
    let mut r = XorShift64::new(0x2545_F491_4F6C_DD1D);
    let mut prev: Option<(Ktime, Cycles)> = None;
    for _ in 0..5_000 {
        // Steps of up to 60 ms: some cross a wrap, some more than one.
        let t = clock.advance_by(Nanos::from_nanos(r.next_u64() % 60_000_000));
        let now = cs.read();
        let k = edges_at(t) - load;
        assert_eq!(now.get(), (k + 0xFFFF) % 0x1_0000, "at {t}");
        assert_eq!(
            model.peek_count(Channel::Ch2),
            0xFFFF - now.get() as u32,
            "read = mask − count"
        );
        if let Some((t0, c0)) = prev {
            let passed = edges_at(t) - edges_at(t0);
            if passed <= 0xFFFF {
                assert_eq!(now.wrapping_delta(c0, cs.mask()).get(), passed);
            }
        }
        prev = Some((t, now));
    }
    // Counter 0 latched the same way while it runs periodically.
    let ev = PitClockEvent::new(Pit::new(model), CpuMask::single(CpuId::BOOT));
    ev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    let start = edges_at(clock.now()) + 1;
    clock.advance_by(Nanos::from_micros(1_234));
    let k = edges_at(clock.now()) - start;
    assert_eq!(
        Pit::new(model).latch_count(Channel::Ch0) as u64,
        4_773 - k % 4_773
    );
}

#[test]
fn probe_sees_a_counting_pit_within_two_reads_over_slow_port_io() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let bus = slow_bus(&clock, model);
    let cs = PitClockSource::new(Pit::new(bus), Ch2Options::REFERENCE);
    // A read is 3 µs of port I/O: more than three PIT clocks.
    assert_eq!(cs.probe(pit::source::PROBE_READS), Ok(2));
}

#[test]
fn probe_reports_a_missing_pit_instead_of_hanging() {
    let bus = Absent::new();
    let cs = PitClockSource::new(Pit::new(&bus), Ch2Options::REFERENCE);
    assert_eq!(
        cs.probe(1_000),
        Err(PitError::NotCounting {
            reads: 1_000,
            value: 0xFFFF
        })
    );
    assert_eq!(
        cs.read(),
        Cycles::ZERO,
        "0xFFFF − 0xFFFF: stuck, not garbage"
    );
}

#[test]
fn probe_reports_a_pit_whose_clock_is_gated_off() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let bus = slow_bus(&clock, model);
    let cs = PitClockSource::new(Pit::new(bus), Ch2Options::REFERENCE);
    model.set_clock_running(false);
    assert!(matches!(
        cs.probe(100),
        Err(PitError::NotCounting { reads: 100, .. })
    ));
    // And calibrating against it is a typed error, not a hang.
    let tsc = SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(3_000_000_000)),
    );
    assert_eq!(
        calibrate(
            &cs,
            || tsc.read(),
            tsc.mask(),
            Nanos::from_millis(10),
            10_000
        ),
        Err(clocksource::CalibrationError::ReferenceStopped)
    );
}

#[test]
fn calibrates_a_3ghz_tsc_against_counter_2_within_the_stated_bound() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let cs = PitClockSource::new(Pit::new(slow_bus(&clock, model)), Ch2Options::REFERENCE);
    // A bracket is one 3 µs read (3.58 PIT clocks: at most 4 wide), so at
    // most 2 + 2 + 2 = 6 clocks of the ≥ 11932 in the 10 ms window
    // (503 ppm), plus one TSC cycle of the 30 million counted (1 ppm).
    let c = conformance::calibrates_a_3ghz_tsc("pit", &clock, &cs, Hertz::new(F), 4);
    assert!(c.error_ppm <= 504, "{c:?}");
}

#[test]
fn counter_2_as_the_only_clock_keeps_the_tick_periodic_and_time_exact() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let cs: &'static PitClockSource<'static> = Box::leak(Box::new(PitClockSource::new(
        Pit::new(model),
        Ch2Options::REFERENCE,
    )));
    // Start past the load clock; the timekeeper's zero is here.
    let t0 = clock.advance_to(Ktime::from_millis(1));
    let mut m: Machine<1> = Machine::new(clock.clone(), Trace::new(), config(250, true, true), cs);
    let dev = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic0", Hertz::new(1_000_000_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .min_delta(Cycles::new(1_000))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .leak();
    m.add_device(dev);
    // NO_HZ and high-res were asked for; the clock is not valid for them.
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.mode, TickMode::Periodic);
    assert_eq!(info.periodic_reason, Some(PeriodicReason::ClockNotHres));

    // Max deferment: the 16-bit wrap (0x10000 / 1.193182 MHz = 54.925 ms)
    // converted with mult less its 11 % slew margin, halved: 24.4 ms. A
    // periodic tick never comes near it.
    let max_def = m.tick.timekeeper().max_deferment();
    assert_eq!(max_def.as_nanos() / 100_000, 244, "{max_def}");

    let before = dev.interrupts();
    m.idle(0, IdleDepth::Shallow);
    let idle_at = clock.now();
    let end = idle_at.saturating_add(Nanos::from_secs(2));
    m.run_until(end);
    // The tick is kept in idle: one interrupt per 4 ms period of the exact
    // (1 GHz) device, 2 s × 250 Hz, each a tick; none forced.
    assert_eq!(dev.interrupts() - before, 500);
    let after = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(after.stats.ticks - info.stats.ticks, 500);
    assert_eq!(after.stats.max_deferment_wakeups, 0);

    // ~36 wraps later, monotonic time is the exact conversion of the PIT
    // edges since the timekeeper started, and within one PIT clock plus
    // the conversion bound of true time.
    let c = edges_at(end) - edges_at(t0);
    assert!(c / 0x1_0000 >= 36, "{c} edges");
    let conv = m.tick.timekeeper().params().conv.0;
    let mono = m.now();
    assert_eq!(mono.as_nanos(), conv.apply(c));
    let truth = end.saturating_since(t0).as_nanos();
    let bound = 839 + conv.error_bound(c);
    assert!(
        mono.as_nanos().abs_diff(truth) <= bound,
        "mono {mono} vs true {truth} ns, bound {bound}"
    );
}

/// Counter 2 wraps every 0x10000 clocks (54.925 ms at 1.193182 MHz): a
/// read more than that after the last update has lost a whole wrap, and
/// one more than 7/8 of it after (48.06 ms, the timekeeper's
/// `max_raw_delta`, as Linux's) is taken for a counter gone backwards and
/// stalls time. Linux's PIT clocksource (drivers/clocksource/i8253.c) is
/// never `VALID_FOR_HRES`, so the tick stays periodic on it and the clock
/// is read every tick: an interrupt 40 ms late comes 4 + 40 = 44 ms after
/// the last read (HZ=250), inside both. A NO_HZ wake-up at the 24.4 ms max
/// deferment, 40 ms late, would come 64.4 ms after it and lose 54.9 ms.
#[test]
fn an_interrupt_40ms_late_loses_no_time_on_counter_2() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let cs: &'static PitClockSource<'static> = Box::leak(Box::new(PitClockSource::new(
        Pit::new(model),
        Ch2Options::REFERENCE,
    )));
    let t0 = clock.advance_to(Ktime::from_millis(1));
    let mut m: Machine<1> = Machine::new(clock.clone(), Trace::new(), config(250, true, true), cs);
    let dev = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic0", Hertz::new(1_000_000_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .min_delta(Cycles::new(1_000))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .leak();
    m.add_device(dev);
    m.idle(0, IdleDepth::Shallow);
    let idle_at = clock.now();
    m.run_until(idle_at.saturating_add(Nanos::from_millis(10)));
    dev.late_by(Nanos::from_millis(40));
    m.run_until(idle_at.saturating_add(Nanos::from_millis(80)));
    dev.late_by(Nanos::ZERO);
    let end = idle_at.saturating_add(Nanos::from_secs(1));
    m.run_until(end);

    let truth = end.saturating_since(t0).as_nanos();
    let mono = m.now().as_nanos();
    let conv = m.tick.timekeeper().params().conv.0;
    let bound = 839 + conv.error_bound(edges_at(end) - edges_at(t0));
    assert!(
        mono.abs_diff(truth) <= bound,
        "mono {mono} vs true {truth} ns: {} ns lost (bound {bound})",
        truth.saturating_sub(mono)
    );
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.mode, TickMode::Periodic);
    assert_eq!(info.periodic_reason, Some(PeriodicReason::ClockNotHres));
}

#[test]
fn pit_alone_counter0_ticks_and_counter2_keeps_time() {
    // Both counters of one PIT: the tick on counter 0, time from counter 2.
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let cs: &'static PitClockSource<'static> = Box::leak(Box::new(PitClockSource::new(
        Pit::new(model),
        Ch2Options::REFERENCE,
    )));
    let t0 = clock.advance_to(Ktime::from_millis(1));
    let mut m: Machine<1> =
        Machine::new(clock.clone(), Trace::new(), config(100, false, false), cs);
    m.add_driver(pit_event(model), model);
    let end = Ktime::from_secs(10);
    m.run_until(end);
    // IRQ0: the edge at attach, then every 11932 clocks from the load.
    let load = edges_at(t0) + 1;
    let reloads = (edges_at(end) - load) / 11_932;
    assert_eq!(model.interrupts(), reloads + 1);
    // Jiffies from counter 2 at the last interrupt.
    let last = edge(load + reloads * 11_932);
    let conv = m.tick.timekeeper().params().conv.0;
    let mono_last = conv.apply(edges_at(last) - edges_at(t0));
    assert_eq!(m.tick.jiffies(), mono_last / 10_000_000);
    assert_eq!(model.interrupt_times().last(), Some(&last));
}

/// The PIT as tick device *and* clock, with counter 0's one-shot mode
/// built and NO_HZ asked for: counter 2 is not valid for high resolution,
/// so the tick stays periodic (mode 2) and idle takes every tick.
#[cfg(feature = "oneshot")]
#[test]
fn pit_alone_stays_periodic_with_oneshot_built_and_keeps_time() {
    let clock = VirtualClock::new();
    let model = PitModel::new(clock.clone()).leak();
    let cs: &'static PitClockSource<'static> = Box::leak(Box::new(PitClockSource::new(
        Pit::new(model),
        Ch2Options::REFERENCE,
    )));
    let t0 = clock.advance_to(Ktime::from_millis(1));
    let mut m: Machine<1> = Machine::new(clock.clone(), Trace::new(), config(250, true, true), cs);
    m.add_driver(pit_event(model), model);
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.mode, TickMode::Periodic);
    assert_eq!(info.periodic_reason, Some(PeriodicReason::ClockNotHres));

    m.idle(0, IdleDepth::Shallow);
    let end = clock.now().saturating_add(Nanos::from_secs(2));
    m.run_until(end);
    // Idle takes every tick: IRQ0 at attach (the control word's edge),
    // then at each reload, every PIT_LATCH(250) = 4773 clocks from the
    // load (the edge after the write).
    let load = edges_at(t0) + 1;
    let reloads = (edges_at(end) - load) / pit_latch(250) as u64;
    assert_eq!(model.interrupts(), reloads + 1);
    assert_eq!(
        m.tick
            .cpu_info(CpuId::BOOT)
            .unwrap()
            .stats
            .max_deferment_wakeups,
        0
    );
    let conv = m.tick.timekeeper().params().conv.0;
    let edges = edges_at(end) - edges_at(t0);
    assert_eq!(m.now().as_nanos(), conv.apply(edges));
}
