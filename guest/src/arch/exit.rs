//! Ending the run: QEMU's `isa-debug-exit` device.
//!
//! QEMU is started with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
//! Writing `v` to port `0xf4` makes QEMU exit at once with status
//! `(v << 1) | 1`, so no value the guest writes can produce status 0. The
//! host side (`xtask`) therefore reads only [`ExitCode::Pass`]'s status as a
//! pass: a guest fail, a triple fault (a reset, which `-no-reboot` turns into
//! QEMU exiting with 0), a hang (killed at the timeout) are all failures.
//!
//! The codes and their statuses are pure and shared with `xtask`; only
//! `exit` (bare metal only) touches the machine.

/// The I/O port of the `isa-debug-exit` device.
pub const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the guest reports when it ends the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for ran and passed.
    Pass,
    /// Something failed: a test, a panic, an unexpected exception.
    Fail,
}

impl ExitCode {
    /// The value written to [`ISA_DEBUG_EXIT_PORT`].
    pub const fn port_value(self) -> u32 {
        match self {
            ExitCode::Pass => 0x10,
            ExitCode::Fail => 0x11,
        }
    }

    /// The exit status of the QEMU process after the guest wrote this code.
    pub const fn qemu_status(self) -> i32 {
        ((self.port_value() << 1) | 1) as i32
    }

    /// The code whose QEMU exit status is `status`, if any.
    pub const fn from_qemu_status(status: i32) -> Option<ExitCode> {
        if status == ExitCode::Pass.qemu_status() {
            Some(ExitCode::Pass)
        } else if status == ExitCode::Fail.qemu_status() {
            Some(ExitCode::Fail)
        } else {
            None
        }
    }
}

/// Ends the run with `code`.
///
/// If no `isa-debug-exit` device is present the write does nothing; then
/// this says so on the serial console and halts with interrupts off, which
/// the host sees as a hang (a failure).
#[cfg(target_os = "none")]
pub fn exit(code: ExitCode) -> ! {
    use x86_64::instructions::port::PortWriteOnly;

    // The log ring's last records, before the machine stops.
    crate::arch::serial::emergency_drain();
    let mut port = PortWriteOnly::<u32>::new(ISA_DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device in the machines we
    // boot on; on a machine without it, the port is unassigned and the write
    // is ignored. Either way no memory is affected.
    unsafe { port.write(code.port_value()) };
    crate::arch::serial::emergency_print(format_args!(
        "\nexit: isa-debug-exit did not stop the machine ({code:?}); halting\n"
    ));
    crate::arch::cpu::halt_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_device_formula() {
        assert_eq!(ExitCode::Pass.qemu_status(), 33);
        assert_eq!(ExitCode::Fail.qemu_status(), 35);
    }

    #[test]
    fn only_the_two_statuses_map_back() {
        assert_eq!(ExitCode::from_qemu_status(33), Some(ExitCode::Pass));
        assert_eq!(ExitCode::from_qemu_status(35), Some(ExitCode::Fail));
        for other in [0, 1, 2, 32, 34, 255, -1] {
            assert_eq!(ExitCode::from_qemu_status(other), None, "{other}");
        }
    }
}
