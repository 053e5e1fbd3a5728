//! An append-only log of what happened in a simulation, for tests to assert on.
//!
//! A [`Trace`] is a cheap, cloneable handle (`Arc<Mutex<Vec<_>>>` inside):
//! give clones to the devices and the machine, keep one in the test. Every
//! record carries the true time it happened at and, when known, the CPU.
//!
//! Two kinds of "error" are kept apart on purpose:
//!
//! - [`TraceKind::DeviceError`]: the core called a device wrongly (wrong
//!   state, missing feature, delta out of range). The core must never do this,
//!   so a test asserts that [`Trace::device_errors`] is empty.
//! - [`TraceKind::TooLate`]: the device reported the comparator race. That is
//!   a legitimate answer the core must handle by retrying.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use clockevents::DeviceError;
use clocksource::{Cycles, Ktime};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// An event device delivered an interrupt.
    Interrupt {
        /// The device's name.
        device: &'static str,
    },
    /// An event device's interrupt came due but was dropped (injected fault).
    InterruptLost {
        /// The device's name.
        device: &'static str,
    },
    /// A periodic device's interrupt was serviced so late that `count` further
    /// periods passed meanwhile; as with a real interrupt controller's single
    /// pending bit, they merged into the one delivered.
    InterruptsCoalesced {
        /// The device's name.
        device: &'static str,
        /// How many period interrupts merged into the delivered one.
        count: u64,
    },
    /// A one-shot event was programmed `delta` cycles ahead and accepted.
    Program {
        /// The device's name.
        device: &'static str,
        /// The programmed delta.
        delta: Cycles,
    },
    /// A one-shot event was programmed for the absolute time `expires`.
    ProgramKtime {
        /// The device's name.
        device: &'static str,
        /// The programmed deadline.
        expires: Ktime,
    },
    /// `program(In(delta))` returned [`DeviceError::TooLate`]: the device
    /// reported that the event may have been missed. Nothing is armed.
    TooLate {
        /// The device's name.
        device: &'static str,
        /// The delta that was too short.
        delta: Cycles,
    },
    /// The device entered a state (`"shutdown"`, `"periodic"`, `"oneshot"`,
    /// `"oneshot_stopped"`).
    State {
        /// The device's name.
        device: &'static str,
        /// The state entered.
        state: &'static str,
    },
    /// The core called the device wrongly; the call was refused with `error`.
    DeviceError {
        /// The device's name.
        device: &'static str,
        /// The trait method that was called (`"program(In)"`, `"set_state_oneshot"`, ...).
        call: &'static str,
        /// What the device returned.
        error: DeviceError,
    },
    /// A device that stops in deep idle stopped (`stopped`) or resumed.
    DeepIdle {
        /// The device's name.
        device: &'static str,
        /// `true` on entering deep idle, `false` on leaving it.
        stopped: bool,
    },
    /// A fault was injected into a device by the test.
    Fault {
        /// The device's name.
        device: &'static str,
        /// Which fault (`"drift"`, `"stuck"`, `"late_by"`, ...).
        fault: &'static str,
    },
    /// A timer of the tick layer ran (recorded by the machine).
    TimerFired {
        /// The timer's identity.
        id: u64,
        /// When it was due.
        expires: Ktime,
    },
    /// Free text, for scenario milestones.
    Note(&'static str),
}

impl TraceKind {
    /// The device the record is about, if any.
    pub fn device(&self) -> Option<&'static str> {
        match *self {
            TraceKind::Interrupt { device }
            | TraceKind::InterruptLost { device }
            | TraceKind::InterruptsCoalesced { device, .. }
            | TraceKind::Program { device, .. }
            | TraceKind::ProgramKtime { device, .. }
            | TraceKind::TooLate { device, .. }
            | TraceKind::State { device, .. }
            | TraceKind::DeviceError { device, .. }
            | TraceKind::DeepIdle { device, .. }
            | TraceKind::Fault { device, .. } => Some(device),
            TraceKind::TimerFired { .. } | TraceKind::Note(_) => None,
        }
    }
}

/// One record: what happened, when (true time), and on which CPU if known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// True time of the record.
    pub time: Ktime,
    /// The CPU it concerns, if known.
    pub cpu: Option<usize>,
    /// What happened.
    pub kind: TraceKind,
}

/// A shared, append-only log of [`TraceEvent`]s. Clones share the same log.
#[derive(Clone, Default)]
pub struct Trace {
    events: Arc<Mutex<Vec<TraceEvent>>>,
}

impl Trace {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<TraceEvent>> {
        // A test that panicked while holding the lock leaves a usable log.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record.
    pub fn record(&self, time: Ktime, cpu: Option<usize>, kind: TraceKind) {
        self.lock().push(TraceEvent { time, cpu, kind });
    }

    /// Appends a [`TraceKind::Note`].
    pub fn note(&self, time: Ktime, cpu: Option<usize>, text: &'static str) {
        self.record(time, cpu, TraceKind::Note(text));
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A copy of all records, oldest first.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.lock().clone()
    }

    /// How many records satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&TraceEvent) -> bool) -> usize {
        self.lock().iter().filter(|e| pred(e)).count()
    }

    /// The records that satisfy `pred`, oldest first.
    pub fn filter(&self, pred: impl Fn(&TraceEvent) -> bool) -> Vec<TraceEvent> {
        self.lock().iter().filter(|e| pred(e)).copied().collect()
    }

    /// The times `device` delivered interrupts, oldest first.
    pub fn interrupts_of(&self, device: &str) -> Vec<Ktime> {
        self.lock()
            .iter()
            .filter(|e| matches!(e.kind, TraceKind::Interrupt { device: d } if d == device))
            .map(|e| e.time)
            .collect()
    }

    /// The records with `t0 ≤ time < t1`, oldest first.
    pub fn between(&self, t0: Ktime, t1: Ktime) -> Vec<TraceEvent> {
        self.filter(|e| t0 <= e.time && e.time < t1)
    }

    /// The [`TraceKind::DeviceError`] records: calls the core must never make.
    pub fn device_errors(&self) -> Vec<TraceEvent> {
        self.filter(|e| matches!(e.kind, TraceKind::DeviceError { .. }))
    }

    /// Forgets every record (for a scenario that checks phases separately).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceKind::Interrupt { device } => write!(f, "{device}: interrupt"),
            TraceKind::InterruptLost { device } => write!(f, "{device}: interrupt LOST"),
            TraceKind::InterruptsCoalesced { device, count } => {
                write!(f, "{device}: {count} period interrupt(s) coalesced")
            }
            TraceKind::Program { device, delta } => write!(f, "{device}: program +{delta}"),
            TraceKind::ProgramKtime { device, expires } => {
                write!(f, "{device}: program at {expires}")
            }
            TraceKind::TooLate { device, delta } => write!(f, "{device}: +{delta} TOO LATE"),
            TraceKind::State { device, state } => write!(f, "{device}: state {state}"),
            TraceKind::DeviceError {
                device,
                call,
                error,
            } => write!(f, "{device}: ERROR {call} -> {error:?}"),
            TraceKind::DeepIdle { device, stopped } => {
                let what = if *stopped { "stopped" } else { "resumed" };
                write!(f, "{device}: {what} (deep idle)")
            }
            TraceKind::Fault { device, fault } => write!(f, "{device}: fault {fault}"),
            TraceKind::TimerFired { id, expires } => {
                write!(f, "timer {id} fired (due {expires})")
            }
            TraceKind::Note(text) => write!(f, "note: {text}"),
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cpu {
            Some(cpu) => write!(f, "{} cpu{:<3} {}", self.time, cpu, self.kind),
            None => write!(f, "{} ---    {}", self.time, self.kind),
        }
    }
}

/// One record per line, oldest first: paste into a failure message.
impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.lock().iter() {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trace({} records)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_clones_share_one_log() {
        let t = Trace::new();
        let t2 = t.clone();
        t.record(
            Ktime::from_millis(1),
            Some(0),
            TraceKind::Interrupt { device: "a" },
        );
        t2.record(
            Ktime::from_millis(2),
            None,
            TraceKind::Interrupt { device: "b" },
        );
        t2.note(Ktime::from_millis(3), Some(1), "done");
        assert_eq!(t.len(), 3);
        assert_eq!(t.interrupts_of("a"), vec![Ktime::from_millis(1)]);
        assert_eq!(
            t.between(Ktime::from_millis(2), Ktime::from_millis(3))
                .len(),
            1
        );
        assert_eq!(t.count(|e| e.cpu.is_some()), 2);
        assert!(t.device_errors().is_empty());
        let dump = t.to_string();
        assert_eq!(dump.lines().count(), 3);
        assert!(dump.contains("0.001000000s cpu0   a: interrupt"), "{dump}");
    }
}
