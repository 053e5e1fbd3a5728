//! A register-level model of one HPET timer block (IA-PC HPET 1.0a), for
//! the simulator and for a hypervisor emulating an HPET to a guest.
//!
//! It implements [`hw::Mmio`] (what the driver programs) and
//! [`hw::InterruptSource`] (what the simulator delivers), on a
//! [`hw::TimeBase`] that gives true time.
//!
//! # The main counter
//!
//! ```text
//!   ENABLE_CNF ──1──► count(t) = base_value + ⌊(t − base)·10⁶ / period_fs⌋   (mod 2^32 or 2^64)
//!              ──0──► count frozen; MAIN_CNT writable (ignored while running, as QEMU does)
//! ```
//!
//! Halting, restarting, writing the counter or injecting a stuck counter
//! re-bases it at the current value: it resumes where it stopped.
//!
//! # Comparators
//!
//! A comparator matches when the counter *increments into* its value
//! (equality, never "greater or equal"): a value written behind the counter
//! matches only after the counter wraps — 2^32 ticks in 32-bit mode
//! (`Tn_32MODE_CNF`, a 32-bit timer or a 32-bit counter: the low 32 bits are
//! compared) or 2^64 ticks otherwise. A non-periodic comparator matches again
//! each wrap (Intel datasheets: "another interrupt will be generated when the
//! main counter matches the value … after a wrap around"; QEMU instead fires
//! at the wrap itself, a deviation this model does not copy).
//!
//! Periodic (`Tn_TYPE_CNF`), with the `Tn_VAL_SET_CNF` rule:
//!
//! ```text
//!   write cmp, VAL_SET=1  →  accumulator := v, period := v, VAL_SET := 0
//!   write cmp, VAL_SET=0  →  period := v                 (accumulator kept)
//!   each match            →  accumulator += period       (mod 2^32 in 32-bit mode)
//! ```
//!
//! (QEMU's reading of the specification; Linux writes the comparator twice
//! so that chips which only take the period on the second write work too.)
//!
//! # Interrupts
//!
//! - Edge (`Tn_INT_TYPE_CNF` = 0): one pulse per match while `Tn_INT_ENB_CNF`
//!   and `ENABLE_CNF` are set; matches that come before the previous pulse
//!   was delivered merge into it (counted as coalesced). Status not latched.
//! - Level: each match sets the timer's `GINTR_STA` bit — also with
//!   `Tn_INT_ENB_CNF` clear ("the timer will still operate and generate
//!   appropriate status bits") — until software writes 1 to it. The line is
//!   status ∧ INT_ENB ∧ ENABLE_CNF; an interrupt is delivered when it rises.
//!   The simulator has no EOI, so a line left asserted is not re-delivered
//!   (an I/O APIC would re-deliver after EOI: the handler must acknowledge).
//!
//! Each comparator is its own interrupt source ([`HpetModel::irq`]); the
//! model itself stands for comparator 0. With LegacyReplacement, comparators
//! 0 and 1 (IRQ0, IRQ8) go to CPU 0; other routes leave the choice to the
//! interrupt controller (`target_cpu` is `None`).
//!
//! # Faults (for tests)
//!
//! | setter | effect |
//! |--------|--------|
//! | [`set_comparator_write_delay`](HpetModel::set_comparator_write_delay) | a comparator write takes effect N oscillator ticks later; reads return the old value meanwhile (ATI, ICH9/10) |
//! | [`set_counter_stuck`](HpetModel::set_counter_stuck) | the main counter stops although `ENABLE_CNF` is set |
//! | [`set_access_hook`](HpetModel::set_access_hook) | called before every register access: a simulator moves its clock there to give accesses a cost (an HPET read costs ≈1 µs on hardware; a VM exit under a hypervisor) |
//!
//! The model never panics on a guest's accesses: offsets outside the 1 KiB
//! block read as all ones, reserved registers as 0, misaligned accesses as
//! all ones, and writes to read-only bits are ignored.

use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

use clocksource::{Cycles, Ktime};
use hw::{InterruptSource, Mmio, TimeBase};

use crate::regs::{
    Capabilities, CounterPeriod, GeneralConfig, IrqPins, TimerConfig, BLOCK_SIZE, FS_PER_NS,
    GCAP_ID, GEN_CONF, GINTR_STA, MAIN_CNT, MAX_COMPARATORS,
};

mod timer;
use timer::{Comparator, CounterState};

#[cfg(test)]
mod tests;

/// What HPET the model is: its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetModelConfig {
    /// `COUNTER_CLK_PERIOD` (0 is accepted: the counter then never counts).
    pub period: CounterPeriod,
    /// The number of comparators, 1..=32 (clamped).
    pub comparators: u8,
    /// `COUNT_SIZE_CAP`: a 64-bit main counter.
    pub counter_64bit: bool,
    /// `LEG_RT_CAP`.
    pub legacy_capable: bool,
    /// `REV_ID`.
    pub revision: u8,
    /// `VENDOR_ID`.
    pub vendor_id: u16,
    /// Comparators with `Tn_PER_INT_CAP` (bit n — comparator n).
    pub periodic_capable: u32,
    /// Comparators with `Tn_SIZE_CAP` (64-bit), ignored for a 32-bit counter.
    pub wide_comparators: u32,
    /// `Tn_INT_ROUTE_CAP` of every comparator.
    pub route_cap: IrqPins,
    /// Comparators with `Tn_FSB_INT_DEL_CAP`: FSB (MSI) delivery (QEMU's
    /// `-global hpet.msi=on` sets it on all, hw/timer/hpet.c
    /// `HPET_TN_FSB_CAP`; off by default).
    pub fsb_capable: u32,
}

impl HpetModelConfig {
    /// QEMU's HPET (hw/timer/hpet.c, q35): 100 MHz (10 ns), 3 comparators,
    /// 64-bit, LegacyReplacement, vendor 0x8086 rev 1, every comparator
    /// periodic and 64-bit, routable to I/O APIC inputs 2, 8 and 16–23.
    pub const fn qemu() -> Self {
        HpetModelConfig {
            period: CounterPeriod::from_fs(10_000_000),
            comparators: 3,
            counter_64bit: true,
            legacy_capable: true,
            revision: 1,
            vendor_id: 0x8086,
            periodic_capable: u32::MAX,
            wide_comparators: u32::MAX,
            route_cap: IrqPins::from_bits(0x00FF_0104),
            fsb_capable: 0,
        }
    }
    /// A chipset HPET on the 14.31818 MHz crystal (69 841 279 fs): 3
    /// comparators, 64-bit counter, LegacyReplacement; only comparator 0 is
    /// periodic and 64-bit (as on Intel ICH), routable to inputs 20–23.
    pub const fn chipset() -> Self {
        HpetModelConfig {
            period: CounterPeriod::from_fs(69_841_279),
            comparators: 3,
            counter_64bit: true,
            legacy_capable: true,
            revision: 1,
            vendor_id: 0x8086,
            periodic_capable: 0b1,
            wide_comparators: 0b1,
            route_cap: IrqPins::from_bits(0x00F0_0000),
            fsb_capable: 0,
        }
    }
    /// With this counter period.
    pub const fn period(mut self, period: CounterPeriod) -> Self {
        self.period = period;
        self
    }
    /// With this many comparators.
    pub const fn comparators(mut self, n: u8) -> Self {
        self.comparators = n;
        self
    }
    /// With a 32-bit (`false`) or 64-bit main counter.
    pub const fn counter_64bit(mut self, wide: bool) -> Self {
        self.counter_64bit = wide;
        self
    }
    /// With or without LegacyReplacement capability.
    pub const fn legacy_capable(mut self, capable: bool) -> Self {
        self.legacy_capable = capable;
        self
    }
    /// With this `REV_ID`.
    pub const fn revision(mut self, rev: u8) -> Self {
        self.revision = rev;
        self
    }
    /// With these comparators periodic-capable.
    pub const fn periodic_capable(mut self, mask: u32) -> Self {
        self.periodic_capable = mask;
        self
    }
    /// With this route capability.
    pub const fn route_cap(mut self, pins: IrqPins) -> Self {
        self.route_cap = pins;
        self
    }
    /// With FSB delivery on every comparator (`true`, QEMU's `hpet.msi=on`)
    /// or none.
    pub const fn msi(mut self, on: bool) -> Self {
        self.fsb_capable = if on { u32::MAX } else { 0 };
        self
    }
}

/// The access hook: called before every register access.
pub type AccessHook = Arc<dyn Fn() + Send + Sync>;

/// One HPET timer block. See the module docs.
pub struct HpetModel {
    time: Arc<dyn TimeBase + Send + Sync>,
    caps: Capabilities,
    state: Mutex<State>,
    hook: Mutex<Option<AccessHook>>,
}

/// Everything that changes.
struct State {
    gen: GeneralConfig,
    /// `GINTR_STA`: level-mode status bits.
    isr: u32,
    counter: CounterState,
    timers: Vec<Comparator>,
    stuck: bool,
    /// Comparator write delay, in oscillator ticks.
    write_delay: u64,
}

impl HpetModel {
    /// A halted HPET (counter 0, every comparator disabled) on `time`.
    pub fn new(time: Arc<dyn TimeBase + Send + Sync>, config: HpetModelConfig) -> Self {
        let n = (config.comparators as usize).clamp(1, MAX_COMPARATORS);
        let caps = Capabilities::encode(
            config.revision,
            n as u8,
            config.counter_64bit,
            config.legacy_capable,
            config.vendor_id,
            config.period,
        );
        let timers = (0..n)
            .map(|i| {
                let mut c = TimerConfig::empty().with_route_cap(config.route_cap);
                c.set(
                    TimerConfig::PER_INT_CAP,
                    config.periodic_capable & (1 << i) != 0,
                );
                c.set(
                    TimerConfig::SIZE_CAP,
                    config.counter_64bit && config.wide_comparators & (1 << i) != 0,
                );
                c.set(
                    TimerConfig::FSB_INT_DEL_CAP,
                    config.fsb_capable & (1 << i) != 0,
                );
                Comparator::new(c)
            })
            .collect();
        let now = time.now();
        HpetModel {
            time,
            caps,
            state: Mutex::new(State {
                gen: GeneralConfig::empty(),
                isr: 0,
                counter: CounterState::halted(now, 0, config.period, config.counter_64bit),
                timers,
                stuck: false,
                write_delay: 0,
            }),
            hook: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves a usable model.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state and brings it up to now.
    fn synced(&self) -> (MutexGuard<'_, State>, Ktime) {
        let now = self.time.now();
        let mut s = self.lock();
        s.sync(now);
        (s, now)
    }

    fn access(&self) {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h();
        }
    }

    /// The capabilities register this model presents.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    // ----- faults ----------------------------------------------------------

    /// From now on each comparator write takes effect `ticks` oscillator
    /// ticks after it is made, and reading the comparator returns the old
    /// value until then (the ICH9/10 stale write and read-back). Zero clears.
    pub fn set_comparator_write_delay(&self, ticks: Cycles) {
        let (mut s, _) = self.synced();
        s.write_delay = ticks.get();
        log::debug!("hpet model: comparator write delay {ticks}");
    }

    /// Makes the main counter stop (`true`) although `ENABLE_CNF` is set,
    /// or count again (`false`) from where it stopped.
    pub fn set_counter_stuck(&self, stuck: bool) {
        let (mut s, now) = self.synced();
        s.stuck = stuck;
        s.rebase(now);
        log::debug!("hpet model: counter stuck = {stuck}");
    }

    /// Calls `hook` before every register access from now on (`None`
    /// removes it). A simulator passes a closure that advances its virtual
    /// clock, so accesses take time.
    pub fn set_access_hook(&self, hook: Option<AccessHook>) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    // ----- observation (no access hook, no side effect on registers) -------

    /// The main counter's value now.
    pub fn counter(&self) -> Cycles {
        let (s, now) = self.synced();
        Cycles::new(s.counter.value_now(now))
    }
    /// Whether the main counter is counting.
    pub fn is_counting(&self) -> bool {
        self.lock().counter.running
    }
    /// Interrupts comparator `n` delivered.
    pub fn interrupts(&self, n: usize) -> u64 {
        self.synced().0.timers.get(n).map_or(0, |t| t.interrupts)
    }
    /// Matches of comparator `n` that merged into an earlier, undelivered
    /// interrupt (or, level mode, came while its status was still set).
    pub fn coalesced(&self, n: usize) -> u64 {
        self.synced().0.timers.get(n).map_or(0, |t| t.coalesced)
    }
    /// Matches of comparator `n` so far (interrupt enabled or not).
    pub fn matches(&self, n: usize) -> u64 {
        self.synced().0.timers.get(n).map_or(0, |t| t.matches)
    }

    /// The interrupt source of comparator `n`.
    pub fn irq(&self, n: usize) -> ComparatorIrq<'_> {
        ComparatorIrq { model: self, n }
    }

    // ----- registers -------------------------------------------------------

    fn read_reg(&self, off: usize) -> u64 {
        let (s, now) = self.synced();
        match off {
            GCAP_ID => self.caps.bits(),
            GEN_CONF => s.gen.bits(),
            GINTR_STA => s.isr as u64,
            MAIN_CNT => s.counter.value_now(now),
            0x100.. => match timer_reg(off) {
                Some((n, r)) if n < s.timers.len() => {
                    let t = &s.timers[n];
                    match r {
                        0x00 => t.conf.bits(),
                        0x08 => t.cmp,
                        0x10 => t.fsb,
                        _ => 0,
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    fn write_reg(&self, off: usize, value: u64, mask: u64) {
        let (mut s, now) = self.synced();
        match off {
            GEN_CONF => {
                let mut writable = GeneralConfig::ENABLE_CNF;
                if self.caps.legacy_capable() {
                    writable |= GeneralConfig::LEG_RT_CNF;
                }
                let new = merge(s.gen.bits(), value, mask & writable.bits());
                s.set_general(GeneralConfig::from_bits_retain(new), now);
            }
            GINTR_STA => s.clear_status((value & mask) as u32),
            MAIN_CNT => {
                if s.gen.contains(GeneralConfig::ENABLE_CNF) {
                    log::debug!("hpet model: MAIN_CNT written while running: ignored");
                } else {
                    let v = merge(s.counter.value_now(now), value, mask);
                    s.counter.set_value(v);
                    s.rebase(now);
                }
            }
            0x100.. => {
                if let Some((n, r)) = timer_reg(off).filter(|(n, _)| *n < s.timers.len()) {
                    match r {
                        0x00 => s.write_timer_config(n, value, mask, now),
                        0x08 => s.write_comparator(n, value, mask, now),
                        0x10 => s.timers[n].fsb = merge(s.timers[n].fsb, value, mask),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// `(comparator, register offset within its 0x20 block)` of `off`.
fn timer_reg(off: usize) -> Option<(usize, usize)> {
    let rel = off.checked_sub(0x100)?;
    Some((rel / 0x20, rel % 0x20))
}

/// `old` with the bits under `mask` taken from `value`.
fn merge(old: u64, value: u64, mask: u64) -> u64 {
    (old & !mask) | (value & mask)
}

impl State {
    /// Processes every comparator match and delayed write up to `now`.
    fn sync(&mut self, now: Ktime) {
        let counter = self.counter;
        let gate = self.gen.contains(GeneralConfig::ENABLE_CNF);
        for (i, t) in self.timers.iter_mut().enumerate() {
            let mut status = self.isr & (1 << i) != 0;
            t.advance(&counter, now, gate, &mut status);
            self.isr = (self.isr & !(1 << i)) | ((status as u32) << i);
        }
    }

    /// Re-bases the counter at its current value after a change of its
    /// running state or value (call after `sync(now)`).
    fn rebase(&mut self, now: Ktime) {
        let running = self.gen.contains(GeneralConfig::ENABLE_CNF)
            && !self.stuck
            && self.counter.period_fs > 0;
        self.counter.rebase(now, running);
        let counter = self.counter;
        for t in &mut self.timers {
            t.recompute(&counter, now);
        }
    }

    fn set_general(&mut self, new: GeneralConfig, now: Ktime) {
        let old = self.gen;
        self.gen = new;
        if old.contains(GeneralConfig::ENABLE_CNF) != new.contains(GeneralConfig::ENABLE_CNF) {
            self.rebase(now);
        }
        self.update_lines(now);
    }

    /// Re-evaluates every level line after a gate changed: a rising line
    /// raises an interrupt now, a falling one withdraws an undelivered one.
    fn update_lines(&mut self, now: Ktime) {
        let gate = self.gen.contains(GeneralConfig::ENABLE_CNF);
        for (i, t) in self.timers.iter_mut().enumerate() {
            t.update_line(gate, self.isr & (1 << i) != 0, now);
        }
    }

    fn clear_status(&mut self, bits: u32) {
        let now_gate = self.gen.contains(GeneralConfig::ENABLE_CNF);
        self.isr &= !bits;
        for (i, t) in self.timers.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                // The line falls: a not yet delivered level interrupt is gone.
                t.update_line(now_gate, false, Ktime::ZERO);
            }
        }
    }

    fn write_timer_config(&mut self, n: usize, value: u64, mask: u64, now: Ktime) {
        let level_before = self.timers[n].is_level();
        let counter = self.counter;
        self.timers[n].write_config(value, mask, &counter, now);
        if level_before && !self.timers[n].is_level() {
            // Edge mode latches nothing (QEMU clears the bit likewise).
            self.isr &= !(1 << n);
        }
        self.update_lines(now);
    }

    fn write_comparator(&mut self, n: usize, value: u64, mask: u64, now: Ktime) {
        let counter = self.counter;
        let lands = if self.write_delay == 0 {
            now
        } else {
            counter.after_ticks(now, self.write_delay)
        };
        self.timers[n].write_comparator(value, mask, lands, &counter, now);
    }
}

impl Mmio for HpetModel {
    fn read32(&self, offset: usize) -> u32 {
        self.access();
        if offset % 4 != 0 || offset >= BLOCK_SIZE {
            return u32::MAX;
        }
        let v = self.read_reg(offset & !7);
        if offset & 4 != 0 {
            (v >> 32) as u32
        } else {
            v as u32
        }
    }
    fn write32(&self, offset: usize, value: u32) {
        self.access();
        if offset % 4 != 0 || offset >= BLOCK_SIZE {
            return;
        }
        let shift = (offset & 4) * 8;
        self.write_reg(offset & !7, (value as u64) << shift, 0xFFFF_FFFF << shift);
    }
    fn read64(&self, offset: usize) -> u64 {
        self.access();
        if offset % 8 != 0 || offset >= BLOCK_SIZE {
            return u64::MAX;
        }
        self.read_reg(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.access();
        if offset % 8 != 0 || offset >= BLOCK_SIZE {
            return;
        }
        self.write_reg(offset, value, u64::MAX);
    }
}

/// The interrupt output of one comparator, for the simulator.
#[derive(Clone, Copy)]
pub struct ComparatorIrq<'a> {
    model: &'a HpetModel,
    n: usize,
}

impl ComparatorIrq<'_> {
    /// With `Tn_FSB_EN_CNF` set, the message the comparator delivers: the
    /// address (`Tn_FSB_INT_ROUTE` bits 63:32) and the data written there
    /// (bits 31:0), IA-PC HPET specification 1.0a §2.3.9.3. `None` when it
    /// drives an interrupt line instead.
    pub fn fsb_message(&self) -> Option<(u32, u32)> {
        let s = self.model.lock();
        let t = s.timers.get(self.n)?;
        t.conf
            .contains(TimerConfig::FSB_EN_CNF)
            .then_some(((t.fsb >> 32) as u32, t.fsb as u32))
    }
}

impl InterruptSource for ComparatorIrq<'_> {
    fn next_fire(&self) -> Option<Ktime> {
        let (s, _) = self.model.synced();
        let gate = s.gen.contains(GeneralConfig::ENABLE_CNF);
        let t = s.timers.get(self.n)?;
        t.next_raise(&s.counter, gate, s.isr & (1 << self.n) != 0)
    }

    fn fire(&self) -> bool {
        let (mut s, _) = self.model.synced();
        let Some(t) = s.timers.get_mut(self.n) else {
            return false;
        };
        if t.raised.take().is_some() {
            t.interrupts += 1;
            true
        } else {
            false
        }
    }

    /// LegacyReplacement: CPU 0 (IRQ0 and IRQ8 go there). FSB: the CPU
    /// whose APIC ID the message address names (bits 19:12 of `0xFEEx_xxxx`,
    /// physical destination, Intel SDM §10.11.1). Else unknown (an I/O APIC
    /// input, routed by whoever programs it).
    fn target_cpu(&self) -> Option<usize> {
        if let Some((address, _)) = self.fsb_message() {
            return Some((address >> 12 & 0xFF) as usize);
        }
        let legacy = self.model.lock().gen.contains(GeneralConfig::LEG_RT_CNF);
        (legacy && self.n <= 1).then_some(0)
    }

    /// The HPET does not stop in the C-states the tick layer models.
    fn set_deep_idle(&self, _deep: bool) {}
}

/// The model as an interrupt source is its comparator 0 (the clock-event
/// comparator).
impl InterruptSource for HpetModel {
    fn next_fire(&self) -> Option<Ktime> {
        self.irq(0).next_fire()
    }
    fn fire(&self) -> bool {
        self.irq(0).fire()
    }
    fn target_cpu(&self) -> Option<usize> {
        self.irq(0).target_cpu()
    }
    fn set_deep_idle(&self, deep: bool) {
        self.irq(0).set_deep_idle(deep)
    }
}

/// `⌈ticks · period_fs / 10⁶⌉` ns: when the `ticks`-th increment after a
/// base happens. `None` past `Ktime::MAX`.
fn ticks_to_ns_ceil(ticks: u128, period_fs: u64) -> Option<u64> {
    let ns = (ticks.checked_mul(period_fs as u128)?).div_ceil(FS_PER_NS as u128);
    u64::try_from(ns).ok().filter(|ns| *ns < u64::MAX)
}
