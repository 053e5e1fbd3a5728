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
//!   learn (Auto):      delay    = now − fire_at
//!                      learned += (min(delay, 2·MAX) − learned) / 8   (EWMA)
//!                      advance  = min(learned, MAX_TIMER_ADVANCE),
//!                                 or 0 while backed off (below)
//!   programmed early?  spin reading the clocksource until now ≥ target
//!                      (bounded by time, below)
//!   run timers         (a timer still runs only if its expiry ≤ now: never early)
//! ```
//!
//! It trades CPU time (the spin, at most [`MAX_TIMER_ADVANCE`] per event)
//! for lateness, so it is off by default: a runtime option
//! (`timer_advance=auto|off|<ns>` on the guest's command line).
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
//! # When auto backs off
//!
//! A lead makes up a *delivery delay*: a latency from the device's expiry
//! to the handler that does not depend on when the device was programmed.
//! A CPU that cannot keep up is different: it takes the interrupt when it
//! is out of the work it is behind on, however early the device fired.
//! The delay measured from the advanced expiry then grows with the lead,
//! the EWMA chases its own tail to the cap, and the early interrupt only
//! lands in the middle of that work. Under QEMU TCG with
//! `-icount shift=10,sleep=off` (deterministic, ~1 µs a guest
//! instruction; the guest's `bench-lateness` on the LAPIC timer, a 1 ms
//! periodic timer, every period missed either way) the saturated 200 µs
//! lead made the handler enter 186 µs *later* at the median than no lead.
//! At `shift=9` the same saturated lead is the best thing there is: a
//! delivery delay of ~300 µs, the handler ~30 µs after its target with the
//! lead, and 4 missed periods of 2000 against 666 with the advance off. So
//! a saturated lead alone does not say the advance fails; how late the
//! handler still is does.
//!
//! Auto keeps an average of how late the handler finds its target (after
//! any spin, so 0 at best; samples up to 8 × [`MAX_TIMER_ADVANCE`], so a
//! backlog is not clipped). A lead of at most [`MAX_TIMER_ADVANCE`] brings
//! the handler that much nearer its deadline at best; when, with the lead
//! in force, it is still more than 2 × [`MAX_TIMER_ADVANCE`] late on
//! average, the CPU is behind by more than any lead can make up and auto
//! **backs off**: the lead is 0, exactly as with `off`. It keeps learning,
//! now with no lead, and leads again once the handler is less than
//! [`MAX_TIMER_ADVANCE`] late on average — a lateness a lead can cover.
//! Backed off, auto *is* off; leading, it is within 400 µs of its targets,
//! where the lead takes its size off a delivery delay. What is given up is
//! a delivery delay past 3 × [`MAX_TIMER_ADVANCE`] (600 µs), which the lead
//! could still have shortened by 200 µs: at that size it is not a delivery
//! delay to chase.
//!
//! KVM's host-side advance guards the same loop in its own way
//! (`adjust_lapic_timer_advance()`, Linux arch/x86/kvm/lapic.c): samples
//! beyond `LAPIC_TIMER_ADVANCE_ADJUST_MAX` are ignored, and an advance that
//! grew past `LAPIC_TIMER_ADVANCE_NS_MAX` is reset to its initial value.
//! Backing off is counted ([`crate::CpuStats::advance_back_offs`]).

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
/// The largest delay sample the lead learns from: one host stall moves it
/// by at most 1/8 of this (50 µs).
const MAX_DELAY_SAMPLE: u64 = 2 * MAX_TIMER_ADVANCE.as_nanos();
/// The largest lateness sample: big enough that a CPU's backlog is not
/// clipped to the size of a delay.
const MAX_LATE_SAMPLE: u64 = 8 * MAX_TIMER_ADVANCE.as_nanos();
/// Auto backs off while the handler is later than this on average.
const BACK_OFF_ABOVE: u64 = 2 * MAX_TIMER_ADVANCE.as_nanos();
/// Backed off, auto leads again once the handler is later than its target
/// by less than this on average.
const LEAD_AGAIN_BELOW: u64 = MAX_TIMER_ADVANCE.as_nanos();

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
    /// The current lead, ns.
    lead_ns: u64,
    /// `Auto`: the learned delivery delay (EWMA), ns.
    delay_ns: u64,
    /// `Auto`: how late the handler found its targets (EWMA), ns.
    late_ns: u64,
    /// `Auto`: the CPU is behind by more than a lead can make up; no lead.
    backed_off: bool,
    pub(crate) samples: u64,
    /// Total time spent spinning to deadlines.
    pub(crate) spun: Nanos,
}

/// `avg += (sample − avg) / 8`.
fn ewma(avg: u64, sample: u64) -> u64 {
    (avg as i64 + ((sample as i64 - avg as i64) >> EWMA_SHIFT)) as u64
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
            ..Advance::default()
        }
    }

    /// How early to program the next event.
    pub(crate) fn lead(&self) -> Nanos {
        match self.mode {
            TimerAdvance::Off => Nanos::ZERO,
            _ => Nanos::from_nanos(self.lead_ns),
        }
    }

    /// `Auto`: the delivery delay learned so far.
    pub(crate) fn learned_delay(&self) -> Nanos {
        Nanos::from_nanos(self.delay_ns)
    }

    /// Feeds one event: its delivery delay (handler entry − programmed
    /// time) and how late the handler found its target (after any spin).
    /// Returns true when this event made auto back off (module docs).
    pub(crate) fn observe(&mut self, delay: Nanos, late: Nanos) -> bool {
        if self.mode != TimerAdvance::Auto {
            return false;
        }
        self.samples += 1;
        self.delay_ns = ewma(self.delay_ns, delay.as_nanos().min(MAX_DELAY_SAMPLE));
        self.late_ns = ewma(self.late_ns, late.as_nanos().min(MAX_LATE_SAMPLE));
        let was = self.backed_off;
        if self.late_ns > BACK_OFF_ABOVE {
            self.backed_off = true;
        } else if self.late_ns < LEAD_AGAIN_BELOW {
            self.backed_off = false;
        }
        self.lead_ns = if self.backed_off {
            0
        } else {
            self.delay_ns.min(MAX_TIMER_ADVANCE.as_nanos())
        };
        self.backed_off && !was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `n` events through `a`: each is programmed with the lead `a`
    /// asks for and reaches its handler `arrival(lead)` ns after its target
    /// (negative: early, then spun to it). Returns how often auto backed
    /// off.
    fn feed(a: &mut Advance, n: u32, arrival: impl Fn(Nanos) -> i64) -> u32 {
        let mut back_offs = 0;
        for _ in 0..n {
            let lead = a.lead();
            let after_target = arrival(lead);
            let delay = (after_target + lead.as_nanos() as i64).max(0) as u64;
            let late = after_target.max(0) as u64;
            back_offs += u32::from(a.observe(Nanos::from_nanos(delay), Nanos::from_nanos(late)));
        }
        back_offs
    }

    /// A delivery delay of `us` µs: the handler comes `us` after the
    /// programmed time, however early that was.
    fn delivery(us: i64) -> impl Fn(Nanos) -> i64 {
        move |lead| us * 1_000 - lead.as_nanos() as i64
    }

    #[test]
    fn auto_converges_to_a_constant_delay() {
        let mut a = Advance::new(TimerAdvance::Auto);
        assert_eq!(feed(&mut a, 200, delivery(60)), 0);
        // Integer EWMA: it settles within 2^3 ns below the delay.
        let lead = a.lead().as_nanos();
        assert!((59_993..=60_000).contains(&lead), "{lead}");
        // One 5 ms host stall: clamped to 400 µs, it moves the lead by an
        // eighth of the difference, and the lead stays.
        let five_ms = Nanos::from_millis(5);
        assert!(!a.observe(five_ms, five_ms));
        let lead = a.lead().as_nanos();
        assert!((102_000..=102_500).contains(&lead), "{lead}");
    }

    #[test]
    fn auto_keeps_a_saturated_lead_while_it_brings_the_handler_near_its_target() {
        let mut a = Advance::new(TimerAdvance::Auto);
        // 300 µs from the programmed time: the full lead leaves 100 µs.
        assert_eq!(feed(&mut a, 500, delivery(300)), 0);
        let max = MAX_TIMER_ADVANCE.as_nanos();
        let lead = a.lead().as_nanos();
        assert!(lead <= max && lead > max - 8, "{lead}");
        // 600 µs leaves 400 µs: still kept (not above 2 × 200 µs).
        assert_eq!(feed(&mut a, 500, delivery(600)), 0);
        assert!(a.lead().as_nanos() > max - 8);
    }

    #[test]
    fn auto_backs_off_when_the_cpu_is_behind_and_leads_again_when_it_caught_up() {
        let mut a = Advance::new(TimerAdvance::Auto);
        // A CPU that takes the interrupt 500 µs after the target whatever
        // the lead (busy until then): it measures a delay of 500 µs + the
        // lead, which saturates the lead; the handler stays 500 µs late.
        assert_eq!(feed(&mut a, 500, |_| 500_000), 1);
        assert_eq!(a.lead(), Nanos::ZERO);
        // Backed off, a backlog of 300 µs is still more than a lead covers.
        assert_eq!(feed(&mut a, 500, |_| 300_000), 0);
        assert_eq!(a.lead(), Nanos::ZERO);
        // Caught up: a 60 µs delivery delay. Under 200 µs late on average,
        // auto leads again, by what it learned meanwhile.
        assert_eq!(feed(&mut a, 500, delivery(60)), 0);
        let lead = a.lead().as_nanos();
        assert!((59_993..=60_100).contains(&lead), "{lead}");
    }

    #[test]
    fn off_and_fixed_do_not_learn() {
        let mut off = Advance::new(TimerAdvance::Off);
        off.observe(Nanos::from_micros(60), Nanos::from_micros(60));
        assert_eq!(off.lead(), Nanos::ZERO);
        let mut fixed = Advance::new(TimerAdvance::Fixed(Nanos::from_micros(7)));
        fixed.observe(Nanos::from_micros(60), Nanos::from_micros(53));
        assert_eq!(fixed.lead(), Nanos::from_micros(7));
        let big = Advance::new(TimerAdvance::Fixed(Nanos::from_secs(1)));
        assert_eq!(big.lead(), MAX_TIMER_ADVANCE);
    }
}
