//! Buses that take time: register access as it costs on hardware.
//!
//! In the simulator a register read happens at one instant of virtual time,
//! so a driver polling a counter in a loop would see one count forever. On
//! hardware every access takes time: an ISA port `in` is about 1 µs, an
//! ACPI PM timer read ≥ 0.5 µs (the reason Linux's `acpi_pm.c` reads it
//! three times to catch a bad latch), and in a VM each one is a VM exit.
//! [`SlowBus`] puts that cost on the virtual clock, in front of a register
//! model or [`Absent`](crate::Absent).
//!
//! ```
//! use hw::PortIo;
//! use clocksource::{Ktime, Nanos};
//! use sim::{Absent, SlowBus, VirtualClock};
//!
//! let clock = VirtualClock::new();
//! let nothing = Absent::new();
//! let bus = SlowBus::new(&clock, &nothing, Nanos::from_micros(1));
//! assert_eq!(bus.inb(0x61), 0xFF);
//! assert_eq!(bus.inl(0x608), u32::MAX);
//! assert_eq!(clock.now(), Ktime::from_micros(2));
//! ```

use std::sync::Arc;

use clocksource::Nanos;
use hw::{Mmio, PortIo};

use crate::VirtualClock;

/// A bus in front of `inner` on which every access, port or MMIO, of any
/// width, first advances the virtual clock by `per_access`.
pub struct SlowBus<'a, B: ?Sized> {
    inner: &'a B,
    clock: Arc<VirtualClock>,
    per_access: Nanos,
}

impl<'a, B: ?Sized> SlowBus<'a, B> {
    /// `inner`, each access of which takes `per_access` of true time.
    pub fn new(clock: &Arc<VirtualClock>, inner: &'a B, per_access: Nanos) -> Self {
        SlowBus {
            inner,
            clock: clock.clone(),
            per_access,
        }
    }

    fn pay(&self) {
        self.clock.advance_by(self.per_access);
    }
}

impl<B: ?Sized> SlowBus<'static, B> {
    /// Leaks the bus for the `&'static` a driver holds.
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }
}

impl<B: PortIo + ?Sized> PortIo for SlowBus<'_, B> {
    fn inb(&self, port: u16) -> u8 {
        self.pay();
        self.inner.inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        self.pay();
        self.inner.outb(port, value);
    }
    fn inw(&self, port: u16) -> u16 {
        self.pay();
        self.inner.inw(port)
    }
    fn outw(&self, port: u16, value: u16) {
        self.pay();
        self.inner.outw(port, value);
    }
    fn inl(&self, port: u16) -> u32 {
        self.pay();
        self.inner.inl(port)
    }
    fn outl(&self, port: u16, value: u32) {
        self.pay();
        self.inner.outl(port, value);
    }
}

impl<B: Mmio + ?Sized> Mmio for SlowBus<'_, B> {
    fn read32(&self, offset: usize) -> u32 {
        self.pay();
        self.inner.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.pay();
        self.inner.write32(offset, value);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.pay();
        self.inner.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.pay();
        self.inner.write64(offset, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Absent;
    use clocksource::Ktime;

    #[test]
    fn every_access_of_every_width_costs_its_time_and_reaches_the_device() {
        let clock = VirtualClock::new();
        let absent = Absent::new();
        let bus = SlowBus::new(&clock, &absent, Nanos::from_nanos(500));
        assert_eq!(bus.inw(0x40), 0xFFFF);
        bus.outw(0x40, 1);
        bus.outl(0x40, 1);
        bus.outb(0x43, 0x34);
        assert_eq!(bus.read32(0xF0), u32::MAX);
        bus.write32(0xF0, 0);
        assert_eq!(bus.read64(0xF0), u64::MAX);
        bus.write64(0xF0, 0);
        assert_eq!(clock.now(), Ktime::from_nanos(8 * 500));
        // Reads reached the device behind (writes leave no trace on it).
        assert_eq!(absent.reads(), 3);
    }
}
