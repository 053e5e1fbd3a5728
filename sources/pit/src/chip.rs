//! The 8254 behind its ports: typed accesses, each a fixed sequence of
//! port reads and writes.
//!
//! [`Pit`] holds no state; it only turns register values into `outb`/`inb`
//! through [`hw::PortIo`]. Callers serialise sequences on one counter
//! themselves (the byte-order flip-flops are per counter, so sequences on
//! *different* counters do not disturb each other: a control word or
//! latch command is one write to port 0x43 and names its counter).

use hw::PortIo;

use crate::regs::{
    port, ByteAccess, Channel, ControlWord, CountFormat, Mode, PortB, ReadBack, Reload, Status,
};

/// Counter 0 in mode 0, LSB then MSB, binary (Linux writes 0x30 to stop it).
pub const CH0_STOP: ControlWord = ControlWord::program(
    Channel::Ch0,
    ByteAccess::LoHi,
    Mode::InterruptOnTerminalCount,
    CountFormat::Binary,
);

/// The 8254 at its usual ports.
#[derive(Clone, Copy)]
pub struct Pit<'a> {
    io: &'a dyn PortIo,
}

impl<'a> Pit<'a> {
    /// The PIT reached through `io`.
    pub const fn new(io: &'a dyn PortIo) -> Self {
        Pit { io }
    }

    /// Writes a control word (program, latch or read-back) to port 0x43.
    pub fn command(&self, cw: ControlWord) {
        self.io.outb(port::COMMAND, cw.bits());
    }

    /// Writes a count to a counter programmed for [`ByteAccess::LoHi`]:
    /// LSB, then MSB. Mode 0 stops counting at the LSB (OUT low) and loads
    /// the new count on the clock after the MSB.
    pub fn write_reload(&self, channel: Channel, reload: Reload) {
        let [lsb, msb] = reload.register().to_le_bytes();
        self.io.outb(channel.data_port(), lsb);
        self.io.outb(channel.data_port(), msb);
    }

    /// Latches a [`ByteAccess::LoHi`] counter's count and reads it, LSB then
    /// MSB (datasheet "Counter Latch Command"): the latch holds the value
    /// until both bytes are read, so the two bytes belong together even
    /// though the counter moves on.
    pub fn latch_count(&self, channel: Channel) -> u16 {
        self.command(ControlWord::latch(channel));
        let lsb = self.io.inb(channel.data_port());
        let msb = self.io.inb(channel.data_port());
        u16::from_le_bytes([lsb, msb])
    }

    /// Latches and reads a counter's status byte (read-back command with
    /// only STATUS selected).
    pub fn read_status(&self, channel: Channel) -> Status {
        self.command(ControlWord::read_back(ReadBack::new(
            &[channel],
            false,
            true,
        )));
        Status::from_bits_retain(self.io.inb(channel.data_port()))
    }

    /// Reads port B (0x61).
    pub fn port_b(&self) -> PortB {
        PortB::from_bits_retain(self.io.inb(port::PORT_B))
    }

    /// Writes port B's writable bits (the read-only status bits are left
    /// out of the write).
    pub fn set_port_b(&self, value: PortB) {
        self.io
            .outb(port::PORT_B, value.intersection(PortB::WRITABLE).bits());
    }

    /// Stops counter 0 so that it raises no more interrupts, the way Linux's
    /// `clockevent_i8253_disable()` (drivers/clocksource/i8253.c) does:
    ///
    /// 1. mode 0 (`0x30`): on an 8254 this resets the counter and holds OUT0
    ///    low — done;
    /// 2. count 0, 0: some virtual PITs ignore the mode write until a count
    ///    is written (KVM's in-kernel PIT) or until their next interrupt
    ///    (QEMU), and keep firing a masked IRQ0 that costs the host CPU time
    ///    (KVM's arch/x86/kvm/i8254.c re-arms its timer only in
    ///    `pit_load_count()`; Linux's drivers/clocksource/i8253.c stops the
    ///    PIT with the same sequence); loading a count makes them take mode 0;
    /// 3. mode 0 again: the datasheet way to stop, now also on those.
    ///
    /// On an 8254 the count written in step 2 never expires: step 3 resets
    /// the counter before its 65537 clocks pass. On a PIT that defers the
    /// mode, step 2 leaves one shot of 65536 clocks (54.9 ms) pending —
    /// one last interrupt instead of an endless stream.
    pub fn stop_channel0(&self) {
        self.command(CH0_STOP);
        self.write_reload(Channel::Ch0, Reload::MAX);
        self.command(CH0_STOP);
    }
}

impl core::fmt::Debug for Pit<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Pit")
    }
}
