//! `clocksource`: the timekeeper never goes backwards, and the clocks agree
//! on how long ~100 ms is.
//!
//! **Monotonic.** 100,000 reads of the timekeeper's monotonic time, each in
//! its own critical section, interrupts (ticks, timekeeper updates, watchdog
//! checks) taken between them: no read is earlier than the one before.
//!
//! **Rate agreement.** Every clocksource brought up (TSC, HPET, ACPI PM,
//! PIT counter 2) is compared with a reference (HPET, else ACPI PM, else
//! the PIT) over ~100 ms:
//!
//! ```text
//!   reference  ra₀ │ rb₀ ·········· (poll every tick: counts kept, wraps summed) ·········· ra₁ │ rb₁
//!   clock X         x₀                                                                       x₁
//!   ppm(X) = (Δx / f_X) / (Δmid(r) / f_ref) − 1
//!   bound  = (half of each bracket + one cycle of each clock at each end) / window
//!            + X's calibration error (the TSC's; the others' rates are exact)
//! ```
//!
//! Each bracket is the tightest of [`BRACKET_TRIES`], taken with interrupts
//! off. PIT counter 2 wraps every 54.9 ms, so every clock is read at every
//! tick in between and its wraps summed. Under QEMU the HPET, the ACPI PM
//! timer and the PIT all count from QEMU's virtual clock: they agree to the
//! measurement's bound; the TSC is the host's, calibrated at boot, so it
//! agrees to its calibration error.

use clocksource::{ClockSource, Cycles, Nanos};

use super::{report, Ctx, Milli, TickState};
use crate::rig::expect::{bound_ppb, ppb, Micros, Ppm};
use crate::rig::result::{Line, Verdict};
use crate::{arch::cpu, embed::kernel, embed::sources};

/// Timekeeper reads in the monotonicity check.
pub const READS: u32 = 100_000;
/// Most reads per critical section in the monotonicity check.
pub const BATCH: u32 = 1000;
/// Longest a batch keeps interrupts off (a tick period at HZ=250).
///
/// Between batches the CPU halts until the next interrupt: an interrupt
/// enable window of a few instructions (`sti` … `cli`) is not enough under
/// the emulating KVM of this host, which then delivered no tick for
/// seconds of back-to-back batches (the ACPI PM timer wrapped unseen).
pub const BATCH_SPAN: Nanos = Nanos::from_millis(4);
/// Raw reads timed per clocksource for its read cost.
pub const COST_READS: u64 = 1000;
/// The rate comparison's window.
pub const WINDOW: Nanos = Nanos::from_millis(100);
/// Bracket attempts at each end (the tightest is kept).
pub const BRACKET_TRIES: u32 = 5;

/// A clock read often enough that its wraps are all seen.
/// A clocksource's counter read as a running total of cycles, its wraps
/// counted by reading it at least once per wrap period.
pub(super) struct Counted {
    cs: &'static dyn ClockSource,
    last: Cycles,
    total: u128,
    error_ppm: u32,
}

impl Counted {
    /// Starts the total at zero from the counter's present value.
    pub(super) fn new(cs: &'static dyn ClockSource, error_ppm: u32) -> Self {
        Counted {
            cs,
            last: cs.read(),
            total: 0,
            error_ppm,
        }
    }
    /// Reads the counter; returns the cycles since [`Counted::new`].
    pub(super) fn read(&mut self) -> u128 {
        let now = self.cs.read();
        self.total += now.wrapping_delta(self.last, self.cs.mask()).get() as u128;
        self.last = now;
        self.total
    }
    /// `cycles` of this counter in nanoseconds.
    pub(super) fn ns(&self, cycles: u128) -> u128 {
        cycles * 1_000_000_000 / self.cs.frequency().get().max(1) as u128
    }
}

/// One bracket: the reference before and after X's read (totals).
#[derive(Clone, Copy)]
struct Bracket {
    ra: u128,
    x: u128,
    rb: u128,
}

fn bracket(r: &mut Counted, x: &mut Counted) -> Bracket {
    let mut best: Option<Bracket> = None;
    for _ in 0..BRACKET_TRIES {
        let b = cpu::without_interrupts(|| {
            let ra = r.read();
            let xv = x.read();
            let rb = r.read();
            Bracket { ra, x: xv, rb }
        });
        if best.is_none_or(|p| b.rb - b.ra < p.rb - p.ra) {
            best = Some(b);
        }
    }
    best.unwrap_or(Bracket { ra: 0, x: 0, rb: 0 })
}

/// Runs the test.
pub fn run(ctx: &Ctx<'_>) -> Verdict {
    let Some(state) = TickState::now() else {
        return super::cannot_run("clocksource", Verdict::Fail, "no kernel");
    };
    let mut l = Line::result("clocksource");
    state.fields(&mut l);

    // Monotonic: READS reads in batches (at most BATCH reads or
    // BATCH_SPAN of time with interrupts off), the CPU halting until the
    // next interrupt between batches, so ticks and timekeeper updates come
    // between reads as they would in a running kernel.
    let ticks0 = kernel::with(|k| super::ticks(k.tick)).unwrap_or(0);
    let t0 = kernel::now();
    let mut prev = t0;
    let mut backwards = 0u32;
    let mut max_back = Nanos::ZERO;
    let mut max_step = Nanos::ZERO;
    let mut done = 0u32;
    let mut reading = Nanos::ZERO;
    while done < READS {
        let n = kernel::with(|k| {
            let start = k.tick.now();
            let mut n = 0;
            while n < BATCH && done + n < READS {
                let t = k.tick.now();
                n += 1;
                if t < prev {
                    backwards += 1;
                    max_back = max_back.max(prev.saturating_since(t));
                } else {
                    max_step = max_step.max(t.saturating_since(prev));
                }
                prev = t;
                if t.saturating_since(start) >= BATCH_SPAN {
                    break;
                }
            }
            reading = reading.saturating_add(prev.saturating_since(start));
            n
        })
        .unwrap_or(READS);
        done += n;
        kernel::halt_once();
    }
    let ticks_during = kernel::with(|k| super::ticks(k.tick)).unwrap_or(0) - ticks0;
    l.field("reads", READS)
        .field("ticks_during", ticks_during)
        .field("backwards", backwards)
        .field("max_back_us", Micros(max_back.as_nanos()))
        .field("read_ns", reading.as_nanos() / READS as u64)
        .field("max_step_us", Micros(max_step.as_nanos()));
    let mut ok = backwards == 0;

    // Read cost of every clocksource (raw reads, interrupts off).
    let all = sources::all_clocksources(ctx.inv);
    for (cs, _) in all.iter().flatten() {
        let cost = kernel::with(|k| {
            let a = k.tick.now();
            for _ in 0..COST_READS {
                core::hint::black_box(cs.read());
            }
            k.tick.now().saturating_since(a).as_nanos() / COST_READS
        })
        .unwrap_or(0);
        l.field(name_key(cs.name(), "_read_ns").as_str(), cost);
    }

    // Rates.
    let reference = [
        sources::hpet_clocksource(),
        sources::acpi_pm_clocksource(),
        sources::pit_clocksource(),
    ]
    .into_iter()
    .flatten()
    .next();
    let Some(reference) = reference else {
        l.text(
            "rates",
            "no reference clock (no HPET, ACPI PM timer or PIT)",
        );
        return report(l, Verdict::from_bool(ok));
    };
    let mut r = Counted::new(reference, 0);
    let mut others: [Option<Counted>; 4] = all.map(|c| {
        c.filter(|(cs, _)| cs.name() != reference.name())
            .map(|(cs, e)| Counted::new(cs, e))
    });
    let mut start: [Option<Bracket>; 4] = [None; 4];
    for (i, o) in others.iter_mut().enumerate() {
        if let Some(x) = o {
            start[i] = Some(bracket(&mut r, x));
        }
    }
    let window_start = kernel::now();
    while kernel::now().saturating_since(window_start) < WINDOW {
        kernel::halt_once();
        cpu::without_interrupts(|| {
            r.read();
            for x in others.iter_mut().flatten() {
                x.read();
            }
        });
    }
    l.field("ref", reference.name());
    let mut window_ns = 0;
    for (i, o) in others.iter_mut().enumerate() {
        let (Some(x), Some(b0)) = (o, start[i]) else {
            continue;
        };
        let b1 = bracket(&mut r, x);
        let mid = |b: &Bracket| (b.ra + b.rb) / 2;
        let ref_ns = r.ns(mid(&b1) - mid(&b0));
        let x_ns = x.ns(b1.x - b0.x);
        window_ns = ref_ns as u64;
        let d = ppb(
            Nanos::from_nanos(x_ns as u64),
            Nanos::from_nanos(ref_ns as u64),
        );
        // Half of each bracket, plus one cycle of each clock at each end.
        let unc_ref = r.ns((b0.rb - b0.ra).div_ceil(2) + (b1.rb - b1.ra).div_ceil(2) + 2);
        let unc_x = x.ns(2) + 1;
        let bound = bound_ppb(
            Nanos::from_nanos((unc_ref + unc_x) as u64),
            Nanos::from_nanos(ref_ns as u64),
        ) + x.error_ppm as u64 * 1000;
        let fine = d.unsigned_abs() <= bound;
        ok &= fine;
        let name = x.cs.name();
        l.field(name_key(name, "_ppm").as_str(), Ppm(d))
            .field(name_key(name, "_bound_ppm").as_str(), Ppm(bound as i64));
    }
    if window_ns > 0 {
        l.field("window_ms", Milli(window_ns / 1000));
    }
    report(l, Verdict::from_bool(ok))
}

fn name_key(name: &str, suffix: &str) -> crate::rig::result::TextBuf<32> {
    crate::rig::result::TextBuf::format(format_args!("{name}{suffix}"))
}
