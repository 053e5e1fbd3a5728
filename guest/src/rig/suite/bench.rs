//! `bench-*`: the in-guest benchmarks behind `cargo xtask bench`.
//!
//! Benchmarks, not tests: each prints `BENCH <group> key=value …` lines
//! (the format of [`crate::rig::result`], the groups of `bench/linux`'s program
//! where the metric is the same) and passes unless it could not measure at
//! all. Nothing is judged on time.
//!
//! | test | group(s) | what |
//! |---|---|---|
//! | `bench-idle` | `idle` | timer interrupts/s over 10 s of idle with no timer pending but the one that ends the window (Linux: one `nanosleep` of 10 s); `forced` = interrupts that ran neither tick nor timer (the cap's, or a wake-up for the watchdog), `forced_ideal` = what the cap requires without lateness; `all_interrupts`, `all_per_s`: every CPU's (tick IPIs included; Linux: LOC + IRQ0 summed over CPUs) |
//! | `bench-cross` | `cross` | 1000 timers added on CPU 0 for CPUs 1..N−1, 200 µs apart (the `smp-cross` test): lateness p50/p99/max where they fire (callback − expiry), kick IPIs sent and taken |
//! | `bench-lateness` | `lateness`, `lateness_hist`, `lateness_parts` | a 1 ms absolute periodic timer, 2000 periods, timer advance off then auto: lateness where the idle loop resumes after `hlt` and at handler entry; `early` counts resumes before the deadline (at `resume`) and callbacks run before the expiry (at `entry`, where the handler itself may enter early on purpose: advance); `missed_periods` counts samples a whole period late, as Linux's program does  `lateness_hist`: the samples per bucket of [`HIST_EDGES_US`] at each point; `lateness_parts`: p50/p99/max of our handler (entry → after EOI), the return to the idle loop, and its wake path to the waiter ||
//! | `bench-read` | `clock_read` | one clocksource read through a timekeeper (Linux: `clock_gettime`), per clocksource; the TSC through the kernel's ordinary read `kernel::now` (`clock=tsc`, lock-free, `rdtsc` inline: `path=inline`), beside the timekeeper's generic read (`tsc-timekeeper`), `Timekeeper::monotonic_at` (`tsc-inline`) and the bare `rdtsc` + multiply-shift |
//! | `bench-program` | `program` | one `program_event` on the tick device, and the driver's bare `program(In(..))` (Linux's `set_next_event`) |
//! | `bench-nohz` | `nohz_path` | NO_HZ idle entry (`idle_enter` + `idle_sleep`) and exit (`idle_wake` + `idle_exit`) |
//! | `bench-cal` | `calibration` | LAPIC timer and TSC rates calibrated against each reference vs the true rate, error, time taken |
//! | `bench-timeline` | `timeline`, `timeline_window` | every tick-device interrupt of 2 s of idle with one timer at its end: time from the window's start, kind (tick, timer, forced, watchdog, …), the ending timer's marked `end=1`; then the window ([`super::timeline`]); `cargo xtask bench` draws them |
//! | `bench` | all but `idle` and `timeline` | |
//!
//! # Timing
//!
//! Short operations are bracketed by `rdtsc` (serialised by nothing: the
//! medians of 10⁴–10⁶ samples are what matter) and converted with the TSC
//! rate bring-up found; the median of an empty bracket is subtracted and
//! printed (`overhead_ns`). Clock reads are timed as Linux's program times
//! `clock_gettime`: the median difference of consecutive readings, in the
//! clock's own nanoseconds, so no bracket is involved.

use core::fmt::{self, Write as _};
use core::sync::atomic::Ordering;

use clockevents::{CpuId, DeviceState, EventDevice, Expired, NextEvent};
use clocksource::{Cycles, Hertz, InlineRead, Ktime, Nanos, Timekeeper};
use tick::{IdleDepth, TickMode, TimerAdvance};

use super::{Ctx, TickState};
use crate::embed::kernel;
use crate::embed::sources;
use crate::rig::expect::{nearest_rank, Micros};
use crate::rig::result::{Line, Verdict};

/// The idle window (Linux's program sleeps 10 s).
pub const IDLE_WINDOW: Nanos = Nanos::from_secs(10);
/// The periodic timer's period.
pub const PERIOD: Nanos = Nanos::from_millis(1);
/// Periods measured per timer-advance setting.
pub const PERIODS: usize = 2000;
/// Periods run first and not counted (timer advance learns its lead).
pub const WARMUP: usize = 100;
/// Clock reads per clocksource.
pub const READS: u32 = 1_000_000;
/// `program_event` calls.
pub const PROGRAMS: usize = 10_000;
/// NO_HZ entry/exit rounds.
pub const NOHZ_ROUNDS: usize = 1_000;
/// How far ahead the NO_HZ rounds' pending timer is: beyond the rounds
/// even where each costs ~200 µs (the software KVM here), so every round
/// stops the tick.
pub const NOHZ_TIMER: Nanos = Nanos::from_secs(10);
/// Histogram buckets: 1 ns wide below [`FINE`], 1 µs wide above it (up to
/// 32.8 ms; larger values count in the last bucket). The software KVM here
/// makes a register write cost tens of µs.
const BUCKETS: usize = 1 << 16;
/// Values below this have 1 ns buckets.
const FINE: u64 = 1 << 15;
/// Tag of this module's timers.
const TAG: u64 = 0x0BE0_0000_0000;

/// Runs one `bench-*` test; `None` for another name.
pub fn run(name: &str, ctx: &Ctx<'_>) -> Option<Verdict> {
    Some(match name {
        "bench" => {
            let mut v = Verdict::Pass;
            for f in [lateness, read, program, nohz_path, calibration] {
                if f(ctx) == Verdict::Fail {
                    v = Verdict::Fail;
                }
            }
            v
        }
        "bench-idle" => idle(ctx),
        "bench-lateness" => lateness(ctx),
        "bench-read" => read(ctx),
        "bench-program" => program(ctx),
        "bench-nohz" => nohz_path(ctx),
        "bench-cal" => calibration(ctx),
        "bench-timeline" => super::timeline::run(ctx),
        "bench-cross" => cross(),
        _ => return None,
    })
}

/// A `BENCH <group>` line with the tick state's fields.
fn line(group: &str) -> Line {
    let mut l = Line::bench(group);
    if let Some(s) = TickState::now() {
        s.fields(&mut l);
    }
    l
}

/// Prints a finished line; benchmarks pass.
fn emit(l: &Line) -> Verdict {
    crate::println!("{}", l.as_str());
    Verdict::Pass
}

/// A line saying why a group was not measured.
fn not_measured(group: &str, why: impl fmt::Display) -> Verdict {
    let mut l = line(group);
    l.text("skipped", why);
    emit(&l)
}

// ---- timing ---------------------------------------------------------------------

/// Reads the time-stamp counter.
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads a counter; it has no memory effects, and every
    // x86_64 CPU has it (bring-up only uses it as a clock when CPUID says
    // so; here it only brackets, and a wrong rate only scales figures).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC cycles to ns at the rate bring-up found.
#[derive(Clone, Copy)]
struct TscClock {
    hz: Hertz,
}

impl TscClock {
    fn get(ctx: &Ctx<'_>) -> Option<Self> {
        ctx.inv.tsc.map(|(hz, _)| TscClock { hz })
    }
    fn ns(&self, cycles: u64) -> u64 {
        (cycles as u128 * 1_000_000_000 / self.hz.get().max(1) as u128) as u64
    }
}

/// A 1-ns histogram for exact medians without storing samples.
struct Histogram {
    counts: [u32; BUCKETS],
    n: u64,
    sum: u64,
    min: u64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            n: 0,
            sum: 0,
            min: u64::MAX,
        }
    }
    fn clear(&mut self) {
        self.counts = [0; BUCKETS];
        self.n = 0;
        self.sum = 0;
        self.min = u64::MAX;
    }
    fn bucket(ns: u64) -> usize {
        if ns < FINE {
            ns as usize
        } else {
            ((FINE + (ns - FINE) / 1000) as usize).min(BUCKETS - 1)
        }
    }
    /// The smallest value of bucket `i`.
    fn floor(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE {
            i
        } else {
            FINE + (i - FINE) * 1000
        }
    }
    fn add(&mut self, ns: u64) {
        let i = Self::bucket(ns);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.n += 1;
        self.sum = self.sum.saturating_add(ns);
        self.min = self.min.min(ns);
    }
    /// The nearest-rank percentile `per_mille`/1000 (0 if empty): exact
    /// below [`FINE`], the 1 µs bucket's floor above.
    fn percentile(&self, per_mille: u64) -> u64 {
        let rank = (per_mille * self.n).div_ceil(1000).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return Self::floor(i);
            }
        }
        0
    }
    fn median(&self) -> u64 {
        self.percentile(500)
    }
    fn mean(&self) -> u64 {
        self.sum / self.n.max(1)
    }
}

/// One histogram, reused by every group (256 KiB: not on the stack).
static HIST: spin::Mutex<Histogram> = spin::Mutex::new(Histogram::new());

/// The median cost of an empty `rdtsc` bracket, in TSC cycles.
fn bracket_overhead() -> u64 {
    let mut h = HIST.lock();
    h.clear();
    for _ in 0..10_000 {
        let a = rdtsc();
        let b = rdtsc();
        h.add(b.wrapping_sub(a));
    }
    h.median()
}

// ---- idle -----------------------------------------------------------------------

/// `bench-cross`: 1000 timers added on CPU 0 for the other CPUs, as the
/// `smp-cross` test runs them; their lateness where they fire.
fn cross() -> Verdict {
    if crate::arch::smp::ap_apic_id(1).is_none() {
        return not_measured("cross", "one CPU");
    }
    let mut l = line("cross");
    if !super::smp_tick::cross_run(&mut l) {
        l.text("warning", "the smp-cross assertions failed");
    }
    emit(&l)
}

/// `bench-idle`: 10 s of idle, one timer at its end.
fn idle(_ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return not_measured("idle", "no kernel");
    };
    if state.mode == TickMode::NoDevice {
        return not_measured("idle", "no tick device");
    }
    super::sync_to_interrupt();
    let snap = |k: &mut kernel::Kernel| {
        let s = k
            .tick
            .cpu_info(CpuId::BOOT)
            .map(|i| i.stats)
            .unwrap_or_default();
        // Every CPU with a tick (the APs idle all along): Linux's figure is
        // LOC + IRQ0 summed over its CPUs.
        let ticking =
            (0..kernel::CPUS).filter(|&i| k.tick.mode(CpuId::new(i as u32)) != TickMode::NoDevice);
        let all = ticking.clone().map(|i| k.counts(i).total()).sum::<u64>();
        (k.tick.now(), k.counts(0).total(), s, all, ticking.count())
    };
    let Some((t0, n0, s0, a0, cpus)) = kernel::with(snap) else {
        return not_measured("idle", "no kernel");
    };
    if kernel::sleep_until(t0.saturating_add(IDLE_WINDOW), TAG | 1, false).is_none() {
        return not_measured("idle", "no timer slot");
    }
    let Some((t1, n1, s1, a1, _)) = kernel::with(snap) else {
        return not_measured("idle", "no kernel");
    };
    let window = t1.saturating_since(t0);
    let n = n1 - n0;
    let e = cap();
    // Without lateness a NO_HZ window of W holds ⌈(W − E)/E⌉ wake-ups forced
    // by the cap E (device max delta or clocksource max deferment); late
    // deliveries shift the chain and can only remove some.
    let forced_ideal = if state.mode.is_nohz() {
        *crate::rig::expect::forced_range(IDLE_WINDOW, e, Nanos::ZERO).end()
    } else {
        0
    };
    let milli_per_s = (n as u128 * 1_000_000_000_000 / window.as_nanos().max(1) as u128) as u64;
    let all = a1 - a0;
    let all_milli_per_s =
        (all as u128 * 1_000_000_000_000 / window.as_nanos().max(1) as u128) as u64;
    let mut l = line("idle");
    l.field("nohz", u8::from(state.mode.is_nohz()))
        .field("seconds", super::Milli(window.as_nanos() / 1_000_000))
        .field("interrupts", n)
        .field("per_s", super::Milli(milli_per_s))
        .field("ticks", s1.ticks - s0.ticks)
        .field("timers", s1.timers_fired - s0.timers_fired)
        .field(
            "forced",
            n.saturating_sub(s1.ticks - s0.ticks)
                .saturating_sub(s1.timers_fired - s0.timers_fired),
        )
        .field(
            "deferment",
            s1.max_deferment_wakeups - s0.max_deferment_wakeups,
        )
        .field("forced_ideal", forced_ideal)
        .field(
            "cap_ms",
            super::Milli(e.min(Nanos::from_secs(1_000_000)).as_nanos() / 1000),
        )
        .field("cpus", cpus)
        .field("all_interrupts", all)
        .field("all_per_s", super::Milli(all_milli_per_s));
    match kernel::with(|k| k.tick.watchdog_schedule()).flatten() {
        Some(w) => l
            .field("watchdog", "on")
            .field("wd_deferral_ms", w.deferral.as_nanos() / 1_000_000),
        None => l.field("watchdog", "off"),
    };
    emit(&l)
}

/// The NO_HZ cap E: the tick device's max delta, the clocksource's max
/// deferment, whichever is smaller.
fn cap() -> Nanos {
    kernel::with(|k| {
        let dev =
            sources::tick_device(k).map_or(Nanos::MAX, |(_, d)| sources::max_delta_ns(&d.info()));
        dev.min(k.tick.timekeeper().max_deferment())
    })
    .unwrap_or(Nanos::MAX)
}

// ---- lateness -------------------------------------------------------------------

/// Signed ns as µs with three decimals.
struct SignedMicros(i64);

impl fmt::Display for SignedMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{}", Micros(self.0.unsigned_abs()))
    }
}

/// Signed lateness samples of one run.
struct Samples {
    v: [i64; PERIODS],
    n: usize,
}

impl Samples {
    const fn new() -> Self {
        Samples {
            v: [0; PERIODS],
            n: 0,
        }
    }
    fn push(&mut self, x: i64) {
        if let Some(s) = self.v.get_mut(self.n) {
            *s = x;
            self.n += 1;
        }
    }
    /// min, p50, p99, max (nearest rank) after sorting.
    fn stats(&mut self) -> Option<[i64; 4]> {
        let s = &mut self.v[..self.n];
        if s.is_empty() {
            return None;
        }
        s.sort_unstable();
        Some([
            s[0],
            nearest_rank(s, 500),
            nearest_rank(s, 990),
            s[s.len() - 1],
        ])
    }
}

static RESUME: spin::Mutex<Samples> = spin::Mutex::new(Samples::new());
static ENTRY: spin::Mutex<Samples> = spin::Mutex::new(Samples::new());
/// The parts of a resume's lateness: our handler (entry → after EOI), the
/// return to the idle loop (→ after `hlt`), the idle loop's wake path to
/// the waiter (→ resume).
static PARTS: spin::Mutex<[Samples; 3]> =
    spin::Mutex::new([Samples::new(), Samples::new(), Samples::new()]);

/// Upper edges of the lateness histogram's buckets, µs (the last bucket
/// is everything above): fine where QEMU's delivery lies (50–150 µs),
/// coarse in the tail.
const HIST_EDGES_US: [i64; 14] = [
    0, 25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1000,
];

impl Samples {
    /// The samples (ns) as counts per [`HIST_EDGES_US`] bucket:
    /// `≤0:n 25:n … >1000:n` (each bucket named by its upper edge).
    fn histogram(&self) -> crate::rig::result::TextBuf<256> {
        let mut counts = [0u32; HIST_EDGES_US.len() + 1];
        for &x in &self.v[..self.n] {
            let i = HIST_EDGES_US
                .iter()
                .position(|&e| x <= e * 1000)
                .unwrap_or(HIST_EDGES_US.len());
            counts[i] += 1;
        }
        let mut t = crate::rig::result::TextBuf::new();
        for (i, c) in counts.iter().enumerate() {
            let _ = match HIST_EDGES_US.get(i) {
                Some(0) => write!(t, "<=0:{c}"),
                Some(e) => write!(t, " {e}:{c}"),
                None => write!(t, " >{}:{c}", HIST_EDGES_US[HIST_EDGES_US.len() - 1]),
            };
        }
        t
    }
}

/// `bench-lateness`: advance off, then auto. "auto" is both halves of
/// the delay: the tick layer's timer advance (`timer_advance=auto`: the
/// device programmed early by the learned delivery delay, the handler
/// spinning to the expiry) and the waiter's resume lead
/// ([`kernel::sleep_until`]: the timer set early by the learned
/// callback→resume path, the waiter spinning to the deadline). Neither
/// ever returns before the deadline; `early` counts any that did.
fn lateness(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return not_measured("lateness", "no kernel");
    };
    if !state.mode.is_highres() {
        return not_measured(
            "lateness",
            "not in high-res mode: a 1 ms timer runs on the tick",
        );
    }
    let configured = ctx
        .opts
        .timer_advance
        .map_or(TimerAdvance::Off, |a| a.to_tick());
    for (word, mode) in [("off", TimerAdvance::Off), ("auto", TimerAdvance::Auto)] {
        kernel::with(|k| k.tick.set_timer_advance(mode));
        lateness_run(word);
    }
    kernel::with(|k| k.tick.set_timer_advance(configured));
    Verdict::Pass
}

/// One run of [`WARMUP`] + [`PERIODS`] periods.
fn lateness_run(advance: &str) {
    let mut resume = RESUME.lock();
    let mut entry = ENTRY.lock();
    let mut parts = PARTS.lock();
    resume.n = 0;
    entry.n = 0;
    for p in parts.iter_mut() {
        p.n = 0;
    }
    let (mut early_resume, mut early_run, mut missed) = (0u32, 0u32, 0u32);
    super::sync_to_interrupt();
    let mut next = kernel::now().saturating_add(PERIOD);
    for i in 0..WARMUP + PERIODS {
        let data = TAG | 0x100 | (i as u64 & 0xFF);
        let Some(woke) = kernel::sleep_until(next, data, advance == "auto") else {
            return;
        };
        let fire = kernel::with_rec(|r| r.fires().iter().find(|f| f.data == data).copied());
        if i >= WARMUP {
            let late = woke.as_nanos() as i64 - next.as_nanos() as i64;
            resume.push(late);
            // As Linux's program counts them: samples a whole period late.
            if late >= PERIOD.as_nanos() as i64 {
                missed += 1;
            }
            if woke < next {
                early_resume += 1;
            }
            if let Some(f) = fire {
                entry.push(f.entry.as_nanos() as i64 - next.as_nanos() as i64);
                if f.found_at < f.expires {
                    early_run += 1;
                }
                let exit = kernel::HANDLER_EXIT.load(Ordering::Relaxed) as i64;
                let resumed = kernel::IDLE_RESUMED.load(Ordering::Relaxed) as i64;
                let [handler, to_idle, wake] = &mut *parts;
                handler.push(exit - f.entry.as_nanos() as i64);
                to_idle.push(resumed - exit);
                wake.push(woke.as_nanos() as i64 - resumed);
            }
        }
        // Absolute: the next period from the schedule, not from the wake.
        next = next.saturating_add(PERIOD);
        let now = kernel::now();
        while next <= now {
            next = next.saturating_add(PERIOD);
        }
    }
    for (at, s, early) in [
        ("resume", &mut *resume, early_resume),
        ("entry", &mut *entry, early_run),
    ] {
        let Some([min, p50, p99, max]) = s.stats() else {
            continue;
        };
        let mut l = line("lateness");
        l.field("at", at)
            .field("advance", advance)
            .field("periods", s.n)
            .field("min_us", SignedMicros(min))
            .field("p50_us", SignedMicros(p50))
            .field("p99_us", SignedMicros(p99))
            .field("max_us", SignedMicros(max))
            .field("early", early)
            .field("missed_periods", missed);
        if advance == "auto" {
            if let Some(i) = kernel::with(|k| k.tick.cpu_info(CpuId::BOOT)).flatten() {
                l.field("lead_ns", i.timer_advance.as_nanos())
                    .field("spun_ns", i.advance_spun.as_nanos());
            }
            l.field("resume_lead_ns", kernel::resume_lead().as_nanos());
        }
        emit(&l);
        let mut h = line("lateness_hist");
        h.field("at", at)
            .field("advance", advance)
            .text("le_us", s.histogram());
        emit(&h);
    }
    // Where a resume's lateness goes after the handler's entry: ours.
    let mut l = line("lateness_parts");
    l.field("advance", advance);
    for (name, s) in ["handler", "to_idle", "wake"]
        .into_iter()
        .zip(parts.iter_mut())
    {
        if let Some([_, p50, p99, max]) = s.stats() {
            let key = |q: &str| -> crate::rig::result::TextBuf<32> {
                crate::rig::result::TextBuf::format(format_args!("{name}_{q}_us"))
            };
            l.field(key("p50").as_str(), SignedMicros(p50))
                .field(key("p99").as_str(), SignedMicros(p99))
                .field(key("max").as_str(), SignedMicros(max));
        }
    }
    emit(&l);
}

// ---- clock reads ----------------------------------------------------------------

/// `bench-read`: each clocksource through a timekeeper of its own; the
/// TSC through the kernel's ordinary read ([`kernel::now`]: lock-free,
/// `rdtsc` inline) beside the timekeeper's generic read, the inline
/// `Timekeeper::monotonic_at` and the bare `rdtsc` + multiply-shift.
fn read(ctx: &Ctx<'_>) -> Verdict {
    let clocks = sources::all_clocksources(ctx.inv);
    let mut conv = None;
    for (cs, _) in clocks.iter().flatten() {
        let Ok(tk) = Timekeeper::new(*cs) else {
            continue;
        };
        if cs.name() == "tsc" {
            // Its `clock_read` line is the kernel's read, below.
            conv = Some(tk.params().conv);
            continue;
        }
        cpu_quiet(|| read_one(cs.name(), &tk, TscClock::get(ctx)));
    }
    let Some(conv) = conv else {
        return not_measured("clock_read", "no TSC clocksource: no bare baseline");
    };
    let Some(tsc_cs) = sources::tsc_clocksource() else {
        return not_measured("clock_read", "no TSC clocksource: no bare baseline");
    };
    let Ok(tk) = Timekeeper::new(tsc_cs) else {
        return not_measured("clock_read", "no timekeeper on the TSC");
    };
    // Whether the kernel's own read is the inline one (its clocksource is
    // the TSC) or the locked fallback.
    let path = if kernel::PUBLISHED.inline_read() == InlineRead::Tsc {
        "inline"
    } else {
        "locked"
    };
    // The four TSC paths interleaved, 10 rounds of READS/10 each, so a
    // host hiccup lands on all alike: the kernel's read, through a
    // timekeeper (an indirect call to the source), inline (the vDSO's way:
    // `rdtsc` here, `Timekeeper::monotonic_at`), and the bare `rdtsc` +
    // multiply-shift.
    let [now_h, dyn_h, inline_h, bare_h] = &mut *CMP.lock();
    for h in [&mut *now_h, &mut *dyn_h, &mut *inline_h, &mut *bare_h] {
        h.clear();
    }
    cpu_quiet(|| {
        let base = rdtsc();
        for _ in 0..10 {
            consecutive(now_h, kernel::now);
            consecutive(dyn_h, || tk.monotonic());
            consecutive(inline_h, || tk.monotonic_at(Cycles::new(rdtsc())));
            consecutive(bare_h, || {
                Ktime::from_nanos(
                    conv.cycles_to_ns(Cycles::new(rdtsc().wrapping_sub(base)))
                        .as_nanos(),
                )
            });
        }
    });
    for (name, h) in [
        ("tsc", &*now_h),
        ("tsc-timekeeper", &*dyn_h),
        ("tsc-inline", &*inline_h),
        ("bare-rdtsc-mulshift", &*bare_h),
    ] {
        let mut l = line("clock_read");
        l.field("clock", name)
            .field("reads", h.n)
            .field("median_ns", h.median())
            .field("mean_ns", h.mean())
            .field("min_ns", h.min);
        if name == "tsc" {
            l.text("path", path);
        }
        emit(&l);
    }
    let (n, d, i, b) = (
        now_h.median(),
        dyn_h.median(),
        inline_h.median(),
        bare_h.median(),
    );
    let mut l = line("clock_read_ratio");
    l.field("tsc_median_ns", n)
        .field("timekeeper_median_ns", d)
        .field("tsc_inline_median_ns", i)
        .field("bare_median_ns", b)
        .field("ratio", Ratio(n, b))
        .field("timekeeper_ratio", Ratio(d, b))
        .field("inline_ratio", Ratio(i, b))
        .field("tsc_mean_ratio", Ratio(now_h.mean(), bare_h.mean()))
        .text("path", path);
    emit(&l)
}

/// [`READS`]/10 consecutive readings of `clock`, their differences added
/// to `h`.
#[inline(always)]
fn consecutive(h: &mut Histogram, mut clock: impl FnMut() -> Ktime) {
    let mut prev = clock();
    for _ in 0..READS / 10 {
        let t = core::hint::black_box(clock());
        h.add(t.saturating_since(prev).as_nanos());
        prev = t;
    }
}

/// The four histograms of the interleaved TSC comparison.
static CMP: spin::Mutex<[Histogram; 4]> = spin::Mutex::new([
    Histogram::new(),
    Histogram::new(),
    Histogram::new(),
    Histogram::new(),
]);

/// Runs `f` with interrupts off (a tick must not land in a sample).
fn cpu_quiet<R>(f: impl FnOnce() -> R) -> R {
    crate::arch::cpu::without_interrupts(f)
}

/// Consecutive monotonic readings of `tk`: the median difference (Linux's
/// method), and the median of [`READS`]/10 reads each bracketed by `rdtsc`
/// (a clock coarser than its read cost — the ACPI PM timer's 279 ns, the
/// PIT's 838 ns — shows 0 or one tick as the difference).
fn read_one(name: &str, tk: &Timekeeper<'_>, tsc: Option<TscClock>) -> u64 {
    let mut h = HIST.lock();
    h.clear();
    let mut prev = tk.monotonic();
    for _ in 0..READS {
        let t = core::hint::black_box(tk.monotonic());
        h.add(t.saturating_since(prev).as_nanos());
        prev = t;
    }
    let (median, mean, min) = (h.median(), h.mean(), h.min);
    drop(h);
    let mut l = line("clock_read");
    l.field("clock", name)
        .field("reads", READS)
        .field("median_ns", median)
        .field("mean_ns", mean)
        .field("min_ns", min);
    if let Some(tsc) = tsc {
        let over = bracket_overhead();
        let mut h = HIST.lock();
        h.clear();
        for _ in 0..READS / 10 {
            let a = rdtsc();
            core::hint::black_box(tk.monotonic());
            let b = rdtsc();
            h.add(tsc.ns(b.wrapping_sub(a).saturating_sub(over)));
        }
        l.field("tsc_timed_median_ns", h.median())
            .field("overhead_ns", tsc.ns(over));
    }
    emit(&l);
    median
}

/// `a / b` with three decimals.
struct Ratio(u64, u64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 == 0 {
            return f.write_str("inf");
        }
        let milli = self.0 as u128 * 1000 / self.1 as u128;
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

// ---- program_event --------------------------------------------------------------

/// `bench-program`: [`PROGRAMS`] `program_event` calls on the tick device
/// through an [`EventDevice`] of the bench's own, 10–20 ms ahead (so none
/// fires), against the driver's bare `program(In(cycles))` (Linux's
/// `set_next_event`) with the cycles
/// precomputed; then the device is programmed for what the tick layer had
/// programmed, so the tick layer's view holds again.
fn program(ctx: &Ctx<'_>) -> Verdict {
    let Some(tsc) = TscClock::get(ctx) else {
        return not_measured("program", "no TSC rate to time with");
    };
    let r = kernel::with(|k| {
        let (_, dev) = sources::tick_device(k).ok_or("no tick device")?;
        if !k.tick.mode(CpuId::BOOT).is_oneshot() {
            return Err("tick device not in one-shot mode");
        }
        let period = k.tick.period();
        let mut ev = EventDevice::new(dev, period).map_err(|_| "device refused")?;
        ev.set_state(DeviceState::Shutdown, Nanos::ZERO)
            .map_err(|_| "shutdown refused")?;
        ev.set_state(DeviceState::Oneshot, Nanos::ZERO)
            .map_err(|_| "one-shot refused")?;
        let over = bracket_overhead();
        let mut rng = super::oneshot::Rng::new(0x5EED);
        let mut h = HIST.lock();
        h.clear();
        let mut refused = 0u32;
        for _ in 0..PROGRAMS {
            let ahead = Nanos::from_nanos(10_000_000 + rng.below(10_000_000));
            let now = k.tick.now();
            let at = now.saturating_add(ahead);
            let a = rdtsc();
            let r = ev.program_event(at, now, Expired::Force);
            let b = rdtsc();
            refused += u32::from(r.is_err());
            h.add(tsc.ns(b.wrapping_sub(a).saturating_sub(over)));
        }
        let prog = (h.median(), h.mean(), h.min);
        h.clear();
        let freq = dev.info().frequency().ok_or("a deadline device")?;
        for _ in 0..PROGRAMS {
            let ahead = 10_000_000 + rng.below(10_000_000);
            let c = Cycles::new((ahead as u128 * freq.get() as u128 / 1_000_000_000) as u64);
            let a = rdtsc();
            let r = dev.program(NextEvent::In(core::hint::black_box(c)));
            let b = rdtsc();
            refused += u32::from(r.is_err());
            h.add(tsc.ns(b.wrapping_sub(a).saturating_sub(over)));
        }
        let bare = (h.median(), h.mean(), h.min);
        drop(h);
        // Restore what the tick layer believes is programmed.
        let target = k.tick.programmed_event(CpuId::BOOT);
        let now = k.tick.now();
        let _ = ev.program_event(target.max(now), now, Expired::Force);
        Ok((prog, bare, refused, tsc.ns(over)))
    });
    match r {
        None => not_measured("program", "no kernel"),
        Some(Err(why)) => not_measured("program", why),
        Some(Ok((prog, bare, refused, over))) => {
            let mut l = line("program");
            l.field("calls", PROGRAMS)
                .field("median_ns", prog.0)
                .field("mean_ns", prog.1)
                .field("min_ns", prog.2)
                .field("bare_median_ns", bare.0)
                .field("bare_mean_ns", bare.1)
                .field("ratio", Ratio(prog.0, bare.0))
                .field("refused", refused)
                .field("overhead_ns", over);
            emit(&l)
        }
    }
}

// ---- NO_HZ entry/exit -----------------------------------------------------------

/// `bench-nohz`: entry and exit of NO_HZ idle without the halt between,
/// [`NOHZ_ROUNDS`] times, a timer pending [`NOHZ_TIMER`] ahead so the tick
/// stops. Each round runs with interrupts off, and they are on between
/// rounds: a tick whose time comes during a round is then taken before
/// the next. (With every round under one interrupts-off section, once a
/// tick's time passed unserved each later `idle_sleep` rightly kept the
/// tick — its interrupt is raised and cannot be withdrawn, `nohz` module
/// docs — and the medians timed the cheap kept path, not the stop.) The
/// medians are over the rounds that stopped the tick; a round that kept it
/// (a tick due within the device's min delta of its entry) is counted, not
/// timed, and the line carries the tick device's `min_delta_raised` and
/// `too_late` counts since boot: a min delta the retry policy raised past
/// the tick period keeps the tick in every round, and says so even when no
/// round stopped it.
fn nohz_path(ctx: &Ctx<'_>) -> Verdict {
    let Some(tsc) = TscClock::get(ctx) else {
        return not_measured("nohz_path", "no TSC rate to time with");
    };
    let over = bracket_overhead();
    let setup = kernel::with(|k| {
        if !k.tick.mode(CpuId::BOOT).is_nohz() {
            return Err("not in a NO_HZ mode");
        }
        let far = k.tick.now().saturating_add(NOHZ_TIMER);
        let before = k
            .tick
            .cpu_info(CpuId::BOOT)
            .map(|i| i.stats)
            .unwrap_or_default();
        k.tick
            .add_timer(CpuId::BOOT, far, TAG | 2)
            .map(|id| (id, before))
            .map_err(|_| "no timer slot")
    });
    let (id, before) = match setup {
        None => return not_measured("nohz_path", "no kernel"),
        Some(Err(why)) => return not_measured("nohz_path", why),
        Some(Ok(v)) => v,
    };
    let mut enter = [0u64; NOHZ_ROUNDS];
    let mut exit = [0u64; NOHZ_ROUNDS];
    let mut stopped = 0usize;
    for _ in 0..NOHZ_ROUNDS {
        let round = kernel::with(|k| {
            let a = rdtsc();
            let _ = k.tick.idle_enter(CpuId::BOOT);
            let s = k.tick.idle_sleep(CpuId::BOOT, IdleDepth::Shallow);
            let b = rdtsc();
            k.tick.idle_wake(CpuId::BOOT);
            k.tick.idle_exit(CpuId::BOOT);
            let c = rdtsc();
            (s.is_ok_and(|s| s.tick_stopped), a, b, c)
        });
        if let Some((true, a, b, c)) = round {
            enter[stopped] = tsc.ns(b.wrapping_sub(a).saturating_sub(over));
            exit[stopped] = tsc.ns(c.wrapping_sub(b).saturating_sub(over));
            stopped += 1;
        }
    }
    let (after, dev) = kernel::with(|k| {
        let _ = k.tick.cancel_timer(CpuId::BOOT, id);
        (
            k.tick
                .cpu_info(CpuId::BOOT)
                .map(|i| i.stats)
                .unwrap_or_default(),
            k.tick.cpu_device_stats(CpuId::BOOT).unwrap_or_default(),
        )
    })
    .unwrap_or_default();
    let kept_for_timer = (after.tick_retained - after.tick_retained_due)
        .saturating_sub(before.tick_retained - before.tick_retained_due);
    let kept_due = after
        .tick_retained_due
        .saturating_sub(before.tick_retained_due);
    let mut l = line("nohz_path");
    l.field("rounds", NOHZ_ROUNDS)
        .field("tick_stopped", stopped)
        .field("kept_for_timer", kept_for_timer)
        .field("kept_due", kept_due)
        .field("min_delta_raised", dev.min_delta_raised)
        .field("too_late", dev.too_late);
    let e = crate::rig::expect::Latency::of(&mut enter[..stopped]);
    let x = crate::rig::expect::Latency::of(&mut exit[..stopped]);
    match (e, x) {
        (Some(e), Some(x)) => l
            .field("enter_median_ns", e.p50)
            .field("exit_median_ns", x.p50)
            .field("total_median_ns", e.p50 + x.p50)
            .field("enter_p99_ns", e.p99)
            .field("exit_p99_ns", x.p99)
            .field("overhead_ns", tsc.ns(over)),
        _ => l.text("skipped", "the tick stopped in no round"),
    };
    emit(&l)
}

// ---- calibration ----------------------------------------------------------------

/// The LAPIC timer's true rate: the hypervisor leaf's bus ÷ 16, else
/// QEMU's (and KVM's) fixed 1 GHz APIC bus ÷ 16.
#[cfg(feature = "lapic")]
fn lapic_truth() -> (Hertz, &'static str) {
    let leaf = raw_cpuid::CpuId::new()
        .get_hypervisor_info()
        .and_then(|h| h.apic_frequency())
        .filter(|&khz| khz != 0);
    match leaf {
        Some(khz) => (Hertz::new(khz as u64 * 1000 / 16), "cpuid-0x40000010"),
        None => (Hertz::new(62_500_000), "qemu-apic-bus-1ghz"),
    }
}

/// The TSC's true rate: the hypervisor leaf, else one second against the
/// HPET (QEMU's HPET counts exactly 100 MHz of QEMU's virtual clock: the
/// bound of a 1 s window is a few ppm).
#[cfg(feature = "tsc")]
fn tsc_truth() -> Option<(Hertz, &'static str, u32)> {
    let leaf = raw_cpuid::CpuId::new()
        .get_hypervisor_info()
        .and_then(|h| h.tsc_frequency())
        .filter(|&khz| khz != 0);
    if let Some(khz) = leaf {
        return Some((Hertz::new(khz as u64 * 1000), "cpuid-0x40000010", 0));
    }
    let hpet = sources::hpet_clocksource()?;
    let c = clocksource::calibrate(
        hpet,
        || Cycles::new(rdtsc()),
        Cycles::new(u64::MAX),
        Nanos::from_secs(1),
        1 << 26,
    )
    .ok()?;
    Some((c.frequency, "hpet-1s", c.error_ppm))
}

/// Signed ppm of `found` against `truth`.
#[cfg(any(feature = "lapic", feature = "tsc"))]
fn ppm(found: Hertz, truth: Hertz) -> i64 {
    let t = truth.get().max(1) as i128;
    ((found.get() as i128 - t) * 1_000_000 / t) as i64
}

/// `bench-cal`: each target against each reference.
fn calibration(ctx: &Ctx<'_>) -> Verdict {
    let Some(tsc) = TscClock::get(ctx) else {
        return not_measured("calibration", "no TSC rate to time with");
    };
    let refs = [
        sources::hpet_clocksource(),
        sources::acpi_pm_clocksource(),
        sources::pit_clocksource(),
    ];
    let lapic_busy = TickState::now().is_some_and(|s| s.device.starts_with("lapic"));
    #[cfg(feature = "lapic")]
    if let Some(apic) = crate::platform::apic::get() {
        if lapic_busy {
            not_measured(
                "calibration",
                "lapic: the LAPIC timer is the tick device (run with another clockevent)",
            );
        } else {
            let (truth, how) = lapic_truth();
            for r in refs.iter().flatten() {
                let access = apic.access();
                let a = rdtsc();
                let f = crate::arch::cpu::without_interrupts(|| lapic::calibrate_timer(access, *r));
                let took = tsc.ns(rdtsc().wrapping_sub(a));
                let found = f.ok().map(|f| {
                    let w = f.calibration.map_or(Nanos::ZERO, |c| c.window);
                    (f.timer, f.error_ppm(), w)
                });
                emit(&cal_line("lapic", r.name(), truth, how, took, found));
            }
        }
    }
    #[cfg(not(feature = "lapic"))]
    let _ = lapic_busy;
    #[cfg(not(any(feature = "lapic", feature = "tsc")))]
    let _ = (tsc, refs);
    #[cfg(feature = "tsc")]
    if let Some((truth, how, bound)) = tsc_truth() {
        for r in refs.iter().flatten() {
            let a = rdtsc();
            let c = crate::arch::cpu::without_interrupts(|| {
                tsc::calibrate_tsc(&hw::metal::MetalTsc, *r)
            });
            let took = tsc.ns(rdtsc().wrapping_sub(a));
            let mut l = cal_line(
                "tsc",
                r.name(),
                truth,
                how,
                took,
                c.ok().map(|c| (c.frequency, c.error_ppm, c.window)),
            );
            l.field("truth_bound_ppm", bound);
            emit(&l);
        }
        return Verdict::Pass;
    }
    Verdict::Pass
}

/// A `calibration` line.
#[cfg(any(feature = "lapic", feature = "tsc"))]
fn cal_line(
    target: &str,
    reference: &str,
    truth: Hertz,
    how: &str,
    took_ns: u64,
    found: Option<(Hertz, u32, Nanos)>,
) -> Line {
    let mut l = line("calibration");
    l.field("target", target)
        .field("reference", reference)
        .field("truth_hz", truth.get())
        .field("truth_from", how)
        .field("took_us", Micros(took_ns));
    match found {
        Some((hz, bound, window)) => {
            l.field("found_hz", hz.get())
                .field("off_ppm", ppm(hz, truth))
                .field("bound_ppm", bound)
                .field("window_us", Micros(window.as_nanos()));
        }
        None => {
            l.text("failed", "calibration refused");
        }
    }
    l
}
