//! The HPET driver over its model in the simulator: the model is the only
//! device and its main counter the only clocksource, unless a test says
//! otherwise.
//!
//! `cargo test -p hpet` runs the periodic-only build (no feature
//! `oneshot`); `cargo test -p hpet --features oneshot` the tickless one.
//!
//! Time: the model runs on the simulator's virtual clock (true time). The
//! probe needs time to pass to see the counter count, so while probing each
//! register access costs 1 µs (an uncached HPET read costs ≈1 µs on
//! hardware); afterwards accesses are free. The counter is restarted from 0
//! during the probe, so the tick layer's monotonic clock is true time minus
//! that instant — an exact offset: QEMU's 10 ns tick divides the 1 µs
//! steps, and its mult/shift is exact.

use std::sync::Arc;

use clockevents::{CpuId, CpuMask, Features};
use clocksource::{ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};
use hpet::model::{HpetModel, HpetModelConfig};
use hpet::{probe, CounterPeriod, HpetClockEvent, HpetClockSource, HpetError, Route};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::{IdleDepth, TickConfig, TickMode};

/// The driver's two halves over one leaked model.
struct Hpet {
    model: &'static HpetModel,
    cs: &'static HpetClockSource<'static, HpetModel>,
    dev: &'static HpetClockEvent<'static, HpetModel>,
}

/// Probes a model of `config` and builds the clock source and the legacy
/// clock-event device, as a kernel's boot code does; `Err` is the probe's
/// refusal.
fn bring_up(clock: &Arc<VirtualClock>, config: HpetModelConfig) -> Result<Hpet, HpetError> {
    let model: &'static HpetModel = Box::leak(Box::new(HpetModel::new(clock.clone(), config)));
    bring_up_model(clock, model)
}

fn bring_up_model(clock: &Arc<VirtualClock>, model: &'static HpetModel) -> Result<Hpet, HpetError> {
    let c = clock.clone();
    model.set_access_hook(Some(Arc::new(move || {
        c.advance_by(Nanos::from_micros(1));
    })));
    let probed = probe(model);
    model.set_access_hook(None);
    let info = probed?;
    let cs = Box::leak(Box::new(HpetClockSource::new(model, &info)));
    let dev = Box::leak(Box::new(HpetClockEvent::new(
        model,
        &info,
        Route::Legacy,
        CpuMask::ALL,
    )?));
    Ok(Hpet { model, cs, dev })
}

fn config(hz: u32, nohz: bool, highres: bool) -> TickConfig {
    TickConfig { hz, nohz, highres }
}

/// One CPU running on the HPET alone.
fn machine(clock: &Arc<VirtualClock>, cfg: TickConfig, h: &Hpet) -> Machine<1> {
    let mut m = Machine::new(clock.clone(), Trace::new(), cfg, h.cs);
    m.add_driver(h.dev, h.model);
    m
}

fn add(t: Ktime, d: Nanos) -> Ktime {
    t.saturating_add(d)
}

#[test]
fn periodic_hz250_for_10s_gives_exactly_2500_interrupts_ticks_and_jiffies() {
    let clock = VirtualClock::new();
    let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
    let mut m = machine(&clock, config(250, false, false), &h);
    assert_eq!(m.tick.mode(CpuId::BOOT), TickMode::Periodic);
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
    let t0 = clock.now();
    // 4 ms at QEMU's 100 MHz is exactly 400 000 ticks: no rounding drift.
    m.run_until(add(t0, Nanos::from_secs(10)));
    assert_eq!(h.model.interrupts(0), 2500);
    assert_eq!(h.model.coalesced(0), 0);
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.stats.interrupts, 2500);
    assert_eq!(info.stats.ticks, 2500);
    assert_eq!(m.tick.jiffies(), 2500);
    // The 2500th came at exactly t0 + 10 s; the next is one period on.
    assert_eq!(
        hw::InterruptSource::next_fire(h.model),
        Some(add(t0, Nanos::from_millis(10_004)))
    );
    assert_eq!(m.trace.device_errors(), []);
}

#[test]
fn hpet_refused_for_a_zero_period_and_the_machine_runs_on_another_source() {
    let clock = VirtualClock::new();
    let period0 = HpetModelConfig::qemu().period(CounterPeriod::from_fs(0));
    assert_eq!(bring_up(&clock, period0).err(), Some(HpetError::ZeroPeriod));
    runs_without_hpet(&clock);
}

#[test]
fn hpet_refused_for_a_stuck_counter_and_the_machine_runs_on_another_source() {
    let clock = VirtualClock::new();
    let model: &'static HpetModel = Box::leak(Box::new(HpetModel::new(
        clock.clone(),
        HpetModelConfig::qemu(),
    )));
    model.set_counter_stuck(true);
    assert_eq!(
        bring_up_model(&clock, model).err(),
        Some(HpetError::CounterNotCounting)
    );
    assert!(!model.is_counting());
    runs_without_hpet(&clock);
}

/// The fallback a kernel takes when the HPET is refused: another counter
/// (an ACPI PM timer stand-in) and another tick device (a PIT stand-in).
fn runs_without_hpet(clock: &Arc<VirtualClock>) {
    let trace = Trace::new();
    let pm = SimCounter::new(
        clock.clone(),
        CounterConfig::new("acpi_pm", Hertz::new(3_579_545))
            .width(24)
            .rating(200)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
    )
    .leak();
    let pit = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("pit", Hertz::new(1_193_182))
            .features(Features::PERIODIC)
            .rating(0)
            .min_delta(Cycles::new(2))
            .max_delta(Cycles::new(0xFFFF))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .with_trace(trace.clone())
    .leak();
    let mut m: Machine<1> = Machine::new(clock.clone(), trace, config(250, false, false), pm);
    m.add_device(pit);
    let t0 = clock.now();
    m.run_until(add(t0, Nanos::from_secs(1)));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "acpi_pm");
    assert_eq!(m.tick.cpu_info(CpuId::BOOT).unwrap().device, Some("pit"));
    // 4 ms is 4773 PIT ticks at 1.193182 MHz, 4.000 227 ms: 249 in 1 s.
    assert_eq!(pit.interrupts(), 249);
}

#[cfg(not(feature = "oneshot"))]
#[test]
fn without_oneshot_nohz_is_refused_and_the_tick_stays_periodic_through_idle() {
    let clock = VirtualClock::new();
    let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
    let mut m = machine(&clock, config(250, true, true), &h);
    assert_eq!(m.tick.mode(CpuId::BOOT), TickMode::Periodic);
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(
        info.periodic_reason,
        Some(tick::PeriodicReason::DeviceLacksOneshot)
    );
    let t0 = clock.now();
    m.idle(0, IdleDepth::Shallow);
    m.run_until(add(t0, Nanos::from_secs(10)));
    assert_eq!(h.model.interrupts(0), 2500, "idle does not stop the tick");
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.stats.tick_stops, 0);
    assert_eq!(m.tick.jiffies(), 2500);
}

#[cfg(feature = "oneshot")]
mod tickless {
    use super::*;
    use clocksource::ClockParams;

    /// Linux `HPET_MIN_PROG_DELTA`, 192 ticks, in ns at 100 MHz.
    const MIN_DELTA: Nanos = Nanos::from_nanos(1_920);
    /// 0x7FFF_FFFF ticks at 100 MHz.
    const MAX_DELTA: Nanos = Nanos::from_nanos(21_474_836_470);

    /// True time minus monotonic time (the probe's restart of the counter).
    fn offset(m: &Machine<1>, clock: &VirtualClock) -> Nanos {
        clock.now().saturating_since(m.now())
    }

    #[test]
    fn nohz_idle_10s_with_one_timer_takes_exactly_one_interrupt() {
        let clock = VirtualClock::new();
        let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
        let mut m = machine(&clock, config(250, true, true), &h);
        assert_eq!(m.tick.mode(CpuId::BOOT), TickMode::HighRes { nohz: true });
        let off = offset(&m, &clock);
        let start = m.now();
        let expiry = add(start, Nanos::from_millis(3_700));
        m.add_timer(0, expiry, 1);
        m.idle(0, IdleDepth::Shallow);
        m.run_until(add(add(start, off), Nanos::from_secs(10)));

        // Forced wake-ups in these 10 s: by the device's max delta, none
        // (0x7FFF_FFFF ticks = 21.47 s); by the clocksource's max
        // deferment, none (64-bit counter: capped at 600 s of range, so
        // ≈267 s). Exactly the timer's interrupt.
        assert!(m.tick.timekeeper().max_deferment() > Nanos::from_secs(250));
        assert_eq!(h.model.interrupts(0), 1);
        let fired = m.fired();
        assert_eq!(fired.len(), 1);
        let f = fired[0];
        // On time to one tick: the core rounds the delta up to whole ticks
        // (never fewer than exact), which may add one 10 ns tick.
        assert!(
            f.at >= expiry && f.at <= add(expiry, Nanos::from_nanos(10)),
            "{f:?}"
        );
        assert_eq!(f.true_time, add(f.at, off));
        let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
        assert_eq!(info.stats.max_deferment_wakeups, 0);
        assert_eq!(info.stats.interrupts, 1);

        // With nothing left, the device is re-armed for its max delta from
        // the timer's interrupt: the one forced wake-up, at 3.7 + 21.47 s.
        let forced = add(f.true_time, MAX_DELTA);
        assert_eq!(hw::InterruptSource::next_fire(h.model), Some(forced));
        m.run_until(add(forced, Nanos::from_secs(1)));
        assert_eq!(h.model.interrupts(0), 2);
        assert_eq!(m.trace.device_errors(), []);
    }

    #[test]
    fn highres_1000_random_timers_fire_in_order_never_early() {
        let clock = VirtualClock::new();
        let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
        let mut m = machine(&clock, config(250, true, true), &h);
        let off = offset(&m, &clock);
        let start = m.now();
        let mut x = 0x5EED_u64;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut expiry = std::collections::HashMap::new();
        for id in 0..1000u64 {
            let at = add(start, Nanos::from_nanos(1 + rng() % 2_000_000_000));
            m.add_timer(0, at, id);
            expiry.insert(id, at);
        }
        m.idle(0, IdleDepth::Shallow);
        m.run_until(add(add(start, off), Nanos::from_secs(3)));
        let fired = m.fired();
        assert_eq!(fired.len(), 1000);
        let mut last = Ktime::ZERO;
        let mut seen = std::collections::HashSet::new();
        for f in &fired {
            assert!(seen.insert(f.data), "timer {} fired twice", f.data);
            assert_eq!(expiry[&f.data], f.expires);
            assert!(f.at >= f.expires, "early: {f:?}");
            assert!(
                f.true_time >= add(f.expires, off),
                "early in true time: {f:?}"
            );
            // Late by at most the minimum delta (a timer closer than it is
            // forced to it) plus one 10 ns tick (deltas round up to ticks).
            assert!(
                f.at.saturating_since(f.expires)
                    <= add(Ktime::ZERO, MIN_DELTA)
                        .saturating_add(Nanos::from_nanos(10))
                        .saturating_since(Ktime::ZERO),
                "late: {f:?}"
            );
            assert!(f.expires >= last, "out of order: {f:?}");
            last = f.expires;
        }
        assert_eq!(
            m.tick.cpu_info(CpuId::BOOT).unwrap().stats.program_failures,
            0
        );
        assert_eq!(m.trace.device_errors(), []);
    }

    #[test]
    fn comparator_race_is_reported_too_late_and_the_retry_still_delivers() {
        let clock = VirtualClock::new();
        let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
        let mut m = machine(&clock, config(250, true, true), &h);
        let off = offset(&m, &clock);
        m.idle(0, IdleDepth::Shallow);
        // The ICH9 stale write: comparator writes land 2 ticks late. And
        // accesses that take time, 1 µs each (an uncached HPET read on
        // hardware; a VM exit in a guest): without time passing between
        // the driver's counter read and its read-back there is no race.
        h.model.set_comparator_write_delay(Cycles::new(2));
        let c = clock.clone();
        h.model.set_access_hook(Some(Arc::new(move || {
            c.advance_by(Nanos::from_micros(1));
        })));
        // A timer 4 µs from a clock read. add_timer reads the clock again
        // (1 µs), leaving Δ = 3 µs = 300 ticks; the driver's read, write
        // and read-back take 2 µs = 200 ticks from read to read-back, so
        // the margin is 100 < 128: TooLate. The core then forces its
        // minimum, 192 ticks (margin −8): TooLate three times
        // (MIN_DELTA_TRIES), raises min_delta to 5 µs (500 ticks, margin
        // 300) and succeeds: 4 TooLate, 1 raise.
        let now = m.now();
        let expiry = add(now, Nanos::from_micros(4));
        m.add_timer(0, expiry, 1);
        let stats = m.tick.cpu_device_stats(CpuId::BOOT).unwrap();
        assert_eq!(
            (stats.too_late, stats.min_delta_raised),
            (4, 1),
            "{stats:?}"
        );
        m.run_until(add(clock.now(), Nanos::from_millis(1)));
        h.model.set_access_hook(None);

        let fired = m.fired();
        assert_eq!(fired.len(), 1, "delivered: {fired:?}");
        let f = fired[0];
        assert!(f.at >= f.expires, "early: {f:?}");
        assert!(f.true_time >= add(f.expires, off), "early: {f:?}");
        // Not lost until a 32-bit wrap (42.9 s): within microseconds.
        assert!(
            f.at.saturating_since(f.expires) < Nanos::from_micros(100),
            "{f:?}"
        );
        assert_eq!(
            m.tick.cpu_info(CpuId::BOOT).unwrap().stats.program_failures,
            0
        );
    }

    #[test]
    fn thirty_two_bit_hpet_at_14_318_mhz_idles_1000_s_waking_for_max_deferment() {
        let clock = VirtualClock::new();
        let h = bring_up(&clock, HpetModelConfig::chipset().counter_64bit(false)).unwrap();
        let mut m = machine(&clock, config(250, true, true), &h);
        let max_def = m.tick.timekeeper().max_deferment();
        // Linux's 133.48 s for this counter, which wraps every 299.97 s.
        assert_eq!(max_def.as_nanos() / 10_000_000, 13_348);
        // The device could wait longer (0x7FFF_FFFF ticks = 149.98 s), so
        // the clocksource sets the pace.
        let c0 = h.model.counter().get();
        m.idle(0, IdleDepth::Shallow);
        let before = h.model.interrupts(0);
        let end = add(clock.now(), Nanos::from_secs(1_000));
        m.run_until(end);
        let expected = 1_000_000_000_000 / max_def.as_nanos();
        assert_eq!(expected, 7);
        let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
        assert_eq!(info.stats.max_deferment_wakeups, expected);
        assert_eq!(h.model.interrupts(0) - before, expected);
        // The counter wrapped three times (1000 s / 299.97 s); no time is
        // lost: monotonic time is the counter's ticks since the timekeeper
        // started, at the nominal 14 318 180 Hz.
        m.busy(0);
        let ticks = h.model.counter().get() + 3 * (1 << 32) - c0;
        let want = Hertz::new(14_318_180).exact_cycles_to_ns(Cycles::new(ticks));
        let got = m.now().saturating_since(Ktime::ZERO);
        // Within the mult/shift bound (clocksource::mult_shift): the
        // timekeeper carries the fraction across updates, so the total is
        // one conversion of all the ticks, off by ≤ ticks / 2^(shift+1) + 1
        // ns (≈ 214 ns here), plus the exact value's own truncation.
        let shift = ClockParams::for_source(h.cs).unwrap().conv.0.shift();
        let bound = (ticks >> (shift + 1)) + 2;
        assert!(
            got.as_nanos().abs_diff(want.as_nanos()) <= bound,
            "{got} vs {want} (bound {bound} ns)"
        );
    }

    #[test]
    fn hpet_is_the_broadcast_device_for_cpus_whose_lapic_stops_in_deep_idle() {
        let clock = VirtualClock::new();
        let h = bring_up(&clock, HpetModelConfig::qemu()).unwrap();
        let trace = Trace::new();
        let mut m: Machine<2> =
            Machine::new(clock.clone(), trace.clone(), config(250, true, true), h.cs);
        for cpu in 0..2 {
            let lapic = SimEventDevice::new(
                clock.clone(),
                EventConfig::new(["lapic0", "lapic1"][cpu], Hertz::new(1_000_000_000))
                    .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
                    .stops_in_deep_idle(true)
                    .rating(100)
                    .min_delta(Cycles::new(1_000))
                    .cpus(CpuMask::single(CpuId::new(cpu as u32))),
            )
            .with_trace(trace.clone())
            .leak();
            m.add_device(lapic);
        }
        m.add_driver(h.dev, h.model);
        assert_eq!(m.tick.broadcast_device(), Some("hpet"));
        let start = m.now();
        for id in 0..100u64 {
            let at = add(start, Nanos::from_millis(10 + 7 * id));
            m.add_timer((id % 2) as usize, at, id);
        }
        for cpu in 0..2 {
            m.idle(cpu, IdleDepth::Deep);
        }
        m.run_until(add(clock.now(), Nanos::from_secs(1)));
        assert_eq!(m.deep_idle_refused(), 0);
        let fired = m.fired();
        assert_eq!(fired.len(), 100);
        for f in &fired {
            assert!(f.at >= f.expires, "early: {f:?}");
        }
        assert!(h.model.interrupts(0) >= 100, "the HPET woke them");
    }
}
