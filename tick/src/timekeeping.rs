//! The shared timekeeping state: the timekeeper and its clock sources,
//! the tick grid, jiffies, and which CPU does the timekeeping duty.
//!
//! One instance serves every CPU (Linux's `tk_core`, `jiffies_64`,
//! `tick_do_timer_cpu`, kernel/time/timekeeping.c and tick-common.c).
//! Every CPU reads it; only the duty holder — or a CPU woken from NO_HZ
//! idle with its tick stopped, before it acts on jiffies — writes it, in
//! [`Timekeeping::update_jiffies`]. On SMP it is the part that sits behind
//! a seqlock (readers retry, the one writer holds it for the update).
//!
//! Jiffies are derived from monotonic time (`(now − last update) /
//! period`), never counted from interrupts, so a lost or coalesced
//! interrupt loses no time (Linux `tick_do_update_jiffies64`).

use clockevents::CpuId;
use clocksource::{
    ClockSource, ConversionError, Ktime, Nanos, Registry, Timekeeper, WatchdogReport,
};

use crate::grid::{Jiffies, TickGrid};
use crate::system::{RegisterError, MAX_CLOCK_SOURCES};

/// Timekeeping shared by all CPUs.
pub(crate) struct Timekeeping<'a> {
    pub(crate) tk: Timekeeper<'a>,
    pub(crate) clocks: Registry<'a, MAX_CLOCK_SOURCES>,
    pub(crate) grid: TickGrid,
    jiffies: Jiffies,
    /// The grid point jiffies were last brought up to.
    last_jiffies_update: Ktime,
    /// The CPU doing the timekeeping duty (`None`: every CPU that held it
    /// stopped its tick in idle; the next CPU whose tick runs takes it).
    do_timer_cpu: Option<CpuId>,
}

impl<'a> Timekeeping<'a> {
    /// Timekeeping on `cs`, the tick grid of `period`, CPU 0 holding the
    /// duty and jiffies counting from the grid point at or before now.
    pub(crate) fn new(cs: &'a dyn ClockSource, period: Nanos) -> Result<Self, RegisterError> {
        let mut clocks = Registry::new();
        let cs_id = clocks.register(cs).map_err(RegisterError::Clock)?;
        // The timekeeper starts on `cs`; recorded as the registry's current.
        let _ = clocks.set_current(cs_id);
        let tk = Timekeeper::new(cs).map_err(|e: ConversionError| {
            RegisterError::Clock(clocksource::RegisterError::BadFrequency(e))
        })?;
        let grid = TickGrid::new(period);
        let last_jiffies_update = grid.floor(tk.monotonic());
        Ok(Timekeeping {
            tk,
            clocks,
            grid,
            jiffies: Jiffies::ZERO,
            last_jiffies_update,
            do_timer_cpu: Some(CpuId::BOOT),
        })
    }

    /// Monotonic time now.
    pub(crate) fn now(&self) -> Ktime {
        self.tk.monotonic()
    }

    /// Ticks since boot.
    pub(crate) fn jiffies(&self) -> Jiffies {
        self.jiffies
    }

    /// Brings the timekeeper and jiffies up to `now` (Linux
    /// `tick_do_update_jiffies64`): jiffies advance by the whole periods
    /// since the last update, which moves along the grid by as many.
    pub(crate) fn update_jiffies(&mut self, now: Ktime) {
        self.tk.update();
        let ticks = self.grid.periods_between(self.last_jiffies_update, now);
        if ticks > 0 {
            self.jiffies = self.jiffies.saturating_add(ticks);
            let p = self.grid.period().as_nanos().max(1);
            self.last_jiffies_update = self
                .last_jiffies_update
                .saturating_add(Nanos::from_nanos(ticks * p));
        }
    }

    // ----- the timekeeping duty ---------------------------------------------

    /// The CPU holding the duty.
    pub(crate) fn duty(&self) -> Option<CpuId> {
        self.do_timer_cpu
    }

    /// Whether `cpu` holds the duty.
    pub(crate) fn holds_duty(&self, cpu: CpuId) -> bool {
        self.do_timer_cpu == Some(cpu)
    }

    /// `cpu` takes the duty if nobody holds it; returns whether it did.
    pub(crate) fn claim_duty(&mut self, cpu: CpuId) -> bool {
        if self.do_timer_cpu.is_none() {
            self.do_timer_cpu = Some(cpu);
            true
        } else {
            false
        }
    }

    /// `cpu` gives the duty up if it holds it; returns whether it did.
    pub(crate) fn release_duty(&mut self, cpu: CpuId) -> bool {
        if self.holds_duty(cpu) {
            self.do_timer_cpu = None;
            true
        } else {
            false
        }
    }

    // ----- clock sources ------------------------------------------------------

    /// Re-selects the clocksource (`hres`: some CPU runs one-shot, so the
    /// choice must be valid for high resolution); `after` is the watchdog
    /// check that found a source unstable, whose error the clocks then
    /// lose if they ran on it ([`Registry::reselect_after_check`]). Returns
    /// whether the clocks moved to another source.
    pub(crate) fn reselect(
        &mut self,
        hres: bool,
        after: Option<&WatchdogReport<MAX_CLOCK_SOURCES>>,
    ) -> bool {
        let result = match after {
            Some(report) => self.clocks.reselect_after_check(&mut self.tk, hres, report),
            None => self.clocks.reselect(&mut self.tk, hres),
        };
        match result {
            Ok(switched) => switched.is_some(),
            Err(e) => {
                log::error!("tick: clocksource reselection failed: {e:?}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeClock;

    const MS4: Nanos = Nanos::from_millis(4);

    #[test]
    fn jiffies_count_whole_periods_of_the_clock() {
        let clock = FakeClock::new("fake", 100);
        let mut t = Timekeeping::new(&clock, MS4).unwrap();
        assert_eq!(t.jiffies(), 0);
        clock.advance(Nanos::from_micros(10_500)); // 2.625 periods
        t.update_jiffies(t.now());
        assert_eq!(t.jiffies(), 2);
        clock.advance(Nanos::from_micros(1_500)); // 12 ms: 3 periods in all
        t.update_jiffies(t.now());
        assert_eq!(t.jiffies(), 3);
    }

    #[test]
    fn a_time_before_the_last_update_changes_nothing() {
        let clock = FakeClock::new("fake", 100);
        let mut t = Timekeeping::new(&clock, MS4).unwrap();
        clock.advance(Nanos::from_millis(8));
        t.update_jiffies(t.now());
        t.update_jiffies(Ktime::ZERO);
        assert_eq!(t.jiffies(), 2);
    }

    #[test]
    fn the_duty_is_held_by_one_cpu_at_a_time() {
        let clock = FakeClock::new("fake", 100);
        let mut t = Timekeeping::new(&clock, MS4).unwrap();
        let (cpu0, cpu1) = (CpuId::BOOT, CpuId::new(1));
        assert_eq!(t.duty(), Some(cpu0));
        assert!(!t.claim_duty(cpu1));
        assert!(!t.release_duty(cpu1));
        assert!(t.release_duty(cpu0));
        assert_eq!(t.duty(), None);
        assert!(t.claim_duty(cpu1));
        assert!(t.holds_duty(cpu1));
        assert!(!t.claim_duty(cpu0));
    }

    #[test]
    fn a_better_source_registered_later_is_selected() {
        let slow = FakeClock::new("slow", 100);
        let fast = FakeClock::new("fast", 300);
        let mut t = Timekeeping::new(&slow, MS4).unwrap();
        t.clocks.register(&fast).unwrap();
        assert!(t.reselect(true, None));
        assert_eq!(t.tk.clocksource().name(), "fast");
        assert!(!t.reselect(true, None));
    }
}
