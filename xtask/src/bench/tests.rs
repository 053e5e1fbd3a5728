//! What the tests of `bench` (and of `stats`) share: a guest's and Linux's
//! output, boots and suites made from it.

use super::*;
use crate::qemu::{Accel, Machine, RunStatus};

pub(super) const GUEST_LAPIC_NOHZ: &str = "\
CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250 apic=xAPIC cpu_tsc_deadline=0
BENCH idle source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 nohz=1 seconds=10.002 interrupts=21 per_s=2.099 ticks=0 forced=0 timers=1 cap_ms=21474.836
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=resume advance=off periods=2000 min_us=35.3 p50_us=73.8 p99_us=304.2 max_us=4077.8 early=0 missed_periods=16
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=resume advance=auto periods=2000 min_us=1.0 p50_us=36.9 p99_us=200.0 max_us=4000.0 early=3 missed_periods=12
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=entry advance=auto periods=2000 min_us=-96.1 p50_us=-4.9 p99_us=141.1 max_us=4014.2 early=0 missed_periods=19 lead_ns=55487 spun_ns=16486041
BENCH program source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 calls=10000 median_ns=731 mean_ns=2002 min_ns=691 bare_median_ns=540 bare_mean_ns=1524 ratio=1.353 refused=0 overhead_ns=10
BENCH nohz_path source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 rounds=1000 tick_stopped=1000 enter_median_ns=1201 exit_median_ns=1231 total_median_ns=2432 enter_p99_ns=19520 exit_p99_ns=19399 overhead_ns=10
";

pub(super) const GUEST_READ_CAL: &str = "\
CONFIG accel=tcg clocksource=tsc tick=hpet mode=high-res+NO_HZ hz=250
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=hpet reads=1000000 median_ns=200 mean_ns=222 min_ns=190
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=tsc reads=1000000 median_ns=50 mean_ns=48 min_ns=40
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=acpi_pm reads=1000000 median_ns=0 mean_ns=94 min_ns=0 tsc_timed_median_ns=80
BENCH clock_read_ratio source=hpet cs=tsc mode=high-res+NO_HZ hz=250 tsc_median_ns=50 bare_median_ns=30 ratio=1.666
BENCH calibration source=hpet cs=tsc mode=high-res+NO_HZ hz=250 target=tsc reference=hpet truth_hz=2596123577 truth_from=hpet-1s took_us=10262.9 found_hz=2596151580 off_ppm=10 bound_ppm=39 window_us=10012.4 truth_bound_ppm=4
";

pub(super) const LINUX_DEFAULT: &str = "\
BENCH system cmdline=\"console=ttyS0 quiet panic=-1\"
BENCH idle seconds=10.001 loc=94 irq0=0 timer_irqs=94 per_s=9.4 all_irqs=94 all_per_s=9.4
BENCH lateness slack=1ns slack_ns=1 periods=2000 period_us=1000 min_us=66.8 p50_us=184.4 p99_us=441.1 max_us=4032.8 early=0 missed_periods=9
BENCH lateness slack=default slack_ns=50000 periods=2000 period_us=1000 min_us=66.4 p50_us=212.5 p99_us=558.9 max_us=4333.6 early=0 missed_periods=13
BENCH clock_read source=tsc calls=1000000 median_ns=120 mean_ns=121.6 min_ns=70
BENCH clock_read source=hpet calls=1000000 median_ns=1450 mean_ns=1600.0 min_ns=1100
BENCH clock_read source=acpi_pm calls=1000000 median_ns=1117 mean_ns=1120.8 min_ns=558
BENCH done uptime_s=19.16
";

/// A boot of `device` in `config` with the default CPU model.
pub(crate) fn boot(device: Device, config: Config) -> Boot {
    Boot {
        device,
        config,
        cpu: None,
    }
}

/// What a boot of `device` in `config` that passed with `serial` gives.
pub(crate) fn booted(device: Device, config: Config, serial: &str) -> BootResult {
    BootResult::new(boot(device, config), Accel::Tcg, RunStatus::Pass, serial)
}

/// A TCG suite of the LAPIC timer with `boots`.
pub(crate) fn suite(boots: Vec<BootResult>) -> Suite {
    Suite {
        accel: Accel::Tcg,
        machine: Machine::Pc,
        qemu_line: "qemu".into(),
        devices: vec![Device::Lapic],
        boots,
        notes: Vec::new(),
        smp: 1,
    }
}

pub(super) fn lapic_suite() -> Suite {
    suite(vec![
        BootResult::new(
            boot(Device::Lapic, Config::NoHz),
            Accel::Tcg,
            RunStatus::Pass,
            GUEST_LAPIC_NOHZ,
        ),
        BootResult::new(
            boot(Device::Hpet, Config::ReadCal),
            Accel::Tcg,
            RunStatus::Pass,
            GUEST_READ_CAL,
        ),
    ])
}
