//! Programming one-shot events through the HPET clock-event driver
//! (comparator 0) over its register model, against what the driver itself
//! and one bare register access cost on the same model in the same run.
//!
//! Three figures, 1024 events 20 µs–100 ms ahead per batch, on QEMU's HPET
//! (100 MHz) as `HpetModel` emulates it:
//!
//! - bare `write32(T0_COMPARATOR)`: one register write to the model — what
//!   any access costs here (model lock, sync to the virtual clock);
//! - the floor, `HpetClockEvent::program(In(precomputed cycles))` (Linux's `set_next_event`): the
//!   driver's sequence (read `MAIN_CNT`, write the comparator, read
//!   `MAIN_CNT` again for Linux's 128-cycle race guard), three accesses;
//! - `EventDevice::program_event(expires)`: the clockevents core on top (ns
//!   delta, clamping, rounded-up ns→cycles, latch bookkeeping).
//!
//! The model's cost stands in for a real MMIO access (hundreds of ns on
//! hardware, a VM exit under a hypervisor): the ratio program_event/floor
//! is the core's overhead per event, the ratio floor/bare is how many
//! accesses the driver makes. The virtual clock does not move, so every
//! event is accepted (checked before timing: no `TooLate` path is measured).
//!
//! Run: `cargo bench -p hpet --features oneshot --bench program_event`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use clockevents::NextEvent::In;
use clockevents::{ClockEventDevice, CpuMask, DeviceState, EventDevice, Expired, Programmed};
use clocksource::{Cycles, Ktime, Nanos};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hpet::model::{HpetModel, HpetModelConfig};
use hpet::regs::tn_comparator;
use hpet::{probe, HpetClockEvent, Route};
use hw::Mmio;
use sim::VirtualClock;

const EVENTS: usize = 1024;

/// A probed QEMU HPET model on a virtual clock. Probing needs the counter
/// to be seen counting, so each access costs 1 µs of virtual time while it
/// runs; afterwards accesses are free and the clock stands still.
fn probed_model() -> (Arc<VirtualClock>, HpetModel, hpet::HpetInfo) {
    let clock = VirtualClock::new();
    let model = HpetModel::new(clock.clone(), HpetModelConfig::qemu());
    let c = clock.clone();
    model.set_access_hook(Some(Arc::new(move || {
        c.advance_by(Nanos::from_micros(1));
    })));
    let info = probe(&model).expect("the model probes");
    model.set_access_hook(None);
    (clock, model, info)
}

fn bench(c: &mut Criterion) {
    let (clock, model, info) = probed_model();
    let dev =
        HpetClockEvent::new(&model, &info, Route::Legacy, CpuMask::ALL).expect("comparator 0");
    let mut ev = EventDevice::new(&dev, Nanos::from_millis(4)).expect("valid device");
    ev.attach().expect("attach");
    ev.set_state(DeviceState::Oneshot, Nanos::ZERO)
        .expect("one-shot (feature `oneshot`)");

    let hz = dev.info().frequency().expect("a cycles device").get() as u128;
    // 1024 deltas, 20 µs..100 ms (sim's xorshift64, fixed seed).
    let ds = sim::rng::deltas(EVENTS, 20_000, 100_000_000);
    let cycles: Vec<Cycles> = ds
        .iter()
        .map(|&d| Cycles::new((d as u128 * hz).div_ceil(1_000_000_000) as u64))
        .collect();
    let counter = model.counter().get() as u32;
    let comparators: Vec<u32> = cycles
        .iter()
        .map(|c| counter.wrapping_add(c.get() as u32))
        .collect();
    let now = clock.now();
    let expiries: Vec<Ktime> = ds
        .iter()
        .map(|&d| now.saturating_add(Nanos::from_nanos(d)))
        .collect();

    // What is timed must be the accepted path, not an error or retry.
    for (&cy, &t) in cycles.iter().zip(&expiries) {
        dev.program(In(cy)).expect("driver accepts the delta");
        let p = ev.program_event(t, now, Expired::Force);
        assert!(matches!(p, Ok(Programmed::At(_))), "{p:?}");
    }
    assert_eq!(ev.stats().too_late, 0);

    let mut g = c.benchmark_group("hpet_program_event");
    g.throughput(Throughput::Elements(EVENTS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("bare model write32(T0_COMPARATOR)", |b| {
        b.iter(|| {
            for &v in &comparators {
                black_box(&model).write32(tn_comparator(0), black_box(v));
            }
        })
    });
    g.bench_function("floor: driver set_next_event(precomputed cycles)", |b| {
        b.iter(|| {
            for &cy in &cycles {
                let _ = black_box(black_box(&dev).program(In(black_box(cy))));
            }
        })
    });
    g.bench_function("EventDevice::program_event(expires)", |b| {
        b.iter(|| {
            for &t in &expiries {
                let _ = black_box(ev.program_event(black_box(t), now, Expired::Force));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
