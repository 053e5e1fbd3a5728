//! The ACPI power-management timer as a clocksource, "acpi_pm" (Linux
//! drivers/clocksource/acpi_pm.c).
//!
//! A free-running up-counter at 3.579545 MHz (ACPI 6.5 §4.8.3.3, the NTSC
//! colour-burst crystal ÷ 4) in the chipset, read with one 32-bit `in` from
//! the port the FADT names (`PM_TMR_BLK`; QEMU: 0x608 on both machines). It
//! has no interrupt the guest uses, so it is a clocksource only.
//!
//! ```text
//!   in eax, PM_TMR_BLK ──► & 0xFF_FFFF ──► Cycles   (24 bits, wraps every 4.69 s)
//! ```
//!
//! It lives in the guest, not in a source crate: it is not one of the time
//! sources tickless mode is enabled for, but it is what every build can
//! count on (no Cargo feature turns it off), so a guest built with any
//! single source still has a clock and a reference to calibrate the LAPIC
//! timer and the TSC against.
//!
//! As Linux: rating 200, mask 24 bits even where the FADT says the counter
//! has 32 (`TMR_VAL_EXT`, not relied on), `CONTINUOUS` and valid for high
//! resolution. Linux reads three times on chipsets with a latch bug
//! (`acpi_pm_read_verified`); QEMU's PIIX4 and ICH9 have none, so one read.

use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz};
use x86_64::instructions::port::PortReadOnly;

/// The clocksource's name (`clocksource=acpi_pm`).
pub const NAME: &str = "acpi_pm";
/// The PM timer's rate (ACPI: 3.579545 MHz).
pub const FREQUENCY: Hertz = Hertz::new(3_579_545);
/// Linux's rating for acpi_pm.
pub const RATING: u16 = 200;
/// Linux's mask: 24 bits.
pub const MASK: Cycles = Cycles::new(0xFF_FFFF);
/// Reads the probe makes before declaring the timer stopped: a live timer
/// moves every 279 ns; one `in` is ≥ 0.5 µs on hardware, a VM exit in a VM.
pub const PROBE_READS: u32 = 10_000;

/// The PM timer behind its I/O port.
#[derive(Debug)]
pub struct AcpiPmTimer {
    port: u16,
}

impl AcpiPmTimer {
    /// The PM timer at `port`, if it counts within [`PROBE_READS`] reads.
    ///
    /// # Safety
    ///
    /// `port` must be the FADT's `PM_TMR_BLK` (reading it has no side
    /// effect), and the caller must run at CPL 0.
    pub unsafe fn probe(port: u16) -> Result<Self, u32> {
        let t = AcpiPmTimer { port };
        let first = t.read_raw();
        if (0..PROBE_READS).any(|_| t.read_raw() != first) {
            Ok(t)
        } else {
            Err(first)
        }
    }

    /// The I/O port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn read_raw(&self) -> u32 {
        let mut p = PortReadOnly::<u32>::new(self.port);
        // SAFETY: `probe`'s contract: the PM timer's port, side-effect free.
        unsafe { p.read() }
    }
}

impl ClockSource for AcpiPmTimer {
    fn name(&self) -> &'static str {
        NAME
    }
    fn read(&self) -> Cycles {
        Cycles::new(self.read_raw() as u64 & MASK.get())
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
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    }
}
