//! # clocksource — free-running counters turned into time
//!
//! The bottom layer of dynticks, in the shape of Linux's
//! `kernel/time/clocksource.c` and `timekeeping.c`:
//!
//! ```text
//!   driver (TSC, HPET, PIT, ...)        implements ClockSource: read() → Cycles
//!        │
//!        ▼
//!   Registry ── rating, user override ──► selected source
//!        │            ▲
//!        │            └── Watchdog: must-verify sources checked against a
//!        │                trusted one; skew past the threshold → UNSTABLE,
//!        │                switch, and the skew taken out of the clocks
//!        ▼
//!   Timekeeper: cycles ─(mult/shift)─► monotonic / raw / boot / realtime
//! ```
//!
//! - [`time`]: the typed units ([`Instant`] per clock, [`Ktime`] for the
//!   monotonic one, [`Nanos`], [`Cycles`], [`Hertz`]).
//! - [`mult_shift`]: cycles→ns by multiply and shift, with its error bound.
//! - [`source`]: the [`ClockSource`] contract and max deferment.
//! - [`calibrate`](mod@calibrate): measuring a counter's rate against a reference, bounded.
//! - [`registry`], [`watchdog`], [`timekeeper`]: selection, verification and
//!   the clocks built on the selected source.
//! - [`published`]: the monotonic clock published for lock-free reads
//!   (Linux's `tk_fast` latch and vDSO clock mode).
//!
//! `no_std`, no allocation, no `unsafe`.
#![no_std]
// The loom build (`--cfg loom`) compiles the model-checked tests alone: the
// test fakes the other tests use are unused there.
#![cfg_attr(all(test, loom), allow(dead_code, unused_imports))]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod calibrate;
pub mod mult_shift;
pub mod published;
pub mod registry;
pub mod source;
pub mod time;
pub mod timekeeper;
pub mod watchdog;

pub use calibrate::{calibrate, Calibration, CalibrationError};
pub use mult_shift::{ConversionError, CyclesToNs, MultShift, NsToCycles};
pub use published::{source_key, InlineRead, PublishedClock};
pub use registry::{
    Entry, OverrideError, RegisterError, Registry, ReselectError, SourceId, UnknownSource,
    UnregisterError,
};
pub use source::{ClockParams, ClockSource, ClockSourceFlags};
pub use time::{
    Boot, BootTime, Clock, Cycles, Hertz, Instant, Ktime, Monotonic, Nanos, Raw, RawTime, Realtime,
    WallTime, NSEC_PER_MSEC, NSEC_PER_SEC, NSEC_PER_USEC,
};
pub use timekeeper::{AdjustError, ClockError, Timekeeper, MAX_FREQ_ADJ_PPB};
pub use watchdog::{Verdict, Watchdog, WatchdogError, WatchdogReport};
