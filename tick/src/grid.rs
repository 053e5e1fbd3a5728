//! The tick grid: the instants `k · period` every tick falls on.
//!
//! Linux keeps each CPU's tick on one grid (`tick_next_period`,
//! kernel/time/tick-common.c), so ticks of all CPUs line up and jiffies
//! advance by whole periods. Here too: a tick restarted after idle goes to
//! the next grid point, not `now + period`, and low-resolution timers run
//! at the first grid point at or after their expiry.

use clocksource::{Ktime, Nanos};

/// Ticks since boot: how many grid points the clock has passed (Linux
/// `jiffies_64`). Jiffies advance with the clock, by whole periods, not by
/// interrupts: a late or coalesced tick loses none.
///
/// A count, so it compares with a plain number (`jiffies == 2500`), but it
/// does not mix with other counts in arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Jiffies(u64);

impl Jiffies {
    /// Boot.
    pub const ZERO: Jiffies = Jiffies(0);
    /// `n` ticks.
    pub const fn new(n: u64) -> Self {
        Jiffies(n)
    }
    /// The count.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// `self + n`, saturating.
    pub const fn saturating_add(self, n: u64) -> Self {
        Jiffies(self.0.saturating_add(n))
    }
    /// The ticks from `earlier` to `self` (zero if `earlier` is later).
    pub const fn saturating_since(self, earlier: Jiffies) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl PartialEq<u64> for Jiffies {
    fn eq(&self, n: &u64) -> bool {
        self.0 == *n
    }
}

impl From<Jiffies> for u64 {
    fn from(j: Jiffies) -> u64 {
        j.0
    }
}

impl core::fmt::Debug for Jiffies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} jiffies", self.0)
    }
}

impl core::fmt::Display for Jiffies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The grid of one tick period. Shared, read-only after setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickGrid {
    period: Nanos,
}

impl TickGrid {
    /// The grid of `period` (a period of 0 is treated as 1 ns, so no
    /// division is by zero; [`crate::TickConfig::validate`] keeps real
    /// periods ≥ 100 µs).
    pub const fn new(period: Nanos) -> Self {
        TickGrid { period }
    }

    /// The period.
    pub const fn period(self) -> Nanos {
        self.period
    }

    fn p(self) -> u64 {
        self.period.as_nanos().max(1)
    }

    /// The first grid point strictly after `t`.
    pub fn next(self, t: Ktime) -> Ktime {
        let p = self.p();
        Ktime::from_nanos((t.as_nanos() / p).saturating_add(1).saturating_mul(p))
    }

    /// The first grid point at or after `t` (where a low-resolution timer
    /// runs); `Ktime::MAX` stays "never".
    pub fn ceil(self, t: Ktime) -> Ktime {
        if t.is_never() {
            return t;
        }
        let p = self.p();
        Ktime::from_nanos(t.as_nanos().div_ceil(p).saturating_mul(p))
    }

    /// The last grid point at or before `t`.
    pub fn floor(self, t: Ktime) -> Ktime {
        let p = self.p();
        Ktime::from_nanos(t.as_nanos() / p * p)
    }

    /// Whole periods from `from` to `to` (0 if `to` is before `from`).
    pub fn periods_between(self, from: Ktime, to: Ktime) -> u64 {
        to.checked_since(from)
            .map_or(0, |d| d.as_nanos() / self.p())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jiffies_compare_with_a_count_and_print_as_one() {
        extern crate alloc;
        let j = Jiffies::new(2_500);
        assert_eq!(j, 2_500);
        assert_eq!(j.saturating_add(3).saturating_since(j), 3);
        assert_eq!(Jiffies::ZERO.saturating_since(j), 0);
        assert_eq!(u64::from(j), 2_500);
        assert_eq!(alloc::format!("{j:?} / {j}"), "2500 jiffies / 2500");
    }

    use super::*;

    const MS4: Nanos = Nanos::from_millis(4); // HZ = 250

    fn t(ns: u64) -> Ktime {
        Ktime::from_nanos(ns)
    }

    #[test]
    fn next_is_strictly_after_and_on_the_grid() {
        let g = TickGrid::new(MS4);
        assert_eq!(g.next(t(0)), t(4_000_000));
        assert_eq!(g.next(t(3_999_999)), t(4_000_000));
        assert_eq!(g.next(t(4_000_000)), t(8_000_000));
    }

    #[test]
    fn ceil_keeps_grid_points_and_never() {
        let g = TickGrid::new(MS4);
        assert_eq!(g.ceil(t(0)), t(0));
        assert_eq!(g.ceil(t(1)), t(4_000_000));
        assert_eq!(g.ceil(t(8_000_000)), t(8_000_000));
        assert_eq!(g.ceil(Ktime::MAX), Ktime::MAX);
    }

    #[test]
    fn floor_and_periods_between() {
        let g = TickGrid::new(MS4);
        assert_eq!(g.floor(t(11_999_999)), t(8_000_000));
        assert_eq!(g.periods_between(t(1_000_000), t(13_000_000)), 3);
        assert_eq!(g.periods_between(t(13_000_000), t(1_000_000)), 0);
    }

    #[test]
    fn a_zero_period_does_not_divide_by_zero() {
        let g = TickGrid::new(Nanos::ZERO);
        assert_eq!(g.next(t(5)), t(6));
        assert_eq!(g.ceil(t(5)), t(5));
        assert_eq!(g.periods_between(t(0), t(7)), 7);
    }

    #[test]
    fn saturates_at_the_end_of_time() {
        let g = TickGrid::new(MS4);
        let last = t(u64::MAX - 1);
        assert!(g.next(last) >= last);
    }
}
