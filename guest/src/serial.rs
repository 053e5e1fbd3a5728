//! The serial console: a 16550 UART on COM1 (I/O port 0x3F8), 115200 8N1,
//! polled; a [`log::Log`] implementation and [`println!`](crate::println).
//!
//! QEMU's `-serial stdio` connects COM1 to the host runner, which captures
//! everything written here. `\n` is sent as `\r\n`, as a terminal expects.
//!
//! Locking: normal output takes a spin lock *with interrupts disabled*, so
//! an interrupt handler that logs on this CPU can never find the lock held
//! by the code it interrupted. Exception and panic reports use
//! [`emergency_print`], which takes no lock (the fault may have happened
//! while the lock was held); its output may interleave with a line in
//! progress, which is acceptable for a last message.
//!
//! Waiting for the transmitter is bounded: if the UART never becomes ready
//! (no UART at all) bytes are dropped instead of hanging the kernel.

use core::fmt::{self, Write};

use log::{LevelFilter, Log, Metadata, Record};
use x86_64::instructions::port::{Port, PortReadOnly, PortWriteOnly};

/// The I/O base of COM1.
pub const COM1: u16 = 0x3F8;

/// Polls of the line status register before a byte is dropped (~ms on
/// QEMU; a real 115200 baud byte takes 87 µs).
const TX_SPIN_LIMIT: u32 = 100_000;

// Register offsets from the base (16550 datasheet).
const DATA: u16 = 0; // THR (write), divisor low with DLAB
const IER: u16 = 1; // interrupt enable, divisor high with DLAB
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THR_EMPTY: u8 = 1 << 5;

/// A polled 16550 UART.
#[derive(Debug)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// The UART at I/O base `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the base of a 16550-compatible UART (or of nothing),
    /// and only this value may program it.
    pub const unsafe fn new(base: u16) -> Self {
        Uart { base }
    }

    /// Programs 115200 baud (divisor 1), 8 data bits, no parity, 1 stop
    /// bit, FIFOs on, UART interrupts off.
    pub fn init(&mut self) {
        let writes: [(u16, u8); 7] = [
            (IER, 0x00),  // no UART interrupts
            (LCR, 0x80),  // DLAB: the next two are the divisor
            (DATA, 0x01), // divisor low: 115200 / 1
            (IER, 0x00),  // divisor high
            (LCR, 0x03),  // 8N1, DLAB off
            (FCR, 0xC7),  // enable and clear FIFOs, 14-byte threshold
            (MCR, 0x03),  // DTR, RTS; OUT2 off (no IRQ to the PIC)
        ];
        for (reg, value) in writes {
            let mut port = PortWriteOnly::<u8>::new(self.base + reg);
            // SAFETY: a register of the UART this value owns (`new`); the
            // sequence is the standard 16550 initialisation.
            unsafe { port.write(value) };
        }
    }

    /// Sends one byte, waiting (bounded) for room in the transmitter.
    pub fn write_byte(&mut self, byte: u8) {
        let mut lsr = PortReadOnly::<u8>::new(self.base + LSR);
        for _ in 0..TX_SPIN_LIMIT {
            // SAFETY: reading the line status register has no side effect
            // on transmission (it clears only error bits).
            if unsafe { lsr.read() } & LSR_THR_EMPTY != 0 {
                let mut data = Port::<u8>::new(self.base + DATA);
                // SAFETY: the transmitter holding register is empty, so the
                // byte is queued, not lost.
                unsafe { data.write(byte) };
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

// SAFETY: COM1 is the UART at the standard base, and this lock is its only
// owner; `emergency_print` bypasses it by design (see the module docs).
static CONSOLE: spin::Mutex<Uart> = spin::Mutex::new(unsafe { Uart::new(COM1) });

/// Initialises COM1 and installs the logger at `level`.
///
/// Call once, first thing in `kmain`; a second call only changes the level.
pub fn init(level: LevelFilter) {
    without_interrupts_locked(|uart| uart.init());
    // `set_logger` fails only if a logger is already set: that is ours.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

fn without_interrupts_locked<R>(f: impl FnOnce(&mut Uart) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| f(&mut CONSOLE.lock()))
}

/// Writes formatted output to the console (used by [`print!`](crate::print)).
pub fn print(args: fmt::Arguments<'_>) {
    without_interrupts_locked(|uart| {
        // `Uart::write_str` never fails.
        let _ = uart.write_fmt(args);
    });
}

/// Writes formatted output without taking the console lock: for exception
/// and panic reports only.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    // SAFETY: a second handle to COM1. Racing the locked one can at worst
    // interleave bytes; each register access is a single `in`/`out`.
    let mut uart = unsafe { Uart::new(COM1) };
    let _ = uart.write_fmt(args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::serial::print(::core::format_args!($($arg)*))
    };
}

/// Prints to the serial console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::serial::print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::serial::print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// The `log` backend: one line per record, `[LEVEL target] message`.
struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            print(format_args!(
                "[{:<5} {}] {}\n",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}
