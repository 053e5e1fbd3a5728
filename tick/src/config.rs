//! Tick configuration and the modes a CPU's tick can be in.

use core::fmt;

use clocksource::{Hertz, Nanos, NSEC_PER_SEC};

/// What the embedder asks for (Linux: `CONFIG_HZ`, `nohz=`, `highres=`).
///
/// These are wishes: a CPU gets NO_HZ or high resolution only if its tick
/// device offers one-shot mode and the clocksource is valid for it. Built
/// with [`TickConfig::new`] and the `with_*` methods, read with
/// [`hz`](Self::hz), [`nohz`](Self::nohz), [`highres`](Self::highres);
/// checked when a tick system is built ([`TickConfig::validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickConfig {
    /// Ticks per second (100, 250, 1000 are usual; 1..=10000 accepted).
    hz: Hertz,
    /// Stop the tick on idle CPUs.
    nohz: bool,
    /// Run timers at their own expiry instead of at the next tick.
    highres: bool,
}

/// Why a [`TickConfig`] is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `hz` outside 1..=10000 Hz.
    BadHz(Hertz),
}

impl TickConfig {
    /// HZ=250 with NO_HZ and high resolution, Linux's x86 default.
    pub const DEFAULT: TickConfig = TickConfig {
        hz: Hertz::new(250),
        nohz: true,
        highres: true,
    };

    /// `hz` ticks per second, with NO_HZ and high resolution asked for (as
    /// [`TickConfig::DEFAULT`]); [`with_nohz`](Self::with_nohz) and
    /// [`with_highres`](Self::with_highres) change that.
    pub const fn new(hz: Hertz) -> Self {
        TickConfig {
            hz,
            ..TickConfig::DEFAULT
        }
    }
    /// With NO_HZ idle asked for, or not.
    pub const fn with_nohz(mut self, nohz: bool) -> Self {
        self.nohz = nohz;
        self
    }
    /// With high resolution asked for, or not.
    pub const fn with_highres(mut self, highres: bool) -> Self {
        self.highres = highres;
        self
    }
    /// Ticks per second.
    pub const fn hz(&self) -> Hertz {
        self.hz
    }
    /// Whether NO_HZ idle is asked for.
    pub const fn nohz(&self) -> bool {
        self.nohz
    }
    /// Whether high resolution is asked for.
    pub const fn highres(&self) -> bool {
        self.highres
    }

    /// Checks the values.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.hz.get() == 0 || self.hz.get() > 10_000 {
            return Err(ConfigError::BadHz(self.hz));
        }
        Ok(self)
    }

    /// The tick period, `10⁹ / hz` ns rounded to nearest (Linux `TICK_NSEC`).
    pub fn period(self) -> Nanos {
        let hz = self.hz.get().max(1);
        Nanos::from_nanos((NSEC_PER_SEC + hz / 2) / hz)
    }

    /// Whether any one-shot feature was asked for.
    pub fn wants_oneshot(self) -> bool {
        self.nohz || self.highres
    }
}

impl Default for TickConfig {
    fn default() -> Self {
        TickConfig::DEFAULT
    }
}

/// The mode a CPU's tick runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickMode {
    /// No usable device yet: the CPU has no tick of its own.
    NoDevice,
    /// The device fires periodically by itself; timers run at ticks.
    Periodic,
    /// The tick is emulated on a one-shot device (the device has no
    /// periodic mode and neither NO_HZ nor high-res was asked for).
    OneshotPeriodic,
    /// One-shot, low resolution: timers run at ticks, the tick stops when
    /// idle (Linux `NOHZ_MODE_LOWRES`).
    NoHzLowRes,
    /// One-shot, high resolution: timers fire at their own expiry; the tick
    /// is an internal deadline; with `nohz` it stops when idle.
    HighRes {
        /// Whether the tick stops when idle.
        nohz: bool,
    },
}

impl TickMode {
    /// Whether the device runs in one-shot mode.
    pub fn is_oneshot(self) -> bool {
        matches!(
            self,
            TickMode::OneshotPeriodic | TickMode::NoHzLowRes | TickMode::HighRes { .. }
        )
    }
    /// Whether the tick may stop when idle.
    pub fn is_nohz(self) -> bool {
        matches!(
            self,
            TickMode::NoHzLowRes | TickMode::HighRes { nohz: true }
        )
    }
    /// Whether timers run at their own expiry.
    pub fn is_highres(self) -> bool {
        matches!(self, TickMode::HighRes { .. })
    }
}

impl fmt::Display for TickMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TickMode::NoDevice => "no device",
            TickMode::Periodic => "periodic",
            TickMode::OneshotPeriodic => "oneshot (periodic emulated)",
            TickMode::NoHzLowRes => "NO_HZ (low-res)",
            TickMode::HighRes { nohz: true } => "high-res + NO_HZ",
            TickMode::HighRes { nohz: false } => "high-res",
        })
    }
}

/// Why a CPU did not reach the one-shot mode its [`TickConfig`] asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodicReason {
    /// Neither NO_HZ nor high-res was asked for.
    NotRequested,
    /// The tick device cannot do one-shot (for a source crate: built
    /// without its `oneshot` feature).
    DeviceLacksOneshot,
    /// The clocksource is not valid for high resolution / NO_HZ
    /// (not continuous, or marked unstable).
    ClockNotHres,
}

impl fmt::Display for PeriodicReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeriodicReason::NotRequested => "one-shot not requested",
            PeriodicReason::DeviceLacksOneshot => "tick device has no one-shot mode",
            PeriodicReason::ClockNotHres => "clocksource not valid for high resolution",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_period_per_hz() {
        let p = |hz| TickConfig::new(Hertz::new(hz)).period().as_nanos();
        assert_eq!(p(100), 10_000_000);
        assert_eq!(p(250), 4_000_000);
        assert_eq!(p(1000), 1_000_000);
        assert_eq!(p(300), 3_333_333);
        assert_eq!(
            TickConfig::new(Hertz::new(0)).validate(),
            Err(ConfigError::BadHz(Hertz::new(0)))
        );
    }

    #[test]
    fn new_asks_for_nohz_and_highres_until_told_otherwise() {
        let c = TickConfig::new(Hertz::new(100));
        assert!(c.nohz && c.highres);
        assert_eq!(c.period(), Nanos::from_millis(10));
        let c = c.with_nohz(false).with_highres(false);
        assert!(!c.nohz && !c.highres && !c.wants_oneshot());
        assert!(TickConfig::new(Hertz::new(10_001)).validate().is_err());
        assert!(TickConfig::new(Hertz::from_mhz(5_000)).validate().is_err());
    }
}
