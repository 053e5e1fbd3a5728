//! `periodic`: the tick runs at HZ, measured on the selected clocksource.
//!
//! ```text
//!   sync to an interrupt ─► t0, ticks0 ─── busy 1 s (hlt between ticks) ───► t1, ticks1
//!   expected = (t1 − t0) · HZ       ticks at HZ by their median interval, lost ones
//!                                   bounded, jiffies exact (super::TickWindow::judge)
//! ```
//!
//! The CPU stays busy from the tick layer's point of view (no idle entry),
//! so the tick runs in every mode: a hardware periodic tick in `periodic`,
//! an emulated one (one-shot re-armed on the tick grid) in the one-shot
//! modes. Ticks are the tick layer's count of interrupts that did tick work;
//! timers and watchdog checks between ticks do not count.

use clocksource::Nanos;

use super::{measure_ticks, report, Ctx, Milli, TickState};
use crate::rig::result::{Line, Verdict};

/// The window.
pub const WINDOW: Nanos = Nanos::from_secs(1);

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return super::cannot_run("periodic", Verdict::Fail, "no kernel");
    };
    if state.mode == tick::TickMode::NoDevice {
        return super::cannot_run("periodic", Verdict::Fail, "no tick device");
    }
    let (w, attempts) = measure_ticks(WINDOW, ctx.loss);
    let mut l = Line::result("periodic");
    state.fields(&mut l);
    let ok = w.judge(ctx.loss, state.mode == tick::TickMode::Periodic, &mut l);
    l.field("windows", attempts);
    l.field("window_ms", Milli(w.window.as_nanos() / 1000));
    report(l, Verdict::from_bool(ok))
}
