//! # tick — the periodic tick, high-resolution timers, NO_HZ idle, broadcast
//!
//! The top layer of dynticks, in the shape of Linux's
//! `kernel/time/tick-common.c`, `tick-oneshot.c`, `tick-sched.c`,
//! `tick-broadcast.c` and `hrtimer.c`:
//!
//! ```text
//!                     TickConfig { hz, nohz, highres }
//!                                  │
//!   clockevents::DevicePool ──► per-CPU tick device ──► TickMode
//!                                  │   (periodic / oneshot-periodic /
//!                                  │    NO_HZ low-res / high-res)
//!   clocksource::Timekeeper ◄──────┤ timekeeping duty: jiffies, update
//!   TimerQueue (per CPU) ◄─────────┤ timers at their expiry (high-res)
//!                                  │ or at the next tick (low-res)
//!   Broadcast device ◄─────────────┘ stands in for C3STOP devices
//! ```
//!
//! - [`config`]: what is asked for and the [`TickMode`] reached.
//! - [`queue`]: the per-CPU timer queue (a hierarchical wheel used as an
//!   exact radix heap; caller-owned storage, no allocation).
//! - [`system`]: [`TickSystem`], device setup and the interrupt path.
//! - [`nohz`]: stopping and restarting the tick around idle.
//! - [`broadcast`]: the broadcast device for CPUs in deep idle.
//! - [`advance`]: adaptive timer advance (program early, spin to the
//!   deadline), off by default.
//!
//! Mode switching follows capabilities: a CPU whose device cannot do
//! one-shot stays periodic even with NO_HZ asked for, and
//! [`CpuInfo::periodic_reason`] says why.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod advance;
pub mod broadcast;
pub mod config;
pub mod nohz;
pub mod queue;
pub mod system;

pub use advance::{TimerAdvance, MAX_TIMER_ADVANCE};
pub use config::{PeriodicReason, TickConfig, TickMode};
pub use nohz::{IdleDepth, IdleSleep};
pub use queue::{NotQueued, QueueFull, Timer, TimerId, TimerQueue, TimerSlot};
pub use system::{
    AddError, CpuInfo, CpuStats, IdleError, Rearm, RegisterError, TickSystem, WatchdogSchedule,
    MAX_CLOCK_SOURCES, MAX_EVENT_DEVICES, WATCHDOG_IDLE_DEFERRAL_MAX,
};
