//! The tick system: its parts, registration of devices and clock sources,
//! mode selection, and the timer and reporting API.
//!
//! [`TickSystem`] is a composition, one concern per field:
//!
//! ```text
//!   TickSystem                                               lock
//!     config, grid      TickConfig (what was asked for), its tick grid  —
//!     time              Timekeeping: timekeeper, clock sources,       L
//!                       jiffies, the watchdog's schedule
//!     words             who holds the duty, who last held it, which    atomics
//!                       CPUs run one-shot, max deferment, resolution
//!     devices           DevicePool: every registered event device       L
//!     cpus[c]           TickCpu: device, queue, mode, idle, stats      L each
//!     bc                Broadcast: the stand-in for C3STOP devices      L
//! ```
//!
//! `L` is the embedder's lock family ([`crate::lock`], and the order the
//! locks are taken in).
//!
//! The interrupt path is in [`crate::interrupt`], NO_HZ idle in
//! [`crate::nohz`], broadcast in [`crate::broadcast`]. Who may touch
//! which part is in the crate docs ("State, and who touches it").

use clockevents::{
    ClockEventDevice, CpuId, DeviceId, DevicePool, DeviceState, EventDevice, Features, Owner,
    PoolError,
};
use clocksource::WatchdogReport;
use clocksource::{
    ClockSource, ClockSourceFlags, Cycles, Ktime, Nanos, PublishedClock, Registry, SourceId,
    Timekeeper,
};
use core::fmt;
use core::ops::Deref;

use crate::advance::{Advance, TimerAdvance};
use crate::broadcast::Broadcast;
use crate::config::{PeriodicReason, TickConfig, TickMode};
use crate::grid::{Jiffies, TickGrid};
use crate::lock::{Held, Lock, Locks, Single};
use crate::percpu::TickCpu;
pub use crate::percpu::{CpuInfo, CpuStats};
use crate::queue::{QueueFull, Timer, TimerId, TimerSlot};
use crate::timekeeping::{Timekeeping, Words};
pub use crate::watchdog::{WatchdogSchedule, WATCHDOG_IDLE_DEFERRAL_MAX};

/// Event devices a system can register.
pub const MAX_EVENT_DEVICES: usize = 16;
/// Clock sources a system can register.
pub const MAX_CLOCK_SOURCES: usize = 8;

/// A timer callback: called with the CPU, the expired timer and the
/// monotonic time it was found expired at (≥ its expiry); returns whether
/// to queue it again. Runs in interrupt context: it must not allocate,
/// block, or take a lock the interrupt path may hold.
pub type TimerFn<'r> = dyn FnMut(CpuId, Timer, Ktime) -> Rearm + 'r;

/// What a timer's callback asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rearm {
    /// Done.
    No,
    /// Queue it again at this expiry, under the same id and `data`: the
    /// [`TimerId`] the owner holds still cancels it.
    At(Ktime),
}

/// Why registering a device or source failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The event device pool refused it.
    Pool(PoolError),
    /// The device's parameters are unusable.
    Device(clockevents::ConfigError),
    /// The clock source registry refused it.
    Clock(clocksource::RegisterError),
    /// The [`TickConfig`] is out of range ([`TickConfig::validate`]).
    Config(crate::config::ConfigError),
}

/// Why [`TickSystem::add_timer`] refused a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// No such CPU.
    NoCpu,
    /// The CPU's timer queue has no free slot ([`QueueFull`]).
    QueueFull,
}

impl From<QueueFull> for AddError {
    fn from(_: QueueFull) -> Self {
        AddError::QueueFull
    }
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::NoCpu => f.write_str("no such CPU"),
            AddError::QueueFull => QueueFull.fmt(f),
        }
    }
}

/// Why an idle request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleError {
    /// Deep idle needs the broadcast device (the local device stops there)
    /// and there is none fit for this CPU's mode: stay in shallow idle
    /// (Linux `tick_broadcast_enter()` → `-EBUSY`).
    Busy,
    /// No such CPU.
    NoCpu,
}

/// The device pool and the `clockevent=` restriction: one lock.
pub(crate) struct Devices<'a> {
    pub(crate) pool: DevicePool<'a, MAX_EVENT_DEVICES>,
    pub(crate) only: Option<&'a str>,
}

/// A CPU's state, held ([`Lock::Guard`]).
pub(crate) type CpuGuard<'g, 'a, S, L> =
    <<L as Locks>::Of<TickCpu<'a, S>> as Lock<TickCpu<'a, S>>>::Guard<'g>;
/// The whole tick layer for `CPUS` CPUs; `S` is each CPU's timer storage,
/// `L` the locks its parts sit behind ([`crate::lock`]; [`Single`] unless
/// the CPUs call it concurrently).
pub struct TickSystem<'a, S, const CPUS: usize, L: Locks = Single> {
    pub(crate) config: TickConfig,
    /// The tick grid (fixed by the config).
    pub(crate) grid: TickGrid,
    pub(crate) time: L::Of<Timekeeping<'a>>,
    /// What the interrupt path reads of the shared state without a lock.
    pub(crate) words: Words,
    pub(crate) devices: L::Of<Devices<'a>>,
    pub(crate) cpus: [L::Of<TickCpu<'a, S>>; CPUS],
    pub(crate) bc: L::Of<Broadcast<'a, CPUS>>,
    /// Where [`TickSystem::now`] reads without the timekeeping lock
    /// ([`TickSystem::publish_to`]).
    pub(crate) fast: Option<(&'a PublishedClock, LockFreeRead)>,
}

/// Reads the counter of the clocksource a [`clocksource::source_key`]
/// names, if it is one that any CPU may read at any time without a lock (a
/// register read: HPET, ACPI PM timer, the TSC); `None` otherwise.
pub type LockFreeRead = fn(u64) -> Option<Cycles>;

impl<'a, S, const CPUS: usize, L: Locks> TickSystem<'a, S, CPUS, L>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// A tick system running on clocksource `cs`, with one timer storage per
    /// CPU. No device yet: CPUs have no tick until one is registered.
    /// `config` must pass [`TickConfig::validate`] (an `hz` past 10⁴ would
    /// make a tick grid of a few ns, past 2·10⁹ one of 0).
    pub fn new(
        config: TickConfig,
        cs: &'a dyn ClockSource,
        storage: [S; CPUS],
    ) -> Result<Self, RegisterError> {
        let config = config.validate().map_err(RegisterError::Config)?;
        let mut time = Timekeeping::new(cs, config.period())?;
        let now = time.now();
        let t = &mut time;
        t.watchdog.schedule(&t.clocks, now);
        Ok(TickSystem {
            config,
            grid: time.grid,
            words: Words::new(&time),
            time: Lock::new(time),
            devices: Lock::new(Devices {
                pool: DevicePool::new(),
                only: None,
            }),
            cpus: storage.map(|s| Lock::new(TickCpu::new(s))),
            bc: Lock::new(Broadcast::new()),
            fast: None,
        })
    }

    /// CPU `cpu`'s state, held, if `cpu` is one of ours: the one index
    /// check.
    pub(crate) fn cpu(&self, cpu: CpuId) -> Option<CpuGuard<'_, 'a, S, L>> {
        self.cpus.get(cpu.index()).map(Lock::lock)
    }

    // ----- configuration ---------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> TickConfig {
        self.config
    }
    /// The tick period.
    pub fn period(&self) -> Nanos {
        self.grid.period()
    }
    /// Programs high-resolution events early by a fixed or learned delivery
    /// delay and spins the rest (see [`crate::advance`]). Off by default.
    pub fn set_timer_advance(&self, mode: TimerAdvance) {
        for c in self.cpus.iter() {
            c.lock().advance = Advance::new(mode);
        }
    }

    /// Restricts every CPU's tick device to the device named `name`
    /// (`clockevent=` on a command line). Applies to devices registered
    /// afterwards.
    pub fn set_device_override(&self, name: &'a str) {
        self.devices.lock().only = Some(name);
    }

    /// Registers an event device and re-runs selection: it may become the
    /// tick device of the CPUs it covers (the old one is shut down and handed
    /// back to the pool), or the broadcast device. A CPU's device is set up
    /// with that CPU's state held: on SMP, register a per-CPU device (a
    /// LAPIC timer) on its own CPU, whose registers it programs.
    pub fn register_device(
        &self,
        dev: &'a dyn ClockEventDevice,
    ) -> Result<DeviceId, RegisterError> {
        // What the device is, read once; validated before the pool sees it.
        let info = dev.info();
        EventDevice::with_info(dev, info, self.period()).map_err(RegisterError::Device)?;
        let id = self
            .devices
            .lock()
            .pool
            .register_with(dev, info)
            .map_err(RegisterError::Pool)?;
        let now = self.now();
        for cpu in CpuId::first(CPUS) {
            let mut c = self.cpus[cpu.index()].lock();
            let current = c.dev.as_ref().map(|(i, _)| *i);
            let best = {
                let d = self.devices.lock();
                let only = d
                    .only
                    .and_then(|n| d.pool.find(n))
                    .filter(|o| d.pool.info(*o).is_some_and(|i| i.cpus.contains(cpu)));
                d.pool.best_for_cpu(cpu, current, c.mode.is_oneshot(), only)
            };
            if best == Some(id) {
                self.setup_cpu_device(cpu, &mut c, id, now)?;
            }
        }
        if self.offer_broadcast() {
            // CPUs on a dummy were waiting for a broadcast device.
            for cpu in CpuId::first(CPUS) {
                let mut c = self.cpus[cpu.index()].lock();
                if c.has_dummy() && !c.in_broadcast {
                    self.join_broadcast(cpu, &mut c, now);
                }
            }
        }
        Ok(id)
    }

    /// Registers another clock source and re-selects (it becomes the
    /// timekeeper's source if it is the best).
    pub fn register_clocksource(&self, cs: &'a dyn ClockSource) -> Result<SourceId, RegisterError> {
        let mut t = self.time.lock();
        let id = t.clocks.register(cs).map_err(RegisterError::Clock)?;
        self.reselect_clocksource(&mut t, None);
        Ok(id)
    }

    /// Honour `clocksource=name` (may name a source registered later).
    pub fn set_clocksource_override(&self, name: &str) -> Result<(), clocksource::OverrideError> {
        let mut t = self.time.lock();
        t.clocks.set_override(name)?;
        self.reselect_clocksource(&mut t, None);
        Ok(())
    }

    /// Marks clocksource `name` unstable and re-selects (Linux
    /// `mark_tsc_unstable`: a failed TSC warp check at CPU bring-up, the
    /// `tsc` crate's `WarpCheck`). If it was the current source the timekeeper moves to the
    /// next best one from the time it has reached, so time never steps
    /// back. `Some(true)` if newly marked, `Some(false)` if it already was,
    /// `None` if no source has that name.
    pub fn mark_clocksource_unstable(&self, name: &str) -> Option<bool> {
        let mut t = self.time.lock();
        let id = t.clocks.find(name)?;
        let newly = t.clocks.mark_unstable(id).ok()?;
        if newly {
            self.reselect_clocksource(&mut t, None);
        }
        Some(newly)
    }

    /// The clock source registry (for the boot table), held until the
    /// return is dropped: nothing that takes the timekeeping (a clock
    /// read, [`TickSystem::now`]) may run meanwhile.
    pub fn clocksources(&self) -> impl Deref<Target = Registry<'a, MAX_CLOCK_SOURCES>> + '_ {
        Held::new(self.time.lock(), |t| &t.clocks)
    }
    /// The event device pool (for the boot table), held until the return
    /// is dropped.
    pub fn devices(&self) -> impl Deref<Target = DevicePool<'a, MAX_EVENT_DEVICES>> + '_ {
        Held::new(self.devices.lock(), |d| &d.pool)
    }

    /// Re-selects the clocksource, the timekeeping held; `after` is the
    /// watchdog check that found a source unstable, whose error the clocks
    /// then lose if they ran on it ([`Registry::reselect_after_check`]). A
    /// switch restarts the watchdog's baselines; the schedule starts again
    /// from now.
    pub(crate) fn reselect_clocksource(
        &self,
        t: &mut Timekeeping<'a>,
        after: Option<&WatchdogReport<MAX_CLOCK_SOURCES>>,
    ) {
        if t.reselect(self.words.any_oneshot(), after) {
            t.watchdog.restart(&mut t.clocks);
        }
        let now = t.now();
        t.watchdog.schedule(&t.clocks, now);
        self.words.refresh(t);
    }

    /// Installs device `id` as the tick device of `cpu` (its state `c`,
    /// held) and enters the best mode it and the clocksource allow.
    fn setup_cpu_device(
        &self,
        cpu: CpuId,
        c: &mut TickCpu<'a, S>,
        id: DeviceId,
        now: Ktime,
    ) -> Result<(), RegisterError> {
        let found = {
            let d = self.devices.lock();
            d.pool.get(id).zip(d.pool.info(id).copied())
        };
        let Some((dev, info)) = found else {
            return Ok(());
        };
        let mut ev =
            EventDevice::with_info(dev, info, self.period()).map_err(RegisterError::Device)?;
        if let Err(e) = ev.attach() {
            log::warn!("tick: {cpu}: cannot attach {}: {e:?}", info.name);
            return Ok(());
        }
        let (mode, reason) = self.choose_mode(info.features);
        // Read before the old device is handed back below.
        let was_dummy = c.has_dummy() && c.in_broadcast;
        {
            let mut d = self.devices.lock();
            if let Some((old_id, mut old)) = c.dev.take() {
                let _ = old.release();
                d.pool.set_owner(old_id, Owner::Free);
                log::info!("tick: {cpu}: {} replaced by {}", old.name(), info.name);
            }
            d.pool.set_owner(id, Owner::Cpu(cpu));
        }
        if let Some(r) = reason {
            if self.config.wants_oneshot() {
                log::info!("tick: {cpu}: {} stays periodic: {r}", info.name);
            }
        }
        c.dev = Some((id, ev));
        c.tick_stopped = false;
        if was_dummy {
            // A working device takes over from the broadcast device.
            self.leave_broadcast_for_good(cpu, c, now);
        }
        if info.features.contains(Features::DUMMY) {
            c.periodic_reason = None;
            self.join_broadcast(cpu, c, now);
            return Ok(());
        }
        self.set_mode(cpu, c, mode);
        c.periodic_reason = reason;
        self.enter_mode(cpu, c, now);
        Ok(())
    }

    /// Puts `cpu` (its state `c`, held), whose tick device is a dummy, in
    /// the broadcast device's care for good: its mode is what the
    /// broadcast device and the config allow, its events the broadcast
    /// device's to deliver (Linux `tick_device_uses_broadcast()`). Without
    /// a broadcast device yet it has no tick until one is registered.
    fn join_broadcast(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, now: Ktime) {
        let features = self.bc.lock().dev.as_ref().map(|(_, e)| e.features());
        let Some(features) = features else {
            self.set_mode(cpu, c, TickMode::NoDevice);
            return;
        };
        let (mode, reason) = self.choose_mode(features);
        self.set_mode(cpu, c, mode);
        c.periodic_reason = reason;
        c.next_tick = self.grid.next(now);
        let period = self.period();
        let mut bc = self.bc.lock();
        c.in_broadcast = true;
        c.bc_owed = true;
        if mode.is_oneshot() {
            bc.oneshot_mask.insert(cpu);
            self.reprogram(cpu, c, Some(&mut bc), now);
        } else if mode != TickMode::NoDevice {
            let start = bc.periodic_mask.is_empty();
            bc.periodic_mask.insert(cpu);
            if start {
                if let Some((_, dev)) = bc.dev.as_mut() {
                    if let Err(e) = dev.set_state(DeviceState::Periodic, period) {
                        log::error!("tick: broadcast {} refuses periodic: {e:?}", dev.name());
                    }
                }
            }
        }
        log::info!("tick: {cpu}: on a dummy device, ticks by broadcast ({mode})");
    }

    /// `cpu` (its state `c`, held), whose dummy gave way to a working
    /// device, leaves the broadcast masks.
    fn leave_broadcast_for_good(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, now: Ktime) {
        c.in_broadcast = false;
        let mut bc = self.bc.lock();
        bc.oneshot_mask.remove(cpu);
        bc.periodic_mask.remove(cpu);
        bc.force_mask.remove(cpu);
        if let Some(e) = bc.next_event.get_mut(cpu.index()) {
            *e = Ktime::MAX;
        }
        if bc.periodic_mask.is_empty() {
            if let Some((_, dev)) = bc.dev.as_mut() {
                if dev.state() == DeviceState::Periodic {
                    let _ = dev.set_state(DeviceState::Shutdown, Nanos::ZERO);
                }
            }
        }
        bc.program(now);
    }

    /// Sets `cpu`'s mode, and the shared word of which CPUs run one-shot.
    fn set_mode(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, mode: TickMode) {
        c.mode = mode;
        self.words.set_oneshot(cpu, mode.is_oneshot());
    }

    /// Which mode a device with `features` reaches under the config and the
    /// current clocksource.
    fn choose_mode(&self, f: Features) -> (TickMode, Option<PeriodicReason>) {
        let periodic_or_emulated = |r| {
            if f.contains(Features::PERIODIC) {
                (TickMode::Periodic, Some(r))
            } else {
                (TickMode::OneshotPeriodic, Some(r))
            }
        };
        if !f.intersects(Features::PERIODIC | Features::ONESHOT) {
            return (TickMode::NoDevice, None);
        }
        if !self.config.wants_oneshot() {
            return periodic_or_emulated(PeriodicReason::NotRequested);
        }
        if !f.contains(Features::ONESHOT) {
            return (TickMode::Periodic, Some(PeriodicReason::DeviceLacksOneshot));
        }
        let flags = {
            let t = self.time.lock();
            let clocks = &t.clocks;
            clocks
                .current()
                .and_then(|id| clocks.get(id))
                .map(|e| e.flags())
                .unwrap_or(ClockSourceFlags::empty())
        };
        if !flags.contains(ClockSourceFlags::VALID_FOR_HRES)
            || flags.contains(ClockSourceFlags::UNSTABLE)
        {
            return periodic_or_emulated(PeriodicReason::ClockNotHres);
        }
        if self.config.highres() {
            (
                TickMode::HighRes {
                    nohz: self.config.nohz(),
                },
                None,
            )
        } else {
            (TickMode::NoHzLowRes, None)
        }
    }

    fn enter_mode(&self, cpu: CpuId, c: &mut TickCpu<'a, S>, now: Ktime) {
        let period = self.period();
        let next_tick = self.grid.next(now);
        let mode = c.mode;
        let Some((_, ev)) = c.dev.as_mut() else {
            return;
        };
        let r = match mode {
            TickMode::NoDevice => Ok(()),
            TickMode::Periodic => ev.set_state(DeviceState::Periodic, period),
            _ => ev.set_state(DeviceState::Oneshot, Nanos::ZERO),
        };
        if let Err(e) = r {
            log::error!("tick: {cpu}: {} refused its mode {mode}: {e:?}", ev.name());
            self.set_mode(cpu, c, TickMode::NoDevice);
            return;
        }
        c.next_tick = next_tick;
        if c.mode.is_oneshot() {
            self.reprogram(cpu, c, None, now);
        }
    }

    // ----- time ------------------------------------------------------------

    /// From now on the timekeeper publishes its monotonic read base to
    /// `to`, and [`TickSystem::now`] — every clock read of the interrupt
    /// path — reads through it without the timekeeping lock, the counter
    /// read by `read` (a seqlock read: it retries while the duty holder
    /// publishes, never waits; Linux `ktime_get` over `tk_core.seq`). A
    /// source `read` cannot read is read under the lock, as before.
    pub fn publish_to(&mut self, to: &'a PublishedClock, read: LockFreeRead) {
        self.time.get_mut().tk.publish_to(to);
        self.fast = Some((to, read));
    }

    /// Monotonic time now, from the clocksource: through the published base
    /// without a lock where [`TickSystem::publish_to`] set one up and the
    /// source is one its reader reads, else under the timekeeping lock.
    pub fn now(&self) -> Ktime {
        if let Some((published, read)) = self.fast {
            if let Some(t) = published.monotonic_from(read) {
                return t;
            }
        }
        self.time.lock().now()
    }
    /// The timekeeper, held until the return is dropped.
    pub fn timekeeper(&self) -> impl Deref<Target = Timekeeper<'a>> + '_ {
        Held::new(self.time.lock(), |t| &t.tk)
    }
    /// The timekeeper, for setting realtime or adjusting frequency.
    pub fn timekeeper_mut(&mut self) -> &mut Timekeeper<'a> {
        &mut self.time.get_mut().tk
    }
    /// Ticks since boot, derived from monotonic time.
    pub fn jiffies(&self) -> Jiffies {
        self.words.jiffies()
    }
    /// The CPU holding the timekeeping duty, if any.
    pub fn do_timer_cpu(&self) -> Option<CpuId> {
        self.words.duty()
    }
    /// The clocksource watchdog's schedule; `None` when nothing needs
    /// verifying.
    pub fn watchdog_schedule(&self) -> Option<WatchdogSchedule> {
        self.time.lock().watchdog.snapshot()
    }

    // ----- timers ----------------------------------------------------------

    /// Queues a timer on `cpu`; reprograms the device if it is now the
    /// earliest event. Expiries in the past fire at the next opportunity.
    /// Call it on `cpu` (its device is programmed from here); from another
    /// CPU, [`TickSystem::add_timer_from`].
    pub fn add_timer(&self, cpu: CpuId, expires: Ktime, data: u64) -> Result<TimerId, AddError> {
        let Some(mut c) = self.cpu(cpu) else {
            return Err(AddError::NoCpu);
        };
        let id = c.timers.add(expires, data)?;
        let at = c.timer_event(expires, self.grid);
        if at < self.programmed_event_of(cpu, &c) {
            let now = self.now();
            self.reprogram(cpu, &mut c, None, now);
        }
        Ok(id)
    }

    /// Cancels a timer; `None` if it already fired or was cancelled. If it
    /// was what the device was programmed for, the device is reprogrammed,
    /// so no interrupt comes that no timer asked for.
    pub fn cancel_timer(&self, cpu: CpuId, id: TimerId) -> Option<Timer> {
        let mut c = self.cpu(cpu)?;
        let t = c.timers.cancel(id)?;
        let at = if c.mode.is_highres() {
            t.expires
        } else {
            self.grid.ceil(t.expires)
        };
        if at <= self.programmed_event_of(cpu, &c) && c.mode.is_oneshot() {
            let now = self.now();
            self.reprogram(cpu, &mut c, None, now);
        }
        Some(t)
    }

    /// When `cpu`'s next interrupt is programmed for (local or broadcast);
    /// `Ktime::MAX` if nothing is, or there is no such CPU.
    pub fn programmed_event(&self, cpu: CpuId) -> Ktime {
        match self.cpu(cpu) {
            Some(c) => self.programmed_event_of(cpu, &c),
            None => Ktime::MAX,
        }
    }

    /// [`TickSystem::programmed_event`], `cpu`'s state `c` held.
    pub(crate) fn programmed_event_of(&self, cpu: CpuId, c: &TickCpu<'a, S>) -> Ktime {
        if c.in_broadcast {
            self.bc.lock().event_of(cpu)
        } else {
            c.device_event()
        }
    }

    // ----- reporting -------------------------------------------------------

    /// A snapshot of `cpu`.
    pub fn cpu_info(&self, cpu: CpuId) -> Option<CpuInfo> {
        self.cpu(cpu).map(|c| c.info())
    }

    /// The tick mode of `cpu`.
    pub fn mode(&self, cpu: CpuId) -> TickMode {
        self.cpu(cpu).map_or(TickMode::NoDevice, |c| c.mode)
    }

    /// The device id serving as `cpu`'s tick device.
    pub fn cpu_device(&self, cpu: CpuId) -> Option<DeviceId> {
        self.cpu(cpu)?.dev.as_ref().map(|(i, _)| *i)
    }

    /// Programming statistics of `cpu`'s tick device.
    pub fn cpu_device_stats(&self, cpu: CpuId) -> Option<clockevents::ProgramStats> {
        self.cpu(cpu)?.dev.as_ref().map(|(_, e)| e.stats())
    }
}
