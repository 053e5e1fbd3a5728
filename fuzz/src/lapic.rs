//! The local APIC timer model's register file (`lapic::model::LapicModel`).
//!
//! Inputs are a CPU (APIC ID, bus rate — 1 GHz, 25 MHz, 1 Hz, 0, random —,
//! TSC rate, with or without x2APIC, TSC-deadline and ARAT) and a sequence
//! of steps: xAPIC MMIO reads and writes (register offsets, the rest of the
//! page, misaligned, past the page, 64-bit), `rdmsr`/`wrmsr` of
//! `IA32_APIC_BASE` (every EN/EXTD transition), `IA32_TSC_DEADLINE` (past,
//! near and far deadlines) and the x2APIC MSRs, `rdtsc`, deep idle entered
//! and left, and timer interrupts fired, interleaved with virtual time
//! advancing.
//!
//! Invariants, checked after every step (Intel SDM Vol. 3A, section named;
//! "model" where the SDM leaves the choice to the model's docs):
//! - never a panic, and an MSR the CPU does not have faults (`Err`);
//! - the timer (§10.5.4): TMCCT ≤ TMICT; TMCCT counts down — after a TMICT
//!   write at `t₀` with divide `d` (Figure 10-10's encoding) and no change
//!   of divide, mode or APIC state since, TMCCT at `t` is exactly
//!   `N − ⌊(t − t₀)·bus/(d·10⁹)⌋` in one-shot (then 0; model: mode 11 as
//!   one-shot) and `N − (that mod N)` in periodic mode;
//! - TSC-deadline (§10.5.4.1): TMCCT reads 0; `IA32_TSC_DEADLINE` reads the
//!   deadline written until the TSC reaches it, then 0 (disarmed), unless
//!   the timer is stopped in deep idle; outside that mode it reads 0, and
//!   without CPUID's TSC-deadline bit the MSR faults;
//! - the LVT timer (§10.5.1): reserved bits 31:19, 15:13, 11:8 read 0, bit
//!   18 too without TSC-deadline; software-disabled (§10.4.7.2, SVR bit 8
//!   clear), its mask bit reads 1; masked (or software- or globally
//!   disabled) from one check to the next with nothing pending, no
//!   interrupt becomes due;
//! - TDCR bits other than 3, 1, 0 read 0 (Figure 10-10); SVR bits 31:13
//!   and 11:10 read 0 (§10.9, Figure 10-23);
//! - ID (§10.4.6, §10.12.5.1) reads the APIC ID (bits 31:24 in xAPIC mode,
//!   all 32 bits in x2APIC mode); the version register never changes;
//! - modes (§10.12.1.2, §10.4.3): the xAPIC page reads all ones when not
//!   decoded (x2APIC mode, APIC disabled) and x2APIC MSRs fault outside
//!   x2APIC mode; in x2APIC mode writes to the read-only ID, version and
//!   TMCCT fault (Table 10-6); MMIO past the page, misaligned or 64-bit
//!   reads all ones;
//! - the TSC never goes back, and is `⌊t·tsc/10⁹⌋` (model: invariant TSC;
//!   saturating where that passes 2^64, at absurd rates);
//! - interrupts (`hw::InterruptSource`): `fire` before `next_fire` delivers
//!   nothing; the delivered count moves only when `fire` says it
//!   delivered; the EOI, coalesced and suppressed counts never go down.

use clocksource::{Hertz, Ktime, Nanos};
use hw::{InterruptSource, Mmio, MsrAccess, TscRead};
use lapic::model::{LapicModel, LapicModelConfig};
use sim::clock::VirtualClock;

use crate::{ensure, Check, Gen, Target};

/// The LAPIC target.
pub struct Lapic;

// SDM Vol. 3A Table 10-1 offsets; x2APIC MSR = 0x800 + offset / 16.
const ID: usize = 0x20;
const VERSION: usize = 0x30;
const TPR: usize = 0x80;
const EOI: usize = 0xB0;
const SVR: usize = 0xF0;
const LVTT: usize = 0x320;
const TMICT: usize = 0x380;
const TMCCT: usize = 0x390;
const TDCR: usize = 0x3E0;
const REGS: [usize; 9] = [ID, VERSION, TPR, EOI, SVR, LVTT, TMICT, TMCCT, TDCR];
const PAGE: usize = 0x1000;
const fn msr_of(offset: usize) -> u32 {
    0x800 + (offset / 16) as u32
}
const IA32_APIC_BASE: u32 = 0x1B;
const IA32_TSC_DEADLINE: u32 = 0x6E0;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;
const LVT_MASKED: u32 = 1 << 16;

/// One step.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Virtual time moves on.
    Advance(u64),
    /// `read32(offset)`.
    Read32(usize),
    /// `write32(offset, value)`.
    Write32(usize, u32),
    /// `read64(offset)`.
    Read64(usize),
    /// `write64(offset, value)`.
    Write64(usize, u64),
    /// `rdmsr(msr)`.
    Rdmsr(u32),
    /// `wrmsr(msr, value)`.
    Wrmsr(u32, u64),
    /// `wrmsr(IA32_TSC_DEADLINE, TSC now + delta)` (wrapping).
    Deadline(i64),
    /// `rdtsc`.
    Rdtsc,
    /// Deep idle entered (`true`) or left.
    DeepIdle(bool),
    /// The timer interrupt: `fire` once early (if it is in the future),
    /// then time moves to `next_fire` (if at most `limit` ns ahead) and
    /// `fire` again.
    Fire(u64),
}

/// One input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The CPU.
    pub config: LapicModelConfig,
    /// What is done to it.
    pub steps: Vec<Step>,
}

fn offset(g: &mut Gen) -> usize {
    match g.below(10) {
        0..=6 => *g.pick(&REGS),
        7 => g.below(PAGE as u64) as usize & !0xF,
        8 => g.below(PAGE as u64) as usize,
        _ => PAGE + g.below(64) as usize - 16,
    }
}

fn value32(g: &mut Gen, off: usize) -> u32 {
    match (off, g.below(3)) {
        (SVR, 0 | 1) => (0x100 * g.below(2) as u32) | g.u8() as u32,
        (LVTT, 0 | 1) => {
            ((g.below(4) as u32) << 17) | (LVT_MASKED * g.below(2) as u32) | g.u8() as u32
        }
        (TMICT, 0 | 1) => g.pick_or(&[0, 1, 2, 15, 16, 1000, 62_500, u32::MAX], Gen::u32),
        (TDCR, 0 | 1) => g.below(16) as u32,
        _ => g.interesting_u64() as u32,
    }
}

fn msr(g: &mut Gen) -> u32 {
    match g.below(8) {
        0..=1 => IA32_APIC_BASE,
        2 => IA32_TSC_DEADLINE,
        3..=5 => msr_of(*g.pick(&REGS)),
        6 => 0x800 + g.below(0x100) as u32,
        _ => g.u32(),
    }
}

fn apic_base(g: &mut Gen) -> u64 {
    let en = APIC_BASE_EN * g.below(2);
    let extd = APIC_BASE_EXTD * g.below(2);
    let base = if g.chance(3, 4) {
        0xFEE0_0000
    } else {
        g.u64() & !0xFFF
    };
    base | en | extd | (g.below(2) << 8)
}

impl Target for Lapic {
    const NAME: &'static str = "lapic";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let bus = g.pick_or(
            &[1_000_000_000, 1_000_000_000, 25_000_000, 100_000_000, 1, 0],
            |g| g.u32() as u64,
        );
        let tsc = g.pick_or(&[2_400_000_000, 1_000_000_000, 1], |g| {
            g.u64() >> g.below(64)
        });
        let config = LapicModelConfig::new(g.below(4) as usize, Hertz::new(bus), Hertz::new(tsc))
            .x2apic(g.chance(1, 2))
            .tsc_deadline(g.chance(1, 2))
            .arat(g.chance(1, 2));
        let steps = (0..g.range(1, 48))
            .map(|_| match g.below(16) {
                0..=2 => Step::Advance(g.advance_ns(100)),
                3..=4 => Step::Read32(offset(g)),
                5..=7 => {
                    let off = offset(g);
                    Step::Write32(off, value32(g, off))
                }
                8 => {
                    if g.chance(1, 2) {
                        Step::Read64(offset(g))
                    } else {
                        Step::Write64(offset(g), g.u64())
                    }
                }
                9 => Step::Rdmsr(msr(g)),
                10..=11 => {
                    let m = msr(g);
                    let v = match m {
                        IA32_APIC_BASE => apic_base(g),
                        0x800..=0x8FF => {
                            let off = (m as usize - 0x800) * 16;
                            if g.chance(7, 8) {
                                value32(g, off) as u64
                            } else {
                                g.u64()
                            }
                        }
                        _ => g.interesting_u64(),
                    };
                    Step::Wrmsr(m, v)
                }
                12 => Step::Deadline(match g.below(4) {
                    0 => -(g.below(1_000_000) as i64),
                    1 => g.below(100_000) as i64,
                    2 => g.below(10_000_000_000) as i64,
                    _ => g.u64() as i64,
                }),
                13 => {
                    if g.chance(1, 2) {
                        Step::Rdtsc
                    } else {
                        Step::DeepIdle(g.chance(1, 2))
                    }
                }
                _ => Step::Fire(g.advance_ns(100)),
            })
            .collect();
        Input { config, steps }
    }

    fn check(input: &Input) -> u64 {
        let clock = VirtualClock::starting_at(Ktime::from_nanos(1_000));
        let model = LapicModel::new(clock.clone(), input.config);
        let mut s = Shadow::new(input.config, &model);
        crate::drive(&input.steps, |step| {
            let bits = s.step(&model, &clock, step);
            s.observe(&model, &clock).map(|()| bits)
        })
    }
}

/// How the registers are reached now (`IA32_APIC_BASE` EN, EXTD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disabled,
    XApic,
    X2Apic,
}

/// A TMICT load the count can be predicted from.
#[derive(Debug, Clone, Copy)]
struct Load {
    at: Ktime,
    initial: u64,
    divisor: u64,
}

struct Shadow {
    config: LapicModelConfig,
    version: Option<u32>,
    load: Option<Load>,
    /// The deadline written in TSC-deadline mode and not yet seen fired.
    deadline: Option<u64>,
    /// Deep idle entered and not left.
    deep: bool,
    /// At the last check: no interrupt could be delivered, none was due.
    quiet: bool,
    last_tsc: u64,
    counts: (u64, u64, u64, u64),
}

/// The divisor TDCR bits 3, 1, 0 select (SDM Figure 10-10).
fn divisor(tdcr: u32) -> u64 {
    match (tdcr >> 1 & 4) | (tdcr & 3) {
        0 => 2,
        1 => 4,
        2 => 8,
        3 => 16,
        4 => 32,
        5 => 64,
        6 => 128,
        _ => 1,
    }
}

impl Shadow {
    fn new(config: LapicModelConfig, model: &LapicModel) -> Self {
        Shadow {
            config,
            version: None,
            load: None,
            deadline: None,
            deep: false,
            quiet: false,
            last_tsc: model.rdtsc(),
            counts: (0, 0, 0, 0),
        }
    }

    fn mode(model: &LapicModel) -> Mode {
        let base = model
            .rdmsr(IA32_APIC_BASE)
            .expect("IA32_APIC_BASE always reads");
        match (base & APIC_BASE_EN != 0, base & APIC_BASE_EXTD != 0) {
            (false, _) => Mode::Disabled,
            (true, false) => Mode::XApic,
            (true, true) => Mode::X2Apic,
        }
    }

    /// A register through whichever interface is decoded now.
    fn reg(model: &LapicModel, mode: Mode, off: usize) -> Option<u32> {
        match mode {
            Mode::Disabled => None,
            Mode::XApic => Some(model.read32(off)),
            Mode::X2Apic => {
                Some(model.rdmsr(msr_of(off)).expect("an x2APIC register reads") as u32)
            }
        }
    }

    /// What a write to `off` does to the predictions; `lvt_before` is the
    /// LVT timer register before it.
    fn wrote(&mut self, model: &LapicModel, now: Ktime, off: usize, value: u32, lvt_before: u32) {
        let mode = Self::mode(model);
        match off {
            TMICT => {
                let lvt = Self::reg(model, mode, LVTT).unwrap_or(0);
                let deadline_mode = (lvt >> 17) & 3 == 2;
                let tdcr = Self::reg(model, mode, TDCR).unwrap_or(0);
                // Stopped in deep idle (no ARAT), it does not count yet.
                let frozen = self.deep && !self.config.arat;
                self.load = (!deadline_mode && !frozen && mode != Mode::Disabled).then_some(Load {
                    at: now,
                    initial: value as u64,
                    divisor: divisor(tdcr),
                });
            }
            TDCR => self.load = None,
            LVTT => {
                // A mode change disarms the timer or changes what the
                // count means (§10.5.4.1); the same mode keeps both.
                let lvt = Self::reg(model, mode, LVTT).unwrap_or(0);
                if (lvt ^ lvt_before) >> 17 & 3 != 0 {
                    self.load = None;
                    self.deadline = None;
                }
            }
            _ => {}
        }
    }

    fn step(&mut self, model: &LapicModel, clock: &VirtualClock, step: Step) -> u64 {
        let now = clock.now();
        let mode = Self::mode(model);
        match step {
            Step::Advance(ns) => {
                clock.advance_by(Nanos::from_nanos(ns));
                1
            }
            Step::Read32(off) => {
                let v = model.read32(off);
                if mode != Mode::XApic || off >= PAGE || off % 16 != 0 {
                    assert_eq!(
                        v,
                        u32::MAX,
                        "read32({off:#x}) where the page is not decoded"
                    );
                    return 2;
                }
                4
            }
            Step::Write32(off, v) => {
                let lvt_before = Self::reg(model, mode, LVTT).unwrap_or(0);
                model.write32(off, v);
                if mode == Mode::XApic && off < PAGE && off % 16 == 0 {
                    self.wrote(model, now, off, v, lvt_before);
                }
                8
            }
            Step::Read64(off) => {
                assert_eq!(
                    model.read64(off),
                    u64::MAX,
                    "read64({off:#x}): xAPIC is 32-bit"
                );
                16
            }
            Step::Write64(off, v) => {
                let before = self.snapshot(model);
                model.write64(off, v);
                assert_eq!(
                    before,
                    self.snapshot(model),
                    "write64({off:#x}) changed a register"
                );
                16
            }
            Step::Rdmsr(m) => {
                let r = model.rdmsr(m);
                self.msr_fault_rules(m, r.is_err(), mode, false);
                32
            }
            Step::Wrmsr(m, v) => {
                let lvt_before = Self::reg(model, mode, LVTT).unwrap_or(0);
                let r = model.wrmsr(m, v);
                self.msr_fault_rules(m, r.is_err(), mode, true);
                match m {
                    // Disabling resets every register (SDM §10.4.3);
                    // xAPIC → x2APIC keeps them.
                    IA32_APIC_BASE if r.is_ok() && Self::mode(model) == Mode::Disabled => {
                        self.load = None;
                        self.deadline = None;
                    }
                    IA32_TSC_DEADLINE if r.is_ok() => self.set_deadline(model, mode, v),
                    0x800..=0x8FF if r.is_ok() => {
                        self.wrote(model, now, (m as usize - 0x800) * 16, v as u32, lvt_before)
                    }
                    _ => {}
                }
                64 | (r.is_ok() as u64) << 7
            }
            Step::Deadline(delta) => {
                let d = model.rdtsc().wrapping_add(delta as u64);
                let r = model.wrmsr(IA32_TSC_DEADLINE, d);
                assert_eq!(
                    r.is_ok(),
                    self.config.tsc_deadline,
                    "IA32_TSC_DEADLINE faults iff absent"
                );
                if r.is_ok() {
                    self.set_deadline(model, mode, d);
                }
                256
            }
            Step::Rdtsc => {
                model.rdtsc();
                512
            }
            Step::DeepIdle(deep) => {
                model.set_deep_idle(deep);
                if !self.config.arat && deep && !self.deep {
                    self.load = None; // the count freezes: no exact prediction
                }
                self.deep = deep;
                1024
            }
            Step::Fire(limit) => {
                let (moved, delivered) = crate::fire(model, clock, limit, || model.interrupts())
                    .unwrap_or_else(|e| panic!("{e}"));
                self.counts.0 += delivered as u64;
                2048 | (moved as u64) << 12 | (delivered as u64) << 13
            }
        }
    }

    fn set_deadline(&mut self, model: &LapicModel, mode: Mode, d: u64) {
        let lvt = Self::reg(model, mode, LVTT).unwrap_or(0);
        if mode != Mode::Disabled && (lvt >> 17) & 3 == 2 {
            self.deadline = (d != 0).then_some(d);
        }
    }

    /// Which MSR accesses must fault (SDM §10.12.1.2, Table 10-6; §10.5.4.1).
    fn msr_fault_rules(&self, m: u32, faulted: bool, mode: Mode, write: bool) {
        match m {
            IA32_TSC_DEADLINE => assert_eq!(
                faulted, !self.config.tsc_deadline,
                "IA32_TSC_DEADLINE faults iff CPUID has no TSC-deadline"
            ),
            0x800..=0x8FF if mode != Mode::X2Apic => {
                assert!(faulted, "x2APIC MSR {m:#x} outside x2APIC mode")
            }
            0x802 | 0x803 | 0x839 if write => {
                assert!(faulted, "write to read-only x2APIC MSR {m:#x}")
            }
            IA32_APIC_BASE if !write => assert!(!faulted),
            _ => {}
        }
    }

    fn snapshot(&self, model: &LapicModel) -> Vec<u32> {
        REGS.iter().map(|&off| model.read32(off)).collect()
    }

    fn observe(&mut self, model: &LapicModel, clock: &VirtualClock) -> Check {
        let now = clock.now();
        let tsc = model.rdtsc();
        let want_tsc = now.as_nanos() as u128 * self.config.tsc.get() as u128 / 1_000_000_000;
        ensure(tsc >= self.last_tsc, || {
            format!("TSC {tsc} after {}", self.last_tsc)
        })?;
        // Past 2^64 (a rate of ~10¹⁸ Hz and more) the model saturates.
        ensure(
            want_tsc > u64::MAX as u128 || tsc as u128 == want_tsc,
            || format!("TSC {tsc}, ⌊t·f/10⁹⌋ = {want_tsc}"),
        )?;
        self.last_tsc = tsc;

        let counts = (
            model.interrupts(),
            model.eois(),
            model.coalesced(),
            model.suppressed(),
        );
        ensure(counts.0 == self.counts.0, || {
            format!(
                "{} interrupts delivered, fire() said {}",
                counts.0, self.counts.0
            )
        })?;
        ensure(
            counts.1 >= self.counts.1 && counts.2 >= self.counts.2 && counts.3 >= self.counts.3,
            || format!("a count went down: {:?} → {counts:?}", self.counts),
        )?;
        self.counts = counts;

        let mode = Self::mode(model);
        if mode != Mode::XApic {
            ensure(model.read32(TMCCT) == u32::MAX, || {
                "the xAPIC page answers while not decoded".into()
            })?;
        }
        if mode != Mode::X2Apic {
            ensure(model.rdmsr(msr_of(TMCCT)).is_err(), || {
                "an x2APIC MSR reads outside x2APIC mode".into()
            })?;
        }
        let Some(lvt) = Self::reg(model, mode, LVTT) else {
            self.quiet = model.next_fire().is_none();
            return Ok(());
        };
        let reg = |off| Self::reg(model, mode, off).expect("decoded");
        let (id, version, svr, tdcr) = (reg(ID), reg(VERSION), reg(SVR), reg(TDCR));
        let want_id = if mode == Mode::X2Apic {
            self.config.cpu as u32
        } else {
            (self.config.cpu as u32) << 24
        };
        ensure(id == want_id, || {
            format!("APIC ID reads {id:#x}, want {want_id:#x}")
        })?;
        ensure(*self.version.get_or_insert(version) == version, || {
            "the version register changed".into()
        })?;
        ensure(svr & 0xFFFF_EC00 == 0, || {
            format!("SVR reserved bits: {svr:#x}")
        })?;
        ensure(tdcr & !0xB == 0, || {
            format!("TDCR reserved bits: {tdcr:#x}")
        })?;
        let mut reserved = 0xFFF8_0000 | 0xE000 | 0x0F00;
        if !self.config.tsc_deadline {
            reserved |= 1 << 18;
        }
        ensure(lvt & reserved == 0, || {
            format!("LVT timer reserved bits: {lvt:#x}")
        })?;
        let software_enabled = svr & 0x100 != 0;
        ensure(software_enabled || lvt & LVT_MASKED != 0, || {
            format!("software-disabled APIC with an unmasked LVT timer {lvt:#x}")
        })?;

        let (tmict, tmcct) = (reg(TMICT), reg(TMCCT));
        ensure(tmcct <= tmict, || format!("TMCCT {tmcct} > TMICT {tmict}"))?;
        let timer_mode = (lvt >> 17) & 3;
        if timer_mode == 2 {
            ensure(tmcct == 0, || format!("TMCCT {tmcct} in TSC-deadline mode"))?;
            if self.config.tsc_deadline {
                let d = model.rdmsr(IA32_TSC_DEADLINE).expect("present");
                let stopped = self.deep && !self.config.arat;
                match self.deadline {
                    Some(want) if tsc >= want && !stopped => ensure(d == 0, || {
                        format!("deadline {want} passed (TSC {tsc}) and still armed: reads {d}")
                    })?,
                    Some(want) if tsc < want => ensure(d == want, || {
                        format!("IA32_TSC_DEADLINE reads {d}, {want} was written")
                    })?,
                    Some(_) => {}
                    None => ensure(d == 0, || format!("IA32_TSC_DEADLINE {d} with none armed"))?,
                }
                if d == 0 {
                    self.deadline = None;
                }
            }
        } else {
            if self.config.tsc_deadline {
                let d = model.rdmsr(IA32_TSC_DEADLINE).expect("present");
                ensure(d == 0, || {
                    format!("IA32_TSC_DEADLINE {d} outside TSC-deadline mode")
                })?;
            }
            if let Some(l) = self.load.filter(|l| l.initial == tmict as u64) {
                let ns = (now.as_nanos() - l.at.as_nanos()) as u128;
                let rate = l.divisor as u128 * 1_000_000_000;
                let elapsed = ns * self.config.bus.get() as u128 / rate;
                let n = l.initial as u128;
                let want = match (timer_mode, n) {
                    (_, 0) => 0,
                    (1, n) => n - elapsed % n,
                    (_, n) => n.saturating_sub(elapsed),
                };
                ensure(tmcct as u128 == want, || {
                    format!(
                        "TMCCT {tmcct}, want {want}: {n} loaded at {} ÷{}, {elapsed} ticks at {now}",
                        l.at, l.divisor
                    )
                })?;
            }
        }
        // Masked since the last check with nothing due then: nothing due now.
        let blocked = !software_enabled || lvt & LVT_MASKED != 0;
        let due = model.next_fire();
        if blocked && self.quiet {
            ensure(due.is_none(), || {
                format!("masked LVT, and an interrupt due at {due:?}")
            })?;
        }
        self.quiet = blocked && due.is_none();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_lapic_short_pass() {
        crate::short_pass::<Lapic>(1_500);
    }

    #[test]
    fn divide_encoding_is_the_sdms() {
        // Figure 10-10: 1011 is ÷1, 0000 ÷2, 1010 ÷128.
        assert_eq!(divisor(0b1011), 1);
        assert_eq!(divisor(0b0000), 2);
        assert_eq!(divisor(0b0011), 16);
        assert_eq!(divisor(0b1010), 128);
    }
}
