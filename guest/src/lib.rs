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
//! The source is grouped by what a reader of another kernel needs from it:
//!
//! | folder | what | copy it? |
//! |---|---|---|
//! | [`embed`] | bring-up of the sources, the tick system in a static, the interrupt handlers, the idle loop, the interrupt-safe log | **yes**: this is the embedding (EMBEDDING.md walks through it) |
//! | [`arch`] | PVH boot, start info, command line, memory, CPU, IDT and dispatch, serial, exit | no: your kernel has its own |
//! | [`platform`] | ACPI tables, the platform from them, I/O APIC, PIC, local APIC access | no: your kernel has its own |
//! | [`rig`] | the in-guest suite, boot table, result lines, expectations, the NO_HZ analysis, documented figures | no: tests only |
//!
//! The pure modules (ACPI reading, the platform, command line, PVH parsing,
//! exit codes, result lines, I/O APIC encoding, expectations, the idle
//! analysis, the log ring, the documented figures, memory) build and are
//! unit-tested on the host (`xtask` uses `result` and `exit`); the modules
//! that touch the machine exist only for `target_os = "none"`. Modules are
//! named by their folder (`guest::embed::kernel`, `guest::rig::result`).
//!
//! Cargo features select the time sources (`hpet`, `lapic`, `pit`, `tsc`,
//! `acpi_pm`) and each one's tickless capability (`hpet-nohz`, `lapic-nohz`,
//! `lapic-deadline`, `pit-nohz`); see README.md, "The guest kernel".

#![cfg_attr(not(test), no_std)]

pub mod arch;
pub mod embed;
pub mod platform;
pub mod rig;
