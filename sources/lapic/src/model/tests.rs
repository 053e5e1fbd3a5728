//! The model against the SDM, one behaviour per test, exact in virtual time.

use std::sync::Arc;

use raw_cpuid::CpuId;
use sim::VirtualClock;

use super::*;
use crate::caps::Capabilities;
use crate::regs::SVR_VECTOR_MASK;

const VEC: u8 = 0xEC;

fn model(cfg: LapicModelConfig) -> (Arc<VirtualClock>, LapicModel) {
    let clock = VirtualClock::new();
    let m = LapicModel::new(clock.clone(), cfg);
    (clock, m)
}

/// A QEMU-like APIC (1 GHz bus, 2.4 GHz TSC), software-enabled.
fn enabled(cfg: LapicModelConfig) -> (Arc<VirtualClock>, LapicModel) {
    let (c, m) = model(cfg);
    m.write32(Reg::Svr.offset(), SVR_APIC_ENABLE | 0xFF);
    (c, m)
}

fn at(clock: &VirtualClock, ns: u64) {
    clock.advance_to(Ktime::from_nanos(ns));
}

fn lvt(m: &LapicModel, mode: TimerModeBits, masked: bool) {
    m.write32(
        Reg::LvtTimer.offset(),
        LvtTimer::new(VEC, mode, masked).bits(),
    );
}

fn count(m: &LapicModel) -> u32 {
    m.read32(Reg::CurrentCount.offset())
}

fn ns(t: u64) -> Option<Ktime> {
    Some(Ktime::from_nanos(t))
}

#[test]
fn divider_values_scale_the_count_rate() {
    for d in Divide::ALL {
        let (clock, m) = enabled(LapicModelConfig::qemu(0));
        lvt(&m, TimerModeBits::OneShot, false);
        m.write32(Reg::DivideConfig.offset(), d.bits());
        let n = 10_000_000u64;
        m.write32(Reg::InitialCount.offset(), n as u32);
        let div = d.divisor() as u64;
        assert_eq!(m.count_rate(), Hertz::new(1_000_000_000 / div));
        // 1 ms of a 1 GHz bus is 10^6 bus clocks: 10^6 / div ticks.
        at(&clock, 1_000_000);
        assert_eq!(count(&m) as u64, n - 1_000_000 / div, "{d:?}");
        // The count reaches 0 after n · div bus clocks (= ns at 1 GHz).
        assert_eq!(m.next_fire(), ns(n * div), "{d:?}");
    }
}

#[test]
fn divide_change_mid_count_keeps_the_ticks_counted() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    at(&clock, 8_000); // 500 ticks at 16 ns
    m.write32(Reg::DivideConfig.offset(), Divide::By2.bits());
    assert_eq!(count(&m), 500);
    // The other 500 ticks at 2 ns each.
    assert_eq!(m.next_fire(), ns(9_000));
}

#[test]
fn oneshot_counts_down_to_zero_and_fires_once() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    assert_eq!(count(&m), 1_000);
    at(&clock, 8_000);
    assert_eq!(count(&m), 500);
    assert_eq!(m.next_fire(), ns(16_000));
    at(&clock, 15_999);
    assert!(!m.fire(), "not before the count reaches 0");
    assert_eq!(count(&m), 1);
    at(&clock, 16_000);
    assert!(m.fire());
    assert_eq!(count(&m), 0);
    assert_eq!(m.next_fire(), None);
    at(&clock, 1_000_000_000);
    assert!(!m.fire());
    assert_eq!(count(&m), 0, "stays at 0");
    assert_eq!(m.interrupts(), 1);
    assert_eq!(m.delivered(), [Ktime::from_nanos(16_000)]);
}

#[test]
fn periodic_reloads() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::Periodic, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    for k in 1..=5u64 {
        let due = m.next_fire().unwrap();
        assert_eq!(due, Ktime::from_nanos(k * 16_000));
        clock.advance_to(due);
        assert!(m.fire());
        // Reloaded: a full period to go.
        assert_eq!(count(&m), 1_000);
    }
    at(&clock, 5 * 16_000 + 8_000);
    assert_eq!(count(&m), 500);
    assert_eq!(m.interrupts(), 5);
    // Serviced three periods late: one interrupt, two merged into it.
    at(&clock, 8 * 16_000 + 5);
    assert!(m.fire());
    assert_eq!(m.coalesced(), 2);
    assert_eq!(m.next_fire(), ns(9 * 16_000));
}

#[test]
fn masked_lvt_raises_no_interrupt() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::OneShot, true);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    assert_eq!(m.next_fire(), None);
    at(&clock, 20_000);
    assert!(!m.fire());
    assert_eq!(count(&m), 0, "the count still ran down");
    // Unmasking later does not resurrect the event that passed.
    lvt(&m, TimerModeBits::OneShot, false);
    assert_eq!(m.next_fire(), None);
    assert_eq!((m.interrupts(), m.suppressed()), (0, 1));

    // Periodic: masked periods are lost, the next after unmasking fires.
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::Periodic, true);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    at(&clock, 40_000);
    lvt(&m, TimerModeBits::Periodic, false);
    assert_eq!(m.next_fire(), ns(48_000));
    assert_eq!(m.suppressed(), 2);
}

#[test]
fn writing_zero_initial_count_stops_the_timer() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::Periodic, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    at(&clock, 5_000);
    m.write32(Reg::InitialCount.offset(), 0);
    assert_eq!(count(&m), 0);
    assert_eq!(m.next_fire(), None);
    at(&clock, 1_000_000);
    assert!(!m.fire());
}

#[test]
fn software_disabled_apic_keeps_the_timer_masked() {
    // Power-up (qboot leaves it so): SVR 0xFF, software-disabled.
    let (clock, m) = model(LapicModelConfig::qemu(0));
    assert_eq!(m.read32(Reg::Svr.offset()), 0xFF);
    lvt(&m, TimerModeBits::OneShot, false);
    assert!(
        LvtTimer::from_bits(m.read32(Reg::LvtTimer.offset())).is_masked(),
        "the mask cannot be cleared while software-disabled"
    );
    m.write32(Reg::InitialCount.offset(), 10);
    at(&clock, 1_000);
    assert!(!m.fire());
    // Enable, unmask: it works; disable again: masked again.
    m.write32(Reg::Svr.offset(), SVR_APIC_ENABLE | 0xFF);
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::InitialCount.offset(), 10);
    assert_eq!(m.next_fire(), ns(1_020));
    m.write32(Reg::Svr.offset(), 0xFF);
    assert!(LvtTimer::from_bits(m.read32(Reg::LvtTimer.offset())).is_masked());
    assert_eq!(m.next_fire(), None);
}

fn deadline_model() -> (Arc<VirtualClock>, LapicModel) {
    let (clock, m) = enabled(LapicModelConfig::qemu(0).tsc_deadline(true));
    lvt(&m, TimerModeBits::TscDeadline, false);
    (clock, m)
}

#[test]
fn deadline_fires_when_the_tsc_reaches_it_then_disarms() {
    let (clock, m) = deadline_model();
    at(&clock, 1_000_000);
    assert_eq!(m.rdtsc(), 2_400_000);
    // 2400 TSC cycles at 2.4 GHz: 1 µs.
    m.wrmsr(IA32_TSC_DEADLINE, m.rdtsc() + 2_400).unwrap();
    assert_eq!(m.next_fire(), ns(1_001_000));
    // A deadline between two nanoseconds fires at the later one.
    m.wrmsr(IA32_TSC_DEADLINE, m.rdtsc() + 2_401).unwrap();
    assert_eq!(m.next_fire(), ns(1_001_001));
    at(&clock, 1_001_001);
    assert!(m.fire());
    assert_eq!(m.rdmsr(IA32_TSC_DEADLINE), Ok(0), "disarmed itself");
    assert_eq!(m.next_fire(), None);
    assert_eq!(count(&m), 0, "TMCCT reads 0 in TSC-deadline mode");
}

#[test]
fn deadline_in_the_past_fires_at_once() {
    let (clock, m) = deadline_model();
    at(&clock, 1_000_000);
    m.wrmsr(
        IA32_TSC_DEADLINE,
        m.tsc_at(Ktime::from_nanos(500_000)).get(),
    )
    .unwrap();
    assert_eq!(m.next_fire(), ns(1_000_000));
    assert!(m.fire());
    assert_eq!(m.delivered(), [Ktime::from_nanos(1_000_000)]);
    // Deadline 1 (the TSC is long past it) too.
    m.wrmsr(IA32_TSC_DEADLINE, 1).unwrap();
    assert!(m.fire());
    assert_eq!(m.interrupts(), 2);
}

#[test]
fn writing_zero_deadline_disarms() {
    let (clock, m) = deadline_model();
    m.wrmsr(IA32_TSC_DEADLINE, 24_000).unwrap();
    assert_eq!(m.next_fire(), ns(10_000));
    m.wrmsr(IA32_TSC_DEADLINE, 0).unwrap();
    assert_eq!(m.next_fire(), None);
    at(&clock, 1_000_000);
    assert!(!m.fire());
}

#[test]
fn changing_lvt_mode_disarms_the_deadline_and_tmict_is_ignored_in_it() {
    let (clock, m) = deadline_model();
    m.wrmsr(IA32_TSC_DEADLINE, 24_000).unwrap();
    m.write32(Reg::InitialCount.offset(), 5);
    assert_eq!(m.read32(Reg::InitialCount.offset()), 0, "ignored");
    lvt(&m, TimerModeBits::OneShot, false);
    assert_eq!(m.next_fire(), None);
    lvt(&m, TimerModeBits::TscDeadline, false);
    assert_eq!(m.rdmsr(IA32_TSC_DEADLINE), Ok(0));
    at(&clock, 1_000_000);
    assert!(!m.fire());
    // Outside TSC-deadline mode the MSR ignores writes and reads 0.
    lvt(&m, TimerModeBits::OneShot, false);
    m.wrmsr(IA32_TSC_DEADLINE, u64::MAX).unwrap();
    assert_eq!(m.rdmsr(IA32_TSC_DEADLINE), Ok(0));
}

#[test]
fn deadline_msr_and_mode_absent_without_the_feature() {
    let (_clock, m) = enabled(LapicModelConfig::qemu(0));
    assert_eq!(
        m.wrmsr(IA32_TSC_DEADLINE, 1),
        Err(MsrFault {
            msr: IA32_TSC_DEADLINE
        })
    );
    // Bit 18 is reserved: the mode stays one-shot.
    lvt(&m, TimerModeBits::TscDeadline, false);
    assert_eq!(
        LvtTimer::from_bits(m.read32(Reg::LvtTimer.offset())).mode(),
        TimerModeBits::OneShot
    );
}

#[test]
fn x2apic_msrs_mirror_xapic_registers() {
    let (clock, m) = enabled(LapicModelConfig::qemu(3).x2apic(true));
    lvt(&m, TimerModeBits::Periodic, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By4.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    assert_eq!(m.read32(Reg::Id.offset()), 3 << 24);
    let mmio: Vec<u32> = [
        Reg::Svr,
        Reg::LvtTimer,
        Reg::InitialCount,
        Reg::DivideConfig,
    ]
    .iter()
    .map(|r| m.read32(r.offset()))
    .collect();
    // x2APIC MSRs fault until x2APIC mode is on.
    assert!(m.rdmsr(Reg::LvtTimer.msr()).is_err());
    crate::enable_x2apic(&m).unwrap();
    assert!(m.is_x2apic());
    // State carries over into x2APIC mode (SDM §10.12.5).
    let msr: Vec<u32> = [
        Reg::Svr,
        Reg::LvtTimer,
        Reg::InitialCount,
        Reg::DivideConfig,
    ]
    .iter()
    .map(|r| m.rdmsr(r.msr()).unwrap() as u32)
    .collect();
    assert_eq!(mmio, msr);
    assert_eq!(m.rdmsr(Reg::Id.msr()), Ok(3), "32-bit x2APIC ID");
    at(&clock, 2_000); // 500 ticks at ÷4
    assert_eq!(m.rdmsr(Reg::CurrentCount.msr()), Ok(500));
    // The MMIO page is no longer decoded.
    assert_eq!(m.read32(Reg::LvtTimer.offset()), u32::MAX);
    // Writes through MSRs drive the same timer.
    m.wrmsr(Reg::InitialCount.msr(), 10).unwrap();
    assert_eq!(m.next_fire(), ns(2_040));
    // Read-only registers, non-zero EOI, reserved high halves: #GP.
    assert!(m.wrmsr(Reg::CurrentCount.msr(), 1).is_err());
    assert!(m.wrmsr(Reg::Eoi.msr(), 1).is_err());
    assert!(m.rdmsr(Reg::Eoi.msr()).is_err());
    assert!(m.wrmsr(Reg::InitialCount.msr(), 1 << 32).is_err());
    m.wrmsr(Reg::Eoi.msr(), 0).unwrap();
    assert_eq!(m.eois(), 1);
    // x2APIC → xAPIC directly is invalid; through disabled it resets.
    let base = m.rdmsr(IA32_APIC_BASE).unwrap();
    assert!(m.wrmsr(IA32_APIC_BASE, base & !APIC_BASE_EXTD).is_err());
    m.wrmsr(IA32_APIC_BASE, base & !(APIC_BASE_EXTD | APIC_BASE_EN))
        .unwrap();
    assert_eq!(m.next_fire(), None);
    m.wrmsr(IA32_APIC_BASE, base & !APIC_BASE_EXTD).unwrap();
    assert_eq!(m.read32(Reg::Svr.offset()), SVR_RESET);
    assert!(LvtTimer::from_bits(m.read32(Reg::LvtTimer.offset())).is_masked());
}

#[test]
fn x2apic_cannot_be_enabled_without_the_feature() {
    let (_clock, m) = enabled(LapicModelConfig::qemu(0));
    assert!(crate::enable_x2apic(&m).is_err());
    assert!(!m.is_x2apic());
    assert_eq!(m.read32(Reg::Svr.offset()) & SVR_VECTOR_MASK, 0xFF);
}

#[test]
fn deep_idle_freezes_the_count_without_arat() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    at(&clock, 8_000);
    m.set_deep_idle(true);
    assert_eq!(m.next_fire(), None, "no interrupt while stopped");
    at(&clock, 100_000);
    assert_eq!(count(&m), 500, "frozen");
    m.set_deep_idle(false);
    assert_eq!(m.next_fire(), ns(108_000), "resumes where it stopped");

    // TSC-deadline: the TSC runs on; a deadline passed while stopped fires
    // on wake-up.
    let (clock, m) = deadline_model();
    m.wrmsr(IA32_TSC_DEADLINE, 24_000).unwrap(); // 10 µs
    m.set_deep_idle(true);
    at(&clock, 50_000);
    assert!(!m.fire());
    m.set_deep_idle(false);
    assert_eq!(m.next_fire(), ns(50_000));
    assert!(m.fire());
}

#[test]
fn arat_timer_runs_through_deep_idle() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0).arat(true));
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    m.set_deep_idle(true);
    assert_eq!(m.next_fire(), ns(16_000));
    at(&clock, 16_000);
    assert!(m.fire());
}

#[test]
fn late_fault_delays_delivery_not_the_count() {
    let (clock, m) = enabled(LapicModelConfig::qemu(0));
    m.late_by(Nanos::from_micros(3));
    lvt(&m, TimerModeBits::OneShot, false);
    m.write32(Reg::DivideConfig.offset(), Divide::By16.bits());
    m.write32(Reg::InitialCount.offset(), 1_000);
    assert_eq!(m.next_fire(), ns(19_000));
    at(&clock, 16_000);
    assert!(!m.fire());
    assert_eq!(count(&m), 0);
    at(&clock, 19_000);
    assert!(m.fire());
}

#[test]
fn unmodelled_and_malformed_accesses_are_harmless() {
    let (_clock, m) = enabled(LapicModelConfig::qemu(0));
    assert_eq!(m.read32(0x300), 0, "ICR: not modelled, reads 0");
    assert_eq!(m.read32(0x321), u32::MAX, "misaligned");
    assert_eq!(m.read32(0x1000), u32::MAX, "outside the page");
    assert_eq!(m.read64(0x320), u64::MAX);
    m.write32(Reg::Version.offset(), 0);
    assert_eq!(m.read32(Reg::Version.offset()), VERSION_QEMU);
    assert!(m.rdmsr(0x830).is_err(), "x2APIC MSR while in xAPIC mode");
}

#[test]
fn tsc_follows_true_time() {
    let (clock, m) = model(LapicModelConfig::qemu(0));
    at(&clock, 1_000_000_007);
    assert_eq!(m.rdtsc(), 2_400_000_016);
}

#[test]
fn model_cpuid_states_the_configured_features() {
    let cfg = LapicModelConfig::qemu(2)
        .x2apic(true)
        .tsc_deadline(true)
        .arat(true)
        .timing_leaf(true);
    let (_clock, m) = model(cfg);
    let caps = Capabilities::from_cpuid(&CpuId::with_cpuid_reader(m.cpuid()));
    assert!(caps.apic && caps.x2apic && caps.tsc_deadline && caps.arat && caps.hypervisor);
    assert_eq!(caps.hypervisor_bus, Some(QEMU_BUS));
    assert_eq!(caps.crystal, None);
    let metal = LapicModelConfig::new(0, Hertz::new(24_000_000), Hertz::new(3_000_000_000))
        .crystal_leaf(true);
    let (_clock, m) = model(metal);
    let caps = Capabilities::from_cpuid(&CpuId::with_cpuid_reader(m.cpuid()));
    assert!(!caps.hypervisor && !caps.arat && !caps.x2apic);
    assert_eq!(caps.crystal, Some(Hertz::new(24_000_000)));
    assert_eq!(caps.hypervisor_bus, None);
}

/// For any divider, initial count and start time, a one-shot fires exactly
/// when `count · divisor` bus clocks have passed, and TMCCT only goes down.
#[test]
fn oneshot_fires_after_exactly_count_times_divisor_bus_clocks() {
    fn prop(div: u8, n: u32, start: u32, bus_mhz: u16) -> quickcheck::TestResult {
        if n == 0 || bus_mhz == 0 {
            return quickcheck::TestResult::discard();
        }
        let d = Divide::ALL[div as usize % 8];
        let bus = bus_mhz as u64 * 1_000_000;
        let (clock, m) = enabled(LapicModelConfig::new(0, Hertz::new(bus), Hertz::new(bus)));
        at(&clock, start as u64);
        lvt(&m, TimerModeBits::OneShot, false);
        m.write32(Reg::DivideConfig.offset(), d.bits());
        m.write32(Reg::InitialCount.offset(), n);
        let clocks = n as u128 * d.divisor() as u128;
        let due = start as u64 + (clocks * 1_000_000_000).div_ceil(bus as u128) as u64;
        if m.next_fire() != Some(Ktime::from_nanos(due)) {
            return quickcheck::TestResult::failed();
        }
        let mid = start as u64 + (due - start as u64) / 2;
        at(&clock, mid);
        let c = count(&m);
        at(&clock, due - 1);
        let before = count(&m);
        let early = m.fire();
        at(&clock, due);
        quickcheck::TestResult::from_bool(
            c <= n && before <= c && before >= 1 && !early && m.fire() && count(&m) == 0,
        )
    }
    quickcheck::QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(u8, u32, u32, u16) -> quickcheck::TestResult);
}

#[test]
fn lint_and_error_lvts_reset_masked_and_mask_again_when_software_disabled() {
    // SDM §10.5.1: every LVT resets to 0x0001_0000; §10.9: clearing the
    // SVR's enable bit masks them all.
    let (_clock, m) = model(LapicModelConfig::qemu(0));
    for r in [Reg::LvtLint0, Reg::LvtLint1, Reg::LvtError] {
        assert_eq!(m.read32(r.offset()), 0x0001_0000, "{r:?} at reset");
    }
    m.write32(Reg::Svr.offset(), SVR_APIC_ENABLE | 0xFF);
    m.write32(Reg::LvtLint0.offset(), 1 << 16); // ExtINT pin: masked
    m.write32(Reg::LvtLint1.offset(), 0b100 << 8); // NMI, unmasked
    m.write32(Reg::LvtError.offset(), 0xFE);
    // Delivery status (12) and remote IRR (14) are read-only.
    m.write32(
        Reg::LvtLint0.offset(),
        (1 << 16) | (1 << 14) | (1 << 12) | 0x20,
    );
    assert_eq!(m.read32(Reg::LvtLint0.offset()), (1 << 16) | 0x20);
    assert_eq!(m.read32(Reg::LvtLint1.offset()), 0b100 << 8);
    assert_eq!(m.read32(Reg::LvtError.offset()), 0xFE);
    m.write32(Reg::Svr.offset(), 0xFF);
    assert_eq!(m.read32(Reg::LvtLint1.offset()), (1 << 16) | (0b100 << 8));
    assert_eq!(m.read32(Reg::LvtError.offset()), (1 << 16) | 0xFE);
}

#[test]
fn isr_esr_and_icr_behave_as_the_sdm_says_for_one_cpu() {
    let (_clock, m) = enabled(LapicModelConfig::qemu(0).x2apic(true));
    // No interrupt in service, no error latched.
    for v in [0u8, 31, 32, 0xEC, 0xFF] {
        let (reg, bit) = Reg::isr(v);
        assert_eq!(m.read32(reg.offset()) & bit, 0, "vector {v:#x}");
    }
    assert_eq!(Reg::isr(0xEC), (Reg::Isr7, 1 << 12));
    assert_eq!(Reg::isr(33), (Reg::Isr1, 1 << 1));
    m.write32(Reg::Esr.offset(), 0x1234); // xAPIC: any value latches
    assert_eq!(m.read32(Reg::Esr.offset()), 0);
    // A self-IPI (shorthand self, fixed): accepted, sent at once, counted.
    m.write32(Reg::IcrLow.offset(), (0b01 << 18) | 0x40);
    assert_eq!(m.read32(Reg::IcrLow.offset()) & (1 << 12), 0);
    assert_eq!(m.ipis(), 1);
    crate::enable_x2apic(&m).unwrap();
    // x2APIC: ISR read-only, ESR takes only 0 (SDM §10.12.1.2), ICR is 0x830.
    assert_eq!(Reg::IcrLow.msr(), 0x830);
    assert!(m.wrmsr(Reg::Isr0.msr(), 0).is_err());
    assert!(m.wrmsr(Reg::Esr.msr(), 1).is_err());
    m.wrmsr(Reg::Esr.msr(), 0).unwrap();
    m.wrmsr(Reg::IcrLow.msr(), (0b01 << 18) | 0x40).unwrap();
    assert_eq!(m.ipis(), 2);
}
