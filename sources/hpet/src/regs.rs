//! The register map of one HPET timer block (IA-PC HPET 1.0a, §2.3
//! "Register Descriptions"), with the specification's names.
//!
//! ```text
//!   offset        register                      access
//!   0x000         GCAP_ID     capabilities, ID   RO   period (fs) in 63:32
//!   0x010         GEN_CONF    configuration      RW   ENABLE_CNF, LEG_RT_CNF
//!   0x020         GINTR_STA   interrupt status   RW1C one bit per timer (level mode)
//!   0x0F0         MAIN_CNT    main counter       RW   writable while halted
//!   0x100 + 0x20n Tn_CONF_CAP timer n config     RW   route capability in 63:32 (RO)
//!   0x108 + 0x20n Tn_COMPARATOR                  RW   match value / periodic accumulator
//!   0x110 + 0x20n Tn_FSB_INT_ROUTE               RW   FSB (MSI) address 63:32, data 31:0
//!   ..0x3FF       one block is 1 KiB
//! ```
//!
//! Every register is 64 bits wide and may be accessed as two 32-bit halves
//! (§2.3.1: "32-bit or 64-bit accesses"); the driver uses 32-bit accesses
//! as Linux does, except for reading a 64-bit main counter in one access.

use clocksource::{Cycles, Hertz, Nanos};

/// General Capabilities and ID Register (`GCAP_ID`).
pub const GCAP_ID: usize = 0x000;
/// General Configuration Register (`GEN_CONF`).
pub const GEN_CONF: usize = 0x010;
/// General Interrupt Status Register (`GINTR_STA`).
pub const GINTR_STA: usize = 0x020;
/// Main Counter Value Register (`MAIN_CNT`).
pub const MAIN_CNT: usize = 0x0F0;
/// Size of one timer block's register space (§2.3.1: 1024 bytes).
pub const BLOCK_SIZE: usize = 0x400;
/// The most comparators one block can have (`NUM_TIM_CAP` is 5 bits).
pub const MAX_COMPARATORS: usize = 32;

/// Timer N Configuration and Capability Register (`Tn_CONF_CAP`).
pub const fn tn_conf_cap(n: usize) -> usize {
    0x100 + 0x20 * n
}
/// Timer N Comparator Value Register (`Tn_COMPARATOR`).
pub const fn tn_comparator(n: usize) -> usize {
    0x108 + 0x20 * n
}
/// Timer N FSB Interrupt Route Register (`Tn_FSB_INT_ROUTE`).
pub const fn tn_fsb_int_route(n: usize) -> usize {
    0x110 + 0x20 * n
}

/// Femtoseconds in one nanosecond.
pub const FS_PER_NS: u64 = 1_000_000;

/// The main counter's tick period in femtoseconds (`COUNTER_CLK_PERIOD`,
/// `GCAP_ID` bits 63:32): the unit the HPET states its rate in.
///
/// QEMU's HPET ticks every 10 ns (10 000 000 fs, 100 MHz); a chipset HPET on
/// the 14.31818 MHz crystal every 69 841 279 fs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterPeriod(u32);

impl CounterPeriod {
    /// A period of `fs` femtoseconds.
    pub const fn from_fs(fs: u32) -> Self {
        CounterPeriod(fs)
    }
    /// The period in femtoseconds.
    pub const fn as_fs(self) -> u32 {
        self.0
    }
    /// The counting rate, rounded to nearest (`None` for a zero period).
    pub const fn frequency(self) -> Option<Hertz> {
        Hertz::from_period_fs(self.0 as u64)
    }
    /// The whole number of counter ticks nearest to `d`, computed from the
    /// period exactly (128-bit), not from the rounded frequency. Zero for a
    /// zero period.
    pub fn cycles_in(self, d: Nanos) -> Cycles {
        if self.0 == 0 {
            return Cycles::ZERO;
        }
        let fs = d.as_nanos() as u128 * FS_PER_NS as u128;
        let p = self.0 as u128;
        let c = (fs + p / 2) / p;
        Cycles::new(c.min(u64::MAX as u128) as u64)
    }
    /// How long `c` ticks last, rounded down to whole nanoseconds.
    pub fn duration_of(self, c: Cycles) -> Nanos {
        let ns = c.get() as u128 * self.0 as u128 / FS_PER_NS as u128;
        Nanos::from_nanos(ns.min(u64::MAX as u128) as u64)
    }
}

/// `GCAP_ID`, decoded (IA-PC HPET 1.0a §2.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(u64);

impl Capabilities {
    /// `REV_ID`, bits 7:0.
    const REV_ID: u64 = 0xFF;
    /// `NUM_TIM_CAP`, bits 12:8: the index of the last timer.
    const NUM_TIM_CAP_SHIFT: u32 = 8;
    /// `COUNT_SIZE_CAP`, bit 13: the main counter is 64 bits wide.
    const COUNT_SIZE_CAP: u64 = 1 << 13;
    /// `LEG_RT_CAP`, bit 15: LegacyReplacement routing is supported.
    const LEG_RT_CAP: u64 = 1 << 15;
    /// `VENDOR_ID`, bits 31:16.
    const VENDOR_ID_SHIFT: u32 = 16;
    /// `COUNTER_CLK_PERIOD`, bits 63:32.
    const PERIOD_SHIFT: u32 = 32;

    /// The register as read.
    pub const fn from_bits(bits: u64) -> Self {
        Capabilities(bits)
    }
    /// The register from its two 32-bit halves (offsets 0x000 and 0x004).
    pub const fn from_halves(low: u32, high: u32) -> Self {
        Capabilities(((high as u64) << 32) | low as u64)
    }
    /// Encodes a register value (for models). `comparators` is clamped to
    /// `1..=32`, the range `NUM_TIM_CAP` can state.
    pub const fn encode(
        revision: u8,
        comparators: u8,
        counter_64bit: bool,
        legacy_capable: bool,
        vendor_id: u16,
        period: CounterPeriod,
    ) -> Self {
        let last = match comparators {
            0 => 0,
            n if n as usize > MAX_COMPARATORS => MAX_COMPARATORS as u64 - 1,
            n => n as u64 - 1,
        };
        let mut bits = revision as u64 | (last << Self::NUM_TIM_CAP_SHIFT);
        if counter_64bit {
            bits |= Self::COUNT_SIZE_CAP;
        }
        if legacy_capable {
            bits |= Self::LEG_RT_CAP;
        }
        bits |= (vendor_id as u64) << Self::VENDOR_ID_SHIFT;
        bits |= (period.as_fs() as u64) << Self::PERIOD_SHIFT;
        Capabilities(bits)
    }
    /// The raw register.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// `REV_ID`: the implemented revision; the specification forbids 0.
    pub const fn revision(self) -> u8 {
        (self.0 & Self::REV_ID) as u8
    }
    /// The number of comparators, `NUM_TIM_CAP + 1` (1..=32).
    pub const fn comparators(self) -> u8 {
        (((self.0 >> Self::NUM_TIM_CAP_SHIFT) & 0x1F) + 1) as u8
    }
    /// `COUNT_SIZE_CAP`: whether the main counter is 64 bits wide.
    pub const fn counter_64bit(self) -> bool {
        self.0 & Self::COUNT_SIZE_CAP != 0
    }
    /// `LEG_RT_CAP`: whether LegacyReplacement routing is supported.
    pub const fn legacy_capable(self) -> bool {
        self.0 & Self::LEG_RT_CAP != 0
    }
    /// `VENDOR_ID` (the PCI vendor ID of the implementer).
    pub const fn vendor_id(self) -> u16 {
        (self.0 >> Self::VENDOR_ID_SHIFT) as u16
    }
    /// `COUNTER_CLK_PERIOD`.
    pub const fn period(self) -> CounterPeriod {
        CounterPeriod((self.0 >> Self::PERIOD_SHIFT) as u32)
    }
}

bitflags::bitflags! {
    /// `GEN_CONF` (IA-PC HPET 1.0a §2.3.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GeneralConfig: u64 {
        /// `ENABLE_CNF`: 1 — the main counter runs and timer interrupts may
        /// be raised; 0 — the main counter halts and every timer interrupt
        /// is gated off.
        const ENABLE_CNF = 1 << 0;
        /// `LEG_RT_CNF`: LegacyReplacement routing — timer 0 drives IRQ0
        /// (8259) / I/O APIC input 2, timer 1 drives IRQ8 (RTC); their
        /// `Tn_INT_ROUTE_CNF` are ignored.
        const LEG_RT_CNF = 1 << 1;
    }
}

bitflags::bitflags! {
    /// `Tn_CONF_CAP` (IA-PC HPET 1.0a §2.3.8). Bits named `*_CAP` are
    /// read-only capabilities; `*_CNF` are configuration.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TimerConfig: u64 {
        /// `Tn_INT_TYPE_CNF`: 1 — level-triggered (the status bit in
        /// `GINTR_STA` latches until software writes 1 to it); 0 — edge.
        const INT_TYPE_CNF = 1 << 1;
        /// `Tn_INT_ENB_CNF`: the timer may raise its interrupt. Cleared, the
        /// timer still matches and (level mode) still sets its status bit.
        const INT_ENB_CNF = 1 << 2;
        /// `Tn_TYPE_CNF`: 1 — periodic; 0 — non-periodic ("one-shot").
        /// Writable only if `PER_INT_CAP`.
        const TYPE_CNF = 1 << 3;
        /// `Tn_PER_INT_CAP` (RO): the timer can run periodically.
        const PER_INT_CAP = 1 << 4;
        /// `Tn_SIZE_CAP` (RO): the comparator is 64 bits wide.
        const SIZE_CAP = 1 << 5;
        /// `Tn_VAL_SET_CNF`: the next comparator write of a periodic timer
        /// sets its accumulator (the next match), not only its period.
        /// Clears itself after that write.
        const VAL_SET_CNF = 1 << 6;
        /// `Tn_32MODE_CNF`: run a 64-bit timer as a 32-bit one (compare the
        /// counter's low half; the comparator and accumulator wrap at 2^32).
        const MODE32_CNF = 1 << 8;
        /// `Tn_INT_ROUTE_CNF`, bits 13:9: the I/O APIC input the interrupt
        /// is routed to. A value the timer cannot route to does not stick
        /// (reads back different).
        const INT_ROUTE_CNF = 0x1F << 9;
        /// `Tn_FSB_EN_CNF`: deliver by FSB (MSI) message instead.
        const FSB_EN_CNF = 1 << 14;
        /// `Tn_FSB_INT_DEL_CAP` (RO): FSB delivery is supported.
        const FSB_INT_DEL_CAP = 1 << 15;
        /// `Tn_INT_ROUTE_CAP` (RO), bits 63:32: bit `k` set — the timer can
        /// be routed to I/O APIC input `k`.
        const INT_ROUTE_CAP = 0xFFFF_FFFF << 32;
    }
}

impl TimerConfig {
    const ROUTE_SHIFT: u32 = 9;

    /// `Tn_INT_ROUTE_CNF` as an I/O APIC input number.
    pub const fn int_route(self) -> u8 {
        ((self.bits() & Self::INT_ROUTE_CNF.bits()) >> Self::ROUTE_SHIFT) as u8
    }
    /// `self` with `Tn_INT_ROUTE_CNF` set to `pin` (only its low 5 bits).
    pub const fn with_int_route(self, pin: u8) -> Self {
        let bits = (self.bits() & !Self::INT_ROUTE_CNF.bits())
            | (((pin as u64) & 0x1F) << Self::ROUTE_SHIFT);
        Self::from_bits_retain(bits)
    }
    /// `Tn_INT_ROUTE_CAP` as a set of I/O APIC inputs.
    pub const fn route_cap(self) -> IrqPins {
        IrqPins((self.bits() >> 32) as u32)
    }
    /// `self` with `Tn_INT_ROUTE_CAP` set to `pins` (for models).
    pub const fn with_route_cap(self, pins: IrqPins) -> Self {
        Self::from_bits_retain((self.bits() & 0xFFFF_FFFF) | ((pins.0 as u64) << 32))
    }
}

/// A set of I/O APIC inputs `0..32` (the shape of `Tn_INT_ROUTE_CAP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IrqPins(u32);

impl IrqPins {
    /// No input.
    pub const NONE: IrqPins = IrqPins(0);
    /// Every input.
    pub const ALL: IrqPins = IrqPins(u32::MAX);

    /// The set as a bitmap (bit `k` — input `k`).
    pub const fn from_bits(bits: u32) -> Self {
        IrqPins(bits)
    }
    /// The set holding only `pin` (empty if `pin ≥ 32`).
    pub const fn single(pin: u8) -> Self {
        if pin < 32 {
            IrqPins(1 << pin)
        } else {
            IrqPins(0)
        }
    }
    /// The bitmap.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether `pin` is in the set.
    pub const fn contains(self, pin: u8) -> bool {
        pin < 32 && self.0 & (1 << pin) != 0
    }
    /// Set intersection.
    pub const fn and(self, o: IrqPins) -> IrqPins {
        IrqPins(self.0 & o.0)
    }
    /// The lowest input in the set.
    pub const fn lowest(self) -> Option<u8> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_capabilities_decode_as_qemu_states_them() {
        // QEMU hw/timer/hpet.c: capability 0x8086a001 with NUM_TIM_CAP = 2
        // and a 10 000 000 fs period.
        let low = 0x8086_a001u32 | (2 << 8);
        let c = Capabilities::from_halves(low, 10_000_000);
        assert_eq!(c.revision(), 1);
        assert_eq!(c.comparators(), 3);
        assert!(c.counter_64bit());
        assert!(c.legacy_capable());
        assert_eq!(c.vendor_id(), 0x8086);
        assert_eq!(c.period(), CounterPeriod::from_fs(10_000_000));
        assert_eq!(
            c,
            Capabilities::encode(1, 3, true, true, 0x8086, CounterPeriod::from_fs(10_000_000))
        );
    }

    #[test]
    fn route_field_round_trips_and_keeps_other_bits() {
        let c = TimerConfig::INT_ENB_CNF | TimerConfig::PER_INT_CAP;
        let r = c.with_int_route(20);
        assert_eq!(r.int_route(), 20);
        assert!(r.contains(TimerConfig::INT_ENB_CNF | TimerConfig::PER_INT_CAP));
        assert_eq!(r.with_int_route(2).int_route(), 2);
        let cap = TimerConfig::empty().with_route_cap(IrqPins::from_bits(0x00FF_0104));
        assert_eq!(cap.route_cap().lowest(), Some(2));
        assert!(cap.route_cap().contains(16) && !cap.route_cap().contains(3));
    }

    #[test]
    fn period_conversions_are_exact_from_femtoseconds() {
        let qemu = CounterPeriod::from_fs(10_000_000);
        assert_eq!(qemu.cycles_in(Nanos::from_millis(4)), Cycles::new(400_000));
        assert_eq!(qemu.frequency(), Some(Hertz::new(100_000_000)));
        let ich = CounterPeriod::from_fs(69_841_279);
        // 4 ms at 14.318 MHz: 57 272.7 ticks → 57 273.
        assert_eq!(ich.cycles_in(Nanos::from_millis(4)), Cycles::new(57_273));
        assert_eq!(
            ich.duration_of(Cycles::new(1 << 32)).as_nanos() / 1_000_000,
            299_966
        );
        assert_eq!(CounterPeriod::from_fs(0).frequency(), None);
    }
}
