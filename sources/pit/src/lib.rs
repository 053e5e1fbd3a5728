//! # pit — the Intel 8254 programmable interval timer
//!
//! The PC's oldest timer: three 16-bit down-counters clocked at
//! 1.193182 MHz. This crate drives two of them, the way Linux does in
//! drivers/clocksource/i8253.c, arch/x86/kernel/i8253.c and
//! arch/x86/kernel/tsc.c (`pit_calibrate_tsc`, `quick_pit_calibrate`), and
//! models the chip for the simulator and a hypervisor:
//!
//! ```text
//!             ports 0x40–0x43, 0x61 (hw::PortIo)
//!   ┌─────────────────────────────────────────────────────────────┐
//!   │ Pit: control words, counter latch, read-back, port B        │
//!   └───────┬───────────────────────────────────────┬─────────────┘
//!           │ counter 0                              │ counter 2, GATE2 = port B bit 0
//!   PitClockEvent "pit"                      PitClockSource "pit-ch2"
//!     mode 2: periodic tick                    mode 2, count 65536: free-running
//!     mode 0: one shot   [feature oneshot]     read = 0xFFFF − latched count
//!     OUT0 ──► IRQ0                            calibration reference / last-resort clock
//!
//!   model::PitModel (feature model): the 8254 and its PC wiring, counting
//!   from true time, implementing PortIo and InterruptSource
//! ```
//!
//! - [`regs`]: control word, read-back, status and port B as typed values
//!   (Intel 8254 datasheet, "Control Word Format" and "Read-Back Command").
//! - [`chip`]: [`Pit`], the typed port sequences, including Linux's
//!   shutdown sequence and its virtual-PIT workaround.
//! - [`event`]: [`PitClockEvent`], counter 0 as a clock-event device.
//! - [`source`]: [`PitClockSource`], counter 2 as a clock source, and the
//!   bounded "is the PIT alive?" probe.
//! - `model` (feature `model`): `model::PitModel`.
//!
//! # Cargo features
//!
//! - `oneshot`: counter 0 offers one-shot mode (and with it NO_HZ and
//!   high-resolution timers). Without it the device is periodic only and
//!   the tick layer keeps a CPU on it periodic
//!   (`PeriodicReason::DeviceLacksOneshot`).
//! - `model`: the device model (uses `std`).
//!
//! # Figures
//!
//! | | clocks | time |
//! |---|---|---|
//! | one clock | 1 | 838.1 ns |
//! | one-shot min delta (Linux) | 0xF | 12.57 µs |
//! | one-shot max delta (Linux) | 0x7FFF | 27.46 ms |
//! | counter range | 0x10000 | 54.93 ms |
//! | `PIT_LATCH` at HZ=100 | 11932 | 10.000151 ms |
//! | counter-2 clock source max deferment | | 24.441 ms |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "model")]
extern crate std;

pub mod chip;
pub mod event;
pub mod regs;
pub mod source;

#[cfg(feature = "model")]
pub mod model;

pub use chip::Pit;
pub use event::PitClockEvent;
pub use regs::{pit_latch, Reload, PIT_TICK_RATE};
pub use source::{Ch2Options, PitClockSource, PitError};
