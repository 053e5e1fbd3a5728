//! The malformed HPET tables of the matrix's firmware rows: built with the
//! guest's table builder (`guest::platform::acpi::build`), written under
//! `target/`, and handed to QEMU with `-acpitable file=…`.
//!
//! What QEMU does with such a table (hw/acpi/core.c, `acpi_table_install`;
//! hw/i386/acpi-build.c, `acpi_build`): it copies the file whole, sets the
//! header's `Length` to the file's size, recomputes the checksum, and
//! lists the table in the RSDT after its own tables. Rows run with
//! `-machine hpet=off`, so QEMU adds no HPET table of its own and ours is
//! the only one (with the HPET on, QEMU's comes first, and the first is
//! the one used, by the guest as by Linux). Because QEMU always fixes the
//! length and the checksum, a table with a bad checksum or a `Length`
//! that disagrees with its bytes cannot reach the guest this way; the
//! reader's host tests cover those (guest/src/platform/acpi/tests.rs).
//!
//! ```text
//!   case            table (QEMU's values otherwise)      where the guest refuses it
//!   base 0          BASE_ADDRESS 0                         reader: base 0
//!   I/O space       address space 1 (system I/O)           reader: not system memory
//!   truncated       40 bytes (< 56)                        reader: too short
//!   base in RAM     0x4000000 (64 MiB)                     bring-up: outside the MMIO window
//!   base unassigned 0xC0000000 (nothing there)             hpet probe (QEMU 7.2 reads 0: REV_ID 0)
//! ```

use std::path::{Path, PathBuf};

use guest::platform::acpi::build::{self, Table};

use crate::{Error, Result};

/// One malformed HPET table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BogusHpet {
    /// The event timer block at address 0.
    BaseZero,
    /// The block in system I/O space.
    IoSpace,
    /// The table cut to 40 bytes: no base address field.
    Truncated,
    /// The block in RAM (64 MiB), outside the MMIO window.
    BaseInRam,
    /// The block where nothing answers (0xC000_0000, in the MMIO window).
    BaseUnassigned,
}

impl BogusHpet {
    /// Every case, in the matrix's order.
    pub const ALL: [BogusHpet; 5] = [
        BogusHpet::BaseZero,
        BogusHpet::IoSpace,
        BogusHpet::Truncated,
        BogusHpet::BaseInRam,
        BogusHpet::BaseUnassigned,
    ];

    /// A short name (row names, file names).
    pub fn name(self) -> &'static str {
        match self {
            BogusHpet::BaseZero => "base-0",
            BogusHpet::IoSpace => "io-space",
            BogusHpet::Truncated => "truncated",
            BogusHpet::BaseInRam => "in-ram",
            BogusHpet::BaseUnassigned => "unassigned",
        }
    }

    /// The table's bytes: QEMU's HPET table (block id 0x8086A201, number
    /// 0, minimum tick 128, base 0xFED00000 in system memory) with the
    /// one defect.
    pub fn table(self) -> Table {
        let hpet = |space, base| build::hpet(0x8086_A201, space, base, 0, 128);
        match self {
            BogusHpet::BaseZero => hpet(0, 0),
            BogusHpet::IoSpace => hpet(1, 0xFED0_0000),
            BogusHpet::Truncated => hpet(0, 0xFED0_0000).truncate(40).finish(),
            BogusHpet::BaseInRam => hpet(0, 0x0400_0000),
            BogusHpet::BaseUnassigned => hpet(0, 0xC000_0000),
        }
    }

    /// What the boot table must say (a part of one of its "not used:"
    /// lines).
    pub fn expect_note(self) -> &'static str {
        match self {
            BogusHpet::BaseZero => "event timer block at address 0: skipped",
            BogusHpet::IoSpace => {
                "event timer block in address space 1 (system I/O), not system memory: skipped"
            }
            BogusHpet::Truncated => "length 40 < 56: skipped",
            BogusHpet::BaseInRam => "hpet: block at 0x4000000 outside the uncached MMIO window",
            BogusHpet::BaseUnassigned => "hpet at 0xc0000000: refused:",
        }
    }

    /// Writes the table into `dir` (created if missing) and returns the
    /// file's path.
    pub fn write(self, dir: &Path) -> Result<PathBuf> {
        let t = self.table();
        if t.overflowed() {
            return Err(Error::Other(format!(
                "HPET table {}: too long",
                self.name()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(format!("hpet-{}.dat", self.name()));
        std::fs::write(&path, t.as_bytes())
            .map_err(|e| Error::Io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_is_an_hpet_table_with_one_defect() {
        for case in BogusHpet::ALL {
            let b = case.table();
            let b = b.as_bytes();
            assert_eq!(&b[..4], b"HPET", "{case:?}");
            let length = u32::from_le_bytes(b[4..8].try_into().unwrap());
            assert_eq!(length as usize, b.len(), "{case:?}");
            assert_eq!(b.iter().fold(0u8, |s, &x| s.wrapping_add(x)), 0, "{case:?}");
            if case == BogusHpet::Truncated {
                assert_eq!(b.len(), 40);
                continue;
            }
            assert_eq!(b.len(), 56, "{case:?}");
            let (space, base) = (b[40], u64::from_le_bytes(b[44..52].try_into().unwrap()));
            let want = match case {
                BogusHpet::BaseZero => (0, 0),
                BogusHpet::IoSpace => (1, 0xFED0_0000),
                BogusHpet::BaseInRam => (0, 0x0400_0000),
                _ => (0, 0xC000_0000),
            };
            assert_eq!((space, base), want, "{case:?}");
        }
    }

    #[test]
    fn tables_are_written_where_asked() {
        let dir = std::env::temp_dir().join(format!("xtask-firmware-test-{}", std::process::id()));
        let p = BogusHpet::IoSpace.write(&dir).unwrap();
        assert_eq!(p, dir.join("hpet-io-space.dat"));
        assert_eq!(
            std::fs::read(&p).unwrap(),
            BogusHpet::IoSpace.table().as_bytes()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
