//! **The part to copy.** How this kernel embeds dynticks, in four files:
//!
//! - `sources`: bring-up — each time source's driver over `hw::metal`,
//!   registered with a [`tick::TickSystem`] in the order its Cargo features
//!   and the command line allow, interrupts routed;
//! - `kernel`: the tick system in a static behind one interrupt-safe lock,
//!   the interrupt handlers that call `TickSystem::interrupt` and EOI, and
//!   the idle loop (`idle_enter` / `idle_sleep` / `hlt` / `idle_wake` /
//!   `idle_exit`);
//! - `aps`: the other CPUs — each registers its own LAPIC timer and runs
//!   the same idle loop on its own CPU index;
//! - [`klog`]: an interrupt-safe log ring, because nothing prints from
//!   interrupt context.
//!
//! Everything else in the guest is the machine ([`crate::arch`],
//! [`crate::platform`]) or the test rig ([`crate::rig`]).

pub mod klog;

#[cfg(target_os = "none")]
pub mod aps;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod sources;
