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
//!
//! The scenarios every tick device passes come from `sim::conformance`
//! (through [`qemu_rig`]); what follows them here is the HPET's own.

use std::sync::Arc;

use clockevents::CpuMask;
#[cfg(feature = "oneshot")]
use clockevents::{CpuId, Features};
#[cfg(feature = "oneshot")]
use clocksource::Cycles;
use clocksource::{ClockSourceFlags, Hertz, Ktime, Nanos};
use hpet::model::{HpetModel, HpetModelConfig};
use hpet::{probe, CounterPeriod, HpetClockEvent, HpetClockSource, HpetError, Route};
#[cfg(feature = "oneshot")]
use hw::InterruptSource;
use sim::conformance::{self, Profile};
use sim::{CounterConfig, Machine, SimCounter, Trace, VirtualClock};
#[cfg(feature = "oneshot")]
use sim::{EventConfig, SimEventDevice};
use tick::TickConfig;

/// The driver's two halves over one leaked model.
#[derive(Clone, Copy)]
struct Hpet {
    model: &'static HpetModel,
    cs: &'static HpetClockSource<'static, HpetModel>,
    dev: &'static HpetClockEvent<'static, HpetModel>,
    /// What the probe found.
    #[cfg_attr(not(feature = "oneshot"), allow(dead_code))]
    info: hpet::HpetInfo,
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
    Ok(Hpet {
        model,
        cs,
        dev,
        info,
    })
}

#[cfg(feature = "oneshot")]
fn config(hz: u64, nohz: bool, highres: bool) -> TickConfig {
    TickConfig::new(Hertz::new(hz))
        .with_nohz(nohz)
        .with_highres(highres)
}

/// One CPU running on the HPET alone, its interrupts in `trace`.
fn machine_traced(
    clock: &Arc<VirtualClock>,
    trace: &Trace,
    cfg: TickConfig,
    h: &Hpet,
) -> Machine<1> {
    let mut m = Machine::new(clock.clone(), trace.clone(), cfg, h.cs);
    m.add_driver(h.dev, h.model);
    m
}

/// QEMU's HPET (hw/timer/hpet.c: 100 MHz, 64-bit counter) as the
/// conformance suite sees it.
const QEMU: Profile = Profile {
    source: "hpet",
    hz: 250,
    // 4 ms is exactly 400 000 ticks of 10 ns: no rounding drift.
    periodic_jiffies: 2_500,
    // Linux arch/x86/kernel/hpet.c registers the comparator with a max
    // delta of 0x7FFF_FFFF ticks: 21.474 836 47 s at 100 MHz.
    max_delta: Nanos::from_nanos(21_474_836_470),
    // A delay rounds up to whole 10 ns ticks.
    timer_late: Nanos::from_nanos(10),
    // Linux `HPET_MIN_PROG_DELTA`, 192 ticks (1.92 µs), plus that tick.
    max_late: Nanos::from_nanos(1_930),
};

/// The bring-up the conformance suite calls: QEMU's HPET probed on the
/// suite's clock; the driver's halves are left in `out` for the checks
/// that follow.
fn qemu_rig(
    out: &mut Option<Hpet>,
) -> impl FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<1> + '_ {
    rig_of(out, HpetModelConfig::qemu())
}

fn rig_of(
    out: &mut Option<Hpet>,
    config: HpetModelConfig,
) -> impl FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<1> + '_ {
    move |clock, trace, cfg| {
        let h = bring_up(clock, config).unwrap();
        *out = Some(h);
        machine_traced(clock, trace, cfg, &h)
    }
}

fn add(t: Ktime, d: Nanos) -> Ktime {
    t.saturating_add(d)
}

#[test]
fn periodic_hz250_for_10s_gives_exactly_2500_interrupts_ticks_and_jiffies() {
    let mut h = None;
    let rig = conformance::periodic_10s(&QEMU, qemu_rig(&mut h));
    let h = h.unwrap();
    let m = &rig.machine;
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
    assert_eq!(h.model.interrupts(0), 2500);
    assert_eq!(h.model.coalesced(0), 0);
    // The 2500th came at exactly t0 + 10 s; the next is one period on.
    let t0 = rig.true_time(rig.start);
    assert_eq!(
        hw::InterruptSource::next_fire(h.model),
        Some(add(t0, Nanos::from_millis(10_004)))
    );
}

#[test]
fn hpet_refused_for_a_zero_period_and_the_machine_runs_on_another_source() {
    let rig = conformance::refused_device_falls_back(&QEMU, |clock, trace, config| {
        let period0 = HpetModelConfig::qemu().period(CounterPeriod::from_fs(0));
        assert_eq!(bring_up(clock, period0).err(), Some(HpetError::ZeroPeriod));
        without_hpet(clock, trace, config)
    });
    assert_eq!(
        rig.machine.tick.timekeeper().clocksource().name(),
        "acpi_pm"
    );
}

#[test]
fn hpet_refused_for_a_stuck_counter_and_the_machine_runs_on_another_source() {
    let mut stuck = None;
    let rig = conformance::refused_device_falls_back(&QEMU, |clock, trace, config| {
        let model: &'static HpetModel = Box::leak(Box::new(HpetModel::new(
            clock.clone(),
            HpetModelConfig::qemu(),
        )));
        model.set_counter_stuck(true);
        assert_eq!(
            bring_up_model(clock, model).err(),
            Some(HpetError::CounterNotCounting)
        );
        stuck = Some(model);
        without_hpet(clock, trace, config)
    });
    assert!(!stuck.unwrap().is_counting());
    assert_eq!(
        rig.machine.tick.timekeeper().clocksource().name(),
        "acpi_pm"
    );
}

/// What a kernel has left when the HPET is refused: another counter (an
/// ACPI PM timer stand-in, 3.579545 MHz, 24 bits) and no tick device yet;
/// `conformance::refused_device_falls_back` adds the PIT stand-in.
fn without_hpet(clock: &Arc<VirtualClock>, trace: &Trace, config: TickConfig) -> Machine<1> {
    let pm = SimCounter::new(
        clock.clone(),
        CounterConfig::new("acpi_pm", Hertz::new(3_579_545))
            .width(24)
            .rating(200)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
    )
    .leak();
    Machine::new(clock.clone(), trace.clone(), config, pm)
}

#[cfg(not(feature = "oneshot"))]
#[test]
fn without_oneshot_nohz_is_refused_and_the_tick_stays_periodic_through_idle() {
    let mut h = None;
    conformance::stays_periodic_without_tickless(
        &QEMU,
        tick::PeriodicReason::DeviceLacksOneshot,
        qemu_rig(&mut h),
    );
    assert_eq!(
        h.unwrap().model.interrupts(0),
        2500,
        "idle does not stop the tick"
    );
}

#[cfg(feature = "oneshot")]
mod tickless {
    use super::*;
    use clocksource::ClockParams;
    use tick::IdleDepth;

    /// One CPU running on the HPET alone.
    fn machine(clock: &Arc<VirtualClock>, cfg: TickConfig, h: &Hpet) -> Machine<1> {
        machine_traced(clock, &Trace::new(), cfg, h)
    }

    /// True time minus monotonic time (the probe's restart of the counter).
    fn offset(m: &Machine<1>, clock: &VirtualClock) -> Nanos {
        clock.now().saturating_since(m.now())
    }

    #[test]
    fn nohz_idle_10s_with_one_timer_takes_exactly_one_interrupt() {
        let mut h = None;
        let mut rig = conformance::nohz_idle_one_timer(&QEMU, qemu_rig(&mut h));
        let h = h.unwrap();
        let m = &mut rig.machine;
        // Forced wake-ups: by the device's max delta, none before the
        // timer (21.47 s); by the clocksource's max deferment, none (64-bit
        // counter: capped at 600 s of range, so ≈267 s).
        assert!(m.tick.timekeeper().max_deferment() > Nanos::from_secs(250));
        assert_eq!(h.model.interrupts(0), 1);
        let f = m.fired()[0];

        // With nothing left, the device is re-armed for its max delta from
        // the timer's interrupt: the one forced wake-up, at 3.7 + 21.47 s.
        let forced = add(f.true_time, QEMU.max_delta);
        assert_eq!(hw::InterruptSource::next_fire(h.model), Some(forced));
        m.run_until(add(forced, Nanos::from_secs(1)));
        assert_eq!(h.model.interrupts(0), 2);
        assert_eq!(m.trace.device_errors(), []);
    }

    #[test]
    fn nohz_idle_100s_with_nothing_queued_rearms_every_21_47s() {
        // ⌊100 s / 21.474 836 47 s⌋ = 4 forced re-arms.
        let mut h = None;
        conformance::max_delta_rearms(&QEMU, Nanos::from_secs(100), qemu_rig(&mut h));
        assert_eq!(h.unwrap().model.interrupts(0), 4);
    }

    #[test]
    fn highres_10000_random_timers_fire_in_order_never_early() {
        let mut h = None;
        conformance::random_timers(&QEMU, qemu_rig(&mut h));
        assert_eq!(h.unwrap().model.coalesced(0), 0);
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
        // The ICH chipset's HPET: 14.318 18 MHz, a 32-bit counter that
        // wraps every 299.97 s. Only the device's max delta differs from
        // QEMU's profile here: 0x7FFF_FFFF ticks = 149.98 s, longer than
        // the counter's max deferment, so the clocksource sets the pace.
        const CHIPSET: Profile = Profile {
            source: "hpet (32-bit, 14.318 MHz)",
            max_delta: Nanos::from_nanos(149_983_003_915),
            ..QEMU
        };
        let mut h = None;
        let mut c0 = 0;
        let config = HpetModelConfig::chipset().counter_64bit(false);
        let rig = conformance::max_deferment_wakeups(
            &CHIPSET,
            // Linux's 133.48 s for this counter: 7 wake-ups in 1000 s.
            Nanos::from_millis(133_480),
            Nanos::from_secs(1_000),
            |clock, trace, cfg| {
                let m = rig_of(&mut h, config)(clock, trace, cfg);
                c0 = h.unwrap().model.counter().get();
                m
            },
        );
        let h = h.unwrap();
        let mut m = rig.machine;
        assert_eq!(h.model.interrupts(0), 7);
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

/// Linux's per-CPU HPET channels (`hpet_msi`, QEMU `-global hpet.msi=on`):
/// where each CPU's LAPIC timer stops in deep idle (`C3STOP`), comparators
/// 1 and 2 deliver by FSB to CPUs 0 and 1 and, rated 110 above the LAPIC's
/// 100, become their tick devices: 200 random timers per CPU over 2 s of
/// deep idle fire on their own CPU, never early, late by at most the HPET's
/// min delta (192 ticks, 1.92 µs) and one 10 ns tick of rounding — and no
/// CPU ever waits on the broadcast device.
#[cfg(feature = "oneshot")]
#[test]
fn fsb_channels_serve_each_cpu_in_deep_idle_without_broadcast() {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let model: &'static HpetModel = Box::leak(Box::new(HpetModel::new(
        clock.clone(),
        HpetModelConfig::qemu().msi(true),
    )));
    let h = bring_up_model(&clock, model).unwrap();
    let info = h.info;
    let mut m: Machine<2> =
        Machine::new(clock.clone(), trace.clone(), config(250, true, true), h.cs);
    for c in 0..2u32 {
        let lapic = SimEventDevice::new(
            clock.clone(),
            EventConfig::new(["lapic0", "lapic1"][c as usize], Hertz::from_mhz(1_000))
                .features(
                    Features::PERIODIC | Features::ONESHOT | Features::C3STOP | Features::PERCPU,
                )
                .rating(100)
                .min_delta(Cycles::new(1_000))
                .max_delta(Cycles::new(u32::MAX as u64))
                .cpus(CpuMask::single(CpuId::new(c))),
        )
        .with_trace(trace.clone())
        .leak();
        m.add_device(lapic);
    }
    for (n, cpu) in [(1u8, 0u32), (2, 1)] {
        let route = Route::Fsb {
            address: 0xFEE0_0000 | (cpu << 12),
            data: 0x40 + u32::from(n),
        };
        let dev =
            HpetClockEvent::comparator(model, &info, n, route, CpuMask::single(CpuId::new(cpu)))
                .unwrap();
        let irq: &'static hpet::model::ComparatorIrq<'static> =
            Box::leak(Box::new(model.irq(usize::from(n))));
        m.add_driver(Box::leak(Box::new(dev)), irq);
        assert_eq!(
            irq.target_cpu(),
            Some(cpu as usize),
            "the message names CPU {cpu}"
        );
    }
    for c in 0..2u32 {
        let info = m.tick.cpu_info(CpuId::new(c)).unwrap();
        assert_eq!(info.device, Some(["hpet1", "hpet2"][c as usize]));
    }
    let mut r = sim::rng::XorShift64::new(0xF5B);
    let start = clock.now();
    let mut want = std::collections::HashMap::new();
    for id in 0..400u64 {
        let cpu = (id % 2) as usize;
        let at = start.saturating_add(Nanos::from_nanos(1_000 + r.next_u64() % 2_000_000_000));
        m.add_timer(cpu, at, id);
        want.insert(id, (cpu, at));
    }
    for c in 0..2 {
        m.idle(c, tick::IdleDepth::Deep);
    }
    m.run_for(Nanos::from_millis(2_100));
    let fired = m.fired();
    assert_eq!(fired.len(), 400);
    for f in &fired {
        assert_eq!((f.cpu, f.expires), want[&f.data], "{f:?}");
        assert!(f.at >= f.expires, "early: {f:?}");
        assert!(
            f.at.saturating_since(f.expires) <= Nanos::from_nanos(1_920 + 10),
            "late: {f:?}"
        );
    }
    for c in 0..2u32 {
        let info = m.tick.cpu_info(CpuId::new(c)).unwrap();
        assert!(!info.in_broadcast, "CPU {c} needed no broadcast");
    }
    assert_eq!(m.deep_idle_refused(), 0);
    assert_eq!(model.interrupts(0), 0, "the legacy comparator stayed quiet");
    assert!(model.interrupts(1) > 0 && model.interrupts(2) > 0);
}
