//! `EventDevice::program_event` cost, against calling the driver directly
//! with a precomputed cycle count (the floor: what any timer core must pay).
//!
//! Run: `cargo bench -p clockevents --bench program_event`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceInfo, DeviceState, EventDevice, Expired,
    Features, NextEvent, Programming,
};
use clocksource::{Cycles, Hertz, Ktime, Nanos};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A device whose "register write" is one relaxed atomic store.
struct Register(AtomicU64);

impl ClockEventDevice for Register {
    fn info(&self) -> DeviceInfo {
        let programming = Programming::Cycles {
            frequency: Hertz::new(14_318_180),
            min_delta: Cycles::new(192),
            max_delta: Cycles::new(0x7FFF_FFFF),
        };
        DeviceInfo::new("bench", programming, CpuMask::single(CpuId::BOOT))
            .with_features(Features::ONESHOT)
            .with_rating(100)
    }
    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn set_state_periodic(&self, _: Nanos) -> Result<(), DeviceError> {
        Ok(())
    }
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        let NextEvent::In(delta) = next else {
            return Err(DeviceError::Unsupported);
        };
        self.0.store(delta.get(), Ordering::Relaxed);
        Ok(())
    }
}

/// 1024 delays of 20 µs .. 100 ms, the ones every `program_event` bench
/// programs.
fn deltas() -> Vec<u64> {
    sim::rng::deltas(1024, 20_000, 100_000_000)
}

fn bench(c: &mut Criterion) {
    let dev = Register(AtomicU64::new(0));
    let ds = deltas();
    let cycles: Vec<Cycles> = ds
        .iter()
        .map(|&d| Cycles::new((d as u128 * 14_318_180 / 1_000_000_000) as u64))
        .collect();
    let mut g = c.benchmark_group("program_event");
    g.throughput(Throughput::Elements(ds.len() as u64));
    g.bench_function("baseline: driver set_next_event(precomputed cycles)", |b| {
        b.iter(|| {
            for &c in &cycles {
                let _ = black_box(&dev).program(black_box(NextEvent::In(c)));
            }
        })
    });
    let mut ev = EventDevice::new(&dev, Nanos::from_millis(4)).unwrap();
    ev.attach().unwrap();
    ev.set_state(DeviceState::Oneshot, Nanos::ZERO).unwrap();
    let now = Ktime::from_secs(1);
    g.bench_function("EventDevice::program_event(expires)", |b| {
        b.iter(|| {
            for &d in &ds {
                let t = now.saturating_add(Nanos::from_nanos(d));
                let _ = black_box(ev.program_event(black_box(t), now, Expired::Force));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
