//! The main counter's mapping to true time, and one comparator's state
//! machine (matches, periodic accumulator, delayed writes, interrupt line).
//!
//! Time is handled in *increments* of the counter since its last re-base:
//! increment `k` happens at `base + ⌈k·period_fs/10⁶⌉` ns and brings the
//! counter to `base_value + k`. A comparator holding `v` (compared over
//! `w` = 32 or 64 bits) next matches at the first increment `k` after the
//! current one whose value is `v` mod 2^w: `k = p + d`, `d = (v − value(p))
//! mod 2^w`, and `d = 2^w` when that is 0 — a comparator equal to (or
//! behind) the counter waits a full wrap. Matches are counted in closed
//! form, so a long jump of the simulator costs O(delayed writes).

use std::collections::VecDeque;

use clocksource::Ktime;

use super::ticks_to_ns_ceil;
use crate::regs::{CounterPeriod, TimerConfig, FS_PER_NS};

/// The main counter: value as a function of true time.
#[derive(Clone, Copy, Debug)]
pub(super) struct CounterState {
    /// When the current run began (or the counter stopped).
    base: Ktime,
    /// The value at `base`.
    base_value: u64,
    /// Whether it counts.
    pub(super) running: bool,
    /// `COUNTER_CLK_PERIOD` in fs.
    pub(super) period_fs: u64,
    /// `2^32 − 1` or `2^64 − 1`.
    mask: u64,
}

impl CounterState {
    /// A halted counter holding `value`.
    pub(super) fn halted(now: Ktime, value: u64, period: CounterPeriod, wide: bool) -> Self {
        let mask = if wide { u64::MAX } else { u32::MAX as u64 };
        CounterState {
            base: now,
            base_value: value & mask,
            running: false,
            period_fs: period.as_fs() as u64,
            mask,
        }
    }

    /// Increments since `base`, at `t`.
    pub(super) fn progress(&self, t: Ktime) -> u128 {
        if !self.running || self.period_fs == 0 {
            return 0;
        }
        let ns = t.as_nanos().saturating_sub(self.base.as_nanos()) as u128;
        ns * FS_PER_NS as u128 / self.period_fs as u128
    }

    /// The value after `p` increments.
    pub(super) fn value_at(&self, p: u128) -> u64 {
        self.base_value.wrapping_add(p as u64) & self.mask
    }

    /// The value at `t`.
    pub(super) fn value_now(&self, t: Ktime) -> u64 {
        self.value_at(self.progress(t))
    }

    /// When increment `p` happens (`None` if never: halted, or past
    /// `Ktime::MAX`).
    pub(super) fn time_of(&self, p: u128) -> Option<Ktime> {
        if !self.running {
            return None;
        }
        let ns = ticks_to_ns_ceil(p, self.period_fs)?;
        self.base
            .as_nanos()
            .checked_add(ns)
            .filter(|t| *t < u64::MAX)
            .map(Ktime::from_nanos)
    }

    /// `ticks` oscillator periods after `now` (whether or not the counter
    /// runs), rounded up.
    pub(super) fn after_ticks(&self, now: Ktime, ticks: u64) -> Ktime {
        let ns = ticks_to_ns_ceil(ticks as u128, self.period_fs).unwrap_or(u64::MAX);
        Ktime::from_nanos(now.as_nanos().saturating_add(ns))
    }

    /// Sets the value of a halted counter.
    pub(super) fn set_value(&mut self, v: u64) {
        self.base_value = v & self.mask;
    }

    /// Starts a new run (or stop) at `now`, keeping the current value.
    pub(super) fn rebase(&mut self, now: Ktime, running: bool) {
        self.base_value = self.value_now(now);
        self.base = now;
        self.running = running;
    }
}

/// A comparator write on its way in (the delayed-write fault).
#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    lands: Ktime,
    cmp: u64,
    period: u64,
}

/// One comparator.
#[derive(Clone, Debug)]
pub(super) struct Comparator {
    /// `Tn_CONF_CAP`.
    pub(super) conf: TimerConfig,
    /// `Tn_COMPARATOR` as software reads it (the accumulator, periodic).
    pub(super) cmp: u64,
    /// The last value written: the periodic increment.
    period: u64,
    /// `Tn_FSB_INT_ROUTE`: where and what an FSB delivery writes.
    pub(super) fsb: u64,
    /// Writes that have not landed yet, oldest first.
    pending: VecDeque<PendingWrite>,
    /// The increment of the next match (`None`: counter halted).
    next_match: Option<u128>,
    /// Level mode: whether the line is asserted.
    line: bool,
    /// An interrupt raised and not yet delivered, with when it was raised.
    pub(super) raised: Option<Ktime>,
    /// Interrupts delivered.
    pub(super) interrupts: u64,
    /// Matches merged into an earlier interrupt.
    pub(super) coalesced: u64,
    /// Matches.
    pub(super) matches: u64,
}

impl Comparator {
    /// A disabled comparator with capabilities `caps`, holding all ones
    /// (QEMU's reset value).
    pub(super) fn new(caps: TimerConfig) -> Self {
        let mut c = Comparator {
            conf: caps,
            cmp: 0,
            period: 0,
            fsb: 0,
            pending: VecDeque::new(),
            next_match: None,
            line: false,
            raised: None,
            interrupts: 0,
            coalesced: 0,
            matches: 0,
        };
        c.cmp = c.width_mask();
        c
    }

    /// `2^w − 1`: 64 bits only for a 64-bit timer not in 32-bit mode (a
    /// 32-bit counter's timers have no `Tn_SIZE_CAP`).
    fn width_mask(&self) -> u64 {
        if self.conf.contains(TimerConfig::SIZE_CAP) && !self.conf.contains(TimerConfig::MODE32_CNF)
        {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// Level-triggered: `Tn_INT_TYPE_CNF`, ignored under FSB delivery,
    /// which is a message, edge by nature (IA-PC HPET specification 1.0a
    /// §2.3.9.2: `Tn_INT_TYPE_CNF` applies to the I/O APIC routes).
    pub(super) fn is_level(&self) -> bool {
        self.conf.contains(TimerConfig::INT_TYPE_CNF)
            && !self.conf.contains(TimerConfig::FSB_EN_CNF)
    }

    fn is_periodic(&self) -> bool {
        self.conf.contains(TimerConfig::TYPE_CNF)
    }

    /// Increments between two matches.
    fn step(&self) -> u128 {
        let modulus = self.width_mask() as u128 + 1;
        if self.is_periodic() {
            match (self.period & self.width_mask()) as u128 {
                0 => modulus,
                p => p,
            }
        } else {
            modulus
        }
    }

    /// The first match strictly after increment `p`.
    fn first_match_after(&self, c: &CounterState, p: u128) -> Option<u128> {
        if !c.running {
            return None;
        }
        let m = self.width_mask();
        let d = self.cmp.wrapping_sub(c.value_at(p)) & m;
        Some(p + if d == 0 { m as u128 + 1 } else { d as u128 })
    }

    /// Recomputes the next match from the comparator value, at `now`.
    pub(super) fn recompute(&mut self, c: &CounterState, now: Ktime) {
        self.next_match = self.first_match_after(c, c.progress(now));
    }

    /// Processes matches and landed writes up to `now`. `gate` is
    /// `ENABLE_CNF`; `status` this timer's `GINTR_STA` bit.
    pub(super) fn advance(&mut self, c: &CounterState, now: Ktime, gate: bool, status: &mut bool) {
        loop {
            let land = self.pending.front().map(|w| w.lands).filter(|l| *l <= now);
            self.match_until(c, land.unwrap_or(now), gate, status);
            let Some(at) = land else { break };
            if let Some(w) = self.pending.pop_front() {
                self.cmp = w.cmp;
                self.period = w.period;
                self.recompute(c, at);
            }
        }
    }

    /// Counts the matches at or before `horizon` (in closed form).
    fn match_until(&mut self, c: &CounterState, horizon: Ktime, gate: bool, status: &mut bool) {
        let Some(m) = self.next_match else { return };
        let reached = c.progress(horizon);
        if m > reached {
            return;
        }
        let step = self.step();
        let n = (reached - m) / step + 1;
        let first = c.time_of(m).unwrap_or(horizon);
        self.matches = self.matches.saturating_add(sat(n));
        if self.is_periodic() {
            let modulus = self.width_mask() as u128 + 1;
            let add = (n % modulus) * (self.period & self.width_mask()) as u128;
            self.cmp = ((self.cmp as u128 + add % modulus) % modulus) as u64;
        }
        self.next_match = Some(m + n * step);
        let enabled = gate && self.conf.contains(TimerConfig::INT_ENB_CNF);
        if self.is_level() {
            *status = true;
            if enabled && !self.line {
                self.raise(first, n - 1);
            } else if enabled {
                self.coalesced = self.coalesced.saturating_add(sat(n));
            }
            self.line = enabled;
        } else if enabled {
            self.raise(first, n - 1);
        }
    }

    /// Raises an interrupt at `at` (or merges into an undelivered one) and
    /// counts `extra` further matches as merged.
    fn raise(&mut self, at: Ktime, extra: u128) {
        if self.raised.is_none() {
            self.raised = Some(at);
            self.coalesced = self.coalesced.saturating_add(sat(extra));
        } else {
            self.coalesced = self.coalesced.saturating_add(sat(extra + 1));
        }
    }

    /// Re-evaluates the level line after `ENABLE_CNF`, `Tn_INT_ENB_CNF` or
    /// the status bit changed: rising raises now, falling withdraws.
    pub(super) fn update_line(&mut self, gate: bool, status: bool, now: Ktime) {
        if !self.is_level() {
            if self.line {
                self.line = false;
                self.raised = None;
            }
            return;
        }
        let line = gate && status && self.conf.contains(TimerConfig::INT_ENB_CNF);
        if line && !self.line {
            self.raised = Some(now);
        } else if !line {
            self.raised = None;
        }
        self.line = line;
    }

    /// When this comparator next raises an interrupt, if nothing is written
    /// meanwhile: a raised one now, else the first raising match, taking
    /// pending writes into account.
    pub(super) fn next_raise(&self, c: &CounterState, gate: bool, status: bool) -> Option<Ktime> {
        if let Some(r) = self.raised {
            return Some(r);
        }
        let enabled = gate && self.conf.contains(TimerConfig::INT_ENB_CNF);
        // A level line already up (or a set status bit) raises nothing new
        // until software clears the status.
        if !enabled || (self.is_level() && status) {
            return None;
        }
        let mut sim = self.clone();
        loop {
            let next = sim.next_match.and_then(|m| c.time_of(m));
            match sim.pending.pop_front() {
                Some(w) if next.is_none_or(|t| t > w.lands) => {
                    sim.cmp = w.cmp;
                    sim.period = w.period;
                    sim.recompute(c, w.lands);
                }
                _ => return next,
            }
        }
    }

    /// A write to `Tn_CONF_CAP` (bits under `mask`): read-only and
    /// unsupported bits keep their value; a route the timer cannot take
    /// does not stick.
    pub(super) fn write_config(&mut self, value: u64, mask: u64, c: &CounterState, now: Ktime) {
        let caps = self.conf;
        let mut writable = TimerConfig::INT_TYPE_CNF
            | TimerConfig::INT_ENB_CNF
            | TimerConfig::VAL_SET_CNF
            | TimerConfig::INT_ROUTE_CNF;
        if caps.contains(TimerConfig::PER_INT_CAP) {
            writable |= TimerConfig::TYPE_CNF;
        }
        if caps.contains(TimerConfig::SIZE_CAP) {
            writable |= TimerConfig::MODE32_CNF;
        }
        if caps.contains(TimerConfig::FSB_INT_DEL_CAP) {
            writable |= TimerConfig::FSB_EN_CNF;
        }
        let bits = (caps.bits() & !(mask & writable.bits())) | (value & mask & writable.bits());
        let mut new = TimerConfig::from_bits_retain(bits);
        if !caps.route_cap().contains(new.int_route()) {
            new = new.with_int_route(caps.int_route());
        }
        self.conf = new;
        if new.contains(TimerConfig::MODE32_CNF) && !caps.contains(TimerConfig::MODE32_CNF) {
            // Entering 32-bit mode drops the upper halves (QEMU does too).
            self.cmp &= u32::MAX as u64;
            self.period &= u32::MAX as u64;
            for w in &mut self.pending {
                w.cmp &= u32::MAX as u64;
                w.period &= u32::MAX as u64;
            }
        }
        self.recompute(c, now);
    }

    /// A write to `Tn_COMPARATOR` (bits under `mask`) landing at `lands`,
    /// with the `Tn_VAL_SET_CNF` rule (module docs).
    pub(super) fn write_comparator(
        &mut self,
        value: u64,
        mask: u64,
        lands: Ktime,
        c: &CounterState,
        now: Ktime,
    ) {
        let wm = self.width_mask();
        let mask = mask & wm;
        if mask == 0 {
            return; // the upper half of a 32-bit comparator
        }
        let (cmp, period) = self
            .pending
            .back()
            .map_or((self.cmp, self.period), |w| (w.cmp, w.period));
        let sets_accumulator = !self.is_periodic() || self.conf.contains(TimerConfig::VAL_SET_CNF);
        let cmp = if sets_accumulator {
            (cmp & !mask) | (value & mask)
        } else {
            cmp
        };
        let period = (period & !mask) | (value & mask);
        self.conf.remove(TimerConfig::VAL_SET_CNF);
        if lands <= now && self.pending.is_empty() {
            self.cmp = cmp;
            self.period = period;
            self.recompute(c, now);
        } else {
            // In order: never land before a write made earlier.
            let lands = self.pending.back().map_or(lands, |w| w.lands.max(lands));
            self.pending.push_back(PendingWrite { lands, cmp, period });
        }
    }
}

fn sat(n: u128) -> u64 {
    n.min(u64::MAX as u128) as u64
}
