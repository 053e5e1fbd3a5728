//! `tick::TimerQueue` against the std collections a timer queue is usually
//! built from, on the same inputs in the same run.
//!
//! Every workload adds N timers with random expiries over a 200 ms horizon
//! (`sim::rng::XorShift64`), then runs the expiry path as a tick would:
//! `now` advances in 1 ms steps to the end of the horizon and each step pops
//! everything due. Throughput is per timer, so one element is one add plus one
//! pop (or cancel).
//!
//! - `add_then_expire`: ours vs `BinaryHeap<Reverse<(u64, u64)>>` vs
//!   `BTreeMap<(u64, u64), u64>` (key = expiry, insertion sequence).
//! - `add_cancel_half_expire`: the same, after cancelling a random half. The
//!   heap cannot cancel, so it gets lazy deletion: a tombstone `HashSet` (with
//!   a multiplicative hash, not SipHash, to keep the baseline fair).
//!
//! Each structure is built once outside the timed loop and reused: our queue
//! over a preallocated `Vec<TimerSlot>` (the caller-owned storage), the heap
//! and sets with their capacity reserved. Every iteration leaves them empty and
//! calls `clear()`, so re-initialisation is inside the measurement.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::Duration;

use clocksource::Ktime;
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, Bencher, BenchmarkGroup, BenchmarkId,
    Criterion, SamplingMode, Throughput,
};
use sim::rng::XorShift64;
use tick::{TimerId, TimerQueue, TimerSlot};

const HORIZON_NS: u64 = 200_000_000;
const STEP_NS: u64 = 1_000_000;
const SIZES: [usize; 3] = [10, 10_000, 1_000_000];
const SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// `n` expiries, uniform over the horizon.
fn expiries(n: usize) -> Vec<u64> {
    let mut rng = XorShift64::new(SEED);
    (0..n).map(|_| rng.next_u64() % HORIZON_NS).collect()
}

/// A random half of `0..n`, in random order (partial Fisher-Yates).
fn half_to_cancel(n: usize) -> Vec<usize> {
    let mut rng = XorShift64::new(SEED ^ 0xDEAD_BEEF);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..n / 2 {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(n / 2);
    all
}

/// FxHash-style multiplicative hasher for the tombstone set.
#[derive(Default)]
struct MulHasher(u64);

impl Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b.into());
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

type Tombstones = HashSet<usize, BuildHasherDefault<MulHasher>>;

/// The instants a tick runs at in the horizon starting at `epoch`.
fn ticks(epoch: u64) -> impl Iterator<Item = u64> {
    (1..=HORIZON_NS / STEP_NS).map(move |i| epoch + i * STEP_NS)
}

fn queue_run(
    q: &mut TimerQueue<Vec<TimerSlot>>,
    exp: &[u64],
    cancel: &[usize],
    ids: &mut Vec<TimerId>,
    epoch: u64,
) -> u64 {
    ids.clear();
    for (i, &e) in exp.iter().enumerate() {
        ids.push(
            q.add(Ktime::from_nanos(epoch + e), i as u64)
                .expect("capacity is N"),
        );
    }
    let mut sum = 0u64;
    for &c in cancel {
        sum = mix(sum, q.cancel(ids[c]).map_or(0, |t| t.data));
    }
    for now in ticks(epoch) {
        while let Some(t) = q.pop_expired(Ktime::from_nanos(now)) {
            sum = mix(sum, t.data);
        }
    }
    q.clear();
    sum
}

fn heap_run(
    heap: &mut BinaryHeap<Reverse<(u64, u64)>>,
    exp: &[u64],
    cancel: &[usize],
    dead: &mut Tombstones,
    epoch: u64,
) -> u64 {
    for (i, &e) in exp.iter().enumerate() {
        heap.push(Reverse((epoch + e, i as u64)));
    }
    let mut sum = 0u64;
    for &c in cancel {
        dead.insert(c);
        sum = mix(sum, c as u64);
    }
    for now in ticks(epoch) {
        while let Some(&Reverse((e, i))) = heap.peek() {
            if e > now {
                break;
            }
            heap.pop();
            if !dead.remove(&(i as usize)) {
                sum = mix(sum, i);
            }
        }
    }
    heap.clear();
    dead.clear();
    sum
}

fn btree_run(
    map: &mut BTreeMap<(u64, u64), u64>,
    exp: &[u64],
    cancel: &[usize],
    epoch: u64,
) -> u64 {
    for (i, &e) in exp.iter().enumerate() {
        map.insert((epoch + e, i as u64), i as u64);
    }
    let mut sum = 0u64;
    for &c in cancel {
        sum = mix(sum, map.remove(&(epoch + exp[c], c as u64)).unwrap_or(0));
    }
    for now in ticks(epoch) {
        while let Some(entry) = map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            sum = mix(sum, entry.remove());
        }
    }
    map.clear();
    sum
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    group.throughput(Throughput::Elements(n as u64));
    if n >= 1_000_000 {
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4));
    } else {
        group
            .sample_size(30)
            .sampling_mode(SamplingMode::Auto)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
    }
}

/// Folds `x` into an order-sensitive checksum.
fn mix(sum: u64, x: u64) -> u64 {
    sum.wrapping_mul(31).wrapping_add(x)
}

/// The three must return the same timers in the same order, over two
/// consecutive horizons (the second one checks that time moving on across
/// iterations is handled), before they are worth timing.
fn check_same_result(n: usize, exp: &[u64], cancel: &[usize]) {
    let mut q = TimerQueue::new(vec![TimerSlot::EMPTY; n]);
    let mut heap = BinaryHeap::new();
    let mut dead = Tombstones::default();
    let mut map = BTreeMap::new();
    for epoch in [0, HORIZON_NS] {
        let ours = queue_run(&mut q, exp, cancel, &mut Vec::new(), epoch);
        let heap = heap_run(&mut heap, exp, cancel, &mut dead, epoch);
        let btree = btree_run(&mut map, exp, cancel, epoch);
        assert_eq!((ours, ours), (heap, btree), "n = {n}, epoch = {epoch}");
    }
}

/// Runs `run` with the time origin moving one horizon per iteration, as the
/// clock would.
fn iter_epochs(b: &mut Bencher<'_>, mut run: impl FnMut(u64) -> u64) {
    let mut epoch = 0;
    b.iter(|| {
        epoch += HORIZON_NS;
        black_box(run(epoch))
    });
}

fn compare(c: &mut Criterion, name: &str, cancel_half: bool) {
    let mut group = c.benchmark_group(name);
    for n in SIZES {
        configure(&mut group, n);
        let exp = expiries(n);
        let cancel = if cancel_half {
            half_to_cancel(n)
        } else {
            Vec::new()
        };
        check_same_result(n, &exp, &cancel);

        group.bench_function(BenchmarkId::new("timer_queue", n), |b| {
            let mut q = TimerQueue::new(vec![TimerSlot::EMPTY; n]);
            let mut ids = Vec::with_capacity(n);
            iter_epochs(b, |epoch| queue_run(&mut q, &exp, &cancel, &mut ids, epoch));
        });
        let heap_name = if cancel_half {
            "binary_heap_tombstones"
        } else {
            "binary_heap"
        };
        group.bench_function(BenchmarkId::new(heap_name, n), |b| {
            let mut heap = BinaryHeap::with_capacity(n);
            let mut dead = Tombstones::with_capacity_and_hasher(n / 2, Default::default());
            iter_epochs(b, |epoch| {
                heap_run(&mut heap, &exp, &cancel, &mut dead, epoch)
            });
        });
        group.bench_function(BenchmarkId::new("btree_map", n), |b| {
            let mut map = BTreeMap::new();
            iter_epochs(b, |epoch| btree_run(&mut map, &exp, &cancel, epoch));
        });
    }
    group.finish();
}

fn add_then_expire(c: &mut Criterion) {
    compare(c, "add_then_expire", false);
}

fn add_cancel_half_expire(c: &mut Criterion) {
    compare(c, "add_cancel_half_expire", true);
}

criterion_group!(benches, add_then_expire, add_cancel_half_expire);
criterion_main!(benches);
