//! The tick system: per-CPU tick devices, the tick itself, timers and
//! timekeeping duty.
//!
//! # The interrupt path
//!
//! ```text
//!   device interrupt on CPU c ──► TickSystem::interrupt(dev, c, run)
//!       │  owner = CPU c                      owner = broadcast
//!       ▼                                          ▼
//!   cpu_event(c):                            broadcast_event(): collect CPUs
//!     event_handled() (forced latch off)       whose event is due → IPI mask;
//!     timekeeping duty: jiffies + timekeeper    re-arm for the earliest other
//!     tick due? → tick work (low-res timers)         │
//!     high-res: run expired timers                   ▼
//!     reprogram: min(next tick, next timer,     ipi(c) ─► cpu_event(c)
//!                    max deferment, watchdog)
//! ```
//!
//! Nothing here allocates; loops are bounded (timer runs by the queue length
//! at entry, reprogramming by the clockevents retry policy). When that
//! policy gives up ([`ProgramError::GaveUp`]: the device refused every
//! delta up to one tick), the device is armed once more at the policy's
//! largest min delta, so the CPU — idle with its tick stopped, say — is
//! woken a tick later rather than never. The embedder
//! serialises calls (one lock, interrupts off, in a kernel); per-CPU state is
//! reached by CPU index.
//!
//! # The clocksource watchdog, deferred in idle
//!
//! With a `MUST_VERIFY` clocksource registered (a TSC without the
//! invariant bit), CPU 0 checks it against a trusted one every 0.5 s while
//! its tick runs, as Linux does (`WATCHDOG_INTERVAL`,
//! kernel/time/clocksource.c). Linux's watchdog is a timer that wakes an
//! idle CPU every 0.5 s too (most of the ~2 wake-ups/s of an idle Linux
//! guest under TCG); here, with CPU 0's tick stopped, a check that is due
//! runs in the CPU's next wake-up for anything else, and a wake-up of its
//! own is forced only when the last check is [`WATCHDOG_IDLE_DEFERRAL_MAX`]
//! = 1 s old (or 7/8 of the pair's smaller max deferment,
//! [`Watchdog::max_interval`], if that is shorter, so that no counter has
//! wrapped unseen). The watchdog scales its margin with the interval
//! ([`clocksource::watchdog::scaled_margin`]), so the check that spans an
//! idle period judges it — which is the one that sees a TSC halted in a
//! deep C-state.
//!
//! **The bound, and why 1 s.** A source is unstable when it is off by more
//! than the two sources' margins: 250 + 250 µs per 0.5 s (Linux's
//! uncertainty margins, 2 × `WATCHDOG_MAX_SKEW` = 125 µs each), about
//! 1000 ppm. A source going wrong at that rate runs up 1 ms of error in
//! 1 s — twice what one regular check tolerates, and as much as Linux
//! lets through: it judges intervals up to `WATCHDOG_INTERVAL_MAX_NS` =
//! 2 × `WATCHDOG_INTERVAL` = 1 s (a late watchdog timer) and skips longer
//! ones. So a must-verify clock runs unchecked here no longer than Linux's
//! longest judged interval, with half Linux's idle wake-ups for it (1/s
//! where Linux takes 2/s), and none at all when something else wakes the
//! CPU at least every 0.5 s. The bound is the device's time after the last
//! check; a clock running under half speed (or stopped) reads short of the
//! check's due time at that wake-up, and the next interrupt found early
//! checks it (two in a row, see `cpu_event`): 2 s at most.
//!
//! **When the clocks' own source is found unstable**, they switch to the
//! best source left and lose the error the bad one put in them since its
//! last good check, as the reference measured it
//! ([`Registry::reselect_after_check`]): if it ran slow, monotonic and
//! realtime step forward to the reference's time; if it ran fast, they hold
//! until the reference's time reaches them, then run on from it — never
//! backwards ([`clocksource::Timekeeper::correct`]). Linux only switches,
//! keeping the error. For the measured error to be no more than what the
//! clocks carry, every switch of source restarts the watchdog's baselines
//! at once: a judged interval never reaches back before the clocks moved
//! onto the source it judges.
//!
//! Time always comes from the clocksource via the timekeeper: jiffies are
//! derived from monotonic time (`(now − last update) / period`), never
//! counted from interrupts, so a lost or coalesced interrupt loses no time
//! (Linux `tick_do_update_jiffies64`).

use core::fmt;

use clockevents::{
    ClockEventDevice, CpuMask, DeviceId, DevicePool, DeviceState, EventDevice, Expired, Features,
    Owner, PoolError, ProgramError,
};
use clocksource::{
    ClockSource, ClockSourceFlags, ConversionError, Cycles, Ktime, Nanos, Registry, SourceId,
    Timekeeper, Watchdog, WatchdogReport,
};

use crate::advance::{Advance, TimerAdvance, MAX_STALLED_READS, MAX_TIMER_ADVANCE};
use crate::broadcast::Broadcast;
use crate::config::{PeriodicReason, TickConfig, TickMode};
use crate::queue::{QueueFull, Timer, TimerId, TimerQueue, TimerSlot};

/// Event devices a system can register.
pub const MAX_EVENT_DEVICES: usize = 16;
/// Clock sources a system can register.
pub const MAX_CLOCK_SOURCES: usize = 8;
/// The longest CPU 0 leaves a `MUST_VERIFY` clocksource unchecked while
/// idle with its tick stopped, however long the counters could go: 1 s,
/// the longest interval Linux's watchdog judges (`WATCHDOG_INTERVAL_MAX_NS`
/// = 2 × `WATCHDOG_INTERVAL`, kernel/time/clocksource.c). A source wrong by
/// the watchdog's threshold (≈ 1000 ppm) runs up 1 ms in it (module docs).
pub const WATCHDOG_IDLE_DEFERRAL_MAX: Nanos = Nanos::from_secs(1);

/// The clocksource watchdog's schedule ([`TickSystem::watchdog_schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSchedule {
    /// When it last ran (or was scheduled from).
    pub last_run: Ktime,
    /// When the next check is due on the regular 0.5 s schedule; it runs in
    /// CPU 0's first interrupt at or after this.
    pub next_due: Ktime,
    /// When CPU 0 idle with its tick stopped is woken for it: `last_run` +
    /// `deferral` (or `next_due`, if later).
    pub idle_deadline: Ktime,
    /// How long an idle CPU 0 may defer the check.
    pub deferral: Nanos,
}

/// What a timer's callback asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rearm {
    /// Done.
    No,
    /// Queue it again at this expiry, under the same id and `data`: the
    /// [`TimerId`] the owner holds still cancels it.
    At(Ktime),
}

/// Per-CPU counters, for tests and the boot table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Interrupts handled for this CPU (own device or broadcast IPI).
    pub interrupts: u64,
    /// Ticks: interrupts that did tick work.
    pub ticks: u64,
    /// Timers run.
    pub timers_fired: u64,
    /// Times the tick was stopped on idle entry.
    pub tick_stops: u64,
    /// Times the tick was kept on idle entry: a timer was due within the
    /// next tick, or the tick's interrupt was due within the device's min
    /// delta ([`CpuStats::tick_retained_due`]).
    pub tick_retained: u64,
    /// Of [`CpuStats::tick_retained`], the times the programmed interrupt
    /// was due within the tick device's min delta of idle entry: it may
    /// already be raised, so it is left to do the tick's work.
    pub tick_retained_due: u64,
    /// Wake-ups forced by the clocksource's max deferment while idle.
    pub max_deferment_wakeups: u64,
    /// Times the timer run stopped early (hang protection).
    pub timer_runs_deferred: u64,
    /// Device programming that failed for good.
    pub program_failures: u64,
    /// Spins to an advanced deadline ended because the clocksource stopped
    /// moving ([`crate::advance`]).
    pub advance_spin_stalls: u64,
    /// Times `timer_advance=auto` backed off: with the lead in force the
    /// handler was still later than any lead could make up
    /// ([`crate::advance`]).
    pub advance_back_offs: u64,
    /// Interrupts taken in NO_HZ idle that left the re-arm (and, with the
    /// tick running, the decision to stop it) to the idle loop
    /// (`idle_sleep` / `idle_exit`) instead of programming the device in
    /// the handler.
    pub rearms_deferred: u64,
}

/// One CPU's tick state.
pub(crate) struct TickCpu<'a, S> {
    pub(crate) dev: Option<(DeviceId, EventDevice<'a>)>,
    pub(crate) mode: TickMode,
    pub(crate) periodic_reason: Option<PeriodicReason>,
    pub(crate) timers: TimerQueue<S>,
    /// The next tick deadline (one-shot modes), on the grid `k·period`.
    pub(crate) next_tick: Ktime,
    pub(crate) tick_stopped: bool,
    pub(crate) idle: bool,
    pub(crate) idle_entry: Ktime,
    pub(crate) idle_entry_jiffies: u64,
    pub(crate) idle_time: Nanos,
    pub(crate) idle_jiffies: u64,
    /// The local device is off and the broadcast device stands in for it.
    pub(crate) in_broadcast: bool,
    /// This CPU gave up the timekeeping duty when it stopped its tick and
    /// nobody took it since (Linux `do_timer_last`).
    pub(crate) do_timer_last: bool,
    /// The wake-up programmed while idle for the max-deferment cap
    /// (`Ktime::MAX` if the wake-up is for something else).
    pub(crate) deferment_wakeup: Ktime,
    /// An interrupt in idle left the re-arm to the idle loop (`idle_sleep`
    /// or `idle_exit` programs the next event); cleared by any reprogram.
    pub(crate) rearm_pending: bool,
    /// What the device was last programmed for (before any advance).
    pub(crate) target: Ktime,
    /// Consecutive interrupts that came before the clocksource reached
    /// their expiry.
    pub(crate) behind_streak: u32,
    /// Adaptive timer advance.
    pub(crate) advance: Advance,
    pub(crate) stats: CpuStats,
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

/// A snapshot of one CPU for the boot table and tests.
#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    /// The tick device's name, if any.
    pub device: Option<&'static str>,
    /// The device's state.
    pub device_state: Option<DeviceState>,
    /// The tick mode reached.
    pub mode: TickMode,
    /// Why the mode is periodic though one-shot was asked for.
    pub periodic_reason: Option<PeriodicReason>,
    /// Whether the tick is stopped.
    pub tick_stopped: bool,
    /// Whether the broadcast device stands in for the local one.
    pub in_broadcast: bool,
    /// Total idle time accounted.
    pub idle_time: Nanos,
    /// Jiffies that passed while the tick was stopped in idle.
    pub idle_jiffies: u64,
    /// Timers queued.
    pub timers_queued: usize,
    /// How early events are programmed now ([`TimerAdvance`]; 0 while auto
    /// has backed off).
    pub timer_advance: Nanos,
    /// `timer_advance=auto`: the delivery delay learned.
    pub advance_delay: Nanos,
    /// Time spent spinning from an advanced interrupt to its deadline.
    pub advance_spun: Nanos,
    /// Counters.
    pub stats: CpuStats,
}

/// The whole tick layer for `CPUS` CPUs; `S` is each CPU's timer storage.
pub struct TickSystem<'a, S, const CPUS: usize> {
    pub(crate) config: TickConfig,
    pub(crate) period: Nanos,
    pub(crate) tk: Timekeeper<'a>,
    pub(crate) clocks: Registry<'a, MAX_CLOCK_SOURCES>,
    pub(crate) watchdog: Watchdog<MAX_CLOCK_SOURCES>,
    pub(crate) next_watchdog: Ktime,
    /// When the watchdog last ran (its regular schedule counts from here).
    pub(crate) last_watchdog: Ktime,
    /// How long CPU 0 may defer a check while idle with its tick stopped.
    pub(crate) watchdog_deferral: Nanos,
    pub(crate) devices: DevicePool<'a, MAX_EVENT_DEVICES>,
    pub(crate) device_override: Option<&'a str>,
    pub(crate) cpus: [TickCpu<'a, S>; CPUS],
    pub(crate) jiffies: u64,
    pub(crate) last_jiffies_update: Ktime,
    pub(crate) do_timer_cpu: Option<usize>,
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
        let mut clocks = Registry::new();
        let cs_id = clocks.register(cs).map_err(RegisterError::Clock)?;
        // The timekeeper starts on `cs`; recorded as the registry's current.
        let _ = clocks.set_current(cs_id);
        let tk = Timekeeper::new(cs).map_err(|e: ConversionError| {
            RegisterError::Clock(clocksource::RegisterError::BadFrequency(e))
        })?;
        let cpus = storage.map(|st| TickCpu {
            dev: None,
            mode: TickMode::NoDevice,
            periodic_reason: None,
            timers: TimerQueue::new(st),
            next_tick: Ktime::MAX,
            tick_stopped: false,
            idle: false,
            idle_entry: Ktime::ZERO,
            idle_entry_jiffies: 0,
            idle_time: Nanos::ZERO,
            idle_jiffies: 0,
            in_broadcast: false,
            do_timer_last: false,
            deferment_wakeup: Ktime::MAX,
            rearm_pending: false,
            target: Ktime::MAX,
            behind_streak: 0,
            advance: Advance::default(),
            stats: CpuStats::default(),
        });
        let mut sys = TickSystem {
            config,
            period: config.period(),
            tk,
            clocks,
            watchdog: Watchdog::new(),
            next_watchdog: Ktime::MAX,
            last_watchdog: Ktime::ZERO,
            watchdog_deferral: Nanos::ZERO,
            devices: DevicePool::new(),
            device_override: None,
            cpus,
            jiffies: 0,
            last_jiffies_update: Ktime::ZERO,
            do_timer_cpu: Some(0),
            bc: Broadcast::new(),
        };
        let now = sys.tk.monotonic();
        sys.last_jiffies_update = sys.grid_floor(now);
        sys.schedule_watchdog(now);
        Ok(sys)
    }

    // ----- configuration ---------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> TickConfig {
        self.config
    }
    /// The tick period.
    pub fn period(&self) -> Nanos {
        self.period
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
        // Validate before the pool sees it.
        EventDevice::new(dev, self.period).map_err(RegisterError::Device)?;
        let id = self.devices.register(dev).map_err(RegisterError::Pool)?;
        let now = self.now();
        for cpu in 0..CPUS {
            let current = self.cpus[cpu].dev.as_ref().map(|(i, _)| *i);
            let only = self
                .device_override
                .and_then(|n| self.devices.find(n))
                .filter(|o| self.devices.get(*o).is_some_and(|d| d.cpus().contains(cpu)));
            let oneshot = self.cpus[cpu].mode.is_oneshot();
            if self.devices.best_for_cpu(cpu, current, oneshot, only) == Some(id) {
                self.setup_cpu_device(cpu, id, now)?;
            }
        }
        self.offer_broadcast(now);
        Ok(id)
    }

    /// Registers another clock source and re-selects (it becomes the
    /// timekeeper's source if it is the best).
    pub fn register_clocksource(
        &mut self,
        cs: &'a dyn ClockSource,
    ) -> Result<SourceId, RegisterError> {
        let id = self.clocks.register(cs).map_err(RegisterError::Clock)?;
        self.reselect_clocksource(None);
        Ok(id)
    }

    /// Honour `clocksource=name` (may name a source registered later).
    pub fn set_clocksource_override(
        &mut self,
        name: &str,
    ) -> Result<(), clocksource::OverrideError> {
        self.clocks.set_override(name)?;
        self.reselect_clocksource(None);
        Ok(())
    }

    /// The clock source registry (for the boot table).
    pub fn clocksources(&self) -> &Registry<'a, MAX_CLOCK_SOURCES> {
        &self.clocks
    }
    /// The event device pool (for the boot table).
    pub fn devices(&self) -> &DevicePool<'a, MAX_EVENT_DEVICES> {
        &self.devices
    }

    /// Re-selects the clocksource; `after` is the watchdog check that found
    /// a source unstable, whose error the clocks then lose if they ran on it
    /// ([`Registry::reselect_after_check`]).
    fn reselect_clocksource(&mut self, after: Option<&WatchdogReport<MAX_CLOCK_SOURCES>>) {
        let hres = self.cpus.iter().any(|c| c.mode.is_oneshot());
        let result = match after {
            Some(report) => self.clocks.reselect_after_check(&mut self.tk, hres, report),
            None => self.clocks.reselect(&mut self.tk, hres),
        };
        match result {
            Ok(Some(_)) => self.restart_watchdog(),
            Ok(None) => {}
            Err(e) => log::error!("tick: clocksource reselection failed: {e:?}"),
        }
        let now = self.now();
        self.schedule_watchdog(now);
    }

    /// Installs device `id` as the tick device of `cpu` and enters the best
    /// mode it and the clocksource allow.
    fn setup_cpu_device(
        &mut self,
        cpu: usize,
        id: DeviceId,
        now: Ktime,
    ) -> Result<(), RegisterError> {
        let Some(dev) = self.devices.get(id) else {
            return Ok(());
        };
        let mut ev = EventDevice::new(dev, self.period).map_err(RegisterError::Device)?;
        if let Err(e) = ev.attach() {
            log::warn!("tick: cpu{cpu}: cannot attach {}: {e:?}", dev.name());
            return Ok(());
        }
        if let Some((old_id, mut old)) = self.cpus[cpu].dev.take() {
            let _ = old.release();
            self.devices.set_owner(old_id, Owner::Free);
            log::info!("tick: cpu{cpu}: {} replaced by {}", old.name(), dev.name());
        }
        self.devices.set_owner(id, Owner::Cpu(cpu));
        let (mode, reason) = self.choose_mode(dev.features());
        if let Some(r) = reason {
            if self.config.wants_oneshot() {
                log::info!("tick: cpu{cpu}: {} stays periodic: {r}", dev.name());
            }
        }
        let c = &mut self.cpus[cpu];
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
        let flags = self
            .clocks
            .current()
            .and_then(|id| self.clocks.get(id))
            .map(|e| e.flags())
            .unwrap_or(ClockSourceFlags::empty());
        if !flags.contains(ClockSourceFlags::VALID_FOR_HRES)
            || flags.contains(ClockSourceFlags::UNSTABLE)
        {
            return periodic_or_emulated(PeriodicReason::ClockNotHres);
        }
        if self.config.highres {
            (
                TickMode::HighRes {
                    nohz: self.config.nohz,
                },
                None,
            )
        } else {
            (TickMode::NoHzLowRes, None)
        }
    }

    fn enter_mode(&mut self, cpu: usize, now: Ktime) {
        let period = self.period;
        let next_tick = self.grid_next(now);
        let c = &mut self.cpus[cpu];
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
                "tick: cpu{cpu}: {} refused its mode {}: {e:?}",
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
        self.tk.monotonic()
    }
    /// The timekeeper.
    pub fn timekeeper(&self) -> &Timekeeper<'a> {
        &self.tk
    }
    /// The timekeeper, for setting realtime or adjusting frequency.
    pub fn timekeeper_mut(&mut self) -> &mut Timekeeper<'a> {
        &mut self.tk
    }
    /// Ticks since boot, derived from monotonic time.
    pub fn jiffies(&self) -> u64 {
        self.jiffies
    }
    /// The CPU holding the timekeeping duty, if any.
    pub fn do_timer_cpu(&self) -> Option<usize> {
        self.do_timer_cpu
    }

    /// The first tick deadline strictly after `t`.
    pub(crate) fn grid_next(&self, t: Ktime) -> Ktime {
        let p = self.period.as_nanos().max(1);
        Ktime::from_nanos((t.as_nanos() / p).saturating_add(1).saturating_mul(p))
    }
    /// The first tick deadline at or after `t` (low-res timers run there).
    pub(crate) fn grid_ceil(&self, t: Ktime) -> Ktime {
        if t.is_never() {
            return t;
        }
        let p = self.period.as_nanos().max(1);
        Ktime::from_nanos(t.as_nanos().div_ceil(p).saturating_mul(p))
    }
    fn grid_floor(&self, t: Ktime) -> Ktime {
        let p = self.period.as_nanos().max(1);
        Ktime::from_nanos(t.as_nanos() / p * p)
    }

    /// Brings jiffies and the timekeeper up to `now` (Linux
    /// `tick_do_update_jiffies64`).
    pub(crate) fn update_jiffies(&mut self, now: Ktime) {
        self.tk.update();
        let Some(delta) = now.checked_since(self.last_jiffies_update) else {
            return;
        };
        let p = self.period.as_nanos().max(1);
        let ticks = delta.as_nanos() / p;
        if ticks > 0 {
            self.jiffies += ticks;
            self.last_jiffies_update = self
                .last_jiffies_update
                .saturating_add(Nanos::from_nanos(ticks * p));
        }
    }

    /// Takes the timekeeping duty if nobody holds it; does it if held.
    fn do_timer(&mut self, cpu: usize, now: Ktime) {
        if self.do_timer_cpu.is_none() && !self.cpus[cpu].tick_stopped {
            // Only a CPU whose tick runs takes the duty; a CPU woken from
            // NO_HZ idle for a timer keeps sleeping tickless.
            self.do_timer_cpu = Some(cpu);
            self.cpus[cpu].do_timer_last = false;
        }
        if self.do_timer_cpu == Some(cpu) || self.cpus[cpu].tick_stopped {
            // The holder updates; an idle CPU woken with its tick stopped
            // updates too, so it never acts on stale jiffies (Linux
            // `tick_nohz_update_jiffies`).
            self.update_jiffies(now);
        }
        if cpu == 0 && now >= self.next_watchdog {
            self.run_watchdog(now);
        }
    }

    fn schedule_watchdog(&mut self, now: Ktime) {
        let must_verify = self
            .clocks
            .iter()
            .any(|e| e.flags().contains(ClockSourceFlags::MUST_VERIFY) && !e.is_unstable());
        let reference = Watchdog::pick_reference(&self.clocks);
        self.last_watchdog = now;
        self.next_watchdog = match reference {
            Some(_) if must_verify => now.saturating_add(self.watchdog.interval()),
            _ => Ktime::MAX,
        };
        // 7/8 of the longest interval a check can judge: a wake-up a little
        // late still finds both counters unwrapped.
        let judgeable = reference
            .and_then(|r| Watchdog::max_interval(&self.clocks, r))
            .unwrap_or(Nanos::ZERO);
        self.watchdog_deferral = Nanos::from_nanos(judgeable.as_nanos() / 8 * 7)
            .min(WATCHDOG_IDLE_DEFERRAL_MAX)
            .max(self.watchdog.interval());
    }

    /// When CPU 0 must wake for the clocksource watchdog: at its regular
    /// schedule while the tick runs; with the tick stopped, not before the
    /// check would span [`TickSystem::watchdog_schedule`]'s deferral.
    fn watchdog_deadline(&self, tick_stopped: bool) -> Ktime {
        if self.next_watchdog.is_never() || !tick_stopped {
            return self.next_watchdog;
        }
        self.next_watchdog
            .max(self.last_watchdog.saturating_add(self.watchdog_deferral))
    }

    /// The clocksource watchdog's schedule; `None` when nothing needs
    /// verifying.
    pub fn watchdog_schedule(&self) -> Option<WatchdogSchedule> {
        if self.next_watchdog.is_never() {
            return None;
        }
        Some(WatchdogSchedule {
            last_run: self.last_watchdog,
            next_due: self.next_watchdog,
            idle_deadline: self.watchdog_deadline(true),
            deferral: self.watchdog_deferral,
        })
    }

    /// Checks the must-verify clocksources against the best trusted one
    /// (on CPU 0 — as Linux's 2026 watchdog checks frequency on the boot CPU
    /// — every [`Watchdog::interval`], included in CPU 0's next event).
    fn run_watchdog(&mut self, now: Ktime) {
        self.check_clocks();
        self.schedule_watchdog(now);
    }

    /// One watchdog check now, leaving the regular schedule alone (an early
    /// check must not postpone the next regular one).
    fn check_clocks(&mut self) {
        if let Some(reference) = Watchdog::pick_reference(&self.clocks) {
            match self.watchdog.check(&mut self.clocks, reference) {
                Ok(report) if report.any_unstable() => self.reselect_clocksource(Some(&report)),
                Ok(_) => {}
                Err(e) => log::warn!("tick: clocksource watchdog: {e:?}"),
            }
        }
    }

    /// The clocks moved to another source: the baselines start again at
    /// once, so that every interval the watchdog judges was kept by one
    /// source, and the error an "unstable" verdict takes out of the clocks
    /// is no more than they carry (module docs).
    fn restart_watchdog(&mut self) {
        self.watchdog.reset();
        if let Some(reference) = Watchdog::pick_reference(&self.clocks) {
            // After a reset every verdict is a baseline (or a skipped round).
            let _ = self.watchdog.check(&mut self.clocks, reference);
        }
    }

    // ----- timers ----------------------------------------------------------

    /// Queues a timer on `cpu`; reprograms the device if it is now the
    /// earliest event. Expiries in the past fire at the next opportunity.
    pub fn add_timer(
        &mut self,
        cpu: usize,
        expires: Ktime,
        data: u64,
    ) -> Result<TimerId, AddError> {
        let Some(c) = self.cpus.get_mut(cpu) else {
            return Err(AddError::NoCpu);
        };
        let id = c.timers.add(expires, data)?;
        let at = if c.mode.is_highres() {
            expires
        } else if c.tick_stopped {
            self.grid_ceil(expires)
        } else {
            Ktime::MAX
        };
        let programmed = self.programmed_event(cpu);
        if at < programmed {
            let now = self.now();
            self.reprogram(cpu, now);
        }
        Ok(id)
    }

    /// Cancels a timer; `None` if it already fired or was cancelled. If it
    /// was what the device was programmed for, the device is reprogrammed,
    /// so no interrupt comes that no timer asked for.
    pub fn cancel_timer(&mut self, cpu: usize, id: TimerId) -> Option<Timer> {
        let c = self.cpus.get_mut(cpu)?;
        let t = c.timers.cancel(id)?;
        let programmed = self.programmed_event(cpu);
        let at = if self.cpus[cpu].mode.is_highres() {
            t.expires
        } else {
            self.grid_ceil(t.expires)
        };
        if at <= programmed && self.cpus[cpu].mode.is_oneshot() {
            let now = self.now();
            self.reprogram(cpu, now);
        }
        Some(t)
    }

    /// When `cpu`'s next interrupt is programmed for (local or broadcast);
    /// `Ktime::MAX` if nothing is, or there is no such CPU.
    pub fn programmed_event(&self, cpu: usize) -> Ktime {
        let Some(c) = self.cpus.get(cpu) else {
            return Ktime::MAX;
        };
        if c.in_broadcast {
            return self.bc.next_event[cpu]; // cpu < CPUS: it has a TickCpu
        }
        c.dev.as_ref().map_or(Ktime::MAX, |(_, e)| e.next_event())
    }

    /// Runs `cpu`'s expired timers, bounded by the queue length at entry
    /// (hang protection: a callback re-arming into the past cannot loop).
    fn run_timers(
        &mut self,
        cpu: usize,
        now: Ktime,
        run: &mut dyn FnMut(usize, Timer, Ktime) -> Rearm,
    ) {
        let c = &mut self.cpus[cpu];
        let budget = c.timers.len() + 1;
        let mut n = 0;
        // A re-arm re-queues the timer in its own slot, under its id: the
        // owner's handle keeps naming it (and it cannot fail for room).
        while c
            .timers
            .pop_expired_with(now, |t| match run(cpu, t, now) {
                Rearm::At(at) => Some(at),
                Rearm::No => None,
            })
            .is_some()
        {
            c.stats.timers_fired += 1;
            n += 1;
            if n >= budget {
                c.stats.timer_runs_deferred += 1;
                break;
            }
        }
    }

    // ----- interrupts ------------------------------------------------------

    /// Handles an interrupt of device `dev` taken on `cpu`. Returns the CPUs
    /// the caller must send a tick IPI to (broadcast), which then call
    /// [`TickSystem::ipi`]. `run` is called for every expired timer, with
    /// the monotonic time it was found expired at (≥ its expiry).
    pub fn interrupt(
        &mut self,
        dev: DeviceId,
        cpu: usize,
        run: &mut dyn FnMut(usize, Timer, Ktime) -> Rearm,
    ) -> CpuMask {
        match self.devices.owner(dev) {
            Some(Owner::Cpu(c)) if c == cpu => {
                self.cpu_event(cpu, run);
                CpuMask::EMPTY
            }
            Some(Owner::Broadcast) => self.broadcast_event(),
            other => {
                // A device we shut down raced its last interrupt, or a
                // mis-routed IRQ: acknowledge and ignore.
                log::debug!("tick: spurious interrupt of {dev:?} on cpu{cpu} (owner {other:?})");
                CpuMask::EMPTY
            }
        }
    }

    /// Handles a tick IPI sent on behalf of the broadcast device.
    pub fn ipi(&mut self, cpu: usize, run: &mut dyn FnMut(usize, Timer, Ktime) -> Rearm) {
        if cpu < CPUS {
            self.cpu_event(cpu, run);
        }
    }

    /// The per-CPU event handler (Linux `tick_handle_periodic`,
    /// `tick_nohz_lowres_handler`, `hrtimer_interrupt`).
    fn cpu_event(&mut self, cpu: usize, run: &mut dyn FnMut(usize, Timer, Ktime) -> Rearm) {
        let now = self.now();
        let resolution = self
            .tk
            .cycles_to_ns(Cycles::new(1))
            .saturating_add(Nanos::from_nanos(1));
        let c = &mut self.cpus[cpu];
        c.stats.interrupts += 1;
        let mut clock_behind = false;
        let mut advanced = Nanos::ZERO;
        if let Some((_, ev)) = c.dev.as_mut() {
            // A device never fires early (its contract). If the clocksource
            // says we are more than the device's min delta short of the
            // programmed expiry twice in a row, the clocksource is the
            // suspect (stuck or slow): check it now rather than at a
            // watchdog deadline that the suspect clock itself would have to
            // reach. Once is not enough: an interrupt raised for the
            // previous programming (a LAPIC cannot withdraw one already
            // pending) also arrives "early" for the new one.
            let expected = ev.next_event();
            let behind = !expected.is_never()
                && !c.in_broadcast
                && expected.saturating_since(now) > ev.min_delta();
            c.behind_streak = if behind {
                c.behind_streak.saturating_add(1)
            } else {
                0
            };
            clock_behind = c.behind_streak >= 2;
            ev.event_handled();
            // How early the event was programmed: the target it stands
            // for minus the device's expiry (0 if it was not advanced, or
            // was cut short by the device's max delta).
            advanced = if !expected.is_never()
                && !c.target.is_never()
                && c.target.saturating_since(expected) <= MAX_TIMER_ADVANCE
            {
                c.target.saturating_since(expected)
            } else {
                Nanos::ZERO
            };
            // After a spin to the target (if early), the handler is this
            // late for it.
            let late = if c.target.is_never() {
                Nanos::ZERO
            } else {
                now.saturating_since(c.target)
            };
            if !expected.is_never()
                && now >= expected
                && c.advance.observe(now.saturating_since(expected), late)
            {
                c.stats.advance_back_offs += 1;
            }
        }
        let now = self.spin_to_target(cpu, now, advanced);
        let c = &mut self.cpus[cpu];
        // The clocksource reads up to one of its cycles behind the device
        // (a PIT-derived clock quantises to 838 ns): allow that much.
        if c.tick_stopped && now.saturating_add(resolution) >= c.deferment_wakeup {
            c.stats.max_deferment_wakeups += 1;
        }
        c.deferment_wakeup = Ktime::MAX;
        let mode = self.cpus[cpu].mode;
        if clock_behind && self.next_watchdog != Ktime::MAX {
            log::warn!("tick: cpu{cpu}: interrupt before the clocksource reached its expiry; checking clocks");
            self.check_clocks();
        }
        let now = self.now();
        self.do_timer(cpu, now);
        match mode {
            TickMode::NoDevice => {}
            TickMode::Periodic => {
                self.cpus[cpu].stats.ticks += 1;
                self.run_timers(cpu, now, run);
            }
            _ => {
                let next_tick = self.grid_next(now);
                let c = &mut self.cpus[cpu];
                if !c.tick_stopped && now >= c.next_tick {
                    c.stats.ticks += 1;
                    c.next_tick = next_tick;
                    if !mode.is_highres() {
                        self.run_timers(cpu, now, run);
                    }
                } else if c.tick_stopped && !mode.is_highres() {
                    // Low-res with the tick stopped: this wake-up is for a
                    // timer (at a tick boundary) — run what is due.
                    self.run_timers(cpu, now, run);
                }
                if mode.is_highres() {
                    self.run_timers(cpu, now, run);
                }
                let now = self.now();
                let c = &self.cpus[cpu];
                // An idle CPU whose tick still runs (kept at idle entry)
                // stops it here, in the interrupt (Linux
                // `tick_nohz_irq_exit()`); otherwise, or if a timer keeps
                // it, the next event is programmed as usual.
                // An idle CPU leaves the re-arm — and, with its tick still
                // running, the decision to stop it (Linux
                // `tick_nohz_irq_exit`) — to its idle loop, which makes both
                // before it halts again ([`TickSystem::idle_sleep`]) or as
                // it leaves idle ([`TickSystem::idle_exit`]). Doing it here
                // too would put a device write on the wake-up path before
                // the woken code runs — ~15–25 µs of a trapped register
                // write under QEMU — for an event the idle loop programs
                // anyway (a woken waiter adds its next timer first). The
                // device is disarmed meanwhile (it fired); nothing is lost:
                // the loop runs before any halt.
                if c.idle && mode.is_nohz() && !c.in_broadcast {
                    let c = &mut self.cpus[cpu];
                    c.rearm_pending = true;
                    c.stats.rearms_deferred += 1;
                } else {
                    self.reprogram(cpu, now);
                }
            }
        }
    }

    /// The next event `cpu` needs, by its mode and state.
    pub(crate) fn next_event_for(&mut self, cpu: usize, now: Ktime) -> (Ktime, bool) {
        let max_def = self.tk.max_deferment();
        let watchdog = self.watchdog_deadline(self.cpus[cpu].tick_stopped);
        let c = &mut self.cpus[cpu];
        let mut next = if c.tick_stopped {
            Ktime::MAX
        } else {
            c.next_tick
        };
        let timer = c.timers.next_expiry().unwrap_or(Ktime::MAX);
        if c.mode.is_highres() {
            next = next.min(timer);
        } else if c.tick_stopped {
            next = next.min(self.grid_ceil(timer));
        }
        if cpu == 0 {
            next = next.min(watchdog);
        }
        let c = &self.cpus[cpu];
        let mut capped = false;
        if c.tick_stopped && c.do_timer_last {
            // The last CPU to hold the timekeeping duty must wake before the
            // clocksource can wrap (Linux `timekeeping_max_deferment`).
            let cap = now.saturating_add(max_def);
            if cap < next {
                next = cap;
                capped = true;
            }
        }
        (next, capped)
    }

    /// Programs `cpu`'s next event (local device, or broadcast if the local
    /// one is off in deep idle).
    pub(crate) fn reprogram(&mut self, cpu: usize, now: Ktime) {
        if !self.cpus[cpu].mode.is_oneshot() {
            return;
        }
        self.cpus[cpu].rearm_pending = false;
        let (next, capped) = self.next_event_for(cpu, now);
        self.cpus[cpu].deferment_wakeup = if capped { next } else { Ktime::MAX };
        if self.cpus[cpu].in_broadcast {
            self.bc.next_event[cpu] = next;
            self.program_broadcast(now);
            return;
        }
        let c = &mut self.cpus[cpu];
        let Some((_, ev)) = c.dev.as_mut() else {
            return;
        };
        if c.target == next && !ev.next_event().is_never() && ev.state() == DeviceState::Oneshot {
            return; // unchanged: skip the register write (Linux does too)
        }
        let lead = if c.mode.is_highres() {
            c.advance.lead()
        } else {
            Nanos::ZERO
        };
        let fire_at = if next.is_never() {
            next
        } else {
            next.saturating_sub(lead).max(now)
        };
        c.target = next;
        match ev.program_event(fire_at, now, Expired::Force) {
            Ok(_) => {}
            Err(ProgramError::GaveUp) => {
                // The retry policy raised min delta to its limit (one tick)
                // and the device refused even that: nothing is armed, and
                // the CPU (idle with its tick stopped, perhaps) would sleep
                // until some unrelated interrupt. Arm once more at that
                // largest min delta — the device refused it a moment ago,
                // but a refusal is a race lost (an SMI, a slow write), and
                // one tick late is better than never.
                c.stats.program_failures += 1;
                let retry = now.saturating_add(ev.min_delta());
                c.target = retry;
                if ev.program_event(retry, now, Expired::Force).is_ok() {
                    log::warn!(
                        "tick: cpu{cpu}: {} refused {next}; woken at {retry} instead",
                        ev.name()
                    );
                } else {
                    c.target = Ktime::MAX;
                    log::error!("tick: cpu{cpu}: cannot program {} at all", ev.name());
                }
            }
            Err(_) => {
                c.stats.program_failures += 1;
                c.target = Ktime::MAX;
                log::error!("tick: cpu{cpu}: cannot program {} for {next}", ev.name());
            }
        }
    }

    /// An event programmed `advanced` early (a timer advance) fired up to
    /// that much before its target: spin on the clocksource until the
    /// target, so the handler
    /// runs at the deadline, never before. Bounded by time: at most
    /// [`MAX_TIMER_ADVANCE`] of clocksource time, or [`MAX_STALLED_READS`]
    /// reads in a row that find the clock stopped ([`crate::advance`]).
    /// Returns the time after the spin.
    fn spin_to_target(&mut self, cpu: usize, now: Ktime, advanced: Nanos) -> Ktime {
        let c = &self.cpus[cpu];
        if advanced == Nanos::ZERO || c.target.is_never() || now >= c.target {
            return now;
        }
        if c.target.saturating_since(now) > MAX_TIMER_ADVANCE {
            return now; // not an advanced event (e.g. the device's max delta)
        }
        let end = c.target.min(now.saturating_add(MAX_TIMER_ADVANCE));
        let mut t = now;
        let mut stalled = 0;
        while t < end {
            core::hint::spin_loop();
            let read = self.tk.monotonic();
            if read > t {
                t = read;
                stalled = 0;
            } else {
                stalled += 1;
                if stalled >= MAX_STALLED_READS {
                    self.cpus[cpu].stats.advance_spin_stalls += 1;
                    break;
                }
            }
        }
        let c = &mut self.cpus[cpu];
        c.advance.spun = c.advance.spun.saturating_add(t.saturating_since(now));
        t
    }

    // ----- reporting -------------------------------------------------------

    /// A snapshot of `cpu`.
    pub fn cpu_info(&self, cpu: usize) -> Option<CpuInfo> {
        let c = self.cpus.get(cpu)?;
        Some(CpuInfo {
            device: c.dev.as_ref().map(|(_, e)| e.name()),
            device_state: c.dev.as_ref().map(|(_, e)| e.state()),
            mode: c.mode,
            periodic_reason: c.periodic_reason,
            tick_stopped: c.tick_stopped,
            in_broadcast: c.in_broadcast,
            idle_time: c.idle_time,
            idle_jiffies: c.idle_jiffies,
            timers_queued: c.timers.len(),
            timer_advance: c.advance.lead(),
            advance_delay: c.advance.learned_delay(),
            advance_spun: c.advance.spun,
            stats: c.stats,
        })
    }

    /// The tick mode of `cpu`.
    pub fn mode(&self, cpu: usize) -> TickMode {
        self.cpus.get(cpu).map_or(TickMode::NoDevice, |c| c.mode)
    }

    /// The device id serving as `cpu`'s tick device.
    pub fn cpu_device(&self, cpu: usize) -> Option<DeviceId> {
        self.cpus.get(cpu)?.dev.as_ref().map(|(i, _)| *i)
    }

    /// Programming statistics of `cpu`'s tick device.
    pub fn cpu_device_stats(&self, cpu: usize) -> Option<clockevents::ProgramStats> {
        self.cpus.get(cpu)?.dev.as_ref().map(|(_, e)| e.stats())
    }
}
