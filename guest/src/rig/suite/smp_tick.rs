//! The tick on every CPU: `smp-periodic`, `smp-nohz`, `smp-cross`,
//! `smp-broadcast`, `smp-duty`. Each AP runs its own LAPIC tick and idle
//! loop ([`crate::embed::aps`]); CPU 0 runs the test and tells the APs
//! what to do ([`aps::set_mode`]). On one CPU each test says so and skips.
//!
//! | test | what it proves |
//! |---|---|
//! | `smp-periodic` | every CPU busy 1 s: each ticks at HZ on its own device (count per CPU, lost ones within the host's [`LossBound`], none past the window) |
//! | `smp-nohz` | every CPU idle 1 s with one timer each (CPU 0 two: its own and the window's end), staggered 100 ms: each CPU takes exactly its timers' interrupts, its max-deferment wake-ups and (the watchdog's CPU) its wake-ups for the clocksource watchdog, plus at most one stale tick; idle interrupts/s reported. Needs NO_HZ |
//! | `smp-cross` | 1000 timers added on CPU 0 for CPUs 1..N−1 (200 µs apart): each fires on its CPU, never early; lateness p50/p99/max; kick IPIs sent and taken |
//! | `smp-broadcast` | `idle=deep`: 25 timers per CPU, 20 ms apart, every CPU in deep idle (LAPIC off): each fires on its CPU, never early, woken by the broadcast device's IPIs — exactly one per AP timer, as the simulator's scenario counts; on per-CPU HPET channels (`-global hpet.msi=on`) no broadcast IPI at all, each CPU woken by its own channel |
//! | `smp-duty` | CPU 0 idles 10 s, tick stopped, while CPU 1 runs: CPU 1 holds the timekeeping duty and ticks, jiffies and time stay right; then the reverse |
//!
//! Tolerances: counts of interrupts are exact where the tick layer decides
//! them (a timer's interrupt, a cap's wake-up, a broadcast IPI); ticks on a
//! busy CPU lose what the host loses ([`LossBound`], the `periodic` test's
//! reasoning); lateness is reported, not judged (the host's). Time over
//! `smp-duty`'s 10 s is judged against the calibration reference by the
//! TSC's calibration error (what boot measured), plus 20 µs for the reads.

use clockevents::CpuId;
use clocksource::{ClockSource, Ktime, Nanos};
use tick::{CpuStats, IdleDepth, TickMode};

use super::clocksource::Counted;
use super::{report, Ctx, Milli, TickState};
use crate::arch::smp;
use crate::embed::aps::{self, ApMode};
use crate::embed::kernel::{self, IrqCounts, CPUS};
use crate::embed::sources;
use crate::rig::expect::{LossBound, Micros, MEASURE_ATTEMPTS};
use crate::rig::result::{Line, TextBuf, Verdict};

/// Timer data of this module's timers: the tag in the top bits, the index
/// in the low ones.
const TAG: u64 = 0x5350_0000_0000_0000;
/// The mask of the index part.
const INDEX: u64 = 0xFFFF_FFFF;

/// The CPUs that run a tick loop: CPU 0 and every AP that is up and ready.
fn cpus_up() -> impl Iterator<Item = usize> {
    (0..CPUS).filter(|&i| i == 0 || (smp::ap_apic_id(i).is_some() && aps::ready(i)))
}

/// Every CPU's tick statistics and interrupt counts, from `k`.
fn stats_of(k: &kernel::Kernel) -> [(CpuStats, IrqCounts); CPUS] {
    core::array::from_fn(|i| {
        let s = k
            .tick
            .cpu_info(CpuId::new(i as u32))
            .map(|c| c.stats)
            .unwrap_or_default();
        (s, k.counts(i))
    })
}

/// Every CPU's tick statistics and interrupt counts.
fn snapshot() -> [(CpuStats, IrqCounts); CPUS] {
    kernel::with(|k| stats_of(k)).unwrap_or([(CpuStats::default(), IrqCounts::default()); CPUS])
}

/// Sets every AP's mode and gives them 20 ms to act on it.
fn set_aps(mode: ApMode) {
    for i in cpus_up().skip(1) {
        aps::set_mode(i, mode);
    }
    kernel::wait(Nanos::from_millis(20));
}

/// A comma-separated list of `f(cpu)` over [`cpus_up`].
fn per_cpu(f: impl Fn(usize) -> u64) -> TextBuf<96> {
    let mut t = TextBuf::new();
    for (n, i) in cpus_up().enumerate() {
        let sep = if n == 0 { "" } else { "," };
        let _ = core::fmt::Write::write_fmt(&mut t, format_args!("{sep}{}", f(i)));
    }
    t
}

/// Every test's start: CPU 0's tick state, or the verdict already given
/// (skip on one CPU, fail without a kernel).
fn start(test: &str) -> Result<TickState, Verdict> {
    if cpus_up().count() < 2 {
        return Err(super::cannot_run(test, Verdict::Skip, "one CPU"));
    }
    TickState::now().ok_or_else(|| super::cannot_run(test, Verdict::Fail, "no kernel"))
}

/// Adds a timer on `cpu` from CPU 0, sending the kick it asks for.
fn add_on(k: &mut kernel::Kernel, cpu: usize, at: Ktime, data: u64) -> bool {
    match k
        .tick
        .add_timer_from(CpuId::BOOT, CpuId::new(cpu as u32), at, data)
    {
        Ok((_, kick)) => {
            k.kick(CpuId::BOOT, kick);
            true
        }
        Err(e) => {
            log::warn!("smp: timer for cpu{cpu} refused: {e}");
            false
        }
    }
}

/// Whether a recorded timer is one of this module's.
fn ours(data: u64) -> bool {
    data & !INDEX == TAG
}

/// How many of this module's timers the recorder has seen fire.
fn fired_count() -> usize {
    kernel::with_rec(|r| r.fires().iter().filter(|f| ours(f.data)).count())
}

/// What the recorder saw of this module's timers: `(fired, wrong CPU,
/// early)` and the lateness samples (ns) in `late`, checked against
/// `cpu_of(index)`.
fn fires_of(cpu_of: impl Fn(u64) -> usize, late: &mut [u64]) -> (usize, usize, usize) {
    kernel::with_rec(|r| {
        let (mut fired, mut wrong, mut early) = (0, 0, 0);
        for f in r.fires().iter().filter(|f| ours(f.data)) {
            if f.cpu as usize != cpu_of(f.data & INDEX) {
                wrong += 1;
            }
            if f.found_at < f.expires {
                early += 1;
            }
            if let Some(slot) = late.get_mut(fired) {
                *slot = f.at.saturating_since(f.expires).as_nanos();
            }
            fired += 1;
        }
        (fired, wrong, early)
    })
}

/// Adds `late_p50_us`, `late_p99_us`, `late_max_us` for the samples.
fn lateness(l: &mut Line, late: &mut [u64]) {
    late.sort_unstable();
    let at = |q: usize| late.get((late.len() * q / 100).min(late.len().saturating_sub(1)));
    if let (Some(p50), Some(p99), Some(max)) = (at(50), at(99), late.last()) {
        l.field("late_p50_us", Micros(*p50))
            .field("late_p99_us", Micros(*p99))
            .field("late_max_us", Micros(*max));
    }
}

/// Polls (CPU 0 busy, its tick running) until `n` of this module's timers
/// have run or `deadline` passed.
fn wait_fired(n: usize, deadline: Ktime) {
    while kernel::now() < deadline && fired_count() < n {
        kernel::halt_once();
    }
}

/// `smp-periodic`.
pub fn periodic(ctx: &Ctx<'_>) -> Verdict {
    let state = match start("smp-periodic") {
        Ok(s) => s,
        Err(v) => return v,
    };
    set_aps(ApMode::Busy);
    let period = kernel::with(|k| k.tick.period()).unwrap_or(Nanos::ZERO);
    // The window whose worst CPU lost fewest ticks, of up to
    // MEASURE_ATTEMPTS (the host's losses come in bursts).
    let mut best: Option<(u64, [u64; CPUS], u64, Nanos)> = None;
    let mut attempts = 0;
    while attempts < MEASURE_ATTEMPTS {
        attempts += 1;
        super::sync_to_interrupt();
        let at = || kernel::with(|k| (k.tick.now(), stats_of(k)));
        let Some((t0, s0)) = at() else { break };
        kernel::wait(Nanos::from_secs(1));
        let Some((t1, s1)) = at() else { break };
        let window = t1.saturating_since(t0);
        let expected = window.as_nanos() / period.as_nanos().max(1);
        let ticks: [u64; CPUS] = core::array::from_fn(|i| s1[i].0.ticks - s0[i].0.ticks);
        let worst = cpus_up()
            .map(|i| expected.saturating_sub(ticks[i]))
            .max()
            .unwrap_or(0);
        if best.is_none_or(|b| worst < b.0) {
            best = Some((worst, ticks, expected, window));
        }
        if ctx.loss.allows(worst, expected) {
            break;
        }
    }
    set_aps(ApMode::Idle);
    let Some((_, ticks, expected, window)) = best else {
        return Verdict::Fail;
    };
    let mut l = Line::result("smp-periodic");
    state.fields(&mut l);
    let ok = cpus_up().all(|i| {
        // Two more than ⌊window / period⌋ at most: one for the window's
        // phase, one for a tick due before t0 and handled after it.
        ticks[i] <= expected + 2 && ctx.loss.allows(expected.saturating_sub(ticks[i]), expected)
    });
    l.field("cpus", cpus_up().count())
        .text("ticks", per_cpu(|i| ticks[i]).as_str())
        .field("expected", expected)
        .field("window_ms", Milli(window.as_nanos() / 1000))
        .field("windows", attempts)
        .field(
            "loss_bound",
            match ctx.loss {
                LossBound::Native => "1",
                LossBound::Translated => "1/20",
                LossBound::Emulated => "1/10",
            },
        );
    report(l, Verdict::from_bool(ok))
}

/// `smp-nohz`.
pub fn nohz(_ctx: &Ctx<'_>) -> Verdict {
    const TEST: &str = "smp-nohz";
    let state = match start(TEST) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let all_nohz = kernel::with(|k| cpus_up().all(|i| k.tick.mode(CpuId::new(i as u32)).is_nohz()))
        .unwrap_or(false);
    if !all_nohz {
        return super::cannot_run(TEST, Verdict::Skip, "not every CPU is in a NO_HZ mode");
    }
    set_aps(ApMode::Idle);
    kernel::with_rec(|r| r.clear());
    let base = kernel::now().saturating_add(Nanos::from_millis(30));
    let step = Nanos::from_millis(100);
    let n = cpus_up().count();
    let added = kernel::with(|k| {
        cpus_up().all(|i| {
            let at = base.saturating_add(Nanos::from_nanos(step.as_nanos() * (i as u64 + 1)));
            add_on(k, i, at, TAG | i as u64)
        })
    })
    .unwrap_or(false);
    let end = base.saturating_add(Nanos::from_secs(1));
    kernel::wait_until(base);
    let s0 = snapshot();
    // CPU 0 idles too, until the window's end (its second timer).
    let woke = kernel::sleep_until(end, TAG | 0xFFFF, false);
    let s1 = snapshot();
    let window = woke.unwrap_or(end).saturating_since(base);
    let mut late = [0u64; CPUS];
    let (fired, wrong, early) = fires_of(|i| if i == 0xFFFF { 0 } else { i as usize }, &mut late);
    let mut l = Line::result(TEST);
    state.fields(&mut l);
    let d = |i: usize, f: fn(&CpuStats) -> u64| f(&s1[i].0) - f(&s0[i].0);
    // Each CPU: its timers (one each; CPU 0 also the window's end), each a
    // wake-up of its own (100 ms apart), its max-deferment wake-ups and,
    // on the watchdog's CPU, the wake-ups for its deadline (a must-verify
    // clocksource: at most one a second, Linux's bound).
    let timers = |i: usize| if i == 0 { 2 } else { 1 };
    let caps = |i: usize| d(i, |s| s.max_deferment_wakeups) + d(i, |s| s.watchdog_wakeups);
    let expected = |i: usize| timers(i) + caps(i);
    let irqs = |i: usize| d(i, |s| s.interrupts);
    let ok_cpu = |i: usize| {
        d(i, |s| s.timers_fired) == timers(i) && (expected(i)..=expected(i) + 1).contains(&irqs(i))
    };
    let total: u64 = cpus_up().map(irqs).sum();
    l.field("cpus", n)
        .text("irqs", per_cpu(irqs).as_str())
        .text("expected", per_cpu(expected).as_str())
        .text(
            "deferment",
            per_cpu(|i| d(i, |s| s.max_deferment_wakeups)).as_str(),
        )
        .text(
            "watchdog",
            per_cpu(|i| d(i, |s| s.watchdog_wakeups)).as_str(),
        )
        .field("fired", fired)
        .field("wrong_cpu", wrong)
        .field("early", early)
        .field(
            "idle_irqs_per_s",
            Milli(total * 1_000_000_000_000 / window.as_nanos().max(1)),
        );
    lateness(&mut l, &mut late[..fired.min(CPUS)]);
    let ok = added
        && woke.is_some()
        && fired == n + 1
        && wrong == 0
        && early == 0
        && cpus_up().all(ok_cpu);
    report(l, Verdict::from_bool(ok))
}

/// Timers of `smp-cross`.
const CROSS_TIMERS: u64 = 1000;

/// `smp-cross`.
pub fn cross(_ctx: &Ctx<'_>) -> Verdict {
    const TEST: &str = "smp-cross";
    let state = match start(TEST) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let mut l = Line::result(TEST);
    state.fields(&mut l);
    let ok = cross_run(&mut l);
    report(l, Verdict::from_bool(ok))
}

/// The `smp-cross` run (also the `bench-cross` benchmark's): its figures
/// added to `l`; whether its assertions held. Needs two CPUs up.
pub fn cross_run(l: &mut Line) -> bool {
    set_aps(ApMode::Idle);
    let targets: [usize; CPUS] = {
        let mut t = [0; CPUS];
        for (n, i) in cpus_up().skip(1).enumerate() {
            t[n] = i;
        }
        t
    };
    let n_aps = cpus_up().count().saturating_sub(1).max(1);
    let cpu_of = |n: u64| targets[(n as usize) % n_aps];
    kernel::with_rec(|r| r.clear());
    let s0 = snapshot();
    let base = kernel::now().saturating_add(Nanos::from_millis(20));
    let added = kernel::with(|k| {
        (0..CROSS_TIMERS)
            .filter(|&n| {
                let at = base.saturating_add(Nanos::from_micros(200 * n));
                add_on(k, cpu_of(n), at, TAG | n)
            })
            .count() as u64
    })
    .unwrap_or(0);
    let last = base.saturating_add(Nanos::from_micros(200 * CROSS_TIMERS));
    wait_fired(
        CROSS_TIMERS as usize,
        last.saturating_add(Nanos::from_secs(2)),
    );
    let s1 = snapshot();
    let mut late = [0u64; CROSS_TIMERS as usize];
    let (fired, wrong, early) = fires_of(cpu_of, &mut late);
    let sent = s1[0].1.kicks_sent - s0[0].1.kicks_sent;
    let taken: u64 = cpus_up()
        .skip(1)
        .map(|i| s1[i].1.kicks - s0[i].1.kicks)
        .sum();
    l.field("cpus", n_aps + 1)
        .field("timers", added)
        .field("fired", fired)
        .field("wrong_cpu", wrong)
        .field("early", early)
        .field("kicks_sent", sent)
        .field("kicks_taken", taken)
        .text(
            "fired_per_cpu",
            per_cpu(|i| s1[i].0.timers_fired - s0[i].0.timers_fired).as_str(),
        );
    lateness(l, &mut late[..fired.min(CROSS_TIMERS as usize)]);
    // A kick may find an earlier one still pending (two IPIs of one vector
    // merge in the IRR): taken ≤ sent, and in a one-shot mode at least one
    // was needed (the APs idle with their tick stopped, programmed for
    // nothing); a periodic tick runs the timers at the next tick unkicked.
    let oneshot = kernel::with(|k| {
        cpus_up()
            .skip(1)
            .all(|i| k.tick.mode(CpuId::new(i as u32)).is_oneshot())
    })
    .unwrap_or(true);
    added == CROSS_TIMERS
        && fired == CROSS_TIMERS as usize
        && wrong == 0
        && early == 0
        && taken <= sent
        && (taken >= 1 || !oneshot)
}

/// Timers per CPU in `smp-broadcast`.
pub const BROADCAST_TIMERS: u64 = 25;
/// Their spacing on one CPU.
pub const BROADCAST_STEP: Nanos = Nanos::from_millis(20);
/// The offset between CPUs' timers.
pub const BROADCAST_STAGGER: Nanos = Nanos::from_millis(3);

/// `smp-broadcast`.
pub fn broadcast(_ctx: &Ctx<'_>) -> Verdict {
    const TEST: &str = "smp-broadcast";
    let state = match start(TEST) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if kernel::idle_depth() != IdleDepth::Deep {
        return super::cannot_run(TEST, Verdict::Skip, "needs idle=deep");
    }
    let ready = kernel::with(|k| {
        let bc = k.tick.broadcast_device().is_some();
        let c3stop = cpus_up().all(|i| {
            k.tick
                .cpu_device(CpuId::new(i as u32))
                .and_then(|d| k.tick.devices().get(d))
                .is_some_and(|d| d.info().features.contains(clockevents::Features::C3STOP))
        });
        // Every CPU on its own HPET channel (FSB), which runs in deep idle.
        let percpu = cpus_up().all(|i| {
            k.hpet_percpu(i).is_some()
                && k.tick.cpu_device(CpuId::new(i as u32)) == k.hpet_percpu(i)
        });
        (bc, c3stop, percpu)
    });
    let percpu = match ready {
        Some((_, _, true)) => true,
        Some((true, true, false)) => false,
        Some((false, true, false)) => {
            return super::cannot_run(TEST, Verdict::Fail, "no broadcast device")
        }
        _ => {
            return super::cannot_run(
                TEST,
                Verdict::Fail,
                "a tick device is neither C3STOP nor a per-CPU HPET channel",
            )
        }
    };
    set_aps(ApMode::Idle);
    kernel::with_rec(|r| r.clear());
    let n = cpus_up().count() as u64;
    let slot = |cpu: usize, j: u64| cpu as u64 * BROADCAST_TIMERS + j;
    let base = kernel::now().saturating_add(Nanos::from_millis(30));
    let at = |cpu: usize, j: u64| {
        base.saturating_add(Nanos::from_nanos(
            BROADCAST_STEP.as_nanos() * j + BROADCAST_STAGGER.as_nanos() * cpu as u64,
        ))
    };
    let s0 = snapshot();
    let added = kernel::with(|k| {
        let mut ok = true;
        for i in cpus_up() {
            for j in 0..BROADCAST_TIMERS {
                ok &= add_on(k, i, at(i, j), TAG | slot(i, j));
            }
        }
        ok
    })
    .unwrap_or(false);
    let end = at(CPUS, BROADCAST_TIMERS);
    // CPU 0 idles deep as well, until after the last timer.
    let woke = kernel::sleep_until(end, TAG | 0xFFFF, false);
    let s1 = snapshot();
    let mut late = [0u64; (BROADCAST_TIMERS as usize + 1) * CPUS];
    let cpu_of = |x: u64| {
        if x == 0xFFFF {
            0
        } else {
            (x / BROADCAST_TIMERS) as usize
        }
    };
    let (fired, wrong, early) = fires_of(cpu_of, &mut late);
    let d = |i: usize, f: fn(&IrqCounts) -> u64| f(&s1[i].1) - f(&s0[i].1);
    let sent: u64 = cpus_up().map(|i| d(i, |c| c.tick_ipis_sent)).sum();
    let taken: u64 = cpus_up().skip(1).map(|i| d(i, |c| c.tick_ipis)).sum();
    // Every AP timer needs one wake-up, which only the broadcast device can
    // give (the LAPIC is off in deep idle): one IPI each. CPU 0 takes the
    // broadcast interrupt and handles its own share in place. On per-CPU
    // HPET channels no broadcast is needed: none, each CPU's channel
    // interrupting it once per timer (at least).
    let want_ipis = if percpu {
        0
    } else {
        (n - 1) * BROADCAST_TIMERS
    };
    let channel_irqs = |i: usize| d(i, |c| c.hpet_percpu);
    let channels_ok = !percpu || cpus_up().all(|i| channel_irqs(i) >= BROADCAST_TIMERS);
    let mut l = Line::result(TEST);
    state.fields(&mut l);
    l.field(
        "broadcast",
        kernel::with(|k| k.tick.broadcast_device())
            .flatten()
            .unwrap_or("none"),
    )
    .field("cpus", n)
    .field("timers", n * BROADCAST_TIMERS)
    .field("fired", fired)
    .field("wrong_cpu", wrong)
    .field("early", early)
    .field("bc_ipis_sent", sent)
    .field("bc_ipis_taken", taken)
    .field("bc_ipis_expected", want_ipis)
    .text("lapic_irqs", per_cpu(|i| d(i, |c| c.lapic)).as_str())
    .text("hpet_channel_irqs", per_cpu(channel_irqs).as_str())
    .text("tick_ipis", per_cpu(|i| d(i, |c| c.tick_ipis)).as_str());
    let kept = fired.min(late.len());
    lateness(&mut l, &mut late[..kept]);
    let ok = added
        && woke.is_some()
        && fired as u64 == n * BROADCAST_TIMERS + 1
        && wrong == 0
        && early == 0
        && sent == want_ipis
        && taken == sent
        && channels_ok;
    report(l, Verdict::from_bool(ok))
}

/// How long each side of `smp-duty` idles.
pub const DUTY_IDLE: Nanos = Nanos::from_secs(10);

/// The calibration reference, as a clocksource (HPET, ACPI PM, PIT).
fn reference(ctx: &Ctx<'_>) -> Option<&'static dyn ClockSource> {
    match ctx.inv.reference? {
        "hpet" => sources::hpet_clocksource(),
        "acpi_pm" => sources::acpi_pm_clocksource(),
        _ => sources::pit_clocksource(),
    }
}

/// One side of `smp-duty`: `sleeper` idles [`DUTY_IDLE`] with its tick
/// stopped while `runner` stays busy. Returns whether it held, with its
/// fields added to `l` under `side`.
fn duty_side(ctx: &Ctx<'_>, l: &mut Line, side: &str, sleeper: usize, runner: usize) -> bool {
    let period = kernel::with(|k| k.tick.period())
        .unwrap_or(Nanos::ZERO)
        .as_nanos()
        .max(1);
    let reference = reference(ctx);
    kernel::with_rec(|r| r.clear());
    // Time and the reference read back to back, then jiffies and counts,
    // at each end (the counts take every CPU's lock, which a vCPU the host
    // has descheduled may hold: that wait must not come between the two
    // clocks compared).
    let Some((t0, mut rc, j0, s0)) = kernel::with(|k| {
        let t0 = k.tick.now();
        let rc = reference.map(|cs| Counted::new(cs, 0));
        (t0, rc, k.tick.jiffies().get(), stats_of(k))
    }) else {
        return false;
    };
    let end = t0.saturating_add(DUTY_IDLE);
    let mut duty_mid = None;
    if sleeper == 0 {
        aps::set_mode(runner, ApMode::Busy);
        // CPU 0 idles: the reference's wraps (ACPI PM 4.7 s, PIT 55 ms)
        // go unseen meanwhile, so this side's time check needs the HPET.
        let _ = kernel::sleep_until(end, TAG | 1, false);
    } else {
        aps::set_mode(sleeper, ApMode::Idle);
        while kernel::now() < end {
            kernel::halt_once();
            if let Some(r) = rc.as_mut() {
                r.read();
            }
            if duty_mid.is_none()
                && kernel::now() >= t0.saturating_add(Nanos::from_nanos(DUTY_IDLE.as_nanos() / 2))
            {
                duty_mid = kernel::with(|k| k.tick.do_timer_cpu()).flatten();
            }
        }
    }
    let Some((t1, ref_ns, j1, duty_end, s1)) = kernel::with(|k| {
        let t1 = k.tick.now();
        let ref_ns = rc.as_mut().map(|r| {
            let cycles = r.read();
            r.ns(cycles)
        });
        (
            t1,
            ref_ns,
            k.tick.jiffies().get(),
            k.tick.do_timer_cpu(),
            stats_of(k),
        )
    }) else {
        return false;
    };
    if sleeper == 0 {
        aps::set_mode(runner, ApMode::Idle);
    }
    let elapsed = t1.saturating_since(t0).as_nanos();
    let grid = t1.as_nanos() / period - t0.as_nanos() / period;
    let jiffies = j1 - j0;
    let d = |i: usize, f: fn(&CpuStats) -> u64| f(&s1[i].0) - f(&s0[i].0);
    let sleeper_irqs = d(sleeper, |s| s.interrupts);
    let runner_ticks = d(runner, |s| s.ticks);
    // The sleeper: its one timer (CPU 0's wake-up at the end; an AP has
    // none), its max-deferment wake-ups and its wake-ups for the watchdog
    // (while it was still the watchdog's CPU), plus one stale tick.
    let sleeper_timers = u64::from(sleeper == 0);
    let sleeper_expected = sleeper_timers
        + d(sleeper, |s| s.max_deferment_wakeups)
        + d(sleeper, |s| s.watchdog_wakeups);
    let expected_ticks = elapsed / period;
    let tsc_ppm = ctx.inv.tsc.map_or(1000, |(_, e)| u64::from(e));
    // Time against the reference (HPET only: the others wrap unseen while
    // CPU 0 sleeps): within the TSC's calibration error, + 20 µs of reads.
    let time_err = ref_ns
        .filter(|_| sleeper != 0 || ctx.inv.reference == Some("hpet"))
        .map(|r| (elapsed as i128 - r as i128).unsigned_abs());
    let time_bound = elapsed as u128 * tsc_ppm as u128 / 1_000_000 + 20_000;
    let mut key: TextBuf<32> = TextBuf::new();
    let mut f = |name: &str, v: &dyn core::fmt::Display| {
        key = TextBuf::format(format_args!("{side}_{name}"));
        l.field(key.as_str(), v);
    };
    f("jiffies", &jiffies);
    f("grid", &grid);
    f("sleeper_irqs", &sleeper_irqs);
    f("sleeper_expected", &sleeper_expected);
    f("runner_ticks", &runner_ticks);
    f("expected_ticks", &expected_ticks);
    // Who holds the duty while the sleeper sleeps: the runner. Read at the
    // end while CPU 0 slept (it wakes without taking a held duty back), in
    // the middle while CPU 0 runs.
    let duty = if sleeper == 0 { duty_end } else { duty_mid };
    f("duty", &duty.map_or(u64::MAX, |c| c.index() as u64));
    if let Some(e) = time_err {
        f("time_err_us", &Micros(e as u64));
    }
    let duty_ok = duty == Some(CpuId::new(runner as u32));
    jiffies.abs_diff(grid) <= 1
        && (sleeper_expected..=sleeper_expected + 1).contains(&sleeper_irqs)
        && ctx
            .loss
            .allows(expected_ticks.saturating_sub(runner_ticks), expected_ticks)
        // A tick whose grid point came just before t0, handled after it,
        // counts too (as for jiffies).
        && runner_ticks <= grid + 1
        && duty_ok
        && time_err.is_none_or(|e| e <= time_bound)
}

/// `smp-duty`.
pub fn duty(ctx: &Ctx<'_>) -> Verdict {
    const TEST: &str = "smp-duty";
    let state = match start(TEST) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if !kernel::with(|k| k.tick.mode(CpuId::BOOT).is_nohz()).unwrap_or(false) {
        return super::cannot_run(TEST, Verdict::Skip, "CPU 0 is not in a NO_HZ mode");
    }
    if state.mode == TickMode::NoDevice {
        return super::cannot_run(TEST, Verdict::Fail, "no tick device");
    }
    let Some(runner) = cpus_up().nth(1) else {
        return Verdict::Fail;
    };
    let mut l = Line::result(TEST);
    state.fields(&mut l);
    let a = duty_side(ctx, &mut l, "cpu0_idle", 0, runner);
    let b = duty_side(ctx, &mut l, "cpu0_busy", runner, 0);
    aps::set_mode(runner, ApMode::Idle);
    report(l, Verdict::from_bool(a && b))
}
