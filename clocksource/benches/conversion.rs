//! Cost of the read path: cycles→ns conversion against a bare
//! multiply-and-shift, and a whole `Timekeeper::monotonic()` read.
//!
//! Project target: `CyclesToNs::cycles_to_ns` within 1.5× of a bare
//! `(c * mult) >> shift` on the same inputs.
//!
//! Run: `cargo bench -p clocksource --bench conversion`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use clocksource::{
    ClockParams, ClockSource, ClockSourceFlags, Cycles, CyclesToNs, Hertz, Timekeeper,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const TSC_HZ: u64 = 3_000_000_000;
const N: usize = 4096;

/// `N` pseudo-random cycle counts in `0..=max`, as a read path sees them
/// (anything up to the max deferment).
fn random_cycles(max: u64) -> Vec<Cycles> {
    let mut r = sim::rng::XorShift64::new(0x2545_F491_4F6C_DD1D);
    (0..N)
        .map(|_| Cycles::new(r.next_u64() % (max + 1)))
        .collect()
}

fn conversion(c: &mut Criterion) {
    let params = ClockParams::new(Hertz::new(TSC_HZ), Cycles::mask_of_width(64)).unwrap();
    let conv: CyclesToNs = params.conv;
    let (mult, shift) = (conv.0.mult() as u64, conv.0.shift());
    let data = random_cycles(params.max_cycles.get());

    let mut g = c.benchmark_group("cycles_to_ns");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("bare_mul_shift", |b| {
        b.iter(|| {
            for &x in &data {
                let x = black_box(x).get();
                black_box(x.wrapping_mul(mult) >> shift);
            }
        })
    });
    g.bench_function("CyclesToNs::cycles_to_ns", |b| {
        b.iter(|| {
            for &x in &data {
                black_box(conv.cycles_to_ns(black_box(x)));
            }
        })
    });
    g.bench_function("MultShift::apply_unchecked_range", |b| {
        b.iter(|| {
            for &x in &data {
                black_box(conv.0.apply_unchecked_range(black_box(x).get()));
            }
        })
    });
    g.finish();
}

/// A TSC-like counter that moves on every read, without an atomic RMW (a
/// relaxed load and store: this bench is single-threaded).
struct BenchCounter {
    now: AtomicU64,
}

impl ClockSource for BenchCounter {
    fn name(&self) -> &'static str {
        "bench"
    }
    fn read(&self) -> Cycles {
        let v = self.now.load(Ordering::Relaxed).wrapping_add(97);
        self.now.store(v, Ordering::Relaxed);
        Cycles::new(v)
    }
    fn mask(&self) -> Cycles {
        Cycles::mask_of_width(64)
    }
    fn frequency(&self) -> Hertz {
        Hertz::new(TSC_HZ)
    }
    fn rating(&self) -> u16 {
        300
    }
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    }
}

fn monotonic(c: &mut Criterion) {
    let counter = BenchCounter {
        now: AtomicU64::new(1 << 40),
    };
    let mut tk = Timekeeper::new(&counter).unwrap();
    tk.adjust_frequency(12_345).unwrap();
    let params = *tk.params();
    let (mult, shift) = (params.conv.0.mult() as u64, params.conv.0.shift());

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(1));
    g.bench_function("counter_read_plus_bare_mul_shift", |b| {
        let src: &dyn ClockSource = black_box(&counter);
        b.iter(|| black_box(src.read().get().wrapping_mul(mult) >> shift))
    });
    g.bench_function("Timekeeper::monotonic", |b| {
        b.iter(|| black_box(black_box(&tk).monotonic()))
    });
    g.finish();
}

criterion_group!(benches, conversion, monotonic);
criterion_main!(benches);
