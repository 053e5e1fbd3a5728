//! Counter 2 as a free-running clock source, "pit-ch2": the reference for
//! calibrating the TSC and the LAPIC timer, and the clock of last resort.
//!
//! ```text
//!   port B (0x61): GATE2 = 1, SPEAKER_DATA = 0     counter 2 counts, silently
//!   0xB4: counter 2, mode 2, LSB/MSB, binary
//!   count 0x00 0x00 = 65536                        reloads every 65536 clocks
//!
//!   counter 2:  0 (=65536), 65535, 65534, … 2, 1, 0, 65535 …   counts down
//!   read():     0xFFFF − latched count                         counts up,
//!               65535, 0, 1, … 65533, 65534, 65535, 0 …        wraps at 0xFFFF
//! ```
//!
//! Mode 2 with the maximum count never stops: it is a 16-bit down-counter
//! at [`PIT_TICK_RATE`] that wraps every 54.925 ms. The
//! [`ClockSource`] contract wants an up-counter, so `read()` returns
//! `mask − count`. The core derives a max deferment of ≈24.4 ms from that
//! wrap (half of it, less the 11 % slew margin); with this as the system
//! clock the tick stays periodic (below), so that bound is never reached.
//!
//! Each read is three port accesses under a lock (the counter-latch
//! command, then LSB and MSB of the latched count, as Linux's `i8253_read`
//! reads counter 0; `pit_calibrate_tsc` polls OUT2 instead). The lock is a
//! bounded try-lock: if another CPU holds it for longer than
//! [`LOCK_SPINS`] spins (or an interrupt handler on the holder's CPU
//! reads), `read()` returns the last value read instead of waiting —
//! never backwards, never blocked.
//!
//! # Never high resolution
//!
//! Linux never offers the PIT as a high-resolution clock (its 32-bit-only
//! "pit" clocksource in drivers/clocksource/i8253.c, rating 110, is not
//! even `CONTINUOUS`: it is extrapolated from jiffies), and neither does
//! this one: it declares `CONTINUOUS` only, so the tick layer stays
//! periodic on it (`PeriodicReason::ClockNotHres`) and reads it every tick.
//! The 16-bit counter wraps every 54.925 ms: a NO_HZ wake-up at the 24.4 ms
//! max deferment that came ~30 ms late would find it wrapped and lose a
//! whole 54.9 ms, stalling time; a periodic tick (4 ms at HZ=250) leaves
//! 50 ms of lateness before that can happen. A 838 ns tick and three port
//! accesses per read (≈3 µs on hardware, three VM exits in a guest) make it
//! a poor base for high-resolution timers anyway.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz};

use crate::chip::Pit;
use crate::regs::{
    ByteAccess, Channel, ControlWord, CountFormat, Mode, PortB, Reload, PIT_TICK_RATE,
};

/// The clock source's name.
pub const NAME: &str = "pit-ch2";
/// The counter's mask: 16 bits.
pub const MASK: Cycles = Cycles::new(0xFFFF);
/// Spins a reader waits for the lock before falling back to the last value.
pub const LOCK_SPINS: u32 = 1 << 14;
/// Reads [`PitClockSource::probe`] makes by default: a live counter moves
/// every 838 ns, and a read is three port accesses (≥ 1 µs each on
/// hardware), so it changes within two reads; 1000 bounds the probe at a
/// few milliseconds even under slow emulated I/O.
pub const PROBE_READS: u32 = 1_000;

/// Counter 2, mode 2 (rate generator), LSB/MSB, binary: `0xB4`.
pub const FREE_RUNNING: ControlWord = ControlWord::program(
    Channel::Ch2,
    ByteAccess::LoHi,
    Mode::RateGenerator,
    CountFormat::Binary,
);

/// How counter 2 presents itself as a clock source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ch2Options {
    /// Preference among clock sources (TSC 300, HPET 250, ACPI PM 200).
    pub rating: u16,
}

impl Ch2Options {
    /// A calibration reference, as Linux uses counter 2: rating 50 (below
    /// every other x86 clock). Never valid for high resolution (see the
    /// [module docs](self#never-high-resolution)).
    pub const REFERENCE: Ch2Options = Ch2Options { rating: 50 };
}

impl Default for Ch2Options {
    fn default() -> Self {
        Ch2Options::REFERENCE
    }
}

/// Why the PIT cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PitError {
    /// Counter 2 read the same value `reads` times: no PIT (the bus floats
    /// and reads 0xFF, as on Firecracker or Cloud Hypervisor), or its clock
    /// is gated off by the chipset (Linux `use_pit()`'s comment).
    NotCounting {
        /// Reads made.
        reads: u32,
        /// The value every read returned (0xFFFF: nothing answers).
        value: u16,
    },
}

impl core::fmt::Display for PitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PitError::NotCounting { reads, value } => write!(
                f,
                "PIT counter 2 did not move in {reads} reads (stuck at {value:#06x})"
            ),
        }
    }
}

/// PIT counter 2, free-running, as a [`ClockSource`].
#[derive(Debug)]
pub struct PitClockSource<'a> {
    pit: Pit<'a>,
    opts: Ch2Options,
    lock: TryLock,
    last: AtomicU32,
    contended: AtomicU64,
}

impl<'a> PitClockSource<'a> {
    /// Opens GATE2, silences the speaker and starts counter 2 free-running
    /// (mode 2, count 65536). It counts from the next PIT clock.
    pub fn new(pit: Pit<'a>, opts: Ch2Options) -> Self {
        let b = pit.port_b();
        pit.set_port_b(b.difference(PortB::SPEAKER_DATA).union(PortB::TIMER2_GATE));
        pit.command(FREE_RUNNING);
        pit.write_reload(Channel::Ch2, Reload::MAX);
        PitClockSource {
            pit,
            opts,
            lock: TryLock::new(),
            last: AtomicU32::new(0),
            contended: AtomicU64::new(0),
        }
    }

    /// Checks that counter 2 counts: reads it up to `max_reads` times
    /// (at least 2) and succeeds as soon as a read differs from the first.
    /// Returns the reads it took. Bounded by reads, not by time, so it
    /// cannot hang where no PIT answers (a read that finds the lock held
    /// counts as made).
    pub fn probe(&self, max_reads: u32) -> Result<u32, PitError> {
        let max_reads = max_reads.max(2);
        let mut first = None;
        for n in 1..=max_reads {
            let Some(v) = self.try_latch() else { continue };
            match first {
                None => first = Some(v),
                Some(f) if f != v => return Ok(n),
                Some(_) => {}
            }
        }
        let value = first.unwrap_or(0xFFFF);
        log::warn!("pit: counter 2 stuck at {value:#06x} after {max_reads} reads");
        Err(PitError::NotCounting {
            reads: max_reads,
            value,
        })
    }

    /// Reads that found the lock held and returned the previous value.
    pub fn contended_reads(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }

    /// The options it was built with.
    pub fn options(&self) -> Ch2Options {
        self.opts
    }

    /// The latched count, if the lock is free within [`LOCK_SPINS`].
    fn try_latch(&self) -> Option<u16> {
        let _g = self.lock.try_lock(LOCK_SPINS)?;
        Some(self.pit.latch_count(Channel::Ch2))
    }
}

impl ClockSource for PitClockSource<'_> {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `0xFFFF − count`, from a latched LSB/MSB pair.
    fn read(&self) -> Cycles {
        let Some(count) = self.try_latch() else {
            if self.contended.fetch_add(1, Ordering::Relaxed) == 0 {
                log::warn!("pit: counter 2 lock contended; returning the last count");
            }
            return Cycles::new(self.last.load(Ordering::Relaxed) as u64);
        };
        let up = 0xFFFF - count as u32;
        self.last.store(up, Ordering::Relaxed);
        Cycles::new(up as u64)
    }

    fn mask(&self) -> Cycles {
        MASK
    }

    fn frequency(&self) -> Hertz {
        PIT_TICK_RATE
    }

    fn rating(&self) -> u16 {
        self.opts.rating
    }

    /// `CONTINUOUS` only: never `VALID_FOR_HRES` (module docs).
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS
    }
}

/// A test-and-set lock that gives up after a bounded number of spins.
#[derive(Debug)]
struct TryLock(AtomicBool);

/// Holds a [`TryLock`] until dropped.
struct Guard<'a>(&'a AtomicBool);

impl TryLock {
    const fn new() -> Self {
        TryLock(AtomicBool::new(false))
    }

    fn try_lock(&self, spins: u32) -> Option<Guard<'_>> {
        for _ in 0..spins.max(1) {
            if self
                .0
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Guard(&self.0));
            }
            core::hint::spin_loop();
        }
        None
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::port;
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Records port accesses; reads return scripted bytes.
    struct Script {
        log: Mutex<Vec<(char, u16, u8)>>,
        reads: Mutex<Vec<u8>>,
    }
    impl hw::PortIo for Script {
        fn inb(&self, port: u16) -> u8 {
            let v = self.reads.lock().unwrap().pop().unwrap_or(0xFF);
            self.log.lock().unwrap().push(('r', port, v));
            v
        }
        fn outb(&self, port: u16, value: u8) {
            self.log.lock().unwrap().push(('w', port, value));
        }
    }

    #[test]
    fn setup_and_read_follow_linux_port_sequences() {
        // Reads pop from the end: port B, then LSB 0x34, MSB 0x12.
        let io = Script {
            log: Mutex::new(Vec::new()),
            reads: Mutex::new(std::vec![0x12, 0x34, 0b1010_0110]),
        };
        let cs = PitClockSource::new(Pit::new(&io), Ch2Options::REFERENCE);
        assert_eq!(cs.read(), Cycles::new(0xFFFF - 0x1234));
        assert_eq!(
            *io.log.lock().unwrap(),
            [
                ('r', port::PORT_B, 0b1010_0110),
                // Status bits dropped, speaker off, GATE2 on (Linux:
                // `outb((inb(0x61) & ~0x02) | 0x01, 0x61)`).
                ('w', port::PORT_B, 0b0000_0101),
                ('w', port::COMMAND, 0xB4),
                ('w', port::CHANNEL2, 0),
                ('w', port::CHANNEL2, 0),
                ('w', port::COMMAND, 0x80),
                ('r', port::CHANNEL2, 0x34),
                ('r', port::CHANNEL2, 0x12),
            ]
        );
        assert_eq!(cs.flags(), ClockSourceFlags::CONTINUOUS);
        assert_eq!((cs.mask(), cs.rating()), (Cycles::new(0xFFFF), 50));
    }

    #[test]
    fn contended_read_returns_the_last_value_without_waiting() {
        let io = Script {
            log: Mutex::new(Vec::new()),
            reads: Mutex::new(std::vec![0x00, 0x10, 0x00]),
        };
        let cs = PitClockSource::new(Pit::new(&io), Ch2Options::REFERENCE);
        let first = cs.read();
        assert_eq!(first, Cycles::new(0xFFFF - 0x10));
        let _held = cs.lock.try_lock(1).unwrap();
        assert_eq!(cs.read(), first);
        assert_eq!(cs.contended_reads(), 1);
    }

    #[test]
    fn free_running_control_word() {
        assert_eq!(FREE_RUNNING.bits(), 0xB4);
    }

    #[test]
    fn held_lock_is_given_up_after_bounded_spins() {
        let l = TryLock::new();
        let g = l.try_lock(1).expect("free");
        assert!(l.try_lock(100).is_none());
        drop(g);
        assert!(l.try_lock(1).is_some());
    }
}
