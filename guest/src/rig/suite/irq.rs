//! `irq`: the interrupt path's own rules, checked with interrupts sent to
//! this CPU through the local APIC's ICR (a self-IPI: `int n` is not
//! usable under every KVM, `crate::main`'s self-test says why).
//!
//! - **no console output in a handler**: a handler on [`LOG_VECTOR`] logs
//!   a line; the console's byte count does not move while it runs, the
//!   line is waiting in the log ring ([`crate::embed::klog`]) when the handler
//!   has returned, and a drain by normal code prints it (the console
//!   count grows by at least its length, the ring is empty, nothing was
//!   dropped).
//! - **an unhandled vector is acknowledged**: a self-IPI to
//!   [`UNHANDLED_VECTOR`], which has no handler, in priority class 0xF —
//!   above the LAPIC timer's 0xEC and IRQ0's vector (≤ 0xEF, class 0xE). A
//!   vector left in service (its ISR bit set, no EOI) blocks every vector
//!   of its class and below (SDM vol. 3A §11.8.3, the processor priority):
//!   the timer would never interrupt again. After it, its ISR bit must be
//!   clear and the tick device must interrupt again within
//!   [`DELIVERY_WAIT`] (a tick is due every period, at most 10 ms; the CPU
//!   spins busy meanwhile, so the tick runs).
//! - **only the tick device's interrupts are logged**: with the interrupt
//!   log on (as the `nohz` test has it), a self-IPI to the vector of the
//!   registered device that is *not* the CPU's tick device (the LAPIC
//!   timer's when IRQ0's device ticks, IRQ0's when the LAPIC timer does) —
//!   as a mis-routed or late interrupt of that device would arrive. The log
//!   must hold exactly the tick device's interrupts of that time: the other
//!   one, logged, would be judged against the tick device's programming;
//!   it is counted as not the tick's (`IrqCounts::not_tick`) instead.
//!   Skipped (the field says so) when only one device is registered.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use clockevents::CpuId;
use clocksource::Nanos;

use super::{report, Ctx};
use crate::rig::result::{Line, Verdict};
use crate::{
    arch::cpu, arch::interrupts, arch::serial, embed::kernel, embed::sources, platform::apic,
};

/// The vector of the handler that logs (priority class 0xF, above the
/// LAPIC timer's 0xEC: it is delivered whatever timer work is pending).
pub const LOG_VECTOR: u8 = 0xF2;

/// A vector no handler is registered for, in priority class 0xF.
pub const UNHANDLED_VECTOR: u8 = 0xF1;

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
pub fn run(ctx: &Ctx<'_>) -> Verdict {
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
    let acked = unhandled_is_acknowledged(&mut l);
    let logged_tick_only = other_device_is_not_logged(ctx, &mut l);
    report(
        l,
        Verdict::from_bool(ran && during == 0 && logged_later && acked && logged_tick_only),
    )
}

/// The other-device check (module docs); adds its fields to `l`.
fn other_device_is_not_logged(ctx: &Ctx<'_>, l: &mut Line) -> bool {
    let Some((other_vector, tick_is_lapic)) = kernel::with(|k| {
        let tick = k.tick.cpu_device(CpuId::BOOT)?;
        if k.lapic(0) == Some(tick) {
            let irq0 = k.irq0().and(ctx.inv.irq0)?;
            Some((irq0.1, true))
        } else if k.irq0().is_some_and(|i| i.dev == tick) {
            k.lapic(0).map(|_| (sources::lapic_timer_vector(), false))
        } else {
            None
        }
    })
    .flatten() else {
        l.text("other_device", "none");
        return true;
    };
    // Interrupts per source: (the tick device's, the other one's).
    let counts = || {
        let c = kernel::with(|k| k.counts(0)).unwrap_or_default();
        if tick_is_lapic {
            (c.lapic, c.irq0)
        } else {
            (c.irq0, c.lapic)
        }
    };
    let not_tick = || kernel::with(|k| k.counts(0).not_tick).unwrap_or(0);
    let not_tick_before = not_tick();
    kernel::with_irq_log(|log| log.start(true));
    let before = counts();
    apic::self_ipi(other_vector);
    let arrived = spin_until(|| counts().1 > before.1);
    let (after, logged) = cpu::without_interrupts(|| {
        let after = counts();
        kernel::with_irq_log(|log| {
            log.stop();
            (after, log.records().len() as u64)
        })
    });
    let tick_irqs = after.0 - before.0;
    let counted = not_tick() - not_tick_before;
    l.field("other_vector", format_args!("{other_vector:#04x}"))
        .field("other_arrived", u8::from(arrived))
        .field("logged", logged)
        .field("tick_irqs", tick_irqs)
        .field("not_tick", counted);
    arrived && logged == tick_irqs && counted == 1
}

/// The unhandled-vector check (module docs); adds its fields to `l`.
fn unhandled_is_acknowledged(l: &mut Line) -> bool {
    let unhandled = interrupts::unhandled_count(UNHANDLED_VECTOR);
    apic::self_ipi(UNHANDLED_VECTOR);
    let arrived = spin_until(|| interrupts::unhandled_count(UNHANDLED_VECTOR) > unhandled);
    let stuck = apic::in_service(UNHANDLED_VECTOR);
    let ticks = || kernel::with(|k| k.counts(0).total()).unwrap_or(0);
    let before = ticks();
    let timer_after = spin_until(|| ticks() > before);
    if stuck {
        // Unblock the timer for the tests that follow.
        apic::eoi();
    }
    l.field("unhandled_arrived", u8::from(arrived))
        .field("unhandled_left_in_service", u8::from(stuck))
        .field("timer_after_unhandled", u8::from(timer_after));
    arrived && !stuck && timer_after
}
