//! Unit tests of the event core against a scripted fake device.

use std::sync::Mutex;
use std::vec::Vec;

use clocksource::{Cycles, Hertz, Ktime, Nanos};

use crate::*;

/// A device that records every call and answers `TooLate` as scripted.
struct Fake {
    name: &'static str,
    features: Features,
    rating: u16,
    programming: Programming,
    cpus: CpuMask,
    log: Mutex<Vec<Call>>,
    /// Answer `TooLate` to this many delta programmings.
    fail_next: Mutex<u32>,
    /// Answer `TooLate` to every delta below this.
    too_late_below: Cycles,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Shutdown,
    Periodic(Nanos),
    Oneshot,
    Stopped,
    Next(Cycles),
    Ktime(Ktime),
}

impl Fake {
    fn new(name: &'static str, features: Features, freq: u64, min: u64, max: u64) -> Self {
        Fake {
            name,
            features,
            rating: 100,
            programming: Programming::Cycles {
                frequency: Hertz::new(freq),
                min_delta: Cycles::new(min),
                max_delta: Cycles::new(max),
            },
            cpus: CpuMask::single(CpuId::BOOT),
            log: Mutex::new(Vec::new()),
            fail_next: Mutex::new(0),
            too_late_below: Cycles::ZERO,
        }
    }
    /// A one-shot device that takes absolute deadlines.
    fn deadline(name: &'static str) -> Self {
        Fake {
            programming: Programming::Deadline,
            ..Fake::new(name, Features::ONESHOT, 0, 0, 0)
        }
    }
    fn hpet_like() -> Self {
        // 14.318 MHz, Linux's HPET limits: 192 .. 0x7FFFFFFF cycles.
        Fake::new(
            "hpet",
            Features::PERIODIC | Features::ONESHOT,
            14_318_180,
            192,
            0x7FFF_FFFF,
        )
    }
    fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }
    fn nexts(&self) -> Vec<Cycles> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Next(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

impl ClockEventDevice for Fake {
    fn info(&self) -> DeviceInfo {
        DeviceInfo::new(self.name, self.programming, self.cpus)
            .with_features(self.features)
            .with_rating(self.rating)
    }
    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Call::Shutdown);
        Ok(())
    }
    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Call::Periodic(period));
        Ok(())
    }
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Call::Oneshot);
        Ok(())
    }
    fn set_state_oneshot_stopped(&self) -> Result<(), DeviceError> {
        self.log.lock().unwrap().push(Call::Stopped);
        Ok(())
    }
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        let delta = match (next, self.programming.delta_range()) {
            (NextEvent::In(delta), Some((min, max))) => {
                assert!(
                    delta >= min && delta <= max,
                    "core broke the contract: {delta:?}"
                );
                delta
            }
            (NextEvent::At(expires), None) => {
                self.log.lock().unwrap().push(Call::Ktime(expires));
                return Ok(());
            }
            (next, _) => panic!(
                "core broke the contract: {next:?} for {:?}",
                self.programming
            ),
        };
        self.log.lock().unwrap().push(Call::Next(delta));
        let mut f = self.fail_next.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return Err(DeviceError::TooLate);
        }
        if delta < self.too_late_below {
            return Err(DeviceError::TooLate);
        }
        Ok(())
    }
}

fn oneshot<'a>(d: &'a Fake) -> EventDevice<'a> {
    let mut e = EventDevice::new(d, Nanos::from_millis(4)).unwrap();
    e.attach().unwrap();
    e.set_state(DeviceState::Oneshot, Nanos::ZERO).unwrap();
    e
}

const T0: Ktime = Ktime::from_secs(1);

#[test]
fn hpet_min_delta_is_rounded_up_to_whole_ns() {
    let d = Fake::hpet_like();
    let e = EventDevice::new(&d, Nanos::from_millis(4)).unwrap();
    // 192 cycles at 14.31818 MHz = 13409.45 ns → 13410 ns (Linux: 13.41 µs).
    assert_eq!(e.min_delta(), Nanos::from_nanos(13_410));
    // 0x7FFFFFFF cycles = 149.98 s, rounded down.
    assert_eq!(e.max_delta().as_nanos() / 10_000_000, 14_998);
}

#[test]
fn programmed_cycles_are_never_early() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    for us in [14u64, 15, 100, 999, 1_000, 4_000, 123_457] {
        let delta = Nanos::from_micros(us);
        e.program_event(T0.saturating_add(delta), T0, Expired::Report)
            .unwrap();
        let c = *d.nexts().last().unwrap();
        let fires_after_ns = c.get() as u128 * 1_000_000_000 / 14_318_180;
        assert!(
            fires_after_ns >= delta.as_nanos() as u128 - 1,
            "{us} µs → {c:?}"
        );
        // ... and no more than 2 cycles late.
        assert!(c.get() as u128 * 1_000_000_000 <= (delta.as_nanos() as u128 + 140) * 14_318_180);
    }
}

#[test]
fn delta_beyond_max_is_clamped_to_max() {
    let d = Fake::new("pit", Features::ONESHOT, 1_193_182, 0xF, 0x7FFF);
    let mut e = oneshot(&d);
    let r = e.program_event(T0.saturating_add(Nanos::from_secs(1)), T0, Expired::Report);
    assert_eq!(d.nexts(), [Cycles::new(0x7FFF)]);
    // 0x7FFF cycles = 27.461 ms: the event is re-armed from the handler.
    assert_eq!(r, Ok(Programmed::At(T0.saturating_add(e.max_delta()))));
    assert_eq!(e.max_delta().as_nanos() / 1_000, 27_461);
}

#[test]
fn past_expiry_is_reported_or_forced_by_callers_choice() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    assert_eq!(
        e.program_event(T0, T0, Expired::Report),
        Err(ProgramError::Expired)
    );
    assert!(
        d.nexts().is_empty(),
        "a reported expiry touches no hardware"
    );
    let past = Ktime::from_millis(999);
    let r = e.program_event(past, T0, Expired::Force).unwrap();
    assert_eq!(r, Programmed::Forced(T0.saturating_add(e.min_delta())));
    // min_delta 13410 ns is 192.007 cycles, rounded up: never early.
    assert_eq!(d.nexts(), [Cycles::new(193)]);
    assert!(e.is_forced());
}

#[test]
fn near_future_event_is_forced_to_min_delta() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    let r = e.program_event(
        T0.saturating_add(Nanos::from_nanos(500)),
        T0,
        Expired::Report,
    );
    assert_eq!(r, Ok(Programmed::Forced(T0.saturating_add(e.min_delta()))));
}

#[test]
fn forced_latch_prevents_starvation_by_repeated_near_programming() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    e.program_event(T0, T0, Expired::Force).unwrap();
    // A storm of near events while the forced one is pending: none of them
    // may push the pending interrupt further out.
    for i in 1..100 {
        let now = T0.saturating_add(Nanos::from_nanos(i * 100));
        assert_eq!(
            e.program_event(now, now, Expired::Force),
            Ok(Programmed::AlreadyForced)
        );
    }
    assert_eq!(d.nexts().len(), 1);
    // The interrupt is handled: the latch is released.
    e.event_handled();
    assert!(!e.is_forced());
    e.program_event(T0, T0, Expired::Force).unwrap();
    assert_eq!(d.nexts().len(), 2);
}

#[test]
fn state_change_clears_forced_latch() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    e.program_event(T0, T0, Expired::Force).unwrap();
    e.set_state(DeviceState::Shutdown, Nanos::ZERO).unwrap();
    e.set_state(DeviceState::Oneshot, Nanos::ZERO).unwrap();
    assert!(!e.is_forced());
    e.program_event(T0, T0, Expired::Force).unwrap();
    assert_eq!(d.nexts().len(), 2);
}

#[test]
fn too_late_retries_then_raises_min_delta() {
    let mut d = Fake::hpet_like();
    // The device reports the comparator race for anything below 40 µs.
    d.too_late_below = Cycles::new(573);
    let mut e = oneshot(&d);
    let r = e.program_event(T0, T0, Expired::Force).unwrap();
    // 13.41 µs ×3 fail → 5 µs floor is below, so ×1.5: 20.1, 30.2, 45.3 µs.
    let nexts = d.nexts();
    assert_eq!(nexts.len(), 3 + 3 + 3 + 1, "{nexts:?}");
    assert_eq!(e.stats().min_delta_raised, 3);
    assert_eq!(e.stats().too_late, 9);
    assert_eq!(r, Programmed::Forced(T0.saturating_add(e.min_delta())));
    assert!(e.min_delta() >= Nanos::from_micros(40));
    // The raise is permanent.
    e.event_handled();
    e.program_event(T0, T0, Expired::Force).unwrap();
    assert_eq!(d.nexts().len(), 11);
}

#[test]
fn reprogramming_gives_up_at_the_limit() {
    let d = Fake::hpet_like();
    *d.fail_next.lock().unwrap() = u32::MAX;
    let mut e = oneshot(&d);
    assert_eq!(
        e.program_event(T0, T0, Expired::Force),
        Err(ProgramError::GaveUp)
    );
    assert_eq!(e.min_delta(), Nanos::from_millis(4));
    // Bounded: 3 tries per step, 13.41 µs → 4 ms by ×1.5 is 15 raises.
    let calls = d.nexts().len() as u32;
    assert_eq!(calls, MIN_DELTA_TRIES * (1 + e.stats().min_delta_raised));
    assert!(calls <= 60, "{calls}");
}

#[test]
fn giving_up_leaves_no_event_recorded_as_programmed() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    let first = T0.saturating_add(Nanos::from_millis(1));
    e.program_event(first, T0, Expired::Force).unwrap();
    assert_eq!(e.next_event(), first);
    // Every write now loses the race: a `TooLate` comparator was written
    // past the counter, so the earlier event is gone from the device too.
    *d.fail_next.lock().unwrap() = u32::MAX;
    let second = T0.saturating_add(Nanos::from_millis(2));
    assert_eq!(
        e.program_event(second, T0, Expired::Force),
        Err(ProgramError::GaveUp)
    );
    assert_eq!(e.next_event(), Ktime::MAX, "nothing is armed");
    assert!(!e.is_forced());
}

#[test]
fn never_stops_the_device_and_next_program_resumes_oneshot() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    assert_eq!(
        e.program_event(Ktime::MAX, T0, Expired::Report),
        Ok(Programmed::Stopped)
    );
    assert_eq!(e.state(), DeviceState::OneshotStopped);
    e.program_event(
        T0.saturating_add(Nanos::from_millis(1)),
        T0,
        Expired::Report,
    )
    .unwrap();
    assert_eq!(e.state(), DeviceState::Oneshot);
    // The driver is put back in one-shot mode before it is programmed:
    // its stopped state may be a shutdown (the trait's default; a LAPIC
    // timer's masked LVT), which a bare program would not undo.
    let calls = d.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        [
            Call::Stopped,
            Call::Oneshot,
            Call::Next(Cycles::new(14_319))
        ]
    );
}

#[test]
fn programming_outside_oneshot_is_a_typed_error() {
    let d = Fake::hpet_like();
    let mut e = EventDevice::new(&d, Nanos::from_millis(4)).unwrap();
    e.attach().unwrap();
    e.set_state(DeviceState::Periodic, Nanos::from_millis(4))
        .unwrap();
    assert_eq!(
        e.program_event(T0, T0, Expired::Force),
        Err(ProgramError::NotOneshot(DeviceState::Periodic))
    );
    assert!(d.nexts().is_empty());
}

#[test]
fn ktime_device_gets_absolute_deadlines() {
    let d = Fake::deadline("deadline");
    let mut e = oneshot(&d);
    let t = T0.saturating_add(Nanos::from_micros(3));
    assert_eq!(
        e.program_event(t, T0, Expired::Report),
        Ok(Programmed::At(t))
    );
    assert_eq!(*d.calls().last().unwrap(), Call::Ktime(t));
    assert_eq!(
        e.program_event(T0, T0, Expired::Report),
        Err(ProgramError::Expired)
    );
}

#[test]
fn bad_devices_are_refused_at_configuration() {
    let d = Fake::new("zero", Features::ONESHOT, 0, 1, 2);
    assert_eq!(
        EventDevice::new(&d, Nanos::ZERO).err(),
        Some(ConfigError::ZeroFrequency)
    );
    let d = Fake::new("range", Features::ONESHOT, 1000, 5, 2);
    assert_eq!(
        EventDevice::new(&d, Nanos::ZERO).err(),
        Some(ConfigError::BadDeltaRange)
    );
    let d = Fake::new("none", Features::PERCPU, 1000, 1, 2);
    assert_eq!(
        EventDevice::new(&d, Nanos::ZERO).err(),
        Some(ConfigError::NoMode)
    );
}

#[test]
fn release_shuts_down_then_detaches() {
    let d = Fake::hpet_like();
    let mut e = oneshot(&d);
    e.release().unwrap();
    assert_eq!(e.state(), DeviceState::Detached);
    assert_eq!(*d.calls().last().unwrap(), Call::Shutdown);
}

fn with(name: &'static str, f: Features, rating: u16, cpus: CpuMask) -> Fake {
    let mut d = Fake::new(name, f, 1_000_000, 1, 1000);
    d.rating = rating;
    d.cpus = cpus;
    d
}

#[test]
fn selection_prefers_oneshot_then_rating_then_local() {
    let both = Features::PERIODIC | Features::ONESHOT;
    let pit = with("pit", Features::PERIODIC, 200, CpuMask::ALL);
    let hpet = with("hpet", both, 50, CpuMask::ALL);
    let lapic0 = with(
        "lapic0",
        both | Features::PERCPU | Features::C3STOP,
        100,
        CpuMask::single(CpuId::BOOT),
    );
    let lapic1 = with(
        "lapic1",
        both | Features::PERCPU,
        100,
        CpuMask::single(CpuId::new(1)),
    );
    assert!(
        prefer_for_cpu(Some(&pit.info()), &hpet.info(), CpuId::BOOT, false),
        "oneshot beats a higher-rated periodic"
    );
    assert!(!prefer_for_cpu(
        Some(&hpet.info()),
        &pit.info(),
        CpuId::BOOT,
        false
    ));
    assert!(prefer_for_cpu(
        Some(&hpet.info()),
        &lapic0.info(),
        CpuId::BOOT,
        true
    ));
    assert!(
        !prefer_for_cpu(Some(&lapic0.info()), &hpet.info(), CpuId::BOOT, true),
        "shared never beats a local device"
    );
    assert!(
        !prefer_for_cpu(None, &lapic1.info(), CpuId::BOOT, false),
        "must cover the CPU"
    );
    assert!(
        !prefer_for_cpu(None, &pit.info(), CpuId::BOOT, true),
        "periodic-only never enters oneshot mode"
    );

    let mut pool: DevicePool<'_, 4> = DevicePool::new();
    let ids = [&pit, &hpet, &lapic0, &lapic1].map(|d| pool.register(d).unwrap());
    assert_eq!(
        pool.best_for_cpu(CpuId::BOOT, None, false, None),
        Some(ids[2])
    );
    assert_eq!(
        pool.best_for_cpu(CpuId::new(1), None, false, None),
        Some(ids[3])
    );
    assert_eq!(
        pool.best_for_cpu(CpuId::BOOT, Some(ids[2]), true, None),
        None,
        "nothing better"
    );
    // A user override restricts the choice.
    assert_eq!(
        pool.best_for_cpu(CpuId::BOOT, None, false, Some(ids[0])),
        Some(ids[0])
    );
    // Broadcast: not per-CPU, not C3STOP; with oneshot needed only HPET.
    assert_eq!(pool.best_for_broadcast(None, true), Some(ids[1]));
    assert_eq!(pool.best_for_broadcast(None, false), Some(ids[0]));
    pool.set_owner(ids[1], Owner::Cpu(CpuId::BOOT));
    assert_eq!(pool.best_for_broadcast(None, true), None);
    assert_eq!(pool.register(&pit), Err(PoolError::DuplicateName));
}

#[test]
fn a_local_dummy_takes_a_cpu_with_nothing_or_no_per_cpu_hardware_and_gives_way_to_per_cpu_hardware()
{
    let both = Features::PERIODIC | Features::ONESHOT;
    let on = |d: &Fake| d.info();
    let hpet = with("hpet", both, 50, CpuMask::ALL);
    // The legacy HPET on IRQ0, routed to CPU 0 alone: not per-CPU hardware.
    let hpet_irq0 = with("hpet0", both, 50, CpuMask::single(CpuId::BOOT));
    let lapic = with(
        "lapic",
        both | Features::PERCPU,
        100,
        CpuMask::single(CpuId::BOOT),
    );
    let dummy = with(
        "dummy",
        Features::DUMMY | Features::PERCPU,
        100,
        CpuMask::single(CpuId::BOOT),
    );
    let shared_dummy = with("dummy-all", Features::DUMMY, 100, CpuMask::ALL);
    let dummy_of_1 = with(
        "dummy1",
        Features::DUMMY | Features::PERCPU,
        100,
        CpuMask::single(CpuId::new(1)),
    );
    let cpu0 = CpuId::BOOT;
    let prefer = |cur: Option<&Fake>, new: &Fake| {
        prefer_for_cpu(cur.map(on).as_ref(), &new.info(), cpu0, true)
    };
    // A dummy takes: nothing, a shared device, one routed to this CPU alone.
    assert!(prefer(None, &dummy));
    assert!(
        prefer(Some(&hpet), &dummy),
        "frees the shared device for broadcast"
    );
    assert!(prefer(Some(&hpet_irq0), &dummy));
    // Not: a working per-CPU device, another dummy; nor is a shared or
    // another CPU's dummy one for CPU 0.
    assert!(!prefer(Some(&lapic), &dummy));
    assert!(!prefer(Some(&dummy), &dummy));
    assert!(!prefer(None, &shared_dummy));
    assert!(!prefer(None, &dummy_of_1));
    // Per-CPU hardware ends the dummy's broadcast tick; a shared device,
    // or one routed to CPU 0 alone, does not (it serves as the broadcast
    // device instead).
    assert!(prefer(Some(&dummy), &lapic));
    assert!(!prefer(Some(&dummy), &hpet));
    assert!(!prefer(Some(&dummy), &hpet_irq0));
    assert!(prefer_for_broadcast(None, &hpet_irq0.info(), true));
    assert!(!prefer_for_broadcast(None, &dummy.info(), false));
}
