//! Physical memory as the firmware and loader readers see it ([`PhysMem`]):
//! the boot page tables' identity map on metal ([`IdentityMap`]), one byte
//! slice in host tests and the fuzz harness ([`SliceMem`]).
//!
//! Everything the guest reads that a loader or firmware wrote — the PVH
//! start info, its memory map and command line (`crate::arch::pvh`), the ACPI
//! tables (`crate::platform::acpi`) — goes through this one trait, so a bad pointer
//! is a [`MapError`] the reader reports, never a fault: the metal
//! implementation refuses address 0, a range whose end overflows, and
//! anything ending past the 4 GiB the boot page tables identity-map
//! (`crate::arch::boot`).

use core::fmt;

/// The first physical address the boot page tables do not map (they
/// identity-map 0–4 GiB with 2 MiB pages, `crate::arch::boot`): nothing at or
/// past it can be read.
pub const MAPPED_LIMIT: u64 = 1 << 32;

/// Why a physical range cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The range starts at physical address 0.
    Null,
    /// `addr + len` overflows 64 bits.
    Overflow {
        /// The start.
        addr: u64,
        /// The length.
        len: u64,
    },
    /// The range ends past what is mapped.
    BeyondMap {
        /// The start.
        addr: u64,
        /// The length.
        len: u64,
        /// The end of the mapping.
        limit: u64,
    },
    /// Nothing backs the range (an implementation over a partial image of
    /// memory, such as the host tests').
    NotBacked {
        /// The start.
        addr: u64,
        /// The length.
        len: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Null => f.write_str("at physical address 0"),
            MapError::Overflow { addr, len } => {
                write!(f, "{addr:#x} + {len} overflows the address space")
            }
            MapError::BeyondMap { addr, len, limit } => {
                write!(f, "{addr:#x} + {len} ends beyond the map ({limit:#x})")
            }
            MapError::NotBacked { addr, len } => write!(f, "{addr:#x} + {len}: no memory there"),
        }
    }
}

/// Physical memory, as the firmware and loader readers see it.
///
/// An implementation MUST fill all of `buf` from `addr ..` or return an
/// error; it MUST NOT panic for any `addr` and length, and reading MUST have
/// no side effect (the reader may read a byte more than once).
pub trait PhysMem {
    /// Copies the bytes at `addr .. addr + buf.len()` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MapError>;
}

impl<M: PhysMem + ?Sized> PhysMem for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MapError> {
        (**self).read(addr, buf)
    }
}

/// Physical memory that is one byte slice at `base`, below 4 GiB as in the
/// guest: what a fuzz harness or a test hands the readers
/// ([`crate::platform::acpi::read_tables`], [`crate::arch::pvh::StartInfo::read`]; put the
/// RSDP and the tables in `bytes`, pass `base + offset` as addresses).
/// Reads outside the slice, at 0, or ending past 4 GiB fail.
#[derive(Debug, Clone, Copy)]
pub struct SliceMem<'a> {
    /// The physical address of `bytes[0]`.
    pub base: u64,
    /// The memory.
    pub bytes: &'a [u8],
}

impl PhysMem for SliceMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MapError> {
        let len = buf.len() as u64;
        identity_range(addr, len, MAPPED_LIMIT)?;
        let from = addr
            .checked_sub(self.base)
            .filter(|off| off.saturating_add(len) <= self.bytes.len() as u64)
            .ok_or(MapError::NotBacked { addr, len })? as usize;
        buf.copy_from_slice(&self.bytes[from..from + buf.len()]);
        Ok(())
    }
}

/// Checks `addr .. addr + len` against an identity map of `0 .. limit`:
/// not at 0, no overflow, the end not past `limit`. The guest's
/// [`IdentityMap`] applies it with its 4 GiB map ([`MAPPED_LIMIT`]).
pub fn identity_range(addr: u64, len: u64, limit: u64) -> Result<(), MapError> {
    if addr == 0 {
        return Err(MapError::Null);
    }
    let end = addr
        .checked_add(len)
        .ok_or(MapError::Overflow { addr, len })?;
    if end > limit {
        return Err(MapError::BeyondMap { addr, len, limit });
    }
    Ok(())
}

/// Physical memory through the boot page tables' identity map of 0–4 GiB.
#[cfg(target_os = "none")]
#[derive(Debug, Clone, Copy)]
pub struct IdentityMap(());

#[cfg(target_os = "none")]
impl IdentityMap {
    /// The identity map.
    ///
    /// # Safety
    ///
    /// The boot code's identity map of the first 4 GiB must be in place,
    /// and reading what callers ask for must have no side effect: use it
    /// for what the loader and firmware left in RAM (start info, memory
    /// map, command line, ACPI tables), not for device registers.
    pub const unsafe fn new() -> Self {
        IdentityMap(())
    }
}

#[cfg(target_os = "none")]
impl PhysMem for IdentityMap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MapError> {
        identity_range(addr, buf.len() as u64, MAPPED_LIMIT)?;
        // SAFETY: `addr .. addr + buf.len()` is inside 1 .. 4 GiB (checked
        // just above), which the boot page tables map with physical ==
        // virtual; reading it has no side effect (the contract of
        // `IdentityMap::new`), and `buf` is ours and does not overlap it.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as usize as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_map_refuses_0_overflow_and_anything_ending_past_it() {
        assert_eq!(identity_range(0, 1, MAPPED_LIMIT), Err(MapError::Null));
        assert_eq!(
            identity_range(u64::MAX - 1, 4, MAPPED_LIMIT),
            Err(MapError::Overflow {
                addr: u64::MAX - 1,
                len: 4
            })
        );
        assert_eq!(identity_range(0xFFFF_FFFF, 1, MAPPED_LIMIT), Ok(()));
        assert_eq!(
            identity_range(0xFFFF_FFFF, 2, MAPPED_LIMIT),
            Err(MapError::BeyondMap {
                addr: 0xFFFF_FFFF,
                len: 2,
                limit: MAPPED_LIMIT
            })
        );
        assert_eq!(identity_range(1, 0, MAPPED_LIMIT), Ok(()));
    }

    #[test]
    fn slice_memory_reads_only_inside_its_slice() {
        let bytes: Vec<u8> = (0..16).collect();
        let m = SliceMem {
            base: 0x1000,
            bytes: &bytes,
        };
        let mut b = [0u8; 4];
        assert_eq!(m.read(0x100C, &mut b), Ok(()));
        assert_eq!(b, [12, 13, 14, 15]);
        assert_eq!(
            m.read(0x100D, &mut b),
            Err(MapError::NotBacked {
                addr: 0x100D,
                len: 4
            })
        );
        assert_eq!(
            m.read(0xFFF, &mut b),
            Err(MapError::NotBacked {
                addr: 0xFFF,
                len: 4
            })
        );
        assert_eq!(m.read(0, &mut b), Err(MapError::Null));
        let top = SliceMem {
            base: MAPPED_LIMIT - 8,
            bytes: &bytes,
        };
        assert!(matches!(
            top.read(MAPPED_LIMIT - 2, &mut b),
            Err(MapError::BeyondMap { .. })
        ));
    }
}
