//! The NO_HZ idle entry/exit path of `tick::TickSystem`, against the two
//! device programmings any idle path must do, on the same simulated device
//! in the same run.
//!
//! One simulated CPU (HZ=250, NO_HZ and high-res on) with a 1 GHz
//! LAPIC-like one-shot device and a 1 GHz TSC-like clocksource, eight
//! timers pending 100 ms–7 s ahead. One iteration is what the guest's
//! `idle_until` does around one halt:
//!
//! ```text
//!   idle_enter(0)                      idle accounting starts
//!   idle_sleep(0, Shallow)             next timer > next tick: stop the tick,
//!                                      hand off the jiffies duty, program the
//!                                      device for the first timer
//!   (halt; the wake-up interrupt is not simulated)
//!   idle_wake(0)                       nothing to take back from broadcast
//!   idle_exit(0)                       restart the tick on the grid, catch
//!                                      jiffies up, program the next tick,
//!                                      account idle time
//! ```
//!
//! The baseline is two bare `EventDevice::program_event` calls on the same
//! device, with the two expiries the idle path programs (first timer, next
//! tick): the minimum any NO_HZ idle path pays. The ratio is the tick
//! layer's bookkeeping (timer-queue lookup, grid, jiffies, accounting) on
//! top of those two writes. A third figure, three `TickSystem::now()`
//! calls, is the part of that which is the path's three clocksource reads.
//!
//! Virtual time stands still while timing, so every iteration does the same
//! work; one iteration is checked before timing (tick stopped once, device
//! programmed twice, for the first timer and then the next tick).
//!
//! Run: `cargo bench -p sim --bench nohz_idle`

use std::hint::black_box;
use std::time::Duration;

use clockevents::{CpuId, CpuMask, DeviceState, EventDevice, Expired, Features, Programmed};
use clocksource::{ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};
use criterion::{criterion_group, criterion_main, Criterion};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::{IdleDepth, TickConfig, TickMode};

/// Pending timers, ms after the start of the machine.
const TIMERS_MS: [u64; 8] = [100, 250, 600, 1_500, 2_000, 3_700, 5_000, 7_000];

/// One pass of the idle loop around one halt (see the module docs).
fn idle_cycle(m: &mut Machine<1>) {
    let _ = black_box(m.tick.idle_enter(CpuId::new(0)));
    let _ = black_box(m.tick.idle_sleep(CpuId::new(0), IdleDepth::Shallow));
    m.tick.idle_wake(CpuId::new(0));
    m.tick.idle_exit(CpuId::new(0));
}

fn bench(c: &mut Criterion) {
    let clock = VirtualClock::new();
    let tsc = SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000))
            .width(64)
            .rating(300)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
    )
    .leak();
    let dev = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic0", Hertz::new(1_000_000_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .rating(100)
            .min_delta(Cycles::new(1_000))
            .max_delta(Cycles::new(1 << 40))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .leak();
    let cfg = TickConfig::new(Hertz::new(250));
    let mut m: Machine<1> = Machine::with_timer_capacity(clock, Trace::new(), cfg, tsc, 64);
    m.add_device(dev);
    assert_eq!(m.tick.mode(CpuId::new(0)), TickMode::HighRes { nohz: true });
    for (i, ms) in TIMERS_MS.iter().enumerate() {
        m.add_timer(0, Ktime::from_millis(*ms), i as u64);
    }
    // Run busy for a while (ticks, jiffies), then stand still at 10 ms.
    m.run_for(Nanos::from_millis(10));
    let now = m.now();

    // One checked iteration: what the idle path programs, and that it does.
    let stops = m
        .tick
        .cpu_info(CpuId::new(0))
        .expect("cpu 0")
        .stats
        .tick_stops;
    let programs = dev.programs();
    m.tick.idle_enter(CpuId::new(0)).expect("cpu 0");
    let slept = m
        .tick
        .idle_sleep(CpuId::new(0), IdleDepth::Shallow)
        .expect("shallow");
    assert!(slept.tick_stopped && !slept.broadcast, "{slept:?}");
    let sleep_until = m.tick.programmed_event(CpuId::new(0));
    assert_eq!(sleep_until, Ktime::from_millis(TIMERS_MS[0]));
    m.tick.idle_wake(CpuId::new(0));
    m.tick.idle_exit(CpuId::new(0));
    let next_tick = m.tick.programmed_event(CpuId::new(0));
    assert_eq!(
        next_tick,
        Ktime::from_millis(12),
        "the next tick on the grid"
    );
    assert_eq!(
        m.tick
            .cpu_info(CpuId::new(0))
            .expect("cpu 0")
            .stats
            .tick_stops,
        stops + 1
    );
    assert_eq!(
        dev.programs(),
        programs + 2,
        "sleep and restart both program"
    );

    let mut g = c.benchmark_group("nohz_idle");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("idle_enter+sleep+wake+exit (tick stop and restart)", |b| {
        b.iter(|| idle_cycle(&mut m))
    });
    // The path reads the clocksource three times (idle_enter, idle_sleep,
    // idle_exit): how much of it that is.
    g.bench_function(
        "reference: 3 × TickSystem::now() (the path's clock reads)",
        |b| {
            b.iter(|| {
                black_box(black_box(&m.tick).now());
                black_box(black_box(&m.tick).now());
                black_box(black_box(&m.tick).now());
            })
        },
    );
    let stats = m.tick.cpu_info(CpuId::new(0)).expect("cpu 0").stats;
    assert_eq!(stats.program_failures, 0);
    assert_eq!(m.now(), now, "virtual time stood still");
    drop(m);

    // The same device, now driven directly (the machine is gone).
    let mut ev = EventDevice::new(dev, Nanos::from_millis(4)).expect("valid device");
    ev.attach().expect("attach");
    ev.set_state(DeviceState::Oneshot, Nanos::ZERO)
        .expect("one-shot");
    for t in [sleep_until, next_tick] {
        let p = ev.program_event(t, now, Expired::Force);
        assert_eq!(p, Ok(Programmed::At(t)));
    }
    g.bench_function("baseline: 2 × EventDevice::program_event", |b| {
        b.iter(|| {
            let _ = black_box(ev.program_event(black_box(sleep_until), now, Expired::Force));
            let _ = black_box(ev.program_event(black_box(next_tick), now, Expired::Force));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
