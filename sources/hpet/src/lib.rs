//! # hpet — the High Precision Event Timer: driver and register model
//!
//! One HPET timer block (IA-PC HPET 1.0a, Intel/Microsoft 2004) gives the
//! system two things, and this crate offers both, in the shape of Linux's
//! `arch/x86/kernel/hpet.c`:
//!
//! ```text
//!        HPET block (1 KiB MMIO, base from the ACPI "HPET" table)
//!   ┌──────────────────────────────────────────────────────────────┐
//!   │ main counter ─ period fs ─► count ──────────────┐            │
//!   │  (32/64-bit, ENABLE_CNF)                        │            │
//!   │                         ┌── ==? ── comparator 0 ┼─► IRQ0 / I/O APIC input
//!   │                         ├── ==? ── comparator 1 ┼─► IRQ8 / ...
//!   │                         └── ==? ── comparator n ┘            │
//!   └──────────────────────────────────────────────────────────────┘
//!        │ MAIN_CNT                          │ Tn_COMPARATOR
//!        ▼                                   ▼
//!   HpetClockSource (rating 250)      HpetClockEvent "hpet" (rating 50, global:
//!   CONTINUOUS | VALID_FOR_HRES       a broadcast candidate), PERIODIC always
//!                                     (if Tn_PER_INT_CAP), ONESHOT with feature
//!                                     `oneshot` — the comparator race guarded
//! ```
//!
//! - [`regs`]: the register map as named constants and `bitflags` types.
//! - [`probe`](mod@probe): [`probe()`] validates a device (period, revision, comparators,
//!   a counter that counts) and returns [`HpetInfo`] or a typed [`HpetError`];
//!   the caller then falls back to another clocksource and device.
//! - [`clocksource`]: [`HpetClockSource`], the main counter.
//! - [`clockevent`]: [`HpetClockEvent`], comparator 0 — periodic start
//!   sequence, one-shot programming with Linux's 128-cycle race guard, and
//!   the acknowledgement a level-triggered route needs (the device
//!   contract's `acknowledge`).
//! - `model` (feature `model`, std): `model::HpetModel`, a faithful
//!   register-level HPET for the simulator and a hypervisor.
//!
//! Tickless capability is this crate's Cargo feature `oneshot`: without it
//! the event device declares only `PERIODIC`, and the tick layer keeps a CPU
//! that depends on it periodic even when NO_HZ is asked for.
//!
//! `no_std`, no allocation outside the model, no `unsafe`: registers are
//! reached only through [`hw::Mmio`].
#![no_std]
#![forbid(unsafe_code)]
#[cfg(feature = "model")]
extern crate std;

pub mod clockevent;
pub mod clocksource;
#[cfg(feature = "model")]
pub mod model;
pub mod probe;
pub mod regs;

pub use clockevent::{HpetClockEvent, Route, Routed, Trigger, PERCPU_RATING};
pub use clocksource::HpetClockSource;
pub use probe::{probe, HpetError, HpetInfo};
pub use regs::{CounterPeriod, IrqPins};

#[cfg(all(test, feature = "model"))]
mod tests;
