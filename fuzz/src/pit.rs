//! The 8254 PIT model's register file (`pit::model::PitModel`).
//!
//! Inputs are sequences of port accesses — control words (every counter,
//! access mode, mode 0–7 and BCD), counter-latch and read-back commands,
//! count bytes (random, valid BCD, 0 = 65536, 1, 2), data-port reads,
//! port B reads and writes, unclaimed ports — interleaved with virtual
//! time advancing and IRQ0 fired, early or on time, on a PIT fresh from
//! power-on or as a BIOS leaves it.
//!
//! Invariants, checked after every step (Intel 8254 datasheet, section
//! named):
//! - never a panic;
//! - the status byte ("Read-Back Command", Figure "Status Byte"): bits 5:0
//!   are the counter's last control word's bits 5:0, bit 7 is OUT when it
//!   was latched; NULL COUNT (bit 6) is 1 from a control word until a whole
//!   count is written ("Null Count Operation"); a second status latch
//!   before the read is ignored; a latched status is read before a latched
//!   count; a control word resets them ("all Control Logic is immediately
//!   reset");
//! - the counter-latch command freezes the count at the latch instant
//!   until it is read in the programmed format (LSB, MSB, or LSB then MSB
//!   with the byte flip-flop), a second latch before that is ignored;
//! - OUT right after a control word: low in mode 0, high in modes 1–5
//!   ("Mode Definitions");
//! - the counting element is 16 bits; counters 0 and 1 (GATE tied high),
//!   once a count is loaded (the clock after it is written): in BCD, with
//!   valid BCD written, below 10000; in mode 2 between 1 and the largest
//!   count written (65536, read as 0, for 0); in mode 3 at most that;
//! - port B: bits 3:0 read what was written, bit 5 is OUT2; the control
//!   port and unclaimed ports read 0xFF;
//! - IRQ0 (`hw::InterruptSource`): `fire` before `next_fire` delivers
//!   nothing; the delivered count moves only when `fire` says so; the
//!   coalesced count never goes down.

use clocksource::{Ktime, Nanos};
use hw::PortIo;
use pit::model::PitModel;
use pit::regs::Channel;
use sim::clock::VirtualClock;

use crate::{ensure, Gen, Target};

/// The PIT target.
pub struct Pit;

const DATA: [u16; 3] = [0x40, 0x41, 0x42];
const COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61;
const CHANNELS: [Channel; 3] = [Channel::Ch0, Channel::Ch1, Channel::Ch2];

/// One step.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Virtual time moves on.
    Advance(u64),
    /// `inb(port)`.
    In(u16),
    /// `outb(port, value)`.
    Out(u16, u8),
    /// IRQ0: `fire` once early (if it is in the future), then time moves
    /// to `next_fire` (if at most `limit` ns ahead) and `fire` again.
    Fire(u64),
}

/// One input.
#[derive(Debug, Clone)]
pub struct Input {
    /// Start as the BIOS leaves the PIT (else from power-on).
    pub after_bios: bool,
    /// What is done to it.
    pub steps: Vec<Step>,
}

fn control_word(g: &mut Gen) -> u8 {
    let sc = g.below(3) as u8;
    match g.below(8) {
        0 => sc << 6,                                             // counter latch
        1 => 0xC0 | (g.u8() & 0x3F),                              // read-back
        _ => sc << 6 | (g.range(1, 3) as u8) << 4 | g.u8() & 0xF, // program
    }
}

fn count_byte(g: &mut Gen) -> u8 {
    match g.below(6) {
        0 => 0,
        1 => *g.pick(&[1, 2, 3]),
        2 => (g.below(10) << 4 | g.below(10)) as u8, // valid BCD
        _ => g.u8(),
    }
}

impl Target for Pit {
    const NAME: &'static str = "pit";
    type Input = Input;

    fn generate(g: &mut Gen) -> Input {
        let steps = (0..g.range(1, 64))
            .map(|_| match g.below(16) {
                0..=2 => Step::Advance(g.advance_ns(2_000)),
                3..=5 => Step::Out(COMMAND, control_word(g)),
                6..=8 => Step::Out(*g.pick(&DATA), count_byte(g)),
                9..=11 => Step::In(*g.pick(&DATA)),
                12 => {
                    if g.chance(1, 2) {
                        Step::Out(PORT_B, g.u8())
                    } else {
                        Step::In(PORT_B)
                    }
                }
                13 => {
                    let port = g.pick_or(&[COMMAND, 0x44, 0x60, 0x20], |g| g.u32() as u16);
                    if g.chance(1, 2) {
                        Step::In(port)
                    } else {
                        Step::Out(port, g.u8())
                    }
                }
                _ => Step::Fire(g.advance_ns(2_000)),
            })
            .collect();
        Input {
            after_bios: g.chance(1, 2),
            steps,
        }
    }

    fn check(input: &Input) -> u64 {
        let clock = VirtualClock::starting_at(Ktime::from_nanos(1_000));
        let model = if input.after_bios {
            PitModel::after_bios(clock.clone())
        } else {
            PitModel::new(clock.clone())
        };
        let mut s = Shadow::new(input.after_bios, model.clock_edges());
        crate::drive(&input.steps, |step| {
            let bits = s.step(&model, &clock, step)?;
            s.observe(&model).map(|()| bits)
        })
    }
}

/// What the harness knows of one counter, from the datasheet.
#[derive(Debug, Clone, Default)]
struct CounterShadow {
    /// Bits 5:0 of the last control word (RW1 RW0 M2 M1 M0 BCD).
    ctrl: u8,
    /// The write flip-flop: an LSB written, its MSB awaited (LoHi).
    lsb_written: Option<u8>,
    /// The read flip-flop: the next LoHi read is the MSB.
    read_msb: bool,
    /// A whole count written since the control word.
    count_since_cw: bool,
    /// The PIT clock edge at which the first count since the control word
    /// was complete, and whether every count since was valid BCD.
    first_count_at: Option<u64>,
    bcd_valid: bool,
    /// The largest count written since the control word (1..=M).
    max_count: u32,
    /// An unread latched status: bits 7 and 5:0 expected, and whether
    /// NULL COUNT must be 1.
    status: Option<(u8, bool)>,
    /// An unread latched count (the 16-bit word as the port presents it).
    latched: Option<u16>,
}

impl CounterShadow {
    fn rw(&self) -> u8 {
        self.ctrl >> 4 & 3
    }
    fn mode(&self) -> u8 {
        // Modes 6 and 7 are 2 and 3 (datasheet: "X10", "X11").
        match self.ctrl >> 1 & 7 {
            6 => 2,
            7 => 3,
            m => m,
        }
    }
    fn bcd(&self) -> bool {
        self.ctrl & 1 != 0
    }
    fn modulus(&self) -> u32 {
        if self.bcd() {
            10_000
        } else {
            65_536
        }
    }
}

struct Shadow {
    counters: [CounterShadow; 3],
    port_b: u8,
    delivered: u64,
    coalesced: u64,
}

fn to_bcd(v: u32) -> u16 {
    let d = |k: u32| ((v / 10u32.pow(k)) % 10) as u16;
    d(3) << 12 | d(2) << 8 | d(1) << 4 | d(0)
}

fn valid_bcd(word: u16) -> bool {
    (0..4).all(|i| (word >> (4 * i)) & 0xF <= 9)
}

impl Shadow {
    /// The shadow of a model created at clock edge `edge`.
    fn new(after_bios: bool, edge: u64) -> Self {
        // Power-on: every counter LSB/MSB, mode 0, binary (the model's
        // documented reset); the BIOS programs 0x36 (counter 0: LoHi,
        // mode 3) with 65536 and 0x54 (counter 1: LSB, mode 2) with 18.
        let mut counters: [CounterShadow; 3] = Default::default();
        for c in &mut counters {
            c.ctrl = 0x30;
            c.bcd_valid = true;
        }
        if after_bios {
            counters[0].ctrl = 0x36;
            counters[0].count_since_cw = true;
            counters[0].first_count_at = Some(edge);
            counters[0].max_count = 65_536;
            counters[1].ctrl = 0x14;
            counters[1].count_since_cw = true;
            counters[1].first_count_at = Some(edge);
            counters[1].max_count = 18;
        }
        Shadow {
            counters,
            port_b: 0,
            delivered: 0,
            coalesced: 0,
        }
    }

    fn latch_count(&mut self, model: &PitModel, i: usize) {
        let c = &mut self.counters[i];
        if c.latched.is_none() {
            let v = model.peek_count(CHANNELS[i]);
            c.latched = Some(if c.bcd() { to_bcd(v) } else { v as u16 });
        }
    }

    fn latch_status(&mut self, model: &PitModel, i: usize) {
        let c = &mut self.counters[i];
        if c.status.is_none() {
            let out = model.out(CHANNELS[i]) as u8;
            c.status = Some((out << 7 | c.ctrl, !c.count_since_cw));
        }
    }

    fn step(&mut self, model: &PitModel, clock: &VirtualClock, step: Step) -> Result<u64, String> {
        match step {
            Step::Advance(ns) => {
                clock.advance_by(Nanos::from_nanos(ns));
                Ok(1)
            }
            Step::Out(COMMAND, cw) => {
                let sc = cw >> 6;
                let rw = cw >> 4 & 3;
                model.outb(COMMAND, cw);
                if sc == 3 {
                    // Read-back: bit 5 clear latches counts, bit 4 clear
                    // latches status, bits 3:1 select counters 2..0.
                    for i in 0..3 {
                        if cw & (2 << i) != 0 {
                            if cw & 0x10 == 0 {
                                self.latch_status(model, i);
                            }
                            if cw & 0x20 == 0 {
                                self.latch_count(model, i);
                            }
                        }
                    }
                    return Ok(2);
                }
                let i = sc as usize;
                if rw == 0 {
                    self.latch_count(model, i);
                    return Ok(4);
                }
                let c = &mut self.counters[i];
                // "All Control Logic is immediately reset": the byte
                // flip-flops, and an unread latched count or status.
                *c = CounterShadow {
                    ctrl: cw & 0x3F,
                    bcd_valid: true,
                    ..Default::default()
                };
                let out = model.out(CHANNELS[i]);
                let mode = c.mode();
                ensure(out == (mode != 0), || {
                    format!("OUT{i} is {out} right after a mode {mode} control word")
                })?;
                Ok(8)
            }
            Step::Out(port @ 0x40..=0x42, byte) => {
                model.outb(port, byte);
                let edge = model.clock_edges();
                let c = &mut self.counters[(port - 0x40) as usize];
                let word = match c.rw() {
                    1 => Some(byte as u16),
                    2 => Some((byte as u16) << 8),
                    _ => match c.lsb_written.take() {
                        Some(lsb) => Some((byte as u16) << 8 | lsb as u16),
                        None => {
                            c.lsb_written = Some(byte);
                            None
                        }
                    },
                };
                if let Some(w) = word {
                    c.count_since_cw = true;
                    c.bcd_valid &= !c.bcd() || valid_bcd(w);
                    let n = if w == 0 {
                        c.modulus()
                    } else if c.bcd() {
                        let d = |k: u16| ((w >> (4 * k)) & 0xF) as u32;
                        d(3) * 1000 + d(2) * 100 + d(1) * 10 + d(0)
                    } else {
                        w as u32
                    };
                    c.max_count = c.max_count.max(n);
                    c.first_count_at.get_or_insert(edge);
                }
                Ok(16)
            }
            Step::Out(PORT_B, v) => {
                model.outb(PORT_B, v);
                self.port_b = v & 0xF;
                Ok(32)
            }
            Step::Out(port, v) => {
                model.outb(port, v);
                Ok(64)
            }
            Step::In(port @ 0x40..=0x42) => {
                let byte = model.inb(port);
                let i = (port - 0x40) as usize;
                let c = &mut self.counters[i];
                if let Some((want, null)) = c.status.take() {
                    ensure(byte & 0xBF == want, || {
                        format!("counter {i} status {byte:#04x}, want {want:#04x} (bits 7, 5:0)")
                    })?;
                    ensure(!null || byte & 0x40 != 0, || {
                        format!("counter {i} status {byte:#04x}: NULL COUNT clear with no count written")
                    })?;
                    return Ok(128);
                }
                let (msb, done) = match c.rw() {
                    1 => (false, true),
                    2 => (true, true),
                    _ => {
                        let m = c.read_msb;
                        c.read_msb = !m;
                        (m, m)
                    }
                };
                if let Some(w) = c.latched {
                    let want = if msb { (w >> 8) as u8 } else { w as u8 };
                    ensure(byte == want, || {
                        format!("counter {i} latched count {w:#06x}, read {byte:#04x}")
                    })?;
                    if done {
                        c.latched = None;
                    }
                    return Ok(256);
                }
                Ok(512)
            }
            Step::In(PORT_B) => {
                let b = model.inb(PORT_B);
                ensure(b & 0xF == self.port_b, || {
                    format!("port B reads {b:#04x}, {:#04x} written", self.port_b)
                })?;
                let out2 = model.out(Channel::Ch2);
                ensure((b & 0x20 != 0) == out2, || {
                    format!("port B bit 5 {b:#04x}, OUT2 is {out2}")
                })?;
                Ok(1024)
            }
            Step::In(port) => {
                let b = model.inb(port);
                ensure(b == 0xFF, || format!("port {port:#x} reads {b:#04x}"))?;
                Ok(2048)
            }
            Step::Fire(limit) => {
                let (moved, delivered) = crate::fire(model, clock, limit, || model.interrupts())?;
                self.delivered += delivered as u64;
                Ok(4096 | (moved as u64) << 13 | (delivered as u64) << 14)
            }
        }
    }

    fn observe(&mut self, model: &PitModel) -> crate::Check {
        let edges = model.clock_edges();
        for (i, c) in self.counters.iter().enumerate() {
            let v = model.peek_count(CHANNELS[i]);
            ensure(v < 65_536, || format!("counter {i} holds {v}"))?;
            // Counters 0 and 1: GATE high, a count loaded a clock after it
            // was written (modes 1 and 5 wait for a GATE edge that never comes).
            let loaded = c.first_count_at.is_some_and(|e| edges > e);
            if i == 2 || !loaded || matches!(c.mode(), 1 | 5) {
                continue;
            }
            if c.bcd() && c.bcd_valid {
                ensure(v < 10_000, || format!("BCD counter {i} holds {v}"))?;
            }
            if c.bcd() && !c.bcd_valid {
                continue; // a count with digits above 9: undefined
            }
            let max = c.max_count;
            let in_range = |lo: u32| (lo..=max).contains(&v) || (v == 0 && max == c.modulus());
            match c.mode() {
                2 => ensure(in_range(1), || {
                    format!("mode 2 counter {i} holds {v}, counts written up to {max}")
                })?,
                3 => ensure(in_range(0), || {
                    format!("mode 3 counter {i} holds {v}, counts written up to {max}")
                })?,
                _ => {}
            }
        }
        ensure(model.interrupts() == self.delivered, || {
            "IRQ0 delivered without fire()".into()
        })?;
        let coalesced = model.coalesced();
        ensure(coalesced >= self.coalesced, || {
            "the coalesced count went down".into()
        })?;
        self.coalesced = coalesced;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_pit_short_pass() {
        crate::short_pass::<Pit>(1_500);
    }

    #[test]
    fn bcd_helpers() {
        assert_eq!(to_bcd(1234), 0x1234);
        assert!(valid_bcd(0x9999));
        assert!(!valid_bcd(0x00A0));
    }
}
