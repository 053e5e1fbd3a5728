//! Counter 0 as the clock-event device "pit" (Linux
//! drivers/clocksource/i8253.c, `i8253_clockevent`).
//!
//! ```text
//!   state         control word           count writes          OUT0 / IRQ0
//!   shutdown      0x30, 0x00 0x00, 0x30  (see Pit::stop_channel0) held low
//!   periodic(p)   0x34 (mode 2)          N = round(p·f), LSB MSB every N clocks
//!   oneshot       0x30 (mode 0)          —                      held low
//!   next(Δ)       —                      Δ, LSB MSB             rises Δ+1 clocks
//!                                                               after the MSB
//! ```
//!
//! One-shot mode (feature `oneshot`) uses mode 0, "interrupt on terminal
//! count": writing the LSB stops the counter and drives OUT0 low, the
//! count loads on the clock after the MSB, and OUT0 rises when it reaches
//! zero — `Δ + 1` clocks after the write, never fewer than `Δ`, so an event
//! is never early and never missed (a down-counter has no comparator
//! race, so [`DeviceError::TooLate`] never occurs). Linux programs `0x38`,
//! which is mode 4 (software-triggered strobe, one clock later); either
//! gives one rising edge per count written.
//!
//! Limits, as Linux registers them: deltas 0xF..=0x7FFF clocks
//! (12.57 µs ..= 27.46 ms). The counter itself holds up to 65536 clocks
//! (54.9 ms); Linux takes half of that. A NO_HZ CPU on the PIT is therefore
//! woken at least every 27.46 ms, and a periodic tick needs HZ ≥ 19.
//!
//! Rating 0, as Linux's `i8253_clockevent` (no `.rating`): the PIT is the
//! device of last resort, taken only when nothing else covers the CPU.
//! Global (one device for the whole machine, not `PERCPU`) and running in
//! every C-state (not `C3STOP`), which is why Linux uses it as the
//! broadcast device when there is no HPET.

use clockevents::{
    ClockEventDevice, CpuMask, DeviceError, DeviceInfo, Features, NextEvent, Programming,
};
use clocksource::{Cycles, Nanos};

use crate::chip::{Pit, CH0_STOP};
use crate::regs::{ByteAccess, Channel, ControlWord, CountFormat, Mode, Reload, PIT_TICK_RATE};

/// The device's name.
pub const NAME: &str = "pit";
/// Linux's `min_delta` for the PIT: 0xF clocks (12.57 µs).
pub const MIN_DELTA: Cycles = Cycles::new(0xF);
/// Linux's `max_delta` for the PIT: 0x7FFF clocks (27.46 ms), half of what
/// the 16-bit counter holds.
pub const MAX_DELTA: Cycles = Cycles::new(0x7FFF);
/// Linux's rating for the PIT clock-event device.
pub const RATING: u16 = 0;

/// Counter 0, mode 2 (rate generator), LSB/MSB, binary: `0x34`.
pub const PERIODIC: ControlWord = ControlWord::program(
    Channel::Ch0,
    ByteAccess::LoHi,
    Mode::RateGenerator,
    CountFormat::Binary,
);
/// Counter 0, mode 0 (interrupt on terminal count), LSB/MSB, binary: `0x30`.
pub const ONESHOT: ControlWord = CH0_STOP;

/// What this build offers: `PERIODIC`, plus `ONESHOT` with the `oneshot`
/// feature.
pub const FEATURES: Features = if cfg!(feature = "oneshot") {
    Features::PERIODIC.union(Features::ONESHOT)
} else {
    Features::PERIODIC
};

/// PIT counter 0 as a clock-event device.
///
/// The clockevents core serialises calls per device, and nothing else
/// touches counter 0, so the driver needs no lock of its own (Linux's
/// `i8253_lock` also covers the clocksource, which here is counter 2 with
/// its own lock: see [`crate::source`]).
#[derive(Debug)]
pub struct PitClockEvent<'a> {
    pit: Pit<'a>,
    cpus: CpuMask,
}

impl<'a> PitClockEvent<'a> {
    /// Counter 0 of `pit`, delivering IRQ0 to `cpus` (Linux: the boot CPU,
    /// widened when it becomes the broadcast device).
    pub const fn new(pit: Pit<'a>, cpus: CpuMask) -> Self {
        PitClockEvent { pit, cpus }
    }

    /// The PIT.
    pub fn pit(&self) -> Pit<'a> {
        self.pit
    }
}

impl ClockEventDevice for PitClockEvent<'_> {
    fn info(&self) -> DeviceInfo {
        let programming = Programming::Cycles {
            frequency: PIT_TICK_RATE,
            min_delta: MIN_DELTA,
            max_delta: MAX_DELTA,
        };
        DeviceInfo::new(NAME, programming, self.cpus)
            .with_features(FEATURES)
            .with_rating(RATING)
    }

    /// Linux's shutdown sequence ([`Pit::stop_channel0`]), also at attach:
    /// a PIT left running by firmware stops raising IRQ0.
    fn set_state_shutdown(&self) -> Result<(), DeviceError> {
        self.pit.stop_channel0();
        Ok(())
    }

    /// Mode 2 with the count nearest to `period` (11932 at HZ=100, Linux's
    /// `PIT_LATCH`): IRQ0 every N clocks, the first N+1 clocks after the
    /// count write. A period outside 2..=65536 clocks (838 ns ..= 54.9 ms;
    /// a count of 1 is illegal in mode 2) is refused.
    ///
    /// On an 8254 the mode-2 control word sets OUT0 high at once; coming
    /// from shutdown or one-shot (mode 0, OUT0 low) that is a rising edge,
    /// so the 8259 raises one IRQ0 at the switch, before the first period
    /// (the model does the same; QEMU and KVM, which recompute OUT only at
    /// the count write, do not). The tick layer takes it as an early tick;
    /// time is unaffected (it comes from the clocksource).
    fn set_state_periodic(&self, period: Nanos) -> Result<(), DeviceError> {
        let Some(reload) = Reload::nearest_to(period).filter(|r| r.clocks() >= 2) else {
            log::warn!("pit: periodic period {period} outside 2..=65536 PIT clocks");
            return Err(DeviceError::Unsupported);
        };
        self.pit.command(PERIODIC);
        self.pit.write_reload(Channel::Ch0, reload);
        Ok(())
    }

    /// Mode 0 without a count: OUT0 low, nothing counting until the first
    /// [`program`](ClockEventDevice::program).
    fn set_state_oneshot(&self) -> Result<(), DeviceError> {
        if !FEATURES.contains(Features::ONESHOT) {
            return Err(DeviceError::Unsupported);
        }
        self.pit.command(ONESHOT);
        Ok(())
    }

    /// Writes the delta ([`NextEvent::In`]; a counter takes no deadline) as
    /// the mode-0 count: IRQ0 `delta + 1` clocks later.
    /// A delta of 0 or above 65536 is refused (65536 is written as 0, which
    /// the counter takes as its maximum).
    fn program(&self, next: NextEvent) -> Result<(), DeviceError> {
        let NextEvent::In(delta) = next else {
            return Err(DeviceError::Unsupported);
        };
        if !FEATURES.contains(Features::ONESHOT) {
            return Err(DeviceError::Unsupported);
        }
        let Some(reload) = Reload::from_cycles(delta) else {
            log::warn!("pit: one-shot delta {delta} outside 1..=65536");
            return Err(DeviceError::Unsupported);
        };
        self.pit.write_reload(Channel::Ch0, reload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::port;
    use clockevents::NextEvent::In;
    use std::vec::Vec;

    /// Records every port write; reads return 0.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(u16, u8)>>);
    impl hw::PortIo for Recorder {
        fn inb(&self, _port: u16) -> u8 {
            0
        }
        fn outb(&self, port: u16, value: u8) {
            self.0.lock().unwrap().push((port, value));
        }
    }
    impl Recorder {
        fn take(&self) -> Vec<(u16, u8)> {
            core::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn dev(io: &Recorder) -> PitClockEvent<'_> {
        PitClockEvent::new(Pit::new(io), CpuMask::single(clockevents::CpuId::BOOT))
    }

    #[test]
    fn periodic_hz100_writes_linux_pit_latch() {
        let io = Recorder::default();
        dev(&io).set_state_periodic(Nanos::from_millis(10)).unwrap();
        // 0x34, then PIT_LATCH = 11932 = 0x2E9C, LSB first.
        assert_eq!(
            io.take(),
            [
                (port::COMMAND, 0x34),
                (port::CHANNEL0, 0x9C),
                (port::CHANNEL0, 0x2E)
            ]
        );
    }

    #[test]
    fn shutdown_writes_the_double_mode_sequence() {
        let io = Recorder::default();
        dev(&io).set_state_shutdown().unwrap();
        assert_eq!(
            io.take(),
            [
                (port::COMMAND, 0x30),
                (port::CHANNEL0, 0),
                (port::CHANNEL0, 0),
                (port::COMMAND, 0x30)
            ]
        );
    }

    #[test]
    fn periodic_outside_the_counter_range_is_refused() {
        let io = Recorder::default();
        let d = dev(&io);
        // HZ=18 needs 66288 clocks; 1 µs rounds to a count of 1 (illegal).
        assert_eq!(
            d.set_state_periodic(Nanos::from_nanos(55_555_556)),
            Err(DeviceError::Unsupported)
        );
        assert_eq!(
            d.set_state_periodic(Nanos::from_micros(1)),
            Err(DeviceError::Unsupported)
        );
        assert!(io.take().is_empty(), "nothing written");
    }

    #[test]
    fn declares_linux_limits_and_no_percpu_or_c3stop() {
        let io = Recorder::default();
        let d = dev(&io).info();
        // Linux's drivers/clocksource/i8253.c: min 0xF, max 0x7FFF cycles of
        // the 1.193182 MHz input clock (8254 datasheet), rating 0.
        assert_eq!(
            d.delta_range(),
            Some((Cycles::new(0xF), Cycles::new(0x7FFF)))
        );
        assert_eq!(d.rating, 0);
        assert_eq!(d.frequency(), Some(clocksource::Hertz::new(1_193_182)));
        assert!(!d.features.intersects(Features::PERCPU | Features::C3STOP));
        assert_eq!(
            d.features.contains(Features::ONESHOT),
            cfg!(feature = "oneshot")
        );
    }

    #[cfg(feature = "oneshot")]
    #[test]
    fn oneshot_writes_mode0_then_counts_only() {
        let io = Recorder::default();
        let d = dev(&io);
        d.set_state_oneshot().unwrap();
        d.program(In(Cycles::new(0x7FFF))).unwrap();
        d.program(In(Cycles::new(0xF))).unwrap();
        assert_eq!(
            io.take(),
            [
                (port::COMMAND, 0x30),
                (port::CHANNEL0, 0xFF),
                (port::CHANNEL0, 0x7F),
                (port::CHANNEL0, 0x0F),
                (port::CHANNEL0, 0x00)
            ]
        );
        assert_eq!(d.program(In(Cycles::ZERO)), Err(DeviceError::Unsupported));
        assert_eq!(
            d.program(In(Cycles::new(0x1_0001))),
            Err(DeviceError::Unsupported)
        );
    }

    #[cfg(not(feature = "oneshot"))]
    #[test]
    fn without_the_feature_oneshot_calls_are_refused() {
        let io = Recorder::default();
        let d = dev(&io);
        assert_eq!(d.set_state_oneshot(), Err(DeviceError::Unsupported));
        assert_eq!(
            d.program(In(Cycles::new(100))),
            Err(DeviceError::Unsupported)
        );
        assert!(io.take().is_empty());
    }
}
