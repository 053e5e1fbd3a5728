//! What the firmware says about the machine: the ACPI tables, read with
//! the bounds-checked reader [`crate::platform::acpi`], turned into a [`Platform`].
//!
//! ```text
//!   PVH start info ── rsdp ──► platform_from(IdentityMap, rsdp, IA32_APIC_BASE)
//!     acpi::read_tables: RSDP → XSDT/RSDT → MADT, HPET, FADT
//!     MADT (APIC) ─► local APIC address (or its 64-bit override entry)
//!                 ─► I/O APICs: id, address, first GSI
//!                 ─► interrupt source overrides: ISA IRQ → GSI, polarity,
//!                    trigger (QEMU: IRQ0 → GSI 2, IRQ5/9/10/11 level)
//!                 ─► enabled local APICs (CPUs), PCAT_COMPAT (8259s present)
//!     HPET        ─► HPET base address, number, minimum tick
//!     FACP (FADT) ─► PM timer I/O port (ACPI PM timer clocksource)
//!   → Platform, with acpi::Notes: every table skipped and why
//! ```
//!
//! Memory is identity-mapped (0–4 GiB, `crate::arch::boot`): `IdentityMap`
//! ([`crate::arch::phys`])
//! reads a table's physical address as its address, and refuses address 0
//! and anything that ends past 4 GiB with an error, never a panic.
//! Everything but that and the `IA32_APIC_BASE` read is pure
//! ([`platform_from`]) and tested on the host.
//!
//! A table that fails is skipped with a warning and noted
//! ([`Platform::notes`], printed in the boot table); the kernel comes up on
//! what remains (no HPET: the ACPI PM timer, the PIT and the local APIC
//! timer serve). Nothing is hard-coded, with one documented last resort:
//! with no usable RSDP or no MADT, or a MADT local APIC address of 0, the
//! local APIC comes from the `IA32_APIC_BASE` MSR; with no I/O APIC in the
//! MADT one is assumed at 0xFEC0_0000 with GSI base 0 (the PC default of
//! the Intel MultiProcessor Specification 1.4, §3.6.1); the boot table
//! says so. No HPET table means no HPET
//! (as in Linux, which does not probe for one), no FADT PM timer block
//! means no PM timer.

use core::fmt;

#[cfg(target_os = "none")]
use crate::arch::phys::IdentityMap;
#[cfg(target_os = "none")]
use crate::arch::pvh::PhysAddr;
use crate::platform::acpi::fadt::PmTimer;
use crate::platform::acpi::madt::{self, Entry};
use crate::platform::acpi::{
    self, Note, Notes, PhysMem, Problem as AcpiProblem, RootError, Subject,
};
use crate::platform::ioapic::IsaRoute;

/// I/O APICs kept (QEMU has one).
pub const MAX_IOAPICS: usize = 4;
/// The I/O APIC address assumed when no MADT says (MP spec 1.4 default).
pub const LAST_RESORT_IOAPIC: u64 = 0xFEC0_0000;
/// `IA32_APIC_BASE`.
#[cfg(target_os = "none")]
const IA32_APIC_BASE: u32 = 0x1B;
/// One I/O APIC from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicInfo {
    /// Its id.
    pub id: u8,
    /// Its register block.
    pub address: u64,
    /// The GSI of its input 0.
    pub gsi_base: u32,
}

/// The HPET as the ACPI HPET table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpetTable {
    /// The register block's address.
    pub base: u64,
    /// The HPET's sequence number.
    pub number: u8,
    /// Minimum clock ticks in periodic mode without lost interrupts.
    pub min_tick: u16,
}

/// Where a fact came from, for the boot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An ACPI table.
    Acpi,
    /// The documented last resort (see the module docs).
    LastResort,
}

/// What the firmware said.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The RSDP the loader gave, if any.
    pub rsdp: Option<u64>,
    /// The tables' OEM id (from the RSDP).
    pub oem: [u8; 6],
    /// The local APIC's xAPIC register page.
    pub lapic_base: u64,
    /// Where `lapic_base` came from.
    pub lapic_origin: Origin,
    /// The I/O APICs.
    pub ioapics: [Option<IoApicInfo>; MAX_IOAPICS],
    /// Where the I/O APICs came from.
    pub ioapic_origin: Origin,
    /// ISA IRQ 0–15 → GSI, after the interrupt source overrides.
    pub isa: [IsaRoute; 16],
    /// The HPET, if the HPET table exists.
    pub hpet: Option<HpetTable>,
    /// The ACPI PM timer's I/O port, if the FADT has one.
    pub pm_timer_port: Option<u16>,
    /// The FADT says the PM timer counts 32 bits (TMR_VAL_EXT).
    pub pm_timer_32bit: bool,
    /// The MADT says dual 8259s are present (PCAT_COMPAT).
    pub pcat_compat: bool,
    /// Enabled local APICs in the MADT, each APIC ID once (a CPU listed as
    /// both a local APIC and a local x2APIC counts once); 1 without a MADT.
    pub cpus: u32,
    /// Their APIC IDs, in MADT order: the CPUs an SMP bring-up starts.
    pub apic_ids: ApicIds,
    /// Why the tables could not be read, or the MADT is missing.
    pub problem: Option<Problem>,
    /// Each table skipped or worked around, and why.
    pub notes: Notes,
}

/// The most APIC IDs a [`Platform`] records: as many CPUs as the tick
/// layer can serve (`clockevents::MAX_CPUS`).
pub const MAX_CPUS: usize = clockevents::MAX_CPUS;

/// The APIC IDs of the enabled CPUs, each once, in MADT order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicIds {
    ids: [u32; MAX_CPUS],
    len: usize,
    /// Entries of enabled CPUs past [`MAX_CPUS`]: counted, not recorded,
    /// so a repeat among them cannot be told (there is no room to) and
    /// counts again.
    beyond: u32,
}

impl ApicIds {
    /// None yet.
    pub const fn new() -> Self {
        ApicIds {
            ids: [0; MAX_CPUS],
            len: 0,
            beyond: 0,
        }
    }

    /// Adds `id` unless it is already there.
    fn add(&mut self, id: u32) {
        if self.contains(id) {
            return;
        }
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
            }
            None => self.beyond = self.beyond.saturating_add(1),
        }
    }

    /// Whether `id` is listed.
    pub fn contains(&self, id: u32) -> bool {
        self.as_slice().contains(&id)
    }

    /// The recorded IDs.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    /// Every enabled CPU: the recorded ones and those past [`MAX_CPUS`].
    pub fn count(&self) -> u32 {
        (self.len as u32).saturating_add(self.beyond)
    }
}

impl Default for ApicIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the platform comes (partly) from the last resort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The loader gave no RSDP.
    NoRsdp,
    /// The RSDP or the root table is unusable.
    Tables(RootError),
    /// No usable MADT.
    NoMadt,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoRsdp => f.write_str("no RSDP from the loader"),
            Problem::Tables(e) => write!(f, "ACPI unusable: {e}"),
            Problem::NoMadt => f.write_str("no usable MADT"),
        }
    }
}

impl Platform {
    /// The I/O APIC that has `gsi` as an input: its index and info.
    pub fn ioapic_for(&self, gsi: u32) -> Option<(usize, IoApicInfo)> {
        self.ioapics
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| (i, a)))
            .filter(|(_, a)| a.gsi_base <= gsi)
            .max_by_key(|(_, a)| a.gsi_base)
    }
}

/// Reads the ACPI tables at `rsdp` (the PVH loader's pointer).
#[cfg(target_os = "none")]
pub fn discover(rsdp: Option<PhysAddr>) -> Platform {
    // SAFETY: the boot identity map is in place for the kernel's whole life
    // (`crate::arch::boot`), and the ACPI tables are in RAM: reading them has no
    // side effect.
    let mem = unsafe { IdentityMap::new() };
    platform_from(&mem, rsdp.map(PhysAddr::as_u64), apic_base_msr())
}

/// The platform the ACPI tables in `mem` describe, from the RSDP at
/// `rsdp`; `apic_base_msr` is the local APIC base `IA32_APIC_BASE` gives,
/// the last resort. Pure: never panics and always ends, whatever `mem`
/// holds.
pub fn platform_from<M: PhysMem + ?Sized>(
    mem: &M,
    rsdp: Option<u64>,
    apic_base_msr: u64,
) -> Platform {
    let mut p = Platform {
        rsdp,
        oem: [0; 6],
        lapic_base: apic_base_msr,
        lapic_origin: Origin::LastResort,
        ioapics: [None; MAX_IOAPICS],
        ioapic_origin: Origin::LastResort,
        isa: core::array::from_fn(|irq| IsaRoute::identity(irq as u8)),
        hpet: None,
        pm_timer_port: None,
        pm_timer_32bit: false,
        pcat_compat: true,
        cpus: 1,
        apic_ids: ApicIds::new(),
        problem: None,
        notes: Notes::default(),
    };
    let tables = match rsdp.map(|r| acpi::read_tables(mem, r)) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            log::warn!("firmware: ACPI tables unusable: {e}");
            p.problem = Some(Problem::Tables(e));
            None
        }
        None => {
            p.problem = Some(Problem::NoRsdp);
            None
        }
    };
    if let Some(t) = tables {
        p.oem = t.rsdp.oem_id;
        p.notes = t.notes;
        match t.madt {
            Some(m) => read_madt(mem, &m, &mut p),
            None => {
                log::warn!("firmware: no usable MADT: local APIC from IA32_APIC_BASE");
                p.problem = Some(Problem::NoMadt);
            }
        }
        p.hpet = t.hpet.map(|h| HpetTable {
            base: h.base,
            number: h.number,
            min_tick: h.min_tick,
        });
        if p.hpet.is_none() {
            log::info!("firmware: no usable ACPI HPET table: no HPET");
        }
        match t.fadt {
            Some(f) => {
                p.pm_timer_32bit = f.pm_timer_32bit();
                match f.pm_timer {
                    PmTimer::Port { port, .. } => p.pm_timer_port = Some(port),
                    PmTimer::Absent => log::info!("firmware: the FADT has no PM timer"),
                    // Noted by the reader.
                    PmTimer::Unusable(_) => {}
                }
            }
            None => log::info!("firmware: no usable FADT: no ACPI PM timer"),
        }
    }
    if p.ioapics.iter().all(Option::is_none) {
        log::warn!(
            "firmware: no I/O APIC in the MADT: assuming one at {LAST_RESORT_IOAPIC:#x}, GSI 0 \
             (MP spec default, last resort)"
        );
        p.ioapics[0] = Some(IoApicInfo {
            id: 0,
            address: LAST_RESORT_IOAPIC,
            gsi_base: 0,
        });
    }
    p
}

/// Reads the MADT into `p`. A local APIC address of 0 (the 32-bit field,
/// and no non-zero override entry) is no address: `p` keeps the
/// `IA32_APIC_BASE` value, as Linux keeps its default when the MADT's is 0
/// (`acpi_parse_madt`, `arch/x86/kernel/acpi/boot.c`), and a note says so.
fn read_madt<M: PhysMem + ?Sized>(mem: &M, madt: &acpi::Madt, p: &mut Platform) {
    let mut lapic = u64::from(madt.local_apic_address);
    p.pcat_compat = madt.pcat_compat();
    let subject = Subject::Table {
        signature: acpi::Signature::MADT,
        address: madt.address(),
    };
    let mut n_io = 0;
    for e in madt.entries(mem) {
        match e {
            Ok(Entry::LocalApic { flags, apic_id, .. }) => {
                if flags & madt::ENABLED != 0 {
                    p.apic_ids.add(u32::from(apic_id));
                }
            }
            Ok(Entry::LocalX2Apic {
                flags, x2apic_id, ..
            }) => {
                if flags & madt::ENABLED != 0 {
                    p.apic_ids.add(x2apic_id);
                }
            }
            Ok(Entry::LocalApicAddressOverride { address: 0 }) => {
                log::warn!("firmware: MADT local APIC address override of 0 ignored");
            }
            Ok(Entry::LocalApicAddressOverride { address }) => lapic = address,
            Ok(Entry::IoApic {
                id,
                address,
                gsi_base,
            }) => {
                if n_io < MAX_IOAPICS {
                    p.ioapics[n_io] = Some(IoApicInfo {
                        id,
                        address: u64::from(address),
                        gsi_base,
                    });
                    p.ioapic_origin = Origin::Acpi;
                    n_io += 1;
                } else {
                    log::warn!("firmware: more than {MAX_IOAPICS} I/O APICs; extra ignored");
                }
            }
            Ok(Entry::InterruptOverride {
                bus,
                source,
                gsi,
                flags,
            }) => {
                if bus == 0 && source < 16 {
                    p.isa[source as usize] = IsaRoute::from_override(gsi, flags);
                } else {
                    log::warn!("firmware: interrupt override for bus {bus} irq {source} ignored");
                }
            }
            Ok(Entry::Short {
                entry_type,
                length,
                offset,
            }) => p.notes.push(Note {
                subject,
                problem: AcpiProblem::MadtShortEntry {
                    entry_type,
                    length,
                    offset,
                },
            }),
            Ok(Entry::Other { .. }) => {}
            Err(stop) => p.notes.push(Note {
                subject,
                problem: AcpiProblem::MadtWalk(stop),
            }),
        }
    }
    p.cpus = p.apic_ids.count().max(1);
    if lapic == 0 {
        p.notes.push(Note {
            subject,
            problem: AcpiProblem::MadtLapicAddressZero,
        });
    } else {
        p.lapic_base = lapic;
        p.lapic_origin = Origin::Acpi;
    }
}

/// The local APIC base from `IA32_APIC_BASE` (bits 51:12).
#[cfg(target_os = "none")]
pub fn apic_base_msr() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC (all
    // of them); reading it has no side effect.
    let v = unsafe { x86_64::registers::model_specific::Msr::new(IA32_APIC_BASE).read() };
    v & 0x000F_FFFF_FFFF_F000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::phys::MAPPED_LIMIT;
    use crate::platform::acpi::build;
    use crate::platform::acpi::madt::WalkStop;
    use crate::platform::acpi::tests::{
        qemu_hpet, qemu_image, qemu_madt, Image, HPET, MADT, OEM, RSDP, RSDT,
    };
    use crate::platform::acpi::{MapError, RsdpError, Signature, TableError};
    use crate::platform::ioapic::{Polarity, Trigger};

    /// What the tests pretend `IA32_APIC_BASE` says: not the MADT's value,
    /// so which one was used shows.
    const MSR_BASE: u64 = 0xFEE1_0000;

    fn notes(p: &Platform) -> Vec<Note> {
        p.notes.iter().copied().collect()
    }

    #[test]
    fn a_qemu_like_table_set_gives_the_whole_platform() {
        let p = platform_from(&qemu_image(), Some(RSDP), MSR_BASE);
        assert_eq!(p.problem, None);
        assert_eq!(p.notes.total(), 0);
        assert_eq!(p.oem, OEM);
        assert_eq!((p.lapic_base, p.lapic_origin), (0xFEE0_0000, Origin::Acpi));
        assert_eq!(
            p.ioapics[0],
            Some(IoApicInfo {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0
            })
        );
        assert_eq!(p.ioapic_origin, Origin::Acpi);
        assert_eq!((p.isa[0].gsi, p.isa[0].overridden), (2, true));
        assert_eq!(
            (p.isa[9].gsi, p.isa[9].trigger, p.isa[9].polarity),
            (9, Trigger::Level, Polarity::High)
        );
        assert_eq!(p.isa[1], IsaRoute::identity(1));
        assert_eq!(
            p.hpet,
            Some(HpetTable {
                base: 0xFED0_0000,
                number: 0,
                min_tick: 128
            })
        );
        assert_eq!(p.pm_timer_port, Some(0x608));
        assert!(p.pm_timer_32bit && p.pcat_compat);
        assert_eq!(p.cpus, 1);
        assert_eq!(p.apic_ids.as_slice(), [0]);
    }

    #[test]
    fn apic_ids_are_recorded_once_each_and_disabled_cpus_left_out() {
        // CPUs 0 and 2 enabled as local APICs, 1 disabled, 2 listed again
        // as a local x2APIC (as firmware does for IDs it lists both ways),
        // and 300 only as an x2APIC.
        let t = build::madt(0xFEE0_0000, 1);
        let t = build::madt_lapic(t, 0, 0, 1);
        let t = build::madt_lapic(t, 1, 1, 0);
        let t = build::madt_lapic(t, 2, 2, 1);
        let t = build::madt_x2apic(t, 2, 1, 2);
        let t = build::madt_x2apic(t, 300, 1, 3);
        let t = build::madt_ioapic(t, 0, 0xFEC0_0000, 0).finish();
        let mut m = qemu_image();
        m.put(MADT, t.as_bytes());
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.apic_ids.as_slice(), [0, 2, 300]);
        assert_eq!(p.cpus, 3);
        assert!(p.apic_ids.contains(300) && !p.apic_ids.contains(1));
    }

    #[test]
    fn apic_ids_past_the_tick_layers_cpus_are_counted_not_recorded() {
        let mut ids = ApicIds::new();
        for id in 0..MAX_CPUS as u32 {
            ids.add(id);
            ids.add(id); // a repeat within the record: once
        }
        for id in 0..6 {
            ids.add(1_000 + id);
        }
        assert_eq!(ids.as_slice(), (0..MAX_CPUS as u32).collect::<Vec<_>>());
        assert_eq!(ids.count(), MAX_CPUS as u32 + 6);
        // Past the record a repeat cannot be recognised: it counts again.
        ids.add(1_000);
        assert_eq!(ids.count(), MAX_CPUS as u32 + 7);
    }

    #[test]
    fn a_malformed_madt_keeps_the_entries_before_the_bad_one() {
        let t = build::madt(0xFEE0_0000, 1);
        let t = build::madt_lapic(t, 0, 0, 1);
        let t = build::madt_ioapic(t, 0, 0xFEC0_0000, 0);
        let t = build::madt_raw(t, 2, 0, &[0; 8]); // zero-length override
        let t = build::madt_override(t, 0, 0, 2, 0).finish();
        let mut m = qemu_image();
        m.put(MADT, t.as_bytes());
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.ioapics[0].map(|a| a.address), Some(0xFEC0_0000));
        assert_eq!(p.cpus, 1);
        // The override after the bad entry is not read: IRQ0 stays ISA.
        assert_eq!(p.isa[0], IsaRoute::identity(0));
        assert_eq!(
            notes(&p),
            [Note {
                subject: Subject::Table {
                    signature: Signature::MADT,
                    address: MADT
                },
                problem: AcpiProblem::MadtWalk(WalkStop::LengthBelowHeader {
                    offset: 64,
                    length: 0
                })
            }]
        );
        assert_eq!(
            notes(&p)[0].to_string(),
            "ACPI APIC at 0x7fe1000: entry at offset 64 has length 0: later entries not read"
        );
    }

    #[test]
    fn a_short_madt_entry_is_noted_and_the_walk_goes_on() {
        let t = build::madt(0xFEE0_0000, 1);
        let t = build::madt_raw(t, 1, 8, &[0; 6]); // an I/O APIC needs 12
        let t = build::madt_ioapic(t, 1, 0xFEC0_1000, 0).finish();
        let mut m = qemu_image();
        m.put(MADT, t.as_bytes());
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.ioapics[0].map(|a| a.id), Some(1));
        assert_eq!(
            notes(&p)[0].problem,
            AcpiProblem::MadtShortEntry {
                entry_type: 1,
                length: 8,
                offset: 44
            }
        );
    }

    #[test]
    fn a_skipped_hpet_table_leaves_no_hpet_and_says_why() {
        let mut m = qemu_image();
        m.put(
            HPET,
            build::hpet(0x8086_A201, 1, 0xFED0_0000, 0, 128).as_bytes(),
        );
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.hpet, None);
        assert!(p.notes.about(Signature::HPET).is_some());
        // The rest is as without the HPET.
        assert_eq!(p.pm_timer_port, Some(0x608));
        assert_eq!(p.lapic_origin, Origin::Acpi);
        assert_eq!(p.problem, None);
    }

    #[test]
    fn without_usable_tables_the_last_resort_serves() {
        let m = qemu_image();
        for (rsdp, problem) in [
            (None, Problem::NoRsdp),
            (
                Some(MAPPED_LIMIT - 8),
                Problem::Tables(RootError::Rsdp(RsdpError::Unmappable(
                    MapError::BeyondMap {
                        addr: MAPPED_LIMIT - 8,
                        len: 20,
                        limit: MAPPED_LIMIT,
                    },
                ))),
            ),
        ] {
            let p = platform_from(&m, rsdp, MSR_BASE);
            assert_eq!(p.problem, Some(problem));
            assert_eq!(
                (p.lapic_base, p.lapic_origin),
                (MSR_BASE, Origin::LastResort)
            );
            assert_eq!(p.ioapics[0].map(|a| a.address), Some(LAST_RESORT_IOAPIC));
            assert_eq!(p.ioapic_origin, Origin::LastResort);
            assert_eq!((p.hpet, p.pm_timer_port), (None, None));
        }
    }

    #[test]
    fn a_bad_madt_checksum_means_no_madt() {
        let mut m = qemu_image();
        m.put(
            MADT,
            crate::platform::acpi::tests::qemu_madt()
                .poke(36, 1)
                .as_bytes(),
        );
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.problem, Some(Problem::NoMadt));
        assert_eq!(
            (p.lapic_base, p.lapic_origin),
            (MSR_BASE, Origin::LastResort)
        );
        assert_eq!(
            notes(&p)[0].problem,
            AcpiProblem::Table(TableError::Checksum { sum: 1 })
        );
        assert_eq!(p.hpet.map(|h| h.base), Some(0xFED0_0000));
    }

    #[test]
    fn a_madt_local_apic_address_of_0_falls_back_to_ia32_apic_base() {
        let madt = |lapic: u32, over: Option<u64>| {
            let t = build::madt(lapic, 1);
            let t = build::madt_ioapic(t, 0, 0xFEC0_0000, 0);
            let t = match over {
                Some(a) => build::madt_lapic_override(t, a),
                None => t,
            };
            let mut m = qemu_image();
            m.put(MADT, t.finish().as_bytes());
            platform_from(&m, Some(RSDP), MSR_BASE)
        };
        let zero_note = Note {
            subject: Subject::Table {
                signature: Signature::MADT,
                address: MADT,
            },
            problem: AcpiProblem::MadtLapicAddressZero,
        };
        // 0, no override: the MSR's base, said so.
        let p = madt(0, None);
        assert_eq!(
            (p.lapic_base, p.lapic_origin),
            (MSR_BASE, Origin::LastResort)
        );
        assert_eq!(notes(&p), [zero_note]);
        // An override of 0 changes nothing either.
        let p = madt(0, Some(0));
        assert_eq!(
            (p.lapic_base, p.lapic_origin),
            (MSR_BASE, Origin::LastResort)
        );
        let p = madt(0xFEE0_0000, Some(0));
        assert_eq!((p.lapic_base, p.lapic_origin), (0xFEE0_0000, Origin::Acpi));
        // A non-zero override serves where the 32-bit field is 0.
        let p = madt(0, Some(0x1_FEE0_0000));
        assert_eq!(
            (p.lapic_base, p.lapic_origin),
            (0x1_FEE0_0000, Origin::Acpi)
        );
        assert_eq!(p.notes.total(), 0);
    }

    #[test]
    fn a_madt_without_io_apics_gets_the_last_resort_one_and_says_so() {
        let t = build::madt_lapic(build::madt(0xFEE0_0000, 1), 0, 0, 1).finish();
        let mut m = qemu_image();
        m.put(MADT, t.as_bytes());
        let p = platform_from(&m, Some(RSDP), MSR_BASE);
        assert_eq!(p.lapic_origin, Origin::Acpi);
        assert_eq!(p.ioapics[0].map(|a| a.address), Some(LAST_RESORT_IOAPIC));
        assert_eq!(p.ioapic_origin, Origin::LastResort);
    }

    #[test]
    fn the_ioapic_for_a_gsi_is_the_one_with_the_highest_base_below_it() {
        let mut p = platform_from(&Image::default(), None, MSR_BASE);
        p.ioapics = [
            Some(IoApicInfo {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0,
            }),
            Some(IoApicInfo {
                id: 1,
                address: 0xFEC0_1000,
                gsi_base: 24,
            }),
            None,
            None,
        ];
        assert_eq!(p.ioapic_for(23).map(|(i, _)| i), Some(0));
        assert_eq!(p.ioapic_for(24).map(|(i, _)| i), Some(1));
    }

    quickcheck::quickcheck! {
        fn the_platform_from_mutated_tables_never_panics(edits: Vec<(u16, u8)>) -> bool {
            let mut m = qemu_image();
            let mut regions = [
                (RSDT, build::rsdt(&[MADT as u32, HPET as u32]).as_bytes().to_vec()),
                (MADT, qemu_madt().as_bytes().to_vec()),
                (HPET, qemu_hpet().as_bytes().to_vec()),
            ];
            for (at, v) in &edits {
                let (_, bytes) = &mut regions[*at as usize % 3];
                let i = (*at as usize / 3) % bytes.len();
                bytes[i] = *v;
                bytes[9] = 0;
                bytes[9] = build::balancing_checksum(bytes);
            }
            for (a, bytes) in &regions {
                m.put(*a, bytes);
            }
            let p = platform_from(&m, Some(RSDP), MSR_BASE);
            p.cpus >= 1 && p.ioapics.iter().any(Option::is_some)
        }
    }
}
