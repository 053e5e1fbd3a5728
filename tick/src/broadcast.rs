//! Tick broadcast: a device that keeps running in deep idle stands in for
//! the per-CPU devices that stop there (Linux kernel/time/tick-broadcast.c).
//!
//! ```text
//!   CPU c enters deep idle, its device is C3STOP
//!     broadcast_enter(c): local device → SHUTDOWN,
//!                         bc.next_event[c] = c's next event,
//!                         broadcast device armed for min over waiting CPUs
//!   broadcast device fires
//!     broadcast_event(): every waiting CPU whose event is due → IPI mask;
//!                        re-arm for the earliest remaining one
//!     IPI on c → cpu_event(c): timers run; c's next event goes back to
//!                              bc.next_event[c] while c stays in deep idle
//!   CPU c leaves deep idle
//!     broadcast_exit(c): local device → ONESHOT, and
//!       c pending (the handler already sent its IPI): nothing more, the
//!         IPI handles the event;
//!       c's event already due (the broadcast device is about to fire):
//!         c is *forced*: the local device is not programmed, the
//!         broadcast handler IPIs c; c may not go deep again meanwhile;
//!       else: reprogrammed
//! ```
//!
//! The pending and forced CPUs are Linux's `tick_broadcast_pending_mask`
//! and `tick_broadcast_force_mask`. Without them a CPU leaving deep idle
//! with its event already expired would program its local device with
//! that expired event — forced out to the min delta — and, idling again
//! before it fired, re-arm the broadcast device: the two devices playing
//! ping-pong with one event, and the event handled twice (once for the
//! local device, once for the broadcast IPI already on its way).
//!
//! In periodic mode the broadcast device runs periodically and IPIs every
//! waiting CPU on each tick. The broadcast device serves one mode at a time:
//! the mode of the first CPU that needs it; a CPU in the other mode is
//! refused deep idle ([`IdleError::Busy`]).

use clockevents::{CpuId, CpuMask, DeviceId, DeviceState, EventDevice, Expired, Features, Owner};
use clocksource::{Ktime, Nanos};

use crate::lock::{Lock, Locks};
use crate::percpu::TickCpu;
use crate::queue::TimerSlot;
use crate::system::{IdleError, TickSystem};

/// Broadcast state: shared by every CPU that waits on it. On SMP it sits
/// behind its own lock, which a CPU takes to enter or leave deep idle and
/// the broadcast interrupt takes to collect the CPUs it wakes (Linux
/// `tick_broadcast_lock`).
pub(crate) struct Broadcast<'a, const CPUS: usize> {
    pub(crate) dev: Option<(DeviceId, EventDevice<'a>)>,
    /// CPUs waiting in one-shot mode.
    pub(crate) oneshot_mask: CpuMask,
    /// CPUs taking their periodic tick from the broadcast device.
    pub(crate) periodic_mask: CpuMask,
    /// Each waiting CPU's next event (and a forced CPU's, expired).
    pub(crate) next_event: [Ktime; CPUS],
    /// CPUs the handler found due and sent an IPI, which they have not yet
    /// handled (Linux `tick_broadcast_pending_mask`).
    pub(crate) pending_mask: CpuMask,
    /// CPUs that left deep idle with their event already due: the handler
    /// IPIs them, their local device stays unprogrammed until then (Linux
    /// `tick_broadcast_force_mask`).
    pub(crate) force_mask: CpuMask,
}

impl<const CPUS: usize> Broadcast<'_, CPUS> {
    pub(crate) fn new() -> Self {
        Broadcast {
            dev: None,
            oneshot_mask: CpuMask::EMPTY,
            periodic_mask: CpuMask::EMPTY,
            next_event: [Ktime::MAX; CPUS],
            pending_mask: CpuMask::EMPTY,
            force_mask: CpuMask::EMPTY,
        }
    }

    /// Whether `cpu` waits for a broadcast IPI that will handle its event
    /// (pending or forced): its local device is not to be programmed
    /// before.
    pub(crate) fn owes_ipi(&self, cpu: CpuId) -> bool {
        self.pending_mask.contains(cpu) || self.force_mask.contains(cpu)
    }

    /// `cpu` is handling its broadcast IPI: no longer pending or forced.
    pub(crate) fn ipi_taken(&mut self, cpu: CpuId) {
        self.pending_mask.remove(cpu);
        self.force_mask.remove(cpu);
    }

    /// Whether any CPU waits on the broadcast device.
    pub(crate) fn in_use(&self) -> bool {
        !self.oneshot_mask.is_empty() || !self.periodic_mask.is_empty()
    }

    /// The next event of waiting CPU `cpu` (`Ktime::MAX` for others).
    pub(crate) fn event_of(&self, cpu: CpuId) -> Ktime {
        self.next_event
            .get(cpu.index())
            .copied()
            .unwrap_or(Ktime::MAX)
    }

    /// Sets waiting CPU `cpu`'s next event and re-arms for the earliest.
    pub(crate) fn set_event(&mut self, cpu: CpuId, next: Ktime, now: Ktime) {
        if let Some(e) = self.next_event.get_mut(cpu.index()) {
            *e = next;
        }
        self.program(now);
    }

    /// Arms the broadcast device for the earliest waiting or forced CPU, or
    /// stops it.
    pub(crate) fn program(&mut self, now: Ktime) {
        let next = self
            .oneshot_mask
            .iter()
            .chain(self.force_mask.iter())
            .map(|c| self.event_of(c))
            .min()
            .unwrap_or(Ktime::MAX);
        let Some((_, bc)) = self.dev.as_mut() else {
            return;
        };
        if matches!(bc.state(), DeviceState::Shutdown) {
            if next.is_never() {
                return;
            }
            if let Err(e) = bc.set_state(DeviceState::Oneshot, Nanos::ZERO) {
                log::error!("tick: broadcast {} refuses one-shot: {e:?}", bc.name());
                return;
            }
        }
        if bc.next_event() == next {
            return;
        }
        if let Err(e) = bc.program_event(next, now, Expired::Force) {
            log::error!(
                "tick: broadcast {}: cannot program {next}: {e:?}",
                bc.name()
            );
        }
    }

    /// The broadcast device fired at `now`: returns the CPUs to wake (every
    /// waiting CPU in periodic mode; in one-shot mode those whose event is
    /// due, re-arming for the earliest of the rest).
    pub(crate) fn event(&mut self, now: Ktime) -> CpuMask {
        let Some((_, bc)) = self.dev.as_mut() else {
            return CpuMask::EMPTY;
        };
        bc.event_handled();
        if bc.state() == DeviceState::Periodic {
            return self.periodic_mask;
        }
        let mut wake = CpuMask::EMPTY;
        for cpu in self.oneshot_mask.iter() {
            if self.event_of(cpu) <= now {
                wake.insert(cpu);
                self.pending_mask.insert(cpu);
                if let Some(e) = self.next_event.get_mut(cpu.index()) {
                    *e = Ktime::MAX;
                }
            }
        }
        // The forced CPUs are due by definition. They are sent the IPI too,
        // so they are pending like the rest until they take it: between
        // this return and the IPI's arrival nothing else would say that
        // one is on its way, and a reprogramming meanwhile would arm the
        // local device for the event the IPI handles.
        for cpu in self.force_mask.iter() {
            wake.insert(cpu);
            self.pending_mask.insert(cpu);
            if let Some(e) = self.next_event.get_mut(cpu.index()) {
                *e = Ktime::MAX;
            }
        }
        self.force_mask = CpuMask::EMPTY;
        self.program(now);
        wake
    }
}

impl<'a, S, const CPUS: usize, L: Locks> TickSystem<'a, S, CPUS, L>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// Offers the free devices to become (or replace) the broadcast device;
    /// returns whether one did.
    pub(crate) fn offer_broadcast(&self) -> bool {
        let mut bc = self.bc.lock();
        if bc.in_use() {
            return false; // never swap the device under waiting CPUs
        }
        let need_oneshot = self.words.any_oneshot();
        let current = bc.dev.as_ref().map(|(i, _)| *i);
        let mut d = self.devices.lock();
        let Some(id) = d.pool.best_for_broadcast(current, need_oneshot) else {
            return false;
        };
        let (Some(dev), Some(info)) = (d.pool.get(id), d.pool.info(id).copied()) else {
            return false;
        };
        let Ok(mut ev) = EventDevice::with_info(dev, info, self.grid.period()) else {
            return false;
        };
        if ev.attach().is_err() {
            return false;
        }
        if let Some((old, mut oldev)) = bc.dev.take() {
            let _ = oldev.release();
            d.pool.set_owner(old, Owner::Free);
        }
        d.pool.set_owner(id, Owner::Broadcast);
        log::info!("tick: broadcast device: {}", info.name);
        bc.dev = Some((id, ev));
        true
    }

    /// The broadcast device's name, if any.
    pub fn broadcast_device(&self) -> Option<&'static str> {
        self.bc.lock().dev.as_ref().map(|(_, e)| e.name())
    }

    /// Hands `cpu`'s tick (its state `c`, held) to the broadcast device
    /// before deep idle.
    pub(crate) fn broadcast_enter(
        &self,
        cpu: CpuId,
        c: &mut TickCpu<'a, S>,
        now: Ktime,
    ) -> Result<(), IdleError> {
        let period = self.grid.period();
        let oneshot = c.mode.is_oneshot();
        let mut bc = self.bc.lock();
        let Some((_, dev)) = bc.dev.as_mut() else {
            return Err(IdleError::Busy);
        };
        let f = dev.features();
        let other_mode_busy = if oneshot {
            !bc.periodic_mask.is_empty()
        } else {
            !bc.oneshot_mask.is_empty()
        };
        let capable = if oneshot {
            f.contains(Features::ONESHOT)
        } else {
            f.contains(Features::PERIODIC)
        };
        // A forced CPU waits (shallow) for the IPI that handles its expired
        // event: going deep again would re-arm the broadcast device for an
        // event already handed to it (Linux returns -EBUSY).
        if !capable || other_mode_busy || bc.force_mask.contains(cpu) {
            return Err(IdleError::Busy);
        }
        let local_next = c.device_event();
        if let Some((_, ev)) = c.dev.as_mut() {
            if ev.set_state(DeviceState::Shutdown, Nanos::ZERO).is_err() {
                return Err(IdleError::Busy);
            }
        }
        c.in_broadcast = true;
        c.bc_owed = true;
        if oneshot {
            bc.oneshot_mask.insert(cpu);
            bc.set_event(cpu, local_next, now);
        } else {
            let start = bc.periodic_mask.is_empty();
            bc.periodic_mask.insert(cpu);
            if start {
                if let Some((_, dev)) = bc.dev.as_mut() {
                    let _ = dev.set_state(DeviceState::Periodic, period);
                }
            }
        }
        Ok(())
    }

    /// Takes `cpu`'s tick (its state `c`, held) back from the broadcast
    /// device after deep idle.
    pub(crate) fn broadcast_exit(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, now: Ktime) {
        let period = self.grid.period();
        if !c.in_broadcast || c.has_dummy() {
            return; // a dummy's CPU stays in broadcast for good
        }
        c.in_broadcast = false;
        let mode = c.mode;
        if let Some((_, ev)) = c.dev.as_mut() {
            let to = if mode.is_oneshot() {
                DeviceState::Oneshot
            } else {
                DeviceState::Periodic
            };
            if let Err(e) = ev.set_state(to, period) {
                log::error!("tick: {cpu}: {} cannot resume: {e:?}", ev.name());
            }
        }
        let mut bc = self.bc.lock();
        if mode.is_oneshot() {
            bc.oneshot_mask.remove(cpu);
            if bc.pending_mask.contains(cpu) {
                // The handler found it due and its IPI is on the way: that
                // IPI handles the event and programs the local device.
                return;
            }
            if bc.event_of(cpu) <= now {
                // Due, and the broadcast device (armed for it, or earlier)
                // is about to fire: let its handler IPI this CPU rather
                // than program the local device with an expired event.
                bc.force_mask.insert(cpu);
                bc.program(now);
                return;
            }
            if let Some(e) = bc.next_event.get_mut(cpu.index()) {
                *e = Ktime::MAX;
            }
            self.reprogram(cpu, c, Some(&mut bc), now);
            bc.program(now);
        } else {
            bc.periodic_mask.remove(cpu);
            if bc.periodic_mask.is_empty() {
                if let Some((_, dev)) = bc.dev.as_mut() {
                    let _ = dev.set_state(DeviceState::Shutdown, Nanos::ZERO);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTimer;
    use std::boxed::Box;

    fn ms(n: u64) -> Ktime {
        Ktime::from_nanos(n * 1_000_000)
    }

    fn hpet() -> Broadcast<'static, 4> {
        let dev: &'static FakeTimer = Box::leak(Box::new(FakeTimer::global(
            "hpet",
            Features::ONESHOT | Features::PERIODIC,
            50,
        )));
        let mut ev = EventDevice::new(dev, Nanos::from_millis(4)).unwrap();
        ev.attach().unwrap();
        let mut bc = Broadcast::new();
        bc.dev = Some((DeviceId(0), ev));
        bc
    }

    #[test]
    fn one_shot_broadcast_is_armed_for_the_earliest_waiter_and_wakes_the_due_ones() {
        let mut bc = hpet();
        assert!(!bc.in_use());
        let (cpu1, cpu3) = (CpuId::new(1), CpuId::new(3));
        bc.oneshot_mask.insert(cpu1);
        bc.set_event(cpu1, ms(30), ms(0));
        bc.oneshot_mask.insert(cpu3);
        bc.set_event(cpu3, ms(10), ms(0));
        assert!(bc.in_use());
        let armed = bc.dev.as_ref().map(|(_, e)| e.next_event());
        assert_eq!(armed, Some(ms(10)));
        // Fires at 10 ms: CPU 3 is due, CPU 1 is not; re-armed for CPU 1.
        let wake = bc.event(ms(10));
        assert_eq!(wake, CpuMask::single(cpu3));
        assert_eq!(bc.event_of(cpu3), Ktime::MAX);
        let armed = bc.dev.as_ref().map(|(_, e)| e.next_event());
        assert_eq!(armed, Some(ms(30)));
    }

    #[test]
    fn an_event_of_a_cpu_out_of_range_is_never() {
        let bc = hpet();
        assert_eq!(bc.event_of(CpuId::new(4)), Ktime::MAX);
        assert_eq!(bc.event_of(CpuId::new(u32::MAX)), Ktime::MAX);
    }

    #[test]
    fn without_a_device_nothing_is_woken() {
        let mut bc: Broadcast<'static, 2> = Broadcast::new();
        bc.oneshot_mask.insert(CpuId::BOOT);
        assert!(bc.event(ms(5)).is_empty());
    }
}
