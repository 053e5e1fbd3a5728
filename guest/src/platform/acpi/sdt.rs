//! The system description table header every table starts with (ACPI 6.5
//! §5.2.6), and reading a table only within its length.
//!
//! ```text
//!   0 Signature (4)   4 Length (4)   8 Revision   9 Checksum
//!  10 OEMID (6)      16 OEM Table ID (8)   24 OEM Revision (4)
//!  28 Creator ID (4) 32 Creator Revision (4)                  36 bytes
//! ```
//!
//! A table is valid when its length covers at least the header, is at most
//! [`MAX_TABLE_LEN`], and all `length` bytes sum to 0 (mod 256).

use core::fmt;

use super::{MapError, PhysMem, Signature};

/// Bytes of the header.
pub const HEADER_LEN: u32 = 36;

/// The longest table accepted: 1 MiB. It bounds the checksum pass and the
/// root table's entry count (262 144 RSDT entries). The tables read here
/// are far shorter: a MADT lists 8–16 bytes per CPU (64 KiB would describe
/// 4096 x2APIC CPUs), the HPET table is 56 bytes, the FADT 276.
pub const MAX_TABLE_LEN: u32 = 1 << 20;

/// Bytes summed per read while checksumming.
const CHUNK: usize = 64;

/// Why a table is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Its bytes cannot be read.
    Unmappable(MapError),
    /// Another signature where one was expected (a root table).
    Signature {
        /// The signature found.
        found: Signature,
    },
    /// The length does not cover what the table must hold.
    TooShort {
        /// The table's length.
        length: u32,
        /// The least it must be.
        min: u32,
    },
    /// The length passes [`MAX_TABLE_LEN`].
    TooLong {
        /// The table's length.
        length: u32,
    },
    /// The bytes do not sum to 0.
    Checksum {
        /// What they sum to.
        sum: u8,
    },
    /// The HPET table's contents.
    Hpet(super::hpet::HpetTableError),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Unmappable(e) => write!(f, "unreadable: {e}"),
            TableError::Signature { found } => write!(f, "signature is {found}"),
            TableError::TooShort { length, min } => {
                write!(f, "length {length} < {min}")
            }
            TableError::TooLong { length } => write!(f, "length {length} > {MAX_TABLE_LEN}"),
            TableError::Checksum { sum } => write!(f, "bad checksum (bytes sum to {sum:#04x})"),
            TableError::Hpet(e) => write!(f, "{e}"),
        }
    }
}

impl From<MapError> for TableError {
    fn from(e: MapError) -> Self {
        TableError::Unmappable(e)
    }
}

/// A table header as read, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `Signature`.
    pub signature: Signature,
    /// `Length`, header included.
    pub length: u32,
    /// `Revision`.
    pub revision: u8,
    /// `OEMID`.
    pub oem_id: [u8; 6],
}

impl Header {
    /// Reads the header at `address`.
    pub fn read<M: PhysMem + ?Sized>(mem: &M, address: u64) -> Result<Header, TableError> {
        let mut b = [0u8; HEADER_LEN as usize];
        mem.read(address, &mut b)?;
        Ok(Header::parse(&b))
    }

    /// The header in `b`.
    pub fn parse(b: &[u8; HEADER_LEN as usize]) -> Header {
        Header {
            signature: Signature([b[0], b[1], b[2], b[3]]),
            length: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            revision: b[8],
            oem_id: [b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }
}

/// A table whose length and checksum were checked: every read through it
/// stays within `length` bytes of `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdt {
    address: u64,
    header: Header,
}

impl Sdt {
    /// Reads and validates the table at `address`, whose signature must be
    /// `expect` when given.
    pub fn open<M: PhysMem + ?Sized>(
        mem: &M,
        address: u64,
        expect: Option<Signature>,
    ) -> Result<Sdt, TableError> {
        let header = Header::read(mem, address)?;
        match expect {
            Some(s) if s != header.signature => Err(TableError::Signature {
                found: header.signature,
            }),
            _ => Sdt::validate(mem, address, header),
        }
    }

    /// Validates the table at `address` whose header is `header`: the
    /// length's bounds, then the checksum over `length` bytes.
    pub fn validate<M: PhysMem + ?Sized>(
        mem: &M,
        address: u64,
        header: Header,
    ) -> Result<Sdt, TableError> {
        let length = header.length;
        if length < HEADER_LEN {
            return Err(TableError::TooShort {
                length,
                min: HEADER_LEN,
            });
        }
        if length > MAX_TABLE_LEN {
            return Err(TableError::TooLong { length });
        }
        match checksum(mem, address, length)? {
            0 => Ok(Sdt { address, header }),
            sum => Err(TableError::Checksum { sum }),
        }
    }

    /// Its physical address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Its length (≥ [`HEADER_LEN`]).
    pub fn length(&self) -> u32 {
        self.header.length
    }

    /// Its signature.
    pub fn signature(&self) -> Signature {
        self.header.signature
    }

    /// Its header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Fails with [`TableError::TooShort`] unless the table holds `min`
    /// bytes.
    pub fn require(&self, min: u32) -> Result<(), TableError> {
        if self.length() < min {
            Err(TableError::TooShort {
                length: self.length(),
                min,
            })
        } else {
            Ok(())
        }
    }

    /// Reads `buf.len()` bytes at `offset`, all of which must be inside
    /// the table.
    pub fn read<M: PhysMem + ?Sized>(
        &self,
        mem: &M,
        offset: u32,
        buf: &mut [u8],
    ) -> Result<(), TableError> {
        let end = u64::from(offset) + buf.len() as u64;
        if end > u64::from(self.length()) {
            return Err(TableError::TooShort {
                length: self.length(),
                min: end.min(u64::from(u32::MAX)) as u32,
            });
        }
        // `address + length` was readable when the checksum was taken, so
        // this cannot overflow for a well-behaved `mem`; a misbehaving one
        // gets its own error back.
        Ok(mem.read(self.address.wrapping_add(u64::from(offset)), buf)?)
    }

    /// Copies the table's first `buf.len()` bytes, or all of it if it is
    /// shorter; returns the bytes copied. Fields past the returned slice's
    /// end are not in the table.
    pub fn read_prefix<'b, M: PhysMem + ?Sized>(
        &self,
        mem: &M,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], TableError> {
        let n = buf.len().min(self.length() as usize);
        self.read(mem, 0, &mut buf[..n])?;
        Ok(&buf[..n])
    }
}

/// The sum (mod 256) of the `len` bytes at `address`.
pub fn checksum<M: PhysMem + ?Sized>(mem: &M, address: u64, len: u32) -> Result<u8, MapError> {
    let whole = address
        .checked_add(u64::from(len))
        .ok_or(MapError::Overflow {
            addr: address,
            len: u64::from(len),
        })?;
    let mut sum = 0u8;
    let mut at = address;
    let mut chunk = [0u8; CHUNK];
    while at < whole {
        let n = ((whole - at) as usize).min(CHUNK);
        mem.read(at, &mut chunk[..n])?;
        sum = chunk[..n].iter().fold(sum, |s, &b| s.wrapping_add(b));
        at += n as u64;
    }
    Ok(sum)
}

/// A little-endian `u16` at `offset` of `b`, if `b` holds it.
pub fn u16_at(b: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

/// A little-endian `u32` at `offset` of `b`, if `b` holds it.
pub fn u32_at(b: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// A little-endian `u64` at `offset` of `b`, if `b` holds it.
pub fn u64_at(b: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

/// A Generic Address Structure (§5.2.3.2): 12 bytes.
///
/// ```text
///   0 Address Space ID   1 Register Bit Width   2 Register Bit Offset
///   3 Access Size        4 Address (8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gas {
    /// `Address Space ID`: 0 system memory, 1 system I/O, ….
    pub space: u8,
    /// `Register Bit Width`.
    pub bit_width: u8,
    /// `Address`.
    pub address: u64,
}

impl Gas {
    /// Bytes of the structure.
    pub const LEN: usize = 12;
    /// `Address Space ID` of system memory.
    pub const SYSTEM_MEMORY: u8 = 0;
    /// `Address Space ID` of system I/O.
    pub const SYSTEM_IO: u8 = 1;

    /// The structure at `offset` of `b`, if `b` holds all of it.
    pub fn at(b: &[u8], offset: usize) -> Option<Gas> {
        let g = b.get(offset..offset.checked_add(Self::LEN)?)?;
        Some(Gas {
            space: g[0],
            bit_width: g[1],
            address: u64_at(g, 4)?,
        })
    }

    /// The address space's name, for messages.
    pub fn space_name(space: u8) -> &'static str {
        match space {
            0 => "system memory",
            1 => "system I/O",
            2 => "PCI configuration",
            3 => "embedded controller",
            4 => "SMBus",
            _ => "another address space",
        }
    }
}
