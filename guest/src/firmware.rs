//! What the firmware says about the machine: the ACPI tables, read with the
//! `acpi` crate (5.2, no allocator), turned into a [`Platform`].
//!
//! ```text
//!   PVH start info ── rsdp ──► AcpiTables::from_rsdp(IdentityMap, rsdp)
//!     MADT (APIC) ─► local APIC address (or its 64-bit override entry)
//!                 ─► I/O APICs: id, address, first GSI
//!                 ─► interrupt source overrides: ISA IRQ → GSI, polarity,
//!                    trigger (QEMU: IRQ0 → GSI 2, IRQ5/9/10/11 level)
//!                 ─► enabled local APICs (CPUs), PCAT_COMPAT (8259s present)
//!     HPET        ─► HPET base address, number, minimum tick
//!     FACP (FADT) ─► PM timer I/O port (ACPI PM timer clocksource)
//! ```
//!
//! Memory is identity-mapped (0–4 GiB, `crate::boot`), so the `acpi`
//! crate's handler maps nothing: a table's physical address is its address.
//!
//! Nothing is hard-coded, with one documented last resort: with no RSDP or
//! no MADT the local APIC comes from the `IA32_APIC_BASE` MSR and one I/O
//! APIC is assumed at 0xFEC0_0000 with GSI base 0 (the PC default of the
//! Intel MultiProcessor Specification 1.4, §3.6.1), and the boot table says
//! so. No HPET table means no HPET (as in Linux, which does not probe for
//! one), no FADT PM timer block means no PM timer.

use core::ptr::NonNull;

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, HpetInfo, PhysicalMapping};

use crate::ioapic::IsaRoute;
use crate::pvh::PhysAddr;

/// I/O APICs kept (QEMU has one).
pub const MAX_IOAPICS: usize = 4;
/// The I/O APIC address assumed when no MADT says (MP spec 1.4 default).
pub const LAST_RESORT_IOAPIC: u64 = 0xFEC0_0000;
/// `IA32_APIC_BASE`.
const IA32_APIC_BASE: u32 = 0x1B;
/// Identity mapping covers 0–4 GiB (`crate::boot`).
const MAPPED_LIMIT: u64 = 1 << 32;

/// The `acpi` crate's handler for identity-mapped memory.
#[derive(Debug, Clone, Copy)]
pub struct IdentityMap;

impl AcpiHandler for IdentityMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let ptr =
            NonNull::new(physical_address as *mut T).expect("ACPI: a table at physical address 0");
        assert!(
            (physical_address as u64).saturating_add(size as u64) <= MAPPED_LIMIT,
            "ACPI: table at {physical_address:#x} (+{size}) beyond the identity map"
        );
        // SAFETY: the caller (the acpi crate) guarantees a valid `T` at
        // `physical_address` (trait contract); physical == virtual below
        // 4 GiB (boot page tables), checked just above.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

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
    /// Enabled local APICs in the MADT.
    pub cpus: u32,
    /// What went wrong reading the tables, if anything.
    pub problem: Option<&'static str>,
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
pub fn discover(rsdp: Option<PhysAddr>) -> Platform {
    let mut p = Platform {
        rsdp: rsdp.map(PhysAddr::as_u64),
        oem: [0; 6],
        lapic_base: apic_base_msr(),
        lapic_origin: Origin::LastResort,
        ioapics: [None; MAX_IOAPICS],
        ioapic_origin: Origin::LastResort,
        isa: core::array::from_fn(|irq| IsaRoute::identity(irq as u8)),
        hpet: None,
        pm_timer_port: None,
        pm_timer_32bit: false,
        pcat_compat: true,
        cpus: 1,
        problem: None,
    };
    let tables = match rsdp {
        Some(addr) if addr.as_u64() < MAPPED_LIMIT => {
            // SAFETY: the loader's RSDP pointer; the crate validates the
            // signature and checksum before trusting anything behind it,
            // and all of it is in identity-mapped memory (checked).
            match unsafe { AcpiTables::from_rsdp(IdentityMap, addr.as_u64() as usize) } {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("firmware: ACPI tables unusable: {e:?}");
                    p.problem = Some("RSDP/RSDT invalid");
                    None
                }
            }
        }
        Some(_) => {
            p.problem = Some("RSDP beyond the identity map");
            None
        }
        None => {
            p.problem = Some("no RSDP from the loader");
            None
        }
    };
    if let Some(t) = &tables {
        read_madt(t, &mut p);
        read_hpet(t, &mut p);
        read_fadt(t, &mut p);
        if let Some(h) = t.headers().next() {
            p.oem = h.oem_id;
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

fn read_madt(t: &AcpiTables<IdentityMap>, p: &mut Platform) {
    let madt = match t.find_table::<Madt>() {
        Ok(m) => m,
        Err(e) => {
            log::warn!("firmware: no MADT ({e:?}): local APIC from IA32_APIC_BASE");
            p.problem = Some("no MADT");
            return;
        }
    };
    let madt = madt.get();
    p.lapic_base = madt.local_apic_address as u64;
    p.lapic_origin = Origin::Acpi;
    p.pcat_compat = madt.supports_8259();
    p.ioapic_origin = Origin::Acpi;
    let mut cpus = 0;
    let mut n_io = 0;
    for e in madt.entries() {
        match e {
            MadtEntry::LocalApic(l) if { l.flags } & 1 != 0 => cpus += 1,
            MadtEntry::LocalX2Apic(l) if { l.flags } & 1 != 0 => cpus += 1,
            MadtEntry::LocalApicAddressOverride(o) => p.lapic_base = o.local_apic_address,
            MadtEntry::IoApic(io) => {
                if n_io < MAX_IOAPICS {
                    p.ioapics[n_io] = Some(IoApicInfo {
                        id: io.io_apic_id,
                        address: io.io_apic_address as u64,
                        gsi_base: io.global_system_interrupt_base,
                    });
                    n_io += 1;
                } else {
                    log::warn!("firmware: more than {MAX_IOAPICS} I/O APICs; extra ignored");
                }
            }
            MadtEntry::InterruptSourceOverride(o) => {
                let (bus, irq, gsi, flags) = (o.bus, o.irq, o.global_system_interrupt, o.flags);
                if bus == 0 && irq < 16 {
                    p.isa[irq as usize] = IsaRoute::from_override(gsi, flags);
                } else {
                    log::warn!("firmware: interrupt override for bus {bus} irq {irq} ignored");
                }
            }
            _ => {}
        }
    }
    p.cpus = cpus.max(1);
}

fn read_hpet(t: &AcpiTables<IdentityMap>, p: &mut Platform) {
    match HpetInfo::new(t) {
        Ok(h) => {
            p.hpet = Some(HpetTable {
                base: h.base_address as u64,
                number: h.hpet_number,
                min_tick: h.clock_tick_unit,
            })
        }
        Err(e) => log::info!("firmware: no HPET table ({e:?})"),
    }
}

fn read_fadt(t: &AcpiTables<IdentityMap>, p: &mut Platform) {
    let fadt = match t.find_table::<Fadt>() {
        Ok(f) => f,
        Err(e) => {
            log::info!("firmware: no FADT ({e:?}): no ACPI PM timer");
            return;
        }
    };
    let flags = fadt.flags;
    p.pm_timer_32bit = flags.pm_timer_is_32_bit();
    match fadt.pm_timer_block() {
        Ok(Some(gas)) if gas.address_space == AddressSpace::SystemIo && gas.address <= 0xFFFF => {
            p.pm_timer_port = Some(gas.address as u16)
        }
        Ok(Some(gas)) => log::info!("firmware: PM timer not in I/O space ({gas:?}): unused"),
        Ok(None) => log::info!("firmware: the FADT has no PM timer"),
        Err(e) => log::warn!("firmware: FADT PM timer block unreadable: {e:?}"),
    }
}

/// The local APIC base from `IA32_APIC_BASE` (bits 51:12).
pub fn apic_base_msr() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC (all
    // of them); reading it has no side effect.
    let v = unsafe { x86_64::registers::model_specific::Msr::new(IA32_APIC_BASE).read() };
    v & 0x000F_FFFF_FFFF_F000
}
