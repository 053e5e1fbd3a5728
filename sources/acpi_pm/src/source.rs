//! The PM timer register as a [`ClockSource`], and the bounded check that
//! it counts.
//!
//! ```text
//!   PM_TMR (ACPI 6.5 §4.8.3.3), read-only, accessed as 32 bits
//!    31          24 23                                   0
//!   ┌──────────────┬──────────────────────────────────────┐
//!   │  E_TMR_VAL   │               TMR_VAL                │
//!   └──────────────┴──────────────────────────────────────┘
//!    with TMR_VAL_EXT: the upper 8 bits of a 32-bit count;
//!    without: reserved, read as 0.       read() keeps 23:0
//! ```
//!
//! A read is one `inl`: the register must be read whole (a byte at a time
//! would be four samples of a counter that moves every 279 ns). Linux reads
//! it once (`acpi_pm_read`), and three times in a loop only on chipsets
//! whose timer is not latched ("ICH4, PIIX4 and PIIX4E", by its comment;
//! picked by PCI ID: `acpi_pm_read_verified`). That loop has no bound,
//! which a clock read must have, and QEMU's PIIX4 and ICH9 compute each
//! read from their clock, so this driver reads once and has no slow
//! variant.
//!
//! # The probe
//!
//! Linux's `init_acpi_pm_clocksource` reads the timer until it moves (up to
//! `ACPI_PM_READ_CHECKS`, 10 000 reads) and refuses a timer that never does
//! or that moves backwards other than across the wrap (a new value below
//! the first is accepted only if it is below 0xFFF). It makes that check
//! ten times with a growing `udelay` between; a driver here has no delay to
//! wait with before a clock exists, so [`AcpiPmClockSource::probe`] makes
//! one round. It is bounded by reads, not by time: where no PM timer
//! answers, every read is all ones and the probe ends.

use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz};
use hw::PortIo;

/// The clock source's name (`clocksource=acpi_pm`).
pub const NAME: &str = "acpi_pm";
/// The PM timer's rate: 3.579545 MHz (ACPI 6.5 §4.8.3.3; Linux
/// `PMTMR_TICKS_PER_SEC`).
pub const FREQUENCY: Hertz = Hertz::new(3_579_545);
/// The mask every read is cut to: 24 bits, whatever the FADT's
/// `TMR_VAL_EXT` says (Linux `ACPI_PM_MASK`; the crate docs say why).
pub const MASK: Cycles = Cycles::new(0xFF_FFFF);
/// Preference among clock sources (Linux: TSC 300, HPET 250, ACPI PM 200).
pub const RATING: u16 = 200;
/// Reads [`AcpiPmClockSource::probe`] makes by default before it calls the
/// timer stopped (Linux `ACPI_PM_READ_CHECKS`): a live timer moves every
/// 279 ns, and one `in` takes ≥ 0.5 µs on hardware (a VM exit in a VM),
/// so it changes by the second read; 10 000 bound the probe at a few
/// milliseconds even under slow emulated I/O.
pub const PROBE_READS: u32 = 10_000;
/// A value below the first read counts as moving forward only if it is
/// below this: the counter wrapped (Linux `init_acpi_pm_clocksource`).
pub const WRAP_WINDOW: u32 = 0xFFF;

/// Why the PM timer cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiPmError {
    /// Every one of `reads` reads returned `value`: the timer is stopped,
    /// or nothing answers at the port (the bus floats: 0xFF_FFFF), e.g. a
    /// FADT naming a port where there is no timer.
    NotCounting {
        /// Reads made.
        reads: u32,
        /// The (24-bit) value every read returned.
        value: u32,
    },
    /// A read returned less than the first, and not by wrapping (Linux:
    /// "PM-Timer had inconsistent results").
    WentBackwards {
        /// The first read.
        from: u32,
        /// The later, smaller read.
        to: u32,
    },
}

impl core::fmt::Display for AcpiPmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiPmError::NotCounting { reads, value } => write!(
                f,
                "ACPI PM timer did not move in {reads} reads (stuck at {value:#08x})"
            ),
            AcpiPmError::WentBackwards { from, to } => write!(
                f,
                "ACPI PM timer went backwards from {from:#08x} to {to:#08x}"
            ),
        }
    }
}

/// The PM timer at an I/O port, as a [`ClockSource`].
pub struct AcpiPmClockSource<'a, P: PortIo + ?Sized> {
    io: &'a P,
    port: u16,
}

impl<'a, P: PortIo + ?Sized> AcpiPmClockSource<'a, P> {
    /// The PM timer at `port` (the FADT's `PM_TMR_BLK`), reached through
    /// `io`. Touches nothing: reading the timer has no side effect, and
    /// there is nothing to program. Call [`probe`](Self::probe) before
    /// relying on it.
    pub const fn new(io: &'a P, port: u16) -> Self {
        AcpiPmClockSource { io, port }
    }

    /// The I/O port it reads.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Checks that the timer counts forwards: reads it up to `max_reads`
    /// times (at least 2) and succeeds as soon as a read differs from the
    /// first and is larger, or smaller by a wrap (below [`WRAP_WINDOW`]).
    /// Returns the reads it took. Never waits: bounded by reads alone.
    pub fn probe(&self, max_reads: u32) -> Result<u32, AcpiPmError> {
        let max_reads = max_reads.max(2);
        let first = self.read24();
        for n in 2..=max_reads {
            let v = self.read24();
            if v == first {
                continue;
            }
            if v > first || v < WRAP_WINDOW {
                return Ok(n);
            }
            log::warn!(
                "acpi_pm: port {:#x} went backwards, {first:#08x} then {v:#08x}",
                self.port
            );
            return Err(AcpiPmError::WentBackwards { from: first, to: v });
        }
        log::warn!(
            "acpi_pm: port {:#x} stuck at {first:#08x} after {max_reads} reads",
            self.port
        );
        Err(AcpiPmError::NotCounting {
            reads: max_reads,
            value: first,
        })
    }

    /// One 32-bit read, cut to [`MASK`].
    fn read24(&self) -> u32 {
        self.io.inl(self.port) & MASK.get() as u32
    }
}

impl<P: PortIo + ?Sized> core::fmt::Debug for AcpiPmClockSource<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AcpiPmClockSource")
            .field("port", &self.port)
            .finish()
    }
}

impl<P: PortIo + ?Sized> ClockSource for AcpiPmClockSource<'_, P> {
    fn name(&self) -> &'static str {
        NAME
    }

    /// One `inl` of `PM_TMR`, bits 23:0.
    fn read(&self) -> Cycles {
        Cycles::new(self.read24() as u64)
    }

    fn mask(&self) -> Cycles {
        MASK
    }

    fn frequency(&self) -> Hertz {
        FREQUENCY
    }

    fn rating(&self) -> u16 {
        RATING
    }

    /// Free-running through every C-state of the working state, so
    /// `CONTINUOUS`; and fine enough (279 ns) for high-resolution timers.
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// Answers `inl` from a script (the last value repeats), counts every
    /// access by width, and answers nothing else.
    struct Script {
        values: &'static [u32],
        next: AtomicUsize,
        port: u16,
        byte_or_word: AtomicUsize,
    }

    impl Script {
        const fn new(port: u16, values: &'static [u32]) -> Self {
            Script {
                values,
                next: AtomicUsize::new(0),
                port,
                byte_or_word: AtomicUsize::new(0),
            }
        }
        fn dword_reads(&self) -> usize {
            self.next.load(Ordering::Relaxed)
        }
    }

    impl PortIo for Script {
        fn inb(&self, _port: u16) -> u8 {
            self.byte_or_word.fetch_add(1, Ordering::Relaxed);
            0xFF
        }
        fn outb(&self, _port: u16, _value: u8) {
            self.byte_or_word.fetch_add(1, Ordering::Relaxed);
        }
        fn inw(&self, _port: u16) -> u16 {
            self.byte_or_word.fetch_add(1, Ordering::Relaxed);
            0xFFFF
        }
        fn inl(&self, port: u16) -> u32 {
            if port != self.port {
                return u32::MAX;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            self.values[i.min(self.values.len() - 1)]
        }
    }

    #[test]
    fn figures_are_the_acpi_specs_and_linuxs() {
        let io = Script::new(0x608, &[0]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(cs.name(), "acpi_pm");
        assert_eq!(cs.frequency(), Hertz::new(3_579_545));
        assert_eq!(cs.mask(), Cycles::new((1 << 24) - 1));
        assert_eq!(cs.rating(), 200);
        assert_eq!(
            cs.flags(),
            ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
        );
        assert_eq!(cs.port(), 0x608);
    }

    #[test]
    fn a_read_is_one_dword_access_cut_to_24_bits() {
        // A 32-bit timer (TMR_VAL_EXT): E_TMR_VAL in bits 31:24 is dropped.
        let io = Script::new(0x608, &[0xAB12_3456]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(cs.read(), Cycles::new(0x12_3456));
        assert_eq!(io.dword_reads(), 1);
        assert_eq!(io.byte_or_word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn probe_succeeds_at_the_first_read_that_moves_forward() {
        let io = Script::new(0x608, &[0x100, 0x100, 0x100, 0x101]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(cs.probe(PROBE_READS), Ok(4));
        assert_eq!(io.dword_reads(), 4);
    }

    #[test]
    fn probe_accepts_a_move_across_the_24_bit_wrap() {
        // 0xFF_FFF0 then 0x00_0005: 21 ticks on, through the wrap. The
        // upper byte (a 32-bit timer's) does not matter.
        let io = Script::new(0x608, &[0x07FF_FFF0, 0x0800_0005]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(cs.probe(PROBE_READS), Ok(2));
    }

    #[test]
    fn probe_refuses_a_timer_that_goes_backwards() {
        let io = Script::new(0x608, &[0x50_0000, 0x40_0000]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(
            cs.probe(PROBE_READS),
            Err(AcpiPmError::WentBackwards {
                from: 0x50_0000,
                to: 0x40_0000
            })
        );
        // Exactly at the wrap window: 0xFFF is not below it.
        let io = Script::new(0x608, &[0x50_0000, 0xFFF]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert!(matches!(
            cs.probe(PROBE_READS),
            Err(AcpiPmError::WentBackwards { to: 0xFFF, .. })
        ));
    }

    #[test]
    fn probe_of_a_stopped_timer_ends_after_exactly_max_reads() {
        let io = Script::new(0x608, &[0x12_3456]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(
            cs.probe(1_000),
            Err(AcpiPmError::NotCounting {
                reads: 1_000,
                value: 0x12_3456
            })
        );
        assert_eq!(io.dword_reads(), 1_000);
        // At least two reads, whatever is asked.
        let io = Script::new(0x608, &[7]);
        let cs = AcpiPmClockSource::new(&io, 0x608);
        assert_eq!(
            cs.probe(0),
            Err(AcpiPmError::NotCounting { reads: 2, value: 7 })
        );
    }

    #[test]
    fn probe_at_a_port_nothing_answers_reports_the_floating_bus() {
        let io = Script::new(0x608, &[1, 2, 3]);
        let cs = AcpiPmClockSource::new(&io, 0xB008);
        assert_eq!(
            cs.probe(10),
            Err(AcpiPmError::NotCounting {
                reads: 10,
                value: 0xFF_FFFF
            })
        );
    }

    #[test]
    fn errors_say_what_was_seen() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            AcpiPmError::NotCounting {
                reads: 10,
                value: 0xFF_FFFF
            }
            .to_string(),
            "ACPI PM timer did not move in 10 reads (stuck at 0xffffff)"
        );
        assert_eq!(
            AcpiPmError::WentBackwards {
                from: 0x50_0000,
                to: 0x40_0000
            }
            .to_string(),
            "ACPI PM timer went backwards from 0x500000 to 0x400000"
        );
    }
}
