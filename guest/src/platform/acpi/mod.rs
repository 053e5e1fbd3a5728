//! A bounds-checked reader of the ACPI tables the timer subsystem needs:
//! the RSDP, the RSDT or XSDT, the MADT, the HPET table and the FADT.
//!
//! ```text
//!   read_tables(mem, rsdp)
//!     RSDP  "RSD PTR ", checksum over 20 bytes; rev ≥ 2: length, extended
//!           checksum over length, XSDT address             (rsdp.rs, §5.2.5)
//!     XSDT (8-byte entries) if present and valid, else RSDT (4-byte entries)
//!           every header: signature, 36 ≤ length ≤ MAX_TABLE_LEN, checksum
//!                                                          (sdt.rs, §5.2.6–5.2.8)
//!     each entry: 0 → skipped; header unreadable → skipped; the first valid
//!           APIC, HPET, FACP each kept; a failing one skipped (the next with
//!           the signature may serve)
//!     MADT  entries walked by their length, never past the table (madt.rs, §5.2.12)
//!     HPET  event timer block: system memory, base ≠ 0      (hpet.rs, HPET 1.0a §3.2.4)
//!     FADT  PM timer: X_PM_TMR_BLK, else PM_TMR_BLK; TMR_VAL_EXT (fadt.rs, §5.2.9)
//!   → Tables { rsdp, madt, hpet, fadt, notes: what was skipped and why }
//! ```
//!
//! Section numbers are those of the ACPI Specification 6.5 unless another
//! document is named.
//!
//! # Why our own reader
//!
//! The guest used the `acpi` crate 5.2 before, and it cannot be made safe
//! against bad firmware from outside: its handler must hand back a mapping
//! for every header it decides to look at (ours could only panic for a
//! table at 0 or beyond the identity map), `HpetInfo::new` asserts that the
//! HPET is in system memory (Linux warns and goes on without the HPET), and
//! its MADT iterator yields the same entry forever for an entry of length 0
//! and walks past the table for an entry longer than what remains. Its 6.x
//! releases carry an unconditional `#![feature(allocator_api)]` (nightly
//! only) and 7.0.0-pre1 is a pre-release. What we read is five fixed
//! layouts; reading them ourselves, each field only where the table's
//! length covers it, is less code than adapting a crate.
//!
//! # Memory
//!
//! Physical memory is read only through [`PhysMem`] ([`crate::arch::phys`]),
//! which refuses (with a [`MapError`], never a panic) what it cannot map.
//! The guest's implementation reads its identity map and refuses address
//! 0, anything whose end passes 4 GiB, and overflow
//! ([`crate::arch::phys::identity_range`]); the host tests implement it over byte
//! buffers. Every loop is bounded by a length the
//! code has checked: the root table's entry count comes from its length
//! (at most [`sdt::MAX_TABLE_LEN`]), the MADT walk advances by at least
//! two bytes per entry and stops at the table's end.
//!
//! # What a failure costs
//!
//! A table that fails (unmappable, bad length, bad checksum, malformed
//! contents) is skipped with a `log::warn!` naming its signature and
//! address, and recorded in [`Tables::notes`]; the rest is still read. As
//! in Linux (`drivers/acpi/tables.c`, `arch/x86/kernel/acpi/boot.c`), a
//! MADT whose entry list is malformed keeps the entries before the bad one,
//! and an unusable HPET table means no HPET (the kernel then runs on the
//! ACPI PM timer, the PIT and the local APIC timer). Only an unusable RSDP
//! or root table ends the reading ([`RootError`]).

pub mod build;
pub mod fadt;
pub mod hpet;
pub mod madt;
pub mod rsdp;
pub mod sdt;

#[cfg(test)]
pub(crate) mod tests;

use core::fmt;

pub use crate::arch::phys::{MapError, PhysMem};

pub use fadt::Fadt;
pub use hpet::HpetDescription;
pub use madt::Madt;
pub use rsdp::{Rsdp, RsdpError};
pub use sdt::{Sdt, TableError};

/// A table signature (four ASCII characters, e.g. `APIC` for the MADT).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// The MADT (§5.2.12).
    pub const MADT: Signature = Signature(*b"APIC");
    /// The HPET description table (IA-PC HPET 1.0a §3.2.4).
    pub const HPET: Signature = Signature(*b"HPET");
    /// The FADT (§5.2.9).
    pub const FADT: Signature = Signature(*b"FACP");
    /// The RSDT (§5.2.7).
    pub const RSDT: Signature = Signature(*b"RSDT");
    /// The XSDT (§5.2.8).
    pub const XSDT: Signature = Signature(*b"XSDT");
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Which root table the RSDP led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// 32-bit entries (§5.2.7).
    Rsdt,
    /// 64-bit entries (§5.2.8).
    Xsdt,
}

impl RootKind {
    /// Its signature.
    pub const fn signature(self) -> Signature {
        match self {
            RootKind::Rsdt => Signature::RSDT,
            RootKind::Xsdt => Signature::XSDT,
        }
    }

    /// Bytes per entry.
    pub const fn entry_len(self) -> u32 {
        match self {
            RootKind::Rsdt => 4,
            RootKind::Xsdt => 8,
        }
    }
}

/// What a [`Note`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The RSDP.
    Rsdp {
        /// Its physical address.
        address: u64,
    },
    /// A table whose header could be read.
    Table {
        /// Its signature.
        signature: Signature,
        /// Its physical address.
        address: u64,
    },
    /// A root-table entry that leads to no readable header.
    Entry {
        /// The root table.
        root: RootKind,
        /// The entry's index.
        index: u32,
        /// The address it holds.
        address: u64,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Subject::Rsdp { address } => write!(f, "ACPI RSDP at {address:#x}"),
            Subject::Table { signature, address } => write!(f, "ACPI {signature} at {address:#x}"),
            Subject::Entry {
                root,
                index,
                address,
            } => write!(f, "ACPI {} entry {index} ({address:#x})", root.signature()),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The entry is 0: skipped.
    NullEntry,
    /// The table could not be used: skipped.
    Table(TableError),
    /// The XSDT could not be used: the RSDT was read instead.
    XsdtUnusable(TableError),
    /// The RSDP's extended part (revision ≥ 2) is invalid: the RSDT was read.
    RsdpExtension(RsdpError),
    /// The root table's length leaves bytes that make no whole entry.
    RootRemainder {
        /// The bytes ignored.
        bytes: u32,
    },
    /// The MADT's entry walk ended early; the entries before it are kept.
    MadtWalk(madt::WalkStop),
    /// A MADT entry is shorter than its type's layout: that entry skipped.
    MadtShortEntry {
        /// Its type.
        entry_type: u8,
        /// Its length.
        length: u8,
        /// Its offset in the table.
        offset: u32,
    },
    /// The MADT's local APIC address is 0 and no override entry gives
    /// one: the `IA32_APIC_BASE` MSR was used.
    MadtLapicAddressZero,
    /// The FADT's PM timer block is stated but cannot be used.
    PmTimer(fadt::PmTimerProblem),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NullEntry => f.write_str("entry is 0: skipped"),
            Problem::Table(e) => write!(f, "{e}: skipped"),
            Problem::XsdtUnusable(e) => write!(f, "{e}: the RSDT is used instead"),
            Problem::RsdpExtension(e) => write!(f, "{e}: the RSDT is used instead"),
            Problem::RootRemainder { bytes } => {
                write!(f, "{bytes} trailing bytes make no whole entry: ignored")
            }
            Problem::MadtWalk(s) => write!(f, "{s}: later entries not read"),
            Problem::MadtShortEntry {
                entry_type,
                length,
                offset,
            } => write!(
                f,
                "entry type {entry_type} at offset {offset} has length {length}, \
                 short for its type: skipped"
            ),
            Problem::MadtLapicAddressZero => {
                f.write_str("local APIC address 0: IA32_APIC_BASE used instead")
            }
            Problem::PmTimer(p) => write!(f, "{p}: no ACPI PM timer"),
        }
    }
}

/// One thing skipped or worked around, for the log and the boot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note {
    /// What it is about.
    pub subject: Subject,
    /// What went wrong.
    pub problem: Problem,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.problem)
    }
}

/// How many [`Note`]s are kept; later ones are counted.
pub const MAX_NOTES: usize = 8;

/// What was skipped, in the order found: the first [`MAX_NOTES`] kept,
/// the rest counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    kept: [Option<Note>; MAX_NOTES],
    total: u32,
}

impl Notes {
    /// Records `note` and logs it at `warn`; past [`MAX_NOTES`] it only
    /// counts it (one line says so), so that a root table of 10^5 null
    /// entries cannot flood the console.
    pub fn push(&mut self, note: Note) {
        if let Some(slot) = self.kept.iter_mut().find(|s| s.is_none()) {
            log::warn!("firmware: {note}");
            *slot = Some(note);
        } else if self.total as usize == MAX_NOTES {
            log::warn!("firmware: more than {MAX_NOTES} ACPI problems; the rest only counted");
        }
        self.total = self.total.saturating_add(1);
    }

    /// The notes kept.
    pub fn iter(&self) -> impl Iterator<Item = &Note> {
        self.kept.iter().flatten()
    }

    /// How many were pushed (kept or not).
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Whether a note about a table with `signature` was kept.
    pub fn about(&self, signature: Signature) -> Option<&Note> {
        self.iter()
            .find(|n| matches!(n.subject, Subject::Table { signature: s, .. } if s == signature))
    }
}

/// Why no table could be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootError {
    /// The RSDP is unusable.
    Rsdp(RsdpError),
    /// The RSDP names no root table (RSDT and XSDT addresses 0).
    NoRootTable,
    /// The root table the RSDP names is unusable (the XSDT's failure, if
    /// it was tried first, is in the log).
    Root {
        /// Which one.
        kind: RootKind,
        /// Its address.
        address: u64,
        /// Why.
        error: TableError,
    },
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::Rsdp(e) => write!(f, "RSDP: {e}"),
            RootError::NoRootTable => f.write_str("the RSDP names neither RSDT nor XSDT"),
            RootError::Root {
                kind,
                address,
                error,
            } => write!(f, "{} at {address:#x}: {error}", kind.signature()),
        }
    }
}

/// Everything read, and what was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// The RSDP.
    pub rsdp: Rsdp,
    /// The root table read, and its address.
    pub root: (RootKind, u64),
    /// The MADT (its entries are read with [`Madt::entries`]).
    pub madt: Option<Madt>,
    /// The HPET table's description of the HPET.
    pub hpet: Option<HpetDescription>,
    /// What the FADT says about the PM timer.
    pub fadt: Option<Fadt>,
    /// What was skipped or worked around.
    pub notes: Notes,
}

/// Reads the tables from the RSDP at `rsdp`.
///
/// Never panics and always ends, whatever `mem` holds: this is the entry
/// point to fuzz. Fails only when neither root table is usable; every
/// other problem is a [`Note`].
pub fn read_tables<M: PhysMem + ?Sized>(mem: &M, rsdp: u64) -> Result<Tables, RootError> {
    let rsdp_info = Rsdp::read(mem, rsdp).map_err(RootError::Rsdp)?;
    let mut notes = Notes::default();
    if let Some(e) = rsdp_info.extension_error {
        notes.push(Note {
            subject: Subject::Rsdp { address: rsdp },
            problem: Problem::RsdpExtension(e),
        });
    }
    let (root, root_sdt) = open_root(mem, &rsdp_info, &mut notes)?;
    let mut t = Tables {
        rsdp: rsdp_info,
        root: (root, root_sdt.address()),
        madt: None,
        hpet: None,
        fadt: None,
        notes,
    };
    let entry_len = root.entry_len();
    let body = root_sdt.length() - sdt::HEADER_LEN;
    let count = body / entry_len;
    if body % entry_len != 0 {
        t.notes.push(Note {
            subject: Subject::Table {
                signature: root.signature(),
                address: root_sdt.address(),
            },
            problem: Problem::RootRemainder {
                bytes: body % entry_len,
            },
        });
    }
    let mut taken = [false; 3];
    for index in 0..count {
        let mut raw = [0u8; 8];
        let raw = &mut raw[..entry_len as usize];
        let offset = sdt::HEADER_LEN + index * entry_len;
        let address = match root_sdt.read(mem, offset, raw) {
            Ok(()) => raw.iter().rev().fold(0u64, |a, &b| (a << 8) | u64::from(b)),
            Err(e) => {
                // The root table was readable when its checksum was taken.
                t.notes.push(Note {
                    subject: Subject::Table {
                        signature: root.signature(),
                        address: root_sdt.address(),
                    },
                    problem: Problem::Table(e),
                });
                break;
            }
        };
        let entry = Subject::Entry {
            root,
            index,
            address,
        };
        if address == 0 {
            t.notes.push(Note {
                subject: entry,
                problem: Problem::NullEntry,
            });
            continue;
        }
        let header = match sdt::Header::read(mem, address) {
            Ok(h) => h,
            Err(e) => {
                t.notes.push(Note {
                    subject: entry,
                    problem: Problem::Table(e),
                });
                continue;
            }
        };
        // The first instance of a signature that validates is the one
        // used, as in Linux: ACPICA installs only tables that verify
        // (`drivers/acpi/acpica/tbinstal.c`) and `acpi_table_parse` takes
        // instance 0. Contents that fail do not promote a later instance.
        let slot = match header.signature {
            Signature::MADT => 0,
            Signature::HPET => 1,
            Signature::FADT => 2,
            _ => continue,
        };
        if taken[slot] {
            log::debug!(
                "firmware: a second ACPI {} at {address:#x} ignored (the first is used)",
                header.signature
            );
            continue;
        }
        match Sdt::validate(mem, address, header) {
            Ok(table) => {
                taken[slot] = true;
                t.take(mem, table);
            }
            Err(e) => t.notes.push(Note {
                subject: Subject::Table {
                    signature: header.signature,
                    address,
                },
                problem: Problem::Table(e),
            }),
        }
    }
    Ok(t)
}

impl Tables {
    /// Keeps a validated table with a wanted signature, or notes why its
    /// contents are unusable.
    fn take<M: PhysMem + ?Sized>(&mut self, mem: &M, table: Sdt) {
        let subject = Subject::Table {
            signature: table.signature(),
            address: table.address(),
        };
        let skipped = |notes: &mut Notes, e| {
            notes.push(Note {
                subject,
                problem: Problem::Table(e),
            })
        };
        match table.signature() {
            Signature::MADT => match Madt::new(mem, table) {
                Ok(m) => self.madt = Some(m),
                Err(e) => skipped(&mut self.notes, e),
            },
            Signature::HPET => match HpetDescription::read(mem, &table) {
                Ok(h) => self.hpet = Some(h),
                Err(e) => skipped(&mut self.notes, e),
            },
            Signature::FADT => match Fadt::read(mem, &table) {
                Ok(f) => {
                    if let fadt::PmTimer::Unusable(p) = f.pm_timer {
                        self.notes.push(Note {
                            subject,
                            problem: Problem::PmTimer(p),
                        });
                    }
                    self.fadt = Some(f);
                }
                Err(e) => skipped(&mut self.notes, e),
            },
            _ => {}
        }
    }
}

/// Validates the root table the RSDP leads to: the XSDT when the RSDP has
/// one and it validates, else the RSDT.
fn open_root<M: PhysMem + ?Sized>(
    mem: &M,
    rsdp: &Rsdp,
    notes: &mut Notes,
) -> Result<(RootKind, Sdt), RootError> {
    if let Some(xsdt) = rsdp.xsdt {
        match Sdt::open(mem, xsdt, Some(Signature::XSDT)) {
            Ok(t) => return Ok((RootKind::Xsdt, t)),
            Err(e) if rsdp.rsdt != 0 => notes.push(Note {
                subject: Subject::Table {
                    signature: Signature::XSDT,
                    address: xsdt,
                },
                problem: Problem::XsdtUnusable(e),
            }),
            Err(error) => {
                return Err(RootError::Root {
                    kind: RootKind::Xsdt,
                    address: xsdt,
                    error,
                })
            }
        }
    }
    let address = u64::from(rsdp.rsdt);
    if address == 0 {
        return Err(RootError::NoRootTable);
    }
    Sdt::open(mem, address, Some(Signature::RSDT))
        .map(|t| (RootKind::Rsdt, t))
        .map_err(|error| RootError::Root {
            kind: RootKind::Rsdt,
            address,
            error,
        })
}
