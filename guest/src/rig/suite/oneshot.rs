//! `oneshot`: 1000 high-resolution timers at random expiries within 200 ms
//! fire in expiry order and none early; their latency is printed.
//!
//! ```text
//!   t0 ─ 10 ms head start ─┬──── 1000 expiries, uniform in 200 ms ────┐
//!   (all queued in one critical section)                              │
//!   idle (NO_HZ where on) until all ran ────────────────────────────────┘
//!   each run: (index, expiry, clocksource time in the callback)
//!   assert: 1000 ran, none before its expiry, in (expiry, queueing) order
//!   latency = run − expiry: min / p50 / p99 / max
//! ```
//!
//! The head start (10 ms, or twice the measured cost of 1000 adds if that
//! is more) keeps the queueing itself (1000 `add_timer` with interrupts
//! off) out of the measured latency. The expiries come from a
//! xorshift64* generator; the seed is printed, so a run can be reproduced.

use clockevents::CpuId;
use clocksource::{Ktime, Nanos};

use super::{report, Ctx, Milli, TickState};
use crate::embed::kernel;
use crate::rig::expect::{Latency, Micros};
use crate::rig::result::{Line, Verdict};

/// Timers queued.
pub const TIMERS: usize = 1000;
/// The span their expiries are drawn from.
pub const SPAN: Nanos = Nanos::from_millis(200);
/// Time between queueing and the earliest possible expiry.
pub const HEAD_START: Nanos = Nanos::from_millis(10);
/// Give up waiting after this (a lost timer must not hang the run).
pub const TIMEOUT: Nanos = Nanos::from_secs(5);
/// Tag in the timers' data (the index is in the low bits).
pub const TAG: u64 = 0x05E0_0000_0000;

/// xorshift64* (Vigna 2016): fast, good enough for test expiries.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is below 2⁻⁴⁰ here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let _ = ctx;
    let Some(state) = TickState::now() else {
        return super::cannot_run("oneshot", Verdict::Fail, "no kernel");
    };
    if !state.mode.is_highres() {
        let (v, why) = super::not_highres(&state);
        return super::cannot_run("oneshot", v, why);
    }

    let seed = kernel::now().as_nanos() ^ 0xD1B5_4A32_D192_ED03;
    let mut rng = Rng::new(seed);
    let mut expiries = [Ktime::ZERO; TIMERS];
    kernel::with_rec(|r| r.clear());
    // The head start must cover the queueing: measure what an add costs
    // here (add + cancel of a far timer, 32 times), allow twice that per
    // timer (a software hypervisor that traps every privileged instruction
    // makes it ~100 µs).
    let per_add = kernel::with(|k| {
        let a = k.tick.now();
        let far = a.saturating_add(Nanos::from_secs(100));
        for i in 0..32 {
            if let Ok(id) = k.tick.add_timer(CpuId::BOOT, far, TAG | 0xFFFF) {
                let _ = k.tick.cancel_timer(CpuId::BOOT, id);
            }
            core::hint::black_box(i);
        }
        k.tick.now().saturating_since(a).as_nanos() / 32
    })
    .unwrap_or(0);
    let head_start = HEAD_START.max(Nanos::from_nanos(per_add * 2 * TIMERS as u64));
    let queued = kernel::with(|k| {
        let t0 = k.tick.now().saturating_add(head_start);
        let mut n = 0;
        for (i, e) in expiries.iter_mut().enumerate() {
            *e = t0.saturating_add(Nanos::from_nanos(rng.below(SPAN.as_nanos())));
            if k.tick.add_timer(CpuId::BOOT, *e, TAG | i as u64).is_ok() {
                n += 1;
            }
        }
        (n, t0, k.tick.now())
    });
    let Some((queued, t0, t_queued)) = queued else {
        return super::cannot_run("oneshot", Verdict::Fail, "no kernel");
    };
    let deadline = t0.saturating_add(TIMEOUT);
    kernel::idle_until(|k| {
        kernel::with_rec(|r| r.fires().len()) >= queued || k.tick.now() >= deadline
    });

    let mut latency = [0u64; TIMERS];
    let summary = kernel::with_rec(|rec| {
        let fires = rec.fires();
        let mut early = 0u32;
        let mut out_of_order = 0u32;
        let mut foreign = 0u32;
        let mut n = 0;
        let mut prev: Option<(Ktime, u64)> = None;
        for f in fires {
            if f.data & !0xFFFF != TAG {
                foreign += 1;
                continue;
            }
            let i = (f.data & 0xFFFF) as usize;
            if f.found_at < f.expires || expiries.get(i) != Some(&f.expires) {
                early += 1;
            }
            let key = (f.expires, i as u64);
            if prev.is_some_and(|p| p > key) {
                out_of_order += 1;
            }
            prev = Some(key);
            if let Some(slot) = latency.get_mut(n) {
                *slot = f.at.saturating_since(f.expires).as_nanos();
                n += 1;
            }
        }
        (n, early, out_of_order, foreign, rec.lost())
    });
    let (fired, early, out_of_order, foreign, lost) = summary;
    let lat = Latency::of(&mut latency[..fired]);
    let ok = queued == TIMERS && fired == TIMERS && early == 0 && out_of_order == 0 && lost == 0;
    let mut l = Line::result("oneshot");
    state.fields(&mut l);
    l.field("timers", queued)
        .field("fired", fired)
        .field("early", early)
        .field("out_of_order", out_of_order);
    if let Some(lat) = lat {
        l.field("lat_min_us", Micros(lat.min))
            .field("lat_p50_us", Micros(lat.p50))
            .field("lat_p99_us", Micros(lat.p99))
            .field("lat_max_us", Micros(lat.max));
    }
    if foreign > 0 {
        l.field("other_timers", foreign);
    }
    l.field(
        "queue_us",
        Micros(
            t_queued
                .saturating_since(t0.saturating_sub(head_start))
                .as_nanos(),
        ),
    )
    .field("head_ms", Milli(head_start.as_nanos() / 1000));
    l.field("seed", format_args!("{seed:#x}"));
    report(l, Verdict::from_bool(ok))
}
