//! The embedding: one [`TickSystem`] for every CPU, behind a spin lock in
//! a static, its interrupt handlers, and the idle loop every CPU runs.
//!
//! ```text
//!   KERNEL: spin::Mutex<Option<Kernel>>     touched only with interrupts off
//!     Kernel { tick: TickSystem<'static, &mut [TimerSlot], CPUS>, irq0, lapic[cpu] }
//!   REC, IRQ_LOG: spin::Mutex<…>            what the tests read (taken after KERNEL);
//!                                           IRQ_LOG holds CPU 0's tick events only
//!
//!   CPU c = smp::this_cpu()
//!   LAPIC timer (vector 0xEC) ─┐
//!   IRQ0 → I/O APIC → CPU 0    ├─► lock ─► tick.interrupt(dev, c, run) ─► unlock ─► EOI
//!     (HPET legacy or PIT)    ─┘     │      run(timer): REC ← (cpu, data, expiry, now)
//!                                    │      IRQ_LOG ← (CPU 0: now, programmed, what it did)
//!                                    └─► CPUs due (broadcast), the owner (forwarded):
//!                                        c itself: tick.ipi(c, run); others: tick IPI
//!   TICK_IPI_VECTOR on CPU c ──► lock ─► tick.ipi(c, run)
//!   KICK_VECTOR on CPU c     ──► lock ─► tick.kicked(c, run)  (a timer queued here by
//!                                        another CPU, earlier than c's next event)
//!
//!   idle_until(done):   cli; idle_enter(c)
//!                       loop { done? break ; idle_sleep(c, depth) ; unlock
//!                              sti;hlt  (cpu::idle: atomic)  ── handler runs ──
//!                              serial::drain (what handlers logged); cli; idle_wake(c) }
//!                       idle_exit(c); sti
//! ```
//!
//! Clock reads ([`now`]) take no lock: the timekeeper publishes its
//! monotonic base to [`PUBLISHED`] after every change, and while the TSC
//! is the clocksource `now` reads it inline (`rdtsc`, the published
//! mult/shift — Linux's vDSO read); on the HPET or the ACPI PM timer it
//! reads that register itself (`PublishedClock::monotonic_from`); only on
//! the PIT's counter 2 (a latch command and two reads, not safe from two
//! CPUs at once) does it take the lock and read through the timekeeper.
//!
//! Handlers run with interrupts disabled (interrupt gates), and every other
//! user of the lock disables them first ([`with`]), so an interrupt can
//! never find the lock held by its own CPU; another CPU holds it only for
//! one handler's or one call's length. Nothing here allocates (there is no
//! allocator): the timer storage and the recorder are fixed arrays in
//! statics.

use core::sync::atomic::{AtomicU64, Ordering};

use clockevents::{CpuId, DeviceId, Owner};
use clocksource::{ClockSource, Cycles, CyclesToNs, InlineRead, Ktime, Nanos, PublishedClock};
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
/// [`timer_storage`].
pub type Tick = TickSystem<'static, &'static mut [TimerSlot], CPUS>;

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

/// Everything the interrupt path and the tests share.
pub struct Kernel {
    /// The tick layer.
    pub tick: Tick,
    /// The IRQ0 device, if one is registered.
    pub irq0: Option<Irq0>,
    /// Each CPU's LAPIC timer device, if registered.
    pub lapic: [Option<DeviceId>; CPUS],
    /// Each CPU's per-CPU HPET channel (FSB), if registered.
    pub hpet_percpu: [Option<DeviceId>; CPUS],
    /// Each CPU's interrupts.
    pub counts: [IrqCounts; CPUS],
    /// When CPU 0's event was last (re)programmed, by its interrupt
    /// handler or the idle loop ([`IrqRecord::armed`]).
    pub armed: Ktime,
}

impl Kernel {
    /// A kernel around a tick system whose boot-CPU devices are
    /// registered (`lapic`: CPU 0's LAPIC timer).
    pub fn new(tick: Tick, irq0: Option<Irq0>, lapic: Option<DeviceId>) -> Self {
        let mut per_cpu = [None; CPUS];
        per_cpu[0] = lapic;
        Kernel {
            tick,
            irq0,
            lapic: per_cpu,
            hpet_percpu: [None; CPUS],
            counts: [IrqCounts::default(); CPUS],
            armed: Ktime::ZERO,
        }
    }

    /// Whether an interrupt of `dev` is `cpu`'s tick event: its tick
    /// device's, or the broadcast device's while it stands in for it.
    fn is_tick_event(&self, dev: DeviceId, cpu: CpuId) -> bool {
        let tick = &self.tick;
        tick.cpu_device(cpu) == Some(dev)
            || (tick.cpu_info(cpu).is_some_and(|i| i.in_broadcast)
                && tick.devices().owner(dev) == Some(Owner::Broadcast))
    }

    /// Sends each CPU of `targets` but `cpu` a tick IPI, and handles
    /// `cpu`'s own share here: a broadcast on behalf of this very CPU needs
    /// no IPI to itself (Linux runs the local handler too).
    fn tick_ipis(&mut self, cpu: CpuId, targets: clockevents::CpuMask, run: &mut TimerFn<'_>) {
        for t in targets.iter() {
            if t == cpu {
                self.tick.ipi(cpu, run);
            } else if let Some(id) = smp::apic_id(t.index()) {
                apic::send_fixed(id, TICK_IPI_VECTOR);
                self.counts[cpu.index()].tick_ipis_sent += 1;
            } else {
                log::warn!("kernel: tick IPI for {t}, which is not up");
            }
        }
    }

    /// Sends the kick a remote timer call asked for.
    pub fn kick(&mut self, from: CpuId, kick: tick::Kick) {
        if let tick::Kick::Ipi(to) = kick {
            if let Some(id) = smp::apic_id(to.index()) {
                apic::send_fixed(id, KICK_VECTOR);
                self.counts[from.index()].kicks_sent += 1;
            }
        }
    }

    /// The device interrupt path: the tick layer's handler, with every
    /// expired timer's run recorded, and the interrupt logged when the log
    /// is on — only CPU 0's tick events: the log's records are read
    /// against what CPU 0's device was programmed for, which another
    /// device's interrupt (a broadcast device's not standing in, a device
    /// not in use raising a late or mis-routed interrupt) is not for. Those
    /// are counted in [`IrqCounts::not_tick`] instead.
    fn device_interrupt(&mut self, dev: DeviceId, cpu: CpuId) {
        let is_tick = self.is_tick_event(dev, cpu);
        if !is_tick {
            self.counts[cpu.index()].not_tick += 1;
        }
        let logged = cpu == CpuId::BOOT;
        let armed = self.armed;
        let probe = ClockProbe::new(&self.tick);
        let programmed = self.tick.programmed_event(cpu);
        let before = self.tick.cpu_info(cpu).map(|i| (i.stats, i.tick_stopped));
        {
            let mut rec = REC.lock();
            let run = &mut recording(cpu, &probe, &mut rec);
            let ipis = self.tick.interrupt(dev, cpu, run);
            self.tick_ipis(cpu, ipis, run);
        }
        let tick = &self.tick;
        let rearmed = tick.programmed_event(cpu) != programmed;
        let mut log = IRQ_LOG.lock();
        if log.on && is_tick && logged {
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
        drop(log);
        if rearmed && logged {
            self.armed = probe.now();
        }
    }

    /// Whether the calling CPU has a tick device (else waiting must not
    /// halt).
    pub fn has_tick_device(&self) -> bool {
        self.tick.mode(this_cpu()) != TickMode::NoDevice
    }
}

/// The timer-run function every handler gives the tick layer: each run
/// recorded in `rec` with its CPU and the probe's times.
fn recording<'r>(
    cpu: CpuId,
    probe: &'r ClockProbe,
    rec: &'r mut Recorder,
) -> impl FnMut(CpuId, Timer, Ktime) -> Rearm + 'r {
    move |_cpu, t: Timer, now: Ktime| {
        rec.record(Fire {
            cpu: cpu.index() as u32,
            data: t.data,
            expires: t.expires,
            entry: probe.base,
            at: probe.now(),
            found_at: now,
        });
        Rearm::No
    }
}

/// Monotonic time read in a timer callback, while the tick system is
/// borrowed by its own interrupt handler: the timekeeper's time at the
/// handler's start plus the clocksource's cycles since, converted with the
/// timekeeper's own factor.
///
/// The base is taken as `now` first and the counter second, so the probe
/// can only read *earlier* than the timekeeper would (by the few ns between
/// the two reads): latency from it is never overstated, but "early" is
/// judged by the time the tick layer found a timer expired (`Fire::found_at`).
pub struct ClockProbe {
    cs: &'static dyn ClockSource,
    conv: CyclesToNs,
    /// The timekeeper's time when the probe was made.
    pub base: Ktime,
    cycles: Cycles,
}

impl ClockProbe {
    /// A probe on `tick`'s current clocksource.
    pub fn new(tick: &Tick) -> Self {
        let tk = tick.timekeeper();
        let base = tk.monotonic();
        let cs = tk.clocksource();
        ClockProbe {
            cs,
            conv: tk.params().conv,
            base,
            cycles: cs.read(),
        }
    }

    /// Monotonic time now.
    pub fn now(&self) -> Ktime {
        let d = self.cs.read().wrapping_delta(self.cycles, self.cs.mask());
        self.base.saturating_add(self.conv.cycles_to_ns(d))
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

static KERNEL: spin::Mutex<Option<Kernel>> = spin::Mutex::new(None);
static REC: spin::Mutex<Recorder> = spin::Mutex::new(Recorder::new());
static IRQ_LOG: spin::Mutex<IrqLog> = spin::Mutex::new(IrqLog::new());
/// Interrupts that arrived before the kernel was installed.
static EARLY_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The kernel timekeeper's monotonic base, for [`now`] (published by the
/// timekeeper from [`install`] on).
pub static PUBLISHED: PublishedClock = PublishedClock::new();

/// Makes `k` the kernel the interrupt handlers use, its timekeeper
/// publishing to [`PUBLISHED`].
pub fn install(mut k: Kernel) {
    k.tick.timekeeper_mut().publish_to(&PUBLISHED);
    cpu::without_interrupts(|| *KERNEL.lock() = Some(k));
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

/// Runs `f` on the kernel with interrupts disabled; `None` before
/// [`install`].
pub fn with<R>(f: impl FnOnce(&mut Kernel) -> R) -> Option<R> {
    cpu::without_interrupts(|| KERNEL.lock().as_mut().map(f))
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

/// The LAPIC timer's handler (vector [`lapic::LOCAL_TIMER_VECTOR`] in
/// builds with the `lapic` feature).
pub fn lapic_timer_interrupt(_vector: u8) {
    let cpu = this_cpu();
    {
        let mut g = KERNEL.lock();
        match g.as_mut() {
            Some(k) => {
                k.counts[cpu.index()].lapic += 1;
                if let Some(dev) = k.lapic[cpu.index()] {
                    k.device_interrupt(dev, cpu);
                }
            }
            None => {
                EARLY_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    end_of_interrupt(cpu);
}

/// An IPI's handling on the calling CPU: `f` with the kernel, the CPU and
/// the recording timer-run function, under the lock.
fn on_ipi(f: impl FnOnce(&mut Kernel, CpuId, &mut TimerFn<'_>)) {
    let cpu = this_cpu();
    if let Some(k) = KERNEL.lock().as_mut() {
        let probe = ClockProbe::new(&k.tick);
        let mut rec = REC.lock();
        f(k, cpu, &mut recording(cpu, &probe, &mut rec));
    }
}

/// The per-CPU HPET channels' handler (their FSB messages' vector): the
/// channel of the CPU it arrived on.
pub fn hpet_percpu_interrupt(_vector: u8) {
    let cpu = this_cpu();
    if let Some(k) = KERNEL.lock().as_mut() {
        k.counts[cpu.index()].hpet_percpu += 1;
        if let Some(dev) = k.hpet_percpu[cpu.index()] {
            k.device_interrupt(dev, cpu);
        }
    }
    end_of_interrupt(cpu);
}

/// The tick IPI's handler ([`TICK_IPI_VECTOR`]): the broadcast device's
/// event for this CPU, or its own device's interrupt taken elsewhere.
pub fn tick_ipi_interrupt(_vector: u8) {
    on_ipi(|k, cpu, run| {
        k.counts[cpu.index()].tick_ipis += 1;
        k.tick.ipi(cpu, run);
    });
    end_of_interrupt(this_cpu());
}

/// The kick IPI's handler ([`KICK_VECTOR`]): runs what is due and programs
/// this CPU's own device for the timer another CPU queued.
pub fn kick_interrupt(_vector: u8) {
    on_ipi(|k, cpu, run| {
        k.counts[cpu.index()].kicks += 1;
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
    let cpu = this_cpu();
    {
        let mut g = KERNEL.lock();
        match g.as_mut() {
            Some(k) => {
                k.counts[cpu.index()].irq0 += 1;
                if let Some(irq0) = k.irq0 {
                    k.device_interrupt(irq0.dev, cpu);
                }
            }
            None => {
                EARLY_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    end_of_interrupt(cpu);
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

/// Monotonic time now through the timekeeper, under the kernel lock (0
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
        let Some((now, device)) = KERNEL
            .lock()
            .as_ref()
            .map(|k| (k.tick.now(), k.has_tick_device()))
        else {
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
    let device = KERNEL.lock().as_ref().is_some_and(|k| k.has_tick_device());
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
    {
        let mut g = KERNEL.lock();
        let Some(k) = g.as_mut().filter(|k| k.has_tick_device()) else {
            drop(g);
            cpu::enable_interrupts();
            return;
        };
        let _ = k.tick.idle_enter(me);
    }
    loop {
        {
            let mut g = KERNEL.lock();
            let Some(k) = g.as_mut() else { break };
            if done(k) {
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
                k.armed = k.tick.now();
            }
        }
        cpu::idle();
        if me == CpuId::BOOT {
            IDLE_RESUMED.store(now().as_nanos(), Ordering::Relaxed);
        }
        // Interrupts are on between the halt and the wake path: print what
        // the handlers logged.
        serial::drain();
        cpu::disable_interrupts();
        if let Some(k) = KERNEL.lock().as_mut() {
            k.tick.idle_wake(me);
        }
    }
    if let Some(k) = KERNEL.lock().as_mut() {
        k.tick.idle_exit(me);
    }
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
