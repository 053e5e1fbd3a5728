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

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use clocksource::{
    ClockSource, ClockSourceFlags, Cycles, Hertz, InlineRead, Ktime, PublishedClock, Timekeeper,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sim::rng::XorShift64;
use tick::{TimerQueue, TimerSlot};

/// Timers per thread per iteration.
const TIMERS: usize = 10_000;
const HORIZON_NS: u64 = 200_000_000;
const STEP_NS: u64 = 1_000_000;
const THREADS: [usize; 4] = [1, 2, 4, 8];

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

/// Runs `work` on `n` threads started together, `iters` times each;
/// returns the slowest thread's time.
fn on_threads(
    n: usize,
    iters: u64,
    work: impl Fn(&mut TimerQueue<Vec<TimerSlot>>, &[u64]) -> u64 + Sync,
) -> Duration {
    let barrier = Arc::new(Barrier::new(n));
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    let mut rng = XorShift64::new(0x9E37_79B9 ^ t as u64);
                    let exp: Vec<u64> = (0..TIMERS).map(|_| rng.next_u64() % HORIZON_NS).collect();
                    let mut q = TimerQueue::new(vec![TimerSlot::EMPTY; TIMERS]);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(work(&mut q, &exp));
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
                        on_threads(n, iters, |q, exp| {
                            cpu_run(q, exp, clock, || lock.lock().expect("not poisoned"))
                        })
                    } else {
                        on_threads(n, iters, |q, exp| cpu_run(q, exp, clock, || ()))
                    }
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, scaling);
criterion_main!(benches);
