//! `sim::conformance` run over the generic simulated devices, which follow
//! the `clockevents` contract by construction: the suite itself passes on a
//! known-good device, so a source that fails it has found its own fault.

use std::sync::Arc;

use clockevents::{CpuId, CpuMask, Features};
use clocksource::{ClockSourceFlags, Cycles, Hertz, Nanos};
use sim::conformance::{self, Profile};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::{PeriodicReason, TickConfig};

const HRES: ClockSourceFlags = ClockSourceFlags::CONTINUOUS.union(ClockSourceFlags::VALID_FOR_HRES);

/// A 1 GHz device with a 32-bit count and a 1 µs min delta.
const ONE_GHZ: Profile = Profile {
    source: "sim 1 GHz",
    hz: 250,
    periodic_jiffies: 2_500,
    // 0xFFFF_FFFF cycles of 1 ns.
    max_delta: Nanos::from_nanos(4_294_967_295),
    timer_late: Nanos::from_nanos(1),
    max_late: Nanos::from_nanos(1_001),
};

fn one_ghz(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000))
            .rating(300)
            .flags(HRES),
    )
    .leak()
}

fn device(
    clock: &Arc<VirtualClock>,
    trace: &Trace,
    cpu: u32,
    features: Features,
    max_delta: Cycles,
) -> &'static SimEventDevice {
    SimEventDevice::new(
        clock.clone(),
        EventConfig::new(["dev0", "dev1"][cpu as usize], Hertz::new(1_000_000_000))
            .features(features)
            .min_delta(Cycles::new(1_000))
            .max_delta(max_delta)
            .cpus(CpuMask::single(CpuId::new(cpu))),
    )
    .with_trace(trace.clone())
    .leak()
}

fn machine<const N: usize>(
    clock: &Arc<VirtualClock>,
    trace: &Trace,
    config: TickConfig,
    features: Features,
) -> Machine<N> {
    let mut m = Machine::new(clock.clone(), trace.clone(), config, one_ghz(clock));
    for cpu in 0..N as u32 {
        m.add_device(device(
            clock,
            trace,
            cpu,
            features,
            Cycles::new(0xFFFF_FFFF),
        ));
    }
    m
}

const BOTH: Features = Features::PERIODIC.union(Features::ONESHOT);

#[test]
fn a_1ghz_device_passes_the_periodic_scenarios() {
    conformance::periodic_10s(&ONE_GHZ, |c, t, cfg| machine::<1>(c, t, cfg, BOTH));
    conformance::stays_periodic_without_tickless(
        &ONE_GHZ,
        PeriodicReason::DeviceLacksOneshot,
        |c, t, cfg| machine::<1>(c, t, cfg, Features::PERIODIC),
    );
}

#[test]
fn a_1ghz_device_passes_the_nohz_scenarios() {
    conformance::nohz_idle_one_timer(&ONE_GHZ, |c, t, cfg| machine::<1>(c, t, cfg, BOTH));
    // ⌊20 s / 4.294967295 s⌋ = 4 forced re-arms.
    let rig = conformance::max_delta_rearms(&ONE_GHZ, Nanos::from_secs(20), |c, t, cfg| {
        machine::<1>(c, t, cfg, BOTH)
    });
    assert_eq!(rig.interrupts(0).len(), 4);
    conformance::random_timers(&ONE_GHZ, |c, t, cfg| machine::<2>(c, t, cfg, BOTH));
}

#[test]
fn a_device_whose_max_delta_is_short_is_re_armed_on_the_way_to_the_timer() {
    // 0xFF_FFFF cycles at 1 GHz: 16.777215 ms, so ⌈3.7 s / E⌉ = 221
    // interrupts up to the timer, 220 of them forced.
    let short = Profile {
        source: "sim 1 GHz, 24-bit",
        max_delta: Nanos::from_nanos(16_777_215),
        ..ONE_GHZ
    };
    let rig = conformance::nohz_idle_one_timer(&short, |c, t, cfg| {
        let mut m = Machine::new(c.clone(), t.clone(), cfg, one_ghz(c));
        m.add_device(device(c, t, 0, BOTH, Cycles::new(0xFF_FFFF)));
        m
    });
    assert_eq!(rig.interrupts(0).len(), 221);
}

#[test]
fn a_32bit_14_318mhz_clocksource_wakes_the_idle_cpu_every_max_deferment() {
    // Linux's 133.48 s for a 32-bit counter at 14.31818 MHz (the ICH HPET):
    // 7 forced wake-ups in 1000 s. The device (2^40 ns) would wait longer.
    let p = Profile {
        source: "sim on a 32-bit 14.318 MHz counter",
        max_delta: Nanos::from_nanos(1 << 40),
        ..ONE_GHZ
    };
    conformance::max_deferment_wakeups(
        &p,
        Nanos::from_millis(133_480),
        Nanos::from_secs(1_000),
        |c, t, cfg| {
            let cs = SimCounter::new(
                c.clone(),
                CounterConfig::new("hpet", Hertz::new(14_318_180))
                    .width(32)
                    .rating(250)
                    .flags(HRES),
            )
            .leak();
            let mut m = Machine::new(c.clone(), t.clone(), cfg, cs);
            m.add_device(device(c, t, 0, BOTH, Cycles::new(1 << 40)));
            m
        },
    );
}

#[test]
fn a_machine_whose_device_was_refused_ticks_on_the_pit_stand_in() {
    // The "source" refuses its device: the bring-up registers none.
    let rig = conformance::refused_device_falls_back(&ONE_GHZ, |clock, trace, config| {
        Machine::<1>::new(clock.clone(), trace.clone(), config, one_ghz(clock))
    });
    // 4 ms at 1.193182 MHz is 4772.7 clocks, rounded up to 4773
    // (4.000 229 ms): 249 whole periods in 1 s.
    assert_eq!(rig.machine.trace.interrupts_of("pit").len(), 249);
}

#[test]
#[should_panic(expected = "the refused device must not become the tick device")]
fn a_refusal_that_still_registers_the_device_fails_the_fallback_scenario() {
    conformance::refused_device_falls_back(&ONE_GHZ, |clock, trace, config| {
        machine::<1>(clock, trace, config, Features::PERIODIC)
    });
}

/// A 24-bit 3.579545 MHz counter (the ACPI PM timer's rate) whose reads
/// take 1 µs: a bracket spans 3.58 clocks, at most 4.
fn slow_pm_rate_counter(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    let c = SimCounter::new(
        clock.clone(),
        CounterConfig::new("pm-like", Hertz::new(3_579_545))
            .width(24)
            .flags(HRES),
    )
    .leak();
    c.set_read_delay(Nanos::from_micros(1));
    c
}

#[test]
fn a_slow_counter_calibrates_the_tsc_within_its_bracket_bound() {
    let clock = VirtualClock::new();
    let reference = slow_pm_rate_counter(&clock);
    let c =
        conformance::calibrates_a_3ghz_tsc("pm-like", &clock, reference, Hertz::new(3_579_545), 4);
    // ⌈6 · 10⁶ / 35 795⌉ + 1 = 169 ppm at most; the window is the 10 ms
    // asked for, give or take the last bracket.
    assert!(c.error_ppm <= 169, "{c:?}");
    assert!(c.window >= Nanos::from_millis(10), "{c:?}");
}

#[test]
#[should_panic(expected = "more than the error it states")]
fn a_reference_that_runs_500ppm_fast_fails_the_calibration_scenario() {
    let clock = VirtualClock::new();
    let reference = slow_pm_rate_counter(&clock);
    reference.set_drift_ppb(500_000);
    conformance::calibrates_a_3ghz_tsc("fast", &clock, reference, Hertz::new(3_579_545), 4);
}
