//! Adaptive timer advance: program the device early by the delivery delay
//! it has shown, then spin the last stretch to the deadline.
//!
//! Under emulation the time from a device's programmed expiry to the
//! handler's first instruction (the *delivery delay*) dominates timer
//! lateness: tens of µs under QEMU's TCG. KVM hides it from guests on the
//! host side (`lapic_timer_advance_ns`); this does the same in the guest,
//! per event device:
//!
//! ```text
//!   programmed:        fire_at = target − advance
//!   device fires ... handler entry at `now`
//!   learn (Auto):      delay = now − fire_at
//!                      advance += (delay − advance) / 8      (EWMA, 1/8 weight)
//!                      advance  = min(advance, MAX_TIMER_ADVANCE)
//!   now < target?      spin reading the clocksource until now ≥ target
//!                      (bounded by time, below)
//!   run timers         (a timer still runs only if its expiry ≤ now: never early)
//! ```
//!
//! # How long the spin can hold the CPU
//!
//! The spin runs with interrupts off, so it is bounded by time, not by a
//! number of reads (100 000 reads of an HPET at ~1 µs a read under TCG, or
//! of the PIT's channel 2 at ~3 µs, would be 100–300 ms). It ends at the
//! first of:
//!
//! - the clocksource reads at or past the target — which is never more than
//!   [`MAX_TIMER_ADVANCE`] after the spin started (an event further away
//!   than that is not spun for);
//! - the clocksource has advanced [`MAX_TIMER_ADVANCE`] since the spin
//!   started (the same bound, measured on the clock);
//! - [`MAX_STALLED_READS`] reads in a row without the clock moving: a
//!   stopped clock cannot hold the CPU for longer than that many reads —
//!   192 µs at the PIT's 3 µs a read, 64 µs at the HPET's 1 µs. A legitimate
//!   clock moves between two reads: the coarsest one valid for high
//!   resolution, the PIT at 1.193 MHz, ticks every 838 ns, less than one
//!   of its own reads. Such a spin is counted
//!   ([`crate::CpuStats::advance_spin_stalls`]); the timers then wait for
//!   the clock (never early).
//!
//! So with a clock that runs, the spin lasts at most [`MAX_TIMER_ADVANCE`]
//! of clocksource time plus one read; with a stopped one, at most
//! [`MAX_STALLED_READS`] reads. (A clock that runs far slower than it claims
//! is the clocksource watchdog's to catch.)
//!
//! It trades CPU time (the spin, at most [`MAX_TIMER_ADVANCE`] per event)
//! for lateness, so it is off by default: a runtime option
//! (`timer_advance=auto|off|<ns>` on the guest's command line).

use clocksource::Nanos;

/// The most the device is ever programmed early (and so the longest spin).
/// QEMU/TCG's delivery delay is 40–100 µs here; KVM's host-side advance is
/// capped at 5 µs because hardware delivers faster.
pub const MAX_TIMER_ADVANCE: Nanos = Nanos::from_micros(200);
/// Consecutive clocksource reads without progress that end a spin (module
/// docs): a clock that stopped cannot hold the CPU in the handler for more
/// than this many reads.
pub const MAX_STALLED_READS: u32 = 64;
/// EWMA weight of a new delay sample: 1 / 2^3.
const EWMA_SHIFT: u32 = 3;

/// How far ahead events are programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimerAdvance {
    /// Program events at their expiry (the default).
    #[default]
    Off,
    /// Program every event this much early (clamped to
    /// [`MAX_TIMER_ADVANCE`]).
    Fixed(Nanos),
    /// Learn the device's delivery delay and program that much early.
    Auto,
}

/// One CPU's advance state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Advance {
    pub(crate) mode: TimerAdvance,
    /// The current lead, ns (also the EWMA state for `Auto`).
    lead_ns: u64,
    pub(crate) samples: u64,
    /// Total time spent spinning to deadlines.
    pub(crate) spun: Nanos,
}

impl Advance {
    pub(crate) fn new(mode: TimerAdvance) -> Self {
        let lead_ns = match mode {
            TimerAdvance::Fixed(n) => n.min(MAX_TIMER_ADVANCE).as_nanos(),
            _ => 0,
        };
        Advance {
            mode,
            lead_ns,
            samples: 0,
            spun: Nanos::ZERO,
        }
    }

    /// How early to program the next event.
    pub(crate) fn lead(&self) -> Nanos {
        match self.mode {
            TimerAdvance::Off => Nanos::ZERO,
            _ => Nanos::from_nanos(self.lead_ns),
        }
    }

    /// Feeds one observed delivery delay (handler entry − programmed time).
    pub(crate) fn observe(&mut self, delay: Nanos) {
        if self.mode != TimerAdvance::Auto {
            return;
        }
        self.samples += 1;
        let d = delay.min(MAX_TIMER_ADVANCE).as_nanos() as i64;
        let a = self.lead_ns as i64;
        let next = a + ((d - a) >> EWMA_SHIFT);
        self.lead_ns = next.clamp(0, MAX_TIMER_ADVANCE.as_nanos() as i64) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_converges_to_a_constant_delay_and_is_bounded() {
        let mut a = Advance::new(TimerAdvance::Auto);
        for _ in 0..200 {
            a.observe(Nanos::from_micros(60));
        }
        let lead = a.lead().as_nanos();
        assert!((59_993..=60_000).contains(&lead), "{lead}");
        for _ in 0..200 {
            a.observe(Nanos::from_millis(5));
        }
        // Integer EWMA: it settles within 2^3 ns below the (clamped) delay.
        let lead = a.lead().as_nanos();
        let max = MAX_TIMER_ADVANCE.as_nanos();
        assert!(lead <= max && lead > max - 8, "{lead}");
    }

    #[test]
    fn off_and_fixed_do_not_learn() {
        let mut off = Advance::new(TimerAdvance::Off);
        off.observe(Nanos::from_micros(60));
        assert_eq!(off.lead(), Nanos::ZERO);
        let mut fixed = Advance::new(TimerAdvance::Fixed(Nanos::from_micros(7)));
        fixed.observe(Nanos::from_micros(60));
        assert_eq!(fixed.lead(), Nanos::from_micros(7));
        let big = Advance::new(TimerAdvance::Fixed(Nanos::from_secs(1)));
        assert_eq!(big.lead(), MAX_TIMER_ADVANCE);
    }
}
