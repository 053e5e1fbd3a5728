//! `cargo xtask bench`: boot the guest's `bench-*` tests once per tick
//! device and configuration, collect its `BENCH` lines, print the tables;
//! with `--vs-linux`, run `bench/linux/run` too and compare.
//!
//! ```text
//!   per tick device (hpet, lapic, lapic-deadline if the CPU offers it, pit):
//!     nohz       clockevent=<dev> test=bench-idle,bench-lateness,bench-program,bench-nohz
//!     periodic   clockevent=<dev> nohz=off test=bench-idle
//!     reliable   clockevent=<dev> tsc=reliable test=bench-idle
//!   once:
//!     read-cal   clockevent=hpet test=bench-read,bench-cal   (the LAPIC timer is free)
//!   TCG, with the LAPIC timer, on a slow vCPU (-icount shift=9|10,sleep=off):
//!     icount9, icount10   clockevent=lapic test=bench-lateness
//!
//!   serial ──BenchLine::parse──► BootResult ──*_table──► Table ──render──► stdout, report
//!   bench/linux/run (×3: default, nohz=off, tsc=reliable) ──► comparisons ──► stats
//! ```
//!
//! With `--repeat N` the boots the comparison reads (lapic nohz, periodic,
//! reliable; read-cal) are made N times, alternating with Linux's three
//! runs under `--vs-linux`, and reported as median (min–max)
//! ([`stats`](crate::stats)); the per-device tables are run 1's.
//!
//! Every boot's raw output goes to `target/bench/<accel>-<machine>-<config>.log`
//! (`…-run<i>.log` for run i > 1), the tables to
//! `target/bench/report-<accel>-<machine>.md`. A figure that is
//! missing (a boot that failed, a group the guest skipped, a key it did not
//! print) is a `—` in its cell and a note under the table; nothing here
//! panics on what the guest or Linux printed.
//!
//! Boots run one after the other: timings under TCG depend on the host's
//! CPUs, which concurrent boots would share.
//!
//! The parts:
//!
//! - `lines`: `BENCH` lines, parsed ([`BenchLine`]) and looked up ([`find`]);
//! - `plan`: what is booted ([`Device`], [`Config`], [`Boot`], [`plan()`]) and
//!   what it gave ([`BootResult`], [`Suite`]);
//! - `table`: [`Table`], a markdown table with notes;
//! - `report`: a suite's tables (`*_table`) and its [`report()`];
//! - `linux`: Linux's runs ([`LinuxRun`]) and the [`comparisons`] with ours;
//! - `run`: the boots, Linux's runs and the entry point, [`bench()`];
//! - `tests`: the fixtures the tests share (`stats`' too).

mod lines;
mod linux;
mod plan;
mod report;
mod run;
mod table;
#[cfg(test)]
pub(crate) mod tests;

// Every part's items stand here too: `bench::X` is the path the rest of
// xtask uses.
pub use lines::*;
pub use linux::*;
pub use plan::*;
pub use report::*;
pub use run::*;
pub use table::*;
