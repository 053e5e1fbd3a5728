//! Fakes for the unit tests of this crate: a clock source the test moves by
//! hand and an event device that records what it was told. The simulator
//! (`sim`) has the register-level models and the end-to-end scenarios;
//! these only let each type of the tick layer be tested on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::vec::Vec;

use clockevents::{
    ClockEventDevice, CpuId, CpuMask, DeviceError, DeviceInfo, Features, NextEvent, Programming,
};
use clocksource::{ClockSource, ClockSourceFlags, Cycles, Hertz, Ktime, Nanos};

/// A 1 GHz counter (one cycle per ns) that moves only when told.
pub(crate) struct FakeClock {
    name: &'static str,
    rating: u16,
    flags: ClockSourceFlags,
    mask: u64,
    ns: AtomicU64,
}

impl FakeClock {
    /// A trusted, high-resolution 64-bit counter.
    pub(crate) fn new(name: &'static str, rating: u16) -> Self {
        Self::with_mask(name, rating, u64::MAX)
    }
    /// A counter the watchdog must verify (a TSC without the invariant bit).
    pub(crate) fn must_verify(name: &'static str, rating: u16) -> Self {
        let mut c = Self::new(name, rating);
        c.flags |= ClockSourceFlags::MUST_VERIFY;
        c
    }
    /// A trusted counter of `mask` width.
    pub(crate) fn with_mask(name: &'static str, rating: u16, mask: u64) -> Self {
        FakeClock {
            name,
            rating,
            flags: ClockSourceFlags::CONTINUOUS | ClockSourceFlags::VALID_FOR_HRES,
            mask,
            ns: AtomicU64::new(0),
        }
    }
    /// Moves the counter on by `d`.
    pub(crate) fn advance(&self, d: Nanos) {
        self.ns.fetch_add(d.as_nanos(), Ordering::Relaxed);
    }
}

impl ClockSource for FakeClock {
    fn name(&self) -> &'static str {
        self.name
    }
    fn read(&self) -> Cycles {
        Cycles::new(self.ns.load(Ordering::Relaxed) & self.mask)
    }
    fn mask(&self) -> Cycles {
        Cycles::new(self.mask)
    }
    fn frequency(&self) -> Hertz {
        Hertz::new(1_000_000_000)
    }
    fn rating(&self) -> u16 {
        self.rating
    }
    fn flags(&self) -> ClockSourceFlags {
        self.flags
    }
}

/// What a [`FakeTimer`] was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Shutdown,
    Periodic(Nanos),
    Oneshot,
    Next(Cycles),
    NextKtime(Ktime),
    Ack,
}

/// A 1 GHz event device that records every call and accepts them all.
pub(crate) struct FakeTimer {
    name: &'static str,
    features: Features,
    rating: u16,
    min: u64,
    max: u64,
    cpus: CpuMask,
    calls: Mutex<Vec<Call>>,
}

impl FakeTimer {
    /// A per-CPU device of CPU `cpu` with `features`, deltas 1 µs..1 s.
    pub(crate) fn new(name: &'static str, features: Features, cpu: CpuId) -> Self {
        FakeTimer {
            name,
            features,
            rating: 100,
            min: 1_000,
            max: 1_000_000_000,
            cpus: CpuMask::single(cpu),
            calls: Mutex::new(Vec::new()),
        }
    }
    /// A device any CPU can use (`cpus` all), for broadcast.
    pub(crate) fn global(name: &'static str, features: Features, rating: u16) -> Self {
        FakeTimer {
            rating,
            cpus: CpuMask::ALL,
            ..FakeTimer::new(name, features, CpuId::BOOT)
        }
    }
    /// Every call so far, oldest first.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
    /// The last delta or deadline programmed.
    pub(crate) fn last_programmed(&self) -> Option<Call> {
        self.calls()
            .into_iter()
            .rev()
            .find(|c| matches!(c, Call::Next(_) | Call::NextKtime(_)))
    }
    fn record(&self, c: Call) -> Result<(), DeviceError> {
        if let Ok(mut v) = self.calls.lock() {
            v.push(c);
        }
        Ok(())
    }
}

impl ClockEventDevice for FakeTimer {
    fn info(&self) -> DeviceInfo {
        let programming = Programming::Cycles {
            frequency: Hertz::new(1_000_000_000),
            min_delta: Cycles::new(self.min),
            max_delta: Cycles::new(self.max),
        };
        DeviceInfo::new(self.name, programming, self.cpus)
            .with_features(self.features)
            .with_rating(self.rating)
    }
    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        self.record(Call::Shutdown)
    }
    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        self.record(Call::Periodic(period))
    }
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        self.record(Call::Oneshot)
    }
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        self.record(match next {
            NextEvent::In(delta) => Call::Next(delta),
            NextEvent::At(expires) => Call::NextKtime(expires),
        })
    }
    fn acknowledge(&self) {
        let _ = self.record(Call::Ack);
    }
}
