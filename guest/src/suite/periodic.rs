//! `periodic`: the tick runs at HZ, measured on the selected clocksource.
//!
//! ```text
//!   sync to an interrupt ─► t0, ticks0 ─── busy 1 s (hlt between ticks) ───► t1, ticks1
//!   expected = (t1 − t0) · HZ       assert |ticks1 − ticks0 − expected| within tolerance
//! ```
//!
//! The CPU stays busy from the tick layer's point of view (no idle entry),
//! so the tick runs in every mode: a hardware periodic tick in `periodic`,
//! an emulated one (one-shot re-armed on the tick grid) in the one-shot
//! modes. Ticks are the tick layer's count of interrupts that did tick work;
//! timers and watchdog checks between ticks do not count.

use clocksource::Nanos;

use super::{count_ticks, expected_milliticks, report, ticks_ok, Ctx, Milli, TickState};
use crate::result::{Line, Verdict};

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
    let (ticks, window) = count_ticks(WINDOW);
    let expected = expected_milliticks(window, state.hz);
    let (ok, (short, over)) = ticks_ok(ctx.tight, ticks, expected);
    let mut l = Line::result("periodic");
    state.fields(&mut l);
    l.field("ticks", ticks)
        .field("expected", Milli(expected))
        .field("window_ms", Milli(window.as_nanos() / 1000))
        .field("tol", format_args!("-{short}/+{over}"));
    report(l, Verdict::from_bool(ok))
}
