//! The boot CPU's local APIC: enabled, its LVT LINT pins programmed, and
//! EOI for every interrupt the timers raise.
//!
//! The LAPIC *timer* is the `lapic` crate's; this module owns what every
//! configuration needs, even one built without that crate: I/O APIC
//! interrupts arrive through the local APIC, which must be software-enabled
//! and must receive an EOI.
//!
//! ```text
//!   CPUID.01H:ECX[21] x2APIC? ── yes ─► IA32_APIC_BASE |= EN | EXTD
//!                                        registers: MSR 0x800 + offset/16
//!                             ── no ──► xAPIC page at the MADT's address
//!   TPR   := 0                  accept every priority class
//!   SVR   := enable | 0xFF      firmware leaves it either way (qboot: off)
//!   LINT0 := masked             ExtINT from the (masked) 8259s: unused
//!   LINT1 := NMI                as on a PC
//!   LVTERR:= ERROR_VECTOR       errors counted and logged once
//!   EOI   := 0                  after every handled interrupt
//! ```
//!
//! Registers are reached through the `lapic` crate's [`lapic::Access`] (the
//! one xAPIC/x2APIC register layer of the project, which its timer uses
//! too), over [`hw::Mmio`] (xAPIC, volatile, never a reference) or
//! [`hw::MsrAccess`] limited to the APIC MSRs that CPUID says exist
//! ([`hw::metal::MetalMsrs`]).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use hw::metal::{MetalMmio, MetalMsrs};
use lapic::regs::{IA32_APIC_BASE, IA32_TSC_DEADLINE, SVR_APIC_ENABLE};
use lapic::{Access, LvtTimer, Reg};
use raw_cpuid::CpuId;

use crate::arch::interrupts;

/// The vector of the APIC error interrupt (Linux `ERROR_APIC_VECTOR`).
pub const ERROR_VECTOR: u8 = 0xFE;
/// The spurious vector written to the SVR (ignored by the dispatcher).
pub const SPURIOUS_VECTOR: u8 = interrupts::SPURIOUS_VECTOR;

/// ICR destination shorthand "self" (bits 19:18 = 01), fixed delivery mode
/// (bits 10:8 = 000): the vector goes to this CPU only (SDM §10.6.1).
const ICR_SELF_FIXED: u32 = 0b01 << 18;
/// ICR delivery status: the xAPIC is still sending the previous IPI.
const ICR_SEND_PENDING: u32 = 1 << 12;
/// LVT mask bit (SDM §10.5.1).
const LVT_MASKED: u32 = LvtTimer::MASKED;
/// LVT delivery mode NMI (bits 10:8 = 100).
const DELIVERY_NMI: u32 = 0b100 << 8;

/// `IA32_APIC_BASE`, then the x2APIC MSR of every register `lapic::Reg`
/// names (what the guest and the `lapic` timer touch), then
/// `IA32_TSC_DEADLINE` if `N` leaves room for it.
const fn apic_msrs<const N: usize>() -> [u32; N] {
    let mut a = [IA32_TSC_DEADLINE; N];
    a[0] = IA32_APIC_BASE;
    let mut i = 0;
    while i < Reg::ALL.len() && i + 1 < N {
        a[i + 1] = Reg::ALL[i].msr();
        i += 1;
    }
    a
}
const X2APIC_MSR_COUNT: usize = Reg::ALL.len() + 1;
static MSRS_X2APIC: [u32; X2APIC_MSR_COUNT] = apic_msrs();
static MSRS_X2APIC_DEADLINE: [u32; X2APIC_MSR_COUNT + 1] = apic_msrs();
static MSRS_XAPIC: [u32; 1] = [IA32_APIC_BASE];
static MSRS_XAPIC_DEADLINE: [u32; 2] = [IA32_APIC_BASE, IA32_TSC_DEADLINE];

/// How the local APIC is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The MMIO page.
    XApic,
    /// MSRs (x2APIC mode, enabled by [`init`]).
    X2Apic,
}

impl Mode {
    /// `xAPIC` / `x2APIC`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::XApic => "xAPIC",
            Mode::X2Apic => "x2APIC",
        }
    }
}

/// What CPUID says about the APIC and the TSC-deadline MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApicCpuid {
    /// `01H:EDX[9]`.
    pub apic: bool,
    /// `01H:ECX[21]`.
    pub x2apic: bool,
    /// `01H:ECX[24]`.
    pub tsc_deadline: bool,
    /// `06H:EAX[2]`.
    pub arat: bool,
}

impl ApicCpuid {
    /// Reads CPUID.
    pub fn read() -> Self {
        let c = CpuId::new();
        let f = c.get_feature_info();
        ApicCpuid {
            apic: f.as_ref().is_some_and(|f| f.has_apic()),
            x2apic: f.as_ref().is_some_and(|f| f.has_x2apic()),
            tsc_deadline: f.as_ref().is_some_and(|f| f.has_tsc_deadline()),
            arat: c.get_thermal_power_info().is_some_and(|t| t.has_arat()),
        }
    }
}

/// Why the local APIC cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID says there is none.
    NoApic,
    /// Its page is outside the uncached MMIO window the boot code maps.
    BadAddress(u64),
    /// The error vector is taken.
    Vector,
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApicError::NoApic => f.write_str("CPUID says there is no local APIC"),
            ApicError::BadAddress(a) => {
                write!(
                    f,
                    "local APIC page {a:#x} outside the uncached window 3–4 GiB"
                )
            }
            ApicError::Vector => f.write_str("the APIC error vector is taken"),
        }
    }
}

/// The boot CPU's local APIC, once [`init`] ran.
pub struct LocalApic {
    mode: Mode,
    mmio: Option<&'static MetalMmio>,
    msrs: &'static MetalMsrs,
    id: u32,
    version: u32,
    cpuid: ApicCpuid,
    base: u64,
}

static LAPIC: spin::Once<LocalApic> = spin::Once::new();
static LAPIC_MMIO: spin::Once<MetalMmio> = spin::Once::new();
static MSRS: spin::Once<MetalMsrs> = spin::Once::new();
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Whether `base .. base + len` lies in the window the boot page tables map
/// uncached (3–4 GiB, `crate::arch::boot`).
pub fn in_mmio_window(base: u64, len: u64) -> bool {
    base >= 0xC000_0000 && base.saturating_add(len) <= 1 << 32
}

/// Enables the local APIC (x2APIC mode where CPUID offers it) and programs
/// it as the module docs say. `base` is the xAPIC page (the MADT's).
/// Call once, with interrupts disabled.
pub fn init(base: u64) -> Result<&'static LocalApic, ApicError> {
    if let Some(l) = LAPIC.get() {
        return Ok(l);
    }
    let cpuid = ApicCpuid::read();
    if !cpuid.apic {
        return Err(ApicError::NoApic);
    }
    let allowed: &'static [u32] = match (cpuid.x2apic, cpuid.tsc_deadline) {
        (true, true) => &MSRS_X2APIC_DEADLINE,
        (true, false) => &MSRS_X2APIC,
        (false, true) => &MSRS_XAPIC_DEADLINE,
        (false, false) => &MSRS_XAPIC,
    };
    // SAFETY: every MSR in `allowed` exists on this CPU: IA32_APIC_BASE with
    // the APIC (checked), the x2APIC MSRs only in the lists chosen when
    // CPUID.01H:ECX[21] is set, IA32_TSC_DEADLINE only when ECX[24] is.
    // Writing them changes interrupt delivery only, never memory.
    let msrs = MSRS.call_once(|| unsafe { MetalMsrs::new(allowed) });
    let (mode, mmio) = if cpuid.x2apic {
        // SDM §11.12.5: xAPIC → x2APIC by setting EXTD with EN set.
        if let Err(e) = lapic::enable_x2apic(msrs) {
            log::warn!("apic: x2APIC enable refused ({e:?})");
        }
        (Mode::X2Apic, None)
    } else {
        if !in_mmio_window(base, 4096) {
            return Err(ApicError::BadAddress(base));
        }
        let ptr = NonNull::new(base as *mut u8).ok_or(ApicError::BadAddress(base))?;
        // SAFETY: `base` is the local APIC page (the MADT's address), inside
        // the window the boot page tables map uncached (checked); nothing
        // else treats it as memory.
        let mmio = LAPIC_MMIO.call_once(|| unsafe { MetalMmio::new(ptr, 4096) });
        (Mode::XApic, Some(mmio))
    };
    let l = LocalApic {
        mode,
        mmio,
        msrs,
        id: 0,
        version: 0,
        cpuid,
        base,
    };
    interrupts::register(ERROR_VECTOR, error_interrupt).map_err(|_| ApicError::Vector)?;
    l.program_this_cpu();
    let id = match mode {
        Mode::XApic => l.read(Reg::Id) >> 24,
        Mode::X2Apic => l.read(Reg::Id),
    };
    let version = l.read(Reg::Version) & 0xFF;
    Ok(LAPIC.call_once(|| LocalApic { id, version, ..l }))
}

/// The local APIC, once [`init`] ran.
pub fn get() -> Option<&'static LocalApic> {
    LAPIC.get()
}

/// Signals end of interrupt for the interrupt being handled. Every handler
/// of an APIC-delivered interrupt calls it last.
#[inline]
pub fn eoi() {
    if let Some(l) = LAPIC.get() {
        l.write(Reg::Eoi, 0);
    }
}

/// Whether `vector` is in service (its ISR bit is set: delivered to the
/// CPU and not yet acknowledged by an EOI). False before [`init`].
pub fn in_service(vector: u8) -> bool {
    LAPIC.get().is_some_and(|l| {
        let (isr, bit) = Reg::isr(vector);
        l.read(isr) & bit != 0
    })
}

/// Sends `vector` to this CPU as a fixed interrupt through the ICR
/// (destination shorthand "self"), as another CPU's IPI would arrive. It is
/// delivered once interrupts are enabled and its priority class is above
/// what is in service. Does nothing before [`init`].
pub fn self_ipi(vector: u8) {
    let Some(l) = LAPIC.get() else { return };
    l.write(Reg::IcrLow, ICR_SELF_FIXED | u32::from(vector));
    if l.mode == Mode::XApic {
        // The xAPIC accepts the next command only when this one is sent
        // (SDM §11.6.1, delivery status); x2APIC has no such bit.
        for _ in 0..1_000_000 {
            if l.read(Reg::IcrLow) & ICR_SEND_PENDING == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// ICR delivery mode INIT (bits 10:8 = 101), level assert (bit 14): SDM
/// §10.6.1.
const ICR_INIT: u32 = (0b101 << 8) | (1 << 14);
/// ICR delivery mode Start-Up (bits 10:8 = 110), level assert; the vector
/// is the page the AP starts at.
const ICR_STARTUP: u32 = (0b110 << 8) | (1 << 14);
/// xAPIC ICR high half: the destination in bits 31:24 (SDM Table 10-1,
/// offset 0x310; in x2APIC mode the 64-bit ICR at MSR 0x830 holds it in
/// bits 63:32, which `lapic::Reg` does not cover: it names 32-bit registers).
const ICR_HIGH: usize = 0x310;

/// Sends the IPI `icr_low` to the CPU with APIC ID `dest` (physical
/// destination, no shorthand), waiting for an xAPIC to have sent it.
fn send_ipi(dest: u32, icr_low: u32) {
    let Some(l) = LAPIC.get() else { return };
    match (l.mode, l.mmio) {
        (Mode::XApic, Some(m)) => {
            hw::Mmio::write32(m, ICR_HIGH, dest << 24);
            l.write(Reg::IcrLow, icr_low);
            for _ in 0..1_000_000 {
                if l.read(Reg::IcrLow) & ICR_SEND_PENDING == 0 {
                    break;
                }
                core::hint::spin_loop();
            }
        }
        _ => {
            let icr = (u64::from(dest) << 32) | u64::from(icr_low);
            let _ = hw::MsrAccess::wrmsr(l.msrs, Reg::IcrLow.msr(), icr);
        }
    }
}

/// Sends the fixed interrupt `vector` to the CPU with APIC ID `dest`.
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, u32::from(vector));
}

/// Sends INIT to the CPU with APIC ID `dest` (SDM §8.4.4.1).
pub fn send_init(dest: u32) {
    send_ipi(dest, ICR_INIT);
}

/// Sends a Start-Up IPI to `dest`: it begins in real mode at `page` × 4 KiB.
pub fn send_startup(dest: u32, page: u8) {
    send_ipi(dest, ICR_STARTUP | u32::from(page));
}

/// APIC errors counted so far.
pub fn errors() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

fn error_interrupt(_vector: u8) {
    if let Some(l) = LAPIC.get() {
        l.write(Reg::Esr, 0);
        let esr = l.read(Reg::Esr);
        if ERRORS.fetch_add(1, Ordering::Relaxed) == 0 {
            log::warn!("apic: error interrupt, ESR {esr:#x} (counted, logged once)");
        }
    }
    eoi();
}

impl LocalApic {
    /// Reads `reg`; all ones if the CPU refuses (an x2APIC MSR that
    /// faults), as an unclaimed read would be.
    fn read(&self, reg: Reg) -> u32 {
        self.access().read(reg).unwrap_or(u32::MAX)
    }

    /// Writes `reg`; a write the CPU refuses is dropped (the register
    /// list is fixed, so it would be this module's bug, not the machine's).
    fn write(&self, reg: Reg, value: u32) {
        let _ = self.access().write(reg, value);
    }

    /// Register access as the `lapic` crate does it: the xAPIC page, or
    /// the x2APIC MSRs.
    pub fn access(&self) -> Access<'static> {
        match (self.mode, self.mmio) {
            (Mode::XApic, Some(m)) => Access::xapic(m),
            _ => Access::x2apic(self.msrs),
        }
    }

    /// Programs the calling CPU's local APIC as the module docs say (TPR,
    /// SVR, LINT0/LINT1, the error LVT): [`init`] does it on the boot CPU,
    /// an AP on itself as it comes up (x2APIC mode already on, if used).
    pub fn program_this_cpu(&self) {
        self.write(Reg::Tpr, 0);
        self.write(Reg::Svr, SVR_APIC_ENABLE | SPURIOUS_VECTOR as u32);
        self.write(Reg::LvtLint0, LVT_MASKED);
        self.write(Reg::LvtLint1, DELIVERY_NMI);
        self.write(Reg::LvtError, ERROR_VECTOR as u32);
        self.write(Reg::Esr, 0);
        let _ = self.read(Reg::Esr);
    }

    /// The APIC ID of the CPU that calls this (each CPU sees its own local
    /// APIC at the same address, or through its own MSRs).
    pub fn current_id(&self) -> u32 {
        match self.mode {
            Mode::XApic => self.read(Reg::Id) >> 24,
            Mode::X2Apic => self.read(Reg::Id),
        }
    }

    /// How it is reached.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Its APIC id (the I/O APIC's destination for this CPU).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Its version register's version field.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// What CPUID said.
    pub fn cpuid(&self) -> ApicCpuid {
        self.cpuid
    }
    /// The xAPIC page address (the MADT's).
    pub fn base(&self) -> u64 {
        self.base
    }
    /// The xAPIC register page, in xAPIC mode.
    pub fn mmio(&self) -> Option<&'static MetalMmio> {
        self.mmio
    }
    /// The APIC MSRs (x2APIC registers, `IA32_APIC_BASE`, and
    /// `IA32_TSC_DEADLINE` where CPUID has it).
    pub fn msrs(&self) -> &'static MetalMsrs {
        self.msrs
    }
}
