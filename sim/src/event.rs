//! A programmable timer device driven by virtual time, with injectable faults.
//!
//! [`SimEventDevice`] implements [`ClockEventDevice`] to the letter of its
//! contract, and refuses (with a [`DeviceError`] recorded in the trace as
//! [`TraceKind::DeviceError`]) every call the core promised never to make.
//! The machine drives it with two calls:
//!
//! ```text
//!   loop {
//!       t = min over devices of dev.next_fire()     // None: nothing pending
//!       clock.advance_to(t)
//!       if dev.fire() { run the tick layer's handler on dev.target_cpu() }
//!   }
//! ```
//!
//! # State machine (Linux `clock_event_state`)
//!
//! ```text
//!   detached ──► shutdown ◄──────────────┐
//!                 │     │                │
//!     periodic(p) │     │ oneshot        │ shutdown (from any state)
//!                 ▼     ▼                │
//!           periodic   oneshot ◄──► oneshot_stopped
//!                      │   ▲
//!    program(In(Δ))    │   │ fire / lost / TooLate (disarmed)
//!    program(At(t))    ▼   │
//!                    armed ┘
//! ```
//!
//! # Time
//!
//! - **Periodic.** The period is rounded to whole device cycles, as a reload
//!   register would hold it: `n = round(p·freq/10^9)`, true period
//!   `n/freq` s. Event `k` is due at `t0 + ⌈k·n·10^9/freq⌉` ns — computed from
//!   the start, so rounding never accumulates.
//! - **One-shot.** `program(In(Δ))` is due at `now + ⌈Δ·10^9/freq⌉` ns:
//!   rounded up, never early. `program(At(t))` is due at `t` of the
//!   virtual clock (the sim's monotonic clock is its true time).
//! - **Deep idle.** A device declaring `C3STOP` stops while
//!   [`SimEventDevice::set_deep_idle`] is on: nothing fires, and the
//!   remaining time of a pending event (one-shot or period) resumes on
//!   leaving, like a LAPIC whose current-count register stops. Internally the
//!   device keeps its own time, true time minus the time spent stopped. An
//!   absolute deadline (a `Deadline` device's) passed meanwhile fires on leaving.
//! - **Coalescing.** A periodic interrupt serviced so late that further
//!   periods passed delivers once; the missed periods are merged (recorded
//!   as [`TraceKind::InterruptsCoalesced`]), as an interrupt controller's
//!   single pending bit does. Time is not lost for a core that reads time
//!   from a clocksource; it is for one that counts ticks.
//!
//! # Faults
//!
//! | setter | effect |
//! |--------|--------|
//! | [`late_by`](SimEventDevice::late_by) | each interrupt is delivered that much after its due time |
//! | [`lose_next`](SimEventDevice::lose_next) | the next `n` interrupts are dropped; one-shot disarms, periodic goes on |
//! | [`too_late_below`](SimEventDevice::too_late_below) | `program(In(Δ))` with `Δ` below the threshold returns `TooLate` (the HPET comparator race) |
//! | [`fail_programming`](SimEventDevice::fail_programming) | the next `n` `program(In)` calls return `TooLate` |
//!
//! A `TooLate` answer disarms any earlier event too: the comparator was
//! overwritten before the race was detected.

use std::sync::{Arc, Mutex, MutexGuard};

use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceInfo, Features, NextEvent, Programming,
};
use clocksource::{Cycles, Hertz, Ktime, Nanos, NSEC_PER_SEC};

use crate::clock::VirtualClock;
use crate::trace::{Trace, TraceKind};

const GIGA: u128 = NSEC_PER_SEC as u128;

/// What a [`SimEventDevice`] is: its identity and capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventConfig {
    name: &'static str,
    features: Features,
    rating: u16,
    frequency: Hertz,
    min_delta: Cycles,
    max_delta: Cycles,
    cpus: CpuMask,
    deadline: bool,
}

impl EventConfig {
    /// A device named `name` counting at `frequency`, with features
    /// `PERIODIC | ONESHOT`, rating 100, deltas `1..=0xFFFF_FFFF` cycles,
    /// serving CPU 0.
    pub fn new(name: &'static str, frequency: Hertz) -> Self {
        EventConfig {
            name,
            features: Features::PERIODIC | Features::ONESHOT,
            rating: 100,
            frequency,
            min_delta: Cycles::new(1),
            max_delta: Cycles::new(u32::MAX as u64),
            cpus: CpuMask::single(CpuId::BOOT),
            deadline: false,
        }
    }
    /// Programmed with absolute deadlines ([`Programming::Deadline`])
    /// instead of cycle deltas.
    pub fn deadline(mut self) -> Self {
        self.deadline = true;
        self
    }
    /// How the device is programmed.
    fn programming(&self) -> Programming {
        if self.deadline {
            Programming::Deadline
        } else {
            Programming::Cycles {
                frequency: self.frequency,
                min_delta: self.min_delta,
                max_delta: self.max_delta,
            }
        }
    }
    /// The features declared (replacing the set, `C3STOP` included).
    pub fn features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }
    /// The rating declared.
    pub fn rating(mut self, rating: u16) -> Self {
        self.rating = rating;
        self
    }
    /// The smallest delta accepted.
    pub fn min_delta(mut self, min: Cycles) -> Self {
        self.min_delta = min;
        self
    }
    /// The largest delta accepted.
    pub fn max_delta(mut self, max: Cycles) -> Self {
        self.max_delta = max;
        self
    }
    /// The CPUs the device can interrupt.
    pub fn cpus(mut self, cpus: CpuMask) -> Self {
        self.cpus = cpus;
        self
    }
    /// Whether the device stops in deep idle: adds or removes `C3STOP` in the
    /// declared features (the device's behaviour follows the declaration).
    pub fn stops_in_deep_idle(mut self, yes: bool) -> Self {
        self.features.set(Features::C3STOP, yes);
        self
    }
}

/// A pending one-shot event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// At this device-time (ns): pauses with the device.
    Device(u64),
    /// At this true time (a `Deadline` device's).
    Absolute(Ktime),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Detached,
    Shutdown,
    /// Event `k` is due at device-time `t0 + ⌈k·cycles·10^9/freq⌉`.
    Periodic {
        t0: u64,
        cycles: u64,
        k: u64,
    },
    Oneshot(Option<Due>),
    OneshotStopped,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Detached => "detached",
            Mode::Shutdown => "shutdown",
            Mode::Periodic { .. } => "periodic",
            Mode::Oneshot(_) => "oneshot",
            Mode::OneshotStopped => "oneshot_stopped",
        }
    }
}

#[derive(Debug)]
struct DeviceState {
    mode: Mode,
    /// True time the device stopped for deep idle, while it is stopped.
    stopped_since: Option<Ktime>,
    /// Total ns spent stopped before `stopped_since`.
    stopped_total: u64,
    target_cpu: Option<usize>,
    // Faults.
    late: Nanos,
    lose: u64,
    too_late_below: Cycles,
    fail_programming: u64,
    // Counters.
    interrupts: u64,
    lost: u64,
    coalesced: u64,
    programs: u64,
    errors: u64,
    last_delta: Option<Cycles>,
    last_expires: Option<Ktime>,
}

/// A [`ClockEventDevice`] following a [`VirtualClock`], with faults settable
/// while it runs. See the [module docs](self).
#[derive(Debug)]
pub struct SimEventDevice {
    clock: Arc<VirtualClock>,
    config: EventConfig,
    state: Mutex<DeviceState>,
    trace: Option<Trace>,
}

/// What the machine drives: this crate's [`SimEventDevice`] and the register
/// models of `sources/*` implement it (defined in `hw`, so models need not
/// depend on the simulator).
pub use hw::InterruptSource;

impl SimEventDevice {
    /// A device in the `detached` state, following `clock`.
    ///
    /// # Panics
    ///
    /// If `min_delta > max_delta`, or the frequency is zero for a device that
    /// declares `PERIODIC`, or `ONESHOT` without being a deadline device.
    pub fn new(clock: Arc<VirtualClock>, config: EventConfig) -> Self {
        assert!(
            config.min_delta <= config.max_delta,
            "{}: min_delta > max_delta",
            config.name
        );
        let needs_rate = config.features.contains(Features::PERIODIC)
            || (config.features.contains(Features::ONESHOT) && !config.deadline);
        assert!(
            !needs_rate || config.frequency.get() > 0,
            "{}: zero frequency",
            config.name
        );
        let target_cpu = if config.cpus.len() == 1 {
            config.cpus.indices().next()
        } else {
            None
        };
        SimEventDevice {
            clock,
            config,
            state: Mutex::new(DeviceState {
                mode: Mode::Detached,
                stopped_since: None,
                stopped_total: 0,
                target_cpu,
                late: Nanos::ZERO,
                lose: 0,
                too_late_below: Cycles::ZERO,
                fail_programming: 0,
                interrupts: 0,
                lost: 0,
                coalesced: 0,
                programs: 0,
                errors: 0,
                last_delta: None,
                last_expires: None,
            }),
            trace: None,
        }
    }

    /// Records everything the device does into `trace`.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Moves the device to the heap for good, for `&'static dyn
    /// ClockEventDevice`; the returned reference also drives it.
    pub fn leak(self) -> &'static SimEventDevice {
        Box::leak(Box::new(self))
    }

    /// The configuration it was built with.
    pub fn config(&self) -> EventConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stops_in_deep_idle(&self) -> bool {
        self.config.features.contains(Features::C3STOP)
    }

    fn record(&self, s: &DeviceState, kind: TraceKind) {
        if let Some(t) = &self.trace {
            t.record(self.clock.now(), s.target_cpu, kind);
        }
    }

    /// A refused call: counted, traced, returned.
    fn misuse(&self, s: &mut DeviceState, call: &'static str, error: DeviceError) -> DeviceError {
        s.errors += 1;
        log::debug!(
            "{}: {call} refused in state {}: {error:?}",
            self.config.name,
            s.mode.name()
        );
        self.record(
            s,
            TraceKind::DeviceError {
                device: self.config.name,
                call,
                error,
            },
        );
        error
    }

    fn enter(&self, s: &mut DeviceState, mode: Mode) {
        s.mode = mode;
        self.record(
            s,
            TraceKind::State {
                device: self.config.name,
                state: mode.name(),
            },
        );
    }

    /// Device-time (ns): true time minus the time spent stopped.
    fn device_time(s: &DeviceState, now: Ktime) -> u64 {
        let stopping = s
            .stopped_since
            .map_or(0, |since| now.saturating_since(since).as_nanos());
        now.as_nanos()
            .saturating_sub(s.stopped_total)
            .saturating_sub(stopping)
    }

    /// Device-time of periodic event `k`.
    fn period_due(&self, t0: u64, cycles: u64, k: u64) -> u64 {
        let ns = ceil_div(
            k as u128 * cycles as u128 * GIGA,
            self.config.frequency.get() as u128,
        );
        sat_u64(t0 as u128 + ns)
    }

    fn next_fire_locked(&self, s: &DeviceState) -> Option<Ktime> {
        if s.stopped_since.is_some() {
            return None;
        }
        let due = match s.mode {
            Mode::Periodic { t0, cycles, k } => Ktime::from_nanos(
                self.period_due(t0, cycles, k)
                    .saturating_add(s.stopped_total),
            ),
            Mode::Oneshot(Some(Due::Device(d))) => {
                Ktime::from_nanos(d.saturating_add(s.stopped_total))
            }
            Mode::Oneshot(Some(Due::Absolute(t))) => t,
            _ => return None,
        };
        Some(due.saturating_add(s.late))
    }

    fn fault(&self, s: &DeviceState, fault: &'static str) {
        self.record(
            s,
            TraceKind::Fault {
                device: self.config.name,
                fault,
            },
        );
    }

    /// Delivers every interrupt `late` after its due time (from the next one
    /// on; `Nanos::ZERO` clears the fault).
    pub fn late_by(&self, late: Nanos) {
        let mut s = self.lock();
        s.late = late;
        self.fault(&s, "late_by");
    }

    /// Drops the next `n` interrupts: their due time passes and nothing is
    /// delivered (a one-shot device disarms, a periodic one goes on).
    pub fn lose_next(&self, n: u64) {
        let mut s = self.lock();
        s.lose = n;
        self.fault(&s, "lose_next");
    }

    /// From now on, `program(In(Δ))` with `Δ < threshold` returns
    /// [`DeviceError::TooLate`] and arms nothing: the comparator race of a
    /// device that matches on equality. `Cycles::ZERO` clears the fault.
    pub fn too_late_below(&self, threshold: Cycles) {
        let mut s = self.lock();
        s.too_late_below = threshold;
        self.fault(&s, "too_late_below");
    }

    /// The next `n` `program(In)` calls (in the oneshot state, with a
    /// delta in range) return [`DeviceError::TooLate`] and arm nothing.
    pub fn fail_programming(&self, n: u64) {
        let mut s = self.lock();
        s.fail_programming = n;
        self.fault(&s, "fail_programming");
    }

    /// Sends interrupts to `cpu` from now on (a broadcast device's affinity);
    /// defaults to the single CPU of `cpus()`, or none.
    pub fn set_target_cpu(&self, cpu: Option<usize>) {
        self.lock().target_cpu = cpu;
    }

    /// Interrupts delivered.
    pub fn interrupts(&self) -> u64 {
        self.lock().interrupts
    }
    /// Interrupts dropped by [`lose_next`](Self::lose_next).
    pub fn lost(&self) -> u64 {
        self.lock().lost
    }
    /// Period interrupts merged into a later one (serviced too late).
    pub fn coalesced(&self) -> u64 {
        self.lock().coalesced
    }
    /// `program` calls, refused ones included.
    pub fn programs(&self) -> u64 {
        self.lock().programs
    }
    /// Calls refused because the core broke the contract.
    pub fn errors(&self) -> u64 {
        self.lock().errors
    }
    /// The delta of the last `program(In)` call, refused or not.
    pub fn last_delta(&self) -> Option<Cycles> {
        self.lock().last_delta
    }
    /// The deadline of the last `program(At)` call, refused or not.
    pub fn last_expires(&self) -> Option<Ktime> {
        self.lock().last_expires
    }
    /// The current state's name, as recorded in [`TraceKind::State`].
    pub fn state_name(&self) -> &'static str {
        self.lock().mode.name()
    }
    /// Whether a one-shot event is armed.
    pub fn is_armed(&self) -> bool {
        matches!(self.lock().mode, Mode::Oneshot(Some(_)))
    }
}

impl InterruptSource for SimEventDevice {
    fn next_fire(&self) -> Option<Ktime> {
        self.next_fire_locked(&self.lock())
    }

    fn fire(&self) -> bool {
        let now = self.clock.now();
        let mut s = self.lock();
        let Some(at) = self.next_fire_locked(&s) else {
            log::debug!("{}: fire() with nothing pending", self.config.name);
            return false;
        };
        if now < at {
            log::debug!("{}: fire() at {now}, due {at}", self.config.name);
            return false;
        }
        let device = self.config.name;
        let delivered = if s.lose > 0 {
            s.lose -= 1;
            s.lost += 1;
            self.record(&s, TraceKind::InterruptLost { device });
            false
        } else {
            s.interrupts += 1;
            self.record(&s, TraceKind::Interrupt { device });
            true
        };
        match s.mode {
            Mode::Periodic { t0, cycles, k } => {
                // Periods due before this interrupt was raised + serviced
                // (device-time now − lateness) merge into this one.
                let raised = Self::device_time(&s, now).saturating_sub(s.late.as_nanos());
                let per = cycles as u128 * GIGA;
                let freq = self.config.frequency.get() as u128;
                let elapsed = raised.saturating_sub(t0) as u128;
                let mut next = (k + 1).max(sat_u64(elapsed * freq / per));
                while self.period_due(t0, cycles, next) < raised {
                    next += 1;
                }
                let merged = next - k - 1;
                if merged > 0 {
                    s.coalesced += merged;
                    self.record(
                        &s,
                        TraceKind::InterruptsCoalesced {
                            device,
                            count: merged,
                        },
                    );
                }
                s.mode = Mode::Periodic {
                    t0,
                    cycles,
                    k: next,
                };
            }
            Mode::Oneshot(_) => s.mode = Mode::Oneshot(None),
            _ => {}
        }
        delivered
    }

    fn target_cpu(&self) -> Option<usize> {
        self.lock().target_cpu
    }

    /// A `C3STOP` device stops (pending time frozen) while `deep` is on;
    /// other devices ignore it.
    fn set_deep_idle(&self, deep: bool) {
        if !self.stops_in_deep_idle() {
            return;
        }
        let now = self.clock.now();
        let mut s = self.lock();
        match (deep, s.stopped_since) {
            (true, None) => s.stopped_since = Some(now),
            (false, Some(since)) => {
                s.stopped_total += now.saturating_since(since).as_nanos();
                s.stopped_since = None;
            }
            _ => return,
        }
        self.record(
            &s,
            TraceKind::DeepIdle {
                device: self.config.name,
                stopped: deep,
            },
        );
    }
}

impl ClockEventDevice for SimEventDevice {
    fn info(&self) -> DeviceInfo {
        let c = &self.config;
        DeviceInfo::new(c.name, c.programming(), c.cpus)
            .with_features(c.features)
            .with_rating(c.rating)
    }

    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        let mut s = self.lock();
        self.enter(&mut s, Mode::Shutdown);
        Ok(())
    }

    /// First event one (rounded) period after the call. Refused without
    /// `PERIODIC`, or if the period rounds to 0 cycles or above `max_delta`.
    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        let mut s = self.lock();
        const CALL: &str = "set_state_periodic";
        if !self.config.features.contains(Features::PERIODIC) {
            return Err(self.misuse(&mut s, CALL, DeviceError::Unsupported));
        }
        let freq = self.config.frequency.get() as u128;
        let cycles = (period.as_nanos() as u128 * freq + GIGA / 2) / GIGA;
        if cycles == 0 || cycles > self.config.max_delta.get() as u128 {
            return Err(self.misuse(&mut s, CALL, DeviceError::Hardware));
        }
        let t0 = Self::device_time(&s, self.clock.now());
        self.enter(
            &mut s,
            Mode::Periodic {
                t0,
                cycles: cycles as u64,
                k: 1,
            },
        );
        Ok(())
    }

    /// Refused without `ONESHOT`.
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        let mut s = self.lock();
        if !self.config.features.contains(Features::ONESHOT) {
            return Err(self.misuse(&mut s, "set_state_oneshot", DeviceError::Unsupported));
        }
        self.enter(&mut s, Mode::Oneshot(None));
        Ok(())
    }

    /// Refused unless in the oneshot state.
    fn set_state_oneshot_stopped(&self) -> Result<(), DeviceError> {
        let mut s = self.lock();
        if !matches!(s.mode, Mode::Oneshot(_)) {
            let call = "set_state_oneshot_stopped";
            return Err(self.misuse(&mut s, call, DeviceError::Unsupported));
        }
        self.enter(&mut s, Mode::OneshotStopped);
        Ok(())
    }

    /// [`NextEvent::In`] for a cycles device, [`NextEvent::At`] for a
    /// deadline one; the other is refused (`Unsupported`).
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        match next {
            NextEvent::In(delta) => self.program_delta(delta),
            NextEvent::At(expires) => self.program_deadline(expires),
        }
    }
}

impl SimEventDevice {
    /// Refused (`Unsupported`) unless in the oneshot state of a cycles
    /// device with a non-zero frequency, and (`Hardware`) for a delta
    /// outside `min_delta..=max_delta`. Then the injected race faults may
    /// answer `TooLate`.
    fn program_delta(&self, delta: Cycles) -> Result<(), DeviceError> {
        let mut s = self.lock();
        const CALL: &str = "program(In)";
        s.programs += 1;
        s.last_delta = Some(delta);
        if !matches!(s.mode, Mode::Oneshot(_)) {
            return Err(self.misuse(&mut s, CALL, DeviceError::Unsupported));
        }
        if self.config.deadline || self.config.frequency.get() == 0 {
            return Err(self.misuse(&mut s, CALL, DeviceError::Unsupported));
        }
        if delta < self.config.min_delta || delta > self.config.max_delta {
            return Err(self.misuse(&mut s, CALL, DeviceError::Hardware));
        }
        let device = self.config.name;
        let race = delta < s.too_late_below;
        if s.fail_programming > 0 || race {
            if !race {
                s.fail_programming -= 1;
            }
            s.mode = Mode::Oneshot(None);
            self.record(&s, TraceKind::TooLate { device, delta });
            return Err(DeviceError::TooLate);
        }
        let ns = ceil_div(
            delta.get() as u128 * GIGA,
            self.config.frequency.get() as u128,
        );
        let due = sat_u64(Self::device_time(&s, self.clock.now()) as u128 + ns);
        s.mode = Mode::Oneshot(Some(Due::Device(due)));
        self.record(&s, TraceKind::Program { device, delta });
        Ok(())
    }

    /// Refused (`Unsupported`) for a cycles device or outside the oneshot
    /// state.
    fn program_deadline(&self, expires: Ktime) -> Result<(), DeviceError> {
        let mut s = self.lock();
        const CALL: &str = "program(At)";
        s.programs += 1;
        s.last_expires = Some(expires);
        if !self.config.deadline || !matches!(s.mode, Mode::Oneshot(_)) {
            return Err(self.misuse(&mut s, CALL, DeviceError::Unsupported));
        }
        s.mode = Mode::Oneshot(Some(Due::Absolute(expires)));
        self.record(
            &s,
            TraceKind::ProgramKtime {
                device: self.config.name,
                expires,
            },
        );
        Ok(())
    }
}

/// `⌈a / b⌉`; `b` must not be zero.
fn ceil_div(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

fn sat_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}
