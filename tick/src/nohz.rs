//! NO_HZ idle: stop the tick while a CPU idles, wake only for the next
//! timer (Linux kernel/time/tick-sched.c).
//!
//! The embedder's idle loop calls, in order:
//!
//! ```text
//!   idle_enter(c)                 once, entering the idle loop
//!   loop {
//!       idle_sleep(c, depth)?     before each halt: maybe stop the tick,
//!                                 maybe hand over to broadcast (deep)
//!       halt until an interrupt   (interrupt() / ipi() run the handlers)
//!       idle_wake(c)              after the halt: take the tick device back
//!       if work to do { break }
//!   }
//!   idle_exit(c)                  leaving the loop: restart the tick,
//!                                 catch jiffies up, account idle time
//! ```
//!
//! Stopping the tick (`idle_sleep`, and an idle CPU's own interrupt while
//! its tick still runs):
//!
//! ```text
//!   next timer ≤ next tick? ── yes ──► keep the tick (no gain in stopping)
//!        │ no
//!        ▼
//!   programmed interrupt ─────── yes ──► keep the tick this round (it may
//!   due within min delta?                already be raised: let it do the
//!   (idle_sleep only)                    tick's work, and stop the tick in
//!        │ no                            that interrupt)
//!        ▼
//!   hand off the timekeeping duty if we hold it (remember we were last)
//!   program the device for min(next timer, [last holder] now + max deferment)
//! ```
//!
//! The first rule is Linux's: `tick_nohz_next_event()` (tick-sched.c)
//! keeps the tick running when the next timer is due within one tick of
//! the last jiffies update (`delta = next_tick − basemono; if (delta <=
//! TICK_NSEC)` with the tick not yet stopped). The second is ours: an
//! interrupt the hardware may already have raised cannot be taken back —
//! the LAPIC's TSC-deadline and TMICT interrupts and the PIT's IRQ0 edge
//! stay pending once their time has come — so when the programmed
//! interrupt (`min(device event, next tick)`, which includes a timer
//! advance's lead) is no more than the tick device's min delta away, the
//! tick stays for this round. That interrupt then does the tick's work,
//! instead of arriving with nothing to do after the tick was stopped, and
//! stops the tick itself, as Linux's `tick_nohz_irq_exit()` re-evaluates
//! the tick on an idle CPU's interrupt exit: there the device's last
//! programming has just fired, so no raised interrupt can race the stop.
//! (Left to the next `idle_sleep` instead, a min delta the retry policy had
//! raised past a tick period — the HPET under the software KVM here —
//! kept the tick at every one of them.)
//!
//! The max-deferment cap is what keeps a 32-bit clocksource from wrapping
//! unseen while every CPU sleeps; only the CPU that last held the duty pays
//! for it, as in Linux's `tick_nohz_next_event()`.

use clockevents::CpuId;
use clocksource::Ktime;

use crate::lock::{Lock, Locks};
use crate::percpu::TickCpu;
use crate::queue::TimerSlot;
use crate::system::{IdleError, TickSystem};

/// How deep an idle state is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleDepth {
    /// Local timers keep running (C1, `hlt`).
    Shallow,
    /// Devices declaring `C3STOP` stop: broadcast is needed.
    Deep,
}

/// What [`TickSystem::idle_sleep`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleSleep {
    /// The tick is stopped.
    pub tick_stopped: bool,
    /// The broadcast device stands in for the local one.
    pub broadcast: bool,
    /// When the CPU's next interrupt is programmed for.
    pub wakeup: Ktime,
}

impl<'a, S, const CPUS: usize, L: Locks> TickSystem<'a, S, CPUS, L>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// `cpu` enters its idle loop: idle time accounting starts.
    pub fn idle_enter(&self, cpu: CpuId) -> Result<(), IdleError> {
        let mut c = self.cpu(cpu).ok_or(IdleError::NoCpu)?;
        c.enter_idle(self.now(), self.jiffies());
        Ok(())
    }

    /// Before halting: stops the tick if NO_HZ is active and no timer is due
    /// within the next tick; for [`IdleDepth::Deep`] with a `C3STOP` device,
    /// hands the CPU to the broadcast device. `Err(Busy)` means: do not go
    /// deep (no broadcast device fit for it); a shallow halt is fine.
    pub fn idle_sleep(&self, cpu: CpuId, depth: IdleDepth) -> Result<IdleSleep, IdleError> {
        let mut c = self.cpu(cpu).ok_or(IdleError::NoCpu)?;
        let now = self.now();
        c.enter_idle(self.now(), self.jiffies());
        if c.mode.is_nohz() {
            if c.tick_stopped {
                self.reprogram(cpu, &mut c, None, now);
            } else {
                // After an interrupt that left its re-arm here the device
                // is disarmed: no raised interrupt can be waiting, and the
                // decision is the interrupt's own (`in_irq`).
                let after_irq = c.rearm_pending;
                self.try_stop_tick(cpu, &mut c, now, after_irq);
            }
        }
        if c.rearm_pending {
            // The tick was kept: the interrupt's re-arm is still to make.
            self.reprogram(cpu, &mut c, None, now);
        }
        let c3stop = c
            .dev
            .as_ref()
            .is_some_and(|(_, e)| e.features().contains(clockevents::Features::C3STOP));
        if depth == IdleDepth::Deep && c3stop && !c.in_broadcast {
            self.broadcast_enter(cpu, &mut c, now)?;
        }
        Ok(IdleSleep {
            tick_stopped: c.tick_stopped,
            broadcast: c.in_broadcast,
            wakeup: self.programmed_event_of(cpu, &c),
        })
    }

    /// After a halt returns: the CPU is running again, so its own device
    /// takes over from broadcast.
    pub fn idle_wake(&self, cpu: CpuId) {
        if let Some(mut c) = self.cpu(cpu) {
            self.wake_of(cpu, &mut c);
        }
    }

    /// [`TickSystem::idle_wake`], `cpu`'s state `c` held.
    fn wake_of(&self, cpu: CpuId, c: &mut TickCpu<'a, S>) {
        if c.in_broadcast {
            let now = self.now();
            self.broadcast_exit(cpu, c, now);
        }
    }

    /// Leaves the idle loop: restarts the tick on the tick grid, catches
    /// jiffies up from the clocksource, accounts idle time.
    pub fn idle_exit(&self, cpu: CpuId) {
        let Some(mut c) = self.cpu(cpu) else {
            return;
        };
        self.wake_of(cpu, &mut c);
        let now = self.now();
        if c.tick_stopped {
            self.words.claim_duty(cpu);
            {
                let mut t = self.time.lock();
                t.update_jiffies(now);
                self.words.refresh(&t);
            }
            c.tick_stopped = false;
            self.set_last_holder(cpu, &mut c, false);
            c.wakeup = (Ktime::MAX, crate::percpu::WakeFor::Own);
            c.next_tick = self.grid.next(now);
            self.reprogram(cpu, &mut c, None, now);
        } else if c.rearm_pending {
            self.reprogram(cpu, &mut c, None, now);
        }
        c.exit_idle(now, self.jiffies());
    }

    /// Stops the tick of idle `cpu` (its state `c`, held) unless a timer is
    /// due by the next
    /// tick, or (`in_irq` false: from `idle_sleep`) the interrupt the
    /// device is programmed for is within its min delta and may already be
    /// raised. Returns whether the tick is stopped now; when it is, the
    /// device has been reprogrammed for the next event. `cpu.index() < CPUS`.
    ///
    /// From the CPU's own interrupt (`in_irq`, Linux
    /// `tick_nohz_irq_exit()`) the raised-interrupt check does not apply:
    /// the device's last programming is the one that just fired, nothing
    /// else is pending, and the handler is about to program it anyway. So
    /// a tick kept at idle entry is stopped in its own interrupt, whatever
    /// the device's min delta — a min delta the retry policy raised past
    /// a tick period (the HPET under the software KVM here) would
    /// otherwise keep the tick at every `idle_sleep` after it.
    pub(crate) fn try_stop_tick(
        &self,
        cpu: CpuId,
        c: &mut TickCpu<'a, S>,
        now: Ktime,
        in_irq: bool,
    ) -> bool {
        if c.next_timer(self.grid) <= c.next_tick {
            // Counted where idle decides (idle_sleep), not again here.
            c.stats.tick_retained += u64::from(!in_irq);
            return false;
        }
        // The interrupt programmed for the tick (or earlier: the advance
        // lead, the watchdog) may already be raised when it is within the
        // device's min delta: a TSC deadline, a TMICT count or an IRQ0 edge
        // that has fired cannot be withdrawn. Stopping the tick now would
        // leave that interrupt with nothing to do; keep the tick this round
        // (its interrupt then stops it: `in_irq`).
        let due = c
            .dev
            .as_ref()
            .map(|(_, e)| (e.next_event().min(c.next_tick), e.min_delta()));
        if let Some((due, min_delta)) = due.filter(|_| !in_irq) {
            if due.saturating_since(now) <= min_delta {
                c.stats.tick_retained += 1;
                c.stats.tick_retained_due += 1;
                return false;
            }
        }
        if self.words.release_duty(cpu) {
            self.set_last_holder(cpu, c, true);
        } else if self.words.duty().is_some() {
            self.set_last_holder(cpu, c, false);
        }
        c.tick_stopped = true;
        c.stats.tick_stops += 1;
        self.reprogram(cpu, c, None, now);
        true
    }
}
