//! # guest — the bare-metal kernel that runs dynticks in QEMU
//!
//! A minimal x86_64 kernel booted by `qemu-system-x86_64 -kernel guest.elf`
//! through the PVH entry (the Xen `PHYS32_ENTRY` ELF note, as Linux's
//! `arch/x86/platform/pvh/head.S` uses it), embedding the whole timer
//! subsystem — clocksources, clock-event devices, the tick layer — on the
//! hardware QEMU or KVM emulates, found through the firmware's ACPI tables.
//!
//! ```text
//!   QEMU PVH loader ──► boot: pvh_start32 (32-bit, paging off, %ebx = start_info)
//!                         │  zero .bss, page tables (2 MiB pages, 0–4 GiB, MMIO uncached),
//!                         │  PAE + EFER.LME + PG, GDT, far jump
//!                         ▼
//!                       pvh_start64 ──► kmain(start_info)               (src/main.rs)
//!                         │ serial + log, boot info (pvh, cmdline), IDT, PIC masked
//!                         │ firmware::discover      ACPI: MADT, HPET, FADT
//!                         │ sources::bring_up        local APIC, I/O APIC, clocksources,
//!                         │                          event devices, TickSystem (kernel::Kernel)
//!                         │ table::print             the boot table, CONFIG line
//!                         ▼
//!                       test=… → suite (RESULT lines) │ no test → suite::demo
//!                         ▼
//!                       exit: isa-debug-exit port 0xf4 (0x10 pass, 0x11 fail)
//!
//!   interrupt ──► idt stub ──► interrupts::dispatch ──► kernel::{lapic_timer,irq0}_interrupt
//!                                                         └► TickSystem::interrupt, EOI
//! ```
//!
//! The pure modules ([`acpi`] table reading and the [`firmware`] platform
//! built from it, [`cmdline`], [`pvh`] parsing, [`exit`] codes, [`result`]
//! lines, [`ioapic`] register encoding, [`expect`] arithmetic, the [`idle`]
//! analysis, the [`klog`] ring, the [`documented`] figures, [`phys`] memory) build and are
//! unit-tested on the host (`xtask` uses [`result`] and
//! [`exit`]); the modules that touch the machine exist only for
//! `target_os = "none"`.
//!
//! Cargo features select the time sources (`hpet`, `lapic`, `pit`, `tsc`,
//! `acpi_pm`) and each one's tickless capability (`hpet-nohz`, `lapic-nohz`,
//! `lapic-deadline`, `pit-nohz`); see README.md, "The guest kernel".

#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod cmdline;
pub mod documented;
pub mod exit;
pub mod expect;
pub mod firmware;
pub mod idle;
pub mod ioapic;
pub mod klog;
pub mod phys;
pub mod pvh;
pub mod result;

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod idt;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod pic;
#[cfg(target_os = "none")]
pub mod serial;
#[cfg(target_os = "none")]
pub mod sources;
#[cfg(target_os = "none")]
pub mod suite;
#[cfg(target_os = "none")]
pub mod table;
