//! The reader against tables built byte by byte ([`super::build`]), good
//! and malformed, in a sparse image of physical memory that refuses what
//! the guest's identity map refuses.

use super::build::{self, Table};
use super::fadt::{PmTimer, PmTimerProblem};
use super::hpet::HpetTableError;
use super::madt::{Entry, WalkStop};
use super::*;

/// The guest maps 0–4 GiB (`crate::arch::boot`).
use crate::arch::phys::{identity_range, SliceMem, MAPPED_LIMIT as FOUR_GIB};

/// Physical memory: a few byte regions; reads must fall inside one, and
/// pass the guest's identity-map check first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    regions: Vec<(u64, Vec<u8>)>,
}

impl Image {
    /// Places `bytes` at `addr`, replacing what was placed there before.
    pub(crate) fn put(&mut self, addr: u64, bytes: &[u8]) -> &mut Self {
        self.regions.retain(|(a, _)| *a != addr);
        self.regions.push((addr, bytes.to_vec()));
        self
    }
}

impl PhysMem for Image {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MapError> {
        identity_range(addr, buf.len() as u64, FOUR_GIB)?;
        let len = buf.len() as u64;
        for (base, bytes) in &self.regions {
            if addr >= *base && addr - base + len <= bytes.len() as u64 {
                let at = (addr - base) as usize;
                buf.copy_from_slice(&bytes[at..at + buf.len()]);
                return Ok(());
            }
        }
        Err(MapError::NotBacked { addr, len })
    }
}

pub(crate) const RSDP: u64 = 0x000F_59D0;
pub(crate) const RSDT: u64 = 0x07FE_0000;
pub(crate) const XSDT: u64 = 0x07FE_0800;
pub(crate) const MADT: u64 = 0x07FE_1000;
pub(crate) const HPET: u64 = 0x07FE_2000;
pub(crate) const FADT: u64 = 0x07FE_3000;
pub(crate) const OEM: [u8; 6] = *b"BOCHS ";

/// A MADT like QEMU's for one CPU: local APIC 0xFEE00000, PCAT_COMPAT,
/// LAPIC 0, I/O APIC 0 at 0xFEC00000 from GSI 0, IRQ0 → GSI 2, IRQ9 level
/// active high.
pub(crate) fn qemu_madt() -> Table {
    let t = build::madt(0xFEE0_0000, 1);
    let t = build::madt_lapic(t, 0, 0, 1);
    let t = build::madt_ioapic(t, 0, 0xFEC0_0000, 0);
    let t = build::madt_override(t, 0, 0, 2, 0);
    build::madt_override(t, 0, 9, 9, 0xD).finish()
}

/// QEMU's HPET table: block id 0x8086A201, base 0xFED00000, number 0,
/// minimum tick 128.
pub(crate) fn qemu_hpet() -> Table {
    build::hpet(0x8086_A201, 0, 0xFED0_0000, 0, 128)
}

/// QEMU's FADT PM timer fields: port 0x608 (both blocks), TMR_VAL_EXT.
pub(crate) fn qemu_fadt() -> Table {
    build::fadt(0x608, 4, 1 << 8, Some((1, 0x608)))
}

/// RSDP v1 → RSDT → MADT, HPET, FADT.
pub(crate) fn qemu_image() -> Image {
    let mut m = Image::default();
    m.put(RSDP, &build::rsdp_v1(&OEM, RSDT as u32))
        .put(
            RSDT,
            build::rsdt(&[FADT as u32, MADT as u32, HPET as u32]).as_bytes(),
        )
        .put(MADT, qemu_madt().as_bytes())
        .put(HPET, qemu_hpet().as_bytes())
        .put(FADT, qemu_fadt().as_bytes());
    m
}

fn entries(m: &Image, t: &Tables) -> Vec<Result<Entry, WalkStop>> {
    t.madt.expect("a MADT").entries(m).collect()
}

fn notes(t: &Tables) -> Vec<Note> {
    t.notes.iter().copied().collect()
}

fn table_note(signature: Signature, address: u64, problem: Problem) -> Note {
    Note {
        subject: Subject::Table { signature, address },
        problem,
    }
}

fn entry_note(root: RootKind, index: u32, address: u64, problem: Problem) -> Note {
    Note {
        subject: Subject::Entry {
            root,
            index,
            address,
        },
        problem,
    }
}

#[test]
fn a_table_set_in_one_slice_reads_as_from_its_regions() {
    // RSDP at base, RSDT at +0x40, the HPET table at +0x80.
    let base = 0x000E_0000u64;
    let mut bytes = vec![0u8; 0x100];
    bytes[..20].copy_from_slice(&build::rsdp_v1(&OEM, base as u32 + 0x40));
    let rsdt = build::rsdt(&[base as u32 + 0x80]);
    bytes[0x40..0x40 + rsdt.as_bytes().len()].copy_from_slice(rsdt.as_bytes());
    bytes[0x80..0x80 + 56].copy_from_slice(qemu_hpet().as_bytes());
    let t = read_tables(
        &SliceMem {
            base,
            bytes: &bytes,
        },
        base,
    )
    .unwrap();
    assert_eq!(t.hpet.map(|h| h.base), Some(0xFED0_0000));
    assert_eq!(t.notes.total(), 0);
}

// ---- a good table set -------------------------------------------------------

#[test]
fn a_qemu_like_table_set_reads_completely() {
    let m = qemu_image();
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.rsdp.oem_id, OEM);
    assert_eq!(t.rsdp.revision, 0);
    assert_eq!(t.root, (RootKind::Rsdt, RSDT));
    assert_eq!(t.notes.total(), 0, "{:?}", notes(&t));
    let madt = t.madt.unwrap();
    assert_eq!(madt.address(), MADT);
    assert_eq!(madt.local_apic_address, 0xFEE0_0000);
    assert!(madt.pcat_compat());
    assert_eq!(
        entries(&m, &t),
        [
            Ok(Entry::LocalApic {
                uid: 0,
                apic_id: 0,
                flags: 1
            }),
            Ok(Entry::IoApic {
                id: 0,
                address: 0xFEC0_0000,
                gsi_base: 0
            }),
            Ok(Entry::InterruptOverride {
                bus: 0,
                source: 0,
                gsi: 2,
                flags: 0
            }),
            Ok(Entry::InterruptOverride {
                bus: 0,
                source: 9,
                gsi: 9,
                flags: 0xD
            }),
        ]
    );
    assert_eq!(
        t.hpet,
        Some(HpetDescription {
            block_id: 0x8086_A201,
            base: 0xFED0_0000,
            number: 0,
            min_tick: 128,
            page_protection: 0,
        })
    );
    let fadt = t.fadt.unwrap();
    assert_eq!(
        fadt.pm_timer,
        PmTimer::Port {
            port: 0x608,
            extended: true
        }
    );
    assert!(fadt.pm_timer_32bit());
}

#[test]
fn madt_x2apic_and_address_override_entries_parse() {
    let t = build::madt(0xFEE0_0000, 0);
    let t = build::madt_x2apic(t, 0x1_0203, 1, 7);
    let t = build::madt_lapic_override(t, 0x0000_0001_FEE0_0000).finish();
    let mut m = qemu_image();
    m.put(MADT, t.as_bytes());
    let tables = read_tables(&m, RSDP).unwrap();
    assert!(!tables.madt.unwrap().pcat_compat());
    assert_eq!(
        entries(&m, &tables),
        [
            Ok(Entry::LocalX2Apic {
                x2apic_id: 0x1_0203,
                flags: 1,
                uid: 7
            }),
            Ok(Entry::LocalApicAddressOverride {
                address: 0x0000_0001_FEE0_0000
            }),
        ]
    );
}

// ---- the RSDP ---------------------------------------------------------------

#[test]
fn an_rsdp_with_a_bad_checksum_is_refused() {
    let mut r = build::rsdp_v1(&OEM, RSDT as u32);
    r[12] = r[12].wrapping_add(1); // an OEM byte: the 20 bytes now sum to 1
    let mut m = qemu_image();
    m.put(RSDP, &r);
    assert_eq!(
        read_tables(&m, RSDP),
        Err(RootError::Rsdp(RsdpError::Checksum { sum: 1 }))
    );
}

#[test]
fn an_rsdp_without_its_signature_is_refused() {
    let mut r = build::rsdp_v1(&OEM, RSDT as u32);
    r[0] = b'X';
    let mut m = qemu_image();
    m.put(RSDP, &r);
    assert_eq!(
        read_tables(&m, RSDP),
        Err(RootError::Rsdp(RsdpError::Signature))
    );
}

#[test]
fn an_rsdp_at_0_or_beyond_4_gib_is_refused() {
    let m = qemu_image();
    assert_eq!(
        read_tables(&m, 0),
        Err(RootError::Rsdp(RsdpError::Unmappable(MapError::Null)))
    );
    assert!(matches!(
        read_tables(&m, FOUR_GIB - 8),
        Err(RootError::Rsdp(RsdpError::Unmappable(
            MapError::BeyondMap { .. }
        )))
    ));
}

/// XSDT → a second HPET table, so which root was read shows.
fn with_xsdt(m: &mut Image) {
    let hpet_b = build::hpet(0x8086_A201, 0, 0xFED0_1000, 1, 128);
    m.put(0x07FE_4000, hpet_b.as_bytes())
        .put(XSDT, build::xsdt(&[MADT, 0x07FE_4000, FADT]).as_bytes());
}

#[test]
fn a_revision_2_rsdp_leads_to_the_xsdt() {
    let mut m = qemu_image();
    with_xsdt(&mut m);
    m.put(RSDP, &build::rsdp_v2(&OEM, RSDT as u32, XSDT));
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.root, (RootKind::Xsdt, XSDT));
    assert_eq!(t.hpet.unwrap().base, 0xFED0_1000);
    assert_eq!(t.notes.total(), 0);
}

#[test]
fn the_extended_checksum_covers_length_bytes() {
    // A 40-byte RSDP: the extended checksum balances all 40 bytes.
    let mut r = build::rsdp_v2(&OEM, RSDT as u32, XSDT).to_vec();
    r.extend_from_slice(&[1, 2, 3, 4]);
    r[20..24].copy_from_slice(&40u32.to_le_bytes());
    r[32] = 0;
    r[32] = build::balancing_checksum(&r);
    let mut m = qemu_image();
    with_xsdt(&mut m);
    m.put(RSDP, &r);
    assert_eq!(read_tables(&m, RSDP).unwrap().root.0, RootKind::Xsdt);
    // Balanced over the first 36 bytes only, it is wrong over 40: the
    // 4 extra bytes (sum 10) unbalance it.
    r[32] = 0;
    r[32] = build::balancing_checksum(&r[..36]);
    m.put(RSDP, &r);
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.root, (RootKind::Rsdt, RSDT));
    assert_eq!(
        notes(&t),
        [Note {
            subject: Subject::Rsdp { address: RSDP },
            problem: Problem::RsdpExtension(RsdpError::ExtendedChecksum { sum: 10 }),
        }]
    );
}

#[test]
fn a_bad_extended_checksum_or_length_falls_back_to_the_rsdt() {
    for (length, want) in [
        (20, RsdpError::TooShort { length: 20 }),
        (1 << 20, RsdpError::TooLong { length: 1 << 20 }),
    ] {
        let mut r = build::rsdp_v2(&OEM, RSDT as u32, XSDT);
        r[20..24].copy_from_slice(&(length as u32).to_le_bytes());
        r[8] = 0;
        r[8] = build::balancing_checksum(&r[..20]);
        let mut m = qemu_image();
        with_xsdt(&mut m);
        m.put(RSDP, &r);
        let t = read_tables(&m, RSDP).unwrap();
        assert_eq!(t.root, (RootKind::Rsdt, RSDT));
        assert_eq!(t.hpet.unwrap().base, 0xFED0_0000);
        assert_eq!(
            notes(&t)[0].problem,
            Problem::RsdpExtension(want),
            "length {length}"
        );
    }
}

#[test]
fn an_unusable_xsdt_falls_back_to_the_rsdt() {
    let mut m = qemu_image();
    with_xsdt(&mut m);
    let bad = build::xsdt(&[MADT, 0x07FE_4000, FADT]).poke(20, b'x');
    m.put(XSDT, bad.as_bytes());
    m.put(RSDP, &build::rsdp_v2(&OEM, RSDT as u32, XSDT));
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.root, (RootKind::Rsdt, RSDT));
    let sum = b'x'.wrapping_sub(b"DYNTICKS"[4]);
    assert_eq!(
        notes(&t),
        [table_note(
            Signature::XSDT,
            XSDT,
            Problem::XsdtUnusable(TableError::Checksum { sum })
        )]
    );
}

#[test]
fn no_root_table_is_an_error() {
    let mut m = qemu_image();
    m.put(RSDP, &build::rsdp_v1(&OEM, 0));
    assert_eq!(read_tables(&m, RSDP), Err(RootError::NoRootTable));
    m.put(RSDP, &build::rsdp_v1(&OEM, MADT as u32));
    assert_eq!(
        read_tables(&m, RSDP),
        Err(RootError::Root {
            kind: RootKind::Rsdt,
            address: MADT,
            error: TableError::Signature {
                found: Signature(*b"APIC")
            }
        })
    );
}

// ---- root table entries -----------------------------------------------------

#[test]
fn an_rsdt_entry_of_0_is_skipped_and_the_rest_read() {
    let mut m = qemu_image();
    m.put(
        RSDT,
        build::rsdt(&[0, MADT as u32, HPET as u32, FADT as u32]).as_bytes(),
    );
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(
        notes(&t),
        [entry_note(RootKind::Rsdt, 0, 0, Problem::NullEntry)]
    );
    assert!(t.madt.is_some() && t.hpet.is_some() && t.fadt.is_some());
}

#[test]
fn xsdt_entries_at_or_above_4_gib_are_skipped() {
    let mut m = qemu_image();
    // A valid HPET table really is there: the map is what refuses it.
    let high_hpet = build::hpet(0x8086_A201, 0, 0xFED0_2000, 2, 128);
    m.put(FOUR_GIB, high_hpet.as_bytes());
    let far = 0xFFFF_FFFF_FFFF_FFF0;
    m.put(XSDT, build::xsdt(&[FOUR_GIB, far, HPET, MADT]).as_bytes());
    m.put(RSDP, &build::rsdp_v2(&OEM, RSDT as u32, XSDT));
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(
        notes(&t),
        [
            entry_note(
                RootKind::Xsdt,
                0,
                FOUR_GIB,
                Problem::Table(TableError::Unmappable(MapError::BeyondMap {
                    addr: FOUR_GIB,
                    len: 36,
                    limit: FOUR_GIB
                }))
            ),
            entry_note(
                RootKind::Xsdt,
                1,
                far,
                Problem::Table(TableError::Unmappable(MapError::Overflow {
                    addr: far,
                    len: 36
                }))
            ),
        ]
    );
    assert_eq!(t.hpet.unwrap().base, 0xFED0_0000);
    assert!(t.madt.is_some());
}

#[test]
fn a_table_whose_length_runs_past_4_gib_is_skipped() {
    let mut m = qemu_image();
    let top = FOUR_GIB - 0x100;
    // The header is readable below 4 GiB; its length (512) is not.
    let t = build::hpet(0x8086_A201, 0, 0xFED0_0000, 0, 128).poke_u32(4, 512);
    let mut bytes = t.as_bytes().to_vec();
    bytes.resize(0x100, 0);
    m.put(top, &bytes);
    m.put(RSDT, build::rsdt(&[top as u32, MADT as u32]).as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    let n = notes(&t);
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0].subject,
        Subject::Table {
            signature: Signature::HPET,
            address: top
        }
    );
    assert!(
        matches!(
            n[0].problem,
            Problem::Table(TableError::Unmappable(MapError::BeyondMap { limit, .. }))
                if limit == FOUR_GIB
        ),
        "{:?}",
        n[0]
    );
    assert_eq!(t.hpet, None);
    assert!(t.madt.is_some());
}

#[test]
fn root_table_bytes_that_make_no_whole_entry_are_noted() {
    let mut m = qemu_image();
    let r = build::rsdt(&[MADT as u32, HPET as u32])
        .bytes(&[0xAA, 0xBB, 0xCC])
        .finish();
    m.put(RSDT, r.as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(
        notes(&t),
        [table_note(
            Signature::RSDT,
            RSDT,
            Problem::RootRemainder { bytes: 3 }
        )]
    );
    assert!(t.madt.is_some() && t.hpet.is_some() && t.fadt.is_none());
}

#[test]
fn a_root_table_shorter_than_its_header_is_refused() {
    let mut m = qemu_image();
    m.put(
        RSDT,
        build::rsdt(&[MADT as u32])
            .poke_u32(4, 20)
            .reseal()
            .as_bytes(),
    );
    assert_eq!(
        read_tables(&m, RSDP),
        Err(RootError::Root {
            kind: RootKind::Rsdt,
            address: RSDT,
            error: TableError::TooShort {
                length: 20,
                min: 36
            }
        })
    );
}

// ---- table headers ----------------------------------------------------------

#[test]
fn a_table_with_a_bad_checksum_is_skipped_and_the_rest_read() {
    let mut m = qemu_image();
    let bad = qemu_hpet().poke(52, 5); // HPET number 0 → 5: sum 5
    m.put(HPET, bad.as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.hpet, None);
    assert_eq!(
        notes(&t),
        [table_note(
            Signature::HPET,
            HPET,
            Problem::Table(TableError::Checksum { sum: 5 })
        )]
    );
    assert!(t.madt.is_some() && t.fadt.is_some());
}

#[test]
fn table_lengths_below_the_header_or_above_the_maximum_are_skipped() {
    for (length, want) in [
        (
            35,
            TableError::TooShort {
                length: 35,
                min: 36,
            },
        ),
        (0, TableError::TooShort { length: 0, min: 36 }),
        (
            (1 << 20) + 1,
            TableError::TooLong {
                length: (1 << 20) + 1,
            },
        ),
        (u32::MAX, TableError::TooLong { length: u32::MAX }),
    ] {
        let mut m = qemu_image();
        m.put(HPET, qemu_hpet().poke_u32(4, length).as_bytes());
        let t = read_tables(&m, RSDP).unwrap();
        assert_eq!(t.hpet, None, "length {length}");
        assert_eq!(
            notes(&t),
            [table_note(Signature::HPET, HPET, Problem::Table(want))]
        );
    }
}

#[test]
fn reads_through_a_table_stay_inside_its_length() {
    let mut m = Image::default();
    // 40 bytes of table followed by 60 more bytes of memory.
    let mut bytes = Table::sdt(b"TEST", 1).u32(7).finish().as_bytes().to_vec();
    bytes.resize(100, 0xEE);
    m.put(MADT, &bytes);
    let t = Sdt::open(&m, MADT, Some(Signature(*b"TEST"))).unwrap();
    assert_eq!(t.length(), 40);
    let mut b = [0u8; 4];
    assert_eq!(t.read(&m, 36, &mut b), Ok(()));
    assert_eq!(u32::from_le_bytes(b), 7);
    assert_eq!(
        t.read(&m, 38, &mut b),
        Err(TableError::TooShort {
            length: 40,
            min: 42
        })
    );
    let mut big = [0u8; 64];
    assert_eq!(t.read_prefix(&m, &mut big).map(<[u8]>::len), Ok(40));
}

#[test]
fn a_later_instance_serves_when_the_first_fails_validation_only() {
    let second = 0x07FE_5000;
    let mut m = qemu_image();
    m.put(
        second,
        build::hpet(0x8086_A201, 0, 0xFED0_3000, 3, 128).as_bytes(),
    );
    m.put(
        RSDT,
        build::rsdt(&[HPET as u32, second as u32, MADT as u32]).as_bytes(),
    );
    // A bad checksum: the second HPET table serves.
    m.put(HPET, qemu_hpet().poke(52, 5).as_bytes());
    assert_eq!(read_tables(&m, RSDP).unwrap().hpet.unwrap().number, 3);
    // Valid but describing an I/O-space block: no HPET, as in Linux.
    m.put(
        HPET,
        build::hpet(0x8086_A201, 1, 0xFED0_0000, 0, 128).as_bytes(),
    );
    let t = read_tables(&m, RSDP).unwrap();
    assert_eq!(t.hpet, None);
    assert_eq!(t.notes.total(), 1);
}

// ---- the MADT ---------------------------------------------------------------

fn madt_image(madt: Table) -> (Image, Tables) {
    let mut m = qemu_image();
    m.put(MADT, madt.as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    (m, t)
}

const LAPIC0: Entry = Entry::LocalApic {
    uid: 0,
    apic_id: 0,
    flags: 1,
};
const IOAPIC0: Entry = Entry::IoApic {
    id: 0,
    address: 0xFEC0_0000,
    gsi_base: 0,
};

#[test]
fn a_zero_length_madt_entry_ends_the_walk_and_keeps_what_came_before() {
    for entry_type in [0, 1, 0x7F] {
        let t = build::madt(0xFEE0_0000, 1);
        let t = build::madt_lapic(t, 0, 0, 1);
        let t = build::madt_ioapic(t, 0, 0xFEC0_0000, 0);
        let t = build::madt_raw(t, entry_type, 0, &[0; 6]);
        let t = build::madt_lapic(t, 1, 1, 1).finish();
        let (m, tables) = madt_image(t);
        // 44 + 8 + 12.
        assert_eq!(
            entries(&m, &tables),
            [
                Ok(LAPIC0),
                Ok(IOAPIC0),
                Err(WalkStop::LengthBelowHeader {
                    offset: 64,
                    length: 0
                })
            ],
            "type {entry_type}"
        );
    }
}

#[test]
fn a_madt_entry_of_length_1_ends_the_walk() {
    let t = build::madt_raw(build::madt(0xFEE0_0000, 1), 0, 1, &[0; 8]).finish();
    let (m, tables) = madt_image(t);
    assert_eq!(
        entries(&m, &tables),
        [Err(WalkStop::LengthBelowHeader {
            offset: 44,
            length: 1
        })]
    );
}

#[test]
fn a_madt_entry_longer_than_the_table_ends_the_walk() {
    let t = build::madt_lapic(build::madt(0xFEE0_0000, 1), 0, 0, 1);
    // An I/O APIC entry claiming 200 bytes, 12 of which exist.
    let t = build::madt_raw(t, 1, 200, &[0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]).finish();
    let (m, tables) = madt_image(t);
    assert_eq!(
        entries(&m, &tables),
        [
            Ok(LAPIC0),
            Err(WalkStop::PastTable {
                offset: 52,
                length: 200,
                remaining: 12
            })
        ]
    );
}

#[test]
fn a_madt_entry_shorter_than_its_type_is_skipped_alone() {
    let t = build::madt(0xFEE0_0000, 1);
    let t = build::madt_raw(t, 1, 6, &[0, 0, 0, 0]); // I/O APIC needs 12
    let t = build::madt_raw(t, 9, 12, &[0; 10]); // x2APIC needs 16
    let t = build::madt_lapic(t, 0, 0, 1).finish();
    let (m, tables) = madt_image(t);
    assert_eq!(
        entries(&m, &tables),
        [
            Ok(Entry::Short {
                entry_type: 1,
                length: 6,
                offset: 44
            }),
            Ok(Entry::Short {
                entry_type: 9,
                length: 12,
                offset: 50
            }),
            Ok(LAPIC0),
        ]
    );
}

#[test]
fn unknown_madt_entry_types_are_stepped_over() {
    let t = build::madt(0xFEE0_0000, 1);
    let t = build::madt_raw(t, 4, 6, &[0xFF, 0, 0, 1]); // local APIC NMI
    let t = build::madt_lapic(t, 0, 0, 1).finish();
    let (m, tables) = madt_image(t);
    assert_eq!(
        entries(&m, &tables),
        [
            Ok(Entry::Other {
                entry_type: 4,
                length: 6
            }),
            Ok(LAPIC0)
        ]
    );
}

#[test]
fn a_stray_byte_at_the_madt_end_ends_the_walk() {
    let t = build::madt_lapic(build::madt(0xFEE0_0000, 1), 0, 0, 1)
        .u8(0)
        .finish();
    let (m, tables) = madt_image(t);
    assert_eq!(
        entries(&m, &tables),
        [Ok(LAPIC0), Err(WalkStop::TrailingByte { offset: 52 })]
    );
}

#[test]
fn a_madt_too_short_for_its_fixed_fields_is_skipped() {
    let t = build::madt(0xFEE0_0000, 1).truncate(40).finish();
    let (_, tables) = madt_image(t);
    assert_eq!(tables.madt, None);
    assert_eq!(
        notes(&tables),
        [table_note(
            Signature::MADT,
            MADT,
            Problem::Table(TableError::TooShort {
                length: 40,
                min: 44
            })
        )]
    );
}

// ---- the HPET table ---------------------------------------------------------

fn hpet_notes(hpet: Table) -> (Option<HpetDescription>, Vec<Note>) {
    let mut m = qemu_image();
    m.put(HPET, hpet.as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    (t.hpet, notes(&t))
}

#[test]
fn an_hpet_in_io_space_is_skipped() {
    let (hpet, n) = hpet_notes(build::hpet(0x8086_A201, 1, 0xFED0_0000, 0, 128));
    assert_eq!(hpet, None);
    assert_eq!(
        n,
        [table_note(
            Signature::HPET,
            HPET,
            Problem::Table(TableError::Hpet(HpetTableError::NotSystemMemory {
                space: 1
            }))
        )]
    );
    assert_eq!(
        n[0].to_string(),
        "ACPI HPET at 0x7fe2000: event timer block in address space 1 (system I/O), \
         not system memory: skipped"
    );
}

#[test]
fn an_hpet_at_base_0_is_skipped() {
    let (hpet, n) = hpet_notes(build::hpet(0x8086_A201, 0, 0, 0, 128));
    assert_eq!(hpet, None);
    assert_eq!(
        n,
        [table_note(
            Signature::HPET,
            HPET,
            Problem::Table(TableError::Hpet(HpetTableError::BaseZero))
        )]
    );
}

#[test]
fn an_hpet_table_shorter_than_56_bytes_is_skipped() {
    let (hpet, n) = hpet_notes(qemu_hpet().truncate(40).finish());
    assert_eq!(hpet, None);
    assert_eq!(
        n,
        [table_note(
            Signature::HPET,
            HPET,
            Problem::Table(TableError::TooShort {
                length: 40,
                min: 56
            })
        )]
    );
}

#[test]
fn an_hpet_table_longer_than_56_bytes_is_read() {
    let (hpet, n) = hpet_notes(qemu_hpet().bytes(&[0xEE; 8]).finish());
    assert_eq!(hpet.unwrap().base, 0xFED0_0000);
    assert!(n.is_empty());
}

// ---- the FADT ---------------------------------------------------------------

fn fadt_of(fadt: Table) -> (Option<Fadt>, Vec<Note>) {
    let mut m = qemu_image();
    m.put(FADT, fadt.as_bytes());
    let t = read_tables(&m, RSDP).unwrap();
    (t.fadt, notes(&t))
}

#[test]
fn the_fadt_x_pm_timer_block_is_preferred_when_not_0() {
    let (f, _) = fadt_of(build::fadt(0x608, 4, 0, Some((1, 0xB008))));
    assert_eq!(
        f.unwrap().pm_timer,
        PmTimer::Port {
            port: 0xB008,
            extended: true
        }
    );
    let (f, _) = fadt_of(build::fadt(0x608, 4, 0, Some((1, 0))));
    assert_eq!(
        f.unwrap().pm_timer,
        PmTimer::Port {
            port: 0x608,
            extended: false
        }
    );
}

#[test]
fn an_acpi_1_fadt_of_116_bytes_gives_the_port_and_flags() {
    let t = build::fadt(0x408, 4, 1 << 8, Some((1, 0xB008)))
        .truncate(116)
        .finish();
    let (f, n) = fadt_of(t);
    let f = f.unwrap();
    assert_eq!(
        f.pm_timer,
        PmTimer::Port {
            port: 0x408,
            extended: false
        }
    );
    assert!(f.pm_timer_32bit());
    assert!(n.is_empty());
}

#[test]
fn fadt_fields_beyond_its_length_are_not_read() {
    // 100 bytes: PM_TMR_BLK (76) is in, PM_TMR_LEN (91) is in, Flags (112)
    // are not.
    let (f, _) = fadt_of(build::fadt(0x608, 4, 1 << 8, None).truncate(100).finish());
    let f = f.unwrap();
    assert_eq!(f.flags, None);
    assert!(!f.pm_timer_32bit());
    assert_eq!(
        f.pm_timer,
        PmTimer::Port {
            port: 0x608,
            extended: false
        }
    );
    // 88 bytes: PM_TMR_LEN is not in.
    let (f, n) = fadt_of(build::fadt(0x608, 4, 0, None).truncate(88).finish());
    let want = PmTimerProblem::BadLength { len: None };
    assert_eq!(f.unwrap().pm_timer, PmTimer::Unusable(want));
    assert_eq!(
        n,
        [table_note(Signature::FADT, FADT, Problem::PmTimer(want))]
    );
    // 60 bytes: no PM timer field at all.
    let (f, n) = fadt_of(build::fadt(0x608, 4, 0, None).truncate(60).finish());
    assert_eq!(f.unwrap().pm_timer, PmTimer::Absent);
    assert!(n.is_empty());
}

#[test]
fn unusable_fadt_pm_timer_blocks_are_noted() {
    for (t, want) in [
        (
            build::fadt(0x608, 3, 0, None),
            PmTimerProblem::BadLength { len: Some(3) },
        ),
        (
            build::fadt(0x608, 4, 0, Some((0, 0xFED0_0F00))),
            PmTimerProblem::NotIo { space: 0 },
        ),
        (
            build::fadt(0, 4, 0, Some((1, 0x1_0000))),
            PmTimerProblem::PortTooHigh { address: 0x1_0000 },
        ),
        (
            build::fadt(0x1_0008, 4, 0, None),
            PmTimerProblem::PortTooHigh { address: 0x1_0008 },
        ),
    ] {
        let (f, n) = fadt_of(t);
        assert_eq!(f.unwrap().pm_timer, PmTimer::Unusable(want));
        assert_eq!(
            n,
            [table_note(Signature::FADT, FADT, Problem::PmTimer(want))]
        );
    }
}

// ---- properties -------------------------------------------------------------

/// Reads everything `read_tables` offers, the MADT entries included, and
/// checks the walk's bound.
fn read_all(m: &Image) -> bool {
    let Ok(t) = read_tables(m, RSDP) else {
        return true;
    };
    let Some(madt) = t.madt else {
        return true;
    };
    let len = sdt::Header::read(m, madt.address()).map_or(0, |h| h.length);
    let steps = madt.entries(m).take(1 << 20).count() as u32;
    steps <= len.saturating_sub(44) / 2 + 1
}

/// Where the properties place their tables.
const TABLE_BASE: u64 = 0x07FE_1000;

/// A table with the header of signature `kind` (one of those read, a root
/// table, or another) and `body`; with `exact` its `Length` is right,
/// else it says `length`; the checksum balances the bytes placed.
fn arbitrary_table(kind: u8, length: u32, exact: bool, body: &[u8]) -> Table {
    let sigs: [&[u8; 4]; 6] = [b"APIC", b"HPET", b"FACP", b"RSDT", b"XSDT", b"SSDT"];
    let t = Table::sdt(sigs[kind as usize % sigs.len()], 1).bytes(body);
    if exact {
        t.finish()
    } else {
        t.poke_u32(4, length).reseal()
    }
}

quickcheck::quickcheck! {
    fn arbitrary_bytes_at_the_rsdp_never_panic(bytes: Vec<u8>, keep_signature: bool) -> bool {
        let mut r = bytes;
        if keep_signature {
            r.resize(r.len().max(20), 0);
            r[..8].copy_from_slice(b"RSD PTR ");
            r[8] = 0;
            r[8] = build::balancing_checksum(&r[..20]);
        }
        let mut m = qemu_image();
        m.put(RSDP, &r);
        read_all(&m)
    }

    fn arbitrary_tables_never_panic_or_loop(
        tables: Vec<(u8, u32, bool, Vec<u8>)>,
        extra_entries: Vec<u64>,
        xsdt: bool
    ) -> bool {
        let mut m = Image::default();
        let mut addrs: Vec<u64> = Vec::new();
        for (i, (kind, length, exact, body)) in tables.iter().take(8).enumerate() {
            let addr = TABLE_BASE + i as u64 * 0x1000;
            m.put(addr, arbitrary_table(*kind, *length, *exact, body).as_bytes());
            addrs.push(addr);
        }
        addrs.extend(extra_entries.iter().take(8));
        if xsdt {
            m.put(XSDT, build::xsdt(&addrs).as_bytes());
            m.put(RSDP, &build::rsdp_v2(&OEM, 0, XSDT));
        } else {
            let rsdt: Vec<u32> = addrs.iter().map(|&a| a as u32).collect();
            m.put(RSDT, build::rsdt(&rsdt).as_bytes());
            m.put(RSDP, &build::rsdp_v1(&OEM, RSDT as u32));
        }
        read_all(&m)
    }

    fn mutated_valid_tables_never_panic_or_loop(edits: Vec<(u16, u8)>, reseal: bool) -> bool {
        let mut regions = qemu_image().regions;
        let n = regions.len();
        for (at, v) in &edits {
            let (_, bytes) = &mut regions[*at as usize % n];
            let i = (*at as usize / n) % bytes.len();
            bytes[i] = *v;
        }
        if reseal {
            // Balance each table again, so that the mutations reach the
            // checks of the contents, not only the checksum's.
            for (_, bytes) in regions.iter_mut().filter(|(a, _)| *a != RSDP) {
                bytes[9] = 0;
                bytes[9] = build::balancing_checksum(bytes);
            }
        }
        read_all(&Image { regions })
    }
}
