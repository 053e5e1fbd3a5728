//! A comparator as a clock-event device: comparator 0 as Linux's legacy
//! "hpet" device (`hpet_clockevent`), comparators 1..N as its per-CPU
//! "hpetN" channels (`hpet_msi`).
//!
//! Comparator 0 is a global device: it interrupts through one line
//! (LegacyReplacement IRQ0, or an I/O APIC input), serves the CPUs the
//! caller names, is neither per-CPU nor stopped in deep idle — so the tick
//! layer may take it as the broadcast device for CPUs whose LAPIC timer
//! stops there.
//!
//! A comparator that can deliver by FSB ([`Route::Fsb`]: `Tn_FSB_INT_DEL_CAP`,
//! QEMU `-global hpet.msi=on`) writes an MSI message to one CPU's local APIC
//! instead of driving a line: it becomes that CPU's own device, `PERCPU`,
//! rated 110 — above the LAPIC timer's 100 — so that where the LAPIC timer
//! stops in deep idle each CPU has an HPET channel of its own and needs no
//! broadcast (Linux `arch/x86/kernel/hpet.c`, `hpet_msi_*`, rating 110).
//! Such a channel is one-shot only, as Linux's are: periodic mode halts the
//! main counter to start (below), which every other comparator and the
//! clocksource share.
//!
//! # Modes
//!
//! - **Periodic** (declared when comparator 0 has `Tn_PER_INT_CAP`, as QEMU's
//!   has): Linux's start sequence, counter halted so no match can slip in:
//!
//!   ```text
//!   GEN_CONF.ENABLE_CNF = 0                     halt the main counter
//!   now = MAIN_CNT
//!   T0_CONF |= INT_ENB | TYPE(periodic) | VAL_SET | 32MODE
//!   T0_COMPARATOR = now + period               VAL_SET: accumulator (and period)
//!   T0_COMPARATOR = period                     period again: AMD-8111 needs a
//!                                              second write with VAL_SET clear
//!   GEN_CONF.ENABLE_CNF = 1                     first match one period from now
//!   ```
//!
//!   Linux waits `udelay(1)` between the two comparator writes; this crate
//!   has no delay source and needs none, the counter being halted.
//!
//! - **One-shot** (only with feature `oneshot`): a comparator that matches
//!   on *equality* only. If the counter passes the value before the write
//!   lands, nothing fires until the counter comes round again (2^32 ticks in
//!   32-bit mode: 42.9 s at 100 MHz, 300 s at 14.318 MHz):
//!
//!   ```text
//!   now = MAIN_CNT ─► T0_COMPARATOR = now + Δ ─► after = MAIN_CNT
//!                 ▲ NMI / SMI / slow bus here   ▲ write lands ≤ 2 ticks late
//!   (cmp − after) as i32 < HPET_MIN_CYCLES (128)  ⇒  TooLate: the core retries
//!   ```
//!
//!   The guard is Linux's (`hpet_clkevt_set_next_event()`), with the
//!   history from its comment: writes are delayed up to two HPET clocks on
//!   ATI and ICH9/10 chipsets (longer on newer AMD); reading the comparator
//!   back failed on ICH9/10, whose first read after a write returns the stale
//!   value; an earlier 5 µs minimum delta was defeated by an NMI or SMI
//!   between the counter read and the comparator write. So: a 128-tick
//!   margin after the write, and a minimum delta of 1.5 × 128 = 192 ticks
//!   (`HPET_MIN_PROG_DELTA`) so the common case passes. It is sound for any
//!   write delay under 128 ticks: an accepted comparator is ≥ 128 ticks
//!   ahead of a counter read taken after the write.
//!
//! Comparators run in 32-bit mode, as in Linux: deltas never exceed
//! 0x7FFF_FFFF, the guard is a 32-bit signed difference, and a missed event
//! comes back after one 32-bit wrap instead of never.

use core::sync::atomic::{AtomicBool, Ordering};

use clockevents::{
    ClockEventDevice, CpuMask, DeviceError, DeviceInfo, Features, NextEvent, Programming,
};
use clocksource::{Cycles, Hertz, Nanos};
use hw::Mmio;

use crate::probe::{HpetError, HpetInfo};
use crate::regs::{
    tn_comparator, tn_conf_cap, tn_fsb_int_route, CounterPeriod, GeneralConfig, IrqPins,
    TimerConfig, GEN_CONF, GINTR_STA, MAIN_CNT,
};

/// The device's name: comparator 0's (the per-CPU channels are "hpet1",
/// "hpet2", …, as Linux names them).
pub const NAME: &str = "hpet";
/// The name of comparator `n`'s device.
const NAMES: [&str; 32] = [
    "hpet", "hpet1", "hpet2", "hpet3", "hpet4", "hpet5", "hpet6", "hpet7", "hpet8", "hpet9",
    "hpet10", "hpet11", "hpet12", "hpet13", "hpet14", "hpet15", "hpet16", "hpet17", "hpet18",
    "hpet19", "hpet20", "hpet21", "hpet22", "hpet23", "hpet24", "hpet25", "hpet26", "hpet27",
    "hpet28", "hpet29", "hpet30", "hpet31",
];
/// A per-CPU (FSB) channel's rating (Linux: 110, above the LAPIC timer).
pub const PERCPU_RATING: u16 = 110;
/// The device's rating (Linux: the legacy HPET device, 50 — below the LAPIC
/// timer's 100, so it serves as the tick device only when nothing better
/// exists, and otherwise as the broadcast device).
pub const RATING: u16 = 50;
/// Linux `HPET_MIN_CYCLES`: the least margin, in ticks, between the counter
/// read after writing the comparator and the comparator, for the event to
/// count as programmed in time.
pub const HPET_MIN_CYCLES: u32 = 128;
/// Linux `HPET_MIN_PROG_DELTA` = 1.5 × [`HPET_MIN_CYCLES`]: the minimum delta.
pub const HPET_MIN_PROG_DELTA: Cycles = Cycles::new((HPET_MIN_CYCLES + HPET_MIN_CYCLES / 2) as u64);
/// The maximum delta, 0x7FFF_FFFF ticks: the largest a 32-bit signed
/// difference states (21.47 s at 100 MHz, 149.98 s at 14.318 MHz).
pub const MAX_DELTA: Cycles = Cycles::new(0x7FFF_FFFF);

/// How the comparator's interrupt is signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge (`Tn_INT_TYPE_CNF` = 0): a pulse per match, nothing to
    /// acknowledge. ISA-style; what LegacyReplacement uses.
    Edge,
    /// Level (`Tn_INT_TYPE_CNF` = 1): the line stays asserted and the
    /// `GINTR_STA` bit set until the handler calls
    /// [`acknowledge`](clockevents::ClockEventDevice::acknowledge). PCI-style, for shared I/O APIC inputs.
    Level,
}

/// Where the comparator's interrupt goes. The caller (who knows the
/// interrupt controllers) decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// LegacyReplacement (`LEG_RT_CNF`): IRQ0 on the 8259, input 2 on the I/O
    /// APIC, edge-triggered; takes over the PIT's (and, for comparator 1,
    /// the RTC's) interrupt. Needs `LEG_RT_CAP`.
    Legacy,
    /// An I/O APIC input (`Tn_INT_ROUTE_CNF`): the lowest one that is both in
    /// the comparator's `Tn_INT_ROUTE_CAP` and in `allowed`.
    IoApic {
        /// The inputs the caller can program.
        allowed: IrqPins,
        /// The trigger mode the caller programs the input with.
        trigger: Trigger,
    },
    /// An FSB (MSI) message (`Tn_FSB_EN_CNF`, `Tn_FSB_INT_ROUTE`): `data`
    /// written to `address`, which names the one CPU the device serves
    /// (`0xFEE0_0000 | apic_id << 12`, Intel SDM §10.11.1; `data` holds the
    /// vector). Edge by nature. Needs `Tn_FSB_INT_DEL_CAP`.
    Fsb {
        /// The message address.
        address: u32,
        /// The message data.
        data: u32,
    },
}

/// Where the interrupt was actually routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// LegacyReplacement: IRQ0 / I/O APIC input 2, edge.
    Legacy,
    /// This I/O APIC input, with this trigger.
    IoApic {
        /// The input.
        pin: u8,
        /// The trigger mode.
        trigger: Trigger,
    },
    /// This FSB message.
    Fsb {
        /// The message address.
        address: u32,
        /// The message data.
        data: u32,
    },
}

/// A comparator of a probed HPET as a [`ClockEventDevice`].
pub struct HpetClockEvent<'a, M: Mmio + ?Sized> {
    mmio: &'a M,
    /// The comparator driven.
    n: usize,
    period: CounterPeriod,
    frequency: Hertz,
    features: Features,
    routed: Routed,
    cpus: CpuMask,
    /// Whether `Tn_INT_ENB_CNF` is set, so `program` writes the
    /// configuration only after a stop.
    int_enabled: AtomicBool,
}

impl<'a, M: Mmio + ?Sized> HpetClockEvent<'a, M> {
    /// Sets up comparator 0 of the HPET at `mmio` (probed as `info`):
    /// [`comparator`](Self::comparator) 0.
    pub fn new(
        mmio: &'a M,
        info: &HpetInfo,
        route: Route,
        cpus: CpuMask,
    ) -> Result<Self, HpetError> {
        Self::comparator(mmio, info, 0, route, cpus)
    }

    /// Sets up comparator `n` of the HPET at `mmio` (probed as `info`):
    /// routes its interrupt as `route` says, leaves it disabled (shut
    /// down). The device will serve `cpus` (exactly one for [`Route::Fsb`]).
    ///
    /// Declares `PERIODIC` if the comparator has `Tn_PER_INT_CAP` and is
    /// not an FSB channel, `ONESHOT` if the crate is built with feature
    /// `oneshot`, and `PERCPU` for an FSB channel.
    pub fn comparator(
        mmio: &'a M,
        info: &HpetInfo,
        n: u8,
        route: Route,
        cpus: CpuMask,
    ) -> Result<Self, HpetError> {
        if n >= info.comparators {
            return Err(HpetError::NoSuchComparator { comparator: n });
        }
        let comparator = n;
        let n = usize::from(n);
        let low = mmio.read32(tn_conf_cap(n));
        let high = mmio.read32(tn_conf_cap(n) + 4);
        if low == u32::MAX && high == u32::MAX {
            return Err(HpetError::NoDevice);
        }
        let caps = TimerConfig::from_bits_retain(((high as u64) << 32) | low as u64);
        let fsb = matches!(route, Route::Fsb { .. });
        let mut features = Features::empty();
        if caps.contains(TimerConfig::PER_INT_CAP) && !fsb {
            features |= Features::PERIODIC;
        }
        if cfg!(feature = "oneshot") {
            features |= Features::ONESHOT;
        }
        if features.is_empty() {
            log::warn!(
                "hpet: comparator {n} is not periodic-capable (or an FSB channel) and one-shot is not built"
            );
            return Err(HpetError::NoUsableMode);
        }

        let off = caps
            .difference(TimerConfig::INT_ENB_CNF | TimerConfig::TYPE_CNF | TimerConfig::FSB_EN_CNF)
            .union(TimerConfig::MODE32_CNF);
        let routed = match route {
            Route::Legacy => {
                if !info.legacy_capable {
                    return Err(HpetError::LegacyUnsupported);
                }
                if n > 1 {
                    // LegacyReplacement routes comparators 0 and 1 only.
                    return Err(HpetError::LegacyUnsupported);
                }
                let cfg = off.difference(TimerConfig::INT_TYPE_CNF);
                mmio.write32(tn_conf_cap(n), cfg.bits() as u32);
                let gen = GeneralConfig::from_bits_retain(mmio.read32(GEN_CONF) as u64);
                mmio.write32(GEN_CONF, (gen | GeneralConfig::LEG_RT_CNF).bits() as u32);
                Routed::Legacy
            }
            Route::IoApic { allowed, trigger } => {
                let capable = caps.route_cap();
                let pin = capable
                    .and(allowed)
                    .lowest()
                    .ok_or(HpetError::NoRoute { capable })?;
                let mut cfg = off.with_int_route(pin);
                cfg.set(TimerConfig::INT_TYPE_CNF, trigger == Trigger::Level);
                mmio.write32(tn_conf_cap(n), cfg.bits() as u32);
                let back = TimerConfig::from_bits_retain(mmio.read32(tn_conf_cap(n)) as u64);
                if back.int_route() != pin {
                    return Err(HpetError::RouteRejected { pin });
                }
                Routed::IoApic { pin, trigger }
            }
            Route::Fsb { address, data } => {
                if !caps.contains(TimerConfig::FSB_INT_DEL_CAP) || cpus.len() != 1 {
                    return Err(HpetError::FsbUnsupported { comparator });
                }
                // Tn_FSB_INT_ROUTE: data in 31:0, address in 63:32.
                mmio.write32(tn_fsb_int_route(n), data);
                mmio.write32(tn_fsb_int_route(n) + 4, address);
                let cfg = off.difference(TimerConfig::INT_TYPE_CNF) | TimerConfig::FSB_EN_CNF;
                mmio.write32(tn_conf_cap(n), cfg.bits() as u32);
                let back = TimerConfig::from_bits_retain(mmio.read32(tn_conf_cap(n)) as u64);
                if !back.contains(TimerConfig::FSB_EN_CNF) {
                    return Err(HpetError::FsbUnsupported { comparator });
                }
                features |= Features::PERCPU;
                Routed::Fsb { address, data }
            }
        };
        log::info!("hpet: clockevent on comparator {n}, {routed:?}, {features:?}");
        Ok(HpetClockEvent {
            mmio,
            n,
            period: info.period,
            frequency: info.frequency,
            features,
            routed,
            cpus,
            int_enabled: AtomicBool::new(false),
        })
    }

    /// Where the interrupt goes.
    pub fn routed(&self) -> Routed {
        self.routed
    }

    fn level(&self) -> bool {
        matches!(
            self.routed,
            Routed::IoApic {
                trigger: Trigger::Level,
                ..
            }
        )
    }

    /// The comparator driven.
    pub fn number(&self) -> u8 {
        self.n as u8
    }

    /// Whether the comparator's status bit is set in `GINTR_STA`: in level
    /// mode, "this interrupt is ours" for a handler on a shared input.
    /// Always `false` in edge mode (the bit is not latched there).
    pub fn interrupt_pending(&self) -> bool {
        self.level() && self.mmio.read32(GINTR_STA) & (1 << self.n) != 0
    }

    fn config(&self) -> TimerConfig {
        TimerConfig::from_bits_retain(self.mmio.read32(tn_conf_cap(self.n)) as u64)
    }

    fn write_config(&self, cfg: TimerConfig) {
        self.mmio.write32(tn_conf_cap(self.n), cfg.bits() as u32);
    }

    fn general(&self) -> GeneralConfig {
        GeneralConfig::from_bits_retain(self.mmio.read32(GEN_CONF) as u64)
    }

    /// Turns the comparator's interrupt off (and periodic mode, if `also_periodic`).
    fn disable(&self, also_periodic: bool) {
        let mut off = TimerConfig::INT_ENB_CNF;
        if also_periodic {
            off |= TimerConfig::TYPE_CNF;
        }
        self.write_config(self.config().difference(off));
        self.int_enabled.store(false, Ordering::Relaxed);
    }

    /// Sets `Tn_INT_ENB_CNF` (clearing a stale level status first, which
    /// would otherwise assert the line at once).
    fn enable_interrupt(&self, cfg: TimerConfig) {
        if self.level() {
            self.mmio.write32(GINTR_STA, 1 << self.n);
        }
        self.write_config(cfg | TimerConfig::INT_ENB_CNF);
        self.int_enabled.store(true, Ordering::Relaxed);
    }
}

impl<M: Mmio + ?Sized> ClockEventDevice for HpetClockEvent<'_, M> {
    fn info(&self) -> DeviceInfo {
        let programming = Programming::Cycles {
            frequency: self.frequency,
            min_delta: HPET_MIN_PROG_DELTA,
            max_delta: MAX_DELTA,
        };
        let rating = if matches!(self.routed, Routed::Fsb { .. }) {
            PERCPU_RATING
        } else {
            RATING
        };
        DeviceInfo::new(NAMES[self.n], programming, self.cpus)
            .with_features(self.features)
            .with_rating(rating)
    }

    /// In level mode, writes 1 to the comparator's `GINTR_STA` bit, which
    /// deasserts the line (IA-PC HPET specification 1.0a, §2.3.11); the
    /// core calls it first for each interrupt. Nothing in edge mode (the
    /// specification says to write 0 there).
    fn acknowledge(&self) {
        if self.level() {
            self.mmio.write32(GINTR_STA, 1 << self.n);
        }
    }

    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        self.disable(true);
        Ok(())
    }

    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        if !self.features.contains(Features::PERIODIC) {
            return Err(DeviceError::Unsupported);
        }
        let ticks = self.period.cycles_in(period).get();
        if ticks == 0 || ticks > MAX_DELTA.get() {
            log::warn!("hpet: periodic period {period} is {ticks} ticks, out of range");
            return Err(DeviceError::Unsupported);
        }
        let ticks = ticks as u32;
        let gen = self.general();
        self.mmio.write32(
            GEN_CONF,
            gen.difference(GeneralConfig::ENABLE_CNF).bits() as u32,
        );
        let now = self.mmio.read32(MAIN_CNT);
        let cfg = self.config()
            | TimerConfig::TYPE_CNF
            | TimerConfig::VAL_SET_CNF
            | TimerConfig::MODE32_CNF;
        self.enable_interrupt(cfg);
        self.mmio
            .write32(tn_comparator(self.n), now.wrapping_add(ticks));
        self.mmio.write32(tn_comparator(self.n), ticks);
        self.mmio
            .write32(GEN_CONF, (gen | GeneralConfig::ENABLE_CNF).bits() as u32);
        let back = self.config();
        if !back.contains(TimerConfig::TYPE_CNF | TimerConfig::INT_ENB_CNF) {
            log::error!(
                "hpet: comparator {} refused periodic mode ({back:?})",
                self.n
            );
            return Err(DeviceError::Hardware);
        }
        Ok(())
    }

    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        if !self.features.contains(Features::ONESHOT) {
            return Err(DeviceError::Unsupported);
        }
        // Non-periodic, 32-bit, interrupt off until an event is programmed:
        // the comparator still holds an old value the counter would reach.
        let cfg = self
            .config()
            .difference(TimerConfig::TYPE_CNF | TimerConfig::INT_ENB_CNF)
            | TimerConfig::MODE32_CNF;
        self.write_config(cfg);
        self.int_enabled.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn set_state_oneshot_stopped(&self) -> Result<(), DeviceError> {
        self.disable(false);
        Ok(())
    }

    /// A comparator takes cycle deltas only ([`Programming::Cycles`]).
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        let NextEvent::In(delta) = next else {
            return Err(DeviceError::Unsupported);
        };
        if !self.features.contains(Features::ONESHOT) {
            return Err(DeviceError::Unsupported);
        }
        if delta.get() == 0 || delta > MAX_DELTA {
            log::warn!("hpet: delta {delta} out of range");
            return Err(DeviceError::Unsupported);
        }
        let now = self.mmio.read32(MAIN_CNT);
        let cmp = now.wrapping_add(delta.get() as u32);
        self.mmio.write32(tn_comparator(self.n), cmp);
        if !self.int_enabled.load(Ordering::Relaxed) {
            self.enable_interrupt(self.config());
        }
        let after = self.mmio.read32(MAIN_CNT);
        let margin = cmp.wrapping_sub(after) as i32;
        if margin < HPET_MIN_CYCLES as i32 {
            log::debug!("hpet: too late: comparator {cmp:#x}, counter {after:#x} after the write");
            return Err(DeviceError::TooLate);
        }
        Ok(())
    }
}
