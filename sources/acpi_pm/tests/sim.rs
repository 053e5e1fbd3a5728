//! The ACPI PM timer driver over its model, in the simulator, with the
//! real tick layer. Virtual time, so every count is exact.
//!
//! Two clocks appear here: the simulator's true time (the model counts
//! edges of a 3.579545 MHz clock from it: edge `j` is at
//! `⌈j·10⁹/3579545⌉` ns) and the tick layer's monotonic time (from the PM
//! timer itself, or from a 1 GHz counter). Expected figures come from the
//! ACPI specification (6.5 §4.8.3.3: 3.579545 MHz, 24 bits) and Linux's
//! boot line for this clocksource (its max deferment), not from the
//! driver's constants.
//!
//! The PM timer has no interrupt: where a tick device is needed it is a
//! generic `sim::SimEventDevice`. It has no tickless feature either, so
//! `cargo test -p acpi_pm` is the whole matrix.

use std::sync::Arc;

use acpi_pm::model::{PmTimerModel, PmTimerModelConfig};
use acpi_pm::{AcpiPmClockSource, AcpiPmError, PROBE_READS};
use clockevents::{CpuId, CpuMask, Features};
use clocksource::{calibrate, ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};
use hw::PortIo;
use sim::conformance;
use sim::rng::XorShift64;
use sim::{
    CounterConfig, Edges, EventConfig, Machine, SimCounter, SimEventDevice, SlowBus, Trace,
    VirtualClock,
};
use tick::{IdleDepth, TickConfig, TickMode};

/// ACPI 6.5 §4.8.3.3: the timer's clock.
const F: u64 = 3_579_545;
/// ACPI 6.5 §4.8.3.3: `TMR_VAL` is 24 bits.
const WRAP: u64 = 1 << 24;
/// Where QEMU's pc and q35 machines put `PM_TMR`.
const PORT: u16 = 0x608;

type Pm = AcpiPmClockSource<'static, dyn PortIo>;

/// The timer's edges on the simulator's true time.
const EDGES: Edges = Edges::new(Hertz::new(F));

/// Timer edges passed at true time `t`.
fn edges_at(t: Ktime) -> u64 {
    EDGES.at(t)
}

/// The instant of timer edge `j`.
fn edge(j: u64) -> Ktime {
    EDGES.edge(j)
}

fn model(clock: &Arc<VirtualClock>, config: PmTimerModelConfig) -> &'static PmTimerModel {
    PmTimerModel::new(clock.clone(), config).leak()
}

fn pm(io: &'static dyn PortIo, port: u16) -> &'static Pm {
    Box::leak(Box::new(AcpiPmClockSource::new(io, port)))
}

/// The model behind a bus on which every access takes 1 µs of true time
/// (an `in` is ≥ 0.5 µs on hardware, a VM exit in a VM). Without it, reads
/// in a loop all happen at one instant of virtual time and see one count.
fn slow_bus(
    clock: &Arc<VirtualClock>,
    pm: &'static PmTimerModel,
) -> &'static SlowBus<'static, PmTimerModel> {
    SlowBus::new(clock, pm, Nanos::from_micros(1)).leak()
}

/// No PM timer: a bus with byte ports only, whose 32-bit reads are
/// unclaimed (`hw::PortIo`'s defaults: all ones).
struct NoTimer;

impl PortIo for NoTimer {
    fn inb(&self, _port: u16) -> u8 {
        0xFF
    }
    fn outb(&self, _port: u16, _value: u8) {}
}

// ----- the count ------------------------------------------------------------

#[test]
fn after_exactly_1s_the_count_advanced_3579545() {
    let clock = VirtualClock::new();
    let cs = pm(model(&clock, PmTimerModelConfig::qemu()), PORT);
    assert_eq!(cs.read(), Cycles::ZERO);
    clock.advance_to(Ktime::from_secs(1));
    assert_eq!(cs.read(), Cycles::new(3_579_545));

    // From a start value near the top: 0xF0_0000 + 3579545 wraps to
    // 0x26_9E99.
    let clock = VirtualClock::new();
    let cs = pm(
        model(&clock, PmTimerModelConfig::qemu().initial(0xF0_0000)),
        PORT,
    );
    let c0 = cs.read();
    clock.advance_to(Ktime::from_secs(1));
    let c1 = cs.read();
    assert_eq!(c1, Cycles::new((0xF0_0000 + 3_579_545) % WRAP));
    assert_eq!(c1, Cycles::new(0x26_9E99));
    assert_eq!(c1.wrapping_delta(c0, cs.mask()), Cycles::new(3_579_545));
}

#[test]
fn the_count_wraps_every_2_pow_24_edges_4_687s() {
    let clock = VirtualClock::new();
    let cs = pm(model(&clock, PmTimerModelConfig::qemu()), PORT);
    // 2^24 / 3.579545 MHz = 4.686968875 s (rounded up to the edge's ns).
    assert_eq!(edge(WRAP), Ktime::from_nanos(4_686_968_875));
    assert_eq!(edge(2 * WRAP), Ktime::from_nanos(9_373_937_750));
    for k in 1..=2 {
        clock.advance_to(Ktime::from_nanos(edge(k * WRAP).as_nanos() - 1));
        assert_eq!(cs.read(), Cycles::new(0xFF_FFFF));
        clock.advance_to(edge(k * WRAP));
        assert_eq!(cs.read(), Cycles::ZERO);
    }
}

#[test]
fn a_32_bit_timer_reads_as_the_same_24_bit_count() {
    // TMR_VAL_EXT: the model counts 32 bits; the driver keeps 23:0.
    let clock = VirtualClock::new();
    let m = model(
        &clock,
        PmTimerModelConfig::new(PORT)
            .extended(true)
            .initial(0xAB00_0000),
    );
    let cs = pm(m, PORT);
    clock.advance_to(Ktime::from_secs(10));
    assert_eq!(m.value(), 0xAB00_0000 + 35_795_450);
    assert_eq!(cs.read(), Cycles::new(35_795_450 % WRAP));
    assert_eq!(cs.mask(), Cycles::new(WRAP - 1));
}

#[test]
fn reads_at_random_instants_are_the_edges_since_start_mod_2_pow_24() {
    let clock = VirtualClock::new();
    clock.advance_to(Ktime::from_nanos(12_345));
    let m = model(&clock, PmTimerModelConfig::qemu().initial(0x12_3456));
    let cs = pm(m, PORT);
    let start = edges_at(clock.now());
    let mut rng = XorShift64::new(0x2545_F491_4F6C_DD1D);
    let mut prev: Option<(Ktime, Cycles)> = None;
    for _ in 0..5_000 {
        // Steps of up to 6 s: some cross a wrap, some more than one.
        let t = clock.advance_by(Nanos::from_nanos(rng.next_u64() % 6_000_000_000));
        let now = cs.read();
        let k = edges_at(t) - start;
        assert_eq!(now.get(), (0x12_3456 + k) % WRAP, "at {t}");
        assert_eq!(m.ticks(), k);
        if let Some((t0, c0)) = prev {
            let passed = edges_at(t) - edges_at(t0);
            if passed < WRAP {
                assert_eq!(now.wrapping_delta(c0, cs.mask()).get(), passed);
            }
        }
        prev = Some((t, now));
    }
    assert_eq!(m.reads(), 5_000, "one register access a read");
}

// ----- the timekeeper over it -------------------------------------------------

/// The per-CPU tick device: 1 GHz, periodic and one-shot, a 40-bit delta
/// (1100 s) so that only the clock source bounds how long the tick stops.
fn tick_dev(clock: &Arc<VirtualClock>, trace: &Trace) -> &'static SimEventDevice {
    SimEventDevice::new(
        clock.clone(),
        EventConfig::new("lapic0", Hertz::from_mhz(1_000))
            .features(Features::PERIODIC | Features::ONESHOT | Features::PERCPU)
            .min_delta(Cycles::new(1_000))
            .max_delta(Cycles::new(1 << 40))
            .cpus(CpuMask::single(CpuId::BOOT)),
    )
    .with_trace(trace.clone())
    .leak()
}

#[test]
fn nohz_idle_30s_on_the_pm_timer_wakes_every_max_deferment_and_loses_no_time() {
    let clock = VirtualClock::new();
    let trace = Trace::new();
    let m_pm = model(&clock, PmTimerModelConfig::qemu());
    let cs = pm(m_pm, PORT);
    // Past the first edge; the timekeeper's zero is here.
    let t0 = clock.advance_to(Ktime::from_millis(1));
    let c0 = m_pm.ticks();
    let cfg = TickConfig::new(Hertz::new(250));
    let mut m: Machine<1> = Machine::new(clock.clone(), trace.clone(), cfg, cs);
    m.add_device(tick_dev(&clock, &trace));
    // CONTINUOUS | VALID_FOR_HRES: the tick may stop on it.
    assert_eq!(m.tick.mode(CpuId::BOOT), TickMode::HighRes { nohz: true });
    // Linux: "clocksource: acpi_pm: mask: 0xffffff max_cycles: 0xffffff,
    // max_idle_ns: 2085701024 ns".
    let max_def = m.tick.timekeeper().max_deferment();
    assert_eq!(max_def, Nanos::from_nanos(2_085_701_024));

    m.idle(0, IdleDepth::Shallow);
    let idle_at = clock.now();
    let end = idle_at.saturating_add(Nanos::from_secs(30));
    m.run_until(end);
    // Nothing else to wake for: one wake-up per max deferment, 30 s /
    // 2.0857 s = 14, each at most max_def after the one before.
    let irqs: Vec<Ktime> = trace
        .interrupts_of("lapic0")
        .into_iter()
        .filter(|t| *t > idle_at)
        .collect();
    let info = m.tick.cpu_info(CpuId::BOOT).unwrap();
    assert_eq!(info.stats.max_deferment_wakeups, 14, "{irqs:?}");
    assert_eq!(irqs.len(), 14, "{irqs:?}");
    let mut last = idle_at;
    for t in &irqs {
        assert!(t.saturating_since(last) <= max_def, "{last} → {t}");
        last = *t;
    }

    // Six wraps later, monotonic time is the exact conversion of the edges
    // since the timekeeper started, and within one edge plus the
    // conversion bound of true time.
    let c = m_pm.ticks() - c0;
    assert_eq!(c / WRAP, 6, "{c} edges");
    let conv = m.tick.timekeeper().params().conv.0;
    let mono = m.now();
    assert_eq!(mono.as_nanos(), conv.apply(c));
    let truth = end.saturating_since(t0).as_nanos();
    let bound = 280 + conv.error_bound(c);
    assert!(
        mono.as_nanos().abs_diff(truth) <= bound,
        "mono {mono} vs true {truth} ns, bound {bound}"
    );
}

// ----- the probe ----------------------------------------------------------------

#[test]
fn probe_sees_a_counting_timer_at_the_second_read_over_slow_port_io() {
    let clock = VirtualClock::new();
    let m = model(&clock, PmTimerModelConfig::qemu());
    let cs = pm(slow_bus(&clock, m), PORT);
    // A read is 1 µs: 3.58 edges.
    assert_eq!(cs.probe(PROBE_READS), Ok(2));
    assert_eq!(m.reads(), 2);
}

#[test]
fn probe_of_a_stopped_timer_fails_with_not_counting_after_its_reads() {
    let clock = VirtualClock::new();
    let m = model(&clock, PmTimerModelConfig::qemu());
    clock.advance_to(Ktime::from_millis(100));
    m.set_running(false);
    let cs = pm(slow_bus(&clock, m), PORT);
    // Held at 100 ms: 357954 = 0x5_7642.
    assert_eq!(
        cs.probe(PROBE_READS),
        Err(AcpiPmError::NotCounting {
            reads: 10_000,
            value: 0x5_7642
        })
    );
    assert_eq!(m.reads(), 10_000);
    // 10 000 reads of 1 µs: bounded in time as well.
    assert_eq!(clock.now(), Ktime::from_millis(110));

    // Calibrating against it is a typed error, not a hang.
    let tsc = SimCounter::new(
        clock.clone(),
        CounterConfig::new("tsc", Hertz::new(3_000_000_000)),
    );
    assert_eq!(
        calibrate(
            cs,
            || tsc.read(),
            tsc.mask(),
            Nanos::from_millis(10),
            10_000
        ),
        Err(clocksource::CalibrationError::ReferenceStopped)
    );

    // Restarted, it counts on from where it stopped.
    m.set_running(true);
    assert_eq!(cs.probe(PROBE_READS), Ok(2));
}

#[test]
fn probe_where_no_timer_answers_reports_the_floating_bus() {
    let cs = pm(&NoTimer, PORT);
    assert_eq!(
        cs.probe(100),
        Err(AcpiPmError::NotCounting {
            reads: 100,
            value: 0xFF_FFFF
        })
    );
    // A FADT naming the wrong port: the model answers only at its own.
    let clock = VirtualClock::new();
    let m = model(&clock, PmTimerModelConfig::qemu());
    let cs = pm(slow_bus(&clock, m), 0xB008);
    assert_eq!(
        cs.probe(100),
        Err(AcpiPmError::NotCounting {
            reads: 100,
            value: 0xFF_FFFF
        })
    );
    assert_eq!(m.reads(), 0);
}

// ----- as a calibration reference -------------------------------------------

#[test]
fn calibrates_a_3ghz_tsc_against_the_pm_timer_within_the_stated_bound() {
    let clock = VirtualClock::new();
    let m = model(&clock, PmTimerModelConfig::qemu());
    let cs = pm(slow_bus(&clock, m), PORT);
    // A bracket is one 1 µs read: 3.58 edges, at most 4 wide, so at most
    // 2 + 2 + 2 = 6 edges of the ≥ 35795 in the 10 ms window (168 ppm),
    // plus one TSC cycle of the 30 million counted (1 ppm).
    let c = conformance::calibrates_a_3ghz_tsc("acpi_pm", &clock, cs, Hertz::new(F), 4);
    assert!(c.error_ppm <= 169, "{c:?}");
    assert_eq!(
        cs.flags(),
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    );
}
