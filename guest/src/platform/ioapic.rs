//! A small I/O APIC driver (Intel 82093AA datasheet), over [`hw::Mmio`].
//!
//! The I/O APIC turns interrupt lines (global system interrupts, GSIs) into
//! messages to a local APIC. Its registers are reached indirectly through
//! two windows:
//!
//! ```text
//!   base + 0x00  IOREGSEL  ── write the register index ──┐
//!   base + 0x10  IOWIN     ◄─ then read / write it here ──┘
//!
//!   index 0x00  IOAPICID      bits 27:24  the I/O APIC's id
//!   index 0x01  IOAPICVER     bits 23:16  max redirection entry (entries − 1)
//!   index 0x10 + 2n   redirection entry n, low half:
//!        7:0 vector  10:8 delivery (000 fixed)  11 dest mode (0 physical)
//!        13 polarity (1 active low)  15 trigger (1 level)  16 mask
//!   index 0x11 + 2n   high half: 31:24 destination APIC id
//! ```
//!
//! Two accesses make one register access, so an [`IoApic`] is used under a
//! lock ([`crate::embed::kernel`] keeps it in a `spin::Mutex`, touched with
//! interrupts off). An entry is written masked first and unmasked last, so
//! a half-written entry never delivers.
//!
//! How an ISA IRQ reaches a GSI (and with which polarity and trigger) is
//! the MADT's business: [`IsaRoute`] applies its interrupt source overrides
//! (QEMU: IRQ0 → GSI 2) to the ISA defaults (identity, active high, edge).

use core::fmt;

use hw::Mmio;

/// Register select window.
pub const IOREGSEL: usize = 0x00;
/// Register data window.
pub const IOWIN: usize = 0x10;
/// The register block's size.
pub const BLOCK_SIZE: usize = 0x20;
/// Index of the id register.
pub const IOAPICID: u32 = 0x00;
/// Index of the version register.
pub const IOAPICVER: u32 = 0x01;
/// Index of redirection entry 0's low half.
pub const REDTBL_BASE: u32 = 0x10;

/// Signal polarity of an interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Active high (ISA's default).
    High,
    /// Active low (PCI's default).
    Low,
}

/// Trigger mode of an interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered (ISA's default).
    Edge,
    /// Level-triggered (PCI's default): the handler must quiet the device.
    Level,
}

/// A redirection table entry, as a value: built whole, then written once
/// (an entry half-written is live: the I/O APIC acts on each 32-bit half).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RedirectionEntry(u64);

impl RedirectionEntry {
    const MASK: u64 = 1 << 16;
    const LEVEL: u64 = 1 << 15;
    const ACTIVE_LOW: u64 = 1 << 13;

    /// Fixed delivery of `vector` to the local APIC with physical id
    /// `dest`, masked.
    pub const fn new(vector: u8, dest: u8, polarity: Polarity, trigger: Trigger) -> Self {
        let mut bits = vector as u64 | Self::MASK | ((dest as u64) << 56);
        if matches!(polarity, Polarity::Low) {
            bits |= Self::ACTIVE_LOW;
        }
        if matches!(trigger, Trigger::Level) {
            bits |= Self::LEVEL;
        }
        RedirectionEntry(bits)
    }

    /// The entry from its raw 64 bits.
    pub const fn from_bits(bits: u64) -> Self {
        RedirectionEntry(bits)
    }

    /// The raw 64 bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The same entry, masked or not.
    pub const fn with_mask(self, masked: bool) -> Self {
        if masked {
            RedirectionEntry(self.0 | Self::MASK)
        } else {
            RedirectionEntry(self.0 & !Self::MASK)
        }
    }

    /// Whether delivery is masked.
    pub const fn is_masked(self) -> bool {
        self.0 & Self::MASK != 0
    }

    /// The vector.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// The destination APIC id.
    pub const fn dest(self) -> u8 {
        (self.0 >> 56) as u8
    }

    /// The trigger mode.
    pub const fn trigger(self) -> Trigger {
        if self.0 & Self::LEVEL != 0 {
            Trigger::Level
        } else {
            Trigger::Edge
        }
    }

    /// The polarity.
    pub const fn polarity(self) -> Polarity {
        if self.0 & Self::ACTIVE_LOW != 0 {
            Polarity::Low
        } else {
            Polarity::High
        }
    }
}

impl fmt::Debug for RedirectionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vector {:#04x} → apic {} {:?}/{:?}{}",
            self.vector(),
            self.dest(),
            self.trigger(),
            self.polarity(),
            if self.is_masked() { " masked" } else { "" }
        )
    }
}

/// Where an ISA IRQ arrives, after the MADT's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaRoute {
    /// The global system interrupt.
    pub gsi: u32,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger: Trigger,
    /// Whether an interrupt source override said so (else the ISA default).
    pub overridden: bool,
}

impl IsaRoute {
    /// ISA's default: GSI = IRQ, active high, edge.
    pub const fn identity(irq: u8) -> Self {
        IsaRoute {
            gsi: irq as u32,
            polarity: Polarity::High,
            trigger: Trigger::Edge,
            overridden: false,
        }
    }

    /// An interrupt source override (MADT type 2) for this IRQ: `flags`
    /// bits 1:0 polarity, 3:2 trigger; `00` means "conforms to the bus"
    /// (ISA: high, edge), `01` high / edge, `11` low / level (ACPI 6.5
    /// table 5.50).
    pub const fn from_override(gsi: u32, flags: u16) -> Self {
        let polarity = match flags & 0b11 {
            0b11 => Polarity::Low,
            _ => Polarity::High,
        };
        let trigger = match (flags >> 2) & 0b11 {
            0b11 => Trigger::Level,
            _ => Trigger::Edge,
        };
        IsaRoute {
            gsi,
            polarity,
            trigger,
            overridden: true,
        }
    }
}

/// Why an I/O APIC operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoApicError {
    /// The version register reads all ones: nothing answers at the address.
    NoDevice,
    /// The GSI is not one of this I/O APIC's inputs.
    NoSuchInput(u32),
}

impl fmt::Display for IoApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoApicError::NoDevice => f.write_str("no I/O APIC answers (version reads all ones)"),
            IoApicError::NoSuchInput(g) => write!(f, "GSI {g} is not an input of this I/O APIC"),
        }
    }
}

/// One I/O APIC: its registers, its first GSI and its number of inputs.
pub struct IoApic<M: Mmio> {
    mmio: M,
    gsi_base: u32,
    inputs: u32,
    id: u8,
    version: u8,
}

impl<M: Mmio> IoApic<M> {
    /// The I/O APIC at `mmio` whose input 0 is GSI `gsi_base` (from the
    /// MADT); reads its version register to learn the number of inputs.
    pub fn new(mmio: M, gsi_base: u32) -> Result<Self, IoApicError> {
        let mut io = IoApic {
            mmio,
            gsi_base,
            inputs: 0,
            id: 0,
            version: 0,
        };
        let ver = io.read(IOAPICVER);
        if ver == u32::MAX {
            return Err(IoApicError::NoDevice);
        }
        io.inputs = ((ver >> 16) & 0xFF) + 1;
        io.version = ver as u8;
        io.id = ((io.read(IOAPICID) >> 24) & 0x0F) as u8;
        Ok(io)
    }

    /// The first GSI.
    pub fn gsi_base(&self) -> u32 {
        self.gsi_base
    }
    /// The number of inputs (redirection entries).
    pub fn inputs(&self) -> u32 {
        self.inputs
    }
    /// The id register's value.
    pub fn id(&self) -> u8 {
        self.id
    }
    /// The version register's version field (0x11 or 0x20 on QEMU).
    pub fn version(&self) -> u8 {
        self.version
    }
    /// Whether `gsi` is one of this I/O APIC's inputs.
    pub fn handles(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.inputs
    }

    fn read(&self, index: u32) -> u32 {
        self.mmio.write32(IOREGSEL, index);
        self.mmio.read32(IOWIN)
    }

    fn write(&self, index: u32, value: u32) {
        self.mmio.write32(IOREGSEL, index);
        self.mmio.write32(IOWIN, value);
    }

    fn pin(&self, gsi: u32) -> Result<u32, IoApicError> {
        if self.handles(gsi) {
            Ok(gsi - self.gsi_base)
        } else {
            Err(IoApicError::NoSuchInput(gsi))
        }
    }

    /// Reads the entry of `gsi`.
    pub fn entry(&self, gsi: u32) -> Result<RedirectionEntry, IoApicError> {
        let pin = self.pin(gsi)?;
        let low = self.read(REDTBL_BASE + 2 * pin) as u64;
        let high = self.read(REDTBL_BASE + 2 * pin + 1) as u64;
        Ok(RedirectionEntry((high << 32) | low))
    }

    /// Writes the entry of `gsi`: masked low half first, then the high half,
    /// then the low half as given (so it unmasks last).
    pub fn set_entry(&self, gsi: u32, e: RedirectionEntry) -> Result<(), IoApicError> {
        let pin = self.pin(gsi)?;
        let low = REDTBL_BASE + 2 * pin;
        self.write(low, e.with_mask(true).0 as u32);
        self.write(low + 1, (e.0 >> 32) as u32);
        self.write(low, e.0 as u32);
        Ok(())
    }

    /// Masks or unmasks `gsi`, keeping the rest of its entry.
    pub fn set_masked(&self, gsi: u32, masked: bool) -> Result<(), IoApicError> {
        let pin = self.pin(gsi)?;
        let low = REDTBL_BASE + 2 * pin;
        let e = RedirectionEntry(self.read(low) as u64).with_mask(masked);
        self.write(low, e.0 as u32);
        Ok(())
    }

    /// Masks every input (firmware may leave some programmed).
    pub fn mask_all(&self) {
        for pin in 0..self.inputs {
            let low = REDTBL_BASE + 2 * pin;
            let e = RedirectionEntry(self.read(low) as u64).with_mask(true);
            self.write(low, e.0 as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An I/O APIC register file behind the two windows, with 24 inputs.
    struct Fake {
        sel: Mutex<u32>,
        regs: Mutex<[u32; 0x40]>,
        log: Mutex<Vec<(u32, u32)>>,
    }

    impl Fake {
        fn new() -> Self {
            let mut regs = [0; 0x40];
            regs[IOAPICVER as usize] = (23 << 16) | 0x20;
            regs[IOAPICID as usize] = 3 << 24;
            for pin in 0..24 {
                regs[(REDTBL_BASE + 2 * pin) as usize] = 1 << 16; // masked at reset
            }
            Fake {
                sel: Mutex::new(0),
                regs: Mutex::new(regs),
                log: Mutex::new(Vec::new()),
            }
        }
    }

    impl Mmio for &Fake {
        fn read32(&self, offset: usize) -> u32 {
            match offset {
                IOREGSEL => *self.sel.lock().unwrap(),
                IOWIN => self.regs.lock().unwrap()[*self.sel.lock().unwrap() as usize & 0x3F],
                _ => u32::MAX,
            }
        }
        fn write32(&self, offset: usize, value: u32) {
            match offset {
                IOREGSEL => *self.sel.lock().unwrap() = value,
                IOWIN => {
                    let sel = *self.sel.lock().unwrap();
                    self.log.lock().unwrap().push((sel, value));
                    if sel >= REDTBL_BASE {
                        self.regs.lock().unwrap()[sel as usize & 0x3F] = value;
                    }
                }
                _ => {}
            }
        }
        fn read64(&self, _: usize) -> u64 {
            u64::MAX
        }
        fn write64(&self, _: usize, _: u64) {}
    }

    #[test]
    fn version_gives_the_inputs_and_gsi_range() {
        let f = Fake::new();
        let io = IoApic::new(&f, 24).unwrap();
        assert_eq!((io.inputs(), io.id(), io.version()), (24, 3, 0x20));
        assert!(io.handles(24) && io.handles(47) && !io.handles(48) && !io.handles(23));
        assert_eq!(io.entry(2), Err(IoApicError::NoSuchInput(2)));
    }

    #[test]
    fn an_entry_is_written_masked_first_and_unmasked_last() {
        let f = Fake::new();
        let io = IoApic::new(&f, 0).unwrap();
        let e = RedirectionEntry::new(0x30, 0, Polarity::High, Trigger::Edge).with_mask(false);
        io.set_entry(2, e).unwrap();
        let log = f.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [(0x14, 0x0001_0030), (0x15, 0), (0x14, 0x30)],
            "masked low, high, then unmasked low"
        );
        assert_eq!(io.entry(2).unwrap(), e);
        io.set_masked(2, true).unwrap();
        assert!(io.entry(2).unwrap().is_masked());
        assert_eq!(io.entry(2).unwrap().vector(), 0x30);
    }

    #[test]
    fn entry_encoding() {
        let e = RedirectionEntry::new(0xEF, 7, Polarity::Low, Trigger::Level);
        assert_eq!(e.bits(), 0x0700_0000_0001_A0EF);
        assert_eq!(
            (e.vector(), e.dest(), e.polarity(), e.trigger()),
            (0xEF, 7, Polarity::Low, Trigger::Level)
        );
        assert!(e.is_masked() && !e.with_mask(false).is_masked());
    }

    #[test]
    fn override_flags_follow_acpi() {
        // QEMU: IRQ0 → GSI 2, flags 0 (conforming).
        let r = IsaRoute::from_override(2, 0);
        assert_eq!(
            (r.gsi, r.polarity, r.trigger),
            (2, Polarity::High, Trigger::Edge)
        );
        // QEMU's SCI: IRQ9 → GSI 9, active high (01), level (11 << 2).
        let r = IsaRoute::from_override(9, 0b1101);
        assert_eq!((r.polarity, r.trigger), (Polarity::High, Trigger::Level));
        let r = IsaRoute::from_override(11, 0b1111);
        assert_eq!((r.polarity, r.trigger), (Polarity::Low, Trigger::Level));
        assert!(!IsaRoute::identity(0).overridden);
    }

    #[test]
    fn nothing_there_is_an_error() {
        struct Nothing;
        impl Mmio for Nothing {
            fn read32(&self, _: usize) -> u32 {
                u32::MAX
            }
            fn write32(&self, _: usize, _: u32) {}
            fn read64(&self, _: usize) -> u64 {
                u64::MAX
            }
            fn write64(&self, _: usize, _: u64) {}
        }
        assert!(matches!(
            IoApic::new(Nothing, 0),
            Err(IoApicError::NoDevice)
        ));
    }
}
