//! `cargo xtask bench`: boot the guest's `bench-*` tests once per tick
//! device and configuration, collect its `BENCH` lines, print the tables;
//! with `--vs-linux`, run `bench/linux/run` too and compare.
//!
//! ```text
//!   per tick device (hpet, lapic, lapic-deadline if the CPU offers it, pit):
//!     nohz       clockevent=<dev> test=bench-idle,bench-lateness,bench-program,bench-nohz
//!     periodic   clockevent=<dev> nohz=off test=bench-idle
//!     reliable   clockevent=<dev> tsc=reliable test=bench-idle
//!   once:
//!     read-cal   clockevent=hpet test=bench-read,bench-cal   (the LAPIC timer is free)
//!   TCG, with the LAPIC timer, on a slow vCPU (-icount shift=9|10,sleep=off):
//!     icount9, icount10   clockevent=lapic test=bench-lateness
//!
//!   serial ──BenchLine::parse──► BootResult ──*_table──► Table ──render──► stdout, report
//!   bench/linux/run (×3: default, nohz=off, tsc=reliable) ──► comparisons ──► stats
//! ```
//!
//! With `--repeat N` the boots the comparison reads (lapic nohz, periodic,
//! reliable; read-cal) are made N times, alternating with Linux's three
//! runs under `--vs-linux`, and reported as median (min–max) ([`stats`]);
//! the per-device tables are run 1's.
//!
//! Every boot's raw output goes to `target/bench/<accel>-<machine>-<config>.log`
//! (`…-run<i>.log` for run i > 1), the tables to
//! `target/bench/report-<accel>-<machine>.md`. A figure that is
//! missing (a boot that failed, a group the guest skipped, a key it did not
//! print) is a `—` in its cell and a note under the table; nothing here
//! panics on what the guest or Linux printed.
//!
//! Boots run one after the other: timings under TCG depend on the host's
//! CPUs, which concurrent boots would share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use guest::result::BENCH;

use crate::cli::{AccelChoice, BenchArgs};
use crate::matrix::{Source, Transcript};
use crate::qemu::{self, Accel, Machine, RunSpec, RunStatus};
use crate::runner::{KVM_TIMEOUT, TCG_TIMEOUT};
use crate::stats::{self, RunNo};
use crate::{guest_build, Error, Result};

/// A missing figure.
pub const NONE: &str = "—";

/// The `-icount shift=` values of the slow-vCPU boots (TCG, `sleep=off`:
/// guest time is the instruction count, so a run is deterministic and
/// `advance=off` and `auto`, run one after the other, see the same vCPU —
/// under `shift=auto` QEMU slows the vCPU down as a run goes on, which
/// makes whichever runs second look worse). At `shift=9` (~0.5 µs a guest
/// instruction) the LAPIC timer's delivery delay is ~300 µs and a lead
/// helps; at `shift=10` (~1 µs) the CPU cannot keep a 1 ms period and
/// `auto` must back off (`tick::advance`).
pub const SLOW_VCPU_SHIFTS: [u8; 2] = [9, 10];

/// A slow-vCPU boot takes ~70 s here; room for a slower host.
const SLOW_VCPU_TIMEOUT: Duration = Duration::from_secs(600);

/// The KVM CPU model without TSC-deadline, so that `clockevent=lapic` gets
/// the one-shot LAPIC timer (as `cargo xtask test`'s x2APIC row does).
const KVM_NO_DEADLINE: &str = "host,-arch-capabilities,-tsc-deadline";

// ---- BENCH lines ------------------------------------------------------------------

/// One `BENCH <group> key=value …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// The group (`idle`, `lateness`, …).
    pub group: String,
    /// The fields in the order printed; quoted values unquoted.
    pub fields: Vec<(String, String)>,
}

impl BenchLine {
    /// Parses one line; `None` if it is not a `BENCH` line.
    ///
    /// A value is a word without spaces, or a double-quoted string in which
    /// `\"` and `\\` stand for `"` and `\` (as `timerbench.c` escapes them);
    /// an unterminated quote runs to the end of the line. Words without `=`
    /// after the group are ignored.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(BENCH)?;
        let rest = rest.strip_prefix(' ')?.trim_start();
        let group_end = rest.find(' ').unwrap_or(rest.len());
        let group = &rest[..group_end];
        if group.is_empty() || group.contains('=') {
            return None;
        }
        let mut fields = Vec::new();
        let mut chars = rest[group_end..].chars().peekable();
        loop {
            while chars.next_if_eq(&' ').is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=' && *c != ' ') {
                key.push(c);
            }
            if chars.next_if_eq(&'=').is_none() {
                continue; // a bare word: not a field
            }
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ' ') {
                    value.push(c);
                }
            }
            fields.push((key, value));
        }
        Some(BenchLine {
            group: group.to_string(),
            fields,
        })
    }

    /// The value of `key` (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or [`NONE`].
    pub fn cell(&self, key: &str) -> String {
        self.get(key).unwrap_or(NONE).to_string()
    }

    /// Whether every `(key, value)` of `filter` is on the line.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.get(k) == Some(*v))
    }
}

/// A line looked for, or why it is not there (said in a note).
pub type Found<'a> = std::result::Result<&'a BenchLine, String>;

/// Every `BENCH` line of a transcript, in order.
pub fn bench_lines(text: &str) -> Vec<BenchLine> {
    text.lines().filter_map(BenchLine::parse).collect()
}

/// The first line of `group` that matches `filter`, or why there is none
/// (the group was skipped, with the reason; or no such line).
pub fn find<'a>(lines: &'a [BenchLine], group: &str, filter: &[(&str, &str)]) -> Found<'a> {
    let in_group = || lines.iter().filter(|l| l.group == group);
    if let Some(l) = in_group().find(|l| l.matches(filter) && l.get("skipped").is_none()) {
        return Ok(l);
    }
    if let Some(why) = in_group().find_map(|l| l.get("skipped")) {
        return Err(format!("`{group}` skipped: {why}"));
    }
    let what: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Err(format!(
        "no `{group}{}{}` line",
        if what.is_empty() { "" } else { " " },
        what.join(" ")
    ))
}

// ---- what is booted ---------------------------------------------------------------

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
                format!("clockevent={dev} test=bench-idle,bench-lateness,bench-program,bench-nohz")
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

// ---- tables -----------------------------------------------------------------------

/// A markdown table with a title and notes under it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The heading.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Leading columns that are labels (left-aligned); the rest are figures.
    pub labels: usize,
    /// Trailing columns that are labels too.
    pub trailing_labels: usize,
    /// The rows, each as long as `header`.
    pub rows: Vec<Vec<String>>,
    /// Notes printed under the table (missing figures and why).
    pub notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(title: &str, header: &[&str], labels: usize) -> Self {
        Table {
            title: title.to_string(),
            header: header.iter().map(|s| s.to_string()).collect(),
            labels,
            ..Table::default()
        }
    }

    /// Adds a note once.
    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// `key` of the line `found`, or [`NONE`] and a note.
    fn cell(&mut self, found: &Found<'_>, key: &str) -> String {
        self.cell_any(found, &[key])
    }

    /// The first of `keys` the line `found` has (the guest renames a key
    /// now and then), or [`NONE`] and a note.
    fn cell_any(&mut self, found: &Found<'_>, keys: &[&str]) -> String {
        match found {
            Ok(l) => match keys.iter().find_map(|k| l.get(k)) {
                Some(v) => v.to_string(),
                None => {
                    self.note(format!(
                        "the `{}` line has no `{}`",
                        l.group,
                        keys.join("` or `")
                    ));
                    NONE.to_string()
                }
            },
            Err(why) => {
                self.note(why.clone());
                NONE.to_string()
            }
        }
    }

    /// The table as aligned markdown: title, header, rows, notes.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(self.header.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let is_label = |i: usize| i < self.labels || i + self.trailing_labels >= cols;
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or(NONE);
                let pad = w.saturating_sub(c.chars().count());
                if is_label(i) {
                    let _ = write!(s, " {c}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{c} |", " ".repeat(pad));
                }
            }
            s
        };
        let mut out = format!("### {}\n\n{}\n|", self.title, line(&self.header));
        for (i, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if is_label(i) {
                let _ = write!(out, " {dashes} |");
            } else {
                let _ = write!(out, " {}: |", &dashes[1..]);
            }
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

/// Idle timer interrupts per second, per device and configuration.
pub fn idle_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Idle timer interrupts/s (10 s idle, one timer at its end)",
        &[
            "source",
            "periodic (nohz=off)",
            "NO_HZ",
            "NO_HZ + tsc=reliable",
            "forced (NO_HZ)",
            "forced (reliable)",
            "cap_ms (NO_HZ)",
            "cap_ms (reliable)",
        ],
        1,
    );
    for &d in &s.devices {
        let periodic = s.find(d, Config::Periodic, "idle", &[]);
        let nohz = s.find(d, Config::NoHz, "idle", &[]);
        let reliable = s.find(d, Config::Reliable, "idle", &[]);
        let row = vec![
            d.name().to_string(),
            t.cell(&periodic, "per_s"),
            t.cell(&nohz, "per_s"),
            t.cell(&reliable, "per_s"),
            forced(&mut t, &nohz),
            forced(&mut t, &reliable),
            t.cell(&nohz, "cap_ms"),
            t.cell(&reliable, "cap_ms"),
        ];
        t.rows.push(row);
    }
    t
}

/// Wake-ups that ran neither tick nor timer (`forced`: the NO_HZ cap's, or
/// the watchdog's; older guests printed only `deferment`, the clocksource
/// cap's), and how many a window without lateness would hold
/// (`forced_ideal`).
fn forced(t: &mut Table, idle: &Found<'_>) -> String {
    let n = t.cell_any(idle, &["forced", "deferment"]);
    match idle.as_ref().ok().and_then(|l| l.get("forced_ideal")) {
        Some(ideal) => format!("{n} (ideal {ideal})"),
        None => n,
    }
}

/// Lateness of the 1 ms absolute periodic timer (NO_HZ boots).
pub fn lateness_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Lateness of a 1 ms absolute periodic timer, µs (2000 periods, NO_HZ)",
        &[
            "source",
            "advance",
            "at",
            "min",
            "p50",
            "p99",
            "max",
            "early",
            "missed_periods",
        ],
        3,
    );
    for &d in &s.devices {
        for advance in ["off", "auto"] {
            for at in ["resume", "entry"] {
                let l = s.find(
                    d,
                    Config::NoHz,
                    "lateness",
                    &[("advance", advance), ("at", at)],
                );
                let mut row = vec![d.name().to_string(), advance.to_string(), at.to_string()];
                for k in [
                    "min_us",
                    "p50_us",
                    "p99_us",
                    "max_us",
                    "early",
                    "missed_periods",
                ] {
                    row.push(t.cell(&l, k));
                }
                t.rows.push(row);
            }
        }
    }
    t
}

/// Lateness with timer advance off and auto on a slow vCPU (the
/// [`SLOW_VCPU_SHIFTS`] boots), and whether auto is no worse than off: no
/// more missed periods, and the tick layer's handler (`at=entry`) no later
/// at the median. (`at=resume` also holds the guest's own resume lead of
/// `sleep_until`, on with auto too.)
pub fn slow_vcpu_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Timer advance on a slow vCPU: 1 ms periodic timer on the LAPIC timer, µs \
         (TCG -icount shift=N,sleep=off, 2000 periods)",
        &[
            "icount",
            "advance",
            "at",
            "p50",
            "p99",
            "missed_periods",
            "auto no worse than off",
        ],
        3,
    );
    t.trailing_labels = 1;
    if s.accel != Accel::Tcg || !s.devices.contains(&Device::Lapic) {
        return t;
    }
    for shift in SLOW_VCPU_SHIFTS {
        let config = Config::SlowVcpu(shift);
        let line = |advance: &str, at: &str| {
            s.find(
                Device::Lapic,
                config,
                "lateness",
                &[("advance", advance), ("at", at)],
            )
        };
        let figure = |advance: &str, key: &str| {
            let l = line(advance, "entry");
            l.ok()
                .and_then(|l| l.get(key))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let verdict = match [
            figure("auto", "missed_periods"),
            figure("off", "missed_periods"),
            figure("auto", "p50_us"),
            figure("off", "p50_us"),
        ] {
            [Some(ma), Some(mo), Some(pa), Some(po)] => {
                if ma <= mo && pa <= po {
                    "yes"
                } else {
                    "NO"
                }
            }
            _ => NONE,
        };
        for advance in ["off", "auto"] {
            for at in ["entry", "resume"] {
                let l = line(advance, at);
                let mut row = vec![
                    format!("shift={shift}"),
                    advance.to_string(),
                    at.to_string(),
                ];
                for k in ["p50_us", "p99_us", "missed_periods"] {
                    row.push(t.cell(&l, k));
                }
                let judged = advance == "auto" && at == "entry";
                row.push(if judged { verdict } else { "" }.to_string());
                t.rows.push(row);
            }
        }
    }
    t.note(
        "auto no worse than off: missed periods, and the median at the handler's entry \
         (the tick layer's timer advance); at resume the guest's `sleep_until` resume lead \
         is on with auto too"
            .to_string(),
    );
    t
}

/// The cost of `program_event` against the driver's bare `set_next_event`.
pub fn program_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "program_event, ns (10⁴ calls)",
        &["source", "median", "bare set_next_event median", "ratio"],
        1,
    );
    for &d in &s.devices {
        let l = s.find(d, Config::NoHz, "program", &[]);
        let row = vec![
            d.name().to_string(),
            t.cell(&l, "median_ns"),
            t.cell(&l, "bare_median_ns"),
            t.cell(&l, "ratio"),
        ];
        t.rows.push(row);
    }
    t
}

/// NO_HZ idle entry and exit.
pub fn nohz_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "NO_HZ idle entry + exit, median ns (10³ rounds; medians over those that stopped the tick)",
        &[
            "source",
            "enter",
            "exit",
            "total",
            "tick stopped",
            "kept: tick due",
        ],
        1,
    );
    t.notes.push(
        "kept: tick due: rounds that kept the tick because its interrupt was due within the \
         device's min delta, or had come and was not yet delivered (QEMU delivers 50–100 µs \
         late under TCG); they are counted, not timed"
            .into(),
    );
    for &d in &s.devices {
        let l = s.find(d, Config::NoHz, "nohz_path", &[]);
        let stopped = match &l {
            Ok(l) => format!("{}/{}", l.cell("tick_stopped"), l.cell("rounds")),
            Err(_) => NONE.to_string(),
        };
        let row = vec![
            d.name().to_string(),
            t.cell(&l, "enter_median_ns"),
            t.cell(&l, "exit_median_ns"),
            t.cell(&l, "total_median_ns"),
            stopped,
            t.cell(&l, "kept_due"),
        ];
        t.rows.push(row);
    }
    t
}

/// The boot that measured clock reads and calibrations.
pub(crate) fn read_cal_lines(s: &Suite) -> std::result::Result<&[BenchLine], String> {
    let Some(b) = s.boots.iter().find(|b| b.boot.config == Config::ReadCal) else {
        return Err("read-cal: not booted".into());
    };
    match &b.problem {
        Some(p) => Err(format!("{}: {p}", b.boot.name())),
        None => Ok(&b.lines),
    }
}

/// Clock read cost, one row per clock.
pub fn clock_read_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Clock read (consecutive monotonic readings, 10⁶), ns",
        &[
            "clock",
            "median_ns",
            "tsc_timed_median_ns",
            "mean_ns",
            "min_ns",
        ],
        1,
    );
    let lines = match read_cal_lines(s) {
        Ok(l) => l,
        Err(why) => {
            t.note(why);
            return t;
        }
    };
    for l in lines.iter().filter(|l| l.group == "clock_read") {
        if let Some(why) = l.get("skipped") {
            t.note(format!("`clock_read` skipped: {why}"));
            continue;
        }
        t.rows.push(vec![
            l.cell("clock"),
            l.cell("median_ns"),
            l.cell("tsc_timed_median_ns"),
            l.cell("mean_ns"),
            l.cell("min_ns"),
        ]);
    }
    match find(lines, "clock_read_ratio", &[]) {
        Ok(r) => t.note(format!(
            "tsc through kernel::now (lock-free, rdtsc inline) vs bare rdtsc + mult/shift: \
             {} ns vs {} ns, ratio {}; through the timekeeper (&dyn): {} ns, ratio {}",
            r.cell("tsc_median_ns"),
            r.cell("bare_median_ns"),
            r.cell("ratio"),
            r.cell("timekeeper_median_ns"),
            r.cell("timekeeper_ratio"),
        )),
        Err(why) => t.note(why),
    }
    if t.rows.is_empty() {
        t.note("no `clock_read` line".into());
    }
    t
}

/// Calibrations, one row per target × reference.
pub fn calibration_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Calibration (target against reference, vs the true rate)",
        &[
            "target",
            "reference",
            "found Hz",
            "truth Hz (from)",
            "off ppm",
            "bound ppm",
            "window µs",
            "took µs",
        ],
        2,
    );
    let lines = match read_cal_lines(s) {
        Ok(l) => l,
        Err(why) => {
            t.note(why);
            return t;
        }
    };
    for l in lines.iter().filter(|l| l.group == "calibration") {
        if let Some(why) = l.get("skipped") {
            t.note(format!("`calibration` skipped: {why}"));
            continue;
        }
        let found = match l.get("failed") {
            Some(why) => format!("failed: {why}"),
            None => l.cell("found_hz"),
        };
        t.rows.push(vec![
            l.cell("target"),
            l.cell("reference"),
            found,
            format!("{} ({})", l.cell("truth_hz"), l.cell("truth_from")),
            l.cell("off_ppm"),
            l.cell("bound_ppm"),
            l.cell("window_us"),
            l.cell("took_us"),
        ]);
    }
    if t.rows.is_empty() {
        t.note("no `calibration` line".into());
    }
    t
}

/// The whole report of a suite, as markdown.
pub fn report(s: &Suite) -> String {
    let mut out = format!(
        "## dynticks benchmarks: {} -M {}\n\nQEMU: `{}`\n",
        s.accel.as_str(),
        s.machine.as_str(),
        s.qemu_line
    );
    for n in &s.notes {
        let _ = writeln!(out, "\n- {n}");
    }
    for t in [
        idle_table(s),
        lateness_table(s),
        slow_vcpu_table(s),
        program_table(s),
        nohz_table(s),
        clock_read_table(s),
        calibration_table(s),
    ] {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

// ---- Linux ------------------------------------------------------------------------

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
    /// A tick rate of [`HZ`] per second (the `nohz=off` idle row).
    AtHz,
}

impl Better {
    /// The text of the table's `better` column.
    pub fn label(self) -> String {
        match self {
            Better::Lower => "lower".into(),
            Better::AtHz => format!("= HZ ({HZ})"),
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
            Better::AtHz,
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
        rows.push(row(metric.into(), better, l, o, "per_s"));
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

// ---- running ----------------------------------------------------------------------

/// Where logs and reports go: `$CARGO_TARGET_DIR` (or `target/`) `/bench`.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| guest_build::workspace_root().join("target"))
        .join("bench")
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("writing {}", path.display()), e))
}

/// The accelerator `--accel` resolves to.
fn resolve_accel(choice: AccelChoice) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Auto if qemu::kvm_usable() => Ok(Accel::Kvm),
        AccelChoice::Auto => Ok(Accel::Tcg),
        AccelChoice::Kvm if qemu::kvm_usable() => Ok(Accel::Kvm),
        AccelChoice::Kvm => Err(Error::Other(format!(
            "--accel kvm: {} cannot be opened read-write",
            qemu::KVM_DEVICE
        ))),
    }
}

/// The time limit of the read/calibration boot under KVM: the software
/// KVM here takes ~65 µs per clock read, and 10⁶ reads of each of 5 clocks
/// take over 300 s.
pub const KVM_READ_TIMEOUT: Duration = Duration::from_secs(900);

/// The spec of one boot (the `cargo xtask test` defaults: the
/// accelerator's CPU model, 128 MiB).
fn spec(
    kernel: &Path,
    accel: Accel,
    machine: Machine,
    cmdline: &str,
    cpu: Option<&str>,
) -> RunSpec {
    let mut s = RunSpec::new(kernel, machine, accel);
    s.cmdline = cmdline.to_string();
    s.echo = false;
    s.timeout = match accel {
        Accel::Tcg => TCG_TIMEOUT,
        Accel::Kvm if cmdline.contains("bench-read") => KVM_READ_TIMEOUT,
        Accel::Kvm => KVM_TIMEOUT,
    };
    if let Some(cpu) = cpu {
        s.cpu = cpu.to_string();
    }
    s
}

/// The QEMU command line of `s`, its `-append` value quoted.
fn qemu_line(s: &RunSpec) -> String {
    let args: Vec<String> = s
        .qemu_args()
        .iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.into_owned()
            }
        })
        .collect();
    format!("{} {}", qemu::QEMU, args.join(" "))
}

/// `line` with the paths below `root` named relative to it (a report is
/// read on other machines, and may be copied into the repository).
pub fn repo_relative(line: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    if root.is_empty() || root == "/" {
        return line.to_string();
    }
    line.replace(&format!("{}/", root.trim_end_matches('/')), "")
}

/// Boots `spec`, saves its output to `log`; the serial output and status.
fn boot(spec: &RunSpec, log: &Path) -> Result<(RunStatus, String, f64)> {
    let o = qemu::run_qemu(spec)?;
    let mut text = format!("# {}\n# {}\n", qemu_line(spec), o.status);
    text.push_str(&o.serial);
    if !o.stderr.trim().is_empty() {
        let _ = write!(text, "\n# QEMU stderr:\n{}", o.stderr);
    }
    write_file(log, &text)?;
    Ok((o.status, o.serial, o.duration.as_secs_f64()))
}

/// Makes the bring-up boot under `accel`: the suite with no boots yet,
/// and the boots to make ([`plan`]).
fn start_suite(
    kernel: &Path,
    accel: Accel,
    args: &BenchArgs,
    dir: &Path,
) -> Result<(Suite, Vec<Boot>)> {
    let prefix = format!("{}-{}", accel.as_str(), args.machine.as_str());
    // A bring-up-only boot: what the CPU model offers (and whether it boots).
    let caps_spec = spec(kernel, accel, args.machine, "test=caps", None);
    let (status, serial, _) = boot(&caps_spec, &dir.join(format!("{prefix}-caps.log")))?;
    let caps = Transcript::parse(&serial).config;
    if !status.is_pass() || caps.is_empty() {
        return Err(Error::Other(format!(
            "{}: the bring-up boot (test=caps) ended with {status}",
            accel.as_str()
        )));
    }
    let deadline = caps.get("cpu_tsc_deadline").is_some_and(|v| v == "1");
    let mut notes = Vec::new();
    if !deadline && args.source.is_none_or(|s| s == Source::Lapic) {
        notes.push(format!(
            "lapic-deadline: not run, the CPU model ({}) offers no TSC-deadline",
            caps_spec.cpu
        ));
    }
    let devices = devices(args.source, deadline);
    let boots = plan(&devices, accel, deadline);
    let mut line_spec = caps_spec.clone();
    line_spec.cmdline = "<per boot, below>".into();
    let qemu_line = repo_relative(&qemu_line(&line_spec), &guest_build::workspace_root());
    println!("\n{}: {qemu_line}", accel.as_str());
    if let Some(b) = boots.iter().find(|b| b.cpu.is_some()) {
        notes.push(format!(
            "{} rows: -cpu {} (no TSC-deadline, so that the one-shot mode is used)",
            b.device.name(),
            b.cpu.as_deref().unwrap_or_default()
        ));
    }
    let suite = Suite {
        accel,
        machine: args.machine,
        qemu_line,
        devices,
        boots: Vec::new(),
        notes,
    };
    Ok((suite, boots))
}

/// Makes `boots` (of run `run`) one after the other and adds their
/// results to `suite`.
pub(crate) fn run_boots(
    kernel: &Path,
    suite: &mut Suite,
    boots: &[Boot],
    dir: &Path,
    run: RunNo,
) -> Result<()> {
    let (accel, machine) = (suite.accel, suite.machine);
    let prefix = format!("{}-{}", accel.as_str(), machine.as_str());
    let n = boots.len();
    for (i, b) in boots.iter().enumerate() {
        let cmdline = b.config.cmdline(b.device);
        let mut s = spec(kernel, accel, machine, &cmdline, b.cpu.as_deref());
        if let Some(icount) = b.config.icount() {
            s.icount = Some(icount);
            s.timeout = SLOW_VCPU_TIMEOUT;
        }
        let log = dir.join(format!("{prefix}-{}{}.log", b.name(), run.suffix()));
        let (status, serial, secs) = boot(&s, &log)?;
        let r = BootResult::new(b.clone(), accel, status, &serial);
        println!(
            "{}[{:>2}/{n}] {} {:<25} {cmdline:<78} {}",
            run.prefix(),
            i + 1,
            accel.as_str(),
            r.boot.name(),
            match &r.problem {
                None => format!("ok ({secs:.1} s)"),
                Some(p) => format!("{p} ({secs:.1} s; {})", log.display()),
            }
        );
        suite.boots.push(r);
    }
    Ok(())
}

/// The `-cpu` model and memory of every TCG boot, which Linux gets too.
pub(crate) fn linux_machine(kernel: &Path, machine: Machine) -> (String, u32) {
    let s = spec(kernel, Accel::Tcg, machine, "", None);
    (s.cpu, s.memory_mib)
}

/// Runs `bench/linux/run` once; its stderr is echoed as it comes.
pub(crate) fn run_linux(
    variant: LinuxVariant,
    machine: Machine,
    (cpu, memory): (&str, u32),
    dir: &Path,
    run: RunNo,
) -> LinuxRun {
    let script = guest_build::workspace_root().join("bench/linux/run");
    let mut cmd = Command::new(&script);
    cmd.args([
        "--machine",
        machine.as_str(),
        "--accel",
        "tcg",
        "--cpu",
        cpu,
    ])
    .args(["--memory", &memory.to_string()]);
    if let Some(a) = variant.append() {
        cmd.args(["--append", a]);
    }
    println!(
        "\n{}Linux {}: {}",
        run.prefix(),
        variant.tag(),
        command_line(&cmd)
    );
    let failed = |error: String| LinuxRun {
        variant,
        lines: Vec::new(),
        error: Some(error),
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", script.display())),
    };
    let stderr = child.stderr.take().map(|s| {
        thread::spawn(move || {
            let mut seen = Vec::new();
            for l in BufReader::new(s).lines().map_while(std::result::Result::ok) {
                eprintln!("  {l}");
                seen.push(l);
            }
            seen
        })
    });
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    let status = child.wait();
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let log = dir.join(format!(
        "linux-{}-{}{}.log",
        machine.as_str(),
        variant.tag(),
        run.suffix()
    ));
    let mut text = format!("# {}\n{stdout}\n# stderr:\n", command_line(&cmd));
    for l in &stderr {
        let _ = writeln!(text, "{l}");
    }
    let _ = std::fs::write(&log, text);
    let lines = bench_lines(&stdout);
    let ok = matches!(&status, Ok(s) if s.success());
    let error = if ok && lines.iter().any(|l| l.group == "done") {
        None
    } else {
        // The script's and setup's own messages say why.
        let why: Vec<&str> = stderr
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("run:") || l.starts_with("setup:") || l.contains("rror"))
            .filter(|l| !l.starts_with("run: qemu-system"))
            .collect();
        Some(format!(
            "{} ({})",
            match &status {
                Ok(s) => format!("bench/linux/run exited with {s}"),
                Err(e) => format!("waiting for bench/linux/run: {e}"),
            },
            if why.is_empty() {
                "no message".to_string()
            } else {
                why.join("; ")
            }
        ))
    };
    LinuxRun {
        variant,
        lines,
        error,
    }
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') {
            let _ = write!(s, " \"{a}\"");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// `cargo xtask bench`: true if every boot of ours produced its figures
/// (a failed Linux run is reported but does not fail the task). The boots
/// the comparison reads are made `--repeat` times, alternating with Linux
/// under `--vs-linux` ([`stats`]).
pub fn bench(args: &BenchArgs) -> Result<bool> {
    let accel = resolve_accel(args.accel)?;
    let kernel = guest_build::build(&[])?;
    let dir = out_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    if args.timeline_only {
        return crate::timeline::bench(&kernel, args, &dir);
    }
    let mut accels = vec![accel];
    if args.vs_linux && accel == Accel::Kvm {
        println!("{}", kvm_note(accel).unwrap_or_default());
        accels.push(Accel::Tcg);
    }
    let mut ok = true;
    let mut compared = false;
    let mut i = 0;
    while let Some(&a) = accels.get(i) {
        i += 1;
        let (suite, plan) = match start_suite(&kernel, a, args, &dir) {
            Ok(s) => s,
            Err(e) if a == Accel::Kvm && args.accel == AccelChoice::Auto => {
                // `auto` means "KVM if it works".
                println!("KVM unusable here ({e}): TCG instead");
                if !accels.contains(&Accel::Tcg) {
                    accels.push(Accel::Tcg);
                }
                continue;
            }
            Err(e) => {
                println!("{}: {e}", a.as_str());
                ok = false;
                continue;
            }
        };
        // With --vs-linux the comparison, and so the repeating, is TCG's.
        let compare = !args.vs_linux || a == Accel::Tcg;
        let linux = args.vs_linux && a == Accel::Tcg;
        let repeat = if compare { args.repeat } else { 1 };
        let rounds = stats::run_rounds(&kernel, suite, plan, &dir, repeat, linux)?;
        ok &= !rounds
            .iter()
            .any(|r| r.ours.boots.iter().any(BootResult::failed));
        let Some(first) = rounds.first() else {
            continue;
        };
        let mut text = report(&first.ours);
        let mut per_run = String::new();
        if linux || (compare && repeat > 1) {
            compared |= linux;
            text.push('\n');
            if let Some(note) = kvm_note(accel).filter(|_| linux) {
                let _ = writeln!(text, "{note}\n");
            }
            let (summary, runs) = stats::section(&rounds, args);
            text.push_str(&summary);
            per_run = runs;
        }
        let path = dir.join(format!(
            "report-{}-{}.md",
            a.as_str(),
            args.machine.as_str()
        ));
        println!("\n{text}");
        if !per_run.is_empty() {
            println!("(per-run figures: in the report)");
        }
        write_file(&path, &format!("{text}{per_run}"))?;
        println!("(written to {})", path.display());
    }
    // The idle timeline's boots (ours ×2, Linux with --vs-linux) and SVG.
    ok &= crate::timeline::bench(&kernel, args, &dir)?;
    if args.vs_linux && !compared {
        println!("\nno TCG figures of ours: no comparison with Linux");
        return Ok(false);
    }
    Ok(ok)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const GUEST_LAPIC_NOHZ: &str = "\
CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250 apic=xAPIC cpu_tsc_deadline=0
BENCH idle source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 nohz=1 seconds=10.002 interrupts=21 per_s=2.099 ticks=0 forced=0 timers=1 cap_ms=21474.836
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=resume advance=off periods=2000 min_us=35.3 p50_us=73.8 p99_us=304.2 max_us=4077.8 early=0 missed_periods=16
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=resume advance=auto periods=2000 min_us=1.0 p50_us=36.9 p99_us=200.0 max_us=4000.0 early=3 missed_periods=12
BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at=entry advance=auto periods=2000 min_us=-96.1 p50_us=-4.9 p99_us=141.1 max_us=4014.2 early=0 missed_periods=19 lead_ns=55487 spun_ns=16486041
BENCH program source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 calls=10000 median_ns=731 mean_ns=2002 min_ns=691 bare_median_ns=540 bare_mean_ns=1524 ratio=1.353 refused=0 overhead_ns=10
BENCH nohz_path source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 rounds=1000 tick_stopped=1000 enter_median_ns=1201 exit_median_ns=1231 total_median_ns=2432 enter_p99_ns=19520 exit_p99_ns=19399 overhead_ns=10
";

    const GUEST_READ_CAL: &str = "\
CONFIG accel=tcg clocksource=tsc tick=hpet mode=high-res+NO_HZ hz=250
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=hpet reads=1000000 median_ns=200 mean_ns=222 min_ns=190
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=tsc reads=1000000 median_ns=50 mean_ns=48 min_ns=40
BENCH clock_read source=hpet cs=tsc mode=high-res+NO_HZ hz=250 clock=acpi_pm reads=1000000 median_ns=0 mean_ns=94 min_ns=0 tsc_timed_median_ns=80
BENCH clock_read_ratio source=hpet cs=tsc mode=high-res+NO_HZ hz=250 tsc_median_ns=50 bare_median_ns=30 ratio=1.666
BENCH calibration source=hpet cs=tsc mode=high-res+NO_HZ hz=250 target=tsc reference=hpet truth_hz=2596123577 truth_from=hpet-1s took_us=10262.9 found_hz=2596151580 off_ppm=10 bound_ppm=39 window_us=10012.4 truth_bound_ppm=4
";

    const LINUX_DEFAULT: &str = "\
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
        }
    }

    fn lapic_suite() -> Suite {
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

    #[test]
    fn a_line_with_a_quoted_value_parses_into_group_and_fields() {
        let l = BenchLine::parse(
            "BENCH calibration source=lapic0 hz=250 skipped=\"lapic: the LAPIC timer is \
             the tick device (run with another clockevent)\" tail=1",
        )
        .unwrap();
        assert_eq!(l.group, "calibration");
        assert_eq!(l.get("source"), Some("lapic0"));
        assert_eq!(
            l.get("skipped"),
            Some("lapic: the LAPIC timer is the tick device (run with another clockevent)")
        );
        assert_eq!(l.get("tail"), Some("1"));
        assert_eq!(l.get("absent"), None);
        assert_eq!(l.cell("absent"), NONE);
    }

    #[test]
    fn escaped_quotes_bare_words_and_crlf_are_handled() {
        let l =
            BenchLine::parse("BENCH dmesg t=0.1 text=\"a \\\"b\\\" c\\\\\" word x=\r\n").unwrap();
        assert_eq!(l.get("text"), Some("a \"b\" c\\"));
        assert_eq!(l.get("x"), Some(""));
        assert_eq!(l.fields.len(), 3);
        let open = BenchLine::parse("BENCH g k=\"never closed").unwrap();
        assert_eq!(open.get("k"), Some("never closed"));
    }

    #[test]
    fn other_lines_are_not_bench_lines() {
        for s in [
            "RESULT test=x verdict=pass",
            "BENCHMARK x",
            "BENCH",
            "BENCH ",
            "BENCH k=v",
            "  BENCH idle per_s=1",
            "",
        ] {
            assert_eq!(BenchLine::parse(s), None, "{s:?}");
        }
        assert_eq!(bench_lines(LINUX_DEFAULT).len(), 8);
    }

    #[test]
    fn find_says_why_a_line_is_missing() {
        let lines = bench_lines(
            "BENCH calibration source=lapic0 skipped=\"the LAPIC timer is the tick device\"\n\
             BENCH lateness at=resume advance=off p50_us=1\n",
        );
        assert_eq!(
            find(&lines, "calibration", &[]),
            Err("`calibration` skipped: the LAPIC timer is the tick device".into())
        );
        assert!(find(&lines, "lateness", &[("at", "resume")]).is_ok());
        assert_eq!(
            find(&lines, "lateness", &[("at", "entry")]),
            Err("no `lateness at=entry` line".into())
        );
    }

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

    /// One slow-vCPU boot's lateness lines: (advance, at, p50, p99,
    /// missed) each.
    fn slow_vcpu_lines(lines: &[(&str, &str, &str, &str, &str)]) -> String {
        let mut out = String::from(
            "CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250\n",
        );
        for (advance, at, p50, p99, missed) in lines {
            let _ = writeln!(
                out,
                "BENCH lateness source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 at={at} \
                 advance={advance} periods=2000 p50_us={p50} p99_us={p99} missed_periods={missed}"
            );
        }
        out
    }

    #[test]
    fn the_slow_vcpu_table_says_whether_auto_is_no_worse_than_off() {
        let with = |lines: &[(&str, &str, &str, &str, &str)]| {
            let mut s = lapic_suite();
            s.boots.push(BootResult::new(
                boot(Device::Lapic, Config::SlowVcpu(10)),
                Accel::Tcg,
                RunStatus::Pass,
                &slow_vcpu_lines(lines),
            ));
            slow_vcpu_table(&s)
        };
        // -icount shift=10,sleep=off, measured here before auto backed off:
        // the saturated lead made the handler later.
        let before = with(&[
            ("off", "resume", "1477.5", "1660.5", "2000"),
            ("off", "entry", "293.8", "502.5", "2000"),
            ("auto", "resume", "1700.3", "2460.2", "2000"),
            ("auto", "entry", "479.7", "531.2", "2000"),
        ]);
        // shift=9 was not booted: its rows are dashes, with a note.
        assert_eq!(before.rows.len(), 8);
        assert_eq!(before.rows[2][3], NONE);
        assert_eq!(before.rows[2][6], NONE);
        assert!(before
            .notes
            .iter()
            .any(|n| n.contains("icount9: not booted")));
        let auto_entry = &before.rows[6];
        assert_eq!(auto_entry[..4], ["shift=10", "auto", "entry", "479.7"]);
        assert_eq!(auto_entry[6], "NO");
        assert_eq!(before.rows[7][6], "", "one verdict per shift");
        // And after.
        let after = with(&[
            ("off", "resume", "1485.5", "1668.2", "2000"),
            ("off", "entry", "291.0", "501.5", "2000"),
            ("auto", "resume", "1505.1", "2657.5", "2000"),
            ("auto", "entry", "274.3", "1426.7", "2000"),
        ]);
        assert_eq!(after.rows[6][6], "yes");
        let mut kvm = lapic_suite();
        kvm.accel = Accel::Kvm;
        assert!(slow_vcpu_table(&kvm).rows.is_empty());
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

    #[test]
    fn missing_boots_and_keys_are_dashes_with_notes() {
        let s = lapic_suite();
        let idle = idle_table(&s);
        assert_eq!(idle.rows.len(), 1);
        assert_eq!(idle.rows[0][1], NONE);
        assert_eq!(idle.rows[0][2], "2.099");
        assert!(idle.notes.iter().any(|n| n == "lapic periodic: not booted"));
        let late = lateness_table(&s);
        assert_eq!(late.rows.len(), 4);
        let entry_off = &late.rows[1];
        assert_eq!(entry_off[..3], ["lapic", "off", "entry"]);
        assert_eq!(entry_off[4], NONE);
        let rendered = late.render();
        assert!(
            rendered.contains("no `lateness advance=off at=entry` line"),
            "{rendered}"
        );
        let widths: Vec<usize> = rendered
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{rendered}");
    }

    #[test]
    fn the_forced_count_is_read_under_its_old_and_new_names() {
        let s = lapic_suite();
        assert_eq!(idle_table(&s).rows[0][4], "0");
        let renamed = GUEST_LAPIC_NOHZ.replace("forced=0", "deferment=2 forced_ideal=3");
        let s = suite(vec![BootResult::new(
            boot(Device::Lapic, Config::NoHz),
            Accel::Tcg,
            RunStatus::Pass,
            &renamed,
        )]);
        assert_eq!(idle_table(&s).rows[0][4], "2 (ideal 3)");
        let dropped = GUEST_LAPIC_NOHZ.replace("cap_ms=", "cap=");
        let s = suite(vec![BootResult::new(
            boot(Device::Lapic, Config::NoHz),
            Accel::Tcg,
            RunStatus::Pass,
            &dropped,
        )]);
        let t = idle_table(&s);
        assert_eq!(t.rows[0][6], NONE);
        assert!(t
            .notes
            .contains(&"the `idle` line has no `cap_ms`".to_string()));
    }

    #[test]
    fn read_and_calibration_tables_come_from_the_read_cal_boot() {
        let s = lapic_suite();
        let reads = clock_read_table(&s);
        assert_eq!(reads.rows.len(), 3);
        assert_eq!(reads.rows[0], ["hpet", "200", NONE, "222", "190"]);
        assert_eq!(reads.rows[2], ["acpi_pm", "0", "80", "94", "0"]);
        assert!(reads.notes[0].contains("ratio 1.666"));
        let cal = calibration_table(&s);
        assert_eq!(cal.rows[0][3], "2596123577 (hpet-1s)");
        assert_eq!(cal.rows[0][4], "10");
        let empty = suite(Vec::new());
        assert!(clock_read_table(&empty).rows.is_empty());
        assert!(report(&empty).contains(NONE));
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
    fn the_report_names_the_kernel_relative_to_the_repository() {
        let line = "qemu-system-x86_64 -M pc -kernel /src/dynticks/target/x86_64-unknown-none/release/guest -append x";
        assert_eq!(
            repo_relative(line, Path::new("/src/dynticks")),
            "qemu-system-x86_64 -M pc -kernel target/x86_64-unknown-none/release/guest -append x"
        );
        assert_eq!(
            repo_relative(line, Path::new("/src/dynticks/")),
            repo_relative(line, Path::new("/src/dynticks"))
        );
        assert_eq!(repo_relative(line, Path::new("/")), line);
    }

    #[test]
    fn only_a_kvm_request_gets_the_linux_kvm_note() {
        let note = kvm_note(Accel::Kvm).unwrap();
        assert!(note.contains("Linux does not boot under this machine's KVM"));
        assert!(note.contains("both guests under TCG"));
        assert_eq!(kvm_note(Accel::Tcg), None);
    }
}
