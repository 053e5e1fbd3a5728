//! The cross-CPU protocols under every interleaving `loom` finds, on the
//! real [`TickSystem`] with loom's mutex as its lock family
//! ([`LoomLocks`]) and the shared words on loom's atomics: each model is
//! two CPUs as two threads and a final drain, up to 3 preemptions.
//!
//! - A timer queued from CPU 0 for CPU 1 while CPU 1 goes to sleep with its
//!   tick stopped (the kick, and the one-kick-at-a-time rule,
//!   [`crate::remote`]): whatever the order, CPU 1 is never left
//!   programmed past the earliest of them.
//! - CPU 1 leaving deep idle while CPU 0 takes the broadcast interrupt
//!   that finds CPU 1's event due (the pending and forced CPUs,
//!   [`crate::broadcast`]): the timer runs exactly once, nothing is left
//!   owed, and no device is left armed for the event already handled.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release
//! -p tick --lib loom` (TESTING.md).

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;

use clockevents::{CpuId, DeviceId, EventDevice, Features};
use clocksource::{Ktime, Nanos};

use crate::lock::LoomLocks;
use crate::testing::{FakeClock, FakeTimer};
use crate::{IdleDepth, Kick, Rearm, TickConfig, TickSystem, Timer, TimerSlot};

type Sys = TickSystem<'static, Vec<TimerSlot>, 2, LoomLocks>;

const CPU0: CpuId = CpuId::BOOT;
const CPU1: CpuId = CpuId::new(1);

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// Two CPUs with one-shot local devices of `local` features, and a
/// global broadcast device if `broadcast`.
fn system(local: Features, broadcast: bool) -> (Sys, &'static FakeClock, [DeviceId; 2], DeviceId) {
    let clock = leak(FakeClock::new("fake", 300));
    clock.advance(Nanos::from_millis(1));
    let sys = Sys::new(
        TickConfig::DEFAULT,
        clock,
        [vec![TimerSlot::EMPTY; 8], vec![TimerSlot::EMPTY; 8]],
    )
    .unwrap();
    let t0 = sys
        .register_device(leak(FakeTimer::new("t0", local, CPU0)))
        .unwrap();
    let t1 = sys
        .register_device(leak(FakeTimer::new("t1", local, CPU1)))
        .unwrap();
    let bc = if broadcast {
        let id = sys
            .register_device(leak(FakeTimer::global(
                "bc",
                Features::ONESHOT | Features::PERIODIC,
                50,
            )))
            .unwrap();
        assert_eq!(sys.broadcast_device(), Some("bc"));
        id
    } else {
        DeviceId(u32::MAX as usize)
    };
    (sys, clock, [t0, t1], bc)
}

/// A tick system is built on the stack (a device pool, two CPUs, the
/// broadcast state): more than loom's default coroutine stack holds.
const STACK: usize = 16 << 20;

/// Spawns `f` as a loom thread with a stack that holds a tick system.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("loom spawns")
}

/// Runs `f` under loom as CPU 1's thread (one of big enough stack).
/// What a tick or broadcast device is armed for.
fn armed(dev: &Option<(DeviceId, EventDevice<'_>)>) -> Option<Ktime> {
    dev.as_ref().map(|(_, e)| e.next_event())
}

/// Takes a flag another thread raised: a compare-exchange, not a `swap`,
/// whose histories against a concurrent store loom gets wrong (a swap
/// reading the old value with the store then lost: loom issue #254,
/// tokio-rs/loom).
fn take(flag: &AtomicBool) -> bool {
    flag.compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn model(f: fn()) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(move || spawn(f).join().expect("CPU 1 panicked"));
}

#[test]
fn loom_a_cpu_going_to_sleep_is_never_left_past_a_timer_queued_for_it_from_elsewhere() {
    model(|| {
        let (sys, _, _, _) = system(Features::ONESHOT | Features::PERIODIC, false);
        // CPU 1 idles, tick stopped, with nothing to wake for.
        sys.idle_enter(CPU1).unwrap();
        assert!(
            sys.idle_sleep(CPU1, IdleDepth::Shallow)
                .unwrap()
                .tick_stopped
        );
        assert_eq!(sys.programmed_event(CPU1), Ktime::MAX);
        let now = sys.now();
        let (late, early) = (
            now.saturating_add(Nanos::from_micros(200)),
            now.saturating_add(Nanos::from_micros(100)),
        );
        let sys = Arc::new(sys);
        let kick = Arc::new(AtomicBool::new(false));
        let kicks = Arc::new(AtomicUsize::new(0));
        let cpu0 = {
            let (sys, kick, kicks) = (sys.clone(), kick.clone(), kicks.clone());
            spawn(move || {
                // Two timers, the second earlier: it may ride on the
                // first one's kick only while that kick is outstanding.
                for (at, data) in [(late, 1), (early, 2)] {
                    let (_, k) = sys.add_timer_from(CPU0, CPU1, at, data).unwrap();
                    if let Kick::Ipi(to) = k {
                        assert_eq!(to, CPU1);
                        kicks.fetch_add(1, Ordering::Relaxed);
                        kick.store(true, Ordering::Release);
                    }
                }
            })
        };
        // CPU 1: one turn of its idle loop.
        let mut run = |_: CpuId, _: Timer, _: Ktime| Rearm::No;
        if take(&kick) {
            sys.kicked(CPU1, &mut run);
        }
        sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
        cpu0.join().unwrap();
        // The IPI still in flight arrives.
        if take(&kick) {
            sys.kicked(CPU1, &mut run);
            sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
        }
        let programmed = sys.programmed_event(CPU1);
        assert!(
            programmed <= early,
            "cpu1 programmed for {programmed:?}, its earliest timer at {early:?}"
        );
        assert!((1..=2).contains(&kicks.load(Ordering::Relaxed)));
    });
}

#[test]
fn loom_leaving_deep_idle_against_the_broadcast_handler_runs_the_event_once_and_leaves_nothing_armed(
) {
    model(|| leaving_deep_idle(IdleDepth::Deep));
}

/// The same, CPU 1 idling shallow after it wakes (its local device back).
#[test]
fn loom_leaving_deep_idle_for_shallow_against_the_broadcast_handler_runs_the_event_once() {
    model(|| leaving_deep_idle(IdleDepth::Shallow));
}

/// CPU 1 waits in deep idle; CPU 0 takes the broadcast interrupt while CPU
/// 1 wakes and idles `again`.
fn leaving_deep_idle(again: IdleDepth) {
    {
        let c3stop = Features::ONESHOT | Features::PERIODIC | Features::C3STOP;
        let (sys, clock, [_, t1], bc) = system(c3stop, true);
        // CPU 1 waits in deep idle, tick stopped, for its timer 10 ms
        // away (past its next tick), which comes due.
        let at = sys.now().saturating_add(Nanos::from_millis(10));
        sys.add_timer(CPU1, at, 9).unwrap();
        sys.idle_enter(CPU1).unwrap();
        let s = sys.idle_sleep(CPU1, IdleDepth::Deep).unwrap();
        assert!(s.broadcast && s.tick_stopped);
        clock.advance(Nanos::from_micros(10_050));
        let sys = Arc::new(sys);
        let ipi = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicUsize::new(0));
        let counting = |ran: Arc<AtomicUsize>| {
            move |_: CpuId, t: Timer, now: Ktime| {
                assert!(now >= t.expires);
                ran.fetch_add(1, Ordering::Relaxed);
                Rearm::No
            }
        };
        let handler = {
            let (sys, ipi, ran) = (sys.clone(), ipi.clone(), ran.clone());
            spawn(move || {
                // CPU 0 takes the broadcast interrupt.
                let due = sys.interrupt(bc, CPU0, &mut counting(ran));
                if due.contains(CPU1) {
                    ipi.store(true, Ordering::Release);
                }
            })
        };
        // CPU 1 wakes meanwhile (another interrupt), takes any IPI that
        // has come, and idles deep again.
        let mut run = counting(ran.clone());
        sys.idle_wake(CPU1);
        if take(&ipi) {
            sys.ipi(CPU1, &mut run);
        }
        if sys.idle_sleep(CPU1, again).is_err() {
            sys.idle_sleep(CPU1, IdleDepth::Shallow).unwrap();
        }
        handler.join().unwrap();
        // Drain: devices that come due interrupt (an event forced out to
        // a device's min delta, 1 µs, among them), the local one first —
        // it may well fire before an IPI in flight lands — and IPIs in
        // flight arrive.
        for _ in 0..4 {
            clock.advance(Nanos::from_micros(10));
            let now = sys.now();
            let local = armed(&sys.cpus[1].lock().unwrap().dev);
            if local.is_some_and(|d| d <= now) {
                let _ = sys.interrupt(t1, CPU1, &mut run);
            }
            let bc_due = armed(&sys.bc.lock().unwrap().dev);
            if bc_due.is_some_and(|d| d <= now) {
                let due = sys.interrupt(bc, CPU0, &mut run);
                if due.contains(CPU1) {
                    ipi.store(true, Ordering::Release);
                }
            }
            if take(&ipi) {
                sys.ipi(CPU1, &mut run);
                sys.idle_wake(CPU1);
                let _ = sys.idle_sleep(CPU1, IdleDepth::Shallow);
            }
        }
        assert_eq!(ran.load(Ordering::Relaxed), 1, "the timer ran once");
        // And took one interrupt to run it (the IPI, or the local device's
        // own): an event handed to a broadcast IPI and programmed locally
        // too is handled twice.
        let taken = sys.cpu_info(CPU1).map(|i| i.stats.interrupts);
        assert_eq!(taken, Some(1), "cpu1's interrupts for one event");
        assert!(!ipi.load(Ordering::Acquire), "an IPI left undelivered");
        assert!(!sys.bc.lock().unwrap().owes_ipi(CPU1), "an IPI left owed");
        // Nothing else queued, CPU 0 holds the duty, no watchdog: no
        // device may still be armed for the event handled.
        assert_eq!(sys.programmed_event(CPU1), Ktime::MAX);
        let bc_armed = armed(&sys.bc.lock().unwrap().dev);
        assert_eq!(
            bc_armed,
            Some(Ktime::MAX),
            "the broadcast device armed for nothing"
        );
    }
}
