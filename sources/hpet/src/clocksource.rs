//! The main counter as a clock source (Linux `clocksource_hpet`).
//!
//! Rating 250 (below the TSC's 300, above ACPI PM's 200), `CONTINUOUS` and
//! `VALID_FOR_HRES`: the HPET keeps counting in every C-state the tick layer
//! knows. The mask follows `COUNT_SIZE_CAP`: a 64-bit counter is read in one
//! 64-bit access, a 32-bit one in one 32-bit access.
//!
//! A 32-bit counter at 14.318 MHz wraps every 2^32 × 69.84 ns ≈ 299.97 s;
//! the core's max deferment for it is 133.48 s (half the wrap, less the
//! 11 % slew margin, Linux `clocks_calc_max_nsecs`), so the timekeeper is
//! updated at least twice per wrap even with every CPU tickless
//! (`clocksource::ClockParams::max_idle`).

use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz};
use hw::Mmio;

use crate::probe::HpetInfo;
use crate::regs::MAIN_CNT;

/// The clock source's name (`clocksource=hpet`).
pub const NAME: &str = "hpet";
/// The clock source's rating (Linux: HPET 250).
pub const RATING: u16 = 250;

/// The HPET main counter as a [`ClockSource`].
///
/// Built from a probed device ([`crate::probe()`]), whose main counter runs.
pub struct HpetClockSource<'a, M: Mmio + ?Sized> {
    mmio: &'a M,
    wide: bool,
    frequency: Hertz,
}

impl<'a, M: Mmio + ?Sized> HpetClockSource<'a, M> {
    /// The clock source of the HPET at `mmio`, described by `info`.
    pub fn new(mmio: &'a M, info: &HpetInfo) -> Self {
        HpetClockSource {
            mmio,
            wide: info.counter_64bit,
            frequency: info.frequency,
        }
    }
}

impl<M: Mmio + ?Sized> ClockSource for HpetClockSource<'_, M> {
    fn name(&self) -> &'static str {
        NAME
    }
    fn read(&self) -> Cycles {
        if self.wide {
            // One 64-bit access: no torn read of the two halves (hw::Mmio
            // on x86_64 and the model both do it in one access).
            Cycles::new(self.mmio.read64(MAIN_CNT))
        } else {
            Cycles::new(self.mmio.read32(MAIN_CNT) as u64)
        }
    }
    fn mask(&self) -> Cycles {
        Cycles::mask_of_width(if self.wide { 64 } else { 32 })
    }
    fn frequency(&self) -> Hertz {
        self.frequency
    }
    fn rating(&self) -> u16 {
        RATING
    }
    fn flags(&self) -> ClockSourceFlags {
        ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
    }
}
