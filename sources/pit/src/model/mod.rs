//! A register-level model of the Intel 8254 PIT with the PC wiring around
//! it (OUT0 → IRQ0, GATE2 and OUT2 on port B), for the simulator and for a
//! hypervisor that emulates a PIT.
//!
//! # What is emulated
//!
//! All three counters (counter 1 is wired to nothing), all six modes,
//! binary and BCD counting, LSB / MSB / LSB-then-MSB access with the
//! read and write byte-order flip-flops, the counter-latch command, the
//! read-back command (count and status), NULL COUNT, GATE2 from port B bit
//! 0, OUT2 on port B bit 5 and the refresh toggle on bit 4. Deviations,
//! each at most one clock: a count written while GATE is low is taken at
//! once instead of at the next clock; a mode-3 count written while counting
//! is loaded at the end of the period, not the half-period; an illegal
//! count of 1 in modes 2 and 3 holds OUT still.
//!
//! # Time
//!
//! The input clock runs at exactly [`PIT_TICK_RATE`] from the
//! [`TimeBase`]: at true time `t` ns, `⌊t · 1193182 / 10⁹⌋` clock edges
//! have passed (exact 128-bit integer arithmetic, no drift, no float), and
//! edge `j` happens at `⌈j · 10⁹ / 1193182⌉` ns. Nothing runs between
//! accesses: every port access and every [`InterruptSource`] call first
//! brings the counters to the current edge in closed form (see
//! the `counter` module).
//!
//! # Waveforms (datasheet "Mode Definitions"), `w` = count written, `L` = load
//!
//! ```text
//!   mode 0, N = 3          w  L
//!   CLK          _|‾|_|‾|_|‾|_|‾|_|‾|_|‾|_
//!   count           ?  | 3 | 2 | 1 | 0 |FFFF
//!   OUT          ‾‾\______________/‾‾‾‾‾‾‾‾   IRQ0 at the rise: N+1 clocks after w
//!
//!   mode 2, N = 3          w  L
//!   count           ?  | 3 | 2 | 1 | 3 | 2 | 1 | 3
//!   OUT          ‾‾‾‾‾‾‾‾‾‾‾‾‾\___/‾‾‾‾‾‾‾\___/‾‾   rises every N clocks
//! ```
//!
//! # Interrupts
//!
//! IRQ0 is edge-triggered (the 8259 latches a rising edge of OUT0 in its
//! request register). The model keeps that one pending bit: rising edges
//! while an interrupt is pending merge into it (counted as coalesced), as
//! they would on a PC whose CPU had interrupts off. A control word that
//! lifts OUT0 from low to high (mode 2 written after mode 0) is a rising
//! edge too, as on the hardware.
//!
//! # Quirks
//!
//! [`Quirks::MODE_WRITE_DEFERRED`] models the virtual PITs named in Linux's
//! `clockevent_i8253_disable()` comment (drivers/clocksource/i8253.c): a
//! control word changes the byte access at once but the mode only with
//! the next count written, so counting (and IRQ0) goes on until then.

mod counter;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

use clocksource::{Ktime, NSEC_PER_SEC};
use hw::{InterruptSource, PortIo, TimeBase};

use crate::regs::{port, Channel, Command, ControlWord, PortB, PIT_TICK_RATE};
use counter::Counter;

bitflags::bitflags! {
    /// Departures from the datasheet that real (virtual) PITs show.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Quirks: u32 {
        /// A control word's mode takes effect only with the next count
        /// written (KVM's in-kernel PIT, per Linux's comment); until then
        /// the counter goes on in its old mode.
        const MODE_WRITE_DEFERRED = 1 << 0;
    }
}

const GIGA: u128 = NSEC_PER_SEC as u128;
const HZ: u128 = PIT_TICK_RATE.get() as u128;
/// Port B's refresh bit toggles every 18 PIT clocks (15.085 µs), the
/// AT's DRAM refresh rate.
const REFRESH_CLOCKS: u64 = 18;

/// The input clock: edge indices from true time, and back.
#[derive(Clone, Copy, Debug)]
struct Crystal {
    running: bool,
    /// Edges that did not happen while the clock was stopped.
    lost: u64,
    /// The edge index while stopped.
    frozen: u64,
}

impl Crystal {
    fn raw_edges(t: Ktime) -> u64 {
        (t.as_nanos() as u128 * HZ / GIGA) as u64
    }
    fn raw_time(j: u64) -> Ktime {
        let ns = (j as u128 * GIGA).div_ceil(HZ);
        Ktime::from_nanos(ns.min(u64::MAX as u128) as u64)
    }
    fn edges(&self, t: Ktime) -> u64 {
        if self.running {
            Self::raw_edges(t).saturating_sub(self.lost)
        } else {
            self.frozen
        }
    }
    fn time_of(&self, j: u64) -> Option<Ktime> {
        self.running
            .then(|| Self::raw_time(j.saturating_add(self.lost)))
    }
}

/// The 8259's view of IRQ0.
#[derive(Clone, Debug, Default)]
struct Irq0 {
    /// A latched rising edge not yet delivered, and when it happened.
    pending: Option<Ktime>,
    /// Rising edges of OUT0 seen.
    edges: u64,
    /// Interrupts delivered, with their delivery times.
    delivered: Vec<Ktime>,
}

impl Irq0 {
    fn raise(&mut self, at: Ktime, count: u64) {
        self.edges += count;
        if self.pending.is_none() {
            self.pending = Some(at);
        }
    }
}

#[derive(Debug)]
struct Inner {
    crystal: Crystal,
    counters: [Counter; 3],
    port_b: PortB,
    quirks: Quirks,
    irq: Irq0,
}

impl Inner {
    /// Brings every counter to the edge of `now`, latching OUT0's rising
    /// edges into IRQ0. Returns the edge index.
    fn sync(&mut self, now: Ktime) -> u64 {
        let e = self.crystal.edges(now);
        let crystal = self.crystal;
        let irq = &mut self.irq;
        let [c0, c1, c2] = &mut self.counters;
        c0.advance(e, &mut |x, n| {
            irq.raise(crystal.time_of(x).unwrap_or(now), n);
        });
        c1.advance(e, &mut |_, _| {});
        c2.advance(e, &mut |_, _| {});
        e
    }

    fn write(&mut self, port: u16, value: u8, now: Ktime) {
        let e = self.sync(now);
        let out0 = self.counters[0].out(e);
        let deferred = self.quirks.contains(Quirks::MODE_WRITE_DEFERRED);
        match port {
            port::CHANNEL0 | port::CHANNEL1 | port::CHANNEL2 => {
                self.counters[(port - port::CHANNEL0) as usize].write(value, deferred, e);
            }
            port::COMMAND => match ControlWord::from_bits(value).decode() {
                Command::Program {
                    channel,
                    access,
                    mode,
                    format,
                    mode_bits,
                } => self.counters[channel.index()].program(
                    access,
                    mode,
                    format == crate::regs::CountFormat::Bcd,
                    mode_bits,
                    deferred,
                    e,
                ),
                Command::Latch(channel) => self.counters[channel.index()].latch(e),
                Command::ReadBack(rb) => {
                    for ch in Channel::ALL.into_iter().filter(|c| rb.selects(*c)) {
                        let c = &mut self.counters[ch.index()];
                        if rb.count() {
                            c.latch(e);
                        }
                        if rb.status() {
                            c.latch_status(e);
                        }
                    }
                }
            },
            port::PORT_B => {
                let v = PortB::from_bits_retain(value).intersection(PortB::WRITABLE);
                self.port_b = v;
                self.counters[2].set_gate(v.contains(PortB::TIMER2_GATE), e);
            }
            _ => log::debug!("pit model: write {value:#04x} to unclaimed port {port:#x}"),
        }
        if !out0 && self.counters[0].out(e) {
            // OUT0 rose because of the write itself (a control word for a
            // mode whose initial OUT is high): the 8259 sees an edge.
            self.irq.raise(now, 1);
        }
    }

    fn read(&mut self, port: u16, now: Ktime) -> u8 {
        let e = self.sync(now);
        match port {
            port::CHANNEL0 | port::CHANNEL1 | port::CHANNEL2 => {
                self.counters[(port - port::CHANNEL0) as usize].read(e)
            }
            port::PORT_B => {
                let mut b = self.port_b;
                b.set(PortB::REFRESH, (e / REFRESH_CLOCKS) % 2 == 1);
                b.set(PortB::TIMER2_OUT, self.counters[2].out(e));
                b.bits()
            }
            // The control word register is write-only; nothing else answers.
            _ => 0xFF,
        }
    }
}

/// The 8254 and its PC wiring, driven by a [`TimeBase`]. Implements
/// [`PortIo`] (ports 0x40–0x43 and 0x61) and [`InterruptSource`] (IRQ0,
/// delivered to CPU 0).
pub struct PitModel {
    time: Arc<dyn TimeBase + Send + Sync>,
    inner: Mutex<Inner>,
}

impl PitModel {
    /// A PIT at power-on: every counter programmed LSB/MSB mode 0 without a
    /// count (OUT low, not counting), GATE2 low, no interrupt pending.
    pub fn new(time: Arc<dyn TimeBase + Send + Sync>) -> Self {
        let e = Crystal::raw_edges(time.now());
        PitModel {
            inner: Mutex::new(Inner {
                crystal: Crystal {
                    running: true,
                    lost: 0,
                    frozen: 0,
                },
                counters: [
                    Counter::power_on(true, e),
                    Counter::power_on(true, e),
                    Counter::power_on(false, e),
                ],
                port_b: PortB::empty(),
                quirks: Quirks::empty(),
                irq: Irq0::default(),
            }),
            time,
        }
    }

    /// A PIT as a PC BIOS leaves it: counter 0 in mode 3 with count 65536
    /// (IRQ0 at 18.2 Hz), counter 1 in mode 2 with count 18 (refresh), no
    /// interrupt pending yet.
    pub fn after_bios(time: Arc<dyn TimeBase + Send + Sync>) -> Self {
        let m = PitModel::new(time);
        m.outb(port::COMMAND, 0x36);
        m.outb(port::CHANNEL0, 0);
        m.outb(port::CHANNEL0, 0);
        m.outb(port::COMMAND, 0x54);
        m.outb(port::CHANNEL1, REFRESH_CLOCKS as u8);
        m.lock().irq = Irq0::default();
        m
    }

    /// The same model with `quirks`.
    pub fn with_quirks(self, quirks: Quirks) -> Self {
        self.lock().quirks = quirks;
        self
    }

    /// Moves the model to the heap for good (the simulator wants
    /// `&'static` devices).
    pub fn leak(self) -> &'static PitModel {
        std::boxed::Box::leak(std::boxed::Box::new(self))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interrupts delivered on IRQ0 so far.
    pub fn interrupts(&self) -> u64 {
        self.lock().irq.delivered.len() as u64
    }

    /// When each IRQ0 interrupt was delivered (true time).
    pub fn interrupt_times(&self) -> Vec<Ktime> {
        self.lock().irq.delivered.clone()
    }

    /// Rising edges of OUT0 that merged into an interrupt already pending.
    pub fn coalesced(&self) -> u64 {
        let mut g = self.lock();
        let now = self.time.now();
        g.sync(now);
        let pending = g.irq.pending.is_some() as u64;
        g.irq.edges - g.irq.delivered.len() as u64 - pending
    }

    /// OUT of `channel` now.
    pub fn out(&self, channel: Channel) -> bool {
        let mut g = self.lock();
        let e = g.sync(self.time.now());
        g.counters[channel.index()].out(e)
    }

    /// The counting element of `channel` now, as the hardware holds it
    /// (binary; 0 for a freshly loaded 65536), without touching the
    /// latches or flip-flops a port read would.
    pub fn peek_count(&self, channel: Channel) -> u32 {
        let mut g = self.lock();
        let e = g.sync(self.time.now());
        g.counters[channel.index()].value(e)
    }

    /// PIT clock edges since the time base's zero (less any time the clock
    /// was stopped).
    pub fn clock_edges(&self) -> u64 {
        self.lock().crystal.edges(self.time.now())
    }

    /// Fault: stops (`false`) or restarts the PIT's input clock, as a
    /// chipset that gates it off does. Counters freeze where they are.
    pub fn set_clock_running(&self, running: bool) {
        let now = self.time.now();
        let mut g = self.lock();
        g.sync(now);
        let c = &mut g.crystal;
        if running && !c.running {
            c.lost = Crystal::raw_edges(now).saturating_sub(c.frozen);
            c.running = true;
        } else if !running && c.running {
            c.frozen = c.edges(now);
            c.running = false;
        }
    }
}

impl core::fmt::Debug for PitModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PitModel")
            .field("inner", &*self.lock())
            .finish()
    }
}

impl PortIo for PitModel {
    fn inb(&self, port: u16) -> u8 {
        let now = self.time.now();
        self.lock().read(port, now)
    }

    fn outb(&self, port: u16, value: u8) {
        let now = self.time.now();
        self.lock().write(port, value, now);
    }
}

impl InterruptSource for PitModel {
    fn next_fire(&self) -> Option<Ktime> {
        let now = self.time.now();
        let mut g = self.lock();
        g.sync(now);
        if let Some(t) = g.irq.pending {
            return Some(t);
        }
        let edge = g.counters[0].next_rising()?;
        g.crystal.time_of(edge)
    }

    fn fire(&self) -> bool {
        let now = self.time.now();
        let mut g = self.lock();
        g.sync(now);
        match g.irq.pending {
            Some(t) if t <= now => {
                g.irq.pending = None;
                g.irq.delivered.push(now);
                true
            }
            _ => false,
        }
    }

    fn target_cpu(&self) -> Option<usize> {
        Some(0)
    }

    /// The PIT runs in every C-state.
    fn set_deep_idle(&self, _deep: bool) {}
}
