//! Building ACPI tables byte by byte, with their checksums: the inputs of
//! the reader's host tests, and the malformed HPET tables `cargo xtask
//! test` hands QEMU with `-acpitable`.
//!
//! The layouts are written out here from the specifications' tables
//! (ACPI 6.5 §5.2.5.3, §5.2.6–5.2.9, §5.2.12; IA-PC HPET 1.0a §3.2.4) as
//! literal offsets, independently of the reader's own constants, so that a
//! wrong offset in the reader fails its tests instead of agreeing with
//! itself. Nothing here checks what it is given: malformed tables are the
//! point.

/// The most bytes a [`Table`] holds; writes past it are dropped and
/// [`Table::overflowed`] says so.
pub const CAPACITY: usize = 4096;

/// The 8-bit value that makes `bytes` sum to 0 when added.
pub fn balancing_checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)))
}

/// A table being built.
#[derive(Clone)]
pub struct Table {
    bytes: [u8; CAPACITY],
    len: usize,
    overflowed: bool,
}

impl core::fmt::Debug for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

impl Table {
    /// An empty table (no header).
    pub fn empty() -> Table {
        Table {
            bytes: [0; CAPACITY],
            len: 0,
            overflowed: false,
        }
    }

    /// A table with a system description header (ACPI 6.5 §5.2.6, table
    /// 5.4): `signature`, `revision`, OEM "DYNTKS"/"DYNTICKS", OEM
    /// revision 1, creator "DYNT" revision 1; length and checksum are set
    /// by [`Table::finish`].
    pub fn sdt(signature: &[u8; 4], revision: u8) -> Table {
        Table::empty()
            .bytes(signature) //  0 Signature
            .u32(0) //             4 Length
            .u8(revision) //       8 Revision
            .u8(0) //              9 Checksum
            .bytes(b"DYNTKS") //  10 OEMID
            .bytes(b"DYNTICKS") // 16 OEM Table ID
            .u32(1) //            24 OEM Revision
            .bytes(b"DYNT") //    28 Creator ID
            .u32(1) //            32 Creator Revision
    }

    /// Appends bytes.
    pub fn bytes(mut self, b: &[u8]) -> Table {
        let room = CAPACITY - self.len;
        let n = b.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self.overflowed |= n < b.len();
        self
    }

    /// Appends a byte.
    pub fn u8(self, v: u8) -> Table {
        self.bytes(&[v])
    }

    /// Appends a little-endian `u16`.
    pub fn u16(self, v: u16) -> Table {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    pub fn u32(self, v: u32) -> Table {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a little-endian `u64`.
    pub fn u64(self, v: u64) -> Table {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a Generic Address Structure (ACPI 6.5 §5.2.3.2):
    /// address space, bit width, bit offset 0, access size `access`,
    /// address.
    pub fn gas(self, space: u8, bit_width: u8, access: u8, address: u64) -> Table {
        self.u8(space).u8(bit_width).u8(0).u8(access).u64(address)
    }

    /// Overwrites the byte at `offset` (if the table has one there).
    pub fn poke(mut self, offset: usize, v: u8) -> Table {
        if offset < self.len {
            self.bytes[offset] = v;
        }
        self
    }

    /// Overwrites the little-endian `u32` at `offset`.
    pub fn poke_u32(self, offset: usize, v: u32) -> Table {
        let b = v.to_le_bytes();
        (0..4).fold(self, |t, i| t.poke(offset + i, b[i]))
    }

    /// Keeps the first `len` bytes.
    pub fn truncate(mut self, len: usize) -> Table {
        self.len = self.len.min(len);
        self
    }

    /// Sets the header's `Length` to the bytes written and the checksum
    /// (offset 9) so that they sum to 0.
    pub fn finish(self) -> Table {
        let len = self.len as u32;
        self.poke_u32(4, len).reseal()
    }

    /// Recomputes only the checksum (offset 9) over the bytes written,
    /// keeping whatever `Length` says.
    pub fn reseal(self) -> Table {
        let t = self.poke(9, 0);
        let c = balancing_checksum(t.as_bytes());
        t.poke(9, c)
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Whether a write did not fit in [`CAPACITY`].
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

/// An ACPI 1.0 RSDP (ACPI 6.5 §5.2.5.3): signature, checksum
/// over the 20 bytes, OEM id, revision 0, RSDT address.
pub fn rsdp_v1(oem: &[u8; 6], rsdt: u32) -> [u8; 20] {
    let mut r = [0u8; 20];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(oem);
    r[15] = 0;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    r[8] = balancing_checksum(&r);
    r
}

/// An ACPI 2.0+ RSDP (revision 2, length 36): both checksums set.
pub fn rsdp_v2(oem: &[u8; 6], rsdt: u32, xsdt: u64) -> [u8; 36] {
    let mut r = [0u8; 36];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(oem);
    r[15] = 2;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    r[8] = balancing_checksum(&r[..20]);
    r[32] = balancing_checksum(&r);
    r
}

/// An RSDT (§5.2.7): the header, then 32-bit entries.
pub fn rsdt(entries: &[u32]) -> Table {
    entries
        .iter()
        .fold(Table::sdt(b"RSDT", 1), |t, &e| t.u32(e))
        .finish()
}

/// An XSDT (§5.2.8): the header, then 64-bit entries.
pub fn xsdt(entries: &[u64]) -> Table {
    entries
        .iter()
        .fold(Table::sdt(b"XSDT", 1), |t, &e| t.u64(e))
        .finish()
}

/// A MADT (§5.2.12) without entries: local APIC address at 36,
/// flags at 40. Add entries with the `madt_*` functions, then
/// [`Table::finish`].
pub fn madt(local_apic: u32, flags: u32) -> Table {
    Table::sdt(b"APIC", 5).u32(local_apic).u32(flags)
}

/// A Processor Local APIC entry (§5.2.12.2): type 0, length 8.
pub fn madt_lapic(t: Table, uid: u8, apic_id: u8, flags: u32) -> Table {
    t.u8(0).u8(8).u8(uid).u8(apic_id).u32(flags)
}

/// An I/O APIC entry (§5.2.12.3): type 1, length 12.
pub fn madt_ioapic(t: Table, id: u8, address: u32, gsi_base: u32) -> Table {
    t.u8(1).u8(12).u8(id).u8(0).u32(address).u32(gsi_base)
}

/// An Interrupt Source Override entry (§5.2.12.5): type 2,
/// length 10.
pub fn madt_override(t: Table, bus: u8, source: u8, gsi: u32, flags: u16) -> Table {
    t.u8(2).u8(10).u8(bus).u8(source).u32(gsi).u16(flags)
}

/// A Local APIC Address Override entry (§5.2.12.8): type 5,
/// length 12.
pub fn madt_lapic_override(t: Table, address: u64) -> Table {
    t.u8(5).u8(12).u16(0).u64(address)
}

/// A Processor Local x2APIC entry (§5.2.12.12): type 9,
/// length 16.
pub fn madt_x2apic(t: Table, x2apic_id: u32, flags: u32, uid: u32) -> Table {
    t.u8(9).u8(16).u16(0).u32(x2apic_id).u32(flags).u32(uid)
}

/// An entry of any type and stated length, with `body` after its two
/// header bytes (malformed entries).
pub fn madt_raw(t: Table, entry_type: u8, length: u8, body: &[u8]) -> Table {
    t.u8(entry_type).u8(length).bytes(body)
}

/// An HPET description table (IA-PC HPET 1.0a §3.2.4), 56 bytes:
/// event timer block id at 36, the base address GAS at 40 (64-bit
/// register width, as QEMU writes it), HPET number at 52, minimum tick at
/// 53, page protection 0 at 55.
pub fn hpet(block_id: u32, space: u8, base: u64, number: u8, min_tick: u16) -> Table {
    Table::sdt(b"HPET", 1)
        .u32(block_id)
        .gas(space, 64, 0, base)
        .u8(number)
        .u16(min_tick)
        .u8(0)
        .finish()
}

/// A FADT (ACPI 6.5 §5.2.9), revision 6, 276 bytes, all zero
/// but the PM timer fields: `PM_TMR_BLK` at 76, `PM_TMR_LEN` at 91,
/// `Flags` at 112 and, when given, `X_PM_TMR_BLK` at 208 (space, 32-bit
/// width, address).
pub fn fadt(pm_tmr_blk: u32, pm_tmr_len: u8, flags: u32, x_pm_tmr: Option<(u8, u64)>) -> Table {
    let t = Table::sdt(b"FACP", 6).bytes(&[0; 76 - 36]).u32(pm_tmr_blk); // → 80
    let t = t.bytes(&[0; 91 - 80]).u8(pm_tmr_len); // → 92
    let t = t.bytes(&[0; 112 - 92]).u32(flags); // → 116
    let t = t.bytes(&[0; 208 - 116]);
    let t = match x_pm_tmr {
        Some((space, address)) => t.gas(space, 32, 3, address),
        None => t.bytes(&[0; 12]),
    }; // → 220
    t.bytes(&[0; 276 - 220]).finish()
}
