//! The figures the `nohz` test expects, from datasheets, specifications and
//! Linux — never from the constants of the code under test.
//!
//! The test reads what the drivers and the tick layer report (a device's
//! max delta, the clocksource's max deferment, the watchdog's interval and
//! deferral), compares each with the figure derived here, and then builds
//! its expectation on the figure, not on the report: a wrong constant in a
//! driver fails the comparison instead of moving the expectation with it.
//!
//! | figure | derivation |
//! |---|---|
//! | PIT max delta | 0x7FFF counts (Linux drivers/clocksource/i8253.c registers the one-shot PIT with max delta 0x7FFF) at 1.193182 MHz (Intel 8254 datasheet: the PC feeds CLK 14.31818 MHz / 12) = 27.4618 ms |
//! | HPET max delta | 0x7FFF_FFFF cycles (Linux arch/x86/kernel/hpet.c: the positive half of a 32-bit comparator) × QEMU's period, 10 ns (hw/timer/hpet.c `HPET_CLK_PERIOD`, reported in GCAP_ID's COUNTER_CLK_PERIOD, IA-PC HPET 1.0a §2.3.4) = 21.4748 s |
//! | LAPIC max delta | 0x7FFF_FFFF ticks (Linux arch/x86/kernel/apic/apic.c) at the APIC bus ÷ 16 (Linux's `APIC_DIVISOR`); QEMU's APIC timer counts nanoseconds (hw/intc/apic.c), KVM's in-kernel one too (arch/x86/kvm/lapic.c `APIC_BUS_CYCLE_NS` = 1): 1 GHz ÷ 16 = 62.5 MHz → 34.3597 s |
//! | TSC-deadline | no max delta: a 64-bit absolute deadline (Intel SDM vol. 3A §11.5.4.1) |
//! | max deferment | half of the counter's wrap, less Linux's 11 % slew margin (kernel/time/clocksource.c `clocks_calc_max_nsecs`, `clocksource_max_adjustment`): pit-ch2 16 bits at 1.193182 MHz → 24.44 ms; ACPI PM timer 24 bits at 3.579545 MHz (ACPI 6.5 §4.8.3.3) → 2.0857 s; a 64-bit counter (TSC, HPET main counter) wraps in centuries: none within a test window |
//! | watchdog interval | 0.5 s (Linux kernel/time/clocksource.c `WATCHDOG_INTERVAL` = HZ/2) |
//! | watchdog deferral, at most | 7/8 of the smaller max deferment of the watched clock and its reference, at most 1 s — the longest interval Linux's watchdog judges (kernel/time/clocksource.c `WATCHDOG_INTERVAL_MAX_NS` = 2 × `WATCHDOG_INTERVAL`) — at least the interval (README, "Behaviour worth knowing") |
//!
//! A calibrated rate (the LAPIC timer's) is known within its calibration
//! bound, and the driver raises it by that bound so that it never fires
//! early: its max delta is then within twice that bound of the figure.
//! A max deferment is computed by the core with its mult/shift, whose
//! rounding is a few ppm: [`DEFERMENT_TOLERANCE_PPM`].

use clocksource::Nanos;

/// The PIT's input clock, Hz (Intel 8254 datasheet; the PC's 14.31818 MHz
/// crystal ÷ 12).
pub const PIT_HZ: u64 = 1_193_182;
/// The one-shot PIT's max delta in counts (Linux drivers/clocksource/i8253.c).
pub const PIT_MAX_DELTA_COUNTS: u64 = 0x7FFF;
/// The HPET's max delta in cycles (Linux arch/x86/kernel/hpet.c).
pub const HPET_MAX_DELTA_CYCLES: u64 = 0x7FFF_FFFF;
/// QEMU's HPET period, fs (hw/timer/hpet.c: 10 ns).
pub const QEMU_HPET_PERIOD_FS: u64 = 10_000_000;
/// The LAPIC timer's max delta in ticks (Linux arch/x86/kernel/apic/apic.c).
pub const LAPIC_MAX_DELTA_TICKS: u64 = 0x7FFF_FFFF;
/// Linux's LAPIC timer divisor (`APIC_DIVISOR`).
pub const LAPIC_DIVISOR: u64 = 16;
/// The APIC bus QEMU and KVM emulate, Hz (1 ns a tick).
pub const VIRTUAL_APIC_BUS_HZ: u64 = 1_000_000_000;
/// The ACPI PM timer's rate, Hz (ACPI 6.5 §4.8.3.3).
pub const ACPI_PM_HZ: u64 = 3_579_545;
/// The ACPI PM timer's width as read: 24 bits (ACPI 6.5 §4.8.3.3; 32 with
/// `TMR_VAL_EXT`, but Linux's drivers/clocksource/acpi_pm.c uses a 24-bit
/// mask either way, and so does this guest).
pub const ACPI_PM_BITS: u32 = 24;
/// PIT counter 2's width.
pub const PIT_CH2_BITS: u32 = 16;
/// Linux's `mult` slew margin, percent (`clocksource_max_adjustment`).
pub const SLEW_MARGIN_PERCENT: u64 = 11;
/// The clocksource watchdog's interval (Linux `WATCHDOG_INTERVAL`).
pub const WATCHDOG_INTERVAL: Nanos = Nanos::from_millis(500);
/// The longest an idle CPU defers a watchdog check: the longest interval
/// Linux's watchdog judges (kernel/time/clocksource.c
/// `WATCHDOG_INTERVAL_MAX_NS`, twice `WATCHDOG_INTERVAL`; README,
/// "Behaviour worth knowing").
pub const WATCHDOG_DEFERRAL_MAX: Nanos = Nanos::from_secs(1);
/// How far a max deferment the core computed may be from the figure here:
/// its mult/shift rounding (a few ppm), with room.
pub const DEFERMENT_TOLERANCE_PPM: u32 = 100;

/// How a report must agree with its documented figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Within this many ppm of it.
    Within(u32),
    /// At most it (the figure is a bound, not a value).
    AtMost,
}

/// A documented figure beside what the code reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    /// What it is ("pit-max-delta", ...: one word, for a result line).
    pub what: &'static str,
    /// The documented value (`Nanos::MAX`: none within any test window).
    pub documented: Nanos,
    /// What the driver or the tick layer reports.
    pub reported: Nanos,
    /// How they must agree.
    pub check: Check,
}

impl Figure {
    /// Whether the report agrees with the figure; a figure of "none"
    /// ([`Nanos::MAX`]) asks for a report at least `window` long.
    pub fn holds(&self, window: Nanos) -> bool {
        match self.check {
            Check::AtMost => self.reported <= self.documented,
            Check::Within(_) if self.documented == Nanos::MAX => self.reported >= window,
            Check::Within(ppm) => {
                let d = self.documented.as_nanos() as u128;
                let allowed = d * ppm as u128 / 1_000_000;
                (self.reported.as_nanos() as u128).abs_diff(d) <= allowed
            }
        }
    }

    /// The value a test builds on: the documented one, or the report where
    /// the figure is only a bound.
    pub fn value(&self) -> Nanos {
        match self.check {
            Check::Within(_) => self.documented,
            Check::AtMost => self.reported,
        }
    }
}

/// The watchdog's interval beside the `reported` one.
pub fn watchdog_interval(reported: Nanos) -> Figure {
    Figure {
        what: "watchdog-interval",
        documented: WATCHDOG_INTERVAL,
        reported,
        check: Check::Within(0),
    }
}

/// The watchdog's deferral bound ([`watchdog_deferral_bound`]) beside the
/// `reported` deferral.
pub fn watchdog_deferral(watched: Nanos, reference: Nanos, reported: Nanos) -> Figure {
    Figure {
        what: "watchdog-deferral",
        documented: watchdog_deferral_bound(watched, reference),
        reported,
        check: Check::AtMost,
    }
}

/// `cycles` at `hz`, in ns, rounded down.
fn cycles_ns(cycles: u64, hz: u64) -> Nanos {
    Nanos::from_nanos((cycles as u128 * 1_000_000_000 / hz as u128) as u64)
}

/// The documented max delta of the tick device `device` (its registered
/// name), beside the `reported` one; `rate_error_ppm` is the bound of its
/// rate when calibrated (0 when stated). The HPET and LAPIC figures are
/// QEMU's and KVM's rates: given only under `emulated` (QEMU TCG or KVM).
/// `None` for a device with no figure here.
pub fn device_max_delta(
    device: &str,
    reported: Nanos,
    rate_error_ppm: u32,
    emulated: bool,
) -> Option<Figure> {
    let (what, documented, tolerance_ppm) = match device {
        "pit" => ("pit-max-delta", cycles_ns(PIT_MAX_DELTA_COUNTS, PIT_HZ), 0),
        "hpet" if emulated => (
            "hpet-max-delta",
            Nanos::from_nanos(HPET_MAX_DELTA_CYCLES * QEMU_HPET_PERIOD_FS / 1_000_000),
            0,
        ),
        d if d.starts_with("lapic-deadline") => ("tsc-deadline-max-delta", Nanos::MAX, 0),
        d if d.starts_with("lapic") && emulated => (
            "lapic-max-delta",
            cycles_ns(LAPIC_MAX_DELTA_TICKS, VIRTUAL_APIC_BUS_HZ / LAPIC_DIVISOR),
            // Calibrated within ±e and raised by e: within 2e, and 1 ppm
            // for the rounding of the rate.
            rate_error_ppm.saturating_mul(2).saturating_add(1),
        ),
        _ => return None,
    };
    Some(Figure {
        what,
        documented,
        reported,
        check: Check::Within(tolerance_ppm),
    })
}

/// Half of a `bits`-wide counter's wrap at `hz`, less the slew margin.
fn half_wrap_less_margin(bits: u32, hz: u64) -> Nanos {
    let mask = (1u128 << bits) - 1;
    let ns = mask * 1_000_000_000 * (100 - SLEW_MARGIN_PERCENT) as u128 / 100 / hz as u128 / 2;
    Nanos::from_nanos(ns as u64)
}

/// The documented max deferment of the clocksource `name`. `None` for a
/// clock with no figure here.
pub fn clock_max_deferment(name: &str, reported: Nanos) -> Option<Figure> {
    let (what, documented) = match name {
        "pit-ch2" => (
            "pit-ch2-max-deferment",
            half_wrap_less_margin(PIT_CH2_BITS, PIT_HZ),
        ),
        "acpi_pm" => (
            "acpi_pm-max-deferment",
            half_wrap_less_margin(ACPI_PM_BITS, ACPI_PM_HZ),
        ),
        "tsc" | "hpet" => ("64-bit-max-deferment", Nanos::MAX),
        _ => return None,
    };
    Some(Figure {
        what,
        documented,
        reported,
        check: Check::Within(DEFERMENT_TOLERANCE_PPM),
    })
}

/// The most the watchdog may defer a check while CPU 0 idles tickless,
/// for a watched clock and a reference with these documented max
/// deferments.
pub fn watchdog_deferral_bound(watched: Nanos, reference: Nanos) -> Nanos {
    let judgeable = watched.min(reference);
    Nanos::from_nanos(judgeable.as_nanos() / 8 * 7)
        .min(WATCHDOG_DEFERRAL_MAX)
        .max(WATCHDOG_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_are_the_documented_ones() {
        let ns = |f: Option<Figure>| f.unwrap().documented.as_nanos();
        // 0x7FFF / 1.193182 MHz = 27.4618 ms.
        assert_eq!(
            ns(device_max_delta("pit", Nanos::ZERO, 0, true)),
            27_461_862
        );
        // 0x7FFF_FFFF × 10 ns = 21.474836470 s.
        assert_eq!(
            ns(device_max_delta("hpet", Nanos::ZERO, 0, true)),
            21_474_836_470
        );
        // 0x7FFF_FFFF × 16 ns = 34.359738352 s.
        assert_eq!(
            ns(device_max_delta("lapic0", Nanos::ZERO, 0, true)),
            34_359_738_352
        );
        assert_eq!(
            device_max_delta("lapic-deadline0", Nanos::ZERO, 0, false)
                .unwrap()
                .documented,
            Nanos::MAX
        );
        assert_eq!(device_max_delta("rtc", Nanos::ZERO, 0, true), None);
        // Off QEMU and KVM the HPET's period and the APIC bus are the
        // hardware's: no figure; the PIT's clock is the same everywhere.
        assert_eq!(device_max_delta("hpet", Nanos::ZERO, 0, false), None);
        assert_eq!(device_max_delta("lapic0", Nanos::ZERO, 0, false), None);
        assert!(device_max_delta("pit", Nanos::ZERO, 0, false).is_some());
        // 0xFFFF / 1193182 × 0.89 / 2 = 24.4411 ms; 0xFF_FFFF / 3579545 ×
        // 0.89 / 2 = 2.0857 s.
        let pit = ns(clock_max_deferment("pit-ch2", Nanos::ZERO));
        assert_eq!(pit / 10_000, 2_444, "{pit}");
        let pm = ns(clock_max_deferment("acpi_pm", Nanos::ZERO));
        assert_eq!(pm / 100_000, 20_857, "{pm}");
        assert_eq!(
            clock_max_deferment("tsc", Nanos::ZERO).unwrap().documented,
            Nanos::MAX
        );
    }

    /// What the core and the drivers compute today, as the boot logs of
    /// QEMU show them, agrees with the figures; a constant off by one bit
    /// does not.
    #[test]
    fn reports_agree_within_the_tolerance_and_a_wrong_constant_does_not() {
        let w = Nanos::from_secs(2);
        let pm = clock_max_deferment("acpi_pm", Nanos::from_nanos(2_085_701_024)).unwrap();
        assert!(pm.holds(w), "{pm:?}");
        let pit = clock_max_deferment("pit-ch2", Nanos::from_nanos(24_441_430)).unwrap();
        assert!(pit.holds(w), "{pit:?}");
        // The boot table's "34.358 s" for a LAPIC timer calibrated to
        // ±32 ppm and raised by it.
        let lapic =
            device_max_delta("lapic0", Nanos::from_nanos(34_358_638_000), 32, true).unwrap();
        assert!(lapic.holds(w), "{lapic:?}");
        // A PIT max delta of 0x3FFF, an ACPI PM timer taken as 23 bits, a
        // 64-bit clock deferring less than the window.
        assert!(
            !device_max_delta("pit", Nanos::from_nanos(13_730_093), 0, true)
                .unwrap()
                .holds(w)
        );
        assert!(
            !clock_max_deferment("acpi_pm", Nanos::from_nanos(1_042_850_512))
                .unwrap()
                .holds(w)
        );
        assert!(!clock_max_deferment("tsc", Nanos::from_millis(1_999))
            .unwrap()
            .holds(w));
        // The interval is exact; the deferral a bound.
        assert!(watchdog_interval(Nanos::from_millis(500)).holds(w));
        assert!(!watchdog_interval(Nanos::from_millis(250)).holds(w));
        let d = watchdog_deferral(Nanos::MAX, Nanos::MAX, Nanos::from_secs(1));
        assert!(d.holds(w));
        assert_eq!(d.value(), Nanos::from_secs(1));
        // The 30 s the deferral was before it was bounded fails.
        assert!(!watchdog_deferral(Nanos::MAX, Nanos::MAX, Nanos::from_secs(30)).holds(w));
    }

    #[test]
    fn the_deferral_bound_follows_the_smaller_clock() {
        let pm = clock_max_deferment("acpi_pm", Nanos::ZERO)
            .unwrap()
            .documented;
        // TSC against the ACPI PM timer: 7/8 of 2.0857 s = 1.8250 s, past
        // the 1 s cap; against a counter that wraps in 1 s, 7/8 of it.
        assert_eq!(watchdog_deferral_bound(Nanos::MAX, pm), Nanos::from_secs(1));
        assert_eq!(
            watchdog_deferral_bound(Nanos::MAX, Nanos::from_secs(1)),
            Nanos::from_millis(875)
        );
        // Two 64-bit counters: the 1 s cap.
        assert_eq!(
            watchdog_deferral_bound(Nanos::MAX, Nanos::MAX),
            Nanos::from_secs(1)
        );
        // Against pit-ch2 (7/8 of 24.4 ms): never below the interval.
        assert_eq!(
            watchdog_deferral_bound(Nanos::MAX, Nanos::from_millis(24)),
            WATCHDOG_INTERVAL
        );
    }
}
