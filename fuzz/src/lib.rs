//! # fuzz — a host fuzz harness on stable Rust
//!
//! Every target takes its inputs from a seeded generator
//! ([`sim::rng::XorShift64`] behind [`Gen`]), so an input is named by one
//! 64-bit seed and reproduces on any machine. A run is a bounded loop:
//!
//! ```text
//!   run seed S, N inputs:  input k ← Gen(seed_k), seed_k = S + k·φ   (φ = 2^64/golden ratio)
//!                          generate(input) → check(input) under catch_unwind
//!                          a panic (or a broken invariant, which panics) → Failure{seed_k, input}
//!   reproduce:             cargo xtask fuzz --target T --seed seed_k --iterations 1
//! ```
//!
//! Input `0` of a run is `seed_k = S` itself, which is what makes the last
//! line reproduce exactly the failing input.
//!
//! Targets ([`TARGETS`]): the guest's command-line parser ([`cmdline`]),
//! its PVH start-info and memory-map reader ([`pvh`]), its ACPI table
//! reader and the platform built from it ([`acpi`]), and the register
//! files of the device models ([`hpet`], [`lapic`], [`pit`], [`tsc`]),
//! driven by random access sequences with virtual time advancing between
//! accesses, each invariant checked after every step. Each module's docs
//! state its invariants and where they come from.
//!
//! The short pass CI runs is a `#[test]` per target (`cargo test -p
//! fuzz`); `cargo xtask fuzz` runs long, in release. `TESTING.md` has the
//! figures of the long runs.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use sim::rng::XorShift64;

pub mod acpi;
pub mod cmdline;
pub mod hpet;
pub mod lapic;
pub mod pit;
pub mod pvh;
pub mod tsc;

/// A fuzz target: how to make one input from random numbers, and how to
/// check it.
pub trait Target {
    /// The name `--target` takes.
    const NAME: &'static str;
    /// One input; printed on a failure.
    type Input: Debug;
    /// Makes an input.
    fn generate(g: &mut Gen) -> Self::Input;
    /// Runs the code under test on `input` and checks its invariants,
    /// panicking when one fails. Returns a small summary of what the input
    /// did (which paths, roughly); the runner counts the distinct ones.
    fn check(input: &Self::Input) -> u64;
}

/// The random numbers one input is made from.
#[derive(Debug, Clone)]
pub struct Gen(XorShift64);

impl Gen {
    /// A generator for the input named `seed`.
    pub fn new(seed: u64) -> Self {
        // Mixed once (splitmix64's finaliser) so that neighbouring seeds
        // give unrelated inputs.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Gen(XorShift64::new(z ^ (z >> 31)))
    }

    /// A random `u64`.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A random `u32`.
    pub fn u32(&mut self) -> u32 {
        (self.u64() >> 32) as u32
    }

    /// A random byte.
    pub fn u8(&mut self) -> u8 {
        (self.u64() >> 56) as u8
    }

    /// Uniform in `0..n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((self.u64() as u128 * n as u128) >> 64) as u64
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num`/`den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One of `items`, or (as often as any one of them) `other`'s value.
    pub fn pick_or<T: Copy>(&mut self, items: &[T], other: impl FnOnce(&mut Self) -> T) -> T {
        let i = self.below(items.len() as u64 + 1) as usize;
        match items.get(i) {
            Some(v) => *v,
            None => other(self),
        }
    }

    /// A virtual-time step in ns: none, a few device clocks (below
    /// `fine`), up to 1 ms, up to 10 s, or 2^27..2^40 ns (up to ~18 min).
    pub fn advance_ns(&mut self, fine: u64) -> u64 {
        match self.below(8) {
            0 => 0,
            1..=3 => self.below(fine),
            4..=5 => self.below(1_000_000),
            6 => self.below(10_000_000_000),
            _ => 1 << self.range(27, 40),
        }
    }

    /// A value biased to the edges: 0, all ones, one bit, near a power of
    /// two, or uniform — where parsers and registers break.
    pub fn interesting_u64(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.below(64),
            3 => (1u64 << self.below(64))
                .wrapping_add(self.below(5))
                .wrapping_sub(2),
            4 => u32::MAX as u64,
            5 => self.below(256),
            _ => self.u64(),
        }
    }
}

/// The result of checking invariants: what failed, in words.
pub type Check = Result<(), String>;

/// `Ok` if `ok`, else the failure `what` describes.
pub fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Runs a register-file target's steps: `step` applies one and checks
/// every invariant after it, returning a summary bit set; the first
/// failure panics, naming the step. Returns the union of the summaries.
pub fn drive<S: Copy + Debug>(steps: &[S], mut step: impl FnMut(S) -> Result<u64, String>) -> u64 {
    let mut summary = 0;
    for (i, s) in steps.iter().enumerate() {
        summary |= step(*s).unwrap_or_else(|e| panic!("after step {i} ({s:?}): {e}"));
    }
    summary
}

/// Fires `irq` as a simulator does, checking `hw::InterruptSource`'s
/// contract: a `fire` before `next_fire` delivers nothing; then time moves
/// to `next_fire` if that is at most `limit` ns ahead, and `fire` again;
/// `delivered()` (the model's count) moves exactly when `fire` says it
/// delivered. Returns whether time moved and whether it delivered.
pub fn fire(
    irq: &dyn hw::InterruptSource,
    clock: &sim::clock::VirtualClock,
    limit: u64,
    delivered: impl Fn() -> u64,
) -> Result<(bool, bool), String> {
    let now = clock.now();
    let before = delivered();
    let mut moved = false;
    if let Some(t) = irq.next_fire() {
        if t > now {
            ensure(!irq.fire(), || {
                format!("fired at {now}, before next_fire {t}")
            })?;
            ensure(delivered() == before, || {
                "an early fire() was counted".into()
            })?;
        }
        if t.as_nanos().saturating_sub(now.as_nanos()) <= limit {
            clock.advance_to(t);
            moved = true;
        }
    }
    let d = irq.fire();
    ensure(delivered() == before + d as u64, || {
        format!(
            "fire() returned {d}, the delivered count went {before} → {}",
            delivered()
        )
    })?;
    Ok((moved, d))
}

/// The increment between the seeds of consecutive inputs of a run
/// (2^64 divided by the golden ratio): consecutive seeds differ in many bits.
pub const SEED_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// The seed of input `k` of a run started with `seed`.
pub fn input_seed(seed: u64, k: u64) -> u64 {
    seed.wrapping_add(k.wrapping_mul(SEED_STEP))
}

/// An input that panicked.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Its seed: `--seed` this with `--iterations 1` to run it again.
    pub seed: u64,
    /// The panic message (with its location).
    pub message: String,
    /// The input, `{:#?}`-printed.
    pub input: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Distinct summaries [`Target::check`] returned.
    pub distinct: usize,
    /// The first failure, if any (the run stops there).
    pub failure: Option<Failure>,
}

impl Report {
    /// The command that runs the failing input alone.
    pub fn reproduce(&self) -> Option<String> {
        self.failure.as_ref().map(|f| {
            format!(
                "cargo xtask fuzz --target {} --seed {} --iterations 1",
                self.target, f.seed
            )
        })
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static QUIET: RefCell<bool> = const { RefCell::new(false) };
}

/// Installs (once) a panic hook that, on a thread running a fuzz loop,
/// keeps the message for the report instead of printing it; other threads
/// get the default hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| *q.borrow()) {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                    (*s).to_string()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "(non-string panic payload)".to_string()
                };
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `iterations` inputs of `T` from `seed`, stopping at the first
/// failure.
pub fn run<T: Target>(seed: u64, iterations: u64) -> Report {
    install_hook();
    QUIET.with(|q| *q.borrow_mut() = true);
    let mut distinct = HashSet::new();
    let mut failure = None;
    let mut inputs = 0;
    for k in 0..iterations {
        let s = input_seed(seed, k);
        let input = T::generate(&mut Gen::new(s));
        inputs += 1;
        match panic::catch_unwind(AssertUnwindSafe(|| T::check(&input))) {
            Ok(summary) => {
                distinct.insert(summary);
            }
            Err(_) => {
                let message = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "(no message)".to_string());
                failure = Some(Failure {
                    seed: s,
                    message,
                    input: format!("{input:#?}"),
                });
                break;
            }
        }
    }
    QUIET.with(|q| *q.borrow_mut() = false);
    Report {
        target: T::NAME,
        inputs,
        distinct: distinct.len(),
        failure,
    }
}

/// The targets, by name, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 7] = [
    cmdline::Cmdline::NAME,
    pvh::Pvh::NAME,
    acpi::Acpi::NAME,
    hpet::Hpet::NAME,
    lapic::Lapic::NAME,
    pit::Pit::NAME,
    tsc::Tsc::NAME,
];

/// Runs the target named `name`; `None` if there is no such target.
pub fn run_named(name: &str, seed: u64, iterations: u64) -> Option<Report> {
    Some(match name {
        cmdline::Cmdline::NAME => run::<cmdline::Cmdline>(seed, iterations),
        pvh::Pvh::NAME => run::<pvh::Pvh>(seed, iterations),
        acpi::Acpi::NAME => run::<acpi::Acpi>(seed, iterations),
        hpet::Hpet::NAME => run::<hpet::Hpet>(seed, iterations),
        lapic::Lapic::NAME => run::<lapic::Lapic>(seed, iterations),
        pit::Pit::NAME => run::<pit::Pit>(seed, iterations),
        tsc::Tsc::NAME => run::<tsc::Tsc>(seed, iterations),
        _ => return None,
    })
}

/// The seed CI's short passes use (any fixed value would do).
pub const CI_SEED: u64 = 0x00D1_7C05;

/// A short pass of `T` for `cargo test`: `iterations` inputs from
/// [`CI_SEED`], failing the test with the reproducing command on a panic.
pub fn short_pass<T: Target>(iterations: u64) {
    let r = run::<T>(CI_SEED, iterations);
    if let Some(f) = &r.failure {
        panic!(
            "fuzz target {} failed at input seed {}: {}\ninput: {}\nreproduce: {}",
            r.target,
            f.seed,
            f.message,
            f.input,
            r.reproduce().unwrap_or_default()
        );
    }
    assert_eq!(r.inputs, iterations);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicsOnSeven;
    impl Target for PanicsOnSeven {
        const NAME: &'static str = "panics-on-seven";
        type Input = u64;
        fn generate(g: &mut Gen) -> u64 {
            g.below(10)
        }
        fn check(input: &u64) -> u64 {
            assert_ne!(*input, 7, "seven");
            *input
        }
    }

    #[test]
    fn a_failing_input_is_reported_with_a_seed_that_reproduces_it() {
        let r = run::<PanicsOnSeven>(1, 10_000);
        let f = r.failure.clone().expect("some input of 10 000 is 7");
        assert!(f.message.contains("seven"), "{}", f.message);
        assert_eq!(f.input, "7");
        // Input 0 of a run from the failure's seed is the failing input.
        let again = run::<PanicsOnSeven>(f.seed, 1);
        assert_eq!(again.inputs, 1);
        assert_eq!(again.failure.map(|f| f.seed), Some(f.seed));
        assert_eq!(
            r.reproduce().unwrap(),
            format!(
                "cargo xtask fuzz --target panics-on-seven --seed {} --iterations 1",
                f.seed
            )
        );
    }

    #[test]
    fn a_passing_run_counts_inputs_and_distinct_summaries() {
        struct Mod3;
        impl Target for Mod3 {
            const NAME: &'static str = "mod3";
            type Input = u64;
            fn generate(g: &mut Gen) -> u64 {
                g.u64()
            }
            fn check(input: &u64) -> u64 {
                input % 3
            }
        }
        let r = run::<Mod3>(5, 1000);
        assert_eq!(r.inputs, 1000);
        assert_eq!(r.distinct, 3);
        assert!(r.failure.is_none());
    }

    #[test]
    fn gen_stays_in_its_ranges() {
        let mut g = Gen::new(3);
        for _ in 0..10_000 {
            assert!(g.below(7) < 7);
            assert!((5..=9).contains(&g.range(5, 9)));
        }
        assert_eq!(g.below(0), 0);
        assert_eq!(Gen::new(9).u64(), Gen::new(9).u64());
        assert_ne!(Gen::new(9).u64(), Gen::new(10).u64());
    }
}
