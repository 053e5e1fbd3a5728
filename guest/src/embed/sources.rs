//! Bringing up the time sources the firmware describes and the build
//! includes, and the tick system on top of them.
//!
//! ```text
//!   Platform (ACPI) + Options (command line) + Cargo features
//!     │
//!     ├─ local APIC on (apic::init), I/O APICs found and fully masked
//!     │
//!     ├─ clocksources ─ hpet      [feature hpet, HPET table, no hpet=disable]: probe
//!     │                 acpi_pm   [feature acpi_pm, FADT PM_TMR_BLK]: must count
//!     │                 pit-ch2   [feature pit]: must count
//!     │                 tsc       [feature tsc]: CPUID rate, else calibrated
//!     │                           against the reference = hpet > acpi_pm > pit-ch2
//!     │                           (the first that came up: without acpi_pm built,
//!     │                           hpet > pit-ch2);
//!     │                           no reference: CPUID's rate, UNVERIFIED (boot table,
//!     │                           log, CONFIG reference=none); no rate either: bring-up
//!     │                           fails, saying so (BringUpError::NoClock)
//!     │
//!     ├─ TickSystem::new(hz/nohz/highres, first clocksource, storage)
//!     │    clocksource= override, then the other clocksources registered
//!     │
//!     └─ event devices ─ lapic     [feature lapic, no lapic=notimer]: rate from
//!                       │           CPUID or calibrated against the reference
//!                       │           (without one: against the TSC);
//!                       │           TSC-deadline if built, offered and the TSC rate known
//!                       ├ hpet      [feature hpet, not clockevent=pit]: comparator 0,
//!                       │           LegacyReplacement → IRQ0
//!                       └ pit       [feature pit, no HPET event device]: counter 0 → IRQ0
//!                       IRQ0's GSI from the MADT override, programmed in the I/O APIC;
//!                       registered with the clockevent= device first (so the
//!                       override can win), then lapic, hpet, pit
//! ```
//!
//! HPET LegacyReplacement takes IRQ0 from the PIT (IA-PC HPET 1.0a §2.3.9.1:
//! the PIT's interrupt is no longer delivered), so the HPET and the PIT are
//! never both event devices: as in Linux, the PIT is the event device only
//! without an HPET one, and is stopped otherwise (`Pit::stop_channel0`, so
//! QEMU stops emulating its 18.2 Hz firmware tick).
//!
//! Drivers live in `spin::Once` statics (`'static`, built once); the tick
//! system holds `&'static dyn` references to them.

use clockevents::{ClockEventDevice, CpuId, DeviceId};
use clocksource::{ClockSource, Hertz, Nanos};
use hw::metal::MetalMmio;
use tick::{TickConfig, TickSystem};

use crate::arch::cmdline::Options;
use crate::embed::kernel::{self, Irq0, Kernel, Tick};
use crate::platform::apic::{self, LocalApic};
use crate::platform::firmware::Platform;
use crate::platform::ioapic::{IoApic, RedirectionEntry};
use crate::rig::result::TextBuf;
use crate::{arch::interrupts, platform::firmware};

/// A short note for the boot table.
pub type Note = TextBuf<120>;

/// A registered clocksource and how its rate was obtained.
#[derive(Debug, Clone)]
pub struct SourceNote {
    /// Its name.
    pub name: &'static str,
    /// How its rate is known.
    pub how: Note,
}

/// A registered event device, how its rate was obtained, its interrupt.
#[derive(Debug, Clone)]
pub struct DeviceNote {
    /// Its name.
    pub name: &'static str,
    /// How its rate is known.
    pub how: Note,
    /// How its interrupt arrives.
    pub irq: Note,
}

/// What bring-up found, for the boot table and the `CONFIG` line.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Clocksources registered.
    pub sources: [Option<SourceNote>; 6],
    /// Event devices registered.
    pub devices: [Option<DeviceNote>; 4],
    /// Sources not used, and why.
    pub skipped: [Option<Note>; 10],
    /// The local APIC's mode.
    pub apic_mode: Option<apic::Mode>,
    /// The I/O APIC serving IRQ0: index, id, address, version, inputs.
    pub ioapic: Option<(u8, u64, u8, u32)>,
    /// IRQ0: GSI, vector, and the device on it.
    pub irq0: Option<(u32, u8, &'static str)>,
    /// `clockevent=` as resolved to a device name, and whether it exists.
    pub clockevent: Option<(&'static str, bool)>,
    /// `clocksource=` as resolved, and whether it exists.
    pub clocksource: Option<(&'static str, bool)>,
    /// The LAPIC timer's rate error bound, if calibrated (ppm).
    pub lapic_error_ppm: Option<u32>,
    /// The TSC's rate, its error bound (ppm; 0 if CPUID states it).
    pub tsc: Option<(Hertz, u32)>,
    /// The calibration reference (`None`: no HPET, PM timer or PIT — the
    /// TSC's rate, if any, is CPUID's, unverified).
    pub reference: Option<&'static str>,
}

impl Inventory {
    fn skip(&mut self, args: core::fmt::Arguments<'_>) {
        log::info!("sources: {args}");
        if let Some(s) = self.skipped.iter_mut().find(|s| s.is_none()) {
            *s = Some(Note::format(args));
        }
    }

    #[cfg(any(
        feature = "hpet",
        feature = "pit",
        feature = "tsc",
        feature = "acpi_pm"
    ))]
    fn source(&mut self, name: &'static str, how: core::fmt::Arguments<'_>) {
        if let Some(s) = self.sources.iter_mut().find(|s| s.is_none()) {
            *s = Some(SourceNote {
                name,
                how: Note::format(how),
            });
        }
    }

    #[cfg(any(feature = "hpet", feature = "lapic", feature = "pit"))]
    fn device(
        &mut self,
        name: &'static str,
        how: core::fmt::Arguments<'_>,
        irq: core::fmt::Arguments<'_>,
    ) {
        if let Some(s) = self.devices.iter_mut().find(|s| s.is_none()) {
            *s = Some(DeviceNote {
                name,
                how: Note::format(how),
                irq: Note::format(irq),
            });
        }
    }

    /// The note of the clocksource `name`.
    pub fn source_note(&self, name: &str) -> Option<&SourceNote> {
        self.sources.iter().flatten().find(|s| s.name == name)
    }

    /// The note of the event device `name`.
    pub fn device_note(&self, name: &str) -> Option<&DeviceNote> {
        self.devices.iter().flatten().find(|s| s.name == name)
    }
}

/// Why the system could not be brought up at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BringUpError {
    /// No local APIC (nothing can deliver interrupts).
    Apic(apic::ApicError),
    /// No clocksource: no HPET, no ACPI PM timer and no PIT came up (the
    /// reasons are logged as each was skipped), and the TSC neither.
    NoClock(NoTsc),
    /// The tick system refused its configuration or first clocksource.
    Tick(tick::RegisterError),
    /// Bring-up ran before: the timer storage is given out once.
    Twice,
}

/// Why the TSC did not come up when nothing else did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTsc {
    /// Built without the `tsc` feature.
    NotBuilt,
    /// There is a TSC, but nothing to know its rate from: no reference
    /// clock to calibrate it against, and no CPUID leaf states it.
    NoRate,
    /// CPUID says there is no TSC.
    NotPresent,
    /// It did not come up for another reason (logged).
    Other,
}

impl core::fmt::Display for BringUpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NONE: &str = "no HPET, no PM timer, no PIT";
        match self {
            BringUpError::Apic(e) => write!(f, "local APIC: {e}"),
            BringUpError::NoClock(NoTsc::NoRate) => write!(
                f,
                "no reference clock to calibrate the TSC against: {NONE}; \
                 CPUID 0x15/0x16 and the hypervisor leaf 0x40000010 give no rate"
            ),
            BringUpError::NoClock(NoTsc::NotBuilt) => {
                write!(
                    f,
                    "no clocksource: {NONE}, and the TSC is not built (feature tsc off)"
                )
            }
            BringUpError::NoClock(NoTsc::NotPresent) => {
                write!(f, "no clocksource: {NONE}, and CPUID says there is no TSC")
            }
            BringUpError::NoClock(NoTsc::Other) => {
                write!(
                    f,
                    "no clocksource: {NONE}, and the TSC did not come up (logged)"
                )
            }
            BringUpError::Tick(e) => write!(f, "tick system: {e:?}"),
            BringUpError::Twice => f.write_str("bring-up ran twice"),
        }
    }
}

// ---- statics: the drivers, built once ---------------------------------------

static IOAPICS: [spin::Once<spin::Mutex<IoApic<MetalMmio>>>; firmware::MAX_IOAPICS] =
    [const { spin::Once::new() }; firmware::MAX_IOAPICS];

/// The HPET's drivers.
#[cfg(feature = "hpet")]
mod hpet_src {
    use super::*;
    pub static MMIO: spin::Once<MetalMmio> = spin::Once::new();
    pub static INFO: spin::Once<hpet::HpetInfo> = spin::Once::new();
    pub static CS: spin::Once<hpet::HpetClockSource<'static, MetalMmio>> = spin::Once::new();
    pub static CE: spin::Once<hpet::HpetClockEvent<'static, MetalMmio>> = spin::Once::new();
    /// The per-CPU (FSB) channels, by CPU index.
    pub static PERCPU: [spin::Once<hpet::HpetClockEvent<'static, MetalMmio>>;
        crate::embed::kernel::CPUS] = [const { spin::Once::new() }; crate::embed::kernel::CPUS];
}

/// The first HPET comparator used as a per-CPU channel: LegacyReplacement
/// routes comparators 0 (IRQ0) and 1 (IRQ8) whatever their FSB setting
/// (IA-PC HPET spec §2.3.9.2.2; QEMU `hw/timer/hpet.c` does the same), so
/// per-CPU channels start at 2 (Linux `arch/x86/kernel/hpet.c` likewise
/// leaves the legacy channels out of its MSI channels).
pub const HPET_PERCPU_FIRST: u8 = 2;

/// The vector every per-CPU HPET channel's FSB message carries (each
/// goes to its own CPU, whose handler finds its channel by CPU).
pub const HPET_PERCPU_VECTOR: u8 = 0x45;

/// Per-CPU HPET channels (Linux's `hpet_msi`), where the LAPIC timer
/// stops in deep idle (no ARAT, or `idle=deep`) and the comparators can
/// deliver by FSB (QEMU: `-global hpet.msi=on`): comparator
/// [`HPET_PERCPU_FIRST`] + i serves CPU i, its message addressed to CPU
/// i's APIC ID (the MADT's order, as `arch::smp` numbers the CPUs). Rated
/// 110, above such a LAPIC timer (100): those CPUs need no broadcast.
fn hpet_percpu_up(
    platform: &Platform,
    lapic: &'static LocalApic,
    lapic_c3stop: bool,
    inv: &mut Inventory,
) -> [Option<EventDev>; kernel::CPUS] {
    #[cfg(feature = "hpet")]
    {
        let mut out = [None; kernel::CPUS];
        let (Some(mmio), Some(info)) = (hpet_src::MMIO.get(), hpet_src::INFO.get()) else {
            return out;
        };
        if !lapic_c3stop {
            return out;
        }
        let bsp = lapic.current_id();
        let ids = core::iter::once(bsp).chain(
            platform
                .apic_ids
                .as_slice()
                .iter()
                .copied()
                .filter(|&id| id != bsp),
        );
        let mut made = 0;
        for (cpu, id) in ids.enumerate().take(kernel::CPUS) {
            let Ok(n) = u8::try_from(cpu).map(|c| c.saturating_add(HPET_PERCPU_FIRST)) else {
                break;
            };
            if n >= info.comparators || id > 0xFF {
                break;
            }
            // Intel SDM Vol. 3A §11.11.1: destination APIC ID in bits
            // 19:12, physical mode, no redirection hint; the data is the
            // vector, fixed delivery, edge.
            let route = hpet::Route::Fsb {
                address: 0xFEE0_0000 | id << 12,
                data: u32::from(HPET_PERCPU_VECTOR),
            };
            let mask = clockevents::CpuMask::single(CpuId::new(cpu as u32));
            match hpet::HpetClockEvent::comparator(mmio, info, n, route, mask) {
                Ok(ce) => {
                    let ce = hpet_src::PERCPU[cpu].call_once(|| ce);
                    inv.device(
                        ce.info().name,
                        format_args!("GCAP_ID period {} fs (exact)", info.period.as_fs()),
                        format_args!(
                            "comparator {n}, FSB → APIC ID {id} vector {HPET_PERCPU_VECTOR:#04x}"
                        ),
                    );
                    out[cpu] = Some(ce as EventDev);
                    made += 1;
                }
                Err(e) => {
                    inv.skip(format_args!("hpet per-CPU channels: comparator {n}: {e}"));
                    break;
                }
            }
        }
        if made == 0 && info.comparators > HPET_PERCPU_FIRST {
            log::info!("hpet: no per-CPU channels (no FSB delivery)");
        }
        out
    }
    #[cfg(not(feature = "hpet"))]
    {
        let _ = (platform, lapic, lapic_c3stop, inv);
        [None; kernel::CPUS]
    }
}

/// CPU `index`'s per-CPU HPET channel, set up at bring-up for that CPU
/// ([`hpet_percpu_up`]), for the CPU to register as it comes up.
pub fn ap_hpet_channel(index: usize) -> Option<&'static dyn ClockEventDevice> {
    #[cfg(feature = "hpet")]
    return hpet_src::PERCPU
        .get(index)?
        .get()
        .map(|c| c as &dyn ClockEventDevice);
    #[cfg(not(feature = "hpet"))]
    {
        let _ = index;
        None
    }
}

/// The PIT's drivers.
#[cfg(feature = "pit")]
mod pit_src {
    use hw::metal::MetalPorts;
    // SAFETY: the guest owns the PIT's ports (0x40–0x43) and port 0x61;
    // only the pit crate's drivers, built on this value, touch them.
    pub static PORTS: MetalPorts = unsafe { MetalPorts::new() };
    pub static CS: spin::Once<pit::PitClockSource<'static>> = spin::Once::new();
    pub static CE: spin::Once<pit::PitClockEvent<'static>> = spin::Once::new();
    pub fn pit() -> pit::Pit<'static> {
        pit::Pit::new(&PORTS)
    }
}

/// The ACPI PM timer's driver.
#[cfg(feature = "acpi_pm")]
mod acpi_pm_src {
    use hw::metal::MetalPorts;
    // SAFETY: the guest owns the PM timer's port (the FADT's PM_TMR_BLK):
    // reading it has no side effect, and only the acpi_pm crate's driver,
    // built on this value, touches it.
    pub static PORTS: MetalPorts = unsafe { MetalPorts::new() };
    pub static CS: spin::Once<acpi_pm::AcpiPmClockSource<'static, MetalPorts>> = spin::Once::new();
}

/// The TSC's driver.
#[cfg(feature = "tsc")]
mod tsc_src {
    use hw::metal::MetalTsc;
    pub static CS: spin::Once<tsc::TscClockSource<MetalTsc>> = spin::Once::new();
}

/// Each CPU's dummy tick device under `lapic=notimer` on SMP: it programs
/// nothing, and its CPU takes its tick from the broadcast device (HPET,
/// else PIT), as Linux does with the LAPIC clockevent marked
/// `CLOCK_EVT_FEAT_DUMMY` (arch/x86/kernel/apic/apic.c,
/// `setup_APIC_timer`; kernel/time/tick-broadcast.c,
/// `tick_device_uses_broadcast`). On one CPU the IRQ0 device stays the
/// tick device itself, as before.
pub struct DummyTimer {
    cpu: CpuId,
}

/// The dummies' names, by CPU index.
const DUMMY_NAMES: [&str; kernel::CPUS] = [
    "lapic-dummy0",
    "lapic-dummy1",
    "lapic-dummy2",
    "lapic-dummy3",
    "lapic-dummy4",
    "lapic-dummy5",
    "lapic-dummy6",
    "lapic-dummy7",
];

impl ClockEventDevice for DummyTimer {
    fn info(&self) -> clockevents::DeviceInfo {
        // Never programmed: the range only has to be valid.
        let programming = clockevents::Programming::Cycles {
            frequency: Hertz::new(1_000_000_000),
            min_delta: clocksource::Cycles::new(1_000),
            max_delta: clocksource::Cycles::new(u32::MAX as u64),
        };
        let name = DUMMY_NAMES
            .get(self.cpu.index())
            .copied()
            .unwrap_or("lapic-dummy");
        clockevents::DeviceInfo::new(name, programming, clockevents::CpuMask::single(self.cpu))
            .with_features(clockevents::Features::DUMMY | clockevents::Features::PERCPU)
            .with_rating(100)
    }
    fn set_state_shutdown(&self) -> Result<(), clockevents::DeviceError> {
        Ok(())
    }
    fn set_state_periodic(&self, _period: Nanos) -> Result<(), clockevents::DeviceError> {
        Ok(())
    }
    fn set_state_oneshot(&self) -> Result<(), clockevents::DeviceError> {
        Ok(())
    }
    fn program(&self, _next: clockevents::NextEvent) -> Result<(), clockevents::DeviceError> {
        Ok(())
    }
}

/// The dummies, by CPU index.
static DUMMIES: [DummyTimer; kernel::CPUS] = {
    let mut d = [const { DummyTimer { cpu: CpuId::BOOT } }; kernel::CPUS];
    let mut i = 0;
    while i < kernel::CPUS {
        d[i] = DummyTimer {
            cpu: CpuId::new(i as u32),
        };
        i += 1;
    }
    d
};

/// Whether every CPU ticks on a dummy (`lapic=notimer` with more than one
/// CPU in the MADT).
static ON_DUMMIES: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// CPU `index`'s dummy, if the CPUs tick on dummies.
fn dummy_timer(index: usize) -> Option<&'static dyn ClockEventDevice> {
    if !ON_DUMMIES.load(core::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    DUMMIES.get(index).map(|d| d as &dyn ClockEventDevice)
}

/// The LAPIC timer's driver.
#[cfg(feature = "lapic")]
mod lapic_src {
    use hw::metal::MetalTsc;
    pub static TSC: MetalTsc = MetalTsc;
    pub static TIMER: spin::Once<lapic::LapicTimer<'static>> = spin::Once::new();
    /// What CPU 0's timer was built from, for the APs' (each CPU's APIC
    /// has the boot CPU's CPUID facts and bus rate: one calibration).
    pub static TEMPLATE: spin::Once<Template> = spin::Once::new();
    /// The APs' timers, by CPU index.
    pub static AP_TIMERS: [spin::Once<lapic::LapicTimer<'static>>; crate::embed::kernel::CPUS] =
        [const { spin::Once::new() }; crate::embed::kernel::CPUS];
    /// See [`TEMPLATE`].
    #[derive(Clone, Copy)]
    pub struct Template {
        pub caps: lapic::Capabilities,
        pub freq: Option<lapic::TimerFrequency>,
        pub tsc: Option<(clocksource::Hertz, u32)>,
    }
}

/// CPU `index`'s LAPIC timer, built on that CPU (an AP, as it comes up)
/// from what CPU 0's was built from; `None` without one on CPU 0 (no
/// timer, `lapic=notimer`, not built) or if this CPU's APIC refuses it.
pub fn ap_lapic_timer(index: usize) -> Option<&'static dyn ClockEventDevice> {
    if let Some(d) = dummy_timer(index) {
        return Some(d);
    }
    #[cfg(feature = "lapic")]
    {
        let t = lapic_src::TEMPLATE.get()?;
        let lapic = apic::get()?;
        let slot = lapic_src::AP_TIMERS.get(index)?;
        let mut cfg = lapic::TimerConfig::new(index, lapic.access(), t.caps, t.freq);
        if let Some((hz, error_ppm)) = t.tsc {
            cfg = cfg.with_deadline(lapic::DeadlineClock {
                msr: lapic.msrs(),
                tsc: &lapic_src::TSC,
                tsc_frequency: hz,
                error_ppm,
            });
        }
        match lapic::LapicTimer::new(cfg) {
            Ok(timer) => Some(slot.call_once(|| timer) as &dyn ClockEventDevice),
            Err(e) => {
                log::warn!("lapic: cpu{index}: no timer: {e}");
                None
            }
        }
    }
    #[cfg(not(feature = "lapic"))]
    {
        let _ = index;
        None
    }
}

/// The HPET clocksource, if it was brought up (for the tests).
pub fn hpet_clocksource() -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "hpet")]
    if let Some(cs) = hpet_src::CS.get() {
        return Some(cs);
    }
    None
}

/// The PIT counter-2 clocksource, if it was brought up.
pub fn pit_clocksource() -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "pit")]
    if let Some(cs) = pit_src::CS.get() {
        return Some(cs);
    }
    None
}

/// The TSC clocksource, if it was brought up.
pub fn tsc_clocksource() -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "tsc")]
    if let Some(cs) = tsc_src::CS.get() {
        return Some(cs);
    }
    None
}

/// The ACPI PM timer clocksource, if it was brought up.
pub fn acpi_pm_clocksource() -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "acpi_pm")]
    if let Some(cs) = acpi_pm_src::CS.get() {
        return Some(cs);
    }
    None
}

/// The counter of the clocksource [`clocksource::source_key`] names, if it
/// is one whose read is safe from any CPU without a lock (a register read:
/// HPET, ACPI PM timer; the TSC, an instruction), for [`kernel::now`]'s
/// lock-free path and the tick layer's own
/// ([`tick::TickSystem::publish_to`]). Not the PIT's counter 2: a latch
/// command, then two reads, which two CPUs must not interleave.
pub fn read_lock_free(key: u64) -> Option<clocksource::Cycles> {
    [hpet_clocksource(), acpi_pm_clocksource(), tsc_clocksource()]
        .into_iter()
        .flatten()
        .find(|cs| clocksource::source_key(*cs) == key)
        .map(|cs| cs.read())
}

/// Every clocksource brought up, with its calibration error bound in ppm
/// (0: the rate is exact by construction or stated by CPUID).
pub fn all_clocksources(inv: &Inventory) -> [Option<(&'static dyn ClockSource, u32)>; 4] {
    [
        hpet_clocksource().map(|c| (c, 0)),
        acpi_pm_clocksource().map(|c| (c, 0)),
        pit_clocksource().map(|c| (c, 0)),
        tsc_clocksource().map(|c| (c, inv.tsc.map_or(0, |(_, e)| e))),
    ]
}

/// Resolves a `clocksource=` name: `pit` means `pit-ch2`.
pub fn clocksource_alias(name: &str) -> &str {
    match name {
        "pit" => "pit-ch2",
        "acpi-pm" | "pm" => "acpi_pm",
        other => other,
    }
}

/// Brings everything up (see the module docs) and returns the kernel to
/// install. Call with interrupts disabled.
pub fn bring_up(
    platform: &Platform,
    opts: &Options<'_>,
) -> Result<(kernel::Parts, Inventory), BringUpError> {
    let mut inv = Inventory::default();
    let lapic = apic::init(platform.lapic_base).map_err(BringUpError::Apic)?;
    inv.apic_mode = Some(lapic.mode());
    init_ioapics(platform, &mut inv);
    let clocks = clocksources_up(platform, opts, &mut inv);
    let mut tick = tick_system_up(&clocks, opts, &mut inv)?;
    let devices = event_devices_up(platform, lapic, &clocks, opts, &mut inv);
    let (lapic_id, irq0) = register_devices(&mut tick, &devices, opts, &mut inv);
    if lapic_id.is_some() {
        let v = lapic_timer_vector();
        if let Err(e) = interrupts::register(v, kernel::lapic_timer_interrupt) {
            log::error!("sources: LAPIC timer vector {v:#04x}: {e}");
        }
    }
    let lapic_c3stop = devices
        .lapic
        .is_some_and(|d| d.info().features.contains(clockevents::Features::C3STOP));
    // Each CPU's channel is registered by that CPU (an AP as it comes up,
    // `ap_hpet_channel`): registering makes it the CPU's tick device and
    // programs it, and an AP still waiting for its SIPI would drop the
    // message, leaving its device armed for an event that never comes.
    let percpu = hpet_percpu_up(platform, lapic, lapic_c3stop, &mut inv);
    let mut k = kernel::Parts::new(tick, irq0, lapic_id);
    if let Some(dev) = percpu[0] {
        match k.tick.register_device(dev) {
            Ok(id) => k.hpet_percpu = Some(id),
            Err(e) => inv.skip(format_args!(
                "{}: refused by the tick layer: {e:?}",
                dev.info().name
            )),
        }
    }
    if percpu.iter().any(Option::is_some) {
        if let Err(e) = interrupts::register(HPET_PERCPU_VECTOR, kernel::hpet_percpu_interrupt) {
            log::error!("sources: per-CPU HPET vector {HPET_PERCPU_VECTOR:#04x}: {e}");
        }
    }
    Ok((k, inv))
}

/// The clocksources found, before the tick system exists.
struct Clocks {
    tsc: Result<&'static dyn ClockSource, NoTsc>,
    hpet: Option<&'static dyn ClockSource>,
    pm: Option<&'static dyn ClockSource>,
    pit: Option<&'static dyn ClockSource>,
    /// What the TSC and the LAPIC timer are calibrated against: HPET, else
    /// the PM timer, else PIT channel 2.
    reference: Option<&'static dyn ClockSource>,
}

impl Clocks {
    /// Every clocksource here, best first as registration takes them.
    fn all(&self) -> [Option<&'static dyn ClockSource>; 4] {
        [self.tsc.ok(), self.hpet, self.pm, self.pit]
    }
}

/// The reference counters first (HPET, ACPI PM, PIT channel 2), then the
/// TSC calibrated against the best of them.
fn clocksources_up(platform: &Platform, opts: &Options<'_>, inv: &mut Inventory) -> Clocks {
    let hpet = hpet_clocksource_up(platform, opts, inv);
    let pm = acpi_pm_up(platform, inv);
    let pit = pit_clocksource_up(inv);
    let reference: Option<&'static dyn ClockSource> = hpet.or(pm).or(pit);
    inv.reference = reference.map(|r| r.name());
    if let Some(r) = reference {
        log::info!("sources: calibration reference: {}", r.name());
    }
    let tsc = tsc_up(reference, opts.tsc_reliable, inv);
    if let (None, Ok(t)) = (reference, tsc) {
        // The degraded mode: the TSC's rate is what CPUID states, and
        // nothing can check it (nor that the TSC runs, nor a rate
        // calibrated against it).
        log::warn!(
            "sources: no reference clock (no HPET, no PM timer, no PIT): the TSC runs at \
             CPUID's rate, {}, UNVERIFIED; the LAPIC timer's rate comes from CPUID or \
             from this TSC",
            t.frequency()
        );
    }
    Clocks {
        tsc,
        hpet,
        pm,
        pit,
        reference,
    }
}

/// The tick system on the first clocksource, configured from the command
/// line (`hz=`, `nohz=`, `highres=`, `timer_advance=`, `clocksource=`),
/// with the other clocksources registered.
fn tick_system_up(
    clocks: &Clocks,
    opts: &Options<'_>,
    inv: &mut Inventory,
) -> Result<Tick, BringUpError> {
    let all = clocks.all();
    let mut present = all.iter().flatten().copied();
    let first = present
        .next()
        .ok_or(BringUpError::NoClock(match clocks.tsc {
            Err(why) => why,
            Ok(_) => NoTsc::Other,
        }))?;
    let default = TickConfig::DEFAULT;
    let config = TickConfig::new(opts.hz.map_or(default.hz(), |h| Hertz::new(h.per_second())))
        .with_nohz(opts.nohz.unwrap_or(default.nohz()))
        .with_highres(opts.highres.unwrap_or(default.highres()));
    let tick: Tick = TickSystem::new(
        config,
        first,
        kernel::timer_storage().ok_or(BringUpError::Twice)?,
    )
    .map_err(BringUpError::Tick)?;
    if let Some(adv) = opts.timer_advance {
        tick.set_timer_advance(adv.to_tick());
        log::info!(
            "timer advance: {adv:?} (high-res events programmed early, spun to the deadline)"
        );
    }
    if let Some(name) = opts.clocksource.map(clocksource_alias) {
        let found = all.iter().flatten().find(|c| c.name() == name);
        inv.clocksource = Some((found.map_or("?", |c| c.name()), found.is_some()));
        if found.is_none() {
            log::warn!("clocksource={name}: no such clocksource here; the best one is used");
        }
        if let Err(e) = tick.set_clocksource_override(name) {
            log::warn!("clocksource={name}: {e:?}");
        }
    }
    for cs in present {
        if let Err(e) = tick.register_clocksource(cs) {
            log::warn!("sources: clocksource {} refused: {e:?}", cs.name());
        }
    }
    Ok(tick)
}

/// The event devices found: the local APIC timer, and the one device that
/// raises IRQ0 (HPET comparator 0, else PIT counter 0) if IRQ0 could be
/// routed to it.
struct EventDevices {
    lapic: Option<EventDev>,
    irq0: Option<EventDev>,
    irq0_routed: bool,
}

/// The LAPIC timer (calibrated against the reference, else the TSC), then
/// HPET or PIT for IRQ0, routed through the I/O APIC.
fn event_devices_up(
    platform: &Platform,
    lapic: &'static LocalApic,
    clocks: &Clocks,
    opts: &Options<'_>,
    inv: &mut Inventory,
) -> EventDevices {
    // Without a reference the LAPIC timer, if CPUID does not state its
    // rate, is calibrated against the TSC (whose rate is CPUID's).
    let mut lapic_dev = lapic_timer_up(lapic, clocks.reference.or(clocks.tsc.ok()), opts, inv);
    let cpus = platform.apic_ids.count();
    if opts.lapic_notimer && cpus > 1 {
        ON_DUMMIES.store(true, core::sync::atomic::Ordering::Relaxed);
        lapic_dev = dummy_timer(0);
        inv.skip(format_args!(
            "lapic timer: lapic=notimer on {cpus} CPUs: a dummy on each, every CPU ticks by broadcast"
        ));
    }
    let want_pit_event = opts.clockevent == Some("pit");
    let hpet_dev = if want_pit_event {
        if clocks.hpet.is_some() {
            inv.skip(format_args!(
                "hpet event device: not set up (clockevent=pit: LegacyReplacement would take IRQ0 from the PIT)"
            ));
        }
        None
    } else {
        hpet_event_up(inv)
    };
    let pit_dev = if hpet_dev.is_some() {
        pit_stop_channel0(inv);
        None
    } else {
        pit_event_up(clocks.pit.is_some(), inv)
    };
    let irq0 = hpet_dev.or(pit_dev);
    let irq0_routed = match irq0 {
        Some(dev) => route_irq0(platform, lapic, dev.info().name, inv).is_some(),
        None => false,
    };
    EventDevices {
        lapic: lapic_dev,
        irq0,
        irq0_routed,
    }
}

/// Registers the devices with the tick layer, the `clockevent=` device
/// first so the override can win; returns the LAPIC timer's id and IRQ0's
/// device, for the interrupt handlers.
fn register_devices(
    tick: &mut Tick,
    devices: &EventDevices,
    opts: &Options<'_>,
    inv: &mut Inventory,
) -> (Option<DeviceId>, Option<Irq0>) {
    let requested = opts
        .clockevent
        .map(|name| resolve_clockevent(name, devices.lapic, devices.irq0));
    if let Some((name, found)) = requested {
        inv.clockevent = Some((name, found));
        if found {
            tick.set_device_override(name);
        } else {
            log::warn!(
                "clockevent={}: no such device here; the best one is used",
                opts.clockevent.unwrap_or("")
            );
        }
    }
    let mut order: [Option<EventDev>; 2] =
        [devices.lapic, devices.irq0.filter(|_| devices.irq0_routed)];
    if let Some((name, true)) = requested {
        order.sort_unstable_by_key(|d| d.is_none_or(|d| d.info().name != name));
    }
    let mut lapic_id = None;
    let mut irq0 = None;
    for dev in order.into_iter().flatten() {
        match tick.register_device(dev) {
            Ok(id) => {
                if devices
                    .lapic
                    .is_some_and(|l| l.info().name == dev.info().name)
                {
                    lapic_id = Some(id);
                } else if let Some(d) = devices.irq0 {
                    irq0 = Some(Irq0 {
                        dev: id,
                        name: d.info().name,
                    });
                }
            }
            Err(e) => inv.skip(format_args!(
                "{}: refused by the tick layer: {e:?}",
                dev.info().name
            )),
        }
    }
    (lapic_id, irq0)
}

/// Names `clockevent=` may use: a device name, or `lapic` / `lapic-deadline`
/// for the boot CPU's LAPIC timer (`lapic0` / `lapic-deadline0`).
fn resolve_clockevent(
    name: &str,
    lapic: Option<&'static dyn ClockEventDevice>,
    irq0: Option<&'static dyn ClockEventDevice>,
) -> (&'static str, bool) {
    let candidates = [lapic, irq0];
    for d in candidates.into_iter().flatten() {
        let n = d.info().name;
        let alias = n.strip_suffix('0').filter(|base| *base == name).is_some();
        let lapic_alias = name == "lapic" && n.starts_with("lapic");
        if n == name || alias || lapic_alias {
            return (n, true);
        }
    }
    ("?", false)
}

/// The LAPIC timer's vector (its LVT entry's).
pub fn lapic_timer_vector() -> u8 {
    #[cfg(feature = "lapic")]
    return lapic::LOCAL_TIMER_VECTOR;
    #[cfg(not(feature = "lapic"))]
    0xEC
}

fn init_ioapics(platform: &Platform, inv: &mut Inventory) {
    for (i, info) in platform.ioapics.iter().enumerate() {
        let Some(info) = info else { continue };
        if !apic::in_mmio_window(info.address, crate::platform::ioapic::BLOCK_SIZE as u64) {
            inv.skip(format_args!(
                "I/O APIC {} at {:#x}: outside the uncached MMIO window, unused",
                info.id, info.address
            ));
            continue;
        }
        let Some(ptr) = core::ptr::NonNull::new(info.address as *mut u8) else {
            continue;
        };
        // SAFETY: the MADT's I/O APIC register block, inside the window the
        // boot page tables map uncached (checked); only this driver uses it.
        let mmio = unsafe { MetalMmio::new(ptr, crate::platform::ioapic::BLOCK_SIZE) };
        match IoApic::new(mmio, info.gsi_base) {
            Ok(io) => {
                io.mask_all();
                log::info!(
                    "ioapic: id {} at {:#x}, version {:#x}, GSI {}..{}",
                    io.id(),
                    info.address,
                    io.version(),
                    io.gsi_base(),
                    io.gsi_base() + io.inputs() - 1
                );
                IOAPICS[i].call_once(|| spin::Mutex::new(io));
            }
            Err(e) => inv.skip(format_args!("I/O APIC at {:#x}: {e}", info.address)),
        }
    }
}

/// Programs IRQ0's GSI (MADT override applied) to a fresh vector for
/// `name`'s interrupts; returns the vector.
fn route_irq0(
    platform: &Platform,
    lapic: &LocalApic,
    name: &'static str,
    inv: &mut Inventory,
) -> Option<u8> {
    let route = platform.isa[0];
    let Some((i, info)) = platform.ioapic_for(route.gsi) else {
        inv.skip(format_args!(
            "IRQ0 (GSI {}): no I/O APIC serves it",
            route.gsi
        ));
        return None;
    };
    let Some(io) = IOAPICS[i].get() else {
        inv.skip(format_args!(
            "IRQ0 (GSI {}): its I/O APIC is unusable",
            route.gsi
        ));
        return None;
    };
    let vector = match interrupts::allocate(kernel::irq0_interrupt) {
        Ok(v) => v,
        Err(e) => {
            inv.skip(format_args!("IRQ0: {e}"));
            return None;
        }
    };
    let io = io.lock();
    let e = RedirectionEntry::new(vector, lapic.id() as u8, route.polarity, route.trigger)
        .with_mask(false);
    if let Err(err) = io.set_entry(route.gsi, e) {
        inv.skip(format_args!("IRQ0: {err}"));
        interrupts::unregister(vector);
        return None;
    }
    log::info!(
        "ioapic: IRQ0 → GSI {} ({}) → vector {vector:#04x} for {name}: {e:?}",
        route.gsi,
        if route.overridden {
            "MADT override"
        } else {
            "ISA identity"
        }
    );
    inv.ioapic = Some((info.id, info.address, io.version(), io.inputs()));
    inv.irq0 = Some((route.gsi, vector, name));
    Some(vector)
}

// ---- clocksources ------------------------------------------------------------

fn hpet_clocksource_up(
    platform: &Platform,
    opts: &Options<'_>,
    inv: &mut Inventory,
) -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "hpet")]
    {
        if opts.hpet_disabled {
            inv.skip(format_args!("hpet: disabled by hpet=disable"));
            return None;
        }
        let Some(table) = platform.hpet else {
            if platform
                .notes
                .about(crate::platform::acpi::Signature::HPET)
                .is_some()
            {
                inv.skip(format_args!(
                    "hpet: the ACPI HPET table was skipped (firmware)"
                ));
            } else {
                inv.skip(format_args!(
                    "hpet: no ACPI HPET table (e.g. -machine hpet=off)"
                ));
            }
            return None;
        };
        if !apic::in_mmio_window(table.base, hpet::regs::BLOCK_SIZE as u64) {
            inv.skip(format_args!(
                "hpet: block at {:#x} outside the uncached MMIO window",
                table.base
            ));
            return None;
        }
        let ptr = core::ptr::NonNull::new(table.base as *mut u8)?;
        // SAFETY: the HPET table's register block (1 KiB), inside the window
        // the boot page tables map uncached (checked); only the hpet
        // crate's drivers, built on this value, touch it.
        let mmio =
            hpet_src::MMIO.call_once(|| unsafe { MetalMmio::new(ptr, hpet::regs::BLOCK_SIZE) });
        match hpet::probe(mmio) {
            Ok(info) => {
                let info = hpet_src::INFO.call_once(|| info);
                let cs = hpet_src::CS.call_once(|| hpet::HpetClockSource::new(mmio, info));
                inv.source(
                    cs.name(),
                    format_args!(
                        "GCAP_ID period {} fs (exact), {}-bit, HPET table #{} at {:#x}",
                        info.period.as_fs(),
                        if info.counter_64bit { 64 } else { 32 },
                        table.number,
                        table.base
                    ),
                );
                Some(cs)
            }
            Err(e) => {
                inv.skip(format_args!("hpet at {:#x}: refused: {e}", table.base));
                None
            }
        }
    }
    #[cfg(not(feature = "hpet"))]
    {
        let _ = (platform, opts);
        inv.skip(format_args!("hpet: not built (feature hpet off)"));
        None
    }
}

fn acpi_pm_up(platform: &Platform, inv: &mut Inventory) -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "acpi_pm")]
    {
        let Some(port) = platform.pm_timer_port else {
            inv.skip(format_args!("acpi_pm: the FADT names no PM timer"));
            return None;
        };
        let cs = acpi_pm::AcpiPmClockSource::new(&acpi_pm_src::PORTS, port);
        match cs.probe(acpi_pm::PROBE_READS) {
            Ok(_) => {
                let cs = acpi_pm_src::CS.call_once(|| cs);
                inv.source(
                    cs.name(),
                    format_args!(
                        "fixed 3.579545 MHz (ACPI), FADT PM_TMR_BLK port {port:#x}, 24-bit{}",
                        if platform.pm_timer_32bit {
                            " (FADT: 32)"
                        } else {
                            ""
                        }
                    ),
                );
                Some(cs)
            }
            Err(e) => {
                inv.skip(format_args!("acpi_pm at port {port:#x}: {e}"));
                None
            }
        }
    }
    #[cfg(not(feature = "acpi_pm"))]
    {
        let _ = platform;
        inv.skip(format_args!("acpi_pm: not built (feature acpi_pm off)"));
        None
    }
}

fn pit_clocksource_up(inv: &mut Inventory) -> Option<&'static dyn ClockSource> {
    #[cfg(feature = "pit")]
    {
        let cs = pit::PitClockSource::new(pit_src::pit(), pit::Ch2Options::REFERENCE);
        match cs.probe(pit::source::PROBE_READS) {
            Ok(_) => {
                let cs = pit_src::CS.call_once(|| cs);
                inv.source(
                    cs.name(),
                    format_args!(
                        "fixed 1.193182 MHz (i8254 input clock), counter 2, 16-bit, not high-res"
                    ),
                );
                Some(cs)
            }
            Err(e) => {
                inv.skip(format_args!("pit: {e}"));
                None
            }
        }
    }
    #[cfg(not(feature = "pit"))]
    {
        inv.skip(format_args!("pit: not built (feature pit off)"));
        None
    }
}

fn tsc_up(
    reference: Option<&'static dyn ClockSource>,
    reliable: bool,
    inv: &mut Inventory,
) -> Result<&'static dyn ClockSource, NoTsc> {
    #[cfg(feature = "tsc")]
    {
        let r = tsc::TscClockSource::probe(
            hw::metal::MetalTsc,
            &raw_cpuid::CpuId::new(),
            reference,
            if reliable {
                tsc::Stability::Reliable
            } else {
                tsc::Stability::Auto
            },
        );
        match r {
            Ok(cs) => {
                let cs = tsc_src::CS.call_once(|| cs);
                let f = cs.frequency_info();
                let err = match f.source.confidence() {
                    tsc::Confidence::Measured { error_ppm } => error_ppm,
                    // acrn#7890: a nominal 0x16 rate was 0.17 % off.
                    tsc::Confidence::Nominal => 2_000,
                    tsc::Confidence::Known | tsc::Confidence::Given => 0,
                };
                inv.tsc = Some((f.hz, err));
                inv.source(
                    cs.name(),
                    format_args!(
                        "{}; {}invariant{}{}",
                        f.source,
                        if cs.is_invariant() { "" } else { "not " },
                        if cs
                            .flags()
                            .contains(clocksource::ClockSourceFlags::MUST_VERIFY)
                        {
                            ", watched by the clocksource watchdog"
                        } else {
                            ""
                        },
                        if reference.is_none() {
                            "; UNVERIFIED: no reference clock to check it against"
                        } else {
                            ""
                        }
                    ),
                );
                Ok(cs)
            }
            Err(e) => {
                inv.skip(format_args!("tsc: {e}"));
                Err(match e {
                    tsc::TscError::NoFrequency => NoTsc::NoRate,
                    tsc::TscError::NotPresent => NoTsc::NotPresent,
                    _ => NoTsc::Other,
                })
            }
        }
    }
    #[cfg(not(feature = "tsc"))]
    {
        let _ = (reference, reliable);
        inv.skip(format_args!("tsc: not built (feature tsc off)"));
        Err(NoTsc::NotBuilt)
    }
}

// ---- event devices ---------------------------------------------------------------

fn lapic_timer_up(
    lapic: &'static LocalApic,
    reference: Option<&'static dyn ClockSource>,
    opts: &Options<'_>,
    inv: &mut Inventory,
) -> Option<&'static dyn ClockEventDevice> {
    #[cfg(feature = "lapic")]
    {
        use core::fmt::Write;
        use lapic::{Capabilities, DeadlineClock, FrequencySource, TimerConfig};
        use raw_cpuid::CpuId;
        if opts.lapic_notimer {
            inv.skip(format_args!("lapic timer: disabled by lapic=notimer"));
            return None;
        }
        let access = lapic.access();
        let mut caps = Capabilities::from_cpuid(&CpuId::new());
        if opts.idle_deep && caps.arat {
            // As a CPU without ARAT: the timer stops in the deep idle state
            // `idle=deep` stands for, so it is C3STOP and needs broadcast.
            caps.arat = false;
            inv.skip(format_args!(
                "lapic timer: ARAT ignored (idle=deep): C3STOP, broadcast in idle"
            ));
        }
        let freq = match lapic::timer_frequency(access, &caps, reference) {
            Ok(f) => Some(f),
            Err(e) => {
                inv.skip(format_args!("lapic timer TMICT modes: {e}"));
                None
            }
        };
        let mut cfg = TimerConfig::new(0, access, caps, freq);
        if let Some((hz, error_ppm)) = inv.tsc {
            cfg = cfg.with_deadline(DeadlineClock {
                msr: lapic.msrs(),
                tsc: &lapic_src::TSC,
                tsc_frequency: hz,
                error_ppm,
            });
        }
        match lapic::LapicTimer::new(cfg) {
            Ok(t) => {
                let t = lapic_src::TIMER.call_once(|| t);
                lapic_src::TEMPLATE.call_once(|| lapic_src::Template {
                    caps,
                    freq,
                    tsc: inv.tsc,
                });
                let mut how = Note::new();
                if t.mode() == lapic::TimerMode::TscDeadline {
                    let _ = write!(how, "TSC-deadline at the TSC rate");
                    if let Some((_, e)) = inv.tsc {
                        let _ = write!(how, " (±{e} ppm, raised by it)");
                    }
                    if freq.is_some() {
                        let _ = write!(how, "; periodic: ");
                    }
                }
                if let Some(f) = freq {
                    match f.source {
                        FrequencySource::Cpuid15 => {
                            let _ = write!(how, "bus {} from CPUID 0x15", f.bus);
                        }
                        FrequencySource::HypervisorLeaf => {
                            let _ = write!(how, "bus {} from CPUID 0x40000010", f.bus);
                        }
                        FrequencySource::Calibrated { against, error_ppm } => {
                            inv.lapic_error_ppm = Some(error_ppm);
                            let _ = write!(
                                how,
                                "bus {} calibrated against {against}, ±{error_ppm} ppm",
                                f.bus
                            );
                        }
                    }
                    let _ = write!(how, " ÷{}", f.divide.divisor());
                }
                inv.device(
                    t.info().name,
                    format_args!("{how}"),
                    format_args!(
                        "LVTT vector {:#04x} ({})",
                        lapic::LOCAL_TIMER_VECTOR,
                        lapic.mode().as_str()
                    ),
                );
                Some(t)
            }
            Err(e) => {
                inv.skip(format_args!("lapic timer: {e}"));
                None
            }
        }
    }
    #[cfg(not(feature = "lapic"))]
    {
        let _ = (lapic, reference, opts);
        inv.skip(format_args!("lapic timer: not built (feature lapic off)"));
        None
    }
}

/// An IRQ0 event device (HPET comparator 0 or PIT counter 0). The core
/// acknowledges its interrupts (`ClockEventDevice::acknowledge`).
type EventDev = &'static dyn ClockEventDevice;

fn hpet_event_up(inv: &mut Inventory) -> Option<EventDev> {
    #[cfg(feature = "hpet")]
    {
        let (Some(mmio), Some(info)) = (hpet_src::MMIO.get(), hpet_src::INFO.get()) else {
            return None;
        };
        match hpet::HpetClockEvent::new(
            mmio,
            info,
            hpet::Route::Legacy,
            clockevents::CpuMask::single(CpuId::BOOT),
        ) {
            Ok(ce) => {
                let ce = hpet_src::CE.call_once(|| ce);
                inv.device(
                    ce.info().name,
                    format_args!("GCAP_ID period {} fs (exact)", info.period.as_fs()),
                    format_args!("comparator 0, LegacyReplacement → IRQ0"),
                );
                Some(ce)
            }
            Err(e) => {
                inv.skip(format_args!("hpet event device: {e}"));
                None
            }
        }
    }
    #[cfg(not(feature = "hpet"))]
    {
        let _ = inv;
        None
    }
}

fn pit_event_up(pit_counts: bool, inv: &mut Inventory) -> Option<EventDev> {
    #[cfg(feature = "pit")]
    {
        if !pit_counts {
            inv.skip(format_args!("pit event device: the PIT does not count"));
            return None;
        }
        let ce = pit_src::CE.call_once(|| {
            pit::PitClockEvent::new(pit_src::pit(), clockevents::CpuMask::single(CpuId::BOOT))
        });
        inv.device(
            ce.info().name,
            format_args!("fixed 1.193182 MHz (i8254)"),
            format_args!("counter 0 → IRQ0"),
        );
        Some(ce)
    }
    #[cfg(not(feature = "pit"))]
    {
        let _ = (pit_counts, inv);
        None
    }
}

fn pit_stop_channel0(inv: &mut Inventory) {
    #[cfg(feature = "pit")]
    {
        pit_src::pit().stop_channel0();
        inv.skip(format_args!(
            "pit event device: not used (HPET LegacyReplacement owns IRQ0); counter 0 stopped"
        ));
    }
    #[cfg(not(feature = "pit"))]
    let _ = inv;
}

/// The nanoseconds of `cycles` at `freq`, rounded down (as the clockevents
/// core derives a device's max delta).
pub fn cycles_ns(freq: Hertz, cycles: clocksource::Cycles) -> Nanos {
    if freq.get() == 0 {
        return Nanos::ZERO;
    }
    freq.exact_cycles_to_ns(cycles)
}

/// A device's programmable range in nanoseconds: `None` for a
/// [`Programming::Deadline`](clockevents::Programming::Deadline) device,
/// which takes any future time.
pub fn delta_range_ns(info: &clockevents::DeviceInfo) -> Option<(Nanos, Nanos)> {
    let freq = info.frequency()?;
    let (min, max) = info.delta_range()?;
    Some((cycles_ns(freq, min), cycles_ns(freq, max)))
}

/// The longest the device can be programmed ahead: its max delta, or
/// [`Nanos::MAX`] for a deadline device.
pub fn max_delta_ns(info: &clockevents::DeviceInfo) -> Nanos {
    delta_range_ns(info).map_or(Nanos::MAX, |(_, max)| max)
}

/// The registered device id of the CPU's tick device, and its driver.
pub fn tick_device(k: &Kernel) -> Option<(DeviceId, &'static dyn ClockEventDevice)> {
    let id = k.tick.cpu_device(CpuId::BOOT)?;
    Some((id, k.tick.devices().get(id)?))
}
