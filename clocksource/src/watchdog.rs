//! The clock-source watchdog: `MUST_VERIFY` sources checked against a trusted
//! reference (Linux `clocksource_watchdog()`, kernel/time/clocksource.c, and
//! its 2026 rewrite's frequency check).
//!
//! The caller drives it: the tick layer calls [`Watchdog::check`] about
//! every [`WATCHDOG_INTERVAL`]; the watchdog owns no timer. For each checked
//! source it keeps a baseline — one (source, reference) pair of counts — and
//! compares how far each moved since:
//!
//! ```text
//!   reference  ──wd0──────────────wd1──   bracketed read: wd0, cs, wd1;
//!   checked    ────────cs─────────────    wd1 − wd0 ≤ READOUT_MAX or retry
//!                      │                  (3 tries, then skip the round)
//!           pair (cs, midpoint(wd0, wd1))
//!
//!   baseline (cs₀, wd₀) ───────── interval ─────────► now (cs₁, wd₁)
//!     cs_ns = cs.cycles_to_ns(cs₁ − cs₀)     wd_ns = wd.cycles_to_ns(wd₁ − wd₀)
//!     skew  = cs_ns − wd_ns ;  |skew| > margin(cs) + margin(wd) → UNSTABLE
//! ```
//!
//! # Threshold, and why
//!
//! Each source's uncertainty margin is Linux's: `max(2 · WATCHDOG_MAX_SKEW,
//! one cycle)` = 250 µs for any source faster than 4 kHz
//! (`WATCHDOG_MAX_SKEW` = 125 µs, the Kconfig default). A source is unstable
//! when `|skew| > cs.margin + wd.margin`: 500 µs per 0.5 s interval, i.e.
//! about **1000 ppm**.
//!
//! - It is far above what two working crystals disagree by (±100–200 ppm
//!   together), so a good source is never demoted — even across a few
//!   intervals of readout noise, which the midpoint pairing keeps below
//!   25 µs per end.
//! - It is far below what the watchdog exists to catch: a counter that
//!   stops (100 % skew), a TSC scaled by cpufreq or halted in C-states
//!   (several %), a misprogrammed period.
//! - The margin is absolute per nominal interval; a longer interval scales
//!   it in proportion ([`scaled_margin`]), keeping the bound at ≈ 1000 ppm.
//!   Linux instead resets the baseline past 2× nominal
//!   (`WATCHDOG_INTERVAL_MAX_NS`, 1 s), which suits a watchdog timer that
//!   fires every 0.5 s whatever the CPU does; here the tick layer defers
//!   checks while the CPU idles tickless (up to 1 s after the last, its
//!   `WATCHDOG_IDLE_DEFERRAL_MAX`; this watchdog judges any interval up to
//!   [`Watchdog::max_interval`]), and the check that spans the idle period
//!   is the one that sees a TSC halted in it. An interval past either source's `max_idle` may hide a
//!   wrap: it resets the baseline instead of judging. A call less than half
//!   an interval after the baseline is "not due" and keeps the baseline, so
//!   calling `check` more often than needed is harmless.
//! - The interval is measured on the reference only. Linux uses the longer
//!   of the two, so a source running more than 2× fast is skipped as "too
//!   long" every round; here it is judged, and fails.
//!
//! The 2026 rewrite replaces the absolute margins by `interval >> 11`
//! (≈ 500 ppm) when both sources are calibrated and `>> 8` (≈ 4000 ppm)
//! otherwise, plus the readout time; this crate has no "calibrated" flag,
//! so it keeps the ≤ 6.x margins. The measured skew is always reported in
//! ppm so a caller can apply a tighter policy.
//!
//! # When the clocks' own source fails
//!
//! A source found unstable has kept the clocks since its last good check,
//! and the judged interval's skew is the error it put in them (as far as
//! the reference can tell: to its readout, a cycle at each end).
//! [`Registry::reselect_after_check`] switches to the best source left and
//! takes that error out ([`Skew::clock_error`], [`Timekeeper::correct`]):
//! a source that ran slow leaves the clocks behind, and they step forward
//! to the reference's time; one that ran fast leaves them ahead, and they
//! hold until the reference's time reaches them — never backwards. Linux
//! (`clocksource_watchdog_work` → `clocksource_select`) only switches, so
//! the whole interval's error stays in `CLOCK_MONOTONIC` and
//! `CLOCK_REALTIME`.
//!
//! [`Timekeeper::correct`]: crate::Timekeeper::correct
//!
//! After a resume, or whenever time may have jumped under the watchdog, call
//! [`Watchdog::reset`] (Linux `watchdog_reset_pending`).

use crate::registry::{Registry, SourceId};
use crate::source::{ClockParams, ClockSource, ClockSourceFlags};
use crate::time::{Cycles, Nanos, NSEC_PER_SEC};
use crate::timekeeper::ClockError;

/// Nominal time between checks: 0.5 s (Linux `WATCHDOG_INTERVAL` = HZ/2).
pub const WATCHDOG_INTERVAL: Nanos = Nanos::from_millis(500);

/// Longest the two reference reads around the checked source's read may be
/// apart: 50 µs (Linux 2026 `WATCHDOG_READOUT_MAX_NS`). A longer bracket
/// (an interrupt, SMI or vCPU preemption in between) makes the pairing
/// meaningless.
pub const READOUT_MAX: Nanos = Nanos::from_micros(50);

/// Bracketed reads tried per source per round before skipping the round
/// (Linux 2026 `WATCHDOG_FREQ_RETRIES`).
pub const READOUT_TRIES: u32 = 3;

/// Linux `WATCHDOG_MAX_SKEW` (Kconfig `CLOCKSOURCE_WATCHDOG_MAX_SKEW_US`
/// default): 125 µs. Each source's margin is at least twice this.
pub const WATCHDOG_MAX_SKEW: Nanos = Nanos::from_micros(125);

/// A source's uncertainty margin: `max(2 · WATCHDOG_MAX_SKEW, one cycle)`
/// (Linux `__clocksource_update_freq_scale`). One cycle is rounded up; a
/// source with no rate gets the floor.
pub fn uncertainty_margin(cs: &dyn ClockSource) -> Nanos {
    let f = cs.frequency().get();
    let cycle = if f == 0 { 0 } else { NSEC_PER_SEC.div_ceil(f) };
    let floor = WATCHDOG_MAX_SKEW.saturating_mul(2);
    if cycle > floor.as_nanos() {
        Nanos::from_nanos(cycle)
    } else {
        floor
    }
}

/// The allowed skew over an interval of `wd_ns` (measured on the
/// reference) when `margin` is allowed over a nominal `interval`: `margin`
/// up to the nominal interval, proportionally more beyond it, so the bound
/// stays the same in ppm (≈ 1000 ppm). A check deferred across an idle
/// period is judged, not skipped.
pub fn scaled_margin(margin: Nanos, wd_ns: Nanos, interval: Nanos) -> Nanos {
    if wd_ns <= interval || interval == Nanos::ZERO {
        return margin;
    }
    let scaled = margin.as_nanos() as u128 * wd_ns.as_nanos() as u128 / interval.as_nanos() as u128;
    Nanos::from_nanos(scaled.min(u64::MAX as u128) as u64)
}

/// Why the reference given to [`Watchdog::check`] was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchdogError {
    /// The id names no registered source.
    UnknownReference,
    /// The reference itself needs verification (`MUST_VERIFY`) or is
    /// unstable: nothing can be judged against it.
    UntrustedReference,
}

/// Why a baseline was re-recorded instead of judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The interval exceeded a source's max deferment (or its `max_cycles`):
    /// a counter may have wrapped unseen.
    WrapRisk,
}

/// A judged interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skew {
    /// How far the checked source moved, in its own ns.
    pub cs_ns: Nanos,
    /// How far the reference moved.
    pub wd_ns: Nanos,
    /// `cs_ns − wd_ns`: positive if the checked source runs fast.
    pub skew_ns: i64,
    /// The skew in parts per million of the reference interval.
    pub ppm: i64,
    /// The allowed `|skew_ns|`: `margin(cs) + margin(wd)`, scaled by
    /// `wd_ns / interval` when the interval was longer than nominal.
    pub margin: Nanos,
}

impl Skew {
    /// How far clocks kept by the checked source over the interval are from
    /// the reference's time: ahead if it ran fast, behind if slow (what
    /// [`Timekeeper::correct`](crate::Timekeeper::correct) takes out).
    pub fn clock_error(&self) -> ClockError {
        let d = Nanos::from_nanos(self.skew_ns.unsigned_abs());
        if self.skew_ns > 0 {
            ClockError::Ahead(d)
        } else {
            ClockError::Behind(d)
        }
    }
}

/// What one check found for one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First check, or after a reset: the baseline was recorded.
    Baseline,
    /// Less than half an interval since the baseline, which is kept.
    NotDue {
        /// Reference time since the baseline.
        elapsed: Nanos,
    },
    /// The baseline was re-recorded without judging.
    Reset(ResetReason),
    /// Every bracketed read took longer than [`READOUT_MAX`]: the round is
    /// skipped, not judged, and the baseline dropped (Linux 2026).
    ReadoutTooSlow {
        /// The last bracket's length.
        readout: Nanos,
    },
    /// Within the margin.
    Stable(Skew),
    /// Beyond the margin: marked unstable in the registry by this check.
    Unstable(Skew),
}

/// One source's result in a [`WatchdogReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceCheck {
    /// The source checked.
    pub id: SourceId,
    /// What was found.
    pub verdict: Verdict,
}

/// What one [`Watchdog::check`] did, source by source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchdogReport<const N: usize> {
    checks: [Option<SourceCheck>; N],
}

impl<const N: usize> WatchdogReport<N> {
    /// The sources checked this round, with their verdicts.
    pub fn iter(&self) -> impl Iterator<Item = &SourceCheck> + '_ {
        self.checks.iter().flatten()
    }
    /// The verdict for `id`, if it was checked.
    pub fn verdict(&self, id: SourceId) -> Option<Verdict> {
        self.iter().find(|c| c.id == id).map(|c| c.verdict)
    }
    /// The sources this round marked unstable.
    pub fn newly_unstable(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.iter()
            .filter(|c| matches!(c.verdict, Verdict::Unstable(_)))
            .map(|c| c.id)
    }
    /// Whether this round marked any source unstable (then call
    /// [`Registry::reselect`]).
    pub fn any_unstable(&self) -> bool {
        self.newly_unstable().next().is_some()
    }
}

#[derive(Clone, Copy, Debug)]
struct Baseline {
    id: SourceId,
    cs: Cycles,
    wd: Cycles,
}

/// Watches the `MUST_VERIFY` sources of a `Registry<'_, N>`.
#[derive(Clone, Debug)]
pub struct Watchdog<const N: usize> {
    interval: Nanos,
    reference: Option<SourceId>,
    baselines: [Option<Baseline>; N],
}

impl<const N: usize> Default for Watchdog<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Watchdog<N> {
    /// A watchdog expecting a check every [`WATCHDOG_INTERVAL`].
    pub const fn new() -> Self {
        Self::with_interval(WATCHDOG_INTERVAL)
    }

    /// A watchdog expecting a check every `interval`. The margins are
    /// absolute, so a longer interval is a tighter ppm bound.
    pub const fn with_interval(interval: Nanos) -> Self {
        Watchdog {
            interval,
            reference: None,
            baselines: [None; N],
        }
    }

    /// The nominal interval.
    pub fn interval(&self) -> Nanos {
        self.interval
    }

    /// Forgets every baseline: the next check of each source only records
    /// one. Call after a resume or anything else that stopped the clocks.
    pub fn reset(&mut self) {
        self.baselines = [None; N];
    }

    /// The highest-rated registered source that is neither `MUST_VERIFY` nor
    /// unstable: the natural reference (ties to the first registered).
    pub fn pick_reference<'a>(registry: &Registry<'a, N>) -> Option<SourceId> {
        let mut best: Option<(u16, SourceId)> = None;
        for e in registry.iter() {
            if e.flags().contains(ClockSourceFlags::MUST_VERIFY) || e.is_unstable() {
                continue;
            }
            if best.is_none_or(|(r, _)| e.rating() > r) {
                best = Some((e.rating(), e.id()));
            }
        }
        best.map(|(_, id)| id)
    }

    /// The longest interval a check against `reference` can judge: the
    /// smallest max deferment of the reference and of every source it would
    /// check (past it a counter may have wrapped unseen, and the check only
    /// re-records its baseline). `None` if `reference` is not registered.
    ///
    /// A caller that defers checks while the CPU idles (the tick layer in
    /// NO_HZ idle) may wait up to this long without losing a judgment.
    pub fn max_interval<'a>(registry: &Registry<'a, N>, reference: SourceId) -> Option<Nanos> {
        let wd = registry.get(reference)?;
        let mut max = wd.params().max_idle;
        for e in registry.iter() {
            if e.id() != reference
                && e.flags().contains(ClockSourceFlags::MUST_VERIFY)
                && !e.is_unstable()
            {
                max = max.min(e.params().max_idle);
            }
        }
        Some(max)
    }

    /// Checks every registered `MUST_VERIFY`, not yet unstable source other
    /// than `reference` against `reference`, marks those beyond the margin
    /// unstable in `registry`, and reports. The caller then calls
    /// [`Registry::reselect`] if [`WatchdogReport::any_unstable`].
    ///
    /// A new reference resets every baseline.
    ///
    /// # Errors
    ///
    /// [`WatchdogError`] if `reference` is not registered or not trusted;
    /// nothing is checked then.
    pub fn check<'a>(
        &mut self,
        registry: &mut Registry<'a, N>,
        reference: SourceId,
    ) -> Result<WatchdogReport<N>, WatchdogError> {
        let wd = registry
            .get(reference)
            .ok_or(WatchdogError::UnknownReference)?;
        if wd.flags().contains(ClockSourceFlags::MUST_VERIFY) || wd.is_unstable() {
            return Err(WatchdogError::UntrustedReference);
        }
        let (wd_src, wd_params) = (wd.source(), *wd.params());
        if self.reference != Some(reference) {
            self.reset();
            self.reference = Some(reference);
        }

        let mut report = WatchdogReport { checks: [None; N] };
        let mut todo: [Option<(SourceId, &'a dyn ClockSource, ClockParams)>; N] = [None; N];
        for e in registry.iter() {
            if e.id() != reference
                && e.flags().contains(ClockSourceFlags::MUST_VERIFY)
                && !e.is_unstable()
            {
                todo[e.id().slot()] = Some((e.id(), e.source(), *e.params()));
            }
        }
        for (id, cs, cs_params) in todo.into_iter().flatten() {
            let verdict = self.check_one(id, cs, &cs_params, wd_src, &wd_params);
            if let Verdict::Unstable(s) = verdict {
                log::warn!(
                    "clocksource watchdog: {} skewed {} ns ({} ppm) against {} over {}, margin {}",
                    cs.name(),
                    s.skew_ns,
                    s.ppm,
                    wd_src.name(),
                    s.wd_ns,
                    s.margin
                );
                // Cannot fail: `id` came from the registry this call.
                let _ = registry.mark_unstable(id);
            }
            report.checks[id.slot()] = Some(SourceCheck { id, verdict });
        }
        Ok(report)
    }

    fn check_one(
        &mut self,
        id: SourceId,
        cs: &dyn ClockSource,
        cs_p: &ClockParams,
        wd: &dyn ClockSource,
        wd_p: &ClockParams,
    ) -> Verdict {
        let slot = id.slot();
        let wd_mask = wd.mask();
        let mut sample = None;
        let mut readout = Nanos::ZERO;
        for _ in 0..READOUT_TRIES {
            let wd0 = wd.read();
            let c = cs.read();
            let wd1 = wd.read();
            let spread = wd1.wrapping_delta(wd0, wd_mask);
            readout = wd_p.conv.cycles_to_ns(spread);
            if readout <= READOUT_MAX {
                let mid = wd0.wrapping_add(Cycles::new(spread.get() / 2), wd_mask);
                sample = Some((c, mid));
                break;
            }
        }
        let Some((c, w)) = sample else {
            log::info!(
                "clocksource watchdog: {} read took {} ({} tries), skipping {}",
                wd.name(),
                readout,
                READOUT_TRIES,
                cs.name()
            );
            self.baselines[slot] = None;
            return Verdict::ReadoutTooSlow { readout };
        };
        let fresh = Some(Baseline { id, cs: c, wd: w });
        let base = match self.baselines[slot] {
            Some(b) if b.id == id => b,
            _ => {
                self.baselines[slot] = fresh;
                return Verdict::Baseline;
            }
        };
        // Every decision about the interval goes by the reference, the
        // trusted clock: a checked source running far fast must be judged,
        // not skipped as "too long" forever.
        let wd_d = w.wrapping_delta(base.wd, wd_mask);
        let wd_ns = wd_p.conv.cycles_to_ns(wd_d);
        if wd_d > wd_p.max_cycles || wd_ns > wd_p.max_idle || wd_ns > cs_p.max_idle {
            self.baselines[slot] = fresh;
            return Verdict::Reset(ResetReason::WrapRisk);
        }
        if wd_ns.as_nanos() < self.interval.as_nanos() / 2 {
            return Verdict::NotDue { elapsed: wd_ns };
        }
        let cs_ns = cs_p.conv.cycles_to_ns(c.wrapping_delta(base.cs, cs.mask()));
        self.baselines[slot] = fresh;
        let skew_ns = cs_ns.as_nanos() as i128 - wd_ns.as_nanos() as i128;
        let ppm = skew_ns * 1_000_000 / (wd_ns.as_nanos().max(1) as i128);
        let margin = scaled_margin(
            uncertainty_margin(cs).saturating_add(uncertainty_margin(wd)),
            wd_ns,
            self.interval,
        );
        let skew = Skew {
            cs_ns,
            wd_ns,
            skew_ns: skew_ns as i64,
            ppm: ppm as i64,
            margin,
        };
        if skew_ns.unsigned_abs() > margin.as_nanos() as u128 {
            self.baselines[slot] = None;
            Verdict::Unstable(skew)
        } else {
            Verdict::Stable(skew)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Ktime;
    use crate::timekeeper::fake::{FakeClock, World};
    use crate::timekeeper::Timekeeper;
    use std::vec::Vec;

    const HALF_S: u64 = 500_000_000;

    fn hpet(w: &World) -> FakeClock<'_> {
        FakeClock::new(w, "hpet", 14_318_180)
            .bits(32)
            .rating(250)
            .offset(0xFFF0_0000)
    }

    fn tsc(w: &World, drift_ppb: i64) -> FakeClock<'_> {
        FakeClock::new(w, "tsc", 2_893_000_000)
            .rating(300)
            .offset(1 << 45)
            .drift_ppb(drift_ppb)
            .flags(
                ClockSourceFlags::CONTINUOUS
                    | ClockSourceFlags::VALID_FOR_HRES
                    | ClockSourceFlags::MUST_VERIFY,
            )
    }

    /// Advances virtual time by one interval per round and returns each
    /// round's verdict for `id`, stopping after `rounds`.
    fn run<const N: usize>(
        w: &World,
        wd: &mut Watchdog<N>,
        reg: &mut Registry<'_, N>,
        reference: SourceId,
        id: SourceId,
        rounds: usize,
    ) -> Vec<Option<Verdict>> {
        (0..rounds)
            .map(|_| {
                w.advance(HALF_S);
                wd.check(reg, reference).unwrap().verdict(id)
            })
            .collect()
    }

    #[test]
    fn margins_are_linux_uncertainty_margins() {
        let w = World::new();
        assert_eq!(uncertainty_margin(&hpet(&w)), Nanos::from_micros(250));
        let slow = FakeClock::new(&w, "rtc", 1_024);
        assert_eq!(uncertainty_margin(&slow), Nanos::from_nanos(976_563));
    }

    #[test]
    fn drift_of_2000_ppm_is_marked_unstable_at_the_second_check() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 2_000_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        assert_eq!(Watchdog::pick_reference(&reg), Some(href));
        let mut wd: Watchdog<4> = Watchdog::new();
        let v = run(&w, &mut wd, &mut reg, href, tid, 3);
        assert_eq!(v[0], Some(Verdict::Baseline));
        let Some(Verdict::Unstable(s)) = v[1] else {
            panic!("{v:?}")
        };
        assert!((1_990..=2_010).contains(&s.ppm), "{s:?}");
        assert_eq!(s.margin, Nanos::from_micros(500));
        assert_eq!(v[2], None, "unstable sources are no longer checked");
        assert!(reg.get(tid).unwrap().is_unstable());
    }

    #[test]
    fn drift_of_100_ppm_is_never_marked_over_100_intervals() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, -100_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        let v = run(&w, &mut wd, &mut reg, href, tid, 101);
        assert_eq!(v[0], Some(Verdict::Baseline));
        for verdict in &v[1..] {
            let Some(Verdict::Stable(s)) = verdict else {
                panic!("{verdict:?}")
            };
            assert!((-102..=-98).contains(&s.ppm), "{s:?}");
        }
        assert!(!reg.get(tid).unwrap().is_unstable());
    }

    #[test]
    fn stuck_counter_is_marked_at_the_first_judged_interval() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 0));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        t.freeze();
        let mut wd: Watchdog<4> = Watchdog::new();
        let v = run(&w, &mut wd, &mut reg, href, tid, 2);
        assert_eq!(v[0], Some(Verdict::Baseline));
        let Some(Verdict::Unstable(s)) = v[1] else {
            panic!("{v:?}")
        };
        assert_eq!(s.cs_ns, Nanos::ZERO);
        assert_eq!(s.ppm, -1_000_000);
    }

    #[test]
    fn slow_readout_is_skipped_not_judged() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 2_000_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        assert_eq!(
            run(&w, &mut wd, &mut reg, href, tid, 1)[0],
            Some(Verdict::Baseline)
        );
        // Every bracket is 60 µs wide (2 slow reference reads per try).
        h.slow_down(2 * READOUT_TRIES as u64, 60_000);
        let v = run(&w, &mut wd, &mut reg, href, tid, 1);
        let Some(Verdict::ReadoutTooSlow { readout }) = v[0] else {
            panic!("{v:?}")
        };
        assert!(readout > READOUT_MAX);
        assert!(
            !reg.get(tid).unwrap().is_unstable(),
            "a skip is not a failure"
        );
        // The baseline was dropped: next round re-baselines, then judges.
        let v = run(&w, &mut wd, &mut reg, href, tid, 2);
        assert_eq!(v[0], Some(Verdict::Baseline));
        assert!(matches!(v[1], Some(Verdict::Unstable(_))), "{v:?}");
    }

    #[test]
    fn slow_readout_retried_succeeds_on_the_last_try() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 0));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        run(&w, &mut wd, &mut reg, href, tid, 1);
        h.slow_down(2 * (READOUT_TRIES as u64 - 1), 60_000);
        let v = run(&w, &mut wd, &mut reg, href, tid, 1);
        assert!(matches!(v[0], Some(Verdict::Stable(_))), "{v:?}");
    }

    #[test]
    fn long_or_early_intervals_are_not_judged() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 2_000_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        let mut check = |advance: u64| {
            w.advance(advance);
            wd.check(&mut reg, href).unwrap().verdict(tid)
        };
        assert_eq!(check(0), Some(Verdict::Baseline));
        assert!(matches!(check(HALF_S / 4), Some(Verdict::NotDue { .. })));
        // Beyond the 32-bit HPET's 133 s max deferment: wrap risk.
        assert_eq!(
            check(140 * 1_000_000_000),
            Some(Verdict::Reset(ResetReason::WrapRisk))
        );
        assert!(matches!(check(HALF_S), Some(Verdict::Unstable(_))));
    }

    /// A check deferred over 10 s (an idle CPU) is judged with the margin
    /// scaled to the interval: a good source (150 ppm, within crystal
    /// tolerance) passes, one 2000 ppm fast fails as over 0.5 s.
    #[test]
    fn long_intervals_are_judged_with_a_proportional_margin() {
        for (drift_ppb, stable) in [(150_000, true), (-150_000, true), (2_000_000, false)] {
            let w = World::new();
            let (h, t) = (hpet(&w), tsc(&w, drift_ppb));
            let mut reg: Registry<'_, 4> = Registry::new();
            let href = reg.register(&h).unwrap();
            let tid = reg.register(&t).unwrap();
            let mut wd: Watchdog<4> = Watchdog::new();
            assert_eq!(
                wd.check(&mut reg, href).unwrap().verdict(tid),
                Some(Verdict::Baseline)
            );
            w.advance(20 * HALF_S);
            let v = wd.check(&mut reg, href).unwrap().verdict(tid);
            let skew = match v {
                Some(Verdict::Stable(s)) if stable => s,
                Some(Verdict::Unstable(s)) if !stable => s,
                other => panic!("drift {drift_ppb} ppb: {other:?}"),
            };
            // 250 µs + 250 µs per 0.5 s, over 10 s (± the HPET's 70 ns
            // cycle at the midpoint pairing).
            assert!(
                skew.margin.as_nanos().abs_diff(10_000_000) < 1_000,
                "{:?}",
                skew.margin
            );
            assert!((skew.ppm - drift_ppb / 1000).abs() <= 1, "{skew:?}");
        }
        assert_eq!(
            scaled_margin(
                Nanos::from_micros(500),
                Nanos::from_millis(400),
                WATCHDOG_INTERVAL
            ),
            Nanos::from_micros(500)
        );
        assert_eq!(
            scaled_margin(
                Nanos::from_micros(500),
                Nanos::from_secs(3),
                WATCHDOG_INTERVAL
            ),
            Nanos::from_millis(3)
        );
    }

    #[test]
    fn max_interval_is_the_smallest_max_deferment_of_the_pair() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 0));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        reg.register(&t).unwrap();
        let hpet_idle = reg.get(href).unwrap().params().max_idle;
        // The 2.9 GHz 64-bit TSC can go far longer than the 32-bit HPET.
        assert_eq!(Watchdog::<4>::max_interval(&reg, href), Some(hpet_idle));
        assert!(hpet_idle > Nanos::from_secs(100) && hpet_idle < Nanos::from_secs(150));
    }

    #[test]
    fn untrusted_reference_is_refused() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 0));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        assert_eq!(
            wd.check(&mut reg, tid).err(),
            Some(WatchdogError::UntrustedReference)
        );
        reg.unregister(href).unwrap();
        assert_eq!(
            wd.check(&mut reg, href).err(),
            Some(WatchdogError::UnknownReference)
        );
        assert_eq!(Watchdog::pick_reference(&reg), None);
    }

    /// The whole loop with the correction: a TSC 2000 ppm slow or fast is
    /// caught at the first judged interval (0.5 s → 1.0 s), and after the
    /// switch the clocks show the reference's elapsed time since that
    /// interval's start: what they showed at the 0.5 s baseline (its error
    /// included — the reference judged nothing before it) plus what the
    /// HPET counted since. Slow: a step forward at the switch. Fast: the
    /// clocks hold 1 ms, then run on from the reference's time. Monotonic
    /// and realtime never go back, read every 10 µs around the switch.
    #[test]
    fn after_an_unstable_verdict_the_clocks_show_the_references_time() {
        for drift_ppb in [-2_000_000i64, 2_000_000] {
            let w = World::new();
            let (h, t) = (hpet(&w), tsc(&w, drift_ppb));
            let mut reg: Registry<'_, 4> = Registry::new();
            let href = reg.register(&h).unwrap();
            let tid = reg.register(&t).unwrap();
            let mut tk = Timekeeper::new(&h).unwrap();
            assert_eq!(reg.reselect(&mut tk, true), Ok(Some(tid)));
            tk.set_realtime(crate::WallTime::from_secs(1_767_225_600));
            let mut wd: Watchdog<4> = Watchdog::new();
            let mut last = (tk.monotonic(), tk.realtime());
            let mut read = |tk: &Timekeeper<'_>, w: &World| {
                let now = (tk.monotonic(), tk.realtime());
                assert!(
                    now.0 >= last.0 && now.1 >= last.1,
                    "{drift_ppb}: {last:?} -> {now:?} at {}",
                    w.now()
                );
                last = now;
                now.0.as_nanos() as i64 - w.now() as i64
            };
            let mut offset_at_baseline = None;
            let mut switched = None;
            for round in 1..=2 {
                for _ in 0..50 {
                    w.advance(HALF_S / 50);
                    tk.update();
                    read(&tk, &w);
                }
                let report = wd.check(&mut reg, href).unwrap();
                if round == 1 {
                    assert_eq!(report.verdict(tid), Some(Verdict::Baseline));
                    offset_at_baseline = Some(read(&tk, &w));
                    continue;
                }
                let Some(Verdict::Unstable(s)) = report.verdict(tid) else {
                    panic!("{drift_ppb}: {report:?}")
                };
                // 2000 ppm of 0.5 s, within the readout's pairing.
                assert!(s.skew_ns.abs().abs_diff(1_000_000) < 1_000, "{s:?}");
                assert_eq!(
                    reg.reselect_after_check(&mut tk, true, &report),
                    Ok(Some(href))
                );
                switched = Some((w.now(), s));
            }
            let (at, s) = switched.expect("switched at the first judged interval");
            let base = offset_at_baseline.unwrap();
            // Around the switch, every 10 µs for 3 ms.
            let mut held = 0;
            for _ in 0..300 {
                let before = tk.monotonic();
                w.advance(10_000);
                tk.update();
                let off = read(&tk, &w);
                if tk.monotonic() == before {
                    held += 1;
                    continue;
                }
                // The reference's error: a 70 ns HPET cycle at each end of
                // the judged interval and at the switch, and the TSC's
                // conversion (under 1 ns per cycle read).
                assert!(
                    off.abs_diff(base) <= 3 * 70 + 2,
                    "{drift_ppb}: {off} vs {base} at {}",
                    w.now() - at
                );
            }
            if drift_ppb > 0 {
                // Held for the 1 ms the TSC ran ahead: the reads of the
                // first 1 ms (the one at its end too, if the HPET's 70 ns
                // cycle has not quite ticked over).
                let hold_reads = s.skew_ns as u64 / 10_000;
                assert!(
                    (hold_reads..=hold_reads + 1).contains(&held),
                    "{held} {s:?}"
                );
            } else {
                assert_eq!(held, 0, "a slow clock steps forward, never holds");
            }
            assert_eq!(tk.clocksource().name(), "hpet");
        }
    }

    /// An unstable source the clocks do not run on changes nothing in them.
    #[test]
    fn an_unstable_source_not_in_use_leaves_the_clocks_alone() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 2_000_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        reg.set_override("hpet").unwrap();
        let mut tk = Timekeeper::new(&h).unwrap();
        reg.set_current(href).unwrap();
        let mut wd: Watchdog<4> = Watchdog::new();
        let v = run(&w, &mut wd, &mut reg, href, tid, 1);
        assert_eq!(v[0], Some(Verdict::Baseline));
        w.advance(HALF_S);
        tk.update();
        let before = tk.monotonic();
        let report = wd.check(&mut reg, href).unwrap();
        assert!(report.any_unstable());
        assert_eq!(reg.reselect_after_check(&mut tk, true, &report), Ok(None));
        assert_eq!(tk.monotonic(), before);
    }

    /// The whole loop: tick updates, watchdog checks, reselect on failure.
    #[test]
    fn after_marking_reselect_moves_the_timekeeper_to_the_reference() {
        let w = World::new();
        let (h, t) = (hpet(&w), tsc(&w, 2_000_000));
        let mut reg: Registry<'_, 4> = Registry::new();
        let href = reg.register(&h).unwrap();
        let tid = reg.register(&t).unwrap();
        let mut tk = Timekeeper::new(&h).unwrap();
        assert_eq!(reg.reselect(&mut tk, true), Ok(Some(tid)));
        let mut wd: Watchdog<4> = Watchdog::new();
        let mut last = Ktime::ZERO;
        let mut switched_at = None;
        for round in 1..=10 {
            for _ in 0..50 {
                w.advance(HALF_S / 50); // 10 ms ticks
                tk.update();
                let now = tk.monotonic();
                assert!(now >= last, "round {round}: {last:?} -> {now:?}");
                last = now;
            }
            let report = wd.check(&mut reg, href).unwrap();
            if report.any_unstable() {
                assert_eq!(report.newly_unstable().collect::<Vec<_>>(), [tid]);
                assert_eq!(reg.reselect(&mut tk, true), Ok(Some(href)));
                switched_at = Some(round);
            }
            let now = tk.monotonic();
            assert!(now >= last);
            last = now;
        }
        assert_eq!(switched_at, Some(2));
        assert_eq!(reg.current(), Some(href));
        assert_eq!(tk.clocksource().name(), "hpet");
    }
}
