//! The simulated devices against their contracts, with exact virtual times.

use std::sync::Arc;

use clockevents::NextEvent::{At, In};
use clockevents::{ClockEventDevice, CpuId, CpuMask, DeviceError, Features};
use clocksource::{ClockSource, Cycles, Hertz, Ktime, Nanos};
use sim::{
    CounterConfig, EventConfig, InterruptSource, SimCounter, SimEventDevice, Trace, TraceKind,
    VirtualClock,
};

fn ms(n: u64) -> Ktime {
    Ktime::from_millis(n)
}
fn us(n: u64) -> Ktime {
    Ktime::from_micros(n)
}

/// A 1 MHz device on CPU 0 with its own clock and trace.
fn setup(config: EventConfig) -> (Arc<VirtualClock>, SimEventDevice, Trace) {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let dev = SimEventDevice::new(clock.clone(), config).with_trace(trace.clone());
    (clock, dev, trace)
}

fn lapic() -> EventConfig {
    EventConfig::new("lapic", Hertz::from_mhz(1))
}

/// The machine's inner loop for one device: fire everything due up to `end`;
/// returns the delivery results in order.
fn run_until(clock: &VirtualClock, dev: &dyn InterruptSource, end: Ktime) -> Vec<(Ktime, bool)> {
    let mut out = Vec::new();
    while let Some(t) = dev.next_fire() {
        if t > end {
            break;
        }
        let now = clock.advance_to(t);
        out.push((now, dev.fire()));
    }
    clock.advance_to(end);
    out
}

#[test]
fn periodic_device_fires_every_period_exactly() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    let fired = run_until(&clock, &dev, ms(40));
    let expect: Vec<_> = (1..=10).map(|k| (ms(4 * k), true)).collect();
    assert_eq!(fired, expect);
    assert_eq!(
        trace.interrupts_of("lapic"),
        (1..=10).map(|k| ms(4 * k)).collect::<Vec<_>>()
    );
    assert_eq!(dev.interrupts(), 10);
    assert_eq!(dev.next_fire(), Some(ms(44)));
}

#[test]
fn periodic_period_is_whole_cycles_without_accumulated_rounding() {
    // 1 ms at 14.31818 MHz is 14318.18 cycles: the reload holds 14318, so
    // the true period is 999987.43 ns; each event is rounded up on its own.
    let (clock, dev, trace) = setup(EventConfig::new("hpet", Hertz::new(14_318_180)));
    dev.set_state_periodic(Nanos::from_millis(1)).unwrap();
    run_until(&clock, &dev, ms(1_000));
    let irqs = trace.interrupts_of("hpet");
    assert_eq!(
        &irqs[..3],
        &[
            Ktime::from_nanos(999_988),
            Ktime::from_nanos(1_999_975),
            Ktime::from_nanos(2_999_963),
        ]
    );
    assert_eq!(irqs.len(), 1000);
    assert_eq!(irqs[999], Ktime::from_nanos(999_987_429));
}

#[test]
fn periodic_starts_one_period_after_the_call() {
    let (clock, dev, _) = setup(lapic());
    clock.advance_to(us(1_234));
    dev.set_state_periodic(Nanos::from_millis(1)).unwrap();
    assert_eq!(dev.next_fire(), Some(us(2_234)));
}

#[test]
fn oneshot_fires_once_never_early() {
    // 3 MHz: 10 cycles are 3333.3 ns, due rounded up to 3334 ns after the call.
    let (clock, dev, trace) = setup(EventConfig::new("hpet", Hertz::from_mhz(3)));
    dev.set_state_oneshot().unwrap();
    clock.advance_to(us(1));
    dev.program(In(Cycles::new(10_000))).unwrap();
    assert_eq!(dev.next_fire(), Some(Ktime::from_nanos(1_000 + 3_333_334)));
    clock.advance_to(Ktime::from_nanos(1_000 + 3_333_333));
    assert!(!dev.fire(), "one ns early: nothing");
    let fired = run_until(&clock, &dev, ms(100));
    assert_eq!(fired, vec![(Ktime::from_nanos(3_334_334), true)]);
    assert_eq!(dev.next_fire(), None);
    assert!(!dev.is_armed());
    assert_eq!(
        trace.count(|e| matches!(e.kind, TraceKind::Program { .. })),
        1
    );
    assert_eq!(dev.last_delta(), Some(Cycles::new(10_000)));
    assert_eq!(dev.programs(), 1);
}

#[test]
fn reprogramming_replaces_the_pending_event() {
    let (clock, dev, _) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(5_000))).unwrap();
    dev.program(In(Cycles::new(2_000))).unwrap();
    assert_eq!(run_until(&clock, &dev, ms(10)), vec![(ms(2), true)]);
}

#[test]
fn ktime_device_fires_at_the_deadline() {
    let cfg = EventConfig::new("deadline", Hertz::new(0))
        .features(Features::ONESHOT)
        .deadline();
    let (clock, dev, trace) = setup(cfg);
    dev.set_state_oneshot().unwrap();
    dev.program(At(Ktime::from_nanos(1_234_567))).unwrap();
    assert_eq!(
        run_until(&clock, &dev, ms(5)),
        vec![(Ktime::from_nanos(1_234_567), true)]
    );
    // A deadline already past is due immediately.
    dev.program(At(ms(1))).unwrap();
    assert_eq!(dev.next_fire(), Some(ms(1)));
    assert!(dev.fire());
    assert!(trace.device_errors().is_empty(), "{trace}");
}

#[test]
fn programming_in_wrong_state_is_an_error() {
    let cfg = lapic()
        .features(Features::ONESHOT)
        .min_delta(Cycles::new(10))
        .max_delta(Cycles::new(1_000));
    let (_clock, dev, trace) = setup(cfg);
    let e = |r: Result<(), DeviceError>| r.unwrap_err();
    // Not yet in the oneshot state.
    assert_eq!(
        e(dev.program(In(Cycles::new(100)))),
        DeviceError::Unsupported
    );
    dev.set_state_shutdown().unwrap();
    assert_eq!(
        e(dev.program(In(Cycles::new(100)))),
        DeviceError::Unsupported
    );
    assert_eq!(e(dev.set_state_oneshot_stopped()), DeviceError::Unsupported);
    // No PERIODIC feature, and a cycles device.
    assert_eq!(
        e(dev.set_state_periodic(Nanos::from_millis(1))),
        DeviceError::Unsupported
    );
    dev.set_state_oneshot().unwrap();
    assert_eq!(e(dev.program(At(ms(1)))), DeviceError::Unsupported);
    // Deltas outside [min, max].
    assert_eq!(e(dev.program(In(Cycles::new(9)))), DeviceError::Hardware);
    assert_eq!(
        e(dev.program(In(Cycles::new(1_001)))),
        DeviceError::Hardware
    );
    // Stopped is not oneshot: the core must switch back first.
    dev.set_state_oneshot_stopped().unwrap();
    assert_eq!(
        e(dev.program(In(Cycles::new(100)))),
        DeviceError::Unsupported
    );

    assert_eq!(dev.errors(), 8);
    assert_eq!(trace.device_errors().len(), 8, "{trace}");
    assert_eq!(dev.next_fire(), None, "nothing armed");
    // The bounds themselves are fine.
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(10))).unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap();
    assert_eq!(dev.errors(), 8);
    assert_eq!(dev.programs(), 8, "refused calls count too");
}

#[test]
fn periodic_period_out_of_range_is_an_error() {
    let (_clock, dev, trace) = setup(lapic().max_delta(Cycles::new(1_000)));
    assert_eq!(
        dev.set_state_periodic(Nanos::from_nanos(400)),
        Err(DeviceError::Hardware)
    );
    assert_eq!(
        dev.set_state_periodic(Nanos::from_micros(1_001)),
        Err(DeviceError::Hardware)
    );
    assert_eq!(trace.device_errors().len(), 2);
    dev.set_state_periodic(Nanos::from_micros(1_000)).unwrap();
}

#[test]
fn shutdown_and_oneshot_stopped_cancel_the_pending_event() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap();
    dev.set_state_oneshot_stopped().unwrap();
    assert_eq!(dev.next_fire(), None);
    dev.set_state_periodic(Nanos::from_millis(1)).unwrap();
    dev.set_state_shutdown().unwrap();
    assert!(run_until(&clock, &dev, ms(10)).is_empty());
    let states: Vec<_> = trace
        .filter(|e| matches!(e.kind, TraceKind::State { .. }))
        .into_iter()
        .map(|e| match e.kind {
            TraceKind::State { state, .. } => state,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        states,
        ["oneshot", "oneshot_stopped", "periodic", "shutdown"]
    );
}

#[test]
fn c3stop_device_pauses_in_deep_idle() {
    let (clock, dev, trace) = setup(lapic().stops_in_deep_idle(true));
    assert!(dev.info().features.contains(Features::C3STOP));
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap(); // due at 1 ms
    clock.advance_to(us(400));
    dev.set_deep_idle(true);
    assert_eq!(dev.next_fire(), None, "stopped: nothing can fire");
    clock.advance_to(ms(5));
    assert!(!dev.fire());
    dev.set_deep_idle(false);
    // 600 µs were left when it stopped.
    assert_eq!(run_until(&clock, &dev, ms(10)), vec![(us(5_600), true)]);
    assert_eq!(
        trace.count(|e| matches!(e.kind, TraceKind::DeepIdle { .. })),
        2
    );
}

#[test]
fn c3stop_periodic_device_resumes_its_period_after_deep_idle() {
    let (clock, dev, _) = setup(lapic().stops_in_deep_idle(true));
    dev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    let mut fired: Vec<_> = run_until(&clock, &dev, ms(5))
        .into_iter()
        .map(|f| f.0)
        .collect();
    dev.set_deep_idle(true); // 3 ms of the second period left
    clock.advance_to(ms(15));
    dev.set_deep_idle(false);
    fired.extend(run_until(&clock, &dev, ms(24)).into_iter().map(|f| f.0));
    assert_eq!(fired, vec![ms(4), ms(18), ms(22)]);
}

#[test]
fn device_without_c3stop_ignores_deep_idle() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap();
    dev.set_deep_idle(true);
    assert_eq!(run_until(&clock, &dev, ms(5)), vec![(ms(1), true)]);
    assert_eq!(
        trace.count(|e| matches!(e.kind, TraceKind::DeepIdle { .. })),
        0
    );
}

#[test]
fn lost_interrupt_is_recorded() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap();
    dev.lose_next(1);
    assert_eq!(run_until(&clock, &dev, ms(5)), vec![(ms(1), false)]);
    assert!(!dev.is_armed(), "a lost one-shot disarms");
    assert_eq!(dev.lost(), 1);
    assert_eq!(dev.interrupts(), 0);
    let lost = trace.filter(|e| matches!(e.kind, TraceKind::InterruptLost { device: "lapic" }));
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].time, ms(1));
    assert_eq!(lost[0].cpu, Some(0));
}

#[test]
fn lost_periodic_interrupts_do_not_stop_the_period() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    dev.lose_next(2);
    let fired = run_until(&clock, &dev, ms(16));
    assert_eq!(
        fired,
        vec![
            (ms(4), false),
            (ms(8), false),
            (ms(12), true),
            (ms(16), true)
        ]
    );
    assert_eq!(trace.interrupts_of("lapic"), vec![ms(12), ms(16)]);
}

#[test]
fn late_interrupt_delivered_late_by_exactly() {
    let (clock, dev, trace) = setup(lapic());
    dev.late_by(Nanos::from_micros(250));
    dev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    run_until(&clock, &dev, ms(12));
    assert_eq!(trace.interrupts_of("lapic"), vec![us(4_250), us(8_250)]);
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(1_000))).unwrap(); // due at 13 ms
    assert_eq!(run_until(&clock, &dev, ms(20)), vec![(us(13_250), true)]);
    assert_eq!(
        dev.coalesced(),
        0,
        "late by less than a period merges nothing"
    );
}

#[test]
fn periodic_interrupts_coalesce_when_serviced_late() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_periodic(Nanos::from_millis(4)).unwrap();
    clock.advance_to(ms(13)); // the machine stalled past 4, 8 and 12 ms
    assert!(dev.fire());
    assert_eq!(dev.coalesced(), 2);
    assert_eq!(dev.next_fire(), Some(ms(16)));
    assert_eq!(
        trace.count(|e| matches!(e.kind, TraceKind::InterruptsCoalesced { count: 2, .. })),
        1
    );
}

#[test]
fn too_late_below_threshold_reports_race() {
    let (clock, dev, trace) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.program(In(Cycles::new(500))).unwrap();
    dev.too_late_below(Cycles::new(50));
    assert_eq!(dev.program(In(Cycles::new(49))), Err(DeviceError::TooLate));
    assert_eq!(
        dev.next_fire(),
        None,
        "the race armed nothing and overwrote the old event"
    );
    assert_eq!(
        trace.count(|e| matches!(e.kind, TraceKind::TooLate { .. })),
        1
    );
    assert!(trace.device_errors().is_empty(), "a race is not a misuse");
    dev.program(In(Cycles::new(50))).unwrap();
    assert_eq!(run_until(&clock, &dev, ms(1)), vec![(us(50), true)]);
}

#[test]
fn failed_programming_returns_too_late_the_next_n_times() {
    let (_clock, dev, trace) = setup(lapic());
    dev.set_state_oneshot().unwrap();
    dev.fail_programming(2);
    assert_eq!(
        dev.program(In(Cycles::new(1_000))),
        Err(DeviceError::TooLate)
    );
    assert_eq!(
        dev.program(In(Cycles::new(2_000))),
        Err(DeviceError::TooLate)
    );
    assert!(!dev.is_armed());
    dev.program(In(Cycles::new(4_000))).unwrap();
    assert_eq!(dev.next_fire(), Some(ms(4)));
    assert_eq!(dev.programs(), 3);
    assert_eq!(dev.last_delta(), Some(Cycles::new(4_000)));
    assert!(trace.device_errors().is_empty());
}

#[test]
fn trace_records_carry_the_target_cpu() {
    let (clock, dev, trace) = setup(lapic().cpus(CpuMask::single(CpuId::new(3))));
    let (_, global, _) = setup(EventConfig::new("hpet", Hertz::from_mhz(1)).cpus(CpuMask::ALL));
    assert_eq!(dev.target_cpu(), Some(3));
    assert_eq!(global.target_cpu(), None);
    dev.set_state_periodic(Nanos::from_millis(1)).unwrap();
    run_until(&clock, &dev, ms(1));
    dev.set_target_cpu(Some(5));
    run_until(&clock, &dev, ms(2));
    let cpus: Vec<_> = trace
        .filter(|e| matches!(e.kind, TraceKind::Interrupt { .. }))
        .iter()
        .map(|e| e.cpu)
        .collect();
    assert_eq!(cpus, vec![Some(3), Some(5)]);
}

#[test]
fn devices_work_as_static_dyn_and_through_arc() {
    let clock = VirtualClock::new();
    let dev: &'static SimEventDevice = SimEventDevice::new(clock.clone(), lapic()).leak();
    let as_dyn: &'static dyn ClockEventDevice = dev;
    let counter: &'static dyn ClockSource =
        SimCounter::new(clock.clone(), CounterConfig::new("tsc", Hertz::from_mhz(1))).leak();
    as_dyn.set_state_oneshot().unwrap();
    as_dyn.program(In(Cycles::new(10))).unwrap();
    assert_eq!(dev.next_fire(), Some(us(10)));

    let shared = Arc::new(SimEventDevice::new(clock.clone(), lapic()));
    let other = Arc::clone(&shared);
    std::thread::spawn(move || other.set_state_periodic(Nanos::from_millis(1)).unwrap())
        .join()
        .unwrap();
    assert_eq!(shared.next_fire(), Some(ms(1)));
    clock.advance_to(ms(1));
    assert_eq!(counter.read(), Cycles::new(1_000));
}
