//! `nohz`: 2 s of idle with one timer pending at 1.5 s, every interrupt
//! accounted for.
//!
//! ```text
//!   t0 ─────────── idle (idle_enter … idle_sleep / sti;hlt / idle_wake) ────────────┐
//!        timer at t0 + 1.5 s (the pending timer)   timer at t0 + 2 s (ends the window)│
//!   the interrupt path logs each interrupt: time, the expiry the device was
//!   programmed for, and what the tick layer did with it (tick, timers, deferment)
//! ```
//!
//! With the tick stopped (NO_HZ), an interrupt can only be for one of these
//! events, and the test accounts for every one:
//!
//! - **timers**: the pending one and the end-of-window one. Each runs once,
//!   never early; normally in an interrupt programmed for its expiry, but a
//!   late interrupt for an earlier event may find it due and run it too
//!   (*absorbed*: it then has no interrupt of its own). A forced wake-up
//!   that absorbs a timer ends its gap at the timer's expiry, as the
//!   timer's own interrupt would have (seen under TCG with the PIT's
//!   27 ms cap: a wake-up programmed 0.1 ms before the expiry, delivered
//!   0.3 ms late). The analysis itself is in [`crate::rig::idle`], tested on
//!   the host against logs captured here.
//! - **clocksource watchdog**: when a registered clocksource is
//!   `MUST_VERIFY` (a TSC without CPUID's invariant bit: TCG, KVM without
//!   `+invtsc`), the tick layer checks it on CPU 0: every 0.5 s while the
//!   tick runs, as Linux does, but with the tick stopped it wakes the CPU
//!   only once the last check is [`tick::WatchdogSchedule::deferral`] old
//!   (1 s, the bound on how long a must-verify clock goes unchecked; less
//!   only against a reference that would wrap sooner). A check runs in the
//!   first interrupt at or after its regular due time — usually one that
//!   came for something else (*absorbed*, needing no interrupt of its
//!   own). The test follows the schedule from the last run before the
//!   window: an interrupt programmed `deferral` after the last run is a
//!   wake-up for it, and none may be missing by the window's end. On the
//!   HPET or LAPIC a 2 s window holds one (under TCG: `watchdog=1`, the
//!   next check absorbed by the 1.5 s timer); on the PIT none (its forced
//!   wake-ups, 27 ms apart, absorb every check).
//! - **forced**: the device cannot be programmed further than its max delta
//!   (PIT 0x7FFF at 1.193182 MHz = 27.46 ms; HPET 0x7FFF_FFFF at 100 MHz =
//!   21.47 s; LAPIC 0x7FFF_FFFF at 62.5 MHz = 34.36 s), nor the clocksource
//!   left unread longer than its max deferment (ACPI PM timer: 2.09 s; a
//!   64-bit TSC or HPET counter: none within the window); E is the
//!   smaller. These are the documented figures ([`crate::rig::documented`],
//!   derived there from the datasheets, QEMU's rates and Linux), not what
//!   the drivers say: the drivers' and the tick layer's reports (and the
//!   watchdog's interval and deferral) are checked against them
//!   (`documented=held/total`, a failure names the figure), so a wrong
//!   constant in a driver fails the test instead of moving its
//!   expectation. A forced interrupt must have been programmed at "re-arm time +
//!   E", with the next event beyond that (the *cap rule*, checked for each).
//!   With no lateness a gap between two other events then holds exactly
//!   `⌈(gap − E)/E⌉` ([`crate::rig::expect::forced_range`]): for the PIT, 54 in
//!   the 1.5 s to the timer. A gap runs from the re-arm that starts its
//!   chain (idle entry, or the idle loop's re-arm after the previous
//!   event, which comes after the woken code ran), not from that event's
//!   interrupt: the cap counts from the re-arm. Lateness shifts the chain and can only remove
//!   forced interrupts — at most `⌈shift/E⌉` per gap, shift being how far
//!   the chain's last one was programmed behind `start + n·E` — and each
//!   absorbed event may remove one more.
//! - **ticks**: none.
//! - **stale**: an interrupt that arrives well before what the device is
//!   programmed for was raised for its previous programming: the tick (or a
//!   forced wake-up) expired while the idle loop was re-arming the device
//!   later, and a raised interrupt cannot be withdrawn (LAPIC IRR, PIT OUT
//!   edge). Seen at idle entry under the software KVM here, whose trapped
//!   `cli`/`sti`/`wrmsr` make the re-arm slower than a tick period's rest.
//!   Only the tick in flight at idle entry can be one: at most one stale
//!   interrupt is allowed, the window's first, arriving within a tick
//!   period and [`SLACK`] of idle entry ([`Measured::stale_until`]: that
//!   tick was due within a period of it); any other fails the test.
//!   Counted and shown (`stale=`), not charged to the idle period's events
//!   (the tick layer only re-arms for it, and, finding the interrupt
//!   early, checks the clocks once).
//! - **the tick kept at idle entry**: when the busy CPU's next tick is
//!   due within the device's min delta, idle keeps the tick for that round
//!   (`tick::TickSystem::idle_sleep`) so the interrupt, raised or about to
//!   be, does its tick work instead of arriving stale. It is the window's
//!   first interrupt, with the tick not yet stopped, within the same
//!   bound; shown as `entry_tick=`, not charged to the idle period, and it
//!   and a stale interrupt together are one too many.
//!
//! So the line states `expected` = 2 + wake-ups for the watchdog + the
//! forced count without lateness, and the verdict requires every interrupt to be one of
//! the above (at most one stale or kept tick, at entry), the cap rule and the watchdog schedule to hold, both timers to
//! have run, and `interrupts` to be `expected` less at most the lateness
//! allowance (`allow`; 0 when nothing was late by a whole E).
//!
//! With the tick kept (`nohz=off`, or a device without one-shot), the
//! interrupts are the ticks (window × HZ, tolerance as in `periodic`) plus,
//! in high-res mode, timers and watchdog checks between ticks; the matrix's
//! `nohz=off` run shows the difference.
//!
//! Times are compared within [`SLACK`] (1 ms), and a re-arm may come up to
//! [`REARM_MAX`] after its interrupt (tens of µs under TCG, up to 1.7 ms
//! under the software KVM here); the categories are ≥ 24 ms apart. The
//! watchdog's schedule decides first (an interrupt programmed `deferral`
//! after the last check ran is a wake-up for the next one), then the cap.

use clockevents::CpuId;
use clocksource::{ClockSourceFlags, Ktime, Nanos, Watchdog};
use tick::{TickMode, MAX_CLOCK_SOURCES};

use super::{report, Ctx, Milli, TickState};
use crate::embed::kernel::{self, IrqRecord, IRQ_LOG_LEN};
use crate::rig::expect::{Micros, TickAccount, MEASURE_ATTEMPTS};
use crate::rig::result::{Line, Verdict};
use crate::{embed::sources, rig::documented};

pub use crate::rig::idle::{
    analyse, classify_all, Analysis, Breakdown, Measured, Reason, REARM_MAX, SLACK,
    WATCHDOG_INTERVAL,
};

/// The idle window.
pub const WINDOW: Nanos = Nanos::from_secs(2);
/// When the pending timer expires.
pub const PENDING_AT: Nanos = Nanos::from_millis(1500);
/// Tag of this test's timers.
const TAG: u64 = 0x040A_0000_0000;

/// Idles from now until the last of `at` (offsets from now) has run, with
/// timers at each; the interrupt log records every interrupt meanwhile.
///
/// The cap and the watchdog's timing are the documented figures
/// ([`crate::rig::documented`]), each beside what the driver or the tick layer
/// reports (in [`Measured::figures`], which the verdict checks);
/// `lapic_error_ppm` is the LAPIC timer's calibration bound, if calibrated.
pub fn measure(at: &[Nanos], lapic_error_ppm: Option<u32>) -> Option<Measured> {
    let n = at.len().clamp(1, 2);
    let emulated = matches!(
        super::Accel::detect(),
        super::Accel::Tcg | super::Accel::Kvm
    );
    kernel::with_rec(|r| r.clear());
    let setup = kernel::with(|k| {
        let state = TickState::of(k);
        let reported_delta =
            sources::tick_device(k).map_or(Nanos::MAX, |(_, d)| sources::max_delta_ns(&d.info()));
        let delta = documented::device_max_delta(
            state.device,
            reported_delta,
            lapic_error_ppm.unwrap_or(0),
            emulated,
        );
        let reported_deferment = k.tick.timekeeper().max_deferment();
        let deferment = documented::clock_max_deferment(state.clocksource, reported_deferment);
        // Before the registry is held: the schedule is read under the
        // same (timekeeping) lock.
        let schedule = k.tick.watchdog_schedule();
        let clocks = k.tick.clocksources();
        let watched = |e: &&clocksource::Entry<'_>| {
            e.flags().contains(ClockSourceFlags::MUST_VERIFY) && !e.is_unstable()
        };
        let watchdog = clocks.iter().any(|e| watched(&e));
        // The deferral's bound, from the documented max deferments of the
        // watched clocks and of the watchdog's reference.
        let doc_deferment = |name| documented::clock_max_deferment(name, Nanos::ZERO);
        let watched_deferment = clocks
            .iter()
            .filter(watched)
            .filter_map(|e| doc_deferment(e.name()))
            .map(|f| f.documented)
            .min();
        let reference_deferment = Watchdog::<MAX_CLOCK_SOURCES>::pick_reference(&clocks)
            .and_then(|id| clocks.get(id))
            .and_then(|e| doc_deferment(e.name()))
            .map(|f| f.documented);
        // The registry is held (the timekeeping lock): let go before the
        // clock is read.
        drop(clocks);
        let deferral = match (schedule, watched_deferment, reference_deferment) {
            (Some(s), Some(w), Some(r)) => Some(documented::watchdog_deferral(w, r, s.deferral)),
            _ => None,
        };
        let t0 = k.tick.now();
        let mut expiries = [Ktime::MAX; 2];
        for (i, d) in at.iter().take(n).enumerate() {
            expiries[i] = t0.saturating_add(*d);
            let _ = k.tick.add_timer(CpuId::BOOT, expiries[i], TAG | i as u64);
        }
        Measured {
            state,
            t0,
            t_idle: t0,
            t_end: t0,
            expiries,
            timers: n,
            ran: [None; 2],
            max_delta: delta.map_or(reported_delta, |f| f.value()),
            max_deferment: deferment.map_or(reported_deferment, |f| f.value()),
            period: k.tick.period(),
            watchdog,
            wd_last: schedule.map_or(t0, |s| s.last_run),
            wd_deferral: deferral.map_or_else(
                || schedule.map_or(WATCHDOG_INTERVAL, |s| s.deferral),
                |f| f.value(),
            ),
            dropped: 0,
            figures: [
                delta,
                deferment,
                Some(documented::watchdog_interval(
                    clocksource::watchdog::WATCHDOG_INTERVAL,
                )),
                deferral,
            ],
        }
    })?;
    let end = TAG | (n as u64 - 1);
    let mut m = setup;
    // Log from the first idle_sleep on (interrupts are off from here to the
    // halt): a tick of the busy CPU before idle entry is not idle's.
    let mut started = false;
    kernel::idle_until(|k| {
        if !started {
            started = true;
            m.t_idle = k.tick.now();
            kernel::with_irq_log(|l| l.start(true));
        }
        let done = kernel::with_rec(|r| r.has(end));
        if done {
            // Stop before idle_exit restarts the tick: its first tick is
            // not the idle period's.
            m.t_end = k.tick.now();
            kernel::with_irq_log(|l| l.stop());
        }
        done
    });
    m.dropped = kernel::with_irq_log(|l| l.dropped());
    kernel::with_rec(|r| {
        for f in r.fires() {
            if f.data & !0xF == TAG && ((f.data & 0xF) as usize) < n {
                m.ran[(f.data & 0xF) as usize] = Some(f.at);
            }
        }
    });
    Some(m)
}

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return super::cannot_run("nohz", Verdict::Fail, "no kernel");
    };
    if state.mode == TickMode::NoDevice {
        return super::cannot_run("nohz", Verdict::Fail, "no tick device");
    }
    let Some(mut m) = measure(&[PENDING_AT, WINDOW], ctx.inv.lapic_error_ppm) else {
        return super::cannot_run("nohz", Verdict::Fail, "no kernel");
    };
    // With the tick kept, a window the host starved of ticks is measured
    // again, as `periodic` does (`crate::rig::expect::MEASURE_ATTEMPTS`); the
    // verdict is on the last one.
    let mut windows = 1;
    while !state.mode.is_nohz()
        && windows < MEASURE_ATTEMPTS
        && !kept_tick_account(&m).lost_ok(ctx.loss)
    {
        let Some(again) = measure(&[PENDING_AT, WINDOW], ctx.inv.lapic_error_ppm) else {
            break;
        };
        m = again;
        windows += 1;
    }
    let a = kernel::with_irq_log(|l| analyse(&m, l.records()));
    let window = m.t_end.saturating_since(m.t_idle);
    let mut l = Line::result("nohz");
    state.fields(&mut l);
    let held = m
        .figures
        .iter()
        .flatten()
        .filter(|f| f.holds(m.span()))
        .count();
    let figures = m.figures.iter().flatten().count();
    l.field("window_ms", Milli(window.as_nanos() / 1000))
        .field("interrupts", a.interrupts)
        .field("documented", format_args!("{held}/{figures}"));
    let ok = if state.mode.is_nohz() {
        let expected = a.expected(2);
        l.field("expected", expected)
            .field("allow", a.allowance)
            .field("timer", a.timer)
            .field("watchdog", a.watchdog)
            .field("forced", a.forced)
            .field("forced_ideal", a.forced_ideal)
            .field("absorbed", a.timers_absorbed + a.watchdog_absorbed)
            .field(
                "cap_ms",
                Milli(m.cap().min(Nanos::from_secs(1_000_000)).as_nanos() / 1000),
            )
            .field("shift_us", Micros(a.shift.as_nanos()))
            .field("stale", a.stale)
            .field("entry_tick", a.entry_tick)
            .field("ticks", a.tick)
            .field("unexplained", a.unexplained);
        let failed = a.nohz_failures(&m);
        if !failed.as_str().is_empty() {
            l.text("failed", failed.as_str().trim_end());
        }
        failed.as_str().is_empty()
    } else {
        let account = kept_tick_account(&m);
        let ticks = account.delivered;
        l.field("ticks", ticks);
        super::account_fields(&account, &mut l);
        l.field("windows", windows)
            .field("timer", a.timer)
            .field("watchdog", a.watchdog)
            .field("unexplained", a.unexplained);
        if let Some(r) = state.reason {
            l.text("kept_because", r);
        }
        let failed = account.failures(m.period, ctx.loss);
        if !failed.as_str().is_empty() {
            l.text("failed", failed.as_str().trim_end());
        }
        let ticks_fine = failed.as_str().is_empty();
        ticks_fine && a.unexplained == 0 && a.timers_ran == 2 && m.dropped == 0
    };
    if !ok {
        kernel::with_irq_log(|l| dump(&m, l.records()));
    }
    report(l, Verdict::from_bool(ok))
}

/// The kept tick's account of the window `m` measured, from the interrupt
/// log: the ticks from the first logged one to the end-of-window timer's
/// interrupt, judged as `periodic` judges its window
/// (`crate::rig::expect::TickAccount`). The window starts at the first tick's
/// delivery: one the host delivers late (the emulating KVM here, by ms)
/// only shortens the first interval.
fn kept_tick_account(m: &Measured) -> TickAccount {
    let mut arrivals = [Ktime::ZERO; IRQ_LOG_LEN];
    let mut scratch = [0u64; IRQ_LOG_LEN];
    let (n, end) = kernel::with_irq_log(|l| {
        let mut n = 0;
        for r in l.records().iter().filter(|r| r.ticks > 0) {
            arrivals[n] = r.at;
            n += 1;
        }
        (n, l.records().last().map_or(m.t_end, |r| r.at))
    });
    let t0 = if n > 0 { arrivals[0] } else { m.t_idle };
    TickAccount::new(t0, end, &arrivals[1.min(n)..n], m.period, &mut scratch)
}

/// Prints the logged interrupts (on failure: what the verdict saw).
pub fn dump(m: &Measured, log: &[IrqRecord]) {
    crate::println!(
        "nohz: {} interrupts from t0={} (timers at +{} +{}, ran at {:?} {:?}), cap {}: \
         wd={} wd_last=-{} wd_deferral={}",
        log.len(),
        m.t0,
        Micros(m.expiries[0].saturating_since(m.t0).as_nanos()),
        Micros(m.expiries[1].saturating_since(m.t0).as_nanos()),
        m.ran[0].map(|t| Micros(t.saturating_since(m.t0).as_nanos())),
        m.ran[1].map(|t| Micros(t.saturating_since(m.t0).as_nanos())),
        m.cap(),
        m.watchdog,
        Micros(m.t0.saturating_since(m.wd_last).as_nanos()),
        Micros(m.wd_deferral.as_nanos()),
    );
    for f in m.figures.iter().flatten() {
        crate::println!(
            "  {}: reported {}, documented {} ({:?}): {}",
            f.what,
            f.reported,
            f.documented,
            f.check,
            if f.holds(m.span()) {
                "holds"
            } else {
                "DOES NOT HOLD"
            }
        );
    }
    let mut reasons = [Reason::Unexplained; IRQ_LOG_LEN];
    classify_all(m, log, &mut reasons);
    let mut prev = m.t_idle;
    for (i, r) in log.iter().enumerate().take(300) {
        crate::println!(
            "  {i:>4} at +{} for +{} (+{} after the previous) stopped={} ticks={} timers={} defer={} armed=+{} → {:?}",
            Micros(r.at.saturating_since(m.t0).as_nanos()),
            Micros(r.programmed.saturating_since(m.t0).as_nanos()),
            Micros(r.programmed.saturating_since(prev).as_nanos()),
            r.stopped,
            r.ticks,
            r.timers,
            r.deferment,
            Micros(r.armed.saturating_since(m.t0).as_nanos()),
            reasons[i]
        );
        prev = r.at;
    }
}
