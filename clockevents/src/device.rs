//! The clock-event device contract: what a timer driver implements.

use clocksource::{Cycles, Hertz, Ktime, Nanos};

use crate::cpumask::CpuMask;

bitflags::bitflags! {
    /// What an event device can do (Linux `CLOCK_EVT_FEAT_*`).
    ///
    /// Cargo features of a source crate decide which of these it *offers*:
    /// an HPET built without its `oneshot` feature declares only `PERIODIC`,
    /// and the tick layer then cannot go tickless on it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Features: u32 {
        /// Can fire at a fixed period by itself.
        const PERIODIC = 1 << 0;
        /// Can be programmed for a single event `delta` cycles from now.
        const ONESHOT = 1 << 1;
        /// Stops in deep idle states (Linux `C3STOP`): needs a broadcast
        /// device to wake its CPU from them.
        const C3STOP = 1 << 3;
        /// A placeholder that does nothing; its CPU depends on broadcast.
        const DUMMY = 1 << 4;
        /// Belongs to exactly one CPU; never used as a broadcast device.
        const PERCPU = 1 << 5;
    }
}

/// Why a device operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The event was programmed, but the device reports that its time had
    /// already come when the programming took effect (the HPET comparator
    /// race): no interrupt will come for it. The core retries with a larger
    /// delta.
    TooLate,
    /// The device does not support the requested operation.
    Unsupported,
    /// The device did not accept the request (register read back wrong,
    /// device gone); details are logged by the driver.
    Hardware,
}

/// How the core programs a device's next event: the two styles Linux's
/// clockevents has (a cycle delta through `set_next_event`, or an absolute
/// monotonic deadline through `set_next_ktime` for `CLOCK_EVT_FEAT_KTIME`
/// devices, `include/linux/clockchips.h`), as one choice a device makes in
/// its [`DeviceInfo`] instead of a feature bit beside two methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programming {
    /// A delta in cycles of `frequency`, `min_delta ≤ delta ≤ max_delta`
    /// ([`NextEvent::In`]): a comparator or a down-counter.
    Cycles {
        /// The rate deltas are counted at.
        frequency: Hertz,
        /// The smallest delta the device can be programmed with.
        min_delta: Cycles,
        /// The largest delta the device can be programmed with.
        max_delta: Cycles,
    },
    /// An absolute deadline on the monotonic clock ([`NextEvent::At`]): a
    /// device that keeps time itself, as a host timer a VMM arms for a
    /// paravirtual guest.
    Deadline,
}

impl Programming {
    /// The rate of a [`Programming::Cycles`] device.
    pub const fn frequency(self) -> Option<Hertz> {
        match self {
            Programming::Cycles { frequency, .. } => Some(frequency),
            Programming::Deadline => None,
        }
    }
    /// `(min_delta, max_delta)` of a [`Programming::Cycles`] device.
    pub const fn delta_range(self) -> Option<(Cycles, Cycles)> {
        match self {
            Programming::Cycles {
                min_delta,
                max_delta,
                ..
            } => Some((min_delta, max_delta)),
            Programming::Deadline => None,
        }
    }
}

/// The next event, in the device's [`Programming`] style: the core passes
/// [`NextEvent::In`] only to a `Cycles` device and [`NextEvent::At`] only to
/// a `Deadline` one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextEvent {
    /// `delta` cycles from now.
    In(Cycles),
    /// At this monotonic time.
    At(Ktime),
}

/// What a device is: everything about it that stays fixed while it is
/// registered. The core reads it once, at registration
/// ([`crate::DevicePool::register`], [`crate::EventDevice::new`]), and
/// works from that copy, so a driver cannot change it under the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// A short, unique name, as used by `clockevent=` on the command line.
    pub name: &'static str,
    /// What the device can do.
    pub features: Features,
    /// Preference: higher is better (Linux: LAPIC 100, LAPIC with ARAT 150,
    /// HPET legacy 50, HPET per-CPU 110, PIT 0).
    pub rating: u16,
    /// The CPUs this device can interrupt. A `PERCPU` device names one CPU.
    pub cpus: CpuMask,
    /// How it is programmed: set by [`new`](Self::new) and read through
    /// [`programming`](Self::programming), so a `DeviceInfo` is only ever
    /// built with one.
    programming: Programming,
}

impl DeviceInfo {
    /// A device called `name`, programmed as `programming` says, that can
    /// interrupt `cpus`; no features and rating 0 until
    /// [`with_features`](Self::with_features) and
    /// [`with_rating`](Self::with_rating) say otherwise.
    pub const fn new(name: &'static str, programming: Programming, cpus: CpuMask) -> Self {
        DeviceInfo {
            name,
            features: Features::empty(),
            rating: 0,
            cpus,
            programming,
        }
    }
    /// With these features.
    pub const fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }
    /// With this rating.
    pub const fn with_rating(mut self, rating: u16) -> Self {
        self.rating = rating;
        self
    }
    /// How the device is programmed.
    pub const fn programming(&self) -> Programming {
        self.programming
    }
    /// The rate of a [`Programming::Cycles`] device.
    pub const fn frequency(&self) -> Option<Hertz> {
        self.programming().frequency()
    }
    /// `(min_delta, max_delta)` of a [`Programming::Cycles`] device.
    pub const fn delta_range(&self) -> Option<(Cycles, Cycles)> {
        self.programming().delta_range()
    }
}

/// A programmable timer device.
///
/// # Contract (what an implementation MUST guarantee)
///
/// - **Never early.** An event programmed with `program(NextEvent::In(delta))` raises
///   its interrupt no earlier than `delta` cycles after the call began. It may
///   be late; how late is the device's business, but it MUST either fire or
///   return [`DeviceError::TooLate`] — never silently drop an event.
/// - **Deltas in range.** The core only passes deltas with
///   `min_delta ≤ delta ≤ max_delta` of the device's [`Programming::Cycles`]. A device whose programming can race
///   with its counter (a comparator that matches on equality, like HPET's)
///   MUST read the counter back after programming and return `TooLate` when
///   the event may have been missed.
/// - **States are commands.** `set_state_*` take effect before they return:
///   after `set_state_shutdown` no interrupt of a previous programming is
///   raised; after `set_state_periodic(p)` the device fires every `p` (first
///   event one period after the call).
/// - **Constant identity, by construction.** What the device is, its
///   [`DeviceInfo`], is read once when it is registered; the core never asks
///   again, so nothing a driver returns later can change it.
/// - `&self` methods: drivers use interior mutability (register writes are
///   side effects anyway); the core serialises calls per device.
///
/// # What the core promises in return
///
/// - It follows the state machine in [`crate::state`]: `program` is
///   only called in the oneshot state, `set_state_periodic` only if
///   `PERIODIC` is declared, `set_state_oneshot` only if `ONESHOT` is.
/// - It passes [`program`](ClockEventDevice::program) only the
///   [`NextEvent`] of the device's [`Programming`] style, a delta always
///   within the declared range.
/// - For each of the device's interrupts it calls
///   [`acknowledge`](ClockEventDevice::acknowledge) once, before anything
///   else; the embedder's handler only routes the interrupt to the core and
///   sends the interrupt controller its EOI.
///
/// # Example: a driver over a register block
///
/// A 1 MHz up-counter with a compare register: the counter is a
/// clocksource, the comparator a one-shot clock-event device. Here the
/// "registers" are atomics a test can move; a real driver reaches them
/// through `hw::Mmio` or `hw::PortIo`.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// use clockevents::{
///     ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceInfo, DeviceState, EventDevice,
///     Expired, Features, NextEvent, Programming,
/// };
/// use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos, Timekeeper};
///
/// /// The register block: COUNTER counts up at 1 MHz, COMPARE fires when reached.
/// struct Regs {
///     counter: AtomicU64,
///     compare: AtomicU64,
/// }
///
/// /// The counter as a clocksource.
/// struct Counter<'a>(&'a Regs);
/// impl ClockSource for Counter<'_> {
///     fn name(&self) -> &'static str { "demo-counter" }
///     fn read(&self) -> Cycles { Cycles::new(self.0.counter.load(Ordering::Relaxed)) }
///     fn mask(&self) -> Cycles { Cycles::new(u64::MAX) }
///     fn frequency(&self) -> Hertz { Hertz::from_mhz(1) }
///     fn rating(&self) -> u16 { 100 }
///     fn flags(&self) -> ClockSourceFlags {
///         ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES
///     }
/// }
///
/// /// The comparator as a one-shot event device for CPU 0.
/// struct Comparator<'a>(&'a Regs);
/// impl ClockEventDevice for Comparator<'_> {
///     fn info(&self) -> DeviceInfo {
///         let programming = Programming::Cycles {
///             frequency: Hertz::from_mhz(1),
///             min_delta: Cycles::new(2),
///             max_delta: Cycles::new(u32::MAX as u64),
///         };
///         DeviceInfo::new("demo-timer", programming, CpuMask::single(CpuId::BOOT))
///             .with_features(Features::ONESHOT)
///             .with_rating(100)
///     }
///     fn set_state_shutdown(&self) -> Result<(), DeviceError> {
///         self.0.compare.store(u64::MAX, Ordering::Relaxed);
///         Ok(())
///     }
///     fn set_state_periodic(&self, _: Nanos) -> Result<(), DeviceError> {
///         Err(DeviceError::Unsupported)
///     }
///     fn set_state_oneshot(&self) -> Result<(), DeviceError> { Ok(()) }
///     fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
///         // A Cycles device is only ever given a delta.
///         let NextEvent::In(delta) = next else { return Err(DeviceError::Unsupported) };
///         let now = self.0.counter.load(Ordering::Relaxed);
///         self.0.compare.store(now + delta.get(), Ordering::Relaxed);
///         // A comparator that matches on equality must check it was not
///         // passed meanwhile (the contract's "deltas in range" rule).
///         if self.0.counter.load(Ordering::Relaxed) >= now + delta.get() {
///             return Err(DeviceError::TooLate);
///         }
///         Ok(())
///     }
/// }
///
/// let regs = Regs { counter: AtomicU64::new(5_000), compare: AtomicU64::new(0) };
/// let clock = Counter(&regs);
/// let tk = Timekeeper::new(&clock).unwrap();
///
/// // The core wraps the device, reading its DeviceInfo once.
/// let timer = Comparator(&regs);
/// let mut ev = EventDevice::new(&timer, Nanos::from_millis(4)).unwrap();
/// ev.attach().unwrap();
/// ev.set_state(DeviceState::Oneshot, Nanos::ZERO).unwrap();
///
/// // An event 1 ms from now is 1000 counts of the 1 MHz comparator; the
/// // ns→cycles conversion rounds up (never early), by at most one count.
/// let now = tk.monotonic();
/// ev.program_event(now.saturating_add(Nanos::from_millis(1)), now, Expired::Force)
///     .unwrap();
/// let delta = regs.compare.load(Ordering::Relaxed) - 5_000;
/// assert!((1_000..=1_001).contains(&delta), "{delta}");
/// assert_eq!(ev.next_event(), Ktime::ZERO.saturating_add(Nanos::from_millis(1)));
/// ```
pub trait ClockEventDevice: Sync {
    /// What the device is ([`DeviceInfo`]). The core reads it once, when the
    /// device is registered, and never again.
    fn info(&self) -> DeviceInfo;

    /// Stops the device: no further interrupts.
    fn set_state_shutdown(&self) -> Result<(), DeviceError>;
    /// Starts firing every `period`. Called only if `PERIODIC` is declared.
    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError>;
    /// Enters one-shot mode, with no event programmed yet. Called only if
    /// `ONESHOT` is declared.
    fn set_state_oneshot(&self) -> Result<(), DeviceError>;
    /// Stops the pending one-shot event but stays ready for the next one
    /// (Linux `ONESHOT_STOPPED`). Defaults to a shutdown.
    fn set_state_oneshot_stopped(&self) -> Result<(), DeviceError> {
        self.set_state_shutdown()
    }
    /// Programs the next event, in the style the device's
    /// [`Programming`] states (Linux's `set_next_event` for
    /// [`NextEvent::In`], `set_next_ktime` for [`NextEvent::At`]). See the
    /// contract above.
    fn program(&self, next: NextEvent) -> Result<(), DeviceError>;
    /// Makes the device stop asserting its interrupt. The core calls it
    /// first thing for every interrupt of the device it handles (before any
    /// reprogramming, so a new event cannot be acknowledged away), also for
    /// one it then ignores as spurious. A level-triggered device clears its
    /// status here (an HPET comparator in level mode: write 1 to its
    /// `GINTR_STA` bit, IA-PC HPET specification §2.3.11); an
    /// edge-triggered one has nothing to do, which is the default. The
    /// interrupt controller's EOI stays the embedder's.
    fn acknowledge(&self) {}
}
