//! # tick — the periodic tick, high-resolution timers, NO_HZ idle, broadcast
//!
//! The top layer of dynticks, in the shape of Linux's
//! `kernel/time/tick-common.c`, `tick-oneshot.c`, `tick-sched.c`,
//! `tick-broadcast.c` and `hrtimer.c`:
//!
//! ```text
//!                     TickConfig::new(hz).with_nohz(..).with_highres(..)
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
//! - [`system`]: [`TickSystem`], registration, mode selection, the timer
//!   and reporting API.
//! - `timekeeping` (crate-private): the timekeeper, clock sources, tick
//!   grid ([`grid`]), jiffies and the timekeeping duty.
//! - [`percpu`]: one CPU's tick state ([`CpuInfo`], [`CpuStats`]).
//! - [`interrupt`]: the interrupt path and reprogramming.
//! - [`nohz`]: stopping and restarting the tick around idle.
//! - [`broadcast`]: the broadcast device for CPUs in deep idle.
//! - [`watchdog`]: when the clocksource watchdog runs, deferred in idle.
//! - [`lock`]: the locks the parts sit behind, and their order.
//! - [`remote`]: timers queued from one CPU for another, and the kick IPI
//!   that has the target program its own device.
//! - [`queue`]: the per-CPU timer queue (a hierarchical wheel used as an
//!   exact radix heap; caller-owned storage, no allocation).
//! - [`advance`]: adaptive timer advance (program early, spin to the
//!   deadline), off by default.
//!
//! # State, and who touches it
//!
//! [`TickSystem`] is split the way an SMP kernel needs it split:
//!
//! | part | holds | written by | read by | on SMP |
//! |---|---|---|---|---|
//! | timekeeping | timekeeper, clock sources, tick grid, jiffies, duty CPU | the duty holder's tick (and a CPU woken tickless, before it uses jiffies); registration | every CPU | a lock `L`, taken by the duty holder to update; the duty, max deferment, resolution and jiffies mirrored in atomic words; the embedder's clock reads go lock-free through a `PublishedClock` |
//! | per-CPU (`TickCpu`) | tick device, timer queue, mode, next tick, idle accounting, advance, stats | its own CPU only: its interrupt, idle loop, timer calls | its CPU; others by [`CpuInfo`] snapshot | a lock `L` of its own: its CPU's interrupt, idle loop and timer calls, and another CPU queueing or cancelling a timer for it (which never programs its device) |
//! | broadcast | the broadcast device, the waiting CPUs and their next events | a CPU entering or leaving deep idle; the broadcast interrupt | the same | a lock `L` of its own (Linux `tick_broadcast_lock`) |
//! | watchdog schedule | the clocksource watchdog's next and last check, idle deferral | the watchdog CPU's interrupt (the duty holder, else the last holder, else CPU 0); clocksource reselection | the watchdog CPU | the duty's, with timekeeping's lock to change the clocksource |
//! | device pool | every registered event device and its owner | registration only | registration, the interrupt's owner check | a lock `L`, held briefly (the interrupt copies the owner and device out) |
//!
//! Each part sits behind a lock of the embedder's family `L`
//! ([`lock`]: [`Locks`], taken in the order CPU → broadcast → devices →
//! timekeeping), and every entry point takes `&self`: CPUs call in at the
//! same time, a CPU's interrupt holding its own state's lock, the
//! timekeeping's only for the duty, the watchdog or a NO_HZ catch-up, the
//! broadcast's only around deep idle. What a CPU would otherwise read of
//! every other CPU (who last held the duty, who runs one-shot) and of the
//! timekeeping on each interrupt (the duty holder, max deferment, the
//! clocksource's resolution, jiffies) are shared atomic words. The default
//! family, [`Single`], is for an embedder that serialises every call
//! itself (one CPU, or one lock over the kernel, as the guest does today).
//! No per-CPU method reaches another CPU's state: the shared parts it
//! needs (the grid, the max deferment, the watchdog's deadline) are passed
//! in.
//!
//! Mode switching follows capabilities: a CPU whose device cannot do
//! one-shot stays periodic even with NO_HZ asked for, and
//! [`CpuInfo::periodic_reason`] says why.
#![no_std]
// The loom build (`--cfg loom`) runs the model-checked tests alone.
#![cfg_attr(all(test, loom), allow(dead_code, unused_imports))]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod advance;
pub mod broadcast;
pub mod config;
pub mod grid;
pub mod interrupt;
pub mod lock;
pub mod nohz;
pub mod percpu;
pub mod queue;
pub mod remote;
pub mod system;
mod timekeeping;
pub mod watchdog;

#[cfg(all(loom, test))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod stress;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use advance::{TimerAdvance, MAX_TIMER_ADVANCE};
pub use config::{PeriodicReason, TickConfig, TickMode};
pub use grid::{Jiffies, TickGrid};
pub use lock::{Lock, Locks, Single};
pub use nohz::{IdleDepth, IdleSleep};
pub use percpu::{CpuInfo, CpuStats};
pub use queue::{NotQueued, QueueFull, Timer, TimerId, TimerQueue, TimerSlot};
pub use remote::Kick;
pub use system::{
    AddError, IdleError, LockFreeRead, Rearm, RegisterError, TickSystem, TimerFn,
    MAX_CLOCK_SOURCES, MAX_EVENT_DEVICES,
};
pub use watchdog::{WatchdogSchedule, WATCHDOG_IDLE_DEFERRAL_MAX};
