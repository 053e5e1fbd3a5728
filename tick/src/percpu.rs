//! One CPU's tick state: its tick device, timer queue, mode, idle
//! accounting and counters (Linux's per-CPU `tick_cpu_device`,
//! `tick_cpu_sched` and `hrtimer_cpu_base`, kernel/time/tick-sched.c and
//! hrtimer.c).
//!
//! Everything here belongs to its CPU: only that CPU changes it, in its
//! interrupt, its idle loop, or when it queues or cancels its own timers.
//! Another CPU reads it only through a [`CpuInfo`] snapshot. On SMP this is
//! the part that sits in per-CPU storage, or behind a lock of its own that
//! only its CPU takes on the interrupt path.
//!
//! The methods take what they need of the shared state as arguments (the
//! tick grid, the clocksource's max deferment, the watchdog's deadline), so
//! they touch nothing but this CPU.

use clockevents::{CpuId, DeviceId, EventDevice, Expired, ProgramError};
use clocksource::{Ktime, Nanos};

use crate::advance::{Advance, MAX_STALLED_READS, MAX_TIMER_ADVANCE};
use crate::config::{PeriodicReason, TickMode};
use crate::grid::{Jiffies, TickGrid};
use crate::queue::{TimerQueue, TimerSlot};
use crate::system::{Rearm, TimerFn};

/// Per-CPU counters, for tests and the boot table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Interrupts handled for this CPU (own device or broadcast IPI).
    pub interrupts: u64,
    /// Ticks: interrupts that did tick work.
    pub ticks: u64,
    /// Timers run.
    pub timers_fired: u64,
    /// Times the tick was stopped on idle entry.
    pub tick_stops: u64,
    /// Times the tick was kept on idle entry: a timer was due within the
    /// next tick, or the tick's interrupt was due within the device's min
    /// delta ([`CpuStats::tick_retained_due`]).
    pub tick_retained: u64,
    /// Of [`CpuStats::tick_retained`], the times the programmed interrupt
    /// was due within the tick device's min delta of idle entry: it may
    /// already be raised, so it is left to do the tick's work.
    pub tick_retained_due: u64,
    /// Wake-ups forced by the clocksource's max deferment while idle.
    pub max_deferment_wakeups: u64,
    /// Wake-ups while idle with the tick stopped that came for the
    /// clocksource watchdog's deadline (earlier than anything else this CPU
    /// was programmed for): the watchdog CPU's only.
    pub watchdog_wakeups: u64,
    /// Times the timer run stopped early (hang protection).
    pub timer_runs_deferred: u64,
    /// Device programming that failed for good.
    pub program_failures: u64,
    /// Spins to an advanced deadline ended because the clocksource stopped
    /// moving ([`crate::advance`]).
    pub advance_spin_stalls: u64,
    /// Times `timer_advance=auto` backed off: with the lead in force the
    /// handler was still later than any lead could make up
    /// ([`crate::advance`]).
    pub advance_back_offs: u64,
    /// Interrupts taken in NO_HZ idle that left the re-arm (and, with the
    /// tick running, the decision to stop it) to the idle loop
    /// (`idle_sleep` / `idle_exit`) instead of programming the device in
    /// the handler.
    pub rearms_deferred: u64,
    /// Interrupts of another CPU's tick device taken here (a mis-routed
    /// IRQ, or an affinity change racing an interrupt), forwarded to the
    /// owner with a tick IPI ([`TickSystem::interrupt`](crate::TickSystem::interrupt)).
    pub forwarded: u64,
    /// Kick IPIs handled ([`TickSystem::kicked`](crate::TickSystem::kicked)):
    /// another CPU queued a timer here earlier than this CPU's next event.
    pub kicks: u64,
}

/// A snapshot of one CPU for the boot table and tests.
#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    /// The tick device's name, if any.
    pub device: Option<&'static str>,
    /// The device's state.
    pub device_state: Option<clockevents::DeviceState>,
    /// The tick mode reached.
    pub mode: TickMode,
    /// Why the mode is periodic though one-shot was asked for.
    pub periodic_reason: Option<PeriodicReason>,
    /// Whether the tick is stopped.
    pub tick_stopped: bool,
    /// Whether the broadcast device stands in for the local one.
    pub in_broadcast: bool,
    /// Total idle time accounted.
    pub idle_time: Nanos,
    /// Jiffies that passed while the tick was stopped in idle.
    pub idle_jiffies: u64,
    /// Timers queued.
    pub timers_queued: usize,
    /// How early events are programmed now ([`crate::TimerAdvance`]; 0
    /// while auto has backed off).
    pub timer_advance: Nanos,
    /// `timer_advance=auto`: the delivery delay learned.
    pub advance_delay: Nanos,
    /// Time spent spinning from an advanced interrupt to its deadline.
    pub advance_spun: Nanos,
    /// Counters.
    pub stats: CpuStats,
}

/// What one interrupt of the CPU's own device showed
/// ([`TickCpu::observe_interrupt`]).
pub(crate) struct Observed {
    /// Twice in a row the clocksource read short of the device's expiry by
    /// more than its min delta: the clocksource is the suspect.
    pub(crate) clock_behind: bool,
    /// How early the event was programmed (a timer advance), 0 if not.
    pub(crate) advanced: Nanos,
}

/// Idle time and jiffies accounted over the CPU's idle periods.
#[derive(Clone, Copy, Default)]
struct IdleAccount {
    /// When the current idle period began, and jiffies then.
    entry: Ktime,
    entry_jiffies: Jiffies,
    /// Totals over the idle periods that ended.
    time: Nanos,
    jiffies: u64,
}

/// What a CPU's next event is for ([`TickCpu::next_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeFor {
    /// Its tick or a timer (or nothing at all).
    Own,
    /// The max-deferment cap of the last timekeeping-duty holder.
    MaxDeferment,
    /// The clocksource watchdog's deadline, earlier than anything of its own.
    Watchdog,
}

/// One CPU's tick state.
pub(crate) struct TickCpu<'a, S> {
    pub(crate) dev: Option<(DeviceId, EventDevice<'a>)>,
    pub(crate) mode: TickMode,
    pub(crate) periodic_reason: Option<PeriodicReason>,
    pub(crate) timers: TimerQueue<S>,
    /// The next tick deadline (one-shot modes), on the grid `k·period`.
    pub(crate) next_tick: Ktime,
    pub(crate) tick_stopped: bool,
    pub(crate) idle: bool,
    idle_account: IdleAccount,
    /// The local device is off and the broadcast device stands in for it.
    pub(crate) in_broadcast: bool,
    /// The CPU went into deep idle and has not since found the broadcast
    /// state owing it nothing: its reprogramming must ask that state
    /// whether a broadcast IPI is still to handle its event. Only the
    /// broadcast handler of a CPU in the mask, or its own exit, can make
    /// one owed, so once clear out of the mask it stays clear until the
    /// CPU goes deep again; the common reprogramming takes no shared lock.
    pub(crate) bc_owed: bool,
    /// This CPU gave up the timekeeping duty when it stopped its tick and
    /// nobody took it since (Linux `do_timer_last`).
    pub(crate) do_timer_last: bool,
    /// The wake-up programmed last, and what it is for (counted in
    /// [`CpuStats`] when it comes while the tick is stopped).
    pub(crate) wakeup: (Ktime, WakeFor),
    /// An interrupt in idle left the re-arm to the idle loop (`idle_sleep`
    /// or `idle_exit` programs the next event); cleared by any reprogram.
    pub(crate) rearm_pending: bool,
    /// A kick IPI was asked for ([`crate::Kick::Ipi`]) and neither taken
    /// ([`crate::TickSystem::kicked`]) nor made moot by this CPU's own
    /// reprogramming since: a timer queued here from elsewhere meanwhile
    /// rides on it (the kicked CPU programs for its whole queue).
    pub(crate) kick_pending: bool,
    /// What the device was last programmed for (before any advance).
    target: Ktime,
    /// Consecutive interrupts that came before the clocksource reached
    /// their expiry.
    behind_streak: u32,
    /// Adaptive timer advance.
    pub(crate) advance: Advance,
    pub(crate) stats: CpuStats,
}

impl<'a, S> TickCpu<'a, S>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// A CPU with no tick device yet, its timers in `storage`.
    pub(crate) fn new(storage: S) -> Self {
        TickCpu {
            dev: None,
            mode: TickMode::NoDevice,
            periodic_reason: None,
            timers: TimerQueue::new(storage),
            next_tick: Ktime::MAX,
            tick_stopped: false,
            idle: false,
            idle_account: IdleAccount::default(),
            in_broadcast: false,
            bc_owed: false,
            do_timer_last: false,
            wakeup: (Ktime::MAX, WakeFor::Own),
            rearm_pending: false,
            kick_pending: false,
            target: Ktime::MAX,
            behind_streak: 0,
            advance: Advance::default(),
            stats: CpuStats::default(),
        }
    }

    /// A snapshot.
    pub(crate) fn info(&self) -> CpuInfo {
        CpuInfo {
            device: self.dev.as_ref().map(|(_, e)| e.name()),
            device_state: self.dev.as_ref().map(|(_, e)| e.state()),
            mode: self.mode,
            periodic_reason: self.periodic_reason,
            tick_stopped: self.tick_stopped,
            in_broadcast: self.in_broadcast,
            idle_time: self.idle_account.time,
            idle_jiffies: self.idle_account.jiffies,
            timers_queued: self.timers.len(),
            timer_advance: self.advance.lead(),
            advance_delay: self.advance.learned_delay(),
            advance_spun: self.advance.spun,
            stats: self.stats,
        }
    }

    /// When the local device is programmed to fire (`Ktime::MAX`: not).
    /// Whether the tick device is a dummy: the CPU takes its tick from the
    /// broadcast device for good (Linux `tick_device_uses_broadcast()`
    /// for a non-functional device).
    pub(crate) fn has_dummy(&self) -> bool {
        self.dev
            .as_ref()
            .is_some_and(|(_, e)| e.features().contains(clockevents::Features::DUMMY))
    }

    pub(crate) fn device_event(&self) -> Ktime {
        self.dev
            .as_ref()
            .map_or(Ktime::MAX, |(_, e)| e.next_event())
    }

    // ----- idle accounting ----------------------------------------------------

    /// Idle accounting starts (once per idle period).
    pub(crate) fn enter_idle(&mut self, now: Ktime, jiffies: Jiffies) {
        if !self.idle {
            self.idle = true;
            self.idle_account.entry = now;
            self.idle_account.entry_jiffies = jiffies;
        }
    }

    /// Idle accounting ends: the period's time and jiffies are added.
    pub(crate) fn exit_idle(&mut self, now: Ktime, jiffies: Jiffies) {
        if self.idle {
            self.idle = false;
            let a = &mut self.idle_account;
            a.time = a.time.saturating_add(now.saturating_since(a.entry));
            a.jiffies += jiffies.saturating_since(a.entry_jiffies);
        }
    }

    // ----- the next event -----------------------------------------------------

    /// When a timer expiring at `expires` makes the device fire: at its
    /// expiry in high-resolution mode, at the grid point after it with the
    /// tick stopped, and not at all (the running tick runs it) otherwise.
    pub(crate) fn timer_event(&self, expires: Ktime, grid: TickGrid) -> Ktime {
        if self.mode.is_highres() {
            expires
        } else if self.tick_stopped {
            grid.ceil(expires)
        } else {
            Ktime::MAX
        }
    }

    /// When the next queued timer is to run: its expiry (high resolution)
    /// or the tick at or after it.
    pub(crate) fn next_timer(&self, grid: TickGrid) -> Ktime {
        let t = self.timers.next_expiry().unwrap_or(Ktime::MAX);
        if self.mode.is_highres() {
            t
        } else {
            grid.ceil(t)
        }
    }

    /// The next event this CPU needs, by its mode and state: the next tick
    /// unless stopped, its next timer, `watchdog` (the watchdog's deadline
    /// if this CPU runs it, else `Ktime::MAX`), and — if it stopped its
    /// tick as the last holder of the timekeeping duty — no later than
    /// `max_deferment` from `now` (Linux `timekeeping_max_deferment`).
    /// Returns the event and what it is for.
    pub(crate) fn next_event(
        &self,
        grid: TickGrid,
        now: Ktime,
        max_deferment: Nanos,
        watchdog: Ktime,
    ) -> (Ktime, WakeFor) {
        let mut next = if self.tick_stopped {
            Ktime::MAX
        } else {
            self.next_tick
        };
        let timer = self.timers.next_expiry().unwrap_or(Ktime::MAX);
        if self.mode.is_highres() {
            next = next.min(timer);
        } else if self.tick_stopped {
            next = next.min(grid.ceil(timer));
        }
        // The watchdog's only if nothing of this CPU's own comes as soon.
        let (next, why) = if watchdog < next {
            (watchdog, WakeFor::Watchdog)
        } else {
            (next, WakeFor::Own)
        };
        if self.tick_stopped && self.do_timer_last {
            let cap = now.saturating_add(max_deferment);
            if cap < next {
                return (cap, WakeFor::MaxDeferment);
            }
        }
        (next, why)
    }

    /// Programs the local device for `next` (a timer advance's lead
    /// earlier in high-resolution mode). Unchanged programming is skipped,
    /// as Linux does. When the retry policy gives up
    /// ([`ProgramError::GaveUp`]: the device refused every delta up to one
    /// tick), the device is armed once more at the policy's largest min
    /// delta, so the CPU — idle with its tick stopped, say — is woken a
    /// tick later rather than never.
    pub(crate) fn program(&mut self, cpu: CpuId, next: Ktime, now: Ktime) {
        let Some((_, ev)) = self.dev.as_mut() else {
            return;
        };
        if self.target == next
            && !ev.next_event().is_never()
            && ev.state() == clockevents::DeviceState::Oneshot
        {
            return; // unchanged: skip the register write (Linux does too)
        }
        let lead = if self.mode.is_highres() {
            self.advance.lead()
        } else {
            Nanos::ZERO
        };
        let fire_at = if next.is_never() {
            next
        } else {
            next.saturating_sub(lead).max(now)
        };
        self.target = next;
        match ev.program_event(fire_at, now, Expired::Force) {
            Ok(_) => {}
            Err(ProgramError::GaveUp) => {
                // The device refused even the policy's largest min delta a
                // moment ago, but a refusal is a race lost (an SMI, a slow
                // write), and one tick late is better than never.
                self.stats.program_failures += 1;
                let retry = now.saturating_add(ev.min_delta());
                self.target = retry;
                if ev.program_event(retry, now, Expired::Force).is_ok() {
                    log::warn!(
                        "tick: {cpu}: {} refused {next}; woken at {retry} instead",
                        ev.name()
                    );
                } else {
                    self.target = Ktime::MAX;
                    log::error!("tick: {cpu}: cannot program {} at all", ev.name());
                }
            }
            Err(_) => {
                self.stats.program_failures += 1;
                self.target = Ktime::MAX;
                log::error!("tick: {cpu}: cannot program {} for {next}", ev.name());
            }
        }
    }

    // ----- the interrupt --------------------------------------------------------

    /// The first step of an interrupt at `now`: count it, latch the device
    /// as handled, judge whether the clocksource lags the device, and feed
    /// the timer advance the delivery delay seen.
    pub(crate) fn observe_interrupt(&mut self, now: Ktime) -> Observed {
        self.stats.interrupts += 1;
        let mut seen = Observed {
            clock_behind: false,
            advanced: Nanos::ZERO,
        };
        let Some((_, ev)) = self.dev.as_mut() else {
            return seen;
        };
        // A device never fires early (its contract). If the clocksource
        // says we are more than the device's min delta short of the
        // programmed expiry twice in a row, the clocksource is the suspect
        // (stuck or slow): check it now rather than at a watchdog deadline
        // that the suspect clock itself would have to reach. Once is not
        // enough: an interrupt raised for the previous programming (a LAPIC
        // cannot withdraw one already pending) also arrives "early" for the
        // new one.
        let expected = ev.next_event();
        let behind = !expected.is_never()
            && !self.in_broadcast
            && expected.saturating_since(now) > ev.min_delta();
        self.behind_streak = if behind {
            self.behind_streak.saturating_add(1)
        } else {
            0
        };
        seen.clock_behind = self.behind_streak >= 2;
        ev.event_handled();
        // How early the event was programmed: the target it stands for
        // minus the device's expiry (0 if it was not advanced, or was cut
        // short by the device's max delta).
        seen.advanced = if !expected.is_never()
            && !self.target.is_never()
            && self.target.saturating_since(expected) <= MAX_TIMER_ADVANCE
        {
            self.target.saturating_since(expected)
        } else {
            Nanos::ZERO
        };
        // After a spin to the target (if early), the handler is this late
        // for it.
        let late = if self.target.is_never() {
            Nanos::ZERO
        } else {
            now.saturating_since(self.target)
        };
        if !expected.is_never()
            && now >= expected
            && self.advance.observe(now.saturating_since(expected), late)
        {
            self.stats.advance_back_offs += 1;
        }
        seen
    }

    /// An event programmed `advanced` early (a timer advance) fired up to
    /// that much before its target: spin on the clocksource until the
    /// target, so the handler runs at the deadline, never before. Bounded
    /// by time: at most [`MAX_TIMER_ADVANCE`] of clocksource time, or
    /// [`MAX_STALLED_READS`] reads in a row that find the clock stopped
    /// ([`crate::advance`]). Returns the time after the spin.
    pub(crate) fn spin_to_target(
        &mut self,
        clock: impl Fn() -> Ktime,
        now: Ktime,
        advanced: Nanos,
    ) -> Ktime {
        if advanced == Nanos::ZERO || self.target.is_never() || now >= self.target {
            return now;
        }
        if self.target.saturating_since(now) > MAX_TIMER_ADVANCE {
            return now; // not an advanced event (e.g. the device's max delta)
        }
        let end = self.target.min(now.saturating_add(MAX_TIMER_ADVANCE));
        let mut t = now;
        let mut stalled = 0;
        while t < end {
            core::hint::spin_loop();
            let read = clock();
            if read > t {
                t = read;
                stalled = 0;
            } else {
                stalled += 1;
                if stalled >= MAX_STALLED_READS {
                    self.stats.advance_spin_stalls += 1;
                    break;
                }
            }
        }
        self.advance.spun = self.advance.spun.saturating_add(t.saturating_since(now));
        t
    }

    /// Counts a wake-up the max-deferment cap or the watchdog's deadline
    /// forced (the clocksource reads up to one of its cycles, `resolution`,
    /// behind the device: a PIT-derived clock quantises to 838 ns), and
    /// forgets the wake-up.
    pub(crate) fn note_wakeup(&mut self, now: Ktime, resolution: Nanos) {
        let (due, why) = core::mem::replace(&mut self.wakeup, (Ktime::MAX, WakeFor::Own));
        if self.tick_stopped && now.saturating_add(resolution) >= due {
            match why {
                WakeFor::MaxDeferment => self.stats.max_deferment_wakeups += 1,
                WakeFor::Watchdog => self.stats.watchdog_wakeups += 1,
                WakeFor::Own => {}
            }
        }
    }

    /// Runs the expired timers, bounded by the queue length at entry (hang
    /// protection: a callback re-arming into the past cannot loop).
    pub(crate) fn run_timers(&mut self, cpu: CpuId, now: Ktime, run: &mut TimerFn<'_>) {
        let budget = self.timers.len() + 1;
        let mut n = 0;
        // A re-arm re-queues the timer in its own slot, under its id: the
        // owner's handle keeps naming it (and it cannot fail for room).
        while self
            .timers
            .pop_expired_with(now, |t| match run(cpu, t, now) {
                Rearm::At(at) => Some(at),
                Rearm::No => None,
            })
            .is_some()
        {
            self.stats.timers_fired += 1;
            n += 1;
            if n >= budget {
                self.stats.timer_runs_deferred += 1;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Timer;
    use crate::testing::{Call, FakeTimer};
    use clockevents::{DeviceState, Features};
    use std::vec::Vec;

    const MS4: Nanos = Nanos::from_millis(4);
    const GRID: TickGrid = TickGrid::new(MS4);

    fn ms(n: u64) -> Ktime {
        Ktime::from_nanos(n * 1_000_000)
    }

    fn cpu(mode: TickMode) -> TickCpu<'static, [TimerSlot; 8]> {
        let mut c = TickCpu::new([TimerSlot::EMPTY; 8]);
        c.mode = mode;
        c.next_tick = ms(4);
        c
    }

    const HRES: TickMode = TickMode::HighRes { nohz: true };

    #[test]
    fn with_the_tick_running_the_next_event_is_the_tick_or_an_earlier_hres_timer() {
        let mut c = cpu(HRES);
        assert_eq!(
            c.next_event(GRID, ms(1), MS4, Ktime::MAX),
            (ms(4), WakeFor::Own)
        );
        c.timers.add(ms(2), 0).unwrap();
        assert_eq!(
            c.next_event(GRID, ms(1), MS4, Ktime::MAX),
            (ms(2), WakeFor::Own)
        );
        let mut low = cpu(TickMode::NoHzLowRes);
        low.timers.add(ms(2), 0).unwrap();
        // Low resolution: the running tick runs it.
        assert_eq!(
            low.next_event(GRID, ms(1), MS4, Ktime::MAX),
            (ms(4), WakeFor::Own)
        );
    }

    #[test]
    fn with_the_tick_stopped_a_low_res_timer_runs_at_the_tick_after_it() {
        let mut c = cpu(TickMode::NoHzLowRes);
        c.tick_stopped = true;
        c.timers.add(ms(9), 0).unwrap();
        assert_eq!(
            c.next_event(GRID, ms(1), Nanos::from_secs(1), Ktime::MAX),
            (ms(12), WakeFor::Own)
        );
        assert_eq!(c.timer_event(ms(9), GRID), ms(12));
        assert_eq!(c.next_timer(GRID), ms(12));
    }

    #[test]
    fn the_last_duty_holder_wakes_by_the_max_deferment_and_says_so() {
        let mut c = cpu(HRES);
        c.tick_stopped = true;
        c.timers.add(ms(900), 0).unwrap();
        assert_eq!(
            c.next_event(GRID, ms(100), Nanos::from_millis(50), Ktime::MAX),
            (ms(900), WakeFor::Own)
        );
        c.do_timer_last = true;
        assert_eq!(
            c.next_event(GRID, ms(100), Nanos::from_millis(50), Ktime::MAX),
            (ms(150), WakeFor::MaxDeferment)
        );
        // A watchdog deadline earlier than both wins, uncapped.
        assert_eq!(
            c.next_event(GRID, ms(100), Nanos::from_millis(50), ms(120)),
            (ms(120), WakeFor::Watchdog)
        );
    }

    #[test]
    fn a_timer_running_with_the_tick_makes_no_event_of_its_own() {
        let c = cpu(TickMode::NoHzLowRes);
        assert_eq!(c.timer_event(ms(9), GRID), Ktime::MAX);
        assert_eq!(cpu(HRES).timer_event(ms(9), GRID), ms(9));
    }

    #[test]
    fn idle_time_and_jiffies_are_accounted_once_per_period() {
        let mut c = cpu(HRES);
        c.enter_idle(ms(10), Jiffies::new(2));
        c.enter_idle(ms(20), Jiffies::new(5)); // already idle: entry stays
        c.exit_idle(ms(30), Jiffies::new(7));
        c.exit_idle(ms(40), Jiffies::new(9)); // not idle: nothing
        let i = c.info();
        assert_eq!(i.idle_time, Nanos::from_millis(20));
        assert_eq!(i.idle_jiffies, 5);
    }

    #[test]
    fn a_callback_re_arming_into_the_past_is_run_a_bounded_number_of_times() {
        let mut c = cpu(HRES);
        c.timers.add(ms(1), 7).unwrap();
        c.timers.add(ms(2), 8).unwrap();
        let mut seen: Vec<(CpuId, u64)> = Vec::new();
        c.run_timers(CpuId::new(3), ms(5), &mut |cpu, t: Timer, _| {
            seen.push((cpu, t.data));
            Rearm::At(ms(0))
        });
        // Budget: the 2 queued at entry + 1. Re-armed into the past, timer
        // 7 is the earliest again each time; the budget stops the loop and
        // timer 8 waits for the next interrupt.
        let cpu3 = CpuId::new(3);
        assert_eq!(seen, [(cpu3, 7), (cpu3, 7), (cpu3, 7)]);
        assert_eq!(c.stats.timers_fired, 3);
        assert_eq!(c.stats.timer_runs_deferred, 1);
        assert_eq!(c.timers.len(), 2);
    }

    #[test]
    fn programming_converts_to_a_delta_and_skips_an_unchanged_event() {
        let dev: &'static FakeTimer = std::boxed::Box::leak(std::boxed::Box::new(FakeTimer::new(
            "t",
            Features::ONESHOT,
            CpuId::BOOT,
        )));
        let mut ev = EventDevice::new(dev, MS4).unwrap();
        ev.attach().unwrap();
        ev.set_state(DeviceState::Oneshot, Nanos::ZERO).unwrap();
        let mut c = cpu(HRES);
        c.dev = Some((DeviceId(0), ev));
        c.program(CpuId::BOOT, ms(4), ms(1));
        assert_eq!(
            dev.last_programmed(),
            Some(Call::Next(clocksource::Cycles::new(3_000_000)))
        );
        let n = dev.calls().len();
        c.program(CpuId::BOOT, ms(4), ms(2));
        assert_eq!(dev.calls().len(), n, "unchanged: no register write");
        assert_eq!(c.device_event(), ms(4));
    }
}
