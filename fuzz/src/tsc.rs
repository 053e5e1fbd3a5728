//! The TSC model (`tsc::model::TscModel`).
//!
//! Inputs are a TSC (frequency from 1 Hz to ~18 GHz, initial value
//! anywhere, invariant or not) and a sequence of steps: `rdtsc`, drift set
//! (realistic ppm and the extremes of `i64`), deep idle entered and left,
//! stuck and unstuck, `WRMSR IA32_TIME_STAMP_COUNTER` writes, interleaved
//! with virtual time advancing.
//!
//! Invariants, checked after every step (Intel SDM Vol. 3B §18.17 "Time-Stamp
//! Counter"; the drift, stuck and deep-idle behaviours as the model's docs
//! state them):
//! - never a panic;
//! - the value is exactly what the rates say: from the last write (or the
//!   start), the sum over the segments since of `Δt · f · (10⁹ + ppb)`
//!   atto-cycles, whole cycles counted (mod 2^64) — so it never goes back
//!   and a drift change leaves no step; a stuck TSC, and a non-invariant
//!   TSC in deep idle, count nothing; an invariant TSC counts in deep idle;
//! - a write sets the value; `rdtsc` and `value` agree, and only `rdtsc`
//!   counts as a read; `true_frequency` is `⌊f·(10⁹ + ppb)/10⁹⌋` while it
//!   runs, 0 while it does not.
//!
//! Drifts beyond ±10⁹ ppb (where the model saturates) are run for panics,
//! and the value is then only required not to move while stopped.

use clocksource::{Hertz, Ktime, Nanos};
use hw::TscRead;
use sim::clock::VirtualClock;
use tsc::model::{TscModel, TscModelConfig};

use crate::{Gen, Target};

/// The TSC target.
pub struct Tsc;

/// One step.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Virtual time moves on.
    Advance(u64),
    /// `rdtsc`.
    Read,
    /// `set_drift_ppb`.
    Drift(i64),
    /// `set_deep_idle`.
    DeepIdle(bool),
    /// `set_stuck`.
    Stuck(bool),
    /// `write` (`WRMSR IA32_TIME_STAMP_COUNTER`).
    Write(u64),
}

/// One input.
#[derive(Debug, Clone)]
pub struct Input {
    /// Nominal frequency, Hz.
    pub frequency: u64,
    /// The value at creation.
    pub initial: u64,
    /// Invariant TSC.
    pub invariant: bool,
    /// What is done to it.
    pub steps: Vec<Step>,
}

const GIGA: u128 = 1_000_000_000;
const ATTO: u128 = GIGA * GIGA;

impl Target for Tsc {
    const NAME: &'static str = "tsc";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let frequency = g.pick_or(&[2_400_000_000, 1_000_000_000, 3_579_545, 1], |g| {
            g.range(1, 18_000_000_000)
        });
        let steps = (0..g.range(1, 48))
            .map(|_| match g.below(10) {
                0..=2 => Step::Advance(match g.below(4) {
                    0 => g.below(10),
                    1 => g.below(1_000_000),
                    2 => g.below(10_000_000_000),
                    _ => 1 << g.range(30, 42),
                }),
                3..=4 => Step::Read,
                5 => Step::Drift(match g.below(5) {
                    0 => 0,
                    1 => g.range(0, 4_000_000) as i64 - 2_000_000,
                    2 => *g.pick(&[-1_000_000_000, 1_000_000_000, -999_999_999]),
                    3 => *g.pick(&[i64::MIN, i64::MAX, i64::MIN + 1]),
                    _ => g.u64() as i64,
                }),
                6 => Step::DeepIdle(g.chance(1, 2)),
                7 => Step::Stuck(g.chance(1, 3)),
                _ => Step::Write(g.interesting_u64()),
            })
            .collect();
        Input {
            frequency,
            initial: g.interesting_u64(),
            invariant: g.chance(1, 2),
            steps,
        }
    }

    fn check(input: &Input) -> u64 {
        let clock = VirtualClock::starting_at(Ktime::from_nanos(1_000));
        let config = TscModelConfig::new(Hertz::new(input.frequency))
            .initial(input.initial)
            .invariant(input.invariant);
        let model = TscModel::new(clock.clone(), config);
        let mut s = Shadow::new(input, clock.now());
        crate::drive(&input.steps, |step| {
            let bits = s.step(&model, &clock, step);
            s.observe(&model, &clock).map(|()| bits)
        })
    }
}

/// The TSC as the SDM's rate and the model's documented faults say.
struct Shadow {
    f: u128,
    invariant: bool,
    /// The value at the last write (or creation) plus the whole cycles of
    /// closed segments.
    value: u64,
    /// Atto-cycles not yet whole (below 10¹⁸).
    atto: u128,
    /// Start of the open segment.
    since: Ktime,
    ppb: i64,
    deep: bool,
    stuck: bool,
    /// No drift beyond ±10⁹ ppb since the last write: the value is predicted.
    exact: bool,
    /// Not `exact` and stopped: the value it must keep.
    held: Option<u64>,
    reads: u64,
}

impl Shadow {
    /// The shadow of a TSC created at `now`.
    fn new(input: &Input, now: Ktime) -> Self {
        Shadow {
            f: input.frequency as u128,
            invariant: input.invariant,
            value: input.initial,
            atto: 0,
            since: now,
            ppb: 0,
            deep: false,
            stuck: false,
            exact: true,
            held: None,
            reads: 0,
        }
    }

    fn running(&self) -> bool {
        !self.stuck && (!self.deep || self.invariant)
    }

    fn rate(&self) -> u128 {
        (GIGA as i128 + self.ppb as i128).max(0) as u128
    }

    /// The value now: the closed segments plus the open one.
    fn at(&self, now: Ktime) -> (u64, u128) {
        if !self.running() || !self.exact {
            return (self.value, self.atto);
        }
        let dt = (now.as_nanos() - self.since.as_nanos()) as u128;
        // dt < 2^48, f < 2^35, rate ≤ 2·10⁹ < 2^31: the product fits.
        let total = self.atto + dt * self.f * self.rate();
        (self.value.wrapping_add((total / ATTO) as u64), total % ATTO)
    }

    /// Closes the open segment at `now`.
    fn settle(&mut self, now: Ktime) {
        (self.value, self.atto) = self.at(now);
        self.since = now;
    }

    fn step(&mut self, model: &TscModel, clock: &VirtualClock, step: Step) -> u64 {
        let now = clock.now();
        match step {
            Step::Advance(ns) => {
                clock.advance_by(Nanos::from_nanos(ns));
                1
            }
            Step::Read => {
                let v = model.rdtsc();
                self.reads += 1;
                assert_eq!(v, model.value(), "rdtsc and value disagree");
                2
            }
            Step::Drift(ppb) => {
                let before = model.value();
                model.set_drift_ppb(ppb);
                assert_eq!(model.value(), before, "a drift change stepped the TSC");
                self.settle(now);
                self.ppb = ppb;
                if !(-1_000_000_000..=1_000_000_000).contains(&ppb) {
                    self.exact = false;
                }
                4 | ((!self.exact) as u64) << 3
            }
            Step::DeepIdle(deep) => {
                model.set_deep_idle(deep);
                self.settle(now);
                self.deep = deep;
                16
            }
            Step::Stuck(stuck) => {
                model.set_stuck(stuck);
                self.settle(now);
                self.stuck = stuck;
                32
            }
            Step::Write(v) => {
                model.write(v);
                self.held = None;
                self.since = now;
                self.value = v;
                self.atto = 0;
                self.exact = (-1_000_000_000..=1_000_000_000).contains(&self.ppb);
                64
            }
        }
    }

    fn observe(&mut self, model: &TscModel, clock: &VirtualClock) -> crate::Check {
        let now = clock.now();
        let v = model.value();
        if self.exact {
            let (want, _) = self.at(now);
            if v != want {
                return Err(format!(
                    "TSC {v} at {now}, the rates say {want} (f {} Hz, ppb {}, running {})",
                    self.f,
                    self.ppb,
                    self.running()
                ));
            }
        } else if !self.running() {
            if let Some(held) = self.held.filter(|h| *h != v) {
                return Err(format!("stopped, and moved from {held} to {v}"));
            }
            self.held = Some(v);
        } else {
            self.held = None;
        }
        if model.reads() != self.reads {
            return Err(format!(
                "{} reads counted, {} rdtsc",
                model.reads(),
                self.reads
            ));
        }
        let f = model.true_frequency().get() as u128;
        let want = if self.running() {
            self.f * self.rate() / GIGA
        } else {
            0
        };
        if self.exact && f != want {
            return Err(format!("true_frequency {f}, want {want}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_tsc_short_pass() {
        crate::short_pass::<Tsc>(3_000);
    }

    #[test]
    fn the_shadow_counts_two_cycles_a_nanosecond_at_2_ghz() {
        let input = Input {
            frequency: 2_000_000_000,
            initial: 10,
            invariant: true,
            steps: vec![],
        };
        let s = Shadow::new(&input, Ktime::ZERO);
        assert_eq!(s.at(Ktime::from_nanos(1_000)).0, 2_010);
    }
}
