//! The NO_HZ idle demonstration `cargo xtask run` shows without `test=`:
//! 2 s of idle with the tick kept, then 2 s of idle the tick layer's way.
//!
//! ```text
//!   tick kept:  the CPU halts between interrupts without entering idle:
//!               every tick (and, in high-res mode, every watchdog check) wakes it
//!   tickless:   idle_enter / idle_sleep / hlt / idle_wake until a timer at
//!               +2 s (the only timer: it ends the window)
//! ```
//!
//! Interrupts per second are counted from the interrupt handlers (every
//! timer interrupt: LAPIC timer and IRQ0). The tickless phase's wake-ups
//! are classified as in the `nohz` test.

use clocksource::Nanos;

use super::nohz;
use super::{Milli, ModeWord, TickState};
use crate::{embed::kernel, println};

/// Each phase's length.
pub const PHASE: Nanos = Nanos::from_secs(2);

fn per_second(n: u64, window: Nanos) -> Milli {
    Milli((n as u128 * 1_000_000_000_000 / window.as_nanos().max(1) as u128) as u64)
}

/// Runs the demonstration; true if it could run.
pub fn run() -> bool {
    let Some(state) = TickState::now() else {
        return false;
    };
    println!();
    println!("== NO_HZ idle demonstration: 2 s of idle, no timer pending but the one ending the window ==");
    println!(
        "   tick device {} ({}), clocksource {}, HZ={}",
        state.device,
        ModeWord(state.mode),
        state.clocksource,
        state.hz
    );
    if state.mode == tick::TickMode::NoDevice {
        println!("   no tick device: nothing to show");
        return false;
    }
    let snap = || kernel::with(|k| (k.tick.now(), k.counts(0).total())).unwrap_or_default();
    super::sync_to_interrupt();
    let (t0, n0) = snap();
    kernel::wait_until(t0.saturating_add(PHASE));
    let (t1, n1) = snap();
    let kept = n1 - n0;
    let kept_window = t1.saturating_since(t0);
    println!(
        "   tick kept (periodic):  {:>5} interrupts in {} s  = {:>8}/s",
        kept,
        Milli(kept_window.as_nanos() / 1_000_000),
        per_second(kept, kept_window)
    );

    let Some(m) = nohz::measure(&[PHASE], None) else {
        return false;
    };
    let a = kernel::with_irq_log(|l| nohz::analyse(&m, l.records()));
    let idle = a.interrupts;
    let window = m.t_end.saturating_since(m.t0);
    println!(
        "   tickless ({:<14}) {:>5} interrupts in {} s  = {:>8}/s",
        ModeWord(state.mode),
        idle,
        Milli(window.as_nanos() / 1_000_000),
        per_second(idle, window)
    );
    if state.mode.is_nohz() {
        println!("      {}", nohz::Breakdown(&a));
        if a.watchdog_absorbed > 0 {
            println!(
                "        ({} watchdog check(s) ran in those interrupts: a stopped tick defers them, up to {} s)",
                a.watchdog_absorbed,
                Milli(m.wd_deferral.as_nanos() / 1_000_000)
            );
        }
    } else {
        match state.reason {
            Some(r) => println!("      the tick is kept in idle: {r}"),
            None => println!("      the tick is kept in idle (NO_HZ not in effect)"),
        }
    }
    println!("   Linux 6.1 in the same QEMU (TCG): 250/s with nohz=off, 8.7/s with NO_HZ (BENCHMARKS.md, median of 5 runs)");
    true
}
