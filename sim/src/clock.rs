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

use clocksource::{Ktime, Nanos};

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

impl hw::TimeBase for VirtualClock {
    fn now(&self) -> Ktime {
        VirtualClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
