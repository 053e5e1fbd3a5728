//! The LAPIC timer driver on its model, as the only tick device of a
//! simulated machine.
//!
//! The clocksource is a 1 GHz 64-bit counter (the LAPIC is no clocksource):
//! its mult/shift is exact, so the tick layer's monotonic time is true time
//! to the nanosecond. The model's bus is QEMU's 1 GHz, divided by 16: the
//! timer counts at 62.5 MHz, 16 ns per tick, so every millisecond is a
//! whole number of ticks and counts below are exact.
//!
//! Tests marked `#[cfg(feature = ...)]` run in the build that offers the
//! mode: `cargo test -p lapic` (periodic only), `--features oneshot`,
//! `--features deadline`.
//!
//! The scenarios every tick device passes come from `sim::conformance`,
//! through [`rig`]; the checks after each call are the LAPIC's own.

use std::sync::Arc;

use clockevents::{ClockEventDevice, Features};
use clocksource::calibrate::ppm_off;
use clocksource::{CalibrationError, ClockSourceFlags, Hertz, Ktime, Nanos};
use hw::Mmio;
use lapic::model::{LapicModel, LapicModelConfig};
#[cfg(any(feature = "oneshot", feature = "deadline"))]
use lapic::TimerMode;
use lapic::{
    timer_frequency, Access, Capabilities, Error, FrequencySource, LapicTimer, LvtTimer, Reg,
    TimerConfig, TimerFrequency, STOPPED_PROBE_READS,
};
use raw_cpuid::CpuId;
use sim::conformance::{self, Profile};
use sim::{CounterConfig, CpuRun, Machine, SimCounter, Trace, VirtualClock};
#[cfg(not(feature = "oneshot"))]
use tick::PeriodicReason;
#[cfg(feature = "deadline")]
use tick::TickMode;
use tick::{IdleDepth, TickConfig};

/// The machine's one CPU, as the tick layer names it (`CpuId` here is raw-cpuid's).
const CPU0: clockevents::CpuId = clockevents::CpuId::BOOT;

const HRES: ClockSourceFlags = ClockSourceFlags::CONTINUOUS.union(ClockSourceFlags::VALID_FOR_HRES);
/// The model's true timer rate: 1 GHz ÷ 16.
const TRUE_RATE: Hertz = Hertz::new(62_500_000);

fn clocksource(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000))
            .width(64)
            .rating(300)
            .flags(HRES),
    )
    .leak()
}

fn config(hz: u64, nohz: bool, highres: bool) -> TickConfig {
    TickConfig::new(Hertz::new(hz))
        .with_nohz(nohz)
        .with_highres(highres)
}

fn caps(m: &LapicModel) -> Capabilities {
    Capabilities::from_cpuid(&CpuId::with_cpuid_reader(m.cpuid()))
}

/// How the driver reaches the model.
#[derive(Clone, Copy, Debug)]
enum Via {
    XApic,
    X2Apic,
}

fn access(m: &'static LapicModel, via: Via) -> Access<'static> {
    match via {
        Via::XApic => Access::xapic(m),
        Via::X2Apic => {
            lapic::enable_x2apic(m).expect("x2APIC in the model config");
            Access::x2apic(m)
        }
    }
}

/// A model and its driver for one CPU; the rate from the model's CPUID
/// (timing leaf: exact) unless `frequency` is given.
fn lapic(
    clock: &Arc<VirtualClock>,
    cfg: LapicModelConfig,
    via: Via,
    frequency: Option<TimerFrequency>,
) -> (&'static LapicModel, &'static LapicTimer<'static>) {
    let cfg = cfg.x2apic(matches!(via, Via::X2Apic));
    let model = LapicModel::new(clock.clone(), cfg).leak();
    let caps = caps(model);
    let access = access(model, via);
    let frequency = frequency.or_else(|| {
        let f = timer_frequency(access, &caps, None).expect("timing leaf");
        assert_eq!(f.source, FrequencySource::HypervisorLeaf);
        Some(f)
    });
    let mut tc = TimerConfig::new(cfg.cpu, access, caps, frequency);
    if cfg.tsc_deadline {
        tc = tc.with_deadline(lapic::DeadlineClock {
            msr: model,
            tsc: model,
            tsc_frequency: cfg.tsc,
            error_ppm: 0,
        });
    }
    let timer = Box::leak(Box::new(LapicTimer::new(tc).expect("timer set up")));
    (model, timer)
}

/// A QEMU CPU with the hypervisor timing leaf, so the rate is exact.
fn qemu(cpu: usize) -> LapicModelConfig {
    LapicModelConfig::qemu(cpu).timing_leaf(true)
}

fn pit_like(clock: &Arc<VirtualClock>) -> SimCounter {
    let pit = SimCounter::new(
        clock.clone(),
        CounterConfig::new("pit", Hertz::new(1_193_182))
            .width(16)
            .rating(110)
            .flags(ClockSourceFlags::CONTINUOUS),
    );
    // A port read costs about 1 µs: every read moves virtual time.
    pit.set_read_delay(Nanos::from_micros(1));
    pit
}

/// QEMU's LAPIC timer in TMICT mode, as the conformance suite sees it.
const QEMU: Profile = Profile {
    source: "lapic",
    hz: 250,
    // 4 ms at 62.5 MHz is 250 000 ticks exactly.
    periodic_jiffies: 2_500,
    // Linux arch/x86/kernel/apic/apic.c caps TMICT at 0x7FFF_FFFF ticks:
    // 34.359 738 352 s of 16 ns ticks.
    max_delta: Nanos::from_nanos(34_359_738_352),
    // 3.7 s and the other figures fall on the 16 ns grid: no rounding.
    timer_late: Nanos::ZERO,
    // The core's 1 µs minimum delta (a timer due within it of the previous
    // interrupt is forced out to it) plus the rounding of a delta up to
    // whole device cycles: two 16 ns ticks, or one TSC cycle rounded to the
    // next nanosecond.
    max_late: Nanos::from_nanos(1_032),
};

/// [`QEMU`] named for the interface the driver uses.
fn profile(via: Via) -> Profile {
    Profile {
        source: match via {
            Via::XApic => "lapic (xAPIC)",
            Via::X2Apic => "lapic (x2APIC)",
        },
        ..QEMU
    }
}

/// The bring-up the conformance suite calls: one LAPIC of `cfgs[c]` per
/// CPU c, reached `via`, on the 1 GHz clocksource; each model and driver is
/// left in `out` for the checks that follow.
fn rig<'a, const N: usize>(
    cfgs: [LapicModelConfig; N],
    via: Via,
    out: &'a mut Vec<(&'static LapicModel, &'static LapicTimer<'static>)>,
) -> impl FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<N> + 'a {
    move |clock, trace, cfg| {
        let mut m: Machine<N> = Machine::new(clock.clone(), trace.clone(), cfg, clocksource(clock));
        for c in cfgs {
            let (model, timer) = lapic(clock, c, via, None);
            m.add_driver(timer, model);
            out.push((model, timer));
        }
        m
    }
}

// ----- calibration -----------------------------------------------------------

#[test]
fn calibration_against_a_pit_like_reference_is_within_1000_ppm() {
    let clock = VirtualClock::new();
    let model = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
    let caps = caps(model);
    assert!(caps.hypervisor && caps.hypervisor_bus.is_none() && caps.crystal.is_none());
    let pit = pit_like(&clock);
    let f = timer_frequency(Access::xapic(model), &caps, Some(&pit)).unwrap();
    let FrequencySource::Calibrated { against, error_ppm } = f.source else {
        panic!("{f:?}")
    };
    assert_eq!(against, "pit");
    let cal = f.calibration.unwrap();
    let off = ppm_off(f.timer, TRUE_RATE);
    println!(
        "PIT: measured {} (true {TRUE_RATE}), off {off} ppm, bound {error_ppm} ppm, window {}, {} reads",
        f.timer, cal.window, cal.reads
    );
    // The bound, computed: the best bracket is 1 PIT cycle wide (a 1 µs
    // read spans 1.19 cycles), so ⌈½⌉ + ⌈½⌉ = 2 cycles, plus 1 cycle of
    // resolution at each end: 4 cycles in the 11 933 of the 10.001 ms
    // window → ⌈335.2⌉ = 336 ppm; one LAPIC tick in 625 062 counted → 2 ppm
    // (both from calibrate()); ½ Hz rounding at 62.5 MHz → 1 ppm.
    assert_eq!(cal.error_ppm, 338);
    assert_eq!(error_ppm, 339);
    assert!(error_ppm <= 1_000);
    assert!(off <= error_ppm as u64, "off {off} > bound {error_ppm}");
    assert!(f.oneshot >= TRUE_RATE, "one-shot rate never slow");
    assert_eq!(f.bus.get(), f.timer.get() * 16);
    assert!(cal.window >= Nanos::from_millis(10) && cal.window < Nanos::from_micros(10_050));
    // Left masked and stopped.
    assert!(LvtTimer::from_bits(model.read32(Reg::LvtTimer.offset())).is_masked());
    assert_eq!(model.read32(Reg::InitialCount.offset()), 0);
}

#[test]
fn calibration_against_an_hpet_like_reference_is_bounded_by_55_ppm() {
    let clock = VirtualClock::new();
    let model = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
    let hpet = SimCounter::new(
        clock.clone(),
        CounterConfig::new("hpet", Hertz::new(100_000_000))
            .width(32)
            .rating(250)
            .flags(HRES),
    );
    // An uncached MMIO read of the HPET counter: 500 ns.
    hpet.set_read_delay(Nanos::from_nanos(500));
    let f = timer_frequency(Access::xapic(model), &caps(model), Some(&hpet)).unwrap();
    let off = ppm_off(f.timer, TRUE_RATE);
    let cal = f.calibration.unwrap();
    println!(
        "HPET: measured {} (true {TRUE_RATE}), off {off} ppm, bound {} ppm, window {}, {} reads",
        f.timer,
        f.error_ppm(),
        cal.window,
        cal.reads
    );
    // Computed: every bracket spans one 500 ns read = 50 HPET cycles, so
    // the reference side is 25 + 25 + 2 = 52 cycles in the 1 000 100 of
    // the 10.001 ms window → ⌈51.99⌉ = 52 ppm; one LAPIC tick in 625 063
    // counted → 2 ppm (both from calibrate()); ½ Hz rounding → 1 ppm.
    // Six times tighter than the PIT's 339: the 100 MHz resolution makes
    // the read cost, not the counter, the limit.
    assert_eq!(cal.error_ppm, 54);
    assert_eq!(f.error_ppm(), 55);
    assert!(off <= f.error_ppm() as u64);
    // Reads land on 500 ns = 31.25-tick boundaries: only the LAPIC's own
    // tick quantisation is left, one tick in 625 000.
    assert!(off <= 2, "{off}");
    assert!(f.oneshot >= TRUE_RATE);
}

#[test]
fn an_imprecise_first_calibration_is_retried_over_50_ms() {
    // A reference read that traps to an emulating hypervisor: 20 µs per
    // read of a PIT-like counter. Over 10 ms the brackets alone give
    // ~2000 ppm, over the 500 ppm retry threshold; the 50 ms retry has
    // the same brackets over five times the window.
    let clock = VirtualClock::new();
    let model = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
    let pit = pit_like(&clock);
    pit.set_read_delay(Nanos::from_micros(20));
    let f = timer_frequency(Access::xapic(model), &caps(model), Some(&pit)).unwrap();
    let cal = f.calibration.unwrap();
    let off = ppm_off(f.timer, TRUE_RATE);
    println!(
        "slow PIT: measured {} (true {TRUE_RATE}), off {off} ppm, bound {} ppm, window {}, {} reads",
        f.timer,
        f.error_ppm(),
        cal.window,
        cal.reads
    );
    assert!(
        cal.window >= lapic::CALIBRATION_RETRY_WINDOW
            && cal.window < lapic::CALIBRATION_RETRY_WINDOW.saturating_add(Nanos::from_micros(100)),
        "the retry's result is kept: {}",
        cal.window
    );
    // Computed: every bracket is one 20 µs read = 23.86 PIT cycles wide,
    // so ⌈23.86/2⌉·2 = 24 cycles plus 1 of resolution at each end: 26 in
    // the 59 659+ cycles of the 50 ms window → ⌈435.8⌉ = 436 ppm; one LAPIC
    // tick → 1 ppm; ½ Hz rounding → 1 ppm.
    assert_eq!(f.error_ppm(), 438);
    assert!(f.error_ppm() <= lapic::RETRY_ABOVE_PPM);
    assert!(
        off <= f.error_ppm() as u64,
        "off {off} > bound {}",
        f.error_ppm()
    );
    assert!(f.oneshot >= TRUE_RATE);
    assert!(LvtTimer::from_bits(model.read32(Reg::LvtTimer.offset())).is_masked());
    assert_eq!(model.read32(Reg::InitialCount.offset()), 0);
}

#[test]
fn stopped_reference_refuses_the_timer_and_another_device_ticks() {
    let mut lapic = None;
    let rig = conformance::refused_device_falls_back(&QEMU, |clock, trace, config| {
        let model = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
        let caps = caps(model);
        let pit = pit_like(clock);
        pit.set_stuck(true);
        let e = timer_frequency(Access::xapic(model), &caps, Some(&pit));
        assert_eq!(
            e,
            Err(Error::Calibration(CalibrationError::ReferenceStopped))
        );
        // Refused quickly: the stopped-probe reads only (1 µs each).
        assert_eq!(pit.reads(), STOPPED_PROBE_READS as u64 + 1);
        assert_eq!(clock.now(), Ktime::from_micros(4_097));
        // No rate, no TSC-deadline: the timer is not offered.
        let e = LapicTimer::new(TimerConfig::new(0, Access::xapic(model), caps, None));
        assert_eq!(e.err(), Some(Error::NoMode));
        assert_eq!(model.read32(Reg::InitialCount.offset()), 0);
        lapic = Some(model);
        Machine::new(clock.clone(), trace.clone(), config, clocksource(clock))
    });
    // The PIT stand-in ticked (the scenario counted it); the LAPIC never.
    assert_eq!(rig.machine.tick.cpu_info(CPU0).unwrap().device, Some("pit"));
    assert_eq!(lapic.unwrap().interrupts(), 0);
}

// ----- periodic ------------------------------------------------------------

#[test]
fn periodic_hz250_for_10s_gives_exactly_2500_ticks_and_jiffies() {
    for via in [Via::XApic, Via::X2Apic] {
        let mut out = Vec::new();
        conformance::periodic_10s(&profile(via), rig([qemu(0)], via, &mut out));
        let (model, _) = out[0];
        // 4 ms at 62.5 MHz = 250 000 ticks exactly.
        assert_eq!(model.read32_or_msr(Reg::InitialCount, via), 250_000);
        assert_eq!(model.interrupts(), 2500, "{via:?}");
        for (k, t) in model.delivered().iter().enumerate() {
            assert_eq!(*t, Ktime::from_millis(4 * (k as u64 + 1)), "{via:?}");
        }
    }
}

#[test]
fn periodic_on_a_calibrated_rate_is_off_by_at_most_its_error() {
    let clock = VirtualClock::new();
    let probe = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
    let pit = pit_like(&clock);
    let f = timer_frequency(Access::xapic(probe), &caps(probe), Some(&pit)).unwrap();
    let (model, timer) = lapic(&clock, LapicModelConfig::qemu(0), Via::XApic, Some(f));
    let start = clock.now();
    let mut m: Machine<1> = Machine::new(
        clock.clone(),
        Trace::new(),
        config(250, false, false),
        clocksource(&clock),
    );
    m.add_driver(timer, model);
    m.run_until(start.saturating_add(Nanos::from_secs(10)));
    // A rate off by e ppm stretches or shrinks each period by e ppm:
    // 2500 · e / 10^6 ticks over 10 s, plus one for the phase.
    let slack = (2_500 * f.error_ppm() as u64).div_ceil(1_000_000) + 1;
    let n = model.interrupts();
    println!("calibrated periodic: {n} ticks in 10 s (slack {slack})");
    assert!(n.abs_diff(2_500) <= slack, "{n}");
}

// ----- one-shot (TMICT) ------------------------------------------------------

#[cfg(feature = "oneshot")]
mod oneshot {
    use super::*;

    #[test]
    fn nohz_idle_10s_with_a_timer_at_3_7s_takes_exactly_one_interrupt() {
        // 3.7 s = 231 250 000 ticks of 16 ns exactly: on time to the ns.
        let t = Ktime::from_millis(3_700);
        nohz_idle_one_timer(&QEMU, qemu(0), TimerMode::Oneshot, t);
    }

    #[test]
    fn nohz_idle_100s_with_nothing_queued_rearms_every_34_36s() {
        // ⌊100 s / 34.359 738 352 s⌋ = 2 forced re-arms.
        let mut out = Vec::new();
        conformance::max_delta_rearms(
            &QEMU,
            Nanos::from_secs(100),
            rig([qemu(0)], Via::XApic, &mut out),
        );
        assert_eq!(out[0].0.interrupts(), 2);
    }

    #[test]
    fn highres_10000_random_timers_fire_once_in_order_never_early() {
        for via in [Via::XApic, Via::X2Apic] {
            random_timers(&profile(via), [qemu(0), qemu(1)], via, TimerMode::Oneshot);
        }
    }

    #[test]
    fn calibrated_oneshot_is_late_by_at_most_twice_its_bound_never_early() {
        let clock = VirtualClock::new();
        let probe = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0)).leak();
        let pit = pit_like(&clock);
        let f = timer_frequency(Access::xapic(probe), &caps(probe), Some(&pit)).unwrap();
        let (model, timer) = lapic(&clock, LapicModelConfig::qemu(0), Via::XApic, Some(f));
        assert_eq!(timer.info().frequency(), Some(f.oneshot));
        let mut m: Machine<1> = Machine::new(
            clock.clone(),
            Trace::new(),
            config(250, true, true),
            clocksource(&clock),
        );
        // The machine boots after calibration: monotonic = true − boot.
        let boot = clock.now().saturating_since(m.now());
        m.add_driver(timer, model);
        let t0 = m.now();
        let expiries: Vec<Ktime> = [1_000u64, 2_000, 3_700]
            .iter()
            .map(|ms| t0.saturating_add(Nanos::from_millis(*ms)))
            .collect();
        for (i, e) in expiries.iter().enumerate() {
            m.add_timer(0, *e, i as u64);
        }
        m.idle(0, IdleDepth::Shallow);
        m.run_until(t0.saturating_add(Nanos::from_secs(10)));
        // Exactly one interrupt per timer: an early interrupt (rate measured
        // too high) would have added a wake-up that runs nothing.
        assert_eq!(model.interrupts(), 3, "{:?}", model.delivered());
        let fired = m.fired();
        assert_eq!(fired.len(), 3);
        for f_ in &fired {
            let true_mono = f_.true_time.saturating_sub(boot);
            assert!(true_mono >= f_.expires, "early: {f_:?}");
            let late = true_mono.saturating_since(f_.expires);
            // Programmed at the previous wake-up (≤ 1.7 s before) with a rate
            // raised by the bound: late by at most 2·bound of the delay, plus
            // a tick.
            let delay = 1_700_000_000u64;
            let bound = delay * 2 * f.error_ppm() as u64 / 1_000_000 + 16;
            println!(
                "calibrated one-shot: timer {} late {late} (bound {bound} ns)",
                f_.data
            );
            assert!(late.as_nanos() <= bound, "late {late} > {bound} ns");
        }
    }
}

// ----- TSC-deadline ----------------------------------------------------------

#[cfg(feature = "deadline")]
mod deadline {
    use super::*;

    fn qemu_deadline(cpu: usize) -> LapicModelConfig {
        qemu(cpu).tsc_deadline(true)
    }

    /// The LAPIC in TSC-deadline mode: the deadline is a TSC value (SDM
    /// Vol. 3A §10.5.4.1), so the one-shot figures are the TSC's.
    fn deadline_profile(via: Via, timer_late: Nanos) -> Profile {
        Profile {
            source: match via {
                Via::XApic => "lapic TSC-deadline (xAPIC)",
                Via::X2Apic => "lapic TSC-deadline (x2APIC)",
            },
            // A 64-bit deadline: the core's 600 s conversion range bounds
            // a programming.
            max_delta: Nanos::from_secs(clockevents::event::WIDE_DEVICE_MAX_SECS),
            timer_late,
            ..QEMU
        }
    }

    #[test]
    fn deadline_nohz_idle_10s_with_a_timer_at_3_7s_takes_exactly_one_interrupt() {
        // Programmed at t = 0 (TSC 0) for 3.7 s: the core converts 3.7 s to
        // TSC cycles with its mult/shift for a 2.4 GHz device over a 600 s
        // range, rounded up (never early). 2.4 is not a power of two, so
        // mult carries 0.8/2²³ of rounding: 353 cycles = 148 ns late. The
        // exact expectation, from the same factor:
        let conv = clocksource::NsToCycles::new(
            Hertz::new(2_400_000_000),
            clockevents::event::WIDE_DEVICE_MAX_SECS,
        )
        .unwrap();
        let cycles = conv.ns_to_cycles(Nanos::from_millis(3_700)).get();
        let fire = (cycles as u128 * 1_000_000_000).div_ceil(2_400_000_000) as u64;
        assert_eq!(fire, 3_700_000_148);
        let late = Nanos::from_nanos(fire - 3_700_000_000);
        nohz_idle_one_timer(
            &deadline_profile(Via::XApic, late),
            qemu_deadline(0),
            TimerMode::TscDeadline,
            Ktime::from_nanos(fire),
        );
    }

    #[test]
    fn deadline_highres_10000_random_timers_fire_once_in_order_never_early() {
        for via in [Via::XApic, Via::X2Apic] {
            random_timers(
                // Random timers are bounded by max_late alone.
                &deadline_profile(via, Nanos::ZERO),
                [qemu_deadline(0), qemu_deadline(1)],
                via,
                TimerMode::TscDeadline,
            );
        }
    }

    #[test]
    fn deadline_without_calibration_still_offers_oneshot() {
        // TSC-deadline needs no TMICT rate (Linux skips calibration for it):
        // the stopped reference that kills the TMICT modes does not matter.
        let clock = VirtualClock::new();
        let cfg = LapicModelConfig::qemu(0).tsc_deadline(true);
        let model = LapicModel::new(clock.clone(), cfg).leak();
        let pit = pit_like(&clock);
        pit.set_stuck(true);
        assert!(timer_frequency(Access::xapic(model), &caps(model), Some(&pit)).is_err());
        let tc = TimerConfig::new(0, Access::xapic(model), caps(model), None).with_deadline(
            lapic::DeadlineClock {
                msr: model,
                tsc: model,
                tsc_frequency: cfg.tsc,
                error_ppm: 0,
            },
        );
        let timer: &'static LapicTimer = Box::leak(Box::new(LapicTimer::new(tc).unwrap()));
        assert_eq!(
            timer.info().features & Features::PERIODIC,
            Features::empty()
        );
        let start = clock.now();
        let mut m: Machine<1> = Machine::new(
            clock.clone(),
            Trace::new(),
            config(250, false, false),
            clocksource(&clock),
        );
        m.add_driver(timer, model);
        // nohz=off, highres=off, no PERIODIC: the tick is emulated one-shot.
        assert_eq!(m.tick.mode(CPU0), TickMode::OneshotPeriodic);
        m.run_until(start.saturating_add(Nanos::from_secs(1)));
        assert_eq!(m.tick.cpu_info(CPU0).unwrap().stats.ticks, 250);
    }
}

/// The conformance NO_HZ scenario on one LAPIC of `cfg` in `mode`, whose
/// one interrupt comes at exactly `fire`.
#[cfg(any(feature = "oneshot", feature = "deadline"))]
fn nohz_idle_one_timer(p: &Profile, cfg: LapicModelConfig, mode: TimerMode, fire: Ktime) {
    let mut out = Vec::new();
    let rig = conformance::nohz_idle_one_timer(p, rig([cfg], Via::XApic, &mut out));
    let (model, timer) = out[0];
    assert_eq!(timer.mode(), mode);
    // No forced wake-up before the timer: the clocksource's max deferment
    // is far beyond (64 bits at 1 GHz), and so is the device's max delta —
    // TMICT: 0x7FFF_FFFF ticks at 62.5 MHz = 34.36 s; TSC-deadline: the
    // core's 600 s conversion range.
    let max_delta = clockevents::EventDevice::new(timer, Nanos::from_millis(4))
        .unwrap()
        .max_delta();
    assert!(max_delta > Nanos::from_secs(34), "{max_delta}");
    assert_eq!(
        model.delivered(),
        [fire],
        "exactly one interrupt, never early"
    );
    let fired = rig.machine.fired();
    assert_eq!((fired[0].at, fired[0].true_time), (fire, fire));
}

/// The conformance random-timer scenario on two CPUs, each with its own
/// LAPIC.
#[cfg(any(feature = "oneshot", feature = "deadline"))]
fn random_timers(p: &Profile, cfgs: [LapicModelConfig; 2], via: Via, mode: TimerMode) {
    let mut out = Vec::new();
    conformance::random_timers(p, rig(cfgs, via, &mut out));
    let [(m0, t0), (m1, t1)] = [out[0], out[1]];
    assert_eq!((t0.mode(), t1.mode()), (mode, mode));
    assert!(m0.interrupts() > 0 && m1.interrupts() > 0);
    assert_eq!(m0.coalesced() + m1.coalesced(), 0);
}

// ----- builds without one-shot ----------------------------------------------

#[cfg(not(any(feature = "oneshot", feature = "deadline")))]
#[test]
fn without_oneshot_nohz_requested_stays_periodic_with_device_lacks_oneshot() {
    let mut out = Vec::new();
    let rig = conformance::stays_periodic_without_tickless(
        &QEMU,
        PeriodicReason::DeviceLacksOneshot,
        rig([qemu(0)], Via::XApic, &mut out),
    );
    let (model, timer) = out[0];
    assert!(!timer.info().features.contains(Features::ONESHOT));
    assert_eq!(
        model.interrupts(),
        2500,
        "idle does not stop a periodic tick"
    );
    // 3.7 s lies on the 4 ms grid: run by tick 925.
    assert_eq!(rig.machine.fired()[0].true_time, Ktime::from_millis(3_700));
}

#[cfg(all(feature = "deadline", not(feature = "oneshot")))]
#[test]
fn deadline_build_on_a_cpu_without_it_stays_periodic() {
    let mut out = Vec::new();
    conformance::stays_periodic_without_tickless(
        &QEMU,
        PeriodicReason::DeviceLacksOneshot,
        rig([qemu(0)], Via::XApic, &mut out),
    );
    assert_eq!(out[0].1.mode(), TimerMode::Periodic);
}

#[test]
fn late_lapic_interrupts_lose_no_time() {
    let clock = VirtualClock::new();
    let (model, timer) = lapic(&clock, qemu(0), Via::XApic, None);
    model.late_by(Nanos::from_micros(3));
    let mut m: Machine<1> = Machine::new(
        clock.clone(),
        Trace::new(),
        config(250, false, false),
        clocksource(&clock),
    );
    m.add_driver(timer, model);
    m.run_until(Ktime::from_secs(1));
    // The count is not delayed, only delivery: every tick 3 µs after its
    // period, jiffies from the clocksource.
    let d = model.delivered();
    assert_eq!(d.len(), 249, "the 250th is due at 1.000003 s");
    for (k, t) in d.iter().enumerate() {
        assert_eq!(*t, Ktime::from_nanos(4_000_000 * (k as u64 + 1) + 3_000));
    }
    m.run_until(Ktime::from_micros(1_000_003));
    assert_eq!(m.tick.jiffies(), 250);
}

// ----- deep idle -------------------------------------------------------------

#[test]
fn c3stop_lapic_without_broadcast_is_refused_deep_idle_and_timers_still_fire() {
    let clock = VirtualClock::new();
    let (model, timer) = lapic(&clock, qemu(0), Via::XApic, None);
    assert!(timer.info().features.contains(Features::C3STOP), "no ARAT");
    let mut m: Machine<1> = Machine::new(
        clock.clone(),
        Trace::new(),
        config(250, true, true),
        clocksource(&clock),
    );
    m.add_driver(timer, model);
    m.add_timer(0, Ktime::from_millis(500), 7);
    m.idle(0, IdleDepth::Deep);
    assert_eq!(m.deep_idle_refused(), 1);
    assert_eq!(m.cpu_run(0), CpuRun::Idle(IdleDepth::Shallow));
    m.run_until(Ktime::from_secs(1));
    let fired = m.fired();
    assert_eq!(fired.len(), 1);
    // On time in every build: a one-shot LAPIC fires at the expiry, a
    // periodic one at the tick 500 ms lies on.
    assert_eq!(fired[0].true_time, Ktime::from_millis(500));
    assert!(m.deep_idle_refused() >= 1);
}

#[test]
fn arat_lapic_keeps_running_in_deep_idle() {
    let clock = VirtualClock::new();
    let (model, timer) = lapic(&clock, qemu(0).arat(true), Via::XApic, None);
    assert!(!timer.info().features.contains(Features::C3STOP));
    assert_eq!(timer.info().rating, 150);
    let mut m: Machine<1> = Machine::new(
        clock.clone(),
        Trace::new(),
        config(250, true, true),
        clocksource(&clock),
    );
    m.add_driver(timer, model);
    m.add_timer(0, Ktime::from_millis(500), 7);
    m.idle(0, IdleDepth::Deep);
    assert_eq!(m.deep_idle_refused(), 0);
    assert_eq!(m.cpu_run(0), CpuRun::Idle(IdleDepth::Deep));
    m.run_until(Ktime::from_secs(1));
    assert_eq!(m.fired().len(), 1);
    assert_eq!(m.fired()[0].true_time, Ktime::from_millis(500));
}

/// Reads a register through whichever interface is live.
trait ReadVia {
    fn read32_or_msr(&self, reg: Reg, via: Via) -> u32;
}

impl ReadVia for LapicModel {
    fn read32_or_msr(&self, reg: Reg, via: Via) -> u32 {
        match via {
            Via::XApic => self.read32(reg.offset()),
            Via::X2Apic => hw::MsrAccess::rdmsr(self, reg.msr()).unwrap() as u32,
        }
    }
}
