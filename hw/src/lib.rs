//! # hw — how drivers touch hardware, and how models stand in for it
//!
//! Every driver in `sources/*` reaches its device only through the small
//! traits here. On metal they are implemented by [`metal`] (feature `metal`)
//! with x86 instructions and volatile raw-pointer accesses; in the simulator
//! and in a hypervisor they are implemented by the device models. The same
//! driver code runs over both.
//!
//! ```text
//!   driver (sources/hpet, lapic, pit, tsc, acpi_pm)
//!      │  Mmio / PortIo / MsrAccess / TscRead
//!      ├──────────────► metal::*      (volatile MMIO, in/out, rdmsr/wrmsr, rdtsc)
//!      └──────────────► models        (register-level, time from a TimeBase)
//!                          │ InterruptSource: when does the device interrupt?
//!                          ▼
//!                       simulator / hypervisor
//! ```
//!
//! Rules the traits encode: no Rust reference to MMIO is ever
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

/// I/O ports, 8, 16 and 32 bits wide (the PIT, the 8259 and port 0x61
/// byte by byte; the ACPI PM timer as one 32-bit register).
///
/// # Contract
///
/// - Each call is exactly one access of the stated width: an `inl` is one
///   `in eax, dx`, never four byte reads. A register that must be read
///   whole (the ACPI PM timer, ACPI 6.5 §4.8.3.3: "accessed as 32 bits")
///   gives one consistent value only that way; four byte reads would be
///   four samples of a moving counter.
/// - A port (or byte of a wider access) no device claims reads as all ones
///   and ignores writes, as an unclaimed cycle does on the ISA/LPC bus; it
///   never faults.
///
/// # The 16- and 32-bit defaults
///
/// [`inw`](Self::inw), [`outw`](Self::outw), [`inl`](Self::inl) and
/// [`outl`](Self::outl) default to that unclaimed answer (all ones; writes
/// go nowhere) and never touch [`inb`](Self::inb) or [`outb`](Self::outb).
/// That is correct for an implementor with no register wider than a byte
/// behind it (a PIT model, a byte-port fake in a test), so those implement
/// only the two byte methods. It is not a composition of byte accesses:
/// that would be wrong on hardware (one access is one instruction) and
/// would tear a counter that moves between the bytes. An implementor that
/// reaches real hardware (`metal::MetalPorts`) or models a 16- or 32-bit
/// register must override all four.
pub trait PortIo: Sync {
    /// `in al, port`.
    fn inb(&self, port: u16) -> u8;
    /// `out port, al`.
    fn outb(&self, port: u16, value: u8);
    /// `in ax, port`. Default: no device answers, `0xFFFF` (see the
    /// [trait docs](PortIo#the-16--and-32-bit-defaults)).
    fn inw(&self, port: u16) -> u16 {
        let _ = port;
        u16::MAX
    }
    /// `out port, ax`. Default: no device answers, the write goes nowhere.
    fn outw(&self, port: u16, value: u16) {
        let _ = (port, value);
    }
    /// `in eax, port`. Default: no device answers, `0xFFFF_FFFF`.
    fn inl(&self, port: u16) -> u32 {
        let _ = port;
        u32::MAX
    }
    /// `out port, eax`. Default: no device answers, the write goes nowhere.
    fn outl(&self, port: u16, value: u32) {
        let _ = (port, value);
    }
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

#[cfg(test)]
mod tests {
    use super::PortIo;
    use core::sync::atomic::{AtomicU32, Ordering};

    /// A device with byte registers only: every port reads 0x5A, and the
    /// byte accesses it sees are counted.
    #[derive(Default)]
    struct BytePorts {
        reads: AtomicU32,
        writes: AtomicU32,
    }

    impl PortIo for BytePorts {
        fn inb(&self, _port: u16) -> u8 {
            self.reads.fetch_add(1, Ordering::Relaxed);
            0x5A
        }
        fn outb(&self, _port: u16, _value: u8) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A 32-bit register at port 0x608 (where QEMU puts the ACPI PM timer)
    /// that overrides the wide accesses.
    #[derive(Default)]
    struct WidePorts {
        last: AtomicU32,
    }

    impl PortIo for WidePorts {
        fn inb(&self, _port: u16) -> u8 {
            0xFF
        }
        fn outb(&self, _port: u16, _value: u8) {}
        fn inl(&self, port: u16) -> u32 {
            if port == 0x608 {
                0x00AB_CDEF
            } else {
                u32::MAX
            }
        }
        fn outl(&self, _port: u16, value: u32) {
            self.last.store(value, Ordering::Relaxed);
        }
    }

    #[test]
    fn wide_reads_of_a_byte_only_implementor_are_unclaimed_all_ones() {
        let io = BytePorts::default();
        assert_eq!(io.inw(0x40), 0xFFFF);
        assert_eq!(io.inl(0x40), 0xFFFF_FFFF);
        assert_eq!(
            io.reads.load(Ordering::Relaxed),
            0,
            "a wide read is one access, never composed of byte reads"
        );
        assert_eq!(io.inb(0x40), 0x5A);
        assert_eq!(io.reads.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn wide_writes_of_a_byte_only_implementor_go_nowhere() {
        let io = BytePorts::default();
        io.outw(0x43, 0x1234);
        io.outl(0x43, 0x1234_5678);
        assert_eq!(io.writes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_overriding_implementor_answers_its_own_wide_accesses() {
        let io = WidePorts::default();
        assert_eq!(io.inl(0x608), 0x00AB_CDEF);
        assert_eq!(io.inl(0x60C), 0xFFFF_FFFF);
        io.outl(0x608, 7);
        assert_eq!(io.last.load(Ordering::Relaxed), 7);
        // Not overridden: still the unclaimed default.
        assert_eq!(io.inw(0x608), 0xFFFF);
    }

    #[test]
    fn port_io_stays_object_safe() {
        let io = BytePorts::default();
        let dynamic: &dyn PortIo = &io;
        assert_eq!(dynamic.inl(0x61), u32::MAX);
        assert_eq!(dynamic.inb(0x61), 0x5A);
    }
}
