//! The simulation's true time.
//!
//! One [`VirtualClock`] is shared (as `Arc<VirtualClock>`) by every device of
//! a simulation: counters derive their count from it, event devices their fire
//! times. Only two things move it: the machine, when it jumps to the next due
//! event, and a counter with a read delay (a read that takes time, see
//! [`SimCounter::set_read_delay`](crate::counter::SimCounter::set_read_delay)).
//! It never goes backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clocksource::{Hertz, Ktime, Nanos};

/// True time of a simulation, in nanoseconds since boot. Lock-free, so devices
/// holding it stay `Sync`.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: AtomicU64,
}

impl VirtualClock {
    /// A clock at boot ([`Ktime::ZERO`]).
    pub fn new() -> Arc<Self> {
        Self::starting_at(Ktime::ZERO)
    }

    /// A clock that starts at `t`.
    pub fn starting_at(t: Ktime) -> Arc<Self> {
        Arc::new(VirtualClock {
            now: AtomicU64::new(t.as_nanos()),
        })
    }

    /// The current true time.
    pub fn now(&self) -> Ktime {
        Ktime::from_nanos(self.now.load(Ordering::SeqCst))
    }

    /// Moves time forward to `t` and returns the time now.
    ///
    /// Time never goes backwards: a `t` earlier than now is ignored (and
    /// logged at debug level), and the current time is returned.
    pub fn advance_to(&self, t: Ktime) -> Ktime {
        let prev = self.now.fetch_max(t.as_nanos(), Ordering::SeqCst);
        if t.as_nanos() < prev {
            log::debug!(
                "virtual clock: ignoring advance_to({t}), already at {}",
                Ktime::from_nanos(prev)
            );
        }
        Ktime::from_nanos(prev.max(t.as_nanos()))
    }

    /// Moves time forward by `d` (saturating at [`Ktime::MAX`]) and returns
    /// the time now.
    pub fn advance_by(&self, d: Nanos) -> Ktime {
        let prev = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ns| {
                Some(ns.saturating_add(d.as_nanos()))
            })
            .unwrap_or_else(|ns| ns);
        Ktime::from_nanos(prev.saturating_add(d.as_nanos()))
    }
}

/// The edges of a counter of rate `f` that started at true time 0, as the
/// register models count them: edge *j* comes at ⌈j / f⌉ (the first
/// instant at or after it on the nanosecond grid), and ⌊t · f⌋ edges have
/// passed at `t`. Tests compute a device's expected counts and instants
/// with it from the datasheet rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edges(Hertz);

impl Edges {
    /// The edges of a counter of rate `f`.
    pub const fn new(f: Hertz) -> Self {
        Edges(f)
    }

    /// Edges passed at true time `t`.
    pub fn at(self, t: Ktime) -> u64 {
        (t.as_nanos() as u128 * self.0.get() as u128 / 1_000_000_000) as u64
    }

    /// The instant of edge `j`.
    pub fn edge(self, j: u64) -> Ktime {
        let f = self.0.get().max(1) as u128;
        Ktime::from_nanos((j as u128 * 1_000_000_000).div_ceil(f) as u64)
    }
}

impl hw::TimeBase for VirtualClock {
    fn now(&self) -> Ktime {
        VirtualClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_of_the_acpi_pm_timer_fall_on_the_first_ns_at_or_after_them() {
        // 3.579545 MHz (ACPI 6.5 §4.8.3.3): edge 1 at 279.365… ns, so 280;
        // 3 579 545 edges in exactly 1 s.
        let pm = Edges::new(Hertz::new(3_579_545));
        assert_eq!(pm.edge(1), Ktime::from_nanos(280));
        assert_eq!(pm.at(Ktime::from_nanos(279)), 0);
        assert_eq!(pm.at(Ktime::from_nanos(280)), 1);
        assert_eq!(pm.at(Ktime::from_secs(1)), 3_579_545);
        assert_eq!(pm.edge(3_579_545), Ktime::from_secs(1));
        for j in [0, 1, 2, 1_000, 16_777_216] {
            assert_eq!(pm.at(pm.edge(j)), j, "edge {j}");
            assert_eq!(
                pm.at(pm.edge(j).saturating_sub(Nanos::from_nanos(1))),
                j.saturating_sub(1)
            );
        }
    }

    #[test]
    fn clock_never_goes_backwards() {
        let c = VirtualClock::new();
        assert_eq!(c.advance_to(Ktime::from_millis(5)), Ktime::from_millis(5));
        assert_eq!(c.advance_to(Ktime::from_millis(3)), Ktime::from_millis(5));
        assert_eq!(c.now(), Ktime::from_millis(5));
        assert_eq!(
            c.advance_by(Nanos::from_nanos(7)),
            Ktime::from_nanos(5_000_007)
        );
        assert_eq!(c.now(), Ktime::from_nanos(5_000_007));
    }

    #[test]
    fn clock_saturates_at_never() {
        let c = VirtualClock::starting_at(Ktime::from_nanos(u64::MAX - 1));
        assert_eq!(c.advance_by(Nanos::from_secs(1)), Ktime::MAX);
    }
}
