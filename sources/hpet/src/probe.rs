//! Finding out whether an HPET is there and usable, before anything relies
//! on it.
//!
//! [`probe`] follows the checks of Linux's `hpet_enable()`
//! (arch/x86/kernel/hpet.c), each turned into a typed [`HpetError`] so the
//! caller can fall back to another clocksource and event device:
//!
//! ```text
//!   GEN_CONF reads all ones? ── up to CONFIG_READY_READS reads ──► NoDevice
//!   GCAP_ID: REV_ID 0 ─► BadRevision     period 0 ─► ZeroPeriod
//!            period outside [10^5, 10^8] fs ─► PeriodTooShort / PeriodTooLong
//!            fewer than 3 comparators ─► TooFewComparators
//!   quiesce: GEN_CONF.ENABLE_CNF/LEG_RT_CNF off; every Tn: INT_ENB, level,
//!            FSB off; stale level status cleared
//!   restart: counter halted, set to 0, ENABLE_CNF on
//!   counter moves within COUNTER_ADVANCE_READS reads? ── no ─► CounterNotCounting
//!   ok: HpetInfo, main counter running
//! ```
//!
//! Every wait is bounded by a number of register reads, never by time: the
//! probe runs before any clock is trusted.

use clocksource::Hertz;
use hw::Mmio;

use crate::regs::{
    tn_conf_cap, Capabilities, CounterPeriod, GeneralConfig, TimerConfig, GCAP_ID, GEN_CONF,
    GINTR_STA, MAIN_CNT,
};

/// The longest counter period accepted: 100 ns = 10^8 fs (IA-PC HPET 1.0a
/// §2.3.4: "less than or equal to 0x05F5E100 (10^8 femptoseconds = 100
/// nanoseconds)"; Linux `HPET_MAX_PERIOD`). Slower than 10 MHz is not an HPET.
pub const MAX_PERIOD_FS: u32 = 100_000_000;

/// The shortest counter period accepted: 10^5 fs, a 10 GHz counter (Linux
/// `HPET_MIN_PERIOD`). The specification sets no floor; a shorter period is
/// taken as a garbage read, not as a faster device.
pub const MIN_PERIOD_FS: u32 = 100_000;

/// The fewest comparators a block may have (IA-PC HPET 1.0a: a timer block
/// implements at least three timers; QEMU never emulates fewer). The
/// `NUM_TIM_CAP` field cannot state zero, so "no comparator" shows up here as
/// a block below the minimum.
pub const MIN_COMPARATORS: u8 = 3;

/// How many times `GEN_CONF` is read while it reads all ones before the
/// device is declared absent. Linux `hpet_cfg_working()`: AMD SB700 SMM
/// emulation of the HPET returns 0xFFFFFFFF for a while after the first
/// access; 1000 reads, "as the HPET access takes thousands of CPU cycles".
pub const CONFIG_READY_READS: u32 = 1000;

/// How many times the main counter is read after it is started, waiting for
/// it to move, before it is declared not counting.
///
/// Linux waits 200 000 TSC cycles (`hpet_counting()`, 50–200 µs). We bound
/// by reads: an uncached MMIO read of the chipset's HPET takes ≈0.5–1 µs on
/// hardware and a VM exit under a hypervisor, so 1000 reads last ≥ 100 µs
/// even at an implausible 100 ns per read — at least 1000 periods of the
/// slowest legal counter (100 ns). A working counter moves long before.
pub const COUNTER_ADVANCE_READS: u32 = 1000;

/// What [`probe`] learned from a usable HPET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetInfo {
    /// `REV_ID`.
    pub revision: u8,
    /// `VENDOR_ID`.
    pub vendor_id: u16,
    /// The number of comparators (`NUM_TIM_CAP + 1`).
    pub comparators: u8,
    /// `COUNT_SIZE_CAP`: a 64-bit main counter (else 32-bit).
    pub counter_64bit: bool,
    /// `LEG_RT_CAP`: LegacyReplacement routing is available.
    pub legacy_capable: bool,
    /// `COUNTER_CLK_PERIOD`, validated.
    pub period: CounterPeriod,
    /// The counting rate, from the period (rounded to nearest hertz).
    pub frequency: Hertz,
}

/// Why an HPET is refused. The caller falls back to another clocksource and
/// event device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpetError {
    /// Nothing answers at the address: `GEN_CONF` or `GCAP_ID` read all ones
    /// (an unclaimed bus cycle), also after [`CONFIG_READY_READS`] reads.
    NoDevice,
    /// `REV_ID` is 0, which the specification forbids ("must NOT be 00h").
    BadRevision,
    /// `COUNTER_CLK_PERIOD` is 0, which the specification forbids ("A value
    /// of 0 in this field is not permitted"); seen from QEMU on macOS (QEMU
    /// issue 1570, worked around in Redox).
    ZeroPeriod,
    /// The period is longer than [`MAX_PERIOD_FS`].
    PeriodTooLong {
        /// The period read.
        period: CounterPeriod,
    },
    /// The period is shorter than [`MIN_PERIOD_FS`].
    PeriodTooShort {
        /// The period read.
        period: CounterPeriod,
    },
    /// Fewer than [`MIN_COMPARATORS`] comparators.
    TooFewComparators {
        /// How many the block states.
        found: u8,
    },
    /// The main counter did not move within [`COUNTER_ADVANCE_READS`] reads
    /// after being started (firmware left it broken, or a chipset stops it,
    /// e.g. in PC10).
    CounterNotCounting,
    /// LegacyReplacement routing was asked for, but `LEG_RT_CAP` is clear.
    LegacyUnsupported,
    /// No I/O APIC input is both in the comparator's `Tn_INT_ROUTE_CAP` and
    /// in the set the caller allowed.
    NoRoute {
        /// The comparator's route capability.
        capable: crate::regs::IrqPins,
    },
    /// The comparator did not keep the route written to it.
    RouteRejected {
        /// The input written.
        pin: u8,
    },
    /// The comparator can run neither periodically (no `Tn_PER_INT_CAP`) nor
    /// one-shot (crate built without feature `oneshot`).
    NoUsableMode,
    /// The block has no comparator of this number.
    NoSuchComparator {
        /// The number asked for.
        comparator: u8,
    },
    /// FSB (MSI) delivery was asked for a comparator without
    /// `Tn_FSB_INT_DEL_CAP`, or for other than exactly one CPU.
    FsbUnsupported {
        /// The comparator.
        comparator: u8,
    },
}

impl core::fmt::Display for HpetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HpetError::NoDevice => f.write_str("no device (registers read all ones)"),
            HpetError::BadRevision => f.write_str("REV_ID is 0"),
            HpetError::ZeroPeriod => f.write_str("counter period is 0"),
            HpetError::PeriodTooLong { period } => {
                write!(
                    f,
                    "counter period {} fs > {MAX_PERIOD_FS} fs",
                    period.as_fs()
                )
            }
            HpetError::PeriodTooShort { period } => {
                write!(
                    f,
                    "counter period {} fs < {MIN_PERIOD_FS} fs",
                    period.as_fs()
                )
            }
            HpetError::TooFewComparators { found } => {
                write!(f, "{found} comparators (< {MIN_COMPARATORS})")
            }
            HpetError::CounterNotCounting => f.write_str("main counter does not count"),
            HpetError::LegacyUnsupported => f.write_str("no LegacyReplacement routing"),
            HpetError::NoRoute { capable } => {
                write!(
                    f,
                    "no allowed I/O APIC route (capable {:#x})",
                    capable.bits()
                )
            }
            HpetError::RouteRejected { pin } => write!(f, "route to input {pin} not kept"),
            HpetError::NoUsableMode => f.write_str("the comparator has no usable mode"),
            HpetError::NoSuchComparator { comparator } => {
                write!(f, "no comparator {comparator}")
            }
            HpetError::FsbUnsupported { comparator } => {
                write!(
                    f,
                    "comparator {comparator}: no FSB delivery for one CPU (Tn_FSB_INT_DEL_CAP clear, or not one CPU)"
                )
            }
        }
    }
}

/// Validates the HPET at `mmio`, quiesces its comparators and starts its
/// main counter from 0. See the module docs for the checks.
///
/// On success the counter runs (`ENABLE_CNF` set) and LegacyReplacement is
/// off until an event device asks for it. On [`HpetError::CounterNotCounting`]
/// the counter is halted again. Each refusal is logged at `warn`.
pub fn probe<M: Mmio + ?Sized>(mmio: &M) -> Result<HpetInfo, HpetError> {
    let r = probe_inner(mmio);
    match &r {
        Ok(info) => log::info!(
            "hpet: rev {} vendor {:#06x}, {} comparators, {}-bit counter at {} ({} fs){}",
            info.revision,
            info.vendor_id,
            info.comparators,
            if info.counter_64bit { 64 } else { 32 },
            info.frequency,
            info.period.as_fs(),
            if info.legacy_capable {
                ", legacy routing"
            } else {
                ""
            },
        ),
        Err(e) => log::warn!("hpet: refused: {e}"),
    }
    r
}

fn probe_inner<M: Mmio + ?Sized>(mmio: &M) -> Result<HpetInfo, HpetError> {
    if !(0..CONFIG_READY_READS).any(|_| mmio.read32(GEN_CONF) != u32::MAX) {
        return Err(HpetError::NoDevice);
    }
    let low = mmio.read32(GCAP_ID);
    let high = mmio.read32(GCAP_ID + 4);
    if low == u32::MAX {
        return Err(HpetError::NoDevice);
    }
    let caps = Capabilities::from_halves(low, high);
    if caps.revision() == 0 {
        return Err(HpetError::BadRevision);
    }
    let period = caps.period();
    let frequency = match period.as_fs() {
        0 => return Err(HpetError::ZeroPeriod),
        fs if fs > MAX_PERIOD_FS => return Err(HpetError::PeriodTooLong { period }),
        fs if fs < MIN_PERIOD_FS => return Err(HpetError::PeriodTooShort { period }),
        _ => period.frequency().ok_or(HpetError::ZeroPeriod)?,
    };
    let comparators = caps.comparators();
    if comparators < MIN_COMPARATORS {
        return Err(HpetError::TooFewComparators { found: comparators });
    }

    // Quiesce what firmware may have left running (Linux does the same).
    let gen = mmio.read32(GEN_CONF) as u64;
    let halted = GeneralConfig::from_bits_retain(gen)
        .difference(GeneralConfig::ENABLE_CNF | GeneralConfig::LEG_RT_CNF);
    mmio.write32(GEN_CONF, halted.bits() as u32);
    for n in 0..comparators as usize {
        let cfg = TimerConfig::from_bits_retain(mmio.read32(tn_conf_cap(n)) as u64);
        let quiet = cfg.difference(
            TimerConfig::INT_ENB_CNF | TimerConfig::INT_TYPE_CNF | TimerConfig::FSB_EN_CNF,
        );
        mmio.write32(tn_conf_cap(n), quiet.bits() as u32);
    }
    let all_timers = u32::MAX >> (32 - comparators as u32);
    mmio.write32(GINTR_STA, all_timers);

    // Restart the counter from zero (Linux `hpet_restart_counter()`); the
    // counter is writable only while halted, which it is now.
    mmio.write32(MAIN_CNT, 0);
    mmio.write32(MAIN_CNT + 4, 0);
    let running = halted | GeneralConfig::ENABLE_CNF;
    mmio.write32(GEN_CONF, running.bits() as u32);
    let first = mmio.read32(MAIN_CNT);
    if !(0..COUNTER_ADVANCE_READS).any(|_| mmio.read32(MAIN_CNT) != first) {
        mmio.write32(GEN_CONF, halted.bits() as u32);
        return Err(HpetError::CounterNotCounting);
    }

    Ok(HpetInfo {
        revision: caps.revision(),
        vendor_id: caps.vendor_id(),
        comparators,
        counter_64bit: caps.counter_64bit(),
        legacy_capable: caps.legacy_capable(),
        period,
        frequency,
    })
}
