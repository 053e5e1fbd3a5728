//! The per-CPU clock-event device.
//!
//! # Modes, and what each declares
//!
//! | mode | chosen when | features | programmed in | min / max delta |
//! |------|-------------|----------|---------------|-----------------|
//! | TSC-deadline | feature `deadline`, `CPUID.01H:ECX[24]`, a [`DeadlineClock`] | `ONESHOT` (+ `PERIODIC` if the TMICT rate is known) | TSC cycles | 120 / 2⁶³−1 cycles |
//! | one-shot | feature `oneshot`, TMICT rate known | `ONESHOT`, `PERIODIC` | timer ticks (bus/16) | 0xF / 0x7FFF_FFFF ticks |
//! | periodic | TMICT rate known | `PERIODIC` | — | — |
//!
//! All three add `PERCPU`, and `C3STOP` unless ARAT (`CPUID.06H:EAX[2]`) says
//! the timer runs in deep C-states; the rating is 100, or 150 with ARAT
//! (Linux `setup_APIC_timer()`: preferred over a per-CPU HPET then).
//!
//! # Register sequences (after Linux arch/x86/kernel/apic/apic.c)
//!
//! ```text
//!   new():        SVR := enable | spurious vector   (firmware may leave it disabled; qboot does)
//!                 LVTT := masked, one-shot, vector  (read back: is anything there?)
//!                 TMICT := 0, TDCR := ÷16
//!   periodic(p):  LVTT := periodic, TDCR := ÷16, TMICT := p·bus/16
//!   oneshot:      TMICT := 0, TDCR := ÷16, LVTT := one-shot        (TMICT modes)
//!                 LVTT := TSC-deadline; MFENCE                       (deadline mode, SDM §10.5.4.1)
//!   next(Δ):      TMICT := Δ                                         (one-shot)
//!                 MFENCE; IA32_TSC_DEADLINE := rdtsc + Δ              (deadline)
//!   stopped:      TMICT := 0  /  IA32_TSC_DEADLINE := 0
//!   shutdown:     LVTT |= masked, then TMICT := 0 / IA32_TSC_DEADLINE := 0
//!                 (AMD erratum 411, Intel "circa 2024": a masked LVTT can still fire)
//! ```
//!
//! # TSC-deadline units
//!
//! Linux programs the deadline device in TSC/8 units (`TSC_DIVISOR`) with
//! min 0xF and max `~0UL`, so that `clockevents_config()` gets a manageable
//! frequency. Our core's conversion handles 64-bit deltas itself (capped at
//! 600 s of range, like Linux's), so this driver declares the TSC rate as
//! is and deltas in plain TSC cycles: the deadline is `rdtsc + Δ` with no
//! multiply. The minimum stays Linux's, 0xF·8 = 120 TSC cycles (the core's
//! 1 µs floor is larger anyway); the maximum is 2⁶³−1 cycles, and the sum
//! saturates, so the deadline never wraps into the past.
//!
//! # Never early, never too late
//!
//! A count-down cannot race: TMICT starts counting when the write lands, and
//! a TSC deadline already passed fires at once (SDM). So
//! [`ClockEventDevice::program`] never returns `TooLate`. One-shot
//! deltas use the [error-bounded rate](crate::TimerFrequency::oneshot), raised by
//! the calibration's bound.

use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceInfo, Features, NextEvent, Programming,
    MAX_CPUS,
};
use clocksource::{Cycles, Hertz, Nanos};
use core::sync::atomic::{fence, Ordering};
use hw::{MsrAccess, MsrFault, TscRead};

use crate::access::Access;
use crate::caps::Capabilities;
use crate::error::Error;
use crate::freq::{raise_by_ppm, TimerFrequency, APIC_DIVISOR};
use crate::regs::{
    LvtTimer, Reg, TimerModeBits, IA32_TSC_DEADLINE, SVR_APIC_ENABLE, SVR_VECTOR_MASK,
};

/// Linux's `LOCAL_TIMER_VECTOR`.
pub const LOCAL_TIMER_VECTOR: u8 = 0xEC;
/// Linux's `SPURIOUS_APIC_VECTOR`.
pub const SPURIOUS_APIC_VECTOR: u8 = 0xFF;
/// Rating of a timer that stops in deep C-states (Linux).
pub const RATING: u16 = 100;
/// Rating with ARAT: above a per-CPU HPET's 110 (Linux).
pub const RATING_ARAT: u16 = 150;
/// Smallest TMICT delta, in timer ticks (Linux `lapic_init_clockevent`).
pub const MIN_DELTA_TICKS: Cycles = Cycles::new(0xF);
/// Largest TMICT delta, in timer ticks (Linux: 0x7FFF_FFFF, 34.36 s at
/// 62.5 MHz).
pub const MAX_DELTA_TICKS: Cycles = Cycles::new(0x7FFF_FFFF);
/// Smallest TSC-deadline delta: Linux's 0xF in TSC/8 units, in TSC cycles.
pub const DEADLINE_MIN_DELTA: Cycles = Cycles::new(0xF * 8);
/// Largest TSC-deadline delta, in TSC cycles (see the module docs).
pub const DEADLINE_MAX_DELTA: Cycles = Cycles::new(i64::MAX as u64);

/// What TSC-deadline mode needs besides the APIC: the deadline MSR, the TSC,
/// and the TSC's rate.
#[derive(Clone, Copy)]
pub struct DeadlineClock<'a> {
    /// Where `IA32_TSC_DEADLINE` (MSR 0x6E0) is written.
    pub msr: &'a dyn MsrAccess,
    /// `rdtsc`.
    pub tsc: &'a dyn TscRead,
    /// The TSC's rate (e.g. the TSC crate's result).
    pub tsc_frequency: Hertz,
    /// The rate's error bound in ppm (0 if CPUID states it). Deltas are
    /// converted with the rate raised by it, so events are never early.
    pub error_ppm: u32,
}

impl core::fmt::Debug for DeadlineClock<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeadlineClock")
            .field("tsc_frequency", &self.tsc_frequency)
            .field("error_ppm", &self.error_ppm)
            .finish()
    }
}

/// Everything one CPU's timer is built from.
#[derive(Clone, Copy, Debug)]
pub struct TimerConfig<'a> {
    /// The CPU this timer belongs to (and is created on).
    pub cpu: usize,
    /// How this CPU's APIC is reached.
    pub access: Access<'a>,
    /// What CPUID says.
    pub caps: Capabilities,
    /// The TMICT rate ([`timer_frequency`](crate::timer_frequency)); `None`
    /// leaves only TSC-deadline mode.
    pub frequency: Option<TimerFrequency>,
    /// What TSC-deadline mode needs; `None` rules it out.
    pub deadline: Option<DeadlineClock<'a>>,
    /// The timer's interrupt vector.
    pub vector: u8,
    /// The spurious-interrupt vector written to the SVR.
    pub spurious_vector: u8,
}

impl<'a> TimerConfig<'a> {
    /// A configuration with Linux's vectors and no TSC-deadline clock.
    pub fn new(
        cpu: usize,
        access: Access<'a>,
        caps: Capabilities,
        frequency: Option<TimerFrequency>,
    ) -> Self {
        TimerConfig {
            cpu,
            access,
            caps,
            frequency,
            deadline: None,
            vector: LOCAL_TIMER_VECTOR,
            spurious_vector: SPURIOUS_APIC_VECTOR,
        }
    }
    /// The same, with a TSC-deadline clock.
    pub fn with_deadline(mut self, deadline: DeadlineClock<'a>) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// The mode the device runs one-shot events in (or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerMode {
    /// One-shot events through `IA32_TSC_DEADLINE` (feature `deadline`).
    TscDeadline,
    /// One-shot events through TMICT count-down (feature `oneshot`).
    Oneshot,
    /// Periodic only.
    Periodic,
}

/// What a build and a CPU offer, for [`select_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Feature `oneshot` is compiled in.
    pub oneshot_built: bool,
    /// Feature `deadline` is compiled in.
    pub deadline_built: bool,
    /// `CPUID.01H:ECX[24]`, and a [`DeadlineClock`] was given.
    pub deadline_usable: bool,
    /// The TMICT rate is known.
    pub timer_rate_known: bool,
}

impl Offer {
    /// What this build offers, given the CPU's side.
    pub const fn this_build(deadline_usable: bool, timer_rate_known: bool) -> Self {
        Offer {
            oneshot_built: cfg!(feature = "oneshot"),
            deadline_built: cfg!(feature = "deadline"),
            deadline_usable,
            timer_rate_known,
        }
    }
}

/// Deadline > one-shot > periodic, by what is compiled in and what the CPU
/// offers.
pub const fn select_mode(o: Offer) -> Option<TimerMode> {
    if o.deadline_built && o.deadline_usable {
        Some(TimerMode::TscDeadline)
    } else if o.oneshot_built && o.timer_rate_known {
        Some(TimerMode::Oneshot)
    } else if o.timer_rate_known {
        Some(TimerMode::Periodic)
    } else {
        None
    }
}

macro_rules! per_cpu_names {
    ($prefix:literal: $($n:literal)*) => { [$(concat!($prefix, $n)),*] };
}

/// `lapic0` … `lapic63`: names must be unique among registered devices.
const NAMES: [&str; MAX_CPUS] = per_cpu_names!("lapic":
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63);
/// `lapic-deadline0` … (Linux names the device "lapic-deadline").
const DEADLINE_NAMES: [&str; MAX_CPUS] = per_cpu_names!("lapic-deadline":
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63);

/// One CPU's local APIC timer as a [`ClockEventDevice`]. See the module
/// docs for modes and register sequences.
///
/// Stateless beyond its configuration: every operation is a short sequence
/// of register writes, so it is `Sync` without locks and safe to call from
/// the timer interrupt.
pub struct LapicTimer<'a> {
    cpu: usize,
    access: Access<'a>,
    mode: TimerMode,
    frequency: Option<TimerFrequency>,
    deadline: Option<DeadlineClock<'a>>,
    /// The TSC rate deltas are converted with, in deadline mode.
    deadline_rate: Hertz,
    features: Features,
    rating: u16,
    vector: u8,
}

impl<'a> LapicTimer<'a> {
    /// Sets up this CPU's APIC for the timer and picks the mode (see the
    /// module docs). Must run on `config.cpu`. The timer is left masked and
    /// stopped (the tick layer starts it).
    pub fn new(config: TimerConfig<'a>) -> Result<Self, Error> {
        let TimerConfig {
            cpu,
            access,
            caps,
            frequency,
            deadline,
            vector,
            spurious_vector,
        } = config;
        if cpu >= MAX_CPUS {
            return Err(Error::BadCpu(cpu));
        }
        if vector < 0x10 {
            return Err(Error::BadVector(vector));
        }
        let regs = access.regs();
        // Software-enable the APIC: firmware leaves the SVR in either state.
        let svr = regs.read(Reg::Svr)?;
        regs.write(
            Reg::Svr,
            (svr & !SVR_VECTOR_MASK) | SVR_APIC_ENABLE | spurious_vector as u32,
        )?;
        // Masked and stopped; read back to see that an APIC answers.
        let lvt = LvtTimer::new(vector, TimerModeBits::OneShot, true);
        regs.write(Reg::LvtTimer, lvt.bits())?;
        let read = regs.read(Reg::LvtTimer)? & LvtTimer::WRITABLE;
        if read != lvt.bits() {
            log::warn!(
                "lapic: cpu{cpu}: LVTT wrote {:#x}, read {read:#x}: no APIC",
                lvt.bits()
            );
            return Err(Error::NotResponding {
                wrote: lvt.bits(),
                read,
            });
        }
        regs.write(Reg::InitialCount, 0)?;
        regs.write(Reg::DivideConfig, APIC_DIVISOR.bits())?;

        let deadline = deadline.filter(|d| caps.tsc_deadline && d.tsc_frequency.get() > 0);
        let offer = Offer::this_build(deadline.is_some(), frequency.is_some());
        let Some(mode) = select_mode(offer) else {
            log::warn!("lapic: cpu{cpu}: no usable timer mode ({offer:?})");
            return Err(Error::NoMode);
        };
        if mode == TimerMode::TscDeadline {
            if let Some(d) = deadline {
                d.msr.wrmsr(IA32_TSC_DEADLINE, 0)?;
            }
        }
        let deadline_rate = deadline.map_or(Hertz::new(0), |d| {
            raise_by_ppm(d.tsc_frequency, d.error_ppm)
        });
        let mut features = Features::PERCPU;
        if frequency.is_some() {
            features |= Features::PERIODIC;
        }
        if mode != TimerMode::Periodic {
            features |= Features::ONESHOT;
        }
        if !caps.arat {
            features |= Features::C3STOP;
        }
        let rating = if caps.arat { RATING_ARAT } else { RATING };
        let t = LapicTimer {
            cpu,
            access,
            mode,
            frequency,
            deadline: if mode == TimerMode::TscDeadline {
                deadline
            } else {
                None
            },
            deadline_rate,
            features,
            rating,
            vector,
        };
        log::info!(
            "lapic: cpu{cpu}: {} over {:?}, {mode:?} at {}, rating {rating}{}",
            t.info().name,
            access,
            t.info().frequency().unwrap_or(Hertz::new(0)),
            if caps.arat {
                ""
            } else {
                ", stops in deep C-states"
            }
        );
        Ok(t)
    }

    /// The mode one-shot events use (or `Periodic`).
    pub fn mode(&self) -> TimerMode {
        self.mode
    }
    /// The CPU this timer belongs to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
    /// The TMICT rate, if known.
    pub fn timer_frequency(&self) -> Option<TimerFrequency> {
        self.frequency
    }
    /// Signals end of interrupt (EOI register := 0): the timer interrupt
    /// handler calls it after the tick layer's handler.
    pub fn eoi(&self) -> Result<(), Error> {
        self.access.regs().write(Reg::Eoi, 0).map_err(Error::Msr)
    }

    fn write(&self, reg: Reg, value: u32) -> Result<(), DeviceError> {
        self.access
            .regs()
            .write(reg, value)
            .map_err(|e| self.fault(e))
    }

    fn fault(&self, e: MsrFault) -> DeviceError {
        log::error!("lapic: cpu{}: MSR {:#x} faulted", self.cpu, e.msr);
        DeviceError::Hardware
    }

    fn write_deadline(&self, value: u64) -> Result<(), DeviceError> {
        match self.deadline {
            Some(d) => d
                .msr
                .wrmsr(IA32_TSC_DEADLINE, value)
                .map_err(|e| self.fault(e)),
            None => Err(DeviceError::Unsupported),
        }
    }
}

impl LapicTimer<'_> {
    /// The programmable delta range of the mode in use.
    fn delta_range(&self) -> (Cycles, Cycles) {
        if self.mode == TimerMode::TscDeadline {
            (DEADLINE_MIN_DELTA, DEADLINE_MAX_DELTA)
        } else {
            (MIN_DELTA_TICKS, MAX_DELTA_TICKS)
        }
    }
}

impl ClockEventDevice for LapicTimer<'_> {
    fn info(&self) -> DeviceInfo {
        let deadline = self.mode == TimerMode::TscDeadline;
        let names = if deadline { &DEADLINE_NAMES } else { &NAMES };
        let frequency = if deadline {
            self.deadline_rate
        } else {
            self.frequency.map_or(Hertz::new(0), |f| f.oneshot)
        };
        let (min_delta, max_delta) = self.delta_range();
        // Both the count-down and the TSC-deadline timer take a delta: the
        // deadline timer's in TSC cycles from now (the driver adds it to a
        // TSC read), so neither is a `Programming::Deadline` device.
        let programming = Programming::Cycles {
            frequency,
            min_delta,
            max_delta,
        };
        let name = names.get(self.cpu).copied().unwrap_or("lapic");
        // An index no CpuId can hold names no CPU: the empty set, which
        // registration refuses (`PoolError::NoCpus`).
        let cpus = CpuId::from_index(self.cpu).map_or(CpuMask::EMPTY, CpuMask::single);
        DeviceInfo::new(name, programming, cpus)
            .with_features(self.features)
            .with_rating(self.rating)
    }

    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        let lvt = self
            .access
            .regs()
            .read(Reg::LvtTimer)
            .map_err(|e| self.fault(e))?;
        let lvt = LvtTimer::from_bits(lvt).with_vector(self.vector).masked();
        self.write(Reg::LvtTimer, lvt.bits())?;
        // Masking should be enough, but AMD erratum 411 and Intel parts
        // "circa 2024" fire anyway (Linux `lapic_timer_shutdown`): zero the
        // count too.
        if lvt.mode() == TimerModeBits::TscDeadline {
            self.write_deadline(0)
        } else {
            self.write(Reg::InitialCount, 0)
        }
    }

    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        let Some(f) = self.frequency else {
            return Err(DeviceError::Unsupported);
        };
        // A period under the one-shot minimum would be an interrupt storm.
        let ticks = f
            .period_ticks(period)
            .filter(|t| *t as u64 >= MIN_DELTA_TICKS.get());
        let Some(ticks) = ticks else {
            log::warn!(
                "lapic: cpu{}: period {period} out of the timer's range",
                self.cpu
            );
            return Err(DeviceError::Unsupported);
        };
        // Leaving TSC-deadline mode disarms the deadline (SDM §10.5.4.1).
        let lvt = LvtTimer::new(self.vector, TimerModeBits::Periodic, false);
        self.write(Reg::LvtTimer, lvt.bits())?;
        self.write(Reg::DivideConfig, f.divide.bits())?;
        self.write(Reg::InitialCount, ticks)
    }

    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        match self.mode {
            TimerMode::TscDeadline => {
                let lvt = LvtTimer::new(self.vector, TimerModeBits::TscDeadline, false);
                self.write(Reg::LvtTimer, lvt.bits())?;
                // SDM §10.5.4.1 / Linux `__setup_APIC_LVTT`: in xAPIC mode the
                // LVTT write and a later IA32_TSC_DEADLINE write are not
                // ordered; MFENCE orders them.
                fence(Ordering::SeqCst);
                Ok(())
            }
            TimerMode::Oneshot => {
                // Stop a count left from periodic mode before switching, so
                // no event is pending in the new state.
                self.write(Reg::InitialCount, 0)?;
                self.write(Reg::DivideConfig, APIC_DIVISOR.bits())?;
                let lvt = LvtTimer::new(self.vector, TimerModeBits::OneShot, false);
                self.write(Reg::LvtTimer, lvt.bits())
            }
            TimerMode::Periodic => Err(DeviceError::Unsupported),
        }
    }

    fn set_state_oneshot_stopped(&self) -> Result<(), DeviceError> {
        // The core resumes from here with program() only, so the LVTT
        // stays unmasked in its mode: only the pending event is disarmed.
        match self.mode {
            TimerMode::TscDeadline => self.write_deadline(0),
            TimerMode::Oneshot => self.write(Reg::InitialCount, 0),
            TimerMode::Periodic => Err(DeviceError::Unsupported),
        }
    }

    /// A delta only ([`Programming::Cycles`]), for both timer modes.
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        let NextEvent::In(delta) = next else {
            return Err(DeviceError::Unsupported);
        };
        let (min, max) = self.delta_range();
        let delta = delta.max(min);
        if delta > max {
            log::warn!("lapic: cpu{}: delta {delta} beyond max {max}", self.cpu);
            return Err(DeviceError::Unsupported);
        }
        match self.mode {
            TimerMode::TscDeadline => {
                let Some(d) = self.deadline else {
                    return Err(DeviceError::Unsupported);
                };
                // Linux `weak_wrmsr_fence()`: IA32_TSC_DEADLINE writes are not
                // serialising; order earlier stores before it.
                fence(Ordering::SeqCst);
                let at = d.tsc.rdtsc().saturating_add(delta.get());
                self.write_deadline(at)
            }
            // In range: delta ≤ 0x7FFF_FFFF.
            TimerMode::Oneshot => self.write(Reg::InitialCount, delta.get() as u32),
            TimerMode::Periodic => Err(DeviceError::Unsupported),
        }
    }
}

impl core::fmt::Debug for LapicTimer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LapicTimer")
            .field("cpu", &self.cpu)
            .field("access", &self.access)
            .field("mode", &self.mode)
            .field("features", &self.features)
            .field("rating", &self.rating)
            .field("frequency", &self.frequency)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_beats_oneshot_beats_periodic() {
        let all = Offer {
            oneshot_built: true,
            deadline_built: true,
            deadline_usable: true,
            timer_rate_known: true,
        };
        assert_eq!(select_mode(all), Some(TimerMode::TscDeadline));
        let no_cpu_deadline = Offer {
            deadline_usable: false,
            ..all
        };
        assert_eq!(select_mode(no_cpu_deadline), Some(TimerMode::Oneshot));
        let not_built = Offer {
            deadline_built: false,
            ..all
        };
        assert_eq!(select_mode(not_built), Some(TimerMode::Oneshot));
        let periodic_build = Offer {
            oneshot_built: false,
            deadline_built: false,
            ..all
        };
        assert_eq!(select_mode(periodic_build), Some(TimerMode::Periodic));
        // Deadline works without a TMICT rate (no calibration needed).
        let uncalibrated = Offer {
            timer_rate_known: false,
            ..all
        };
        assert_eq!(select_mode(uncalibrated), Some(TimerMode::TscDeadline));
        assert_eq!(
            select_mode(Offer {
                deadline_built: false,
                ..uncalibrated
            }),
            None
        );
    }

    #[test]
    fn per_cpu_names_are_unique() {
        assert_eq!(NAMES[0], "lapic0");
        assert_eq!(NAMES[63], "lapic63");
        assert_eq!(DEADLINE_NAMES[7], "lapic-deadline7");
        for (i, a) in NAMES.iter().enumerate() {
            assert!(!NAMES[..i].contains(a), "{a} twice");
            assert!(!DEADLINE_NAMES.contains(a));
        }
    }
}
