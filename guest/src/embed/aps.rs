//! The application processors' side of the embedding: each AP, once
//! [`crate::arch::smp`] has started it, registers its own LAPIC timer with
//! the tick layer (built on that CPU: its registers are CPU-local) and
//! runs the idle loop the boot CPU runs, on its own CPU index, for good.
//!
//! ```text
//!   ap_main(i):  lapic_i = sources::ap_lapic_timer(i)   (CPU 0's bus rate, no recalibration)
//!                with(k): k.tick.register_device(lapic_i) ─► CPU i's tick device
//!                         and its HPET channel, if bring-up set one up (FSB, rated above
//!                         a LAPIC timer that stops in deep idle)
//!                READY[i]
//!                loop: ApMode::Idle  kernel::idle_until(..)  NO_HZ where the mode allows;
//!                                                              idle=deep: LAPIC off, broadcast wakes it
//!                      ApMode::Busy  kernel::halt_once()     the tick keeps running
//! ```
//!
//! The boot CPU (the tests) tells an AP what to do with [`set_mode`],
//! which sends it a wake IPI ([`kernel::WAKE_VECTOR`]) so that a halted AP
//! looks again. Timers reach an AP through the tick layer's remote calls
//! (`add_timer_from`, and the kick IPI it may ask for).
//!
//! An AP without a tick device (`lapic=notimer`, or its APIC refused the
//! timer) halts with interrupts on and takes IPIs only.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use clockevents::CpuId;

use crate::arch::{cpu, smp};
use crate::embed::{kernel, sources};
use crate::platform::apic;

/// What an AP's loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ApMode {
    /// Idle the tick layer's way (NO_HZ where the mode allows), at the
    /// kernel's idle depth ([`kernel::idle_depth`]).
    Idle = 0,
    /// Busy from the tick layer's point of view: the tick keeps running
    /// (the CPU halts between interrupts).
    Busy = 2,
}

impl ApMode {
    fn from_u8(v: u8) -> Self {
        match v {
            2 => ApMode::Busy,
            _ => ApMode::Idle,
        }
    }
}

static MODE: [AtomicU8; kernel::CPUS] = [const { AtomicU8::new(0) }; kernel::CPUS];
static READY: [AtomicBool; kernel::CPUS] = [const { AtomicBool::new(false) }; kernel::CPUS];

/// What AP `index` is told to do.
pub fn mode(index: usize) -> ApMode {
    MODE.get(index)
        .map_or(ApMode::Idle, |m| ApMode::from_u8(m.load(Ordering::Acquire)))
}

/// Tells AP `index` to run in `mode`, and wakes it to see it.
pub fn set_mode(index: usize, mode: ApMode) {
    let Some(m) = MODE.get(index) else { return };
    m.store(mode as u8, Ordering::Release);
    if let Some(id) = smp::apic_id(index) {
        apic::send_fixed(id, kernel::WAKE_VECTOR);
    }
}

/// Whether AP `index` has registered its tick device (or found it has
/// none) and runs its loop.
pub fn ready(index: usize) -> bool {
    READY.get(index).is_some_and(|r| r.load(Ordering::Acquire))
}

/// AP `index`'s life after start-up (called by `arch::smp` on the AP,
/// interrupts off, its APIC programmed and the IDT loaded).
pub fn ap_main(index: usize) -> ! {
    let cpu = CpuId::new(index as u32);
    let lapic = sources::ap_lapic_timer(index);
    let channel = sources::ap_hpet_channel(index);
    kernel::with(|k| {
        // The LAPIC timer, then this CPU's HPET channel if it has one
        // (rated above a LAPIC timer that stops in deep idle).
        for (dev, is_lapic) in [(lapic, true), (channel, false)] {
            let Some(dev) = dev else { continue };
            match k.tick.register_device(dev) {
                Ok(id) => k.set_device(index, id, is_lapic),
                Err(e) => log::warn!("aps: {cpu}: {} refused: {e:?}", dev.info().name),
            }
        }
    });
    READY[index].store(true, Ordering::Release);
    // Nothing takes a tick device away once a CPU has one, so the tick
    // system is asked only until it has.
    let mut has_device = false;
    loop {
        if !has_device {
            has_device = kernel::with(|k| k.has_tick_device()).unwrap_or(false);
            if !has_device {
                cpu::idle();
                continue;
            }
        }
        match mode(index) {
            ApMode::Busy => kernel::halt_once(),
            ApMode::Idle => kernel::idle_until(|_| mode(index) != ApMode::Idle),
        }
    }
}
