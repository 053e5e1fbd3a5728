//! The PVH boot ABI's start-of-day structure, `hvm_start_info`.
//!
//! The loader passes its physical address in `%ebx` (Xen's
//! `include/public/arch-x86/hvm/start_info.h`; QEMU builds it in its PVH
//! option ROM or in qboot). All fields are little-endian; an address of 0
//! means "not present".
//!
//! ```text
//!  0 magic 0x336ec578   4 version   8 flags   12 nr_modules
//! 16 modlist_paddr     24 cmdline_paddr      32 rsdp_paddr      (version 0: 40 bytes)
//! 40 memmap_paddr      48 memmap_entries     52 reserved        (version 1: 56 bytes)
//!
//! memory map entry (24 bytes): 0 addr  8 size  16 type  20 reserved
//! ```
//!
//! Parsing works on bytes, and reading goes through [`PhysMem`]
//! ([`crate::arch::phys`]), so both are tested on the host over a byte image (and
//! fuzzed: the `fuzz` crate). On metal the memory is the boot code's
//! identity map of the first 4 GiB; a structure or memory-map entry that is
//! not inside it is an error or ends the map, never a fault. The command
//! line is copied by [`copy_cmdline`], which never reads at or past the
//! 4 GiB the boot page tables map: a start info pointing there (or a
//! string running there) has no command line.

use core::fmt;

#[cfg(target_os = "none")]
use crate::arch::phys::IdentityMap;
use crate::arch::phys::PhysMem;
pub use crate::arch::phys::MAPPED_LIMIT;

/// `hvm_start_info.magic`: "xEn3" with the 0x80 bit of the "E" set.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// Size of a version-0 `hvm_start_info`.
pub const START_INFO_V0_LEN: usize = 40;
/// Size of a version-1 `hvm_start_info` (adds the memory map).
pub const START_INFO_V1_LEN: usize = 56;
/// Size of one memory map entry.
pub const MEMMAP_ENTRY_LEN: usize = 24;

/// A physical address that the loader said is present (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// `addr`, or `None` for 0 (the ABI's "not present").
    pub const fn new(addr: u64) -> Option<Self> {
        if addr == 0 {
            None
        } else {
            Some(PhysAddr(addr))
        }
    }

    /// The address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Why a start-info structure was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartInfoError {
    /// The structure at this address is not (wholly) inside readable memory.
    Unreadable(u64),
    /// The magic field holds this instead of [`START_INFO_MAGIC`].
    BadMagic(u32),
    /// Fewer bytes than the structure's version needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::Unreadable(a) => {
                write!(f, "hvm_start_info at {a:#x} is outside readable memory")
            }
            StartInfoError::BadMagic(m) => {
                write!(
                    f,
                    "bad hvm_start_info magic {m:#010x} (want {START_INFO_MAGIC:#010x})"
                )
            }
            StartInfoError::Truncated { needed, got } => {
                write!(f, "hvm_start_info truncated: {got} of {needed} bytes")
            }
        }
    }
}

/// The parsed `hvm_start_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartInfo {
    /// Structure version (0 or 1 today; later versions are compatible).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of modules (initrds) and where their list is.
    pub modules: Option<(PhysAddr, u32)>,
    /// The NUL-terminated command line.
    pub cmdline: Option<PhysAddr>,
    /// The ACPI RSDP.
    pub rsdp: Option<PhysAddr>,
    /// The memory map and its entry count (version 1 and later).
    pub memmap: Option<(PhysAddr, u32)>,
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(b)
}

impl StartInfo {
    /// How many bytes a structure of `version` has.
    pub const fn len_for_version(version: u32) -> usize {
        if version == 0 {
            START_INFO_V0_LEN
        } else {
            START_INFO_V1_LEN
        }
    }

    /// Parses the structure from its bytes (at least the 8-byte header, and
    /// as many as [`len_for_version`](Self::len_for_version) says).
    pub fn parse(bytes: &[u8]) -> Result<Self, StartInfoError> {
        if bytes.len() < 8 {
            return Err(StartInfoError::Truncated {
                needed: 8,
                got: bytes.len(),
            });
        }
        let magic = u32_at(bytes, 0);
        if magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = u32_at(bytes, 4);
        let needed = Self::len_for_version(version);
        if bytes.len() < needed {
            return Err(StartInfoError::Truncated {
                needed,
                got: bytes.len(),
            });
        }
        let nr_modules = u32_at(bytes, 12);
        let modules = PhysAddr::new(u64_at(bytes, 16)).filter(|_| nr_modules > 0);
        let memmap = if version >= 1 {
            let entries = u32_at(bytes, 48);
            PhysAddr::new(u64_at(bytes, 40))
                .filter(|_| entries > 0)
                .map(|a| (a, entries))
        } else {
            None
        };
        Ok(StartInfo {
            version,
            flags: u32_at(bytes, 8),
            modules: modules.map(|a| (a, nr_modules)),
            cmdline: PhysAddr::new(u64_at(bytes, 24)),
            rsdp: PhysAddr::new(u64_at(bytes, 32)),
            memmap,
        })
    }
}

impl StartInfo {
    /// Reads and parses the structure at `paddr` of `mem`: the header
    /// first, then as many bytes as its version has.
    pub fn read(mem: &impl PhysMem, paddr: u64) -> Result<Self, StartInfoError> {
        let mut bytes = [0u8; START_INFO_V1_LEN];
        mem.read(paddr, &mut bytes[..8])
            .map_err(|_| StartInfoError::Unreadable(paddr))?;
        if u32_at(&bytes, 0) != START_INFO_MAGIC {
            return Self::parse(&bytes[..8]);
        }
        let len = Self::len_for_version(u32_at(&bytes, 4));
        mem.read(paddr, &mut bytes[..len])
            .map_err(|_| StartInfoError::Unreadable(paddr))?;
        Self::parse(&bytes[..len])
    }
}

/// The memory map of a [`StartInfo`], read from a [`PhysMem`] entry by
/// entry: at most the structure's entry count, and it ends early at the
/// first entry that is not inside the memory.
#[derive(Debug, Clone)]
pub struct MemoryMap<'m, M> {
    mem: &'m M,
    base: u64,
    next: u32,
    count: u32,
}

impl<'m, M: PhysMem> MemoryMap<'m, M> {
    /// The map `info` describes (empty without one), in `mem`.
    pub fn new(mem: &'m M, info: &StartInfo) -> Self {
        let (base, count) = info.memmap.map_or((0, 0), |(a, n)| (a.as_u64(), n));
        MemoryMap {
            mem,
            base,
            next: 0,
            count,
        }
    }
}

impl<M: PhysMem> Iterator for MemoryMap<'_, M> {
    type Item = MemoryRange;

    fn next(&mut self) -> Option<MemoryRange> {
        if self.next >= self.count {
            return None;
        }
        let mut entry = [0u8; MEMMAP_ENTRY_LEN];
        let read = (self.next as u64)
            .checked_mul(MEMMAP_ENTRY_LEN as u64)
            .and_then(|off| self.base.checked_add(off))
            .and_then(|addr| self.mem.read(addr, &mut entry).ok());
        if read.is_none() {
            log::warn!(
                "pvh: memory map entry {} of {} at {:#x} is outside readable memory: map ends there",
                self.next,
                self.count,
                self.base
            );
            self.next = self.count;
            return None;
        }
        self.next += 1;
        Some(MemoryRange::parse(&entry))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some((self.count - self.next) as usize))
    }
}

/// The kind of a memory-map range (`XEN_HVM_MEMMAP_TYPE_*`, the E820 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Ram,
    /// Reserved.
    Reserved,
    /// ACPI tables, reclaimable after reading them.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Unusable (errors detected).
    Unusable,
    /// Disabled.
    Disabled,
    /// Persistent memory.
    Persistent,
    /// A type this code does not know.
    Other(u32),
}

impl MemoryKind {
    /// The kind for an ABI type number.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            1 => MemoryKind::Ram,
            2 => MemoryKind::Reserved,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Unusable,
            6 => MemoryKind::Disabled,
            7 => MemoryKind::Persistent,
            other => MemoryKind::Other(other),
        }
    }
}

/// The bytes of RAM in `ranges` (the [`MemoryKind::Ram`] ones), saturating
/// at `u64::MAX`: a bogus map whose sizes overflow is a large figure in the
/// boot log, not a panic.
pub fn ram_bytes(ranges: impl IntoIterator<Item = MemoryRange>) -> u64 {
    ranges
        .into_iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .fold(0u64, |total, r| total.saturating_add(r.size))
}

/// One range of the memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: MemoryKind,
}

impl MemoryRange {
    /// Parses one 24-byte entry.
    pub fn parse(entry: &[u8; MEMMAP_ENTRY_LEN]) -> Self {
        MemoryRange {
            base: u64_at(entry, 0),
            size: u64_at(entry, 8),
            kind: MemoryKind::from_raw(u32_at(entry, 16)),
        }
    }
}

/// Why the command line the start info points at cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineError {
    /// Its address is at or above [`MAPPED_LIMIT`].
    AboveMapped(PhysAddr),
    /// No NUL before [`MAPPED_LIMIT`]: the string runs past what is mapped.
    RunsPastMapped(PhysAddr),
    /// The memory refused a byte of it (at this address).
    Unreadable(u64),
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::AboveMapped(a) => {
                write!(f, "at {a}, at or above 4 GiB (not mapped): ignored")
            }
            CmdlineError::RunsPastMapped(a) => write!(
                f,
                "at {a}, no NUL before 4 GiB (runs past what is mapped): ignored"
            ),
            CmdlineError::Unreadable(at) => {
                write!(f, "byte at {at:#x} unreadable: ignored")
            }
        }
    }
}

/// A command line copied by [`copy_cmdline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdlineCopy {
    /// Bytes copied (no NUL).
    pub len: usize,
    /// If the line was longer than the buffer: the byte after the copy
    /// (so the caller can tell whether the cut fell inside a word).
    pub next: Option<u8>,
}

/// Copies the NUL-terminated command line at `addr` of `mem` into `out`,
/// byte by byte — never at or past [`MAPPED_LIMIT`]. Stops at the NUL, or
/// after `out.len()` bytes and the one after them.
pub fn copy_cmdline(
    mem: &impl PhysMem,
    addr: PhysAddr,
    out: &mut [u8],
) -> Result<CmdlineCopy, CmdlineError> {
    let base = addr.as_u64();
    if base >= MAPPED_LIMIT {
        return Err(CmdlineError::AboveMapped(addr));
    }
    let mut len = 0;
    loop {
        let at = base + len as u64;
        if at >= MAPPED_LIMIT {
            return Err(CmdlineError::RunsPastMapped(addr));
        }
        let mut byte = [0u8];
        mem.read(at, &mut byte)
            .map_err(|_| CmdlineError::Unreadable(at))?;
        let [byte] = byte;
        if byte == 0 {
            return Ok(CmdlineCopy { len, next: None });
        }
        let Some(slot) = out.get_mut(len) else {
            return Ok(CmdlineCopy {
                len,
                next: Some(byte),
            });
        };
        *slot = byte;
        len += 1;
    }
}

/// Reads and parses the start info the loader left at `paddr`.
///
/// # Safety
///
/// `paddr` must be the value the PVH loader passed in `%ebx`, and physical
/// memory must still be identity-mapped with the structure intact (the boot
/// code maps the first 4 GiB and nothing writes below the kernel image).
#[cfg(target_os = "none")]
pub unsafe fn read_start_info(paddr: u32) -> Result<StartInfo, StartInfoError> {
    // SAFETY: the identity map is in place and the loader's structures are
    // in RAM (this function's contract).
    StartInfo::read(&unsafe { IdentityMap::new() }, paddr as u64)
}

/// The memory map of `info`, read from physical memory.
///
/// # Safety
///
/// `info` must come from [`read_start_info`] under that function's
/// conditions, which must still hold.
#[cfg(target_os = "none")]
pub unsafe fn memory_map(info: &StartInfo) -> MemoryMap<'static, IdentityMap> {
    /// The loader's memory, read through the boot identity map.
    // SAFETY: reading the loader's structures through the identity map is
    // what `read_start_info`'s contract allows, and the callers of this
    // function keep to it.
    static BOOT_MEMORY: IdentityMap = unsafe { IdentityMap::new() };
    MemoryMap::new(&BOOT_MEMORY, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::phys::{MapError, SliceMem};

    fn v1(cmdline: u64, rsdp: u64, memmap: u64, entries: u32) -> [u8; START_INFO_V1_LEN] {
        let mut b = [0u8; START_INFO_V1_LEN];
        b[0..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&0x5u32.to_le_bytes());
        b[24..32].copy_from_slice(&cmdline.to_le_bytes());
        b[32..40].copy_from_slice(&rsdp.to_le_bytes());
        b[40..48].copy_from_slice(&memmap.to_le_bytes());
        b[48..52].copy_from_slice(&entries.to_le_bytes());
        b
    }

    #[test]
    fn version_1_fields_are_read() {
        let info = StartInfo::parse(&v1(0x2_0000, 0xf_5a40, 0x6000, 4)).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.flags, 5);
        assert_eq!(info.cmdline, PhysAddr::new(0x2_0000));
        assert_eq!(info.rsdp, PhysAddr::new(0xf_5a40));
        assert_eq!(info.memmap, Some((PhysAddr::new(0x6000).unwrap(), 4)));
        assert_eq!(info.modules, None);
    }

    #[test]
    fn zero_addresses_mean_absent() {
        let info = StartInfo::parse(&v1(0, 0, 0x6000, 0)).unwrap();
        assert_eq!(info.cmdline, None);
        assert_eq!(info.rsdp, None);
        assert_eq!(info.memmap, None, "an empty memory map is no memory map");
    }

    #[test]
    fn version_0_needs_only_40_bytes_and_has_no_memmap() {
        let mut b = v1(0x2_0000, 0, 0x6000, 4);
        b[4..8].copy_from_slice(&0u32.to_le_bytes());
        let info = StartInfo::parse(&b[..START_INFO_V0_LEN]).unwrap();
        assert_eq!(info.version, 0);
        assert_eq!(info.memmap, None);
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut b = v1(0, 0, 0, 0);
        b[0] ^= 1;
        assert_eq!(
            StartInfo::parse(&b),
            Err(StartInfoError::BadMagic(START_INFO_MAGIC ^ 1))
        );
    }

    #[test]
    fn short_structure_is_rejected() {
        let b = v1(0, 0, 0, 0);
        assert_eq!(
            StartInfo::parse(&b[..48]),
            Err(StartInfoError::Truncated {
                needed: START_INFO_V1_LEN,
                got: 48
            })
        );
        assert_eq!(
            StartInfo::parse(&b[..3]),
            Err(StartInfoError::Truncated { needed: 8, got: 3 })
        );
    }

    /// `bytes` at physical address `base`; nothing else is readable.
    struct Image {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMem for Image {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MapError> {
            let bytes = &self.bytes;
            SliceMem {
                base: self.base,
                bytes,
            }
            .read(paddr, buf)
        }
    }

    fn entry(base: u64, size: u64, kind: u32) -> [u8; MEMMAP_ENTRY_LEN] {
        let mut e = [0u8; MEMMAP_ENTRY_LEN];
        e[0..8].copy_from_slice(&base.to_le_bytes());
        e[8..16].copy_from_slice(&size.to_le_bytes());
        e[16..20].copy_from_slice(&kind.to_le_bytes());
        e
    }

    /// A start info at 0x1000 and `entries` map entries right after it, of
    /// which the structure claims `claimed`.
    fn image(entries: usize, claimed: u32) -> Image {
        let mut bytes = v1(0, 0, 0x1000 + START_INFO_V1_LEN as u64, claimed).to_vec();
        for i in 0..entries {
            bytes.extend_from_slice(&entry(i as u64 * 0x1000, 0x1000, 1));
        }
        Image {
            base: 0x1000,
            bytes,
        }
    }

    /// Regression: the boot log summed the map's RAM sizes with a plain
    /// `sum()`, which a bogus map overflows (a panic in a debug build, a
    /// wrapped figure in release).
    #[test]
    fn ram_bytes_saturate_on_a_map_whose_sizes_overflow() {
        let ram = |size| MemoryRange {
            base: 0,
            size,
            kind: MemoryKind::Ram,
        };
        let reserved = MemoryRange {
            kind: MemoryKind::from_raw(2),
            ..ram(u64::MAX)
        };
        assert_eq!(ram_bytes([ram(0x1000), reserved, ram(0x2000)]), 0x3000);
        assert_eq!(
            ram_bytes([ram(u64::MAX / 2 + 1), ram(u64::MAX / 2 + 1)]),
            u64::MAX
        );
        assert_eq!(ram_bytes([ram(u64::MAX), reserved, ram(1)]), u64::MAX);
    }

    #[test]
    fn start_info_and_memory_map_are_read_from_memory() {
        let mem = image(3, 3);
        let info = StartInfo::read(&mem, 0x1000).unwrap();
        let map: Vec<_> = MemoryMap::new(&mem, &info).collect();
        assert_eq!(map.len(), 3);
        assert_eq!(map[2].base, 0x2000);
        assert_eq!(map[2].kind, MemoryKind::Ram);
    }

    #[test]
    fn start_info_outside_memory_is_an_error() {
        let mem = image(0, 0);
        assert_eq!(
            StartInfo::read(&mem, 0x0fff),
            Err(StartInfoError::Unreadable(0x0fff))
        );
        // The header is readable, the version-1 tail is not.
        let short = Image {
            base: 0x1000,
            bytes: mem.bytes[..48].to_vec(),
        };
        assert_eq!(
            StartInfo::read(&short, 0x1000),
            Err(StartInfoError::Unreadable(0x1000))
        );
        assert_eq!(
            StartInfo::read(&mem, u64::MAX - 3),
            Err(StartInfoError::Unreadable(u64::MAX - 3))
        );
    }

    #[test]
    fn memory_map_ends_at_the_end_of_memory_and_never_passes_its_count() {
        let mem = image(2, 1_000_000);
        let info = StartInfo::read(&mem, 0x1000).unwrap();
        assert_eq!(MemoryMap::new(&mem, &info).count(), 2);
        let mem = image(4, 2);
        let info = StartInfo::read(&mem, 0x1000).unwrap();
        assert_eq!(MemoryMap::new(&mem, &info).count(), 2);
        // A map whose entries would pass the top of the address space.
        let mut mem = image(0, u32::MAX);
        mem.bytes[40..48].copy_from_slice(&(u64::MAX - 30).to_le_bytes());
        let info = StartInfo::read(&mem, 0x1000).unwrap();
        assert_eq!(MemoryMap::new(&mem, &info).count(), 0);
    }

    /// Physical memory for [`copy_cmdline`]: `text` at `base`, zeros after
    /// it, and a read at or past 4 GiB fails the test (there is nothing
    /// mapped there).
    struct Text<'a> {
        base: u64,
        text: &'a [u8],
    }

    impl PhysMem for Text<'_> {
        fn read(&self, a: u64, buf: &mut [u8]) -> Result<(), MapError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = a + i as u64;
                assert!(a < MAPPED_LIMIT, "read at {a:#x}, past 4 GiB");
                *b = self
                    .text
                    .get((a - self.base) as usize)
                    .copied()
                    .unwrap_or(0);
            }
            Ok(())
        }
    }

    fn copy_from(base: u64, text: &[u8], out: &mut [u8]) -> Result<CmdlineCopy, CmdlineError> {
        copy_cmdline(&Text { base, text }, PhysAddr::new(base).unwrap(), out)
    }

    #[test]
    fn a_command_line_is_copied_up_to_its_nul_or_the_buffer() {
        let mut out = [0u8; 8];
        assert_eq!(
            copy_from(0x2_0000, b"hz=250\0junk", &mut out),
            Ok(CmdlineCopy { len: 6, next: None })
        );
        assert_eq!(&out[..6], b"hz=250");
        assert_eq!(
            copy_from(0x2_0000, b"nohz=off hz=250\0", &mut out),
            Ok(CmdlineCopy {
                len: 8,
                next: Some(b' ')
            })
        );
        assert_eq!(&out, b"nohz=off");
        // Ending just below 4 GiB is fine.
        let base = MAPPED_LIMIT - 4;
        assert_eq!(copy_from(base, b"hz=\0", &mut out).map(|c| c.len), Ok(3));
    }

    /// Regression: the command-line address was not checked against the
    /// 4 GiB the boot page tables map (the RSDP's is), so a start info
    /// pointing there made the copy read unmapped memory.
    #[test]
    fn a_command_line_at_or_past_4_gib_is_refused_without_reading_it() {
        let mut out = [0u8; 8];
        for base in [MAPPED_LIMIT, MAPPED_LIMIT + 0x1000, u64::MAX - 2] {
            assert_eq!(
                copy_from(base, b"hz=250\0", &mut out),
                Err(CmdlineError::AboveMapped(PhysAddr::new(base).unwrap()))
            );
        }
        // Starts below 4 GiB, no NUL before it.
        let base = MAPPED_LIMIT - 3;
        assert_eq!(
            copy_from(base, b"hz=250\0", &mut out),
            Err(CmdlineError::RunsPastMapped(PhysAddr::new(base).unwrap()))
        );
    }

    #[test]
    fn memory_map_entry_is_read() {
        let mut e = [0u8; MEMMAP_ENTRY_LEN];
        e[0..8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        e[8..16].copy_from_slice(&0x7f0_0000u64.to_le_bytes());
        e[16..20].copy_from_slice(&1u32.to_le_bytes());
        let r = MemoryRange::parse(&e);
        assert_eq!(r.base, 0x10_0000);
        assert_eq!(r.size, 0x7f0_0000);
        assert_eq!(r.kind, MemoryKind::Ram);
        assert_eq!(MemoryKind::from_raw(9), MemoryKind::Other(9));
    }
}
