//! The monotonic clock published for readers that take no lock: Linux's
//! `tk_fast` latch (`kernel/time/timekeeping.c`, `ktime_get_mono_fast_ns`)
//! and the vDSO's data page, whose clock mode lets a reader read the TSC
//! inline (`lib/vdso/gettimeofday.c`, `vdso_clock_mode`).
//!
//! # Why
//!
//! [`Timekeeper::monotonic`](crate::Timekeeper::monotonic) reads its source
//! through `&dyn ClockSource` and is consistent only while the caller
//! serialises it against updates (a lock, interrupts off). A kernel's
//! ordinary clock read should be neither: it should cost what the counter
//! read costs, from any context, on any CPU. The timekeeper therefore
//! *publishes* its monotonic read base after every change
//! ([`Timekeeper::publish_to`](crate::Timekeeper::publish_to)), and a reader
//! converts a counter value it read itself:
//!
//! ```text
//!   writer (the CPU holding the timekeeping duty, interrupts off)
//!     Timekeeper::update / adjust_frequency / correct / change_clocksource
//!       └─► publish: seq+1 (odd) → copy[0] := base → seq+1 (even) → copy[1] := base
//!
//!   reader (any CPU, any context; retries, never waits)
//!     s = seq ─► b = copy[s & 1] ─► seq == s ? ─no─► again
//!                                        │yes
//!     b.inline == Tsc ? ──yes──► rdtsc inline (the caller's) ─► b.at(counter)
//!                      └─no───► None: the caller reads through the timekeeper
//! ```
//!
//! The two copies (the latch) mean a reader never reads a copy being
//! written: while `seq` is odd `copy[0]` is in flux and `copy[1]` holds the
//! previous base, and the other way round. A reader interrupted by the
//! writer — on one CPU, the tick interrupt — sees `seq` moved and reads
//! again; a reader in an NMI that hit the writer mid-way reads the stable
//! copy and is done.
//!
//! # No indirect call
//!
//! The reader supplies the counter read as a closure ([`PublishedClock::monotonic_inline`]),
//! called only when the published source says how it may be read
//! ([`InlineRead`]): the closure is inlined, so a TSC read is `rdtsc`, a few
//! loads, one multiply and shift — what a bare `rdtsc` + multiply-shift is.
//! A source that cannot be read inline (HPET, ACPI PM timer, PIT, a
//! simulator's counter) is published as [`InlineRead::None`] and the read
//! returns `None`.
//!
//! Such a source can still be read without a lock when its counter read
//! is itself safe from any CPU (an HPET's or ACPI PM timer's register is):
//! the published base also names its source ([`source_key`]), and
//! [`PublishedClock::monotonic_from`] hands that name to the caller's
//! closure, which reads the counter it names or says it cannot (`None`:
//! the caller then takes the ordinary locked path).
//!
//! # Memory ordering
//!
//! Every published word is an atomic read and written `Relaxed`, ordered by
//! fences on `seq` as in Boehm's seqlock construction ("Can seqlocks get
//! along with programming language memory models?", MSPC 2012): a reader
//! that saw any word of a later write sees `seq` changed and retries. On
//! x86 the fences cost nothing; the loads are plain moves.
//!
//! Only the monotonic clock is published: raw, boot and realtime are read
//! through the timekeeper.

// The model-checked build (`--cfg loom`, this crate's own tests only) runs
// the latch on loom's atomics, which explore every interleaving and every
// outcome the memory model allows (TESTING.md).
#[cfg(not(all(loom, test)))]
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(all(loom, test))]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A reader that must read again: a pause (`core::hint::spin_loop`), and
/// under loom a yield, so the model lets the writer go on.
#[inline(always)]
fn retry_hint() {
    #[cfg(not(all(loom, test)))]
    core::hint::spin_loop();
    #[cfg(all(loom, test))]
    loom::hint::spin_loop();
}

use crate::time::{Cycles, Ktime};

/// How a reader may read a clocksource's counter itself, without calling
/// [`ClockSource::read`](crate::ClockSource::read) (Linux's
/// `vdso_clock_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InlineRead {
    /// Only through `read` (a device register, a model).
    #[default]
    None,
    /// The counter is the CPU's time-stamp counter as `rdtsc` returns it,
    /// nothing added or masked (Linux `VDSO_CLOCKMODE_TSC`).
    Tsc,
}

impl InlineRead {
    const fn code(self) -> u64 {
        match self {
            InlineRead::None => 0,
            InlineRead::Tsc => 1,
        }
    }
    const fn from_code(c: u64) -> Self {
        match c {
            1 => InlineRead::Tsc,
            _ => InlineRead::None,
        }
    }
}

/// One published read base: what
/// [`Timekeeper::monotonic_at`](crate::Timekeeper::monotonic_at) computes
/// from, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadSnapshot {
    pub(crate) cycle_last: Cycles,
    pub(crate) mask: Cycles,
    pub(crate) max_cycles: Cycles,
    pub(crate) max_raw_delta: Cycles,
    pub(crate) base_ns: u64,
    pub(crate) frac: u64,
    pub(crate) mult: u32,
    pub(crate) shift: u32,
    pub(crate) floor_ns: u64,
    pub(crate) inline: InlineRead,
    /// [`source_key`] of the source read.
    pub(crate) source: u64,
}

/// The name a published base gives its source, for
/// [`PublishedClock::monotonic_from`]: the source object's address (an
/// identity only, never dereferenced). Stable while the object lives; a
/// kernel's clocksources are statics.
pub fn source_key(cs: &dyn crate::ClockSource) -> u64 {
    (cs as *const dyn crate::ClockSource).cast::<()>() as usize as u64
}

/// `max_raw_delta` of a 64-bit counter: 7/8 of 2⁶⁴ (Linux
/// `clocksource_delta`).
const MAX_RAW_DELTA_64: u64 = (u64::MAX >> 1) + (u64::MAX >> 2) + (u64::MAX >> 3);

/// One copy of the latch: a [`ReadSnapshot`] in atomic words.
struct Copy {
    cycle_last: AtomicU64,
    mask: AtomicU64,
    max_cycles: AtomicU64,
    max_raw_delta: AtomicU64,
    base_ns: AtomicU64,
    frac: AtomicU64,
    /// `mult` in bits 0–31, `shift` in 32–39, [`InlineRead`] in 40–47.
    factor: AtomicU64,
    floor_ns: AtomicU64,
    source: AtomicU64,
}

/// A constructor that is `const`, except in the loom build, whose atomics
/// have no `const` constructor: one body for both.
macro_rules! const_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> Self $body:block) => {
        $(#[$m])*
        #[cfg(all(loom, test))]
        $vis fn $name() -> Self $body

        $(#[$m])*
        #[cfg(not(all(loom, test)))]
        $vis const fn $name() -> Self $body
    };
}

impl Copy {
    const_unless_loom! {
        fn new() -> Self {
            Copy {
                cycle_last: AtomicU64::new(0),
                mask: AtomicU64::new(0),
                max_cycles: AtomicU64::new(0),
                max_raw_delta: AtomicU64::new(0),
                base_ns: AtomicU64::new(0),
                frac: AtomicU64::new(0),
                factor: AtomicU64::new(0),
                floor_ns: AtomicU64::new(0),
                source: AtomicU64::new(0),
            }
        }
    }

    fn store(&self, s: &ReadSnapshot) {
        let r = Ordering::Relaxed;
        self.cycle_last.store(s.cycle_last.get(), r);
        self.mask.store(s.mask.get(), r);
        self.max_cycles.store(s.max_cycles.get(), r);
        self.max_raw_delta.store(s.max_raw_delta.get(), r);
        self.base_ns.store(s.base_ns, r);
        self.frac.store(s.frac, r);
        let factor = s.mult as u64 | (s.shift as u64 & 0xff) << 32 | s.inline.code() << 40;
        self.factor.store(factor, r);
        self.floor_ns.store(s.floor_ns, r);
        self.source.store(s.source, r);
    }

    #[inline(always)]
    fn load(&self) -> ReadSnapshot {
        let r = Ordering::Relaxed;
        let factor = self.factor.load(r);
        ReadSnapshot {
            cycle_last: Cycles::new(self.cycle_last.load(r)),
            mask: Cycles::new(self.mask.load(r)),
            max_cycles: Cycles::new(self.max_cycles.load(r)),
            max_raw_delta: Cycles::new(self.max_raw_delta.load(r)),
            base_ns: self.base_ns.load(r),
            frac: self.frac.load(r),
            mult: factor as u32,
            shift: (factor >> 32) as u32 & 0xff,
            floor_ns: self.floor_ns.load(r),
            inline: InlineRead::from_code(factor >> 40 & 0xff),
            source: self.source.load(r),
        }
    }

    /// The monotonic clock at `counter`, in ns, converted from this copy as
    /// the timekeeper's `monotonic_at` converts it: a delta behind
    /// `cycle_last` (`≥ max_raw_delta`) reads as zero, one past
    /// `max_cycles` is clamped to it (the timekeeper's own reads log that;
    /// this one cannot, it may run in any context).
    ///
    /// The product is 64-bit: `d ≤ max_cycles`, which
    /// [`ClockParams`](crate::ClockParams) sizes for `mult` plus 11 %, and
    /// the monotonic `mult` is within 500 ppm of nominal, so `d · mult`
    /// stays below 2⁶⁴ by at least `d · mult / 10` — more than `frac`
    /// (`< 2^shift ≤ 2³²`) wherever the product comes near.
    #[inline(always)]
    fn at(&self, factor: u64, counter: Cycles, how: InlineRead) -> u64 {
        let r = Ordering::Relaxed;
        let d = counter.get().wrapping_sub(self.cycle_last.load(r));
        // The TSC is 64 bits wide by definition of InlineRead::Tsc: its
        // mask and backward limit are constants, not loads (the reader's
        // `how` is a constant, so this folds).
        let (d, backwards) = if how == InlineRead::Tsc {
            (d, MAX_RAW_DELTA_64)
        } else {
            (d & self.mask.load(r), self.max_raw_delta.load(r))
        };
        // Without branches (conditional moves): a branch ends a translated
        // block under a binary translator.
        let forward = u64::from(d < backwards).wrapping_neg();
        let d = d.min(self.max_cycles.load(r)) & forward;
        let ns = d
            .wrapping_mul(factor & 0xffff_ffff)
            .wrapping_add(self.frac.load(r))
            .wrapping_shr((factor >> 32) as u32 & 0xff);
        // Wrapping: 2⁶⁴ ns is 584 years of uptime.
        self.base_ns
            .load(r)
            .wrapping_add(ns)
            .max(self.floor_ns.load(r))
    }
}

/// The monotonic clock as a [`Timekeeper`](crate::Timekeeper) last
/// published it, for reads that take no lock (see the [module docs](self)).
///
/// A `static` of the embedder's: `const`-constructible, `Sync`, no
/// allocation. Until a timekeeper publishes to it, reads return `None`.
pub struct PublishedClock {
    /// Even: copy[0] is current; odd: copy[0] is being written, copy[1]
    /// holds the previous base. 0: nothing published yet (during the first
    /// publish, copy[1] is still empty: its [`InlineRead::None`] makes a
    /// read return `None`).
    seq: AtomicU32,
    copies: [Copy; 2],
}

impl Default for PublishedClock {
    fn default() -> Self {
        Self::new()
    }
}

impl PublishedClock {
    const_unless_loom! {
        /// Nothing published.
        pub fn new() -> Self {
            PublishedClock {
                seq: AtomicU32::new(0),
                copies: [Copy::new(), Copy::new()],
            }
        }
    }

    /// Publishes `s` (the writer: one at a time, which the timekeeper's
    /// `&mut self` guarantees for the one timekeeper publishing here).
    pub(crate) fn publish(&self, s: &ReadSnapshot) {
        // Linux `raw_write_seqcount_latch`: a write barrier on both sides
        // of each increment. The first makes the copy written last complete
        // before a reader can see `seq` select it; the second makes `seq`
        // moved before any word of the copy now rewritten changes, so a
        // reader that saw such a word sees `seq` moved and retries.
        let mut seq = self.seq.load(Ordering::Relaxed);
        for copy in &self.copies {
            seq = seq.wrapping_add(1);
            if seq == 0 {
                // 0 is "never published"; 2 keeps the parity.
                seq = 2;
            }
            fence(Ordering::Release);
            self.seq.store(seq, Ordering::Relaxed);
            fence(Ordering::Release);
            copy.store(s);
        }
    }

    /// Whether a timekeeper has published here.
    pub fn is_published(&self) -> bool {
        self.seq.load(Ordering::Acquire) != 0
    }

    /// How the published source may be read inline ([`InlineRead::None`]
    /// before anything is published).
    pub fn inline_read(&self) -> InlineRead {
        self.snapshot().map_or(InlineRead::None, |s| s.inline)
    }

    /// A consistent copy of the published base, or `None` before the
    /// first publish. Retries while a publish overlaps the read; never
    /// waits for one.
    #[inline(always)]
    pub(crate) fn snapshot(&self) -> Option<ReadSnapshot> {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq == 0 {
                return None;
            }
            let s = self.copies[(seq & 1) as usize].load();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return Some(s);
            }
            retry_hint();
        }
    }

    /// The monotonic clock now, from a counter the caller reads itself:
    /// `read` reads it the way `how` says (for [`InlineRead::Tsc`], the
    /// CPU's `rdtsc`), and the published base converts it. `None` before
    /// anything is published or when the published source is not read that
    /// way (it is not the TSC: [`InlineRead::None`]); the caller then reads
    /// through the timekeeper.
    ///
    /// `read` is called before the source is known to be `how`'s (one
    /// test at the end instead of two branches on the way: a branch costs
    /// more than a wasted `rdtsc` under a binary translator), so it must be
    /// harmless whatever the source — `rdtsc` is. It is called inside the
    /// retry loop, after the base it is converted with is loaded, so it is
    /// never older than that base's `cycle_last` but by another CPU's TSC
    /// offset, which the conversion reads as zero, as the timekeeper does.
    #[inline(always)]
    pub fn monotonic_inline(
        &self,
        how: InlineRead,
        mut read: impl FnMut() -> Cycles,
    ) -> Option<Ktime> {
        loop {
            // Before the first publish both copies are zero, and zero says
            // InlineRead::None: no separate test for "never published".
            let seq = self.seq.load(Ordering::Acquire);
            let copy = &self.copies[(seq & 1) as usize];
            let factor = copy.factor.load(Ordering::Relaxed);
            let ns = copy.at(factor, read(), how);
            fence(Ordering::Acquire);
            let same = self.seq.load(Ordering::Relaxed) == seq;
            let readable = factor >> 40 & 0xff == how.code() && how != InlineRead::None;
            if same & readable {
                return Some(Ktime::from_nanos(ns));
            }
            if same {
                return None;
            }
            retry_hint();
        }
    }
}

impl PublishedClock {
    /// The monotonic clock now, from whichever source is published: `read`
    /// is given that source's [`source_key`] and reads its counter (or
    /// returns `None`: not a counter the caller can read from here, and so
    /// does this). Lock-free like [`monotonic_inline`](Self::monotonic_inline),
    /// retrying while a publish overlaps; `read` may run more than once.
    /// `None` also before the first publish.
    ///
    /// For any source; the TSC is cheaper through `monotonic_inline`, whose
    /// conversion needs no mask.
    #[inline]
    pub fn monotonic_from(&self, mut read: impl FnMut(u64) -> Option<Cycles>) -> Option<Ktime> {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq == 0 {
                return None;
            }
            let copy = &self.copies[(seq & 1) as usize];
            let factor = copy.factor.load(Ordering::Relaxed);
            let source = copy.source.load(Ordering::Relaxed);
            let counter = read(source);
            let ns = counter.map(|c| copy.at(factor, c, InlineRead::None));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return ns.map(Ktime::from_nanos);
            }
            retry_hint();
        }
    }
}

impl core::fmt::Debug for PublishedClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PublishedClock")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("base", &self.snapshot())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::timekeeper::fake::{FakeClock, World};
    use crate::{ClockError, ClockSource, Nanos, Timekeeper};
    use quickcheck::{QuickCheck, TestResult};
    use std::sync::atomic::AtomicBool;
    use std::vec::Vec;

    const MS: u64 = 1_000_000;

    /// The published read with the fake counter read by the caller.
    fn read(p: &PublishedClock, cs: &FakeClock<'_>) -> Option<Ktime> {
        p.monotonic_inline(InlineRead::Tsc, || cs.read())
    }

    #[test]
    fn nothing_is_read_before_a_publish_or_from_a_source_not_readable_inline() {
        let p = PublishedClock::new();
        assert!(!p.is_published());
        assert_eq!(p.monotonic_inline(InlineRead::Tsc, || Cycles::new(7)), None);
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32);
        let mut tk = Timekeeper::new(&hpet).unwrap();
        tk.publish_to(&p);
        assert!(p.is_published());
        assert_eq!(p.inline_read(), InlineRead::None);
        assert_eq!(p.monotonic_inline(InlineRead::Tsc, || hpet.read()), None);
    }

    /// A source read by call is read through `monotonic_from`: the closure
    /// is told which source is published, across a clocksource change, and
    /// its reading converts exactly as the timekeeper's own.
    #[test]
    fn a_read_by_source_names_the_published_source_and_converts_as_the_timekeeper() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32);
        let pm = FakeClock::new(&w, "acpi_pm", 3_579_545).bits(24);
        let p = PublishedClock::new();
        assert_eq!(
            p.monotonic_from(|_| Some(Cycles::new(1))),
            None,
            "nothing published"
        );
        let mut tk = Timekeeper::new(&hpet).unwrap();
        tk.publish_to(&p);
        let by_key = |key: u64| {
            if key == source_key(&hpet) {
                Some(hpet.read())
            } else if key == source_key(&pm) {
                Some(pm.read())
            } else {
                None
            }
        };
        w.advance(7 * MS);
        tk.update();
        w.advance(3 * MS);
        let c = hpet.read();
        assert_eq!(p.monotonic_from(by_key), Some(tk.monotonic_at(c)));
        // A counter the caller cannot read: None, and it is asked once.
        let mut asked = 0;
        assert_eq!(
            p.monotonic_from(|_| {
                asked += 1;
                None
            }),
            None
        );
        assert_eq!(asked, 1);
        tk.change_clocksource(&pm).unwrap();
        w.advance(2 * MS);
        let mut seen = 0;
        let t = p.monotonic_from(|key| {
            seen = key;
            by_key(key)
        });
        assert_eq!(seen, source_key(&pm));
        assert_eq!(t, Some(tk.monotonic_at(pm.read())));
    }

    /// After every kind of change the published read equals the
    /// timekeeper's own, for the same counter value: updates, a frequency
    /// slew, both corrections (the floor included), a late update past
    /// `max_cycles`, a counter behind `cycle_last`.
    #[test]
    fn the_published_clock_reads_what_the_timekeeper_reads() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 2_600_000_000)
            .offset(0x1234_5678)
            .inline(InlineRead::Tsc);
        let p = PublishedClock::new();
        let mut tk = Timekeeper::new(&tsc).unwrap();
        tk.publish_to(&p);
        assert_eq!(p.inline_read(), InlineRead::Tsc);
        let check = |tk: &Timekeeper<'_>| {
            let c = tsc.read();
            assert_eq!(
                p.monotonic_inline(InlineRead::Tsc, || c),
                Some(tk.monotonic_at(c))
            );
        };
        for step in [0, 1, 3 * MS, 700 * MS, 2_000 * MS, 999_999] {
            w.advance(step);
            check(&tk);
            tk.update();
            check(&tk);
        }
        tk.adjust_frequency(300_000).unwrap();
        w.advance(400 * MS);
        check(&tk);
        tk.correct(ClockError::Behind(Nanos::from_millis(2)));
        check(&tk);
        tk.correct(ClockError::Ahead(Nanos::from_millis(5)));
        check(&tk); // held at the floor
        w.advance(MS);
        check(&tk);
        // A read far past max_cycles clamps as the timekeeper's does.
        w.advance(tk.params().max_idle.as_nanos() * 3);
        check(&tk);
        tk.update();
        check(&tk);
        // A counter a few cycles behind cycle_last reads the base.
        let behind = Cycles::new(tsc.read().get() - 10);
        assert_eq!(
            p.monotonic_inline(InlineRead::Tsc, || behind),
            Some(tk.monotonic_at(behind))
        );
        assert_eq!(read(&p, &tsc), Some(tk.monotonic()));
    }

    /// Any rate, slew and step — up to three times past `max_cycles` —
    /// converts as the timekeeper converts it: the 64-bit product of the
    /// published read never overflows where the timekeeper's 128-bit one
    /// would differ. A counter narrower than 64 bits that claims
    /// [`InlineRead::Tsc`] is not read inline.
    #[test]
    fn the_published_conversion_equals_the_timekeepers_for_any_source() {
        fn prop(freq: u64, bits: u8, ppb: i32, steps: Vec<u64>) -> TestResult {
            let freq = 1_000 + freq % 10_000_000_000;
            // Half of the cases 64 bits wide, the rest 16–63.
            let bits = if bits % 2 == 0 {
                64
            } else {
                16 + u32::from(bits / 2) % 48
            };
            let ppb = i64::from(ppb) % 500_001;
            let w = World::new();
            let cs = FakeClock::new(&w, "x", freq)
                .bits(bits)
                .inline(InlineRead::Tsc);
            let Ok(mut tk) = Timekeeper::new(&cs) else {
                return TestResult::discard();
            };
            let p = PublishedClock::new();
            tk.publish_to(&p);
            tk.adjust_frequency(ppb).unwrap();
            let span = tk.params().max_idle.as_nanos().saturating_mul(3).max(1);
            for (i, step) in steps.iter().enumerate() {
                w.advance(step % span);
                let c = cs.read();
                // Inline only at 64 bits (InlineRead::Tsc's width).
                let want = (bits == 64).then(|| tk.monotonic_at(c));
                if p.monotonic_inline(InlineRead::Tsc, || c) != want {
                    return TestResult::failed();
                }
                if i % 2 == 0 {
                    tk.update();
                }
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(2_000)
            .quickcheck(prop as fn(u64, u8, i32, Vec<u64>) -> TestResult);
    }

    /// A switch to a source read by call stops inline reads; a switch back
    /// restarts them, continuous with the clock.
    #[test]
    fn a_switch_of_source_changes_how_the_clock_may_be_read() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 1_000_000_000).inline(InlineRead::Tsc);
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32);
        let p = PublishedClock::new();
        let mut tk = Timekeeper::new(&tsc).unwrap();
        tk.publish_to(&p);
        w.set(10 * MS);
        assert_eq!(read(&p, &tsc), Some(Ktime::from_millis(10)));
        tk.change_clocksource(&hpet).unwrap();
        assert_eq!(p.monotonic_inline(InlineRead::Tsc, || hpet.read()), None);
        w.set(20 * MS);
        let on_hpet = tk.monotonic();
        tk.change_clocksource(&tsc).unwrap();
        let back = read(&p, &tsc).unwrap();
        assert!(back >= on_hpet, "{back:?} < {on_hpet:?}");
        assert_eq!(back, tk.monotonic());
    }

    /// A reader that reads no inline counter (`InlineRead::None`) gets
    /// `None` even from a source readable inline: it has read nothing.
    #[test]
    fn a_reader_with_no_inline_counter_falls_back() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 1_000_000_000).inline(InlineRead::Tsc);
        let p = PublishedClock::new();
        let mut tk = Timekeeper::new(&tsc).unwrap();
        tk.publish_to(&p);
        assert_eq!(p.monotonic_inline(InlineRead::None, || tsc.read()), None);
        assert_eq!(read(&p, &tsc), Some(Ktime::ZERO));
    }

    /// One writer publishing as fast as it can, three readers: no reader
    /// ever sees a torn base (every value lies between the true time just
    /// before and just after its read, converted exactly at 1 GHz) or time
    /// going backwards.
    #[test]
    fn concurrent_readers_never_see_a_torn_base_or_time_going_back() {
        static WORLD: World = World::new();
        let tsc = FakeClock::new(&WORLD, "tsc", 1_000_000_000).inline(InlineRead::Tsc);
        let p = PublishedClock::new();
        let stop = AtomicBool::new(false);
        let mut tk = Timekeeper::new(&tsc).unwrap();
        tk.publish_to(&p);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut last = Ktime::ZERO;
                        let mut reads = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let before = WORLD.now();
                            let t = read(&p, &tsc).unwrap();
                            let after = WORLD.now();
                            assert!(
                                t.as_nanos() >= before && t.as_nanos() <= after,
                                "torn: {t:?} outside [{before}, {after}]"
                            );
                            assert!(t >= last, "backwards: {t:?} after {last:?}");
                            last = t;
                            reads += 1;
                        }
                        reads
                    })
                })
                .collect();
            for i in 0..200_000u64 {
                WORLD.advance(1 + i % 1000);
                tk.update();
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                assert!(r.join().unwrap() > 0);
            }
        });
    }
}

/// The latch under loom (`RUSTFLAGS="--cfg loom" cargo test --release -p
/// clocksource --lib loom`): every interleaving of one writer and one
/// reader, and every value a relaxed load may return, up to the preemption
/// bound.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A snapshot whose every word is derived from `k`, so that a read
    /// mixing two publishes cannot pass for either.
    fn snap(k: u64) -> ReadSnapshot {
        ReadSnapshot {
            cycle_last: Cycles::new(k * 1_000),
            mask: Cycles::new(u64::MAX),
            max_cycles: Cycles::new((1 << 40) | k),
            max_raw_delta: Cycles::new(MAX_RAW_DELTA_64 - k),
            base_ns: k * 1_000_000,
            frac: k,
            mult: (1 << 20) | k as u32,
            shift: 20,
            floor_ns: k * 1_000_000,
            inline: InlineRead::Tsc,
            source: 100 + k,
        }
    }

    /// Which publish `s` is, asserting it is exactly one.
    fn which(s: &ReadSnapshot) -> u64 {
        let k = s.frac;
        assert_eq!(*s, snap(k), "a read mixed two publishes");
        k
    }

    /// The monotonic ns `snap(k)` gives at counter `c` (`c ≥ cycle_last`,
    /// well inside `max_cycles`), as `Copy::at` computes it.
    fn ns_at(k: u64, c: u64) -> u64 {
        let s = snap(k);
        let d = c - s.cycle_last.get();
        s.base_ns + ((d * s.mult as u64 + s.frac) >> s.shift)
    }

    fn bounded() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b
    }

    /// Base 1 published, then a writer publishing base 2 while the reader
    /// reads: the reader gets 1 or 2, whole.
    fn racing(read: impl Fn(&PublishedClock) + Sync + Send + 'static) {
        bounded().check(move || {
            let p = Arc::new(PublishedClock::new());
            p.publish(&snap(1));
            let w = p.clone();
            let writer = thread::spawn(move || w.publish(&snap(2)));
            read(&p);
            writer.join().unwrap();
        });
    }

    #[test]
    fn loom_a_read_racing_a_publish_sees_the_old_or_the_new_base_whole() {
        racing(|p| {
            let k = p.snapshot().map(|s| which(&s));
            assert!(matches!(k, Some(1 | 2)), "{k:?}");
        });
    }

    #[test]
    fn loom_an_inline_read_racing_a_publish_converts_with_one_whole_base() {
        racing(|p| {
            let c = 5_000;
            let t = p.monotonic_inline(InlineRead::Tsc, || Cycles::new(c));
            let t = t.map(|t| t.as_nanos());
            assert!(
                t == Some(ns_at(1, c)) || t == Some(ns_at(2, c)),
                "{t:?} is no publish's"
            );
        });
    }

    #[test]
    fn loom_a_read_by_source_racing_a_publish_names_and_converts_with_one_base() {
        racing(|p| {
            let c = 5_000;
            // Each publish names its own source; the reader reads the one
            // named, and the time must be that publish's at that counter.
            let mut named = None;
            let t = p.monotonic_from(|key| {
                named = Some(key);
                Some(Cycles::new(c))
            });
            let k = named.expect("read") - 100;
            assert_eq!(t.map(|t| t.as_nanos()), Some(ns_at(k, c)), "publish {k}");
        });
    }

    #[test]
    fn loom_the_first_publish_is_nothing_or_whole() {
        bounded().check(|| {
            let p = Arc::new(PublishedClock::new());
            let w = p.clone();
            let writer = thread::spawn(move || w.publish(&snap(1)));
            let k = p.snapshot().map(|s| which(&s));
            assert!(matches!(k, None | Some(1)), "{k:?}");
            writer.join().unwrap();
            assert_eq!(p.snapshot().map(|s| which(&s)), Some(1));
        });
    }
}
