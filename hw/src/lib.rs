//! # hw — how drivers touch hardware, and how models stand in for it
//!
//! Every driver in `sources/*` reaches its device only through the small
//! traits here. On metal they are implemented by [`metal`] (feature `metal`)
//! with x86 instructions and volatile raw-pointer accesses; in the simulator
//! and in a hypervisor they are implemented by the device models. The same
//! driver code runs over both.
//!
//! ```text
//!   driver (sources/hpet, lapic, pit, tsc)
//!      │  Mmio / PortIo / MsrAccess / TscRead
//!      ├──────────────► metal::*      (volatile MMIO, in/out, rdmsr/wrmsr, rdtsc)
//!      └──────────────► models        (register-level, time from a TimeBase)
//!                          │ InterruptSource: when does the device interrupt?
//!                          ▼
//!                       simulator / hypervisor
//! ```
//!
//! Rules the traits encode (STYLE.md §3): no Rust reference to MMIO is ever
//! formed; register offsets are byte offsets from the device's base; every
//! access is a side effect, so all methods take `&self` and implementations
//! use interior mutability.
#![no_std]
#![cfg_attr(not(feature = "metal"), forbid(unsafe_code))]

use clocksource::Ktime;

#[cfg(feature = "metal")]
pub mod metal;

/// Memory-mapped registers of one device, addressed by byte offset.
///
/// # Contract
///
/// - Each call is exactly one access of the stated width (a 64-bit access
///   may be split in two 32-bit ones only where the device's datasheet
///   allows it, e.g. HPET on a 32-bit bus; the implementation says so).
/// - Offsets outside the device's register block read as all ones and
///   ignore writes (as an unclaimed bus cycle does); they never fault.
pub trait Mmio: Sync {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// Reads the 64-bit register at `offset`.
    fn read64(&self, offset: usize) -> u64;
    /// Writes the 64-bit register at `offset`.
    fn write64(&self, offset: usize, value: u64);
}

/// 8-bit I/O ports (the PIT, the 8259, port 0x61).
pub trait PortIo: Sync {
    /// `in al, port`.
    fn inb(&self, port: u16) -> u8;
    /// `out port, al`.
    fn outb(&self, port: u16, value: u8);
}

/// Model-specific registers (x2APIC, `IA32_TSC_DEADLINE`).
///
/// # Contract
///
/// A read or write of an MSR the implementation does not know returns
/// `Err(MsrFault)` instead of raising #GP: drivers probe with it and fall
/// back (metal implementations only give access to MSRs the caller has
/// established exist, via CPUID).
pub trait MsrAccess: Sync {
    /// `rdmsr`.
    fn rdmsr(&self, msr: u32) -> Result<u64, MsrFault>;
    /// `wrmsr`.
    fn wrmsr(&self, msr: u32, value: u64) -> Result<(), MsrFault>;
}

/// An MSR access the CPU (or model) refuses: #GP on metal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrFault {
    /// The MSR.
    pub msr: u32,
}

/// The time-stamp counter.
pub trait TscRead: Sync {
    /// `rdtsc`: the current TSC value.
    fn rdtsc(&self) -> u64;
    /// Whether [`rdtsc`](Self::rdtsc) is the CPU's own `rdtsc` instruction
    /// and nothing else, so a clock reader may execute it inline instead
    /// of calling through the driver (a clocksource's
    /// `clocksource::InlineRead::Tsc`). A model or a fake says no (the
    /// default): its counter is not the CPU's.
    fn is_cpu_tsc(&self) -> bool {
        false
    }
}

/// The true time a device model runs on (the simulator's virtual clock, or
/// a hypervisor's host clock).
pub trait TimeBase: Send + Sync {
    /// Now, in nanoseconds since the time base began.
    fn now(&self) -> Ktime;
}

/// What a simulator or hypervisor needs from a device model to deliver its
/// interrupts.
pub trait InterruptSource: Sync {
    /// When the next interrupt is due (true time, lateness included), or
    /// `None` if nothing is pending. It may be earlier than now (overdue):
    /// then it is due immediately.
    fn next_fire(&self) -> Option<Ktime>;
    /// Called once the time base has reached [`next_fire`]: raises (or, under
    /// an injected fault, drops) the interrupt and moves the device on.
    /// Returns whether an interrupt was delivered. Called early, it does
    /// nothing and returns `false`.
    ///
    /// [`next_fire`]: InterruptSource::next_fire
    fn fire(&self) -> bool;
    /// The CPU an interrupt is delivered to, if the device knows.
    fn target_cpu(&self) -> Option<usize>;
    /// Marks whether the device's CPU is in deep idle (devices that stop
    /// there pause; others ignore it).
    fn set_deep_idle(&self, deep: bool);
}
