//! The interrupt path: a tick device's interrupt, the broadcast IPI, and
//! the reprogramming both end with.
//!
//! ```text
//!   device interrupt on CPU c ──► TickSystem::interrupt(dev, c, run)
//!       │  c's tick device (c's lock)         the broadcast device (its lock)
//!       ▼                                          ▼
//!   cpu_event(c):                            Broadcast::event(): collect CPUs
//!     observe: latch off, clock lagging?       whose event is due → IPI mask;
//!     timekeeping duty: jiffies + timekeeper    re-arm for the earliest other
//!     tick due? → tick work (low-res timers)         │
//!     high-res: run expired timers                   ▼
//!     reprogram: min(next tick, next timer,     ipi(c) ─► cpu_event(c)
//!                    max deferment, watchdog)
//!     (in NO_HZ idle: left to the idle loop)
//! ```
//!
//! Nothing here allocates; loops are bounded (timer runs by the queue length
//! at entry, reprogramming by the clockevents retry policy, the advance spin
//! by time and by stalled reads). A CPU's interrupt holds its own state's
//! lock; it takes the timekeeping's only to do the duty or the watchdog
//! (or, in NO_HZ, to catch jiffies up on waking), and the broadcast's only
//! in or just out of deep idle ([`crate::lock`]).

use clockevents::{CpuId, CpuMask, DeviceId, Owner};
use clocksource::Ktime;

use crate::broadcast::Broadcast;
use crate::config::TickMode;
use crate::lock::{Lock, Locks};
use crate::percpu::TickCpu;
use crate::queue::TimerSlot;
use crate::system::{TickSystem, TimerFn};
use crate::timekeeping::Timekeeping;

impl<'a, S, const CPUS: usize, L: Locks> TickSystem<'a, S, CPUS, L>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// Handles an interrupt of device `dev` taken on `cpu`. Returns the CPUs
    /// the caller must send a tick IPI to, which then call
    /// [`TickSystem::ipi`]: for a broadcast device the CPUs whose events are
    /// due; for another CPU's device (an interrupt taken on the wrong CPU)
    /// its owner, which handles the event itself — the owner's device state
    /// is the owner's, so the event is neither lost nor left marked pending
    /// (which would make the owner skip the next programming of that time
    /// as unchanged, and never be interrupted again). `run` is called for
    /// every expired timer, with the monotonic time it was found expired at
    /// (≥ its expiry).
    ///
    /// The device is acknowledged first
    /// ([`ClockEventDevice::acknowledge`](clockevents::ClockEventDevice::acknowledge)),
    /// before anything reprograms it; the embedder sends the interrupt
    /// controller's EOI after this returns.
    pub fn interrupt(&self, dev: DeviceId, cpu: CpuId, run: &mut TimerFn<'_>) -> CpuMask {
        // The common cases take no lock but their own: the CPU's tick
        // device (its own state's), the broadcast device (the broadcast
        // state's). The pool is asked only for anything else.
        if let Some(c) = self.cpus.get(cpu.index()) {
            let mut c = c.lock();
            if let Some((_, ev)) = c.dev.as_ref().filter(|(id, _)| *id == dev) {
                ev.device().acknowledge();
                self.cpu_event_of(cpu, &mut c, run);
                return CpuMask::EMPTY;
            }
        }
        {
            let mut bc = self.bc.lock();
            if let Some((_, ev)) = bc.dev.as_ref().filter(|(id, _)| *id == dev) {
                ev.device().acknowledge();
                let now = self.now();
                return bc.event(now);
            }
        }
        let (device, owner) = {
            let d = self.devices.lock();
            (d.pool.get(dev), d.pool.owner(dev))
        };
        if let Some(d) = device {
            d.acknowledge();
        }
        match owner {
            Some(Owner::Cpu(owner)) if owner.index() < CPUS && owner != cpu => {
                log::debug!("tick: {dev:?} of {owner} interrupted {cpu}: forwarded");
                if let Some(mut c) = self.cpu(cpu) {
                    c.stats.forwarded += 1;
                }
                CpuMask::single(owner)
            }
            other => {
                // A device we shut down raced its last interrupt, or a
                // mis-routed IRQ: acknowledged above, ignored here.
                log::debug!("tick: spurious interrupt of {dev:?} on {cpu} (owner {other:?})");
                CpuMask::EMPTY
            }
        }
    }

    /// Handles a tick IPI sent on behalf of the broadcast device (or for
    /// an interrupt forwarded from another CPU).
    pub fn ipi(&self, cpu: CpuId, run: &mut TimerFn<'_>) {
        if cpu.index() < CPUS {
            self.bc.lock().ipi_taken(cpu);
            self.cpu_event(cpu, run);
        }
    }

    /// The per-CPU event handler (Linux `tick_handle_periodic`,
    /// `tick_nohz_lowres_handler`, `hrtimer_interrupt`). `cpu.index() < CPUS`.
    fn cpu_event(&self, cpu: CpuId, run: &mut TimerFn<'_>) {
        let mut c = self.cpus[cpu.index()].lock();
        self.cpu_event_of(cpu, &mut c, run);
    }

    /// [`TickSystem::cpu_event`], `cpu`'s state `c` held.
    fn cpu_event_of(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, run: &mut TimerFn<'_>) {
        let now = self.now();
        let seen = c.observe_interrupt(now);
        let now = c.spin_to_target(|| self.now(), now, seen.advanced);
        c.note_wakeup(now, self.words.resolution());
        let mode = c.mode;
        if seen.clock_behind {
            let mut t = self.time.lock();
            if t.watchdog.is_armed() {
                log::warn!(
                    "tick: {cpu}: interrupt before the clocksource reached its expiry; checking clocks"
                );
                self.check_clocks(&mut t);
            }
        }
        let now = self.now();
        self.do_timer(cpu, c, now);
        match mode {
            TickMode::NoDevice => {}
            TickMode::Periodic => {
                c.stats.ticks += 1;
                c.run_timers(cpu, now, run);
            }
            _ => {
                let next_tick = self.grid.next(now);
                if !c.tick_stopped && now >= c.next_tick {
                    c.stats.ticks += 1;
                    c.next_tick = next_tick;
                    if !mode.is_highres() {
                        c.run_timers(cpu, now, run);
                    }
                } else if c.tick_stopped && !mode.is_highres() {
                    // Low-res with the tick stopped: this wake-up is for a
                    // timer (at a tick boundary) — run what is due.
                    c.run_timers(cpu, now, run);
                }
                if mode.is_highres() {
                    c.run_timers(cpu, now, run);
                }
                self.rearm_or_leave_to_idle(cpu, c);
            }
        }
    }

    /// The re-arm that ends an interrupt or a kick on `cpu` (its state `c`,
    /// held). An idle CPU leaves it — and, with its tick
    /// still running, the decision to stop it (Linux `tick_nohz_irq_exit`)
    /// — to its idle loop, which makes both before it halts again
    /// ([`TickSystem::idle_sleep`]) or as it leaves idle
    /// ([`TickSystem::idle_exit`]). Doing it here too would put a device
    /// write on the wake-up path before the woken code runs — ~15–25 µs of
    /// a trapped register write under QEMU — for an event the idle loop
    /// programs anyway (a woken waiter adds its next timer first). The
    /// device is disarmed meanwhile (it fired, or was not re-armed for a
    /// kick); nothing is lost: the loop runs before any halt.
    pub(crate) fn rearm_or_leave_to_idle(&self, cpu: CpuId, c: &mut TickCpu<'a, S>) {
        if c.idle && c.mode.is_nohz() && !c.in_broadcast {
            c.rearm_pending = true;
            c.stats.rearms_deferred += 1;
        } else {
            let now = self.now();
            self.reprogram(cpu, c, None, now);
        }
    }

    /// Takes the timekeeping duty if nobody holds it; does it if held.
    fn do_timer(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, now: Ktime) {
        // Only a CPU whose tick runs takes the duty; a CPU woken from NO_HZ
        // idle for a timer keeps sleeping tickless.
        if !c.tick_stopped && self.words.claim_duty(cpu) {
            self.set_last_holder(cpu, c, false);
        }
        let holds = self.words.holds_duty(cpu);
        let watchdog = cpu == self.watchdog_cpu();
        if !(holds || c.tick_stopped || watchdog) {
            return; // the common case off the duty CPU: no shared lock
        }
        let mut t = self.time.lock();
        if holds || c.tick_stopped {
            // The holder updates; an idle CPU woken with its tick stopped
            // updates too, so it never acts on stale jiffies (Linux
            // `tick_nohz_update_jiffies`).
            t.update_jiffies(now);
        }
        if watchdog && t.watchdog.is_due(now) {
            self.check_clocks(&mut t);
            let t = &mut *t;
            t.watchdog.schedule(&t.clocks, now);
        }
        // After the update and any new watchdog schedule.
        self.words.refresh(&t);
    }

    /// Sets `cpu`'s `do_timer_last` and its bit in the shared word.
    pub(crate) fn set_last_holder(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, last: bool) {
        c.do_timer_last = last;
        self.words.set_last_holder(cpu, last);
    }

    /// Programs `cpu`'s next event (local device, or broadcast if the local
    /// one is off in deep idle); `c` is its state, held, and `held` the
    /// broadcast state if the caller holds it (else it is taken here when
    /// the CPU is in, or just out of, deep idle).
    pub(crate) fn reprogram(
        &self,
        cpu: CpuId,
        c: &mut TickCpu<'a, S>,
        held: Option<&mut Broadcast<'a, CPUS>>,
        now: Ktime,
    ) {
        if !c.mode.is_oneshot() {
            return;
        }
        let mut taken = None;
        let mut bc = held;
        if bc.is_none() && (c.in_broadcast || c.bc_owed) {
            taken = Some(self.bc.lock());
            bc = taken.as_deref_mut();
        }
        if !c.in_broadcast && c.bc_owed {
            if bc.as_ref().is_some_and(|b| b.owes_ipi(cpu)) {
                // Out of deep idle with its event handed to a broadcast IPI
                // still to come ([`crate::broadcast`]): that IPI programs the
                // device, with the event handled.
                return;
            }
            // Out of the broadcast mask, nothing owed: nothing can be owed
            // again until the CPU next goes deep.
            c.bc_owed = false;
        }
        c.rearm_pending = false;
        // This programming covers every timer queued so far: an
        // outstanding kick no longer stands for any of them.
        c.kick_pending = false;
        if c.tick_stopped && c.do_timer_last && self.words.duty().is_some_and(|d| d != cpu) {
            // Another CPU took the duty since this one stopped its tick: it
            // is no longer the last holder, so no longer bound by the max
            // deferment (Linux re-evaluates `do_timer_last` at every stop).
            self.set_last_holder(cpu, c, false);
        }
        let watchdog = if cpu == self.watchdog_cpu() {
            self.words.watchdog_deadline(c.tick_stopped)
        } else {
            Ktime::MAX
        };
        let (next, why) = c.next_event(self.grid, now, self.words.max_deferment(), watchdog);
        c.wakeup = (next, why);
        match bc {
            Some(bc) if c.in_broadcast => bc.set_event(cpu, next, now),
            _ => c.program(cpu, next, now),
        }
        drop(taken);
    }

    /// The CPU that runs the clocksource watchdog: the one holding the
    /// timekeeping duty, else the last that held it (idle, it wakes for the
    /// max deferment anyway), else the boot CPU. So the watchdog goes where
    /// the tick runs, and an idle CPU whose duty another took is not woken
    /// for it (Linux's watchdog timer hops from CPU to CPU,
    /// `kernel/time/clocksource.c`, `clocksource_watchdog`).
    pub(crate) fn watchdog_cpu(&self) -> CpuId {
        self.words
            .duty()
            .or_else(|| self.words.first_last_holder())
            .unwrap_or(CpuId::BOOT)
    }

    /// One watchdog check now, the timekeeping held; a source found
    /// unstable re-selects the clocksource, losing its error
    /// ([`crate::watchdog`]).
    pub(crate) fn check_clocks(&self, t: &mut Timekeeping<'a>) {
        if let Some(report) = t.watchdog.check(&mut t.clocks) {
            self.reselect_clocksource(t, Some(&report));
        }
    }
}
