//! One 8254 counter: control logic, count register, counting element,
//! output latch, status — evaluated in closed form at a clock-edge index.
//!
//! # Time
//!
//! The counter never ticks step by step. Its state is a *segment*: either
//! stopped ([`Seg::Idle`], [`Seg::Suspended`]) or counting since clock edge
//! `e0` ([`Run`]), and the count and OUT at edge `e ≥ e0` follow from
//! `k = e − e0` by the mode's formula:
//!
//! | mode | count at `k` | OUT at `k` | rising edge of OUT |
//! |------|--------------|------------|--------------------|
//! | 0 | `start − k` (mod M) | high once `k ≥ tc` | `k = tc` |
//! | 1 | `start − k` | high once `k ≥ tc` (low from the trigger) | `k = tc` |
//! | 2 | `N − (k mod N)` | low when `k mod N = N − 1` (count 1) | `k = jN`, j ≥ 1 |
//! | 3 | by twos, see [`square_value`] | high for `k mod N < ⌈N/2⌉` | `k = jN`, j ≥ 1 |
//! | 4, 5 | `start − k` | low only at `k = tc` | `k = tc + 1` |
//!
//! where M is 65536 (binary) or 10000 (BCD) and the count register value
//! 0 means M. Writes and gate changes end a segment and start the next one
//! (a new count loads at edge `e + 1`, "on the next CLK pulse").

use crate::regs::{ByteAccess, Mode};

/// What the counter is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// Not counting: after a control word (until a count, or for modes 1
    /// and 5 a trigger), or in modes 2/3 while GATE is low.
    Idle {
        /// The counting element.
        value: u32,
        /// OUT.
        out: bool,
    },
    /// Modes 0/4: counting suspended by GATE low; resumes where it was.
    Suspended {
        /// The counting element.
        value: u32,
        /// OUT.
        out: bool,
        /// Clocks still to terminal count, if it is still ahead.
        tc: Option<u64>,
    },
    /// Counting.
    Run(Run),
}

/// A counting segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The edge at which the counting element holds `start`.
    pub(crate) e0: u64,
    /// The counting element at `e0` (0..M; 0 stands for M).
    pub(crate) start: u32,
    /// Modes 2/3: the count reloaded every period (1..=M).
    pub(crate) n: u32,
    /// One-shot modes: `k` of the terminal count, if still ahead.
    pub(crate) tc: Option<u64>,
    /// Count and OUT before `e0` (a count written but not yet loaded).
    pub(crate) before: (u32, bool),
}

/// One counter.
#[derive(Clone, Debug)]
pub(crate) struct Counter {
    /// `RW1 RW0 M2 M1 M0 BCD` as last programmed (the status byte's low
    /// six bits).
    pub(crate) ctrl_bits: u8,
    pub(crate) access: ByteAccess,
    pub(crate) mode: Mode,
    pub(crate) bcd: bool,
    /// Quirk: a control word whose mode takes effect at the next count.
    pub(crate) deferred: Option<(Mode, bool, u8)>,
    /// The count register: the last count written (1..=M).
    pub(crate) cr: Option<u32>,
    /// LSB of a LoHi count, waiting for its MSB (the write flip-flop).
    pub(crate) write_lsb: Option<u8>,
    /// The read flip-flop: the next LoHi read returns the MSB.
    pub(crate) read_msb: bool,
    /// The output latch, frozen by a latch command until read.
    pub(crate) latched: Option<u16>,
    /// A status byte latched by read-back, returned by the next read.
    pub(crate) status_latched: Option<u8>,
    /// NULL COUNT is set while the edge index is below this (0: clear,
    /// `u64::MAX`: until a load that is not yet scheduled).
    pub(crate) null_until: u64,
    pub(crate) gate: bool,
    pub(crate) seg: Seg,
    /// Modes 2/3: a count written while counting, loaded at the period
    /// boundary `(edge, count)`.
    pub(crate) pending: Option<(u64, u32)>,
    /// OUT rising edges up to this edge index have been reported.
    pub(crate) scanned: u64,
}

impl Counter {
    /// The power-on state (the datasheet leaves it undefined): programmed
    /// as by `0b..11_000_0` (LSB/MSB, mode 0, binary) with no count: OUT
    /// low, not counting.
    pub(crate) fn power_on(gate: bool, e: u64) -> Self {
        Counter {
            ctrl_bits: 0x30,
            access: ByteAccess::LoHi,
            mode: Mode::InterruptOnTerminalCount,
            bcd: false,
            deferred: None,
            cr: None,
            write_lsb: None,
            read_msb: false,
            latched: None,
            status_latched: None,
            null_until: u64::MAX,
            gate,
            seg: Seg::Idle {
                value: 0,
                out: false,
            },
            pending: None,
            scanned: e,
        }
    }

    /// M: the counter's modulus.
    pub(crate) fn modulus(&self) -> u32 {
        if self.bcd {
            10_000
        } else {
            1 << 16
        }
    }

    // ----- evaluation ------------------------------------------------------

    fn run_value(&self, r: &Run, e: u64) -> u32 {
        if e < r.e0 {
            return r.before.0;
        }
        let k = e - r.e0;
        let m = self.modulus() as u64;
        let n = r.n.max(1) as u64;
        let v = match self.mode {
            Mode::RateGenerator => n - k % n,
            Mode::SquareWave => square_value(n, k),
            _ => r.start as u64 + m - k % m,
        };
        (v % m) as u32
    }

    fn run_out(&self, r: &Run, e: u64) -> bool {
        if e < r.e0 {
            return r.before.1;
        }
        let k = e - r.e0;
        let n = r.n.max(1) as u64;
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::HardwareRetriggerableOneShot => {
                r.tc.is_none_or(|t| k >= t)
            }
            Mode::SoftwareTriggeredStrobe | Mode::HardwareTriggeredStrobe => {
                r.tc.is_none_or(|t| k != t)
            }
            Mode::RateGenerator => n >= 2 && k % n != n - 1,
            Mode::SquareWave => k % n < n.div_ceil(2),
        }
    }

    /// The first rising edge of OUT in `(lo, hi]` under `r`, and how many
    /// there are.
    fn run_rising(&self, r: &Run, lo: u64, hi: u64) -> Option<(u64, u64)> {
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::HardwareRetriggerableOneShot => {
                let x = r.e0.saturating_add(r.tc?);
                (x > lo && x <= hi).then_some((x, 1))
            }
            Mode::SoftwareTriggeredStrobe | Mode::HardwareTriggeredStrobe => {
                let x = r.e0.saturating_add(r.tc?).saturating_add(1);
                (x > lo && x <= hi).then_some((x, 1))
            }
            Mode::RateGenerator | Mode::SquareWave => {
                // A count of 1 is illegal in modes 2 and 3: OUT then stays
                // constant (low in mode 2, high in mode 3), no edge.
                let n = r.n as u64;
                if n < 2 {
                    return None;
                }
                let first_j = if lo < r.e0 { 1 } else { (lo - r.e0) / n + 1 };
                let x = r.e0.saturating_add(first_j.saturating_mul(n));
                if x > hi {
                    return None;
                }
                let last_j = (hi - r.e0) / n;
                Some((x, last_j - first_j + 1))
            }
        }
    }

    /// The counting element at edge `e`.
    pub(crate) fn value(&self, e: u64) -> u32 {
        match self.seg {
            Seg::Idle { value, .. } | Seg::Suspended { value, .. } => value,
            Seg::Run(r) => self.run_value(&r, e),
        }
    }

    /// OUT at edge `e`.
    pub(crate) fn out(&self, e: u64) -> bool {
        match self.seg {
            Seg::Idle { out, .. } | Seg::Suspended { out, .. } => out,
            Seg::Run(r) => self.run_out(&r, e),
        }
    }

    /// The next rising edge of OUT after what was scanned.
    pub(crate) fn next_rising(&self) -> Option<u64> {
        match self.seg {
            Seg::Run(r) => self.run_rising(&r, self.scanned, u64::MAX).map(|(x, _)| x),
            _ => None,
        }
    }

    /// Brings the counter to edge `e`: applies a pending mode-2/3 reload
    /// whose boundary passed and reports OUT's rising edges in between to
    /// `rise(first_edge, how_many)`.
    pub(crate) fn advance(&mut self, e: u64, rise: &mut dyn FnMut(u64, u64)) {
        if e <= self.scanned {
            return;
        }
        if let (Some((b, n)), Seg::Run(r)) = (self.pending, self.seg) {
            if b <= e {
                if let Some((x, c)) = self.run_rising(&r, self.scanned, b) {
                    rise(x, c);
                }
                self.scanned = b;
                let m = self.modulus();
                self.seg = Seg::Run(Run {
                    e0: b,
                    start: n % m,
                    n,
                    tc: None,
                    before: (n % m, true),
                });
                self.pending = None;
            }
        }
        if let Seg::Run(r) = self.seg {
            if let Some((x, c)) = self.run_rising(&r, self.scanned, e) {
                rise(x, c);
            }
        }
        self.scanned = e;
    }

    // ----- writes ------------------------------------------------------------

    /// A control word for this counter (not a latch or read-back).
    pub(crate) fn program(
        &mut self,
        access: ByteAccess,
        mode: Mode,
        bcd: bool,
        mode_bits: u8,
        deferred: bool,
        e: u64,
    ) {
        self.access = access;
        self.write_lsb = None;
        self.read_msb = false;
        self.latched = None;
        self.status_latched = None;
        if deferred {
            self.ctrl_bits = (access as u8) << 4 | (self.ctrl_bits & 0x0F);
            self.deferred = Some((mode, bcd, mode_bits));
            return;
        }
        self.apply_mode(mode, bcd, mode_bits, e);
    }

    /// Resets the control logic into `mode`: counting stops, OUT goes to the
    /// mode's initial level (low for mode 0, high otherwise), the count must
    /// be written again.
    fn apply_mode(&mut self, mode: Mode, bcd: bool, mode_bits: u8, e: u64) {
        let value = self.value(e);
        self.mode = mode;
        self.bcd = bcd;
        self.ctrl_bits = (self.access as u8) << 4 | (mode_bits & 7) << 1 | bcd as u8;
        self.cr = None;
        self.pending = None;
        self.deferred = None;
        self.null_until = u64::MAX;
        self.seg = Seg::Idle {
            value: value % self.modulus(),
            out: mode != Mode::InterruptOnTerminalCount,
        };
    }

    /// A byte written to the counter's data port.
    pub(crate) fn write(&mut self, byte: u8, deferred_quirk: bool, e: u64) {
        let word = match self.access {
            ByteAccess::Lsb => byte as u16,
            ByteAccess::Msb => (byte as u16) << 8,
            ByteAccess::LoHi => match self.write_lsb.take() {
                None => {
                    self.write_lsb = Some(byte);
                    if self.mode == Mode::InterruptOnTerminalCount && !deferred_quirk {
                        // Mode 0: "writing the first byte disables counting;
                        // OUT is set low immediately".
                        self.seg = Seg::Idle {
                            value: self.value(e),
                            out: false,
                        };
                        self.pending = None;
                    }
                    return;
                }
                Some(lsb) => u16::from_le_bytes([lsb, byte]),
            },
        };
        if let Some((mode, bcd, bits)) = self.deferred.take() {
            self.apply_mode(mode, bcd, bits, e);
        }
        self.load(word, e);
    }

    /// A complete count written: what the mode does with it.
    fn load(&mut self, word: u16, e: u64) {
        let m = self.modulus();
        let n = if self.bcd {
            from_bcd(word)
        } else {
            word as u32
        };
        let n = if n == 0 { m } else { n.min(m) };
        self.cr = Some(n);
        let (value, out) = (self.value(e), self.out(e));
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::SoftwareTriggeredStrobe => {
                // A new count restarts the one-shot at the next clock; mode 0
                // drives OUT low at once, mode 4 leaves it high.
                let out = out && self.mode == Mode::SoftwareTriggeredStrobe;
                self.pending = None;
                if self.gate {
                    self.seg = Seg::Run(Run {
                        e0: e + 1,
                        start: n % m,
                        n,
                        tc: Some(n as u64),
                        before: (value, out),
                    });
                    self.null_until = e + 1;
                } else {
                    // Loaded, waiting for GATE (the load itself is taken at
                    // once rather than at the next clock).
                    self.seg = Seg::Suspended {
                        value: n % m,
                        out,
                        tc: Some(n as u64),
                    };
                    self.null_until = 0;
                }
            }
            Mode::HardwareRetriggerableOneShot | Mode::HardwareTriggeredStrobe => {
                // Loaded by the next GATE trigger.
            }
            Mode::RateGenerator | Mode::SquareWave => match self.seg {
                Seg::Run(r) if e >= r.e0 => {
                    // "A new count written during counting is loaded at the
                    // end of the current period" (mode 3: the datasheet says
                    // half-period; the model takes the full period).
                    let p = r.n.max(1) as u64;
                    let boundary = r.e0 + ((e - r.e0) / p + 1) * p;
                    self.pending = Some((boundary, n));
                    self.null_until = boundary;
                }
                _ if self.gate => {
                    self.seg = Seg::Run(Run {
                        e0: e + 1,
                        start: n % m,
                        n,
                        tc: None,
                        before: (value, true),
                    });
                    self.pending = None;
                    self.null_until = e + 1;
                }
                _ => {
                    self.seg = Seg::Idle {
                        value: n % m,
                        out: true,
                    };
                }
            },
        }
    }

    /// GATE changes level (counter 2 only; 0 and 1 are tied high).
    pub(crate) fn set_gate(&mut self, gate: bool, e: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        let m = self.modulus();
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::SoftwareTriggeredStrobe => match self.seg {
                Seg::Run(r) if !gate => {
                    let strobe = self.mode == Mode::SoftwareTriggeredStrobe;
                    let (value, out, k) = if e < r.e0 {
                        (r.start, self.run_out(&r, r.e0), 0)
                    } else {
                        (self.run_value(&r, e), self.run_out(&r, e), e - r.e0)
                    };
                    let tc =
                        r.tc.filter(|t| if strobe { k <= *t } else { k < *t })
                            .map(|t| t - k);
                    self.seg = Seg::Suspended { value, out, tc };
                    self.pending = None;
                }
                Seg::Suspended { value, out, tc } if gate => {
                    self.seg = Seg::Run(Run {
                        e0: e,
                        start: value,
                        n: value,
                        tc,
                        before: (value, out),
                    });
                }
                _ => {}
            },
            Mode::HardwareRetriggerableOneShot | Mode::HardwareTriggeredStrobe => {
                if let (true, Some(n)) = (gate, self.cr) {
                    // Trigger: load on the next clock; retriggerable.
                    self.seg = Seg::Run(Run {
                        e0: e + 1,
                        start: n % m,
                        n,
                        tc: Some(n as u64),
                        before: (self.value(e), self.out(e)),
                    });
                    self.null_until = e + 1;
                }
            }
            Mode::RateGenerator | Mode::SquareWave => {
                if !gate {
                    // Counting stops; OUT goes high at once.
                    self.seg = Seg::Idle {
                        value: self.value(e),
                        out: true,
                    };
                    self.pending = None;
                } else if let Some(n) = self.cr {
                    // Rising edge: reload on the next clock.
                    self.seg = Seg::Run(Run {
                        e0: e + 1,
                        start: n % m,
                        n,
                        tc: None,
                        before: (self.value(e), true),
                    });
                    self.null_until = e + 1;
                }
            }
        }
    }

    // ----- reads -------------------------------------------------------------

    /// The count as the data port presents it (binary or BCD).
    fn count_word(&self, e: u64) -> u16 {
        let v = self.value(e);
        if self.bcd {
            to_bcd(v)
        } else {
            v as u16
        }
    }

    /// Counter-latch command: freezes the output latch until it is read
    /// (ignored if it already holds an unread value).
    pub(crate) fn latch(&mut self, e: u64) {
        if self.latched.is_none() {
            self.latched = Some(self.count_word(e));
        }
    }

    /// The status byte.
    pub(crate) fn status(&self, e: u64) -> u8 {
        (self.out(e) as u8) << 7 | ((e < self.null_until) as u8) << 6 | self.ctrl_bits
    }

    /// Read-back STATUS: latches the status byte (unless one is unread).
    pub(crate) fn latch_status(&mut self, e: u64) {
        if self.status_latched.is_none() {
            self.status_latched = Some(self.status(e));
        }
    }

    /// A read of the data port: a latched status first, then the latched
    /// count (released once the programmed format has been read) or the
    /// live count, LSB/MSB by the read flip-flop.
    pub(crate) fn read(&mut self, e: u64) -> u8 {
        if let Some(s) = self.status_latched.take() {
            return s;
        }
        let [lsb, msb] = self
            .latched
            .unwrap_or_else(|| self.count_word(e))
            .to_le_bytes();
        let (byte, done) = match self.access {
            ByteAccess::Lsb => (lsb, true),
            ByteAccess::Msb => (msb, true),
            ByteAccess::LoHi if self.read_msb => (msb, true),
            ByteAccess::LoHi => (lsb, false),
        };
        if self.access == ByteAccess::LoHi {
            self.read_msb = !self.read_msb;
        }
        if done {
            self.latched = None;
        }
        byte
    }
}

/// Mode 3's counting element `k` clocks into a period of `n` (datasheet:
/// even counts go down by two and reload at zero, toggling OUT; odd counts
/// lose one on the first clock of the high half and three on the first
/// clock of the low half, so high lasts `(n+1)/2` clocks and low `(n−1)/2`).
pub(crate) fn square_value(n: u64, k: u64) -> u64 {
    let p = k % n;
    if n % 2 == 0 {
        let q = if p < n / 2 { p } else { p - n / 2 };
        n - 2 * q
    } else {
        let high = n.div_ceil(2);
        if p < high {
            if p == 0 {
                n
            } else {
                n + 1 - 2 * p
            }
        } else {
            let q = p - high;
            if q == 0 {
                n
            } else {
                n - 1 - 2 * q
            }
        }
    }
}

/// A 4-digit BCD word as a number; digits above 9 are taken at face value
/// (the datasheet leaves them undefined).
pub(crate) fn from_bcd(w: u16) -> u32 {
    let d = |i: u32| ((w >> (4 * i)) & 0xF) as u32;
    d(3) * 1000 + d(2) * 100 + d(1) * 10 + d(0)
}

/// A number below 10000 as 4 BCD digits.
pub(crate) fn to_bcd(v: u32) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_wave_counts_follow_the_datasheet() {
        // Odd N=5: high half 5,4,2 (3 clocks), low half 5,2 (2 clocks).
        let seq: std::vec::Vec<u64> = (0..10).map(|k| square_value(5, k)).collect();
        assert_eq!(seq, [5, 4, 2, 5, 2, 5, 4, 2, 5, 2]);
        // Even N=6: 6,4,2 high, 6,4,2 low.
        let seq: std::vec::Vec<u64> = (0..6).map(|k| square_value(6, k)).collect();
        assert_eq!(seq, [6, 4, 2, 6, 4, 2]);
    }

    #[test]
    fn bcd_round_trips() {
        assert_eq!(from_bcd(0x1234), 1234);
        assert_eq!(to_bcd(1234), 0x1234);
        assert_eq!(to_bcd(9999), 0x9999);
        assert_eq!(from_bcd(0x0000), 0);
    }
}
