//! # acpi_pm — the ACPI power-management timer as a clock source
//!
//! The PM timer is a free-running up-counter in the chipset, clocked at
//! 3.579545 MHz (the PC's 14.31818 MHz crystal ÷ 4) and read with one
//! 32-bit `in` from the port the FADT names (`PM_TMR_BLK`, or
//! `X_PM_TMR_BLK` in system I/O space; QEMU's PIIX4 and ICH9: 0x608). It
//! counts 24 bits, or 32 where the FADT sets `TMR_VAL_EXT` (ACPI 6.5
//! §4.8.3.3, "Power Management Timer (PM_TMR)"). It has no interrupt a
//! clock needs (its overflow sets `TMR_STS` and may raise the SCI, which
//! only extends the count in software), so it is a clock source only: no
//! clock-event device and no tickless feature. This crate follows Linux
//! drivers/clocksource/acpi_pm.c and include/linux/acpi_pmtmr.h.
//!
//! ```text
//!   FADT PM_TMR_BLK ─► port
//!   in eax, port ──► & 0xFF_FFFF ──► Cycles      24 bits, wraps every
//!   (hw::PortIo::inl)                              2^24 / 3.579545 MHz = 4.687 s
//!
//!   AcpiPmClockSource "acpi_pm", rating 200, CONTINUOUS | VALID_FOR_HRES
//!     probe(): reads until the count moves (bounded), forwards or across
//!              the wrap, else AcpiPmError
//!
//!   model::PmTimerModel (feature model): the register, counting from true
//!   time, implementing hw::PortIo
//! ```
//!
//! - [`source`]: [`AcpiPmClockSource`], its figures and the bounded probe,
//!   [`AcpiPmError`].
//! - `model` (feature `model`): `model::PmTimerModel`.
//!
//! # Why 24 bits, even where the FADT says 32
//!
//! Linux masks the PM timer to 24 bits on every machine (`ACPI_PM_MASK` is
//! `CLOCKSOURCE_MASK(24)`) and never reads `TMR_VAL_EXT`; so does this
//! driver. The low 24 bits of a 32-bit PM timer are a 24-bit PM timer, so
//! one mask is right on every chipset and nothing rests on a firmware flag
//! being true. What 32 bits would buy is a longer wrap (1200 s) and with
//! it a longer max deferment (~534 s instead of 2.086 s), which matters
//! only where the PM timer is the system clock — a machine with neither a
//! usable TSC nor an HPET, where a tickless CPU then wakes every 2.086 s.
//!
//! # Cargo features
//!
//! - `model`: the device model (uses `std`).
//!
//! # Figures
//!
//! | | value | source |
//! |---|---|---|
//! | rate | 3 579 545 Hz | ACPI 6.5 §4.8.3.3; Linux `PMTMR_TICKS_PER_SEC` |
//! | one tick | 279.4 ns | |
//! | mask | 0xFF_FFFF | Linux `ACPI_PM_MASK` |
//! | wrap | 4.687 s | 2^24 / 3 579 545 Hz |
//! | rating | 200 | Linux `clocksource_acpi_pm` |
//! | max deferment | 2.085 701 024 s | Linux's boot line `clocksource: acpi_pm: … max_idle_ns: 2085701024 ns` |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "model")]
extern crate std;

pub mod source;

#[cfg(feature = "model")]
pub mod model;

pub use source::{AcpiPmClockSource, AcpiPmError, FREQUENCY, MASK, NAME, PROBE_READS, RATING};
