//! Interrupt flag and idle: the few CPU primitives the kernel needs.
//!
//! The idle primitive is `sti; hlt`: `sti` takes effect only after the next
//! instruction, so an interrupt that becomes pending between the decision to
//! sleep and the `hlt` wakes the CPU instead of being missed (the classic
//! lost-wakeup race of "enable, then halt" as two steps).

pub use x86_64::instructions::interrupts::{
    are_enabled as interrupts_enabled, disable as disable_interrupts, enable as enable_interrupts,
    without_interrupts,
};

/// Enables interrupts and halts until the next one, atomically; returns
/// after that interrupt's handler, with interrupts enabled.
///
/// Call it with interrupts disabled after checking there is nothing to do;
/// a wake-up that arrives after the check is not lost.
#[inline]
pub fn idle() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// The hypervisor named by the CPUID hypervisor leaf (0x4000_0000), if any:
/// `QEMU` under TCG, `KVM` under KVM.
pub fn hypervisor() -> Option<raw_cpuid::Hypervisor> {
    raw_cpuid::CpuId::new()
        .get_hypervisor_info()
        .map(|info| info.identify())
}

/// Disables interrupts and halts for good (an NMI would resume the loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
