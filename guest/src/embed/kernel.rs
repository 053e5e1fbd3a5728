//! The embedding: one [`TickSystem`] for every CPU, in a static with its
//! parts behind their own locks, its interrupt handlers, and the idle loop
//! every CPU runs.
//!
//! ```text
//!   TICK: Tick = TickSystem<'static, &mut [TimerSlot], CPUS, IrqLocks>
//!     each CPU's state, the broadcast state, the device pool, the
//!     timekeeping: an IrqLock each (a spin lock only taken with interrupts off)
//!   LAPIC[cpu], HPET_PERCPU[cpu], IRQ0, COUNTS[cpu], ARMED: atomics, set at
//!     registration or counted by each CPU for itself
//!   REC, IRQ_LOG: spin::Mutex<…>            what the tests read (REC taken
//!                                           per timer run; IRQ_LOG by CPU 0
//!                                           only, its tick events)
//!
//!   CPU c = smp::this_cpu()
//!   LAPIC timer (vector 0xEC) ─┐
//!   per-CPU HPET channel (FSB) ├─► tick.interrupt(dev, c, run) ─► EOI
//!   IRQ0 → I/O APIC → CPU 0    ┘     │  c's own device: c's lock only
//!     (HPET legacy or PIT)           │  run(timer): REC ← (cpu, data, expiry, now)
//!                                    │  IRQ_LOG ← (CPU 0: now, programmed, what it did)
//!                                    └─► CPUs due (broadcast), the owner (forwarded):
//!                                        c itself: tick.ipi(c, run); others: tick IPI
//!   TICK_IPI_VECTOR on CPU c ──► tick.ipi(c, run)
//!   KICK_VECTOR on CPU c     ──► tick.kicked(c, run)  (a timer queued here by
//!                                another CPU, earlier than c's next event)
//!
//!   idle_until(done):   cli; idle_enter(c)
//!                       loop { done? break ; idle_sleep(c, depth)
//!                              sti;hlt  (cpu::idle: atomic)  ── handler runs ──
//!                              serial::drain (what handlers logged); cli; idle_wake(c) }
//!                       idle_exit(c); sti
//! ```
//!
//! No lock is around the tick system: CPUs call into it at the same time,
//! a CPU's interrupt taking its own state's lock (the order and the rest:
//! `tick::lock`). Clock reads take no lock — [`now`] here, and the tick
//! layer's own ([`TickSystem::publish_to`]): the timekeeper publishes its
//! monotonic base to [`PUBLISHED`] after every change, and while the TSC
//! is the clocksource `now` reads it inline (`rdtsc`, the published
//! mult/shift — Linux's vDSO read); on the HPET or the ACPI PM timer it
//! reads that register itself (`PublishedClock::monotonic_from`); only on
//! the PIT's counter 2 (a latch command and two reads, not safe from two
//! CPUs at once) is it read through the timekeeper under its lock.
//!
//! Handlers run with interrupts disabled (interrupt gates), and every lock
//! is taken with them disabled ([`IrqLock`]: the only ways in are [`with`],
//! the handlers and the idle loop), so an interrupt can
//! never find a lock held by its own CPU; another CPU holds one only for
//! one call's length. Nothing here allocates (there is no allocator): the
//! timer storage and the recorder are fixed arrays in statics.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use clockevents::{CpuId, DeviceId, Owner};
use clocksource::{Cycles, InlineRead, Ktime, Nanos, PublishedClock};
use tick::{IdleDepth, Rearm, TickMode, TickSystem, Timer, TimerFn, TimerSlot};

pub use crate::rig::idle::{IrqRecord, IRQ_LOG_LEN};
use crate::{arch::cpu, arch::serial, arch::smp, platform::apic};

/// Timer slots of each CPU (the one-shot test queues 1000 at once).
pub const TIMERS: usize = 1280;
/// Timer runs the recorder keeps.
pub const RECORDS: usize = 1100;
/// CPUs the tick layer keeps state for: every CPU the guest starts.
pub const CPUS: usize = smp::MAX_CPUS;

/// The tick system of this kernel: each CPU's timers in its row of
/// [`timer_storage`], its parts behind [`IrqLock`]s.
pub type Tick = TickSystem<'static, &'static mut [TimerSlot], CPUS, IrqLocks>;

/// A spin lock the tick system's parts sit behind, taken only with
/// interrupts off on the CPU that takes it (Linux `raw_spin_lock` in an
/// interrupts-off section), so that an interrupt handler on this CPU can
/// never find it held by the code it interrupted. That holds by
/// construction here: a [`Kernel`] exists only inside [`with`] (interrupts
/// off), an interrupt handler (an interrupt gate) and the idle loop (which
/// calls in with interrupts off), and bring-up runs with them off. So the
/// lock does not touch the interrupt flag itself: saving and restoring it
/// per lock would cost a trapped `cli` on every lock under a software KVM
/// (tens of µs each, BENCHMARKS.md).
pub struct IrqLock<T>(spin::Mutex<T>);

impl<T> tick::Lock<T> for IrqLock<T> {
    type Guard<'g>
        = spin::MutexGuard<'g, T>
    where
        T: 'g;
    fn new(value: T) -> Self {
        IrqLock(spin::Mutex::new(value))
    }
    fn lock(&self) -> spin::MutexGuard<'_, T> {
        self.0.lock()
    }
    fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

/// [`IrqLock`] as the tick system's lock family.
pub struct IrqLocks;

impl tick::Locks for IrqLocks {
    type Of<T> = IrqLock<T>;
}

/// The CPUs' timer slots: a static, not the stack (8 × 40 KiB).
static STORAGE: spin::Mutex<[[TimerSlot; TIMERS]; CPUS]> =
    spin::Mutex::new([[TimerSlot::EMPTY; TIMERS]; CPUS]);

/// Each CPU's timer storage, for [`TickSystem::new`]: handed out once
/// (`None` on a second call).
pub fn timer_storage() -> Option<[&'static mut [TimerSlot]; CPUS]> {
    let all = spin::MutexGuard::leak(STORAGE.try_lock()?);
    Some(all.each_mut().map(|row| row.as_mut_slice()))
}

/// The calling CPU, as the tick layer names it.
#[inline]
pub fn this_cpu() -> CpuId {
    CpuId::new(smp::this_cpu() as u32)
}

/// The vector of the tick IPI: a broadcast device's event for a CPU in
/// deep idle, or an interrupt forwarded to its owner.
pub const TICK_IPI_VECTOR: u8 = 0x42;
/// The vector of the kick IPI: a timer queued on this CPU from another,
/// earlier than this CPU's next event ([`tick::Kick`]).
pub const KICK_VECTOR: u8 = 0x43;
/// The vector of the wake IPI: it only ends a halt, so that the CPU's loop
/// looks again at what it was told to do ([`crate::embed::aps`]).
pub const WAKE_VECTOR: u8 = 0x44;

fn wake_interrupt(_vector: u8) {
    apic::eoi();
}

/// One timer run as the interrupt path saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The CPU it ran on.
    pub cpu: u32,
    /// The timer's data.
    pub data: u64,
    /// Its expiry.
    pub expires: Ktime,
    /// Monotonic time at the interrupt handler's entry (the probe's base).
    pub entry: Ktime,
    /// Monotonic time when its callback ran (read from the clocksource in
    /// the callback, [`ClockProbe`]): for latency.
    pub at: Ktime,
    /// Monotonic time the tick layer found it expired at (its timekeeper's
    /// reading of the selected clocksource): for "never early". The probe
    /// can read a few ns behind the timekeeper (it takes its base first),
    /// so it must not judge earliness.
    pub found_at: Ktime,
}

/// Timer runs, in the order they happened.
pub struct Recorder {
    fires: [Fire; RECORDS],
    n: usize,
    lost: u64,
}

impl Recorder {
    /// An empty recorder.
    pub const fn new() -> Self {
        Recorder {
            fires: [Fire {
                cpu: 0,
                data: 0,
                expires: Ktime::ZERO,
                entry: Ktime::ZERO,
                at: Ktime::ZERO,
                found_at: Ktime::ZERO,
            }; RECORDS],
            n: 0,
            lost: 0,
        }
    }

    fn record(&mut self, f: Fire) {
        match self.fires.get_mut(self.n) {
            Some(slot) => {
                *slot = f;
                self.n += 1;
            }
            None => self.lost += 1,
        }
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        self.n = 0;
        self.lost = 0;
    }

    /// The runs recorded.
    pub fn fires(&self) -> &[Fire] {
        &self.fires[..self.n]
    }

    /// Runs that did not fit.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether a run of a timer with `data` was recorded.
    pub fn has(&self, data: u64) -> bool {
        self.fires().iter().any(|f| f.data == data)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Which device raises IRQ0 (HPET comparator 0 in legacy replacement mode,
/// or PIT counter 0). The core acknowledges the device
/// (`ClockEventDevice::acknowledge`, inside `TickSystem::interrupt`); the
/// handler only sends the EOI.
#[derive(Clone, Copy)]
pub struct Irq0 {
    /// The device.
    pub dev: DeviceId,
    /// Its name.
    pub name: &'static str,
}

/// One CPU's interrupts, per source, for the demo and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// LAPIC timer interrupts.
    pub lapic: u64,
    /// IRQ0 interrupts (HPET or PIT).
    pub irq0: u64,
    /// Per-CPU HPET channel interrupts (FSB messages).
    pub hpet_percpu: u64,
    /// Interrupts (of either) that were not this CPU's tick event (on CPU
    /// 0: not in the interrupt log).
    pub not_tick: u64,
    /// Tick IPIs taken ([`TICK_IPI_VECTOR`]).
    pub tick_ipis: u64,
    /// Kick IPIs taken ([`KICK_VECTOR`]).
    pub kicks: u64,
    /// Tick IPIs this CPU sent (broadcast, forwarding).
    pub tick_ipis_sent: u64,
    /// Kick IPIs this CPU sent.
    pub kicks_sent: u64,
}

impl IrqCounts {
    /// All timer interrupts and tick IPIs.
    pub fn total(&self) -> u64 {
        self.lapic + self.irq0 + self.hpet_percpu + self.tick_ipis
    }
}

/// One CPU's [`IrqCounts`], counted by its own handlers without a lock.
struct Counts {
    lapic: AtomicU64,
    irq0: AtomicU64,
    hpet_percpu: AtomicU64,
    not_tick: AtomicU64,
    tick_ipis: AtomicU64,
    kicks: AtomicU64,
    tick_ipis_sent: AtomicU64,
    kicks_sent: AtomicU64,
}

impl Counts {
    const fn new() -> Self {
        Counts {
            lapic: AtomicU64::new(0),
            irq0: AtomicU64::new(0),
            hpet_percpu: AtomicU64::new(0),
            not_tick: AtomicU64::new(0),
            tick_ipis: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
            tick_ipis_sent: AtomicU64::new(0),
            kicks_sent: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> IrqCounts {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IrqCounts {
            lapic: r(&self.lapic),
            irq0: r(&self.irq0),
            hpet_percpu: r(&self.hpet_percpu),
            not_tick: r(&self.not_tick),
            tick_ipis: r(&self.tick_ipis),
            kicks: r(&self.kicks),
            tick_ipis_sent: r(&self.tick_ipis_sent),
            kicks_sent: r(&self.kicks_sent),
        }
    }
}

/// Adds one to a count.
fn count(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Each CPU's interrupt counts.
static COUNTS: [Counts; CPUS] = [const { Counts::new() }; CPUS];

/// "No device" in the device-id words.
const NO_DEVICE: usize = usize::MAX;

/// A device id, set once at registration and read by the handlers.
struct DeviceWord(AtomicUsize);

impl DeviceWord {
    const fn new() -> Self {
        DeviceWord(AtomicUsize::new(NO_DEVICE))
    }
    fn get(&self) -> Option<DeviceId> {
        match self.0.load(Ordering::Acquire) {
            NO_DEVICE => None,
            id => Some(DeviceId(id)),
        }
    }
    fn set(&self, id: Option<DeviceId>) {
        self.0
            .store(id.map_or(NO_DEVICE, |d| d.0), Ordering::Release);
    }
}

/// Each CPU's LAPIC timer device.
static LAPIC: [DeviceWord; CPUS] = [const { DeviceWord::new() }; CPUS];
/// Each CPU's per-CPU HPET channel (FSB).
static HPET_PERCPU: [DeviceWord; CPUS] = [const { DeviceWord::new() }; CPUS];
/// The IRQ0 device.
static IRQ0: spin::Once<Option<Irq0>> = spin::Once::new();
/// When CPU 0's event was last (re)programmed (monotonic ns).
static ARMED: AtomicU64 = AtomicU64::new(0);
/// The tick system, shared by every CPU: its parts behind their own
/// [`IrqLock`]s, no lock around it.
static TICK: spin::Once<Tick> = spin::Once::new();

/// What bring-up hands [`install`]: the tick system with the boot CPU's
/// devices registered, and their ids.
pub struct Parts {
    /// The tick layer.
    pub tick: Tick,
    /// The IRQ0 device, if one is registered.
    pub irq0: Option<Irq0>,
    /// The boot CPU's LAPIC timer device, if registered.
    pub lapic: Option<DeviceId>,
    /// The boot CPU's per-CPU HPET channel (FSB), if registered.
    pub hpet_percpu: Option<DeviceId>,
}

impl Parts {
    /// The parts around a tick system whose boot-CPU devices are
    /// registered (`lapic`: CPU 0's LAPIC timer).
    pub fn new(tick: Tick, irq0: Option<Irq0>, lapic: Option<DeviceId>) -> Self {
        Parts {
            tick,
            irq0,
            lapic,
            hpet_percpu: None,
        }
    }
}

/// The kernel as the interrupt path and the tests see it: the shared tick
/// system, and the devices and counts beside it (atomics each CPU writes
/// for itself).
pub struct Kernel {
    /// The tick layer.
    pub tick: &'static Tick,
}

impl Kernel {
    /// CPU `cpu`'s interrupt counts.
    pub fn counts(&self, cpu: usize) -> IrqCounts {
        COUNTS.get(cpu).map(Counts::snapshot).unwrap_or_default()
    }

    /// CPU `cpu`'s LAPIC timer device, if registered.
    pub fn lapic(&self, cpu: usize) -> Option<DeviceId> {
        LAPIC.get(cpu)?.get()
    }

    /// CPU `cpu`'s per-CPU HPET channel, if registered.
    pub fn hpet_percpu(&self, cpu: usize) -> Option<DeviceId> {
        HPET_PERCPU.get(cpu)?.get()
    }

    /// The IRQ0 device, if one is registered.
    pub fn irq0(&self) -> Option<Irq0> {
        IRQ0.get().copied().flatten()
    }

    /// When CPU 0's event was last (re)programmed ([`IrqRecord::armed`]).
    pub fn armed(&self) -> Ktime {
        Ktime::from_nanos(ARMED.load(Ordering::Relaxed))
    }

    /// Records the LAPIC timer (`lapic`) or per-CPU HPET channel
    /// registered on AP `cpu`.
    pub fn set_device(&self, cpu: usize, id: DeviceId, lapic: bool) {
        let words = if lapic { &LAPIC } else { &HPET_PERCPU };
        if let Some(w) = words.get(cpu) {
            w.set(Some(id));
        }
    }

    /// Whether an interrupt of `dev` is `cpu`'s tick event: its tick
    /// device's, or the broadcast device's while it stands in for it (the
    /// device pool asked only then).
    fn is_tick_event(&self, dev: DeviceId, cpu: CpuId) -> bool {
        let tick = self.tick;
        tick.cpu_device(cpu) == Some(dev)
            || (tick.cpu_info(cpu).is_some_and(|i| i.in_broadcast)
                && tick.devices().owner(dev) == Some(Owner::Broadcast))
    }

    /// Sends each CPU of `targets` but `cpu` a tick IPI, and handles
    /// `cpu`'s own share here: a broadcast on behalf of this very CPU needs
    /// no IPI to itself (Linux runs the local handler too).
    fn tick_ipis(&self, cpu: CpuId, targets: clockevents::CpuMask, run: &mut TimerFn<'_>) {
        for t in targets.iter() {
            if t == cpu {
                self.tick.ipi(cpu, run);
            } else if let Some(id) = smp::apic_id(t.index()) {
                apic::send_fixed(id, TICK_IPI_VECTOR);
                count(&COUNTS[cpu.index()].tick_ipis_sent);
            } else {
                log::warn!("kernel: tick IPI for {t}, which is not up");
            }
        }
    }

    /// Sends the kick a remote timer call asked for.
    pub fn kick(&self, from: CpuId, kick: tick::Kick) {
        if let tick::Kick::Ipi(to) = kick {
            if let Some(id) = smp::apic_id(to.index()) {
                apic::send_fixed(id, KICK_VECTOR);
                if let Some(c) = COUNTS.get(from.index()) {
                    count(&c.kicks_sent);
                }
            }
        }
    }

    /// The device interrupt path: the tick layer's handler, with every
    /// expired timer's run recorded, and the interrupt logged when the log
    /// is on — only CPU 0's tick events: the log's records are read
    /// against what CPU 0's device was programmed for, which another
    /// device's interrupt (a broadcast device's not standing in, a device
    /// not in use raising a late or mis-routed interrupt) is not for. Those
    /// are counted in [`IrqCounts::not_tick`] instead. `cpu.index() <
    /// CPUS`. Takes no lock every CPU takes: this CPU's tick state, and on
    /// CPU 0 the interrupt log.
    fn device_interrupt(&self, dev: DeviceId, cpu: CpuId) {
        let is_tick = self.is_tick_event(dev, cpu);
        if !is_tick {
            count(&COUNTS[cpu.index()].not_tick);
        }
        let logged = cpu == CpuId::BOOT;
        let armed = self.armed();
        let probe = ClockProbe::new();
        let programmed = self.tick.programmed_event(cpu);
        let before = self.tick.cpu_info(cpu).map(|i| (i.stats, i.tick_stopped));
        {
            let run = &mut recording(cpu, &probe);
            let ipis = self.tick.interrupt(dev, cpu, run);
            self.tick_ipis(cpu, ipis, run);
        }
        let tick = self.tick;
        let rearmed = tick.programmed_event(cpu) != programmed;
        if is_tick && logged {
            let mut log = IRQ_LOG.lock();
            if log.on {
                let after = tick.cpu_info(cpu).map(|i| i.stats).unwrap_or_default();
                let (b, stopped) = before.unwrap_or_default();
                log.push(IrqRecord {
                    at: probe.base,
                    programmed,
                    stopped,
                    ticks: (after.ticks - b.ticks) as u32,
                    deferment: (after.max_deferment_wakeups - b.max_deferment_wakeups) as u32,
                    timers: (after.timers_fired - b.timers_fired) as u32,
                    armed,
                    jiffies: tick.jiffies().get(),
                });
            }
        }
        if rearmed && logged {
            ARMED.store(probe.now().as_nanos(), Ordering::Relaxed);
        }
    }

    /// Whether the calling CPU has a tick device (else waiting must not
    /// halt).
    pub fn has_tick_device(&self) -> bool {
        self.tick.mode(this_cpu()) != TickMode::NoDevice
    }
}

/// The timer-run function every handler gives the tick layer: each run
/// recorded in [`REC`] (taken per run, with this CPU's tick state held)
/// with its CPU and the probe's times.
fn recording(cpu: CpuId, probe: &ClockProbe) -> impl FnMut(CpuId, Timer, Ktime) -> Rearm + '_ {
    move |_cpu, t: Timer, now: Ktime| {
        let at = probe.now();
        REC.lock().record(Fire {
            cpu: cpu.index() as u32,
            data: t.data,
            expires: t.expires,
            entry: probe.base,
            at,
            found_at: now,
        });
        Rearm::No
    }
}

/// Monotonic time at a handler's entry, and read again in its timer
/// callbacks ([`now`]: lock-free on the TSC, HPET and ACPI PM timer, under
/// the timekeeping lock on the PIT, whose reads must not interleave).
///
/// The base is read before the tick layer reads its own `now`, so the
/// callback's reading is never before the tick layer's: latency from it
/// is never understated, and "early" is judged by the time the tick layer
/// found a timer expired (`Fire::found_at`).
pub struct ClockProbe {
    /// Monotonic time when the probe was made.
    pub base: Ktime,
}

impl ClockProbe {
    /// A probe from now.
    pub fn new() -> Self {
        ClockProbe { base: now() }
    }

    /// Monotonic time now.
    pub fn now(&self) -> Ktime {
        now()
    }
}

impl Default for ClockProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// The interrupt log: off, except while a test measures.
pub struct IrqLog {
    recs: [IrqRecord; IRQ_LOG_LEN],
    n: usize,
    on: bool,
    dropped: u64,
}

impl IrqLog {
    const fn new() -> Self {
        IrqLog {
            recs: [IrqRecord {
                at: Ktime::ZERO,
                programmed: Ktime::ZERO,
                stopped: false,
                ticks: 0,
                deferment: 0,
                timers: 0,
                armed: Ktime::ZERO,
                jiffies: 0,
            }; IRQ_LOG_LEN],
            n: 0,
            on: false,
            dropped: 0,
        }
    }

    fn push(&mut self, r: IrqRecord) {
        match self.recs.get_mut(self.n) {
            Some(slot) => {
                *slot = r;
                self.n += 1;
            }
            None => self.dropped += 1,
        }
    }

    /// Clears the log and turns it on or off.
    pub fn start(&mut self, on: bool) {
        self.n = 0;
        self.dropped = 0;
        self.on = on;
    }

    /// Stops logging, keeping what was logged.
    pub fn stop(&mut self) {
        self.on = false;
    }

    /// The interrupts logged.
    pub fn records(&self) -> &[IrqRecord] {
        &self.recs[..self.n]
    }

    /// Interrupts that did not fit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

static REC: spin::Mutex<Recorder> = spin::Mutex::new(Recorder::new());
static IRQ_LOG: spin::Mutex<IrqLog> = spin::Mutex::new(IrqLog::new());
/// Interrupts that arrived before the kernel was installed.
static EARLY_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The kernel timekeeper's monotonic base, for [`now`] (published by the
/// timekeeper from [`install`] on).
pub static PUBLISHED: PublishedClock = PublishedClock::new();

/// Makes `parts` the kernel the interrupt handlers use, its timekeeper
/// publishing to [`PUBLISHED`] and the tick layer's own clock reads going
/// through it ([`crate::embed::sources::read_lock_free`]). Once: a second
/// call is refused.
pub fn install(parts: Parts) {
    let Parts {
        mut tick,
        irq0,
        lapic,
        hpet_percpu,
    } = parts;
    if TICK.is_completed() {
        log::error!("kernel: installed twice; the second is ignored");
        return;
    }
    tick.publish_to(&PUBLISHED, crate::embed::sources::read_lock_free);
    LAPIC[0].set(lapic);
    HPET_PERCPU[0].set(hpet_percpu);
    IRQ0.call_once(|| irq0);
    TICK.call_once(|| tick);
    for (v, h) in [
        (
            TICK_IPI_VECTOR,
            tick_ipi_interrupt as crate::arch::interrupts::Handler,
        ),
        (KICK_VECTOR, kick_interrupt),
        (WAKE_VECTOR, wake_interrupt),
    ] {
        if let Err(e) = crate::arch::interrupts::register(v, h) {
            log::error!("kernel: IPI vector {v:#04x}: {e}");
        }
    }
}

/// The kernel, once [`install`]ed.
fn kernel() -> Option<Kernel> {
    TICK.get().map(|tick| Kernel { tick })
}

/// Runs `f` on the kernel with interrupts disabled; `None` before
/// [`install`]. No lock is held around `f`: the tick system's calls take
/// their own.
pub fn with<R>(f: impl FnOnce(&mut Kernel) -> R) -> Option<R> {
    cpu::without_interrupts(|| kernel().map(|mut k| f(&mut k)))
}

/// Runs `f` on the timer-run recorder, with interrupts disabled.
pub fn with_rec<R>(f: impl FnOnce(&mut Recorder) -> R) -> R {
    cpu::without_interrupts(|| f(&mut REC.lock()))
}

/// Runs `f` on the interrupt log, with interrupts disabled.
pub fn with_irq_log<R>(f: impl FnOnce(&mut IrqLog) -> R) -> R {
    cpu::without_interrupts(|| f(&mut IRQ_LOG.lock()))
}

/// Interrupts that came before the kernel was installed (dropped, EOI'd).
pub fn early_interrupts() -> u64 {
    EARLY_INTERRUPTS.load(Ordering::Relaxed)
}

/// A device handler's body on the calling CPU: the count `which` picks,
/// then the device `dev` picks, if the kernel is installed.
fn on_device(
    which: fn(&Counts) -> &AtomicU64,
    dev: impl FnOnce(&Kernel, usize) -> Option<DeviceId>,
) {
    let cpu = this_cpu();
    match kernel() {
        Some(k) if cpu.index() < CPUS => {
            count(which(&COUNTS[cpu.index()]));
            if let Some(d) = dev(&k, cpu.index()) {
                k.device_interrupt(d, cpu);
            }
        }
        _ => {
            EARLY_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        }
    }
    end_of_interrupt(cpu);
}

/// The LAPIC timer's handler (vector [`lapic::LOCAL_TIMER_VECTOR`] in
/// builds with the `lapic` feature).
pub fn lapic_timer_interrupt(_vector: u8) {
    on_device(|c| &c.lapic, |k, i| k.lapic(i));
}

/// An IPI's handling on the calling CPU: `f` with the kernel, the CPU and
/// the recording timer-run function.
fn on_ipi(f: impl FnOnce(&Kernel, CpuId, &mut TimerFn<'_>)) {
    let cpu = this_cpu();
    if let Some(k) = kernel().filter(|_| cpu.index() < CPUS) {
        let probe = ClockProbe::new();
        f(&k, cpu, &mut recording(cpu, &probe));
    }
}

/// The per-CPU HPET channels' handler (their FSB messages' vector): the
/// channel of the CPU it arrived on.
pub fn hpet_percpu_interrupt(_vector: u8) {
    on_device(|c| &c.hpet_percpu, |k, i| k.hpet_percpu(i));
}

/// The tick IPI's handler ([`TICK_IPI_VECTOR`]): the broadcast device's
/// event for this CPU, or its own device's interrupt taken elsewhere.
pub fn tick_ipi_interrupt(_vector: u8) {
    on_ipi(|k, cpu, run| {
        count(&COUNTS[cpu.index()].tick_ipis);
        k.tick.ipi(cpu, run);
    });
    end_of_interrupt(this_cpu());
}

/// The kick IPI's handler ([`KICK_VECTOR`]): runs what is due and programs
/// this CPU's own device for the timer another CPU queued.
pub fn kick_interrupt(_vector: u8) {
    on_ipi(|k, cpu, run| {
        count(&COUNTS[cpu.index()].kicks);
        k.tick.kicked(cpu, run);
    });
    apic::eoi();
}

/// A timer handler's last step: the EOI, then (on CPU 0, whose wake-ups
/// the lateness benchmark splits) when it finished ([`HANDLER_EXIT`]).
fn end_of_interrupt(cpu: CpuId) {
    apic::eoi();
    if cpu == CpuId::BOOT {
        HANDLER_EXIT.store(now().as_nanos(), Ordering::Relaxed);
    }
}

/// When the last tick-device handler finished, after its EOI (monotonic
/// ns; 0: none yet). With the handler's entry (`Fire::entry`) and
/// [`IDLE_RESUMED`] it splits a wake-up's lateness into QEMU's delivery,
/// our handler, and our path back to the waiter (`bench-lateness`).
pub static HANDLER_EXIT: AtomicU64 = AtomicU64::new(0);
/// When the idle loop last resumed after its `hlt` (monotonic ns).
pub static IDLE_RESUMED: AtomicU64 = AtomicU64::new(0);

/// IRQ0's handler (HPET comparator 0 in legacy mode, or PIT counter 0,
/// through the I/O APIC).
pub fn irq0_interrupt(_vector: u8) {
    on_device(|c| &c.irq0, |k, _| k.irq0().map(|i| i.dev));
}

/// Monotonic time now (0 before [`install`]): lock-free from
/// [`PUBLISHED`] — inline on the TSC, else on an HPET or ACPI PM timer
/// clocksource by reading its register here
/// ([`sources::read_lock_free`](crate::embed::sources::read_lock_free)) —
/// and only on a source that cannot be read from any CPU (the PIT's
/// counter 2: a latch command, then two reads) through the timekeeper
/// under the lock ([`now_locked`]).
#[inline]
pub fn now() -> Ktime {
    PUBLISHED
        .monotonic_inline(InlineRead::Tsc, || Cycles::new(hw::metal::MetalTsc::read()))
        .or_else(|| PUBLISHED.monotonic_from(crate::embed::sources::read_lock_free))
        .unwrap_or_else(now_locked)
}

/// Monotonic time now through the timekeeper, under the timekeeping lock (0
/// before [`install`]): what [`now`] falls back to.
pub fn now_locked() -> Ktime {
    with(|k| k.tick.now()).unwrap_or(Ktime::ZERO)
}

/// Waits until monotonic time reaches `deadline` with the CPU *busy* from
/// the tick layer's point of view: the tick keeps running (no idle entry),
/// the CPU halts between interrupts. Spins if there is no tick device.
pub fn wait_until(deadline: Ktime) {
    loop {
        cpu::disable_interrupts();
        let Some((now, device)) = kernel().map(|k| (k.tick.now(), k.has_tick_device())) else {
            cpu::enable_interrupts();
            return;
        };
        if now >= deadline {
            cpu::enable_interrupts();
            return;
        }
        if device {
            cpu::idle();
        } else {
            cpu::enable_interrupts();
            core::hint::spin_loop();
        }
        // Interrupts are on: print what the handlers logged.
        serial::drain();
    }
}

/// Halts until the next interrupt (busy from the tick layer's point of
/// view); returns at once if there is no tick device.
pub fn halt_once() {
    cpu::disable_interrupts();
    let device = kernel().is_some_and(|k| k.has_tick_device());
    if device {
        cpu::idle();
    } else {
        cpu::enable_interrupts();
    }
    serial::drain();
}

/// Waits for `d` (see [`wait_until`]).
pub fn wait(d: Nanos) {
    wait_until(now().saturating_add(d))
}

/// Idles the CPU the tick layer's way (NO_HZ where the mode allows) until
/// `done` says so. Returns at once if there is no kernel or no tick device
/// (nothing would wake the CPU).
pub fn idle_until(done: impl FnMut(&mut Kernel) -> bool) {
    idle_until_at(idle_depth(), done)
}

/// Whether the idle loop goes deep (`idle=deep`).
static IDLE_DEEP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sets how deep every CPU's idle loop ([`idle_until`]) halts:
/// [`IdleDepth::Deep`] is a C3 state — a `C3STOP` local device is shut
/// down and the broadcast device wakes the CPU (`idle=deep`).
pub fn set_idle_depth(depth: IdleDepth) {
    IDLE_DEEP.store(depth == IdleDepth::Deep, Ordering::Relaxed);
}

/// How deep the idle loop halts.
pub fn idle_depth() -> IdleDepth {
    if IDLE_DEEP.load(Ordering::Relaxed) {
        IdleDepth::Deep
    } else {
        IdleDepth::Shallow
    }
}

/// The idle loop at `depth` ([`IdleDepth::Deep`]: the local device may be
/// shut down and the broadcast device stand in, as in a C3 state) on the
/// calling CPU, until `done`.
pub fn idle_until_at(depth: IdleDepth, mut done: impl FnMut(&mut Kernel) -> bool) {
    let me = this_cpu();
    cpu::disable_interrupts();
    let Some(mut k) = kernel().filter(|k| k.has_tick_device()) else {
        cpu::enable_interrupts();
        return;
    };
    let _ = k.tick.idle_enter(me);
    loop {
        if done(&mut k) {
            break;
        }
        let before = k.tick.programmed_event(me);
        if let Err(e) = k.tick.idle_sleep(me, depth) {
            // Busy: no broadcast device for a deep halt; a shallow
            // one is what is left (Linux's cpuidle does the same).
            if k.tick.idle_sleep(me, IdleDepth::Shallow).is_err() {
                log::warn!("idle: {me}: idle_sleep refused: {e:?}");
            }
        }
        if me == CpuId::BOOT && k.tick.programmed_event(me) != before {
            ARMED.store(k.tick.now().as_nanos(), Ordering::Relaxed);
        }
        cpu::idle();
        if me == CpuId::BOOT {
            IDLE_RESUMED.store(now().as_nanos(), Ordering::Relaxed);
        }
        // Interrupts are on between the halt and the wake path: print what
        // the handlers logged.
        serial::drain();
        cpu::disable_interrupts();
        k.tick.idle_wake(me);
    }
    k.tick.idle_exit(me);
    cpu::enable_interrupts();
}

/// The learned delay from a timer's callback to the waiting code's resume
/// after `hlt` (handler exit, `iret`, the idle loop's wake path), in ns:
/// what [`sleep_until`] sets its timer early by when timer advance is on.
static RESUME_LEAD: AtomicU64 = AtomicU64::new(0);
/// The most [`RESUME_LEAD`] may learn (a host stall must not make every
/// later sleep spin for long).
pub const RESUME_LEAD_MAX: Nanos = Nanos::from_micros(200);

/// The resume lead learned so far.
pub fn resume_lead() -> Nanos {
    Nanos::from_nanos(RESUME_LEAD.load(Ordering::Relaxed))
}

/// Sleeps (idle, NO_HZ where the mode allows) until `deadline`, with a
/// timer tagged `data`; returns the time the waiting code resumed, never
/// before `deadline`.
///
/// With `advance`, the timer is set [`resume_lead`] early — the delivery
/// delay is the tick layer's timer advance, this covers the path back to
/// the waiter — and the rest is spun here, so the waiter resumes at the
/// deadline rather than that path's length after it. The lead learns the
/// callback→resume delay, bounded by [`RESUME_LEAD_MAX`], with an
/// asymmetric exponential average — up by 1/4 of a longer sample, down by
/// 1/16 of a shorter one — which settles near the 80th percentile rather
/// than the mean: a lead at the mean leaves half the wake-ups late by the
/// path's jitter, a longer one only costs spinning. Returns `None` if the timer could not
/// be queued.
pub fn sleep_until(deadline: Ktime, data: u64, advance: bool) -> Option<Ktime> {
    let lead = if advance { resume_lead() } else { Nanos::ZERO };
    with_rec(|r| r.clear());
    with(|k| {
        k.tick
            .add_timer(this_cpu(), deadline.saturating_sub(lead), data)
    })?
    .ok()?;
    let mut woke = Ktime::ZERO;
    idle_until(|k| {
        let done = with_rec(|r| r.has(data));
        if done {
            woke = k.tick.now();
        }
        done
    });
    if advance {
        if let Some(f) = with_rec(|r| r.fires().iter().find(|f| f.data == data).copied()) {
            let sample = woke.saturating_since(f.at).min(RESUME_LEAD_MAX).as_nanos() as i64;
            let old = RESUME_LEAD.load(Ordering::Relaxed) as i64;
            let step = if sample > old {
                (sample - old) / 4
            } else {
                (sample - old) / 16
            };
            let new = (old + step).clamp(0, RESUME_LEAD_MAX.as_nanos() as i64);
            RESUME_LEAD.store(new as u64, Ordering::Relaxed);
        }
        while woke < deadline {
            core::hint::spin_loop();
            woke = now();
        }
    }
    Some(woke)
}
