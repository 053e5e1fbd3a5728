//! Real threads as CPUs over one tick system: each thread queues timers
//! for random CPUs (`add_timer_from`, its kicks raised as flags the target
//! thread takes), cancels some, idles and wakes, and takes its own device's
//! interrupts when their time comes, all in whatever order the OS schedules
//! them. The system is shared with no lock of the test's: its parts sit
//! behind their own locks (`std::sync::Mutex` as the lock family,
//! [`crate::lock`]), so CPUs run their interrupts, idle loops and remote
//! adds at the same time, as on SMP. What this checks is the cross-CPU
//! protocol and the lock order (a wrong order deadlocks the test), not a
//! memory model (that is `loom`'s): no timer lost or run twice, each on
//! its CPU and never early, however the calls from four CPUs interleave;
//! and after every step of a CPU's, that it is not programmed past its
//! earliest timer unless a kick is outstanding for it (the kick rule: a
//! kick deduplicated while one is outstanding must still get its timer run
//! in time) or a broadcast IPI owes it its event.

use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

use clockevents::{CpuId, DeviceId, Features};
use clocksource::{Ktime, Nanos};
use sim::rng::XorShift64;

use crate::lock::StdLocks;
use crate::testing::{FakeClock, FakeTimer};
use crate::{IdleDepth, Kick, Rearm, TickConfig, TickSystem, TimerId, TimerSlot};

const CPUS: usize = 4;
const OPS: usize = 3000;
type Sys = TickSystem<'static, Vec<TimerSlot>, CPUS, StdLocks>;

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// What the CPUs share besides the tick system.
struct World {
    sys: Sys,
    clock: &'static FakeClock,
    devs: [DeviceId; CPUS],
    /// The broadcast device (the deep-idle variant), whose interrupt CPU 0
    /// takes.
    bc: Option<DeviceId>,
    /// How deep the CPUs idle.
    depth: IdleDepth,
    kicks: [AtomicBool; CPUS],
    /// Tick IPIs raised for each CPU (broadcast).
    tick_ipis: [AtomicBool; CPUS],
    /// Broadcast interrupts that found CPUs due.
    bc_events: AtomicU64,
    /// Every timer queued: data → (target CPU, expiry).
    queued: Mutex<BTreeMap<u64, (usize, Ktime)>>,
    cancelled: Mutex<Vec<u64>>,
    /// Every run: (CPU, data, expiry, found at).
    fired: Mutex<Vec<(usize, u64, Ktime, Ktime)>>,
}

impl World {
    /// CPU `cpu` handles a kick if one was raised, and its device's
    /// interrupt if its event is due; in idle, its idle loop goes on.
    fn service(&self, cpu: usize, idle: bool) {
        let sys = &self.sys;
        let c = CpuId::new(cpu as u32);
        let mut run = |c: CpuId, t: crate::Timer, now: Ktime| {
            self.fired
                .lock()
                .unwrap()
                .push((c.index(), t.data, t.expires, now));
            Rearm::No
        };
        let mut woke = false;
        if self.kicks[cpu].swap(false, Ordering::AcqRel) {
            sys.kicked(c, &mut run);
            woke = true;
        }
        if self.tick_ipis[cpu].swap(false, Ordering::AcqRel) {
            sys.ipi(c, &mut run);
            woke = true;
        }
        // The local device interrupts only while armed (it is off while
        // the broadcast device stands in).
        let local = sys.cpus[cpu]
            .lock()
            .unwrap()
            .dev
            .as_ref()
            .map_or(Ktime::MAX, |(_, e)| e.next_event());
        if local <= sys.now() {
            let _ = sys.interrupt(self.devs[cpu], c, &mut run);
            woke = true;
        }
        if let Some(bc) = self.bc.filter(|_| cpu == 0) {
            let due = sys
                .bc
                .lock()
                .unwrap()
                .dev
                .as_ref()
                .map_or(Ktime::MAX, |(_, e)| e.next_event());
            if due <= sys.now() {
                let due_cpus = sys.interrupt(bc, c, &mut run);
                if !due_cpus.is_empty() {
                    self.bc_events.fetch_add(1, Ordering::Relaxed);
                }
                for t in due_cpus.iter() {
                    if t == c {
                        sys.ipi(c, &mut run);
                    } else {
                        self.tick_ipis[t.index()].store(true, Ordering::Release);
                    }
                }
                woke = true;
            }
        }
        if idle && woke {
            sys.idle_wake(c);
            self.sleep(c);
        }
    }
}

impl World {
    /// `cpu` halts at the world's depth (shallow where deep is refused).
    fn sleep(&self, cpu: CpuId) {
        let sys = &self.sys;
        if sys.idle_sleep(cpu, self.depth).is_err() {
            sys.idle_sleep(cpu, IdleDepth::Shallow).unwrap();
        }
    }

    /// The kick rule, after each of `cpu`'s steps, its state held (so no
    /// remote add comes between the reads): unless a kick is outstanding
    /// for it or a broadcast IPI owes it its event, it is programmed no
    /// later than its earliest timer (or, that one already due, than now),
    /// give or take the device's 1 µs min delta. A timer queued from
    /// elsewhere without a kick — one wrongly deduplicated — would leave
    /// it sleeping past it.
    fn check_not_sleeping_past_a_timer(&self, cpu: usize) {
        let sys = &self.sys;
        let me = CpuId::new(cpu as u32);
        let c = sys.cpus[cpu].lock().unwrap();
        let (owed, bc_due, event) = {
            let bc = sys.bc.lock().unwrap();
            let due = bc.dev.as_ref().map_or(Ktime::MAX, |(_, e)| e.next_event());
            (bc.owes_ipi(me), due, bc.event_of(me))
        };
        if c.kick_pending || owed {
            return;
        }
        let Some(first) = c.timers.next_expiry() else {
            return;
        };
        let now = sys.now();
        let by = first.max(now).saturating_add(Nanos::from_micros(2));
        let programmed = if c.in_broadcast {
            event
        } else {
            c.device_event()
        };
        // In broadcast: the broadcast device itself is armed in time.
        if c.in_broadcast {
            assert!(
                bc_due <= programmed.max(now).saturating_add(Nanos::from_micros(2)),
                "cpu{cpu} waits in broadcast for {programmed:?}, the device is armed for {bc_due:?}"
            );
        }
        assert!(
            programmed <= by,
            "cpu{cpu}: programmed for {programmed:?}, a timer at {first:?} (now {now:?}), no kick outstanding"
        );
    }
}

/// Four CPUs with one-shot local devices; `deep`: local devices that stop
/// in deep idle (`C3STOP`), a global broadcast device, and deep idle.
fn world(deep: bool) -> Arc<World> {
    let clock = leak(FakeClock::new("fake", 300));
    const NAMES: [&str; CPUS] = ["t0", "t1", "t2", "t3"];
    let local = if deep {
        Features::ONESHOT | Features::PERIODIC | Features::C3STOP
    } else {
        Features::ONESHOT | Features::PERIODIC
    };
    let storage: [Vec<TimerSlot>; CPUS] =
        core::array::from_fn(|_| vec![TimerSlot::EMPTY; OPS + 16]);
    let sys = Sys::new(TickConfig::DEFAULT, clock, storage).unwrap();
    let devs = core::array::from_fn(|i| {
        let d = leak(FakeTimer::new(NAMES[i], local, CpuId::new(i as u32)));
        sys.register_device(d).unwrap()
    });
    let bc = deep.then(|| {
        let d = leak(FakeTimer::global(
            "bc",
            Features::ONESHOT | Features::PERIODIC,
            50,
        ));
        let id = sys.register_device(d).unwrap();
        assert_eq!(sys.broadcast_device(), Some("bc"));
        id
    });
    Arc::new(World {
        sys,
        clock,
        devs,
        bc,
        depth: if deep {
            IdleDepth::Deep
        } else {
            IdleDepth::Shallow
        },
        kicks: core::array::from_fn(|_| AtomicBool::new(false)),
        tick_ipis: core::array::from_fn(|_| AtomicBool::new(false)),
        bc_events: AtomicU64::new(0),
        queued: Mutex::new(BTreeMap::new()),
        cancelled: Mutex::new(Vec::new()),
        fired: Mutex::new(Vec::new()),
    })
}

/// One CPU's life: `OPS` random steps.
fn cpu_thread(w: &World, cpu: usize) {
    let me = CpuId::new(cpu as u32);
    let mut rng = XorShift64::new(0x5EED ^ (cpu as u64) << 17);
    let mut mine: Vec<(usize, TimerId, u64)> = Vec::new();
    let mut idle = false;
    for n in 0..OPS {
        let r = rng.next_u64();
        w.clock.advance(Nanos::from_nanos(r % 20_000));
        let sys = &w.sys;
        match r >> 32 & 0xff {
            0..=99 => {
                let to = (r >> 40) as usize % CPUS;
                let expires = sys
                    .now()
                    .saturating_add(Nanos::from_nanos(r >> 44 & 0xF_FFFF));
                let data = (cpu as u64) << 32 | n as u64;
                let (id, kick) = sys
                    .add_timer_from(me, CpuId::new(to as u32), expires, data)
                    .unwrap();
                w.queued.lock().unwrap().insert(data, (to, expires));
                if let Kick::Ipi(t) = kick {
                    w.kicks[t.index()].store(true, Ordering::Release);
                }
                mine.push((to, id, data));
            }
            100..=119 if !mine.is_empty() => {
                let (to, id, data) = mine.swap_remove((r >> 40) as usize % mine.len());
                if sys
                    .cancel_timer_from(me, CpuId::new(to as u32), id)
                    .is_some()
                {
                    w.cancelled.lock().unwrap().push(data);
                }
            }
            120..=129 => {
                if idle {
                    sys.idle_exit(me);
                } else {
                    sys.idle_enter(me).unwrap();
                    w.sleep(me);
                }
                idle = !idle;
            }
            _ => w.service(cpu, idle),
        }
        w.check_not_sleeping_past_a_timer(cpu);
    }
    if idle {
        w.sys.idle_exit(me);
    }
}

fn run(deep: bool) {
    let w = world(deep);
    let threads: Vec<_> = (0..CPUS)
        .map(|cpu| {
            let w = w.clone();
            std::thread::spawn(move || cpu_thread(&w, cpu))
        })
        .collect();
    for t in threads {
        t.join().expect("a CPU thread panicked");
    }
    // Drain: time runs on past the last expiry, every CPU serving its
    // kicks and interrupts (busy, as each thread left it).
    let last = w
        .queued
        .lock()
        .unwrap()
        .values()
        .map(|v| v.1)
        .max()
        .unwrap_or(Ktime::ZERO);
    while w.sys.now() <= last.saturating_add(Nanos::from_millis(10)) {
        w.clock.advance(Nanos::from_micros(50));
        for cpu in 0..CPUS {
            w.service(cpu, false);
        }
    }
    let queued = w.queued.lock().unwrap();
    let cancelled = w.cancelled.lock().unwrap();
    let fired = w.fired.lock().unwrap();
    let mut runs: BTreeMap<u64, usize> = BTreeMap::new();
    for &(cpu, data, expires, at) in fired.iter() {
        let &(to, exp) = queued.get(&data).expect("a timer nobody queued ran");
        assert_eq!(
            cpu, to,
            "timer {data:#x} ran on cpu{cpu}, queued for cpu{to}"
        );
        // An expiry before the target queue's base (its CPU ran timers
        // later than the clock the adder read) is queued at the base
        // ([`crate::queue`]): never earlier than asked.
        assert!(
            expires >= exp,
            "timer {data:#x} moved earlier: {expires:?} < {exp:?}"
        );
        assert!(at >= exp, "timer {data:#x} early: {at:?} < {exp:?}");
        *runs.entry(data).or_default() += 1;
    }
    for (&data, _) in queued.iter() {
        let n = runs.get(&data).copied().unwrap_or(0);
        let want = usize::from(!cancelled.contains(&data));
        assert_eq!(n, want, "timer {data:#x} ran {n} times, want {want}");
    }
    assert!(
        queued.len() > CPUS * OPS / 3,
        "the mix queued {}",
        queued.len()
    );
    assert!(!cancelled.is_empty());
    if deep {
        let n = w.bc_events.load(Ordering::Relaxed);
        assert!(n > 10, "the broadcast device woke CPUs {n} times");
    }
}

#[test]
fn four_threads_queueing_for_each_other_lose_no_timer_and_run_none_early() {
    run(false);
}

/// The same with every local device stopping in deep idle: CPUs enter and
/// leave broadcast while CPU 0 takes the broadcast device's interrupts and
/// raises the tick IPIs (Linux's broadcast enter/exit against the handler).
#[test]
fn four_threads_in_deep_idle_through_broadcast_lose_no_timer() {
    run(true);
}
