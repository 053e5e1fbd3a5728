//! `irq`: the interrupt path's own rules, checked with interrupts sent to
//! this CPU through the local APIC's ICR (a self-IPI: `int n` is not
//! usable under every KVM, `crate::main`'s self-test says why).
//!
//! - **no console output in a handler**: a handler on [`LOG_VECTOR`] logs
//!   a line; the console's byte count does not move while it runs, the
//!   line is waiting in the log ring ([`crate::klog`]) when the handler
//!   has returned, and a drain by normal code prints it (the console
//!   count grows by at least its length, the ring is empty, nothing was
//!   dropped).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use clocksource::Nanos;

use super::{report, Ctx};
use crate::result::{Line, Verdict};
use crate::{apic, interrupts, kernel, serial};

/// The vector of the handler that logs (priority class 0xF, above the
/// LAPIC timer's 0xEC: it is delivered whatever timer work is pending).
pub const LOG_VECTOR: u8 = 0xF2;

/// How long to wait for a self-IPI's handler (it runs at once; this only
/// bounds a failure).
const DELIVERY_WAIT: Nanos = Nanos::from_millis(100);

/// The logging handler's line is at least this long ("irq: a line logged
/// inside the handler", without the level and target).
const LOG_LINE_MIN: u64 = 36;

static LOG_HANDLER_RUNS: AtomicU32 = AtomicU32::new(0);
/// Console bytes written while the logging handler ran.
static LOG_HANDLER_CONSOLE: AtomicU64 = AtomicU64::new(0);

fn log_handler(_vector: u8) {
    let before = serial::console_bytes();
    log::info!("irq: a line logged inside the handler of vector {LOG_VECTOR:#04x}");
    LOG_HANDLER_CONSOLE.store(serial::console_bytes() - before, Ordering::Relaxed);
    LOG_HANDLER_RUNS.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
}

/// Spins (interrupts enabled) until `done` or [`DELIVERY_WAIT`] has passed.
fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let start = kernel::now();
    while !done() {
        if kernel::now().saturating_since(start) > DELIVERY_WAIT {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Runs the test.
pub fn run(_ctx: &Ctx<'_>) -> Verdict {
    let mut l = Line::result("irq");
    if let Some(s) = super::TickState::now() {
        s.fields(&mut l);
    }
    if let Err(e) = interrupts::register(LOG_VECTOR, log_handler) {
        l.text("reason", e);
        return report(l, Verdict::Fail);
    }
    let runs = LOG_HANDLER_RUNS.load(Ordering::Relaxed);
    apic::self_ipi(LOG_VECTOR);
    let ran = spin_until(|| LOG_HANDLER_RUNS.load(Ordering::Relaxed) > runs);
    interrupts::unregister(LOG_VECTOR);
    let during = LOG_HANDLER_CONSOLE.load(Ordering::Relaxed);
    let waiting = serial::pending_records();
    let before = serial::console_bytes();
    serial::drain();
    let drained = serial::console_bytes() - before;
    let left = serial::pending_records();
    let dropped = serial::dropped_records();
    l.field("log_handler_ran", u8::from(ran))
        .field("handler_console_bytes", during)
        .field("waiting_after_handler", waiting)
        .field("drained_bytes", drained)
        .field("ring_dropped", dropped);
    let logged_later = waiting >= 1 && left == 0 && drained >= LOG_LINE_MIN && dropped == 0;
    report(l, Verdict::from_bool(ran && during == 0 && logged_later))
}
