//! Timers across CPUs: queued from one CPU for another, without touching
//! the other CPU's device.
//!
//! A tick device is the business of its own CPU: a local APIC timer's
//! registers are CPU-local (every CPU sees its own at the same address), so
//! a write made from CPU 0 "for" CPU 1 programs CPU 0's timer. When CPU
//! `from` queues a timer on CPU `to` that is earlier than what `to` is
//! programmed for, the call therefore leaves `to`'s device alone and says
//! [`Kick::Ipi`]: the embedder sends `to` an IPI, and `to`'s handler calls
//! [`TickSystem::kicked`], which runs what is due and programs `to`'s own
//! device (Linux gets the same effect in `kernel/time/hrtimer.c`, by
//! refusing a remote base that would need reprogramming, and in
//! `tick-sched.c`'s `tick_nohz_full_kick_cpu` / `wake_up_nohz_cpu` for an
//! idle target).
//!
//! ```text
//!   CPU from                                 CPU to
//!   add_timer_from(from, to, t) ──► queue   (tick stopped, asleep until T)
//!     t < T: Kick::Ipi(to) ──── IPI ──────► kicked(to): run due timers,
//!     t ≥ T: Kick::None (T covers it)         program own device for t
//! ```
//!
//! A CPU with its tick stopped is woken only if the new timer is earlier
//! than what it sleeps until, not while its idle loop is still to re-arm
//! after an interrupt (it programs for its whole queue before it halts),
//! and only once however many timers are queued before it takes the kick: while a kick is outstanding, later remote
//! timers ride on it (the kicked CPU programs for its whole queue; Linux's
//! `wake_up_nohz_cpu` likewise only sends the IPI when the target's
//! reschedule is not already pending). A remote cancel never kicks: the target may
//! take one interrupt that finds nothing due, then programs its next event
//! (as Linux leaves a remote hrtimer base's hardware alone on cancel).

use clockevents::CpuId;
use clocksource::Ktime;

use crate::lock::Locks;
use crate::queue::{Timer, TimerId, TimerSlot};
use crate::system::{AddError, TickSystem, TimerFn};

/// What the embedder must do after queuing a timer on another CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a kicked CPU must be sent its IPI, or its new timer waits for its next event"]
pub enum Kick {
    /// Nothing: the target's programmed event comes at or before the new
    /// timer (or the timer was queued on the calling CPU, which programmed
    /// its own device).
    None,
    /// Send this CPU an IPI; its handler calls [`TickSystem::kicked`].
    Ipi(CpuId),
}

impl<'a, S, const CPUS: usize, L: Locks> TickSystem<'a, S, CPUS, L>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// Queues a timer on `cpu`, called on CPU `from`. On `from` itself this
    /// is [`add_timer`](TickSystem::add_timer) (the device is reprogrammed
    /// if needed). For another CPU the timer is queued and `cpu`'s device
    /// is left alone: [`Kick::Ipi`] if the timer is earlier than what `cpu`
    /// is programmed for, so that `cpu` programs its own device. Only
    /// `cpu`'s state is held meanwhile (and the broadcast state, briefly,
    /// if `cpu` waits on it).
    pub fn add_timer_from(
        &self,
        from: CpuId,
        cpu: CpuId,
        expires: Ktime,
        data: u64,
    ) -> Result<(TimerId, Kick), AddError> {
        if from == cpu {
            return self
                .add_timer(cpu, expires, data)
                .map(|id| (id, Kick::None));
        }
        let mut c = self.cpu(cpu).ok_or(AddError::NoCpu)?;
        let programmed = self.programmed_event_of(cpu, &c);
        let id = c.timers.add(expires, data)?;
        let at = c.timer_event(expires, self.grid);
        // One kick at a time: while one is outstanding, the target will
        // program for its whole queue, this timer included. Nor is one
        // needed while an interrupt of the target's has left its re-arm
        // to its idle loop (`rearm_pending`): the loop programs for the
        // whole queue before it halts again.
        let wake = c.mode.is_oneshot() && at < programmed && !c.kick_pending && !c.rearm_pending;
        c.kick_pending |= wake;
        Ok((id, if wake { Kick::Ipi(cpu) } else { Kick::None }))
    }

    /// Cancels a timer of `cpu`, called on CPU `from`. On `from` itself this
    /// is [`cancel_timer`](TickSystem::cancel_timer). For another CPU the
    /// timer is dequeued and nothing else happens: if `cpu` was programmed
    /// for it, `cpu` takes an interrupt that finds nothing due and programs
    /// its next event then.
    pub fn cancel_timer_from(&self, from: CpuId, cpu: CpuId, id: TimerId) -> Option<Timer> {
        if from == cpu {
            return self.cancel_timer(cpu, id);
        }
        self.cpu(cpu)?.timers.cancel(id)
    }

    /// The handler of a [`Kick::Ipi`] on `cpu`: runs the timers already due
    /// (high resolution; low-resolution timers wait for their tick, as
    /// always) and programs `cpu`'s device for its next event — or, in
    /// NO_HZ idle, leaves that to its idle loop, which the IPI has woken,
    /// as an interrupt does.
    pub fn kicked(&self, cpu: CpuId, run: &mut TimerFn<'_>) {
        let Some(mut c) = self.cpu(cpu) else { return };
        let now = self.now();
        c.stats.kicks += 1;
        c.kick_pending = false;
        if c.mode.is_highres() {
            c.run_timers(cpu, now, run);
        }
        self.rearm_or_leave_to_idle(cpu, &mut c);
    }
}
