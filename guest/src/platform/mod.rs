//! The platform's devices that are not time sources but route or describe
//! them: the firmware's ACPI tables ([`acpi`]) and the platform built from
//! them ([`firmware`]), the I/O APIC ([`ioapic`]), the legacy PIC (`pic`)
//! and local APIC access (`apic`). Every kernel has these; dynticks needs
//! from them only where each time source is and which interrupt it raises.

pub mod acpi;
pub mod firmware;
pub mod ioapic;

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod pic;
