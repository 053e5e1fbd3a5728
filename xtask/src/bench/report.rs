//! The tables of a suite, one per benchmark (each figure a cell, a missing
//! one a `—` and a note), and the [`report`] that renders them all.

use std::fmt::Write as _;

use super::lines::{find, BenchLine, Found, NONE};
use super::plan::{Config, Device, Suite, SLOW_VCPU_SHIFTS};
use super::table::Table;
use crate::qemu::Accel;

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

/// Timers added on CPU 0 for the other CPUs (`bench-cross`, NO_HZ boots;
/// with `--smp` > 1 only).
pub fn cross_table(s: &Suite) -> Table {
    let mut t = Table::new(
        "Cross-CPU timers: 1000 added on CPU 0, fired on CPUs 1..N−1 (lateness at the callback, µs)",
        &["source", "cpus", "p50", "p99", "max", "kicks sent", "kicks taken"],
        1,
    );
    for &d in &s.devices {
        let c = s.find(d, Config::NoHz, "cross", &[]);
        let row = vec![
            d.name().to_string(),
            t.cell(&c, "cpus"),
            t.cell(&c, "late_p50_us"),
            t.cell(&c, "late_p99_us"),
            t.cell(&c, "late_max_us"),
            t.cell(&c, "kicks_sent"),
            t.cell(&c, "kicks_taken"),
        ];
        t.rows.push(row);
    }
    t
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
    let cross = (s.smp > 1).then(|| cross_table(s));
    for t in [idle_table(s)]
        .into_iter()
        .chain(cross)
        .chain([lateness_table(s)])
        .chain([
            slow_vcpu_table(s),
            program_table(s),
            nohz_table(s),
            clock_read_table(s),
            calibration_table(s),
        ])
    {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::{boot, lapic_suite, suite, GUEST_LAPIC_NOHZ};
    use crate::bench::BootResult;
    use crate::qemu::RunStatus;

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
}
