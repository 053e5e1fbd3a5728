//! Programming one-shot events through the PIT clock-event driver (counter
//! 0, mode 0) over its model, against what the driver itself and the bare
//! port writes cost on the same model in the same run.
//!
//! Three figures, 1024 events 20 µs–27 ms ahead per batch (the PIT's max
//! delta is 0x7FFF clocks, 27.46 ms), at 1.193182 MHz:
//!
//! - bare port writes: the count's LSB and MSB to port 0x40 (two `outb`) —
//!   what programming an event costs the model at the least;
//! - the floor, `PitClockEvent::program(In(precomputed cycles))` (Linux's `set_next_event`): the
//!   driver's range check and the same two writes;
//! - `EventDevice::program_event(expires)`: the clockevents core on top (ns
//!   delta, clamping, rounded-up ns→cycles, latch bookkeeping).
//!
//! The model's cost stands in for real port I/O (≈1 µs per `outb` on a PC,
//! a VM exit under a hypervisor). The virtual clock does not move, so no
//! event fires while timing; every event is accepted (checked first).
//!
//! Run: `cargo bench -p pit --features oneshot --bench program_event`

use std::hint::black_box;
use std::time::Duration;

use clockevents::NextEvent::In;
use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceState, EventDevice, Expired, Programmed,
};
use clocksource::{Cycles, Ktime, Nanos};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hw::PortIo;
use pit::model::PitModel;
use pit::regs::port;
use pit::{Pit, PitClockEvent};
use sim::VirtualClock;

const EVENTS: usize = 1024;

fn bench(c: &mut Criterion) {
    let clock = VirtualClock::new();
    let model = PitModel::after_bios(clock.clone());
    let dev = PitClockEvent::new(Pit::new(&model), CpuMask::single(CpuId::BOOT));
    let mut ev = EventDevice::new(&dev, Nanos::from_millis(4)).expect("valid device");
    ev.attach().expect("attach");
    ev.set_state(DeviceState::Oneshot, Nanos::ZERO)
        .expect("one-shot (feature `oneshot`)");

    let hz = dev.info().frequency().expect("a cycles device").get() as u128;
    // 1024 deltas, 20 µs..27 ms (sim's xorshift64, fixed seed).
    let ds = sim::rng::deltas(EVENTS, 20_000, 26_980_000);
    let cycles: Vec<Cycles> = ds
        .iter()
        .map(|&d| Cycles::new((d as u128 * hz).div_ceil(1_000_000_000) as u64))
        .collect();
    let counts: Vec<[u8; 2]> = cycles
        .iter()
        .map(|c| (c.get() as u16).to_le_bytes())
        .collect();
    let now = clock.now();
    let expiries: Vec<Ktime> = ds
        .iter()
        .map(|&d| now.saturating_add(Nanos::from_nanos(d)))
        .collect();

    // What is timed must be the accepted path, not an error.
    for (&cy, &t) in cycles.iter().zip(&expiries) {
        dev.program(In(cy)).expect("driver accepts the delta");
        let p = ev.program_event(t, now, Expired::Force);
        assert!(matches!(p, Ok(Programmed::At(_))), "{p:?}");
    }

    let mut g = c.benchmark_group("pit_program_event");
    g.throughput(Throughput::Elements(EVENTS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("bare model outb(0x40, LSB), outb(0x40, MSB)", |b| {
        b.iter(|| {
            for &[lsb, msb] in &counts {
                black_box(&model).outb(port::CHANNEL0, black_box(lsb));
                black_box(&model).outb(port::CHANNEL0, black_box(msb));
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
