//! Programming one-shot events through the local APIC timer driver over its
//! model, against what the driver itself and one bare register write cost
//! on the same model in the same run.
//!
//! Per mode, 1024 events 20 µs–100 ms ahead per batch, on a QEMU-like CPU
//! (1 GHz APIC bus, timer ÷16 = 62.5 MHz; 2.4 GHz TSC):
//!
//! - bare: one register write to the model — `TMICT` through the xAPIC
//!   page, or `IA32_TSC_DEADLINE` through `wrmsr`;
//! - the floor, `LapicTimer::program(In(precomputed cycles))` (Linux's `set_next_event`): the
//!   driver's range check and that write (TSC-deadline: a fence and an
//!   `rdtsc` of the model first);
//! - `EventDevice::program_event(expires)`: the clockevents core on top (ns
//!   delta, clamping, rounded-up ns→cycles, latch bookkeeping).
//!
//! Groups: `lapic_oneshot` (xAPIC TMICT count-down, feature `oneshot`; no
//! deadline clock is given, so TMICT is used even with `deadline` built)
//! and `lapic_deadline` (feature `deadline`, a CPU model with
//! TSC-deadline). The model's cost stands in for a real access (an xAPIC
//! MMIO write, or a `wrmsr` that is a VM exit under KVM). The virtual clock
//! does not move, so no event fires while timing; every event is accepted
//! (checked first).
//!
//! Run: `cargo bench -p lapic --all-features --bench program_event`

use std::hint::black_box;
use std::time::Duration;

use clockevents::NextEvent::In;
use clockevents::{ClockEventDevice, DeviceState, EventDevice, Expired, Programmed};
use clocksource::{Cycles, Ktime, Nanos};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use hw::Mmio;
use lapic::model::{LapicModel, LapicModelConfig, QEMU_BUS};
use lapic::{
    Access, Capabilities, FrequencySource, LapicTimer, Reg, TimerConfig, TimerFrequency, TimerMode,
};
use raw_cpuid::CpuId;
use sim::VirtualClock;

const EVENTS: usize = 1024;

fn caps(m: &LapicModel) -> Capabilities {
    Capabilities::from_cpuid(&CpuId::with_cpuid_reader(m.cpuid()))
}

/// The TMICT rate stated exactly (as a hypervisor's timing leaf would).
fn exact() -> Option<TimerFrequency> {
    Some(TimerFrequency::from_bus(
        QEMU_BUS,
        FrequencySource::HypervisorLeaf,
    ))
}

/// What one group needs: the precomputed inputs for `dev`.
struct Inputs {
    now: Ktime,
    cycles: Vec<Cycles>,
    expiries: Vec<Ktime>,
}

/// Precomputes the inputs and checks, untimed, that every event is accepted
/// by the driver and by the core.
fn prepare(clock: &VirtualClock, dev: &LapicTimer<'_>, ev: &mut EventDevice<'_>) -> Inputs {
    ev.attach().expect("attach");
    ev.set_state(DeviceState::Oneshot, Nanos::ZERO)
        .expect("one-shot");
    let hz = dev.info().frequency().expect("a cycles device").get() as u128;
    // 1024 deltas, 20 µs..100 ms (sim's xorshift64, fixed seed).
    let ds = sim::rng::deltas(EVENTS, 20_000, 100_000_000);
    let cycles: Vec<Cycles> = ds
        .iter()
        .map(|&d| Cycles::new((d as u128 * hz).div_ceil(1_000_000_000) as u64))
        .collect();
    let now = clock.now();
    let expiries: Vec<Ktime> = ds
        .iter()
        .map(|&d| now.saturating_add(Nanos::from_nanos(d)))
        .collect();
    for (&cy, &t) in cycles.iter().zip(&expiries) {
        dev.program(In(cy)).expect("driver accepts the delta");
        let p = ev.program_event(t, now, Expired::Force);
        assert!(matches!(p, Ok(Programmed::At(_))), "{p:?}");
    }
    Inputs {
        now,
        cycles,
        expiries,
    }
}

/// The floor and `program_event` benchmarks, shared by both modes.
fn driver_and_core(
    g: &mut BenchmarkGroup<'_, WallTime>,
    dev: &LapicTimer<'_>,
    ev: &mut EventDevice<'_>,
    inputs: &Inputs,
) {
    g.bench_function("floor: driver set_next_event(precomputed cycles)", |b| {
        b.iter(|| {
            for &cy in &inputs.cycles {
                let _ = black_box(black_box(dev).program(In(black_box(cy))));
            }
        })
    });
    let now = inputs.now;
    g.bench_function("EventDevice::program_event(expires)", |b| {
        b.iter(|| {
            for &t in &inputs.expiries {
                let _ = black_box(ev.program_event(black_box(t), now, Expired::Force));
            }
        })
    });
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(EVENTS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn oneshot(c: &mut Criterion) {
    let clock = VirtualClock::new();
    let model = LapicModel::new(clock.clone(), LapicModelConfig::qemu(0));
    let dev = LapicTimer::new(TimerConfig::new(
        0,
        Access::xapic(&model),
        caps(&model),
        exact(),
    ))
    .expect("timer");
    assert_eq!(dev.mode(), TimerMode::Oneshot);
    let mut ev = EventDevice::new(&dev, Nanos::from_millis(4)).expect("valid device");
    let inputs = prepare(&clock, &dev, &mut ev);
    let counts: Vec<u32> = inputs.cycles.iter().map(|c| c.get() as u32).collect();

    let mut g = configure(c, "lapic_oneshot");
    g.bench_function("bare model write32(TMICT)", |b| {
        b.iter(|| {
            for &v in &counts {
                black_box(&model).write32(Reg::InitialCount.offset(), black_box(v));
            }
        })
    });
    driver_and_core(&mut g, &dev, &mut ev, &inputs);
    g.finish();
}

#[cfg(feature = "deadline")]
fn deadline(c: &mut Criterion) {
    use clocksource::Hertz;
    use hw::{MsrAccess, TscRead};
    use lapic::regs::IA32_TSC_DEADLINE;
    use lapic::DeadlineClock;

    let clock = VirtualClock::new();
    let config = LapicModelConfig::qemu(0).tsc_deadline(true);
    let model = LapicModel::new(clock.clone(), config);
    let dc = DeadlineClock {
        msr: &model,
        tsc: &model,
        tsc_frequency: Hertz::new(config.tsc.get()),
        error_ppm: 0,
    };
    let tc = TimerConfig::new(0, Access::xapic(&model), caps(&model), exact()).with_deadline(dc);
    let dev = LapicTimer::new(tc).expect("timer");
    assert_eq!(dev.mode(), TimerMode::TscDeadline);
    let mut ev = EventDevice::new(&dev, Nanos::from_millis(4)).expect("valid device");
    let inputs = prepare(&clock, &dev, &mut ev);
    let tsc = model.rdtsc();
    let deadlines: Vec<u64> = inputs.cycles.iter().map(|c| tsc + c.get()).collect();

    let mut g = configure(c, "lapic_deadline");
    g.bench_function("bare model wrmsr(IA32_TSC_DEADLINE)", |b| {
        b.iter(|| {
            for &v in &deadlines {
                let _ = black_box(black_box(&model).wrmsr(IA32_TSC_DEADLINE, black_box(v)));
            }
        })
    });
    driver_and_core(&mut g, &dev, &mut ev, &inputs);
    g.finish();
}

#[cfg(not(feature = "deadline"))]
criterion_group!(benches, oneshot);
#[cfg(feature = "deadline")]
criterion_group!(benches, oneshot, deadline);
criterion_main!(benches);
