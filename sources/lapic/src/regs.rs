//! The local APIC registers the timer and its embedder use, as values.
//!
//! Names and layouts follow the Intel SDM Vol. 3A, Table 10-1 ("Local APIC
//! Register Address Map"), §10.5.1 (LVT), §10.5.4 ("APIC Timer"), §10.9
//! (Spurious-Interrupt Vector Register) and §10.12.1.2 (x2APIC register
//! address space: MSR `0x800 + offset / 16`).
//!
//! ```text
//!   LVT Timer Register (0x320 / MSR 0x832)
//!    31        19 18 17 16 15   13 12 11    8 7          0
//!   ┌───────────┬─────┬──┬───────┬──┬───────┬────────────┐
//!   │ reserved  │mode │M │ rsvd  │DS│ rsvd  │   vector   │
//!   └───────────┴─────┴──┴───────┴──┴───────┴────────────┘
//!     mode 00 one-shot, 01 periodic, 10 TSC-deadline, 11 reserved
//!     M = mask (1: no interrupt), DS = delivery status (read-only)
//!
//!   Divide Configuration Register (0x3E0 / MSR 0x83E): bits 3, 1, 0
//!     000 ÷2   001 ÷4   010 ÷8   011 ÷16   100 ÷32   101 ÷64   110 ÷128   111 ÷1
//! ```

/// A local APIC register the timer or its embedder uses (the timer's own,
/// and what every kernel needs beside it: ID, TPR, EOI, SVR, ISR, ESR, ICR
/// for a self-IPI, the LINT and error LVTs).
///
/// The discriminant is the register's xAPIC MMIO offset; the x2APIC MSR is
/// derived from it ([`Reg::msr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Reg {
    /// Local APIC ID Register (read-only here). xAPIC: ID in bits 31:24;
    /// x2APIC: the full 32-bit x2APIC ID.
    Id = 0x20,
    /// Local APIC Version Register (read-only).
    Version = 0x30,
    /// Task Priority Register (TPR).
    Tpr = 0x80,
    /// EOI Register (write-only): writing 0 ends the in-service interrupt.
    Eoi = 0xB0,
    /// Spurious Interrupt Vector Register (SVR): software enable, spurious
    /// vector.
    Svr = 0xF0,
    /// In-Service Register, vectors 0–31 (read-only; ISR1–ISR7 follow,
    /// 0x10 apart: [`Reg::isr`]).
    Isr0 = 0x100,
    /// In-Service Register, vectors 32–63.
    Isr1 = 0x110,
    /// In-Service Register, vectors 64–95.
    Isr2 = 0x120,
    /// In-Service Register, vectors 96–127.
    Isr3 = 0x130,
    /// In-Service Register, vectors 128–159.
    Isr4 = 0x140,
    /// In-Service Register, vectors 160–191.
    Isr5 = 0x150,
    /// In-Service Register, vectors 192–223.
    Isr6 = 0x160,
    /// In-Service Register, vectors 224–255.
    Isr7 = 0x170,
    /// Error Status Register (ESR): a write latches the errors seen since
    /// the last write; x2APIC allows only a write of 0 (SDM §10.5.3).
    Esr = 0x280,
    /// Interrupt Command Register, low half (xAPIC); in x2APIC mode the
    /// whole 64-bit ICR is this MSR, 0x830 (SDM §10.12.9).
    IcrLow = 0x300,
    /// LVT Timer Register (LVTT): vector, mask, timer mode.
    LvtTimer = 0x320,
    /// LVT LINT0 Register: the LINT0 pin (ExtINT from the 8259s on a PC).
    LvtLint0 = 0x350,
    /// LVT LINT1 Register: the LINT1 pin (NMI on a PC).
    LvtLint1 = 0x360,
    /// LVT Error Register: the vector of the APIC error interrupt.
    LvtError = 0x370,
    /// Initial Count Register for the timer (TMICT).
    InitialCount = 0x380,
    /// Current Count Register for the timer (TMCCT, read-only).
    CurrentCount = 0x390,
    /// Divide Configuration Register for the timer (TDCR).
    DivideConfig = 0x3E0,
}

impl Reg {
    /// Every register this crate knows.
    pub const ALL: [Reg; 22] = [
        Reg::Id,
        Reg::Version,
        Reg::Tpr,
        Reg::Eoi,
        Reg::Svr,
        Reg::Isr0,
        Reg::Isr1,
        Reg::Isr2,
        Reg::Isr3,
        Reg::Isr4,
        Reg::Isr5,
        Reg::Isr6,
        Reg::Isr7,
        Reg::Esr,
        Reg::IcrLow,
        Reg::LvtTimer,
        Reg::LvtLint0,
        Reg::LvtLint1,
        Reg::LvtError,
        Reg::InitialCount,
        Reg::CurrentCount,
        Reg::DivideConfig,
    ];

    /// The in-service register holding `vector`'s bit, and the bit: bit
    /// `vector % 32` of ISR `vector / 32` (SDM §10.8.4).
    pub const fn isr(vector: u8) -> (Reg, u32) {
        let reg = match vector / 32 {
            0 => Reg::Isr0,
            1 => Reg::Isr1,
            2 => Reg::Isr2,
            3 => Reg::Isr3,
            4 => Reg::Isr4,
            5 => Reg::Isr5,
            6 => Reg::Isr6,
            _ => Reg::Isr7,
        };
        (reg, 1 << (vector % 32))
    }

    /// Byte offset in the xAPIC MMIO page.
    pub const fn offset(self) -> usize {
        self as usize
    }

    /// The x2APIC MSR: `0x800 + offset / 16` (SDM §10.12.1.2).
    pub const fn msr(self) -> u32 {
        X2APIC_MSR_BASE + (self as usize / 16) as u32
    }

    /// The register at xAPIC offset `offset`, if it is one of these.
    pub fn from_offset(offset: usize) -> Option<Reg> {
        Reg::ALL.into_iter().find(|r| r.offset() == offset)
    }

    /// The register at x2APIC MSR `msr`, if it is one of these.
    pub fn from_msr(msr: u32) -> Option<Reg> {
        Reg::ALL.into_iter().find(|r| r.msr() == msr)
    }
}

/// First MSR of the x2APIC register space.
pub const X2APIC_MSR_BASE: u32 = 0x800;
/// Last MSR of the x2APIC register space.
pub const X2APIC_MSR_LAST: u32 = 0x8FF;
/// `IA32_APIC_BASE` (MSR 0x1B): APIC global enable and x2APIC enable.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// `IA32_TSC_DEADLINE` (MSR 0x6E0): the TSC value at which the timer fires
/// in TSC-deadline mode (SDM §10.5.4.1); 0 disarms.
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;

/// `IA32_APIC_BASE` bit 8: this is the bootstrap processor (read-only).
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// `IA32_APIC_BASE` bit 10 (EXTD): x2APIC mode enable.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// `IA32_APIC_BASE` bit 11 (EN): APIC global enable.
pub const APIC_BASE_EN: u64 = 1 << 11;
/// `IA32_APIC_BASE` bits 12 and up: the xAPIC page's physical address.
pub const APIC_BASE_ADDR_MASK: u64 = !0xFFF;
/// Where firmware leaves the xAPIC page (`0xFEE0_0000`).
pub const APIC_DEFAULT_BASE: u64 = 0xFEE0_0000;

/// SVR bits 7:0: the spurious-interrupt vector.
pub const SVR_VECTOR_MASK: u32 = 0xFF;
/// SVR bit 8: APIC software enable. While clear, every LVT entry is
/// masked and cannot be unmasked (SDM §10.4.7.2).
pub const SVR_APIC_ENABLE: u32 = 1 << 8;
/// SVR bit 9: focus processor checking disabled.
pub const SVR_FOCUS_DISABLE: u32 = 1 << 9;
/// SVR bit 12: suppress EOI broadcasts.
pub const SVR_EOI_BROADCAST_SUPPRESSION: u32 = 1 << 12;
/// The SVR bits software can write.
pub const SVR_WRITABLE: u32 =
    SVR_VECTOR_MASK | SVR_APIC_ENABLE | SVR_FOCUS_DISABLE | SVR_EOI_BROADCAST_SUPPRESSION;
/// SVR after reset: vector 0xFF, software-disabled (SDM §10.4.7.1).
pub const SVR_RESET: u32 = 0xFF;

/// Version register value of an integrated APIC with 6 LVT entries, as
/// QEMU reports it (version 0x14, max LVT entry 5).
pub const VERSION_QEMU: u32 = 0x0005_0014;

/// The timer mode field of the LVT Timer Register (bits 18:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerModeBits {
    /// `00`: one-shot, counts the initial count down to 0 once.
    OneShot,
    /// `01`: periodic, reloads the initial count at 0.
    Periodic,
    /// `10`: TSC-deadline, fires when the TSC reaches `IA32_TSC_DEADLINE`.
    TscDeadline,
    /// `11`: reserved (QEMU treats it as one-shot; so does the model).
    Reserved,
}

impl TimerModeBits {
    /// The field's value (0..=3).
    pub const fn bits(self) -> u32 {
        match self {
            TimerModeBits::OneShot => 0,
            TimerModeBits::Periodic => 1,
            TimerModeBits::TscDeadline => 2,
            TimerModeBits::Reserved => 3,
        }
    }
    /// The mode encoded in the low two bits of `bits`.
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => TimerModeBits::OneShot,
            1 => TimerModeBits::Periodic,
            2 => TimerModeBits::TscDeadline,
            _ => TimerModeBits::Reserved,
        }
    }
}

/// A value of the LVT Timer Register.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LvtTimer(u32);

impl LvtTimer {
    /// Bits 7:0: the interrupt vector.
    pub const VECTOR_MASK: u32 = 0xFF;
    /// Bit 12: delivery status (read-only; 1 = send pending).
    pub const DELIVERY_STATUS: u32 = 1 << 12;
    /// Bit 16: mask (1 = no interrupt).
    pub const MASKED: u32 = 1 << 16;
    /// Bits 18:17: timer mode.
    pub const MODE_SHIFT: u32 = 17;
    /// The mode field's mask.
    pub const MODE_MASK: u32 = 3 << Self::MODE_SHIFT;
    /// The bits software can write (bit 18 only where TSC-deadline exists).
    pub const WRITABLE: u32 = Self::VECTOR_MASK | Self::MASKED | Self::MODE_MASK;
    /// After reset: masked, one-shot, vector 0 (SDM §10.4.7.1).
    pub const RESET: LvtTimer = LvtTimer(Self::MASKED);

    /// The entry for `vector` in `mode`, masked or not.
    pub const fn new(vector: u8, mode: TimerModeBits, masked: bool) -> Self {
        let m = if masked { Self::MASKED } else { 0 };
        LvtTimer(vector as u32 | (mode.bits() << Self::MODE_SHIFT) | m)
    }
    /// A raw register value.
    pub const fn from_bits(bits: u32) -> Self {
        LvtTimer(bits)
    }
    /// The raw register value.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// The vector.
    pub const fn vector(self) -> u8 {
        (self.0 & Self::VECTOR_MASK) as u8
    }
    /// The timer mode.
    pub const fn mode(self) -> TimerModeBits {
        TimerModeBits::from_bits(self.0 >> Self::MODE_SHIFT)
    }
    /// Whether the entry is masked.
    pub const fn is_masked(self) -> bool {
        self.0 & Self::MASKED != 0
    }
    /// The same entry, masked.
    pub const fn masked(self) -> Self {
        LvtTimer(self.0 | Self::MASKED)
    }
    /// The same entry with `vector`.
    pub const fn with_vector(self, vector: u8) -> Self {
        LvtTimer((self.0 & !Self::VECTOR_MASK) | vector as u32)
    }
}

impl core::fmt::Debug for LvtTimer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LvtTimer")
            .field("vector", &self.vector())
            .field("mode", &self.mode())
            .field("masked", &self.is_masked())
            .finish()
    }
}

/// The Divide Configuration Register's value: how the bus clock is divided
/// before it decrements the timer (SDM Figure 10-10). Bit 2 is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Divide {
    /// `0000`: ÷2.
    By2,
    /// `0001`: ÷4.
    By4,
    /// `0010`: ÷8.
    By8,
    /// `0011`: ÷16 (Linux `APIC_DIVISOR`).
    By16,
    /// `1000`: ÷32.
    By32,
    /// `1001`: ÷64.
    By64,
    /// `1010`: ÷128.
    By128,
    /// `1011`: ÷1.
    By1,
}

impl Divide {
    /// The bits of the register that encode the divider (3, 1, 0).
    pub const MASK: u32 = 0b1011;
    /// All eight encodings, in register order.
    pub const ALL: [Divide; 8] = [
        Divide::By2,
        Divide::By4,
        Divide::By8,
        Divide::By16,
        Divide::By32,
        Divide::By64,
        Divide::By128,
        Divide::By1,
    ];

    /// The register value.
    pub const fn bits(self) -> u32 {
        match self {
            Divide::By2 => 0b0000,
            Divide::By4 => 0b0001,
            Divide::By8 => 0b0010,
            Divide::By16 => 0b0011,
            Divide::By32 => 0b1000,
            Divide::By64 => 0b1001,
            Divide::By128 => 0b1010,
            Divide::By1 => 0b1011,
        }
    }

    /// The divider a register value selects (bit 2 and bits above 3 are
    /// ignored, as the hardware does).
    pub const fn from_bits(bits: u32) -> Divide {
        // Bits 1:0 and bit 3 form a 3-bit index; ÷2^(index+1), with 7 → ÷1.
        match (bits & 0b11) | ((bits >> 1) & 0b100) {
            0 => Divide::By2,
            1 => Divide::By4,
            2 => Divide::By8,
            3 => Divide::By16,
            4 => Divide::By32,
            5 => Divide::By64,
            6 => Divide::By128,
            _ => Divide::By1,
        }
    }

    /// The divisor: bus clocks per timer tick.
    pub const fn divisor(self) -> u32 {
        match self {
            Divide::By1 => 1,
            Divide::By2 => 2,
            Divide::By4 => 4,
            Divide::By8 => 8,
            Divide::By16 => 16,
            Divide::By32 => 32,
            Divide::By64 => 64,
            Divide::By128 => 128,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msrs_are_offset_over_16_above_0x800() {
        assert_eq!(Reg::LvtTimer.msr(), 0x832);
        assert_eq!(Reg::InitialCount.msr(), 0x838);
        assert_eq!(Reg::CurrentCount.msr(), 0x839);
        assert_eq!(Reg::DivideConfig.msr(), 0x83E);
        assert_eq!(Reg::Eoi.msr(), 0x80B);
        assert_eq!(Reg::Svr.msr(), 0x80F);
        assert_eq!(Reg::Id.msr(), 0x802);
        for r in Reg::ALL {
            assert_eq!(Reg::from_msr(r.msr()), Some(r));
            assert_eq!(Reg::from_offset(r.offset()), Some(r));
        }
        assert_eq!(Reg::from_offset(0x321), None);
    }

    #[test]
    fn divide_encodings_round_trip_and_match_the_sdm() {
        let divisors: [u32; 8] = [2, 4, 8, 16, 32, 64, 128, 1];
        for (d, want) in Divide::ALL.iter().zip(divisors) {
            assert_eq!(d.divisor(), want);
            assert_eq!(Divide::from_bits(d.bits()), *d);
            // Bit 2 is reserved and ignored.
            assert_eq!(Divide::from_bits(d.bits() | 0b100), *d);
        }
    }

    #[test]
    fn lvt_timer_fields() {
        let v = LvtTimer::new(0xEC, TimerModeBits::TscDeadline, false);
        assert_eq!(v.bits(), 0x0004_00EC);
        assert_eq!(v.mode(), TimerModeBits::TscDeadline);
        assert!(!v.is_masked());
        assert!(v.masked().is_masked());
        assert_eq!(v.with_vector(0x30).vector(), 0x30);
        assert_eq!(
            LvtTimer::new(0x20, TimerModeBits::Periodic, true).bits(),
            0x0003_0020
        );
    }
}
