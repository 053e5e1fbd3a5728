//! The in-guest test suite, run on the time sources QEMU (or KVM) emulates.
//!
//! `test=<name>[,<name>…]` on the command line picks the tests; each
//! prints one `RESULT` line ([`crate::rig::result`]) that `cargo xtask test`
//! parses into its table, and the run exits pass only if no test failed.
//!
//! | name | what it proves |
//! |---|---|
//! | `periodic` | over 1 s of the selected clocksource, the ticks come at HZ (median interval ± 1 %), lost ones bounded and shown; jiffies exact |
//! | `oneshot` | 1000 high-res timers within 200 ms fire in expiry order, none early; latency |
//! | `nohz` | 2 s idle with a timer at 1.5 s: every wake-up accounted for, exactly |
//! | `clocksource` | the timekeeper is monotonic over 100,000 reads; the clocks agree in rate |
//! | `fallback` | with a source missing, another one took over and the system ticks |
//! | `irq` | the interrupt path: a handler writes no console output; an unhandled vector gets its EOI; only the tick device's interrupts are logged ([`irq`]) |
//! | `smp` | every CPU the MADT lists came up (INIT-SIPI-SIPI), each with its MADT APIC ID ([`smp`]) |
//! | `smp-periodic`, `smp-nohz`, `smp-cross`, `smp-broadcast`, `smp-duty` | every CPU's own tick: at HZ, NO_HZ idle per CPU, timers across CPUs, broadcast in deep idle, the timekeeping duty handed over ([`smp_tick`]) |
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
//! tick grid. Under TCG one vCPU is one host thread beside QEMU's device
//! thread, and the software KVM of this host emulates the guest's
//! instructions (~500× slower than native, [`Speed`]): an interrupt whose
//! time has passed is delivered late, and one more than a period late is
//! lost for good (a periodic device coalesces its edges; a one-shot tick
//! is re-armed on the next grid point). This host stalls threads past a
//! 4 ms period several times a second even when idle
//! ([`crate::rig::expect::TickAccount`] has the measurement), so a tick count
//! says more about the host than about us; instead a window is judged by
//! what the host cannot move ([`TickWindow::judge`]): jiffies exact, the
//! ticks at HZ by their median interval (± 1 %), none more than the window
//! holds, and the lost ones bounded ([`LossBound`]: at most one natively,
//! one in twenty under TCG, one in ten under the emulating KVM), a window
//! past that measured again up to three times, as the host's losses come in
//! bursts. Each `RESULT` line carries the lost ticks, the gaps they were
//! lost in, the longest one and the windows measured.

pub mod bench;
pub mod clocksource;
pub mod demo;
pub mod fallback;
pub mod irq;
pub mod nohz;
pub mod oneshot;
pub mod periodic;
pub mod smp;
pub mod smp_tick;
pub mod timeline;

use core::fmt;

use ::clocksource::{Ktime, Nanos};
use clockevents::CpuId;
use raw_cpuid::Hypervisor;
use tick::{TickMode, TickSystem};

pub use crate::rig::idle::{ModeWord, TickState};

use crate::arch::cmdline::Options;
use crate::embed::kernel::{self, Kernel, IRQ_LOG_LEN};
use crate::embed::sources::Inventory;
use crate::platform::firmware::Platform;
use crate::rig::expect::{LossBound, Micros, TickAccount, MEASURE_ATTEMPTS};
use crate::rig::result::{Line, Verdict};
use crate::{arch::cpu, println};

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
/// as by the software KVM of this host). With the accelerator it picks the
/// tick tests' [`LossBound`]: native only when fast under KVM (TCG
/// delivers interrupts late however fast it runs), emulated when slow.
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
    /// How many ticks the host may lose in a window, by how the guest runs
    /// (native, translated, emulated: see the module docs).
    pub loss: LossBound,
}

impl TickState {
    /// The state of CPU 0.
    pub fn of(k: &Kernel) -> Self {
        let info = k.tick.cpu_info(CpuId::BOOT);
        TickState {
            device: info.and_then(|i| i.device).unwrap_or("none"),
            mode: k.tick.mode(CpuId::BOOT),
            reason: info.and_then(|i| i.periodic_reason),
            // Validated by the core: 1..=10000.
            hz: u32::try_from(k.tick.config().hz().get()).unwrap_or(u32::MAX),
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
        && crate::platform::apic::get().is_some_and(|a| a.cpuid().tsc_deadline);
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
pub fn not_highres(state: &TickState) -> (Verdict, crate::rig::result::TextBuf<160>) {
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
        crate::rig::result::TextBuf::format(format_args!(
            "not high-res on {}: {why}",
            state.device
        )),
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
        "smp" => smp::run(ctx),
        "smp-periodic" => smp_tick::periodic(ctx),
        "smp-nohz" => smp_tick::nohz(ctx),
        "smp-cross" => smp_tick::cross(ctx),
        "smp-broadcast" => smp_tick::broadcast(ctx),
        "smp-duty" => smp_tick::duty(ctx),
        "irq" => irq::run(ctx),
        "caps" => Verdict::Pass,
        n if n.starts_with("bench") => return bench::run(n, ctx),
        _ => return None,
    })
}

/// The tests `all` stands for.
pub const ALL: [&str; 5] = ["periodic", "oneshot", "nohz", "clocksource", "irq"];

/// The tests `test=` names, in order, with `all` standing for [`ALL`].
pub fn named<'a>(opts: &Options<'a>) -> impl Iterator<Item = &'a str> {
    opts.tests().flat_map(|word| {
        let all = word == "all";
        let expanded = ALL.iter().copied().filter(move |_| all);
        expanded.chain(core::iter::once(word).filter(move |_| !all))
    })
}

/// Busy-waits until the next interrupt has been handled, so a measurement
/// starts just after a tick.
pub fn sync_to_interrupt() {
    let before = kernel::with(|k| k.counts(0).total()).unwrap_or(0);
    let start = kernel::now();
    while kernel::with(|k| k.counts(0).total()).unwrap_or(0) == before {
        kernel::halt_once();
        if kernel::now().saturating_since(start) > Nanos::from_secs(1) {
            break;
        }
    }
}

/// A busy window's ticks ([`count_ticks`]).
#[derive(Debug, Clone, Copy)]
pub struct TickWindow {
    /// Ticks the tick layer counted.
    pub ticks: u64,
    /// The window, on the clocksource.
    pub window: Nanos,
    /// The tick period.
    pub period: Nanos,
    /// Jiffies from the window's first tick interrupt to its last, as each
    /// left them.
    pub jiffies: u64,
    /// Tick-grid points between those two interrupts' entries:
    /// `⌊aₙ/P⌋ − ⌊a₀/P⌋`, the jiffies they must be apart (jiffies move in
    /// interrupts, from the clocksource: `tick::TickSystem::jiffies`),
    /// give or take one for a grid point that fell between an entry and
    /// the handler's clock read.
    pub grid_points: u64,
    /// Where the ticks went, from the interrupt log.
    pub account: TickAccount,
    /// Tick-device interrupts the log saw that did no tick work.
    pub without_tick: u64,
    /// Interrupts that did not fit the log.
    pub dropped: u64,
}

/// The ticks of a busy window of about `d` ([`count_ticks`]), measured
/// again while the host lost more than its [`LossBound`] allows (at
/// most [`MEASURE_ATTEMPTS`] windows): the window that lost fewest, and how
/// many were measured.
pub fn measure_ticks(d: Nanos, loss: LossBound) -> (TickWindow, u32) {
    let mut best = count_ticks(d);
    let mut attempts = 1;
    while attempts < MEASURE_ATTEMPTS && !best.account.lost_ok(loss) {
        let w = count_ticks(d);
        attempts += 1;
        if w.account.lost < best.account.lost {
            best = w;
        }
    }
    (best, attempts)
}

/// The ticks the CPU did in a busy window of about `d`, with the
/// interrupt log on to see where each went.
pub fn count_ticks(d: Nanos) -> TickWindow {
    sync_to_interrupt();
    let snap = || {
        kernel::with(|k| (k.tick.now(), ticks(k.tick), k.tick.period())).unwrap_or((
            Ktime::ZERO,
            0,
            Nanos::ZERO,
        ))
    };
    kernel::with_irq_log(|l| l.start(true));
    let (t0, n0, period) = snap();
    kernel::wait_until(t0.saturating_add(d));
    let (t1, n1, _) = snap();
    kernel::with_irq_log(|l| l.stop());
    let mut arrivals = [Ktime::ZERO; IRQ_LOG_LEN];
    let mut scratch = [0u64; IRQ_LOG_LEN];
    let mut jiffies = [0u64; 2];
    let (n, without_tick, dropped) = kernel::with_irq_log(|l| {
        let mut n = 0;
        let mut without = 0;
        for r in l.records().iter().filter(|r| r.at > t0 && r.at <= t1) {
            if r.ticks == 0 {
                without += 1;
            } else if let Some(slot) = arrivals.get_mut(n) {
                *slot = r.at;
                jiffies[usize::from(n > 0)] = r.jiffies;
                n += 1;
            }
        }
        (n, without, l.dropped())
    });
    let (first, last) = (arrivals[0], arrivals[n.max(1) - 1]);
    TickWindow {
        ticks: n1.saturating_sub(n0),
        window: t1.saturating_since(t0),
        period,
        jiffies: if n > 1 {
            jiffies[1].saturating_sub(jiffies[0])
        } else {
            0
        },
        grid_points: if n > 1 {
            grid_points(first, last, period)
        } else {
            0
        },
        account: TickAccount::new(t0, t1, &arrivals[..n], period, &mut scratch),
        without_tick,
        dropped,
    }
}

impl TickWindow {
    /// The verdict on the window, with its fields added to `l`: the
    /// account holds ([`TickAccount::failures`]: ticks at HZ by their
    /// median interval, none more than the window holds, no more lost than
    /// `loss` allows); jiffies advanced by the grid points between the
    /// first and the last tick ± 1 ([`TickWindow::grid_points`]; time comes from
    /// the clocksource); the tick layer counted every tick interrupt the
    /// log saw; and, where the tick is the device's own periodic mode,
    /// every interrupt did a tick.
    pub fn judge(&self, loss: LossBound, periodic: bool, l: &mut Line) -> bool {
        let a = &self.account;
        let jiffies_ok = self.jiffies.abs_diff(self.grid_points) <= 1;
        let counted_ok = self.ticks == a.delivered && self.dropped == 0;
        let all_ticked = !periodic || self.without_tick == 0;
        l.field("ticks", self.ticks);
        account_fields(a, l);
        l.field("jiffies", self.jiffies)
            .field("grid_points", self.grid_points);
        let mut failed = a.failures(self.period, loss);
        for (good, what) in [
            (jiffies_ok, "jiffies"),
            (counted_ok, "counted"),
            (all_ticked, "without-tick"),
        ] {
            if !good {
                let _ = fmt::Write::write_fmt(&mut failed, format_args!("{what} "));
            }
        }
        if !failed.as_str().is_empty() {
            l.text("failed", failed.as_str().trim_end());
        }
        failed.as_str().is_empty()
    }
}

/// The tick-grid points (multiples of `period` in monotonic time, where
/// jiffies step) in `(t0, t1]`.
pub fn grid_points(t0: Ktime, t1: Ktime, period: Nanos) -> u64 {
    let p = period.as_nanos().max(1);
    (t1.as_nanos() / p).saturating_sub(t0.as_nanos() / p)
}

/// A [`TickAccount`]'s fields on a result line: `expected`, `lost`,
/// `gaps`, `longest_gap_us`, `median_us`.
pub fn account_fields(a: &TickAccount, l: &mut Line) {
    l.field("expected", Milli(a.expected_milli))
        .field("lost", a.lost)
        .field("gaps", a.gaps)
        .field("longest_gap_us", Micros(a.longest.as_nanos()))
        .field("median_us", Micros(a.median.as_nanos()));
}

/// CPU 0's tick count.
pub fn ticks<S, const N: usize, L: tick::Locks>(t: &TickSystem<'_, S, N, L>) -> u64
where
    S: AsRef<[tick::TimerSlot]> + AsMut<[tick::TimerSlot]>,
{
    t.cpu_info(CpuId::BOOT).map_or(0, |i| i.stats.ticks)
}

/// Expected ticks in `window` at `hz`, in thousandths.
pub fn expected_milliticks(window: Nanos, hz: u32) -> u64 {
    (window.as_nanos() as u128 * hz as u128 / 1_000_000) as u64
}

/// Thousandths as `12.345`.
pub struct Milli(pub u64);

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}
