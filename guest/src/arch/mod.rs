//! The machine the kernel runs on, and nothing about time: the PVH boot
//! (`boot`, the start info in [`pvh`], the command line in [`cmdline`]),
//! physical memory ([`phys`]), the CPU (`cpu`), the IDT and its dispatch
//! (`idt`, `interrupts`), the serial console (`serial`) and the way out
//! ([`exit`]). Another kernel has its own of each; nothing here is dynticks.

pub mod cmdline;
pub mod exit;
pub mod phys;
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
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;
