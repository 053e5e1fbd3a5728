//! How fast the timer counts: stated by CPUID, or calibrated.
//!
//! The timer decrements once per `divisor` cycles of its input clock (the
//! "bus clock": the core crystal on recent Intel parts, 1 GHz in QEMU and
//! KVM). The driver always divides by 16 (Linux `APIC_DIVISOR`), so the rate
//! it programs with is `bus / 16`.
//!
//! # Where the rate comes from, in order
//!
//! 1. CPUID.4000_0010H:EBX, the hypervisor's statement of its APIC bus
//!    ([`FrequencySource::HypervisorLeaf`]);
//! 2. the core crystal of CPUID leaf 0x15 ([`FrequencySource::Cpuid15`]) —
//!    **only on bare metal**: under a hypervisor 0x15 describes the host's
//!    crystal, while the virtual APIC runs at whatever the hypervisor
//!    emulates (KVM: 1 GHz). Trusting it there makes the timer 40× off
//!    (Theseus#679's "system looks hung" class);
//! 3. calibration against a reference [`ClockSource`] the caller passes (PIT
//!    channel 2, HPET, a TSC of known rate — this crate depends on none):
//!
//! ```text
//!   LVTT := masked, one-shot     TDCR := ÷16     TMICT := 0xFFFF_FFFF
//!
//!   TMCCT   0xFFFF_FFFF ╲
//!                        ╲   counts down at bus/16; read as 0xFFFF_FFFF − TMCCT,
//!                         ╲  an up-counter, by clocksource::calibrate():
//!                          ╲ bracketed reads over ≥ 10 ms of reference time
//!   reference  r0a·t0·r0b ··················· r1a·t1·r1b
//!
//!   TMICT := 0 (stopped)
//! ```
//!
//! If the 10 ms attempt's bound exceeds [`RETRY_ABOVE_PPM`] (slow reads:
//! an x2APIC `rdmsr` of TMCCT or a reference read that traps to an
//! emulating hypervisor widens every bracket), or the attempt timed out,
//! it is repeated over [`CALIBRATION_RETRY_WINDOW`] (50 ms, Linux's
//! `CAL2_MS` for the TSC), and the result with the smaller bound is kept.
//! The bracket widths stay the same while the window grows five-fold, so
//! the bound shrinks about five-fold.
//!
//! A reference that does not move within [`STOPPED_PROBE_READS`] reads is
//! refused at once ([`CalibrationError::ReferenceStopped`]); calibration
//! never waits on time, only on a bounded number of reads.
//!
//! # Error bound, and why one-shot deltas use a raised rate
//!
//! The reported bound (`error_ppm` of [`FrequencySource::Calibrated`]) is
//! `calibrate`'s — half of each bracket plus one reference cycle at each
//! end, over the window, plus one timer tick over the ticks counted — plus
//! the rounding of the rate to whole hertz (½ Hz: 1 ppm at 62.5 MHz).
//!
//! A rate measured too low gives too few ticks for a delay, so every
//! one-shot event comes early by that fraction — 340 ppm is 1.26 ms early
//! on a 3.7 s sleep, which breaks the clock-event contract ("never early";
//! the simulator test `calibrated_oneshot_is_late_by_at_most_twice_its_bound_never_early`
//! catches it). So one-shot deltas are converted with
//! [`TimerFrequency::oneshot`] = measured / (1 − bound), rounded up
//! ([`raise_by_ppm`]), which is not below the true rate while the bound
//! holds: events are late by at most about twice the bound instead. The
//! periodic tick uses the best estimate ([`TimerFrequency::bus`]), since a
//! period is neither early nor late on average.

use clocksource::{calibrate, Calibration, CalibrationError, ClockSource, Cycles, Hertz, Nanos};

use crate::access::{Access, Registers};
use crate::caps::Capabilities;
use crate::error::Error;
use crate::regs::{Divide, LvtTimer, Reg, TimerModeBits};
use crate::LOCAL_TIMER_VECTOR;

/// The divider the driver programs (Linux `APIC_DIVISOR`).
pub const APIC_DIVISOR: Divide = Divide::By16;
/// Reference time a calibration measures over (Linux's quick PIT
/// calibration also uses 10 ms; its LAPIC loop uses 100 ms of jiffies).
pub const CALIBRATION_WINDOW: Nanos = Nanos::from_millis(10);
/// The retry's window (module docs; Linux's `CAL2_MS`).
pub const CALIBRATION_RETRY_WINDOW: Nanos = Nanos::from_millis(50);
/// A first attempt whose bound exceeds this is retried over
/// [`CALIBRATION_RETRY_WINDOW`] (Linux's quick-calibration threshold,
/// `>> 11` ≈ 500 ppm, as the TSC crate uses).
pub const RETRY_ABOVE_PPM: u32 = 500;
/// Reference reads a calibration may make: enough for a reference read
/// as fast as ~10 ns to span the window; a reference that moves but too
/// slowly gives [`CalibrationError::Timeout`] after that many.
pub const CALIBRATION_MAX_READS: u64 = 1 << 20;
/// Reads after which a reference that has not changed is declared stopped
/// (a PIT changes every ~0.84 µs, an HPET every read; 4096 reads of a
/// 1 µs port take 4 ms).
pub const STOPPED_PROBE_READS: u32 = 4096;
/// The slowest bus clock accepted: Linux refuses a LAPIC timer period below
/// 10⁶/HZ bus clocks per jiffy, i.e. a bus below 1 MHz.
pub const MIN_BUS_RATE: Hertz = Hertz::from_mhz(1);
/// The largest calibration error accepted (1 %, Linux's PM-timer
/// cross-check window).
pub const MAX_CALIBRATION_ERROR_PPM: u32 = 10_000;

/// How the timer's rate was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrequencySource {
    /// The core crystal from CPUID leaf 0x15 (bare metal only).
    Cpuid15,
    /// CPUID.4000_0010H:EBX, the hypervisor's APIC bus rate.
    HypervisorLeaf,
    /// Measured against a reference clock source.
    Calibrated {
        /// The reference's name.
        against: &'static str,
        /// Upper bound of the rate's error, in ppm (see the module docs).
        error_ppm: u32,
    },
}

impl FrequencySource {
    /// The error bound in ppm (0 for a rate CPUID states).
    pub const fn error_ppm(self) -> u32 {
        match self {
            FrequencySource::Calibrated { error_ppm, .. } => error_ppm,
            _ => 0,
        }
    }
}

/// The timer's rate, and how it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerFrequency {
    /// The timer's input clock, before the divider (best estimate).
    pub bus: Hertz,
    /// The divider the rate applies to.
    pub divide: Divide,
    /// `bus / divide`: the best estimate of the count rate (rounded down).
    pub timer: Hertz,
    /// The rate one-shot deltas are converted with: `timer` raised by the
    /// error bound, so that an event is never early (module docs).
    pub oneshot: Hertz,
    /// Where the rate came from.
    pub source: FrequencySource,
    /// The raw measurement, when calibrated.
    pub calibration: Option<Calibration>,
}

impl TimerFrequency {
    /// A rate stated exactly (by CPUID): the bus clock `bus`, divided by
    /// [`APIC_DIVISOR`].
    pub const fn from_bus(bus: Hertz, source: FrequencySource) -> Self {
        let timer = Hertz::new(bus.get() / APIC_DIVISOR.divisor() as u64);
        TimerFrequency {
            bus,
            divide: APIC_DIVISOR,
            timer,
            oneshot: timer,
            source,
            calibration: None,
        }
    }

    /// The rate's error bound in ppm.
    pub const fn error_ppm(&self) -> u32 {
        self.source.error_ppm()
    }

    /// The initial count for a periodic interrupt every `period`, rounded
    /// to nearest: `period · bus / (divisor · 10⁹)`. `None` if it is not in
    /// `1..=0xFFFF_FFFF`.
    pub fn period_ticks(&self, period: Nanos) -> Option<u32> {
        let den = self.divide.divisor() as u128 * clocksource::NSEC_PER_SEC as u128;
        let num = period.as_nanos() as u128 * self.bus.get() as u128;
        let ticks = (num + den / 2) / den;
        if ticks == 0 || ticks > u32::MAX as u128 {
            return None;
        }
        Some(ticks as u32)
    }
}

/// The timer's rate: from CPUID if a leaf states it (see the module docs
/// for the order), else calibrated against `reference`.
///
/// Leaves the timer masked and stopped. Call once, on the boot CPU (the
/// APIC bus is common to all CPUs, as Linux assumes), and hand the result
/// to every CPU's [`LapicTimer`](crate::LapicTimer).
pub fn timer_frequency(
    access: Access<'_>,
    caps: &Capabilities,
    reference: Option<&dyn ClockSource>,
) -> Result<TimerFrequency, Error> {
    if let Some(bus) = caps.hypervisor_bus {
        return checked(TimerFrequency::from_bus(
            bus,
            FrequencySource::HypervisorLeaf,
        ));
    }
    match caps.crystal {
        Some(bus) if !caps.hypervisor => {
            return checked(TimerFrequency::from_bus(bus, FrequencySource::Cpuid15));
        }
        Some(bus) => log::info!(
            "lapic: ignoring CPUID 0x15 crystal {bus} under a hypervisor (it is the host's)"
        ),
        None => {}
    }
    match reference {
        Some(r) => calibrate_timer(access, r),
        None => {
            log::warn!("lapic: timer rate unknown and no reference to calibrate against");
            Err(Error::NoFrequency)
        }
    }
}

/// `⌈rate · 10⁶ / (10⁶ − ppm)⌉`: the least rate not below the true one when
/// `rate` is within `ppm` of it (a device programmed with it is never
/// early). Saturates; `ppm ≥ 10⁶` gives `u64::MAX`.
pub const fn raise_by_ppm(rate: Hertz, ppm: u32) -> Hertz {
    if ppm >= 1_000_000 {
        return Hertz::new(u64::MAX);
    }
    let num = rate.get() as u128 * 1_000_000;
    let den = 1_000_000 - ppm as u128;
    let r = num.div_ceil(den);
    Hertz::new(if r > u64::MAX as u128 {
        u64::MAX
    } else {
        r as u64
    })
}

fn checked(f: TimerFrequency) -> Result<TimerFrequency, Error> {
    if f.bus < MIN_BUS_RATE {
        log::warn!("lapic: APIC bus {} too slow, timer not offered", f.bus);
        return Err(Error::RateTooLow(f.bus));
    }
    log::info!(
        "lapic: timer {} (bus {} ÷{}) from {:?}",
        f.timer,
        f.bus,
        f.divide.divisor(),
        f.source
    );
    Ok(f)
}

/// Measures the timer's rate against `reference` over
/// [`CALIBRATION_WINDOW`], retried over [`CALIBRATION_RETRY_WINDOW`] when
/// imprecise (see the module docs). The timer is left masked
/// and stopped, whatever the outcome.
pub fn calibrate_timer(
    access: Access<'_>,
    reference: &dyn ClockSource,
) -> Result<TimerFrequency, Error> {
    let regs = access.regs();
    let lvt = LvtTimer::new(LOCAL_TIMER_VECTOR, TimerModeBits::OneShot, true);
    regs.write(Reg::LvtTimer, lvt.bits())?;
    regs.write(Reg::DivideConfig, APIC_DIVISOR.bits())?;
    regs.write(Reg::InitialCount, u32::MAX)?;
    let first = measure(regs, reference, CALIBRATION_WINDOW);
    let retry_why = match &first {
        Ok(c) if c.error_ppm > RETRY_ABOVE_PPM => Some(false),
        Err(Error::Calibration(CalibrationError::Timeout)) => Some(true),
        _ => None,
    };
    let measured = match retry_why {
        None => first,
        Some(timed_out) => {
            if timed_out {
                log::info!(
                    "lapic: {} calibration against {} timed out; retrying over {}",
                    CALIBRATION_WINDOW,
                    reference.name(),
                    CALIBRATION_RETRY_WINDOW
                );
            } else {
                log::info!(
                    "lapic: {} calibration against {}: bound > {RETRY_ABOVE_PPM} ppm; retrying over {}",
                    CALIBRATION_WINDOW,
                    reference.name(),
                    CALIBRATION_RETRY_WINDOW
                );
            }
            // Restart the count: the first attempt used some of it.
            regs.write(Reg::InitialCount, u32::MAX)?;
            let retry = measure(regs, reference, CALIBRATION_RETRY_WINDOW);
            match (first, retry) {
                (Ok(a), Ok(b)) => Ok(if b.error_ppm <= a.error_ppm { b } else { a }),
                (Err(_), Ok(b)) => Ok(b),
                (Ok(a), Err(e)) => {
                    log::warn!("lapic: calibration retry failed ({e}); keeping the first result");
                    Ok(a)
                }
                (Err(_), Err(e)) => Err(e),
            }
        }
    };
    let stopped = regs.write(Reg::InitialCount, 0);
    let cal = match measured {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "lapic: calibration against {} failed: {e}; timer not offered",
                reference.name()
            );
            return Err(e);
        }
    };
    stopped?;
    // calibrate() bounds the brackets, the reference's resolution and the
    // target's one-tick quantisation; add the rounding to whole hertz.
    let rounding = 500_000u64.div_ceil(cal.frequency.get().max(1));
    let error_ppm = (cal.error_ppm as u64 + rounding).min(u32::MAX as u64) as u32;
    if error_ppm > MAX_CALIBRATION_ERROR_PPM {
        log::warn!(
            "lapic: calibration against {} too imprecise (±{error_ppm} ppm)",
            reference.name()
        );
        return Err(Error::CalibrationImprecise { error_ppm });
    }
    let timer = cal.frequency;
    let bus = Hertz::new(timer.get().saturating_mul(APIC_DIVISOR.divisor() as u64));
    let oneshot = raise_by_ppm(timer, error_ppm);
    let f = TimerFrequency {
        bus,
        divide: APIC_DIVISOR,
        timer,
        oneshot,
        source: FrequencySource::Calibrated {
            against: reference.name(),
            error_ppm,
        },
        calibration: Some(cal),
    };
    log::info!(
        "lapic: calibrated against {} over {} ({} reads): timer {timer} ±{error_ppm} ppm, one-shot at {oneshot}",
        reference.name(),
        cal.window,
        cal.reads
    );
    checked(f)
}

/// The bracketed measurement proper, with TMCCT as the target.
fn measure(
    regs: &dyn Registers,
    reference: &dyn ClockSource,
    window: Nanos,
) -> Result<Calibration, Error> {
    let first = reference.read();
    if !(0..STOPPED_PROBE_READS).any(|_| reference.read() != first) {
        return Err(Error::Calibration(CalibrationError::ReferenceStopped));
    }
    let mut fault = None;
    let result = calibrate(
        reference,
        || match regs.read(Reg::CurrentCount) {
            // The count runs down from 0xFFFF_FFFF: turn it into an up-count.
            Ok(current) => Cycles::new((u32::MAX - current) as u64),
            Err(e) => {
                fault = Some(e);
                Cycles::ZERO
            }
        },
        Cycles::new(u32::MAX as u64),
        window,
        CALIBRATION_MAX_READS,
    );
    if let Some(e) = fault {
        return Err(Error::Msr(e));
    }
    result.map_err(Error::Calibration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_bus_gives_62_5_mhz_and_exact_periods() {
        let f = TimerFrequency::from_bus(Hertz::from_mhz(1_000), FrequencySource::HypervisorLeaf);
        assert_eq!(f.timer, Hertz::new(62_500_000));
        assert_eq!(f.oneshot, f.timer);
        // HZ=250: 4 ms = 250 000 ticks exactly.
        assert_eq!(f.period_ticks(Nanos::from_millis(4)), Some(250_000));
        assert_eq!(f.period_ticks(Nanos::from_nanos(7)), None);
        assert_eq!(f.period_ticks(Nanos::from_secs(100)), None);
    }

    #[test]
    fn a_24_mhz_crystal_gives_1_5_mhz() {
        let f = TimerFrequency::from_bus(Hertz::new(24_000_000), FrequencySource::Cpuid15);
        assert_eq!(f.timer, Hertz::new(1_500_000));
        assert_eq!(f.period_ticks(Nanos::from_millis(1)), Some(1_500));
    }

    /// Whatever the true rate and a measurement within `ppm` of it (below
    /// it, the dangerous side), the raised rate is not below the truth.
    #[test]
    fn raised_rate_is_never_below_the_truth() {
        fn prop(truth: u32, ppm: u16, under: u16) -> quickcheck::TestResult {
            let (truth, ppm) = (truth as u64 + 1, ppm as u64 % 10_001);
            // The lowest measurement the bound allows: ⌈truth · (1 − ppm)⌉.
            let lowest = (truth as u128 * (1_000_000 - ppm as u128)).div_ceil(1_000_000) as u64;
            let measured = lowest + (under as u64 % (truth - lowest + 1));
            let raised = raise_by_ppm(Hertz::new(measured), ppm as u32);
            quickcheck::TestResult::from_bool(raised.get() >= truth)
        }
        quickcheck::QuickCheck::new()
            .tests(5_000)
            .quickcheck(prop as fn(u32, u16, u16) -> quickcheck::TestResult);
        assert_eq!(
            raise_by_ppm(Hertz::new(62_500_000), 0),
            Hertz::new(62_500_000)
        );
        assert_eq!(raise_by_ppm(Hertz::new(1), 1_000_000), Hertz::new(u64::MAX));
    }

    #[test]
    fn no_leaf_and_no_reference_is_an_error() {
        struct Dead;
        impl hw::Mmio for Dead {
            fn read32(&self, _: usize) -> u32 {
                u32::MAX
            }
            fn write32(&self, _: usize, _: u32) {}
            fn read64(&self, _: usize) -> u64 {
                u64::MAX
            }
            fn write64(&self, _: usize, _: u64) {}
        }
        let caps = Capabilities {
            crystal: Some(Hertz::new(24_000_000)),
            hypervisor: true,
            ..Capabilities::default()
        };
        assert_eq!(
            timer_frequency(Access::xapic(&Dead), &caps, None),
            Err(Error::NoFrequency)
        );
        let slow = Capabilities {
            hypervisor_bus: Some(Hertz::from_khz(500)),
            ..Capabilities::default()
        };
        assert_eq!(
            timer_frequency(Access::xapic(&Dead), &slow, None),
            Err(Error::RateTooLow(Hertz::from_khz(500)))
        );
    }
}
