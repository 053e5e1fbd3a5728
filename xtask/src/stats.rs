//! `cargo xtask bench --repeat N`: the boots the comparison with Linux
//! reads, made N times, and each figure as its median and range.
//!
//! On a shared host two runs of the same boot differ by tens of per cent,
//! so one run of each kernel can put either ahead. The runs alternate, and
//! a ratio is taken within a run, where both kernels met the same host:
//!
//! ```text
//!   run 1:  [the rest of the suite, once]  ours ×4  Linux ×3
//!   run 2:                                 ours ×4  Linux ×3
//!   …                                      ours = lapic NO_HZ, nohz=off,
//!   run N:                                 ours ×4  Linux ×3       tsc=reliable, read-cal
//!
//!   per run i: bench::comparisons ──► figure_i(Linux), figure_i(ours), ratio_i = ours_i / Linux_i
//!   per row:   median (min–max) of each, "better in every run" over the runs ──► median_table
//! ```
//!
//! The median of an even count is the mean of the two middle values. A
//! figure missing from a run (a failed boot, a key not printed) is a `—`
//! in that run's column of the per-run tables and is left out of the
//! median and range, whose cell then says over how many runs they are;
//! a note says which run lacks it and why.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::bench::{
    self, Better, Boot, Comparison, Config, Device, LinuxRun, LinuxVariant, Suite, Table, HZ, NONE,
    RATIO_NOTE,
};
use crate::cli::BenchArgs;
use crate::Result;

/// How far from [`HZ`] the `nohz=off` idle rate may be in a run, as a
/// fraction of HZ, for the row's verdict to be yes.
pub const HZ_TOLERANCE: f64 = 0.01;

/// Which run of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunNo {
    /// This run, from 1.
    pub i: u32,
    /// How many runs there are.
    pub of: u32,
}

impl RunNo {
    /// What a progress line starts with: `run 2/5 `, or nothing for a
    /// single run.
    pub fn prefix(self) -> String {
        if self.of > 1 {
            format!("run {}/{} ", self.i, self.of)
        } else {
            String::new()
        }
    }

    /// What a log file's name ends with before `.log`: nothing for run 1
    /// (the name a single run has), `-run<i>` for the others.
    pub fn suffix(self) -> String {
        if self.i > 1 {
            format!("-run{}", self.i)
        } else {
            String::new()
        }
    }
}

/// Whether the comparison with Linux reads `boot`: the LAPIC timer's
/// NO_HZ, `nohz=off` and `tsc=reliable` boots, and the read/calibration
/// boot. These are made in every run; the others once.
pub fn compared(boot: &Boot) -> bool {
    match boot.config {
        Config::NoHz | Config::Periodic | Config::Reliable => boot.device == Device::Lapic,
        Config::ReadCal => true,
        Config::SlowVcpu(_) => false,
    }
}

/// One run: our compared boots (in run 1 the whole suite) and, with
/// `--vs-linux`, Linux's three variants.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// Which run.
    pub run: RunNo,
    /// Our boots of this run.
    pub ours: Suite,
    /// Linux's runs (none without `--vs-linux`).
    pub linux: Vec<LinuxRun>,
    /// Seconds the boots made only in run 1 took (0 in the others).
    pub once_secs: f64,
    /// Seconds our compared boots took.
    pub ours_secs: f64,
    /// Seconds Linux's three runs took.
    pub linux_secs: f64,
}

/// Makes `repeat` runs of `suite` (started, no boots yet) from `plan`: run 1
/// boots the whole plan, those [`compared`] last, the other runs only
/// those; with `linux`, Linux's three variants follow our boots in every
/// run. Fails only where a boot could not be made at all (QEMU missing, a
/// log not written).
pub fn run_rounds(
    kernel: &Path,
    suite: Suite,
    plan: Vec<Boot>,
    dir: &Path,
    repeat: u32,
    linux: bool,
) -> Result<Vec<Round>> {
    let (compared, once): (Vec<Boot>, Vec<Boot>) = plan.into_iter().partition(compared);
    let mut empty = suite.clone();
    empty.notes.clear();
    let mut first = Some(suite);
    let linux_machine = bench::linux_machine(kernel, empty.machine);
    let repeat = repeat.max(1);
    let mut rounds = Vec::new();
    for i in 1..=repeat {
        let run = RunNo { i, of: repeat };
        let mut ours = first.take().unwrap_or_else(|| empty.clone());
        let started = Instant::now();
        if i == 1 {
            bench::run_boots(kernel, &mut ours, &once, dir, run)?;
        }
        let once_secs = started.elapsed().as_secs_f64();
        bench::run_boots(kernel, &mut ours, &compared, dir, run)?;
        let ours_secs = started.elapsed().as_secs_f64() - once_secs;
        let started = Instant::now();
        let linux: Vec<LinuxRun> = if linux {
            LinuxVariant::ALL
                .into_iter()
                .map(|v| {
                    let (cpu, memory) = (linux_machine.0.as_str(), linux_machine.1);
                    bench::run_linux(v, empty.machine, (cpu, memory, empty.smp), dir, run)
                })
                .collect()
        } else {
            Vec::new()
        };
        let linux_secs = started.elapsed().as_secs_f64();
        for r in &linux {
            if let Some(e) = &r.error {
                println!("{}Linux {} failed: {e}", run.prefix(), r.variant.tag());
            }
        }
        let round = Round {
            run,
            ours,
            linux,
            once_secs,
            ours_secs,
            linux_secs,
        };
        if repeat > 1 {
            println!("{}took {}", run.prefix(), took(&round));
        }
        rounds.push(round);
    }
    Ok(rounds)
}

/// How long a run took, in words.
fn took(r: &Round) -> String {
    let mut s = format!("dynticks {:.0} s", r.ours_secs);
    if r.once_secs >= 0.5 {
        let _ = write!(s, " (+ {:.0} s, the boots made once)", r.once_secs);
    }
    if !r.linux.is_empty() {
        let _ = write!(s, ", Linux {:.0} s", r.linux_secs);
    }
    s
}

// ---- statistics -------------------------------------------------------------------

/// The median of `xs`: the middle value, or for an even count the mean of
/// the two middle values; `None` for none. Values that are not finite are
/// left out.
pub fn median(xs: &[f64]) -> Option<f64> {
    let s = sorted(xs);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// The lowest and highest of `xs` (finite values only).
pub fn min_max(xs: &[f64]) -> Option<(f64, f64)> {
    let s = sorted(xs);
    Some((*s.first()?, *s.last()?))
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// Whether dynticks is better in every run: for [`Better::Lower`], every
/// ratio (ours / Linux, unrounded) below 1; for [`Better::AtHz`], each of
/// our rates within [`HZ_TOLERANCE`] of [`HZ`] times the CPUs. `yes`, or `no (run 2)`
/// naming the runs that are not; over the runs that have the figures,
/// saying so (`yes (4 of 5 runs)`) if some lack them; [`NONE`] if all do.
pub fn verdict(better: Better, ours: &[Option<f64>], ratios: &[Option<f64>]) -> String {
    let judged: Vec<(usize, bool)> = match better {
        Better::Lower => ratios
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i + 1, r < 1.0)))
            .collect(),
        Better::AtHz(cpus) => {
            let hz = f64::from(HZ * cpus.max(1));
            ours.iter()
                .enumerate()
                .filter_map(|(i, x)| x.map(|x| (i + 1, (x - hz).abs() <= hz * HZ_TOLERANCE)))
                .collect()
        }
    };
    if judged.is_empty() {
        return NONE.to_string();
    }
    let not: Vec<usize> = judged.iter().filter(|j| !j.1).map(|j| j.0).collect();
    let mut why = Vec::new();
    if !not.is_empty() {
        why.push(runs_text(&not));
    }
    let total = ratios.len().max(ours.len());
    if judged.len() < total {
        why.push(format!("{} of {total} runs", judged.len()));
    }
    let mut s = if not.is_empty() { "yes" } else { "no" }.to_string();
    if !why.is_empty() {
        let _ = write!(s, " ({})", why.join("; "));
    }
    s
}

/// `run 3` or `runs 2, 4` (runs counted from 1).
fn runs_text(runs: &[usize]) -> String {
    let list: Vec<String> = runs.iter().map(usize::to_string).collect();
    match runs {
        [_] => format!("run {}", list[0]),
        _ => format!("runs {}", list.join(", ")),
    }
}

/// A figure of one run: its value, and its text as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The number.
    pub x: f64,
    /// As printed.
    pub text: String,
}

impl Value {
    /// `text` as a finite number, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        let x = text.parse::<f64>().ok().filter(|x| x.is_finite())?;
        Some(Value {
            x,
            text: text.to_string(),
        })
    }
}

/// Digits after the point in a figure as printed.
fn decimals(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, f)| {
        f.chars().take_while(char::is_ascii_digit).count()
    })
}

/// `median (min–max)` of the runs' figures, each as printed; the median
/// of an even count (a mean) with one digit more than the figures have
/// where it needs it. With some runs lacking the figure the cell says over
/// how many it is (`; 4 of 5 runs`); [`NONE`] if all do.
pub fn figure_cell(values: &[Option<Value>]) -> String {
    let mut present: Vec<&Value> = values.iter().flatten().collect();
    present.sort_by(|a, b| a.x.total_cmp(&b.x));
    let n = present.len();
    let (Some(lo), Some(hi)) = (present.first(), present.last()) else {
        return NONE.to_string();
    };
    let median = if n % 2 == 1 {
        present[n / 2].text.clone()
    } else {
        let (a, b) = (present[n / 2 - 1], present[n / 2]);
        let d = decimals(&a.text).max(decimals(&b.text));
        let mut s = format!("{:.*}", d + 1, (a.x + b.x) / 2.0);
        if s.ends_with('0') {
            s.pop();
            if s.ends_with('.') {
                s.pop();
            }
        }
        s
    };
    spread_cell(median, (&lo.text, &hi.text), n, values.len())
}

/// `median (min–max)` of the runs' ratios, two decimals each.
pub fn ratio_cell(ratios: &[Option<f64>]) -> String {
    let present: Vec<f64> = ratios.iter().flatten().copied().collect();
    match (median(&present), min_max(&present)) {
        (Some(m), Some((lo, hi))) => spread_cell(
            format!("{m:.2}"),
            (&format!("{lo:.2}"), &format!("{hi:.2}")),
            present.len(),
            ratios.len(),
        ),
        _ => NONE.to_string(),
    }
}

/// `median (lo–hi; n of total runs)`, the range only if there are two or
/// more runs, the count only if some lack the figure.
fn spread_cell(median: String, (lo, hi): (&str, &str), n: usize, total: usize) -> String {
    let mut parts = Vec::new();
    if n > 1 {
        parts.push(format!("{lo}–{hi}"));
    }
    if n < total {
        parts.push(format!("{n} of {total} runs"));
    }
    if parts.is_empty() {
        median
    } else {
        format!("{median} ({})", parts.join("; "))
    }
}

// ---- tables -----------------------------------------------------------------------

/// Notes gathered over runs: each once, with the runs it holds for.
#[derive(Debug, Default)]
struct RunNotes {
    notes: Vec<(String, Vec<usize>)>,
}

impl RunNotes {
    fn add(&mut self, note: &str, run: usize) {
        match self.notes.iter_mut().find(|(n, _)| n == note) {
            Some((_, runs)) if !runs.contains(&run) => runs.push(run),
            Some(_) => {}
            None => self.notes.push((note.to_string(), vec![run])),
        }
    }

    /// Into `t`'s notes: `run 3: …`, `runs 2, 4: …`, or without a prefix
    /// when it holds for every one of `total` runs.
    fn into_table(self, t: &mut Table, total: usize) {
        for (note, runs) in self.notes {
            let text = if runs.len() == total {
                note
            } else {
                format!("{}: {note}", runs_text(&runs))
            };
            if !t.notes.contains(&text) {
                t.notes.push(text);
            }
        }
    }
}

/// Whether some runs have the figure and some do not.
fn some_missing<T>(runs: &[Option<T>]) -> bool {
    runs.iter().any(Option::is_some) && runs.iter().any(Option::is_none)
}

/// One figure of each run as a [`Value`], noting why a run has none.
fn values(
    runs: &[&Comparison],
    pick: impl Fn(&Comparison) -> &bench::Figure,
    notes: &mut RunNotes,
) -> Vec<Option<Value>> {
    runs.iter()
        .enumerate()
        .map(|(i, c)| match pick(c) {
            Ok(text) => {
                let v = Value::parse(text);
                if v.is_none() {
                    notes.add(&format!("{}: `{text}` is not a number", c.metric), i + 1);
                }
                v
            }
            Err(why) => {
                notes.add(why, i + 1);
                None
            }
        })
        .collect()
}

/// The comparison rows of every run, row by row: row `j` of each run (a
/// run without it, which [`bench::comparisons`] never makes, is left out).
fn by_row(runs: &[Vec<Comparison>]) -> Vec<Vec<&Comparison>> {
    let rows = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..rows)
        .map(|j| runs.iter().filter_map(|r| r.get(j)).collect())
        .collect()
}

/// The comparison over `runs` (each [`bench::comparisons`] of one run):
/// each figure and ratio as median (min–max), and whether dynticks is
/// better in every run ([`verdict`]). Without Linux (`with_linux` false)
/// only our figures.
pub fn median_table(runs: &[Vec<Comparison>], with_linux: bool) -> Table {
    let n = runs.len();
    let (title, header): (String, &[&str]) = if with_linux {
        (
            format!(
                "Linux 6.1 vs dynticks, same QEMU, {n} run{} alternating: median (min–max); \
                 ratio = dynticks / Linux within a run",
                if n == 1 { "" } else { "s" }
            ),
            &[
                "metric",
                "Linux",
                "dynticks",
                "ratio",
                "better",
                "better in every run",
            ],
        )
    } else {
        (
            format!("dynticks, the figures compared with Linux, {n} runs: median (min–max)"),
            &["metric", "dynticks"],
        )
    };
    let mut t = Table {
        title,
        header: header.iter().map(|s| s.to_string()).collect(),
        labels: 1,
        trailing_labels: if with_linux { 2 } else { 0 },
        ..Table::default()
    };
    let mut notes = RunNotes::default();
    let mut partial = false;
    for row in by_row(runs) {
        let Some(first) = row.first() else { continue };
        let ours = values(&row, |c| &c.ours, &mut notes);
        let mut ours_cell = figure_cell(&ours);
        if row.iter().any(|c| c.rdtsc_timed) {
            ours_cell.push_str(", rdtsc-timed");
        }
        for (i, c) in row.iter().enumerate() {
            if let Some(note) = &c.note {
                notes.add(note, i + 1);
            }
        }
        partial |= some_missing(&ours);
        if !with_linux {
            t.rows.push(vec![first.metric.clone(), ours_cell]);
            continue;
        }
        let linux = values(&row, |c| &c.linux, &mut notes);
        let ratios: Vec<Option<f64>> = row.iter().map(|c| c.ratio()).collect();
        partial |= some_missing(&linux) || some_missing(&ratios);
        let ours_x: Vec<Option<f64>> = ours.iter().map(|v| v.as_ref().map(|v| v.x)).collect();
        t.rows.push(vec![
            first.metric.clone(),
            figure_cell(&linux),
            ours_cell,
            ratio_cell(&ratios),
            first.better.label(),
            verdict(first.better, &ours_x, &ratios),
        ]);
    }
    notes.into_table(&mut t, n);
    if partial {
        t.notes.push(
            "a run without a figure (its reason above) is a `—` in the per-run tables; \
             the median and range are over the runs that have it, and the cell says how many"
                .into(),
        );
    }
    t.notes.push(
        "median: the middle run's figure, or for an even number of runs the mean of \
         the two middle ones; (min–max): the lowest and the highest run"
            .into(),
    );
    if with_linux {
        t.notes.push(format!(
            "{RATIO_NOTE}; each ratio is one run of ours over the Linux run that followed it, \
             and its median and range are over those ratios (not the medians' ratio)"
        ));
        t.notes.push(format!(
            "better in every run: `lower` rows, every run's ratio (unrounded) below 1; the \
             nohz=off row, dynticks within {}% of HZ ({HZ}/s) in every run; `no` names the \
             runs that are not",
            HZ_TOLERANCE * 100.0
        ));
    }
    t
}

/// One figure per run and row: metric × run 1 … run N.
pub fn per_run_table(
    title: &str,
    runs: &[Vec<Comparison>],
    cell: impl Fn(&Comparison) -> String,
) -> Table {
    let mut header = vec!["metric".to_string()];
    header.extend((1..=runs.len()).map(|i| format!("run {i}")));
    let mut t = Table {
        title: title.to_string(),
        header,
        labels: 1,
        ..Table::default()
    };
    for row in by_row(runs) {
        let Some(first) = row.first() else { continue };
        let mut r = vec![first.metric.clone()];
        r.extend(row.iter().map(|c| cell(c)));
        t.rows.push(r);
    }
    t
}

/// A figure as printed, or [`NONE`].
fn printed(f: &bench::Figure) -> String {
    f.as_ref().map_or(NONE.to_string(), String::clone)
}

/// The per-run figures behind [`median_table`]: ours, and with Linux
/// Linux's and the ratios.
pub fn per_run_tables(runs: &[Vec<Comparison>], with_linux: bool) -> String {
    let mut tables = Vec::new();
    if with_linux {
        tables.push(per_run_table("Per run: Linux", runs, |c| printed(&c.linux)));
    }
    tables.push(per_run_table("Per run: dynticks", runs, |c| {
        let mut s = printed(&c.ours);
        if c.rdtsc_timed && c.ours.is_ok() {
            s.push_str(" (rdtsc-timed)");
        }
        s
    }));
    if with_linux {
        tables.push(per_run_table(
            "Per run: ratio dynticks / Linux",
            runs,
            |c| c.ratio().map_or(NONE.to_string(), |r| format!("{r:.2}")),
        ));
    }
    let mut out = String::new();
    for t in tables {
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// The most the kernel's clock read may cost against the bare `rdtsc` +
/// multiply-shift on the TSC: 1.2×, the issue's target for the ordinary
/// read path (`guest::embed::kernel::now`).
pub const READ_PATH_BOUND: f64 = 1.2;

/// One figure of our own per run: `key` of the line of `group` matching
/// `filter` in the boot of `device` in `config` (`None`: missing).
fn ours_figure(
    s: &Suite,
    config: Config,
    group: &str,
    filter: &[(&str, &str)],
    key: &str,
) -> Option<f64> {
    let line = if config == Config::ReadCal {
        bench::find(bench::read_cal_lines(s).ok()?, group, filter)
    } else {
        s.find(Device::Lapic, config, group, filter)
    };
    line.ok()?.get(key)?.parse().ok()
}

/// `median (min–max)` of the runs' values, with how many runs had it
/// when some did not.
fn spread(values: &[Option<f64>]) -> String {
    let have: Vec<f64> = values.iter().flatten().copied().collect();
    match (median(&have), min_max(&have)) {
        (Some(m), Some((lo, hi))) => {
            let runs = if have.len() < values.len() {
                format!("; {} of {} runs", have.len(), values.len())
            } else {
                String::new()
            };
            format!("{} ({}–{}{runs})", short(m), short(lo), short(hi))
        }
        _ => NONE.to_string(),
    }
}

/// `x` to at most three decimals, without trailing zeros (`102.9`, `1.02`,
/// `30`), as the guest prints its figures.
fn short(x: f64) -> String {
    let s = format!("{x:.3}");
    match s.split_once('.') {
        Some((int, frac)) => match frac.trim_end_matches('0') {
            "" => int.to_string(),
            f => format!("{int}.{f}"),
        },
        None => s,
    }
}

/// Our figures that have no Linux counterpart, per run: the clock read
/// path against the bare `rdtsc` + multiply-shift (its ratio ≤
/// [`READ_PATH_BOUND`] in every run?), and where a resume's lateness goes
/// (advance off, lapic NO_HZ): QEMU's delivery to our handler's entry,
/// our handler, our way back to the waiter.
pub fn ours_table(rounds: &[Round]) -> Table {
    let mut t = bench::Table::new(
        "dynticks alone: the clock read path and the parts of a wake-up (median (min–max) over runs)",
        &["figure", "value", "in every run"],
        1,
    );
    t.trailing_labels = 1;
    let per_run = |config: Config, group: &str, filter: &[(&str, &str)], key: &str| {
        rounds
            .iter()
            .map(|r| ours_figure(&r.ours, config, group, filter, key))
            .collect::<Vec<_>>()
    };
    let ratio = per_run(Config::ReadCal, "clock_read_ratio", &[], "ratio");
    let within = if ratio.iter().all(Option::is_some) && !ratio.is_empty() {
        let bad: Vec<usize> = ratio
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some_and(|r| r > READ_PATH_BOUND))
            .map(|(i, _)| i + 1)
            .collect();
        if bad.is_empty() {
            format!("≤ {READ_PATH_BOUND}×: yes")
        } else {
            format!("≤ {READ_PATH_BOUND}×: no ({})", runs_text(&bad))
        }
    } else {
        format!("≤ {READ_PATH_BOUND}×: not known (a run lacks it)")
    };
    for (label, key) in [
        (
            "clock read median ns, tsc, kernel::now (lock-free, rdtsc inline)",
            "tsc_median_ns",
        ),
        (
            "clock read median ns, tsc, through the timekeeper (&dyn)",
            "timekeeper_median_ns",
        ),
        (
            "clock read median ns, bare rdtsc + multiply-shift",
            "bare_median_ns",
        ),
    ] {
        let v = per_run(Config::ReadCal, "clock_read_ratio", &[], key);
        t.rows.push(vec![label.into(), spread(&v), String::new()]);
    }
    t.rows.push(vec![
        "kernel::now / bare, median ratio".into(),
        spread(&ratio),
        within,
    ]);
    for (label, at) in [
        ("lateness {q} µs at resume (advance off)", "resume"),
        (
            "… of it at handler entry, {q} µs (QEMU's delivery)",
            "entry",
        ),
    ] {
        for q in ["p50", "p99"] {
            let v = per_run(
                Config::NoHz,
                "lateness",
                &[("at", at), ("advance", "off")],
                &format!("{q}_us"),
            );
            t.rows
                .push(vec![label.replace("{q}", q), spread(&v), String::new()]);
        }
    }
    for (label, part, quantiles) in [
        ("our handler, {q} µs", "handler", &["p50", "p99"][..]),
        (
            "handler's return → the idle loop after hlt, {q} µs",
            "to_idle",
            &["p99"][..],
        ),
        (
            "idle loop after hlt → waiter, {q} µs",
            "wake",
            &["p50", "p99"][..],
        ),
    ] {
        for q in quantiles {
            let v = per_run(
                Config::NoHz,
                "lateness_parts",
                &[("advance", "off")],
                &format!("{part}_{q}_us"),
            );
            t.rows
                .push(vec![label.replace("{q}", q), spread(&v), String::new()]);
        }
    }
    t
}

/// The repeated comparison of `rounds` as markdown: which command made
/// it and how, the median table, how long each run took; and the per-run
/// figures, for the report file.
pub fn section(rounds: &[Round], args: &BenchArgs) -> (String, String) {
    let with_linux = rounds.iter().any(|r| !r.linux.is_empty());
    let runs: Vec<Vec<Comparison>> = rounds
        .iter()
        .map(|r| bench::comparisons(&r.linux, &r.ours))
        .collect();
    let n = rounds.len();
    let accel = rounds.first().map_or("tcg", |r| r.ours.accel.as_str());
    let mut out = format!(
        "Produced by `{}`: {n} run{} of {accel} lapic NO_HZ, nohz=off and tsc=reliable and \
         the read/calibration boot{}. The per-device tables are from run 1; the other \
         devices' boots and the slow-vCPU (-icount) boots ran once, in run 1, before its \
         compared boots.\n\n",
        args.command_line(),
        if n == 1 { "" } else { "s" },
        if with_linux {
            ", each followed by Linux's default, nohz=off and tsc=reliable"
        } else {
            ""
        },
    );
    out.push_str(&median_table(&runs, with_linux).render());
    out.push('\n');
    out.push_str(&ours_table(rounds).render());
    if n > 1 {
        out.push_str("\nTime per run: ");
        let times: Vec<String> = rounds
            .iter()
            .map(|r| format!("run {}: {}", r.run.i, took(r)))
            .collect();
        out.push_str(&times.join("; "));
        out.push_str(".\n");
    }
    let per_run = format!(
        "\n### Per-run figures of the comparison\n\nLogs: target/bench/, runs after the \
         first with `-run<i>` before `.log`.\n{}",
        per_run_tables(&runs, with_linux)
    );
    (out, per_run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::{boot, booted, suite};
    use crate::bench::{bench_lines, BootResult};
    use crate::qemu::{Accel, RunStatus};

    /// Our compared boots of one run: the NO_HZ boot with idle `per_s`
    /// and the lateness p50 (advance off) given, the nohz=off one with its
    /// idle rate, the read-cal boot with the tsc read median; a `None`
    /// boot failed (timed out, nothing printed).
    fn ours(nohz: Option<(&str, &str)>, periodic: &str, tsc_median: &str) -> Suite {
        let cfg = "CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250\n";
        let nohz_serial = match nohz {
            Some((per_s, p50)) => format!(
                "{cfg}BENCH idle source=lapic0 hz=250 per_s={per_s}\n\
                 BENCH lateness source=lapic0 at=resume advance=off p50_us={p50} p99_us=300\n"
            ),
            None => String::new(),
        };
        let status = if nohz.is_some() {
            RunStatus::Pass
        } else {
            RunStatus::TimedOut
        };
        let read_cal = format!(
            "CONFIG accel=tcg clocksource=tsc tick=hpet hz=250\n\
             BENCH clock_read clock=tsc median_ns={tsc_median} mean_ns=50\n\
             BENCH clock_read clock=acpi_pm median_ns=0 mean_ns=94 tsc_timed_median_ns=80\n"
        );
        suite(vec![
            BootResult::new(
                boot(Device::Lapic, Config::NoHz),
                Accel::Tcg,
                status,
                &nohz_serial,
            ),
            booted(
                Device::Lapic,
                Config::Periodic,
                &format!("{cfg}BENCH idle source=lapic0 hz=250 per_s={periodic}\n"),
            ),
            booted(Device::Hpet, Config::ReadCal, &read_cal),
        ])
    }

    /// Linux's default and nohz=off runs: idle rate, lateness p50, tsc read
    /// median; nohz=off's idle rate.
    fn linux(per_s: &str, p50: &str, tsc_median: &str, periodic: &str) -> Vec<LinuxRun> {
        let default = format!(
            "BENCH idle seconds=10 per_s={per_s}\n\
             BENCH lateness slack=1ns p50_us={p50} p99_us=400\n\
             BENCH clock_read source=tsc median_ns={tsc_median} mean_ns=120\n\
             BENCH clock_read source=acpi_pm median_ns=1000 mean_ns=1100\n\
             BENCH done uptime_s=19\n"
        );
        vec![
            LinuxRun {
                variant: LinuxVariant::Default,
                lines: bench_lines(&default),
                error: None,
            },
            LinuxRun {
                variant: LinuxVariant::NoHzOff,
                lines: bench_lines(&format!("BENCH idle per_s={periodic}\nBENCH done\n")),
                error: None,
            },
        ]
    }

    /// A run of ours whose read-cal boot printed `clock_read_ratio` with
    /// `ratio` (or nothing: `None`), and whose NO_HZ boot printed the
    /// parts of a wake-up.
    fn read_round(i: u32, ratio: Option<&str>) -> Round {
        let cfg = "CONFIG accel=tcg clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250\n";
        let nohz = format!(
            "{cfg}BENCH lateness at=resume advance=off p50_us=90.0 p99_us=2{i}0.0\n\
             BENCH lateness at=entry advance=off p50_us=70.0 p99_us=1{i}0.0\n\
             BENCH lateness_parts advance=off handler_p50_us=1{i}.0 handler_p99_us=40.0 \
             to_idle_p99_us=1.5 wake_p50_us=1.0 wake_p99_us=2.5\n"
        );
        let read = match ratio {
            Some(r) => format!(
                "CONFIG accel=tcg clocksource=tsc tick=hpet hz=250\n\
                 BENCH clock_read_ratio tsc_median_ns=3{i} timekeeper_median_ns=50 \
                 bare_median_ns=30 ratio={r}\n"
            ),
            None => String::new(),
        };
        let read_boot = match ratio {
            Some(_) => booted(Device::Hpet, Config::ReadCal, &read),
            None => BootResult::new(
                boot(Device::Hpet, Config::ReadCal),
                Accel::Tcg,
                RunStatus::TimedOut,
                "",
            ),
        };
        Round {
            run: RunNo { i, of: 3 },
            ours: suite(vec![booted(Device::Lapic, Config::NoHz, &nohz), read_boot]),
            linux: Vec::new(),
            once_secs: 0.0,
            ours_secs: 0.0,
            linux_secs: 0.0,
        }
    }

    /// The read path's ratio judged against 1.2× in every run, and the
    /// wake-up's parts as median (range) over the runs.
    #[test]
    fn our_own_table_judges_the_read_path_in_every_run_and_splits_the_wake_up() {
        let ok = [
            read_round(1, Some("1.000")),
            read_round(2, Some("1.333")),
            read_round(3, Some("1.033")),
        ];
        let t = ours_table(&ok);
        assert_eq!(
            row(&t, "kernel::now / bare")[1..],
            [
                "1.033 (1–1.333)".to_string(),
                "≤ 1.2×: no (run 2)".to_string()
            ]
        );
        assert_eq!(
            row(&t, "clock read median ns, tsc, kernel::now")[1],
            "32 (31–33)"
        );
        assert_eq!(row(&t, "our handler, p50")[1], "12 (11–13)");
        assert_eq!(row(&t, "… of it at handler entry, p99")[1], "120 (110–130)");
        assert_eq!(row(&t, "lateness p99 µs at resume")[1], "220 (210–230)");
        let good = [read_round(1, Some("1.000")), read_round(2, Some("1.100"))];
        assert_eq!(
            row(&ours_table(&good), "kernel::now / bare")[2],
            "≤ 1.2×: yes"
        );
        let missing = [read_round(1, Some("1.000")), read_round(2, None)];
        let t = ours_table(&missing);
        assert_eq!(row(&t, "kernel::now / bare")[1], "1 (1–1; 1 of 2 runs)");
        assert_eq!(
            row(&t, "kernel::now / bare")[2],
            "≤ 1.2×: not known (a run lacks it)"
        );
    }

    fn row<'a>(t: &'a Table, prefix: &str) -> &'a [String] {
        t.rows
            .iter()
            .find(|r| r[0].starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {t:?}"))
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_and_of_an_even_the_mean_of_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
        assert_eq!(min_max(&[2.0, -1.0, 9.5]), Some((-1.0, 9.5)));
        assert_eq!(min_max(&[]), None);
    }

    #[test]
    fn figure_cells_keep_the_printed_figures_and_say_how_many_runs() {
        let v = |s: &[&str]| -> Vec<Option<Value>> { s.iter().map(|t| Value::parse(t)).collect() };
        assert_eq!(figure_cell(&v(&["9.4", "12.1", "8.0"])), "9.4 (8.0–12.1)");
        // Even: the mean of the middle two, one digit more where needed.
        assert_eq!(figure_cell(&v(&["73.8", "73.9"])), "73.85 (73.8–73.9)");
        assert_eq!(figure_cell(&v(&["120", "122", "500", "1"])), "121 (1–500)");
        assert_eq!(figure_cell(&v(&["120", "121"])), "120.5 (120–121)");
        assert_eq!(figure_cell(&v(&["200.0", "201.0"])), "200.5 (200.0–201.0)");
        assert_eq!(figure_cell(&v(&["2.099"])), "2.099");
        assert_eq!(figure_cell(&v(&["x", "2.5", "—"])), "2.5 (1 of 3 runs)");
        assert_eq!(figure_cell(&v(&["NaN"])), NONE);
        assert_eq!(figure_cell(&[]), NONE);
        assert_eq!(
            ratio_cell(&[Some(0.5), None, Some(0.25), Some(1.0)]),
            "0.50 (0.25–1.00; 3 of 4 runs)"
        );
        assert_eq!(ratio_cell(&[None, None]), NONE);
    }

    #[test]
    fn better_in_every_run_needs_every_ratio_below_one() {
        let lower = |r: &[Option<f64>]| verdict(Better::Lower, &[], r);
        assert_eq!(lower(&[Some(0.2), Some(0.99)]), "yes");
        assert_eq!(
            lower(&[Some(0.2), Some(1.0), Some(0.5), Some(1.3)]),
            "no (runs 2, 4)"
        );
        assert_eq!(lower(&[Some(0.2), None, Some(0.3)]), "yes (2 of 3 runs)");
        assert_eq!(
            lower(&[None, Some(1.2), Some(0.3)]),
            "no (run 2; 2 of 3 runs)"
        );
        assert_eq!(lower(&[None, None]), NONE);
        let at_hz = |o: &[Option<f64>]| verdict(Better::AtHz(1), o, &vec![None; o.len()]);
        assert_eq!(at_hz(&[Some(250.0), Some(247.5), Some(252.5)]), "yes");
        assert_eq!(at_hz(&[Some(250.0), Some(247.4)]), "no (run 2)");
        assert_eq!(at_hz(&[None, Some(249.9)]), "yes (1 of 2 runs)");
        // Two CPUs each ticking at HZ: 500/s.
        let two = |o: &[Option<f64>]| verdict(Better::AtHz(2), o, &vec![None; o.len()]);
        assert_eq!(two(&[Some(502.0), Some(495.6)]), "yes");
        assert_eq!(two(&[Some(250.0)]), "no (run 1)");
    }

    #[test]
    fn only_the_compared_boots_repeat() {
        let repeated: Vec<String> = bench::plan(&bench::devices(None, false), Accel::Tcg, false)
            .into_iter()
            .filter(compared)
            .map(|b| b.name())
            .collect();
        assert_eq!(
            repeated,
            [
                "lapic-nohz",
                "lapic-periodic",
                "lapic-reliable",
                "hpet-read-cal"
            ]
        );
        assert_eq!(RunNo { i: 1, of: 5 }.suffix(), "");
        assert_eq!(RunNo { i: 3, of: 5 }.suffix(), "-run3");
        assert_eq!(RunNo { i: 3, of: 5 }.prefix(), "run 3/5 ");
        assert_eq!(RunNo { i: 1, of: 1 }.prefix(), "");
    }

    fn three_runs() -> Vec<Vec<Comparison>> {
        [
            (
                ours(Some(("2.0", "70.0")), "250.0", "50"),
                linux("9.0", "180.0", "100", "250.1"),
            ),
            (
                ours(Some(("3.0", "90.0")), "249.0", "60"),
                linux("10.0", "80.0", "100", "250.0"),
            ),
            (
                ours(Some(("2.5", "80.0")), "251.0", "40"),
                linux("9.5", "200.0", "100", "249.8"),
            ),
        ]
        .iter()
        .map(|(o, l)| bench::comparisons(l, o))
        .collect()
    }

    #[test]
    fn the_median_table_gives_each_figure_and_ratio_as_median_and_range() {
        let t = median_table(&three_runs(), true);
        assert_eq!(
            row(&t, "idle timer irq/s, NO_HZ (")[1..],
            [
                "9.5 (9.0–10.0)",
                "2.5 (2.0–3.0)",
                "0.26 (0.22–0.30)",
                "lower",
                "yes"
            ]
        );
        // p50: 70/180, 90/80, 80/200: run 2 is worse.
        assert_eq!(
            row(
                &t,
                "lateness p50 µs at resume (Linux slack 1 ns; ours lapic, advance off)"
            )[1..],
            [
                "180.0 (80.0–200.0)",
                "80.0 (70.0–90.0)",
                "0.40 (0.39–1.12)",
                "lower",
                "no (run 2)"
            ]
        );
        assert_eq!(
            row(&t, "idle timer irq/s, nohz=off")[1..],
            [
                "250.0 (249.8–250.1)",
                "250.0 (249.0–251.0)",
                "1.00 (1.00–1.00)",
                "= HZ (250)",
                "yes"
            ]
        );
        assert_eq!(
            row(&t, "clock read median ns, tsc")[1..4],
            ["100 (100–100)", "50 (40–60)", "0.50 (0.40–0.60)"]
        );
        assert_eq!(
            row(&t, "clock read median ns, acpi_pm")[2],
            "80 (80–80), rdtsc-timed"
        );
        // Linux's tsc=reliable was not run in any run: one note, no prefix.
        assert!(
            t.notes.iter().any(|n| n == "Linux tsc=reliable: not run"),
            "{t:?}"
        );
        assert!(t
            .notes
            .iter()
            .any(|n| n.starts_with("dynticks' acpi_pm median is rdtsc-timed")));
        assert!(t
            .notes
            .iter()
            .any(|n| n.starts_with("median: the middle run's figure")));
        let widths: Vec<usize> = t
            .render()
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_failed_boot_in_one_run_is_a_dash_there_and_the_stats_are_over_the_rest() {
        let mut runs = three_runs();
        runs.push(bench::comparisons(
            &linux("9.2", "150.0", "100", "250.0"),
            &ours(None, "250.0", "45"),
        ));
        runs.swap(2, 3); // the failed boot is run 3 of 4
        let t = median_table(&runs, true);
        assert_eq!(
            row(&t, "idle timer irq/s, NO_HZ (")[1..],
            [
                "9.35 (9.0–10.0)",
                "2.5 (2.0–3.0; 3 of 4 runs)",
                "0.26 (0.22–0.30; 3 of 4 runs)",
                "lower",
                "yes (3 of 4 runs)"
            ]
        );
        // The nohz=off and read-cal boots of run 3 worked: four runs there.
        assert_eq!(row(&t, "clock read median ns, tsc")[2], "47.5 (40–60)");
        assert!(
            t.notes
                .iter()
                .any(|n| n.starts_with("run 3: lapic nohz: no CONFIG line (FAIL: timed out")),
            "{:?}",
            t.notes
        );
        assert!(t
            .notes
            .iter()
            .any(|n| n.starts_with("a run without a figure")));
        let per_run = per_run_tables(&runs, true);
        let late = per_run
            .lines()
            .find(|l| l.starts_with("| idle timer irq/s, NO_HZ ("))
            .unwrap();
        let cells: Vec<&str> = late.split('|').map(str::trim).collect();
        assert_eq!(
            cells[1..6],
            [
                "idle timer irq/s, NO_HZ (ours: lapic)",
                "9.0",
                "10.0",
                "9.2",
                "9.5"
            ]
        );
        assert!(per_run.contains("### Per run: dynticks"));
        let ratios = per_run.split("### Per run: ratio").nth(1).unwrap();
        let late = ratios
            .lines()
            .find(|l| l.starts_with("| idle timer irq/s, NO_HZ ("))
            .unwrap();
        let cells: Vec<&str> = late.split('|').map(str::trim).collect();
        assert_eq!(cells[2..6], ["0.22", "0.30", NONE, "0.26"]);
    }

    #[test]
    fn without_linux_the_table_has_our_figures_only() {
        let runs: Vec<Vec<Comparison>> = [
            ours(Some(("2.0", "70.0")), "250.0", "50"),
            ours(Some(("4.0", "90.0")), "250.0", "60"),
        ]
        .iter()
        .map(|o| bench::comparisons(&[], o))
        .collect();
        let t = median_table(&runs, false);
        assert_eq!(t.header, ["metric", "dynticks"]);
        assert_eq!(row(&t, "idle timer irq/s, NO_HZ (")[1], "3.0 (2.0–4.0)");
        assert!(
            !t.notes.iter().any(|n| n.contains("Linux")),
            "{:?}",
            t.notes
        );
    }

    #[test]
    fn spread_prints_no_trailing_zeros() {
        assert_eq!(short(102.9), "102.9");
        assert_eq!(short(30.0), "30");
        assert_eq!(short(1.0204), "1.02");
        assert_eq!(short(0.0004), "0");
        assert_eq!(
            spread(&[Some(90.9), Some(102.9), Some(111.7)]),
            "102.9 (90.9–111.7)"
        );
        assert_eq!(
            spread(&[Some(30.0), None, Some(50.0)]),
            "40 (30–50; 2 of 3 runs)"
        );
    }
}
