//! Unit tests of [`TickSystem`] over the fakes of [`crate::testing`]: mode
//! selection, the interrupt path and NO_HZ idle, each step checked against
//! what the fake device was told. The simulator (`sim`) runs the same code
//! end to end over register models; these pin the composition down
//! without it.

use std::boxed::Box;
use std::vec::Vec;

use clockevents::{CpuId, DeviceId, Features};
use clocksource::{ClockSource, Cycles, Ktime, Nanos, PublishedClock};

use crate::lock::Lock;
use crate::testing::{Call, FakeClock, FakeTimer};
use crate::{
    AddError, IdleDepth, IdleError, PeriodicReason, Rearm, TickConfig, TickMode, TickSystem,
    TimerSlot,
};

type Sys = TickSystem<'static, [TimerSlot; 16], 2>;

const CPU0: CpuId = CpuId::BOOT;
const CPU1: CpuId = CpuId::new(1);

const PERIOD: Nanos = Nanos::from_millis(4); // HZ = 250

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

fn ms(n: u64) -> Ktime {
    Ktime::from_nanos(n * 1_000_000)
}

/// A system on a fake 1 GHz clock with one device for CPU 0.
fn system(
    config: TickConfig,
    features: Features,
) -> (Sys, &'static FakeClock, &'static FakeTimer, DeviceId) {
    let clock = leak(FakeClock::new("fake", 300));
    let dev = leak(FakeTimer::new("timer0", features, CPU0));
    let sys = Sys::new(config, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    let id = sys.register_device(dev).unwrap();
    (sys, clock, dev, id)
}

const ONESHOT_PERIODIC: Features = Features::ONESHOT.union(Features::PERIODIC);

#[test]
fn a_device_without_one_shot_stays_periodic_and_says_why() {
    let (sys, _, dev, _) = system(TickConfig::DEFAULT, Features::PERIODIC);
    assert_eq!(sys.mode(CPU0), TickMode::Periodic);
    let info = sys.cpu_info(CPU0).unwrap();
    assert_eq!(
        info.periodic_reason,
        Some(PeriodicReason::DeviceLacksOneshot)
    );
    // Attached (shut down), then started at HZ.
    assert_eq!(dev.calls(), [Call::Shutdown, Call::Periodic(PERIOD)]);
    // CPU 1 has no device.
    assert_eq!(sys.mode(CPU1), TickMode::NoDevice);
}

#[test]
fn nohz_off_keeps_a_one_shot_device_periodic() {
    let config = TickConfig::DEFAULT.with_nohz(false).with_highres(false);
    let (sys, _, _, _) = system(config, ONESHOT_PERIODIC);
    assert_eq!(sys.mode(CPU0), TickMode::Periodic);
    assert_eq!(
        sys.cpu_info(CPU0).unwrap().periodic_reason,
        Some(PeriodicReason::NotRequested)
    );
}

#[test]
fn a_periodic_tick_advances_jiffies_by_the_clock_not_by_interrupts() {
    let (sys, clock, _, id) = system(TickConfig::DEFAULT, Features::PERIODIC);
    let mut run = |_: CpuId, _, _| Rearm::No;
    clock.advance(PERIOD);
    sys.interrupt(id, CPU0, &mut run);
    assert_eq!(sys.jiffies(), 1);
    // Two periods pass but one interrupt comes (coalesced): no time lost.
    clock.advance(Nanos::from_millis(8));
    sys.interrupt(id, CPU0, &mut run);
    assert_eq!(sys.jiffies(), 3);
    let stats = sys.cpu_info(CPU0).unwrap().stats;
    assert_eq!((stats.interrupts, stats.ticks), (2, 2));
}

#[test]
fn high_res_programs_the_next_tick_then_an_earlier_timer() {
    let (sys, clock, dev, id) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    assert_eq!(sys.mode(CPU0), TickMode::HighRes { nohz: true });
    // Boot at 0: the first tick is at 4 ms, 4·10⁶ cycles of the 1 GHz fake.
    assert_eq!(
        dev.last_programmed(),
        Some(Call::Next(Cycles::new(4_000_000)))
    );
    clock.advance(Nanos::from_millis(1));
    sys.add_timer(CPU0, ms(2), 7).unwrap();
    assert_eq!(sys.programmed_event(CPU0), ms(2));
    assert_eq!(
        dev.last_programmed(),
        Some(Call::Next(Cycles::new(1_000_000)))
    );
    clock.advance(Nanos::from_millis(1));
    let mut fired = Vec::new();
    sys.interrupt(id, CPU0, &mut |cpu, t, now| {
        fired.push((cpu, t.data, now));
        Rearm::No
    });
    assert_eq!(fired, [(CPU0, 7, ms(2))]);
    assert_eq!(sys.programmed_event(CPU0), ms(4), "back to the tick");
}

#[test]
fn an_interrupt_of_another_cpus_device_is_forwarded_to_its_owner() {
    let (sys, clock, dev, id) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    assert_eq!(sys.programmed_event(CPU0), ms(4));
    clock.advance(PERIOD);
    let before = dev.calls().len();
    // CPU 0's device fires, but the interrupt is taken on CPU 1.
    let mask = sys.interrupt(id, CPU1, &mut |_, _, _| Rearm::No);
    assert_eq!(mask.iter().collect::<Vec<_>>(), [CPU0], "kick the owner");
    assert_eq!(sys.cpu_info(CPU1).unwrap().stats.forwarded, 1);
    assert_eq!(sys.cpu_info(CPU1).unwrap().stats.interrupts, 0);
    assert_eq!(sys.cpu_info(CPU0).unwrap().stats.interrupts, 0);
    assert_eq!(
        dev.calls()[before..],
        [Call::Ack],
        "CPU 1 touches nothing of CPU 0's but the acknowledgement"
    );
    // The owner handles its event on the IPI: its tick runs, and the next
    // one is programmed — the fired event is not left pending, so the
    // owner is interrupted again.
    sys.ipi(CPU0, &mut |_, _, _| Rearm::No);
    let info = sys.cpu_info(CPU0).unwrap();
    assert_eq!((info.stats.interrupts, info.stats.ticks), (1, 1));
    assert_eq!(sys.programmed_event(CPU0), ms(8));
    assert_eq!(
        dev.last_programmed(),
        Some(Call::Next(Cycles::new(4_000_000)))
    );
}

/// The device is acknowledged once per interrupt, before the handler
/// reprograms it: a level-triggered status cleared after the next event
/// was armed could clear that event's interrupt too.
#[test]
fn each_interrupt_acknowledges_the_device_once_before_reprogramming_it() {
    let (sys, clock, dev, id) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    for _ in 0..3 {
        clock.advance(PERIOD);
        let before = dev.calls().len();
        sys.interrupt(id, CPU0, &mut |_, _, _| Rearm::No);
        let calls = &dev.calls()[before..];
        assert_eq!(calls.first(), Some(&Call::Ack), "{calls:?}");
        assert_eq!(calls.iter().filter(|c| **c == Call::Ack).count(), 1);
        assert!(matches!(calls.last(), Some(Call::Next(_))), "{calls:?}");
    }
}

#[test]
fn nohz_idle_stops_the_tick_for_a_far_timer_and_restarts_it_on_the_grid() {
    let (sys, clock, _, _) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    sys.add_timer(CPU0, ms(1000), 1).unwrap();
    clock.advance(Nanos::from_millis(1));
    let s = sys.idle_sleep(CPU0, IdleDepth::Shallow).unwrap();
    assert!(s.tick_stopped);
    assert_eq!(s.wakeup, ms(1000));
    // CPU 0 held the duty and gave it up; it is the last holder.
    assert_eq!(sys.do_timer_cpu(), None);
    clock.advance(Nanos::from_micros(9_500)); // 10.5 ms
    sys.idle_exit(CPU0);
    assert_eq!(sys.do_timer_cpu(), Some(CPU0));
    assert_eq!(sys.jiffies(), 2);
    assert_eq!(sys.programmed_event(CPU0), ms(12), "next grid point");
    let info = sys.cpu_info(CPU0).unwrap();
    assert!(!info.tick_stopped);
    assert_eq!(info.idle_time, Nanos::from_micros(9_500));
    assert_eq!(info.stats.tick_stops, 1);
}

#[test]
fn nohz_idle_keeps_the_tick_for_a_timer_due_before_it() {
    let (sys, clock, _, _) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    sys.add_timer(CPU0, ms(3), 1).unwrap();
    clock.advance(Nanos::from_millis(1));
    let s = sys.idle_sleep(CPU0, IdleDepth::Shallow).unwrap();
    assert!(!s.tick_stopped);
    assert_eq!(s.wakeup, ms(3));
    assert_eq!(sys.cpu_info(CPU0).unwrap().stats.tick_retained, 1);
}

#[test]
fn deep_idle_without_a_broadcast_device_is_refused_only_for_c3stop_devices() {
    let (sys, clock, _, _) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    clock.advance(Nanos::from_millis(1));
    assert!(sys.idle_sleep(CPU0, IdleDepth::Deep).is_ok(), "not C3STOP");
    let (sys, clock, _, _) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC | Features::C3STOP);
    clock.advance(Nanos::from_millis(1));
    assert_eq!(sys.idle_sleep(CPU0, IdleDepth::Deep), Err(IdleError::Busy));
}

#[test]
fn a_cpu_out_of_range_is_refused_everywhere() {
    let (sys, _, _, _) = system(TickConfig::DEFAULT, ONESHOT_PERIODIC);
    assert_eq!(sys.add_timer(CpuId::new(2), ms(5), 0), Err(AddError::NoCpu));
    assert_eq!(sys.idle_enter(CpuId::new(2)), Err(IdleError::NoCpu));
    assert_eq!(
        sys.idle_sleep(CpuId::new(9), IdleDepth::Shallow),
        Err(IdleError::NoCpu)
    );
    sys.idle_wake(CpuId::new(2));
    sys.idle_exit(CpuId::new(2));
    sys.ipi(CpuId::new(2), &mut |_, _, _| Rearm::No);
    assert!(sys.cpu_info(CpuId::new(2)).is_none());
    assert_eq!(sys.programmed_event(CpuId::new(2)), Ktime::MAX);
    assert_eq!(sys.mode(CpuId::new(u32::MAX)), TickMode::NoDevice);
}

/// A device that counts how often it is asked what it is, and answers
/// differently each time after the first.
struct Counting {
    inner: FakeTimer,
    asked: std::sync::atomic::AtomicU32,
}

impl clockevents::ClockEventDevice for Counting {
    fn info(&self) -> clockevents::DeviceInfo {
        let n = self
            .asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut info = self.inner.info();
        if n > 0 {
            info.features = Features::empty(); // a driver changing its mind
        }
        info
    }
    fn set_state_shutdown(&self) -> Result<(), clockevents::DeviceError> {
        self.inner.set_state_shutdown()
    }
    fn set_state_periodic(&self, period: Nanos) -> Result<(), clockevents::DeviceError> {
        self.inner.set_state_periodic(period)
    }
    fn set_state_oneshot(&self) -> Result<(), clockevents::DeviceError> {
        self.inner.set_state_oneshot()
    }
    fn program(&self, next: clockevents::NextEvent) -> Result<(), clockevents::DeviceError> {
        self.inner.program(next)
    }
}

#[test]
fn what_a_device_is_is_read_once_at_registration() {
    let clock = leak(FakeClock::new("fake", 300));
    let dev = leak(Counting {
        inner: FakeTimer::new("counting", ONESHOT_PERIODIC, CPU0),
        asked: std::sync::atomic::AtomicU32::new(0),
    });
    let sys = Sys::new(TickConfig::DEFAULT, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    let id = sys.register_device(dev).unwrap();
    assert_eq!(dev.asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Later answers (no features at all) change nothing the core holds.
    assert_eq!(sys.mode(CPU0), TickMode::HighRes { nohz: true });
    assert_eq!(
        sys.devices().info(id).map(|i| i.features),
        Some(ONESHOT_PERIODIC)
    );
    clock.advance(PERIOD);
    sys.interrupt(id, CPU0, &mut |_, _, _| Rearm::No);
    assert_eq!(sys.cpu_info(CPU0).unwrap().stats.ticks, 1);
    assert_eq!(dev.asked.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Two CPUs, each with its own one-shot device (as two local APICs).
fn two_cpus() -> (
    Sys,
    &'static FakeClock,
    [&'static FakeTimer; 2],
    [DeviceId; 2],
) {
    let clock = leak(FakeClock::new("fake", 300));
    let d0 = leak(FakeTimer::new("timer0", ONESHOT_PERIODIC, CPU0));
    let d1 = leak(FakeTimer::new("timer1", ONESHOT_PERIODIC, CPU1));
    let sys = Sys::new(TickConfig::DEFAULT, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    let i0 = sys.register_device(d0).unwrap();
    let i1 = sys.register_device(d1).unwrap();
    (sys, clock, [d0, d1], [i0, i1])
}

#[test]
fn a_timer_queued_for_another_cpu_kicks_it_and_never_touches_its_device() {
    let (sys, clock, [d0, d1], [_, i1]) = two_cpus();
    clock.advance(Nanos::from_millis(1));
    let (calls0, calls1) = (d0.calls().len(), d1.calls().len());
    // CPU 0 queues a timer at 2 ms on CPU 1, programmed for its 4 ms tick.
    let (_, kick) = sys.add_timer_from(CPU0, CPU1, ms(2), 5).unwrap();
    assert_eq!(kick, crate::Kick::Ipi(CPU1));
    assert_eq!(d0.calls().len(), calls0, "CPU 0's device untouched");
    assert_eq!(
        d1.calls().len(),
        calls1,
        "CPU 1's device untouched by CPU 0"
    );
    assert_eq!(sys.programmed_event(CPU1), ms(4));
    // CPU 1 takes the IPI and programs its own device for 2 ms.
    sys.kicked(CPU1, &mut |_, _, _| Rearm::No);
    assert_eq!(sys.programmed_event(CPU1), ms(2));
    assert_eq!(
        d1.last_programmed(),
        Some(Call::Next(Cycles::new(1_000_000)))
    );
    assert_eq!(sys.cpu_info(CPU1).unwrap().stats.kicks, 1);
    // It fires on CPU 1, on time.
    clock.advance(Nanos::from_millis(1));
    let mut fired = Vec::new();
    sys.interrupt(i1, CPU1, &mut |cpu, t, now| {
        fired.push((cpu, t.data, now));
        Rearm::No
    });
    assert_eq!(fired, [(CPU1, 5, ms(2))]);
    // A later timer is covered by the programmed tick: no kick.
    let (_, kick) = sys.add_timer_from(CPU0, CPU1, ms(9), 6).unwrap();
    assert_eq!(kick, crate::Kick::None);
}

#[test]
fn a_cpu_sleeping_tickless_is_kicked_only_for_a_timer_before_its_wake_up() {
    let (sys, clock, [_, d1], _) = two_cpus();
    // CPU 1 idles with one timer at 500 ms: its tick stops, it sleeps
    // until then.
    sys.add_timer(CPU1, ms(500), 1).unwrap();
    sys.idle_enter(CPU1).unwrap();
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert!(sys.cpu_info(CPU1).unwrap().tick_stopped);
    assert_eq!(sys.programmed_event(CPU1), ms(500));
    clock.advance(Nanos::from_millis(1));
    let calls1 = d1.calls().len();
    let (_, later) = sys.add_timer_from(CPU0, CPU1, ms(700), 2).unwrap();
    assert_eq!(later, crate::Kick::None, "700 ms: it wakes at 500 anyway");
    let (_, sooner) = sys.add_timer_from(CPU0, CPU1, ms(100), 3).unwrap();
    assert_eq!(sooner, crate::Kick::Ipi(CPU1));
    assert_eq!(d1.calls().len(), calls1);
    // Woken by the IPI in NO_HZ idle: the handler leaves the re-arm to the
    // idle loop, whose next sleep programs the new, earlier timer.
    sys.kicked(CPU1, &mut |_, _, _| Rearm::No);
    assert_eq!(d1.calls().len(), calls1, "left to the idle loop");
    // A timer queued meanwhile, earlier still, needs no kick: that loop
    // programs for the whole queue before it halts.
    let (_, meanwhile) = sys.add_timer_from(CPU0, CPU1, ms(50), 4).unwrap();
    assert_eq!(meanwhile, crate::Kick::None);
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert_eq!(sys.programmed_event(CPU1), ms(50));
}

#[test]
fn timers_queued_while_a_kick_is_outstanding_ride_on_it() {
    let (sys, clock, [_, d1], _) = two_cpus();
    sys.idle_enter(CPU1).unwrap();
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert!(sys.cpu_info(CPU1).unwrap().tick_stopped);
    assert_eq!(sys.programmed_event(CPU1), Ktime::MAX);
    clock.advance(Nanos::from_millis(1));
    let calls1 = d1.calls().len();
    // 12 timers for CPU 1 (of its 16 slots), the earliest last, before it
    // runs: one kick.
    let kicks: Vec<_> = (0..12u64)
        .rev()
        .map(|n| {
            let at = ms(2).saturating_add(Nanos::from_micros(10 * n));
            sys.add_timer_from(CPU0, CPU1, at, n).unwrap().1
        })
        .collect();
    assert_eq!(kicks[0], crate::Kick::Ipi(CPU1));
    assert!(kicks[1..].iter().all(|k| *k == crate::Kick::None));
    assert_eq!(d1.calls().len(), calls1, "CPU 1's device untouched");
    // The kick taken, its idle loop programs the earliest of them all.
    sys.kicked(CPU1, &mut |_, _, _| Rearm::No);
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert_eq!(sys.programmed_event(CPU1), ms(2));
    // Past that kick, an earlier timer kicks again (once).
    let (_, again) = sys
        .add_timer_from(CPU0, CPU1, Ktime::from_nanos(1_500_000), 7)
        .unwrap();
    assert_eq!(again, crate::Kick::Ipi(CPU1));
    let (_, rides) = sys
        .add_timer_from(CPU0, CPU1, Ktime::from_nanos(1_400_000), 8)
        .unwrap();
    assert_eq!(rides, crate::Kick::None);
    // CPU 1's own reprogramming (before the IPI lands) covers them too: the
    // next earlier timer kicks afresh.
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert_eq!(sys.programmed_event(CPU1), Ktime::from_nanos(1_400_000));
    let (_, fresh) = sys
        .add_timer_from(CPU0, CPU1, Ktime::from_nanos(1_300_000), 9)
        .unwrap();
    assert_eq!(fresh, crate::Kick::Ipi(CPU1));
}

#[test]
fn a_remote_cancel_leaves_the_targets_device_alone() {
    let (sys, clock, [_, d1], _) = two_cpus();
    clock.advance(Nanos::from_millis(1));
    let id = sys.add_timer(CPU1, ms(2), 9).unwrap();
    assert_eq!(sys.programmed_event(CPU1), ms(2));
    let calls1 = d1.calls().len();
    let t = sys.cancel_timer_from(CPU0, CPU1, id).unwrap();
    assert_eq!(t.data, 9);
    assert_eq!(d1.calls().len(), calls1);
    // Still programmed for 2 ms: that interrupt will find nothing due.
    assert_eq!(sys.programmed_event(CPU1), ms(2));
    assert!(sys.cancel_timer_from(CPU0, CPU1, id).is_none());
}

#[test]
fn a_clocksource_marked_unstable_is_left_for_the_next_best_without_time_going_back() {
    // A failed TSC warp check at CPU bring-up marks the TSC unstable
    // (Linux `mark_tsc_unstable`); time goes on from the next best source.
    let tsc = leak(FakeClock::new("tsc", 300));
    let hpet = leak(FakeClock::new("hpet", 250));
    let sys = Sys::new(TickConfig::DEFAULT, tsc, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    sys.register_clocksource(hpet).unwrap();
    assert_eq!(sys.timekeeper().clocksource().name(), "tsc");
    tsc.advance(Nanos::from_millis(10));
    hpet.advance(Nanos::from_millis(3)); // the two counters disagree
    let before = sys.now();
    assert_eq!(sys.mark_clocksource_unstable("tsc"), Some(true));
    assert_eq!(sys.timekeeper().clocksource().name(), "hpet");
    let after = sys.now();
    assert!(after >= before, "{before} then {after}");
    hpet.advance(Nanos::from_millis(1));
    assert_eq!(sys.now(), after.saturating_add(Nanos::from_millis(1)));
    // Again: already marked; an unknown name: none.
    assert_eq!(sys.mark_clocksource_unstable("tsc"), Some(false));
    assert_eq!(sys.mark_clocksource_unstable("rtc"), None);
    assert!(sys
        .clocksources()
        .iter()
        .any(|e| e.name() == "tsc" && e.is_unstable()));
}

/// Two CPUs whose local devices stop in deep idle (C3STOP), and an
/// HPET-like global device that becomes the broadcast device.
fn deep_idle_pair() -> (Sys, &'static FakeClock, [&'static FakeTimer; 2], DeviceId) {
    let clock = leak(FakeClock::new("fake", 300));
    let f = ONESHOT_PERIODIC | Features::C3STOP | Features::PERCPU;
    let d0 = leak(FakeTimer::new("lapic0", f, CPU0));
    let d1 = leak(FakeTimer::new("lapic1", f, CPU1));
    let hpet = leak(FakeTimer::global("hpet", ONESHOT_PERIODIC, 50));
    let sys = Sys::new(TickConfig::DEFAULT, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    sys.register_device(d0).unwrap();
    sys.register_device(d1).unwrap();
    let bc = sys.register_device(hpet).unwrap();
    assert_eq!(sys.broadcast_device(), Some("hpet"));
    (sys, clock, [d0, d1], bc)
}

#[test]
fn a_cpu_leaving_deep_idle_with_its_event_due_is_forced_to_the_broadcast_ipi() {
    let (sys, clock, [_, d1], bc) = deep_idle_pair();
    sys.add_timer(CPU1, ms(10), 1).unwrap();
    sys.idle_enter(CPU1).unwrap();
    assert!(sys.idle_sleep(CPU1, IdleDepth::Deep).unwrap().broadcast);
    // CPU 1's event comes due; before the broadcast interrupt is handled,
    // something else wakes CPU 1.
    clock.advance(Nanos::from_micros(10_001));
    let calls = d1.calls().len();
    sys.idle_wake(CPU1);
    // Resumed one-shot, but not programmed with the expired event.
    assert_eq!(d1.calls()[calls..], [Call::Oneshot]);
    // It may not go deep again before the IPI; its idle loop halts shallow,
    // its device still unprogrammed.
    assert_eq!(sys.idle_sleep(CPU1, IdleDepth::Deep), Err(IdleError::Busy));
    assert_eq!(d1.calls()[calls..], [Call::Oneshot]);
    // The broadcast interrupt IPIs the forced CPU, which runs its timer
    // once and programs its own device.
    let mut fired = Vec::new();
    let mask = sys.interrupt(bc, CPU0, &mut |_, t, _| {
        fired.push(t.data);
        Rearm::No
    });
    assert!(mask.contains(CPU1), "{mask:?}");
    sys.ipi(CPU1, &mut |_, t, _| {
        fired.push(t.data);
        Rearm::No
    });
    assert_eq!(fired, [1]);
    assert!(matches!(d1.last_programmed(), Some(Call::Next(_))));
    // No longer forced: deep idle is allowed again.
    assert!(sys.idle_sleep(CPU1, IdleDepth::Deep).unwrap().broadcast);
}

#[test]
fn a_cpu_woken_by_the_broadcast_leaves_its_event_to_the_pending_ipi() {
    let (sys, clock, [_, d1], bc) = deep_idle_pair();
    sys.add_timer(CPU1, ms(10), 2).unwrap();
    sys.idle_enter(CPU1).unwrap();
    assert!(sys.idle_sleep(CPU1, IdleDepth::Deep).unwrap().broadcast);
    clock.advance(Nanos::from_millis(10));
    let mut fired = Vec::new();
    let mask = sys.interrupt(bc, CPU0, &mut |_, t, _| {
        fired.push(t.data);
        Rearm::No
    });
    assert!(mask.contains(CPU1));
    // CPU 1 wakes (the IPI ends its halt) and leaves idle before its
    // handler runs: the pending IPI handles the event, so neither the
    // wake nor the idle exit programs the local device with it.
    let calls = d1.calls().len();
    sys.idle_wake(CPU1);
    sys.idle_exit(CPU1);
    assert_eq!(d1.calls()[calls..], [Call::Oneshot]);
    sys.ipi(CPU1, &mut |_, t, _| {
        fired.push(t.data);
        Rearm::No
    });
    assert_eq!(fired, [2], "handled once");
    assert!(matches!(d1.last_programmed(), Some(Call::Next(_))));
}

#[test]
fn the_watchdog_runs_where_the_duty_is_and_an_idle_cpu_without_it_sleeps() {
    let tsc = leak(FakeClock::must_verify("tsc", 300));
    let hpet = leak(FakeClock::new("hpet", 250));
    let d0 = leak(FakeTimer::new("timer0", ONESHOT_PERIODIC, CPU0));
    let d1 = leak(FakeTimer::new("timer1", ONESHOT_PERIODIC, CPU1));
    let sys = Sys::new(TickConfig::DEFAULT, tsc, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    sys.register_clocksource(hpet).unwrap();
    let i0 = sys.register_device(d0).unwrap();
    let i1 = sys.register_device(d1).unwrap();
    let step = |d: Nanos| {
        tsc.advance(d);
        hpet.advance(d);
    };
    step(PERIOD);
    sys.interrupt(i0, CPU0, &mut |_, _, _| Rearm::No);
    sys.interrupt(i1, CPU1, &mut |_, _, _| Rearm::No);
    assert_eq!(sys.do_timer_cpu(), Some(CPU0));
    // CPU 0 idles: its tick stops, it gives the duty up and, the last
    // holder, still wakes for the watchdog and the max deferment.
    sys.idle_enter(CPU0).unwrap();
    sys.idle_sleep(CPU0, IdleDepth::Shallow).unwrap();
    assert!(sys.programmed_event(CPU0) < ms(1_100));
    // CPU 1 ticks on for 2 s: it takes the duty, and the watchdog with it.
    for _ in 0..500 {
        step(PERIOD);
        sys.interrupt(i1, CPU1, &mut |_, _, _| Rearm::No);
    }
    assert_eq!(sys.do_timer_cpu(), Some(CPU1));
    let s = sys.watchdog_schedule().expect("a must-verify clocksource");
    assert!(s.last_run >= ms(1_500), "checked on CPU 1: {s:?}");
    // CPU 0's stale wake-up (armed when it was the watchdog CPU) re-arms
    // it for nothing at all: no timer, no duty, no watchdog.
    sys.interrupt(i0, CPU0, &mut |_, _, _| Rearm::No);
    sys.idle_sleep(CPU0, IdleDepth::Shallow).unwrap();
    assert_eq!(sys.programmed_event(CPU0), Ktime::MAX);
    assert_eq!(sys.timekeeper().clocksource().name(), "tsc");
    // That one wake-up was the watchdog's, and counted so; CPU 1, ticking,
    // was never woken for it.
    let stats = |c| sys.cpu_info(c).unwrap().stats;
    assert_eq!(stats(CPU0).watchdog_wakeups, 1);
    assert_eq!(stats(CPU0).max_deferment_wakeups, 0);
    assert_eq!(stats(CPU1).watchdog_wakeups, 0);
}

/// With a published base, `now` takes no lock: it reads while the
/// timekeeping is held (which, taken again, panics under `Single`), and
/// gives what the timekeeper gives; for a source its reader cannot read it
/// takes the lock, as without one.
#[test]
fn now_reads_the_published_base_without_the_lock_and_under_it_for_a_source_it_cannot_read() {
    static CLOCK: std::sync::OnceLock<&'static FakeClock> = std::sync::OnceLock::new();
    fn read(key: u64) -> Option<Cycles> {
        let cs: &dyn ClockSource = *CLOCK.get()?;
        (clocksource::source_key(cs) == key).then(|| cs.read())
    }
    fn unreadable(_: u64) -> Option<Cycles> {
        None
    }
    let clock = *CLOCK.get_or_init(|| leak(FakeClock::new("fake", 300)));
    let mut sys = Sys::new(TickConfig::DEFAULT, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    sys.publish_to(leak(PublishedClock::new()), read);
    clock.advance(Nanos::from_micros(3_217));
    let held = sys.timekeeper();
    assert_eq!(sys.now(), held.monotonic());
    assert_eq!(sys.now(), Ktime::from_nanos(3_217_000));
    drop(held);

    let mut other = Sys::new(TickConfig::DEFAULT, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    other.publish_to(leak(PublishedClock::new()), unreadable);
    clock.advance(Nanos::from_micros(5));
    let expect = other.timekeeper().monotonic();
    assert_eq!(other.now(), expect);
}

/// Two CPUs on dummy devices (a LAPIC under `lapic=notimer`, on SMP) and
/// the broadcast device registered after them.
fn on_dummies(config: TickConfig) -> (Sys, &'static FakeClock, &'static FakeTimer, DeviceId) {
    let clock = leak(FakeClock::new("fake", 300));
    let sys = Sys::new(config, clock, [[TimerSlot::EMPTY; 16]; 2]).unwrap();
    for (name, cpu) in [("dummy0", CPU0), ("dummy1", CPU1)] {
        let d = leak(FakeTimer::new(
            name,
            Features::DUMMY | Features::PERCPU,
            cpu,
        ));
        sys.register_device(d).unwrap();
    }
    // Nothing delivers their events yet.
    assert_eq!(sys.mode(CPU0), TickMode::NoDevice);
    let bc = leak(FakeTimer::global("hpet", ONESHOT_PERIODIC, 50));
    let id = sys.register_device(bc).unwrap();
    assert_eq!(sys.broadcast_device(), Some("hpet"));
    (sys, clock, bc, id)
}

/// Periodic: the broadcast device ticks at HZ and every CPU on a dummy
/// takes each tick (CPU 0 handles its own share; CPU 1 by IPI).
#[test]
fn cpus_on_dummies_take_every_periodic_tick_from_the_broadcast_device() {
    let config = TickConfig::DEFAULT.with_nohz(false).with_highres(false);
    let (sys, clock, bc, id) = on_dummies(config);
    for cpu in [CPU0, CPU1] {
        let info = sys.cpu_info(cpu).unwrap();
        assert_eq!((info.mode, info.in_broadcast), (TickMode::Periodic, true));
        assert_eq!(
            info.device,
            Some(if cpu == CPU0 { "dummy0" } else { "dummy1" })
        );
    }
    assert_eq!(bc.calls().last(), Some(&Call::Periodic(PERIOD)));
    let mut run = |_: CpuId, _, _| Rearm::No;
    for n in 1..=3 {
        clock.advance(PERIOD);
        let due = sys.interrupt(id, CPU0, &mut run);
        assert_eq!(due.iter().collect::<Vec<_>>(), [CPU0, CPU1]);
        sys.ipi(CPU0, &mut run);
        sys.ipi(CPU1, &mut run);
        for cpu in [CPU0, CPU1] {
            assert_eq!(sys.cpu_info(cpu).unwrap().stats.ticks, n);
        }
    }
    assert_eq!(sys.jiffies(), 3);
    // Idle does not take a dummy's CPU out of broadcast.
    sys.idle_enter(CPU1).unwrap();
    sys.idle_sleep(CPU1, IdleDepth::Deep).unwrap();
    sys.idle_wake(CPU1);
    sys.idle_exit(CPU1);
    assert!(sys.cpu_info(CPU1).unwrap().in_broadcast);
}

/// One-shot: each CPU's events — its tick, its timers, one queued from the
/// other CPU — are the broadcast device's to deliver, tickless in idle.
#[test]
fn cpus_on_dummies_get_their_timers_through_the_one_shot_broadcast_device() {
    let (sys, clock, bc, id) = on_dummies(TickConfig::DEFAULT);
    assert_eq!(sys.mode(CPU1), TickMode::HighRes { nohz: true });
    // Both CPUs' first tick at 4 ms: the broadcast device is armed for it.
    assert_eq!(sys.programmed_event(CPU1), ms(4));
    assert_eq!(
        bc.last_programmed(),
        Some(Call::Next(Cycles::new(4_000_000)))
    );
    // CPU 1 idles tickless with a timer at 10 ms.
    sys.add_timer(CPU1, ms(10), 1).unwrap();
    sys.idle_enter(CPU1).unwrap();
    let s = sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert!(s.tick_stopped && s.broadcast);
    assert_eq!(s.wakeup, ms(10));
    // CPU 0 queues an earlier one for it: a kick, and CPU 1 reprograms the
    // broadcast device's event for itself.
    let (_, kick) = sys.add_timer_from(CPU0, CPU1, ms(7), 2).unwrap();
    assert_eq!(kick, crate::Kick::Ipi(CPU1));
    let fired = std::cell::RefCell::new(Vec::new());
    let mut run = |cpu: CpuId, t: crate::Timer, now: Ktime| {
        fired.borrow_mut().push((cpu, t.data, now));
        Rearm::No
    };
    sys.kicked(CPU1, &mut run);
    sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
    assert_eq!(sys.programmed_event(CPU1), ms(7));
    // CPU 0's tick at 4 ms (it is busy): CPU 1 is not due.
    clock.advance(PERIOD);
    let due = sys.interrupt(id, CPU0, &mut run);
    assert_eq!(due.iter().collect::<Vec<_>>(), [CPU0]);
    sys.ipi(CPU0, &mut run);
    // 7 ms, 10 ms: CPU 1's timers, each by one broadcast IPI, never early.
    for (at, data) in [(7, 2), (10, 1)] {
        clock.advance(ms(at).saturating_since(sys.now()));
        let due = sys.interrupt(id, CPU0, &mut run);
        assert!(due.contains(CPU1), "{at} ms: {due:?}");
        sys.ipi(CPU1, &mut run);
        if due.contains(CPU0) {
            sys.ipi(CPU0, &mut run);
        }
        sys.idle_wake(CPU1);
        sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
        let last = fired.borrow().iter().rev().find(|f| f.0 == CPU1).copied();
        assert_eq!(last, Some((CPU1, data, ms(at))));
    }
    assert!(sys.cpu_info(CPU1).unwrap().in_broadcast);
}

/// A working per-CPU device registered later ends a dummy's broadcast
/// tick on its CPU (and only there): out of the broadcast masks, its own
/// device programmed.
#[test]
fn per_cpu_hardware_takes_a_cpu_back_from_its_dummy() {
    let (sys, _, _, _) = on_dummies(TickConfig::DEFAULT);
    let own = leak(FakeTimer::new(
        "timer1",
        ONESHOT_PERIODIC | Features::PERCPU,
        CPU1,
    ));
    sys.register_device(own).unwrap();
    let info = sys.cpu_info(CPU1).unwrap();
    assert_eq!(info.device, Some("timer1"));
    assert!(!info.in_broadcast);
    assert_eq!(info.mode, TickMode::HighRes { nohz: true });
    assert_eq!(sys.programmed_event(CPU1), ms(4));
    assert_eq!(
        own.last_programmed(),
        Some(Call::Next(Cycles::new(4_000_000)))
    );
    assert!(!sys.bc.lock().oneshot_mask.contains(CPU1));
    // CPU 0 stays on its dummy, in broadcast.
    assert!(sys.cpu_info(CPU0).unwrap().in_broadcast);
    assert!(sys.bc.lock().oneshot_mask.contains(CPU0));
}
