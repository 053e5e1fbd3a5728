//! A register-level model of one CPU's local APIC timer (feature `model`).
//!
//! What the simulator runs the driver against, and what a hypervisor can
//! emulate for a guest. It follows the Intel SDM Vol. 3A §10.5.4 (timer),
//! §10.5.4.1 (TSC-deadline), §10.4.7 (enable/disable), §10.12 (x2APIC),
//! checked against QEMU `hw/intc/apic.c` / `apic_common.c` and KVM's
//! `lapic.c` where the SDM leaves room.
//!
//! # How the count is derived from time
//!
//! Nothing ticks: the count is computed from true time (a
//! [`TimeBase`]) when it is read or when the next interrupt is asked for.
//! *Device time* is true time minus the time the timer spent stopped in deep
//! idle (non-ARAT only). A TMICT write at device time `d₀` starts the count:
//!
//! ```text
//!   elapsed(d) = ⌊(d − d₀) · bus / (divisor · 10⁹)⌋            ticks
//!   one-shot:  TMCCT = N − elapsed; interrupt when elapsed = N, then TMCCT stays 0
//!   periodic:  interrupt when elapsed = k·N (k = 1, 2, …); TMCCT = N − elapsed mod N
//!
//!   TMCCT  N ╲        ╲        ╲          one-shot: ╲____
//!             ╲ N ticks╲        ╲                    ↑ one interrupt
//!              ╲│       ╲│       ╲│
//!               ↑ irq    ↑ irq    ↑ irq   (periodic: reload at 0, period N ticks)
//! ```
//!
//! An interrupt is due at the first device time the count reaches its
//! event: `d₀ + ⌈K · divisor · 10⁹ / bus⌉` for event tick `K`, all in exact
//! integer arithmetic. A TDCR write mid-count keeps the ticks already
//! counted and continues at the new rate. Writing TMICT = 0 stops the timer.
//!
//! **Period length.** The SDM reloads "when the count reaches 0", so a
//! period is N ticks, as KVM emulates it and as Linux programs it
//! (`TMICT = lapic_timer_period / 16`). QEMU's TCG APIC takes N + 1 ticks
//! (`apic_next_timer()`: the count visits 0 for a tick), 16 ns longer per
//! period at ÷16 on its 1 GHz bus; this model follows the SDM and KVM.
//!
//! # TSC-deadline mode
//!
//! The TSC is `⌊t · tsc_hz / 10⁹⌋` of true time (invariant: it runs in deep
//! idle). A non-zero `IA32_TSC_DEADLINE` arms the timer; it fires at the
//! first time the TSC is ≥ the deadline — at once if that has passed — then
//! disarms itself and reads 0. Writing 0 disarms. Outside TSC-deadline mode
//! the MSR reads 0 and ignores writes; TMICT writes are ignored inside it.
//! Changing the LVTT mode to or from TSC-deadline disarms the timer.
//!
//! # Delivery
//!
//! An event raises the interrupt only if the LVTT is unmasked, the APIC is
//! software-enabled (SVR bit 8) and globally enabled (`IA32_APIC_BASE`
//! EN); a masked event is consumed silently (counted in
//! [`LapicModel::suppressed`]). A raised interrupt stays pending (IRR) until
//! [`InterruptSource::fire`] delivers it; more events meanwhile merge into
//! it ([`LapicModel::coalesced`]), as a single IRR bit does. EOIs are
//! counted; in-service blocking is not modelled (the simulator delivers one
//! interrupt at a time).
//!
//! # What is modelled, and what is not
//!
//! Registers: ID, version, TPR (stored), EOI, SVR, LVT timer, TMICT, TMCCT,
//! TDCR, `IA32_APIC_BASE` (EN/EXTD transitions, SDM Figure 10-27),
//! `IA32_TSC_DEADLINE`. Other xAPIC offsets in the page read 0 and ignore
//! writes (logged at debug level); other x2APIC MSRs fault, as unimplemented
//! ones do. MMIO outside the page, misaligned, 64-bit, or while the page is
//! not decoded (x2APIC mode, APIC disabled) reads all ones and ignores
//! writes. Disabling the APIC (EN := 0) resets every register to its
//! power-up value. Software disable (SVR) forces every LVT mask bit on.
//!
//! Faults: [`LapicModel::late_by`] delivers every interrupt late.

use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

use clocksource::{Cycles, Hertz, Ktime, Nanos, NSEC_PER_SEC};
use hw::{InterruptSource, Mmio, MsrAccess, MsrFault, TimeBase, TscRead};

use crate::regs::{
    Divide, LvtTimer, Reg, TimerModeBits, APIC_BASE_ADDR_MASK, APIC_BASE_BSP, APIC_BASE_EN,
    APIC_BASE_EXTD, APIC_DEFAULT_BASE, IA32_APIC_BASE, IA32_TSC_DEADLINE, SVR_APIC_ENABLE,
    SVR_RESET, SVR_WRITABLE, VERSION_QEMU, X2APIC_MSR_BASE, X2APIC_MSR_LAST,
};

mod cpuid;
pub use cpuid::ModelCpuid;

/// QEMU's APIC bus: 1 GHz (`APIC_BUS_CYCLE_NS` = 1); KVM's default too.
pub const QEMU_BUS: Hertz = Hertz::from_mhz(1_000);

/// The size of the xAPIC MMIO page.
pub const XAPIC_PAGE: usize = 0x1000;

/// An LVT register at reset: masked, vector 0 (SDM §10.5.1).
const LVT_RESET: u32 = 1 << 16;
/// LVT LINT0/LINT1 bits software writes: vector, delivery mode, polarity,
/// trigger mode, mask (SDM Figure 10-8; delivery status and remote IRR are
/// read-only).
const LVT_LINT_WRITABLE: u32 = 0xFF | (0b111 << 8) | (1 << 13) | (1 << 15) | (1 << 16);
/// LVT Error bits software writes: vector and mask.
const LVT_ERROR_WRITABLE: u32 = 0xFF | (1 << 16);
/// ICR delivery status (bit 12): the xAPIC is still sending.
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// What the modelled CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicModelConfig {
    /// The CPU the APIC belongs to (also its APIC ID, and BSP if 0).
    pub cpu: usize,
    /// The timer's input clock.
    pub bus: Hertz,
    /// The TSC's rate.
    pub tsc: Hertz,
    /// x2APIC mode is available (`CPUID.01H:ECX[21]`).
    pub x2apic: bool,
    /// TSC-deadline mode is available (`CPUID.01H:ECX[24]`).
    pub tsc_deadline: bool,
    /// The timer runs in deep idle (`CPUID.06H:EAX[2]`).
    pub arat: bool,
    /// [`LapicModel::cpuid`] reports a hypervisor (`CPUID.01H:ECX[31]`).
    pub hypervisor: bool,
    /// [`LapicModel::cpuid`] has leaf 0x4000_0010 stating the bus rate.
    pub timing_leaf: bool,
    /// [`LapicModel::cpuid`] states the bus as the leaf-0x15 crystal.
    pub crystal_leaf: bool,
}

impl LapicModelConfig {
    /// A CPU with bus and TSC rates and none of the optional features.
    pub const fn new(cpu: usize, bus: Hertz, tsc: Hertz) -> Self {
        LapicModelConfig {
            cpu,
            bus,
            tsc,
            x2apic: false,
            tsc_deadline: false,
            arat: false,
            hypervisor: false,
            timing_leaf: false,
            crystal_leaf: false,
        }
    }
    /// A QEMU guest CPU: 1 GHz bus, a 2.4 GHz TSC, hypervisor bit, no
    /// timing leaf (so the guest must calibrate), no ARAT, no x2APIC, no
    /// TSC-deadline (TCG's defaults; KVM with `-cpu host` adds all three).
    pub const fn qemu(cpu: usize) -> Self {
        LapicModelConfig {
            hypervisor: true,
            ..Self::new(cpu, QEMU_BUS, Hertz::new(2_400_000_000))
        }
    }
    /// With or without x2APIC.
    pub const fn x2apic(mut self, on: bool) -> Self {
        self.x2apic = on;
        self
    }
    /// With or without TSC-deadline mode.
    pub const fn tsc_deadline(mut self, on: bool) -> Self {
        self.tsc_deadline = on;
        self
    }
    /// With or without ARAT.
    pub const fn arat(mut self, on: bool) -> Self {
        self.arat = on;
        self
    }
    /// With or without the hypervisor timing leaf.
    pub const fn timing_leaf(mut self, on: bool) -> Self {
        self.timing_leaf = on;
        self
    }
    /// With or without the bus stated as the leaf-0x15 crystal.
    pub const fn crystal_leaf(mut self, on: bool) -> Self {
        self.crystal_leaf = on;
        self
    }
}

/// The registers and the timer's derived state.
#[derive(Debug)]
struct State {
    apic_base: u64,
    svr: u32,
    tpr: u32,
    lvtt: u32,
    /// LVT LINT0, LINT1 and Error, as written (masked at reset).
    lint0: u32,
    lint1: u32,
    lvt_error: u32,
    /// The ICR's low half as last written; the model sends no IPI.
    icr_low: u32,
    /// IPIs the ICR was written to send (not delivered: one CPU's model).
    ipis: u64,
    tdcr: u32,
    tmict: u32,
    /// Device time (ns) the tick count was last based at.
    base_dev: u64,
    /// Ticks counted since the TMICT load, at `base_dev`.
    base_ticks: u64,
    /// Ticks-since-load at which the next count-down event happens.
    next_ticks: Option<u64>,
    deadline: u64,
    deadline_armed_at: Ktime,
    frozen_since: Option<Ktime>,
    frozen_total: u64,
    thawed_at: Ktime,
    /// A raised, undelivered interrupt (IRR), since when.
    pending_since: Option<Ktime>,
    late: Nanos,
    interrupts: u64,
    eois: u64,
    coalesced: u64,
    suppressed: u64,
    delivered: Vec<Ktime>,
}

impl State {
    fn power_up(cpu: usize) -> Self {
        let bsp = if cpu == 0 { APIC_BASE_BSP } else { 0 };
        State {
            apic_base: APIC_DEFAULT_BASE | APIC_BASE_EN | bsp,
            svr: SVR_RESET,
            tpr: 0,
            lvtt: LvtTimer::RESET.bits(),
            lint0: LVT_RESET,
            lint1: LVT_RESET,
            lvt_error: LVT_RESET,
            icr_low: 0,
            ipis: 0,
            tdcr: 0,
            tmict: 0,
            base_dev: 0,
            base_ticks: 0,
            next_ticks: None,
            deadline: 0,
            deadline_armed_at: Ktime::ZERO,
            frozen_since: None,
            frozen_total: 0,
            thawed_at: Ktime::ZERO,
            pending_since: None,
            late: Nanos::ZERO,
            interrupts: 0,
            eois: 0,
            coalesced: 0,
            suppressed: 0,
            delivered: Vec::new(),
        }
    }

    /// Back to power-up register values (`IA32_APIC_BASE` EN cleared):
    /// statistics, faults and deep-idle bookkeeping stay.
    fn reset_registers(&mut self) {
        self.svr = SVR_RESET;
        self.tpr = 0;
        self.lvtt = LvtTimer::RESET.bits();
        self.lint0 = LVT_RESET;
        self.lint1 = LVT_RESET;
        self.lvt_error = LVT_RESET;
        self.icr_low = 0;
        self.tdcr = 0;
        self.tmict = 0;
        self.base_ticks = 0;
        self.next_ticks = None;
        self.deadline = 0;
        self.pending_since = None;
    }

    fn enabled(&self) -> bool {
        self.apic_base & APIC_BASE_EN != 0
    }
    fn x2apic_mode(&self) -> bool {
        self.enabled() && self.apic_base & APIC_BASE_EXTD != 0
    }
    fn xapic_decoded(&self) -> bool {
        self.enabled() && self.apic_base & APIC_BASE_EXTD == 0
    }
    fn software_enabled(&self) -> bool {
        self.svr & SVR_APIC_ENABLE != 0
    }
    fn lvt(&self) -> LvtTimer {
        LvtTimer::from_bits(self.lvtt)
    }
    fn deadline_mode(&self) -> bool {
        self.lvt().mode() == TimerModeBits::TscDeadline
    }
    fn periodic(&self) -> bool {
        self.lvt().mode() == TimerModeBits::Periodic
    }
    fn delivers(&self) -> bool {
        self.enabled() && self.software_enabled() && !self.lvt().is_masked()
    }
    fn divisor(&self) -> u64 {
        Divide::from_bits(self.tdcr).divisor() as u64
    }
    /// Device time at true time `now`.
    fn dev(&self, now: Ktime) -> u64 {
        let stopped = self
            .frozen_since
            .map_or(0, |since| now.saturating_since(since).as_nanos());
        now.as_nanos()
            .saturating_sub(self.frozen_total)
            .saturating_sub(stopped)
    }
}

/// One CPU's local APIC timer. See the [module docs](self).
pub struct LapicModel {
    time: Arc<dyn TimeBase + Send>,
    config: LapicModelConfig,
    state: Mutex<State>,
}

impl LapicModel {
    /// A local APIC in its power-up state (xAPIC mode, software-disabled,
    /// timer masked), on true time `time`.
    pub fn new(time: Arc<dyn TimeBase + Send>, config: LapicModelConfig) -> Self {
        LapicModel {
            time,
            config,
            state: Mutex::new(State::power_up(config.cpu)),
        }
    }

    /// Moves the model to the heap for good (the simulator and drivers
    /// take `&'static` references).
    pub fn leak(self) -> &'static LapicModel {
        std::boxed::Box::leak(std::boxed::Box::new(self))
    }

    /// The configuration.
    pub fn config(&self) -> LapicModelConfig {
        self.config
    }

    /// A CPUID that describes this CPU (see [`ModelCpuid`]).
    pub fn cpuid(&self) -> ModelCpuid {
        ModelCpuid::new(self.config)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Ktime {
        self.time.now()
    }

    /// Delivers every interrupt `late` after it is raised (from now on;
    /// `Nanos::ZERO` clears the fault).
    pub fn late_by(&self, late: Nanos) {
        self.lock().late = late;
    }

    /// Interrupts delivered.
    pub fn interrupts(&self) -> u64 {
        self.lock().interrupts
    }
    /// The true times interrupts were delivered at.
    pub fn delivered(&self) -> Vec<Ktime> {
        self.lock().delivered.clone()
    }
    /// EOI writes.
    pub fn eois(&self) -> u64 {
        self.lock().eois
    }
    /// Writes to the ICR: IPIs a driver asked for (the model delivers none).
    pub fn ipis(&self) -> u64 {
        self.lock().ipis
    }
    /// Events merged into an interrupt already pending.
    pub fn coalesced(&self) -> u64 {
        self.lock().coalesced
    }
    /// Events that raised nothing (masked LVTT, APIC disabled).
    pub fn suppressed(&self) -> u64 {
        self.lock().suppressed
    }
    /// Whether x2APIC mode is on.
    pub fn is_x2apic(&self) -> bool {
        self.lock().x2apic_mode()
    }
    /// The rate the timer counts at with the current divider.
    pub fn count_rate(&self) -> Hertz {
        let d = self.lock().divisor();
        Hertz::new(self.config.bus.get() / d)
    }
    /// The TSC at true time `t`.
    pub fn tsc_at(&self, t: Ktime) -> Cycles {
        Cycles::new(mul_div_floor(
            t.as_nanos(),
            self.config.tsc.get(),
            NSEC_PER_SEC,
        ))
    }

    // ----- the timer -------------------------------------------------------

    /// Ticks counted since the TMICT load, at device time `dev`.
    fn elapsed(&self, s: &State, dev: u64) -> u64 {
        let ns = dev.saturating_sub(s.base_dev);
        s.base_ticks.saturating_add(mul_div_floor(
            ns,
            self.config.bus.get(),
            s.divisor().saturating_mul(NSEC_PER_SEC),
        ))
    }

    /// True time of the next timer event (masked or not), `None` if none or
    /// stopped in deep idle.
    fn next_event(&self, s: &State) -> Option<Ktime> {
        if s.frozen_since.is_some() || !s.enabled() {
            return None;
        }
        if s.deadline_mode() {
            if s.deadline == 0 {
                return None;
            }
            let t = mul_div_ceil(s.deadline, NSEC_PER_SEC, self.config.tsc.get());
            return Some(
                Ktime::from_nanos(t)
                    .max(s.deadline_armed_at)
                    .max(s.thawed_at),
            );
        }
        let k = s.next_ticks?;
        let dev = s.base_dev.saturating_add(mul_div_ceil(
            k.saturating_sub(s.base_ticks),
            s.divisor().saturating_mul(NSEC_PER_SEC),
            self.config.bus.get(),
        ));
        Some(Ktime::from_nanos(dev.saturating_add(s.frozen_total)))
    }

    /// Processes the event due by `now`, if any: raise (or suppress) it and
    /// move the timer on.
    fn settle(&self, s: &mut State, now: Ktime) {
        let Some(t) = self.next_event(s).filter(|t| *t <= now) else {
            return;
        };
        if s.delivers() {
            if s.pending_since.is_none() {
                s.pending_since = Some(t);
            } else {
                s.coalesced += 1;
            }
        } else {
            s.suppressed += 1;
        }
        if s.deadline_mode() {
            s.deadline = 0; // disarms itself (SDM §10.5.4.1)
        } else if s.periodic() && s.tmict != 0 {
            let n = s.tmict as u64;
            let e = self.elapsed(s, s.dev(now));
            let k = s.next_ticks.unwrap_or(n);
            let next = (e / n + 1) * n;
            // Periods that ended before `now` beyond the first: one IRR bit.
            let skipped = ((next - k) / n).saturating_sub(1);
            if s.delivers() {
                s.coalesced += skipped;
            } else {
                s.suppressed += skipped;
            }
            s.next_ticks = Some(next);
        } else {
            s.next_ticks = None;
        }
    }

    /// Starts a new rate segment at `now` (before a TDCR change).
    fn rebase(&self, s: &mut State, now: Ktime) {
        let dev = s.dev(now);
        s.base_ticks = self.elapsed(s, dev);
        s.base_dev = dev;
    }

    fn current_count(&self, s: &State, now: Ktime) -> u32 {
        if s.deadline_mode() {
            return 0;
        }
        match s.next_ticks {
            Some(k) => k.saturating_sub(self.elapsed(s, s.dev(now))) as u32,
            None => 0,
        }
    }

    // ----- registers -------------------------------------------------------

    fn read_reg(&self, s: &mut State, reg: Reg, now: Ktime) -> u32 {
        match reg {
            Reg::Id if s.x2apic_mode() => self.config.cpu as u32,
            Reg::Id => (self.config.cpu as u32) << 24,
            Reg::Version => VERSION_QEMU,
            Reg::Tpr => s.tpr,
            Reg::Eoi => 0,
            Reg::Svr => s.svr,
            // The model keeps no in-service state (the simulator delivers
            // interrupts itself) and raises no APIC error.
            Reg::Isr0
            | Reg::Isr1
            | Reg::Isr2
            | Reg::Isr3
            | Reg::Isr4
            | Reg::Isr5
            | Reg::Isr6
            | Reg::Isr7
            | Reg::Esr => 0,
            // Delivery status idle: the command is sent at once.
            Reg::IcrLow => s.icr_low & !ICR_DELIVERY_PENDING,
            Reg::LvtTimer => s.lvtt,
            Reg::LvtLint0 => s.lint0,
            Reg::LvtLint1 => s.lint1,
            Reg::LvtError => s.lvt_error,
            Reg::InitialCount => s.tmict,
            Reg::CurrentCount => {
                self.settle(s, now);
                self.current_count(s, now)
            }
            Reg::DivideConfig => s.tdcr,
        }
    }

    /// Writes `reg`; `Err` where an x2APIC write would #GP (read-only
    /// registers, a non-zero EOI).
    fn write_reg(&self, s: &mut State, reg: Reg, value: u32, now: Ktime) -> Result<(), ()> {
        self.settle(s, now);
        match reg {
            Reg::Id
            | Reg::Version
            | Reg::CurrentCount
            | Reg::Isr0
            | Reg::Isr1
            | Reg::Isr2
            | Reg::Isr3
            | Reg::Isr4
            | Reg::Isr5
            | Reg::Isr6
            | Reg::Isr7 => return Err(()),
            Reg::Esr => {
                if value != 0 && s.x2apic_mode() {
                    return Err(()); // SDM §10.12.1.2: non-zero ESR write #GPs
                }
            }
            Reg::IcrLow => {
                s.icr_low = value;
                s.ipis += 1;
                log::debug!("lapic model: IPI {value:#x} not delivered (one CPU modelled)");
            }
            Reg::LvtLint0 | Reg::LvtLint1 | Reg::LvtError => {
                let writable = if reg == Reg::LvtError {
                    LVT_ERROR_WRITABLE
                } else {
                    LVT_LINT_WRITABLE
                };
                let mut new = value & writable;
                if !s.software_enabled() {
                    new |= LvtTimer::MASKED;
                }
                match reg {
                    Reg::LvtLint0 => s.lint0 = new,
                    Reg::LvtLint1 => s.lint1 = new,
                    _ => s.lvt_error = new,
                }
            }
            Reg::Tpr => s.tpr = value & 0xFF,
            Reg::Eoi => {
                if value != 0 && s.x2apic_mode() {
                    return Err(());
                }
                s.eois += 1;
            }
            Reg::Svr => {
                s.svr = value & SVR_WRITABLE;
                if !s.software_enabled() {
                    // SDM §10.9: software-disabled, every LVT is masked.
                    s.lvtt |= LvtTimer::MASKED;
                    s.lint0 |= LvtTimer::MASKED;
                    s.lint1 |= LvtTimer::MASKED;
                    s.lvt_error |= LvtTimer::MASKED;
                }
            }
            Reg::LvtTimer => {
                let mut writable = LvtTimer::WRITABLE;
                if !self.config.tsc_deadline {
                    // Bit 18 is reserved without TSC-deadline support.
                    writable &= !(2 << LvtTimer::MODE_SHIFT);
                }
                let mut new = value & writable;
                if !s.software_enabled() {
                    new |= LvtTimer::MASKED;
                }
                let was_deadline = s.deadline_mode();
                s.lvtt = new;
                if was_deadline != s.deadline_mode() {
                    // Changing to or from TSC-deadline mode disarms the timer.
                    s.deadline = 0;
                    s.tmict = 0;
                    s.next_ticks = None;
                }
            }
            Reg::InitialCount => {
                if !s.deadline_mode() {
                    s.tmict = value;
                    s.base_dev = s.dev(now);
                    s.base_ticks = 0;
                    s.next_ticks = (value != 0).then_some(value as u64);
                }
            }
            Reg::DivideConfig => {
                self.rebase(s, now);
                s.tdcr = value & Divide::MASK;
            }
        }
        Ok(())
    }

    fn write_apic_base(&self, s: &mut State, value: u64, now: Ktime) -> Result<(), ()> {
        let en = value & APIC_BASE_EN != 0;
        let extd = value & APIC_BASE_EXTD != 0;
        if extd && (!self.config.x2apic || !en) {
            return Err(()); // no x2APIC, or the invalid EN=0/EXTD=1 state
        }
        if s.x2apic_mode() && en && !extd {
            return Err(()); // x2APIC → xAPIC must go through disabled
        }
        self.settle(s, now);
        if s.enabled() && !en {
            s.reset_registers();
        }
        let bsp = s.apic_base & APIC_BASE_BSP;
        s.apic_base =
            (value & (APIC_BASE_ADDR_MASK | APIC_BASE_EN | APIC_BASE_EXTD) & 0xF_FFFF_FFFF) | bsp;
        Ok(())
    }
}

impl Mmio for LapicModel {
    fn read32(&self, offset: usize) -> u32 {
        let now = self.now();
        let mut s = self.lock();
        if !s.xapic_decoded() || offset >= XAPIC_PAGE || offset % 16 != 0 {
            return u32::MAX;
        }
        match Reg::from_offset(offset) {
            Some(reg) => self.read_reg(&mut s, reg, now),
            None => {
                log::debug!("lapic model: read of unmodelled register {offset:#x}");
                0
            }
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let now = self.now();
        let mut s = self.lock();
        if !s.xapic_decoded() || offset >= XAPIC_PAGE || offset % 16 != 0 {
            return;
        }
        match Reg::from_offset(offset) {
            // Writes to read-only registers are ignored in xAPIC mode.
            Some(reg) => {
                let _ = self.write_reg(&mut s, reg, value, now);
            }
            None => log::debug!("lapic model: write to unmodelled register {offset:#x}"),
        }
    }

    /// xAPIC registers take 32-bit accesses only (SDM §10.4.1).
    fn read64(&self, offset: usize) -> u64 {
        log::debug!("lapic model: 64-bit read at {offset:#x}");
        u64::MAX
    }

    fn write64(&self, offset: usize, _value: u64) {
        log::debug!("lapic model: 64-bit write at {offset:#x} ignored");
    }
}

impl MsrAccess for LapicModel {
    fn rdmsr(&self, msr: u32) -> Result<u64, MsrFault> {
        let now = self.now();
        let mut s = self.lock();
        let fault = Err(MsrFault { msr });
        match msr {
            IA32_APIC_BASE => Ok(s.apic_base),
            IA32_TSC_DEADLINE if self.config.tsc_deadline => {
                self.settle(&mut s, now);
                Ok(if s.deadline_mode() { s.deadline } else { 0 })
            }
            X2APIC_MSR_BASE..=X2APIC_MSR_LAST if s.x2apic_mode() => match Reg::from_msr(msr) {
                Some(Reg::Eoi) | None => fault,
                Some(reg) => Ok(self.read_reg(&mut s, reg, now) as u64),
            },
            _ => fault,
        }
    }

    fn wrmsr(&self, msr: u32, value: u64) -> Result<(), MsrFault> {
        let now = self.now();
        let mut s = self.lock();
        let fault = MsrFault { msr };
        match msr {
            IA32_APIC_BASE => self.write_apic_base(&mut s, value, now).map_err(|_| fault),
            IA32_TSC_DEADLINE if self.config.tsc_deadline => {
                self.settle(&mut s, now);
                if s.deadline_mode() {
                    s.deadline = value;
                    s.deadline_armed_at = now;
                    // A deadline already passed is due at once.
                    self.settle(&mut s, now);
                }
                Ok(())
            }
            X2APIC_MSR_BASE..=X2APIC_MSR_LAST if s.x2apic_mode() => {
                let reg = Reg::from_msr(msr).ok_or(fault)?;
                // These registers are 32 bits; the upper half is reserved.
                let value = u32::try_from(value).map_err(|_| fault)?;
                self.write_reg(&mut s, reg, value, now).map_err(|_| fault)
            }
            _ => Err(fault),
        }
    }
}

impl TscRead for LapicModel {
    fn rdtsc(&self) -> u64 {
        self.tsc_at(self.now()).get()
    }
}

impl InterruptSource for LapicModel {
    fn next_fire(&self) -> Option<Ktime> {
        let now = self.now();
        let mut s = self.lock();
        self.settle(&mut s, now);
        let due = match s.pending_since {
            Some(p) => Some(p),
            None if s.delivers() => self.next_event(&s),
            None => None,
        };
        due.map(|t| t.saturating_add(s.late))
    }

    fn fire(&self) -> bool {
        let now = self.now();
        let mut s = self.lock();
        self.settle(&mut s, now);
        match s.pending_since {
            Some(p) if p.saturating_add(s.late) <= now => {
                s.pending_since = None;
                s.interrupts += 1;
                s.delivered.push(now);
                true
            }
            _ => false,
        }
    }

    fn target_cpu(&self) -> Option<usize> {
        Some(self.config.cpu)
    }

    /// Without ARAT the timer stops in deep C-states: the count freezes
    /// (TSC-deadline: no compare) until the CPU wakes.
    fn set_deep_idle(&self, deep: bool) {
        if self.config.arat {
            return;
        }
        let now = self.now();
        let mut s = self.lock();
        self.settle(&mut s, now);
        match (deep, s.frozen_since) {
            (true, None) => s.frozen_since = Some(now),
            (false, Some(since)) => {
                s.frozen_total += now.saturating_since(since).as_nanos();
                s.thawed_at = now;
                s.frozen_since = None;
            }
            _ => {}
        }
    }
}

impl core::fmt::Debug for LapicModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.lock();
        f.debug_struct("LapicModel")
            .field("config", &self.config)
            .field("lvtt", &s.lvt())
            .field("tmict", &s.tmict)
            .field("tdcr", &Divide::from_bits(s.tdcr))
            .field("deadline", &s.deadline)
            .field("pending_since", &s.pending_since)
            .finish()
    }
}

/// `⌊a · b / c⌋`, saturating (c = 0 gives u64::MAX).
fn mul_div_floor(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return u64::MAX;
    }
    u64::try_from(a as u128 * b as u128 / c as u128).unwrap_or(u64::MAX)
}

/// `⌈a · b / c⌉`, saturating (c = 0 gives u64::MAX).
fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return u64::MAX;
    }
    u64::try_from((a as u128 * b as u128).div_ceil(c as u128)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
