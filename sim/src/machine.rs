//! The machine: N virtual CPUs running the real tick layer over simulated
//! devices, in virtual time.
//!
//! ```text
//!   run_until(t):
//!     loop {
//!       (device, due) = earliest next_fire() over all devices (ties: the
//!                       device registered first)
//!       due > t → clock := t, stop
//!       clock := due; device.fire() delivered?
//!         owner CPU c   → [wake c] tick.interrupt(dev, c) [back to sleep]
//!         broadcast     → tick.interrupt(dev, 0) → IPI mask
//!                         → for each c: [wake c] tick.ipi(c) [sleep]
//!     }
//!   wake c   = device of c leaves deep idle; tick.idle_wake(c)
//!   sleep c  = tick.idle_sleep(c, depth); C3STOP device stops if deep
//! ```
//!
//! Every timer run is recorded ([`Fired`]) with the monotonic time the tick
//! layer saw and the true time, so tests assert "never early" exactly.
//!
//! A slow CPU is modelled by what takes true time: clocksource reads
//! ([`SimCounter::set_read_delay`](crate::SimCounter::set_read_delay)),
//! interrupt delivery ([`SimEventDevice::late_by`]) and the work of each
//! timer callback ([`Machine::set_timer_cost`]). An interrupt due while a
//! handler runs is delivered when it returns.

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use clockevents::{CpuId, DeviceId};
use clocksource::{ClockSource, Ktime, Nanos};
use tick::{IdleDepth, IdleError, Rearm, TickConfig, TickSystem, Timer, TimerId, TimerSlot};

use crate::clock::VirtualClock;
use crate::event::{InterruptSource, SimEventDevice};
use crate::trace::{Trace, TraceKind};

/// What a simulated CPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuRun {
    /// Running: the tick runs.
    Busy,
    /// In the idle loop at this depth (the depth actually granted).
    Idle(IdleDepth),
}

/// One timer run, as the machine saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The CPU it ran on.
    pub cpu: usize,
    /// The timer's data.
    pub data: u64,
    /// When it was due.
    pub expires: Ktime,
    /// Monotonic time (the tick layer's clock) it was found expired at.
    pub at: Ktime,
    /// True (virtual) time when it ran.
    pub true_time: Ktime,
}

/// A registered simulated device.
struct Dev {
    id: DeviceId,
    src: &'static dyn InterruptSource,
    /// The CPU whose deep idle stops it (per-CPU C3STOP devices).
    local_cpu: Option<usize>,
    /// Record its interrupts in the trace (a `SimEventDevice` records its
    /// own; a driver over a model does not).
    record: bool,
}

/// N CPUs, their devices, the tick layer and a trace.
pub struct Machine<const CPUS: usize> {
    /// True time.
    pub clock: Arc<VirtualClock>,
    /// Everything that happened.
    pub trace: Trace,
    /// The system under test.
    pub tick: TickSystem<'static, Vec<TimerSlot>, CPUS>,
    devs: Vec<Dev>,
    run: [CpuRun; CPUS],
    fired: Arc<Mutex<Vec<Fired>>>,
    periodic_timers: Arc<Mutex<Vec<(u64, Nanos)>>>,
    timer_cost: Arc<Mutex<Nanos>>,
    deep_refused: u64,
    /// CPUs whose idle loop ends when a timer of theirs runs (a woken
    /// waiter): the interrupt is followed by `idle_exit`, not `idle_sleep`.
    busy_on_timer: [bool; CPUS],
    /// Kick IPIs delivered for cross-CPU timers ([`Machine::add_timer_from`]).
    kicks: u64,
    /// Tick IPIs the broadcast device's interrupts asked for, to CPUs
    /// other than the one that took the interrupt (whose share it handles
    /// in place, as an embedder does).
    broadcast_ipis: u64,
}

/// Timers each simulated CPU can hold.
pub const TIMERS_PER_CPU: usize = 1 << 16;

impl<const CPUS: usize> Machine<CPUS> {
    /// A machine whose timekeeper runs on `cs`.
    pub fn new(
        clock: Arc<VirtualClock>,
        trace: Trace,
        config: TickConfig,
        cs: &'static dyn ClockSource,
    ) -> Self {
        Self::with_timer_capacity(clock, trace, config, cs, TIMERS_PER_CPU)
    }

    /// Like [`Machine::new`] with `capacity` timers per CPU.
    pub fn with_timer_capacity(
        clock: Arc<VirtualClock>,
        trace: Trace,
        config: TickConfig,
        cs: &'static dyn ClockSource,
        capacity: usize,
    ) -> Self {
        let storage = core::array::from_fn(|_| vec![TimerSlot::EMPTY; capacity]);
        let tick = TickSystem::new(config, cs, storage).expect("clocksource usable");
        Machine {
            clock,
            trace,
            tick,
            devs: Vec::new(),
            run: [CpuRun::Busy; CPUS],
            fired: Arc::new(Mutex::new(Vec::new())),
            periodic_timers: Arc::new(Mutex::new(Vec::new())),
            timer_cost: Arc::new(Mutex::new(Nanos::ZERO)),
            deep_refused: 0,
            busy_on_timer: [false; CPUS],
            kicks: 0,
            broadcast_ipis: 0,
        }
    }

    /// From now on, `cpu` leaves idle (`idle_exit`, busy) in the interrupt
    /// that runs one of its timers, as a kernel's idle loop does when the
    /// timer woke a task, instead of halting again.
    pub fn busy_on_timer(&mut self, cpu: usize, on: bool) {
        if let Some(b) = self.busy_on_timer.get_mut(cpu) {
            *b = on;
        }
    }

    /// Registers a simulated event device with the tick layer.
    pub fn add_device(&mut self, dev: &'static SimEventDevice) -> DeviceId {
        let id = self.tick.register_device(dev).expect("device registers");
        self.track(id, dev);
        if let Some(d) = self.devs.last_mut() {
            d.record = false;
        }
        id
    }

    /// Registers a real driver whose interrupts come from `irq` (its device
    /// model): the driver programs the model's registers, the machine
    /// delivers the model's interrupts to the tick layer.
    pub fn add_driver(
        &mut self,
        dev: &'static dyn clockevents::ClockEventDevice,
        irq: &'static dyn InterruptSource,
    ) -> DeviceId {
        let id = self.tick.register_device(dev).expect("device registers");
        self.track(id, irq);
        id
    }

    /// Starts driving the interrupts of a device registered by other means
    /// (e.g. a driver over a register model whose `InterruptSource` is the
    /// model).
    pub fn track(&mut self, id: DeviceId, src: &'static dyn InterruptSource) {
        let local_cpu = self
            .tick
            .devices()
            .info(id)
            .and_then(|d| d.cpus.indices().next().filter(|_| d.cpus.len() == 1));
        self.devs.push(Dev {
            id,
            src,
            local_cpu,
            record: true,
        });
    }

    /// Monotonic time as the tick layer sees it.
    pub fn now(&self) -> Ktime {
        self.tick.now()
    }

    /// Queues a one-shot timer; `data` identifies it in [`Machine::fired`].
    pub fn add_timer(&mut self, cpu: usize, expires: Ktime, data: u64) -> TimerId {
        self.tick
            .add_timer(cpu_id(cpu), expires, data)
            .expect("timer queue has room")
    }

    /// Queues a one-shot timer on `cpu` from CPU `from` (a cross-CPU add):
    /// the tick layer leaves `cpu`'s device alone and, when the timer is
    /// earlier than what `cpu` is programmed for, asks for a kick, which the
    /// machine delivers at once as the IPI would arrive: `cpu` wakes, runs
    /// [`TickSystem::kicked`], and goes back to its loop. Counted in
    /// [`Machine::kicks`].
    pub fn add_timer_from(
        &mut self,
        from: usize,
        cpu: usize,
        expires: Ktime,
        data: u64,
    ) -> TimerId {
        let (id, kick) = self
            .tick
            .add_timer_from(cpu_id(from), cpu_id(cpu), expires, data)
            .expect("timer queue has room");
        if let tick::Kick::Ipi(target) = kick {
            let c = target.index();
            self.kicks += 1;
            self.trace
                .record(self.clock.now(), Some(c), TraceKind::Note("kick IPI"));
            self.wake(c);
            let recorder = self.recorder();
            self.tick
                .kicked(target, &mut |c, t, now| recorder.run(c, t, now));
            self.sleep(c);
        }
        id
    }

    /// Tick IPIs sent so far on behalf of an interrupt taken on another
    /// CPU (the broadcast device's, or a forwarded one), not counting the
    /// interrupted CPU's own share.
    pub fn broadcast_ipis(&self) -> u64 {
        self.broadcast_ipis
    }

    /// Kick IPIs delivered so far ([`Machine::add_timer_from`]).
    pub fn kicks(&self) -> u64 {
        self.kicks
    }

    /// Queues a timer that re-arms itself every `period` (absolute, like a
    /// `clock_nanosleep(TIMER_ABSTIME, next += period)` loop).
    pub fn add_periodic_timer(
        &mut self,
        cpu: usize,
        first: Ktime,
        period: Nanos,
        data: u64,
    ) -> TimerId {
        self.periodic_timers.lock().unwrap().push((data, period));
        self.add_timer(cpu, first, data)
    }

    /// Every timer callback from now on takes `cost` of true time (it
    /// advances the virtual clock, interrupts off, as the handler's work on
    /// a slow CPU would): what the CPU does for a timer before the tick
    /// layer reprograms the device.
    pub fn set_timer_cost(&mut self, cost: Nanos) {
        *self.timer_cost.lock().unwrap() = cost;
    }

    /// Timer runs so far.
    pub fn fired(&self) -> Vec<Fired> {
        self.fired.lock().unwrap().clone()
    }

    /// How many times deep idle was refused (no broadcast device fit).
    pub fn deep_idle_refused(&self) -> u64 {
        self.deep_refused
    }

    /// Puts `cpu` into its idle loop at `depth` (deep may be refused: then
    /// it idles shallow).
    pub fn idle(&mut self, cpu: usize, depth: IdleDepth) {
        self.tick.idle_enter(cpu_id(cpu)).expect("cpu exists");
        self.run[cpu] = CpuRun::Idle(depth);
        self.sleep(cpu);
    }

    /// Takes `cpu` out of idle: the tick restarts.
    pub fn busy(&mut self, cpu: usize) {
        self.wake(cpu);
        self.tick.idle_exit(cpu_id(cpu));
        self.run[cpu] = CpuRun::Busy;
    }

    /// What `cpu` is doing.
    pub fn cpu_run(&self, cpu: usize) -> CpuRun {
        self.run[cpu]
    }

    fn set_local_deep_idle(&self, cpu: usize, deep: bool) {
        for d in self.devs.iter().filter(|d| d.local_cpu == Some(cpu)) {
            d.src.set_deep_idle(deep);
        }
    }

    fn sleep(&mut self, cpu: usize) {
        let CpuRun::Idle(depth) = self.run[cpu] else {
            return;
        };
        match self.tick.idle_sleep(cpu_id(cpu), depth) {
            Ok(s) => {
                if depth == IdleDepth::Deep {
                    self.set_local_deep_idle(cpu, true);
                    let _ = s;
                }
            }
            Err(IdleError::Busy) => {
                self.deep_refused += 1;
                self.trace.record(
                    self.clock.now(),
                    Some(cpu),
                    TraceKind::Note("deep idle refused: no broadcast"),
                );
                self.run[cpu] = CpuRun::Idle(IdleDepth::Shallow);
                let _ = self.tick.idle_sleep(cpu_id(cpu), IdleDepth::Shallow);
            }
            Err(IdleError::NoCpu) => {}
        }
    }

    fn wake(&mut self, cpu: usize) {
        if matches!(self.run[cpu], CpuRun::Idle(_)) {
            self.set_local_deep_idle(cpu, false);
            self.tick.idle_wake(cpu_id(cpu));
        }
    }

    /// Runs the machine until true time `t`.
    pub fn run_until(&mut self, t: Ktime) {
        let mut guard: u64 = 0;
        loop {
            let next = self
                .devs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.src.next_fire().map(|f| (f, i)))
                .min();
            let Some((due, i)) = next.filter(|(due, _)| *due <= t) else {
                self.clock.advance_to(t);
                return;
            };
            self.clock.advance_to(due);
            guard += 1;
            assert!(guard < 50_000_000, "interrupt storm: {guard} interrupts");
            let (id, src, record) = (self.devs[i].id, self.devs[i].src, self.devs[i].record);
            if !src.fire() {
                continue;
            }
            if record {
                let device = self.tick.devices().info(id).map_or("?", |d| d.name);
                let cpu = src.target_cpu();
                self.trace
                    .record(self.clock.now(), cpu, TraceKind::Interrupt { device });
            }
            self.deliver(id, src);
        }
    }

    /// Runs the machine for `d` more true time.
    pub fn run_for(&mut self, d: Nanos) {
        let t = self.clock.now().saturating_add(d);
        self.run_until(t);
    }

    fn deliver(&mut self, id: DeviceId, src: &'static dyn InterruptSource) {
        let owner = self.tick.devices().owner(id);
        let is_broadcast = matches!(owner, Some(clockevents::Owner::Broadcast));
        let cpu = owner
            .and_then(clockevents::Owner::cpu)
            .map_or_else(|| src.target_cpu().unwrap_or(0), CpuId::index);
        if !is_broadcast {
            self.wake(cpu);
        }
        let recorder = self.recorder();
        let ran = self.fired.lock().unwrap().len();
        let ipis = self
            .tick
            .interrupt(id, cpu_id(cpu), &mut |c, t, now| recorder.run(c, t, now));
        if !is_broadcast {
            let woke_a_waiter = self.fired.lock().unwrap().len() > ran;
            if woke_a_waiter && self.busy_on_timer[cpu] && self.run[cpu] != CpuRun::Busy {
                self.tick.idle_exit(cpu_id(cpu));
                self.run[cpu] = CpuRun::Busy;
            } else {
                self.sleep(cpu);
            }
        }
        for c in ipis.indices() {
            if c != cpu {
                self.broadcast_ipis += 1;
            }
            self.wake(c);
            let recorder = self.recorder();
            self.tick
                .ipi(cpu_id(c), &mut |c, t, now| recorder.run(c, t, now));
            self.sleep(c);
        }
    }

    fn recorder(&self) -> Recorder {
        Recorder {
            fired: self.fired.clone(),
            periodic: self.periodic_timers.clone(),
            cost: *self.timer_cost.lock().unwrap(),
            clock: self.clock.clone(),
            trace: self.trace.clone(),
        }
    }
}

/// Runs timers for the machine: records them, re-arms periodic ones.
struct Recorder {
    fired: Arc<Mutex<Vec<Fired>>>,
    periodic: Arc<Mutex<Vec<(u64, Nanos)>>>,
    cost: Nanos,
    clock: Arc<VirtualClock>,
    trace: Trace,
}

impl Recorder {
    /// Runs timer `t` of CPU `cpu`.
    fn run(&self, cpu: CpuId, t: Timer, now: Ktime) -> Rearm {
        let cpu = cpu.index();
        let true_time = self.clock.now();
        self.fired.lock().unwrap().push(Fired {
            cpu,
            data: t.data,
            expires: t.expires,
            at: now,
            true_time,
        });
        self.trace.record(
            true_time,
            Some(cpu),
            TraceKind::TimerFired {
                id: t.data,
                expires: t.expires,
            },
        );
        if self.cost > Nanos::ZERO {
            self.clock.advance_by(self.cost);
        }
        match self
            .periodic
            .lock()
            .unwrap()
            .iter()
            .find(|(d, _)| *d == t.data)
        {
            Some((_, p)) => Rearm::At(t.expires.saturating_add(*p)),
            None => Rearm::No,
        }
    }
}

/// The [`CpuId`] of the machine's CPU `index` (the machine numbers its CPUs
/// by index, as its per-CPU arrays do); an index past `u32::MAX` names a CPU
/// no tick system has.
fn cpu_id(index: usize) -> CpuId {
    CpuId::from_index(index).unwrap_or(CpuId::new(u32::MAX))
}
