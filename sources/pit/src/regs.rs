//! The 8254's registers as values (Intel 8254 datasheet, "Control Word
//! Format", "Read-Back Command", "Status Byte"; IBM PC/AT port B at 0x61).
//!
//! A register value is built once, as a typed value, and written once
//! (STYLE §3): the control word that starts the periodic tick is
//!
//! ```
//! use pit::regs::{ByteAccess, Channel, ControlWord, CountFormat, Mode};
//! const PERIODIC: ControlWord = ControlWord::program(
//!     Channel::Ch0,
//!     ByteAccess::LoHi,
//!     Mode::RateGenerator,
//!     CountFormat::Binary,
//! );
//! assert_eq!(PERIODIC.bits(), 0x34); // Linux's `outb_p(0x34, PIT_MODE)`
//! ```
//!
//! The same types decode what a guest writes, for the model (feature
//! `model`).

use clocksource::{Cycles, Hertz, Nanos, NSEC_PER_SEC};

/// The 8254's input clock on every PC: 14.31818 MHz / 12 = 1 193 181.67 Hz,
/// which Linux rounds to `PIT_TICK_RATE` = 1 193 182 Hz
/// (include/linux/timex.h). The model counts at exactly this rate.
pub const PIT_TICK_RATE: Hertz = Hertz::new(1_193_182);

/// I/O ports (IBM PC/AT).
pub mod port {
    /// Counter 0 data: the system timer, OUT0 wired to IRQ0.
    pub const CHANNEL0: u16 = 0x40;
    /// Counter 1 data: DRAM refresh on the AT, unused since.
    pub const CHANNEL1: u16 = 0x41;
    /// Counter 2 data: the speaker timer, GATE2 and OUT2 on port B.
    pub const CHANNEL2: u16 = 0x42;
    /// The control word register (write only).
    pub const COMMAND: u16 = 0x43;
    /// System control port B (NMI status and control).
    pub const PORT_B: u16 = 0x61;
}

/// One of the three counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Counter 0 (IRQ0).
    Ch0 = 0,
    /// Counter 1.
    Ch1 = 1,
    /// Counter 2 (gate and output on port B).
    Ch2 = 2,
}

impl Channel {
    /// All three, in order.
    pub const ALL: [Channel; 3] = [Channel::Ch0, Channel::Ch1, Channel::Ch2];

    /// The counter's data port.
    pub const fn data_port(self) -> u16 {
        port::CHANNEL0 + self as u16
    }
    /// 0, 1 or 2.
    pub const fn index(self) -> usize {
        self as usize
    }
    /// The counter selected by `SC1 SC0` (`None` for 0b11, the read-back
    /// command).
    pub const fn from_select(sc: u8) -> Option<Channel> {
        match sc & 3 {
            0 => Some(Channel::Ch0),
            1 => Some(Channel::Ch1),
            2 => Some(Channel::Ch2),
            _ => None,
        }
    }
}

/// How a counter's 16-bit count crosses its 8-bit data port (`RW1 RW0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteAccess {
    /// Least significant byte only (the MSB is 0).
    Lsb = 1,
    /// Most significant byte only (the LSB is 0).
    Msb = 2,
    /// LSB first, then MSB, through a byte-order flip-flop.
    LoHi = 3,
}

impl ByteAccess {
    /// From `RW1 RW0`; `None` for 0b00 (the counter-latch command).
    pub const fn from_bits(rw: u8) -> Option<ByteAccess> {
        match rw & 3 {
            1 => Some(ByteAccess::Lsb),
            2 => Some(ByteAccess::Msb),
            3 => Some(ByteAccess::LoHi),
            _ => None,
        }
    }
}

/// The counting mode (`M2 M1 M0`). Codes 6 and 7 are modes 2 and 3 (the
/// datasheet marks M2 as "don't care" for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Mode 0: OUT low from the count write, high at terminal count, stays
    /// high. The count loads on the CLK after it is written, so OUT rises
    /// N+1 clocks after the write.
    InterruptOnTerminalCount = 0,
    /// Mode 1: OUT low from the clock after a GATE rising edge until
    /// terminal count.
    HardwareRetriggerableOneShot = 1,
    /// Mode 2: periodic; OUT low for one clock when the count reaches 1,
    /// then the count reloads. Period N clocks.
    RateGenerator = 2,
    /// Mode 3: periodic square wave, high ⌈N/2⌉ clocks, low ⌊N/2⌋.
    SquareWave = 3,
    /// Mode 4: OUT high; one clock low at terminal count.
    SoftwareTriggeredStrobe = 4,
    /// Mode 5: like mode 4, started by a GATE rising edge.
    HardwareTriggeredStrobe = 5,
}

impl Mode {
    /// From `M2 M1 M0` (6 → 2, 7 → 3).
    pub const fn from_bits(m: u8) -> Mode {
        match m & 7 {
            0 => Mode::InterruptOnTerminalCount,
            1 => Mode::HardwareRetriggerableOneShot,
            2 | 6 => Mode::RateGenerator,
            3 | 7 => Mode::SquareWave,
            4 => Mode::SoftwareTriggeredStrobe,
            _ => Mode::HardwareTriggeredStrobe,
        }
    }
    /// The mode number, 0..=5.
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// Whether a counter counts in binary (0..65536) or BCD (0..10000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountFormat {
    /// 16-bit binary.
    Binary = 0,
    /// Four BCD decades.
    Bcd = 1,
}

/// A byte written to the control word register (port 0x43).
///
/// | bits | field | meaning |
/// |------|-------|---------|
/// | 7:6 | `SC1 SC0` | counter 0, 1, 2; `11` = read-back command |
/// | 5:4 | `RW1 RW0` | `00` counter latch, `01` LSB, `10` MSB, `11` LSB then MSB |
/// | 3:1 | `M2 M1 M0` | mode 0..5 |
/// | 0 | `BCD` | 0 binary, 1 BCD |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlWord(u8);

/// What a control word asks for, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Program a counter: resets its control logic (datasheet: "all
    /// control logic is immediately reset and OUT goes to a known initial
    /// state").
    Program {
        /// The counter.
        channel: Channel,
        /// The byte access for its count.
        access: ByteAccess,
        /// The mode.
        mode: Mode,
        /// Binary or BCD.
        format: CountFormat,
        /// The raw `M2 M1 M0` written (reported back in the status byte).
        mode_bits: u8,
    },
    /// Counter-latch command: freeze the counter's output latch until read.
    Latch(Channel),
    /// Read-back command.
    ReadBack(ReadBack),
}

impl ControlWord {
    /// Programs `channel`.
    pub const fn program(
        channel: Channel,
        access: ByteAccess,
        mode: Mode,
        format: CountFormat,
    ) -> Self {
        ControlWord((channel as u8) << 6 | (access as u8) << 4 | (mode as u8) << 1 | format as u8)
    }
    /// The counter-latch command for `channel` (`RW = 00`).
    pub const fn latch(channel: Channel) -> Self {
        ControlWord((channel as u8) << 6)
    }
    /// A read-back command.
    pub const fn read_back(rb: ReadBack) -> Self {
        ControlWord(rb.bits())
    }
    /// The byte as written.
    pub const fn from_bits(bits: u8) -> Self {
        ControlWord(bits)
    }
    /// The byte to write.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// What the byte asks for.
    pub const fn decode(self) -> Command {
        let b = self.0;
        let Some(channel) = Channel::from_select(b >> 6) else {
            return Command::ReadBack(ReadBack::from_bits(b));
        };
        match ByteAccess::from_bits(b >> 4) {
            None => Command::Latch(channel),
            Some(access) => Command::Program {
                channel,
                access,
                mode: Mode::from_bits(b >> 1),
                format: if b & 1 == 0 {
                    CountFormat::Binary
                } else {
                    CountFormat::Bcd
                },
                mode_bits: (b >> 1) & 7,
            },
        }
    }
}

/// The read-back command (datasheet "Read-Back Command"): `11` in bits
/// 7:6, then `COUNT` (bit 5) and `STATUS` (bit 4), both **active low**,
/// then one select bit per counter (`CNT2` bit 3, `CNT1` bit 2, `CNT0`
/// bit 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadBack(u8);

impl ReadBack {
    /// Latch, for every counter in `channels`, its count (if `count`) and
    /// its status (if `status`).
    pub const fn new(channels: &[Channel], count: bool, status: bool) -> Self {
        let mut b = 0xC0u8;
        if !count {
            b |= 1 << 5;
        }
        if !status {
            b |= 1 << 4;
        }
        let mut i = 0;
        while i < channels.len() {
            b |= 1 << (channels[i] as u8 + 1);
            i += 1;
        }
        ReadBack(b)
    }
    /// The command as written.
    pub const fn from_bits(bits: u8) -> Self {
        ReadBack(bits | 0xC0)
    }
    /// The byte to write to port 0x43.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether counts are latched.
    pub const fn count(self) -> bool {
        self.0 & (1 << 5) == 0
    }
    /// Whether status bytes are latched.
    pub const fn status(self) -> bool {
        self.0 & (1 << 4) == 0
    }
    /// Whether `channel` is selected.
    pub const fn selects(self, channel: Channel) -> bool {
        self.0 & (1 << (channel as u8 + 1)) != 0
    }
}

bitflags::bitflags! {
    /// The status byte a read-back command latches (datasheet "Status
    /// Byte"): OUT, NULL COUNT, and the counter's programmed control bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Status: u8 {
        /// `OUTPUT`: the level of the counter's OUT pin.
        const OUTPUT = 1 << 7;
        /// `NULL COUNT`: a count (or control word) was written and has not
        /// been loaded into the counting element yet.
        const NULL_COUNT = 1 << 6;
        /// `RW1`.
        const RW1 = 1 << 5;
        /// `RW0`.
        const RW0 = 1 << 4;
        /// `M2`.
        const M2 = 1 << 3;
        /// `M1`.
        const M1 = 1 << 2;
        /// `M0`.
        const M0 = 1 << 1;
        /// `BCD`.
        const BCD = 1 << 0;
    }
}

impl Status {
    /// The programmed byte access.
    pub fn access(self) -> Option<ByteAccess> {
        ByteAccess::from_bits(self.bits() >> 4)
    }
    /// The programmed mode.
    pub fn mode(self) -> Mode {
        Mode::from_bits(self.bits() >> 1)
    }
}

bitflags::bitflags! {
    /// System control port B (0x61) as the PC/AT defines it. Bits 0–3 are
    /// read/write; bits 4–7 are status, read only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PortB: u8 {
        /// GATE2: counter 2 counts while set.
        const TIMER2_GATE = 1 << 0;
        /// Speaker data: OUT2 reaches the speaker while set.
        const SPEAKER_DATA = 1 << 1;
        /// Disables the parity-check NMI.
        const PARITY_CHECK_DISABLE = 1 << 2;
        /// Disables the channel-check NMI.
        const CHANNEL_CHECK_DISABLE = 1 << 3;
        /// Refresh request: toggles every 15.085 µs (18 PIT clocks).
        const REFRESH = 1 << 4;
        /// OUT2, read only.
        const TIMER2_OUT = 1 << 5;
        /// Channel check (IOCHK) NMI pending.
        const CHANNEL_CHECK = 1 << 6;
        /// Parity error (SERR) NMI pending.
        const PARITY_ERROR = 1 << 7;
    }
}

impl PortB {
    /// The bits software may write.
    pub const WRITABLE: PortB = PortB::TIMER2_GATE
        .union(PortB::SPEAKER_DATA)
        .union(PortB::PARITY_CHECK_DISABLE)
        .union(PortB::CHANNEL_CHECK_DISABLE);
}

/// A count as the counting element takes it: 1..=65536 input clocks. The
/// 16-bit register value 0 stands for 65536 (datasheet: "the maximum
/// count is obtained by writing a zero").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reload(u32);

impl Reload {
    /// The longest count: 65536 clocks, 54.925 ms.
    pub const MAX: Reload = Reload(1 << 16);

    /// A count of `clocks`; `None` outside 1..=65536.
    pub const fn new(clocks: u32) -> Option<Reload> {
        if clocks >= 1 && clocks <= 1 << 16 {
            Some(Reload(clocks))
        } else {
            None
        }
    }
    /// A count of `c` clocks; `None` outside 1..=65536.
    pub const fn from_cycles(c: Cycles) -> Option<Reload> {
        if c.get() > 1 << 16 {
            return None;
        }
        Reload::new(c.get() as u32)
    }
    /// The count nearest to `period` at [`PIT_TICK_RATE`] (Linux rounds
    /// the same way: `PIT_LATCH = (PIT_TICK_RATE + HZ/2) / HZ`); `None` if
    /// that is outside 1..=65536.
    pub fn nearest_to(period: Nanos) -> Option<Reload> {
        let num = period.as_nanos() as u128 * PIT_TICK_RATE.get() as u128;
        let clocks = (num + NSEC_PER_SEC as u128 / 2) / NSEC_PER_SEC as u128;
        if clocks > 1 << 16 {
            return None;
        }
        Reload::new(clocks as u32)
    }
    /// Input clocks.
    pub const fn clocks(self) -> u32 {
        self.0
    }
    /// The value written to the data port (65536 → 0).
    pub const fn register(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
}

/// Linux's `PIT_LATCH` for a tick rate: `(PIT_TICK_RATE + hz/2) / hz`
/// (include/linux/i8253.h), 11932 at HZ=100. `hz` of 0 is taken as 1.
pub const fn pit_latch(hz: u32) -> u32 {
    let hz = if hz == 0 { 1 } else { hz as u64 };
    ((PIT_TICK_RATE.get() + hz / 2) / hz) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_words_match_linux() {
        // drivers/clocksource/i8253.c and arch/x86/kernel/tsc.c.
        let periodic = ControlWord::program(
            Channel::Ch0,
            ByteAccess::LoHi,
            Mode::RateGenerator,
            CountFormat::Binary,
        );
        assert_eq!(periodic.bits(), 0x34);
        let stop = ControlWord::program(
            Channel::Ch0,
            ByteAccess::LoHi,
            Mode::InterruptOnTerminalCount,
            CountFormat::Binary,
        );
        assert_eq!(stop.bits(), 0x30);
        // Linux's one-shot 0x38 is mode 4 (software strobe), not mode 0.
        assert_eq!(
            ControlWord::from_bits(0x38).decode(),
            Command::Program {
                channel: Channel::Ch0,
                access: ByteAccess::LoHi,
                mode: Mode::SoftwareTriggeredStrobe,
                format: CountFormat::Binary,
                mode_bits: 4,
            }
        );
        let calib = ControlWord::program(
            Channel::Ch2,
            ByteAccess::LoHi,
            Mode::InterruptOnTerminalCount,
            CountFormat::Binary,
        );
        assert_eq!(calib.bits(), 0xB0);
        assert_eq!(ControlWord::latch(Channel::Ch0).bits(), 0x00);
        assert_eq!(
            ControlWord::latch(Channel::Ch2).decode(),
            Command::Latch(Channel::Ch2)
        );
    }

    #[test]
    fn modes_6_and_7_alias_2_and_3() {
        assert_eq!(Mode::from_bits(6), Mode::RateGenerator);
        assert_eq!(Mode::from_bits(7), Mode::SquareWave);
    }

    #[test]
    fn read_back_bits_are_active_low() {
        let rb = ReadBack::new(&[Channel::Ch0, Channel::Ch2], true, false);
        assert_eq!(rb.bits(), 0b1101_1010);
        assert!(rb.count() && !rb.status());
        assert!(rb.selects(Channel::Ch0) && !rb.selects(Channel::Ch1));
        assert_eq!(
            ControlWord::read_back(rb).decode(),
            Command::ReadBack(rb),
            "SC = 11 decodes as read-back"
        );
    }

    #[test]
    fn reload_zero_register_means_65536() {
        assert_eq!(Reload::MAX.register(), 0);
        assert_eq!(Reload::new(0), None);
        assert_eq!(Reload::new(65_537), None);
        assert_eq!(
            Reload::from_cycles(Cycles::new(0x7FFF)).unwrap().register(),
            0x7FFF
        );
    }

    #[test]
    fn tick_periods_round_like_pit_latch() {
        for hz in [100, 250, 300, 1000] {
            let period = Nanos::from_nanos((NSEC_PER_SEC + hz as u64 / 2) / hz as u64);
            assert_eq!(
                Reload::nearest_to(period).unwrap().clocks(),
                pit_latch(hz),
                "HZ={hz}"
            );
        }
        assert_eq!(pit_latch(100), 11_932);
        assert_eq!(pit_latch(250), 4_773);
        assert_eq!(pit_latch(1000), 1_193);
        // HZ=18 would need 66288 clocks: more than the counter holds.
        assert_eq!(Reload::nearest_to(Nanos::from_nanos(55_555_556)), None);
    }
}
