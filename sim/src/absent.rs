//! The absent device: a bus where nothing answers.
//!
//! On a PC an MMIO or port read that no device claims returns all ones
//! (the bus floats high; the PCI Local Bus Specification's master abort
//! completes a read with all ones, and an ISA port nobody decodes reads
//! 0xFF), and a write goes nowhere. [`Absent`] is that bus, for the probes
//! that must see "no device" and refuse it in a bounded number of reads
//! instead of hanging or taking the ones for a value.

use std::sync::atomic::{AtomicU64, Ordering};

use hw::{Mmio, PortIo};

/// A bus with no device on it: every read all ones, every write ignored,
/// reads counted (so a test can bound how long a probe tried).
#[derive(Debug, Default)]
pub struct Absent {
    reads: AtomicU64,
}

impl Absent {
    /// A bus that has seen no read yet.
    pub const fn new() -> Self {
        Absent {
            reads: AtomicU64::new(0),
        }
    }

    /// Reads so far, of any width, MMIO and port.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
}

impl Mmio for Absent {
    fn read32(&self, _offset: usize) -> u32 {
        self.read();
        u32::MAX
    }
    fn write32(&self, _offset: usize, _value: u32) {}
    fn read64(&self, _offset: usize) -> u64 {
        self.read();
        u64::MAX
    }
    fn write64(&self, _offset: usize, _value: u64) {}
}

impl PortIo for Absent {
    fn inb(&self, _port: u16) -> u8 {
        self.read();
        0xFF
    }
    fn outb(&self, _port: u16, _value: u8) {}
    fn inw(&self, _port: u16) -> u16 {
        self.read();
        0xFFFF
    }
    fn inl(&self, _port: u16) -> u32 {
        self.read();
        u32::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_is_all_ones_and_counted_and_writes_change_nothing() {
        let bus = Absent::new();
        bus.write32(0, 0);
        bus.write64(8, 0);
        bus.outb(0x43, 0x30);
        bus.outl(0xCF8, 0);
        assert_eq!(
            (
                bus.read32(0),
                bus.read64(8),
                bus.inb(0x40),
                bus.inw(0x40),
                bus.inl(0x408)
            ),
            (u32::MAX, u64::MAX, 0xFF, 0xFFFF, u32::MAX)
        );
        assert_eq!(bus.reads(), 5);
    }
}
