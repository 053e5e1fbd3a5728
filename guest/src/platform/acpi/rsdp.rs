//! The Root System Description Pointer (ACPI 6.5 §5.2.5.3).
//!
//! ```text
//!   0 Signature "RSD PTR " (8)   8 Checksum (first 20 bytes)   9 OEMID (6)
//!  15 Revision (0: ACPI 1.0, 2: ACPI 2.0 and later)   16 RsdtAddress (4)
//!  ── revision ≥ 2 ──
//!  20 Length (whole structure)   24 XsdtAddress (8)
//!  32 Extended Checksum (all Length bytes)   33 Reserved (3)        36 bytes
//! ```
//!
//! The first 20 bytes must be valid, else nothing can be read. The
//! extended part is used only when it is valid too (length in bounds,
//! extended checksum); otherwise the RSDT serves, and the problem is
//! reported in [`Rsdp::extension_error`].

use core::fmt;

use super::{sdt, MapError, PhysMem};

/// The signature.
pub const SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Bytes of the ACPI 1.0 structure, covered by `Checksum`.
pub const V1_LEN: u32 = 20;
/// Bytes of the ACPI 2.0+ structure.
pub const V2_LEN: u32 = 36;
/// The longest `Length` accepted: far above the 36 bytes every revision
/// so far has, low enough that the extended checksum stays a short read.
pub const MAX_LEN: u32 = 4096;

/// Why an RSDP (or its extended part) is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsdpError {
    /// Its bytes cannot be read.
    Unmappable(MapError),
    /// The first 8 bytes are not "RSD PTR ".
    Signature,
    /// The first 20 bytes do not sum to 0.
    Checksum {
        /// What they sum to.
        sum: u8,
    },
    /// `Length` is below 36.
    TooShort {
        /// The length.
        length: u32,
    },
    /// `Length` is above [`MAX_LEN`].
    TooLong {
        /// The length.
        length: u32,
    },
    /// The `Length` bytes do not sum to 0.
    ExtendedChecksum {
        /// What they sum to.
        sum: u8,
    },
}

impl fmt::Display for RsdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsdpError::Unmappable(e) => write!(f, "unreadable: {e}"),
            RsdpError::Signature => f.write_str("no \"RSD PTR \" signature"),
            RsdpError::Checksum { sum } => {
                write!(f, "bad checksum (first 20 bytes sum to {sum:#04x})")
            }
            RsdpError::TooShort { length } => write!(f, "length {length} < {V2_LEN}"),
            RsdpError::TooLong { length } => write!(f, "length {length} > {MAX_LEN}"),
            RsdpError::ExtendedChecksum { sum } => {
                write!(f, "bad extended checksum (bytes sum to {sum:#04x})")
            }
        }
    }
}

/// A valid RSDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// Its physical address.
    pub address: u64,
    /// `Revision`.
    pub revision: u8,
    /// `OEMID`.
    pub oem_id: [u8; 6],
    /// `RsdtAddress` (0: none).
    pub rsdt: u32,
    /// `XsdtAddress`, when the extended part is valid and it is not 0.
    pub xsdt: Option<u64>,
    /// Why the extended part (revision ≥ 2) was not used, if it was not.
    pub extension_error: Option<RsdpError>,
}

impl Rsdp {
    /// Reads and validates the RSDP at `address`.
    pub fn read<M: PhysMem + ?Sized>(mem: &M, address: u64) -> Result<Rsdp, RsdpError> {
        let mut v1 = [0u8; V1_LEN as usize];
        mem.read(address, &mut v1).map_err(RsdpError::Unmappable)?;
        if v1[..8] != SIGNATURE {
            return Err(RsdpError::Signature);
        }
        match v1.iter().fold(0u8, |s, &b| s.wrapping_add(b)) {
            0 => {}
            sum => return Err(RsdpError::Checksum { sum }),
        }
        let mut r = Rsdp {
            address,
            revision: v1[15],
            oem_id: [v1[9], v1[10], v1[11], v1[12], v1[13], v1[14]],
            rsdt: u32::from_le_bytes([v1[16], v1[17], v1[18], v1[19]]),
            xsdt: None,
            extension_error: None,
        };
        if r.revision >= 2 {
            match read_extension(mem, address) {
                Ok(x) => r.xsdt = (x != 0).then_some(x),
                Err(e) => r.extension_error = Some(e),
            }
        }
        Ok(r)
    }
}

/// The XSDT address of a revision ≥ 2 RSDP, after its length and extended
/// checksum are checked.
fn read_extension<M: PhysMem + ?Sized>(mem: &M, address: u64) -> Result<u64, RsdpError> {
    let mut v2 = [0u8; V2_LEN as usize];
    mem.read(address, &mut v2).map_err(RsdpError::Unmappable)?;
    let length = sdt::u32_at(&v2, 20).unwrap_or(0);
    if length < V2_LEN {
        return Err(RsdpError::TooShort { length });
    }
    if length > MAX_LEN {
        return Err(RsdpError::TooLong { length });
    }
    match sdt::checksum(mem, address, length).map_err(RsdpError::Unmappable)? {
        0 => Ok(sdt::u64_at(&v2, 24).unwrap_or(0)),
        sum => Err(RsdpError::ExtendedChecksum { sum }),
    }
}
