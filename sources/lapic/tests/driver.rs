//! The driver's register sequences, checked on the model (no machine).

use std::sync::Arc;

#[cfg(any(feature = "oneshot", feature = "deadline"))]
use clockevents::NextEvent::In;
use clockevents::{ClockEventDevice, CpuMask, DeviceError, Features};
use clocksource::{Cycles, Hertz, Ktime, Nanos};
use hw::{InterruptSource, Mmio, MsrAccess};
use lapic::model::{LapicModel, LapicModelConfig, QEMU_BUS};
use lapic::regs::SVR_APIC_ENABLE;
use lapic::{
    enable_x2apic, Access, Capabilities, Divide, Error, FrequencySource, LapicTimer, LvtTimer, Reg,
    TimerConfig, TimerFrequency, TimerMode, TimerModeBits, LOCAL_TIMER_VECTOR,
};
use raw_cpuid::CpuId;
use sim::VirtualClock;

fn caps(m: &LapicModel) -> Capabilities {
    Capabilities::from_cpuid(&CpuId::with_cpuid_reader(m.cpuid()))
}

fn exact() -> Option<TimerFrequency> {
    Some(TimerFrequency::from_bus(
        QEMU_BUS,
        FrequencySource::HypervisorLeaf,
    ))
}

fn setup(cfg: LapicModelConfig) -> (Arc<VirtualClock>, &'static LapicModel) {
    let clock = VirtualClock::new();
    (clock.clone(), LapicModel::new(clock, cfg).leak())
}

fn lvt(m: &LapicModel) -> LvtTimer {
    LvtTimer::from_bits(m.read32(Reg::LvtTimer.offset()))
}

#[test]
fn init_software_enables_an_apic_firmware_left_disabled() {
    // qboot leaves the SVR at its reset value: software-disabled.
    let (_clock, m) = setup(LapicModelConfig::qemu(0));
    assert_eq!(m.read32(Reg::Svr.offset()) & SVR_APIC_ENABLE, 0);
    let t = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), exact())).unwrap();
    assert_eq!(m.read32(Reg::Svr.offset()), SVR_APIC_ENABLE | 0xFF);
    assert_eq!(
        lvt(m),
        LvtTimer::new(LOCAL_TIMER_VECTOR, TimerModeBits::OneShot, true)
    );
    assert_eq!(m.read32(Reg::InitialCount.offset()), 0);
    assert_eq!(
        Divide::from_bits(m.read32(Reg::DivideConfig.offset())),
        Divide::By16
    );
    assert_eq!(m.next_fire(), None, "left masked and stopped");
    assert_eq!(t.info().cpus, CpuMask::single(clockevents::CpuId::BOOT));
    assert_eq!(t.info().name, "lapic0");
}

#[test]
fn init_detects_a_missing_apic() {
    let nothing = sim::Absent::new();
    let e = LapicTimer::new(TimerConfig::new(
        0,
        Access::xapic(&nothing),
        Capabilities::default(),
        exact(),
    ));
    assert!(matches!(e, Err(Error::NotResponding { .. })), "{e:?}");
    let (_clock, m) = setup(LapicModelConfig::qemu(0));
    let bad_vector = TimerConfig {
        vector: 0x0E,
        ..TimerConfig::new(0, Access::xapic(m), caps(m), exact())
    };
    assert_eq!(
        LapicTimer::new(bad_vector).err(),
        Some(Error::BadVector(0x0E))
    );
    let bad_cpu = TimerConfig::new(64, Access::xapic(m), caps(m), exact());
    assert_eq!(LapicTimer::new(bad_cpu).err(), Some(Error::BadCpu(64)));
}

#[test]
fn features_and_rating_follow_arat() {
    let (_clock, m) = setup(LapicModelConfig::qemu(1));
    let t = LapicTimer::new(TimerConfig::new(1, Access::xapic(m), caps(m), exact())).unwrap();
    assert_eq!(t.info().rating, 100);
    assert!(t
        .info()
        .features
        .contains(Features::PERIODIC | Features::PERCPU | Features::C3STOP));
    let (_clock, m) = setup(LapicModelConfig::qemu(1).arat(true));
    let t = LapicTimer::new(TimerConfig::new(1, Access::xapic(m), caps(m), exact())).unwrap();
    assert_eq!(t.info().rating, 150);
    assert!(!t.info().features.contains(Features::C3STOP));
}

#[test]
fn what_the_build_offers() {
    let (_clock, m) = setup(LapicModelConfig::qemu(0));
    let t = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), exact())).unwrap();
    if cfg!(feature = "oneshot") {
        assert_eq!(t.mode(), TimerMode::Oneshot);
        assert!(t.info().features.contains(Features::ONESHOT));
        assert_eq!(t.info().frequency(), Some(Hertz::new(62_500_000)));
        assert_eq!(
            t.info().delta_range().unwrap(),
            (Cycles::new(0xF), Cycles::new(0x7FFF_FFFF))
        );
    } else {
        assert_eq!(t.mode(), TimerMode::Periodic);
        assert!(!t.info().features.contains(Features::ONESHOT));
        assert_eq!(t.set_state_oneshot(), Err(DeviceError::Unsupported));
    }
    // Without a TMICT rate only TSC-deadline could be offered; this CPU has
    // none.
    let e = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), None));
    assert_eq!(e.err(), Some(Error::NoMode));
}

#[test]
fn periodic_programs_lvtt_tdcr_and_tmict() {
    let (clock, m) = setup(LapicModelConfig::qemu(0));
    let t = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), exact())).unwrap();
    t.set_state_periodic(Nanos::from_millis(4)).unwrap();
    assert_eq!(
        lvt(m),
        LvtTimer::new(LOCAL_TIMER_VECTOR, TimerModeBits::Periodic, false)
    );
    assert_eq!(m.read32(Reg::InitialCount.offset()), 250_000);
    assert_eq!(m.next_fire(), Some(Ktime::from_millis(4)));
    clock.advance_to(Ktime::from_millis(4));
    assert!(m.fire());
    assert_eq!(m.next_fire(), Some(Ktime::from_millis(8)));
    assert_eq!(
        t.set_state_periodic(Nanos::from_nanos(200)),
        Err(DeviceError::Unsupported),
        "under the minimum of 0xF ticks"
    );
    t.eoi().unwrap();
    assert_eq!(m.eois(), 1);
}

#[test]
fn shutdown_masks_and_zeroes_the_count() {
    let (clock, m) = setup(LapicModelConfig::qemu(0));
    let t = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), exact())).unwrap();
    t.set_state_periodic(Nanos::from_millis(4)).unwrap();
    clock.advance_to(Ktime::from_millis(1));
    t.set_state_shutdown().unwrap();
    assert!(lvt(m).is_masked());
    assert_eq!(m.read32(Reg::InitialCount.offset()), 0);
    assert_eq!(m.read32(Reg::CurrentCount.offset()), 0);
    clock.advance_to(Ktime::from_secs(1));
    assert!(!m.fire());
    assert_eq!(m.interrupts(), 0);
}

#[cfg(feature = "oneshot")]
#[test]
fn oneshot_writes_tmict_and_stopped_disarms_it() {
    let (clock, m) = setup(LapicModelConfig::qemu(0));
    let t = LapicTimer::new(TimerConfig::new(0, Access::xapic(m), caps(m), exact())).unwrap();
    t.set_state_periodic(Nanos::from_millis(4)).unwrap();
    t.set_state_oneshot().unwrap();
    assert_eq!(m.next_fire(), None, "the periodic count is stopped");
    assert_eq!(
        lvt(m),
        LvtTimer::new(LOCAL_TIMER_VECTOR, TimerModeBits::OneShot, false)
    );
    t.program(In(Cycles::new(1_000))).unwrap();
    assert_eq!(m.next_fire(), Some(Ktime::from_nanos(16_000)));
    // Below min delta: programmed at min delta (late, never early).
    t.program(In(Cycles::new(1))).unwrap();
    assert_eq!(m.read32(Reg::InitialCount.offset()), 0xF);
    assert_eq!(
        t.program(In(Cycles::new(0x8000_0000))),
        Err(DeviceError::Unsupported)
    );
    t.set_state_oneshot_stopped().unwrap();
    assert_eq!(m.next_fire(), None);
    assert!(!lvt(m).is_masked(), "stays ready for the next event");
    t.program(In(Cycles::new(100))).unwrap();
    clock.advance_to(Ktime::from_nanos(1_600));
    assert!(m.fire());
}

#[test]
fn x2apic_access_drives_the_same_timer() {
    let (clock, m) = setup(LapicModelConfig::qemu(5).x2apic(true));
    let caps = caps(m);
    assert!(caps.x2apic);
    enable_x2apic(m).unwrap();
    let t = LapicTimer::new(TimerConfig::new(5, Access::x2apic(m), caps, exact())).unwrap();
    assert_eq!(m.rdmsr(Reg::Svr.msr()), Ok((SVR_APIC_ENABLE | 0xFF) as u64));
    t.set_state_periodic(Nanos::from_millis(1)).unwrap();
    assert_eq!(m.rdmsr(Reg::InitialCount.msr()), Ok(62_500));
    assert_eq!(m.next_fire(), Some(Ktime::from_millis(1)));
    clock.advance_to(Ktime::from_millis(1));
    assert!(m.fire());
    t.eoi().unwrap();
    assert_eq!(m.eois(), 1);
    t.set_state_shutdown().unwrap();
    assert_eq!(m.next_fire(), None);
    assert_eq!(t.info().name, "lapic5");
}

#[cfg(feature = "deadline")]
#[test]
fn deadline_programs_rdtsc_plus_delta_and_shutdown_zeroes_it() {
    use hw::TscRead;
    use lapic::regs::IA32_TSC_DEADLINE;
    use lapic::DeadlineClock;
    let (clock, m) = setup(LapicModelConfig::qemu(0).tsc_deadline(true));
    let deadline = DeadlineClock {
        msr: m,
        tsc: m,
        tsc_frequency: Hertz::new(2_400_000_000),
        error_ppm: 0,
    };
    let cfg = TimerConfig::new(0, Access::xapic(m), caps(m), exact()).with_deadline(deadline);
    let t = LapicTimer::new(cfg).unwrap();
    assert_eq!(t.mode(), TimerMode::TscDeadline);
    assert_eq!(t.info().name, "lapic-deadline0");
    assert_eq!(t.info().frequency(), Some(Hertz::new(2_400_000_000)));
    assert_eq!(t.info().delta_range().unwrap().0, Cycles::new(120));
    assert!(t
        .info()
        .features
        .contains(Features::ONESHOT | Features::PERIODIC));
    t.set_state_oneshot().unwrap();
    assert_eq!(lvt(m).mode(), TimerModeBits::TscDeadline);
    clock.advance_to(Ktime::from_millis(1));
    t.program(In(Cycles::new(2_400))).unwrap();
    assert_eq!(m.rdmsr(IA32_TSC_DEADLINE), Ok(m.rdtsc() + 2_400));
    assert_eq!(m.next_fire(), Some(Ktime::from_nanos(1_001_000)));
    t.set_state_oneshot_stopped().unwrap();
    assert_eq!(m.next_fire(), None);
    t.program(In(Cycles::new(2_400))).unwrap();
    t.set_state_shutdown().unwrap();
    assert!(lvt(m).is_masked());
    assert_eq!(m.rdmsr(IA32_TSC_DEADLINE), Ok(0), "zeroed, not only masked");
    // Periodic still works on a deadline-capable timer (TMICT rate known).
    t.set_state_periodic(Nanos::from_millis(4)).unwrap();
    assert_eq!(m.next_fire(), Some(Ktime::from_millis(5)));
    // A calibrated TSC rate is raised by its bound: never early.
    let cfg = TimerConfig::new(0, Access::xapic(m), caps(m), None).with_deadline(DeadlineClock {
        error_ppm: 100,
        ..deadline
    });
    let t = LapicTimer::new(cfg).unwrap();
    // ⌈2.4e9 · 10⁶ / (10⁶ − 100)⌉
    assert_eq!(t.info().frequency(), Some(Hertz::new(2_400_240_025)));
    assert!(
        !t.info().features.contains(Features::PERIODIC),
        "no TMICT rate"
    );
}
