//! The serial console: a 16550 UART on COM1 (I/O port 0x3F8), 115200 8N1,
//! polled; a [`log::Log`] implementation and [`println!`](crate::println).
//!
//! QEMU's `-serial stdio` connects COM1 to the host runner, which captures
//! everything written here. `\n` is sent as `\r\n`, as a terminal expects.
//!
//! # Never from an interrupt handler
//!
//! A polled UART costs ~87 µs a byte at 115200 baud on real hardware: a
//! 100-byte line is ~9 ms, which a handler holding a tick lock with
//! interrupts off would add to every interrupt behind it. So the console
//! is never written from interrupt context, nor by a `log` record made
//! with interrupts disabled (the tick locks are only held so):
//!
//! ```text
//!   log record, interrupts off or in a handler ─┐  format on the stack,
//!   println!, in a handler                      ─┴► RING (klog::Ring): copy, under its lock
//!                                                     (taken only with interrupts off)
//!   normal code, interrupts on: log record, println! ─► drain RING ─► CONSOLE ─► UART
//!   idle and wait loops between halts, exit, panic   ─► drain RING ─► UART
//! ```
//!
//! Records come out in order, each as one line; a record that does not fit
//! the ring is dropped and the drain says how many were. Because no handler
//! takes the console's lock, normal code holds it with interrupts enabled:
//! a long line delays no interrupt. A `println!` from normal code with
//! interrupts disabled (the boot table, printed inside `kernel::with`)
//! still writes directly: that is not the interrupt path.
//!
//! Exception and panic reports use [`emergency_print`], which takes no lock
//! (the fault may have happened while the lock was held), after printing
//! what the ring holds the same way ([`emergency_drain`]); their output may
//! interleave with a line in progress, which is acceptable for a last
//! message.
//!
//! Waiting for the transmitter is bounded: if the UART never becomes ready
//! (no UART at all) bytes are dropped instead of hanging the kernel.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata};
use x86_64::instructions::interrupts::{are_enabled, without_interrupts};
use x86_64::instructions::port::{Port, PortReadOnly, PortWriteOnly};

use crate::arch::interrupts::in_interrupt;
use crate::embed::klog::{Record, Ring, RECORD_MAX};
use crate::rig::result::TextBuf;

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
// Never taken in interrupt context (module docs), so it needs no
// interrupts-off section.
static CONSOLE: spin::Mutex<Uart> = spin::Mutex::new(unsafe { Uart::new(COM1) });

/// The bytes of the log ring.
pub const RING_BYTES: usize = 16 * 1024;

/// Records waiting for the console. Its lock is taken only with interrupts
/// disabled, and held only to copy one record in or out.
static RING: spin::Mutex<Ring<RING_BYTES>> = spin::Mutex::new(Ring::new());
/// Records in [`RING`] (read without its lock, so that the idle loop's
/// check costs no interrupts-off section).
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// [`Ring::dropped`] when a drain last reported it.
static DROPS_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Initialises COM1 and installs the logger at `level`.
///
/// Call once, first thing in `kmain`; a second call only changes the level.
pub fn init(level: LevelFilter) {
    CONSOLE.lock().init();
    // `set_logger` fails only if a logger is already set: that is ours.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Bytes written to the console through its lock so far.
static CONSOLE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes written to the console (not counting [`emergency_print`]): a test
/// reads it around a handler to see that the handler wrote none.
pub fn console_bytes() -> u64 {
    CONSOLE_BYTES.load(Ordering::Relaxed)
}

/// Counts what passes through to the UART.
struct Counting<'a>(&'a mut Uart);

impl Write for Counting<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLE_BYTES.fetch_add(s.len() as u64, Ordering::Relaxed);
        self.0.write_str(s)
    }
}

/// Writes formatted output to the console (used by [`print!`](crate::print)):
/// what the ring holds first, then `args`. In interrupt context `args`
/// goes to the ring instead, as one line.
pub fn print(args: fmt::Arguments<'_>) {
    if in_interrupt() {
        let text = TextBuf::<{ RECORD_MAX + 4 }>::format(args);
        enqueue(text.as_str().strip_suffix('\n').unwrap_or(text.as_str()));
        return;
    }
    drain();
    // `Uart::write_str` never fails.
    let _ = Counting(&mut CONSOLE.lock()).write_fmt(args);
}

/// Copies `line` into the ring as one record.
fn enqueue(line: &str) {
    without_interrupts(|| {
        if RING.lock().push(line) {
            PENDING.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Prints the records waiting in the ring, oldest first, each as a line,
/// and how many were dropped since the last report. Does nothing in
/// interrupt context (the records wait for normal code).
pub fn drain() {
    if in_interrupt() {
        return;
    }
    let mut rec = Record::new();
    while PENDING.load(Ordering::Relaxed) > 0 {
        let (got, dropped) = without_interrupts(|| {
            let mut ring = RING.lock();
            (ring.pop(&mut rec), ring.dropped())
        });
        if !got {
            break;
        }
        PENDING.fetch_sub(1, Ordering::Relaxed);
        let mut console = CONSOLE.lock();
        let _ = write_record(&mut Counting(&mut console), &rec, dropped);
    }
}

/// Records waiting in the ring.
pub fn pending_records() -> usize {
    PENDING.load(Ordering::Relaxed)
}

/// Records the ring could not hold, since boot.
pub fn dropped_records() -> u64 {
    without_interrupts(|| RING.lock().dropped())
}

/// Writes one drained record as a line, after a note of records dropped
/// since the last note.
fn write_record(out: &mut impl Write, rec: &Record, dropped: u64) -> fmt::Result {
    let before = DROPS_REPORTED.swap(dropped, Ordering::Relaxed);
    if dropped > before {
        writeln!(
            out,
            "[log ring full: {} record(s) dropped]",
            dropped - before
        )?;
    }
    let cut = if rec.was_cut() { " [cut]" } else { "" };
    writeln!(out, "{}{cut}", rec.as_str())
}

/// Prints what the ring holds without waiting for either lock: for the
/// panic and exception paths and the exit (a lock may be held by the code
/// that failed; then the records stay unprinted).
pub fn emergency_drain() {
    let Some(mut ring) = RING.try_lock() else {
        return;
    };
    // SAFETY: a second handle to COM1, as in `emergency_print`.
    let mut uart = unsafe { Uart::new(COM1) };
    let mut rec = Record::new();
    while ring.pop(&mut rec) {
        PENDING.fetch_sub(1, Ordering::Relaxed);
        let _ = write_record(&mut uart, &rec, ring.dropped());
    }
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
        $crate::arch::serial::print(::core::format_args!($($arg)*))
    };
}

/// Prints to the serial console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::arch::serial::print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::arch::serial::print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// The `log` backend: one line per record, `[LEVEL target] message`.
struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_args!(
            "[{:<5} {}] {}",
            record.level(),
            record.target(),
            record.args()
        );
        if in_interrupt() || !are_enabled() {
            // Formatted on the stack, outside the ring's lock; copied in.
            // A few bytes more than a record holds: a longer text is then
            // cut (and marked) by the ring.
            enqueue(TextBuf::<{ RECORD_MAX + 4 }>::format(line).as_str());
        } else {
            print(format_args!("{line}\n"));
        }
    }

    fn flush(&self) {}
}
