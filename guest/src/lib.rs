//! # guest — the bare-metal kernel that runs dynticks in QEMU
//!
//! A minimal x86_64 kernel booted by `qemu-system-x86_64 -kernel guest.elf`
//! through the PVH entry (the Xen `PHYS32_ENTRY` ELF note, as Linux's
//! `arch/x86/platform/pvh/head.S` uses it). It brings up just enough of the
//! machine for the timer subsystem: long mode with the first 4 GiB
//! identity-mapped, a serial console, an IDT whose vectors 32–255 dispatch to
//! registered handlers, the legacy PIC masked, and a way to end the run with a
//! pass/fail status.
//!
//! ```text
//!   QEMU PVH loader ──► boot: pvh_start32 (32-bit, paging off, %ebx = start_info)
//!                         │  zero .bss, page tables (2 MiB pages, 0–4 GiB),
//!                         │  PAE + EFER.LME + PG, GDT, far jump
//!                         ▼
//!                       pvh_start64 ──► kmain(start_info)         (src/main.rs)
//!                                         │ serial + log, boot info (pvh, cmdline)
//!                                         │ idt::init, pic::remap_and_mask, sti
//!                                         ▼
//!   interrupt ──► idt stub (vector, error code) ──► interrupts::dispatch
//!                   0–31: exceptions (#BP returns, others report and fail)
//!                   32–254: registered `fn(u8)` handlers; 255: spurious
//!                                         │
//!                                         ▼
//!                       exit: isa-debug-exit port 0xf4 (0x10 pass, 0x11 fail)
//! ```
//!
//! The pure modules ([`cmdline`], [`pvh`] parsing, [`exit`] codes) build and
//! are unit-tested on the host; the modules that touch the machine exist only
//! for `target_os = "none"`.

#![cfg_attr(not(test), no_std)]

pub mod cmdline;
pub mod exit;
pub mod pvh;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod idt;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod pic;
#[cfg(target_os = "none")]
pub mod serial;
