//! The guest's PVH start-info and memory-map reader, `guest::arch::pvh`.
//!
//! Inputs are fake physical memories: a byte image at a random base (low
//! memory, just under 4 GiB, at the top of the address space) holding an
//! `hvm_start_info` — well formed, or with its magic, version, addresses
//! and entry count set to edge values (0, inside, straddling the end,
//! outside, wrapping; counts of 0, exact, more than present, `u32::MAX`) —
//! and a memory map, then random bytes flipped and the image sometimes cut
//! short. The start info is read at an address inside, straddling or
//! outside the image.
//!
//! Invariants (the layout is Xen's `include/public/arch-x86/hvm/start_info.h`,
//! decoded here independently of the guest's code):
//! - neither `StartInfo::read` nor the `MemoryMap` iterator panics;
//! - `read` fails with `Unreadable` exactly when the structure (8 bytes,
//!   then 40 or 56 by version) is not wholly inside the image, with
//!   `BadMagic` exactly when the magic differs, and otherwise returns the
//!   fields as the ABI lays them out (an address of 0 is "absent");
//! - the memory map yields exactly the entries that lie wholly inside the
//!   image, up to the structure's count — never more than that count,
//!   never a byte outside the memory it read — each decoded as the ABI
//!   says.

use guest::arch::phys::{MapError, PhysMem};
use guest::arch::pvh::{
    MemoryKind, MemoryMap, StartInfo, StartInfoError, MEMMAP_ENTRY_LEN, START_INFO_MAGIC,
};

use crate::{Gen, Target};

/// The PVH target.
pub struct Pvh;

/// A fake physical memory: `bytes` at `base`, nothing else.
#[derive(Clone)]
pub struct Memory {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Memory {{ base: {:#x}, len: {}, bytes: [",
            self.base,
            self.bytes.len()
        )?;
        for (i, b) in self.bytes.iter().enumerate() {
            if i % 32 == 0 {
                write!(f, "\n  {:#x}:", self.base.wrapping_add(i as u64))?;
            }
            write!(f, " {b:02x}")?;
        }
        write!(f, "\n] }}")
    }
}

impl Memory {
    /// The image's bytes at `paddr .. paddr + len`, if wholly inside.
    fn slice(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(paddr.checked_sub(self.base)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

impl PhysMem for Memory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MapError> {
        let len = buf.len();
        let src = self.slice(paddr, len).ok_or(MapError::NotBacked {
            addr: paddr,
            len: len as u64,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// One input: the memory and where the start info is said to be.
#[derive(Debug, Clone)]
pub struct Input {
    /// The physical memory.
    pub memory: Memory,
    /// `%ebx`: where the loader says the structure is.
    pub paddr: u64,
}

fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    let Some(end) = at.checked_add(v.len()) else {
        return;
    };
    if let Some(dst) = bytes.get_mut(at..end) {
        dst.copy_from_slice(v);
    }
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// An address relative to the image: inside, at its end, just before it,
/// straddling the end, or far away.
fn address(g: &mut Gen, m: &Memory, len: usize) -> u64 {
    let end = m.base.wrapping_add(m.bytes.len() as u64);
    match g.below(8) {
        0..=2 => m.base.wrapping_add(g.below(m.bytes.len() as u64 + 1)),
        3 => end.wrapping_sub(len as u64),
        4 => end.wrapping_sub(g.range(1, len as u64)),
        5 => m.base.wrapping_sub(g.range(1, 64)),
        6 => 0,
        _ => g.interesting_u64(),
    }
}

impl Target for Pvh {
    const NAME: &'static str = "pvh";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let len = g.range(8, 4096) as usize;
        let base = match g.below(4) {
            0 => g.below(1 << 20),
            1 => (1u64 << 32) - g.range(1, 1 << 16),
            2 => u64::MAX - g.below(1 << 16),
            _ => g.u64() >> g.below(64),
        };
        // The image ends at or below the top of the address space.
        let base = base.min(u64::MAX - len as u64);
        let mut memory = Memory {
            base,
            bytes: (0..len).map(|_| g.u8()).collect(),
        };
        // The structure, near the start mostly.
        let at = if g.chance(3, 4) {
            g.below(64.min(len as u64)) as usize
        } else {
            g.below(len as u64) as usize
        };
        let version: u32 = g.pick_or(&[0, 1, 1, 1, 2, u32::MAX], Gen::u32);
        let magic = if g.chance(9, 10) {
            START_INFO_MAGIC
        } else {
            START_INFO_MAGIC ^ (1 << g.below(32))
        };
        let mut si = [0u8; 56];
        si[0..4].copy_from_slice(&magic.to_le_bytes());
        si[4..8].copy_from_slice(&version.to_le_bytes());
        si[8..12].copy_from_slice(&g.u32().to_le_bytes());
        si[12..16].copy_from_slice(&(g.below(3) as u32).to_le_bytes());
        let modlist = address(g, &memory, 32);
        si[16..24].copy_from_slice(&modlist.to_le_bytes());
        let cmdline = address(g, &memory, 1);
        si[24..32].copy_from_slice(&cmdline.to_le_bytes());
        let rsdp = address(g, &memory, 20);
        si[32..40].copy_from_slice(&rsdp.to_le_bytes());
        let map = if g.chance(1, 2) {
            memory.base.wrapping_add(at as u64 + 56)
        } else {
            address(g, &memory, MEMMAP_ENTRY_LEN)
        };
        si[40..48].copy_from_slice(&map.to_le_bytes());
        let present = (memory.base.wrapping_add(len as u64).saturating_sub(map)
            / MEMMAP_ENTRY_LEN as u64) as u32;
        let entries = match g.below(6) {
            0 => 0,
            1 => present,
            2 => present.saturating_add(g.range(1, 4) as u32),
            3 => u32::MAX,
            _ => g.below(64) as u32,
        };
        si[48..52].copy_from_slice(&entries.to_le_bytes());
        put(&mut memory.bytes, at, &si);
        // Entries: plausible E820 ranges where the map points inside.
        if let Some(start) = map.checked_sub(memory.base) {
            for i in 0..g.below(64) as usize {
                let mut e = [0u8; MEMMAP_ENTRY_LEN];
                e[0..8].copy_from_slice(&g.interesting_u64().to_le_bytes());
                e[8..16].copy_from_slice(&g.interesting_u64().to_le_bytes());
                e[16..20].copy_from_slice(&(g.below(9) as u32).to_le_bytes());
                if let Some(off) = (start as usize).checked_add(i * MEMMAP_ENTRY_LEN) {
                    put(&mut memory.bytes, off, &e);
                }
            }
        }
        for _ in 0..g.below(4) {
            let i = g.below(len as u64) as usize;
            memory.bytes[i] ^= 1 << g.below(8);
        }
        if g.chance(1, 8) {
            let keep = g.below(len as u64 + 1) as usize;
            memory.bytes.truncate(keep);
        }
        let paddr = if g.chance(7, 8) {
            base.wrapping_add(at as u64)
        } else {
            address(g, &memory, 56)
        };
        Input { memory, paddr }
    }

    fn check(input: &Input) -> u64 {
        let m = &input.memory;
        let header = m.slice(input.paddr, 8);
        let result = StartInfo::read(m, input.paddr);
        let Some(header) = header else {
            assert_eq!(result, Err(StartInfoError::Unreadable(input.paddr)));
            return 1;
        };
        let magic = u32_le(header, 0);
        if magic != START_INFO_MAGIC {
            assert_eq!(result, Err(StartInfoError::BadMagic(magic)));
            return 2;
        }
        let version = u32_le(header, 4);
        let len = if version == 0 { 40 } else { 56 };
        let Some(b) = m.slice(input.paddr, len) else {
            assert_eq!(result, Err(StartInfoError::Unreadable(input.paddr)));
            return 3;
        };
        let info = result.expect("a whole structure with the magic parses");
        let addr = |at| match u64_le(b, at) {
            0 => None,
            a => Some(a),
        };
        assert_eq!(info.version, version);
        assert_eq!(info.flags, u32_le(b, 8));
        assert_eq!(info.cmdline.map(|a| a.as_u64()), addr(24));
        assert_eq!(info.rsdp.map(|a| a.as_u64()), addr(32));
        let nr_modules = u32_le(b, 12);
        assert_eq!(
            info.modules.map(|(a, n)| (a.as_u64(), n)),
            addr(16).filter(|_| nr_modules > 0).map(|a| (a, nr_modules))
        );
        let claimed = if version >= 1 {
            let n = u32_le(b, 48);
            addr(40).filter(|_| n > 0).map(|a| (a, n))
        } else {
            None
        };
        assert_eq!(info.memmap.map(|(a, n)| (a.as_u64(), n)), claimed);

        let (map_base, count) = claimed.unwrap_or((0, 0));
        let mut seen = 0u64;
        for (i, r) in MemoryMap::new(m, &info).enumerate() {
            assert!(
                (i as u64) < count as u64,
                "entry {i} past the count {count}"
            );
            let at = map_base + i as u64 * MEMMAP_ENTRY_LEN as u64;
            let e = m
                .slice(at, MEMMAP_ENTRY_LEN)
                .unwrap_or_else(|| panic!("entry {i} at {at:#x} is outside the memory read"));
            assert_eq!(r.base, u64_le(e, 0));
            assert_eq!(r.size, u64_le(e, 8));
            assert_eq!(r.kind, MemoryKind::from_raw(u32_le(e, 16)));
            seen += 1;
        }
        // Exactly the whole entries inside the memory, up to the count.
        let end = m.base + m.bytes.len() as u64;
        let inside = if claimed.is_none() || map_base < m.base {
            0
        } else {
            end.saturating_sub(map_base) / MEMMAP_ENTRY_LEN as u64
        };
        assert_eq!(
            seen,
            inside.min(count as u64),
            "the map yielded {seen} entries"
        );
        4 | (version.min(2) as u64) << 3
            | (claimed.is_some() as u64) << 5
            | ((seen == count as u64) as u64) << 6
            | (seen.min(3)) << 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_pvh_short_pass() {
        crate::short_pass::<Pvh>(5_000);
    }
}
