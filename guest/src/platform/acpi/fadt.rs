//! What the Fixed ACPI Description Table (ACPI 6.5 §5.2.9;
//! signature `FACP`) says about the ACPI PM timer.
//!
//! ```text
//!  76 PM_TMR_BLK (4): the timer's I/O port (ACPI 1.0 field)
//!  91 PM_TMR_LEN (1): 4 when the timer is supported, else 0
//! 112 Flags (4): bit 8 TMR_VAL_EXT (the counter has 32 bits, else 24)
//! 208 X_PM_TMR_BLK: Generic Address Structure (12), ACPI 2.0 and later
//! ```
//!
//! Each field is read only when the table's `Length` covers it. The
//! extended block is preferred when the table is long enough and its
//! address is not 0; otherwise the ACPI 1.0 port serves (the X fields
//! "are optional extensions", so a zero one falls back to the old field, as
//! in Linux's `acpi_parse_fadt`, `arch/x86/kernel/acpi/boot.c`). The timer
//! is read with port I/O here, so a block in another address space, a port
//! above 0xFFFF, or a `PM_TMR_LEN` other than 4 leaves no PM timer.

use core::fmt;

use super::sdt::{u32_at, Gas, Sdt, TableError};
use super::PhysMem;

/// Offset of `PM_TMR_BLK`.
const PM_TMR_BLK: usize = 76;
/// Offset of `PM_TMR_LEN`.
const PM_TMR_LEN: usize = 91;
/// Offset of `Flags`.
const FLAGS: usize = 112;
/// Offset of `X_PM_TMR_BLK`.
const X_PM_TMR_BLK: usize = 208;
/// The bytes read: up to the end of `X_PM_TMR_BLK`.
const READ_LEN: usize = X_PM_TMR_BLK + Gas::LEN;
/// `Flags` bit 8.
pub const TMR_VAL_EXT: u32 = 1 << 8;

/// Where the PM timer is, if the FADT says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmTimer {
    /// An I/O port.
    Port {
        /// The port.
        port: u16,
        /// From `X_PM_TMR_BLK` (else `PM_TMR_BLK`).
        extended: bool,
    },
    /// The FADT names none (both blocks 0, or beyond its length).
    Absent,
    /// A block is named but cannot be used.
    Unusable(PmTimerProblem),
}

/// Why a named PM timer block cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmTimerProblem {
    /// `X_PM_TMR_BLK` is not in system I/O space.
    NotIo {
        /// Its `Address Space ID`.
        space: u8,
    },
    /// `X_PM_TMR_BLK`'s address does not fit a port number.
    PortTooHigh {
        /// The address.
        address: u64,
    },
    /// `PM_TMR_LEN` is not 4 (or beyond the table's length: `None`).
    BadLength {
        /// `PM_TMR_LEN`.
        len: Option<u8>,
    },
}

impl fmt::Display for PmTimerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PmTimerProblem::NotIo { space } => write!(
                f,
                "X_PM_TMR_BLK in address space {space} ({}), not system I/O",
                Gas::space_name(space)
            ),
            PmTimerProblem::PortTooHigh { address } => {
                write!(f, "X_PM_TMR_BLK address {address:#x} is no I/O port")
            }
            PmTimerProblem::BadLength { len: Some(l) } => write!(f, "PM_TMR_LEN is {l}, not 4"),
            PmTimerProblem::BadLength { len: None } => {
                f.write_str("PM_TMR_LEN lies beyond the table's length")
            }
        }
    }
}

/// The FADT's PM timer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fadt {
    /// Where the timer is.
    pub pm_timer: PmTimer,
    /// `Flags`, if the table's length covers them.
    pub flags: Option<u32>,
}

impl Fadt {
    /// Reads the fields from `table` (signature `FACP`).
    pub fn read<M: PhysMem + ?Sized>(mem: &M, table: &Sdt) -> Result<Self, TableError> {
        let mut b = [0u8; READ_LEN];
        Ok(Self::parse(table.read_prefix(mem, &mut b)?))
    }

    /// The fields in `table`, the table's first bytes (header included;
    /// shorter than the fields' offsets when the table is).
    pub fn parse(table: &[u8]) -> Self {
        let flags = u32_at(table, FLAGS);
        let pm_timer = match Gas::at(table, X_PM_TMR_BLK).filter(|g| g.address != 0) {
            Some(g) if g.space != Gas::SYSTEM_IO => {
                PmTimer::Unusable(PmTimerProblem::NotIo { space: g.space })
            }
            Some(g) => match u16::try_from(g.address) {
                Ok(port) => PmTimer::Port {
                    port,
                    extended: true,
                },
                Err(_) => PmTimer::Unusable(PmTimerProblem::PortTooHigh { address: g.address }),
            },
            None => match u32_at(table, PM_TMR_BLK).unwrap_or(0) {
                0 => PmTimer::Absent,
                port => match (table.get(PM_TMR_LEN).copied(), u16::try_from(port)) {
                    (Some(4), Ok(port)) => PmTimer::Port {
                        port,
                        extended: false,
                    },
                    (Some(4), Err(_)) => PmTimer::Unusable(PmTimerProblem::PortTooHigh {
                        address: u64::from(port),
                    }),
                    (len, _) => PmTimer::Unusable(PmTimerProblem::BadLength { len }),
                },
            },
        };
        Fadt { pm_timer, flags }
    }

    /// `TMR_VAL_EXT`: the PM timer counts 32 bits (else 24).
    pub fn pm_timer_32bit(&self) -> bool {
        self.flags.is_some_and(|f| f & TMR_VAL_EXT != 0)
    }
}
