//! Where interrupts go: the exception reports and the handler table.
//!
//! Every IDT entry leads, through a stub in [`crate::arch::idt`], to
//! `dispatch` with the vector, the error code (0 where the CPU pushes
//! none) and the interrupt frame:
//!
//! ```text
//!  vector   0–31   exception: #BP (3) is reported and returns; every other
//!                  one is reported (vector, name, error code, RIP, CR2 for
//!                  #PF) and ends the run with ExitCode::Fail
//!          32–254  the handler registered for the vector, or, if none,
//!                  counted (`unhandled_count`), logged the first time, and
//!                  given its EOI if the local APIC has it in service
//!            255   the local APIC's spurious vector: ignored (no EOI)
//! ```
//!
//! # Handlers
//!
//! A handler is a plain `fn(vector: u8)`, registered with [`register`] for
//! a fixed vector or given one by [`allocate`]. It runs with interrupts
//! disabled (interrupt gates) on the interrupted stack, and **must send the
//! EOI itself** (the dispatcher does not know which controller raised the
//! vector: local APIC, IOAPIC line, ...). It must not block or take a lock
//! the interrupted code could hold. It may log (`log`, `println!`): while
//! [`in_interrupt`] says so, that goes to the log ring
//! ([`crate::embed::klog`]), never to the console, and is printed after the
//! handler by normal code ([`crate::arch::serial`]).
//!
//! The table is lock-free (one atomic word per vector), so registering from
//! normal code can never deadlock against the interrupt path.

use core::fmt;
use core::ops::RangeInclusive;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::exit::{exit, ExitCode};
use crate::arch::serial::emergency_print;

/// A handler for one vector; it receives the vector it was called for.
pub type Handler = fn(vector: u8);

/// The first vector that is not a CPU exception.
pub const FIRST_EXTERNAL_VECTOR: u8 = 32;
/// The local APIC's spurious-interrupt vector (set in its SVR): ignored.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// The vectors [`allocate`] hands out. 0x20–0x2F are left to the remapped
/// PIC (see [`crate::platform::pic`]); above 0xEF sit the fixed system vectors a
/// driver may [`register`] directly (higher vector = higher APIC priority
/// class).
pub const DYNAMIC_VECTORS: RangeInclusive<u8> = 0x30..=0xEF;

/// The #BP (`int3`) exception vector.
pub const BREAKPOINT_VECTOR: u8 = 3;
/// The #PF exception vector.
pub const PAGE_FAULT_VECTOR: u8 = 14;

/// Why a handler could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// Exceptions (0–31) and the spurious vector cannot take handlers.
    Reserved(u8),
    /// The vector already has a handler.
    Busy(u8),
    /// Every vector in [`DYNAMIC_VECTORS`] is taken.
    NoFreeVector,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Reserved(v) => write!(f, "vector {v:#04x} is reserved"),
            RegisterError::Busy(v) => write!(f, "vector {v:#04x} already has a handler"),
            RegisterError::NoFreeVector => write!(f, "no free vector"),
        }
    }
}

/// What the CPU pushed on interrupt entry (Intel SDM vol. 3, 6.14.1).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct InterruptFrame {
    /// Where the interrupted code resumes (for faults: the faulting
    /// instruction).
    pub rip: u64,
    /// The interrupted code segment.
    pub cs: u64,
    /// The interrupted RFLAGS.
    pub rflags: u64,
    /// The interrupted stack pointer.
    pub rsp: u64,
    /// The interrupted stack segment.
    pub ss: u64,
}

/// 0 = no handler; otherwise a `Handler` stored as a `usize`.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static UNHANDLED: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
/// Per CPU ([`crate::arch::smp::this_cpu`]): handlers running (nested
/// ones included).
static DEPTH: [AtomicU32; crate::arch::smp::MAX_CPUS] =
    [const { AtomicU32::new(0) }; crate::arch::smp::MAX_CPUS];

/// Whether an interrupt handler is running on the calling CPU.
pub fn in_interrupt() -> bool {
    DEPTH[crate::arch::smp::this_cpu()].load(Ordering::Relaxed) > 0
}

fn check_vector(vector: u8) -> Result<(), RegisterError> {
    if vector < FIRST_EXTERNAL_VECTOR || vector == SPURIOUS_VECTOR {
        Err(RegisterError::Reserved(vector))
    } else {
        Ok(())
    }
}

/// Makes `handler` the handler of `vector` (32–254).
pub fn register(vector: u8, handler: Handler) -> Result<(), RegisterError> {
    check_vector(vector)?;
    HANDLERS[usize::from(vector)]
        .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| RegisterError::Busy(vector))
}

/// Gives `handler` the highest free vector of [`DYNAMIC_VECTORS`] and
/// returns it (program the device to raise that vector afterwards).
pub fn allocate(handler: Handler) -> Result<u8, RegisterError> {
    DYNAMIC_VECTORS
        .rev()
        .find(|&v| register(v, handler).is_ok())
        .ok_or(RegisterError::NoFreeVector)
}

/// Removes the handler of `vector`; returns whether there was one. Stop the
/// device raising the vector first: an interrupt that arrives afterwards is
/// counted as unhandled.
pub fn unregister(vector: u8) -> bool {
    check_vector(vector).is_ok() && HANDLERS[usize::from(vector)].swap(0, Ordering::AcqRel) != 0
}

/// How many times `vector` arrived with no handler registered.
pub fn unhandled_count(vector: u8) -> u64 {
    UNHANDLED[usize::from(vector)].load(Ordering::Relaxed)
}

/// How many `int3` breakpoints were taken (and returned from).
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// Called by the IDT stubs (`crate::arch::idt`) for every vector, with
/// interrupts disabled.
pub(crate) extern "sysv64" fn dispatch(vector: u64, error_code: u64, frame: &InterruptFrame) {
    // The stubs push vectors 0..=255 only.
    let vector = vector as u8;
    if vector < FIRST_EXTERNAL_VECTOR {
        exception(vector, error_code, frame);
        return;
    }
    if vector == SPURIOUS_VECTOR {
        return;
    }
    let depth = &DEPTH[crate::arch::smp::this_cpu()];
    depth.fetch_add(1, Ordering::Relaxed);
    external(vector);
    depth.fetch_sub(1, Ordering::Relaxed);
}

/// An external interrupt or IPI: its handler, or the unhandled count.
fn external(vector: u8) {
    let raw = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if raw != 0 {
        // SAFETY: the only non-zero values ever stored in HANDLERS are
        // `Handler` function pointers cast to usize (`register`), and a
        // function pointer round-trips through usize on x86_64.
        let handler = unsafe { core::mem::transmute::<usize, Handler>(raw) };
        handler(vector);
    } else {
        unhandled(vector);
    }
}

/// A vector with no handler: counted, logged the first time, and
/// acknowledged if the local APIC has it in service.
///
/// Unacknowledged, its in-service bit would stay set and block every
/// vector of its priority class and below — the timers' included — for
/// good. As Linux's `handle_spurious_interrupt`
/// (arch/x86/kernel/apic/apic.c), the ISR bit is checked first and the
/// EOI sent only if it is set: a vector that did not come through the
/// local APIC (none here: the 8259s are masked) is not in service, and an
/// EOI then would acknowledge another, in-service, interrupt.
fn unhandled(vector: u8) {
    if crate::platform::apic::in_service(vector) {
        crate::platform::apic::eoi();
    }
    if UNHANDLED[usize::from(vector)].fetch_add(1, Ordering::Relaxed) == 0 {
        log::warn!(
            "interrupt on vector {vector:#04x} with no handler (counted, acknowledged, logged once)"
        );
    }
}

fn exception(vector: u8, error_code: u64, frame: &InterruptFrame) {
    if vector == BREAKPOINT_VECTOR {
        BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        // RIP is past the `int3`: returning resumes the code. What the log
        // ring holds came first.
        crate::arch::serial::emergency_drain();
        emergency_print(format_args!("#BP breakpoint at rip={:#x}\n", frame.rip));
        return;
    }
    crate::arch::serial::emergency_drain();
    emergency_print(format_args!(
        "\nEXCEPTION {vector} {}: error_code={error_code:#x} rip={:#x} cs={:#x} \
         rflags={:#x} rsp={:#x}\n",
        exception_name(vector),
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
    ));
    if vector == PAGE_FAULT_VECTOR {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        emergency_print(format_args!("  page fault address cr2={cr2:#x}\n"));
    }
    exit(ExitCode::Fail)
}

/// The exception's mnemonic and name (Intel SDM vol. 3, table 6-1).
pub const fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range exceeded",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        9 => "coprocessor segment overrun",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack-segment fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating-point error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating-point",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        28 => "#HV hypervisor injection",
        29 => "#VC VMM communication",
        30 => "#SX security exception",
        _ => "reserved",
    }
}
