//! Measuring a counter's rate against a reference clock source.
//!
//! Used for the LAPIC timer and the TSC when no CPUID leaf states their
//! rate (the normal case under QEMU/KVM). The method is Linux's
//! `tsc_read_refs()` bracketing (arch/x86/kernel/tsc.c):
//!
//! ```text
//!   reference:  r0a  r0b ·························· r1a  r1b
//!   target:        t0          (≥ window of reference time)   t1
//!
//!   rate = (t1 − t0) / (mid(r1a,r1b) − mid(r0a,r0b))
//!   error ≤ (half of each bracket + one reference cycle each) / elapsed
//!           + one target cycle / (t1 − t0)
//! ```
//!
//! Each bracket is taken up to [`BRACKET_TRIES`] times and the tightest
//! kept, so an interrupt or SMI between the reads widens the error bound
//! instead of skewing the result. Waiting is bounded by a number of
//! reference reads, never by time — a stopped reference (no PIT on a
//! Firecracker-like VM, an HPET that does not count) is reported as
//! [`CalibrationError::ReferenceStopped`] instead of hanging the boot.

use crate::source::{ClockParams, ClockSource};
use crate::time::{Cycles, Hertz, Nanos};

/// Bracket attempts at each end of the window.
pub const BRACKET_TRIES: u32 = 5;

/// A measured rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// The target's rate.
    pub frequency: Hertz,
    /// Upper bound of the measurement error, in parts per million: half of
    /// each bracket's width plus one reference cycle at each end, over the
    /// window, plus one target cycle over the target's count.
    pub error_ppm: u32,
    /// Reference time the measurement spanned.
    pub window: Nanos,
    /// Reference reads made (a cost measure).
    pub reads: u64,
}

/// Why a calibration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationError {
    /// The reference did not advance within the read budget.
    ReferenceStopped,
    /// The reference advanced, but not by the window within the read budget.
    Timeout,
    /// The target did not advance over the window.
    TargetStopped,
    /// The reference's rate or mask is unusable.
    BadReference,
}

/// Measures the rate of `target` against `reference` over at least `window`
/// of reference time, reading the reference at most `max_reads` times.
///
/// `target` returns the target's count, counting **up** and wrapping at
/// `target_mask` (pass a down-counter as `mask − value`). The window must
/// be shorter than either counter's wrap.
pub fn calibrate(
    reference: &dyn ClockSource,
    mut target: impl FnMut() -> Cycles,
    target_mask: Cycles,
    window: Nanos,
    max_reads: u64,
) -> Result<Calibration, CalibrationError> {
    let params = ClockParams::for_source(reference).map_err(|_| CalibrationError::BadReference)?;
    let rmask = reference.mask();
    let mut reads = 0u64;
    let mut bracket = |reads: &mut u64| {
        let mut best: Option<(Cycles, Cycles, Cycles)> = None;
        for _ in 0..BRACKET_TRIES {
            let a = reference.read();
            let t = target();
            let b = reference.read();
            *reads += 2;
            let width = b.wrapping_delta(a, rmask);
            if best.is_none_or(|(_, _, w)| width < w) {
                best = Some((
                    a.wrapping_add(Cycles::new(width.get() / 2), rmask),
                    t,
                    width,
                ));
            }
            if width.get() <= 1 {
                break;
            }
        }
        best.unwrap_or((Cycles::ZERO, Cycles::ZERO, Cycles::ZERO))
    };
    let (r0, t0, w0) = bracket(&mut reads);
    let first = r0;
    let mut last = first;
    let mut moved = false;
    loop {
        let now = reference.read();
        reads += 1;
        if now != last {
            moved = true;
            last = now;
        }
        let elapsed = params.conv.cycles_to_ns(now.wrapping_delta(first, rmask));
        if elapsed >= window {
            break;
        }
        if reads >= max_reads {
            return Err(if moved {
                CalibrationError::Timeout
            } else {
                CalibrationError::ReferenceStopped
            });
        }
    }
    let (r1, t1, w1) = bracket(&mut reads);
    let ref_cycles = r1.wrapping_delta(r0, rmask);
    let elapsed = params.conv.cycles_to_ns(ref_cycles);
    let ticks = t1.wrapping_delta(t0, target_mask);
    if ticks == Cycles::ZERO {
        return Err(CalibrationError::TargetStopped);
    }
    if ref_cycles == Cycles::ZERO {
        return Err(CalibrationError::ReferenceStopped);
    }
    let ref_hz = reference.frequency().get() as u128;
    // rate = ticks / (ref_cycles / ref_hz), rounded to nearest.
    let num = ticks.get() as u128 * ref_hz;
    let hz = (num + ref_cycles.get() as u128 / 2) / ref_cycles.get() as u128;
    // Uncertainty in reference cycles: half of each bracket, plus one
    // cycle of quantisation at each end.
    let unc = (w0.get() as u128).div_ceil(2) + (w1.get() as u128).div_ceil(2) + 2;
    // Plus one cycle of the target's own quantisation (a slow target, like
    // a LAPIC timer behind a divider, counts few cycles in the window).
    let ppm = (unc * 1_000_000).div_ceil(ref_cycles.get() as u128)
        + 1_000_000u128.div_ceil(ticks.get() as u128);
    Ok(Calibration {
        frequency: Hertz::new(hz.min(u64::MAX as u128) as u64),
        error_ppm: ppm.min(u32::MAX as u128) as u32,
        window: elapsed,
        reads,
    })
}

/// `|measured − truth|` in parts per million of `truth` (for reports).
pub fn ppm_off(measured: Hertz, truth: Hertz) -> u64 {
    if truth.get() == 0 {
        return u64::MAX;
    }
    let d = measured.get().abs_diff(truth.get()) as u128 * 1_000_000;
    (d / truth.get() as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ClockSourceFlags;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A reference whose every read advances shared time by 1 µs (a PIT
    /// port read's cost), counting at `hz`.
    struct Ref<'a> {
        now_ns: &'a AtomicU64,
        hz: u64,
        stopped: bool,
    }
    impl ClockSource for Ref<'_> {
        fn name(&self) -> &'static str {
            "ref"
        }
        fn read(&self) -> Cycles {
            let t = self.now_ns.fetch_add(1_000, Ordering::Relaxed) + 1_000;
            if self.stopped {
                return Cycles::new(42);
            }
            Cycles::new(((t as u128 * self.hz as u128) / 1_000_000_000) as u64 & 0xFFFF)
        }
        fn mask(&self) -> Cycles {
            Cycles::new(0xFFFF)
        }
        fn frequency(&self) -> Hertz {
            Hertz::new(self.hz)
        }
        fn rating(&self) -> u16 {
            1
        }
        fn flags(&self) -> ClockSourceFlags {
            ClockSourceFlags::CONTINUOUS
        }
    }

    #[test]
    fn measures_a_target_against_a_16_bit_pit_like_reference() {
        let now = AtomicU64::new(0);
        let r = Ref {
            now_ns: &now,
            hz: 1_193_182,
            stopped: false,
        };
        let target_hz = 1_000_000_000u64; // a 1 GHz "bus clock"
        let c = calibrate(
            &r,
            || Cycles::new(now.load(Ordering::Relaxed) * target_hz / 1_000_000_000),
            Cycles::new(u64::MAX),
            Nanos::from_millis(10),
            100_000,
        )
        .unwrap();
        let off = ppm_off(c.frequency, Hertz::new(target_hz));
        assert!(off <= c.error_ppm as u64, "{c:?} off {off} ppm");
        assert!(c.error_ppm < 1_000, "{c:?}");
        assert!(c.window >= Nanos::from_millis(10) && c.window < Nanos::from_millis(11));
    }

    #[test]
    fn stopped_reference_is_an_error_not_a_hang() {
        let now = AtomicU64::new(0);
        let r = Ref {
            now_ns: &now,
            hz: 1_193_182,
            stopped: true,
        };
        let calls = Cell::new(0u64);
        let e = calibrate(
            &r,
            || {
                calls.set(calls.get() + 1);
                Cycles::new(calls.get())
            },
            Cycles::new(u64::MAX),
            Nanos::from_millis(10),
            10_000,
        );
        assert_eq!(e, Err(CalibrationError::ReferenceStopped));
    }

    #[test]
    fn stopped_target_is_reported() {
        let now = AtomicU64::new(0);
        let r = Ref {
            now_ns: &now,
            hz: 1_193_182,
            stopped: false,
        };
        let e = calibrate(
            &r,
            || Cycles::new(7),
            Cycles::new(u64::MAX),
            Nanos::from_millis(1),
            10_000,
        );
        assert_eq!(e, Err(CalibrationError::TargetStopped));
    }
}
