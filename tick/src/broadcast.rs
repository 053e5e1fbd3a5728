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
//!     broadcast_exit(c): local device → ONESHOT, reprogrammed
//! ```
//!
//! In periodic mode the broadcast device runs periodically and IPIs every
//! waiting CPU on each tick. The broadcast device serves one mode at a time:
//! the mode of the first CPU that needs it; a CPU in the other mode is
//! refused deep idle ([`IdleError::Busy`]).

use clockevents::{CpuMask, DeviceId, DeviceState, EventDevice, Expired, Features, Owner};
use clocksource::{Ktime, Nanos};

use crate::queue::TimerSlot;
use crate::system::{IdleError, TickSystem};

/// Broadcast state.
pub(crate) struct Broadcast<'a, const CPUS: usize> {
    pub(crate) dev: Option<(DeviceId, EventDevice<'a>)>,
    /// CPUs waiting in one-shot mode.
    pub(crate) oneshot_mask: CpuMask,
    /// CPUs taking their periodic tick from the broadcast device.
    pub(crate) periodic_mask: CpuMask,
    /// Each waiting CPU's next event.
    pub(crate) next_event: [Ktime; CPUS],
}

impl<const CPUS: usize> Broadcast<'_, CPUS> {
    pub(crate) fn new() -> Self {
        Broadcast {
            dev: None,
            oneshot_mask: CpuMask::EMPTY,
            periodic_mask: CpuMask::EMPTY,
            next_event: [Ktime::MAX; CPUS],
        }
    }
}

impl<'a, S, const CPUS: usize> TickSystem<'a, S, CPUS>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// Offers the free devices to become (or replace) the broadcast device.
    pub(crate) fn offer_broadcast(&mut self, _now: Ktime) {
        if !self.bc.oneshot_mask.is_empty() || !self.bc.periodic_mask.is_empty() {
            return; // never swap the device under waiting CPUs
        }
        let need_oneshot = self.cpus.iter().any(|c| c.mode.is_oneshot());
        let current = self.bc.dev.as_ref().map(|(i, _)| *i);
        let Some(id) = self.devices.best_for_broadcast(current, need_oneshot) else {
            return;
        };
        let Some(dev) = self.devices.get(id) else {
            return;
        };
        let Ok(mut ev) = EventDevice::new(dev, self.period) else {
            return;
        };
        if ev.attach().is_err() {
            return;
        }
        if let Some((old, mut oldev)) = self.bc.dev.take() {
            let _ = oldev.release();
            self.devices.set_owner(old, Owner::Free);
        }
        self.devices.set_owner(id, Owner::Broadcast);
        log::info!("tick: broadcast device: {}", dev.name());
        self.bc.dev = Some((id, ev));
    }

    /// The broadcast device's name, if any.
    pub fn broadcast_device(&self) -> Option<&'static str> {
        self.bc.dev.as_ref().map(|(_, e)| e.name())
    }

    /// Hands `cpu`'s tick to the broadcast device before deep idle.
    pub(crate) fn broadcast_enter(&mut self, cpu: usize, now: Ktime) -> Result<(), IdleError> {
        let mode = self.cpus[cpu].mode;
        let oneshot = mode.is_oneshot();
        let Some((_, bc)) = self.bc.dev.as_mut() else {
            return Err(IdleError::Busy);
        };
        let f = bc.features();
        let other_mode_busy = if oneshot {
            !self.bc.periodic_mask.is_empty()
        } else {
            !self.bc.oneshot_mask.is_empty()
        };
        let capable = if oneshot {
            f.contains(Features::ONESHOT)
        } else {
            f.contains(Features::PERIODIC)
        };
        if !capable || other_mode_busy {
            return Err(IdleError::Busy);
        }
        let c = &mut self.cpus[cpu];
        let local_next = c.dev.as_ref().map_or(Ktime::MAX, |(_, e)| e.next_event());
        if let Some((_, ev)) = c.dev.as_mut() {
            if ev.set_state(DeviceState::Shutdown, Nanos::ZERO).is_err() {
                return Err(IdleError::Busy);
            }
        }
        c.in_broadcast = true;
        if oneshot {
            self.bc.oneshot_mask.insert(cpu);
            self.bc.next_event[cpu] = local_next;
            self.program_broadcast(now);
        } else {
            let start = self.bc.periodic_mask.is_empty();
            self.bc.periodic_mask.insert(cpu);
            if start {
                let period = self.period;
                if let Some((_, bc)) = self.bc.dev.as_mut() {
                    let _ = bc.set_state(DeviceState::Periodic, period);
                }
            }
        }
        Ok(())
    }

    /// Takes `cpu`'s tick back from the broadcast device after deep idle.
    pub(crate) fn broadcast_exit(&mut self, cpu: usize, now: Ktime) {
        if !self.cpus[cpu].in_broadcast {
            return;
        }
        self.cpus[cpu].in_broadcast = false;
        let period = self.period;
        let mode = self.cpus[cpu].mode;
        if let Some((_, ev)) = self.cpus[cpu].dev.as_mut() {
            let to = if mode.is_oneshot() {
                DeviceState::Oneshot
            } else {
                DeviceState::Periodic
            };
            if let Err(e) = ev.set_state(to, period) {
                log::error!("tick: cpu{cpu}: {} cannot resume: {e:?}", ev.name());
            }
        }
        if mode.is_oneshot() {
            self.bc.oneshot_mask.remove(cpu);
            self.bc.next_event[cpu] = Ktime::MAX;
            self.reprogram(cpu, now);
            self.program_broadcast(now);
        } else {
            self.bc.periodic_mask.remove(cpu);
            if self.bc.periodic_mask.is_empty() {
                if let Some((_, bc)) = self.bc.dev.as_mut() {
                    let _ = bc.set_state(DeviceState::Shutdown, Nanos::ZERO);
                }
            }
        }
    }

    /// Arms the broadcast device for the earliest waiting CPU, or stops it.
    pub(crate) fn program_broadcast(&mut self, now: Ktime) {
        let next = self
            .bc
            .oneshot_mask
            .iter()
            .map(|c| self.bc.next_event[c])
            .min()
            .unwrap_or(Ktime::MAX);
        let Some((_, bc)) = self.bc.dev.as_mut() else {
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

    /// The broadcast device fired: returns the CPUs to wake.
    pub(crate) fn broadcast_event(&mut self) -> CpuMask {
        let now = self.now();
        let Some((_, bc)) = self.bc.dev.as_mut() else {
            return CpuMask::EMPTY;
        };
        bc.event_handled();
        if bc.state() == DeviceState::Periodic {
            return self.bc.periodic_mask;
        }
        let mut wake = CpuMask::EMPTY;
        for cpu in self.bc.oneshot_mask.iter() {
            if self.bc.next_event[cpu] <= now {
                wake.insert(cpu);
                self.bc.next_event[cpu] = Ktime::MAX;
            }
        }
        self.program_broadcast(now);
        wake
    }
}
