//! The tick timeline of an idle CPU: periodic vs NO_HZ idle.
//!
//! One simulated CPU, HZ=250, a LAPIC-like one-shot/periodic timer and a
//! 1 GHz TSC-like clocksource. The CPU idles for 10 s with three timers
//! pending (1.5 s, 3.7 s, 7.25 s). The same workload runs with `nohz=off`
//! and `nohz=on`; every timer interrupt is listed (runs of evenly spaced
//! ticks are collapsed).
//!
//! Run: `cargo run -p sim --example tickless`

use clockevents::{CpuId, CpuMask, Features};
use clocksource::{ClockSourceFlags, Cycles, Hertz, Ktime};
use sim::{CounterConfig, EventConfig, Machine, SimCounter, SimEventDevice, Trace, VirtualClock};
use tick::{IdleDepth, TickConfig};

const TIMERS: [u64; 3] = [1_500, 3_700, 7_250];
const RUN: Ktime = Ktime::from_secs(10);

fn scenario(nohz: bool) -> (Vec<Ktime>, Vec<(Ktime, Ktime)>, String) {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let tsc = SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(1_000_000_000))
            .rating(300)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES),
    )
    .leak();
    let lapic = SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic", Hertz::new(1_000_000_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .rating(100)
            .min_delta(Cycles::new(1_000))
            .max_delta(Cycles::new(1 << 40))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .with_trace(trace.clone())
    .leak();
    let cfg = TickConfig::new(Hertz::new(250)).with_nohz(nohz);
    let mut m: Machine<1> = Machine::new(clock, trace.clone(), cfg, tsc);
    m.add_device(lapic);
    for (i, ms) in TIMERS.iter().enumerate() {
        m.add_timer(0, Ktime::from_millis(*ms), i as u64);
    }
    m.idle(0, IdleDepth::Shallow);
    m.run_until(RUN);
    let mode = m.tick.mode(CpuId::new(0)).to_string();
    let fired = m.fired().iter().map(|f| (f.expires, f.true_time)).collect();
    (trace.interrupts_of("lapic"), fired, mode)
}

/// Prints interrupt times, collapsing runs with a constant gap.
fn timeline(irqs: &[Ktime]) {
    let mut i = 0;
    while i < irqs.len() {
        let mut j = i;
        if i + 1 < irqs.len() {
            let gap = irqs[i + 1].saturating_since(irqs[i]);
            while j + 1 < irqs.len() && irqs[j + 1].saturating_since(irqs[j]) == gap {
                j += 1;
            }
            if j - i >= 3 {
                println!(
                    "    {} .. {}  every {:>8} µs  ({} interrupts)",
                    irqs[i],
                    irqs[j],
                    gap.as_nanos() / 1_000,
                    j - i + 1
                );
                i = j + 1;
                continue;
            }
        }
        println!("    {}", irqs[i]);
        i += 1;
    }
}

fn main() {
    println!(
        "dynticks simulator: one idle CPU, HZ=250, timers at 1.5 s, 3.7 s, 7.25 s, {RUN} of idle\n"
    );
    let mut rates = Vec::new();
    for nohz in [false, true] {
        let (irqs, fired, mode) = scenario(nohz);
        let per_s = irqs.len() as f64 / (RUN.as_nanos() as f64 / 1e9);
        println!(
            "nohz={} — tick mode: {mode}",
            if nohz { "on" } else { "off" }
        );
        timeline(&irqs);
        for (due, at) in &fired {
            println!(
                "    timer due {due} ran at {at} (late by {} ns)",
                at.saturating_since(*due).as_nanos()
            );
        }
        println!("    → {} timer interrupts, {per_s:.1}/s\n", irqs.len());
        rates.push(per_s);
    }
    println!(
        "idle interrupts per second: periodic {:.1}, NO_HZ {:.1} ({}× fewer)",
        rates[0],
        rates[1],
        (rates[0] / rates[1].max(f64::MIN_POSITIVE)).round()
    );
}
