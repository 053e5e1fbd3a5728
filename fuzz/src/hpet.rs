//! The HPET model's register file (`hpet::model::HpetModel`).
//!
//! Inputs are an HPET configuration (period, including 0 and out-of-spec
//! values; 1 to 40 comparators, clamped to 32; 32- or 64-bit counter;
//! LegacyReplacement or not) and a sequence of steps: 32- and 64-bit reads
//! and writes at register offsets, misaligned and outside the 1 KiB block,
//! of random and edge values, interleaved with virtual time advancing (by
//! 0 ns to ~18 minutes) and with comparator interrupts fired, early or on
//! time.
//!
//! Invariants, checked after every step (IA-PC HPET 1.0a, section named;
//! "model" where the specification leaves the choice to the model's docs):
//! - never a panic;
//! - `GCAP_ID` (§2.3.4) is read-only and says what the configuration is:
//!   `REV_ID`, `NUM_TIM_CAP` = comparators − 1, `COUNT_SIZE_CAP`,
//!   `LEG_RT_CAP`, `VENDOR_ID`, `COUNTER_CLK_PERIOD`;
//! - `GEN_CONF` (§2.3.5): bits 63:2 reserved, read 0; `LEG_RT_CNF` reads 0
//!   without `LEG_RT_CAP`; `ENABLE_CNF` reads what was last written;
//! - `GINTR_STA` (§2.3.6): bits of comparators that do not exist read 0;
//!   a set bit belongs to a level-triggered comparator (model: edge mode
//!   latches nothing);
//! - the main counter (§2.3.7): its two 32-bit halves read at one instant
//!   are the 64-bit read; a 32-bit counter's upper half reads 0; while
//!   `ENABLE_CNF` is set it counts one per `COUNTER_CLK_PERIOD` fs from
//!   where it was enabled, exactly (`⌊Δt·10⁶/period⌋`, mod 2^32 for a 32-bit
//!   counter; model: a period of 0 never counts), and is not changed by
//!   writes (model: ignored while running, as QEMU); halted, it holds its
//!   value or what was written;
//! - `Tn_CONF_CAP` (§2.3.8), of the timers whose registers fit in the
//!   block (24; see `TIMERS_IN_BLOCK`): the capability bits (`Tn_PER_INT_CAP`,
//!   `Tn_SIZE_CAP`, `Tn_FSB_INT_DEL_CAP`, `Tn_INT_ROUTE_CAP`) never change;
//!   reserved bits 0, 7 and 31:16 read 0; `Tn_TYPE_CNF` reads 0 without
//!   `Tn_PER_INT_CAP`, `Tn_32MODE_CNF` 0 without `Tn_SIZE_CAP`,
//!   `Tn_FSB_EN_CNF` 0 without `Tn_FSB_INT_DEL_CAP`; `Tn_INT_ROUTE_CNF` is
//!   a route `Tn_INT_ROUTE_CAP` allows, or the reset value;
//! - reserved offsets inside the block read 0; misaligned accesses and
//!   offsets past it read all ones (`hw::Mmio`'s contract) and writes there
//!   change no register;
//! - interrupts (`hw::InterruptSource`): `fire` before `next_fire` delivers
//!   nothing; the delivered count moves only when `fire` says it
//!   delivered; match, interrupt and coalesced counts never go down.

use clocksource::{Ktime, Nanos};
use hpet::model::{HpetModel, HpetModelConfig};
use hpet::{CounterPeriod, IrqPins};
use hw::Mmio;
use sim::clock::VirtualClock;

use crate::{ensure, Check, Gen, Target};

/// The HPET target.
pub struct Hpet;

// Register offsets (§2.3.1, Table 2 "Memory-Mapped Register Space").
const GCAP_ID: usize = 0x000;
const GEN_CONF: usize = 0x010;
const GINTR_STA: usize = 0x020;
const MAIN_CNT: usize = 0x0F0;
const BLOCK: usize = 0x400;
/// Timers whose registers fit in the block: 0x100 + 0x20·n < 0x400. (The
/// specification reserves 0x160–0x3FF for "timers 3–31", room for 24; a
/// model configured with more advertises timers it cannot show.)
const TIMERS_IN_BLOCK: usize = (BLOCK - 0x100) / 0x20;
const fn tn_conf(n: usize) -> usize {
    0x100 + 0x20 * n
}
const fn tn_cmp(n: usize) -> usize {
    0x108 + 0x20 * n
}

// Tn_CONF_CAP bits (§2.3.8).
const INT_TYPE_CNF: u64 = 1 << 1;
const TYPE_CNF: u64 = 1 << 3;
const PER_INT_CAP: u64 = 1 << 4;
const SIZE_CAP: u64 = 1 << 5;
const MODE32_CNF: u64 = 1 << 8;
const ROUTE_SHIFT: u32 = 9;
const FSB_EN_CNF: u64 = 1 << 14;
const FSB_INT_DEL_CAP: u64 = 1 << 15;
const CAP_BITS: u64 = PER_INT_CAP | SIZE_CAP | FSB_INT_DEL_CAP | 0xFFFF_FFFF << 32;
const RESERVED_BITS: u64 = 1 | 1 << 7 | 0xFFFF << 16;

/// One step.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Virtual time moves on.
    Advance(u64),
    /// `read32(offset)`.
    Read32(usize),
    /// `read64(offset)`.
    Read64(usize),
    /// `write32(offset, value)`.
    Write32(usize, u32),
    /// `write64(offset, value)`.
    Write64(usize, u64),
    /// Comparator `n`'s interrupt: `fire` once early (if it is in the
    /// future), then time moves to `next_fire` (if at most `limit` ns
    /// ahead) and `fire` again.
    Fire(usize, u64),
}

/// One input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The HPET.
    pub config: HpetModelConfig,
    /// What is done to it.
    pub steps: Vec<Step>,
}

fn offset(g: &mut Gen, comparators: usize) -> usize {
    let n = g.below(comparators as u64 + 2) as usize;
    match g.below(16) {
        0..=1 => GEN_CONF + 4 * g.below(2) as usize,
        2..=3 => MAIN_CNT + 4 * g.below(2) as usize,
        4 => GINTR_STA + 4 * g.below(2) as usize,
        5 => GCAP_ID + 4 * g.below(2) as usize,
        6..=8 => tn_conf(n) + 4 * g.below(2) as usize,
        9..=10 => tn_cmp(n) + 4 * g.below(2) as usize,
        11 => tn_conf(n) + 0x10 + 4 * g.below(4) as usize,
        12 => g.below(BLOCK as u64) as usize & !3,
        13 => g.below(BLOCK as u64) as usize,
        14 => BLOCK + g.below(64) as usize - 8,
        _ => *g.pick(&[usize::MAX, usize::MAX - 3, usize::MAX - 7, 1 << 40]),
    }
}

fn value(g: &mut Gen, off: usize) -> u64 {
    match (off & !7, g.below(3)) {
        (GEN_CONF, 0 | 1) => g.below(4),
        (o, 0) if o >= 0x100 && (o - 0x100) % 0x20 == 0 => {
            // A plausible Tn_CONF: type, enable, periodic, val-set, 32-bit, route.
            let route = g.below(32) << ROUTE_SHIFT;
            (g.u64() & 0x17E) | route | (g.below(2) << 14)
        }
        _ => g.interesting_u64(),
    }
}

impl Target for Hpet {
    const NAME: &'static str = "hpet";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let base = if g.chance(1, 2) {
            HpetModelConfig::qemu()
        } else {
            HpetModelConfig::chipset()
        };
        let period = g.pick_or(
            &[10_000_000, 69_841_279, 100_000_000, 1, 100_000, 0, u32::MAX],
            Gen::u32,
        );
        // Many comparators are rare: every access syncs each of them.
        let comparators = match g.below(32) {
            0 => *g.pick(&[0u8, 32, 40]),
            _ => g.range(1, 4) as u8,
        };
        let config = base
            .period(CounterPeriod::from_fs(period))
            .comparators(comparators)
            .counter_64bit(g.chance(3, 4))
            .legacy_capable(g.chance(1, 2))
            .revision(g.u8())
            .periodic_capable(if g.chance(1, 2) { u32::MAX } else { g.u32() })
            .route_cap(IrqPins::from_bits(if g.chance(1, 2) {
                0x00FF_0104
            } else {
                g.u32()
            }));
        let n = (comparators as usize).clamp(1, 32);
        let steps = (0..g.range(1, 48))
            .map(|_| match g.below(12) {
                0..=2 => Step::Advance(g.advance_ns(100)),
                3..=4 => Step::Read32(offset(g, n)),
                5 => Step::Read64(offset(g, n)),
                6..=8 => {
                    let off = offset(g, n);
                    let v = value(g, off);
                    Step::Write32(off, (v >> (32 * (off & 4 != 0) as u32)) as u32)
                }
                9..=10 => {
                    let off = offset(g, n);
                    Step::Write64(off, value(g, off))
                }
                _ => Step::Fire(g.below(n as u64 + 1) as usize, g.advance_ns(100)),
            })
            .collect();
        Input { config, steps }
    }

    fn check(input: &Input) -> u64 {
        let clock = VirtualClock::starting_at(Ktime::from_nanos(1_000));
        let model = HpetModel::new(clock.clone(), input.config);
        let mut s = Shadow::new(&input.config, &model, &clock);
        crate::drive(&input.steps, |step| {
            let bits = s.step(&model, &clock, step)?;
            s.observe(&model, &clock).map(|()| bits)
        })
    }
}

/// What the harness knows independently of the model.
struct Shadow {
    caps: u64,
    n: usize,
    legacy: bool,
    mask: u64,
    period_fs: u64,
    enabled: bool,
    /// Running: the time and value counting started from. Halted: the
    /// value held (time unused).
    base: (Ktime, u64),
    initial_conf: Vec<u64>,
    counts: Vec<(u64, u64, u64)>,
}

impl Shadow {
    fn new(c: &HpetModelConfig, model: &HpetModel, clock: &VirtualClock) -> Self {
        let n = (c.comparators as usize).clamp(1, 32);
        let caps = c.revision as u64
            | ((n as u64 - 1) << 8)
            | (c.counter_64bit as u64) << 13
            | (c.legacy_capable as u64) << 15
            | (c.vendor_id as u64) << 16
            | (c.period.as_fs() as u64) << 32;
        let initial_conf = (0..n.min(TIMERS_IN_BLOCK))
            .map(|i| model.read64(tn_conf(i)))
            .collect();
        Shadow {
            caps,
            n,
            legacy: c.legacy_capable,
            mask: if c.counter_64bit {
                u64::MAX
            } else {
                u32::MAX as u64
            },
            period_fs: c.period.as_fs() as u64,
            enabled: false,
            base: (clock.now(), 0),
            initial_conf,
            counts: vec![(0, 0, 0); n],
        }
    }

    /// The main counter the specification says, at `now`.
    fn counter_at(&self, now: Ktime) -> u64 {
        if !self.enabled || self.period_fs == 0 {
            return self.base.1;
        }
        let ns = now.as_nanos() - self.base.0.as_nanos();
        let ticks = ns as u128 * 1_000_000 / self.period_fs as u128;
        self.base.1.wrapping_add(ticks as u64) & self.mask
    }

    /// Applies a write's effect on what the shadow tracks: `ENABLE_CNF`
    /// and the halted counter.
    fn wrote(&mut self, now: Ktime, off: usize, value: u64, mask: u64) {
        if off >= BLOCK {
            return;
        }
        match off & !7 {
            GEN_CONF if mask & 1 != 0 => {
                let enable = value & 1 != 0;
                if enable != self.enabled {
                    let v = self.counter_at(now);
                    self.enabled = enable;
                    self.base = (now, v);
                }
            }
            MAIN_CNT if !self.enabled => {
                let v = (self.base.1 & !mask) | (value & mask);
                self.base = (now, v & self.mask);
            }
            _ => {}
        }
    }

    fn step(&mut self, model: &HpetModel, clock: &VirtualClock, step: Step) -> Result<u64, String> {
        let now = clock.now();
        let outside = |off: usize, width: usize| off % width != 0 || off >= BLOCK;
        Ok(match step {
            Step::Advance(ns) => {
                clock.advance_by(Nanos::from_nanos(ns));
                1
            }
            Step::Read32(off) => {
                let v = model.read32(off) as u64;
                ensure(!outside(off, 4) || v == u32::MAX as u64, || {
                    format!("read32({off:#x}) outside the registers reads {v:#x}")
                })?;
                2 << outside(off, 4) as u32
            }
            Step::Read64(off) => {
                let v = model.read64(off);
                ensure(!outside(off, 8) || v == u64::MAX, || {
                    format!("read64({off:#x}) outside the registers reads {v:#x}")
                })?;
                8 << outside(off, 8) as u32
            }
            Step::Write32(off, v) => {
                let shift = (off & 4) * 8;
                self.write(
                    model,
                    now,
                    off,
                    4,
                    (v as u64) << shift,
                    0xFFFF_FFFF << shift,
                )?
            }
            Step::Write64(off, v) => self.write(model, now, off, 8, v, u64::MAX)?,
            Step::Fire(n, limit) => {
                let (moved, delivered) =
                    crate::fire(&model.irq(n), clock, limit, || model.interrupts(n))?;
                if n < self.n {
                    self.counts[n].1 += delivered as u64;
                }
                512 | (moved as u64) << 10 | (delivered as u64) << 11
            }
        })
    }

    /// A write of `width` bytes at `off` (`value` and `mask` placed in the
    /// 64-bit register): outside the registers it changes nothing.
    fn write(
        &mut self,
        model: &HpetModel,
        now: Ktime,
        off: usize,
        width: usize,
        value: u64,
        mask: u64,
    ) -> Result<u64, String> {
        let outside = off % width != 0 || off >= BLOCK;
        let before = outside.then(|| self.snapshot(model));
        if width == 4 {
            model.write32(off, (value >> ((off & 4) * 8)) as u32);
        } else {
            model.write64(off, value);
        }
        if let Some(b) = before {
            ensure(b == self.snapshot(model), || {
                format!("a {width}-byte write at {off:#x} changed a register")
            })?;
            return Ok(32 << (width / 4));
        }
        self.wrote(now, off, value, mask);
        Ok(128 << (width / 4))
    }

    /// Every register, read at one instant.
    fn snapshot(&self, model: &HpetModel) -> Vec<u64> {
        let mut v = vec![
            model.read64(GCAP_ID),
            model.read64(GEN_CONF),
            model.read64(GINTR_STA),
            model.read64(MAIN_CNT),
        ];
        for i in 0..self.n.min(TIMERS_IN_BLOCK) {
            v.push(model.read64(tn_conf(i)));
            v.push(model.read64(tn_cmp(i)));
        }
        v
    }

    fn observe(&mut self, model: &HpetModel, clock: &VirtualClock) -> Check {
        let now = clock.now();
        let caps = model.read64(GCAP_ID);
        ensure(caps == self.caps, || {
            format!("GCAP_ID {caps:#x}, the configuration says {:#x}", self.caps)
        })?;
        ensure(
            model.read32(GCAP_ID) == caps as u32
                && model.read32(GCAP_ID + 4) == (caps >> 32) as u32,
            || "GCAP_ID halves".into(),
        )?;
        let gen = model.read64(GEN_CONF);
        ensure(gen & !3 == 0, || {
            format!("GEN_CONF reserved bits set: {gen:#x}")
        })?;
        ensure(self.legacy || gen & 2 == 0, || {
            "LEG_RT_CNF set without LEG_RT_CAP".into()
        })?;
        ensure((gen & 1 != 0) == self.enabled, || {
            format!(
                "ENABLE_CNF reads {}, last written {}",
                gen & 1,
                self.enabled
            )
        })?;

        let v = model.read64(MAIN_CNT);
        let (lo, hi) = (model.read32(MAIN_CNT), model.read32(MAIN_CNT + 4));
        ensure(lo == v as u32 && hi == (v >> 32) as u32, || {
            format!("MAIN_CNT {v:#x} but halves {hi:#x}:{lo:#x} at the same instant")
        })?;
        ensure(v & !self.mask == 0, || {
            format!("a 32-bit counter reads {v:#x}")
        })?;
        let want = self.counter_at(now);
        ensure(v == want, || {
            format!(
                "MAIN_CNT {v:#x} at {now}, the period and enable history say {want:#x} \
                 (enabled {}, from {:#x} at {})",
                self.enabled, self.base.1, self.base.0
            )
        })?;

        let sta = model.read64(GINTR_STA);
        ensure(self.n == 64 || sta >> self.n == 0, || {
            format!("GINTR_STA {sta:#x}: bits of comparators that do not exist")
        })?;
        for i in 0..self.n {
            let counts = (model.matches(i), model.interrupts(i), model.coalesced(i));
            let (m0, i0, c0) = self.counts[i];
            ensure(counts.0 >= m0 && counts.2 >= c0, || {
                format!("T{i} match or coalesced count went down")
            })?;
            ensure(counts.1 == i0, || {
                format!("T{i} delivered {} interrupts, fire() said {i0}", counts.1)
            })?;
            self.counts[i] = counts;
            if i >= TIMERS_IN_BLOCK {
                continue;
            }
            let conf = model.read64(tn_conf(i));
            let init = self.initial_conf[i];
            ensure(conf & CAP_BITS == init & CAP_BITS, || {
                format!("T{i}_CONF_CAP capability bits changed: {init:#x} → {conf:#x}")
            })?;
            ensure(conf & RESERVED_BITS == 0, || {
                format!("T{i}_CONF_CAP reserved bits set: {conf:#x}")
            })?;
            ensure(conf & PER_INT_CAP != 0 || conf & TYPE_CNF == 0, || {
                format!("T{i} periodic without Tn_PER_INT_CAP")
            })?;
            ensure(conf & SIZE_CAP != 0 || conf & MODE32_CNF == 0, || {
                format!("T{i} Tn_32MODE_CNF set on a 32-bit timer")
            })?;
            ensure(
                conf & FSB_INT_DEL_CAP != 0 || conf & FSB_EN_CNF == 0,
                || format!("T{i} FSB delivery without Tn_FSB_INT_DEL_CAP"),
            )?;
            let route = (conf >> ROUTE_SHIFT) & 0x1F;
            let allowed = (conf >> 32) & (1 << route) != 0;
            ensure(allowed || route == (init >> ROUTE_SHIFT) & 0x1F, || {
                format!("T{i} routed to {route}, which Tn_INT_ROUTE_CAP does not allow")
            })?;
            ensure(sta & (1 << i) == 0 || conf & INT_TYPE_CNF != 0, || {
                format!("GINTR_STA bit {i} set for an edge-triggered comparator")
            })?;
        }
        // Reserved offsets read 0 (§2.3.1: "reserved").
        for off in [
            0x008,
            0x018,
            0x028,
            0x0E8,
            0x0F8,
            tn_conf(self.n),
            tn_conf(0) + 0x18,
        ] {
            if off < BLOCK {
                let r = model.read64(off);
                ensure(r == 0, || format!("reserved offset {off:#x} reads {r:#x}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_hpet_short_pass() {
        crate::short_pass::<Hpet>(1_500);
    }

    #[test]
    fn the_counter_check_follows_the_period() {
        // 10 ns per tick (QEMU's 100 MHz): enabled 1 µs, 100 ticks.
        let input = Input {
            config: HpetModelConfig::qemu(),
            steps: vec![
                Step::Write64(GEN_CONF, 1),
                Step::Advance(1_000),
                Step::Write64(GEN_CONF, 0),
                Step::Write64(MAIN_CNT, 5),
                Step::Write64(MAIN_CNT, 7),
                Step::Advance(1_000),
            ],
        };
        Hpet::check(&input);
        let clock = VirtualClock::starting_at(Ktime::from_nanos(1_000));
        let model = HpetModel::new(clock.clone(), HpetModelConfig::qemu());
        let mut s = Shadow::new(&HpetModelConfig::qemu(), &model, &clock);
        s.step(&model, &clock, Step::Write64(GEN_CONF, 1)).unwrap();
        s.step(&model, &clock, Step::Advance(1_000)).unwrap();
        assert_eq!(s.counter_at(clock.now()), 100);
        assert_eq!(model.read64(MAIN_CNT), 100);
    }
}
