//! The tick layer's API given CPUs, configurations and ids that do not
//! exist: never a panic, a defined answer or a typed error (issue: "never
//! panics on bad hardware or bad input").

use std::sync::Arc;

use clockevents::{CpuId, CpuMask, Features};
use clocksource::{Cycles, Hertz, Ktime};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::config::ConfigError;
use tick::{AddError, RegisterError, TickConfig, TickMode, TickSystem, TimerSlot};

fn counter(clock: &Arc<VirtualClock>) -> &'static SimCounter {
    SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000)).rating(300),
    )
    .leak()
}

/// One CPU with a LAPIC-like one-shot device (1 GHz, min delta 1 µs).
fn one_cpu() -> Machine<1> {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let cs = counter(&clock);
    let mut m = Machine::new(clock.clone(), trace.clone(), TickConfig::DEFAULT, cs);
    m.add_device(
        SimEventDevice::new(
            clock,
            EventConfig::new("lapic0", Hertz::new(1_000_000_000))
                .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
                .min_delta(Cycles::new(1_000))
                .cpus(CpuMask::single(CpuId::BOOT)),
        )
        .with_trace(trace)
        .leak(),
    );
    m
}

#[test]
fn programmed_event_of_a_cpu_that_does_not_exist_is_never() {
    let m = one_cpu();
    assert_eq!(m.tick.mode(CpuId::new(1)), TickMode::NoDevice);
    assert_eq!(m.tick.programmed_event(CpuId::new(1)), Ktime::MAX);
    assert_eq!(m.tick.programmed_event(CpuId::new(u32::MAX)), Ktime::MAX);
    // CPU 0 is programmed for its first tick (HZ=250: 4 ms).
    assert_eq!(
        m.tick.programmed_event(CpuId::new(0)),
        Ktime::from_millis(4)
    );
}

#[test]
fn add_timer_on_a_cpu_that_does_not_exist_says_so_and_a_full_queue_says_full() {
    let m = one_cpu();
    let at = Ktime::from_millis(10);
    assert_eq!(m.tick.add_timer(CpuId::new(1), at, 1), Err(AddError::NoCpu));
    assert_eq!(
        m.tick.add_timer(CpuId::new(u32::MAX), at, 1),
        Err(AddError::NoCpu)
    );

    let clock = VirtualClock::new();
    let cs = counter(&clock);
    let small: Machine<1> =
        Machine::with_timer_capacity(clock, Trace::new(), TickConfig::DEFAULT, cs, 2);
    assert!(small.tick.add_timer(CpuId::new(0), at, 1).is_ok());
    assert!(small.tick.add_timer(CpuId::new(0), at, 2).is_ok());
    assert_eq!(
        small.tick.add_timer(CpuId::new(0), at, 3),
        Err(AddError::QueueFull)
    );
}

#[test]
fn tick_system_refuses_an_hz_whose_period_is_no_period() {
    let clock = VirtualClock::new();
    let cs = counter(&clock);
    // 10⁹ / hz rounds to 0 ns for hz > 2·10⁹: a tick grid of 0.
    for hz in [0, 10_001, 2_000_000_001, u64::from(u32::MAX)] {
        let cfg = TickConfig::new(Hertz::new(hz));
        let storage = [vec![TimerSlot::EMPTY; 4]];
        let got = TickSystem::<_, 1>::new(cfg, cs, storage).err();
        assert_eq!(
            got,
            Some(RegisterError::Config(ConfigError::BadHz(Hertz::new(hz)))),
            "hz={hz}"
        );
    }
    // The documented range, 1..=10000, is accepted.
    for hz in [1, 100, 250, 1000, 10_000] {
        let cfg = TickConfig::new(Hertz::new(hz));
        let t = TickSystem::<_, 1>::new(cfg, cs, [vec![TimerSlot::EMPTY; 4]]).unwrap();
        assert!(t.period().as_nanos() > 0);
    }
}
