//! The idle timeline: every timer interrupt of 2 s of idle with one timer
//! pending — the one that ends the window — for our guest with the tick
//! kept (`nohz=off`), our guest NO_HZ, and Linux NO_HZ in the same QEMU,
//! drawn as one SVG (`target/bench/timeline.svg`; a copy is in
//! BENCHMARKS.md, "Idle timeline").
//!
//! ```text
//!   guest   clockevent=lapic nohz=off test=bench-timeline ─┐
//!   guest   clockevent=lapic test=bench-timeline           ├─ BENCH timeline …        ─► parse ─► Window
//!   Linux   bench/linux/run --append TB_TIMELINE=2         ─┘ BENCH timeline_window …      │
//!           (with --vs-linux; else its lane says "not run")                               lanes (one per
//!                                                                                          run × cpu × dev)
//!                                                                                            │
//!                                                                          render ─► SVG text ◄┘
//! ```
//!
//! Every boot runs under TCG, whatever `--accel` says: Linux boots under
//! TCG only here (`bench/linux/README.md`), and the lanes are compared.
//! The lines are those of `guest/src/rig/suite/timeline.rs` and of
//! `bench/linux/timerbench.c` (`bench_timeline`): `timeline` per interrupt
//! (`cpu`, `dev`, `at_us` from the window's start, `kind`, `end=1` on the
//! one that ran the ending timer, Linux's `fn` = the callbacks it ran) and
//! one `timeline_window`. The SVG is written as text, one element per
//! line; nothing here panics on what the guest or Linux printed (a line
//! without a usable time is counted and said under its lane).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::bench::{bench_lines, BenchLine};
use crate::cli::BenchArgs;
use crate::qemu::{self, Accel, RunSpec};
use crate::runner::TCG_TIMEOUT;
use crate::{guest_build, Error, Result};

/// The idle window, µs (the guest's `WINDOW`, Linux's `TB_TIMELINE=2`).
pub const WINDOW_US: f64 = 2_000_000.0;
/// The SVG's file name in `target/bench/`.
pub const FILE: &str = "timeline.svg";
/// Our guest's boots: lane label and command line, in lane order.
pub const GUEST_BOOTS: [(&str, &str, &str); 2] = [
    (
        "ours periodic (nohz=off)",
        "periodic",
        "clockevent=lapic nohz=off test=bench-timeline",
    ),
    ("ours NO_HZ", "nohz", "clockevent=lapic test=bench-timeline"),
];
/// Linux's lane label.
pub const LINUX_LABEL: &str = "Linux 6.1 NO_HZ";
/// How a run that was not asked for is said (Linux without `--vs-linux`).
pub const NOT_RUN: &str = "not run";
/// What `bench/linux/run` is given for the timeline.
pub const LINUX_APPEND: &str = "TB_TIMELINE=2";

// ---- what the runs printed ----------------------------------------------------------

/// What an interrupt was for, as drawn (the guest's and Linux's words,
/// [`Kind::from_word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A tick (the guest's `entry_tick`, the busy CPU's last, too).
    Tick,
    /// A timer ran (ours: the one that ends the window; Linux: that one or
    /// a kernel timer it woke for).
    Timer,
    /// Neither: the device's max delta or the clocksource's max deferment.
    Forced,
    /// A wake-up for the clocksource watchdog.
    Watchdog,
    /// Anything else (stale, unexplained, a word not known here).
    Other,
}

impl Kind {
    /// Every kind, in legend order.
    pub const ALL: [Kind; 5] = [
        Kind::Tick,
        Kind::Timer,
        Kind::Forced,
        Kind::Watchdog,
        Kind::Other,
    ];

    /// The kind of a `kind=` word.
    pub fn from_word(w: &str) -> Kind {
        match w {
            "tick" | "entry_tick" => Kind::Tick,
            "timer" => Kind::Timer,
            "forced" => Kind::Forced,
            "watchdog" => Kind::Watchdog,
            _ => Kind::Other,
        }
    }

    /// The word in legends and counts.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Tick => "tick",
            Kind::Timer => "timer",
            Kind::Forced => "forced",
            Kind::Watchdog => "watchdog",
            Kind::Other => "other",
        }
    }

    /// The mark's colour.
    pub fn colour(self) -> &'static str {
        match self {
            Kind::Tick => "#7f7f7f",
            Kind::Timer => "#1a9850",
            Kind::Forced => "#e66101",
            Kind::Watchdog => "#2c7bb6",
            Kind::Other => "#d7191c",
        }
    }
}

/// One interrupt.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The CPU (`cpu=`).
    pub cpu: String,
    /// The device (`dev=`: `lapic0`, `LOC`, `IRQ0`, …).
    pub dev: String,
    /// µs from the window's start.
    pub at_us: f64,
    /// What it was for.
    pub kind: Kind,
    /// The `kind=` word as printed.
    pub word: String,
    /// It ran the timer that ends the window.
    pub end: bool,
    /// The callbacks it ran, where the run says (Linux's `fn=`).
    pub callbacks: Option<String>,
}

/// One run's window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    /// The interrupts, in order.
    pub events: Vec<Event>,
    /// When the window ended, µs from its start.
    pub end_us: Option<f64>,
    /// When the ending timer was due, µs from the start.
    pub timer_us: Option<f64>,
    /// Interrupts that did not fit the run's log.
    pub dropped: u64,
    /// `timeline` lines without a usable time (not drawn).
    pub unreadable: usize,
    /// Why the run has no times (`skipped=`: no tick device, no tracefs).
    pub skipped: Option<String>,
    /// With `skipped`: the timer interrupts counted without times
    /// (Linux's `/proc/interrupts` LOC + IRQ0).
    pub counted: Option<u64>,
}

/// A number field that is finite and not negative.
fn number(l: &BenchLine, key: &str) -> Option<f64> {
    l.get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// A whole-number field.
fn count(l: &BenchLine, key: &str) -> Option<u64> {
    l.get(key).and_then(|v| v.parse::<u64>().ok())
}

/// The window of a run's `BENCH` lines, or why there is none.
pub fn parse(lines: &[BenchLine]) -> std::result::Result<Window, String> {
    let mut w = Window::default();
    for l in lines.iter().filter(|l| l.group == "timeline") {
        let Some(at_us) = number(l, "at_us") else {
            w.unreadable += 1;
            continue;
        };
        let word = l.get("kind").unwrap_or("?");
        w.events.push(Event {
            cpu: l.get("cpu").unwrap_or("?").to_string(),
            dev: l.get("dev").unwrap_or("?").to_string(),
            at_us,
            kind: Kind::from_word(word),
            word: word.to_string(),
            end: l.get("end") == Some("1"),
            callbacks: l.get("fn").filter(|f| !f.is_empty()).map(str::to_string),
        });
    }
    let Some(summary) = lines.iter().find(|l| l.group == "timeline_window") else {
        return Err(if w.events.is_empty() {
            "no `BENCH timeline` lines".to_string()
        } else {
            format!(
                "no `timeline_window` line after {} interrupts (cut short?)",
                w.events.len()
            )
        });
    };
    w.end_us = number(summary, "end_us");
    w.timer_us = number(summary, "timer_us");
    w.dropped = count(summary, "dropped").unwrap_or(0);
    w.skipped = summary.get("skipped").map(str::to_string);
    if w.skipped.is_some() {
        w.counted = match (count(summary, "loc"), count(summary, "irq0")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
    Ok(w)
}

/// One run: its lane label, and its window or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The label (`ours NO_HZ`).
    pub label: String,
    /// The window, or why there is none (`not run`, a failed boot).
    pub window: std::result::Result<Window, String>,
}

// ---- lanes ----------------------------------------------------------------------------

/// One lane: the interrupts of one CPU and device of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane<'a> {
    /// The run's label.
    pub run: &'a str,
    /// `cpu 0 · lapic0`, empty for a lane without interrupts.
    pub source: String,
    /// Its interrupts, in order.
    pub events: Vec<&'a Event>,
    /// What the lane cannot show (not run, no times, dropped, unreadable).
    pub note: Option<String>,
    /// What stands for the count in its title when it has no interrupts to
    /// count (`not run`, `no window`, `19, no times`).
    pub headline: Option<String>,
}

impl Lane<'_> {
    /// Its interrupts of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }

    /// `500 tick, 4 watchdog, 1 timer`: the kinds it has, most first.
    pub fn breakdown(&self) -> String {
        let mut kinds: Vec<(usize, Kind)> = Kind::ALL
            .iter()
            .map(|k| (self.count(*k), *k))
            .filter(|(n, _)| *n > 0)
            .collect();
        kinds.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let words: Vec<String> = kinds
            .iter()
            .map(|(n, k)| format!("{n} {}", k.word()))
            .collect();
        words.join(", ")
    }

    /// `ours NO_HZ: 3`, or `Linux 6.1 NO_HZ: not run`.
    pub fn title(&self) -> String {
        match &self.headline {
            Some(h) => format!("{}: {h}", self.run),
            None => format!("{}: {}", self.run, self.events.len()),
        }
    }
}

/// The lanes of `runs`, in order: one per CPU and device that had an
/// interrupt (in the order each first appears), or one saying why a run
/// has none.
pub fn lanes(runs: &[Run]) -> Vec<Lane<'_>> {
    let mut out = Vec::new();
    for r in runs {
        let w = match &r.window {
            Ok(w) => w,
            Err(e) => {
                out.push(Lane {
                    run: &r.label,
                    source: String::new(),
                    events: Vec::new(),
                    note: Some(e.clone()),
                    headline: Some(
                        if e.starts_with(NOT_RUN) {
                            NOT_RUN
                        } else {
                            "no window"
                        }
                        .to_string(),
                    ),
                });
                continue;
            }
        };
        let mut notes = Vec::new();
        if let Some(why) = &w.skipped {
            notes.push(match w.counted {
                Some(n) => format!("no times ({why}); {n} interrupts counted"),
                None => format!("no times ({why})"),
            });
        }
        if w.dropped > 0 {
            notes.push(format!("{} more not logged (log full)", w.dropped));
        }
        if w.unreadable > 0 {
            notes.push(format!("{} lines without a time", w.unreadable));
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let first = out.len();
        for e in &w.events {
            let source = format!("cpu {} · {}", e.cpu, e.dev);
            match out[first..].iter_mut().find(|l| l.source == source) {
                Some(l) => l.events.push(e),
                None => out.push(Lane {
                    run: &r.label,
                    source,
                    events: vec![e],
                    note: note.clone(),
                    headline: None,
                }),
            }
        }
        if out.len() == first {
            out.push(Lane {
                run: &r.label,
                source: String::new(),
                events: Vec::new(),
                note,
                headline: w.skipped.as_ref().map(|_| match w.counted {
                    Some(n) => format!("{n}, no times"),
                    None => "no times".to_string(),
                }),
            });
        }
    }
    out
}

// ---- the picture ----------------------------------------------------------------------

/// The picture's width, px.
pub const WIDTH: f64 = 1200.0;
/// Where the plot starts (the labels are to its left), px.
pub const PLOT_LEFT: f64 = 320.0;
/// The plot's width for [`WINDOW_US`], px.
pub const PLOT_WIDTH: f64 = 820.0;
/// Marks later than the window are drawn up to this far past its end, µs
/// (the ending timer's interrupt comes a little after it is due).
pub const OVERRUN_US: f64 = 50_000.0;
/// The title's height, px.
const TOP: f64 = 64.0;
/// One lane's height, px.
const LANE_H: f64 = 46.0;
/// Axis ticks every …, ms.
const AXIS_STEP_MS: u32 = 250;

/// The x of an interrupt `at_us` after the window's start (clamped to the
/// plot and [`OVERRUN_US`] past it).
pub fn x_of(at_us: f64) -> f64 {
    let t = if at_us.is_finite() { at_us } else { 0.0 };
    PLOT_LEFT + t.clamp(0.0, WINDOW_US + OVERRUN_US) / WINDOW_US * PLOT_WIDTH
}

/// `s` as SVG text or attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The SVG of `runs`' lanes, `subtitle` under the title (what was booted).
pub fn render(runs: &[Run], subtitle: &str) -> String {
    let lanes = lanes(runs);
    let plot_top = TOP;
    let plot_bottom = TOP + LANE_H * lanes.len() as f64;
    let height = plot_bottom + 80.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">Timer interrupts over 2 s of idle, one timer pending (due at 2000 ms)</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="42" fill="#444444">{}</text>"##,
        escape(subtitle)
    );
    for i in (0..lanes.len()).step_by(2) {
        let top = plot_top + LANE_H * i as f64;
        let _ = writeln!(
            s,
            r##"<rect x="0" y="{top:.1}" width="{WIDTH}" height="{LANE_H}" fill="#f3f3f3"/>"##
        );
    }
    // The timer's due time, across the lanes, behind the marks.
    let due = x_of(WINDOW_US);
    let _ = writeln!(
        s,
        r##"<line x1="{due:.2}" y1="{plot_top:.1}" x2="{due:.2}" y2="{plot_bottom:.1}" stroke="#000000" stroke-dasharray="3,3" stroke-width="0.8"/>"##
    );
    for (i, lane) in lanes.iter().enumerate() {
        let top = plot_top + LANE_H * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            top + 19.0,
            escape(&lane.title())
        );
        let detail: Vec<String> = [lane.source.clone(), lane.breakdown()]
            .into_iter()
            .chain(lane.note.clone().filter(|_| !lane.events.is_empty()))
            .filter(|t| !t.is_empty())
            .collect();
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.1}" font-size="11" fill="#444444">{}</text>"##,
            top + 36.0,
            escape(&detail.join(" · "))
        );
        render_marks(&mut s, lane, top);
    }
    render_axis(&mut s, plot_bottom);
    render_legend(&mut s, plot_bottom + 62.0);
    s.push_str("</svg>\n");
    s
}

/// One lane's marks, grouped by kind; the ending timer's gets a triangle
/// above it.
fn render_marks(s: &mut String, lane: &Lane<'_>, top: f64) {
    let (y1, y2) = (top + 14.0, top + LANE_H - 6.0);
    for kind in Kind::ALL {
        let marks: Vec<&&Event> = lane.events.iter().filter(|e| e.kind == kind).collect();
        if marks.is_empty() {
            continue;
        }
        let _ = writeln!(s, r#"<g stroke="{}" stroke-width="1.2">"#, kind.colour());
        for e in marks {
            let x = x_of(e.at_us);
            let what = match &e.callbacks {
                Some(f) => format!("{} ({f})", e.word),
                None => e.word.clone(),
            };
            let _ = writeln!(
                s,
                r#"<line x1="{x:.2}" y1="{y1:.1}" x2="{x:.2}" y2="{y2:.1}"><title>{:.3} ms: {}</title></line>"#,
                e.at_us / 1000.0,
                escape(&what)
            );
        }
        s.push_str("</g>\n");
    }
    for e in lane.events.iter().filter(|e| e.end) {
        let x = x_of(e.at_us);
        let _ = writeln!(
            s,
            r##"<path d="M {:.2} {:.1} L {:.2} {:.1} L {x:.2} {:.1} Z" fill="#000000"><title>the timer that ends the window, {:.3} ms</title></path>"##,
            x - 5.0,
            top + 3.0,
            x + 5.0,
            top + 3.0,
            top + 12.0,
            e.at_us / 1000.0
        );
    }
    if lane.events.is_empty() {
        if let Some(n) = &lane.note {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-style="italic" fill="#666666">{}</text>"##,
                PLOT_LEFT + 8.0,
                top + 28.0,
                escape(n)
            );
        }
    }
}

/// The time axis under the lanes, in ms.
fn render_axis(s: &mut String, y: f64) {
    let (left, right) = (x_of(0.0), x_of(WINDOW_US));
    let _ = writeln!(
        s,
        r##"<line x1="{left:.2}" y1="{y:.1}" x2="{right:.2}" y2="{y:.1}" stroke="#000000"/>"##
    );
    let window_ms = (WINDOW_US / 1000.0) as u32;
    for ms in (0..=window_ms).step_by(AXIS_STEP_MS as usize) {
        let x = x_of(f64::from(ms) * 1000.0);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.2}" y1="{y:.1}" x2="{x:.2}" y2="{:.1}" stroke="#000000"/>"##,
            y + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.2}" y="{:.1}" text-anchor="middle">{ms}</text>"#,
            y + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.1}" text-anchor="middle">ms from the window's start</text>"#,
        (left + right) / 2.0,
        y + 34.0
    );
}

/// The legend: one swatch per kind, and the ending timer's triangle.
fn render_legend(s: &mut String, y: f64) {
    let mut x = 10.0;
    for k in Kind::ALL {
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/>"#,
            y - 10.0,
            y + 2.0,
            k.colour()
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            x + 6.0,
            k.word()
        );
        x += 90.0;
    }
    let _ = writeln!(
        s,
        r##"<path d="M {:.1} {:.1} L {:.1} {:.1} L {x:.1} {:.1} Z" fill="#000000"/>"##,
        x - 5.0,
        y - 10.0,
        x + 5.0,
        y - 10.0,
        y - 1.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{y:.1}">the timer that ends the window (dashed: when it was due)</text>"#,
        x + 10.0
    );
}

// ---- running ----------------------------------------------------------------------------

/// Boots our guest once per [`GUEST_BOOTS`] and, with `--vs-linux`, Linux
/// once, all under TCG; writes `dir/timeline.svg` and each boot's log
/// (`dir/timeline-<name>.log`). True if both of our boots gave a window
/// (Linux's failure is drawn, not failed on).
pub fn bench(kernel: &Path, args: &BenchArgs, dir: &Path) -> Result<bool> {
    let mut runs = Vec::new();
    let mut ok = true;
    let mut base = RunSpec::new(kernel, args.machine, Accel::Tcg);
    base.echo = false;
    base.timeout = TCG_TIMEOUT;
    let boots = GUEST_BOOTS.len() + usize::from(args.vs_linux);
    println!("\ntimeline: {boots} boots under TCG");
    for (label, name, cmdline) in GUEST_BOOTS {
        let mut spec = base.clone();
        spec.cmdline = cmdline.to_string();
        let o = qemu::run_qemu(&spec)?;
        let log = dir.join(format!("timeline-{name}.log"));
        write(&log, &format!("# {cmdline}\n# {}\n{}", o.status, o.serial))?;
        let window = parse(&bench_lines(&o.serial))
            .map_err(|e| format!("{e}; the boot: {} ({})", o.status, log.display()));
        ok &= window.is_ok();
        runs.push(Run {
            label: label.to_string(),
            window,
        });
    }
    let linux = if args.vs_linux {
        run_linux(&base, dir)
    } else {
        Err(format!("{NOT_RUN} (cargo xtask bench --vs-linux runs it)"))
    };
    runs.push(Run {
        label: LINUX_LABEL.to_string(),
        window: linux,
    });
    let subtitle = format!(
        "QEMU TCG, -M {} -cpu {} -m {}M, 1 vCPU, one lane per CPU and device; ours: clockevent=lapic (HZ 250); Linux: Debian's 6.1 (HZ 250) via bench/linux/run",
        args.machine.as_str(),
        base.cpu,
        base.memory_mib
    );
    let svg = render(&runs, &subtitle);
    let path = dir.join(FILE);
    write(&path, &svg)?;
    for lane in lanes(&runs) {
        let mut detail = lane.breakdown();
        if let Some(n) = &lane.note {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(n);
        }
        println!("  {:<36} {detail}", lane.title());
    }
    println!("(timeline written to {})", path.display());
    Ok(ok)
}

/// Runs `bench/linux/run --append TB_TIMELINE=2` with `base`'s options;
/// its window or why there is none.
fn run_linux(base: &RunSpec, dir: &Path) -> std::result::Result<Window, String> {
    let script = guest_build::workspace_root().join("bench/linux/run");
    let memory = base.memory_mib.to_string();
    let o = Command::new(&script)
        .args(["--machine", base.machine.as_str(), "--accel", "tcg"])
        .args(["--cpu", &base.cpu, "--memory", &memory])
        .args(["--append", LINUX_APPEND])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let log = dir.join("timeline-linux.log");
    let _ = std::fs::write(&log, format!("{stdout}\n# stderr:\n{stderr}"));
    parse(&bench_lines(&stdout)).map_err(|e| {
        format!(
            "{e}; bench/linux/run exited with {} ({})",
            o.status,
            log.display()
        )
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS_PERIODIC: &str = "\
BENCH timeline cpu=0 dev=lapic0 at_us=1915.4 kind=tick
BENCH timeline cpu=0 dev=lapic0 at_us=5950.0 kind=tick
BENCH timeline cpu=0 dev=lapic0 at_us=500000.0 kind=watchdog
BENCH timeline cpu=0 dev=lapic0 at_us=9920.7 kind=entry_tick
BENCH timeline cpu=0 dev=lapic0 at_us=2000371.5 kind=timer end=1
BENCH timeline_window source=lapic0 cs=tsc mode=high-res hz=250 nohz=0 cpu=0 events=5 start_ns=78206819 idle_us=435.8 end_us=2000534.6 timer_us=2000000.0 ran_us=2000371.5 tick=3 timer=1 forced=0 watchdog=1 entry_tick=1 stale=0 other=0 dropped=0 not_logged=0
";

    const OURS_NOHZ: &str = "\
[INFO guest] a log line between
BENCH timeline cpu=0 dev=lapic0 at_us=911247.7 kind=watchdog
BENCH timeline cpu=0 dev=lapic0 at_us=1912684.5 kind=watchdog
BENCH timeline cpu=0 dev=lapic0 at_us=2000241.2 kind=timer end=1
BENCH timeline_window source=lapic0 cs=tsc mode=high-res+NO_HZ hz=250 nohz=1 cpu=0 events=3 start_ns=90993680 idle_us=595.8 end_us=2000796.0 timer_us=2000000.0 ran_us=2000607.1 tick=0 timer=1 forced=0 watchdog=2 entry_tick=0 stale=0 other=0 dropped=0 not_logged=0
";

    const LINUX: &str = "\
BENCH system kernel=6.1.0-48-amd64 machine=x86_64 uptime_s=2.46
BENCH timeline cpu=0 dev=LOC at_us=2818.1 kind=timer fn=\"tick_sched_timer,delayed_work_timer_fn\"
BENCH timeline cpu=0 dev=LOC at_us=6678.1 kind=tick fn=\"tick_sched_timer\"
BENCH timeline cpu=0 dev=IRQ0 at_us=7000.0 kind=other fn=\"\"
BENCH timeline cpu=0 dev=LOC at_us=1634794.1 kind=watchdog fn=\"tick_sched_timer,clocksource_watchdog\"
BENCH timeline cpu=0 dev=LOC at_us=2000706.1 kind=timer end=1 fn=\"hrtimer_wakeup\"
BENCH timeline_window source=tracefs clock=mono events=5 start_ns=2605415880 end_us=2001288.9 timer_us=2000000.0 ran_us=2000736.1 tick=1 timer=2 watchdog=1 other=1 dropped=0 lost_buffers=0 loc=5 irq0=1
BENCH done uptime_s=4.64
";

    fn run(label: &str, text: &str) -> Run {
        Run {
            label: label.to_string(),
            window: parse(&bench_lines(text)),
        }
    }

    fn three() -> Vec<Run> {
        vec![
            run("ours periodic (nohz=off)", OURS_PERIODIC),
            run("ours NO_HZ", OURS_NOHZ),
            run(LINUX_LABEL, LINUX),
        ]
    }

    /// Checks that every tag is closed in order, and that every `&` starts
    /// one of the five entities; returns the elements opened.
    fn well_formed(svg: &str) -> std::result::Result<usize, String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut opened = 0;
        let mut rest = svg;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            check_entities(text)?;
            let gt = rest[lt..]
                .find('>')
                .ok_or_else(|| "an unclosed `<`".to_string())?;
            let tag = &rest[lt + 1..lt + gt];
            rest = &rest[lt + gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("`</{name}>` closes {other:?}")),
                }
                continue;
            }
            if tag.contains('<') {
                return Err(format!("`<` inside the tag `{tag}`"));
            }
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("an unbalanced quote in `{tag}`"));
            }
            check_entities(tag)?;
            opened += 1;
            let name = tag.split([' ', '/']).next().unwrap_or("");
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        check_entities(rest)?;
        if stack.is_empty() {
            Ok(opened)
        } else {
            Err(format!("left open: {stack:?}"))
        }
    }

    fn check_entities(text: &str) -> std::result::Result<(), String> {
        for (i, _) in text.match_indices('&') {
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| text[i..].starts_with(e));
            if !ok {
                return Err(format!("a bare `&` in `{text}`"));
            }
        }
        if text.contains('>') {
            return Err(format!("a bare `>` in `{text}`"));
        }
        Ok(())
    }

    /// The `<line>`s that are not marks: the dashed due time, the axis
    /// and its 9 ticks, the 5 legend swatches.
    fn axis_and_legend_lines() -> usize {
        1 + 1 + 9 + Kind::ALL.len()
    }

    #[test]
    fn the_checker_rejects_broken_markup() {
        assert_eq!(well_formed("<a x=\"1\"><b/>t &amp; u</a>"), Ok(2));
        for bad in [
            "<a><b></a>",
            "<a>&</a>",
            "<a>1 > 0</a>",
            "<a x=\"1>",
            "<a>",
            "</a>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_lines_of_each_run_parse_into_events_and_a_window() {
        let w = parse(&bench_lines(OURS_PERIODIC)).unwrap();
        assert_eq!(w.events.len(), 5);
        assert_eq!(w.events[0].at_us, 1915.4);
        assert_eq!(w.events[0].dev, "lapic0");
        assert_eq!(w.events[3].kind, Kind::Tick, "entry_tick draws as a tick");
        assert_eq!(w.events[3].word, "entry_tick");
        assert!(w.events[4].end);
        assert_eq!(w.events.iter().filter(|e| e.end).count(), 1);
        assert_eq!(w.end_us, Some(2000534.6));
        assert_eq!(w.timer_us, Some(2_000_000.0));
        assert_eq!((w.dropped, w.unreadable, w.skipped.clone()), (0, 0, None));

        let l = parse(&bench_lines(LINUX)).unwrap();
        assert_eq!(l.events.len(), 5);
        assert_eq!(
            l.events[0].callbacks.as_deref(),
            Some("tick_sched_timer,delayed_work_timer_fn")
        );
        assert_eq!(l.events[2].callbacks, None, "an empty fn= is none");
        assert_eq!(l.events[2].kind, Kind::Other);
    }

    #[test]
    fn each_run_has_a_lane_per_device_with_its_counts() {
        let runs = three();
        let lanes = lanes(&runs);
        let titles: Vec<String> = lanes.iter().map(Lane::title).collect();
        assert_eq!(
            titles,
            [
                "ours periodic (nohz=off): 5",
                "ours NO_HZ: 3",
                "Linux 6.1 NO_HZ: 4",
                "Linux 6.1 NO_HZ: 1",
            ]
        );
        let sources: Vec<&str> = lanes.iter().map(|l| l.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                "cpu 0 · lapic0",
                "cpu 0 · lapic0",
                "cpu 0 · LOC",
                "cpu 0 · IRQ0"
            ]
        );
        assert_eq!(lanes[0].breakdown(), "3 tick, 1 timer, 1 watchdog");
        assert_eq!(lanes[1].breakdown(), "2 watchdog, 1 timer");
        assert_eq!(lanes[2].breakdown(), "2 timer, 1 tick, 1 watchdog");
        assert_eq!(lanes[3].breakdown(), "1 other");
        assert_eq!(lanes[1].count(Kind::Tick), 0);
    }

    #[test]
    fn an_event_is_placed_by_its_time() {
        assert_eq!(x_of(0.0), PLOT_LEFT);
        assert_eq!(x_of(WINDOW_US), PLOT_LEFT + PLOT_WIDTH);
        assert_eq!(x_of(500_000.0), PLOT_LEFT + PLOT_WIDTH / 4.0);
        assert_eq!(x_of(-3.0), PLOT_LEFT);
        assert_eq!(x_of(f64::NAN), PLOT_LEFT);
        // Past the window: up to the overrun, then clamped.
        assert_eq!(format!("{:.2}", x_of(2_050_000.0)), "1160.50");
        assert_eq!(x_of(9e9), x_of(2_050_000.0));
        // In the picture: the NO_HZ lane's first watchdog (911247.7 µs).
        let svg = render(&three(), "test");
        let x = PLOT_LEFT + 911_247.7 / WINDOW_US * PLOT_WIDTH;
        assert_eq!(format!("{x:.2}"), "693.61");
        assert!(svg.contains(
            r#"<line x1="693.61" y1="124.0" x2="693.61" y2="150.0"><title>911.248 ms: watchdog</title></line>"#
        ));
    }

    #[test]
    fn the_svg_has_one_mark_per_interrupt_and_marks_the_ending_timer() {
        let svg = render(&three(), "QEMU TCG");
        assert!(well_formed(&svg).is_ok(), "{:?}", well_formed(&svg));
        // A tooltip per interrupt (5 + 3 + 4 + 1) and per ending timer (3).
        assert_eq!(svg.matches("<title>").count(), 16);
        assert_eq!(
            svg.matches("<line x1=").count() - axis_and_legend_lines(),
            13
        );
        // One triangle per ending timer (3), one in the legend.
        assert_eq!(svg.matches("<path ").count(), 4);
        assert_eq!(svg.matches("the timer that ends the window, ").count(), 3);
        assert!(svg.contains(">ours periodic (nohz=off): 5</text>"));
        assert!(svg.contains(">Linux 6.1 NO_HZ: 4</text>"));
        // Axis labels 0 … 2000 ms every 250.
        for ms in [0, 250, 1000, 2000] {
            assert!(svg.contains(&format!(r#"text-anchor="middle">{ms}</text>"#)));
        }
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn text_from_a_run_is_escaped() {
        let text = "BENCH timeline cpu=0 dev=<LOC> at_us=1.0 kind=tick fn=\"a&b\\\"c\"\n\
                    BENCH timeline_window end_us=2.0\n";
        let runs = vec![run("ours <&> \"x\"", text)];
        let svg = render(&runs, "a & b < c");
        assert_eq!(well_formed(&svg).map(|n| n > 0), Ok(true));
        assert!(svg.contains(">ours &lt;&amp;&gt; &quot;x&quot;: 1</text>"));
        assert!(svg.contains("cpu 0 · &lt;LOC&gt;"));
        assert!(svg.contains("0.001 ms: tick (a&amp;b&quot;c)"));
        assert!(svg.contains(">a &amp; b &lt; c</text>"));
        assert_eq!(escape("'\u{7}"), "&apos;");
    }

    #[test]
    fn a_run_not_run_or_without_times_says_so_in_its_lane() {
        let runs = vec![
            run("ours NO_HZ", OURS_NOHZ),
            Run {
                label: LINUX_LABEL.into(),
                window: Err("not run".into()),
            },
            run(
                "Linux without tracefs",
                "BENCH timeline_window source=proc_interrupts loc=19 irq0=0 skipped=\"cannot mount tracefs\"\n",
            ),
            run("cut", "BENCH timeline cpu=0 dev=lapic0 at_us=5 kind=tick\n"),
            run("nothing", "garbage\nBENCH idle per_s=1\n"),
        ];
        let lanes = lanes(&runs);
        let titles: Vec<String> = lanes.iter().map(Lane::title).collect();
        assert_eq!(
            titles,
            [
                "ours NO_HZ: 3",
                "Linux 6.1 NO_HZ: not run",
                "Linux without tracefs: 19, no times",
                "cut: no window",
                "nothing: no window",
            ]
        );
        let notes: Vec<Option<&str>> = lanes.iter().map(|l| l.note.as_deref()).collect();
        assert_eq!(
            notes,
            [
                None,
                Some("not run"),
                Some("no times (cannot mount tracefs); 19 interrupts counted"),
                Some("no `timeline_window` line after 1 interrupts (cut short?)"),
                Some("no `BENCH timeline` lines"),
            ]
        );
        let svg = render(&runs, "");
        assert!(well_formed(&svg).is_ok());
        assert!(svg.contains(">Linux 6.1 NO_HZ: not run</text>"));
        assert!(svg.contains(r##"fill="#666666">no `BENCH timeline` lines</text>"##));
    }

    #[test]
    fn dropped_and_unreadable_lines_are_counted_not_drawn() {
        let text = "\
BENCH timeline cpu=0 dev=lapic0 at_us=abc kind=tick
BENCH timeline cpu=0 dev=lapic0 at_us=-1 kind=tick
BENCH timeline cpu=0 dev=lapic0 kind=tick
BENCH timeline cpu=0 dev=lapic0 at_us=inf kind=tick
BENCH timeline cpu=0 dev=lapic0 at_us=10 kind=weird
BENCH timeline_window end_us=x dropped=7
";
        let w = parse(&bench_lines(text)).unwrap();
        assert_eq!((w.events.len(), w.unreadable, w.dropped), (1, 4, 7));
        assert_eq!(w.end_us, None);
        assert_eq!(w.events[0].kind, Kind::Other);
        let runs = vec![run("r", text)];
        let l = lanes(&runs);
        assert_eq!(
            l[0].note.as_deref(),
            Some("7 more not logged (log full); 4 lines without a time")
        );
        assert_eq!(l[0].title(), "r: 1");
    }
}
