//! Measuring the TSC against a reference clock source, when CPUID states no
//! rate (QEMU TCG, most KVM set-ups without `+invtsc`, pre-Skylake parts).
//!
//! # Policy (Linux `native_calibrate_cpu()`, arch/x86/kernel/tsc.c)
//!
//! ```text
//!   attempt 1: CAL_WINDOW = 10 ms (Linux CAL_MS)
//!       ok, error ≤ 500 ppm ──────────────────────────────► accept
//!       TSC did not move ─────────────────────────────────► Stopped
//!       reference stopped / unusable ────────────────────► error (no retry:
//!                                                            it will not start)
//!       error > 500 ppm, or reference too slow to read ──┐
//!   attempt 2: CAL2_WINDOW = 50 ms (Linux CAL2_MS)        ◄─┘
//!       keep the tighter of the two results;
//!       error > MAX_ACCEPTED_PPM (1 %) ──────────────────► Imprecise
//! ```
//!
//! The measurement itself is [`clocksource::calibrate()`]: both ends of the
//! window are bracketed by two reference reads (the tightest of 5 tries), so
//! an SMI or a slow read widens the reported error bound instead of skewing
//! the result unseen — the job Linux's `tsc_read_refs()` retries and
//! `tscmax > 10·tscmin` SMI check do. 500 ppm is the target of Linux's
//! `quick_pit_calibrate()` (`d1 + d2 < delta >> 11`); 1 % is the window in
//! which Linux's delayed refinement keeps a new value.
//!
//! Every wait is bounded by a number of reference reads
//! ([`READS_PER_US`] per µs of window), never by time: a reference that does
//! not count (no PIT on a Firecracker-like VM) is an error, not a hang.
//!
//! The error bound is relative to the reference's *nominal* rate: a PIT
//! crystal that is itself 50 ppm off makes the TSC 50 ppm off too.

use clocksource::{calibrate, Calibration, CalibrationError, ClockSource, Cycles, Nanos};
use hw::TscRead;

use crate::TscError;

/// First calibration window: 10 ms (Linux `CAL_MS`).
pub const CAL_WINDOW: Nanos = Nanos::from_millis(10);

/// Retry window: 50 ms (Linux `CAL2_MS`).
pub const CAL2_WINDOW: Nanos = Nanos::from_millis(50);

/// Error bound above which the first attempt is retried over
/// [`CAL2_WINDOW`]: 500 ppm (Linux's quick-calibrate threshold, `>> 11`).
pub const RETRY_ABOVE_PPM: u32 = 500;

/// Error bound above which no result is accepted: 1 % (Linux's refinement
/// window). A TSC measured worse than that is not a clock.
pub const MAX_ACCEPTED_PPM: u32 = 10_000;

/// Reference reads allowed per microsecond of window (one read per 50 ns):
/// far more than any real reference needs (a PIT read costs ~1 µs, an HPET
/// read ~0.5–1 µs), few enough that a stopped reference is given up on in
/// 0.2 s of PIT reads.
pub const READS_PER_US: u64 = 20;

/// Window for the liveness check of a TSC whose rate CPUID stated: 1 ms of
/// reference time.
pub const LIVENESS_WINDOW: Nanos = Nanos::from_millis(1);

/// Measures the TSC against `reference` with the retry policy of the
/// [module docs](self).
///
/// # Errors
///
/// - [`TscError::Stopped`] if the TSC did not advance while the reference
///   did.
/// - [`TscError::Calibration`] if no attempt produced a result (the
///   reference stopped, was unusable, or too slow to read).
/// - [`TscError::Imprecise`] if the best result's error bound exceeds
///   [`MAX_ACCEPTED_PPM`].
pub fn calibrate_tsc<T: TscRead + ?Sized>(
    tsc: &T,
    reference: &dyn ClockSource,
) -> Result<Calibration, TscError> {
    let first = attempt(tsc, reference, CAL_WINDOW);
    match first {
        Ok(c) if c.error_ppm <= RETRY_ABOVE_PPM => return accept(c),
        Err(CalibrationError::TargetStopped) => return Err(TscError::Stopped),
        Err(e @ (CalibrationError::ReferenceStopped | CalibrationError::BadReference)) => {
            return Err(TscError::Calibration {
                first: e,
                retry: None,
            })
        }
        Ok(c) => log::info!(
            "tsc: {} ms calibration against {}: error bound {} ppm > {RETRY_ABOVE_PPM}, retrying over {} ms",
            CAL_WINDOW.as_nanos() / 1_000_000,
            reference.name(),
            c.error_ppm,
            CAL2_WINDOW.as_nanos() / 1_000_000
        ),
        Err(e) => log::info!(
            "tsc: {} ms calibration against {} failed ({e:?}), retrying over {} ms",
            CAL_WINDOW.as_nanos() / 1_000_000,
            reference.name(),
            CAL2_WINDOW.as_nanos() / 1_000_000
        ),
    }
    let retry = attempt(tsc, reference, CAL2_WINDOW);
    let best = match (first, retry) {
        (_, Err(CalibrationError::TargetStopped)) => return Err(TscError::Stopped),
        (Ok(a), Ok(b)) => {
            if b.error_ppm <= a.error_ppm {
                b
            } else {
                a
            }
        }
        (Err(_), Ok(b)) => b,
        (Ok(a), Err(e)) => {
            log::warn!("tsc: calibration retry failed ({e:?}); keeping the first result");
            a
        }
        (Err(a), Err(b)) => {
            return Err(TscError::Calibration {
                first: a,
                retry: Some(b),
            })
        }
    };
    accept(best)
}

/// Checks that the TSC advances while `reference` advances by
/// [`LIVENESS_WINDOW`], and returns the rate measured meanwhile (a coarse
/// cross-check of a CPUID-stated rate).
///
/// # Errors
///
/// [`TscError::Stopped`] if the TSC did not move; [`TscError::Calibration`]
/// if the reference could not time the window (then nothing is known about
/// the TSC).
pub fn check_liveness<T: TscRead + ?Sized>(
    tsc: &T,
    reference: &dyn ClockSource,
) -> Result<Calibration, TscError> {
    match attempt(tsc, reference, LIVENESS_WINDOW) {
        Ok(c) => Ok(c),
        Err(CalibrationError::TargetStopped) => Err(TscError::Stopped),
        Err(e) => Err(TscError::Calibration {
            first: e,
            retry: None,
        }),
    }
}

fn attempt<T: TscRead + ?Sized>(
    tsc: &T,
    reference: &dyn ClockSource,
    window: Nanos,
) -> Result<Calibration, CalibrationError> {
    let max_reads = (window.as_nanos() / 1_000).saturating_mul(READS_PER_US);
    let r = calibrate(
        reference,
        || Cycles::new(tsc.rdtsc()),
        Cycles::new(u64::MAX),
        window,
        max_reads,
    );
    match &r {
        Ok(c) => log::debug!(
            "tsc: calibration against {}: {} ± {} ppm over {:?} ({} reads)",
            reference.name(),
            c.frequency,
            c.error_ppm,
            c.window,
            c.reads
        ),
        Err(e) => log::debug!("tsc: calibration against {}: {e:?}", reference.name()),
    }
    r
}

fn accept(c: Calibration) -> Result<Calibration, TscError> {
    if c.error_ppm > MAX_ACCEPTED_PPM {
        return Err(TscError::Imprecise { calibration: c });
    }
    Ok(c)
}
