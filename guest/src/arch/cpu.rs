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

/// `IA32_MTRR_DEF_TYPE`.
const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
/// `IA32_MTRR_DEF_TYPE.E`: MTRRs enabled.
const MTRR_ENABLE: u64 = 1 << 11;
/// Memory type write-back.
const TYPE_WB: u64 = 6;

/// What [`ensure_write_back`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtrrs {
    /// The firmware had enabled them; the default type it set.
    Enabled(u64),
    /// They were disabled (the old `IA32_MTRR_DEF_TYPE`): enabled here.
    EnabledHere(u64),
    /// The CPU has none.
    Absent,
}

/// Makes ordinary memory write-back if the firmware did not.
///
/// With the MTRRs disabled (`IA32_MTRR_DEF_TYPE.E` = 0) *all* memory is
/// uncached (Intel SDM vol. 3A §12.11.2.1), whatever the page tables say.
/// qboot leaves them so. KVM with EPT ignores guest MTRRs, but the
/// software KVM here honours them, and the guest then runs ~500× slower
/// (a timer interrupt that runs 6 timers took 60 ms). Enabling them with
/// default type WB and no variable range leaves the MMIO window uncached
/// through the page tables (PCD|PWT → PAT UC, `crate::arch::boot`): the effective
/// type is the stronger, UC.
///
/// Call once at boot with interrupts disabled, before anything relies on
/// memory ordering with devices; caches are flushed after the change
/// (SDM §12.11.7.2, abridged: nothing is cached yet that could conflict).
pub fn ensure_write_back() -> Mtrrs {
    let has_mtrr = raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_mtrr());
    if !has_mtrr {
        return Mtrrs::Absent;
    }
    let mut msr = x86_64::registers::model_specific::Msr::new(IA32_MTRR_DEF_TYPE);
    // SAFETY: CPUID says the MTRRs exist, so IA32_MTRR_DEF_TYPE does;
    // reading it has no side effect.
    let def = unsafe { msr.read() };
    if def & MTRR_ENABLE != 0 {
        return Mtrrs::Enabled(def & 0xFF);
    }
    // SAFETY: enabling the MTRRs with default type WB and no variable or
    // fixed range (FE = 0) makes RAM write-back; device memory stays UC via
    // the page tables' PCD|PWT. `wbinvd` then writes back and invalidates
    // the caches, so no line cached under the old type survives.
    unsafe {
        msr.write(MTRR_ENABLE | TYPE_WB);
        core::arch::asm!("wbinvd", options(nostack, preserves_flags));
    }
    Mtrrs::EnabledHere(def)
}

/// The hypervisor named by the CPUID hypervisor leaf (0x4000_0000), if any:
/// `QEMU` under TCG, `KVM` under KVM.
pub fn hypervisor() -> Option<raw_cpuid::Hypervisor> {
    raw_cpuid::CpuId::new()
        .get_hypervisor_info()
        .map(|info| info.identify())
}

/// Reads this CPU's time-stamp counter, ordered after earlier loads
/// (`lfence; rdtsc`, Linux `rdtsc_ordered`).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: `lfence` and `rdtsc` have no memory effects; every x86_64 CPU
    // has both.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Disables interrupts and halts for good (an NMI would resume the loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
