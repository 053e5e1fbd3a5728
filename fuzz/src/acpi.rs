//! The guest's ACPI table reader, `guest::platform::acpi::read_tables`, and
//! the platform built from it, `guest::platform::firmware::platform_from`.
//!
//! Inputs are fake physical memories ([`SliceMem`] over one image at a
//! random base below 4 GiB) holding an RSDP (revision 0 or 2), an RSDT and
//! an XSDT whose entries point at the tables, at 0, past 4 GiB, outside the
//! image, into the middle of the image, or twice at the same table; a MADT
//! with a random list of entries (the five types read, other types, and
//! lengths of 0, 1, too short for the type, and past the table); an HPET
//! table (system memory or another address space, base 0 or not); a FADT;
//! and a spare table (a second HPET or junk). Then, in most inputs, random
//! bytes are flipped, length fields overwritten with edge values and the
//! image cut short — and the checksums are re-balanced half of the time,
//! so that mutated contents get past the checksum to the parsers.
//!
//! Invariants, from the layouts in ACPI 6.5 §5.2.5–5.2.12 and IA-PC HPET
//! 1.0a §3.2.4, decoded here independently of the reader:
//! - neither `read_tables`, the MADT walk nor `platform_from` panics, and
//!   the walk ends: at most `(Length − 44) / 2 + 1` items;
//! - a MADT the reader keeps is wholly inside the memory, signed `APIC`,
//!   at least 44 bytes long, with a checksum that sums to 0 over its
//!   `Length`; and its walk yields exactly the entries an independent walk
//!   of those bytes finds (each decoded as §5.2.12 lays it out), ending
//!   with the same stop where the list is malformed;
//! - an HPET the reader reports comes from a validated `HPET` table of at
//!   least 56 bytes in system memory (address space 0) with that non-zero
//!   base; a FADT PM timer port is the `X_PM_TMR_BLK` (system I/O) or the
//!   `PM_TMR_BLK` (with `PM_TMR_LEN` 4) of a validated `FACP` table;
//! - an input nothing was done to (all entries valid, no mutation) yields
//!   all three tables, the MADT's entries as built, the HPET's base and the
//!   PM timer's port: the reader does not get through by refusing;
//! - the platform has at least one CPU and one I/O APIC (the documented
//!   last resort when the MADT names none).

use guest::arch::phys::SliceMem;
use guest::platform::acpi::build::{self, Table};
use guest::platform::acpi::fadt::PmTimer;
use guest::platform::acpi::madt::{Entry, WalkStop};
use guest::platform::acpi::read_tables;
use guest::platform::firmware::platform_from;

use crate::{Gen, Target};

/// The ACPI target.
pub struct Acpi;

/// Where the generator puts each structure in the image.
const RSDP_AT: usize = 0x000;
const RSDT_AT: usize = 0x040;
const XSDT_AT: usize = 0x100;
const MADT_AT: usize = 0x200;
const HPET_AT: usize = 0x600;
const FADT_AT: usize = 0x700;
const SPARE_AT: usize = 0xA00;
const IMAGE_LEN: usize = 0xC00;
/// Every table's offset (the RSDP is not a table).
const TABLES: [usize; 6] = [RSDT_AT, XSDT_AT, MADT_AT, HPET_AT, FADT_AT, SPARE_AT];

/// A MADT entry as generated: its type, stated length and body.
#[derive(Debug, Clone)]
pub struct MadtEntry {
    /// Type.
    pub entry_type: u8,
    /// Stated length.
    pub length: u8,
    /// The bytes after the two header bytes (what was written).
    pub body: Vec<u8>,
}

/// One input.
#[derive(Clone)]
pub struct Input {
    /// The image's physical address.
    pub base: u64,
    /// The memory.
    pub bytes: Vec<u8>,
    /// Where the RSDP is said to be.
    pub rsdp: u64,
    /// Nothing malformed was built and nothing mutated: every table must
    /// be found, as built.
    pub pristine: bool,
    /// The MADT entries as built (for the pristine check).
    pub madt: Vec<MadtEntry>,
    /// The HPET base as built.
    pub hpet_base: u64,
    /// The PM timer port as built.
    pub pm_port: u16,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Input {{ base: {:#x}, rsdp: {:#x}, pristine: {}, len: {}, bytes:",
            self.base,
            self.rsdp,
            self.pristine,
            self.bytes.len()
        )?;
        for (i, chunk) in self.bytes.chunks(32).enumerate() {
            write!(f, "  {:#06x}:", i * 32)?;
            for b in chunk {
                write!(f, " {b:02x}")?;
            }
            writeln!(f)?;
        }
        write!(f, "}}")
    }
}

fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    let end = (at + v.len()).min(bytes.len());
    if at < end {
        bytes[at..end].copy_from_slice(&v[..end - at]);
    }
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
}

/// The length a MADT entry type has in §5.2.12 (the five types read).
fn type_len(t: u8) -> Option<u8> {
    match t {
        0 => Some(8),
        1 | 5 => Some(12),
        2 => Some(10),
        9 => Some(16),
        _ => None,
    }
}

fn madt_entries(g: &mut Gen) -> (Vec<MadtEntry>, bool) {
    let mut well_formed = true;
    // Half the lists hold only the five types read, each at its length.
    let sloppy = g.chance(1, 2);
    let n = g.below(14) as usize;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let entry_type = if sloppy {
            *g.pick(&[0u8, 0, 1, 2, 2, 5, 9, 4, 0x7F, 0xFF])
        } else {
            *g.pick(&[0u8, 0, 1, 2, 2, 5, 9])
        };
        let natural = type_len(entry_type).unwrap_or(g.range(2, 20) as u8);
        let length = match if sloppy { g.below(12) } else { 11 } {
            0 => 0,
            1 => 1,
            2 => natural.saturating_sub(g.range(1, 6) as u8).max(2),
            3 => natural.saturating_add(g.range(1, 40) as u8),
            4 => 0xFF,
            _ => natural,
        };
        well_formed &= length == natural && type_len(entry_type).is_some();
        let body_len = usize::from(length.max(2)) - 2;
        let body = (0..body_len).map(|_| g.u8()).collect();
        v.push(MadtEntry {
            entry_type,
            length,
            body,
        });
    }
    (v, well_formed)
}

fn madt_table(g: &mut Gen, entries: &[MadtEntry]) -> Table {
    let lapic = g.pick_or(&[0xFEE0_0000, 0], Gen::u32);
    let t = build::madt(lapic, g.below(2) as u32);
    entries
        .iter()
        .fold(t, |t, e| {
            build::madt_raw(t, e.entry_type, e.length, &e.body)
        })
        .finish()
}

/// A root table entry: mostly a table of the image, else an edge case.
fn root_entry(g: &mut Gen, base: u64) -> (u64, bool) {
    let table = |off: usize| base + off as u64;
    match g.below(16) {
        0 => (0, false),
        1 => ((1u64 << 32) + g.below(1 << 20), false),
        2 => (base + IMAGE_LEN as u64 + g.below(4096), false),
        3 => (base + g.below(IMAGE_LEN as u64), false),
        4 => (base + IMAGE_LEN as u64 - g.range(1, 35), false),
        5 => (table(SPARE_AT), false),
        6 => (g.interesting_u64(), false),
        _ => (table(*g.pick(&[MADT_AT, HPET_AT, FADT_AT])), true),
    }
}

impl Target for Acpi {
    const NAME: &'static str = "acpi";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let base = match g.below(4) {
            0 => 0x000E_0000,
            1 => 0x07FE_0000,
            2 => (1u64 << 32) - IMAGE_LEN as u64 - g.below(2) * g.below(64),
            _ => (g.below((1 << 32) - IMAGE_LEN as u64 - 1) + 1) & !0xF,
        };
        let mut bytes = vec![0u8; IMAGE_LEN];
        let mut pristine = true;

        // The tables.
        let (madt, well_formed) = madt_entries(g);
        pristine &= well_formed;
        put(&mut bytes, MADT_AT, madt_table(g, &madt).as_bytes());
        let hpet_space = *g.pick(&[0u8, 0, 0, 0, 1, 2, 0x7F]);
        let hpet_base = g.pick_or(&[0xFED0_0000, 0xFED0_0000, 0], Gen::u64);
        pristine &= hpet_space == 0 && hpet_base != 0;
        let hpet = build::hpet(g.u32(), hpet_space, hpet_base, g.u8(), g.u32() as u16);
        put(&mut bytes, HPET_AT, hpet.as_bytes());
        let pm_port = g.range(1, 0xFFFF) as u16;
        let extended = g.chance(1, 2);
        let fadt = if extended {
            build::fadt(0, 0, g.u32(), Some((1, u64::from(pm_port))))
        } else {
            build::fadt(u32::from(pm_port), 4, g.u32(), None)
        };
        put(&mut bytes, FADT_AT, fadt.as_bytes());
        let spare = if g.chance(1, 2) {
            build::hpet(g.u32(), g.below(3) as u8, g.u64(), g.u8(), 0)
        } else {
            Table::sdt(&[g.u8(), g.u8(), g.u8(), g.u8()], 1)
                .bytes(&[g.u8(); 24])
                .finish()
        };
        put(&mut bytes, SPARE_AT, spare.as_bytes());

        // The root tables: the three tables in some order, and edge cases.
        let mut entries: Vec<u64> = [MADT_AT, HPET_AT, FADT_AT]
            .iter()
            .map(|&o| base + o as u64)
            .collect();
        for i in (1..entries.len()).rev() {
            entries.swap(i, g.below(i as u64 + 1) as usize);
        }
        for _ in 0..g.below(5) {
            let (e, ok) = root_entry(g, base);
            pristine &= ok;
            let at = g.below(entries.len() as u64 + 1) as usize;
            entries.insert(at, e);
        }
        let rsdt: Vec<u32> = entries.iter().map(|&e| e as u32).collect();
        pristine &= entries.iter().all(|&e| e < 1 << 32);
        put(&mut bytes, RSDT_AT, build::rsdt(&rsdt).as_bytes());
        put(&mut bytes, XSDT_AT, build::xsdt(&entries).as_bytes());
        let (rsdt_at, xsdt_at) = (base + RSDT_AT as u64, base + XSDT_AT as u64);
        if g.chance(1, 2) {
            put(
                &mut bytes,
                RSDP_AT,
                &build::rsdp_v1(b"DYNTKS", rsdt_at as u32),
            );
        } else {
            let rsdt = if g.chance(1, 4) { 0 } else { rsdt_at as u32 };
            put(
                &mut bytes,
                RSDP_AT,
                &build::rsdp_v2(b"DYNTKS", rsdt, xsdt_at),
            );
        }

        // Mutations.
        if g.chance(2, 3) {
            pristine = false;
            for _ in 0..g.below(6) {
                let at = if g.chance(1, 2) {
                    // Near a table's start: headers and fixed fields.
                    g.pick(&TABLES) + g.below(48) as usize
                } else {
                    g.below(IMAGE_LEN as u64) as usize
                };
                bytes[at] ^= 1 << g.below(8);
            }
            if g.chance(1, 2) {
                let table = *g.pick(&TABLES);
                let len: u32 = g.pick_or(&[0, 1, 35, 36, 43, 44, 45, 0xFFFF_FFFF], |g| {
                    g.below(0x800) as u32
                });
                put(&mut bytes, table + 4, &len.to_le_bytes());
            }
            if g.chance(1, 2) {
                reseal(&mut bytes);
            }
            if g.chance(1, 8) {
                let keep = g.below(IMAGE_LEN as u64 + 1) as usize;
                bytes.truncate(keep);
            }
        }
        let rsdp = if g.chance(15, 16) {
            base + RSDP_AT as u64
        } else {
            pristine = false;
            g.pick_or(&[0, base + 1, base + IMAGE_LEN as u64 - 10], Gen::u64)
        };
        Input {
            base,
            bytes,
            rsdp,
            pristine,
            madt,
            hpet_base,
            pm_port,
        }
    }

    fn check(input: &Input) -> u64 {
        let mem = SliceMem {
            base: input.base,
            bytes: &input.bytes,
        };
        let result = read_tables(&mem, input.rsdp);
        let platform = platform_from(&mem, Some(input.rsdp), 0xFEE0_0000);
        assert!(platform.cpus >= 1, "no CPU");
        assert!(
            platform.ioapics.iter().any(Option::is_some),
            "no I/O APIC, not even the last resort"
        );
        let Ok(t) = result else {
            assert!(!input.pristine, "a pristine input failed: {result:?}");
            return 1;
        };
        let mut summary = 2;
        let mut walk_len = 0;
        if let Some(madt) = t.madt {
            let table = validated(input, madt.address(), b"APIC", 44);
            let expected = independent_walk(table);
            let got: Vec<_> = madt.entries(&mem).collect();
            assert!(got.len() <= (table.len() - 44) / 2 + 1, "walk too long");
            assert_eq!(got, expected, "the MADT walk differs from the layout");
            summary |= 4 | (got.iter().any(Result::is_err) as u64) << 3;
            walk_len = got.len().min(7) as u64;
            if input.pristine {
                assert_eq!(got.len(), input.madt.len());
            }
        }
        if let Some(h) = t.hpet {
            assert_ne!(h.base, 0);
            let from = table_offsets(input).any(|off| {
                let b = &input.bytes[off..];
                b.starts_with(b"HPET")
                    && valid(b, 56)
                    && b[40] == 0
                    && u64_le(b, 44) == Some(h.base)
            });
            assert!(from, "HPET base {:#x} is no valid table's", h.base);
            summary |= 16;
        }
        if let Some(f) = t.fadt {
            if let PmTimer::Port { port, extended } = f.pm_timer {
                let from = table_offsets(input).any(|off| {
                    let b = &input.bytes[off..];
                    let len = u32_le(b, 4).unwrap_or(0) as usize;
                    let x = (len >= 220).then(|| (b[208], u64_le(b, 212)));
                    b.starts_with(b"FACP")
                        && valid(b, 36)
                        && if extended {
                            x == Some((1, Some(u64::from(port))))
                        } else {
                            u32_le(b, 76) == Some(u32::from(port)) && len > 91 && b[91] == 4
                        }
                });
                assert!(from, "PM timer port {port:#x} is no valid FADT's");
                summary |= 32;
            }
        }
        if input.pristine {
            assert!(t.madt.is_some() && t.hpet.is_some() && t.fadt.is_some());
            assert_eq!(t.hpet.map(|h| h.base), Some(input.hpet_base));
            assert!(
                matches!(t.fadt.map(|f| f.pm_timer), Some(PmTimer::Port { port, .. }) if port == input.pm_port)
            );
        }
        summary | walk_len << 6 | u64::from(t.notes.total().min(7)) << 9
    }
}

/// The offsets in the image where a table was placed and whose bytes are
/// still there (the image may be cut short).
fn table_offsets(input: &Input) -> impl Iterator<Item = usize> + '_ {
    TABLES
        .into_iter()
        .filter(move |&off| off + 36 <= input.bytes.len())
}

/// Whether the table at the start of `b` has a length of at least `min`,
/// lies within `b`, and sums to 0 over its length.
fn valid(b: &[u8], min: usize) -> bool {
    let len = u32_le(b, 4).unwrap_or(0) as usize;
    len >= min && len <= b.len() && sum(&b[..len]) == 0
}

/// The table the reader kept at `address`, checked independently: inside
/// the image, signed `sig`, at least `min` bytes, checksum 0.
fn validated<'a>(input: &'a Input, address: u64, sig: &[u8; 4], min: usize) -> &'a [u8] {
    let off = address
        .checked_sub(input.base)
        .filter(|&o| o + 8 <= input.bytes.len() as u64)
        .unwrap_or_else(|| panic!("a table at {address:#x}, outside the memory read"))
        as usize;
    let b = &input.bytes[off..];
    assert!(
        b.starts_with(sig),
        "the table at {address:#x} is not {sig:?}"
    );
    assert!(valid(b, min), "the table at {address:#x} does not validate");
    &b[..u32_le(b, 4).unwrap_or(0) as usize]
}

/// The MADT's entries as ACPI 6.5 §5.2.12 lays them out: from offset 44,
/// `Type` and `Length`, stepping by `Length`, up to the table's end.
fn independent_walk(t: &[u8]) -> Vec<Result<Entry, WalkStop>> {
    let mut v = Vec::new();
    let mut off = 44usize;
    while off < t.len() {
        let remaining = (t.len() - off) as u32;
        if remaining < 2 {
            v.push(Err(WalkStop::TrailingByte { offset: off as u32 }));
            break;
        }
        let (ty, len) = (t[off], t[off + 1]);
        if len < 2 {
            v.push(Err(WalkStop::LengthBelowHeader {
                offset: off as u32,
                length: len,
            }));
            break;
        }
        if u32::from(len) > remaining {
            v.push(Err(WalkStop::PastTable {
                offset: off as u32,
                length: len,
                remaining,
            }));
            break;
        }
        let e = &t[off..off + usize::from(len)];
        let u32_at = |at| u32_le(e, at).unwrap();
        v.push(Ok(match type_len(ty) {
            None => Entry::Other {
                entry_type: ty,
                length: len,
            },
            Some(need) if len < need => Entry::Short {
                entry_type: ty,
                length: len,
                offset: off as u32,
            },
            Some(_) => match ty {
                0 => Entry::LocalApic {
                    uid: e[2],
                    apic_id: e[3],
                    flags: u32_at(4),
                },
                1 => Entry::IoApic {
                    id: e[2],
                    address: u32_at(4),
                    gsi_base: u32_at(8),
                },
                2 => Entry::InterruptOverride {
                    bus: e[2],
                    source: e[3],
                    gsi: u32_at(4),
                    flags: u16::from_le_bytes([e[8], e[9]]),
                },
                5 => Entry::LocalApicAddressOverride {
                    address: u64_le(e, 4).unwrap(),
                },
                _ => Entry::LocalX2Apic {
                    x2apic_id: u32_at(4),
                    flags: u32_at(8),
                    uid: u32_at(12),
                },
            },
        }));
        off += usize::from(len);
    }
    v
}

/// Re-balances the RSDP's checksums and every table's over its stated
/// length (where that lies in the image), so mutated contents pass them.
fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= 36 {
        bytes[8] = 0;
        bytes[8] = 0u8.wrapping_sub(sum(&bytes[..20]));
        bytes[32] = 0;
        bytes[32] = 0u8.wrapping_sub(sum(&bytes[..36]));
    }
    for off in TABLES {
        let Some(len) = u32_le(bytes, off + 4) else {
            continue;
        };
        let end = off.saturating_add(len as usize);
        if len >= 10 && end <= bytes.len() {
            bytes[off + 9] = 0;
            bytes[off + 9] = 0u8.wrapping_sub(sum(&bytes[off..end]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_acpi_short_pass() {
        crate::short_pass::<Acpi>(3_000);
    }

    /// The generator reaches every outcome the invariants speak of: a
    /// failed root, kept tables, malformed MADT lists, pristine inputs.
    #[test]
    fn the_generator_reaches_the_interesting_cases() {
        let (mut pristine, mut root_failed, mut madt_stopped, mut hpet, mut fadt) = (0, 0, 0, 0, 0);
        for k in 0..2_000 {
            let input = Acpi::generate(&mut Gen::new(k));
            pristine += input.pristine as u32;
            let s = Acpi::check(&input);
            root_failed += (s == 1) as u32;
            madt_stopped += (s & 8 != 0) as u32;
            hpet += (s & 16 != 0) as u32;
            fadt += (s & 32 != 0) as u32;
        }
        for (what, n) in [
            ("pristine", pristine),
            ("root failed", root_failed),
            ("MADT walk stopped", madt_stopped),
            ("HPET kept", hpet),
            ("PM timer kept", fadt),
        ] {
            assert!(n >= 20, "{what}: {n} of 2000");
        }
    }
}
