//! The in-guest test suite, run on the time sources QEMU (or KVM) emulates.
//!
//! `test=<name>[,<name>…]` on the command line picks the tests; each
//! prints one `RESULT` line ([`crate::result`]) that `cargo xtask test`
//! parses into its table, and the run exits pass only if no test failed.
//!
//! | name | what it proves |
//! |---|---|
//! | `periodic` | over 1 s of the selected clocksource, HZ ticks (± tolerance) |
//! | `oneshot` | 1000 high-res timers within 200 ms fire in expiry order, none early; latency |
//! | `nohz` | 2 s idle with a timer at 1.5 s: every wake-up accounted for, exactly |
//! | `clocksource` | the timekeeper is monotonic over 100,000 reads; the clocks agree in rate |
//! | `fallback` | with a source missing, another one took over and the system ticks |
//! | `irq` | the interrupt path: a handler writes no console output; an unhandled vector gets its EOI; only the tick device's interrupts are logged ([`irq`]) |
//! | `all` | `periodic,oneshot,nohz,clocksource,irq` |
//! | `caps` | bring-up only (the boot table and `CONFIG` line) |
//! | `bench`, `bench-*` | benchmarks: `BENCH` lines, no verdict on time ([`bench`]) |
//!
//! Without `test=` the kernel runs [`demo`] instead.
//!
//! # Tolerances, and why
//!
//! Time is the clocksource's, so a figure is off only by what the host does
//! to the guest. On a CPU that runs the guest natively (hardware KVM) the
//! tick arrives on time: ±1 tick, which is the window's phase against the
//! tick grid. Under TCG one vCPU is one host thread that also emulates the
//! devices, and the software KVM of this host emulates the guest's
//! instructions (~500× slower than native, [`Speed`]): an interrupt whose
//! time has passed is delivered late (a one-shot tick is re-armed from
//! "now", a periodic device coalesces), so the tick count of a window may
//! fall short by the ticks that lost a whole period; 8 of 500 were seen.
//! There [`tick_tolerance`] allows 2 % short. Each `RESULT` line carries
//! the tolerance it was judged with.

pub mod bench;
pub mod clocksource;
pub mod demo;
pub mod fallback;
pub mod irq;
pub mod nohz;
pub mod oneshot;
pub mod periodic;

use core::fmt;

use ::clocksource::{Ktime, Nanos};
use raw_cpuid::Hypervisor;
use tick::{TickMode, TickSystem};

pub use crate::idle::{ModeWord, TickState};

use crate::cmdline::Options;
use crate::firmware::Platform;
use crate::kernel::{self, Kernel};
use crate::result::{Line, Verdict};
use crate::sources::Inventory;
use crate::{cpu, println};

/// Under what the guest runs (from the CPUID hypervisor leaf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's binary translator ("TCGTCGTCGTCG").
    Tcg,
    /// KVM ("KVMKVMKVM").
    Kvm,
    /// Anything else (bare metal, another hypervisor).
    Other,
}

impl Accel {
    /// From CPUID.
    pub fn detect() -> Self {
        match cpu::hypervisor() {
            Some(Hypervisor::QEMU) => Accel::Tcg,
            Some(Hypervisor::KVM) => Accel::Kvm,
            _ => Accel::Other,
        }
    }

    /// `tcg` / `kvm` / `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
            Accel::Other => "other",
        }
    }
}

/// How fast the guest's instructions run, measured at boot: fast (native,
/// or TCG's translated code), or slow (instructions emulated one by one,
/// as by the software KVM of this host). Only fast under KVM is held to
/// the tight tolerance: TCG delivers interrupts late however fast it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// 200,000 multiply-adds in under 5 ms (native: ~0.1 ms; TCG ~1.7 ms).
    Fast,
    /// Slower (the emulating KVM here: ~150 ms).
    Slow,
}

impl Speed {
    /// Times 200,000 dependent multiply-adds on the clocksource.
    pub fn measure() -> (Self, Nanos) {
        let t0 = kernel::now();
        let mut x = 1u64;
        for i in 0..200_000u64 {
            x = core::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
        core::hint::black_box(x);
        let d = kernel::now().saturating_since(t0);
        let s = if d < Nanos::from_millis(5) {
            Speed::Fast
        } else {
            Speed::Slow
        };
        (s, d)
    }
}

/// What every test may look at.
pub struct Ctx<'a> {
    /// What bring-up found.
    pub inv: &'a Inventory,
    /// The command line.
    pub opts: &'a Options<'a>,
    /// The firmware's view.
    pub platform: &'a Platform,
    /// TCG or KVM.
    pub accel: Accel,
    /// Whether the interrupt path runs at native speed (see the module docs).
    pub tight: bool,
}

/// The tick count allowance of a window of `expected` ticks: ±1 (the
/// window's phase) when `tight` (native speed under KVM); otherwise also 2 %
/// of the count short, for ticks the host delayed past a whole period (see
/// the module docs: 8 of 500 were seen under TCG; 2 % leaves room for a
/// loaded CI runner).
pub fn tick_tolerance(tight: bool, expected: u64) -> (u64, u64) {
    if tight {
        (1, 1)
    } else {
        (1 + expected / 50, 1)
    }
}

impl TickState {
    /// The state of CPU 0.
    pub fn of(k: &Kernel) -> Self {
        let info = k.tick.cpu_info(0);
        TickState {
            device: info.and_then(|i| i.device).unwrap_or("none"),
            mode: k.tick.mode(0),
            reason: info.and_then(|i| i.periodic_reason),
            hz: k.tick.config().hz,
            clocksource: k.tick.timekeeper().clocksource().name(),
        }
    }

    /// Now, from a running kernel.
    pub fn now() -> Option<Self> {
        kernel::with(|k| TickState::of(k))
    }
}

/// Prints a finished result line and returns its verdict.
pub fn report(mut l: Line, v: Verdict) -> Verdict {
    println!("{}", l.verdict(v));
    v
}

/// A `RESULT` line for a test that cannot run here.
pub fn cannot_run(test: &str, v: Verdict, why: impl fmt::Display) -> Verdict {
    let mut l = Line::result(test);
    if let Some(s) = TickState::now() {
        s.fields(&mut l);
    }
    l.text("reason", why);
    report(l, v)
}

/// Whether this build offers one-shot mode on the device named `dev`
/// (its source's tickless feature; for `lapic-deadline` alone, also a CPU
/// with TSC-deadline and a TSC of known rate, the `tsc` feature).
pub fn tickless_built(dev: &str) -> bool {
    let deadline_usable = cfg!(all(feature = "lapic-deadline", feature = "tsc"))
        && crate::apic::get().is_some_and(|a| a.cpuid().tsc_deadline);
    let lapic = cfg!(feature = "lapic-nohz") || deadline_usable;
    let hpet = cfg!(feature = "hpet-nohz");
    let pit = cfg!(feature = "pit-nohz");
    match dev {
        "hpet" => hpet,
        "pit" => pit,
        d => d.starts_with("lapic") && lapic,
    }
}

/// Why a CPU is not in high-res mode, and whether that fails a test that
/// needs it: a skip when this build or this command line did not ask for
/// it (the device's tickless feature is off, `highres=off`), a failure
/// otherwise (no device, a clock not valid for high-res, a device that
/// should offer one-shot and does not).
pub fn not_highres(state: &TickState) -> (Verdict, crate::result::TextBuf<160>) {
    use tick::PeriodicReason as R;
    let (v, why): (Verdict, &dyn fmt::Display) = match (state.mode, state.reason) {
        (TickMode::NoDevice, _) => (Verdict::Fail, &"no tick device"),
        (_, Some(R::NotRequested)) | (TickMode::NoHzLowRes, _) => {
            (Verdict::Skip, &"high-res not requested (highres=off)")
        }
        (_, Some(R::DeviceLacksOneshot)) if !tickless_built(state.device) => {
            (Verdict::Skip, &"this build offers no one-shot mode on it (its tickless feature is off, or TSC-deadline is unusable here)")
        }
        (_, Some(r)) => (
            Verdict::Fail,
            if matches!(r, R::ClockNotHres) {
                &"clocksource not valid for high resolution"
            } else {
                &"tick device has no one-shot mode"
            },
        ),
        (_, None) => (Verdict::Fail, &"not in high-res mode"),
    };
    (
        v,
        crate::result::TextBuf::format(format_args!("not high-res on {}: {why}", state.device)),
    )
}

/// Runs one named test; `None` for an unknown name.
pub fn run(name: &str, ctx: &Ctx<'_>) -> Option<Verdict> {
    Some(match name {
        "periodic" => periodic::run(ctx),
        "oneshot" => oneshot::run(ctx),
        "nohz" => nohz::run(ctx),
        "clocksource" => clocksource::run(ctx),
        "fallback" => fallback::run(ctx),
        "irq" => irq::run(ctx),
        "caps" => Verdict::Pass,
        n if n.starts_with("bench") => return bench::run(n, ctx),
        _ => return None,
    })
}

/// The tests `all` stands for.
pub const ALL: [&str; 5] = ["periodic", "oneshot", "nohz", "clocksource", "irq"];

/// Busy-waits until the next interrupt has been handled, so a measurement
/// starts just after a tick.
pub fn sync_to_interrupt() {
    let before = kernel::with(|k| k.counts.total()).unwrap_or(0);
    let start = kernel::now();
    while kernel::with(|k| k.counts.total()).unwrap_or(0) == before {
        kernel::halt_once();
        if kernel::now().saturating_since(start) > Nanos::from_secs(1) {
            break;
        }
    }
}

/// Ticks the CPU did in a busy window of about `d`: (ticks, window).
pub fn count_ticks(d: Nanos) -> (u64, Nanos) {
    sync_to_interrupt();
    let snap = || kernel::with(|k| (k.tick.now(), ticks(&k.tick))).unwrap_or((Ktime::ZERO, 0));
    let (t0, n0) = snap();
    kernel::wait_until(t0.saturating_add(d));
    let (t1, n1) = snap();
    (n1.saturating_sub(n0), t1.saturating_since(t0))
}

/// CPU 0's tick count.
pub fn ticks<S, const N: usize>(t: &TickSystem<'_, S, N>) -> u64
where
    S: AsRef<[tick::TimerSlot]> + AsMut<[tick::TimerSlot]>,
{
    t.cpu_info(0).map_or(0, |i| i.stats.ticks)
}

/// Expected ticks in `window` at `hz`, in thousandths.
pub fn expected_milliticks(window: Nanos, hz: u32) -> u64 {
    (window.as_nanos() as u128 * hz as u128 / 1_000_000) as u64
}

/// Whether `ticks` is within tolerance of `expected_milli`/1000.
pub fn ticks_ok(tight: bool, ticks: u64, expected_milli: u64) -> (bool, (u64, u64)) {
    let expected = expected_milli / 1000;
    let (short, over) = tick_tolerance(tight, expected);
    let lo = expected_milli.saturating_sub(short * 1000);
    let hi = expected_milli + over * 1000;
    (ticks * 1000 >= lo && ticks * 1000 <= hi, (short, over))
}

/// Thousandths as `12.345`.
pub struct Milli(pub u64);

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}
