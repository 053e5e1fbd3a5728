//! The core's view of one device: state, conversion, limits, and safe
//! programming.
//!
//! # Programming an event
//!
//! [`EventDevice::program_event`] follows Linux's
//! `clockevents_program_event()` (kernel/time/clockevents.c, v7.0):
//!
//! ```text
//!   expires == never ──────────────────────────► ONESHOT_STOPPED, done
//!   Deadline device ───────────────────────────► program(At(expires))
//!   delta = expires − now
//!   delta ≤ 0 and Expired::Report ─────────────► Err(Expired)
//!   delta > min_delta:  clamp to max_delta, program(In(⌈delta⌉ cycles))
//!                       ok → done (forced latch cleared)
//!   forced event already pending ──────────────► done (it fires within min_delta)
//!   program(In(min_delta)) ok ─────────────────► done, forced latch set
//!   TooLate, Expired::Force ───────────────────► retry policy below
//! ```
//!
//! [`EventDevice::next_event`] is what the device is armed for: a `TooLate`
//! write replaced the earlier event, so after [`ProgramError::GaveUp`] it
//! is `Ktime::MAX` (nothing armed) and callers comparing against it
//! reprogram.
//!
//! The **forced latch** (Linux `next_event_forced`, "Prevent timer interrupt
//! starvation", 2026) stops a storm of near-term reprogramming from pushing a
//! min-delta event out forever: while one is pending, further near events are
//! left to it. It is cleared when the device's interrupt is handled
//! ([`EventDevice::event_handled`]) and on every state change (the 7.0.1 fix).
//!
//! # Retry policy when the device reports `TooLate`
//!
//! As Linux with `GENERIC_CLOCKEVENTS_MIN_ADJUST` (x86's choice):
//! program `min_delta`; after [`MIN_DELTA_TRIES`] consecutive failures, raise
//! `min_delta` permanently — to [`MIN_DELTA_FLOOR_RAISED`] if below it,
//! otherwise by half — and try again; once `min_delta` reaches the limit
//! given at configuration (one tick period, Linux `MIN_DELTA_LIMIT`) give up
//! with [`ProgramError::GaveUp`]. So at most
//! `MIN_DELTA_TRIES × (1 + raises)` calls are made, and raises are bounded by
//! `log₁.₅(limit / 5 µs)` (≤ 17 for a 4 ms tick).

use clocksource::{Cycles, Hertz, Ktime, Nanos, NsToCycles, NSEC_PER_SEC};

use crate::device::{ClockEventDevice, DeviceError, DeviceInfo, Features, NextEvent, Programming};
use crate::state::{check_transition, DeviceState, StateError};

/// Consecutive `TooLate` answers at one `min_delta` before it is raised.
pub const MIN_DELTA_TRIES: u32 = 3;
/// What `min_delta` is raised to first when it is below it (Linux: 5 µs).
pub const MIN_DELTA_FLOOR_RAISED: Nanos = Nanos::from_micros(5);
/// No device is programmed closer than this (Linux `cev_delta2ns` floors
/// `min_delta_ns` at 1 µs: closer events are "pointless noise").
pub const MIN_DELTA_FLOOR: Nanos = Nanos::from_micros(1);
/// Longest conversion range for devices with more than 32-bit deltas.
pub const WIDE_DEVICE_MAX_SECS: u64 = 600;

/// What to do with an expiry that is already in the past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Return [`ProgramError::Expired`]; the caller runs the work itself.
    Report,
    /// Program the device's minimum delta so an interrupt comes anyway.
    Force,
}

/// Why programming an event failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// The expiry is not in the future and the caller asked to be told.
    Expired,
    /// The device is not in a one-shot state.
    NotOneshot(DeviceState),
    /// The device refused with an error other than `TooLate`.
    Device(DeviceError),
    /// The retry policy was exhausted; the device never accepted an event.
    GaveUp,
}

/// How an event was programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programmed {
    /// The device fires at (or, by its contract, after) `expires`.
    At(Ktime),
    /// The event was too near (or past); the device fires after its minimum
    /// delta instead, earliest at the given time.
    Forced(Ktime),
    /// A forced event was already pending and will fire first; nothing was
    /// written to the device.
    AlreadyForced,
    /// `Ktime::MAX` was asked for: no event, device stopped.
    Stopped,
}

/// Counters of what programming had to do, for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Successful `program` calls.
    pub programmed: u64,
    /// `TooLate` answers from the device.
    pub too_late: u64,
    /// Times `min_delta` was raised.
    pub min_delta_raised: u32,
}

/// Why a device cannot be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A cycle-programmed device reported zero frequency.
    ZeroFrequency,
    /// `min_delta > max_delta` or `max_delta == 0`.
    BadDeltaRange,
    /// The device declares neither `PERIODIC` nor `ONESHOT` (and is not a
    /// dummy).
    NoMode,
}

/// One registered device as the core drives it.
///
/// # Invariants
///
/// - `min_delta_ns ≤ max_delta_ns`, both in `[MIN_DELTA_FLOOR, ∞)`.
/// - `state` is the state the driver was last successfully put in.
pub struct EventDevice<'a> {
    dev: &'a dyn ClockEventDevice,
    info: DeviceInfo,
    features: Features,
    state: DeviceState,
    conv: Option<NsToCycles>,
    min_delta_ns: Nanos,
    max_delta_ns: Nanos,
    min_delta_cycles: Cycles,
    max_delta_cycles: Cycles,
    min_delta_limit: Nanos,
    next_event: Ktime,
    forced: bool,
    stats: ProgramStats,
}

impl<'a> EventDevice<'a> {
    /// Wraps `dev`, computing its ns→cycles factor and its min/max delta in
    /// nanoseconds. `min_delta_limit` is the most the retry policy may raise
    /// `min_delta` to (normally one tick period). The device starts
    /// `Detached`.
    pub fn new(dev: &'a dyn ClockEventDevice, min_delta_limit: Nanos) -> Result<Self, ConfigError> {
        Self::with_info(dev, dev.info(), min_delta_limit)
    }

    /// Wraps `dev` as [`EventDevice::new`] does, with its [`DeviceInfo`]
    /// already read (the pool's copy, from registration).
    pub fn with_info(
        dev: &'a dyn ClockEventDevice,
        info: DeviceInfo,
        min_delta_limit: Nanos,
    ) -> Result<Self, ConfigError> {
        let features = info.features;
        if !features.intersects(Features::PERIODIC | Features::ONESHOT)
            && !features.contains(Features::DUMMY)
        {
            return Err(ConfigError::NoMode);
        }
        // A dummy device is never programmed; a deadline device takes
        // nanoseconds: neither has a cycle range.
        let cycle_range = match info.programming() {
            Programming::Cycles {
                frequency,
                min_delta,
                max_delta,
            } if !features.contains(Features::DUMMY) => Some((frequency, min_delta, max_delta)),
            _ => None,
        };
        let (conv, min_ns, max_ns, min_c, max_c) = match cycle_range {
            None => (
                None,
                MIN_DELTA_FLOOR,
                Nanos::MAX,
                Cycles::ZERO,
                Cycles::new(u64::MAX),
            ),
            Some((freq, min_c, max_c)) => {
                if freq.get() == 0 {
                    return Err(ConfigError::ZeroFrequency);
                }
                if max_c.get() == 0 || min_c > max_c {
                    return Err(ConfigError::BadDeltaRange);
                }
                let mut secs = max_c.get() / freq.get();
                if secs == 0 {
                    secs = 1;
                } else if secs > WIDE_DEVICE_MAX_SECS && max_c.get() > u32::MAX as u64 {
                    secs = WIDE_DEVICE_MAX_SECS;
                }
                let conv = NsToCycles::new(freq, secs).map_err(|_| ConfigError::ZeroFrequency)?;
                // The range in ns: min rounded up, max rounded down (so it never
                // converts to more than max_delta cycles), max limited to what
                // the factor converts without overflow.
                let min_ns = cycles_to_ns_ceil(freq, min_c).max(MIN_DELTA_FLOOR);
                let max_ns = freq
                    .exact_cycles_to_ns(max_c)
                    .min(Nanos::from_nanos(conv.0.max_input()))
                    .max(min_ns);
                (Some(conv), min_ns, max_ns, min_c, max_c)
            }
        };
        Ok(EventDevice {
            dev,
            info,
            features,
            state: DeviceState::Detached,
            conv,
            min_delta_ns: min_ns,
            max_delta_ns: max_ns,
            min_delta_cycles: min_c,
            max_delta_cycles: max_c,
            min_delta_limit: min_delta_limit.max(min_ns),
            next_event: Ktime::MAX,
            forced: false,
            stats: ProgramStats::default(),
        })
    }

    /// The driver.
    pub fn device(&self) -> &'a dyn ClockEventDevice {
        self.dev
    }
    /// What the device is, as read when it was wrapped.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }
    /// The driver's name.
    pub fn name(&self) -> &'static str {
        self.info.name
    }
    /// The declared features.
    pub fn features(&self) -> Features {
        self.features
    }
    /// The current state.
    pub fn state(&self) -> DeviceState {
        self.state
    }
    /// The smallest delay this device is programmed with.
    pub fn min_delta(&self) -> Nanos {
        self.min_delta_ns
    }
    /// The longest delay this device can be programmed with.
    pub fn max_delta(&self) -> Nanos {
        self.max_delta_ns
    }
    /// The expiry last programmed (`Ktime::MAX` if none).
    pub fn next_event(&self) -> Ktime {
        self.next_event
    }
    /// Whether a forced (min-delta) event is pending.
    pub fn is_forced(&self) -> bool {
        self.forced
    }
    /// What programming has had to do so far.
    pub fn stats(&self) -> ProgramStats {
        self.stats
    }

    /// Moves the device to `to`, calling the driver. A refused change leaves
    /// the state as it was. Any change clears the forced latch.
    pub fn set_state(&mut self, to: DeviceState, period: Nanos) -> Result<(), StateError> {
        check_transition(self.state, to, self.features)?;
        if !self.features.contains(Features::DUMMY) {
            let r = match to {
                DeviceState::Detached => Ok(()),
                DeviceState::Shutdown => self.dev.set_state_shutdown(),
                DeviceState::Periodic => self.dev.set_state_periodic(period),
                // Also when resuming from stopped: a driver's
                // `set_state_oneshot_stopped` may have shut the device
                // down (the trait's default), so one-shot mode is entered
                // again, as Linux's `__clockevents_switch_state` does on
                // `tick_program_event`'s way out of ONESHOT_STOPPED.
                DeviceState::Oneshot => self.dev.set_state_oneshot(),
                DeviceState::OneshotStopped => self.dev.set_state_oneshot_stopped(),
            };
            if let Err(e) = r {
                log::warn!(
                    "clockevents: {}: {} → {} failed: {:?}",
                    self.name(),
                    self.state,
                    to,
                    e
                );
                return Err(StateError::Device(e));
            }
        }
        self.state = to;
        self.forced = false;
        if to != DeviceState::Oneshot {
            self.next_event = Ktime::MAX;
        }
        Ok(())
    }

    /// Attaches a detached device (→ `Shutdown`).
    pub fn attach(&mut self) -> Result<(), StateError> {
        self.set_state(DeviceState::Shutdown, Nanos::ZERO)
    }

    /// Shuts the device down and detaches it, ready to be handed back.
    pub fn release(&mut self) -> Result<(), StateError> {
        if self.state != DeviceState::Detached {
            if self.state != DeviceState::Shutdown {
                self.set_state(DeviceState::Shutdown, Nanos::ZERO)?;
            }
            self.set_state(DeviceState::Detached, Nanos::ZERO)?;
        }
        Ok(())
    }

    /// Must be called by the interrupt handler when this device's interrupt
    /// is taken: the pending event (forced or not) is consumed.
    pub fn event_handled(&mut self) {
        self.forced = false;
        if self.state == DeviceState::Oneshot {
            self.next_event = Ktime::MAX;
        }
    }

    /// Programs one event at `expires`; `now` is the current monotonic time.
    /// See the module docs for the algorithm and the retry policy.
    pub fn program_event(
        &mut self,
        expires: Ktime,
        now: Ktime,
        on_expired: Expired,
    ) -> Result<Programmed, ProgramError> {
        if expires.is_never() {
            if self.state == DeviceState::Oneshot {
                self.set_state(DeviceState::OneshotStopped, Nanos::ZERO)
                    .map_err(state_to_program_error)?;
            }
            self.next_event = Ktime::MAX;
            return Ok(Programmed::Stopped);
        }
        match self.state {
            DeviceState::Oneshot => {}
            DeviceState::OneshotStopped => self
                .set_state(DeviceState::Oneshot, Nanos::ZERO)
                .map_err(state_to_program_error)?,
            s => return Err(ProgramError::NotOneshot(s)),
        }
        if self.features.contains(Features::DUMMY) {
            self.next_event = expires;
            return Ok(Programmed::At(expires));
        }
        if self.conv.is_none() {
            // A deadline device (a dummy returned above).
            if expires <= now && on_expired == Expired::Report {
                return Err(ProgramError::Expired);
            }
            return match self.dev.program(NextEvent::At(expires)) {
                Ok(()) => {
                    self.stats.programmed += 1;
                    self.next_event = expires;
                    Ok(Programmed::At(expires))
                }
                Err(e) => Err(ProgramError::Device(e)),
            };
        }
        let delta = expires.saturating_since(now);
        if delta == Nanos::ZERO && on_expired == Expired::Report {
            return Err(ProgramError::Expired);
        }
        if delta > self.min_delta_ns {
            let delta = delta.min(self.max_delta_ns);
            let cycles = self.ns_to_cycles(delta);
            match self.dev.program(NextEvent::In(cycles)) {
                Ok(()) => {
                    self.stats.programmed += 1;
                    self.forced = false;
                    self.next_event = now.saturating_add(delta);
                    return Ok(Programmed::At(self.next_event));
                }
                Err(DeviceError::TooLate) => self.stats.too_late += 1,
                Err(e) => return Err(ProgramError::Device(e)),
            }
        }
        if self.forced {
            return Ok(Programmed::AlreadyForced);
        }
        self.program_min_delta(now)
    }

    /// Programs `min_delta`, raising it per the retry policy on `TooLate`.
    fn program_min_delta(&mut self, now: Ktime) -> Result<Programmed, ProgramError> {
        let mut tries = 0;
        loop {
            let delta = self.min_delta_ns;
            let cycles = self.ns_to_cycles(delta).max(self.min_delta_cycles);
            match self.dev.program(NextEvent::In(cycles)) {
                Ok(()) => {
                    self.stats.programmed += 1;
                    self.forced = true;
                    self.next_event = now.saturating_add(delta);
                    return Ok(Programmed::Forced(self.next_event));
                }
                Err(DeviceError::TooLate) => self.stats.too_late += 1,
                Err(e) => return Err(ProgramError::Device(e)),
            }
            tries += 1;
            if tries >= MIN_DELTA_TRIES {
                if !self.raise_min_delta() {
                    log::error!(
                        "clockevents: {}: reprogramming failure, giving up (min_delta {})",
                        self.name(),
                        self.min_delta_ns
                    );
                    // Each `TooLate` write replaced whatever was armed
                    // before: nothing is.
                    self.next_event = Ktime::MAX;
                    return Err(ProgramError::GaveUp);
                }
                tries = 0;
            }
        }
    }

    /// Raises `min_delta` one step; false if it is already at the limit.
    fn raise_min_delta(&mut self) -> bool {
        if self.min_delta_ns >= self.min_delta_limit {
            return false;
        }
        let raised = if self.min_delta_ns < MIN_DELTA_FLOOR_RAISED {
            MIN_DELTA_FLOOR_RAISED
        } else {
            self.min_delta_ns
                .saturating_add(Nanos::from_nanos(self.min_delta_ns.as_nanos() / 2))
        };
        self.min_delta_ns = raised.min(self.min_delta_limit).min(self.max_delta_ns);
        self.stats.min_delta_raised += 1;
        log::warn!(
            "clockevents: {}: increased min_delta to {}",
            self.name(),
            self.min_delta_ns
        );
        true
    }

    fn ns_to_cycles(&self, d: Nanos) -> Cycles {
        match self.conv {
            Some(c) => c
                .ns_to_cycles(d)
                .max(self.min_delta_cycles)
                .min(self.max_delta_cycles),
            None => Cycles::ZERO,
        }
    }
}

fn state_to_program_error(e: StateError) -> ProgramError {
    match e {
        StateError::Device(d) => ProgramError::Device(d),
        StateError::Illegal { from, .. } => ProgramError::NotOneshot(from),
        StateError::Unsupported { .. } => ProgramError::Device(DeviceError::Unsupported),
    }
}

/// `⌈cycles · 10⁹ / freq⌉` in exact 128-bit arithmetic.
fn cycles_to_ns_ceil(freq: Hertz, c: Cycles) -> Nanos {
    let ns = (c.get() as u128 * NSEC_PER_SEC as u128).div_ceil(freq.get() as u128);
    Nanos::from_nanos(ns.min(u64::MAX as u128) as u64)
}

impl core::fmt::Debug for EventDevice<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventDevice")
            .field("name", &self.name())
            .field("state", &self.state)
            .field("min_delta", &self.min_delta_ns)
            .field("max_delta", &self.max_delta_ns)
            .field("next_event", &self.next_event)
            .field("forced", &self.forced)
            .finish()
    }
}
