//! `bench-timeline`: every timer interrupt of 2 s of idle, one line each,
//! for the SVG timeline `cargo xtask bench` draws (`xtask/src/timeline.rs`).
//!
//! ```text
//!   t0 ──────────── idle (nohz::measure: one timer, at t0 + 2 s) ────────────┐ end timer
//!        the interrupt path logs each of CPU 0's tick-device interrupts       │ (kernel::IrqLog)
//!   after the window, from normal code:
//!     BENCH timeline cpu=0 dev=lapic0 at_us=4.1 kind=tick          one per logged interrupt
//!     BENCH timeline cpu=0 dev=lapic0 at_us=2000011.3 kind=timer end=1
//!     BENCH timeline_window source=… nohz=1 events=2 … timer_us=2000000.0 ran_us=…
//! ```
//!
//! The window is the `nohz` test's ([`super::nohz::measure`]) with only the
//! timer that ends it, as `bench-idle`'s is: the same idle loop, the same
//! log. `at_us` is the interrupt's entry, in µs from `t0` (the window's
//! start, just before the timer is queued); logging starts at the idle
//! loop's first sleep (`idle_us`) and stops once the ending timer has run.
//!
//! `kind` is what the `nohz` analysis ([`super::nohz::classify_all`]) found
//! the interrupt was for: `tick`, `timer`, `forced` (the device's max delta
//! or the clocksource's max deferment: neither tick nor timer), `watchdog`
//! (a wake-up for the clocksource watchdog), `entry_tick` (the busy CPU's
//! tick that idle entry kept for one round), `stale` (raised for a
//! programming a re-arm had moved later) or `other` (unexplained). The
//! interrupt that ran the ending timer has `end=1`.
//!
//! Only CPU 0's tick events are in the log (its tick device, or the
//! broadcast device while it stands in — both under the tick device's
//! name, `dev=`); interrupts of any other device are counted in
//! `not_logged`. The log holds [`IRQ_LOG_LEN`] interrupts (a 2 s window of
//! a 1000 Hz tick); what did not fit is `dropped`. Nothing is printed until
//! the window is over.

use clocksource::{Ktime, Nanos};
use tick::TickMode;

use super::nohz::{self, Measured, Reason};
use super::{Ctx, TickState};
use crate::embed::kernel::{self, IrqRecord, IRQ_LOG_LEN};
use crate::rig::expect::Micros;
use crate::rig::result::{Line, Verdict};

/// The idle window.
pub const WINDOW: Nanos = Nanos::from_secs(2);

/// The word of `kind=` for a reason.
pub fn kind_word(r: Reason) -> &'static str {
    match r {
        Reason::Timer => "timer",
        Reason::Tick => "tick",
        Reason::Forced => "forced",
        Reason::Watchdog => "watchdog",
        Reason::Stale => "stale",
        Reason::EntryTick => "entry_tick",
        Reason::Unexplained => "other",
    }
}

/// µs from `t0` to `t`, as `Micros` prints them (0 for a `t` before `t0`).
fn offset(t0: Ktime, t: Ktime) -> Micros {
    Micros(t.saturating_since(t0).as_nanos())
}

/// A `timeline_window` line saying why there is no window.
fn not_measured(why: &str) -> Verdict {
    let mut l = Line::bench("timeline_window");
    if let Some(s) = TickState::now() {
        s.fields(&mut l);
    }
    l.text("skipped", why);
    crate::println!("{}", l.as_str());
    Verdict::Pass
}

/// Runs `bench-timeline`.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return not_measured("no kernel");
    };
    if state.mode == TickMode::NoDevice {
        return not_measured("no tick device");
    }
    let Some(not_tick0) = kernel::with(|k| k.counts(0).not_tick) else {
        return not_measured("no kernel");
    };
    let Some(m) = nohz::measure(&[WINDOW], ctx.inv.lapic_error_ppm) else {
        return not_measured("no kernel");
    };
    let not_logged = kernel::with(|k| k.counts(0).not_tick).map_or(0, |n| n - not_tick0);
    let mut reasons = [Reason::Unexplained; IRQ_LOG_LEN];
    let (n, end) = kernel::with_irq_log(|l| {
        let recs = l.records();
        nohz::classify_all(&m, recs, &mut reasons);
        (recs.len(), end_index(&m, recs))
    });
    // Counts per kind, in the order of `KINDS`.
    let mut counts = [0u64; KINDS.len()];
    for (i, reason) in reasons[..n].iter().enumerate() {
        // The log is stopped: its records stay as they are. One at a time,
        // so that nothing is printed with interrupts off.
        let Some(r) = kernel::with_irq_log(|l| l.records().get(i).copied()) else {
            break;
        };
        if let Some(c) = KINDS.iter().position(|k| *k == *reason) {
            counts[c] += 1;
        }
        let mut l = Line::bench("timeline");
        l.field("cpu", 0)
            .field("dev", state.device)
            .field("at_us", offset(m.t0, r.at))
            .field("kind", kind_word(*reason));
        if end == Some(i) {
            l.field("end", 1);
        }
        crate::println!("{}", l.as_str());
    }
    let mut l = Line::bench("timeline_window");
    state.fields(&mut l);
    l.field("nohz", u8::from(state.mode.is_nohz()))
        .field("cpu", 0)
        .field("events", n)
        .field("start_ns", m.t0.as_nanos())
        .field("idle_us", offset(m.t0, m.t_idle))
        .field("end_us", offset(m.t0, m.t_end))
        .field("timer_us", offset(m.t0, m.expiries[0]));
    match m.ran[0] {
        Some(at) => l.field("ran_us", offset(m.t0, at)),
        None => l.field("ran_us", "none"),
    };
    for (k, c) in KINDS.iter().zip(counts) {
        l.field(kind_word(*k), c);
    }
    l.field("dropped", m.dropped)
        .field("not_logged", not_logged);
    crate::println!("{}", l.as_str());
    Verdict::Pass
}

/// The kinds counted on the `timeline_window` line, in its order.
const KINDS: [Reason; 7] = [
    Reason::Tick,
    Reason::Timer,
    Reason::Forced,
    Reason::Watchdog,
    Reason::EntryTick,
    Reason::Stale,
    Reason::Unexplained,
];

/// The logged interrupt that ran the ending timer: the last one that ran
/// a timer at or before the timer's callback (the window's only timer;
/// logging stops once it has run).
fn end_index(m: &Measured, log: &[IrqRecord]) -> Option<usize> {
    let ran = m.ran[0]?;
    log.iter().rposition(|r| r.timers > 0 && r.at <= ran)
}
