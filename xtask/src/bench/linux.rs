//! The comparison with Linux: `bench/linux/run`'s variants ([`LinuxVariant`])
//! and what a run of one produced ([`LinuxRun`]), and the rows that set its
//! figures beside ours ([`comparisons`]).

use super::lines::{find, BenchLine, Found};
use super::plan::{Config, Device, Suite};
use super::report::read_cal_lines;
use crate::qemu::Accel;

/// One `bench/linux/run` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxVariant {
    /// NO_HZ, the default.
    Default,
    /// `nohz=off`.
    NoHzOff,
    /// `tsc=reliable`.
    TscReliable,
}

impl LinuxVariant {
    /// Every variant, in run order.
    pub const ALL: [LinuxVariant; 3] = [
        LinuxVariant::Default,
        LinuxVariant::NoHzOff,
        LinuxVariant::TscReliable,
    ];

    /// The `--append` value, if any.
    pub fn append(self) -> Option<&'static str> {
        match self {
            LinuxVariant::Default => None,
            LinuxVariant::NoHzOff => Some("nohz=off"),
            LinuxVariant::TscReliable => Some("tsc=reliable"),
        }
    }

    /// The name in file names and notes.
    pub fn tag(self) -> &'static str {
        self.append().unwrap_or("default")
    }
}

/// What one Linux run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxRun {
    /// The variant.
    pub variant: LinuxVariant,
    /// Its `BENCH` lines.
    pub lines: Vec<BenchLine>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl LinuxRun {
    /// The line of `group` matching `filter`, or why there is none.
    fn find(&self, group: &str, filter: &[(&str, &str)]) -> Found<'_> {
        let where_ = format!("Linux {}", self.variant.tag());
        if let Some(e) = &self.error {
            return Err(format!("{where_}: {e}"));
        }
        find(&self.lines, group, filter).map_err(|e| format!("{where_}: {e}"))
    }
}

/// What the comparison says when KVM was asked for: Linux does not boot
/// under this machine's KVM, so both guests are compared under TCG.
pub fn kvm_note(accel: Accel) -> Option<&'static str> {
    (accel == Accel::Kvm).then_some(
        "note: Linux does not boot under this machine's KVM (a software KVM: it stops \
         with an emulation failure on xrstor), so the comparison runs both guests under \
         TCG, with identical QEMU options; the dynticks tables under KVM are above.",
    )
}

/// `ours / linux`, or `None` when either is not a finite number or Linux's
/// is not positive.
pub fn ratio_of(ours: &str, linux: &str) -> Option<f64> {
    match (ours.parse::<f64>(), linux.parse::<f64>()) {
        (Ok(o), Ok(l)) if l > 0.0 && o.is_finite() && l.is_finite() => Some(o / l),
        _ => None,
    }
}

/// HZ of both kernels: the guest's default `hz=250`, Debian's
/// `CONFIG_HZ_250`.
pub const HZ: u32 = 250;

/// What "better" means in a row of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// The lower figure.
    Lower,
    /// A tick rate of [`HZ`] per second on each of this many CPUs (the
    /// `nohz=off` idle row: every CPU ticks).
    AtHz(u32),
}

impl Better {
    /// The text of the table's `better` column.
    pub fn label(self) -> String {
        match self {
            Better::Lower => "lower".into(),
            Better::AtHz(1) => format!("= HZ ({HZ})"),
            Better::AtHz(n) => format!("= {n}·HZ ({})", n * HZ),
        }
    }
}

/// A figure as printed, or why it is missing.
pub type Figure = std::result::Result<String, String>;

/// The first of `keys` on the line `found`, or why there is none.
fn figure(found: Found<'_>, keys: &[&str]) -> Figure {
    let l = found?;
    keys.iter()
        .find_map(|k| l.get(k))
        .map(str::to_string)
        .ok_or_else(|| format!("the `{}` line has no `{}`", l.group, keys.join("` or `")))
}

/// One row of the comparison from one run of each kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What is measured.
    pub metric: String,
    /// Which figure is the better one.
    pub better: Better,
    /// Linux's figure.
    pub linux: Figure,
    /// Ours.
    pub ours: Figure,
    /// Ours is the guest's rdtsc-timed median, not the clock's own (see
    /// [`Comparison::note`]).
    pub rdtsc_timed: bool,
    /// Whether the figures are not to be divided (ours is a median of 0:
    /// no cost, see the note).
    pub no_ratio: bool,
    /// Why ours is what it is, if the row needs saying so.
    pub note: Option<String>,
}

impl Comparison {
    /// `ours / linux`, if both are there and it means something.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.ours, &self.linux) {
            (Ok(o), Ok(l)) if !self.no_ratio => ratio_of(o, l),
            _ => None,
        }
    }
}

/// Linux against dynticks, one row per metric, from one run of each:
/// `ours` is the TCG suite; `linux` has one run per variant (a missing
/// variant is an `Err`).
pub fn comparisons(linux: &[LinuxRun], ours: &Suite) -> Vec<Comparison> {
    let run = |v: LinuxVariant| -> std::result::Result<&LinuxRun, String> {
        linux
            .iter()
            .find(|r| r.variant == v)
            .ok_or_else(|| format!("Linux {}: not run", v.tag()))
    };
    let row = |metric: String, better: Better, l: Found<'_>, o: Found<'_>, key: &str| Comparison {
        metric,
        better,
        linux: figure(l, &[key]),
        ours: figure(o, &[key]),
        rdtsc_timed: false,
        no_ratio: false,
        note: None,
    };
    let mut rows = Vec::new();

    let idle = [
        (
            "idle timer irq/s, NO_HZ (ours: lapic)",
            LinuxVariant::Default,
            Config::NoHz,
            Better::Lower,
        ),
        (
            "idle timer irq/s, nohz=off (ours: lapic)",
            LinuxVariant::NoHzOff,
            Config::Periodic,
            Better::AtHz(ours.smp.max(1)),
        ),
        (
            "idle timer irq/s, NO_HZ tsc=reliable (ours: lapic)",
            LinuxVariant::TscReliable,
            Config::Reliable,
            Better::Lower,
        ),
    ];
    for (metric, variant, config, better) in idle {
        let l = run(variant).and_then(|r| r.find("idle", &[]));
        let o = ours.find(Device::Lapic, config, "idle", &[]);
        if ours.smp > 1 {
            // Linux's LOC + IRQ0 are summed over its CPUs: ours too (every
            // CPU's timer interrupts and tick IPIs).
            let mut r = row(
                metric.replace("irq/s,", &format!("irq/s, all {} CPUs,", ours.smp)),
                better,
                l,
                o.clone(),
                "per_s",
            );
            r.ours = figure(o, &["all_per_s"]);
            rows.push(r);
        } else {
            rows.push(row(metric.into(), better, l, o, "per_s"));
        }
    }

    for advance in ["off", "auto"] {
        for (p, key) in [("p50", "p50_us"), ("p99", "p99_us")] {
            let metric = format!(
                "lateness {p} µs at resume (Linux slack 1 ns; ours lapic, advance {advance})"
            );
            let l =
                run(LinuxVariant::Default).and_then(|r| r.find("lateness", &[("slack", "1ns")]));
            let o = ours.find(
                Device::Lapic,
                Config::NoHz,
                "lateness",
                &[("at", "resume"), ("advance", advance)],
            );
            rows.push(row(metric, Better::Lower, l, o, key));
        }
    }

    let ours_reads = read_cal_lines(ours);
    for clock in ["tsc", "hpet", "acpi_pm"] {
        for (stat, key) in [("median", "median_ns"), ("mean", "mean_ns")] {
            let metric = format!("clock read {stat} ns, {clock}");
            let l =
                run(LinuxVariant::Default).and_then(|r| r.find("clock_read", &[("source", clock)]));
            let o = || {
                ours_reads.clone().and_then(|lines| {
                    find(lines, "clock_read", &[("clock", clock)])
                        .map_err(|e| format!("hpet-read-cal: {e}"))
                })
            };
            let mut r = row(metric, Better::Lower, l, o(), key);
            if stat == "median" && r.ours.as_deref().map(str::parse::<f64>) == Ok(Ok(0.0)) {
                // A counter slower than a read: consecutive readings are
                // mostly equal, and the median is 0, not a cost. The
                // guest also times each read with rdtsc: use that.
                match figure(o(), &["tsc_timed_median_ns"]) {
                    Ok(v) => {
                        r.ours = Ok(v);
                        r.rdtsc_timed = true;
                        r.note = Some(format!(
                            "dynticks' {clock} median is rdtsc-timed: the counter ticks slower \
                             than one read takes, so consecutive readings are mostly equal \
                             (their median is 0)"
                        ));
                    }
                    Err(_) => {
                        r.no_ratio = true;
                        r.note = Some(format!(
                            "dynticks' {clock} median is 0: the counter ticks slower than one \
                             read takes, so most consecutive readings are equal; its mean is \
                             the cost"
                        ));
                    }
                }
            }
            rows.push(r);
        }
    }
    rows
}

/// The note under every comparison table: what a ratio says.
pub const RATIO_NOTE: &str = "ratio < 1: dynticks has the lower figure, which is better in \
     every row but nohz=off (where both should tick at HZ = 250/s)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::{booted, lapic_suite, suite, GUEST_READ_CAL, LINUX_DEFAULT};
    use crate::bench::{bench_lines, NONE};

    #[test]
    fn with_several_cpus_ours_is_every_cpus_idle_rate() {
        let linux = vec![LinuxRun {
            variant: LinuxVariant::Default,
            lines: bench_lines(
                "BENCH idle seconds=10.000 loc=150 irq0=0 timer_irqs=150 per_s=15.0 all_irqs=160 all_per_s=16.0\n",
            ),
            error: None,
        }];
        let mut ours = suite(vec![booted(
            Device::Lapic,
            Config::NoHz,
            "CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250\n\
             BENCH idle source=lapic0 per_s=1.099 cpus=2 all_interrupts=12 all_per_s=1.199\n",
        )]);
        ours.smp = 2;
        let rows = comparisons(&linux, &ours);
        let r = rows
            .iter()
            .find(|r| {
                r.metric
                    .starts_with("idle timer irq/s, all 2 CPUs, NO_HZ (")
            })
            .unwrap_or_else(|| panic!("{rows:?}"));
        // Linux's LOC + IRQ0 over its CPUs against every one of ours.
        assert_eq!(r.linux, Ok("15.0".to_string()));
        assert_eq!(r.ours, Ok("1.199".to_string()));
    }

    #[test]
    fn the_comparison_pairs_linux_and_guest_figures() {
        let linux = vec![
            LinuxRun {
                variant: LinuxVariant::Default,
                lines: bench_lines(LINUX_DEFAULT),
                error: None,
            },
            LinuxRun {
                variant: LinuxVariant::NoHzOff,
                lines: Vec::new(),
                error: Some("no kernel".into()),
            },
        ];
        let rows = comparisons(&linux, &lapic_suite());
        assert_eq!(rows.len(), 3 + 4 + 6);
        let row = |prefix: &str| {
            let r = rows
                .iter()
                .find(|r| r.metric.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix}: {rows:?}"));
            let ratio = r.ratio().map(|x| format!("{x:.2}"));
            (r.linux.clone(), r.ours.clone(), ratio, r)
        };
        let ok = |s: &str| Ok(s.to_string());
        let (l, o, r, c) = row("idle timer irq/s, NO_HZ (");
        assert_eq!((l, o, r.as_deref()), (ok("9.4"), ok("2.099"), Some("0.22")));
        assert_eq!(c.better, Better::Lower);
        let (l, o, r, c) = row("idle timer irq/s, nohz=off");
        assert_eq!(l, Err("Linux nohz=off: no kernel".into()));
        assert_eq!(o, Err("lapic periodic: not booted".into()));
        assert_eq!((r, c.better.label()), (None, "= HZ (250)".into()));
        let (l, o, r, _) = row("idle timer irq/s, NO_HZ tsc=reliable");
        assert_eq!(l, Err("Linux tsc=reliable: not run".into()));
        assert!(o.is_err() && r.is_none());
        let (l, o, r, _) =
            row("lateness p50 µs at resume (Linux slack 1 ns; ours lapic, advance off)");
        assert_eq!(
            (l, o, r.as_deref()),
            (ok("184.4"), ok("73.8"), Some("0.40"))
        );
        let (l, o, r, _) =
            row("lateness p99 µs at resume (Linux slack 1 ns; ours lapic, advance auto)");
        assert_eq!(
            (l, o, r.as_deref()),
            (ok("441.1"), ok("200.0"), Some("0.45"))
        );
        let (l, o, r, _) = row("clock read median ns, hpet");
        assert_eq!((l, o, r.as_deref()), (ok("1450"), ok("200"), Some("0.14")));
        let (l, o, r, c) = row("clock read median ns, acpi_pm");
        assert_eq!((l, o, r.as_deref()), (ok("1117"), ok("80"), Some("0.07")));
        assert!(c.rdtsc_timed);
        assert!(c
            .note
            .as_ref()
            .is_some_and(|n| n.starts_with("dynticks' acpi_pm median is rdtsc-timed")));
        let (l, o, r, c) = row("clock read mean ns, acpi_pm");
        assert_eq!((l, o, r.as_deref()), (ok("1120.8"), ok("94"), Some("0.08")));
        assert!(!c.rdtsc_timed && c.note.is_none());
    }

    #[test]
    fn a_median_of_zero_without_an_rdtsc_timed_one_is_not_divided() {
        let read_cal = GUEST_READ_CAL.replace(" tsc_timed_median_ns=80", "");
        let s = suite(vec![booted(Device::Hpet, Config::ReadCal, &read_cal)]);
        let linux = [LinuxRun {
            variant: LinuxVariant::Default,
            lines: bench_lines(LINUX_DEFAULT),
            error: None,
        }];
        let rows = comparisons(&linux, &s);
        let c = rows
            .iter()
            .find(|r| r.metric == "clock read median ns, acpi_pm")
            .unwrap();
        assert_eq!(c.ours, Ok("0".to_string()));
        assert!(c.no_ratio && !c.rdtsc_timed);
        assert_eq!(c.ratio(), None);
        assert!(c
            .note
            .as_ref()
            .is_some_and(|n| n.contains("its mean is the cost")));
    }

    #[test]
    fn ratios_need_two_numbers_and_a_positive_linux_figure() {
        assert_eq!(ratio_of("50", "100"), Some(0.5));
        assert_eq!(ratio_of("50", "0"), None);
        assert_eq!(ratio_of(NONE, "1"), None);
        assert_eq!(ratio_of("1", "100000+"), None);
        assert_eq!(ratio_of("NaN", "1"), None);
    }

    #[test]
    fn only_a_kvm_request_gets_the_linux_kvm_note() {
        let note = kvm_note(Accel::Kvm).unwrap();
        assert!(note.contains("Linux does not boot under this machine's KVM"));
        assert!(note.contains("both guests under TCG"));
        assert_eq!(kvm_note(Accel::Tcg), None);
    }
}
