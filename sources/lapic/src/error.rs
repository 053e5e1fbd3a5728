//! Why the LAPIC timer is not offered.

use clocksource::{CalibrationError, Hertz};
use hw::MsrFault;

/// Why the timer's frequency could not be established or the timer not set
/// up. Every case leaves the timer masked and stopped; the caller registers
/// another tick device (or the LAPIC as a broadcast dummy) instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An x2APIC or `IA32_TSC_DEADLINE` MSR access faulted.
    Msr(MsrFault),
    /// The LVT Timer Register did not read back what was written: nothing
    /// (or something else) answers at this APIC.
    NotResponding {
        /// The value written.
        wrote: u32,
        /// The value read back.
        read: u32,
    },
    /// Calibration against the reference failed (a stopped reference, a
    /// timer that does not count, ...): the timer is not offered.
    Calibration(CalibrationError),
    /// Calibration succeeded but its error bound exceeds
    /// [`MAX_CALIBRATION_ERROR_PPM`](crate::MAX_CALIBRATION_ERROR_PPM).
    CalibrationImprecise {
        /// The bound reached, in ppm.
        error_ppm: u32,
    },
    /// The APIC bus clock is below [`MIN_BUS_RATE`](crate::MIN_BUS_RATE)
    /// (Linux: "APIC frequency too slow, disabling apic timer").
    RateTooLow(Hertz),
    /// No CPUID leaf states the rate and no reference was given to
    /// calibrate against.
    NoFrequency,
    /// Nothing this build and this CPU can offer: the TMICT modes need a
    /// known timer rate, TSC-deadline needs feature `deadline`, CPUID
    /// support and a TSC of known rate.
    NoMode,
    /// The CPU index is beyond [`clockevents::MAX_CPUS`].
    BadCpu(usize),
    /// Vectors 0–15 are reserved (SDM §10.5.2: an LVT with one raises an
    /// illegal-vector error instead of an interrupt).
    BadVector(u8),
}

impl From<MsrFault> for Error {
    fn from(e: MsrFault) -> Self {
        Error::Msr(e)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Msr(m) => write!(f, "MSR {:#x} faulted", m.msr),
            Error::NotResponding { wrote, read } => {
                write!(f, "LVTT wrote {wrote:#x}, read back {read:#x}")
            }
            Error::Calibration(e) => write!(f, "calibration failed: {e:?}"),
            Error::CalibrationImprecise { error_ppm } => {
                write!(f, "calibration too imprecise: ±{error_ppm} ppm")
            }
            Error::RateTooLow(h) => write!(f, "APIC bus at {h} is too slow"),
            Error::NoFrequency => f.write_str("timer rate unknown and no calibration reference"),
            Error::NoMode => f.write_str("no timer mode available"),
            Error::BadCpu(c) => write!(f, "cpu {c} out of range"),
            Error::BadVector(v) => write!(f, "vector {v:#x} is reserved"),
        }
    }
}
