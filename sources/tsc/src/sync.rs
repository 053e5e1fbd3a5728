//! Are the CPUs' TSCs in step? The warp check an SMP kernel runs as each
//! CPU comes up (Linux `arch/x86/kernel/tsc_sync.c`, `check_tsc_warp`).
//!
//! Two CPUs — the one already up and the one coming up — read their TSCs
//! in turn, each read ordered after the last one either CPU made, and
//! compare it with that last one. If the TSCs are in step every read is at
//! or after the one before it in time, so at or above its value; a read
//! *below* the last one is a warp: one CPU's TSC runs behind the other's by
//! at least the difference, and time read on one CPU then the other could
//! go backwards. Linux then marks the TSC unstable ("check_tsc_sync_source
//! failed") and the clocksource core switches to another source.
//!
//! ```text
//!   CPU a                          shared `last`            CPU b
//!   prev = last ──────────────────► 1000
//!   now  = rdtsc_ordered()  = 1010                          prev = last
//!   last: 1000 → 1010 (CAS) ──────► 1010 ◄──── CAS fails: reread, retry
//!                                                          prev = 1010
//!                                                          now  = 995 (b is behind)
//!                                   995  ◄──── CAS ok: now < prev: a warp of 15
//! ```
//!
//! Linux orders the read and the update with a spinlock; here a
//! compare-and-swap does, without a lock (this runs with interrupts off on
//! both CPUs, and a CPU spinning on a lock the other holds would make the
//! check's timing the lock's): a CPU loads `last`, reads its TSC, and
//! publishes its read only if `last` is still what it loaded, else it reads
//! again. A published read therefore came after the previous published one
//! (its load saw that one's store, and its TSC read followed the load), so
//! a value below it is a warp, never an artefact of the check. The TSC
//! reads must be ordered (`lfence; rdtsc`, Linux `rdtsc_ordered`): the
//! caller's `read` closure does that.

use core::sync::atomic::{AtomicU64, Ordering};

use clocksource::Cycles;

/// What a warp check found ([`WarpCheck::result`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WarpResult {
    /// Reads published (by every CPU taking part).
    pub reads: u64,
    /// Reads found below the one before them.
    pub warps: u64,
    /// The largest amount a read was below the one before it.
    pub max_warp: Cycles,
}

impl WarpResult {
    /// Whether the TSCs were in step: no read went backwards.
    pub fn in_sync(&self) -> bool {
        self.warps == 0
    }
}

/// The state two (or more) CPUs share for one warp check: `static` or on
/// the bring-up CPU's stack, reset between checks by making a new one.
#[derive(Debug, Default)]
pub struct WarpCheck {
    last: AtomicU64,
    reads: AtomicU64,
    warps: AtomicU64,
    max_warp: AtomicU64,
}

impl WarpCheck {
    /// A check nobody has read in yet.
    pub const fn new() -> Self {
        WarpCheck {
            last: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            warps: AtomicU64::new(0),
            max_warp: AtomicU64::new(0),
        }
    }

    /// One CPU's part of the check: `reads` TSC reads through `read`
    /// (ordered: `lfence; rdtsc`), each compared with the last read any CPU
    /// published. Every CPU taking part calls it at the same time (the
    /// bring-up CPU and the new one, after a rendezvous); a read that lost
    /// the race to publish is made again, so each CPU publishes exactly
    /// `reads` of them. Wait-free for the CPU that wins, lock-free overall.
    pub fn run(&self, reads: u32, mut read: impl FnMut() -> u64) {
        for _ in 0..reads {
            loop {
                let prev = self.last.load(Ordering::Acquire);
                let now = read();
                if self
                    .last
                    .compare_exchange(prev, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    core::hint::spin_loop();
                    continue;
                }
                self.reads.fetch_add(1, Ordering::Relaxed);
                if now < prev {
                    self.warps.fetch_add(1, Ordering::Relaxed);
                    self.max_warp.fetch_max(prev - now, Ordering::Relaxed);
                }
                break;
            }
        }
    }

    /// What the check found so far (complete once every CPU's
    /// [`run`](Self::run) returned).
    pub fn result(&self) -> WarpResult {
        WarpResult {
            reads: self.reads.load(Ordering::Relaxed),
            warps: self.warps.load(Ordering::Relaxed),
            max_warp: Cycles::new(self.max_warp.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::atomic::AtomicU64 as Counter;
    use std::sync::{Arc, Barrier};
    use std::thread;

    /// Two real threads as two CPUs over one "true" time base that every
    /// read advances, each CPU's TSC that time plus its own offset.
    fn check(offsets: [i64; 2], reads: u32) -> WarpResult {
        let time = Arc::new(Counter::new(1_000_000));
        let warp = Arc::new(WarpCheck::new());
        let go = Arc::new(Barrier::new(2));
        let threads: std::vec::Vec<_> = offsets
            .into_iter()
            .map(|off| {
                let (time, warp, go) = (time.clone(), warp.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    warp.run(reads, || {
                        let t = time.fetch_add(1, Ordering::SeqCst) + 1;
                        t.wrapping_add_signed(off)
                    });
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        warp.result()
    }

    #[test]
    fn tscs_in_step_show_no_warp_whatever_the_interleaving() {
        let r = check([0, 0], 20_000);
        assert_eq!(r.reads, 40_000);
        assert!(r.in_sync(), "{r:?}");
        assert_eq!(r.max_warp, Cycles::ZERO);
    }

    #[test]
    fn a_cpu_1000_cycles_behind_warps_once_per_turn_by_999() {
        // The two CPUs take turns, one read each (a deterministic
        // interleaving): time advances by one per read, CPU b's TSC is
        // 1000 behind. a's k-th read is T + 2k − 1, b's is T + 2k − 1000:
        // each of b's reads is 999 below the a read before it; each of a's
        // is above the b read before it.
        let time = Counter::new(1_000_000);
        let warp = WarpCheck::new();
        let tsc = |off: i64| {
            let t = time.fetch_add(1, Ordering::SeqCst) + 1;
            t.wrapping_add_signed(off)
        };
        for _ in 0..500 {
            warp.run(1, || tsc(0));
            warp.run(1, || tsc(-1_000));
        }
        assert_eq!(
            warp.result(),
            WarpResult {
                reads: 1_000,
                warps: 500,
                max_warp: Cycles::new(999)
            }
        );
    }

    #[test]
    fn a_warp_is_found_exactly_when_a_read_is_below_the_last_one() {
        // One CPU, reads scripted: 10, 20, 15 (a warp of 5), 30, 3 (27).
        let warp = WarpCheck::new();
        let mut script = [10u64, 20, 15, 30, 3].into_iter();
        warp.run(5, || script.next().unwrap());
        assert_eq!(
            warp.result(),
            WarpResult {
                reads: 5,
                warps: 2,
                max_warp: Cycles::new(27)
            }
        );
    }
}
