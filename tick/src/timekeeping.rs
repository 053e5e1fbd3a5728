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
//! What every CPU's interrupt path needs of it without taking its lock —
//! who holds the duty, who last held it, which CPUs run one-shot, the max
//! deferment, the clocksource's resolution — is mirrored in [`Words`],
//! atomics each CPU writes for itself (Linux likewise reads
//! `tick_do_timer_cpu` with `READ_ONCE` and races benignly on it).
//!
//! Jiffies are derived from monotonic time (`(now − last update) /
//! period`), never counted from interrupts, so a lost or coalesced
//! interrupt loses no time (Linux `tick_do_update_jiffies64`).

// The model-checked build (`--cfg loom`, this crate's tests) runs the
// shared words on loom's atomics, whose every interleaving it explores.
#[cfg(not(all(loom, test)))]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(all(loom, test))]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use clockevents::{CpuId, CpuMask};
use clocksource::{
    ClockSource, ConversionError, Cycles, Ktime, Nanos, Registry, Timekeeper, WatchdogReport,
};

use crate::grid::{Jiffies, TickGrid};
use crate::system::{RegisterError, MAX_CLOCK_SOURCES};
use crate::watchdog::WatchdogTimer;

/// Timekeeping shared by all CPUs.
pub(crate) struct Timekeeping<'a> {
    pub(crate) tk: Timekeeper<'a>,
    pub(crate) clocks: Registry<'a, MAX_CLOCK_SOURCES>,
    pub(crate) grid: TickGrid,
    /// The clocksource watchdog's schedule (run by the watchdog CPU, under
    /// this lock: a check may change the clocksource).
    pub(crate) watchdog: WatchdogTimer,
    jiffies: Jiffies,
    /// The grid point jiffies were last brought up to.
    last_jiffies_update: Ktime,
}

/// No CPU holds the duty (Linux `TICK_DO_TIMER_NONE`).
const NO_CPU: u32 = u32::MAX;

/// The shared words the interrupt path reads without a lock.
pub(crate) struct Words {
    /// The CPU doing the timekeeping duty ([`NO_CPU`]: every CPU that held
    /// it stopped its tick in idle; the next CPU whose tick runs takes it).
    duty: AtomicU32,
    /// CPUs that stopped their tick holding the duty, nobody having taken
    /// it since ([`CpuMask`] bits; each CPU's `do_timer_last`, gathered).
    last_holders: AtomicU64,
    /// CPUs whose tick device runs in a one-shot mode ([`CpuMask`] bits).
    oneshot: AtomicU64,
    /// The timekeeper's max deferment, in ns.
    max_deferment: AtomicU64,
    /// One cycle of the clocksource plus 1 ns, in ns.
    resolution: AtomicU64,
    /// Jiffies, as last brought up to date.
    jiffies: AtomicU64,
    /// The clocksource watchdog's deadline for its CPU with the tick
    /// running, and with it stopped ([`WatchdogTimer::deadline`]), in ns.
    watchdog: [AtomicU64; 2],
}

impl Words {
    /// CPU 0 holding the duty; the rest from `t`.
    pub(crate) fn new(t: &Timekeeping<'_>) -> Self {
        let w = Words {
            duty: AtomicU32::new(CpuId::BOOT.index() as u32),
            last_holders: AtomicU64::new(0),
            oneshot: AtomicU64::new(0),
            max_deferment: AtomicU64::new(0),
            resolution: AtomicU64::new(0),
            jiffies: AtomicU64::new(0),
            watchdog: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
        };
        w.refresh(t);
        w
    }

    /// Takes jiffies, the timekeeper's max deferment and its resolution,
    /// and the watchdog's deadlines (after an update, a change of
    /// clocksource or of frequency, a new watchdog schedule).
    pub(crate) fn refresh(&self, t: &Timekeeping<'_>) {
        let tk = &t.tk;
        self.jiffies.store(t.jiffies().get(), Ordering::Release);
        for (w, stopped) in self.watchdog.iter().zip([false, true]) {
            w.store(t.watchdog.deadline(stopped).as_nanos(), Ordering::Release);
        }
        let resolution = tk
            .cycles_to_ns(Cycles::new(1))
            .saturating_add(Nanos::from_nanos(1));
        self.max_deferment
            .store(tk.max_deferment().as_nanos(), Ordering::Relaxed);
        self.resolution
            .store(resolution.as_nanos(), Ordering::Relaxed);
    }

    /// The watchdog's deadline for its CPU, whose tick is stopped or not,
    /// as last scheduled.
    pub(crate) fn watchdog_deadline(&self, tick_stopped: bool) -> Ktime {
        Ktime::from_nanos(self.watchdog[usize::from(tick_stopped)].load(Ordering::Acquire))
    }

    /// Jiffies, as last brought up to date.
    pub(crate) fn jiffies(&self) -> Jiffies {
        Jiffies::ZERO.saturating_add(self.jiffies.load(Ordering::Acquire))
    }

    /// The timekeeper's max deferment.
    pub(crate) fn max_deferment(&self) -> Nanos {
        Nanos::from_nanos(self.max_deferment.load(Ordering::Relaxed))
    }

    /// One clocksource cycle plus 1 ns.
    pub(crate) fn resolution(&self) -> Nanos {
        Nanos::from_nanos(self.resolution.load(Ordering::Relaxed))
    }

    /// The CPU holding the duty.
    pub(crate) fn duty(&self) -> Option<CpuId> {
        match self.duty.load(Ordering::Acquire) {
            NO_CPU => None,
            c => Some(CpuId::new(c)),
        }
    }

    /// Whether `cpu` holds the duty.
    pub(crate) fn holds_duty(&self, cpu: CpuId) -> bool {
        self.duty() == Some(cpu)
    }

    /// `cpu` takes the duty if nobody holds it; returns whether it did.
    pub(crate) fn claim_duty(&self, cpu: CpuId) -> bool {
        self.duty
            .compare_exchange(
                NO_CPU,
                cpu.index() as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// `cpu` gives the duty up if it holds it; returns whether it did.
    pub(crate) fn release_duty(&self, cpu: CpuId) -> bool {
        self.duty
            .compare_exchange(
                cpu.index() as u32,
                NO_CPU,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Records `cpu`'s `do_timer_last`.
    pub(crate) fn set_last_holder(&self, cpu: CpuId, last: bool) {
        set_bit(&self.last_holders, cpu, last);
    }

    /// The first CPU (by index) that last held the duty.
    pub(crate) fn first_last_holder(&self) -> Option<CpuId> {
        let bits = self.last_holders.load(Ordering::Acquire);
        (bits != 0)
            .then(|| CpuId::from_index(bits.trailing_zeros() as usize))
            .flatten()
    }

    /// Records whether `cpu` runs a one-shot mode.
    pub(crate) fn set_oneshot(&self, cpu: CpuId, oneshot: bool) {
        set_bit(&self.oneshot, cpu, oneshot);
    }

    /// Whether any CPU runs a one-shot mode.
    pub(crate) fn any_oneshot(&self) -> bool {
        self.oneshot.load(Ordering::Acquire) != 0
    }
}

/// Sets or clears `cpu`'s bit of a [`CpuMask`]-bits word.
fn set_bit(word: &AtomicU64, cpu: CpuId, on: bool) {
    let bit = CpuMask::single(cpu).bits();
    if on {
        word.fetch_or(bit, Ordering::AcqRel);
    } else {
        word.fetch_and(!bit, Ordering::AcqRel);
    }
}

impl<'a> Timekeeping<'a> {
    /// Timekeeping on `cs`, the tick grid of `period`, jiffies counting
    /// from the grid point at or before now.
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
            watchdog: WatchdogTimer::new(),
            jiffies: Jiffies::ZERO,
            last_jiffies_update,
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
        let t = Words::new(&Timekeeping::new(&clock, MS4).unwrap());
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
