//! When the clocksource watchdog runs: its schedule, deferred in idle.
//!
//! [`clocksource::Watchdog`] judges `MUST_VERIFY` sources; it owns no
//! timer. This module is its timer: with a `MUST_VERIFY` clocksource
//! registered (a TSC without the invariant bit), the CPU holding the
//! timekeeping duty (else the last that held it, else CPU 0; below, "the
//! watchdog CPU") checks it against a
//! trusted one every 0.5 s while its tick runs, as Linux does
//! (`WATCHDOG_INTERVAL`, kernel/time/clocksource.c). Linux's watchdog is a
//! timer that wakes an idle CPU every 0.5 s too (most of the ~2 wake-ups/s
//! of an idle Linux guest under TCG); here, with the watchdog CPU's tick stopped, a
//! check that is due runs in the CPU's next wake-up for anything else, and
//! a wake-up of its own is forced only when the last check is
//! [`WATCHDOG_IDLE_DEFERRAL_MAX`] = 1 s old (or 7/8 of the pair's smaller
//! max deferment, [`Watchdog::max_interval`], if that is shorter, so that
//! no counter has wrapped unseen). The watchdog scales its margin with the
//! interval ([`clocksource::watchdog::scaled_margin`]), so the check that
//! spans an idle period judges it — which is the one that sees a TSC
//! halted in a deep C-state.
//!
//! **The bound, and why 1 s.** A source is unstable when it is off by more
//! than the two sources' margins: 250 + 250 µs per 0.5 s (Linux's
//! uncertainty margins, 2 × `WATCHDOG_MAX_SKEW` = 125 µs each), about
//! 1000 ppm. A source going wrong at that rate runs up 1 ms of error in
//! 1 s — twice what one regular check tolerates, and as much as Linux
//! lets through: it judges intervals up to `WATCHDOG_INTERVAL_MAX_NS` =
//! 2 × `WATCHDOG_INTERVAL` = 1 s (a late watchdog timer) and skips longer
//! ones. So a must-verify clock runs unchecked here no longer than Linux's
//! longest judged interval, with half Linux's idle wake-ups for it (1/s
//! where Linux takes 2/s), and none at all when something else wakes the
//! CPU at least every 0.5 s. The bound is the device's time after the last
//! check; a clock running under half speed (or stopped) reads short of the
//! check's due time at that wake-up, and the next interrupt found early
//! checks it (two in a row, see the interrupt path in [`crate::interrupt`]):
//! 2 s at most.
//!
//! **When the clocks' own source is found unstable**, they switch to the
//! best source left and lose the error the bad one put in them since its
//! last good check, as the reference measured it
//! ([`clocksource::Registry::reselect_after_check`]): if it ran slow,
//! monotonic and realtime step forward to the reference's time; if it ran
//! fast, they hold until the reference's time reaches them, then run on
//! from it — never backwards ([`clocksource::Timekeeper::correct`]). Linux
//! only switches, keeping the error. For the measured error to be no more
//! than what the clocks carry, every switch of source restarts the
//! watchdog's baselines at once: a judged
//! interval never reaches back before the clocks moved onto the source it
//! judges.
//!
//! The schedule is shared state of the watchdog CPU, which moves with the
//! timekeeping duty; no other CPU reads or writes it.

use clocksource::{ClockSourceFlags, Ktime, Nanos, Registry, Watchdog, WatchdogReport};

use crate::system::MAX_CLOCK_SOURCES;

/// The longest the watchdog CPU leaves a `MUST_VERIFY` clocksource unchecked while
/// idle with its tick stopped, however long the counters could go: 1 s,
/// the longest interval Linux's watchdog judges (`WATCHDOG_INTERVAL_MAX_NS`
/// = 2 × `WATCHDOG_INTERVAL`, kernel/time/clocksource.c). A source wrong by
/// the watchdog's threshold (≈ 1000 ppm) runs up 1 ms in it (module docs).
pub const WATCHDOG_IDLE_DEFERRAL_MAX: Nanos = Nanos::from_secs(1);

/// The clocksource watchdog's schedule ([`crate::TickSystem::watchdog_schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSchedule {
    /// When it last ran (or was scheduled from).
    pub last_run: Ktime,
    /// When the next check is due on the regular 0.5 s schedule; it runs in
    /// The watchdog CPU's first interrupt at or after this.
    pub next_due: Ktime,
    /// When the watchdog CPU, idle with its tick stopped, is woken for it:
    /// `last_run` + `deferral` (or `next_due`, if later).
    pub idle_deadline: Ktime,
    /// How long an idle watchdog CPU may defer the check.
    pub deferral: Nanos,
}

/// The watchdog and its timer.
pub(crate) struct WatchdogTimer {
    watchdog: Watchdog<MAX_CLOCK_SOURCES>,
    /// The next regular check (`Ktime::MAX`: nothing to verify).
    next: Ktime,
    /// When the watchdog last ran (its regular schedule counts from here).
    last: Ktime,
    /// How long the watchdog CPU may defer a check while idle with its tick stopped.
    deferral: Nanos,
}

impl WatchdogTimer {
    /// A watchdog with nothing scheduled.
    pub(crate) fn new() -> Self {
        WatchdogTimer {
            watchdog: Watchdog::new(),
            next: Ktime::MAX,
            last: Ktime::ZERO,
            deferral: Nanos::ZERO,
        }
    }

    /// Whether a check is scheduled at all (some source must be verified
    /// and a reference exists).
    pub(crate) fn is_armed(&self) -> bool {
        !self.next.is_never()
    }

    /// Whether the regular check is due at `now`.
    pub(crate) fn is_due(&self, now: Ktime) -> bool {
        now >= self.next
    }

    /// Schedules the next check from `now`: one interval ahead if a
    /// `MUST_VERIFY`, still stable source and a reference exist, else
    /// never; and the idle deferral, 7/8 of the longest interval a check
    /// can judge (a wake-up a little late still finds both counters
    /// unwrapped), at most [`WATCHDOG_IDLE_DEFERRAL_MAX`], at least one
    /// interval.
    pub(crate) fn schedule(&mut self, clocks: &Registry<'_, MAX_CLOCK_SOURCES>, now: Ktime) {
        let must_verify = clocks
            .iter()
            .any(|e| e.flags().contains(ClockSourceFlags::MUST_VERIFY) && !e.is_unstable());
        let reference = Watchdog::pick_reference(clocks);
        self.last = now;
        self.next = match reference {
            Some(_) if must_verify => now.saturating_add(self.watchdog.interval()),
            _ => Ktime::MAX,
        };
        let judgeable = reference
            .and_then(|r| Watchdog::max_interval(clocks, r))
            .unwrap_or(Nanos::ZERO);
        self.deferral = Nanos::from_nanos(judgeable.as_nanos() / 8 * 7)
            .min(WATCHDOG_IDLE_DEFERRAL_MAX)
            .max(self.watchdog.interval());
    }

    /// When the watchdog CPU must wake for the check: at its regular schedule while
    /// the tick runs; with the tick stopped, not before the check would
    /// span the deferral.
    pub(crate) fn deadline(&self, tick_stopped: bool) -> Ktime {
        if self.next.is_never() || !tick_stopped {
            return self.next;
        }
        self.next.max(self.last.saturating_add(self.deferral))
    }

    /// The schedule; `None` when nothing needs verifying.
    pub(crate) fn snapshot(&self) -> Option<WatchdogSchedule> {
        if self.next.is_never() {
            return None;
        }
        Some(WatchdogSchedule {
            last_run: self.last,
            next_due: self.next,
            idle_deadline: self.deadline(true),
            deferral: self.deferral,
        })
    }

    /// One check now against the best trusted source, leaving the regular
    /// schedule alone (an early check must not postpone the next regular
    /// one). Returns the report when it found a source unstable: the
    /// caller re-selects the clocksource with it.
    pub(crate) fn check(
        &mut self,
        clocks: &mut Registry<'_, MAX_CLOCK_SOURCES>,
    ) -> Option<WatchdogReport<MAX_CLOCK_SOURCES>> {
        let reference = Watchdog::pick_reference(clocks)?;
        match self.watchdog.check(clocks, reference) {
            Ok(report) if report.any_unstable() => Some(report),
            Ok(_) => None,
            Err(e) => {
                log::warn!("tick: clocksource watchdog: {e:?}");
                None
            }
        }
    }

    /// The clocks moved to another source: the baselines start again at
    /// once, so that every interval the watchdog judges was kept by one
    /// source, and the error an "unstable" verdict takes out of the clocks
    /// is no more than they carry (module docs).
    pub(crate) fn restart(&mut self, clocks: &mut Registry<'_, MAX_CLOCK_SOURCES>) {
        self.watchdog.reset();
        if let Some(reference) = Watchdog::pick_reference(clocks) {
            // After a reset every verdict is a baseline (or a skipped round).
            let _ = self.watchdog.check(clocks, reference);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeClock;

    fn t(ms: u64) -> Ktime {
        Ktime::from_nanos(ms * 1_000_000)
    }

    /// A registry of `reference` and a must-verify TSC, and a watchdog.
    fn pair<'a>(
        reference: &'a FakeClock,
        tsc: &'a FakeClock,
    ) -> (Registry<'a, MAX_CLOCK_SOURCES>, WatchdogTimer) {
        let mut clocks = Registry::new();
        clocks.register(reference).unwrap();
        clocks.register(tsc).unwrap();
        (clocks, WatchdogTimer::new())
    }

    #[test]
    fn nothing_to_verify_schedules_nothing() {
        let hpet = FakeClock::new("hpet", 250);
        let mut clocks = Registry::new();
        clocks.register(&hpet).unwrap();
        let mut w = WatchdogTimer::new();
        w.schedule(&clocks, t(0));
        assert!(!w.is_armed());
        assert_eq!(w.snapshot(), None);
        assert_eq!(w.deadline(true), Ktime::MAX);
    }

    #[test]
    fn a_must_verify_source_is_checked_every_half_second_and_deferred_to_one_in_idle() {
        let hpet = FakeClock::new("hpet", 250);
        let tsc = FakeClock::must_verify("tsc", 300);
        let (clocks, mut w) = pair(&hpet, &tsc);
        w.schedule(&clocks, t(100));
        // Linux's WATCHDOG_INTERVAL: 0.5 s; the idle bound: 1 s (both fake
        // counters are 64-bit, so no wrap shortens it).
        let s = w.snapshot().unwrap();
        assert_eq!(s.last_run, t(100));
        assert_eq!(s.next_due, t(600));
        assert_eq!(s.deferral, Nanos::from_secs(1));
        assert_eq!(s.idle_deadline, t(1100));
        assert_eq!(w.deadline(false), t(600));
        assert!(!w.is_due(t(599)));
        assert!(w.is_due(t(600)));
    }

    #[test]
    fn a_short_counter_shortens_the_idle_deferral_to_seven_eighths_of_its_range() {
        // A 24-bit counter at 3.579545 MHz (the ACPI PM timer, ACPI 6.5
        // §4.8.3.3) wraps every 4.687 s; a 2^20-cycle one at 1 GHz every
        // 1.048576 ms — shorter than an interval: the deferral is then the
        // interval itself, never less.
        let short = FakeClock::with_mask("short", 250, (1 << 20) - 1);
        let tsc = FakeClock::must_verify("tsc", 300);
        let (clocks, mut w) = pair(&short, &tsc);
        w.schedule(&clocks, t(0));
        assert_eq!(w.snapshot().unwrap().deferral, Nanos::from_millis(500));
    }

    #[test]
    fn a_stable_pair_checks_clean() {
        let hpet = FakeClock::new("hpet", 250);
        let tsc = FakeClock::must_verify("tsc", 300);
        let (mut clocks, mut w) = pair(&hpet, &tsc);
        w.restart(&mut clocks); // baseline
        hpet.advance(Nanos::from_millis(500));
        tsc.advance(Nanos::from_millis(500));
        assert!(w.check(&mut clocks).is_none());
        // The TSC stops: 500 ms of skew is far past the 500 µs margin.
        hpet.advance(Nanos::from_millis(500));
        let report = w.check(&mut clocks).expect("a stopped TSC is unstable");
        assert!(report.any_unstable());
    }
}
