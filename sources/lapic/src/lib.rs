//! # lapic — the local APIC timer as a per-CPU clock-event device
//!
//! Every x86_64 CPU has a local APIC with a 32-bit timer that counts down
//! from an initial count at the APIC bus clock divided by a configurable
//! divider, and interrupts its own CPU when it reaches zero (Intel SDM
//! Vol. 3A §10.5.4 "APIC Timer"). Newer CPUs add TSC-deadline mode: the
//! timer fires when the TSC reaches a value written to `IA32_TSC_DEADLINE`.
//! This crate is the driver, after Linux `arch/x86/kernel/apic/apic.c`
//! (`lapic_clockevent`, `setup_APIC_timer`, `calibrate_APIC_clock`), and,
//! behind feature `model`, a register-level model after the SDM and QEMU
//! `hw/intc/apic.c` / `apic_common.c`.
//!
//! ```text
//!   CPUID ──► Capabilities   x2APIC · TSC-deadline · ARAT · 0x15 crystal · 0x4000_0010 bus
//!                 │
//!                 ▼
//!   timer_frequency(access, caps, reference?)      (once, on the boot CPU)
//!       CPUID states the bus ──► exact
//!       else calibrate TMCCT against the reference (PIT, HPET, TSC: any ClockSource)
//!                 │ TimerFrequency { bus, timer = bus/16, oneshot (error-bounded), source }
//!                 ▼
//!   LapicTimer::new(TimerConfig)                   (per CPU, on that CPU)
//!       SVR enable · LVTT masked · TDCR ÷16 · mode: deadline > one-shot > periodic
//!                 │ ClockEventDevice  "lapicN" / "lapic-deadlineN"
//!                 ▼                    PERCPU, C3STOP unless ARAT, rating 100 / 150
//!   Registers (internal): xAPIC MMIO page  │  x2APIC MSR 0x800 + offset/16
//!                         IA32_TSC_DEADLINE (MSR 0x6E0) + rdtsc in deadline mode
//! ```
//!
//! # Cargo features: what the device offers
//!
//! - none: `PERIODIC` only. The tick layer keeps this CPU periodic
//!   (`DeviceLacksOneshot`) even when NO_HZ is asked for.
//! - `oneshot`: adds `ONESHOT` through TMICT count-down.
//! - `deadline`: one-shot events through `IA32_TSC_DEADLINE` where the CPU
//!   has it (`CPUID.01H:ECX[24]`); preferred over TMICT.
//! - `model`: `model::LapicModel` (std), for the simulator and a
//!   hypervisor. The model always emulates the full hardware.
//!
//! # Modules
//!
//! - [`regs`]: register offsets, MSRs, LVT timer and divide encodings.
//! - [`caps`]: the CPUID facts.
//! - [`freq`]: the timer's rate — CPUID or calibration, with its error bound.
//! - [`timer`]: [`LapicTimer`], the clock-event device.
//! - `access` (internal): one register trait over xAPIC MMIO and x2APIC MSRs.
//!
//! `no_std`, no allocation, no `unsafe`; bad hardware gives an [`Error`] or
//! a `DeviceError`, logged, never a panic.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "model")]
extern crate std;

mod access;
pub mod caps;
mod error;
pub mod freq;
pub mod regs;
pub mod timer;

#[cfg(feature = "model")]
pub mod model;

pub use access::{enable_x2apic, Access};
pub use caps::Capabilities;
pub use error::Error;
pub use freq::{
    calibrate_timer, raise_by_ppm, timer_frequency, FrequencySource, TimerFrequency, APIC_DIVISOR,
    CALIBRATION_MAX_READS, CALIBRATION_RETRY_WINDOW, CALIBRATION_WINDOW, MAX_CALIBRATION_ERROR_PPM,
    MIN_BUS_RATE, RETRY_ABOVE_PPM, STOPPED_PROBE_READS,
};
pub use regs::{Divide, LvtTimer, Reg, TimerModeBits};
pub use timer::{
    select_mode, DeadlineClock, LapicTimer, Offer, TimerConfig, TimerMode, DEADLINE_MAX_DELTA,
    DEADLINE_MIN_DELTA, LOCAL_TIMER_VECTOR, MAX_DELTA_TICKS, MIN_DELTA_TICKS, RATING, RATING_ARAT,
    SPURIOUS_APIC_VECTOR,
};
