//! The HPET description table (IA-PC HPET Specification 1.0a §3.2.4,
//! signature `HPET`).
//!
//! ```text
//!   0 header (36)   36 Event Timer Block ID (4): the block's GCAP_ID low half
//!  40 BASE_ADDRESS: Generic Address Structure (12), must be system memory
//!  52 HPET Number   53 Main Counter Minimum Clock Tick in Periodic Mode (2)
//!  55 Page Protection and OEM Attribute                              56 bytes
//! ```
//!
//! Linux (`arch/x86/kernel/acpi/boot.c`, `acpi_parse_hpet`) warns "HPET
//! timers must be located in memory" for another address space, and warns
//! about and ignores a base of 0 ("Some broken BIOSes advertise HPET at
//! 0x0"); both leave the machine without an HPET, and so do they here.
//! Whether the block at the base is an HPET is for the driver's probe to
//! find out (`hpet::probe`: revision, period, comparators, a counting main
//! counter).

use core::fmt;

use super::sdt::{u16_at, u32_at, Gas, Sdt, TableError};
use super::PhysMem;

/// Bytes of the table.
pub const LEN: u32 = 56;

/// Why the table's description cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpetTableError {
    /// The register block is not in system memory.
    NotSystemMemory {
        /// The `Address Space ID`.
        space: u8,
    },
    /// The register block's address is 0.
    BaseZero,
}

impl fmt::Display for HpetTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HpetTableError::NotSystemMemory { space } => write!(
                f,
                "event timer block in address space {space} ({}), not system memory",
                Gas::space_name(space)
            ),
            HpetTableError::BaseZero => f.write_str("event timer block at address 0"),
        }
    }
}

/// The HPET as its table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpetDescription {
    /// `Event Timer Block ID`.
    pub block_id: u32,
    /// The register block's physical address (system memory, not 0).
    pub base: u64,
    /// `HPET Number`.
    pub number: u8,
    /// `Main Counter Minimum Clock Tick in Periodic Mode`.
    pub min_tick: u16,
    /// `Page Protection and OEM Attribute`.
    pub page_protection: u8,
}

impl HpetDescription {
    /// Reads the description from `table` (signature `HPET`).
    pub fn read<M: PhysMem + ?Sized>(mem: &M, table: &Sdt) -> Result<Self, TableError> {
        let mut b = [0u8; LEN as usize];
        Self::parse(table.read_prefix(mem, &mut b)?)
    }

    /// The description in `table`, the table's bytes (header included; its
    /// length is `table.len()`).
    pub fn parse(table: &[u8]) -> Result<Self, TableError> {
        let too_short = TableError::TooShort {
            length: table.len() as u32,
            min: LEN,
        };
        if table.len() < LEN as usize {
            return Err(too_short);
        }
        let gas = Gas::at(table, 40).ok_or(too_short)?;
        if gas.space != Gas::SYSTEM_MEMORY {
            return Err(TableError::Hpet(HpetTableError::NotSystemMemory {
                space: gas.space,
            }));
        }
        if gas.address == 0 {
            return Err(TableError::Hpet(HpetTableError::BaseZero));
        }
        Ok(HpetDescription {
            block_id: u32_at(table, 36).ok_or(too_short)?,
            base: gas.address,
            number: table[52],
            min_tick: u16_at(table, 53).ok_or(too_short)?,
            page_protection: table[55],
        })
    }
}
