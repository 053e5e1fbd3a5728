//! The Multiple APIC Description Table (ACPI 6.5 §5.2.12) and
//! a walk of its interrupt controller structures that never leaves the
//! table.
//!
//! ```text
//!   0 header (36)   36 Local Interrupt Controller Address (4)
//!  40 Flags (4): bit 0 PCAT_COMPAT (dual 8259s present)
//!  44 entries: Type (1), Length (1, the whole entry), fields …
//!     type 0 Processor Local APIC (8)      §5.2.12.2: UID, APIC ID, Flags (4)
//!     type 1 I/O APIC (12)                 §5.2.12.3: ID, -, Address (4), GSI base (4)
//!     type 2 Interrupt Source Override (10) §5.2.12.5: Bus, Source, GSI (4), Flags (2)
//!     type 5 Local APIC Address Override (12) §5.2.12.8: -, -, Address (8)
//!     type 9 Processor Local x2APIC (16)   §5.2.12.12: -, -, x2APIC ID (4), Flags (4), UID (4)
//! ```
//!
//! The walk advances by each entry's `Length`. As in Linux
//! (`drivers/acpi/tables.c`, `acpi_parse_entries_array`, which stops at a
//! zero length "to avoid infinite loop"), an entry that cannot be stepped
//! over safely ends the walk and the entries before it are kept: a
//! `Length` below 2 (it would not even cover its own header), one longer
//! than what remains of the table, or a table ending inside an entry
//! header. An entry shorter than its type's layout is skipped alone, as
//! Linux's `BAD_MADT_ENTRY` check does (`arch/x86/kernel/acpi/boot.c`).
//! Types not listed above are passed over by their length.

use core::fmt;

use super::sdt::{u16_at, u32_at, u64_at, Sdt, TableError};
use super::{MapError, PhysMem};

/// Where the entries start.
pub const ENTRIES_OFFSET: u32 = 44;
/// `Flags` bit 0: the PC-AT dual 8259 setup is present.
pub const PCAT_COMPAT: u32 = 1 << 0;
/// Processor Local APIC / x2APIC `Flags` bit 0: the processor is usable.
pub const ENABLED: u32 = 1 << 0;

/// A validated MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Madt {
    table: Sdt,
    /// `Local Interrupt Controller Address`.
    pub local_apic_address: u32,
    /// `Flags`.
    pub flags: u32,
}

impl Madt {
    /// The MADT in `table` (whose signature is `APIC`).
    pub fn new<M: PhysMem + ?Sized>(mem: &M, table: Sdt) -> Result<Madt, TableError> {
        table.require(ENTRIES_OFFSET)?;
        let mut b = [0u8; 8];
        table.read(mem, 36, &mut b)?;
        Ok(Madt {
            table,
            local_apic_address: u32_at(&b, 0).unwrap_or(0),
            flags: u32_at(&b, 4).unwrap_or(0),
        })
    }

    /// The table's address.
    pub fn address(&self) -> u64 {
        self.table.address()
    }

    /// `PCAT_COMPAT`.
    pub fn pcat_compat(&self) -> bool {
        self.flags & PCAT_COMPAT != 0
    }

    /// The entries, in table order; a [`WalkStop`] ends them.
    pub fn entries<'m, M: PhysMem + ?Sized>(&self, mem: &'m M) -> Entries<'m, M> {
        Entries {
            mem,
            table: self.table,
            offset: ENTRIES_OFFSET,
            done: false,
        }
    }
}

/// One interrupt controller structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Type 0, Processor Local APIC.
    LocalApic {
        /// `ACPI Processor UID`.
        uid: u8,
        /// `APIC ID`.
        apic_id: u8,
        /// `Flags` ([`ENABLED`], …).
        flags: u32,
    },
    /// Type 1, I/O APIC.
    IoApic {
        /// `I/O APIC ID`.
        id: u8,
        /// `I/O APIC Address`.
        address: u32,
        /// `Global System Interrupt Base`.
        gsi_base: u32,
    },
    /// Type 2, Interrupt Source Override.
    InterruptOverride {
        /// `Bus` (0: ISA).
        bus: u8,
        /// `Source`: the bus-relative IRQ.
        source: u8,
        /// `Global System Interrupt`.
        gsi: u32,
        /// `Flags`: polarity and trigger mode (MPS INTI flags).
        flags: u16,
    },
    /// Type 5, Local APIC Address Override.
    LocalApicAddressOverride {
        /// `Local APIC Address` (64-bit).
        address: u64,
    },
    /// Type 9, Processor Local x2APIC.
    LocalX2Apic {
        /// `X2APIC ID`.
        x2apic_id: u32,
        /// `Flags` ([`ENABLED`], …).
        flags: u32,
        /// `ACPI Processor UID`.
        uid: u32,
    },
    /// A type not read here, stepped over.
    Other {
        /// Its type.
        entry_type: u8,
        /// Its length.
        length: u8,
    },
    /// A known type whose `Length` is shorter than its layout: skipped.
    Short {
        /// Its type.
        entry_type: u8,
        /// Its length.
        length: u8,
        /// Its offset in the table.
        offset: u32,
    },
}

/// Why the walk ended before the table's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkStop {
    /// An entry's `Length` is 0 or 1.
    LengthBelowHeader {
        /// The entry's offset.
        offset: u32,
        /// Its length.
        length: u8,
    },
    /// An entry is longer than what remains of the table.
    PastTable {
        /// The entry's offset.
        offset: u32,
        /// Its length.
        length: u8,
        /// The bytes left from `offset` to the table's end.
        remaining: u32,
    },
    /// One byte remains: no entry header fits.
    TrailingByte {
        /// Its offset.
        offset: u32,
    },
    /// The memory could not be read (it could when the checksum was taken).
    Unreadable {
        /// The entry's offset.
        offset: u32,
        /// Why.
        error: MapError,
    },
}

impl fmt::Display for WalkStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkStop::LengthBelowHeader { offset, length } => {
                write!(f, "entry at offset {offset} has length {length}")
            }
            WalkStop::PastTable {
                offset,
                length,
                remaining,
            } => write!(
                f,
                "entry at offset {offset} has length {length}, past the table's end \
                 ({remaining} bytes left)"
            ),
            WalkStop::TrailingByte { offset } => {
                write!(f, "a stray byte at offset {offset}")
            }
            WalkStop::Unreadable { offset, error } => {
                write!(f, "entry at offset {offset} unreadable: {error}")
            }
        }
    }
}

/// The walk over a MADT's entries ([`Madt::entries`]).
///
/// Yields each entry, then ends; or yields one [`WalkStop`] and ends. It
/// reads at most the table's `Length` bytes and advances at least 2 bytes
/// per step, so it ends within `Length / 2` steps.
#[derive(Debug)]
pub struct Entries<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    table: Sdt,
    offset: u32,
    done: bool,
}

impl<M: PhysMem + ?Sized> Iterator for Entries<'_, M> {
    type Item = Result<Entry, WalkStop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.table.length() {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl<M: PhysMem + ?Sized> Entries<'_, M> {
    fn step(&mut self) -> Result<Entry, WalkStop> {
        let offset = self.offset;
        let remaining = self.table.length() - offset;
        if remaining < 2 {
            return Err(WalkStop::TrailingByte { offset });
        }
        let mut head = [0u8; 2];
        self.table
            .read(self.mem, offset, &mut head)
            .map_err(|e| stop(e, offset, 0, remaining))?;
        let [entry_type, length] = head;
        if length < 2 {
            return Err(WalkStop::LengthBelowHeader { offset, length });
        }
        if u32::from(length) > remaining {
            return Err(WalkStop::PastTable {
                offset,
                length,
                remaining,
            });
        }
        // The entry, up to the 16 bytes of the longest layout read here
        // (x2APIC).
        let mut b = [0u8; 16];
        let n = usize::from(length).min(b.len());
        self.table
            .read(self.mem, offset, &mut b[..n])
            .map_err(|e| stop(e, offset, length, remaining))?;
        self.offset = offset + u32::from(length);
        let b = &b[..n];
        let need = match entry_type {
            0 => 8,
            1 | 5 => 12,
            2 => 10,
            9 => 16,
            _ => return Ok(Entry::Other { entry_type, length }),
        };
        if usize::from(length) < need {
            return Ok(Entry::Short {
                entry_type,
                length,
                offset,
            });
        }
        Ok(match entry_type {
            0 => Entry::LocalApic {
                uid: b[2],
                apic_id: b[3],
                flags: u32_at(b, 4).unwrap_or(0),
            },
            1 => Entry::IoApic {
                id: b[2],
                address: u32_at(b, 4).unwrap_or(0),
                gsi_base: u32_at(b, 8).unwrap_or(0),
            },
            2 => Entry::InterruptOverride {
                bus: b[2],
                source: b[3],
                gsi: u32_at(b, 4).unwrap_or(0),
                flags: u16_at(b, 8).unwrap_or(0),
            },
            5 => Entry::LocalApicAddressOverride {
                address: u64_at(b, 4).unwrap_or(0),
            },
            _ => Entry::LocalX2Apic {
                x2apic_id: u32_at(b, 4).unwrap_or(0),
                flags: u32_at(b, 8).unwrap_or(0),
                uid: u32_at(b, 12).unwrap_or(0),
            },
        })
    }
}

/// The stop for a failed read inside the walk. `Sdt::read` checks the
/// table's bounds, which the walk checked before reading; a bounds error
/// is reported as the entry running past the table.
fn stop(e: TableError, offset: u32, length: u8, remaining: u32) -> WalkStop {
    match e {
        TableError::Unmappable(error) => WalkStop::Unreadable { offset, error },
        _ => WalkStop::PastTable {
            offset,
            length,
            remaining,
        },
    }
}
