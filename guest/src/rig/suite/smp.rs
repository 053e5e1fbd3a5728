//! `smp`: every CPU the MADT lists came up (INIT-SIPI-SIPI,
//! [`crate::arch::smp`]), each reporting the APIC ID the MADT gives it.
//!
//! `RESULT test=smp listed=N up=M ids=a,b,… tsc_checked=K tsc_warped=W
//! verdict=pass` when M = N, and a TSC warp found by an AP's check (Linux
//! `tsc_sync.c`) left the TSC marked unstable. A one-CPU machine passes
//! with nothing to start. Each AP then takes 10 fixed IPIs from the BSP
//! (`ipis_taken` must be all of them), on top of its own tick.

use crate::arch::smp;
use crate::rig::result::{Line, TextBuf, Verdict};

use super::{report, Ctx};

/// IPIs sent to each AP.
const PINGS: u32 = 10;

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let listed = ctx.platform.apic_ids.count();
    let r = smp::report().unwrap_or(smp::SmpReport {
        up: 1,
        listed: listed.max(1),
        ..smp::SmpReport::default()
    });
    let mut ids: TextBuf<128> = TextBuf::new();
    let bsp = crate::platform::apic::get().map_or(0, |l| l.current_id());
    let _ = core::fmt::Write::write_fmt(&mut ids, format_args!("{bsp}"));
    for i in 1..smp::MAX_CPUS {
        if let Some(id) = smp::ap_apic_id(i) {
            let _ = core::fmt::Write::write_fmt(&mut ids, format_args!(",{id}"));
        }
    }
    let mut l = Line::result("smp");
    l.field("listed", r.listed)
        .field("up", r.up)
        .text("ids", ids.as_str());
    if let Some(id) = r.first_missing {
        l.field("missing", id);
    }
    // The TSC warp check each AP ran with the BSP: a warp must have left
    // the TSC marked unstable.
    let checked = (1..smp::MAX_CPUS).filter_map(smp::warp_result).count();
    l.field("tsc_checked", checked)
        .field("tsc_warped", r.warped)
        .field("max_warp_cycles", r.max_warp);
    let tsc_unstable = crate::embed::kernel::with(|k| {
        k.tick
            .clocksources()
            .iter()
            .any(|e| e.name() == "tsc" && e.is_unstable())
    })
    .unwrap_or(false);
    let warp_handled = r.warped == 0 || tsc_unstable;
    // Each AP takes IPIs: PINGS fixed IPIs to each, every one handled.
    let aps = r.up.saturating_sub(1);
    let pinged = smp::ping_aps(PINGS);
    l.field("ipis_sent", aps * PINGS)
        .field("ipis_taken", pinged);
    let all_listed_ids_up = ctx
        .platform
        .apic_ids
        .as_slice()
        .iter()
        .all(|id| *id == bsp || (1..smp::MAX_CPUS).any(|i| smp::ap_apic_id(i) == Some(*id)));
    let pass = r.up == r.listed
        && r.skipped == 0
        && all_listed_ids_up
        && warp_handled
        // With TSC support built, every AP's check must have finished.
        && (!cfg!(feature = "tsc") || checked as u32 == aps)
        && pinged == aps * PINGS;
    report(l, if pass { Verdict::Pass } else { Verdict::Fail })
}
