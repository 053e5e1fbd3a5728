//! The device state machine.
//!
//! ```text
//!                 attach                  release (from SHUTDOWN only)
//!   DETACHED ───────────────► SHUTDOWN ─────────────────────────► DETACHED
//!                              │  ▲  ▲
//!          set_periodic        │  │  │ shutdown (from any attached state)
//!        ┌─────────────────────┘  │  │
//!        ▼                        │  │
//!    PERIODIC ◄────────────────►  ONESHOT ───────► ONESHOT_STOPPED
//!              (either way,          ▲   program(never)    │
//!               if supported)        └─────────────────────┘
//!                                         program(t)
//! ```
//!
//! As in Linux's `clockevents_switch_state()` (kernel/time/clockevents.c):
//! `ONESHOT_STOPPED` is reachable only from `ONESHOT`; `PERIODIC` and
//! `ONESHOT` only if the device declares the feature; a detached device must
//! be attached (to `SHUTDOWN`) before anything else, and is released only
//! after being shut down. Anything else is a [`StateError`], never a silent
//! change — the device is left in the state it was in.

use core::fmt;

use crate::device::{DeviceError, Features};

/// The state of an event device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Not used by the tick layer (registered, or handed back).
    Detached,
    /// Attached, stopped.
    Shutdown,
    /// Firing at a fixed period.
    Periodic,
    /// Programmed event by event.
    Oneshot,
    /// One-shot mode with no event pending (Linux: programmed with
    /// `KTIME_MAX`); the next programming returns it to `Oneshot`.
    OneshotStopped,
}

impl DeviceState {
    /// A short lowercase name for logs and traces.
    pub const fn name(self) -> &'static str {
        match self {
            DeviceState::Detached => "detached",
            DeviceState::Shutdown => "shutdown",
            DeviceState::Periodic => "periodic",
            DeviceState::Oneshot => "oneshot",
            DeviceState::OneshotStopped => "oneshot-stopped",
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The state machine does not allow `from → to`.
    Illegal {
        /// The current state.
        from: DeviceState,
        /// The requested state.
        to: DeviceState,
    },
    /// The device lacks the feature the target state needs.
    Unsupported {
        /// The requested state.
        to: DeviceState,
    },
    /// The device's driver failed the transition.
    Device(DeviceError),
}

/// Checks whether `from → to` is allowed for a device with `features`.
pub fn check_transition(
    from: DeviceState,
    to: DeviceState,
    features: Features,
) -> Result<(), StateError> {
    use DeviceState::*;
    let legal = match (from, to) {
        (Detached, Shutdown) => true,
        (Detached, _) => false,
        (Shutdown, Detached) => true,
        (_, Detached) => false,
        (_, Shutdown) => true,
        (_, Periodic) => true,
        (_, Oneshot) => true,
        (Oneshot, OneshotStopped) => true,
        (_, OneshotStopped) => false,
    };
    if !legal {
        return Err(StateError::Illegal { from, to });
    }
    let needed = match to {
        Periodic => Features::PERIODIC,
        Oneshot | OneshotStopped => Features::ONESHOT,
        _ => Features::empty(),
    };
    if !features.contains(needed) {
        return Err(StateError::Unsupported { to });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    const ALL: [DeviceState; 5] = [Detached, Shutdown, Periodic, Oneshot, OneshotStopped];

    #[test]
    fn oneshot_stopped_only_from_oneshot() {
        let f = Features::PERIODIC | Features::ONESHOT;
        for from in ALL {
            let r = check_transition(from, OneshotStopped, f);
            assert_eq!(
                r.is_ok(),
                from == Oneshot,
                "{from} → oneshot-stopped: {r:?}"
            );
        }
    }

    #[test]
    fn detached_device_must_be_attached_first() {
        let f = Features::PERIODIC | Features::ONESHOT;
        for to in [Periodic, Oneshot, OneshotStopped] {
            assert_eq!(
                check_transition(Detached, to, f),
                Err(StateError::Illegal { from: Detached, to })
            );
        }
        assert!(check_transition(Detached, Shutdown, f).is_ok());
    }

    #[test]
    fn release_only_after_shutdown() {
        let f = Features::PERIODIC | Features::ONESHOT;
        for from in [Periodic, Oneshot, OneshotStopped] {
            assert!(check_transition(from, Detached, f).is_err());
        }
        assert!(check_transition(Shutdown, Detached, f).is_ok());
    }

    #[test]
    fn modes_need_their_feature() {
        assert_eq!(
            check_transition(Shutdown, Oneshot, Features::PERIODIC),
            Err(StateError::Unsupported { to: Oneshot })
        );
        assert_eq!(
            check_transition(Shutdown, Periodic, Features::ONESHOT),
            Err(StateError::Unsupported { to: Periodic })
        );
    }
}
