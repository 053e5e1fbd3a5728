//! The legacy 8259A PIC pair: remapped out of the exception vectors, then
//! masked.
//!
//! After reset the master PIC delivers IRQ 0–7 on vectors 8–15, on top of
//! the CPU's exceptions. It is reprogrammed (ICW1–ICW4) to vectors
//! [`MASTER_VECTOR_BASE`]`..+8` and [`SLAVE_VECTOR_BASE`]`..+8`, then every
//! line is masked: timers use the local APIC and the IOAPIC. A masked PIC
//! can still raise a *spurious* IRQ 7 or 15 (vectors 0x27, 0x2F); those need
//! no EOI and land in the dispatcher's unhandled count.
//!
//! This must run before the first `sti`.

use x86_64::instructions::port::Port;

/// Vector of master IRQ 0 after the remap.
pub const MASTER_VECTOR_BASE: u8 = 0x20;
/// Vector of slave IRQ 8 after the remap.
pub const SLAVE_VECTOR_BASE: u8 = 0x28;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xA0;
const SLAVE_DATA: u16 = 0xA1;

/// ICW1: initialise, ICW4 follows (edge-triggered, cascade).
const ICW1_INIT_ICW4: u8 = 0x11;
/// ICW4: 8086 mode.
const ICW4_8086: u8 = 0x01;

/// Writes `value` to `port`, then gives an old PIC time to take it.
///
/// # Safety
///
/// `port` must be one of the 8259 ports, and the write part of a sequence
/// that leaves the PIC in a defined state.
unsafe fn write(port: u16, value: u8) {
    // SAFETY: the caller names a PIC port (see the contract). Port 0x80 is
    // the POST diagnostic port: writing it has no effect but takes ~1 µs.
    unsafe {
        Port::<u8>::new(port).write(value);
        Port::<u8>::new(0x80).write(0);
    }
}

/// Remaps both PICs to 0x20/0x28 and masks all 16 lines.
pub fn remap_and_mask() {
    // SAFETY: the full ICW1–ICW4 initialisation of both 8259s, present on
    // every PC machine QEMU emulates; it only changes which vectors the
    // lines use and ends with every line masked (OCW1 = 0xFF), so no
    // interrupt can come from the PIC on an unexpected vector.
    unsafe {
        write(MASTER_CMD, ICW1_INIT_ICW4);
        write(SLAVE_CMD, ICW1_INIT_ICW4);
        write(MASTER_DATA, MASTER_VECTOR_BASE); // ICW2: vector base
        write(SLAVE_DATA, SLAVE_VECTOR_BASE);
        write(MASTER_DATA, 1 << 2); // ICW3: a slave on IRQ 2
        write(SLAVE_DATA, 2); // ICW3: cascade identity
        write(MASTER_DATA, ICW4_8086);
        write(SLAVE_DATA, ICW4_8086);
        write(MASTER_DATA, 0xFF); // OCW1: mask all
        write(SLAVE_DATA, 0xFF);
    }
}
