//! The TSC as a clock source: probe, rating and flags.

use core::fmt;

use clocksource::{
    calibrate::ppm_off, Calibration, CalibrationError, ClockSource, ClockSourceFlags, Cycles,
    Hertz, InlineRead,
};
use hw::TscRead;
use raw_cpuid::{CpuId, CpuIdReader};

use crate::calibration::{calibrate_tsc, check_liveness, RETRY_ABOVE_PPM};
use crate::cpuid::{in_range, FrequencySource, TscCpuid, TscFrequency};

/// The TSC's rating, as Linux's `clocksource_tsc` (tsc-early is 299, the
/// HPET 250, the ACPI PM timer 200).
pub const TSC_RATING: u16 = 300;

/// The name the TSC registers under (`clocksource=tsc`).
pub const TSC_NAME: &str = "tsc";

/// How far the TSC is trusted, decided from CPUID or overridden by the
/// command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stability {
    /// From CPUID: an invariant TSC is trusted, any other is watched.
    #[default]
    Auto,
    /// Trusted whatever CPUID says (Linux `tsc=reliable`): no watchdog.
    Reliable,
    /// Never selected (Linux `tsc=unstable`): registered with `UNSTABLE`
    /// and rating 0.
    Unstable,
}

/// The rating and flags the TSC declares for an invariance and an override.
///
/// | case | rating | flags |
/// |------|--------|-------|
/// | [`Stability::Unstable`] | 0 | `UNSTABLE` |
/// | [`Stability::Reliable`], or `Auto` and invariant | 300 | `CONTINUOUS \| VALID_FOR_HRES` |
/// | `Auto` and not invariant | 300 | `VALID_FOR_HRES \| MUST_VERIFY` |
///
/// A non-invariant TSC may stop in deep C-states, so it does not claim
/// `CONTINUOUS` (Linux claims it anyway and relies on the watchdog); the
/// watchdog compares it with the HPET or PIT and demotes it if it drifts.
pub fn rating_and_flags(invariant: bool, stability: Stability) -> (u16, ClockSourceFlags) {
    let trusted = ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES;
    match stability {
        Stability::Unstable => (0, ClockSourceFlags::UNSTABLE),
        Stability::Reliable => (TSC_RATING, trusted),
        Stability::Auto if invariant => (TSC_RATING, trusted),
        Stability::Auto => (
            TSC_RATING,
            ClockSourceFlags::VALID_FOR_HRES | ClockSourceFlags::MUST_VERIFY,
        ),
    }
}

/// Why the TSC cannot be used as a clock source. The system then falls back
/// to another one (HPET, PIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscError {
    /// `CPUID.1:EDX[4]` is clear: there is no TSC.
    NotPresent,
    /// The TSC did not advance while the reference did.
    Stopped,
    /// CPUID states no rate and no reference was given to calibrate with.
    NoFrequency,
    /// Calibration produced no result (first attempt, and the retry if one
    /// was made).
    Calibration {
        /// Why the first attempt failed.
        first: CalibrationError,
        /// Why the retry failed, if one was made.
        retry: Option<CalibrationError>,
    },
    /// The best calibration's error bound was beyond
    /// [`MAX_ACCEPTED_PPM`](crate::calibration::MAX_ACCEPTED_PPM).
    Imprecise {
        /// The best result.
        calibration: Calibration,
    },
    /// The rate is outside [`MIN_FREQUENCY`](crate::MIN_FREQUENCY)`..=`
    /// [`MAX_FREQUENCY`](crate::MAX_FREQUENCY).
    FrequencyOutOfRange {
        /// The rate found.
        frequency: Hertz,
    },
}

impl fmt::Display for TscError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TscError::NotPresent => f.write_str("no TSC (CPUID.1:EDX[4] clear)"),
            TscError::Stopped => f.write_str("the TSC does not advance"),
            TscError::NoFrequency => {
                f.write_str("CPUID states no TSC rate and there is no reference to calibrate")
            }
            TscError::Calibration { first, retry } => {
                write!(f, "calibration failed: {first:?}")?;
                match retry {
                    Some(r) => write!(f, ", retry: {r:?}"),
                    None => Ok(()),
                }
            }
            TscError::Imprecise { calibration } => write!(
                f,
                "calibration too imprecise: {} ppm",
                calibration.error_ppm
            ),
            TscError::FrequencyOutOfRange { frequency } => {
                write!(f, "implausible TSC rate {frequency}")
            }
        }
    }
}

/// The time-stamp counter as a [`ClockSource`]: 64 bits, read with `rdtsc`
/// through [`TscRead`].
///
/// The rate is fixed at construction; how it was obtained is kept
/// ([`frequency_info`](Self::frequency_info)) for the boot log.
pub struct TscClockSource<T: TscRead> {
    tsc: T,
    frequency: TscFrequency,
    invariant: bool,
    stability: Stability,
    rating: u16,
    flags: ClockSourceFlags,
}

impl<T: TscRead> fmt::Debug for TscClockSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TscClockSource")
            .field("frequency", &self.frequency)
            .field("invariant", &self.invariant)
            .field("stability", &self.stability)
            .field("rating", &self.rating)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

impl<T: TscRead> TscClockSource<T> {
    /// Probes the TSC: reads CPUID, takes the rate it states (0x15, the
    /// hypervisor leaf, 0x16) or else calibrates against `reference`,
    /// checks that the TSC runs, and rates it.
    ///
    /// With a CPUID-stated rate and a `reference`, the TSC is checked to
    /// advance over [`LIVENESS_WINDOW`](crate::calibration::LIVENESS_WINDOW)
    /// of reference time (and the rate cross-checked, logged only). Without
    /// a reference nothing can show that the TSC runs; that is logged.
    ///
    /// # Errors
    ///
    /// A [`TscError`]: the caller falls back to another clock source.
    pub fn probe<R: CpuIdReader>(
        tsc: T,
        cpuid: &CpuId<R>,
        reference: Option<&dyn ClockSource>,
        stability: Stability,
    ) -> Result<Self, TscError> {
        Self::probe_with(tsc, &TscCpuid::read(cpuid), reference, stability)
    }

    /// [`probe`](Self::probe) on CPUID facts already read.
    ///
    /// # Errors
    ///
    /// As [`probe`](Self::probe).
    pub fn probe_with(
        tsc: T,
        facts: &TscCpuid,
        reference: Option<&dyn ClockSource>,
        stability: Stability,
    ) -> Result<Self, TscError> {
        if !facts.has_tsc {
            log::warn!("tsc: CPUID says there is no TSC");
            return Err(TscError::NotPresent);
        }
        let frequency = match (facts.frequency(), reference) {
            (Some(f), Some(r)) => {
                verify(&tsc, f, r)?;
                f
            }
            (Some(f), None) => {
                log::info!("tsc: no reference given: not checked to be running");
                f
            }
            (None, Some(r)) => {
                let c = calibrate_tsc(&tsc, r).inspect_err(|e| log::warn!("tsc: {e}"))?;
                TscFrequency {
                    hz: c.frequency,
                    source: FrequencySource::Calibrated {
                        reference: r.name(),
                        error_ppm: c.error_ppm,
                        window: c.window,
                    },
                }
            }
            (None, None) => {
                log::warn!("tsc: {}", TscError::NoFrequency);
                return Err(TscError::NoFrequency);
            }
        };
        Self::from_frequency(tsc, frequency, facts.invariant, stability)
    }

    /// A TSC whose rate the caller knows (from an earlier probe, a
    /// paravirtual clock, the command line).
    ///
    /// # Errors
    ///
    /// [`TscError::FrequencyOutOfRange`].
    pub fn new(tsc: T, hz: Hertz, invariant: bool, stability: Stability) -> Result<Self, TscError> {
        let f = TscFrequency {
            hz,
            source: FrequencySource::Given,
        };
        Self::from_frequency(tsc, f, invariant, stability)
    }

    fn from_frequency(
        tsc: T,
        frequency: TscFrequency,
        invariant: bool,
        stability: Stability,
    ) -> Result<Self, TscError> {
        if !in_range(frequency.hz) {
            let e = TscError::FrequencyOutOfRange {
                frequency: frequency.hz,
            };
            log::warn!("tsc: {e} ({})", frequency.source);
            return Err(e);
        }
        let (rating, flags) = rating_and_flags(invariant, stability);
        log::info!(
            "tsc: {} from {}; {}invariant, {stability:?}: rating {rating}, {flags:?}",
            frequency.hz,
            frequency.source,
            if invariant { "" } else { "not " },
        );
        Ok(TscClockSource {
            tsc,
            frequency,
            invariant,
            stability,
            rating,
            flags,
        })
    }

    /// The rate and how it was obtained.
    pub fn frequency_info(&self) -> TscFrequency {
        self.frequency
    }
    /// Whether CPUID said the TSC is invariant.
    pub fn is_invariant(&self) -> bool {
        self.invariant
    }
    /// The override in force.
    pub fn stability(&self) -> Stability {
        self.stability
    }
    /// The counter it reads.
    pub fn counter(&self) -> &T {
        &self.tsc
    }
}

/// The liveness check of a CPUID-stated rate, and its cross-check.
fn verify<T: TscRead + ?Sized>(
    tsc: &T,
    f: TscFrequency,
    reference: &dyn ClockSource,
) -> Result<(), TscError> {
    match check_liveness(tsc, reference) {
        Ok(c) => {
            let off = ppm_off(c.frequency, f.hz);
            if off > c.error_ppm as u64 + RETRY_ABOVE_PPM as u64 {
                log::warn!(
                    "tsc: {} says {}, but {} measures {} (± {} ppm): {off} ppm apart",
                    f.source,
                    f.hz,
                    reference.name(),
                    c.frequency,
                    c.error_ppm
                );
            }
            Ok(())
        }
        Err(TscError::Stopped) => {
            log::warn!("tsc: {}", TscError::Stopped);
            Err(TscError::Stopped)
        }
        Err(e) => {
            log::warn!(
                "tsc: cannot check that the TSC runs, {} is unusable ({e})",
                reference.name()
            );
            Ok(())
        }
    }
}

impl<T: TscRead> ClockSource for TscClockSource<T> {
    fn name(&self) -> &'static str {
        TSC_NAME
    }
    /// `rdtsc` (not serialising: the metal implementation decides on
    /// `lfence`).
    fn read(&self) -> Cycles {
        Cycles::new(self.tsc.rdtsc())
    }
    fn mask(&self) -> Cycles {
        Cycles::mask_of_width(64)
    }
    fn frequency(&self) -> Hertz {
        self.frequency.hz
    }
    fn rating(&self) -> u16 {
        self.rating
    }
    fn flags(&self) -> ClockSourceFlags {
        self.flags
    }
    /// Inline when the reader is the CPU's own `rdtsc` (Linux's TSC
    /// clocksource sets `VDSO_CLOCKMODE_TSC`, `arch/x86/kernel/tsc.c`): a
    /// clock reader then executes `rdtsc` itself. A model's counter is not
    /// the CPU's and is read by call.
    fn inline_read(&self) -> InlineRead {
        if self.tsc.is_cpu_tsc() {
            InlineRead::Tsc
        } else {
            InlineRead::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A TSC that returns what it is told.
    struct FixedTsc(AtomicU64);
    impl TscRead for FixedTsc {
        fn rdtsc(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn tsc(v: u64) -> FixedTsc {
        FixedTsc(AtomicU64::new(v))
    }

    #[test]
    fn invariant_tsc_is_trusted_and_not_watched() {
        let (r, f) = rating_and_flags(true, Stability::Auto);
        assert_eq!(r, 300);
        assert_eq!(
            f,
            ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
        );
    }

    #[test]
    fn non_invariant_tsc_is_rated_300_but_must_be_verified() {
        let (r, f) = rating_and_flags(false, Stability::Auto);
        assert_eq!(r, 300);
        assert!(f.contains(ClockSourceFlags::MUST_VERIFY | ClockSourceFlags::VALID_FOR_HRES));
        assert!(!f.contains(ClockSourceFlags::CONTINUOUS));
    }

    #[test]
    fn reliable_override_drops_the_watchdog_and_unstable_never_selects() {
        let (_, f) = rating_and_flags(false, Stability::Reliable);
        assert!(!f.contains(ClockSourceFlags::MUST_VERIFY));
        let (r, f) = rating_and_flags(true, Stability::Unstable);
        assert_eq!((r, f), (0, ClockSourceFlags::UNSTABLE));
    }

    #[test]
    fn clock_source_reads_rdtsc_over_64_bits() {
        let cs = TscClockSource::new(
            tsc(0xFFFF_FFFF_FFFF_FFF0),
            Hertz::from_mhz(2_000),
            true,
            Stability::Auto,
        )
        .unwrap();
        assert_eq!(cs.name(), "tsc");
        assert_eq!(cs.mask(), Cycles::new(u64::MAX));
        assert_eq!(cs.read(), Cycles::new(0xFFFF_FFFF_FFFF_FFF0));
        cs.counter().0.store(5, Ordering::Relaxed);
        assert_eq!(
            cs.read()
                .wrapping_delta(Cycles::new(0xFFFF_FFFF_FFFF_FFF0), cs.mask()),
            Cycles::new(21)
        );
        assert_eq!(cs.frequency_info().source, FrequencySource::Given);
    }

    /// The CPU's TSC may be read inline by a clock reader; any other
    /// counter (a model, this fake) only through `read`.
    #[test]
    fn only_the_cpus_own_tsc_is_read_inline() {
        let fake =
            TscClockSource::new(tsc(0), Hertz::from_mhz(2_000), true, Stability::Auto).unwrap();
        assert_eq!(fake.inline_read(), InlineRead::None);
        struct CpuTsc;
        impl TscRead for CpuTsc {
            fn rdtsc(&self) -> u64 {
                7
            }
            fn is_cpu_tsc(&self) -> bool {
                true
            }
        }
        let cpu =
            TscClockSource::new(CpuTsc, Hertz::from_mhz(2_000), true, Stability::Auto).unwrap();
        assert_eq!(cpu.inline_read(), InlineRead::Tsc);
    }

    #[test]
    fn absurd_given_frequency_is_refused() {
        for hz in [0, 999_999, 100_000_000_001] {
            let e = TscClockSource::new(tsc(0), Hertz::new(hz), true, Stability::Auto).unwrap_err();
            assert_eq!(
                e,
                TscError::FrequencyOutOfRange {
                    frequency: Hertz::new(hz)
                }
            );
        }
        assert!(TscClockSource::new(tsc(0), Hertz::from_mhz(1), true, Stability::Auto).is_ok());
    }

    #[cfg(feature = "model")]
    #[test]
    fn no_tsc_and_no_frequency_are_typed_errors() {
        use crate::model::FakeCpuid;
        let e = TscClockSource::probe(
            tsc(0),
            &FakeCpuid::new().tsc_bit(false).cpuid(),
            None,
            Stability::Auto,
        );
        assert_eq!(e.unwrap_err(), TscError::NotPresent);
        let e = TscClockSource::probe(
            tsc(0),
            &FakeCpuid::qemu_tcg().cpuid(),
            None,
            Stability::Auto,
        );
        assert_eq!(e.unwrap_err(), TscError::NoFrequency);
    }

    #[cfg(feature = "model")]
    #[test]
    fn cpuid_rate_without_reference_is_taken_unverified() {
        use crate::model::FakeCpuid;
        let cs = TscClockSource::probe(
            tsc(0),
            &FakeCpuid::kvm_host_invtsc(2_000_000).cpuid(),
            None,
            Stability::Auto,
        )
        .unwrap();
        assert_eq!(cs.frequency(), Hertz::from_mhz(2_000));
        assert!(cs.is_invariant());
        assert_eq!(cs.rating(), 300);
        assert!(!cs.flags().contains(ClockSourceFlags::MUST_VERIFY));
    }
}
