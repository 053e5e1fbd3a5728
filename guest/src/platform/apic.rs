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
//! Registers are only reached through [`hw::Mmio`] (xAPIC, volatile, never
//! a reference) or [`hw::MsrAccess`] limited to the APIC MSRs that CPUID
//! says exist ([`hw::metal::MetalMsrs`]).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use hw::metal::{MetalMmio, MetalMsrs};
use hw::{Mmio, MsrAccess};
use raw_cpuid::CpuId;

use crate::arch::interrupts;

/// The vector of the APIC error interrupt (Linux `ERROR_APIC_VECTOR`).
pub const ERROR_VECTOR: u8 = 0xFE;
/// The spurious vector written to the SVR (ignored by the dispatcher).
pub const SPURIOUS_VECTOR: u8 = interrupts::SPURIOUS_VECTOR;

/// `IA32_APIC_BASE`.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// `IA32_TSC_DEADLINE`.
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;

// xAPIC register offsets (Intel SDM vol. 3A, table 11-1).
const ID: usize = 0x20;
const VERSION: usize = 0x30;
const TPR: usize = 0x80;
const EOI: usize = 0xB0;
const SVR: usize = 0xF0;
/// The first of the eight 32-bit in-service registers (ISR 0–7, 0x100 apart
/// by 0x10): bit `v % 32` of register `v / 32` is vector `v`.
const ISR0: usize = 0x100;
const ESR: usize = 0x280;
/// The interrupt command register, low half (xAPIC; the whole 64-bit
/// register is MSR 0x830 in x2APIC mode).
const ICR_LOW: usize = 0x300;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_ERROR: usize = 0x370;

const SVR_ENABLE: u32 = 1 << 8;
/// ICR destination shorthand "self" (bits 19:18 = 01), fixed delivery mode
/// (bits 10:8 = 000): the vector goes to this CPU only.
const ICR_SELF_FIXED: u32 = 0b01 << 18;
/// ICR delivery status: the xAPIC is still sending the previous IPI.
const ICR_SEND_PENDING: u32 = 1 << 12;
const LVT_MASKED: u32 = 1 << 16;
const DELIVERY_NMI: u32 = 0b100 << 8;

const fn x2(offset: usize) -> u32 {
    0x800 + (offset / 16) as u32
}

/// Every x2APIC MSR the guest and the `lapic` crate touch, and
/// `IA32_APIC_BASE`.
const X2APIC_MSRS: [u32; 23] = [
    IA32_APIC_BASE,
    x2(ID),
    x2(VERSION),
    x2(TPR),
    x2(EOI),
    x2(SVR),
    x2(ISR0),
    x2(ISR0 + 0x10),
    x2(ISR0 + 0x20),
    x2(ISR0 + 0x30),
    x2(ISR0 + 0x40),
    x2(ISR0 + 0x50),
    x2(ISR0 + 0x60),
    x2(ISR0 + 0x70),
    x2(ESR),
    x2(ICR_LOW),
    0x832, // LVT timer
    x2(LVT_LINT0),
    x2(LVT_LINT1),
    x2(LVT_ERROR),
    0x838, // timer initial count
    0x839, // timer current count
    0x83E, // timer divide configuration
];
static MSRS_X2APIC: [u32; 23] = X2APIC_MSRS;
static MSRS_X2APIC_DEADLINE: [u32; 24] = {
    let mut a = [IA32_TSC_DEADLINE; 24];
    let mut i = 0;
    while i < X2APIC_MSRS.len() {
        a[i] = X2APIC_MSRS[i];
        i += 1;
    }
    a
};
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
        let cur = msrs.rdmsr(IA32_APIC_BASE).unwrap_or(0);
        if cur & (APIC_BASE_EN | APIC_BASE_EXTD) != APIC_BASE_EN | APIC_BASE_EXTD {
            // SDM §11.12.5: xAPIC → x2APIC by setting EXTD with EN set.
            let _ = msrs.wrmsr(IA32_APIC_BASE, cur | APIC_BASE_EN | APIC_BASE_EXTD);
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
    l.write(TPR, 0);
    l.write(SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    l.write(LVT_LINT0, LVT_MASKED);
    l.write(LVT_LINT1, DELIVERY_NMI);
    l.write(LVT_ERROR, ERROR_VECTOR as u32);
    l.write(ESR, 0);
    let _ = l.read(ESR);
    let id = match mode {
        Mode::XApic => l.read(ID) >> 24,
        Mode::X2Apic => l.read(ID),
    };
    let version = l.read(VERSION) & 0xFF;
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
        l.write(EOI, 0);
    }
}

/// Whether `vector` is in service (its ISR bit is set: delivered to the
/// CPU and not yet acknowledged by an EOI). False before [`init`].
pub fn in_service(vector: u8) -> bool {
    LAPIC.get().is_some_and(|l| {
        let v = usize::from(vector);
        l.read(ISR0 + v / 32 * 0x10) & (1 << (v % 32)) != 0
    })
}

/// Sends `vector` to this CPU as a fixed interrupt through the ICR
/// (destination shorthand "self"), as another CPU's IPI would arrive. It is
/// delivered once interrupts are enabled and its priority class is above
/// what is in service. Does nothing before [`init`].
pub fn self_ipi(vector: u8) {
    let Some(l) = LAPIC.get() else { return };
    l.write(ICR_LOW, ICR_SELF_FIXED | u32::from(vector));
    if l.mode == Mode::XApic {
        // The xAPIC accepts the next command only when this one is sent
        // (SDM §11.6.1, delivery status); x2APIC has no such bit.
        for _ in 0..1_000_000 {
            if l.read(ICR_LOW) & ICR_SEND_PENDING == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// APIC errors counted so far.
pub fn errors() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

fn error_interrupt(_vector: u8) {
    if let Some(l) = LAPIC.get() {
        l.write(ESR, 0);
        let esr = l.read(ESR);
        if ERRORS.fetch_add(1, Ordering::Relaxed) == 0 {
            log::warn!("apic: error interrupt, ESR {esr:#x} (counted, logged once)");
        }
    }
    eoi();
}

impl LocalApic {
    fn read(&self, offset: usize) -> u32 {
        match (self.mode, self.mmio) {
            (Mode::XApic, Some(m)) => m.read32(offset),
            _ => self.msrs.rdmsr(x2(offset)).map_or(u32::MAX, |v| v as u32),
        }
    }

    fn write(&self, offset: usize, value: u32) {
        match (self.mode, self.mmio) {
            (Mode::XApic, Some(m)) => m.write32(offset, value),
            _ => {
                let _ = self.msrs.wrmsr(x2(offset), value as u64);
            }
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
