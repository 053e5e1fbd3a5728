//! The in-guest test matrix of `cargo xtask test` (pure: rows, parsing of
//! the guest's `RESULT`/`CONFIG` lines, the table; tested below).
//!
//! ```text
//!   per accelerator (TCG; KVM when usable) × machine (pc, q35):
//!     tick device rows   hpet, lapic (xAPIC; under KVM also x2APIC and
//!                        TSC-deadline where the CPU offers them), pit:
//!                        clockevent=<dev> test=all
//!                        + the same with nohz=off highres=off (test=periodic,nohz)
//!     clocksource rows   clocksource=tsc|hpet|acpi_pm test=periodic,oneshot,clocksource;
//!                        clocksource=pit test=periodic,nohz,clocksource (pit-ch2 is never
//!                        valid for high-res: the tick is kept, and `nohz` checks that)
//!     fallback rows      hpet=disable / -machine hpet=off / lapic=notimer /
//!                        hpet=disable lapic=notimer: test=fallback
//!     firmware rows      -machine hpet=off -acpitable <malformed HPET table>
//!                        (base 0, I/O space, truncated, base in RAM, base
//!                        where nothing answers; crate::firmware): test=fallback
//!   per accelerator, once:
//!     no reference clock -M microvm,acpi=on,pit=off,pic=off,rtc=off (no HPET, PM timer
//!                        or PIT): under TCG (no CPUID TSC rate) the boot must fail with
//!                        exactly NO_REFERENCE_FAILURE; under KVM with the TSC rate in
//!                        CPUID 0x40000010 it boots on it, unverified (reference=none)
//! ```
//!
//! A row passes when the guest exits with pass, every `RESULT` line says
//! pass or skip, the `CONFIG` line shows the tick device (and APIC mode,
//! calibration reference) the row asked for, and the boot table says what
//! the row expects (a firmware row: the HPET table skipped or the HPET
//! refused, and why; its `fallback` test: the HPET missing); a row that
//! expects a failure passes only when the guest reports exactly that
//! bring-up failure. Under KVM a row whose device the CPU or the host does
//! not offer is a skip, with the reason; under TCG it is a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use guest::rig::result::{self, Verdict};

use crate::firmware::BogusHpet;
use crate::qemu::{Accel, Machine, RunStatus};

/// Which source's rows to run (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// HPET rows.
    Hpet,
    /// LAPIC timer rows.
    Lapic,
    /// PIT rows.
    Pit,
    /// TSC rows.
    Tsc,
    /// ACPI PM timer rows (its clocksource row).
    AcpiPm,
    /// Rows of no single source (the malformed-firmware rows).
    Other,
}

impl Source {
    /// From `--source`; `None` for `all`.
    pub fn parse(s: &str) -> Result<Option<Source>, String> {
        Ok(Some(match s {
            "hpet" => Source::Hpet,
            "lapic" => Source::Lapic,
            "pit" => Source::Pit,
            "tsc" => Source::Tsc,
            "acpi_pm" => Source::AcpiPm,
            "all" => return Ok(None),
            other => {
                return Err(format!(
                    "`--source {other}`: expected hpet, lapic, pit, tsc, acpi_pm or all"
                ))
            }
        }))
    }

    /// The `--source` value (the inverse of [`Source::parse`]); `other`,
    /// which `--source` does not take, for [`Source::Other`].
    pub fn name(self) -> &'static str {
        match self {
            Source::Hpet => "hpet",
            Source::Lapic => "lapic",
            Source::Pit => "pit",
            Source::Tsc => "tsc",
            Source::AcpiPm => "acpi_pm",
            Source::Other => "other",
        }
    }
}

/// What the CPU model of an accelerator offers (from a `test=caps` boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// x2APIC.
    pub x2apic: bool,
    /// TSC-deadline.
    pub tsc_deadline: bool,
}

/// One boot of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What the table calls it.
    pub name: String,
    /// The source it belongs to (for `--source`).
    pub source: Source,
    /// Accelerator.
    pub accel: Accel,
    /// Machine type.
    pub machine: Machine,
    /// `-cpu`, if not the accelerator's default.
    pub cpu: Option<String>,
    /// Extra machine options (`hpet=off`).
    pub machine_opts: Option<&'static str>,
    /// The guest command line.
    pub cmdline: String,
    /// The tick device the `CONFIG` line must show.
    pub expect_tick: Option<&'static str>,
    /// The APIC mode it must show.
    pub expect_apic: Option<&'static str>,
    /// A malformed HPET table QEMU adds (`-acpitable`).
    pub acpi_table: Option<BogusHpet>,
    /// Words one of the boot table's "not used:" lines must hold.
    pub expect_note: Option<&'static str>,
    /// The source `fallback` must report missing.
    pub expect_missing: Option<&'static str>,
    /// The calibration reference it must show (`none`: booted without one).
    pub expect_reference: Option<&'static str>,
    /// The boot must fail, with this `bring-up failed: …` message: a
    /// machine the guest cannot keep time on, where that failure, said
    /// exactly, is the defined outcome.
    pub expect_failure: Option<&'static str>,
    /// CPUs (`-smp`).
    pub smp: u32,
    /// Device properties (`-global`).
    pub globals: Vec<&'static str>,
}

/// The KVM CPU model without TSC-deadline.
const KVM_NO_DEADLINE: &str = "host,-arch-capabilities,-tsc-deadline";
/// The KVM CPU model without TSC-deadline and x2APIC.
const KVM_XAPIC: &str = "host,-arch-capabilities,-tsc-deadline,-x2apic";

/// The rows for one accelerator and machine.
pub fn rows(accel: Accel, machine: Machine, caps: Caps, fast: bool) -> Vec<Row> {
    let mut v = Vec::new();
    let row = |name: &str, source, cmdline: &str| Row {
        name: name.to_string(),
        source,
        accel,
        machine,
        cpu: None,
        machine_opts: None,
        cmdline: cmdline.to_string(),
        expect_tick: None,
        expect_apic: None,
        acpi_table: None,
        expect_note: None,
        expect_missing: None,
        expect_reference: None,
        expect_failure: None,
        smp: 1,
        globals: Vec::new(),
    };
    let with_variants = |v: &mut Vec<Row>, base: Row| {
        let mut periodic = base.clone();
        periodic.name = format!("{} nohz=off", base.name);
        periodic.cmdline = base
            .cmdline
            .replace("test=all", "nohz=off highres=off test=periodic,nohz");
        v.push(base);
        if !fast {
            v.push(periodic);
        }
    };
    // Tick devices.
    let mut hpet = row("hpet", Source::Hpet, "clockevent=hpet test=all");
    hpet.expect_tick = Some("hpet");
    with_variants(&mut v, hpet);
    if accel == Accel::Kvm && caps.tsc_deadline {
        let mut r = row(
            "lapic-deadline",
            Source::Lapic,
            "clockevent=lapic-deadline test=all",
        );
        r.expect_tick = Some("lapic-deadline0");
        r.expect_apic = Some(if caps.x2apic { "x2APIC" } else { "xAPIC" });
        with_variants(&mut v, r);
    }
    if accel == Accel::Kvm && caps.x2apic {
        let mut r = row("lapic x2APIC", Source::Lapic, "clockevent=lapic test=all");
        r.cpu = Some(KVM_NO_DEADLINE.to_string());
        r.expect_tick = Some("lapic0");
        r.expect_apic = Some("x2APIC");
        with_variants(&mut v, r);
    }
    let mut r = row("lapic xAPIC", Source::Lapic, "clockevent=lapic test=all");
    if accel == Accel::Kvm {
        r.cpu = Some(KVM_XAPIC.to_string());
    }
    r.expect_tick = Some("lapic0");
    r.expect_apic = Some("xAPIC");
    with_variants(&mut v, r);
    let mut pit = row("pit", Source::Pit, "clockevent=pit test=all");
    pit.expect_tick = Some("pit");
    with_variants(&mut v, pit);
    // Clocksources.
    if !fast {
        for (cs, source) in [
            ("tsc", Source::Tsc),
            ("hpet", Source::Hpet),
            ("pit", Source::Pit),
            ("acpi_pm", Source::AcpiPm),
        ] {
            // pit-ch2 is not valid for high-res (Linux's PIT clocksource
            // is not either): no one-shot timers on it; `nohz` then checks
            // that idle keeps the tick.
            let timers = if cs == "pit" { "nohz" } else { "oneshot" };
            v.push(row(
                &format!("clocksource={cs}"),
                source,
                &format!("clocksource={cs} test=periodic,{timers},clocksource"),
            ));
        }
    }
    // Fallbacks.
    v.push(row(
        "fallback hpet=disable",
        Source::Hpet,
        "hpet=disable test=fallback",
    ));
    let mut no_hpet = row("fallback -M hpet=off", Source::Hpet, "test=fallback");
    no_hpet.machine_opts = Some("hpet=off");
    v.push(no_hpet);
    v.push(row(
        "fallback lapic=notimer",
        Source::Lapic,
        "lapic=notimer test=fallback",
    ));
    let mut pit_only = row(
        "fallback to pit",
        Source::Pit,
        "hpet=disable lapic=notimer test=fallback",
    );
    pit_only.expect_tick = Some("pit");
    v.push(pit_only);
    // SMP (2 CPUs on pc, 4 on q35): every CPU the MADT lists comes up and
    // runs its own tick (`guest/src/rig/suite/smp_tick.rs`). NO_HZ and the
    // duty handover with TCG's must-verify TSC watched (its wake-ups are
    // counted), and NO_HZ again without the watchdog (`tsc=reliable`).
    let cpus = if machine == Machine::Q35 { 4 } else { 2 };
    let mut smp_rows = vec![
        ("CPUs", "test=smp,periodic,smp-periodic,smp-cross", None),
        ("NO_HZ", "test=smp-nohz,smp-duty", None),
        ("NO_HZ tsc=reliable", "tsc=reliable test=smp-nohz", None),
        ("broadcast hpet", "idle=deep test=smp-broadcast", None),
        (
            "broadcast pit",
            "idle=deep hpet=disable test=smp-broadcast",
            None,
        ),
        // No LAPIC timer: a dummy on every CPU, every tick and timer by
        // the broadcast device (Linux's lapic=notimer on SMP).
        (
            "lapic=notimer",
            "lapic=notimer test=smp,periodic,smp-periodic,smp-cross",
            None,
        ),
    ];
    if !fast {
        smp_rows.push(("nohz=off", "nohz=off highres=off test=smp-periodic", None));
    }
    if accel == Accel::Tcg && machine == Machine::Pc {
        // No ARAT in CPUID: the LAPIC timer is C3STOP by itself, as in
        // Linux (idle=deep then has nothing to clear).
        smp_rows.push(("-arat", "idle=deep test=smp-broadcast", Some("max,-arat")));
    }
    for (name, cmdline, cpu) in smp_rows {
        let mut r = row(&format!("smp {cpus} {name}"), Source::Lapic, cmdline);
        r.smp = cpus;
        r.cpu = cpu.map(str::to_string);
        v.push(r);
    }
    // Per-CPU HPET channels (FSB, Linux's hpet_msi): with the LAPIC timer
    // stopping in deep idle, comparators 2.. deliver to one CPU each and
    // replace it; no broadcast. QEMU's HPET has 3 comparators unless told
    // (`timers`, up to 32), and FSB delivery only with `msi=on`.
    let mut r = row(
        &format!("smp {cpus} hpet per-CPU"),
        Source::Hpet,
        "idle=deep test=smp-broadcast",
    );
    r.smp = cpus;
    r.globals = vec![
        "hpet.msi=on",
        if cpus == 4 {
            "hpet.timers=6"
        } else {
            "hpet.timers=4"
        },
    ];
    r.expect_tick = Some("hpet2");
    v.push(r);
    // Malformed firmware: the kernel boots without the HPET and says why.
    for case in BogusHpet::ALL {
        let mut r = row(
            &format!("firmware HPET {}", case.name()),
            Source::Other,
            "test=fallback",
        );
        r.machine_opts = Some("hpet=off");
        r.acpi_table = Some(case);
        r.expect_note = Some(case.expect_note());
        r.expect_missing = Some("hpet");
        v.push(r);
    }
    v
}

/// `-M microvm` without its PIT, 8259s and RTC: no HPET (microvm has none),
/// no ACPI PM timer (its FADT is hardware-reduced), no PIT — no clock to
/// calibrate the TSC against.
pub const MICROVM_NO_REFERENCE: &str = "acpi=on,pit=off,pic=off,rtc=off";

/// The message the guest must end with where the CPU states no TSC rate
/// either (QEMU TCG's CPU models here: CPUID's highest basic leaf is 0xD,
/// its hypervisor leaves end at 0x40000001).
pub const NO_REFERENCE_FAILURE: &str = "no reference clock to calibrate the TSC against: no HPET, no PM timer, no PIT; CPUID 0x15/0x16 and the hypervisor leaf 0x40000010 give no rate";

/// The KVM CPU model that states the TSC rate in the hypervisor leaf
/// 0x40000010 (QEMU's `vmware-cpuid-freq`, which needs an invariant TSC).
const KVM_TSC_RATE_LEAF: &str = "host,-arch-capabilities,+invtsc,vmware-cpuid-freq=on";

/// The rows of machines with no reference clock, once per accelerator:
/// under TCG the defined failure, said exactly; under KVM, where the CPU
/// can state the TSC's rate, the degraded boot on that unverified rate
/// (`reference=none`).
pub fn no_reference_rows(accel: Accel) -> Vec<Row> {
    let mut r = Row {
        name: "no reference clock".to_string(),
        source: Source::Tsc,
        accel,
        machine: Machine::Microvm,
        cpu: None,
        machine_opts: Some(MICROVM_NO_REFERENCE),
        cmdline: "test=caps".to_string(),
        expect_tick: None,
        expect_apic: None,
        acpi_table: None,
        expect_note: None,
        expect_missing: None,
        expect_reference: None,
        expect_failure: None,
        smp: 1,
        globals: Vec::new(),
    };
    match accel {
        Accel::Tcg => r.expect_failure = Some(NO_REFERENCE_FAILURE),
        Accel::Kvm => {
            r.name = "no reference, CPUID TSC rate".to_string();
            r.cpu = Some(KVM_TSC_RATE_LEAF.to_string());
            r.cmdline = "test=periodic,oneshot,nohz,irq".to_string();
            r.expect_reference = Some("none");
        }
    }
    vec![r]
}

/// Parsed `RESULT` and `CONFIG` lines of one boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The `CONFIG` fields.
    pub config: BTreeMap<String, String>,
    /// Each test's fields, in the order printed.
    pub results: Vec<(String, BTreeMap<String, String>)>,
    /// The boot table's "not used:" notes.
    pub not_used: Vec<String>,
    /// What followed `bring-up failed: `, if the boot ended there.
    pub bring_up_failure: Option<String>,
}

impl Transcript {
    /// Parses a serial transcript.
    pub fn parse(serial: &str) -> Self {
        let mut t = Transcript::default();
        for line in serial.lines() {
            if let Some(note) = line.trim_start().strip_prefix("not used: ") {
                t.not_used.push(note.to_string());
            }
            if let Some((_, why)) = line.split_once("bring-up failed: ") {
                t.bring_up_failure = Some(why.trim_end().to_string());
            }
            let Some((kind, fields)) = result::fields(line) else {
                continue;
            };
            let map: BTreeMap<String, String> = fields
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if kind == result::CONFIG {
                t.config = map;
            } else if let Some(test) = map.get("test").cloned() {
                t.results.push((test, map));
            }
        }
        t
    }

    /// The fields of test `name`.
    pub fn result(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.results.iter().find(|(t, _)| t == name).map(|(_, m)| m)
    }

    /// The verdict of test `name`.
    pub fn verdict(&self, name: &str) -> Option<Verdict> {
        self.result(name)
            .and_then(|m| m.get("verdict"))
            .and_then(|v| Verdict::from_word(v))
    }
}

/// How a row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowVerdict {
    /// Everything asked for passed.
    Pass,
    /// Something failed: what.
    Fail(String),
    /// Not available here: why.
    Skip(String),
}

impl RowVerdict {
    /// Whether it counts as a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self, RowVerdict::Fail(_))
    }
}

/// Judges one row from the guest's exit and transcript.
pub fn judge(row: &Row, passed: bool, status: &str, t: &Transcript) -> RowVerdict {
    if let Some(want) = row.expect_failure {
        return match &t.bring_up_failure {
            Some(got) if got == want && !passed && status == RunStatus::GuestFail.to_string() => {
                RowVerdict::Pass
            }
            Some(got) => RowVerdict::Fail(format!("bring-up failed with `{got}`, want `{want}`")),
            None => RowVerdict::Fail(format!("expected `bring-up failed: {want}` ({status})")),
        };
    }
    let tick = t.config.get("tick").map(String::as_str);
    let apic = t.config.get("apic").map(String::as_str);
    let missing_device = t.config.get("clockevent").is_some_and(|c| c == "missing")
        || row.expect_tick.is_some_and(|e| tick != Some(e))
        || row.expect_apic.is_some_and(|e| apic != Some(e))
        || row
            .expect_reference
            .is_some_and(|e| t.config.get("reference").map(String::as_str) != Some(e));
    if missing_device && !t.config.is_empty() {
        let why = format!(
            "asked for {} ({}), got {} ({}){}",
            row.expect_tick.unwrap_or("?"),
            row.expect_apic.unwrap_or("-"),
            tick.unwrap_or("?"),
            apic.unwrap_or("?"),
            t.not_used
                .iter()
                .find(|n| n.starts_with("lapic") || n.starts_with("hpet") || n.starts_with("pit"))
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        return if row.accel == Accel::Kvm {
            RowVerdict::Skip(format!("not offered under KVM here: {why}"))
        } else {
            RowVerdict::Fail(why)
        };
    }
    if let Some(note) = row.expect_note {
        if !t.not_used.iter().any(|n| n.contains(note)) {
            return RowVerdict::Fail(format!("the boot table does not say \"{note}\""));
        }
    }
    if let Some(source) = row.expect_missing {
        let missing = t.result("fallback").and_then(|m| m.get("missing"));
        if missing.map(String::as_str) != Some(source) {
            return RowVerdict::Fail(format!(
                "fallback found missing {}, not {source}",
                missing.map_or("nothing", String::as_str)
            ));
        }
    }
    let failed: Vec<&str> = t
        .results
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !matches!(t.verdict(n), Some(Verdict::Pass | Verdict::Skip)))
        .collect();
    if !failed.is_empty() {
        return RowVerdict::Fail(format!("{} failed", failed.join(", ")));
    }
    if t.results.is_empty() {
        return RowVerdict::Fail(format!("no RESULT line ({status})"));
    }
    if !passed {
        return RowVerdict::Fail(status.to_string());
    }
    RowVerdict::Pass
}

/// The table's test columns.
pub const COLUMNS: [&str; 5] = ["periodic", "oneshot", "nohz", "clocksource", "fallback"];

/// One cell: verdict and the test's figures.
pub fn cell(t: &Transcript, test: &str) -> String {
    let Some(m) = t.result(test) else {
        return "-".to_string();
    };
    let g = |k: &str| m.get(k).map(String::as_str).unwrap_or("?");
    let v = match g("verdict") {
        "pass" => "ok",
        "skip" => "skip",
        _ => "FAIL",
    };
    if g("verdict") == "skip" {
        return "skip".to_string();
    }
    // Ticks lost in delivery gaps (guest::rig::expect::TickAccount), if any.
    let lost = || {
        m.get("lost")
            .filter(|l| *l != "0")
            .map(|l| format!("+{l}lost"))
            .unwrap_or_default()
    };
    let figures = match test {
        "periodic" => format!("{}{}/{}", g("ticks"), lost(), g("expected")),
        "oneshot" => format!(
            "{}/{}/{}us",
            g("lat_p50_us"),
            g("lat_p99_us"),
            g("lat_max_us")
        ),
        "nohz" if m.contains_key("allow") => {
            let stale = m.get("stale").filter(|s| *s != "0");
            format!(
                "{}/{}{}",
                g("interrupts"),
                g("expected"),
                stale.map(|s| format!("+{s}st")).unwrap_or_default()
            )
        }
        "nohz" => format!("{}{} ticks", g("ticks"), lost()),
        "clocksource" => {
            let tsc = m
                .get("tsc_ppm")
                .map(|p| format!(" tsc{p}ppm"))
                .unwrap_or_default();
            format!("{}back{tsc}", g("backwards"))
        }
        "fallback" => format!("{} {}t{}", g("source"), g("ticks"), lost()),
        _ => String::new(),
    };
    format!("{v} {figures}")
}

/// The whole table, one line per row.
pub fn table(rows: &[(Row, Transcript, RowVerdict, f64)]) -> String {
    let mut out = String::new();
    let widths = [5, 7, 28, 16, 15, 14, 22, 16, 22, 16];
    let header = [
        "accel",
        "M",
        "configuration",
        "tick",
        "mode",
        "periodic",
        "oneshot p50/p99/max",
        "nohz irqs/exp",
        "clocksource",
        "fallback",
    ];
    let line = |cols: &[String]| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(s, "{c:<w$} ");
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for (row, t, v, secs) in rows {
        let mut cols = vec![
            row.accel.as_str().to_string(),
            row.machine.as_str().to_string(),
            row.name.clone(),
            t.config.get("tick").cloned().unwrap_or_else(|| "?".into()),
            t.config.get("mode").cloned().unwrap_or_else(|| "?".into()),
        ];
        if matches!(v, RowVerdict::Skip(_)) {
            cols.extend(COLUMNS.iter().map(|_| "-".to_string()));
        } else {
            cols.extend(COLUMNS.iter().map(|c| cell(t, c)));
        }
        let verdict = match v {
            RowVerdict::Pass => format!("PASS {secs:.1}s"),
            RowVerdict::Fail(why) => format!("FAIL {secs:.1}s: {why}"),
            RowVerdict::Skip(why) => format!("skip: {why}"),
        };
        let _ = writeln!(out, "{}  {verdict}", line(&cols));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "\
dynticks guest
  not used: lapic timer TMICT modes: calibration too imprecise: ±10029 ppm
CONFIG accel=tcg clocksource=tsc tick=hpet mode=high-res+NO_HZ hz=250 apic=xAPIC clockevent=hpet
RESULT test=periodic source=hpet ticks=247 expected=250.925 lost=4 gaps=2 verdict=pass
RESULT test=nohz source=hpet interrupts=6 expected=6 allow=0 stale=0 verdict=pass
RESULT test=oneshot source=hpet lat_p50_us=59.1 lat_p99_us=744.4 lat_max_us=1359.8 verdict=fail
";

    fn row(accel: Accel) -> Row {
        rows(accel, Machine::Pc, Caps::default(), false)
            .into_iter()
            .find(|r| r.name == "hpet")
            .unwrap()
    }

    #[test]
    fn a_transcript_parses_into_config_results_and_notes() {
        let t = Transcript::parse(SERIAL);
        assert_eq!(t.config["tick"], "hpet");
        assert_eq!(t.results.len(), 3);
        assert_eq!(t.verdict("periodic"), Some(Verdict::Pass));
        assert_eq!(t.verdict("oneshot"), Some(Verdict::Fail));
        assert_eq!(t.not_used.len(), 1);
        assert_eq!(cell(&t, "periodic"), "ok 247+4lost/250.925");
        assert_eq!(cell(&t, "nohz"), "ok 6/6");
        assert_eq!(cell(&t, "oneshot"), "FAIL 59.1/744.4/1359.8us");
        assert_eq!(cell(&t, "fallback"), "-");
    }

    #[test]
    fn a_failed_test_fails_the_row_even_if_qemu_passed() {
        let t = Transcript::parse(SERIAL);
        assert_eq!(
            judge(&row(Accel::Tcg), true, "pass", &t),
            RowVerdict::Fail("oneshot failed".into())
        );
        let ok = Transcript::parse(&SERIAL.replace("verdict=fail", "verdict=pass"));
        assert_eq!(judge(&row(Accel::Tcg), true, "pass", &ok), RowVerdict::Pass);
        assert!(judge(&row(Accel::Tcg), false, "timed out", &ok).is_fail());
        assert!(judge(&row(Accel::Tcg), true, "pass", &Transcript::default()).is_fail());
    }

    #[test]
    fn a_missing_device_fails_under_tcg_and_skips_under_kvm() {
        let t = Transcript::parse(&SERIAL.replace("tick=hpet", "tick=lapic0"));
        assert!(judge(&row(Accel::Tcg), true, "pass", &t).is_fail());
        assert!(matches!(
            judge(&row(Accel::Kvm), true, "pass", &t),
            RowVerdict::Skip(_)
        ));
    }

    #[test]
    fn rows_follow_the_cpu_model_and_the_filters() {
        let tcg = rows(Accel::Tcg, Machine::Pc, Caps::default(), false);
        assert!(tcg
            .iter()
            .all(|r| !r.name.contains("x2APIC") && !r.name.contains("deadline")));
        assert!(tcg.iter().any(|r| r.name == "lapic xAPIC nohz=off"));
        let kvm = rows(
            Accel::Kvm,
            Machine::Q35,
            Caps {
                x2apic: true,
                tsc_deadline: true,
            },
            false,
        );
        let x2 = kvm.iter().find(|r| r.name == "lapic x2APIC").unwrap();
        assert_eq!(x2.cpu.as_deref(), Some(KVM_NO_DEADLINE));
        assert!(kvm.iter().any(|r| r.name == "lapic-deadline"));
        let fast = rows(Accel::Tcg, Machine::Pc, Caps::default(), true);
        assert!(fast.len() < tcg.len());
        assert!(fast.iter().all(|r| !r.name.contains("nohz=off")));
        assert!(fast.iter().any(|r| r.name.starts_with("fallback")));
        assert_eq!(Source::parse("all"), Ok(None));
        assert_eq!(Source::parse("hpet"), Ok(Some(Source::Hpet)));
        assert!(Source::parse("rtc").is_err());
        // The ACPI PM timer's rows are its clocksource row, once per
        // machine; --fast drops it.
        assert_eq!(Source::parse("acpi_pm"), Ok(Some(Source::AcpiPm)));
        assert_eq!(Source::AcpiPm.name(), "acpi_pm");
        let pm: Vec<&Row> = tcg.iter().filter(|r| r.source == Source::AcpiPm).collect();
        assert_eq!(pm.len(), 1);
        assert_eq!(
            pm[0].cmdline,
            "clocksource=acpi_pm test=periodic,oneshot,clocksource"
        );
        assert!(fast.iter().all(|r| r.source != Source::AcpiPm));
    }

    const FIRMWARE_SERIAL: &str = "\
          not used: ACPI HPET at 0x7fe1a12: event timer block at address 0: skipped
  not used: hpet: the ACPI HPET table was skipped (firmware)
CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250 apic=xAPIC
RESULT test=fallback source=lapic0 missing=hpet why=ACPI-HPET-table-skipped verdict=pass
";

    #[test]
    fn a_firmware_row_needs_the_boot_table_to_say_why_and_the_hpet_missing() {
        let tcg = rows(Accel::Tcg, Machine::Q35, Caps::default(), true);
        let firmware: Vec<&Row> = tcg.iter().filter(|r| r.acpi_table.is_some()).collect();
        assert_eq!(firmware.len(), BogusHpet::ALL.len());
        assert!(firmware
            .iter()
            .all(|r| r.machine_opts == Some("hpet=off") && r.source == Source::Other));
        let base0 = firmware
            .iter()
            .find(|r| r.acpi_table == Some(BogusHpet::BaseZero))
            .unwrap();
        let t = Transcript::parse(FIRMWARE_SERIAL);
        assert_eq!(judge(base0, true, "pass", &t), RowVerdict::Pass);
        // Without the note, or with the HPET not missing, the row fails.
        let quiet = Transcript::parse(&FIRMWARE_SERIAL.replace("address 0", "somewhere"));
        assert!(judge(base0, true, "pass", &quiet).is_fail());
        let present = Transcript::parse(&FIRMWARE_SERIAL.replace("missing=hpet", "missing=none"));
        assert_eq!(
            judge(base0, true, "pass", &present),
            RowVerdict::Fail("fallback found missing none, not hpet".into())
        );
    }

    /// pit-ch2 is never valid for high resolution (Linux's PIT clocksource
    /// is not either): its row checks that the tick is kept, not one-shot
    /// timers.
    #[test]
    fn the_pit_clocksource_row_checks_the_kept_tick_not_oneshot_timers() {
        let v = rows(Accel::Tcg, Machine::Pc, Caps::default(), false);
        let pit = v.iter().find(|r| r.name == "clocksource=pit").unwrap();
        assert_eq!(
            pit.cmdline,
            "clocksource=pit test=periodic,nohz,clocksource"
        );
        let tsc = v.iter().find(|r| r.name == "clocksource=tsc").unwrap();
        assert_eq!(
            tsc.cmdline,
            "clocksource=tsc test=periodic,oneshot,clocksource"
        );
    }

    /// The defined outcome of a machine with no reference clock under TCG:
    /// the exact failure, nothing else.
    #[test]
    fn the_no_reference_row_passes_only_on_the_exact_failure() {
        let row = &no_reference_rows(Accel::Tcg)[0];
        assert_eq!(row.machine, Machine::Microvm);
        let fail = RunStatus::GuestFail.to_string();
        let serial = |why: &str| {
            Transcript::parse(&format!(
                "dynticks guest\n[ERROR guest::kernel] bring-up failed: {why}\n"
            ))
        };
        let exact = serial(NO_REFERENCE_FAILURE);
        assert_eq!(judge(row, false, &fail, &exact), RowVerdict::Pass);
        // The message this machine got before.
        assert!(judge(row, false, &fail, &serial("no clocksource counts")).is_fail());
        assert!(judge(row, false, "FAIL: timed out", &exact).is_fail());
        assert!(judge(row, true, "pass", &Transcript::default()).is_fail());
        // Under KVM: a boot on the CPUID rate, with no reference.
        let kvm = &no_reference_rows(Accel::Kvm)[0];
        let booted = Transcript::parse(&SERIAL.replace("clockevent=hpet", "reference=none"));
        let ok = Transcript::parse(&booted_ok(&booted));
        assert_eq!(judge(kvm, true, "pass", &ok), RowVerdict::Pass);
        let with_ref = Transcript::parse(&SERIAL.replace("verdict=fail", "verdict=pass"));
        assert!(matches!(
            judge(kvm, true, "pass", &with_ref),
            RowVerdict::Skip(_)
        ));
    }

    /// `t`'s lines with every verdict a pass.
    fn booted_ok(t: &Transcript) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "CONFIG {}",
            t.config
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (name, _) in &t.results {
            let _ = writeln!(s, "RESULT test={name} verdict=pass");
        }
        s
    }

    #[test]
    fn the_table_has_a_line_per_row() {
        let t = Transcript::parse(SERIAL);
        let s = table(&[(row(Accel::Tcg), t.clone(), RowVerdict::Pass, 3.2)]);
        assert_eq!(s.lines().count(), 2);
        assert!(s.contains("PASS 3.2s"), "{s}");
    }
}
