//! The TSC driver over its model in the simulator: where the frequency comes
//! from, how well calibration does against PIT- and HPET-like references,
//! the TSC as the only clock source of the tick layer, and the watchdog.
//!
//! The tick device is always a generic `sim::SimEventDevice` (1 GHz,
//! periodic + one-shot, per-CPU): the TSC has no interrupt.
//!
//! The scenarios every tick device passes come from `sim::conformance`,
//! through [`tsc_rig`]: here they judge the TSC as the clock they run on.

use std::sync::Arc;

use clockevents::{CpuId, CpuMask, Features};
use clocksource::calibrate::ppm_off;
use clocksource::{CalibrationError, ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};
use sim::conformance::{self, Profile};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::TickConfig;
use tsc::calibration::{CAL2_WINDOW, CAL_WINDOW};
use tsc::model::{FakeCpuid, TscModel, TscModelConfig};
use tsc::{Confidence, FrequencySource, Stability, TscClockSource, TscError};

type Tsc = TscClockSource<&'static TscModel>;

const HRES: ClockSourceFlags = ClockSourceFlags::CONTINUOUS.union(ClockSourceFlags::VALID_FOR_HRES);

/// PIT channel 2 as a reference: 1.193182 MHz, 16 bits, each port read
/// taking `read_delay` of true time (≈ 1 µs on hardware; it is what moves
/// virtual time during calibration).
fn pit(clock: &Arc<VirtualClock>, read_delay: Nanos) -> &'static SimCounter {
    let c = SimCounter::new(
        clock.clone(),
        CounterConfig::new("pit", Hertz::new(1_193_182))
            .width(16)
            .rating(110)
            .flags(ClockSourceFlags::CONTINUOUS),
    )
    .leak();
    c.set_read_delay(read_delay);
    c
}

/// An HPET-like reference: QEMU's 100 MHz (hw/timer/hpet.c), 64 bits,
/// rating 250 (Linux's arch/x86/kernel/hpet.c); an MMIO read costs 700 ns,
/// an assumed figure of the order hardware takes.
fn hpet(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    let c = SimCounter::new(
        clock.clone(),
        CounterConfig::new("hpet", Hertz::from_mhz(100))
            .width(64)
            .rating(250)
            .flags(HRES),
    )
    .leak();
    c.set_read_delay(Nanos::from_nanos(700));
    c
}

fn model(clock: &Arc<VirtualClock>, hz: u64, invariant: bool) -> &'static TscModel {
    TscModel::new(
        clock.clone(),
        TscModelConfig::new(Hertz::new(hz))
            .initial(0x1234_5678_9ABC)
            .invariant(invariant),
    )
    .leak()
}

fn probe(
    m: &'static TscModel,
    cpuid: FakeCpuid,
    reference: Option<&dyn ClockSource>,
    stability: Stability,
) -> Result<&'static Tsc, TscError> {
    TscClockSource::probe(m, &cpuid.cpuid(), reference, stability).map(|t| &*Box::leak(Box::new(t)))
}

/// The per-CPU tick device: 1 GHz, periodic and one-shot, a 40-bit delta
/// (1100 s, like a TSC-deadline timer) so that only the clock source bounds
/// how long the tick may stop.
fn tick_dev(clock: &Arc<VirtualClock>, trace: &Trace) -> &'static SimEventDevice {
    SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic0", Hertz::from_mhz(1_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .rating(100)
            .min_delta(Cycles::new(1_000))
            .max_delta(Cycles::new(1 << 40))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .with_trace(trace.clone())
    .leak()
}

/// 25 MHz crystal × 160/2 = 2 GHz: exact mult/shift (ns = cycles / 2).
fn cpuid_2ghz(invariant: bool) -> FakeCpuid {
    FakeCpuid::new()
        .leaf_15(2, 160, 25_000_000)
        .invariant_tsc(invariant)
}

fn cfg(nohz: bool, highres: bool) -> TickConfig {
    TickConfig::new(Hertz::new(250))
        .with_nohz(nohz)
        .with_highres(highres)
}

// ----- frequency sources ----------------------------------------------------

#[test]
fn cpuid_15_rate_is_exact_known_and_checked_to_run() {
    let clock = VirtualClock::new();
    let m = model(&clock, 1_500_000_000, true);
    let hpet = hpet(&clock);
    let cpuid = FakeCpuid::new()
        .leaf_15(2, 120, 25_000_000)
        .invariant_tsc(true);
    let t = probe(m, cpuid, Some(hpet), Stability::Auto).unwrap();
    assert_eq!(t.frequency(), Hertz::new(1_500_000_000));
    let info = t.frequency_info();
    assert!(matches!(info.source, FrequencySource::Cpuid15 { .. }));
    assert_eq!(info.source.confidence(), Confidence::Known);
    // The liveness check read the TSC while the HPET moved ≥ 1 ms.
    assert!(m.reads() >= 2);
    assert!(clock.now() >= Ktime::from_millis(1));
    assert_eq!(t.rating(), 300);
    assert_eq!(t.flags(), HRES);
}

#[test]
fn hypervisor_leaf_rate_is_taken_under_kvm_invtsc() {
    let clock = VirtualClock::new();
    let m = model(&clock, 2_995_200_000, true);
    let t = probe(
        m,
        FakeCpuid::kvm_host_invtsc(2_995_200),
        Some(hpet(&clock)),
        Stability::Auto,
    )
    .unwrap();
    assert_eq!(t.frequency(), Hertz::new(2_995_200_000));
    assert_eq!(
        t.frequency_info().source,
        FrequencySource::Hypervisor { khz: 2_995_200 }
    );
    assert!(t.is_invariant());
    assert!(!t.flags().contains(ClockSourceFlags::MUST_VERIFY));
}

/// Probes a QEMU-TCG-like CPU (no rate in CPUID) against `reference` and
/// returns (measured, error bound, window, true rate).
fn calibrated(
    hz: u64,
    reference: impl FnOnce(&Arc<VirtualClock>) -> &'static SimCounter,
) -> (Hertz, u32, Nanos, Hertz) {
    let clock = VirtualClock::new();
    let m = model(&clock, hz, false);
    let r = reference(&clock);
    let t = probe(m, FakeCpuid::qemu_tcg(), Some(r), Stability::Auto).unwrap();
    let FrequencySource::Calibrated {
        reference: name,
        error_ppm,
        window,
    } = t.frequency_info().source
    else {
        panic!("not calibrated: {:?}", t.frequency_info());
    };
    assert_eq!(name, r.name());
    (t.frequency(), error_ppm, window, m.true_frequency())
}

#[test]
fn calibration_against_a_pit_like_reference_is_within_its_bound() {
    // Bracket: PIT read (1 µs), rdtsc, PIT read (1 µs) → ≤ 2 PIT cycles
    // wide; uncertainty ≤ ⌈2/2⌉ + ⌈2/2⌉ + 2 = 4 PIT cycles over ≥ 11932
    // (10 ms): ⌈4·10⁶ / 11932⌉ = 336 ppm, plus one TSC cycle over ≥ 10⁷
    // (1 ppm): bound ≤ 337 ppm.
    for hz in [2_394_123_457u64, 1_000_000_000, 3_700_000_001] {
        let (f, bound, window, truth) = calibrated(hz, |c| pit(c, Nanos::from_micros(1)));
        let off = ppm_off(f, truth);
        eprintln!(
            "pit: true {truth}, measured {f}, off {off} ppm, bound {bound} ppm, window {window:?}"
        );
        assert!(bound <= 337, "bound {bound}");
        assert!(off <= bound as u64, "off {off} ppm > bound {bound}");
        assert!(off < 1_000, "worse than 0.1 %");
        assert!(
            window >= CAL_WINDOW && window < CAL2_WINDOW,
            "no retry needed"
        );
    }
}

#[test]
fn calibration_against_an_hpet_like_reference_is_within_its_bound() {
    // Bracket: 2 × 700 ns reads = 70 HPET cycles; uncertainty ≤ 35 + 35 + 2
    // = 72 cycles over ≥ 10⁶ (10 ms): 72 ppm, plus one TSC cycle (1 ppm):
    // bound ≤ 73 ppm.
    let (f, bound, window, truth) = calibrated(2_394_123_457, hpet);
    let off = ppm_off(f, truth);
    eprintln!(
        "hpet: true {truth}, measured {f}, off {off} ppm, bound {bound} ppm, window {window:?}"
    );
    assert!(bound <= 73, "bound {bound}");
    assert!(off <= bound as u64);
    assert!(window >= CAL_WINDOW && window < CAL2_WINDOW);
}

#[test]
fn slow_reference_reads_trigger_the_50ms_retry() {
    // 4 µs per PIT read: brackets ≤ 5 cycles, uncertainty ≤ 3 + 3 + 2 = 8
    // cycles: 671 ppm over 10 ms (> 500, retry), 135 ppm over 50 ms.
    let (f, bound, window, truth) = calibrated(2_394_123_457, |c| pit(c, Nanos::from_micros(4)));
    let off = ppm_off(f, truth);
    eprintln!(
        "slow pit: true {truth}, measured {f}, off {off} ppm, bound {bound} ppm, window {window:?}"
    );
    assert!(window >= CAL2_WINDOW, "{window:?}");
    assert!(bound <= 135, "bound {bound}");
    assert!(off <= bound as u64);
}

#[test]
fn stopped_reference_is_a_typed_error_not_a_hang() {
    let clock = VirtualClock::new();
    let m = model(&clock, 2_000_000_000, false);
    let r = pit(&clock, Nanos::from_micros(1));
    r.set_stuck(true);
    let e = probe(m, FakeCpuid::qemu_tcg(), Some(r), Stability::Auto).unwrap_err();
    assert_eq!(
        e,
        TscError::Calibration {
            first: CalibrationError::ReferenceStopped,
            retry: None
        }
    );
    // Bounded: 20 reads per µs of the 10 ms window, no retry.
    assert!(r.reads() <= 200_000 + 100, "{} reads", r.reads());
}

#[test]
fn absurd_calibrated_frequency_is_a_typed_error() {
    let clock = VirtualClock::new();
    let m = model(&clock, 500_000, false); // 500 kHz: no TSC runs that slow
    let e = probe(
        m,
        FakeCpuid::qemu_tcg(),
        Some(pit(&clock, Nanos::from_micros(1))),
        Stability::Auto,
    )
    .unwrap_err();
    let TscError::FrequencyOutOfRange { frequency } = e else {
        panic!("{e:?}");
    };
    assert!(
        ppm_off(frequency, Hertz::new(500_000)) < 1_000,
        "{frequency}"
    );
}

// ----- the TSC as the clock source ------------------------------------------

/// The 1 GHz tick device on the TSC, as the conformance suite sees it.
const TSC: Profile = Profile {
    source: "tsc",
    hz: 250,
    // 4 ms is 4 000 000 cycles of the 1 GHz device.
    periodic_jiffies: 2_500,
    // The tick device's 2^40 cycles of 1 ns.
    max_delta: Nanos::from_nanos(1 << 40),
    // 1 ns cycles, and the 2 GHz TSC converts exactly: no rounding.
    timer_late: Nanos::ZERO,
    // The device's 1 µs min delta (a timer due within it of the previous
    // interrupt is forced out to it) and one 1 ns cycle of rounding.
    max_late: Nanos::from_nanos(1_001),
};

/// The bring-up the conformance suite calls: an invariant 2 GHz TSC (rate
/// from CPUID 0x15) as the only clocksource, the 1 GHz per-CPU device as
/// the tick device; the device is left in `out`.
fn tsc_rig<'a>(
    out: &'a mut Option<&'static SimEventDevice>,
) -> impl FnOnce(&Arc<VirtualClock>, &Trace, TickConfig) -> Machine<1> + 'a {
    move |clock, trace, cfg| {
        let t = probe(
            model(clock, 2_000_000_000, true),
            cpuid_2ghz(true),
            None,
            Stability::Auto,
        )
        .unwrap();
        let mut m: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg, t);
        let dev = tick_dev(clock, trace);
        m.add_device(dev);
        *out = Some(dev);
        m
    }
}

#[test]
fn periodic_hz250_10s_on_the_tsc_gives_exactly_2500_ticks_and_jiffies() {
    let mut dev = None;
    let rig = conformance::periodic_10s(&TSC, tsc_rig(&mut dev));
    assert_eq!(rig.machine.tick.timekeeper().clocksource().name(), "tsc");
    assert_eq!(dev.unwrap().interrupts(), 2500);
    // 2 GHz converts exactly: monotonic time is true time.
    assert_eq!(rig.machine.now(), Ktime::from_secs(10));
}

#[test]
fn nohz_idle_10s_with_a_timer_at_3_7s_takes_exactly_one_interrupt() {
    let mut dev = None;
    let rig = conformance::nohz_idle_one_timer(&TSC, tsc_rig(&mut dev));
    let max_deferment = rig.machine.tick.timekeeper().max_deferment();
    eprintln!("tsc @ 2 GHz: max deferment {max_deferment:?}");
    assert!(max_deferment > Nanos::from_secs(100), "{max_deferment:?}");
    assert_eq!(
        rig.machine.trace.interrupts_of("lapic0"),
        [Ktime::from_millis(3_700)]
    );
}

#[test]
fn highres_10000_random_timers_on_the_tsc_fire_in_order_never_early() {
    let mut dev = None;
    conformance::random_timers(&TSC, tsc_rig(&mut dev));
    assert_eq!(dev.unwrap().coalesced(), 0);
}

// ----- the watchdog -----------------------------------------------------------

/// A TSC probed from `cpuid` as the clock source, an HPET-like counter
/// (rating 250, trusted) beside it, a per-CPU tick device, and a timer
/// every millisecond stamping monotonic time.
fn watched(
    cpuid: FakeCpuid,
    invariant: bool,
    stability: Stability,
) -> (Machine<1>, &'static TscModel) {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let tm = model(&clock, 2_000_000_000, invariant);
    let t = probe(tm, cpuid, None, stability).unwrap();
    let hpet = SimCounter::new(
        clock.clone(),
        CounterConfig::new("hpet", Hertz::from_mhz(100))
            .width(64)
            .rating(250)
            .flags(HRES),
    )
    .leak();
    let mut m: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg(true, true), t);
    m.tick.register_clocksource(hpet).unwrap();
    m.add_device(tick_dev(&clock, &trace));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
    m.add_periodic_timer(0, Ktime::from_millis(1), Nanos::from_millis(1), 99);
    (m, tm)
}

fn assert_monotonic(m: &Machine<1>) {
    let stamps: Vec<Ktime> = m.fired().iter().map(|f| f.at).collect();
    assert!(stamps.len() > 2_500);
    for w in stamps.windows(2) {
        assert!(w[1] >= w[0], "monotonic time went backwards: {w:?}");
    }
}

#[test]
fn drifting_non_invariant_tsc_is_marked_unstable_and_the_hpet_takes_over() {
    let (mut m, tsc) = watched(cpuid_2ghz(false), false, Stability::Auto);
    m.run_until(Ktime::from_millis(200));
    // 2000 ppm fast: 1 ms of skew per 0.5 s watchdog interval, twice the
    // 500 µs margin (250 µs per source).
    tsc.set_drift_ppb(2_000_000);
    // Checks at 0.5 s (baseline), 1.0 s (first judged).
    m.run_until(Ktime::from_millis(990));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
    m.run_until(Ktime::from_millis(1_010));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
    let id = m.tick.clocksources().find("tsc").unwrap();
    assert!(m.tick.clocksources().get(id).unwrap().is_unstable());
    m.run_until(Ktime::from_secs(3));
    assert_monotonic(&m);
}

#[test]
fn non_invariant_tsc_halting_in_deep_idle_is_caught_by_the_watchdog() {
    let (mut m, tsc) = watched(cpuid_2ghz(false), false, Stability::Auto);
    // From 0.2 s on the CPU spends half of every 10 ms in C3, where this
    // TSC halts (the machine does not drive the model: the test does).
    m.run_until(Ktime::from_millis(200));
    let mut t = Ktime::from_millis(200);
    while m.tick.timekeeper().clocksource().name() == "tsc" && t < Ktime::from_secs(2) {
        tsc.set_deep_idle(true);
        t = t.saturating_add(Nanos::from_millis(5));
        m.run_until(t);
        tsc.set_deep_idle(false);
        t = t.saturating_add(Nanos::from_millis(5));
        m.run_until(t);
    }
    // Half the time lost. The first interrupt that finds the clock behind
    // its expiry (0.205 s) runs the watchdog at once and records its
    // baseline; such early checks judge once half an interval (0.25 s) has
    // passed on the reference: caught in the 10 ms step ending at 0.46 s.
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet", "at {t}");
    assert_eq!(t, Ktime::from_millis(460));
    m.run_until(Ktime::from_secs(3));
    assert_monotonic(&m);
}

#[test]
fn tsc_wound_back_by_a_bios_is_caught_and_time_never_goes_backwards() {
    let (mut m, tsc) = watched(cpuid_2ghz(false), false, Stability::Auto);
    m.run_until(Ktime::from_millis(600));
    // An SMI handler hiding 1 ms: the TSC is written back by 2·10⁶ cycles.
    tsc.write(tsc.value().wrapping_sub(2_000_000));
    // Monotonic time stands still for 1 ms (never backwards). Interrupts in
    // that millisecond find the clock behind their expiry and run the
    // watchdog early: "not due" (0.1 s after the 0.5 s baseline), which
    // leaves the regular schedule alone, so the judged check comes at the
    // regular ≈ 1.0 s (+1 ms of the stand-still) and finds −1 ms of skew
    // against a 0.5 ms margin.
    m.run_until(Ktime::from_millis(990));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
    m.run_until(Ktime::from_millis(1_010));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
    m.run_until(Ktime::from_secs(3));
    assert_monotonic(&m);
}

#[test]
fn invariant_tsc_is_not_watched_even_when_it_drifts() {
    let (mut m, tsc) = watched(cpuid_2ghz(true), true, Stability::Auto);
    m.run_until(Ktime::from_millis(200));
    tsc.set_drift_ppb(2_000_000);
    m.run_until(Ktime::from_secs(3));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
    let id = m.tick.clocksources().find("tsc").unwrap();
    assert!(!m.tick.clocksources().get(id).unwrap().is_unstable());
    assert_monotonic(&m);
}

#[test]
fn reliable_override_exempts_a_non_invariant_tsc_from_the_watchdog() {
    let (mut m, tsc) = watched(cpuid_2ghz(false), false, Stability::Reliable);
    m.run_until(Ktime::from_millis(200));
    tsc.set_drift_ppb(2_000_000);
    m.run_until(Ktime::from_secs(3));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
}

#[test]
fn unstable_override_leaves_the_tsc_unselected() {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let t = probe(
        model(&clock, 2_000_000_000, true),
        cpuid_2ghz(true),
        None,
        Stability::Unstable,
    )
    .unwrap();
    let hpet = hpet(&clock);
    let m: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg(true, true), hpet);
    m.tick.register_clocksource(t).unwrap();
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
}

// ----- a TSC that does not count ---------------------------------------------

#[test]
fn stopped_tsc_is_a_typed_error_at_probe_and_the_system_falls_back() {
    // Rate from CPUID: caught by the liveness check.
    let clock = VirtualClock::new();
    let m = model(&clock, 2_000_000_000, true);
    m.set_stuck(true);
    let hpet = hpet(&clock);
    let e = probe(m, cpuid_2ghz(true), Some(hpet), Stability::Auto).unwrap_err();
    assert_eq!(e, TscError::Stopped);

    // Rate to calibrate: caught by the calibration.
    let e = probe(
        m,
        FakeCpuid::qemu_tcg(),
        Some(pit(&clock, Nanos::from_micros(1))),
        Stability::Auto,
    )
    .unwrap_err();
    assert_eq!(e, TscError::Stopped);

    // The system runs on the reference instead (reads cost no time from
    // here on, so that elapsed time is exact).
    hpet.set_read_delay(Nanos::ZERO);
    let trace = Trace::new();
    let mut sys: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg(true, true), hpet);
    sys.add_device(tick_dev(&clock, &trace));
    assert_eq!(sys.tick.timekeeper().clocksource().name(), "hpet");
    let before = sys.now();
    sys.run_for(Nanos::from_secs(1));
    assert_eq!(sys.now().saturating_since(before), Nanos::from_secs(1));
}

// ----- the cross-CPU warp check ------------------------------------------------

/// SMP bring-up's TSC warp check (Linux `tsc_sync.c`): the AP's TSC runs
/// at the BSP's rate but 5000 cycles (2.5 µs at 2 GHz) behind, as a TSC
/// reset with the CPU and not re-synchronised. The two take turns reading,
/// 50 ns of true time a read (100 cycles): every AP read is 4900 cycles
/// below the BSP read before it. The warp marks the TSC unstable and the
/// timekeeper goes on from the HPET, time not going back and timers not
/// firing early across the switch.
#[test]
fn an_ap_tsc_behind_the_bsps_is_a_warp_and_time_moves_to_the_hpet_without_going_back() {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let bsp = model(&clock, 2_000_000_000, true);
    let ap = TscModel::new(
        clock.clone(),
        TscModelConfig::new(Hertz::new(2_000_000_000))
            .initial(0x1234_5678_9ABC - 5_000)
            .invariant(true),
    )
    .leak();
    let tsc = probe(bsp, cpuid_2ghz(true), None, Stability::Auto).unwrap();
    let mut m: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg(true, true), tsc);
    m.tick.register_clocksource(hpet(&clock)).unwrap();
    m.add_device(tick_dev(&clock, &trace));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "tsc");
    m.run_for(Nanos::from_millis(10));

    let warp = tsc::WarpCheck::new();
    let read = |t: &TscModel| {
        clock.advance_by(Nanos::from_nanos(50));
        hw::TscRead::rdtsc(t)
    };
    for _ in 0..1_000 {
        warp.run(1, || read(bsp));
        warp.run(1, || read(ap));
    }
    let r = warp.result();
    assert_eq!(
        (r.reads, r.warps, r.max_warp),
        (2_000, 1_000, Cycles::new(4_900))
    );

    let before = m.now();
    assert_eq!(m.tick.mark_clocksource_unstable("tsc"), Some(true));
    assert_eq!(m.tick.timekeeper().clocksource().name(), "hpet");
    let after = m.now();
    assert!(after >= before, "time went back: {before} then {after}");
    let due = after.saturating_add(Nanos::from_millis(5));
    m.add_timer(0, due, 7);
    m.run_for(Nanos::from_millis(10));
    let fired = m.fired();
    assert_eq!(fired.len(), 1);
    assert!(fired[0].at >= due, "{:?}", fired[0]);
    assert!(m.now() >= after);
}
