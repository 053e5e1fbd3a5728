//! # sim — a deterministic virtual-time machine for host tests
//!
//! The fakes that move time, made faithful: generic devices
//! that follow the `clocksource` and `clockevents` contracts to the letter,
//! driven by one shared virtual clock, with faults injected at run time and
//! everything recorded for exact assertions. `std` only; never linked into
//! the guest.
//!
//! ```text
//!                     Arc<VirtualClock>  (true time, only moves forward)
//!                ┌────────────┴─────────────┐
//!                ▼                          ▼
//!   SimCounter: ClockSource      SimEventDevice: ClockEventDevice
//!   count = f(true time)         next_fire() ─► machine advances the clock
//!   drift, stuck, deep idle,     fire()      ─► interrupt on target_cpu()
//!   slow reads                   late, lost, TooLate race, deep-idle stop
//!                └────────────┬─────────────┘
//!                             ▼
//!                 Trace: (time, cpu, what) records
//! ```
//!
//! - [`clock`]: [`VirtualClock`], the simulation's true time.
//! - [`counter`]: [`SimCounter`], a free-running counter with exact
//!   (128-bit, no float) drift and wrap.
//! - [`event`]: [`SimEventDevice`], a programmable timer with the Linux
//!   clock-event state machine, and [`InterruptSource`], what the machine
//!   drives.
//! - [`trace`]: [`Trace`], the shared log tests assert on.
//! - [`rng`]: [`rng::XorShift64`] and [`rng::deltas`], reproducible inputs.
//! - [`absent`]: [`Absent`], the bus where no device answers (reads all
//!   ones).
//! - [`bus`]: [`SlowBus`], a bus whose every access takes virtual time.
//! - [`conformance`]: the scenarios every tick device passes, called by
//!   each source's `tests/sim.rs` with a bring-up closure.
//!
//! Devices are plain values: share them with `Arc`, or [`SimCounter::leak`] /
//! [`SimEventDevice::leak`] them for the `&'static dyn` the core registers.
//! Nothing here is global, so tests run in parallel.

pub mod absent;
pub mod bus;
pub mod clock;
pub mod conformance;
pub mod counter;
pub mod event;
pub mod machine;
pub mod rng;
pub mod trace;

pub use absent::Absent;
pub use bus::SlowBus;
pub use clock::Edges;
pub use clock::VirtualClock;
pub use counter::{CounterConfig, SimCounter};
pub use event::{EventConfig, InterruptSource, SimEventDevice};
pub use machine::{CpuRun, Fired, Machine};
pub use trace::{Trace, TraceEvent, TraceKind};
