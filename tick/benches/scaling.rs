//! Timer add + expire throughput on 1, 2, 4 and 8 threads, each thread a
//! CPU: its own `TimerQueue` (per-CPU state, nothing shared), and a read
//! of the one shared clock per timer (the published latch every CPU reads,
//! `clocksource::PublishedClock`, over the host's `rdtsc`).
//!
//! Each thread adds [`TIMERS`] timers at random expiries over a 200 ms
//! horizon, stamping each with a clock read, then expires them as a tick
//! would (1 ms steps, everything due popped). One element is one add, one
//! pop and one clock read; the throughput is over all threads, so perfect
//! scaling doubles it with the threads — up to the cores the machine has.
//! The threads start together (a barrier) and the time is the slowest
//! thread's.
//!
//! `add_expire_one_lock` is the baseline: the same per-CPU queues, but
//! every add and pop under one lock all threads share — a tick layer
//! serialised by one lock, as an embedding with a single kernel lock is.
//!
//! `system_add_expire_*` is the same measure through the whole
//! [`TickSystem`]: each thread a CPU calling into one shared system, its
//! `add_timer`s (timers already due, up to a millisecond back), then its
//! own device's `interrupt`s until they have all run, the clock read
//! through the published base (`TickSystem::publish_to`) as the guest
//! reads it. `per_part_locks`: the system on its own locks
//! (`std::sync::Mutex` as the lock family, as a host embedder would give
//! it) — a CPU's calls take its own state's lock, CPU 0's also the
//! timekeeping's for the duty. `one_lock`: the default family (`Single`)
//! inside one `Mutex` every call takes.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceId, DeviceInfo, Features, NextEvent,
    Programming,
};
use clocksource::{
    ClockSource, ClockSourceFlags, Cycles, Hertz, InlineRead, Ktime, Nanos, PublishedClock,
    Timekeeper,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sim::rng::XorShift64;
use tick::{Lock, Locks, Rearm, Single, TickConfig, TickSystem, Timer, TimerQueue, TimerSlot};

/// Timers per thread per iteration.
const TIMERS: usize = 10_000;
const HORIZON_NS: u64 = 200_000_000;
const STEP_NS: u64 = 1_000_000;
const THREADS: [usize; 4] = [1, 2, 4, 8];
/// Timers per thread per iteration through the whole system.
const SYSTEM_TIMERS: usize = 2_000;
/// CPUs of the shared system (one per thread, up to 8).
const CPUS: usize = 8;

/// The host's TSC as a clocksource, readable inline (as the guest's).
struct HostTsc;

/// `rdtsc` (the `hw` crate's, the one place `unsafe` reads it).
fn rdtsc() -> Cycles {
    Cycles::new(hw::metal::MetalTsc::read())
}

impl ClockSource for HostTsc {
    fn name(&self) -> &'static str {
        "tsc"
    }
    fn read(&self) -> Cycles {
        rdtsc()
    }
    fn mask(&self) -> Cycles {
        Cycles::new(u64::MAX)
    }
    fn frequency(&self) -> Hertz {
        // Only the conversion's cost matters here, not its accuracy.
        Hertz::new(3_000_000_000)
    }
    fn rating(&self) -> u16 {
        300
    }
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    }
    fn inline_read(&self) -> InlineRead {
        InlineRead::Tsc
    }
}

static TSC: HostTsc = HostTsc;

/// The shared clock, published once by a timekeeper on the host TSC.
fn published() -> &'static PublishedClock {
    let p: &'static PublishedClock = Box::leak(Box::new(PublishedClock::new()));
    let mut tk = Timekeeper::new(&TSC).expect("a 3 GHz 64-bit counter is valid");
    tk.publish_to(p);
    p
}

/// One CPU's work: `TIMERS` adds stamped with a clock read, then the
/// expiry path; every queue operation under the guard `hold` returns (`()`
/// for the per-CPU queues, the shared lock's for the baseline).
fn cpu_run<G>(
    q: &mut TimerQueue<Vec<TimerSlot>>,
    exp: &[u64],
    clock: &PublishedClock,
    hold: impl Fn() -> G,
) -> u64 {
    let mut sum = 0u64;
    for (i, &e) in exp.iter().enumerate() {
        let now = clock
            .monotonic_inline(InlineRead::Tsc, rdtsc)
            .unwrap_or(Ktime::ZERO);
        sum = sum.wrapping_add(now.as_nanos() & 1);
        let _g = hold();
        q.add(Ktime::from_nanos(e), i as u64)
            .expect("capacity is TIMERS");
    }
    for now in (1..=HORIZON_NS / STEP_NS).map(|i| i * STEP_NS) {
        while let Some(t) = {
            let _g = hold();
            q.pop_expired(Ktime::from_nanos(now))
        } {
            sum = sum.wrapping_add(t.data);
        }
    }
    q.clear();
    sum
}

/// Runs `work` on `n` threads started together, `iters` times each, on
/// what `setup` made for each thread (by its index, the thread's CPU);
/// returns the slowest thread's time.
fn on_threads<T>(
    n: usize,
    iters: u64,
    setup: impl Fn(usize) -> T + Sync,
    work: impl Fn(usize, &mut T) -> u64 + Sync,
) -> Duration {
    let barrier = Arc::new(Barrier::new(n));
    let (setup, work) = (&setup, &work);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    let mut state = setup(t);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(work(t, &mut state));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// A thread's own queue and its timers' expiries.
fn queue_and_expiries(t: usize) -> (TimerQueue<Vec<TimerSlot>>, Vec<u64>) {
    let mut rng = XorShift64::new(0x9E37_79B9 ^ t as u64);
    let exp = (0..TIMERS).map(|_| rng.next_u64() % HORIZON_NS).collect();
    (TimerQueue::new(vec![TimerSlot::EMPTY; TIMERS]), exp)
}

fn scaling(c: &mut Criterion) {
    let clock = published();
    let lock = Mutex::new(());
    for (name, shared) in [("add_expire_per_cpu", false), ("add_expire_one_lock", true)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for threads in THREADS {
            g.throughput(Throughput::Elements((threads * TIMERS) as u64));
            g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &n| {
                b.iter_custom(|iters| {
                    if shared {
                        on_threads(n, iters, queue_and_expiries, |_, (q, exp)| {
                            cpu_run(q, exp, clock, || lock.lock().expect("not poisoned"))
                        })
                    } else {
                        on_threads(n, iters, queue_and_expiries, |_, (q, exp)| {
                            cpu_run(q, exp, clock, || ())
                        })
                    }
                });
            });
        }
        g.finish();
    }
}

/// The published base's counter read: the TSC, from any thread.
fn read_tsc(key: u64) -> Option<Cycles> {
    (key == clocksource::source_key(&TSC)).then(|| TSC.read())
}

/// A CPU's one-shot timer that programs nothing (its interrupts are the
/// bench's calls).
struct Quiet(CpuId);

impl ClockEventDevice for Quiet {
    fn info(&self) -> DeviceInfo {
        let programming = Programming::Cycles {
            frequency: Hertz::new(1_000_000_000),
            min_delta: Cycles::new(1_000),
            max_delta: Cycles::new(u32::MAX as u64),
        };
        const NAMES: [&str; CPUS] = [
            "quiet0", "quiet1", "quiet2", "quiet3", "quiet4", "quiet5", "quiet6", "quiet7",
        ];
        let name = NAMES.get(self.0.index()).copied().unwrap_or("quiet");
        DeviceInfo::new(name, programming, CpuMask::single(self.0))
            .with_features(Features::ONESHOT | Features::PERIODIC)
            .with_rating(100)
    }
    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn set_state_periodic(&self, _period: Nanos) -> Result<(), DeviceError> {
        Ok(())
    }
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn program(&self, _next: NextEvent) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// `std::sync::Mutex` as the tick system's lock family.
struct StdLocks;

/// One of [`StdLocks`]' locks.
struct StdLock<T>(Mutex<T>);

impl<T> Lock<T> for StdLock<T> {
    type Guard<'g>
        = MutexGuard<'g, T>
    where
        T: 'g;
    fn new(value: T) -> Self {
        StdLock(Mutex::new(value))
    }
    fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

impl Locks for StdLocks {
    type Of<T> = StdLock<T>;
}

/// A system of `CPUS` CPUs, each with its quiet device, on the TSC.
fn system<L: Locks>() -> (
    TickSystem<'static, Vec<TimerSlot>, CPUS, L>,
    [DeviceId; CPUS],
) {
    let storage = core::array::from_fn(|_| vec![TimerSlot::EMPTY; SYSTEM_TIMERS + 16]);
    let mut sys = TickSystem::new(TickConfig::DEFAULT, &TSC, storage).expect("a valid system");
    sys.publish_to(Box::leak(Box::new(PublishedClock::new())), read_tsc);
    let devs = core::array::from_fn(|i| {
        let dev: &'static Quiet = Box::leak(Box::new(Quiet(CpuId::new(i as u32))));
        sys.register_device(dev).expect("a valid device")
    });
    (sys, devs)
}

/// A system of the bench's shape with locks `L`.
type System<L> = TickSystem<'static, Vec<TimerSlot>, CPUS, L>;

/// How a CPU's calls reach the system: directly, or through the one lock.
type Via<'w, L> = &'w dyn Fn(&mut dyn FnMut(&System<L>));

/// One CPU's work through the system: `SYSTEM_TIMERS` due timers added, then interrupts until all
/// have run; every call through `with` (the per-part system directly, or
/// the one lock taken around it).
fn system_cpu_run<L: Locks>(cpu: CpuId, dev: DeviceId, with: Via<'_, L>) -> u64 {
    let mut ran = 0u64;
    for i in 0..SYSTEM_TIMERS {
        with(&mut |sys| {
            let due = sys
                .now()
                .saturating_sub(Nanos::from_nanos((i as u64 * 7_919) % 1_000_000));
            sys.add_timer(cpu, due, i as u64)
                .expect("capacity is SYSTEM_TIMERS");
        });
    }
    while ran < SYSTEM_TIMERS as u64 {
        with(&mut |sys| {
            let mut run = |_: CpuId, t: Timer, _: Ktime| {
                ran = ran.wrapping_add(1);
                black_box(t.data);
                Rearm::No
            };
            let _ = sys.interrupt(dev, cpu, &mut run);
        });
    }
    ran
}

fn system_scaling(c: &mut Criterion) {
    let (split, split_devs) = system::<StdLocks>();
    let (single, single_devs) = system::<Single>();
    let one_lock = Mutex::new(single);
    for name in ["per_part_locks", "one_lock"] {
        let mut g = c.benchmark_group(format!("system_add_expire_{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for threads in THREADS {
            g.throughput(Throughput::Elements((threads * SYSTEM_TIMERS) as u64));
            g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &n| {
                b.iter_custom(|iters| {
                    if name == "per_part_locks" {
                        on_threads(
                            n,
                            iters,
                            |_| (),
                            |t, _| {
                                system_cpu_run::<StdLocks>(
                                    CpuId::new(t as u32),
                                    split_devs[t],
                                    &|f| f(&split),
                                )
                            },
                        )
                    } else {
                        on_threads(
                            n,
                            iters,
                            |_| (),
                            |t, _| {
                                system_cpu_run::<Single>(
                                    CpuId::new(t as u32),
                                    single_devs[t],
                                    &|f| f(&one_lock.lock().unwrap_or_else(|e| e.into_inner())),
                                )
                            },
                        )
                    }
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, scaling, system_scaling);
criterion_main!(benches);
