//! The tick system: its parts, registration of devices and clock sources,
//! mode selection, and the timer and reporting API.
//!
//! [`TickSystem`] is a composition, one concern per field:
//!
//! ```text
//!   TickSystem
//!     config            TickConfig (what was asked for)
//!     time              Timekeeping: timekeeper, clock sources, tick grid,
//!                       jiffies, the timekeeping duty        (shared)
//!     watchdog          WatchdogTimer: the clocksource watchdog's schedule
//!                                                            (CPU 0's)
//!     devices           DevicePool: every registered event device (shared,
//!                       changed only at registration)
//!     cpus[c]           TickCpu: device, queue, mode, idle, stats (CPU c's)
//!     bc                Broadcast: the stand-in for C3STOP devices (shared)
//! ```
//!
//! The interrupt path is in [`crate::interrupt`], NO_HZ idle in
//! [`crate::nohz`], broadcast in [`crate::broadcast`]. Who may touch
//! which part is in the crate docs ("State, and who touches it").

use clockevents::{
    ClockEventDevice, CpuId, DeviceId, DevicePool, DeviceState, EventDevice, Features, Owner,
    PoolError,
};
use clocksource::WatchdogReport;
use clocksource::{ClockSource, ClockSourceFlags, Ktime, Nanos, Registry, SourceId, Timekeeper};
use core::fmt;

use crate::advance::{Advance, TimerAdvance};
use crate::broadcast::Broadcast;
use crate::config::{PeriodicReason, TickConfig, TickMode};
use crate::grid::Jiffies;
use crate::percpu::TickCpu;
pub use crate::percpu::{CpuInfo, CpuStats};
use crate::queue::{QueueFull, Timer, TimerId, TimerSlot};
use crate::timekeeping::Timekeeping;
use crate::watchdog::WatchdogTimer;
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

/// The whole tick layer for `CPUS` CPUs; `S` is each CPU's timer storage.
pub struct TickSystem<'a, S, const CPUS: usize> {
    pub(crate) config: TickConfig,
    pub(crate) time: Timekeeping<'a>,
    pub(crate) watchdog: WatchdogTimer,
    pub(crate) devices: DevicePool<'a, MAX_EVENT_DEVICES>,
    pub(crate) device_override: Option<&'a str>,
    pub(crate) cpus: [TickCpu<'a, S>; CPUS],
    pub(crate) bc: Broadcast<'a, CPUS>,
}

impl<'a, S, const CPUS: usize> TickSystem<'a, S, CPUS>
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
        let time = Timekeeping::new(cs, config.period())?;
        let mut sys = TickSystem {
            config,
            time,
            watchdog: WatchdogTimer::new(),
            devices: DevicePool::new(),
            device_override: None,
            cpus: storage.map(TickCpu::new),
            bc: Broadcast::new(),
        };
        let now = sys.now();
        sys.watchdog.schedule(&sys.time.clocks, now);
        Ok(sys)
    }

    /// The CPU's state, if `cpu` is one of ours: the one index check.
    pub(crate) fn cpu(&mut self, cpu: CpuId) -> Option<&mut TickCpu<'a, S>> {
        self.cpus.get_mut(cpu.index())
    }

    // ----- configuration ---------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> TickConfig {
        self.config
    }
    /// The tick period.
    pub fn period(&self) -> Nanos {
        self.time.grid.period()
    }
    /// Programs high-resolution events early by a fixed or learned delivery
    /// delay and spins the rest (see [`crate::advance`]). Off by default.
    pub fn set_timer_advance(&mut self, mode: TimerAdvance) {
        for c in self.cpus.iter_mut() {
            c.advance = Advance::new(mode);
        }
    }

    /// Restricts every CPU's tick device to the device named `name`
    /// (`clockevent=` on a command line). Applies to devices registered
    /// afterwards.
    pub fn set_device_override(&mut self, name: &'a str) {
        self.device_override = Some(name);
    }

    /// Registers an event device and re-runs selection: it may become the
    /// tick device of the CPUs it covers (the old one is shut down and handed
    /// back to the pool), or the broadcast device.
    pub fn register_device(
        &mut self,
        dev: &'a dyn ClockEventDevice,
    ) -> Result<DeviceId, RegisterError> {
        // What the device is, read once; validated before the pool sees it.
        let info = dev.info();
        EventDevice::with_info(dev, info, self.period()).map_err(RegisterError::Device)?;
        let id = self
            .devices
            .register_with(dev, info)
            .map_err(RegisterError::Pool)?;
        let now = self.now();
        for cpu in CpuId::first(CPUS) {
            let current = self.cpus[cpu.index()].dev.as_ref().map(|(i, _)| *i);
            let only = self
                .device_override
                .and_then(|n| self.devices.find(n))
                .filter(|o| self.devices.info(*o).is_some_and(|i| i.cpus.contains(cpu)));
            let oneshot = self.cpus[cpu.index()].mode.is_oneshot();
            if self.devices.best_for_cpu(cpu, current, oneshot, only) == Some(id) {
                self.setup_cpu_device(cpu, id, now)?;
            }
        }
        self.offer_broadcast();
        Ok(id)
    }

    /// Registers another clock source and re-selects (it becomes the
    /// timekeeper's source if it is the best).
    pub fn register_clocksource(
        &mut self,
        cs: &'a dyn ClockSource,
    ) -> Result<SourceId, RegisterError> {
        let id = self
            .time
            .clocks
            .register(cs)
            .map_err(RegisterError::Clock)?;
        self.reselect_clocksource(None);
        Ok(id)
    }

    /// Honour `clocksource=name` (may name a source registered later).
    pub fn set_clocksource_override(
        &mut self,
        name: &str,
    ) -> Result<(), clocksource::OverrideError> {
        self.time.clocks.set_override(name)?;
        self.reselect_clocksource(None);
        Ok(())
    }

    /// Marks clocksource `name` unstable and re-selects (Linux
    /// `mark_tsc_unstable`: a failed TSC warp check at CPU bring-up, the
    /// `tsc` crate's `WarpCheck`). If it was the current source the timekeeper moves to the
    /// next best one from the time it has reached, so time never steps
    /// back. `Some(true)` if newly marked, `Some(false)` if it already was,
    /// `None` if no source has that name.
    pub fn mark_clocksource_unstable(&mut self, name: &str) -> Option<bool> {
        let id = self.time.clocks.find(name)?;
        let newly = self.time.clocks.mark_unstable(id).ok()?;
        if newly {
            self.reselect_clocksource(None);
        }
        Some(newly)
    }

    /// The clock source registry (for the boot table).
    pub fn clocksources(&self) -> &Registry<'a, MAX_CLOCK_SOURCES> {
        &self.time.clocks
    }
    /// The event device pool (for the boot table).
    pub fn devices(&self) -> &DevicePool<'a, MAX_EVENT_DEVICES> {
        &self.devices
    }

    /// Re-selects the clocksource; `after` is the watchdog check that found
    /// a source unstable, whose error the clocks then lose if they ran on it
    /// ([`Registry::reselect_after_check`]). A switch restarts the
    /// watchdog's baselines; the schedule starts again from now.
    pub(crate) fn reselect_clocksource(
        &mut self,
        after: Option<&WatchdogReport<MAX_CLOCK_SOURCES>>,
    ) {
        let hres = self.cpus.iter().any(|c| c.mode.is_oneshot());
        if self.time.reselect(hres, after) {
            self.watchdog.restart(&mut self.time.clocks);
        }
        let now = self.now();
        self.watchdog.schedule(&self.time.clocks, now);
    }

    /// Installs device `id` as the tick device of `cpu` and enters the best
    /// mode it and the clocksource allow.
    fn setup_cpu_device(
        &mut self,
        cpu: CpuId,
        id: DeviceId,
        now: Ktime,
    ) -> Result<(), RegisterError> {
        let (Some(dev), Some(info)) = (self.devices.get(id), self.devices.info(id).copied()) else {
            return Ok(());
        };
        let mut ev =
            EventDevice::with_info(dev, info, self.period()).map_err(RegisterError::Device)?;
        if let Err(e) = ev.attach() {
            log::warn!("tick: {cpu}: cannot attach {}: {e:?}", info.name);
            return Ok(());
        }
        let (mode, reason) = self.choose_mode(info.features);
        let Some(c) = self.cpus.get_mut(cpu.index()) else {
            return Ok(());
        };
        if let Some((old_id, mut old)) = c.dev.take() {
            let _ = old.release();
            self.devices.set_owner(old_id, Owner::Free);
            log::info!("tick: {cpu}: {} replaced by {}", old.name(), info.name);
        }
        self.devices.set_owner(id, Owner::Cpu(cpu));
        if let Some(r) = reason {
            if self.config.wants_oneshot() {
                log::info!("tick: {cpu}: {} stays periodic: {r}", info.name);
            }
        }
        c.dev = Some((id, ev));
        c.mode = mode;
        c.periodic_reason = reason;
        c.tick_stopped = false;
        self.enter_mode(cpu, now);
        Ok(())
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
        let clocks = &self.time.clocks;
        let flags = clocks
            .current()
            .and_then(|id| clocks.get(id))
            .map(|e| e.flags())
            .unwrap_or(ClockSourceFlags::empty());
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

    fn enter_mode(&mut self, cpu: CpuId, now: Ktime) {
        let period = self.period();
        let next_tick = self.time.grid.next(now);
        let Some(c) = self.cpus.get_mut(cpu.index()) else {
            return;
        };
        let Some((_, ev)) = c.dev.as_mut() else {
            return;
        };
        let r = match c.mode {
            TickMode::NoDevice => Ok(()),
            TickMode::Periodic => ev.set_state(DeviceState::Periodic, period),
            _ => ev.set_state(DeviceState::Oneshot, Nanos::ZERO),
        };
        if let Err(e) = r {
            log::error!(
                "tick: {cpu}: {} refused its mode {}: {e:?}",
                ev.name(),
                c.mode
            );
            c.mode = TickMode::NoDevice;
            return;
        }
        c.next_tick = next_tick;
        if c.mode.is_oneshot() {
            self.reprogram(cpu, now);
        }
    }

    // ----- time ------------------------------------------------------------

    /// Monotonic time now, from the clocksource.
    pub fn now(&self) -> Ktime {
        self.time.now()
    }
    /// The timekeeper.
    pub fn timekeeper(&self) -> &Timekeeper<'a> {
        &self.time.tk
    }
    /// The timekeeper, for setting realtime or adjusting frequency.
    pub fn timekeeper_mut(&mut self) -> &mut Timekeeper<'a> {
        &mut self.time.tk
    }
    /// Ticks since boot, derived from monotonic time.
    pub fn jiffies(&self) -> Jiffies {
        self.time.jiffies()
    }
    /// The CPU holding the timekeeping duty, if any.
    pub fn do_timer_cpu(&self) -> Option<CpuId> {
        self.time.duty()
    }
    /// The clocksource watchdog's schedule; `None` when nothing needs
    /// verifying.
    pub fn watchdog_schedule(&self) -> Option<WatchdogSchedule> {
        self.watchdog.snapshot()
    }

    // ----- timers ----------------------------------------------------------

    /// Queues a timer on `cpu`; reprograms the device if it is now the
    /// earliest event. Expiries in the past fire at the next opportunity.
    pub fn add_timer(
        &mut self,
        cpu: CpuId,
        expires: Ktime,
        data: u64,
    ) -> Result<TimerId, AddError> {
        let grid = self.time.grid;
        let Some(c) = self.cpu(cpu) else {
            return Err(AddError::NoCpu);
        };
        let id = c.timers.add(expires, data)?;
        let at = c.timer_event(expires, grid);
        if at < self.programmed_event(cpu) {
            let now = self.now();
            self.reprogram(cpu, now);
        }
        Ok(id)
    }

    /// Cancels a timer; `None` if it already fired or was cancelled. If it
    /// was what the device was programmed for, the device is reprogrammed,
    /// so no interrupt comes that no timer asked for.
    pub fn cancel_timer(&mut self, cpu: CpuId, id: TimerId) -> Option<Timer> {
        let grid = self.time.grid;
        let c = self.cpu(cpu)?;
        let t = c.timers.cancel(id)?;
        let at = if c.mode.is_highres() {
            t.expires
        } else {
            grid.ceil(t.expires)
        };
        let oneshot = c.mode.is_oneshot();
        if at <= self.programmed_event(cpu) && oneshot {
            let now = self.now();
            self.reprogram(cpu, now);
        }
        Some(t)
    }

    /// When `cpu`'s next interrupt is programmed for (local or broadcast);
    /// `Ktime::MAX` if nothing is, or there is no such CPU.
    pub fn programmed_event(&self, cpu: CpuId) -> Ktime {
        match self.cpus.get(cpu.index()) {
            Some(c) if c.in_broadcast => self.bc.event_of(cpu),
            Some(c) => c.device_event(),
            None => Ktime::MAX,
        }
    }

    // ----- reporting -------------------------------------------------------

    /// A snapshot of `cpu`.
    pub fn cpu_info(&self, cpu: CpuId) -> Option<CpuInfo> {
        self.cpus.get(cpu.index()).map(TickCpu::info)
    }

    /// The tick mode of `cpu`.
    pub fn mode(&self, cpu: CpuId) -> TickMode {
        self.cpus
            .get(cpu.index())
            .map_or(TickMode::NoDevice, |c| c.mode)
    }

    /// The device id serving as `cpu`'s tick device.
    pub fn cpu_device(&self, cpu: CpuId) -> Option<DeviceId> {
        self.cpus.get(cpu.index())?.dev.as_ref().map(|(i, _)| *i)
    }

    /// Programming statistics of `cpu`'s tick device.
    pub fn cpu_device_stats(&self, cpu: CpuId) -> Option<clockevents::ProgramStats> {
        self.cpus
            .get(cpu.index())?
            .dev
            .as_ref()
            .map(|(_, e)| e.stats())
    }
}
