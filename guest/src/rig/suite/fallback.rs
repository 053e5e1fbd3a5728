//! `fallback`: with a time source missing, another took its place and the
//! system ticks.
//!
//! What is missing comes from the command line (`hpet=disable`,
//! `lapic=notimer`), the firmware (no ACPI HPET table: QEMU
//! `-machine hpet=off`; or one the reader skipped as malformed), or
//! bring-up (the HPET the table describes was refused: outside the MMIO
//! window, or its probe failed). The test asserts that the missing source is
//! neither a registered clocksource nor an event device, that a tick device
//! took over, and that it ticks: over 0.5 s of the clocksource, HZ/2 ticks
//! within the tolerance of `periodic`.

use clocksource::Nanos;

use super::{measure_ticks, report, Ctx, TickState};
use crate::embed::kernel;
use crate::platform::acpi::Signature;
use crate::rig::result::{Line, Verdict};

/// The window.
pub const WINDOW: Nanos = Nanos::from_millis(500);

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return super::cannot_run("fallback", Verdict::Fail, "no kernel");
    };
    let hpet_refused = ctx
        .inv
        .skipped
        .iter()
        .flatten()
        .any(|n| n.as_str().starts_with("hpet"));
    let (missing, why): (&str, &str) = if ctx.opts.hpet_disabled {
        ("hpet", "hpet=disable")
    } else if ctx.platform.notes.about(Signature::HPET).is_some() {
        ("hpet", "ACPI-HPET-table-skipped")
    } else if ctx.platform.hpet.is_none() {
        ("hpet", "no-ACPI-HPET-table")
    } else if ctx.opts.lapic_notimer {
        ("lapic", "lapic=notimer")
    } else if hpet_refused {
        ("hpet", "HPET-refused")
    } else {
        ("none", "nothing-missing")
    };
    // The missing source must not be in use anywhere.
    let leaked = kernel::with(|k| {
        let cs = k.tick.clocksources().iter().any(|e| e.name() == missing);
        let dev = k
            .tick
            .devices()
            .iter()
            .any(|(_, d, _)| d.info().name.starts_with(missing));
        cs || dev
    })
    .unwrap_or(true);
    let mut l = Line::result("fallback");
    state.fields(&mut l);
    l.field("missing", missing).field("why", why);
    if state.mode == tick::TickMode::NoDevice {
        l.text("reason", "no tick device took over");
        return report(l, Verdict::Fail);
    }
    let (w, attempts) = measure_ticks(WINDOW, ctx.loss);
    l.field("in_use", leaked);
    let ok = w.judge(ctx.loss, state.mode == tick::TickMode::Periodic, &mut l);
    l.field("windows", attempts);
    report(l, Verdict::from_bool(ok && !leaked))
}
