//! What is booted: the tick devices ([`Device`]) and their configurations
//! ([`Config`]), the boots to make ([`plan`]), and what one boot and a whole
//! suite produced ([`BootResult`], [`Suite`]).

use std::collections::BTreeMap;

use super::lines::{bench_lines, find, BenchLine, Found};
use crate::matrix::{Source, Transcript};
use crate::qemu::{Accel, Machine, RunStatus};

/// The `-icount shift=` values of the slow-vCPU boots (TCG, `sleep=off`:
/// guest time is the instruction count, so a run is deterministic and
/// `advance=off` and `auto`, run one after the other, see the same vCPU —
/// under `shift=auto` QEMU slows the vCPU down as a run goes on, which
/// makes whichever runs second look worse). At `shift=9` (~0.5 µs a guest
/// instruction) the LAPIC timer's delivery delay is ~300 µs and a lead
/// helps; at `shift=10` (~1 µs) the CPU cannot keep a 1 ms period and
/// `auto` must back off (`tick::advance`).
pub const SLOW_VCPU_SHIFTS: [u8; 2] = [9, 10];

/// The KVM CPU model without TSC-deadline, so that `clockevent=lapic` gets
/// the one-shot LAPIC timer (as `cargo xtask test`'s x2APIC row does).
const KVM_NO_DEADLINE: &str = "host,-arch-capabilities,-tsc-deadline";

/// A tick device the benchmarks run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Device {
    /// The HPET's comparator 0.
    Hpet,
    /// The LAPIC timer in one-shot mode.
    Lapic,
    /// The LAPIC timer in TSC-deadline mode.
    LapicDeadline,
    /// The PIT's counter 0.
    Pit,
}

impl Device {
    /// Every device, in table order.
    pub const ALL: [Device; 4] = [
        Device::Hpet,
        Device::Lapic,
        Device::LapicDeadline,
        Device::Pit,
    ];

    /// The `clockevent=` value, also the row's name.
    pub fn name(self) -> &'static str {
        match self {
            Device::Hpet => "hpet",
            Device::Lapic => "lapic",
            Device::LapicDeadline => "lapic-deadline",
            Device::Pit => "pit",
        }
    }

    /// The tick device the `CONFIG` line must show.
    pub fn expect_tick(self) -> &'static str {
        match self {
            Device::Hpet => "hpet",
            Device::Lapic => "lapic0",
            Device::LapicDeadline => "lapic-deadline0",
            Device::Pit => "pit",
        }
    }

    /// The `--source` it belongs to.
    pub fn source(self) -> Source {
        match self {
            Device::Hpet => Source::Hpet,
            Device::Lapic | Device::LapicDeadline => Source::Lapic,
            Device::Pit => Source::Pit,
        }
    }
}

/// One guest configuration of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    /// NO_HZ (the default): idle, lateness, program, NO_HZ path.
    NoHz,
    /// `nohz=off`: idle with the tick kept.
    Periodic,
    /// `tsc=reliable`: NO_HZ idle without the clocksource watchdog.
    Reliable,
    /// Clock reads and calibrations (on the HPET, the LAPIC timer free).
    ReadCal,
    /// Lateness on a slow vCPU: TCG with `-icount shift=N,sleep=off`.
    SlowVcpu(u8),
}

impl Config {
    /// The name in log file names and notes.
    pub fn tag(self) -> String {
        match self {
            Config::NoHz => "nohz".into(),
            Config::Periodic => "periodic".into(),
            Config::Reliable => "reliable".into(),
            Config::ReadCal => "read-cal".into(),
            Config::SlowVcpu(shift) => format!("icount{shift}"),
        }
    }

    /// The `-icount` value the boot needs, if any.
    pub fn icount(self) -> Option<String> {
        match self {
            Config::SlowVcpu(shift) => Some(format!("shift={shift},sleep=off")),
            _ => None,
        }
    }

    /// The guest command line for `device`.
    pub fn cmdline(self, device: Device) -> String {
        let dev = device.name();
        match self {
            Config::NoHz => {
                format!(
                    "clockevent={dev} test=bench-idle,bench-lateness,bench-program,bench-nohz,bench-cross"
                )
            }
            Config::Periodic => format!("clockevent={dev} nohz=off test=bench-idle"),
            Config::Reliable => format!("clockevent={dev} tsc=reliable test=bench-idle"),
            Config::ReadCal => format!("clockevent={dev} test=bench-read,bench-cal"),
            Config::SlowVcpu(_) => format!("clockevent={dev} test=bench-lateness"),
        }
    }
}

/// One boot to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The tick device asked for.
    pub device: Device,
    /// The configuration.
    pub config: Config,
    /// `-cpu`, if not the accelerator's default.
    pub cpu: Option<String>,
}

impl Boot {
    /// `<device>-<config>`, for file names and progress lines.
    pub fn name(&self) -> String {
        format!("{}-{}", self.device.name(), self.config.tag())
    }
}

/// The boots for `devices` under `accel` (whose default CPU model offers
/// TSC-deadline if `deadline`): three per device, then the read/calibration
/// boot, then under TCG with the LAPIC timer among `devices` the
/// slow-vCPU boots. The LAPIC one-shot rows under KVM drop TSC-deadline
/// from the CPU model, or the guest would pick the deadline mode.
pub fn plan(devices: &[Device], accel: Accel, deadline: bool) -> Vec<Boot> {
    let mut boots = Vec::new();
    for &device in devices {
        let cpu = (device == Device::Lapic && accel == Accel::Kvm && deadline)
            .then(|| KVM_NO_DEADLINE.to_string());
        for config in [Config::NoHz, Config::Periodic, Config::Reliable] {
            boots.push(Boot {
                device,
                config,
                cpu: cpu.clone(),
            });
        }
    }
    boots.push(Boot {
        device: Device::Hpet,
        config: Config::ReadCal,
        cpu: None,
    });
    if accel == Accel::Tcg && devices.contains(&Device::Lapic) {
        for shift in SLOW_VCPU_SHIFTS {
            boots.push(Boot {
                device: Device::Lapic,
                config: Config::SlowVcpu(shift),
                cpu: None,
            });
        }
    }
    boots
}

/// The devices `--source` selects; TSC-deadline only if the CPU offers it.
pub fn devices(source: Option<Source>, deadline: bool) -> Vec<Device> {
    Device::ALL
        .into_iter()
        .filter(|d| *d != Device::LapicDeadline || deadline)
        .filter(|d| source.is_none_or(|s| s == d.source()))
        .collect()
}

/// What one boot produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootResult {
    /// The boot.
    pub boot: Boot,
    /// The `CONFIG` fields.
    pub config: BTreeMap<String, String>,
    /// Its `BENCH` lines.
    pub lines: Vec<BenchLine>,
    /// Why its figures are not used (a failed boot, another tick device).
    pub problem: Option<String>,
}

impl BootResult {
    /// Judges a boot from its serial output and how QEMU ended.
    pub fn new(boot: Boot, accel: Accel, status: RunStatus, serial: &str) -> Self {
        let config = Transcript::parse(serial).config;
        let lines = bench_lines(serial);
        let tick = config.get("tick").map(String::as_str);
        let problem = if config.is_empty() {
            Some(format!("no CONFIG line ({status})"))
        } else if tick != Some(boot.device.expect_tick()) {
            let got = format!(
                "asked for {}, the tick device is {}",
                boot.device.expect_tick(),
                tick.unwrap_or("?")
            );
            Some(match accel {
                Accel::Kvm => format!("skip: not offered under KVM here ({got})"),
                Accel::Tcg => got,
            })
        } else if !status.is_pass() {
            Some(status.to_string())
        } else {
            None
        };
        BootResult {
            boot,
            config,
            lines,
            problem,
        }
    }

    /// Whether this counts as a failure (a KVM skip does not).
    pub fn failed(&self) -> bool {
        self.problem
            .as_ref()
            .is_some_and(|p| !p.starts_with("skip"))
    }
}

/// Every boot of one accelerator and machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// Accelerator.
    pub accel: Accel,
    /// Machine type.
    pub machine: Machine,
    /// The QEMU command line (its `-append` varies per boot).
    pub qemu_line: String,
    /// The table rows.
    pub devices: Vec<Device>,
    /// The boots, in the order made.
    pub boots: Vec<BootResult>,
    /// Notes about the whole run (a device not offered, …).
    pub notes: Vec<String>,
    /// CPUs of every boot (`-smp`).
    pub smp: u32,
}

impl Suite {
    /// The line of `group` matching `filter` from the boot of `device` in
    /// `config`, or why there is none.
    pub fn find(
        &self,
        device: Device,
        config: Config,
        group: &str,
        filter: &[(&str, &str)],
    ) -> Found<'_> {
        let where_ = format!("{} {}", device.name(), config.tag());
        let Some(b) = self
            .boots
            .iter()
            .find(|b| b.boot.device == device && b.boot.config == config)
        else {
            return Err(format!("{where_}: not booted"));
        };
        if let Some(p) = &b.problem {
            return Err(format!("{where_}: {p}"));
        }
        find(&b.lines, group, filter).map_err(|e| format!("{where_}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::{boot, GUEST_LAPIC_NOHZ};

    #[test]
    fn the_plan_has_three_boots_per_device_and_one_read_cal() {
        let tcg = devices(None, false);
        assert_eq!(tcg, [Device::Hpet, Device::Lapic, Device::Pit]);
        let boots = plan(&tcg, Accel::Tcg, false);
        assert_eq!(boots.len(), 12);
        assert!(boots.iter().all(|b| b.cpu.is_none()));
        let slow: Vec<_> = boots[10..].iter().map(|b| (b.device, b.config)).collect();
        assert_eq!(
            slow,
            [
                (Device::Lapic, Config::SlowVcpu(9)),
                (Device::Lapic, Config::SlowVcpu(10))
            ]
        );
        assert_eq!(
            boots[11].config.icount().as_deref(),
            Some("shift=10,sleep=off")
        );
        assert_eq!(
            boots[11].config.cmdline(Device::Lapic),
            "clockevent=lapic test=bench-lateness"
        );
        assert_eq!(boots[11].name(), "lapic-icount10");
        let no_lapic = plan(&devices(Some(Source::Hpet), false), Accel::Tcg, false);
        assert!(no_lapic.iter().all(|b| b.config.icount().is_none()));
        assert_eq!(
            boots[4].config.cmdline(boots[4].device),
            "clockevent=lapic nohz=off test=bench-idle"
        );
        assert_eq!(
            boots[9].config.cmdline(boots[9].device),
            "clockevent=hpet test=bench-read,bench-cal"
        );
        let kvm = plan(&devices(Some(Source::Lapic), true), Accel::Kvm, true);
        assert_eq!(kvm.len(), 7);
        assert_eq!(kvm[0].cpu.as_deref(), Some(KVM_NO_DEADLINE));
        assert_eq!(kvm[3].device, Device::LapicDeadline);
        assert_eq!(kvm[3].cpu, None);
    }

    #[test]
    fn another_tick_device_fails_under_tcg_and_skips_under_kvm() {
        let serial = GUEST_LAPIC_NOHZ.replace("tick=lapic0", "tick=hpet");
        let b = boot(Device::Lapic, Config::NoHz);
        let tcg = BootResult::new(b.clone(), Accel::Tcg, RunStatus::Pass, &serial);
        assert!(tcg.failed());
        let kvm = BootResult::new(b.clone(), Accel::Kvm, RunStatus::Pass, &serial);
        assert!(!kvm.failed() && kvm.problem.is_some());
        let hung = BootResult::new(b, Accel::Tcg, RunStatus::TimedOut, "");
        assert!(hung.failed());
    }
}
