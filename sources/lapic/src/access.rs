//! Reaching the local APIC: xAPIC MMIO or x2APIC MSRs, behind one trait.
//!
//! ```text
//!   timer code ──► Registers::read/write(Reg)
//!                    ├─ xAPIC:  Mmio::read32/write32(Reg::offset())      (never faults)
//!                    └─ x2APIC: MsrAccess::rdmsr/wrmsr(0x800 + offset/16) (may fault)
//! ```
//!
//! The timer code is written once against [`Registers`]; which of the two
//! it runs on is fixed when the [`Access`] is built. An embedder reaches the
//! other registers it needs (EOI, SVR, LVT LINT/Error, ISR, ICR) through the
//! same [`Access::read`] / [`Access::write`]. All registers used
//! here are 32 bits wide in both modes (the x2APIC ICR is the only 64-bit
//! one, and the timer does not use it); an x2APIC read keeps the low half.

use hw::{Mmio, MsrAccess, MsrFault};

use crate::regs::{Reg, APIC_BASE_EN, APIC_BASE_EXTD, IA32_APIC_BASE};

/// Register-level access to one CPU's local APIC (internal: the timer code
/// is written once against it).
pub(crate) trait Registers {
    /// Reads `reg`.
    fn read(&self, reg: Reg) -> Result<u32, MsrFault>;
    /// Writes `reg`.
    fn write(&self, reg: Reg, value: u32) -> Result<(), MsrFault>;
}

#[derive(Clone, Copy)]
struct XApic<'a>(&'a dyn Mmio);

#[derive(Clone, Copy)]
struct X2Apic<'a>(&'a dyn MsrAccess);

impl Registers for XApic<'_> {
    fn read(&self, reg: Reg) -> Result<u32, MsrFault> {
        Ok(self.0.read32(reg.offset()))
    }
    fn write(&self, reg: Reg, value: u32) -> Result<(), MsrFault> {
        self.0.write32(reg.offset(), value);
        Ok(())
    }
}

impl Registers for X2Apic<'_> {
    fn read(&self, reg: Reg) -> Result<u32, MsrFault> {
        self.0.rdmsr(reg.msr()).map(|v| v as u32)
    }
    fn write(&self, reg: Reg, value: u32) -> Result<(), MsrFault> {
        self.0.wrmsr(reg.msr(), value as u64)
    }
}

#[derive(Clone, Copy)]
enum Inner<'a> {
    X(XApic<'a>),
    X2(X2Apic<'a>),
}

/// How this CPU's local APIC is reached: through its xAPIC MMIO page or,
/// once x2APIC mode is on, through MSRs `0x800..=0x8FF`.
///
/// On metal, the xAPIC page is at the same address on every CPU and each
/// CPU sees its own APIC there; so an `Access` is only meaningful on the
/// CPU it was made for.
#[derive(Clone, Copy)]
pub struct Access<'a>(Inner<'a>);

impl<'a> Access<'a> {
    /// The xAPIC page (offsets as in SDM Table 10-1).
    pub fn xapic(mmio: &'a dyn Mmio) -> Self {
        Access(Inner::X(XApic(mmio)))
    }
    /// The x2APIC MSRs (the APIC must already be in x2APIC mode: see
    /// [`enable_x2apic`]).
    pub fn x2apic(msr: &'a dyn MsrAccess) -> Self {
        Access(Inner::X2(X2Apic(msr)))
    }
    /// Whether this goes through x2APIC MSRs.
    pub fn is_x2apic(&self) -> bool {
        matches!(self.0, Inner::X2(_))
    }
    /// Reads `reg` (xAPIC: never fails; x2APIC: an MSR that faults, as a
    /// read of a write-only register does, is an `Err`).
    pub fn read(&self, reg: Reg) -> Result<u32, MsrFault> {
        self.regs().read(reg)
    }
    /// Writes `reg` (x2APIC: a write the CPU refuses, to a read-only
    /// register or a non-zero EOI, is an `Err`).
    pub fn write(&self, reg: Reg, value: u32) -> Result<(), MsrFault> {
        self.regs().write(reg, value)
    }
    /// The register file.
    pub(crate) fn regs(&self) -> &dyn Registers {
        match &self.0 {
            Inner::X(r) => r,
            Inner::X2(r) => r,
        }
    }
}

impl core::fmt::Debug for Access<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.is_x2apic() { "x2APIC" } else { "xAPIC" })
    }
}

/// Switches this CPU's APIC to x2APIC mode (`IA32_APIC_BASE` EN and EXTD,
/// SDM §10.12.1): from xAPIC mode or from disabled. Already in x2APIC mode:
/// nothing to do. The caller checks `CPUID.01H:ECX[21]` first
/// ([`Capabilities::x2apic`](crate::Capabilities::x2apic)); without it the
/// write faults and the APIC stays as it was.
pub fn enable_x2apic(msr: &dyn MsrAccess) -> Result<(), MsrFault> {
    let base = msr.rdmsr(IA32_APIC_BASE)?;
    if base & (APIC_BASE_EN | APIC_BASE_EXTD) == APIC_BASE_EN | APIC_BASE_EXTD {
        return Ok(());
    }
    msr.wrmsr(IA32_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD)
}
