//! A register-level model of the ACPI PM timer, for the simulator and for
//! a hypervisor that gives a guest one.
//!
//! # What is emulated
//!
//! The `PM_TMR` register (ACPI 6.5 §4.8.3.3) at a port of the caller's
//! choosing (QEMU: 0x608): 24 bits, or 32 with `TMR_VAL_EXT`; read-only;
//! counting up at exactly 3.579545 MHz from a start value that is the
//! model's to choose ("the starting value of the timer is undefined"). Not
//! emulated: the PM1 event block's `TMR_STS` / `TMR_EN` and the SCI that
//! the timer's top bit raises through them (no driver here uses it, and
//! Linux's clocksource does not either), so the model is not an
//! `InterruptSource`.
//!
//! # Time
//!
//! The timer's clock runs from the [`TimeBase`]'s zero: at true time `t`
//! ns, `⌊t · 3579545 / 10⁹⌋` clock edges have passed (exact 128-bit
//! integer arithmetic, no float), and edge `j` comes at
//! `⌈j · 10⁹ / 3579545⌉` ns. The count is the start value plus the edges
//! since the model was made, less those while it was stopped
//! ([`PmTimerModel::set_running`]), modulo 2^24 (2^32 with `TMR_VAL_EXT`).
//!
//! # Accesses
//!
//! Each access samples the count once and is decoded by byte lane, as an
//! LPC device answers (ISA registers "should be accessible as bytes, words
//! or dwords", QEMU's "acpi: accept byte and word access to core ACPI
//! registers", 2020, which made its PM timer answer so):
//!
//! ```text
//!   byte lane     base    base+1  base+2  base+3    any other port
//!   reads bits    7:0     15:8    23:16   31:24     0xFF (unclaimed)
//!                                         (0 on a 24-bit timer)
//!   inl(base)   = the count, one sample
//!   inw(base)   = bits 15:0, inw(base+2) = bits 31:16, one sample each
//!   an access straddling the register: its lanes outside read 0xFF
//!   writes, any width, any port: go nowhere (PM_TMR is read-only)
//! ```
//!
//! so every access has a defined answer and none panics; only the 32-bit
//! read at the base gives the whole count in one sample.

use std::boxed::Box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use clocksource::{Ktime, NSEC_PER_SEC};
use hw::{PortIo, TimeBase};

use crate::source::FREQUENCY;

const GIGA: u128 = NSEC_PER_SEC as u128;
const HZ: u128 = FREQUENCY.get() as u128;
/// The register's width in bytes (`PM_TMR_LEN`, ACPI: 4).
pub const REGISTER_LEN: u16 = 4;

/// Timer clock edges since the time base's zero at `t`.
fn edges(t: Ktime) -> u64 {
    (t.as_nanos() as u128 * HZ / GIGA) as u64
}

/// What a [`PmTimerModel`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimerModelConfig {
    port: u16,
    extended: bool,
    initial: u32,
}

impl PmTimerModelConfig {
    /// A 24-bit PM timer at `port`, starting at 0.
    pub fn new(port: u16) -> Self {
        PmTimerModelConfig {
            port,
            extended: false,
            initial: 0,
        }
    }
    /// QEMU's, on both its pc and q35 machines: 24 bits at port 0x608
    /// (hw/acpi/core.c, `acpi_pm_tmr_get` returns the count `& 0xffffff`).
    pub fn qemu() -> Self {
        PmTimerModelConfig::new(0x608)
    }
    /// Whether the timer counts 32 bits (`TMR_VAL_EXT`) instead of 24.
    pub fn extended(mut self, yes: bool) -> Self {
        self.extended = yes;
        self
    }
    /// The count when the model is made (cut to the timer's width).
    pub fn initial(mut self, count: u32) -> Self {
        self.initial = count;
        self
    }
    /// The port of `PM_TMR`.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The count's mask: `0xFF_FFFF`, or `0xFFFF_FFFF` with `TMR_VAL_EXT`.
    pub fn mask(&self) -> u32 {
        if self.extended {
            u32::MAX
        } else {
            0xFF_FFFF
        }
    }
}

/// The counting state.
#[derive(Debug)]
struct State {
    running: bool,
    /// Edges counted before the current run.
    counted: u64,
    /// The edge index the current run started at.
    run_start: u64,
}

impl State {
    fn ticks(&self, now: Ktime) -> u64 {
        let run = if self.running {
            edges(now).saturating_sub(self.run_start)
        } else {
            0
        };
        self.counted + run
    }
}

/// The ACPI PM timer register, driven by a [`TimeBase`]. Implements
/// [`PortIo`] (`PM_TMR` at its port; see the [module docs](self)).
pub struct PmTimerModel {
    time: Arc<dyn TimeBase + Send + Sync>,
    config: PmTimerModelConfig,
    state: Mutex<State>,
    reads: AtomicU64,
}

impl PmTimerModel {
    /// A PM timer holding `config`'s start value now and counting from
    /// there.
    pub fn new(time: Arc<dyn TimeBase + Send + Sync>, config: PmTimerModelConfig) -> Self {
        let run_start = edges(time.now());
        PmTimerModel {
            time,
            config,
            state: Mutex::new(State {
                running: true,
                counted: 0,
                run_start,
            }),
            reads: AtomicU64::new(0),
        }
    }

    /// Moves the model to the heap for good (for a `&'static` clock source).
    pub fn leak(self) -> &'static PmTimerModel {
        Box::leak(Box::new(self))
    }

    /// The configuration.
    pub fn config(&self) -> PmTimerModelConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Timer clock edges counted since the model was made (not wrapped).
    pub fn ticks(&self) -> u64 {
        self.lock().ticks(self.time.now())
    }

    /// The count now, as the register holds it, without counting a read.
    pub fn value(&self) -> u32 {
        let ticks = self.ticks();
        ((self.config.initial as u64).wrapping_add(ticks) & self.config.mask() as u64) as u32
    }

    /// Accesses that reached the register (any width).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Fault: stops (`false`) the timer's clock, as a chipset that gates it
    /// off or a VMM that does not run it; the count holds and, restarted,
    /// goes on from where it stopped (ACPI: "continue counting from where
    /// it stopped").
    pub fn set_running(&self, running: bool) {
        let now = self.time.now();
        let mut s = self.lock();
        if running && !s.running {
            s.run_start = edges(now);
            s.running = true;
        } else if !running && s.running {
            s.counted = s.ticks(now);
            s.running = false;
        }
    }

    /// One access of `width` bytes at `port`: one sample of the count,
    /// decoded by byte lane (module docs).
    fn read(&self, port: u16, width: u16) -> u32 {
        let base = self.config.port as u32;
        let first = port as u32;
        let claims = |p: u32| (base..base + REGISTER_LEN as u32).contains(&p);
        let touches = (first..first + width as u32).any(claims);
        let value = if touches {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.value()
        } else {
            0
        };
        (0..width as u32).fold(0, |acc, i| {
            let p = first + i;
            let byte = if claims(p) {
                (value >> (8 * (p - base))) as u8
            } else {
                0xFF
            };
            acc | (byte as u32) << (8 * i)
        })
    }

    fn write(&self, port: u16, width: u16, value: u32) {
        log::debug!(
            "acpi_pm model: {width}-byte write {value:#x} to port {port:#x} ignored (PM_TMR is read-only)"
        );
    }
}

impl core::fmt::Debug for PmTimerModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PmTimerModel")
            .field("config", &self.config)
            .field("state", &*self.lock())
            .finish()
    }
}

impl PortIo for PmTimerModel {
    fn inb(&self, port: u16) -> u8 {
        self.read(port, 1) as u8
    }
    fn outb(&self, port: u16, value: u8) {
        self.write(port, 1, value as u32);
    }
    fn inw(&self, port: u16) -> u16 {
        self.read(port, 2) as u16
    }
    fn outw(&self, port: u16, value: u16) {
        self.write(port, 2, value as u32);
    }
    fn inl(&self, port: u16) -> u32 {
        self.read(port, 4)
    }
    fn outl(&self, port: u16, value: u32) {
        self.write(port, 4, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::VirtualClock;

    fn model(config: PmTimerModelConfig) -> (Arc<VirtualClock>, PmTimerModel) {
        let clock = VirtualClock::new();
        let m = PmTimerModel::new(clock.clone(), config);
        (clock, m)
    }

    /// The instant of timer edge `j`: ⌈j · 10⁹ / 3579545⌉ ns.
    fn edge(j: u64) -> Ktime {
        Ktime::from_nanos((j as u128 * 1_000_000_000).div_ceil(3_579_545) as u64)
    }

    #[test]
    fn counts_3579545_in_one_second() {
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_secs(1));
        assert_eq!(m.inl(0x608), 3_579_545);
        assert_eq!(m.ticks(), 3_579_545);
        // One edge is 279.365 ns: edge 1 at 280 ns, not before.
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_nanos(279));
        assert_eq!(m.inl(0x608), 0);
        t.advance_to(Ktime::from_nanos(280));
        assert_eq!(m.inl(0x608), 1);
        assert_eq!(m.reads(), 2);
    }

    #[test]
    fn a_24_bit_timer_wraps_at_2_pow_24_and_reads_0_above_bit_23() {
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_nanos(edge(1 << 24).as_nanos() - 1));
        assert_eq!(m.inl(0x608), 0xFF_FFFF);
        t.advance_to(edge(1 << 24));
        assert_eq!(m.inl(0x608), 0, "wrapped, E_TMR_VAL reads 0");
        // 2^24 edges: 4.686968875 s.
        assert_eq!(edge(1 << 24), Ktime::from_nanos(4_686_968_875));
    }

    #[test]
    fn an_extended_timer_counts_32_bits() {
        let (t, m) = model(
            PmTimerModelConfig::new(0x608)
                .extended(true)
                .initial(0xFFFF_FFF0),
        );
        t.advance_to(edge(0x10));
        assert_eq!(m.inl(0x608), 0, "wraps at 2^32");
        t.advance_to(edge(1 << 24));
        assert_eq!(m.inl(0x608), 0x00FF_FFF0);
        t.advance_to(edge((1 << 24) + 0x10));
        assert_eq!(m.inl(0x608), 0x0100_0000, "bit 24 is counted");
    }

    #[test]
    fn the_start_value_is_the_models_and_counting_starts_at_creation() {
        let time = VirtualClock::starting_at(Ktime::from_secs(2));
        let m = PmTimerModel::new(
            time.clone(),
            PmTimerModelConfig::new(0x608).initial(0xAB_0000),
        );
        assert_eq!(m.inl(0x608), 0xAB_0000);
        time.advance_to(Ktime::from_secs(3));
        assert_eq!(m.inl(0x608), 0xAB_0000 + 3_579_545);
        // Cut to 24 bits.
        let m = PmTimerModel::new(time.clone(), PmTimerModelConfig::new(0x608).initial(!0));
        assert_eq!(m.value(), 0xFF_FFFF);
    }

    #[test]
    fn narrow_reads_are_byte_lanes_of_one_sample() {
        let (_clock, m) = model(
            PmTimerModelConfig::new(0x608)
                .extended(true)
                .initial(0x1234_5678),
        );
        assert_eq!(m.inb(0x608), 0x78);
        assert_eq!(m.inb(0x609), 0x56);
        assert_eq!(m.inb(0x60A), 0x34);
        assert_eq!(m.inb(0x60B), 0x12);
        assert_eq!(m.inw(0x608), 0x5678);
        assert_eq!(m.inw(0x60A), 0x1234);
        // Straddling the register's end: the lanes past it float.
        assert_eq!(m.inw(0x60B), 0xFF12);
        assert_eq!(m.inl(0x609), 0xFF12_3456);
        // Before its start.
        assert_eq!(m.inl(0x606), 0x5678_FFFF);
        assert_eq!(m.reads(), 9);
    }

    #[test]
    fn other_ports_float_and_do_not_count_as_reads() {
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_secs(1));
        assert_eq!(m.inl(0x600), 0xFFFF_FFFF);
        assert_eq!(m.inl(0x60C), 0xFFFF_FFFF);
        assert_eq!(m.inw(0xFFFF), 0xFFFF);
        assert_eq!(m.inl(0xFFFE), 0xFFFF_FFFF, "no wrap past port 0xFFFF");
        assert_eq!(m.inb(0x607), 0xFF);
        assert_eq!(m.reads(), 0);
    }

    #[test]
    fn writes_change_nothing() {
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_secs(1));
        m.outl(0x608, 0);
        m.outw(0x608, 0);
        m.outb(0x608, 0);
        m.outl(0x1234, 0);
        assert_eq!(m.inl(0x608), 3_579_545);
    }

    #[test]
    fn a_stopped_timer_holds_and_resumes_where_it_stopped() {
        let (t, m) = model(PmTimerModelConfig::new(0x608));
        t.advance_to(Ktime::from_millis(100));
        m.set_running(false);
        m.set_running(false);
        let held = m.inl(0x608);
        assert_eq!(held, 357_954);
        t.advance_to(Ktime::from_millis(900));
        assert_eq!(m.inl(0x608), held);
        m.set_running(true);
        m.set_running(true);
        t.advance_to(Ktime::from_millis(1_000));
        // 100 ms more: edges 3579545 − 3221590 = 357955 since the restart.
        assert_eq!(m.inl(0x608), held + 357_955);
    }
}
